//! Issue 18, the bank insider: envelope records and the operator's settings carry a MAC under the
//! master key, and an envelope and its account cross-check the rows used, so a database
//! administrator who edits one, or puts one back to an earlier authentic copy, moves nothing and
//! is raised in the fraud queue; the holder is not blamed.

use offpay_ledger::{Batch, LedgerStore, MemoryStore, Operation, RecordWrite, Timestamp};
use offpay_operator::{Loaded, StoredRecord};

use crate::envelope::EnvelopeStatus;
use crate::keys::MasterKey;
use crate::numbers::Euin;
use crate::operator::admin;
use crate::operator::load::ROLLBACK_KIND;
use crate::operator::records::{self, Answered, EnvelopeRecord, NAMESPACE, SETTINGS_KEY};
use crate::operator::settings::SealedSettings;
use crate::operator::testing::*;
use crate::operator::upgrade::{self, MacRecord, SealPhase, StartPlan};

/// A phone the payer never used: an interceptor or the insider's accomplice re-sending a message
/// (a bound phone would stop it; the test payer binds none).
const OTHER_PHONE: &str = "+254700000009";

fn raw(store: &mut MemoryStore, key: &str) -> Vec<u8> {
    store
        .records(NAMESPACE, key, None, 1)
        .unwrap()
        .into_iter()
        .find(|record| record.key == key)
        .unwrap_or_else(|| panic!("no record {key}"))
        .value
}

/// What a database administrator does: writes bytes under a key, with no version check.
fn write_raw(store: &mut MemoryStore, key: &str, value: Vec<u8>) {
    let results = store
        .commit(
            &[Batch {
                operations: vec![Operation::PutRecord(RecordWrite {
                    namespace: NAMESPACE.into(),
                    key: key.into(),
                    value: Some(value),
                    expected_version: None,
                })],
            }],
            Timestamp(1),
        )
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
}

/// Edits one field of a stored record's JSON, keeping everything else (its MAC too).
fn edit(store: &mut MemoryStore, key: &str, field: &str, value: serde_json::Value) {
    let mut json: serde_json::Value = serde_json::from_slice(&raw(store, key)).unwrap();
    match (value, json.as_object_mut()) {
        // Null: the field removed (as a record an earlier release wrote).
        (serde_json::Value::Null, Some(object)) => {
            object.remove(field);
        }
        (value, _) => json[field] = value,
    }
    write_raw(store, key, json.to_string().into_bytes());
}

fn flags(world: &mut World, code: &str) -> Vec<serde_json::Value> {
    world
        .store
        .records(
            offpay_operator::fraud::NAMESPACE,
            &format!("sms:{code}:"),
            None,
            100,
        )
        .unwrap()
        .into_iter()
        .map(|record| serde_json::from_slice(&record.value).unwrap())
        .collect()
}

fn envelope_key() -> String {
    records::envelope_key(&Euin::parse(PAYER_EUIN).unwrap())
}

fn master() -> MasterKey {
    MasterKey::from_bytes(MASTER)
}

/// The replay an unsealed envelope record allowed: the DBA marks the paid row unused and the
/// paid message is sent again (from another phone, so it is not a resend of the same sender's
/// text). The envelope fails its MAC: nothing is paid, `record_tampered` is raised, and the
/// envelope counts no failure against its holder.
#[test]
fn a_paid_row_marked_unused_in_the_database_replays_nothing() {
    let mut world = World::new();
    let paid = world.low(PAYEE, "100", 1);
    assert_eq!(
        world.sms(PAYER_PHONE, &paid).summary.verdict,
        Answered::Accepted
    );
    assert_eq!(world.balance(PAYEE), 10_000);
    edit(
        &mut world.store,
        &envelope_key(),
        "used_rows",
        serde_json::json!(0),
    );
    let replay = world.sms(OTHER_PHONE, &paid);
    assert_ne!(replay.summary.verdict, Answered::Accepted);
    assert_eq!(world.balance(PAYEE), 10_000, "the replay paid nothing");
    let raised = flags(&mut world, "record_tampered");
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["evidence"]["kind"], EnvelopeRecord::MAC_KIND);
    // The holder is not blamed: no failure counted, no lock.
    let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
    assert_eq!(envelope.view.consecutive_failures, 0);
    assert!(matches!(
        envelope.view.status,
        EnvelopeStatus::Active { .. }
    ));
    assert!(flags(&mut world, "envelope_locked").is_empty());
}

