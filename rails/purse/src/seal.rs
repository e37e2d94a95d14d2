//! Sealing the operator's book in the database, so that an insider who can write to the store but
//! does not hold the master key cannot change what the book decides (short-code-purse.md §14,
//! attacker 7).
//!
//! **The seal.** Every record of the book ([`is_sealed_key`]: the header, shadow accounts, the
//! phone index, open debits and credits, pair versions, sync histories) is stored as
//! `#sealed-v1:` ‖ hex(MAC) ‖ `\n` ‖ the record's JSON, where
//!
//! - record key = HMAC-SHA256(master, "offpay purse record seal v1" ‖ operator id)[..16]
//!   (derived outside the database, never stored; [`RecordSealer::new`]);
//! - MAC = HMAC-SHA256(record key, label ‖ len(storage key) ‖ storage key ‖ JSON).
//!
//! The storage key is in the MAC, so a sealed record cannot be moved to another purse or pair.
//! The MAC covers the whole encoded record, so a field added later is covered without a change
//! here. Readers that only display (the console's lists) strip the prefix without checking
//! ([`content`]); every decision checks every record it loaded first, and a record whose MAC is
//! wrong or absent refuses the whole operation ([`Tampered`]): nothing moves, and the decision
//! commits one `record_tampered` flag per record instead ([`crate::book::refuse_tampered`]).
//!
//! **Not sealed**: the SMS book's assemblies and statement counters ([`crate::sms_book`]). An
//! assembly holds parts of an upload that is authenticated by the purse's own MAC when complete;
//! a statement counter is an anti-replay counter for statement requests, which move no money
//! (the phone a statement goes to is read from the sealed shadow).
//!
//! **Upgrade.** A database an earlier release wrote has no seal on any record. At start the
//! server seals them once ([`start_plan`], [`decide_page`]), under a marker that is itself a
//! sealed record ([`MARKER_KEY`]), written before the first seal (stage `sealing`) and completed
//! after the last (`done`), so a marker a DBA writes by hand is not believed. A database that
//! holds authentic seals but no marker had its marker removed: nothing is sealed, the start says
//! so, and the records without a seal stay refused.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use hmac::{Hmac, KeyInit, Mac};
use offpay_ledger::{LedgerStore, Operation, RecordWrite, StoreError};
use offpay_operator::{Decision, Effects, FraudFlag};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::book::{NAMESPACE, RAIL};
use crate::crypto::SecretKey;
use crate::operator::OperatorSecrets;
use crate::sms_book::{SMS_ASSEMBLY_PREFIX, STATEMENT_PREFIX};
use crate::types::Phone;

/// What a sealed record's stored bytes begin with (never the first byte of JSON).
pub const SEALED_PREFIX: &[u8] = b"#sealed-v1:";
/// Key of the marker that the records an earlier release wrote were sealed.
pub const MARKER_KEY: &str = "cfg:records-sealed";
/// Prefix of the book's configuration records (not part of any decision's load).
pub const CONFIG_PREFIX: &str = "cfg:";
/// Records read (and sealed) per commit by the upgrade.
pub const SEAL_PAGE_RECORDS: usize = 256;
/// Keys of records whose seal is wrong named in an upgrade's tally (the rest are counted).
pub const MISMATCHED_KEYS_MAX: usize = 20;
/// How long after it began an interrupted sealing at start is resumed without an operator (an
/// older marker still sealing is refused: it may come from a copy of the database).
pub const RESUME_WINDOW_MS: u64 = 60 * 60 * 1000;
/// Format version of the marker.
pub const MARKER_FORMAT_VERSION: u32 = 1;

const MAC_BYTES: usize = 32;
const MAC_HEX_BYTES: usize = 2 * MAC_BYTES;
const LABEL_RECORD_MAC: &[u8] = b"offpay purse record mac v1";

