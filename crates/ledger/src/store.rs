//! The storage contract every ledger backend implements.

use core::time::Duration;

use crate::engine::{Changes, GroupCommit, References, SequenceNumbers, Snapshot};
use crate::ids::{AccountId, TransferId};
use crate::model::{
    Account, Batch, BatchRefusal, CurrencyTotal, Outcome, Record, Timestamp, TransferRecord,
};

/// What a group commit returns: for each batch, in order, its outcomes or why it was refused.
pub type GroupResult = Vec<Result<Vec<Outcome>, BatchRefusal>>;

/// A place the ledger lives: SQLite, PostgreSQL, memory ([`crate::MemoryStore`]), or anything
/// that passes the conformance suite (`offpay_ledger::conformance`, behind the `conformance`
/// feature).
///
/// # Contract
/// - **Atomicity.** [`LedgerStore::commit`] decides each batch with [`GroupCommit`]; a refused
///   batch writes nothing, and an accepted batch is written whole, together with its records.
/// - **Ordering.** Batches are decided in the order given; each sees the effects of the accepted
///   batches before it. A transfer's sequence number is unique and larger than that of every
///   transfer committed before it on the same account, so an account's history is in sequence
///   order. Across accounts, numbers are in commit order and without gaps only where the store
///   serialises its committers (SQLite, memory); PostgreSQL draws them from a database sequence
///   after locking the group's accounts, so unrelated groups commit at once and may leave gaps.
/// - **Durability.** When `commit` returns `Ok`, every accepted batch is on stable storage (for
///   SQLite: WAL with `synchronous=FULL`, so a power cut after the return loses nothing; for
///   PostgreSQL: the commit has been flushed as `synchronous_commit` demands, `on` by default).
///   When it returns `Err`, nothing of the group was committed, and the caller may retry: the same
///   transfer ids post once.
/// - **Isolation.** Concurrent committers (several processes on one PostgreSQL database) behave
///   as if serialised: groups that touch the same account or record wait for each other, and a
///   race to create the same account, transfer or record is decided again by the loser. Readers
///   see only whole groups.
pub trait LedgerStore: Send {
    /// The backend's name: `"sqlite"`, `"postgres"` or `"memory"`.
    fn backend(&self) -> &'static str;

    /// Commits `batches` as one group, durably, with one flush to disk.
    fn commit(&mut self, batches: &[Batch], now: Timestamp) -> Result<GroupResult, StoreError>;

    /// For a backend that decides groups on rows it already knows, without loading them (and
    /// has its write check them: PostgreSQL), how many groups it committed that way and how many
    /// such writes met rows changed meanwhile; `None` for the others.
    fn known_groups(&self) -> Option<KnownGroups> {
        None
    }

