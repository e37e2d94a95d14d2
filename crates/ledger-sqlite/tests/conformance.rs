//! The ledger conformance suite on SQLite files (durable mode, as in production).

use offpay_ledger_sqlite::SqliteStore;

fn open_fresh() -> (tempfile::TempDir, SqliteStore) {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("temp dir: {error}"));
    let store = SqliteStore::open(&directory.path().join("ledger.sqlite"))
        .unwrap_or_else(|error| panic!("open: {error}"));
    (directory, store)
}

offpay_ledger::ledger_conformance_tests!(false, open_fresh());