/// Whether the record under `key` is sealed (everything in the namespace but the SMS book's
/// assemblies and statement counters, and configuration records other than the marker).
pub fn is_sealed_key(key: &str) -> bool {
    !(key.starts_with(SMS_ASSEMBLY_PREFIX)
        || key.starts_with(STATEMENT_PREFIX)
        || (key.starts_with(CONFIG_PREFIX) && key != MARKER_KEY))
}

/// Stored bytes, split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored<'a> {
    /// Prefix, a well-formed MAC, and the content.
    Sealed {
        mac: [u8; MAC_BYTES],
        content: &'a [u8],
    },
    /// No prefix: written without a seal.
    Unsealed(&'a [u8]),
    /// The prefix, then something that is not a MAC and a newline.
    Malformed,
}

fn split(bytes: &[u8]) -> Stored<'_> {
    let Some(rest) = bytes.strip_prefix(SEALED_PREFIX) else {
        return Stored::Unsealed(bytes);
    };
    if rest.len() <= MAC_HEX_BYTES || rest[MAC_HEX_BYTES] != b'\n' {
        return Stored::Malformed;
    }
    let mut mac = [0u8; MAC_BYTES];
    for (byte, pair) in mac.iter_mut().zip(rest[..MAC_HEX_BYTES].chunks_exact(2)) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(high), Some(low)) => *byte = (high << 4) | low,
            _ => return Stored::Malformed,
        }
    }
    Stored::Sealed {
        mac,
        content: &rest[MAC_HEX_BYTES + 1..],
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// The record's content as stored, its seal (if any) stripped and not checked: for readers that
/// only display. Malformed sealed bytes are returned whole (and then fail to decode).
pub fn content(bytes: &[u8]) -> &[u8] {
    match split(bytes) {
        Stored::Sealed { content, .. } => content,
        Stored::Unsealed(content) => content,
        Stored::Malformed => bytes,
    }
}

/// A stored record's seal, as checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MacState {
    /// Present and right.
    Authentic,
    /// Absent: written by an earlier release (or by someone without the key).
    Missing,
    /// Present and wrong (or malformed): changed since it was sealed, or moved from another key.
    Mismatch,
    /// Authentic, but older than a sealed record it must agree with: an earlier copy put back
    /// (a shadow older than its purse's sync history, a shadow and the header's blocked list
    /// that disagree). Never the result of [`RecordSealer::state`].
    RolledBack,
}

/// The key that seals the book's records, derived from the operator's master key.
#[derive(Clone)]
pub struct RecordSealer {
    key: SecretKey,
}

impl core::fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RecordSealer(<redacted>)")
    }
}

impl RecordSealer {
    /// The sealer of the operator with `secrets`.
    pub fn new(secrets: &OperatorSecrets) -> RecordSealer {
        RecordSealer {
            key: secrets.record_seal_key(),
        }
    }

