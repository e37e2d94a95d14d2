//! Envelope import files (the text an operator uploads to bring in envelopes printed elsewhere):
//! parsing never panics; whatever parses formats to a canonical text that parses back to an
//! envelope with the same canonical text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_sms_tan::import::{format_envelope, parse_envelope};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(envelope) = parse_envelope(text) else {
        return;
    };
    let canonical = format_envelope(&envelope);
    let again = parse_envelope(&canonical)
        .unwrap_or_else(|error| panic!("canonical envelope refused: {error}"));
    assert_eq!(
        format_envelope(&again),
        canonical,
        "format is not a fixed point"
    );
    assert!(
        envelope.row_count().is_some(),
        "an envelope has 20 or 50 rows"
    );
});
