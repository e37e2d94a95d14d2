//! The fraud queue shared by every rail: a flag says what looks wrong, about whom, with the
//! evidence, and waits for an operator. Flags are ledger records (namespace `fraud`), so a rail
//! raises them in the same atomic batch as the postings that revealed them.
//!
//! Each flag is a case: `open` until an operator decides it, then `cleared` (no fraud, or dealt
//! with) or `escalated` (handed on for investigation); an escalated case is later `cleared`. Every
//! decision is kept in the flag with who made it, when and why ([`CaseDecision`]).

use offpay_ledger::{Operation, Record, RecordWrite, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{RecordError, StoredRecord, check_version, corrupt, decode_json, encode_json};

/// Record namespace of the fraud queue.
pub const NAMESPACE: &str = "fraud";
/// Format version written in every flag. Version 1 had no case decisions (every flag it wrote
/// is `open` with none); version 2 adds [`FraudFlag::decisions`].
pub const FORMAT_VERSION: u32 = 2;
/// Longest note on a case decision, in bytes.
pub const NOTE_BYTES_MAX: usize = 1000;
/// Most decisions kept on one case (open → escalated → cleared needs two).
pub const DECISIONS_MAX: usize = 8;

/// The state of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseState {
    /// Waiting for an operator.
    Open,
    /// Decided: nothing more to do.
    Cleared,
    /// Handed on for investigation; cleared later.
    Escalated,
}

impl CaseState {
    /// Every state.
    pub const ALL: [CaseState; 3] = [CaseState::Open, CaseState::Cleared, CaseState::Escalated];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Cleared => "cleared",
            CaseState::Escalated => "escalated",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<CaseState> {
        CaseState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// An operator's decision on a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseDecision {
    /// The state the case moved to (`cleared` or `escalated`).
    pub state: String,
    /// The operator user who decided.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Why, in the operator's words.
    pub note: String,
}

/// Why a case decision was refused; the flag is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The transition is not allowed from the case's state.
    #[error("the case is {from}; it cannot be {to}")]
    Transition {
        /// The state now.
        from: &'static str,
        /// The state asked for.
        to: &'static str,
    },
    /// The note is empty or too long.
    #[error("a decision needs a note of 1 to {NOTE_BYTES_MAX} bytes saying why")]
    Note,
    /// The stored status is not one this release knows.
    #[error("the case's stored state {0:?} is unknown")]
    UnknownState(String),
}

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
    /// The case's state: `open`, `cleared` or `escalated` ([`CaseState`]).
    pub status: String,
    /// The decisions made on the case, oldest first (absent in format version 1).
    #[serde(default)]
    pub decisions: Vec<CaseDecision>,
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
            status: CaseState::Open.as_str().to_owned(),
            decisions: Vec::new(),
        }
    }

    /// The case's state.
    pub fn state(&self) -> Result<CaseState, CaseError> {
        CaseState::parse(&self.status).ok_or_else(|| CaseError::UnknownState(self.status.clone()))
    }

    /// The flag after an operator's decision to move the case to `to`: open → cleared,
    /// open → escalated, escalated → cleared. Anything else is refused and changes nothing.
    pub fn decide(
        &self,
        to: CaseState,
        by: &str,
        at: Timestamp,
        note: &str,
    ) -> Result<FraudFlag, CaseError> {
        let from = self.state()?;
        let allowed = matches!(
            (from, to),
            (CaseState::Open, CaseState::Cleared | CaseState::Escalated)
                | (CaseState::Escalated, CaseState::Cleared)
        );
        if !allowed || self.decisions.len() >= DECISIONS_MAX {
            return Err(CaseError::Transition {
                from: from.as_str(),
                to: to.as_str(),
            });
        }
        let note = note.trim();
        if note.is_empty() || note.len() > NOTE_BYTES_MAX {
            return Err(CaseError::Note);
        }
        let mut next = self.clone();
        next.version = FORMAT_VERSION;
        next.status = to.as_str().to_owned();
        next.decisions.push(CaseDecision {
            state: to.as_str().to_owned(),
            by: by.to_owned(),
            at,
            note: note.to_owned(),
        });
        Ok(next)
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
        FraudFlag::decode(&record.key, &record.value).ok()
    }

    /// Reads a stored flag of any format version up to [`FORMAT_VERSION`]; an error names `key`.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<FraudFlag, RecordError> {
        let flag: FraudFlag = decode_json(key, bytes)?;
        check_version::<FraudFlag>(key, flag.version)?;
        if flag.version == 0 {
            return Err(corrupt::<FraudFlag>(key, "format version 0"));
        }
        if CaseState::parse(&flag.status).is_none() {
            return Err(corrupt::<FraudFlag>(
                key,
                format!("unknown case state {:?}", flag.status),
            ));
        }
        Ok(flag)
    }
}

