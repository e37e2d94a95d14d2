//! The ledger service: one thread owns the store and commits whatever batches have queued up
//! while the previous group was being written, in one database transaction with one fsync (group
//! commit). HTTP handlers and rails talk to it through a bounded channel.
//!
//! Reads go to a second connection on a thread of its own, each in one read transaction: they
//! never wait behind a group commit and its fsync, and still see every commit acknowledged
//! before they were asked. A read that must also see commits queued but not yet written uses
//! [`Ledger::read_after_queued`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use offpay_ledger::{Batch, GroupResult, LedgerStore, Operation, Outcome, StoreError, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{LedgerMetrics, Metrics};

/// Requests waiting for the writer; senders wait (back-pressure) when it is full.
pub const QUEUE_DEPTH_MAX: usize = 1024;
/// Most operations committed in one group; a group stops growing at this size.
pub const GROUP_OPERATIONS_MAX: usize = 65_536;

type ReadJob = Box<dyn FnOnce(&mut dyn LedgerStore) + Send>;

/// A job for the thread that owns the lock connection ([`Ledger::lock_shared`]).
type LockJob = Box<dyn FnOnce(&mut dyn LedgerStore) + Send>;

enum Request {
    Commit {
        batches: Vec<Batch>,
        now: Timestamp,
        reply: oneshot::Sender<Result<GroupResult, StoreError>>,
        group: GroupNumber,
    },
    Read(ReadJob),
}

/// A handle to the ledger writer and reader threads. Cloning is cheap; the threads stop when
/// every handle is dropped and their queues are drained.
#[derive(Clone, Debug)]
pub struct Ledger {
    sender: mpsc::Sender<Request>,
    reader: mpsc::Sender<ReadJob>,
    /// Group commits finished (committed or failed), counted by the writer.
    groups_done: Arc<AtomicU64>,
    backend: &'static str,
    /// What the writer measures.
    metrics: Arc<LedgerMetrics>,
    /// True while the writer thread runs; cleared when it ends, however it ends.
    writer_alive: Arc<AtomicBool>,
    /// The thread owning a third connection, for locks shared with other processes on the
    /// same database; `None` for a store only this process uses.
    locks: Option<mpsc::UnboundedSender<LockJob>>,
    /// Times [`Ledger::lock_shared`] went on without the lock (its wait ran out, or the lock
    /// connection failed).
    locks_missed: Arc<AtomicU64>,
}

/// A lock shared with the other processes on the ledger's database, held until dropped
/// ([`Ledger::lock_shared`]).
#[derive(Debug)]
#[must_use = "the lock is given back when this is dropped"]
pub struct SharedLock {
    held: Option<(mpsc::UnboundedSender<LockJob>, &'static str)>,
}

impl SharedLock {
    /// Whether the lock is held (it is not when the wait ran out or the connection failed).
    pub fn held(&self) -> bool {
        self.held.is_some()
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if let Some((locks, name)) = self.held.take() {
            let job: LockJob = Box::new(move |store| {
                if let Err(error) = store.unlock_shared_name(name) {
                    tracing::warn!(lock = name, %error, "could not give back a shared lock");
                }
            });
            let _ = locks.send(job);
        }
    }
}

/// Clears the writer's liveness flag when the writer thread ends, by return or by panic.
struct AliveWhileHeld(Arc<AtomicBool>);

impl Drop for AliveWhileHeld {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The number of the group commit that wrote a request's batches, once it has finished
/// (committed or failed); groups are numbered from 1 in the order the writer runs them.
#[derive(Clone, Debug, Default)]
pub struct GroupNumber(Arc<AtomicU64>);

impl GroupNumber {
    /// For batches already known to be written: `groups_done` is [`Ledger::groups_done`] read
    /// after their commit returned, and stands for their group's number (an upper bound of it).
    pub fn finished_by(groups_done: u64) -> GroupNumber {
        GroupNumber(Arc::new(AtomicU64::new(groups_done.max(1))))
    }

