//! The ledger's rules as pure logic: given the accounts, transfers and records a group of batches
//! refers to, decide each batch and compute what must be written. Every backend runs this same
//! code, so the rules cannot drift between SQLite and PostgreSQL, and they are tested without a
//! database.
//!
//! A *group* is several batches committed in one database transaction (group commit). Each batch
//! is still atomic on its own: a refused batch leaves no trace, and the batches after it see the
//! state as if it had never been submitted. Batches are applied in place and rolled back from an
//! undo log when refused (refusals are rare; the common path copies nothing).

use offpay_money::Currency;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::ids::{AccountId, TransferId};
use crate::model::{
    Account, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, BatchRefusal, MEMO_LENGTH_MAX, NewAccount,
    Operation, Outcome, PendingState, RECORD_KEY_LENGTH_MAX, RECORD_NAMESPACE_LENGTH_MAX,
    RECORD_VALUE_LENGTH_MAX, RecordCheck, RecordWrite, Refusal, Timestamp, Transfer, TransferKind,
    TransferRecord,
};

/// A record's identity: namespace and key.
pub type RecordKey = (String, String);

/// Everything a group of batches refers to; the backend loads exactly these before deciding.
#[derive(Debug, Default)]
pub struct References {
    /// Accounts named by any operation.
    pub accounts: FxHashSet<AccountId>,
    /// Transfers named (as ids, or as the pending transfer of a post or void).
    pub transfers: FxHashSet<TransferId>,
    /// Records written.
    pub records: FxHashSet<RecordKey>,
    /// How many transfer operations the batches hold: the most sequence numbers the group can
    /// hand out.
    pub transfer_operations: usize,
}

impl References {
    /// Collects the references of `batches`.
    pub fn of(batches: &[Batch]) -> References {
        let mut references = References::default();
        for operation in batches.iter().flat_map(|batch| &batch.operations) {
            match operation {
                Operation::CreateAccount(account) => {
                    references.accounts.insert(account.id.clone());
                }
                Operation::Transfer(transfer) => {
                    references.transfer_operations += 1;
                    if !references.accounts.contains(&transfer.debit_account) {
                        references.accounts.insert(transfer.debit_account.clone());
                    }
                    if !references.accounts.contains(&transfer.credit_account) {
                        references.accounts.insert(transfer.credit_account.clone());
                    }
                    references.transfers.insert(transfer.id.clone());
                    if let TransferKind::PostPending(pending) | TransferKind::VoidPending(pending) =
                        &transfer.kind
                    {
                        references.transfers.insert(pending.clone());
                    }
                }
                Operation::SetLimits { account, .. } => {
                    references.accounts.insert(account.clone());
                }
                Operation::PutRecord(write) => {
                    references
                        .records
                        .insert((write.namespace.clone(), write.key.clone()));
                }
                Operation::CheckRecord(check) => {
                    references
                        .records
                        .insert((check.namespace.clone(), check.key.clone()));
                }
            }
        }
        references
    }
}

/// The stored state of what a group refers to, as loaded by the backend. Missing keys mean "does
/// not exist".
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Existing accounts among the referenced ones.
    pub accounts: FxHashMap<AccountId, Account>,
    /// Existing transfers among the referenced ones.
    pub transfers: FxHashMap<TransferId, TransferRecord>,
    /// Current versions of existing referenced records.
    pub record_versions: FxHashMap<RecordKey, u64>,
}

/// What a committed group changes; the backend writes exactly this, in one database transaction.
#[derive(Debug, Default)]
pub struct Changes {
    /// Accounts to insert.
    pub accounts_created: Vec<Account>,
    /// Existing accounts whose sums, limits or last sequence changed (full new rows).
    pub accounts_updated: Vec<Account>,
    /// Transfers to insert, in sequence order.
    pub transfers_created: Vec<TransferRecord>,
    /// Existing pending transfers that were posted or voided.
    pub pending_resolved: Vec<(TransferId, PendingState)>,
    /// Records to upsert (`Some`) or delete (`None`), with their new version.
    pub records: Vec<(RecordKey, Option<Vec<u8>>, u64)>,
    /// The first sequence number after those this group used: what a store that keeps its own
    /// counter (SQLite, memory) saves as its next free number.
    pub next_sequence: u64,
}

