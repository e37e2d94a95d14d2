//! The operator's half of purse traffic over an SMS gateway: the parts of a packed upload kept in
//! ledger records until the message is complete, the sync of a completed upload (the same
//! decision as an HTTP sync), and statement requests authenticated by the purse's key.
//!
//! **Records** (namespace [`crate::book::NAMESPACE`]):
//!
//! | key | record type | value |
//! |---|---|---|
//! | `smsin/<sender E.164>/<message id>` | [`SmsAssembly`] | the parts received of one message, or the marker of one synced |
//! | `statement/<purse id>` | [`StatementCounter`] | the last statement counter used, and wrong codes |
//!
//! A message is keyed by the sender the gateway reports and the purse's own message id, so
//! parts of two senders never mix. The sender is not trusted for anything else: the assembled
//! upload is authenticated by its MAC, and must name the purse whose phone sent it.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use offpay_ledger::{Operation, RecordWrite};
use offpay_operator::record::{
    RecordError, StoredRecord, check_version, corrupt, decode_json, encode_json,
};
use offpay_operator::{Decision, Effects};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::book::{
    BookError, NAMESPACE, PurseOperator, RECORD_FORMAT_VERSION, RecordSet, SyncReply,
};
use crate::error::PurseError;
use crate::params::{
    SMS_ASSEMBLIES_PER_SENDER_MAX, SMS_ASSEMBLY_SECONDS_MAX, SMS_PARTS_MAX, STATEMENT_FAILURES_MAX,
};
use crate::sync::{SmsPart, StatementRequest, decode_sms_body, peek_upload, statement_code};
use crate::types::{Phone, PurseId};

/// Key prefix of SMS assemblies.
pub const SMS_ASSEMBLY_PREFIX: &str = "smsin/";
/// Key prefix of statement counters.
pub const STATEMENT_PREFIX: &str = "statement/";

const MILLISECONDS_PER_SECOND: u64 = 1000;
const ASSEMBLY_MS_MAX: u64 = SMS_ASSEMBLY_SECONDS_MAX * MILLISECONDS_PER_SECOND;

/// Key prefix of one sender's assemblies.
pub fn sender_prefix(sender: Phone) -> String {
    format!("{SMS_ASSEMBLY_PREFIX}{sender}/")
}

/// Key of the assembly of `sender`'s message `message_id`.
pub fn assembly_key(sender: Phone, message_id: u16) -> String {
    format!("{}{message_id:03}", sender_prefix(sender))
}

/// Key of a purse's statement counter.
pub fn statement_key(purse_id: PurseId) -> String {
    format!("{STATEMENT_PREFIX}{}", purse_id.0)
}

/// The parts received of one packed message, or (once synced) only the marker that it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsAssembly {
    /// Format version.
    pub version: u32,
    /// Parts the message has.
    pub total: usize,
    /// The chunk of each part received, by position; emptied once the message is synced.
    pub parts: Vec<Option<String>>,
    /// When the first part arrived (Unix ms).
    pub started_at_ms: u64,
    /// When the message was synced (Unix ms); 0 while parts are missing.
    pub completed_at_ms: u64,
}

impl SmsAssembly {
    fn is_completed(&self) -> bool {
        self.completed_at_ms != 0
    }

    fn is_full(&self) -> bool {
        self.parts.iter().all(Option::is_some)
    }

    fn expired(&self, now_ms: u64) -> bool {
        let since = if self.is_completed() {
            self.completed_at_ms
        } else {
            self.started_at_ms
        };
        now_ms.saturating_sub(since) >= ASSEMBLY_MS_MAX
    }

    fn received(&self) -> usize {
        self.parts.iter().filter(|part| part.is_some()).count()
    }

    fn body(&self) -> Result<Vec<u8>, PurseError> {
        let mut encoded = String::new();
        for part in &self.parts {
            encoded.push_str(
                part.as_deref()
                    .ok_or(PurseError::Malformed("missing SMS part"))?,
            );
        }
        decode_sms_body(&encoded)
    }

    fn completed(&self, now_ms: u64) -> SmsAssembly {
        SmsAssembly {
            version: RECORD_FORMAT_VERSION,
            total: self.total,
            parts: Vec::new(),
            started_at_ms: self.started_at_ms,
            completed_at_ms: now_ms.max(1),
        }
    }
}

