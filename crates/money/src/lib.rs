//! Money for offpay: an [`Amount`] is a count of integer minor units (cents, shillings…) tagged with
//! its [`Currency`]. No floats, checked arithmetic only, and a named maximum, [`Amount::MAX_MINOR`].
#![no_std]

#[cfg(feature = "std")]
extern crate std;

use core::fmt;

/// Largest number of decimal places any supported currency uses.
pub const EXPONENT_MAX: u8 = 4;

/// A currency: a three-letter ISO 4217 code and its exponent (number of minor-unit digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// ISO 4217 codes offpay knows by name, with their exponents. Operators can define others with
/// [`Currency::new`].
const KNOWN_CURRENCIES: &[(&str, u8)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("BWP", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("DJF", 0),
    ("ETB", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("GHS", 2),
    ("GNF", 0),
    ("INR", 2),
    ("JPY", 0),
    ("KES", 2),
    ("KWD", 3),
    ("LRD", 2),
    ("LSL", 2),
    ("MGA", 2),
    ("MWK", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PKR", 2),
    ("RWF", 0),
    ("SLE", 2),
    ("SOS", 2),
    ("SSP", 2),
    ("SZL", 2),
    ("TND", 3),
    ("TZS", 2),
    ("UGX", 0),
    ("USD", 2),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

impl Currency {
    /// Kenyan shilling, the default currency of a new offpay server.
    pub const KES: Currency = Currency {
        code: *b"KES",
        exponent: 2,
    };
    /// US dollar.
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };
    /// Euro.
    pub const EUR: Currency = Currency {
        code: *b"EUR",
        exponent: 2,
    };
    /// Ugandan shilling (no minor unit).
    pub const UGX: Currency = Currency {
        code: *b"UGX",
        exponent: 0,
    };

    /// A currency from an explicit code and exponent (for codes offpay does not list).
    pub fn new(code: &str, exponent: u8) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::InvalidCurrencyCode);
        }
        if exponent > EXPONENT_MAX {
            return Err(MoneyError::InvalidExponent);
        }
        Ok(Currency {
            code: [bytes[0], bytes[1], bytes[2]],
            exponent,
        })
    }

    /// Looks up a known ISO 4217 code (case-insensitive), e.g. `"KES"`.
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(MoneyError::InvalidCurrencyCode);
        }
        let upper = [
            bytes[0].to_ascii_uppercase(),
            bytes[1].to_ascii_uppercase(),
            bytes[2].to_ascii_uppercase(),
        ];
        KNOWN_CURRENCIES
            .iter()
            .find(|(known, _)| known.as_bytes() == upper)
            .map(|&(_, exponent)| Currency {
                code: upper,
                exponent,
            })
            .ok_or(MoneyError::UnknownCurrency)
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // The constructor admits only ASCII uppercase letters.
        core::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Number of decimal digits of the minor unit (2 for KES: 1 shilling = 100 cents).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// 10^exponent: how many minor units make one major unit.
    pub fn minor_per_major(&self) -> u64 {
        10u64.pow(u32::from(self.exponent))
    }

    /// Parses a decimal amount in this currency, e.g. `"450"`, `"200000.00"`.
    pub fn parse(&self, text: &str) -> Result<Amount, MoneyError> {
        Amount::parse(text, *self)
    }

    /// An amount of `minor` minor units in this currency.
    pub fn minor(&self, minor: u64) -> Result<Amount, MoneyError> {
        Amount::from_minor(minor, *self)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl core::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

/// A non-negative amount of money: integer minor units and the currency they are counted in.
///
/// Arithmetic is checked and returns [`MoneyError`]; there are no operator impls that could panic
/// or wrap.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Amount {
    minor: u64,
    currency: Currency,
}

impl Amount {
    /// The largest amount offpay handles, in minor units: 10^15 (ten trillion shillings in KES).
    /// Chosen so that the sum of 9,000 maximal amounts still fits a signed 64-bit balance.
    pub const MAX_MINOR: u64 = 1_000_000_000_000_000;

    /// Zero in `currency`.
    pub const fn zero(currency: Currency) -> Amount {
        Amount { minor: 0, currency }
    }

