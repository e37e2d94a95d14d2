//! PostgreSQL over TLS: a cluster of the test's own with a certificate from a CA made in the
//! test. `sslmode=verify-full` with that CA as `sslrootcert` connects over TLS; a certificate
//! from another CA, or issued for another host, is refused; without `sslmode` the session is plain.
//! Skipped, with a note, where the PostgreSQL server programs are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use offpay_ledger::{
    AccountId, AccountKind, BalanceLimits, Batch, Currency, LedgerStore, NewAccount, Operation,
    Timestamp,
};
use offpay_ledger_postgres::PostgresStore;
use offpay_test_support::cluster::TempCluster;
use offpay_test_support::tls::{Authority, Issued};

fn tls_cluster(certificate: &Issued) -> Option<TempCluster> {
    match TempCluster::create() {
        Ok(cluster) => {
            cluster
                .enable_tls(&certificate.certificate_pem, &certificate.key_pem)
                .unwrap();
            cluster.start();
            cluster.execute("postgres", "CREATE DATABASE offpay");
            Some(cluster)
        }
        Err(reason) => {
            eprintln!("skipped PostgreSQL over TLS: {reason}");
            None
        }
    }
}

fn ca_file(directory: &tempfile::TempDir, authority: &Authority) -> String {
    let path = directory.path().join("root.crt");
    authority.write_pem(&path);
    path.display().to_string()
}

/// Whether the store's session (application name `offpay-ledger`) uses TLS, as the server sees.
fn sessions_over_tls(cluster: &TempCluster) -> Vec<bool> {
    cluster
        .query(
            "postgres",
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'offpay-ledger'",
        )
        .into_iter()
        .map(|row| row[0].as_deref() == Some("t"))
        .collect()
}

fn commit_something(store: &mut PostgresStore) {
    let results = store
        .commit(
            &[Batch {
                operations: vec![Operation::CreateAccount(NewAccount {
                    id: AccountId::new("over-tls".to_owned()).unwrap(),
                    kind: AccountKind::Suspense,
                    currency: Currency::KES,
                    limits: BalanceLimits::default(),
                })],
            }],
            Timestamp(1_700_000_000_000),
        )
        .unwrap();
    assert!(results[0].is_ok());
}

#[test]
fn verify_full_connects_over_tls_and_refuses_a_certificate_it_cannot_trust() {
    let authority = Authority::new("offpay test CA");
    let certificate = authority.issue(&["127.0.0.1", "localhost"]);
    let Some(cluster) = tls_cluster(&certificate) else {
        return;
    };
    let directory = tempfile::tempdir().unwrap();
    let roots = ca_file(&directory, &authority);
    let url = cluster.url("offpay");

    let mut store =
        PostgresStore::open(&format!("{url}?sslmode=verify-full&sslrootcert={roots}")).unwrap();
    commit_something(&mut store);
    assert_eq!(sessions_over_tls(&cluster), [true]);
    drop(store);

    // Another CA's roots: the server's certificate is not trusted, and nothing connects.
    let stranger = Authority::new("someone else's CA");
    let other_roots = directory.path().join("other.crt");
    std::fs::write(&other_roots, &stranger.pem).unwrap();
    let refused = PostgresStore::open(&format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        other_roots.display()
    ))
    .expect_err("a server certificate from an unknown CA is refused");
    assert!(
        refused.to_string().contains("certificate"),
        "the error names the certificate: {refused}"
    );

    // `require` verifies too (stricter than libpq's `require`, which encrypts without checking).
    let refused = PostgresStore::open(&format!(
        "{url}?sslmode=require&sslrootcert={}",
        other_roots.display()
    ));
    assert!(refused.is_err(), "require verifies the certificate");

    // Without sslmode the session is plain TCP, as before.
    let mut plain = PostgresStore::open(&url).unwrap();
    commit_something(&mut plain);
    assert_eq!(sessions_over_tls(&cluster), [false]);
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    let authority = Authority::new("offpay test CA");
    let certificate = authority.issue(&["db.example.org"]);
    let Some(cluster) = tls_cluster(&certificate) else {
        return;
    };
    let directory = tempfile::tempdir().unwrap();
    let roots = ca_file(&directory, &authority);
    let refused = PostgresStore::open(&format!(
        "{}?sslmode=verify-full&sslrootcert={roots}",
        cluster.url("offpay")
    ))
    .expect_err("a certificate issued for another host is refused");
    assert!(refused.to_string().contains("certificate"), "{refused}");
}

#[test]
fn tls_settings_it_cannot_honour_are_refused_plainly() {
    for (url, expected) in [
        (
            "postgres://postgres@127.0.0.1:1/x?sslmode=sometimes",
            "sslmode \"sometimes\" is not one of",
        ),
        (
            "postgres://postgres@127.0.0.1:1/x?sslrootcert=/nonexistent/root.crt",
            "no sslmode that uses TLS",
        ),
        (
            "postgres://postgres@127.0.0.1:1/x?sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
            "cannot read the PostgreSQL root certificates in /nonexistent/root.crt",
        ),
        (
            "host=127.0.0.1 port=1 user=postgres dbname=x sslmode=require",
            "sslmode=require is honoured in postgres:// URLs",
        ),
    ] {
        let error = PostgresStore::open(url).expect_err("refused");
        assert!(error.to_string().contains(expected), "{url}: {error}");
    }
}
