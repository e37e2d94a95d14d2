//! Writes a PDF of the seed's envelope followed by `N` envelopes derived from a demonstration
//! master key, for checking the layout by eye:
//! `cargo run -p offpay-sms-tan --features operator --example print_envelopes -- out.pdf 2 && pdftoppm -png -r 70 out.pdf page`

use offpay_sms_tan::import::parse_envelope;
use offpay_sms_tan::pdf::render_explicit_envelopes_pdf;
use offpay_sms_tan::{Envelope, Euin, MasterKey, PdfOptions, RowCount};

fn main() {
    let mut arguments = std::env::args().skip(1);
    let path = arguments
        .next()
        .unwrap_or_else(|| "envelopes.pdf".to_string());
    let count: u32 = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1);
    let master = MasterKey::from_bytes([0x5a; 32]);
    let seed = parse_envelope(include_str!(
        "../tests/vectors/seed-002-worked-example.envelope"
    ))
    .unwrap_or_else(|error| panic!("seed vector: {error}"));
    let mut envelopes = vec![seed];
    for serial in 1..=count {
        let euin = Euin::issued(263, serial).unwrap_or_else(|error| panic!("{error:?}"));
        envelopes.push(Envelope::derive(&master, euin, RowCount::Fifty));
    }
    let options = PdfOptions {
        operator_name: "offpay demo".to_string(),
        sms_number: "+254 700 000 000".to_string(),
    };
    let pdf = render_explicit_envelopes_pdf(&envelopes, &options, &mut |done, total| {
        eprintln!("{done}/{total}");
    });
    std::fs::write(&path, pdf).unwrap_or_else(|error| panic!("{path}: {error}"));
}
