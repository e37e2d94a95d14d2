//! The CSC's side of a deposit around the pure clearing rules of [`crate::csc`]: what it reads
//! from the ledger ([`load_state`]), how what it decided maps onto ledger batches
//! ([`Posting::batch`], [`side`], [`chunks`]), what a ledger refusal means for the microcheck it
//! names ([`Fate::refused`], [`spent`]), and the answer to the merchant ([`report`]).
//!
//! Spent nonces are not read before clearing: each microcheck's charge record is create-only,
//! so the ledger refuses a batch holding a microcheck deposited before, and a transfer id (from
//! merchant and nonce) reused with other terms. On the first, and only then, the charge records
//! of the batch are read, and every microcheck already deposited is refused
//! (`already_deposited`); on the second the microcheck is refused as `replayed_nonce`.

use std::collections::HashMap;

use offpay_ledger::{
    AccountId, BATCH_OPERATIONS_MAX, Batch, LedgerStore, Operation, RecordWrite,
    Refusal as LedgerRefusal, Timestamp, Transfer, TransferId, TransferKind,
};
use offpay_operator::{FraudFlag, RecordError, StoredRecord};
use serde::Serialize;

use super::OperatorError;
use super::overlay::Versions;
use super::records::{
    self, Charge, LastDepositRecord, MerchantRecord, NAMESPACE, OnlineRecord, PayerKeyRecord,
    merchant_account, payer_account,
};
use crate::csc::{
    self, Clearance, ClearingState, CountRecord, Debit, Finding, FraudRules, HeldOnline,
    ItemOutcome, PayerAccount, RecentRecord, RecordChange, StateRecord,
};
use crate::error::Refusal;
use crate::policy::MerchantPolicy;
use crate::strategy::Strategy;
use crate::time::UnixSeconds;

/// The rail name fraud flags carry.
pub const RAIL: &str = "microcheck";
/// Most ledger operations a cleared microcheck can bring into a batch, besides its findings: its
/// charge record and transfer, and at most four shared records (its payer's day counter, recent
/// purchases and bounce count, its date's machine counter).
pub const OPERATIONS_PER_MICROCHECK_MAX: usize = 6;
/// Room kept in each batch for the operator accounts a bounce brings.
pub const BATCH_RESERVE: usize = 8;

const _: () = assert!(BATCH_RESERVE + OPERATIONS_PER_MICROCHECK_MAX <= BATCH_OPERATIONS_MAX);

/// The fraud thresholds of `strategy`.
pub fn rules(strategy: &Strategy) -> FraudRules {
    FraudRules {
        machine_day_purchases_max: strategy.machine_day_purchases_max,
        travel_speed_kmh_max: strategy.travel_speed_kmh_max,
    }
}

/// The depositing merchant's policy: its id and domain, trusting the PA's key and the age key.
pub fn policy(
    record: &MerchantRecord,
    pa: &offpay_keynote::Principal,
    age: &offpay_keynote::Principal,
) -> Result<MerchantPolicy, OperatorError> {
    MerchantPolicy::new(&record.id, &record.app_domain, pa, Some(age)).map_err(OperatorError::usage)
}

/// The clearing state a deposit reads, with the version of each clearing record in it.
#[derive(Debug, Default)]
pub struct LoadedState {
    /// The state.
    pub state: ClearingState,
    /// The merchant's previous deposit.
    pub last_deposit: Option<UnixSeconds>,
    /// Versions of the clearing records read.
    pub versions: Versions,
}

/// A clearing record: its value and its version, noted in `versions` (absent: not noted, 0).
fn read_versioned<R: StoredRecord>(
    store: &mut dyn LedgerStore,
    key: String,
    versions: &mut Versions,
) -> Result<Option<R>, RecordError> {
    let Some(record) = store.record(NAMESPACE, &key)? else {
        return Ok(None);
    };
    let value = R::decode(&key, &record.value)?;
    versions.insert(key, record.version);
    Ok(Some(value))
}

fn read<R: StoredRecord>(store: &mut dyn LedgerStore, key: &str) -> Result<Option<R>, RecordError> {
    match store.record(NAMESPACE, key)? {
        Some(record) => Ok(Some(R::decode(key, &record.value)?)),
        None => Ok(None),
    }
}

