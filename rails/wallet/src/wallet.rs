//! The wallet: keys, the state rebuilt from its log, and every transfer in flight. It is sans-I/O:
//! each call returns ordered [`Action`]s for the caller to perform (append to the log, send a
//! datagram, show an event).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;
use offpay_money::Amount;

use crate::credential::{Credential, VerifiedCredentials};
use crate::error::{Error, Malformed, Misuse, PeerError, StorageError};
use crate::ids::{Millis, TransferId, WalletId};
use crate::keys::{Entropy, WalletKeys, random_array};
use crate::protocol::{
    BUYER_PRESENT_TIMEOUT_MS, BuyerAwaitingCommitRequest, BuyerState, Decision, Event, Next, Role,
    SellerAwaitingBuyers, SellerState, Step, View, retransmit_delay_ms,
};
use crate::record::{LoggedRecord, ParsedLog, Record, encode_record, frame, parse_log};
use crate::storage::LogStorage;
use crate::sync::{ChargeVoucher, LogUpload, SyncReply, UPLOAD_RECORDS_MAX};
use crate::terms::{Agreement, Terms};
use crate::wire::{self, AbortReason, Body, Incoming, Outcome};

/// Most transfers (sales and purchases) a wallet keeps in flight at once.
pub const TRANSFERS_ACTIVE_MAX: usize = 64;
/// Most records the wallet writes between two syncs; past the soft limit it refuses new
/// transfers until it syncs, keeping room for the ones in flight to finish.
pub const LOG_UNSYNCED_RECORDS_MAX: usize = 4096;
/// Records kept in reserve below [`LOG_UNSYNCED_RECORDS_MAX`] for transfers already in flight.
const LOG_UNSYNCED_RESERVE: usize = TRANSFERS_ACTIVE_MAX * 4 + 16;
/// Sellers whose look-up sequence numbers a buyer remembers (for replay protection).
pub const LOOKUP_SENDERS_MAX: usize = 256;

const _: () = assert!(LOG_UNSYNCED_RESERVE < LOG_UNSYNCED_RECORDS_MAX);
const _: () = assert!(LOG_UNSYNCED_RECORDS_MAX < UPLOAD_RECORDS_MAX);

/// What the caller must do, in order. Deliberately exhaustive: a new kind of action must break
/// every caller's loop, since an action silently skipped could lose a promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Append this frame to the log storage ([`LogStorage::append`]) and wait until it is
    /// written. Perform no later action until then; if it fails, drop the wallet and reopen it.
    Persist(Vec<u8>),
    /// Send this datagram to that wallet (over UDP: to the address it was last heard from).
    Send {
        /// The recipient.
        to: WalletId,
        /// The sealed datagram.
        datagram: Vec<u8>,
    },
    /// Broadcast this datagram one hop (the seller's look-up).
    Broadcast(Vec<u8>),
    /// Show this to the user or the application.
    Notify(Event),
}

/// A datagram that was accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// The authenticated sender (for the UDP loop's address book).
    pub sender: WalletId,
    /// What to do now.
    pub actions: Vec<Action>,
}

/// What opening a wallet found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records read.
    pub records: u64,
    /// Bytes of a torn last append that were cut off.
    pub torn_bytes: u64,
    /// Transfers resumed: sales and purchases that were in flight.
    pub resumed: Vec<TransferId>,
}

