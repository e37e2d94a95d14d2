//! The numbers people type: envelope ids, account numbers, TANs, phone numbers.

use alloc::string::String;
use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::ParseError;
use crate::limits::{ACCOUNT_NUMBER_DIGITS, EUIN_DIGITS, TAN_DIGITS};

/// Digits (0–9 values, not ASCII) from a string that must be exactly `N` decimal digits.
fn digits_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut digits = [0u8; N];
    for (slot, byte) in digits.iter_mut().zip(bytes) {
        *slot = byte - b'0';
    }
    Some(digits)
}

fn write_digits(f: &mut fmt::Formatter<'_>, digits: &[u8]) -> fmt::Result {
    for digit in digits {
        write!(f, "{digit}")?;
    }
    Ok(())
}

/// An envelope unique identification number, printed on the outside of the envelope.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Euin([u8; EUIN_DIGITS]);

impl Euin {
    /// Parses exactly [`EUIN_DIGITS`] digits.
    pub fn parse(text: &str) -> Result<Euin, ParseError> {
        digits_exact(text).map(Euin).ok_or(ParseError::BadEuin)
    }

    /// The EUIN of the `serial`-th envelope of an issuing `prefix` (3 digits): prefix, 7 serial
    /// digits and a Luhn check digit, so that most typing slips name no envelope at all.
    pub fn issued(prefix: u16, serial: u32) -> Result<Euin, crate::error::Misuse> {
        if prefix > 999 || serial > 9_999_999 {
            return Err(crate::error::Misuse::EuinOutOfRange);
        }
        let mut digits = [0u8; EUIN_DIGITS];
        let body = u64::from(prefix) * 10_000_000 + u64::from(serial);
        let mut rest = body;
        for slot in digits[..EUIN_DIGITS - 1].iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        digits[EUIN_DIGITS - 1] = luhn_check_digit(&digits[..EUIN_DIGITS - 1]);
        Ok(Euin(digits))
    }

    /// True when the last digit is the Luhn check digit of the others (true of issued EUINs;
    /// imported envelopes may carry any number).
    pub fn has_valid_check_digit(&self) -> bool {
        luhn_check_digit(&self.0[..EUIN_DIGITS - 1]) == self.0[EUIN_DIGITS - 1]
    }

    /// The digit values.
    pub fn digits(&self) -> &[u8; EUIN_DIGITS] {
        &self.0
    }

    /// Grouped for print: `263 999 12345`.
    pub fn grouped(&self) -> String {
        let mut out = String::with_capacity(EUIN_DIGITS + 2);
        for (index, digit) in self.0.iter().enumerate() {
            if index == 3 || index == 6 {
                out.push(' ');
            }
            out.push(char::from(b'0' + digit));
        }
        out
    }
}

fn luhn_check_digit(body: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (index, digit) in body.iter().rev().enumerate() {
        let mut value = u32::from(*digit);
        if index % 2 == 0 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for Euin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_digits(f, &self.0)
    }
}

impl fmt::Debug for Euin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Euin({self})")
    }
}

impl core::str::FromStr for Euin {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Euin::parse(text)
    }
}

/// An account number: a public receive number or a secret pay number (both name the same
/// account). Digit 1 in the seed's `Ak` notation is the rightmost.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountNumber([u8; ACCOUNT_NUMBER_DIGITS]);

impl AccountNumber {
    /// Parses exactly [`ACCOUNT_NUMBER_DIGITS`] digits.
    pub fn parse(text: &str) -> Result<AccountNumber, ParseError> {
        digits_exact(text)
            .map(AccountNumber)
            .ok_or(ParseError::BadAccountNumber)
    }

    /// From digit values (each 0–9).
    pub fn from_digits(digits: [u8; ACCOUNT_NUMBER_DIGITS]) -> Option<AccountNumber> {
        digits
            .iter()
            .all(|digit| *digit <= 9)
            .then_some(AccountNumber(digits))
    }

    /// The digit values, left to right.
    pub fn digits(&self) -> &[u8; ACCOUNT_NUMBER_DIGITS] {
        &self.0
    }

    /// The seed's `Ak`: the k-th digit counted from the right, k from 1.
    pub fn digit_from_right(&self, k: usize) -> Option<u8> {
        if k == 0 || k > ACCOUNT_NUMBER_DIGITS {
            return None;
        }
        Some(self.0[ACCOUNT_NUMBER_DIGITS - k])
    }

