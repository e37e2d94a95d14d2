//! The wallet log: hash-chained undo/redo records, framed with a length and a checksum so that a
//! torn last append is recognised on restart.
//!
//! Frame: `length u32 | record | checksum [8]`. Record: `version u8 | seq u64 | prev_hash [32] |
//! kind u8 | body`. The record's hash is SHA-256 over a domain tag and the record bytes; the next
//! record carries it as `prev_hash`, and the frame's checksum is its first 8 bytes.

use alloc::vec::Vec;

use crate::codec::{Reader, Writer, sha256};
use crate::credential::Credential;
use crate::error::{Malformed, StorageError};
use crate::ids::TransferId;
use crate::sync::{ChargeVoucher, Resolution};
use crate::terms::{Agreement, Terms};

/// Format version that starts every record.
pub const RECORD_VERSION: u8 = 1;
pub use crate::codec::RECORD_BYTES_MAX;
/// What a storage frame adds to a record: its length and its checksum.
pub const FRAME_OVERHEAD_BYTES: usize = 4 + 8;
const DOMAIN_RECORD: &[u8] = b"offpay-wallet v1 record";

/// One entry of the wallet log. Records about a transfer name its phase: pending, prepared,
/// committed/posted, voided, complete.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// First record (seq 0): the credential and the money office key the wallet trusts.
    Genesis {
        /// The wallet's credential as issued.
        credential: Credential,
        /// The money office's public key.
        office_public: [u8; 32],
    },
    /// The wallet was opened; `boot` numbers the runs and forms the high half of message
    /// sequence numbers, so they keep rising across crashes.
    Opened {
        /// Run number, one more than the last.
        boot: u32,
        /// Opened from a backup: the wallet may not pay before it syncs.
        restored: bool,
    },
    /// Value loaded from the ledger by the money office.
    Charged {
        /// The office's signed voucher.
        voucher: ChargeVoucher,
    },
    /// Seller: a buyer was chosen and the commit-request is about to go out.
    SellerPending {
        /// The terms.
        terms: Terms,
        /// The buyer's credential (to reseal messages after a restart).
        buyer: Credential,
    },
    /// Seller: the decision is commit (redo: the balance rises by the amount).
    SellerCommitted {
        /// The terms.
        transfer_id: TransferId,
        /// The buyer's signed agreement.
        agreement: Agreement,
        /// The seller's commit signature.
        commit_signature: [u8; 64],
        /// Undo image: available balance before, in minor units.
        balance_before_minor: u64,
        /// Redo image: available balance after.
        balance_after_minor: u64,
    },
    /// Seller: the decision is void.
    SellerVoided {
        /// The transfer.
        transfer_id: TransferId,
    },
    /// Seller: the buyer acknowledged the decision (or the office took it over at sync).
    SellerComplete {
        /// The transfer.
        transfer_id: TransferId,
    },
    /// Buyer: prepared. The amount is held (undo: the balance before; redo: the balance after).
    BuyerPrepared {
        /// The terms.
        terms: Terms,
        /// The seller's credential.
        seller: Credential,
        /// The agreement sent to the seller.
        agreement: Agreement,
        /// Undo image: available balance before, in minor units.
        balance_before_minor: u64,
        /// Redo image: available balance after the hold.
        balance_after_minor: u64,
    },
    /// Buyer: the seller's commit arrived; the held amount is gone for good.
    BuyerPosted {
        /// The transfer.
        transfer_id: TransferId,
        /// The seller's commit signature.
        commit_signature: [u8; 64],
    },
    /// Buyer: the seller's abort arrived; the hold is released.
    BuyerVoided {
        /// The transfer.
        transfer_id: TransferId,
    },
    /// Buyer: the money office resolved a prepared transfer.
    Resolved {
        /// The office's signed resolution.
        resolution: Resolution,
    },
    /// The money office acknowledged the log up to `through_seq`.
    Synced {
        /// Last acknowledged record.
        through_seq: u64,
        /// Its hash.
        through_hash: [u8; 32],
    },
    /// The money office renewed the credential.
    CredentialRenewed {
        /// The new credential.
        credential: Credential,
    },
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Genesis { .. } => 1,
            Record::Opened { .. } => 2,
            Record::Charged { .. } => 3,
            Record::SellerPending { .. } => 4,
            Record::SellerCommitted { .. } => 5,
            Record::SellerVoided { .. } => 6,
            Record::SellerComplete { .. } => 7,
            Record::BuyerPrepared { .. } => 8,
            Record::BuyerPosted { .. } => 9,
            Record::BuyerVoided { .. } => 10,
            Record::Resolved { .. } => 11,
            Record::Synced { .. } => 12,
            Record::CredentialRenewed { .. } => 13,
        }
    }

    fn write_body(&self, w: &mut Writer) {
        match self {
            Record::Genesis {
                credential,
                office_public,
            } => {
                w.raw(&credential.encode()).raw(office_public);
            }
            Record::Opened { boot, restored } => {
                w.u32(*boot).u8(u8::from(*restored));
            }
            Record::Charged { voucher } => voucher.write(w),
            Record::SellerPending { terms, buyer } => {
                terms.write(w);
                w.raw(&buyer.encode());
            }
            Record::SellerCommitted {
                transfer_id,
                agreement,
                commit_signature,
                balance_before_minor,
                balance_after_minor,
            } => {
                w.raw(&transfer_id.0);
                agreement.write(w);
                w.raw(commit_signature)
                    .u64(*balance_before_minor)
                    .u64(*balance_after_minor);
            }
            Record::SellerVoided { transfer_id }
            | Record::SellerComplete { transfer_id }
            | Record::BuyerVoided { transfer_id } => {
                w.raw(&transfer_id.0);
            }
            Record::BuyerPrepared {
                terms,
                seller,
                agreement,
                balance_before_minor,
                balance_after_minor,
            } => {
                terms.write(w);
                w.raw(&seller.encode());
                agreement.write(w);
                w.u64(*balance_before_minor).u64(*balance_after_minor);
            }
            Record::BuyerPosted {
                transfer_id,
                commit_signature,
            } => {
                w.raw(&transfer_id.0).raw(commit_signature);
            }
            Record::Resolved { resolution } => resolution.write(w),
            Record::Synced {
                through_seq,
                through_hash,
            } => {
                w.u64(*through_seq).raw(through_hash);
            }
            Record::CredentialRenewed { credential } => {
                w.raw(&credential.encode());
            }
        }
    }

    fn read_body(kind: u8, r: &mut Reader<'_>) -> Result<Record, Malformed> {
        Ok(match kind {
            1 => Record::Genesis {
                credential: Credential::read(r)?,
                office_public: r.array()?,
            },
            2 => Record::Opened {
                boot: r.u32()?,
                restored: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(Malformed::InvalidField),
                },
            },
            3 => Record::Charged {
                voucher: ChargeVoucher::read(r)?,
            },
            4 => Record::SellerPending {
                terms: Terms::read(r)?,
                buyer: Credential::read(r)?,
            },
            5 => Record::SellerCommitted {
                transfer_id: TransferId(r.array()?),
                agreement: Agreement::read(r)?,
                commit_signature: r.array()?,
                balance_before_minor: r.u64()?,
                balance_after_minor: r.u64()?,
            },
            6 => Record::SellerVoided {
                transfer_id: TransferId(r.array()?),
            },
            7 => Record::SellerComplete {
                transfer_id: TransferId(r.array()?),
            },
            8 => Record::BuyerPrepared {
                terms: Terms::read(r)?,
                seller: Credential::read(r)?,
                agreement: Agreement::read(r)?,
                balance_before_minor: r.u64()?,
                balance_after_minor: r.u64()?,
            },
            9 => Record::BuyerPosted {
                transfer_id: TransferId(r.array()?),
                commit_signature: r.array()?,
            },
            10 => Record::BuyerVoided {
                transfer_id: TransferId(r.array()?),
            },
            11 => Record::Resolved {
                resolution: Resolution::read(r)?,
            },
            12 => Record::Synced {
                through_seq: r.u64()?,
                through_hash: r.array()?,
            },
            13 => Record::CredentialRenewed {
                credential: Credential::read(r)?,
            },
            other => return Err(Malformed::UnknownKind(other)),
        })
    }
}

