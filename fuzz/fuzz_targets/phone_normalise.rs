//! Phone numbers as people and gateways write them (`0711 000 003`, `+254-711-000003`,
//! `00254711000003`), read in E.164 by the one normaliser every rail and the console use: reading
//! never panics; what it gives is `+` and 2 to 15 digits, ending with the last digit typed; read
//! again, in any default country, it is itself; written with separators it reads the same. The
//! first byte picks the default country.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_fuzz::phone::{COUNTRIES, country};
use offpay_operator::phone::{E164_DIGITS_MAX, normalise};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let default_country = country(selector);
    let Ok(number) = normalise(text, default_country) else {
        return;
    };
    let written = number.as_str();
    let digits = number.digits();
    assert!(written.starts_with('+'), "{written:?}");
    assert!(
        (2..=E164_DIGITS_MAX).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
        "{written:?} from {text:?}"
    );
    // The number's last digit is the last digit typed: nothing was added after what was written.
    let typed_last = text.chars().filter(char::is_ascii_digit).last();
    assert_eq!(
        typed_last,
        digits.chars().last(),
        "{written:?} from {text:?}"
    );
    for index in 0..COUNTRIES.len() {
        let again = normalise(written, country(index as u8))
            .unwrap_or_else(|error| panic!("{written:?} refused when read again: {error}"));
        assert_eq!(again, number, "{written:?} read again differently");
    }
    let spaced: String = written
        .char_indices()
        .flat_map(|(index, character)| {
            let gap = index > 1 && index % 3 == 1;
            gap.then_some(' ').into_iter().chain(Some(character))
        })
        .collect();
    let again = normalise(&spaced, default_country)
        .unwrap_or_else(|error| panic!("{spaced:?} refused: {error}"));
    assert_eq!(
        again, number,
        "{spaced:?} read differently from {written:?}"
    );
});
