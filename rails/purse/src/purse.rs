//! The purse: what the secure element holds and the rules it enforces. Sans-I/O: every command
//! comes in through [`Purse::handle`] with the time and a source of randomness; the caller shows
//! the outcome and persists the state.
//!
//! Persistence rule for callers: after a command returns — `Ok` *or* `Err` — compare
//! [`Purse::revision`] with its value before the call; if it changed, persist the state (see
//! [`Purse::encode_state`]) *before* showing anything to the user. A Code 2 is then never shown
//! for a debit that could be lost, and a wrong PIN or a wrong Code 2 is never forgotten.

use alloc::vec::Vec;

use offpay_money::{Amount, Currency};
use subtle::ConstantTimeEq;

use crate::codes::{
    self, RequestFields, ResponseFields, check_request_code, check_response_code,
    nonce_parity_matches,
};
use crate::crypto::{PurseKeys, SecretKey, unwrap_key};
use crate::error::{Limit, PurseError};
use crate::params::*;
use crate::pin_reset::{PIN_RESET_FAILURES_MAX, PIN_RESET_WINDOW, ResetCode, reset_code};
use crate::sync::{AnswerCredit, PendingSummary, SyncAnswer, SyncUpload};
use crate::ticket::TicketCode;
use crate::types::{
    Code, OperatorId, Phone, Pin, PurseId, PurseKind, RandomSource, Timestamp, draw_below,
};
use crate::wire::{Reader, Writer};

pub use crate::entries::{EntryKind, KeyRef, LogEntry, OfflineLimits, PeerTicket};

/// A request the payee showed (Code 1) and is waiting to see Code 2 for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PendingRequest {
    /// N_B: also the first four digits of Code 1, by which the payee names the request.
    pub nonce_b: u16,
    /// Who is asked to pay.
    pub payer: Phone,
    /// How much.
    pub amount: Amount,
    /// Which key Code 1 was made with (Code 2 must use the same).
    pub key: KeyRef,
    /// When it was made (purse clock).
    pub created_at: Timestamp,
    /// Wrong Code 2 entries so far.
    pub failures: u8,
    /// The Code 1 shown, to show it again.
    pub code1: Code,
}

/// The last payment this purse made, so that its Code 2 can be shown again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LastPayment {
    /// Who was paid.
    pub payee: Phone,
    /// How much.
    pub amount: Amount,
    /// The Code 2 to show.
    pub code2: Code,
    /// The debit's counter.
    pub counter: u32,
}

#[derive(Clone, Debug)]
struct SchemeKey {
    epoch: u32,
    key: SecretKey,
}

#[derive(Clone, Debug)]
struct PairwiseKey {
    peer: Phone,
    version: u16,
    key: SecretKey,
}

/// The N_B values a payee purse has drawn under one key: a scheme epoch (with any payer), or the
/// pairwise key it shares with `peer`. Dropped only with the key itself.
#[derive(Clone, PartialEq, Eq, Debug)]
struct UsedNonces {
    key: KeyRef,
    /// `Some` for a pairwise key (whose version numbers are per pair), `None` for a scheme epoch.
    peer: Option<Phone>,
    bits: Vec<u8>,
}

impl UsedNonces {
    fn new(key: KeyRef, peer: Option<Phone>) -> UsedNonces {
        UsedNonces {
            key,
            peer,
            bits: alloc::vec![0u8; NONCE_BITMAP_BYTES],
        }
    }
    fn contains(&self, nonce: u16) -> bool {
        if crate::reverts::reverted(crate::reverts::NB_BITMAP) {
            return false;
        }
        self.bits[usize::from(nonce / 8)] & (1 << (nonce % 8)) != 0
    }
    fn insert(&mut self, nonce: u16) {
        self.bits[usize::from(nonce / 8)] |= 1 << (nonce % 8);
    }
}

/// A command from the phone's user interface.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Command {
    /// Payee: ask `payer` for `amount`; shows Code 1.
    Request {
        /// A.
        payer: Phone,
        /// X.
        amount: Amount,
    },
    /// Payer: check Code 1 before asking for the PIN (changes nothing).
    CheckRequest {
        /// B.
        payee: Phone,
        /// X.
        amount: Amount,
        /// Code 1 as typed.
        code1: Code,
    },
    /// Payer: pay; shows Code 2.
    Pay {
        /// B.
        payee: Phone,
        /// X.
        amount: Amount,
        /// Code 1 as typed.
        code1: Code,
        /// The PIN.
        pin: Pin,
    },
    /// Payee: enter Code 2 for a pending request (`None`: the only pending one).
    Accept {
        /// Code 2 as typed.
        code2: Code,
        /// N_B (first four digits of Code 1) of the request, when several are pending.
        request: Option<u16>,
    },
    /// Payee: void a pending request.
    CancelRequest {
        /// N_B of the request.
        nonce_b: u16,
    },
    /// Payer: show the last Code 2 again.
    ShowCode,
    /// Change the PIN.
    ChangePin {
        /// Current PIN.
        old: Pin,
        /// New PIN.
        new: Pin,
    },
    /// PIN reset in place with the operator's one-time reset code (the holder proved who they
    /// are to the operator): sets the new PIN and gives back every PIN try.
    ResetPin {
        /// The reset code.
        code: ResetCode,
        /// New PIN.
        new: Pin,
    },
    /// Ask the operator (at the next sync) for a pairwise key with `peer`.
    RequestPairwiseKey {
        /// The other purse.
        peer: Phone,
    },
    /// Type in a ticket code a peer read out.
    EnterTicket {
        /// The peer who read it out.
        peer: Phone,
        /// The 48-digit code.
        code: TicketCode,
    },
    /// Produce an upload for the operator.
    StartSync,
    /// Produce an upload carrying at most `entries_max` of the oldest unacknowledged entries
    /// (one round of a long log; the answer acknowledges what it took).
    StartSyncRound {
        /// Entries this round may carry (at least one).
        entries_max: u16,
    },
    /// Authenticate a request for a statement by SMS (uses up one sync sequence value).
    StatementRequest,
    /// Apply the operator's answer.
    ApplyAnswer {
        /// The answer's bytes.
        answer: Vec<u8>,
    },
}

/// What a command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Code 1 to show the payer.
    Requested {
        /// Code 1.
        code1: Code,
        /// The request now pending.
        request: PendingRequest,
    },
    /// Code 1 checks out: ask for the PIN.
    RequestChecked,
    /// Paid: show Code 2 to the payee.
    Paid {
        /// Code 2.
        code2: Code,
        /// The debit.
        entry: LogEntry,
    },
    /// Received: the credit.
    Received {
        /// The credit.
        entry: LogEntry,
    },
    /// The request was voided.
    RequestCancelled,
    /// The last payment, to show its Code 2 again.
    ShowCode(LastPayment),
    /// The PIN was changed.
    PinChanged,
    /// The PIN was reset with reset code number `number`.
    PinReset {
        /// The reset code's number (the purse accepts only later ones from now on).
        number: u32,
    },
    /// The pairwise-key request will go with the next upload.
    PairwiseKeyRequested,
    /// The ticket verified; the pairwise key with `peer` is installed.
    TicketAccepted {
        /// The peer.
        peer: Phone,
    },
    /// Send these bytes to the operator.
    SyncUpload {
        /// The upload.
        upload: Vec<u8>,
        /// Its sync sequence number.
        sequence: u32,
    },
    /// The answer was applied.
    SyncApplied(SyncReport),
    /// A statement request to send to the operator.
    StatementRequested(crate::sync::StatementRequest),
}

