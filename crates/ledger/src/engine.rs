//! The ledger's rules as pure logic: given the accounts, transfers and records a group of batches
//! refers to, decide each batch and compute what must be written. Every backend runs this same
//! code, so the rules cannot drift between SQLite and PostgreSQL, and they are tested without a
//! database.
//!
//! A *group* is several batches committed in one database transaction (group commit). Each batch
//! is still atomic on its own: a refused batch leaves no trace, and the batches after it see the
//! state as if it had never been submitted.

use std::collections::{BTreeSet, HashMap};

use offpay_money::Currency;

use crate::ids::{AccountId, TransferId};
use crate::model::{
    Account, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, BatchRefusal, MEMO_LENGTH_MAX, NewAccount,
    Operation, Outcome, PendingState, RECORD_KEY_LENGTH_MAX, RECORD_NAMESPACE_LENGTH_MAX,
    RECORD_VALUE_LENGTH_MAX, RecordWrite, Refusal, Timestamp, Transfer, TransferKind,
    TransferRecord,
};

/// A record's identity: namespace and key.
pub type RecordKey = (String, String);

/// Everything a group of batches refers to; the backend loads exactly these before deciding.
#[derive(Debug, Default)]
pub struct References {
    /// Accounts named by any operation.
    pub accounts: BTreeSet<AccountId>,
    /// Transfers named (as ids, or as the pending transfer of a post or void).
    pub transfers: BTreeSet<TransferId>,
    /// Records written.
    pub records: BTreeSet<RecordKey>,
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
                    references.accounts.insert(transfer.debit_account.clone());
                    references.accounts.insert(transfer.credit_account.clone());
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
    pub accounts: HashMap<AccountId, Account>,
    /// Existing transfers among the referenced ones.
    pub transfers: HashMap<TransferId, TransferRecord>,
    /// Current versions of existing referenced records.
    pub record_versions: HashMap<RecordKey, u64>,
}

/// What a committed group changes; the backend writes exactly this, in one database transaction.
#[derive(Debug, Default)]
pub struct Changes {
    /// Accounts to insert.
    pub accounts_created: Vec<Account>,
    /// Existing accounts whose sums or limits changed (full new rows).
    pub accounts_updated: Vec<Account>,
    /// Transfers to insert, in sequence order.
    pub transfers_created: Vec<TransferRecord>,
    /// Existing pending transfers that were posted or voided.
    pub pending_resolved: Vec<(TransferId, PendingState)>,
    /// Records to upsert (`Some`) or delete (`None`), with their new version.
    pub records: Vec<(RecordKey, Option<Vec<u8>>, u64)>,
    /// The next free sequence number after this group.
    pub next_sequence: u64,
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

/// Decides the batches of one group against a snapshot.
#[derive(Debug)]
pub struct GroupCommit {
    now: Timestamp,
    accounts: HashMap<AccountId, Account>,
    accounts_existing: BTreeSet<AccountId>,
    accounts_dirty: BTreeSet<AccountId>,
    transfers: HashMap<TransferId, TransferRecord>,
    transfers_created: Vec<TransferId>,
    pending_resolved: BTreeSet<TransferId>,
    records: HashMap<RecordKey, (Option<Vec<u8>>, u64)>,
    records_written: BTreeSet<RecordKey>,
    record_versions: HashMap<RecordKey, u64>,
    next_sequence: u64,
}

/// The changes one batch makes, kept apart until the whole batch is accepted.
#[derive(Default)]
struct BatchScratch {
    accounts: HashMap<AccountId, Account>,
    transfers: HashMap<TransferId, TransferRecord>,
    transfers_created: Vec<TransferId>,
    records: HashMap<RecordKey, (Option<Vec<u8>>, u64)>,
    records_written: BTreeSet<RecordKey>,
    conservation: Vec<(Currency, i128, i128)>,
}

impl GroupCommit {
    /// Starts deciding a group. `next_sequence` is the first sequence number to hand out.
    pub fn new(snapshot: Snapshot, next_sequence: u64, now: Timestamp) -> GroupCommit {
        GroupCommit {
            now,
            accounts_existing: snapshot.accounts.keys().cloned().collect(),
            accounts: snapshot.accounts,
            accounts_dirty: BTreeSet::new(),
            transfers: snapshot.transfers,
            transfers_created: Vec::new(),
            pending_resolved: BTreeSet::new(),
            records: HashMap::new(),
            records_written: BTreeSet::new(),
            record_versions: snapshot.record_versions,
            next_sequence,
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
        let mut scratch = BatchScratch::default();
        let mut sequence = self.next_sequence;
        let mut outcomes = Vec::with_capacity(batch.operations.len());
        for (index, operation) in batch.operations.iter().enumerate() {
            let outcome = self
                .apply_operation(&mut scratch, &mut sequence, operation)
                .map_err(|reason| BatchRefusal { index, reason })?;
            outcomes.push(outcome);
        }
        for (currency, posted, pending) in &scratch.conservation {
            assert!(
                *posted == 0 && *pending == 0,
                "money conservation broken in a batch: {currency} posted {posted} pending {pending}"
            );
        }
        self.merge(scratch, sequence);
        Ok(outcomes)
    }

    /// Ends the group and returns what to write.
    pub fn finish(self) -> Changes {
        let mut changes = Changes {
            next_sequence: self.next_sequence,
            ..Changes::default()
        };
        let mut accounts = self.accounts;
        for id in &self.accounts_dirty {
            let Some(account) = accounts.remove(id) else {
                continue;
            };
            if self.accounts_existing.contains(id) {
                changes.accounts_updated.push(account);
            } else {
                changes.accounts_created.push(account);
            }
        }
        let mut transfers = self.transfers;
        let created: BTreeSet<&TransferId> = self.transfers_created.iter().collect();
        for id in &self.transfers_created {
            if let Some(record) = transfers.get(id) {
                changes.transfers_created.push(record.clone());
            }
        }
        for id in &self.pending_resolved {
            if created.contains(id) {
                continue;
            }
            if let Some(state) = transfers.remove(id).and_then(|record| record.pending_state) {
                changes.pending_resolved.push((id.clone(), state));
            }
        }
        let mut records = self.records;
        for key in self.records_written {
            if let Some((value, version)) = records.remove(&key) {
                changes.records.push((key, value, version));
            }
        }
        changes
    }

    fn merge(&mut self, scratch: BatchScratch, sequence: u64) {
        for (id, account) in scratch.accounts {
            self.accounts_dirty.insert(id.clone());
            self.accounts.insert(id, account);
        }
        let created: std::collections::HashSet<&TransferId> =
            scratch.transfers_created.iter().collect();
        for (id, record) in scratch.transfers {
            if !created.contains(&id) {
                self.pending_resolved.insert(id.clone());
            }
            self.transfers.insert(id, record);
        }
        self.transfers_created.extend(scratch.transfers_created);
        for (key, value) in scratch.records {
            self.record_versions.insert(key.clone(), value.1);
            self.records.insert(key, value);
        }
        self.records_written.extend(scratch.records_written);
        self.next_sequence = sequence;
    }

    fn account(&self, scratch: &BatchScratch, id: &AccountId) -> Option<Account> {
        scratch
            .accounts
            .get(id)
            .or_else(|| self.accounts.get(id))
            .cloned()
    }

    fn transfer<'a>(
        &'a self,
        scratch: &'a BatchScratch,
        id: &TransferId,
    ) -> Option<&'a TransferRecord> {
        scratch.transfers.get(id).or_else(|| self.transfers.get(id))
    }

