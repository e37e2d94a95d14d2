//! Reconciliation: an uploaded log checked record by record against the office's book, then
//! applied.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::book::{CaseDecision, CaseReason, WalletAccount};
use super::{AgreementEvidence, Flag, MoneyOffice, Posting, PostingAccount, PostingKind};
use super::{Reconciliation, transfer_posting_id};
use crate::credential::Credential;
use crate::error::{Error, Misuse, PeerError};
use crate::ids::{Millis, TransferId, WalletId};
use crate::record::{LoggedRecord, Record, decode_record};
use crate::sync::{
    ChargeVoucher, LogUpload, REPLY_RESOLUTIONS_MAX, REPLY_VOUCHERS_MAX, Resolution, SyncReply,
};
use crate::terms::{Agreement, Terms, verify_commit};
use crate::wire::Outcome;

/// A record checked against the office's keys, ready to apply.
#[derive(Clone, Copy)]
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

impl Checked {
    /// The transfer the record is about, if any.
    fn transfer_id(&self) -> Option<TransferId> {
        match self {
            Checked::SellerPending(terms) | Checked::BuyerPrepared(terms, _) => {
                Some(terms.transfer_id)
            }
            Checked::SellerCommitted(id, _)
            | Checked::SellerVoided(id)
            | Checked::SellerComplete(id)
            | Checked::BuyerFinished(id, _) => Some(*id),
            Checked::Charged(_) | Checked::Ignored => None,
        }
    }
}

/// A wallet to contain, why, and the transfer that showed it.
type Containment = (WalletId, CaseReason, Option<TransferId>);

/// The records of an upload, parsed, each continuing the hash chain of the one before.
pub(super) fn parse_chain(upload: &LogUpload) -> Result<Vec<LoggedRecord>, Error> {
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
    Ok(records)
}

/// Where the news of an upload starts, given the head the office holds: the record after that
/// head, or for an upload that does not contain it (a rolled-back wallet), the whole upload, with
/// the flag that says so.
pub(super) fn news_start(
    wallet_id: WalletId,
    head: Option<(u64, [u8; 32])>,
    records: &[LoggedRecord],
    upload: &LogUpload,
) -> Result<(u64, Option<Flag>), Error> {
    match records.last() {
        Some(last) if last.seq != upload.head_seq || last.hash != upload.head_hash => {
            return Err(PeerError::Inconsistent.into());
        }
        None if head != Some((upload.head_seq, upload.head_hash)) => {
            return Err(PeerError::Inconsistent.into());
        }
        _ => {}
    }
    Ok(match (head, records.first()) {
        (None, Some(first)) => {
            if first.seq != 0 {
                return Err(PeerError::ChainGap.into());
            }
            (0, None)
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
                (head_seq + 1, None)
            } else {
                let fork = Flag::ForkedLog {
                    wallet: wallet_id,
                    known_head_seq: head_seq,
                    known_head_hash: head_hash,
                    uploaded_head_seq: upload.head_seq,
                    uploaded_head_hash: upload.head_hash,
                };
                // Everything in a forked upload is news.
                (first.seq, Some(fork))
            }
        }
        (Some(_), None) => (upload.head_seq + 1, None),
    })
}

/// Whether a wallet the office sees below zero cannot be an honest wallet whose receipts are
/// not reported yet: either its own upload was just reconciled (every receipt in its log is
/// counted), or it is below minus its offline spending limit (an honest wallet pays at most that
/// between two of its syncs, whatever it received meanwhile). Below zero within that, after
/// another wallet's upload, the wallet may have spent value it received offline from a payer
/// that has not synced: no flag then; its own next sync says which it was.
fn overspent_beyond_honest(uploader: WalletId, wallet: WalletId, account: &WalletAccount) -> bool {
    let limit = i128::from(account.credential.limits.offline_spend_max.minor());
    wallet == uploader || account.shadow_minor < -limit
}

