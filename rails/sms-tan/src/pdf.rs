//! The printable envelope: a small hand-written PDF (standard Type 1 fonts, text and lines only,
//! no dependencies). Two A4 pages per envelope, for duplex printing: the outside with the EUIN,
//! crop and fold marks; the inside with the rows, the four grids and how to use them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use crate::envelope::{Envelope, RowCount};
use crate::keys::MasterKey;
use crate::limits::{GRID_POSITIONS, GRIDS_PER_ENVELOPE, MAGNITUDE_CLASSES, PDF_ENVELOPES_MAX};
use crate::numbers::Euin;
use offpay_text::{Language, envelope as text};

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 36.0;
/// Font size of the grids (Courier): legible on A4.
const GRID_FONT: f32 = 7.0;
/// Line pitch of the grids.
const GRID_LINE: f32 = 8.2;
/// Characters of a grid line's label (`digit 0`, `size 1-9`, `pos`).
const GRID_LABEL_CHARS: usize = 9;
const CROP_MARK_LENGTH: f32 = 18.0;
/// Width of the rows table; the grids start right of it.
const ROWS_TABLE_WIDTH: f32 = 290.0;
/// Font size of the instructions inside.
const HOWTO_FONT: f32 = 6.6;
/// Characters of the longest instruction line that fit the page width at [`HOWTO_FONT`].
const HOWTO_CHARS_AT_FULL_SIZE: usize = 130;

/// Settings for a print run.
#[derive(Clone, Debug)]
pub struct PdfOptions {
    /// The operator's name, printed on the outside.
    pub operator_name: String,
    /// The SMS number payers send to, printed on the outside.
    pub sms_number: String,
}

impl Default for PdfOptions {
    fn default() -> Self {
        PdfOptions {
            operator_name: String::from("offpay"),
            sms_number: String::from("your operator's SMS number"),
        }
    }
}

/// Renders envelopes derived from the master key, one after the other, calling
/// `progress(done, total)` after each. At most [`PDF_ENVELOPES_MAX`] per call (larger runs are
/// printed in batches); extra EUINs are ignored and reported by the total.
pub fn render_envelopes_pdf(
    master: &MasterKey,
    euins: &[Euin],
    rows: RowCount,
    options: &PdfOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<u8> {
    render_envelopes_pdf_in(Language::En, master, euins, rows, options, progress)
}

/// [`render_envelopes_pdf`] with the words printed in `language` (the holder's, when an agent
/// prints for a known holder; the operator's default otherwise).
pub fn render_envelopes_pdf_in(
    language: Language,
    master: &MasterKey,
    euins: &[Euin],
    rows: RowCount,
    options: &PdfOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<u8> {
    let total = euins.len().min(PDF_ENVELOPES_MAX);
    let mut writer = PdfWriter::new();
    for (index, euin) in euins.iter().take(total).enumerate() {
        let envelope = Envelope::derive(master, *euin, rows);
        writer.envelope(&envelope, options, language);
        progress(index + 1, total);
    }
    writer.finish()
}

/// Renders explicit envelopes (imported ones, or tests).
pub fn render_explicit_envelopes_pdf(
    envelopes: &[Envelope],
    options: &PdfOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<u8> {
    render_explicit_envelopes_pdf_in(Language::En, envelopes, options, progress)
}

/// [`render_explicit_envelopes_pdf`] with the words printed in `language`.
pub fn render_explicit_envelopes_pdf_in(
    language: Language,
    envelopes: &[Envelope],
    options: &PdfOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<u8> {
    let total = envelopes.len().min(PDF_ENVELOPES_MAX);
    let mut writer = PdfWriter::new();
    for (index, envelope) in envelopes.iter().take(total).enumerate() {
        writer.envelope(envelope, options, language);
        progress(index + 1, total);
    }
    writer.finish()
}

/// Escapes text for a PDF string literal in the fonts' WinAnsi encoding: Latin-1 letters (é, ç,
/// ê …, which WinAnsi codes as Latin-1 does) as octal escapes, `œ` and `Œ` at their WinAnsi
/// codes; anything else outside printable ASCII becomes `?`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        let code = match character {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(character);
                continue;
            }
            ' '..='~' => {
                out.push(character);
                continue;
            }
            '\u{a0}'..='\u{ff}' => character as u32,
            '\u{153}' => 0x9c,
            '\u{152}' => 0x8c,
            _ => {
                out.push('?');
                continue;
            }
        };
        let _ = write!(out, "\\{code:03o}");
    }
    out
}

