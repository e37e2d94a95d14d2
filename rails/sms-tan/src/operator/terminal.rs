//! Merchant terminals: a terminal authenticates with the token the operator issued it (the
//! operator keeps only its hash), supplies the payee (its own) and the amount, and the payer keys
//! in envelope (or pay number), row and TAN. The row is checked exactly as in an SMS; a retried
//! request (same request id) gets the first answer and pays once.

use offpay_ledger::{Amount, Currency, LedgerStore, Timestamp};
use offpay_operator::{Decision, Effects, Entropy, Loaded, RecordError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::engine::{OutboundSms, PayeeContext, PayerContext, TerminalPayment, Verdict};
use crate::envelope::EnvelopeStatus;
use crate::error::Refusal;
use crate::limits::{ACCOUNT_NUMBER_DIGITS, EUIN_DIGITS};
use crate::numbers::{AccountNumber, Euin, PhoneNumber, Tan};
use crate::operator::apply::{ApplyInput, Summary, apply, create};
use crate::operator::load::{PayerLookup, Reader, RecordSet, load_payee, load_payer};
use crate::operator::records::{Answered, InboundRecord, TerminalRecord, inbound_key};
use crate::operator::{Operator, OperatorError, seconds};
use crate::posting::Reference;
use crate::reply;

/// Longest terminal request id.
pub const TERMINAL_REQUEST_ID_BYTES_MAX: usize = 100;
/// Longest terminal id accepted in a token.
pub const TERMINAL_ID_BYTES_MAX: usize = 40;
/// Random bytes of a terminal id.
const TERMINAL_ID_BYTES: usize = 8;
/// Random bytes of a terminal secret.
const TERMINAL_SECRET_BYTES: usize = 32;
/// The gateway name of terminal requests in dedupe keys.
const TERMINAL_GATEWAY: &str = "terminal";

/// A new terminal for `payee`: its record and the token shown once (`<id>.<secret>`).
pub fn new_terminal(
    entropy: &dyn Entropy,
    payee: AccountNumber,
    now: Timestamp,
) -> Result<(TerminalRecord, String), OperatorError> {
    let mut random = [0u8; TERMINAL_ID_BYTES + TERMINAL_SECRET_BYTES];
    entropy.fill(&mut random)?;
    let id = format!("t{}", hex::encode(&random[..TERMINAL_ID_BYTES]));
    let mut secret = hex::encode(&random[TERMINAL_ID_BYTES..]);
    random.zeroize();
    let record = TerminalRecord {
        id: id.clone(),
        payee,
        secret_hash: sha256(&secret),
        active: true,
        created_at_ms: now.0,
    };
    let token = format!("{id}.{secret}");
    secret.zeroize();
    Ok((record, token))
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The terminal id and secret of a presented token `<id>.<secret>`, if it has that shape.
pub fn token_parts(presented: &str) -> Option<(&str, &str)> {
    let (id, secret) = presented.split_once('.')?;
    (id.len() <= TERMINAL_ID_BYTES_MAX).then_some((id, secret))
}

impl TerminalRecord {
    /// True when the terminal is active and `secret` is its secret (constant time).
    pub fn accepts(&self, secret: &str) -> bool {
        self.active && bool::from(sha256(secret).ct_eq(&self.secret_hash))
    }
}

/// A payment request from a merchant terminal.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalRequest {
    /// Unique per terminal; a retry with the same id pays once.
    pub request_id: String,
    /// The payer's envelope number (11 digits) or pay number (12 digits).
    pub payer: String,
    /// The row the payer keyed in.
    pub row: u8,
    /// Its TAN.
    pub tan: String,
    /// Decimal amount.
    pub amount: String,
    /// Currency of the amount (default: the payee's).
    pub currency: Option<String>,
    /// The payer's phone for a confirmation with a fresh row.
    pub payer_phone: Option<String>,
}

impl std::fmt::Debug for TerminalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TerminalRequest({}, row {})", self.request_id, self.row)
    }
}

impl Drop for TerminalRequest {
    fn drop(&mut self) {
        self.payer.zeroize();
        self.tan.zeroize();
    }
}

