//! Account features as data, and the checks on them: numbers, phone binding, limits, dialback
//! threshold, fees per level, currencies and the operator's exchange rates.

use alloc::vec::Vec;
use core::fmt;

use offpay_money::{Amount, Currency};

use crate::error::{Misuse, Refusal};
use crate::grammar::SecurityLevel;
use crate::limits::{BOUND_PHONES_MAX, PAYEE_LIMITS_MAX};
use crate::numbers::{AccountNumber, PhoneNumber};

/// Whether the operator tags a currency as hard (payments may convert out of it) or soft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CurrencyClass {
    /// Hard currency: may pay into other currencies.
    Hard,
    /// Soft currency: pays only in its own currency.
    Soft,
}

/// A per-payee daily cap (e.g. the electricity company).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayeeLimit {
    /// The payee's receive number.
    pub payee: AccountNumber,
    /// Most paid to it per day, in the account's currency.
    pub per_day: Amount,
}

/// The holder's limits, in the account's currency; `None` means no limit of that kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest single payment.
    pub per_payment: Option<Amount>,
    /// Most paid per day (operator's day).
    pub per_day: Option<Amount>,
    /// Most paid per week.
    pub per_week: Option<Amount>,
    /// Per-payee daily caps, at most [`PAYEE_LIMITS_MAX`].
    pub per_payee: Vec<PayeeLimit>,
}

/// What the payer has already paid, as the server's ledger counts it, in the account's currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spending {
    /// Paid today (fees excluded).
    pub today: Amount,
    /// Paid this week (fees excluded).
    pub this_week: Amount,
}

impl Spending {
    /// Nothing paid yet.
    pub fn none(currency: Currency) -> Spending {
        Spending {
            today: Amount::zero(currency),
            this_week: Amount::zero(currency),
        }
    }
}

impl Limits {
    /// Checks a payment of `amount` (payer currency) to `payee`, given what was paid already and
    /// what was paid to that payee today.
    pub fn check(
        &self,
        amount: &Amount,
        spending: &Spending,
        payee: &AccountNumber,
        paid_to_payee_today: &Amount,
    ) -> Result<(), Refusal> {
        let over = |limit: &Option<Amount>, already: &Amount, refusal: Refusal| match limit {
            Some(limit) => match already.checked_add(*amount) {
                Ok(total) if total.minor() <= limit.minor() => Ok(()),
                _ => Err(refusal),
            },
            None => Ok(()),
        };
        let zero = Amount::zero(amount.currency());
        over(&self.per_payment, &zero, Refusal::PerPaymentLimit)?;
        over(&self.per_day, &spending.today, Refusal::DailyLimit)?;
        over(&self.per_week, &spending.this_week, Refusal::WeeklyLimit)?;
        if let Some(limit) = self.per_payee.iter().find(|limit| limit.payee == *payee) {
            over(
                &Some(limit.per_day),
                paid_to_payee_today,
                Refusal::PayeeLimit,
            )?;
        }
        Ok(())
    }
}

/// What the server knows about one account, loaded for each message.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountView {
    /// Public number, for receiving.
    pub receive_number: AccountNumber,
    /// Secret number, for paying (redacted in `Debug`).
    pub pay_number: AccountNumber,
    /// The account's currency.
    pub currency: Currency,
    /// Hard or soft, as the operator tags the currency.
    pub currency_class: CurrencyClass,
    /// False when closed or frozen by the operator.
    pub active: bool,
    /// Phones allowed to send instructions; empty means any phone (at most [`BOUND_PHONES_MAX`]).
    pub bound_phones: Vec<PhoneNumber>,
    /// Where notices of money received go (none: no notice).
    pub notify_phone: Option<PhoneNumber>,
    /// The holder's limits.
    pub limits: Limits,
    /// The holder's dialback threshold; `None` uses the operator default.
    pub dialback_threshold: Option<Amount>,
    /// The holder asked for callback on every payment (`HIGH ON`).
    pub always_callback: bool,
    /// Instructions must name the pay number, not the envelope number.
    pub require_pay_number: bool,
    /// The language of the holder's texts (`LANG`, or set by the operator); `None` uses the
    /// operator's default.
    pub language: Option<offpay_text::Language>,
}

