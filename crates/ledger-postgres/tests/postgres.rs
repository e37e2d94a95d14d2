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
        sequences.len() as u64,
        distinct,
        "one sequence per transfer"
    );
    // Sequence numbers are no longer gap-free or in commit order across accounts (schema
    // version 2 has no global lock), but on each account they increase in commit order: every
    // account's history chain holds all its transfers, newest first.
    let mut transfers_on = HashMap::<String, usize>::new();
    for number in 0..distinct {
        let transfer = transfer_number(number);
        *transfers_on
            .entry(transfer.debit_account.to_string())
            .or_default() += 1;
        *transfers_on
            .entry(transfer.credit_account.to_string())
            .or_default() += 1;
    }
    for (id, count) in &transfers_on {
        let account = AccountId::new(id.clone()).unwrap_or_else(|error| panic!("{error}"));
        let history = store
            .history(&account, None, 1000)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            history.len(),
            *count,
            "{id}'s history holds all its transfers"
        );
        assert!(
            history
                .windows(2)
                .all(|pair| pair[0].sequence > pair[1].sequence),
            "{id}'s history is in decreasing sequence order"
        );
    }
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
    // Its prepared statements are planned once per session, as index lookups.
    for (name, value) in [
        ("plan_cache_mode", "force_generic_plan"),
        ("enable_seqscan", "off"),
    ] {
        assert_eq!(
            store
                .session_setting(name)
                .unwrap_or_else(|error| panic!("{error}")),
            value
        );
    }
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
    assert_eq!(applied, 2, "both migrations applied, once");
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

fn account_definition(name: &str) -> Operation {
    Operation::CreateAccount(NewAccount {
        id: AccountId::new(name.to_owned()).unwrap_or_else(|error| panic!("{error}")),
        kind: AccountKind::Suspense,
        currency: Currency::KES,
        limits: BalanceLimits::default(),
    })
}

fn one_transfer(id: &str, debit: &str, credit: &str) -> Batch {
    Batch::transfers([Transfer {
        id: TransferId::new(id.to_owned()).unwrap_or_else(|error| panic!("{error}")),
        debit_account: AccountId::new(debit.to_owned()).unwrap_or_else(|error| panic!("{error}")),
        credit_account: AccountId::new(credit.to_owned()).unwrap_or_else(|error| panic!("{error}")),
        amount: Currency::KES
            .minor(100)
            .unwrap_or_else(|error| panic!("{error}")),
        kind: TransferKind::Posted,
        memo: String::new(),
    }])
}

