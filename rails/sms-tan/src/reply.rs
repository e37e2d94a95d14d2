//! Reply texts: at most 160 characters, plain ASCII (inside GSM-7), plain words. Replies never
//! carry a secret of a row that is still unused, a pay number, or anything about another account
//! beyond the public receive number the sender typed.

use alloc::format;
use alloc::string::String;

use offpay_money::Amount;

use crate::civil_time::CivilDateTime;
use crate::error::{Field, ParseError, Refusal};
use crate::grammar::{MessageKind, guess_kind};
use crate::limits::{CALLBACK_TIMEOUT_SECONDS, LOCKOUT_FAILURES, REPLY_CHARS_MAX};
use crate::numbers::{AccountNumber, Euin};
use crate::posting::Reference;

/// Cuts a reply to one SMS and keeps it inside GSM-7 by replacing anything not printable ASCII.
/// Every text this module builds fits already; the cut is a last line of defence.
pub fn fit(text: String) -> String {
    let mut out: String = text
        .chars()
        .map(|character| {
            if character.is_ascii_graphic() || character == ' ' {
                character
            } else {
                '?'
            }
        })
        .collect();
    debug_assert!(out.len() <= REPLY_CHARS_MAX, "reply too long: {out}");
    out.truncate(REPLY_CHARS_MAX);
    out
}

/// The reply to a message that could not be read. `text` is the message, used only to pick an
/// example of the right kind.
pub fn malformed(error: &ParseError, text: &str) -> String {
    let kind = guess_kind(text);
    let example = kind
        .map(MessageKind::example)
        .unwrap_or("PAY envelope payee amount row checksum");
    let reply = match error {
        ParseError::Empty => {
            String::from("Empty message. Send HELP to see the messages you can send.")
        }
        ParseError::TooLong => {
            String::from("Message too long. Send one instruction per SMS. Send HELP for the list.")
        }
        ParseError::BadCharacter(character) if character.is_ascii_graphic() => format!(
            "Cannot read the sign {character} in your message. Use letters, digits, spaces, and * between parts."
        ),
        ParseError::BadCharacter(_) => String::from(
            "Your message has a sign we cannot read. Use letters, digits, spaces, and * between parts.",
        ),
        ParseError::UnknownKeyword => String::from(
            "Unknown message. Start with PAY, PAYG, PAYC, OK, REG, BAL, STMT, LIMIT, DIALBACK, HIGH, LATER, PASSWORD, DISPUTE or HELP.",
        ),
        ParseError::Missing(field) => {
            format!(
                "Your message stops before the {}. Example: {example}",
                field.words()
            )
        }
        ParseError::Unreadable(field) => {
            format!("Could not read the {}. Example: {example}", field.words())
        }
        ParseError::TooManyParts => format!("Too many parts in your message. Example: {example}"),
        ParseError::Ambiguous => String::from(
            "Could not tell the parts of your message apart. Put * between the parts, like PAY*envelope*payee*amount*row*checksum",
        ),
        ParseError::BadEuin => format!("Could not read the {}.", Field::Payer.words()),
        ParseError::BadAccountNumber => format!("Could not read the {}.", Field::Payee.words()),
        ParseError::BadTan => format!("Could not read the {}.", Field::Tan.words()),
        ParseError::BadPhoneNumber => String::from("Could not read the phone number."),
        ParseError::BadDateTime => String::from(
            "That date or time does not exist. Example: LATER 2026-12-01 09:00 PAY ...",
        ),
    };
    fit(reply)
}

