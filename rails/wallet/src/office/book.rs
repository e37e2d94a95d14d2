//! What the money office remembers, as separate records: one per wallet, one per transfer, one
//! per payment number a buyer signed, one per charge voucher, a small header, and the list of
//! the most recently blocked wallets. Each record's encoding starts with its format version.
//!
//! A `Book` holds either all of them (the in-memory [`super::MoneyOffice`]) or only those one
//! operation loaded (the operator's load plan, `crate::operator`). Reading a record that a
//! partial book did not load answers "absent" and is noted (`Book::missed`): the operator then
//! refuses to commit what the rules decided, since they decided on a view that was not complete.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::codec::{Reader, Writer};
use crate::credential::Credential;
use crate::error::Malformed;
use crate::ids::{Millis, TransferId, WalletId};
use crate::sync::{ChargeVoucher, REPLY_BLOCKED_MAX};
use crate::terms::{Agreement, Terms};
use crate::wire::Outcome;

/// Format version of a wallet record (2: with the containment case; 3: with the digest of its
/// settled, pruned transfers).
pub const WALLET_RECORD_VERSION: u32 = 3;
/// Format version of a transfer record (2: says whether the office itself voided it).
pub const TRANSFER_RECORD_VERSION: u32 = 2;
/// Most settled payment numbers above a wallet's settled floor the digest holds. A number
/// settles above the floor only while an older purchase of the wallet is still open; past this
/// many, transfers wait unpruned until the floor catches up, so the digest stays bounded.
pub const SETTLED_ABOVE_MAX: usize = 256;
/// Format version of an agreement (payment number) record.
pub const AGREEMENT_RECORD_VERSION: u32 = 1;
/// Format version of a charge voucher record.
pub const CHARGE_RECORD_VERSION: u32 = 1;
/// Format version of the office header.
pub const HEADER_RECORD_VERSION: u32 = 1;
/// Format version of the blocked-wallet list.
pub const BLOCKED_RECORD_VERSION: u32 = 1;

/// One record of the office's book, named by what it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BookKey {
    /// The office header: credential validity and the number of wallets.
    Header,
    /// The most recently blocked wallets (what every sync reply lists).
    Blocked,
    /// One wallet's account.
    Wallet(WalletId),
    /// One transfer's file.
    Transfer(TransferId),
    /// A buyer's payment number and the transfer it was first signed for.
    Agreement(WalletId, u64),
    /// A charge voucher: the wallet and the charge number.
    Charge(WalletId, u64),
}

/// What the office keeps per wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WalletAccount {
    pub(crate) credential: Credential,
    pub(crate) blocked_at_ms: Option<Millis>,
    /// The last log record reconciled: seq and hash.
    pub(crate) head: Option<(u64, [u8; 32])>,
    /// The office's view of the wallet's value, in minor units of its currency (negative: it
    /// overspent).
    pub(crate) shadow_minor: i128,
    /// Vouchers issued, numbered 1..=charges_issued (each its own record).
    pub(crate) charges_issued: u64,
    pub(crate) applied_charge_seq: u64,
    /// Paid out by this wallet, as seen in other wallets' logs, since its own last upload, in
    /// minor units.
    pub(crate) spent_unsynced_minor: u64,
    pub(crate) reissued: bool,
    pub(crate) remainder_released: bool,
    /// Transfers the office still waits on for this wallet.
    pub(crate) open: BTreeSet<TransferId>,
    /// The case the office opened when it blocked the wallet on evidence of a cheat.
    pub(crate) case: Option<Case>,
    /// What the office still knows of the wallet's settled transfers once their records are
    /// pruned.
    pub(crate) settled: SettledDigest,
}

/// What detection still needs of a wallet's settled transfers after their records (transfer
/// files and payment-number records) are pruned: which of its payment numbers are used up, and
/// totals for the operator. Together with the log head (seq and hash of the last record
/// reconciled, which catches a fork) and the office's view of its value (which catches an
/// overspend), it stands in for the pruned records. Its size is bounded: a floor, at most
/// [`SETTLED_ABOVE_MAX`] numbers above it, and four counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettledDigest {
    /// Every payment number from 1 to this one is settled and its records pruned.
    pub spend_floor: u64,
    /// Payment numbers above the floor that are settled and pruned (an older purchase is still
    /// open).
    pub spend_above: BTreeSet<u64>,
    /// Settled purchases pruned.
    pub purchases: u64,
    /// Settled sales pruned.
    pub sales: u64,
    /// Paid out by the pruned purchases that posted, in minor units.
    pub paid_minor: u64,
    /// Received by the pruned sales that posted, in minor units.
    pub received_minor: u64,
}

