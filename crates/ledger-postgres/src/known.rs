//! Groups decided on what the session already knows, and checked by their own write.
//!
//! A group commit normally takes two round trips: `BEGIN` and the loads (the accounts locked, the
//! transfers named, the records' versions), then the write with `COMMIT` behind it. Most groups
//! touch rows this session has just loaded or written itself (a server's accounts, its audit
//! chain's head, its callers' user records), so the store keeps what it last saw of them
//! ([`Known`]) and decides such a group on that, with no load: `BEGIN`, the write and `COMMIT` go
//! in one round trip.
//!
//! What the session knows may be stale: another process (or a database administrator) may have
//! changed a row since. So nothing known decides money unchecked. The write
//! (`Statements::write_known`) carries, beside each change, the state the group was decided on,
//! and changes a row only where it still holds it:
//! - an account is updated only if every column the engine read (limits, the four sums, the last
//!   sequence) is still as known, under the row's lock;
//! - a record is updated or deleted only at the version known; a record only checked
//!   (`CheckRecord`) must still be at that version, locked as the loads would lock it; one
//!   believed absent must still be absent, and one inserted must not exist (its key is unique);
//! - a transfer id believed new is inserted, so an existing one fails on its unique key.
//!
//! If any row is not as known, the statement fails, the `COMMIT` behind it rolls the group back,
//! everything known is forgotten, and the group is decided again the usual way, on loaded rows.
//! Only groups whose every decision the write can check go this way ([`Known::plan`]): each
//! account they name is updated, each transfer they name is created, every batch is accepted.
//! Anything else (a refusal, a new account, a pending transfer resolved, an idempotent repeat
//! that would only read) takes the usual path, which is exact.
//!
//! Sequence numbers: the usual path draws them after locking the accounts, so that each is larger
//! than every number already on those accounts. A known group draws none: each write also draws a
//! few spare numbers for the groups after it, and a known group uses them only if the smallest is
//! larger than every known last sequence of its accounts. Those last sequences are checked by the
//! write under the rows' locks, so the spare numbers are larger than every transfer on the
//! accounts when it commits, as the usual path guarantees. Unused spare numbers leave gaps, as
//! rolled-back groups always did.
//!
//! After a write that met stale rows, the session goes the usual way for a while (8 groups, then
//! twice as many after each further miss, up to [`BACKOFF_GROUPS_MAX`]): several processes writing
//! the same rows then pay a wasted round trip only now and then.

use std::collections::{HashMap, HashSet};

use offpay_ledger::engine::{
    Changes, GroupCommit, RecordKey, References, SequenceNumbers, Snapshot,
};
use offpay_ledger::{Account, AccountId, Batch, GroupResult, Operation, Timestamp};

/// Most accounts, and most records, a session keeps; past that it forgets them all and learns
/// again (a server touches its hot rows again soon).
pub const KNOWN_ROWS_MAX: usize = 100_000;
/// Most spare sequence numbers a write draws for the groups after it.
pub const SPARE_NUMBERS_MAX: usize = 16_384;
/// The longest run of groups sent the usual way after a stale write.
pub const BACKOFF_GROUPS_MAX: u64 = 4_096;
/// The first run of groups sent the usual way after a stale write.
const BACKOFF_GROUPS_FIRST: u64 = 8;

/// What a session last saw of the rows it loaded and wrote.
#[derive(Debug, Default)]
pub(crate) struct Known {
    accounts: HashMap<AccountId, Account>,
    /// Record versions (0: absent when last seen).
    records: HashMap<RecordKey, u64>,
    /// Sequence numbers drawn and not yet used, ascending.
    spare: Vec<u64>,
    /// Groups still to send the usual way before trying the known way again.
    skip: u64,
    /// The length of the last such run (0 after a known group committed).
    backoff: u64,
    /// Groups committed the known way, and known writes that met stale rows (for tests and
    /// figures).
    pub(crate) committed: u64,
    pub(crate) stale: u64,
}

/// What a group sent the usual way loaded and wrote: learned once it commits.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    pub(crate) accounts: Vec<Account>,
    pub(crate) records: Vec<(RecordKey, u64)>,
    /// The spare numbers its write drew (none if it wrote nothing).
    pub(crate) spare: Option<Vec<u64>>,
}

/// A group decided on known rows, with what its write must find.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) results: GroupResult,
    pub(crate) changes: Changes,
    /// The accounts as the group found them, in the order of `changes.accounts_updated`
    /// (ascending id, the order the usual path locks them in).
    pub(crate) accounts_before: Vec<Account>,
    /// Records written with a value: inserted (not known to exist) ...
    pub(crate) inserted: Vec<usize>,
    /// ... or updated from the version known (index into `changes.records`, version).
    pub(crate) updated: Vec<(usize, u64)>,
    /// Records deleted at the version known.
    pub(crate) deleted: Vec<(usize, u64)>,
    /// Records only checked, at the version known (> 0).
    pub(crate) held: Vec<(RecordKey, u64)>,
    /// Records that must be absent (checked at 0, or deleted though not known to exist).
    pub(crate) absent: Vec<RecordKey>,
    /// How many spare numbers the write draws.
    pub(crate) spare_wanted: usize,
}

/// How many spare numbers a write of a group of `transfers` transfers draws in all: enough for a
/// group twice its size.
pub(crate) fn spare_target(transfers: usize) -> usize {
    transfers
        .saturating_mul(2)
        .saturating_add(4)
        .min(SPARE_NUMBERS_MAX)
}

