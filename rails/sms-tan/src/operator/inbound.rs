//! One inbound SMS, as the server's runner drives it: the load ([`InboundLoad`]: the engine's
//! requests answered from the store step by step, the dedupe record on a second attempt, the
//! statements and password hashes the outcome asks for) and the decision ([`decide`]: the
//! outcome applied into effects, or the stored answer for a gateway's retry).
//!
//! The load alternates reads (one read transaction each, [`InboundLoad::read`]) with engine steps
//! ([`InboundLoad::step`], CPU only) and password hashing ([`InboundLoad::hash`], slow on
//! purpose), so a server can run each where it belongs: reads on its ledger reader, steps on its
//! request threads, hashing on a blocking thread.

use std::sync::Arc;

use offpay_ledger::{Currency, LedgerStore, Timestamp};
use offpay_operator::{Decision, Entropy, Loaded, RecordError};

use crate::civil_time::UnixSeconds;
use crate::engine::{Effect, Inbound, Next, Outcome, PayeeContext, PayerContext, PendingCallback};
use crate::envelope::EnvelopeView;
use crate::limits::STATEMENT_ENTRIES_MAX;
use crate::numbers::{AccountNumber, PhoneNumber};
use crate::operator::apply::{ApplyInput, Summary, Written, apply};
use crate::operator::load::{
    PayerLookup, ReadCache, Reader, RecordSet, load_payee, load_payer, statement_entries,
};
use crate::operator::records::{self, AccountRecord, InboundRecord};
use crate::operator::{Operator, OperatorError, seconds, web};
use crate::redact::RedactedSms;
use crate::reply;

/// Reads, engine steps and hashing one message may take: the dedupe record, payer, pending
/// callback, payee and new envelope (each a read and a step), statements, password hashes. The
/// bound catches a loop bug.
pub const LOAD_STEPS_MAX: usize = 16;

/// An inbound SMS as a gateway hands it over.
#[derive(Clone)]
pub struct InboundSms {
    /// The gateway's name (`webhook`, `kannel`, `operator`): dedupe keys are per gateway.
    pub gateway: String,
    /// The gateway's id of the message, stable across its retries.
    pub message_id: String,
    /// The sender.
    pub from: PhoneNumber,
    /// The text (never stored or logged).
    pub text: String,
    /// Replies to the sender are answered inline (the webhook's response) instead of queued.
    pub answer_inline: bool,
}

impl std::fmt::Debug for InboundSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InboundSms({}:{}, from {}, {})",
            self.gateway,
            self.message_id,
            self.from,
            crate::redact::redact_sms(&self.text)
        )
    }
}

impl Drop for InboundSms {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

impl InboundSms {
    /// The key of this message's dedupe record.
    pub fn dedupe_key(&self) -> String {
        records::inbound_key(&self.gateway, &self.message_id)
    }

    /// The key of this message's resend record, for messages that name a row: a keyed hash of
    /// the sender and the message as read (so spacing and case do not matter), never the text.
    /// The same message sent again from the same phone — under a new gateway id, or typed again
    /// by a holder who got no answer — is answered as the first time and counts nothing.
    pub fn resend_key(&self, master: &crate::keys::MasterKey) -> Option<String> {
        use crate::grammar::Message;
        let message = crate::grammar::parse(&self.text).ok()?;
        let names_a_row = match &message {
            Message::Balance { auth, .. } | Message::Statement { auth, .. } => auth.is_some(),
            Message::Help => false,
            _ => true,
        };
        if !names_a_row {
            return None;
        }
        let canonical = zeroize::Zeroizing::new(format!("{}\n{}", self.from, message.format()));
        Some(records::resend_key(&master.text_tag(&canonical)))
    }
}

/// What the load needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// A read: call [`InboundLoad::read`] in one read transaction.
    Read,
    /// An engine step: call [`InboundLoad::step`].
    Step,
    /// Password hashes: call [`InboundLoad::hash`] (slow: off the request threads).
    Hash,
    /// Everything is loaded: call [`InboundLoad::finish`].
    Ready,
}

/// What a read gave the engine.
enum Answer {
    Payer(Option<PayerContext>),
    Pending(Option<PendingCallback>),
    Payee(Option<PayeeContext>),
    Envelope(Option<EnvelopeView>),
}

/// The load of one inbound SMS (see the module documentation).
pub struct InboundLoad {
    operator: Arc<Operator>,
    sms: InboundSms,
    received_at: UnixSeconds,
    check_duplicate: bool,
    duplicate_checked: bool,
    duplicate: Option<(String, InboundRecord)>,
    next: Option<Next>,
    answer: Option<Answer>,
    outcome: Option<Outcome>,
    records: RecordSet,
    statements: Option<Vec<(PhoneNumber, Vec<String>)>>,
    password_hashes: Option<Vec<(AccountNumber, String)>>,
}

impl std::fmt::Debug for InboundLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundLoad")
            .field("sms", &self.sms)
            .field("want", &self.wants())
            .finish()
    }
}

