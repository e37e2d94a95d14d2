//! A plain text format for one envelope, so an envelope printed elsewhere (or the seed's worked
//! example) can be entered, and so sealed envelopes have a canonical plaintext.
//!
//! ```text
//! # comments and blank lines are ignored
//! format = 1
//! euin = 263 999 12345
//! row 1 | grid 1 | add 789187332813.23 | tan 123 | subtract 197196 | recipe 9, LS+6, 7, A2+3, A7+2, S1+5
//! …one line per row, rows 1..n in order, n = 20 or 50…
//! grid 1 digit 0 | 447 589 293 644 295 976 773 705 399 312
//! …digits 0–9 of grids 1–4: ten codes each, one per position…
//! grid 1 magnitude | 874 705 884 777 123 456 789 012 345
//! …nine codes per grid: amounts with 1, 2, … 9 digits before the point…
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use crate::envelope::{Envelope, Grid, Row, RowCount};
use crate::error::ImportError;
use crate::limits::{
    ACCOUNT_OFFSET_DIGITS, AMOUNT_OFFSET_WHOLE_DIGITS, GRID_CODE_RANGE, GRID_POSITIONS,
    GRIDS_PER_ENVELOPE, MAGNITUDE_CLASSES, ROWS_MAX,
};
use crate::numbers::{Euin, Tan};
use crate::recipe::Recipe;

/// The format version this code reads and writes.
pub const IMPORT_FORMAT_VERSION: u32 = 1;
/// Longest envelope file we read, in bytes.
pub const IMPORT_TEXT_BYTES_MAX: usize = 64 * 1024;

/// Writes `envelope` in the import format.
pub fn format_envelope(envelope: &Envelope) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# offpay SMS-TAN envelope");
    let _ = writeln!(out, "format = {IMPORT_FORMAT_VERSION}");
    let _ = writeln!(out, "euin = {}", envelope.euin.grouped());
    for row in &envelope.rows {
        let _ = writeln!(
            out,
            "row {} | grid {} | add {}.{:02} | tan {} | subtract {:06} | recipe {}",
            row.number(),
            row.grid_number(),
            row.amount_offset_hundredths() / 100,
            row.amount_offset_hundredths() % 100,
            row.tan().reveal(),
            row.account_offset(),
            row.recipe().printed()
        );
    }
    for (index, grid) in envelope.grids.iter().enumerate() {
        for digit in 0..10u8 {
            let _ = write!(out, "grid {} digit {digit} |", index + 1);
            for position in 1..=GRID_POSITIONS {
                let _ = write!(out, " {:03}", grid.code(digit, position));
            }
            out.push('\n');
        }
        let _ = write!(out, "grid {} magnitude |", index + 1);
        for class in 1..=MAGNITUDE_CLASSES {
            let _ = write!(out, " {:03}", grid.magnitude_code(class));
        }
        out.push('\n');
    }
    out
}

fn problem(line: usize, problem: &'static str) -> ImportError {
    ImportError::Line { line, problem }
}

fn parse_offset(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.')?;
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole)
        || whole.len() > AMOUNT_OFFSET_WHOLE_DIGITS as usize
        || fraction.len() != 2
        || !digits(fraction)
    {
        return None;
    }
    Some(whole.parse::<u64>().ok()? * 100 + fraction.parse::<u64>().ok()?)
}

fn parse_codes<const N: usize>(text: &str) -> Option<[u16; N]> {
    let mut codes = [0u16; N];
    let mut count = 0;
    for piece in text.split_whitespace() {
        if count == N || piece.len() > 3 || !piece.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let code: u16 = piece.parse().ok()?;
        if code >= GRID_CODE_RANGE {
            return None;
        }
        codes[count] = code;
        count += 1;
    }
    (count == N).then_some(codes)
}

