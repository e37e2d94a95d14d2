//! The office's records in the ledger: their keys, their types (each a [`StoredRecord`] with a
//! format version), and reading them into a [`Book`] with the version each was read at.

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

use offpay_ledger::{LedgerStore, Operation, StoreError};
use offpay_operator::record::{RecordError, check_version, corrupt};
use offpay_operator::{Loaded, StoredRecord};

use crate::error::{BookError, Error, Malformed};
use crate::ids::{TransferId, WalletId};
use crate::office::book::{
    AGREEMENT_RECORD_VERSION, BLOCKED_RECORD_VERSION, BlockedList, Book, BookKey,
    CHARGE_RECORD_VERSION, HEADER_RECORD_VERSION, Header, TRANSFER_RECORD_VERSION, TransferFile,
    WALLET_RECORD_VERSION, WalletAccount, decode_agreement, decode_charge, encode_agreement,
    encode_charge, stored_version,
};
use crate::sync::ChargeVoucher;

/// Record namespace of the money office (shared with the whole book of earlier releases, whose
/// keys start with `office-book`).
pub const NAMESPACE: &str = "wallet";
/// Key of the office header.
pub const HEADER_KEY: &str = "office";
/// Key of the list of recently blocked wallets.
pub const BLOCKED_KEY: &str = "blocked";
const WALLET_PREFIX: &str = "wallet:";
const TRANSFER_PREFIX: &str = "transfer:";
const AGREEMENT_PREFIX: &str = "agreement:";
const CHARGE_PREFIX: &str = "charge:";

/// The ledger record key of `key`. Wallet and transfer ids are hex; numbers are zero-padded to
/// 20 digits so that a wallet's vouchers and payment numbers sort in order.
pub fn record_key(key: &BookKey) -> String {
    match key {
        BookKey::Header => HEADER_KEY.to_string(),
        BookKey::Blocked => BLOCKED_KEY.to_string(),
        BookKey::Wallet(id) => format!("{WALLET_PREFIX}{id}"),
        BookKey::Transfer(id) => format!("{TRANSFER_PREFIX}{id}"),
        BookKey::Agreement(wallet, seq) => format!("{AGREEMENT_PREFIX}{wallet}:{seq:020}"),
        BookKey::Charge(wallet, seq) => format!("{CHARGE_PREFIX}{wallet}:{seq:020}"),
    }
}

/// The book key a ledger record key names, if it is one of the office's.
pub fn parse_record_key(text: &str) -> Option<BookKey> {
    fn id(hex: &str) -> Option<[u8; 16]> {
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * index..2 * index + 2)?, 16).ok()?;
        }
        Some(bytes)
    }
    fn numbered(rest: &str) -> Option<(WalletId, u64)> {
        let (wallet, seq) = rest.split_once(':')?;
        if seq.len() != 20 {
            return None;
        }
        Some((WalletId(id(wallet)?), seq.parse().ok()?))
    }
    if text == HEADER_KEY {
        return Some(BookKey::Header);
    }
    if text == BLOCKED_KEY {
        return Some(BookKey::Blocked);
    }
    if let Some(rest) = text.strip_prefix(WALLET_PREFIX) {
        return Some(BookKey::Wallet(WalletId(id(rest)?)));
    }
    if let Some(rest) = text.strip_prefix(TRANSFER_PREFIX) {
        return Some(BookKey::Transfer(TransferId(id(rest)?)));
    }
    if let Some(rest) = text.strip_prefix(AGREEMENT_PREFIX) {
        let (wallet, seq) = numbered(rest)?;
        return Some(BookKey::Agreement(wallet, seq));
    }
    if let Some(rest) = text.strip_prefix(CHARGE_PREFIX) {
        let (wallet, seq) = numbered(rest)?;
        return Some(BookKey::Charge(wallet, seq));
    }
    None
}

/// Reads bytes written by [`StoredRecord::encode`]: versions newer than `R`'s are refused as
/// such, anything else that does not decode is corrupt; both name `key`.
fn decode_stored<R: StoredRecord, T>(
    key: &str,
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, Malformed>,
) -> Result<T, RecordError> {
    if let Some(version) = stored_version(bytes) {
        check_version::<R>(key, version)?;
    }
    decode(bytes).map_err(|error| corrupt::<R>(key, error))
}

macro_rules! stored_record {
    ($type:ty, $version:expr, $encode:expr, $decode:expr) => {
        impl StoredRecord for $type {
            const NAMESPACE: &'static str = NAMESPACE;
            const FORMAT_VERSION: u32 = $version;

            fn encode(&self, _key: &str) -> Result<Vec<u8>, RecordError> {
                Ok($encode(self))
            }

            fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
                decode_stored::<Self, Self>(key, bytes, $decode)
            }
        }
    };
}

/// A payment number's record: the transfer it was first signed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AgreementRecord(pub(crate) TransferId);

