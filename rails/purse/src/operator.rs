//! The operator's half of the purse protocol, as pure logic: key derivation from the master key,
//! provisioning, verifying uploads, reconciliation over shadow accounts, and building answers.
//! The server stores the [`OperatorBook`] (it is serialisable with the `serde` feature), maps
//! [`Posting`]s to ledger transfers and [`Flag`]s to its fraud queue, and sends the answer back.
//!
//! Accounting. Every purse has a ledger account; one suspense account holds value in flight.
//! - A payer's debit entry posts `purse(payer) → suspense`; a payee's credit entry posts
//!   `suspense → purse(payee)`. The payment is *posted* when the first side reports and *matched*
//!   when the second does: suspense then nets to zero for it. An unmatched credit leaves suspense
//!   short until the debit arrives (or is flagged).
//! - An operator credit (float top-up) posts `operator float → suspense` when queued and
//!   `suspense → purse` when the purse reports applying it.
//! - So each shadow balance is exactly the sum of the entries the purse reported, and must equal
//!   the balance the purse reports.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use offpay_money::{Amount, Currency};
use sha2::{Digest, Sha256};

use crate::crypto::{KEY_BYTES, MasterKey, PurseKeys, SecretKey, wrap_key};
use crate::entries::{EntryKind, KeyRef, LogEntry, OfflineLimits, PeerTicket};
use crate::error::PurseError;
use crate::params::*;
use crate::provisioning::Provisioning;
use crate::sync::{AnswerCredit, AnswerTicket, SyncAnswer, SyncUpload, message_tag, peek_upload};
use crate::ticket::TicketCode;
use crate::types::{OperatorId, Phone, PurseId, PurseKind, Timestamp};
use crate::wire::Writer;

const LABEL_PURSE_KEY: &[u8] = b"offpay purse key v1";
const LABEL_SCHEME_KEY: &[u8] = b"offpay scheme key v1";
const LABEL_PAIRWISE_KEY: &[u8] = b"offpay pairwise key v1";
const LABEL_RECORD_SEAL_KEY: &[u8] = b"offpay purse record seal v1";

/// The operator's secrets: its id and the master key every purse key derives from. Built by the
/// server from a key file at start-up; never stored in the database.
#[derive(Clone, Debug)]
pub struct OperatorSecrets {
    operator: OperatorId,
    master: MasterKey,
}

impl OperatorSecrets {
    /// The operator's secrets.
    pub fn new(operator: OperatorId, master: MasterKey) -> OperatorSecrets {
        OperatorSecrets { operator, master }
    }

    /// The operator id.
    pub fn operator(&self) -> OperatorId {
        self.operator
    }

    /// The key that seals the book's records in the database ([`crate::seal`]):
    /// HMAC-SHA256(master, "offpay purse record seal v1" ‖ operator)[..16]. Never stored.
    pub(crate) fn record_seal_key(&self) -> SecretKey {
        self.master
            .derive(LABEL_RECORD_SEAL_KEY, &[self.operator.as_bytes()])
    }

    /// K_P = HMAC-SHA256(master, "offpay purse key v1" ‖ operator ‖ purse id)[..16].
    pub fn purse_key(&self, purse_id: PurseId) -> SecretKey {
        self.master.derive(
            LABEL_PURSE_KEY,
            &[self.operator.as_bytes(), &purse_id.0.to_be_bytes()],
        )
    }

    /// The scheme key K of an epoch.
    pub fn scheme_key(&self, epoch: u32) -> SecretKey {
        self.master.derive(
            LABEL_SCHEME_KEY,
            &[self.operator.as_bytes(), &epoch.to_be_bytes()],
        )
    }

    /// K_AB of a version, for the unordered pair {a, b}.
    pub fn pairwise_key(&self, a: PurseId, b: PurseId, version: u16) -> SecretKey {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        self.master.derive(
            LABEL_PAIRWISE_KEY,
            &[
                self.operator.as_bytes(),
                &low.0.to_be_bytes(),
                &high.0.to_be_bytes(),
                &version.to_be_bytes(),
            ],
        )
    }

    pub(crate) fn purse_keys(&self, purse_id: PurseId) -> PurseKeys {
        PurseKeys::derive(&self.purse_key(purse_id))
    }

    /// Authenticates an upload with the key of the purse it names, without the book: a server
    /// checks the MAC before it reads anything from its database. An upload for a purse id the
    /// operator never assigned fails here too (nobody holds its key). Changes nothing.
    pub fn open_upload(&self, bytes: &[u8]) -> Result<SyncUpload, PurseError> {
        let (operator, purse_id) = peek_upload(bytes)?;
        if operator != self.operator {
            return Err(PurseError::WrongOperator {
                expected: self.operator,
                found: operator,
            });
        }
        SyncUpload::open(bytes, &self.purse_keys(purse_id).sync)
    }
}

/// A ledger account a posting moves money between.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum LedgerAccount {
    /// A purse's shadow account.
    Purse(PurseId),
    /// Value in flight: one side of an offline payment reported, or an operator credit not yet
    /// applied by its purse.
    Suspense,
    /// The operator's float (source of top-ups).
    OperatorFloat,
    /// What the operator owes an agent for value the agent handed back (settlement), until paid.
    AgentSettlement(PurseId),
}

/// One ledger transfer to make. `transfer_id` is deterministic: processing the same upload twice
/// yields the same ids, so the ledger's idempotency absorbs retries.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Posting {
    /// Unique, deterministic id.
    pub transfer_id: String,
    /// Debited account.
    pub from: LedgerAccount,
    /// Credited account.
    pub to: LedgerAccount,
    /// How much.
    pub amount: Amount,
    /// What it is, for statements.
    pub memo: String,
}

/// A payment both sides have now reported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MatchedPayment {
    /// Payer purse.
    pub payer: PurseId,
    /// Payer's counter of the debit.
    pub payer_counter: u32,
    /// Payee purse.
    pub payee: PurseId,
    /// Payee's counter of the credit.
    pub payee_counter: u32,
    /// Amount.
    pub amount: Amount,
}

/// Why a purse goes to the fraud queue, with the evidence.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum FlagKind {
    /// The purse reported a credit that no payer's debit matches, although the payer has synced
    /// since (or the payer is unknown).
    CreditWithoutDebit {
        /// The payee's counter of the credit.
        payee_counter: u32,
        /// The payer named.
        payer: Phone,
        /// Amount.
        amount: Amount,
        /// N_B.
        nonce_b: u16,
        /// N_A.
        nonce_a: u16,
    },
    /// Entries are missing between two counters.
    CounterGap {
        /// The counter expected next.
        expected: u32,
        /// The counter found.
        found: u32,
    },
    /// Two different entries carry one counter: a cloned purse.
    DuplicateCounter {
        /// The counter.
        counter: u32,
        /// Digest of the entry seen first (`None` when it was already confirmed and pruned).
        first: Option<u64>,
        /// Digest of the other entry.
        second: u64,
    },
    /// The reported balance is not the shadow balance.
    BalanceMismatch {
        /// Reported by the purse, in minor units.
        reported_minor: i64,
        /// Shadow balance, in minor units.
        shadow_minor: i64,
    },
    /// Many wrong Code 2 entries since the last sync: someone is guessing.
    FailedCodeEntries {
        /// How many.
        count: u16,
    },
    /// An authenticated upload reused an old sync sequence with new content: a cloned purse.
    StaleSequence {
        /// The sequence received.
        sequence: u32,
        /// The last accepted.
        last_accepted: u32,
    },
    /// A credit the operator never offered (an operator credit applied twice, or a payment credit
    /// with no debit behind it).
    UnexpectedCredit {
        /// The purse's counter of it.
        counter: u32,
        /// Amount.
        amount: Amount,
    },
    /// On the payer: a payee reported a payment from this purse that the purse's own log does
    /// not hold although it synced since. Its log was rolled back (a restored or cloned file).
    MissingFromPayerLog {
        /// The payee who reported it.
        payee: Phone,
        /// The payee's counter of the credit.
        payee_counter: u32,
        /// Amount.
        amount: Amount,
        /// N_B.
        nonce_b: u16,
        /// N_A.
        nonce_a: u16,
    },
    /// On the payer: payees reported more from this purse, not yet in its log, than it may spend
    /// between two syncs. Only a restored or cloned purse can.
    SpentPastLimit {
        /// Reported by payees and not in the payer's log, in minor units.
        unreported_minor: i64,
        /// What the payer may spend between syncs, in minor units.
        allowed_minor: i64,
    },
    /// On the payee: the same payment (payer, N_B, N_A, amount, key) credited a second time: a
    /// recorded Code 2 replayed into a restored purse.
    DuplicateCredit {
        /// The payee's counter of the second credit.
        counter: u32,
        /// The payer named.
        payer: Phone,
        /// Amount.
        amount: Amount,
    },
    /// On the payer: a payment made with a scheme key retired two rotations ago that the purse
    /// no longer held after the last answer it applied (it had older keys than its own last
    /// sync gave it): a restored file or an older copy. Evidence; blocks.
    RetiredKeyPayment {
        /// The payer's counter of the debit.
        counter: u32,
        /// The epoch used.
        epoch: u32,
        /// The operator's generation epoch.
        generation_epoch: u32,
    },
    /// On the payer, as an incident: a payment made with a scheme key the purse held after its
    /// last sync, which has retired since, that reached the operator (from either side) only
    /// after the validity that sync gave. A purse that paid in time and synced late and one
    /// that paid past its validity with its clock set back look the same to the operator, so
    /// this accuses no one and does not block: the purse spent at most what it held (its own
    /// balance, within its offline limit since that sync).
    RetiredKeyPaymentUnverifiable {
        /// The payer's counter of the debit.
        counter: u32,
        /// The epoch used.
        epoch: u32,
        /// The operator's generation epoch.
        generation_epoch: u32,
        /// The end of the validity the payer's last applied sync gave it.
        valid_until: Timestamp,
    },
    /// On the payer named: wrong Code 2 entries were typed at a payee for requests naming it.
    /// Attempted, not proven: the payee may have mistyped, or made them up.
    WrongCodesAttempted {
        /// The payee that typed them.
        payee: Phone,
        /// How many since the payee's last sync.
        count: u8,
    },
}