    /// The MAC of `content` stored under `key`.
    pub fn mac(&self, key: &str, content: &[u8]) -> [u8; MAC_BYTES] {
        // HMAC takes keys of any length.
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose())
            .expect("HMAC accepts any key");
        mac.update(LABEL_RECORD_MAC);
        mac.update(&(key.len() as u64).to_be_bytes());
        mac.update(key.as_bytes());
        mac.update(content);
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// `content` as stored under `key`, sealed.
    pub fn seal(&self, key: &str, content: &[u8]) -> Vec<u8> {
        let mac = self.mac(key, content);
        let mut out = Vec::with_capacity(SEALED_PREFIX.len() + MAC_HEX_BYTES + 1 + content.len());
        out.extend_from_slice(SEALED_PREFIX);
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for byte in mac {
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0x0f)]);
        }
        out.push(b'\n');
        out.extend_from_slice(content);
        out
    }

    /// The seal of `stored` (bytes read under `key`).
    pub fn state(&self, key: &str, stored: &[u8]) -> MacState {
        match split(stored) {
            Stored::Sealed { mac, content } => {
                if bool::from(self.mac(key, content).ct_eq(&mac)) {
                    MacState::Authentic
                } else {
                    MacState::Mismatch
                }
            }
            Stored::Unsealed(_) => MacState::Missing,
            Stored::Malformed => MacState::Mismatch,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Refusal.

/// A stored record a decision refused: its seal is wrong or absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TamperedRecord {
    /// Its storage key.
    pub key: String,
    /// What was wrong with its seal.
    pub state: MacState,
    /// The purse it claims to be about, when it decodes as a shadow account (for the operator;
    /// never the accused).
    pub phone: Option<Phone>,
    /// [`stored_digest`] of the stored bytes: the same bytes refused again make the same
    /// fraud-queue entry, new bytes a new one; a repair names it for the bytes checked.
    pub digest: String,
}

impl TamperedRecord {
    /// The record under `key`, stored as `stored`, whose seal is `state`.
    pub fn new(key: &str, stored: &[u8], state: MacState, phone: Option<Phone>) -> TamperedRecord {
        TamperedRecord {
            key: key.to_owned(),
            state,
            phone,
            digest: stored_digest(stored),
        }
    }

    /// The fraud flag it raises: about the record, not about the purse's holder.
    pub fn flag(&self, now: offpay_ledger::Timestamp) -> (FraudFlag, String) {
        let what = match self.state {
            MacState::Missing => "has no seal",
            MacState::RolledBack => {
                "is an earlier sealed copy that disagrees with the records beside it"
            }
            _ => "does not match its seal",
        };
        let about = self
            .phone
            .map(|phone| format!(" (about purse {phone}, whose holder is not accused)"))
            .unwrap_or_default();
        let flag = FraudFlag::new(
            RAIL,
            "record_tampered",
            &self.key,
            format!(
                "stored purse record {}{about} {what}: written or changed outside the operator's \
                 code; the operation was refused and nothing moved",
                self.key
            ),
            serde_json::json!({
                "key": self.key,
                "seal": self.state,
                "phone": self.phone.map(|phone| phone.to_string()),
                "stored_digest": self.digest,
            }),
            now,
        );
        (flag, format!("{}:{}", self.key, self.digest))
    }
}

/// Records a decision loaded whose seal is wrong or absent: the operation is refused whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "record tampered: see fraud case (record_tampered, subject {listed}). Purse record(s) {listed} were written or changed outside the operator's code; refused, nothing moved. After checking them, `offpay admin purse reseal {args} --force` re-seals them (each KEY=DIGEST names the stored bytes the case shows: bytes changed since refuse the repair)",
    listed = keys(.0, ", "),
    args = checked_args(.0)
)]
pub struct Tampered(pub Vec<TamperedRecord>);

fn keys(records: &[TamperedRecord], separator: &str) -> String {
    records
        .iter()
        .map(|record| record.key.as_str())
        .collect::<Vec<_>>()
        .join(separator)
}

