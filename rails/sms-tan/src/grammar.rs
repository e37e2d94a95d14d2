//! The SMS grammar: every message a payer sends, read as people type them.
//!
//! A message is a keyword (case-insensitive; a message that starts with digits is a low-security
//! payment, as in the seed) followed by parts. Parts are separated by spaces, or by `*`, `#`, `;`
//! or a new line ("hard" separators that a part never spans). Inside numbers, spaces, commas,
//! dashes and dots may group digits (`263 999 12345`, `9,2,7,9,2,7`, `263-999-12345`); in amounts a
//! dot is the decimal point and only groups of three digits may be split (`200 000.00`,
//! `200,000.00`). When the parts can be read in two different ways the message is refused and the
//! sender asked to put `*` between parts. The full syntax is in `docs/protocols/sms-tan.md`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use offpay_money::{Amount, Currency, MoneyError};
use zeroize::Zeroize;

use crate::civil_time::CivilDateTime;
use crate::error::{Field, ParseError};
use crate::limits::{
    ACCOUNT_NUMBER_DIGITS, CHECKSUM_DIGITS, ENCRYPTED_ACCOUNT_DIGITS, ENCRYPTED_PAYEE_DIGITS,
    EUIN_DIGITS, GRID_CODE_DIGITS, INBOUND_TEXT_BYTES_MAX, PARSE_STEPS_MAX, PASSWORD_CHARS_MAX,
    PASSWORD_CHARS_MIN, PLAIN_PAYEE_DIGITS, REFERENCE_DIGITS, ROWS_MAX, TAN_DIGITS, TOKENS_MAX,
};
use crate::numbers::{AccountNumber, Euin, Tan};
use crate::posting::Reference;

/// Most decimals an amount may be typed with (the money crate's largest exponent).
const AMOUNT_DECIMALS_MAX: usize = offpay_money::EXPONENT_MAX as usize;
/// Most whole digits an amount may be typed with.
const AMOUNT_WHOLE_DIGITS_MAX: usize = 15;
/// Different readings of one message we look for before calling it ambiguous.
const READINGS_MAX: usize = 2;

/// How an instruction is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecurityLevel {
    /// Plain payee and amount, 6-digit row checksum; 2 SMS.
    Low,
    /// Grid-encrypted payee, amount offset by TanCol2, magnitude code, TAN; 3 SMS.
    Middle,
    /// Middle plus the bank's callback and the payer's OK; 5 SMS.
    High,
}

impl SecurityLevel {
    /// The keyword that starts an instruction at this level.
    pub fn keyword(self) -> &'static str {
        match self {
            SecurityLevel::Low => "PAY",
            SecurityLevel::Middle => "PAYG",
            SecurityLevel::High => "PAYC",
        }
    }
}

/// Who pays: the envelope number (11 digits) or the account's secret pay number (12 digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayerRef {
    /// The EUIN printed on the envelope.
    Envelope(Euin),
    /// The secret pay number.
    PayNumber(AccountNumber),
}

impl fmt::Debug for PayerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayerRef::Envelope(euin) => write!(f, "Envelope({euin})"),
            PayerRef::PayNumber(_) => f.write_str("PayNumber(***)"),
        }
    }
}

impl fmt::Display for PayerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayerRef::Envelope(euin) => write!(f, "{euin}"),
            PayerRef::PayNumber(number) => write!(f, "{number}"),
        }
    }
}

/// An amount as typed, before its currency is known.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypedAmount {
    whole: u64,
    fraction: u32,
    decimals: u8,
}

impl TypedAmount {
    /// From whole units and decimals as typed (`fraction` has `decimals` digits).
    pub fn new(whole: u64, fraction: u32, decimals: u8) -> Option<TypedAmount> {
        let fits = usize::from(decimals) <= AMOUNT_DECIMALS_MAX
            && u64::from(fraction) < 10u64.pow(u32::from(decimals))
            && whole < 10u64.pow(AMOUNT_WHOLE_DIGITS_MAX as u32);
        fits.then_some(TypedAmount {
            whole,
            fraction,
            decimals,
        })
    }

    /// The same amount as typed from an [`Amount`] (all its decimals written).
    pub fn from_amount(amount: &Amount) -> TypedAmount {
        let scale = amount.currency().minor_per_major();
        TypedAmount {
            whole: amount.minor() / scale,
            fraction: (amount.minor() % scale) as u32,
            decimals: amount.currency().exponent(),
        }
    }

    /// In `currency`, refusing more decimals than it has.
    pub fn to_amount(&self, currency: Currency) -> Result<Amount, MoneyError> {
        if self.decimals > currency.exponent() {
            return Err(MoneyError::TooManyDecimals {
                allowed: currency.exponent(),
            });
        }
        let scale = currency.minor_per_major();
        let fraction_scale = 10u64.pow(u32::from(currency.exponent() - self.decimals));
        let minor = self
            .whole
            .checked_mul(scale)
            .and_then(|minor| minor.checked_add(u64::from(self.fraction) * fraction_scale))
            .ok_or(MoneyError::TooLarge)?;
        Amount::from_minor(minor, currency)
    }

    /// In hundredths (the unit of TanCol2), if typed with at most two decimals.
    pub fn hundredths(&self) -> Option<u64> {
        if self.decimals > 2 {
            return None;
        }
        let fraction = u64::from(self.fraction) * 10u64.pow(u32::from(2 - self.decimals));
        self.whole.checked_mul(100)?.checked_add(fraction)
    }

    /// From hundredths, written with two decimals.
    pub fn from_hundredths(hundredths: u64) -> Option<TypedAmount> {
        TypedAmount::new(hundredths / 100, (hundredths % 100) as u32, 2)
    }
}

impl fmt::Display for TypedAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.decimals == 0 {
            write!(f, "{}", self.whole)
        } else {
            write!(
                f,
                "{}.{:0width$}",
                self.whole,
                self.fraction,
                width = usize::from(self.decimals)
            )
        }
    }
}

impl fmt::Debug for TypedAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedAmount({self})")
    }
}

/// The 6 digits of a low-security checksum. Secret until used: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Checksum(pub(crate) [u8; CHECKSUM_DIGITS]);

impl Checksum {
    /// From digit values.
    pub fn new(digits: [u8; CHECKSUM_DIGITS]) -> Option<Checksum> {
        digits
            .iter()
            .all(|digit| *digit <= 9)
            .then_some(Checksum(digits))
    }
    /// The digits.
    pub fn digits(&self) -> &[u8; CHECKSUM_DIGITS] {
        &self.0
    }
}

impl Drop for Checksum {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Checksum(***)")
    }
}

/// A payee account with its last 10 digits grid-encrypted: 2 plain digits, then one 3-digit code
/// per encrypted digit. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedPayee {
    /// The leading digits, in clear.
    pub plain: [u8; PLAIN_PAYEE_DIGITS],
    /// Codes for positions 1–10 (the 10 trailing digits, left to right).
    pub codes: [u16; ENCRYPTED_ACCOUNT_DIGITS],
}

impl fmt::Debug for EncryptedPayee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptedPayee(***)")
    }
}

/// A new envelope's number with its last 10 digits grid-coded with the row's grid (REG, protocol
/// v3): the first digit in clear, then one 3-digit code per digit. An interceptor cannot put the
/// number of an envelope he holds in its place without the codes of its digits. Redacted in
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedEuin {
    /// The leading digit, in clear.
    pub plain: u8,
    /// Codes for positions 1–10 (the 10 trailing digits, left to right).
    pub codes: [u16; ENCRYPTED_ACCOUNT_DIGITS],
}

impl fmt::Debug for EncryptedEuin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptedEuin(***)")
    }
}

/// Digits of a grid-coded envelope number.
pub const ENCRYPTED_EUIN_DIGITS: usize =
    EUIN_DIGITS - ENCRYPTED_ACCOUNT_DIGITS + ENCRYPTED_ACCOUNT_DIGITS * GRID_CODE_DIGITS;