/// What applying an answer changed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// The answer's sequence number.
    pub sequence: u32,
    /// Entries up to this counter are acknowledged and left the log.
    pub acknowledged_through: u32,
    /// Credits applied (new log entries).
    pub credits: Vec<LogEntry>,
    /// A new scheme-key epoch was installed.
    pub new_epoch: Option<u32>,
    /// Pairwise keys installed, by peer.
    pub pairwise_keys: Vec<Phone>,
    /// The PIN was unblocked.
    pub pin_unblocked: bool,
    /// The purse is blocked by the operator.
    pub blocked: bool,
    /// Pending requests voided (their key epoch was retired, or the operator credited them).
    pub requests_voided: usize,
}

/// What a purse is given at provisioning.
#[derive(Clone, Debug)]
pub struct PurseIdentity {
    /// The operator.
    pub operator: OperatorId,
    /// The purse's id at the operator.
    pub purse_id: PurseId,
    /// The purse's phone number.
    pub phone: Phone,
    /// Customer or agent.
    pub kind: PurseKind,
    /// The currency it holds.
    pub currency: Currency,
}

/// The purse state held in the secure element.
#[derive(Clone)]
pub struct Purse {
    identity: PurseIdentity,
    purse_key: SecretKey,
    scheme_keys: Vec<SchemeKey>,
    generation_epoch: u32,
    pairwise_keys: Vec<PairwiseKey>,
    peer_tickets: Vec<PeerTicket>,
    pairwise_requests: Vec<Phone>,
    pin: Pin,
    pin_tries_left: u8,
    balance: Amount,
    counter: u32,
    acknowledged_through: u32,
    limits: OfflineLimits,
    spent_since_sync: Amount,
    blocked: bool,
    blocked_purses: Vec<Phone>,
    pending: Vec<PendingRequest>,
    last_payment: Option<LastPayment>,
    last_received: Option<(Code, u32)>,
    log: Vec<LogEntry>,
    recent: Vec<LogEntry>,
    used_nonces: Vec<UsedNonces>,
    failures_since_sync: u16,
    failures_by_payer: Vec<(Phone, u8)>,
    /// The latest time this purse has seen (its own clock at a state change, or the operator's
    /// time in an answer): its validity is checked against this, so setting the phone clock back
    /// does not make an expired purse pay again.
    clock: Timestamp,
    sync_sequence: u32,
    answer_applied: u32,
    revision: u64,
    /// The number of the last PIN reset code used (0: none).
    pin_resets_used: u32,
    /// Wrong reset codes since the last reset.
    pin_reset_failures: u8,
}