impl SettledDigest {
    /// Whether payment number `spend_seq` was used on a transfer that settled and was pruned.
    pub fn is_settled(&self, spend_seq: u64) -> bool {
        spend_seq <= self.spend_floor || self.spend_above.contains(&spend_seq)
    }

    /// Whether one more number may settle: always at the floor, above it while there is room.
    pub(crate) fn has_room(&self, spend_seq: u64) -> bool {
        spend_seq == self.spend_floor + 1 || self.spend_above.len() < SETTLED_ABOVE_MAX
    }

    /// Notes payment number `spend_seq` settled; the floor rises over every number now settled.
    pub(crate) fn settle(&mut self, spend_seq: u64) {
        if spend_seq <= self.spend_floor {
            return;
        }
        self.spend_above.insert(spend_seq);
        while self.spend_above.remove(&(self.spend_floor + 1)) {
            self.spend_floor += 1;
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.spend_floor).u32(self.spend_above.len() as u32);
        for seq in &self.spend_above {
            w.u64(*seq);
        }
        w.u64(self.purchases)
            .u64(self.sales)
            .u64(self.paid_minor)
            .u64(self.received_minor);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<SettledDigest, Malformed> {
        let spend_floor = r.u64()?;
        let count = read_count(r, 8)?;
        if count > SETTLED_ABOVE_MAX {
            return Err(Malformed::TooLong);
        }
        let mut spend_above = BTreeSet::new();
        for _ in 0..count {
            let seq = r.u64()?;
            if seq <= spend_floor + 1 || !spend_above.insert(seq) {
                return Err(Malformed::InvalidField);
            }
        }
        Ok(SettledDigest {
            spend_floor,
            spend_above,
            purchases: r.u64()?,
            sales: r.u64()?,
            paid_minor: r.u64()?,
            received_minor: r.u64()?,
        })
    }
}

/// What made the office block a wallet on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaseReason {
    /// It signed two agreements with one payment number (a rolled-back wallet spent twice).
    DoubleSpend,
    /// Its upload does not contain the log head it uploaded before (it was rolled back).
    ForkedLog,
    /// A payment it made took the office's view of its value below zero.
    Overspent,
    /// As a seller, its log voided a sale whose commit it had signed (it was rolled back to
    /// before its commit): the buyer's copy of the commit is the evidence.
    VoidedSignedSale,
}

impl CaseReason {
    #[cfg(feature = "operator")]
    fn code(self) -> u8 {
        match self {
            CaseReason::DoubleSpend => 1,
            CaseReason::ForkedLog => 2,
            CaseReason::Overspent => 3,
            CaseReason::VoidedSignedSale => 4,
        }
    }

    #[cfg(feature = "operator")]
    fn from_code(code: u8) -> Result<CaseReason, Malformed> {
        match code {
            1 => Ok(CaseReason::DoubleSpend),
            2 => Ok(CaseReason::ForkedLog),
            3 => Ok(CaseReason::Overspent),
            4 => Ok(CaseReason::VoidedSignedSale),
            _ => Err(Malformed::InvalidField),
        }
    }

    /// In words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            CaseReason::DoubleSpend => {
                "spent the same value twice (signed two payments with one payment number)"
            }
            CaseReason::ForkedLog => "uploaded a log that was rolled back",
            CaseReason::Overspent => "paid out more than it held",
            CaseReason::VoidedSignedSale => {
                "voided a sale whose commit it had signed (its log was rolled back)"
            }
        }
    }

    /// A short name for machines (`double_spend`, `forked_log`, `overspent`,
    /// `voided_signed_sale`).
    pub fn name(self) -> &'static str {
        match self {
            CaseReason::DoubleSpend => "double_spend",
            CaseReason::ForkedLog => "forked_log",
            CaseReason::Overspent => "overspent",
            CaseReason::VoidedSignedSale => "voided_signed_sale",
        }
    }
}

/// The operator's decision on a containment case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaseDecision {
    /// The holder cheated: the wallet stays blocked for good and is never renewed.
    Confirmed,
    /// The evidence is explained (the operator restored the phone itself, say): the block is
    /// lifted and the wallet is renewed at its next sync. New evidence opens a new case.
    Dismissed,
}

impl CaseDecision {
    #[cfg(feature = "operator")]
    fn code(self) -> u8 {
        match self {
            CaseDecision::Confirmed => 1,
            CaseDecision::Dismissed => 2,
        }
    }

    #[cfg(feature = "operator")]
    fn from_code(code: u8) -> Result<Option<CaseDecision>, Malformed> {
        match code {
            0 => Ok(None),
            1 => Ok(Some(CaseDecision::Confirmed)),
            2 => Ok(Some(CaseDecision::Dismissed)),
            _ => Err(Malformed::InvalidField),
        }
    }