/// The reply to a refused instruction. `burned_row` is a row that this message used up (so the
/// payer crosses it out); `locked_now` says this failure locked the envelope.
pub fn refused(refusal: &Refusal, burned_row: Option<u8>, locked_now: bool) -> String {
    let mut reply = match refusal {
        Refusal::NotAuthenticated => String::from(
            "Not accepted: the envelope number, row or code is wrong. Nothing was done.",
        ),
        Refusal::RowUsed { row } => format!(
            "Row {row} was used before and cannot be used again. Nothing was done. Use a row you have not crossed out."
        ),
        Refusal::RowOutOfRange { row } => {
            format!("There is no row {row} on your envelope. Nothing was done.")
        }
        Refusal::EnvelopeLocked => String::from(
            "This envelope is locked after too many wrong codes. Visit an agent with your ID to unlock it.",
        ),
        Refusal::EnvelopeNotActive => String::from(
            "This envelope is not in use. Use your current envelope, or register this one with REG.",
        ),
        Refusal::RowsExhausted => String::from(
            "Your envelope has too few rows left. Get a new envelope and send REG coded-new-envelope old-envelope row SUM with your last row.",
        ),
        Refusal::PhoneNotBound => String::from(
            "This account takes instructions only from its registered phones. Nothing was done.",
        ),
        Refusal::PayNumberRequired => String::from(
            "This account pays only with its pay number. Send it instead of the envelope number.",
        ),
        Refusal::LastRowReserved => String::from(
            "That is the last free row of your envelope: it is kept to register your next envelope (REG). Nothing was done; the row is still yours.",
        ),
        Refusal::ContentMismatch => String::from(
            "Not accepted: the SUM does not match this message. If you typed it as written, it was changed on its way. Nothing was changed.",
        ),
        Refusal::CodesDoNotMatch => String::from(
            "Not accepted: the coded payee, amount or codes do not match your envelope row. Nothing was paid.",
        ),
        Refusal::UnknownPayee => {
            String::from("No account receives with that payee number. Check it. Nothing was paid.")
        }
        Refusal::SamePayerAndPayee => {
            String::from("You cannot pay your own account. Nothing was paid.")
        }
        Refusal::ZeroAmount => String::from("The amount must be more than zero. Nothing was paid."),
        Refusal::AmountTooLargeForGrid => String::from(
            "Too large for a coded payment (most 999999999.99). Split it. Nothing was paid.",
        ),
        Refusal::PerPaymentLimit => String::from(
            "Refused: above your limit for one payment. Change it with LIMIT ... EACH. Nothing was paid.",
        ),
        Refusal::DailyLimit => String::from(
            "Refused: above your daily limit. Change it with LIMIT ... DAY. Nothing was paid.",
        ),
        Refusal::WeeklyLimit => String::from(
            "Refused: above your weekly limit. Change it with LIMIT ... WEEK. Nothing was paid.",
        ),
        Refusal::PayeeLimit => String::from(
            "Refused: above your daily limit for this payee. Change it with LIMIT ... TO. Nothing was paid.",
        ),
        Refusal::InsufficientFunds => {
            String::from("Refused: not enough money for the amount and the fee. Nothing was paid.")
        }
        Refusal::CurrencyNotAccepted => String::from(
            "Refused: pay in your account's currency or the payee's. Nothing was paid.",
        ),
        Refusal::SoftCurrencyConversion => String::from(
            "Refused: this account's currency cannot be changed into another. Nothing was paid.",
        ),
        Refusal::NoPendingCallback => {
            String::from("No payment is waiting for that bank row and TAN. Nothing was paid.")
        }
        Refusal::CallbackExpired => format!(
            "Too late: the payment waited {} minutes and was cancelled. Send it again with a new row.",
            CALLBACK_TIMEOUT_SECONDS / 60
        ),
        Refusal::EnvelopeNotRegistrable => String::from(
            "That new envelope cannot be registered: unknown, already in use, or locked.",
        ),
        Refusal::BadScheduleTime => String::from(
            "The payment time must be in the future and within a year. Nothing was scheduled.",
        ),
        Refusal::BadSetting => String::from("That setting is not possible. Nothing was changed."),
        Refusal::AccountNotActive => {
            String::from("This account is closed or frozen. Please contact the operator.")
        }
        Refusal::UnknownReference => {
            String::from("No payment from your account has that reference.")
        }
        Refusal::ConfirmationMismatch => String::from(
            "Your OK does not match the payment the bank read. Nothing was paid. Send the payment again with new rows.",
        ),
        Refusal::CallbackRequired => String::from(
            "This amount needs a callback: pay by SMS with PAYC from your phone. Nothing was paid.",
        ),
    };
    if locked_now {
        reply.push_str(&format!(
            " Envelope now locked after {LOCKOUT_FAILURES} wrong codes; visit an agent."
        ));
    } else if let Some(row) = burned_row
        && !matches!(refusal, Refusal::RowUsed { .. })
    {
        let addition = format!(" Cross out row {row}.");
        if reply.len() + addition.len() <= REPLY_CHARS_MAX {
            reply.push_str(&addition);
        }
    }
    fit(reply)
}

/// The list of messages.
pub fn help() -> String {
    fit(String::from(
        "PAY env payee amount row sum | PAYG/PAYC env row coded-payee amount+add size sum | BAL/STMT env row TAN | REG coded-new env row sum. Guide: your agent",
    ))
}

/// The bank's proof that it sent a reply: a fresh row and its TAN.
pub fn proof(row: u8, tan: &str) -> String {
    format!("BANK ROW {row} TAN {tan}")
}

/// Low-level confirmation in the seed's own form:
/// `PAID 26399912345*901020377865*200000.00*20*338421 REF 12345678 FEE KES 0.00`.
pub fn paid_low(
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
    fit(format!(
        "PAID {euin}*{payee}*{typed_amount}*{bank_row}*{digits} REF {reference} FEE {fee}"
    ))
}