    /// `minor` minor units of `currency`; refuses anything above [`Amount::MAX_MINOR`].
    pub fn from_minor(minor: u64, currency: Currency) -> Result<Amount, MoneyError> {
        if minor > Self::MAX_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Amount { minor, currency })
    }

    /// Number of minor units.
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// Minor units as a signed integer, for balance arithmetic (always fits: see `MAX_MINOR`).
    pub fn minor_signed(&self) -> i64 {
        // MAX_MINOR < i64::MAX, asserted at compile time below.
        self.minor as i64
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.minor == 0
    }

    /// Parses a decimal amount as people write it: `"450"`, `"450.5"`, `"200000.00"`. Digits, at
    /// most one decimal point and at most `currency.exponent()` decimals; no sign, no exponent.
    /// Underscores, commas and spaces are refused so that `"1,5"` can never mean 15.
    pub fn parse(text: &str, currency: Currency) -> Result<Amount, MoneyError> {
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        let first_point = text.find('.');
        if let Some((position, character)) = text.char_indices().find(|&(position, character)| {
            !(character.is_ascii_digit() || Some(position) == first_point)
        }) {
            return Err(MoneyError::InvalidCharacter {
                position,
                character,
            });
        }
        let (whole, fraction) = match first_point {
            Some(point) => (&text[..point], Some(&text[point + 1..])),
            None => (text, None),
        };
        if whole.is_empty() {
            return Err(MoneyError::MissingWholePart);
        }
        let mut minor: u64 = 0;
        for (position, byte) in whole.bytes().enumerate() {
            minor = push_digit(minor, byte, position)?;
        }
        let mut decimals: u8 = 0;
        if let Some(fraction) = fraction {
            if fraction.is_empty() {
                return Err(MoneyError::MissingDecimals);
            }
            if fraction.len() > usize::from(currency.exponent) {
                return Err(MoneyError::TooManyDecimals {
                    allowed: currency.exponent,
                });
            }
            for (offset, byte) in fraction.bytes().enumerate() {
                minor = push_digit(minor, byte, whole.len() + 1 + offset)?;
                decimals += 1;
            }
        }
        for _ in decimals..currency.exponent {
            minor = minor.checked_mul(10).ok_or(MoneyError::TooLarge)?;
        }
        Amount::from_minor(minor, currency)
    }

    /// `self + other`; same currency, result within the maximum.
    pub fn checked_add(self, other: Amount) -> Result<Amount, MoneyError> {
        self.same_currency(&other)?;
        let sum = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::TooLarge)?;
        Amount::from_minor(sum, self.currency)
    }

    /// `self - other`; same currency, refuses to go below zero.
    pub fn checked_sub(self, other: Amount) -> Result<Amount, MoneyError> {
        self.same_currency(&other)?;
        let difference = self
            .minor
            .checked_sub(other.minor)
            .ok_or(MoneyError::Negative)?;
        Ok(Amount {
            minor: difference,
            currency: self.currency,
        })
    }

    /// `self * factor`, within the maximum.
    pub fn checked_mul(self, factor: u64) -> Result<Amount, MoneyError> {
        let product = self.minor.checked_mul(factor).ok_or(MoneyError::TooLarge)?;
        Amount::from_minor(product, self.currency)
    }

    fn same_currency(&self, other: &Amount) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            });
        }
        Ok(())
    }

    /// The decimal form without the currency, e.g. `"450.00"`.
    pub fn decimal(&self) -> Decimal {
        Decimal {
            minor: self.minor as i128,
            exponent: self.currency.exponent,
        }
    }
}

/// Writes a signed count of minor units as a decimal, e.g. for balances: `-450.00`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Decimal {
    minor: i128,
    exponent: u8,
}