/// A transfer as the wallet's log knows it.
#[derive(Clone, Debug)]
pub(crate) enum Logged {
    Seller {
        terms: Terms,
        buyer: Credential,
        phase: SellerPhase,
    },
    Buyer {
        terms: Terms,
        seller: Credential,
        agreement: Agreement,
        phase: BuyerPhase,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SellerPhase {
    Pending,
    Committed {
        agreement: Agreement,
        signature: [u8; 64],
    },
    Voided,
    Complete {
        outcome: Outcome,
        agreement: Option<Agreement>,
        signature: Option<[u8; 64]>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuyerPhase {
    Prepared,
    Finished(Outcome),
}

/// The wallet's durable state: what replaying its log gives.
#[derive(Clone, Debug)]
pub(crate) struct Book {
    pub(crate) credential: Credential,
    pub(crate) office_public: [u8; 32],
    pub(crate) boot: u32,
    pub(crate) must_sync_before_paying: bool,
    pub(crate) head_seq: u64,
    pub(crate) head_hash: [u8; 32],
    /// Available value (posted value less held amounts), minor units.
    pub(crate) balance_minor: u64,
    /// Held by prepared purchases.
    pub(crate) held_minor: u64,
    /// Paid out (held or posted) since the last sync.
    pub(crate) spent_since_sync_minor: u64,
    pub(crate) charge_seq: u64,
    /// Payments prepared over the wallet's life (the last agreement's `buyer_spend_seq`).
    pub(crate) spend_seq: u64,
    pub(crate) synced_seq: Option<u64>,
    pub(crate) unsynced: Vec<LoggedRecord>,
    pub(crate) transfers: BTreeMap<TransferId, Logged>,
}

/// A record that contradicts the state before it.
#[derive(Debug)]
pub(crate) struct Inconsistent;

impl Book {
    fn from_genesis(genesis: &LoggedRecord) -> Result<Book, Inconsistent> {
        let Record::Genesis {
            credential,
            office_public,
        } = &genesis.record
        else {
            return Err(Inconsistent);
        };
        Ok(Book {
            credential: credential.clone(),
            office_public: *office_public,
            boot: 0,
            must_sync_before_paying: false,
            head_seq: genesis.seq,
            head_hash: genesis.hash,
            balance_minor: 0,
            held_minor: 0,
            spent_since_sync_minor: 0,
            charge_seq: 0,
            spend_seq: 0,
            synced_seq: None,
            unsynced: vec![genesis.clone()],
            transfers: BTreeMap::new(),
        })
    }

    /// What this wallet, as seller, has taken from `buyer` since its own last sync (the sales
    /// its book still holds): the total committed under the buyer's present credential (same
    /// issue time), and whether an agreement with payment number `spend_seq` is among them.
    pub(crate) fn accepted_from(&self, buyer: &Credential, spend_seq: u64) -> (u64, bool) {
        let mut total = 0u64;
        let mut seen = false;
        for logged in self.transfers.values() {
            let Logged::Seller {
                terms,
                buyer: credential,
                phase,
            } = logged
            else {
                continue;
            };
            if credential.wallet_id != buyer.wallet_id {
                continue;
            }
            let agreement = match phase {
                SellerPhase::Committed { agreement, .. }
                | SellerPhase::Complete {
                    outcome: Outcome::Posted,
                    agreement: Some(agreement),
                    ..
                } => agreement,
                _ => continue,
            };
            seen |= agreement.buyer_spend_seq == spend_seq;
            if credential.issued_at_ms == buyer.issued_at_ms {
                total = total.saturating_add(terms.amount.minor());
            }
        }
        (total, seen)
    }

    fn amount_of(&self, transfer_id: &TransferId) -> Option<u64> {
        self.transfers.get(transfer_id).map(|logged| match logged {
            Logged::Seller { terms, .. } | Logged::Buyer { terms, .. } => terms.amount.minor(),
        })
    }

    /// Applies one record (the redo half); used both when a record is written and when the log
    /// is replayed, so both give the same state. Every undo/redo image is checked.
    pub(crate) fn apply(&mut self, logged: &LoggedRecord) -> Result<(), Inconsistent> {
        if logged.seq != self.head_seq + 1 || logged.prev_hash != self.head_hash {
            return Err(Inconsistent);
        }
        let check = |ok: bool| if ok { Ok(()) } else { Err(Inconsistent) };
        match &logged.record {
            Record::Genesis { .. } => return Err(Inconsistent),
            Record::Opened { boot, restored } => {
                check(*boot > self.boot)?;
                self.boot = *boot;
                self.must_sync_before_paying |= *restored;
            }
            Record::Charged { voucher } => {
                check(voucher.wallet_id == self.credential.wallet_id)?;
                check(voucher.charge_seq == self.charge_seq + 1)?;
                check(voucher.amount.currency() == self.credential.currency)?;
                self.balance_minor = self
                    .balance_minor
                    .checked_add(voucher.amount.minor())
                    .ok_or(Inconsistent)?;
                self.charge_seq = voucher.charge_seq;
            }
            Record::SellerPending { terms, buyer } => {
                check(!self.transfers.contains_key(&terms.transfer_id))?;
                check(terms.seller == self.credential.wallet_id && terms.buyer == buyer.wallet_id)?;
                self.transfers.insert(
                    terms.transfer_id,
                    Logged::Seller {
                        terms: *terms,
                        buyer: buyer.clone(),
                        phase: SellerPhase::Pending,
                    },
                );
            }
            Record::SellerCommitted {
                transfer_id,
                agreement,
                commit_signature,
                balance_before_minor,
                balance_after_minor,
            } => {
                let amount = self.amount_of(transfer_id).ok_or(Inconsistent)?;
                check(*balance_before_minor == self.balance_minor)?;
                check(balance_before_minor.checked_add(amount) == Some(*balance_after_minor))?;
                match self.transfers.get_mut(transfer_id) {
                    Some(Logged::Seller { phase, .. }) if *phase == SellerPhase::Pending => {
                        *phase = SellerPhase::Committed {
                            agreement: *agreement,
                            signature: *commit_signature,
                        };
                    }
                    _ => return Err(Inconsistent),
                }
                self.balance_minor = *balance_after_minor;
            }
            Record::SellerVoided { transfer_id } => match self.transfers.get_mut(transfer_id) {
                Some(Logged::Seller { phase, .. }) if *phase == SellerPhase::Pending => {
                    *phase = SellerPhase::Voided;
                }
                _ => return Err(Inconsistent),
            },
            Record::SellerComplete { transfer_id } => self.complete_sale(transfer_id)?,
            Record::BuyerPrepared {
                terms,
                seller,
                agreement,
                balance_before_minor,
                balance_after_minor,
            } => {
                check(!self.transfers.contains_key(&terms.transfer_id))?;
                check(
                    terms.buyer == self.credential.wallet_id && terms.seller == seller.wallet_id,
                )?;
                check(agreement.buyer_spend_seq == self.spend_seq + 1)?;
                check(agreement.buyer_balance_after_minor == *balance_after_minor)?;
                check(*balance_before_minor == self.balance_minor)?;
                check(
                    balance_before_minor.checked_sub(terms.amount.minor())
                        == Some(*balance_after_minor),
                )?;
                self.balance_minor = *balance_after_minor;
                self.held_minor += terms.amount.minor();
                self.spent_since_sync_minor += terms.amount.minor();
                self.spend_seq += 1;
                self.transfers.insert(
                    terms.transfer_id,
                    Logged::Buyer {
                        terms: *terms,
                        seller: seller.clone(),
                        agreement: *agreement,
                        phase: BuyerPhase::Prepared,
                    },
                );
            }
            Record::BuyerPosted { transfer_id, .. } => {
                self.finish_purchase(transfer_id, Outcome::Posted)?;
            }
            Record::BuyerVoided { transfer_id } => {
                self.finish_purchase(transfer_id, Outcome::Voided)?;
            }
            Record::Resolved { resolution } => {
                check(resolution.wallet_id == self.credential.wallet_id)?;
                match self.transfers.get(&resolution.transfer_id) {
                    Some(Logged::Buyer { .. }) => {
                        self.finish_purchase(&resolution.transfer_id, resolution.outcome)?;
                    }
                    Some(Logged::Seller { .. }) => self.complete_sale(&resolution.transfer_id)?,
                    None => return Err(Inconsistent),
                }
            }
            Record::Synced {
                through_seq,
                through_hash,
            } => {
                check(*through_seq <= self.head_seq)?;
                let known = self
                    .unsynced
                    .iter()
                    .find(|r| r.seq == *through_seq)
                    .map(|r| r.hash);
                check(known == Some(*through_hash))?;
                self.synced_seq = Some(*through_seq);
                self.unsynced.retain(|r| r.seq > *through_seq);
                self.spent_since_sync_minor = self.held_minor;
                self.must_sync_before_paying = false;
                self.transfers.retain(|_, logged| match logged {
                    Logged::Seller { phase, .. } => !matches!(phase, SellerPhase::Complete { .. }),
                    Logged::Buyer { phase, .. } => *phase == BuyerPhase::Prepared,
                });
            }
            Record::CredentialRenewed { credential } => {
                check(credential.wallet_id == self.credential.wallet_id)?;
                check(credential.signing_key == self.credential.signing_key)?;
                check(credential.encryption_key == self.credential.encryption_key)?;
                check(credential.currency == self.credential.currency)?;
                self.credential = credential.clone();
            }
        }
        self.head_seq = logged.seq;
        self.head_hash = logged.hash;
        self.unsynced.push(logged.clone());
        Ok(())
    }

    fn complete_sale(&mut self, transfer_id: &TransferId) -> Result<(), Inconsistent> {
        match self.transfers.get_mut(transfer_id) {
            Some(Logged::Seller { phase, .. }) => {
                *phase = match *phase {
                    SellerPhase::Committed {
                        agreement,
                        signature,
                    } => SellerPhase::Complete {
                        outcome: Outcome::Posted,
                        agreement: Some(agreement),
                        signature: Some(signature),
                    },
                    SellerPhase::Voided => SellerPhase::Complete {
                        outcome: Outcome::Voided,
                        agreement: None,
                        signature: None,
                    },
                    _ => return Err(Inconsistent),
                };
                Ok(())
            }
            _ => Err(Inconsistent),
        }
    }

    fn finish_purchase(
        &mut self,
        transfer_id: &TransferId,
        outcome: Outcome,
    ) -> Result<(), Inconsistent> {
        let Some(Logged::Buyer { terms, phase, .. }) = self.transfers.get_mut(transfer_id) else {
            return Err(Inconsistent);
        };
        if *phase != BuyerPhase::Prepared {
            return Err(Inconsistent);
        }
        *phase = BuyerPhase::Finished(outcome);
        let amount = terms.amount.minor();
        self.held_minor = self.held_minor.checked_sub(amount).ok_or(Inconsistent)?;
        if outcome == Outcome::Voided {
            self.balance_minor += amount;
            self.spent_since_sync_minor = self.spent_since_sync_minor.saturating_sub(amount);
        }
        Ok(())
    }

    /// Encodes `record` as the next in the chain and applies it.
    fn append(&mut self, record: Record) -> Vec<u8> {
        let logged = encode_record(self.head_seq + 1, &self.head_hash, &record);
        if self.apply(&logged).is_err() {
            // The state machines only write records that follow from the state; anything else
            // is a bug that must not reach the disk.
            panic!("wallet tried to log a record inconsistent with its state: {record:?}");
        }
        frame(&logged)
    }
}

/// A device wallet.
pub struct Wallet {
    keys: WalletKeys,
    book: Book,
    credential_bytes: Vec<u8>,
    message_counter: u32,
    buyer_mode: bool,
    sales: BTreeMap<TransferId, SellerState>,
    purchases: BTreeMap<TransferId, BuyerState>,
    lookup_windows: BTreeMap<WalletId, u64>,
    blocked: BTreeSet<WalletId>,
    verified: VerifiedCredentials,
    defect: Option<Defect>,
}

/// A deliberate protocol fault, so that the checks in `tests/model.rs` can show they catch it.
/// Never set outside those tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// A prepared buyer whose status queries go unanswered voids the transfer on its own.
    BuyerVoidsOnItsOwn,
    /// A seller sends its commit before forcing the record of it.
    SellerCommitsBeforeForcing,
}

impl core::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Wallet")
            .field("id", &self.book.credential.wallet_id)
            .field("balance_minor", &self.book.balance_minor)
            .field("held_minor", &self.book.held_minor)
            .field("sales", &self.sales.len())
            .field("purchases", &self.purchases.len())
            .finish_non_exhaustive()
    }
}

/// A transfer as shown to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferStatus {
    /// The transfer.
    pub transfer_id: TransferId,
    /// This wallet's side.
    pub role: Role,
    /// State name (pending, prepared, posted, voided…).
    pub state: &'static str,
    /// The price, once known.
    pub amount: Option<Amount>,
    /// The other wallet, once known.
    pub counterparty: Option<WalletId>,
}