    /// A short name (`confirmed`, `dismissed`).
    pub fn name(self) -> &'static str {
        match self {
            CaseDecision::Confirmed => "confirmed",
            CaseDecision::Dismissed => "dismissed",
        }
    }
}

/// A containment case: the office blocked a wallet on the first evidence of a cheat; the
/// evidence itself is in the fraud flags raised with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// The first evidence.
    pub reason: CaseReason,
    /// When the office blocked the wallet for it.
    pub opened_at_ms: Millis,
    /// The transfer that showed it, if one did.
    pub transfer_id: Option<TransferId>,
    /// The operator's decision and when it was made; `None` while the case is open.
    pub decision: Option<(CaseDecision, Millis)>,
}

impl Case {
    #[cfg(feature = "operator")]
    fn write(&self, w: &mut Writer) {
        w.u8(self.reason.code()).u64(self.opened_at_ms);
        match &self.transfer_id {
            Some(id) => {
                w.u8(1).raw(&id.0);
            }
            None => {
                w.u8(0);
            }
        }
        match self.decision {
            Some((decision, at)) => {
                w.u8(decision.code()).u64(at);
            }
            None => {
                w.u8(0);
            }
        }
    }

    #[cfg(feature = "operator")]
    fn read(r: &mut Reader<'_>) -> Result<Case, Malformed> {
        let reason = CaseReason::from_code(r.u8()?)?;
        let opened_at_ms = r.u64()?;
        let transfer_id = match r.u8()? {
            0 => None,
            1 => Some(TransferId(r.array()?)),
            _ => return Err(Malformed::InvalidField),
        };
        let decision = match CaseDecision::from_code(r.u8()?)? {
            Some(decision) => Some((decision, r.u64()?)),
            None => None,
        };
        Ok(Case {
            reason,
            opened_at_ms,
            transfer_id,
            decision,
        })
    }
}

impl WalletAccount {
    pub(crate) fn new(credential: Credential) -> WalletAccount {
        WalletAccount {
            credential,
            blocked_at_ms: None,
            head: None,
            shadow_minor: 0,
            charges_issued: 0,
            applied_charge_seq: 0,
            spent_unsynced_minor: 0,
            reissued: false,
            remainder_released: false,
            open: BTreeSet::new(),
            case: None,
            settled: SettledDigest::default(),
        }
    }

    #[cfg(feature = "operator")]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(WALLET_RECORD_VERSION).raw(&self.credential.encode());
        write_option_u64(&mut w, self.blocked_at_ms);
        match self.head {
            Some((seq, hash)) => {
                w.u8(1).u64(seq).raw(&hash);
            }
            None => {
                w.u8(0);
            }
        }
        w.raw(&self.shadow_minor.to_be_bytes())
            .u64(self.charges_issued)
            .u64(self.applied_charge_seq)
            .u64(self.spent_unsynced_minor)
            .u8(u8::from(self.reissued))
            .u8(u8::from(self.remainder_released));
        w.u32(self.open.len() as u32);
        for id in &self.open {
            w.raw(&id.0);
        }
        match &self.case {
            Some(case) => {
                w.u8(1);
                case.write(&mut w);
            }
            None => {
                w.u8(0);
            }
        }
        self.settled.write(&mut w);
        w.finish()
    }

    #[cfg(feature = "operator")]
    pub(crate) fn decode(bytes: &[u8]) -> Result<WalletAccount, Malformed> {
        let mut r = Reader::new(bytes);
        let version = read_version(&mut r, WALLET_RECORD_VERSION)?;
        let credential = Credential::read(&mut r)?;
        let blocked_at_ms = read_option_u64(&mut r)?;
        let head = match r.u8()? {
            0 => None,
            1 => Some((r.u64()?, r.array()?)),
            _ => return Err(Malformed::InvalidField),
        };
        let shadow_minor = i128::from_be_bytes(r.array()?);
        let charges_issued = r.u64()?;
        let applied_charge_seq = r.u64()?;
        let spent_unsynced_minor = r.u64()?;
        let reissued = read_bool(&mut r)?;
        let remainder_released = read_bool(&mut r)?;
        let mut open = BTreeSet::new();
        for _ in 0..read_count(&mut r, TransferId::BYTES)? {
            open.insert(TransferId(r.array()?));
        }
        // Version 1 records were written before the office opened cases.
        let case = match (version, r.remaining()) {
            (1, _) => None,
            _ => match r.u8()? {
                0 => None,
                1 => Some(Case::read(&mut r)?),
                _ => return Err(Malformed::InvalidField),
            },
        };
        // Version 3 added the digest of settled, pruned transfers; before, nothing was pruned.
        let settled = match version {
            1 | 2 => SettledDigest::default(),
            _ => SettledDigest::read(&mut r)?,
        };
        r.finish()?;
        Ok(WalletAccount {
            credential,
            blocked_at_ms,
            head,
            shadow_minor,
            charges_issued,
            applied_charge_seq,
            spent_unsynced_minor,
            reissued,
            remainder_released,
            open,
            case,
            settled,
        })
    }
}

