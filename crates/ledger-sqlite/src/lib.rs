//! The offpay ledger on SQLite, the embedded default: one file next to the server, WAL journal,
//! `synchronous=FULL` (every commit is fsynced before it returns), one fsync per group commit.
//!
//! The rules are [`offpay_ledger::engine`]'s; this crate loads the rows a group refers to and
//! writes what the engine decided, inside one `BEGIN IMMEDIATE` transaction.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use offpay_ledger::engine::{Changes, References, SequenceNumbers, Snapshot};
use offpay_ledger::{
    Account, AccountId, AccountKind, Amount, BalanceLimits, Batch, Currency, CurrencyTotal,
    GroupResult, GroupTransaction, HISTORY_PAGE_MAX, LedgerStore, PendingState, RECORD_PAGE_MAX,
    Record, SchemaVersions, StoreError, Timestamp, Transfer, TransferId, TransferRecord, run_group,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_ledger.sql")];

/// How long a writer waits for another connection's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A ledger stored in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
    /// Accounts as of this connection's last commit. Loading the accounts a group touches is a
    /// large part of a commit's cost, and the writer is almost always this connection; the cache
    /// is dropped whenever `PRAGMA data_version` shows that another connection committed.
    account_cache: HashMap<AccountId, Account>,
    /// `PRAGMA data_version` when the cache was last known good.
    cache_data_version: Option<i64>,
}

/// Most accounts kept in the cache; past this it starts again empty.
pub const ACCOUNT_CACHE_MAX: usize = 1 << 18;

fn database_error(error: rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let connection = Connection::open(path).map_err(database_error)?;
        SqliteStore::configure(connection)
    }

    /// A second connection to the database file at `path`, for reads only (`PRAGMA
    /// query_only`): with WAL, it reads while the writer's connection commits. It is opened as
    /// [`SqliteStore::open`] opens one (creating and migrating the file if need be) and only
    /// then made query-only, so open the writer's connection first and keep migrations there.
    pub fn open_reader(path: &Path) -> Result<SqliteStore, StoreError> {
        let store = SqliteStore::open(path)?;
        store
            .connection
            .execute_batch("PRAGMA query_only = 1;")
            .map_err(database_error)?;
        Ok(store)
    }

    /// An in-memory database, for tests and benchmarks of the logic alone (not durable).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let connection = Connection::open_in_memory().map_err(database_error)?;
        SqliteStore::configure(connection)
    }

    fn configure(mut connection: Connection) -> Result<SqliteStore, StoreError> {
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(database_error)?;
        // WAL: readers never block the writer; synchronous=FULL: the WAL is fsynced at every
        // commit, so an acknowledged commit survives a power cut, not only a process crash.
        let journal: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(database_error)?;
        if journal != "wal" && journal != "memory" {
            return Err(StoreError::Database(format!(
                "could not switch to WAL journal (got {journal})"
            )));
        }
        connection
            .execute_batch(
                "PRAGMA synchronous = FULL;
                 PRAGMA cache_size = -65536;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA wal_autocheckpoint = 10000;",
            )
            .map_err(database_error)?;
        connection.set_prepared_statement_cache_capacity(64);
        migrate(&mut connection)?;
        Ok(SqliteStore {
            connection,
            account_cache: HashMap::new(),
            cache_data_version: None,
        })
    }

    /// The SQLite `synchronous` setting in force (2 = FULL), for tests and diagnostics.
    pub fn synchronous_level(&self) -> Result<i64, StoreError> {
        self.connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .map_err(database_error)
    }
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let schema_error = |error: rusqlite::Error| StoreError::Schema(error.to_string());
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(schema_error)?;
    transaction
        .execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .map_err(schema_error)?;
    let current: i64 = transaction
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(schema_error)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::Schema(format!(
            "the database is at schema version {current}, newer than this offpay knows ({known}); upgrade offpay"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        transaction.execute_batch(migration).map_err(schema_error)?;
        transaction
            .execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now'))", [index as i64 + 1])
            .map_err(schema_error)?;
    }
    transaction.commit().map_err(schema_error)
}

struct SqliteGroup<'a> {
    transaction: &'a rusqlite::Transaction<'a>,
    cache: &'a HashMap<AccountId, Account>,
    /// Accounts written by this group, for the cache once the commit succeeded.
    written: Vec<Account>,
}