impl StoredRecord for SmsAssembly {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = RECORD_FORMAT_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: SmsAssembly = decode_json(key, bytes)?;
        check_version::<Self>(key, record.version)?;
        let shape = record.total >= 1
            && record.total <= SMS_PARTS_MAX
            && (record.parts.len() == record.total
                || (record.completed_at_ms != 0 && record.parts.is_empty()));
        if !shape {
            return Err(corrupt::<Self>(key, "parts do not match the total"));
        }
        Ok(record)
    }
}

/// A purse's statement requests: the last counter answered and the wrong codes seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementCounter {
    /// Format version.
    pub version: u32,
    /// The last counter a statement was sent for (a request must be above it).
    pub last_counter: u32,
    /// Wrong codes since `failures_since_ms`.
    pub failures: u8,
    /// When the first of those wrong codes came (Unix ms).
    pub failures_since_ms: u64,
}

impl StoredRecord for StatementCounter {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = RECORD_FORMAT_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: StatementCounter = decode_json(key, bytes)?;
        check_version::<Self>(key, record.version)?;
        Ok(record)
    }
}

/// What became of one inbound part.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartOutcome {
    /// Kept; the message waits for more parts.
    Stored {
        /// Parts held now.
        received: usize,
        /// Parts of the message.
        total: usize,
    },
    /// The same part again (a gateway's retry): nothing changed.
    Duplicate,
    /// A part that contradicts the parts held (another total, or another text at a position
    /// already filled): ignored, the first one stays.
    Conflicting,
    /// The message was synced already: a replayed part, ignored.
    AlreadySynced,
    /// Every part is here: the upload to sync.
    Complete(Vec<u8>),
    /// Every part is here but they do not decode: the parts were dropped (the purse sends the
    /// message again under a new id).
    Unreadable,
}

/// One part's decision: the record writes and what became of it.
#[derive(Debug)]
pub struct PartStep {
    /// Conditional record writes (the part kept, expired assemblies removed).
    pub writes: Vec<Operation>,
    /// The outcome.
    pub outcome: PartOutcome,
}

/// One stored assembly as loaded: key, version, value.
pub type LoadedAssembly = (String, u64, SmsAssembly);

/// Reads a sender's assemblies from the records a prefix scan returned.
pub fn decode_assemblies(
    records: &[offpay_ledger::Record],
) -> Result<Vec<LoadedAssembly>, RecordError> {
    records
        .iter()
        .map(|record| {
            Ok((
                record.key.clone(),
                record.version,
                SmsAssembly::decode(&record.key, &record.value)?,
            ))
        })
        .collect()
}

fn put<R: StoredRecord>(key: &str, version: u64, value: &R) -> Result<Operation, RecordError> {
    Ok(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: key.to_owned(),
        value: Some(value.encode(key)?),
        expected_version: Some(version),
    }))
}

fn delete(key: &str, version: u64) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: key.to_owned(),
        value: None,
        expected_version: Some(version),
    })
}

/// Assemblies read per page by the sweep of expired ones ([`decide_sweep`]).
pub const SWEEP_PAGE_RECORDS: usize = 256;

/// One page of stored assemblies, as read for the sweep.
#[derive(Clone, Debug, Default)]
pub struct SweepPage {
    /// (key, version, stored bytes).
    pub records: Vec<(String, u64, Vec<u8>)>,
    /// The last key read, to read the next page after.
    pub last_key: Option<String>,
    /// Whether the page was full (there may be more).
    pub full: bool,
}