impl Decimal {
    /// A signed minor-unit count shown with `currency`'s exponent.
    pub fn new(minor: i128, currency: Currency) -> Decimal {
        Decimal {
            minor,
            exponent: currency.exponent,
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let magnitude = self.minor.unsigned_abs();
        if self.exponent == 0 {
            return write!(f, "{sign}{magnitude}");
        }
        let scale = 10u128.pow(u32::from(self.exponent));
        write!(
            f,
            "{sign}{}.{:0width$}",
            magnitude / scale,
            magnitude % scale,
            width = usize::from(self.exponent)
        )
    }
}

fn push_digit(accumulated: u64, byte: u8, position: usize) -> Result<u64, MoneyError> {
    if !byte.is_ascii_digit() {
        return Err(MoneyError::InvalidCharacter {
            position,
            character: char::from(byte),
        });
    }
    accumulated
        .checked_mul(10)
        .and_then(|shifted| shifted.checked_add(u64::from(byte - b'0')))
        .ok_or(MoneyError::TooLarge)
}

const _: () = assert!(Amount::MAX_MINOR < (i64::MAX as u64) / 9_000);
const _: () = assert!(10u64.pow(EXPONENT_MAX as u32) < Amount::MAX_MINOR);

impl fmt::Display for Amount {
    /// `KES 450.00`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency, self.decimal())
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why an amount or currency was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum MoneyError {
    /// The amount text was empty.
    Empty,
    /// A character other than a digit or the one decimal point.
    InvalidCharacter {
        /// Zero-based byte position in the input.
        position: usize,
        /// The offending character.
        character: char,
    },
    /// Nothing before the decimal point (".5").
    MissingWholePart,
    /// A decimal point with nothing after it ("5.").
    MissingDecimals,
    /// More decimals than the currency has minor-unit digits.
    TooManyDecimals {
        /// The currency's exponent.
        allowed: u8,
    },
    /// Above [`Amount::MAX_MINOR`].
    TooLarge,
    /// A subtraction would go below zero.
    Negative,
    /// Two amounts in different currencies were combined.
    CurrencyMismatch {
        /// Currency of the left operand.
        left: Currency,
        /// Currency of the right operand.
        right: Currency,
    },
    /// Not three uppercase letters.
    InvalidCurrencyCode,
    /// A three-letter code offpay does not know.
    UnknownCurrency,
    /// More than [`EXPONENT_MAX`] decimal places.
    InvalidExponent,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::Empty => f.write_str("the amount is empty"),
            MoneyError::InvalidCharacter {
                position,
                character,
            } => {
                write!(
                    f,
                    "unexpected character {character:?} at position {} of the amount",
                    position + 1
                )
            }
            MoneyError::MissingWholePart => {
                f.write_str("the amount needs digits before the decimal point")
            }
            MoneyError::MissingDecimals => {
                f.write_str("the amount needs digits after the decimal point")
            }
            MoneyError::TooManyDecimals { allowed: 0 } => {
                f.write_str("this currency has no decimals")
            }
            MoneyError::TooManyDecimals { allowed } => {
                write!(f, "too many decimals: this currency has {allowed}")
            }
            MoneyError::TooLarge => write!(
                f,
                "the amount is above the maximum of {} minor units",
                Amount::MAX_MINOR
            ),
            MoneyError::Negative => f.write_str("the result would be negative"),
            MoneyError::CurrencyMismatch { left, right } => {
                write!(f, "currency mismatch: {left} and {right}")
            }
            MoneyError::InvalidCurrencyCode => {
                f.write_str("a currency code is three letters, e.g. KES")
            }
            MoneyError::UnknownCurrency => f.write_str("unknown currency code"),
            MoneyError::InvalidExponent => {
                write!(f, "a currency has at most {EXPONENT_MAX} decimals")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MoneyError {}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Amount, Currency, KNOWN_CURRENCIES};
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser::SerializeStruct};

    /// `{"currency": "KES", "minor": 45000}`: minor units as an integer, never a float.
    impl Serialize for Amount {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut fields = serializer.serialize_struct("Amount", 2)?;
            fields.serialize_field("currency", &self.currency)?;
            fields.serialize_field("minor", &self.minor)?;
            fields.end()
        }
    }

