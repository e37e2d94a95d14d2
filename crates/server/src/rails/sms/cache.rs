//! The server's read cache of envelope and account records, so the common path reads only the
//! payer's balance from the database. What it may answer is the rail's rule
//! (`offpay_sms_tan::operator::load`): only records every money-moving decision writes back
//! conditionally, so a stale entry makes a commit fail, never a payment on stale data; a retried
//! decision reads around the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offpay_ledger::Timestamp;
use offpay_operator::{Clock, Loaded};
use offpay_sms_tan::operator::apply::Written;
use offpay_sms_tan::operator::load::ReadCache;
use offpay_sms_tan::operator::records::{AccountRecord, EnvelopeRecord};

/// Most envelope and account records kept in memory.
pub const CACHE_ENTRIES_MAX: usize = 200_000;
/// How long a cached record is trusted. The TTL bounds how long another server process's changes
/// to a record this one reads can go unseen before a commit finds them.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Cached {
    Envelope(EnvelopeRecord),
    // Boxed: accounts are several times the size of envelopes, and the map holds many of both.
    Account(Box<AccountRecord>),
}

/// Envelope and account records with their versions, kept after reads and commits of this process.
#[derive(Debug)]
pub struct RecordCache {
    entries: Mutex<HashMap<String, (Cached, u64, Timestamp)>>,
    clock: Arc<dyn Clock>,
}

impl RecordCache {
    /// An empty cache whose entries age by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> RecordCache {
        RecordCache {
            entries: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn lookup(&self, key: &str) -> Option<(Cached, u64)> {
        let entries = self.entries.lock().ok()?;
        let (value, version, stored_at) = entries.get(key)?;
        let age_ms = self.clock.now().0.saturating_sub(stored_at.0);
        (u128::from(age_ms) < CACHE_TTL.as_millis()).then(|| (value.clone(), *version))
    }

    fn insert(&self, key: String, value: Cached, version: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_ENTRIES_MAX {
                entries.clear();
            }
            entries.insert(key, (value, version, self.clock.now()));
        }
    }

    /// Forgets `keys` (records written outside the SMS decisions, e.g. by the operator API).
    pub fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut entries) = self.entries.lock() {
            for key in keys {
                entries.remove(key);
            }
        }
    }

    /// Keeps what a committed decision wrote.
    pub fn keep_written(&self, written: &Written) {
        for loaded in &written.envelopes {
            self.keep_envelope(loaded);
        }
        for loaded in &written.accounts {
            self.keep_account(loaded);
        }
    }
}

/// The cache as a decision made again after a refused commit reads through it: it answers nothing
/// (the store decides) but keeps what was read, so the stale entry that caused the refusal is
/// replaced.
#[derive(Debug)]
pub struct Refreshing(pub Arc<RecordCache>);

impl ReadCache for Refreshing {
    fn envelope(&self, _key: &str) -> Option<Loaded<EnvelopeRecord>> {
        None
    }

    fn account(&self, _key: &str) -> Option<Loaded<AccountRecord>> {
        None
    }

    fn keep_envelope(&self, record: &Loaded<EnvelopeRecord>) {
        self.0.keep_envelope(record);
    }

    fn keep_account(&self, record: &Loaded<AccountRecord>) {
        self.0.keep_account(record);
    }
}

impl ReadCache for RecordCache {
    fn envelope(&self, key: &str) -> Option<Loaded<EnvelopeRecord>> {
        match self.lookup(key)? {
            (Cached::Envelope(record), version) => Some(Loaded {
                key: key.to_owned(),
                version,
                value: Some(record),
            }),
            _ => None,
        }
    }

    fn account(&self, key: &str) -> Option<Loaded<AccountRecord>> {
        match self.lookup(key)? {
            (Cached::Account(record), version) => Some(Loaded {
                key: key.to_owned(),
                version,
                value: Some(*record),
            }),
            _ => None,
        }
    }

    fn keep_envelope(&self, record: &Loaded<EnvelopeRecord>) {
        if let Some(value) = &record.value {
            self.insert(
                record.key.clone(),
                Cached::Envelope(value.clone()),
                record.version,
            );
        }
    }

    fn keep_account(&self, record: &Loaded<AccountRecord>) {
        if let Some(value) = &record.value {
            self.insert(
                record.key.clone(),
                Cached::Account(Box::new(value.clone())),
                record.version,
            );
        }
    }
}