impl MoneyOffice {
    /// Reconciles an uploaded log (the bytes of [`LogUpload::encode`]). An upload that fails any
    /// check changes nothing and gets the reason; otherwise the office records what it learnt and
    /// returns the reply for the wallet, the postings for the ledger and any flags.
    pub fn reconcile(&mut self, upload: &[u8], now: Millis) -> Result<Reconciliation, Error> {
        let upload = LogUpload::decode(upload)?;
        upload.credential.verify(&self.keys.public())?;
        let wallet_id = upload.credential.wallet_id;
        let account = self.book.wallet(&wallet_id).ok_or(Misuse::UnknownWallet)?;
        if account.credential.signing_key != upload.credential.signing_key {
            return Err(PeerError::Inconsistent.into());
        }
        let head = account.head;
        upload.verify()?;

        // Pass 1: parse and check everything; nothing changes yet.
        let records = parse_chain(&upload)?;
        let (new_from, fork) = news_start(wallet_id, head, &records, &upload)?;
        let forked = fork.is_some();
        let mut checked = Vec::new();
        for record in records.iter().filter(|r| r.seq >= new_from) {
            let item = self.check_record(&upload.credential, record, &checked, forked)?;
            checked.push(item);
        }
        let named: BTreeSet<TransferId> = checked.iter().filter_map(Checked::transfer_id).collect();

        // Pass 2: apply. Nothing below can fail.
        let mut flags = Vec::new();
        if let Some(flag) = fork {
            flags.push(flag);
        }
        let mut postings = Vec::new();
        let mut touched = BTreeSet::new();
        touched.insert(wallet_id);
        let mut cases: Vec<Containment> = Vec::new();
        for item in checked {
            self.apply_checked(
                wallet_id,
                item,
                &mut postings,
                &mut flags,
                &mut touched,
                &mut cases,
            );
        }
        let validity = self.book.credential_validity_ms();
        let account = self.account_mut(&wallet_id);
        account.head = Some((upload.head_seq, upload.head_hash));
        account.spent_unsynced_minor = 0;
        // Shown cheating already: its value below zero is part of the case, whatever its size.
        let cheats: BTreeSet<WalletId> = flags
            .iter()
            .filter_map(|flag| match flag {
                Flag::DoubleSpend { wallet, .. } | Flag::ForkedLog { wallet, .. } => Some(*wallet),
                _ => None,
            })
            .collect();
        for wallet in &touched {
            if let Some(a) = self.book.wallet(wallet)
                && a.shadow_minor < 0
                && (overspent_beyond_honest(wallet_id, *wallet, a)
                    || cheats.contains(wallet)
                    || a.blocked_at_ms.is_some()
                    || crate::reverts::reverted(crate::reverts::OVERSPENT_FLAG_BEYOND_HONEST))
            {
                flags.push(Flag::Overspent {
                    wallet: *wallet,
                    shadow_minor: a.shadow_minor,
                });
            }
        }
        let blocked_before = self.account_mut(&wallet_id).blocked_at_ms.is_some();
        // Containment: the first evidence of a cheat blocks the cheat, before its credential
        // could be renewed below.
        let mut evidence = self.evidence(wallet_id, &flags, &postings);
        if !crate::reverts::reverted(crate::reverts::SELLER_VOID_CONTAINED) {
            evidence.extend(cases);
        }
        for (cheat, reason, transfer_id) in evidence {
            self.contain(cheat, reason, transfer_id, now);
        }
        // Settled transfers this upload finished are pruned (after containment: a transfer of a
        // wallet under a case is kept as evidence).
        for transfer_id in &named {
            self.prune_if_settled(transfer_id);
        }
        let account = self.account_mut(&wallet_id);
        let blocked = match crate::reverts::reverted(crate::reverts::BLOCK_BEFORE_RENEWAL) {
            true => blocked_before,
            false => account.blocked_at_ms.is_some(),
        };
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
        // A purchase held by a blocked seller past its window is voided now.
        let held: Vec<TransferId> = self
            .book
            .wallet(&wallet_id)
            .map(|a| a.open.iter().copied().collect())
            .unwrap_or_default();
        for transfer_id in held {
            let abandoned = self.book.transfer(&transfer_id).is_some_and(|file| {
                file.terms.buyer == wallet_id
                    && file.buyer_prepared
                    && file.buyer_outcome.is_none()
                    && file.seller_decision.is_none()
            });
            if abandoned {
                // Refused while the seller is not blocked or its window is open: nothing changes.
                let _ = self.resolve_abandoned(transfer_id, now);
            }
        }
        let reply = self.reply(wallet_id, upload.head_seq, upload.head_hash, renewed);
        Ok(Reconciliation {
            reply,
            postings,
            flags,
        })
    }