/// A charge voucher's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChargeRecord(pub(crate) ChargeVoucher);

stored_record!(
    WalletAccount,
    WALLET_RECORD_VERSION,
    WalletAccount::encode,
    WalletAccount::decode
);
stored_record!(
    TransferFile,
    TRANSFER_RECORD_VERSION,
    TransferFile::encode,
    TransferFile::decode
);
stored_record!(
    Header,
    HEADER_RECORD_VERSION,
    Header::encode,
    Header::decode
);
stored_record!(
    BlockedList,
    BLOCKED_RECORD_VERSION,
    BlockedList::encode,
    BlockedList::decode
);
stored_record!(
    AgreementRecord,
    AGREEMENT_RECORD_VERSION,
    |record: &AgreementRecord| encode_agreement(&record.0),
    |bytes| decode_agreement(bytes).map(AgreementRecord)
);
stored_record!(
    ChargeRecord,
    CHARGE_RECORD_VERSION,
    |record: &ChargeRecord| encode_charge(&record.0),
    |bytes| decode_charge(bytes).map(ChargeRecord)
);

impl From<RecordError> for Error {
    fn from(error: RecordError) -> Error {
        Error::Book(match error {
            RecordError::Corrupt { key, message, .. } => BookError::Corrupt { key, message },
            RecordError::TooNew {
                key, found, known, ..
            } => BookError::Corrupt {
                key,
                message: format!("format version {found}; this release reads up to {known}"),
            },
            RecordError::Store(error) => BookError::Store(error.to_string()),
            other => BookError::Corrupt {
                key: String::new(),
                message: other.to_string(),
            },
        })
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        Error::Book(BookError::Store(error.to_string()))
    }
}

/// Reads `key` into `book`, noting the version read in `versions` (0: absent).
pub(crate) fn read_into(
    store: &mut dyn LedgerStore,
    key: BookKey,
    book: &mut Book,
    versions: &mut BTreeMap<BookKey, u64>,
) -> Result<(), Error> {
    let text = record_key(&key);
    let version = match key {
        BookKey::Header => {
            let loaded = Loaded::<Header>::read(store, &text)?;
            book.header = Some(loaded.value);
            loaded.version
        }
        BookKey::Blocked => {
            let loaded = Loaded::<BlockedList>::read(store, &text)?;
            book.blocked = Some(loaded.value);
            loaded.version
        }
        BookKey::Wallet(id) => {
            let loaded = Loaded::<WalletAccount>::read(store, &text)?;
            if let Some(account) = &loaded.value
                && account.credential.wallet_id != id
            {
                return Err(BookError::Corrupt {
                    key: text,
                    message: "holds another wallet".into(),
                }
                .into());
            }
            book.wallets.insert(id, loaded.value);
            loaded.version
        }
        BookKey::Transfer(id) => {
            let loaded = Loaded::<TransferFile>::read(store, &text)?;
            if let Some(file) = &loaded.value
                && file.terms.transfer_id != id
            {
                return Err(BookError::Corrupt {
                    key: text,
                    message: "holds another transfer".into(),
                }
                .into());
            }
            book.transfers.insert(id, loaded.value);
            loaded.version
        }
        BookKey::Agreement(wallet, seq) => {
            let loaded = Loaded::<AgreementRecord>::read(store, &text)?;
            book.agreements
                .insert((wallet, seq), loaded.value.map(|record| record.0));
            loaded.version
        }
        BookKey::Charge(wallet, seq) => {
            let loaded = Loaded::<ChargeRecord>::read(store, &text)?;
            if let Some(ChargeRecord(voucher)) = &loaded.value
                && (voucher.wallet_id != wallet || voucher.charge_seq != seq)
            {
                return Err(BookError::Corrupt {
                    key: text,
                    message: "holds another voucher".into(),
                }
                .into());
            }
            book.charges
                .insert((wallet, seq), loaded.value.map(|record| record.0));
            loaded.version
        }
    };
    versions.insert(key, version);
    Ok(())
}

/// The write of `value` under `key`, on condition that the record is still at `version`
/// (`None`: unconditionally).
fn put<R: StoredRecord>(
    key: &BookKey,
    version: Option<u64>,
    value: &R,
) -> Result<Operation, Error> {
    let loaded = Loaded::<R> {
        key: record_key(key),
        version: version.unwrap_or(0),
        value: None,
    };
    let operation = loaded.write(value)?;
    Ok(match (operation, version) {
        (Operation::PutRecord(mut write), None) => {
            write.expected_version = None;
            Operation::PutRecord(write)
        }
        (operation, _) => operation,
    })
}