/// What the PA holds for `payer`'s online credentials whose microchecks have not cleared (their
/// charge records do not exist), as [`super::pa::load_transaction`] counts them.
fn held_online(store: &mut dyn LedgerStore, payer: &str) -> Result<Vec<HeldOnline>, RecordError> {
    let Some(online) = read::<OnlineRecord>(store, &records::online_key(payer))? else {
        return Ok(Vec::new());
    };
    let mut held = Vec::with_capacity(online.holds.len());
    for hold in online.holds {
        let charge = csc::charge_key(payer, &hold.timestamp, &hold.merchant, &hold.nonce);
        if store.record(NAMESPACE, &charge)?.is_none() {
            held.push(HeldOnline {
                merchant: hold.merchant,
                nonce: hold.nonce,
                amount_minor: hold.amount_minor,
                until: UnixSeconds(hold.until),
            });
        }
    }
    Ok(held)
}

/// Reads the clearing state of `merchant`'s deposit with `keys`: the payers of its keys with
/// what their accounts can pay, their day counters at the merchant, recent purchases and bounce
/// counts, the merchant's day counters and its last deposit.
pub fn load_state(
    store: &mut dyn LedgerStore,
    merchant: &str,
    keys: &csc::Keys,
) -> Result<LoadedState, RecordError> {
    let mut state = ClearingState::default();
    let mut versions = Versions::new();
    let mut names: Vec<String> = Vec::new();
    for fingerprint in &keys.payers {
        let Some(entry) = read::<PayerKeyRecord>(store, &records::payer_key_key(fingerprint))?
        else {
            continue;
        };
        let Ok(account) = payer_account(&entry.name) else {
            continue;
        };
        let available = store.account(&account)?.map_or(0, |a| a.available());
        let blocked_at = read::<records::PayerRecord>(store, &records::payer_key(&entry.name))?
            .and_then(|payer| payer.blocked)
            .map(|block| UnixSeconds(block.at));
        let held_online = held_online(store, &entry.name)?;
        state.payers.insert(
            fingerprint.clone(),
            PayerAccount {
                name: entry.name.clone(),
                available_minor: available,
                retired_at: entry.retired_at.map(UnixSeconds),
                blocked_at,
                held_online,
            },
        );
        names.push(entry.name);
    }
    names.sort_unstable();
    names.dedup();
    for name in &names {
        for date in &keys.dates {
            let key = csc::payer_merchant_day_key(name, merchant, date);
            if let Some(count) = read_versioned::<CountRecord>(store, key, &mut versions)? {
                state.payer_merchant_day.insert(
                    (name.clone(), merchant.to_owned(), date.clone()),
                    count.count,
                );
            }
        }
        if let Some(recent) =
            read_versioned::<RecentRecord>(store, csc::recent_key(name), &mut versions)?
        {
            state.recent.insert(name.clone(), recent.purchases);
        }
        if let Some(count) =
            read_versioned::<CountRecord>(store, csc::bounces_key(name), &mut versions)?
        {
            state.bounces.insert(name.clone(), count.count);
        }
    }
    for date in &keys.dates {
        let key = csc::merchant_day_key(merchant, date);
        if let Some(count) = read_versioned::<CountRecord>(store, key, &mut versions)? {
            state
                .merchant_day
                .insert((merchant.to_owned(), date.clone()), count.count);
        }
    }
    let last_deposit = read::<LastDepositRecord>(store, &records::last_deposit_key(merchant))?
        .map(|record| UnixSeconds(record.at));
    Ok(LoadedState {
        state,
        last_deposit,
        versions,
    })
}

/// The fraud flag raised for `finding` at `now`.
pub fn flag_operation(finding: &Finding, now: UnixSeconds) -> Operation {
    FraudFlag::new(
        RAIL,
        finding.kind,
        &finding.subject,
        finding.summary.clone(),
        finding.evidence.clone(),
        Timestamp(now.0.saturating_mul(1000)),
    )
    .operation(&finding.discriminator)
}

/// The cleared microchecks among `outcomes`.
pub fn cleared(outcomes: &[ItemOutcome]) -> Vec<&Clearance> {
    outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ItemOutcome::Cleared(clearance) => Some(clearance.as_ref()),
            ItemOutcome::Refused { .. } => None,
        })
        .collect()
}