    /// One account.
    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    /// Accounts in id order after `after`, at most `limit` (capped at
    /// [`crate::model::RECORD_PAGE_MAX`]).
    fn accounts(
        &mut self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError>;

    /// One transfer.
    fn transfer(&mut self, id: &TransferId) -> Result<Option<TransferRecord>, StoreError>;

    /// Transfers that debit or credit `account`, newest first, at most `limit` (capped at
    /// [`crate::model::HISTORY_PAGE_MAX`]). With `before`, the page continues from the entry with
    /// that sequence number (the last entry of the previous page) and holds only older ones; a
    /// `before` that is not an entry of this account's history gives an empty page.
    ///
    /// Backends walk the chain of [`TransferRecord::debit_previous`] /
    /// [`TransferRecord::credit_previous`] from [`Account::last_sequence`], so writing a transfer
    /// never updates a secondary index on accounts.
    fn history(
        &mut self,
        account: &AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, StoreError>;

    /// Per-currency sums over all accounts.
    fn totals(&mut self) -> Result<Vec<CurrencyTotal>, StoreError>;

    /// One record.
    fn record(&mut self, namespace: &str, key: &str) -> Result<Option<Record>, StoreError>;

    /// Records of `namespace` whose key starts with `key_prefix`, in key order after `after_key`,
    /// at most `limit` (capped at [`crate::model::RECORD_PAGE_MAX`]).
    fn records(
        &mut self,
        namespace: &str,
        key_prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Runs `reads` in one read-only transaction: every read in it sees the same committed
    /// state, whatever other connections commit meanwhile (SQLite: a deferred transaction on a
    /// WAL database; PostgreSQL: `REPEATABLE READ READ ONLY`). Lets a connection other than the
    /// writer's answer reads that need several queries, such as a balance together with the
    /// records that explain it. Must not be called inside [`LedgerStore::commit`] or itself.
    fn read_transaction(
        &mut self,
        reads: &mut dyn FnMut(&mut dyn LedgerStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// The schema version the database is at and the one this build migrates it to, read from
    /// the database now (a readiness check: another process may have migrated it since this one
    /// opened it). `None` for a store without migrations (memory).
    fn schema_versions(&mut self) -> Result<Option<SchemaVersions>, StoreError> {
        Ok(None)
    }

    /// Takes the lock called `name`, shared by every process using this database (and schema),
    /// for this connection, waiting for it at most `wait`: `Ok(false)` if another connection
    /// still held it then. The lock only spares processes work that would conflict (such as
    /// appending to one hash chain); what they write stays guarded by conditional writes, so a
    /// lock not taken (or lost with its connection) costs a retry, never a wrong write. Stores
    /// one process owns (SQLite, memory) have nothing to take: `Ok(true)`.
    fn lock_shared_name(&mut self, name: &str, wait: Duration) -> Result<bool, StoreError> {
        let _ = (name, wait);
        Ok(true)
    }

    /// Gives back a lock [`LedgerStore::lock_shared_name`] took on this connection.
    fn unlock_shared_name(&mut self, name: &str) -> Result<(), StoreError> {
        let _ = name;
        Ok(())
    }
}

/// A store's schema version and this build's ([`LedgerStore::schema_versions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaVersions {
    /// The newest migration the database has applied.
    pub database: u64,
    /// The newest migration this build knows.
    pub build: u64,
}

impl SchemaVersions {
    /// Whether the database is at exactly this build's version.
    pub fn current(&self) -> bool {
        self.database == self.build
    }
}

/// The steps of one group commit inside a backend's database transaction. [`run_group`] drives
/// them so that every backend decides batches the same way.
pub trait GroupTransaction {
    /// Loads the stored state of everything `references` names, and holds what it loaded against
    /// other committers until the transaction ends (a store that serialises its committers
    /// already does; PostgreSQL locks the rows).
    fn load(&mut self, references: &References) -> Result<Snapshot, StoreError>;
    /// Sequence numbers for `count` new transfers, called after [`GroupTransaction::load`]: each
    /// must be larger than every number already given to a transfer on the accounts loaded.
    fn sequence_numbers(&mut self, count: usize) -> Result<SequenceNumbers, StoreError>;
    /// Writes `changes`.
    fn write(&mut self, changes: &Changes) -> Result<(), StoreError>;
}

/// Decides `batches` against what `transaction` loads and writes the result. The caller commits
/// the database transaction afterwards (or rolls back on `Err`).
pub fn run_group(
    transaction: &mut impl GroupTransaction,
    batches: &[Batch],
    now: Timestamp,
) -> Result<GroupResult, StoreError> {
    let references = References::of(batches);
    let snapshot = transaction.load(&references)?;
    let sequences = transaction.sequence_numbers(references.transfer_operations)?;
    if !sequences.holds(references.transfer_operations) {
        return Err(StoreError::Corrupt(format!(
            "the store gave {} transfers too few sequence numbers",
            references.transfer_operations
        )));
    }
    let mut group = GroupCommit::new(snapshot, sequences, now);
    let results: GroupResult = batches.iter().map(|batch| group.apply(batch)).collect();
    let changes = group.finish();
    if !changes.is_empty() {
        transaction.write(&changes)?;
    }
    Ok(results)
}

/// What [`LedgerStore::known_groups`] counts, since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnownGroups {
    /// Groups committed on known rows, in one round trip.
    pub committed: u64,
    /// Writes of such groups that met a row changed meanwhile: rolled back, and the group decided
    /// again on loaded rows.
    pub stale: u64,
}

/// Checks that every currency's balances sum to zero.
pub fn verify_conservation(store: &mut dyn LedgerStore) -> Result<Vec<CurrencyTotal>, StoreError> {
    let totals = store.totals()?;
    if let Some(broken) = totals.iter().find(|total| !total.balanced()) {
        return Err(StoreError::ConservationBroken {
            currency: broken.currency.code().to_owned(),
            posted_sum: broken.posted_sum,
            pending_sum: broken.pending_sum,
        });
    }
    Ok(totals)
}

/// A storage failure (not a refused batch: those are [`BatchRefusal`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("database error: {0}")]
    Database(String),
    /// The schema is missing, too new, or could not be migrated.
    #[error("schema error: {0}")]
    Schema(String),
    /// Stored data does not parse: the database was edited by hand or is damaged.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The sums of balances are not zero.
    #[error(
        "money conservation broken in {currency}: posted sum {posted_sum}, pending sum {pending_sum}"
    )]
    ConservationBroken {
        /// Currency code.
        currency: String,
        /// Sum of posted balances.
        posted_sum: i128,
        /// Sum of pending balances.
        pending_sum: i128,
    },
}