/// A thief with the envelope guesses until it locks; the DBA resets the lock and the failure
/// count so he can keep guessing. The envelope fails its MAC and answers nothing, and an
/// operator's unlock of it is refused (it would seal the DBA's edit).
#[test]
fn a_lock_or_failure_count_reset_in_the_database_is_refused() {
    let mut world = World::new();
    for row in 1..=crate::limits::LOCKOUT_FAILURES {
        let code = if tan(&world, row) == "000" {
            "001"
        } else {
            "000"
        };
        world.sms(OTHER_PHONE, &format!("BAL {PAYER_EUIN} {row} {code}"));
    }
    let locked = world.envelope_record(PAYER_EUIN).value.unwrap();
    assert!(matches!(locked.view.status, EnvelopeStatus::Locked { .. }));
    // The failure count reset by hand: an operator's unlock (or any agent step) on the edited
    // record is refused, since it would seal the DBA's edit.
    edit(
        &mut world.store,
        &envelope_key(),
        "consecutive_failures",
        serde_json::json!(0),
    );
    let euin = Euin::parse(PAYER_EUIN).unwrap();
    let refused = admin::decide_unlock(
        world.envelope_record(PAYER_EUIN),
        &euin,
        &world.operator,
        world.now,
    );
    let error = refused
        .err()
        .map(|error| format!("{error:?}"))
        .unwrap_or_default();
    assert!(error.contains("record_tampered"), "{error}");
    // The lock lifted by hand: even the right code (the thief's next guess) moves nothing.
    edit(
        &mut world.store,
        &envelope_key(),
        "status",
        serde_json::json!("active"),
    );
    let text = world.low(PAYEE, "100", 10);
    assert_ne!(
        world.sms(OTHER_PHONE, &text).summary.verdict,
        Answered::Accepted
    );
    assert_eq!(world.balance(PAYEE), 0);
    assert_eq!(flags(&mut world, "record_tampered").len(), 1);
    // Nothing was written over the DBA's record.
    let stored = world.envelope_record(PAYER_EUIN).value.unwrap();
    assert_eq!(stored.view.consecutive_failures, 0);
    assert!(!stored.authentic(&master(), &envelope_key()));
}

/// Rollback: the DBA saves the authentic envelope record after the first payment and writes it
/// back after the second (row 2 un-used, MAC still right), then re-sends the second payment's
/// text from another phone. The account recorded rows 1 and 2 under its own MAC: the pair
/// disagrees, the account pays nothing and the rollback is raised.
#[test]
fn an_envelope_put_back_to_an_earlier_copy_disagrees_with_its_account() {
    let mut world = World::new();
    let first = world.low(PAYEE, "100", 1);
    assert_eq!(
        world.sms(PAYER_PHONE, &first).summary.verdict,
        Answered::Accepted
    );
    let saved = raw(&mut world.store, &envelope_key());
    let second = world.low(PAYEE, "200", 2);
    assert_eq!(
        world.sms(PAYER_PHONE, &second).summary.verdict,
        Answered::Accepted
    );
    assert_eq!(world.balance(PAYEE), 30_000);
    write_raw(&mut world.store, &envelope_key(), saved);
    let restored = world.envelope_record(PAYER_EUIN).value.unwrap();
    assert!(
        restored.authentic(&master(), &envelope_key()),
        "an earlier copy is authentic on its own"
    );
    let replay = world.sms(OTHER_PHONE, &second);
    assert_ne!(replay.summary.verdict, Answered::Accepted);
    assert_eq!(world.balance(PAYEE), 30_000, "the replay paid nothing");
    let raised = flags(&mut world, "record_tampered");
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["evidence"]["kind"], ROLLBACK_KIND);
    let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
    assert_eq!(
        envelope.view.consecutive_failures, 0,
        "the holder is not blamed"
    );
}

