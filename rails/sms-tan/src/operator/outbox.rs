//! The outbound queue's policy: replies wait under `out:` (oldest first) until the gateway
//! accepts them; a failed attempt is retried after a doubling delay with random jitter (or later,
//! when the gateway asked to be left alone for longer: a 429's `Retry-After`), at most
//! [`SEND_ATTEMPTS_MAX`] times, then kept under `dead:` for the operator; a refusal the gateway
//! calls permanent goes to `dead:` at once. A failure reported by the gateway later (a delivery
//! report) queues the text again while attempts remain. Reports are idempotent and ordered by
//! what they mean, not by when they arrive: a duplicate changes nothing, a `delivered` is final,
//! a late intermediate report (`buffered`, `sent`) does not overwrite a final one, and a failure
//! queues the text once. The server's gateway adapters do the sending and commit what these
//! functions return.

use offpay_ledger::{Record, Timestamp};
use offpay_operator::{Decision, Effects, Loaded, RecordError};

use crate::keys::MasterKey;
use crate::operator::OperatorError;
use crate::operator::apply::put;
use crate::operator::records::{
    self, Delivery, OutboundRecord, SentRecord, decode_record, short_hash,
};

/// Send attempts before an SMS is given up (kept under `dead:` for the operator).
pub const SEND_ATTEMPTS_MAX: u32 = 8;
/// First retry delay; doubles per attempt.
pub const BACKOFF_BASE_MS: u64 = 500;
/// Longest retry delay.
pub const BACKOFF_MAX_MS: u64 = 5 * 60 * 1000;
/// Doublings of the delay after which it is [`BACKOFF_MAX_MS`] anyway (keeps the shift in range).
const BACKOFF_DOUBLINGS_MAX: u32 = 20;
/// Queue entries looked at per pass.
pub const OUTBOUND_PAGE: usize = 100;
/// Longest wait a gateway's `Retry-After` may impose on one SMS (a larger hint is cut to this).
pub const RETRY_AFTER_MAX_MS: u64 = 60 * 60 * 1000;
/// Longest message id of a gateway that is kept (longer ones are refused by the adapters).
pub const GATEWAY_ID_BYTES_MAX: usize = 200;

const _: () = assert!(BACKOFF_BASE_MS << BACKOFF_DOUBLINGS_MAX >= BACKOFF_MAX_MS);

/// The retry delay after `attempts` failed attempts.
pub fn backoff_ms(attempts: u32) -> u64 {
    BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempts.min(BACKOFF_DOUBLINGS_MAX))
        .min(BACKOFF_MAX_MS)
}

/// The retry delay after `attempts` failed attempts, with "equal jitter": half of
/// [`backoff_ms`] fixed, the other half drawn from `jitter` (random bits from the server's entropy),
/// so that messages failed together (a gateway outage) do not all come back at the same instant.
pub fn jittered_backoff_ms(attempts: u32, jitter: u64) -> u64 {
    let full = backoff_ms(attempts);
    let fixed = full / 2;
    fixed.saturating_add(jitter % (full - fixed).saturating_add(1))
}

/// Why a send attempt did not hand the SMS over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// Try again later (a network error, a 5xx, a rate limit); `retry_after_ms` is the gateway's
    /// own hint (`Retry-After`), honoured up to [`RETRY_AFTER_MAX_MS`].
    RetryLater {
        /// What went wrong, for the operator (no secrets, no text).
        reason: String,
        /// The gateway's hint, if it gave one.
        retry_after_ms: Option<u64>,
    },
    /// The gateway refused this SMS for good (an invalid number, a blacklisted recipient): it is
    /// kept under `dead:` at once.
    Permanent {
        /// What went wrong, for the operator.
        reason: String,
    },
}

impl SendFailure {
    fn reason(&self) -> &str {
        match self {
            SendFailure::RetryLater { reason, .. } | SendFailure::Permanent { reason } => reason,
        }
    }
}

/// The id an SMS is kept under once a gateway accepted it, when the gateway names its own
/// message id (`gateway` is the adapter's name): its delivery reports carry that id.
pub fn gateway_sent_id(gateway: &str, gateway_id: &str) -> String {
    format!("{gateway}-{}", short_hash(gateway_id))
}

/// A queued SMS that is due.
#[derive(Debug)]
pub struct Due {
    /// The queue entry as read.
    pub queued: Loaded<OutboundRecord>,
    /// The id it is sent under (delivery reports name it).
    pub sent_id: String,
}