impl core::fmt::Debug for Purse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Purse")
            .field("identity", &self.identity)
            .field("balance", &self.balance)
            .field("counter", &self.counter)
            .field("pending", &self.pending.len())
            .field("log", &self.log.len())
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Purse {
    /// A new, empty purse from the operator's provisioning record and the holder's PIN.
    pub fn provision(provisioning: &crate::provisioning::Provisioning, pin: Pin) -> Purse {
        Purse {
            identity: PurseIdentity {
                operator: provisioning.operator,
                purse_id: provisioning.purse_id,
                phone: provisioning.phone,
                kind: provisioning.kind,
                currency: provisioning.currency,
            },
            purse_key: provisioning.purse_key.clone(),
            scheme_keys: alloc::vec![SchemeKey {
                epoch: provisioning.scheme_epoch,
                key: provisioning.scheme_key.clone(),
            }],
            generation_epoch: provisioning.scheme_epoch,
            pairwise_keys: Vec::new(),
            peer_tickets: Vec::new(),
            pairwise_requests: Vec::new(),
            pin,
            pin_tries_left: PIN_TRIES_MAX,
            balance: Amount::zero(provisioning.currency),
            counter: 0,
            acknowledged_through: 0,
            limits: provisioning.limits,
            spent_since_sync: Amount::zero(provisioning.currency),
            blocked: false,
            blocked_purses: Vec::new(),
            pending: Vec::new(),
            last_payment: None,
            last_received: None,
            log: Vec::new(),
            recent: Vec::new(),
            used_nonces: Vec::new(),
            failures_since_sync: 0,
            failures_by_payer: Vec::new(),
            clock: Timestamp(0),
            sync_sequence: 0,
            answer_applied: 0,
            revision: 1,
            pin_resets_used: 0,
            pin_reset_failures: 0,
        }
    }

    // ----- read-only views -----

    /// Operator, purse id, phone, kind and currency.
    pub fn identity(&self) -> &PurseIdentity {
        &self.identity
    }
    /// The balance.
    pub fn balance(&self) -> Amount {
        self.balance
    }
    /// The counter of the latest log entry.
    pub fn counter(&self) -> u32 {
        self.counter
    }
    /// Entries not yet acknowledged by the operator, oldest first.
    pub fn unacknowledged_log(&self) -> &[LogEntry] {
        &self.log
    }
    /// The most recent entries (acknowledged or not), oldest first, for display.
    pub fn recent_log(&self) -> &[LogEntry] {
        &self.recent
    }
    /// Requests waiting for Code 2.
    pub fn pending_requests(&self) -> &[PendingRequest] {
        &self.pending
    }
    /// The last payment (for "show code again").
    pub fn last_payment(&self) -> Option<&LastPayment> {
        self.last_payment.as_ref()
    }
    /// The offline limits in force.
    pub fn limits(&self) -> &OfflineLimits {
        &self.limits
    }
    /// Paid out since the last sync.
    pub fn spent_since_sync(&self) -> Amount {
        self.spent_since_sync
    }
    /// PIN tries left (0: blocked).
    pub fn pin_tries_left(&self) -> u8 {
        self.pin_tries_left
    }
    /// Wrong Code 2 entries since the last sync.
    pub fn failures_since_sync(&self) -> u16 {
        self.failures_since_sync
    }
    /// Wrong Code 2 entries since the last sync for requests naming `payer`.
    pub fn failures_for(&self, payer: Phone) -> u8 {
        self.failures_by_payer
            .iter()
            .find(|(phone, _)| *phone == payer)
            .map_or(0, |(_, count)| *count)
    }
    /// Received from `payer` by typed Code 2 since the operator last acknowledged the log.
    pub fn received_from(&self, payer: Phone) -> Amount {
        let minor = self
            .log
            .iter()
            .filter(|entry| matches!(entry.kind, EntryKind::Credit { payer: p, .. } if p == payer))
            .map(|entry| entry.amount.minor())
            .fold(0u64, u64::saturating_add);
        Amount::from_minor(minor, self.identity.currency)
            .unwrap_or(Amount::zero(self.identity.currency))
    }
    /// The latest time this purse has seen (see the field's documentation).
    pub fn clock(&self) -> Timestamp {
        self.clock
    }
    /// The PIN (the software secure element seals the file with it).
    #[cfg(feature = "std")]
    pub(crate) fn pin(&self) -> &Pin {
        &self.pin
    }
    /// True when the operator blocked this purse.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }
    /// Scheme-key epochs held, oldest first.
    pub fn scheme_epochs(&self) -> Vec<u32> {
        self.scheme_keys.iter().map(|key| key.epoch).collect()
    }
    /// Peers this purse shares a pairwise key with.
    pub fn pairwise_peers(&self) -> Vec<Phone> {
        self.pairwise_keys.iter().map(|key| key.peer).collect()
    }
    /// Ticket codes to read out to peers.
    pub fn peer_tickets(&self) -> &[PeerTicket] {
        &self.peer_tickets
    }
    /// The sequence number of the last upload produced.
    pub fn sync_sequence(&self) -> u32 {
        self.sync_sequence
    }
    /// Changes whenever the state changes: persist when it did.
    pub fn revision(&self) -> u64 {
        self.revision
    }
    /// Reads an amount in the purse's currency (`"450"`, `"450.50"`).
    pub fn parse_amount(&self, text: &str) -> Result<Amount, PurseError> {
        Ok(Amount::parse(text, self.identity.currency)?)
    }

    // ----- commands -----

    /// Runs one command. See the module documentation for when to persist.
    pub fn handle(
        &mut self,
        command: Command,
        now: Timestamp,
        random: &mut dyn RandomSource,
    ) -> Result<Outcome, PurseError> {
        let observes_time = matches!(
            command,
            Command::Request { .. }
                | Command::Pay { .. }
                | Command::Accept { .. }
                | Command::StartSync
                | Command::StartSyncRound { .. }
        );
        let result = self.run(command, now, random);
        // The purse remembers the latest time it acted at, and the time its validity was seen
        // to end (so setting the clock back cannot undo it); other refusals change nothing.
        if observes_time
            && matches!(result, Ok(_) | Err(PurseError::ValidityExpired))
            && now > self.clock
        {
            self.clock = now;
            self.touch();
        }
        result
    }

    fn run(
        &mut self,
        command: Command,
        now: Timestamp,
        random: &mut dyn RandomSource,
    ) -> Result<Outcome, PurseError> {
        match command {
            Command::Request { payer, amount } => self.request(payer, amount, now, random),
            Command::CheckRequest {
                payee,
                amount,
                code1,
            } => self
                .check_request(payee, amount, &code1)
                .map(|_| Outcome::RequestChecked),
            Command::Pay {
                payee,
                amount,
                code1,
                pin,
            } => self.pay(payee, amount, &code1, &pin, now, random),
            Command::Accept { code2, request } => self.accept(&code2, request, now),
            Command::CancelRequest { nonce_b } => self.cancel_request(nonce_b),
            Command::ShowCode => self
                .last_payment
                .map(Outcome::ShowCode)
                .ok_or(PurseError::NothingToShow),
            Command::ChangePin { old, new } => self.change_pin(&old, new),
            Command::ResetPin { code, new } => self.reset_pin(&code, new),
            Command::RequestPairwiseKey { peer } => self.request_pairwise_key(peer),
            Command::EnterTicket { peer, code } => self.enter_ticket(peer, &code),
            Command::StartSync => Ok(self.start_sync(now)),
            Command::StartSyncRound { entries_max } => {
                if entries_max == 0 {
                    return Err(PurseError::Malformed(
                        "a sync round carries at least one entry",
                    ));
                }
                Ok(self.start_sync_round(now, usize::from(entries_max)))
            }
            Command::StatementRequest => Ok(self.statement_request()),
            Command::ApplyAnswer { answer } => self.apply_answer(&answer),
        }
    }

    fn touch(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }

    fn check_amount(&self, amount: Amount) -> Result<(), PurseError> {
        if amount.currency() != self.identity.currency {
            return Err(PurseError::CurrencyMismatch {
                purse: self.identity.currency,
                given: amount.currency(),
            });
        }
        if amount.is_zero() {
            return Err(PurseError::ZeroAmount);
        }
        Ok(())
    }

    fn check_counterparty(&self, other: Phone) -> Result<(), PurseError> {
        if other == self.identity.phone {
            return Err(PurseError::SelfPayment);
        }
        if self.blocked {
            return Err(PurseError::PurseBlocked);
        }
        if self.blocked_purses.binary_search(&other).is_ok() {
            return Err(PurseError::CounterpartyBlocked(other));
        }
        Ok(())
    }

    /// The key payees make Code 1 with: the operator's generation epoch, or the newest held.
    fn generation_scheme_key(&self) -> Result<&SchemeKey, PurseError> {
        self.scheme_keys
            .iter()
            .find(|held| held.epoch == self.generation_epoch)
            .or(self.scheme_keys.last())
            .ok_or(PurseError::NoSchemeKey)
    }

    fn key_for(&self, key: KeyRef, peer: Phone) -> Option<&SecretKey> {
        match key {
            KeyRef::Scheme { epoch } => self
                .scheme_keys
                .iter()
                .find(|held| held.epoch == epoch)
                .map(|held| &held.key),
            KeyRef::Pairwise { version } => self
                .pairwise_keys
                .iter()
                .find(|held| held.peer == peer && held.version == version)
                .map(|held| &held.key),
        }
    }

    /// The key a payment of `amount` with `peer` uses as payee: scheme key of the generation epoch
    /// up to the small-payment limit, else the pairwise key.
    fn key_to_request(&self, peer: Phone, amount: Amount) -> Result<KeyRef, PurseError> {
        if amount.minor() <= self.limits.small_payment_limit.minor() {
            Ok(KeyRef::Scheme {
                epoch: self.generation_scheme_key()?.epoch,
            })
        } else {
            self.pairwise_keys
                .iter()
                .find(|held| held.peer == peer)
                .map(|held| KeyRef::Pairwise {
                    version: held.version,
                })
                .ok_or(PurseError::PairwiseKeyRequired(peer))
        }
    }

    /// The key the payer checks Code 1 with: by the parity of N_B among the two epochs held, or the
    /// pairwise key.
    fn key_to_pay(&self, peer: Phone, amount: Amount, nonce_b: u16) -> Result<KeyRef, PurseError> {
        if amount.minor() <= self.limits.small_payment_limit.minor() {
            if self.scheme_keys.is_empty() {
                return Err(PurseError::NoSchemeKey);
            }
            self.scheme_keys
                .iter()
                .find(|held| nonce_parity_matches(nonce_b, held.epoch))
                .map(|held| KeyRef::Scheme { epoch: held.epoch })
                .ok_or(PurseError::RequestCodeMismatch)
        } else {
            self.key_to_request(peer, amount)
        }
    }

    fn request(
        &mut self,
        payer: Phone,
        amount: Amount,
        now: Timestamp,
        random: &mut dyn RandomSource,
    ) -> Result<Outcome, PurseError> {
        self.check_amount(amount)?;
        self.check_counterparty(payer)?;
        self.check_failure_budgets(payer)?;
        if self.log.len() >= LOG_UNACKNOWLEDGED_MAX {
            return Err(PurseError::LogFull);
        }
        self.check_room_for(amount)?;
        self.check_receive_cap(payer, amount)?;
        let key = self.key_to_request(payer, amount)?;
        let nonce_b = self.draw_request_nonce(payer, key, random)?;
        let Some(secret) = self.key_for(key, payer) else {
            return Err(PurseError::NoSchemeKey);
        };
        let fields = RequestFields {
            payee: self.identity.phone,
            payer,
            amount,
            nonce_b,
        };
        let code1 = codes::request_code(secret, &fields);
        let request = PendingRequest {
            nonce_b,
            payer,
            amount,
            key,
            created_at: now,
            failures: 0,
            code1,
        };
        if self.pending.len() >= PENDING_REQUESTS_MAX {
            self.pending.remove(0);
        }
        self.pending.push(request);
        let peer = Self::nonce_peer(key, payer);
        match self
            .used_nonces
            .iter_mut()
            .find(|used| used.key == key && used.peer == peer)
        {
            Some(used) => used.insert(nonce_b),
            None => {
                let mut used = UsedNonces::new(key, peer);
                used.insert(nonce_b);
                self.used_nonces.push(used);
            }
        }
        self.touch();
        Ok(Outcome::Requested { code1, request })
    }

    /// The wrong-Code-2 budgets: the period's (all payers) and this payer's.
    fn check_failure_budgets(&self, payer: Phone) -> Result<(), PurseError> {
        if self.failures_since_sync >= CODE2_FAILURES_PER_SYNC_PERIOD_MAX {
            return Err(PurseError::FailureBudgetExhausted);
        }
        if self.failures_for(payer) >= CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX {
            return Err(PurseError::PayerFailureBudgetExhausted(payer));
        }
        Ok(())
    }

    /// A payee takes at most its own maximum single payment from one payer between two syncs:
    /// what a restored or cloned payer can take from one payee before the payee syncs and learns
    /// that the payer is blocked.
    fn check_receive_cap(&self, payer: Phone, amount: Amount) -> Result<(), PurseError> {
        if crate::reverts::reverted(crate::reverts::RECEIVE_CAP) {
            return Ok(());
        }
        let cap = self.limits.max_single_payment;
        let after = self.received_from(payer).checked_add(amount)?;
        if after.minor() > cap.minor() {
            return Err(PurseError::LimitExceeded {
                limit: Limit::ReceivedFromOnePayer,
                maximum: cap,
            });
        }
        Ok(())
    }

    /// Scheme epochs are shared by every payer (one bitmap per epoch); pairwise versions are per
    /// peer.
    fn nonce_peer(key: KeyRef, payer: Phone) -> Option<Phone> {
        match key {
            KeyRef::Scheme { .. } => None,
            KeyRef::Pairwise { .. } => Some(payer),
        }
    }

    fn check_room_for(&self, amount: Amount) -> Result<(), PurseError> {
        let after = self.balance.checked_add(amount)?;
        if after.minor() > self.limits.max_balance.minor() {
            return Err(PurseError::LimitExceeded {
                limit: Limit::MaxBalance,
                maximum: self.limits.max_balance,
            });
        }
        Ok(())
    }

    /// A fresh N_B, uniform among the values of the right parity (for a scheme key) that were
    /// never drawn under this key and are not the nonce of another pending request. Never
    /// repeats under one key, however often the payee asks: when every value is used, the purse
    /// refuses until a sync brings the next key.
    fn draw_request_nonce(
        &self,
        counterparty: Phone,
        key: KeyRef,
        random: &mut dyn RandomSource,
    ) -> Result<u16, PurseError> {
        let peer = Self::nonce_peer(key, counterparty);
        let used = self
            .used_nonces
            .iter()
            .find(|used| used.key == key && used.peer == peer);
        let free = |nonce: u16| {
            let parity = match key {
                KeyRef::Scheme { epoch } => nonce_parity_matches(nonce, epoch),
                KeyRef::Pairwise { .. } => true,
            };
            parity
                && !used.is_some_and(|used| used.contains(nonce))
                && !self.pending.iter().any(|request| request.nonce_b == nonce)
        };
        let space = REQUEST_NONCE_SPACE as u16;
        // A scheme key uses one parity class: walk only that one.
        let (first, step) = match key {
            KeyRef::Scheme { epoch } => (u16::from(!nonce_parity_matches(0, epoch)), 2),
            KeyRef::Pairwise { .. } => (0, 1),
        };
        let candidates = || (first..space).step_by(step).filter(|nonce| free(*nonce));
        let count = candidates().count() as u32;
        if count == 0 {
            return Err(PurseError::NonceSpaceExhausted);
        }
        let pick = draw_below(random, count) as usize;
        candidates()
            .nth(pick)
            .ok_or(PurseError::NonceSpaceExhausted)
    }

    /// Checks Code 1; returns the key reference and N_B. Changes nothing.
    pub fn check_request(
        &self,
        payee: Phone,
        amount: Amount,
        code1: &Code,
    ) -> Result<(KeyRef, u16), PurseError> {
        self.check_amount(amount)?;
        self.check_counterparty(payee)?;
        let (nonce_b, _) = codes::split_request_code(code1);
        let key = self.key_to_pay(payee, amount, nonce_b)?;
        let Some(secret) = self.key_for(key, payee) else {
            return Err(PurseError::RequestCodeMismatch);
        };
        let nonce_b = check_request_code(secret, payee, self.identity.phone, amount, code1)?;
        Ok((key, nonce_b))
    }

    fn check_spending(&self, amount: Amount, now: Timestamp) -> Result<(), PurseError> {
        if self.pin_tries_left == 0 {
            return Err(PurseError::PinBlocked);
        }
        if now.max(self.clock) > self.limits.valid_until {
            return Err(PurseError::ValidityExpired);
        }
        if self.log.len() >= LOG_UNACKNOWLEDGED_MAX {
            return Err(PurseError::LogFull);
        }
        if amount.minor() > self.balance.minor() {
            return Err(PurseError::InsufficientBalance {
                balance: self.balance,
                amount,
            });
        }
        if amount.minor() > self.limits.max_single_payment.minor() {
            return Err(PurseError::LimitExceeded {
                limit: Limit::MaxSinglePayment,
                maximum: self.limits.max_single_payment,
            });
        }
        let spent = self.spent_since_sync.checked_add(amount)?;
        if spent.minor() > self.limits.max_spent_since_sync.minor() {
            return Err(PurseError::LimitExceeded {
                limit: Limit::MaxSpentSinceSync,
                maximum: self.limits.max_spent_since_sync,
            });
        }
        Ok(())
    }

    /// Checks the PIN; a wrong one costs a try (and changes the state).
    fn verify_pin(&mut self, pin: &Pin) -> Result<(), PurseError> {
        if self.pin_tries_left == 0 {
            return Err(PurseError::PinBlocked);
        }
        if self.pin.matches(pin) {
            if self.pin_tries_left != PIN_TRIES_MAX {
                self.pin_tries_left = PIN_TRIES_MAX;
                self.touch();
            }
            Ok(())
        } else {
            self.pin_tries_left -= 1;
            self.touch();
            Err(PurseError::WrongPin {
                tries_left: self.pin_tries_left,
            })
        }
    }

    fn pay(
        &mut self,
        payee: Phone,
        amount: Amount,
        code1: &Code,
        pin: &Pin,
        now: Timestamp,
        random: &mut dyn RandomSource,
    ) -> Result<Outcome, PurseError> {
        self.check_amount(amount)?;
        self.check_counterparty(payee)?;
        self.check_spending(amount, now)?;
        let (key, nonce_b) = self.check_request(payee, amount, code1)?;
        self.verify_pin(pin)?;

        let nonce_a = draw_below(random, RESPONSE_NONCE_SPACE) as u16;
        let Some(secret) = self.key_for(key, payee) else {
            return Err(PurseError::RequestCodeMismatch);
        };
        let code2 = codes::response_code(
            secret,
            &ResponseFields {
                payer: self.identity.phone,
                nonce_a,
                amount,
                nonce_b,
                payee,
            },
        );
        let balance = self.balance.checked_sub(amount)?;
        let spent = self.spent_since_sync.checked_add(amount)?;
        let entry = LogEntry {
            counter: self.next_counter(),
            time: now,
            amount,
            kind: EntryKind::Debit {
                payee,
                nonce_b,
                nonce_a,
                key,
            },
        };
        self.balance = balance;
        self.spent_since_sync = spent;
        self.append(entry);
        self.last_payment = Some(LastPayment {
            payee,
            amount,
            code2,
            counter: entry.counter,
        });
        self.touch();
        Ok(Outcome::Paid { code2, entry })
    }

    fn next_counter(&self) -> u32 {
        // A purse would need 4 billion payments to wrap; refuse to be that purse.
        assert!(self.counter < u32::MAX, "purse counter exhausted");
        self.counter + 1
    }

    fn append(&mut self, entry: LogEntry) {
        assert_eq!(entry.counter, self.counter + 1, "log counters have no gaps");
        assert!(self.log.len() < LOG_UNACKNOWLEDGED_MAX, "log overflow");
        self.counter = entry.counter;
        self.log.push(entry);
        if self.recent.len() >= LOG_RECENT_MAX {
            self.recent.remove(0);
        }
        self.recent.push(entry);
    }

    fn accept(
        &mut self,
        code2: &Code,
        request: Option<u16>,
        now: Timestamp,
    ) -> Result<Outcome, PurseError> {
        if self.pending.is_empty() {
            if let Some((code, _)) = self.last_received
                && bool::from(code.as_number().ct_eq(&code2.as_number()))
            {
                return Err(PurseError::AlreadyAccepted);
            }
            return Err(PurseError::NoPendingRequest);
        }
        let index = match request {
            Some(nonce_b) => self
                .pending
                .iter()
                .position(|pending| pending.nonce_b == nonce_b)
                .ok_or(PurseError::UnknownRequest)?,
            None if self.pending.len() == 1 => 0,
            None => {
                return Err(PurseError::AmbiguousPendingRequest {
                    pending: self.pending.len(),
                });
            }
        };
        if self.failures_since_sync >= CODE2_FAILURES_PER_SYNC_PERIOD_MAX {
            return Err(PurseError::FailureBudgetExhausted);
        }
        if self.log.len() >= LOG_UNACKNOWLEDGED_MAX {
            return Err(PurseError::LogFull);
        }
        let pending = self.pending[index];
        self.check_failure_budgets(pending.payer)?;
        self.check_room_for(pending.amount)?;
        self.check_receive_cap(pending.payer, pending.amount)?;
        let Some(secret) = self.key_for(pending.key, pending.payer) else {
            return Err(PurseError::UnknownRequest);
        };
        let fields = RequestFields {
            payee: self.identity.phone,
            payer: pending.payer,
            amount: pending.amount,
            nonce_b: pending.nonce_b,
        };
        let Some(nonce_a) = check_response_code(secret, &fields, code2) else {
            self.failures_since_sync += 1;
            match self
                .failures_by_payer
                .iter_mut()
                .find(|(payer, _)| *payer == pending.payer)
            {
                Some((_, count)) => *count = count.saturating_add(1),
                None => self.failures_by_payer.push((pending.payer, 1)),
            }
            let failures = pending.failures + 1;
            let request_tries_left = CODE2_FAILURES_PER_REQUEST_MAX.saturating_sub(failures);
            if request_tries_left == 0 {
                self.pending.remove(index);
            } else {
                self.pending[index].failures = failures;
            }
            self.touch();
            let payer_tries_left = u16::from(
                CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX
                    .saturating_sub(self.failures_for(pending.payer)),
            );
            return Err(PurseError::ResponseCodeMismatch {
                request_tries_left,
                period_tries_left: CODE2_FAILURES_PER_SYNC_PERIOD_MAX
                    .saturating_sub(self.failures_since_sync)
                    .min(payer_tries_left),
            });
        };
        let balance = self.balance.checked_add(pending.amount)?;
        let entry = LogEntry {
            counter: self.next_counter(),
            time: now,
            amount: pending.amount,
            kind: EntryKind::Credit {
                payer: pending.payer,
                nonce_b: pending.nonce_b,
                nonce_a,
                key: pending.key,
            },
        };
        self.balance = balance;
        self.pending.remove(index);
        self.append(entry);
        self.last_received = Some((*code2, entry.counter));
        self.touch();
        Ok(Outcome::Received { entry })
    }

    fn cancel_request(&mut self, nonce_b: u16) -> Result<Outcome, PurseError> {
        let index = self
            .pending
            .iter()
            .position(|pending| pending.nonce_b == nonce_b)
            .ok_or(PurseError::UnknownRequest)?;
        self.pending.remove(index);
        self.touch();
        Ok(Outcome::RequestCancelled)
    }

    fn change_pin(&mut self, old: &Pin, new: Pin) -> Result<Outcome, PurseError> {
        self.verify_pin(old)?;
        self.pin = new;
        self.touch();
        Ok(Outcome::PinChanged)
    }

    /// Takes the next unused reset code (within [`PIN_RESET_WINDOW`] of the last one used): a
    /// code works once, for this purse only; wrong codes are counted and, after
    /// [`PIN_RESET_FAILURES_MAX`], every code is refused.
    fn reset_pin(&mut self, code: &ResetCode, new: Pin) -> Result<Outcome, PurseError> {
        if self.pin_reset_failures >= PIN_RESET_FAILURES_MAX {
            return Err(PurseError::PinResetBlocked);
        }
        let identity = &self.identity;
        let number = (1..=PIN_RESET_WINDOW)
            .filter_map(|ahead| self.pin_resets_used.checked_add(ahead))
            .find(|number| {
                reset_code(
                    &self.purse_key,
                    identity.operator,
                    identity.purse_id,
                    *number,
                )
                .matches(code)
            });
        self.touch();
        let Some(number) = number else {
            self.pin_reset_failures += 1;
            return Err(PurseError::WrongResetCode {
                tries_left: PIN_RESET_FAILURES_MAX - self.pin_reset_failures,
            });
        };
        self.pin = new;
        self.pin_tries_left = PIN_TRIES_MAX;
        self.pin_resets_used = number;
        self.pin_reset_failures = 0;
        Ok(Outcome::PinReset { number })
    }

    /// The number of the last PIN reset code this purse used (0: none).
    pub fn pin_resets_used(&self) -> u32 {
        self.pin_resets_used
    }

    /// Reset code number `number` of this purse (the software secure element wraps the file's
    /// key under the next ones).
    #[cfg(feature = "std")]
    pub(crate) fn reset_code(&self, number: u32) -> ResetCode {
        reset_code(
            &self.purse_key,
            self.identity.operator,
            self.identity.purse_id,
            number,
        )
    }

    fn request_pairwise_key(&mut self, peer: Phone) -> Result<Outcome, PurseError> {
        self.check_counterparty(peer)?;
        if self.pairwise_requests.contains(&peer) {
            return Ok(Outcome::PairwiseKeyRequested);
        }
        if self.pairwise_requests.len() >= PAIRWISE_REQUESTS_MAX {
            return Err(PurseError::TooManyPairwiseRequests);
        }
        self.pairwise_requests.push(peer);
        self.touch();
        Ok(Outcome::PairwiseKeyRequested)
    }

    fn enter_ticket(&mut self, peer: Phone, code: &TicketCode) -> Result<Outcome, PurseError> {
        let keys = PurseKeys::derive(&self.purse_key);
        let (version, wrapped) = code.open(&keys.ticket, peer, self.identity.phone)?;
        let key = unwrap_key(&keys.wrap, &wrapped);
        self.install_pairwise_key(peer, version, key);
        self.touch();
        Ok(Outcome::TicketAccepted { peer })
    }

    fn install_pairwise_key(&mut self, peer: Phone, version: u16, key: SecretKey) -> bool {
        if let Some(held) = self.pairwise_keys.iter_mut().find(|held| held.peer == peer) {
            if held.version >= version {
                return false;
            }
            held.version = version;
            held.key = key;
        } else {
            if self.pairwise_keys.len() >= PAIRWISE_KEYS_MAX {
                self.pairwise_keys.remove(0);
            }
            self.pairwise_keys.push(PairwiseKey { peer, version, key });
        }
        // Bitmaps live as long as their key: a dropped pairwise key's bitmap goes with it.
        let held: Vec<(Phone, u16)> = self
            .pairwise_keys
            .iter()
            .map(|held| (held.peer, held.version))
            .collect();
        self.used_nonces.retain(|used| match (used.key, used.peer) {
            (KeyRef::Pairwise { version }, Some(peer)) => held.contains(&(peer, version)),
            _ => true,
        });
        // Requests made under an older version with this peer can no longer be checked.
        self.pending.retain(|pending| {
            !(pending.payer == peer
                && matches!(pending.key, KeyRef::Pairwise { version: v } if v != version))
        });
        self.pairwise_requests.retain(|wanted| *wanted != peer);
        true
    }

    /// Builds the upload for the operator: the unacknowledged log, balance, counter, failures,
    /// pending requests and pairwise-key requests, MAC'd with the purse's sync key.
    pub fn start_sync(&mut self, now: Timestamp) -> Outcome {
        self.start_sync_round(now, UPLOAD_ENTRIES_MAX)
    }

    /// [`Purse::start_sync`] for one round of a long log: the upload carries the oldest
    /// `entries_max` unacknowledged entries (the counter and balance still say where the purse
    /// is). The answer acknowledges what the operator took; the purse drops only that, and the
    /// next round carries the rest.
    pub fn start_sync_round(&mut self, now: Timestamp, entries_max: usize) -> Outcome {
        self.sync_sequence += 1;
        self.touch();
        let upload = SyncUpload {
            operator: self.identity.operator,
            purse_id: self.identity.purse_id,
            sequence: self.sync_sequence,
            answer_applied: self.answer_applied,
            generated_at: now,
            balance: self.balance,
            counter: self.counter,
            acknowledged_through: self.acknowledged_through,
            failed_code_entries: self.failures_since_sync,
            pin_blocked: self.pin_tries_left == 0,
            scheme_epoch: self.scheme_keys.last().map_or(0, |key| key.epoch),
            failures_by_payer: self.failures_by_payer.clone(),
            entries: self.log.iter().take(entries_max).cloned().collect(),
            pending: self
                .pending
                .iter()
                .map(|pending| PendingSummary {
                    payer: pending.payer,
                    nonce_b: pending.nonce_b,
                    amount: pending.amount,
                })
                .collect(),
            pairwise_requests: self.pairwise_requests.clone(),
        };
        let keys = PurseKeys::derive(&self.purse_key);
        Outcome::SyncUpload {
            upload: upload.seal(&keys.sync),
            sequence: self.sync_sequence,
        }
    }

    /// A statement request: the next sync sequence value and the code over it, so that the
    /// operator answers only this purse, once per value (see [`crate::sync::statement_code`]).
    pub fn statement_request(&mut self) -> Outcome {
        self.sync_sequence += 1;
        self.touch();
        let keys = PurseKeys::derive(&self.purse_key);
        let counter = self.sync_sequence;
        Outcome::StatementRequested(crate::sync::StatementRequest {
            purse_id: self.identity.purse_id,
            counter,
            code: crate::sync::statement_code(
                &keys.sync,
                self.identity.operator,
                self.identity.purse_id,
                counter,
            ),
        })
    }

    /// Verifies and applies the operator's answer. A forged, replayed or stale answer changes
    /// nothing.
    pub fn apply_answer(&mut self, bytes: &[u8]) -> Result<Outcome, PurseError> {
        let keys = PurseKeys::derive(&self.purse_key);
        let answer = SyncAnswer::open(bytes, &keys.sync, self.identity.currency)?;
        if answer.operator != self.identity.operator {
            return Err(PurseError::WrongOperator {
                expected: self.identity.operator,
                found: answer.operator,
            });
        }
        if answer.purse_id != self.identity.purse_id {
            return Err(PurseError::WrongPurse {
                expected: self.identity.purse_id,
                found: answer.purse_id,
            });
        }
        if answer.sequence <= self.answer_applied || answer.sequence > self.sync_sequence {
            return Err(PurseError::StaleAnswer);
        }
        if answer.acknowledged_through > self.counter
            || answer.limits.currency() != self.identity.currency
        {
            return Err(PurseError::Malformed("answer acknowledges the future"));
        }
        // Unwrap keys before changing anything.
        let new_scheme: Vec<(u32, SecretKey)> = answer
            .scheme_keys
            .iter()
            .map(|(epoch, wrapped)| (*epoch, unwrap_key(&keys.wrap, wrapped)))
            .collect();
        let tickets: Vec<(Phone, u16, SecretKey)> = answer
            .tickets
            .iter()
            .map(|ticket| {
                (
                    ticket.peer,
                    ticket.version,
                    unwrap_key(&keys.wrap, &ticket.wrapped),
                )
            })
            .collect();

        let mut report = SyncReport {
            sequence: answer.sequence,
            acknowledged_through: answer.acknowledged_through,
            ..SyncReport::default()
        };
        let acknowledged = answer.acknowledged_through.max(self.acknowledged_through);
        self.log.retain(|entry| entry.counter > acknowledged);
        self.acknowledged_through = acknowledged;
        self.limits = answer.limits;
        self.spent_since_sync = Amount::zero(self.identity.currency);
        self.failures_since_sync = 0;
        self.failures_by_payer.clear();
        // The operator's time is authoritative (the answer is MAC'd): a sync also repairs a clock
        // that was once set far ahead.
        self.clock = answer.server_time;
        self.blocked = answer.blocked;
        report.blocked = answer.blocked;
        if answer.pin_unblock && self.pin_tries_left < PIN_TRIES_MAX {
            self.pin_tries_left = PIN_TRIES_MAX;
            report.pin_unblocked = true;
        }
        let mut installed = None;
        for (epoch, key) in new_scheme {
            if self
                .scheme_keys
                .last()
                .is_none_or(|newest| epoch > newest.epoch)
            {
                self.scheme_keys.push(SchemeKey { epoch, key });
                installed = Some(epoch);
            }
        }
        self.generation_epoch = answer.generation_epoch;
        if let Some(epoch) = installed {
            while self.scheme_keys.len() > SCHEME_EPOCHS_HELD {
                self.scheme_keys.remove(0);
            }
            let held: Vec<u32> = self.scheme_epochs();
            let before = self.pending.len();
            self.pending.retain(|pending| match pending.key {
                KeyRef::Scheme { epoch } => held.contains(&epoch),
                KeyRef::Pairwise { .. } => true,
            });
            report.requests_voided += before - self.pending.len();
            self.used_nonces.retain(|used| match used.key {
                KeyRef::Scheme { epoch } => held.contains(&epoch),
                KeyRef::Pairwise { .. } => true,
            });
            report.new_epoch = Some(epoch);
        }
        for (peer, version, key) in tickets {
            if self.install_pairwise_key(peer, version, key) {
                report.pairwise_keys.push(peer);
            }
        }
        for ticket in &answer.peer_tickets {
            self.peer_tickets.retain(|held| held.peer != ticket.peer);
            if self.peer_tickets.len() >= PEER_TICKETS_MAX {
                self.peer_tickets.remove(0);
            }
            self.peer_tickets.push(*ticket);
        }
        self.pairwise_requests
            .retain(|peer| !answer.pairwise_unknown.contains(peer));
        self.blocked_purses = answer.blocked_purses.clone();
        self.blocked_purses.sort_unstable();
        for credit in &answer.credits {
            if self.log.len() >= LOG_UNACKNOWLEDGED_MAX {
                break; // offered again at the next sync
            }
            // `None`: applied before, or (a payment) received offline since the upload; the
            // operator matches it when it sees our entry.
            if let Some(entry) = self.apply_credit(credit, answer.server_time) {
                report.credits.push(entry);
            }
        }
        let before = self.pending.len();
        self.pending.retain(|pending| {
            !answer.credits.iter().any(|credit| {
                matches!(credit, AnswerCredit::Payment { payer, nonce_b, amount, .. }
                    if *payer == pending.payer && *nonce_b == pending.nonce_b && *amount == pending.amount)
            })
        });
        report.requests_voided += before - self.pending.len();
        self.answer_applied = answer.sequence;
        self.touch();
        Ok(Outcome::SyncApplied(report))
    }

    /// Applies one credit unless the log shows it was applied, or (for a payment) received offline
    /// since the upload was made.
    fn apply_credit(&mut self, credit: &AnswerCredit, time: Timestamp) -> Option<LogEntry> {
        if let AnswerCredit::Settlement { debit_id, amount } = *credit {
            // Applied once, and only when the balance covers it (else offered again).
            let done = self.log.iter().any(|entry| {
                matches!(entry.kind, EntryKind::Settlement { debit_id: id } if id == debit_id)
            });
            let balance = self.balance.checked_sub(amount).ok()?;
            if done {
                return None;
            }
            let entry = LogEntry {
                counter: self.next_counter(),
                time,
                amount,
                kind: EntryKind::Settlement { debit_id },
            };
            self.balance = balance;
            self.append(entry);
            return Some(entry);
        }
        let (amount, kind) = match *credit {
            AnswerCredit::Operator {
                credit_id, amount, ..
            } => {
                let done = self.log.iter().any(|entry| {
                    matches!(entry.kind, EntryKind::OperatorCredit { credit_id: id } if id == credit_id)
                });
                if done {
                    return None;
                }
                (amount, EntryKind::OperatorCredit { credit_id })
            }
            // Handled above.
            AnswerCredit::Settlement { .. } => return None,
            AnswerCredit::Payment {
                payer,
                payer_counter,
                nonce_b,
                nonce_a,
                amount,
            } => {
                let done = self.log.iter().any(|entry| match entry.kind {
                    EntryKind::Credit {
                        payer: p,
                        nonce_b: b,
                        nonce_a: a,
                        ..
                    } => p == payer && b == nonce_b && a == nonce_a && entry.amount == amount,
                    EntryKind::PaymentCredit {
                        payer: p,
                        payer_counter: c,
                        ..
                    } => p == payer && c == payer_counter,
                    _ => false,
                });
                if done {
                    return None;
                }
                (
                    amount,
                    EntryKind::PaymentCredit {
                        payer,
                        payer_counter,
                        nonce_b,
                        nonce_a,
                    },
                )
            }
        };
        let balance = self.balance.checked_add(amount).ok()?;
        let entry = LogEntry {
            counter: self.next_counter(),
            time,
            amount,
            kind,
        };
        self.balance = balance;
        self.append(entry);
        Some(entry)
    }

    // ----- persistence -----

    /// The whole state as bytes, format version first. Contains keys and the PIN: seal it (the
    /// software secure element encrypts it) before it leaves the secure element.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(FORMAT_VERSION);
        w.short_bytes(self.identity.operator.as_bytes());
        w.u64(self.identity.purse_id.0);
        w.phone(self.identity.phone);
        w.u8(self.identity.kind.to_byte());
        w.currency(self.identity.currency);
        w.bytes(self.purse_key.expose());
        w.u8(self.scheme_keys.len() as u8);
        for key in &self.scheme_keys {
            w.u32(key.epoch);
            w.bytes(key.key.expose());
        }
        w.u32(self.generation_epoch);
        w.u8(self.pairwise_keys.len() as u8);
        for key in &self.pairwise_keys {
            w.phone(key.peer);
            w.u16(key.version);
            w.bytes(key.key.expose());
        }
        w.u8(self.peer_tickets.len() as u8);
        for ticket in &self.peer_tickets {
            w.phone(ticket.peer);
            w.bytes(ticket.code.as_digits());
        }
        w.u8(self.pairwise_requests.len() as u8);
        for peer in &self.pairwise_requests {
            w.phone(*peer);
        }
        w.bytes(&self.pin.to_bytes());
        w.u8(self.pin_tries_left);
        w.minor(self.balance);
        w.u32(self.counter);
        w.u32(self.acknowledged_through);
        self.limits.encode(&mut w);
        w.minor(self.spent_since_sync);
        w.bool(self.blocked);
        w.u16(self.blocked_purses.len() as u16);
        for phone in &self.blocked_purses {
            w.phone(*phone);
        }
        w.u8(self.pending.len() as u8);
        for pending in &self.pending {
            w.u16(pending.nonce_b);
            w.phone(pending.payer);
            w.minor(pending.amount);
            pending.key.encode(&mut w);
            w.u64(pending.created_at.0);
            w.u8(pending.failures);
            w.u32(pending.code1.as_number());
        }
        match &self.last_payment {
            Some(last) => {
                w.u8(1);
                w.phone(last.payee);
                w.minor(last.amount);
                w.u32(last.code2.as_number());
                w.u32(last.counter);
            }
            None => w.u8(0),
        }
        match &self.last_received {
            Some((code, counter)) => {
                w.u8(1);
                w.u32(code.as_number());
                w.u32(*counter);
            }
            None => w.u8(0),
        }
        w.u16(self.log.len() as u16);
        for entry in &self.log {
            entry.encode(&mut w);
        }
        w.u8(self.recent.len() as u8);
        for entry in &self.recent {
            entry.encode(&mut w);
        }
        w.u8(self.used_nonces.len() as u8);
        for used in &self.used_nonces {
            used.key.encode(&mut w);
            match used.peer {
                Some(peer) => {
                    w.u8(1);
                    w.phone(peer);
                }
                None => w.u8(0),
            }
            w.bytes(&used.bits);
        }
        w.u16(self.failures_since_sync);
        w.u8(self.failures_by_payer.len() as u8);
        for (payer, count) in &self.failures_by_payer {
            w.phone(*payer);
            w.u8(*count);
        }
        w.u64(self.clock.0);
        w.u32(self.sync_sequence);
        w.u32(self.answer_applied);
        w.u64(self.revision);
        w.u32(self.pin_resets_used);
        w.u8(self.pin_reset_failures);
        w.finish()
    }

    /// Reads a state written by [`Purse::encode_state`], checking every bound.
    pub fn decode_state(bytes: &[u8]) -> Result<Purse, PurseError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(PurseError::UnsupportedVersion { found: version });
        }
        let operator = core::str::from_utf8(r.short_bytes()?)
            .map_err(|_| PurseError::Malformed("operator id"))
            .and_then(OperatorId::new)?;
        let purse_id = PurseId(r.u64()?);
        let phone = r.phone()?;
        let kind = PurseKind::from_byte(r.u8()?)?;
        let currency = r.currency()?;
        let purse_key = SecretKey::from_bytes(r.array()?);
        let mut scheme_keys = Vec::new();
        for _ in 0..r.count_u8(SCHEME_EPOCHS_HELD)? {
            scheme_keys.push(SchemeKey {
                epoch: r.u32()?,
                key: SecretKey::from_bytes(r.array()?),
            });
        }
        let generation_epoch = r.u32()?;
        let mut pairwise_keys = Vec::new();
        for _ in 0..r.count_u8(PAIRWISE_KEYS_MAX)? {
            pairwise_keys.push(PairwiseKey {
                peer: r.phone()?,
                version: r.u16()?,
                key: SecretKey::from_bytes(r.array()?),
            });
        }
        let mut peer_tickets = Vec::new();
        for _ in 0..r.count_u8(PEER_TICKETS_MAX)? {
            let peer = r.phone()?;
            let digits: [u8; TICKET_CODE_DIGITS] = r.array()?;
            peer_tickets.push(PeerTicket {
                peer,
                code: TicketCode::from_digits(&digits)?,
            });
        }
        let mut pairwise_requests = Vec::new();
        for _ in 0..r.count_u8(PAIRWISE_REQUESTS_MAX)? {
            pairwise_requests.push(r.phone()?);
        }
        let pin = Pin::from_bytes(r.take(PIN_DIGITS_MAX + 1)?)?;
        let pin_tries_left = r.u8()?;
        if pin_tries_left > PIN_TRIES_MAX {
            return Err(PurseError::Malformed("PIN tries"));
        }
        let balance = r.amount(currency)?;
        let counter = r.u32()?;
        let acknowledged_through = r.u32()?;
        let limits = OfflineLimits::decode(&mut r, currency)?;
        let spent_since_sync = r.amount(currency)?;
        let blocked = r.bool()?;
        let mut blocked_purses = Vec::new();
        for _ in 0..r.count_u16(BLOCKED_PURSES_MAX)? {
            blocked_purses.push(r.phone()?);
        }
        let mut pending = Vec::new();
        for _ in 0..r.count_u8(PENDING_REQUESTS_MAX)? {
            pending.push(PendingRequest {
                nonce_b: r.u16()?,
                payer: r.phone()?,
                amount: r.amount(currency)?,
                key: KeyRef::decode(&mut r)?,
                created_at: Timestamp(r.u64()?),
                failures: r.u8()?,
                code1: Code::from_number(r.u32()?)?,
            });
        }
        let last_payment = match r.u8()? {
            0 => None,
            1 => Some(LastPayment {
                payee: r.phone()?,
                amount: r.amount(currency)?,
                code2: Code::from_number(r.u32()?)?,
                counter: r.u32()?,
            }),
            _ => return Err(PurseError::Malformed("last payment")),
        };
        let last_received = match r.u8()? {
            0 => None,
            1 => Some((Code::from_number(r.u32()?)?, r.u32()?)),
            _ => return Err(PurseError::Malformed("last received")),
        };
        let mut log = Vec::new();
        for _ in 0..r.count_u16(LOG_UNACKNOWLEDGED_MAX)? {
            log.push(LogEntry::decode(&mut r, currency)?);
        }
        let mut recent = Vec::new();
        for _ in 0..r.count_u8(LOG_RECENT_MAX)? {
            recent.push(LogEntry::decode(&mut r, currency)?);
        }
        let mut used_nonces = Vec::new();
        for _ in 0..r.count_u8(SCHEME_EPOCHS_HELD + PAIRWISE_KEYS_MAX)? {
            let key = KeyRef::decode(&mut r)?;
            let peer = match r.u8()? {
                0 => None,
                1 => Some(r.phone()?),
                _ => return Err(PurseError::Malformed("used nonces")),
            };
            let bits: [u8; NONCE_BITMAP_BYTES] = r.array()?;
            used_nonces.push(UsedNonces {
                key,
                peer,
                bits: bits.to_vec(),
            });
        }
        let failures_since_sync = r.u16()?;
        let mut failures_by_payer = Vec::new();
        for _ in 0..r.count_u8(usize::from(CODE2_FAILURES_PER_SYNC_PERIOD_MAX))? {
            failures_by_payer.push((r.phone()?, r.u8()?));
        }
        let clock = Timestamp(r.u64()?);
        let sync_sequence = r.u32()?;
        let answer_applied = r.u32()?;
        let revision = r.u64()?;
        // Written since PIN resets; a state from before has used none.
        let (pin_resets_used, pin_reset_failures) = if r.at_end() {
            (0, 0)
        } else {
            (r.u32()?, r.u8()?)
        };
        if pin_reset_failures > PIN_RESET_FAILURES_MAX {
            return Err(PurseError::Malformed("PIN reset tries"));
        }
        r.finish()?;
        // The log holds the counters after `acknowledged_through`, without gaps, up to `counter`;
        // checked arithmetic, so a state claiming counters past u32::MAX is refused, not wrapped.
        let expected = |index: usize| {
            u32::try_from(index)
                .ok()
                .and_then(|index| acknowledged_through.checked_add(index))
        };
        let contiguous = log
            .iter()
            .enumerate()
            .all(|(index, entry)| expected(index + 1) == Some(entry.counter));
        if !contiguous || expected(log.len()) != Some(counter) {
            return Err(PurseError::Malformed("log counters"));
        }
        if answer_applied > sync_sequence {
            return Err(PurseError::Malformed("sync sequence"));
        }
        Ok(Purse {
            identity: PurseIdentity {
                operator,
                purse_id,
                phone,
                kind,
                currency,
            },
            purse_key,
            scheme_keys,
            generation_epoch,
            pairwise_keys,
            peer_tickets,
            pairwise_requests,
            pin,
            pin_tries_left,
            balance,
            counter,
            acknowledged_through,
            limits,
            spent_since_sync,
            blocked,
            blocked_purses,
            pending,
            last_payment,
            last_received,
            log,
            recent,
            used_nonces,
            failures_since_sync,
            failures_by_payer,
            clock,
            sync_sequence,
            answer_applied,
            revision,
            pin_resets_used,
            pin_reset_failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::Provisioning;

    fn purse() -> Purse {
        let now = Timestamp(1_800_000_000);
        let provisioning = Provisioning {
            operator: OperatorId::new("test-op").unwrap(),
            purse_id: PurseId(1),
            phone: Phone::parse("+254700000001").unwrap(),
            kind: PurseKind::Customer,
            currency: Currency::KES,
            purse_key: SecretKey::from_bytes([1; 16]),
            scheme_epoch: 1,
            scheme_key: SecretKey::from_bytes([2; 16]),
            limits: OfflineLimits::defaults(PurseKind::Customer, Currency::KES, now),
        };
        Purse::provision(&provisioning, Pin::parse("1234").unwrap())
    }

    fn entry(counter: u32) -> LogEntry {
        LogEntry {
            counter,
            time: Timestamp(1_800_000_000),
            amount: Amount::from_minor(100, Currency::KES).unwrap(),
            kind: EntryKind::OperatorCredit { credit_id: 1 },
        }
    }

    /// Found by the `purse_sync` fuzz target: a state whose acknowledged counter is u32::MAX
    /// overflowed the contiguity check (a panic where overflow is checked, a wrapped counter in
    /// release builds). Counters are now checked without overflow: a state whose entries would
    /// run past the maximum is refused, one that reaches it exactly is read.
    #[test]
    fn a_state_at_the_counter_maximum_is_read_without_overflow() {
        let mut all_acknowledged = purse();
        all_acknowledged.acknowledged_through = u32::MAX;
        all_acknowledged.counter = u32::MAX;
        let decoded = Purse::decode_state(&all_acknowledged.encode_state()).unwrap();
        assert_eq!(decoded.encode_state(), all_acknowledged.encode_state());

        let mut past = purse();
        past.acknowledged_through = u32::MAX;
        past.log = alloc::vec![entry(5)];
        past.counter = 5;
        assert_eq!(
            Purse::decode_state(&past.encode_state()).unwrap_err(),
            PurseError::Malformed("log counters")
        );

        let mut last = purse();
        last.acknowledged_through = u32::MAX - 1;
        last.log = alloc::vec![entry(u32::MAX)];
        last.counter = u32::MAX;
        let decoded = Purse::decode_state(&last.encode_state()).unwrap();
        assert_eq!(decoded.encode_state(), last.encode_state());
    }
}
