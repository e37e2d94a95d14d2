//! Rail 2 of offpay: SMS payments authenticated by printed TAN/PIN envelopes (SPS, seed 002).
//! Pure logic only; the server does the I/O (gateway, database, ledger, scheduler) around it.
//!
//! The device half (`no_std` + `alloc`, always built): envelopes, the SMS grammar and how a payer
//! writes a message from an envelope ([`compose`]). The operator half (feature `operator`, std):
//! the verification engine (`engine`: `Engine::receive` parses the text and asks, step by step,
//! for what it must load; the final `Outcome` lists effects, postings and replies), replies, the
//! envelope PDF, and in `operator` every rule of the operator's server — record layouts and keys,
//! load plans, spending windows, the decisions that turn an outcome into ledger effects, settings,
//! envelopes, terminals, disputes, web login and the outbox's retry policy. The protocol is
//! specified in `docs/protocols/sms-tan.md`.
// The operator half runs on a server: with it the crate is built with std.
#![cfg_attr(not(any(test, feature = "operator")), no_std)]
#![cfg_attr(not(test), forbid(clippy::unwrap_used))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

// The device half: what a payer's envelope holds and how a message is written and read.
pub mod civil_time;
pub mod compose;
pub mod content;
pub mod envelope;
pub mod error;
pub mod grammar;
pub mod import;
pub mod keys;
pub mod numbers;
pub mod posting;
pub mod recipe;
pub mod reverts;

// The operator half: verifying messages and everything the operator keeps and decides. Devices
// never carry it (the `no_std` builds leave the feature off).
#[cfg(feature = "operator")]
pub mod account;
#[cfg(feature = "operator")]
pub mod engine;
#[cfg(feature = "operator")]
pub mod operator;
#[cfg(feature = "operator")]
pub mod pdf;
#[cfg(feature = "operator")]
pub mod redact;
#[cfg(feature = "operator")]
pub mod reply;
#[cfg(feature = "operator")]
pub mod seal;
#[cfg(feature = "operator")]
pub mod secrets;

#[cfg(feature = "operator")]
pub use account::{
    AccountView, CurrencyClass, ExchangeRate, FeeSchedule, Limits, PayeeLimit, Spending,
};
pub use compose::{grid_text, low_text};
#[cfg(feature = "operator")]
pub use engine::{
    Effect, Engine, EngineConfig, Inbound, Next, OutboundSms, Outcome, PayeeContext, PayerContext,
    PendingCallback, ScheduledPayment, TerminalPayment, Verdict,
};
pub use envelope::{Envelope, EnvelopeStatus, EnvelopeView, Grid, Row, RowCount, RowSet};
pub use error::{Error, ImportError, Misuse, ParseError, Refusal, SealError};
pub use grammar::{Checksum, Message, PayerRef, RowChecksum, SecurityLevel, parse};
pub use keys::{BindingTag, MasterKey, SealedEnvelope};
pub use numbers::{AccountNumber, Euin, PhoneNumber, Tan};
#[cfg(feature = "operator")]
pub use pdf::{PdfOptions, render_envelopes_pdf, render_envelopes_pdf_in};
pub use posting::{LedgerAccount, Posting, PostingKind, Reference, TransferId};
pub use recipe::{Recipe, Term};
#[cfg(feature = "operator")]
pub use redact::redact_sms;
#[cfg(feature = "operator")]
pub use secrets::EnvelopeSecrets;

