//! The one loop that runs a rail's operator decisions: lock stripes → load → decide → commit
//! the effects (record writes conditional on the versions read) → on a stale read, load and
//! decide again, at most [`ATTEMPTS_MAX`] times. Rails supply the load and the decision; the
//! rules are theirs, the loop is this.

use std::collections::BTreeSet;
use std::future::Future;

use offpay_ledger::{BatchRefusal, Outcome, Refusal, Timestamp};
use offpay_operator::{Attempt, Decision, Effects};
use tokio::sync::{Mutex, MutexGuard};

use crate::ledger::{Ledger, LedgerError};

/// Times a decision is made again when a record it read changed before its commit.
pub const ATTEMPTS_MAX: usize = 8;

const _: () = assert!(ATTEMPTS_MAX > 0);

/// Why a run did not commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The ledger is unavailable; nothing was committed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The ledger refused a batch for a reason other than a stale read.
    #[error(transparent)]
    Refused(#[from] BatchRefusal),
    /// Other writers kept changing the records this decision read.
    #[error("the records kept changing under this operation; try again")]
    Contention,
    /// The caller was let in on a cached credential and its user record changed before the
    /// commit (a new token, a revocation, a new role): nothing was applied.
    #[error("the caller's credentials changed while the request ran; nothing was applied")]
    CredentialsChanged,
}

/// The HTTP answer to a run that did not commit.
pub fn api_error(error: RunError) -> crate::error::ApiError {
    match error {
        RunError::Ledger(error) => error.into(),
        RunError::Refused(refusal) => crate::error::ApiError::refused(&refusal),
        RunError::Contention => crate::error::ApiError::busy(
            "the records kept changing under this request; nothing was applied: send the same \
             request again",
        ),
        RunError::CredentialsChanged => crate::error::ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "credentials_changed",
            "your user record changed while this request ran (a new token, a revocation or a \
             new role); nothing was applied: send the same request again",
        )
        .with_details(serde_json::json!({ "retryable": true })),
    }
}

/// Mutexes that serialise operations touching the same keys within this process (a phone, an
/// account). They only save work: correctness across processes comes from the conditional record
/// writes.
#[derive(Debug)]
pub struct LockStripes {
    stripes: Vec<Mutex<()>>,
}

impl LockStripes {
    /// `count` stripes (at least one).
    pub fn new(count: usize) -> LockStripes {
        LockStripes {
            stripes: (0..count.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Locks the stripes of `keys`, always in ascending order so that two operations never wait
    /// for each other.
    pub async fn lock(&self, keys: impl IntoIterator<Item = u64>) -> Vec<MutexGuard<'_, ()>> {
        let count = self.stripes.len() as u64;
        let stripes: BTreeSet<usize> = keys
            .into_iter()
            .map(|key| usize::try_from(key % count).unwrap_or(0))
            .collect();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }
}

/// What committing one decision's effects gave: `Done` with the outcomes of every batch, or
/// `Conflict` when a record was no longer at the version read.
pub async fn commit(
    ledger: &Ledger,
    effects: Effects,
    now: Timestamp,
) -> Result<Attempt<Vec<Outcome>>, RunError> {
    commit_with(ledger, effects, now, |_| false).await
}

/// [`commit`], also answering `Conflict` when the ledger refuses a batch for a reason `stale`
/// names (see [`run_with`]).
pub async fn commit_with(
    ledger: &Ledger,
    effects: Effects,
    now: Timestamp,
    stale: fn(&Refusal) -> bool,
) -> Result<Attempt<Vec<Outcome>>, RunError> {
    if effects.is_empty() {
        return Ok(Attempt::Done(Vec::new()));
    }
    // Raised fraud flags become create-only or version-conditional writes (a retried upload must
    // not reset a decided case; new evidence reopens it): see `crate::fraud::settle`.
    let mut effects = effects;
    if effects.flags() > 0 {
        let raised = effects.take_flags();
        effects.write_all(crate::fraud::settle(ledger, raised).await?);
        if effects.is_empty() {
            return Ok(Attempt::Done(Vec::new()));
        }
    }
    // An operator's request: the action's audit entry (and the request's idempotency record)
    // commit in the same batch as its effect.
    if let Some(context) = crate::audit::current() {
        return crate::audit::commit_audited(ledger, &context, effects, now, stale).await;
    }
    let batches = effects.into_batches();
    let results = ledger.commit(batches, now).await?;
    let mut outcomes = Vec::new();
    for result in results {
        match result {
            Ok(batch) => outcomes.extend(batch),
            Err(BatchRefusal {
                reason: Refusal::RecordVersionMismatch { .. },
                ..
            }) => return Ok(Attempt::Conflict),
            Err(refusal) if stale(&refusal.reason) => return Ok(Attempt::Conflict),
            Err(refusal) => return Err(RunError::Refused(refusal)),
        }
    }
    Ok(Attempt::Done(outcomes))
}

/// Runs `load` then `decide` and commits the effects, again from the load when a record changed
/// underneath (or `decide` asked to reload), at most [`ATTEMPTS_MAX`] times.
pub async fn run<L, T, E, Load, LoadFuture>(
    ledger: &Ledger,
    now: Timestamp,
    load: Load,
    decide: impl FnMut(L) -> Result<Decision<T>, E>,
) -> Result<T, E>
where
    Load: FnMut() -> LoadFuture,
    LoadFuture: Future<Output = Result<L, E>>,
    E: From<RunError>,
{
    run_with(ledger, now, load, decide, |_| false).await
}

/// [`run`], deciding again also when the ledger refuses a batch for a reason `stale` names: a
/// state the load read outside the records (a balance) that another writer changed before the
/// commit, so the ledger's own check refused what the decision assumed.
pub async fn run_with<L, T, E, Load, LoadFuture>(
    ledger: &Ledger,
    now: Timestamp,
    mut load: Load,
    mut decide: impl FnMut(L) -> Result<Decision<T>, E>,
    stale: fn(&Refusal) -> bool,
) -> Result<T, E>
where
    Load: FnMut() -> LoadFuture,
    LoadFuture: Future<Output = Result<L, E>>,
    E: From<RunError>,
{
    for _ in 0..ATTEMPTS_MAX {
        let loaded = load().await?;
        let (effects, reply) = match decide(loaded)? {
            Decision::Commit { effects, reply } => (effects, reply),
            Decision::Reload => continue,
        };
        match commit_with(ledger, effects, now, stale).await? {
            Attempt::Done(_) => return Ok(reply),
            Attempt::Conflict => {
                tracing::debug!("a record changed under a decision; deciding again");
            }
        }
    }
    Err(RunError::Contention.into())
}
