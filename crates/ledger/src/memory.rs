//! A ledger held in memory: ordered maps instead of tables, the same [`run_group`] as every
//! backend.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use offpay_money::Currency;

use crate::engine::{Changes, RecordKey, References, SequenceNumbers, Snapshot};
use crate::ids::{AccountId, TransferId};
use crate::model::{
    Account, Batch, CurrencyTotal, HISTORY_PAGE_MAX, RECORD_PAGE_MAX, Record, Timestamp,
    TransferRecord,
};
use crate::store::{GroupResult, GroupTransaction, LedgerStore, StoreError, run_group};

/// A [`LedgerStore`] in process memory, for tests and the simulator: it decides batches exactly
/// as the SQL backends do, but it is not durable (everything is gone when it is dropped).
///
/// It passes the conformance suite like every backend. Cloning it snapshots the whole ledger; the
/// clone and the original are independent from then on.
#[derive(Clone, PartialEq, Eq)]
pub struct MemoryStore {
    accounts: BTreeMap<AccountId, Account>,
    /// Transfers by sequence number: the table the history chains run through.
    transfers: BTreeMap<u64, TransferRecord>,
    /// Each transfer's sequence number, by id.
    transfer_sequences: BTreeMap<TransferId, u64>,
    /// Existing records' values and versions (a deleted record is removed).
    records: BTreeMap<RecordKey, (Vec<u8>, u64)>,
    /// The first free sequence number; starts at 1, as 0 means "none" in the history chains.
    next_sequence: u64,
}

impl MemoryStore {
    /// An empty ledger.
    pub fn new() -> MemoryStore {
        MemoryStore {
            accounts: BTreeMap::new(),
            transfers: BTreeMap::new(),
            transfer_sequences: BTreeMap::new(),
            records: BTreeMap::new(),
            next_sequence: 1,
        }
    }

    /// Writes what [`MemoryGroup::write`] staged. Everything that could fail was checked there,
    /// so this only inserts and removes.
    fn apply(&mut self, staged: Staged) {
        for account in staged.accounts {
            self.accounts.insert(account.id.clone(), account);
        }
        for record in staged.transfers {
            self.transfer_sequences
                .insert(record.transfer.id.clone(), record.sequence);
            self.transfers.insert(record.sequence, record);
        }
        for (key, value, version) in staged.records {
            match value {
                Some(value) => {
                    self.records.insert(key, (value, version));
                }
                None => {
                    self.records.remove(&key);
                }
            }
        }
        self.next_sequence = staged.next_sequence;
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

/// Counts rather than contents: a simulator's store holds far too much to print.
impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("accounts", &self.accounts.len())
            .field("transfers", &self.transfers.len())
            .field("records", &self.records.len())
            .field("next_sequence", &self.next_sequence)
            .finish()
    }
}

/// What a group writes, checked against the store and owned, so that it can be applied after
/// [`run_group`] has decided the whole group, or dropped if anything failed.
#[derive(Debug)]
struct Staged {
    /// Accounts to insert or replace, whole.
    accounts: Vec<Account>,
    /// Transfers to insert, and existing pending transfers with their new state, whole.
    transfers: Vec<TransferRecord>,
    /// Records to upsert (`Some`) or delete (`None`).
    records: Vec<(RecordKey, Option<Vec<u8>>, u64)>,
    next_sequence: u64,
}

/// One group commit over a [`MemoryStore`], which it only reads: writes are staged.
#[derive(Debug)]
struct MemoryGroup<'a> {
    store: &'a MemoryStore,
    staged: Option<Staged>,
}