fn checked_args(records: &[TamperedRecord]) -> String {
    records
        .iter()
        .map(|record| format!("{}={}", record.key, record.digest))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Tampered {
    /// The effects of the refusal: one flag per record, nothing else.
    pub fn effects(&self, now: offpay_ledger::Timestamp) -> Effects {
        let mut effects = Effects::new();
        for record in &self.0 {
            let (flag, discriminator) = record.flag(now);
            effects.flag(&flag, &discriminator);
        }
        effects
    }
}

/// Hexadecimal digits of a [`stored_digest`].
pub const STORED_DIGEST_HEX: usize = 32;

/// The digest of stored bytes as a `record_tampered` case's `stored_digest` shows it (and as a
/// repair names the bytes checked): the first 128 bits of their SHA-256, in lower-case
/// hexadecimal, so that a DBA cannot write other bytes with the digest an admin checked.
pub fn stored_digest(stored: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(stored)
        .iter()
        .take(STORED_DIGEST_HEX / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The one-time upgrade.

/// One page of the namespace's sealed records, as read.
#[derive(Clone, Debug, Default)]
pub struct SealPage {
    /// (key, version, stored bytes) of the records that carry a seal.
    pub records: Vec<(String, u64, Vec<u8>)>,
    /// The last key read (sealed or not), to read the next page after.
    pub last_key: Option<String>,
    /// Whether the page was full (there may be more).
    pub full: bool,
}

/// Reads the page of the namespace after `after`.
pub fn load_page(store: &mut dyn LedgerStore, after: Option<&str>) -> Result<SealPage, StoreError> {
    let stored = store.records(NAMESPACE, "", after, SEAL_PAGE_RECORDS)?;
    let full = stored.len() == SEAL_PAGE_RECORDS;
    let last_key = stored.last().map(|record| record.key.clone());
    let records = stored
        .into_iter()
        .filter(|record| is_sealed_key(&record.key) && record.key != MARKER_KEY)
        .map(|record| (record.key, record.version, record.value))
        .collect();
    Ok(SealPage {
        records,
        last_key,
        full,
    })
}

/// What a survey or a sealing found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealTally {
    /// Records whose seal is right.
    pub authentic: u64,
    /// Records without a seal (sealed, in a sealing run).
    pub missing: u64,
    /// Records whose seal is wrong: left refused.
    pub mismatched: u64,
    /// The first [`MISMATCHED_KEYS_MAX`] of them.
    pub mismatched_keys: Vec<String>,
}

impl SealTally {
    /// Adds another page's tally.
    pub fn add(&mut self, other: &SealTally) {
        self.authentic += other.authentic;
        self.missing += other.missing;
        self.mismatched += other.mismatched;
        for key in &other.mismatched_keys {
            if self.mismatched_keys.len() < MISMATCHED_KEYS_MAX {
                self.mismatched_keys.push(key.clone());
            }
        }
    }
}

/// The seals of a page's records.
pub fn survey(page: &SealPage, sealer: &RecordSealer) -> SealTally {
    let mut tally = SealTally::default();
    for (key, _, stored) in &page.records {
        match sealer.state(key, stored) {
            MacState::Authentic => tally.authentic += 1,
            MacState::Missing => tally.missing += 1,
            MacState::Mismatch | MacState::RolledBack => {
                tally.mismatched += 1;
                if tally.mismatched_keys.len() < MISMATCHED_KEYS_MAX {
                    tally.mismatched_keys.push(key.clone());
                }
            }
        }
    }
    tally
}

/// Seals the page's records that have no seal, each on condition that it is still at the
/// version read; a record whose seal is wrong is left as it is (refused) and counted.
pub fn decide_page(page: &SealPage, sealer: &RecordSealer) -> Decision<SealTally> {
    let mut effects = Effects::new();
    for (key, version, stored) in &page.records {
        if sealer.state(key, stored) == MacState::Missing {
            effects.write(Operation::PutRecord(RecordWrite {
                namespace: NAMESPACE.to_owned(),
                key: key.clone(),
                value: Some(sealer.seal(key, stored)),
                expected_version: Some(*version),
            }));
        }
    }
    Decision::commit(effects, survey(page, sealer))
}

/// Where a sealing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealStage {
    /// Begun (written before the first record is sealed).
    Sealing,
    /// Completed.
    Done,
}

/// The marker's content (stored sealed under [`MARKER_KEY`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedMarker {
    /// [`MARKER_FORMAT_VERSION`].
    pub version: u32,
    /// Where the sealing is.
    pub stage: SealStage,
    /// When it began (stage `sealing`) or completed (`done`), milliseconds.
    pub at_ms: u64,
    /// What it sealed and found.
    pub tally: SealTally,
}

/// The marker as read: (version, stored bytes).
pub fn load_marker(store: &mut dyn LedgerStore) -> Result<(u64, Option<Vec<u8>>), StoreError> {
    Ok(match store.record(NAMESPACE, MARKER_KEY)? {
        Some(record) => (record.version, Some(record.value)),
        None => (0, None),
    })
}

