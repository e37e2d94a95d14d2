//! The two-party two-phase commit, as state machines with no I/O.
//!
//! The seller is the coordinator. Each state is a type named after what it waits for; handling an
//! input consumes the state and returns the next one with an ordered list of `Step`s: records
//! to force to the log, messages to send, events to show. A step list is performed in order, and
//! a message that promises something always comes after the record that makes the promise
//! durable. Time comes in as `now`; signatures come from the wallet's keys in `View`.
//!
//! ```text
//! seller: AwaitingBuyers --choose--> [persist pending] AwaitingAgreement
//!         AwaitingAgreement --agreed--> [persist committed] AwaitingAcknowledgement(commit)
//!         AwaitingAgreement --abort / retries exhausted--> [persist voided] AwaitingAcknowledgement(void)
//!         AwaitingAcknowledgement --acknowledged--> [persist complete] Complete
//! buyer:  AwaitingCommitRequest --commit-request--> AwaitingApproval
//!         AwaitingApproval --approve--> [persist prepared] Prepared --commit--> [persist posted] Finished
//!                                                            Prepared --abort--> [persist voided] Finished
//!         AwaitingApproval --decline / timeout--> Finished (nothing was promised)
//!         Prepared never leaves on its own: only the seller or the money office ends it.
//! ```

use alloc::vec;
use alloc::vec::Vec;
use offpay_money::Amount;

use crate::credential::Credential;
use crate::error::PeerError;
use crate::ids::{Millis, TransferId, WalletId};
use crate::keys::WalletKeys;
use crate::record::Record;
use crate::terms::{Agreement, Terms, sign_commit, verify_commit};
use crate::wallet::Book;
use crate::wire::{AbortReason, Body, Outcome};

/// First retransmission delay; each further attempt doubles it up to [`RETRANSMIT_INTERVAL_MAX_MS`].
pub const RETRANSMIT_INTERVAL_MS: u64 = 250;
/// Longest delay between two retransmissions.
pub const RETRANSMIT_INTERVAL_MAX_MS: u64 = 2_000;
/// Look-up broadcasts per sale.
pub const LOOKUP_ATTEMPTS_MAX: u32 = 5;
/// Commit-requests the seller sends before it decides void (about 35 s with the backoff).
pub const COMMIT_REQUEST_ATTEMPTS_MAX: u32 = 20;
/// Commit or abort messages the seller sends before it waits silently for the buyer (or the
/// money office at the next sync).
pub const DECISION_ATTEMPTS_MAX: u32 = 20;
/// Agreed messages a prepared buyer sends as status queries before it waits silently.
pub const PREPARED_QUERY_ATTEMPTS_MAX: u32 = 20;
/// How long a buyer that answered a look-up waits for the commit-request.
pub const BUYER_PRESENT_TIMEOUT_MS: u64 = 30_000;
/// How long the buyer's user has to approve a price before the wallet declines it.
pub const APPROVAL_TIMEOUT_MS: u64 = 30_000;
/// Most buyers a sale lists as candidates.
pub const CANDIDATES_MAX: usize = 16;

const _: () = assert!(RETRANSMIT_INTERVAL_MS <= RETRANSMIT_INTERVAL_MAX_MS);
const _: () = assert!(COMMIT_REQUEST_ATTEMPTS_MAX >= 2 && PREPARED_QUERY_ATTEMPTS_MAX >= 2);

/// Delay before retransmission number `attempt` (1-based count of sends so far).
pub fn retransmit_delay_ms(attempt: u32) -> u64 {
    let shift = attempt.saturating_sub(1).min(16);
    (RETRANSMIT_INTERVAL_MS << shift).min(RETRANSMIT_INTERVAL_MAX_MS)
}

/// Which side of a transfer a wallet is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Receives the value; coordinates.
    Seller,
    /// Pays.
    Buyer,
}

