//! Sealing, once, the records an earlier release wrote without a MAC.
//!
//! Version 3 of this rail put a MAC under the master key on the records a database edit could
//! turn into money: an account's settings, a pending callback, a scheduled payment
//! ([`MasterKey::record_mac`]). A record without one is refused like a tampered one. Records
//! written before version 3 carry none, so without this step every account of an upgraded
//! operator would pay nothing and be flagged `record_tampered` — the honest customers flagged for
//! an upgrade.
//!
//! The step trusts the database as it is when it runs, and runs once:
//! - **At a start with no marker** ([`SEALED_MARKER_KEY`]) the server surveys the records. A
//!   database with no authentic MAC at all is one an earlier release wrote: its records without a
//!   MAC are sealed. A database that has authentic MACs but no marker had its marker removed (a
//!   version-3 operator writes it at its first start, whatever the records), so nothing is
//!   sealed, the start says so, and the records without a MAC stay refused.
//! - **An operator's forced run** ([`SealRun::Forced`]) seals every record without a MAC
//!   whatever the marker says: for an operator who has checked the database by other means.
//!
//! Only records whose MAC is absent are sealed; a record whose MAC is present and wrong was
//! changed since it was sealed and stays refused (it is counted and named in the report). The
//! marker carries its own MAC, is written before the first seal ([`SealStage::Sealing`]) and
//! completed after the last ([`SealStage::Done`]), so a start interrupted while sealing resumes
//! within [`RESUME_WINDOW_MS`] and a marker written by hand is not believed.
//!
//! The bound: an insider who can edit the database and restart the operator can get records he
//! wrote sealed only by first removing every authentic MAC (every account's) and the marker —
//! which the start reports as an upgrade of an earlier database, with the counts.
//!
//! The same step runs in two phases ([`SealPhase`]), each with its own marker: the records above
//! ([`SealPhase::Records`]), and the accounts' spending windows ([`SealPhase::SpendingWindows`],
//! MAC'd since the window got its own MAC: a release that MAC'd the settings but not the window
//! left every window without one), the envelopes ([`SealPhase::Envelopes`]: used rows, failure
//! count, lock and status, MAC'd since issue 18's envelope seal) and the operator's settings
//! ([`SealPhase::Settings`], MAC'd in the same release).

use std::string::String;
use std::vec::Vec;

use offpay_ledger::{LedgerStore, Timestamp};
use offpay_operator::record::{check_version, decode_json, encode_json};
use offpay_operator::{Decision, Effects, Loaded, RecordError, StoredRecord};
use serde::{Deserialize, Serialize};

use crate::keys::MasterKey;
use crate::operator::records::{
    ACCOUNT_PREFIX, AccountRecord, ENVELOPE_PREFIX, EnvelopeRecord, NAMESPACE, PENDING_PREFIX,
    PendingRecord, SCHEDULED_PREFIX, SETTINGS_KEY, ScheduledRecord,
};
use crate::operator::settings::SealedSettings;

/// Key of the marker that records written without a MAC were sealed.
pub const SEALED_MARKER_KEY: &str = "cfg:earlier-records-sealed";
/// Records read (and sealed) per commit.
pub const SEAL_PAGE_RECORDS: usize = 256;
/// Keys of records whose MAC is wrong named in a report (the rest are counted).
pub const MISMATCHED_KEYS_MAX: usize = 20;
/// The key prefixes of the records that carry a MAC, in the order they are sealed.
pub const SEALED_PREFIXES: [&str; 3] = [ACCOUNT_PREFIX, PENDING_PREFIX, SCHEDULED_PREFIX];
/// How long after it began an interrupted sealing at start is resumed without an operator (an
/// older marker still sealing is refused: it may be a marker from a copy of the database).
pub const RESUME_WINDOW_MS: u64 = 60 * 60 * 1000;
/// Format version of the marker.
pub const MARKER_FORMAT_VERSION: u32 = 1;
/// The marker's kind in its MAC.
const MARKER_MAC_KIND: &str = "earlier-records-sealed";
/// Key of the marker that spending windows written without a MAC were sealed.
pub const WINDOWS_SEALED_MARKER_KEY: &str = "cfg:spending-windows-sealed";
/// The spending-window marker's kind in its MAC.
const WINDOWS_MARKER_MAC_KIND: &str = "spending-windows-sealed";
/// Key of the marker that envelopes written without a MAC were sealed.
pub const ENVELOPES_SEALED_MARKER_KEY: &str = "cfg:envelopes-sealed";
/// The envelope marker's kind in its MAC.
const ENVELOPES_MARKER_MAC_KIND: &str = "envelopes-sealed";
/// Key of the marker that the operator's settings written without a MAC were sealed (not under
/// [`SETTINGS_KEY`] as a prefix, so the settings phase's listing never reads it).
pub const SETTINGS_SEALED_MARKER_KEY: &str = "cfg:operator-settings-sealed";
/// The settings marker's kind in its MAC.
const SETTINGS_MARKER_MAC_KIND: &str = "operator-settings-sealed";
// The settings listing (prefix SETTINGS_KEY) must not read the marker.
const _: () = assert!(
    SETTINGS_SEALED_MARKER_KEY.len() < SETTINGS_KEY.len()
        || SETTINGS_SEALED_MARKER_KEY.as_bytes()[4] != SETTINGS_KEY.as_bytes()[4]
);

