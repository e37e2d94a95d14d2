//! A fresh database per test: SQLite in the test's data directory by default; PostgreSQL when
//! `OFFPAY_TEST_DATABASE_URL` names a server (each test then gets a database of its own, dropped
//! afterwards).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming the PostgreSQL test server; PostgreSQL stories are skipped
/// without it.
pub const DATABASE_URL_VARIABLE: &str = "OFFPAY_TEST_DATABASE_URL";

/// The PostgreSQL test server's URL, if configured.
pub fn postgres_url() -> Option<String> {
    std::env::var(DATABASE_URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
}

/// A database created for one test on the PostgreSQL test server, dropped when this is dropped.
#[derive(Debug)]
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl FreshDatabase {
    /// Creates a database no other test uses on the server `admin_url` names (its database is
    /// only used to run `CREATE DATABASE`).
    pub fn create(admin_url: &str) -> FreshDatabase {
        let name = unique_name();
        let admin_url = admin_url.to_owned();
        let url = with_database(&admin_url, &name);
        let creating = admin_url.clone();
        let statement = format!("CREATE DATABASE {name}");
        // The blocking client runs a runtime of its own: keep it off any async test's threads.
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&creating, postgres::NoTls)
                .expect("connect to the PostgreSQL test server");
            client
                .batch_execute(&statement)
                .expect("create a database for the test");
        })
        .join()
        .expect("the thread creating the test database");
        FreshDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Best effort: a database left behind by a crashed test is uniquely named and harmless.
        let _ = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&admin_url, postgres::NoTls) {
                let _ = client.batch_execute(&statement);
            }
        })
        .join();
    }
}

/// `url` with its database name replaced by `name` (URL form `postgres://.../database?...`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |index| index + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |index| scheme_end + index);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database name no other test run uses: process id, clock and a counter, mixed.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let mut mixed = nanos ^ (u64::from(std::process::id()) << 32);
    mixed = mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("offpay_t_{mixed:016x}")
}

/// Which kind of database a story runs on; [`BackendKind::fresh`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// SQLite in the server's data directory.
    Sqlite,
    /// A fresh database on the PostgreSQL test server.
    Postgres,
}

impl BackendKind {
    /// SQLite always, PostgreSQL when `OFFPAY_TEST_DATABASE_URL` is set (otherwise `story`
    /// says that it skipped PostgreSQL).
    pub fn all(story: &str) -> Vec<BackendKind> {
        if postgres_url().is_some() {
            vec![BackendKind::Sqlite, BackendKind::Postgres]
        } else {
            eprintln!("skipped {story} on PostgreSQL: {DATABASE_URL_VARIABLE} is not set");
            vec![BackendKind::Sqlite]
        }
    }

    /// A new, empty database of this kind.
    pub fn fresh(self) -> Backend {
        match self {
            BackendKind::Sqlite => Backend::Sqlite,
            BackendKind::Postgres => match postgres_url() {
                Some(url) => Backend::Postgres(FreshDatabase::create(&url)),
                None => panic!("{DATABASE_URL_VARIABLE} is not set"),
            },
        }
    }
}

/// Where a story's server keeps its ledger.
#[derive(Debug)]
pub enum Backend {
    /// The embedded default: SQLite in the data directory.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres(FreshDatabase),
    /// A PostgreSQL database the test manages itself (a [`crate::TempCluster`], a failover
    /// pair), by URL.
    PostgresUrl(String),
}

impl Backend {
    /// A fresh database of every kind configured here ([`BackendKind::all`]).
    pub fn all(story: &str) -> Vec<Backend> {
        BackendKind::all(story)
            .into_iter()
            .map(BackendKind::fresh)
            .collect()
    }

    /// The `--database-url` to give the server (`None`: SQLite in its data directory).
    pub fn database_url(&self) -> Option<&str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres(database) => Some(&database.url),
            Backend::PostgresUrl(url) => Some(url),
        }
    }

    /// `"sqlite"` or `"postgres"`, as `/health` reports it.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) | Backend::PostgresUrl(_) => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_options_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
