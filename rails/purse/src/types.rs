//! Small value types: phone numbers, purse and operator ids, time, PINs and codes.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::PurseError;
use crate::params::{CODE_DIGITS, PIN_DIGITS_MAX, PIN_DIGITS_MIN};

/// Most digits of an E.164 number.
pub const PHONE_DIGITS_MAX: usize = 15;
/// Fewest digits we accept in an E.164 number.
pub const PHONE_DIGITS_MIN: usize = 7;
/// Bytes of a phone number in MAC inputs and messages (big-endian; 10^15 < 2^56).
pub const PHONE_BYTES: usize = 7;
const _: () = assert!(10u64.pow(PHONE_DIGITS_MAX as u32) < (1u64 << (8 * PHONE_BYTES)));

/// An E.164 phone number such as `+254700000001`, held as the integer its digits spell. E.164
/// numbers never start with 0, so the integer gives back the digits exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Phone(u64);

impl Phone {
    /// Reads `+` followed by 7 to 15 digits, the first not 0.
    pub fn parse(text: &str) -> Result<Phone, PurseError> {
        let digits = text.strip_prefix('+').ok_or(PurseError::PhoneNumber)?;
        if !(PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len())
            || !digits.bytes().all(|byte| byte.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(PurseError::PhoneNumber);
        }
        let mut value: u64 = 0;
        for byte in digits.bytes() {
            value = value * 10 + u64::from(byte - b'0');
        }
        Ok(Phone(value))
    }

    /// Reads a number as people type it on a phone whose own number is `home`: the
    /// international form (`+254700000001`), with `00` for `+`, or the national form
    /// (`0700000001`), whose leading 0 stands for `home`'s country code. The country code is what
    /// `home` has in front of a national number as long as the one typed, so it must be 1 to 3
    /// digits; anything else is refused rather than guessed. Spaces and dashes are ignored.
    pub fn parse_from(text: &str, home: Phone) -> Result<Phone, PurseError> {
        let compact: alloc::string::String =
            text.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if compact.starts_with('+') {
            return Phone::parse(&compact);
        }
        if let Some(rest) = compact.strip_prefix("00") {
            return Phone::parse(&alloc::format!("+{rest}"));
        }
        let national = compact.strip_prefix('0').ok_or(PurseError::PhoneNumber)?;
        if national.is_empty() || national.starts_with('0') {
            return Err(PurseError::PhoneNumber);
        }
        let home_digits = alloc::format!("{}", home.0);
        let country_digits = home_digits
            .len()
            .checked_sub(national.len())
            .filter(|length| (1..=3).contains(length))
            .ok_or(PurseError::PhoneNumber)?;
        Phone::parse(&alloc::format!(
            "+{}{national}",
            &home_digits[..country_digits]
        ))
    }

    /// The number from its integer form (as carried in messages); checks the digit count.
    pub fn from_number(value: u64) -> Result<Phone, PurseError> {
        let digits = decimal_digits(value);
        if !(PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits) {
            return Err(PurseError::PhoneNumber);
        }
        Ok(Phone(value))
    }

    /// The integer the digits spell.
    pub fn number(&self) -> u64 {
        self.0
    }

    /// Seven big-endian bytes.
    pub fn to_bytes(&self) -> [u8; PHONE_BYTES] {
        let wide = self.0.to_be_bytes();
        let mut out = [0u8; PHONE_BYTES];
        out.copy_from_slice(&wide[8 - PHONE_BYTES..]);
        out
    }
}

fn decimal_digits(mut value: u64) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl core::str::FromStr for Phone {
    type Err = PurseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Phone::parse(text)
    }
}

/// The operator's number for a purse, assigned at provisioning.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PurseId(pub u64);

impl fmt::Display for PurseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Longest operator id, in bytes.
pub const OPERATOR_ID_BYTES_MAX: usize = 16;

/// Names the operator a purse belongs to (e.g. `acme-ke`): 1 to 16 ASCII letters, digits, `-` or
/// `.`. It is bound into every key derivation and every purse file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorId {
    bytes: [u8; OPERATOR_ID_BYTES_MAX],
    length: u8,
}

