//! The operator's own ledger accounts, shared by every rail: the float money enters circulation
//! from, suspense for items waiting for a decision, and fees. In the server's currency their ids
//! are the bare names; in another currency the code is appended (`operator:float:USD`).

use offpay_ledger::{AccountId, AccountKind, BalanceLimits, Currency, NewAccount, Operation};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_currency_only_outside_the_servers() {
        let id = |currency| operator_account_id(FEES, currency, Currency::KES).unwrap();
        assert_eq!(id(Currency::KES).as_str(), "operator:fees");
        assert_eq!(id(Currency::USD).as_str(), "operator:fees:USD");
        assert_eq!(operator_accounts(Currency::USD, Currency::KES).len(), 3);
    }
}