/// Middle/high confirmation: a copy of the instruction plus a fresh row and its TAN.
pub fn paid_grid(instruction: &str, proof_text: &str, reference: Reference) -> String {
    fit(format!("PAID {instruction} {proof_text} REF {reference}"))
}

/// Confirmation when no bank row can be spared (scheduled payment after the envelope ran low).
pub fn paid_plain(payee: &AccountNumber, amount: &Amount, reference: Reference) -> String {
    fit(format!(
        "PAID {amount} to {payee} REF {reference}. No row left for a coded proof: register a new envelope."
    ))
}

/// The callback (protocol v2): the instruction as the bank read it, a fresh row with its TAN, that
/// row's checksum over the payee and amount as decoded (`SUM`, so the payer can check the bank read
/// the payment they meant even if the echo text was rewritten), and what to send: the OK with the
/// payer's next row and that row's checksum over the payee and amount they mean.
pub fn callback(
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
    fit(format!(
        "CHECK {instruction} {} SUM {digits}. OK? Send OK {payer} {bank_row} {bank_tan} ROW SUM",
        proof(bank_row, bank_tan)
    ))
}

/// The payee's coded notice: amount plus TanCol2 and payer number plus TanCol4 of the payee's row.
pub fn received_coded(
    amount_plus_offset: &str,
    payer_plus_offset: &str,
    row: u8,
    tan: &str,
    reference: Reference,
) -> String {
    fit(format!(
        "RECEIVED {amount_plus_offset} FROM {payer_plus_offset} ROW {row} TAN {tan} REF {reference}. Take off the row's add-to-amount and minus."
    ))
}

/// The payee's notice when it has no envelope row to spare.
pub fn received_plain(
    amount: &Amount,
    payer: &AccountNumber,
    reference: Reference,
    rows_out: bool,
) -> String {
    let tail = if rows_out {
        " Get a new envelope and register it for coded notices."
    } else {
        ""
    };
    fit(format!(
        "RECEIVED {amount} FROM {payer} REF {reference}.{tail}"
    ))
}

/// Scheduled payment accepted.
pub fn scheduled(
    due: &CivilDateTime,
    payee: &AccountNumber,
    amount: &Amount,
    reference: Reference,
    proof_text: &str,
) -> String {
    fit(format!(
        "SCHEDULED {amount} to {payee} on {due} REF {reference} {proof_text}"
    ))
}

/// Balance.
pub fn balance(amount: &Amount) -> String {
    fit(format!("BALANCE {amount}"))
}

/// Envelope registered.
pub fn registered(new: &Euin, old: &Euin, proof_text: &str) -> String {
    fit(format!(
        "Envelope {new} is now registered to your account. Envelope {old} is closed. {proof_text}"
    ))
}

/// A setting changed.
pub fn setting_changed(what: &str, proof_text: &str) -> String {
    fit(format!("DONE: {what}. {proof_text}"))
}

/// A dispute filed.
pub fn dispute_filed(reference: Reference, proof_text: &str) -> String {
    fit(format!(
        "Report for payment {reference} received. The operator decides; the payee keeps the money until then. A fee may apply. {proof_text}"
    ))
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
pub fn statement(entries: &[StatementEntry], balance_now: &Amount) -> alloc::vec::Vec<String> {
    let mut replies = alloc::vec::Vec::new();
    let mut current = String::from("STMT");
    for entry in entries.iter().take(crate::limits::STATEMENT_ENTRIES_MAX) {
        let direction = if entry.minor < 0 { "TO" } else { "FROM" };
        let fee = if entry.fee_minor > 0 {
            format!(
                " fee {}",
                offpay_money::Decimal::new(i128::from(entry.fee_minor), entry.currency)
            )
        } else {
            String::new()
        };
        let line = format!(
            " {:04}-{:02}-{:02} {direction} {} {} {}{fee} ref {};",
            entry.date.year,
            entry.date.month,
            entry.date.day,
            entry.counterparty,
            entry.currency,
            offpay_money::Decimal::new(entry.minor.abs(), entry.currency),
            entry.reference
        );
        if current.len() + line.len() > REPLY_CHARS_MAX {
            replies.push(fit(core::mem::replace(&mut current, String::from("STMT"))));
        }
        current.push_str(&line);
    }
    let tail = format!(" BALANCE {balance_now}");
    if current.len() + tail.len() > REPLY_CHARS_MAX {
        replies.push(fit(core::mem::replace(&mut current, String::from("STMT"))));
    }
    current.push_str(&tail);
    replies.push(fit(current));
    replies
}