/// Rollback the other way: the account put back to its copy from before a payment (the day's
/// spending un-counted) disagrees with the envelope, which has the payment's row used.
#[test]
fn an_account_put_back_to_an_earlier_copy_disagrees_with_its_envelope() {
    let mut world = World::new();
    let account_key = records::account_key(&number(PAYER));
    let first = world.low(PAYEE, "100", 1);
    world.sms(PAYER_PHONE, &first);
    let saved = raw(&mut world.store, &account_key);
    let second = world.low(PAYEE, "200", 2);
    world.sms(PAYER_PHONE, &second);
    assert_eq!(world.account(PAYER).spending.today.minor(), 30_000);
    write_raw(&mut world.store, &account_key, saved);
    assert_eq!(world.account(PAYER).spending.today.minor(), 10_000);
    let third = world.low(PAYEE, "300", 3);
    assert_ne!(
        world.sms(PAYER_PHONE, &third).summary.verdict,
        Answered::Accepted
    );
    assert_eq!(world.balance(PAYEE), 30_000);
    assert_eq!(flags(&mut world, "record_tampered").len(), 1);
}

/// The residual, stated as a test so a change to it is seen: the DBA puts back both the envelope
/// and the account to copies from the same moment. Each verifies and they agree. A re-sent
/// message from the sender who sent it is answered as a resend (its keyed hash is kept) and pays
/// nothing; the same text from another phone is paid again, to the payee it named, for the
/// amount it named: the bound is the messages paid since the copies were taken, and the control
/// is the audit log and backups (the ledger itself is not put back: the payee was paid twice).
#[test]
fn residual_both_records_put_back_together_replay_only_the_messages_since() {
    let mut world = World::new();
    let account_key = records::account_key(&number(PAYER));
    let first = world.low(PAYEE, "100", 1);
    world.sms(PAYER_PHONE, &first);
    let saved_envelope = raw(&mut world.store, &envelope_key());
    let saved_account = raw(&mut world.store, &account_key);
    let second = world.low(PAYEE, "200", 2);
    world.sms(PAYER_PHONE, &second);
    write_raw(&mut world.store, &envelope_key(), saved_envelope);
    write_raw(&mut world.store, &account_key, saved_account);
    let resend = world.sms(PAYER_PHONE, &second);
    assert_eq!(
        world.balance(PAYEE),
        30_000,
        "the resend is answered, not paid"
    );
    assert!(resend.summary.postings == 0, "{:?}", resend.summary);
    world.sms(OTHER_PHONE, &second);
    assert_eq!(
        world.balance(PAYEE),
        50_000,
        "the residual: the same payment again, to the same payee"
    );
}

