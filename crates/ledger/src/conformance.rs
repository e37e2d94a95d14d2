//! The one test suite every [`LedgerStore`] backend must pass.
//!
//! A backend's test file calls [`ledger_conformance_tests!`](crate::ledger_conformance_tests) with
//! an expression that opens a fresh, empty store; each contract below becomes one `#[test]`, named
//! for what it promises.

#![allow(
    clippy::expect_used,
    reason = "this module is a test suite: a failed expectation is a failed test"
)]

use offpay_money::{Amount, Currency};

use crate::ids::{AccountId, TransferId};
use crate::model::{
    AccountKind, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, NewAccount, Operation, Outcome,
    PendingState, RecordCheck, RecordWrite, Refusal, Timestamp, Transfer, TransferKind,
};
use crate::store::{LedgerStore, verify_conservation};

/// Generates one `#[test]` per contract for a backend. `$open` is an expression evaluating to a
/// pair `(guard, store)`: a fresh, empty store (anything implementing [`LedgerStore`]) and whatever
/// must live as long as it (a temporary directory, a schema to drop); `$skip` an expression that is
/// `true` when the backend is not available (each test then prints that it was skipped).
#[macro_export]
macro_rules! ledger_conformance_tests {
    ($skip:expr, $open:expr) => {
        $crate::ledger_conformance_tests!(@each $skip, $open;
            creates_accounts_idempotently,
            refuses_an_account_redefined_under_the_same_id,
            posts_a_transfer_to_both_sides,
            posts_the_same_transfer_once,
            refuses_a_different_body_under_the_same_id_naming_it,
            refuses_a_whole_batch_when_one_transfer_fails,
            refuses_unknown_accounts,
            refuses_currency_mismatch,
            refuses_zero_amounts_and_self_transfers,
            checks_balance_minimum_in_the_same_atomic_step,
            checks_balance_maximum,
            pending_reserves_then_posts,
            pending_reserves_then_voids,
            refuses_resolving_a_pending_transfer_twice,
            refuses_post_that_does_not_match_its_pending_transfer,
            decides_batches_of_a_group_independently,
            lists_history_newest_first_with_pages,
            keeps_every_currency_summing_to_zero,
            versions_records_and_checks_expectations,
            writes_records_only_with_their_batch,
            checks_a_record_without_writing_it,
            scans_records_by_prefix,
            changes_limits_only_when_they_hold,
            refuses_empty_and_oversized_batches,
            refuses_long_memos,
            lists_accounts_in_id_order,
            reads_in_a_read_transaction,
        );
    };
    (@each $skip:expr, $open:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                if $skip {
                    eprintln!(concat!("skipped ", stringify!($name), ": backend not configured"));
                    return;
                }
                let (_guard, mut store) = $open;
                $crate::conformance::$name(&mut store);
            }
        )*
    };
}

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn account_id(text: &str) -> AccountId {
    AccountId::new(text).unwrap_or_else(|error| panic!("test account id {text:?}: {error}"))
}

fn transfer_id(text: &str) -> TransferId {
    TransferId::new(text).unwrap_or_else(|error| panic!("test transfer id {text:?}: {error}"))
}

fn kes(minor: u64) -> Amount {
    Currency::KES
        .minor(minor)
        .unwrap_or_else(|error| panic!("test amount: {error}"))
}

fn new_account(id: &str, kind: AccountKind, currency: Currency) -> NewAccount {
    NewAccount {
        id: account_id(id),
        kind,
        currency,
        limits: BalanceLimits {
            balance_min: kind.default_balance_min(),
            balance_max: None,
        },
    }
}

fn transfer(id: &str, debit: &str, credit: &str, amount: Amount, kind: TransferKind) -> Transfer {
    Transfer {
        id: transfer_id(id),
        debit_account: account_id(debit),
        credit_account: account_id(credit),
        amount,
        kind,
        memo: format!("test {id}"),
    }
}

fn posted(id: &str, debit: &str, credit: &str, minor: u64) -> Transfer {
    transfer(id, debit, credit, kes(minor), TransferKind::Posted)
}

