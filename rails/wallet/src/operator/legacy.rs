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
    let gate = |version: u64| record_write(BOOK_KEY.to_string(), Some(legacy.manifest.clone()), Some(version));
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

fn record_write(key: std::string::String, value: Option<Vec<u8>>, expected: Option<u64>) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key,
        value,
        expected_version: expected,
    })
}