/// The marker, if its seal is right (one written by hand is not believed).
pub fn authentic_marker(stored: Option<&[u8]>, sealer: &RecordSealer) -> Option<SealedMarker> {
    let stored = stored?;
    if sealer.state(MARKER_KEY, stored) != MacState::Authentic {
        return None;
    }
    serde_json::from_slice(content(stored)).ok()
}

/// What a start does about records without a seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPlan {
    /// The marker says it was done: nothing.
    Done,
    /// Nothing lacks a seal: write the marker.
    MarkOnly,
    /// An earlier release's database (no seal anywhere), or an interrupted sealing within
    /// [`RESUME_WINDOW_MS`]: seal.
    Seal,
    /// Records lack a seal beside authentic ones and no marker vouches for a sealing under way:
    /// seal nothing; they stay refused.
    Refuse {
        /// Why, for the operator.
        reason: String,
    },
}

/// The rule of a start: `marker` as read (authentic only), the survey of the whole namespace.
pub fn start_plan(
    marker: Option<&SealedMarker>,
    survey: &SealTally,
    now: offpay_ledger::Timestamp,
) -> StartPlan {
    match marker {
        Some(marker) if marker.stage == SealStage::Done => StartPlan::Done,
        Some(marker) if now.0.saturating_sub(marker.at_ms) <= RESUME_WINDOW_MS => StartPlan::Seal,
        Some(marker) => StartPlan::Refuse {
            reason: format!(
                "a sealing begun at {} ms never completed and is older than {} ms",
                marker.at_ms, RESUME_WINDOW_MS
            ),
        },
        None if survey.missing == 0 => StartPlan::MarkOnly,
        None if survey.authentic == 0 && survey.mismatched == 0 => StartPlan::Seal,
        None => StartPlan::Refuse {
            reason: format!(
                "{} purse records have no seal beside {} sealed ones ({} with a wrong seal) and \
                 the marker that records were sealed is missing: not an earlier release's \
                 database",
                survey.missing, survey.authentic, survey.mismatched
            ),
        },
    }
}

/// Writes the marker at `stage` with `tally`, on condition that it is still as read.
pub fn decide_marker(
    loaded: &(u64, Option<Vec<u8>>),
    stage: SealStage,
    tally: &SealTally,
    sealer: &RecordSealer,
    now: offpay_ledger::Timestamp,
) -> Result<Decision<()>, serde_json::Error> {
    let marker = SealedMarker {
        version: MARKER_FORMAT_VERSION,
        stage,
        at_ms: now.0,
        tally: tally.clone(),
    };
    let content = serde_json::to_vec(&marker)?;
    let mut effects = Effects::new();
    effects.write(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: MARKER_KEY.to_owned(),
        value: Some(sealer.seal(MARKER_KEY, &content)),
        expected_version: Some(loaded.0),
    }));
    Ok(Decision::commit(effects, ()))
}

// ---------------------------------------------------------------------------------------------
// Repair: an operator re-seals records it has checked.

/// Records one repair may name (one commit).
pub const RESEAL_KEYS_MAX: usize = SEAL_PAGE_RECORDS;

/// The records a repair names, as read: (key, version, stored bytes if present).
pub type ResealLoad = Vec<(String, u64, Option<Vec<u8>>)>;

/// A record an operator checked: its key, and the digest of the stored bytes it checked (the
/// `stored_digest` of the `record_tampered` case's evidence). A repair re-seals those bytes and
/// no others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRecord {
    /// Its storage key.
    pub key: String,
    /// [`stored_digest`] of the bytes checked.
    pub stored_digest: String,
}

impl CheckedRecord {
    /// The record `key` whose checked bytes have the digest `digest`, written as the fraud
    /// case shows it ([`STORED_DIGEST_HEX`] hexadecimal digits, either case).
    pub fn new(key: &str, digest: &str) -> Result<CheckedRecord, ResealError> {
        if digest.len() != STORED_DIGEST_HEX || !digest.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            return Err(ResealError::Digest(key.to_owned()));
        }
        Ok(CheckedRecord {
            key: key.to_owned(),
            stored_digest: digest.to_ascii_lowercase(),
        })
    }
}