fn parse_row(line_number: usize, text: &str) -> Result<Row, ImportError> {
    let mut parts = text.split('|').map(str::trim);
    let number: u8 = parts
        .next()
        .and_then(|part| part.strip_prefix("row"))
        .and_then(|rest| rest.trim().parse().ok())
        .filter(|number| (1..=ROWS_MAX as u8).contains(number))
        .ok_or(problem(
            line_number,
            "row number 1 to 50 expected after 'row'",
        ))?;
    let mut field = |name: &str| -> Result<&str, ImportError> {
        parts
            .next()
            .and_then(|part| part.strip_prefix(name))
            .map(str::trim)
            .ok_or(problem(
                line_number,
                "row fields: grid | add | tan | subtract | recipe",
            ))
    };
    let grid: u8 = field("grid")?
        .parse()
        .map_err(|_| problem(line_number, "grid must be 1 to 4"))?;
    let offset = parse_offset(field("add")?).ok_or(problem(
        line_number,
        "add must be up to 12 digits, a point and 2 decimals",
    ))?;
    let tan =
        Tan::parse(field("tan")?).map_err(|_| problem(line_number, "tan must be 3 digits"))?;
    let subtract_text = field("subtract")?;
    if subtract_text.is_empty()
        || subtract_text.len() > ACCOUNT_OFFSET_DIGITS as usize
        || !subtract_text.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(problem(line_number, "subtract must be up to 6 digits"));
    }
    let subtract: u32 = subtract_text
        .parse()
        .map_err(|_| problem(line_number, "subtract must be up to 6 digits"))?;
    let recipe = Recipe::parse(field("recipe")?).ok_or(problem(
        line_number,
        "recipe must be six terms like 9, LS+6, A2+3, S1+5",
    ))?;
    if parts.next().is_some() {
        return Err(problem(line_number, "too many fields on the row line"));
    }
    Row::new(number, grid, offset, tan, subtract, recipe)
        .ok_or(problem(line_number, "grid must be 1 to 4"))
}