/// Message `id` of the envelope area in `language`.
fn words(
    language: Language,
    id: offpay_text::Id,
    args: &[(&str, &dyn core::fmt::Display)],
) -> String {
    offpay_text::text(language, id, args)
}

/// One page's drawing commands.
struct Page {
    content: String,
}

#[derive(Clone, Copy)]
enum Font {
    Sans,
    SansBold,
    Mono,
}

impl Font {
    fn name(self) -> &'static str {
        match self {
            Font::Sans => "F1",
            Font::SansBold => "F2",
            Font::Mono => "F3",
        }
    }
}

impl Page {
    fn new() -> Page {
        Page {
            content: String::new(),
        }
    }

    fn text(&mut self, font: Font, size: f32, x: f32, y: f32, text: &str) {
        let _ = writeln!(
            self.content,
            "BT /{} {size:.1} Tf {x:.2} {y:.2} Td ({}) Tj ET",
            font.name(),
            escape(text)
        );
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, width: f32, dashed: bool) {
        let dash = if dashed { "[4 3] 0 d" } else { "[] 0 d" };
        let _ = writeln!(
            self.content,
            "{width:.2} w {dash} {x1:.2} {y1:.2} m {x2:.2} {y2:.2} l S"
        );
    }

    fn rectangle(&mut self, x: f32, y: f32, width: f32, height: f32) {
        let _ = writeln!(
            self.content,
            "0.8 w [] 0 d {x:.2} {y:.2} {width:.2} {height:.2} re S"
        );
    }

    fn crop_marks(&mut self) {
        for (x, y, dx, dy) in [
            (MARGIN / 2.0, MARGIN / 2.0, 1.0, 1.0),
            (PAGE_WIDTH - MARGIN / 2.0, MARGIN / 2.0, -1.0, 1.0),
            (MARGIN / 2.0, PAGE_HEIGHT - MARGIN / 2.0, 1.0, -1.0),
            (
                PAGE_WIDTH - MARGIN / 2.0,
                PAGE_HEIGHT - MARGIN / 2.0,
                -1.0,
                -1.0,
            ),
        ] {
            self.line(x, y, x + dx * CROP_MARK_LENGTH, y, 0.5, false);
            self.line(x, y, x, y + dy * CROP_MARK_LENGTH, 0.5, false);
        }
    }
}

struct PdfWriter {
    pages: Vec<Page>,
}

impl PdfWriter {
    fn new() -> PdfWriter {
        PdfWriter { pages: Vec::new() }
    }

    fn envelope(&mut self, envelope: &Envelope, options: &PdfOptions, language: Language) {
        self.pages.push(outside(envelope, options, language));
        self.pages.push(inside(envelope, language));
    }

    fn finish(self) -> Vec<u8> {
        // Objects: 1 catalog, 2 page tree, 3-5 fonts, then a page and its content per page.
        let mut out: Vec<u8> = Vec::new();
        let mut offsets: Vec<usize> = Vec::new();
        out.extend_from_slice(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n");
        let object = |out: &mut Vec<u8>, offsets: &mut Vec<usize>, body: &[u8]| {
            offsets.push(out.len());
            let number = offsets.len();
            out.extend_from_slice(format!("{number} 0 obj\n").as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        };
        let page_count = self.pages.len();
        let first_page_object = 6;
        object(&mut out, &mut offsets, b"<< /Type /Catalog /Pages 2 0 R >>");
        let mut kids = String::new();
        for index in 0..page_count {
            let _ = write!(kids, "{} 0 R ", first_page_object + index * 2);
        }
        object(
            &mut out,
            &mut offsets,
            format!("<< /Type /Pages /Kids [{kids}] /Count {page_count} >>").as_bytes(),
        );
        for base in ["Helvetica", "Helvetica-Bold", "Courier"] {
            object(
                &mut out,
                &mut offsets,
                format!(
                    "<< /Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding >>"
                )
                .as_bytes(),
            );
        }
        for (index, page) in self.pages.iter().enumerate() {
            let content_object = first_page_object + index * 2 + 1;
            object(
                &mut out,
                &mut offsets,
                format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
                     /Resources << /Font << /F1 3 0 R /F2 4 0 R /F3 5 0 R >> >> /Contents {content_object} 0 R >>"
                )
                .as_bytes(),
            );
            let mut body = format!("<< /Length {} >>\nstream\n", page.content.len()).into_bytes();
            body.extend_from_slice(page.content.as_bytes());
            body.extend_from_slice(b"\nendstream");
            object(&mut out, &mut offsets, &body);
        }
        let xref_offset = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes(),
        );
        for offset in &offsets {
            out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref_offset}\n%%EOF\n",
                offsets.len() + 1
            )
            .as_bytes(),
        );
        out
    }
}

