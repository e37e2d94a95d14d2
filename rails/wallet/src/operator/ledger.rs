//! How the office's decisions map to the ledger: a wallet's shadow account, postings as
//! transfers with deterministic ids, flags as entries of the shared fraud queue.
//!
//! Ledger accounts: `wallet:<id>` (a customer account per wallet) shadows the wallet's value as
//! the office sees it. A wallet account has no floor: it goes below zero only when a rolled-back
//! wallet overspent, and that comes with an `overspent` flag in the fraud queue.

use std::string::{String, ToString};

use offpay_ledger::{
    AccountId, AccountKind, BalanceLimits, Currency, NewAccount, Operation, Timestamp, Transfer,
    TransferKind,
};
use offpay_operator::FraudFlag;
use serde_json::{Value, json};

use crate::error::{BookError, Error};
use crate::ids::WalletId;
use crate::office::{Flag, Posting, PostingAccount, PostingKind};
use crate::terms::Terms;

/// The rail's name in the fraud queue.
pub const RAIL: &str = "wallet";
/// Prefix of the ledger account that shadows a wallet.
pub const ACCOUNT_PREFIX: &str = "wallet:";
/// Prefix of the ledger transfer id of a posting.
pub const POSTING_PREFIX: &str = "wallet:";

fn ledger_id_error(what: &str, error: impl core::fmt::Display) -> Error {
    BookError::Refused(format!("{what}: {error}")).into()
}

/// The ledger account that shadows `wallet`.
pub fn wallet_account(wallet: &WalletId) -> Result<AccountId, Error> {
    AccountId::new(format!("{ACCOUNT_PREFIX}{wallet}"))
        .map_err(|error| ledger_id_error("wallet account id", error))
}

/// Opens `wallet`'s shadow account (idempotent).
pub(crate) fn wallet_account_definition(
    wallet: &WalletId,
    currency: Currency,
) -> Result<Operation, Error> {
    Ok(Operation::CreateAccount(NewAccount {
        id: wallet_account(wallet)?,
        kind: AccountKind::Customer,
        currency,
        limits: BalanceLimits {
            balance_min: None,
            balance_max: None,
        },
    }))
}

/// The ledger transfer id of `posting`.
pub fn posting_transfer_id(posting: &Posting) -> Result<offpay_ledger::TransferId, Error> {
    offpay_ledger::TransferId::new(format!("{POSTING_PREFIX}{}", posting.id))
        .map_err(|error| ledger_id_error("posting id", error))
}

/// `posting` as a ledger transfer; `funding` names the account behind
/// [`PostingAccount::Funding`].
pub(crate) fn posting_transfer(
    posting: &Posting,
    funding: Option<&AccountId>,
) -> Result<Transfer, Error> {
    let account = |side: PostingAccount| -> Result<AccountId, Error> {
        match side {
            PostingAccount::Wallet(wallet) => wallet_account(&wallet),
            PostingAccount::Funding => funding.cloned().ok_or_else(|| {
                BookError::Refused("a posting from a funding account that was not named".into())
                    .into()
            }),
        }
    };
    let memo = match posting.kind {
        PostingKind::Charge => "wallet charge",
        PostingKind::Transfer => "wallet transfer",
        PostingKind::Reissue => "wallet reissue",
    };
    Ok(Transfer {
        id: posting_transfer_id(posting)?,
        debit_account: account(posting.from)?,
        credit_account: account(posting.to)?,
        amount: posting.amount,
        kind: TransferKind::Posted,
        memo: memo.to_owned(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `flag` as an entry of the fraud queue, with the discriminator that makes the same finding
/// raised twice (a retried upload) one entry.
pub(crate) fn fraud_flag(flag: &Flag, now: Timestamp) -> (FraudFlag, String) {
    let terms_json = |terms: &Terms| {
        json!({
            "transfer_id": terms.transfer_id.to_string(),
            "seller": terms.seller.to_string(),
            "buyer": terms.buyer.to_string(),
            "amount": terms.amount.decimal().to_string(),
            "currency": terms.amount.currency().code(),
        })
    };
    let (kind, subject, summary, evidence, discriminator) = match flag {
        Flag::DoubleSpend {
            wallet,
            first,
            second,
        } => (
            "double_spend",
            wallet.to_string(),
            format!(
                "wallet signed two payments with payment number {}: it was rolled back and spent twice",
                second.agreement.buyer_spend_seq
            ),
            json!({
                "payment_number": second.agreement.buyer_spend_seq,
                "first": terms_json(&first.terms),
                "second": terms_json(&second.terms),
            }),
            format!(
                "{}:{}",
                second.agreement.buyer_spend_seq, second.terms.transfer_id
            ),
        ),
        Flag::ForkedLog {
            wallet,
            known_head_seq,
            known_head_hash,
            uploaded_head_seq,
            uploaded_head_hash,
        } => (
            "forked_log",
            wallet.to_string(),
            format!(
                "the uploaded log (head {uploaded_head_seq}) does not contain the head {known_head_seq} reconciled before: the wallet was rolled back"
            ),
            json!({
                "known_head_seq": known_head_seq,
                "known_head_hash": hex(known_head_hash),
                "uploaded_head_seq": uploaded_head_seq,
                "uploaded_head_hash": hex(uploaded_head_hash),
            }),
            format!("{uploaded_head_seq}:{}", hex(&uploaded_head_hash[..8])),
        ),
        Flag::Overspent {
            wallet,
            shadow_minor,
        } => (
            "overspent",
            wallet.to_string(),
            format!("the office's view of the wallet is {shadow_minor} minor units, below zero"),
            json!({ "shadow_minor": shadow_minor.to_string() }),
            shadow_minor.to_string(),
        ),
        Flag::PaymentNumberReused {
            wallet,
            spend_seq,
            second,
        } => (
            "double_spend",
            wallet.to_string(),
            format!(
                "wallet signed a payment with payment number {spend_seq}, which it had already used on a settled payment: it was rolled back and spent twice"
            ),
            json!({
                "payment_number": spend_seq,
                "first": "settled and pruned; the office's digest of the wallet holds the number as used",
                "second": terms_json(&second.terms),
            }),
            format!("{spend_seq}:{}", second.terms.transfer_id),
        ),
        Flag::ConflictingOutcome { transfer_id } => (
            "conflicting_outcome",
            transfer_id.to_string(),
            "the two sides of a transfer logged different outcomes".to_owned(),
            json!({ "transfer_id": transfer_id.to_string() }),
            transfer_id.to_string(),
        ),
        Flag::BlockedWalletTransacted {
            wallet,
            transfer_id,
        } => (
            "blocked_wallet_paid",
            wallet.to_string(),
            "a blocked wallet took part in a transfer".to_owned(),
            json!({ "transfer_id": transfer_id.to_string() }),
            transfer_id.to_string(),
        ),
    };
    (
        FraudFlag::new(RAIL, kind, &subject, summary, evidence, now),
        discriminator,
    )
}

/// The fraud-queue entry `flag` becomes, as shown to people (for logs).
pub fn describe_flag(flag: &Flag) -> Value {
    let (entry, _) = fraud_flag(flag, Timestamp(0));
    json!({ "kind": entry.kind, "subject": entry.subject, "summary": entry.summary })
}