/// The batch beside the cleared microchecks: flags of refused ones, and `now` as the merchant's
/// last deposit.
pub fn side(
    outcomes: &[ItemOutcome],
    merchant: &str,
    now: UnixSeconds,
) -> Result<Batch, RecordError> {
    let mut operations: Vec<Operation> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ItemOutcome::Refused { findings, .. } => Some(findings),
            ItemOutcome::Cleared(_) => None,
        })
        .flatten()
        .map(|finding| flag_operation(finding, now))
        .collect();
    operations.push(records::put(
        &records::last_deposit_key(merchant),
        &LastDepositRecord::new(now.0),
    )?);
    Ok(Batch { operations })
}

/// Splits `cleared` into runs that each fit in one ledger batch.
pub fn chunks<'a, 'b>(cleared: &'b [&'a Clearance]) -> Vec<&'b [&'a Clearance]> {
    let mut chunks = Vec::new();
    let (mut start, mut operations) = (0, BATCH_RESERVE);
    for (position, clearance) in cleared.iter().enumerate() {
        let needed = OPERATIONS_PER_MICROCHECK_MAX + clearance.findings.len();
        if operations + needed > BATCH_OPERATIONS_MAX && position > start {
            chunks.push(&cleared[start..position]);
            (start, operations) = (position, BATCH_RESERVE);
        }
        operations += needed;
    }
    if start < cleared.len() {
        chunks.push(&cleared[start..]);
    }
    chunks
}

/// The versions of `written` once a batch writing them commits.
pub fn versions_after(versions: &Versions, written: &[(StateRecord, String)]) -> Versions {
    let mut after = versions.clone();
    for (_, key) in written {
        *after.entry(key.clone()).or_default() += 1;
    }
    after
}

/// The operator's accounts a bounced microcheck needs: their creations (idempotent) and the
/// suspense account that pays the merchant.
#[derive(Clone, Debug)]
pub struct SuspenseAccounts {
    /// Creations of the operator's accounts in the deposit's currency.
    pub creations: Vec<Operation>,
    /// The suspense account.
    pub suspense: AccountId,
}

/// One batch of cleared microchecks as the ledger takes it: the operations, for each the
/// position in the cleared list of the microcheck it belongs to (`None`: shared), and the
/// shared records it writes.
#[derive(Debug)]
pub struct Posting {
    /// The batch.
    pub batch: Batch,
    /// Owner of each operation, by position in the cleared list.
    pub owners: Vec<Option<usize>>,
    /// Shared records written, with their keys.
    pub written: Vec<(StateRecord, String)>,
}

impl Posting {
    /// The batch posting `cleared` (of `merchant`, decided at `now`) with the shared records as
    /// they stand in `state` (which must include them), each written at its version in
    /// `versions`. Each microcheck's charge record comes first: a second deposit of it meets the
    /// record before the transfer (whose debit may differ, if it bounced the first time).
    pub fn batch(
        cleared: &[&Clearance],
        state: &ClearingState,
        merchant: &str,
        versions: &Versions,
        suspense: Option<&SuspenseAccounts>,
        now: UnixSeconds,
    ) -> Result<Posting, OperatorError> {
        let merchant_account_id = merchant_account(merchant)
            .map_err(|e| OperatorError::invalid("invalid_merchant", e.to_string()))?;
        let mut operations = Vec::with_capacity(cleared.len() * 4 + BATCH_RESERVE);
        let mut owners = Vec::with_capacity(operations.capacity());
        let bounce_from = if cleared.iter().any(|c| c.bounced()) {
            let accounts = suspense.ok_or_else(|| {
                OperatorError::Internal("a bounced microcheck needs the suspense account".into())
            })?;
            operations.extend(accounts.creations.iter().cloned());
            owners.resize(operations.len(), None);
            Some(&accounts.suspense)
        } else {
            None
        };
        for (position, clearance) in cleared.iter().enumerate() {
            let debit_account = match (&clearance.debit, bounce_from) {
                (Debit::Bounced(_), Some(suspense)) => suspense.clone(),
                _ => payer_account(clearance.payer())
                    .map_err(|e| OperatorError::invalid("invalid_name", e.to_string()))?,
            };
            let id = TransferId::new(clearance.transfer_id.clone())
                .map_err(|e| OperatorError::Internal(e.to_string()))?;
            for change in &clearance.records {
                operations.push(put_change(change));
            }
            operations.push(Operation::Transfer(Transfer {
                id,
                debit_account,
                credit_account: merchant_account_id.clone(),
                amount: clearance.amount,
                kind: TransferKind::Posted,
                memo: clearance.memo.clone(),
            }));
            for finding in &clearance.findings {
                operations.push(flag_operation(finding, now));
            }
            owners.resize(operations.len(), Some(position));
        }
        let written: Vec<(StateRecord, String)> = StateRecord::changed_by(cleared.iter().copied())
            .into_iter()
            .map(|record| {
                let key = record.key(merchant);
                (record, key)
            })
            .collect();
        for (record, key) in &written {
            operations.push(Operation::PutRecord(RecordWrite {
                namespace: NAMESPACE.to_owned(),
                key: key.clone(),
                value: Some(record.value(state, merchant)),
                expected_version: Some(versions.get(key).copied().unwrap_or(0)),
            }));
        }
        owners.resize(operations.len(), None);
        Ok(Posting {
            batch: Batch { operations },
            owners,
            written,
        })
    }
}

