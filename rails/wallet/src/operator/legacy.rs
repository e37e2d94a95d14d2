//! The migration from the storage of earlier releases: the whole book encoded in one piece
//! ([`crate::MoneyOffice::encode_book`]), stored as a manifest record `office-book` and chunks
//! `office-book:00000`, … of at most [`BOOK_CHUNK_BYTES`] each.
//!
//! On first use the book is split into one record per wallet, transfer, payment number and
//! voucher. Each step of the migration is one batch conditional on the manifest's version, and
//! the last one writes the header and deletes the manifest and its chunks: until it commits,
//! every operation sees no header, finds the manifest, and waits for the migration, so no one
//! writes a per-record book that a repeated migration step could overwrite. A migration cut
//! short is started again from the old book, which it has not changed.

use std::string::ToString;
use std::vec::Vec;

use offpay_ledger::{BATCH_OPERATIONS_MAX, LedgerStore, Operation, RecordWrite};
use offpay_operator::Effects;

use super::records::{NAMESPACE, changed_records};
use crate::error::{BookError, Error};
use crate::office::book::Book;
use crate::office::legacy::decode_whole;

/// Key of the manifest of an earlier release's whole book.
pub const BOOK_KEY: &str = "office-book";
/// Format version of that manifest.
pub const BOOK_MANIFEST_VERSION: u8 = 1;
/// Bytes of the whole book per chunk record.
pub const BOOK_CHUNK_BYTES: usize = offpay_ledger::RECORD_VALUE_LENGTH_MAX;
/// Most chunks an earlier release wrote.
pub const BOOK_CHUNKS_MAX: usize = 4096;

/// The last step holds the header, the blocked list, the chunk deletions and the manifest's.
const LAST_STEP_OPERATIONS_MAX: usize = BOOK_CHUNKS_MAX + 3;
const _: () = assert!(LAST_STEP_OPERATIONS_MAX < BATCH_OPERATIONS_MAX);

/// The record key of chunk `index`.
pub fn chunk_key(index: usize) -> std::string::String {
    format!("{BOOK_KEY}:{index:05}")
}

/// (chunks, bytes) of a well-formed manifest.
fn decode_manifest(bytes: &[u8]) -> Option<(usize, usize)> {
    if bytes.len() != 13 || bytes[0] != BOOK_MANIFEST_VERSION {
        return None;
    }
    let chunks = u32::from_be_bytes(bytes[1..5].try_into().ok()?) as usize;
    let length = u64::from_be_bytes(bytes[5..13].try_into().ok()?) as usize;
    (chunks <= BOOK_CHUNKS_MAX && length <= chunks * BOOK_CHUNK_BYTES).then_some((chunks, length))
}

/// An earlier release's whole book as read from the ledger.
#[derive(Debug)]
pub struct LegacyBook {
    manifest: Vec<u8>,
    manifest_version: u64,
    chunks: usize,
    bytes: Vec<u8>,
}