fn commit_one(
    store: &mut dyn LedgerStore,
    batch: Batch,
) -> Result<Vec<Outcome>, crate::model::BatchRefusal> {
    let mut results = store
        .commit(&[batch], NOW)
        .unwrap_or_else(|error| panic!("commit failed: {error}"));
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn must_commit(store: &mut dyn LedgerStore, operations: Vec<Operation>) -> Vec<Outcome> {
    commit_one(store, Batch { operations })
        .unwrap_or_else(|refusal| panic!("batch refused: {refusal}"))
}

fn balance(store: &mut dyn LedgerStore, id: &str) -> i64 {
    store
        .account(&account_id(id))
        .unwrap_or_else(|error| panic!("read account: {error}"))
        .unwrap_or_else(|| panic!("account {id} missing"))
        .balance()
}

fn assert_balanced(store: &mut dyn LedgerStore) {
    verify_conservation(store).unwrap_or_else(|error| panic!("{error}"));
}

/// The float, Alice and Bob in KES, float funded nothing yet.
fn setup(store: &mut dyn LedgerStore) {
    must_commit(
        store,
        vec![
            Operation::CreateAccount(new_account(
                "float",
                AccountKind::OperatorFloat,
                Currency::KES,
            )),
            Operation::CreateAccount(new_account("alice", AccountKind::Customer, Currency::KES)),
            Operation::CreateAccount(new_account("bob", AccountKind::Customer, Currency::KES)),
        ],
    );
}

/// Setup plus 1000.00 KES for Alice.
fn setup_funded(store: &mut dyn LedgerStore) {
    setup(store);
    must_commit(
        store,
        vec![Operation::Transfer(posted(
            "fund-alice",
            "float",
            "alice",
            100_000,
        ))],
    );
}

/// Creating an account twice reports that it exists and changes nothing.
pub fn creates_accounts_idempotently(store: &mut dyn LedgerStore) {
    let definition = new_account("alice", AccountKind::Customer, Currency::KES);
    let first = must_commit(store, vec![Operation::CreateAccount(definition.clone())]);
    assert_eq!(first, vec![Outcome::AccountCreated]);
    let second = must_commit(store, vec![Operation::CreateAccount(definition.clone())]);
    assert_eq!(second, vec![Outcome::AccountExists]);
    let stored = store
        .account(&definition.id)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("account missing"));
    assert!(stored.matches(&definition));
    assert_eq!(stored.balance(), 0);
    assert_eq!(stored.created_at, NOW);
}

/// Same id, other kind or currency: refused.
pub fn refuses_an_account_redefined_under_the_same_id(store: &mut dyn LedgerStore) {
    setup(store);
    let refusal = commit_one(
        store,
        Batch {
            operations: vec![Operation::CreateAccount(new_account(
                "alice",
                AccountKind::Merchant,
                Currency::KES,
            ))],
        },
    )
    .expect_err("redefinition must be refused");
    assert_eq!(
        refusal.reason,
        Refusal::AccountConflict {
            account: account_id("alice")
        }
    );
    let refusal = commit_one(
        store,
        Batch {
            operations: vec![Operation::CreateAccount(new_account(
                "alice",
                AccountKind::Customer,
                Currency::UGX,
            ))],
        },
    )
    .expect_err("redefinition must be refused");
    assert_eq!(
        refusal.reason,
        Refusal::AccountConflict {
            account: account_id("alice")
        }
    );
}