/// Reads an envelope in the import format.
pub fn parse_envelope(text: &str) -> Result<Envelope, ImportError> {
    if text.len() > IMPORT_TEXT_BYTES_MAX {
        return Err(problem(0, "file too long"));
    }
    let mut version: Option<u32> = None;
    let mut euin: Option<Euin> = None;
    let mut rows: Vec<Row> = Vec::new();
    let mut cells = [[[None::<u16>; GRID_POSITIONS]; 10]; GRIDS_PER_ENVELOPE];
    let mut magnitudes = [None::<[u16; MAGNITUDE_CLASSES]>; GRIDS_PER_ENVELOPE];
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "format" => {
                    let parsed: u32 = value
                        .trim()
                        .parse()
                        .map_err(|_| problem(line_number, "format must be a number"))?;
                    if parsed != IMPORT_FORMAT_VERSION {
                        return Err(ImportError::UnsupportedVersion);
                    }
                    version = Some(parsed);
                }
                "euin" => {
                    let digits: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                    euin = Some(
                        Euin::parse(&digits)
                            .map_err(|_| problem(line_number, "euin must be 11 digits"))?,
                    );
                }
                _ => return Err(problem(line_number, "unknown setting")),
            }
            continue;
        }
        if version.is_none() {
            return Err(problem(
                line_number,
                "the file must start with 'format = 1'",
            ));
        }
        if line.starts_with("row") {
            let row = parse_row(line_number, line)?;
            if usize::from(row.number()) != rows.len() + 1 {
                return Err(problem(
                    line_number,
                    "rows must be numbered 1, 2, 3 … in order",
                ));
            }
            rows.push(row);
            continue;
        }
        let Some(rest) = line.strip_prefix("grid") else {
            return Err(problem(
                line_number,
                "expected a setting, a row line or a grid line",
            ));
        };
        let (head, codes) = rest.split_once('|').ok_or(problem(
            line_number,
            "grid lines have a '|' before the codes",
        ))?;
        let words: Vec<&str> = head.split_whitespace().collect();
        let grid: usize = words
            .first()
            .and_then(|word| word.parse().ok())
            .filter(|grid| (1..=GRIDS_PER_ENVELOPE).contains(grid))
            .ok_or(problem(line_number, "grid number must be 1 to 4"))?;
        match words.get(1..) {
            Some(["digit", digit]) => {
                let digit: usize = digit
                    .parse()
                    .ok()
                    .filter(|digit| *digit <= 9)
                    .ok_or(problem(line_number, "digit must be 0 to 9"))?;
                let parsed: [u16; GRID_POSITIONS] =
                    parse_codes(codes).ok_or(problem(line_number, "ten 3-digit codes expected"))?;
                for (slot, code) in cells[grid - 1][digit].iter_mut().zip(parsed) {
                    *slot = Some(code);
                }
            }
            Some(["magnitude"]) => {
                magnitudes[grid - 1] = Some(
                    parse_codes(codes)
                        .ok_or(problem(line_number, "nine 3-digit codes expected"))?,
                );
            }
            _ => {
                return Err(problem(
                    line_number,
                    "expected 'grid N digit D' or 'grid N magnitude'",
                ));
            }
        }
    }
    if version.is_none() {
        return Err(ImportError::Missing("format = 1"));
    }
    let euin = euin.ok_or(ImportError::Missing("euin"))?;
    if RowCount::from_count(rows.len()).is_none() {
        return Err(ImportError::Missing("rows (an envelope has 20 or 50)"));
    }
    let mut grids: Vec<Grid> = Vec::with_capacity(GRIDS_PER_ENVELOPE);
    for (grid_index, grid_cells) in cells.iter().enumerate() {
        let mut complete = [[0u16; GRID_POSITIONS]; 10];
        for (digit, row) in grid_cells.iter().enumerate() {
            for (position, cell) in row.iter().enumerate() {
                complete[digit][position] =
                    cell.ok_or(ImportError::Missing("a grid digit line"))?;
            }
        }
        let magnitude =
            magnitudes[grid_index].ok_or(ImportError::Missing("a grid magnitude line"))?;
        grids.push(Grid::new(complete, magnitude).map_err(|column| {
            ImportError::DuplicateGridCode {
                grid: grid_index as u8 + 1,
                column,
            }
        })?);
    }
    let grids: [Grid; GRIDS_PER_ENVELOPE] = grids
        .try_into()
        .map_err(|_| ImportError::Missing("four grids"))?;
    Ok(Envelope { euin, rows, grids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn format_and_parse_round_trip() {
        let master = MasterKey::from_bytes([3; 32]);
        let envelope = Envelope::derive(&master, Euin::issued(263, 5).unwrap(), RowCount::Twenty);
        let text = format_envelope(&envelope);
        let back = parse_envelope(&text).unwrap();
        assert_eq!(back.euin, envelope.euin);
        assert_eq!(format_envelope(&back), text);
    }

    #[test]
    fn errors_point_at_the_line() {
        let master = MasterKey::from_bytes([3; 32]);
        let envelope = Envelope::derive(&master, Euin::issued(263, 5).unwrap(), RowCount::Twenty);
        let text = format_envelope(&envelope);
        let broken = text.replacen("| tan ", "| tan 1", 1);
        assert!(matches!(
            parse_envelope(&broken),
            Err(ImportError::Line { line: 4, .. })
        ));
        let missing: String = text
            .lines()
            .filter(|line| !line.starts_with("grid 3 magnitude"))
            .map(|line| alloc::format!("{line}\n"))
            .collect();
        assert_eq!(
            parse_envelope(&missing).err(),
            Some(ImportError::Missing("a grid magnitude line"))
        );
        let duplicate = text.replacen("grid 1 digit 1 | ", "grid 1 digit 1 | 999 ", 1);
        assert!(parse_envelope(&duplicate).is_err());
        assert_eq!(
            parse_envelope(&text.replace("format = 1", "format = 2")).err(),
            Some(ImportError::UnsupportedVersion)
        );
    }
}
