//! Spending windows: what an account paid in the current day and week of the operator's time
//! zone. The window is kept in the account record and moved in the same batch as every payment;
//! this module is the only place it is computed ([`SpendingWindow::current`]), handed to the
//! engine's limit check ([`SpendingWindow::spending`], [`SpendingWindow::paid_today_to`]) and
//! updated ([`SpendingWindow::record`]).

use offpay_ledger::{Amount, Currency};

use crate::account::{Limits, Spending};
use crate::civil_time::UnixSeconds;
use crate::numbers::AccountNumber;

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

    /// Counts a payment of `amount` (the account's currency) to `payee` at `now` under the
    /// account's `limits`: the per-payee sum is kept only for a payee they cap.
    pub fn record_payment(
        &mut self,
        limits: &Limits,
        payee: &AccountNumber,
        amount: Amount,
        now: UnixSeconds,
        utc_offset_minutes: i32,
    ) {
        let limited = limits.per_payee.iter().any(|limit| limit.payee == *payee);
        self.record(payee, amount, limited, now, utc_offset_minutes);
    }

    /// Counts a payment of `amount` to `payee` at `now`; the per-payee sum is kept only when
    /// `payee_limited` (the account has a per-payee limit for it).
    pub fn record(
        &mut self,
        payee: &AccountNumber,
        amount: Amount,
        payee_limited: bool,
        now: UnixSeconds,
        utc_offset_minutes: i32,
    ) {
        let mut current = self.current(now, utc_offset_minutes);
        current.today = add_saturating(current.today, amount);
        current.this_week = add_saturating(current.this_week, amount);
        if payee_limited {
            match current
                .per_payee_today
                .iter_mut()
                .find(|(number, _)| number == payee)
            {
                Some((_, paid)) => *paid = add_saturating(*paid, amount),
                None => current.per_payee_today.push((*payee, amount)),
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
        window.record(&payee, kes(500), false, monday, 0);
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
    fn per_payee_sums_are_kept_for_limited_payees_only_and_reset_daily() {
        let mut window = SpendingWindow::empty(Currency::KES);
        let limited = AccountNumber::parse("901020377865").unwrap();
        let other = AccountNumber::parse("555566667777").unwrap();
        let now = UnixSeconds(1_790_000_000);
        window.record(&limited, kes(100), true, now, 0);
        window.record(&limited, kes(50), true, now, 0);
        window.record(&other, kes(70), false, now, 0);
        assert_eq!(window.paid_today_to(&limited, now, 0).minor(), 150);
        assert_eq!(window.paid_today_to(&other, now, 0).minor(), 0);
        assert_eq!(window.spending(now, 0).today.minor(), 220);
        let tomorrow = UnixSeconds(now.0 + 86_400);
        assert_eq!(window.paid_today_to(&limited, tomorrow, 0).minor(), 0);
        // Sums saturate instead of wrapping.
        window.record(&other, kes(Amount::MAX_MINOR), false, now, 0);
        assert_eq!(window.today.minor(), Amount::MAX_MINOR);
    }
}
