//! The fraud queue shared by every rail: a flag says what looks wrong, about whom, with the
//! evidence, and waits for an operator. Flags are ledger records (namespace `fraud`), so a rail
//! raises them in the same atomic batch as the postings that revealed them.
//!
//! Each flag is a case: `open` until an operator decides it, then `cleared` (no fraud, or dealt
//! with) or `escalated` (handed on for investigation); an escalated case is later `cleared`. Every
//! decision is kept in the flag with who made it, when and why ([`CaseDecision`]).
//!
//! The same finding raised again (a retried upload, the same evidence arriving twice) changes
//! nothing: a decided case stays decided. A *different* finding under the same key (new evidence
//! about the same subject) is not lost and does not erase the decision either: the case's
//! current round — its evidence and the decisions on it — moves to [`FraudFlag::earlier`] and the
//! case is open again with the new evidence, for an analyst to look at ([`FraudFlag::raise`]).

use offpay_ledger::{Operation, Record, RecordWrite, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{RecordError, StoredRecord, check_version, corrupt, decode_json, encode_json};

/// Record namespace of the fraud queue.
pub const NAMESPACE: &str = "fraud";
/// Format version written in every flag. Version 1 had no case decisions (every flag it wrote
/// is `open` with none); version 2 adds [`FraudFlag::decisions`]; version 3 adds
/// [`FraudFlag::earlier`] (an earlier release would drop it when deciding, so it must not read
/// such a flag).
pub const FORMAT_VERSION: u32 = 3;
/// Longest note on a case decision, in bytes.
pub const NOTE_BYTES_MAX: usize = 1000;
/// Most decisions kept on one round of a case (open → escalated → cleared needs two).
pub const DECISIONS_MAX: usize = 8;
/// Most earlier rounds kept in one case; when new evidence arrives on a case that has this many,
/// the oldest round is dropped and counted in [`FraudFlag::earlier_dropped`] (its decisions
/// remain in the audit log).
pub const EARLIER_MAX: usize = 16;

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
    /// The decisions made on the case's current round, oldest first (absent in format
    /// version 1).
    #[serde(default)]
    pub decisions: Vec<CaseDecision>,
    /// Earlier rounds of the case, oldest first: what it said and how it was decided before new
    /// evidence reopened it (absent before format version 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<EarlierRound>,
    /// Earlier rounds dropped to keep at most [`EARLIER_MAX`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub earlier_dropped: u32,
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

/// A round of a case that newer evidence superseded: the finding as it was and how it stood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlierRound {
    /// The one line for people it had.
    pub summary: String,
    /// Its evidence.
    pub evidence: Value,
    /// When it was raised.
    pub raised_at: Timestamp,
    /// The state it was in when the new evidence arrived.
    pub status: String,
    /// The decisions made on it.
    pub decisions: Vec<CaseDecision>,
}

