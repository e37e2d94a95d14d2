//! The operator halves of the four rails, wired around the ledger. Each rail's module owns its
//! routes, keys and background work; the pure protocol logic lives in the rail's crate under
//! `rails/`.

pub mod microcheck;
pub mod purse;
pub mod purse_statement;
pub mod sms;
pub mod ussd;
pub mod wallet;

use std::sync::Arc;

use axum::Router;

use crate::config::ServerConfig;
use crate::{AppState, Inputs, StartError};

// The operator's own accounts are part of the operator contract, so a rail's operator half (in its
// own crate) names them the same way the server does.
pub use offpay_operator::accounts::{
    FEES, OPERATOR_FLOAT, SUSPENSE, operator_account_id, operator_accounts,
};

/// Every rail's server-side state.
#[derive(Debug)]
pub struct Rails {
    /// Short-code purse.
    pub purse: purse::PurseRail,
    /// SMS-TAN.
    pub sms: sms::SmsRail,
    /// Device wallet money office.
    pub wallet: wallet::WalletRail,
    /// Microcheck PA and CSC.
    pub microcheck: microcheck::MicrocheckRail,
}

impl Rails {
    /// Starts every rail.
    pub fn start(config: &ServerConfig, inputs: &Inputs) -> Result<Rails, StartError> {
        let entropy = inputs.entropy.as_ref();
        Ok(Rails {
            purse: purse::PurseRail::start(config, entropy)?,
            sms: sms::SmsRail::start(config, inputs)?,
            wallet: wallet::WalletRail::start(config, entropy)?,
            microcheck: microcheck::MicrocheckRail::start(config, entropy)?,
        })
    }
}

/// Device and gateway routes of every rail.
pub fn device_routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(purse::device_routes())
        .merge(sms::device_routes())
        .merge(ussd::device_routes())
        .merge(wallet::device_routes())
        .merge(microcheck::device_routes())
}

/// Operator routes of every rail.
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    crate::routes::OperatorRoutes::new()
        .merge(purse::operator_routes())
        .merge(sms::operator_routes())
        .merge(wallet::operator_routes())
        .merge(microcheck::operator_routes())
}

/// Starts every rail's background work.
pub fn spawn_background(state: &Arc<AppState>) {
    purse::spawn_background(state);
    sms::spawn_background(state);
    wallet::spawn_background(state);
    microcheck::spawn_background(state);
}