/// Every bound of the protocol, named once. Compile-time assertions below tie them together.
pub mod limits {
    /// Digits of an envelope unique identification number (EUIN), as in the seed's SMS example.
    pub const EUIN_DIGITS: usize = 11;
    /// Digits of an account number (receive number and pay number alike), as in the seed.
    pub const ACCOUNT_NUMBER_DIGITS: usize = 12;
    /// Trailing digits of the payee account that a middle/high instruction grid-encrypts.
    pub const ENCRYPTED_ACCOUNT_DIGITS: usize = 10;
    /// Leading payee digits that stay in clear in a middle/high instruction.
    pub const PLAIN_PAYEE_DIGITS: usize = ACCOUNT_NUMBER_DIGITS - ENCRYPTED_ACCOUNT_DIGITS;
    /// Digits of one grid cell or magnitude code.
    pub const GRID_CODE_DIGITS: usize = 3;
    /// Largest grid code plus one (codes are 000..=999).
    pub const GRID_CODE_RANGE: u16 = 1000;
    /// Digits of the grid-encrypted payee field in a middle/high instruction.
    pub const ENCRYPTED_PAYEE_DIGITS: usize =
        PLAIN_PAYEE_DIGITS + ENCRYPTED_ACCOUNT_DIGITS * GRID_CODE_DIGITS;
    /// Number of encryption grids on an envelope.
    pub const GRIDS_PER_ENVELOPE: usize = 4;
    /// Grid columns (positions of the encrypted account digits).
    pub const GRID_POSITIONS: usize = ENCRYPTED_ACCOUNT_DIGITS;
    /// Magnitude classes: amounts with 1 to 9 digits before the point (0–9.99 up to 999 million).
    pub const MAGNITUDE_CLASSES: usize = 9;
    /// Digits of a TAN (TanCol3).
    pub const TAN_DIGITS: usize = 3;
    /// Digits of a low-security checksum.
    pub const CHECKSUM_DIGITS: usize = 6;
    /// TanCol2 is printed with this many digits before the point…
    pub const AMOUNT_OFFSET_WHOLE_DIGITS: u32 = 12;
    /// …and this many after: offsets and encrypted amounts are counted in hundredths.
    pub const AMOUNT_OFFSET_DECIMALS: u32 = 2;
    /// Exclusive upper bound of TanCol2, in hundredths.
    pub const AMOUNT_OFFSET_RANGE: u64 =
        10u64.pow(AMOUNT_OFFSET_WHOLE_DIGITS + AMOUNT_OFFSET_DECIMALS);
    /// Digits of TanCol4, the number the payee subtracts from a shown account number.
    pub const ACCOUNT_OFFSET_DIGITS: u32 = 6;
    /// Exclusive upper bound of TanCol4.
    pub const ACCOUNT_OFFSET_RANGE: u32 = 10u32.pow(ACCOUNT_OFFSET_DIGITS);
    /// The largest number of rows an envelope has.
    pub const ROWS_MAX: usize = 50;
    /// Unused rows the bank never takes for its own replies, so the holder can always register the
    /// next envelope with a row of this one.
    pub const ROWS_RESERVED_FOR_REGISTRATION: usize = 1;
    /// Wrong codes in a row (consecutive failures) after which an envelope locks.
    pub const LOCKOUT_FAILURES: u8 = 5;
    /// A payment checksum that agrees with the row's recipe in at least this many of its six
    /// positions, but not all, is a payment changed on its way (or a slip of the holder), not a
    /// guess: refused as changed and not counted towards the lockout. A blind guess agrees so
    /// closely with probability 1.27·10^-3 (docs/protocols/sms-tan.md §6.2).
    pub const CHANGED_IN_TRANSIT_MATCHES_MIN: usize = 4;
    /// How long the bank waits for the payer's OK to a callback, in seconds.
    pub const CALLBACK_TIMEOUT_SECONDS: u64 = 15 * 60;
    /// Longest inbound SMS text we read, in bytes (three concatenated SMS).
    pub const INBOUND_TEXT_BYTES_MAX: usize = 480;
    /// Most tokens (space/separator-delimited pieces) in one inbound SMS.
    pub const TOKENS_MAX: usize = 64;
    /// Field-matching steps the parser may take before giving up on a message.
    pub const PARSE_STEPS_MAX: u32 = 20_000;
    /// Longest reply text in characters: one GSM-7 SMS.
    pub const REPLY_CHARS_MAX: usize = 160;
    /// Shortest web password accepted by SMS.
    pub const PASSWORD_CHARS_MIN: usize = 8;
    /// Longest web password accepted by SMS.
    pub const PASSWORD_CHARS_MAX: usize = 32;
    /// Statement entries sent by SMS (one reply each line group).
    pub const STATEMENT_ENTRIES_MAX: usize = 5;
    /// How far ahead a payment may be scheduled, in days.
    pub const SCHEDULE_AHEAD_DAYS_MAX: u64 = 366;
    /// Per-payee limits an account may hold.
    pub const PAYEE_LIMITS_MAX: usize = 32;
    /// Phones an account may bind.
    pub const BOUND_PHONES_MAX: usize = 4;
    /// Digits of a payment reference shown in replies and typed in a dispute.
    pub const REFERENCE_DIGITS: usize = 8;
    /// Envelopes one PDF may hold (about 8 KiB per envelope); print larger runs in batches.
    pub const PDF_ENVELOPES_MAX: usize = 10_000;
    /// Largest amount a grid (middle/high) instruction can carry, in hundredths: 999,999,999.99.
    pub const GRID_AMOUNT_MAX_HUNDREDTHS: u64 = 10u64.pow(MAGNITUDE_CLASSES as u32 + 2) - 1;

    const _: () = assert!(ROWS_MAX <= 64, "RowSet is a u64 bit set");
    const _: () = assert!(GRID_POSITIONS == ENCRYPTED_ACCOUNT_DIGITS);
    const _: () = assert!(ENCRYPTED_ACCOUNT_DIGITS <= ACCOUNT_NUMBER_DIGITS);
    const _: () = assert!(
        EUIN_DIGITS != ACCOUNT_NUMBER_DIGITS,
        "payer field length tells them apart"
    );
    const _: () = assert!(GRID_CODE_RANGE as usize >= 10);
    const _: () = assert!(ROWS_RESERVED_FOR_REGISTRATION >= 1);
    const _: () = assert!(
        CHANGED_IN_TRANSIT_MATCHES_MIN > CHECKSUM_DIGITS / 2
            && CHANGED_IN_TRANSIT_MATCHES_MIN < CHECKSUM_DIGITS
    );
    const _: () = assert!(GRID_AMOUNT_MAX_HUNDREDTHS < AMOUNT_OFFSET_RANGE);
    const _: () = assert!(AMOUNT_OFFSET_RANGE.checked_mul(2).is_some());
}
