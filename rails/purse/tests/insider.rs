//! The database insider (short-code-purse.md §14, attacker 7): write access to the store, no
//! master key. Every edit of the book's sealed records — a forged operator credit, raised
//! limits, a cleared block, a record moved to another purse, an earlier copy put back, a record
//! written without a seal — is refused by the decision that loads it: nothing moves, and a
//! `record_tampered` flag names the record (never the holder).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use offpay_ledger::{
    AccountId, Amount, Batch, Currency, LedgerStore, MemoryStore, Operation, RecordWrite,
};
use offpay_operator::{Decision, Effects, FraudFlag};
use offpay_purse::book::{self, BookError, LoadPlan, PurseChange, PurseOperator, RecordSet};
use offpay_purse::crypto::MasterKey;
use offpay_purse::seal::{self, MacState, SealStage, SealTally, StartPlan, Tampered};
use offpay_purse::{
    OperatorId, OperatorSecrets, Outcome, Phone, Pin, Provisioning, Purse, PurseKind, SyncReport,
    Timestamp,
};

const NOW: offpay_ledger::Timestamp = offpay_ledger::Timestamp(1_780_000_000_000);
const ACCOMPLICE: &str = "+254700000001";
const AGENT: &str = "+254700000002";

fn phone(text: &str) -> Phone {
    Phone::parse(text).unwrap()
}

fn operator() -> PurseOperator {
    PurseOperator::new(
        OperatorSecrets::new(
            OperatorId::new("test-op").unwrap(),
            MasterKey::from_bytes([7u8; 32]),
        ),
        Currency::KES,
    )
}

struct Book {
    store: MemoryStore,
    operator: PurseOperator,
    clock: u64,
}

impl Book {
    fn new() -> Book {
        Book {
            store: MemoryStore::new(),
            operator: operator(),
            clock: 0,
        }
    }

    /// The runner's loop, once: load, decide (a tampered record turns into its flags), commit.
    fn run<T>(
        &mut self,
        plan: &LoadPlan,
        decide: impl FnOnce(&PurseOperator, &RecordSet) -> Result<Decision<T>, BookError>,
    ) -> Result<T, Tampered> {
        let loaded = book::load(&mut self.store, plan).unwrap();
        let decision = book::refuse_tampered(decide(&self.operator, &loaded), NOW).unwrap();
        let Decision::Commit { effects, reply } = decision else {
            panic!("unexpected reload")
        };
        self.commit(effects);
        reply
    }

    fn commit(&mut self, effects: Effects) {
        for result in self.store.commit(&effects.into_batches(), NOW).unwrap() {
            result.unwrap();
        }
    }

    fn provision(&mut self, number: &str, kind: PurseKind) -> Purse {
        let header = book::load(&mut self.store, &LoadPlan::default()).unwrap();
        let next_id = self.operator.next_purse_id(&header).unwrap();
        let provisioned = self
            .run(
                &PurseOperator::provision_plan(phone(number), next_id),
                |operator, loaded| {
                    operator.decide_provision(loaded, next_id, phone(number), kind, NOW)
                },
            )
            .unwrap();
        Purse::provision(
            &Provisioning::decode(&provisioned.provisioning).unwrap(),
            Pin::parse("1234").unwrap(),
        )
    }

    fn change(&mut self, number: &str, change: PurseChange) -> Result<Option<String>, Tampered> {
        self.run(
            &PurseOperator::purse_plan(phone(number)),
            |operator, loaded| operator.decide_change(loaded, phone(number), &change),
        )
    }

    /// A full sync of `purse`: the report it applied, or the operator's refusal.
    fn sync(&mut self, purse: &mut Purse) -> Result<SyncReport, Tampered> {
        self.clock += 60;
        let Outcome::SyncUpload { upload, .. } =
            purse.start_sync(Timestamp(1_780_000_000 + self.clock))
        else {
            panic!("a sync upload")
        };
        let opened = self.operator.secrets().open_upload(&upload).unwrap();
        let (plan, _) = PurseOperator::sync_plan(&opened, purse.identity().phone);
        let reply = self.run(&plan, |operator, loaded| {
            operator.decide_sync(loaded, &upload, NOW)
        })?;
        match purse.apply_answer(&reply.answer).unwrap() {
            Outcome::SyncApplied(report) => Ok(report),
            other => panic!("answer gave {other:?}"),
        }
    }