/// A terminal request, checked: who pays how, and under which ids.
pub struct TerminalPlan {
    payee: AccountNumber,
    lookup: PayerLookup,
    by_envelope: bool,
    row: u8,
    tan: Tan,
    amount: String,
    currency: Option<String>,
    payer_phone: Option<PhoneNumber>,
    /// A payment from the web page after the secure login: the holder's phone gets a plain SMS
    /// confirmation (no row, no TAN), as the seed's PC path confirms to the payer.
    confirm_to_holder: bool,
    message_id: String,
    dedupe_key: String,
}

impl std::fmt::Debug for TerminalPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TerminalPlan({}, row {})", self.message_id, self.row)
    }
}

impl TerminalPlan {
    /// Checks `request` from `terminal` (already authenticated).
    pub fn new(
        request: &TerminalRequest,
        terminal: &TerminalRecord,
        operator: &Operator,
    ) -> Result<TerminalPlan, OperatorError> {
        if request.request_id.is_empty() || request.request_id.len() > TERMINAL_REQUEST_ID_BYTES_MAX
        {
            return Err(OperatorError::invalid(
                "invalid_request_id",
                format!("request_id: 1 to {TERMINAL_REQUEST_ID_BYTES_MAX} bytes"),
            ));
        }
        let invalid_payer =
            || OperatorError::invalid("invalid_payer", "payer: envelope number or pay number");
        let digits: String = request.payer.chars().filter(char::is_ascii_digit).collect();
        let lookup = match digits.len() {
            EUIN_DIGITS => {
                PayerLookup::Envelope(Euin::parse(&digits).map_err(|_| invalid_payer())?)
            }
            ACCOUNT_NUMBER_DIGITS => {
                let number = AccountNumber::parse(&digits).map_err(|_| invalid_payer())?;
                PayerLookup::PayNumber(number, operator.master().pay_number_tag(&number))
            }
            _ => {
                return Err(OperatorError::invalid(
                    "invalid_payer",
                    "payer: the envelope number (11 digits) or the pay number (12 digits)",
                ));
            }
        };
        let tan = Tan::parse(request.tan.trim())
            .map_err(|_| OperatorError::invalid("invalid_tan", "tan: 3 digits"))?;
        let payer_phone = match &request.payer_phone {
            Some(phone) => Some(crate::operator::phone_number(
                phone,
                operator.default_country(),
                "payer_phone",
            )?),
            None => None,
        };
        Ok(TerminalPlan {
            payee: terminal.payee,
            by_envelope: matches!(lookup, PayerLookup::Envelope(_)),
            lookup,
            row: request.row,
            tan,
            amount: request.amount.trim().to_owned(),
            currency: request.currency.clone(),
            payer_phone,
            confirm_to_holder: false,
            message_id: format!("terminal:{}:{}", terminal.id, request.request_id),
            dedupe_key: inbound_key(
                TERMINAL_GATEWAY,
                &format!("{}:{}", terminal.id, request.request_id),
            ),
        })
    }
}

/// The gateway name of PC payments' dedupe records.
pub const WEB_GATEWAY: &str = "web";

impl TerminalPlan {
    /// A PC payment (the seed's fifth path): the holder of `account`, logged in on the web page
    /// (password and a row), pays `payee` `amount` (in the payee's currency unless `currency`)
    /// with another unused row and its TAN. The same rules as an SMS at the middle level (limits,
    /// fee, balance, the last row kept for `REG`, callback-only amounts refused); `request_id`
    /// (from the form) makes a resubmitted form pay once.
    pub fn web(
        account: &AccountNumber,
        payee: &str,
        amount: &str,
        row: u8,
        tan: &str,
        request_id: &str,
    ) -> Result<TerminalPlan, OperatorError> {
        if request_id.is_empty()
            || request_id.len() > TERMINAL_REQUEST_ID_BYTES_MAX
            || !request_id.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            return Err(OperatorError::invalid(
                "invalid_request_id",
                "the form is out of date: open the statement page again",
            ));
        }
        let digits: String = payee.chars().filter(char::is_ascii_digit).collect();
        let payee = AccountNumber::parse(&digits).map_err(|_| {
            OperatorError::invalid("invalid_payee", "payee: the 12-digit account number")
        })?;
        let tan = Tan::parse(tan.trim())
            .map_err(|_| OperatorError::invalid("invalid_tan", "TAN: 3 digits"))?;
        Ok(TerminalPlan {
            payee,
            lookup: PayerLookup::Account(*account),
            by_envelope: false,
            row,
            tan,
            amount: amount.trim().to_owned(),
            currency: None,
            payer_phone: None,
            confirm_to_holder: true,
            message_id: format!("web:{account}:{request_id}"),
            dedupe_key: inbound_key(WEB_GATEWAY, &format!("{account}:{request_id}")),
        })
    }
}

