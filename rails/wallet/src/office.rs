//! The money office's half of the rail, as pure logic: it issues wallet credentials, charges
//! wallets, reconciles uploaded logs into postings, resolves transfers left prepared, flags
//! rolled-back wallets that spent twice, and handles lost phones. It owns no storage: the server
//! keeps [`MoneyOffice::encode_book`] next to the ledger, in the same database transaction as the
//! postings it maps, and maps [`Posting`]s to ledger transfers (their ids make that idempotent).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use offpay_money::Amount;

use crate::codec::{Reader, Writer, sha256};
use crate::credential::{Credential, Limits};
use crate::error::{Error, Malformed, Misuse, PeerError};
use crate::ids::{Millis, PostingId, TransferId, WalletId};
use crate::keys::{Entropy, OfficeKeys};
use crate::record::{LoggedRecord, Record, decode_record};
use crate::sync::{
    ChargeVoucher, LogUpload, REPLY_BLOCKED_MAX, REPLY_RESOLUTIONS_MAX, REPLY_VOUCHERS_MAX,
    Resolution, SyncReply,
};
use crate::terms::{Agreement, Terms, verify_commit};
use crate::wire::Outcome;

/// Format version of the encoded office book.
pub const OFFICE_BOOK_VERSION: u8 = 2;
/// Most wallets one office book holds.
pub const OFFICE_WALLETS_MAX: usize = 10_000_000;
const DOMAIN_POSTING: &[u8] = b"offpay-wallet v1 posting";

/// A side of a posting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PostingAccount {
    /// The ledger account that shadows this wallet.
    Wallet(WalletId),
    /// The account the caller charged the wallet from (the customer's account, an agent's float);
    /// the caller names it when it maps the posting.
    Funding,
}

/// What a posting records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostingKind {
    /// Value loaded into a wallet.
    Charge,
    /// A transfer between two wallets, posted on evidence signed by both.
    Transfer,
    /// A lost wallet's value moved to its owner's new wallet.
    Reissue,
}

/// A movement for the ledger, as plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Posting {
    /// Deterministic: the same event always yields the same id.
    pub id: PostingId,
    /// What it records.
    pub kind: PostingKind,
    /// Debited.
    pub from: PostingAccount,
    /// Credited.
    pub to: PostingAccount,
    /// How much.
    pub amount: Amount,
}

fn posting_id(parts: &[&[u8]]) -> PostingId {
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(DOMAIN_POSTING);
    all.extend_from_slice(parts);
    let digest = sha256(&all);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    PostingId(id)
}

/// The posting id of a transfer, as every party can compute it.
pub fn transfer_posting_id(transfer_id: &TransferId) -> PostingId {
    posting_id(&[b"transfer", &transfer_id.0])
}

/// A buyer's signed agreement with its terms: evidence that the buyer promised to pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgreementEvidence {
    /// The terms.
    pub terms: Terms,
    /// The buyer's signed agreement (verifiable with the buyer's credential).
    pub agreement: Agreement,
}

/// Something the operator must look at, with its evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // Flags are rare and carry their evidence inline.
pub enum Flag {
    /// The wallet signed two different agreements with one payment number: it was rolled back
    /// to an earlier state and spent the same value twice.
    DoubleSpend {
        /// The buyer.
        wallet: WalletId,
        /// The agreement seen first.
        first: AgreementEvidence,
        /// The other agreement with the same payment number.
        second: AgreementEvidence,
    },
    /// The wallet uploaded a log that does not contain the head it uploaded before: it was
    /// rolled back. Both heads are signed by the wallet.
    ForkedLog {
        /// The wallet.
        wallet: WalletId,
        /// The head the office held.
        known_head_seq: u64,
        /// Its hash.
        known_head_hash: [u8; 32],
        /// The head of the new upload.
        uploaded_head_seq: u64,
        /// Its hash.
        uploaded_head_hash: [u8; 32],
    },
    /// The office's view of the wallet's value went below zero.
    Overspent {
        /// The wallet.
        wallet: WalletId,
        /// The office's view, in minor units.
        shadow_minor: i128,
    },
    /// A seller's log voided a transfer that the buyer's log shows posted on the seller's signed
    /// commit, or the other way round.
    ConflictingOutcome {
        /// The transfer.
        transfer_id: TransferId,
    },
    /// A blocked wallet took part in a transfer.
    BlockedWalletTransacted {
        /// The blocked wallet.
        wallet: WalletId,
        /// The transfer.
        transfer_id: TransferId,
    },
}

/// What one reconciliation produced.
#[derive(Clone, Debug)]
pub struct Reconciliation {
    /// The signed reply for the wallet ([`SyncReply::encode`] it).
    pub reply: SyncReply,
    /// Postings to make in the ledger, in order.
    pub postings: Vec<Posting>,
    /// Flags for the fraud queue.
    pub flags: Vec<Flag>,
}

/// How much of a lost wallet's value can be reissued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReissueQuote {
    /// The office's view of the wallet's value now.
    pub shadow: Amount,
    /// Held by prepared transfers the office has not resolved yet.
    pub held: Amount,
    /// What the wallet may still have paid offline unseen: its offline limit less what the
    /// office has seen it pay since its last sync.
    pub unseen_spend_max: Amount,
    /// What can be reissued: shadow less held less unseen.
    pub reissue: Amount,
    /// When the credential expires; reissue is possible from then on.
    pub available_at_ms: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct WalletAccount {
    credential: Credential,
    blocked_at_ms: Option<Millis>,
    head: Option<(u64, [u8; 32])>,
    shadow_minor: i128,
    charges: Vec<ChargeVoucher>,
    applied_charge_seq: u64,
    /// Paid out by this wallet, as seen in other wallets' logs, since its own last upload.
    spent_unsynced_minor: u64,
    reissued: bool,
    remainder_released: bool,
    open: BTreeSet<TransferId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct TransferFile {
    terms: Terms,
    agreement: Option<Agreement>,
    seller_decision: Option<Outcome>,
    seller_complete: bool,
    buyer_prepared: bool,
    buyer_outcome: Option<Outcome>,
    posted: bool,
}

/// Everything the office remembers between syncs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct OfficeBook {
    credential_validity_ms: u64,
    wallets: BTreeMap<WalletId, WalletAccount>,
    transfers: BTreeMap<TransferId, TransferFile>,
    agreements: BTreeMap<(WalletId, u64), TransferId>,
}