    impl<'de> Deserialize<'de> for Amount {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Fields {
                currency: Currency,
                minor: u64,
            }
            let fields = Fields::deserialize(deserializer)?;
            Amount::from_minor(fields.minor, fields.currency).map_err(de::Error::custom)
        }
    }

    impl Serialize for Currency {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(self.code())
        }
    }

    impl<'de> Deserialize<'de> for Currency {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl de::Visitor<'_> for Visitor {
                type Value = Currency;
                fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.write_str("an ISO 4217 currency code such as \"KES\"")
                }
                fn visit_str<E: de::Error>(self, value: &str) -> Result<Currency, E> {
                    Currency::from_code(value).map_err(|_| {
                        de::Error::custom(format_args!(
                            "unknown currency {value:?} (known: {} codes such as KES, UGX, USD)",
                            KNOWN_CURRENCIES.len()
                        ))
                    })
                }
            }
            deserializer.deserialize_str(Visitor)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_whole_and_decimal_amounts() {
        assert_eq!(Amount::parse("450", Currency::KES).unwrap().minor(), 45_000);
        assert_eq!(
            Amount::parse("200000.00", Currency::KES).unwrap().minor(),
            20_000_000
        );
        assert_eq!(Amount::parse("0.5", Currency::KES).unwrap().minor(), 50);
        assert_eq!(Amount::parse("007", Currency::UGX).unwrap().minor(), 7);
        let kwd = Currency::from_code("kwd").unwrap();
        assert_eq!(Amount::parse("1.234", kwd).unwrap().minor(), 1_234);
    }

    #[test]
    fn refuses_malformed_amounts_with_a_reason() {
        let kes = Currency::KES;
        assert_eq!(Amount::parse("", kes), Err(MoneyError::Empty));
        assert_eq!(
            Amount::parse("4.505", kes),
            Err(MoneyError::TooManyDecimals { allowed: 2 })
        );
        assert_eq!(
            Amount::parse("4.5", Currency::UGX),
            Err(MoneyError::TooManyDecimals { allowed: 0 })
        );
        assert_eq!(Amount::parse(".5", kes), Err(MoneyError::MissingWholePart));
        assert_eq!(Amount::parse("5.", kes), Err(MoneyError::MissingDecimals));
        assert_eq!(
            Amount::parse("1,5", kes),
            Err(MoneyError::InvalidCharacter {
                position: 1,
                character: ','
            })
        );
        assert!(matches!(
            Amount::parse("-3", kes),
            Err(MoneyError::InvalidCharacter { position: 0, .. })
        ));
        assert!(matches!(
            Amount::parse("1.2.3", kes),
            Err(MoneyError::InvalidCharacter { .. })
        ));
        assert_eq!(
            Amount::parse("10000000000000.01", kes),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Amount::parse("99999999999999999999999", kes),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Amount::parse("10000000000000", kes).unwrap().minor(),
            Amount::MAX_MINOR
        );
    }

    #[test]
    fn displays_with_the_currency_exponent() {
        assert_eq!(
            Amount::parse("450", Currency::KES).unwrap().to_string(),
            "KES 450.00"
        );
        assert_eq!(
            Amount::parse("450", Currency::UGX).unwrap().to_string(),
            "UGX 450"
        );
        assert_eq!(Decimal::new(-5, Currency::KES).to_string(), "-0.05");
        assert_eq!(
            Decimal::new(-120_000, Currency::KES).to_string(),
            "-1200.00"
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Currency::KES.minor(100).unwrap();
        let b = Currency::KES.minor(30).unwrap();
        assert_eq!(a.checked_add(b).unwrap().minor(), 130);
        assert_eq!(a.checked_sub(b).unwrap().minor(), 70);
        assert_eq!(b.checked_sub(a), Err(MoneyError::Negative));
        let usd = Currency::USD.minor(1).unwrap();
        assert!(matches!(
            a.checked_add(usd),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        let max = Currency::KES.minor(Amount::MAX_MINOR).unwrap();
        assert_eq!(
            max.checked_add(Currency::KES.minor(1).unwrap()),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Currency::KES.minor(Amount::MAX_MINOR + 1),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(a.checked_mul(3).unwrap().minor(), 300);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn amounts_serialise_as_integer_minor_units() {
        let amount = Currency::KES.minor(45_000).unwrap();
        let json = serde_json::to_string(&amount).unwrap();
        assert_eq!(json, r#"{"currency":"KES","minor":45000}"#);
        assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), amount);
        assert!(
            serde_json::from_str::<Amount>(r#"{"currency":"KES","minor":1000000000000001}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Amount>(r#"{"currency":"KES","minor":1.5}"#).is_err());
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::from_code("KES").unwrap(), Currency::KES);
        assert_eq!(Currency::from_code("XYZ"), Err(MoneyError::UnknownCurrency));
        assert_eq!(
            Currency::from_code("KE"),
            Err(MoneyError::InvalidCurrencyCode)
        );
        assert_eq!(Currency::new("ABC", 2).unwrap().code(), "ABC");
        assert_eq!(
            Currency::new("abc", 2),
            Err(MoneyError::InvalidCurrencyCode)
        );
        assert_eq!(Currency::new("ABC", 9), Err(MoneyError::InvalidExponent));
    }

    proptest::proptest! {
        #[test]
        fn display_then_parse_round_trips(minor in 0u64..=Amount::MAX_MINOR, currency_index in 0usize..KNOWN_CURRENCIES.len()) {
            let currency = Currency::from_code(KNOWN_CURRENCIES[currency_index].0).unwrap();
            let amount = Amount::from_minor(minor, currency).unwrap();
            let text = amount.decimal().to_string();
            proptest::prop_assert_eq!(Amount::parse(&text, currency).unwrap(), amount);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,30}") {
            let _ = Amount::parse(&text, Currency::KES);
        }
    }
}