impl OperatorId {
    /// Checks and wraps an operator id.
    pub fn new(text: &str) -> Result<OperatorId, PurseError> {
        let raw = text.as_bytes();
        if raw.is_empty()
            || raw.len() > OPERATOR_ID_BYTES_MAX
            || !raw
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'-' || *byte == b'.')
        {
            return Err(PurseError::Malformed("operator id"));
        }
        let mut bytes = [0u8; OPERATOR_ID_BYTES_MAX];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(OperatorId {
            bytes,
            length: raw.len() as u8,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.length)]
    }
}

impl fmt::Debug for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for OperatorId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for OperatorId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <alloc::string::String as serde::Deserialize>::deserialize(deserializer)?;
        OperatorId::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Seconds since 1970-01-01T00:00:00Z, as the caller's clock says. The purse never reads a clock.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `self + seconds`, saturating.
    pub fn plus_seconds(self, seconds: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(seconds))
    }
}

/// `2026-12-07 01:30 UTC`: the proleptic Gregorian date of the day count, then the time of day.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86_400;
        let seconds_of_day = self.0 % 86_400;
        // Days since 0000-03-01 in 400-year eras of 146,097 days (March-based years put the
        // leap day last).
        let shifted = days + 719_468;
        let era = shifted / 146_097;
        let day_of_era = shifted % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = era * 400 + year_of_era + u64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
            seconds_of_day / 3_600,
            seconds_of_day % 3_600 / 60
        )
    }
}

/// What kind of purse: agents are ordinary purses with a large float and higher limits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PurseKind {
    /// A customer or merchant.
    Customer,
    /// A cash-in/cash-out agent.
    Agent,
}

impl PurseKind {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            PurseKind::Customer => 1,
            PurseKind::Agent => 2,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Result<PurseKind, PurseError> {
        match byte {
            1 => Ok(PurseKind::Customer),
            2 => Ok(PurseKind::Agent),
            _ => Err(PurseError::Malformed("purse kind")),
        }
    }
}

/// A PIN of 4 to 6 digits. Compared in constant time; never shown by `Debug`; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin {
    digits: [u8; PIN_DIGITS_MAX],
    length: u8,
}

impl Pin {
    /// Reads a PIN of 4 to 6 digits.
    pub fn parse(text: &str) -> Result<Pin, PurseError> {
        let raw = text.as_bytes();
        if !(PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&raw.len())
            || !raw.iter().all(u8::is_ascii_digit)
        {
            return Err(PurseError::PinFormat);
        }
        let mut digits = [0u8; PIN_DIGITS_MAX];
        digits[..raw.len()].copy_from_slice(raw);
        Ok(Pin {
            digits,
            length: raw.len() as u8,
        })
    }

    /// Constant-time equality (length included).
    pub fn matches(&self, other: &Pin) -> bool {
        let same_digits = self.digits.ct_eq(&other.digits);
        let same_length = self.length.ct_eq(&other.length);
        bool::from(same_digits & same_length)
    }