/// The keys of `checked`, in order.
pub fn checked_keys(checked: &[CheckedRecord]) -> Vec<String> {
    checked.iter().map(|record| record.key.clone()).collect()
}

/// Reads the records `keys` name (in the purse namespace).
pub fn load_reseal(store: &mut dyn LedgerStore, keys: &[String]) -> Result<ResealLoad, StoreError> {
    keys.iter()
        .map(|key| {
            Ok(match store.record(NAMESPACE, key)? {
                Some(record) => (key.clone(), record.version, Some(record.value)),
                None => (key.clone(), 0, None),
            })
        })
        .collect()
}

/// Why a repair was refused (nothing was written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResealError {
    /// No key, or more than [`RESEAL_KEYS_MAX`], or one named twice.
    #[error("a repair names 1 to {RESEAL_KEYS_MAX} distinct purse-book records: {0}")]
    Keys(String),
    /// The key is not one of the purse book's sealed records (the SMS book's parts and
    /// counters, configuration, the seal marker: none is re-sealed by hand).
    #[error("{0} is not a purse-book record that carries a seal")]
    NotSealed(String),
    /// No record is stored under the key.
    #[error("no purse record is stored under {0}")]
    Absent(String),
    /// The stored content is not a JSON record (a malformed seal, or bytes no release wrote).
    #[error("purse record {0} does not hold a JSON record; repair its content first")]
    NotJson(String),
    /// A checked digest is not 16 hexadecimal digits.
    #[error(
        "the checked digest of {0} must be the {STORED_DIGEST_HEX} hexadecimal digits of its fraud case's stored_digest"
    )]
    Digest(String),
    /// The stored bytes are not the ones checked (written again after the check).
    #[error(
        "purse record {0} changed since it was checked (its stored bytes no longer have the digest named); nothing was re-sealed: check it again against the fraud case its new bytes raise"
    )]
    Changed(String),
}

/// What a repair did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResealTally {
    /// Keys whose seal was wrong or absent and is now right over the content as stored.
    pub resealed: Vec<String>,
    /// Keys whose seal was already right (left as they were).
    pub already_sealed: Vec<String>,
}

/// Whether `key` names a record of the purse book a repair may re-seal: a sealed key under one
/// of the book's prefixes (not the seal marker).
pub fn is_book_record_key(key: &str) -> bool {
    const BOOK_PREFIXES: [&str; 6] = [
        "shadow/", "phone/", "debits/", "credits/", "pair/", "syncs/",
    ];
    is_sealed_key(key)
        && key != MARKER_KEY
        && (key == crate::book::KEY_BOOK
            || BOOK_PREFIXES
                .iter()
                .any(|prefix| key.len() > prefix.len() && key.starts_with(prefix)))
}

/// Checks the keys a repair names (before anything is read).
pub fn check_reseal_keys(keys: &[String]) -> Result<(), ResealError> {
    if keys.is_empty() || keys.len() > RESEAL_KEYS_MAX {
        return Err(ResealError::Keys(format!("{} named", keys.len())));
    }
    for (index, key) in keys.iter().enumerate() {
        if !is_book_record_key(key) {
            return Err(ResealError::NotSealed(key.clone()));
        }
        if keys[..index].contains(key) {
            return Err(ResealError::Keys(format!("{key} named twice")));
        }
    }
    Ok(())
}

