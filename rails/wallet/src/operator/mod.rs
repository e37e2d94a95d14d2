//! The money office's operator half, as the server runs it: the office's book as typed,
//! versioned ledger records (one per wallet, transfer, payment number and voucher, a header and
//! the list of blocked wallets), a load plan per operation, and decisions that return
//! [`Decision`]s with [`Effects`] for the server's runner: postings with deterministic ids, fraud
//! flags, and the records that changed, each written on the condition that it is still at the
//! version read. Nothing is cached between operations, so any number of servers can share one
//! database.
//!
//! A sync costs what its upload touches: the uploading wallet's record, the records of the
//! transfers, counterparties, payment numbers and vouchers it names, the header and the list of
//! blocked wallets; never the whole book.

mod ledger;
mod legacy;
pub mod local;
mod plan;
mod records;

use std::collections::BTreeMap;
use std::vec::Vec;

use offpay_ledger::{AccountId, Currency, Operation, Timestamp};
use offpay_money::Amount;
use offpay_operator::{Decision, Effects, Entropy};

pub use ledger::wallet_account;
pub use ledger::{ACCOUNT_PREFIX, POSTING_PREFIX, RAIL, describe_flag, posting_transfer_id};
pub use legacy::{
    BOOK_CHUNK_BYTES, BOOK_CHUNKS_MAX, BOOK_KEY, BOOK_MANIFEST_VERSION, LegacyBook, chunk_key,
    load_legacy,
};
pub use plan::{LOAD_ROUNDS_MAX, Plan, Working, load};
pub use records::{BLOCKED_KEY, HEADER_KEY, NAMESPACE, parse_record_key, record_key};

use crate::credential::{Credential, Limits};
use crate::error::{BookError, Error, Malformed};
use crate::ids::{TransferId, WalletId};
use crate::keys::OfficeKeys;
use crate::office::book::{Book, BookKey, Header};
use crate::office::{
    Case, CaseDecision, MoneyOffice, Posting, Reconciliation, ReissueQuote, WalletSummary,
};
use crate::sync::ChargeVoucher;

/// How long an issued or renewed credential is valid: a wallet must sync at least this often.
pub const CREDENTIAL_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default most a new wallet may hold, in major units of its currency.
pub const DEFAULT_BALANCE_MAX_MAJOR: u64 = 1000;
/// Default largest single payment of a new wallet, in major units.
pub const DEFAULT_PAYMENT_MAX_MAJOR: u64 = 500;
/// Default most a new wallet may pay out between two syncs, in major units.
pub const DEFAULT_OFFLINE_SPEND_MAX_MAJOR: u64 = 1000;

const _: () = assert!(DEFAULT_PAYMENT_MAX_MAJOR <= DEFAULT_OFFLINE_SPEND_MAX_MAJOR);

/// The limits a new wallet in `currency` gets unless the operator names others.
pub fn default_limits(currency: Currency) -> Result<Limits, Error> {
    let amount = |major: u64| {
        major
            .checked_mul(currency.minor_per_major())
            .and_then(|minor| Amount::from_minor(minor, currency).ok())
            .ok_or(Error::Malformed(Malformed::InvalidField))
    };
    Ok(Limits {
        balance_max: amount(DEFAULT_BALANCE_MAX_MAJOR)?,
        payment_max: amount(DEFAULT_PAYMENT_MAX_MAJOR)?,
        offline_spend_max: amount(DEFAULT_OFFLINE_SPEND_MAX_MAJOR)?,
    })
}

/// A wallet to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The device's Ed25519 public key.
    pub signing_key: [u8; 32],
    /// The device's X25519 public key.
    pub encryption_key: [u8; 32],
    /// Its limits (their currency is the wallet's).
    pub limits: Limits,
    /// Account creations the postings of this currency need (the operator's own accounts).
    pub operator_accounts: Vec<Operation>,
}

/// A charge.
#[derive(Clone, Debug)]
pub struct ChargeRequest {
    /// The wallet.
    pub wallet: WalletId,
    /// How much, in the wallet's currency.
    pub amount: Amount,
    /// The account that pays for it.
    pub funding: AccountId,
    /// Account creations the posting needs (the operator's own accounts).
    pub operator_accounts: Vec<Operation>,
}