    /// The wallets the flags of one reconciliation show cheating, each with the first evidence
    /// against it. A seller is never among them: what it reports is evidence against its buyer.
    ///
    /// - a double spend: the buyer that signed two agreements with one payment number;
    /// - a forked log: the uploader;
    /// - an overspend, when it cannot be an honest wallet's payments not yet matched by the
    ///   receipts its payers have not reported yet: either the wallet's own upload was just
    ///   reconciled (every receipt in its log is counted) or its value is below minus its
    ///   offline spending limit (an honest wallet pays at most that between two of its syncs).
    ///   After the operator dismissed a case, an overspend counts again only with a new payment.
    fn evidence(
        &self,
        uploader: WalletId,
        flags: &[Flag],
        postings: &[Posting],
    ) -> Vec<(WalletId, CaseReason, Option<TransferId>)> {
        let mut found = Vec::new();
        for flag in flags {
            match flag {
                Flag::DoubleSpend { wallet, second, .. }
                | Flag::PaymentNumberReused { wallet, second, .. } => found.push((
                    *wallet,
                    CaseReason::DoubleSpend,
                    Some(second.terms.transfer_id),
                )),
                Flag::ForkedLog { wallet, .. } => {
                    found.push((*wallet, CaseReason::ForkedLog, None));
                }
                Flag::Overspent {
                    wallet,
                    shadow_minor,
                } => {
                    let Some(account) = self.book.wallet(wallet) else {
                        continue;
                    };
                    let beyond_honest =
                        *shadow_minor < 0 && overspent_beyond_honest(uploader, *wallet, account);
                    let paid_now = postings.iter().any(|p| {
                        p.kind == PostingKind::Transfer && p.from == PostingAccount::Wallet(*wallet)
                    });
                    let dismissed = account
                        .case
                        .is_some_and(|c| matches!(c.decision, Some((CaseDecision::Dismissed, _))));
                    if beyond_honest && (paid_now || !dismissed) {
                        found.push((*wallet, CaseReason::Overspent, None));
                    }
                }
                Flag::ConflictingOutcome { .. } | Flag::BlockedWalletTransacted { .. } => {}
            }
        }
        found
    }

    /// Whether the agreement's payment number was used on a transfer that settled and was
    /// pruned (its record is gone and the buyer's digest has the number), and this transfer is
    /// not one the office still has a file of.
    fn pruned_number(&self, terms: &Terms, agreement: &Agreement) -> bool {
        let spend_seq = agreement.buyer_spend_seq;
        self.book.agreement(&terms.buyer, spend_seq).is_none()
            && self
                .book
                .wallet(&terms.buyer)
                .is_some_and(|a| a.settled.is_settled(spend_seq))
    }

    /// Prunes a transfer this upload finished, if it is settled: decided, the seller complete,
    /// the buyer's outcome reported, so neither honest log will name it again; and neither party
    /// blocked (a case keeps its evidence). Its file and its payment-number record go; the
    /// buyer's digest keeps the number as used, and both parties' totals count it.
    fn prune_if_settled(&mut self, transfer_id: &TransferId) {
        let Some(file) = self.book.transfer(transfer_id) else {
            return;
        };
        let (Some(_), true, Some(_), Some(agreement)) = (
            file.seller_decision,
            file.seller_complete,
            file.buyer_outcome,
            file.agreement,
        ) else {
            return;
        };
        let (terms, posted) = (file.terms, file.posted);
        let spend_seq = agreement.buyer_spend_seq;
        for party in [terms.buyer, terms.seller] {
            let settled = self
                .book
                .wallet(&party)
                .is_some_and(|a| a.blocked_at_ms.is_none() && !a.open.contains(transfer_id));
            if !settled {
                return;
            }
        }
        // The number's record must name this transfer: the first of a double spend stays.
        if self.book.agreement(&terms.buyer, spend_seq) != Some(*transfer_id)
            || !self
                .book
                .wallet(&terms.buyer)
                .is_some_and(|a| a.settled.has_room(spend_seq))
        {
            return;
        }
        self.book.remove_agreement(terms.buyer, spend_seq);
        self.book.remove_transfer(transfer_id);
        let paid = if posted { terms.amount.minor() } else { 0 };
        let buyer = &mut self.account_mut(&terms.buyer).settled;
        buyer.settle(spend_seq);
        buyer.purchases += 1;
        buyer.paid_minor = buyer.paid_minor.saturating_add(paid);
        let seller = &mut self.account_mut(&terms.seller).settled;
        seller.sales += 1;
        seller.received_minor = seller.received_minor.saturating_add(paid);
    }

