//! The load plan of a sync: which of the office's records reconciling an upload reads, so that
//! the operator loads those and no others.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::book::{Book, BookKey, WalletAccount};
use super::reconcile::{news_start, parse_chain, pending_voucher_seqs};
use crate::ids::TransferId;
use crate::record::{LoggedRecord, Record};
use crate::sync::LogUpload;
use crate::terms::Terms;

/// An upload as far as it parses, for planning what its reconciliation reads. Planning checks
/// no signature: an upload that fails a check fails it in the reconciliation, before it reads
/// anything the plan left out.
#[derive(Debug)]
pub(crate) struct SyncView {
    upload: Option<LogUpload>,
    records: Option<Vec<LoggedRecord>>,
}

impl SyncView {
    pub(crate) fn parse(bytes: &[u8]) -> SyncView {
        let upload = LogUpload::decode(bytes).ok();
        let records = upload.as_ref().and_then(|upload| parse_chain(upload).ok());
        SyncView { upload, records }
    }
}

/// Adds to `wanted` every record the reconciliation of `view` reads, as far as `book` (what is
/// loaded so far) tells: the uploading wallet, the transfers its news and its open list name,
/// their parties, the payment numbers its agreements use and the transfers they were first seen
/// on, the vouchers it applied and those the reply carries. Called until it adds nothing new.
pub(crate) fn sync_keys(view: &SyncView, book: &Book, wanted: &mut BTreeSet<BookKey>) {
    wanted.insert(BookKey::Header);
    wanted.insert(BookKey::Blocked);
    let Some(upload) = &view.upload else {
        return;
    };
    let own = upload.credential.wallet_id;
    wanted.insert(BookKey::Wallet(own));
    let Some(Some(account)) = book.wallets.get(&own) else {
        return;
    };
    // The reply reads the files of the wallet's open transfers, and a purchase held by a
    // blocked seller reads that seller's account.
    for transfer_id in &account.open {
        wanted.insert(BookKey::Transfer(*transfer_id));
        if let Some(Some(file)) = book.transfers.get(transfer_id)
            && file.terms.buyer == own
        {
            wanted.insert(BookKey::Wallet(file.terms.seller));
        }
    }
    // Transfers the news names: their files, and their parties' accounts.
    let mut transfers: BTreeSet<TransferId> = BTreeSet::new();
    let mut applied = account.applied_charge_seq;
    // The terms the news itself carries, which stand in for a file the office does not have.
    let mut carried: BTreeMap<TransferId, Terms> = BTreeMap::new();
    // Payment numbers of commits, whose buyer comes from the terms.
    let mut commits: Vec<(TransferId, u64)> = Vec::new();
    let news = view.records.as_deref().and_then(|records| {
        news_start(own, account.head, records, upload)
            .ok()
            .map(|(new_from, _)| records.iter().filter(move |r| r.seq >= new_from))
    });
    for logged in news.into_iter().flatten() {
        match &logged.record {
            Record::Charged { voucher }
                if voucher.charge_seq >= 1 && voucher.charge_seq <= account.charges_issued =>
            {
                wanted.insert(BookKey::Charge(own, voucher.charge_seq));
                applied = applied.max(voucher.charge_seq);
            }
            Record::SellerPending { terms, .. } => {
                carried.entry(terms.transfer_id).or_insert(*terms);
                transfers.insert(terms.transfer_id);
            }
            Record::BuyerPrepared {
                terms, agreement, ..
            } => {
                carried.entry(terms.transfer_id).or_insert(*terms);
                transfers.insert(terms.transfer_id);
                wanted.insert(BookKey::Agreement(terms.buyer, agreement.buyer_spend_seq));
            }
            Record::SellerCommitted {
                transfer_id,
                agreement,
                ..
            } => {
                transfers.insert(*transfer_id);
                commits.push((*transfer_id, agreement.buyer_spend_seq));
            }
            Record::SellerVoided { transfer_id }
            | Record::SellerComplete { transfer_id }
            | Record::BuyerPosted { transfer_id, .. }
            | Record::BuyerVoided { transfer_id } => {
                transfers.insert(*transfer_id);
            }
            Record::Resolved { resolution } => {
                transfers.insert(resolution.transfer_id);
            }
            _ => {}
        }
    }
    let pending = WalletAccount {
        applied_charge_seq: applied,
        ..account.clone()
    };
    for seq in pending_voucher_seqs(&pending) {
        wanted.insert(BookKey::Charge(own, seq));
    }
    // A payment number already held names the transfer it was first seen on, whose file is the
    // evidence of a double spend.
    for first in book.agreements.values().flatten() {
        wanted.insert(BookKey::Transfer(*first));
    }
    for transfer_id in &transfers {
        wanted.insert(BookKey::Transfer(*transfer_id));
        let file = book.transfers.get(transfer_id).and_then(Option::as_ref);
        // A transfer this upload settles is pruned with its payment-number record.
        if let Some(agreement) = file.and_then(|file| file.agreement) {
            wanted.insert(BookKey::Agreement(
                file.map_or(own, |file| file.terms.buyer),
                agreement.buyer_spend_seq,
            ));
        }
        let stored = file.map(|file| file.terms);
        for terms in stored.iter().chain(carried.get(transfer_id)) {
            wanted.insert(BookKey::Wallet(terms.buyer));
            wanted.insert(BookKey::Wallet(terms.seller));
            for (commit, spend_seq) in &commits {
                if commit == transfer_id {
                    wanted.insert(BookKey::Agreement(terms.buyer, *spend_seq));
                }
            }
        }
    }
}
