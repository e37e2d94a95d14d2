//! Field readiness: a lost phone's balance moves to the person's new purse, bounded by what the
//! lost purse could still spend offline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use offpay_purse::*;

/// Alice loses her phone holding 1,000 (she may spend 300 between syncs). The operator blocks it
/// and moves 700 to her new purse at once; the 300 the thief could still spend offline is held
/// back. The thief spends 300 with a payee who had not synced; when the old keys are retired the
/// rest is released: nothing, because the payee's report shows it spent. Money is conserved and
/// the operator never pays out twice.
#[test]
fn a_lost_phone_is_blocked_and_its_balance_moves_to_the_new_purse() {
    let mut world = World::new(41);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut old = world.provision("+254700000001", PurseKind::Customer);
    let mut new = world.provision("+254700000011", PurseKind::Customer);
    let mut carol = world.provision("+254700000003", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut old, "1000");
    let mut limits = *old.limits();
    limits.max_spent_since_sync = kes("300");
    world
        .book
        .set_limits(old.identity().purse_id, limits, 30 * 86_400)
        .unwrap();
    world.sync(&mut old);
    world.sync(&mut agent);

    let old_id = old.identity().purse_id;
    let moved = world
        .book
        .move_balance(old_id, new.identity().purse_id)
        .unwrap();
    assert_eq!((moved.moved_minor, moved.held_minor), (70_000, 30_000));
    world.ledger.apply(moved.posting.as_slice());
    assert!(world.book.shadow(old_id).unwrap().blocked);
    world.sync(&mut new);
    world.sync(&mut new);
    assert_eq!(new.balance(), kes("700"));

    // The thief, offline, spends what the old purse still allows with Carol, who has not synced.
    pay(&mut world, &mut old, &mut carol, "300");
    world.sync(&mut carol);
    // Before the keys are retired nothing more moves; after two rotations the rest would, but
    // Carol's report shows it was spent.
    assert_eq!(
        world
            .book
            .move_balance(old_id, new.identity().purse_id)
            .unwrap()
            .moved_minor,
        0
    );
    world.book.rotate_scheme_key();
    world.book.rotate_scheme_key();
    let release = world
        .book
        .move_balance(old_id, new.identity().purse_id)
        .unwrap();
    assert_eq!((release.moved_minor, release.held_minor), (0, 0));
    // Conservation: 700 at the new purse, 300 at Carol, and the old purse's shadow still owes
    // the 300 it spent (reported by Carol), so the books sum to zero.
    assert_eq!(world.ledger_minor(&new), 70_000);
    assert_eq!(world.ledger_minor(&carol), 30_000);
    let total: i64 = [&agent, &old, &new, &carol]
        .iter()
        .map(|purse| world.ledger_minor(purse))
        .sum::<i64>()
        + world.ledger.balance(LedgerAccount::Suspense)
        + world.ledger.balance(LedgerAccount::OperatorFloat);
    assert_eq!(total, 0);
}

/// When the thief spends nothing, the held-back part follows once the old keys are retired.
#[test]
fn the_held_back_part_moves_once_the_lost_purse_keys_are_retired() {
    let mut world = World::new(42);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut old = world.provision("+254700000001", PurseKind::Customer);
    let mut new = world.provision("+254700000011", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut old, "1000");
    world.sync(&mut old);
    let (lost, to) = (old.identity().purse_id, new.identity().purse_id);
    let first = world.book.move_balance(lost, to).unwrap();
    assert_eq!((first.moved_minor, first.held_minor), (0, 100_000));
    world.book.rotate_scheme_key();
    assert_eq!(world.book.move_balance(lost, to).unwrap().moved_minor, 0);
    world.book.rotate_scheme_key();
    let release = world.book.move_balance(lost, to).unwrap();
    assert_eq!((release.moved_minor, release.held_minor), (100_000, 0));
    world.ledger.apply(release.posting.as_slice());
    world.sync(&mut new);
    world.sync(&mut new);
    assert_eq!(new.balance(), kes("1000"));
    assert_eq!(world.ledger_minor(&old), 0);
    // Moving again moves nothing; a purse cannot be moved to itself.
    assert_eq!(world.book.move_balance(lost, to).unwrap().moved_minor, 0);
    assert!(world.book.move_balance(lost, lost).is_err());
}

/// National numbers are read with the country code of the purse's own number.
#[test]
fn national_numbers_take_the_home_country_code() {
    let home = phone("+254700000002");
    for (typed, expected) in [
        ("0700000001", "+254700000001"),
        ("0700 000-001", "+254700000001"),
        ("+255700000001", "+255700000001"),
        ("00255700000001", "+255700000001"),
        ("0111000001", "+254111000001"),
    ] {
        assert_eq!(
            Phone::parse_from(typed, home),
            Ok(phone(expected)),
            "{typed}"
        );
    }
    for typed in [
        "700000001",
        "00",
        "0",
        "00700000001x",
        "0012",
        "07000000012345",
    ] {
        assert_eq!(
            Phone::parse_from(typed, home),
            Err(PurseError::PhoneNumber),
            "{typed}"
        );
    }
}

/// Agent settlement: the agent hands collected purse value back to the operator (its purse gives
/// it up at a sync, posting purse(agent) → settlement(agent)), and the operator pays the agent
/// (settlement(agent) → operator float). Over-settling and overpaying are refused; a customer
/// purse does not settle.
#[test]
fn an_agent_hands_value_back_and_is_paid_for_it() {
    let mut world = World::new(43);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    // Alice cashes out 400 at the agent: the agent collects purse value.
    pay(&mut world, &mut alice, &mut agent, "400");
    world.sync(&mut agent);
    world.sync(&mut alice);
    assert_eq!(agent.balance(), kes("9400"));
    let id = agent.identity().purse_id;
    assert!(
        world.book.queue_settlement(id, kes("9401")).is_err(),
        "more than the purse holds"
    );
    assert!(
        world
            .book
            .queue_settlement(alice.identity().purse_id, kes("10"))
            .is_err(),
        "a customer purse does not settle"
    );
    world.book.queue_settlement(id, kes("5000")).unwrap();
    let report = world.sync(&mut agent);
    assert_eq!(report.credits.len(), 1);
    assert_eq!(agent.balance(), kes("4400"));
    // Applied once, even if the next answer offered it again before the report arrived.
    world.sync(&mut agent);
    world.sync(&mut agent);
    assert_eq!(agent.balance(), kes("4400"));
    assert_eq!(world.ledger_minor(&agent), 440_000);
    assert_eq!(
        world.ledger.balance(LedgerAccount::AgentSettlement(id)),
        500_000
    );
    assert!(
        world
            .book
            .pay_settlement(id, kes("5001"), "bank-1")
            .is_err()
    );
    let paid = world
        .book
        .pay_settlement(id, kes("5000"), "bank-1")
        .unwrap();
    world.ledger.apply(&[paid]);
    assert_eq!(world.ledger.balance(LedgerAccount::AgentSettlement(id)), 0);
    assert_eq!(
        world.ledger.balance(LedgerAccount::OperatorFloat),
        -500_000,
        "the float issued 10,000 and took 5,000 back"
    );
    assert!(world.flags.is_empty(), "{:?}", world.flags);
    assert_eq!(world.shadow_minor(&agent), 440_000);
}
