//! Spending windows: what an account paid in the current day and week of the operator's time
//! zone. The window is kept in the account record and moved in the same batch as every payment;
//! this module is the only place it is computed ([`SpendingWindow::current`]), handed to the
//! engine's limit check ([`SpendingWindow::spending`], [`SpendingWindow::paid_today_to`]) and
//! updated ([`SpendingWindow::record_payment`]).

use offpay_ledger::{Amount, Currency};

use crate::account::{Limits, Spending};
use crate::civil_time::UnixSeconds;
use crate::numbers::AccountNumber;
use crate::posting::{LedgerAccount, Posting, PostingKind};

/// Payees whose sum paid today an account keeps.
pub const PAYEES_PAID_PER_DAY_MAX: usize = 64;
// Every capped payee fits, whatever else was paid.
const _: () = assert!(crate::limits::PAYEE_LIMITS_MAX < PAYEES_PAID_PER_DAY_MAX);

const SECONDS_PER_DAY: i64 = 86_400;
const DAYS_PER_WEEK: i64 = 7;
/// 1970-01-01 was a Thursday: shifting day numbers by this many makes weeks start on Monday.
const MONDAY_SHIFT_DAYS: i64 = 3;

/// The local day and week numbers at `now` (days since 1970-01-01, weeks starting on Monday).
pub fn day_and_week(now: UnixSeconds, utc_offset_minutes: i32) -> (i64, i64) {
    let local = i64::try_from(now.0).unwrap_or(i64::MAX / 2) + i64::from(utc_offset_minutes) * 60;
    let day = local.div_euclid(SECONDS_PER_DAY);
    (day, (day + MONDAY_SHIFT_DAYS).div_euclid(DAYS_PER_WEEK))
}

/// The payment `postings` make, as spending windows count it: the payer, the payee and the amount
/// debited in the payer's currency (fees excluded; across currencies, the exchange leg out).
pub fn payment_of(postings: &[Posting]) -> Option<(AccountNumber, AccountNumber, Amount)> {
    let main = postings.iter().find(|posting| {
        matches!(
            posting.kind,
            PostingKind::Payment | PostingKind::ExchangeOut
        )
    })?;
    let LedgerAccount::Customer(payer) = main.debit else {
        return None;
    };
    let payee = postings
        .iter()
        .find_map(|posting| match (posting.kind, posting.credit) {
            (PostingKind::Payment | PostingKind::ExchangeIn, LedgerAccount::Customer(payee)) => {
                Some(payee)
            }
            _ => None,
        })?;
    Some((payer, payee, main.amount))
}

/// Paid in the window starting at `day` / `week`, fees excluded, in the account's currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendingWindow {
    /// Day number the `today` and per-payee sums belong to.
    pub day: i64,
    /// Paid that day.
    pub today: Amount,
    /// Week number `this_week` belongs to.
    pub week: i64,
    /// Paid that week.
    pub this_week: Amount,
    /// Paid that day to payees that have a per-payee limit.
    pub per_payee_today: Vec<(AccountNumber, Amount)>,
}

fn add_saturating(total: Amount, more: Amount) -> Amount {
    total.checked_add(more).unwrap_or_else(|_| {
        Amount::from_minor(Amount::MAX_MINOR, total.currency()).unwrap_or(total)
    })
}

impl SpendingWindow {
    /// Nothing paid yet.
    pub fn empty(currency: Currency) -> SpendingWindow {
        SpendingWindow {
            day: 0,
            today: Amount::zero(currency),
            week: 0,
            this_week: Amount::zero(currency),
            per_payee_today: Vec::new(),
        }
    }

    /// The window as of `now`: a new day or week starts from zero.
    pub fn current(&self, now: UnixSeconds, utc_offset_minutes: i32) -> SpendingWindow {
        let (day, week) = day_and_week(now, utc_offset_minutes);
        let mut current = self.clone();
        if current.day != day {
            current.day = day;
            current.today = Amount::zero(self.today.currency());
            current.per_payee_today.clear();
        }
        if current.week != week {
            current.week = week;
            current.this_week = Amount::zero(self.this_week.currency());
        }
        current
    }

    /// What the engine checks the daily and weekly limits against, as of `now`.
    pub fn spending(&self, now: UnixSeconds, utc_offset_minutes: i32) -> Spending {
        let current = self.current(now, utc_offset_minutes);
        Spending {
            today: current.today,
            this_week: current.this_week,
        }
    }

    /// What was paid to `payee` today (for per-payee limits), as of `now`.
    pub fn paid_today_to(
        &self,
        payee: &AccountNumber,
        now: UnixSeconds,
        utc_offset_minutes: i32,
    ) -> Amount {
        self.current(now, utc_offset_minutes)
            .per_payee_today
            .iter()
            .find(|(number, _)| number == payee)
            .map_or(Amount::zero(self.today.currency()), |(_, paid)| *paid)
    }

