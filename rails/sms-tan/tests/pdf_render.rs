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

/// One text show of the PDF's content: font resource, size, position, text.
#[derive(Debug)]
struct Shown {
    font: String,
    size: f32,
    x: f32,
    y: f32,
    text: String,
}

/// Every `BT /F s Tf x y Td (text) Tj ET` of the PDF (the writer does not compress streams).
fn shown(pdf: &[u8]) -> Vec<Shown> {
    let text = String::from_utf8_lossy(pdf);
    text.split("BT /")
        .skip(1)
        .filter_map(|piece| {
            let end = piece.find(") Tj ET")?;
            let piece = &piece[..end];
            let (head, body) = piece.split_once(" (")?;
            let parts: Vec<&str> = head.split_whitespace().collect();
            // F3 7.0 Tf 342.00 700.00 Td
            Some(Shown {
                font: parts[0].to_owned(),
                size: parts[1].parse().ok()?,
                x: parts[3].parse().ok()?,
                y: parts[4].parse().ok()?,
                text: body
                    .replace("\\(", "(")
                    .replace("\\)", ")")
                    .replace("\\\\", "\\"),
            })
        })
        .collect()
}

/// Issue 18: the printed envelope is right — every grid's position numbers stand over their
/// codes, and all text is at least 6.5 pt and inside an A4 page. Read back from the rendered PDF
/// (Courier: every character 0.6 em wide).
#[test]
fn grid_columns_sit_under_their_numbers_and_text_is_legible_on_a4() {
    for rows in [RowCount::Twenty, RowCount::Fifty] {
        let envelope = Envelope::derive(&common::master(), Euin::issued(263, 9).unwrap(), rows);
        let pdf = render_explicit_envelopes_pdf(
            std::slice::from_ref(&envelope),
            &PdfOptions::default(),
            &mut |_, _| {},
        );
        let shown = shown(&pdf);
        assert!(shown.len() > 50, "{} text shows", shown.len());
        for item in &shown {
            assert!(item.size >= 6.5, "too small to read on A4: {item:?}");
            let width = if item.font == "F3" {
                0.6 * item.size * item.text.chars().count() as f32
            } else {
                // Helvetica is narrower than Courier on average; bound it by Courier's width.
                0.6 * item.size * item.text.chars().count() as f32
            };
            assert!(
                item.x >= 0.0 && item.y >= 0.0 && item.y <= 842.0,
                "{item:?}"
            );
            if item.font == "F3" {
                assert!(item.x + width <= 595.0, "off the page: {item:?}");
            }
        }
        let headers: Vec<&Shown> = shown.iter().filter(|s| s.text.starts_with("pos")).collect();
        assert_eq!(headers.len(), 4, "one header per grid");
        for header in headers {
            let advance = 0.6 * header.size;
            let lines: Vec<&Shown> = shown
                .iter()
                .filter(|s| {
                    s.text.starts_with("digit ")
                        && (s.x - header.x).abs() < 60.0
                        && s.y < header.y
                        && header.y - s.y < 12.0 * 8.2
                })
                .collect();
            assert_eq!(lines.len(), 10, "ten digit lines under {header:?}");
            for position in 1..=10 {
                let number = position.to_string();
                // Where the number is printed in the header, in points.
                let at = header
                    .text
                    .match_indices(&format!(" {number} "))
                    .map(|(index, _)| index + 1)
                    .next()
                    .unwrap_or_else(|| panic!("position {position} in {:?}", header.text));
                let number_start = header.x + advance * at as f32;
                let number_end = number_start + advance * number.len() as f32;
                for line in &lines {
                    let codes: Vec<(usize, &str)> = line
                        .text
                        .match_indices(|c: char| c.is_ascii_digit())
                        .collect();
                    // The position's code: the position-th run of three digits after the label.
                    let label = "digit 0".len();
                    let runs: Vec<usize> = codes
                        .iter()
                        .map(|(index, _)| *index)
                        .filter(|index| *index > label)
                        .collect::<Vec<_>>()
                        .chunks(3)
                        .map(|chunk| chunk[0])
                        .collect();
                    let code_start = line.x + advance * runs[position - 1] as f32;
                    let code_end = code_start + advance * 3.0;
                    assert!(
                        number_start >= code_start - 0.01 && number_end <= code_end + 0.01,
                        "position {position}: number at {number_start}-{number_end}, codes at \
                         {code_start}-{code_end} ({:?} / {:?})",
                        header.text,
                        line.text
                    );
                }
            }
        }
    }
}

/// Issue 24: the envelope printed in each language; French accents print (WinAnsi), and with
/// poppler installed the text read back is the catalogue's.
#[test]
fn the_envelope_prints_in_each_language() {
    use offpay_sms_tan::pdf::render_explicit_envelopes_pdf_in;
    use offpay_text::Language;
    let seed = parse_envelope(include_str!("vectors/seed-002-worked-example.envelope")).unwrap();
    for (language, raw, read_back) in [
        (
            Language::En,
            "Envelope number \\(EUIN\\)",
            "Cross out each row once used.",
        ),
        (
            Language::Sw,
            "Namba ya bahasha \\(EUIN\\)",
            "Kata kila mstari baada ya kuutumia.",
        ),
        (
            Language::Fr,
            "Num\\351ro d'enveloppe \\(EUIN\\)",
            "Barrez chaque ligne une fois utilisée.",
        ),
    ] {
        let pdf = render_explicit_envelopes_pdf_in(
            language,
            std::slice::from_ref(&seed),
            &PdfOptions::default(),
            &mut |_, _| {},
        );
        let bytes = String::from_utf8_lossy(&pdf);
        assert!(bytes.contains(raw), "{language:?}: {raw} not in the PDF");
        let directory = std::env::temp_dir().join(format!(
            "offpay-sms-tan-pdf-{}-{}",
            std::process::id(),
            language.code()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("envelope.pdf");
        std::fs::write(&path, &pdf).unwrap();
        match std::process::Command::new("pdftotext")
            .arg(&path)
            .arg("-")
            .output()
        {
            Ok(output) if output.status.success() => {
                let text = String::from_utf8_lossy(&output.stdout);
                assert!(text.contains(read_back), "{language:?}: {text}");
                assert!(text.contains("263 999 12345"), "{text}");
            }
            _ => eprintln!("pdftotext not installed: raw checks only"),
        }
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
