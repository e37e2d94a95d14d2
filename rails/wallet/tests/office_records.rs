//! The money office's book as ledger records: a data directory of the previous release (the
//! whole book in chunked records) migrated on first use, an operation that reads only what it
//! touches, stored records that do not decode, and the operator's way out for an abandoned
//! transfer. Every scenario also runs the in-memory office beside the stored one
//! (`common::TwinOffice`), which checks after each operation that both hold the same book.

#![allow(clippy::expect_used, clippy::unwrap_used)] // Tests stop at the first surprise.

mod common;

use std::sync::Arc;

use common::{NetConfig, Sim, amount};
use offpay_ledger::{Batch, LedgerStore, MemoryStore, Operation, RecordWrite, Timestamp};
use offpay_wallet::operator::{
    self, BOOK_CHUNK_BYTES, BOOK_KEY, BOOK_MANIFEST_VERSION, NAMESPACE, Office, Plan, chunk_key,
    local,
};
use offpay_wallet::{BookError, Error, Flag, OfficeKeys, Outcome, SeededEntropy};

/// Writes `book` as the previous release's server did (`rails/wallet.rs`, `book_writes`): chunks
/// of at most `chunk_bytes` under `office-book:NNNNN`, then the manifest — format version,
/// chunk count (u32), length (u64) — under `office-book`. Kept here as test data only.
fn write_previous_release_book(store: &mut dyn LedgerStore, book: &[u8], chunk_bytes: usize) {
    assert!(chunk_bytes <= BOOK_CHUNK_BYTES);
    let chunks: Vec<&[u8]> = book.chunks(chunk_bytes).collect();
    let mut operations: Vec<Operation> = chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| put(&chunk_key(index), Some(chunk.to_vec()), None))
        .collect();
    let mut manifest = vec![BOOK_MANIFEST_VERSION];
    manifest.extend_from_slice(&(chunks.len() as u32).to_be_bytes());
    manifest.extend_from_slice(&(book.len() as u64).to_be_bytes());
    operations.push(put(BOOK_KEY, Some(manifest), Some(0)));
    commit(store, operations);
}

fn put(key: &str, value: Option<Vec<u8>>, expected_version: Option<u64>) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.into(),
        key: key.into(),
        value,
        expected_version,
    })
}

fn commit(store: &mut dyn LedgerStore, operations: Vec<Operation>) {
    let results = store
        .commit(&[Batch { operations }], Timestamp(1))
        .expect("the store commits");
    for result in results {
        result.expect("the batch is accepted");
    }
}

/// Removes the office's per-record book, leaving the ledger's accounts and postings.
fn forget_records(store: &mut dyn LedgerStore) {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .records(NAMESPACE, "", after.as_deref(), 1000)
            .expect("records");
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        keys.extend(page.into_iter().map(|record| record.key));
    }
    assert!(!keys.is_empty());
    commit(store, keys.iter().map(|key| put(key, None, None)).collect());
}

/// A small world with some history: sales posted, a sync, a lost phone blocked.
fn busy_sim(seed: u64) -> Sim {
    let mut sim = Sim::new(4, seed, NetConfig::default());
    sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.start_sale(2, 3, 2_500).expect("sale starts");
    sim.quiesce();
    sim.settle();
    sim.start_sale(1, 2, 700).expect("sale starts");
    sim.quiesce();
    sim.sync(1);
    let now = sim.now;
    sim.office.block(sim.ids[3], now).expect("block");
    sim
}