// For serde's `skip_serializing_if`, which passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// Which records a sealing covers; each phase has its own marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SealPhase {
    /// Account settings, pending callbacks and scheduled payments (MAC'd since version 3).
    Records,
    /// Accounts' spending windows (MAC'd since the release after).
    SpendingWindows,
    /// Envelopes (MAC'd since issue 18's envelope seal).
    Envelopes,
    /// The operator's settings (MAC'd in the same release).
    Settings,
}

impl SealPhase {
    /// Every phase, in the order a start or a forced run seals them.
    pub const ALL: [SealPhase; 4] = [
        SealPhase::Records,
        SealPhase::SpendingWindows,
        SealPhase::Envelopes,
        SealPhase::Settings,
    ];

    /// Its marker's key.
    pub fn marker_key(self) -> &'static str {
        match self {
            SealPhase::Records => SEALED_MARKER_KEY,
            SealPhase::SpendingWindows => WINDOWS_SEALED_MARKER_KEY,
            SealPhase::Envelopes => ENVELOPES_SEALED_MARKER_KEY,
            SealPhase::Settings => SETTINGS_SEALED_MARKER_KEY,
        }
    }

    fn marker_mac_kind(self) -> &'static str {
        match self {
            SealPhase::Records => MARKER_MAC_KIND,
            SealPhase::SpendingWindows => WINDOWS_MARKER_MAC_KIND,
            SealPhase::Envelopes => ENVELOPES_MARKER_MAC_KIND,
            SealPhase::Settings => SETTINGS_MARKER_MAC_KIND,
        }
    }

    /// The key prefixes of the records it seals.
    pub fn prefixes(self) -> &'static [&'static str] {
        match self {
            SealPhase::Records => &SEALED_PREFIXES,
            SealPhase::SpendingWindows => &[ACCOUNT_PREFIX],
            SealPhase::Envelopes => &[ENVELOPE_PREFIX],
            SealPhase::Settings => &[SETTINGS_KEY],
        }
    }
}

/// A record's MAC as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacState {
    /// Present and right.
    Authentic,
    /// Absent: written before version 3 (or removed).
    Missing,
    /// Present and wrong: changed since it was sealed.
    Mismatch,
}

fn mac_state(mac: &[u8; 32], authentic: bool) -> MacState {
    if authentic {
        MacState::Authentic
    } else if mac == &[0; 32] {
        MacState::Missing
    } else {
        MacState::Mismatch
    }
}

/// A record that carries a MAC, as read.
#[derive(Clone, Debug)]
pub enum MacRecord {
    /// An account (its settings carry the MAC).
    Account(Loaded<AccountRecord>),
    /// A pending callback.
    Pending(Loaded<PendingRecord>),
    /// A scheduled payment.
    Scheduled(Loaded<ScheduledRecord>),
    /// An account's spending window (its own MAC).
    Window(Loaded<AccountRecord>),
    /// An envelope.
    Envelope(Loaded<EnvelopeRecord>),
    /// The operator's settings.
    Settings(Loaded<SealedSettings>),
}

impl MacRecord {
    fn key(&self) -> &str {
        match self {
            MacRecord::Account(loaded) => &loaded.key,
            MacRecord::Pending(loaded) => &loaded.key,
            MacRecord::Scheduled(loaded) => &loaded.key,
            MacRecord::Window(loaded) => &loaded.key,
            MacRecord::Envelope(loaded) => &loaded.key,
            MacRecord::Settings(loaded) => &loaded.key,
        }
    }

    /// Its MAC's state under `master`.
    pub fn state(&self, master: &MasterKey) -> MacState {
        match self {
            MacRecord::Account(Loaded {
                key,
                value: Some(record),
                ..
            }) => mac_state(&record.settings_mac, record.settings_authentic(master, key)),
            MacRecord::Pending(Loaded {
                key,
                value: Some(record),
                ..
            }) => mac_state(&record.mac, record.authentic(master, key)),
            MacRecord::Scheduled(Loaded {
                key,
                value: Some(record),
                ..
            }) => mac_state(&record.1, record.authentic(master, key)),
            MacRecord::Window(Loaded {
                key,
                value: Some(record),
                ..
            }) => mac_state(&record.spending_mac, record.spending_authentic(master, key)),
            MacRecord::Envelope(Loaded {
                key,
                value: Some(record),
                ..
            }) => mac_state(&record.mac, record.authentic(master, key)),
            MacRecord::Settings(Loaded {
                value: Some(record),
                ..
            }) => mac_state(&record.mac, record.authentic(master)),
            // Listed records exist; an absent one has nothing to seal.
            _ => MacState::Authentic,
        }
    }