/// The money office. Cloning it is cheap enough to compute a change on a copy and keep it only
/// once the ledger has committed it.
#[derive(Clone)]
pub struct MoneyOffice {
    keys: OfficeKeys,
    book: OfficeBook,
}

impl core::fmt::Debug for MoneyOffice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MoneyOffice")
            .field("keys", &self.keys)
            .field("wallets", &self.book.wallets.len())
            .field("transfers", &self.book.transfers.len())
            .finish()
    }
}

/// What the office knows about one wallet, for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletSummary {
    /// The wallet's current credential (the last one issued or renewed).
    pub credential: Credential,
    /// The office's view of the wallet's value, in minor units (negative: it overspent).
    pub shadow_minor: i128,
    /// When the wallet was blocked, if it was.
    pub blocked_at_ms: Option<Millis>,
    /// Seq of the last log record the office reconciled.
    pub head_seq: Option<u64>,
    /// Charges issued (vouchers).
    pub charges: u64,
    /// Charges the wallet's log shows applied.
    pub charges_applied: u64,
    /// Transfers the office still waits on for this wallet.
    pub open_transfers: Vec<TransferId>,
    /// Whether its value was reissued to another wallet.
    pub reissued: bool,
    /// Whether the held-back remainder was released after the reissue.
    pub remainder_released: bool,
}

/// A record checked against the office's keys, ready to apply.
enum Checked {
    Charged(ChargeVoucher),
    SellerPending(Terms),
    SellerCommitted(TransferId, Agreement),
    SellerVoided(TransferId),
    SellerComplete(TransferId),
    BuyerPrepared(Terms, Agreement),
    BuyerFinished(TransferId, Outcome),
    Ignored,
}

impl MoneyOffice {
    /// A new office with no wallets. Credentials it issues or renews are valid for
    /// `credential_validity_ms`.
    pub fn new(keys: OfficeKeys, credential_validity_ms: u64) -> Self {
        MoneyOffice {
            keys,
            book: OfficeBook {
                credential_validity_ms,
                ..OfficeBook::default()
            },
        }
    }

    /// The office's public key, which every wallet holds.
    pub fn public(&self) -> [u8; 32] {
        self.keys.public()
    }

    // ------------------------------------------------------------ issue and charge

    /// Issues a credential for a new wallet and registers it.
    pub fn issue_wallet(
        &mut self,
        signing_key: [u8; 32],
        encryption_key: [u8; 32],
        limits: Limits,
        now: Millis,
        entropy: &mut dyn Entropy,
    ) -> Result<Credential, Error> {
        if self.book.wallets.len() >= OFFICE_WALLETS_MAX {
            return Err(Misuse::TooManyTransfers.into());
        }
        let credential = Credential::issue(
            &self.keys,
            signing_key,
            encryption_key,
            limits,
            now,
            self.book.credential_validity_ms,
            entropy,
        )?;
        self.book.wallets.insert(
            credential.wallet_id,
            WalletAccount {
                credential: credential.clone(),
                blocked_at_ms: None,
                head: None,
                shadow_minor: 0,
                charges: Vec::new(),
                applied_charge_seq: 0,
                spent_unsynced_minor: 0,
                reissued: false,
                remainder_released: false,
                open: BTreeSet::new(),
            },
        );
        Ok(credential)
    }

    /// Charges a wallet: the caller has moved `amount` out of the funding account in the same
    /// database transaction as the returned posting. The voucher goes to the wallet now, and
    /// again in every sync reply until the wallet's log shows it applied.
    pub fn charge(
        &mut self,
        wallet_id: WalletId,
        amount: Amount,
    ) -> Result<(ChargeVoucher, Posting), Error> {
        let account = self
            .book
            .wallets
            .get_mut(&wallet_id)
            .ok_or(Misuse::UnknownWallet)?;
        if account.blocked_at_ms.is_some() {
            return Err(Misuse::WalletBlocked.into());
        }
        if amount.currency() != account.credential.currency {
            return Err(Misuse::CurrencyMismatch.into());
        }
        if amount.is_zero() {
            return Err(Misuse::ZeroAmount.into());
        }
        let after = account.shadow_minor + i128::from(amount.minor());
        if after > i128::from(account.credential.limits.balance_max.minor()) {
            return Err(Misuse::LimitExceeded.into());
        }
        let charge_seq = account.charges.len() as u64 + 1;
        let voucher = ChargeVoucher::issue(&self.keys, wallet_id, charge_seq, amount);
        account.charges.push(voucher);
        account.shadow_minor = after;
        let posting = Posting {
            id: posting_id(&[b"charge", &wallet_id.0, &charge_seq.to_be_bytes()]),
            kind: PostingKind::Charge,
            from: PostingAccount::Funding,
            to: PostingAccount::Wallet(wallet_id),
            amount,
        };
        Ok((voucher, posting))
    }

    /// The office's view of a wallet's value (charges, plus received, less paid, less reissued),
    /// in minor units; negative for a wallet that overspent.
    pub fn shadow_minor(&self, wallet_id: &WalletId) -> Option<i128> {
        self.book.wallets.get(wallet_id).map(|a| a.shadow_minor)
    }

