//! Reply texts: one GSM-7 SMS each (at most 160 septets), plain words, in the account holder's
//! language from the `offpay-text` catalogue (`crates/text/locales/*/sms.ftl`). Amounts,
//! references, rows, TANs and checksums are written here, the same in every language. Replies
//! never carry a secret of a row that is still unused, a pay number, or anything about another
//! account beyond the public receive number the sender typed.

use alloc::format;
use alloc::string::String;
use core::fmt::Display;

use offpay_money::Amount;
use offpay_text::{Id, Language, gsm7, sms};

use crate::civil_time::CivilDateTime;
use crate::error::{Field, ParseError, Refusal};
use crate::grammar::{MessageKind, guess_kind};
use crate::limits::{CALLBACK_TIMEOUT_SECONDS, LOCKOUT_FAILURES, REPLY_CHARS_MAX};
use crate::numbers::{AccountNumber, Euin};
use crate::posting::Reference;

/// Cuts a reply to one SMS and keeps it inside GSM-7 by replacing any character outside it.
/// Every text of the catalogue fits already (its test checks); the cut is a last line of defence.
pub fn fit(text: String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut septets = 0;
    for character in text.chars() {
        let character = if gsm7::is_gsm7(character) && !character.is_control() {
            character
        } else {
            '?'
        };
        let cost = gsm7::septets(character.encode_utf8(&mut [0; 4])).unwrap_or(1);
        if septets + cost > REPLY_CHARS_MAX {
            debug_assert!(false, "reply too long: {text}");
            break;
        }
        septets += cost;
        out.push(character);
    }
    out
}

/// Message `id` in `lang` with `args`, as it is sent.
fn say(lang: Language, id: Id, args: &[(&str, &dyn Display)]) -> String {
    fit(offpay_text::text(lang, id, args))
}

/// Message `id` in `lang` with `args`, to be put into another message (not yet cut).
fn words(lang: Language, id: Id, args: &[(&str, &dyn Display)]) -> String {
    offpay_text::text(lang, id, args)
}

/// The catalogue's name for `field`.
fn field_words(lang: Language, field: Field) -> String {
    let id = match field {
        Field::Payer => sms::FIELD_PAYER,
        Field::NewEnvelope => sms::FIELD_NEW_ENVELOPE,
        Field::Payee => sms::FIELD_PAYEE,
        Field::EncryptedPayee => sms::FIELD_CODED_PAYEE,
        Field::Amount => sms::FIELD_AMOUNT,
        Field::EncryptedAmount => sms::FIELD_CODED_AMOUNT,
        Field::Currency => sms::FIELD_CURRENCY,
        Field::Row => sms::FIELD_ROW,
        Field::Tan => sms::FIELD_TAN,
        Field::Checksum => sms::FIELD_CHECKSUM,
        Field::MagnitudeCode => sms::FIELD_SIZE_CODE,
        Field::Reference => sms::FIELD_REFERENCE,
        Field::LimitKind => sms::FIELD_LIMIT_KIND,
        Field::Switch => sms::FIELD_SWITCH,
        Field::Password => sms::FIELD_PASSWORD,
        Field::Date => sms::FIELD_DATE,
        Field::Time => sms::FIELD_TIME,
        Field::ScheduledPayment => sms::FIELD_SCHEDULED_PAYMENT,
        Field::Language => sms::FIELD_LANGUAGE,
    };
    words(lang, id, &[])
}

/// An example of a message of `kind` (or of a payment), with words in `lang`.
fn example(lang: Language, kind: Option<MessageKind>) -> String {
    let id = match kind {
        None => sms::EXAMPLE_PAY,
        Some(MessageKind::Payment(crate::grammar::SecurityLevel::Middle)) => sms::EXAMPLE_PAYG,
        Some(MessageKind::Payment(crate::grammar::SecurityLevel::High)) => sms::EXAMPLE_PAYC,
        Some(MessageKind::Register) => sms::EXAMPLE_REG,
        Some(kind) => return String::from(kind.example()),
    };
    words(lang, id, &[])
}