impl FlagKind {
    /// A stable snake_case name for fraud queues and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            FlagKind::CreditWithoutDebit { .. } => "credit_without_debit",
            FlagKind::CounterGap { .. } => "counter_gap",
            FlagKind::DuplicateCounter { .. } => "duplicate_counter",
            FlagKind::BalanceMismatch { .. } => "balance_mismatch",
            FlagKind::FailedCodeEntries { .. } => "failed_code_entries",
            FlagKind::StaleSequence { .. } => "stale_sequence",
            FlagKind::UnexpectedCredit { .. } => "unexpected_credit",
            FlagKind::MissingFromPayerLog { .. } => "payment_missing_from_payer_log",
            FlagKind::SpentPastLimit { .. } => "spent_past_limit",
            FlagKind::DuplicateCredit { .. } => "duplicate_credit",
            FlagKind::RetiredKeyPayment { .. } => "payment_with_retired_key",
            FlagKind::RetiredKeyPaymentUnverifiable { .. } => "retired_key_payment_unverifiable",
            FlagKind::WrongCodesAttempted { .. } => "wrong_codes_attempted",
        }
    }

    /// True when the flag is evidence enough to block the purse it names at once.
    pub fn blocks(&self) -> bool {
        matches!(
            self,
            FlagKind::DuplicateCounter { .. }
                | FlagKind::CounterGap { .. }
                | FlagKind::StaleSequence { .. }
                | FlagKind::MissingFromPayerLog { .. }
                | FlagKind::SpentPastLimit { .. }
                | FlagKind::DuplicateCredit { .. }
                | FlagKind::RetiredKeyPayment { .. }
        )
    }
}

/// A fraud-queue item.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Flag {
    /// The purse concerned.
    pub purse: PurseId,
    /// Its phone.
    pub phone: Phone,
    /// The upload that raised it.
    pub sync_sequence: u32,
    /// What and the evidence.
    pub kind: FlagKind,
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.purse.0 == 0 {
            write!(f, "{}: ", self.phone)?;
        } else {
            write!(
                f,
                "purse {} ({}), sync {}: ",
                self.purse, self.phone, self.sync_sequence
            )?;
        }
        match &self.kind {
            FlagKind::CreditWithoutDebit {
                payee_counter,
                payer,
                amount,
                nonce_b,
                nonce_a,
            } => write!(
                f,
                "credit #{payee_counter} of {amount} names {payer} (N_B {nonce_b:04}, N_A {nonce_a:02}), a purse this operator never issued"
            ),
            FlagKind::CounterGap { expected, found } => {
                write!(f, "counter gap: expected #{expected}, found #{found}")
            }
            FlagKind::DuplicateCounter {
                counter,
                first,
                second,
            } => match first {
                Some(first) => write!(
                    f,
                    "two entries with counter #{counter} (digests {first:016x} and {second:016x}): cloned purse"
                ),
                None => write!(
                    f,
                    "entry #{counter} (digest {second:016x}) re-sent after it was confirmed: cloned purse"
                ),
            },
            FlagKind::BalanceMismatch {
                reported_minor,
                shadow_minor,
            } => write!(
                f,
                "reported balance {reported_minor} minor units, shadow balance {shadow_minor}"
            ),
            FlagKind::FailedCodeEntries { count } => write!(
                f,
                "{count} wrong Code 2 entries were attempted at this purse since its last sync, for several payers"
            ),
            FlagKind::StaleSequence {
                sequence,
                last_accepted,
            } => write!(
                f,
                "upload reuses sync sequence {sequence} (last accepted {last_accepted}) with new entries: cloned purse"
            ),
            FlagKind::UnexpectedCredit { counter, amount } => {
                write!(
                    f,
                    "credit #{counter} of {amount} was never offered by the operator"
                )
            }
            FlagKind::MissingFromPayerLog {
                payee,
                payee_counter,
                amount,
                ..
            } => write!(
                f,
                "paid {amount} to {payee} (their credit #{payee_counter}), but this purse's log does not hold the payment although it synced since: restored or cloned purse; blocked"
            ),
            FlagKind::SpentPastLimit {
                unreported_minor,
                allowed_minor,
            } => write!(
                f,
                "payees reported {unreported_minor} minor units paid by this purse and not in its log, more than the {allowed_minor} it may spend between syncs: restored or cloned purse; blocked"
            ),
            FlagKind::DuplicateCredit {
                counter,
                payer,
                amount,
            } => write!(
                f,
                "credit #{counter} of {amount} from {payer} repeats a payment this purse was already credited: replayed Code 2; blocked"
            ),
            FlagKind::RetiredKeyPayment {
                counter,
                epoch,
                generation_epoch,
            } => write!(
                f,
                "payment #{counter} was made with key epoch {epoch}, retired (the operator is at epoch {generation_epoch}), which the purse no longer held after its last sync: a restored or copied purse; blocked"
            ),
            FlagKind::RetiredKeyPaymentUnverifiable {
                counter,
                epoch,
                generation_epoch,
                valid_until,
            } => write!(
                f,
                "payment #{counter} under key epoch {epoch}, retired since (the operator is at epoch {generation_epoch}), reached the operator only after this purse's validity ended ({} s since 1970): made in time by a purse that synced late, or past its validity with the clock set back; unverifiable, not blocked",
                valid_until.0
            ),
            FlagKind::WrongCodesAttempted { payee, count } => write!(
                f,
                "{count} wrong Code 2 entries were attempted at {payee} for payments from this number (attempted: a mistake, or made up by either side)"
            ),
        }
    }
}

/// An operator credit waiting for its purse's next sync.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueuedCredit {
    /// Id (each is applied once).
    pub credit_id: u64,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Memo.
    pub memo: String,
}

/// A pairwise-key ticket waiting for its purse's next sync.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueuedTicket {
    /// The other purse.
    pub peer: PurseId,
    /// Its phone.
    pub peer_phone: Phone,
    /// Key version.
    pub version: u16,
    /// Answer sequence it was last sent in (0: not yet).
    pub sent_in: u32,
}

/// The operator's picture of one purse.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ShadowAccount {
    /// Purse id.
    pub purse_id: PurseId,
    /// Phone.
    pub phone: Phone,
    /// Customer or agent.
    pub kind: PurseKind,
    /// Sum of everything the purse reported, in minor units (negative only after fraud).
    pub balance_minor: i64,
    /// Limits to renew at each sync (`valid_until` is recomputed from `validity_seconds`).
    pub limits: OfflineLimits,
    /// How long each sync makes the purse valid.
    pub validity_seconds: u64,
    /// Blocked by the operator (or automatically, as a clone).
    pub blocked: bool,
    /// The operator asked to unblock the PIN.
    pub pin_unblock_requested: bool,
    /// The answer sequence the unblock was sent in.
    pub pin_unblock_sent_in: u32,
    /// Last accepted upload sequence.
    pub last_sequence: u32,
    /// Tag of the last accepted upload.
    pub last_upload_tag: [u8; 16],
    /// Highest counter received.
    pub received_through: u32,
    /// Highest counter the purse confirmed it dropped (its acknowledged-through).
    pub confirmed_through: u32,
    /// Digests of entries received but not yet confirmed, by counter.
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    pub digests: BTreeMap<u32, Vec<u64>>,
    /// Last answer sequence built.
    pub last_answer_sequence: u32,
    /// Balance the purse last reported, in minor units.
    pub reported_balance_minor: u64,
    /// When it last synced (operator clock).
    pub last_sync_at: Timestamp,
    /// Operator credits waiting.
    pub queued_credits: Vec<QueuedCredit>,
    /// Tickets waiting.
    pub queued_tickets: Vec<QueuedTicket>,
    /// As payer: payments payees reported from this purse that its log has not (yet) shown, in
    /// minor units. An honest purse keeps this within what it may spend between two syncs.
    #[cfg_attr(feature = "serde", serde(default))]
    pub unreported_debits_minor: i64,
    /// As payee: (epoch, digest) of the typed credits it reported, so a credit repeated into a
    /// restored purse is caught. Scheme-key credits are dropped when their epoch retires;
    /// pairwise ones (epoch `u32::MAX`) after [`CREDITED_DIGESTS_MAX`].
    #[cfg_attr(feature = "serde", serde(default))]
    pub credited: Vec<(u32, u64)>,
    /// The newest scheme epoch distributed when the purse was blocked: once the generation epoch
    /// passes it, no payee that synced since can be paid by this purse.
    #[cfg_attr(feature = "serde", serde(default))]
    pub blocked_at_epoch: Option<u32>,
    /// Moved by the operator to another purse (a lost phone), in minor units: the purse itself
    /// still reports it, so balance checks add it back.
    #[cfg_attr(feature = "serde", serde(default))]
    pub moved_out_minor: i64,
    /// Agent settlements waiting for the purse's next sync (value the operator takes back).
    #[cfg_attr(feature = "serde", serde(default))]
    pub queued_settlements: Vec<QueuedCredit>,
    /// Value the agent handed back and the operator has not yet paid for, in minor units.
    #[cfg_attr(feature = "serde", serde(default))]
    pub settlement_owed_minor: i64,
    /// What each answer not yet superseded gave the purse (provisioning is sequence 0), oldest
    /// first: the one the purse says it applied dates its payments for the retired-key check.
    /// Empty in a book written before it (then a retired-key payment is judged by time alone).
    #[cfg_attr(feature = "serde", serde(default))]
    pub answer_terms: Vec<AnswerTerms>,
    /// PIN reset codes issued to the holder (code number n is the n-th); only the count is kept,
    /// never a code.
    #[cfg_attr(feature = "serde", serde(default))]
    pub pin_resets_issued: u32,
    /// Its trust class, set at provisioning (a book written before classes: software).
    #[cfg_attr(feature = "serde", serde(default))]
    pub trust_class: crate::trust::TrustClass,
    /// The holder's language for what the operator sends them (a statement by SMS), as a code
    /// (`en`, `sw`, `fr`); `None`: the operator's default.
    #[cfg_attr(feature = "serde", serde(default))]
    pub language: Option<String>,
}