impl Wallet {
    /// Creates a wallet from its keys and the credential the money office issued for them.
    /// Returns the records to write (genesis, then the first opening) before anything else.
    pub fn create(
        keys: WalletKeys,
        credential: Credential,
        office_public: [u8; 32],
        now: Millis,
    ) -> Result<(Wallet, Vec<Action>), Error> {
        credential.verify_at(&office_public, now)?;
        if credential.signing_key != keys.signing_public()
            || credential.encryption_key != keys.encryption_public()
        {
            return Err(PeerError::Inconsistent.into());
        }
        let genesis = encode_record(
            0,
            &[0u8; 32],
            &Record::Genesis {
                credential: credential.clone(),
                office_public,
            },
        );
        let book = Book::from_genesis(&genesis).map_err(|_| PeerError::Inconsistent)?;
        let mut wallet = Wallet::with_book(keys, book);
        let mut actions = vec![Action::Persist(frame(&genesis))];
        actions.push(Action::Persist(wallet.book.append(Record::Opened {
            boot: 1,
            restored: false,
        })));
        Ok((wallet, actions))
    }

    fn with_book(keys: WalletKeys, book: Book) -> Wallet {
        Wallet {
            credential_bytes: book.credential.encode(),
            keys,
            book,
            message_counter: 0,
            buyer_mode: false,
            sales: BTreeMap::new(),
            purchases: BTreeMap::new(),
            lookup_windows: BTreeMap::new(),
            blocked: BTreeSet::new(),
            verified: VerifiedCredentials::default(),
            defect: None,
        }
    }

    /// Reopens a wallet from the bytes of its log: checks the chain, rebuilds the balances and
    /// resumes every transfer in flight (their retransmissions are due at once: call
    /// [`Wallet::handle_timeout`]). `restored` marks a wallet opened from a backup, which may not
    /// pay before it syncs. The first action records this run; write it before sending anything.
    pub fn open(
        keys: WalletKeys,
        log: &[u8],
        now: Millis,
        restored: bool,
    ) -> Result<(Wallet, Vec<Action>, RecoveryReport), Error> {
        let parsed: ParsedLog = parse_log(log)?;
        let mut records = parsed.records.iter();
        let genesis = records.next().ok_or(StorageError::Empty)?;
        let corrupt =
            |record: &LoggedRecord| Error::Storage(StorageError::Corrupt { offset: record.seq });
        let mut book = Book::from_genesis(genesis).map_err(|_| corrupt(genesis))?;
        if book.credential.signing_key != keys.signing_public() {
            return Err(PeerError::Inconsistent.into());
        }
        for record in records {
            book.apply(record).map_err(|_| corrupt(record))?;
        }
        let mut wallet = Wallet::with_book(keys, book);
        let boot = wallet
            .book
            .boot
            .checked_add(1)
            .ok_or(Misuse::SequenceExhausted)?;
        let actions = vec![Action::Persist(
            wallet.book.append(Record::Opened { boot, restored }),
        )];
        let resumed = wallet.resume(now);
        let report = RecoveryReport {
            records: parsed.records.len() as u64,
            torn_bytes: parsed.torn_bytes,
            resumed,
        };
        Ok((wallet, actions, report))
    }

