//! Typed, versioned records. Every record a rail stores is a Rust type with a namespace and a
//! format version; a stored value that does not decode is an error naming its key, never a
//! default.

use offpay_ledger::{LedgerStore, Operation, RecordWrite, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A stored record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The stored bytes do not decode as the record type: edited by hand or damaged.
    #[error("stored record {namespace}/{key} is corrupt: {message}")]
    Corrupt {
        /// Namespace.
        namespace: &'static str,
        /// Key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The record was written by a newer release (its format version is unknown here).
    #[error(
        "stored record {namespace}/{key} has format version {found}; this release reads up to {known}"
    )]
    TooNew {
        /// Namespace.
        namespace: &'static str,
        /// Key.
        key: String,
        /// The version stored.
        found: u32,
        /// The newest version this release knows.
        known: u32,
    },
    /// The record could not be encoded.
    #[error("record {namespace}/{key} could not be encoded: {message}")]
    Encode {
        /// Namespace.
        namespace: &'static str,
        /// Key.
        key: String,
        /// What failed.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A record type: where it lives, its format version, and how it is written and read.
pub trait StoredRecord: Sized {
    /// The ledger record namespace (one per rail, or per book of a rail).
    const NAMESPACE: &'static str;
    /// The format version this release writes.
    const FORMAT_VERSION: u32;

    /// The stored bytes.
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError>;

    /// Reads stored bytes; an error names `key`.
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError>;
}

/// Encodes `value` as JSON (the encoding most records use).
pub fn encode_json<R: StoredRecord + Serialize>(
    value: &R,
    key: &str,
) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(value).map_err(|error| RecordError::Encode {
        namespace: R::NAMESPACE,
        key: key.to_owned(),
        message: error.to_string(),
    })
}

/// Decodes JSON as `R`, naming `key` when it does not decode.
pub fn decode_json<R: StoredRecord + DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<R, RecordError> {
    serde_json::from_slice(bytes).map_err(|error| corrupt::<R>(key, error))
}

/// The error for a record of type `R` under `key` that does not decode.
pub fn corrupt<R: StoredRecord>(key: &str, message: impl std::fmt::Display) -> RecordError {
    RecordError::Corrupt {
        namespace: R::NAMESPACE,
        key: key.to_owned(),
        message: message.to_string(),
    }
}

/// Checks a decoded record's format version: versions up to [`StoredRecord::FORMAT_VERSION`]
/// are read, newer ones are refused.
pub fn check_version<R: StoredRecord>(key: &str, found: u32) -> Result<(), RecordError> {
    if found > R::FORMAT_VERSION {
        return Err(RecordError::TooNew {
            namespace: R::NAMESPACE,
            key: key.to_owned(),
            found,
            known: R::FORMAT_VERSION,
        });
    }
    Ok(())
}

/// A record as loaded: its key, the version it was read at (0: absent) and its value. Writing it
/// back is conditional on that version, so a concurrent change is caught at commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<R> {
    /// Key.
    pub key: String,
    /// The version read (0 when the record did not exist).
    pub version: u64,
    /// The value, if the record exists.
    pub value: Option<R>,
}

impl<R: StoredRecord> Loaded<R> {
    /// Reads the record under `key`.
    pub fn read(store: &mut dyn LedgerStore, key: &str) -> Result<Loaded<R>, RecordError> {
        Ok(match store.record(R::NAMESPACE, key)? {
            Some(record) => Loaded {
                key: key.to_owned(),
                version: record.version,
                value: Some(R::decode(key, &record.value)?),
            },
            None => Loaded {
                key: key.to_owned(),
                version: 0,
                value: None,
            },
        })
    }

    /// The write that replaces this record with `value`, on condition that it is still at the
    /// version read.
    pub fn write(&self, value: &R) -> Result<Operation, RecordError> {
        Ok(Operation::PutRecord(RecordWrite {
            namespace: R::NAMESPACE.to_owned(),
            key: self.key.clone(),
            value: Some(value.encode(&self.key)?),
            expected_version: Some(self.version),
        }))
    }

    /// The write that deletes this record, on the same condition.
    pub fn delete(&self) -> Operation {
        Operation::PutRecord(RecordWrite {
            namespace: R::NAMESPACE.to_owned(),
            key: self.key.clone(),
            value: None,
            expected_version: Some(self.version),
        })
    }
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Batch, MemoryStore, Timestamp};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        version: u32,
        text: String,
    }

    impl StoredRecord for Note {
        const NAMESPACE: &'static str = "test";
        const FORMAT_VERSION: u32 = 1;
        fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
            encode_json(self, key)
        }
        fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
            let note: Note = decode_json(key, bytes)?;
            check_version::<Note>(key, note.version)?;
            Ok(note)
        }
    }

    fn commit(store: &mut MemoryStore, operation: Operation) -> bool {
        let results = store
            .commit(
                &[Batch {
                    operations: vec![operation],
                }],
                Timestamp(1),
            )
            .unwrap();
        results.into_iter().all(|result| result.is_ok())
    }

    #[test]
    fn a_loaded_record_is_written_back_only_at_the_version_read() {
        let mut store = MemoryStore::new();
        let absent = Loaded::<Note>::read(&mut store, "a").unwrap();
        assert_eq!(absent.version, 0);
        let note = Note {
            version: 1,
            text: "hello".into(),
        };
        assert!(commit(&mut store, absent.write(&note).unwrap()));
        let loaded = Loaded::<Note>::read(&mut store, "a").unwrap();
        assert_eq!(loaded.value.as_ref(), Some(&note));
        // A second writer that also read it absent loses.
        assert!(!commit(&mut store, absent.write(&note).unwrap()));
        assert!(commit(&mut store, loaded.delete()));
    }

    #[test]
    fn a_record_that_does_not_decode_names_its_key() {
        let mut store = MemoryStore::new();
        let raw = Operation::PutRecord(RecordWrite {
            namespace: "test".into(),
            key: "broken".into(),
            value: Some(b"{not json".to_vec()),
            expected_version: None,
        });
        assert!(commit(&mut store, raw));
        let error = Loaded::<Note>::read(&mut store, "broken").unwrap_err();
        assert!(error.to_string().contains("test/broken"), "{error}");

        let newer = Operation::PutRecord(RecordWrite {
            namespace: "test".into(),
            key: "newer".into(),
            value: Some(br#"{"version":2,"text":"x"}"#.to_vec()),
            expected_version: None,
        });
        assert!(commit(&mut store, newer));
        assert!(matches!(
            Loaded::<Note>::read(&mut store, "newer"),
            Err(RecordError::TooNew {
                found: 2,
                known: 1,
                ..
            })
        ));
    }
}
