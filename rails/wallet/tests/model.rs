//! A model of the transfer protocol, explored exhaustively with the `stateright` model checker:
//! atomicity and money conservation under message loss, duplication, reordering and crashes of
//! either side (with recovery from the durable log), for bounded runs.
//!
//! The model mirrors `offpay_wallet::protocol`: the seller is the coordinator; records marked
//! "log" survive a crash, everything else is volatile. The network is a set of messages: a
//! delivered message stays in the set (so it can be delivered again — duplication and
//! reordering), and a separate action drops it (loss). The money office is modelled by its two
//! sync steps: a syncing seller voids what it has not decided, and a prepared buyer takes the
//! seller's logged decision.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

use stateright::{Checker, Model, Property};

const AMOUNT: i64 = 5;
const BASE: i64 = 10;
/// Retransmissions per timer-driven sender (kept small so the space stays small).
const ATTEMPTS_MAX: u8 = 2;
/// Crashes per run, over both devices.
const CRASHES_MAX: u8 = 2;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Posted,
    Voided,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Msg {
    CommitRequest,
    Agreed,
    /// Buyer → seller: vote no (declined, or the transfer is unknown to it).
    VoteNo,
    Commit,
    Abort,
    Acknowledged(Outcome),
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Seller {
    Down,
    AwaitingAgreement,
    AwaitingAcknowledgement(Outcome),
    Complete(Outcome),
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Buyer {
    Down,
    /// Answered the look-up (session in memory), no commit-request yet.
    AwaitingCommitRequest,
    AwaitingApproval,
    Prepared,
    Finished(Outcome),
    /// Never heard of the transfer, or forgot it (crash or decline before preparing).
    Unknown,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    seller: Seller,
    seller_attempts: u8,
    /// Log: the decision record (the pending record exists from the start).
    seller_decision: Option<Outcome>,
    seller_complete: bool,
    buyer: Buyer,
    buyer_attempts: u8,
    /// Log: the prepared record, then its outcome.
    buyer_prepared: bool,
    buyer_outcome: Option<Outcome>,
    network: std::collections::BTreeSet<Msg>,
    crashes: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    SellerTimer,
    BuyerTimer,
    Approve,
    Decline,
    Deliver(Msg),
    Drop(Msg),
    CrashSeller,
    CrashBuyer,
    RestartSeller,
    RestartBuyer,
    SellerSyncs,
    BuyerSyncs,
}

struct Transfer;

fn to_seller(msg: Msg) -> bool {
    matches!(msg, Msg::Agreed | Msg::VoteNo | Msg::Acknowledged(_))
}

impl State {
    /// Value in the system, counting a held amount only until the seller has it.
    fn value(&self) -> i64 {
        let seller = BASE
            + if self.seller_decision == Some(Outcome::Posted) {
                AMOUNT
            } else {
                0
            };
        let (available, held) = match (self.buyer_prepared, self.buyer_outcome) {
            (false, _) | (true, Some(Outcome::Voided)) => (BASE, 0),
            (true, Some(Outcome::Posted)) => (BASE - AMOUNT, 0),
            (true, None) => (BASE - AMOUNT, AMOUNT),
        };
        let in_transit = if self.seller_decision == Some(Outcome::Posted) {
            0
        } else {
            held
        };
        seller + available + in_transit
    }

    fn decide(&mut self, outcome: Outcome) {
        assert!(
            self.seller_decision.is_none(),
            "a logged decision never changes"
        );
        self.seller_decision = Some(outcome);
        self.seller = Seller::AwaitingAcknowledgement(outcome);
        self.seller_attempts = 1;
        self.network.insert(decision_message(outcome));
    }

    fn finish_buyer(&mut self, outcome: Outcome) {
        assert!(self.buyer_prepared && self.buyer_outcome.is_none());
        self.buyer_outcome = Some(outcome);
        self.buyer = Buyer::Finished(outcome);
    }
}

fn decision_message(outcome: Outcome) -> Msg {
    match outcome {
        Outcome::Posted => Msg::Commit,
        Outcome::Voided => Msg::Abort,
    }
}

impl Model for Transfer {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        // The seller chose the buyer: pending record logged, first commit-request out.
        vec![State {
            seller: Seller::AwaitingAgreement,
            seller_attempts: 1,
            seller_decision: None,
            seller_complete: false,
            buyer: Buyer::AwaitingCommitRequest,
            buyer_attempts: 0,
            buyer_prepared: false,
            buyer_outcome: None,
            network: [Msg::CommitRequest].into_iter().collect(),
            crashes: 0,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        match state.seller {
            Seller::AwaitingAgreement | Seller::AwaitingAcknowledgement(_) => {
                actions.push(Action::SellerTimer);
            }
            _ => {}
        }
        if state.buyer == Buyer::Prepared && state.buyer_attempts < ATTEMPTS_MAX {
            actions.push(Action::BuyerTimer);
        }
        if state.buyer == Buyer::AwaitingApproval {
            actions.push(Action::Approve);
            actions.push(Action::Decline);
        }
        for msg in &state.network {
            actions.push(Action::Deliver(*msg));
            actions.push(Action::Drop(*msg));
        }
        if state.crashes < CRASHES_MAX {
            if state.seller != Seller::Down {
                actions.push(Action::CrashSeller);
            }
            if state.buyer != Buyer::Down {
                actions.push(Action::CrashBuyer);
            }
        }
        if state.seller == Seller::Down {
            actions.push(Action::RestartSeller);
        } else {
            actions.push(Action::SellerSyncs);
        }
        if state.buyer == Buyer::Down {
            actions.push(Action::RestartBuyer);
        } else {
            actions.push(Action::BuyerSyncs);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::SellerTimer => match s.seller {
                Seller::AwaitingAgreement if s.seller_attempts < ATTEMPTS_MAX => {
                    s.seller_attempts += 1;
                    s.network.insert(Msg::CommitRequest);
                }
                // Retries exhausted: the coordinator decides void (it may: it never agreed).
                Seller::AwaitingAgreement => s.decide(Outcome::Voided),
                Seller::AwaitingAcknowledgement(outcome) if s.seller_attempts < ATTEMPTS_MAX => {
                    s.seller_attempts += 1;
                    s.network.insert(decision_message(outcome));
                }
                _ => return None,
            },
            Action::BuyerTimer => {
                s.buyer_attempts += 1;
                s.network.insert(Msg::Agreed);
            }
            Action::Approve => {
                s.buyer_prepared = true;
                s.buyer = Buyer::Prepared;
                s.buyer_attempts = 1;
                s.network.insert(Msg::Agreed);
            }
            Action::Decline => {
                s.buyer = Buyer::Unknown;
                s.network.insert(Msg::VoteNo);
            }
            Action::Drop(msg) => {
                s.network.remove(&msg);
            }
            Action::Deliver(msg) if to_seller(msg) => match (s.seller, msg) {
                (Seller::Down, _) => return None,
                (Seller::AwaitingAgreement, Msg::Agreed) => s.decide(Outcome::Posted),
                (Seller::AwaitingAgreement, Msg::VoteNo) => {
                    s.seller_decision = Some(Outcome::Voided);
                    s.seller_complete = true;
                    s.seller = Seller::Complete(Outcome::Voided);
                }
                (
                    Seller::AwaitingAcknowledgement(outcome) | Seller::Complete(outcome),
                    Msg::Agreed,
                ) => {
                    s.network.insert(decision_message(outcome));
                }
                (Seller::AwaitingAcknowledgement(outcome), Msg::Acknowledged(acked))
                    if acked == outcome =>
                {
                    s.seller_complete = true;
                    s.seller = Seller::Complete(outcome);
                }
                (Seller::AwaitingAcknowledgement(Outcome::Voided), Msg::VoteNo) => {
                    s.seller_complete = true;
                    s.seller = Seller::Complete(Outcome::Voided);
                }
                _ => return None,
            },
            Action::Deliver(msg) => match (s.buyer, msg) {
                (Buyer::Down, _) => return None,
                (Buyer::AwaitingCommitRequest, Msg::CommitRequest) => {
                    s.buyer = Buyer::AwaitingApproval
                }
                (Buyer::Unknown, Msg::CommitRequest) => {
                    s.network.insert(Msg::VoteNo);
                }
                (Buyer::Prepared, Msg::CommitRequest) => {
                    s.network.insert(Msg::Agreed);
                }
                (Buyer::Prepared, Msg::Commit) => {
                    s.finish_buyer(Outcome::Posted);
                    s.network.insert(Msg::Acknowledged(Outcome::Posted));
                }
                (Buyer::Prepared, Msg::Abort) => {
                    s.finish_buyer(Outcome::Voided);
                    s.network.insert(Msg::Acknowledged(Outcome::Voided));
                }
                (Buyer::AwaitingCommitRequest | Buyer::AwaitingApproval, Msg::Abort) => {
                    s.buyer = Buyer::Unknown;
                }
                (Buyer::Finished(Outcome::Posted), Msg::Commit) => {
                    s.network.insert(Msg::Acknowledged(Outcome::Posted));
                }
                (Buyer::Finished(Outcome::Voided), Msg::Abort) => {
                    s.network.insert(Msg::Acknowledged(Outcome::Voided));
                }
                _ => return None,
            },
            Action::CrashSeller => {
                s.seller = Seller::Down;
                s.crashes += 1;
            }
            Action::CrashBuyer => {
                s.buyer = Buyer::Down;
                s.crashes += 1;
            }
            Action::RestartSeller => {
                s.seller_attempts = 0;
                s.seller = match (s.seller_decision, s.seller_complete) {
                    (None, _) => Seller::AwaitingAgreement,
                    (Some(outcome), false) => Seller::AwaitingAcknowledgement(outcome),
                    (Some(outcome), true) => Seller::Complete(outcome),
                };
            }
            Action::RestartBuyer => {
                s.buyer_attempts = 0;
                s.buyer = match (s.buyer_prepared, s.buyer_outcome) {
                    (true, None) => Buyer::Prepared,
                    (true, Some(outcome)) => Buyer::Finished(outcome),
                    (false, _) => Buyer::Unknown,
                };
            }
            Action::SellerSyncs => {
                // Sync first decides void for anything still undecided.
                match s.seller {
                    Seller::AwaitingAgreement => s.decide(Outcome::Voided),
                    Seller::AwaitingAcknowledgement(outcome) => {
                        s.seller_complete = true;
                        s.seller = Seller::Complete(outcome);
                    }
                    _ => return None,
                }
            }
            Action::BuyerSyncs => {
                // The office resolves a prepared buyer from the seller's log, and only then.
                match (s.buyer, s.buyer_outcome, s.seller_decision) {
                    (Buyer::Prepared, None, Some(decision)) => s.finish_buyer(decision),
                    _ => return None,
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "atomic: never posted on one side and voided on the other",
                |_, s: &State| {
                    !matches!(
                        (s.seller_decision, s.buyer_outcome),
                        (Some(Outcome::Posted), Some(Outcome::Voided))
                            | (Some(Outcome::Voided), Some(Outcome::Posted))
                    )
                },
            ),
            Property::always("money is conserved", |_, s: &State| s.value() == 2 * BASE),
            Property::always(
                "a prepared buyer only ends as the seller decided",
                |_, s: &State| s.buyer_outcome.is_none() || s.buyer_outcome == s.seller_decision,
            ),
            Property::sometimes("both posted", |_, s: &State| {
                s.seller_complete && s.buyer_outcome == Some(Outcome::Posted)
            }),
            Property::sometimes("prepared, then voided on both sides", |_, s: &State| {
                s.buyer_outcome == Some(Outcome::Voided) && s.seller_complete
            }),
            Property::sometimes(
                "a prepared buyer resolved by the money office",
                |_, s: &State| {
                    s.buyer_outcome.is_some()
                        && !s.network.contains(&Msg::Commit)
                        && !s.network.contains(&Msg::Abort)
                },
            ),
        ]
    }
}

#[test]
fn the_protocol_is_atomic_and_conserves_money_under_loss_duplication_and_crashes() {
    let checker = Transfer.checker().threads(2).spawn_bfs().join();
    checker.assert_properties();
    assert!(
        checker.unique_state_count() > 1_000,
        "explored {}",
        checker.unique_state_count()
    );
}