/// What the office knows about one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TransferFile {
    pub(crate) terms: Terms,
    pub(crate) agreement: Option<Agreement>,
    pub(crate) seller_decision: Option<Outcome>,
    pub(crate) seller_complete: bool,
    pub(crate) buyer_prepared: bool,
    pub(crate) buyer_outcome: Option<Outcome>,
    pub(crate) posted: bool,
    /// The office itself voided it (its seller was blocked and left the buyer prepared), rather
    /// than the seller's log.
    pub(crate) voided_by_office: bool,
}

impl TransferFile {
    pub(crate) fn new(terms: Terms) -> TransferFile {
        TransferFile {
            terms,
            agreement: None,
            seller_decision: None,
            seller_complete: false,
            buyer_prepared: false,
            buyer_outcome: None,
            posted: false,
            voided_by_office: false,
        }
    }

    /// The fields after the version, shared with the whole-book encoding of earlier releases.
    pub(crate) fn write(&self, w: &mut Writer) {
        self.terms.write(w);
        match &self.agreement {
            Some(agreement) => {
                w.u8(1);
                agreement.write(w);
            }
            None => {
                w.u8(0);
            }
        }
        w.u8(self.seller_decision.map_or(0, Outcome::code))
            .u8(u8::from(self.seller_complete))
            .u8(u8::from(self.buyer_prepared))
            .u8(self.buyer_outcome.map_or(0, Outcome::code))
            .u8(u8::from(self.posted));
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TransferFile, Malformed> {
        let terms = Terms::read(r)?;
        let agreement = match r.u8()? {
            0 => None,
            1 => Some(Agreement::read(r)?),
            _ => return Err(Malformed::InvalidField),
        };
        Ok(TransferFile {
            terms,
            agreement,
            seller_decision: read_option_outcome(r)?,
            seller_complete: read_bool(r)?,
            buyer_prepared: read_bool(r)?,
            buyer_outcome: read_option_outcome(r)?,
            posted: read_bool(r)?,
            voided_by_office: false,
        })
    }

    #[cfg(feature = "operator")]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(TRANSFER_RECORD_VERSION);
        self.write(&mut w);
        w.u8(u8::from(self.voided_by_office));
        w.finish()
    }

    #[cfg(feature = "operator")]
    pub(crate) fn decode(bytes: &[u8]) -> Result<TransferFile, Malformed> {
        let mut r = Reader::new(bytes);
        let version = read_version(&mut r, TRANSFER_RECORD_VERSION)?;
        let mut file = TransferFile::read(&mut r)?;
        if version >= 2 {
            file.voided_by_office = read_bool(&mut r)?;
        }
        r.finish()?;
        Ok(file)
    }
}

#[cfg(feature = "operator")]
/// The transfer a buyer's payment number was first seen on.
pub(crate) fn encode_agreement(transfer_id: &TransferId) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(AGREEMENT_RECORD_VERSION).raw(&transfer_id.0);
    w.finish()
}

#[cfg(feature = "operator")]
pub(crate) fn decode_agreement(bytes: &[u8]) -> Result<TransferId, Malformed> {
    let mut r = Reader::new(bytes);
    read_version(&mut r, AGREEMENT_RECORD_VERSION)?;
    let transfer_id = TransferId(r.array()?);
    r.finish()?;
    Ok(transfer_id)
}

#[cfg(feature = "operator")]
pub(crate) fn encode_charge(voucher: &ChargeVoucher) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(CHARGE_RECORD_VERSION);
    voucher.write(&mut w);
    w.finish()
}

#[cfg(feature = "operator")]
pub(crate) fn decode_charge(bytes: &[u8]) -> Result<ChargeVoucher, Malformed> {
    let mut r = Reader::new(bytes);
    read_version(&mut r, CHARGE_RECORD_VERSION)?;
    let voucher = ChargeVoucher::read(&mut r)?;
    r.finish()?;
    Ok(voucher)
}

/// What the whole office shares: how long credentials are valid, and how many wallets it has
/// issued (bounded by [`super::OFFICE_WALLETS_MAX`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) credential_validity_ms: u64,
    pub(crate) wallets: u64,
}

