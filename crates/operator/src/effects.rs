//! What a decision returns: the ledger operations to commit atomically, in an order that keeps
//! the conditional record writes together.

use offpay_ledger::{BATCH_OPERATIONS_MAX, Batch, NewAccount, Operation, Transfer};

use crate::fraud::FraudFlag;

/// The outcome of one attempt of the load → decide → commit loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Committed; here is the reply.
    Done(T),
    /// A record changed between load and commit; load again and decide again.
    Conflict,
}

/// What a decision returns to the runner.
#[derive(Debug)]
pub enum Decision<T> {
    /// Commit these effects; answer with `reply` once they are durable.
    Commit {
        /// What to write.
        effects: Effects,
        /// The answer.
        reply: T,
    },
    /// What was loaded is not consistent (read in two steps that another writer came between):
    /// load again.
    Reload,
}

impl<T> Decision<T> {
    /// Commit `effects`, then answer `reply`.
    pub fn commit(effects: Effects, reply: T) -> Decision<T> {
        Decision::Commit { effects, reply }
    }
}

/// The effects of one decision. Account creations come first, then postings, then fraud flags,
/// then record writes. Postings, account creations and flags are idempotent (deterministic ids
/// and keys); record writes are conditional on the versions read, so a decision made on stale
/// state is refused whole and decided again.
#[derive(Debug, Default)]
pub struct Effects {
    accounts: Vec<Operation>,
    postings: Vec<Operation>,
    flags: Vec<Operation>,
    records: Vec<Operation>,
}

impl Effects {
    /// No effects.
    pub fn new() -> Effects {
        Effects::default()
    }

    /// Creates an account (idempotent).
    pub fn create_account(&mut self, account: NewAccount) {
        self.accounts.push(Operation::CreateAccount(account));
    }

    /// Adds account creations built elsewhere (e.g. the operator's own accounts).
    pub fn create_accounts(&mut self, operations: impl IntoIterator<Item = Operation>) {
        self.accounts.extend(operations);
    }

    /// Posts a transfer (idempotent by its id).
    pub fn post(&mut self, transfer: Transfer) {
        self.postings.push(Operation::Transfer(transfer));
    }

    /// Raises a fraud flag; `discriminator` makes the same finding raised twice one flag.
    pub fn flag(&mut self, flag: &FraudFlag, discriminator: &str) {
        self.flags.push(flag.operation(discriminator));
    }

    /// Takes the raised flags out, to be settled against the stored ones (the server's runner
    /// writes them back with [`Effects::write_all`] as conditional record writes).
    pub fn take_flags(&mut self) -> Vec<Operation> {
        std::mem::take(&mut self.flags)
    }

    /// Writes a record (an operation built by [`crate::Loaded::write`] or
    /// [`crate::Loaded::delete`], or any other record write).
    pub fn write(&mut self, operation: Operation) {
        self.records.push(operation);
    }

    /// Writes several records.
    pub fn write_all(&mut self, operations: impl IntoIterator<Item = Operation>) {
        self.records.extend(operations);
    }

    /// Postings made.
    pub fn postings(&self) -> usize {
        self.postings.len()
    }

    /// Flags raised.
    pub fn flags(&self) -> usize {
        self.flags.len()
    }