/// The part of a payment that differs by level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentBody {
    /// Low level: payee and amount in clear, row, checksum.
    Plain {
        /// The payee's receive number.
        payee: AccountNumber,
        /// The amount.
        amount: TypedAmount,
        /// The row.
        row: u8,
        /// The checksum from the row's recipe.
        checksum: Checksum,
    },
    /// Middle and high level.
    Grid {
        /// The row.
        row: u8,
        /// The grid-encrypted payee.
        payee: EncryptedPayee,
        /// Amount plus TanCol2, in hundredths.
        amount_plus_offset: u64,
        /// The magnitude code.
        magnitude_code: u16,
        /// The row's checksum over the payee and amount (protocol v3: it replaces the TAN, so
        /// the instruction is authenticated over every digit of its amount, not only its size).
        checksum: Checksum,
    },
}

impl PaymentBody {
    /// The row the payer used.
    pub fn row(&self) -> u8 {
        match self {
            PaymentBody::Plain { row, .. } | PaymentBody::Grid { row, .. } => *row,
        }
    }
}

/// A payment instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// Who pays.
    pub payer: PayerRef,
    /// The level asked for (the bank may raise it to High above the dialback threshold).
    pub level: SecurityLevel,
    /// A currency typed with the amount; `None` means the payer's account currency.
    pub currency: Option<Currency>,
    /// The protected fields.
    pub body: PaymentBody,
}

/// A row with the checksum its recipe gives over a payment: the payer's OK to a callback (protocol
/// v2), which binds the OK to the payee and amount the payer means, not only to the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowChecksum {
    /// The row.
    pub row: u8,
    /// Its recipe's checksum over the intended payee and amount.
    pub checksum: Checksum,
}

/// A row with its TAN, authenticating a non-payment message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowTan {
    /// The row.
    pub row: u8,
    /// Its TanCol3.
    pub tan: Tan,
}

/// Which limit a LIMIT message changes; `None` amounts remove the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitChange {
    /// Total per day.
    Daily(Option<TypedAmount>),
    /// Total per week.
    Weekly(Option<TypedAmount>),
    /// Per payment.
    PerPayment(Option<TypedAmount>),
    /// Total per day to one payee.
    Payee(AccountNumber, Option<TypedAmount>),
}

/// A web password sent by SMS. Redacted in `Debug`, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Letters and digits, [`PASSWORD_CHARS_MIN`]..=[`PASSWORD_CHARS_MAX`] long.
    pub fn new(text: &str) -> Option<Password> {
        let valid = (PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&text.len())
            && text.bytes().all(|byte| byte.is_ascii_alphanumeric());
        valid.then(|| Password(String::from(text)))
    }
    /// The password, for the server to hash at once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Every message a payer can send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `PAY`, `PAYG`, `PAYC`, or digits first (seed form).
    Payment(Payment),
    /// `OK payer bankrow banktan row checksum`: confirms a callback. The checksum is the payer's
    /// fresh row's recipe over the payee and amount the payer means (protocol v2), so a gateway
    /// that changed the instruction and rewrote the echo cannot make the OK confirm its change.
    Confirm {
        /// Who pays.
        payer: PayerRef,
        /// The row the bank sent in its callback, with the TAN it sent.
        bank: RowTan,
        /// A fresh row of the payer's with its checksum over the intended payee and amount.
        payer_row: RowChecksum,
    },
    /// `REG coded-new-euin payer row sum`: binds a new envelope with a row of the current one;
    /// the new number is grid-coded and the row's SUM covers it (protocol v3).
    Register {
        /// The new envelope, grid-coded with the row's grid.
        new_envelope: EncryptedEuin,
        /// Who registers.
        payer: PayerRef,
        /// A row of the current envelope and its SUM over the new number.
        auth: RowChecksum,
    },
    /// `BAL payer [row tan]`.
    Balance {
        /// Whose balance.
        payer: PayerRef,
        /// Row and TAN, optional from a bound phone.
        auth: Option<RowTan>,
    },
    /// `STMT payer [row tan]`.
    Statement {
        /// Whose statement.
        payer: PayerRef,
        /// Row and TAN, optional from a bound phone.
        auth: Option<RowTan>,
    },
    /// `LIMIT payer DAY|WEEK|EACH amount|NONE row tan` or `LIMIT payer TO payee amount|NONE row tan`.
    Limit {
        /// Whose limit.
        payer: PayerRef,
        /// What changes.
        change: LimitChange,
        /// Row and its SUM over the message's content (protocol v3).
        auth: RowChecksum,
    },
    /// `DIALBACK payer amount row tan`: callback mandatory from this amount up.
    Dialback {
        /// Whose threshold.
        payer: PayerRef,
        /// The new threshold.
        threshold: TypedAmount,
        /// Row and its SUM over the message's content (protocol v3).
        auth: RowChecksum,
    },
    /// `HIGH payer ON|OFF row tan`: callback for every payment.
    ForceHigh {
        /// Whose setting.
        payer: PayerRef,
        /// On or off.
        on: bool,
        /// Row and its SUM over the message's content (protocol v3).
        auth: RowChecksum,
    },
    /// `LATER date time <payment>`.
    Scheduled {
        /// Local date and time to pay.
        due: CivilDateTime,
        /// The payment.
        payment: Payment,
    },
    /// `PASSWORD payer row tan password`: sets the web login password.
    SetPassword {
        /// Whose password.
        payer: PayerRef,
        /// Row and its SUM over the message's content (protocol v3).
        auth: RowChecksum,
        /// The new password.
        password: Password,
    },
    /// `DISPUTE payer reference row tan`: reports a payment made by mistake.
    Dispute {
        /// Who reports.
        payer: PayerRef,
        /// The payment's reference from its confirmation.
        reference: Reference,
        /// Row and its SUM over the message's content (protocol v3).
        auth: RowChecksum,
    },
    /// `LANG payer EN|SW|FR row sum` (also `LUGHA`, `LANGUE`): the language of the account's
    /// replies, notices, envelope and web pages.
    SetLanguage {
        /// Whose language.
        payer: PayerRef,
        /// The language asked for.
        language: LanguageChoice,
        /// Row and its SUM over the message's content (protocol v3).
        auth: RowChecksum,
    },
    /// `HELP`.
    Help,
}

/// A language a `LANG` message can choose (the operator half maps it to the text catalogue's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LanguageChoice {
    /// English.
    English,
    /// Kiswahili.
    Swahili,
    /// French.
    French,
}

impl LanguageChoice {
    /// The code written in a canonical `LANG` message.
    pub fn code(self) -> &'static str {
        match self {
            LanguageChoice::English => "EN",
            LanguageChoice::Swahili => "SW",
            LanguageChoice::French => "FR",
        }
    }

    /// Reads a code or name as people type them (any case; ASCII: an SMS keyword has no
    /// accents): `EN`, `ENGLISH`, `KIINGEREZA`, `ANGLAIS`, `SW`, `SWAHILI`, `KISWAHILI`, `FR`,
    /// `FRANCAIS`, `FRENCH`, `KIFARANSA`.
    pub fn from_word(word: &str) -> Option<LanguageChoice> {
        let upper = word.to_ascii_uppercase();
        Some(match upper.as_str() {
            "EN" | "ENG" | "ENGLISH" | "KIINGEREZA" | "ANGLAIS" => LanguageChoice::English,
            "SW" | "SWA" | "SWAHILI" | "KISWAHILI" => LanguageChoice::Swahili,
            "FR" | "FRA" | "FRANCAIS" | "FRENCH" | "KIFARANSA" => LanguageChoice::French,
            _ => return None,
        })
    }
}

/// The kind of a message, for logs and redaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// Payment at a level.
    Payment(SecurityLevel),
    /// Callback confirmation.
    Confirm,
    /// Envelope registration.
    Register,
    /// Balance.
    Balance,
    /// Statement.
    Statement,
    /// Limit change.
    Limit,
    /// Dialback threshold change.
    Dialback,
    /// Force high security.
    ForceHigh,
    /// Scheduled payment.
    Scheduled(SecurityLevel),
    /// Web password.
    SetPassword,
    /// Language of the account's texts.
    SetLanguage,
    /// Dispute.
    Dispute,
    /// Help.
    Help,
}

