//! The office on a ledger store in this thread — for tests, benchmarks and simulators, with
//! `offpay_ledger::MemoryStore` or any other store. The server runs the same loads and
//! decisions through its runner (lock stripes, bounded retries, the ledger's threads).

use std::vec::Vec;

use offpay_ledger::{BatchRefusal, LedgerStore, RECORD_PAGE_MAX, Refusal, Timestamp};
use offpay_operator::{Decision, Effects};

use super::legacy::load_legacy;
use super::plan::{Plan, Working, load};
use super::records::{NAMESPACE, parse_record_key, read_into};
use crate::error::{BookError, Error};
use crate::keys::OfficeKeys;
use crate::office::MoneyOffice;
use crate::office::book::{BlockedList, Book};

/// Times one operation is decided again on a store that changed under it. A store only this
/// thread writes never does: a second attempt only follows a migration.
pub const LOCAL_ATTEMPTS_MAX: usize = 3;

/// Commits `effects`; `Ok(false)` when a record was no longer at the version read.
pub fn commit(
    store: &mut dyn LedgerStore,
    effects: Effects,
    now: Timestamp,
) -> Result<bool, Error> {
    let batches = effects.into_batches();
    if batches.is_empty() {
        return Ok(true);
    }
    for result in store.commit(&batches, now)? {
        match result {
            Ok(_) => {}
            Err(BatchRefusal {
                reason: Refusal::RecordVersionMismatch { .. },
                ..
            }) => return Ok(false),
            Err(refusal) => return Err(BookError::Refused(refusal.to_string()).into()),
        }
    }
    Ok(true)
}

/// Migrates an earlier release's whole book, if `store` holds one; true when it did.
pub fn migrate(store: &mut dyn LedgerStore, now: Timestamp) -> Result<bool, Error> {
    'attempt: for _ in 0..LOCAL_ATTEMPTS_MAX {
        let Some(legacy) = load_legacy(store)? else {
            return Ok(false);
        };
        for step in super::migration(&legacy)? {
            if !commit(store, step, now)? {
                continue 'attempt;
            }
        }
        return Ok(true);
    }
    Err(BookError::Contention.into())
}

/// Loads what `plan` names, decides with `decide`, commits; migrates an earlier release's book
/// first if it finds one.
pub fn run<T>(
    store: &mut dyn LedgerStore,
    plan: &Plan,
    now: Timestamp,
    mut decide: impl FnMut(Working) -> Result<Decision<T>, Error>,
) -> Result<T, Error> {
    for _ in 0..LOCAL_ATTEMPTS_MAX {
        let working = load(store, plan)?;
        if working.legacy {
            migrate(store, now)?;
            continue;
        }
        match decide(working)? {
            Decision::Reload => {}
            Decision::Commit { effects, reply } => {
                if commit(store, effects, now)? {
                    return Ok(reply);
                }
            }
        }
    }
    Err(BookError::Contention.into())
}

/// Reads every record of the office into one in-memory office: for tests, audits and
/// simulators (it costs the whole book; no operation does this).
pub fn whole_office(store: &mut dyn LedgerStore, keys: OfficeKeys) -> Result<MoneyOffice, Error> {
    let mut book = Book::partial();
    let mut versions = std::collections::BTreeMap::new();
    let mut after: Option<std::string::String> = None;
    loop {
        let page = store.records(NAMESPACE, "", after.as_deref(), RECORD_PAGE_MAX)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.key.clone());
        let keys: Vec<_> = page
            .iter()
            .filter_map(|record| parse_record_key(&record.key))
            .collect();
        for key in keys {
            read_into(store, key, &mut book, &mut versions)?;
        }
    }
    if !matches!(book.blocked, Some(Some(_))) {
        book.blocked = Some(Some(BlockedList::default()));
    }
    if !matches!(book.header, Some(Some(_))) {
        book.header = Book::whole(0).header;
    }
    book.make_whole();
    Ok(MoneyOffice::with_book(keys, book))
}
