//! Every attack from seed 001, as a test; and the PIN lockout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use offpay_purse::codes::*;
use offpay_purse::crypto::{SecretKey, cmac, decimal_truncate};
use offpay_purse::params::*;
use offpay_purse::*;

fn request(world: &mut World, payee: &mut Purse, payer: Phone, amount: &str) -> Code {
    match payee
        .handle(
            Command::Request {
                payer,
                amount: kes(amount),
            },
            world.now,
            &mut world.random,
        )
        .unwrap()
    {
        Outcome::Requested { code1, .. } => code1,
        other => panic!("{other:?}"),
    }
}

/// Guessing Code 2 for a fake customer, measured with the real CMAC and the real budgets but a
/// 2-digit R so that successes are frequent enough to count. Per sync period the attacker gets
/// CODE2_FAILURES_PER_SYNC_PERIOD_MAX guesses, so P(success) = 1 - (1 - 10^-d)^F <= F * 10^-d.
#[test]
fn guessing_code_2_success_rate_is_bounded_by_the_budget() {
    let digits = 2u32;
    let key = SecretKey::from_bytes([0x42; 16]);
    let payee = phone("+254700000002");
    let mut random = SeededRandom::new(2024);
    let periods = 20_000u32;
    let mut successes = 0u32;
    for period in 0..periods {
        let mut failures_in_period = 0u16;
        let mut won = false;
        while failures_in_period < CODE2_FAILURES_PER_SYNC_PERIOD_MAX && !won {
            // A fresh fake request: a made-up payer and a fresh N_B.
            let fields = RequestFields {
                payee,
                payer: Phone::from_number(254_711_000_000 + u64::from(period)).unwrap(),
                amount: kes("2500"),
                nonce_b: (random.next_u64() % 10_000) as u16,
            };
            let mut failures_on_request = 0u8;
            while failures_on_request < CODE2_FAILURES_PER_REQUEST_MAX
                && failures_in_period < CODE2_FAILURES_PER_SYNC_PERIOD_MAX
            {
                let guess_nonce_a = (random.next_u64() % 100) as u16;
                let guess_tag = (random.next_u64() % 10u64.pow(digits)) as u32;
                let truth = response_tag(
                    &key,
                    &ResponseFields {
                        payer: fields.payer,
                        nonce_a: guess_nonce_a,
                        amount: fields.amount,
                        nonce_b: fields.nonce_b,
                        payee,
                    },
                    digits,
                );
                if truth == guess_tag {
                    won = true;
                    break;
                }
                failures_on_request += 1;
                failures_in_period += 1;
            }
        }
        successes += u32::from(won);
    }
    let measured = f64::from(successes) / f64::from(periods);
    let per_guess = 10f64.powi(-(digits as i32));
    let exact = 1.0 - (1.0 - per_guess).powi(i32::from(CODE2_FAILURES_PER_SYNC_PERIOD_MAX));
    let bound = f64::from(CODE2_FAILURES_PER_SYNC_PERIOD_MAX) * per_guess;
    let sigma = (exact * (1.0 - exact) / f64::from(periods)).sqrt();
    println!(
        "R = {digits} digits: measured {measured:.4} per sync period, exact {exact:.4}, budget bound {bound:.4}; \
         with R = {RESPONSE_TAG_DIGITS} digits the bound is {:.0e}",
        f64::from(CODE2_FAILURES_PER_SYNC_PERIOD_MAX) * 10f64.powi(-(RESPONSE_TAG_DIGITS as i32))
    );
    assert!(
        (measured - exact).abs() < 5.0 * sigma,
        "simulation agrees with theory"
    );
    assert!(
        measured <= bound + 5.0 * sigma,
        "the budget bounds the success rate"
    );
}

