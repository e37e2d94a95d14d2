//! Phone numbers as people write them, made into one spelling: E.164 (`+254711000003`).
//!
//! `0711000003`, `254711000003`, `+254 711 000 003` and `00254711000003` are one Kenyan phone;
//! stored and compared as written they would be four customers, and phone binding could be
//! walked around by spelling the bound number differently. [`normalise`] is the one function
//! every door of the server and the command line calls: the national form is read in the
//! operator's default country, the international forms (`+`, `00`, the country's own
//! international prefix such as Kenya's `000`, or the country code alone) in the country they
//! name. The numbering plans are Google's libphonenumber metadata (the `phonenumber` crate; its
//! version says which metadata release it carries, e.g. `0.3.10+9.0.33`), so a number is
//! accepted only if it has a length and leading digits that its country uses.
//!
//! Stricter than the library, on purpose: only ASCII digits, one leading `+` and the separators
//! people write (space, `-`, `.`, `/`, brackets) are read. Letters (`1-800-FLOWERS`, or an
//! alphanumeric sender id such as `SAFARICOM` that the library would dial as digits), extensions
//! (`x12`, `;ext=`) and `tel:` URIs are refused, because each would let two different strings —
//! or two different lines — become one number. And the result must end with the national number
//! exactly as typed: only a prefix (`+`, an international prefix, the country code, the trunk
//! `0`) is ever dropped, never a digit inserted or reordered; a national-format rewrite rule
//! (Argentina's mobile `15`) is refused with a request for the international form.

use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{ParseError, PhoneNumber, Type};

/// Most digits of an E.164 number (country code included).
pub const E164_DIGITS_MAX: usize = 15;
/// Most characters of a phone number as written that are read at all (digits, separators and
/// prefixes of a 15-digit number fit comfortably).
pub const INPUT_BYTES_MAX: usize = 40;

/// A phone number in E.164: `+`, the country code, the national significant number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// The number as text, e.g. `+254711000003`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.0)
    }
}

/// A country (ISO 3166-1 alpha-2 code) whose numbering plan the metadata knows: the operator's
/// default for numbers written in national form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country(Id);

impl Country {
    /// Reads a two-letter code (`KE`, `ke`); refuses one the numbering plans do not know.
    pub fn parse(code: &str) -> Result<Country, PhoneError> {
        let upper = code.trim().to_ascii_uppercase();
        let id = Id::from_str(&upper).map_err(|_| PhoneError::UnknownCountry {
            code: code.trim().chars().take(8).collect(),
        })?;
        if DATABASE.by_id(id.as_ref()).is_none() {
            return Err(PhoneError::UnknownCountry { code: upper });
        }
        Ok(Country(id))
    }

    /// The two-letter code.
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }

    /// The country's calling code (254 for Kenya).
    pub fn calling_code(&self) -> u16 {
        DATABASE
            .by_id(self.0.as_ref())
            .map_or(0, |metadata| metadata.country_code())
    }

    /// The country of a number in E.164 (`+254…` is Kenya's); `None` for one that is not E.164
    /// or whose code no single country has (`+882`).
    pub fn of_e164(number: &str) -> Option<Country> {
        if !number.starts_with('+') {
            return None;
        }
        let parsed = phonenumber::parse(None, number).ok()?;
        parsed.country().id().map(Country)
    }

    /// The one country whose currency `currency` (ISO 4217) is, when only one uses it; `None`
    /// for a currency several countries share (XOF, EUR, USD, ZAR …) or one not listed here:
    /// there the operator must name the country.
    pub fn of_currency(currency: &str) -> Option<Country> {
        let code = SINGLE_COUNTRY_CURRENCIES
            .iter()
            .find(|(listed, _)| listed.eq_ignore_ascii_case(currency))?
            .1;
        Country::parse(code).ok()
    }
}