/// The reply to a message that could not be read. `text` is the message, used only to pick an
/// example of the right kind.
pub fn malformed(lang: Language, error: &ParseError, text: &str) -> String {
    let example = || example(lang, guess_kind(text));
    match error {
        ParseError::Empty => say(lang, sms::EMPTY, &[]),
        ParseError::TooLong => say(lang, sms::TOO_LONG, &[]),
        ParseError::BadCharacter(character) if character.is_ascii_graphic() => {
            say(lang, sms::BAD_SIGN, &[("sign", character)])
        }
        ParseError::BadCharacter(_) => say(lang, sms::BAD_SIGN_HIDDEN, &[]),
        ParseError::UnknownKeyword => say(lang, sms::UNKNOWN_KEYWORD, &[]),
        ParseError::Missing(field) => say(
            lang,
            sms::MISSING_PART,
            &[
                ("field", &field_words(lang, *field)),
                ("example", &example()),
            ],
        ),
        ParseError::Unreadable(field) => say(
            lang,
            sms::UNREADABLE_PART,
            &[
                ("field", &field_words(lang, *field)),
                ("example", &example()),
            ],
        ),
        ParseError::TooManyParts => say(lang, sms::TOO_MANY_PARTS, &[("example", &example())]),
        ParseError::Ambiguous => say(lang, sms::AMBIGUOUS, &[]),
        ParseError::BadEuin => say(
            lang,
            sms::BAD_PART,
            &[("field", &field_words(lang, Field::Payer))],
        ),
        ParseError::BadAccountNumber => say(
            lang,
            sms::BAD_PART,
            &[("field", &field_words(lang, Field::Payee))],
        ),
        ParseError::BadTan => say(
            lang,
            sms::BAD_PART,
            &[("field", &field_words(lang, Field::Tan))],
        ),
        ParseError::BadPhoneNumber => say(lang, sms::BAD_PHONE, &[]),
        ParseError::BadDateTime => say(lang, sms::BAD_DATE_TIME, &[]),
    }
}

/// An amount typed with more decimals than its currency has.
pub fn too_many_decimals(lang: Language, currency: offpay_money::Currency) -> String {
    say(
        lang,
        sms::TOO_MANY_DECIMALS,
        &[("currency", &currency), ("decimals", &currency.exponent())],
    )
}

/// The reply to a refused instruction. `burned_row` is a row that this message used up (so the
/// payer crosses it out); `locked_now` says this failure locked the envelope.
pub fn refused(
    lang: Language,
    refusal: &Refusal,
    burned_row: Option<u8>,
    locked_now: bool,
) -> String {
    let id = match refusal {
        Refusal::NotAuthenticated => sms::REFUSED_NOT_AUTHENTICATED,
        Refusal::RowUsed { row } => {
            return finish_refusal(
                lang,
                words(lang, sms::REFUSED_ROW_USED, &[("row", row)]),
                None,
                locked_now,
            );
        }
        Refusal::RowOutOfRange { row } => {
            return finish_refusal(
                lang,
                words(lang, sms::REFUSED_ROW_OUT_OF_RANGE, &[("row", row)]),
                burned_row,
                locked_now,
            );
        }
        Refusal::EnvelopeLocked => sms::REFUSED_ENVELOPE_LOCKED,
        Refusal::EnvelopeNotActive => sms::REFUSED_ENVELOPE_NOT_ACTIVE,
        Refusal::RowsExhausted => sms::REFUSED_ROWS_EXHAUSTED,
        Refusal::PhoneNotBound => sms::REFUSED_PHONE_NOT_BOUND,
        Refusal::PayNumberRequired => sms::REFUSED_PAY_NUMBER_REQUIRED,
        Refusal::LastRowReserved => sms::REFUSED_LAST_ROW_RESERVED,
        Refusal::ContentMismatch => sms::REFUSED_CONTENT_MISMATCH,
        Refusal::CodesDoNotMatch => sms::REFUSED_CODES_DO_NOT_MATCH,
        Refusal::UnknownPayee => sms::REFUSED_UNKNOWN_PAYEE,
        Refusal::SamePayerAndPayee => sms::REFUSED_SAME_PAYER_AND_PAYEE,
        Refusal::ZeroAmount => sms::REFUSED_ZERO_AMOUNT,
        Refusal::AmountTooLargeForGrid => sms::REFUSED_AMOUNT_TOO_LARGE,
        Refusal::PerPaymentLimit => sms::REFUSED_PER_PAYMENT_LIMIT,
        Refusal::DailyLimit => sms::REFUSED_DAILY_LIMIT,
        Refusal::WeeklyLimit => sms::REFUSED_WEEKLY_LIMIT,
        Refusal::PayeeLimit => sms::REFUSED_PAYEE_LIMIT,
        Refusal::InsufficientFunds => sms::REFUSED_INSUFFICIENT_FUNDS,
        Refusal::CurrencyNotAccepted => sms::REFUSED_CURRENCY_NOT_ACCEPTED,
        Refusal::SoftCurrencyConversion => sms::REFUSED_SOFT_CURRENCY,
        Refusal::NoPendingCallback => sms::REFUSED_NO_PENDING_CALLBACK,
        Refusal::CallbackExpired => {
            return finish_refusal(
                lang,
                words(
                    lang,
                    sms::REFUSED_CALLBACK_EXPIRED,
                    &[("minutes", &(CALLBACK_TIMEOUT_SECONDS / 60))],
                ),
                burned_row,
                locked_now,
            );
        }
        Refusal::EnvelopeNotRegistrable => sms::REFUSED_ENVELOPE_NOT_REGISTRABLE,
        Refusal::BadScheduleTime => sms::REFUSED_BAD_SCHEDULE_TIME,
        Refusal::BadSetting => sms::REFUSED_BAD_SETTING,
        Refusal::AccountNotActive => sms::REFUSED_ACCOUNT_NOT_ACTIVE,
        Refusal::UnknownReference => sms::REFUSED_UNKNOWN_REFERENCE,
        Refusal::ConfirmationMismatch => sms::REFUSED_CONFIRMATION_MISMATCH,
        Refusal::CallbackRequired => sms::REFUSED_CALLBACK_REQUIRED,
        Refusal::PrintedRecipeLimit => sms::REFUSED_PRINTED_RECIPE_LIMIT,
    };
    finish_refusal(lang, words(lang, id, &[]), burned_row, locked_now)
}

