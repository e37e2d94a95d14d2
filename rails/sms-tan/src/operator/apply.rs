//! The decision's last step: the engine's [`Outcome`] of one message, the records it was decided
//! on and the time turn into [`Effects`] — the envelope's new bookkeeping and the accounts'
//! changes (each written back conditionally on the version read), pending callbacks, scheduled
//! payments and disputes (created only if absent), the ledger postings with the operator accounts
//! they need, the payer's spending window, fraud flags, the replies (answered inline or queued
//! for the gateway) and the message's dedupe record. All of it commits in one batch or none of
//! it does.

use std::collections::HashMap;

use offpay_ledger::{Currency, Operation, RecordWrite, Timestamp, Transfer, TransferKind};
use offpay_operator::accounts::{FEES, OPERATOR_FLOAT, operator_account_id, operator_accounts};
use offpay_operator::{Effects, FraudFlag, Loaded, RecordError, StoredRecord};
use serde_json::json;

use crate::engine::{Effect, Outcome, Verdict};
use crate::envelope::EnvelopeStatus;
use crate::error::Refusal;
use crate::numbers::{AccountNumber, PhoneNumber};
use crate::operator::load::RecordSet;
use crate::operator::records::{
    self, AccountRecord, Answered, DisputeRecord, DisputeStatus, EnvelopeRecord, InboundRecord,
    OutboundRecord, PendingRecord, ScheduledRecord, short_hash,
};
use crate::operator::spending::payment_of;
use crate::operator::{Operator, OperatorError, seconds};
use crate::posting::{LedgerAccount, PostingKind};

/// The rail name on fraud flags.
pub const FRAUD_RAIL: &str = "sms";

/// How a verdict is answered and stored.
pub fn answered(verdict: &Verdict) -> Answered {
    match verdict {
        Verdict::Accepted => Answered::Accepted,
        Verdict::Refused(_) => Answered::Refused,
        Verdict::Malformed(_) => Answered::Malformed,
    }
}

/// The write that creates `value` under `key`, only if nothing is stored there.
pub fn create<R: StoredRecord>(key: String, value: &R) -> Result<Operation, RecordError> {
    Loaded::<R> {
        key,
        version: 0,
        value: None,
    }
    .write(value)
}

/// The write that stores `value` under `key` whatever is there (queue entries, whose keys are
/// unique per message and reply).
pub fn put<R: StoredRecord>(key: String, value: &R) -> Result<Operation, RecordError> {
    let bytes = value.encode(&key)?;
    Ok(Operation::PutRecord(RecordWrite {
        namespace: R::NAMESPACE.to_owned(),
        key,
        value: Some(bytes),
        expected_version: None,
    }))
}

/// The delete of `key` whatever is there.
pub fn remove<R: StoredRecord>(key: String) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: R::NAMESPACE.to_owned(),
        key,
        value: None,
        expected_version: None,
    })
}

/// Envelope and account records a committed decision wrote, at the versions they have after the
/// commit (for a server's read cache).
#[derive(Debug, Default)]
pub struct Written {
    /// Envelopes.
    pub envelopes: Vec<Loaded<EnvelopeRecord>>,
    /// Accounts.
    pub accounts: Vec<Loaded<AccountRecord>>,
}

/// Everything one outcome is applied with.
#[derive(Debug)]
pub struct ApplyInput<'a> {
    /// The engine's outcome.
    pub outcome: &'a Outcome,
    /// The records it was decided on.
    pub records: &'a RecordSet,
    /// Replies to this phone are answered inline (the webhook's response), not queued.
    pub inline_to: Option<&'a PhoneNumber>,
    /// The inbound message's dedupe record key, if it has one.
    pub dedupe_key: Option<&'a str>,
    /// The message id (fraud flag discriminator, queue keys, dispute keys).
    pub message_id: &'a str,
    /// Further writes of the caller's decision (a scheduled payment's deletion, a terminal's
    /// dedupe record, a web session).
    pub extra: Vec<Operation>,
    /// Hashes of the passwords of `SetWebPassword` effects, by account.
    pub password_hashes: &'a [(AccountNumber, String)],
    /// Statement replies for `SendStatement` effects.
    pub statements: &'a [(PhoneNumber, Vec<String>)],
    /// Now.
    pub now: Timestamp,
    /// The operator's configuration.
    pub operator: &'a Operator,
    /// Currencies whose operator accounts are known to exist (no need to create them again).
    pub operator_ready: &'a [Currency],
}

