//! What the bank's database administrator does to a running server's SMS records, with real SQL
//! on either backend (issue 18's insider), and how many fraud flags of a kind were raised.

use std::time::Duration;

use serde_json::Value;

use super::{BackendKind, TestServer};

/// How many `sms` fraud flags name `kind` (a flag's kind or its evidence's record kind).
pub fn flags(server: &TestServer, kind: &str) -> usize {
    let flags = server.get("/api/v1/fraud?rail=sms");
    flags
        .to_string()
        .matches(&format!("\"kind\":\"{kind}\""))
        .count()
}

/// Runs `statement` (with `$1` = key pattern, `$2` = new value bytes) on the server's database,
/// as a database administrator would, and returns the rows it changed.
pub fn dba(
    server: &TestServer,
    kind: BackendKind,
    sql_sqlite: &str,
    sql_postgres: &str,
    a: &str,
    b: &[u8],
) -> u64 {
    match kind {
        BackendKind::Sqlite => {
            let connection =
                rusqlite::Connection::open(server.data_dir.join("offpay.sqlite")).unwrap();
            connection.busy_timeout(Duration::from_secs(10)).unwrap();
            connection
                .execute(sql_sqlite, rusqlite::params![a, b])
                .unwrap() as u64
        }
        BackendKind::Postgres => {
            let mut client =
                postgres::Client::connect(server.database_url().unwrap(), postgres::NoTls).unwrap();
            client.execute(sql_postgres, &[&a, &b]).unwrap()
        }
    }
}

/// Reads an SMS record's stored bytes and version as a database administrator would.
pub fn dba_read(server: &TestServer, kind: BackendKind, key: &str) -> (Vec<u8>, i64) {
    match kind {
        BackendKind::Sqlite => {
            let connection =
                rusqlite::Connection::open(server.data_dir.join("offpay.sqlite")).unwrap();
            connection
                .query_row(
                    "SELECT value, version FROM records WHERE namespace = 'sms' AND key = ?1",
                    [key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .unwrap()
        }
        BackendKind::Postgres => {
            let mut client =
                postgres::Client::connect(server.database_url().unwrap(), postgres::NoTls).unwrap();
            let row = client
                .query_one(
                    "SELECT value, version FROM records WHERE namespace = 'sms' AND key = $1",
                    &[&key],
                )
                .unwrap();
            (row.get(0), row.get(1))
        }
    }
}

/// [`dba_read`], the record's JSON.
pub fn dba_read_json(server: &TestServer, kind: BackendKind, key: &str) -> (Value, i64) {
    let (bytes, version) = dba_read(server, kind, key);
    (serde_json::from_slice(&bytes).unwrap(), version)
}

/// Writes `value` under `key` with a real SQL UPDATE, bumping the version so every process reads
/// the DBA's row; then waits out the server's record cache (5 s).
pub fn dba_write(server: &TestServer, kind: BackendKind, key: &str, value: &[u8], version: i64) {
    let changed = dba(
        server,
        kind,
        &format!(
            "UPDATE records SET value = ?2, version = {} WHERE namespace = 'sms' AND key = ?1",
            version + 1
        ),
        &format!(
            "UPDATE records SET value = $2, version = {} WHERE namespace = 'sms' AND key = $1",
            version + 1
        ),
        key,
        value,
    );
    assert_eq!(changed, 1);
    std::thread::sleep(Duration::from_secs(6));
}