/// Reads the page of assemblies (every sender's) after `after`.
pub fn load_sweep_page(
    store: &mut dyn offpay_ledger::LedgerStore,
    after: Option<&str>,
) -> Result<SweepPage, offpay_ledger::StoreError> {
    let records = store.records(NAMESPACE, SMS_ASSEMBLY_PREFIX, after, SWEEP_PAGE_RECORDS)?;
    Ok(SweepPage {
        full: records.len() == SWEEP_PAGE_RECORDS,
        last_key: records.last().map(|record| record.key.clone()),
        records: records
            .into_iter()
            .map(|record| (record.key, record.version, record.value))
            .collect(),
    })
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Expired assemblies removed (half-received messages abandoned, and markers of synced ones
    /// past [`SMS_ASSEMBLY_SECONDS_MAX`]).
    pub removed: u64,
    /// Assemblies still within their time, kept.
    pub kept: u64,
    /// Records under the prefix that do not decode: left for a person (never removed blind).
    pub unreadable: u64,
}

impl Swept {
    /// Adds another page's tally.
    pub fn add(&mut self, other: &Swept) {
        self.removed += other.removed;
        self.kept += other.kept;
        self.unreadable += other.unreadable;
    }
}

/// Removes the page's expired assemblies, each on condition that it is still at the version read
/// (a part arriving meanwhile reloads the decision). Removing one is what [`decide_part`] does to
/// an expired assembly when its sender sends again: an expired half-message can no longer be
/// completed, and an expired marker of a synced one no longer answers a retry (the purse's own
/// sequence refuses a replayed upload). No money moves.
pub fn decide_sweep(page: &SweepPage, now_ms: u64) -> Decision<Swept> {
    let mut effects = Effects::new();
    let mut swept = Swept::default();
    for (key, version, stored) in &page.records {
        match SmsAssembly::decode(key, stored) {
            Ok(assembly) if assembly.expired(now_ms) => {
                effects.write(delete(key, *version));
                swept.removed += 1;
            }
            Ok(_) => swept.kept += 1,
            Err(_) => swept.unreadable += 1,
        }
    }
    Decision::commit(effects, swept)
}

/// Decides one inbound part of `sender`'s message, given all of the sender's assemblies
/// (`existing`, as loaded). Expired assemblies are removed; a sender with
/// [`SMS_ASSEMBLIES_PER_SENDER_MAX`] messages half-received loses the oldest to a new one.
pub fn decide_part(
    sender: Phone,
    part: &SmsPart,
    existing: &[LoadedAssembly],
    now_ms: u64,
) -> Result<PartStep, RecordError> {
    let key = assembly_key(sender, part.message_id);
    let mut writes = Vec::new();
    let mut live: Vec<&LoadedAssembly> = Vec::new();
    // The version a new assembly under `key` is written at (an expired one it replaces).
    let mut base_version = 0;
    for loaded in existing {
        if !loaded.2.expired(now_ms) {
            live.push(loaded);
        } else if loaded.0 == key {
            base_version = loaded.1;
        } else {
            writes.push(delete(&loaded.0, loaded.1));
        }
    }
    let Some((_, version, held)) = live.iter().find(|loaded| loaded.0 == key).copied() else {
        let mut collecting: Vec<&&LoadedAssembly> = live
            .iter()
            .filter(|loaded| !loaded.2.is_completed())
            .collect();
        collecting.sort_by_key(|loaded| loaded.2.started_at_ms);
        while collecting.len() >= SMS_ASSEMBLIES_PER_SENDER_MAX {
            let oldest = collecting.remove(0);
            writes.push(delete(&oldest.0, oldest.1));
        }
        let mut parts = vec![None; part.total];
        parts[part.index - 1] = Some(part.chunk.clone());
        let assembly = SmsAssembly {
            version: RECORD_FORMAT_VERSION,
            total: part.total,
            parts,
            started_at_ms: now_ms,
            completed_at_ms: 0,
        };
        return finish(&key, base_version, assembly, writes);
    };
    if held.is_completed() {
        return Ok(PartStep {
            writes,
            outcome: PartOutcome::AlreadySynced,
        });
    }
    if held.total != part.total {
        return Ok(PartStep {
            writes,
            outcome: PartOutcome::Conflicting,
        });
    }
    match &held.parts[part.index - 1] {
        Some(chunk) if *chunk == part.chunk => {
            // A retry; if every part is here (the sync after the last part did not finish),
            // try the sync again.
            if held.is_full() {
                return finish(&key, *version, held.clone(), writes);
            }
            Ok(PartStep {
                writes,
                outcome: PartOutcome::Duplicate,
            })
        }
        Some(_) => Ok(PartStep {
            writes,
            outcome: PartOutcome::Conflicting,
        }),
        None => {
            let mut assembly = held.clone();
            assembly.parts[part.index - 1] = Some(part.chunk.clone());
            finish(&key, *version, assembly, writes)
        }
    }
}

fn finish(
    key: &str,
    version: u64,
    assembly: SmsAssembly,
    mut writes: Vec<Operation>,
) -> Result<PartStep, RecordError> {
    if !assembly.is_full() {
        writes.push(put(key, version, &assembly)?);
        return Ok(PartStep {
            writes,
            outcome: PartOutcome::Stored {
                received: assembly.received(),
                total: assembly.total,
            },
        });
    }
    match assembly.body() {
        Ok(upload) => {
            // Kept whole until the sync marks it synced: a restart before the sync loses nothing.
            writes.push(put(key, version, &assembly)?);
            Ok(PartStep {
                writes,
                outcome: PartOutcome::Complete(upload),
            })
        }
        Err(_) => {
            if version != 0 {
                writes.push(delete(key, version));
            }
            Ok(PartStep {
                writes,
                outcome: PartOutcome::Unreadable,
            })
        }
    }
}

/// A completed SMS message's sync: `None` when another delivery of the last part synced it
/// first (nothing to do).
pub type SmsSyncReply = Option<SyncReply>;

/// The write that drops a message's parts after a refused sync (so that the purse's resend,
/// under a new id, or a replay, starts clean), or marks it synced after a refused replay.
pub fn settle_refused(
    loaded: &RecordSet,
    key: &str,
    now_ms: u64,
    replayed: bool,
) -> Result<Decision<()>, BookError> {
    let mut effects = Effects::new();
    let (version, held) = loaded.assembly(key)?;
    if let Some(held) = held {
        if replayed {
            effects.write(put(key, version, &held.completed(now_ms))?);
        } else {
            effects.write(delete(key, version));
        }
    }
    Ok(Decision::commit(effects, ()))
}

impl RecordSet {
    fn assembly(&self, key: &str) -> Result<(u64, Option<SmsAssembly>), RecordError> {
        Ok((
            self.version_of(key),
            self.decoded_record::<SmsAssembly>(key)?,
        ))
    }
}

impl PurseOperator {
    /// The purse a completed SMS upload claims to come from (before authentication: only to
    /// plan the load).
    pub fn sms_upload_purse(upload: &[u8]) -> Result<PurseId, PurseError> {
        Ok(peek_upload(upload)?.1)
    }

    /// Syncs a completed SMS upload: the same decision as an HTTP sync
    /// ([`PurseOperator::decide_sync`]), on condition that the upload names the purse whose phone
    /// sent it, and marking the message synced in the same commit. `loaded` is the sync's plan
    /// with `assembly_key` among its extra keys.
    pub fn decide_sms_sync(
        &self,
        loaded: &RecordSet,
        upload: &[u8],
        sender: Phone,
        assembly_key: &str,
        now: offpay_ledger::Timestamp,
    ) -> Result<Decision<SmsSyncReply>, BookError> {
        let (version, held) = loaded.assembly(assembly_key)?;
        let Some(held) = held.filter(|held| !held.is_completed() && held.is_full()) else {
            return Ok(Decision::commit(Effects::new(), None));
        };
        let purse_id = Self::sms_upload_purse(upload)?;
        let phone = loaded
            .shadow_phone(purse_id)?
            .ok_or(PurseError::UnknownPurse(purse_id))?;
        if phone != sender {
            return Err(BookError::Invalid {
                code: "sms_sender_mismatch",
                message: format!(
                    "the upload is purse {purse_id}'s, which is not the purse of the phone that sent it"
                ),
            });
        }
        match self.decide_sync_answering(
            loaded,
            upload,
            now,
            crate::params::SMS_ANSWER_CREDITS_MAX,
        )? {
            Decision::Commit { mut effects, reply } => {
                effects.write(put(assembly_key, version, &held.completed(now.0))?);
                Ok(Decision::commit(effects, Some(reply)))
            }
            Decision::Reload => Ok(Decision::Reload),
        }
    }

    /// The load plan of a statement request.
    pub fn statement_plan(request: &StatementRequest) -> crate::book::LoadPlan {
        crate::book::LoadPlan {
            purse: Some(request.purse_id),
            extra: vec![statement_key(request.purse_id)],
            ..crate::book::LoadPlan::default()
        }
    }

    /// Decides a statement request: granted (reply the purse's phone, to send the statement to
    /// that phone, never to the sender) when its code is the purse's over a counter above the
    /// last one used; a wrong code is counted, and after [`STATEMENT_FAILURES_MAX`] of them
    /// requests are refused for [`SMS_ASSEMBLY_SECONDS_MAX`].
    pub fn decide_statement(
        &self,
        loaded: &RecordSet,
        request: &StatementRequest,
        now: offpay_ledger::Timestamp,
    ) -> Result<Decision<Result<Phone, &'static str>>, BookError> {
        // The phone the statement goes to is read from the sealed shadow.
        self.check_sealed(loaded)?;
        let purse_id = request.purse_id;
        let phone = loaded
            .shadow_phone(purse_id)?
            .ok_or(PurseError::UnknownPurse(purse_id))?;
        let key = statement_key(purse_id);
        let version = loaded.version_of(&key);
        let mut counter =
            loaded
                .decoded_record::<StatementCounter>(&key)?
                .unwrap_or(StatementCounter {
                    version: RECORD_FORMAT_VERSION,
                    ..StatementCounter::default()
                });
        let now_ms = now.0;
        let window_open = now_ms.saturating_sub(counter.failures_since_ms) < ASSEMBLY_MS_MAX;
        if counter.failures >= STATEMENT_FAILURES_MAX && window_open {
            return Ok(Decision::commit(Effects::new(), Err("statement_locked")));
        }
        let keys = self.secrets().purse_keys(purse_id);
        let expected = statement_code(
            &keys.sync,
            self.secrets().operator(),
            purse_id,
            request.counter,
        );
        let mut effects = Effects::new();
        if !bool::from(expected.to_be_bytes().ct_eq(&request.code.to_be_bytes())) {
            if !window_open {
                counter.failures = 0;
                counter.failures_since_ms = now_ms;
            }
            if counter.failures == 0 {
                counter.failures_since_ms = now_ms;
            }
            counter.failures = counter.failures.saturating_add(1);
            effects.write(put(&key, version, &counter)?);
            return Ok(Decision::commit(effects, Err("statement_unauthenticated")));
        }
        if request.counter <= counter.last_counter {
            return Ok(Decision::commit(effects, Err("statement_replayed")));
        }
        counter.last_counter = request.counter;
        counter.failures = 0;
        counter.failures_since_ms = 0;
        effects.write(put(&key, version, &counter)?);
        Ok(Decision::commit(effects, Ok(phone)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::borrow::ToOwned;
    use alloc::vec;

    #[test]
    fn the_sweep_removes_only_expired_assemblies_and_leaves_unreadable_ones() {
        let assembly = |started_at_ms, completed_at_ms| SmsAssembly {
            version: RECORD_FORMAT_VERSION,
            total: 2,
            parts: if completed_at_ms == 0 {
                vec![Some("AAAA".to_owned()), None]
            } else {
                Vec::new()
            },
            started_at_ms,
            completed_at_ms,
        };
        let stored = |key: &str, record: &SmsAssembly, version| {
            (
                key.to_owned(),
                version,
                record.encode(key).unwrap_or_default(),
            )
        };
        let now = 10 * ASSEMBLY_MS_MAX;
        let page = SweepPage {
            records: vec![
                stored("smsin/+1/001", &assembly(now - ASSEMBLY_MS_MAX, 0), 3),
                stored("smsin/+1/002", &assembly(now - ASSEMBLY_MS_MAX + 1, 0), 1),
                // Synced long after it began: its marker counts from the sync.
                stored("smsin/+1/003", &assembly(1, now - 1), 2),
                stored("smsin/+1/004", &assembly(1, now - ASSEMBLY_MS_MAX), 5),
                ("smsin/+1/005".to_owned(), 1, b"not an assembly".to_vec()),
            ],
            last_key: None,
            full: false,
        };
        let Decision::Commit { effects, reply } = decide_sweep(&page, now) else {
            panic!("a sweep commits")
        };
        assert_eq!(
            reply,
            Swept {
                removed: 2,
                kept: 2,
                unreadable: 1
            }
        );
        let deleted: Vec<(&str, Option<u64>)> = effects
            .operations()
            .map(|operation| match operation {
                Operation::PutRecord(write) if write.value.is_none() => {
                    (write.key.as_str(), write.expected_version)
                }
                other => panic!("not a delete: {other:?}"),
            })
            .collect();
        assert_eq!(
            deleted,
            [("smsin/+1/001", Some(3)), ("smsin/+1/004", Some(5))]
        );
    }
}