/// Currencies that one country alone issues and uses, with that country: the server's currency
/// names the default country only through this list.
pub const SINGLE_COUNTRY_CURRENCIES: &[(&str, &str)] = &[
    ("KES", "KE"),
    ("TZS", "TZ"),
    ("UGX", "UG"),
    ("RWF", "RW"),
    ("BIF", "BI"),
    ("ETB", "ET"),
    ("SOS", "SO"),
    ("SSP", "SS"),
    ("SDG", "SD"),
    ("NGN", "NG"),
    ("GHS", "GH"),
    ("GMD", "GM"),
    ("GNF", "GN"),
    ("SLE", "SL"),
    ("LRD", "LR"),
    ("CVE", "CV"),
    ("MGA", "MG"),
    ("MWK", "MW"),
    ("ZMW", "ZM"),
    ("MZN", "MZ"),
    ("CDF", "CD"),
    ("AOA", "AO"),
    ("BWP", "BW"),
    ("EGP", "EG"),
    ("DZD", "DZ"),
    ("TND", "TN"),
    ("HTG", "HT"),
    ("BDT", "BD"),
    ("PKR", "PK"),
    ("NPR", "NP"),
    ("LKR", "LK"),
    ("PHP", "PH"),
    ("IDR", "ID"),
    ("MMK", "MM"),
    ("KHR", "KH"),
    ("BRL", "BR"),
    ("MXN", "MX"),
];

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.code())
    }
}

impl FromStr for Country {
    type Err = PhoneError;
    fn from_str(code: &str) -> Result<Country, PhoneError> {
        Country::parse(code)
    }
}

/// What is wrong with a phone number as written, or with a country code. The messages say it in
/// words; the caller adds the number it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Nothing but blanks.
    #[error("no phone number was given")]
    Empty,
    /// Longer than any number as written could be.
    #[error("is longer than any phone number (at most {INPUT_BYTES_MAX} characters)")]
    InputTooLong,
    /// A character that has no place in a phone number (a letter, `#`, `*`, `;`).
    #[error(
        "has {character:?}, which is not part of a phone number: write digits, with '+' or 00 before the country code"
    )]
    BadCharacter {
        /// The first such character.
        character: char,
    },
    /// `+` somewhere other than at the start.
    #[error("has '+' after the start: '+' may only come first, before the country code")]
    MisplacedPlus,
    /// The number names no country calling code in use.
    #[error("starts with no country code in use (after '+' or 00 comes a code such as 254)")]
    UnknownCountryCode,
    /// Fewer digits than any number of its country.
    #[error("is too short for a number in {country}")]
    TooShort {
        /// The country (its two-letter code, or `+` and the calling code).
        country: String,
    },
    /// More digits than any number of its country, or than E.164 allows.
    #[error("is too long for a number in {country}")]
    TooLong {
        /// The country.
        country: String,
    },
    /// A length between the country's shortest and longest that none of its numbers has.
    #[error("has a number of digits that no number in {country} has")]
    InvalidLength {
        /// The country.
        country: String,
    },
    /// The right length, but no number of the country begins so.
    #[error("is not a number in {country}'s numbering plan")]
    NotInPlan {
        /// The country.
        country: String,
    },
    /// The national form needs a rewrite the country's plan makes (Argentina's `15`), which
    /// would not keep the digits as typed.
    #[error(
        "cannot be read digit for digit: write it in international form, '+' and the country code first"
    )]
    Rewritten,
    /// A country code the numbering plans do not know.
    #[error(
        "{code:?} is not a country code (two letters, ISO 3166, such as KE, TZ, UG, NG, SN, FR)"
    )]
    UnknownCountry {
        /// What was given (at most 8 characters of it).
        code: String,
    },
}

/// One phone number as written, in E.164. National forms (`0711000003`, `711 000 003`) are read
/// in `default_country`; `+254…`, `00254…`, the default country's own international prefix
/// (`000254…` in Kenya) and the country code without a prefix (`254711000003`) in the country
/// they name. Refused, with what is wrong: letters and other characters, an extension, an
/// unknown country code, a length no number of the country has, leading digits its plan does
/// not use.
pub fn normalise(input: &str, default_country: Country) -> Result<E164, PhoneError> {
    let compact = compact(input)?;
    // International forms are parsed without the default country: the library would otherwise
    // strip the default country's trunk prefix from another country's number.
    let parsed = match international_digits(&compact, default_country) {
        Some(digits) => parse(None, &format!("+{digits}"))?,
        None => {
            let number = parse(Some(default_country), &compact)?;
            if number.code().value() != default_country.calling_code() {
                // Every international prefix was taken off above; a national form that still
                // names another country was read in a way the digits do not show.
                return Err(PhoneError::Rewritten);
            }
            number
        }
    };
    if parsed.extension().is_some() {
        // The character filter already keeps extensions out; this holds it.
        return Err(PhoneError::BadCharacter { character: 'x' });
    }
    let code = parsed.code().value();
    let national = parsed.national().to_string();
    let country = country_name(&parsed, code);
    check_length(code, &national, &country)?;
    if !parsed.is_valid() {
        return Err(PhoneError::NotInPlan { country });
    }
    let e164 = format!("+{code}{national}");
    let digits = e164.len() - 1;
    if digits > E164_DIGITS_MAX {
        return Err(PhoneError::TooLong { country });
    }
    let typed_digits: String = compact.chars().filter(char::is_ascii_digit).collect();
    if !typed_digits.ends_with(&national) {
        return Err(PhoneError::Rewritten);
    }
    Ok(E164(e164))
}