fn put_change(change: &RecordChange) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: change.key.clone(),
        value: Some(change.value.clone()),
        expected_version: change.create_only.then_some(0),
    })
}

/// What became of a cleared microcheck.
#[derive(Debug)]
pub enum Fate {
    /// Posted.
    Posted,
    /// Refused by the ledger.
    Ledger(LedgerRefusal),
    /// Its nonce was spent: refused by the CSC's rule once the ledger pointed at it.
    Spent(Refusal),
}

/// The fate of each cleared microcheck, by deposit index.
pub type Posted = HashMap<usize, Fate>;

impl Fate {
    /// Whether it posted.
    pub fn is_posted(&self) -> bool {
        matches!(self, Fate::Posted)
    }

    /// A ledger refusal of `clearance`'s operations. A charge record that exists already means
    /// the microcheck was deposited before, and a transfer id taken with other terms means its
    /// nonce was: both are the CSC's spent-nonce refusals, whichever path found them.
    pub fn refused(reason: LedgerRefusal, clearance: &Clearance) -> Fate {
        let nonce = clearance.nonce.clone();
        match reason {
            LedgerRefusal::RecordVersionMismatch { .. } => {
                Fate::Spent(Refusal::AlreadyDeposited { nonce })
            }
            LedgerRefusal::TransferConflict { .. } => Fate::Spent(Refusal::ReplayedNonce { nonce }),
            other => Fate::Ledger(other),
        }
    }
}

/// Whether a ledger refusal of a batch may be spent nonces: a record version mismatch on an
/// operation of a microcheck (its create-only charge record). Then the charge records of the
/// batch are read ([`spent`]).
pub fn may_be_spent(reason: &LedgerRefusal, owner: Option<usize>) -> bool {
    matches!(reason, LedgerRefusal::RecordVersionMismatch { .. }) && owner.is_some()
}

/// The charge record keys of `cleared`, by position.
pub fn charge_keys(cleared: &[&Clearance]) -> Vec<String> {
    cleared
        .iter()
        .map(|c| csc::charge_key(c.payer(), &c.timestamp, &c.merchant, &c.nonce))
        .collect()
}

/// Reads the charge records under `keys` (from [`charge_keys`]): by position, each that exists.
pub fn load_charges(
    store: &mut dyn LedgerStore,
    keys: &[String],
) -> Result<Vec<(usize, Charge)>, RecordError> {
    let mut found = Vec::new();
    for (position, key) in keys.iter().enumerate() {
        if let Some(charge) = read::<Charge>(store, key)? {
            found.push((position, charge));
        }
    }
    Ok(found)
}

/// By position in `cleared`, the refusal of each microcheck whose charge record exists: the
/// same microcheck deposited before, or another one that reused its nonce.
pub fn spent(cleared: &[&Clearance], charges: &[(usize, Charge)]) -> HashMap<usize, Refusal> {
    charges
        .iter()
        .filter_map(|(position, charge)| {
            let clearance = cleared.get(*position)?;
            let nonce = clearance.nonce.clone();
            let refusal = if charge.stored.microcheck_sha256 == clearance.microcheck_sha256 {
                Refusal::AlreadyDeposited { nonce }
            } else {
                Refusal::ReplayedNonce { nonce }
            };
            Some((*position, refusal))
        })
        .collect()
}