impl Due {
    /// The queued SMS.
    pub fn sms(&self) -> Option<&OutboundRecord> {
        self.queued.value.as_ref()
    }
}

/// The entries of a page of the queue that are due at `now`, and the errors of entries that do
/// not decode (left in place for the operator).
pub fn due(page: &[Record], now: Timestamp) -> (Vec<Due>, Vec<RecordError>) {
    let mut due = Vec::new();
    let mut errors = Vec::new();
    for record in page {
        match decode_record::<OutboundRecord>(record) {
            Ok(queued) if queued.next_attempt_ms <= now.0 => due.push(Due {
                sent_id: short_hash(&record.key),
                queued: Loaded {
                    key: record.key.clone(),
                    version: record.version,
                    value: Some(queued),
                },
            }),
            Ok(_) => {}
            Err(error) => errors.push(error),
        }
    }
    (due, errors)
}

/// The gateway accepted `due`: it leaves the queue and is kept as sent, for delivery reports —
/// under `sent_id` (the id this server gave it, or [`gateway_sent_id`] when the gateway answered
/// with its own id).
pub fn sent(due: &Due, sent_id: &str, now: Timestamp) -> Result<Effects, OperatorError> {
    let queued = due
        .sms()
        .ok_or_else(|| OperatorError::Internal("a due SMS without its record".into()))?;
    let mut effects = Effects::new();
    effects.write(due.queued.delete());
    effects.write(put(
        records::sent_key(sent_id),
        &SentRecord {
            to: queued.to.clone(),
            queue_key: due.queued.key.clone(),
            status: Delivery::Accepted,
            sent_at_ms: now.0,
            report_at_ms: None,
            text: queued.text.clone(),
            text_hash: String::new(),
            attempts: queued.attempts.saturating_add(1),
        },
    )?);
    Ok(effects)
}

/// An attempt to send `due` failed: retried after [`jittered_backoff_ms`] (`jitter` is random
/// bits) or the gateway's `Retry-After` if that is longer, or given up after [`SEND_ATTEMPTS_MAX`]
/// attempts or a permanent refusal — then kept under `dead:` with the keyed hash of its text
/// (`master`), never the text.
pub fn failed(
    due: &Due,
    failure: &SendFailure,
    jitter: u64,
    now: Timestamp,
    master: &MasterKey,
) -> Result<Effects, OperatorError> {
    let mut queued = due
        .sms()
        .cloned()
        .ok_or_else(|| OperatorError::Internal("a due SMS without its record".into()))?;
    queued.attempts = queued.attempts.saturating_add(1);
    queued.last_error = Some(failure.reason().to_owned());
    let mut effects = Effects::new();
    let permanent = matches!(failure, SendFailure::Permanent { .. });
    if permanent || queued.attempts >= SEND_ATTEMPTS_MAX {
        queued.text_hash = master.text_tag(&queued.text);
        zeroize::Zeroize::zeroize(&mut queued.text);
        effects.write(due.queued.delete());
        effects.write(put(records::dead_key(&due.queued.key), &queued)?);
    } else {
        let backoff = jittered_backoff_ms(queued.attempts, jitter);
        let hint = match failure {
            SendFailure::RetryLater {
                retry_after_ms: Some(hint),
                ..
            } => (*hint).min(RETRY_AFTER_MAX_MS),
            _ => 0,
        };
        queued.next_attempt_ms = now.0.saturating_add(backoff.max(hint));
        effects.write(due.queued.write(&queued)?);
    }
    Ok(effects)
}

/// The name of a Kannel delivery report type: 1 delivered, 2 failed, 4 buffered, 8 SMSC accepted,
/// 16 SMSC rejected.
pub fn report(status: u32) -> Delivery {
    match status {
        1 => Delivery::Delivered,
        2 => Delivery::Failed,
        4 => Delivery::Buffered,
        8 => Delivery::SmscAccepted,
        16 => Delivery::SmscRejected,
        _ => Delivery::Unknown,
    }
}

/// Whether a report is final: nothing after it changes the record.
fn is_final(delivery: Delivery) -> bool {
    matches!(
        delivery,
        Delivery::Delivered | Delivery::Failed | Delivery::SmscRejected
    )
}