fn outside(envelope: &Envelope, options: &PdfOptions, language: Language) -> Page {
    let mut page = Page::new();
    page.crop_marks();
    let fold = PAGE_HEIGHT / 2.0;
    page.line(
        MARGIN / 2.0,
        fold,
        PAGE_WIDTH - MARGIN / 2.0,
        fold,
        0.6,
        true,
    );
    page.text(
        Font::Sans,
        7.0,
        MARGIN,
        fold + 4.0,
        &words(language, text::FOLD, &[]),
    );
    let top = PAGE_HEIGHT - 3.0 * MARGIN;
    page.text(
        Font::Sans,
        14.0,
        MARGIN * 2.0,
        top,
        &words(
            language,
            text::TITLE,
            &[("operator", &options.operator_name)],
        ),
    );
    page.text(
        Font::Sans,
        11.0,
        MARGIN * 2.0,
        top - 40.0,
        &words(language, text::NUMBER_LABEL, &[]),
    );
    page.text(
        Font::SansBold,
        40.0,
        MARGIN * 2.0,
        top - 90.0,
        &envelope.euin.grouped(),
    );
    let rows = envelope.rows.len();
    page.text(
        Font::Sans,
        11.0,
        MARGIN * 2.0,
        top - 130.0,
        &words(language, text::ROWS_INSIDE, &[("rows", &rows)]),
    );
    page.text(
        Font::Sans,
        11.0,
        MARGIN * 2.0,
        top - 150.0,
        &words(language, text::REGISTER, &[("euin", &envelope.euin)]),
    );
    page.text(
        Font::Sans,
        11.0,
        MARGIN * 2.0,
        top - 170.0,
        &words(
            language,
            text::REGISTER_TO,
            &[("number", &options.sms_number)],
        ),
    );
    page.text(
        Font::SansBold,
        11.0,
        MARGIN * 2.0,
        top - 200.0,
        &words(language, text::SEAL, &[]),
    );
    page.rectangle(MARGIN * 1.5, top - 220.0, PAGE_WIDTH - 3.0 * MARGIN, 250.0);
    page
}

