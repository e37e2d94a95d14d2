//! The full flow, in memory: agent float, cash-in, an offline payment, everyone syncs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use offpay_purse::*;

#[test]
fn agent_float_cash_in_payment_and_sync_balance_out() {
    let mut world = World::new(1);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision("+254700000002", PurseKind::Customer);

    world.float(&agent, "100000");
    let report = world.sync(&mut agent);
    assert_eq!(report.credits.len(), 1);
    assert_eq!(agent.balance(), kes("100000"));

    world.tick(60);
    pay(&mut world, &mut agent, &mut alice, "1000");
    world.tick(60);
    pay(&mut world, &mut alice, &mut bob, "450");
    assert_eq!(alice.balance(), kes("550"));
    assert_eq!(bob.balance(), kes("450"));

    world.tick(3600);
    for purse in [&mut bob, &mut alice, &mut agent] {
        world.sync(purse);
    }
    assert!(world.flags.is_empty(), "flags: {:?}", world.flags);
    assert_eq!(world.shadow_minor(&agent), 9_900_000);
    assert_eq!(world.shadow_minor(&alice), 55_000);
    assert_eq!(world.shadow_minor(&bob), 45_000);
    assert_eq!(world.ledger_minor(&agent), 9_900_000);
    assert_eq!(world.ledger_minor(&alice), 55_000);
    assert_eq!(world.ledger_minor(&bob), 45_000);
    assert_eq!(world.ledger.balance(LedgerAccount::Suspense), 0);
    assert_eq!(world.book.suspense_minor(), 0);
    assert_eq!(
        world.ledger.balance(LedgerAccount::OperatorFloat),
        -10_000_000
    );
    // All logs acknowledged after a second round.
    for purse in [&mut bob, &mut alice, &mut agent] {
        world.sync(purse);
        assert!(purse.unacknowledged_log().is_empty());
    }
}

/// The server stores the operator book; with the `serde` feature it round-trips through JSON.
#[cfg(feature = "serde")]
#[test]
fn the_operator_book_round_trips_through_json() {
    let mut world = World::new(2);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    world.float(&agent, "100000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    world.sync(&mut alice);
    let json = serde_json::to_string(&world.book).unwrap();
    let back: OperatorBook = serde_json::from_str(&json).unwrap();
    assert_eq!(back, world.book);
    assert_eq!(back.open_credit_count(), 1);
}