/// Something the user or the application should know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Seller: a wallet in buyer mode answered the look-up.
    BuyerAnswered {
        /// The sale.
        transfer_id: TransferId,
        /// The buyer's unique id.
        buyer: WalletId,
    },
    /// Buyer: a seller asks this price; call `approve` or `decline`.
    PriceOffered {
        /// The transfer.
        transfer_id: TransferId,
        /// The seller.
        seller: WalletId,
        /// The price.
        amount: Amount,
    },
    /// The transfer is posted on this side.
    Posted {
        /// The transfer.
        transfer_id: TransferId,
        /// This wallet's side.
        role: Role,
        /// The amount.
        amount: Amount,
    },
    /// The transfer is voided on this side.
    Voided {
        /// The transfer.
        transfer_id: TransferId,
        /// This wallet's side.
        role: Role,
    },
    /// Buyer: prepared, and the seller has gone quiet. The value stays held until the seller
    /// answers or the money office resolves the transfer at the next sync.
    AwaitingResolution {
        /// The transfer.
        transfer_id: TransferId,
    },
    /// Buyer: the user approved, but the wallet can no longer pay (funds, limits, expiry, or a
    /// restored wallet that must sync first); it voted no.
    PaymentRefused {
        /// The transfer.
        transfer_id: TransferId,
        /// Why.
        reason: AbortReason,
    },
    /// Value was loaded into the wallet.
    Charged {
        /// The amount.
        amount: Amount,
    },
}

/// One step of a transition, performed in order.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // A handful per transition, consumed at once.
pub(crate) enum Step {
    /// Force this record to the log before any later step.
    Persist(Record),
    /// Seal and send this body to the counterparty.
    Send(Body),
    /// Broadcast the sale's look-up again.
    BroadcastLookup,
    /// Tell the user.
    Notify(Event),
}

/// What a transition may read: the wallet's keys and its logged state.
pub(crate) struct View<'a> {
    pub(crate) keys: &'a WalletKeys,
    pub(crate) book: &'a Book,
    pub(crate) now: Millis,
}

/// The result of handling an input: the next state, its steps, or a refusal that leaves the
/// state as it was.
pub(crate) struct Next<S> {
    pub(crate) state: S,
    pub(crate) steps: Vec<Step>,
    pub(crate) refused: Option<PeerError>,
}

impl<S> Next<S> {
    fn to(state: S, steps: Vec<Step>) -> Self {
        Next {
            state,
            steps,
            refused: None,
        }
    }
    fn stay(state: S) -> Self {
        Next::to(state, Vec::new())
    }
    fn refuse(state: S, error: PeerError) -> Self {
        Next {
            state,
            steps: Vec::new(),
            refused: Some(error),
        }
    }
}

// ---------------------------------------------------------------- seller

/// A buyer that answered the look-up.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) credential: Credential,
    pub(crate) seq: u64,
}

/// Seller: the look-up is out; waiting for wallets in buyer mode to answer, and for the user to
/// choose one.
#[derive(Clone, Debug)]
pub struct SellerAwaitingBuyers {
    pub(crate) transfer_id: TransferId,
    pub(crate) amount: Amount,
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) lookups_sent: u32,
    pub(crate) next_at: Option<Millis>,
}

/// Seller: commit-request sent (pending record forced); waiting for agreed or abort.
#[derive(Clone, Debug)]
pub struct SellerAwaitingAgreement {
    pub(crate) terms: Terms,
    pub(crate) buyer: Credential,
    pub(crate) attempts: u32,
    pub(crate) next_at: Option<Millis>,
    pub(crate) peer_seq: u64,
}

/// The seller's decision.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decision {
    Commit { signature: [u8; 64] },
    Void,
}

impl Decision {
    fn outcome(&self) -> Outcome {
        match self {
            Decision::Commit { .. } => Outcome::Posted,
            Decision::Void => Outcome::Voided,
        }
    }
    fn message(&self) -> Body {
        match self {
            Decision::Commit { signature, .. } => Body::Commit {
                signature: *signature,
            },
            Decision::Void => Body::Abort {
                reason: AbortReason::SellerVoided,
            },
        }
    }
}

/// Seller: decision forced to the log and sent; waiting for the buyer's acknowledgement.
#[derive(Clone, Debug)]
pub struct SellerAwaitingAcknowledgement {
    pub(crate) terms: Terms,
    pub(crate) buyer: Credential,
    pub(crate) decision: Decision,
    pub(crate) attempts: u32,
    pub(crate) next_at: Option<Millis>,
    pub(crate) peer_seq: u64,
}

/// Seller: the buyer acknowledged (complete record forced). Kept to answer late duplicates.
#[derive(Clone, Debug)]
pub struct SellerComplete {
    pub(crate) terms: Terms,
    pub(crate) buyer: Credential,
    pub(crate) decision: Decision,
    pub(crate) peer_seq: u64,
}