    /// The sum of all wallets' shadows, in minor units: equals everything charged, whatever the
    /// wallets did between them.
    pub fn shadow_total_minor(&self) -> i128 {
        self.book.wallets.values().map(|a| a.shadow_minor).sum()
    }

    /// The decision the office knows for a transfer (from the seller's log or the seller's
    /// commit in the buyer's log).
    pub fn decision(&self, transfer_id: &TransferId) -> Option<Outcome> {
        self.book
            .transfers
            .get(transfer_id)
            .and_then(|t| t.seller_decision)
    }

    // ------------------------------------------------------------ reconciliation

    /// Reconciles an uploaded log (the bytes of [`LogUpload::encode`]). An upload that fails any
    /// check changes nothing and gets the reason; otherwise the office records what it learnt and
    /// returns the reply for the wallet, the postings for the ledger and any flags.
    pub fn reconcile(&mut self, upload: &[u8], now: Millis) -> Result<Reconciliation, Error> {
        let upload = LogUpload::decode(upload)?;
        upload.credential.verify(&self.keys.public())?;
        let wallet_id = upload.credential.wallet_id;
        let account = self
            .book
            .wallets
            .get(&wallet_id)
            .ok_or(Misuse::UnknownWallet)?;
        if account.credential.signing_key != upload.credential.signing_key {
            return Err(PeerError::Inconsistent.into());
        }
        upload.verify()?;

        // Pass 1: parse and check everything; nothing changes yet.
        let mut records: Vec<LoggedRecord> = Vec::with_capacity(upload.records.len());
        for bytes in &upload.records {
            let record = decode_record(bytes)?;
            if let Some(previous) = records.last()
                && (record.seq != previous.seq + 1 || record.prev_hash != previous.hash)
            {
                return Err(PeerError::ChainMismatch.into());
            }
            records.push(record);
        }
        match records.last() {
            Some(last) if last.seq != upload.head_seq || last.hash != upload.head_hash => {
                return Err(PeerError::Inconsistent.into());
            }
            None if account.head != Some((upload.head_seq, upload.head_hash)) => {
                return Err(PeerError::Inconsistent.into());
            }
            _ => {}
        }
        let mut flags = Vec::new();
        let mut fork = None;
        let new_from = match (account.head, records.first()) {
            (None, Some(first)) => {
                if first.seq != 0 {
                    return Err(PeerError::ChainGap.into());
                }
                0
            }
            (None, None) => return Err(PeerError::ChainGap.into()),
            (Some((head_seq, head_hash)), Some(first)) => {
                if first.seq > head_seq + 1 {
                    return Err(PeerError::ChainGap.into());
                }
                // The upload must contain the office's head unchanged, or continue right after it.
                let continues = match records.iter().find(|r| r.seq == head_seq) {
                    Some(record) => record.hash == head_hash,
                    None => first.seq == head_seq + 1 && first.prev_hash == head_hash,
                };
                if continues {
                    head_seq + 1
                } else {
                    fork = Some(Flag::ForkedLog {
                        wallet: wallet_id,
                        known_head_seq: head_seq,
                        known_head_hash: head_hash,
                        uploaded_head_seq: upload.head_seq,
                        uploaded_head_hash: upload.head_hash,
                    });
                    // Everything in a forked upload is news.
                    first.seq
                }
            }
            (Some(_), None) => upload.head_seq + 1,
        };
        let mut checked = Vec::new();
        for record in records.iter().filter(|r| r.seq >= new_from) {
            let item = self.check_record(&upload.credential, record, &checked)?;
            checked.push(item);
        }

        // Pass 2: apply. Nothing below can fail.
        if let Some(flag) = fork {
            flags.push(flag);
        }
        let mut postings = Vec::new();
        let mut touched = BTreeSet::new();
        touched.insert(wallet_id);
        for item in checked {
            self.apply_checked(wallet_id, item, &mut postings, &mut flags, &mut touched);
        }
        let validity = self.book.credential_validity_ms;
        let account = self.account_mut(&wallet_id);
        account.head = Some((upload.head_seq, upload.head_hash));
        account.spent_unsynced_minor = 0;
        let blocked = account.blocked_at_ms.is_some();
        let current = account.credential.clone();
        let renewed = if !blocked {
            let c = &current;
            Some(Credential::issue_for(
                &self.keys,
                wallet_id,
                c.signing_key,
                c.encryption_key,
                c.limits,
                now,
                validity,
            )?)
        } else {
            None
        };
        let account = self.account_mut(&wallet_id);
        if let Some(credential) = &renewed {
            account.credential = credential.clone();
        }
        for wallet in touched {
            if let Some(a) = self.book.wallets.get(&wallet)
                && a.shadow_minor < 0
            {
                flags.push(Flag::Overspent {
                    wallet,
                    shadow_minor: a.shadow_minor,
                });
            }
        }
        let reply = self.reply(wallet_id, upload.head_seq, upload.head_hash, renewed);
        Ok(Reconciliation {
            reply,
            postings,
            flags,
        })
    }

    fn account_mut(&mut self, wallet_id: &WalletId) -> &mut WalletAccount {
        match self.book.wallets.get_mut(wallet_id) {
            Some(account) => account,
            None => panic!("wallet {wallet_id} checked in pass 1 vanished"),
        }
    }

    fn signing_key_of(&self, wallet_id: &WalletId) -> Result<[u8; 32], Error> {
        self.book
            .wallets
            .get(wallet_id)
            .map(|a| a.credential.signing_key)
            .ok_or(Error::Peer(PeerError::NotAParty))
    }