    /// Every operation, in commit order (for the audit log's summary of an action's effect).
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.accounts
            .iter()
            .chain(&self.postings)
            .chain(&self.flags)
            .chain(&self.records)
    }

    /// True when there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.postings.is_empty()
            && self.flags.is_empty()
            && self.records.is_empty()
    }

    /// The batches to commit, in order. When everything fits one batch it is one batch (atomic).
    /// Otherwise the last batch is filled from the end, so the record writes commit together
    /// with the operations just before them, and the leading batches hold only idempotent
    /// account creations, postings and flags: if the last batch is refused as stale, the leading
    /// ones are repeated harmlessly on the next attempt.
    pub fn into_batches(self) -> Vec<Batch> {
        self.into_batches_led_by(None)
    }

    /// [`Effects::into_batches`], with `lead` (when given) as the first operation of every
    /// batch: a check that must hold for each batch to commit (a caller's credentials, say).
    pub fn into_batches_led_by(self, lead: Option<Operation>) -> Vec<Batch> {
        let Effects {
            accounts,
            postings,
            flags,
            records,
        } = self;
        let mut all: Vec<Operation> =
            Vec::with_capacity(accounts.len() + postings.len() + flags.len() + records.len());
        all.extend(accounts);
        all.extend(postings);
        all.extend(flags);
        all.extend(records);
        if all.is_empty() {
            return Vec::new();
        }
        let room = BATCH_OPERATIONS_MAX - usize::from(lead.is_some());
        let led = |chunk: Vec<Operation>| {
            let mut operations = Vec::with_capacity(chunk.len() + 1);
            operations.extend(lead.clone());
            operations.extend(chunk);
            Batch { operations }
        };
        let last_start = all.len().saturating_sub(room);
        let last = all.split_off(last_start);
        let mut batches: Vec<Batch> = all.chunks(room).map(|chunk| led(chunk.to_vec())).collect();
        batches.push(led(last));
        batches
    }
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{AccountId, Amount, Currency, RecordWrite, TransferId, TransferKind};

    use super::*;

    fn posting(index: usize) -> Transfer {
        Transfer {
            id: TransferId::new(format!("t{index}")).unwrap(),
            debit_account: AccountId::new("a").unwrap(),
            credit_account: AccountId::new("b").unwrap(),
            amount: Amount::from_minor(1, Currency::KES).unwrap(),
            kind: TransferKind::Posted,
            memo: String::new(),
        }
    }

    fn record(index: usize) -> Operation {
        Operation::PutRecord(RecordWrite {
            namespace: "n".into(),
            key: format!("k{index}"),
            value: Some(vec![1]),
            expected_version: Some(0),
        })
    }

    #[test]
    fn small_effects_are_one_batch_with_records_last() {
        let mut effects = Effects::new();
        effects.write(record(0));
        effects.post(posting(0));
        let batches = effects.into_batches();
        assert_eq!(batches.len(), 1);
        assert!(matches!(batches[0].operations[0], Operation::Transfer(_)));
        assert!(matches!(batches[0].operations[1], Operation::PutRecord(_)));
    }

    #[test]
    fn large_effects_keep_the_records_in_the_last_batch() {
        let mut effects = Effects::new();
        for index in 0..BATCH_OPERATIONS_MAX + 10 {
            effects.post(posting(index));
        }
        for index in 0..3 {
            effects.write(record(index));
        }
        let batches = effects.into_batches();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].operations.len(), BATCH_OPERATIONS_MAX);
        assert!(
            batches[0]
                .operations
                .iter()
                .all(|operation| matches!(operation, Operation::Transfer(_)))
        );
        let records = batches[1]
            .operations
            .iter()
            .filter(|operation| matches!(operation, Operation::PutRecord(_)))
            .count();
        assert_eq!(records, 3);
        assert!(Effects::new().into_batches().is_empty());
    }

    #[test]
    fn a_lead_check_opens_every_batch_and_every_batch_still_fits() {
        let check = Operation::CheckRecord(offpay_ledger::RecordCheck {
            namespace: "auth".into(),
            key: "user/ada".into(),
            version: 3,
        });
        let mut effects = Effects::new();
        for index in 0..2 * BATCH_OPERATIONS_MAX {
            effects.post(posting(index));
        }
        effects.write(record(0));
        let batches = effects.into_batches_led_by(Some(check.clone()));
        assert_eq!(batches.len(), 3);
        for batch in &batches {
            assert_eq!(batch.operations[0], check);
            assert!(batch.operations.len() <= BATCH_OPERATIONS_MAX);
        }
        let carried: usize = batches.iter().map(|batch| batch.operations.len() - 1).sum();
        assert_eq!(carried, 2 * BATCH_OPERATIONS_MAX + 1);
        assert!(Effects::new().into_batches_led_by(Some(check)).is_empty());
    }
}
