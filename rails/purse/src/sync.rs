//! Sync messages between a purse and the operator, their binary codec and MAC, and the SMS
//! packing for phones that only have SMS.
//!
//! Both messages start with the format version and a kind byte (`U` upload, `A` answer) and end
//! with a 16-byte AES-CMAC under the purse's sync key (derived from its per-purse key), computed
//! over every byte before it. The kind byte keeps an upload from ever passing as an answer.

use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use offpay_money::{Amount, Currency};

use crate::crypto::{BLOCK_BYTES, KEY_BYTES, SecretKey, cmac, tags_equal};
use crate::entries::{LogEntry, OfflineLimits, PeerTicket};
use crate::error::PurseError;
use crate::params::*;
use crate::ticket::TicketCode;
use crate::types::{OperatorId, Phone, PurseId, Timestamp};
use crate::wire::{Reader, Writer};

const KIND_UPLOAD: u8 = b'U';
const KIND_ANSWER: u8 = b'A';

/// A request still waiting for Code 2, as reported in an upload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PendingSummary {
    /// Who was asked to pay.
    pub payer: Phone,
    /// N_B.
    pub nonce_b: u16,
    /// How much.
    pub amount: Amount,
}

/// What a purse sends at a sync.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SyncUpload {
    /// The operator.
    pub operator: OperatorId,
    /// The purse.
    pub purse_id: PurseId,
    /// Strictly increasing per purse; the operator refuses a sequence it has seen.
    pub sequence: u32,
    /// The sequence of the last answer the purse applied (0: none).
    pub answer_applied: u32,
    /// Purse clock.
    pub generated_at: Timestamp,
    /// Balance now (its currency is the purse's).
    pub balance: Amount,
    /// Counter of the latest entry.
    pub counter: u32,
    /// The purse's view of what the operator acknowledged.
    pub acknowledged_through: u32,
    /// Wrong Code 2 entries since the last sync.
    pub failed_code_entries: u16,
    /// The PIN is blocked.
    pub pin_blocked: bool,
    /// Newest scheme-key epoch held.
    pub scheme_epoch: u32,
    /// The unacknowledged log, counters increasing without gaps.
    pub entries: Vec<LogEntry>,
    /// Requests still waiting for Code 2.
    pub pending: Vec<PendingSummary>,
    /// Peers the purse wants a pairwise key with.
    pub pairwise_requests: Vec<Phone>,
    /// Wrong Code 2 entries since the last sync, by the payer the request named (at most
    /// `CODE2_FAILURES_PER_SYNC_PERIOD_MAX` payers): the operator flags the payer as having
    /// *attempted* them, never the payee who typed them.
    pub failures_by_payer: Vec<(Phone, u8)>,
}

fn write_header(w: &mut Writer, kind: u8, operator: OperatorId, purse_id: PurseId) {
    w.u8(FORMAT_VERSION);
    w.u8(kind);
    w.short_bytes(operator.as_bytes());
    w.u64(purse_id.0);
}

fn read_header(r: &mut Reader<'_>, kind: u8) -> Result<(OperatorId, PurseId), PurseError> {
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(PurseError::UnsupportedVersion { found: version });
    }
    if r.u8()? != kind {
        return Err(PurseError::Malformed("message kind"));
    }
    let operator = core::str::from_utf8(r.short_bytes()?)
        .map_err(|_| PurseError::Malformed("operator id"))
        .and_then(OperatorId::new)?;
    Ok((operator, PurseId(r.u64()?)))
}

fn seal_with(mut w: Writer, key: &SecretKey) -> Vec<u8> {
    let tag = cmac(key, &w.bytes);
    w.bytes(&tag);
    w.finish()
}

/// Splits off and checks the trailing tag; returns the authenticated body.
fn open_with<'a>(bytes: &'a [u8], key: &SecretKey) -> Result<&'a [u8], PurseError> {
    if bytes.len() < BLOCK_BYTES + 2 {
        return Err(PurseError::Malformed("truncated"));
    }
    let (body, tag) = bytes.split_at(bytes.len() - BLOCK_BYTES);
    let mut given = [0u8; BLOCK_BYTES];
    given.copy_from_slice(tag);
    if !tags_equal(&cmac(key, body), &given) {
        return Err(PurseError::AuthenticationFailed);
    }
    Ok(body)
}