/// The sequence numbers a group may give its new transfers, in ascending order. A transfer's
/// sequence number is unique and, for each account, larger than that of every transfer committed
/// on the account before it (the history of an account is in sequence order). Numbers across
/// accounts are not in commit order, and may have gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceNumbers {
    /// Every number from this one up, without gaps: a store that serialises its committers and
    /// keeps its own counter (SQLite, memory).
    From(u64),
    /// Numbers drawn for this group from a database sequence after its accounts were locked
    /// (PostgreSQL), one for each transfer the group holds; ascending, not necessarily
    /// contiguous.
    Drawn(Vec<u64>),
}

impl SequenceNumbers {
    /// Numbers drawn from a database sequence, put in ascending order.
    pub fn drawn(mut numbers: Vec<u64>) -> SequenceNumbers {
        numbers.sort_unstable();
        SequenceNumbers::Drawn(numbers)
    }

    /// The `index`th number (from 0), if there is one.
    fn nth(&self, index: usize) -> Option<u64> {
        match self {
            SequenceNumbers::From(first) => first.checked_add(index as u64),
            SequenceNumbers::Drawn(numbers) => numbers.get(index).copied(),
        }
    }

    /// Whether there are at least `count` numbers.
    pub fn holds(&self, count: usize) -> bool {
        match self {
            SequenceNumbers::From(first) => first.checked_add(count as u64).is_some(),
            SequenceNumbers::Drawn(numbers) => numbers.len() >= count,
        }
    }

    /// The first number after the first `used`.
    fn after(&self, used: usize) -> u64 {
        match self {
            SequenceNumbers::From(first) => first + used as u64,
            SequenceNumbers::Drawn(numbers) => match used.checked_sub(1) {
                Some(last) => numbers.get(last).map_or(0, |number| number + 1),
                None => numbers.first().copied().unwrap_or(0),
            },
        }
    }
}

impl Changes {
    /// True when nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.accounts_created.is_empty()
            && self.accounts_updated.is_empty()
            && self.transfers_created.is_empty()
            && self.pending_resolved.is_empty()
            && self.records.is_empty()
    }
}

#[derive(Debug)]
struct AccountSlot {
    account: Account,
    existed: bool,
    dirty: bool,
    /// The batch that last saved an undo entry for this account.
    undo_batch: u64,
}

/// The mutable part of an account, saved before a batch first changes it.
#[derive(Clone, Copy, Debug)]
struct AccountState {
    limits: BalanceLimits,
    debits_pending: i64,
    debits_posted: i64,
    credits_pending: i64,
    credits_posted: i64,
    last_sequence: u64,
    dirty: bool,
}

#[derive(Debug)]
struct TransferSlot {
    record: TransferRecord,
    existed: bool,
    /// An existing pending transfer whose state this group changed.
    resolved: bool,
}

#[derive(Clone, Debug)]
struct RecordSlot {
    value: Option<Vec<u8>>,
    version: u64,
    written: bool,
}

#[derive(Debug)]
enum Undo {
    Account {
        index: usize,
        previous: AccountState,
    },
    AccountCreated {
        index: usize,
    },
    Pending {
        id: TransferId,
        state: Option<PendingState>,
        resolved: bool,
    },
    Record {
        key: RecordKey,
        previous: Option<RecordSlot>,
    },
}

/// Decides the batches of one group against a snapshot.
#[derive(Debug)]
pub struct GroupCommit {
    now: Timestamp,
    account_index: FxHashMap<AccountId, usize>,
    accounts: Vec<AccountSlot>,
    transfers: FxHashMap<TransferId, TransferSlot>,
    records: FxHashMap<RecordKey, RecordSlot>,
    sequences: SequenceNumbers,
    /// How many of `sequences` are handed out.
    sequences_used: usize,
    batch_number: u64,
    undo: Vec<Undo>,
    conservation: Vec<(Currency, i128, i128)>,
}