/// A charge made.
pub type Charged = (ChargeVoucher, Posting);
/// A lost wallet's value reissued: the quote, the posting, the voucher for the new wallet.
pub type Reissued = (ReissueQuote, Posting, ChargeVoucher);
/// What a reissue held back, released: the amount, the posting, the voucher.
pub type Released = (Amount, Posting, ChargeVoucher);

/// What the operator sees of a wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletView {
    /// The office's view.
    pub summary: WalletSummary,
    /// How much could be reissued, for a blocked wallet.
    pub reissue_quote: Option<ReissueQuote>,
}

/// An office on loaded records, with the records as read.
struct Opened {
    office: MoneyOffice,
    original: Book,
    versions: BTreeMap<BookKey, u64>,
}

/// The money office as the operator runs it: its key (kept in a file by the server, never in
/// the database) and the validity of the credentials a new office issues. Every decision takes
/// what [`load`] read for its [`Plan`].
#[derive(Clone, Debug)]
pub struct Office {
    keys: OfficeKeys,
    credential_validity_ms: u64,
}

impl Office {
    /// An office signing with `keys`; `credential_validity_ms` applies when the book is new (a
    /// book keeps the validity it was created with).
    pub fn new(keys: OfficeKeys, credential_validity_ms: u64) -> Office {
        Office {
            keys,
            credential_validity_ms,
        }
    }

    /// The office's public key, which every wallet holds.
    pub fn public(&self) -> [u8; 32] {
        self.keys.public()
    }

    /// Runs `rule` on the loaded records and returns its result with the writes of the records
    /// it changed. Refuses to decide on an earlier release's book, or on a view the rules found
    /// incomplete.
    fn run_rules<T>(
        &self,
        working: Working,
        rule: impl FnOnce(&mut MoneyOffice) -> Result<T, Error>,
    ) -> Result<(T, Vec<Operation>), Error> {
        let Opened {
            mut office,
            original,
            versions,
        } = self.open(working)?;
        let result = rule(&mut office);
        let book = office.into_book();
        if let Some(key) = book.missed() {
            return Err(BookError::OutsidePlan {
                key: record_key(&key),
            }
            .into());
        }
        let value = result?;
        let writes = records::changed_records(&original, &book, Some(&versions))?;
        Ok((value, writes))
    }

    /// The office on what `working` loaded, with the records as read (to tell what changed).
    fn open(&self, working: Working) -> Result<Opened, Error> {
        if working.legacy {
            return Err(BookError::LegacyBook.into());
        }
        let Working {
            mut book, versions, ..
        } = working;
        let original = book.clone();
        if matches!(book.header, Some(None)) {
            // A new office: its header is written with its first change.
            book.header = Some(Some(Header {
                credential_validity_ms: self.credential_validity_ms,
                wallets: 0,
            }));
        }
        Ok(Opened {
            office: MoneyOffice::with_book(self.keys.clone(), book),
            original,
            versions,
        })
    }

    /// Reconciles a sync upload ([`Plan::sync`]): the reply for the wallet, with the postings
    /// and flags to commit.
    pub fn sync(
        &self,
        working: Working,
        upload: &[u8],
        now: Timestamp,
    ) -> Result<Decision<Reconciliation>, Error> {
        let (reconciliation, writes) =
            self.run_rules(working, |office| office.reconcile(upload, now.0))?;
        let mut effects = Effects::new();
        for posting in &reconciliation.postings {
            effects.post(ledger::posting_transfer(posting, None)?);
        }
        for flag in &reconciliation.flags {
            let (entry, discriminator) = ledger::fraud_flag(flag, now);
            effects.flag(&entry, &discriminator);
        }
        effects.write_all(writes);
        Ok(Decision::commit(effects, reconciliation))
    }

    /// Issues a wallet ([`Plan::issue`]) with an id drawn from `entropy`, and opens its ledger
    /// account.
    pub fn issue(
        &self,
        working: Working,
        request: &IssueRequest,
        now: Timestamp,
        entropy: &dyn Entropy,
    ) -> Result<Decision<Credential>, Error> {
        let mut id = [0u8; WalletId::BYTES];
        entropy
            .fill(&mut id)
            .map_err(|_| Error::Book(BookError::Entropy))?;
        let (credential, writes) = self.run_rules(working, |office| {
            office.issue_wallet_as(
                WalletId(id),
                request.signing_key,
                request.encryption_key,
                request.limits,
                now.0,
            )
        })?;
        let mut effects = Effects::new();
        effects.create_accounts(request.operator_accounts.iter().cloned());
        effects.create_accounts([ledger::wallet_account_definition(
            &credential.wallet_id,
            credential.currency,
        )?]);
        effects.write_all(writes);
        Ok(Decision::commit(effects, credential))
    }