impl InboundLoad {
    /// Starts on `sms` received at `now` (the engine parses it here). `check_duplicate`: read the
    /// dedupe record first — on a second attempt, after a commit was refused, since the refusal
    /// may have been a gateway retry of a message processed meanwhile. First attempts skip that
    /// read: a retry is caught by the dedupe record's conditional write at commit.
    pub fn start(
        operator: Arc<Operator>,
        sms: InboundSms,
        now: Timestamp,
        check_duplicate: bool,
    ) -> InboundLoad {
        let next = operator.engine().receive(Inbound {
            message_id: sms.message_id.clone(),
            from: sms.from.clone(),
            text: sms.text.clone(),
            received_at: seconds(now),
        });
        let (next, outcome) = match next {
            Next::Done(outcome) => (None, Some(outcome)),
            next => (Some(next), None),
        };
        InboundLoad {
            operator,
            sms,
            received_at: seconds(now),
            check_duplicate,
            duplicate_checked: false,
            duplicate: None,
            next,
            answer: None,
            outcome,
            records: RecordSet::default(),
            statements: None,
            password_hashes: None,
        }
    }

    fn needs_statements(&self) -> bool {
        self.statements.is_none()
            && self.outcome.as_ref().is_some_and(|outcome| {
                outcome
                    .effects
                    .iter()
                    .any(|effect| matches!(effect, Effect::SendStatement { .. }))
            })
    }

    fn needs_hashes(&self) -> bool {
        self.password_hashes.is_none()
            && self.outcome.as_ref().is_some_and(|outcome| {
                outcome
                    .effects
                    .iter()
                    .any(|effect| matches!(effect, Effect::SetWebPassword { .. }))
            })
    }

    /// What to do next.
    pub fn wants(&self) -> Want {
        if self.duplicate.is_some() {
            return Want::Ready;
        }
        if self.check_duplicate && !self.duplicate_checked {
            return Want::Read;
        }
        if self.answer.is_some() {
            return Want::Step;
        }
        if self.next.is_some() || self.needs_statements() {
            return Want::Read;
        }
        if self.needs_hashes() {
            return Want::Hash;
        }
        Want::Ready
    }

    /// Does the read the engine (or the outcome) asks for, in one read transaction of `store`;
    /// the payer's envelope and account may come from `cache`.
    pub fn read(
        &mut self,
        store: &mut dyn LedgerStore,
        cache: Option<&dyn ReadCache>,
    ) -> Result<(), RecordError> {
        if self.check_duplicate && !self.duplicate_checked {
            let key = self.sms.dedupe_key();
            let seen = Loaded::<InboundRecord>::read(store, &key)?;
            self.duplicate_checked = true;
            if let Some(record) = seen.value {
                self.duplicate = Some((key, record));
                return Ok(());
            }
            if let Some(key) = self.sms.resend_key(self.operator.master()) {
                let seen = Loaded::<InboundRecord>::read(store, &key)?;
                if let Some(record) = seen.value {
                    self.duplicate = Some((key, record));
                    return Ok(());
                }
            }
        }
        let operator = Arc::clone(&self.operator);
        let received_at = self.received_at;
        let mut reader = Reader::new(store, cache, &mut self.records);
        self.answer = match &self.next {
            Some(Next::NeedPayer(request)) => {
                let lookup = PayerLookup::of(request.payer(), operator.master());
                Some(Answer::Payer(load_payer(
                    &mut reader,
                    &lookup,
                    &operator,
                    received_at,
                )?))
            }
            Some(Next::NeedPending(request)) => Some(Answer::Pending(reader.pending(
                &request.euin(),
                request.callback_row(),
                operator.master(),
            )?)),
            Some(Next::NeedPayee(request)) => Some(Answer::Payee(load_payee(
                &mut reader,
                &request.payee(),
                &request.payer(),
                &operator,
                received_at,
            )?)),
            Some(Next::NeedNewEnvelope(request)) => Some(Answer::Envelope(
                reader
                    .envelope(&request.euin(), operator.master())?
                    .map(|record| record.view),
            )),
            Some(Next::Done(_)) | None => None,
        };
        if self.answer.is_none() && self.needs_statements() {
            self.statements = Some(self.read_statements(store)?);
        }
        Ok(())
    }

    fn read_statements(
        &self,
        store: &mut dyn LedgerStore,
    ) -> Result<Vec<(PhoneNumber, Vec<String>)>, RecordError> {
        let mut statements = Vec::new();
        let Some(outcome) = &self.outcome else {
            return Ok(statements);
        };
        for effect in &outcome.effects {
            if let Effect::SendStatement { account, to } = effect {
                let record =
                    Loaded::<AccountRecord>::read(store, &records::account_key(account))?.value;
                let currency = record
                    .as_ref()
                    .map_or(self.operator.server_currency(), |record| record.currency);
                let language = record
                    .and_then(|record| record.language)
                    .unwrap_or(self.operator.default_language());
                let (entries, balance) = statement_entries(
                    store,
                    account,
                    currency,
                    self.operator.utc_offset_minutes(),
                    STATEMENT_ENTRIES_MAX,
                )?;
                statements.push((to.clone(), reply::statement(language, &entries, &balance)));
            }
        }
        Ok(statements)
    }

