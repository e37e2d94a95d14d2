//! Purse sync over an SMS gateway, in the rail: the packing's bounds and test vectors, the
//! operator's durable assembly of parts (reordered, repeated, replayed, rewritten, expired), and a
//! long agent log synced over several rounds that each fit the SMS budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use offpay_ledger::Operation;
use offpay_operator::record::StoredRecord;
use offpay_purse::params::*;
use offpay_purse::sms_book::{self, LoadedAssembly, PartOutcome, SmsAssembly};
use offpay_purse::sync::{self, SmsPart};
use offpay_purse::*;

/// The operator's records of SMS assemblies, as a store would keep them: key → (version, value).
#[derive(Default)]
struct Inbox {
    records: BTreeMap<String, (u64, SmsAssembly)>,
}

impl Inbox {
    fn loaded(&self, sender: Phone) -> Vec<LoadedAssembly> {
        let prefix = sms_book::sender_prefix(sender);
        self.records
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .map(|(key, (version, value))| (key.clone(), *version, value.clone()))
            .collect()
    }

    /// Commits conditional writes the way the ledger does (all or nothing).
    fn commit(&mut self, writes: &[Operation]) {
        for write in writes {
            let Operation::PutRecord(write) = write else {
                panic!("only record writes")
            };
            let current = self
                .records
                .get(&write.key)
                .map_or(0, |(version, _)| *version);
            assert_eq!(Some(current), write.expected_version, "a stale write");
        }
        for write in writes {
            let Operation::PutRecord(write) = write else {
                unreachable!()
            };
            let current = self
                .records
                .get(&write.key)
                .map_or(0, |(version, _)| *version);
            match &write.value {
                Some(bytes) => {
                    let value = SmsAssembly::decode(&write.key, bytes).unwrap();
                    self.records.insert(write.key.clone(), (current + 1, value));
                }
                None => {
                    self.records.remove(&write.key);
                }
            }
        }
    }

    /// One inbound text: decide, commit, and (when it completes a message) mark it synced as
    /// the sync's commit would.
    fn receive(&mut self, sender: Phone, text: &str, now_ms: u64) -> PartOutcome {
        let part = sync::parse_sms_part(text).unwrap();
        let step = sms_book::decide_part(sender, &part, &self.loaded(sender), now_ms).unwrap();
        self.commit(&step.writes);
        if matches!(step.outcome, PartOutcome::Complete(_)) {
            let key = sms_book::assembly_key(sender, part.message_id);
            let (version, held) = self.records.get(&key).cloned().unwrap();
            let mut done = held.clone();
            done.parts.clear();
            done.completed_at_ms = now_ms;
            self.records.insert(key, (version + 1, done));
        }
        step.outcome
    }
}

const MS: u64 = 1000;

fn upload_texts(purse: &mut Purse, now: Timestamp, entries_max: usize) -> Vec<String> {
    let Outcome::SyncUpload { upload, sequence } = purse.start_sync_round(now, entries_max) else {
        panic!("an upload")
    };
    sync::pack_sms(&upload, sync::sms_message_id(sequence)).unwrap()
}

#[test]
fn the_packing_has_fixed_test_vectors() {
    let message: Vec<u8> = (0u8..=200).collect();
    let texts = sync::pack_sms(&message, 7).unwrap();
    assert_eq!(texts.len(), 2);
    assert_eq!(
        texts[0],
        "OP1 7 1/2 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG"
    );
    assert_eq!(
        texts[1],
        "OP1 7 2/2 1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfI"
    );
    assert_eq!(sync::unpack_sms(&[&texts[1], &texts[0]]).unwrap(), message);
    let part = sync::parse_sms_part(&texts[1]).unwrap();
    assert_eq!((part.message_id, part.index, part.total), (7, 2, 2));
    assert!(sync::is_sms_part("OP1 7 1/2 AAEC"));
    assert!(!sync::is_sms_part("OP1 ST 1 2 0000000"));
    assert!(!sync::is_sms_part("PAY 100 0700000001"));
    assert_eq!(sync::sms_message_id(1_234), 234);
}