/// The operator and purse an upload claims to come from, read before authentication so that the
/// operator can derive the key. Trust nothing else before [`SyncUpload::open`].
pub fn peek_upload(bytes: &[u8]) -> Result<(OperatorId, PurseId), PurseError> {
    read_header(&mut Reader::new(bytes), KIND_UPLOAD)
}

/// The 16-byte tag that ends a sealed message (the operator keeps the last one to spot replays).
pub fn message_tag(bytes: &[u8]) -> Option<[u8; BLOCK_BYTES]> {
    let start = bytes.len().checked_sub(BLOCK_BYTES)?;
    let mut tag = [0u8; BLOCK_BYTES];
    tag.copy_from_slice(&bytes[start..]);
    Some(tag)
}

impl SyncUpload {
    /// Encodes and MACs with the purse's sync key.
    pub fn seal(&self, sync_key: &SecretKey) -> Vec<u8> {
        let mut w = Writer::new();
        write_header(&mut w, KIND_UPLOAD, self.operator, self.purse_id);
        w.u32(self.sequence);
        w.u32(self.answer_applied);
        w.u64(self.generated_at.0);
        w.currency(self.balance.currency());
        w.minor(self.balance);
        w.u32(self.counter);
        w.u32(self.acknowledged_through);
        w.u16(self.failed_code_entries);
        w.bool(self.pin_blocked);
        w.u32(self.scheme_epoch);
        w.u16(self.entries.len() as u16);
        for entry in &self.entries {
            entry.encode(&mut w);
        }
        w.u8(self.pending.len() as u8);
        for pending in &self.pending {
            w.phone(pending.payer);
            w.u16(pending.nonce_b);
            w.minor(pending.amount);
        }
        w.u8(self.pairwise_requests.len() as u8);
        for peer in &self.pairwise_requests {
            w.phone(*peer);
        }
        w.u8(self.failures_by_payer.len() as u8);
        for (payer, count) in &self.failures_by_payer {
            w.phone(*payer);
            w.u8(*count);
        }
        seal_with(w, sync_key)
    }

    /// Authenticates, then decodes and checks an upload.
    pub fn open(bytes: &[u8], sync_key: &SecretKey) -> Result<SyncUpload, PurseError> {
        let body = open_with(bytes, sync_key)?;
        let mut r = Reader::new(body);
        let (operator, purse_id) = read_header(&mut r, KIND_UPLOAD)?;
        let sequence = r.u32()?;
        let answer_applied = r.u32()?;
        let generated_at = Timestamp(r.u64()?);
        let currency = r.currency()?;
        let balance = r.amount(currency)?;
        let counter = r.u32()?;
        let acknowledged_through = r.u32()?;
        let failed_code_entries = r.u16()?;
        let pin_blocked = r.bool()?;
        let scheme_epoch = r.u32()?;
        let mut entries = Vec::new();
        for _ in 0..r.count_u16(UPLOAD_ENTRIES_MAX)? {
            entries.push(LogEntry::decode(&mut r, currency)?);
        }
        let mut pending = Vec::new();
        for _ in 0..r.count_u8(PENDING_REQUESTS_MAX)? {
            pending.push(PendingSummary {
                payer: r.phone()?,
                nonce_b: r.u16()?,
                amount: r.amount(currency)?,
            });
        }
        let mut pairwise_requests = Vec::new();
        for _ in 0..r.count_u8(PAIRWISE_REQUESTS_MAX)? {
            pairwise_requests.push(r.phone()?);
        }
        let mut failures_by_payer = Vec::new();
        for _ in 0..r.count_u8(usize::from(CODE2_FAILURES_PER_SYNC_PERIOD_MAX))? {
            failures_by_payer.push((r.phone()?, r.u8()?));
        }
        r.finish()?;
        let increasing = entries
            .windows(2)
            .all(|pair| pair[0].counter < pair[1].counter);
        let within = entries.last().is_none_or(|last| last.counter <= counter);
        if !increasing || !within || answer_applied >= sequence || sequence == 0 {
            return Err(PurseError::Malformed("upload counters"));
        }
        Ok(SyncUpload {
            operator,
            purse_id,
            sequence,
            answer_applied,
            generated_at,
            balance,
            counter,
            acknowledged_through,
            failed_code_entries,
            pin_blocked,
            scheme_epoch,
            entries,
            pending,
            pairwise_requests,
            failures_by_payer,
        })
    }
}

