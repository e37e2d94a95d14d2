//! Deciding a deposit while the one before it commits.
//!
//! The CSC decides deposits one at a time, in order, under its lock: the day counters, recent
//! purchases and balances each decision reads must include every decision before it. Without
//! help, the lock is held until the ledger has made the deposit durable (a group commit and its
//! fsync), and the next deposit then reads the clearing state back from the ledger.
//!
//! Instead, each deposit reads the clearing state before it takes the lock (a **snapshot**, with
//! each record's version), on the ledger's reader connection, so that reading never waits for a
//! commit. The lock keeps an **overlay**: for every ledger batch of clearing records queued
//! recently — committed or still in flight — the records it writes, with the version each will
//! have once it commits, and what it debits each payer. Under the lock a deposit brings its
//! snapshot up to date from the overlay, decides, queues its batch, adds it to the overlay and
//! lets the lock go; it learns whether its batch committed after that, while the next deposit
//! decides.
//!
//! Why the result is the same as deciding against the ledger itself is argued with the rules,
//! in `offpay_microcheck::operator::overlay`. What is this module's own: a refused deposit is
//! decided again with the lock held through its commit, against the state read back on the
//! writer's queue (behind every batch in flight, so it sees how each fared:
//! [`crate::ledger::Ledger::read_after_queued`]); a snapshot notes how many groups had finished
//! before it was read ([`crate::ledger::Ledger::groups_done`]).
//!
//! Money moved by the operator API after the snapshot is the one thing the overlay does not
//! see: a payer's balance can be up to one lock wait old when a microcheck is decided. The ledger
//! still refuses any debit the account cannot cover (the deposit is then decided again), so the
//! only effect is that a payer funded in those few milliseconds can bounce as before the funding.

use std::sync::atomic::{AtomicU64, Ordering};

use offpay_microcheck::UnixSeconds;
use offpay_microcheck::csc::{Clearance, ClearingState, StateRecord};
use offpay_microcheck::operator::overlay::{
    BatchFate, Current, Group, Overlay, Snapshot, Versions,
};

use crate::ledger::GroupNumber;

impl Group for GroupNumber {
    fn finished(&self) -> Option<u64> {
        GroupNumber::finished(self)
    }
}

/// The CSC's lock and what it guards (see the module documentation).
#[derive(Debug, Default)]
pub struct Csc {
    /// Moves when something the overlay does not track changes what clearing reads.
    epoch: AtomicU64,
    overlay: tokio::sync::Mutex<Overlay<GroupNumber>>,
}

/// The overlay, locked: holding it is holding the CSC lock.
pub type Locked<'a> = tokio::sync::MutexGuard<'a, Overlay<GroupNumber>>;

impl Csc {
    /// The epoch, for a snapshot to note before it is read.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Takes the CSC lock.
    pub async fn lock(&self) -> Locked<'_> {
        self.overlay.lock().await
    }

    /// Marks that clearing's inputs changed in a way the overlay does not track; call with the
    /// lock held, after the change is durable.
    pub fn changed(&self, _locked: &Locked<'_>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Brings `snapshot` of `merchant`'s deposit up to date, or `None` if it cannot be (read the
    /// state again). Call with the lock held.
    pub fn current(
        &self,
        overlay: &Locked<'_>,
        snapshot: Snapshot,
        merchant: &str,
    ) -> Option<Current> {
        overlay.current(snapshot, merchant, self.epoch())
    }

    /// Adds a batch to the overlay ([`Overlay::add`]). Call with the lock held, once the batch
    /// is queued in the ledger (or committed); its fate says if it fails.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        overlay: &mut Locked<'_>,
        group: GroupNumber,
        merchant: &str,
        records: &[(StateRecord, String)],
        versions: &Versions,
        state: &ClearingState,
        cleared: &[&Clearance],
        deposited_at: UnixSeconds,
    ) -> BatchFate {
        overlay.add(
            group,
            merchant,
            records,
            versions,
            state,
            cleared,
            deposited_at,
        )
    }
}
