//! Inbound SMS text, as a gateway delivers it: parsing never panics and stays within its bounds;
//! whatever parses has one canonical text ([`Message::format`]) that parses back to the same
//! message and formats to itself. Guessing a kind (for replies about malformed messages) never
//! panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_sms_tan::grammar::guess_kind;
use offpay_sms_tan::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = guess_kind(text);
    let Ok(message) = parse(text) else {
        return;
    };
    let canonical = message.format();
    let again = parse(&canonical)
        .unwrap_or_else(|error| panic!("canonical text {canonical:?} refused: {error:?}"));
    assert_eq!(
        again, message,
        "canonical text {canonical:?} read differently"
    );
    assert_eq!(again.format(), canonical, "format is not a fixed point");
});