    /// Loads the log from `storage`, cuts off a torn tail, and opens the wallet (see
    /// [`Wallet::open`]); the returned actions still have to be performed.
    pub fn recover(
        keys: WalletKeys,
        storage: &mut dyn LogStorage,
        now: Millis,
    ) -> Result<(Wallet, Vec<Action>, RecoveryReport), Error> {
        let bytes = storage.load()?;
        let parsed = parse_log(&bytes)?;
        if parsed.torn_bytes > 0 {
            storage.truncate(parsed.valid_bytes)?;
        }
        let (wallet, actions, mut report) =
            Wallet::open(keys, &bytes[..parsed.valid_bytes as usize], now, false)?;
        report.torn_bytes = parsed.torn_bytes;
        Ok((wallet, actions, report))
    }

    /// Rebuilds the protocol states of transfers the log shows in flight.
    fn resume(&mut self, now: Millis) -> Vec<TransferId> {
        let mut resumed = Vec::new();
        for (transfer_id, logged) in &self.book.transfers {
            match logged {
                Logged::Seller {
                    terms,
                    buyer,
                    phase,
                } => {
                    let state = match phase {
                        SellerPhase::Pending => SellerState::AwaitingAgreement(
                            crate::protocol::SellerAwaitingAgreement {
                                terms: *terms,
                                buyer: buyer.clone(),
                                attempts: 0,
                                next_at: Some(now),
                                peer_seq: 0,
                            },
                        ),
                        SellerPhase::Committed { signature, .. } => {
                            SellerState::AwaitingAcknowledgement(
                                crate::protocol::SellerAwaitingAcknowledgement {
                                    terms: *terms,
                                    buyer: buyer.clone(),
                                    decision: Decision::Commit {
                                        signature: *signature,
                                    },
                                    attempts: 0,
                                    next_at: Some(now),
                                    peer_seq: 0,
                                },
                            )
                        }
                        SellerPhase::Voided => SellerState::AwaitingAcknowledgement(
                            crate::protocol::SellerAwaitingAcknowledgement {
                                terms: *terms,
                                buyer: buyer.clone(),
                                decision: Decision::Void,
                                attempts: 0,
                                next_at: Some(now),
                                peer_seq: 0,
                            },
                        ),
                        SellerPhase::Complete {
                            outcome, signature, ..
                        } => SellerState::Complete(crate::protocol::SellerComplete {
                            terms: *terms,
                            buyer: buyer.clone(),
                            decision: match (outcome, signature) {
                                (Outcome::Posted, Some(signature)) => Decision::Commit {
                                    signature: *signature,
                                },
                                _ => Decision::Void,
                            },
                            peer_seq: 0,
                        }),
                    };
                    if !state.is_finished() {
                        resumed.push(*transfer_id);
                    }
                    self.sales.insert(*transfer_id, state);
                }
                Logged::Buyer {
                    terms,
                    seller,
                    agreement,
                    phase,
                } => {
                    let state = match phase {
                        BuyerPhase::Prepared => {
                            resumed.push(*transfer_id);
                            BuyerState::Prepared(crate::protocol::BuyerPrepared {
                                terms: *terms,
                                seller: seller.clone(),
                                agreement: *agreement,
                                attempts: 0,
                                next_at: Some(now),
                                peer_seq: 0,
                            })
                        }
                        BuyerPhase::Finished(outcome) => {
                            BuyerState::Finished(crate::protocol::BuyerFinished {
                                terms: *terms,
                                seller: seller.clone(),
                                outcome: *outcome,
                                peer_seq: 0,
                            })
                        }
                    };
                    self.purchases.insert(*transfer_id, state);
                }
            }
        }
        resumed
    }

    // ------------------------------------------------------------ queries

    /// The wallet's id.
    pub fn id(&self) -> WalletId {
        self.book.credential.wallet_id
    }

    /// The wallet's current credential.
    pub fn credential(&self) -> &Credential {
        &self.book.credential
    }

    /// Value available to pay with.
    pub fn balance(&self) -> Amount {
        self.amount(self.book.balance_minor)
    }

    /// Value held by prepared purchases (neither posted nor voided yet).
    pub fn held(&self) -> Amount {
        self.amount(self.book.held_minor)
    }

    /// Paid out (held or posted) since the last sync; bounded by the credential's
    /// `offline_spend_max`.
    pub fn spent_since_sync(&self) -> Amount {
        self.amount(self.book.spent_since_sync_minor)
    }

    fn amount(&self, minor: u64) -> Amount {
        // Balances are sums of amounts the wallet accepted under its balance limit.
        Amount::from_minor(minor, self.book.credential.currency)
            .unwrap_or_else(|_| panic!("balance above Amount::MAX_MINOR"))
    }

    /// Seq of the last log record.
    pub fn log_head(&self) -> u64 {
        self.book.head_seq
    }

    /// Whether the wallet answers look-ups.
    pub fn buyer_mode(&self) -> bool {
        self.buyer_mode
    }

    /// Every transfer the wallet knows, in flight or finished since the last sync.
    pub fn transfers(&self) -> Vec<TransferStatus> {
        let mut out = Vec::new();
        for (id, state) in &self.sales {
            let (amount, counterparty) = match state {
                SellerState::AwaitingBuyers(s) => (Some(s.amount), None),
                SellerState::AwaitingAgreement(s) => (Some(s.terms.amount), Some(s.terms.buyer)),
                SellerState::AwaitingAcknowledgement(s) => {
                    (Some(s.terms.amount), Some(s.terms.buyer))
                }
                SellerState::Complete(s) => (Some(s.terms.amount), Some(s.terms.buyer)),
            };
            out.push(TransferStatus {
                transfer_id: *id,
                role: Role::Seller,
                state: state.name(),
                amount,
                counterparty,
            });
        }
        for (id, state) in &self.purchases {
            let amount = match state {
                BuyerState::AwaitingApproval(s) => Some(s.terms.amount),
                BuyerState::Prepared(s) => Some(s.terms.amount),
                BuyerState::Finished(s) => Some(s.terms.amount),
                _ => None,
            };
            out.push(TransferStatus {
                transfer_id: *id,
                role: Role::Buyer,
                state: state.name(),
                amount,
                counterparty: state.seller().map(|c| c.wallet_id),
            });
        }
        out
    }

