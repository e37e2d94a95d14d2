//! The fraud queue shared by every rail: a flag says what looks wrong, about whom, with the
//! evidence, and waits for an operator. Flags are ledger records (namespace `fraud`), so a rail
//! raises them in the same atomic batch as the postings that revealed them.

use offpay_ledger::{Operation, Record, RecordWrite, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Record namespace of the fraud queue.
pub const NAMESPACE: &str = "fraud";
/// Format version written in every flag.
pub const FORMAT_VERSION: u32 = 1;

/// One entry of the fraud queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FraudFlag {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Which rail raised it: `purse`, `sms`, `wallet`, `microcheck`.
    pub rail: String,
    /// What kind of pattern, e.g. `duplicate_counter`, `impossible_geography`.
    pub kind: String,
    /// Who or what it is about (a purse, an account, a wallet, a merchant).
    pub subject: String,
    /// One line for people.
    pub summary: String,
    /// Whatever shows it (entries, counters, amounts, places and times).
    pub evidence: Value,
    /// When it was raised.
    pub raised_at: Timestamp,
    /// `open` until an operator resolves it.
    pub status: String,
}

impl FraudFlag {
    /// A new open flag.
    pub fn new(
        rail: &str,
        kind: &str,
        subject: &str,
        summary: impl Into<String>,
        evidence: Value,
        raised_at: Timestamp,
    ) -> FraudFlag {
        FraudFlag {
            version: FORMAT_VERSION,
            rail: rail.to_owned(),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            summary: summary.into(),
            evidence,
            raised_at,
            status: "open".to_owned(),
        }
    }

    /// The record key: rail, kind, subject and a discriminator the rail chooses so that the same
    /// finding raised twice (a retried upload) is one flag, not two.
    pub fn key(&self, discriminator: &str) -> String {
        format!(
            "{}:{}:{}:{}",
            self.rail, self.kind, self.subject, discriminator
        )
    }

    /// The batch operation that stores this flag under `key(discriminator)`.
    pub fn operation(&self, discriminator: &str) -> Operation {
        Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: self.key(discriminator),
            // Serialising strings, numbers and a `Value` to JSON cannot fail: no map in a flag
            // has a non-string key.
            value: Some(serde_json::to_vec(self).unwrap_or_default()),
            expected_version: None,
        })
    }

    /// Reads a stored flag.
    pub fn from_record(record: &Record) -> Option<FraudFlag> {
        serde_json::from_slice(&record.value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_records() {
        let flag = FraudFlag::new(
            "purse",
            "duplicate_counter",
            "+254700000001",
            "two entries with counter 7",
            serde_json::json!({ "counter": 7 }),
            Timestamp(5),
        );
        let Operation::PutRecord(write) = flag.operation("7") else {
            panic!("not a record write")
        };
        assert_eq!(write.key, "purse:duplicate_counter:+254700000001:7");
        let record = Record {
            namespace: NAMESPACE.into(),
            key: write.key,
            value: write.value.unwrap(),
            version: 1,
        };
        assert_eq!(FraudFlag::from_record(&record), Some(flag));
    }
}