impl GroupTransaction for MemoryGroup<'_> {
    fn sequence_numbers(&mut self, _count: usize) -> Result<SequenceNumbers, StoreError> {
        Ok(SequenceNumbers::From(self.store.next_sequence))
    }

    fn load(&mut self, references: &References) -> Result<Snapshot, StoreError> {
        let store = self.store;
        let mut snapshot = Snapshot::default();
        for id in &references.accounts {
            if let Some(account) = store.accounts.get(id) {
                snapshot.accounts.insert(id.clone(), account.clone());
            }
        }
        for id in &references.transfers {
            if let Some(sequence) = store.transfer_sequences.get(id) {
                let record = store.transfers.get(sequence).ok_or_else(|| {
                    StoreError::Corrupt(format!("transfer {id}: sequence {sequence} missing"))
                })?;
                snapshot.transfers.insert(id.clone(), record.clone());
            }
        }
        for key in &references.records {
            if let Some((_, version)) = store.records.get(key) {
                snapshot.record_versions.insert(key.clone(), *version);
            }
        }
        Ok(snapshot)
    }

    /// Checks `changes` against the store as a database's constraints would, and stages them.
    fn write(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let store = self.store;
        let mut accounts =
            Vec::with_capacity(changes.accounts_created.len() + changes.accounts_updated.len());
        for account in &changes.accounts_created {
            if store.accounts.contains_key(&account.id) {
                return Err(StoreError::Corrupt(format!(
                    "account {} created twice",
                    account.id
                )));
            }
            accounts.push(account.clone());
        }
        for account in &changes.accounts_updated {
            if !store.accounts.contains_key(&account.id) {
                return Err(StoreError::Corrupt(format!(
                    "account {} vanished during a commit",
                    account.id
                )));
            }
            accounts.push(account.clone());
        }
        let mut transfers =
            Vec::with_capacity(changes.transfers_created.len() + changes.pending_resolved.len());
        for record in &changes.transfers_created {
            if record.sequence < store.next_sequence
                || record.sequence >= changes.next_sequence
                || store.transfers.contains_key(&record.sequence)
                || store.transfer_sequences.contains_key(&record.transfer.id)
            {
                return Err(StoreError::Corrupt(format!(
                    "transfer {} at sequence {}: id or sequence already taken",
                    record.transfer.id, record.sequence
                )));
            }
            transfers.push(record.clone());
        }
        for (id, state) in &changes.pending_resolved {
            let mut record = store
                .transfer_sequences
                .get(id)
                .and_then(|sequence| store.transfers.get(sequence))
                .cloned()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("pending transfer {id} vanished during a commit"))
                })?;
            record.pending_state = Some(*state);
            transfers.push(record);
        }
        if changes.next_sequence < store.next_sequence {
            return Err(StoreError::Corrupt(format!(
                "next sequence would go back from {} to {}",
                store.next_sequence, changes.next_sequence
            )));
        }
        self.staged = Some(Staged {
            accounts,
            transfers,
            records: changes.records.clone(),
            next_sequence: changes.next_sequence,
        });
        Ok(())
    }
}