    fn apply_operation(
        &self,
        scratch: &mut BatchScratch,
        sequence: &mut u64,
        operation: &Operation,
    ) -> Result<Outcome, Refusal> {
        match operation {
            Operation::CreateAccount(definition) => self.create_account(scratch, definition),
            Operation::Transfer(transfer) => self.apply_transfer(scratch, sequence, transfer),
            Operation::SetLimits { account, limits } => self.set_limits(scratch, account, *limits),
            Operation::PutRecord(write) => self.put_record(scratch, write),
        }
    }

    fn create_account(
        &self,
        scratch: &mut BatchScratch,
        definition: &NewAccount,
    ) -> Result<Outcome, Refusal> {
        if let Some(existing) = self.account(scratch, &definition.id) {
            return if existing.matches(definition) {
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
        scratch.accounts.insert(definition.id.clone(), fresh);
        Ok(Outcome::AccountCreated)
    }

    fn set_limits(
        &self,
        scratch: &mut BatchScratch,
        id: &AccountId,
        limits: BalanceLimits,
    ) -> Result<Outcome, Refusal> {
        let mut account = self
            .account(scratch, id)
            .ok_or_else(|| Refusal::UnknownAccount {
                account: id.clone(),
            })?;
        if !limits_hold(&account, limits) {
            return Err(Refusal::InvalidLimits {
                account: id.clone(),
            });
        }
        account.limits = limits;
        scratch.accounts.insert(id.clone(), account);
        Ok(Outcome::LimitsSet)
    }

    fn put_record(
        &self,
        scratch: &mut BatchScratch,
        write: &RecordWrite,
    ) -> Result<Outcome, Refusal> {
        let invalid = || Refusal::RecordInvalid {
            namespace: write.namespace.clone(),
            key: write.key.clone(),
        };
        if write.namespace.is_empty()
            || write.namespace.len() > RECORD_NAMESPACE_LENGTH_MAX
            || write.key.is_empty()
            || write.key.len() > RECORD_KEY_LENGTH_MAX
            || write
                .value
                .as_ref()
                .is_some_and(|value| value.len() > RECORD_VALUE_LENGTH_MAX)
        {
            return Err(invalid());
        }
        let key: RecordKey = (write.namespace.clone(), write.key.clone());
        let current = scratch
            .records
            .get(&key)
            .map(|(_, version)| *version)
            .or_else(|| self.record_versions.get(&key).copied())
            .unwrap_or(0);
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
        let version = if write.value.is_some() {
            current + 1
        } else {
            0
        };
        scratch.records_written.insert(key.clone());
        scratch.records.insert(key, (write.value.clone(), version));
        Ok(Outcome::RecordWritten { version })
    }

    fn apply_transfer(
        &self,
        scratch: &mut BatchScratch,
        sequence: &mut u64,
        transfer: &Transfer,
    ) -> Result<Outcome, Refusal> {
        let id = &transfer.id;
        if transfer.memo.len() > MEMO_LENGTH_MAX {
            return Err(Refusal::MemoTooLong {
                transfer: id.clone(),
            });
        }
        if let Some(existing) = self.transfer(scratch, id) {
            return if existing.transfer == *transfer {
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
        let mut debit = self.checked_account(scratch, transfer, &transfer.debit_account)?;
        let mut credit = self.checked_account(scratch, transfer, &transfer.credit_account)?;
        let amount = transfer.amount.minor_signed();
        let sums_before = pair_sums(&debit, &credit);
        let overflow = || Refusal::Overflow {
            transfer: id.clone(),
        };
        let mut pending_state = None;
        match &transfer.kind {
            TransferKind::Posted => {
                debit.debits_posted = debit
                    .debits_posted
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
                credit.credits_posted = credit
                    .credits_posted
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
            }
            TransferKind::Pending => {
                debit.debits_pending = debit
                    .debits_pending
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
                credit.credits_pending = credit
                    .credits_pending
                    .checked_add(amount)
                    .ok_or_else(overflow)?;
                pending_state = Some(PendingState::Pending);
            }
            TransferKind::PostPending(pending_id) | TransferKind::VoidPending(pending_id) => {
                let mut pending = self.open_pending(scratch, transfer, pending_id)?;
                debit.debits_pending -= amount;
                credit.credits_pending -= amount;
                let posting = matches!(transfer.kind, TransferKind::PostPending(_));
                if posting {
                    debit.debits_posted = debit
                        .debits_posted
                        .checked_add(amount)
                        .ok_or_else(overflow)?;
                    credit.credits_posted = credit
                        .credits_posted
                        .checked_add(amount)
                        .ok_or_else(overflow)?;
                }
                pending.pending_state = Some(if posting {
                    PendingState::Posted
                } else {
                    PendingState::Voided
                });
                scratch.transfers.insert(pending_id.clone(), pending);
            }
        }
        // Posting or voiding a reservation never lowers what is available or raises the ceiling,
        // so limits are checked for everything, and can only fail for new money movements.
        if available_with_pending(&debit) < debit.limits.balance_min.map_or(i128::MIN, i128::from) {
            return Err(Refusal::InsufficientFunds {
                transfer: id.clone(),
                account: debit.id.clone(),
            });
        }
        if ceiling_with_pending(&credit) > credit.limits.balance_max.map_or(i128::MAX, i128::from) {
            return Err(Refusal::BalanceMaxExceeded {
                transfer: id.clone(),
                account: credit.id.clone(),
            });
        }
        let sums_after = pair_sums(&debit, &credit);
        record_conservation(
            scratch,
            transfer.amount.currency(),
            sums_after.0 - sums_before.0,
            sums_after.1 - sums_before.1,
        );
        scratch.accounts.insert(debit.id.clone(), debit);
        scratch.accounts.insert(credit.id.clone(), credit);
        scratch.transfers.insert(
            id.clone(),
            TransferRecord {
                transfer: transfer.clone(),
                pending_state,
                sequence: *sequence,
                committed_at: self.now,
            },
        );
        scratch.transfers_created.push(id.clone());
        *sequence += 1;
        Ok(Outcome::TransferCommitted)
    }

    fn checked_account(
        &self,
        scratch: &BatchScratch,
        transfer: &Transfer,
        id: &AccountId,
    ) -> Result<Account, Refusal> {
        let account = self
            .account(scratch, id)
            .ok_or_else(|| Refusal::UnknownAccount {
                account: id.clone(),
            })?;
        if account.currency != transfer.amount.currency() {
            return Err(Refusal::CurrencyMismatch {
                transfer: transfer.id.clone(),
                account: id.clone(),
                transfer_currency: transfer.amount.currency(),
                account_currency: account.currency,
            });
        }
        Ok(account)
    }

    fn open_pending(
        &self,
        scratch: &BatchScratch,
        transfer: &Transfer,
        pending_id: &TransferId,
    ) -> Result<TransferRecord, Refusal> {
        let not_found = || Refusal::PendingNotFound {
            transfer: transfer.id.clone(),
            pending: pending_id.clone(),
        };
        let pending = self.transfer(scratch, pending_id).ok_or_else(not_found)?;
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
        Ok(pending.clone())
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

/// Adds one transfer's change to the sum of balances; `apply` asserts that a whole batch's change
/// is zero per currency (the conservation of money, checked in release builds too).
fn record_conservation(
    scratch: &mut BatchScratch,
    currency: Currency,
    posted: i128,
    pending: i128,
) {
    match scratch
        .conservation
        .iter_mut()
        .find(|(known, _, _)| *known == currency)
    {
        Some(entry) => {
            entry.1 += posted;
            entry.2 += pending;
        }
        None => scratch.conservation.push((currency, posted, pending)),
    }
}
