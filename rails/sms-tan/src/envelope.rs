//! Envelopes (TAN/PIN envelopes, TPE): rows, grids, their derivation from the master key, and the
//! bookkeeping a database keeps about them. Where a verifier gets an envelope's secrets from is
//! [`crate::secrets`].

use alloc::vec::Vec;
use core::fmt;

use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

pub use crate::keys::BindingTag;
use crate::keys::{DigitStream, EnvelopeKey, MasterKey, SealedEnvelope};
use crate::limits::{
    ACCOUNT_NUMBER_DIGITS, ACCOUNT_OFFSET_RANGE, AMOUNT_OFFSET_RANGE, CHECKSUM_DIGITS,
    GRID_CODE_RANGE, GRID_POSITIONS, GRIDS_PER_ENVELOPE, MAGNITUDE_CLASSES, ROWS_MAX,
};
use crate::numbers::{AccountNumber, Euin, Tan};
use crate::recipe::{DERIVED_AMOUNT_DIGITS, Recipe, Term};

/// How many rows an envelope has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowCount {
    /// 20 rows (the seed's worked example).
    Twenty,
    /// 50 rows.
    Fifty,
}

impl RowCount {
    /// The number of rows.
    pub fn get(self) -> u8 {
        match self {
            RowCount::Twenty => 20,
            RowCount::Fifty => 50,
        }
    }

    /// 20 or 50.
    pub fn from_count(count: usize) -> Option<RowCount> {
        match count {
            20 => Some(RowCount::Twenty),
            50 => Some(RowCount::Fifty),
            _ => None,
        }
    }
}

const _: () = assert!(50 <= ROWS_MAX);

/// The set of used rows of one envelope (bit k-1 for row k): what the database stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RowSet(u64);

impl RowSet {
    /// No row used.
    pub const EMPTY: RowSet = RowSet(0);

    /// From the stored bit set.
    pub fn from_bits(bits: u64) -> RowSet {
        RowSet(bits)
    }

    /// The bit set to store.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// True if `row` (from 1) is in the set.
    pub fn contains(self, row: u8) -> bool {
        (1..=ROWS_MAX as u8).contains(&row) && self.0 & (1u64 << (row - 1)) != 0
    }

    /// Adds `row`.
    pub fn insert(&mut self, row: u8) {
        assert!((1..=ROWS_MAX as u8).contains(&row), "row out of range");
        self.0 |= 1u64 << (row - 1);
    }

    /// Rows of an envelope of `rows` not in the set.
    pub fn free_count(self, rows: RowCount) -> usize {
        (1..=rows.get()).filter(|row| !self.contains(*row)).count()
    }

    /// The highest-numbered free row, the one the bank takes for its replies (the payer starts
    /// from row 1, the bank from the end, as in the seed's example).
    pub fn highest_free(self, rows: RowCount) -> Option<u8> {
        (1..=rows.get()).rev().find(|row| !self.contains(*row))
    }

    /// The used rows, ascending.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (1..=ROWS_MAX as u8).filter(move |row| self.contains(*row))
    }
}

/// One row of an envelope. Secret: redacted in `Debug`, zeroized on drop.
#[derive(Clone)]
pub struct Row {
    pub(crate) number: u8,
    pub(crate) grid: u8,
    pub(crate) amount_offset: u64,
    pub(crate) tan: Tan,
    pub(crate) account_offset: u32,
    pub(crate) recipe: Recipe,
}

impl Row {
    /// Builds a row from printed values (import).
    pub fn new(
        number: u8,
        grid: u8,
        amount_offset_hundredths: u64,
        tan: Tan,
        account_offset: u32,
        recipe: Recipe,
    ) -> Option<Row> {
        let valid = (1..=ROWS_MAX as u8).contains(&number)
            && (1..=GRIDS_PER_ENVELOPE as u8).contains(&grid)
            && amount_offset_hundredths < AMOUNT_OFFSET_RANGE
            && account_offset < ACCOUNT_OFFSET_RANGE;
        valid.then_some(Row {
            number,
            grid,
            amount_offset: amount_offset_hundredths,
            tan,
            account_offset,
            recipe,
        })
    }