    pub(crate) fn to_bytes(&self) -> [u8; PIN_DIGITS_MAX + 1] {
        let mut out = [0u8; PIN_DIGITS_MAX + 1];
        out[0] = self.length;
        out[1..].copy_from_slice(&self.digits);
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Pin, PurseError> {
        if bytes.len() != PIN_DIGITS_MAX + 1 {
            return Err(PurseError::Malformed("PIN"));
        }
        let length = usize::from(bytes[0]);
        let digits = &bytes[1..];
        if !(PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&length)
            || !digits[..length].iter().all(u8::is_ascii_digit)
        {
            return Err(PurseError::Malformed("PIN"));
        }
        let mut out = [0u8; PIN_DIGITS_MAX];
        out.copy_from_slice(digits);
        Ok(Pin {
            digits: out,
            length: bytes[0],
        })
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// An 8-digit code as people read it: two groups of four, `3651 7623`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code {
    digits: [u8; CODE_DIGITS],
}

impl Code {
    /// Reads 8 digits; spaces anywhere are ignored (people type `3651 7623`), anything else is an
    /// error that names the character.
    pub fn parse(text: &str) -> Result<Code, PurseError> {
        let mut digits = [0u8; CODE_DIGITS];
        let mut found = 0usize;
        for (index, character) in text.chars().enumerate() {
            if character == ' ' {
                continue;
            }
            let Some(value) = character
                .to_digit(10)
                .filter(|_| character.is_ascii_digit())
            else {
                return Err(PurseError::CodeCharacter {
                    position: index + 1,
                    character,
                });
            };
            if found < CODE_DIGITS {
                digits[found] = value as u8;
            }
            found += 1;
        }
        if found != CODE_DIGITS {
            return Err(PurseError::CodeLength {
                expected: CODE_DIGITS,
                found,
            });
        }
        Ok(Code { digits })
    }

    /// The code whose first `nonce_digits` digits spell `nonce` and whose remaining digits spell
    /// `tag`, both zero-padded.
    pub(crate) fn from_parts(nonce: u32, nonce_digits: u32, tag: u32) -> Code {
        let mut digits = [0u8; CODE_DIGITS];
        let mut value =
            u64::from(nonce) * 10u64.pow(CODE_DIGITS as u32 - nonce_digits) + u64::from(tag);
        for slot in digits.iter_mut().rev() {
            *slot = (value % 10) as u8;
            value /= 10;
        }
        Code { digits }
    }

    /// The first `count` digits as a number.
    pub(crate) fn leading(&self, count: u32) -> u32 {
        self.digits[..count as usize]
            .iter()
            .fold(0u32, |acc, digit| acc * 10 + u32::from(*digit))
    }

    /// The digits after the first `count` as a number.
    pub(crate) fn trailing_after(&self, count: u32) -> u32 {
        self.digits[count as usize..]
            .iter()
            .fold(0u32, |acc, digit| acc * 10 + u32::from(*digit))
    }

    /// The 8 digits as one number (for compact storage).
    pub fn as_number(&self) -> u32 {
        self.leading(CODE_DIGITS as u32)
    }

    /// The code from its number form; refuses values above 99,999,999.
    pub fn from_number(value: u32) -> Result<Code, PurseError> {
        if value >= 10u32.pow(CODE_DIGITS as u32) {
            return Err(PurseError::Malformed("code"));
        }
        Ok(Code::from_parts(0, 0, value))
    }

    /// The 8 digits without a space, as typed on the command line.
    pub fn digits(&self) -> [u8; CODE_DIGITS] {
        let mut out = [0u8; CODE_DIGITS];
        for (slot, digit) in out.iter_mut().zip(self.digits) {
            *slot = b'0' + digit;
        }
        out
    }
}

impl fmt::Display for Code {
    /// `3651 7623`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, digit) in self.digits.iter().enumerate() {
            if index == CODE_DIGITS / 2 {
                f.write_str(" ")?;
            }
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({self})")
    }
}

impl core::str::FromStr for Code {
    type Err = PurseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Code::parse(text)
    }
}

/// A source of randomness, passed in by the caller (the purse never asks the system).
pub trait RandomSource {
    /// Fills `out` with uniformly random bytes.
    fn fill_bytes(&mut self, out: &mut [u8]);
}

/// The operating system's random generator.
#[cfg(feature = "std")]
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRandom;

#[cfg(feature = "std")]
impl RandomSource for SystemRandom {
    fn fill_bytes(&mut self, out: &mut [u8]) {
        // The OS generator failing is not recoverable for a payment device.
        #[allow(clippy::expect_used)]
        getrandom::fill(out).expect("the operating system's random generator failed");
    }
}

/// A deterministic generator (SplitMix64) for tests and the simulator. Not for production keys.
#[derive(Debug, Clone)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RandomSource for SeededRandom {
    fn fill_bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A uniform draw below `bound` (bias at most bound / 2^64).
pub(crate) fn draw_below(random: &mut dyn RandomSource, bound: u32) -> u32 {
    let mut bytes = [0u8; 8];
    random.fill_bytes(&mut bytes);
    (u64::from_be_bytes(bytes) % u64::from(bound)) as u32
}