/// What is settled is pruned: two sales settled on both sides (their transfer and payment-number
/// records go), every voucher applied (its record goes); the sale whose buyer has not synced
/// keeps its transfer and payment-number records.
#[test]
fn the_stored_office_holds_one_record_per_wallet_unsettled_transfer_payment_and_voucher() {
    let mut sim = busy_sim(61);
    let store = sim.office.store();
    let records = store.records(NAMESPACE, "", None, 1000).expect("records");
    let count = |prefix: &str| {
        records
            .iter()
            .filter(|record| record.key.starts_with(prefix))
            .count()
    };
    assert_eq!(count("wallet:"), 4);
    assert_eq!(count("charge:"), 0);
    assert_eq!(count("transfer:"), 1);
    assert_eq!(count("agreement:"), 1);
    assert_eq!(count("office"), 1);
    assert_eq!(count("blocked"), 1);
    sim.office.check();
    // The digests count what was pruned.
    let settled = |sim: &mut Sim, index: usize| {
        let id = sim.ids[index];
        sim.office.wallet_summary(&id).expect("known").settled
    };
    let (seller, buyer) = (settled(&mut sim, 0), settled(&mut sim, 1));
    assert_eq!((seller.sales, seller.received_minor), (1, 1_000));
    assert_eq!(
        (buyer.purchases, buyer.paid_minor, buyer.spend_floor),
        (1, 1_000, 1)
    );
}

#[test]
fn a_book_written_by_the_previous_release_is_migrated_on_first_use() {
    let mut sim = busy_sim(62);
    let book = sim.office.encode_book();
    // The data directory as the previous release left it: the ledger's accounts and postings,
    // and the office's book in chunked records (small chunks, so that there are several).
    forget_records(sim.office.store());
    write_previous_release_book(sim.office.store(), &book, 97);
    assert!(book.len() / 97 > 3);
    // The next operation finds the old book, migrates it, and goes on; the twin checks that the
    // records hold exactly the old book, and then the sync's changes.
    sim.start_sale(0, 2, 300).expect("sale starts");
    sim.quiesce();
    sim.sync(0);
    let store = sim.office.store();
    assert!(store.record(NAMESPACE, BOOK_KEY).unwrap().is_none());
    assert!(store.record(NAMESPACE, &chunk_key(0)).unwrap().is_none());
    sim.settle();
    sim.check();
}

#[test]
fn a_migrated_book_reads_back_as_the_old_book() {
    let sim = busy_sim(63);
    let book = sim.office.encode_book();
    let mut store = MemoryStore::new();
    write_previous_release_book(&mut store, &book, BOOK_CHUNK_BYTES);
    let keys = OfficeKeys::generate(&mut SeededEntropy::from_seed(63));
    assert!(local::migrate(&mut store, Timestamp(2)).expect("migrates"));
    let migrated = local::whole_office(&mut store, keys).expect("reads back");
    assert_eq!(migrated.encode_book(), book);
    // Migrating again finds nothing to do.
    assert!(!local::migrate(&mut store, Timestamp(3)).expect("nothing to migrate"));
}

#[test]
fn an_operation_reads_only_what_it_touches() {
    let mut sim = Sim::new(2, 64, NetConfig::default());
    // Many wallets that have nothing to do with the sync below.
    for _ in 0..200 {
        sim.add_device(1_000);
    }
    sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.quiesce();
    let now = sim.now;
    let (actions, upload) = sim.devices[0]
        .wallet
        .as_mut()
        .expect("up")
        .begin_sync(now, &mut sim.entropy)
        .expect("sync");
    sim.execute(0, actions);
    let plan = Plan::sync(Arc::new(upload.encode()));
    // A sync and a charge of one wallet wait for each other in one server.
    assert_eq!(plan.stripe_keys(), Plan::charge(sim.ids[0]).stripe_keys());
    let working = operator::load(sim.office.store(), &plan).expect("load");
    // The header, the blocked list, both parties, the transfer, the payment number, the
    // seller's voucher: whatever the number of wallets.
    assert!(
        working.records_read() <= 8,
        "read {} records",
        working.records_read()
    );
}

#[test]
fn a_stored_record_that_does_not_decode_is_an_error_naming_its_key() {
    let mut sim = Sim::new(2, 65, NetConfig::default());
    let wallet = sim.ids[0];
    let key = format!("wallet:{wallet}");
    commit(
        sim.office.store(),
        vec![put(&key, Some(vec![0, 0, 0, 1, 7]), None)],
    );
    let plan = Plan::charge(wallet);
    let error = operator::load(sim.office.store(), &plan).expect_err("does not decode");
    match &error {
        Error::Book(BookError::Corrupt { key: named, .. }) => assert_eq!(named, &key),
        other => panic!("unexpected {other:?}"),
    }
    // A record written by a newer release is refused too, not read as a default.
    commit(
        sim.office.store(),
        vec![put(&key, Some(vec![0, 0, 0, 9]), None)],
    );
    let error = operator::load(sim.office.store(), &plan).expect_err("too new");
    assert!(error.to_string().contains(&key), "{error}");
}