impl Header {
    #[cfg(feature = "operator")]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(HEADER_RECORD_VERSION)
            .u64(self.credential_validity_ms)
            .u64(self.wallets);
        w.finish()
    }

    #[cfg(feature = "operator")]
    pub(crate) fn decode(bytes: &[u8]) -> Result<Header, Malformed> {
        let mut r = Reader::new(bytes);
        read_version(&mut r, HEADER_RECORD_VERSION)?;
        let header = Header {
            credential_validity_ms: r.u64()?,
            wallets: r.u64()?,
        };
        r.finish()?;
        Ok(header)
    }
}

/// The most recently blocked wallets, newest first, at most [`REPLY_BLOCKED_MAX`]: exactly what
/// a sync reply lists, kept up to date by every block so that no sync scans all wallets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockedList {
    /// (blocked at, wallet), in descending order.
    pub(crate) newest: Vec<(Millis, WalletId)>,
}

impl BlockedList {
    /// Adds a block; wallets are blocked once and never unblocked, so keeping the largest
    /// [`REPLY_BLOCKED_MAX`] entries is the same as sorting all blocked wallets every time.
    pub(crate) fn note(&mut self, at: Millis, wallet: WalletId) {
        let entry = (at, wallet);
        if self.newest.contains(&entry) {
            return;
        }
        let position = self.newest.partition_point(|existing| *existing > entry);
        if position < REPLY_BLOCKED_MAX {
            self.newest.insert(position, entry);
            self.newest.truncate(REPLY_BLOCKED_MAX);
        }
    }

    /// Takes a wallet off the list (the operator dismissed its case).
    pub(crate) fn remove(&mut self, wallet: &WalletId) {
        self.newest.retain(|(_, id)| id != wallet);
    }

    pub(crate) fn ids(&self) -> Vec<WalletId> {
        self.newest.iter().map(|(_, id)| *id).collect()
    }

    #[cfg(feature = "operator")]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(BLOCKED_RECORD_VERSION).u32(self.newest.len() as u32);
        for (at, wallet) in &self.newest {
            w.u64(*at).raw(&wallet.0);
        }
        w.finish()
    }

    #[cfg(feature = "operator")]
    pub(crate) fn decode(bytes: &[u8]) -> Result<BlockedList, Malformed> {
        let mut r = Reader::new(bytes);
        read_version(&mut r, BLOCKED_RECORD_VERSION)?;
        let count = read_count(&mut r, 8 + WalletId::BYTES)?;
        if count > REPLY_BLOCKED_MAX {
            return Err(Malformed::TooLong);
        }
        let mut newest = Vec::with_capacity(count);
        for _ in 0..count {
            newest.push((r.u64()?, WalletId(r.array()?)));
        }
        r.finish()?;
        if newest.windows(2).any(|pair| pair[0] <= pair[1]) {
            return Err(Malformed::InvalidField);
        }
        Ok(BlockedList { newest })
    }
}

/// A record of a partial book: `None` when it was read and is absent.
type Slot<T> = Option<T>;

/// The office's records, all of them or those one operation loaded.
#[derive(Clone, Debug)]
pub(crate) struct Book {
    /// True when the book holds every record (a key not held is absent); false when it holds
    /// only what was loaded (a key not held was not read).
    whole: bool,
    pub(crate) header: Option<Slot<Header>>,
    pub(crate) blocked: Option<Slot<BlockedList>>,
    pub(crate) wallets: BTreeMap<WalletId, Slot<WalletAccount>>,
    pub(crate) transfers: BTreeMap<TransferId, Slot<TransferFile>>,
    pub(crate) agreements: BTreeMap<(WalletId, u64), Slot<TransferId>>,
    pub(crate) charges: BTreeMap<(WalletId, u64), Slot<ChargeVoucher>>,
    /// The first record the rules asked for that a partial book did not load.
    missed: RefCell<Option<BookKey>>,
}

impl PartialEq for Book {
    fn eq(&self, other: &Book) -> bool {
        self.whole == other.whole
            && self.header == other.header
            && self.blocked == other.blocked
            && self.wallets == other.wallets
            && self.transfers == other.transfers
            && self.agreements == other.agreements
            && self.charges == other.charges
    }
}

impl Eq for Book {}

impl Book {
    /// An empty whole book: a new office.
    pub(crate) fn whole(credential_validity_ms: u64) -> Book {
        Book {
            whole: true,
            header: Some(Some(Header {
                credential_validity_ms,
                wallets: 0,
            })),
            blocked: Some(Some(BlockedList::default())),
            wallets: BTreeMap::new(),
            transfers: BTreeMap::new(),
            agreements: BTreeMap::new(),
            charges: BTreeMap::new(),
            missed: RefCell::new(None),
        }
    }

