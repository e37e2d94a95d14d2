//! What only the PostgreSQL backend promises beyond the conformance suite: several stores (server
//! processes) on one database, schema versioning, durability settings, and password redaction.
//! Skipped, with a note, when `OFFPAY_TEST_DATABASE_URL` is not set.

mod common;

use std::collections::{BTreeSet, HashMap};

use offpay_ledger::{
    AccountId, AccountKind, BalanceLimits, Batch, Currency, LedgerStore, NewAccount, Operation,
    Outcome, StoreError, Timestamp, Transfer, TransferId, TransferKind, verify_conservation,
};
use offpay_ledger_postgres::PostgresStore;

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// Few accounts, so that the two committers fight over the same rows.
const ACCOUNTS: u64 = 8;
/// Transfers each committer submits; half of them the other submits too.
const TRANSFERS_PER_COMMITTER: u64 = 2_000;
/// Transfers per batch, and batches per group commit.
const BATCH_TRANSFERS: u64 = 25;
const GROUP_BATCHES: u64 = 2;

macro_rules! skip_without_database {
    () => {
        if common::skip() {
            eprintln!("skipped: {} is not set", common::DATABASE_URL_VARIABLE);
            return;
        }
    };
}

fn account_name(index: u64) -> String {
    format!("acct-{index}")
}

/// The one body transfer `number` always has, whoever submits it.
fn transfer_number(number: u64) -> Transfer {
    let debit = number % ACCOUNTS;
    let credit = (debit + 1 + number % (ACCOUNTS - 1)) % ACCOUNTS;
    Transfer {
        id: TransferId::new(format!("t{number}")).unwrap_or_else(|error| panic!("{error}")),
        debit_account: AccountId::new(account_name(debit))
            .unwrap_or_else(|error| panic!("{error}")),
        credit_account: AccountId::new(account_name(credit))
            .unwrap_or_else(|error| panic!("{error}")),
        amount: Currency::KES
            .minor(1 + number % 97)
            .unwrap_or_else(|error| panic!("{error}")),
        kind: TransferKind::Posted,
        memo: String::new(),
    }
}

/// Commits `numbers` in groups; returns how many transfers were newly committed and how many
/// already existed.
fn submit(store: &mut PostgresStore, numbers: &[u64]) -> (u64, u64) {
    let (mut committed, mut existed) = (0, 0);
    for group in numbers.chunks((BATCH_TRANSFERS * GROUP_BATCHES) as usize) {
        let batches: Vec<Batch> = group
            .chunks(BATCH_TRANSFERS as usize)
            .map(|chunk| Batch::transfers(chunk.iter().map(|number| transfer_number(*number))))
            .collect();
        let results = store
            .commit(&batches, NOW)
            .unwrap_or_else(|error| panic!("commit: {error}"));
        for result in results {
            let outcomes = result.unwrap_or_else(|refusal| panic!("refused: {refusal}"));
            for outcome in outcomes {
                match outcome {
                    Outcome::TransferCommitted => committed += 1,
                    Outcome::TransferExists => existed += 1,
                    other => panic!("unexpected outcome {other:?}"),
                }
            }
        }
    }
    (committed, existed)
}