    /// The number as an integer (fits: 12 digits).
    pub fn value(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |value, digit| value * 10 + u64::from(*digit))
    }

    /// From an integer below 10^12.
    pub fn from_value(value: u64) -> Option<AccountNumber> {
        if value >= 10u64.pow(ACCOUNT_NUMBER_DIGITS as u32) {
            return None;
        }
        let mut digits = [0u8; ACCOUNT_NUMBER_DIGITS];
        let mut rest = value;
        for slot in digits.iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        Some(AccountNumber(digits))
    }
}

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_digits(f, &self.0)
    }
}

impl fmt::Debug for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountNumber({self})")
    }
}

impl core::str::FromStr for AccountNumber {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AccountNumber::parse(text)
    }
}

/// A 3-digit transaction authorisation number (TanCol3). Secret: redacted in `Debug`, zeroized on
/// drop, compared in constant time.
#[derive(Clone)]
pub struct Tan([u8; TAN_DIGITS]);

impl Tan {
    /// Parses exactly [`TAN_DIGITS`] digits.
    pub fn parse(text: &str) -> Result<Tan, ParseError> {
        digits_exact(text).map(Tan).ok_or(ParseError::BadTan)
    }

    /// From a value below 1000.
    pub fn from_value(value: u16) -> Option<Tan> {
        if value >= 1000 {
            return None;
        }
        Some(Tan([
            (value / 100) as u8,
            (value / 10 % 10) as u8,
            (value % 10) as u8,
        ]))
    }

    /// The value 0–999.
    pub fn value(&self) -> u16 {
        self.0
            .iter()
            .fold(0u16, |value, digit| value * 10 + u16::from(*digit))
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &Tan) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The three digits as text, for a reply or a printed envelope.
    pub fn reveal(&self) -> String {
        self.0
            .iter()
            .map(|digit| char::from(b'0' + digit))
            .collect()
    }
}

impl PartialEq for Tan {
    fn eq(&self, other: &Tan) -> bool {
        self.matches(other)
    }
}

impl Eq for Tan {}

impl Drop for Tan {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Tan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tan(***)")
    }
}

/// A phone number as the gateway reports it, normalised to `+` and digits (E.164 style). The
/// server decides how national numbers are completed; this type only normalises separators.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Longest phone number in digits (E.164).
    pub const DIGITS_MAX: usize = 15;

    /// Keeps a leading `+` and the digits; spaces, dashes, dots and brackets are dropped.
    pub fn parse(text: &str) -> Result<PhoneNumber, ParseError> {
        let trimmed = text.trim();
        let mut out = String::with_capacity(trimmed.len());
        for (index, character) in trimmed.chars().enumerate() {
            match character {
                '+' if index == 0 => out.push('+'),
                '0'..='9' => out.push(character),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(ParseError::BadPhoneNumber),
            }
        }
        let digit_count = out.bytes().filter(u8::is_ascii_digit).count();
        if digit_count == 0 || digit_count > Self::DIGITS_MAX {
            return Err(ParseError::BadPhoneNumber);
        }
        Ok(PhoneNumber(out))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_digits_count_from_the_right() {
        let account = AccountNumber::parse("901020377865").unwrap();
        assert_eq!(account.digit_from_right(1), Some(5));
        assert_eq!(account.digit_from_right(2), Some(6));
        assert_eq!(account.digit_from_right(7), Some(0));
        assert_eq!(account.digit_from_right(8), Some(2));
        assert_eq!(account.digit_from_right(12), Some(9));
        assert_eq!(account.digit_from_right(13), None);
        assert_eq!(AccountNumber::from_value(account.value()), Some(account));
    }

    #[test]
    fn issued_euins_carry_a_luhn_digit() {
        let euin = Euin::issued(263, 1).unwrap();
        assert!(euin.has_valid_check_digit());
        assert_eq!(euin.to_string().len(), EUIN_DIGITS);
        let mut digits = *euin.digits();
        digits[4] = (digits[4] + 1) % 10;
        assert!(!Euin(digits).has_valid_check_digit());
        assert!(Euin::issued(1000, 1).is_err());
    }

    #[test]
    fn tans_compare_and_hide() {
        let tan = Tan::parse("123").unwrap();
        assert!(tan.matches(&Tan::from_value(123).unwrap()));
        assert!(!tan.matches(&Tan::from_value(124).unwrap()));
        assert_eq!(format!("{tan:?}"), "Tan(***)");
        assert_eq!(tan.reveal(), "123");
    }

    #[test]
    fn phone_numbers_normalise() {
        assert_eq!(
            PhoneNumber::parse(" +254 (712) 345-678 ").unwrap().as_str(),
            "+254712345678"
        );
        assert!(PhoneNumber::parse("hello").is_err());
        assert!(PhoneNumber::parse("1234567890123456").is_err());
    }
}
