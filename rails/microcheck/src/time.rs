//! Time as the rail writes it: whole seconds since the Unix epoch inside the code, and fixed-width
//! UTC text in KeyNote attributes. KeyNote integers are 32-bit (they end in 2038), so credentials
//! compare times as 14-digit strings `YYYYMMDDhhmmss`, which order correctly byte by byte.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixSeconds(pub u64);

/// Seconds in a day.
pub const SECONDS_PER_DAY: u64 = 86_400;
/// Last second the text form can write (9999-12-31T23:59:59Z).
pub const UNIX_SECONDS_MAX: u64 = 253_402_300_799;

impl UnixSeconds {
    /// `self + seconds`, saturating at [`UNIX_SECONDS_MAX`].
    pub fn plus(self, seconds: u64) -> UnixSeconds {
        UnixSeconds(self.0.saturating_add(seconds).min(UNIX_SECONDS_MAX))
    }

    /// `self - seconds`, saturating at zero.
    pub fn minus(self, seconds: u64) -> UnixSeconds {
        UnixSeconds(self.0.saturating_sub(seconds))
    }

    /// The 14-digit UTC text `YYYYMMDDhhmmss`.
    pub fn stamp(self) -> String {
        let (year, month, day) = civil_from_days(self.0.min(UNIX_SECONDS_MAX) / SECONDS_PER_DAY);
        let rest = self.0 % SECONDS_PER_DAY;
        format!(
            "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
            rest / 3600,
            rest / 60 % 60,
            rest % 60
        )
    }

    /// The 8-digit UTC date `YYYYMMDD` (the paper's `date` attribute).
    pub fn date(self) -> String {
        let (year, month, day) = civil_from_days(self.0.min(UNIX_SECONDS_MAX) / SECONDS_PER_DAY);
        format!("{year:04}{month:02}{day:02}")
    }

    /// Parses `YYYYMMDDhhmmss`; `None` unless it is exactly 14 digits naming a real second.
    pub fn parse_stamp(text: &str) -> Option<UnixSeconds> {
        let bytes = text.as_bytes();
        if bytes.len() != 14 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let number = |range: core::ops::Range<usize>| text[range].parse::<u64>().ok();
        let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
        let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
        if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month)
        {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(UnixSeconds(
            days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second,
        ))
    }
}

/// A length of time for people: `2 hours`, `15 minutes`, `90 seconds` (the largest unit that
/// divides it exactly).
pub fn duration_words(seconds: u64) -> String {
    let (count, unit) = if seconds != 0 && seconds.is_multiple_of(86_400) {
        (seconds / 86_400, "day")
    } else if seconds != 0 && seconds.is_multiple_of(3600) {
        (seconds / 3600, "hour")
    } else if seconds != 0 && seconds.is_multiple_of(60) {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

impl fmt::Display for UnixSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stamp = self.stamp();
        write!(
            f,
            "{}-{}-{} {}:{}:{} UTC",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8],
            &stamp[8..10],
            &stamp[10..12],
            &stamp[12..14]
        )
    }
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-date algorithms, for dates from 1970 on (no negative values).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(UnixSeconds(0).stamp(), "19700101000000");
        assert_eq!(UnixSeconds(972_259_200).date(), "20001023");
        assert_eq!(UnixSeconds(1_709_210_096).stamp(), "20240229123456");
        assert_eq!(
            UnixSeconds::parse_stamp("20240229123456"),
            Some(UnixSeconds(1_709_210_096))
        );
        assert_eq!(UnixSeconds::parse_stamp("20230229123456"), None);
        assert_eq!(UnixSeconds::parse_stamp("2024022912345"), None);
        assert_eq!(UnixSeconds::parse_stamp("2024022912345x"), None);
        assert_eq!(UnixSeconds::parse_stamp("20240229243456"), None);
        assert_eq!(UnixSeconds(UNIX_SECONDS_MAX).stamp(), "99991231235959");
    }

    proptest::proptest! {
        #[test]
        fn stamp_round_trips_and_orders(a in 0u64..UNIX_SECONDS_MAX, b in 0u64..UNIX_SECONDS_MAX) {
            let (x, y) = (UnixSeconds(a), UnixSeconds(b));
            proptest::prop_assert_eq!(UnixSeconds::parse_stamp(&x.stamp()), Some(x));
            proptest::prop_assert_eq!(x.stamp().cmp(&y.stamp()), a.cmp(&b));
            proptest::prop_assert_eq!(&x.stamp()[..8], x.date());
        }
    }
}
