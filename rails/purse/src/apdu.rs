//! The purse's command interface, shaped like ISO 7816-4 APDUs so the same logic can later sit in
//! a Java Card applet: the phone UI sends a command (CLA INS P1 P2 Lc data), the purse answers
//! with data and a status word. [`dispatch`] is the card side; [`PurseCard`] is a typed client the
//! UI (the CLI, a phone app) uses over any [`Transport`].
//!
//! | INS  | command            | data in                                   | data out                      |
//! |------|--------------------|-------------------------------------------|-------------------------------|
//! | 0x10 | REQUEST            | payer(7) amount(8)                        | code1(4) nonce_b(2)           |
//! | 0x12 | CHECK REQUEST      | payee(7) amount(8) code1(4)               | —                             |
//! | 0x14 | PAY                | payee(7) amount(8) code1(4) pin(1+n)      | code2(4) entry                |
//! | 0x16 | ACCEPT (P1=1: N_B) | code2(4) [nonce_b(2)]                     | entry                         |
//! | 0x18 | CANCEL REQUEST     | nonce_b(2)                                | —                             |
//! | 0x1A | SHOW CODE          | —                                         | payee(7) amount(8) code2(4) counter(4) |
//! | 0x20 | CHANGE PIN         | old(1+n) new(1+n)                         | —                             |
//! | 0x22 | ASK PAIRWISE KEY   | peer(7)                                   | —                             |
//! | 0x24 | ENTER TICKET       | peer(7) digits(48)                        | —                             |
//! | 0x30 | START SYNC         | —                                         | upload                        |
//! | 0x32 | APPLY ANSWER       | answer                                    | acked(4) credits(1) epoch(4) flags(1) |
//! | 0x40 | STATUS             | —                                         | see [`PurseStatus`]           |
//! | 0x42 | READ LOG (P1=0 unacknowledged, 1 recent) | —                   | count(2) entries              |
//! | 0x44 | READ PENDING       | —                                         | count(1) requests             |
//!
//! Status words: 9000 done; 63Cx wrong PIN, x tries left; 6983 PIN blocked; 6982 a code, ticket or
//! MAC did not verify; 6985 refused by the purse's rules; 6A80 malformed data; 6A84 log full; 6A88
//! no such request / nothing to show; 6700 wrong length; 6D00 unknown INS; 6E00 unknown CLA;
//! 6581 storage failure. Error responses carry a detail record (see [`encode_error`]) so the UI
//! can say exactly what went wrong; a card may send the status word alone.
//!
//! Time: the card side takes `now` from the handset (a SIM applet asks the phone for the time);
//! this interface passes it alongside each command.

use alloc::vec::Vec;

use offpay_money::{Amount, Currency, MoneyError};

use crate::error::{Limit, PurseError, StorageProblem};
use crate::params::{PIN_DIGITS_MAX, TICKET_CODE_DIGITS};
use crate::pin_reset::ResetCode;
use crate::purse::{Command, LastPayment, LogEntry, OfflineLimits, Outcome, PendingRequest, Purse};
use crate::ticket::TicketCode;
use crate::types::{Code, OperatorId, Phone, Pin, PurseId, RandomSource, Timestamp};
use crate::wire::{Reader, Writer};

/// The proprietary class byte of every purse command.
pub const CLA_PURSE: u8 = 0x80;

/// Instruction bytes.
#[allow(missing_docs)]
pub mod ins {
    pub const REQUEST: u8 = 0x10;
    pub const CHECK_REQUEST: u8 = 0x12;
    pub const PAY: u8 = 0x14;
    pub const ACCEPT: u8 = 0x16;
    pub const CANCEL_REQUEST: u8 = 0x18;
    pub const SHOW_CODE: u8 = 0x1A;
    pub const CHANGE_PIN: u8 = 0x20;
    pub const ASK_PAIRWISE_KEY: u8 = 0x22;
    pub const ENTER_TICKET: u8 = 0x24;
    pub const START_SYNC: u8 = 0x30;
    pub const APPLY_ANSWER: u8 = 0x32;
    /// Statement request: answers purse id(8) ‖ counter(4) ‖ code(4).
    pub const STATEMENT_REQUEST: u8 = 0x34;
    pub const STATUS: u8 = 0x40;
    pub const READ_LOG: u8 = 0x42;
    pub const READ_PENDING: u8 = 0x44;
    /// The ticket codes this purse holds for peers to type in (peer(7) ‖ 48 ASCII digits each).
    pub const READ_TICKETS: u8 = 0x46;
    /// PIN reset in place: reset code(8, a number below 10^12) ‖ new PIN.
    pub const RESET_PIN: u8 = 0x26;
    /// Personalisation of a blank SIM applet (once): provisioning record ‖ PIN.
    pub const PERSONALIZE: u8 = 0x50;
}

/// Status words.
#[allow(missing_docs)]
pub mod sw {
    pub const OK: u16 = 0x9000;
    pub const WRONG_PIN_BASE: u16 = 0x63C0;
    pub const PIN_BLOCKED: u16 = 0x6983;
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const NOT_ENOUGH_MEMORY: u16 = 0x6A84;
    pub const NOT_FOUND: u16 = 0x6A88;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    pub const MEMORY_FAILURE: u16 = 0x6581;
}