/// Names for what it is the refusal of each item whose charge record exists
/// (`candidates` from [`csc::refused_charge_keys`], `charges` read from their keys by
/// [`load_charges`]): `already_deposited` when it is the same microcheck, `replayed_nonce` when
/// another one used its nonce. Its findings stay; nothing else changes.
pub fn relabel_spent(
    outcomes: &mut [ItemOutcome],
    candidates: &[(usize, String, String)],
    charges: &[(usize, Charge)],
) {
    for (found, charge) in charges {
        let Some((position, _, hash)) = candidates.get(*found) else {
            continue;
        };
        if let Some(ItemOutcome::Refused { nonce, refusal, .. }) = outcomes.get_mut(*position) {
            let nonce = nonce.clone().unwrap_or_default();
            *refusal = if charge.stored.microcheck_sha256 == *hash {
                Refusal::AlreadyDeposited { nonce }
            } else {
                Refusal::ReplayedNonce { nonce }
            };
        }
    }
}

/// A page of a payer's statement: its charges from `after` on, and the key to ask the next page
/// after when this one is full.
pub fn load_statement(
    store: &mut dyn LedgerStore,
    payer: &str,
    after: Option<&str>,
) -> Result<(Vec<csc::ChargeRecord>, Option<String>), RecordError> {
    let limit = crate::limits::STATEMENT_PAGE_MAX;
    let stored = store.records(NAMESPACE, &records::charges_prefix(payer), after, limit)?;
    let next = (stored.len() == limit)
        .then(|| stored.last().map(|r| r.key.clone()))
        .flatten();
    let charges = stored
        .iter()
        .map(|r| Charge::decode(&r.key, &r.value).map(|charge| charge.statement_line()))
        .collect::<Result<_, _>>()?;
    Ok((charges, next))
}

/// The answer to a deposit.
#[derive(Debug, Serialize)]
pub struct DepositReport {
    /// The merchant.
    pub merchant: String,
    /// Microchecks posted.
    pub posted: usize,
    /// Microchecks refused.
    pub refused: usize,
    /// One per microcheck, in deposit order.
    pub results: Vec<ItemAnswer>,
}

/// The fate of one deposited microcheck: `posted` (with its transfer, amount, whether it
/// bounced, and fraud flags) or `refused` (with a code, the reason, and flags).
#[derive(Debug, Default, Serialize)]
pub struct ItemAnswer {
    /// Position in the deposit.
    pub index: usize,
    /// Nonce, when the offer had one.
    pub nonce: Option<String>,
    /// `posted` or `refused`.
    pub status: &'static str,
    /// The ledger transfer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
    /// Amount, decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// The amount's currency (ISO 4217 code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Paid from suspense.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounced: Option<bool>,
    /// Why refused, stable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why refused, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Fraud flags raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<&'static str>>,
}