/// The shardable schema's promise: a group waits only for the rows it touches. Here a group on
/// account `a` is stuck behind a lock another session holds on `a`'s row (as a long group would);
/// a group on `c` and `d` still commits meanwhile. Under schema version 1 every group first took
/// the one `ledger_state` row, so the second group queued behind the stuck one.
#[test]
fn a_group_on_other_accounts_commits_while_one_waits_for_a_locked_account() {
    skip_without_database!();
    let (guard, mut store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    let definitions: Vec<Operation> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| account_definition(name))
        .collect();
    store
        .commit(
            &[Batch {
                operations: definitions,
            }],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));

    let mut holder =
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|error| panic!("{error}"));
    let mut held = holder
        .transaction()
        .unwrap_or_else(|error| panic!("{error}"));
    held.batch_execute(&format!(
        "SELECT 1 FROM \"{}\".accounts WHERE id = 'a' FOR UPDATE",
        guard.schema
    ))
    .unwrap_or_else(|error| panic!("{error}"));

    let (stuck_done, stuck_result) = std::sync::mpsc::channel();
    let (free_done, free_result) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let (stuck_url, schema) = (url.clone(), guard.schema.clone());
        scope.spawn(move || {
            let mut stuck = PostgresStore::open_in_schema(&stuck_url, &schema)
                .unwrap_or_else(|error| panic!("open: {error}"));
            let result = stuck.commit(&[one_transfer("stuck", "a", "b")], NOW);
            let _ = stuck_done.send(result.map(|results| results.len()));
        });
        // Wait until the stuck group is really waiting for `a`'s row lock.
        let mut watcher = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|error| panic!("{error}"));
        let mut polls = 0;
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND application_name = 'offpay-ledger'",
                    &[],
                )
                .and_then(|row| row.try_get(0))
                .unwrap_or_else(|error| panic!("{error}"));
            if waiting > 0 {
                break;
            }
            polls += 1;
            assert!(polls < 600, "the group on `a` never waited for the lock");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let (free_url, schema) = (url.clone(), guard.schema.clone());
        scope.spawn(move || {
            let mut free = PostgresStore::open_in_schema(&free_url, &schema)
                .unwrap_or_else(|error| panic!("open: {error}"));
            let result = free.commit(&[one_transfer("free", "c", "d")], NOW);
            let _ = free_done.send(result.map(|results| results.len()));
        });
        // Generous: this is a liveness check, not a timing one. Under a global lock the group
        // on `c` and `d` waits for as long as `a` is held, which is until this check gives up.
        let free = free_result
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the group on c and d waited for the group on a"));
        assert_eq!(free.unwrap_or_else(|error| panic!("{error}")), 1);
        assert!(
            stuck_result.try_recv().is_err(),
            "the group on `a` cannot commit while `a` is locked"
        );
        held.rollback().unwrap_or_else(|error| panic!("{error}"));
        let stuck = stuck_result
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the group on `a` never finished"));
        assert_eq!(stuck.unwrap_or_else(|error| panic!("{error}")), 1);
    });
    let a = store
        .history(
            &AccountId::new("a".to_owned()).unwrap_or_else(|error| panic!("{error}")),
            None,
            10,
        )
        .unwrap_or_else(|error| panic!("{error}"));
    let c = store
        .history(
            &AccountId::new("c".to_owned()).unwrap_or_else(|error| panic!("{error}")),
            None,
            10,
        )
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!((a.len(), c.len()), (1, 1));
    assert!(
        c[0].sequence < a[0].sequence,
        "the free group drew its number first, although the stuck group started first"
    );
    verify_conservation(&mut store).unwrap_or_else(|error| panic!("{error}"));
}

/// Conditional record writes from several stores at once: every write that is acknowledged
/// was made against the version it expected, so none is lost. Without a global lock this holds
/// only because a group locks the records it writes (and a group that creates a record loses a
/// race for it with a unique violation, and decides again).
#[test]
fn conditional_record_writes_from_several_stores_lose_no_update() {
    skip_without_database!();
    const WRITERS: usize = 4;
    const ROUNDS: usize = 60;
    let (guard, mut store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    let put = |key: &str, value: u64, expected: u64| Batch {
        operations: vec![Operation::PutRecord(offpay_ledger::RecordWrite {
            namespace: "test".to_owned(),
            key: key.to_owned(),
            value: Some(value.to_be_bytes().to_vec()),
            expected_version: Some(expected),
        })],
    };
    let barrier = std::sync::Barrier::new(WRITERS);
    let won: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (url, schema, barrier) = (url.clone(), guard.schema.clone(), &barrier);
                scope.spawn(move || {
                    let mut store = PostgresStore::open_in_schema(&url, &schema)
                        .unwrap_or_else(|error| panic!("open: {error}"));
                    barrier.wait();
                    // Everyone tries to create the same record: one may.
                    let created = store
                        .commit(&[put("created-once", 1, 0)], NOW)
                        .unwrap_or_else(|error| panic!("{error}"));
                    let creations = u64::from(created[0].is_ok());
                    // Then each increments a counter, read-modify-write on the version it read.
                    let mut increments = 0;
                    for _ in 0..ROUNDS {
                        let current = store
                            .record("test", "counter")
                            .unwrap_or_else(|error| panic!("{error}"));
                        let (value, version) = current.map_or((0, 0), |record| {
                            let bytes: [u8; 8] =
                                record.value.as_slice().try_into().unwrap_or_default();
                            (u64::from_be_bytes(bytes), record.version)
                        });
                        let results = store
                            .commit(&[put("counter", value + 1, version)], NOW)
                            .unwrap_or_else(|error| panic!("{error}"));
                        if results[0].is_ok() {
                            increments += 1;
                        }
                    }
                    (creations, increments)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|_| panic!("writer panicked")))
            .collect()
    });
    let creations: u64 = won.iter().map(|(created, _)| created).sum();
    assert_eq!(creations, 1, "a record that must not exist is created once");
    let increments: u64 = won.iter().map(|(_, increments)| increments).sum();
    assert!(increments > 0);
    let counter = store
        .record("test", "counter")
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|| panic!("the counter is missing"));
    let bytes: [u8; 8] = counter.value.as_slice().try_into().unwrap_or_default();
    assert_eq!(
        (u64::from_be_bytes(bytes), counter.version),
        (increments, increments),
        "every acknowledged increment is in the counter"
    );
}