/// The digits after an international prefix: `+`, the default country's own (Kenya's `000`,
/// the United States' `011`), or `00`, the prefix of most of the world and how numbers are
/// written on paper; no national number starts with `00`. A country code never starts with 0,
/// so a "prefix" followed by 0 is not one.
fn international_digits(compact: &str, default_country: Country) -> Option<&str> {
    if let Some(rest) = compact.strip_prefix('+') {
        return Some(rest);
    }
    let own_prefix = DATABASE
        .by_id(default_country.code())
        .and_then(|metadata| metadata.international_prefix())
        .and_then(|prefix| prefix.find(compact))
        .filter(|found| found.start() == 0)
        .map(|found| &compact[found.end()..]);
    [own_prefix, compact.strip_prefix("00")]
        .into_iter()
        .flatten()
        .find(|rest| rest.starts_with(|first: char| matches!(first, '1'..='9')))
}

/// The characters kept: a leading `+` and the digits; separators dropped; anything else refused.
fn compact(input: &str) -> Result<String, PhoneError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    if trimmed.len() > INPUT_BYTES_MAX {
        return Err(PhoneError::InputTooLong);
    }
    let mut out = String::with_capacity(trimmed.len());
    for character in trimmed.chars() {
        match character {
            '0'..='9' => out.push(character),
            '+' if out.is_empty() => out.push('+'),
            '+' => return Err(PhoneError::MisplacedPlus),
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            other => return Err(PhoneError::BadCharacter { character: other }),
        }
    }
    if out.is_empty() || out == "+" {
        return Err(PhoneError::Empty);
    }
    Ok(out)
}

fn parse(country: Option<Country>, text: &str) -> Result<PhoneNumber, PhoneError> {
    let default_country =
        country.map_or_else(|| "the country it names".to_owned(), |c| c.to_string());
    phonenumber::parse(country.map(|country| country.0), text).map_err(|error| match error {
        ParseError::InvalidCountryCode => PhoneError::UnknownCountryCode,
        ParseError::TooLong => PhoneError::TooLong {
            country: default_country,
        },
        ParseError::NoNumber
        | ParseError::TooShortAfterIdd
        | ParseError::TooShortNsn
        | ParseError::MalformedInteger(_) => PhoneError::TooShort {
            country: default_country,
        },
    })
}

/// `KE`, or `+882` for a code that names no single country.
fn country_name(number: &PhoneNumber, code: u16) -> String {
    match number.country().id() {
        Some(id) => id.as_ref().to_owned(),
        None => format!("+{code}"),
    }
}

/// Every type of number a country's plan describes, for the lengths they may have.
const NUMBER_TYPES: [Type; 12] = [
    Type::FixedLine,
    Type::Mobile,
    Type::TollFree,
    Type::PremiumRate,
    Type::SharedCost,
    Type::PersonalNumber,
    Type::Voip,
    Type::Pager,
    Type::Uan,
    Type::Voicemail,
    Type::StandardRate,
    Type::NoInternational,
];