impl GroupCommit {
    /// Starts deciding a group that gives its new transfers `sequences`, which must hold at least
    /// one number for each transfer operation in the group.
    pub fn new(snapshot: Snapshot, sequences: SequenceNumbers, now: Timestamp) -> GroupCommit {
        let mut account_index = FxHashMap::default();
        account_index.reserve(snapshot.accounts.len());
        let mut accounts = Vec::with_capacity(snapshot.accounts.len());
        for (id, account) in snapshot.accounts {
            account_index.insert(id, accounts.len());
            accounts.push(AccountSlot {
                account,
                existed: true,
                dirty: false,
                undo_batch: 0,
            });
        }
        let transfers = snapshot
            .transfers
            .into_iter()
            .map(|(id, record)| {
                (
                    id,
                    TransferSlot {
                        record,
                        existed: true,
                        resolved: false,
                    },
                )
            })
            .collect();
        let records = snapshot
            .record_versions
            .into_iter()
            .map(|(key, version)| {
                (
                    key,
                    RecordSlot {
                        value: None,
                        version,
                        written: false,
                    },
                )
            })
            .collect();
        GroupCommit {
            now,
            account_index,
            accounts,
            transfers,
            records,
            sequences,
            sequences_used: 0,
            batch_number: 0,
            undo: Vec::new(),
            conservation: Vec::new(),
        }
    }

    /// Decides one batch: either every operation applies (and later batches see it) or none does.
    pub fn apply(&mut self, batch: &Batch) -> Result<Vec<Outcome>, BatchRefusal> {
        if batch.operations.is_empty() {
            return Err(BatchRefusal {
                index: 0,
                reason: Refusal::EmptyBatch,
            });
        }
        if batch.operations.len() > BATCH_OPERATIONS_MAX {
            return Err(BatchRefusal {
                index: 0,
                reason: Refusal::BatchTooLarge,
            });
        }
        self.batch_number += 1;
        self.undo.clear();
        self.conservation.clear();
        let used_before = self.sequences_used;
        let mut outcomes = Vec::with_capacity(batch.operations.len());
        for (index, operation) in batch.operations.iter().enumerate() {
            match self.apply_operation(operation) {
                Ok(outcome) => outcomes.push(outcome),
                Err(reason) => {
                    self.roll_back(used_before);
                    return Err(BatchRefusal { index, reason });
                }
            }
        }
        for (currency, posted, pending) in &self.conservation {
            assert!(
                *posted == 0 && *pending == 0,
                "money conservation broken in a batch: {currency} posted {posted} pending {pending}"
            );
        }
        Ok(outcomes)
    }

    /// Ends the group and returns what to write.
    pub fn finish(self) -> Changes {
        let mut changes = Changes {
            next_sequence: self.sequences.after(self.sequences_used),
            ..Changes::default()
        };
        for slot in self.accounts {
            match (slot.dirty, slot.existed) {
                (true, true) => changes.accounts_updated.push(slot.account),
                (true, false) => changes.accounts_created.push(slot.account),
                (false, _) => {}
            }
        }
        for (id, slot) in self.transfers {
            if !slot.existed {
                changes.transfers_created.push(slot.record);
            } else if slot.resolved
                && let Some(state) = slot.record.pending_state
            {
                changes.pending_resolved.push((id, state));
            }
        }
        changes
            .transfers_created
            .sort_unstable_by_key(|record| record.sequence);
        for (key, slot) in self.records {
            if slot.written {
                changes.records.push((key, slot.value, slot.version));
            }
        }
        changes
    }

