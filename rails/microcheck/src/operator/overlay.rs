//! The CSC's overlay: the clearing records of ledger batches queued recently, committed or in
//! flight, so that a deposit can be decided on a snapshot of the clearing state read before the
//! CSC lock, brought up to date here, while the batch before it commits. The server holds the
//! overlay under its CSC lock and does the reads and commits; the rules that say what a
//! snapshot already holds and what it lacks are these.
//!
//! Why the result is the same as deciding against the ledger itself:
//!
//! - Record versions say exactly what a snapshot saw: the ledger bumps a record's version by one
//!   on every write, and only the CSC writes clearing records. A record in the overlay at a
//!   higher version than the snapshot's is newer than the snapshot.
//! - Every batch writes its clearing records with the version it expects
//!   (`expected_version`). If an earlier batch fails after a later one was decided on top of it,
//!   the later one shares a record with it (each microcheck rewrites its payer's recent
//!   purchases), so the ledger refuses the later one too: nothing decided on a state that never
//!   was can commit.
//! - A payer's balance in the snapshot already counts a batch's debits exactly when the snapshot
//!   saw that batch's version of the payer's recent purchases (one read transaction holds both);
//!   the others are subtracted.
//! - Whatever else can change what clearing reads (a payer's key) moves the **epoch**; a
//!   snapshot from an older epoch is read again under the lock instead.
//! - Forgetting old batches loses nothing. The overlay forgets a batch only once its group
//!   commit has finished, and remembers the highest group number it forgot. A snapshot notes how
//!   many groups had finished before it was read, so it holds everything those groups wrote; a
//!   snapshot noted before a forgotten batch's group finished may lack that batch, and is read
//!   again under the lock instead.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::csc::{self, Clearance, ClearingState, Debit, StateRecord};
use crate::time::UnixSeconds;

/// Ledger batches the overlay remembers, once their group commits have finished (batches still
/// waiting or being written are never forgotten).
pub const OVERLAY_BATCHES_MAX: usize = 256;

/// Record versions by key; a key not present is at version 0 (absent).
pub type Versions = HashMap<String, u64>;

/// The group commit that writes a batch, as the ledger numbers them.
pub trait Group {
    /// The group's number once it has finished (committed or failed), `None` while its batches
    /// wait or are being written. Numbers start at 1.
    fn finished(&self) -> Option<u64>;
}

/// The clearing state as a deposit read it, before taking the lock.
#[derive(Debug)]
pub struct Snapshot {
    /// The state.
    pub state: ClearingState,
    /// The merchant's previous deposit.
    pub last_deposit: Option<UnixSeconds>,
    /// The version of every clearing record read.
    pub versions: Versions,
    /// Group commits finished before it was read: it holds everything they wrote.
    pub groups_done: u64,
    /// The epoch when it was read.
    pub epoch: u64,
}

/// The clearing state for a decision: a snapshot brought up to date.
#[derive(Debug)]
pub struct Current {
    /// The state.
    pub state: ClearingState,
    /// The merchant's previous deposit.
    pub last_deposit: Option<UnixSeconds>,
    /// The version of every clearing record in it.
    pub versions: Versions,
}

/// Whether a batch in the overlay failed. Until it is known to, a batch counts as written, in
/// flight or committed alike: a deposit decided on top of a batch that then fails is refused by
/// the ledger in turn (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct BatchFate(Arc<AtomicBool>);