    /// The terms of a transfer, from the office's files or from earlier in the same upload.
    fn terms_of(&self, transfer_id: &TransferId, upload: &[Checked]) -> Option<Terms> {
        self.book
            .transfers
            .get(transfer_id)
            .map(|t| t.terms)
            .or_else(|| {
                upload.iter().find_map(|c| match c {
                    Checked::SellerPending(terms) | Checked::BuyerPrepared(terms, _)
                        if terms.transfer_id == *transfer_id =>
                    {
                        Some(*terms)
                    }
                    _ => None,
                })
            })
    }

    /// The terms and the buyer's agreement of a transfer, from this upload or the office's files.
    fn agreement_of(&self, transfer_id: &TransferId, earlier: &[Checked]) -> Option<Agreement> {
        earlier
            .iter()
            .find_map(|c| match c {
                Checked::BuyerPrepared(terms, agreement) if terms.transfer_id == *transfer_id => {
                    Some(*agreement)
                }
                _ => None,
            })
            .or_else(|| {
                self.book
                    .transfers
                    .get(transfer_id)
                    .and_then(|t| t.agreement)
            })
    }

    fn check_record(
        &self,
        own: &Credential,
        logged: &LoggedRecord,
        earlier: &[Checked],
    ) -> Result<Checked, Error> {
        let wallet_id = own.wallet_id;
        let office = self.keys.public();
        let inconsistent = || Error::Peer(PeerError::Inconsistent);
        let own_sale = |transfer_id: &TransferId| -> Result<Terms, Error> {
            self.terms_of(transfer_id, earlier)
                .filter(|t| t.seller == wallet_id)
                .ok_or_else(inconsistent)
        };
        let own_purchase = |transfer_id: &TransferId| -> Result<Terms, Error> {
            self.terms_of(transfer_id, earlier)
                .filter(|t| t.buyer == wallet_id)
                .ok_or_else(inconsistent)
        };
        Ok(match &logged.record {
            Record::Genesis { credential, .. } => {
                if credential.wallet_id != wallet_id || credential.signing_key != own.signing_key {
                    return Err(inconsistent());
                }
                Checked::Ignored
            }
            Record::Charged { voucher } => {
                voucher.verify(&office)?;
                let account = self
                    .book
                    .wallets
                    .get(&wallet_id)
                    .ok_or(Misuse::UnknownWallet)?;
                let issued = account
                    .charges
                    .get(voucher.charge_seq.saturating_sub(1) as usize)
                    .is_some_and(|v| v == voucher);
                if voucher.wallet_id != wallet_id || !issued {
                    return Err(inconsistent());
                }
                Checked::Charged(*voucher)
            }
            Record::SellerPending { terms, .. } => {
                if terms.seller != wallet_id {
                    return Err(inconsistent());
                }
                self.signing_key_of(&terms.buyer)?;
                Checked::SellerPending(*terms)
            }
            Record::SellerCommitted {
                transfer_id,
                agreement,
                commit_signature,
                ..
            } => {
                let terms = own_sale(transfer_id)?;
                agreement.verify(&self.signing_key_of(&terms.buyer)?, &terms)?;
                verify_commit(&own.signing_key, &terms, agreement, commit_signature)?;
                Checked::SellerCommitted(*transfer_id, *agreement)
            }
            Record::SellerVoided { transfer_id } => {
                own_sale(transfer_id)?;
                Checked::SellerVoided(*transfer_id)
            }
            Record::SellerComplete { transfer_id } => {
                own_sale(transfer_id)?;
                Checked::SellerComplete(*transfer_id)
            }
            Record::BuyerPrepared {
                terms, agreement, ..
            } => {
                if terms.buyer != wallet_id {
                    return Err(inconsistent());
                }
                agreement.verify(&own.signing_key, terms)?;
                self.signing_key_of(&terms.seller)?;
                Checked::BuyerPrepared(*terms, *agreement)
            }
            Record::BuyerPosted {
                transfer_id,
                commit_signature,
            } => {
                let terms = own_purchase(transfer_id)?;
                let agreement = self
                    .agreement_of(transfer_id, earlier)
                    .ok_or_else(inconsistent)?;
                let seller_key = self.signing_key_of(&terms.seller)?;
                verify_commit(&seller_key, &terms, &agreement, commit_signature)?;
                Checked::BuyerFinished(*transfer_id, Outcome::Posted)
            }
            Record::BuyerVoided { transfer_id } => {
                own_purchase(transfer_id)?;
                Checked::BuyerFinished(*transfer_id, Outcome::Voided)
            }
            Record::Resolved { resolution } => {
                resolution.verify(&office)?;
                if resolution.wallet_id != wallet_id {
                    return Err(inconsistent());
                }
                let terms = self
                    .terms_of(&resolution.transfer_id, earlier)
                    .ok_or_else(inconsistent)?;
                if terms.seller == wallet_id {
                    Checked::SellerComplete(resolution.transfer_id)
                } else if terms.buyer == wallet_id {
                    Checked::BuyerFinished(resolution.transfer_id, resolution.outcome)
                } else {
                    return Err(inconsistent());
                }
            }
            Record::CredentialRenewed { credential } => {
                credential.verify(&office)?;
                Checked::Ignored
            }
            Record::Opened { .. } | Record::Synced { .. } => Checked::Ignored,
        })
    }

    fn file_mut(&mut self, terms: &Terms) -> &mut TransferFile {
        self.book
            .transfers
            .entry(terms.transfer_id)
            .or_insert_with(|| TransferFile {
                terms: *terms,
                agreement: None,
                seller_decision: None,
                seller_complete: false,
                buyer_prepared: false,
                buyer_outcome: None,
                posted: false,
            })
    }