    /// Counts a payment of `amount` (the account's currency) to `payee` at `now`. The sum paid
    /// to each payee today is kept for every payee, not only those `limits` cap now, so a cap the
    /// holder sets in the afternoon counts the morning's payments too; at most
    /// [`PAYEES_PAID_PER_DAY_MAX`] payees are kept, and a capped payee always is (an uncapped one
    /// makes room).
    pub fn record_payment(
        &mut self,
        limits: &Limits,
        payee: &AccountNumber,
        amount: Amount,
        now: UnixSeconds,
        utc_offset_minutes: i32,
    ) {
        let capped =
            |number: &AccountNumber| limits.per_payee.iter().any(|limit| limit.payee == *number);
        let mut current = self.current(now, utc_offset_minutes);
        current.today = add_saturating(current.today, amount);
        current.this_week = add_saturating(current.this_week, amount);
        let paid = &mut current.per_payee_today;
        match paid.iter_mut().find(|(number, _)| number == payee) {
            Some((_, sum)) => *sum = add_saturating(*sum, amount),
            None => {
                if paid.len() >= PAYEES_PAID_PER_DAY_MAX
                    && capped(payee)
                    && let Some(uncapped) = paid.iter().position(|(number, _)| !capped(number))
                {
                    paid.remove(uncapped);
                }
                if paid.len() < PAYEES_PAID_PER_DAY_MAX {
                    paid.push((*payee, amount));
                }
            }
        }
        *self = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::civil_time::CivilDateTime;

    fn kes(minor: u64) -> Amount {
        Amount::from_minor(minor, Currency::KES).unwrap()
    }

    #[test]
    fn spending_rolls_over_at_local_midnight_and_on_mondays() {
        let mut window = SpendingWindow::empty(Currency::KES);
        let payee = AccountNumber::parse("901020377865").unwrap();
        // 2026-11-30 is a Monday; 10:00 UTC.
        let monday = CivilDateTime::new(2026, 11, 30, 10, 0).unwrap().to_unix(0);
        window.record_payment(&Limits::default(), &payee, kes(500), monday, 0);
        let spending = window.spending(monday, 0);
        assert_eq!(
            (spending.today.minor(), spending.this_week.minor()),
            (500, 500)
        );
        let tuesday = UnixSeconds(monday.0 + 86_400);
        let spending = window.spending(tuesday, 0);
        assert_eq!(
            (spending.today.minor(), spending.this_week.minor()),
            (0, 500)
        );
        let next_monday = UnixSeconds(monday.0 + 7 * 86_400);
        assert_eq!(window.spending(next_monday, 0).this_week.minor(), 0);
        // In UTC+3, 22:00 UTC Monday is already Tuesday.
        let late = UnixSeconds(monday.0 + 12 * 3600);
        assert_eq!(window.spending(late, 180).today.minor(), 0);
    }

    #[test]
    fn per_payee_sums_count_before_a_cap_is_set_and_reset_daily() {
        let mut window = SpendingWindow::empty(Currency::KES);
        let payee = AccountNumber::parse("901020377865").unwrap();
        let now = UnixSeconds(1_790_000_000);
        let none = Limits::default();
        window.record_payment(&none, &payee, kes(100), now, 0);
        window.record_payment(&none, &payee, kes(50), now, 0);
        assert_eq!(window.paid_today_to(&payee, now, 0).minor(), 150);
        assert_eq!(window.spending(now, 0).today.minor(), 150);
        let tomorrow = UnixSeconds(now.0 + 86_400);
        assert_eq!(window.paid_today_to(&payee, tomorrow, 0).minor(), 0);
        // Sums saturate instead of wrapping.
        window.record_payment(&none, &payee, kes(Amount::MAX_MINOR), now, 0);
        assert_eq!(window.today.minor(), Amount::MAX_MINOR);
    }

    #[test]
    fn a_capped_payee_is_kept_when_many_others_were_paid() {
        let mut window = SpendingWindow::empty(Currency::KES);
        let now = UnixSeconds(1_790_000_000);
        let none = Limits::default();
        for index in 0..PAYEES_PAID_PER_DAY_MAX as u64 + 5 {
            let payee = AccountNumber::from_value(100_000_000_000 + index).unwrap();
            window.record_payment(&none, &payee, kes(1), now, 0);
        }
        assert_eq!(window.per_payee_today.len(), PAYEES_PAID_PER_DAY_MAX);
        let capped = AccountNumber::parse("901020377865").unwrap();
        let limits = Limits {
            per_payee: vec![crate::account::PayeeLimit {
                payee: capped,
                per_day: kes(1000),
            }],
            ..Limits::default()
        };
        window.record_payment(&limits, &capped, kes(7), now, 0);
        assert_eq!(window.paid_today_to(&capped, now, 0).minor(), 7);
        assert_eq!(window.per_payee_today.len(), PAYEES_PAID_PER_DAY_MAX);
        assert_eq!(window.today.minor(), PAYEES_PAID_PER_DAY_MAX as u64 + 5 + 7);
    }
}