fn inside(envelope: &Envelope, language: Language) -> Page {
    let mut page = Page::new();
    page.crop_marks();
    let mut y = PAGE_HEIGHT - MARGIN - 10.0;
    page.text(
        Font::SansBold,
        10.0,
        MARGIN,
        y,
        &words(
            language,
            text::SECRET,
            &[("euin", &envelope.euin.grouped())],
        ),
    );
    y -= 18.0;
    let row_height = if envelope.rows.len() > 20 { 8.4 } else { 12.0 };
    // Courier is 0.6 em wide: 64 characters must fit the table width.
    let row_font = if envelope.rows.len() > 20 { 6.6 } else { 7.2 };
    page.text(
        Font::Mono,
        row_font,
        MARGIN,
        y,
        &words(language, text::ROWS_HEADER, &[]),
    );
    page.line(
        MARGIN,
        y - 3.0,
        MARGIN + ROWS_TABLE_WIDTH,
        y - 3.0,
        0.4,
        false,
    );
    y -= row_height;
    for row in &envelope.rows {
        let line = format!(
            "{:>3} {} {:>12}.{:02} {} {:06} {}",
            row.number(),
            row.grid_number(),
            row.amount_offset_hundredths() / 100,
            row.amount_offset_hundredths() % 100,
            row.tan().reveal(),
            row.account_offset(),
            row.recipe().printed()
        );
        page.text(Font::Mono, row_font, MARGIN, y, &line);
        page.line(
            MARGIN,
            y - 2.5,
            MARGIN + ROWS_TABLE_WIDTH,
            y - 2.5,
            0.15,
            false,
        );
        y -= row_height;
    }
    let rows_bottom = y;
    // Grids in the right column.
    let grid_x = MARGIN + ROWS_TABLE_WIDTH + 16.0;
    let mut grid_y = PAGE_HEIGHT - MARGIN - 28.0;
    for (index, grid) in envelope.grids.iter().enumerate().take(GRIDS_PER_ENVELOPE) {
        page.text(
            Font::SansBold,
            8.0,
            grid_x,
            grid_y,
            &format!("GRID {}", index + 1),
        );
        // One monospaced layout for the header and the code lines: a label of
        // GRID_LABEL_CHARS, then one 3-digit field and a space per position, so each position's
        // number stands right-aligned over its codes (checked by reading the PDF back:
        // `tests/pdf_render.rs`).
        let mut header = format!("{:<GRID_LABEL_CHARS$}", "pos");
        for position in 1..=GRID_POSITIONS {
            let _ = write!(header, "{position:>3} ");
        }
        page.text(Font::Mono, GRID_FONT, grid_x, grid_y, &header);
        grid_y -= GRID_LINE + 1.0;
        for digit in 0..10u8 {
            let mut line = format!("{:<GRID_LABEL_CHARS$}", format!("digit {digit}"));
            for position in 1..=GRID_POSITIONS {
                let _ = write!(line, "{:03} ", grid.code(digit, position));
            }
            page.text(Font::Mono, GRID_FONT, grid_x, grid_y, &line);
            grid_y -= GRID_LINE;
        }
        let mut sizes = format!("{:<GRID_LABEL_CHARS$}", "size 1-9");
        for class in 1..=MAGNITUDE_CLASSES {
            let _ = write!(sizes, "{:03} ", grid.magnitude_code(class));
        }
        page.text(Font::Mono, GRID_FONT, grid_x, grid_y, &sizes);
        grid_y -= 2.0 * GRID_LINE;
    }
    // How to use it, under whichever column ends lower.
    let mut y = rows_bottom.min(grid_y) - 10.0;
    page.line(MARGIN, y + 6.0, PAGE_WIDTH - MARGIN, y + 6.0, 0.4, false);
    let lines = text::HOWTO.map(|id| words(language, id, &[]));
    // The English lines fill the width at 6.6 pt; longer translations print smaller to fit.
    let longest = lines
        .iter()
        .map(|line| line.chars().count())
        .max()
        .unwrap_or(1);
    let size = if longest > HOWTO_CHARS_AT_FULL_SIZE {
        HOWTO_FONT * HOWTO_CHARS_AT_FULL_SIZE as f32 / longest as f32
    } else {
        HOWTO_FONT
    };
    for instruction in &lines {
        page.text(Font::Sans, size, MARGIN, y, instruction);
        y -= 9.0;
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_is_well_formed_and_reports_progress() {
        let master = MasterKey::from_bytes([9; 32]);
        let euins = [Euin::issued(263, 1).unwrap(), Euin::issued(263, 2).unwrap()];
        let mut calls = Vec::new();
        let pdf = render_envelopes_pdf(
            &master,
            &euins,
            RowCount::Fifty,
            &PdfOptions::default(),
            &mut |done, total| calls.push((done, total)),
        );
        assert_eq!(calls, [(1, 2), (2, 2)]);
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.ends_with("%%EOF\n"));
        assert!(text.contains("/Count 4"));
        assert!(text.contains(&euins[0].grouped()));
        // The xref offsets point at the objects.
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[xref_at..].starts_with(b"xref"));
        let xref = String::from_utf8_lossy(&pdf[xref_at..]);
        let first_offset: usize = xref.lines().nth(3).unwrap()[..10].parse().unwrap();
        assert!(pdf[first_offset..].starts_with(b"1 0 obj"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a(b)c\\d\u{e9}"), "a\\(b\\)c\\\\d\\351");
        assert_eq!(escape("\u{153}\u{2068}"), "\\234?");
    }
}