/// Adds the lock notice (or, when it does not fit, sends it alone: the lock matters more) or
/// the row to cross out (only when it fits).
fn finish_refusal(
    lang: Language,
    mut reply: String,
    burned_row: Option<u8>,
    locked_now: bool,
) -> String {
    let addition = if locked_now {
        words(lang, sms::LOCKED_NOW, &[("failures", &LOCKOUT_FAILURES)])
    } else if let Some(row) = burned_row {
        words(lang, sms::CROSS_OUT, &[("row", &row)])
    } else {
        return fit(reply);
    };
    let joined = format!("{reply} {addition}");
    if gsm7::fits_one_sms(&joined) {
        reply = joined;
    } else if locked_now {
        reply = addition;
    }
    fit(reply)
}

/// The list of messages.
pub fn help(lang: Language) -> String {
    say(lang, sms::HELP, &[])
}

/// The bank's proof that it sent a reply: a fresh row and its TAN (the same in every language:
/// the payer compares it with the envelope).
pub fn proof(row: u8, tan: &str) -> String {
    format!("BANK ROW {row} TAN {tan}")
}

/// Low-level confirmation in the seed's own form:
/// `PAID 26399912345*901020377865*200000.00*20*338421 REF 12345678 FEE KES 0.00`.
#[allow(clippy::too_many_arguments)]
pub fn paid_low(
    lang: Language,
    euin: &Euin,
    payee: &AccountNumber,
    typed_amount: &str,
    bank_row: u8,
    checksum: &[u8; 6],
    reference: Reference,
    fee: &Amount,
) -> String {
    let digits: String = checksum
        .iter()
        .map(|digit| char::from(b'0' + digit))
        .collect();
    let instruction = format!("{euin}*{payee}*{typed_amount}*{bank_row}*{digits}");
    say(
        lang,
        sms::PAID_LOW,
        &[
            ("instruction", &instruction),
            ("reference", &reference),
            ("fee", fee),
        ],
    )
}

/// Middle/high confirmation: a copy of the instruction plus a fresh row and its TAN.
pub fn paid_grid(
    lang: Language,
    instruction: &str,
    proof_text: &str,
    reference: Reference,
) -> String {
    say(
        lang,
        sms::PAID_GRID,
        &[
            ("instruction", &instruction),
            ("proof", &proof_text),
            ("reference", &reference),
        ],
    )
}

/// Confirmation of a payment made on the web page, to the holder's phone: no row, no TAN (the
/// payer saw the answer on the page after the secure login; the SMS is the record on the phone).
pub fn paid_on_web(
    lang: Language,
    payee: &AccountNumber,
    amount: &Amount,
    reference: Reference,
) -> String {
    say(
        lang,
        sms::PAID_ON_WEB,
        &[
            ("amount", amount),
            ("payee", payee),
            ("reference", &reference),
        ],
    )
}

/// Confirmation when no bank row can be spared (scheduled payment after the envelope ran low).
pub fn paid_plain(
    lang: Language,
    payee: &AccountNumber,
    amount: &Amount,
    reference: Reference,
) -> String {
    say(
        lang,
        sms::PAID_PLAIN,
        &[
            ("amount", amount),
            ("payee", payee),
            ("reference", &reference),
        ],
    )
}