/// What one answer (or the provisioning) gave a purse, for dating its later payments.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AnswerTerms {
    /// The answer's sequence (0: provisioning).
    pub sequence: u32,
    /// The oldest scheme epoch the purse may hold once it applied it (a purse keeps the two
    /// newest; a blocked purse or a partial round keeps what it had).
    pub held_from_epoch: u32,
    /// The validity it gave.
    pub valid_until: Timestamp,
}

/// Answer terms a shadow keeps (answers built but not yet known to be applied).
pub const ANSWER_TERMS_MAX: usize = 16;

/// What the operator knows, at an upload, of the keys and validity its payments were made
/// under.
#[derive(Clone, Copy, Debug)]
struct PaymentDating {
    terms: PaymentTerms,
    now: Timestamp,
}

#[derive(Clone, Copy, Debug)]
enum PaymentTerms {
    /// The answer the purse applied (or, in a book written before the terms were kept, its
    /// last sync: `held_from_epoch` unknown).
    Held {
        held_from_epoch: Option<u32>,
        valid_until: Timestamp,
    },
    /// The purse names an answer older than one it already applied: a restored or copied
    /// file.
    WentBack,
}

impl PaymentDating {
    fn of(shadow: &ShadowAccount, answer_applied: u32, now: Timestamp) -> Self {
        let terms = match shadow
            .answer_terms
            .iter()
            .find(|terms| terms.sequence == answer_applied)
        {
            Some(terms) => PaymentTerms::Held {
                held_from_epoch: Some(terms.held_from_epoch),
                valid_until: terms.valid_until,
            },
            None if shadow
                .answer_terms
                .first()
                .is_some_and(|oldest| answer_applied < oldest.sequence) =>
            {
                PaymentTerms::WentBack
            }
            None => PaymentTerms::Held {
                held_from_epoch: None,
                valid_until: shadow.last_sync_at.plus_seconds(shadow.validity_seconds),
            },
        };
        PaymentDating { terms, now }
    }
}

/// What moving a lost purse's balance did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceMove {
    /// The posting `purse(lost) → suspense`, if anything moved.
    pub posting: Option<Posting>,
    /// Moved now (queued as an operator credit for the new purse), in minor units.
    pub moved_minor: i64,
    /// Held back: what the lost purse could still spend offline, in minor units.
    pub held_minor: i64,
}

/// Typed credits a shadow remembers per purse for duplicate detection.
pub const CREDITED_DIGESTS_MAX: usize = 4096;

/// (payee, payer, N_B, N_A, amount, payer counter), numbers only so it serialises anywhere.
pub type DebitKey = (u64, u64, u16, u16, u64, u32);
/// (payer, payee, N_B, N_A, amount, payee counter).
pub type CreditKey = (u64, u64, u16, u16, u64, u32);

/// A reported debit whose credit has not been reported.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OpenDebit {
    /// Payer purse.
    pub payer: PurseId,
}

/// A reported credit whose debit has not been reported.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OpenCredit {
    /// Payee purse.
    pub payee: PurseId,
    /// The payer's last answer sequence when the credit was reported; once the payer applies a
    /// later answer, its debit must have arrived.
    pub payer_answer_at_report: u32,
    /// Already flagged.
    pub flagged: bool,
    /// When the payee reported it (operator clock; `None` in a book written before): the
    /// payment was made by then.
    #[cfg_attr(feature = "serde", serde(default))]
    pub reported_at: Option<Timestamp>,
}

/// Everything the operator knows about purses: shadow accounts and unmatched payments.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OperatorBook {
    operator: OperatorId,
    currency: Currency,
    scheme_epoch: u32,
    generation_epoch: u32,
    next_purse_id: u64,
    next_credit_id: u64,
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    purses: BTreeMap<PurseId, ShadowAccount>,
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    phones: BTreeMap<Phone, PurseId>,
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    open_debits: BTreeMap<DebitKey, OpenDebit>,
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    open_credits: BTreeMap<CreditKey, OpenCredit>,
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    pairwise_versions: BTreeMap<(PurseId, PurseId), u16>,
    /// Phones of blocked purses (every answer lists them), kept beside the shadows so that an
    /// answer never has to look at every purse.
    #[cfg_attr(feature = "serde", serde(default))]
    blocked: BTreeSet<Phone>,
    /// When the scheme key was last rotated by [`OperatorBook::rotate_scheme_key_at`].
    #[cfg_attr(feature = "serde", serde(default))]
    last_rotation_at: Option<Timestamp>,
    /// The longest validity any purse was ever given (it never shrinks: a purse keeps the
    /// validity it synced with until its next sync).
    #[cfg_attr(feature = "serde", serde(default = "validity_unknown"))]
    longest_validity_seconds: u64,
}

/// What a book written before the rotation guard knew of its purses' validity: nothing, so the
/// longest any purse may have been given.
#[cfg(feature = "serde")]
fn validity_unknown() -> u64 {
    VALIDITY_DAYS_MAX * SECONDS_PER_DAY
}

/// The part of the book every operation reads: small, so a server can store it as one record and
/// keep each purse's shadow and each pair's open payments in records of their own.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BookHeader {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u8,
    /// The operator.
    pub operator: OperatorId,
    /// The currency.
    pub currency: Currency,
    /// Newest scheme-key epoch distributed.
    pub scheme_epoch: u32,
    /// Epoch payees make Code 1 with.
    pub generation_epoch: u32,
    /// Next purse id to assign.
    pub next_purse_id: u64,
    /// Next operator-credit id to assign.
    pub next_credit_id: u64,
    /// Phones of blocked purses.
    pub blocked: BTreeSet<Phone>,
    /// When the scheme key was last rotated (none before the first guarded rotation).
    #[cfg_attr(feature = "serde", serde(default))]
    pub last_rotation_at: Option<Timestamp>,
    /// The longest validity any purse was ever given, in seconds (a header written before the
    /// rotation guard reads as [`VALIDITY_DAYS_MAX`] days).
    #[cfg_attr(feature = "serde", serde(default = "validity_unknown"))]
    pub longest_validity_seconds: u64,
}

/// A book taken apart, or the pieces of it one operation needs. A server loads the pieces an
/// operation touches ([`sync_counterparties`] says which for an upload), builds a partial book
/// with [`OperatorBook::from_parts`], runs the operation, and stores what
/// [`OperatorBook::into_parts`] gives back. Operations only look at the purses they name, their
/// counterparties and the open payments between them, so a partial book holding those answers
/// exactly as the whole book would.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BookParts {
    /// Shared state.
    pub header: BookHeader,
    /// Shadow accounts.
    pub shadows: Vec<ShadowAccount>,
    /// Open debits (payer reported, payee not yet).
    pub open_debits: Vec<(DebitKey, OpenDebit)>,
    /// Open credits (payee reported, payer not yet).
    pub open_credits: Vec<(CreditKey, OpenCredit)>,
    /// Pairwise-key versions by purse pair (lower id first).
    pub pairwise_versions: Vec<((PurseId, PurseId), u16)>,
}

/// Every phone besides the uploading purse's own whose records reconciling `upload` may read or
/// write: payees of its debits, payers of its credits, and peers it asks pairwise keys for.
pub fn sync_counterparties(upload: &SyncUpload) -> BTreeSet<Phone> {
    let mut phones = BTreeSet::new();
    for entry in &upload.entries {
        match entry.kind {
            EntryKind::Debit { payee, .. } => {
                phones.insert(payee);
            }
            EntryKind::Credit { payer, .. } | EntryKind::PaymentCredit { payer, .. } => {
                phones.insert(payer);
            }
            EntryKind::OperatorCredit { .. } | EntryKind::Settlement { .. } => {}
        }
    }
    phones.extend(upload.pairwise_requests.iter().copied());
    phones
}

/// What one upload produced.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SyncOutcome {
    /// The purse.
    pub purse_id: PurseId,
    /// The upload's sequence.
    pub sequence: u32,
    /// Ledger transfers to make (in order), idempotent by id.
    pub postings: Vec<Posting>,
    /// Payments now matched.
    pub matched: Vec<MatchedPayment>,
    /// Fraud-queue items.
    pub flags: Vec<Flag>,
    /// The answer to send back.
    pub answer: Vec<u8>,
    /// Entries the upload carried.
    pub entries: usize,
    /// The balance the purse reported, in minor units.
    pub reported_balance_minor: i64,
}

/// Result of reconciling one upload (before the answer is built).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Reconciliation {
    /// Ledger transfers.
    pub postings: Vec<Posting>,
    /// Payments now matched.
    pub matched: Vec<MatchedPayment>,
    /// Fraud-queue items.
    pub flags: Vec<Flag>,
}

