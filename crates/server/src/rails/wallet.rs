//! Rail 3, the device wallet's money office: issue, charge, reconciliation, lost wallets.

use std::sync::Arc;

use axum::Router;

use crate::config::ServerConfig;
use crate::{AppState, StartError};

/// This rail's server-side state (keys, caches).
#[derive(Debug)]
pub struct WalletRail {}

impl WalletRail {
    /// Loads or creates this rail's keys under the data directory.
    pub fn start(config: &ServerConfig) -> Result<WalletRail, StartError> {
        let _ = config;
        Ok(WalletRail {})
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