/// A delivery report saying `reported` about the SMS `sent` (`detail`: the gateway's words, for
/// the operator): the record notes it, and a failure queues the text again while attempts remain
/// (after [`jittered_backoff_ms`]). Reports are taken by meaning, not by arrival: once delivered
/// nothing changes; once failed, only a `delivered` (the phone got it after all) changes the
/// record, and never queues again; an intermediate report does not overwrite a final one; a
/// report equal to the last one changes nothing. Once delivered, or once no attempt remains, the
/// text is dropped and only its keyed hash kept (`master`). The answer says whether it was
/// queued again.
pub fn delivery_report(
    sent: Loaded<SentRecord>,
    id: &str,
    reported: Delivery,
    detail: &str,
    jitter: u64,
    now: Timestamp,
    master: &MasterKey,
) -> Result<Decision<bool>, OperatorError> {
    let Some(mut record) = sent.value.clone() else {
        return Err(OperatorError::not_found("sent_sms", id));
    };
    let changes = reported != record.status
        && (!is_final(record.status) || reported == Delivery::Delivered)
        && record.status != Delivery::Delivered;
    if !changes {
        return Ok(Decision::commit(Effects::new(), false));
    }
    let was_final = is_final(record.status);
    record.status = reported;
    record.report_at_ms = Some(now.0);
    let failed = matches!(reported, Delivery::Failed | Delivery::SmscRejected);
    let mut effects = Effects::new();
    let requeued = failed && !was_final && record.attempts < SEND_ATTEMPTS_MAX;
    if requeued {
        effects.write(put(
            records::outbound_key(
                now.0,
                &format!("{}/retry{}", record.queue_key, record.attempts),
            ),
            &OutboundRecord {
                to: record.to.clone(),
                text: record.text.clone(),
                attempts: record.attempts,
                next_attempt_ms: now
                    .0
                    .saturating_add(jittered_backoff_ms(record.attempts, jitter)),
                queued_at_ms: now.0,
                last_error: Some(format!("delivery report: {detail}")),
                text_hash: String::new(),
            },
        )?);
    }
    let settled = record.status == Delivery::Delivered || (failed && !requeued);
    if settled && !record.text.is_empty() {
        record.text_hash = master.text_tag(&record.text);
        zeroize::Zeroize::zeroize(&mut record.text);
    }
    effects.write(sent.write(&record)?);
    Ok(Decision::commit(effects, requeued))
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{LedgerStore, MemoryStore};

    use super::*;
    use crate::numbers::PhoneNumber;
    use crate::operator::records::{NAMESPACE, OUTBOUND_PREFIX};
    use crate::operator::testing::commit;

    fn down() -> SendFailure {
        SendFailure::RetryLater {
            reason: "down".into(),
            retry_after_ms: None,
        }
    }

    #[test]
    fn jitter_keeps_half_the_backoff_and_spreads_the_rest() {
        for attempts in [0, 1, 5, 30] {
            let full = backoff_ms(attempts);
            let mut seen = std::collections::BTreeSet::new();
            for jitter in [0u64, 1, 7, 1234, u64::MAX / 3, u64::MAX] {
                let delay = jittered_backoff_ms(attempts, jitter);
                assert!((full / 2..=full).contains(&delay), "{attempts} {jitter}");
                seen.insert(delay);
            }
            assert!(seen.len() > 1, "jitter changes the delay");
        }
    }

    #[test]
    fn a_rate_limit_hint_is_honoured_up_to_its_bound_and_a_permanent_refusal_dies_at_once() {
        let mut store = MemoryStore::new();
        let key = queue(&mut store, 0, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        let limited = SendFailure::RetryLater {
            reason: "HTTP 429".into(),
            retry_after_ms: Some(30_000),
        };
        assert!(commit(
            &mut store,
            failed(&ready[0], &limited, 0, Timestamp(5), &master()).unwrap(),
            Timestamp(5)
        ));
        let value = Loaded::<OutboundRecord>::read(&mut store, &key)
            .unwrap()
            .value
            .unwrap();
        assert_eq!(value.next_attempt_ms, 5 + 30_000);
        let (ready, _) = due(&page(&mut store), Timestamp(30_005));
        let greedy = SendFailure::RetryLater {
            reason: "HTTP 429".into(),
            retry_after_ms: Some(u64::MAX),
        };
        assert!(commit(
            &mut store,
            failed(&ready[0], &greedy, 0, Timestamp(30_005), &master()).unwrap(),
            Timestamp(30_005)
        ));
        let value = Loaded::<OutboundRecord>::read(&mut store, &key)
            .unwrap()
            .value
            .unwrap();
        assert_eq!(value.next_attempt_ms, 30_005 + RETRY_AFTER_MAX_MS);

        let mut store = MemoryStore::new();
        let key = queue(&mut store, 0, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        let refused = SendFailure::Permanent {
            reason: "invalid phone number".into(),
        };
        assert!(commit(
            &mut store,
            failed(&ready[0], &refused, 0, Timestamp(5), &master()).unwrap(),
            Timestamp(5)
        ));
        assert!(page(&mut store).is_empty());
        let dead = Loaded::<OutboundRecord>::read(&mut store, &records::dead_key(&key))
            .unwrap()
            .value
            .unwrap();
        assert_eq!(dead.last_error.as_deref(), Some("invalid phone number"));
        assert!(dead.text.is_empty());
    }

    #[test]
    fn duplicate_and_late_reports_change_nothing_twice() {
        let mut store = MemoryStore::new();
        queue(&mut store, 0, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        let sent_id = gateway_sent_id("twilio", "SM0001");
        assert!(commit(
            &mut store,
            sent(&ready[0], &sent_id, Timestamp(5)).unwrap(),
            Timestamp(5)
        ));
        let key = records::sent_key(&sent_id);
        let apply = |store: &mut MemoryStore, delivery: Delivery, at: u64| {
            let loaded = Loaded::<SentRecord>::read(store, &key).unwrap();
            let Decision::Commit { effects, reply } =
                delivery_report(loaded, &sent_id, delivery, "", 0, Timestamp(at), &master())
                    .unwrap()
            else {
                panic!("a report always commits")
            };
            assert!(commit(store, effects, Timestamp(at)));
            reply
        };
        // A failure queues the text once, however often it is reported.
        assert!(apply(&mut store, Delivery::Failed, 6));
        assert!(!apply(&mut store, Delivery::Failed, 7));
        assert_eq!(page(&mut store).len(), 1);
        // An intermediate report arriving late does not undo the failure.
        assert!(!apply(&mut store, Delivery::SmscAccepted, 8));
        let read = |store: &mut MemoryStore| {
            Loaded::<SentRecord>::read(store, &key)
                .unwrap()
                .value
                .unwrap()
        };
        assert_eq!(read(&mut store).status, Delivery::Failed);
        assert_eq!(read(&mut store).report_at_ms, Some(6));

        // Delivered, then a late `sent`/`buffered` and a late failure: still delivered, nothing
        // queued, the record unchanged.
        let mut store = MemoryStore::new();
        queue(&mut store, 0, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        assert!(commit(
            &mut store,
            sent(&ready[0], &sent_id, Timestamp(5)).unwrap(),
            Timestamp(5)
        ));
        assert!(!apply(&mut store, Delivery::Delivered, 6));
        let delivered = read(&mut store);
        for late in [
            Delivery::SmscAccepted,
            Delivery::Buffered,
            Delivery::Failed,
            Delivery::Delivered,
        ] {
            assert!(!apply(&mut store, late, 9));
        }
        assert_eq!(read(&mut store), delivered);
        assert!(page(&mut store).is_empty());
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff_ms(0), BACKOFF_BASE_MS);
        assert_eq!(backoff_ms(1), 2 * BACKOFF_BASE_MS);
        assert_eq!(backoff_ms(30), BACKOFF_MAX_MS);
    }

    fn queue(store: &mut MemoryStore, attempts: u32, next_attempt_ms: u64) -> String {
        let key = records::outbound_key(1, "gw-1/0");
        let record = OutboundRecord {
            to: PhoneNumber::parse("+254700000002").unwrap(),
            text: "PAID".into(),
            attempts,
            next_attempt_ms,
            queued_at_ms: 1,
            last_error: None,
            text_hash: String::new(),
        };
        let mut effects = Effects::new();
        effects.write(put(key.clone(), &record).unwrap());
        assert!(commit(store, effects, Timestamp(1)));
        key
    }

    fn master() -> MasterKey {
        MasterKey::from_bytes(crate::operator::testing::MASTER)
    }

    fn page(store: &mut MemoryStore) -> Vec<Record> {
        store
            .records(NAMESPACE, OUTBOUND_PREFIX, None, OUTBOUND_PAGE)
            .unwrap()
    }

    #[test]
    fn failed_sends_back_off_then_die_and_sent_ones_leave_the_queue() {
        let mut store = MemoryStore::new();
        let key = queue(&mut store, 0, 10);
        assert!(due(&page(&mut store), Timestamp(9)).0.is_empty());
        let (mut ready, errors) = due(&page(&mut store), Timestamp(10));
        assert!(errors.is_empty());
        let first = ready.remove(0);
        assert!(commit(
            &mut store,
            failed(&first, &down(), 0, Timestamp(10), &master()).unwrap(),
            Timestamp(10)
        ));
        let again = Loaded::<OutboundRecord>::read(&mut store, &key).unwrap();
        let value = again.value.unwrap();
        assert_eq!(
            (value.attempts, value.next_attempt_ms),
            (1, 10 + BACKOFF_BASE_MS)
        );
        // A decision on the stale entry is refused.
        assert!(!commit(
            &mut store,
            failed(&first, &down(), 0, Timestamp(10), &master()).unwrap(),
            Timestamp(10)
        ));

        let mut store = MemoryStore::new();
        let key = queue(&mut store, SEND_ATTEMPTS_MAX - 1, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        assert!(commit(
            &mut store,
            failed(&ready[0], &down(), 0, Timestamp(5), &master()).unwrap(),
            Timestamp(5)
        ));
        assert!(page(&mut store).is_empty());
        let dead = Loaded::<OutboundRecord>::read(&mut store, &records::dead_key(&key)).unwrap();
        let dead = dead.value.unwrap();
        assert_eq!(dead.attempts, SEND_ATTEMPTS_MAX);
        // Issue 18, attack 4: a message given up on keeps the keyed hash of its text, not the text.
        assert!(dead.text.is_empty());
        assert_eq!(dead.text_hash, master().text_tag("PAID"));

        let mut store = MemoryStore::new();
        queue(&mut store, 0, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        assert!(commit(
            &mut store,
            sent(&ready[0], &ready[0].sent_id, Timestamp(5)).unwrap(),
            Timestamp(5)
        ));
        assert!(page(&mut store).is_empty());
        let record =
            Loaded::<SentRecord>::read(&mut store, &records::sent_key(&ready[0].sent_id)).unwrap();
        assert_eq!(record.value.unwrap().status, Delivery::Accepted);
    }

    #[test]
    fn a_failure_report_queues_again_and_delivered_stays_delivered() {
        let mut store = MemoryStore::new();
        queue(&mut store, 0, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        assert!(commit(
            &mut store,
            sent(&ready[0], &ready[0].sent_id, Timestamp(5)).unwrap(),
            Timestamp(5)
        ));
        let key = records::sent_key(&ready[0].sent_id);
        let read = |store: &mut MemoryStore| Loaded::<SentRecord>::read(store, &key).unwrap();
        let Decision::Commit { effects, reply } = delivery_report(
            read(&mut store),
            "x",
            report(2),
            "failed",
            0,
            Timestamp(6),
            &master(),
        )
        .unwrap() else {
            panic!("a report always commits")
        };
        assert!(reply);
        assert!(commit(&mut store, effects, Timestamp(6)));
        assert_eq!(page(&mut store).len(), 1);
        assert_eq!(read(&mut store).value.unwrap().status, Delivery::Failed);
        for status in [1, 2] {
            let Decision::Commit { effects, .. } = delivery_report(
                read(&mut store),
                "x",
                report(status),
                "",
                0,
                Timestamp(7),
                &master(),
            )
            .unwrap() else {
                panic!("a report always commits")
            };
            assert!(commit(&mut store, effects, Timestamp(7)));
        }
        let delivered = read(&mut store).value.unwrap();
        assert_eq!(delivered.status, Delivery::Delivered);
        // Issue 18, attack 4: once on the phone, only the keyed hash of the text stays.
        assert!(delivered.text.is_empty(), "{delivered:?}");
        assert_eq!(delivered.text_hash, master().text_tag("PAID"));
        assert!(matches!(
            delivery_report(
                Loaded {
                    key: "sent:none".into(),
                    version: 0,
                    value: None
                },
                "none",
                Delivery::Delivered,
                "",
                0,
                Timestamp(8),
                &master()
            ),
            Err(OperatorError::NotFound { .. })
        ));
    }
}