impl LedgerStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    /// Decides the group with [`run_group`] against the store as it is, and applies what it
    /// wrote only when the whole group succeeded: a group that fails changes nothing.
    fn commit(&mut self, batches: &[Batch], now: Timestamp) -> Result<GroupResult, StoreError> {
        let mut group = MemoryGroup {
            store: self,
            staged: None,
        };
        let results = run_group(&mut group, batches, now)?;
        if let Some(staged) = group.staged {
            self.apply(staged);
        }
        Ok(results)
    }

    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        Ok(self.accounts.get(id).cloned())
    }

    fn accounts(
        &mut self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .accounts
            .range((start, Bound::Unbounded))
            .take(limit.min(RECORD_PAGE_MAX))
            .map(|(_, account)| account.clone())
            .collect())
    }

    fn transfer(&mut self, id: &TransferId) -> Result<Option<TransferRecord>, StoreError> {
        Ok(self
            .transfer_sequences
            .get(id)
            .and_then(|sequence| self.transfers.get(sequence))
            .cloned())
    }

    fn history(
        &mut self,
        account: &AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, StoreError> {
        let limit = limit.min(HISTORY_PAGE_MAX);
        // `previous_for` is `None` both at the end of the chain and when `before` is not this
        // account's transfer: either way the page is empty.
        let mut next = match before {
            None => self
                .accounts
                .get(account)
                .map_or(0, |stored| stored.last_sequence),
            Some(sequence) => self
                .transfers
                .get(&sequence)
                .and_then(|record| record.previous_for(account))
                .unwrap_or(0),
        };
        let mut page = Vec::new();
        while next != 0 && page.len() < limit {
            let record = self.transfers.get(&next).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "history of {account}: transfer {next} is missing from the chain"
                ))
            })?;
            if record.transfer.debit_account != *account
                && record.transfer.credit_account != *account
            {
                return Err(StoreError::Corrupt(format!(
                    "history of {account}: transfer {next} does not involve the account"
                )));
            }
            next = record.previous_for(account).unwrap_or(0);
            page.push(record.clone());
        }
        Ok(page)
    }

    fn totals(&mut self) -> Result<Vec<CurrencyTotal>, StoreError> {
        let mut totals = BTreeMap::<Currency, CurrencyTotal>::new();
        for account in self.accounts.values() {
            let total = totals
                .entry(account.currency)
                .or_insert_with(|| CurrencyTotal {
                    currency: account.currency,
                    accounts: 0,
                    posted_sum: 0,
                    pending_sum: 0,
                });
            total.accounts += 1;
            total.posted_sum +=
                i128::from(account.credits_posted) - i128::from(account.debits_posted);
            total.pending_sum +=
                i128::from(account.credits_pending) - i128::from(account.debits_pending);
        }
        Ok(totals.into_values().collect())
    }

    fn record(&mut self, namespace: &str, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self
            .records
            .get(&(namespace.to_owned(), key.to_owned()))
            .map(|(value, version)| Record {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                value: value.clone(),
                version: *version,
            }))
    }

    fn records(
        &mut self,
        namespace: &str,
        key_prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        // Keys with the prefix are contiguous in key order and start at the prefix itself.
        let start = match after_key {
            Some(after) if after >= key_prefix => {
                Bound::Excluded((namespace.to_owned(), after.to_owned()))
            }
            _ => Bound::Included((namespace.to_owned(), key_prefix.to_owned())),
        };
        Ok(self
            .records
            .range((start, Bound::Unbounded))
            .take_while(|((stored_namespace, key), _)| {
                stored_namespace == namespace && key.starts_with(key_prefix)
            })
            .take(limit.min(RECORD_PAGE_MAX))
            .map(|((namespace, key), (value, version))| Record {
                namespace: namespace.clone(),
                key: key.clone(),
                value: value.clone(),
                version: *version,
            })
            .collect())
    }

    /// Nothing else can change the store while `reads` hold `&mut self`, so every read already
    /// sees the same state.
    fn read_transaction(
        &mut self,
        reads: &mut dyn FnMut(&mut dyn LedgerStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        reads(self)
    }
}

#[cfg(test)]
mod tests {
    use offpay_money::Currency;

    use super::*;
    use crate::model::{
        AccountKind, BalanceLimits, NewAccount, Operation, RecordWrite, Transfer, TransferKind,
    };

    const NOW: Timestamp = Timestamp(1);

    fn open(id: &str, kind: AccountKind) -> Operation {
        Operation::CreateAccount(NewAccount {
            id: AccountId::new(id).unwrap(),
            kind,
            currency: Currency::KES,
            limits: BalanceLimits {
                balance_min: kind.default_balance_min(),
                balance_max: None,
            },
        })
    }

    fn pay(id: &str, from: &str, to: &str, minor: u64) -> Operation {
        Operation::Transfer(Transfer {
            id: TransferId::new(id).unwrap(),
            debit_account: AccountId::new(from).unwrap(),
            credit_account: AccountId::new(to).unwrap(),
            amount: Currency::KES.minor(minor).unwrap(),
            kind: TransferKind::Posted,
            memo: String::new(),
        })
    }

    fn put(key: &str) -> Operation {
        Operation::PutRecord(RecordWrite {
            namespace: "n".into(),
            key: key.into(),
            value: Some(key.as_bytes().to_vec()),
            expected_version: None,
        })
    }