impl MessageKind {
    /// The canonical keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            MessageKind::Payment(level) => level.keyword(),
            MessageKind::Confirm => "OK",
            MessageKind::Register => "REG",
            MessageKind::Balance => "BAL",
            MessageKind::Statement => "STMT",
            MessageKind::Limit => "LIMIT",
            MessageKind::Dialback => "DIALBACK",
            MessageKind::ForceHigh => "HIGH",
            MessageKind::Scheduled(_) => "LATER",
            MessageKind::SetPassword => "PASSWORD",
            MessageKind::SetLanguage => "LANG",
            MessageKind::Dispute => "DISPUTE",
            MessageKind::Help => "HELP",
        }
    }

    /// A short example of the message, for replies to malformed ones.
    pub fn example(self) -> &'static str {
        match self {
            MessageKind::Payment(SecurityLevel::Low) => "PAY 26399912345 901020377865 500 1 927927",
            MessageKind::Payment(SecurityLevel::Middle) => {
                "PAYG envelope row coded-payee amount+col2 size-code SUM"
            }
            MessageKind::Payment(SecurityLevel::High) => {
                "PAYC envelope row coded-payee amount+col2 size-code SUM"
            }
            MessageKind::Confirm => "OK 26399912345 20 857 2 927927",
            MessageKind::Register => "REG coded-new-envelope 26399912345 5 SUM",
            MessageKind::Balance => "BAL 26399912345 3 463",
            MessageKind::Statement => "STMT 26399912345 3 463",
            MessageKind::Limit => "LIMIT 26399912345 DAY 5000 3 SUM",
            MessageKind::Dialback => "DIALBACK 26399912345 10000 3 SUM",
            MessageKind::ForceHigh => "HIGH 26399912345 ON 3 SUM",
            MessageKind::Scheduled(_) => "LATER 2026-12-01 09:00 PAY ...",
            MessageKind::SetPassword => "PASSWORD 26399912345 3 SUM MyPass2026",
            MessageKind::SetLanguage => "LANG 26399912345 SW 3 SUM",
            MessageKind::Dispute => "DISPUTE 26399912345 12345678 3 SUM",
            MessageKind::Help => "HELP",
        }
    }
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Payment(payment) => MessageKind::Payment(payment.level),
            Message::Confirm { .. } => MessageKind::Confirm,
            Message::Register { .. } => MessageKind::Register,
            Message::Balance { .. } => MessageKind::Balance,
            Message::Statement { .. } => MessageKind::Statement,
            Message::Limit { .. } => MessageKind::Limit,
            Message::Dialback { .. } => MessageKind::Dialback,
            Message::ForceHigh { .. } => MessageKind::ForceHigh,
            Message::Scheduled { payment, .. } => MessageKind::Scheduled(payment.level),
            Message::SetPassword { .. } => MessageKind::SetPassword,
            Message::SetLanguage { .. } => MessageKind::SetLanguage,
            Message::Dispute { .. } => MessageKind::Dispute,
            Message::Help => MessageKind::Help,
        }
    }

    /// Who the message is from, if it names a payer (all but HELP).
    pub fn payer(&self) -> Option<PayerRef> {
        match self {
            Message::Payment(payment) | Message::Scheduled { payment, .. } => Some(payment.payer),
            Message::Confirm { payer, .. }
            | Message::Register { payer, .. }
            | Message::Balance { payer, .. }
            | Message::Statement { payer, .. }
            | Message::Limit { payer, .. }
            | Message::Dialback { payer, .. }
            | Message::ForceHigh { payer, .. }
            | Message::SetPassword { payer, .. }
            | Message::SetLanguage { payer, .. }
            | Message::Dispute { payer, .. } => Some(*payer),
            Message::Help => None,
        }
    }

    /// The canonical text of the message (what [`parse`] reads back to the same message).
    pub fn format(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        match self {
            Message::Payment(payment) => write_payment(out, payment),
            Message::Confirm {
                payer,
                bank,
                payer_row,
            } => write!(
                out,
                "OK {payer} {} {} {} {}",
                bank.row,
                bank.tan.reveal(),
                payer_row.row,
                payer_row
                    .checksum
                    .digits()
                    .iter()
                    .map(|digit| char::from(b'0' + digit))
                    .collect::<String>()
            ),
            Message::Register {
                new_envelope,
                payer,
                auth,
            } => {
                write!(out, "REG {}", new_envelope.plain)?;
                for code in new_envelope.codes {
                    write!(out, "{code:03}")?;
                }
                write!(out, " {payer} {}", row_sum(auth))
            }
            Message::Balance { payer, auth } => {
                write!(out, "BAL {payer}")?;
                if let Some(auth) = auth {
                    write!(out, " {}", row_tan(auth))?;
                }
                Ok(())
            }
            Message::Statement { payer, auth } => {
                write!(out, "STMT {payer}")?;
                if let Some(auth) = auth {
                    write!(out, " {}", row_tan(auth))?;
                }
                Ok(())
            }
            Message::Limit {
                payer,
                change,
                auth,
            } => {
                let amount = |amount: &Option<TypedAmount>| match amount {
                    Some(amount) => alloc::format!("{amount}"),
                    None => String::from("NONE"),
                };
                match change {
                    LimitChange::Daily(limit) => {
                        write!(out, "LIMIT {payer} DAY {}", amount(limit))?
                    }
                    LimitChange::Weekly(limit) => {
                        write!(out, "LIMIT {payer} WEEK {}", amount(limit))?
                    }
                    LimitChange::PerPayment(limit) => {
                        write!(out, "LIMIT {payer} EACH {}", amount(limit))?
                    }
                    LimitChange::Payee(payee, limit) => {
                        write!(out, "LIMIT {payer} TO {payee} {}", amount(limit))?
                    }
                }
                write!(out, " {}", row_sum(auth))
            }
            Message::Dialback {
                payer,
                threshold,
                auth,
            } => write!(out, "DIALBACK {payer} {threshold} {}", row_sum(auth)),
            Message::ForceHigh { payer, on, auth } => write!(
                out,
                "HIGH {payer} {} {}",
                if *on { "ON" } else { "OFF" },
                row_sum(auth)
            ),
            Message::Scheduled { due, payment } => {
                write!(
                    out,
                    "LATER {:04}-{:02}-{:02} {:02}:{:02} ",
                    due.year, due.month, due.day, due.hour, due.minute
                )?;
                write_payment(out, payment)
            }
            Message::SetPassword {
                payer,
                auth,
                password,
            } => write!(
                out,
                "PASSWORD {payer} {} {}",
                row_sum(auth),
                password.expose()
            ),
            Message::Dispute {
                payer,
                reference,
                auth,
            } => write!(out, "DISPUTE {payer} {reference} {}", row_sum(auth)),
            Message::SetLanguage {
                payer,
                language,
                auth,
            } => write!(out, "LANG {payer} {} {}", language.code(), row_sum(auth)),
            Message::Help => out.write_str("HELP"),
        }
    }
}

fn row_tan(auth: &RowTan) -> String {
    alloc::format!("{} {}", auth.row, auth.tan.reveal())
}

fn row_sum(auth: &RowChecksum) -> String {
    let digits: String = auth
        .checksum
        .digits()
        .iter()
        .map(|digit| char::from(b'0' + digit))
        .collect();
    alloc::format!("{} {digits}", auth.row)
}

fn write_payment(out: &mut String, payment: &Payment) -> fmt::Result {
    let currency = match payment.currency {
        Some(currency) => alloc::format!(" {currency}"),
        None => String::new(),
    };
    match &payment.body {
        PaymentBody::Plain {
            payee,
            amount,
            row,
            checksum,
        } => {
            write!(
                out,
                "PAY {} {payee} {amount}{currency} {row} ",
                payment.payer
            )?;
            for digit in checksum.digits() {
                write!(out, "{digit}")?;
            }
            Ok(())
        }
        PaymentBody::Grid {
            row,
            payee,
            amount_plus_offset,
            magnitude_code,
            checksum,
        } => {
            write!(out, "{} {} {row} ", payment.level.keyword(), payment.payer)?;
            write_encrypted_payee(out, payee)?;
            let amount = TypedAmount::from_hundredths(*amount_plus_offset)
                .map(|amount| alloc::format!("{amount}"))
                .unwrap_or_default();
            write!(out, " {amount}{currency} {magnitude_code:03} ")?;
            for digit in checksum.digits() {
                write!(out, "{digit}")?;
            }
            Ok(())
        }
    }
}

