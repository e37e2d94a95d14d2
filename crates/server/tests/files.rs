//! The server's own files are private without help from the process's umask: the data
//! directory 0700, the SQLite database with its WAL and shared-memory files, the token and the
//! rails' key files 0600. (`offpay` also sets a umask of 077; this test runs without one, as a
//! program embedding the server would.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use offpay_test_support::{Backend, InProcess};
use serde_json::json;

fn walk(directory: &Path, found: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        found.push((
            path.display().to_string(),
            metadata.permissions().mode() & 0o777,
        ));
        if metadata.is_dir() {
            walk(&path, found);
        }
    }
}

#[tokio::test]
async fn the_servers_files_are_its_owners_alone_whatever_the_umask() {
    let server = InProcess::start(Backend::Sqlite).await;
    let (status, body) = server
        .post("/api/v1/accounts", json!({ "id": "a", "kind": "customer" }))
        .await;
    assert_eq!(status, 201, "{body}");
    let data = server.data_dir();
    let mode = std::fs::metadata(data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "the data directory is {mode:o}");
    let mut found = Vec::new();
    walk(data, &mut found);
    let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "offpay.sqlite",
        "offpay.sqlite-wal",
        "admin.token",
        "offpay.lock",
    ] {
        assert!(
            names.iter().any(|name| name.ends_with(expected)),
            "{expected} in {names:?}"
        );
    }
    for (name, mode) in &found {
        let wanted = if Path::new(name).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, wanted, "{name} is {mode:o}");
    }
}