impl AccountView {
    /// A new active account with no limits, no binding and the operator's default threshold.
    pub fn new(
        receive_number: AccountNumber,
        pay_number: AccountNumber,
        currency: Currency,
        currency_class: CurrencyClass,
    ) -> AccountView {
        AccountView {
            receive_number,
            pay_number,
            currency,
            currency_class,
            active: true,
            bound_phones: Vec::new(),
            notify_phone: None,
            limits: Limits::default(),
            dialback_threshold: None,
            always_callback: false,
            require_pay_number: false,
            language: None,
        }
    }

    /// True if `phone` may send instructions for this account.
    pub fn phone_allowed(&self, phone: &PhoneNumber) -> bool {
        debug_assert!(self.bound_phones.len() <= BOUND_PHONES_MAX);
        self.bound_phones.is_empty() || self.bound_phones.contains(phone)
    }

    /// True if the account has bound phones and `phone` is one of them.
    pub fn phone_bound(&self, phone: &PhoneNumber) -> bool {
        self.bound_phones.contains(phone)
    }

    /// Checks invariants the server must keep (limits and threshold in the account's currency).
    pub fn check_consistent(&self) -> Result<(), Misuse> {
        let same = |amount: &Option<Amount>| {
            amount.is_none_or(|amount| amount.currency() == self.currency)
        };
        let consistent = same(&self.limits.per_payment)
            && same(&self.limits.per_day)
            && same(&self.limits.per_week)
            && same(&self.dialback_threshold)
            && self.limits.per_payee.len() <= PAYEE_LIMITS_MAX
            && self.bound_phones.len() <= BOUND_PHONES_MAX
            && self
                .limits
                .per_payee
                .iter()
                .all(|limit| limit.per_day.currency() == self.currency);
        if consistent {
            Ok(())
        } else {
            Err(Misuse::CurrencyMismatch)
        }
    }
}

impl fmt::Debug for AccountView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountView")
            .field("receive_number", &self.receive_number)
            .field("pay_number", &"***")
            .field("currency", &self.currency)
            .field("currency_class", &self.currency_class)
            .field("active", &self.active)
            .field("bound_phones", &self.bound_phones.len())
            .field("limits", &self.limits)
            .field("dialback_threshold", &self.dialback_threshold)
            .field("always_callback", &self.always_callback)
            .field("language", &self.language)
            .finish()
    }
}

/// The operator's fee per security level in one currency (dialback costs more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeSchedule {
    /// Low level.
    pub low: Amount,
    /// Middle level.
    pub middle: Amount,
    /// High level (callback).
    pub high: Amount,
}

impl FeeSchedule {
    /// No fees in `currency`.
    pub fn free(currency: Currency) -> FeeSchedule {
        FeeSchedule {
            low: Amount::zero(currency),
            middle: Amount::zero(currency),
            high: Amount::zero(currency),
        }
    }

    /// The fee for `level`.
    pub fn fee(&self, level: SecurityLevel) -> Amount {
        match level {
            SecurityLevel::Low => self.low,
            SecurityLevel::Middle => self.middle,
            SecurityLevel::High => self.high,
        }
    }

    /// The currency all three fees are in, if they agree.
    pub fn currency(&self) -> Option<Currency> {
        let currency = self.low.currency();
        (self.middle.currency() == currency && self.high.currency() == currency).then_some(currency)
    }
}

/// An operator rate: one minor unit of `from` is worth `numerator / denominator` minor units of
/// `to`. Integers only; the payee's side is rounded down and the payer's side up, so the float
/// never loses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeRate {
    /// Source currency.
    pub from: Currency,
    /// Target currency.
    pub to: Currency,
    /// Numerator (non-zero).
    pub numerator: u64,
    /// Denominator (non-zero).
    pub denominator: u64,
}