/// A sale, in whichever state it is.
#[derive(Clone, Debug)]
pub enum SellerState {
    /// See [`SellerAwaitingBuyers`].
    AwaitingBuyers(SellerAwaitingBuyers),
    /// See [`SellerAwaitingAgreement`].
    AwaitingAgreement(SellerAwaitingAgreement),
    /// See [`SellerAwaitingAcknowledgement`].
    AwaitingAcknowledgement(SellerAwaitingAcknowledgement),
    /// See [`SellerComplete`].
    Complete(SellerComplete),
}

impl SellerState {
    pub(crate) fn next_at(&self) -> Option<Millis> {
        match self {
            SellerState::AwaitingBuyers(s) => s.next_at,
            SellerState::AwaitingAgreement(s) => s.next_at,
            SellerState::AwaitingAcknowledgement(s) => s.next_at,
            SellerState::Complete(_) => None,
        }
    }

    /// The counterparty once chosen.
    pub(crate) fn buyer(&self) -> Option<&Credential> {
        match self {
            SellerState::AwaitingBuyers(_) => None,
            SellerState::AwaitingAgreement(s) => Some(&s.buyer),
            SellerState::AwaitingAcknowledgement(s) => Some(&s.buyer),
            SellerState::Complete(s) => Some(&s.buyer),
        }
    }

    pub(crate) fn peer_seq_mut(&mut self) -> Option<&mut u64> {
        match self {
            SellerState::AwaitingBuyers(_) => None,
            SellerState::AwaitingAgreement(s) => Some(&mut s.peer_seq),
            SellerState::AwaitingAcknowledgement(s) => Some(&mut s.peer_seq),
            SellerState::Complete(s) => Some(&mut s.peer_seq),
        }
    }

    /// Short name of the state, for status displays.
    pub fn name(&self) -> &'static str {
        match self {
            SellerState::AwaitingBuyers(_) => "awaiting-buyers",
            SellerState::AwaitingAgreement(_) => "pending",
            SellerState::AwaitingAcknowledgement(s) => match s.decision {
                Decision::Commit { .. } => "posted-unacknowledged",
                Decision::Void => "voided-unacknowledged",
            },
            SellerState::Complete(s) => match s.decision {
                Decision::Commit { .. } => "posted",
                Decision::Void => "voided",
            },
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self, SellerState::Complete(_))
    }

    pub(crate) fn on_message(
        self,
        view: &View<'_>,
        sender: &Credential,
        body: &Body,
    ) -> Next<Self> {
        match self {
            SellerState::AwaitingBuyers(s) => s.on_message(sender, body),
            SellerState::AwaitingAgreement(s) => s.on_message(view, body),
            SellerState::AwaitingAcknowledgement(s) => s.on_message(body),
            SellerState::Complete(s) => s.on_message(body),
        }
    }

    pub(crate) fn on_timer(self, now: Millis) -> Next<Self> {
        match self {
            SellerState::AwaitingBuyers(mut s) => {
                if s.next_at.is_some_and(|at| at <= now) {
                    if s.lookups_sent < LOOKUP_ATTEMPTS_MAX {
                        s.lookups_sent += 1;
                        s.next_at = Some(now + retransmit_delay_ms(s.lookups_sent));
                        return Next::to(
                            SellerState::AwaitingBuyers(s),
                            vec![Step::BroadcastLookup],
                        );
                    }
                    s.next_at = None;
                }
                Next::stay(SellerState::AwaitingBuyers(s))
            }
            SellerState::AwaitingAgreement(s) => s.on_timer(now),
            SellerState::AwaitingAcknowledgement(s) => s.on_timer(now),
            SellerState::Complete(s) => Next::stay(SellerState::Complete(s)),
        }
    }
}

impl SellerAwaitingBuyers {
    fn on_message(mut self, sender: &Credential, body: &Body) -> Next<SellerState> {
        match body {
            Body::Present => {
                let known = self
                    .candidates
                    .iter()
                    .any(|c| c.credential.wallet_id == sender.wallet_id);
                if known || self.candidates.len() >= CANDIDATES_MAX {
                    return Next::stay(SellerState::AwaitingBuyers(self));
                }
                self.candidates.push(Candidate {
                    credential: sender.clone(),
                    seq: 0,
                });
                let event = Event::BuyerAnswered {
                    transfer_id: self.transfer_id,
                    buyer: sender.wallet_id,
                };
                Next::to(SellerState::AwaitingBuyers(self), vec![Step::Notify(event)])
            }
            _ => Next::refuse(
                SellerState::AwaitingBuyers(self),
                PeerError::UnexpectedMessage,
            ),
        }
    }