    fn apply_checked(
        &mut self,
        wallet_id: WalletId,
        item: Checked,
        postings: &mut Vec<Posting>,
        flags: &mut Vec<Flag>,
        touched: &mut BTreeSet<WalletId>,
    ) {
        match item {
            Checked::Ignored => {}
            Checked::Charged(voucher) => {
                let account = self.account_mut(&wallet_id);
                account.applied_charge_seq = account.applied_charge_seq.max(voucher.charge_seq);
            }
            Checked::SellerPending(terms) => {
                self.file_mut(&terms);
                self.account_mut(&wallet_id).open.insert(terms.transfer_id);
            }
            Checked::SellerCommitted(transfer_id, agreement) => {
                let Some(terms) = self.book.transfers.get(&transfer_id).map(|t| t.terms) else {
                    return;
                };
                self.note_agreement(&terms, &agreement, flags);
                // A commit logged after the office voided an abandoned transfer is flagged and
                // not posted: the buyer already has its value back.
                if self.decide(&terms, Outcome::Posted, flags) {
                    self.post(&terms, postings, flags, touched);
                }
            }
            Checked::SellerVoided(transfer_id) => {
                let Some(terms) = self.book.transfers.get(&transfer_id).map(|t| t.terms) else {
                    return;
                };
                self.decide(&terms, Outcome::Voided, flags);
            }
            Checked::SellerComplete(transfer_id) => {
                if let Some(file) = self.book.transfers.get_mut(&transfer_id) {
                    file.seller_complete = true;
                }
                self.account_mut(&wallet_id).open.remove(&transfer_id);
            }
            Checked::BuyerPrepared(terms, agreement) => {
                self.note_agreement(&terms, &agreement, flags);
                let file = self.file_mut(&terms);
                file.buyer_prepared = true;
                if file.buyer_outcome.is_none() {
                    self.account_mut(&wallet_id).open.insert(terms.transfer_id);
                }
                if self
                    .book
                    .wallets
                    .get(&terms.buyer)
                    .is_some_and(|a| a.blocked_at_ms.is_some())
                {
                    flags.push(Flag::BlockedWalletTransacted {
                        wallet: terms.buyer,
                        transfer_id: terms.transfer_id,
                    });
                }
            }
            Checked::BuyerFinished(transfer_id, outcome) => {
                let Some(terms) = self.book.transfers.get(&transfer_id).map(|t| t.terms) else {
                    return;
                };
                if let Some(file) = self.book.transfers.get_mut(&transfer_id) {
                    file.buyer_outcome = Some(outcome);
                }
                self.account_mut(&wallet_id).open.remove(&transfer_id);
                if outcome == Outcome::Posted {
                    // The buyer holds the seller's signed commit: that is a commit decision.
                    if self.decide(&terms, Outcome::Posted, flags) {
                        self.post(&terms, postings, flags, touched);
                    }
                } else if self.decision(&transfer_id) == Some(Outcome::Posted) {
                    flags.push(Flag::ConflictingOutcome { transfer_id });
                }
            }
        }
    }

    fn note_agreement(&mut self, terms: &Terms, agreement: &Agreement, flags: &mut Vec<Flag>) {
        let key = (terms.buyer, agreement.buyer_spend_seq);
        match self.book.agreements.get(&key) {
            Some(existing) if *existing != terms.transfer_id => {
                let first = self.book.transfers.get(existing).and_then(|t| {
                    t.agreement.map(|agreement| AgreementEvidence {
                        terms: t.terms,
                        agreement,
                    })
                });
                if let Some(first) = first {
                    flags.push(Flag::DoubleSpend {
                        wallet: terms.buyer,
                        first,
                        second: AgreementEvidence {
                            terms: *terms,
                            agreement: *agreement,
                        },
                    });
                }
            }
            Some(_) => {}
            None => {
                self.book.agreements.insert(key, terms.transfer_id);
            }
        }
        let file = self.file_mut(terms);
        if file.agreement.is_none() {
            file.agreement = Some(*agreement);
        }
    }

    /// Records the decision; false (and a flag) when it contradicts the one known.
    fn decide(&mut self, terms: &Terms, outcome: Outcome, flags: &mut Vec<Flag>) -> bool {
        let file = self.file_mut(terms);
        let consistent = match file.seller_decision {
            None => {
                file.seller_decision = Some(outcome);
                true
            }
            Some(known) if known != outcome => {
                flags.push(Flag::ConflictingOutcome {
                    transfer_id: terms.transfer_id,
                });
                false
            }
            Some(_) => true,
        };
        if file.seller_complete {
            return consistent;
        }
        let seller = terms.seller;
        if let Some(account) = self.book.wallets.get_mut(&seller) {
            account.open.insert(terms.transfer_id);
        }
        consistent
    }

    fn post(
        &mut self,
        terms: &Terms,
        postings: &mut Vec<Posting>,
        flags: &mut Vec<Flag>,
        touched: &mut BTreeSet<WalletId>,
    ) {
        let file = self.file_mut(terms);
        if file.posted {
            return;
        }
        file.posted = true;
        let amount = i128::from(terms.amount.minor());
        for (wallet, delta) in [(terms.buyer, -amount), (terms.seller, amount)] {
            if let Some(account) = self.book.wallets.get_mut(&wallet) {
                account.shadow_minor += delta;
                if delta < 0 {
                    account.spent_unsynced_minor = account
                        .spent_unsynced_minor
                        .saturating_add(terms.amount.minor());
                }
                if account.blocked_at_ms.is_some() && delta < 0 {
                    flags.push(Flag::BlockedWalletTransacted {
                        wallet,
                        transfer_id: terms.transfer_id,
                    });
                }
            }
            touched.insert(wallet);
        }
        postings.push(Posting {
            id: transfer_posting_id(&terms.transfer_id),
            kind: PostingKind::Transfer,
            from: PostingAccount::Wallet(terms.buyer),
            to: PostingAccount::Wallet(terms.seller),
            amount: terms.amount,
        });
    }