    /// Row number, from 1.
    pub fn number(&self) -> u8 {
        self.number
    }
    /// TanCol1: which grid (1–4) a middle/high instruction on this row uses.
    pub fn grid_number(&self) -> u8 {
        self.grid
    }
    /// TanCol2 in hundredths: added to the amount in a middle/high instruction.
    pub fn amount_offset_hundredths(&self) -> u64 {
        self.amount_offset
    }
    /// TanCol3: the TAN.
    pub fn tan(&self) -> &Tan {
        &self.tan
    }
    /// TanCol4: subtracted by the payee from the account number shown in a notice.
    pub fn account_offset(&self) -> u32 {
        self.account_offset
    }
    /// The low-security checksum recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Row `number` of the envelope whose key is `key`.
    pub(crate) fn derive_from(key: &EnvelopeKey, number: u8) -> Row {
        Row::derive(&mut key.stream(b"row", number), number)
    }

    fn derive(stream: &mut DigitStream, number: u8) -> Row {
        let grid = 1 + stream.below(GRIDS_PER_ENVELOPE as u64) as u8;
        let amount_offset = stream.below(AMOUNT_OFFSET_RANGE);
        let tan = Tan::from_value(stream.below(1000) as u16);
        let account_offset = stream.below(u64::from(ACCOUNT_OFFSET_RANGE)) as u32;
        let [first, second]: [u64; 2] = stream.distinct_below(ACCOUNT_NUMBER_DIGITS as u64);
        let mut draw_digit = || stream.below(10) as u8;
        // Every digit of the amount is covered: LS, the two leading digits and the digit sum.
        let mut terms: [Term; CHECKSUM_DIGITS] = [
            Term::AccountDigit {
                index: 1 + first as u8,
                add: draw_digit(),
            },
            Term::AccountDigit {
                index: 1 + second as u8,
                add: draw_digit(),
            },
            Term::WholeLength { add: draw_digit() },
            Term::AmountDigit {
                index: DERIVED_AMOUNT_DIGITS[0],
                add: draw_digit(),
            },
            Term::AmountDigit {
                index: DERIVED_AMOUNT_DIGITS[1],
                add: draw_digit(),
            },
            Term::DigitSum { add: draw_digit() },
        ];
        for last in (1..CHECKSUM_DIGITS).rev() {
            let pick = stream.below(last as u64 + 1) as usize;
            terms.swap(last, pick);
        }
        Row {
            number,
            grid,
            amount_offset,
            tan: match tan {
                Some(tan) => tan,
                None => unreachable!("below(1000) is a valid TAN"),
            },
            account_offset,
            recipe: Recipe(terms),
        }
    }
}

impl Drop for Row {
    fn drop(&mut self) {
        self.grid.zeroize();
        self.amount_offset.zeroize();
        self.account_offset.zeroize();
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Row({}, ***)", self.number)
    }
}

/// One encryption grid: for each digit 0–9 and position 1–10 a 3-digit code, plus the 3-digit
/// codes of the nine amount-magnitude classes. Secret: redacted in `Debug`, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Grid {
    pub(crate) cells: [[u16; GRID_POSITIONS]; 10],
    pub(crate) magnitude: [u16; MAGNITUDE_CLASSES],
}

impl Grid {
    /// Builds a grid from printed codes; every column (and the magnitude column) must hold
    /// distinct codes below 1000, or decoding would be ambiguous. Returns the failing column
    /// (1–10, 0 for magnitude) otherwise.
    pub fn new(
        cells: [[u16; GRID_POSITIONS]; 10],
        magnitude: [u16; MAGNITUDE_CLASSES],
    ) -> Result<Grid, u8> {
        for position in 0..GRID_POSITIONS {
            let column: [u16; 10] = cells.map(|digit_row| digit_row[position]);
            if !all_distinct_codes(&column) {
                return Err(position as u8 + 1);
            }
        }
        if !all_distinct_codes(&magnitude) {
            return Err(0);
        }
        Ok(Grid { cells, magnitude })
    }