/// The lock server processes take around an append to the audit chain: one connection holds it,
/// another waits its bounded time and is told it did not get it; given back, the other gets it;
/// a schema of its own has a lock of its own; a connection that goes away gives it back.
#[test]
fn a_shared_lock_is_held_by_one_connection_at_a_time() {
    use std::time::Duration;
    skip_without_database!();
    let url = common::database_url().unwrap_or_default();
    let (guard, mut first) = common::fresh_store();
    let mut second = PostgresStore::open_in_schema(&url, &guard.schema)
        .unwrap_or_else(|error| panic!("second store: {error}"));
    let wait = Duration::from_millis(200);
    assert!(first.lock_shared_name("chain", wait).unwrap());
    assert!(
        !second.lock_shared_name("chain", wait).unwrap(),
        "a second connection took a lock the first holds"
    );
    // Another name, or the same name in another schema, is another lock.
    assert!(second.lock_shared_name("other", wait).unwrap());
    let (_other_guard, mut elsewhere) = common::fresh_store();
    assert!(elsewhere.lock_shared_name("chain", wait).unwrap());
    // The session goes back to waiting without limit once it has its answer.
    assert_eq!(second.session_setting("lock_timeout").unwrap(), "0");
    first.unlock_shared_name("chain").unwrap();
    assert!(second.lock_shared_name("chain", wait).unwrap());
    // A holder that goes away gives the lock back with its session.
    drop(second);
    let mut third = PostgresStore::open_in_schema(&url, &guard.schema)
        .unwrap_or_else(|error| panic!("third store: {error}"));
    assert!(
        third
            .lock_shared_name("chain", Duration::from_secs(5))
            .unwrap()
    );
}

/// The group's write and its `COMMIT` go on the wire together, so the write statement itself
/// must refuse to leave a group half-written: here a trigger (a DBA's, or an extension's)
/// silently skips every update of the accounts' balances. The transfer's insert would go
/// through and conservation break; instead the statement fails on its own row-count check, the
/// `COMMIT` behind it rolls back, and neither the transfer nor any balance changed.
#[test]
fn a_write_that_changes_fewer_rows_than_decided_commits_nothing() {
    skip_without_database!();
    let (guard, mut store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    store
        .commit(
            &[Batch {
                operations: vec![account_definition("a"), account_definition("b")],
            }],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));
    let mut dba =
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|error| panic!("{error}"));
    dba.batch_execute(&format!(
        "CREATE FUNCTION \"{schema}\".skip_row() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RETURN NULL; END $$;
         CREATE TRIGGER skip_balance_updates BEFORE UPDATE ON \"{schema}\".accounts
           FOR EACH ROW EXECUTE FUNCTION \"{schema}\".skip_row();",
        schema = guard.schema
    ))
    .unwrap_or_else(|error| panic!("{error}"));

    let refused = store.commit(&[one_transfer("t1", "a", "b")], NOW);
    match refused {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("nothing was committed"), "{message}");
        }
        other => panic!("the half-applied group was not refused: {other:?}"),
    }
    let transfer = TransferId::new("t1".to_owned()).unwrap_or_else(|error| panic!("{error}"));
    assert!(
        store
            .transfer(&transfer)
            .unwrap_or_else(|error| panic!("{error}"))
            .is_none(),
        "the transfer was committed without its balances"
    );
    verify_conservation(&mut store).unwrap_or_else(|error| panic!("{error}"));

    // The session is fit for the next group once the trigger is gone.
    dba.batch_execute(&format!(
        "DROP TRIGGER skip_balance_updates ON \"{}\".accounts",
        guard.schema
    ))
    .unwrap_or_else(|error| panic!("{error}"));
    let results = store
        .commit(&[one_transfer("t1", "a", "b")], NOW)
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        matches!(results.first(), Some(Ok(outcomes)) if outcomes == &[Outcome::TransferCommitted]),
        "{results:?}"
    );
    verify_conservation(&mut store).unwrap_or_else(|error| panic!("{error}"));
}