    /// The write that seals it, conditional on the version read.
    fn sealed(&self, master: &MasterKey) -> Result<Option<offpay_ledger::Operation>, RecordError> {
        Ok(match self {
            MacRecord::Account(loaded) => match &loaded.value {
                Some(record) => {
                    let mut record = record.clone();
                    record.seal_settings(master, &loaded.key);
                    Some(loaded.write(&record)?)
                }
                None => None,
            },
            MacRecord::Pending(loaded) => match &loaded.value {
                Some(record) => Some(loaded.write(&PendingRecord::sealed(
                    record.callback.clone(),
                    record.reply_to.clone(),
                    master,
                    &loaded.key,
                ))?),
                None => None,
            },
            MacRecord::Scheduled(loaded) => match &loaded.value {
                Some(record) => Some(loaded.write(&ScheduledRecord::sealed(
                    record.0.clone(),
                    master,
                    &loaded.key,
                ))?),
                None => None,
            },
            MacRecord::Window(loaded) => match &loaded.value {
                Some(record) => {
                    let mut record = record.clone();
                    record.seal_spending(master, &loaded.key);
                    Some(loaded.write(&record)?)
                }
                None => None,
            },
            MacRecord::Envelope(loaded) => match &loaded.value {
                Some(record) => Some(loaded.write(&record.clone().sealed(master, &loaded.key))?),
                None => None,
            },
            MacRecord::Settings(loaded) => match &loaded.value {
                Some(record) => {
                    Some(loaded.write(&SealedSettings::seal(record.settings.clone(), master))?)
                }
                None => None,
            },
        })
    }
}

/// One page of records under one of [`SEALED_PREFIXES`].
#[derive(Clone, Debug)]
pub struct SealPage {
    /// The records, in key order.
    pub records: Vec<MacRecord>,
    /// The last key read: the next page starts after it.
    pub last_key: Option<String>,
    /// Whether the page was full (there may be more).
    pub full: bool,
}

/// Reads the page of records under `prefix` after `after` (one of [`SEALED_PREFIXES`]), for the
/// sealing of [`SealPhase::Records`].
pub fn load_page(
    store: &mut dyn LedgerStore,
    prefix: &str,
    after: Option<&str>,
) -> Result<SealPage, RecordError> {
    load_phase_page(store, SealPhase::Records, prefix, after)
}

/// Reads the page of records under `prefix` (one of `phase`'s [`SealPhase::prefixes`]) after
/// `after`, as `phase` seals them.
pub fn load_phase_page(
    store: &mut dyn LedgerStore,
    phase: SealPhase,
    prefix: &str,
    after: Option<&str>,
) -> Result<SealPage, RecordError> {
    let stored = store.records(NAMESPACE, prefix, after, SEAL_PAGE_RECORDS)?;
    let full = stored.len() == SEAL_PAGE_RECORDS;
    let last_key = stored.last().map(|record| record.key.clone());
    let mut records = Vec::with_capacity(stored.len());
    for record in stored {
        fn loaded<R: StoredRecord>(
            record: &offpay_ledger::Record,
        ) -> Result<Loaded<R>, RecordError> {
            Ok(Loaded {
                key: record.key.clone(),
                version: record.version,
                value: Some(R::decode(&record.key, &record.value)?),
            })
        }
        let entry = if phase == SealPhase::Envelopes && prefix == ENVELOPE_PREFIX {
            MacRecord::Envelope(loaded(&record)?)
        } else if phase == SealPhase::Settings && record.key == SETTINGS_KEY {
            MacRecord::Settings(loaded(&record)?)
        } else if matches!(phase, SealPhase::Envelopes | SealPhase::Settings) {
            // Those phases read their own records only.
            continue;
        } else if prefix == ACCOUNT_PREFIX && phase == SealPhase::SpendingWindows {
            MacRecord::Window(loaded(&record)?)
        } else if phase == SealPhase::SpendingWindows {
            // The window phase reads accounts only.
            return Ok(SealPage {
                records: Vec::new(),
                last_key: None,
                full: false,
            });
        } else if prefix == ACCOUNT_PREFIX {
            MacRecord::Account(loaded(&record)?)
        } else if prefix == PENDING_PREFIX {
            MacRecord::Pending(loaded(&record)?)
        } else if prefix == SCHEDULED_PREFIX {
            MacRecord::Scheduled(loaded(&record)?)
        } else {
            // Not a prefix whose records carry a MAC: nothing to read.
            return Ok(SealPage {
                records: Vec::new(),
                last_key: None,
                full: false,
            });
        };
        records.push(entry);
    }
    Ok(SealPage {
        records,
        last_key,
        full,
    })
}