impl GroupTransaction for SqliteGroup<'_> {
    fn sequence_numbers(&mut self, _count: usize) -> Result<SequenceNumbers, StoreError> {
        // One writer at a time (the transaction is IMMEDIATE): the counter hands out numbers
        // without gaps, in commit order.
        let next: i64 = self
            .transaction
            .query_row(
                "SELECT next_sequence FROM ledger_state WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(database_error)?;
        Ok(SequenceNumbers::From(next as u64))
    }

    fn load(&mut self, references: &References) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        let mut statement = self
            .transaction
            .prepare_cached(ACCOUNT_SELECT_BY_ID)
            .map_err(database_error)?;
        for id in &references.accounts {
            if let Some(account) = self.cache.get(id) {
                snapshot.accounts.insert(id.clone(), account.clone());
                continue;
            }
            if let Some(account) = statement
                .query_row([id.as_str()], account_from_row)
                .optional()
                .map_err(database_error)?
            {
                snapshot.accounts.insert(id.clone(), account?);
            }
        }
        let mut statement = self
            .transaction
            .prepare_cached(TRANSFER_SELECT_BY_ID)
            .map_err(database_error)?;
        for id in &references.transfers {
            if let Some(record) = statement
                .query_row([id.as_str()], transfer_from_row)
                .optional()
                .map_err(database_error)?
            {
                snapshot.transfers.insert(id.clone(), record?);
            }
        }
        let mut statement = self
            .transaction
            .prepare_cached("SELECT version FROM records WHERE namespace = ?1 AND key = ?2")
            .map_err(database_error)?;
        for key in &references.records {
            let version: Option<i64> = statement
                .query_row(params![key.0, key.1], |row| row.get(0))
                .optional()
                .map_err(database_error)?;
            if let Some(version) = version {
                snapshot.record_versions.insert(key.clone(), version as u64);
            }
        }
        Ok(snapshot)
    }

    fn write(&mut self, changes: &Changes) -> Result<(), StoreError> {
        self.written.clear();
        self.written
            .extend(changes.accounts_created.iter().cloned());
        self.written
            .extend(changes.accounts_updated.iter().cloned());
        let transaction = self.transaction;
        let mut insert = transaction
            .prepare_cached(
                "INSERT INTO accounts (id, kind, currency, exponent, balance_min, balance_max, debits_pending,
                 debits_posted, credits_pending, credits_posted, created_at, last_sequence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(database_error)?;
        for account in &changes.accounts_created {
            insert
                .execute(params![
                    account.id.as_str(),
                    account.kind.as_str(),
                    account.currency.code(),
                    account.currency.exponent(),
                    account.limits.balance_min,
                    account.limits.balance_max,
                    account.debits_pending,
                    account.debits_posted,
                    account.credits_pending,
                    account.credits_posted,
                    account.created_at.0 as i64,
                    account.last_sequence as i64,
                ])
                .map_err(database_error)?;
        }
        let mut update = transaction
            .prepare_cached(
                "UPDATE accounts SET balance_min = ?2, balance_max = ?3, debits_pending = ?4, debits_posted = ?5,
                 credits_pending = ?6, credits_posted = ?7, last_sequence = ?8 WHERE id = ?1",
            )
            .map_err(database_error)?;
        for account in &changes.accounts_updated {
            let updated = update
                .execute(params![
                    account.id.as_str(),
                    account.limits.balance_min,
                    account.limits.balance_max,
                    account.debits_pending,
                    account.debits_posted,
                    account.credits_pending,
                    account.credits_posted,
                    account.last_sequence as i64,
                ])
                .map_err(database_error)?;
            if updated != 1 {
                return Err(StoreError::Corrupt(format!(
                    "account {} vanished during a commit",
                    account.id
                )));
            }
        }
        let mut insert = transaction
            .prepare_cached(
                "INSERT INTO transfers (sequence, id, debit_account, credit_account, amount, currency, kind,
                 pending_id, pending_state, memo, committed_at, debit_previous, credit_previous)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(database_error)?;
        for record in &changes.transfers_created {
            let transfer = &record.transfer;
            let (kind, pending_id) = offpay_ledger::columns::transfer_kind_columns(&transfer.kind);
            insert
                .execute(params![
                    record.sequence as i64,
                    transfer.id.as_str(),
                    transfer.debit_account.as_str(),
                    transfer.credit_account.as_str(),
                    transfer.amount.minor_signed(),
                    transfer.amount.currency().code(),
                    kind,
                    pending_id,
                    record.pending_state.map(PendingState::as_str),
                    transfer.memo,
                    record.committed_at.0 as i64,
                    record.debit_previous as i64,
                    record.credit_previous as i64,
                ])
                .map_err(database_error)?;
        }
        let mut resolve = transaction
            .prepare_cached("UPDATE transfers SET pending_state = ?2 WHERE id = ?1")
            .map_err(database_error)?;
        for (id, state) in &changes.pending_resolved {
            resolve
                .execute(params![id.as_str(), state.as_str()])
                .map_err(database_error)?;
        }
        let mut upsert = transaction
            .prepare_cached(
                "INSERT INTO records (namespace, key, value, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, version = excluded.version",
            )
            .map_err(database_error)?;
        let mut delete = transaction
            .prepare_cached("DELETE FROM records WHERE namespace = ?1 AND key = ?2")
            .map_err(database_error)?;
        for ((namespace, key), value, version) in &changes.records {
            match value {
                Some(value) => upsert.execute(params![namespace, key, value, *version as i64]),
                None => delete.execute(params![namespace, key]),
            }
            .map_err(database_error)?;
        }
        transaction
            .execute(
                "UPDATE ledger_state SET next_sequence = ?1 WHERE id = 1",
                [changes.next_sequence as i64],
            )
            .map_err(database_error)?;
        Ok(())
    }
}