    fn reply(
        &self,
        wallet_id: WalletId,
        through_seq: u64,
        through_hash: [u8; 32],
        credential: Option<Credential>,
    ) -> SyncReply {
        let mut resolutions = Vec::new();
        let mut vouchers = Vec::new();
        if let Some(account) = self.book.wallets.get(&wallet_id) {
            for transfer_id in &account.open {
                let Some(file) = self.book.transfers.get(transfer_id) else {
                    continue;
                };
                let Some(decision) = file.seller_decision else {
                    continue;
                };
                let unfinished = if file.terms.buyer == wallet_id {
                    file.buyer_prepared && file.buyer_outcome.is_none()
                } else {
                    !file.seller_complete
                };
                if unfinished && resolutions.len() < REPLY_RESOLUTIONS_MAX {
                    resolutions.push(Resolution::issue(
                        &self.keys,
                        wallet_id,
                        *transfer_id,
                        decision,
                    ));
                }
            }
            vouchers = account
                .charges
                .iter()
                .filter(|v| v.charge_seq > account.applied_charge_seq)
                .take(REPLY_VOUCHERS_MAX)
                .copied()
                .collect();
        }
        let mut blocked: Vec<(Millis, WalletId)> = self
            .book
            .wallets
            .iter()
            .filter_map(|(id, a)| a.blocked_at_ms.map(|at| (at, *id)))
            .collect();
        blocked.sort_unstable_by(|a, b| b.cmp(a));
        blocked.truncate(REPLY_BLOCKED_MAX);
        SyncReply {
            wallet_id,
            through_seq,
            through_hash,
            resolutions,
            vouchers,
            blocked: blocked.into_iter().map(|(_, id)| id).collect(),
            credential,
            signature: [0; 64],
        }
        .sign(&self.keys)
    }

    // ------------------------------------------------------------ lost phones

    /// Blocks a wallet (lost or stolen phone): it gets no renewal, peers learn of the block at
    /// their next sync, and its value can be reissued once its credential expires.
    pub fn block(&mut self, wallet_id: WalletId, now: Millis) -> Result<(), Error> {
        let account = self
            .book
            .wallets
            .get_mut(&wallet_id)
            .ok_or(Misuse::UnknownWallet)?;
        if account.blocked_at_ms.is_none() {
            account.blocked_at_ms = Some(now);
        }
        Ok(())
    }

    /// How much of a blocked wallet's value can be reissued, and from when.
    pub fn reissue_quote(&self, wallet_id: &WalletId) -> Result<ReissueQuote, Error> {
        let account = self
            .book
            .wallets
            .get(wallet_id)
            .ok_or(Misuse::UnknownWallet)?;
        let currency = account.credential.currency;
        let held_minor: u64 = account
            .open
            .iter()
            .filter_map(|id| self.book.transfers.get(id))
            .filter(|f| f.terms.buyer == *wallet_id && f.seller_decision.is_none())
            .map(|f| f.terms.amount.minor())
            .sum();
        let unseen_minor = account
            .credential
            .limits
            .offline_spend_max
            .minor()
            .saturating_sub(account.spent_unsynced_minor.saturating_add(held_minor));
        let shadow_minor = u64::try_from(account.shadow_minor.max(0)).unwrap_or(u64::MAX);
        let reissue_minor = shadow_minor
            .saturating_sub(held_minor)
            .saturating_sub(unseen_minor);
        let amount = |minor: u64| {
            Amount::from_minor(minor.min(Amount::MAX_MINOR), currency)
                .map_err(|_| Error::Malformed(Malformed::InvalidField))
        };
        Ok(ReissueQuote {
            shadow: amount(shadow_minor)?,
            held: amount(held_minor)?,
            unseen_spend_max: amount(unseen_minor)?,
            reissue: amount(reissue_minor)?,
            available_at_ms: account.credential.expires_at_ms,
        })
    }

    /// Moves a blocked, expired wallet's reissuable value to the owner's new wallet: returns the
    /// posting and the voucher that loads the value into the new wallet.
    pub fn reissue(
        &mut self,
        lost: WalletId,
        new_wallet: WalletId,
        now: Millis,
    ) -> Result<(ReissueQuote, Posting, ChargeVoucher), Error> {
        let quote = self.reissue_quote(&lost)?;
        let account = self.book.wallets.get(&lost).ok_or(Misuse::UnknownWallet)?;
        if account.blocked_at_ms.is_none() {
            return Err(Misuse::WalletNotBlocked.into());
        }
        if now <= account.credential.expires_at_ms {
            return Err(Misuse::CredentialNotExpired.into());
        }
        if account.reissued {
            return Err(Misuse::AlreadyReissued.into());
        }
        let target = self
            .book
            .wallets
            .get(&new_wallet)
            .ok_or(Misuse::UnknownWallet)?;
        if target.blocked_at_ms.is_some() {
            return Err(Misuse::WalletBlocked.into());
        }
        if target.credential.currency != account.credential.currency {
            return Err(Misuse::CurrencyMismatch.into());
        }
        let amount = quote.reissue;
        let charge_seq = self.account_mut(&new_wallet).charges.len() as u64 + 1;
        let voucher = ChargeVoucher::issue(&self.keys, new_wallet, charge_seq, amount);
        let target = self.account_mut(&new_wallet);
        target.charges.push(voucher);
        target.shadow_minor += i128::from(amount.minor());
        let lost_account = self.account_mut(&lost);
        lost_account.shadow_minor -= i128::from(amount.minor());
        lost_account.reissued = true;
        let posting = Posting {
            id: posting_id(&[b"reissue", &lost.0, &new_wallet.0]),
            kind: PostingKind::Reissue,
            from: PostingAccount::Wallet(lost),
            to: PostingAccount::Wallet(new_wallet),
            amount,
        };
        Ok((quote, posting, voucher))
    }

