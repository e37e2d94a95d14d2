//! The money office's half of the rail, as pure logic: it issues wallet credentials, charges
//! wallets, reconciles uploaded logs into postings, resolves transfers left prepared, flags
//! rolled-back wallets that spent twice, and handles lost phones. It owns no storage.
//!
//! What it remembers is a book of separate records ([`book`]): one per wallet, one per transfer,
//! one per payment number, one per charge voucher. [`MoneyOffice`] runs the rules on the whole
//! book in memory (tests, simulations, a foreign office in a test); the operator half
//! (`crate::operator`, behind the `operator` feature) runs the very same rules on the few records
//! one operation loads, and writes back only those that changed. Postings ([`Posting`]) carry
//! deterministic ids, so the ledger posts each one once.

pub mod book;
pub(crate) mod legacy;
mod reconcile;
#[cfg(feature = "operator")]
mod sync_plan;

use alloc::vec::Vec;
use offpay_money::Amount;

use crate::codec::sha256;
use crate::credential::{Credential, Limits};
use crate::error::{Error, Malformed, Misuse};
use crate::ids::{Millis, PostingId, TransferId, WalletId};
use crate::keys::{Entropy, OfficeKeys, random_array};
use crate::sync::ChargeVoucher;
use crate::terms::{Agreement, Terms};
use crate::wire::Outcome;

use book::{Book, WalletAccount};
pub use book::{BookKey, Case, CaseDecision, CaseReason, SETTLED_ABOVE_MAX, SettledDigest};
#[cfg(feature = "operator")]
pub(crate) use sync_plan::{SyncView, sync_keys};