    fn signing_key_of(&self, wallet_id: &WalletId) -> Result<[u8; 32], Error> {
        self.book
            .wallet(wallet_id)
            .map(|a| a.credential.signing_key)
            .ok_or(Error::Peer(PeerError::NotAParty))
    }

    /// The terms of a transfer, from the office's files or from earlier in the same upload.
    fn terms_of(&self, transfer_id: &TransferId, upload: &[Checked]) -> Option<Terms> {
        self.book
            .transfer(transfer_id)
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
            .or_else(|| self.book.transfer(transfer_id).and_then(|t| t.agreement))
    }

    /// Checks one record of the news. In a forked upload (a rolled-back wallet uploading its
    /// history again) a record about a transfer the office settled and pruned is ignored: the
    /// office's book has nothing left to check it against, and the fork is the evidence.
    fn check_record(
        &self,
        own: &Credential,
        logged: &LoggedRecord,
        earlier: &[Checked],
        forked: bool,
    ) -> Result<Checked, Error> {
        let checked = self.check_record_against_book(own, logged, earlier, forked);
        match checked {
            Err(Error::Peer(PeerError::Inconsistent)) if forked => {
                let unknown = record_transfer(&logged.record)
                    .is_some_and(|id| self.terms_of(&id, earlier).is_none());
                if unknown {
                    return Ok(Checked::Ignored);
                }
                checked
            }
            _ => checked,
        }
    }