    /// The group's number, or `None` while the batches wait or are being written.
    pub fn finished(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            number => Some(number),
        }
    }
}

/// A record read's error as a store error: a failure of the store itself stays what it was (a
/// lost connection is retryable, not corrupt data); anything else is corrupt data.
pub fn record_store_error(error: offpay_operator::RecordError) -> StoreError {
    match error {
        offpay_operator::RecordError::Store(error) => error,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// Why a ledger call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store failed. Nothing of the request was committed, unless the error says that the
    /// outcome is unknown (the database was lost during `COMMIT`): retrying with the same ids is
    /// safe either way, transfers being idempotent by id.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer thread has stopped (shutdown in progress).
    #[error("the ledger is shutting down")]
    Stopped,
}

/// Joins the writer and reader threads on shutdown, after every [`Ledger`] handle is gone.
#[derive(Debug)]
pub struct LedgerThread {
    handle: JoinHandle<()>,
    reader: JoinHandle<()>,
    locks: Option<JoinHandle<()>>,
}

impl LedgerThread {
    /// Waits for the writer and reader to finish the queued work.
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("the ledger writer thread panicked");
        }
        if self.reader.join().is_err() {
            tracing::error!("the ledger reader thread panicked");
        }
        if let Some(locks) = self.locks
            && locks.join().is_err()
        {
            tracing::error!("the ledger's lock thread panicked");
        }
    }
}

impl Ledger {
    /// Starts the writer thread that owns `store`, and the reader thread that owns `reader`, a
    /// second connection to the same database.
    pub fn start(
        store: Box<dyn LedgerStore>,
        reader: Box<dyn LedgerStore>,
    ) -> std::io::Result<(Ledger, LedgerThread)> {
        Ledger::start_with_locks(store, reader, None)
    }