/// A credit the operator asks the purse to apply.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AnswerCredit {
    /// A float top-up or other operator credit.
    Operator {
        /// The operator's id for it (the purse applies each id once).
        credit_id: u64,
        /// How much.
        amount: Amount,
        /// Shown to the holder.
        memo: String,
    },
    /// An agent settlement: the operator takes `amount` back from the purse (the agent hands
    /// collected value back and is paid for it). Applied once, only if the balance covers it.
    Settlement {
        /// The operator's id for it (the purse applies each id once).
        debit_id: u64,
        /// How much.
        amount: Amount,
    },
    /// A payment the payer's upload showed but whose Code 2 this purse never accepted.
    Payment {
        /// A.
        payer: Phone,
        /// The payer's counter of the debit.
        payer_counter: u32,
        /// N_B.
        nonce_b: u16,
        /// N_A.
        nonce_a: u16,
        /// X.
        amount: Amount,
    },
}

/// A pairwise key delivered to this purse, wrapped under its wrap key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AnswerTicket {
    /// The other purse.
    pub peer: Phone,
    /// The key's version.
    pub version: u16,
    /// AES_{W}(K_AB).
    pub wrapped: [u8; KEY_BYTES],
}

/// What the operator answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SyncAnswer {
    /// The operator.
    pub operator: OperatorId,
    /// The purse.
    pub purse_id: PurseId,
    /// The upload's sequence number this answers.
    pub sequence: u32,
    /// Operator clock.
    pub server_time: Timestamp,
    /// Entries up to this counter are posted; the purse may drop them.
    pub acknowledged_through: u32,
    /// Renewed limits and validity.
    pub limits: OfflineLimits,
    /// The purse is blocked.
    pub blocked: bool,
    /// Reset the PIN retry counter.
    pub pin_unblock: bool,
    /// Scheme keys (epoch, key wrapped under the purse's wrap key): the generation epoch and the
    /// newest one distributed, at most two.
    pub scheme_keys: Vec<(u32, [u8; KEY_BYTES])>,
    /// The epoch payees make Code 1 with.
    pub generation_epoch: u32,
    /// Credits to apply.
    pub credits: Vec<AnswerCredit>,
    /// Pairwise keys for this purse.
    pub tickets: Vec<AnswerTicket>,
    /// Ticket codes this purse may read out to peers.
    pub peer_tickets: Vec<PeerTicket>,
    /// Requested pairwise peers the operator does not know.
    pub pairwise_unknown: Vec<Phone>,
    /// Purses not to trade with.
    pub blocked_purses: Vec<Phone>,
}

impl SyncAnswer {
    /// Encodes and MACs with the purse's sync key.
    pub fn seal(&self, sync_key: &SecretKey) -> Vec<u8> {
        let mut w = Writer::new();
        write_header(&mut w, KIND_ANSWER, self.operator, self.purse_id);
        w.u32(self.sequence);
        w.u64(self.server_time.0);
        w.u32(self.acknowledged_through);
        w.currency(self.limits.max_balance.currency());
        self.limits.encode(&mut w);
        w.bool(self.blocked);
        w.bool(self.pin_unblock);
        w.u8(self.scheme_keys.len() as u8);
        for (epoch, wrapped) in &self.scheme_keys {
            w.u32(*epoch);
            w.bytes(wrapped);
        }
        w.u32(self.generation_epoch);
        w.u8(self.credits.len() as u8);
        for credit in &self.credits {
            match credit {
                AnswerCredit::Operator {
                    credit_id,
                    amount,
                    memo,
                } => {
                    w.u8(1);
                    w.u64(*credit_id);
                    w.minor(*amount);
                    w.short_bytes(memo.as_bytes());
                }
                AnswerCredit::Payment {
                    payer,
                    payer_counter,
                    nonce_b,
                    nonce_a,
                    amount,
                } => {
                    w.u8(2);
                    w.phone(*payer);
                    w.u32(*payer_counter);
                    w.u16(*nonce_b);
                    w.u16(*nonce_a);
                    w.minor(*amount);
                }
                AnswerCredit::Settlement { debit_id, amount } => {
                    w.u8(3);
                    w.u64(*debit_id);
                    w.minor(*amount);
                }
            }
        }
        w.u8(self.tickets.len() as u8);
        for ticket in &self.tickets {
            w.phone(ticket.peer);
            w.u16(ticket.version);
            w.bytes(&ticket.wrapped);
        }
        w.u8(self.peer_tickets.len() as u8);
        for ticket in &self.peer_tickets {
            w.phone(ticket.peer);
            w.bytes(ticket.code.as_digits());
        }
        w.u8(self.pairwise_unknown.len() as u8);
        for phone in &self.pairwise_unknown {
            w.phone(*phone);
        }
        w.u16(self.blocked_purses.len() as u16);
        for phone in &self.blocked_purses {
            w.phone(*phone);
        }
        seal_with(w, sync_key)
    }