#[test]
fn a_worst_case_round_fits_the_sms_budget() {
    // The largest upload a round makes: a full round of the largest entries (payments to or from
    // a peer), every pending request, pairwise request and failure slot. It must pack into
    // SMS_PARTS_MAX texts.
    let mut world = World::new(11);
    let mut agent = world.provision("+254700000001", PurseKind::Agent);
    world.float(&agent, "100000");
    world.sync(&mut agent);
    let mut payees: Vec<Purse> = (0..10)
        .map(|index| world.provision(&format!("+2547000001{index:02}"), PurseKind::Customer))
        .collect();
    for payee in &mut payees {
        world.sync(payee);
    }
    for round in 0..SMS_ROUND_ENTRIES_MAX + 5 {
        let payee = &mut payees[round % 10];
        pay(&mut world, &mut agent, payee, "50");
    }
    for index in 0..PENDING_REQUESTS_MAX {
        let payer = &payees[index % 10];
        request(&mut world, &mut agent, payer, kes("1"));
    }
    let texts = upload_texts(&mut agent, world.now, SMS_ROUND_ENTRIES_MAX);
    assert!(
        texts.len() <= SMS_PARTS_MAX,
        "{} texts for one round",
        texts.len()
    );
    assert!(texts.iter().all(|text| text.len() <= SMS_CHARS_MAX));
}

/// Five hundred payments by an agent, its payees synced first (so the operator holds their
/// credits and waits for the agent's debits), then the agent syncs by SMS: every round fits the
/// SMS budget, the parts arrive in reverse with a repeat, each answer acknowledges what the round
/// carried, and nothing is flagged — the payer is not taken for one hiding debits while its log
/// is still coming in rounds.
#[test]
fn a_long_agent_log_syncs_over_sms_in_rounds_without_flags() {
    let mut world = World::new(12);
    let agent_phone = phone("+254700000001");
    let mut agent = world.provision("+254700000001", PurseKind::Agent);
    world.float(&agent, "100000");
    world.sync(&mut agent);
    let mut payees: Vec<Purse> = (0..10)
        .map(|index| world.provision(&format!("+2547000002{index:02}"), PurseKind::Customer))
        .collect();
    for payee in &mut payees {
        world.sync(payee);
    }
    const PAYMENTS: usize = 500;
    for index in 0..PAYMENTS {
        pay(&mut world, &mut agent, &mut payees[index % 10], "2");
        if index % 97 == 0 {
            world.tick(60);
        }
    }
    // The float's credit entry and the payments.
    let entries = agent.unacknowledged_log().len();
    assert_eq!(entries, PAYMENTS + 1);
    world.tick(3600);
    // The payees report first: the operator now holds 500 credits waiting for the agent's debits.
    for payee in &mut payees {
        world.sync(payee);
    }
    // The agent syncs once more in between (a partial round must not start the clock on its
    // missing debits).
    let mut inbox = Inbox::default();
    let mut rounds = 0;
    while !agent.unacknowledged_log().is_empty() {
        rounds += 1;
        assert!(
            rounds <= entries.div_ceil(SMS_ROUND_ENTRIES_MAX),
            "too many rounds"
        );
        let before = agent.unacknowledged_log().len();
        let mut texts = upload_texts(&mut agent, world.now, SMS_ROUND_ENTRIES_MAX);
        assert!(texts.len() <= SMS_PARTS_MAX);
        texts.reverse();
        let repeat = texts[0].clone();
        texts.insert(1, repeat);
        let mut upload = None;
        for text in &texts {
            if let PartOutcome::Complete(bytes) = inbox.receive(agent_phone, text, world.now.0 * MS)
            {
                assert!(upload.is_none(), "completed twice");
                upload = Some(bytes);
            }
        }
        let outcome = world
            .book
            .handle_upload(
                &world.secrets,
                &upload.expect("the round completes"),
                world.now,
            )
            .unwrap();
        world.ledger.apply(&outcome.postings);
        world.flags.extend(outcome.flags);
        let answer_texts = sync::pack_sms(&outcome.answer, 0).unwrap();
        assert!(answer_texts.len() <= SMS_PARTS_MAX);
        agent
            .apply_answer(&sync::unpack_sms(&answer_texts).unwrap())
            .unwrap();
        let after = agent.unacknowledged_log().len();
        assert_eq!(
            before - after,
            before.min(SMS_ROUND_ENTRIES_MAX),
            "the answer acknowledges exactly what the round carried"
        );
        world.tick(30);
    }
    assert_eq!(rounds, entries.div_ceil(SMS_ROUND_ENTRIES_MAX));
    assert!(
        world.flags.is_empty(),
        "no flags, found {}: {:?}",
        world.flags.len(),
        world.flags.first()
    );
    assert_eq!(world.shadow_minor(&agent), agent.balance().minor_signed());
    assert!(
        !world
            .book
            .shadow(agent.identity().purse_id)
            .unwrap()
            .blocked
    );
}