/// The callback (protocol v2): the instruction as the bank read it, a fresh row with its TAN, that
/// row's checksum over the payee and amount as decoded (`SUM`, so the payer can check the bank read
/// the payment they meant even if the echo text was rewritten), and what to send: the OK with the
/// payer's next row and that row's checksum over the payee and amount they mean.
pub fn callback(
    lang: Language,
    instruction: &str,
    payer: &str,
    bank_row: u8,
    bank_tan: &str,
    bank_checksum: &[u8; 6],
) -> String {
    let digits: String = bank_checksum
        .iter()
        .map(|digit| char::from(b'0' + digit))
        .collect();
    say(
        lang,
        sms::CALLBACK,
        &[
            ("instruction", &instruction),
            ("proof", &proof(bank_row, bank_tan)),
            ("sum", &digits),
            ("payer", &payer),
            ("row", &bank_row),
            ("tan", &bank_tan),
        ],
    )
}

/// The payee's coded notice: amount plus TanCol2 and payer number plus TanCol4 of the payee's row.
pub fn received_coded(
    lang: Language,
    amount_plus_offset: &str,
    payer_plus_offset: &str,
    row: u8,
    tan: &str,
    reference: Reference,
) -> String {
    say(
        lang,
        sms::RECEIVED_CODED,
        &[
            ("amount", &amount_plus_offset),
            ("payer", &payer_plus_offset),
            ("row", &row),
            ("tan", &tan),
            ("reference", &reference),
        ],
    )
}

/// The payee's notice when it has no envelope row to spare.
pub fn received_plain(
    lang: Language,
    amount: &Amount,
    payer: &AccountNumber,
    reference: Reference,
    rows_out: bool,
) -> String {
    let id = if rows_out {
        sms::RECEIVED_PLAIN_ROWS_OUT
    } else {
        sms::RECEIVED_PLAIN
    };
    say(
        lang,
        id,
        &[
            ("amount", amount),
            ("payer", payer),
            ("reference", &reference),
        ],
    )
}

/// Scheduled payment accepted.
pub fn scheduled(
    lang: Language,
    due: &CivilDateTime,
    payee: &AccountNumber,
    amount: &Amount,
    reference: Reference,
    proof_text: &str,
) -> String {
    say(
        lang,
        sms::SCHEDULED,
        &[
            ("amount", amount),
            ("payee", payee),
            ("due", due),
            ("reference", &reference),
            ("proof", &proof_text),
        ],
    )
}

/// Balance.
pub fn balance(lang: Language, amount: &Amount) -> String {
    say(lang, sms::BALANCE, &[("amount", amount)])
}

/// Envelope registered.
pub fn registered(lang: Language, new: &Euin, old: &Euin, proof_text: &str) -> String {
    say(
        lang,
        sms::REGISTERED,
        &[("new", new), ("old", old), ("proof", &proof_text)],
    )
}

/// What a setting message changed, for [`setting_changed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingChange {
    /// A limit per day, per week or per payment (`None`: removed).
    Limit(LimitSpan, Option<Amount>),
    /// The daily limit to one payee (`None`: removed).
    PayeeLimit(AccountNumber, Option<Amount>),
    /// The dialback threshold.
    CallbackFrom(Amount),
    /// Callback for every payment (`true`) or only above the threshold.
    CallbackAlways(bool),
    /// The web password.
    WebPassword,
    /// The account's language (named in that language).
    Language(Language),
}

/// Which limit a [`SettingChange::Limit`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSpan {
    /// Per day.
    Day,
    /// Per week.
    Week,
    /// Per payment.
    Payment,
}