/// What a survey found or a sealing did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SealTally {
    /// Records whose MAC is right.
    pub authentic: u64,
    /// Accounts without a MAC (sealed, when sealing).
    pub accounts: u64,
    /// Pending callbacks without a MAC.
    pub pending: u64,
    /// Scheduled payments without a MAC.
    pub scheduled: u64,
    /// Spending windows without a MAC.
    pub windows: u64,
    /// Envelopes without a MAC.
    pub envelopes: u64,
    /// Operator settings without a MAC (0 or 1).
    pub settings: u64,
    /// Records whose MAC is present and wrong (never sealed).
    pub mismatched: u64,
    /// The first [`MISMATCHED_KEYS_MAX`] of them.
    pub mismatched_keys: Vec<String>,
    /// Keys sealed by this page's decision (not kept across pages: for the caller's caches).
    #[serde(skip)]
    pub sealed_keys: Vec<String>,
}

impl SealTally {
    /// Records without a MAC.
    pub fn missing(&self) -> u64 {
        self.accounts
            + self.pending
            + self.scheduled
            + self.windows
            + self.envelopes
            + self.settings
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &SealTally) {
        self.authentic += other.authentic;
        self.accounts += other.accounts;
        self.pending += other.pending;
        self.scheduled += other.scheduled;
        self.windows += other.windows;
        self.envelopes += other.envelopes;
        self.settings += other.settings;
        self.mismatched += other.mismatched;
        for key in &other.mismatched_keys {
            if self.mismatched_keys.len() < MISMATCHED_KEYS_MAX {
                self.mismatched_keys.push(key.clone());
            }
        }
    }

    fn count(&mut self, record: &MacRecord, state: MacState) {
        match state {
            MacState::Authentic => self.authentic += 1,
            MacState::Mismatch => {
                self.mismatched += 1;
                if self.mismatched_keys.len() < MISMATCHED_KEYS_MAX {
                    self.mismatched_keys.push(record.key().into());
                }
            }
            MacState::Missing => match record {
                MacRecord::Account(_) => self.accounts += 1,
                MacRecord::Pending(_) => self.pending += 1,
                MacRecord::Scheduled(_) => self.scheduled += 1,
                MacRecord::Window(_) => self.windows += 1,
                MacRecord::Envelope(_) => self.envelopes += 1,
                MacRecord::Settings(_) => self.settings += 1,
            },
        }
    }
}

/// Counts a page's records by the state of their MAC, changing nothing.
pub fn survey(page: &SealPage, master: &MasterKey) -> SealTally {
    let mut tally = SealTally::default();
    for record in &page.records {
        tally.count(record, record.state(master));
    }
    tally
}

/// Seals the page's records that have no MAC, each write conditional on the version read (a
/// record changed meanwhile makes the runner read the page again).
pub fn decide_page(
    page: &SealPage,
    master: &MasterKey,
) -> Result<Decision<SealTally>, RecordError> {
    let mut tally = SealTally::default();
    let mut effects = Effects::new();
    for record in &page.records {
        let state = record.state(master);
        tally.count(record, state);
        if state == MacState::Missing
            && let Some(write) = record.sealed(master)?
        {
            effects.write(write);
            tally.sealed_keys.push(record.key().into());
        }
    }
    Ok(Decision::commit(effects, tally))
}

/// Where a sealing stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealStage {
    /// Begun, not finished.
    Sealing,
    /// Finished.
    Done,
}

/// Who ran a sealing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealRun {
    /// The server's first start over the database.
    Start,
    /// An operator, whatever the marker said.
    Forced,
}

/// The marker: the sealing of records written without a MAC was done (or is under way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedMarker {
    /// Format version.
    pub version: u32,
    /// Where it stands.
    pub stage: SealStage,
    /// Who ran it.
    pub run: SealRun,
    /// When it began (Unix ms).
    pub started_at_ms: u64,
    /// When it finished (Unix ms; 0 while sealing).
    pub finished_at_ms: u64,
    /// What it sealed and found (while sealing: what the survey before found).
    pub accounts: u64,
    /// Pending callbacks sealed.
    pub pending: u64,
    /// Scheduled payments sealed.
    pub scheduled: u64,
    /// Records left refused for a wrong MAC.
    pub mismatched: u64,
    /// Envelopes sealed (absent when none: markers written before still verify).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub envelopes: u64,
    /// Operator settings sealed (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub settings: u64,
    /// MAC over the rest under the master key, hex.
    #[serde(default)]
    pub mac: String,
}

impl StoredRecord for SealedMarker {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = MARKER_FORMAT_VERSION;

    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let marker: SealedMarker = decode_json(key, bytes)?;
        check_version::<Self>(key, marker.version)?;
        Ok(marker)
    }
}