/// Writes `90447589…`: the plain digits, then each 3-digit code, as one part (people may type
/// spaces between the codes; the canonical form has none so that it stays one part).
pub fn write_encrypted_payee(out: &mut String, payee: &EncryptedPayee) -> fmt::Result {
    for digit in payee.plain {
        write!(out, "{digit}")?;
    }
    for code in payee.codes {
        write!(out, "{code:03}")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Break {
    Start,
    Soft,
    Comma,
    Hard,
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    text: &'a str,
    before: Break,
}

fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let mut tokens = Vec::new();
    let mut pending = Break::Start;
    let mut start: Option<usize> = None;
    fn push<'a>(
        tokens: &mut Vec<Token<'a>>,
        piece: &'a str,
        before: Break,
    ) -> Result<(), ParseError> {
        if tokens.len() == TOKENS_MAX {
            return Err(ParseError::TooLong);
        }
        tokens.push(Token {
            text: piece,
            before,
        });
        Ok(())
    }
    for (index, character) in text.char_indices() {
        let separator = match character {
            '*' | '#' | ';' | '\n' | '\r' => Some(Break::Hard),
            ',' => Some(Break::Comma),
            ' ' | '\t' | '_' | '=' => Some(Break::Soft),
            character if character.is_ascii_alphanumeric() => None,
            '.' | '-' | '+' | ':' | '/' => None,
            '\u{a0}' => Some(Break::Soft),
            other => return Err(ParseError::BadCharacter(other)),
        };
        match separator {
            Some(kind) => {
                if let Some(begin) = start.take() {
                    let before = pending;
                    push(&mut tokens, &text[begin..index], before)?;
                    pending = Break::Soft;
                }
                // The strongest separator between two tokens decides.
                pending = stronger(pending, kind);
            }
            None => {
                if start.is_none() {
                    start = Some(index);
                }
            }
        }
    }
    if let Some(begin) = start {
        push(&mut tokens, &text[begin..], pending)?;
    }
    if let Some(first) = tokens.first_mut() {
        first.before = Break::Start;
    }
    Ok(tokens)
}

