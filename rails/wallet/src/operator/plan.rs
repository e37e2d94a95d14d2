//! Load plans: which records each operation of the office reads, and the load that reads them
//! (and nothing else) in one read transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::vec::Vec;

use offpay_ledger::LedgerStore;

use super::legacy;
use super::records::read_into;
use crate::credential::Credential;
use crate::error::{BookError, Error};
use crate::ids::{TransferId, WalletId};
use crate::office::book::{Book, BookKey};
use crate::office::{SyncView, sync_keys};

/// Most rounds of reading one load takes. A sync needs five: the wallet; the transfers and
/// payment numbers its upload names; the parties of stored transfers and the payment numbers of
/// commits; the transfers first seen with those payment numbers; and a round that finds nothing
/// new.
pub const LOAD_ROUNDS_MAX: usize = 8;

/// What one operation reads: some records by key, and what those records lead to.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    keys: BTreeSet<BookKey>,
    /// Wallets whose open transfers are read too.
    open_of: BTreeSet<WalletId>,
    /// Whether the parties of every transfer read are read too.
    parties: bool,
    /// The upload of a sync, whose records name what else to read.
    upload: Option<Arc<Vec<u8>>>,
}

impl Plan {
    /// Reconciling `upload`: the wallet, then what its upload and its open transfers name.
    pub fn sync(upload: Arc<Vec<u8>>) -> Plan {
        Plan {
            upload: Some(upload),
            ..Plan::default()
        }
    }

    /// Issuing a wallet: the header (the count of wallets); the new wallet is written on the
    /// condition that its record does not exist.
    pub fn issue() -> Plan {
        Plan::default()
    }

    /// Charging `wallet`.
    pub fn charge(wallet: WalletId) -> Plan {
        Plan::wallets(&[wallet])
    }

    /// Blocking `wallet`: it, and the list of recently blocked wallets.
    pub fn block(wallet: WalletId) -> Plan {
        let mut plan = Plan::wallets(&[wallet]);
        plan.keys.insert(BookKey::Blocked);
        plan
    }

    /// Reissuing (or releasing) `lost`'s value to `to`: both, and `lost`'s open transfers (what
    /// they hold back).
    pub fn reissue(lost: WalletId, to: WalletId) -> Plan {
        let mut plan = Plan::wallets(&[lost, to]);
        plan.open_of.insert(lost);
        plan
    }

    /// Voiding an abandoned transfer: it and its parties.
    pub fn void(transfer: TransferId) -> Plan {
        let mut plan = Plan::default();
        plan.keys.insert(BookKey::Transfer(transfer));
        plan.parties = true;
        plan
    }

    /// What the operator sees of `wallet`: it and its open transfers.
    pub fn show(wallet: WalletId) -> Plan {
        let mut plan = Plan::wallets(&[wallet]);
        plan.open_of.insert(wallet);
        plan
    }

    fn wallets(wallets: &[WalletId]) -> Plan {
        let mut plan = Plan::default();
        plan.keys
            .extend(wallets.iter().map(|wallet| BookKey::Wallet(*wallet)));
        plan
    }

    /// The wallets this operation is about, for the runner's lock stripes (a sync: the uploading
    /// wallet). Two operations on different wallets may still meet on a shared record; the
    /// conditional writes settle that.
    pub fn stripe_keys(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .keys
            .iter()
            .filter_map(|key| match key {
                BookKey::Wallet(id) => Some(stripe(&id.0)),
                BookKey::Transfer(id) => Some(stripe(&id.0)),
                _ => None,
            })
            .collect();
        if let Some(wallet) = self.upload.as_deref().and_then(|upload| uploader(upload)) {
            keys.push(stripe(&wallet.0));
        }
        if keys.is_empty() {
            // Issuing: every issue writes the header.
            keys.push(0);
        }
        keys
    }

    fn expand(&self, book: &Book, view: Option<&SyncView>, wanted: &mut BTreeSet<BookKey>) {
        wanted.extend(self.keys.iter().copied());
        for wallet in &self.open_of {
            if let Some(Some(account)) = book.wallets.get(wallet) {
                wanted.extend(account.open.iter().map(|id| BookKey::Transfer(*id)));
            }
        }
        if self.parties {
            for file in book.transfers.values().flatten() {
                wanted.insert(BookKey::Wallet(file.terms.buyer));
                wanted.insert(BookKey::Wallet(file.terms.seller));
            }
        }
        if let Some(view) = view {
            sync_keys(view, book, wanted);
        }
    }
}

/// The uploading wallet, read from the credential at the head of an upload without parsing the
/// rest (the format version, then the credential).
fn uploader(upload: &[u8]) -> Option<WalletId> {
    let credential = upload.get(1..1 + crate::credential::CREDENTIAL_BYTES)?;
    Credential::decode(credential)
        .ok()
        .map(|credential| credential.wallet_id)
}

fn stripe(id: &[u8; 16]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&id[..8]);
    u64::from_be_bytes(head)
}

/// What an operation loaded: the records its plan named, each with the version it was read at.
#[derive(Debug)]
pub struct Working {
    pub(crate) book: Book,
    pub(crate) versions: BTreeMap<BookKey, u64>,
    /// The data directory holds an earlier release's whole book, not yet migrated.
    pub(crate) legacy: bool,
}

impl Working {
    /// Records loaded (present or absent).
    pub fn records_read(&self) -> usize {
        self.versions.len()
    }

    /// The ledger keys of the records loaded (present or absent), in key order.
    pub fn record_keys(&self) -> Vec<std::string::String> {
        self.versions
            .keys()
            .map(super::records::record_key)
            .collect()
    }
}

/// Loads what `plan` names, in rounds until what is loaded names nothing more. Call it inside
/// one read transaction so that every record comes from the same committed state.
pub fn load(store: &mut dyn LedgerStore, plan: &Plan) -> Result<Working, Error> {
    let mut working = Working {
        book: Book::partial(),
        versions: BTreeMap::new(),
        legacy: false,
    };
    read_into(
        store,
        BookKey::Header,
        &mut working.book,
        &mut working.versions,
    )?;
    // A header is written with the first change of a new office and by the migration's last
    // step; without one, an earlier release's book may be waiting.
    if matches!(working.book.header, Some(None)) && legacy::manifest_exists(store)? {
        working.legacy = true;
        return Ok(working);
    }
    let view = plan.upload.as_deref().map(|upload| SyncView::parse(upload));
    let mut wanted = BTreeSet::new();
    for _ in 0..LOAD_ROUNDS_MAX {
        plan.expand(&working.book, view.as_ref(), &mut wanted);
        let fresh: Vec<BookKey> = wanted
            .iter()
            .filter(|key| !working.book.holds(key))
            .copied()
            .collect();
        if fresh.is_empty() {
            return Ok(working);
        }
        for key in fresh {
            read_into(store, key, &mut working.book, &mut working.versions)?;
        }
    }
    Err(BookError::PlanTooDeep.into())
}
