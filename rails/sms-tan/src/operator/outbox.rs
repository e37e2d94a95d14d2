//! The outbound queue's policy: replies wait under `out:` (oldest first) until the gateway
//! accepts them; a failed attempt is retried after a doubling delay, at most
//! [`SEND_ATTEMPTS_MAX`] times, then kept under `dead:` for the operator; a failure reported by
//! the gateway later (a delivery report) queues the text again while attempts remain. The server's
//! gateway adapter does the sending and commits what these functions return.

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

const _: () = assert!(BACKOFF_BASE_MS << BACKOFF_DOUBLINGS_MAX >= BACKOFF_MAX_MS);

/// The retry delay after `attempts` failed attempts.
pub fn backoff_ms(attempts: u32) -> u64 {
    BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempts.min(BACKOFF_DOUBLINGS_MAX))
        .min(BACKOFF_MAX_MS)
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

/// The gateway accepted `due`: it leaves the queue and is kept as sent, for delivery reports.
pub fn sent(due: &Due, now: Timestamp) -> Result<Effects, OperatorError> {
    let queued = due
        .sms()
        .ok_or_else(|| OperatorError::Internal("a due SMS without its record".into()))?;
    let mut effects = Effects::new();
    effects.write(due.queued.delete());
    effects.write(put(
        records::sent_key(&due.sent_id),
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

/// An attempt to send `due` failed with `error`: retried after [`backoff_ms`], or given up after
/// [`SEND_ATTEMPTS_MAX`] attempts — then kept under `dead:` with the keyed hash of its text
/// (`master`), never the text.
pub fn failed(
    due: &Due,
    error: &str,
    now: Timestamp,
    master: &MasterKey,
) -> Result<Effects, OperatorError> {
    let mut queued = due
        .sms()
        .cloned()
        .ok_or_else(|| OperatorError::Internal("a due SMS without its record".into()))?;
    queued.attempts = queued.attempts.saturating_add(1);
    queued.last_error = Some(error.to_owned());
    let mut effects = Effects::new();
    if queued.attempts >= SEND_ATTEMPTS_MAX {
        queued.text_hash = master.text_tag(&queued.text);
        zeroize::Zeroize::zeroize(&mut queued.text);
        effects.write(due.queued.delete());
        effects.write(put(records::dead_key(&due.queued.key), &queued)?);
    } else {
        queued.next_attempt_ms = now.0.saturating_add(backoff_ms(queued.attempts));
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

/// A delivery report of type `status` for the SMS `sent`: the record notes it (a delivered SMS
/// stays delivered), and a failure queues the text again while attempts remain. Once delivered,
/// or once no attempt remains, the text is dropped and only its keyed hash kept (`master`). The
/// answer says whether it was queued again.
pub fn delivery_report(
    sent: Loaded<SentRecord>,
    id: &str,
    status: u32,
    now: Timestamp,
    master: &MasterKey,
) -> Result<Decision<bool>, OperatorError> {
    let Some(mut record) = sent.value.clone() else {
        return Err(OperatorError::not_found("sent_sms", id));
    };
    let reported = report(status);
    let failed = matches!(reported, Delivery::Failed | Delivery::SmscRejected);
    if record.status != Delivery::Delivered {
        record.status = reported;
    }
    record.report_at_ms = Some(now.0);
    let mut effects = Effects::new();
    let requeued = failed && record.attempts < SEND_ATTEMPTS_MAX;
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
                next_attempt_ms: now.0.saturating_add(backoff_ms(record.attempts)),
                queued_at_ms: now.0,
                last_error: Some(format!("delivery report {status}")),
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
            failed(&first, "down", Timestamp(10), &master()).unwrap(),
            Timestamp(10)
        ));
        let again = Loaded::<OutboundRecord>::read(&mut store, &key).unwrap();
        let value = again.value.unwrap();
        assert_eq!(
            (value.attempts, value.next_attempt_ms),
            (1, 10 + 2 * BACKOFF_BASE_MS)
        );
        // A decision on the stale entry is refused.
        assert!(!commit(
            &mut store,
            failed(&first, "down", Timestamp(10), &master()).unwrap(),
            Timestamp(10)
        ));

        let mut store = MemoryStore::new();
        let key = queue(&mut store, SEND_ATTEMPTS_MAX - 1, 0);
        let (ready, _) = due(&page(&mut store), Timestamp(5));
        assert!(commit(
            &mut store,
            failed(&ready[0], "down", Timestamp(5), &master()).unwrap(),
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
            sent(&ready[0], Timestamp(5)).unwrap(),
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
            sent(&ready[0], Timestamp(5)).unwrap(),
            Timestamp(5)
        ));
        let key = records::sent_key(&ready[0].sent_id);
        let read = |store: &mut MemoryStore| Loaded::<SentRecord>::read(store, &key).unwrap();
        let Decision::Commit { effects, reply } =
            delivery_report(read(&mut store), "x", 2, Timestamp(6), &master()).unwrap()
        else {
            panic!("a report always commits")
        };
        assert!(reply);
        assert!(commit(&mut store, effects, Timestamp(6)));
        assert_eq!(page(&mut store).len(), 1);
        assert_eq!(read(&mut store).value.unwrap().status, Delivery::Failed);
        for status in [1, 2] {
            let Decision::Commit { effects, .. } =
                delivery_report(read(&mut store), "x", status, Timestamp(7), &master()).unwrap()
            else {
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
                1,
                Timestamp(8),
                &master()
            ),
            Err(OperatorError::NotFound { .. })
        ));
    }
}