    fn balance(&mut self, id: &str) -> i64 {
        self.store
            .account(&AccountId::new(id).unwrap())
            .unwrap()
            .map_or(0, |account| account.balance())
    }

    fn stored(&mut self, key: &str) -> Vec<u8> {
        self.store
            .record(book::NAMESPACE, key)
            .unwrap()
            .unwrap()
            .value
    }

    fn json(&mut self, key: &str) -> serde_json::Value {
        serde_json::from_slice(seal::content(&self.stored(key))).unwrap()
    }

    /// The insider's write: `bytes` under `key`, unconditionally, with the database's rights.
    fn put(&mut self, key: &str, bytes: Vec<u8>) {
        let batch = Batch {
            operations: vec![Operation::PutRecord(RecordWrite {
                namespace: book::NAMESPACE.into(),
                key: key.into(),
                value: Some(bytes),
                expected_version: None,
            })],
        };
        for result in self.store.commit(&[batch], NOW).unwrap() {
            result.unwrap();
        }
    }

    /// The insider edits a record's JSON and keeps the seal it carried.
    fn edit(&mut self, key: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let stored = self.stored(key);
        let content = seal::content(&stored);
        let mut bytes = stored[..stored.len() - content.len()].to_vec();
        let mut value: serde_json::Value = serde_json::from_slice(content).unwrap();
        edit(&mut value);
        bytes.extend_from_slice(value.to_string().as_bytes());
        self.put(key, bytes);
    }

    fn flags(&mut self, kind: &str) -> Vec<FraudFlag> {
        self.store
            .records(offpay_operator::fraud::NAMESPACE, "", None, 1000)
            .unwrap()
            .into_iter()
            .map(|record| serde_json::from_slice::<FraudFlag>(&record.value).unwrap())
            .filter(|flag| flag.kind == kind)
            .collect()
    }

    /// Postings and record versions, to show that a refusal moved and changed nothing.
    fn snapshot(&mut self) -> (Vec<i64>, Vec<(String, u64)>) {
        let balances = [
            "operator:suspense",
            "operator:float",
            &format!("purse:{ACCOMPLICE}"),
            &format!("purse:{AGENT}"),
        ]
        .iter()
        .map(|id| self.balance(id))
        .collect();
        let versions = self
            .store
            .records(book::NAMESPACE, "", None, 1000)
            .unwrap()
            .into_iter()
            .map(|record| (record.key, record.version))
            .collect();
        (balances, versions)
    }
}

/// The accomplice and an agent, both synced once.
fn fleet() -> (Book, Purse, Purse) {
    let mut book = Book::new();
    let mut agent = book.provision(AGENT, PurseKind::Agent);
    let mut accomplice = book.provision(ACCOMPLICE, PurseKind::Customer);
    book.sync(&mut agent).unwrap();
    book.sync(&mut accomplice).unwrap();
    (book, agent, accomplice)
}

fn shadow_key(book: &mut Book, number: &str) -> String {
    let index = book.json(&format!("phone/{number}"));
    format!("shadow/{}", index.as_u64().unwrap())
}

/// The sync refused, a `record_tampered` flag naming each of `keys` (about the record, not the
/// holder), and nothing moved or changed.
fn assert_refused(book: &mut Book, purse: &mut Purse, keys: &[&str], state: MacState) -> Tampered {
    let before = book.snapshot();
    let flags_before = book.flags("record_tampered").len();
    let refused = book.sync(purse).expect_err("the sync must be refused");
    let (balances, versions) = book.snapshot();
    assert_eq!(balances, before.0, "a refused sync moved money");
    assert_eq!(versions, before.1, "a refused sync changed a purse record");
    let flags = book.flags("record_tampered");
    assert_eq!(flags.len(), flags_before + keys.len(), "{flags:#?}");
    for key in keys {
        let record = refused
            .0
            .iter()
            .find(|record| record.key == *key)
            .unwrap_or_else(|| panic!("{key} not named: {refused}"));
        assert_eq!(record.state, state);
        let flag = flags.iter().find(|flag| flag.subject == *key).unwrap();
        assert_eq!(flag.rail, book::RAIL);
        assert!(flag.summary.contains("not accused") || !key.starts_with("shadow/"));
    }
    assert!(
        flags.iter().all(|flag| flag.subject != ACCOMPLICE),
        "the holder is flagged"
    );
    // The same tampered bytes refused again make no second entry.
    assert!(book.sync(purse).is_err());
    assert_eq!(book.flags("record_tampered").len(), flags.len());
    refused
}