    /// Authenticates, then decodes an answer for a purse holding `currency`.
    pub fn open(
        bytes: &[u8],
        sync_key: &SecretKey,
        currency: Currency,
    ) -> Result<SyncAnswer, PurseError> {
        let body = open_with(bytes, sync_key)?;
        let mut r = Reader::new(body);
        let (operator, purse_id) = read_header(&mut r, KIND_ANSWER)?;
        let sequence = r.u32()?;
        let server_time = Timestamp(r.u64()?);
        let acknowledged_through = r.u32()?;
        let answer_currency = r.currency()?;
        if answer_currency != currency {
            return Err(PurseError::Malformed("answer currency"));
        }
        let limits = OfflineLimits::decode(&mut r, currency)?;
        let blocked = r.bool()?;
        let pin_unblock = r.bool()?;
        let mut scheme_keys = Vec::new();
        for _ in 0..r.count_u8(SCHEME_EPOCHS_HELD)? {
            scheme_keys.push((r.u32()?, r.array()?));
        }
        let generation_epoch = r.u32()?;
        let mut credits = Vec::new();
        for _ in 0..r.count_u8(ANSWER_CREDITS_MAX)? {
            let credit = match r.u8()? {
                1 => {
                    let credit_id = r.u64()?;
                    let amount = r.amount(currency)?;
                    let memo = r.short_bytes()?;
                    if memo.len() > MEMO_BYTES_MAX {
                        return Err(PurseError::Malformed("memo"));
                    }
                    let memo = core::str::from_utf8(memo)
                        .map_err(|_| PurseError::Malformed("memo"))?
                        .into();
                    AnswerCredit::Operator {
                        credit_id,
                        amount,
                        memo,
                    }
                }
                2 => AnswerCredit::Payment {
                    payer: r.phone()?,
                    payer_counter: r.u32()?,
                    nonce_b: r.u16()?,
                    nonce_a: r.u16()?,
                    amount: r.amount(currency)?,
                },
                3 => AnswerCredit::Settlement {
                    debit_id: r.u64()?,
                    amount: r.amount(currency)?,
                },
                _ => return Err(PurseError::Malformed("credit kind")),
            };
            let amount = match &credit {
                AnswerCredit::Operator { amount, .. }
                | AnswerCredit::Payment { amount, .. }
                | AnswerCredit::Settlement { amount, .. } => *amount,
            };
            if amount.is_zero() {
                return Err(PurseError::Malformed("zero credit"));
            }
            credits.push(credit);
        }
        let mut tickets = Vec::new();
        for _ in 0..r.count_u8(ANSWER_TICKETS_MAX)? {
            tickets.push(AnswerTicket {
                peer: r.phone()?,
                version: r.u16()?,
                wrapped: r.array()?,
            });
        }
        let mut peer_tickets = Vec::new();
        for _ in 0..r.count_u8(ANSWER_TICKETS_MAX)? {
            let peer = r.phone()?;
            let digits: [u8; TICKET_CODE_DIGITS] = r.array()?;
            peer_tickets.push(PeerTicket {
                peer,
                code: TicketCode::from_digits(&digits)?,
            });
        }
        let mut pairwise_unknown = Vec::new();
        for _ in 0..r.count_u8(PAIRWISE_REQUESTS_MAX)? {
            pairwise_unknown.push(r.phone()?);
        }
        let mut blocked_purses = Vec::new();
        for _ in 0..r.count_u16(BLOCKED_PURSES_MAX)? {
            blocked_purses.push(r.phone()?);
        }
        r.finish()?;
        Ok(SyncAnswer {
            operator,
            purse_id,
            sequence,
            server_time,
            acknowledged_through,
            limits,
            blocked,
            pin_unblock,
            scheme_keys,
            generation_epoch,
            credits,
            tickets,
            peer_tickets,
            pairwise_unknown,
            blocked_purses,
        })
    }
}