    /// The code for `digit` at `position` (1–10).
    pub fn code(&self, digit: u8, position: usize) -> u16 {
        assert!(digit <= 9 && (1..=GRID_POSITIONS).contains(&position));
        self.cells[usize::from(digit)][position - 1]
    }

    /// The code of magnitude class `class` (1–9: digits before the point).
    pub fn magnitude_code(&self, class: usize) -> u16 {
        assert!((1..=MAGNITUDE_CLASSES).contains(&class));
        self.magnitude[class - 1]
    }

    /// The digit whose code at `position` is `code`, scanning every cell (no early exit).
    pub fn decode(&self, position: usize, code: u16) -> Option<u8> {
        assert!((1..=GRID_POSITIONS).contains(&position));
        let mut found = subtle::Choice::from(0);
        let mut digit = 0u8;
        for candidate in 0..10u8 {
            let hit = self.cells[usize::from(candidate)][position - 1].ct_eq(&code);
            digit.conditional_assign(&candidate, hit);
            found |= hit;
        }
        bool::from(found).then_some(digit)
    }

    /// Constant-time check of a typed magnitude code for class `class`.
    pub fn magnitude_matches(&self, class: usize, code: u16) -> bool {
        if !(1..=MAGNITUDE_CLASSES).contains(&class) {
            return false;
        }
        self.magnitude[class - 1].ct_eq(&code).into()
    }

    /// Grid `number` (1–4) of the envelope whose key is `key`.
    pub(crate) fn derive_from(key: &EnvelopeKey, number: u8) -> Grid {
        Grid::derive(&mut key.stream(b"grid", number))
    }

    fn derive(stream: &mut DigitStream) -> Grid {
        let mut cells = [[0u16; GRID_POSITIONS]; 10];
        for position in 0..GRID_POSITIONS {
            let codes: [u64; 10] = stream.distinct_below(u64::from(GRID_CODE_RANGE));
            for (digit_row, code) in cells.iter_mut().zip(codes) {
                digit_row[position] = code as u16;
            }
        }
        let magnitude_codes: [u64; MAGNITUDE_CLASSES] =
            stream.distinct_below(u64::from(GRID_CODE_RANGE));
        Grid {
            cells,
            magnitude: magnitude_codes.map(|code| code as u16),
        }
    }
}

fn all_distinct_codes(codes: &[u16]) -> bool {
    codes.iter().all(|code| *code < GRID_CODE_RANGE)
        && codes
            .iter()
            .enumerate()
            .all(|(index, code)| !codes[..index].contains(code))
}

impl Drop for Grid {
    fn drop(&mut self) {
        self.cells.zeroize();
        self.magnitude.zeroize();
    }
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Grid(***)")
    }
}

/// A whole envelope with its secrets in clear: for printing, importing and tests only.
#[derive(Clone)]
pub struct Envelope {
    /// The number printed outside.
    pub euin: Euin,
    /// Rows 1..=n in order.
    pub rows: Vec<Row>,
    /// Grids 1–4.
    pub grids: [Grid; GRIDS_PER_ENVELOPE],
}

impl Envelope {
    /// Derives envelope `euin` from the master key.
    pub fn derive(master: &MasterKey, euin: Euin, rows: RowCount) -> Envelope {
        let key = master.envelope_key(&euin);
        Envelope {
            euin,
            rows: (1..=rows.get())
                .map(|number| Row::derive_from(&key, number))
                .collect(),
            grids: core::array::from_fn(|index| Grid::derive_from(&key, index as u8 + 1)),
        }
    }

    /// Number of rows, if 20 or 50.
    pub fn row_count(&self) -> Option<RowCount> {
        RowCount::from_count(self.rows.len())
    }

    /// Row `number` (from 1).
    pub fn row(&self, number: u8) -> Option<&Row> {
        self.rows.iter().find(|row| row.number == number)
    }

    /// Grid `number` (1–4).
    pub fn grid(&self, number: u8) -> Option<&Grid> {
        self.grids.get(usize::from(number).checked_sub(1)?)
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Envelope({}, {} rows, ***)", self.euin, self.rows.len())
    }
}

