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