/// Prefix of every SMS of a packed message: `OP1 <id> <k>/<n> `.
const SMS_PREFIX: &str = "OP1";

/// Packs a sealed message (an upload or an answer) into SMS of at most 160 characters from the
/// GSM default alphabet: `OP1 <message id> <part>/<parts> <base64 chunk>`. `message_id` (0..=999)
/// lets the receiver group parts of one message; parts may arrive in any order.
pub fn pack_sms(message: &[u8], message_id: u16) -> Result<Vec<String>, PurseError> {
    if message_id > SMS_MESSAGE_ID_MAX {
        return Err(PurseError::Malformed("SMS message id"));
    }
    // A part carries at least one character of the message: an empty one would be a text that
    // `parse_sms_part` refuses (found by the `purse_codes` fuzz target).
    if message.is_empty() {
        return Err(PurseError::Malformed("empty message"));
    }
    let encoded = STANDARD_NO_PAD.encode(message);
    // "OP1 999 64/64 " is 14 characters.
    let header_max = SMS_PREFIX.len() + 1 + 3 + 1 + 2 + 1 + 2 + 1;
    let chunk = SMS_CHARS_MAX - header_max;
    let parts = encoded.len().div_ceil(chunk).max(1);
    if parts > SMS_PARTS_MAX {
        return Err(PurseError::Malformed("message too long for SMS"));
    }
    let mut out = Vec::with_capacity(parts);
    for index in 0..parts {
        let start = index * chunk;
        let end = (start + chunk).min(encoded.len());
        let text = alloc::format!(
            "{SMS_PREFIX} {message_id} {}/{parts} {}",
            index + 1,
            &encoded[start..end]
        );
        debug_assert!(text.len() <= SMS_CHARS_MAX);
        out.push(text);
    }
    Ok(out)
}

/// One SMS of a packed message, as read from its text.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SmsPart {
    /// The sender's id of the message the part belongs to (0..=999).
    pub message_id: u16,
    /// 1-based position.
    pub index: usize,
    /// Parts of the whole message.
    pub total: usize,
    /// The base64 chunk the part carries.
    pub chunk: String,
}