/// A record with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRecord {
    /// Position in the log, from 0 (the genesis record).
    pub seq: u64,
    /// Hash of the previous record (zeros for the genesis record).
    pub prev_hash: [u8; 32],
    /// The record.
    pub record: Record,
    /// This record's hash.
    pub hash: [u8; 32],
    /// The encoded record (what the hash covers).
    pub bytes: Vec<u8>,
}

/// Encodes a record at a place in the chain.
pub fn encode_record(seq: u64, prev_hash: &[u8; 32], record: &Record) -> LoggedRecord {
    let mut w = Writer::new();
    w.u8(RECORD_VERSION)
        .u64(seq)
        .raw(prev_hash)
        .u8(record.kind());
    record.write_body(&mut w);
    let bytes = w.finish();
    assert!(
        bytes.len() <= RECORD_BYTES_MAX,
        "record above RECORD_BYTES_MAX"
    );
    LoggedRecord {
        seq,
        prev_hash: *prev_hash,
        record: record.clone(),
        hash: record_hash(&bytes),
        bytes,
    }
}

fn record_hash(bytes: &[u8]) -> [u8; 32] {
    sha256(&[DOMAIN_RECORD, bytes])
}

/// Parses one encoded record (as uploaded to the money office) and recomputes its hash.
pub fn decode_record(bytes: &[u8]) -> Result<LoggedRecord, Malformed> {
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(Malformed::TooLong);
    }
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(Malformed::UnknownVersion(version));
    }
    let seq = r.u64()?;
    let prev_hash = r.array()?;
    let kind = r.u8()?;
    let record = Record::read_body(kind, &mut r)?;
    r.finish()?;
    Ok(LoggedRecord {
        seq,
        prev_hash,
        record,
        hash: record_hash(bytes),
        bytes: bytes.to_vec(),
    })
}