    fn must_commit(store: &mut MemoryStore, operations: Vec<Operation>) {
        let results = store.commit(&[Batch { operations }], NOW).unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    /// The float and Alice, Alice paid 1000 (transfer `t1`).
    fn funded() -> MemoryStore {
        let mut store = MemoryStore::new();
        must_commit(
            &mut store,
            vec![
                open("float", AccountKind::OperatorFloat),
                open("alice", AccountKind::Customer),
                pay("t1", "float", "alice", 1000),
            ],
        );
        store
    }

    #[test]
    fn a_group_that_fails_to_write_changes_nothing() {
        let mut store = funded();
        // A transfer squatting on the next sequence number: the write of any new transfer now
        // collides with it, after the engine has decided the group.
        let mut squatter = store.transfers[&1].clone();
        squatter.sequence = store.next_sequence;
        squatter.transfer.id = TransferId::new("squatter").unwrap();
        store.transfers.insert(squatter.sequence, squatter);
        let before = store.clone();
        let outcome = store.commit(
            &[
                Batch {
                    operations: vec![open("bob", AccountKind::Customer), put("kept?")],
                },
                Batch {
                    operations: vec![pay("t2", "alice", "bob", 10)],
                },
            ],
            NOW,
        );
        assert!(
            matches!(outcome, Err(StoreError::Corrupt(_))),
            "{outcome:?}"
        );
        assert!(store == before, "the failed group wrote something");
        assert!(
            store
                .account(&AccountId::new("bob").unwrap())
                .unwrap()
                .is_none()
        );
        assert!(store.record("n", "kept?").unwrap().is_none());
    }

    #[test]
    fn a_clone_is_independent() {
        let mut original = funded();
        let mut copy = original.clone();
        must_commit(
            &mut copy,
            vec![
                open("bob", AccountKind::Customer),
                pay("t2", "alice", "bob", 10),
                put("k"),
            ],
        );
        must_commit(&mut original, vec![pay("t3", "alice", "float", 1)]);
        let alice = AccountId::new("alice").unwrap();
        assert_eq!(original.account(&alice).unwrap().unwrap().balance(), 999);
        assert_eq!(copy.account(&alice).unwrap().unwrap().balance(), 990);
        assert!(
            original
                .account(&AccountId::new("bob").unwrap())
                .unwrap()
                .is_none()
        );
        assert!(original.record("n", "k").unwrap().is_none());
        assert!(
            copy.transfer(&TransferId::new("t3").unwrap())
                .unwrap()
                .is_none()
        );
        // Both handed out sequence 2, each in its own ledger.
        assert_eq!(original.history(&alice, None, 10).unwrap()[0].sequence, 2);
        assert_eq!(copy.history(&alice, None, 10).unwrap()[0].sequence, 2);
    }

    #[test]
    fn pages_are_capped() {
        let mut store = funded();
        let count = HISTORY_PAGE_MAX.max(RECORD_PAGE_MAX) + 1;
        let mut operations: Vec<Operation> = (0..count)
            .map(|index| pay(&format!("p{index}"), "float", "alice", 1))
            .collect();
        operations.extend((0..count).map(|index| put(&format!("k{index:05}"))));
        operations
            .extend((0..count).map(|index| open(&format!("c{index:05}"), AccountKind::Customer)));
        must_commit(&mut store, operations);
        let alice = AccountId::new("alice").unwrap();
        assert_eq!(
            store.history(&alice, None, usize::MAX).unwrap().len(),
            HISTORY_PAGE_MAX
        );
        assert_eq!(
            store.records("n", "k", None, usize::MAX).unwrap().len(),
            RECORD_PAGE_MAX
        );
        assert_eq!(
            store.accounts(None, usize::MAX).unwrap().len(),
            RECORD_PAGE_MAX
        );
        assert!(store.history(&alice, None, 0).unwrap().is_empty());
    }

    #[test]
    fn scans_stop_at_the_namespace_and_start_at_the_prefix() {
        let mut store = MemoryStore::new();
        must_commit(
            &mut store,
            vec![
                put("a"),
                put("b1"),
                put("b2"),
                put("c"),
                Operation::PutRecord(RecordWrite {
                    namespace: "o".into(),
                    key: "b3".into(),
                    value: Some(vec![]),
                    expected_version: None,
                }),
            ],
        );
        let keys = |records: Vec<Record>| records.into_iter().map(|r| r.key).collect::<Vec<_>>();
        // A cursor before the prefix starts at the prefix; one past it gives nothing.
        assert_eq!(
            keys(store.records("n", "b", Some("a"), 10).unwrap()),
            ["b1", "b2"]
        );
        assert!(store.records("n", "b", Some("b9"), 10).unwrap().is_empty());
        assert_eq!(keys(store.records("n", "", Some("b2"), 10).unwrap()), ["c"]);
        assert!(store.records("m", "", None, 10).unwrap().is_empty());
    }
}
