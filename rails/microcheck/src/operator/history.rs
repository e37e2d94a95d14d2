//! What the CSC keeps of each deposit for the operator's console: one [`DepositRecord`] per
//! deposit (`deposit:<merchant>:<newest-first time>:<tag>`), the last
//! [`DEPOSIT_HISTORY_MAX`] of each merchant, each line naming the payer, the amount and whether
//! the microcheck was paid or refused and why. The money is in the ledger and the charge
//! records; this is the account of what each machine brought and what became of it.

use std::collections::HashMap;

use offpay_ledger::{Amount, LedgerStore, Operation};
use offpay_operator::record::{check_version, corrupt, decode_json, encode_json};
use offpay_operator::{RecordError, StoredRecord};
use serde::{Deserialize, Serialize};

use super::clearing::DepositReport;
use super::records::{self, NAMESPACE};
use crate::csc::{PayerAccount, Prepared};
use crate::strategy::Standing;

/// Deposits kept per merchant: a deposit's record is written with the removal of those of the
/// same merchant beyond this many (newest kept).
pub const DEPOSIT_HISTORY_MAX: usize = 100;
/// Format version of [`DepositRecord`].
pub const DEPOSIT_RECORD_VERSION: u32 = 1;
/// Key prefix of every deposit record.
pub const DEPOSIT_PREFIX: &str = "deposit:";
/// Records read past the bound when trimming (deposits that raced each other leave a few more).
const TRIM_SLACK: usize = 32;

/// Key prefix of `merchant`'s deposit records.
pub fn deposit_prefix(merchant: &str) -> String {
    format!("{DEPOSIT_PREFIX}{merchant}:")
}

/// Key of `merchant`'s deposit received at `received_ms` (milliseconds since the epoch), newest
/// first in key order; `tag` (the first microcheck's nonce) tells apart deposits of one
/// millisecond.
pub fn deposit_key(merchant: &str, received_ms: u64, tag: &str) -> String {
    format!(
        "{}{:020}:{tag}",
        deposit_prefix(merchant),
        u64::MAX - received_ms
    )
}

/// One deposit as the CSC answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRecord {
    /// [`DEPOSIT_RECORD_VERSION`].
    pub v: u32,
    /// The depositing merchant.
    pub merchant: String,
    /// When it arrived, milliseconds since the epoch.
    pub received_ms: u64,
    /// Microchecks paid.
    pub posted: usize,
    /// Microchecks refused.
    pub refused: usize,
    /// One per microcheck, in deposit order.
    pub lines: Vec<DepositLine>,
}

/// One microcheck of a deposit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositLine {
    /// Position in the deposit.
    pub index: usize,
    /// The payer whose key signed it (`None`: it did not parse, or the key is nobody's).
    pub payer: Option<String>,
    /// Its amount (`None`: it did not parse).
    pub amount: Option<Amount>,
    /// When the machine made the offer, Unix seconds (`None`: it did not parse).
    pub offered_at: Option<u64>,
    /// `posted` or `refused`.
    pub status: String,
    /// Why refused, the stable code.
    pub code: Option<String>,
    /// Why refused, in words.
    pub reason: Option<String>,
    /// Paid from the operator's suspense account (the payer's account could not cover it).
    pub bounced: bool,
    /// Fraud flags it raised.
    pub flags: Vec<String>,
}

impl StoredRecord for DepositRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = DEPOSIT_RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: DepositRecord = decode_json(key, bytes)?;
        check_version::<DepositRecord>(key, record.v)?;
        if !key.starts_with(&deposit_prefix(&record.merchant)) {
            return Err(corrupt::<DepositRecord>(
                key,
                "the merchant is not the key's",
            ));
        }
        Ok(record)
    }
}

/// The record of `report`, the answer to a deposit of `prepared` received at `received_ms`;
/// `payers` (by key fingerprint, as the deposit read them) names the payer of each line.
pub fn deposit_record(
    report: &DepositReport,
    prepared: &[Prepared],
    payers: &HashMap<String, PayerAccount>,
    received_ms: u64,
) -> DepositRecord {
    let by_index: HashMap<usize, &Prepared> = prepared.iter().map(|p| (p.index(), p)).collect();
    let lines = report
        .results
        .iter()
        .map(|answer| {
            let item = by_index.get(&answer.index);
            DepositLine {
                index: answer.index,
                payer: item
                    .and_then(|p| p.payer_fingerprint())
                    .and_then(|fingerprint| payers.get(fingerprint))
                    .map(|payer| payer.name.clone()),
                amount: item.and_then(|p| p.amount()),
                offered_at: item.and_then(|p| p.time()).map(|t| t.0),
                status: answer.status.to_owned(),
                code: answer.code.clone(),
                reason: answer.reason.clone(),
                bounced: answer.bounced.unwrap_or(false),
                flags: answer
                    .flags
                    .iter()
                    .flatten()
                    .map(|flag| (*flag).to_owned())
                    .collect(),
            }
        })
        .collect();
    DepositRecord {
        v: DEPOSIT_RECORD_VERSION,
        merchant: report.merchant.clone(),
        received_ms,
        posted: report.posted,
        refused: report.refused,
        lines,
    }
}