/// What a terminal payment reads: the stored answer of an earlier try, the payer and the payee
/// (from the store).
#[derive(Debug)]
pub struct TerminalLoad {
    seen: Option<InboundRecord>,
    payer: Option<PayerContext>,
    payee: Option<PayeeContext>,
    records: RecordSet,
}

/// Reads what `plan` needs, in one read transaction of `store`.
pub fn load_terminal(
    store: &mut dyn LedgerStore,
    plan: &TerminalPlan,
    operator: &Operator,
    now: Timestamp,
) -> Result<TerminalLoad, RecordError> {
    let seen = Loaded::<InboundRecord>::read(store, &plan.dedupe_key)?.value;
    let mut records = RecordSet::default();
    let mut reader = Reader::new(store, None, &mut records);
    let payer = load_payer(&mut reader, &plan.lookup, operator, seconds(now))?;
    let payee = match &payer {
        Some(payer) => load_payee(
            &mut reader,
            &plan.payee,
            &payer.account.receive_number,
            operator,
            seconds(now),
        )?,
        None => None,
    };
    Ok(TerminalLoad {
        seen,
        payer,
        payee,
        records,
    })
}

/// The answer to a terminal.
#[derive(Debug)]
pub enum TerminalAnswer {
    /// This request id was answered before: the same answer, nothing done now.
    Duplicate {
        /// How it ended then.
        verdict: Answered,
        /// What was answered.
        message: String,
    },
    /// The payer named is not known or may not pay this way; nothing done.
    PayerRefused {
        /// For the terminal's display.
        message: String,
    },
    /// Decided now.
    Done {
        /// How it ended.
        verdict: Answered,
        /// For the terminal's display.
        message: String,
        /// The payment's reference, if paid.
        reference: Option<Reference>,
        /// Replies queued, records written.
        summary: Summary,
    },
}