    fn roll_back(&mut self, used_before: usize) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Account { index, previous } => {
                    let account = &mut self.accounts[index].account;
                    account.limits = previous.limits;
                    account.debits_pending = previous.debits_pending;
                    account.debits_posted = previous.debits_posted;
                    account.credits_pending = previous.credits_pending;
                    account.credits_posted = previous.credits_posted;
                    account.last_sequence = previous.last_sequence;
                    self.accounts[index].dirty = previous.dirty;
                }
                Undo::AccountCreated { index } => {
                    assert_eq!(
                        index + 1,
                        self.accounts.len(),
                        "accounts are undone newest first"
                    );
                    if let Some(slot) = self.accounts.pop() {
                        self.account_index.remove(&slot.account.id);
                    }
                }
                Undo::Pending {
                    id,
                    state,
                    resolved,
                } => {
                    if let Some(slot) = self.transfers.get_mut(&id) {
                        slot.record.pending_state = state;
                        slot.resolved = resolved;
                    }
                }
                Undo::Record { key, previous } => match previous {
                    Some(slot) => {
                        self.records.insert(key, slot);
                    }
                    None => {
                        self.records.remove(&key);
                    }
                },
            }
        }
        if self.sequences_used != used_before {
            // The numbers are ascending, so the batch's transfers are those at or above its first.
            if let Some(first) = self.sequences.nth(used_before) {
                self.transfers
                    .retain(|_, slot| slot.existed || slot.record.sequence < first);
            }
            self.sequences_used = used_before;
        }
    }

    fn apply_operation(&mut self, operation: &Operation) -> Result<Outcome, Refusal> {
        match operation {
            Operation::CreateAccount(definition) => self.create_account(definition),
            Operation::Transfer(transfer) => self.apply_transfer(transfer),
            Operation::SetLimits { account, limits } => self.set_limits(account, *limits),
            Operation::PutRecord(write) => self.put_record(write),
            Operation::CheckRecord(check) => self.check_record(check),
        }
    }

    /// Saves an account's state before the current batch first changes it.
    fn touch(&mut self, index: usize) {
        let slot = &mut self.accounts[index];
        if slot.undo_batch != self.batch_number {
            slot.undo_batch = self.batch_number;
            let account = &slot.account;
            self.undo.push(Undo::Account {
                index,
                previous: AccountState {
                    limits: account.limits,
                    debits_pending: account.debits_pending,
                    debits_posted: account.debits_posted,
                    credits_pending: account.credits_pending,
                    credits_posted: account.credits_posted,
                    last_sequence: account.last_sequence,
                    dirty: slot.dirty,
                },
            });
        }
        slot.dirty = true;
    }

    fn create_account(&mut self, definition: &NewAccount) -> Result<Outcome, Refusal> {
        if let Some(&index) = self.account_index.get(&definition.id) {
            return if self.accounts[index].account.matches(definition) {
                Ok(Outcome::AccountExists)
            } else {
                Err(Refusal::AccountConflict {
                    account: definition.id.clone(),
                })
            };
        }
        let fresh = Account::open(definition, self.now);
        if !limits_hold(&fresh, definition.limits) {
            return Err(Refusal::InvalidLimits {
                account: definition.id.clone(),
            });
        }
        let index = self.accounts.len();
        self.accounts.push(AccountSlot {
            account: fresh,
            existed: false,
            dirty: true,
            undo_batch: self.batch_number,
        });
        self.account_index.insert(definition.id.clone(), index);
        self.undo.push(Undo::AccountCreated { index });
        Ok(Outcome::AccountCreated)
    }

    fn set_limits(&mut self, id: &AccountId, limits: BalanceLimits) -> Result<Outcome, Refusal> {
        let index = *self
            .account_index
            .get(id)
            .ok_or_else(|| Refusal::UnknownAccount {
                account: id.clone(),
            })?;
        if !limits_hold(&self.accounts[index].account, limits) {
            return Err(Refusal::InvalidLimits {
                account: id.clone(),
            });
        }
        self.touch(index);
        self.accounts[index].account.limits = limits;
        Ok(Outcome::LimitsSet)
    }

    fn check_record(&mut self, check: &RecordCheck) -> Result<Outcome, Refusal> {
        if check.namespace.is_empty()
            || check.namespace.len() > RECORD_NAMESPACE_LENGTH_MAX
            || check.key.is_empty()
            || check.key.len() > RECORD_KEY_LENGTH_MAX
        {
            return Err(Refusal::RecordInvalid {
                namespace: check.namespace.clone(),
                key: check.key.clone(),
            });
        }
        let key: RecordKey = (check.namespace.clone(), check.key.clone());
        let current = self.records.get(&key).map_or(0, |slot| slot.version);
        if current != check.version {
            return Err(Refusal::RecordVersionMismatch {
                namespace: check.namespace.clone(),
                key: check.key.clone(),
                expected: check.version,
                actual: current,
            });
        }
        Ok(Outcome::RecordChecked)
    }

    fn put_record(&mut self, write: &RecordWrite) -> Result<Outcome, Refusal> {
        if write.namespace.is_empty()
            || write.namespace.len() > RECORD_NAMESPACE_LENGTH_MAX
            || write.key.is_empty()
            || write.key.len() > RECORD_KEY_LENGTH_MAX
            || write
                .value
                .as_ref()
                .is_some_and(|value| value.len() > RECORD_VALUE_LENGTH_MAX)
        {
            return Err(Refusal::RecordInvalid {
                namespace: write.namespace.clone(),
                key: write.key.clone(),
            });
        }
        let key: RecordKey = (write.namespace.clone(), write.key.clone());
        let current = self.records.get(&key).map_or(0, |slot| slot.version);
        if let Some(expected) = write.expected_version
            && expected != current
        {
            return Err(Refusal::RecordVersionMismatch {
                namespace: write.namespace.clone(),
                key: write.key.clone(),
                expected,
                actual: current,
            });
        }
        // A delete resets the version to 0, so "must not exist" (expected 0) holds again after it.
        let version = if write.value.is_some() {
            current + 1
        } else {
            0
        };
        // The slot replaced is moved into the undo log, not copied: values can be large.
        let previous = self.records.insert(
            key.clone(),
            RecordSlot {
                value: write.value.clone(),
                version,
                written: true,
            },
        );
        self.undo.push(Undo::Record { key, previous });
        Ok(Outcome::RecordWritten { version })
    }

    fn account_for(&self, transfer: &Transfer, id: &AccountId) -> Result<usize, Refusal> {
        let index = *self
            .account_index
            .get(id)
            .ok_or_else(|| Refusal::UnknownAccount {
                account: id.clone(),
            })?;
        let currency = self.accounts[index].account.currency;
        if currency != transfer.amount.currency() {
            return Err(Refusal::CurrencyMismatch {
                transfer: transfer.id.clone(),
                account: id.clone(),
                transfer_currency: transfer.amount.currency(),
                account_currency: currency,
            });
        }
        Ok(index)
    }

    fn apply_transfer(&mut self, transfer: &Transfer) -> Result<Outcome, Refusal> {
        let id = &transfer.id;
        if transfer.memo.len() > MEMO_LENGTH_MAX {
            return Err(Refusal::MemoTooLong {
                transfer: id.clone(),
            });
        }
        if let Some(existing) = self.transfers.get(id) {
            return if existing.record.transfer == *transfer {
                Ok(Outcome::TransferExists)
            } else {
                Err(Refusal::TransferConflict {
                    transfer: id.clone(),
                })
            };
        }
        if transfer.amount.is_zero() {
            return Err(Refusal::ZeroAmount {
                transfer: id.clone(),
            });
        }
        if transfer.debit_account == transfer.credit_account {
            return Err(Refusal::SameAccount {
                transfer: id.clone(),
            });
        }
        let debit = self.account_for(transfer, &transfer.debit_account)?;
        let credit = self.account_for(transfer, &transfer.credit_account)?;
        let mut pending_state = None;
        if let TransferKind::PostPending(pending_id) | TransferKind::VoidPending(pending_id) =
            &transfer.kind
        {
            self.check_pending(transfer, pending_id)?;
        }
        self.touch(debit);
        self.touch(credit);
        let sums_before = pair_sums(
            &self.accounts[debit].account,
            &self.accounts[credit].account,
        );
        let amount = transfer.amount.minor_signed();
        let overflow = || Refusal::Overflow {
            transfer: id.clone(),
        };
        match &transfer.kind {
            TransferKind::Posted => {
                let account = &mut self.accounts[debit].account;
                account.debits_posted = account
                    .debits_posted
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
                let account = &mut self.accounts[credit].account;
                account.credits_posted = account
                    .credits_posted
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
            }
            TransferKind::Pending => {
                let account = &mut self.accounts[debit].account;
                account.debits_pending = account
                    .debits_pending
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
                let account = &mut self.accounts[credit].account;
                account.credits_pending = account
                    .credits_pending
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
                pending_state = Some(PendingState::Pending);
            }
            TransferKind::PostPending(pending_id) | TransferKind::VoidPending(pending_id) => {
                let posting = matches!(transfer.kind, TransferKind::PostPending(_));
                let account = &mut self.accounts[debit].account;
                account.debits_pending -= amount;
                if posting {
                    account.debits_posted = account
                        .debits_posted
                        .checked_add(amount)
                        .ok_or_else(overflow)?;
                }
                let account = &mut self.accounts[credit].account;
                account.credits_pending -= amount;
                if posting {
                    account.credits_posted = account
                        .credits_posted
                        .checked_add(amount)
                        .ok_or_else(overflow)?;
                }
                let resolution = if posting {
                    PendingState::Posted
                } else {
                    PendingState::Voided
                };
                if let Some(slot) = self.transfers.get_mut(pending_id) {
                    self.undo.push(Undo::Pending {
                        id: pending_id.clone(),
                        state: slot.record.pending_state,
                        resolved: slot.resolved,
                    });
                    slot.record.pending_state = Some(resolution);
                    slot.resolved = slot.existed;
                }
            }
        }
        // Posting or voiding a reservation never lowers what is available nor raises the
        // ceiling, so these checks can only fail for new money movements.
        let debit_account = &self.accounts[debit].account;
        if available_with_pending(debit_account)
            < debit_account
                .limits
                .balance_min
                .map_or(i128::MIN, i128::from)
        {
            return Err(Refusal::InsufficientFunds {
                transfer: id.clone(),
                account: transfer.debit_account.clone(),
            });
        }
        let credit_account = &self.accounts[credit].account;
        if ceiling_with_pending(credit_account)
            > credit_account
                .limits
                .balance_max
                .map_or(i128::MAX, i128::from)
        {
            return Err(Refusal::BalanceMaxExceeded {
                transfer: id.clone(),
                account: transfer.credit_account.clone(),
            });
        }
        let sums_after = pair_sums(
            &self.accounts[debit].account,
            &self.accounts[credit].account,
        );
        self.record_conservation(
            transfer.amount.currency(),
            sums_after.0 - sums_before.0,
            sums_after.1 - sums_before.1,
        );
        let Some(sequence) = self.sequences.nth(self.sequences_used) else {
            unreachable!("run_group gives a group a sequence number for each of its transfers")
        };
        self.sequences_used += 1;
        let debit_previous =
            std::mem::replace(&mut self.accounts[debit].account.last_sequence, sequence);
        let credit_previous =
            std::mem::replace(&mut self.accounts[credit].account.last_sequence, sequence);
        self.transfers.insert(
            id.clone(),
            TransferSlot {
                record: TransferRecord {
                    transfer: transfer.clone(),
                    pending_state,
                    sequence,
                    committed_at: self.now,
                    debit_previous,
                    credit_previous,
                },
                existed: false,
                resolved: false,
            },
        );
        Ok(Outcome::TransferCommitted)
    }

    fn check_pending(&self, transfer: &Transfer, pending_id: &TransferId) -> Result<(), Refusal> {
        let not_found = || Refusal::PendingNotFound {
            transfer: transfer.id.clone(),
            pending: pending_id.clone(),
        };
        let pending = &self.transfers.get(pending_id).ok_or_else(not_found)?.record;
        if pending.transfer.kind != TransferKind::Pending {
            return Err(not_found());
        }
        match pending.pending_state {
            Some(PendingState::Pending) => {}
            Some(state) => {
                return Err(Refusal::PendingAlreadyResolved {
                    transfer: transfer.id.clone(),
                    pending: pending_id.clone(),
                    state: state.as_str().to_owned(),
                });
            }
            None => return Err(not_found()),
        }
        let original = &pending.transfer;
        if original.debit_account != transfer.debit_account
            || original.credit_account != transfer.credit_account
            || original.amount != transfer.amount
        {
            return Err(Refusal::PendingMismatch {
                transfer: transfer.id.clone(),
                pending: pending_id.clone(),
            });
        }
        Ok(())
    }

    /// Adds one transfer's change to the sum of balances; `apply` asserts that a whole batch's
    /// change is zero per currency (the conservation of money, checked in release builds too).
    fn record_conservation(&mut self, currency: Currency, posted: i128, pending: i128) {
        match self
            .conservation
            .iter_mut()
            .find(|(known, _, _)| *known == currency)
        {
            Some(entry) => {
                entry.1 += posted;
                entry.2 += pending;
            }
            None => self.conservation.push((currency, posted, pending)),
        }
    }
}

fn available_with_pending(account: &Account) -> i128 {
    i128::from(account.credits_posted)
        - i128::from(account.debits_posted)
        - i128::from(account.debits_pending)
}

fn ceiling_with_pending(account: &Account) -> i128 {
    i128::from(account.credits_posted) + i128::from(account.credits_pending)
        - i128::from(account.debits_posted)
}

fn limits_hold(account: &Account, limits: BalanceLimits) -> bool {
    let min = limits.balance_min.map_or(i128::MIN, i128::from);
    let max = limits.balance_max.map_or(i128::MAX, i128::from);
    min <= max && available_with_pending(account) >= min && ceiling_with_pending(account) <= max
}

/// The sum of posted balances and of pending balances of two accounts.
fn pair_sums(debit: &Account, credit: &Account) -> (i128, i128) {
    let posted =
        |account: &Account| i128::from(account.credits_posted) - i128::from(account.debits_posted);
    let pending = |account: &Account| {
        i128::from(account.credits_pending) - i128::from(account.debits_pending)
    };
    (
        posted(debit) + posted(credit),
        pending(debit) + pending(credit),
    )
}