    /// What the office knows about a wallet.
    pub fn wallet_summary(&self, wallet_id: &WalletId) -> Option<WalletSummary> {
        let account = self.book.wallets.get(wallet_id)?;
        Some(WalletSummary {
            credential: account.credential.clone(),
            shadow_minor: account.shadow_minor,
            blocked_at_ms: account.blocked_at_ms,
            head_seq: account.head.map(|(seq, _)| seq),
            charges: account.charges.len() as u64,
            charges_applied: account.applied_charge_seq,
            open_transfers: account.open.iter().copied().collect(),
            reissued: account.reissued,
            remainder_released: account.remainder_released,
        })
    }

    /// Number of wallets the office has issued.
    pub fn wallet_count(&self) -> usize {
        self.book.wallets.len()
    }

    /// The operator's way out for a buyer left prepared by a seller that will never sync (its
    /// phone is lost): once the seller is blocked and its credential has expired, the office
    /// decides void. The buyer gets the resolution at its next sync. Should the seller's log
    /// ever arrive with a commit, it is flagged as a conflicting outcome and not posted.
    pub fn resolve_abandoned(&mut self, transfer_id: TransferId, now: Millis) -> Result<(), Error> {
        let file = self
            .book
            .transfers
            .get(&transfer_id)
            .ok_or(Misuse::UnknownTransfer)?;
        if file.seller_decision.is_some() || !file.buyer_prepared {
            return Err(Misuse::UnknownTransfer.into());
        }
        let seller = self
            .book
            .wallets
            .get(&file.terms.seller)
            .ok_or(Misuse::UnknownWallet)?;
        if seller.blocked_at_ms.is_none() {
            return Err(Misuse::WalletNotBlocked.into());
        }
        if now <= seller.credential.expires_at_ms {
            return Err(Misuse::CredentialNotExpired.into());
        }
        let terms = file.terms;
        let mut flags = Vec::new();
        self.decide(&terms, Outcome::Voided, &mut flags);
        if let Some(file) = self.book.transfers.get_mut(&transfer_id) {
            // The seller will never finish it; nothing more is owed to it.
            file.seller_complete = true;
        }
        if let Some(account) = self.book.wallets.get_mut(&terms.seller) {
            account.open.remove(&transfer_id);
        }
        Ok(())
    }

    /// Releases what a reissue held back (the lost wallet's possible unseen payments and its
    /// undecided purchases) to the owner's new wallet, once a full credential lifetime has passed
    /// after the lost credential expired: every peer that took value from the lost wallet has
    /// had that long to sync. A payment that still turns up later posts all the same and drives
    /// the lost wallet's view below zero, which raises [`Flag::Overspent`] for the operator.
    pub fn release_remainder(
        &mut self,
        lost: WalletId,
        new_wallet: WalletId,
        now: Millis,
    ) -> Result<(Amount, Posting, ChargeVoucher), Error> {
        let validity = self.book.credential_validity_ms;
        let account = self.book.wallets.get(&lost).ok_or(Misuse::UnknownWallet)?;
        if !account.reissued {
            return Err(Misuse::WalletNotBlocked.into());
        }
        if account.remainder_released {
            return Err(Misuse::AlreadyReissued.into());
        }
        if now <= account.credential.expires_at_ms.saturating_add(validity) {
            return Err(Misuse::CredentialNotExpired.into());
        }
        let currency = account.credential.currency;
        let held_minor: u64 = account
            .open
            .iter()
            .filter_map(|id| self.book.transfers.get(id))
            .filter(|f| f.terms.buyer == lost && f.seller_decision.is_none())
            .map(|f| f.terms.amount.minor())
            .sum();
        let shadow_minor = u64::try_from(account.shadow_minor.max(0)).unwrap_or(u64::MAX);
        let release_minor = shadow_minor.saturating_sub(held_minor);
        if release_minor == 0 {
            return Err(Misuse::ZeroAmount.into());
        }
        let amount = Amount::from_minor(release_minor.min(Amount::MAX_MINOR), currency)
            .map_err(|_| Error::Malformed(Malformed::InvalidField))?;
        let target = self
            .book
            .wallets
            .get(&new_wallet)
            .ok_or(Misuse::UnknownWallet)?;
        if target.blocked_at_ms.is_some() {
            return Err(Misuse::WalletBlocked.into());
        }
        if target.credential.currency != currency {
            return Err(Misuse::CurrencyMismatch.into());
        }
        let charge_seq = target.charges.len() as u64 + 1;
        let voucher = ChargeVoucher::issue(&self.keys, new_wallet, charge_seq, amount);
        let target = self.account_mut(&new_wallet);
        target.charges.push(voucher);
        target.shadow_minor += i128::from(amount.minor());
        let lost_account = self.account_mut(&lost);
        lost_account.shadow_minor -= i128::from(amount.minor());
        lost_account.remainder_released = true;
        let posting = Posting {
            id: posting_id(&[b"release", &lost.0, &new_wallet.0]),
            kind: PostingKind::Reissue,
            from: PostingAccount::Wallet(lost),
            to: PostingAccount::Wallet(new_wallet),
            amount,
        };
        Ok((amount, posting, voucher))
    }

    // ------------------------------------------------------------ persistence

