//! Renders the seed's envelope and a derived 50-row one, and checks the PDF with poppler's
//! `pdftotext` when it is installed (`apt-get install poppler-utils`); the PNG check by eye is
//! `pdftoppm -png -r 60 <file> out`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use offpay_sms_tan::import::parse_envelope;
use offpay_sms_tan::pdf::render_explicit_envelopes_pdf;
use offpay_sms_tan::{Envelope, Euin, PdfOptions, RowCount, render_envelopes_pdf};

#[test]
fn seed_envelope_renders_and_poppler_reads_it() {
    let seed = parse_envelope(include_str!("vectors/seed-002-worked-example.envelope")).unwrap();
    let derived = Envelope::derive(
        &common::master(),
        Euin::issued(263, 7).unwrap(),
        RowCount::Fifty,
    );
    let pdf =
        render_explicit_envelopes_pdf(&[seed, derived], &PdfOptions::default(), &mut |_, _| {});
    let directory = std::env::temp_dir().join(format!("offpay-sms-tan-pdf-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("envelopes.pdf");
    std::fs::write(&path, &pdf).unwrap();
    match std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
    {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(text.contains("263 999 12345"), "{text}");
            assert!(text.contains("789187332813.23 123 197196"), "{text}");
            assert!(text.contains("9, LS+6, 7, A2+3, A7+2, S1+5"), "{text}");
            assert!(
                text.contains("447 589 293 644 295 976 773 705 399 312"),
                "{text}"
            );
        }
        _ => eprintln!("pdftotext not installed: structural checks only"),
    }
    assert!(pdf.starts_with(b"%PDF-1.4"));
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn large_runs_report_progress_for_each_envelope() {
    let euins: Vec<Euin> = (1..=25)
        .map(|serial| Euin::issued(263, serial).unwrap())
        .collect();
    let mut seen = 0;
    let pdf = render_envelopes_pdf(
        &common::master(),
        &euins,
        RowCount::Twenty,
        &PdfOptions::default(),
        &mut |done, total| {
            assert_eq!(total, 25);
            seen = done;
        },
    );
    assert_eq!(seen, 25);
    assert!(pdf.len() > 25 * 2 * 1000);
}