    /// Gives the engine what the last read found (CPU only).
    pub fn step(&mut self) {
        let (Some(next), Some(answer)) = (self.next.take(), self.answer.take()) else {
            return;
        };
        let engine = self.operator.engine();
        let next = match (next, answer) {
            (Next::NeedPayer(request), Answer::Payer(payer)) => request.provide(engine, payer),
            (Next::NeedPending(request), Answer::Pending(pending)) => {
                request.provide(engine, pending)
            }
            (Next::NeedPayee(request), Answer::Payee(payee)) => request.provide(engine, payee),
            (Next::NeedNewEnvelope(request), Answer::Envelope(envelope)) => {
                request.provide(engine, envelope)
            }
            (next, _) => unreachable!("a read answers the request it was made for: {next:?}"),
        };
        match next {
            Next::Done(outcome) => self.outcome = Some(outcome),
            next => self.next = Some(next),
        }
    }

    /// Hashes the web passwords the outcome sets (Argon2id: slow on purpose).
    pub fn hash(&mut self, entropy: &dyn Entropy) -> Result<(), OperatorError> {
        let mut hashes = Vec::new();
        if let Some(outcome) = &self.outcome {
            for effect in &outcome.effects {
                if let Effect::SetWebPassword { account, password } = effect {
                    hashes.push((*account, web::hash_password(entropy, password.expose())?));
                }
            }
        }
        self.password_hashes = Some(hashes);
        Ok(())
    }

    /// Everything the decision needs.
    pub fn finish(self) -> Result<InboundLoaded, OperatorError> {
        if let Some(record) = self.duplicate {
            return Ok(InboundLoaded {
                sms: self.sms,
                found: Found::Duplicate(record),
            });
        }
        let outcome = self
            .outcome
            .ok_or_else(|| OperatorError::Internal("the SMS engine did not finish".into()))?;
        Ok(InboundLoaded {
            sms: self.sms,
            found: Found::Outcome {
                outcome,
                records: self.records,
                statements: self.statements.unwrap_or_default(),
                password_hashes: self.password_hashes.unwrap_or_default(),
            },
        })
    }

    /// Drives every step against one store: for tests, the simulator and synchronous servers.
    pub fn run_on(
        mut self,
        store: &mut dyn LedgerStore,
        cache: Option<&dyn ReadCache>,
        entropy: &dyn Entropy,
    ) -> Result<InboundLoaded, OperatorError> {
        for _ in 0..LOAD_STEPS_MAX {
            match self.wants() {
                Want::Read => self.read(store, cache)?,
                Want::Step => self.step(),
                Want::Hash => self.hash(entropy)?,
                Want::Ready => return self.finish(),
            }
        }
        Err(OperatorError::Internal(
            "an SMS took more load steps than it can".into(),
        ))
    }
}

// Built once per message and moved once into the decision: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Found {
    Duplicate((String, InboundRecord)),
    Outcome {
        outcome: Outcome,
        records: RecordSet,
        statements: Vec<(PhoneNumber, Vec<String>)>,
        password_hashes: Vec<(AccountNumber, String)>,
    },
}

/// One inbound SMS, loaded.
pub struct InboundLoaded {
    sms: InboundSms,
    found: Found,
}

impl std::fmt::Debug for InboundLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let duplicate = matches!(self.found, Found::Duplicate(_));
        f.debug_struct("InboundLoaded")
            .field("sms", &self.sms)
            .field("duplicate", &duplicate)
            .finish()
    }
}

/// The answer to one inbound SMS.
#[derive(Debug)]
pub struct InboundAnswer {
    /// Replies to the sender (for the webhook's response body).
    pub replies: Vec<String>,
    /// True when this message id was processed before (nothing changed now).
    pub duplicate: bool,
    /// How it ended, replies queued, records written, operator accounts used.
    pub summary: Summary,
    /// What may be logged about the message.
    pub redacted: Option<RedactedSms>,
}

