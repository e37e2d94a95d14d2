//! Pairwise keys through the delay-tolerant Needham–Schroeder exchange, and scheme-key epochs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use offpay_purse::*;

fn funded(seed: u64) -> (World, Purse, Purse, Purse) {
    let mut world = World::new(seed);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    world.float(&agent, "100000");
    world.sync(&mut agent);
    for _ in 0..4 {
        pay(&mut world, &mut agent, &mut alice, "2500");
    }
    world.sync(&mut agent);
    (world, agent, alice, bob)
}

#[test]
fn a_large_payment_after_the_online_party_asks_and_the_other_syncs_later() {
    let (mut world, _agent, mut alice, mut bob) = funded(1);
    let bob_phone = bob.identity().phone;
    let alice_phone = alice.identity().phone;
    assert_eq!(
        bob.handle(
            Command::Request {
                payer: alice_phone,
                amount: kes("6000")
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::PairwiseKeyRequired(alice_phone))
    );
    // Bob is online: he asks; his answer carries K_AB for him and a ticket code for Alice.
    bob.handle(
        Command::RequestPairwiseKey { peer: alice_phone },
        world.now,
        &mut world.random,
    )
    .unwrap();
    let report = world.sync(&mut bob);
    assert_eq!(report.pairwise_keys, vec![alice_phone]);
    assert_eq!(bob.peer_tickets().len(), 1);
    // Alice gets her ticket at her next sync (she is offline now, so that comes later).
    world.sync(&mut alice);
    assert_eq!(alice.pairwise_peers(), vec![bob_phone]);
    world.flags.clear();
    pay(&mut world, &mut alice, &mut bob, "6000");
    assert_eq!(bob.balance(), kes("6000"));
    world.sync(&mut bob);
    world.sync(&mut alice);
    assert!(world.flags.is_empty(), "{:?}", world.flags);
    assert_eq!(world.shadow_minor(&bob), 600_000);
}

#[test]
fn the_offline_party_types_the_ticket_code_instead() {
    let (mut world, _agent, mut alice, mut bob) = funded(2);
    let alice_phone = alice.identity().phone;
    let bob_phone = bob.identity().phone;
    alice
        .handle(
            Command::RequestPairwiseKey { peer: bob_phone },
            world.now,
            &mut world.random,
        )
        .unwrap();
    world.sync(&mut alice);
    let ticket = alice.peer_tickets()[0];
    assert_eq!(ticket.peer, bob_phone);
    let shown = ticket.code.to_string();
    assert_eq!(shown.len(), 48 + 11, "twelve groups of four");
    // A mistyped ticket is refused and changes nothing.
    let mut digits = *ticket.code.as_digits();
    digits[45] = if digits[45] == b'9' {
        b'0'
    } else {
        digits[45] + 1
    };
    let wrong = TicketCode::parse(std::str::from_utf8(&digits).unwrap()).unwrap();
    let before = bob.encode_state();
    assert_eq!(
        bob.handle(
            Command::EnterTicket {
                peer: alice_phone,
                code: wrong
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::TicketMismatch)
    );
    assert_eq!(bob.encode_state(), before);
    // A ticket for Bob read out by someone other than Alice does not open either.
    let typed = TicketCode::parse(&shown).unwrap();
    assert_eq!(
        bob.handle(
            Command::EnterTicket {
                peer: phone("+254700000003"),
                code: typed
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::TicketMismatch)
    );
    bob.handle(
        Command::EnterTicket {
            peer: alice_phone,
            code: typed,
        },
        world.now,
        &mut world.random,
    )
    .unwrap();
    assert_eq!(bob.pairwise_peers(), vec![alice_phone]);
    pay(&mut world, &mut alice, &mut bob, "7000");
    // Bob's next sync still delivers the queued ticket (same key, same version): harmless.
    world.sync(&mut bob);
    world.sync(&mut alice);
    pay(&mut world, &mut alice, &mut bob, "3000");
    world.sync(&mut bob);
    world.sync(&mut alice);
    assert!(world.flags.is_empty(), "{:?}", world.flags);
    assert_eq!(bob.balance(), kes("10000"));
}

#[test]
fn scheme_key_epochs_rotate_in_two_phases() {
    let (mut world, mut agent, mut alice, mut bob) = funded(3);
    assert_eq!(alice.scheme_epochs(), vec![1]);
    // First rotation: epoch 2 is distributed but payees still make Code 1 under epoch 1.
    assert_eq!(world.book.rotate_scheme_key(), 2);
    let report = world.sync(&mut bob);
    assert_eq!(report.new_epoch, Some(2));
    assert_eq!(bob.scheme_epochs(), vec![1, 2]);
    // Alice has not synced (she holds epoch 1 only) and still pays the synced Bob.
    pay(&mut world, &mut alice, &mut bob, "100");
    world.sync(&mut alice);
    assert_eq!(alice.scheme_epochs(), vec![1, 2]);
    // Second rotation: payees switch to epoch 2, epoch 3 is distributed, epoch 1 retires.
    world.book.rotate_scheme_key();
    world.sync(&mut bob);
    assert_eq!(bob.scheme_epochs(), vec![2, 3]);
    // Alice synced after the first rotation: she checks Bob's epoch-2 request by N_B's parity.
    pay(&mut world, &mut alice, &mut bob, "100");
    // A purse that slept through both rotations cannot check epoch-2 codes (same parity as its
    // epoch 1, different key) until it syncs — by then its validity would have run out anyway.
    let mut sleeper = world.provision("+254700000004", PurseKind::Customer);
    let sleeper_old = Purse::decode_state(&sleeper.encode_state()).unwrap();
    assert_eq!(
        sleeper_old.scheme_epochs(),
        vec![2],
        "provisioned with the generation epoch"
    );
    world.sync(&mut sleeper);
    assert_eq!(sleeper.scheme_epochs(), vec![2, 3]);
    let code1 = request(&mut world, &mut bob, &alice, kes("10"));
    alice
        .check_request(bob.identity().phone, kes("10"), &code1)
        .unwrap();
    for purse in [&mut alice, &mut bob, &mut agent] {
        world.sync(purse);
    }
    assert!(world.flags.is_empty(), "{:?}", world.flags);
    assert_eq!(bob.balance(), kes("200"));
}

const DAY: u64 = 86_400;

/// Two rotations within one validity period retire the key of purses that have not had to sync
/// yet: two honest purses paying each other under it would be flagged and blocked. The operator's
/// rule refuses the second rotation and changes nothing.
#[test]
fn a_second_rotation_within_the_longest_validity_is_refused_and_changes_nothing() {
    let (mut world, _agent, _alice, _bob) = funded(7);
    assert_eq!(world.book.next_rotation_from(), None);
    assert_eq!(world.book.rotate_scheme_key_at(world.now, false), Ok(2));
    let rotated_at = world.now;
    let header = world.book.header();
    world.now = world.now.plus_seconds(29 * DAY);
    assert_eq!(
        world.book.rotate_scheme_key_at(world.now, false),
        Err(PurseError::RotationTooSoon {
            last: rotated_at,
            earliest: rotated_at.plus_seconds(params::VALIDITY_DAYS_DEFAULT * DAY),
        })
    );
    assert_eq!(world.book.header(), header, "nothing changed");
    // Once every purse that may still pay has had to sync, the next rotation is made.
    world.now = rotated_at.plus_seconds(params::VALIDITY_DAYS_DEFAULT * DAY);
    assert_eq!(world.book.rotate_scheme_key_at(world.now, false), Ok(3));
    // A compromised key: the operator forces it, knowingly.
    assert_eq!(world.book.rotate_scheme_key_at(world.now, true), Ok(4));
}

/// A purse given a longer validity may go longer without syncing, so the wait grows with it
/// (and does not shrink when the validity is lowered again: the purse keeps what it synced with).
#[test]
fn the_wait_between_rotations_follows_the_longest_validity_ever_given() {
    let (mut world, _agent, alice, _bob) = funded(8);
    let alice_id = alice.identity().purse_id;
    let limits = world.book.shadow(alice_id).unwrap().limits;
    world.book.set_limits(alice_id, limits, 90 * DAY).unwrap();
    world.book.set_limits(alice_id, limits, 10 * DAY).unwrap();
    world.book.rotate_scheme_key_at(world.now, false).unwrap();
    let rotated_at = world.now;
    assert_eq!(
        world.book.next_rotation_from(),
        Some(rotated_at.plus_seconds(90 * DAY))
    );
    world.now = rotated_at.plus_seconds(60 * DAY);
    assert!(matches!(
        world.book.rotate_scheme_key_at(world.now, false),
        Err(PurseError::RotationTooSoon { .. })
    ));
}

/// The attack the guard stops, end to end: Alice and Bob are honest, synced before the first
/// rotation and within their validity; the operator asks for two more rotations on the next two
/// days; Alice pays Bob under the key both hold. Nobody may be flagged for it.
#[test]
fn honest_purses_that_have_not_synced_since_a_rotation_are_never_flagged() {
    let (mut world, mut agent, mut alice, mut bob) = funded(9);
    world.sync(&mut alice);
    world.sync(&mut bob);
    world.book.rotate_scheme_key_at(world.now, false).unwrap();
    world.sync(&mut agent);
    // Refused by the guard (without it, epoch 1 is retired two rotations later).
    for _ in 0..2 {
        world.now = world.now.plus_seconds(DAY);
        let _ = world.book.rotate_scheme_key_at(world.now, false);
    }
    pay(&mut world, &mut alice, &mut bob, "100");
    world.sync(&mut alice);
    world.sync(&mut bob);
    assert!(
        world.flags.is_empty(),
        "honest purses flagged: {:?}",
        world.flags
    );
    assert!(
        !world
            .book
            .shadow(alice.identity().purse_id)
            .unwrap()
            .blocked
    );
}