    /// The user chose a buyer: force the pending record, then send the commit-request.
    pub(crate) fn choose(
        self,
        own_id: WalletId,
        candidate: Candidate,
        now: Millis,
    ) -> (SellerState, Vec<Step>) {
        let terms = Terms {
            transfer_id: self.transfer_id,
            seller: own_id,
            buyer: candidate.credential.wallet_id,
            amount: self.amount,
        };
        let steps = vec![
            Step::Persist(Record::SellerPending {
                terms,
                buyer: candidate.credential.clone(),
            }),
            Step::Send(Body::CommitRequest {
                amount: self.amount,
            }),
        ];
        let state = SellerAwaitingAgreement {
            terms,
            buyer: candidate.credential,
            attempts: 1,
            next_at: Some(now + retransmit_delay_ms(1)),
            peer_seq: candidate.seq,
        };
        (SellerState::AwaitingAgreement(state), steps)
    }
}

impl SellerAwaitingAgreement {
    fn on_message(self, view: &View<'_>, body: &Body) -> Next<SellerState> {
        match body {
            Body::Agreed { agreement } => {
                if let Err(error) = agreement.verify(&self.buyer.signing_key, &self.terms) {
                    return Next::refuse(SellerState::AwaitingAgreement(self), error);
                }
                let amount = self.terms.amount.minor();
                let before = view.book.balance_minor;
                let room = view
                    .book
                    .credential
                    .limits
                    .balance_max
                    .minor()
                    .saturating_sub(before.saturating_add(view.book.held_minor));
                if amount > room {
                    return self.void(view.now, false);
                }
                // Containment of a rolled-back or altered buyer, offline: a seller never takes a
                // payment number it already took from this buyer, nor more from one buyer
                // credential than that credential lets an honest wallet pay between two syncs.
                let (accepted, seen) = view
                    .book
                    .accepted_from(&self.buyer, agreement.buyer_spend_seq);
                let allowance = self.buyer.limits.offline_spend_max.minor();
                if seen || accepted.saturating_add(amount) > allowance {
                    return self.void(view.now, false);
                }
                let signature = sign_commit(view.keys, &self.terms, agreement);
                let steps = vec![
                    Step::Persist(Record::SellerCommitted {
                        transfer_id: self.terms.transfer_id,
                        agreement: *agreement,
                        commit_signature: signature,
                        balance_before_minor: before,
                        balance_after_minor: before + amount,
                    }),
                    Step::Send(Body::Commit { signature }),
                    Step::Notify(Event::Posted {
                        transfer_id: self.terms.transfer_id,
                        role: Role::Seller,
                        amount: self.terms.amount,
                    }),
                ];
                Next::to(
                    SellerState::AwaitingAcknowledgement(SellerAwaitingAcknowledgement {
                        terms: self.terms,
                        buyer: self.buyer,
                        decision: Decision::Commit { signature },
                        attempts: 1,
                        next_at: Some(view.now + retransmit_delay_ms(1)),
                        peer_seq: self.peer_seq,
                    }),
                    steps,
                )
            }
            // The buyer voted no: it holds nothing, so the transfer is complete once voided.
            Body::Abort { .. } => self.void(view.now, true),
            Body::Present => Next::stay(SellerState::AwaitingAgreement(self)),
            _ => Next::refuse(
                SellerState::AwaitingAgreement(self),
                PeerError::UnexpectedMessage,
            ),
        }
    }

    fn on_timer(mut self, now: Millis) -> Next<SellerState> {
        if self.next_at.is_none_or(|at| at > now) {
            return Next::stay(SellerState::AwaitingAgreement(self));
        }
        if self.attempts < COMMIT_REQUEST_ATTEMPTS_MAX {
            self.attempts += 1;
            self.next_at = Some(now + retransmit_delay_ms(self.attempts));
            let body = Body::CommitRequest {
                amount: self.terms.amount,
            };
            return Next::to(SellerState::AwaitingAgreement(self), vec![Step::Send(body)]);
        }
        self.void(now, false)
    }