/// Longest command data (extended length).
pub const COMMAND_DATA_MAX: usize = u16::MAX as usize;

/// A command APDU.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CommandApdu {
    /// Class.
    pub cla: u8,
    /// Instruction.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Data (Lc bytes).
    pub data: Vec<u8>,
}

impl CommandApdu {
    /// A purse command.
    pub fn new(ins: u8, p1: u8, data: Vec<u8>) -> CommandApdu {
        CommandApdu {
            cla: CLA_PURSE,
            ins,
            p1,
            p2: 0,
            data,
        }
    }

    /// CLA INS P1 P2, then nothing (no data), Lc(1) data (1..=255 bytes), or 00 Lc(2) data
    /// (extended length).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 7);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if self.data.is_empty() {
        } else if self.data.len() <= 255 {
            out.push(self.data.len() as u8);
            out.extend_from_slice(&self.data);
        } else {
            out.push(0);
            out.extend_from_slice(&(self.data.len().min(COMMAND_DATA_MAX) as u16).to_be_bytes());
            out.extend_from_slice(&self.data[..self.data.len().min(COMMAND_DATA_MAX)]);
        }
        out
    }

    /// Reads [`CommandApdu::encode`]'s form; the length must match exactly.
    pub fn decode(bytes: &[u8]) -> Result<CommandApdu, u16> {
        if bytes.len() < 4 {
            return Err(sw::WRONG_LENGTH);
        }
        let (header, rest) = bytes.split_at(4);
        let data = match rest {
            [] => Vec::new(),
            [0, high, low, data @ ..] => {
                if usize::from(u16::from_be_bytes([*high, *low])) != data.len() || data.len() <= 255
                {
                    return Err(sw::WRONG_LENGTH);
                }
                data.to_vec()
            }
            [length, data @ ..] => {
                if usize::from(*length) != data.len() || *length == 0 {
                    return Err(sw::WRONG_LENGTH);
                }
                data.to_vec()
            }
        };
        Ok(CommandApdu {
            cla: header[0],
            ins: header[1],
            p1: header[2],
            p2: header[3],
            data,
        })
    }
}

/// A response APDU: data then SW1 SW2.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResponseApdu {
    /// Response data.
    pub data: Vec<u8>,
    /// Status word.
    pub status: u16,
}

impl ResponseApdu {
    /// Data ‖ SW1 SW2.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.extend_from_slice(&self.status.to_be_bytes());
        out
    }

    /// Splits data and status word.
    pub fn decode(bytes: &[u8]) -> Result<ResponseApdu, PurseError> {
        if bytes.len() < 2 {
            return Err(PurseError::Malformed("response shorter than a status word"));
        }
        let (data, status) = bytes.split_at(bytes.len() - 2);
        Ok(ResponseApdu {
            data: data.to_vec(),
            status: u16::from_be_bytes([status[0], status[1]]),
        })
    }

    fn ok(data: Vec<u8>) -> ResponseApdu {
        ResponseApdu {
            data,
            status: sw::OK,
        }
    }

    fn error(status: u16, error: Option<&PurseError>) -> ResponseApdu {
        ResponseApdu {
            data: error.map(encode_error).unwrap_or_default(),
            status,
        }
    }
}

/// The status word for an error.
pub fn status_word(error: &PurseError) -> u16 {
    use PurseError::*;
    match error {
        WrongPin { tries_left } => sw::WRONG_PIN_BASE | u16::from(*tries_left & 0x0F),
        PinBlocked | PinResetBlocked => sw::PIN_BLOCKED,
        RequestCodeMismatch
        | ResponseCodeMismatch { .. }
        | TicketMismatch
        | WrongResetCode { .. }
        | AuthenticationFailed
        | FailureBudgetExhausted
        | PayerFailureBudgetExhausted(_) => sw::SECURITY_NOT_SATISFIED,
        LogFull => sw::NOT_ENOUGH_MEMORY,
        NoPendingRequest | UnknownRequest | NothingToShow => sw::NOT_FOUND,
        UnsupportedInstruction(_) => sw::INS_NOT_SUPPORTED,
        Storage(_) => sw::MEMORY_FAILURE,
        error if error.cause() == crate::Cause::Refused => sw::CONDITIONS_NOT_SATISFIED,
        _ => sw::WRONG_DATA,
    }
}