impl SealedMarker {
    fn new(run: SealRun, stage: SealStage, started_at_ms: u64, tally: &SealTally) -> SealedMarker {
        SealedMarker {
            version: MARKER_FORMAT_VERSION,
            stage,
            run,
            started_at_ms,
            finished_at_ms: 0,
            // A spending-window sealing counts its accounts here (the marker's format is kept,
            // so markers written before still verify).
            accounts: tally.accounts + tally.windows,
            pending: tally.pending,
            scheduled: tally.scheduled,
            mismatched: tally.mismatched,
            envelopes: tally.envelopes,
            settings: tally.settings,
            mac: String::new(),
        }
    }

    fn mac_content(&self) -> Vec<u8> {
        let mut unsealed = self.clone();
        unsealed.mac = String::new();
        // Plain numbers and words: serialising cannot fail.
        serde_json::to_vec(&unsealed).unwrap_or_default()
    }

    fn seal(mut self, master: &MasterKey, phase: SealPhase) -> SealedMarker {
        self.mac = hex::encode(master.record_mac(
            phase.marker_mac_kind(),
            phase.marker_key(),
            &self.mac_content(),
        ));
        self
    }

    /// Whether the operator's code wrote it as the marker of [`SealPhase::Records`] (a marker
    /// written or changed by hand is not).
    pub fn authentic(&self, master: &MasterKey) -> bool {
        self.authentic_for(master, SealPhase::Records)
    }

    /// Whether the operator's code wrote it as `phase`'s marker.
    pub fn authentic_for(&self, master: &MasterKey, phase: SealPhase) -> bool {
        let Ok(mac) = hex::decode(&self.mac) else {
            return false;
        };
        master.record_mac_matches(
            phase.marker_mac_kind(),
            phase.marker_key(),
            &self.mac_content(),
            &mac,
        )
    }
}

/// Reads the marker of [`SealPhase::Records`].
pub fn load_marker(store: &mut dyn LedgerStore) -> Result<Loaded<SealedMarker>, RecordError> {
    load_phase_marker(store, SealPhase::Records)
}

/// Reads `phase`'s marker.
pub fn load_phase_marker(
    store: &mut dyn LedgerStore,
    phase: SealPhase,
) -> Result<Loaded<SealedMarker>, RecordError> {
    Loaded::read(store, phase.marker_key())
}

/// What a start does about records without a MAC, from the marker and a survey of every record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPlan {
    /// A finished, authentic marker: nothing to do.
    Done,
    /// No record lacks a MAC: write the marker and go on (a new operator's first start).
    MarkOnly,
    /// Seal the records without a MAC, then finish the marker: an earlier release's database,
    /// or a sealing at start interrupted less than [`RESUME_WINDOW_MS`] ago.
    Seal,
    /// Seal nothing: records lack a MAC although the database has authentic ones and no
    /// finished marker. The start goes on; those records stay refused until an operator forces
    /// a sealing.
    Refuse {
        /// Why, for the operator.
        reason: String,
    },
}

/// Decides what a start does for [`SealPhase::Records`]. `marker` is the stored marker, `survey`
/// counts every record with a MAC.
pub fn start_plan(
    marker: Option<&SealedMarker>,
    survey: &SealTally,
    master: &MasterKey,
    now: Timestamp,
) -> StartPlan {
    start_phase_plan(SealPhase::Records, marker, survey, master, now)
}

/// Decides what a start does for `phase`. `marker` is that phase's stored marker, `survey`
/// counts every record the phase seals.
pub fn start_phase_plan(
    phase: SealPhase,
    marker: Option<&SealedMarker>,
    survey: &SealTally,
    master: &MasterKey,
    now: Timestamp,
) -> StartPlan {
    let refuse = |why: &str| StartPlan::Refuse {
        reason: std::format!(
            "{why}; {} records without a MAC ({} accounts, {} pending callbacks, {} scheduled \
             payments, {} spending windows, {} envelopes, {} operator settings) stay refused \
             until an operator checks the database and forces the sealing",
            survey.missing(),
            survey.accounts,
            survey.pending,
            survey.scheduled,
            survey.windows,
            survey.envelopes,
            survey.settings
        ),
    };
    match marker {
        Some(marker) if !marker.authentic_for(master, phase) => {
            if survey.missing() == 0 {
                // Nothing to seal; the bad marker is replaced.
                StartPlan::MarkOnly
            } else {
                refuse(
                    "the marker of the sealing of earlier records does not verify (written by hand?)",
                )
            }
        }
        Some(marker) if marker.stage == SealStage::Done => StartPlan::Done,
        Some(marker) => {
            let age = now.0.saturating_sub(marker.started_at_ms);
            if marker.run == SealRun::Start && age <= RESUME_WINDOW_MS {
                StartPlan::Seal
            } else {
                refuse("a sealing of earlier records began too long ago and did not finish")
            }
        }
        None if survey.missing() == 0 => StartPlan::MarkOnly,
        None if survey.authentic == 0 => StartPlan::Seal,
        None => refuse(
            "the database has sealed records but no marker that records without a MAC were \
             sealed (it was removed?)",
        ),
    }
}