#[test]
fn a_forged_operator_credit_is_refused_and_flagged_and_nothing_posts() {
    let (mut book, _agent, mut accomplice) = fleet();
    let key = shadow_key(&mut book, ACCOMPLICE);
    book.edit(&key, |shadow| {
        shadow["queued_credits"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"credit_id": 9_000_000, "amount_minor": 20_000_000, "memo": "float"}));
    });
    assert_refused(&mut book, &mut accomplice, &[&key], MacState::Mismatch);
    assert_eq!(accomplice.balance().minor(), 0);
    assert_eq!(book.balance("operator:suspense"), 0);
}

#[test]
fn raised_limits_are_refused_and_never_delivered() {
    let (mut book, _agent, mut accomplice) = fleet();
    let key = shadow_key(&mut book, ACCOMPLICE);
    let limits_before = *accomplice.limits();
    book.edit(&key, |shadow| {
        let most = shadow["limits"]["max_balance"].clone();
        shadow["limits"]["max_spent_since_sync"] = most;
    });
    assert_refused(&mut book, &mut accomplice, &[&key], MacState::Mismatch);
    assert_eq!(*accomplice.limits(), limits_before);
}

#[test]
fn a_cleared_block_is_refused_and_the_purse_stays_blocked() {
    let (mut book, mut agent, mut accomplice) = fleet();
    book.change(ACCOMPLICE, PurseChange::Blocked(true)).unwrap();
    assert!(book.sync(&mut accomplice).unwrap().blocked);
    assert!(accomplice.is_blocked());
    let key = shadow_key(&mut book, ACCOMPLICE);
    book.edit(&key, |shadow| {
        shadow["blocked"] = serde_json::Value::Bool(false);
        shadow["blocked_at_epoch"] = serde_json::Value::Null;
    });
    book.edit("book", |header| {
        header["blocked"].as_array_mut().unwrap().clear();
    });
    assert_refused(
        &mut book,
        &mut accomplice,
        &["book", &key],
        MacState::Mismatch,
    );
    assert!(accomplice.is_blocked(), "the insider unblocked the purse");
    // Every purse's sync loads the header: the agent's is refused too, so no payee learns a
    // blocked list the operator did not write.
    assert!(book.sync(&mut agent).is_err());
}

#[test]
fn a_record_moved_to_another_purse_is_refused() {
    let (mut book, _agent, mut accomplice) = fleet();
    // The agent's shadow, authentic under its own key, copied over the accomplice's: a DBA
    // giving the accomplice the agent's standing (kind, limits, balance).
    let agent_key = shadow_key(&mut book, AGENT);
    let accomplice_key = shadow_key(&mut book, ACCOMPLICE);
    let agent_shadow = book.stored(&agent_key);
    book.put(&accomplice_key, agent_shadow);
    assert_refused(
        &mut book,
        &mut accomplice,
        &[&accomplice_key],
        MacState::Mismatch,
    );
}

#[test]
fn an_earlier_copy_of_a_shadow_put_back_is_refused() {
    let (mut book, _agent, mut accomplice) = fleet();
    let key = shadow_key(&mut book, ACCOMPLICE);
    // The DBA keeps the accomplice's authentic shadow and header from before the block.
    let old_shadow = book.stored(&key);
    book.change(ACCOMPLICE, PurseChange::Blocked(true)).unwrap();
    // Put back alone, the shadow disagrees with the header's blocked list.
    book.put(&key, old_shadow.clone());
    assert_refused(
        &mut book,
        &mut accomplice,
        &[&key, "book"],
        MacState::RolledBack,
    );
    assert!(!accomplice.is_blocked());
}