    /// The seller decides void: force the record, then tell the buyer.
    pub(crate) fn void(self, now: Millis, buyer_voted_no: bool) -> Next<SellerState> {
        let transfer_id = self.terms.transfer_id;
        let mut steps = vec![Step::Persist(Record::SellerVoided { transfer_id })];
        let state = if buyer_voted_no {
            steps.push(Step::Persist(Record::SellerComplete { transfer_id }));
            SellerState::Complete(SellerComplete {
                terms: self.terms,
                buyer: self.buyer,
                decision: Decision::Void,
                peer_seq: self.peer_seq,
            })
        } else {
            steps.push(Step::Send(Decision::Void.message()));
            SellerState::AwaitingAcknowledgement(SellerAwaitingAcknowledgement {
                terms: self.terms,
                buyer: self.buyer,
                decision: Decision::Void,
                attempts: 1,
                next_at: Some(now + retransmit_delay_ms(1)),
                peer_seq: self.peer_seq,
            })
        };
        steps.push(Step::Notify(Event::Voided {
            transfer_id,
            role: Role::Seller,
        }));
        Next::to(state, steps)
    }
}

impl SellerAwaitingAcknowledgement {
    fn on_message(self, body: &Body) -> Next<SellerState> {
        match body {
            // A duplicate or a status query: repeat the decision.
            Body::Agreed { .. } | Body::Present => {
                let message = self.decision.message();
                Next::to(
                    SellerState::AwaitingAcknowledgement(self),
                    vec![Step::Send(message)],
                )
            }
            Body::Acknowledged { outcome } if *outcome == self.decision.outcome() => {
                let steps = vec![Step::Persist(Record::SellerComplete {
                    transfer_id: self.terms.transfer_id,
                })];
                Next::to(SellerState::Complete(self.complete()), steps)
            }
            // A buyer that voted no before it heard our void holds nothing either.
            Body::Abort { .. } if matches!(self.decision, Decision::Void) => {
                let steps = vec![Step::Persist(Record::SellerComplete {
                    transfer_id: self.terms.transfer_id,
                })];
                Next::to(SellerState::Complete(self.complete()), steps)
            }
            Body::Acknowledged { .. } | Body::Abort { .. } => Next::refuse(
                SellerState::AwaitingAcknowledgement(self),
                PeerError::ConflictingOutcome,
            ),
            _ => Next::refuse(
                SellerState::AwaitingAcknowledgement(self),
                PeerError::UnexpectedMessage,
            ),
        }
    }

    fn on_timer(mut self, now: Millis) -> Next<SellerState> {
        if self.next_at.is_none_or(|at| at > now) {
            return Next::stay(SellerState::AwaitingAcknowledgement(self));
        }
        if self.attempts < DECISION_ATTEMPTS_MAX {
            self.attempts += 1;
            self.next_at = Some(now + retransmit_delay_ms(self.attempts));
            let message = self.decision.message();
            return Next::to(
                SellerState::AwaitingAcknowledgement(self),
                vec![Step::Send(message)],
            );
        }
        // Wait silently: a status query from the buyer, or the next sync, finishes it.
        self.next_at = None;
        Next::stay(SellerState::AwaitingAcknowledgement(self))
    }

    pub(crate) fn complete(self) -> SellerComplete {
        SellerComplete {
            terms: self.terms,
            buyer: self.buyer,
            decision: self.decision,
            peer_seq: self.peer_seq,
        }
    }

    pub(crate) fn outcome(&self) -> Outcome {
        self.decision.outcome()
    }
}

impl SellerComplete {
    fn on_message(self, body: &Body) -> Next<SellerState> {
        match body {
            // The acknowledgement reached us but the buyer asks again: repeat the decision.
            Body::Agreed { .. } => {
                let message = self.decision.message();
                Next::to(SellerState::Complete(self), vec![Step::Send(message)])
            }
            _ => Next::stay(SellerState::Complete(self)),
        }
    }
}

// ---------------------------------------------------------------- buyer

/// Buyer: answered a look-up; waiting for that seller's commit-request. Nothing is logged.
#[derive(Clone, Debug)]
pub struct BuyerAwaitingCommitRequest {
    pub(crate) transfer_id: TransferId,
    pub(crate) seller: Credential,
    pub(crate) expires_at: Millis,
    pub(crate) peer_seq: u64,
}