/// Decides a terminal payment with what `load` read.
pub fn decide_terminal(
    load: TerminalLoad,
    plan: &TerminalPlan,
    now: Timestamp,
    operator: &Operator,
    operator_ready: &[Currency],
) -> Result<Decision<TerminalAnswer>, OperatorError> {
    let TerminalLoad {
        seen,
        payer,
        payee,
        records,
    } = load;
    if let Some(record) = seen {
        return Ok(Decision::commit(
            Effects::new(),
            TerminalAnswer::Duplicate {
                verdict: record.verdict,
                message: record
                    .open_replies(operator.master(), &plan.dedupe_key)
                    .first()
                    .cloned()
                    .unwrap_or_default(),
            },
        ));
    }
    let Some(payer) = payer.filter(|payer| {
        (!plan.by_envelope || !payer.account.require_pay_number)
            && !matches!(
                payer.envelope.status,
                EnvelopeStatus::Unallocated | EnvelopeStatus::Retired
            )
    }) else {
        return Ok(Decision::commit(
            Effects::new(),
            TerminalAnswer::PayerRefused {
                message: reply::refused(
                    operator.default_language(),
                    &Refusal::NotAuthenticated,
                    None,
                    false,
                ),
            },
        ));
    };
    let currency = match &plan.currency {
        Some(code) => Currency::from_code(code).map_err(|error| {
            OperatorError::invalid("invalid_currency", format!("{code:?}: {error}"))
        })?,
        None => payee
            .as_ref()
            .map_or(payer.account.currency, |payee| payee.account.currency),
    };
    let amount = Amount::parse(&plan.amount, currency).map_err(|error| {
        OperatorError::invalid(
            "invalid_amount",
            format!("amount {:?}: {error}", plan.amount),
        )
    })?;
    let payment = TerminalPayment {
        request_id: plan.message_id.clone(),
        row: plan.row,
        tan: plan.tan.clone(),
        amount,
        payer_phone: plan.payer_phone.clone(),
    };
    // What the terminal or the web page shows, in the payer's language.
    let lang = operator.engine().language_of(&payer.account);
    let holder_phone = payer
        .account
        .notify_phone
        .clone()
        .or_else(|| payer.account.bound_phones.first().cloned());
    let mut outcome = operator
        .engine()
        .pay_at_terminal(&payment, payer, payee, seconds(now));
    if plan.confirm_to_holder
        && outcome.verdict == Verdict::Accepted
        && let (Some(phone), Some(reference)) = (
            holder_phone,
            outcome.postings.first().map(|posting| posting.reference),
        )
    {
        // Through the outbox; no row is used for it and no TAN is in it: the payer is logged in
        // on the page that shows the same answer, the SMS is the record on the phone.
        outcome.replies.push(OutboundSms {
            to: phone,
            text: reply::paid_on_web(lang, &plan.payee, &amount, reference),
        });
    }
    let (verdict, message, reference) = match &outcome.verdict {
        Verdict::Accepted => {
            let reference = outcome.postings.first().map(|posting| posting.reference);
            let shown = reference.map(|reference| reference.to_string());
            (
                Answered::Accepted,
                offpay_text::text(
                    lang,
                    offpay_text::web::PAID,
                    &[
                        ("amount", &amount),
                        ("reference", &shown.unwrap_or_default()),
                    ],
                ),
                reference,
            )
        }
        Verdict::Refused(refusal) => (
            Answered::Refused,
            reply::refused(lang, refusal, None, false),
            None,
        ),
        Verdict::Malformed(_) => (
            Answered::Malformed,
            "Could not read the payment.".to_owned(),
            None,
        ),
    };
    let answered = create(
        plan.dedupe_key.clone(),
        &InboundRecord::sealed(
            operator.master(),
            &plan.dedupe_key,
            verdict,
            std::slice::from_ref(&message),
            now.0,
        ),
    )?;
    let applied = apply(ApplyInput {
        outcome: &outcome,
        records: &records,
        inline_to: None,
        dedupe_key: None,
        message_id: &plan.message_id,
        extra: vec![answered],
        password_hashes: &[],
        statements: &[],
        now,
        operator,
        operator_ready,
    })?;
    let Some(applied) = applied else {
        return Ok(Decision::Reload);
    };
    Ok(Decision::commit(
        applied.effects,
        TerminalAnswer::Done {
            verdict,
            message,
            reference,
            summary: applied.summary,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::admin::decide_new_terminal;
    use crate::operator::records;
    use crate::operator::testing::*;

    #[test]
    fn a_terminal_authenticates_by_its_token_and_pays_once_per_request_id() {
        let mut world = World::new();
        let payee = number(PAYEE);
        let key = records::account_key(&payee);
        let (entropy, now) = (&world.entropy, world.now);
        let (terminal, token) = run(
            &mut world.store,
            now,
            |store| Loaded::read(store, &key).unwrap(),
            |loaded| decide_new_terminal(loaded, &payee, entropy, now),
        )
        .unwrap();
        let (id, secret) = token_parts(&token).unwrap();
        assert_eq!(id, terminal.id);
        assert!(terminal.accepts(secret));
        assert!(!terminal.accepts("0"));
        assert!(!format!("{terminal:?}").contains(secret));
        let request: TerminalRequest = serde_json::from_value(serde_json::json!({
            "request_id": "r-1",
            "payer": PAYER_EUIN,
            "row": 5,
            "tan": tan(&world, 5),
            "amount": "250",
        }))
        .unwrap();
        let plan = TerminalPlan::new(&request, &terminal, &world.operator).unwrap();
        let pay = |world: &mut World| {
            let operator = world.operator.clone();
            let now = world.now;
            run(
                &mut world.store,
                now,
                |store| load_terminal(store, &plan, &operator, now).unwrap(),
                |load| decide_terminal(load, &plan, now, &operator, &[]),
            )
            .unwrap()
        };
        let TerminalAnswer::Done {
            verdict, reference, ..
        } = pay(&mut world)
        else {
            panic!("decided now")
        };
        assert_eq!(verdict, Answered::Accepted);
        assert!(reference.is_some());
        assert_eq!(world.balance(PAYEE), 25_000);
        assert!(matches!(
            pay(&mut world),
            TerminalAnswer::Duplicate {
                verdict: Answered::Accepted,
                ..
            }
        ));
        assert_eq!(world.balance(PAYEE), 25_000);
        let mut bad: TerminalRequest = serde_json::from_value(serde_json::json!({
            "request_id": "", "payer": PAYER_EUIN, "row": 5, "tan": "123", "amount": "1",
        }))
        .unwrap();
        assert!(TerminalPlan::new(&bad, &terminal, &world.operator).is_err());
        bad.request_id = "r-2".into();
        bad.payer = "123".into();
        assert!(TerminalPlan::new(&bad, &terminal, &world.operator).is_err());
    }

    fn outbox(world: &mut World) -> Vec<records::OutboundRecord> {
        world
            .store
            .records(records::NAMESPACE, records::OUTBOUND_PREFIX, None, 100)
            .unwrap()
            .iter()
            .map(|record| records::decode_record(record).unwrap())
            .collect()
    }

    /// The seed's PC path confirms to the payer: a payment from the web page sends the holder's
    /// phone a plain confirmation through the outbox — the payee, amount and reference, no row
    /// and no TAN — once, however often the form is sent again.
    #[test]
    fn a_web_payment_is_confirmed_to_the_holders_phone_without_a_tan() {
        let mut world = World::new();
        let holder = "222200003333";
        let holder_phone = "+254700000005";
        world.open(holder, Some(holder_phone), Some(kes("1000")));
        let euin = Euin::issued(263, 78).unwrap();
        world.print(&euin);
        world.bind(&euin, holder);
        let envelope = crate::envelope::Envelope::derive(
            world.operator.master(),
            euin,
            crate::envelope::RowCount::Twenty,
        );
        let row_tan = envelope.row(3).unwrap().tan().reveal();
        let plan = TerminalPlan::web(&number(holder), PAYEE, "250", 3, &row_tan, "00aa").unwrap();
        let before = outbox(&mut world).len();
        let pay = |world: &mut World| {
            let operator = world.operator.clone();
            let now = world.now;
            run(
                &mut world.store,
                now,
                |store| load_terminal(store, &plan, &operator, now).unwrap(),
                |load| decide_terminal(load, &plan, now, &operator, &[]),
            )
            .unwrap()
        };
        let TerminalAnswer::Done {
            verdict, reference, ..
        } = pay(&mut world)
        else {
            panic!("decided now")
        };
        assert_eq!(verdict, Answered::Accepted);
        assert_eq!(world.balance(PAYEE), 25_000);
        let queued = outbox(&mut world);
        let to_holder: Vec<_> = queued
            .iter()
            .filter(|record| record.to == phone(holder_phone))
            .collect();
        assert_eq!(queued.len() - before, 2, "the holder's and the payee's");
        assert_eq!(to_holder.len(), 1);
        let text = &to_holder[0].text;
        assert!(text.contains(&reference.unwrap().to_string()), "{text}");
        assert!(
            text.contains(PAYEE) && text.contains("250") && text.contains("web page"),
            "{text}"
        );
        // No TAN of any row of the envelope is in it.
        for row in 1..=20u8 {
            let row_tan = envelope.row(row).unwrap().tan().reveal();
            assert!(
                !text.contains(&format!("TAN {row_tan}")),
                "row {row}: {text}"
            );
        }
        assert!(!text.contains("TAN"), "{text}");
        // Sent again (the same form): answered from the record, nothing more queued.
        assert!(matches!(pay(&mut world), TerminalAnswer::Duplicate { .. }));
        assert_eq!(outbox(&mut world).len(), queued.len());
    }
}
