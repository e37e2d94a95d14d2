//! The operator halves of the four rails, wired around the ledger. Each rail's module owns its
//! routes, keys and background work; the pure protocol logic lives in the rail's crate under
//! `rails/`.

pub mod microcheck;
pub mod purse;
pub mod sms;
pub mod wallet;

use std::sync::Arc;

use axum::Router;

use offpay_ledger::{AccountId, AccountKind, BalanceLimits, Currency, NewAccount, Operation};

use crate::config::ServerConfig;
use crate::{AppState, Inputs, StartError};

/// The operator's float: money enters circulation from here (it runs negative).
pub const OPERATOR_FLOAT: &str = "operator:float";
/// Unmatched or flagged items waiting for a decision.
pub const SUSPENSE: &str = "operator:suspense";
/// Fees collected.
pub const FEES: &str = "operator:fees";

/// Operations that create the operator's own accounts in `currency` (idempotent: put them at the
/// front of any batch that needs them). Ids carry the currency when it is not the server's.
pub fn operator_accounts(currency: Currency, server_currency: Currency) -> Vec<Operation> {
    [
        (OPERATOR_FLOAT, AccountKind::OperatorFloat),
        (SUSPENSE, AccountKind::Suspense),
        (FEES, AccountKind::Fees),
    ]
    .into_iter()
    .filter_map(|(name, kind)| {
        let id = operator_account_id(name, currency, server_currency)?;
        Some(Operation::CreateAccount(NewAccount {
            id,
            kind,
            currency,
            limits: BalanceLimits {
                balance_min: kind.default_balance_min(),
                balance_max: None,
            },
        }))
    })
    .collect()
}

/// The id of operator account `name` (one of the constants above) in `currency`:
/// `operator:float` in the server's currency, `operator:float:USD` in another.
pub fn operator_account_id(
    name: &str,
    currency: Currency,
    server_currency: Currency,
) -> Option<AccountId> {
    if currency == server_currency {
        AccountId::new(name).ok()
    } else {
        AccountId::new(format!("{name}:{}", currency.code())).ok()
    }
}

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
        .merge(wallet::device_routes())
        .merge(microcheck::device_routes())
}

/// Operator routes of every rail.
pub fn operator_routes() -> Router<Arc<AppState>> {
    Router::new()
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