impl BatchFate {
    /// The batch was refused or its commit failed: nothing of it was written.
    pub fn failed(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_failed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One ledger batch of clearing records, committed or in flight.
#[derive(Debug)]
struct Written<G> {
    /// The group commit that writes it.
    group: G,
    merchant: String,
    /// The records it writes, each with its key and the version it has once written.
    records: Vec<(StateRecord, String, u64)>,
    /// Their values (only these are read).
    values: ClearingState,
    /// Debited from each payer (by name), with the version of the payer's recent purchases the
    /// batch writes: a snapshot with that version or later counts the debit already.
    debits: Vec<(String, u64, i64)>,
    /// Its microchecks as (payer, merchant, nonce): an online credential's hold is let go once
    /// its microcheck clears, so a snapshot still holding one for them drops it.
    released: Vec<(String, String, String)>,
    /// When its deposit was received (the merchant's last deposit, once it is written).
    deposited_at: UnixSeconds,
    fate: BatchFate,
}

/// The batches of clearing records written recently, oldest first.
#[derive(Debug)]
pub struct Overlay<G> {
    batches: VecDeque<Written<G>>,
    /// The highest group commit that wrote a forgotten batch (0: none forgotten).
    forgotten_group_max: u64,
}

impl<G> Default for Overlay<G> {
    fn default() -> Overlay<G> {
        Overlay {
            batches: VecDeque::new(),
            forgotten_group_max: 0,
        }
    }
}

impl<G: Group> Overlay<G> {
    /// Brings `snapshot` of `merchant`'s deposit up to date, or `None` if it cannot be (read the
    /// state again): `epoch` is the epoch now.
    pub fn current(&self, snapshot: Snapshot, merchant: &str, epoch: u64) -> Option<Current> {
        if snapshot.epoch != epoch || snapshot.groups_done < self.forgotten_group_max {
            return None;
        }
        Some(self.bring_up_to_date(snapshot, merchant))
    }

    /// Adds a batch of `merchant`'s deposit received at `deposited_at`: `records` are the
    /// clearing records it writes, `versions` their versions once written, `state` their
    /// values, `cleared` its microchecks, `group` the group commit that writes it. Call once the
    /// batch is queued in the ledger (or committed); its fate says if it fails.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        group: G,
        merchant: &str,
        records: &[(StateRecord, String)],
        versions: &Versions,
        state: &ClearingState,
        cleared: &[&Clearance],
        deposited_at: UnixSeconds,
    ) -> BatchFate {
        let fate = BatchFate::default();
        let mut values = ClearingState::default();
        let mut written = Vec::with_capacity(records.len());
        for (record, key) in records {
            record.copy(merchant, state, &mut values);
            written.push((
                record.clone(),
                key.clone(),
                versions.get(key).copied().unwrap_or(0),
            ));
        }
        let mut debited: HashMap<&str, i64> = HashMap::new();
        for clearance in cleared {
            if let Debit::Payer(name) = &clearance.debit {
                let amount = i64::try_from(clearance.amount.minor()).unwrap_or(i64::MAX);
                let total = debited.entry(name.as_str()).or_default();
                *total = total.saturating_add(amount);
            }
        }
        let debits = debited
            .into_iter()
            .map(|(name, amount)| {
                let version = versions.get(&csc::recent_key(name)).copied().unwrap_or(0);
                (name.to_owned(), version, amount)
            })
            .collect();
        let released = cleared
            .iter()
            .map(|c| (c.payer().to_owned(), merchant.to_owned(), c.nonce.clone()))
            .collect();
        self.batches.push_back(Written {
            group,
            merchant: merchant.to_owned(),
            records: written,
            values,
            debits,
            released,
            deposited_at,
            fate: fate.clone(),
        });
        while self.batches.len() > OVERLAY_BATCHES_MAX {
            let Some(group) = self.batches.front().and_then(|b| b.group.finished()) else {
                break;
            };
            self.batches.pop_front();
            self.forgotten_group_max = self.forgotten_group_max.max(group);
        }
        fate
    }

    fn bring_up_to_date(&self, snapshot: Snapshot, merchant: &str) -> Current {
        let Snapshot {
            mut state,
            mut last_deposit,
            versions: read,
            ..
        } = snapshot;
        let mut versions = read.clone();
        let names: HashMap<String, String> = state
            .payers
            .iter()
            .map(|(fingerprint, payer)| (payer.name.clone(), fingerprint.clone()))
            .collect();
        let mut debits: HashMap<&str, i64> = HashMap::new();
        for batch in self.batches.iter().filter(|b| !b.fate.is_failed()) {
            let same_merchant = batch.merchant == merchant;
            if same_merchant && last_deposit.is_none_or(|last| last < batch.deposited_at) {
                last_deposit = Some(batch.deposited_at);
            }
            for (record, key, version) in &batch.records {
                let relevant = match record {
                    StateRecord::PayerDay { payer, .. } => {
                        same_merchant && names.contains_key(payer)
                    }
                    StateRecord::MerchantDay { .. } => same_merchant,
                    StateRecord::Recent { payer } | StateRecord::Bounces { payer } => {
                        names.contains_key(payer)
                    }
                };
                if relevant && *version > versions.get(key).copied().unwrap_or(0) {
                    record.copy(&batch.merchant, &batch.values, &mut state);
                    versions.insert(key.clone(), *version);
                }
            }
            for (name, merchant, nonce) in &batch.released {
                for payer in state.payers.values_mut().filter(|p| &p.name == name) {
                    payer.release_hold(merchant, nonce);
                }
            }
            for (name, recent_version, amount) in &batch.debits {
                let seen = read.get(&csc::recent_key(name)).copied().unwrap_or(0);
                if names.contains_key(name) && *recent_version > seen {
                    let total = debits.entry(name.as_str()).or_default();
                    *total = total.saturating_add(*amount);
                }
            }
        }
        for (name, amount) in debits {
            if let Some(payer) = names.get(name).and_then(|fp| state.payers.get_mut(fp)) {
                payer.available_minor = payer.available_minor.saturating_sub(amount);
            }
        }
        Current {
            state,
            last_deposit,
            versions,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use offpay_money::{Amount, Currency};

    use super::*;
    use crate::csc::{PayerAccount, RecentPurchase};

    /// A group commit in a test: finished with a number, or waiting.
    #[derive(Clone, Debug)]
    struct GroupNumber(Option<u64>);

    impl Group for GroupNumber {
        fn finished(&self) -> Option<u64> {
            self.0
        }
    }

    /// The overlay and the epoch, as the server keeps them.
    #[derive(Default)]
    struct Csc {
        epoch: u64,
    }

    type Locked<'a> = Overlay<GroupNumber>;

    impl Csc {
        fn epoch(&self) -> u64 {
            self.epoch
        }

        fn lock(&self) -> Overlay<GroupNumber> {
            Overlay::default()
        }

        fn changed(&mut self) {
            self.epoch += 1;
        }

        fn current(
            &self,
            overlay: &Locked<'_>,
            snapshot: Snapshot,
            merchant: &str,
        ) -> Option<Current> {
            overlay.current(snapshot, merchant, self.epoch)
        }

        #[allow(clippy::too_many_arguments)]
        fn add(
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

    const DATE: &str = "20260101";

    fn clearance(merchant: &str, nonce: &str, bounced: bool) -> Clearance {
        let name = "alice".to_owned();
        Clearance {
            index: 0,
            nonce: nonce.to_owned(),
            transfer_id: format!("mc:{nonce}"),
            debit: if bounced {
                Debit::Bounced(name)
            } else {
                Debit::Payer(name)
            },
            merchant: merchant.to_owned(),
            amount: Amount::from_minor(83, Currency::KES).unwrap(),
            memo: String::new(),
            payer_fingerprint: "fp-alice".to_owned(),
            date: DATE.to_owned(),
            timestamp: format!("{DATE}000000"),
            time: UnixSeconds(1_767_225_600),
            microcheck_sha256: String::new(),
            credential_serial: None,
            records: Vec::new(),
            findings: Vec::new(),
        }
    }

    fn merchant(id: &str) -> csc::MerchantAccount {
        let pa = offpay_keynote::PrivateKey::ed25519_from_seed(&[1; 32]);
        csc::MerchantAccount {
            policy: crate::MerchantPolicy::new(id, "vend", &pa.principal(), None).unwrap(),
            location: csc::Location::default(),
            last_deposit_at: None,
        }
    }

    /// Alice with 10.00, as a deposit at vm-1 reads her before any sale.
    fn empty() -> ClearingState {
        let mut state = ClearingState::default();
        state.payers.insert(
            "fp-alice".to_owned(),
            PayerAccount {
                name: "alice".to_owned(),
                available_minor: 1000,
                retired_at: None,
                blocked_at: None,
                held_online: Vec::new(),
            },
        );
        state
    }

    /// Adds to the overlay a batch of one sale by alice at `merchant` on top of `state` (whose
    /// records are at `versions`), as the CSC does; returns the state and versions after it.
    fn sell(
        csc: &Csc,
        overlay: &mut Locked<'_>,
        group: GroupNumber,
        merchant_id: &str,
        nonce: &str,
        state: &ClearingState,
        versions: &Versions,
    ) -> (ClearingState, Versions, BatchFate) {
        let sale = clearance(merchant_id, nonce, false);
        let mut after = state.clone();
        after.apply(&merchant(merchant_id), &sale);
        let records: Vec<(StateRecord, String)> = StateRecord::changed_by([&sale])
            .into_iter()
            .map(|r| {
                let key = r.key(merchant_id);
                (r, key)
            })
            .collect();
        let mut versions = versions.clone();
        for (_, key) in &records {
            *versions.entry(key.clone()).or_default() += 1;
        }
        let fate = csc.add(
            overlay,
            group,
            merchant_id,
            &records,
            &versions,
            &after,
            &[&sale],
            UnixSeconds(100),
        );
        (after, versions, fate)
    }

    /// Alice's first sale at vm-1, written by group commit 1: the state and versions after it.
    fn first_sale(csc: &Csc, overlay: &mut Locked<'_>) -> (ClearingState, Versions) {
        let (state, versions, _) = sell(
            csc,
            overlay,
            group(1),
            "vm-1",
            "n1",
            &empty(),
            &Versions::new(),
        );
        (state, versions)
    }

    /// Adds `count` sales by alice at vm-1 to the overlay, one batch each, the `n`th written by
    /// `group_of(n)`; returns the state after them.
    fn sell_many(
        csc: &Csc,
        overlay: &mut Locked<'_>,
        count: usize,
        group_of: impl Fn(usize) -> GroupNumber,
    ) -> ClearingState {
        let (mut state, mut versions) = (empty(), Versions::new());
        for n in 0..count {
            let nonce = format!("n{n}");
            (state, versions, _) =
                sell(csc, overlay, group_of(n), "vm-1", &nonce, &state, &versions);
        }
        state
    }

    /// A snapshot read after `groups_done` group commits finished.
    fn snapshot(csc: &Csc, groups_done: u64, state: ClearingState, versions: Versions) -> Snapshot {
        Snapshot {
            state,
            last_deposit: None,
            versions,
            groups_done,
            epoch: csc.epoch(),
        }
    }

    /// The batch was written by group commit `number`.
    fn group(number: u64) -> GroupNumber {
        GroupNumber(Some(number))
    }

    /// The batch waits for its group commit.
    fn waiting() -> GroupNumber {
        GroupNumber(None)
    }

    fn day(state: &ClearingState, merchant: &str) -> Option<u32> {
        state
            .payer_merchant_day
            .get(&("alice".to_owned(), merchant.to_owned(), DATE.to_owned()))
            .copied()
    }

    fn available(state: &ClearingState) -> i64 {
        state.payers["fp-alice"].available_minor
    }

    fn recent(state: &ClearingState) -> Vec<&str> {
        state.recent["alice"]
            .iter()
            .map(|r: &RecentPurchase| r.nonce.as_str())
            .collect()
    }

    #[test]
    fn a_snapshot_gains_what_it_missed_and_nothing_twice() {
        let csc = Csc::default();
        let mut overlay = csc.lock();
        let (one, one_versions) = first_sale(&csc, &mut overlay);
        // Read after the first sale committed: it already counts it.
        let read = snapshot(&csc, 1, one.clone(), one_versions.clone());
        sell(
            &csc,
            &mut overlay,
            waiting(),
            "vm-1",
            "n2",
            &one,
            &one_versions,
        );
        let current = csc.current(&overlay, read, "vm-1").unwrap();
        assert_eq!(day(&current.state, "vm-1"), Some(2));
        assert_eq!(recent(&current.state), ["n1", "n2"]);
        assert_eq!(
            available(&current.state),
            1000 - 2 * 83,
            "each sale debited once"
        );
        assert_eq!(current.versions[&csc::recent_key("alice")], 2);
        assert_eq!(current.last_deposit, Some(UnixSeconds(100)));
        // Read before either: both are missing from it, and both are added.
        let before = snapshot(&csc, 0, empty(), Versions::new());
        let current = csc.current(&overlay, before, "vm-1").unwrap();
        assert_eq!(day(&current.state, "vm-1"), Some(2));
        assert_eq!(available(&current.state), 1000 - 2 * 83);
    }

    #[test]
    fn a_snapshot_drops_the_online_hold_of_a_microcheck_cleared_since() {
        let csc = Csc::default();
        let mut overlay = csc.lock();
        let hold = |nonce: &str| csc::HeldOnline {
            merchant: "vm-1".to_owned(),
            nonce: nonce.to_owned(),
            amount_minor: 500,
            until: UnixSeconds(u64::MAX),
        };
        let mut held = empty();
        for payer in held.payers.values_mut() {
            payer.held_online = vec![hold("n1"), hold("other")];
        }
        // Read before the sale under the first hold was written: the overlay adds its debit and
        // lets its hold go, so the snapshot holds only the other.
        let before = snapshot(&csc, 0, held.clone(), Versions::new());
        sell(
            &csc,
            &mut overlay,
            waiting(),
            "vm-1",
            "n1",
            &held,
            &Versions::new(),
        );
        let current = csc.current(&overlay, before, "vm-1").unwrap();
        let payer = &current.state.payers["fp-alice"];
        assert_eq!(payer.held_online, [hold("other")]);
        assert_eq!(
            payer.available_for("vm-1", "x", UnixSeconds(0)),
            1000 - 83 - 500
        );
    }

    #[test]
    fn a_failed_batch_is_not_counted() {
        let csc = Csc::default();
        let mut overlay = csc.lock();
        let (one, one_versions) = first_sale(&csc, &mut overlay);
        let (_, _, second) = sell(
            &csc,
            &mut overlay,
            group(2),
            "vm-1",
            "n2",
            &one,
            &one_versions,
        );
        second.failed();
        let read = snapshot(&csc, 1, one.clone(), one_versions.clone());
        let current = csc.current(&overlay, read, "vm-1").unwrap();
        assert_eq!(day(&current.state, "vm-1"), Some(1));
        assert_eq!(recent(&current.state), ["n1"]);
        assert_eq!(available(&current.state), 1000 - 83);
        assert_eq!(current.versions[&csc::recent_key("alice")], 1);
    }

    #[test]
    fn another_machines_sale_moves_the_payer_not_this_machines_counters() {
        let csc = Csc::default();
        let mut overlay = csc.lock();
        let read = snapshot(&csc, 0, empty(), Versions::new());
        sell(
            &csc,
            &mut overlay,
            waiting(),
            "vm-2",
            "n1",
            &empty(),
            &Versions::new(),
        );
        let current = csc.current(&overlay, read, "vm-1").unwrap();
        assert_eq!(day(&current.state, "vm-1"), None);
        assert_eq!(day(&current.state, "vm-2"), None, "not read for vm-1");
        assert!(current.state.merchant_day.is_empty());
        assert_eq!(recent(&current.state), ["n1"]);
        assert_eq!(available(&current.state), 1000 - 83);
        assert_eq!(current.last_deposit, None, "vm-2's deposit is not vm-1's");
    }

    #[test]
    fn a_snapshot_from_before_a_change_is_read_again() {
        let mut csc = Csc::default();
        let overlay = csc.lock();
        let read = snapshot(&csc, 0, empty(), Versions::new());
        csc.changed();
        assert!(csc.current(&overlay, read, "vm-1").is_none());
        let read = snapshot(&csc, 0, empty(), Versions::new());
        assert!(csc.current(&overlay, read, "vm-1").is_some());
    }

    #[test]
    fn a_snapshot_read_before_a_forgotten_batch_finished_is_read_again() {
        let csc = Csc::default();
        let mut overlay = csc.lock();
        let read = snapshot(&csc, 0, empty(), Versions::new());
        sell_many(&csc, &mut overlay, OVERLAY_BATCHES_MAX + 1, |n| {
            group(n as u64 + 1)
        });
        // The first batch (group 1) is forgotten; a snapshot read before group 1 finished may
        // lack it, one read after it holds it.
        assert!(csc.current(&overlay, read, "vm-1").is_none());
        let read = snapshot(&csc, 1, empty(), Versions::new());
        assert!(csc.current(&overlay, read, "vm-1").is_some());
    }

    #[test]
    fn batches_still_waiting_to_be_written_are_never_forgotten() {
        let csc = Csc::default();
        let mut overlay = csc.lock();
        let read = snapshot(&csc, 0, empty(), Versions::new());
        let sales = OVERLAY_BATCHES_MAX + 10;
        let state = sell_many(&csc, &mut overlay, sales, |_| waiting());
        let current = csc.current(&overlay, read, "vm-1").unwrap();
        assert_eq!(day(&current.state, "vm-1"), Some(sales as u32));
        assert_eq!(available(&current.state), 1000 - 83 * sales as i64);
        assert_eq!(recent(&current.state), recent(&state));
    }
}