/// An operator's repair of records it has checked: every named record whose seal is wrong or
/// absent is sealed over its content as stored, on condition that it is still at the version
/// read (a write in between reloads the decision). Nothing else is written: the
/// `record_tampered` flags stay in the fraud queue for a person to decide, no money moves, and
/// a record that is authentic but rolled back (an earlier sealed copy) is not changed by this
/// (its content must be repaired). Any key that is not a purse-book record, absent, or not a
/// JSON record refuses the whole repair; so does any record whose stored bytes are not the
/// ones the operator checked (`checked`, in the order `loaded` was read): a write after the
/// check (a DBA editing again) is never sealed on the strength of a check of other bytes.
pub fn decide_reseal(
    checked: &[CheckedRecord],
    loaded: &ResealLoad,
    sealer: &RecordSealer,
) -> Result<Decision<ResealTally>, ResealError> {
    let keys: Vec<String> = loaded.iter().map(|(key, _, _)| key.clone()).collect();
    check_reseal_keys(&keys)?;
    if keys != checked_keys(checked) {
        return Err(ResealError::Keys(
            "the records read are not the records checked".to_owned(),
        ));
    }
    let mut effects = Effects::new();
    let mut tally = ResealTally::default();
    for ((key, version, stored), checked) in loaded.iter().zip(checked) {
        let Some(stored) = stored else {
            return Err(ResealError::Absent(key.clone()));
        };
        if stored_digest(stored) != checked.stored_digest {
            return Err(ResealError::Changed(key.clone()));
        }
        if sealer.state(key, stored) == MacState::Authentic {
            tally.already_sealed.push(key.clone());
            continue;
        }
        let body = content(stored);
        if serde_json::from_slice::<serde_json::Value>(body).is_err() {
            return Err(ResealError::NotJson(key.clone()));
        }
        effects.write(Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: key.clone(),
            value: Some(sealer.seal(key, body)),
            expected_version: Some(*version),
        }));
        tally.resealed.push(key.clone());
    }
    Ok(Decision::commit(effects, tally))
}

/// The phone a stored shadow account names, best effort (for a flag's evidence).
pub(crate) fn shadow_phone(key: &str, stored: &[u8]) -> Option<Phone> {
    use offpay_operator::record::StoredRecord;
    if !key.starts_with("shadow/") {
        return None;
    }
    crate::operator::ShadowAccount::decode(key, stored)
        .ok()
        .map(|shadow| shadow.phone)
}

