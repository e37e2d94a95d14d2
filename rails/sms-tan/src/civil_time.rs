//! Dates and times as people type them in a scheduled payment, and their conversion to Unix
//! seconds in the operator's time zone (a fixed offset: the server passes it in).

use core::fmt;

use crate::error::ParseError;

/// Seconds since 1970-01-01T00:00:00Z. Time comes in from the caller; this crate reads no clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixSeconds(pub u64);

/// Earliest year a scheduled payment may name.
pub const YEAR_MIN: u16 = 2000;
/// Latest year a scheduled payment may name.
pub const YEAR_MAX: u16 = 2199;
const SECONDS_PER_DAY: i64 = 86_400;

/// A local date and minute, as typed: `2026-12-01 14:30`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDateTime {
    /// Year, [`YEAR_MIN`]..=[`YEAR_MAX`].
    pub year: u16,
    /// Month 1–12.
    pub month: u8,
    /// Day 1–31 (checked against the month).
    pub day: u8,
    /// Hour 0–23.
    pub hour: u8,
    /// Minute 0–59.
    pub minute: u8,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(i64::from(year)) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_shifted = (month + 9) % 12;
    let day_of_year = (153 * month_shifted + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

impl CivilDateTime {
    /// A checked date and time.
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8) -> Option<CivilDateTime> {
        let valid = (YEAR_MIN..=YEAR_MAX).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour <= 23
            && minute <= 59;
        valid.then_some(CivilDateTime {
            year,
            month,
            day,
            hour,
            minute,
        })
    }

    /// The local time in a zone `utc_offset_minutes` east of UTC at `at` (for statements).
    /// `None` outside [`YEAR_MIN`]..=[`YEAR_MAX`].
    pub fn from_unix(at: UnixSeconds, utc_offset_minutes: i32) -> Option<CivilDateTime> {
        let local = i64::try_from(at.0).ok()? + i64::from(utc_offset_minutes) * 60;
        let days = local.div_euclid(SECONDS_PER_DAY);
        let seconds = local.rem_euclid(SECONDS_PER_DAY);
        // H. Hinnant's civil_from_days.
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_shifted = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_shifted + 2) / 5 + 1;
        let month = if month_shifted < 10 {
            month_shifted + 3
        } else {
            month_shifted - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        CivilDateTime::new(
            u16::try_from(year).ok()?,
            u8::try_from(month).ok()?,
            u8::try_from(day).ok()?,
            u8::try_from(seconds / 3600).ok()?,
            u8::try_from(seconds % 3600 / 60).ok()?,
        )
    }

    /// Unix seconds of this local time in a zone `utc_offset_minutes` east of UTC.
    pub fn to_unix(&self, utc_offset_minutes: i32) -> UnixSeconds {
        let days = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        let local =
            days * SECONDS_PER_DAY + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60;
        let utc = local - i64::from(utc_offset_minutes) * 60;
        // YEAR_MIN is after 1970, so the result is positive for any offset a zone can have.
        UnixSeconds(u64::try_from(utc).unwrap_or(0))
    }

    /// Parses a date token: `2026-12-01`, `20261201`, `01/12/2026`, `01.12.2026` or `01-12-2026`.
    pub fn parse_date(text: &str) -> Result<(u16, u8, u8), ParseError> {
        let parts: alloc::vec::Vec<&str> = text.split(['-', '/', '.']).collect();
        let number = |part: &str| -> Result<u32, ParseError> {
            if part.is_empty() || part.len() > 4 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::BadDateTime);
            }
            part.parse().map_err(|_| ParseError::BadDateTime)
        };
        let (year, month, day) = match parts.as_slice() {
            [compact] if compact.len() == 8 => {
                let value = number(&compact[..4])?;
                (value, number(&compact[4..6])?, number(&compact[6..])?)
            }
            [year, month, day] if year.len() == 4 => (number(year)?, number(month)?, number(day)?),
            [day, month, year] if year.len() == 4 => (number(year)?, number(month)?, number(day)?),
            _ => return Err(ParseError::BadDateTime),
        };
        let year = u16::try_from(year).map_err(|_| ParseError::BadDateTime)?;
        let month = u8::try_from(month).map_err(|_| ParseError::BadDateTime)?;
        let day = u8::try_from(day).map_err(|_| ParseError::BadDateTime)?;
        CivilDateTime::new(year, month, day, 0, 0).ok_or(ParseError::BadDateTime)?;
        Ok((year, month, day))
    }

    /// Parses a time token: `14:30`, `1430`, `14.30` or `14h30`.
    pub fn parse_time(text: &str) -> Result<(u8, u8), ParseError> {
        let digits: alloc::string::String = text
            .chars()
            .filter(|character| !matches!(character, ':' | '.' | 'h' | 'H'))
            .collect();
        let separators = text.len() - digits.len();
        if separators > 1
            || !(3..=4).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ParseError::BadDateTime);
        }
        let split = digits.len() - 2;
        let hour: u8 = digits[..split]
            .parse()
            .map_err(|_| ParseError::BadDateTime)?;
        let minute: u8 = digits[split..]
            .parse()
            .map_err(|_| ParseError::BadDateTime)?;
        if hour > 23 || minute > 59 {
            return Err(ParseError::BadDateTime);
        }
        Ok((hour, minute))
    }
}

impl fmt::Display for CivilDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn from_unix_inverts_to_unix() {
        for (offset, text) in [
            (0, (2026u16, 12u8, 1u8, 9u8, 0u8)),
            (180, (2000, 2, 29, 23, 59)),
            (-300, (2199, 12, 31, 0, 1)),
        ] {
            let civil = super::CivilDateTime::new(text.0, text.1, text.2, text.3, text.4).unwrap();
            assert_eq!(
                super::CivilDateTime::from_unix(civil.to_unix(offset), offset),
                Some(civil)
            );
        }
    }

    use super::*;

    #[test]
    fn unix_conversion_matches_known_instants() {
        let new_year = CivilDateTime::new(2026, 1, 1, 0, 0).unwrap();
        assert_eq!(new_year.to_unix(0), UnixSeconds(1_767_225_600));
        // Nairobi is UTC+3: local midnight is 21:00 the day before in UTC.
        assert_eq!(new_year.to_unix(180), UnixSeconds(1_767_225_600 - 3 * 3600));
        let leap = CivilDateTime::new(2028, 2, 29, 12, 30).unwrap();
        assert_eq!(leap.to_unix(0), UnixSeconds(1_835_440_200));
        assert!(CivilDateTime::new(2027, 2, 29, 0, 0).is_none());
    }

    #[test]
    fn dates_and_times_parse_as_typed() {
        assert_eq!(CivilDateTime::parse_date("2026-12-01"), Ok((2026, 12, 1)));
        assert_eq!(CivilDateTime::parse_date("20261201"), Ok((2026, 12, 1)));
        assert_eq!(CivilDateTime::parse_date("01/12/2026"), Ok((2026, 12, 1)));
        assert!(CivilDateTime::parse_date("2026-13-01").is_err());
        assert!(CivilDateTime::parse_date("12/01").is_err());
        assert_eq!(CivilDateTime::parse_time("14:30"), Ok((14, 30)));
        assert_eq!(CivilDateTime::parse_time("0930"), Ok((9, 30)));
        assert_eq!(CivilDateTime::parse_time("9h30"), Ok((9, 30)));
        assert!(CivilDateTime::parse_time("24:00").is_err());
        assert!(CivilDateTime::parse_time("1:2:3").is_err());
    }
}