/// A posted transfer debits one side and credits the other by the same amount.
pub fn posts_a_transfer_to_both_sides(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let outcomes = must_commit(
        store,
        vec![Operation::Transfer(posted("t1", "alice", "bob", 45_000))],
    );
    assert_eq!(outcomes, vec![Outcome::TransferCommitted]);
    assert_eq!(balance(store, "alice"), 55_000);
    assert_eq!(balance(store, "bob"), 45_000);
    assert_eq!(balance(store, "float"), -100_000);
    let record = store
        .transfer(&transfer_id("t1"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("transfer missing"));
    assert_eq!(record.transfer, posted("t1", "alice", "bob", 45_000));
    assert_eq!(record.pending_state, None);
    assert_balanced(store);
}

/// Submitting the same transfer again (a client retry) posts it once.
pub fn posts_the_same_transfer_once(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let transfer = posted("t1", "alice", "bob", 10_000);
    must_commit(store, vec![Operation::Transfer(transfer.clone())]);
    let again = must_commit(store, vec![Operation::Transfer(transfer.clone())]);
    assert_eq!(again, vec![Outcome::TransferExists]);
    let twice_in_one = must_commit(
        store,
        vec![
            Operation::Transfer(posted("t2", "alice", "bob", 1)),
            Operation::Transfer(posted("t2", "alice", "bob", 1)),
        ],
    );
    assert_eq!(
        twice_in_one,
        vec![Outcome::TransferCommitted, Outcome::TransferExists]
    );
    assert_eq!(balance(store, "bob"), 10_001);
    assert_balanced(store);
}

/// The same id with another amount is an error that names the id.
pub fn refuses_a_different_body_under_the_same_id_naming_it(store: &mut dyn LedgerStore) {
    setup_funded(store);
    must_commit(
        store,
        vec![Operation::Transfer(posted("t1", "alice", "bob", 10_000))],
    );
    let refusal = commit_one(
        store,
        Batch::transfers([posted("t1", "alice", "bob", 20_000)]),
    )
    .expect_err("conflicting body must be refused");
    assert_eq!(
        refusal.reason,
        Refusal::TransferConflict {
            transfer: transfer_id("t1")
        }
    );
    assert!(refusal.to_string().contains("t1"), "{refusal}");
    assert_eq!(balance(store, "bob"), 10_000);
}

/// One bad transfer refuses its batch; nothing of the batch is applied.
pub fn refuses_a_whole_batch_when_one_transfer_fails(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let refusal = commit_one(
        store,
        Batch {
            operations: vec![
                Operation::Transfer(posted("a", "alice", "bob", 1_000)),
                Operation::PutRecord(RecordWrite {
                    namespace: "test".into(),
                    key: "k".into(),
                    value: Some(b"v".to_vec()),
                    expected_version: None,
                }),
                Operation::Transfer(posted("b", "alice", "nobody", 1_000)),
            ],
        },
    )
    .expect_err("batch with an unknown account must be refused");
    assert_eq!(refusal.index, 2);
    assert_eq!(
        refusal.reason,
        Refusal::UnknownAccount {
            account: account_id("nobody")
        }
    );
    assert_eq!(balance(store, "alice"), 100_000);
    assert_eq!(balance(store, "bob"), 0);
    assert!(store.transfer(&transfer_id("a")).ok().flatten().is_none());
    assert!(store.record("test", "k").ok().flatten().is_none());
}

/// A transfer naming an account that does not exist is refused.
pub fn refuses_unknown_accounts(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let refusal =
        commit_one(store, Batch::transfers([posted("t", "ghost", "bob", 1)])).expect_err("refused");
    assert_eq!(
        refusal.reason,
        Refusal::UnknownAccount {
            account: account_id("ghost")
        }
    );
}

/// Accounts hold one currency; a transfer in another is refused.
pub fn refuses_currency_mismatch(store: &mut dyn LedgerStore) {
    setup_funded(store);
    must_commit(
        store,
        vec![Operation::CreateAccount(new_account(
            "ugx",
            AccountKind::Customer,
            Currency::UGX,
        ))],
    );
    let refusal = commit_one(store, Batch::transfers([posted("t", "alice", "ugx", 100)]))
        .expect_err("refused");
    assert!(
        matches!(refusal.reason, Refusal::CurrencyMismatch { ref account, .. } if account.as_str() == "ugx")
    );
    let usd = Currency::USD
        .minor(100)
        .unwrap_or_else(|error| panic!("{error}"));
    let refusal = commit_one(
        store,
        Batch::transfers([transfer("t2", "alice", "bob", usd, TransferKind::Posted)]),
    )
    .expect_err("refused");
    assert!(matches!(refusal.reason, Refusal::CurrencyMismatch { .. }));
}

/// Zero amounts and transfers from an account to itself mean nothing and are refused.
pub fn refuses_zero_amounts_and_self_transfers(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let refusal =
        commit_one(store, Batch::transfers([posted("z", "alice", "bob", 0)])).expect_err("refused");
    assert_eq!(
        refusal.reason,
        Refusal::ZeroAmount {
            transfer: transfer_id("z")
        }
    );
    let refusal = commit_one(store, Batch::transfers([posted("s", "alice", "alice", 5)]))
        .expect_err("refused");
    assert_eq!(
        refusal.reason,
        Refusal::SameAccount {
            transfer: transfer_id("s")
        }
    );
}

/// Two debits that each fit but together overdraw: the batch is refused whole.
pub fn checks_balance_minimum_in_the_same_atomic_step(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let refusal = commit_one(
        store,
        Batch::transfers([
            posted("x1", "alice", "bob", 60_000),
            posted("x2", "alice", "bob", 60_000),
        ]),
    )
    .expect_err("overdraft must be refused");
    assert_eq!(refusal.index, 1);
    assert_eq!(
        refusal.reason,
        Refusal::InsufficientFunds {
            transfer: transfer_id("x2"),
            account: account_id("alice")
        }
    );
    assert_eq!(balance(store, "alice"), 100_000);
    must_commit(
        store,
        vec![Operation::Transfer(posted("all", "alice", "bob", 100_000))],
    );
    assert_eq!(balance(store, "alice"), 0);
    assert_balanced(store);
}

/// A credit that would take an account above its maximum is refused.
pub fn checks_balance_maximum(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let mut capped = new_account("capped", AccountKind::Customer, Currency::KES);
    capped.limits.balance_max = Some(5_000);
    must_commit(store, vec![Operation::CreateAccount(capped)]);
    must_commit(
        store,
        vec![Operation::Transfer(posted("c1", "alice", "capped", 5_000))],
    );
    let refusal = commit_one(
        store,
        Batch::transfers([posted("c2", "alice", "capped", 1)]),
    )
    .expect_err("refused");
    assert_eq!(
        refusal.reason,
        Refusal::BalanceMaxExceeded {
            transfer: transfer_id("c2"),
            account: account_id("capped")
        }
    );
}

/// A pending transfer reserves funds (they cannot be spent twice) and posting moves them.
pub fn pending_reserves_then_posts(store: &mut dyn LedgerStore) {
    setup_funded(store);
    must_commit(
        store,
        vec![Operation::Transfer(transfer(
            "p",
            "alice",
            "bob",
            kes(70_000),
            TransferKind::Pending,
        ))],
    );
    let alice = store
        .account(&account_id("alice"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        (alice.balance(), alice.available(), alice.debits_pending),
        (100_000, 30_000, 70_000)
    );
    let refusal = commit_one(
        store,
        Batch::transfers([posted("over", "alice", "bob", 40_000)]),
    )
    .expect_err("refused");
    assert!(matches!(refusal.reason, Refusal::InsufficientFunds { .. }));
    assert_balanced(store);
    let post = transfer(
        "p-post",
        "alice",
        "bob",
        kes(70_000),
        TransferKind::PostPending(transfer_id("p")),
    );
    must_commit(store, vec![Operation::Transfer(post)]);
    assert_eq!(balance(store, "alice"), 30_000);
    assert_eq!(balance(store, "bob"), 70_000);
    let bob = store
        .account(&account_id("bob"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(bob.credits_pending, 0);
    let pending = store
        .transfer(&transfer_id("p"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(pending.pending_state, Some(PendingState::Posted));
    assert_balanced(store);
}

/// Voiding a pending transfer releases the reservation; nothing moves.
pub fn pending_reserves_then_voids(store: &mut dyn LedgerStore) {
    setup_funded(store);
    must_commit(
        store,
        vec![
            Operation::Transfer(transfer(
                "p",
                "alice",
                "bob",
                kes(70_000),
                TransferKind::Pending,
            )),
            Operation::Transfer(transfer(
                "p-void",
                "alice",
                "bob",
                kes(70_000),
                TransferKind::VoidPending(transfer_id("p")),
            )),
        ],
    );
    let alice = store
        .account(&account_id("alice"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        (alice.balance(), alice.available(), alice.debits_pending),
        (100_000, 100_000, 0)
    );
    let pending = store
        .transfer(&transfer_id("p"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(pending.pending_state, Some(PendingState::Voided));
    assert_balanced(store);
}

/// Posted and voided are final.
pub fn refuses_resolving_a_pending_transfer_twice(store: &mut dyn LedgerStore) {
    setup_funded(store);
    must_commit(
        store,
        vec![Operation::Transfer(transfer(
            "p",
            "alice",
            "bob",
            kes(1_000),
            TransferKind::Pending,
        ))],
    );
    must_commit(
        store,
        vec![Operation::Transfer(transfer(
            "v",
            "alice",
            "bob",
            kes(1_000),
            TransferKind::VoidPending(transfer_id("p")),
        ))],
    );
    let refusal = commit_one(
        store,
        Batch::transfers([transfer(
            "v2",
            "alice",
            "bob",
            kes(1_000),
            TransferKind::PostPending(transfer_id("p")),
        )]),
    )
    .expect_err("refused");
    assert!(
        matches!(refusal.reason, Refusal::PendingAlreadyResolved { ref state, .. } if state == "voided")
    );
    let refusal = commit_one(
        store,
        Batch::transfers([transfer(
            "v3",
            "alice",
            "bob",
            kes(1_000),
            TransferKind::PostPending(transfer_id("nope")),
        )]),
    )
    .expect_err("refused");
    assert!(matches!(refusal.reason, Refusal::PendingNotFound { .. }));
    assert_eq!(balance(store, "bob"), 0);
}

/// A post must name the pending transfer's accounts and amount.
pub fn refuses_post_that_does_not_match_its_pending_transfer(store: &mut dyn LedgerStore) {
    setup_funded(store);
    must_commit(
        store,
        vec![Operation::Transfer(transfer(
            "p",
            "alice",
            "bob",
            kes(1_000),
            TransferKind::Pending,
        ))],
    );
    let refusal = commit_one(
        store,
        Batch::transfers([transfer(
            "x",
            "alice",
            "bob",
            kes(2_000),
            TransferKind::PostPending(transfer_id("p")),
        )]),
    )
    .expect_err("refused");
    assert!(matches!(refusal.reason, Refusal::PendingMismatch { .. }));
    let refusal = commit_one(
        store,
        Batch::transfers([transfer(
            "y",
            "alice",
            "float",
            kes(1_000),
            TransferKind::PostPending(transfer_id("p")),
        )]),
    )
    .expect_err("refused");
    assert!(matches!(refusal.reason, Refusal::PendingMismatch { .. }));
}

/// In a group commit, a refused batch does not disturb the others, and later batches see earlier
/// accepted ones.
pub fn decides_batches_of_a_group_independently(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let results = store
        .commit(
            &[
                Batch::transfers([posted("g1", "alice", "bob", 60_000)]),
                Batch::transfers([posted("g2", "alice", "bob", 60_000)]),
                Batch::transfers([
                    posted("g3", "bob", "alice", 10_000),
                    posted("g4", "alice", "bob", 50_000),
                ]),
            ],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(ref refusal) if matches!(refusal.reason, Refusal::InsufficientFunds { .. }))
    );
    assert!(results[2].is_ok());
    assert_eq!(balance(store, "alice"), 0);
    assert_eq!(balance(store, "bob"), 100_000);
    assert!(store.transfer(&transfer_id("g2")).ok().flatten().is_none());
    assert_balanced(store);
}

/// History lists an account's transfers newest first, page by page, following the chain
/// through posts, voids and both sides of every transfer.
pub fn lists_history_newest_first_with_pages(store: &mut dyn LedgerStore) {
    setup_funded(store);
    for index in 0..7u64 {
        let (debit, credit) = if index % 2 == 0 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        let amount = if index % 2 == 0 { 1_000 } else { 999 };
        must_commit(
            store,
            vec![Operation::Transfer(posted(
                &format!("h{index}"),
                debit,
                credit,
                amount,
            ))],
        );
    }
    must_commit(
        store,
        vec![
            Operation::Transfer(transfer(
                "hp",
                "alice",
                "bob",
                kes(5),
                TransferKind::Pending,
            )),
            Operation::Transfer(transfer(
                "hp-post",
                "alice",
                "bob",
                kes(5),
                TransferKind::PostPending(transfer_id("hp")),
            )),
        ],
    );
    let alice = account_id("alice");
    let ids = |records: &[crate::model::TransferRecord]| {
        records
            .iter()
            .map(|record| record.transfer.id.to_string())
            .collect::<Vec<_>>()
    };
    let first = store
        .history(&alice, None, 3)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(ids(&first), ["hp-post", "hp", "h6"]);
    let before = first.last().map(|record| record.sequence);
    let rest = store
        .history(&alice, before, 100)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        ids(&rest),
        ["h5", "h4", "h3", "h2", "h1", "h0", "fund-alice"]
    );
    assert!(
        rest.windows(2)
            .all(|pair| pair[0].sequence > pair[1].sequence)
    );
    let last = store.history(&alice, rest.last().map(|record| record.sequence), 100);
    assert!(last.unwrap_or_else(|error| panic!("{error}")).is_empty());
    let bob = store
        .history(&account_id("bob"), None, 100)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(bob.len(), 9);
    let float = store
        .history(&account_id("float"), None, 100)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(ids(&float), ["fund-alice"]);
    // A cursor from another account's history gives an empty page, not someone else's entries.
    let foreign = store
        .history(&account_id("float"), before, 100)
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(foreign.is_empty());
    let stored = store
        .account(&alice)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(stored.last_sequence, first[0].sequence);
    // A refused batch does not advance the chain.
    let refused = commit_one(
        store,
        Batch::transfers([
            posted("hx", "alice", "bob", 1),
            posted("hy", "alice", "nobody", 1),
        ]),
    );
    assert!(refused.is_err());
    let again = store
        .history(&alice, None, 1)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(ids(&again), ["hp-post"]);
}

/// A seeded random workload of transfers, pending, posts and voids in two currencies: after every
/// commit each currency's balances sum to zero, and the sums match a model kept beside.
pub fn keeps_every_currency_summing_to_zero(store: &mut dyn LedgerStore) {
    let mut seed: u64 = 0x005e_ed0f_f9a7;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let currencies = [Currency::KES, Currency::UGX];
    let mut operations = Vec::new();
    for currency in currencies {
        operations.push(Operation::CreateAccount(new_account(
            &format!("float-{}", currency.code()),
            AccountKind::OperatorFloat,
            currency,
        )));
        for holder in 0..5 {
            operations.push(Operation::CreateAccount(new_account(
                &format!("c{holder}-{}", currency.code()),
                AccountKind::Customer,
                currency,
            )));
        }
    }
    must_commit(store, operations);
    let mut model = std::collections::HashMap::<String, i64>::new();
    let mut pendings: Vec<Transfer> = Vec::new();
    let mut counter = 0u64;
    for _round in 0..40 {
        let mut batches = Vec::new();
        for _ in 0..3 {
            let mut transfers = Vec::new();
            for _ in 0..(1 + next(6)) {
                counter += 1;
                let currency = currencies[next(2) as usize];
                let pick = |index: u64| {
                    if index == 5 {
                        format!("float-{}", currency.code())
                    } else {
                        format!("c{index}-{}", currency.code())
                    }
                };
                let debit = pick(next(6));
                let mut credit = pick(next(6));
                if credit == debit {
                    credit = if debit.starts_with("float") {
                        pick(0)
                    } else {
                        pick(5)
                    };
                }
                let amount = currency
                    .minor(1 + next(5_000))
                    .unwrap_or_else(|error| panic!("{error}"));
                let kind = match next(10) {
                    0..=6 => TransferKind::Posted,
                    7 | 8 => TransferKind::Pending,
                    _ => match pendings.pop() {
                        Some(pending) => {
                            let resolution = if next(2) == 0 {
                                TransferKind::PostPending(pending.id.clone())
                            } else {
                                TransferKind::VoidPending(pending.id.clone())
                            };
                            transfers.push(Transfer {
                                id: transfer_id(&format!("r{counter}")),
                                kind: resolution,
                                memo: String::new(),
                                ..pending
                            });
                            continue;
                        }
                        None => TransferKind::Posted,
                    },
                };
                let transfer = Transfer {
                    id: transfer_id(&format!("w{counter}")),
                    debit_account: account_id(&debit),
                    credit_account: account_id(&credit),
                    amount,
                    kind,
                    memo: String::new(),
                };
                transfers.push(transfer);
            }
            batches.push(Batch::transfers(transfers));
        }
        let results = store
            .commit(&batches, NOW)
            .unwrap_or_else(|error| panic!("{error}"));
        for (batch, result) in batches.iter().zip(&results) {
            if result.is_err() {
                continue;
            }
            for operation in &batch.operations {
                let Operation::Transfer(transfer) = operation else {
                    continue;
                };
                match &transfer.kind {
                    TransferKind::Posted | TransferKind::PostPending(_) => {
                        *model.entry(transfer.debit_account.to_string()).or_default() -=
                            transfer.amount.minor_signed();
                        *model
                            .entry(transfer.credit_account.to_string())
                            .or_default() += transfer.amount.minor_signed();
                    }
                    TransferKind::Pending => pendings.push(transfer.clone()),
                    TransferKind::VoidPending(_) => {}
                }
            }
        }
        assert_balanced(store);
    }
    for (id, expected) in &model {
        assert_eq!(balance(store, id), *expected, "balance of {id}");
    }
}

/// Records get a version on every write; an expected version that differs refuses the batch.
pub fn versions_records_and_checks_expectations(store: &mut dyn LedgerStore) {
    let write = |value: &[u8], expected_version| RecordWrite {
        namespace: "purse".into(),
        key: "+254700000001".into(),
        value: Some(value.to_vec()),
        expected_version,
    };
    assert_eq!(
        must_commit(store, vec![Operation::PutRecord(write(b"one", Some(0)))]),
        vec![Outcome::RecordWritten { version: 1 }]
    );
    assert_eq!(
        must_commit(store, vec![Operation::PutRecord(write(b"two", Some(1)))]),
        vec![Outcome::RecordWritten { version: 2 }]
    );
    let refusal = commit_one(
        store,
        Batch {
            operations: vec![Operation::PutRecord(write(b"stale", Some(1)))],
        },
    )
    .expect_err("stale write must be refused");
    assert!(matches!(
        refusal.reason,
        Refusal::RecordVersionMismatch {
            expected: 1,
            actual: 2,
            ..
        }
    ));
    let record = store
        .record("purse", "+254700000001")
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!((record.value.as_slice(), record.version), (&b"two"[..], 2));
    must_commit(
        store,
        vec![Operation::PutRecord(RecordWrite {
            namespace: "purse".into(),
            key: "+254700000001".into(),
            value: None,
            expected_version: Some(2),
        })],
    );
    assert!(
        store
            .record("purse", "+254700000001")
            .ok()
            .flatten()
            .is_none()
    );
}

/// A record check passes at the record's version (counting writes earlier in the group), writes
/// nothing, and refuses its whole batch at any other version.
pub fn checks_a_record_without_writing_it(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let check = |version| {
        Operation::CheckRecord(RecordCheck {
            namespace: "auth".into(),
            key: "user/ada".into(),
            version,
        })
    };
    let write = |expected_version| {
        Operation::PutRecord(RecordWrite {
            namespace: "auth".into(),
            key: "user/ada".into(),
            value: Some(b"ada".to_vec()),
            expected_version: Some(expected_version),
        })
    };
    // Not there yet: version 0 holds, 1 does not.
    assert_eq!(
        must_commit(store, vec![check(0)]),
        vec![Outcome::RecordChecked]
    );
    let refusal = commit_one(
        store,
        Batch {
            operations: vec![
                check(1),
                Operation::Transfer(posted("t1", "alice", "bob", 1)),
            ],
        },
    )
    .expect_err("a check at the wrong version refuses its batch");
    assert_eq!(refusal.index, 0);
    assert!(matches!(
        refusal.reason,
        Refusal::RecordVersionMismatch {
            expected: 1,
            actual: 0,
            ..
        }
    ));
    assert!(store.transfer(&transfer_id("t1")).ok().flatten().is_none());
    must_commit(store, vec![write(0)]);
    // The check holds at the written version and writes nothing (the version stays 1).
    assert_eq!(
        must_commit(
            store,
            vec![
                check(1),
                Operation::Transfer(posted("t2", "alice", "bob", 1))
            ]
        ),
        vec![Outcome::RecordChecked, Outcome::TransferCommitted]
    );
    let record = store.record("auth", "user/ada").ok().flatten();
    assert_eq!(record.map(|record| record.version), Some(1));
    // A write earlier in the same group moves the version the check sees: the second batch,
    // checking the version the first one replaced, is refused with everything in it.
    let results = store
        .commit(
            &[
                Batch {
                    operations: vec![write(1)],
                },
                Batch {
                    operations: vec![
                        check(1),
                        Operation::Transfer(posted("t3", "alice", "bob", 1)),
                    ],
                },
                Batch {
                    operations: vec![
                        check(2),
                        Operation::Transfer(posted("t4", "alice", "bob", 1)),
                    ],
                },
            ],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
    assert!(store.transfer(&transfer_id("t3")).ok().flatten().is_none());
    assert!(store.transfer(&transfer_id("t4")).ok().flatten().is_some());
    assert_balanced(store);
}

/// A record written in a refused batch is not written.
pub fn writes_records_only_with_their_batch(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let results = store
        .commit(
            &[
                Batch {
                    operations: vec![
                        Operation::PutRecord(RecordWrite {
                            namespace: "n".into(),
                            key: "kept".into(),
                            value: Some(vec![1]),
                            expected_version: None,
                        }),
                        Operation::Transfer(posted("ok", "alice", "bob", 1)),
                    ],
                },
                Batch {
                    operations: vec![
                        Operation::PutRecord(RecordWrite {
                            namespace: "n".into(),
                            key: "dropped".into(),
                            value: Some(vec![2]),
                            expected_version: None,
                        }),
                        Operation::Transfer(posted("bad", "alice", "bob", 10_000_000)),
                    ],
                },
            ],
            NOW,
        )
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(results[0].is_ok() && results[1].is_err());
    assert!(store.record("n", "kept").ok().flatten().is_some());
    assert!(store.record("n", "dropped").ok().flatten().is_none());
}

/// Scans return a namespace's records by key prefix, in key order, in pages.
pub fn scans_records_by_prefix(store: &mut dyn LedgerStore) {
    let operations = [
        "a:1",
        "a:2",
        "a:3",
        "b:1",
        "a%",
        "a_",
        "A:1",
        "a:\u{10FFFF}",
        "a;",
    ]
    .iter()
    .map(|key| {
        Operation::PutRecord(RecordWrite {
            namespace: "scan".into(),
            key: (*key).into(),
            value: Some(key.as_bytes().to_vec()),
            expected_version: None,
        })
    })
    .chain([Operation::PutRecord(RecordWrite {
        namespace: "other".into(),
        key: "a:9".into(),
        value: Some(vec![]),
        expected_version: None,
    })])
    .collect();
    must_commit(store, operations);
    let keys = |records: Vec<crate::model::Record>| {
        records
            .into_iter()
            .map(|record| record.key)
            .collect::<Vec<_>>()
    };
    let page = store
        .records("scan", "a:", None, 2)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(keys(page), ["a:1", "a:2"]);
    let page = store
        .records("scan", "a:", Some("a:2"), 10)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(keys(page), ["a:3", "a:\u{10FFFF}"]);
    // Prefixes are compared byte for byte: `A:1` is not under `a:`.
    let page = store
        .records("scan", "A", None, 10)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(keys(page), ["A:1"]);
    // Prefixes are literal: `%` and `_` are not wildcards.
    let page = store
        .records("scan", "a%", None, 10)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(keys(page), ["a%"]);
    let page = store
        .records("scan", "", None, 10)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(keys(page).len(), 9);
}

/// New limits apply only if the current balance satisfies them.
pub fn changes_limits_only_when_they_hold(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let set = |balance_min, balance_max| Operation::SetLimits {
        account: account_id("alice"),
        limits: BalanceLimits {
            balance_min,
            balance_max,
        },
    };
    let refusal = commit_one(
        store,
        Batch {
            operations: vec![set(Some(0), Some(50_000))],
        },
    )
    .expect_err("refused");
    assert_eq!(
        refusal.reason,
        Refusal::InvalidLimits {
            account: account_id("alice")
        }
    );
    let refusal = commit_one(
        store,
        Batch {
            operations: vec![set(Some(10), Some(5))],
        },
    )
    .expect_err("refused");
    assert_eq!(
        refusal.reason,
        Refusal::InvalidLimits {
            account: account_id("alice")
        }
    );
    must_commit(store, vec![set(Some(0), Some(100_000))]);
    let refusal = commit_one(store, Batch::transfers([posted("t", "float", "alice", 1)]))
        .expect_err("refused");
    assert!(matches!(refusal.reason, Refusal::BalanceMaxExceeded { .. }));
    let alice = store
        .account(&account_id("alice"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        alice.limits,
        BalanceLimits {
            balance_min: Some(0),
            balance_max: Some(100_000)
        }
    );
}

/// An empty batch and one over the maximum size are refused.
pub fn refuses_empty_and_oversized_batches(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let refusal = commit_one(store, Batch::default()).expect_err("refused");
    assert_eq!(refusal.reason, Refusal::EmptyBatch);
    let oversized = Batch::transfers(
        (0..=BATCH_OPERATIONS_MAX).map(|index| posted(&format!("o{index}"), "alice", "bob", 1)),
    );
    let refusal = commit_one(store, oversized).expect_err("refused");
    assert_eq!(refusal.reason, Refusal::BatchTooLarge);
    assert_eq!(balance(store, "bob"), 0);
}

/// Memos are bounded.
pub fn refuses_long_memos(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let mut long = posted("m", "alice", "bob", 1);
    long.memo = "x".repeat(crate::model::MEMO_LENGTH_MAX + 1);
    let refusal = commit_one(store, Batch::transfers([long])).expect_err("refused");
    assert_eq!(
        refusal.reason,
        Refusal::MemoTooLong {
            transfer: transfer_id("m")
        }
    );
}

/// Accounts list in id order, in pages.
pub fn lists_accounts_in_id_order(store: &mut dyn LedgerStore) {
    setup(store);
    let page = store
        .accounts(None, 2)
        .unwrap_or_else(|error| panic!("{error}"));
    let ids: Vec<String> = page.iter().map(|account| account.id.to_string()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    let page = store
        .accounts(Some(&account_id("bob")), 10)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id.as_str(), "float");
}

/// A read transaction answers what is committed, passes the reads' error back, and ends: the
/// store commits and reads normally afterwards.
pub fn reads_in_a_read_transaction(store: &mut dyn LedgerStore) {
    setup_funded(store);
    let mut seen = None;
    store
        .read_transaction(&mut |store| {
            let alice = store.account(&account_id("alice"))?.map(|a| a.balance());
            let history = store.history(&account_id("alice"), None, 10)?.len();
            seen = Some((alice, history));
            Ok(())
        })
        .unwrap_or_else(|error| panic!("read transaction: {error}"));
    assert_eq!(seen, Some((Some(100_000), 1)));
    let failed = store.read_transaction(&mut |store| {
        store.account(&account_id("alice"))?;
        Err(crate::store::StoreError::Corrupt("the reads failed".into()))
    });
    assert!(
        matches!(&failed, Err(crate::store::StoreError::Corrupt(m)) if m == "the reads failed"),
        "{failed:?}"
    );
    must_commit(
        store,
        vec![Operation::Transfer(posted("after", "alice", "bob", 500))],
    );
    assert_eq!(balance(store, "bob"), 500);
    assert_balanced(store);
}