fn stronger(current: Break, new: Break) -> Break {
    let rank = |kind| match kind {
        Break::Start => 0,
        Break::Soft => 1,
        Break::Comma => 2,
        Break::Hard => 3,
    };
    if current == Break::Start {
        return current;
    }
    if rank(new) > rank(current) {
        new
    } else {
        current
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Payer,
    EncryptedEuin,
    Account,
    EncryptedPayee,
    Amount,
    EncryptedAmount,
    Currency,
    Row,
    Tan,
    Checksum,
    MagnitudeCode,
    Reference,
    LimitWord,
    AmountOrNone,
    Switch,
    Password,
    Language,
}

impl Kind {
    fn field(self) -> Field {
        match self {
            Kind::Payer => Field::Payer,
            Kind::EncryptedEuin => Field::NewEnvelope,
            Kind::Account => Field::Payee,
            Kind::EncryptedPayee => Field::EncryptedPayee,
            Kind::Amount | Kind::AmountOrNone => Field::Amount,
            Kind::EncryptedAmount => Field::EncryptedAmount,
            Kind::Currency => Field::Currency,
            Kind::Row => Field::Row,
            Kind::Tan => Field::Tan,
            Kind::Checksum => Field::Checksum,
            Kind::MagnitudeCode => Field::MagnitudeCode,
            Kind::Reference => Field::Reference,
            Kind::LimitWord => Field::LimitKind,
            Kind::Switch => Field::Switch,
            Kind::Password => Field::Password,
            Kind::Language => Field::Language,
        }
    }
}

#[derive(Clone, Copy)]
struct Spec {
    kind: Kind,
    optional: bool,
}

const fn required(kind: Kind) -> Spec {
    Spec {
        kind,
        optional: false,
    }
}
const fn optional(kind: Kind) -> Spec {
    Spec {
        kind,
        optional: true,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Absent,
    Digits(Vec<u8>),
    Amount(TypedAmount),
    Currency(Currency),
    Word(&'static str),
    Text(String),
}

impl Drop for Value {
    fn drop(&mut self) {
        match self {
            Value::Digits(digits) => digits.zeroize(),
            Value::Text(text) => text.zeroize(),
            _ => {}
        }
    }
}

enum Accept {
    Yes(Value),
    /// Not yet: more tokens might complete it.
    NeedMore,
    No,
}

fn digit_field(tokens: &[Token<'_>], length: core::ops::RangeInclusive<usize>) -> Accept {
    let mut digits = Vec::with_capacity(*length.end());
    for token in tokens {
        for byte in token.text.bytes() {
            match byte {
                b'0'..=b'9' => digits.push(byte - b'0'),
                b'-' | b'.' => {}
                _ => return Accept::No,
            }
        }
        if digits.len() > *length.end() {
            return Accept::No;
        }
    }
    if digits.len() < *length.start() {
        return Accept::NeedMore;
    }
    Accept::Yes(Value::Digits(digits))
}

/// Reads an amount from one or more tokens: `1500`, `1500.50`, `200 000.00`, `200,000.00`.
fn amount_field(tokens: &[Token<'_>]) -> Accept {
    let Some((first, rest)) = tokens.split_first() else {
        return Accept::No;
    };
    let mut whole = String::new();
    let mut fraction: Option<&str> = None;
    fn read_piece<'a>(piece: &'a str, whole: &mut String, fraction: &mut Option<&'a str>) -> bool {
        let (integer, decimals) = match piece.split_once('.') {
            Some((integer, decimals)) => (integer, Some(decimals)),
            None => (piece, None),
        };
        if integer.is_empty() || !integer.bytes().all(|byte| byte.is_ascii_digit()) {
            return false;
        }
        whole.push_str(integer);
        if let Some(decimals) = decimals {
            if decimals.is_empty()
                || decimals.len() > AMOUNT_DECIMALS_MAX
                || !decimals.bytes().all(|byte| byte.is_ascii_digit())
            {
                return false;
            }
            *fraction = Some(decimals);
        }
        true
    }
    if !read_piece(first.text, &mut whole, &mut fraction) {
        return Accept::No;
    }
    if !rest.is_empty() {
        // Grouped thousands: the first group is 1-3 digits, each later group exactly 3.
        if fraction.is_some() || whole.len() > 3 {
            return Accept::No;
        }
        for token in rest {
            if fraction.is_some() {
                return Accept::No;
            }
            let integer_part = token.text.split('.').next().unwrap_or("");
            if integer_part.len() != 3 {
                return Accept::No;
            }
            if !read_piece(token.text, &mut whole, &mut fraction) {
                return Accept::No;
            }
        }
    }
    if whole.len() > AMOUNT_WHOLE_DIGITS_MAX {
        return Accept::No;
    }
    let Ok(whole_value) = whole.parse::<u64>() else {
        return Accept::No;
    };
    let (fraction_value, decimals) = match fraction {
        Some(decimals) => match decimals.parse::<u32>() {
            Ok(value) => (value, decimals.len() as u8),
            Err(_) => return Accept::No,
        },
        None => (0, 0),
    };
    match TypedAmount::new(whole_value, fraction_value, decimals) {
        Some(amount) => Accept::Yes(Value::Amount(amount)),
        None => Accept::No,
    }
}

fn accept(kind: Kind, tokens: &[Token<'_>]) -> Accept {
    let single = tokens.len() == 1;
    let upper = |token: &Token<'_>| token.text.to_ascii_uppercase();
    match kind {
        Kind::Payer => digit_field(tokens, EUIN_DIGITS..=ACCOUNT_NUMBER_DIGITS)
            .filter_exact(&[EUIN_DIGITS, ACCOUNT_NUMBER_DIGITS]),
        Kind::EncryptedEuin => digit_field(tokens, ENCRYPTED_EUIN_DIGITS..=ENCRYPTED_EUIN_DIGITS),
        Kind::Account => digit_field(tokens, ACCOUNT_NUMBER_DIGITS..=ACCOUNT_NUMBER_DIGITS),
        Kind::EncryptedPayee => {
            digit_field(tokens, ENCRYPTED_PAYEE_DIGITS..=ENCRYPTED_PAYEE_DIGITS)
        }
        Kind::Tan => digit_field(tokens, TAN_DIGITS..=TAN_DIGITS),
        Kind::MagnitudeCode => digit_field(tokens, GRID_CODE_DIGITS..=GRID_CODE_DIGITS),
        Kind::Checksum => digit_field(tokens, CHECKSUM_DIGITS..=CHECKSUM_DIGITS),
        Kind::Reference => digit_field(tokens, REFERENCE_DIGITS..=REFERENCE_DIGITS),
        Kind::Row => {
            if !single {
                return Accept::No;
            }
            let text = tokens[0].text;
            if text.is_empty() || text.len() > 2 || !text.bytes().all(|byte| byte.is_ascii_digit())
            {
                return Accept::No;
            }
            match text.parse::<u8>() {
                Ok(row) if (1..=ROWS_MAX as u8).contains(&row) => {
                    Accept::Yes(Value::Digits(alloc::vec![row]))
                }
                _ => Accept::No,
            }
        }
        Kind::Amount | Kind::EncryptedAmount => amount_field(tokens),
        Kind::AmountOrNone => {
            if single && matches!(upper(&tokens[0]).as_str(), "NONE" | "OFF" | "NO") {
                return Accept::Yes(Value::Word("NONE"));
            }
            amount_field(tokens)
        }
        Kind::Currency => {
            if !single || tokens[0].text.len() != 3 {
                return Accept::No;
            }
            match Currency::from_code(tokens[0].text) {
                Ok(currency) => Accept::Yes(Value::Currency(currency)),
                Err(_) => Accept::No,
            }
        }
        Kind::LimitWord => {
            if !single {
                return Accept::No;
            }
            let word = match upper(&tokens[0]).as_str() {
                "DAY" | "DAILY" => "DAY",
                "WEEK" | "WEEKLY" => "WEEK",
                "EACH" | "TX" | "PAYMENT" | "ONE" => "EACH",
                "TO" | "PAYEE" => "TO",
                _ => return Accept::No,
            };
            Accept::Yes(Value::Word(word))
        }
        Kind::Switch => {
            if !single {
                return Accept::No;
            }
            match upper(&tokens[0]).as_str() {
                "ON" | "YES" => Accept::Yes(Value::Word("ON")),
                "OFF" | "NO" => Accept::Yes(Value::Word("OFF")),
                _ => Accept::No,
            }
        }
        Kind::Language => {
            if !single {
                return Accept::No;
            }
            match LanguageChoice::from_word(tokens[0].text) {
                Some(language) => Accept::Yes(Value::Word(language.code())),
                None => Accept::No,
            }
        }
        Kind::Password => {
            if !single {
                return Accept::No;
            }
            match Password::new(tokens[0].text) {
                Some(_) => Accept::Yes(Value::Text(String::from(tokens[0].text))),
                None => Accept::No,
            }
        }
    }
}

trait FilterExact {
    fn filter_exact(self, lengths: &[usize]) -> Accept;
}

impl FilterExact for Accept {
    /// A variable-length digit field accepts only the listed lengths; shorter ones may grow.
    fn filter_exact(self, lengths: &[usize]) -> Accept {
        match self {
            Accept::Yes(value) => match &value {
                Value::Digits(digits) if lengths.contains(&digits.len()) => Accept::Yes(value),
                _ => Accept::NeedMore,
            },
            other => other,
        }
    }
}

/// Where reading got furthest, to say what was wrong.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    furthest_field: usize,
    problem: Option<Problem>,
}

#[derive(Clone, Copy, Debug)]
enum Problem {
    Missing(Field),
    Unreadable(Field),
    TooManyParts,
}

struct Matcher<'t, 'a> {
    tokens: &'t [Token<'a>],
    spec: &'t [Spec],
    steps: u32,
    readings: Vec<Vec<Value>>,
    current: Vec<Value>,
    progress: Progress,
    exhausted: bool,
}

impl Matcher<'_, '_> {
    fn note(&mut self, field: usize, problem: Problem) {
        if field >= self.progress.furthest_field || self.progress.problem.is_none() {
            self.progress.furthest_field = field;
            self.progress.problem = Some(problem);
        }
    }

    fn run(&mut self, field: usize, position: usize) {
        if self.readings.len() >= READINGS_MAX || self.exhausted {
            return;
        }
        self.steps += 1;
        if self.steps > PARSE_STEPS_MAX {
            self.exhausted = true;
            return;
        }
        if field == self.spec.len() {
            if position == self.tokens.len() {
                if !self.readings.contains(&self.current) {
                    self.readings.push(self.current.clone());
                }
            } else {
                self.note(field, Problem::TooManyParts);
            }
            return;
        }
        let spec = self.spec[field];
        if position == self.tokens.len() {
            if spec.optional {
                self.current.push(Value::Absent);
                self.run(field + 1, position);
                self.current.pop();
            } else {
                self.note(field, Problem::Missing(spec.kind.field()));
            }
            return;
        }
        let mut any = false;
        for end in position + 1..=self.tokens.len() {
            if end > position + 1 && self.tokens[end - 1].before == Break::Hard {
                break;
            }
            match accept(spec.kind, &self.tokens[position..end]) {
                Accept::Yes(value) => {
                    any = true;
                    self.current.push(value);
                    self.run(field + 1, end);
                    self.current.pop();
                }
                Accept::NeedMore => {}
                Accept::No => break,
            }
        }
        if spec.optional {
            self.current.push(Value::Absent);
            self.run(field + 1, position);
            self.current.pop();
        }
        if !any && !spec.optional {
            self.note(field, Problem::Unreadable(spec.kind.field()));
        }
    }
}

fn match_spec(tokens: &[Token<'_>], spec: &[Spec]) -> Result<Vec<Value>, ParseError> {
    let mut matcher = Matcher {
        tokens,
        spec,
        steps: 0,
        readings: Vec::new(),
        current: Vec::with_capacity(spec.len()),
        progress: Progress::default(),
        exhausted: false,
    };
    matcher.run(0, 0);
    if matcher.readings.len() > 1 || matcher.exhausted {
        return Err(ParseError::Ambiguous);
    }
    if let Some(reading) = matcher.readings.pop() {
        return Ok(reading);
    }
    Err(match matcher.progress.problem {
        Some(Problem::Missing(field)) => ParseError::Missing(field),
        Some(Problem::Unreadable(field)) => ParseError::Unreadable(field),
        Some(Problem::TooManyParts) | None => ParseError::TooManyParts,
    })
}

/// Tries several layouts of one message; exactly one may match. Errors come from the longest
/// layout, which names the most parts.
fn match_any(tokens: &[Token<'_>], specs: &[&[Spec]]) -> Result<(usize, Vec<Value>), ParseError> {
    let mut found: Option<(usize, Vec<Value>)> = None;
    let mut longest_error = None;
    for (index, spec) in specs.iter().enumerate() {
        match match_spec(tokens, spec) {
            Ok(values) => {
                if found.is_some() {
                    return Err(ParseError::Ambiguous);
                }
                found = Some((index, values));
            }
            Err(ParseError::Ambiguous) => return Err(ParseError::Ambiguous),
            Err(error) => longest_error = Some(error),
        }
    }
    match (found, longest_error) {
        (Some(found), _) => Ok(found),
        (None, Some(error)) => Err(error),
        (None, None) => Err(ParseError::TooManyParts),
    }
}

fn keyword_kind(word: &str) -> Option<MessageKind> {
    let upper = word.to_ascii_uppercase();
    Some(match upper.as_str() {
        "PAY" | "P" | "PAYL" => MessageKind::Payment(SecurityLevel::Low),
        "PAYG" | "PG" | "GRID" => MessageKind::Payment(SecurityLevel::Middle),
        "PAYC" | "PC" | "CALLBACK" => MessageKind::Payment(SecurityLevel::High),
        "OK" | "YES" | "CONFIRM" => MessageKind::Confirm,
        "REG" | "REGISTER" | "NEW" => MessageKind::Register,
        "BAL" | "BALANCE" => MessageKind::Balance,
        "STMT" | "STATEMENT" | "MINI" => MessageKind::Statement,
        "LIMIT" | "LIM" => MessageKind::Limit,
        "DIALBACK" | "THRESHOLD" => MessageKind::Dialback,
        "HIGH" | "SECURE" => MessageKind::ForceHigh,
        "LATER" | "SCHEDULE" | "SCHED" => MessageKind::Scheduled(SecurityLevel::Low),
        "PASSWORD" | "PASS" | "PW" => MessageKind::SetPassword,
        "LANG" | "LANGUAGE" | "LUGHA" | "LANGUE" => MessageKind::SetLanguage,
        "DISPUTE" | "MISTAKE" => MessageKind::Dispute,
        "HELP" | "?" => MessageKind::Help,
        _ => return None,
    })
}

/// Reads one SMS text. Never panics; every error has a plain-words reply
/// ([`crate::reply::malformed`]).
pub fn parse(text: &str) -> Result<Message, ParseError> {
    if text.len() > INBOUND_TEXT_BYTES_MAX {
        return Err(ParseError::TooLong);
    }
    let tokens = tokenize(text)?;
    let Some(first) = tokens.first() else {
        return Err(ParseError::Empty);
    };
    if first.text.as_bytes()[0].is_ascii_digit() {
        // The seed's form: no keyword, a low-security payment.
        return parse_payment(&tokens, SecurityLevel::Low);
    }
    // A keyword may be glued to the digits that follow ("PAY26399912345").
    let split = first
        .text
        .find(|character: char| !character.is_ascii_alphabetic())
        .unwrap_or(first.text.len());
    let (word, glued) = first.text.split_at(split);
    let kind = keyword_kind(word).ok_or(ParseError::UnknownKeyword)?;
    let mut rest: Vec<Token<'_>> = Vec::with_capacity(tokens.len());
    if !glued.is_empty() {
        rest.push(Token {
            text: glued,
            before: Break::Start,
        });
    }
    rest.extend_from_slice(&tokens[1..]);
    if let Some(first) = rest.first_mut() {
        first.before = Break::Start;
    }
    parse_after_keyword(kind, &rest)
}

fn parse_after_keyword(kind: MessageKind, tokens: &[Token<'_>]) -> Result<Message, ParseError> {
    match kind {
        MessageKind::Payment(level) => parse_payment(tokens, level),
        MessageKind::Scheduled(_) => parse_scheduled(tokens),
        MessageKind::Help => {
            if tokens.is_empty() {
                Ok(Message::Help)
            } else {
                Err(ParseError::TooManyParts)
            }
        }
        MessageKind::Confirm => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Row),
                    required(Kind::Tan),
                    required(Kind::Row),
                    required(Kind::Checksum),
                ],
            )?;
            Ok(Message::Confirm {
                payer: payer_ref(&values[0])?,
                bank: RowTan {
                    row: row(&values[1]),
                    tan: tan(&values[2])?,
                },
                payer_row: RowChecksum {
                    row: row(&values[3]),
                    checksum: Checksum(digits_array(&values[4], Field::Checksum)?),
                },
            })
        }
        MessageKind::Register => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::EncryptedEuin),
                    required(Kind::Payer),
                    required(Kind::Row),
                    required(Kind::Checksum),
                ],
            )?;
            let digits: [u8; ENCRYPTED_EUIN_DIGITS] = digits_array(&values[0], Field::NewEnvelope)?;
            let codes: [u16; ENCRYPTED_ACCOUNT_DIGITS] = core::array::from_fn(|index| {
                let start = 1 + index * GRID_CODE_DIGITS;
                digits[start..start + GRID_CODE_DIGITS]
                    .iter()
                    .fold(0u16, |value, digit| value * 10 + u16::from(*digit))
            });
            Ok(Message::Register {
                new_envelope: EncryptedEuin {
                    plain: digits[0],
                    codes,
                },
                payer: payer_ref(&values[1])?,
                auth: row_sum_of(&values[2], &values[3])?,
            })
        }
        MessageKind::Balance | MessageKind::Statement => {
            let (layout, values) = match_any(
                tokens,
                &[
                    &[required(Kind::Payer)],
                    &[
                        required(Kind::Payer),
                        required(Kind::Row),
                        required(Kind::Tan),
                    ],
                ],
            )?;
            let payer = payer_ref(&values[0])?;
            let auth = if layout == 0 {
                None
            } else {
                Some(row_tan_of(&values[1], &values[2])?)
            };
            Ok(if kind == MessageKind::Balance {
                Message::Balance { payer, auth }
            } else {
                Message::Statement { payer, auth }
            })
        }
        MessageKind::Limit => {
            let (layout, mut values) = match_any(
                tokens,
                &[
                    &[
                        required(Kind::Payer),
                        required(Kind::LimitWord),
                        required(Kind::AmountOrNone),
                        optional(Kind::Currency),
                        required(Kind::Row),
                        required(Kind::Checksum),
                    ],
                    &[
                        required(Kind::Payer),
                        required(Kind::LimitWord),
                        required(Kind::Account),
                        required(Kind::AmountOrNone),
                        optional(Kind::Currency),
                        required(Kind::Row),
                        required(Kind::Checksum),
                    ],
                ],
            )?;
            if layout == 0 {
                values.insert(2, Value::Absent);
            }
            let amount = match &values[3] {
                Value::Amount(amount) => Some(*amount),
                _ => None,
            };
            let change = match (&values[1], &values[2]) {
                (Value::Word("TO"), Value::Digits(_)) => {
                    LimitChange::Payee(AccountNumber::parse(&digits_text(&values[2]))?, amount)
                }
                (Value::Word("TO"), _) => return Err(ParseError::Missing(Field::Payee)),
                (_, Value::Digits(_)) => return Err(ParseError::Unreadable(Field::LimitKind)),
                (Value::Word("DAY"), _) => LimitChange::Daily(amount),
                (Value::Word("WEEK"), _) => LimitChange::Weekly(amount),
                _ => LimitChange::PerPayment(amount),
            };
            Ok(Message::Limit {
                payer: payer_ref(&values[0])?,
                change,
                auth: row_sum_of(&values[5], &values[6])?,
            })
        }
        MessageKind::Dialback => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Amount),
                    optional(Kind::Currency),
                    required(Kind::Row),
                    required(Kind::Checksum),
                ],
            )?;
            let Value::Amount(threshold) = values[1] else {
                return Err(ParseError::Unreadable(Field::Amount));
            };
            Ok(Message::Dialback {
                payer: payer_ref(&values[0])?,
                threshold,
                auth: row_sum_of(&values[3], &values[4])?,
            })
        }
        MessageKind::ForceHigh => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Switch),
                    required(Kind::Row),
                    required(Kind::Checksum),
                ],
            )?;
            Ok(Message::ForceHigh {
                payer: payer_ref(&values[0])?,
                on: values[1] == Value::Word("ON"),
                auth: row_sum_of(&values[2], &values[3])?,
            })
        }
        MessageKind::SetPassword => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Row),
                    required(Kind::Checksum),
                    required(Kind::Password),
                ],
            )?;
            let Value::Text(text) = &values[3] else {
                return Err(ParseError::Unreadable(Field::Password));
            };
            Ok(Message::SetPassword {
                payer: payer_ref(&values[0])?,
                auth: row_sum_of(&values[1], &values[2])?,
                password: Password::new(text).ok_or(ParseError::Unreadable(Field::Password))?,
            })
        }
        MessageKind::SetLanguage => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Language),
                    required(Kind::Row),
                    required(Kind::Checksum),
                ],
            )?;
            let Value::Word(code) = &values[1] else {
                return Err(ParseError::Unreadable(Field::Language));
            };
            Ok(Message::SetLanguage {
                payer: payer_ref(&values[0])?,
                language: LanguageChoice::from_word(code)
                    .ok_or(ParseError::Unreadable(Field::Language))?,
                auth: row_sum_of(&values[2], &values[3])?,
            })
        }
        MessageKind::Dispute => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Reference),
                    required(Kind::Row),
                    required(Kind::Checksum),
                ],
            )?;
            Ok(Message::Dispute {
                payer: payer_ref(&values[0])?,
                reference: Reference::parse(&digits_text(&values[1]))
                    .ok_or(ParseError::Unreadable(Field::Reference))?,
                auth: row_sum_of(&values[2], &values[3])?,
            })
        }
    }
}