    /// Encodes everything the office remembers (format version first), for the server to store
    /// in the same database transaction as the postings of a reconciliation.
    pub fn encode_book(&self) -> Vec<u8> {
        let book = &self.book;
        let mut w = Writer::new();
        w.u8(OFFICE_BOOK_VERSION).u64(book.credential_validity_ms);
        w.u32(book.wallets.len() as u32);
        for account in book.wallets.values() {
            w.raw(&account.credential.encode());
            write_option_u64(&mut w, account.blocked_at_ms);
            match account.head {
                Some((seq, hash)) => {
                    w.u8(1).u64(seq).raw(&hash);
                }
                None => {
                    w.u8(0);
                }
            }
            w.raw(&account.shadow_minor.to_be_bytes());
            w.u64(account.applied_charge_seq)
                .u64(account.spent_unsynced_minor)
                .u8(u8::from(account.reissued))
                .u8(u8::from(account.remainder_released));
            w.u32(account.charges.len() as u32);
            for voucher in &account.charges {
                voucher.write(&mut w);
            }
            w.u32(account.open.len() as u32);
            for id in &account.open {
                w.raw(&id.0);
            }
        }
        w.u32(book.transfers.len() as u32);
        for file in book.transfers.values() {
            file.terms.write(&mut w);
            match &file.agreement {
                Some(agreement) => {
                    w.u8(1);
                    agreement.write(&mut w);
                }
                None => {
                    w.u8(0);
                }
            }
            w.u8(file.seller_decision.map_or(0, Outcome::code))
                .u8(u8::from(file.seller_complete))
                .u8(u8::from(file.buyer_prepared))
                .u8(file.buyer_outcome.map_or(0, Outcome::code))
                .u8(u8::from(file.posted));
        }
        w.u32(book.agreements.len() as u32);
        for ((wallet, seq), transfer) in &book.agreements {
            w.raw(&wallet.0).u64(*seq).raw(&transfer.0);
        }
        w.finish()
    }

    /// Restores an office from its keys and [`MoneyOffice::encode_book`].
    pub fn decode_book(keys: OfficeKeys, bytes: &[u8]) -> Result<MoneyOffice, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        // Version 1 lacked `remainder_released` (read as false).
        if version != OFFICE_BOOK_VERSION && version != 1 {
            return Err(Malformed::UnknownVersion(version).into());
        }
        let mut book = OfficeBook {
            credential_validity_ms: r.u64()?,
            ..OfficeBook::default()
        };
        let count = read_count(&mut r)?;
        for _ in 0..count {
            let credential = Credential::read(&mut r)?;
            let blocked_at_ms = read_option_u64(&mut r)?;
            let head = match r.u8()? {
                0 => None,
                1 => Some((r.u64()?, r.array()?)),
                _ => return Err(Malformed::InvalidField.into()),
            };
            let shadow_minor = i128::from_be_bytes(r.array()?);
            let applied_charge_seq = r.u64()?;
            let spent_unsynced_minor = r.u64()?;
            let reissued = read_bool(&mut r)?;
            let remainder_released = if version >= 2 {
                read_bool(&mut r)?
            } else {
                false
            };
            let mut charges = Vec::new();
            for _ in 0..read_count(&mut r)? {
                charges.push(ChargeVoucher::read(&mut r)?);
            }
            let mut open = BTreeSet::new();
            for _ in 0..read_count(&mut r)? {
                open.insert(TransferId(r.array()?));
            }
            book.wallets.insert(
                credential.wallet_id,
                WalletAccount {
                    credential,
                    blocked_at_ms,
                    head,
                    shadow_minor,
                    charges,
                    applied_charge_seq,
                    spent_unsynced_minor,
                    reissued,
                    remainder_released,
                    open,
                },
            );
        }
        for _ in 0..read_count(&mut r)? {
            let terms = Terms::read(&mut r)?;
            let agreement = match r.u8()? {
                0 => None,
                1 => Some(Agreement::read(&mut r)?),
                _ => return Err(Malformed::InvalidField.into()),
            };
            let seller_decision = read_option_outcome(&mut r)?;
            let seller_complete = read_bool(&mut r)?;
            let buyer_prepared = read_bool(&mut r)?;
            let buyer_outcome = read_option_outcome(&mut r)?;
            let posted = read_bool(&mut r)?;
            book.transfers.insert(
                terms.transfer_id,
                TransferFile {
                    terms,
                    agreement,
                    seller_decision,
                    seller_complete,
                    buyer_prepared,
                    buyer_outcome,
                    posted,
                },
            );
        }
        for _ in 0..read_count(&mut r)? {
            let wallet = WalletId(r.array()?);
            let seq = r.u64()?;
            let transfer = TransferId(r.array()?);
            book.agreements.insert((wallet, seq), transfer);
        }
        r.finish()?;
        Ok(MoneyOffice { keys, book })
    }
}

fn write_option_u64(w: &mut Writer, value: Option<u64>) {
    match value {
        Some(v) => {
            w.u8(1).u64(v);
        }
        None => {
            w.u8(0);
        }
    }
}

fn read_option_u64(r: &mut Reader<'_>) -> Result<Option<u64>, Malformed> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u64()?)),
        _ => Err(Malformed::InvalidField),
    }
}

fn read_option_outcome(r: &mut Reader<'_>) -> Result<Option<Outcome>, Malformed> {
    match r.u8()? {
        0 => Ok(None),
        code => Outcome::from_code(code).map(Some),
    }
}

fn read_bool(r: &mut Reader<'_>) -> Result<bool, Malformed> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Malformed::InvalidField),
    }
}

/// A u32 count, bounded by what is left (every item takes at least one byte).
fn read_count(r: &mut Reader<'_>) -> Result<usize, Malformed> {
    let count = r.u32()? as usize;
    if count > r.remaining() || count > OFFICE_WALLETS_MAX.saturating_mul(64) {
        return Err(Malformed::TooLong);
    }
    Ok(count)
}