/// Wraps an encoded record in its storage frame.
pub fn frame(record: &LoggedRecord) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(record.bytes.len() as u32)
        .raw(&record.bytes)
        .raw(&record.hash[..8]);
    w.finish()
}

/// The log as read back from storage.
#[derive(Clone, Debug)]
pub struct ParsedLog {
    /// Every complete, checked record, in order.
    pub records: Vec<LoggedRecord>,
    /// Bytes that hold those records.
    pub valid_bytes: u64,
    /// Bytes after them that were a torn append (to be cut off). Zero after a clean shutdown.
    pub torn_bytes: u64,
}

/// Parses stored frames, checks checksums and the hash chain, and finds a torn tail.
///
/// Appends are sequential and each is forced before the next begins, so only the last append can
/// be torn. A damaged frame is therefore taken as a torn tail when it is the last thing in the
/// log (at most one frame's worth of bytes follows its start); anything else — a damaged frame
/// followed by more data, or a frame whose checksum holds but which breaks the chain — is
/// corruption and refused.
pub fn parse_log(bytes: &[u8]) -> Result<ParsedLog, StorageError> {
    let mut records: Vec<LoggedRecord> = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let parsed = parse_frame(rest);
        match parsed {
            Some((record, used)) => {
                let expected_seq = records.last().map_or(0, |last| last.seq + 1);
                let expected_prev = records.last().map_or([0u8; 32], |last| last.hash);
                if record.seq != expected_seq || record.prev_hash != expected_prev {
                    return Err(StorageError::Corrupt {
                        offset: offset as u64,
                    });
                }
                if (record.seq == 0) != matches!(record.record, Record::Genesis { .. }) {
                    return Err(StorageError::Corrupt {
                        offset: offset as u64,
                    });
                }
                records.push(record);
                offset += used;
            }
            None => {
                if rest.len() <= RECORD_BYTES_MAX + FRAME_OVERHEAD_BYTES {
                    return Ok(ParsedLog {
                        records,
                        valid_bytes: offset as u64,
                        torn_bytes: rest.len() as u64,
                    });
                }
                return Err(StorageError::Corrupt {
                    offset: offset as u64,
                });
            }
        }
    }
    Ok(ParsedLog {
        records,
        valid_bytes: offset as u64,
        torn_bytes: 0,
    })
}

fn parse_frame(bytes: &[u8]) -> Option<(LoggedRecord, usize)> {
    let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if length > RECORD_BYTES_MAX {
        return None;
    }
    let record_bytes = bytes.get(4..4 + length)?;
    let checksum = bytes.get(4 + length..4 + length + 8)?;
    let record = decode_record(record_bytes).ok()?;
    if record.hash[..8] != *checksum {
        return None;
    }
    Some((record, 4 + length + 8))
}