/// Buyer: a price arrived; waiting for the user to approve or decline. Nothing is logged yet.
#[derive(Clone, Debug)]
pub struct BuyerAwaitingApproval {
    pub(crate) terms: Terms,
    pub(crate) seller: Credential,
    pub(crate) expires_at: Millis,
    pub(crate) peer_seq: u64,
}

/// Buyer: prepared (record forced, value held, agreement sent). Waits for the seller's commit or
/// abort, or for the money office; never voids on its own.
#[derive(Clone, Debug)]
pub struct BuyerPrepared {
    pub(crate) terms: Terms,
    pub(crate) seller: Credential,
    pub(crate) agreement: Agreement,
    pub(crate) attempts: u32,
    pub(crate) next_at: Option<Millis>,
    pub(crate) peer_seq: u64,
}

/// Buyer: posted or voided after being prepared. Kept to answer late duplicates.
#[derive(Clone, Debug)]
pub struct BuyerFinished {
    pub(crate) terms: Terms,
    pub(crate) seller: Credential,
    pub(crate) outcome: Outcome,
    pub(crate) peer_seq: u64,
}

/// A purchase, in whichever state it is.
#[derive(Clone, Debug)]
pub enum BuyerState {
    /// See [`BuyerAwaitingCommitRequest`].
    AwaitingCommitRequest(BuyerAwaitingCommitRequest),
    /// See [`BuyerAwaitingApproval`].
    AwaitingApproval(BuyerAwaitingApproval),
    /// See [`BuyerPrepared`].
    Prepared(BuyerPrepared),
    /// See [`BuyerFinished`].
    Finished(BuyerFinished),
    /// Ended before anything was promised (declined, refused, expired); dropped by the wallet.
    Forgotten,
}

impl BuyerState {
    pub(crate) fn next_at(&self) -> Option<Millis> {
        match self {
            BuyerState::AwaitingCommitRequest(s) => Some(s.expires_at),
            BuyerState::AwaitingApproval(s) => Some(s.expires_at),
            BuyerState::Prepared(s) => s.next_at,
            BuyerState::Finished(_) | BuyerState::Forgotten => None,
        }
    }

    pub(crate) fn seller(&self) -> Option<&Credential> {
        match self {
            BuyerState::AwaitingCommitRequest(s) => Some(&s.seller),
            BuyerState::AwaitingApproval(s) => Some(&s.seller),
            BuyerState::Prepared(s) => Some(&s.seller),
            BuyerState::Finished(s) => Some(&s.seller),
            BuyerState::Forgotten => None,
        }
    }

    pub(crate) fn peer_seq_mut(&mut self) -> Option<&mut u64> {
        match self {
            BuyerState::AwaitingCommitRequest(s) => Some(&mut s.peer_seq),
            BuyerState::AwaitingApproval(s) => Some(&mut s.peer_seq),
            BuyerState::Prepared(s) => Some(&mut s.peer_seq),
            BuyerState::Finished(s) => Some(&mut s.peer_seq),
            BuyerState::Forgotten => None,
        }
    }

    /// Short name of the state, for status displays.
    pub fn name(&self) -> &'static str {
        match self {
            BuyerState::AwaitingCommitRequest(_) => "awaiting-commit-request",
            BuyerState::AwaitingApproval(_) => "awaiting-approval",
            BuyerState::Prepared(_) => "prepared",
            BuyerState::Finished(s) => match s.outcome {
                Outcome::Posted => "posted",
                Outcome::Voided => "voided",
            },
            BuyerState::Forgotten => "forgotten",
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self, BuyerState::Finished(_) | BuyerState::Forgotten)
    }

    pub(crate) fn on_message(self, view: &View<'_>, body: &Body) -> Next<Self> {
        match self {
            BuyerState::AwaitingCommitRequest(s) => s.on_message(view, body),
            BuyerState::AwaitingApproval(s) => s.on_message(body),
            BuyerState::Prepared(s) => s.on_message(body),
            BuyerState::Finished(s) => s.on_message(body),
            BuyerState::Forgotten => {
                Next::refuse(BuyerState::Forgotten, PeerError::UnknownTransfer)
            }
        }
    }

    pub(crate) fn on_timer(self, now: Millis) -> Next<Self> {
        match self {
            BuyerState::AwaitingCommitRequest(s) if s.expires_at <= now => {
                Next::stay(BuyerState::Forgotten)
            }
            BuyerState::AwaitingApproval(s) if s.expires_at <= now => s.decline(),
            BuyerState::Prepared(s) => s.on_timer(now),
            other => Next::stay(other),
        }
    }
}

