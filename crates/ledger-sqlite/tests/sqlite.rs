//! SQLite-specific promises: durability settings, data surviving a reopen, and the account cache
//! never serving a balance another connection has changed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use offpay_ledger::{
    AccountId, AccountKind, BalanceLimits, Batch, Currency, LedgerStore, NewAccount, Operation,
    Timestamp, Transfer, TransferId, TransferKind, verify_conservation,
};
use offpay_ledger_sqlite::SqliteStore;

fn account(id: &str, kind: AccountKind) -> Operation {
    Operation::CreateAccount(NewAccount {
        id: AccountId::new(id).unwrap(),
        kind,
        currency: Currency::KES,
        limits: BalanceLimits {
            balance_min: kind.default_balance_min(),
            balance_max: None,
        },
    })
}

fn pay(id: &str, from: &str, to: &str, minor: u64) -> Batch {
    Batch::transfers([Transfer {
        id: TransferId::new(id).unwrap(),
        debit_account: AccountId::new(from).unwrap(),
        credit_account: AccountId::new(to).unwrap(),
        amount: Currency::KES.minor(minor).unwrap(),
        kind: TransferKind::Posted,
        memo: String::new(),
    }])
}

fn commit(store: &mut SqliteStore, batch: Batch) -> Result<(), String> {
    let mut results = store
        .commit(&[batch], Timestamp(1))
        .map_err(|error| error.to_string())?;
    results
        .remove(0)
        .map(|_| ())
        .map_err(|refusal| refusal.to_string())
}

/// Creates the float and Alice's account and pays Alice `minor` (transfer `t1`).
fn float_and_alice(store: &mut SqliteStore, minor: u64) {
    commit(
        store,
        Batch {
            operations: vec![
                account("float", AccountKind::OperatorFloat),
                account("alice", AccountKind::Customer),
            ],
        },
    )
    .unwrap();
    commit(store, pay("t1", "float", "alice", minor)).unwrap();
}

#[test]
fn commits_are_fsynced_and_survive_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("ledger.sqlite");
    {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.synchronous_level().unwrap(), 2, "synchronous=FULL");
        float_and_alice(&mut store, 500);
    }
    let mut store = SqliteStore::open(&path).unwrap();
    let alice = store
        .account(&AccountId::new("alice").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(alice.balance(), 500);
    assert_eq!(store.history(&alice.id, None, 10).unwrap().len(), 1);
    verify_conservation(&mut store).unwrap();
}

#[test]
fn a_balance_changed_by_another_connection_is_never_served_from_the_cache() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("ledger.sqlite");
    let mut first = SqliteStore::open(&path).unwrap();
    let mut second = SqliteStore::open(&path).unwrap();
    commit(
        &mut first,
        Batch {
            operations: vec![
                account("float", AccountKind::OperatorFloat),
                account("alice", AccountKind::Customer),
                account("bob", AccountKind::Customer),
            ],
        },
    )
    .unwrap();
    commit(&mut first, pay("fund", "float", "alice", 1_000)).unwrap();
    // `first` now caches alice at 1,000. `second` spends 800 of it.
    commit(&mut second, pay("spend", "alice", "bob", 800)).unwrap();
    // If `first` trusted its cache, alice would still have 1,000 and this would pass.
    let refused = commit(&mut first, pay("overdraw", "alice", "bob", 500));
    assert!(refused.unwrap_err().contains("insufficient funds"));
    commit(&mut first, pay("fits", "alice", "bob", 200)).unwrap();
    let alice = first
        .account(&AccountId::new("alice").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(alice.balance(), 0);
    verify_conservation(&mut first).unwrap();
    // And the other way round, after `first` wrote.
    let refused = commit(&mut second, pay("late", "alice", "bob", 1));
    assert!(refused.unwrap_err().contains("insufficient funds"));
}

#[test]
fn a_reader_sees_one_state_per_read_transaction_and_never_writes() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("ledger.sqlite");
    let mut writer = SqliteStore::open(&path).unwrap();
    float_and_alice(&mut writer, 100);
    let mut reader = SqliteStore::open_reader(&path).unwrap();
    let alice = AccountId::new("alice").unwrap();
    let mut seen = Vec::new();
    reader
        .read_transaction(&mut |store| {
            seen.push(store.account(&alice)?.unwrap().balance());
            // The writer commits while the reader's transaction is open (WAL: it is not blocked).
            commit(&mut writer, pay("t2", "float", "alice", 100)).unwrap();
            seen.push(store.account(&alice)?.unwrap().balance());
            seen.push(store.history(&alice, None, 10)?.len() as i64 * 100);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        seen,
        [100, 100, 100],
        "one state throughout the transaction"
    );
    assert_eq!(reader.account(&alice).unwrap().unwrap().balance(), 200);
    // An error inside ends the transaction and comes back; the reader then reads on.
    let failed =
        reader.read_transaction(&mut |_| Err(offpay_ledger::StoreError::Corrupt("test".into())));
    assert!(
        matches!(failed, Err(offpay_ledger::StoreError::Corrupt(_))),
        "{failed:?}"
    );
    assert_eq!(reader.account(&alice).unwrap().unwrap().balance(), 200);
    // The reader is query-only.
    let written = commit(&mut reader, pay("t3", "float", "alice", 100));
    assert!(written.is_err(), "a reader commits nothing: {written:?}");
    assert_eq!(writer.account(&alice).unwrap().unwrap().balance(), 200);
    verify_conservation(&mut writer).unwrap();
}