/// Writes the marker of [`SealPhase::Records`] at `stage`, conditional on the marker read.
pub fn decide_marker(
    marker: &Loaded<SealedMarker>,
    run: SealRun,
    stage: SealStage,
    tally: &SealTally,
    master: &MasterKey,
    now: Timestamp,
) -> Result<Decision<SealedMarker>, RecordError> {
    decide_phase_marker(marker, SealPhase::Records, run, stage, tally, master, now)
}

/// Writes `phase`'s marker at `stage`, conditional on the marker read.
pub fn decide_phase_marker(
    marker: &Loaded<SealedMarker>,
    phase: SealPhase,
    run: SealRun,
    stage: SealStage,
    tally: &SealTally,
    master: &MasterKey,
    now: Timestamp,
) -> Result<Decision<SealedMarker>, RecordError> {
    let started_at_ms = match (&marker.value, stage) {
        (Some(existing), SealStage::Done)
            if existing.stage == SealStage::Sealing && existing.authentic_for(master, phase) =>
        {
            existing.started_at_ms
        }
        _ => now.0,
    };
    let mut written = SealedMarker::new(run, stage, started_at_ms, tally);
    if stage == SealStage::Done {
        written.finished_at_ms = now.0;
    }
    let written = written.seal(master, phase);
    let mut effects = Effects::new();
    effects.write(marker.write(&written)?);
    Ok(Decision::commit(effects, written))
}

#[cfg(test)]
mod tests {
    use offpay_ledger::MemoryStore;

    use super::*;
    use crate::operator::records::Answered;
    use crate::operator::records::{self, AccountRecord};
    use crate::operator::testing::{
        MASTER, PAYEE, PAYER, PAYER_PHONE, T0, World, commit, number, run,
    };

    fn master() -> MasterKey {
        MasterKey::from_bytes(MASTER)
    }

    /// Rewrites every account as an earlier release wrote it: settings without a MAC.
    fn strip_macs(store: &mut MemoryStore) {
        let page = load_page(store, ACCOUNT_PREFIX, None).unwrap();
        let mut effects = Effects::new();
        for record in page.records {
            if let MacRecord::Account(loaded) = record {
                let mut account = loaded.value.clone().unwrap();
                account.settings_mac = [0; 32];
                effects.write(loaded.write(&account).unwrap());
            }
        }
        assert!(commit(store, effects, T0));
    }

    fn survey_all(store: &mut MemoryStore) -> SealTally {
        let mut tally = SealTally::default();
        for prefix in SEALED_PREFIXES {
            tally.add(&survey(&load_page(store, prefix, None).unwrap(), &master()));
        }
        tally
    }

    fn seal_all(store: &mut MemoryStore) -> SealTally {
        let master = master();
        let mut tally = SealTally::default();
        for prefix in SEALED_PREFIXES {
            let mut after: Option<String> = None;
            loop {
                let page = load_page(store, prefix, after.as_deref()).unwrap();
                let (last, full) = (page.last_key.clone(), page.full);
                let sealed = run(
                    store,
                    T0,
                    |store| load_page(store, prefix, after.as_deref()).unwrap(),
                    |page| decide_page(&page, &master),
                )
                .unwrap();
                tally.add(&sealed);
                if !full {
                    break;
                }
                after = last;
            }
        }
        tally
    }

    fn account(store: &mut MemoryStore, receive: &str) -> AccountRecord {
        Loaded::<AccountRecord>::read(store, &records::account_key(&number(receive)))
            .unwrap()
            .value
            .unwrap()
    }