/// The answer to `merchant`'s deposit whose cleared microchecks met `posted`.
pub fn report(merchant: &str, outcomes: &[ItemOutcome], posted: &Posted) -> DepositReport {
    let mut report = DepositReport {
        merchant: merchant.to_owned(),
        posted: 0,
        refused: 0,
        results: Vec::with_capacity(outcomes.len()),
    };
    for outcome in outcomes {
        let answer = match outcome {
            ItemOutcome::Cleared(clearance) => {
                let refused = |code: &str, reason: String| ItemAnswer {
                    index: clearance.index,
                    nonce: Some(clearance.nonce.clone()),
                    status: "refused",
                    code: Some(code.to_owned()),
                    reason: Some(reason),
                    ..ItemAnswer::default()
                };
                match posted.get(&clearance.index) {
                    Some(Fate::Posted) => ItemAnswer {
                        index: clearance.index,
                        nonce: Some(clearance.nonce.clone()),
                        status: "posted",
                        transfer_id: Some(clearance.transfer_id.clone()),
                        amount: Some(clearance.amount.decimal().to_string()),
                        currency: Some(clearance.amount.currency().code().to_owned()),
                        bounced: Some(clearance.bounced()),
                        flags: Some(clearance.findings.iter().map(|f| f.kind).collect()),
                        ..ItemAnswer::default()
                    },
                    Some(Fate::Spent(refusal)) => refused(&refusal.code(), refusal.to_string()),
                    Some(Fate::Ledger(other)) => refused("ledger_refused", other.to_string()),
                    None => refused("internal", "no ledger result".to_owned()),
                }
            }
            ItemOutcome::Refused {
                index,
                nonce,
                refusal,
                findings,
            } => ItemAnswer {
                index: *index,
                nonce: nonce.clone(),
                status: "refused",
                code: Some(refusal.code()),
                reason: Some(refusal.to_string()),
                flags: Some(findings.iter().map(|f| f.kind).collect()),
                ..ItemAnswer::default()
            },
        };
        if answer.status == "posted" {
            report.posted += 1;
        } else {
            report.refused += 1;
        }
        report.results.push(answer);
    }
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use offpay_ledger::{
        AccountKind, Amount, BalanceLimits, Currency, MemoryStore, NewAccount, TransferId,
    };
    use serde_json::Value;

    use super::*;
    use crate::csc::{Location, MerchantAccount, StoredCharge};

    fn clearance(index: usize, findings: usize) -> Clearance {
        Clearance {
            index,
            nonce: format!("{index:032x}"),
            transfer_id: csc::transfer_id("vm-1", &format!("{index:032x}")),
            debit: Debit::Payer("alice".into()),
            merchant: "vm-1".into(),
            amount: Amount::from_minor(83, Currency::KES).unwrap(),
            memo: String::new(),
            payer_fingerprint: "fp-alice".into(),
            date: "20261122".into(),
            timestamp: "20261122000000".into(),
            time: UnixSeconds(0),
            microcheck_sha256: "ab".repeat(32),
            credential_serial: None,
            records: Vec::new(),
            findings: (0..findings)
                .map(|_| Finding {
                    kind: "machine_day_volume",
                    subject: "vm-1".into(),
                    summary: String::new(),
                    evidence: Value::Null,
                    discriminator: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_large_deposit_is_posted_in_batches_the_ledger_takes() {
        for (count, findings) in [(1, 0), (1000, 0), (4096, 0), (4096, 3)] {
            let all: Vec<Clearance> = (0..count).map(|i| clearance(i, findings)).collect();
            let cleared: Vec<&Clearance> = all.iter().collect();
            let parts = chunks(&cleared);
            let mut next = 0;
            for part in &parts {
                assert!(!part.is_empty());
                assert_eq!(part[0].index, next, "in order, nothing skipped");
                next += part.len();
                let operations = BATCH_RESERVE
                    + part
                        .iter()
                        .map(|c| OPERATIONS_PER_MICROCHECK_MAX + c.findings.len())
                        .sum::<usize>();
                assert!(operations <= BATCH_OPERATIONS_MAX, "{operations}");
            }
            assert_eq!(next, count);
            if count <= 1000 && findings == 0 {
                assert_eq!(parts.len(), 1, "a usual deposit is one batch");
            }
        }
        assert!(chunks(&[]).is_empty());
    }

    fn merchant() -> MerchantAccount {
        let pa = offpay_keynote::PrivateKey::ed25519_from_seed(&[1; 32]);
        MerchantAccount {
            policy: MerchantPolicy::new("vm-1", "vend", &pa.principal(), None).unwrap(),
            location: Location::default(),
            last_deposit_at: None,
        }
    }

    fn setup() -> MemoryStore {
        let mut store = MemoryStore::new();
        let account = |id: AccountId, kind| {
            Operation::CreateAccount(NewAccount {
                id,
                kind,
                currency: Currency::KES,
                limits: BalanceLimits {
                    balance_min: Some(0),
                    balance_max: None,
                },
            })
        };
        let mut operations = vec![
            account(payer_account("alice").unwrap(), AccountKind::Customer),
            account(merchant_account("vm-1").unwrap(), AccountKind::Merchant),
            account(AccountId::new("float").unwrap(), AccountKind::OperatorFloat),
        ];
        if let Operation::CreateAccount(float) = &mut operations[2] {
            float.limits.balance_min = None;
        }
        operations.push(Operation::Transfer(Transfer {
            id: TransferId::new("fund").unwrap(),
            debit_account: AccountId::new("float").unwrap(),
            credit_account: payer_account("alice").unwrap(),
            amount: Amount::from_minor(1000, Currency::KES).unwrap(),
            kind: TransferKind::Posted,
            memo: String::new(),
        }));
        operations.push(
            records::put(
                &records::payer_key_key("fp-alice"),
                &PayerKeyRecord::new("alice"),
            )
            .unwrap(),
        );
        let results = store.commit(&[Batch { operations }], Timestamp(1)).unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        store
    }

    fn keys() -> csc::Keys {
        csc::Keys {
            payers: vec!["fp-alice".into()],
            dates: vec!["20261122".into()],
        }
    }

    fn post(
        store: &mut MemoryStore,
        cleared: &[&Clearance],
        loaded: &LoadedState,
    ) -> Result<(), offpay_ledger::BatchRefusal> {
        let mut state = loaded.state.clone();
        for clearance in cleared {
            state.apply(&merchant(), clearance);
        }
        let posting = Posting::batch(
            cleared,
            &state,
            "vm-1",
            &loaded.versions,
            None,
            UnixSeconds(9),
        )
        .unwrap();
        assert_eq!(posting.owners.len(), posting.batch.operations.len());
        store
            .commit(&[posting.batch], Timestamp(2))
            .unwrap()
            .pop()
            .unwrap()
            .map(|_| ())
    }

    #[test]
    fn the_state_holds_what_the_pa_holds_for_online_microchecks_not_yet_cleared() {
        let mut store = setup();
        let sale = clearance(0, 0);
        let hold = |nonce: &str, amount_minor| records::OnlineHold {
            merchant: "vm-1".into(),
            nonce: nonce.into(),
            timestamp: sale.timestamp.clone(),
            amount_minor,
            until: 1_000,
        };
        let online = OnlineRecord {
            v: records::ONLINE_RECORD_VERSION,
            date: "20261122".into(),
            issued: 2,
            holds: vec![hold(&sale.nonce, 83), hold("ff", 500)],
        };
        let put = records::put(&records::online_key("alice"), &online).unwrap();
        let results = store
            .commit(
                &[Batch {
                    operations: vec![put],
                }],
                Timestamp(1),
            )
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let loaded = load_state(&mut store, "vm-1", &keys()).unwrap();
        let payer = &loaded.state.payers["fp-alice"];
        assert_eq!(payer.held_online.len(), 2);
        // Of 10.00, an offline microcheck may take what the two holds leave; the microcheck of
        // the first hold may take all but the other's.
        assert_eq!(
            payer.available_for("vm-1", "other", UnixSeconds(0)),
            1000 - 583
        );
        assert_eq!(
            payer.available_for("vm-1", &sale.nonce, UnixSeconds(0)),
            1000 - 500
        );
        // Once the hold's microcheck has cleared (its charge record exists), it holds nothing.
        let mut charged = sale.clone();
        charged.records = vec![RecordChange {
            key: csc::charge_key("alice", &sale.timestamp, "vm-1", &sale.nonce),
            value: b"{}".to_vec(),
            create_only: true,
        }];
        post(&mut store, &[&charged], &loaded).unwrap();
        let after = load_state(&mut store, "vm-1", &keys()).unwrap();
        let payer = &after.state.payers["fp-alice"];
        assert_eq!(payer.held_online.len(), 1);
        assert_eq!(
            payer.available_for("vm-1", "other", UnixSeconds(0)),
            1000 - 83 - 500
        );
        // ... and a lapsed hold holds nothing either.
        assert_eq!(
            payer.available_for("vm-1", "other", UnixSeconds(1_000)),
            1000 - 83
        );
    }

    #[test]
    fn a_posted_deposit_reads_back_as_the_next_ones_state() {
        let mut store = setup();
        let loaded = load_state(&mut store, "vm-1", &keys()).unwrap();
        assert_eq!(loaded.state.payers["fp-alice"].available_minor, 1000);
        assert!(loaded.versions.is_empty());
        let mut sale = clearance(0, 0);
        sale.records = vec![RecordChange {
            key: csc::charge_key("alice", &sale.timestamp, "vm-1", &sale.nonce),
            value: serde_json::to_vec(&StoredCharge {
                v: csc::STORED_CHARGE_VERSION,
                product: "soda".into(),
                amount: sale.amount,
                bounced: false,
                credential_serial: None,
                microcheck_sha256: sale.microcheck_sha256.clone(),
                deposited: "20261122000100".into(),
            })
            .unwrap(),
            create_only: true,
        }];
        post(&mut store, &[&sale], &loaded).unwrap();
        let after = load_state(&mut store, "vm-1", &keys()).unwrap();
        assert_eq!(after.state.payers["fp-alice"].available_minor, 1000 - 83);
        let day = ("alice".to_owned(), "vm-1".to_owned(), "20261122".to_owned());
        assert_eq!(after.state.payer_merchant_day[&day], 1);
        assert_eq!(after.state.recent["alice"].len(), 1);
        assert_eq!(after.versions[&csc::recent_key("alice")], 1);
        // The same microcheck again: the ledger refuses its charge record, and the charge read
        // back says it was deposited before; another microcheck with its nonce reused it.
        let refusal = post(&mut store, &[&sale], &after).unwrap_err();
        assert!(may_be_spent(&refusal.reason, Some(0)));
        let charges = load_charges(&mut store, &charge_keys(&[&sale])).unwrap();
        assert_eq!(charges[0].1.stored.amount.minor(), 83);
        let spent_now = spent(&[&sale], &charges);
        assert_eq!(spent_now[&0].code(), "already_deposited");
        let mut other = sale.clone();
        other.microcheck_sha256 = "cd".repeat(32);
        assert_eq!(spent(&[&other], &charges)[&0].code(), "replayed_nonce");
        let (statement, next) = load_statement(&mut store, "alice", None).unwrap();
        assert_eq!((statement.len(), next), (1, None));
        assert_eq!(statement[0].amount, "0.83");
    }

    #[test]
    fn a_bounce_is_paid_from_suspense_and_a_refusal_maps_to_the_csc_reason() {
        let mut bounced = clearance(1, 2);
        bounced.debit = Debit::Bounced("alice".into());
        let suspense = SuspenseAccounts {
            creations: Vec::new(),
            suspense: AccountId::new("operator:suspense").unwrap(),
        };
        let state = ClearingState::default();
        assert!(
            Posting::batch(
                &[&bounced],
                &state,
                "vm-1",
                &Versions::new(),
                None,
                UnixSeconds(9)
            )
            .is_err()
        );
        let posting = Posting::batch(
            &[&bounced],
            &state,
            "vm-1",
            &Versions::new(),
            Some(&suspense),
            UnixSeconds(9),
        )
        .unwrap();
        let debit = posting.batch.operations.iter().find_map(|op| match op {
            Operation::Transfer(t) => Some(t.debit_account.to_string()),
            _ => None,
        });
        assert_eq!(debit.as_deref(), Some("operator:suspense"));
        let flags = posting
            .batch
            .operations
            .iter()
            .filter(|op| matches!(op, Operation::PutRecord(w) if w.namespace == "fraud"))
            .count();
        assert_eq!(flags, 2);
        assert!(
            posting
                .written
                .iter()
                .any(|(r, _)| matches!(r, StateRecord::Bounces { .. }))
        );
        let fate = Fate::refused(
            LedgerRefusal::TransferConflict {
                transfer: TransferId::new("x").unwrap(),
            },
            &bounced,
        );
        assert!(matches!(fate, Fate::Spent(Refusal::ReplayedNonce { .. })));
        let posted: Posted = [(1, fate)].into_iter().collect();
        let answer = report("vm-1", &[ItemOutcome::Cleared(Box::new(bounced))], &posted);
        assert_eq!((answer.posted, answer.refused), (0, 1));
        assert_eq!(answer.results[0].code.as_deref(), Some("replayed_nonce"));
    }

    #[test]
    fn the_side_batch_records_the_deposit_time() {
        let batch = side(&[], "vm-1", UnixSeconds(77)).unwrap();
        let Operation::PutRecord(write) = &batch.operations[0] else {
            panic!("a record write");
        };
        assert_eq!(write.key, "lastdeposit:vm-1");
        let record = LastDepositRecord::decode(&write.key, write.value.as_ref().unwrap()).unwrap();
        assert_eq!(record.at, 77);
    }
}