impl ExchangeRate {
    /// `amount` (in `from`) converted to `to`, rounded down.
    pub fn convert_down(&self, amount: &Amount) -> Result<Amount, crate::error::Error> {
        self.check(amount.currency() == self.from)?;
        let product = u128::from(amount.minor()) * u128::from(self.numerator);
        let minor = product / u128::from(self.denominator);
        let minor = u64::try_from(minor).map_err(|_| offpay_money::MoneyError::TooLarge)?;
        Ok(Amount::from_minor(minor, self.to)?)
    }

    /// How much of `from` buys `amount` of `to`, rounded up.
    pub fn cost_up(&self, amount: &Amount) -> Result<Amount, crate::error::Error> {
        self.check(amount.currency() == self.to)?;
        let product = u128::from(amount.minor()) * u128::from(self.denominator);
        let minor = product.div_ceil(u128::from(self.numerator));
        let minor = u64::try_from(minor).map_err(|_| offpay_money::MoneyError::TooLarge)?;
        Ok(Amount::from_minor(minor, self.from)?)
    }

    fn check(&self, currency_matches: bool) -> Result<(), crate::error::Error> {
        if self.numerator == 0 || self.denominator == 0 {
            return Err(Misuse::BadConfig.into());
        }
        if !currency_matches {
            return Err(Misuse::CurrencyMismatch.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kes(text: &str) -> Amount {
        Amount::parse(text, Currency::KES).unwrap()
    }

    #[test]
    fn limits_refuse_by_kind() {
        let payee = AccountNumber::parse("901020377865").unwrap();
        let other = AccountNumber::parse("901020377866").unwrap();
        let limits = Limits {
            per_payment: Some(kes("1000")),
            per_day: Some(kes("1500")),
            per_week: Some(kes("5000")),
            per_payee: alloc::vec![PayeeLimit {
                payee,
                per_day: kes("300"),
            }],
        };
        let spent = Spending {
            today: kes("600"),
            this_week: kes("4500"),
        };
        let zero = kes("0");
        assert_eq!(
            limits.check(&kes("1001"), &Spending::none(Currency::KES), &other, &zero),
            Err(Refusal::PerPaymentLimit)
        );
        assert_eq!(
            limits.check(&kes("901"), &spent, &other, &zero),
            Err(Refusal::DailyLimit)
        );
        assert_eq!(
            limits.check(
                &kes("600"),
                &Spending {
                    today: kes("0"),
                    ..spent
                },
                &other,
                &zero
            ),
            Err(Refusal::WeeklyLimit)
        );
        assert_eq!(
            limits.check(&kes("301"), &Spending::none(Currency::KES), &payee, &zero),
            Err(Refusal::PayeeLimit)
        );
        assert_eq!(
            limits.check(
                &kes("100"),
                &Spending::none(Currency::KES),
                &payee,
                &kes("200")
            ),
            Ok(())
        );
        assert_eq!(
            limits.check(
                &kes("101"),
                &Spending::none(Currency::KES),
                &payee,
                &kes("200")
            ),
            Err(Refusal::PayeeLimit)
        );
    }

    #[test]
    fn rates_round_in_the_floats_favour() {
        // 1 USD cent = 129.5 KES cents: 259/2.
        let rate = ExchangeRate {
            from: Currency::USD,
            to: Currency::KES,
            numerator: 259,
            denominator: 2,
        };
        let usd = Amount::parse("0.01", Currency::USD).unwrap();
        assert_eq!(rate.convert_down(&usd).unwrap(), kes("1.29"));
        assert_eq!(
            rate.cost_up(&kes("1.30")).unwrap(),
            Amount::parse("0.02", Currency::USD).unwrap()
        );
        assert!(rate.convert_down(&kes("1")).is_err());
    }
}