    #[cfg(feature = "operator")]
    /// A partial book holding nothing yet.
    pub(crate) fn partial() -> Book {
        Book {
            whole: false,
            header: None,
            blocked: None,
            wallets: BTreeMap::new(),
            transfers: BTreeMap::new(),
            agreements: BTreeMap::new(),
            charges: BTreeMap::new(),
            missed: RefCell::new(None),
        }
    }

    pub(crate) fn is_whole(&self) -> bool {
        self.whole
    }

    #[cfg(feature = "operator")]
    /// Declares that this book holds every record (it was read whole).
    pub(crate) fn make_whole(&mut self) {
        self.whole = true;
    }

    #[cfg(feature = "operator")]
    /// The first record the rules read that this partial book did not load.
    pub(crate) fn missed(&self) -> Option<BookKey> {
        *self.missed.borrow()
    }

    #[cfg(feature = "operator")]
    /// Whether `key` is held (loaded, present or absent); a whole book holds every key.
    pub(crate) fn holds(&self, key: &BookKey) -> bool {
        self.whole
            || match key {
                BookKey::Header => self.header.is_some(),
                BookKey::Blocked => self.blocked.is_some(),
                BookKey::Wallet(id) => self.wallets.contains_key(id),
                BookKey::Transfer(id) => self.transfers.contains_key(id),
                BookKey::Agreement(wallet, seq) => self.agreements.contains_key(&(*wallet, *seq)),
                BookKey::Charge(wallet, seq) => self.charges.contains_key(&(*wallet, *seq)),
            }
    }

    fn miss(&self, key: BookKey) {
        if !self.whole {
            let mut missed = self.missed.borrow_mut();
            if missed.is_none() {
                *missed = Some(key);
            }
        }
    }

