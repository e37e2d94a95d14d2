//! The operator's timed work: scheduled payments paid at their time, pending callbacks the payer
//! never confirmed expired (and the payer told), web sessions past their time deleted. The server
//! calls these once per pass with a page of records; each payment or expiry is its own decision.

use offpay_ledger::{Currency, LedgerStore, Record, Timestamp};
use offpay_operator::{Decision, Effects, Loaded, RecordError};

use crate::engine::{PayeeContext, PayerContext};
use crate::operator::apply::{ApplyInput, Summary, apply};
use crate::operator::load::{PayerLookup, Reader, RecordSet, Tampered, load_payee, load_payer};
use crate::operator::records::{PendingRecord, ScheduledRecord, decode_record, short_hash};
use crate::operator::{Operator, OperatorError, seconds, web};

/// Scheduled payments, callbacks or sessions handled per scheduler pass and kind.
pub const SCHEDULER_PAGE: usize = 100;

/// The keys of the scheduled payments in `page` (a page of `sched:` records, ordered by due
/// time) that are due at `now`, and the errors of those that do not decode.
pub fn due_payments(page: &[Record], now: Timestamp) -> (Vec<String>, Vec<RecordError>) {
    let mut due = Vec::new();
    let mut errors = Vec::new();
    for record in page {
        match decode_record::<ScheduledRecord>(record) {
            Ok(ScheduledRecord(payment, _)) if payment.due > seconds(now) => {
                // Keys are ordered by due time: nothing later is due either.
                break;
            }
            Ok(_) => due.push(record.key.clone()),
            Err(error) => errors.push(error),
        }
    }
    (due, errors)
}

/// What a scheduled payment reads: the record itself (again, at the version it is deleted at),
/// the payer by account and the payee.
#[derive(Debug)]
pub struct ScheduledLoad {
    scheduled: Loaded<ScheduledRecord>,
    payer: Option<PayerContext>,
    payee: Option<PayeeContext>,
    records: RecordSet,
}

/// Reads the scheduled payment under `key` and its payer and payee (from the store).
pub fn load_scheduled(
    store: &mut dyn LedgerStore,
    key: &str,
    operator: &Operator,
    now: Timestamp,
) -> Result<ScheduledLoad, RecordError> {
    let scheduled = Loaded::<ScheduledRecord>::read(store, key)?;
    let mut records = RecordSet::default();
    let (mut payer, mut payee) = (None, None);
    if let Some(record @ ScheduledRecord(payment, _)) = &scheduled.value
        && record.authentic(operator.master(), key)
    {
        let mut reader = Reader::new(store, None, &mut records);
        payer = load_payer(
            &mut reader,
            &PayerLookup::Account(payment.payer),
            operator,
            seconds(now),
        )?;
        payee = load_payee(
            &mut reader,
            &payment.payee,
            &payment.payer,
            operator,
            seconds(now),
        )?;
    }
    Ok(ScheduledLoad {
        scheduled,
        payer,
        payee,
        records,
    })
}