fn parse_scheduled(tokens: &[Token<'_>]) -> Result<Message, ParseError> {
    let date = tokens.first().ok_or(ParseError::Missing(Field::Date))?;
    let time = tokens.get(1).ok_or(ParseError::Missing(Field::Time))?;
    let (year, month, day) =
        CivilDateTime::parse_date(date.text).map_err(|_| ParseError::Unreadable(Field::Date))?;
    let (hour, minute) =
        CivilDateTime::parse_time(time.text).map_err(|_| ParseError::Unreadable(Field::Time))?;
    let due = CivilDateTime::new(year, month, day, hour, minute).ok_or(ParseError::BadDateTime)?;
    let keyword = tokens
        .get(2)
        .ok_or(ParseError::Missing(Field::ScheduledPayment))?;
    let level = match keyword_kind(keyword.text) {
        Some(MessageKind::Payment(level)) => level,
        _ => return Err(ParseError::Unreadable(Field::ScheduledPayment)),
    };
    let mut rest: Vec<Token<'_>> = tokens[3..].to_vec();
    if let Some(first) = rest.first_mut() {
        first.before = Break::Start;
    }
    match parse_payment(&rest, level)? {
        Message::Payment(payment) => Ok(Message::Scheduled { due, payment }),
        _ => Err(ParseError::Unreadable(Field::ScheduledPayment)),
    }
}

fn parse_payment(tokens: &[Token<'_>], level: SecurityLevel) -> Result<Message, ParseError> {
    let (payment, currency_before, currency_after) = match level {
        SecurityLevel::Low => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Account),
                    optional(Kind::Currency),
                    required(Kind::Amount),
                    optional(Kind::Currency),
                    required(Kind::Row),
                    required(Kind::Checksum),
                ],
            )?;
            let Value::Amount(amount) = values[3] else {
                return Err(ParseError::Unreadable(Field::Amount));
            };
            let checksum: [u8; CHECKSUM_DIGITS] = digits_array(&values[6], Field::Checksum)?;
            let body = PaymentBody::Plain {
                payee: AccountNumber::parse(&digits_text(&values[1]))?,
                amount,
                row: row(&values[5]),
                checksum: Checksum(checksum),
            };
            (
                (payer_ref(&values[0])?, body),
                values[2].clone(),
                values[4].clone(),
            )
        }
        SecurityLevel::Middle | SecurityLevel::High => {
            let values = match_spec(
                tokens,
                &[
                    required(Kind::Payer),
                    required(Kind::Row),
                    required(Kind::EncryptedPayee),
                    optional(Kind::Currency),
                    required(Kind::EncryptedAmount),
                    optional(Kind::Currency),
                    required(Kind::MagnitudeCode),
                    required(Kind::Checksum),
                ],
            )?;
            let Value::Amount(encrypted) = values[4] else {
                return Err(ParseError::Unreadable(Field::EncryptedAmount));
            };
            let amount_plus_offset = encrypted
                .hundredths()
                .ok_or(ParseError::Unreadable(Field::EncryptedAmount))?;
            let payee_digits: [u8; ENCRYPTED_PAYEE_DIGITS] =
                digits_array(&values[2], Field::EncryptedPayee)?;
            let mut plain = [0u8; PLAIN_PAYEE_DIGITS];
            plain.copy_from_slice(&payee_digits[..PLAIN_PAYEE_DIGITS]);
            let codes: [u16; ENCRYPTED_ACCOUNT_DIGITS] = core::array::from_fn(|index| {
                let start = PLAIN_PAYEE_DIGITS + index * GRID_CODE_DIGITS;
                payee_digits[start..start + GRID_CODE_DIGITS]
                    .iter()
                    .fold(0u16, |value, digit| value * 10 + u16::from(*digit))
            });
            let magnitude: [u8; GRID_CODE_DIGITS] = digits_array(&values[6], Field::MagnitudeCode)?;
            let body = PaymentBody::Grid {
                row: row(&values[1]),
                payee: EncryptedPayee { plain, codes },
                amount_plus_offset,
                magnitude_code: magnitude
                    .iter()
                    .fold(0u16, |value, digit| value * 10 + u16::from(*digit)),
                checksum: Checksum(digits_array(&values[7], Field::Checksum)?),
            };
            (
                (payer_ref(&values[0])?, body),
                values[3].clone(),
                values[5].clone(),
            )
        }
    };
    let currency = match (currency_before, currency_after) {
        (Value::Currency(_), Value::Currency(_)) => {
            return Err(ParseError::Unreadable(Field::Currency));
        }
        (Value::Currency(currency), _) | (_, Value::Currency(currency)) => Some(currency),
        _ => None,
    };
    let (payer, body) = payment;
    Ok(Message::Payment(Payment {
        payer,
        level,
        currency,
        body,
    }))
}