#[test]
fn a_broken_previous_release_book_names_what_is_missing() {
    let sim = busy_sim(66);
    let book = sim.office.encode_book();
    let mut store = MemoryStore::new();
    write_previous_release_book(&mut store, &book, 200);
    commit(&mut store, vec![put(&chunk_key(1), None, None)]);
    let error = local::migrate(&mut store, Timestamp(2)).expect_err("a chunk is missing");
    assert!(error.to_string().contains(&chunk_key(1)), "{error}");
    // Nothing was decided on it.
    let keys = OfficeKeys::generate(&mut SeededEntropy::from_seed(66));
    let office = Office::new(keys, common::VALIDITY_MS);
    let plan = Plan::show(sim.ids[0]);
    let working = operator::load(&mut store, &plan).expect("loads");
    assert_eq!(
        office.show(working, sim.ids[0]).map(|_| ()),
        Err(Error::Book(BookError::LegacyBook))
    );
}

#[test]
fn an_abandoned_transfer_is_voided_at_the_buyers_sync_a_window_after_the_seller_is_blocked() {
    let mut sim = Sim::new(2, 67, NetConfig::default());
    let transfer_id = sim.start_sale(0, 1, 3_000).expect("sale starts");
    while sim.wallet(1).held().minor() == 0 {
        let next = sim.now + 1;
        sim.run_until(next);
    }
    sim.net.loss = 1.0;
    sim.quiesce();
    sim.net.loss = 0.0;
    // The buyer syncs (the office learns it is prepared); the seller's phone is lost.
    sim.sync(1);
    let seller = sim.ids[0];
    let now = sim.now;
    sim.office.block(seller, now).expect("block");
    assert_eq!(
        sim.office.resolve_abandoned(transfer_id, now),
        Err(Error::Misuse(offpay_wallet::Misuse::ResolutionWindowOpen))
    );
    // Inside the window the buyer's sync leaves it held…
    sim.now = now + offpay_wallet::office::ABANDONED_RESOLUTION_WINDOW_MS;
    sim.sync(1);
    assert_eq!(sim.log_outcomes(1)[&transfer_id].1, None);
    assert!(sim.wallet(1).held().minor() > 0);
    // …and after it, the buyer's own sync voids it: no operator step, no wait for the seller's
    // credential (a week) to expire.
    let expired = now + offpay_wallet::office::ABANDONED_RESOLUTION_WINDOW_MS + 1;
    assert!(expired < sim.wallet(0).credential().expires_at_ms);
    sim.now = expired;
    sim.sync(1);
    assert_eq!(sim.log_outcomes(1)[&transfer_id].1, Some(Outcome::Voided));
    assert_eq!(sim.wallet(1).held(), amount(0));
    assert_eq!(sim.office.decision(&transfer_id), Some(Outcome::Voided));
    // Should the seller's log ever arrive with its commit, it is flagged and not posted.
    sim.flags.clear();
    let decided = sim.wallet(0).outcome(&transfer_id);
    if decided == Some(Outcome::Posted) {
        let before = sim.postings.len();
        let (actions, upload) = sim.devices[0]
            .wallet
            .as_mut()
            .expect("up")
            .begin_sync(expired, &mut sim.entropy)
            .expect("sync");
        sim.execute(0, actions);
        let reconciliation = sim
            .office
            .reconcile(&upload.encode(), expired)
            .expect("reconcile");
        assert!(reconciliation.postings.is_empty());
        assert!(
            reconciliation
                .flags
                .iter()
                .any(|flag| matches!(flag, Flag::ConflictingOutcome { .. }))
        );
        assert_eq!(sim.postings.len(), before);
    }
}