/// A setting changed.
pub fn setting_changed(lang: Language, change: &SettingChange, proof_text: &str) -> String {
    let what = match change {
        SettingChange::Limit(span, amount) => {
            let (set, removed) = match span {
                LimitSpan::Day => (sms::DONE_DAILY_LIMIT, sms::DONE_DAILY_LIMIT_REMOVED),
                LimitSpan::Week => (sms::DONE_WEEKLY_LIMIT, sms::DONE_WEEKLY_LIMIT_REMOVED),
                LimitSpan::Payment => (sms::DONE_PAYMENT_LIMIT, sms::DONE_PAYMENT_LIMIT_REMOVED),
            };
            match amount {
                Some(amount) => words(lang, set, &[("amount", amount)]),
                None => words(lang, removed, &[]),
            }
        }
        SettingChange::PayeeLimit(payee, Some(amount)) => words(
            lang,
            sms::DONE_PAYEE_LIMIT,
            &[("payee", payee), ("amount", amount)],
        ),
        SettingChange::PayeeLimit(payee, None) => {
            words(lang, sms::DONE_PAYEE_LIMIT_REMOVED, &[("payee", payee)])
        }
        SettingChange::CallbackFrom(amount) => {
            words(lang, sms::DONE_CALLBACK_FROM, &[("amount", amount)])
        }
        SettingChange::CallbackAlways(true) => words(lang, sms::DONE_CALLBACK_ALWAYS, &[]),
        SettingChange::CallbackAlways(false) => words(lang, sms::DONE_CALLBACK_THRESHOLD, &[]),
        SettingChange::WebPassword => words(lang, sms::DONE_WEB_PASSWORD, &[]),
        SettingChange::Language(language) => words(
            lang,
            sms::DONE_LANGUAGE,
            &[("language", &language.sms_name())],
        ),
    };
    say(
        lang,
        sms::SETTING_CHANGED,
        &[("what", &what), ("proof", &proof_text)],
    )
}

/// A dispute filed.
pub fn dispute_filed(lang: Language, reference: Reference, proof_text: &str) -> String {
    say(
        lang,
        sms::DISPUTE_FILED,
        &[("reference", &reference), ("proof", &proof_text)],
    )
}

/// One statement entry line for [`statement`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementEntry {
    /// When (local date).
    pub date: CivilDateTime,
    /// Signed amount in minor units (negative: paid out).
    pub minor: i128,
    /// The currency.
    pub currency: offpay_money::Currency,
    /// The payment reference.
    pub reference: Reference,
    /// Who was paid or paid in: a receive number, `cash` (money loaded by the operator),
    /// `exchange` (the operator's float of a cross-currency payment).
    pub counterparty: String,
    /// The fee taken with this payment, in minor units of `currency` (0: none).
    pub fee_minor: u64,
}

/// Statement replies: as many SMS as needed for the entries (at most
/// [`crate::limits::STATEMENT_ENTRIES_MAX`] entries), then the balance.
pub fn statement(
    lang: Language,
    entries: &[StatementEntry],
    balance_now: &Amount,
) -> alloc::vec::Vec<String> {
    let head = words(lang, sms::STATEMENT_HEAD, &[]);
    let septets = |text: &str| gsm7::septets(text).unwrap_or(text.chars().count());
    let mut replies = alloc::vec::Vec::new();
    let mut current = head.clone();
    for entry in entries.iter().take(crate::limits::STATEMENT_ENTRIES_MAX) {
        let id = if entry.minor < 0 {
            sms::STATEMENT_PAID_TO
        } else {
            sms::STATEMENT_RECEIVED_FROM
        };
        let fee = if entry.fee_minor > 0 {
            words(
                lang,
                sms::STATEMENT_FEE,
                &[(
                    "fee",
                    &offpay_money::Decimal::new(i128::from(entry.fee_minor), entry.currency),
                )],
            )
        } else {
            String::new()
        };
        let counterparty = match entry.counterparty.as_str() {
            "cash" => words(lang, sms::STATEMENT_CASH, &[]),
            "exchange" => words(lang, sms::STATEMENT_EXCHANGE, &[]),
            other => String::from(other),
        };
        let date = format!(
            "{:04}-{:02}-{:02}",
            entry.date.year, entry.date.month, entry.date.day
        );
        let amount = format!(
            "{} {}",
            entry.currency,
            offpay_money::Decimal::new(entry.minor.abs(), entry.currency)
        );
        let line = format!(
            " {}",
            words(
                lang,
                id,
                &[
                    ("date", &date),
                    ("counterparty", &counterparty),
                    ("amount", &amount),
                    ("fee", &fee),
                    ("reference", &entry.reference),
                ],
            )
        );
        if septets(&current) + septets(&line) > REPLY_CHARS_MAX {
            replies.push(fit(core::mem::replace(&mut current, head.clone())));
        }
        current.push_str(&line);
    }
    let tail = format!(
        " {}",
        words(lang, sms::STATEMENT_BALANCE, &[("amount", balance_now)])
    );
    if septets(&current) + septets(&tail) > REPLY_CHARS_MAX {
        replies.push(fit(core::mem::replace(&mut current, head)));
    }
    current.push_str(&tail);
    replies.push(fit(current));
    replies
}
