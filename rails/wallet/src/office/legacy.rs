//! The whole book as one encoding, as earlier releases stored it (the server kept it as chunked
//! ledger records, rewritten on every change). Still written for snapshots of an in-memory
//! office and read to migrate a data directory of an earlier release into per-record storage.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::book::{
    BlockedList, Book, Header, SettledDigest, TransferFile, WalletAccount, read_bool,
    read_option_u64, write_option_u64,
};
use super::{MoneyOffice, OFFICE_BOOK_VERSION};
use crate::codec::{Reader, Writer};
use crate::credential::Credential;
use crate::error::{Error, Malformed};
use crate::ids::{TransferId, WalletId};
use crate::keys::OfficeKeys;
use crate::sync::ChargeVoucher;

impl MoneyOffice {
    /// Encodes everything the office remembers in one piece (format version first): a snapshot
    /// of an in-memory office, in the format earlier releases stored.
    ///
    /// # Panics
    /// On an office assembled from a partial book, which does not hold everything.
    pub fn encode_book(&self) -> Vec<u8> {
        let book = &self.book;
        assert!(book.is_whole(), "only a whole book encodes as one");
        let mut w = Writer::new();
        w.u8(OFFICE_BOOK_VERSION).u64(book.credential_validity_ms());
        let wallets: Vec<&WalletAccount> = book.wallets().collect();
        w.u32(wallets.len() as u32);
        for account in wallets {
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
            let id = account.credential.wallet_id;
            // Version 3: the count issued, then the vouchers still held (applied ones are
            // pruned), each with its number.
            let held: Vec<&ChargeVoucher> = book.charges_of(&id).collect();
            w.u64(account.charges_issued).u32(held.len() as u32);
            for voucher in held {
                voucher.write(&mut w);
            }
            w.u32(account.open.len() as u32);
            for id in &account.open {
                w.raw(&id.0);
            }
            account.settled.write(&mut w);
        }
        let transfers: Vec<&TransferFile> = book.transfers.values().flatten().collect();
        w.u32(transfers.len() as u32);
        for file in transfers {
            file.write(&mut w);
        }
        let agreements: Vec<(&(WalletId, u64), &TransferId)> = book
            .agreements
            .iter()
            .filter_map(|(key, slot)| slot.as_ref().map(|id| (key, id)))
            .collect();
        w.u32(agreements.len() as u32);
        for ((wallet, seq), transfer) in agreements {
            w.raw(&wallet.0).u64(*seq).raw(&transfer.0);
        }
        w.finish()
    }

    /// Restores an office from its keys and [`MoneyOffice::encode_book`] (format 1, 2 or 3).
    pub fn decode_book(keys: OfficeKeys, bytes: &[u8]) -> Result<MoneyOffice, Error> {
        Ok(MoneyOffice::with_book(keys, decode_whole(bytes)?))
    }
}

/// Reads a whole book encoded by [`MoneyOffice::encode_book`] or by an earlier release.
pub(crate) fn decode_whole(bytes: &[u8]) -> Result<Book, Error> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    // Version 1 lacked `remainder_released` (read as false); version 3 added pruning (the
    // vouchers held are listed with the count issued; a digest of settled transfers).
    if !(1..=OFFICE_BOOK_VERSION).contains(&version) {
        return Err(Malformed::UnknownVersion(version).into());
    }
    let mut book = Book::whole(r.u64()?);
    let mut blocked = BlockedList::default();
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
        let wallet_id = credential.wallet_id;
        let charges = if version >= 3 {
            let issued = r.u64()?;
            let mut last = 0;
            for _ in 0..read_count(&mut r)? {
                let voucher = ChargeVoucher::read(&mut r)?;
                if voucher.wallet_id != wallet_id
                    || voucher.charge_seq <= last
                    || voucher.charge_seq > issued
                {
                    return Err(Malformed::InvalidField.into());
                }
                last = voucher.charge_seq;
                book.insert_charge(voucher);
            }
            issued
        } else {
            let charges = read_count(&mut r)?;
            for index in 0..charges {
                let voucher = ChargeVoucher::read(&mut r)?;
                // Vouchers are numbered from 1 in the order issued; the per-record book keys
                // them by that number.
                if voucher.wallet_id != wallet_id || voucher.charge_seq != index as u64 + 1 {
                    return Err(Malformed::InvalidField.into());
                }
                book.insert_charge(voucher);
            }
            charges as u64
        };
        let mut open = BTreeSet::new();
        for _ in 0..read_count(&mut r)? {
            open.insert(TransferId(r.array()?));
        }
        let settled = if version >= 3 {
            SettledDigest::read(&mut r)?
        } else {
            SettledDigest::default()
        };
        if let Some(at) = blocked_at_ms {
            blocked.note(at, wallet_id);
        }
        book.insert_wallet(WalletAccount {
            credential,
            blocked_at_ms,
            head,
            shadow_minor,
            charges_issued: charges,
            applied_charge_seq,
            spent_unsynced_minor,
            reissued,
            remainder_released,
            open,
            case: None,
            settled,
        });
    }
    for _ in 0..read_count(&mut r)? {
        let file = TransferFile::read(&mut r)?;
        book.transfers.insert(file.terms.transfer_id, Some(file));
    }
    for _ in 0..read_count(&mut r)? {
        let wallet = WalletId(r.array()?);
        let seq = r.u64()?;
        let transfer = TransferId(r.array()?);
        book.insert_agreement(wallet, seq, transfer);
    }
    r.finish()?;
    book.blocked = Some(Some(blocked));
    debug_assert_eq!(
        book.header,
        Some(Some(Header {
            credential_validity_ms: book.credential_validity_ms(),
            wallets: count as u64,
        }))
    );
    Ok(book)
}

/// A u32 count, bounded by what is left (every item takes at least one byte).
fn read_count(r: &mut Reader<'_>) -> Result<usize, Malformed> {
    let count = r.u32()? as usize;
    if count > r.remaining() || count > super::OFFICE_WALLETS_MAX.saturating_mul(64) {
        return Err(Malformed::TooLong);
    }
    Ok(count)
}