/// A short binary record of an error, so that the UI can show the exact message. Errors about
/// amounts keep their cause; anything unknown to an older client decodes as `Malformed`.
pub fn encode_error(error: &PurseError) -> Vec<u8> {
    use PurseError::*;
    let mut w = Writer::new();
    match error {
        CodeLength { expected, found } => {
            w.u8(1);
            w.u16(*expected as u16);
            w.u16((*found).min(usize::from(u16::MAX)) as u16);
        }
        CodeCharacter {
            position,
            character,
        } => {
            w.u8(2);
            w.u16((*position).min(usize::from(u16::MAX)) as u16);
            w.u32(u32::from(*character));
        }
        PhoneNumber => w.u8(3),
        PinFormat => w.u8(4),
        Amount(money) => {
            w.u8(5);
            w.u8(match money {
                MoneyError::TooLarge => 1,
                MoneyError::Negative => 2,
                _ => 0,
            });
        }
        CurrencyMismatch { purse, given } => {
            w.u8(6);
            w.currency(*purse);
            w.currency(*given);
        }
        ZeroAmount => w.u8(7),
        SelfPayment => w.u8(8),
        RequestCodeMismatch => w.u8(9),
        ResponseCodeMismatch {
            request_tries_left,
            period_tries_left,
        } => {
            w.u8(10);
            w.u8(*request_tries_left);
            w.u16(*period_tries_left);
        }
        FailureBudgetExhausted => w.u8(11),
        PayerFailureBudgetExhausted(phone) => {
            w.u8(38);
            w.phone(*phone);
        }
        WrongPin { tries_left } => {
            w.u8(12);
            w.u8(*tries_left);
        }
        PinBlocked => w.u8(13),
        TicketMismatch => w.u8(14),
        WrongResetCode { tries_left } => {
            w.u8(39);
            w.u8(*tries_left);
        }
        PinResetBlocked => w.u8(40),
        InsufficientBalance { balance, amount } => {
            w.u8(15);
            w.currency(balance.currency());
            w.minor(*balance);
            w.minor(*amount);
        }
        LimitExceeded { limit, maximum } => {
            w.u8(16);
            w.u8(match limit {
                Limit::MaxBalance => 1,
                Limit::MaxSinglePayment => 2,
                Limit::MaxSpentSinceSync => 3,
                Limit::ReceivedFromOnePayer => 4,
            });
            w.currency(maximum.currency());
            w.minor(*maximum);
        }
        ValidityExpired => w.u8(17),
        LogFull => w.u8(18),
        PurseBlocked => w.u8(19),
        CounterpartyBlocked(phone) => {
            w.u8(20);
            w.phone(*phone);
        }
        PairwiseKeyRequired(phone) => {
            w.u8(21);
            w.phone(*phone);
        }
        NoSchemeKey => w.u8(22),
        NoPendingRequest => w.u8(23),
        AmbiguousPendingRequest { pending } => {
            w.u8(24);
            w.u8((*pending).min(255) as u8);
        }
        UnknownRequest => w.u8(25),
        AlreadyAccepted => w.u8(26),
        NothingToShow => w.u8(27),
        TooManyPairwiseRequests => w.u8(28),
        NonceSpaceExhausted => w.u8(29),
        UnsupportedVersion { found } => {
            w.u8(30);
            w.u8(*found);
        }
        AuthenticationFailed => w.u8(31),
        StaleAnswer => w.u8(32),
        WrongPurse { expected, found } => {
            w.u8(33);
            w.u64(expected.0);
            w.u64(found.0);
        }
        WrongOperator { expected, found } => {
            w.u8(34);
            w.short_bytes(expected.as_bytes());
            w.short_bytes(found.as_bytes());
        }
        UnsupportedInstruction(ins) => {
            w.u8(35);
            w.u8(*ins);
        }
        Storage(problem) => {
            w.u8(36);
            w.u8(match problem {
                StorageProblem::NotFound => 1,
                StorageProblem::AlreadyExists => 2,
                StorageProblem::Io => 3,
                StorageProblem::Tampered => 4,
            });
        }
        SyncReplayed {
            sequence,
            last_accepted,
        } => {
            w.u8(37);
            w.u32(*sequence);
            w.u32(*last_accepted);
        }
        Malformed(_)
        | UnknownPurse(_)
        | UnknownPhone(_)
        | PhoneTaken(_)
        | AboveClassLimit { .. }
        | RotationTooSoon { .. } => w.u8(0),
    }
    w.finish()
}

/// Inverse of [`encode_error`]; `status` is used when the record is missing or unknown.
pub fn decode_error(bytes: &[u8], status: u16) -> PurseError {
    let fallback = || match status {
        sw::PIN_BLOCKED => PurseError::PinBlocked,
        sw::NOT_ENOUGH_MEMORY => PurseError::LogFull,
        sw::NOT_FOUND => PurseError::NoPendingRequest,
        sw::MEMORY_FAILURE => PurseError::Storage(StorageProblem::Io),
        sw::INS_NOT_SUPPORTED => PurseError::UnsupportedInstruction(0),
        status if status & 0xFFF0 == sw::WRONG_PIN_BASE => PurseError::WrongPin {
            tries_left: (status & 0x0F) as u8,
        },
        _ => PurseError::Malformed("the purse refused the command"),
    };
    decode_error_record(bytes).unwrap_or_else(|_| fallback())
}