/// The transfer operations of `batches`.
pub(crate) fn transfer_operations(batches: &[Batch]) -> usize {
    batches
        .iter()
        .flat_map(|batch| &batch.operations)
        .filter(|operation| matches!(operation, Operation::Transfer(_)))
        .count()
}

impl Known {
    /// Decides `batches` on what is known, if it knows enough and the write can check every
    /// decision; `None` sends the group the usual way.
    pub(crate) fn plan(&mut self, batches: &[Batch], now: Timestamp) -> Option<Plan> {
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let references = References::of(batches);
        let mut snapshot = Snapshot::default();
        let mut highest = 0;
        for id in &references.accounts {
            let account = self.accounts.get(id)?;
            highest = highest.max(account.last_sequence);
            snapshot.accounts.insert(id.clone(), account.clone());
        }
        let known_version = |key: &RecordKey| self.records.get(key).copied().unwrap_or(0);
        for key in &references.records {
            let version = known_version(key);
            if version > 0 {
                snapshot.record_versions.insert(key.clone(), version);
            }
        }
        // Transfers are never known: every one named is taken as new, which the insert checks.
        let needed = references.transfer_operations;
        if self.spare.len() < needed || (needed > 0 && self.spare[0] <= highest) {
            return None;
        }
        let numbers = SequenceNumbers::drawn(self.spare[..needed].to_vec());
        let mut group = GroupCommit::new(snapshot, numbers, now);
        let results: GroupResult = batches.iter().map(|batch| group.apply(batch)).collect();
        if results.iter().any(Result::is_err) {
            return None;
        }
        let mut changes = group.finish();
        if changes.is_empty()
            || !changes.accounts_created.is_empty()
            || !changes.pending_resolved.is_empty()
            // Every account named is updated (so checked), every transfer named is created.
            || changes.accounts_updated.len() != references.accounts.len()
            || changes.transfers_created.len() != references.transfers.len()
        {
            return None;
        }
        changes
            .accounts_updated
            .sort_unstable_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        changes.records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let accounts_before = changes
            .accounts_updated
            .iter()
            .map(|account| self.accounts.get(&account.id).cloned())
            .collect::<Option<Vec<Account>>>()?;
        let mut plan = Plan {
            results,
            accounts_before,
            inserted: Vec::new(),
            updated: Vec::new(),
            deleted: Vec::new(),
            held: Vec::new(),
            absent: Vec::new(),
            spare_wanted: spare_target(needed)
                .saturating_sub(self.spare.len() - changes.transfers_created.len()),
            changes,
        };
        let mut written = HashSet::with_capacity(plan.changes.records.len());
        for (index, (key, value, _)) in plan.changes.records.iter().enumerate() {
            written.insert(key);
            let version = known_version(key);
            match (value.is_some(), version) {
                (true, 0) => plan.inserted.push(index),
                (true, version) => plan.updated.push((index, version)),
                (false, 0) => plan.absent.push(key.clone()),
                (false, version) => plan.deleted.push((index, version)),
            }
        }
        let mut checked: Vec<&RecordKey> = references
            .records
            .iter()
            .filter(|key| !written.contains(key))
            .collect();
        checked.sort_unstable();
        for key in checked {
            match known_version(key) {
                0 => plan.absent.push(key.clone()),
                version => plan.held.push((key.clone(), version)),
            }
        }
        Some(plan)
    }

    /// A known group committed: what it wrote is now known, and `spare` (drawn by its write)
    /// joins the spare numbers it left.
    pub(crate) fn committed(&mut self, plan: Plan, spare: Vec<u64>) -> GroupResult {
        let Plan {
            results, changes, ..
        } = plan;
        let used: HashSet<u64> = changes
            .transfers_created
            .iter()
            .map(|record| record.sequence)
            .collect();
        self.spare.retain(|number| !used.contains(number));
        self.spare.extend(spare);
        self.spare.sort_unstable();
        self.remember(
            changes.accounts_updated,
            changes
                .records
                .into_iter()
                .map(|(key, _, version)| (key, version)),
        );
        self.committed += 1;
        self.backoff = 0;
        results
    }

    /// A known group's write met a row not as known, and was rolled back: forget everything and
    /// go the usual way for a while.
    pub(crate) fn met_stale(&mut self) {
        self.forget();
        self.stale += 1;
        self.backoff = (self.backoff * 2).clamp(BACKOFF_GROUPS_FIRST, BACKOFF_GROUPS_MAX);
        self.skip = self.backoff;
    }

    /// A group sent the usual way committed: learn what it loaded and wrote.
    pub(crate) fn learn(&mut self, learned: Learned) {
        if let Some(spare) = learned.spare {
            // Drawn after the group's own numbers: larger than any number on its accounts. The
            // numbers kept from before may not be, so they go.
            self.spare = spare;
            self.spare.sort_unstable();
        }
        self.remember(learned.accounts, learned.records);
    }

    /// A commit failed, or its outcome is unknown: nothing known can be trusted.
    pub(crate) fn forget(&mut self) {
        self.accounts.clear();
        self.records.clear();
        self.spare.clear();
    }

    fn remember(
        &mut self,
        accounts: impl IntoIterator<Item = Account>,
        records: impl IntoIterator<Item = (RecordKey, u64)>,
    ) {
        for account in accounts {
            self.accounts.insert(account.id.clone(), account);
        }
        for (key, version) in records {
            self.records.insert(key, version);
        }
        if self.accounts.len() > KNOWN_ROWS_MAX {
            self.accounts.clear();
        }
        if self.records.len() > KNOWN_ROWS_MAX {
            self.records.clear();
        }
    }
}