/// An earlier release's database: envelopes without a MAC pay nothing until the start seals them
/// in their own phase (and marker); an envelope whose MAC was removed beside sealed ones is not
/// sealed.
#[test]
fn envelopes_of_an_earlier_release_are_sealed_in_their_own_phase() {
    let mut world = World::new();
    edit(
        &mut world.store,
        &envelope_key(),
        "mac",
        serde_json::Value::Null,
    );
    let page = |world: &mut World| {
        upgrade::load_phase_page(
            &mut world.store,
            SealPhase::Envelopes,
            records::ENVELOPE_PREFIX,
            None,
        )
        .unwrap()
    };
    let survey = upgrade::survey(&page(&mut world), &master());
    assert_eq!((survey.envelopes, survey.authentic), (1, 0));
    assert_eq!(
        upgrade::start_phase_plan(SealPhase::Envelopes, None, &survey, &master(), world.now),
        StartPlan::Seal
    );
    let text = world.low(PAYEE, "100", 1);
    assert_ne!(
        world.sms(PAYER_PHONE, &text).summary.verdict,
        Answered::Accepted
    );
    let sealing = page(&mut world);
    let sealed = run(
        &mut world.store,
        world.now,
        |_| sealing.clone(),
        |page| upgrade::decide_page(&page, &master()),
    )
    .unwrap();
    assert_eq!(sealed.envelopes, 1);
    let text = world.low(PAYEE, "100", 2);
    assert_eq!(
        world.sms(PAYER_PHONE, &text).summary.verdict,
        Answered::Accepted
    );
    // Beside a sealed envelope, one whose MAC was removed is not sealed at start.
    let other = Euin::issued(263, 77).unwrap();
    world.print(&other);
    edit(
        &mut world.store,
        &records::envelope_key(&other),
        "mac",
        serde_json::Value::Null,
    );
    let survey = upgrade::survey(&page(&mut world), &master());
    assert_eq!((survey.envelopes, survey.authentic), (1, 1));
    assert!(matches!(
        upgrade::start_phase_plan(SealPhase::Envelopes, None, &survey, &master(), world.now),
        StartPlan::Refuse { .. }
    ));
}

fn stored_settings(store: &mut MemoryStore) -> Loaded<SealedSettings> {
    Loaded::read(store, SETTINGS_KEY).unwrap()
}

/// The operator's settings carry a MAC: a DBA raising `printed_recipe_max` (or a fee, or
/// removing a dialback default) is seen; settings of an earlier release are sealed in their own
/// phase, and only those.
#[test]
fn settings_changed_in_the_database_do_not_verify_and_earlier_ones_are_sealed_once() {
    let mut world = World::new();
    let write = admin::store_settings(&settings(), &master()).unwrap();
    let mut effects = offpay_operator::Effects::new();
    effects.write(write);
    assert!(commit(&mut world.store, effects, world.now));
    let stored = stored_settings(&mut world.store).value.unwrap();
    assert!(stored.authentic(&master()));
    assert_eq!(stored.settings, settings());
    for (field, value) in [
        (
            "printed_recipe_max",
            serde_json::json!([{"currency": "KES", "minor": 100_000_000_000u64}]),
        ),
        ("dialback_defaults", serde_json::json!([])),
        (
            "fees",
            serde_json::json!([{"low": {"currency": "KES", "minor": 0},
                "middle": {"currency": "KES", "minor": 0},
                "high": {"currency": "KES", "minor": 0}}]),
        ),
    ] {
        let before = raw(&mut world.store, SETTINGS_KEY);
        edit(&mut world.store, SETTINGS_KEY, field, value);
        let changed = stored_settings(&mut world.store).value.unwrap();
        assert_ne!(changed.settings, settings(), "{field} was changed");
        assert!(!changed.authentic(&master()), "{field}");
        write_raw(&mut world.store, SETTINGS_KEY, before);
    }
    // An earlier release's record (no MAC) is sealed by its phase; the marker is the phase's own.
    write_raw(
        &mut world.store,
        SETTINGS_KEY,
        settings().encode(SETTINGS_KEY).unwrap(),
    );
    let page = upgrade::load_phase_page(&mut world.store, SealPhase::Settings, SETTINGS_KEY, None)
        .unwrap();
    assert!(matches!(page.records.as_slice(), [MacRecord::Settings(_)]));
    let survey = upgrade::survey(&page, &master());
    assert_eq!((survey.settings, survey.authentic), (1, 0));
    let sealed = run(
        &mut world.store,
        world.now,
        |_| page.clone(),
        |page| upgrade::decide_page(&page, &master()),
    )
    .unwrap();
    assert_eq!(sealed.settings, 1);
    let stored = stored_settings(&mut world.store).value.unwrap();
    assert!(stored.authentic(&master()));
    assert_eq!(stored.settings, settings());
}