/// A payer that sends rounds shorter than SYNC_ROUND_ENTRIES_MIN does not postpone the check: a
/// debit it has not sent by the time it applies an answer built after the payee's report is
/// flagged on the payer (an honest purse sends full rounds).
#[test]
fn a_short_partial_round_does_not_postpone_the_missing_debit_check() {
    let mut world = World::new(13);
    let payer_phone = phone("+254700000003");
    let mut payer = world.provision("+254700000003", PurseKind::Customer);
    let mut payee = world.provision("+254700000004", PurseKind::Customer);
    world.float(&payer, "500");
    world.sync(&mut payer);
    world.sync(&mut payee);
    pay(&mut world, &mut payer, &mut payee, "10");
    pay(&mut world, &mut payer, &mut payee, "10");
    world.sync(&mut payee);
    for _ in 0..3 {
        let Outcome::SyncUpload { upload, .. } = payer.start_sync_round(world.now, 1) else {
            panic!()
        };
        let outcome = world
            .book
            .handle_upload(&world.secrets, &upload, world.now)
            .unwrap();
        world.flags.extend(outcome.flags);
        payer.apply_answer(&outcome.answer).unwrap();
        world.tick(10);
    }
    assert!(
        world.flags.iter().any(|flag| flag.phone == payer_phone
            && matches!(flag.kind, FlagKind::MissingFromPayerLog { .. })),
        "{:?}",
        world.flags
    );
}

fn part(text: &str) -> SmsPart {
    sync::parse_sms_part(text).unwrap()
}

fn texts_of(message: &[u8], id: u16) -> Vec<String> {
    sync::pack_sms(message, id).unwrap()
}

#[test]
fn parts_in_any_order_with_repeats_complete_once() {
    let sender = phone("+254700000005");
    let message: Vec<u8> = (0..400u16).map(|byte| byte as u8).collect();
    let texts = texts_of(&message, 42);
    assert_eq!(texts.len(), 4);
    let mut inbox = Inbox::default();
    let order = [2, 0, 2, 3, 0];
    for index in order {
        let outcome = inbox.receive(sender, &texts[index], 1_000);
        assert!(
            matches!(outcome, PartOutcome::Stored { .. } | PartOutcome::Duplicate),
            "{outcome:?}"
        );
    }
    assert_eq!(
        inbox.receive(sender, &texts[1], 2_000),
        PartOutcome::Complete(message)
    );
}