const ACCOUNT_COLUMNS: &str = "id, kind, currency, exponent, balance_min, balance_max, debits_pending, \
     debits_posted, credits_pending, credits_posted, created_at, last_sequence";
const ACCOUNT_SELECT_BY_ID: &str = "SELECT id, kind, currency, exponent, balance_min, balance_max, \
     debits_pending, debits_posted, credits_pending, credits_posted, created_at, last_sequence \
     FROM accounts WHERE id = ?1";
const TRANSFER_SELECT_BY_ID: &str = "SELECT sequence, id, debit_account, credit_account, amount, \
     currency, kind, pending_id, pending_state, memo, committed_at, debit_previous, credit_previous \
     FROM transfers WHERE id = ?1";
/// An account's history: the chain of previous-pointers from a starting sequence, at most ?3
/// links, newest first.
const HISTORY_CHAIN: &str = "WITH RECURSIVE chain(sequence, depth) AS (
         SELECT ?2, 1 WHERE ?2 > 0
         UNION ALL
         SELECT CASE WHEN t.debit_account = ?1 THEN t.debit_previous ELSE t.credit_previous END,
                chain.depth + 1
         FROM chain JOIN transfers t ON t.sequence = chain.sequence
         WHERE chain.depth < ?3
     )
     SELECT t.sequence, t.id, t.debit_account, t.credit_account, t.amount, t.currency, t.kind,
            t.pending_id, t.pending_state, t.memo, t.committed_at, t.debit_previous, t.credit_previous
     FROM chain JOIN transfers t ON t.sequence = chain.sequence
     ORDER BY t.sequence DESC";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Reads an account row; the outer `Result` is SQLite's, the inner one says whether the row makes
/// sense.
fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Account, StoreError>> {
    let id: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let currency: String = row.get(2)?;
    let exponent: u8 = row.get(3)?;
    let created_at: i64 = row.get(10)?;
    let last_sequence: i64 = row.get(11)?;
    let limits = BalanceLimits {
        balance_min: row.get(4)?,
        balance_max: row.get(5)?,
    };
    let sums: [i64; 4] = [row.get(6)?, row.get(7)?, row.get(8)?, row.get(9)?];
    Ok((|| {
        Ok(Account {
            id: AccountId::new(id).map_err(corrupt)?,
            kind: AccountKind::parse(&kind)
                .ok_or_else(|| corrupt(format!("unknown account kind {kind:?}")))?,
            currency: Currency::new(&currency, exponent).map_err(corrupt)?,
            limits,
            debits_pending: sums[0],
            debits_posted: sums[1],
            credits_pending: sums[2],
            credits_posted: sums[3],
            created_at: Timestamp(created_at as u64),
            last_sequence: last_sequence as u64,
        })
    })())
}

