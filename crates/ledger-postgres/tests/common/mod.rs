//! Test helpers: a fresh schema per test on the database `OFFPAY_TEST_DATABASE_URL` names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use offpay_ledger_postgres::PostgresStore;

/// The environment variable naming the test database; tests are skipped without it.
pub const DATABASE_URL_VARIABLE: &str = "OFFPAY_TEST_DATABASE_URL";

/// The test database's URL, if configured.
pub fn database_url() -> Option<String> {
    std::env::var(DATABASE_URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
}

/// True when no test database is configured.
pub fn skip() -> bool {
    database_url().is_none()
}

/// Drops its schema (and everything in it) when dropped.
#[derive(Debug)]
pub struct SchemaGuard {
    url: String,
    /// The schema's name.
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        // Best effort: a schema left behind by a crashed test is harmless and uniquely named.
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
    }
}

/// A schema name no other test run uses: process id, clock and a counter, mixed.
fn unique_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let mut mixed = nanos ^ (u64::from(std::process::id()) << 32);
    mixed = mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("offpay_test_{mixed:016x}")
}

/// A schema name no test has used, and the guard that drops the schema if anything creates it.
pub fn fresh_schema() -> SchemaGuard {
    let url = database_url().unwrap_or_else(|| panic!("{DATABASE_URL_VARIABLE} is not set"));
    SchemaGuard {
        url,
        schema: unique_schema(),
    }
}

/// A fresh, empty store in its own schema, and the guard that drops the schema.
pub fn fresh_store() -> (SchemaGuard, PostgresStore) {
    let guard = fresh_schema();
    let store = PostgresStore::open_in_schema(&guard.url, &guard.schema)
        .unwrap_or_else(|error| panic!("open schema {}: {error}", guard.schema));
    (guard, store)
}