/// A replayed part of a message already synced is ignored while the marker lives (and after it,
/// the sync itself refuses the replayed upload by its sequence).
#[test]
fn a_replayed_part_after_the_sync_is_ignored() {
    let sender = phone("+254700000006");
    let texts = texts_of(&[9u8; 150], 5);
    let mut inbox = Inbox::default();
    let mut completed = 0;
    for text in &texts {
        if matches!(inbox.receive(sender, text, 1_000), PartOutcome::Complete(_)) {
            completed += 1;
        }
    }
    assert_eq!(completed, 1);
    for text in &texts {
        assert_eq!(
            inbox.receive(sender, text, 5_000),
            PartOutcome::AlreadySynced,
            "a replay"
        );
    }
}

/// A rewritten part (another text at a position already held) does not replace the first; a
/// part claiming another total is not mixed in either.
#[test]
fn a_rewritten_part_does_not_replace_the_one_held() {
    let sender = phone("+254700000007");
    let message = [3u8; 300];
    let texts = texts_of(&message, 8);
    let mut inbox = Inbox::default();
    inbox.receive(sender, &texts[0], 1_000);
    let mut forged = texts[0].clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert_eq!(
        inbox.receive(sender, &forged, 1_100),
        PartOutcome::Conflicting
    );
    let other_total = format!("OP1 8 2/{} AAAA", texts.len() + 1);
    assert_eq!(
        inbox.receive(sender, &other_total, 1_200),
        PartOutcome::Conflicting
    );
    let mut last = PartOutcome::Duplicate;
    for text in &texts[1..] {
        last = inbox.receive(sender, text, 1_300);
    }
    assert_eq!(last, PartOutcome::Complete(message.to_vec()));
}

/// Parts of one sender never complete another sender's message with the same id.
#[test]
fn parts_of_two_senders_never_mix() {
    let alice = phone("+254700000008");
    let mallory = phone("+254700000009");
    let texts = texts_of(&[1u8; 300], 11);
    let mut inbox = Inbox::default();
    for text in &texts[..texts.len() - 1] {
        inbox.receive(alice, text, 1_000);
    }
    let last = texts.last().unwrap();
    assert!(matches!(
        inbox.receive(mallory, last, 1_000),
        PartOutcome::Stored { .. }
    ));
    assert!(matches!(
        inbox.receive(alice, last, 1_000),
        PartOutcome::Complete(_)
    ));
}

/// A message whose parts do not all arrive within SMS_ASSEMBLY_SECONDS_MAX expires: a late part
/// starts over instead of completing it with stale parts.
#[test]
fn a_message_that_never_completes_expires() {
    let sender = phone("+254700000010");
    let texts = texts_of(&[4u8; 300], 12);
    let mut inbox = Inbox::default();
    for text in &texts[..texts.len() - 1] {
        inbox.receive(sender, text, 1_000);
    }
    let late = 1_000 + SMS_ASSEMBLY_SECONDS_MAX * MS;
    let outcome = inbox.receive(sender, texts.last().unwrap(), late);
    assert!(
        matches!(outcome, PartOutcome::Stored { received: 1, .. }),
        "{outcome:?}"
    );
}

/// One sender keeps at most SMS_ASSEMBLIES_PER_SENDER_MAX half-received messages: a flood of
/// first parts costs the operator a bounded number of records.
#[test]
fn one_sender_holds_a_bounded_number_of_messages() {
    let sender = phone("+254700000011");
    let mut inbox = Inbox::default();
    for id in 0..50u16 {
        let texts = texts_of(&[id as u8; 300], id);
        inbox.receive(sender, &texts[0], 1_000 + u64::from(id));
    }
    assert_eq!(inbox.loaded(sender).len(), SMS_ASSEMBLIES_PER_SENDER_MAX);
}

/// Parts that decode to no message are dropped, so the purse's resend starts clean.
#[test]
fn an_unreadable_message_is_dropped() {
    let sender = phone("+254700000012");
    let mut inbox = Inbox::default();
    assert!(matches!(
        inbox.receive(sender, "OP1 13 1/2 A", 1_000),
        PartOutcome::Stored { .. }
    ));
    assert_eq!(
        inbox.receive(sender, "OP1 13 2/2 AAAA", 1_000),
        PartOutcome::Unreadable
    );
    assert!(inbox.loaded(sender).is_empty());
}