impl StoredRecord for FraudFlag {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = FORMAT_VERSION;

    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        FraudFlag::decode(key, bytes)
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

    fn flag() -> FraudFlag {
        FraudFlag::new(
            "wallet",
            "double_spend",
            "00ff",
            "spent twice",
            serde_json::json!({}),
            Timestamp(1),
        )
    }

    #[test]
    fn a_version_1_flag_decodes_as_an_open_case_without_decisions() {
        let stored = br#"{"version":1,"rail":"sms","kind":"tan_guessing","subject":"1234","summary":"s","evidence":{"n":3},"raised_at":9,"status":"open"}"#;
        let flag = FraudFlag::decode("sms:tan_guessing:1234:x", stored).unwrap();
        assert_eq!(flag.version, 1);
        assert_eq!(flag.state(), Ok(CaseState::Open));
        assert!(flag.decisions.is_empty());
        let cleared = flag
            .decide(
                CaseState::Cleared,
                "sue",
                Timestamp(10),
                "customer confirmed",
            )
            .unwrap();
        assert_eq!(
            cleared.version, FORMAT_VERSION,
            "a decision writes the new format"
        );
    }

    #[test]
    fn flags_of_a_newer_release_or_an_unknown_state_do_not_decode() {
        let newer = br#"{"version":3,"rail":"sms","kind":"k","subject":"s","summary":"s","evidence":null,"raised_at":9,"status":"open"}"#;
        assert!(matches!(
            FraudFlag::decode("k", newer),
            Err(RecordError::TooNew { .. })
        ));
        let unknown = br#"{"version":2,"rail":"sms","kind":"k","subject":"s","summary":"s","evidence":null,"raised_at":9,"status":"maybe"}"#;
        assert!(matches!(
            FraudFlag::decode("k", unknown),
            Err(RecordError::Corrupt { .. })
        ));
    }

    #[test]
    fn cases_move_open_to_cleared_or_escalated_and_escalated_to_cleared_only() {
        let open = flag();
        let escalated = open
            .decide(CaseState::Escalated, "sue", Timestamp(2), "looks organised")
            .unwrap();
        assert_eq!(escalated.state(), Ok(CaseState::Escalated));
        let cleared = escalated
            .decide(CaseState::Cleared, "tom", Timestamp(3), "refunded")
            .unwrap();
        assert_eq!(cleared.state(), Ok(CaseState::Cleared));
        assert_eq!(cleared.decisions.len(), 2);
        assert_eq!(cleared.decisions[1].by, "tom");
        assert_eq!(cleared.decisions[1].at, Timestamp(3));
        for (case, to) in [
            (&cleared, CaseState::Cleared),
            (&cleared, CaseState::Escalated),
            (&escalated, CaseState::Escalated),
            (&open, CaseState::Open),
        ] {
            assert!(matches!(
                case.decide(to, "x", Timestamp(4), "note"),
                Err(CaseError::Transition { .. })
            ));
        }
        for note in ["", "   ", &"n".repeat(NOTE_BYTES_MAX + 1)] {
            assert_eq!(
                open.decide(CaseState::Cleared, "x", Timestamp(4), note),
                Err(CaseError::Note)
            );
        }
    }
}