#[test]
fn two_stores_committing_concurrently_lose_and_double_apply_nothing() {
    skip_without_database!();
    let (guard, mut store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    let accounts: Vec<Operation> = (0..ACCOUNTS)
        .map(|index| {
            Operation::CreateAccount(NewAccount {
                id: AccountId::new(account_name(index)).unwrap_or_else(|error| panic!("{error}")),
                kind: AccountKind::Suspense,
                currency: Currency::KES,
                limits: BalanceLimits::default(),
            })
        })
        .collect();
    store
        .commit(
            &[Batch {
                operations: accounts,
            }],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));

    // Both committers start on the shared half at the same moment, then go on with their own.
    let half = TRANSFERS_PER_COMMITTER / 2;
    let shared: Vec<u64> = (half..TRANSFERS_PER_COMMITTER).collect();
    let first: Vec<u64> = shared.iter().copied().chain(0..half).collect();
    let second: Vec<u64> = shared
        .iter()
        .copied()
        .chain(TRANSFERS_PER_COMMITTER..TRANSFERS_PER_COMMITTER + half)
        .collect();
    let counts: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [first, second]
            .into_iter()
            .map(|numbers| {
                let url = url.clone();
                let schema = guard.schema.clone();
                scope.spawn(move || {
                    let mut store = PostgresStore::open_in_schema(&url, &schema)
                        .unwrap_or_else(|error| panic!("open: {error}"));
                    submit(&mut store, &numbers)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| panic!("committer panicked"))
            })
            .collect()
    });

    let distinct = TRANSFERS_PER_COMMITTER + half;
    let committed: u64 = counts.iter().map(|count| count.0).sum();
    let existed: u64 = counts.iter().map(|count| count.1).sum();
    assert_eq!(
        committed, distinct,
        "each distinct transfer commits exactly once"
    );
    assert_eq!(
        existed, half,
        "each shared transfer is found once by the slower committer"
    );

    let mut expected = HashMap::<String, i64>::new();
    let mut sequences = BTreeSet::new();
    for number in 0..distinct {
        let transfer = transfer_number(number);
        let stored = store
            .transfer(&transfer.id)
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("transfer {number} lost"));
        assert_eq!(stored.transfer, transfer);
        assert!(
            sequences.insert(stored.sequence),
            "sequence handed out twice"
        );
        let amount = transfer.amount.minor_signed();
        *expected
            .entry(transfer.debit_account.to_string())
            .or_default() -= amount;
        *expected
            .entry(transfer.credit_account.to_string())
            .or_default() += amount;
    }
    assert_eq!(
        sequences.iter().copied().collect::<Vec<_>>(),
        (1..=distinct).collect::<Vec<_>>(),
        "sequences are gap-free and one per transfer"
    );
    for (id, balance) in &expected {
        let account = store
            .account(&AccountId::new(id.clone()).unwrap_or_else(|error| panic!("{error}")))
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("account {id} missing"));
        assert_eq!(account.balance(), *balance, "balance of {id}");
    }
    let totals = verify_conservation(&mut store).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].accounts, ACCOUNTS);
}

#[test]
fn never_shows_the_password() {
    skip_without_database!();
    let secret = "not-the-real-pw-42";
    // Nothing listens on port 1: the connection error must name the server, not the password.
    let error = PostgresStore::open(&format!("postgres://ledger:{secret}@127.0.0.1:1/offpay"))
        .expect_err("nothing listens on port 1");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
    }
    let error = PostgresStore::open(&format!("postgres://ledger:{secret}@127.0.0.1:notaport/x"))
        .expect_err("invalid port");
    assert!(!format!("{error} {error:?}").contains(secret), "{error}");

    // A working connection (trust authentication ignores the password): Debug shows no secret.
    let (guard, _store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    let with_password = match url.split_once("://") {
        Some((scheme, rest)) if !rest.split('@').next().unwrap_or("").contains(':') => rest
            .split_once('@')
            .map(|(user, host)| format!("{scheme}://{user}:{secret}@{host}")),
        _ => None,
    };
    if let Some(with_password) = with_password
        && let Ok(store) = PostgresStore::open_in_schema(&with_password, &guard.schema)
    {
        let shown = format!("{store:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains(&guard.schema), "{shown}");
    }
}

#[test]
fn refuses_a_database_from_a_newer_offpay() {
    skip_without_database!();
    let (guard, store) = common::fresh_store();
    drop(store);
    let url = common::database_url().unwrap_or_default();
    let mut client =
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|error| panic!("{error}"));
    client
        .batch_execute(&format!(
            "INSERT INTO \"{}\".schema_migrations (version, applied_at) VALUES (999, 0)",
            guard.schema
        ))
        .unwrap_or_else(|error| panic!("{error}"));
    let error = PostgresStore::open_in_schema(&url, &guard.schema)
        .expect_err("a newer schema must be refused");
    assert!(
        matches!(error, StoreError::Schema(ref message) if message.contains("999")),
        "{error}"
    );
}

#[test]
fn reopening_keeps_the_ledger_and_migrates_once() {
    skip_without_database!();
    let (guard, mut store) = common::fresh_store();
    let definition = NewAccount {
        id: AccountId::new("kept").unwrap_or_else(|error| panic!("{error}")),
        kind: AccountKind::Customer,
        currency: Currency::UGX,
        limits: BalanceLimits::default(),
    };
    store
        .commit(
            &[Batch {
                operations: vec![Operation::CreateAccount(definition.clone())],
            }],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));
    drop(store);
    let url = common::database_url().unwrap_or_default();
    let mut reopened = PostgresStore::open_in_schema(&url, &guard.schema)
        .unwrap_or_else(|error| panic!("{error}"));
    let stored = reopened
        .account(&definition.id)
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|| panic!("account lost on reopen"));
    assert!(stored.matches(&definition));
    assert_eq!(reopened.backend(), "postgres");
}

#[test]
fn commits_with_synchronous_commit_on() {
    skip_without_database!();
    let (_guard, mut store) = common::fresh_store();
    let setting = store
        .synchronous_commit()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        setting, "on",
        "the test server must run with synchronous_commit = on"
    );
}