    /// Charges a wallet ([`Plan::charge`]).
    pub fn charge(
        &self,
        working: Working,
        request: &ChargeRequest,
    ) -> Result<Decision<Charged>, Error> {
        let ((voucher, posting), writes) = self.run_rules(working, |office| {
            office.charge(request.wallet, request.amount)
        })?;
        let mut effects = Effects::new();
        effects.create_accounts(request.operator_accounts.iter().cloned());
        effects.post(ledger::posting_transfer(&posting, Some(&request.funding))?);
        effects.write_all(writes);
        Ok(Decision::commit(effects, (voucher, posting)))
    }

    /// Blocks a wallet ([`Plan::block`]).
    pub fn block(
        &self,
        working: Working,
        wallet: WalletId,
        now: Timestamp,
    ) -> Result<Decision<()>, Error> {
        let ((), writes) = self.run_rules(working, |office| office.block(wallet, now.0))?;
        let mut effects = Effects::new();
        effects.write_all(writes);
        Ok(Decision::commit(effects, ()))
    }

    /// The operator's decision on a wallet's containment case ([`Plan::block`]).
    pub fn decide_case(
        &self,
        working: Working,
        wallet: WalletId,
        decision: CaseDecision,
        now: Timestamp,
    ) -> Result<Decision<Case>, Error> {
        let (case, writes) = self.run_rules(working, |office| {
            office.decide_case(wallet, decision, now.0)
        })?;
        let mut effects = Effects::new();
        effects.write_all(writes);
        Ok(Decision::commit(effects, case))
    }

    /// Reissues a lost wallet's value ([`Plan::reissue`]).
    pub fn reissue(
        &self,
        working: Working,
        lost: WalletId,
        to: WalletId,
        now: Timestamp,
    ) -> Result<Decision<Reissued>, Error> {
        let (reissued, writes) =
            self.run_rules(working, |office| office.reissue(lost, to, now.0))?;
        let mut effects = Effects::new();
        // Nothing to move when everything is held back; the ledger takes no empty transfer.
        if !reissued.1.amount.is_zero() {
            effects.post(ledger::posting_transfer(&reissued.1, None)?);
        }
        effects.write_all(writes);
        Ok(Decision::commit(effects, reissued))
    }

    /// Releases what a reissue held back ([`Plan::reissue`]).
    pub fn release(
        &self,
        working: Working,
        lost: WalletId,
        to: WalletId,
        now: Timestamp,
    ) -> Result<Decision<Released>, Error> {
        let (released, writes) =
            self.run_rules(working, |office| office.release_remainder(lost, to, now.0))?;
        let mut effects = Effects::new();
        effects.post(ledger::posting_transfer(&released.1, None)?);
        effects.write_all(writes);
        Ok(Decision::commit(effects, released))
    }

    /// Voids a transfer whose seller will never sync ([`Plan::void`]).
    pub fn void_abandoned(
        &self,
        working: Working,
        transfer: TransferId,
        now: Timestamp,
    ) -> Result<Decision<()>, Error> {
        let ((), writes) =
            self.run_rules(working, |office| office.resolve_abandoned(transfer, now.0))?;
        let mut effects = Effects::new();
        effects.write_all(writes);
        Ok(Decision::commit(effects, ()))
    }

    /// What the operator sees of a wallet ([`Plan::show`]); `None` for a wallet the office does
    /// not know.
    pub fn show(&self, working: Working, wallet: WalletId) -> Result<Option<WalletView>, Error> {
        let ((summary, quote), _) = self.run_rules(working, |office| {
            Ok((
                office.wallet_summary(&wallet),
                office.reissue_quote(&wallet).ok(),
            ))
        })?;
        Ok(summary.map(|summary| WalletView {
            reissue_quote: quote.filter(|_| summary.blocked_at_ms.is_some()),
            summary,
        }))
    }
}

/// The steps that migrate an earlier release's whole book into per-record storage, to commit in
/// order; each is one batch conditional on the old manifest's version. If a step is refused as
/// stale, load the old book again and start over.
pub fn migration(legacy: &LegacyBook) -> Result<Vec<Effects>, Error> {
    legacy::migration_steps(legacy, offpay_ledger::BATCH_OPERATIONS_MAX)
}