/// Runs a due scheduled payment and deletes it in the same batch; `None` when it is gone (run by
/// another server) or not due.
pub fn decide_scheduled(
    load: ScheduledLoad,
    now: Timestamp,
    operator: &Operator,
    operator_ready: &[Currency],
) -> Result<Decision<Option<Summary>>, OperatorError> {
    let ScheduledLoad {
        scheduled,
        payer,
        payee,
        records,
    } = load;
    let Some(record @ ScheduledRecord(payment, _)) = &scheduled.value else {
        return Ok(Decision::commit(Effects::new(), None));
    };
    if payment.due > seconds(now) {
        return Ok(Decision::commit(Effects::new(), None));
    }
    if !record.authentic(operator.master(), &scheduled.key) {
        // Written or changed outside the operator's code: nothing is paid; the record leaves the
        // queue and the fraud queue holds what it claimed.
        let tampered = Tampered {
            kind: ScheduledRecord::MAC_KIND,
            key: scheduled.key.clone(),
            evidence: serde_json::json!({
                "payer": payment.payer.to_string(),
                "payee": payment.payee.to_string(),
                "amount": payment.amount.to_string(),
            }),
        };
        let mut effects = Effects::new();
        effects.flag(&tampered.flag(now), &short_hash(&scheduled.key));
        effects.write(scheduled.delete());
        return Ok(Decision::commit(effects, None));
    }
    let outcome = operator
        .engine()
        .execute_scheduled(payment, payer, payee, seconds(now));
    let applied = apply(ApplyInput {
        outcome: &outcome,
        records: &records,
        inline_to: None,
        dedupe_key: None,
        message_id: &payment.message_id,
        extra: vec![scheduled.delete()],
        password_hashes: &[],
        statements: &[],
        now,
        operator,
        operator_ready,
    })?;
    Ok(match applied {
        Some(applied) => Decision::commit(applied.effects, Some(applied.summary)),
        None => Decision::Reload,
    })
}

/// The keys of the pending callbacks in `page` (a page of `pend:` records) past their time at
/// `now`, and the errors of those that do not decode.
pub fn expired_callbacks(page: &[Record], now: Timestamp) -> (Vec<String>, Vec<RecordError>) {
    let mut expired = Vec::new();
    let mut errors = Vec::new();
    for record in page {
        match decode_record::<PendingRecord>(record) {
            Ok(pending) if seconds(now) > pending.callback.expires_at() => {
                expired.push(record.key.clone());
            }
            Ok(_) => {}
            Err(error) => errors.push(error),
        }
    }
    (expired, errors)
}

/// Expires the pending callback `pending` (read again under its key): removed, and the payer
/// told. `None` when it is gone or not expired.
pub fn decide_expiry(
    pending: Loaded<PendingRecord>,
    now: Timestamp,
    operator: &Operator,
) -> Result<Decision<Option<Summary>>, OperatorError> {
    let Some(record) = pending.value.clone() else {
        return Ok(Decision::commit(Effects::new(), None));
    };
    let Some(outcome) =
        operator
            .engine()
            .expire_pending(&record.callback, &record.reply_to, seconds(now))
    else {
        return Ok(Decision::commit(Effects::new(), None));
    };
    let message_id = format!("expire:{}", pending.key);
    let mut records = RecordSet::default();
    records.pending.insert(pending.key.clone(), pending);
    let applied = apply(ApplyInput {
        outcome: &outcome,
        records: &records,
        inline_to: None,
        dedupe_key: None,
        message_id: &message_id,
        extra: Vec::new(),
        password_hashes: &[],
        statements: &[],
        now,
        operator,
        operator_ready: &[],
    })?;
    Ok(match applied {
        Some(applied) => Decision::commit(applied.effects, Some(applied.summary)),
        None => Decision::Reload,
    })
}