    #[test]
    fn an_earlier_database_is_sealed_at_start_and_its_accounts_pay_again() {
        let mut world = World::new();
        strip_macs(&mut world.store);
        let key = records::account_key(&number(PAYER));
        assert!(!account(&mut world.store, PAYER).settings_authentic(&master(), &key));
        let survey = survey_all(&mut world.store);
        assert_eq!((survey.accounts, survey.authentic), (2, 0));
        assert_eq!(start_plan(None, &survey, &master(), T0), StartPlan::Seal);
        // Before the sealing, the earlier account pays nothing (refused as tampered).
        let text = world.low(PAYEE, "100", 1);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Refused
        );
        assert_eq!(world.balance(PAYEE), 0);
        let sealed = seal_all(&mut world.store);
        assert_eq!(sealed.accounts, 2);
        let text = world.low(PAYEE, "100", 2);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Accepted
        );
        assert_eq!(world.balance(PAYEE), 10_000, "the payee got KES 100.00");
        assert!(account(&mut world.store, PAYER).settings_authentic(&master(), &key));
        assert!(account(&mut world.store, PAYEE).settings_authentic(&master(), &key_of(PAYEE)));
        // Sealing again finds nothing to do.
        assert_eq!(seal_all(&mut world.store).missing(), 0);
    }

    fn key_of(receive: &str) -> String {
        records::account_key(&number(receive))
    }

    #[test]
    fn a_new_operators_first_start_only_writes_the_marker() {
        let mut world = World::new();
        let survey = survey_all(&mut world.store);
        assert_eq!(survey.missing(), 0);
        assert_eq!(survey.authentic, 2);
        assert_eq!(
            start_plan(None, &survey, &master(), T0),
            StartPlan::MarkOnly
        );
    }

    /// An insider removes the marker and the MAC of one account he changed: the next start
    /// seals nothing, because the database has authentic MACs, and says why.
    #[test]
    fn a_removed_marker_with_sealed_records_beside_it_seals_nothing() {
        let mut world = World::new();
        let marker = load_marker(&mut world.store).unwrap();
        let done = run(
            &mut world.store,
            T0,
            |_| (),
            |()| {
                decide_marker(
                    &marker,
                    SealRun::Start,
                    SealStage::Done,
                    &SealTally::default(),
                    &master(),
                    T0,
                )
            },
        )
        .unwrap();
        assert!(done.authentic(&master()));
        // The insider: raises the payer's limits by hand (no MAC) and deletes the marker.
        let loaded = Loaded::<AccountRecord>::read(&mut world.store, &key_of(PAYER)).unwrap();
        let mut changed = loaded.value.clone().unwrap();
        changed.settings_mac = [0; 32];
        changed.always_callback = false;
        let mut effects = Effects::new();
        effects.write(loaded.write(&changed).unwrap());
        let marker = load_marker(&mut world.store).unwrap();
        effects.write(marker.delete());
        assert!(commit(&mut world.store, effects, T0));

        let survey = survey_all(&mut world.store);
        assert_eq!((survey.accounts, survey.authentic), (1, 1));
        let plan = start_plan(None, &survey, &master(), T0);
        let StartPlan::Refuse { reason } = plan else {
            panic!("sealed a record the insider wrote: {plan:?}");
        };
        assert!(reason.contains("1 records without a MAC"), "{reason}");
        // A marker he writes by hand is not believed either.
        let forged = SealedMarker::new(
            SealRun::Start,
            SealStage::Sealing,
            T0.0,
            &SealTally::default(),
        );
        assert!(!forged.authentic(&master()));
        assert!(matches!(
            start_plan(Some(&forged), &survey, &master(), T0),
            StartPlan::Refuse { .. }
        ));
    }

    #[test]
    fn an_interrupted_sealing_resumes_only_soon_after_it_began() {
        let mut world = World::new();
        strip_macs(&mut world.store);
        let marker = load_marker(&mut world.store).unwrap();
        let begun = run(
            &mut world.store,
            T0,
            |_| (),
            |()| {
                decide_marker(
                    &marker,
                    SealRun::Start,
                    SealStage::Sealing,
                    &SealTally::default(),
                    &master(),
                    T0,
                )
            },
        )
        .unwrap();
        // Half the accounts were sealed before the crash.
        let page = load_page(&mut world.store, ACCOUNT_PREFIX, None).unwrap();
        let half = SealPage {
            records: page.records[..1].to_vec(),
            last_key: None,
            full: false,
        };
        run(
            &mut world.store,
            T0,
            |_| half.clone(),
            |page| decide_page(&page, &master()),
        )
        .unwrap();
        let survey = survey_all(&mut world.store);
        assert_eq!((survey.accounts, survey.authentic), (1, 1));
        let soon = Timestamp(T0.0 + RESUME_WINDOW_MS);
        assert_eq!(
            start_plan(Some(&begun), &survey, &master(), soon),
            StartPlan::Seal
        );
        let late = Timestamp(soon.0 + 1);
        assert!(matches!(
            start_plan(Some(&begun), &survey, &master(), late),
            StartPlan::Refuse { .. }
        ));
    }

    /// A record whose MAC is present and wrong was changed after it was sealed: no sealing, at
    /// start or forced, makes it authentic.
    #[test]
    fn a_record_with_a_wrong_mac_is_never_sealed() {
        let mut world = World::new();
        let loaded = Loaded::<AccountRecord>::read(&mut world.store, &key_of(PAYER)).unwrap();
        let mut changed = loaded.value.clone().unwrap();
        changed.settings_mac = [9; 32];
        let mut effects = Effects::new();
        effects.write(loaded.write(&changed).unwrap());
        assert!(commit(&mut world.store, effects, T0));
        let tally = seal_all(&mut world.store);
        assert_eq!((tally.mismatched, tally.accounts), (1, 0));
        assert_eq!(tally.mismatched_keys, vec![key_of(PAYER)]);
        assert!(!account(&mut world.store, PAYER).settings_authentic(&master(), &key_of(PAYER)));
    }

    fn strip_windows(store: &mut MemoryStore, only: Option<&str>) {
        let page =
            load_phase_page(store, SealPhase::SpendingWindows, ACCOUNT_PREFIX, None).unwrap();
        let mut effects = Effects::new();
        for record in page.records {
            if let MacRecord::Window(loaded) = record
                && only.is_none_or(|receive| loaded.key == key_of(receive))
            {
                let mut account = loaded.value.clone().unwrap();
                account.spending_mac = [0; 32];
                effects.write(loaded.write(&account).unwrap());
            }
        }
        assert!(commit(store, effects, T0));
    }

    fn survey_windows(store: &mut MemoryStore) -> SealTally {
        survey(
            &load_phase_page(store, SealPhase::SpendingWindows, ACCOUNT_PREFIX, None).unwrap(),
            &master(),
        )
    }

    /// A database of the release before the window's MAC: settings sealed, no window sealed.
    /// Those accounts pay nothing until the start seals the windows (its own phase and marker),
    /// then pay again; a window whose MAC was removed beside sealed ones is not sealed.
    #[test]
    fn spending_windows_of_the_release_before_are_sealed_in_their_own_phase() {
        let mut world = World::new();
        strip_windows(&mut world.store, None);
        // The records phase is done (its marker written by that release).
        assert_eq!(survey_all(&mut world.store).missing(), 0);
        let survey = survey_windows(&mut world.store);
        assert_eq!((survey.windows, survey.authentic), (2, 0));
        assert_eq!(
            start_phase_plan(SealPhase::SpendingWindows, None, &survey, &master(), T0),
            StartPlan::Seal
        );
        let text = world.low(PAYEE, "100", 1);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Refused
        );
        let page = load_phase_page(
            &mut world.store,
            SealPhase::SpendingWindows,
            ACCOUNT_PREFIX,
            None,
        )
        .unwrap();
        let sealed = run(
            &mut world.store,
            T0,
            |_| page.clone(),
            |page| decide_page(&page, &master()),
        )
        .unwrap();
        assert_eq!(sealed.windows, 2);
        let text = world.low(PAYEE, "100", 2);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Accepted
        );
        assert_eq!(world.balance(PAYEE), 10_000);
        // The window moved and was resealed with the payment.
        assert!(account(&mut world.store, PAYER).spending_authentic(&master(), &key_of(PAYER)));
        // Its marker is its own: the records phase's marker does not stand for it.
        let marker = load_phase_marker(&mut world.store, SealPhase::SpendingWindows).unwrap();
        let done = run(
            &mut world.store,
            T0,
            |_| (),
            |()| {
                decide_phase_marker(
                    &marker,
                    SealPhase::SpendingWindows,
                    SealRun::Start,
                    SealStage::Done,
                    &sealed,
                    &master(),
                    T0,
                )
            },
        )
        .unwrap();
        assert!(done.authentic_for(&master(), SealPhase::SpendingWindows));
        assert!(!done.authentic_for(&master(), SealPhase::Records));
        // An insider resets one window, removes its MAC and the marker: nothing is sealed.
        strip_windows(&mut world.store, Some(PAYER));
        let survey = survey_windows(&mut world.store);
        assert_eq!((survey.windows, survey.authentic), (1, 1));
        assert!(matches!(
            start_phase_plan(SealPhase::SpendingWindows, None, &survey, &master(), T0),
            StartPlan::Refuse { .. }
        ));
    }

    #[test]
    fn pages_cover_every_record() {
        let mut world = World::new();
        for index in 0..(SEAL_PAGE_RECORDS + 3) {
            world.open(&std::format!("5{index:011}"), None, None);
        }
        strip_macs_everywhere(&mut world.store);
        let tally = seal_all(&mut world.store);
        assert_eq!(tally.accounts, SEAL_PAGE_RECORDS as u64 + 5);
        assert_eq!(survey_all(&mut world.store).missing(), 0);
    }

    fn strip_macs_everywhere(store: &mut MemoryStore) {
        let mut after: Option<String> = None;
        loop {
            let page = load_page(store, ACCOUNT_PREFIX, after.as_deref()).unwrap();
            let mut effects = Effects::new();
            for record in &page.records {
                if let MacRecord::Account(loaded) = record {
                    let mut account = loaded.value.clone().unwrap();
                    account.settings_mac = [0; 32];
                    effects.write(loaded.write(&account).unwrap());
                }
            }
            assert!(commit(store, effects, T0));
            if !page.full {
                break;
            }
            after = page.last_key;
        }
    }
}