fn record_put(key: &str, value: &[u8], expected: Option<u64>) -> Operation {
    Operation::PutRecord(offpay_ledger::RecordWrite {
        namespace: "test".to_owned(),
        key: key.to_owned(),
        value: Some(value.to_vec()),
        expected_version: expected,
    })
}

fn record_check(key: &str, version: u64) -> Operation {
    Operation::CheckRecord(offpay_ledger::RecordCheck {
        namespace: "test".to_owned(),
        key: key.to_owned(),
        version,
    })
}

/// What `known_groups` answers after `committed` groups went the known way and `stale` writes
/// met changed rows.
fn known(committed: u64, stale: u64) -> Option<offpay_ledger::KnownGroups> {
    Some(offpay_ledger::KnownGroups { committed, stale })
}

/// Commits one batch and gives its result.
fn commit_one(
    store: &mut PostgresStore,
    operations: Vec<Operation>,
) -> Result<Vec<Outcome>, offpay_ledger::BatchRefusal> {
    let mut results = store
        .commit(&[Batch { operations }], NOW)
        .unwrap_or_else(|error| panic!("commit: {error}"));
    results.remove(0)
}

/// The transfer operation of [`one_transfer`].
fn transfer_operation(id: &str, debit: &str, credit: &str) -> Operation {
    one_transfer(id, debit, credit).operations.remove(0)
}