    /// [`Ledger::start`] for a database other processes share: `locks`, a third connection on
    /// a thread of its own, takes the locks [`Ledger::lock_shared`] asks for.
    pub fn start_with_locks(
        store: Box<dyn LedgerStore>,
        mut reader: Box<dyn LedgerStore>,
        locks: Option<Box<dyn LedgerStore>>,
    ) -> std::io::Result<(Ledger, LedgerThread)> {
        let backend = store.backend();
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH_MAX);
        let groups_done = Arc::new(AtomicU64::new(0));
        let done = Arc::clone(&groups_done);
        let metrics = Arc::new(LedgerMetrics::default());
        let measured = Arc::clone(&metrics);
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = AliveWhileHeld(Arc::clone(&writer_alive));
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                let writer = Writer {
                    groups_done: &done,
                    metrics: &measured,
                    alive: &alive.0,
                };
                run_writer(store, receiver, &writer);
            })?;
        let (reads, mut queued_reads) = mpsc::channel::<ReadJob>(QUEUE_DEPTH_MAX);
        let reader_handle = std::thread::Builder::new()
            .name("ledger-reader".into())
            .spawn(move || {
                while let Some(job) = queued_reads.blocking_recv() {
                    job(reader.as_mut());
                }
            })?;
        let (lock_jobs, lock_handle) = match locks {
            None => (None, None),
            Some(mut store) => {
                let (jobs, mut queued) = mpsc::unbounded_channel::<LockJob>();
                let handle = std::thread::Builder::new()
                    .name("ledger-locks".into())
                    .spawn(move || {
                        while let Some(job) = queued.blocking_recv() {
                            job(store.as_mut());
                        }
                    })?;
                (Some(jobs), Some(handle))
            }
        };
        Ok((
            Ledger {
                sender,
                reader: reads,
                groups_done,
                backend,
                metrics,
                writer_alive,
                locks: lock_jobs,
                locks_missed: Arc::new(AtomicU64::new(0)),
            },
            LedgerThread {
                handle,
                reader: reader_handle,
                locks: lock_handle,
            },
        ))
    }

    /// Takes the lock `name` that every process on this database shares
    /// ([`LedgerStore::lock_shared_name`]), waiting at most `wait`; given back when the answer is
    /// dropped. A store only this process uses has nothing to take (the answer holds nothing),
    /// and neither does a lock whose wait ran out or whose connection failed: the caller goes on
    /// without it, its conditional writes still guarding what it writes.
    pub async fn lock_shared(&self, name: &'static str, wait: Duration) -> SharedLock {
        let none = SharedLock { held: None };
        let Some(locks) = &self.locks else {
            return none;
        };
        let (reply, answer) = oneshot::channel();
        let job: LockJob = Box::new(move |store| {
            let result = store.lock_shared_name(name, wait);
            let taken = matches!(result, Ok(true));
            // Taken for a caller that has gone away: given back at once.
            if reply.send(result).is_err()
                && taken
                && let Err(error) = store.unlock_shared_name(name)
            {
                tracing::warn!(lock = name, %error, "could not give back a shared lock");
            }
        });
        if locks.send(job).is_err() {
            return none;
        }
        match answer.await {
            Ok(Ok(true)) => SharedLock {
                held: Some((locks.clone(), name)),
            },
            Ok(Ok(false)) => {
                self.locks_missed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    lock = name,
                    wait_ms = wait.as_millis() as u64,
                    "another process held a shared lock too long; going on without it"
                );
                none
            }
            Ok(Err(error)) => {
                self.locks_missed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(lock = name, %error, "could not take a shared lock; going on without it");
                none
            }
            Err(_) => none,
        }
    }

    /// Whether [`Ledger::lock_shared`] takes locks other processes see (a PostgreSQL ledger
    /// started with a lock connection); without, every lock is held by this process alone.
    pub fn shares_locks(&self) -> bool {
        self.locks.is_some()
    }

    /// Times [`Ledger::lock_shared`] went on without the lock it was asked for: another process
    /// held it past the wait, or the lock connection failed.
    pub fn shared_locks_missed(&self) -> u64 {
        self.locks_missed.load(Ordering::Relaxed)
    }

    /// Group commits finished so far. A read asked after this returned `n` sees what groups
    /// `1..=n` committed.
    pub fn groups_done(&self) -> u64 {
        self.groups_done.load(Ordering::Acquire)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// What the writer thread has measured.
    pub fn metrics(&self) -> &LedgerMetrics {
        &self.metrics
    }

    /// Requests queued for the writer and not yet taken by it.
    pub fn queue_depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Whether the writer thread is still running (it stops only when every handle is gone, or
    /// when it panicked).
    pub fn writer_alive(&self) -> bool {
        self.writer_alive.load(Ordering::Acquire) && !self.sender.is_closed()
    }

    /// Commits `batches` (each atomic on its own) and returns when they are durable.
    pub async fn commit(
        &self,
        batches: Vec<Batch>,
        now: Timestamp,
    ) -> Result<GroupResult, LedgerError> {
        self.submit(batches, now).await?.durable().await
    }

    /// Queues `batches` for commit and returns once they are queued, before they are written:
    /// every commit or read queued after this returns sees them (if they commit). The answer
    /// says when they are durable, and how each batch fared.
    pub async fn submit(&self, batches: Vec<Batch>, now: Timestamp) -> Result<Queued, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let group = GroupNumber::default();
        self.sender
            .send(Request::Commit {
                batches,
                now,
                reply,
                group: group.clone(),
            })
            .await
            .map_err(|_| LedgerError::Stopped)?;
        Ok(Queued { answer, group })
    }

    /// Runs `job` on the reader connection without a read transaction: each of its reads is one
    /// statement that sees every commit acknowledged before it ran, but two reads may see
    /// different committed states. For reads that need no common snapshot (a token's index
    /// and its user, where the user record decides): on PostgreSQL it saves the transaction's
    /// `BEGIN` and `COMMIT`, two of the four round trips of an operator request's
    /// authentication.
    pub async fn read_each<T, F>(&self, job: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn LedgerStore) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |store| {
            let _ = reply.send(job(store));
        });
        self.reader
            .send(job)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        Ok(answer.await.map_err(|_| LedgerError::Stopped)??)
    }

    /// Runs `job`'s reads in one read transaction on the reader connection: it sees every commit
    /// acknowledged before it was asked, and one committed state throughout.
    pub async fn read<T, F>(&self, job: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn LedgerStore) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |store| {
            let mut job = Some(job);
            let mut result = None;
            let transaction = store.read_transaction(&mut |store| {
                if let Some(job) = job.take() {
                    result = Some(job(store));
                }
                Ok(())
            });
            // What the reads answered stands even if ending the (read-only) transaction failed.
            let _ = reply.send(match (result, transaction) {
                (Some(result), _) => result,
                (None, Err(error)) => Err(error),
                (None, Ok(())) => Err(StoreError::Database("the read did not run".into())),
            });
        });
        self.reader
            .send(job)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        Ok(answer.await.map_err(|_| LedgerError::Stopped)??)
    }

    /// Runs a read on the writer thread, after every commit queued before it (acknowledged or
    /// not): for a read that must see batches [`Ledger::submit`] has queued. It waits for those
    /// group commits; prefer [`Ledger::read`].
    pub async fn read_after_queued<T, F>(&self, job: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn LedgerStore) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |store| {
            let _ = reply.send(job(store));
        });
        self.sender
            .send(Request::Read(job))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        Ok(answer.await.map_err(|_| LedgerError::Stopped)??)
    }
}