fn decode_error_record(bytes: &[u8]) -> Result<PurseError, PurseError> {
    use PurseError::*;
    let mut r = Reader::new(bytes);
    let read_amount = |r: &mut Reader<'_>, currency: Currency| r.amount(currency);
    let error = match r.u8()? {
        1 => CodeLength {
            expected: usize::from(r.u16()?),
            found: usize::from(r.u16()?),
        },
        2 => CodeCharacter {
            position: usize::from(r.u16()?),
            character: char::from_u32(r.u32()?).unwrap_or('?'),
        },
        3 => PhoneNumber,
        4 => PinFormat,
        5 => Amount(match r.u8()? {
            1 => MoneyError::TooLarge,
            2 => MoneyError::Negative,
            _ => MoneyError::Empty,
        }),
        6 => CurrencyMismatch {
            purse: r.currency()?,
            given: r.currency()?,
        },
        7 => ZeroAmount,
        8 => SelfPayment,
        9 => RequestCodeMismatch,
        10 => ResponseCodeMismatch {
            request_tries_left: r.u8()?,
            period_tries_left: r.u16()?,
        },
        11 => FailureBudgetExhausted,
        38 => PayerFailureBudgetExhausted(r.phone()?),
        12 => WrongPin {
            tries_left: r.u8()?,
        },
        13 => PinBlocked,
        14 => TicketMismatch,
        39 => WrongResetCode {
            tries_left: r.u8()?,
        },
        40 => PinResetBlocked,
        15 => {
            let currency = r.currency()?;
            InsufficientBalance {
                balance: read_amount(&mut r, currency)?,
                amount: read_amount(&mut r, currency)?,
            }
        }
        16 => {
            let limit = match r.u8()? {
                1 => Limit::MaxBalance,
                2 => Limit::MaxSinglePayment,
                4 => Limit::ReceivedFromOnePayer,
                _ => Limit::MaxSpentSinceSync,
            };
            let currency = r.currency()?;
            LimitExceeded {
                limit,
                maximum: read_amount(&mut r, currency)?,
            }
        }
        17 => ValidityExpired,
        18 => LogFull,
        19 => PurseBlocked,
        20 => CounterpartyBlocked(r.phone()?),
        21 => PairwiseKeyRequired(r.phone()?),
        22 => NoSchemeKey,
        23 => NoPendingRequest,
        24 => AmbiguousPendingRequest {
            pending: usize::from(r.u8()?),
        },
        25 => UnknownRequest,
        26 => AlreadyAccepted,
        27 => NothingToShow,
        28 => TooManyPairwiseRequests,
        29 => NonceSpaceExhausted,
        30 => UnsupportedVersion { found: r.u8()? },
        31 => AuthenticationFailed,
        32 => StaleAnswer,
        33 => WrongPurse {
            expected: PurseId(r.u64()?),
            found: PurseId(r.u64()?),
        },
        34 => {
            let expected = operator_id(r.short_bytes()?)?;
            let found = operator_id(r.short_bytes()?)?;
            WrongOperator { expected, found }
        }
        35 => UnsupportedInstruction(r.u8()?),
        36 => Storage(match r.u8()? {
            1 => StorageProblem::NotFound,
            2 => StorageProblem::AlreadyExists,
            4 => StorageProblem::Tampered,
            _ => StorageProblem::Io,
        }),
        37 => SyncReplayed {
            sequence: r.u32()?,
            last_accepted: r.u32()?,
        },
        _ => Malformed("the purse refused the command"),
    };
    r.finish()?;
    Ok(error)
}

fn operator_id(bytes: &[u8]) -> Result<OperatorId, PurseError> {
    core::str::from_utf8(bytes)
        .map_err(|_| PurseError::Malformed("operator id"))
        .and_then(OperatorId::new)
}

fn write_pin(w: &mut Writer, pin: &Pin) {
    let bytes = pin.to_bytes();
    w.bytes(&bytes);
}

fn read_pin(r: &mut Reader<'_>) -> Result<Pin, PurseError> {
    Pin::from_bytes(r.take(PIN_DIGITS_MAX + 1)?).map_err(|_| PurseError::PinFormat)
}

/// Everything the UI shows on the purse's main screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurseStatus {
    /// The operator.
    pub operator: OperatorId,
    /// The purse id.
    pub purse_id: PurseId,
    /// Its phone.
    pub phone: Phone,
    /// Balance.
    pub balance: Amount,
    /// Counter of the latest entry.
    pub counter: u32,
    /// Entries waiting for the operator.
    pub unacknowledged: u16,
    /// Requests waiting for Code 2.
    pub pending: u8,
    /// PIN tries left.
    pub pin_tries_left: u8,
    /// Blocked by the operator.
    pub blocked: bool,
    /// Wrong Code 2 entries since the last sync.
    pub failures_since_sync: u16,
    /// Limits in force.
    pub limits: OfflineLimits,
    /// Paid since the last sync.
    pub spent_since_sync: Amount,
}

fn status_of(purse: &Purse) -> Vec<u8> {
    let identity = purse.identity();
    let mut w = Writer::new();
    w.short_bytes(identity.operator.as_bytes());
    w.u64(identity.purse_id.0);
    w.phone(identity.phone);
    w.currency(identity.currency);
    w.minor(purse.balance());
    w.u32(purse.counter());
    w.u16(purse.unacknowledged_log().len() as u16);
    w.u8(purse.pending_requests().len() as u8);
    w.u8(purse.pin_tries_left());
    w.bool(purse.is_blocked());
    w.u16(purse.failures_since_sync());
    purse.limits().encode(&mut w);
    w.minor(purse.spent_since_sync());
    w.finish()
}

fn decode_status(bytes: &[u8]) -> Result<PurseStatus, PurseError> {
    let mut r = Reader::new(bytes);
    let operator = operator_id(r.short_bytes()?)?;
    let purse_id = PurseId(r.u64()?);
    let phone = r.phone()?;
    let currency = r.currency()?;
    let status = PurseStatus {
        operator,
        purse_id,
        phone,
        balance: r.amount(currency)?,
        counter: r.u32()?,
        unacknowledged: r.u16()?,
        pending: r.u8()?,
        pin_tries_left: r.u8()?,
        blocked: r.bool()?,
        failures_since_sync: r.u16()?,
        limits: OfflineLimits::decode(&mut r, currency)?,
        spent_since_sync: r.amount(currency)?,
    };
    r.finish()?;
    Ok(status)
}

