//! Where the secrets of one envelope come from when the operator verifies a message: derived on
//! demand from the master key (printed envelopes) or unsealed from the database (imported ones).

use alloc::boxed::Box;
use core::cell::OnceCell;
use core::fmt;

use crate::envelope::{Envelope, EnvelopeView, Grid, Row, RowCount};
use crate::error::SealError;
use crate::keys::{EnvelopeKey, MasterKey};
use crate::limits::{GRIDS_PER_ENVELOPE, ROWS_MAX};
use crate::numbers::Euin;

/// Where the secrets of one envelope come from when a message is verified: derived on demand from
/// the master key (printed envelopes), or an imported envelope unsealed from the database.
/// Derived rows and grids are kept once computed, for the life of this value (one message).
pub enum EnvelopeSecrets {
    /// Printed by offpay: every value derived from the envelope key.
    Derived {
        /// The envelope key.
        key: EnvelopeKey,
        /// Its row count.
        rows: RowCount,
        /// Rows derived so far (index row - 1).
        row_cache: Box<[OnceCell<Row>; ROWS_MAX]>,
        /// Grids derived so far.
        grid_cache: Box<[OnceCell<Grid>; GRIDS_PER_ENVELOPE]>,
    },
    /// Imported from a file and unsealed.
    Explicit(Box<Envelope>),
}

impl EnvelopeSecrets {
    /// Secrets of a printed envelope.
    pub fn derived(master: &MasterKey, euin: Euin, rows: RowCount) -> EnvelopeSecrets {
        EnvelopeSecrets::Derived {
            key: master.envelope_key(&euin),
            rows,
            row_cache: Box::new(core::array::from_fn(|_| OnceCell::new())),
            grid_cache: Box::new(core::array::from_fn(|_| OnceCell::new())),
        }
    }

    /// Secrets for what the database says about an envelope: unseals imported ones.
    pub fn for_view(master: &MasterKey, view: &EnvelopeView) -> Result<EnvelopeSecrets, SealError> {
        match &view.sealed {
            None => Ok(EnvelopeSecrets::derived(master, view.euin, view.rows)),
            Some(sealed) => Ok(EnvelopeSecrets::Explicit(Box::new(
                master.unseal(&view.euin, sealed)?,
            ))),
        }
    }

    fn derive_row(&self, number: u8) -> Row {
        match self {
            EnvelopeSecrets::Derived { key, .. } => Row::derive_from(key, number),
            EnvelopeSecrets::Explicit(_) => unreachable!("only derived secrets derive"),
        }
    }

    fn derive_grid(&self, number: u8) -> Grid {
        match self {
            EnvelopeSecrets::Derived { key, .. } => Grid::derive_from(key, number),
            EnvelopeSecrets::Explicit(_) => unreachable!("only derived secrets derive"),
        }
    }

    /// Row `number`, if the envelope has it.
    pub fn row(&self, number: u8) -> Option<&Row> {
        match self {
            EnvelopeSecrets::Derived {
                rows, row_cache, ..
            } => {
                if !(1..=rows.get()).contains(&number) {
                    return None;
                }
                Some(row_cache[usize::from(number) - 1].get_or_init(|| self.derive_row(number)))
            }
            EnvelopeSecrets::Explicit(envelope) => envelope.row(number),
        }
    }

    /// Grid `number` (1–4).
    pub fn grid(&self, number: u8) -> Option<&Grid> {
        if !(1..=GRIDS_PER_ENVELOPE as u8).contains(&number) {
            return None;
        }
        match self {
            EnvelopeSecrets::Derived { grid_cache, .. } => {
                Some(grid_cache[usize::from(number) - 1].get_or_init(|| self.derive_grid(number)))
            }
            EnvelopeSecrets::Explicit(envelope) => envelope.grid(number),
        }
    }
}

impl fmt::Debug for EnvelopeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvelopeSecrets(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes([42; 32])
    }

    #[test]
    fn derivation_is_deterministic_and_lazy_matches_full() {
        let euin = Euin::issued(263, 12).unwrap();
        let full = Envelope::derive(&master(), euin, RowCount::Twenty);
        let lazy = EnvelopeSecrets::derived(&master(), euin, RowCount::Twenty);
        for number in 1..=20 {
            let a = full.row(number).unwrap();
            let b = lazy.row(number).unwrap();
            assert!(a.tan().matches(b.tan()));
            assert_eq!(a.recipe(), b.recipe());
            assert_eq!(a.amount_offset_hundredths(), b.amount_offset_hundredths());
        }
        assert!(lazy.row(21).is_none());
        assert_eq!(full.grid(3).unwrap(), lazy.grid(3).unwrap());
        assert!(lazy.grid(5).is_none());
    }
}