fn digits_text(value: &Value) -> String {
    match value {
        Value::Digits(digits) => digits
            .iter()
            .map(|digit| char::from(b'0' + digit))
            .collect(),
        _ => String::new(),
    }
}

fn digits_array<const N: usize>(value: &Value, field: Field) -> Result<[u8; N], ParseError> {
    match value {
        Value::Digits(digits) if digits.len() == N => {
            let mut out = [0u8; N];
            out.copy_from_slice(digits);
            Ok(out)
        }
        _ => Err(ParseError::Unreadable(field)),
    }
}

fn payer_ref(value: &Value) -> Result<PayerRef, ParseError> {
    let text = digits_text(value);
    match text.len() {
        EUIN_DIGITS => Ok(PayerRef::Envelope(Euin::parse(&text)?)),
        ACCOUNT_NUMBER_DIGITS => Ok(PayerRef::PayNumber(AccountNumber::parse(&text)?)),
        _ => Err(ParseError::Unreadable(Field::Payer)),
    }
}

fn row(value: &Value) -> u8 {
    match value {
        Value::Digits(digits) if digits.len() == 1 => digits[0],
        // The matcher only produces single-value digits for rows.
        _ => 0,
    }
}

fn tan(value: &Value) -> Result<Tan, ParseError> {
    Tan::parse(&digits_text(value))
}

fn row_sum_of(row_value: &Value, sum_value: &Value) -> Result<RowChecksum, ParseError> {
    Ok(RowChecksum {
        row: row(row_value),
        checksum: Checksum(digits_array(sum_value, Field::Checksum)?),
    })
}

fn row_tan_of(row_value: &Value, tan_value: &Value) -> Result<RowTan, ParseError> {
    Ok(RowTan {
        row: row(row_value),
        tan: tan(tan_value)?,
    })
}