/// The DBA edits the holder's envelope (its failure count); the
/// operator's and the agent's steps on it (unlock, replace) are refused, nothing is written, and
/// the edit is raised in the fraud queue once per record state — on the record, not the holder,
/// whose envelope and account are left as the DBA left them, with no failure counted.
#[test]
fn an_agent_or_operator_step_on_an_edited_envelope_raises_it_once_per_edit() {
    let mut world = World::new();
    let (operator, now) = (world.operator.clone(), world.now);
    let euin = Euin::parse(PAYER_EUIN).unwrap();
    let account = crate::operator::testing::number(PAYER);
    let new = Euin::parse("26399912346").unwrap();
    world.print(&new);
    let request = admin::ReplaceEnvelope {
        account: PAYER.into(),
        checked_by: "agent-17".into(),
        document_kind: "national id".into(),
        document_number: "A1234567".into(),
        reason: "lost".into(),
    };
    edit(
        &mut world.store,
        &envelope_key(),
        "consecutive_failures",
        serde_json::json!(1),
    );
    let edited = raw(&mut world.store, &envelope_key());
    let unlock = |world: &mut World| {
        run(
            &mut world.store,
            now,
            |store| Loaded::<EnvelopeRecord>::read(store, &envelope_key()).unwrap(),
            |loaded| {
                let tampered: Vec<_> = admin::tampered_envelope(&loaded, operator.master())
                    .into_iter()
                    .collect();
                admin::refuse_tampered(&tampered, now, || {
                    admin::decide_unlock(loaded, &euin, &operator, now)
                })
            },
        )
        .unwrap()
    };
    let replace = |world: &mut World| {
        run(
            &mut world.store,
            now,
            |store| admin::load_bind(store, &new, &account).unwrap(),
            |load| {
                let tampered = load.tampered(operator.master());
                admin::refuse_tampered(&tampered, now, || {
                    admin::decide_replace(load, &new, &account, &request, &operator, now)
                })
            },
        )
        .unwrap()
    };
    let refused = |answer: Result<String, crate::operator::OperatorError>| match answer {
        Err(crate::operator::OperatorError::Conflict { code, .. }) => code == "record_tampered",
        _ => false,
    };
    assert!(refused(unlock(&mut world).map(|_| String::new())));
    assert!(refused(replace(&mut world).map(|_| String::new())));
    assert!(refused(unlock(&mut world).map(|_| String::new())));
    let raised = flags(&mut world, "record_tampered");
    assert_eq!(raised.len(), 1, "one edit, one flag: {raised:?}");
    assert_eq!(raised[0]["subject"], envelope_key());
    assert_eq!(raised[0]["evidence"]["kind"], EnvelopeRecord::MAC_KIND);
    // Nothing written: the edited record is as the DBA left it, the replacement unbound, the
    // account still on its envelope.
    assert_eq!(raw(&mut world.store, &envelope_key()), edited);
    let spare = world.envelope_record("26399912346").value.unwrap();
    assert_eq!(spare.view.status, EnvelopeStatus::Unallocated);
    assert_eq!(world.account(PAYER).current_envelope, Some(euin));
    // A further edit of the same record is a new state: raised again, once.
    edit(
        &mut world.store,
        &envelope_key(),
        "consecutive_failures",
        serde_json::json!(2),
    );
    assert!(refused(replace(&mut world).map(|_| String::new())));
    assert!(refused(unlock(&mut world).map(|_| String::new())));
    assert_eq!(flags(&mut world, "record_tampered").len(), 2);
    // The holder's authentic envelope is stepped on as before (the check blocks only edits).
    let mut world = World::new();
    world.print(&new);
    let (record, retired) = replace(&mut world).unwrap();
    assert_eq!(retired, euin);
    assert_eq!(record.view.status, EnvelopeStatus::Active { account });
    assert!(flags(&mut world, "record_tampered").is_empty());
}
