//! Four eyes on e-money: a request that creates more value than the configured amount is kept
//! as a pending approval until a second user approves it.

use offpay_ledger::Amount;

/// Whether `value` is a larger decimal number than `limit`, each read in its own currency's
/// units (`1000.00 KES` and `1000 UGX` are the same number): the approval amount is one number
/// applied to every currency.
pub fn decimal_above(value: Amount, limit: Amount) -> bool {
    let scale = |amount: Amount, by: Amount| {
        u128::from(amount.minor()) * u128::from(by.currency().minor_per_major())
    };
    scale(value, limit) > scale(limit, value)
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Amount, Currency};

    use super::*;

    #[test]
    fn compares_decimal_numbers_across_exponents() {
        let kes = |text| Amount::parse(text, Currency::KES).unwrap();
        let ugx = |text| Amount::parse(text, Currency::from_code("UGX").unwrap()).unwrap();
        assert!(decimal_above(kes("1000.01"), kes("1000")));
        assert!(!decimal_above(kes("1000.00"), kes("1000")));
        assert!(decimal_above(ugx("1001"), kes("1000")));
        assert!(!decimal_above(ugx("1000"), kes("1000.00")));
        assert!(decimal_above(kes("1000.01"), ugx("1000")));
    }
}
