//! The phone-number normaliser's countries and seeds: numbers as people write them in the
//! countries the seeds' operators serve, national and international, with separators.

use offpay_operator::phone::Country;

use crate::{Seed, selected};

/// The default countries the target reads numbers in, by its first byte (modulo their count).
pub const COUNTRIES: &[&str] = &["KE", "TZ", "UG", "NG", "SN", "FR", "US", "GB", "IN", "ZA"];

/// The default country `selector` picks.
pub fn country(selector: u8) -> Country {
    let code = COUNTRIES[usize::from(selector) % COUNTRIES.len()];
    Country::parse(code).expect("a listed country")
}

/// Numbers as written, each with the country it is read in.
pub fn normalise_seeds() -> Vec<Seed> {
    let numbers: &[(&str, u8, &str)] = &[
        ("ke-national", 0, "0711000003"),
        ("ke-spaced", 0, "0711 000 003"),
        ("ke-international", 0, "+254 711-000-003"),
        ("ke-double-zero", 0, "00254711000003"),
        ("ke-own-prefix", 0, "000254711000003"),
        ("ke-country-code", 0, "254711000003"),
        ("tz-national", 1, "0754 123 456"),
        ("ng-national", 3, "0803 123 4567"),
        ("sn-national", 4, "77 123 45 67"),
        ("fr-national", 5, "06 12 34 56 78"),
        ("us-parenthesised", 6, "(201) 555-0123"),
        ("foreign-in-ke", 0, "+33 6 12 34 56 78"),
        ("letters", 0, "0711-CALL-ME"),
        ("extension", 0, "0711000003 ext. 12"),
    ];
    numbers
        .iter()
        .map(|(name, selector, text)| selected(name, *selector, text.as_bytes()))
        .collect()
}