    fn check_record_against_book(
        &self,
        own: &Credential,
        logged: &LoggedRecord,
        earlier: &[Checked],
        forked: bool,
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
                let account = self.book.wallet(&wallet_id).ok_or(Misuse::UnknownWallet)?;
                let stored =
                    self.book
                        .charge(&wallet_id, voucher.charge_seq, account.charges_issued);
                // A voucher already applied has had its record pruned; the office's signature
                // on it (checked above) says it issued it.
                let pruned = stored.is_none()
                    && voucher.charge_seq >= 1
                    && voucher.charge_seq <= account.applied_charge_seq;
                let issued = stored.is_some_and(|v| v == voucher) || pruned;
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
                if forked && self.pruned_number(&terms, agreement) {
                    return Ok(Checked::Ignored);
                }
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
                if forked && self.pruned_number(terms, agreement) {
                    // Either this purchase again (settled and pruned) or the same number used
                    // twice: the fork already blocks the wallet, and a seller's upload of a
                    // second use shows the double spend.
                    return Ok(Checked::Ignored);
                }
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

    fn apply_checked(
        &mut self,
        wallet_id: WalletId,
        item: Checked,
        postings: &mut Vec<Posting>,
        flags: &mut Vec<Flag>,
        touched: &mut BTreeSet<WalletId>,
        cases: &mut Vec<Containment>,
    ) {
        match item {
            Checked::Ignored => {}
            Checked::Charged(voucher) => {
                let account = self.account_mut(&wallet_id);
                account.applied_charge_seq = account.applied_charge_seq.max(voucher.charge_seq);
                // Applied: the reply carries it no more, and a log that shows it again is
                // checked against the office's signature.
                self.book.remove_charge(wallet_id, voucher.charge_seq);
            }
            Checked::SellerPending(terms) => {
                self.book.transfer_entry(&terms);
                self.account_mut(&wallet_id).open.insert(terms.transfer_id);
            }
            Checked::SellerCommitted(transfer_id, agreement) => {
                let Some(terms) = self.book.transfer(&transfer_id).map(|t| t.terms) else {
                    return;
                };
                self.note_agreement(&terms, &agreement, flags);
                // A commit logged after the office voided an abandoned transfer is flagged and
                // not posted: the buyer already has its value back.
                if self.decide(&terms, Outcome::Posted, flags) {
                    self.post(&terms, postings, flags, touched);
                } else if self.voided_by_seller(&transfer_id) {
                    // Its own log voided the sale before and commits it now: rolled back.
                    self.contradicted_by_seller(&terms, cases);
                }
            }
            Checked::SellerVoided(transfer_id) => {
                let Some(terms) = self.book.transfer(&transfer_id).map(|t| t.terms) else {
                    return;
                };
                if !self.decide(&terms, Outcome::Voided, flags) {
                    // The office holds the seller's signed commit (from its own log or the
                    // buyer's): the seller voided a sale it signed.
                    self.contradicted_by_seller(&terms, cases);
                }
            }
            Checked::SellerComplete(transfer_id) => {
                if let Some(file) = self.book.transfer_mut(&transfer_id) {
                    file.seller_complete = true;
                }
                self.account_mut(&wallet_id).open.remove(&transfer_id);
            }
            Checked::BuyerPrepared(terms, agreement) => {
                self.note_agreement(&terms, &agreement, flags);
                let file = self.book.transfer_entry(&terms);
                file.buyer_prepared = true;
                if file.buyer_outcome.is_none() {
                    self.account_mut(&wallet_id).open.insert(terms.transfer_id);
                }
                if self
                    .book
                    .wallet(&terms.buyer)
                    .is_some_and(|a| a.blocked_at_ms.is_some())
                {
                    flags.push(Flag::BlockedWalletTransacted {
                        wallet: terms.buyer,
                        transfer_id: terms.transfer_id,
                    });
                }
            }
            Checked::BuyerFinished(transfer_id, outcome) => {
                let Some(terms) = self.book.transfer(&transfer_id).map(|t| t.terms) else {
                    return;
                };
                // The first outcome the buyer reported stays: a later, different one is a
                // contradiction in the buyer's own log.
                let reported = self
                    .book
                    .transfer_mut(&transfer_id)
                    .map(|file| *file.buyer_outcome.get_or_insert(outcome));
                self.account_mut(&wallet_id).open.remove(&transfer_id);
                if outcome == Outcome::Posted {
                    // The buyer holds the seller's signed commit (checked in pass 1): the seller
                    // committed and the buyer's wallet paid. A void the office recorded before
                    // cannot undo that: it came from a seller log rolled back to before its
                    // commit, or from the office's resolution of an abandoned transfer that the
                    // buyer never applied (it had the commit first). The contradiction is
                    // flagged and the payment posted all the same, so the ledger agrees with the
                    // buyer's wallet; the seller's account takes what its own commit promised.
                    // Not so for a buyer that reported the purchase voided before: its value
                    // came back to it, and its log now contradicts itself (an edited or
                    // rolled-back buyer).
                    let consistent = self.decide(&terms, Outcome::Posted, flags);
                    let over_void = reported == Some(Outcome::Posted)
                        && !crate::reverts::reverted(crate::reverts::BUYER_COMMIT_POSTS_OVER_VOID);
                    if consistent || over_void {
                        self.post(&terms, postings, flags, touched);
                    }
                    if !consistent && self.voided_by_seller(&transfer_id) {
                        // The seller's log voided a sale whose commit it signed: the buyer's
                        // copy of the commit is the evidence. Contained like a buyer's cheat.
                        self.contradicted_by_seller(&terms, cases);
                    }
                } else if self.decision(&transfer_id) == Some(Outcome::Posted) {
                    flags.push(Flag::ConflictingOutcome { transfer_id });
                }
            }
        }
    }

    fn note_agreement(&mut self, terms: &Terms, agreement: &Agreement, flags: &mut Vec<Flag>) {
        let spend_seq = agreement.buyer_spend_seq;
        match self.book.agreement(&terms.buyer, spend_seq) {
            Some(existing) if existing != terms.transfer_id => {
                let first = self.book.transfer(&existing).and_then(|t| {
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
            None if self.pruned_number(terms, agreement)
                && !crate::reverts::reverted(crate::reverts::SETTLED_DIGEST_CHECKED) =>
            {
                // The number was used on a transfer that settled and was pruned: this is a
                // second use. (Honest logs never name a settled transfer again, and a forked
                // upload's records about pruned numbers were set aside in the check.)
                flags.push(Flag::PaymentNumberReused {
                    wallet: terms.buyer,
                    spend_seq,
                    second: AgreementEvidence {
                        terms: *terms,
                        agreement: *agreement,
                    },
                });
            }
            None => {
                self.book
                    .insert_agreement(terms.buyer, spend_seq, terms.transfer_id);
            }
        }
        let file = self.book.transfer_entry(terms);
        if file.agreement.is_none() {
            file.agreement = Some(*agreement);
        }
    }

    /// The seller's log contradicts a sale it signed: evidence against the seller. The office
    /// owes it nothing more for that sale (no resolution, which its log would refuse as
    /// contradicting it), and contains it.
    fn contradicted_by_seller(&mut self, terms: &Terms, cases: &mut Vec<Containment>) {
        if let Some(file) = self.book.transfer_mut(&terms.transfer_id) {
            file.seller_complete = true;
        }
        if let Some(account) = self.book.wallet_mut(&terms.seller) {
            account.open.remove(&terms.transfer_id);
        }
        cases.push((
            terms.seller,
            CaseReason::VoidedSignedSale,
            Some(terms.transfer_id),
        ));
    }

    /// Whether the void the office recorded for a transfer came from the seller's log (not from
    /// the office's own resolution of an abandoned transfer).
    fn voided_by_seller(&self, transfer_id: &TransferId) -> bool {
        self.book.transfer(transfer_id).is_some_and(|file| {
            file.seller_decision == Some(Outcome::Voided) && !file.voided_by_office
        })
    }

    /// Records the decision; false (and a flag) when it contradicts the one known.
    pub(super) fn decide(
        &mut self,
        terms: &Terms,
        outcome: Outcome,
        flags: &mut Vec<Flag>,
    ) -> bool {
        let file = self.book.transfer_entry(terms);
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
        if let Some(account) = self.book.wallet_mut(&terms.seller) {
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
        let file = self.book.transfer_entry(terms);
        if file.posted {
            return;
        }
        file.posted = true;
        let amount = i128::from(terms.amount.minor());
        for (wallet, delta) in [(terms.buyer, -amount), (terms.seller, amount)] {
            if let Some(account) = self.book.wallet_mut(&wallet) {
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
        if let Some(account) = self.book.wallet(&wallet_id) {
            for transfer_id in &account.open {
                let Some(file) = self.book.transfer(transfer_id) else {
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
            vouchers = pending_voucher_seqs(account)
                .filter_map(|seq| {
                    self.book
                        .charge(&wallet_id, seq, account.charges_issued)
                        .copied()
                })
                .collect();
        }
        SyncReply {
            wallet_id,
            through_seq,
            through_hash,
            resolutions,
            vouchers,
            blocked: self.book.blocked_ids(),
            credential,
            signature: [0; 64],
        }
        .sign(&self.keys)
    }
}

/// The transfer a log record names, if any.
fn record_transfer(record: &Record) -> Option<TransferId> {
    match record {
        Record::SellerPending { terms, .. } | Record::BuyerPrepared { terms, .. } => {
            Some(terms.transfer_id)
        }
        Record::SellerCommitted { transfer_id, .. }
        | Record::SellerVoided { transfer_id }
        | Record::SellerComplete { transfer_id }
        | Record::BuyerPosted { transfer_id, .. }
        | Record::BuyerVoided { transfer_id } => Some(*transfer_id),
        Record::Resolved { resolution } => Some(resolution.transfer_id),
        _ => None,
    }
}

/// The charge numbers a sync reply carries: those issued and not yet applied, oldest first, at
/// most [`REPLY_VOUCHERS_MAX`].
pub(super) fn pending_voucher_seqs(account: &WalletAccount) -> impl Iterator<Item = u64> {
    let first = account.applied_charge_seq.saturating_add(1);
    (first..=account.charges_issued).take(REPLY_VOUCHERS_MAX)
}