/// Decides one loaded SMS at `now`: the stored answer for a gateway's retry, or the outcome's
/// effects (or `Reload` when what was read in separate steps does not fit together).
pub fn decide(
    loaded: InboundLoaded,
    now: Timestamp,
    operator: &Operator,
    operator_ready: &[Currency],
) -> Result<Decision<InboundAnswer>, OperatorError> {
    let InboundLoaded { sms, found } = loaded;
    let (outcome, records, statements, password_hashes) = match found {
        Found::Duplicate((key, record)) => {
            return Ok(Decision::commit(
                offpay_operator::Effects::new(),
                InboundAnswer {
                    replies: record.open_replies(operator.master(), &key),
                    duplicate: true,
                    summary: Summary {
                        verdict: record.verdict,
                        queued: 0,
                        postings: 0,
                        written: Written::default(),
                        operator_currencies: Vec::new(),
                    },
                    redacted: None,
                },
            ));
        }
        Found::Outcome {
            outcome,
            records,
            statements,
            password_hashes,
        } => (outcome, records, statements, password_hashes),
    };
    let dedupe_key = sms.dedupe_key();
    let applied = apply(ApplyInput {
        outcome: &outcome,
        records: &records,
        inline_to: sms.answer_inline.then_some(&sms.from),
        dedupe_key: Some(&dedupe_key),
        message_id: &sms.message_id,
        extra: Vec::new(),
        password_hashes: &password_hashes,
        statements: &statements,
        now,
        operator,
        operator_ready,
    })?;
    let Some(mut applied) = applied else {
        return Ok(Decision::Reload);
    };
    // A resend of the same message from the same phone finds this record (created only if
    // absent: a resend decided meanwhile makes this commit stale, and the reload answers it).
    if let Some(key) = sms.resend_key(operator.master()) {
        let record = InboundRecord::sealed(
            operator.master(),
            &key,
            applied.summary.verdict,
            &applied.inline,
            now.0,
        );
        applied
            .effects
            .write(crate::operator::apply::create(key, &record)?);
    }
    Ok(Decision::commit(
        applied.effects,
        InboundAnswer {
            replies: applied.inline,
            duplicate: false,
            summary: applied.summary,
            redacted: outcome.redacted,
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use offpay_operator::{Decision, Effects};

    use super::*;
    use crate::operator::records::{AccountRecord, Answered, EnvelopeRecord, OUTBOUND_PREFIX};
    use crate::operator::testing::*;

    fn tan(world: &World, row: u8) -> String {
        world.envelope.row(row).unwrap().tan().reveal()
    }

    #[test]
    fn a_payment_posts_moves_the_spending_window_and_answers_inline() {
        let mut world = World::new();
        let text = world.low(PAYEE, "1500.50", 1);
        let answer = world.sms(PAYER_PHONE, &text);
        assert_eq!(answer.summary.verdict, Answered::Accepted, "{answer:?}");
        assert!(!answer.duplicate);
        assert_eq!(answer.replies.len(), 1, "the payer's confirmation, inline");
        assert!(
            answer.replies[0].starts_with("PAID"),
            "{:?}",
            answer.replies
        );
        assert_eq!(answer.summary.queued, 1, "the payee's notice, queued");
        assert_eq!(world.balance(PAYER), 1_000_000 - 150_050 - 1_000);
        assert_eq!(world.balance(PAYEE), 150_050);
        let payer = world.account(PAYER);
        assert_eq!(payer.spending.today, kes("1500.50"));
        assert_eq!(payer.spending.this_week, kes("1500.50"));
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert!(envelope.view.used_rows.contains(1));
        let queued = world
            .store
            .records(records::NAMESPACE, OUTBOUND_PREFIX, None, 10)
            .unwrap();
        assert_eq!(queued.len(), 1);
        // The written records are what a read cache keeps, at the versions now stored.
        let written = &answer.summary.written;
        assert_eq!(written.accounts.len(), 1);
        assert_eq!(written.envelopes.len(), 1);
        let stored = world.envelope_record(PAYER_EUIN);
        assert_eq!(written.envelopes[0].version, stored.version);
        assert_eq!(written.envelopes[0].value, stored.value);
    }

    #[test]
    fn a_gateway_retry_gets_the_first_answer_and_pays_once() {
        let mut world = World::new();
        let text = world.low(PAYEE, "100", 1);
        let first = world.sms_with_id("gw-x", PAYER_PHONE, &text);
        let again = world.sms_with_id("gw-x", PAYER_PHONE, &text);
        assert!(again.duplicate);
        assert_eq!(again.replies, first.replies);
        // Issue 18, attack 4: the dedupe record keeps the replies sealed under the master key:
        // its bytes hold neither the confirmation (bank row and checksum) nor the instruction.
        let stored = world
            .store
            .records(records::NAMESPACE, "in:", None, 10)
            .unwrap();
        assert_eq!(stored.len(), 1);
        let bytes = String::from_utf8_lossy(&stored[0].value).into_owned();
        let checksum = text.rsplit(' ').next().unwrap();
        for secret in [first.replies[0].as_str(), "PAID", checksum, &text] {
            assert!(!bytes.contains(secret), "{secret} stored in {bytes}");
        }
        assert_eq!(again.summary.verdict, Answered::Accepted);
        assert_eq!(world.balance(PAYEE), 10_000);
        // A retried HELP (which reads nothing) is answered from its record too.
        let help = world.sms_with_id("gw-help", PAYER_PHONE, "HELP");
        assert!(!help.duplicate);
        assert!(world.sms_with_id("gw-help", PAYER_PHONE, "HELP").duplicate);
    }

    /// Issue 18, envelope lifecycle: the same message sent again from the same phone (a new
    /// gateway id: the holder got no answer and typed it again, spaced differently) is answered
    /// as the first time and never counts towards the lockout — even when the first one was
    /// refused. From another phone it is a replay and counts.
    #[test]
    fn an_identical_resend_is_answered_again_and_counts_nothing() {
        let mut world = World::new();
        let text = world.low(PAYEE, "100", 1);
        let first = world.sms(PAYER_PHONE, &text);
        assert_eq!(first.summary.verdict, Answered::Accepted);
        let respaced = text.replace(' ', "  ");
        for _ in 0..(crate::limits::LOCKOUT_FAILURES + 1) {
            let again = world.sms(PAYER_PHONE, &respaced);
            assert!(again.duplicate, "{again:?}");
            assert_eq!(again.replies, first.replies);
        }
        assert_eq!(world.balance(PAYEE), 10_000);
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert_eq!(envelope.view.consecutive_failures, 0);
        // A wrong code, resent: one failure, not two.
        let good = tan(&world, 2).parse::<u16>().unwrap();
        let wrong = format!("BAL {PAYER_EUIN} 2 {:03}", (good + 1) % 1000);
        assert_eq!(
            world.sms(PAYER_PHONE, &wrong).summary.verdict,
            Answered::Refused
        );
        assert!(world.sms(PAYER_PHONE, &wrong).duplicate);
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert_eq!(envelope.view.consecutive_failures, 1);
        // The first payment replayed from a stranger's phone is a replay: refused, reported,
        // not counted (a used row cannot pay; counting it would let a replayer lock the envelope).
        let replay = world.sms("+254799999999", &text);
        assert!(!replay.duplicate);
        assert_eq!(replay.summary.verdict, Answered::Refused);
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert_eq!(envelope.view.consecutive_failures, 1);
        assert_eq!(flags(&mut world, "sms:row_replayed:"), 1);
        // The resend records hold a keyed hash, never the text.
        let stored = world
            .store
            .records(records::NAMESPACE, records::RESEND_PREFIX, None, 10)
            .unwrap();
        assert_eq!(stored.len(), 3, "payment, wrong code, replay");
        for record in stored {
            assert!(!record.key.contains(PAYER_EUIN));
            assert!(!String::from_utf8_lossy(&record.value).contains("PAID"));
        }
    }

    #[test]
    fn a_decision_on_a_stale_envelope_is_refused_at_commit_and_made_again() {
        let mut world = World::new();
        let sms = InboundSms {
            gateway: "webhook".into(),
            message_id: "gw-a".into(),
            from: phone(PAYER_PHONE),
            text: world.low(PAYEE, "100", 1),
            answer_inline: true,
        };
        let loaded = InboundLoad::start(world.operator.clone(), sms.clone(), world.now, false)
            .run_on(&mut world.store, None, &world.entropy)
            .unwrap();
        let Decision::Commit { effects, .. } =
            decide(loaded, world.now, &world.operator, &[]).unwrap()
        else {
            panic!("a payment commits")
        };
        let other = world.low(PAYEE, "200", 2);
        assert_eq!(
            world.sms(PAYER_PHONE, &other).summary.verdict,
            Answered::Accepted
        );
        assert!(!commit(&mut world.store, effects, world.now));
        assert_eq!(world.balance(PAYEE), 20_000);
        // Decided again on what is stored now, it pays.
        let loaded = InboundLoad::start(world.operator.clone(), sms, world.now, true)
            .run_on(&mut world.store, None, &world.entropy)
            .unwrap();
        let Decision::Commit { effects, .. } =
            decide(loaded, world.now, &world.operator, &[]).unwrap()
        else {
            panic!("a payment commits")
        };
        assert!(commit(&mut world.store, effects, world.now));
        assert_eq!(world.balance(PAYEE), 30_000);
    }

    #[test]
    fn daily_limits_count_across_payments_and_start_again_the_next_day() {
        let mut world = World::new();
        let set = signed(&world, &format!("LIMIT {PAYER_EUIN} DAY 300 1 000000"));
        assert_eq!(
            world.sms(PAYER_PHONE, &set).summary.verdict,
            Answered::Accepted
        );
        assert_eq!(world.account(PAYER).limits.per_day, Some(kes("300")));
        let first = world.low(PAYEE, "200", 2);
        assert_eq!(
            world.sms(PAYER_PHONE, &first).summary.verdict,
            Answered::Accepted
        );
        let second = world.low(PAYEE, "200", 3);
        let answer = world.sms(PAYER_PHONE, &second);
        assert_eq!(answer.summary.verdict, Answered::Refused);
        assert_eq!(world.balance(PAYEE), 20_000);
        world.now = Timestamp(world.now.0 + 86_400_000);
        let third = world.low(PAYEE, "200", 4);
        assert_eq!(
            world.sms(PAYER_PHONE, &third).summary.verdict,
            Answered::Accepted
        );
        let payer = world.account(PAYER);
        assert_eq!(payer.spending.today, kes("200"));
        assert_eq!(payer.spending.this_week, kes("400"));
    }

    #[test]
    fn a_password_is_hashed_and_a_statement_read_in_the_load() {
        let mut world = World::new();
        let set = signed(
            &world,
            &format!("PASSWORD {PAYER_EUIN} 1 000000 Secret2026x"),
        );
        assert_eq!(
            world.sms(PAYER_PHONE, &set).summary.verdict,
            Answered::Accepted
        );
        let stored = world.account(PAYER).web_password.unwrap();
        assert!(web::verify_password("Secret2026x", &stored));
        assert!(!stored.contains("Secret2026x"));
        let paid = world.sms(PAYER_PHONE, &world.low(PAYEE, "120", 3));
        let reference = reference_in(&paid.replies[0]);
        let statement = format!("STMT {PAYER_EUIN} 4 {}", tan(&world, 4));
        let answer = world.sms(PAYER_PHONE, &statement);
        // Issue 18: the statement names the counterparty, the date and the fee apart from the
        // amount, and the fee is not a payment line of its own.
        let text = answer.replies.join(" ");
        assert!(text.starts_with("STMT"), "{text}");
        assert!(
            text.contains(&format!("TO {PAYEE} KES 120.00 fee 10.00 ref {reference};")),
            "{text}"
        );
        assert!(text.contains("FROM cash KES 10000.00"), "{text}");
        assert!(text.contains(" 2026-09-2"), "{text}");
        assert_eq!(text.matches("ref ").count(), 2, "{text}");
    }

    #[test]
    fn lang_sets_the_account_language_and_every_later_text_speaks_it() {
        let mut world = World::new();
        let set = signed(&world, &format!("LUGHA {PAYER_EUIN} SW 1 000000"));
        let answer = world.sms(PAYER_PHONE, &set);
        assert_eq!(answer.summary.verdict, Answered::Accepted);
        assert!(
            answer.replies[0].starts_with("IMEFANIKIWA: lugha Kiswahili. BANK ROW "),
            "{:?}",
            answer.replies
        );
        assert_eq!(
            world.account(PAYER).language,
            Some(offpay_text::Language::Sw)
        );
        let balance = format!("BAL {PAYER_EUIN} 3 {}", tan(&world, 3));
        let answer = world.sms(PAYER_PHONE, &balance);
        assert!(
            answer.replies[0].starts_with("Salio lako ni KES "),
            "{:?}",
            answer.replies
        );
        let paid = world.sms(PAYER_PHONE, &world.low(PAYEE, "120", 4));
        assert!(
            paid.replies[0].starts_with("UMELIPA "),
            "{:?}",
            paid.replies
        );
        let statement = format!("STMT {PAYER_EUIN} 5 {}", tan(&world, 5));
        let text = world.sms(PAYER_PHONE, &statement).replies.join(" ");
        assert!(text.starts_with("TAARIFA "), "{text}");
        assert!(
            text.contains(&format!("KWA {PAYEE} KES 120.00 ada 10.00 ref ")),
            "{text}"
        );
        assert!(text.contains("KUTOKA taslimu KES 10000.00"), "{text}");
        // The payee chose nothing: its notice is in the operator's default, English.
        assert_eq!(world.account(PAYEE).language, None);
    }

    #[test]
    fn a_rewritten_language_is_refused_and_changes_nothing() {
        let mut world = World::new();
        // The holder signs SW; an interceptor rewrites it to FR (and to EN) on its way.
        for (row, other) in [(1, " FR "), (2, " EN "), (3, " LANGUE ")] {
            let set = signed(&world, &format!("LANG {PAYER_EUIN} SW {row} 000000"));
            let rewritten = if other == " LANGUE " {
                // The keyword is not covered but the value is: FRANCAIS for SW.
                set.replace(" SW ", " FRANCAIS ")
            } else {
                set.replace(" SW ", other)
            };
            let answer = world.sms(PAYER_PHONE, &rewritten);
            assert_eq!(answer.summary.verdict, Answered::Refused, "{rewritten}");
            assert!(
                answer.replies[0].contains("changed on its way"),
                "{:?}",
                answer.replies
            );
            assert_eq!(world.account(PAYER).language, None);
        }
    }

    #[test]
    fn wrong_codes_lock_the_envelope_and_raise_a_fraud_flag() {
        let mut world = World::new();
        for row in 1..=crate::limits::LOCKOUT_FAILURES {
            let wrong = format!("BAL {PAYER_EUIN} {row} 000");
            let wrong = if tan(&world, row) == "000" {
                format!("BAL {PAYER_EUIN} {row} 001")
            } else {
                wrong
            };
            world.sms(PAYER_PHONE, &wrong);
        }
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert!(matches!(
            envelope.view.status,
            crate::envelope::EnvelopeStatus::Locked { .. }
        ));
        let flags = world
            .store
            .records(
                offpay_operator::fraud::NAMESPACE,
                "sms:envelope_locked:",
                None,
                10,
            )
            .unwrap();
        assert_eq!(flags.len(), 1);
    }

    fn flags(world: &mut World, prefix: &str) -> usize {
        world
            .store
            .records(offpay_operator::fraud::NAMESPACE, prefix, None, 100)
            .unwrap()
            .len()
    }

    /// A low payment's text on `row` with the checksum digits at `positions` moved by one.
    fn with_checksum_moved(world: &World, row: u8, positions: &[usize]) -> String {
        let text = world.low(PAYEE, "100", row);
        let mut words: Vec<String> = text.split(' ').map(str::to_owned).collect();
        let checksum = words.last_mut().unwrap();
        let mut digits: Vec<u8> = checksum.bytes().collect();
        for &position in positions {
            digits[position] = b'0' + (digits[position] - b'0' + 1) % 10;
        }
        *checksum = String::from_utf8(digits).unwrap();
        words.join(" ")
    }

    /// Simulator finding, seed 1: an interceptor re-sending a holder's used rows (under new
    /// gateway ids, from the holder's number or another), rewriting them, or naming rows beyond
    /// the envelope never locks it: only a code checked against an unused row's secret counts.
    /// A replay with its right code is reported as a channel incident (`row_replayed`).
    #[test]
    fn replayed_and_rewritten_used_rows_never_lock_the_envelope() {
        let mut world = World::new();
        let text = world.low(PAYEE, "100", 1);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Accepted
        );
        let attempts = usize::from(crate::limits::LOCKOUT_FAILURES) * 2;
        for attempt in 0..attempts {
            // The same text from other numbers (the interceptor injecting it again).
            let replay = world.sms(&format!("+2547999990{attempt:02}"), &text);
            assert_eq!(replay.summary.verdict, Answered::Refused);
            assert!(replay.replies[0].contains("Row 1 was used before"));
            // The used row rewritten: another amount under the holder's own checksum.
            let rewritten = text.replace(" 100.00 ", &format!(" {}.00 ", 200 + attempt));
            let answer = world.sms(PAYER_PHONE, &rewritten);
            assert_eq!(answer.summary.verdict, Answered::Refused, "{rewritten}");
            assert_eq!(answer.replies, replay.replies, "no oracle on a used row");
            // A row beyond the envelope (20 rows).
            let beyond = format!("BAL {PAYER_EUIN} {} 123", 21 + attempt);
            assert_eq!(
                world.sms(PAYER_PHONE, &beyond).summary.verdict,
                Answered::Refused
            );
        }
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert_eq!(envelope.view.consecutive_failures, 0);
        assert!(matches!(
            envelope.view.status,
            crate::envelope::EnvelopeStatus::Active { .. }
        ));
        assert_eq!(flags(&mut world, "sms:row_replayed:"), attempts);
        assert_eq!(flags(&mut world, "sms:envelope_locked:"), 0);
        assert_eq!(world.balance(PAYEE), 10_000, "paid once");
        // The holder goes on paying.
        let next = world.low(PAYEE, "50", 2);
        assert_eq!(
            world.sms(PAYER_PHONE, &next).summary.verdict,
            Answered::Accepted
        );
    }

    /// The lockout still stops a guesser: replays between wrong codes on unused rows neither
    /// count nor reset the count, so the fifth wrong code locks the envelope.
    #[test]
    fn replays_between_guesses_do_not_reset_the_count() {
        let mut world = World::new();
        let text = world.low(PAYEE, "100", 1);
        world.sms(PAYER_PHONE, &text);
        for row in 2..(2 + crate::limits::LOCKOUT_FAILURES) {
            let good = tan(&world, row).parse::<u16>().unwrap();
            let wrong = format!("BAL {PAYER_EUIN} {row} {:03}", (good + 1) % 1000);
            world.sms(PAYER_PHONE, &wrong);
            world.sms(&format!("+25479999{row:04}"), &text);
        }
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert!(matches!(
            envelope.view.status,
            crate::envelope::EnvelopeStatus::Locked { .. }
        ));
        assert_eq!(flags(&mut world, "sms:envelope_locked:"), 1);
    }

    /// A payment whose checksum misses in one or two places (an amount digit or the payee
    /// changed on its way moves one or two terms) is refused as changed, burns its row, is
    /// raised in the fraud queue and does not count; three or more misses are a guess and count.
    #[test]
    fn a_payment_changed_on_its_way_does_not_count_and_a_guess_does() {
        let mut world = World::new();
        for (row, positions) in [(1u8, vec![0usize]), (2, vec![1, 4]), (3, vec![5, 2])] {
            let changed = with_checksum_moved(&world, row, &positions);
            let answer = world.sms(PAYER_PHONE, &changed);
            assert_eq!(answer.summary.verdict, Answered::Refused);
            assert!(
                answer.replies[0].contains("changed on its way"),
                "{:?}",
                answer.replies
            );
        }
        // The amount rewritten in transit: the T term moves (and S1 with the first digit).
        let text = world.low(PAYEE, "100", 4);
        let answer = world.sms(PAYER_PHONE, &text.replace(" 100.00 ", " 900.00 "));
        assert!(answer.replies[0].contains("changed on its way"));
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert_eq!(envelope.view.consecutive_failures, 0);
        assert_eq!(envelope.view.used_rows.iter().count(), 4, "each row burned");
        assert_eq!(flags(&mut world, "sms:content_mismatch:"), 4);
        assert_eq!(world.balance(PAYEE), 0);
        for row in 5..(5 + crate::limits::LOCKOUT_FAILURES) {
            let guess = with_checksum_moved(&world, row, &[0, 2, 4]);
            let answer = world.sms(PAYER_PHONE, &guess);
            assert!(!answer.replies[0].contains("changed on its way"));
        }
        let envelope = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert!(matches!(
            envelope.view.status,
            crate::envelope::EnvelopeStatus::Locked { .. }
        ));
    }

    /// A read cache holding whatever the test puts in it.
    #[derive(Default)]
    struct Cache {
        envelopes: Mutex<HashMap<String, Loaded<EnvelopeRecord>>>,
        accounts: Mutex<HashMap<String, Loaded<AccountRecord>>>,
    }

    impl ReadCache for Cache {
        fn envelope(&self, key: &str) -> Option<Loaded<EnvelopeRecord>> {
            self.envelopes.lock().unwrap().get(key).cloned()
        }
        fn account(&self, key: &str) -> Option<Loaded<AccountRecord>> {
            self.accounts.lock().unwrap().get(key).cloned()
        }
        fn keep_envelope(&self, record: &Loaded<EnvelopeRecord>) {
            self.envelopes
                .lock()
                .unwrap()
                .insert(record.key.clone(), record.clone());
        }
        fn keep_account(&self, record: &Loaded<AccountRecord>) {
            self.accounts
                .lock()
                .unwrap()
                .insert(record.key.clone(), record.clone());
        }
    }

    fn decide_with(world: &mut World, cache: &Cache, text: String, id: &str) -> Effects {
        let sms = InboundSms {
            gateway: "webhook".into(),
            message_id: id.into(),
            from: phone(PAYER_PHONE),
            text,
            answer_inline: true,
        };
        let loaded = InboundLoad::start(world.operator.clone(), sms, world.now, false)
            .run_on(&mut world.store, Some(cache), &world.entropy)
            .unwrap();
        match decide(loaded, world.now, &world.operator, &[]).unwrap() {
            Decision::Commit { effects, .. } => effects,
            Decision::Reload => panic!("consistent reads"),
        }
    }

    #[test]
    fn a_stale_cached_payer_makes_the_commit_fail_and_the_payee_is_read_from_the_store() {
        let mut world = World::new();
        let cache = Cache::default();
        // The cache holds the payer as it was before a payment made elsewhere.
        let key = records::account_key(&number(PAYER));
        let stale = Loaded::<AccountRecord>::read(&mut world.store, &key).unwrap();
        cache.keep_account(&stale);
        let elsewhere = world.low(PAYEE, "100", 1);
        world.sms(PAYER_PHONE, &elsewhere);
        let text = world.low(PAYEE, "100", 2);
        // The cached account's recorded rows disagree with the envelope read from the store, so
        // the read is made again from the store alone: the decision counts both payments.
        let effects = decide_with(&mut world, &cache, text, "gw-c0");
        assert!(commit(&mut world.store, effects, world.now));
        assert_eq!(world.account(PAYER).spending.today.minor(), 20_000);
        // A cached account and envelope that agree but are both old (a payment made elsewhere
        // since): the commit, conditional on the versions read, fails.
        let cache = Cache::default();
        let envelope_key = records::envelope_key(&crate::numbers::Euin::parse(PAYER_EUIN).unwrap());
        cache.keep_account(&Loaded::<AccountRecord>::read(&mut world.store, &key).unwrap());
        cache.keep_envelope(
            &Loaded::<EnvelopeRecord>::read(&mut world.store, &envelope_key).unwrap(),
        );
        let elsewhere = world.low(PAYEE, "100", 3);
        world.sms(PAYER_PHONE, &elsewhere);
        let text = world.low(PAYEE, "100", 4);
        let effects = decide_with(&mut world, &cache, text, "gw-c1");
        assert!(!commit(&mut world.store, effects, world.now));

        // The cache says the payee is closed; the store says it is open: the store decides.
        let cache = Cache::default();
        let payee_key = records::account_key(&number(PAYEE));
        let mut payee = Loaded::<AccountRecord>::read(&mut world.store, &payee_key).unwrap();
        if let Some(record) = payee.value.as_mut() {
            record.active = false;
        }
        cache.keep_account(&payee);
        let text = world.low(PAYEE, "100", 5);
        let effects = decide_with(&mut world, &cache, text, "gw-c2");
        assert_eq!(effects.postings(), 2, "payment and fee");
        assert!(commit(&mut world.store, effects, world.now));
        assert_eq!(world.balance(PAYEE), 40_000);
    }

    #[test]
    fn an_insider_changed_confirmation_raises_a_fraud_flag() {
        let mut world = World::new();
        // PAYC always calls back: row 1 instruction, the bank's callback row from the top.
        let text = crate::compose::grid_text(
            &world.envelope,
            crate::grammar::SecurityLevel::High,
            PAYER_EUIN,
            &number(PAYEE),
            &kes("100"),
            1,
        )
        .unwrap();
        let callback = world.sms(PAYER_PHONE, &text);
        assert_eq!(callback.summary.verdict, Answered::Accepted);
        // The bank takes its rows from the top.
        let bank_row = 20;
        assert!(
            callback.replies[0].contains("BANK ROW 20"),
            "{:?}",
            callback.replies
        );
        // The OK's checksum over another amount: what a rewritten instruction would give.
        let checksum = world
            .envelope
            .row(2)
            .unwrap()
            .recipe()
            .checksum(&number(PAYEE), &kes("1000"));
        let digits: String = checksum.iter().map(|d| char::from(b'0' + d)).collect();
        let ok = format!(
            "OK {PAYER_EUIN} {bank_row} {} 2 {digits}",
            tan(&world, bank_row)
        );
        let answer = world.sms(PAYER_PHONE, &ok);
        assert_eq!(answer.summary.verdict, Answered::Refused, "{answer:?}");
        let flags = world
            .store
            .records(
                offpay_operator::fraud::NAMESPACE,
                "sms:callback_mismatch:",
                None,
                10,
            )
            .unwrap();
        assert_eq!(flags.len(), 1);
        assert_eq!(world.balance(PAYEE), 0);
    }
}