/// What raising a finding under a key that may already hold a flag comes to ([`FraudFlag::raise`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Raised {
    /// No flag yet: create this one.
    New(FraudFlag),
    /// The same finding is already there (a retry): nothing to write.
    Unchanged,
    /// New evidence on an existing case: write this (the case open again, the earlier round
    /// kept).
    Reopened(FraudFlag),
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
            earlier: Vec::new(),
            earlier_dropped: 0,
        }
    }

    /// Whether `other` is the same finding: the same summary and evidence (when it was raised
    /// does not matter: a retried upload raises it again later).
    pub fn same_finding(&self, other: &FraudFlag) -> bool {
        self.summary == other.summary && self.evidence == other.evidence
    }

    /// Raising the finding `raised` where `existing` (if any) is already stored under its key:
    /// the same finding again changes nothing, whatever the case's state; a different finding
    /// moves the existing case's current round (evidence, state, decisions) into
    /// [`FraudFlag::earlier`] and opens the case again with the new evidence. Also the earlier
    /// rounds `raised` carries are kept (two findings merged before either was stored).
    pub fn raise(existing: Option<&FraudFlag>, raised: &FraudFlag) -> Raised {
        let Some(existing) = existing else {
            let mut new = raised.clone();
            new.version = FORMAT_VERSION;
            return Raised::New(new);
        };
        if existing.same_finding(raised)
            || existing
                .earlier
                .iter()
                .any(|round| round.summary == raised.summary && round.evidence == raised.evidence)
        {
            // Already here, now or in an earlier round: a late retry must not reopen the case
            // with evidence it already moved past.
            return Raised::Unchanged;
        }
        let mut next = existing.clone();
        next.version = FORMAT_VERSION;
        next.earlier.push(EarlierRound {
            summary: existing.summary.clone(),
            evidence: existing.evidence.clone(),
            raised_at: existing.raised_at,
            status: existing.status.clone(),
            decisions: existing.decisions.clone(),
        });
        if next.earlier.len() > EARLIER_MAX {
            let excess = next.earlier.len() - EARLIER_MAX;
            next.earlier.drain(..excess);
            next.earlier_dropped = next
                .earlier_dropped
                .saturating_add(u32::try_from(excess).unwrap_or(u32::MAX));
        }
        next.summary = raised.summary.clone();
        next.evidence = raised.evidence.clone();
        next.raised_at = raised.raised_at;
        next.status = CaseState::Open.as_str().to_owned();
        next.decisions = Vec::new();
        Raised::Reopened(next)
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
        let newer = br#"{"version":4,"rail":"sms","kind":"k","subject":"s","summary":"s","evidence":null,"raised_at":9,"status":"open"}"#;
        assert!(matches!(
            FraudFlag::decode("k", newer),
            Err(RecordError::TooNew { .. })
        ));
        let unknown = br#"{"version":3,"rail":"sms","kind":"k","subject":"s","summary":"s","evidence":null,"raised_at":9,"status":"maybe"}"#;
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

    fn finding(evidence: serde_json::Value, at: u64) -> FraudFlag {
        FraudFlag::new(
            "wallet",
            "forked_log",
            "00ff",
            "rolled back",
            evidence,
            Timestamp(at),
        )
    }

    #[test]
    fn the_same_finding_raised_again_leaves_a_decided_case_as_decided() {
        let first = finding(serde_json::json!({ "head": 4 }), 1);
        let Raised::New(stored) = FraudFlag::raise(None, &first) else {
            panic!("a first raise creates the case")
        };
        let cleared = stored
            .decide(CaseState::Cleared, "sue", Timestamp(2), "known rollback")
            .unwrap();
        // The retry comes later: only when it was raised differs.
        let retry = finding(serde_json::json!({ "head": 4 }), 9);
        assert_eq!(FraudFlag::raise(Some(&cleared), &retry), Raised::Unchanged);
    }

    #[test]
    fn new_evidence_reopens_a_decided_case_and_keeps_the_decision() {
        let stored = finding(serde_json::json!({ "head": 4 }), 1);
        let cleared = stored
            .decide(CaseState::Cleared, "sue", Timestamp(2), "known rollback")
            .unwrap();
        let newer = finding(serde_json::json!({ "head": 7 }), 5);
        let Raised::Reopened(reopened) = FraudFlag::raise(Some(&cleared), &newer) else {
            panic!("new evidence must reopen the case")
        };
        assert_eq!(reopened.state(), Ok(CaseState::Open));
        assert_eq!(reopened.evidence, serde_json::json!({ "head": 7 }));
        assert_eq!(reopened.raised_at, Timestamp(5));
        assert!(reopened.decisions.is_empty());
        assert_eq!(reopened.earlier.len(), 1);
        let round = &reopened.earlier[0];
        assert_eq!(round.status, "cleared");
        assert_eq!(round.evidence, serde_json::json!({ "head": 4 }));
        assert_eq!(round.decisions, cleared.decisions);
        // A late retry of the earlier finding does not reopen it again.
        let late = finding(serde_json::json!({ "head": 4 }), 6);
        assert_eq!(FraudFlag::raise(Some(&reopened), &late), Raised::Unchanged);
        // It round-trips through a record, and may be decided again.
        let bytes = reopened.encode("k").unwrap();
        let decoded = FraudFlag::decode("k", &bytes).unwrap();
        assert_eq!(decoded, reopened);
        assert!(
            decoded
                .decide(CaseState::Escalated, "tom", Timestamp(7), "again")
                .is_ok()
        );
    }

    #[test]
    fn a_case_keeps_at_most_earlier_max_rounds_and_counts_the_dropped() {
        let mut case = finding(serde_json::json!(0), 0);
        for round in 1..=(EARLIER_MAX as u64 + 3) {
            let Raised::Reopened(next) =
                FraudFlag::raise(Some(&case), &finding(serde_json::json!(round), round))
            else {
                panic!("new evidence reopens")
            };
            case = next;
        }
        assert_eq!(case.earlier.len(), EARLIER_MAX);
        assert_eq!(case.earlier_dropped, 3);
        assert_eq!(case.earlier[0].evidence, serde_json::json!(3));
        assert_eq!(case.evidence, serde_json::json!(EARLIER_MAX as u64 + 3));
    }
}