/// Batches queued by [`Ledger::submit`].
#[derive(Debug)]
#[must_use = "nothing says whether queued batches committed until `durable` is awaited"]
pub struct Queued {
    answer: oneshot::Receiver<Result<GroupResult, StoreError>>,
    group: GroupNumber,
}

impl Queued {
    /// The group commit that writes the batches, once it has finished.
    pub fn group(&self) -> GroupNumber {
        self.group.clone()
    }

    /// Waits until the batches are durable (or refused), with one result per batch.
    pub async fn durable(self) -> Result<GroupResult, LedgerError> {
        Ok(self.answer.await.map_err(|_| LedgerError::Stopped)??)
    }
}

struct PendingCommit {
    batch_count: usize,
    reply: oneshot::Sender<Result<GroupResult, StoreError>>,
    group: GroupNumber,
}

/// What the writer thread shares with the [`Ledger`] handles.
struct Writer<'a> {
    groups_done: &'a AtomicU64,
    metrics: &'a LedgerMetrics,
    alive: &'a AtomicBool,
}

fn run_writer(
    mut store: Box<dyn LedgerStore>,
    mut receiver: mpsc::Receiver<Request>,
    writer: &Writer<'_>,
) {
    let mut reads: Vec<ReadJob> = Vec::new();
    while let Some(first) = receiver.blocking_recv() {
        let mut group: Vec<Batch> = Vec::new();
        let mut waiting: Vec<PendingCommit> = Vec::new();
        let mut operations = 0usize;
        let mut now = Timestamp(0);
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Commit {
                    batches,
                    now: requested_at,
                    reply,
                    group: number,
                } => {
                    operations += batches
                        .iter()
                        .map(|batch| batch.operations.len())
                        .sum::<usize>();
                    now = now.max(requested_at);
                    waiting.push(PendingCommit {
                        batch_count: batches.len(),
                        reply,
                        group: number,
                    });
                    group.extend(batches);
                }
                Request::Read(job) => reads.push(job),
            }
            // Reads asked after a queued commit must see it, so they run after the group; a
            // group stops growing at GROUP_OPERATIONS_MAX to bound latency and memory.
            if operations < GROUP_OPERATIONS_MAX {
                next = receiver.try_recv().ok();
            }
        }
        if !waiting.is_empty() {
            commit_group(store.as_mut(), group, now, waiting, writer);
        }
        for job in reads.drain(..) {
            job(store.as_mut());
        }
    }
}

fn commit_group(
    store: &mut dyn LedgerStore,
    group: Vec<Batch>,
    now: Timestamp,
    waiting: Vec<PendingCommit>,
    writer: &Writer<'_>,
) {
    let Writer {
        groups_done,
        metrics,
        alive,
    } = writer;
    let started = Instant::now();
    // A store that panics ends the writer thread. The flag goes down before the waiting callers
    // hear that their commit failed, so whoever asks after that finds the writer not alive.
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.commit(&group, now)))
            .unwrap_or_else(|panic| {
                alive.store(false, Ordering::Release);
                std::panic::resume_unwind(panic)
            });
    metrics.commit_seconds.observe_duration(started.elapsed());
    if let Some(known) = store.known_groups() {
        metrics
            .known_groups
            .store(known.committed, Ordering::Relaxed);
        metrics.known_stale.store(known.stale, Ordering::Relaxed);
    }
    metrics.group_batches.observe(group.len() as u64);
    measure(metrics, &group, &outcome);
    // Numbered and counted once finished, before anyone hears the outcome: whoever learns that
    // its batches committed then finds them counted in `groups_done`.
    let number = groups_done.load(Ordering::Relaxed) + 1;
    for pending in &waiting {
        pending.group.0.store(number, Ordering::Release);
    }
    groups_done.store(number, Ordering::Release);
    match outcome {
        Ok(results) => {
            assert_eq!(
                results.len(),
                group.len(),
                "a store returned a result per batch"
            );
            let mut results = results.into_iter();
            for pending in waiting {
                let mine: GroupResult = results.by_ref().take(pending.batch_count).collect();
                let _ = pending.reply.send(Ok(mine));
            }
        }
        Err(error) => {
            tracing::error!(%error, batches = group.len(), "group commit failed");
            for pending in waiting {
                let _ = pending.reply.send(Err(same_error(&error)));
            }
        }
    }
}