/// Format version of the whole book encoded in one piece ([`MoneyOffice::encode_book`]).
pub const OFFICE_BOOK_VERSION: u8 = 3;
/// Most wallets one office issues.
pub const OFFICE_WALLETS_MAX: usize = 10_000_000;
const DOMAIN_POSTING: &[u8] = b"offpay-wallet v1 posting";
/// How long after a seller is blocked the office waits before it voids the transfers that
/// seller left a buyer prepared in (rather than waiting for the seller's credential to expire).
pub const ABANDONED_RESOLUTION_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

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
    /// A transfer's outcomes contradict each other: a void the office recorded (from the seller's
    /// log, or its own void of an abandoned transfer) against the seller's signed commit in
    /// either party's log, or the other way round. A buyer's copy of the commit is posted all
    /// the same (its wallet paid).
    ConflictingOutcome {
        /// The transfer.
        transfer_id: TransferId,
    },
    /// The wallet signed an agreement with a payment number it had already used on a transfer
    /// that settled and whose records the office pruned: the double spend of a rolled-back
    /// wallet, shown against the digest the office keeps of its settled payments (the first
    /// agreement's record is gone; the wallet's signature on the second, with the number, is
    /// the evidence).
    PaymentNumberReused {
        /// The buyer.
        wallet: WalletId,
        /// The payment number used again.
        spend_seq: u64,
        /// The second agreement, signed by the buyer.
        second: AgreementEvidence,
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
    /// The signed reply for the wallet ([`crate::SyncReply::encode`] it).
    pub reply: crate::sync::SyncReply,
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

/// The money office: its key and its book. Cloning it is cheap enough to compute a change on a
/// copy and keep it only once the ledger has committed it.
#[derive(Clone)]
pub struct MoneyOffice {
    keys: OfficeKeys,
    book: Book,
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

/// Two offices are the same when they sign with the same key and remember the same book.
impl PartialEq for MoneyOffice {
    fn eq(&self, other: &MoneyOffice) -> bool {
        self.keys.public() == other.keys.public() && self.book == other.book
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
    /// The containment case, if the office blocked the wallet on evidence of a cheat.
    pub case: Option<Case>,
    /// What the office keeps of its settled transfers, whose records it pruned.
    pub settled: SettledDigest,
}

impl MoneyOffice {
    /// A new office with no wallets. Credentials it issues or renews are valid for
    /// `credential_validity_ms`.
    pub fn new(keys: OfficeKeys, credential_validity_ms: u64) -> Self {
        MoneyOffice {
            keys,
            book: Book::whole(credential_validity_ms),
        }
    }

    /// The office on a book the caller assembled (whole, or partial as loaded).
    pub(crate) fn with_book(keys: OfficeKeys, book: Book) -> Self {
        MoneyOffice { keys, book }
    }

    #[cfg(feature = "operator")]
    pub(crate) fn into_book(self) -> Book {
        self.book
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
        if self.book.wallet_count() >= OFFICE_WALLETS_MAX as u64 {
            return Err(Misuse::TooManyTransfers.into());
        }
        let wallet_id = WalletId(random_array(entropy));
        self.issue_wallet_as(wallet_id, signing_key, encryption_key, limits, now)
    }

    /// [`MoneyOffice::issue_wallet`] with the new wallet's id drawn by the caller.
    pub(crate) fn issue_wallet_as(
        &mut self,
        wallet_id: WalletId,
        signing_key: [u8; 32],
        encryption_key: [u8; 32],
        limits: Limits,
        now: Millis,
    ) -> Result<Credential, Error> {
        if self.book.wallet_count() >= OFFICE_WALLETS_MAX as u64 {
            return Err(Misuse::TooManyTransfers.into());
        }
        let credential = Credential::issue_for(
            &self.keys,
            wallet_id,
            signing_key,
            encryption_key,
            limits,
            now,
            self.book.credential_validity_ms(),
        )?;
        self.book
            .insert_wallet(WalletAccount::new(credential.clone()));
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
            .wallet_mut(&wallet_id)
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
        let charge_seq = account.charges_issued + 1;
        let voucher = ChargeVoucher::issue(&self.keys, wallet_id, charge_seq, amount);
        account.charges_issued = charge_seq;
        account.shadow_minor = after;
        self.book.insert_charge(voucher);
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
        self.book.wallet(wallet_id).map(|a| a.shadow_minor)
    }

    /// The sum of all wallets' shadows, in minor units: equals everything charged, whatever the
    /// wallets did between them.
    pub fn shadow_total_minor(&self) -> i128 {
        self.book.wallets().map(|a| a.shadow_minor).sum()
    }

    /// The decision the office knows for a transfer: posted once the ledger posted it (on the
    /// seller's commit, in either party's log), otherwise the decision it recorded (from the
    /// seller's log, the seller's commit in the buyer's log, or its own resolution).
    pub fn decision(&self, transfer_id: &TransferId) -> Option<Outcome> {
        self.book
            .transfer(transfer_id)
            .and_then(|t| match t.posted {
                true => Some(Outcome::Posted),
                false => t.seller_decision,
            })
    }

    fn account_mut(&mut self, wallet_id: &WalletId) -> &mut WalletAccount {
        match self.book.wallet_mut(wallet_id) {
            Some(account) => account,
            None => panic!("wallet {wallet_id} checked before vanished"),
        }
    }

    // ------------------------------------------------------------ lost phones

    /// Blocks a wallet (lost or stolen phone): it gets no renewal, peers learn of the block at
    /// their next sync, and its value can be reissued once its credential expires.
    pub fn block(&mut self, wallet_id: WalletId, now: Millis) -> Result<(), Error> {
        let account = self
            .book
            .wallet_mut(&wallet_id)
            .ok_or(Misuse::UnknownWallet)?;
        if account.blocked_at_ms.is_none() {
            account.blocked_at_ms = Some(now);
            self.book.note_blocked(now, wallet_id);
        }
        Ok(())
    }

    /// Containment: blocks a wallet on the first evidence of a cheat (a double spend, a forked
    /// log, an overspend) and opens a case for the operator. A wallet already blocked keeps its
    /// block and its first case; one whose earlier case was dismissed gets a new case.
    pub(crate) fn contain(
        &mut self,
        wallet_id: WalletId,
        reason: CaseReason,
        transfer_id: Option<TransferId>,
        now: Millis,
    ) {
        let Some(account) = self.book.wallet_mut(&wallet_id) else {
            return;
        };
        if account.blocked_at_ms.is_some() {
            return;
        }
        account.blocked_at_ms = Some(now);
        account.case = Some(Case {
            reason,
            opened_at_ms: now,
            transfer_id,
            decision: None,
        });
        self.book.note_blocked(now, wallet_id);
    }

    /// The operator's decision on a wallet's containment case: confirmed, the block stands for
    /// good; dismissed, the block is lifted and the wallet is renewed at its next sync.
    pub fn decide_case(
        &mut self,
        wallet_id: WalletId,
        decision: CaseDecision,
        now: Millis,
    ) -> Result<Case, Error> {
        let account = self
            .book
            .wallet_mut(&wallet_id)
            .ok_or(Misuse::UnknownWallet)?;
        let Some(mut case) = account.case else {
            return Err(Misuse::NoCase.into());
        };
        if case.decision.is_some() {
            return Err(Misuse::CaseDecided.into());
        }
        case.decision = Some((decision, now));
        account.case = Some(case);
        if decision == CaseDecision::Dismissed {
            account.blocked_at_ms = None;
            self.book.note_unblocked(&wallet_id);
        }
        Ok(case)
    }

    /// Held by the lost wallet's prepared purchases the office has not seen decided, in minor
    /// units.
    fn held_minor(&self, wallet_id: &WalletId, account: &WalletAccount) -> u64 {
        account
            .open
            .iter()
            .filter_map(|id| self.book.transfer(id))
            .filter(|f| f.terms.buyer == *wallet_id && f.seller_decision.is_none())
            .map(|f| f.terms.amount.minor())
            .sum()
    }

    /// How much of a blocked wallet's value can be reissued, and from when.
    pub fn reissue_quote(&self, wallet_id: &WalletId) -> Result<ReissueQuote, Error> {
        let account = self.book.wallet(wallet_id).ok_or(Misuse::UnknownWallet)?;
        let currency = account.credential.currency;
        let held_minor = self.held_minor(wallet_id, account);
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
        let account = self.book.wallet(&lost).ok_or(Misuse::UnknownWallet)?;
        if account.blocked_at_ms.is_none() {
            return Err(Misuse::WalletNotBlocked.into());
        }
        if now <= account.credential.expires_at_ms {
            return Err(Misuse::CredentialNotExpired.into());
        }
        if account.reissued {
            return Err(Misuse::AlreadyReissued.into());
        }
        let currency = account.credential.currency;
        let target = self.book.wallet(&new_wallet).ok_or(Misuse::UnknownWallet)?;
        if target.blocked_at_ms.is_some() {
            return Err(Misuse::WalletBlocked.into());
        }
        if target.credential.currency != currency {
            return Err(Misuse::CurrencyMismatch.into());
        }
        let amount = quote.reissue;
        let voucher = self.charge_moved(new_wallet, amount);
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

    /// Issues the voucher that loads value moved from a lost wallet into `wallet` (checked to
    /// exist by the caller).
    fn charge_moved(&mut self, wallet: WalletId, amount: Amount) -> ChargeVoucher {
        let target = self.account_mut(&wallet);
        let charge_seq = target.charges_issued + 1;
        target.charges_issued = charge_seq;
        target.shadow_minor += i128::from(amount.minor());
        let voucher = ChargeVoucher::issue(&self.keys, wallet, charge_seq, amount);
        self.book.insert_charge(voucher);
        voucher
    }

    /// What the office knows about a wallet.
    pub fn wallet_summary(&self, wallet_id: &WalletId) -> Option<WalletSummary> {
        let account = self.book.wallet(wallet_id)?;
        Some(WalletSummary {
            credential: account.credential.clone(),
            shadow_minor: account.shadow_minor,
            blocked_at_ms: account.blocked_at_ms,
            head_seq: account.head.map(|(seq, _)| seq),
            charges: account.charges_issued,
            charges_applied: account.applied_charge_seq,
            open_transfers: account.open.iter().copied().collect(),
            reissued: account.reissued,
            remainder_released: account.remainder_released,
            case: account.case,
            settled: account.settled.clone(),
        })
    }

    /// Puts in place what pruning leaves of a long settled history of `wallet`: `purchases`
    /// paid and `sales` received, `minor_each` each, settled on both sides and pruned (payment
    /// numbers 1 to `purchases` used up, the totals counted, no record left). Only the digest
    /// and the wallet's value change. For benchmarks of long histories at 100,000 wallets, whose
    /// real transfers would take hours to sign and reconcile; the benchmark's measured wallets
    /// have real histories, pruned by reconciliation.
    #[doc(hidden)]
    pub fn assume_pruned_history(
        &mut self,
        wallet: &WalletId,
        purchases: u64,
        sales: u64,
        minor_each: u64,
    ) -> Result<(), Error> {
        let account = self.book.wallet_mut(wallet).ok_or(Misuse::UnknownWallet)?;
        let digest = &mut account.settled;
        for spend_seq in digest.spend_floor + 1..=digest.spend_floor + purchases {
            digest.settle(spend_seq);
        }
        digest.purchases += purchases;
        digest.sales += sales;
        digest.paid_minor = digest
            .paid_minor
            .saturating_add(purchases.saturating_mul(minor_each));
        digest.received_minor = digest
            .received_minor
            .saturating_add(sales.saturating_mul(minor_each));
        account.shadow_minor += i128::from(sales) * i128::from(minor_each)
            - i128::from(purchases) * i128::from(minor_each);
        Ok(())
    }

    /// Number of wallets the office has issued.
    pub fn wallet_count(&self) -> usize {
        usize::try_from(self.book.wallet_count()).unwrap_or(usize::MAX)
    }

    /// The way out for a buyer left prepared by a seller that will never sync (its phone is
    /// lost, or it cheated): once the seller is blocked and either
    /// [`ABANDONED_RESOLUTION_WINDOW_MS`] has passed since the block or its credential has
    /// expired, the office decides void. The buyer gets the resolution at its next sync (the
    /// office does this by itself when the buyer syncs; the operator may too). Should the
    /// seller's log ever arrive with a commit, it is flagged as a conflicting outcome and not
    /// posted: the blocked seller, not the buyer, loses that sale. A buyer whose wallet got the
    /// seller's commit before the void reached it paid: its log's commit posts the transfer at
    /// its next sync all the same (flagged as conflicting too).
    pub fn resolve_abandoned(&mut self, transfer_id: TransferId, now: Millis) -> Result<(), Error> {
        let file = self
            .book
            .transfer(&transfer_id)
            .ok_or(Misuse::UnknownTransfer)?;
        if file.seller_decision.is_some() || !file.buyer_prepared {
            return Err(Misuse::UnknownTransfer.into());
        }
        let terms = file.terms;
        let seller = self
            .book
            .wallet(&terms.seller)
            .ok_or(Misuse::UnknownWallet)?;
        let Some(blocked_at_ms) = seller.blocked_at_ms else {
            return Err(Misuse::WalletNotBlocked.into());
        };
        if now <= seller.credential.expires_at_ms
            && now <= blocked_at_ms.saturating_add(ABANDONED_RESOLUTION_WINDOW_MS)
        {
            return Err(Misuse::ResolutionWindowOpen.into());
        }
        let mut flags = Vec::new();
        self.decide(&terms, Outcome::Voided, &mut flags);
        if let Some(file) = self.book.transfer_mut(&transfer_id) {
            // The seller will never finish it; nothing more is owed to it.
            file.seller_complete = true;
            file.voided_by_office = true;
        }
        if let Some(account) = self.book.wallet_mut(&terms.seller) {
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
        let validity = self.book.credential_validity_ms();
        let account = self.book.wallet(&lost).ok_or(Misuse::UnknownWallet)?;
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
        let held_minor = self.held_minor(&lost, account);
        let shadow_minor = u64::try_from(account.shadow_minor.max(0)).unwrap_or(u64::MAX);
        let release_minor = shadow_minor.saturating_sub(held_minor);
        if release_minor == 0 {
            return Err(Misuse::ZeroAmount.into());
        }
        let amount = Amount::from_minor(release_minor.min(Amount::MAX_MINOR), currency)
            .map_err(|_| Error::Malformed(Malformed::InvalidField))?;
        let target = self.book.wallet(&new_wallet).ok_or(Misuse::UnknownWallet)?;
        if target.blocked_at_ms.is_some() {
            return Err(Misuse::WalletBlocked.into());
        }
        if target.credential.currency != currency {
            return Err(Misuse::CurrencyMismatch.into());
        }
        let voucher = self.charge_moved(new_wallet, amount);
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
}