/// Where an envelope is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeStatus {
    /// Printed and handed out, not yet bound to an account.
    Unallocated,
    /// Bound to the account with this receive number; instructions accepted.
    Active {
        /// The account's receive number.
        account: AccountNumber,
    },
    /// Locked after too many wrong codes; the operator unlocks it.
    Locked {
        /// The account's receive number.
        account: AccountNumber,
    },
    /// Replaced by a newer envelope, or withdrawn.
    Retired,
}

/// What the database holds about one envelope — never a secret in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeView {
    /// Its number.
    pub euin: Euin,
    /// Its row count.
    pub rows: RowCount,
    /// Rows used so far.
    pub used_rows: RowSet,
    /// Wrong codes since the last accepted instruction.
    pub consecutive_failures: u8,
    /// Its state.
    pub status: EnvelopeStatus,
    /// For imported envelopes, the sealed secrets; `None` for envelopes derived from the master key.
    pub sealed: Option<SealedEnvelope>,
    /// MAC of (EUIN, account) under the master key, written when the envelope is bound: an
    /// envelope whose status names an account without the matching tag is refused, so a database
    /// administrator cannot bind an envelope they hold to someone else's account.
    pub binding: Option<BindingTag>,
}

impl EnvelopeView {
    /// A freshly printed, unallocated envelope.
    pub fn unallocated(euin: Euin, rows: RowCount) -> EnvelopeView {
        EnvelopeView {
            euin,
            rows,
            used_rows: RowSet::EMPTY,
            consecutive_failures: 0,
            status: EnvelopeStatus::Unallocated,
            sealed: None,
            binding: None,
        }
    }

    /// Free rows.
    pub fn free_rows(&self) -> usize {
        self.used_rows.free_count(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes([42; 32])
    }

    #[test]
    fn grids_decode_every_cell() {
        let euin = Euin::issued(263, 13).unwrap();
        let envelope = Envelope::derive(&master(), euin, RowCount::Fifty);
        for grid in &envelope.grids {
            assert!(Grid::new(grid.cells, grid.magnitude).is_ok());
            for position in 1..=GRID_POSITIONS {
                for digit in 0..10 {
                    assert_eq!(
                        grid.decode(position, grid.code(digit, position)),
                        Some(digit)
                    );
                }
            }
        }
    }

    #[test]
    fn recipes_cover_two_account_digits_and_every_digit_of_the_amount() {
        let euin = Euin::issued(263, 14).unwrap();
        let envelope = Envelope::derive(&master(), euin, RowCount::Fifty);
        for row in &envelope.rows {
            let terms = row.recipe().terms();
            let count =
                |predicate: fn(&Term) -> bool| terms.iter().filter(|t| predicate(t)).count();
            assert_eq!(count(|t| matches!(t, Term::Constant(_))), 0);
            assert_eq!(count(|t| matches!(t, Term::AccountDigit { .. })), 2);
            assert_eq!(count(|t| matches!(t, Term::WholeLength { .. })), 1);
            assert_eq!(
                count(|t| matches!(t, Term::AmountDigit { index: 1, .. })),
                1
            );
            assert_eq!(
                count(|t| matches!(t, Term::AmountDigit { index: 2, .. })),
                1
            );
            assert_eq!(count(|t| matches!(t, Term::DigitSum { .. })), 1);
            assert!((1..=4).contains(&row.grid_number()));
        }
    }

    #[test]
    fn row_sets_pick_the_highest_free_row() {
        let mut used = RowSet::EMPTY;
        assert_eq!(used.highest_free(RowCount::Twenty), Some(20));
        used.insert(20);
        used.insert(1);
        assert_eq!(used.highest_free(RowCount::Twenty), Some(19));
        assert_eq!(used.free_count(RowCount::Twenty), 18);
        assert!(used.contains(1) && !used.contains(2) && !used.contains(0) && !used.contains(51));
        assert_eq!(used.iter().collect::<Vec<_>>(), [1, 20]);
    }
}