#[test]
fn an_earlier_copy_of_a_shadow_and_header_older_than_the_last_sync_is_refused() {
    let (mut book, _agent, mut accomplice) = fleet();
    let key = shadow_key(&mut book, ACCOMPLICE);
    let old_shadow = book.stored(&key);
    let old_header = book.stored("book");
    // The purse syncs again (its history now holds a newer sync), then the operator blocks it.
    book.sync(&mut accomplice).unwrap();
    book.change(ACCOMPLICE, PurseChange::Blocked(true)).unwrap();
    // Both put back: they agree with each other, not with the purse's sync history.
    book.put(&key, old_shadow);
    book.put("book", old_header);
    let history = format!("syncs/{}", key.trim_start_matches("shadow/"));
    assert_refused(
        &mut book,
        &mut accomplice,
        &[&key, &history],
        MacState::RolledBack,
    );
}

#[test]
fn a_record_written_without_a_seal_is_refused() {
    let (mut book, _agent, mut accomplice) = fleet();
    let key = shadow_key(&mut book, ACCOMPLICE);
    let stored = book.stored(&key);
    // The shadow's own content, as an earlier release (or a DBA without the key) writes it.
    book.put(&key, seal::content(&stored).to_vec());
    assert_refused(&mut book, &mut accomplice, &[&key], MacState::Missing);
}