fn transfer_from_row(row: &Row<'_>) -> rusqlite::Result<Result<TransferRecord, StoreError>> {
    let sequence: i64 = row.get(0)?;
    let id: String = row.get(1)?;
    let debit: String = row.get(2)?;
    let credit: String = row.get(3)?;
    let amount: i64 = row.get(4)?;
    let currency: String = row.get(5)?;
    let kind: String = row.get(6)?;
    let pending_id: Option<String> = row.get(7)?;
    let pending_state: Option<String> = row.get(8)?;
    let memo: String = row.get(9)?;
    let committed_at: i64 = row.get(10)?;
    let debit_previous: i64 = row.get(11)?;
    let credit_previous: i64 = row.get(12)?;
    Ok((|| {
        let currency = Currency::from_code(&currency)
            .map_err(|error| corrupt(format!("transfer {id}: currency {currency:?}: {error}")))?;
        let kind = offpay_ledger::columns::transfer_kind_from_columns(&id, &kind, pending_id)?;
        let pending_state = offpay_ledger::columns::pending_state_from_column(&id, pending_state)?;
        Ok(TransferRecord {
            transfer: Transfer {
                amount: Amount::from_minor(amount as u64, currency).map_err(corrupt)?,
                id: TransferId::new(id).map_err(corrupt)?,
                debit_account: AccountId::new(debit).map_err(corrupt)?,
                credit_account: AccountId::new(credit).map_err(corrupt)?,
                kind,
                memo,
            },
            pending_state,
            sequence: sequence as u64,
            committed_at: Timestamp(committed_at as u64),
            debit_previous: debit_previous as u64,
            credit_previous: credit_previous as u64,
        })
    })())
}

fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    rows.map(|row| row.map_err(database_error).and_then(|parsed| parsed))
        .collect()
}