#[test]
fn a_statement_code_is_the_purses_own_and_used_once_per_counter() {
    let mut world = World::new(14);
    let mut purse = world.provision("+254700000013", PurseKind::Customer);
    let Outcome::StatementRequested(first) = purse
        .handle(Command::StatementRequest, world.now, &mut world.random)
        .unwrap()
    else {
        panic!()
    };
    let Outcome::StatementRequested(second) = purse
        .handle(Command::StatementRequest, world.now, &mut world.random)
        .unwrap()
    else {
        panic!()
    };
    assert!(second.counter > first.counter);
    assert_ne!(first.code, second.code);
    let text = first.text();
    assert!(text.starts_with("OP1 ST "), "{text}");
    assert_eq!(
        sync::StatementRequest::parse(&text).unwrap().unwrap(),
        first
    );
    // A sync after a statement request is not a replay: the counter is the sync sequence.
    world.sync(&mut purse);
}

/// `part` is used by the assembly tests above; keep the helper referenced.
#[test]
fn a_part_reads_its_header() {
    let read = part("OP1 999 3/64 QUJD");
    assert_eq!((read.message_id, read.index, read.total), (999, 3, 64));
    assert!(sync::parse_sms_part("OP1 1000 1/1 QUJD").is_err());
    assert!(sync::parse_sms_part("OP1 1 0/1 QUJD").is_err());
    assert!(sync::parse_sms_part("OP1 1 2/1 QUJD").is_err());
    assert!(sync::parse_sms_part("OP1 1 1/65 QUJD").is_err());
    assert!(sync::parse_sms_part("OP1 1 1/1 QU=D").is_err());
}

/// The largest answer the SMS path makes fits its texts: 64 operator credits queued, each with a
/// 64-byte memo, and 512 blocked purses on the list. With the HTTP bound of credits it would not
/// (that was the answer-side limit); the SMS answer carries SMS_ANSWER_CREDITS_MAX and offers the
/// rest at the next round. Tickets (16 × 25 bytes), ticket codes (8 × 55) and unknown peers
/// (4 × 7) add at most 8 more texts.
#[test]
fn a_worst_case_sms_answer_fits_the_sms_budget() {
    let mut world = World::new(15);
    let mut purse = world.provision("+254700000014", PurseKind::Agent);
    for index in 0..BLOCKED_PURSES_MAX {
        let other = world.provision(&format!("+2547001{index:05}"), PurseKind::Customer);
        world
            .book
            .set_blocked(other.identity().purse_id, true)
            .unwrap();
    }
    let memo = "m".repeat(MEMO_BYTES_MAX);
    for _ in 0..ANSWER_CREDITS_MAX {
        let posting = world
            .book
            .queue_operator_credit(purse.identity().purse_id, kes("1"), &memo)
            .unwrap();
        world.ledger.apply(&[posting]);
    }
    let Outcome::SyncUpload { upload, .. } = purse.start_sync(world.now) else {
        panic!()
    };
    let mut http_book = world.book.clone();
    let http = http_book
        .handle_upload(&world.secrets, &upload, world.now)
        .unwrap();
    assert!(
        sync::pack_sms(&http.answer, 1).is_err(),
        "the HTTP answer does not fit SMS"
    );
    let outcome = world
        .book
        .handle_upload_answering(&world.secrets, &upload, world.now, SMS_ANSWER_CREDITS_MAX)
        .unwrap();
    let texts = sync::pack_sms(&outcome.answer, 1).unwrap();
    assert!(texts.len() + 8 <= SMS_PARTS_MAX, "{} texts", texts.len());
    let Outcome::SyncApplied(report) = purse.apply_answer(&outcome.answer).unwrap() else {
        panic!()
    };
    assert_eq!(report.credits.len(), SMS_ANSWER_CREDITS_MAX);
}