#[test]
fn an_honest_fleet_syncs_over_sealed_records_and_every_record_is_sealed() {
    let (mut book, mut agent, mut accomplice) = fleet();
    book.change(
        ACCOMPLICE,
        PurseChange::Float {
            amount: Amount::parse("200", Currency::KES).unwrap(),
            memo: "float".into(),
        },
    )
    .unwrap();
    let report = book.sync(&mut accomplice).unwrap();
    assert_eq!(report.credits.len(), 1);
    book.sync(&mut accomplice).unwrap();
    book.sync(&mut agent).unwrap();
    assert_eq!(book.balance(&format!("purse:{ACCOMPLICE}")), 20_000);
    assert!(book.flags("record_tampered").is_empty());
    let sealer = book.operator.sealer().clone();
    for record in book.store.records(book::NAMESPACE, "", None, 1000).unwrap() {
        if seal::is_sealed_key(&record.key) {
            assert_eq!(
                sealer.state(&record.key, &record.value),
                MacState::Authentic,
                "{}",
                record.key
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The one-time upgrade.

fn survey(book: &mut Book) -> SealTally {
    let sealer = book.operator.sealer().clone();
    let mut tally = SealTally::default();
    let mut after: Option<String> = None;
    loop {
        let page = seal::load_page(&mut book.store, after.as_deref()).unwrap();
        tally.add(&seal::survey(&page, &sealer));
        if !page.full {
            return tally;
        }
        after = page.last_key;
    }
}

fn seal_all(book: &mut Book) {
    let sealer = book.operator.sealer().clone();
    let marker = seal::load_marker(&mut book.store).unwrap();
    let Decision::Commit { effects, .. } = seal::decide_marker(
        &marker,
        SealStage::Sealing,
        &SealTally::default(),
        &sealer,
        NOW,
    )
    .unwrap() else {
        panic!("a marker")
    };
    book.commit(effects);
    let page = seal::load_page(&mut book.store, None).unwrap();
    let Decision::Commit { effects, .. } = seal::decide_page(&page, &sealer) else {
        panic!("a page")
    };
    book.commit(effects);
    let marker = seal::load_marker(&mut book.store).unwrap();
    let Decision::Commit { effects, .. } = seal::decide_marker(
        &marker,
        SealStage::Done,
        &SealTally::default(),
        &sealer,
        NOW,
    )
    .unwrap() else {
        panic!("a marker")
    };
    book.commit(effects);
}

/// Every sealed record's seal removed: what an earlier release wrote.
fn unseal_all(book: &mut Book) {
    for record in book.store.records(book::NAMESPACE, "", None, 1000).unwrap() {
        if seal::is_sealed_key(&record.key) {
            book.put(&record.key, seal::content(&record.value).to_vec());
        }
    }
}

fn marker(book: &mut Book) -> Option<seal::SealedMarker> {
    let (_, stored) = seal::load_marker(&mut book.store).unwrap();
    seal::authentic_marker(stored.as_deref(), book.operator.sealer())
}

#[test]
fn an_earlier_releases_book_is_sealed_once_and_then_works() {
    let (mut book, _agent, mut accomplice) = fleet();
    unseal_all(&mut book);
    assert!(
        book.sync(&mut accomplice).is_err(),
        "unsealed records refused"
    );
    let tally = survey(&mut book);
    assert_eq!((tally.authentic, tally.mismatched), (0, 0));
    assert!(tally.missing > 0);
    assert_eq!(seal::start_plan(None, &tally, NOW), StartPlan::Seal);
    seal_all(&mut book);
    assert_eq!(marker(&mut book).unwrap().stage, SealStage::Done);
    assert_eq!(survey(&mut book).missing, 0);
    assert!(book.sync(&mut accomplice).is_ok());
    assert_eq!(
        seal::start_plan(marker(&mut book).as_ref(), &survey(&mut book), NOW),
        StartPlan::Done
    );
}

#[test]
fn unsealed_records_beside_sealed_ones_without_the_marker_are_not_sealed() {
    let (mut book, _agent, mut accomplice) = fleet();
    // Sealed by this release (the marker written at its first start) ...
    seal_all(&mut book);
    // ... then the DBA writes a shadow without a seal and removes the marker.
    let key = shadow_key(&mut book, ACCOMPLICE);
    book.edit(&key, |shadow| {
        shadow["blocked"] = serde_json::Value::Bool(false);
    });
    let stored = book.stored(&key);
    book.put(&key, seal::content(&stored).to_vec());
    book.store
        .commit(
            &[Batch {
                operations: vec![Operation::PutRecord(RecordWrite {
                    namespace: book::NAMESPACE.into(),
                    key: seal::MARKER_KEY.into(),
                    value: None,
                    expected_version: None,
                })],
            }],
            NOW,
        )
        .unwrap();
    let tally = survey(&mut book);
    assert!(matches!(
        seal::start_plan(marker(&mut book).as_ref(), &tally, NOW),
        StartPlan::Refuse { .. }
    ));
    assert!(book.sync(&mut accomplice).is_err());
}

#[test]
fn a_marker_written_by_hand_is_not_believed() {
    let (mut book, _agent, _accomplice) = fleet();
    let forged = serde_json::json!({
        "version": 1, "stage": "done", "at_ms": NOW.0,
        "tally": {"authentic": 0, "missing": 0, "mismatched": 0, "mismatched_keys": []}
    });
    book.put(seal::MARKER_KEY, forged.to_string().into_bytes());
    assert!(marker(&mut book).is_none());
    // With a seal copied from another record, neither.
    let header = book.stored("book");
    let content = seal::content(&header);
    let mut bytes = header[..header.len() - content.len()].to_vec();
    bytes.extend_from_slice(forged.to_string().as_bytes());
    book.put(seal::MARKER_KEY, bytes);
    assert!(marker(&mut book).is_none());
    // An unsealed shadow then stays refused: the start plan, without a believed marker, sees
    // authentic seals beside it.
    let key = shadow_key(&mut book, ACCOMPLICE);
    let stored = book.stored(&key);
    book.put(&key, seal::content(&stored).to_vec());
    let tally = survey(&mut book);
    assert!(matches!(
        seal::start_plan(marker(&mut book).as_ref(), &tally, NOW),
        StartPlan::Refuse { .. }
    ));
}

#[test]
fn an_interrupted_sealing_resumes_only_within_its_window() {
    let mut book = Book::new();
    let sealer = book.operator.sealer().clone();
    let marker_loaded = seal::load_marker(&mut book.store).unwrap();
    let Decision::Commit { effects, .. } = seal::decide_marker(
        &marker_loaded,
        SealStage::Sealing,
        &SealTally::default(),
        &sealer,
        NOW,
    )
    .unwrap() else {
        panic!("a marker")
    };
    book.commit(effects);
    let found = marker(&mut book);
    let tally = SealTally {
        authentic: 3,
        missing: 2,
        ..SealTally::default()
    };
    assert_eq!(
        seal::start_plan(found.as_ref(), &tally, NOW),
        StartPlan::Seal
    );
    let late = offpay_ledger::Timestamp(NOW.0 + seal::RESUME_WINDOW_MS + 1);
    assert!(matches!(
        seal::start_plan(found.as_ref(), &tally, late),
        StartPlan::Refuse { .. }
    ));
}