fn write_entries(w: &mut Writer, entries: &[LogEntry]) {
    w.u16(entries.len() as u16);
    for entry in entries {
        entry.encode(w);
    }
}

/// Runs one command APDU against the purse (the card side). Persist the purse afterwards when its
/// [`Purse::revision`] changed, before releasing the response.
pub fn dispatch(
    purse: &mut Purse,
    command: &[u8],
    now: Timestamp,
    random: &mut dyn RandomSource,
) -> ResponseApdu {
    let apdu = match CommandApdu::decode(command) {
        Ok(apdu) => apdu,
        Err(status) => return ResponseApdu::error(status, None),
    };
    if apdu.cla != CLA_PURSE {
        return ResponseApdu::error(sw::CLA_NOT_SUPPORTED, None);
    }
    match run(purse, &apdu, now, random) {
        Ok(data) => ResponseApdu::ok(data),
        Err(error) => ResponseApdu::error(status_word(&error), Some(&error)),
    }
}

fn run(
    purse: &mut Purse,
    apdu: &CommandApdu,
    now: Timestamp,
    random: &mut dyn RandomSource,
) -> Result<Vec<u8>, PurseError> {
    let currency = purse.identity().currency;
    let mut r = Reader::new(&apdu.data);
    let mut w = Writer::new();
    let command = match apdu.ins {
        ins::REQUEST => Command::Request {
            payer: r.phone().map_err(|_| PurseError::PhoneNumber)?,
            amount: r.amount(currency)?,
        },
        ins::CHECK_REQUEST => Command::CheckRequest {
            payee: r.phone().map_err(|_| PurseError::PhoneNumber)?,
            amount: r.amount(currency)?,
            code1: Code::from_number(r.u32()?)?,
        },
        ins::PAY => Command::Pay {
            payee: r.phone().map_err(|_| PurseError::PhoneNumber)?,
            amount: r.amount(currency)?,
            code1: Code::from_number(r.u32()?)?,
            pin: read_pin(&mut r)?,
        },
        ins::ACCEPT => Command::Accept {
            code2: Code::from_number(r.u32()?)?,
            request: if apdu.p1 == 1 { Some(r.u16()?) } else { None },
        },
        ins::CANCEL_REQUEST => Command::CancelRequest { nonce_b: r.u16()? },
        ins::SHOW_CODE => Command::ShowCode,
        ins::CHANGE_PIN => Command::ChangePin {
            old: read_pin(&mut r)?,
            new: read_pin(&mut r)?,
        },
        ins::RESET_PIN => Command::ResetPin {
            code: ResetCode::from_number(r.u64()?)?,
            new: read_pin(&mut r)?,
        },
        ins::ASK_PAIRWISE_KEY => Command::RequestPairwiseKey {
            peer: r.phone().map_err(|_| PurseError::PhoneNumber)?,
        },
        ins::ENTER_TICKET => {
            let peer = r.phone().map_err(|_| PurseError::PhoneNumber)?;
            let digits: [u8; TICKET_CODE_DIGITS] = r.array()?;
            Command::EnterTicket {
                peer,
                code: TicketCode::from_digits(&digits)?,
            }
        }
        // Data: empty (the whole log) or entries_max(2) (one round of a long log).
        ins::START_SYNC if apdu.data.is_empty() => Command::StartSync,
        ins::START_SYNC => Command::StartSyncRound {
            entries_max: r.u16()?,
        },
        ins::STATEMENT_REQUEST => Command::StatementRequest,
        ins::APPLY_ANSWER => Command::ApplyAnswer {
            answer: apdu.data.clone(),
        },
        ins::STATUS => {
            return Ok(status_of(purse));
        }
        ins::READ_LOG => {
            let entries = if apdu.p1 == 1 {
                purse.recent_log()
            } else {
                purse.unacknowledged_log()
            };
            write_entries(&mut w, entries);
            return Ok(w.finish());
        }
        ins::READ_PENDING => {
            w.u8(purse.pending_requests().len() as u8);
            for pending in purse.pending_requests() {
                w.u16(pending.nonce_b);
                w.phone(pending.payer);
                w.minor(pending.amount);
                pending.key.encode(&mut w);
                w.u64(pending.created_at.0);
                w.u8(pending.failures);
                w.u32(pending.code1.as_number());
            }
            return Ok(w.finish());
        }
        ins::READ_TICKETS => {
            w.u8(purse.peer_tickets().len() as u8);
            for ticket in purse.peer_tickets() {
                w.phone(ticket.peer);
                w.bytes(ticket.code.as_digits());
            }
            return Ok(w.finish());
        }
        other => return Err(PurseError::UnsupportedInstruction(other)),
    };
    if apdu.ins != ins::APPLY_ANSWER {
        r.finish()
            .map_err(|_| PurseError::Malformed("command data length"))?;
    }
    match purse.handle(command, now, random)? {
        Outcome::Requested { code1, request } => {
            w.u32(code1.as_number());
            w.u16(request.nonce_b);
        }
        Outcome::Paid { code2, entry } => {
            w.u32(code2.as_number());
            entry.encode(&mut w);
        }
        Outcome::Received { entry } => entry.encode(&mut w),
        Outcome::ShowCode(last) => {
            w.phone(last.payee);
            w.minor(last.amount);
            w.u32(last.code2.as_number());
            w.u32(last.counter);
        }
        Outcome::SyncUpload { upload, .. } => w.bytes(&upload),
        Outcome::StatementRequested(request) => {
            w.u64(request.purse_id.0);
            w.u32(request.counter);
            w.u32(request.code);
        }
        Outcome::SyncApplied(report) => {
            w.u32(report.acknowledged_through);
            w.u8(report.credits.len().min(255) as u8);
            w.u32(report.new_epoch.unwrap_or(0));
            w.u8(u8::from(report.pin_unblocked) | (u8::from(report.blocked) << 1));
        }
        Outcome::RequestChecked
        | Outcome::RequestCancelled
        | Outcome::PinChanged
        | Outcome::PinReset { .. }
        | Outcome::PairwiseKeyRequested
        | Outcome::TicketAccepted { .. } => {}
    }
    Ok(w.finish())
}