/// A store decides a group on the rows it last loaded or wrote, without loading them, and its
/// write checks them (see `known.rs`). Here another store (another server process) changes those
/// rows in between. Each scenario starts a store that knows nothing, lets it learn the rows from
/// one group sent the usual way, has the other store change them, and then sends the group that
/// would go the known way: its write must find the rows stale (counted), and the group is decided
/// again on the rows as they are.
#[test]
fn a_group_decided_on_known_rows_commits_only_if_they_are_still_so() {
    skip_without_database!();
    let (guard, mut other) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    let learner = || {
        PostgresStore::open_in_schema(&url, &guard.schema)
            .unwrap_or_else(|error| panic!("store: {error}"))
    };
    let account = |store: &mut PostgresStore, name: &str| {
        store
            .account(&AccountId::new(name.to_owned()).unwrap_or_else(|error| panic!("{error}")))
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("account {name} is missing"))
    };
    let refused_first = |result: &Result<Vec<Outcome>, offpay_ledger::BatchRefusal>| matches!(result, Err(refusal) if refusal.index == 0);
    assert!(
        commit_one(
            &mut other,
            vec![
                account_definition("a"),
                account_definition("b"),
                account_definition("c"),
                account_definition("d"),
                record_put("user", b"v1", Some(0)),
                record_put("counter", b"1", Some(0)),
            ],
        )
        .is_ok()
    );

    // Accounts. The store learns `a` and `b` from t1, then commits t2 the known way.
    let mut first = learner();
    assert!(commit_one(&mut first, vec![transfer_operation("t1", "a", "b")]).is_ok());
    assert!(commit_one(&mut first, vec![transfer_operation("t2", "a", "b")]).is_ok());
    assert_eq!(
        first.known_groups(),
        known(1, 0),
        "the known path was not taken"
    );
    // The other store moves both accounts: the first's balances are stale, and its write must
    // not overwrite the other's transfer.
    assert!(commit_one(&mut other, vec![transfer_operation("t3", "a", "b")]).is_ok());
    assert!(commit_one(&mut first, vec![transfer_operation("t4", "a", "b")]).is_ok());
    assert_eq!(
        first.known_groups(),
        known(1, 1),
        "the stale accounts were not caught"
    );
    assert_eq!(account(&mut first, "a").debits_posted, 400);
    assert_eq!(account(&mut first, "b").credits_posted, 400);
    // `a`'s history is one chain through all four, newest first, sequence numbers rising.
    let a = AccountId::new("a".to_owned()).unwrap_or_else(|error| panic!("{error}"));
    let history = first
        .history(&a, None, 10)
        .unwrap_or_else(|error| panic!("{error}"));
    let ids: Vec<&str> = history
        .iter()
        .map(|record| record.transfer.id.as_str())
        .collect();
    assert_eq!(ids, ["t4", "t3", "t2", "t1"]);
    for pair in history.windows(2) {
        assert!(pair[0].sequence > pair[1].sequence, "{history:?}");
        assert_eq!(pair[0].debit_previous, pair[1].sequence, "{history:?}");
    }

    // A record only checked: the store knows "user" at version 1 (as a server that let a caller
    // in on a cached credential); the other store moves it to 2. The transfer checked against
    // version 1 is refused, whole.
    let mut second = learner();
    assert!(
        commit_one(
            &mut second,
            vec![record_check("user", 1), transfer_operation("p1", "a", "b")],
        )
        .is_ok()
    );
    assert!(commit_one(&mut other, vec![record_put("user", b"v2", Some(1))]).is_ok());
    let refused = commit_one(
        &mut second,
        vec![record_check("user", 1), transfer_operation("p2", "a", "b")],
    );
    assert!(refused_first(&refused), "{refused:?}");
    assert_eq!(
        second.known_groups(),
        known(0, 1),
        "the stale record was not caught"
    );

    // A conditional write on the version the store knows, moved meanwhile by the other store.
    let mut third = learner();
    assert!(commit_one(&mut third, vec![record_check("counter", 1)]).is_ok());
    assert!(commit_one(&mut other, vec![record_put("counter", b"2", Some(1))]).is_ok());
    let refused = commit_one(&mut third, vec![record_put("counter", b"x", Some(1))]);
    assert!(refused_first(&refused), "{refused:?}");
    assert_eq!(
        third.known_groups(),
        known(0, 1),
        "the stale record was not caught"
    );
    let counter = third
        .record("test", "counter")
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|| panic!("the counter is missing"));
    assert_eq!((counter.value.as_slice(), counter.version), (&b"2"[..], 2));

    // A record the store believes absent, created meanwhile by the other store: the check that
    // it does not exist fails.
    let mut fourth = learner();
    assert!(
        commit_one(
            &mut fourth,
            vec![record_check("late", 0), transfer_operation("q1", "a", "b")],
        )
        .is_ok()
    );
    assert!(commit_one(&mut other, vec![record_put("late", b"here", Some(0))]).is_ok());
    let refused = commit_one(
        &mut fourth,
        vec![record_check("late", 0), transfer_operation("q2", "a", "b")],
    );
    assert!(refused_first(&refused), "{refused:?}");
    assert_eq!(
        fourth.known_groups(),
        known(0, 1),
        "the record created meanwhile was missed"
    );

    // A transfer id committed before the store learned its accounts (a client's retry of a
    // transfer that went through): the known way takes it as new, its insert meets the stored
    // one, and the group is decided again as the idempotent repeat it is.
    assert!(commit_one(&mut other, vec![transfer_operation("r1", "c", "d")]).is_ok());
    let mut fifth = learner();
    assert!(commit_one(&mut fifth, vec![transfer_operation("r2", "c", "d")]).is_ok());
    let repeated = commit_one(&mut fifth, vec![transfer_operation("r1", "c", "d")]);
    assert_eq!(repeated, Ok(vec![Outcome::TransferExists]));
    assert_eq!(
        fifth.known_groups(),
        known(0, 1),
        "the stored transfer was missed"
    );
    assert_eq!(account(&mut fifth, "c").debits_posted, 200);

    // Spare sequence numbers: the store draws them with each write, for the groups after it.
    // Here it learns `c` and `d` from a refused group (which writes nothing, so draws none)
    // after the other store put a larger number on them: its spare numbers are too small for
    // them, so its next group on them goes the usual way and draws numbers above theirs.
    let mut sixth = learner();
    assert!(commit_one(&mut sixth, vec![transfer_operation("s1", "a", "b")]).is_ok());
    assert!(commit_one(&mut other, vec![transfer_operation("s2", "c", "d")]).is_ok());
    let refused = commit_one(
        &mut sixth,
        vec![
            transfer_operation("s3", "c", "d"),
            transfer_operation("s4", "c", "c"),
        ],
    );
    assert!(refused.is_err(), "{refused:?}");
    assert!(commit_one(&mut sixth, vec![transfer_operation("s5", "c", "d")]).is_ok());
    assert_eq!(sixth.known_groups(), known(0, 0));
    let c = AccountId::new("c".to_owned()).unwrap_or_else(|error| panic!("{error}"));
    let history = sixth
        .history(&c, None, 10)
        .unwrap_or_else(|error| panic!("{error}"));
    let ids: Vec<&str> = history
        .iter()
        .map(|record| record.transfer.id.as_str())
        .collect();
    assert_eq!(ids, ["s5", "s2", "r2", "r1"]);
    for pair in history.windows(2) {
        assert!(pair[0].sequence > pair[1].sequence, "{history:?}");
        assert_eq!(pair[0].debit_previous, pair[1].sequence, "{history:?}");
    }

    assert_eq!(
        account(&mut other, "a").debits_posted,
        100 * (4 + 1 + 1 + 1)
    );
    verify_conservation(&mut other).unwrap_or_else(|error| panic!("{error}"));
}