/// A copy of `error` for each request of a failed group ([`StoreError`] is not `Clone`), of the
/// same kind, so that each is answered as the failure deserves.
fn same_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Database(message) => StoreError::Database(message.clone()),
        StoreError::Schema(message) => StoreError::Schema(message.clone()),
        StoreError::Corrupt(message) => StoreError::Corrupt(message.clone()),
        StoreError::ConservationBroken {
            currency,
            posted_sum,
            pending_sum,
        } => StoreError::ConservationBroken {
            currency: currency.clone(),
            posted_sum: *posted_sum,
            pending_sum: *pending_sum,
        },
        other => StoreError::Database(other.to_string()),
    }
}

/// Counts a finished group's batches, transfers and fraud flags. Fraud flags are counted here,
/// where every rail's flags are committed, whichever path queued them; a flag is counted when it
/// is created (its record written at version 1), not when an operator later updates it.
fn measure(metrics: &LedgerMetrics, group: &[Batch], outcome: &Result<GroupResult, StoreError>) {
    let Ok(results) = outcome else {
        metrics.groups.add(&[("outcome", "failed")], 1);
        metrics
            .batches
            .add(&[("outcome", "failed")], group.len() as u64);
        return;
    };
    metrics.groups.add(&[("outcome", "committed")], 1);
    for (batch, result) in group.iter().zip(results) {
        let Ok(outcomes) = result else {
            metrics.batches.add(&[("outcome", "refused")], 1);
            continue;
        };
        metrics.batches.add(&[("outcome", "committed")], 1);
        for (operation, outcome) in batch.operations.iter().zip(outcomes) {
            match (operation, outcome) {
                (Operation::Transfer(_), Outcome::TransferCommitted) => {
                    Metrics::add(&metrics.transfers_committed, 1);
                }
                (Operation::PutRecord(write), Outcome::RecordWritten { version: 1 })
                    if write.namespace == offpay_operator::fraud::NAMESPACE =>
                {
                    let flag = write
                        .value
                        .as_deref()
                        .and_then(|value| serde_json::from_slice::<FlagLabels>(value).ok());
                    match flag {
                        Some(flag) => metrics
                            .fraud_flags
                            .add(&[("rail", &flag.rail), ("kind", &flag.kind)], 1),
                        None => metrics
                            .fraud_flags
                            .add(&[("rail", "unknown"), ("kind", "unreadable")], 1),
                    }
                }
                _ => {}
            }
        }
    }
}

/// The fields of a fraud flag its counter is labelled with.
#[derive(serde::Deserialize)]
struct FlagLabels {
    rail: String,
    kind: String,
}

#[cfg(test)]
mod tests {
    use offpay_ledger::MemoryStore;
    use offpay_operator::FraudFlag;

    use super::*;

    #[tokio::test]
    async fn the_writer_counts_fraud_flags_when_they_are_created_and_its_groups() {
        let (ledger, _threads) =
            Ledger::start(Box::new(MemoryStore::new()), Box::new(MemoryStore::new())).unwrap();
        let flag = FraudFlag::new(
            "purse",
            "duplicate_counter",
            "+254700000001",
            "two entries with counter 7",
            serde_json::json!({ "counter": 7 }),
            Timestamp(1),
        );
        let raise = || Batch {
            operations: vec![flag.operation("7")],
        };
        let results = ledger.commit(vec![raise()], Timestamp(2)).await.unwrap();
        assert!(results[0].is_ok());
        // The same finding raised again (a retried upload) rewrites the flag: not a new one.
        ledger.commit(vec![raise()], Timestamp(3)).await.unwrap();
        let metrics = ledger.metrics();
        let labels = [("rail", "purse"), ("kind", "duplicate_counter")];
        assert_eq!(metrics.fraud_flags.get(&labels), 1);
        assert_eq!(metrics.groups.get(&[("outcome", "committed")]), 2);
        assert_eq!(metrics.batches.get(&[("outcome", "committed")]), 2);
        assert_eq!(metrics.group_batches.count(), 2);
        assert_eq!(metrics.commit_seconds.count(), 2);
        // An empty batch is refused by the rules, and counted so.
        ledger
            .commit(vec![Batch::default()], Timestamp(4))
            .await
            .unwrap();
        assert_eq!(metrics.batches.get(&[("outcome", "refused")]), 1);
        assert_eq!(ledger.queue_depth(), 0);
    }
}