/// The personalisation command of a blank SIM applet: the operator's provisioning record (its
/// hardware class is the operator's record; see [`crate::trust`]) and the holder's first PIN.
/// The operator's SIM line sends it once, over the card interface; the purse's keys never pass
/// through a purse file.
pub fn personalize_command(provisioning: &crate::Provisioning, pin: &Pin) -> Vec<u8> {
    let mut w = Writer::new();
    let record = provisioning.encode();
    w.u16(record.len() as u16);
    w.bytes(&record);
    write_pin(&mut w, pin);
    CommandApdu::new(ins::PERSONALIZE, 0, w.finish()).encode()
}

/// The SIM applet's card emulation: the hardware class's stand-in where there is no SIM. A blank
/// card takes one PERSONALIZE and nothing else; a personalised one runs every other command as
/// the applet would ([`dispatch`]) and refuses a second personalisation. Its state lives in
/// memory (the card's own storage), never in a file.
pub struct CardEmulation<R: RandomSource> {
    purse: Option<Purse>,
    random: R,
}

impl<R: RandomSource> core::fmt::Debug for CardEmulation<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CardEmulation")
            .field("personalised", &self.purse.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: RandomSource> CardEmulation<R> {
    /// A blank card.
    pub fn blank(random: R) -> CardEmulation<R> {
        CardEmulation {
            purse: None,
            random,
        }
    }

    fn personalize(&mut self, apdu: &CommandApdu) -> Result<(), PurseError> {
        if self.purse.is_some() {
            return Err(PurseError::Malformed("the card is personalised already"));
        }
        let mut r = Reader::new(&apdu.data);
        let length = usize::from(r.u16()?);
        let provisioning = crate::Provisioning::decode(r.take(length)?)?;
        let pin = read_pin(&mut r)?;
        r.finish()?;
        self.purse = Some(Purse::provision(&provisioning, pin));
        Ok(())
    }
}

impl<R: RandomSource> Transport for CardEmulation<R> {
    fn transmit(&mut self, command: &[u8], now: Timestamp) -> Result<Vec<u8>, PurseError> {
        let apdu = match CommandApdu::decode(command) {
            Ok(apdu) => apdu,
            Err(status) => return Ok(ResponseApdu::error(status, None).encode()),
        };
        if apdu.ins == ins::PERSONALIZE {
            return Ok(match self.personalize(&apdu) {
                Ok(()) => ResponseApdu::ok(Vec::new()),
                Err(error) => ResponseApdu::error(sw::CONDITIONS_NOT_SATISFIED, Some(&error)),
            }
            .encode());
        }
        Ok(match &mut self.purse {
            Some(purse) => dispatch(purse, command, now, &mut self.random),
            None => ResponseApdu::error(sw::CONDITIONS_NOT_SATISFIED, None),
        }
        .encode())
    }
}

impl<R: RandomSource> Transport for &mut CardEmulation<R> {
    fn transmit(&mut self, command: &[u8], now: Timestamp) -> Result<Vec<u8>, PurseError> {
        (**self).transmit(command, now)
    }
}

/// Carries APDUs to a purse: the software secure element, a card reader, a phone's SIM toolkit.
pub trait Transport {
    /// Sends one command APDU at time `now` and returns the response APDU bytes.
    fn transmit(&mut self, command: &[u8], now: Timestamp) -> Result<Vec<u8>, PurseError>;
}

/// What applying an answer reported, as seen through the APDU interface.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AnswerSummary {
    /// Entries acknowledged up to this counter.
    pub acknowledged_through: u32,
    /// Credits applied.
    pub credits: u8,
    /// New scheme-key epoch, if any.
    pub new_epoch: Option<u32>,
    /// The PIN was unblocked.
    pub pin_unblocked: bool,
    /// The purse is blocked.
    pub blocked: bool,
}

/// A typed client for the purse's APDU interface: what a UI calls.
#[derive(Debug)]
pub struct PurseCard<T: Transport> {
    transport: T,
    currency: Currency,
}

impl<T: Transport> PurseCard<T> {
    /// Opens the card (reads its status to learn the currency).
    pub fn new(mut transport: T, now: Timestamp) -> Result<PurseCard<T>, PurseError> {
        let data = Self::exchange(
            &mut transport,
            CommandApdu::new(ins::STATUS, 0, Vec::new()),
            now,
        )?;
        let status = decode_status(&data)?;
        Ok(PurseCard {
            transport,
            currency: status.balance.currency(),
        })
    }