#[test]
fn keeps_statement_timeout_off_whatever_the_url_says() {
    skip_without_database!();
    let (guard, _store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    let separator = if url.contains('?') { '&' } else { '?' };
    // A timeout that cancels the wait for a synchronous standby gets the COMMIT acknowledged
    // without it: the store's sessions run without one, and after a reconnection too.
    let with_timeout = format!("{url}{separator}options=-c%20statement_timeout%3D1500");
    let mut plain = postgres::Client::connect(&with_timeout, postgres::NoTls)
        .unwrap_or_else(|error| panic!("{error}"));
    let given: String = plain
        .query_one("SELECT current_setting('statement_timeout')", &[])
        .and_then(|row| row.try_get(0))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(given, "1500ms", "the URL's options reach the server");
    let mut store = PostgresStore::open_in_schema(&with_timeout, &guard.schema)
        .unwrap_or_else(|error| panic!("{error}"));
    let setting = store
        .session_setting("statement_timeout")
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(setting, "0");
    assert_eq!(
        store
            .session_setting("search_path")
            .unwrap_or_else(|error| panic!("{error}")),
        guard.schema
    );
}

#[test]
fn a_multi_host_url_skips_a_host_that_is_down() {
    skip_without_database!();
    let (guard, _store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    // postgres://user@host:port/db... -> postgres://user@127.0.0.1:1,host:port/db...: nothing
    // listens on port 1, so the store must go on to the real server.
    let Some((scheme, rest)) = url.split_once("://") else {
        return;
    };
    let (user, host) = rest.split_once('@').unwrap_or(("", rest));
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let multi =
        format!("{scheme}://{user}127.0.0.1:1,{host}{separator}target_session_attrs=read-write");
    let mut store = PostgresStore::open_in_schema(&multi, &guard.schema)
        .unwrap_or_else(|error| panic!("{multi}: {error}"));
    assert!(
        store
            .totals()
            .unwrap_or_else(|error| panic!("{error}"))
            .is_empty()
    );
    let shown = format!("{store:?}");
    assert!(shown.contains("127.0.0.1:1,"), "{shown}");
}

#[test]
fn refuses_schema_names_that_need_quoting() {
    // No database needed: the name is checked before connecting.
    let error = PostgresStore::open_in_schema("postgres://nobody@127.0.0.1:1/x", "a\"; DROP")
        .expect_err("refused");
    assert!(matches!(error, StoreError::Schema(_)), "{error}");
}

#[test]
fn reconnects_after_the_server_drops_the_connection() {
    skip_without_database!();
    let (guard, _store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    let application = format!("{}_victim", guard.schema);
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut store = PostgresStore::open_in_schema(
        &format!("{url}{separator}application_name={application}"),
        &guard.schema,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let definition = NewAccount {
        id: AccountId::new("survivor").unwrap_or_else(|error| panic!("{error}")),
        kind: AccountKind::Customer,
        currency: Currency::KES,
        limits: BalanceLimits::default(),
    };
    store
        .commit(
            &[Batch {
                operations: vec![Operation::CreateAccount(definition.clone())],
            }],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));

    let mut admin =
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|error| panic!("{error}"));
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(terminated.len(), 1, "the store's session was not found");

    // A read that meets the dead session runs again on a new one, in the store's schema, with
    // its statements: the first call after the loss already succeeds.
    let account = store
        .account(&definition.id)
        .unwrap_or_else(|error| panic!("no reconnection: {error}"));
    assert!(account.is_some_and(|account| account.matches(&definition)));

    // So does a group commit whose transaction could not even begin on the dead session.
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(terminated.len(), 1, "the store's new session was not found");
    store
        .commit(
            &[Batch::transfers([Transfer {
                id: TransferId::new("after-reconnect").unwrap_or_else(|error| panic!("{error}")),
                debit_account: definition.id.clone(),
                credit_account: AccountId::new("other").unwrap_or_else(|error| panic!("{error}")),
                amount: Currency::KES
                    .minor(1)
                    .unwrap_or_else(|error| panic!("{error}")),
                kind: TransferKind::Posted,
                memo: String::new(),
            }])],
            NOW,
        )
        .unwrap_or_else(|error| panic!("commit after reconnect: {error}"));
}

#[test]
fn servers_starting_together_migrate_one_schema_once() {
    skip_without_database!();
    const OPENERS: usize = 4;
    let guard = common::fresh_schema();
    let url = common::database_url().unwrap_or_default();
    let barrier = std::sync::Barrier::new(OPENERS);
    std::thread::scope(|scope| {
        for _ in 0..OPENERS {
            scope.spawn(|| {
                barrier.wait();
                let mut store = PostgresStore::open_in_schema(&url, &guard.schema)
                    .unwrap_or_else(|error| panic!("concurrent open: {error}"));
                let totals = store.totals().unwrap_or_else(|error| panic!("{error}"));
                assert!(totals.is_empty());
            });
        }
    });
    let mut client =
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|error| panic!("{error}"));
    let applied: i64 = client
        .query_one(
            &format!(
                "SELECT COUNT(*) FROM \"{}\".schema_migrations",
                guard.schema
            ),
            &[],
        )
        .and_then(|row| row.try_get(0))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(applied, 1);
}

#[test]
fn a_read_transaction_sees_one_state_while_another_store_commits() {
    skip_without_database!();
    let (guard, mut writer) = common::fresh_store();
    let url = common::database_url().unwrap_or_else(|| panic!("no database"));
    let mut reader = PostgresStore::open_in_schema(&url, &guard.schema)
        .unwrap_or_else(|error| panic!("open a second store: {error}"));
    let id = |name: &str| AccountId::new(name).unwrap_or_else(|error| panic!("{error}"));
    let open = |name: &str, kind: AccountKind| {
        Operation::CreateAccount(NewAccount {
            id: id(name),
            kind,
            currency: Currency::KES,
            limits: BalanceLimits {
                balance_min: kind.default_balance_min(),
                balance_max: None,
            },
        })
    };
    let pay = |number: u64| {
        Batch::transfers([Transfer {
            id: TransferId::new(format!("pay-{number}")).unwrap_or_else(|error| panic!("{error}")),
            debit_account: id("float"),
            credit_account: id("alice"),
            amount: Currency::KES
                .minor(100)
                .unwrap_or_else(|error| panic!("{error}")),
            kind: TransferKind::Posted,
            memo: String::new(),
        }])
    };
    let commit = |store: &mut PostgresStore, batch: Batch| {
        let results = store
            .commit(&[batch], NOW)
            .unwrap_or_else(|error| panic!("commit: {error}"));
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    };
    commit(
        &mut writer,
        Batch {
            operations: vec![
                open("float", AccountKind::OperatorFloat),
                open("alice", AccountKind::Customer),
            ],
        },
    );
    commit(&mut writer, pay(1));
    let mut seen = Vec::new();
    reader
        .read_transaction(&mut |store| {
            let balance = |store: &mut dyn LedgerStore| {
                store
                    .account(&id("alice"))
                    .map(|account| account.map_or(0, |account| account.balance()))
            };
            seen.push(balance(store)?);
            commit(&mut writer, pay(2));
            seen.push(balance(store)?);
            Ok(())
        })
        .unwrap_or_else(|error| panic!("read transaction: {error}"));
    assert_eq!(seen, [100, 100], "a commit in between is not seen");
    let after = reader
        .account(&id("alice"))
        .unwrap_or_else(|error| panic!("{error}"))
        .map(|account| account.balance());
    assert_eq!(after, Some(200), "the next read sees it");
    // The transaction was read-only: a write inside it is refused, and the store works after.
    let refused = reader.read_transaction(&mut |store| {
        store.commit(&[pay(3)], NOW)?;
        Ok(())
    });
    assert!(refused.is_err(), "a commit inside a read transaction fails");
    commit(&mut reader, pay(4));
}

/// A session drops its cached plans each time it has made severalfold more calls, so that plans
/// made while a new ledger was nearly empty do not outlive its growth (and a dropped plan changes
/// no answer).
#[test]
fn a_session_plans_again_as_the_ledger_grows() {
    skip_without_database!();
    let (_guard, mut store) = common::fresh_store();
    assert_eq!(
        store.replan_state(),
        (0, offpay_ledger_postgres::REPLAN_FIRST_CALLS)
    );
    let account = AccountId::new(account_name(0)).unwrap_or_else(|error| panic!("{error}"));
    for call in 1..=offpay_ledger_postgres::REPLAN_FIRST_CALLS {
        store
            .account(&account)
            .unwrap_or_else(|error| panic!("call {call}: {error}"));
    }
    assert_eq!(
        store.replan_state(),
        (
            offpay_ledger_postgres::REPLAN_FIRST_CALLS,
            offpay_ledger_postgres::REPLAN_FIRST_CALLS * offpay_ledger_postgres::REPLAN_GROWTH
        )
    );
    // The session still answers after its plans were dropped.
    assert!(
        store
            .account(&account)
            .unwrap_or_else(|error| panic!("{error}"))
            .is_none()
    );
}
