//! The ledger service: one thread owns the store and commits whatever batches have queued up
//! while the previous group was being written, in one database transaction with one fsync (group
//! commit). HTTP handlers and rails talk to it through a bounded channel.

use std::thread::JoinHandle;

use offpay_ledger::{Batch, GroupResult, LedgerStore, StoreError, Timestamp};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the writer; senders wait (back-pressure) when it is full.
pub const QUEUE_DEPTH_MAX: usize = 1024;
/// Most operations committed in one group; a group stops growing at this size.
pub const GROUP_OPERATIONS_MAX: usize = 65_536;

type ReadJob = Box<dyn FnOnce(&mut dyn LedgerStore) + Send>;

enum Request {
    Commit {
        batches: Vec<Batch>,
        now: Timestamp,
        reply: oneshot::Sender<Result<GroupResult, StoreError>>,
    },
    Read(ReadJob),
}

/// A handle to the ledger writer thread. Cloning is cheap; the thread stops when every handle is
/// dropped and the queue is drained.
#[derive(Clone, Debug)]
pub struct Ledger {
    sender: mpsc::Sender<Request>,
    backend: &'static str,
}

/// Why a ledger call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store failed; nothing of the request was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer thread has stopped (shutdown in progress).
    #[error("the ledger is shutting down")]
    Stopped,
}

/// Joins the writer thread on shutdown, after every [`Ledger`] handle is gone.
#[derive(Debug)]
pub struct LedgerThread {
    handle: JoinHandle<()>,
}

impl LedgerThread {
    /// Waits for the writer to finish the queued work.
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("the ledger writer thread panicked");
        }
    }
}

impl Ledger {
    /// Starts the writer thread that owns `store`.
    pub fn start(store: Box<dyn LedgerStore>) -> std::io::Result<(Ledger, LedgerThread)> {
        let backend = store.backend();
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH_MAX);
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || run_writer(store, receiver))?;
        Ok((Ledger { sender, backend }, LedgerThread { handle }))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
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
        self.sender
            .send(Request::Commit {
                batches,
                now,
                reply,
            })
            .await
            .map_err(|_| LedgerError::Stopped)?;
        Ok(Queued(answer))
    }

    /// Runs a read against the store on the writer thread (so it sees every commit acknowledged
    /// before it was asked).
    pub async fn read<T, F>(&self, job: F) -> Result<T, LedgerError>
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
pub struct Queued(oneshot::Receiver<Result<GroupResult, StoreError>>);

impl Queued {
    /// Waits until the batches are durable (or refused), with one result per batch.
    pub async fn durable(self) -> Result<GroupResult, LedgerError> {
        Ok(self.0.await.map_err(|_| LedgerError::Stopped)??)
    }
}

struct PendingCommit {
    batch_count: usize,
    reply: oneshot::Sender<Result<GroupResult, StoreError>>,
}

fn run_writer(mut store: Box<dyn LedgerStore>, mut receiver: mpsc::Receiver<Request>) {
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
                } => {
                    operations += batches
                        .iter()
                        .map(|batch| batch.operations.len())
                        .sum::<usize>();
                    now = now.max(requested_at);
                    waiting.push(PendingCommit {
                        batch_count: batches.len(),
                        reply,
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
            commit_group(store.as_mut(), group, now, waiting);
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
) {
    match store.commit(&group, now) {
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
            tracing::error!(%error, batches = group.len(), "group commit failed; nothing of it was committed");
            let message = error.to_string();
            for pending in waiting {
                let _ = pending
                    .reply
                    .send(Err(StoreError::Database(message.clone())));
            }
        }
    }
}