/// Why this wallet cannot pay `amount` now, if it cannot.
pub(crate) fn payment_refusal(view: &View<'_>, amount: Amount) -> Option<AbortReason> {
    let book = view.book;
    let limits = &book.credential.limits;
    if amount.currency() != book.credential.currency || amount.is_zero() {
        return Some(AbortReason::LimitExceeded);
    }
    if book.must_sync_before_paying || view.now > book.credential.expires_at_ms {
        return Some(AbortReason::LimitExceeded);
    }
    if amount.minor() > limits.payment_max.minor()
        || book.spent_since_sync_minor.saturating_add(amount.minor())
            > limits.offline_spend_max.minor()
    {
        return Some(AbortReason::LimitExceeded);
    }
    if amount.minor() > book.balance_minor {
        return Some(AbortReason::InsufficientFunds);
    }
    None
}

impl BuyerAwaitingCommitRequest {
    fn on_message(self, view: &View<'_>, body: &Body) -> Next<BuyerState> {
        match body {
            Body::CommitRequest { amount } => {
                let terms = Terms {
                    transfer_id: self.transfer_id,
                    seller: self.seller.wallet_id,
                    buyer: view.book.credential.wallet_id,
                    amount: *amount,
                };
                if let Some(reason) = payment_refusal(view, *amount) {
                    return Next::to(
                        BuyerState::Forgotten,
                        vec![
                            Step::Send(Body::Abort { reason }),
                            Step::Notify(Event::PaymentRefused {
                                transfer_id: self.transfer_id,
                                reason,
                            }),
                        ],
                    );
                }
                let event = Event::PriceOffered {
                    transfer_id: self.transfer_id,
                    seller: self.seller.wallet_id,
                    amount: *amount,
                };
                Next::to(
                    BuyerState::AwaitingApproval(BuyerAwaitingApproval {
                        terms,
                        seller: self.seller,
                        expires_at: view.now + APPROVAL_TIMEOUT_MS,
                        peer_seq: self.peer_seq,
                    }),
                    vec![Step::Notify(event)],
                )
            }
            Body::Abort { .. } => Next::stay(BuyerState::Forgotten),
            _ => Next::refuse(
                BuyerState::AwaitingCommitRequest(self),
                PeerError::UnexpectedMessage,
            ),
        }
    }
}

impl BuyerAwaitingApproval {
    fn on_message(self, body: &Body) -> Next<BuyerState> {
        match body {
            // Retransmission while the user thinks.
            Body::CommitRequest { amount } if *amount == self.terms.amount => {
                Next::stay(BuyerState::AwaitingApproval(self))
            }
            Body::Abort { .. } => {
                let event = Event::Voided {
                    transfer_id: self.terms.transfer_id,
                    role: Role::Buyer,
                };
                Next::to(BuyerState::Forgotten, vec![Step::Notify(event)])
            }
            _ => Next::refuse(
                BuyerState::AwaitingApproval(self),
                PeerError::UnexpectedMessage,
            ),
        }
    }

    /// The user approved: sign the agreement as the next payment number, force the prepared
    /// record (undo and redo images), then send agreed.
    pub(crate) fn approve(self, view: &View<'_>) -> Result<(BuyerState, Vec<Step>), AbortReason> {
        if let Some(reason) = payment_refusal(view, self.terms.amount) {
            return Err(reason);
        }
        let before = view.book.balance_minor;
        let after = before - self.terms.amount.minor();
        let spend_seq = view.book.spend_seq + 1;
        let agreement = Agreement::sign(view.keys, &self.terms, spend_seq, after);
        let steps = vec![
            Step::Persist(Record::BuyerPrepared {
                terms: self.terms,
                seller: self.seller.clone(),
                agreement,
                balance_before_minor: before,
                balance_after_minor: after,
            }),
            Step::Send(Body::Agreed { agreement }),
        ];
        let state = BuyerPrepared {
            terms: self.terms,
            seller: self.seller,
            agreement,
            attempts: 1,
            next_at: Some(view.now + retransmit_delay_ms(1)),
            peer_seq: self.peer_seq,
        };
        Ok((BuyerState::Prepared(state), steps))
    }