/// The kind a text seems to be, from its first word, even when the rest cannot be read (to pick
/// an example for the reply, and for redacted logs).
pub fn guess_kind(text: &str) -> Option<MessageKind> {
    let trimmed = text.trim_start_matches(|character: char| !character.is_ascii_alphanumeric());
    let first = trimmed.bytes().next()?;
    if first.is_ascii_digit() {
        return Some(MessageKind::Payment(SecurityLevel::Low));
    }
    let word: String = trimmed
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .take(16)
        .collect();
    keyword_kind(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_sms_reads_as_a_low_payment() {
        let message = parse("263 999 12345 * 901020377865 * 200000.00* 1 * 9 2 7 9 2 7").unwrap();
        let Message::Payment(payment) = &message else {
            panic!("not a payment: {message:?}")
        };
        assert_eq!(payment.level, SecurityLevel::Low);
        assert_eq!(
            payment.payer,
            PayerRef::Envelope(Euin::parse("26399912345").unwrap())
        );
        let PaymentBody::Plain {
            payee,
            amount,
            row,
            checksum,
        } = &payment.body
        else {
            panic!("not plain")
        };
        assert_eq!(payee.to_string(), "901020377865");
        assert_eq!(amount.to_string(), "200000.00");
        assert_eq!(*row, 1);
        assert_eq!(checksum.digits(), &[9, 2, 7, 9, 2, 7]);
        assert_eq!(
            message.format(),
            "PAY 26399912345 901020377865 200000.00 1 927927"
        );
    }

    #[test]
    fn people_type_in_many_ways() {
        let canonical = parse("PAY 26399912345 901020377865 200000.00 1 927927").unwrap();
        for variant in [
            "pay 26399912345 901020377865 200000.00 1 927927",
            "  Pay   263 999 12345   9010 2037 7865  200,000.00 1 9-2-7-9-2-7 ",
            "PAY*26399912345*901020377865*200 000.00*1*927927",
            "PAY26399912345 901020377865 200000.00 1 9,2,7,9,2,7",
            "PAY 263-999-12345 9010.2037.7865 200000.00 1 927 927",
            "PAY; 26399912345; 901020377865; 200000.00; 1; 927927",
        ] {
            assert_eq!(parse(variant).as_ref(), Ok(&canonical), "{variant}");
        }
    }

    #[test]
    fn currency_may_stand_before_or_after_the_amount() {
        let Message::Payment(before) =
            parse("PAY 26399912345 901020377865 USD 50 1 927927").unwrap()
        else {
            panic!()
        };
        let Message::Payment(after) =
            parse("PAY 26399912345 901020377865 50 usd 1 927927").unwrap()
        else {
            panic!()
        };
        assert_eq!(before.currency, Some(Currency::USD));
        assert_eq!(before, after);
        assert_eq!(
            parse("PAY 26399912345 901020377865 USD 50 USD 1 927927"),
            Err(ParseError::Unreadable(Field::Currency))
        );
    }

    #[test]
    fn errors_name_the_part_that_was_wrong() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("   "), Err(ParseError::Empty));
        assert_eq!(parse("HELLO 123"), Err(ParseError::UnknownKeyword));
        assert_eq!(
            parse("PAY 26399912345 901020377865 200000.00 1"),
            Err(ParseError::Missing(Field::Checksum))
        );
        assert_eq!(
            parse("PAY 26399912345 90102037786 200000.00 1 927927"),
            Err(ParseError::Unreadable(Field::Payee))
        );
        assert_eq!(
            parse("PAY 26399912345 901020377865 200000.00 77 927927"),
            Err(ParseError::Unreadable(Field::Row))
        );
        assert_eq!(
            parse("PAY 26399912345 901020377865 200000.00 1 927927 5"),
            Err(ParseError::TooManyParts)
        );
        assert_eq!(parse("PAY 2639€"), Err(ParseError::BadCharacter('€')));
        assert_eq!(parse(&"1 ".repeat(300)), Err(ParseError::TooLong));
    }

    #[test]
    fn middle_payments_read_the_grid_fields() {
        let text = "PAYG 26399912345 1 90 447 881 725 108 921 179 447 881 725 108 789187532813.23 874 123456";
        let Message::Payment(payment) = parse(text).unwrap() else {
            panic!()
        };
        assert_eq!(payment.level, SecurityLevel::Middle);
        let PaymentBody::Grid {
            row,
            payee,
            amount_plus_offset,
            magnitude_code,
            checksum,
        } = &payment.body
        else {
            panic!()
        };
        assert_eq!(*row, 1);
        assert_eq!(payee.plain, [9, 0]);
        assert_eq!(payee.codes[0], 447);
        assert_eq!(*amount_plus_offset, 78_918_753_281_323);
        assert_eq!(*magnitude_code, 874);
        assert_eq!(checksum.digits(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            parse(&Message::Payment(payment.clone()).format()),
            Ok(Message::Payment(payment))
        );
    }

    #[test]
    fn ambiguous_readings_are_refused() {
        // Without separators the 12-digit pay number could end at either token boundary.
        // The message layouts are built so that fixed lengths decide; the matcher still refuses
        // any layout that reads two ways, shown here on a deliberately ambiguous one.
        let tokens = tokenize("123").unwrap();
        let layout = [optional(Kind::Tan), optional(Kind::MagnitudeCode)];
        assert_eq!(match_spec(&tokens, &layout), Err(ParseError::Ambiguous));
        // Eleven digits then a row, or twelve digits: the lengths of the TAN decide.
        assert!(matches!(
            parse("BAL 1234567890 1 2 345"),
            Ok(Message::Balance {
                payer: PayerRef::Envelope(_),
                auth: Some(_)
            })
        ));
        assert!(parse("BAL 123456789012 2 123").is_ok());
    }

    #[test]
    fn other_messages_read() {
        assert!(matches!(
            parse("ok 26399912345 20 857 2 927927"),
            Ok(Message::Confirm { .. })
        ));
        assert!(matches!(
            parse("REG 2 123 456 789 012 345 678 901 234 567 890 26399912345 5 922922"),
            Ok(Message::Register { .. })
        ));
        assert!(matches!(
            parse("bal 26399912345"),
            Ok(Message::Balance { auth: None, .. })
        ));
        assert!(matches!(
            parse("STMT 26399912345 3 463"),
            Ok(Message::Statement { auth: Some(_), .. })
        ));
        assert!(matches!(
            parse("LIMIT 26399912345 TO 901020377865 NONE 3 463463"),
            Ok(Message::Limit {
                change: LimitChange::Payee(_, None),
                ..
            })
        ));
        assert!(matches!(
            parse("limit 26399912345 day 5,000 3 463463"),
            Ok(Message::Limit {
                change: LimitChange::Daily(Some(_)),
                ..
            })
        ));
        assert_eq!(
            parse("LIMIT 26399912345 TO 5000 3 463463"),
            Err(ParseError::Missing(Field::Payee))
        );
        assert!(matches!(
            parse("DIALBACK 26399912345 10000 3 463463"),
            Ok(Message::Dialback { .. })
        ));
        assert!(matches!(
            parse("HIGH 26399912345 on 3 463463"),
            Ok(Message::ForceHigh { on: true, .. })
        ));
        assert!(matches!(
            parse("LATER 2026-12-01 09:00 PAY 26399912345 901020377865 200000.00 1 927927"),
            Ok(Message::Scheduled { .. })
        ));
        assert!(matches!(
            parse("PASSWORD 26399912345 3 463463 MyPass2026"),
            Ok(Message::SetPassword { .. })
        ));
        assert!(matches!(
            parse("DISPUTE 26399912345 1234 5678 3 463463"),
            Ok(Message::Dispute { .. })
        ));
        assert_eq!(parse("help"), Ok(Message::Help));
        for (text, language) in [
            ("LANG 26399912345 SW 3 463463", LanguageChoice::Swahili),
            (
                "lugha 26399912345 kiswahili 3 463463",
                LanguageChoice::Swahili,
            ),
            (
                "LANGUE*26399912345*francais*3*463463",
                LanguageChoice::French,
            ),
            ("LANGUAGE 26399912345 EN 3 463463", LanguageChoice::English),
        ] {
            let message = parse(text).unwrap();
            assert!(
                matches!(message, Message::SetLanguage { language: read, .. } if read == language),
                "{text}: {message:?}"
            );
            assert_eq!(parse(&message.format()), Ok(message.clone()), "{text}");
        }
        assert_eq!(
            parse("LANG 26399912345 DE 3 463463"),
            Err(ParseError::Unreadable(Field::Language))
        );
    }
}