/// The same attack against the real purse: it allows exactly the budget of wrong Code 2 entries
/// per sync period, reports them, and the operator flags the purse.
#[test]
fn guessing_code_2_against_the_real_purse_hits_the_budget_and_is_flagged() {
    let mut world = World::new(77);
    let mut bob = world.provision("+254700000002", PurseKind::Customer);
    let fake = phone("+254799999999");
    let periods = 100;
    let mut guesses = 0u32;
    let mut successes = 0u32;
    for _ in 0..periods {
        let mut in_period = 0u16;
        loop {
            if bob.pending_requests().is_empty() {
                match bob.handle(
                    Command::Request {
                        payer: fake,
                        amount: kes("2500"),
                    },
                    world.now,
                    &mut world.random,
                ) {
                    Ok(_) => {}
                    Err(PurseError::FailureBudgetExhausted) => break,
                    Err(other) => panic!("{other}"),
                }
            }
            let guess = Code::from_number((world.random.next_u64() % 100_000_000) as u32).unwrap();
            let revision = bob.revision();
            match bob.handle(
                Command::Accept {
                    code2: guess,
                    request: None,
                },
                world.now,
                &mut world.random,
            ) {
                Ok(_) => successes += 1,
                Err(PurseError::ResponseCodeMismatch { .. }) => {
                    assert_ne!(bob.revision(), revision, "a wrong Code 2 is remembered");
                    guesses += 1;
                    in_period += 1;
                }
                Err(PurseError::FailureBudgetExhausted) => break,
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(in_period, CODE2_FAILURES_PER_SYNC_PERIOD_MAX);
        world.flags.clear();
        world.sync(&mut bob);
        assert!(
            world
                .flags
                .iter()
                .any(|flag| matches!(flag.kind, FlagKind::FailedCodeEntries { count } if count == CODE2_FAILURES_PER_SYNC_PERIOD_MAX)),
            "the operator flags the guessing"
        );
        world.tick(3600);
    }
    assert_eq!(
        guesses,
        periods * u32::from(CODE2_FAILURES_PER_SYNC_PERIOD_MAX)
    );
    // Expected successes: 1000 guesses * 10^-6 = 0.001.
    assert_eq!(successes, 0);
    assert_eq!(bob.balance(), kes("0"));
}

#[test]
fn a_replayed_code_2_is_refused() {
    let mut world = World::new(5);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision("+254700000002", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "2000");
    let (old_code1, old_code2) = pay(&mut world, &mut alice, &mut bob, "450");
    let old_nonce = nonce_of(&old_code1);

    // Bob keeps asking Alice for 450 hoping his purse reuses the old N_B: it never does while the
    // old one is in the seen-nonce memory.
    for _ in 0..SEEN_NONCES_MAX - 1 {
        let code1 = request(&mut world, &mut bob, alice.identity().phone, "450");
        assert_ne!(
            nonce_of(&code1),
            old_nonce,
            "N_B reused with the same payer"
        );
        bob.handle(
            Command::CancelRequest {
                nonce_b: nonce_of(&code1),
            },
            world.now,
            &mut world.random,
        )
        .unwrap();
    }
    // Typing the recorded Code 2 against a fresh request fails and costs budget.
    request(&mut world, &mut bob, alice.identity().phone, "450");
    let error = bob
        .handle(
            Command::Accept {
                code2: old_code2,
                request: None,
            },
            world.now,
            &mut world.random,
        )
        .unwrap_err();
    assert!(
        matches!(error, PurseError::ResponseCodeMismatch { .. }),
        "{error}"
    );
    assert_eq!(bob.balance(), kes("450"));
    // And re-typing it with no request pending is recognised, not credited.
    let mut bob_fresh = World::new(6).provision("+254700000002", PurseKind::Customer);
    assert_eq!(
        bob_fresh.handle(
            Command::Accept {
                code2: old_code2,
                request: None
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::NoPendingRequest)
    );
}

// ---- the first protocol of seed 001, which left X out of R ----

struct FirstProtocolPayee {
    key: SecretKey,
    me: Phone,
    pending: Vec<(u16, u64, u32)>, // (N_B, X, C)
    balance: u64,
}

fn first_c(key: &SecretKey, payee: Phone, payer: Phone, amount: u64, nonce: u16) -> u32 {
    let mut input = Vec::new();
    input.extend_from_slice(&payee.to_bytes());
    input.extend_from_slice(&payer.to_bytes());
    input.extend_from_slice(&amount.to_be_bytes());
    input.extend_from_slice(&nonce.to_be_bytes());
    decimal_truncate(&cmac(key, &input), 3)
}

fn first_r(key: &SecretKey, payer: Phone, nonce_a: u16, c: u32, nonce_b: u16, payee: Phone) -> u32 {
    let mut input = Vec::new();
    input.extend_from_slice(&payer.to_bytes());
    input.extend_from_slice(&nonce_a.to_be_bytes());
    input.extend_from_slice(&c.to_be_bytes());
    input.extend_from_slice(&nonce_b.to_be_bytes());
    input.extend_from_slice(&payee.to_bytes());
    decimal_truncate(&cmac(key, &input), 4)
}

impl FirstProtocolPayee {
    fn request(&mut self, payer: Phone, amount: u64, random: &mut SeededRandom) -> (u16, u32) {
        let nonce = (random.next_u64() % 1000) as u16;
        let c = first_c(&self.key, self.me, payer, amount, nonce);
        self.pending.push((nonce, amount, c));
        (nonce, c)
    }

    /// Credits the first pending request whose (N_B, C) the response verifies for.
    fn accept(&mut self, payer: Phone, nonce_a: u16, r: u32) -> Option<u64> {
        let index = self.pending.iter().position(|&(nonce, _, c)| {
            first_r(&self.key, payer, nonce_a, c, nonce, self.me) == r
        })?;
        let (_, amount, _) = self.pending.remove(index);
        self.balance += amount;
        Some(amount)
    }
}

#[test]
fn amount_collision_succeeds_against_the_first_protocol() {
    let key = SecretKey::from_bytes([9; 16]);
    let alice = phone("+254700000001");
    let bob = phone("+254700000002");
    let mut random = SeededRandom::new(11);
    let mut purse = FirstProtocolPayee {
        key: key.clone(),
        me: bob,
        pending: Vec::new(),
        balance: 0,
    };
    let (x, x_prime) = (45_000u64, 4_500_000u64); // KES 450 and KES 45,000
    // Bob makes requests for X and X', aborting all but a colliding pair: same N_B and same C.
    let mut seen_for_x: HashMap<(u16, u32), ()> = HashMap::new();
    let mut collision = None;
    for _ in 0..50_000 {
        let (nonce, c) = purse.request(alice, x, &mut random);
        purse.pending.pop();
        seen_for_x.insert((nonce, c), ());
        let (nonce, c) = purse.request(alice, x_prime, &mut random);
        if seen_for_x.contains_key(&(nonce, c)) {
            collision = Some((nonce, c));
            break;
        }
        purse.pending.pop();
    }
    let (nonce_b, c) = collision.expect("a collision within 50,000 tries");
    assert_eq!(purse.pending.len(), 1, "only the X' request is kept");
    // Alice checks (N_B, C) for X: it verifies, she pays X.
    assert_eq!(first_c(&key, bob, alice, x, nonce_b), c);
    let nonce_a = 17;
    let r = first_r(&key, alice, nonce_a, c, nonce_b, bob);
    // Bob's purse accepts her response against the X' request.
    assert_eq!(purse.accept(alice, nonce_a, r), Some(x_prime));
    assert_eq!(purse.balance, x_prime);
    println!(
        "first protocol: Alice paid {x}, Bob was credited {x_prime} after {} requests",
        seen_for_x.len() * 2
    );
}

#[test]
fn amount_collision_fails_against_our_protocol() {
    let mut world = World::new(12);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "2000");

    let epoch = alice.scheme_epochs()[0];
    let key = world.secrets.scheme_key(epoch);
    let (alice_phone, bob_phone) = (alice.identity().phone, bob.identity().phone);
    // Bob's best case: ignore his purse's nonce memory and search every N_B of the right parity
    // for a T1 collision between X and some X' > X.
    let x = kes("450");
    let mut collision = None;
    'search: for x_prime in 451..=2500u64 {
        let x_prime = kes(&x_prime.to_string());
        for nonce_b in (0..10_000u16).filter(|nonce| nonce_parity_matches(*nonce, epoch)) {
            let fields = |amount| RequestFields {
                payee: bob_phone,
                payer: alice_phone,
                amount,
                nonce_b,
            };
            if request_tag(&key, &fields(x), 4) == request_tag(&key, &fields(x_prime), 4) {
                collision = Some((nonce_b, x_prime));
                break 'search;
            }
        }
    }
    let (nonce_b, x_prime) = collision.expect("T1 collisions exist for 4 digits");
    let code1 = request_code(
        &key,
        &RequestFields {
            payee: bob_phone,
            payer: alice_phone,
            amount: x,
            nonce_b,
        },
    );
    let Outcome::Paid { code2, .. } = alice
        .handle(
            Command::Pay {
                payee: bob_phone,
                amount: x,
                code1,
                pin: pin(),
            },
            world.now,
            &mut world.random,
        )
        .unwrap()
    else {
        panic!()
    };
    let request_for = |amount| RequestFields {
        payee: bob_phone,
        payer: alice_phone,
        amount,
        nonce_b,
    };
    assert!(
        check_response_code(&key, &request_for(x), &code2).is_some(),
        "Code 2 is good for X"
    );
    assert_eq!(
        check_response_code(&key, &request_for(x_prime), &code2),
        None,
        "Code 2 binds X: the colliding X' request does not verify"
    );
}

#[test]
fn a_cloned_purse_spent_twice_is_caught_at_reconciliation() {
    let mut world = World::new(21);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision("+254700000002", PurseKind::Customer);
    let mut carol = world.provision("+254700000003", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    world.sync(&mut alice);

    // Alice copies her purse state (as a purse file would be copied) and spends twice.
    let mut clone = Purse::decode_state(&alice.encode_state()).unwrap();
    pay(&mut world, &mut alice, &mut bob, "800");
    pay(&mut world, &mut clone, &mut carol, "800");
    assert_eq!(alice.counter(), clone.counter());

    for purse in [&mut bob, &mut carol, &mut alice, &mut agent] {
        world.sync(purse);
    }
    // The clone's upload reuses Alice's sync sequence and counter.
    let Outcome::SyncUpload { upload, .. } = clone.start_sync(world.now) else {
        panic!()
    };
    let outcome = world
        .book
        .handle_upload(&world.secrets, &upload, world.now)
        .unwrap();
    world.ledger.apply(&outcome.postings);
    let kinds: Vec<&FlagKind> = outcome.flags.iter().map(|flag| &flag.kind).collect();
    assert!(
        kinds
            .iter()
            .any(|kind| matches!(kind, FlagKind::DuplicateCounter { first: Some(_), .. })),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|kind| matches!(kind, FlagKind::StaleSequence { .. }))
    );
    for flag in &outcome.flags {
        println!("fraud queue: {flag}");
    }
    // The clone is blocked; the loss sits on Alice's shadow account, and the books balance.
    let Outcome::SyncApplied(report) = clone.apply_answer(&outcome.answer).unwrap() else {
        panic!()
    };
    assert!(report.blocked);
    assert_eq!(world.shadow_minor(&alice), -60_000);
    assert_eq!(world.ledger.balance(LedgerAccount::Suspense), 0);
    assert_eq!(world.book.suspense_minor(), 0);
    assert_eq!(
        world.ledger_minor(&bob) + world.ledger_minor(&carol),
        160_000
    );
    // Every other purse learns that Alice's purse is blocked.
    world.sync(&mut bob);
    let error = bob
        .handle(
            Command::Request {
                payer: alice.identity().phone,
                amount: kes("10"),
            },
            world.now,
            &mut world.random,
        )
        .unwrap_err();
    assert_eq!(
        error,
        PurseError::CounterpartyBlocked(alice.identity().phone)
    );
}

#[test]
fn a_clone_that_never_syncs_shows_as_a_credit_without_debit() {
    let mut world = World::new(22);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut carol = world.provision("+254700000003", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    world.sync(&mut alice);
    let mut clone = Purse::decode_state(&alice.encode_state()).unwrap();
    pay(&mut world, &mut clone, &mut carol, "700");
    world.sync(&mut carol);
    assert!(
        world.flags.is_empty(),
        "not yet: Alice has not synced since"
    );
    world.sync(&mut alice); // applies an answer built after Carol's report
    world.sync(&mut alice);
    world.sync(&mut agent);
    assert!(
        world.flags.iter().any(|flag| matches!(
            flag.kind,
            FlagKind::CreditWithoutDebit { payer, .. } if payer == alice.identity().phone
        ) && flag.purse == carol.identity().purse_id),
        "{:?}",
        world.flags
    );
    assert_eq!(world.ledger.balance(LedgerAccount::Suspense), -70_000);
}

#[test]
fn three_wrong_pins_block_payments_until_the_operator_unblocks() {
    let mut world = World::new(31);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision("+254700000002", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");

    let code1 = request(&mut world, &mut bob, alice.identity().phone, "100");
    let attempt = |alice: &mut Purse, world: &mut World, pin: &str| {
        alice.handle(
            Command::Pay {
                payee: phone("+254700000002"),
                amount: kes("100"),
                code1,
                pin: Pin::parse(pin).unwrap(),
            },
            world.now,
            &mut world.random,
        )
    };
    assert_eq!(
        attempt(&mut alice, &mut world, "0000"),
        Err(PurseError::WrongPin { tries_left: 2 })
    );
    assert_eq!(
        attempt(&mut alice, &mut world, "9999"),
        Err(PurseError::WrongPin { tries_left: 1 })
    );
    // The counter survives persistence.
    let mut alice = Purse::decode_state(&alice.encode_state()).unwrap();
    assert_eq!(
        attempt(&mut alice, &mut world, "4321"),
        Err(PurseError::WrongPin { tries_left: 0 })
    );
    assert_eq!(
        attempt(&mut alice, &mut world, PIN),
        Err(PurseError::PinBlocked)
    );
    assert_eq!(alice.balance(), kes("1000"));
    // A sync alone does not unblock; the operator must.
    world.sync(&mut alice);
    assert_eq!(
        attempt(&mut alice, &mut world, PIN),
        Err(PurseError::PinBlocked)
    );
    world.book.unblock_pin(alice.identity().purse_id).unwrap();
    let report = world.sync(&mut alice);
    assert!(report.pin_unblocked);
    assert!(matches!(
        attempt(&mut alice, &mut world, PIN),
        Ok(Outcome::Paid { .. })
    ));
    // The unblock is delivered once.
    world.sync(&mut alice);
    assert!(
        !world
            .book
            .shadow(alice.identity().purse_id)
            .unwrap()
            .pin_unblock_requested
    );
}
