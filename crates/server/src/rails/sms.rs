//! Rail 2, SMS-TAN: gateway callbacks, envelopes, scheduled payments, the statement page.

use std::sync::Arc;

use axum::Router;

use crate::config::ServerConfig;
use crate::{AppState, StartError};

/// This rail's server-side state (keys, caches).
#[derive(Debug)]
pub struct SmsRail {}

impl SmsRail {
    /// Loads or creates this rail's keys under the data directory.
    pub fn start(config: &ServerConfig) -> Result<SmsRail, StartError> {
        let _ = config;
        Ok(SmsRail {})
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