    /// The transport (e.g. to close the secure element).
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// The purse's currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    fn exchange(
        transport: &mut T,
        command: CommandApdu,
        now: Timestamp,
    ) -> Result<Vec<u8>, PurseError> {
        let response = ResponseApdu::decode(&transport.transmit(&command.encode(), now)?)?;
        if response.status == sw::OK {
            Ok(response.data)
        } else {
            Err(decode_error(&response.data, response.status))
        }
    }

    fn send(
        &mut self,
        ins: u8,
        p1: u8,
        data: Vec<u8>,
        now: Timestamp,
    ) -> Result<Vec<u8>, PurseError> {
        Self::exchange(&mut self.transport, CommandApdu::new(ins, p1, data), now)
    }

    /// Reads an amount in the purse's currency.
    pub fn parse_amount(&self, text: &str) -> Result<Amount, PurseError> {
        Ok(Amount::parse(text, self.currency)?)
    }

    /// Status for the main screen.
    pub fn status(&mut self, now: Timestamp) -> Result<PurseStatus, PurseError> {
        decode_status(&self.send(ins::STATUS, 0, Vec::new(), now)?)
    }

    /// Payee: ask `payer` for `amount`; returns Code 1.
    pub fn request(
        &mut self,
        payer: Phone,
        amount: Amount,
        now: Timestamp,
    ) -> Result<Code, PurseError> {
        let mut w = Writer::new();
        w.phone(payer);
        w.minor(amount);
        self.check_currency(amount)?;
        let data = self.send(ins::REQUEST, 0, w.finish(), now)?;
        let mut r = Reader::new(&data);
        Code::from_number(r.u32()?)
    }

    fn check_currency(&self, amount: Amount) -> Result<(), PurseError> {
        if amount.currency() != self.currency {
            return Err(PurseError::CurrencyMismatch {
                purse: self.currency,
                given: amount.currency(),
            });
        }
        Ok(())
    }

    /// Payer: does Code 1 match? (Changes nothing.)
    pub fn check_request(
        &mut self,
        payee: Phone,
        amount: Amount,
        code1: Code,
        now: Timestamp,
    ) -> Result<(), PurseError> {
        self.check_currency(amount)?;
        let mut w = Writer::new();
        w.phone(payee);
        w.minor(amount);
        w.u32(code1.as_number());
        self.send(ins::CHECK_REQUEST, 0, w.finish(), now)
            .map(|_| ())
    }

    /// Payer: pay; returns Code 2 and the debit.
    pub fn pay(
        &mut self,
        payee: Phone,
        amount: Amount,
        code1: Code,
        pin: &Pin,
        now: Timestamp,
    ) -> Result<(Code, LogEntry), PurseError> {
        self.check_currency(amount)?;
        let mut w = Writer::new();
        w.phone(payee);
        w.minor(amount);
        w.u32(code1.as_number());
        write_pin(&mut w, pin);
        let data = self.send(ins::PAY, 0, w.finish(), now)?;
        let mut r = Reader::new(&data);
        let code2 = Code::from_number(r.u32()?)?;
        let entry = LogEntry::decode(&mut r, self.currency)?;
        r.finish()?;
        Ok((code2, entry))
    }

    /// Payee: enter Code 2 (for the request whose Code 1 began with `request`, if several).
    pub fn accept(
        &mut self,
        code2: Code,
        request: Option<u16>,
        now: Timestamp,
    ) -> Result<LogEntry, PurseError> {
        let mut w = Writer::new();
        w.u32(code2.as_number());
        if let Some(nonce_b) = request {
            w.u16(nonce_b);
        }
        let data = self.send(ins::ACCEPT, u8::from(request.is_some()), w.finish(), now)?;
        let mut r = Reader::new(&data);
        let entry = LogEntry::decode(&mut r, self.currency)?;
        r.finish()?;
        Ok(entry)
    }

    /// Payee: void a pending request.
    pub fn cancel_request(&mut self, nonce_b: u16, now: Timestamp) -> Result<(), PurseError> {
        self.send(ins::CANCEL_REQUEST, 0, nonce_b.to_be_bytes().to_vec(), now)
            .map(|_| ())
    }

    /// Payer: the last payment, to show its Code 2 again.
    pub fn show_code(&mut self, now: Timestamp) -> Result<LastPayment, PurseError> {
        let data = self.send(ins::SHOW_CODE, 0, Vec::new(), now)?;
        let mut r = Reader::new(&data);
        let last = LastPayment {
            payee: r.phone()?,
            amount: r.amount(self.currency)?,
            code2: Code::from_number(r.u32()?)?,
            counter: r.u32()?,
        };
        r.finish()?;
        Ok(last)
    }

    /// Change the PIN.
    pub fn change_pin(&mut self, old: &Pin, new: &Pin, now: Timestamp) -> Result<(), PurseError> {
        let mut w = Writer::new();
        write_pin(&mut w, old);
        write_pin(&mut w, new);
        self.send(ins::CHANGE_PIN, 0, w.finish(), now).map(|_| ())
    }

    /// PIN reset in place: the operator's one-time reset code and the new PIN.
    pub fn reset_pin(
        &mut self,
        code: &ResetCode,
        new: &Pin,
        now: Timestamp,
    ) -> Result<(), PurseError> {
        let mut w = Writer::new();
        w.u64(code.as_number());
        write_pin(&mut w, new);
        self.send(ins::RESET_PIN, 0, w.finish(), now).map(|_| ())
    }

    /// Ask for a pairwise key with `peer` at the next sync.
    pub fn ask_pairwise_key(&mut self, peer: Phone, now: Timestamp) -> Result<(), PurseError> {
        let mut w = Writer::new();
        w.phone(peer);
        self.send(ins::ASK_PAIRWISE_KEY, 0, w.finish(), now)
            .map(|_| ())
    }

    /// Type in a ticket code `peer` read out.
    pub fn enter_ticket(
        &mut self,
        peer: Phone,
        code: &TicketCode,
        now: Timestamp,
    ) -> Result<(), PurseError> {
        let mut w = Writer::new();
        w.phone(peer);
        w.bytes(code.as_digits());
        self.send(ins::ENTER_TICKET, 0, w.finish(), now).map(|_| ())
    }

    /// Produce an upload for the operator.
    pub fn start_sync(&mut self, now: Timestamp) -> Result<Vec<u8>, PurseError> {
        self.send(ins::START_SYNC, 0, Vec::new(), now)
    }

    /// Produce one round's upload: at most `entries_max` of the oldest unacknowledged entries.
    pub fn start_sync_round(
        &mut self,
        entries_max: u16,
        now: Timestamp,
    ) -> Result<Vec<u8>, PurseError> {
        let mut w = Writer::new();
        w.u16(entries_max);
        self.send(ins::START_SYNC, 0, w.finish(), now)
    }

    /// A statement request for the operator (`OP1 ST …`), authenticated by the purse's key.
    pub fn statement_request(
        &mut self,
        now: Timestamp,
    ) -> Result<crate::sync::StatementRequest, PurseError> {
        let data = self.send(ins::STATEMENT_REQUEST, 0, Vec::new(), now)?;
        let mut r = Reader::new(&data);
        let purse_id = PurseId(r.u64()?);
        let counter = r.u32()?;
        let code = r.u32()?;
        r.finish()?;
        Ok(crate::sync::StatementRequest {
            purse_id,
            counter,
            code,
        })
    }

    /// Apply the operator's answer.
    pub fn apply_answer(
        &mut self,
        answer: &[u8],
        now: Timestamp,
    ) -> Result<AnswerSummary, PurseError> {
        let data = self.send(ins::APPLY_ANSWER, 0, answer.to_vec(), now)?;
        let mut r = Reader::new(&data);
        let acknowledged_through = r.u32()?;
        let credits = r.u8()?;
        let epoch = r.u32()?;
        let flags = r.u8()?;
        r.finish()?;
        Ok(AnswerSummary {
            acknowledged_through,
            credits,
            new_epoch: (epoch != 0).then_some(epoch),
            pin_unblocked: flags & 1 != 0,
            blocked: flags & 2 != 0,
        })
    }

    /// The log: unacknowledged entries, or (`recent`) the last few for display.
    pub fn read_log(&mut self, recent: bool, now: Timestamp) -> Result<Vec<LogEntry>, PurseError> {
        let data = self.send(ins::READ_LOG, u8::from(recent), Vec::new(), now)?;
        let mut r = Reader::new(&data);
        let mut entries = Vec::new();
        for _ in 0..r.count_u16(crate::params::LOG_UNACKNOWLEDGED_MAX)? {
            entries.push(LogEntry::decode(&mut r, self.currency)?);
        }
        r.finish()?;
        Ok(entries)
    }

    /// Requests waiting for Code 2.
    /// The ticket codes to read out to peers (each lets the peer install the pairwise key
    /// without syncing).
    pub fn tickets(&mut self, now: Timestamp) -> Result<Vec<crate::purse::PeerTicket>, PurseError> {
        let data = self.send(ins::READ_TICKETS, 0, Vec::new(), now)?;
        let mut r = Reader::new(&data);
        let mut out = Vec::new();
        for _ in 0..r.count_u8(crate::params::PEER_TICKETS_MAX)? {
            let peer = r.phone()?;
            let digits: [u8; crate::params::TICKET_CODE_DIGITS] = r.array()?;
            out.push(crate::purse::PeerTicket {
                peer,
                code: crate::ticket::TicketCode::from_digits(&digits)?,
            });
        }
        r.finish()?;
        Ok(out)
    }

    /// The requests waiting for Code 2.
    pub fn pending(&mut self, now: Timestamp) -> Result<Vec<PendingRequest>, PurseError> {
        let data = self.send(ins::READ_PENDING, 0, Vec::new(), now)?;
        let mut r = Reader::new(&data);
        let mut out = Vec::new();
        for _ in 0..r.count_u8(crate::params::PENDING_REQUESTS_MAX)? {
            out.push(PendingRequest {
                nonce_b: r.u16()?,
                payer: r.phone()?,
                amount: r.amount(self.currency)?,
                key: crate::purse::KeyRef::decode(&mut r)?,
                created_at: Timestamp(r.u64()?),
                failures: r.u8()?,
                code1: Code::from_number(r.u32()?)?,
            });
        }
        r.finish()?;
        Ok(out)
    }
}