    fn slot<'a, K: Ord, V>(
        &self,
        map: &'a BTreeMap<K, Slot<V>>,
        id: &K,
        key: BookKey,
    ) -> Option<&'a V> {
        match map.get(id) {
            Some(slot) => slot.as_ref(),
            None => {
                self.miss(key);
                None
            }
        }
    }

    // ------------------------------------------------------------ header and blocked list

    pub(crate) fn header(&self) -> Option<&Header> {
        match &self.header {
            Some(slot) => slot.as_ref(),
            None => {
                self.miss(BookKey::Header);
                None
            }
        }
    }

    pub(crate) fn credential_validity_ms(&self) -> u64 {
        self.header()
            .map_or(0, |header| header.credential_validity_ms)
    }

    pub(crate) fn wallet_count(&self) -> u64 {
        self.header().map_or(0, |header| header.wallets)
    }

    pub(crate) fn blocked_ids(&self) -> Vec<WalletId> {
        match &self.blocked {
            Some(slot) => slot.as_ref().map(BlockedList::ids).unwrap_or_default(),
            None => {
                self.miss(BookKey::Blocked);
                Vec::new()
            }
        }
    }

    pub(crate) fn note_blocked(&mut self, at: Millis, wallet: WalletId) {
        match &mut self.blocked {
            Some(slot) => slot
                .get_or_insert_with(BlockedList::default)
                .note(at, wallet),
            None => self.miss(BookKey::Blocked),
        }
    }

    pub(crate) fn note_unblocked(&mut self, wallet: &WalletId) {
        match &mut self.blocked {
            Some(slot) => {
                if let Some(list) = slot.as_mut() {
                    list.remove(wallet);
                }
            }
            None => self.miss(BookKey::Blocked),
        }
    }

    // ------------------------------------------------------------ wallets

    pub(crate) fn wallet(&self, id: &WalletId) -> Option<&WalletAccount> {
        self.slot(&self.wallets, id, BookKey::Wallet(*id))
    }

    pub(crate) fn wallet_mut(&mut self, id: &WalletId) -> Option<&mut WalletAccount> {
        if !self.wallets.contains_key(id) {
            self.miss(BookKey::Wallet(*id));
            return None;
        }
        self.wallets.get_mut(id).and_then(Option::as_mut)
    }

    /// Registers a new wallet and counts it in the header.
    pub(crate) fn insert_wallet(&mut self, account: WalletAccount) {
        let id = account.credential.wallet_id;
        let fresh = !matches!(self.wallets.get(&id), Some(Some(_)));
        self.wallets.insert(id, Some(account));
        if fresh {
            match &mut self.header {
                Some(Some(header)) => header.wallets += 1,
                _ => self.miss(BookKey::Header),
            }
        }
    }

    /// Every wallet held (in a whole book: every wallet).
    pub(crate) fn wallets(&self) -> impl Iterator<Item = &WalletAccount> {
        self.wallets.values().filter_map(Option::as_ref)
    }

    // ------------------------------------------------------------ transfers

    pub(crate) fn transfer(&self, id: &TransferId) -> Option<&TransferFile> {
        self.slot(&self.transfers, id, BookKey::Transfer(*id))
    }

    pub(crate) fn transfer_mut(&mut self, id: &TransferId) -> Option<&mut TransferFile> {
        if !self.transfers.contains_key(id) {
            self.miss(BookKey::Transfer(*id));
            return None;
        }
        self.transfers.get_mut(id).and_then(Option::as_mut)
    }

    /// The file of the transfer `terms` describe, opened if the office has none.
    pub(crate) fn transfer_entry(&mut self, terms: &Terms) -> &mut TransferFile {
        if !self.transfers.contains_key(&terms.transfer_id) {
            self.miss(BookKey::Transfer(terms.transfer_id));
        }
        self.transfers
            .entry(terms.transfer_id)
            .or_insert(None)
            .get_or_insert_with(|| TransferFile::new(*terms))
    }

    /// Prunes a transfer's file (it settled).
    pub(crate) fn remove_transfer(&mut self, id: &TransferId) {
        remove_slot(self.whole, &mut self.transfers, *id);
    }

    // ------------------------------------------------------------ payment numbers

    /// Prunes a payment number's record (its transfer settled).
    pub(crate) fn remove_agreement(&mut self, buyer: WalletId, spend_seq: u64) {
        remove_slot(self.whole, &mut self.agreements, (buyer, spend_seq));
    }

    pub(crate) fn agreement(&self, buyer: &WalletId, spend_seq: u64) -> Option<TransferId> {
        self.slot(
            &self.agreements,
            &(*buyer, spend_seq),
            BookKey::Agreement(*buyer, spend_seq),
        )
        .copied()
    }

    pub(crate) fn insert_agreement(&mut self, buyer: WalletId, spend_seq: u64, id: TransferId) {
        self.agreements.insert((buyer, spend_seq), Some(id));
    }

    // ------------------------------------------------------------ charge vouchers

    /// Voucher number `seq` of `wallet`, if issued (`issued` is the wallet's count).
    pub(crate) fn charge(
        &self,
        wallet: &WalletId,
        seq: u64,
        issued: u64,
    ) -> Option<&ChargeVoucher> {
        if seq == 0 || seq > issued {
            return None;
        }
        self.slot(
            &self.charges,
            &(*wallet, seq),
            BookKey::Charge(*wallet, seq),
        )
    }

    pub(crate) fn insert_charge(&mut self, voucher: ChargeVoucher) {
        self.charges
            .insert((voucher.wallet_id, voucher.charge_seq), Some(voucher));
    }

    /// Prunes a voucher's record (the wallet's log showed it applied).
    pub(crate) fn remove_charge(&mut self, wallet: WalletId, charge_seq: u64) {
        remove_slot(self.whole, &mut self.charges, (wallet, charge_seq));
    }

    /// Every voucher of `wallet` held, in order.
    pub(crate) fn charges_of(&self, wallet: &WalletId) -> impl Iterator<Item = &ChargeVoucher> {
        self.charges
            .range((*wallet, 0)..=(*wallet, u64::MAX))
            .filter_map(|(_, slot)| slot.as_ref())
    }
}

/// Removes a record: from a whole book outright; in a partial book it stays as loaded-absent,
/// so that the operator writes its deletion. Only a loaded record is removed.
fn remove_slot<K: Ord, V>(whole: bool, map: &mut BTreeMap<K, Slot<V>>, key: K) {
    if whole {
        map.remove(&key);
    } else if let Some(slot) = map.get_mut(&key) {
        *slot = None;
    }
}

// ------------------------------------------------------------ field codecs

#[cfg(feature = "operator")]
fn read_version(r: &mut Reader<'_>, known: u32) -> Result<u32, Malformed> {
    let version = r.u32()?;
    if version == 0 || version > known {
        return Err(Malformed::UnknownVersion(
            u8::try_from(version).unwrap_or(u8::MAX),
        ));
    }
    Ok(version)
}

#[cfg(feature = "operator")]
/// The format version a record's bytes start with, if they are long enough to have one.
pub(crate) fn stored_version(bytes: &[u8]) -> Option<u32> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(head))
}

pub(crate) fn write_option_u64(w: &mut Writer, value: Option<u64>) {
    match value {
        Some(v) => {
            w.u8(1).u64(v);
        }
        None => {
            w.u8(0);
        }
    }
}

pub(crate) fn read_option_u64(r: &mut Reader<'_>) -> Result<Option<u64>, Malformed> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u64()?)),
        _ => Err(Malformed::InvalidField),
    }
}