    /// The outcome this wallet recorded for a transfer, if it is posted or voided here. A transfer
    /// finished before the last sync is forgotten here (the log keeps it: see
    /// [`crate::record::parse_log`]).
    pub fn outcome(&self, transfer_id: &TransferId) -> Option<Outcome> {
        match self.book.transfers.get(transfer_id)? {
            Logged::Seller { phase, .. } => match phase {
                SellerPhase::Pending => None,
                SellerPhase::Committed { .. } => Some(Outcome::Posted),
                SellerPhase::Voided => Some(Outcome::Voided),
                SellerPhase::Complete { outcome, .. } => Some(*outcome),
            },
            Logged::Buyer { phase, .. } => match phase {
                BuyerPhase::Prepared => None,
                BuyerPhase::Finished(outcome) => Some(*outcome),
            },
        }
    }

    /// Buyers that answered a sale's look-up, in order of arrival.
    pub fn candidates(&self, transfer_id: &TransferId) -> Vec<WalletId> {
        match self.sales.get(transfer_id) {
            Some(SellerState::AwaitingBuyers(s)) => s
                .candidates
                .iter()
                .map(|c| c.credential.wallet_id)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// When [`Wallet::handle_timeout`] should next be called, if any timer is set.
    pub fn next_timeout(&self) -> Option<Millis> {
        self.sales
            .values()
            .filter_map(SellerState::next_at)
            .chain(self.purchases.values().filter_map(BuyerState::next_at))
            .min()
    }

    // ------------------------------------------------------------ plumbing

    fn next_seq(&mut self) -> Result<u64, Error> {
        self.message_counter = self
            .message_counter
            .checked_add(1)
            .ok_or(Misuse::SequenceExhausted)?;
        Ok((u64::from(self.book.boot) << 32) | u64::from(self.message_counter))
    }

    /// Turns steps into actions: records are encoded, chained and applied; messages sealed.
    fn perform(
        &mut self,
        transfer_id: TransferId,
        counterparty: Option<&Credential>,
        mut steps: Vec<Step>,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Action>, Error> {
        if self.defect == Some(Defect::SellerCommitsBeforeForcing) {
            // The broken seller sends its commit before the record that backs it is forced.
            let persist = steps
                .iter()
                .position(|s| matches!(s, Step::Persist(Record::SellerCommitted { .. })));
            let send = steps
                .iter()
                .position(|s| matches!(s, Step::Send(Body::Commit { .. })));
            if let (Some(persist), Some(send)) = (persist, send)
                && persist < send
            {
                let commit = steps.remove(send);
                steps.insert(persist, commit);
            }
        }
        let mut actions = Vec::with_capacity(steps.len());
        for step in steps {
            match step {
                Step::Persist(record) => actions.push(Action::Persist(self.book.append(record))),
                Step::Send(body) => {
                    let recipient = counterparty.ok_or(Misuse::UnknownTransfer)?;
                    let seq = self.next_seq()?;
                    let datagram = wire::seal(
                        &self.keys,
                        &self.credential_bytes,
                        recipient,
                        transfer_id,
                        seq,
                        &body,
                        entropy,
                    );
                    actions.push(Action::Send {
                        to: recipient.wallet_id,
                        datagram,
                    });
                }
                Step::BroadcastLookup => {
                    let seq = self.next_seq()?;
                    actions.push(Action::Broadcast(wire::encode_lookup(
                        &self.keys,
                        &self.credential_bytes,
                        transfer_id,
                        seq,
                    )));
                }
                Step::Notify(event) => actions.push(Action::Notify(event)),
            }
        }
        Ok(actions)
    }

    fn active_transfers(&self) -> usize {
        self.sales.values().filter(|s| !s.is_finished()).count()
            + self.purchases.values().filter(|s| !s.is_finished()).count()
    }

    fn check_room(&self) -> Result<(), Error> {
        if self.active_transfers() >= TRANSFERS_ACTIVE_MAX {
            return Err(Misuse::TooManyTransfers.into());
        }
        if self.book.unsynced.len() >= LOG_UNSYNCED_RECORDS_MAX - LOG_UNSYNCED_RESERVE {
            return Err(Misuse::SyncRequired.into());
        }
        Ok(())
    }

    // ------------------------------------------------------------ seller API

    /// Starts a sale: broadcasts a look-up for wallets in buyer mode. Returns the transfer id.
    pub fn start_sale(
        &mut self,
        amount: Amount,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<(TransferId, Vec<Action>), Error> {
        let credential = &self.book.credential;
        if amount.currency() != credential.currency {
            return Err(Misuse::CurrencyMismatch.into());
        }
        if amount.is_zero() {
            return Err(Misuse::ZeroAmount.into());
        }
        if now > credential.expires_at_ms {
            return Err(Misuse::CredentialExpired.into());
        }
        let room = credential
            .limits
            .balance_max
            .minor()
            .saturating_sub(self.book.balance_minor + self.book.held_minor);
        if amount.minor() > room {
            return Err(Misuse::LimitExceeded.into());
        }
        self.check_room()?;
        let transfer_id = TransferId(random_array(entropy));
        let state = SellerAwaitingBuyers {
            transfer_id,
            amount,
            candidates: Vec::new(),
            lookups_sent: 1,
            next_at: Some(now + retransmit_delay_ms(1)),
        };
        self.sales
            .insert(transfer_id, SellerState::AwaitingBuyers(state));
        let actions = self.perform(transfer_id, None, vec![Step::BroadcastLookup], entropy)?;
        Ok((transfer_id, actions))
    }

    /// The seller's user picked a buyer by its id: the pending record is forced, then the
    /// commit-request with the price goes out.
    pub fn choose_buyer(
        &mut self,
        transfer_id: TransferId,
        buyer: WalletId,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Action>, Error> {
        let Some(SellerState::AwaitingBuyers(sale)) = self.sales.get(&transfer_id) else {
            return Err(Misuse::UnknownTransfer.into());
        };
        let candidate = sale
            .candidates
            .iter()
            .find(|c| c.credential.wallet_id == buyer)
            .cloned()
            .ok_or(Misuse::UnknownCandidate)?;
        if sale.amount.minor() > candidate.credential.limits.payment_max.minor() {
            return Err(Misuse::LimitExceeded.into());
        }
        if self.book.unsynced.len() >= LOG_UNSYNCED_RECORDS_MAX - LOG_UNSYNCED_RESERVE {
            return Err(Misuse::SyncRequired.into());
        }
        let Some(SellerState::AwaitingBuyers(sale)) = self.sales.remove(&transfer_id) else {
            return Err(Misuse::UnknownTransfer.into());
        };
        let (state, steps) = sale.choose(self.id(), candidate.clone(), now);
        self.sales.insert(transfer_id, state);
        self.perform(transfer_id, Some(&candidate.credential), steps, entropy)
    }

    /// Abandons a sale before a buyer was chosen (nothing was logged).
    pub fn cancel_sale(&mut self, transfer_id: TransferId) -> Result<(), Error> {
        match self.sales.get(&transfer_id) {
            Some(SellerState::AwaitingBuyers(_)) => {
                self.sales.remove(&transfer_id);
                Ok(())
            }
            _ => Err(Misuse::UnknownTransfer.into()),
        }
    }

    // ------------------------------------------------------------ buyer API

    /// Buyer mode on or off: only a wallet in buyer mode answers look-ups.
    pub fn set_buyer_mode(&mut self, on: bool) {
        self.buyer_mode = on;
    }

    /// The buyer's user accepts the price: the prepared record (value held) is forced, then the
    /// agreement goes out. If the wallet can no longer pay, it votes no instead and says why.
    pub fn approve(
        &mut self,
        transfer_id: TransferId,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Action>, Error> {
        let Some(BuyerState::AwaitingApproval(pending)) = self.purchases.get(&transfer_id) else {
            return Err(Misuse::UnknownTransfer.into());
        };
        if self.book.unsynced.len() >= LOG_UNSYNCED_RECORDS_MAX - LOG_UNSYNCED_RESERVE {
            return Err(Misuse::SyncRequired.into());
        }
        let pending = pending.clone();
        let seller = pending.seller.clone();
        let view = View {
            keys: &self.keys,
            book: &self.book,
            now,
        };
        match pending.approve(&view) {
            Ok((state, steps)) => {
                self.purchases.insert(transfer_id, state);
                self.perform(transfer_id, Some(&seller), steps, entropy)
            }
            Err(reason) => {
                self.purchases.remove(&transfer_id);
                let mut actions = self.perform(
                    transfer_id,
                    Some(&seller),
                    vec![Step::Send(Body::Abort { reason })],
                    entropy,
                )?;
                actions.push(Action::Notify(Event::PaymentRefused {
                    transfer_id,
                    reason,
                }));
                Ok(actions)
            }
        }
    }

    /// The buyer's user declines the price: the wallet votes no (nothing was promised).
    pub fn decline(
        &mut self,
        transfer_id: TransferId,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Action>, Error> {
        let Some(BuyerState::AwaitingApproval(pending)) = self.purchases.remove(&transfer_id)
        else {
            return Err(Misuse::UnknownTransfer.into());
        };
        let seller = pending.seller.clone();
        let next = pending.decline();
        self.perform(transfer_id, Some(&seller), next.steps, entropy)
    }

    // ------------------------------------------------------------ the loop

    /// Handles a received datagram. A datagram that fails any check (malformed, tampered,
    /// replayed, misdirected, from an unknown or blocked wallet, for an unknown transfer, or not
    /// expected now) is refused with the reason and changes nothing.
    pub fn handle_datagram(
        &mut self,
        datagram: &[u8],
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<Received, Error> {
        let incoming = wire::open(
            &self.keys,
            self.id(),
            &self.book.office_public,
            &mut self.verified,
            now,
            datagram,
        )?;
        let (sender, transfer_id, seq) = match &incoming {
            Incoming::Lookup {
                sender,
                transfer_id,
                seq,
            }
            | Incoming::Sealed {
                sender,
                transfer_id,
                seq,
                ..
            } => (sender.clone(), *transfer_id, *seq),
        };
        if sender.wallet_id == self.id() {
            return Err(PeerError::NotAParty.into());
        }
        if self.blocked.contains(&sender.wallet_id) {
            return Err(PeerError::WalletBlocked.into());
        }
        if sender.currency != self.book.credential.currency {
            return Err(PeerError::CurrencyMismatch.into());
        }
        let actions = match incoming {
            Incoming::Lookup { .. } => self.on_lookup(&sender, transfer_id, seq, now, entropy)?,
            Incoming::Sealed { body, .. } => {
                self.on_sealed(&sender, transfer_id, seq, &body, now, entropy)?
            }
        };
        Ok(Received {
            sender: sender.wallet_id,
            actions,
        })
    }

    fn on_lookup(
        &mut self,
        seller: &Credential,
        transfer_id: TransferId,
        seq: u64,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Action>, Error> {
        if !self.buyer_mode {
            return Err(PeerError::UnexpectedMessage.into());
        }
        if self
            .lookup_windows
            .get(&seller.wallet_id)
            .is_some_and(|last| seq <= *last)
        {
            return Err(PeerError::Replay.into());
        }
        let answer = match self.purchases.get(&transfer_id) {
            Some(BuyerState::AwaitingCommitRequest(s))
                if s.seller.wallet_id == seller.wallet_id =>
            {
                true
            }
            Some(_) => false,
            None => {
                self.check_room()?;
                true
            }
        };
        if self.lookup_windows.len() >= LOOKUP_SENDERS_MAX
            && !self.lookup_windows.contains_key(&seller.wallet_id)
        {
            self.lookup_windows.pop_first();
        }
        self.lookup_windows.insert(seller.wallet_id, seq);
        if !answer {
            return Ok(Vec::new());
        }
        self.purchases.insert(
            transfer_id,
            BuyerState::AwaitingCommitRequest(BuyerAwaitingCommitRequest {
                transfer_id,
                seller: seller.clone(),
                expires_at: now + BUYER_PRESENT_TIMEOUT_MS,
                peer_seq: seq,
            }),
        );
        self.perform(
            transfer_id,
            Some(seller),
            vec![Step::Send(Body::Present)],
            entropy,
        )
    }

    fn on_sealed(
        &mut self,
        sender: &Credential,
        transfer_id: TransferId,
        seq: u64,
        body: &Body,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Action>, Error> {
        if let Some(state) = self.sales.get(&transfer_id) {
            if let Some(buyer) = state.buyer()
                && (buyer.wallet_id != sender.wallet_id || buyer.signing_key != sender.signing_key)
            {
                return Err(PeerError::NotAParty.into());
            }
            let mut state = state.clone();
            if let Some(peer_seq) = state.peer_seq_mut()
                && seq <= *peer_seq
            {
                return Err(PeerError::Replay.into());
            }
            let view = View {
                keys: &self.keys,
                book: &self.book,
                now,
            };
            let Next {
                mut state,
                steps,
                refused,
            } = state.on_message(&view, sender, body);
            if let Some(error) = refused {
                return Err(error.into());
            }
            if let Some(peer_seq) = state.peer_seq_mut() {
                *peer_seq = seq;
            }
            if let SellerState::AwaitingBuyers(s) = &mut state
                && let Some(c) = s
                    .candidates
                    .iter_mut()
                    .find(|c| c.credential.wallet_id == sender.wallet_id)
            {
                c.seq = c.seq.max(seq);
            }
            let counterparty = state.buyer().cloned();
            self.sales.insert(transfer_id, state);
            return self.perform(transfer_id, counterparty.as_ref(), steps, entropy);
        }
        if let Some(state) = self.purchases.get(&transfer_id) {
            let Some(seller) = state.seller() else {
                return Err(PeerError::UnknownTransfer.into());
            };
            if seller.wallet_id != sender.wallet_id || seller.signing_key != sender.signing_key {
                return Err(PeerError::NotAParty.into());
            }
            let mut state = state.clone();
            if let Some(peer_seq) = state.peer_seq_mut()
                && seq <= *peer_seq
            {
                return Err(PeerError::Replay.into());
            }
            let view = View {
                keys: &self.keys,
                book: &self.book,
                now,
            };
            let Next {
                mut state,
                steps,
                refused,
            } = state.on_message(&view, body);
            if let Some(error) = refused {
                return Err(error.into());
            }
            if let Some(peer_seq) = state.peer_seq_mut() {
                *peer_seq = seq;
            }
            if matches!(state, BuyerState::Forgotten) {
                self.purchases.remove(&transfer_id);
            } else {
                self.purchases.insert(transfer_id, state);
            }
            return self.perform(transfer_id, Some(sender), steps, entropy);
        }
        // The seed's rule: a commit-request for a transfer the buyer does not know (never heard
        // of, or forgotten in a crash before it prepared) is answered with abort. Nothing else
        // about an unknown transfer gets an answer.
        if let Body::CommitRequest { .. } = body {
            return self.perform(
                transfer_id,
                Some(sender),
                vec![Step::Send(Body::Abort {
                    reason: AbortReason::UnknownTransfer,
                })],
                entropy,
            );
        }
        Err(PeerError::UnknownTransfer.into())
    }

    /// Fires every timer due at `now`: retransmissions, the seller's decision to void after its
    /// retries, expiry of unanswered look-ups and approvals.
    pub fn handle_timeout(
        &mut self,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        let due: Vec<TransferId> = self
            .sales
            .iter()
            .filter(|(_, s)| s.next_at().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for transfer_id in due {
            let Some(state) = self.sales.remove(&transfer_id) else {
                continue;
            };
            let next = state.on_timer(now);
            let counterparty = next.state.buyer().cloned();
            self.sales.insert(transfer_id, next.state);
            actions.extend(self.perform(
                transfer_id,
                counterparty.as_ref(),
                next.steps,
                entropy,
            )?);
        }
        let due: Vec<TransferId> = self
            .purchases
            .iter()
            .filter(|(_, s)| s.next_at().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for transfer_id in due {
            let Some(state) = self.purchases.remove(&transfer_id) else {
                continue;
            };
            let seller = state.seller().cloned();
            let mut next = state.on_timer(now);
            if self.defect == Some(Defect::BuyerVoidsOnItsOwn)
                && let BuyerState::Prepared(prepared) = &next.state
                && next
                    .steps
                    .iter()
                    .any(|s| matches!(s, Step::Notify(Event::AwaitingResolution { .. })))
            {
                // The broken buyer gives up on its own instead of waiting to be told.
                next.state = BuyerState::Finished(prepared.clone().finish(Outcome::Voided));
                next.steps = vec![
                    Step::Persist(Record::BuyerVoided { transfer_id }),
                    Step::Notify(Event::Voided {
                        transfer_id,
                        role: Role::Buyer,
                    }),
                ];
            }
            if !matches!(next.state, BuyerState::Forgotten) {
                self.purchases.insert(transfer_id, next.state);
            }
            actions.extend(self.perform(transfer_id, seller.as_ref(), next.steps, entropy)?);
        }
        Ok(actions)
    }

    // ------------------------------------------------------------ money office

    /// Loads value from a voucher the money office issued. Vouchers apply strictly in order;
    /// one already applied is ignored (no actions).
    ///
    /// The balance maximum is the office's to enforce on a charge (it checks its view before it
    /// issues and posts the voucher): a wallet that received value offline since its sync may be
    /// over it once the voucher is applied. Refusing the voucher then would strand value the
    /// ledger has already moved to the wallet's account, and every later voucher with it
    /// (they apply in order), so the wallet takes it; the maximum goes on limiting what it may
    /// receive offline (its sales), which it checks against the balance it holds.
    pub fn apply_charge(&mut self, voucher: &ChargeVoucher) -> Result<Vec<Action>, Error> {
        voucher.verify(&self.book.office_public)?;
        if voucher.wallet_id != self.id() {
            return Err(PeerError::Misdirected.into());
        }
        if voucher.charge_seq <= self.book.charge_seq {
            return Ok(Vec::new());
        }
        if voucher.charge_seq != self.book.charge_seq + 1 {
            return Err(PeerError::VoucherOutOfOrder.into());
        }
        if voucher.amount.currency() != self.book.credential.currency {
            return Err(PeerError::CurrencyMismatch.into());
        }
        let total = self
            .book
            .balance_minor
            .saturating_add(self.book.held_minor)
            .saturating_add(voucher.amount.minor());
        if total > self.book.credential.limits.balance_max.minor()
            && crate::reverts::reverted(crate::reverts::CHARGE_OVER_MAXIMUM_APPLIED)
        {
            return Err(PeerError::LimitExceeded.into());
        }
        Ok(vec![
            Action::Persist(self.book.append(Record::Charged { voucher: *voucher })),
            Action::Notify(Event::Charged {
                amount: voucher.amount,
            }),
        ])
    }

    /// Prepares a sync: every sale still waiting for the buyer's agreement is decided void
    /// (records forced, aborts sent), so that the upload holds a decision for every transfer
    /// the seller started; then the log since the last acknowledged sync is signed at its head.
    /// Perform the actions before sending the upload.
    pub fn begin_sync(
        &mut self,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<(Vec<Action>, LogUpload), Error> {
        let mut actions = Vec::new();
        let undecided: Vec<TransferId> = self
            .sales
            .iter()
            .filter(|(_, s)| {
                matches!(
                    s,
                    SellerState::AwaitingAgreement(_) | SellerState::AwaitingBuyers(_)
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for transfer_id in undecided {
            match self.sales.remove(&transfer_id) {
                Some(SellerState::AwaitingAgreement(sale)) => {
                    let next = sale.void(now, false);
                    let counterparty = next.state.buyer().cloned();
                    self.sales.insert(transfer_id, next.state);
                    actions.extend(self.perform(
                        transfer_id,
                        counterparty.as_ref(),
                        next.steps,
                        entropy,
                    )?);
                }
                Some(SellerState::AwaitingBuyers(_)) | None => {}
                Some(other) => {
                    self.sales.insert(transfer_id, other);
                }
            }
        }
        let records: Vec<&LoggedRecord> =
            self.book.unsynced.iter().take(UPLOAD_RECORDS_MAX).collect();
        let (head_seq, head_hash) = match records.last() {
            Some(last) => (last.seq, last.hash),
            None => (self.book.head_seq, self.book.head_hash),
        };
        let upload = LogUpload::sign(
            &self.keys,
            self.book.credential.clone(),
            head_seq,
            head_hash,
            records.iter().map(|r| r.bytes.clone()).collect(),
        );
        Ok((actions, upload))
    }

    /// Makes this wallet break the protocol on purpose (see [`Defect`]); for the model checks'
    /// negative variants only.
    #[doc(hidden)]
    pub fn inject_defect(&mut self, defect: Option<Defect>) {
        self.defect = defect;
    }

    /// The wallets the money office listed as blocked at the last sync: this wallet refuses
    /// them as buyers and sellers. A caller that reopens the wallet for every command keeps this
    /// list beside the log and hands it back with [`Wallet::remember_blocked`].
    pub fn blocked_wallets(&self) -> Vec<WalletId> {
        self.blocked.iter().copied().collect()
    }

    /// Restores the blocked list kept from the last sync (at most
    /// [`crate::sync::REPLY_BLOCKED_MAX`] ids; more are refused). A later sync replaces it.
    pub fn remember_blocked(&mut self, blocked: &[WalletId]) -> Result<(), Error> {
        if blocked.len() > crate::sync::REPLY_BLOCKED_MAX {
            return Err(Malformed::TooLong.into());
        }
        self.blocked = blocked.iter().copied().collect();
        Ok(())
    }

    /// Whether the money office listed this wallet itself as blocked at the last sync: its
    /// credential will not be renewed, and peers refuse it.
    pub fn blocked_by_office(&self) -> bool {
        self.blocked.contains(&self.id())
    }

    /// Applies the money office's reply: missing charges, resolutions of transfers left
    /// unfinished, a renewed credential, the blocked list, and the acknowledgement of the log.
    pub fn finish_sync(&mut self, reply: &SyncReply) -> Result<Vec<Action>, Error> {
        reply.verify(&self.book.office_public)?;
        if reply.wallet_id != self.id() {
            return Err(PeerError::Misdirected.into());
        }
        let acknowledged_known = self
            .book
            .unsynced
            .iter()
            .any(|r| r.seq == reply.through_seq && r.hash == reply.through_hash);
        if !acknowledged_known {
            if self.book.synced_seq.is_some_and(|s| s >= reply.through_seq) {
                // An old reply delivered again: already applied.
                return Ok(Vec::new());
            }
            return Err(PeerError::Inconsistent.into());
        }
        if let Some(credential) = &reply.credential {
            credential.verify(&self.book.office_public)?;
        }
        // Check everything before writing anything, so a refused reply changes nothing.
        for resolution in &reply.resolutions {
            resolution.verify(&self.book.office_public)?;
            if resolution.wallet_id != self.id() {
                return Err(PeerError::Misdirected.into());
            }
            if let Some(SellerState::AwaitingAcknowledgement(sale)) =
                self.sales.get(&resolution.transfer_id)
                && sale.outcome() != resolution.outcome
            {
                return Err(PeerError::ConflictingOutcome.into());
            }
        }
        let mut actions = Vec::new();
        for voucher in &reply.vouchers {
            if voucher.charge_seq == self.book.charge_seq + 1 {
                // A voucher this wallet cannot take (its balance limit) waits for a later sync.
                match self.apply_charge(voucher) {
                    Ok(charged) => actions.extend(charged),
                    Err(_) => break,
                }
            }
        }
        for resolution in &reply.resolutions {
            let transfer_id = resolution.transfer_id;
            match (
                self.purchases.get(&transfer_id),
                self.sales.get(&transfer_id),
            ) {
                (Some(BuyerState::Prepared(prepared)), _) => {
                    let prepared = prepared.clone();
                    actions.push(Action::Persist(self.book.append(Record::Resolved {
                        resolution: *resolution,
                    })));
                    actions.push(Action::Notify(match resolution.outcome {
                        Outcome::Posted => Event::Posted {
                            transfer_id,
                            role: Role::Buyer,
                            amount: prepared.terms.amount,
                        },
                        Outcome::Voided => Event::Voided {
                            transfer_id,
                            role: Role::Buyer,
                        },
                    }));
                    self.purchases.insert(
                        transfer_id,
                        BuyerState::Finished(prepared.finish(resolution.outcome)),
                    );
                }
                (_, Some(SellerState::AwaitingAcknowledgement(sale))) => {
                    let sale = sale.clone();
                    actions.push(Action::Persist(self.book.append(Record::Resolved {
                        resolution: *resolution,
                    })));
                    self.sales
                        .insert(transfer_id, SellerState::Complete(sale.complete()));
                }
                _ => {}
            }
        }
        if let Some(credential) = &reply.credential
            && *credential != self.book.credential
        {
            actions.push(Action::Persist(self.book.append(
                Record::CredentialRenewed {
                    credential: credential.clone(),
                },
            )));
            self.credential_bytes = credential.encode();
        }
        actions.push(Action::Persist(self.book.append(Record::Synced {
            through_seq: reply.through_seq,
            through_hash: reply.through_hash,
        })));
        self.blocked = reply.blocked.iter().copied().collect();
        let book = &self.book;
        self.sales
            .retain(|id, s| !s.is_finished() || book.transfers.contains_key(id));
        self.purchases
            .retain(|id, s| !s.is_finished() || book.transfers.contains_key(id));
        Ok(actions)
    }
}

/// Performs actions against a storage and a sender, in order, stopping at the first storage
/// failure (after which the wallet must be dropped and reopened). Events are handed to
/// `notify`. A convenience for simple loops; a caller may equally walk the actions itself.
pub fn apply_actions(
    actions: Vec<Action>,
    storage: &mut dyn LogStorage,
    send: &mut dyn FnMut(Option<WalletId>, Vec<u8>),
    notify: &mut dyn FnMut(Event),
) -> Result<(), StorageError> {
    for action in actions {
        match action {
            Action::Persist(frame) => storage.append(&frame)?,
            Action::Send { to, datagram } => send(Some(to), datagram),
            Action::Broadcast(datagram) => send(None, datagram),
            Action::Notify(event) => notify(event),
        }
    }
    Ok(())
}