/// A database administrator's edit of an account row between two groups of one store is not
/// overwritten by what the store knew: the group is decided on the edited row.
#[test]
fn a_known_account_edited_in_the_database_is_decided_on_as_edited() {
    skip_without_database!();
    let (guard, mut store) = common::fresh_store();
    let url = common::database_url().unwrap_or_default();
    assert!(
        commit_one(
            &mut store,
            vec![account_definition("a"), account_definition("b")],
        )
        .is_ok()
    );
    assert!(commit_one(&mut store, vec![transfer_operation("t1", "a", "b")]).is_ok());
    let mut dba =
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|error| panic!("{error}"));
    // Limits set behind the store's back: `a` may not go below -150.
    dba.batch_execute(&format!(
        "UPDATE \"{}\".accounts SET balance_min = -150 WHERE id = 'a'",
        guard.schema
    ))
    .unwrap_or_else(|error| panic!("{error}"));
    let refused = commit_one(&mut store, vec![transfer_operation("t2", "a", "b")]);
    assert!(
        matches!(&refused, Err(refusal) if matches!(refusal.reason, offpay_ledger::Refusal::InsufficientFunds { .. })),
        "{refused:?}"
    );
    let a = store
        .account(&AccountId::new("a".to_owned()).unwrap_or_else(|error| panic!("{error}")))
        .unwrap_or_else(|error| panic!("{error}"))
        .unwrap_or_else(|| panic!("account a is missing"));
    assert_eq!((a.debits_posted, a.limits.balance_min), (100, Some(-150)));
}