impl core::fmt::Display for MacState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MacState::Authentic => "authentic",
            MacState::Missing => "missing",
            MacState::Mismatch => "mismatch",
            MacState::RolledBack => "rolled_back",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::types::OperatorId;
    use alloc::vec;

    fn sealer(byte: u8) -> RecordSealer {
        let operator = OperatorId::new("op").unwrap_or_else(|_| panic!("operator id"));
        RecordSealer::new(&OperatorSecrets::new(
            operator,
            MasterKey::from_bytes([byte; 32]),
        ))
    }

    #[test]
    fn a_seal_is_bound_to_its_key_content_and_master() {
        let sealer = sealer(7);
        let stored = sealer.seal("shadow/1", b"{\"a\":1}");
        assert_eq!(content(&stored), b"{\"a\":1}");
        assert_eq!(sealer.state("shadow/1", &stored), MacState::Authentic);
        assert_eq!(sealer.state("shadow/2", &stored), MacState::Mismatch);
        assert_eq!(
            self::sealer(8).state("shadow/1", &stored),
            MacState::Mismatch
        );
        let mut edited = stored.clone();
        let last = edited.len() - 2;
        edited[last] = b'2';
        assert_eq!(sealer.state("shadow/1", &edited), MacState::Mismatch);
        assert_eq!(sealer.state("shadow/1", b"{\"a\":1}"), MacState::Missing);
        assert_eq!(
            sealer.state("shadow/1", b"#sealed-v1:zz\n{}"),
            MacState::Mismatch
        );
        assert_eq!(content(b"[1]"), b"[1]");
        assert!(!format!("{sealer:?}").contains('7'));
    }

    #[test]
    fn the_sms_book_and_configuration_are_not_sealed_but_the_marker_is() {
        assert!(is_sealed_key("book"));
        assert!(is_sealed_key("shadow/3"));
        assert!(is_sealed_key("syncs/3"));
        assert!(is_sealed_key(MARKER_KEY));
        assert!(!is_sealed_key("smsin/+254700000000/1"));
        assert!(!is_sealed_key("statement/3"));
        assert!(!is_sealed_key("cfg:other"));
    }

    #[test]
    fn a_repair_seals_the_checked_content_as_stored_and_refuses_anything_else() {
        let sealer = sealer(7);
        let edited = b"{\"a\": 1}".to_vec();
        let authentic = sealer.seal("book", b"{}");
        let loaded: ResealLoad = vec![
            ("shadow/1".to_owned(), 4, Some(edited.clone())),
            ("book".to_owned(), 9, Some(authentic)),
        ];
        let checked_as_loaded = |loaded: &ResealLoad| -> Vec<CheckedRecord> {
            loaded
                .iter()
                .map(|(key, _, stored)| CheckedRecord {
                    key: key.clone(),
                    stored_digest: stored.as_deref().map(stored_digest).unwrap_or_default(),
                })
                .collect()
        };
        let checked = checked_as_loaded(&loaded);
        let Ok(Decision::Commit { effects, reply }) = decide_reseal(&checked, &loaded, &sealer)
        else {
            panic!("a repair")
        };
        assert_eq!(reply.resealed, ["shadow/1"]);
        assert_eq!(reply.already_sealed, ["book"]);
        let writes: Vec<&Operation> = effects.operations().collect();
        let [Operation::PutRecord(write)] = writes.as_slice() else {
            panic!("one write: {writes:?}")
        };
        assert_eq!(write.key, "shadow/1");
        assert_eq!(write.expected_version, Some(4));
        let value = write.value.clone().unwrap_or_default();
        assert_eq!(sealer.state("shadow/1", &value), MacState::Authentic);
        assert_eq!(content(&value), edited.as_slice());

        // A DBA edits again after the check: the whole repair is refused, the book too.
        let mut edited_again = loaded.clone();
        edited_again[0].2 = Some(b"{\"a\": 2}".to_vec());
        assert_eq!(
            decide_reseal(&checked, &edited_again, &sealer).err(),
            Some(ResealError::Changed("shadow/1".to_owned()))
        );
        let mut book_changed = loaded.clone();
        book_changed[1].2 = Some(sealer.seal("book", b"{\"b\":1}"));
        assert_eq!(
            decide_reseal(&checked, &book_changed, &sealer).err(),
            Some(ResealError::Changed("book".to_owned()))
        );
        assert!(matches!(
            decide_reseal(&checked[..1], &loaded, &sealer),
            Err(ResealError::Keys(_))
        ));
        let digest = stored_digest(&edited);
        assert_eq!(digest.len(), STORED_DIGEST_HEX);
        assert_eq!(
            CheckedRecord::new("shadow/1", &digest),
            Ok(checked[0].clone())
        );
        assert_eq!(
            CheckedRecord::new("shadow/1", &digest.to_ascii_uppercase()),
            Ok(checked[0].clone())
        );
        for bad in [
            "",
            "abc",
            &digest[1..],
            &format!("{digest}0"),
            &format!("g{}", &digest[1..]),
            &format!("+{}", &digest[1..]),
        ] {
            assert_eq!(
                CheckedRecord::new("shadow/1", bad),
                Err(ResealError::Digest("shadow/1".to_owned())),
                "{bad}"
            );
        }

        let refused =
            |loaded: ResealLoad| decide_reseal(&checked_as_loaded(&loaded), &loaded, &sealer).err();
        assert_eq!(
            refused(vec![("shadow/1".to_owned(), 1, Some(b"not json".to_vec()))]),
            Some(ResealError::NotJson("shadow/1".to_owned()))
        );
        assert_eq!(
            refused(vec![("shadow/2".to_owned(), 0, None)]),
            Some(ResealError::Absent("shadow/2".to_owned()))
        );
        for key in [
            MARKER_KEY,
            "smsin/+1/001",
            "statement/1",
            "cfg:x",
            "shadow/",
            "other",
        ] {
            assert_eq!(
                refused(vec![(key.to_owned(), 1, Some(b"{}".to_vec()))]),
                Some(ResealError::NotSealed(key.to_owned())),
                "{key}"
            );
        }
    }
}