    /// The user declined (or did not answer): vote no. Nothing was promised, nothing is logged.
    pub(crate) fn decline(self) -> Next<BuyerState> {
        let steps = vec![
            Step::Send(Body::Abort {
                reason: AbortReason::Declined,
            }),
            Step::Notify(Event::Voided {
                transfer_id: self.terms.transfer_id,
                role: Role::Buyer,
            }),
        ];
        Next::to(BuyerState::Forgotten, steps)
    }
}

impl BuyerPrepared {
    fn on_message(self, body: &Body) -> Next<BuyerState> {
        match body {
            Body::Commit { signature } => {
                if let Err(error) = verify_commit(
                    &self.seller.signing_key,
                    &self.terms,
                    &self.agreement,
                    signature,
                ) {
                    return Next::refuse(BuyerState::Prepared(self), error);
                }
                let steps = vec![
                    Step::Persist(Record::BuyerPosted {
                        transfer_id: self.terms.transfer_id,
                        commit_signature: *signature,
                    }),
                    Step::Send(Body::Acknowledged {
                        outcome: Outcome::Posted,
                    }),
                    Step::Notify(Event::Posted {
                        transfer_id: self.terms.transfer_id,
                        role: Role::Buyer,
                        amount: self.terms.amount,
                    }),
                ];
                Next::to(BuyerState::Finished(self.finish(Outcome::Posted)), steps)
            }
            Body::Abort { .. } => {
                let steps = vec![
                    Step::Persist(Record::BuyerVoided {
                        transfer_id: self.terms.transfer_id,
                    }),
                    Step::Send(Body::Acknowledged {
                        outcome: Outcome::Voided,
                    }),
                    Step::Notify(Event::Voided {
                        transfer_id: self.terms.transfer_id,
                        role: Role::Buyer,
                    }),
                ];
                Next::to(BuyerState::Finished(self.finish(Outcome::Voided)), steps)
            }
            // The seller did not get our agreement yet: repeat it.
            Body::CommitRequest { .. } => {
                let agreement = self.agreement;
                Next::to(
                    BuyerState::Prepared(self),
                    vec![Step::Send(Body::Agreed { agreement })],
                )
            }
            _ => Next::refuse(BuyerState::Prepared(self), PeerError::UnexpectedMessage),
        }
    }

    fn on_timer(mut self, now: Millis) -> Next<BuyerState> {
        if self.next_at.is_none_or(|at| at > now) {
            return Next::stay(BuyerState::Prepared(self));
        }
        if self.attempts < PREPARED_QUERY_ATTEMPTS_MAX {
            self.attempts += 1;
            self.next_at = Some(now + retransmit_delay_ms(self.attempts));
            let agreement = self.agreement;
            return Next::to(
                BuyerState::Prepared(self),
                vec![Step::Send(Body::Agreed { agreement })],
            );
        }
        // Blocked: only the seller or the money office may end a prepared transfer.
        self.next_at = None;
        let event = Event::AwaitingResolution {
            transfer_id: self.terms.transfer_id,
        };
        Next::to(BuyerState::Prepared(self), vec![Step::Notify(event)])
    }

    pub(crate) fn finish(self, outcome: Outcome) -> BuyerFinished {
        BuyerFinished {
            terms: self.terms,
            seller: self.seller,
            outcome,
            peer_seq: self.peer_seq,
        }
    }
}

impl BuyerFinished {
    fn on_message(self, body: &Body) -> Next<BuyerState> {
        let outcome = self.outcome;
        match (body, outcome) {
            (Body::Commit { .. }, Outcome::Posted) | (Body::Abort { .. }, Outcome::Voided) => {
                Next::to(
                    BuyerState::Finished(self),
                    vec![Step::Send(Body::Acknowledged { outcome })],
                )
            }
            (Body::Commit { .. }, Outcome::Voided) | (Body::Abort { .. }, Outcome::Posted) => {
                Next::refuse(BuyerState::Finished(self), PeerError::ConflictingOutcome)
            }
            _ => Next::stay(BuyerState::Finished(self)),
        }
    }
}