/// What an applied outcome did, for the server once it is committed.
#[derive(Debug)]
pub struct Summary {
    /// How the message ended.
    pub verdict: Answered,
    /// Replies queued for the gateway (wake the sender).
    pub queued: usize,
    /// Ledger postings made.
    pub postings: usize,
    /// Envelopes and accounts written (for a read cache).
    pub written: Written,
    /// Currencies whose operator accounts this commit creates or uses.
    pub operator_currencies: Vec<Currency>,
}

/// An applied outcome.
#[derive(Debug)]
pub struct Applied {
    /// What to commit.
    pub effects: Effects,
    /// Replies answered inline.
    pub inline: Vec<String>,
    /// What it did.
    pub summary: Summary,
}

/// Accounts changed by this outcome, copied from what was read on first change.
struct Changed<'a> {
    records: &'a RecordSet,
    accounts: HashMap<String, (AccountRecord, &'a Loaded<AccountRecord>)>,
}

impl<'a> Changed<'a> {
    fn account(&mut self, number: &AccountNumber) -> Option<&mut AccountRecord> {
        let key = records::account_key(number);
        if !self.accounts.contains_key(&key) {
            let loaded = self.records.accounts.get(&key)?;
            let value = loaded.value.clone()?;
            self.accounts.insert(key.clone(), (value, loaded));
        }
        self.accounts.get_mut(&key).map(|(record, _)| record)
    }
}

fn ledger_id(
    account: &LedgerAccount,
    server: Currency,
) -> Result<offpay_ledger::AccountId, OperatorError> {
    let id = match account {
        LedgerAccount::Customer(number) => Some(records::ledger_account(number)),
        LedgerAccount::Fees(currency) => operator_account_id(FEES, *currency, server),
        LedgerAccount::ExchangeFloat(currency) => {
            operator_account_id(OPERATOR_FLOAT, *currency, server)
        }
    };
    id.ok_or_else(|| OperatorError::Internal(format!("no ledger account for {account:?}")))
}

fn kind_word(kind: PostingKind) -> &'static str {
    match kind {
        PostingKind::Payment => "payment",
        PostingKind::Fee => "fee",
        PostingKind::ExchangeOut => "exchange out",
        PostingKind::ExchangeIn => "exchange in",
    }
}