/// Whether `text` is a part of a packed purse message (`OP1 ` then a digit): a gateway routes
/// such texts to the purse rail before any other SMS grammar reads them.
pub fn is_sms_part(text: &str) -> bool {
    text.trim_start()
        .strip_prefix(SMS_PREFIX)
        .and_then(|rest| rest.strip_prefix(' '))
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// A number field of ASCII digits only (no sign, no spaces), as the printers write them, so that
/// what the parsers accept is what they print back.
fn decimal<T: core::str::FromStr>(field: &str) -> Option<T> {
    if field.is_empty() || !field.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// Reads one SMS of a packed message: `OP1 <message id> <k>/<n> <chunk>`.
pub fn parse_sms_part(text: &str) -> Result<SmsPart, PurseError> {
    let text = text.trim();
    if text.len() > SMS_CHARS_MAX {
        return Err(PurseError::Malformed("SMS too long"));
    }
    let mut fields = text.splitn(4, ' ');
    let (Some(SMS_PREFIX), Some(id), Some(position), Some(chunk)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(PurseError::Malformed("SMS header"));
    };
    let message_id = decimal::<u16>(id)
        .filter(|id| *id <= SMS_MESSAGE_ID_MAX)
        .ok_or(PurseError::Malformed("SMS message id"))?;
    let (index, total) = position
        .split_once('/')
        .and_then(|(index, total)| Some((decimal::<usize>(index)?, decimal::<usize>(total)?)))
        .ok_or(PurseError::Malformed("SMS part number"))?;
    if total == 0 || total > SMS_PARTS_MAX || index == 0 || index > total {
        return Err(PurseError::Malformed("SMS part number"));
    }
    if chunk.is_empty()
        || !chunk
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
    {
        return Err(PurseError::Malformed("SMS body"));
    }
    Ok(SmsPart {
        message_id,
        index,
        total,
        chunk: chunk.into(),
    })
}

/// The SMS message id a purse gives the upload of sync `sequence` (and the operator its answer):
/// the sequence modulo 1000, so consecutive rounds never share an id.
pub fn sms_message_id(sequence: u32) -> u16 {
    (sequence % (u32::from(SMS_MESSAGE_ID_MAX) + 1)) as u16
}

/// Reassembles a message from its SMS (in any order). Refuses missing, duplicate or foreign parts.
pub fn unpack_sms<S: AsRef<str>>(parts: &[S]) -> Result<Vec<u8>, PurseError> {
    if parts.is_empty() || parts.len() > SMS_PARTS_MAX {
        return Err(PurseError::Malformed("SMS part count"));
    }
    let mut chunks: Vec<Option<String>> = alloc::vec![None; parts.len()];
    let mut message_id = None;
    for part in parts {
        let part = parse_sms_part(part.as_ref())?;
        if *message_id.get_or_insert(part.message_id) != part.message_id {
            return Err(PurseError::Malformed("SMS parts of different messages"));
        }
        if part.total != parts.len() {
            return Err(PurseError::Malformed("SMS part number"));
        }
        if chunks[part.index - 1].replace(part.chunk).is_some() {
            return Err(PurseError::Malformed("duplicate SMS part"));
        }
    }
    let mut encoded = String::new();
    for chunk in chunks {
        encoded.push_str(&chunk.ok_or(PurseError::Malformed("missing SMS part"))?);
    }
    decode_sms_body(&encoded)
}

/// Decodes the joined chunks of a packed message.
pub fn decode_sms_body(encoded: &str) -> Result<Vec<u8>, PurseError> {
    STANDARD_NO_PAD
        .decode(encoded.as_bytes())
        .map_err(|_| PurseError::Malformed("SMS body"))
}

const KIND_STATEMENT: u8 = b'S';
/// Second word of a statement request: `OP1 ST <purse id> <counter> <code>`.
const STATEMENT_WORD: &str = "ST";

/// The code that authenticates a statement request: the decimal truncation to
/// [`STATEMENT_CODE_DIGITS`] digits of a CMAC under the purse's sync key over the format
/// version, the kind byte `S` (so it can never be taken for an upload or answer tag), the
/// operator, the purse and `counter` (a value of the purse's sync sequence, never used twice).
pub fn statement_code(
    sync_key: &SecretKey,
    operator: OperatorId,
    purse_id: PurseId,
    counter: u32,
) -> u32 {
    let mut w = Writer::new();
    write_header(&mut w, KIND_STATEMENT, operator, purse_id);
    w.u32(counter);
    crate::crypto::decimal_truncate(&cmac(sync_key, &w.bytes), STATEMENT_CODE_DIGITS)
}

/// A purse holder's request for a statement by SMS.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StatementRequest {
    /// The purse.
    pub purse_id: PurseId,
    /// The purse's counter for this request (a sync sequence value).
    pub counter: u32,
    /// [`statement_code`] over it.
    pub code: u32,
}

impl StatementRequest {
    /// The SMS text: `OP1 ST <purse id> <counter> <code>` (the code zero-padded).
    pub fn text(&self) -> String {
        alloc::format!(
            "{SMS_PREFIX} {STATEMENT_WORD} {} {} {:0width$}",
            self.purse_id.0,
            self.counter,
            self.code,
            width = STATEMENT_CODE_DIGITS as usize
        )
    }

    /// Reads a statement request's text; `None` when the text is not one.
    pub fn parse(text: &str) -> Option<Result<StatementRequest, PurseError>> {
        let rest = text
            .trim()
            .strip_prefix(SMS_PREFIX)?
            .strip_prefix(' ')?
            .strip_prefix(STATEMENT_WORD)?
            .strip_prefix(' ')?;
        let fields: Vec<&str> = rest.split(' ').collect();
        let parsed = match fields.as_slice() {
            [purse, counter, code] if code.len() == STATEMENT_CODE_DIGITS as usize => {
                match (decimal(purse), decimal(counter), decimal(code)) {
                    (Some(purse), Some(counter), Some(code)) => Ok(StatementRequest {
                        purse_id: PurseId(purse),
                        counter,
                        code,
                    }),
                    _ => Err(PurseError::Malformed("statement request")),
                }
            }
            _ => Err(PurseError::Malformed("statement request")),
        };
        Some(parsed)
    }
}

/// The sync sequence of a sealed upload (read before authentication: only to name its SMS
/// message id).
pub fn upload_sequence(bytes: &[u8]) -> Result<u32, PurseError> {
    let mut r = Reader::new(bytes);
    read_header(&mut r, KIND_UPLOAD)?;
    r.u32()
}