pub(crate) fn read_option_outcome(r: &mut Reader<'_>) -> Result<Option<Outcome>, Malformed> {
    match r.u8()? {
        0 => Ok(None),
        code => Outcome::from_code(code).map(Some),
    }
}

pub(crate) fn read_bool(r: &mut Reader<'_>) -> Result<bool, Malformed> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Malformed::InvalidField),
    }
}

/// A u32 count of items of at least `item_bytes_min` bytes each, bounded by what is left.
pub(crate) fn read_count(r: &mut Reader<'_>, item_bytes_min: usize) -> Result<usize, Malformed> {
    let count = r.u32()? as usize;
    if count.saturating_mul(item_bytes_min.max(1)) > r.remaining() {
        return Err(Malformed::TooLong);
    }
    Ok(count)
}

#[cfg(all(test, feature = "operator"))]
mod tests {
    use super::*;

    fn wallet(byte: u8) -> WalletId {
        WalletId([byte; 16])
    }

    #[test]
    fn the_blocked_list_keeps_the_newest_in_order_and_ignores_repeats() {
        let mut list = BlockedList::default();
        list.note(5, wallet(1));
        list.note(9, wallet(2));
        list.note(5, wallet(3));
        list.note(9, wallet(2));
        assert_eq!(list.ids(), [wallet(2), wallet(3), wallet(1)]);
        let decoded = BlockedList::decode(&list.encode()).unwrap();
        assert_eq!(decoded, list);
        for index in 0..(REPLY_BLOCKED_MAX as u64 + 10) {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&index.to_be_bytes());
            list.note(100 + index, WalletId(id));
        }
        assert_eq!(list.newest.len(), REPLY_BLOCKED_MAX);
        assert_eq!(list.newest[0].0, 100 + REPLY_BLOCKED_MAX as u64 + 9);
    }

    #[test]
    fn records_refuse_unknown_versions_and_trailing_bytes() {
        let header = Header {
            credential_validity_ms: 7,
            wallets: 3,
        };
        let mut bytes = header.encode();
        assert_eq!(Header::decode(&bytes), Ok(header));
        assert_eq!(stored_version(&bytes), Some(HEADER_RECORD_VERSION));
        bytes.push(0);
        assert_eq!(Header::decode(&bytes), Err(Malformed::TrailingBytes));
        let mut newer = header.encode();
        newer[3] = 2;
        assert_eq!(Header::decode(&newer), Err(Malformed::UnknownVersion(2)));
        let id = TransferId([4; 16]);
        assert_eq!(decode_agreement(&encode_agreement(&id)), Ok(id));
    }

    #[test]
    fn the_settled_digest_raises_its_floor_and_round_trips() {
        let mut digest = SettledDigest::default();
        digest.settle(2);
        digest.settle(4);
        assert_eq!(digest.spend_floor, 0);
        assert!(digest.is_settled(2) && !digest.is_settled(1) && !digest.is_settled(3));
        digest.settle(1);
        assert_eq!(digest.spend_floor, 2);
        digest.settle(3);
        assert_eq!((digest.spend_floor, digest.spend_above.len()), (4, 0));
        digest.settle(6);
        digest.purchases = 5;
        let mut w = Writer::new();
        digest.write(&mut w);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(SettledDigest::read(&mut r), Ok(digest.clone()));
        // A number above the floor that should have been absorbed is refused.
        let mut bad = digest;
        bad.spend_above.insert(5);
        let mut w = Writer::new();
        bad.write(&mut w);
        let bytes = w.finish();
        assert_eq!(
            SettledDigest::read(&mut Reader::new(&bytes)),
            Err(Malformed::InvalidField)
        );
        // Room above the floor is bounded; the floor's next number always fits.
        let mut full = SettledDigest::default();
        for seq in 2..2 + SETTLED_ABOVE_MAX as u64 {
            full.settle(seq);
        }
        assert!(!full.has_room(SETTLED_ABOVE_MAX as u64 + 5));
        assert!(full.has_room(1));
    }

    #[test]
    fn a_partial_book_notes_the_first_read_it_did_not_load() {
        let mut book = Book::partial();
        book.wallets.insert(wallet(1), None);
        assert!(book.wallet(&wallet(1)).is_none());
        assert_eq!(book.missed(), None);
        assert!(book.wallet(&wallet(2)).is_none());
        assert!(book.transfer(&TransferId([1; 16])).is_none());
        assert_eq!(book.missed(), Some(BookKey::Wallet(wallet(2))));
        let whole = Book::whole(1);
        assert!(whole.wallet(&wallet(2)).is_none());
        assert_eq!(whole.missed(), None);
    }
}