/// The record writes that turn `original` into `book`: every record that changed or is new,
/// each conditional on the version it was read at (a record not read is expected absent).
/// `versions` absent (`None`) writes unconditionally (the migration of a whole book).
pub(crate) fn changed_records(
    original: &Book,
    book: &Book,
    versions: Option<&BTreeMap<BookKey, u64>>,
) -> Result<Vec<Operation>, Error> {
    let version = |key: &BookKey| versions.map(|versions| versions.get(key).copied().unwrap_or(0));
    let mut writes = Vec::new();
    if let Some(Some(header)) = &book.header
        && original.header.as_ref().and_then(Option::as_ref) != Some(header)
    {
        writes.push(put(&BookKey::Header, version(&BookKey::Header), header)?);
    }
    if let Some(Some(blocked)) = &book.blocked
        && original.blocked.as_ref().and_then(Option::as_ref) != Some(blocked)
    {
        writes.push(put(&BookKey::Blocked, version(&BookKey::Blocked), blocked)?);
    }
    for (id, slot) in &book.wallets {
        if let Some(account) = slot
            && original.wallets.get(id).and_then(Option::as_ref) != Some(account)
        {
            let key = BookKey::Wallet(*id);
            writes.push(put(&key, version(&key), account)?);
        }
    }
    for (id, slot) in &book.transfers {
        if let Some(file) = slot
            && original.transfers.get(id).and_then(Option::as_ref) != Some(file)
        {
            let key = BookKey::Transfer(*id);
            writes.push(put(&key, version(&key), file)?);
        }
    }
    for ((wallet, seq), slot) in &book.agreements {
        if let Some(first) = slot
            && original
                .agreements
                .get(&(*wallet, *seq))
                .and_then(Option::as_ref)
                != Some(first)
        {
            let key = BookKey::Agreement(*wallet, *seq);
            writes.push(put(&key, version(&key), &AgreementRecord(*first))?);
        }
    }
    for ((wallet, seq), slot) in &book.charges {
        if let Some(voucher) = slot
            && original
                .charges
                .get(&(*wallet, *seq))
                .and_then(Option::as_ref)
                != Some(voucher)
        {
            let key = BookKey::Charge(*wallet, *seq);
            writes.push(put(&key, version(&key), &ChargeRecord(*voucher))?);
        }
    }
    // Records pruned: loaded present, now absent.
    for (id, slot) in &book.transfers {
        if slot.is_none() && matches!(original.transfers.get(id), Some(Some(_))) {
            writes.push(delete::<TransferFile>(&BookKey::Transfer(*id), version)?);
        }
    }
    for (key, slot) in &book.agreements {
        if slot.is_none() && matches!(original.agreements.get(key), Some(Some(_))) {
            writes.push(delete::<AgreementRecord>(
                &BookKey::Agreement(key.0, key.1),
                version,
            )?);
        }
    }
    for (key, slot) in &book.charges {
        if slot.is_none() && matches!(original.charges.get(key), Some(Some(_))) {
            writes.push(delete::<ChargeRecord>(
                &BookKey::Charge(key.0, key.1),
                version,
            )?);
        }
    }
    Ok(writes)
}

/// The deletion of a record that was loaded present, on condition that it is still at the
/// version read.
fn delete<R: StoredRecord>(
    key: &BookKey,
    version: impl Fn(&BookKey) -> Option<u64>,
) -> Result<Operation, Error> {
    let Some(read) = version(key) else {
        // A whole book written unconditionally holds no deletions.
        return Err(BookError::OutsidePlan {
            key: record_key(key),
        }
        .into());
    };
    Ok(Loaded::<R> {
        key: record_key(key),
        version: read,
        value: None,
    }
    .delete())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_round_trip() {
        let wallet = WalletId([0xab; 16]);
        for key in [
            BookKey::Header,
            BookKey::Blocked,
            BookKey::Wallet(wallet),
            BookKey::Transfer(TransferId([1; 16])),
            BookKey::Agreement(wallet, 7),
            BookKey::Charge(wallet, u64::MAX),
        ] {
            let text = record_key(&key);
            assert!(text.len() <= offpay_ledger::RECORD_KEY_LENGTH_MAX);
            assert_eq!(parse_record_key(&text), Some(key), "{text}");
        }
        assert_eq!(parse_record_key("office-book"), None);
        assert_eq!(parse_record_key("office-book:00001"), None);
        assert_eq!(parse_record_key("charge:ab:1"), None);
    }

    #[test]
    fn a_newer_record_is_refused_naming_its_key() {
        let mut bytes = Header {
            credential_validity_ms: 1,
            wallets: 0,
        }
        .encode();
        bytes[3] = 9;
        let error = <Header as StoredRecord>::decode("office", &bytes).unwrap_err();
        assert!(
            matches!(error, RecordError::TooNew { found: 9, .. }),
            "{error}"
        );
        let error = <Header as StoredRecord>::decode("office", &bytes[..6]).unwrap_err();
        assert!(error.to_string().contains("wallet/office"), "{error}");
    }
}
