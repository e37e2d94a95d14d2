//! Rail 4, microchecks: the provisioning agent and the clearing and settlement center.

use std::sync::Arc;

use axum::Router;

use crate::config::ServerConfig;
use crate::{AppState, StartError};

/// This rail's server-side state (keys, caches).
#[derive(Debug)]
pub struct MicrocheckRail {}

impl MicrocheckRail {
    /// Loads or creates this rail's keys under the data directory.
    pub fn start(config: &ServerConfig) -> Result<MicrocheckRail, StartError> {
        let _ = config;
        Ok(MicrocheckRail {})
    }
}

/// Routes devices and gateways call (authenticated by the rail's own MACs or signatures).
pub fn device_routes() -> Router<Arc<AppState>> {
    Router::new()
}

/// Operator routes (mounted under `/api/v1`, behind the operator token).
pub fn operator_routes() -> Router<Arc<AppState>> {
    Router::new()
}

/// Background work (schedulers, retries); called once the server state exists.
pub fn spawn_background(state: &Arc<AppState>) {
    let _ = state;
}