/// The library keeps its own length check private: the lengths of every type of number of every
/// region sharing the calling code, and where this one falls.
fn check_length(code: u16, national: &str, country: &str) -> Result<(), PhoneError> {
    let regions = DATABASE
        .by_code(&code)
        .ok_or(PhoneError::UnknownCountryCode)?;
    let mut lengths: Vec<u16> = regions
        .iter()
        .flat_map(|metadata| {
            NUMBER_TYPES
                .iter()
                .filter_map(|kind| metadata.descriptors().get(*kind))
                .flat_map(|descriptor| descriptor.possible_length().iter().copied())
        })
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    let length = u16::try_from(national.len()).unwrap_or(u16::MAX);
    let country = country.to_owned();
    match (lengths.first(), lengths.last()) {
        (Some(shortest), _) if length < *shortest => Err(PhoneError::TooShort { country }),
        (_, Some(longest)) if length > *longest => Err(PhoneError::TooLong { country }),
        _ if lengths.contains(&length) => Ok(()),
        // No lengths listed: leave it to the plan's patterns.
        (None, None) => Ok(()),
        _ => Err(PhoneError::InvalidLength { country }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn country(code: &str) -> Country {
        Country::parse(code).unwrap()
    }

    fn e164(input: &str, default: &str) -> String {
        normalise(input, country(default))
            .unwrap_or_else(|error| panic!("{input:?} in {default}: {error}"))
            .to_string()
    }

    /// Issue 24: the national, international and `+` forms of one number in several countries
    /// are one number.
    #[test]
    fn every_form_of_a_number_is_one_number() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "KE",
                "+254711000003",
                &[
                    "0711000003",
                    "711000003",
                    "254711000003",
                    "+254711000003",
                    "+254 711 000 003",
                    "00254711000003",
                    "000254711000003",
                    "(0711) 000-003",
                    "+254 (0)711 000 003",
                ],
            ),
            (
                "TZ",
                "+255754000003",
                &[
                    "0754000003",
                    "255754000003",
                    "+255754000003",
                    "+255 754 000 003",
                    "00255754000003",
                ],
            ),
            (
                "UG",
                "+256772000003",
                &[
                    "0772000003",
                    "256772000003",
                    "+256772000003",
                    "+256 772 000 003",
                    "00256772000003",
                ],
            ),
            (
                "NG",
                "+2348031000003",
                &[
                    "08031000003",
                    "2348031000003",
                    "+2348031000003",
                    "+234 803 100 0003",
                    "002348031000003",
                ],
            ),
            (
                "SN",
                "+221771000003",
                &[
                    "771000003",
                    "221771000003",
                    "+221771000003",
                    "+221 77 100 00 03",
                    "00221771000003",
                ],
            ),
            (
                "FR",
                "+33612000003",
                &[
                    "0612000003",
                    "06 12 00 00 03",
                    "06.12.00.00.03",
                    "33612000003",
                    "+33612000003",
                    "+33 6 12 00 00 03",
                    "0033612000003",
                ],
            ),
        ];
        for (default, expected, forms) in cases {
            for form in *forms {
                assert_eq!(&e164(form, default), expected, "{form:?} in {default}");
            }
        }
    }

    #[test]
    fn international_forms_ignore_the_default_country() {
        for default in ["KE", "TZ", "UG", "NG", "SN", "FR", "US"] {
            assert_eq!(e164("+254711000003", default), "+254711000003");
            assert_eq!(e164("+33 6 12 00 00 03", default), "+33612000003");
            assert_eq!(e164("+221771000003", default), "+221771000003");
        }
        // The United States' own international prefix, and 00 from there too.
        assert_eq!(e164("011 254 711 000 003", "US"), "+254711000003");
        assert_eq!(e164("00 254 711 000 003", "US"), "+254711000003");
    }

    #[test]
    fn bad_numbers_say_what_is_wrong() {
        let ke = country("KE");
        let cases: &[(&str, PhoneError)] = &[
            ("", PhoneError::Empty),
            ("  + ", PhoneError::Empty),
            (
                "071100",
                PhoneError::TooShort {
                    country: "KE".into(),
                },
            ),
            (
                "+254711000003123",
                PhoneError::TooLong {
                    country: "KE".into(),
                },
            ),
            ("+999711000003", PhoneError::UnknownCountryCode),
            ("0099911000003", PhoneError::UnknownCountryCode),
            (
                "0711000003 x12",
                PhoneError::BadCharacter { character: 'x' },
            ),
            (
                "+254711000003;ext=1",
                PhoneError::BadCharacter { character: ';' },
            ),
            (
                "tel:+254711000003",
                PhoneError::BadCharacter { character: 't' },
            ),
            ("SAFARICOM", PhoneError::BadCharacter { character: 'S' }),
            ("0711 000 003#", PhoneError::BadCharacter { character: '#' }),
            (
                "071100000",
                PhoneError::NotInPlan {
                    country: "KE".into(),
                },
            ),
            ("07II000003", PhoneError::BadCharacter { character: 'I' }),
            ("254+711000003", PhoneError::MisplacedPlus),
            (
                "+254 311 000 003",
                PhoneError::NotInPlan {
                    country: "KE".into(),
                },
            ),
            (&"1".repeat(41), PhoneError::InputTooLong),
        ];
        for (input, expected) in cases {
            assert_eq!(&normalise(input, ke).unwrap_err(), expected, "{input:?}");
        }
        // Digits of another script are not read as ASCII ones.
        assert!(matches!(
            normalise("٠٧١١٠٠٠٠٠٣", ke),
            Err(PhoneError::BadCharacter { .. })
        ));
        let message = normalise("071100", ke).unwrap_err().to_string();
        assert_eq!(message, "is too short for a number in KE");
    }

    /// Security: two different numbers never become one. Every example number the numbering
    /// plans carry, of every type in every country, written in E.164 is its own normal form
    /// (so distinct E.164 numbers stay distinct), and its national form read in its own country
    /// comes back to it.
    #[test]
    fn distinct_numbers_stay_distinct() {
        let mut seen = std::collections::BTreeMap::new();
        let mut checked = 0usize;
        for metadata in DATABASE.iter() {
            let Ok(region) = Country::parse(metadata.id()) else {
                continue;
            };
            for kind in NUMBER_TYPES {
                let Some(example) = metadata.descriptors().get(kind).and_then(|d| d.example())
                else {
                    continue;
                };
                let written = format!("+{}{}", metadata.country_code(), example);
                let Ok(number) = normalise(&written, region) else {
                    continue;
                };
                assert_eq!(number.as_str(), written, "{written} changed");
                // The same number read with any default country is still itself.
                assert_eq!(normalise(&written, country("KE")).unwrap(), number);
                if let Some(earlier) = seen.insert(number.clone(), written.clone()) {
                    assert_eq!(earlier, written, "two numbers became {number}");
                }
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} example numbers checked");
    }

    /// Numbers that differ in one digit, or by a trailing digit, never meet.
    #[test]
    fn neighbours_stay_apart() {
        let ke = country("KE");
        let base = normalise("+254711000003", ke).unwrap();
        for spelled in ["+254711000004", "+254711000030", "+254 711 000 013"] {
            assert_ne!(normalise(spelled, ke).unwrap(), base, "{spelled}");
        }
        // A trunk 0 after the country code is dropped, but a meaningful one is kept: Italy's
        // fixed lines keep their leading 0.
        let it = country("IT");
        assert_eq!(e164("06 1234 5678", "IT"), "+390612345678");
        let with_zero = normalise("+39 06 1234 5678", it).unwrap();
        assert!(
            normalise("+39 6 1234 5678", it).is_ok_and(|other| other != with_zero)
                || normalise("+39 6 1234 5678", it).is_err()
        );
    }

    #[test]
    fn countries_are_codes_the_plans_know() {
        assert_eq!(country("ke").code(), "KE");
        assert_eq!(country("KE").calling_code(), 254);
        assert_eq!(country("SN").calling_code(), 221);
        assert!(matches!(
            Country::parse("XX"),
            Err(PhoneError::UnknownCountry { .. })
        ));
        assert!(Country::parse("Kenya").is_err());
        assert_eq!(Country::of_e164("+254711000003"), Some(country("KE")));
        assert_eq!(Country::of_e164("+33612000003"), Some(country("FR")));
        assert_eq!(Country::of_e164("0711000003"), None);
        assert_eq!(Country::of_currency("KES"), Some(country("KE")));
        assert_eq!(Country::of_currency("kes"), Some(country("KE")));
        assert_eq!(Country::of_currency("XOF"), None);
        assert_eq!(Country::of_currency("EUR"), None);
        for (currency, code) in SINGLE_COUNTRY_CURRENCIES {
            assert!(Country::parse(code).is_ok(), "{currency} → {code}");
        }
    }

    proptest::proptest! {
        /// Whatever is written, normalising never panics, and what it gives is its own normal
        /// form, in every default country, and keeps the typed national digits.
        #[test]
        fn normal_forms_are_fixed_points(
            written in proptest::prop_oneof![
                "[+]?[0-9 ()./-]{0,24}",
                "(\\+|00|000|011)?(254|255|256|234|221|33|39|1)? ?0?[1-9][0-9 ]{7,10}",
            ],
            default in proptest::sample::select(vec!["KE", "TZ", "UG", "NG", "SN", "FR", "US", "IT", "AR"]),
        ) {
            if let Ok(number) = normalise(&written, country(default)) {
                for again in ["KE", "FR", default] {
                    proptest::prop_assert_eq!(&normalise(number.as_str(), country(again)).unwrap(), &number);
                }
                proptest::prop_assert!(number.digits().len() <= E164_DIGITS_MAX);
                let typed: String = written.chars().filter(char::is_ascii_digit).collect();
                let national_length = number.digits().len().min(typed.len()).min(7);
                proptest::prop_assert!(typed.ends_with(&number.digits()[number.digits().len() - national_length..]));
            }
        }
    }
}