/// A digest of what makes a typed payment unique: payer, N_B, N_A, amount and key.
pub fn credit_digest(payer: Phone, nonce_b: u16, nonce_a: u16, amount: Amount, key: KeyRef) -> u64 {
    let mut w = Writer::new();
    w.phone(payer);
    w.u16(nonce_b);
    w.u16(nonce_a);
    w.minor(amount);
    key.encode(&mut w);
    let hash = Sha256::digest(&w.bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(out)
}

/// A short digest of an entry's bytes, for duplicate detection and transfer ids.
pub fn entry_digest(entry: &LogEntry) -> u64 {
    let mut w = Writer::new();
    entry.encode(&mut w);
    let hash = Sha256::digest(&w.bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(out)
}

fn signed(amount: Amount) -> i64 {
    amount.minor_signed()
}

impl OperatorBook {
    /// An empty book for one operator and currency, at scheme-key epoch 1.
    pub fn new(operator: OperatorId, currency: Currency) -> OperatorBook {
        OperatorBook {
            operator,
            currency,
            scheme_epoch: 1,
            generation_epoch: 1,
            next_purse_id: 1,
            next_credit_id: 1,
            purses: BTreeMap::new(),
            phones: BTreeMap::new(),
            open_debits: BTreeMap::new(),
            open_credits: BTreeMap::new(),
            pairwise_versions: BTreeMap::new(),
            blocked: BTreeSet::new(),
            last_rotation_at: None,
            longest_validity_seconds: VALIDITY_DAYS_DEFAULT * SECONDS_PER_DAY,
        }
    }

    /// The shared state.
    pub fn header(&self) -> BookHeader {
        BookHeader {
            version: FORMAT_VERSION,
            operator: self.operator,
            currency: self.currency,
            scheme_epoch: self.scheme_epoch,
            generation_epoch: self.generation_epoch,
            next_purse_id: self.next_purse_id,
            next_credit_id: self.next_credit_id,
            blocked: self.blocked.clone(),
            last_rotation_at: self.last_rotation_at,
            longest_validity_seconds: self.longest_validity_seconds,
        }
    }

    /// A (possibly partial) book from stored pieces. Refuses an unknown format version, a shadow
    /// in another currency, and two shadows with one phone.
    pub fn from_parts(parts: BookParts) -> Result<OperatorBook, PurseError> {
        let BookParts {
            header,
            shadows,
            open_debits,
            open_credits,
            pairwise_versions,
        } = parts;
        if header.version != FORMAT_VERSION {
            return Err(PurseError::UnsupportedVersion {
                found: header.version,
            });
        }
        let mut book = OperatorBook::new(header.operator, header.currency);
        book.scheme_epoch = header.scheme_epoch;
        book.generation_epoch = header.generation_epoch;
        book.next_purse_id = header.next_purse_id;
        book.next_credit_id = header.next_credit_id;
        book.blocked = header.blocked;
        book.last_rotation_at = header.last_rotation_at;
        book.longest_validity_seconds = header.longest_validity_seconds;
        for shadow in shadows {
            if shadow.limits.max_balance.currency() != book.currency {
                return Err(PurseError::Malformed("shadow currency"));
            }
            if book.phones.insert(shadow.phone, shadow.purse_id).is_some() {
                return Err(PurseError::Malformed("two shadows with one phone"));
            }
            book.purses.insert(shadow.purse_id, shadow);
        }
        book.open_debits = open_debits.into_iter().collect();
        book.open_credits = open_credits.into_iter().collect();
        book.pairwise_versions = pairwise_versions.into_iter().collect();
        Ok(book)
    }

    /// The book in pieces (the inverse of [`OperatorBook::from_parts`]).
    pub fn into_parts(self) -> BookParts {
        let header = self.header();
        BookParts {
            header,
            shadows: self.purses.into_values().collect(),
            open_debits: self.open_debits.into_iter().collect(),
            open_credits: self.open_credits.into_iter().collect(),
            pairwise_versions: self.pairwise_versions.into_iter().collect(),
        }
    }

    /// The operator.
    pub fn operator(&self) -> OperatorId {
        self.operator
    }
    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// The newest scheme-key epoch distributed.
    pub fn scheme_epoch(&self) -> u32 {
        self.scheme_epoch
    }
    /// The scheme-key epoch payees make Code 1 with.
    pub fn generation_epoch(&self) -> u32 {
        self.generation_epoch
    }
    /// A shadow account.
    pub fn shadow(&self, purse_id: PurseId) -> Option<&ShadowAccount> {
        self.purses.get(&purse_id)
    }
    /// The purse with this phone.
    pub fn purse_by_phone(&self, phone: Phone) -> Option<PurseId> {
        self.phones.get(&phone).copied()
    }
    /// The shadow account of the purse with this phone (`admin purse balance --phone`).
    pub fn shadow_by_phone(&self, phone: Phone) -> Result<&ShadowAccount, PurseError> {
        self.phones
            .get(&phone)
            .and_then(|id| self.purses.get(id))
            .ok_or(PurseError::UnknownPhone(phone))
    }
    /// All shadow accounts.
    pub fn shadows(&self) -> impl Iterator<Item = &ShadowAccount> {
        self.purses.values()
    }
    /// What the suspense account should hold, in minor units: open debits plus undelivered
    /// operator credits, minus open credits. Zero when everything is matched and delivered.
    pub fn suspense_minor(&self) -> i64 {
        let debits: i64 = self.open_debits.keys().map(|key| key.4 as i64).sum();
        let credits: i64 = self.open_credits.keys().map(|key| key.4 as i64).sum();
        let queued: i64 = self
            .purses
            .values()
            .flat_map(|shadow| &shadow.queued_credits)
            .map(|credit| credit.amount_minor as i64)
            .sum();
        debits + queued - credits
    }
    /// Reported debits still waiting for their credit.
    pub fn open_debit_count(&self) -> usize {
        self.open_debits.len()
    }
    /// Reported credits still waiting for their debit.
    pub fn open_credit_count(&self) -> usize {
        self.open_credits.len()
    }

    fn shadow_mut(&mut self, purse_id: PurseId) -> Result<&mut ShadowAccount, PurseError> {
        self.purses
            .get_mut(&purse_id)
            .ok_or(PurseError::UnknownPurse(purse_id))
    }

    /// Provisions a purse for `phone` with default limits; returns what goes into its secure
    /// element. The per-purse key is derived, never stored.
    pub fn provision(
        &mut self,
        secrets: &OperatorSecrets,
        phone: Phone,
        kind: PurseKind,
        now: Timestamp,
    ) -> Result<Provisioning, PurseError> {
        self.provision_as(
            secrets,
            phone,
            kind,
            crate::trust::TrustClass::Software,
            now,
        )
    }

    /// [`OperatorBook::provision`] in a trust class: the purse gets that class's limits, and
    /// later limits are held to them. The hardware class is for purses personalised into a SIM
    /// applet only (see [`crate::trust`]).
    pub fn provision_as(
        &mut self,
        secrets: &OperatorSecrets,
        phone: Phone,
        kind: PurseKind,
        class: crate::trust::TrustClass,
        now: Timestamp,
    ) -> Result<Provisioning, PurseError> {
        self.check_operator(secrets)?;
        if self.phones.contains_key(&phone) {
            return Err(PurseError::PhoneTaken(phone));
        }
        let purse_id = PurseId(self.next_purse_id);
        self.next_purse_id += 1;
        let limits = crate::trust::class_limits(kind, class, self.currency, now);
        self.purses.insert(
            purse_id,
            ShadowAccount {
                purse_id,
                phone,
                kind,
                balance_minor: 0,
                limits,
                validity_seconds: VALIDITY_DAYS_DEFAULT * SECONDS_PER_DAY,
                blocked: false,
                pin_unblock_requested: false,
                pin_unblock_sent_in: 0,
                last_sequence: 0,
                last_upload_tag: [0; 16],
                received_through: 0,
                confirmed_through: 0,
                digests: BTreeMap::new(),
                last_answer_sequence: 0,
                reported_balance_minor: 0,
                last_sync_at: now,
                queued_credits: Vec::new(),
                queued_tickets: Vec::new(),
                unreported_debits_minor: 0,
                credited: Vec::new(),
                blocked_at_epoch: None,
                moved_out_minor: 0,
                queued_settlements: Vec::new(),
                settlement_owed_minor: 0,
                answer_terms: alloc::vec![AnswerTerms {
                    sequence: 0,
                    held_from_epoch: self.generation_epoch,
                    valid_until: limits.valid_until,
                }],
                pin_resets_issued: 0,
                trust_class: class,
                language: None,
            },
        );
        self.phones.insert(phone, purse_id);
        Ok(Provisioning {
            operator: self.operator,
            purse_id,
            phone,
            kind,
            currency: self.currency,
            purse_key: secrets.purse_key(purse_id),
            scheme_epoch: self.generation_epoch,
            scheme_key: secrets.scheme_key(self.generation_epoch),
            limits,
        })
    }

    fn check_operator(&self, secrets: &OperatorSecrets) -> Result<(), PurseError> {
        if secrets.operator != self.operator {
            return Err(PurseError::WrongOperator {
                expected: self.operator,
                found: secrets.operator,
            });
        }
        Ok(())
    }

    /// Queues an operator credit (a float top-up for an agent, say) for the purse's next sync.
    /// Returns the posting `operator float → suspense`; the purse's report of applying it later
    /// posts `suspense → purse`.
    pub fn queue_operator_credit(
        &mut self,
        purse_id: PurseId,
        amount: Amount,
        memo: &str,
    ) -> Result<Posting, PurseError> {
        if amount.currency() != self.currency {
            return Err(PurseError::CurrencyMismatch {
                purse: self.currency,
                given: amount.currency(),
            });
        }
        if amount.is_zero() {
            return Err(PurseError::ZeroAmount);
        }
        if memo.len() > MEMO_BYTES_MAX {
            return Err(PurseError::Malformed("memo too long"));
        }
        let credit_id = self.next_credit_id;
        let shadow = self.shadow_mut(purse_id)?;
        shadow.queued_credits.push(QueuedCredit {
            credit_id,
            amount_minor: amount.minor(),
            memo: memo.into(),
        });
        self.next_credit_id += 1;
        Ok(Posting {
            transfer_id: format!("purse1-credit-{purse_id}-{credit_id}"),
            from: LedgerAccount::OperatorFloat,
            to: LedgerAccount::Suspense,
            amount,
            memo: format!("operator credit {credit_id} for purse {purse_id}: {memo}"),
        })
    }

    /// Rotates the scheme key in two phases at once: payees start making Code 1 with the epoch
    /// distributed at the previous rotation, and a new epoch is distributed (held, not yet used).
    /// Rotate no more often than the purses' validity period: every purse that may still pay has
    /// then synced since the last rotation and holds the generation epoch. Returns the new epoch.
    ///
    /// This is the bare step, for tools that keep time themselves; the operator's rule is
    /// [`OperatorBook::rotate_scheme_key_at`], which enforces that period.
    pub fn rotate_scheme_key(&mut self) -> u32 {
        self.generation_epoch = self.scheme_epoch;
        self.scheme_epoch += 1;
        self.scheme_epoch
    }

    /// The first moment a rotation is safe: the previous guarded rotation plus the longest
    /// validity any purse was given (`None`: now). By then every purse that may still pay has
    /// synced since the previous rotation (an unsynced one has expired), so it holds the epoch
    /// the next rotation makes the generation epoch, and no honest purse pays with a retired key.
    pub fn next_rotation_from(&self) -> Option<Timestamp> {
        self.last_rotation_at
            .map(|last| last.plus_seconds(self.longest_validity_seconds))
    }

    /// Rotates the scheme key at `now` ([`OperatorBook::rotate_scheme_key`]) if the previous
    /// rotation is at least the longest purse validity ago; otherwise refuses with
    /// [`PurseError::RotationTooSoon`] and changes nothing. `force` rotates anyway — for a
    /// compromised scheme key only: purses that have not synced since the previous rotation
    /// and then pay are flagged (`payment_with_retired_key`) and their cases need a person.
    pub fn rotate_scheme_key_at(&mut self, now: Timestamp, force: bool) -> Result<u32, PurseError> {
        if let (Some(last), Some(earliest)) = (self.last_rotation_at, self.next_rotation_from())
            && now < earliest
            && !force
            && !crate::reverts::reverted(crate::reverts::ROTATION_GUARD)
        {
            return Err(PurseError::RotationTooSoon { last, earliest });
        }
        self.last_rotation_at = Some(now);
        Ok(self.rotate_scheme_key())
    }

    /// Sets a purse's limits (effective at its next sync).
    pub fn set_limits(
        &mut self,
        purse_id: PurseId,
        limits: OfflineLimits,
        validity_seconds: u64,
    ) -> Result<(), PurseError> {
        if limits.max_balance.currency() != self.currency {
            return Err(PurseError::CurrencyMismatch {
                purse: self.currency,
                given: limits.max_balance.currency(),
            });
        }
        let shadow = self.shadow_mut(purse_id)?;
        crate::trust::check_limits(shadow.kind, shadow.trust_class, &limits)?;
        shadow.limits = limits;
        shadow.validity_seconds = validity_seconds;
        self.longest_validity_seconds = self.longest_validity_seconds.max(validity_seconds);
        Ok(())
    }

    /// Blocks or unblocks a purse; every purse learns it at its next sync.
    pub fn set_blocked(&mut self, purse_id: PurseId, blocked: bool) -> Result<(), PurseError> {
        let epoch = self.scheme_epoch;
        let shadow = self.shadow_mut(purse_id)?;
        if blocked && !shadow.blocked {
            shadow.blocked_at_epoch = Some(epoch);
        }
        if !blocked {
            shadow.blocked_at_epoch = None;
        }
        shadow.blocked = blocked;
        let phone = shadow.phone;
        if blocked {
            self.blocked.insert(phone);
        } else {
            self.blocked.remove(&phone);
        }
        Ok(())
    }

    /// A lost phone: blocks the purse `lost` (every purse learns it at its next sync) and moves
    /// its shadow balance to the purse `new` (provisioned for the same person) as an operator
    /// credit delivered at `new`'s next sync. What the lost purse could still spend offline — its
    /// balance, at most its `max_spent_since_sync` — is held back until no payee that has synced
    /// can be paid by it any more (the generation epoch has passed every epoch it holds); call
    /// again then to move the rest.
    pub fn move_balance(&mut self, lost: PurseId, new: PurseId) -> Result<BalanceMove, PurseError> {
        if lost == new {
            return Err(PurseError::SelfPayment);
        }
        if self.shadow_mut(new)?.blocked {
            return Err(PurseError::PurseBlocked);
        }
        self.set_blocked(lost, true)?;
        let generation = self.generation_epoch;
        let shadow = self.shadow_mut(lost)?;
        // Payments payees reported from it that its log has not shown are spent already.
        let balance = (shadow.balance_minor - shadow.unreported_debits_minor).max(0);
        let keys_dead = shadow
            .blocked_at_epoch
            .is_some_and(|epoch| generation > epoch);
        let held = if keys_dead {
            0
        } else {
            balance.min(signed(shadow.limits.max_spent_since_sync))
        };
        let moved = balance - held;
        if moved <= 0 {
            return Ok(BalanceMove {
                posting: None,
                moved_minor: 0,
                held_minor: held,
            });
        }
        shadow.balance_minor -= moved;
        shadow.moved_out_minor += moved;
        let lost_phone = shadow.phone;
        let amount = Amount::from_minor(moved as u64, self.currency)?;
        let credit_id = self.next_credit_id;
        self.next_credit_id += 1;
        let memo = format!("moved from lost purse {lost_phone}");
        self.shadow_mut(new)?.queued_credits.push(QueuedCredit {
            credit_id,
            amount_minor: moved as u64,
            memo: memo.clone(),
        });
        Ok(BalanceMove {
            posting: Some(Posting {
                transfer_id: format!("purse1-move-{lost}-{credit_id}"),
                from: LedgerAccount::Purse(lost),
                to: LedgerAccount::Suspense,
                amount,
                memo,
            }),
            moved_minor: moved,
            held_minor: held,
        })
    }

    /// Agent settlement, step 1: the operator asks for `amount` of an agent purse's value back
    /// (cash-out of collected purse value); the purse gives it up at its next sync if its balance
    /// covers it, and its report posts `purse(agent) → settlement(agent)`. Returns the id.
    pub fn queue_settlement(
        &mut self,
        purse_id: PurseId,
        amount: Amount,
    ) -> Result<u64, PurseError> {
        if amount.currency() != self.currency {
            return Err(PurseError::CurrencyMismatch {
                purse: self.currency,
                given: amount.currency(),
            });
        }
        if amount.is_zero() {
            return Err(PurseError::ZeroAmount);
        }
        let debit_id = self.next_credit_id;
        let shadow = self.shadow_mut(purse_id)?;
        if shadow.kind != PurseKind::Agent {
            return Err(PurseError::Malformed("only an agent purse settles"));
        }
        if shadow.blocked {
            return Err(PurseError::PurseBlocked);
        }
        let queued: i64 = shadow
            .queued_settlements
            .iter()
            .map(|queued| queued.amount_minor as i64)
            .sum();
        if signed(amount) + queued > shadow.balance_minor {
            return Err(PurseError::InsufficientBalance {
                balance: Amount::from_minor(shadow.balance_minor.max(0) as u64, self.currency)?,
                amount,
            });
        }
        shadow.queued_settlements.push(QueuedCredit {
            credit_id: debit_id,
            amount_minor: amount.minor(),
            memo: String::new(),
        });
        self.next_credit_id += 1;
        Ok(debit_id)
    }

    /// Agent settlement, step 2: the operator paid the agent `amount` (cash, bank) for value it
    /// handed back: posts `settlement(agent) → operator float`. Refuses more than is owed.
    pub fn pay_settlement(
        &mut self,
        purse_id: PurseId,
        amount: Amount,
        reference: &str,
    ) -> Result<Posting, PurseError> {
        if amount.currency() != self.currency {
            return Err(PurseError::CurrencyMismatch {
                purse: self.currency,
                given: amount.currency(),
            });
        }
        if amount.is_zero() {
            return Err(PurseError::ZeroAmount);
        }
        if reference.is_empty() || reference.len() > MEMO_BYTES_MAX {
            return Err(PurseError::Malformed("payment reference"));
        }
        let shadow = self.shadow_mut(purse_id)?;
        if signed(amount) > shadow.settlement_owed_minor {
            return Err(PurseError::InsufficientBalance {
                balance: Amount::from_minor(
                    shadow.settlement_owed_minor.max(0) as u64,
                    amount.currency(),
                )?,
                amount,
            });
        }
        shadow.settlement_owed_minor -= signed(amount);
        Ok(Posting {
            transfer_id: format!("purse1-settle-paid-{purse_id}-{reference}"),
            from: LedgerAccount::AgentSettlement(purse_id),
            to: LedgerAccount::OperatorFloat,
            amount,
            memo: format!(
                "agent {} paid for settled purse value: {reference}",
                shadow.phone
            ),
        })
    }

    /// Unblocks the purse's PIN at its next sync.
    pub fn unblock_pin(&mut self, purse_id: PurseId) -> Result<(), PurseError> {
        let shadow = self.shadow_mut(purse_id)?;
        shadow.pin_unblock_requested = true;
        shadow.pin_unblock_sent_in = 0;
        Ok(())
    }

    /// Sets the holder's language (a code such as `sw`; `None`: the operator's default).
    pub fn set_language(
        &mut self,
        purse_id: PurseId,
        language: Option<String>,
    ) -> Result<(), PurseError> {
        self.shadow_mut(purse_id)?.language = language;
        Ok(())
    }

    /// Issues the purse's next PIN reset code, for a holder the operator has identified: returns
    /// the code (show it to the holder; never store or log it). The purse takes each code once,
    /// and only the next few after the last it used.
    pub fn issue_pin_reset(
        &mut self,
        secrets: &OperatorSecrets,
        purse_id: PurseId,
    ) -> Result<crate::pin_reset::ResetCode, PurseError> {
        self.check_operator(secrets)?;
        let operator = self.operator;
        let shadow = self.shadow_mut(purse_id)?;
        shadow.pin_resets_issued = shadow
            .pin_resets_issued
            .checked_add(1)
            .ok_or(PurseError::Malformed("PIN reset counter"))?;
        Ok(crate::pin_reset::reset_code(
            &secrets.purse_key(purse_id),
            operator,
            purse_id,
            shadow.pin_resets_issued,
        ))
    }

    /// Authenticates an upload and names its purse. Changes nothing.
    pub fn verify_upload(
        &self,
        secrets: &OperatorSecrets,
        bytes: &[u8],
    ) -> Result<SyncUpload, PurseError> {
        self.check_operator(secrets)?;
        let (operator, purse_id) = peek_upload(bytes)?;
        if operator != self.operator {
            return Err(PurseError::WrongOperator {
                expected: self.operator,
                found: operator,
            });
        }
        if !self.purses.contains_key(&purse_id) {
            return Err(PurseError::UnknownPurse(purse_id));
        }
        let keys = secrets.purse_keys(purse_id);
        let upload = SyncUpload::open(bytes, &keys.sync)?;
        if upload.balance.currency() != self.currency {
            return Err(PurseError::Malformed("upload currency"));
        }
        Ok(upload)
    }

    /// The sync endpoint in one call: authenticate, reconcile, build the answer. On error nothing
    /// changed.
    pub fn handle_upload(
        &mut self,
        secrets: &OperatorSecrets,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<SyncOutcome, PurseError> {
        self.handle_upload_answering(secrets, bytes, now, ANSWER_CREDITS_MAX)
    }

    /// [`OperatorBook::handle_upload`] with an answer carrying at most `credits_max` credits (the
    /// rest are offered at the next sync): an answer sent by SMS carries
    /// [`SMS_ANSWER_CREDITS_MAX`], so that it always fits [`SMS_PARTS_MAX`] texts.
    pub fn handle_upload_answering(
        &mut self,
        secrets: &OperatorSecrets,
        bytes: &[u8],
        now: Timestamp,
        credits_max: usize,
    ) -> Result<SyncOutcome, PurseError> {
        let upload = self.verify_upload(secrets, bytes)?;
        let tag = message_tag(bytes).ok_or(PurseError::Malformed("truncated"))?;
        let reconciliation = self.reconcile(&upload, tag, now)?;
        let answer = self.build_answer_with(secrets, &upload, now, credits_max)?;
        Ok(SyncOutcome {
            purse_id: upload.purse_id,
            sequence: upload.sequence,
            postings: reconciliation.postings,
            matched: reconciliation.matched,
            flags: reconciliation.flags,
            answer,
            entries: upload.entries.len(),
            reported_balance_minor: signed(upload.balance),
        })
    }

    /// Does a stale upload hold anything the operator has not seen?
    fn has_news(shadow: &ShadowAccount, upload: &SyncUpload) -> bool {
        upload.entries.iter().any(|entry| {
            entry.counter > shadow.received_through
                || (entry.counter > shadow.confirmed_through
                    && !shadow
                        .digests
                        .get(&entry.counter)
                        .is_some_and(|known| known.contains(&entry_digest(entry))))
        })
    }

    /// Posts an authenticated upload's entries and raises flags. A replayed upload (an old
    /// sequence with nothing new) is refused and changes nothing.
    pub fn reconcile(
        &mut self,
        upload: &SyncUpload,
        tag: [u8; 16],
        now: Timestamp,
    ) -> Result<Reconciliation, PurseError> {
        let purse_id = upload.purse_id;
        let shadow = self
            .purses
            .get(&purse_id)
            .ok_or(PurseError::UnknownPurse(purse_id))?;
        let phone = shadow.phone;
        let stale = upload.sequence <= shadow.last_sequence;
        if stale && (tag == shadow.last_upload_tag || !Self::has_news(shadow, upload)) {
            return Err(PurseError::SyncReplayed {
                sequence: upload.sequence,
                last_accepted: shadow.last_sequence,
            });
        }
        let mut out = Reconciliation::default();
        let flag = |kind: FlagKind| Flag {
            purse: purse_id,
            phone,
            sync_sequence: upload.sequence,
            kind,
        };
        if stale {
            out.flags.push(flag(FlagKind::StaleSequence {
                sequence: upload.sequence,
                last_accepted: shadow.last_sequence,
            }));
        }

        // What the answer the purse says it applied gave it: the keys and validity it paid under.
        let dating = {
            let shadow = self.shadow_mut(purse_id)?;
            PaymentDating::of(shadow, upload.answer_applied, now)
        };
        for entry in &upload.entries {
            let digest = entry_digest(entry);
            let shadow = self.shadow_mut(purse_id)?;
            if entry.counter <= shadow.confirmed_through {
                out.flags.push(flag(FlagKind::DuplicateCounter {
                    counter: entry.counter,
                    first: None,
                    second: digest,
                }));
                continue;
            }
            let known = shadow.digests.entry(entry.counter).or_default();
            if known.contains(&digest) {
                continue; // re-sent; posted already
            }
            if let Some(first) = known.first() {
                out.flags.push(flag(FlagKind::DuplicateCounter {
                    counter: entry.counter,
                    first: Some(*first),
                    second: digest,
                }));
            } else if entry.counter > shadow.received_through + 1 {
                out.flags.push(flag(FlagKind::CounterGap {
                    expected: shadow.received_through + 1,
                    found: entry.counter,
                }));
            }
            known.push(digest);
            shadow.received_through = shadow.received_through.max(entry.counter);
            self.post_entry(purse_id, phone, entry, digest, dating, &mut out, &flag)?;
        }

        let payer_answer = upload.answer_applied;
        let shadow = self.shadow_mut(purse_id)?;
        if !stale {
            // Answers older than the one the purse applied will never be applied.
            shadow
                .answer_terms
                .retain(|terms| terms.sequence >= payer_answer);
        }
        let confirmed = upload
            .acknowledged_through
            .min(shadow.received_through)
            .max(shadow.confirmed_through);
        shadow.confirmed_through = confirmed;
        shadow.digests = shadow.digests.split_off(&(confirmed + 1));
        if !stale
            && upload.counter == shadow.received_through
            && shadow.balance_minor + shadow.moved_out_minor != signed(upload.balance)
        {
            out.flags.push(flag(FlagKind::BalanceMismatch {
                reported_minor: signed(upload.balance),
                shadow_minor: shadow.balance_minor + shadow.moved_out_minor,
            }));
        }
        if upload.failed_code_entries >= FAILED_CODE_ENTRIES_FLAG_THRESHOLD {
            out.flags.push(flag(FlagKind::FailedCodeEntries {
                count: upload.failed_code_entries,
            }));
        }
        if stale {
            shadow.blocked = true;
        } else {
            shadow.last_sequence = upload.sequence;
            shadow.last_upload_tag = tag;
        }
        if shadow.pin_unblock_requested
            && shadow.pin_unblock_sent_in != 0
            && payer_answer >= shadow.pin_unblock_sent_in
        {
            shadow.pin_unblock_requested = false;
        }
        shadow
            .queued_tickets
            .retain(|ticket| ticket.sent_in == 0 || payer_answer < ticket.sent_in);
        shadow.reported_balance_minor = upload.balance.minor();
        shadow.last_sync_at = now;
        if stale {
            self.blocked.insert(phone);
        }

        // Credits naming this purse as payer: once it applied an answer built after they were
        // reported, their debits must have arrived.
        let low = (phone.number(), 0, 0, 0, 0, 0);
        let high = (
            phone.number(),
            u64::MAX,
            u16::MAX,
            u16::MAX,
            u64::MAX,
            u32::MAX,
        );
        // One round of a long log (it stops before the purse's counter and carries a full
        // round's worth): the missing debits may be in a later round, so the check waits for the
        // round that completes the log. A round too small to be honest does not postpone it.
        let partial_round = upload
            .entries
            .last()
            .is_some_and(|last| last.counter < upload.counter)
            && upload.entries.len() >= SYNC_ROUND_ENTRIES_MIN;
        let mut late = Vec::new();
        for (key, open) in self.open_credits.range_mut(low..=high) {
            if partial_round {
                break;
            }
            if !open.flagged && payer_answer > open.payer_answer_at_report {
                open.flagged = true;
                late.push((*key, open.payee));
            }
        }
        for (key, _payee) in late {
            let (_, payee_phone, nonce_b, nonce_a, amount, payee_counter) = key;
            let (Ok(payee), Ok(amount)) = (
                Phone::from_number(payee_phone),
                Amount::from_minor(amount, self.currency),
            ) else {
                continue;
            };
            let mut missing = flag(FlagKind::MissingFromPayerLog {
                payee,
                payee_counter,
                amount,
                nonce_b,
                nonce_a,
            });
            if crate::reverts::reverted(crate::reverts::RESTORE_ATTRIBUTION) {
                missing.phone = payee; // before issue 17: the payee was named
                missing.purse = self.phones.get(&payee).copied().unwrap_or(PurseId(0));
            }
            out.flags.push(missing);
        }
        for (payer, count) in &upload.failures_by_payer {
            if *count >= FAILED_CODES_PER_PAYER_FLAG_THRESHOLD {
                out.flags.push(Flag {
                    purse: self.phones.get(payer).copied().unwrap_or(PurseId(0)),
                    phone: *payer,
                    sync_sequence: upload.sequence,
                    kind: FlagKind::WrongCodesAttempted {
                        payee: phone,
                        count: *count,
                    },
                });
            }
        }
        self.block_flagged(&out.flags);
        Ok(out)
    }

    /// Blocks every loaded purse a blocking flag names (every purse learns it at its next sync).
    fn block_flagged(&mut self, flags: &[Flag]) {
        for flag in flags {
            if flag.kind.blocks()
                && let Some(shadow) = self.purses.get_mut(&flag.purse)
            {
                shadow.blocked = true;
                self.blocked.insert(shadow.phone);
            }
        }
    }

    fn flag_credit_without_debit(
        &self,
        key: CreditKey,
        payee: PurseId,
        sequence: u32,
        out: &mut Reconciliation,
    ) {
        let (payer, payee_phone, nonce_b, nonce_a, amount, payee_counter) = key;
        let (Ok(payer), Ok(payee_phone), Ok(amount)) = (
            Phone::from_number(payer),
            Phone::from_number(payee_phone),
            Amount::from_minor(amount, self.currency),
        ) else {
            return;
        };
        out.flags.push(Flag {
            purse: payee,
            phone: payee_phone,
            sync_sequence: sequence,
            kind: FlagKind::CreditWithoutDebit {
                payee_counter,
                payer,
                amount,
                nonce_b,
                nonce_a,
            },
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn post_entry(
        &mut self,
        purse_id: PurseId,
        phone: Phone,
        entry: &LogEntry,
        digest: u64,
        dating: PaymentDating,
        out: &mut Reconciliation,
        flag: &dyn Fn(FlagKind) -> Flag,
    ) -> Result<(), PurseError> {
        let transfer_id = format!("purse1-{purse_id}-{}-{digest:016x}", entry.counter);
        let amount = entry.amount;
        let purse_account = LedgerAccount::Purse(purse_id);
        let (from, to, memo) = match entry.kind {
            EntryKind::Debit {
                payee,
                nonce_b,
                nonce_a,
                key,
            } => {
                let credit_low = (
                    phone.number(),
                    payee.number(),
                    nonce_b,
                    nonce_a,
                    amount.minor(),
                    0,
                );
                let credit_high = (
                    credit_low.0,
                    credit_low.1,
                    nonce_b,
                    nonce_a,
                    amount.minor(),
                    u32::MAX,
                );
                let found = self
                    .open_credits
                    .range(credit_low..=credit_high)
                    .next()
                    .map(|(key, open)| (*key, open.payee, open.reported_at));
                if let KeyRef::Scheme { epoch } = key
                    && epoch.saturating_add(1) < self.generation_epoch
                    && !crate::reverts::reverted(crate::reverts::RETIRED_KEY_FLAG)
                {
                    // Retired now; was it when the payment was made? The purse paid with keys
                    // its last applied answer left it, within the validity that answer gave,
                    // and the payment was made by the time either side reported it.
                    let reported = found.and_then(|(_, _, at)| at).unwrap_or(dating.now);
                    let kind = match dating.terms {
                        PaymentTerms::WentBack => Some(FlagKind::RetiredKeyPayment {
                            counter: entry.counter,
                            epoch,
                            generation_epoch: self.generation_epoch,
                        }),
                        PaymentTerms::Held {
                            held_from_epoch: Some(held_from),
                            ..
                        } if epoch < held_from => Some(FlagKind::RetiredKeyPayment {
                            counter: entry.counter,
                            epoch,
                            generation_epoch: self.generation_epoch,
                        }),
                        PaymentTerms::Held { valid_until, .. } if reported <= valid_until => None,
                        PaymentTerms::Held { valid_until, .. } => {
                            Some(FlagKind::RetiredKeyPaymentUnverifiable {
                                counter: entry.counter,
                                epoch,
                                generation_epoch: self.generation_epoch,
                                valid_until,
                            })
                        }
                    };
                    let kind = if crate::reverts::reverted(crate::reverts::RETIRED_KEY_DATING) {
                        // Before seed 4's fix: the operator's epoch at upload decided alone.
                        Some(FlagKind::RetiredKeyPayment {
                            counter: entry.counter,
                            epoch,
                            generation_epoch: self.generation_epoch,
                        })
                    } else {
                        kind
                    };
                    out.flags.extend(kind.map(flag));
                }
                let found = found.map(|(key, payee, _)| (key, payee));
                match found {
                    Some((key, payee_purse)) => {
                        self.open_credits.remove(&key);
                        let shadow = self.shadow_mut(purse_id)?;
                        shadow.unreported_debits_minor =
                            (shadow.unreported_debits_minor - key.4 as i64).max(0);
                        out.matched.push(MatchedPayment {
                            payer: purse_id,
                            payer_counter: entry.counter,
                            payee: payee_purse,
                            payee_counter: key.5,
                            amount,
                        });
                    }
                    None => {
                        self.open_debits.insert(
                            (
                                payee.number(),
                                phone.number(),
                                nonce_b,
                                nonce_a,
                                amount.minor(),
                                entry.counter,
                            ),
                            OpenDebit { payer: purse_id },
                        );
                    }
                }
                (
                    purse_account,
                    LedgerAccount::Suspense,
                    format!("offline payment #{} to {payee}", entry.counter),
                )
            }
            EntryKind::Credit {
                payer,
                nonce_b,
                nonce_a,
                key: code_key,
            } => {
                let credit_digest = credit_digest(payer, nonce_b, nonce_a, amount, code_key);
                let epoch_tag = match code_key {
                    KeyRef::Scheme { epoch } => epoch,
                    KeyRef::Pairwise { .. } => u32::MAX,
                };
                let generation = self.generation_epoch;
                let shadow = self.shadow_mut(purse_id)?;
                shadow
                    .credited
                    .retain(|(epoch, _)| epoch.saturating_add(1) >= generation);
                if shadow
                    .credited
                    .iter()
                    .any(|(_, digest)| *digest == credit_digest)
                {
                    // A replay: the loss is on this payee; the payer is not touched.
                    out.flags.push(flag(FlagKind::DuplicateCredit {
                        counter: entry.counter,
                        payer,
                        amount,
                    }));
                    let shadow = self.shadow_mut(purse_id)?;
                    shadow.balance_minor += signed(amount);
                    out.postings.push(Posting {
                        transfer_id,
                        from: LedgerAccount::Suspense,
                        to: purse_account,
                        amount,
                        memo: format!("repeated credit #{} from {payer}", entry.counter),
                    });
                    return Ok(());
                }
                if shadow.credited.len() >= CREDITED_DIGESTS_MAX {
                    shadow.credited.remove(0);
                }
                shadow.credited.push((epoch_tag, credit_digest));
                let debit_low = (
                    phone.number(),
                    payer.number(),
                    nonce_b,
                    nonce_a,
                    amount.minor(),
                    0,
                );
                let debit_high = (
                    debit_low.0,
                    debit_low.1,
                    nonce_b,
                    nonce_a,
                    amount.minor(),
                    u32::MAX,
                );
                let found = self
                    .open_debits
                    .range(debit_low..=debit_high)
                    .next()
                    .map(|(key, open)| (*key, open.payer));
                match found {
                    Some((key, payer_purse)) => {
                        self.open_debits.remove(&key);
                        out.matched.push(MatchedPayment {
                            payer: payer_purse,
                            payer_counter: key.5,
                            payee: purse_id,
                            payee_counter: entry.counter,
                            amount,
                        });
                    }
                    None => {
                        let payer_purse = self.phones.get(&payer).copied();
                        let at_report = payer_purse
                            .and_then(|id| self.purses.get(&id))
                            .map_or(0, |payer| payer.last_answer_sequence);
                        let key = (
                            payer.number(),
                            phone.number(),
                            nonce_b,
                            nonce_a,
                            amount.minor(),
                            entry.counter,
                        );
                        let unknown_payer = payer_purse.is_none();
                        self.open_credits.insert(
                            key,
                            OpenCredit {
                                payee: purse_id,
                                payer_answer_at_report: at_report,
                                flagged: unknown_payer,
                                reported_at: Some(dating.now),
                            },
                        );
                        if unknown_payer {
                            self.flag_credit_without_debit(key, purse_id, 0, out);
                            if let Some(last) = out.flags.last_mut() {
                                *last = flag(last.kind.clone());
                            }
                        }
                        if let Some(payer_shadow) =
                            payer_purse.and_then(|id| self.purses.get_mut(&id))
                        {
                            payer_shadow.unreported_debits_minor += signed(amount);
                            let allowed = signed(payer_shadow.limits.max_spent_since_sync);
                            if payer_shadow.unreported_debits_minor > allowed
                                && !payer_shadow.blocked
                            {
                                out.flags.push(Flag {
                                    purse: payer_shadow.purse_id,
                                    phone: payer,
                                    sync_sequence: 0,
                                    kind: FlagKind::SpentPastLimit {
                                        unreported_minor: payer_shadow.unreported_debits_minor,
                                        allowed_minor: allowed,
                                    },
                                });
                            }
                        }
                    }
                }
                (
                    LedgerAccount::Suspense,
                    purse_account,
                    format!("offline payment #{} from {payer}", entry.counter),
                )
            }
            EntryKind::OperatorCredit { credit_id } => {
                let shadow = self.shadow_mut(purse_id)?;
                let before = shadow.queued_credits.len();
                shadow.queued_credits.retain(|queued| {
                    !(queued.credit_id == credit_id && queued.amount_minor == amount.minor())
                });
                if shadow.queued_credits.len() == before {
                    out.flags.push(flag(FlagKind::UnexpectedCredit {
                        counter: entry.counter,
                        amount,
                    }));
                }
                (
                    LedgerAccount::Suspense,
                    purse_account,
                    format!("operator credit {credit_id} applied"),
                )
            }
            EntryKind::Settlement { debit_id } => {
                let shadow = self.shadow_mut(purse_id)?;
                let before = shadow.queued_settlements.len();
                shadow.queued_settlements.retain(|queued| {
                    !(queued.credit_id == debit_id && queued.amount_minor == amount.minor())
                });
                if shadow.queued_settlements.len() == before {
                    out.flags.push(flag(FlagKind::UnexpectedCredit {
                        counter: entry.counter,
                        amount,
                    }));
                } else {
                    shadow.settlement_owed_minor += signed(amount);
                }
                (
                    purse_account,
                    LedgerAccount::AgentSettlement(purse_id),
                    format!("agent settlement {debit_id}: value handed back to the operator"),
                )
            }
            EntryKind::PaymentCredit {
                payer,
                payer_counter,
                nonce_b,
                nonce_a,
            } => {
                let key = (
                    phone.number(),
                    payer.number(),
                    nonce_b,
                    nonce_a,
                    amount.minor(),
                    payer_counter,
                );
                match self.open_debits.remove(&key) {
                    Some(open) => out.matched.push(MatchedPayment {
                        payer: open.payer,
                        payer_counter,
                        payee: purse_id,
                        payee_counter: entry.counter,
                        amount,
                    }),
                    None => {
                        out.flags.push(flag(FlagKind::UnexpectedCredit {
                            counter: entry.counter,
                            amount,
                        }));
                        self.open_credits.insert(
                            (
                                payer.number(),
                                phone.number(),
                                nonce_b,
                                nonce_a,
                                amount.minor(),
                                entry.counter,
                            ),
                            OpenCredit {
                                payee: purse_id,
                                payer_answer_at_report: 0,
                                flagged: true,
                                reported_at: Some(dating.now),
                            },
                        );
                    }
                }
                (
                    LedgerAccount::Suspense,
                    purse_account,
                    format!("payment #{payer_counter} from {payer}, credited by the operator"),
                )
            }
        };
        let shadow = self.shadow_mut(purse_id)?;
        shadow.balance_minor = if entry.is_debit() {
            shadow.balance_minor - signed(amount)
        } else {
            shadow.balance_minor + signed(amount)
        };
        out.postings.push(Posting {
            transfer_id,
            from,
            to,
            amount,
            memo,
        });
        Ok(())
    }

    /// Builds and MACs the answer to an upload that was just reconciled: acknowledgement, renewed
    /// limits, the current scheme key, credits, tickets and the blocked list.
    pub fn build_answer(
        &mut self,
        secrets: &OperatorSecrets,
        upload: &SyncUpload,
        now: Timestamp,
    ) -> Result<Vec<u8>, PurseError> {
        self.build_answer_with(secrets, upload, now, ANSWER_CREDITS_MAX)
    }

    fn build_answer_with(
        &mut self,
        secrets: &OperatorSecrets,
        upload: &SyncUpload,
        now: Timestamp,
        credits_max: usize,
    ) -> Result<Vec<u8>, PurseError> {
        let credits_max = credits_max.min(ANSWER_CREDITS_MAX);
        self.check_operator(secrets)?;
        let purse_id = upload.purse_id;
        let keys = secrets.purse_keys(purse_id);
        let mut scheme_keys = Vec::new();
        // A blocked purse gets no new key: whatever keys a restored copy holds die with their
        // epoch, whatever its clock says.
        let blocked = self.shadow_mut(purse_id)?.blocked;
        for epoch in [self.generation_epoch, self.scheme_epoch] {
            if blocked {
                break;
            }
            if scheme_keys.iter().all(|(held, _)| *held != epoch) {
                scheme_keys.push((epoch, wrap_key(&keys.wrap, &secrets.scheme_key(epoch))));
            }
        }
        let generation_epoch = self.generation_epoch;

        // New pairwise keys for this purse's requests.
        let mut pairwise_unknown = Vec::new();
        let mut tickets = Vec::new();
        let mut peer_tickets = Vec::new();
        for peer_phone in &upload.pairwise_requests {
            let Some(peer) = self
                .phones
                .get(peer_phone)
                .copied()
                .filter(|peer| *peer != purse_id)
            else {
                pairwise_unknown.push(*peer_phone);
                continue;
            };
            let pair = if purse_id <= peer {
                (purse_id, peer)
            } else {
                (peer, purse_id)
            };
            let version = *self.pairwise_versions.entry(pair).or_insert(1);
            let key = secrets.pairwise_key(purse_id, peer, version);
            if tickets.len() < ANSWER_TICKETS_MAX {
                tickets.push(AnswerTicket {
                    peer: *peer_phone,
                    version,
                    wrapped: wrap_key(&keys.wrap, &key),
                });
            }
            let peer_keys = secrets.purse_keys(peer);
            let my_phone = self.shadow_mut(purse_id)?.phone;
            let wrapped_for_peer: [u8; KEY_BYTES] = wrap_key(&peer_keys.wrap, &key);
            if peer_tickets.len() < ANSWER_TICKETS_MAX {
                peer_tickets.push(PeerTicket {
                    peer: *peer_phone,
                    code: TicketCode::seal(
                        &peer_keys.ticket,
                        my_phone,
                        *peer_phone,
                        version,
                        &wrapped_for_peer,
                    ),
                });
            }
            let peer_shadow = self.shadow_mut(peer)?;
            if !peer_shadow
                .queued_tickets
                .iter()
                .any(|queued| queued.peer == purse_id && queued.version == version)
            {
                peer_shadow.queued_tickets.push(QueuedTicket {
                    peer: purse_id,
                    peer_phone: my_phone,
                    version,
                    sent_in: 0,
                });
            }
        }

        let blocked_purses: Vec<Phone> = self
            .blocked
            .iter()
            .copied()
            .take(BLOCKED_PURSES_MAX)
            .collect();

        let phone = self.shadow_mut(purse_id)?.phone;
        // Debits naming this purse as payee that it has not reported receiving.
        let low = (phone.number(), 0, 0, 0, 0, 0);
        let high = (
            phone.number(),
            u64::MAX,
            u16::MAX,
            u16::MAX,
            u64::MAX,
            u32::MAX,
        );
        let offered: Vec<DebitKey> = self
            .open_debits
            .range(low..=high)
            .map(|(key, _)| *key)
            .take(credits_max)
            .collect();

        let currency = self.currency;
        let operator = self.operator;
        let shadow = self.shadow_mut(purse_id)?;
        let mut credits = Vec::new();
        for queued in shadow.queued_credits.iter().take(credits_max) {
            credits.push(AnswerCredit::Operator {
                credit_id: queued.credit_id,
                amount: Amount::from_minor(queued.amount_minor, currency)?,
                memo: queued.memo.clone(),
            });
        }
        for queued in &shadow.queued_settlements {
            if credits.len() >= credits_max {
                break;
            }
            credits.push(AnswerCredit::Settlement {
                debit_id: queued.credit_id,
                amount: Amount::from_minor(queued.amount_minor, currency)?,
            });
        }
        for key in offered {
            if credits.len() >= credits_max {
                break;
            }
            credits.push(AnswerCredit::Payment {
                payer: Phone::from_number(key.1)?,
                payer_counter: key.5,
                nonce_b: key.2,
                nonce_a: key.3,
                amount: Amount::from_minor(key.4, currency)?,
            });
        }
        for queued in &mut shadow.queued_tickets {
            if tickets.len() >= ANSWER_TICKETS_MAX {
                break;
            }
            if tickets
                .iter()
                .any(|ticket: &AnswerTicket| ticket.peer == queued.peer_phone)
            {
                continue;
            }
            queued.sent_in = upload.sequence;
            tickets.push(AnswerTicket {
                peer: queued.peer_phone,
                version: queued.version,
                wrapped: wrap_key(
                    &keys.wrap,
                    &secrets.pairwise_key(purse_id, queued.peer, queued.version),
                ),
            });
        }
        let pin_unblock = shadow.pin_unblock_requested;
        if pin_unblock {
            shadow.pin_unblock_sent_in = upload.sequence;
        }
        shadow.last_answer_sequence = shadow.last_answer_sequence.max(upload.sequence);
        let mut limits = shadow.limits;
        limits.valid_until = now.plus_seconds(shadow.validity_seconds);
        // Dating the purse's next payments: a blocked purse gets no key and keeps what it had;
        // a partial round leaves entries made under the terms it applied before.
        let partial_round = upload
            .entries
            .last()
            .is_some_and(|last| last.counter < upload.counter);
        let applied_from = shadow
            .answer_terms
            .iter()
            .find(|terms| terms.sequence == upload.answer_applied)
            .map(|terms| terms.held_from_epoch);
        let held_from_epoch = if shadow.blocked || partial_round {
            applied_from.map_or(generation_epoch, |held| held.min(generation_epoch))
        } else {
            generation_epoch
        };
        // Only a newer sequence than any answer built (a stale upload's answer dates nothing;
        // its purse is blocked).
        if shadow
            .answer_terms
            .last()
            .is_none_or(|newest| newest.sequence < upload.sequence)
        {
            shadow.answer_terms.push(AnswerTerms {
                sequence: upload.sequence,
                held_from_epoch,
                valid_until: limits.valid_until,
            });
        }
        if shadow.answer_terms.len() > ANSWER_TERMS_MAX {
            // Keep the oldest (the purse may still name it); an answer dropped from the middle
            // leaves its payments judged by time alone.
            shadow.answer_terms.remove(1);
        }
        let answer = SyncAnswer {
            operator,
            purse_id,
            sequence: upload.sequence,
            server_time: now,
            acknowledged_through: shadow.received_through.min(upload.counter),
            limits,
            blocked: shadow.blocked,
            pin_unblock,
            scheme_keys,
            generation_epoch,
            credits,
            tickets,
            peer_tickets,
            pairwise_unknown,
            blocked_purses,
        };
        Ok(answer.seal(&keys.sync))
    }
}

/// Serialises maps with non-string keys as lists of pairs (JSON objects need string keys).
#[cfg(feature = "serde")]
mod pairs {
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let pairs: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}