impl LedgerStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn commit(&mut self, batches: &[Batch], now: Timestamp) -> Result<GroupResult, StoreError> {
        let SqliteStore {
            connection,
            account_cache,
            cache_data_version,
        } = self;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(database_error)?;
        // Under the write lock: if another connection committed since our last commit, what the
        // cache holds may be stale.
        let data_version: i64 = transaction
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .map_err(database_error)?;
        if *cache_data_version != Some(data_version) {
            account_cache.clear();
        }
        let mut group = SqliteGroup {
            transaction: &transaction,
            cache: account_cache,
            written: Vec::new(),
        };
        let outcome = run_group(&mut group, batches, now);
        let written = std::mem::take(&mut group.written);
        let results = match outcome.and_then(|results| {
            transaction.commit().map_err(database_error)?;
            Ok(results)
        }) {
            Ok(results) => results,
            Err(error) => {
                account_cache.clear();
                *cache_data_version = None;
                return Err(error);
            }
        };
        if account_cache.len() + written.len() > ACCOUNT_CACHE_MAX {
            account_cache.clear();
        }
        for account in written {
            account_cache.insert(account.id.clone(), account);
        }
        *cache_data_version = Some(data_version);
        Ok(results)
    }

    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(ACCOUNT_SELECT_BY_ID)
            .map_err(database_error)?;
        statement
            .query_row([id.as_str()], account_from_row)
            .optional()
            .map_err(database_error)?
            .transpose()
    }

    fn accounts(
        &mut self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let limit = limit.min(RECORD_PAGE_MAX) as i64;
        let mut statement = self
            .connection
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(database_error)?;
        let rows = statement
            .query_map(
                params![after.map_or("", AccountId::as_str), limit],
                account_from_row,
            )
            .map_err(database_error)?;
        collect(rows)
    }

    fn transfer(&mut self, id: &TransferId) -> Result<Option<TransferRecord>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(TRANSFER_SELECT_BY_ID)
            .map_err(database_error)?;
        statement
            .query_row([id.as_str()], transfer_from_row)
            .optional()
            .map_err(database_error)?
            .transpose()
    }

    fn history(
        &mut self,
        account: &AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, StoreError> {
        let limit = limit.min(HISTORY_PAGE_MAX) as i64;
        let start = match before {
            None => self
                .account(account)?
                .map_or(0, |stored| stored.last_sequence),
            Some(sequence) => {
                let mut statement = self
                    .connection
                    .prepare_cached(
                        "SELECT debit_account, credit_account, debit_previous, credit_previous
                         FROM transfers WHERE sequence = ?1",
                    )
                    .map_err(database_error)?;
                let links: Option<(String, String, i64, i64)> = statement
                    .query_row([sequence as i64], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .optional()
                    .map_err(database_error)?;
                match links {
                    Some((debit, _, previous, _)) if debit == account.as_str() => previous as u64,
                    Some((_, credit, _, previous)) if credit == account.as_str() => previous as u64,
                    _ => 0,
                }
            }
        };
        if start == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let mut statement = self
            .connection
            .prepare_cached(HISTORY_CHAIN)
            .map_err(database_error)?;
        let rows = statement
            .query_map(
                params![account.as_str(), start as i64, limit],
                transfer_from_row,
            )
            .map_err(database_error)?;
        collect(rows)
    }

    fn schema_versions(&mut self) -> Result<Option<SchemaVersions>, StoreError> {
        let database: i64 = self
            .connection
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |row| row.get(0),
            )
            .map_err(database_error)?;
        Ok(Some(SchemaVersions {
            database: u64::try_from(database).unwrap_or(0),
            build: MIGRATIONS.len() as u64,
        }))
    }

    fn totals(&mut self) -> Result<Vec<CurrencyTotal>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT currency, exponent, COUNT(*), SUM(credits_posted - debits_posted), SUM(credits_pending - debits_pending)
                 FROM accounts GROUP BY currency, exponent ORDER BY currency",
            )
            .map_err(database_error)?;
        let rows = statement
            .query_map([], |row| {
                let code: String = row.get(0)?;
                let exponent: u8 = row.get(1)?;
                let accounts: i64 = row.get(2)?;
                // SUM over i64 is exact in SQLite (it errors on overflow rather than rounding).
                let posted: i64 = row.get(3)?;
                let pending: i64 = row.get(4)?;
                Ok(Currency::new(&code, exponent)
                    .map_err(corrupt)
                    .map(|currency| CurrencyTotal {
                        currency,
                        accounts: accounts as u64,
                        posted_sum: i128::from(posted),
                        pending_sum: i128::from(pending),
                    }))
            })
            .map_err(database_error)?;
        collect(rows)
    }

    fn record(&mut self, namespace: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT value, version FROM records WHERE namespace = ?1 AND key = ?2")
            .map_err(database_error)?;
        statement
            .query_row(params![namespace, key], |row| {
                let version: i64 = row.get(1)?;
                Ok(Record {
                    namespace: namespace.to_owned(),
                    key: key.to_owned(),
                    value: row.get(0)?,
                    version: version as u64,
                })
            })
            .optional()
            .map_err(database_error)
    }

    fn records(
        &mut self,
        namespace: &str,
        key_prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let limit = limit.min(RECORD_PAGE_MAX) as i64;
        let mut statement = self
            .connection
            .prepare_cached(
                // A range, not LIKE: SQLite's LIKE ignores ASCII case, and keys are exact.
                "SELECT key, value, version FROM records
                 WHERE namespace = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3) AND key > ?4
                 ORDER BY key LIMIT ?5",
            )
            .map_err(database_error)?;
        let rows = statement
            .query_map(
                params![
                    namespace,
                    key_prefix,
                    offpay_ledger::columns::prefix_upper_bound(key_prefix),
                    after_key.unwrap_or(""),
                    limit
                ],
                |row| {
                    let version: i64 = row.get(2)?;
                    Ok(Ok(Record {
                        namespace: namespace.to_owned(),
                        key: row.get(0)?,
                        value: row.get(1)?,
                        version: version as u64,
                    }))
                },
            )
            .map_err(database_error)?;
        collect(rows)
    }

    fn read_transaction(
        &mut self,
        reads: &mut dyn FnMut(&mut dyn LedgerStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Deferred: the read snapshot is taken at the first read and held to the end.
        self.connection
            .execute_batch("BEGIN DEFERRED")
            .map_err(database_error)?;
        let outcome = reads(self);
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = self.connection.execute_batch(end).map_err(database_error);
        if !self.connection.is_autocommit() {
            // Never leave the connection inside a transaction: the next read could not begin.
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        outcome.and(ended)
    }
}