/// Deletes the sessions of `page` (a page of `sess:` records) past their time, each only if
/// unchanged since read; the errors are those of records that did not decode (deleted too: they
/// can never be used).
pub fn session_sweep(page: &[Record], now: Timestamp) -> (Effects, Vec<RecordError>) {
    let (expired, errors) = web::expired_sessions(page, now);
    let mut effects = Effects::new();
    effects.write_all(expired.iter().map(Loaded::delete));
    (effects, errors)
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Amount, LedgerStore};

    use super::*;
    use crate::civil_time::CivilDateTime;
    use crate::limits::CALLBACK_TIMEOUT_SECONDS;
    use crate::operator::records::{
        self, Answered, NAMESPACE, OUTBOUND_PREFIX, PENDING_PREFIX, SCHEDULED_PREFIX,
        SESSION_PREFIX, SessionRecord,
    };
    use crate::operator::testing::*;

    fn page(world: &mut World, prefix: &str) -> Vec<Record> {
        world
            .store
            .records(NAMESPACE, prefix, None, SCHEDULER_PAGE)
            .unwrap()
    }

    #[test]
    fn a_scheduled_payment_is_paid_at_its_time_and_then_gone() {
        let mut world = World::new();
        let due = seconds(world.now).0 + 3600 - seconds(world.now).0 % 60;
        let civil = CivilDateTime::from_unix(crate::civil_time::UnixSeconds(due), 0).unwrap();
        let text = format!(
            "LATER {:04}-{:02}-{:02} {:02}:{:02} {}",
            civil.year,
            civil.month,
            civil.day,
            civil.hour,
            civil.minute,
            world.low(PAYEE, "750", 1)
        );
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Accepted
        );
        let early = page(&mut world, SCHEDULED_PREFIX);
        assert!(due_payments(&early, world.now).0.is_empty());
        world.now = Timestamp(due * 1000);
        let (keys, errors) = due_payments(&page(&mut world, SCHEDULED_PREFIX), world.now);
        assert!(errors.is_empty());
        assert_eq!(keys.len(), 1);
        let (operator, now) = (world.operator.clone(), world.now);
        let summary = run(
            &mut world.store,
            now,
            |store| load_scheduled(store, &keys[0], &operator, now).unwrap(),
            |load| decide_scheduled(load, now, &operator, &[]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(summary.verdict, Answered::Accepted);
        assert_eq!(world.balance(PAYEE), 75_000);
        assert!(page(&mut world, SCHEDULED_PREFIX).is_empty());
        // Run again (another server got there first): nothing happens.
        let again = run(
            &mut world.store,
            now,
            |store| load_scheduled(store, &keys[0], &operator, now).unwrap(),
            |load| decide_scheduled(load, now, &operator, &[]),
        )
        .unwrap();
        assert!(again.is_none());
        assert_eq!(world.balance(PAYEE), 75_000);
    }

    #[test]
    fn an_unconfirmed_callback_expires_and_the_payer_is_told() {
        let mut world = World::new();
        let text = crate::compose::grid_text(
            &world.envelope,
            crate::grammar::SecurityLevel::High,
            PAYER_EUIN,
            &number(PAYEE),
            &kes("100"),
            1,
        )
        .unwrap();
        world.sms(PAYER_PHONE, &text);
        assert!(
            expired_callbacks(&page(&mut world, PENDING_PREFIX), world.now)
                .0
                .is_empty()
        );
        world.now = Timestamp(world.now.0 + (CALLBACK_TIMEOUT_SECONDS + 1) * 1000);
        let (keys, _) = expired_callbacks(&page(&mut world, PENDING_PREFIX), world.now);
        assert_eq!(keys.len(), 1);
        let (operator, now) = (world.operator.clone(), world.now);
        let summary = run(
            &mut world.store,
            now,
            |store| Loaded::<PendingRecord>::read(store, &keys[0]).unwrap(),
            |pending| decide_expiry(pending, now, &operator),
        )
        .unwrap()
        .unwrap();
        assert_eq!(summary.queued, 1);
        assert!(page(&mut world, PENDING_PREFIX).is_empty());
        let told = page(&mut world, OUTBOUND_PREFIX);
        assert_eq!(told.len(), 1);
        assert_eq!(world.balance(PAYEE), 0);
    }

    fn flags(world: &mut World, kind: &str) -> Vec<Record> {
        world
            .store
            .records(
                offpay_operator::fraud::NAMESPACE,
                &format!("sms:{kind}:"),
                None,
                10,
            )
            .unwrap()
    }

    /// Attack 2 of issue 18 (a DBA moves money with one INSERT): a scheduled payment written
    /// straight into the database, with every field right but no MAC the operator made, is
    /// refused at its time, raised in the fraud queue, and pays nothing.
    #[test]
    fn a_scheduled_payment_inserted_by_a_dba_pays_nothing_and_is_flagged() {
        let mut world = World::new();
        let due = seconds(world.now).0 + 60;
        let payment = crate::engine::ScheduledPayment {
            format_version: crate::engine::RECORD_FORMAT_VERSION,
            message_id: "dba-insert".into(),
            payer: number(PAYER),
            payee: number(PAYEE),
            amount: kes("5000"),
            level: crate::grammar::SecurityLevel::Low,
            due: crate::civil_time::UnixSeconds(due),
            reply_to: phone(PAYER_PHONE),
            reference: crate::posting::Reference::parse("12345678").unwrap(),
        };
        let key = records::scheduled_key(payment.due, &payment.message_id);
        // What the DBA can write: the record without the master key (a guessed MAC, or the MAC
        // of another record).
        let mut effects = Effects::new();
        effects.write(
            crate::operator::apply::put(key.clone(), &ScheduledRecord(payment, [7; 32])).unwrap(),
        );
        assert!(commit(&mut world.store, effects, world.now));
        world.now = Timestamp(due * 1000);
        let (keys, _) = due_payments(&page(&mut world, SCHEDULED_PREFIX), world.now);
        assert_eq!(keys, vec![key]);
        let (operator, now) = (world.operator.clone(), world.now);
        let summary = run(
            &mut world.store,
            now,
            |store| load_scheduled(store, &keys[0], &operator, now).unwrap(),
            |load| decide_scheduled(load, now, &operator, &[]),
        )
        .unwrap();
        assert!(summary.is_none(), "nothing was run: {summary:?}");
        assert_eq!(world.balance(PAYEE), 0, "the payee got nothing");
        assert_eq!(world.balance(PAYER), 1_000_000, "the payer lost nothing");
        assert_eq!(flags(&mut world, "record_tampered").len(), 1);
        assert!(page(&mut world, SCHEDULED_PREFIX).is_empty());
    }

    /// Attack 2 of issue 18: a DBA raises the amount of a pending callback payment before the
    /// payer's honest OK, to an amount the OK's checksum does not tell apart. The record's MAC no
    /// longer matches: the OK is refused, the fraud queue has the record, nothing moves.
    #[test]
    fn a_pending_payment_raised_by_a_dba_before_the_ok_moves_nothing() {
        let mut world = World::new();
        let meant = kes("100");
        let text = crate::compose::grid_text(
            &world.envelope,
            crate::grammar::SecurityLevel::High,
            PAYER_EUIN,
            &number(PAYEE),
            &meant,
            1,
        )
        .unwrap();
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Accepted
        );
        let keys = page(&mut world, PENDING_PREFIX);
        assert_eq!(keys.len(), 1);
        let mut pending = Loaded::<PendingRecord>::read(&mut world.store, &keys[0].key).unwrap();
        // The payer's OK (row 2) over what they meant; the DBA picks the largest amount up to
        // twice as much that the same checksum accepts (the worst case for the defence).
        let recipe = world.envelope.row(2).unwrap().recipe().clone();
        let payee = number(PAYEE);
        let honest = recipe.checksum(&payee, &meant);
        let raised = (meant.minor() + 1..=meant.minor() * 2)
            .rev()
            .map(|minor| Amount::from_minor(minor, Currency::KES).unwrap())
            .find(|amount| recipe.checksum(&payee, amount) == honest)
            .expect("an amount the checksum does not tell apart");
        let mut record = pending.value.take().unwrap();
        record.callback.amount = raised;
        let mut effects = Effects::new();
        effects.write(pending.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        let digits: String = honest.iter().map(|d| char::from(b'0' + d)).collect();
        let ok = format!("OK {PAYER_EUIN} 20 {} 2 {digits}", tan(&world, 20));
        let answer = world.sms(PAYER_PHONE, &ok);
        assert_eq!(answer.summary.verdict, Answered::Refused, "{answer:?}");
        assert_eq!(world.balance(PAYEE), 0, "the payee got nothing");
        assert_eq!(world.balance(PAYER), 1_000_000, "the payer lost nothing");
        assert_eq!(flags(&mut world, "record_tampered").len(), 1);
    }

    /// Issue 18, attack 2 (settings): a DBA turns off the holder's "callback for every payment"
    /// and lifts the limit per payment in the account record. The settings no longer match
    /// their MAC: the account pays nothing until the operator looks, and the fraud queue has it.
    #[test]
    fn account_settings_changed_by_a_dba_stop_the_account_paying() {
        let mut world = World::new();
        let key = records::account_key(&number(PAYER));
        let mut account = Loaded::<records::AccountRecord>::read(&mut world.store, &key).unwrap();
        let mut record = account.value.take().unwrap();
        record.limits.per_payment = Some(kes("1"));
        record.seal_settings(world.operator.master(), &key);
        let mut effects = Effects::new();
        effects.write(account.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        // The holder's own limit of KES 1 holds.
        let text = world.low(PAYEE, "100", 1);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Refused
        );
        // The DBA lifts it, keeping the MAC he cannot recompute.
        let mut account = Loaded::<records::AccountRecord>::read(&mut world.store, &key).unwrap();
        let mut record = account.value.take().unwrap();
        record.limits.per_payment = None;
        let mut effects = Effects::new();
        effects.write(account.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        let text = world.low(PAYEE, "100", 2);
        let answer = world.sms(PAYER_PHONE, &text);
        assert_eq!(answer.summary.verdict, Answered::Refused, "{answer:?}");
        assert_eq!(world.balance(PAYEE), 0);
        assert_eq!(world.balance(PAYER), 1_000_000);
        assert_eq!(flags(&mut world, "record_tampered").len(), 1);
    }

    /// Issue 18: the spending window carries its own MAC. A DBA who sets today's and this
    /// week's totals back to zero (so a daily limit lets more through) stops the account
    /// paying; the record is flagged `record_tampered` and nothing moves.
    #[test]
    fn a_spending_window_lowered_by_a_dba_stops_the_account_paying() {
        let mut world = World::new();
        let key = records::account_key(&number(PAYER));
        // The holder's own daily limit of KES 150.
        let mut account = Loaded::<records::AccountRecord>::read(&mut world.store, &key).unwrap();
        let mut record = account.value.take().unwrap();
        record.limits.per_day = Some(kes("150"));
        record.seal_settings(world.operator.master(), &key);
        let mut effects = Effects::new();
        effects.write(account.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        let text = world.low(PAYEE, "100", 1);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Accepted
        );
        assert_eq!(world.account(PAYER).spending.today, kes("100"));
        // The daily limit holds: another KES 100 today is refused.
        let text = world.low(PAYEE, "100", 2);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Refused
        );
        assert_eq!(world.balance(PAYEE), 10_000);
        // The DBA resets the window, keeping the MAC he cannot recompute.
        let mut account = Loaded::<records::AccountRecord>::read(&mut world.store, &key).unwrap();
        let mut record = account.value.take().unwrap();
        record.spending = crate::operator::spending::SpendingWindow::empty(record.currency);
        let mut effects = Effects::new();
        effects.write(account.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        let text = world.low(PAYEE, "100", 3);
        let answer = world.sms(PAYER_PHONE, &text);
        assert_eq!(answer.summary.verdict, Answered::Refused, "{answer:?}");
        assert_eq!(world.balance(PAYEE), 10_000, "nothing more moved");
        let tampered = flags(&mut world, "record_tampered");
        assert_eq!(tampered.len(), 1);
        assert!(
            String::from_utf8_lossy(&tampered[0].value).contains("account-spending"),
            "{:?}",
            String::from_utf8_lossy(&tampered[0].value)
        );
        // Removing the MAC as well does not help him.
        let mut account = Loaded::<records::AccountRecord>::read(&mut world.store, &key).unwrap();
        let mut record = account.value.take().unwrap();
        record.spending_mac = [0; 32];
        let mut effects = Effects::new();
        effects.write(account.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        let text = world.low(PAYEE, "100", 4);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Refused
        );
        assert_eq!(world.balance(PAYEE), 10_000);
    }

    /// Issue 18 (review of "every stored record that can cause a posting"): the pay-number
    /// index is not sealed. A DBA who points his own account's index entry at a holder who
    /// requires the secret pay number lets a thief with the holder's envelope pay under the
    /// DBA's pay number — unless the account's own (sealed) tag must match, which it must.
    #[test]
    fn a_pay_number_index_pointed_at_another_account_finds_no_account() {
        let mut world = World::new();
        // The holder requires the pay number (the thief has the envelope, not the number).
        let key = records::account_key(&number(PAYER));
        let mut account = Loaded::<records::AccountRecord>::read(&mut world.store, &key).unwrap();
        let mut record = account.value.take().unwrap();
        record.require_pay_number = true;
        record.seal_settings(world.operator.master(), &key);
        let mut effects = Effects::new();
        effects.write(account.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        let text = world.low(PAYEE, "100", 1);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Refused,
            "the envelope alone does not pay"
        );
        // The DBA's own account, whose pay number he knows.
        let request = crate::operator::admin::CreateAccount {
            receive_number: Some("333300004444".into()),
            currency: None,
            notify_phone: None,
            bound_phones: Vec::new(),
            require_pay_number: false,
        };
        let plan = request.plan(offpay_ledger::Currency::KES, kenya()).unwrap();
        let (operator, now) = (world.operator.clone(), world.now);
        let entropy = offpay_operator::SeededEntropy::from_seed(7);
        let created = run(
            &mut world.store,
            now,
            |store| plan.load(store).unwrap(),
            |existing| {
                crate::operator::admin::decide_new_account(
                    existing, &plan, &operator, &entropy, now.0,
                )
            },
        )
        .unwrap();
        let dba_pay = created.pay_number;
        // He points his index entry at the holder's account.
        let index_key = records::pay_index_key(&world.operator.master().pay_number_tag(&dba_pay));
        let index = Loaded::<records::PayIndexRecord>::read(&mut world.store, &index_key).unwrap();
        assert!(index.value.is_some());
        let mut effects = Effects::new();
        effects.write(
            index
                .write(&records::PayIndexRecord(number(PAYER)))
                .unwrap(),
        );
        assert!(commit(&mut world.store, effects, world.now));
        // The thief pays with the holder's envelope under the DBA's pay number: nothing moves.
        let text = crate::compose::low_text(
            &world.envelope,
            &dba_pay.to_string(),
            &number(PAYEE),
            &kes("100"),
            2,
        )
        .unwrap();
        let answer = world.sms(PAYER_PHONE, &text);
        assert_eq!(answer.summary.verdict, Answered::Refused, "{answer:?}");
        assert_eq!(world.balance(PAYEE), 0);
        assert_eq!(world.balance(PAYER), 1_000_000);
    }

    #[test]
    fn expired_and_unreadable_sessions_are_swept() {
        let mut world = World::new();
        let mut effects = Effects::new();
        for (token, expires_at_ms) in [("a", 10), ("b", world.now.0 + 1)] {
            effects.write(
                crate::operator::apply::create(
                    records::session_key(token),
                    &SessionRecord {
                        account: number(PAYER),
                        csrf: "x".into(),
                        expires_at_ms,
                    },
                )
                .unwrap(),
            );
        }
        assert!(commit(&mut world.store, effects, world.now));
        let (effects, errors) = session_sweep(&page(&mut world, SESSION_PREFIX), world.now);
        assert!(errors.is_empty());
        assert!(commit(&mut world.store, effects, world.now));
        let left = page(&mut world, SESSION_PREFIX);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key, records::session_key("b"));
    }
}