/// The writes that keep `record`: it, created under its key (`tag` from the deposit's first
/// microcheck), and the removal of the merchant's older records beyond
/// [`DEPOSIT_HISTORY_MAX`], read from `store` (newest first in key order).
pub fn history_writes(
    store: &mut dyn LedgerStore,
    record: &DepositRecord,
    tag: &str,
) -> Result<Vec<Operation>, RecordError> {
    let key = deposit_key(&record.merchant, record.received_ms, tag);
    let kept = store.records(
        NAMESPACE,
        &deposit_prefix(&record.merchant),
        None,
        DEPOSIT_HISTORY_MAX + TRIM_SLACK,
    )?;
    let mut operations = vec![records::create(&key, record)?];
    // The new record is the newest: the first `DEPOSIT_HISTORY_MAX - 1` stored ones stay.
    operations.extend(
        kept.iter()
            .skip(DEPOSIT_HISTORY_MAX.saturating_sub(1))
            .map(|old| records::remove(&old.key)),
    );
    Ok(operations)
}

/// What a payer's strikes do to its credentials, in words.
pub fn strike_effect(standing: &Standing) -> String {
    let strikes = standing.strikes();
    if strikes == 0 {
        "full limits".to_owned()
    } else if strikes >= crate::limits::STRIKES_MAX {
        "no offline credentials: the PA issues none at this many strikes".to_owned()
    } else {
        format!(
            "offline limits, validity and daily counts halved {strikes} time{}",
            if strikes == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use offpay_ledger::{Batch, Currency, MemoryStore, Timestamp};

    use super::*;

    fn deposit(merchant: &str, received_ms: u64) -> DepositRecord {
        DepositRecord {
            v: DEPOSIT_RECORD_VERSION,
            merchant: merchant.into(),
            received_ms,
            posted: 1,
            refused: 0,
            lines: vec![DepositLine {
                index: 0,
                payer: Some("alice".into()),
                amount: Some(Amount::from_minor(83, Currency::KES).unwrap()),
                offered_at: Some(received_ms / 1000),
                status: "posted".into(),
                code: None,
                reason: None,
                bounced: false,
                flags: Vec::new(),
            }],
        }
    }

    fn keep(store: &mut MemoryStore, record: &DepositRecord) {
        let operations = history_writes(store, record, "n").unwrap();
        let results = store.commit(&[Batch { operations }], Timestamp(1)).unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    fn kept(store: &mut MemoryStore, merchant: &str) -> Vec<DepositRecord> {
        store
            .records(NAMESPACE, &deposit_prefix(merchant), None, 1000)
            .unwrap()
            .iter()
            .map(|r| DepositRecord::decode(&r.key, &r.value).unwrap())
            .collect()
    }

    #[test]
    fn each_merchant_keeps_its_newest_deposits_newest_first_and_no_more() {
        let mut store = MemoryStore::new();
        for n in 0..(DEPOSIT_HISTORY_MAX as u64 + 5) {
            keep(&mut store, &deposit("vm-1", 1_000_000 + n));
        }
        keep(&mut store, &deposit("vm-10", 5));
        let vm1 = kept(&mut store, "vm-1");
        assert_eq!(vm1.len(), DEPOSIT_HISTORY_MAX);
        assert_eq!(
            vm1[0].received_ms,
            1_000_000 + DEPOSIT_HISTORY_MAX as u64 + 4
        );
        assert!(vm1.windows(2).all(|w| w[0].received_ms > w[1].received_ms));
        // Another machine's deposits (even one whose id starts alike) are its own.
        assert_eq!(kept(&mut store, "vm-10").len(), 1);
    }

    #[test]
    fn a_deposit_record_under_another_merchants_key_is_corrupt() {
        let record = deposit("vm-1", 7);
        let bytes = record.encode("x").unwrap();
        assert!(DepositRecord::decode(&deposit_key("vm-1", 7, "n"), &bytes).is_ok());
        let error = DepositRecord::decode(&deposit_key("vm-2", 7, "n"), &bytes).unwrap_err();
        assert!(error.to_string().contains("deposit:vm-2:"), "{error}");
    }
}