impl LegacyBook {
    /// The encoded whole book.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Whether an earlier release's book is stored.
pub(crate) fn manifest_exists(store: &mut dyn LedgerStore) -> Result<bool, Error> {
    Ok(store.record(NAMESPACE, BOOK_KEY)?.is_some())
}

fn corrupt(message: impl Into<std::string::String>) -> Error {
    BookError::LegacyCorrupt(message.into()).into()
}

/// Reads an earlier release's whole book, if one is stored.
pub fn load_legacy(store: &mut dyn LedgerStore) -> Result<Option<LegacyBook>, Error> {
    let Some(manifest) = store.record(NAMESPACE, BOOK_KEY)? else {
        return Ok(None);
    };
    let (chunks, length) = decode_manifest(&manifest.value)
        .ok_or_else(|| corrupt(format!("the manifest {NAMESPACE}/{BOOK_KEY} is malformed")))?;
    let mut bytes = Vec::with_capacity(length);
    for index in 0..chunks {
        let key = chunk_key(index);
        let chunk = store
            .record(NAMESPACE, &key)?
            .ok_or_else(|| corrupt(format!("the chunk {NAMESPACE}/{key} is missing")))?;
        bytes.extend_from_slice(&chunk.value);
    }
    if bytes.len() != length {
        return Err(corrupt(format!(
            "the book has {} bytes, its manifest says {length}",
            bytes.len()
        )));
    }
    Ok(Some(LegacyBook {
        manifest: manifest.value,
        manifest_version: manifest.version,
        chunks,
        bytes,
    }))
}

/// The steps that move `legacy` into per-record storage, each one batch, to commit in order.
pub(crate) fn migration_steps(
    legacy: &LegacyBook,
    operations_per_step: usize,
) -> Result<Vec<Effects>, Error> {
    assert!(operations_per_step > 1 && operations_per_step <= BATCH_OPERATIONS_MAX);
    let book = decode_whole(&legacy.bytes)
        .map_err(|error| corrupt(format!("the book does not decode: {error}")))?;
    let mut data = changed_records(&Book::partial(), &book, None)?;
    // The header and the blocked list go last: an operation that finds the header takes the
    // migration for done.
    let mut last: Vec<Operation> = Vec::with_capacity(LAST_STEP_OPERATIONS_MAX);
    data.retain(|operation| match operation {
        Operation::PutRecord(write)
            if write.key == super::records::HEADER_KEY
                || write.key == super::records::BLOCKED_KEY =>
        {
            let mut write = write.clone();
            // Neither exists while the old book does.
            write.expected_version = Some(0);
            last.push(Operation::PutRecord(write));
            false
        }
        _ => true,
    });
    debug_assert_eq!(last.len(), 2);
    for index in 0..legacy.chunks {
        last.push(record_write(chunk_key(index), None, None));
    }
    let gate = |version: u64| {
        record_write(
            BOOK_KEY.to_string(),
            Some(legacy.manifest.clone()),
            Some(version),
        )
    };
    let mut steps = Vec::new();
    let mut version = legacy.manifest_version;
    if data.len() + last.len() < operations_per_step {
        let mut effects = Effects::new();
        effects.write_all(data);
        effects.write_all(last);
        effects.write(record_write(BOOK_KEY.to_string(), None, Some(version)));
        steps.push(effects);
        return Ok(steps);
    }
    let mut data = data.into_iter().peekable();
    while data.peek().is_some() {
        let mut effects = Effects::new();
        // Rewriting the manifest unchanged moves its version on: a step decided on a manifest
        // another migration has moved since is refused whole.
        effects.write(gate(version));
        version += 1;
        effects.write_all(data.by_ref().take(operations_per_step - 1));
        steps.push(effects);
    }
    let mut effects = Effects::new();
    effects.write_all(last);
    effects.write(record_write(BOOK_KEY.to_string(), None, Some(version)));
    steps.push(effects);
    Ok(steps)
}

fn record_write(
    key: std::string::String,
    value: Option<Vec<u8>>,
    expected: Option<u64>,
) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key,
        value,
        expected_version: expected,
    })
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Batch, MemoryStore, Timestamp};

    use super::*;
    use crate::credential::Limits;
    use crate::keys::{OfficeKeys, SeededEntropy, WalletKeys};
    use crate::office::MoneyOffice;
    use crate::operator::local;
    use offpay_money::{Amount, Currency};

    fn office_with_history(wallets: usize) -> (MoneyOffice, OfficeKeys) {
        let mut entropy = SeededEntropy::from_seed(9);
        let keys = OfficeKeys::generate(&mut entropy);
        let mut office = MoneyOffice::new(keys.clone(), 60_000);
        let amount = |minor| Amount::from_minor(minor, Currency::KES).unwrap();
        let limits = Limits {
            balance_max: amount(1_000_000),
            payment_max: amount(1_000),
            offline_spend_max: amount(5_000),
        };
        for index in 0..wallets {
            let device = WalletKeys::generate(&mut entropy);
            let credential = office
                .issue_wallet(
                    device.signing_public(),
                    device.encryption_public(),
                    limits,
                    1_000,
                    &mut entropy,
                )
                .unwrap();
            for _ in 0..=index % 3 {
                office.charge(credential.wallet_id, amount(100)).unwrap();
            }
            if index % 4 == 0 {
                office
                    .block(credential.wallet_id, 2_000 + index as u64)
                    .unwrap();
            }
        }
        (office, keys)
    }

    /// The previous release's layout: chunks, then the manifest.
    fn store_with_legacy(book: &[u8]) -> MemoryStore {
        let mut store = MemoryStore::new();
        let chunks: Vec<&[u8]> = book.chunks(64).collect();
        let mut operations: Vec<Operation> = chunks
            .iter()
            .enumerate()
            .map(|(index, chunk)| record_write(chunk_key(index), Some(chunk.to_vec()), None))
            .collect();
        let mut manifest = vec![BOOK_MANIFEST_VERSION];
        manifest.extend_from_slice(&(chunks.len() as u32).to_be_bytes());
        manifest.extend_from_slice(&(book.len() as u64).to_be_bytes());
        operations.push(record_write(BOOK_KEY.to_string(), Some(manifest), Some(0)));
        let results = store.commit(&[Batch { operations }], Timestamp(1)).unwrap();
        assert!(results.iter().all(Result::is_ok));
        store
    }

    #[test]
    fn a_book_too_big_for_one_batch_migrates_in_steps_gated_by_the_manifest() {
        let (office, keys) = office_with_history(12);
        let mut store = store_with_legacy(&office.encode_book());
        let legacy = load_legacy(&mut store).unwrap().unwrap();
        let steps = migration_steps(&legacy, 5).unwrap();
        assert!(steps.len() > 5, "{} steps", steps.len());
        // A second migrator that read the same manifest is refused at its first step once the
        // first one has moved on.
        let rival = load_legacy(&mut store).unwrap().unwrap();
        let mut rival_steps = migration_steps(&rival, 5).unwrap().into_iter();
        let mut steps = steps.into_iter();
        assert!(local::commit(&mut store, steps.next().unwrap(), Timestamp(2)).unwrap());
        assert!(!local::commit(&mut store, rival_steps.next().unwrap(), Timestamp(2)).unwrap());
        // Cut short after two steps: the old book is intact, and no header says "migrated".
        assert!(local::commit(&mut store, steps.next().unwrap(), Timestamp(2)).unwrap());
        assert!(manifest_exists(&mut store).unwrap());
        assert!(
            store
                .record(NAMESPACE, super::super::HEADER_KEY)
                .unwrap()
                .is_none()
        );
        // Starting over completes it.
        assert!(local::migrate(&mut store, Timestamp(3)).unwrap());
        assert!(!manifest_exists(&mut store).unwrap());
        assert!(store.record(NAMESPACE, &chunk_key(0)).unwrap().is_none());
        let migrated = local::whole_office(&mut store, keys).unwrap();
        assert!(migrated == office);
        assert_eq!(migrated.encode_book(), office.encode_book());
    }

    #[test]
    fn a_small_book_migrates_in_one_batch() {
        let (office, keys) = office_with_history(3);
        let mut store = store_with_legacy(&office.encode_book());
        let legacy = load_legacy(&mut store).unwrap().unwrap();
        let steps = super::super::migration(&legacy).unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps.into_iter().next().unwrap().into_batches().len(), 1);
        assert!(local::migrate(&mut store, Timestamp(2)).unwrap());
        assert!(local::whole_office(&mut store, keys).unwrap() == office);
    }

    #[test]
    fn manifests_refuse_nonsense() {
        let mut bytes = vec![BOOK_MANIFEST_VERSION];
        bytes.extend_from_slice(&3u32.to_be_bytes());
        bytes.extend_from_slice(&((2 * BOOK_CHUNK_BYTES + 5) as u64).to_be_bytes());
        assert_eq!(decode_manifest(&bytes), Some((3, 2 * BOOK_CHUNK_BYTES + 5)));
        assert_eq!(decode_manifest(&bytes[..12]), None);
        let mut too_long = bytes.clone();
        too_long[1..5].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(decode_manifest(&too_long), None);
        let mut other_version = bytes.clone();
        other_version[0] = 9;
        assert_eq!(decode_manifest(&other_version), None);
    }
}