/// Applies an outcome; `Ok(None)` when an effect contradicts what was read (another message
/// changed the envelope between two of this message's reads): load again and decide again.
pub fn apply(input: ApplyInput<'_>) -> Result<Option<Applied>, OperatorError> {
    let ApplyInput {
        outcome,
        records,
        inline_to,
        dedupe_key,
        message_id,
        extra,
        password_hashes,
        statements,
        now,
        operator,
        operator_ready,
    } = input;
    let discriminator = short_hash(message_id);
    let mut effects = Effects::new();
    let mut writes: Vec<Operation> = Vec::new();
    let mut envelopes: HashMap<String, (EnvelopeRecord, &Loaded<EnvelopeRecord>)> = HashMap::new();
    let mut changed = Changed {
        records,
        accounts: HashMap::new(),
    };
    for effect in &outcome.effects {
        match effect {
            Effect::UpdateEnvelope {
                euin,
                expected_used_rows,
                used_rows,
                consecutive_failures,
                status,
                binding,
            } => {
                let key = records::envelope_key(euin);
                if !envelopes.contains_key(&key) {
                    let Some(loaded) = records.envelopes.get(&key) else {
                        return Ok(None);
                    };
                    let Some(value) = loaded.value.clone() else {
                        return Ok(None);
                    };
                    envelopes.insert(key.clone(), (value, loaded));
                }
                let Some((record, loaded)) = envelopes.get_mut(&key) else {
                    return Ok(None);
                };
                if record.view.used_rows != *expected_used_rows {
                    return Ok(None);
                }
                let was_locked = matches!(record.view.status, EnvelopeStatus::Locked { .. });
                let was_unallocated = loaded
                    .value
                    .as_ref()
                    .is_some_and(|value| value.view.status == EnvelopeStatus::Unallocated);
                record.update(*used_rows, *consecutive_failures, *status, *binding);
                if let EnvelopeStatus::Locked { account } = status
                    && !was_locked
                {
                    let flag = FraudFlag::new(
                        FRAUD_RAIL,
                        "envelope_locked",
                        &euin.to_string(),
                        format!(
                            "envelope {euin} of account {account} locked after repeated wrong codes"
                        ),
                        json!({ "euin": euin.to_string(), "account": account.to_string(),
                                "failures": consecutive_failures }),
                        now,
                    );
                    effects.flag(&flag, &discriminator);
                }
                if let EnvelopeStatus::Active { account } = status
                    && was_unallocated
                {
                    let Some(record) = changed.account(account) else {
                        return Ok(None);
                    };
                    record.current_envelope = Some(*euin);
                }
            }
            Effect::CreatePending(pending) => {
                let reply_to = inline_to
                    .cloned()
                    .or_else(|| outcome.replies.first().map(|reply| reply.to.clone()))
                    .ok_or_else(|| {
                        OperatorError::Internal("a callback without a recipient".into())
                    })?;
                let key = records::pending_key(&pending.euin, pending.callback_row);
                let record =
                    PendingRecord::sealed(pending.clone(), reply_to, operator.master(), &key);
                writes.push(create(key, &record)?);
            }
            Effect::RemovePending { euin, callback_row } => {
                let key = records::pending_key(euin, *callback_row);
                writes.push(match records.pending.get(&key) {
                    Some(loaded) => loaded.delete(),
                    None => remove::<PendingRecord>(key),
                });
            }
            Effect::Schedule(payment) => {
                let key = records::scheduled_key(payment.due, &payment.message_id);
                let record = ScheduledRecord::sealed(payment.clone(), operator.master(), &key);
                writes.push(create(key, &record)?);
            }
            Effect::SetLimits { account, limits } => {
                let Some(record) = changed.account(account) else {
                    return Ok(None);
                };
                record.limits = limits.clone();
            }
            Effect::SetDialbackThreshold { account, threshold } => {
                let Some(record) = changed.account(account) else {
                    return Ok(None);
                };
                record.dialback_threshold = Some(*threshold);
            }
            Effect::SetLanguage { account, language } => {
                let Some(record) = changed.account(account) else {
                    return Ok(None);
                };
                record.language = Some(*language);
            }
            Effect::SetAlwaysCallback { account, on } => {
                let Some(record) = changed.account(account) else {
                    return Ok(None);
                };
                record.always_callback = *on;
            }
            Effect::SetWebPassword { account, .. } => {
                let hash = password_hashes
                    .iter()
                    .find(|(number, _)| number == account)
                    .map(|(_, hash)| hash.clone())
                    .ok_or_else(|| {
                        OperatorError::Internal("a web password without its hash".into())
                    })?;
                let Some(record) = changed.account(account) else {
                    return Ok(None);
                };
                record.web_password = Some(hash);
                record.web_failures = 0;
            }
            Effect::OpenDispute {
                account,
                reference,
                reported_at,
            } => {
                writes.push(create(
                    records::dispute_key(*reference, message_id),
                    &DisputeRecord {
                        account: *account,
                        reference: *reference,
                        reported_at: *reported_at,
                        status: DisputeStatus::Open,
                        note: None,
                        refund_transfer: None,
                    },
                )?);
            }
            // Statement replies were read with the message's records.
            Effect::SendStatement { .. } => {}
            // An incident on the channel: names the envelope, accuses no one.
            Effect::ReportReplay { euin, row } => {
                let flag = FraudFlag::new(
                    FRAUD_RAIL,
                    "row_replayed",
                    &euin.to_string(),
                    format!(
                        "row {row} of envelope {euin} was used before and named again with its right code: a message re-sent on the way, or the holder writing a crossed-out row; not counted as the holder's failure"
                    ),
                    json!({ "euin": euin.to_string(), "row": row }),
                    now,
                );
                effects.flag(&flag, &discriminator);
            }
        }
    }
    for tampered in &records.tampered {
        effects.flag(&tampered.flag(now), &discriminator);
    }
    if matches!(outcome.verdict, Verdict::Refused(Refusal::ContentMismatch)) {
        let subject = outcome
            .redacted
            .and_then(|redacted| redacted.envelope)
            .map_or_else(|| "unknown".to_owned(), |euin| euin.to_string());
        let flag = FraudFlag::new(
            FRAUD_RAIL,
            "content_mismatch",
            &subject,
            "a message's SUM or checksum did not match its content (a payment's in only one or two places): typing mistake or a message changed on the way; not counted as the holder's failure",
            json!({ "envelope": subject }),
            now,
        );
        effects.flag(&flag, &discriminator);
    }
    if matches!(
        outcome.verdict,
        Verdict::Refused(Refusal::ConfirmationMismatch)
    ) {
        let subject = outcome
            .redacted
            .and_then(|redacted| redacted.envelope)
            .map_or_else(|| "unknown".to_owned(), |euin| euin.to_string());
        let flag = FraudFlag::new(
            FRAUD_RAIL,
            "callback_mismatch",
            &subject,
            "an OK's checksum did not match the pending payment: typing mistake or an instruction changed on the way",
            json!({ "envelope": subject }),
            now,
        );
        effects.flag(&flag, &discriminator);
    }
    // Postings, after the operator accounts they need (idempotent creations).
    let server = operator.server_currency();
    let mut operator_currencies: Vec<Currency> = Vec::new();
    for posting in &outcome.postings {
        for side in [&posting.debit, &posting.credit] {
            if let LedgerAccount::Fees(currency) | LedgerAccount::ExchangeFloat(currency) = side
                && !operator_currencies.contains(currency)
            {
                operator_currencies.push(*currency);
            }
        }
        effects.post(Transfer {
            id: records::ledger_transfer_id(&posting.transfer_id),
            debit_account: ledger_id(&posting.debit, server)?,
            credit_account: ledger_id(&posting.credit, server)?,
            amount: posting.amount,
            kind: TransferKind::Posted,
            memo: format!("sms {} REF {}", kind_word(posting.kind), posting.reference),
        });
    }
    for currency in &operator_currencies {
        if !operator_ready.contains(currency) {
            effects.create_accounts(operator_accounts(*currency, server));
        }
    }
    // The payer's spending window moves in the same batch as the payment.
    if let Some((payer, payee, amount)) = payment_of(&outcome.postings) {
        let Some(record) = changed.account(&payer) else {
            return Ok(None);
        };
        record.spending.record_payment(
            &record.limits,
            &payee,
            amount,
            seconds(now),
            operator.utc_offset_minutes(),
        );
    }
    // Each changed envelope's used rows go into its account too, under the spending window's
    // MAC, so an envelope or account put back to an earlier copy disagrees with the other.
    for (record, _) in envelopes.values() {
        let (EnvelopeStatus::Active { account } | EnvelopeStatus::Locked { account }) =
            record.view.status
        else {
            continue;
        };
        let key = records::account_key(&account);
        let current = match changed.accounts.get(&key) {
            Some((stored, _)) => Some((stored.current_envelope, stored.envelope_rows)),
            None => records
                .accounts
                .get(&key)
                .and_then(|loaded| loaded.value.as_ref())
                .map(|stored| (stored.current_envelope, stored.envelope_rows)),
        };
        let wanted = Some((record.view.euin, record.view.used_rows));
        if let Some((current_envelope, recorded)) = current
            && current_envelope == Some(record.view.euin)
            && recorded != wanted
            && let Some(stored) = changed.account(&account)
        {
            stored.envelope_rows = wanted;
        }
    }
    let mut written = Written::default();
    for (mut record, loaded) in envelopes.into_values() {
        // Only an envelope read authentic is written back with a MAC: one changed in the database
        // never becomes the operator's through a later write (the SMS path never gets here with
        // one: its reads refuse it; an agent's or operator's step on it is refused here).
        let authentic = loaded
            .value
            .as_ref()
            .is_some_and(|read| read.authentic(operator.master(), &loaded.key));
        if !authentic {
            return Err(OperatorError::conflict(
                "record_tampered",
                format!(
                    "stored envelope record {} does not match its MAC: written or changed outside \
                     the operator's code; refused, nothing changed",
                    loaded.key
                ),
            ));
        }
        record.seal(operator.master(), &loaded.key);
        writes.push(loaded.write(&record)?);
        written.envelopes.push(Loaded {
            key: loaded.key.clone(),
            version: loaded.version + 1,
            value: Some(record),
        });
    }
    for (mut record, loaded) in changed.accounts.into_values() {
        // The MAC follows a change only of settings that were authentic when read: settings
        // changed in the database stay refused whatever the SMS or agent path writes after.
        let authentic = loaded
            .value
            .as_ref()
            .is_some_and(|read| read.settings_authentic(operator.master(), &loaded.key));
        if authentic {
            record.seal_settings(operator.master(), &loaded.key);
        }
        // Likewise the spending window: resealed after a payment moved it only when the window
        // read was authentic, so a window lowered in the database never becomes the operator's.
        let window_authentic = loaded
            .value
            .as_ref()
            .is_some_and(|read| read.spending_authentic(operator.master(), &loaded.key));
        if window_authentic {
            record.seal_spending(operator.master(), &loaded.key);
        }
        writes.push(loaded.write(&record)?);
        written.accounts.push(Loaded {
            key: loaded.key.clone(),
            version: loaded.version + 1,
            value: Some(record),
        });
    }
    // Replies: inline to the sender, the rest into the durable queue.
    let mut inline = Vec::new();
    let mut queued = 0usize;
    let statement_replies = statements
        .iter()
        .flat_map(|(to, texts)| texts.iter().map(move |text| (to, text.as_str())));
    let replies = outcome
        .replies
        .iter()
        .map(|reply| (&reply.to, reply.text.as_str()))
        .chain(statement_replies);
    for (index, (to, text)) in replies.enumerate() {
        if inline_to == Some(to) {
            inline.push(text.to_owned());
            continue;
        }
        writes.push(put(
            records::outbound_key(now.0, &format!("{message_id}/{index}")),
            &OutboundRecord {
                to: to.clone(),
                text: text.to_owned(),
                attempts: 0,
                next_attempt_ms: now.0,
                queued_at_ms: now.0,
                last_error: None,
                text_hash: String::new(),
            },
        )?);
        queued += 1;
    }
    let verdict = answered(&outcome.verdict);
    if let Some(key) = dedupe_key {
        writes.push(create(
            key.to_owned(),
            &InboundRecord::sealed(operator.master(), key, verdict, &inline, now.0),
        )?);
    }
    writes.extend(extra);
    effects.write_all(writes);
    let postings = effects.postings();
    Ok(Some(Applied {
        effects,
        inline,
        summary: Summary {
            verdict,
            queued,
            postings,
            written,
            operator_currencies,
        },
    }))
}
