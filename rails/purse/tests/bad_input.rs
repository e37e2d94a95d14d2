//! Bad input: each is a clear error and changes nothing — except a wrong Code 2 or PIN, which
//! must count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use offpay_purse::*;

fn setup() -> (World, Purse, Purse) {
    let mut world = World::new(41);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    (world, alice, bob)
}

fn unchanged(purse: &Purse, before: &[u8]) {
    assert_eq!(purse.encode_state(), before, "state changed");
}

#[test]
fn typed_input_errors_are_clear() {
    assert_eq!(Phone::parse("254700000001"), Err(PurseError::PhoneNumber));
    assert_eq!(Phone::parse("+0254700000001"), Err(PurseError::PhoneNumber));
    assert_eq!(
        Phone::parse("+2547000000011234"),
        Err(PurseError::PhoneNumber)
    );
    assert_eq!(Phone::parse("+25470000000a"), Err(PurseError::PhoneNumber));
    assert_eq!(Pin::parse("123").unwrap_err(), PurseError::PinFormat);
    assert_eq!(Pin::parse("1234567").unwrap_err(), PurseError::PinFormat);
    assert_eq!(Pin::parse("12a4").unwrap_err(), PurseError::PinFormat);
    let (_, alice, _) = setup();
    let too_many_decimals = alice.parse_amount("450.505").unwrap_err();
    assert!(
        matches!(
            too_many_decimals,
            PurseError::Amount(offpay_money::MoneyError::TooManyDecimals { allowed: 2 })
        ),
        "{too_many_decimals}"
    );
    assert_eq!(
        too_many_decimals.to_string(),
        "amount not accepted: too many decimals: this currency has 2"
    );
    assert!(matches!(
        alice.parse_amount("4five0"),
        Err(PurseError::Amount(_))
    ));
    assert!(matches!(
        alice.parse_amount("-450"),
        Err(PurseError::Amount(_))
    ));
    assert!(matches!(alice.parse_amount(""), Err(PurseError::Amount(_))));
    assert_eq!(
        Code::parse("1234 567x").unwrap_err().to_string(),
        "codes are digits only; 'x' at position 9 is not a digit"
    );
    assert_eq!(
        Code::parse("1234 567").unwrap_err().to_string(),
        "a code has 8 digits; 7 were entered"
    );
    assert_eq!(TicketCode::parse("1234").unwrap_err().cause(), Cause::Input);
}

#[test]
fn a_mistyped_code_1_changes_nothing() {
    let (mut world, mut alice, mut bob) = setup();
    let code1 = request(&mut world, &mut bob, &alice, kes("450"));
    let before = alice.encode_state();
    let mut digits = code1.digits();
    digits[6] = if digits[6] == b'9' {
        b'0'
    } else {
        digits[6] + 1
    };
    let mistyped = Code::parse(std::str::from_utf8(&digits).unwrap()).unwrap();
    for (amount, code, payee) in [
        (kes("450"), mistyped, bob.identity().phone),
        (kes("540"), code1, bob.identity().phone),
        (kes("450"), code1, phone("+254700000003")),
    ] {
        let result = alice.handle(
            Command::Pay {
                payee,
                amount,
                code1: code,
                pin: pin(),
            },
            world.now,
            &mut world.random,
        );
        assert_eq!(result, Err(PurseError::RequestCodeMismatch));
        unchanged(&alice, &before);
    }
    // Wrong currency, zero, paying oneself: input errors, nothing changes.
    let usd = Amount::parse("1", Currency::USD).unwrap();
    for (amount, payee, expected) in [
        (
            usd,
            bob.identity().phone,
            PurseError::CurrencyMismatch {
                purse: Currency::KES,
                given: Currency::USD,
            },
        ),
        (kes("0"), bob.identity().phone, PurseError::ZeroAmount),
        (kes("1"), alice.identity().phone, PurseError::SelfPayment),
    ] {
        let result = alice.handle(
            Command::Pay {
                payee,
                amount,
                code1,
                pin: pin(),
            },
            world.now,
            &mut world.random,
        );
        assert_eq!(result, Err(expected));
        unchanged(&alice, &before);
    }
}

#[test]
fn a_mistyped_code_2_counts_against_the_budget_and_nothing_else() {
    let (mut world, mut alice, mut bob) = setup();
    let code1 = request(&mut world, &mut bob, &alice, kes("450"));
    let code2 = respond(&mut world, &mut alice, &bob, kes("450"), code1);
    let mut digits = code2.digits();
    digits.swap(3, 4);
    if digits == code2.digits() {
        digits[3] = if digits[3] == b'9' {
            b'0'
        } else {
            digits[3] + 1
        };
    }
    let mistyped = Code::parse(std::str::from_utf8(&digits).unwrap()).unwrap();
    let result = bob.handle(
        Command::Accept {
            code2: mistyped,
            request: None,
        },
        world.now,
        &mut world.random,
    );
    assert_eq!(
        result,
        Err(PurseError::ResponseCodeMismatch {
            request_tries_left: 2,
            period_tries_left: u16::from(
                offpay_purse::params::CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX
            ) - 1
        })
    );
    assert_eq!(bob.balance(), kes("0"));
    assert_eq!(bob.failures_since_sync(), 1);
    assert_eq!(bob.pending_requests()[0].failures, 1);
    assert!(bob.unacknowledged_log().is_empty());
    // Naming a request that does not exist changes nothing and costs nothing.
    let before = bob.encode_state();
    let wrong_request = nonce_of(&code1).wrapping_add(1) % 10_000;
    assert_eq!(
        bob.handle(
            Command::Accept {
                code2,
                request: Some(wrong_request)
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::UnknownRequest)
    );
    unchanged(&bob, &before);
    // The right code still works.
    assert!(matches!(
        bob.handle(
            Command::Accept {
                code2,
                request: Some(nonce_of(&code1))
            },
            world.now,
            &mut world.random
        ),
        Ok(Outcome::Received { .. })
    ));
}

#[test]
fn a_sync_message_failing_authentication_changes_nothing() {
    let (mut world, mut alice, _) = setup();
    let Outcome::SyncUpload { upload, .. } = alice.start_sync(world.now) else {
        panic!()
    };
    let book_before = world.book.clone();
    for position in [0usize, 2, 20, upload.len() / 2, upload.len() - 1] {
        let mut forged = upload.clone();
        forged[position] ^= 0x20;
        let error = world
            .book
            .handle_upload(&world.secrets, &forged, world.now)
            .unwrap_err();
        assert!(
            matches!(
                error,
                PurseError::AuthenticationFailed
                    | PurseError::UnsupportedVersion { .. }
                    | PurseError::Malformed(_)
                    | PurseError::UnknownPurse(_)
                    | PurseError::WrongOperator { .. }
            ),
            "byte {position}: {error}"
        );
        assert_eq!(world.book, book_before);
    }
    assert_eq!(
        world
            .book
            .handle_upload(&world.secrets, &upload[..10], world.now),
        Err(PurseError::Malformed("truncated"))
    );
    // A forged answer is refused by the purse and changes nothing.
    let outcome = world
        .book
        .handle_upload(&world.secrets, &upload, world.now)
        .unwrap();
    let before = alice.encode_state();
    let mut forged = outcome.answer.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        alice.apply_answer(&forged),
        Err(PurseError::AuthenticationFailed)
    );
    unchanged(&alice, &before);
    // An answer for another purse (sealed with another key) fails too.
    let mut bob = world.provision("+254700000005", PurseKind::Customer);
    let Outcome::SyncUpload {
        upload: bob_upload, ..
    } = bob.start_sync(world.now)
    else {
        panic!()
    };
    let bob_outcome = world
        .book
        .handle_upload(&world.secrets, &bob_upload, world.now)
        .unwrap();
    assert_eq!(
        alice.apply_answer(&bob_outcome.answer),
        Err(PurseError::AuthenticationFailed)
    );
    unchanged(&alice, &before);
    // The genuine answer applies.
    assert!(alice.apply_answer(&outcome.answer).is_ok());
}

#[test]
fn a_replayed_sync_is_refused_and_changes_nothing() {
    let (mut world, mut alice, _) = setup();
    let Outcome::SyncUpload { upload, .. } = alice.start_sync(world.now) else {
        panic!()
    };
    let outcome = world
        .book
        .handle_upload(&world.secrets, &upload, world.now)
        .unwrap();
    world.ledger.apply(&outcome.postings);
    let book_before = world.book.clone();
    let error = world
        .book
        .handle_upload(&world.secrets, &upload, world.now)
        .unwrap_err();
    assert_eq!(
        error,
        PurseError::SyncReplayed {
            sequence: 1,
            last_accepted: 1
        }
    );
    assert_eq!(world.book, book_before);
    // The answer applies once; a replayed answer is stale.
    alice.apply_answer(&outcome.answer).unwrap();
    let before = alice.encode_state();
    assert_eq!(
        alice.apply_answer(&outcome.answer),
        Err(PurseError::StaleAnswer)
    );
    unchanged(&alice, &before);
    // An older upload replayed after a newer one is refused as well.
    world.sync(&mut alice);
    let book_before = world.book.clone();
    assert!(matches!(
        world.book.handle_upload(&world.secrets, &upload, world.now),
        Err(PurseError::SyncReplayed { .. })
    ));
    assert_eq!(world.book, book_before);
}

#[test]
fn an_upload_from_another_operator_or_unknown_purse_is_refused() {
    let (mut world, mut alice, _) = setup();
    let Outcome::SyncUpload { upload, .. } = alice.start_sync(world.now) else {
        panic!()
    };
    let other = OperatorSecrets::new(
        OperatorId::new("other-op").unwrap(),
        offpay_purse::crypto::MasterKey::from_bytes([7; 32]),
    );
    let mut other_book = OperatorBook::new(other.operator(), Currency::KES);
    assert_eq!(
        other_book.handle_upload(&other, &upload, world.now),
        Err(PurseError::WrongOperator {
            expected: other.operator(),
            found: world.book.operator()
        })
    );
    let mut empty = OperatorBook::new(world.book.operator(), Currency::KES);
    assert_eq!(
        empty.handle_upload(&world.secrets, &upload, world.now),
        Err(PurseError::UnknownPurse(alice.identity().purse_id))
    );
    assert_eq!(
        world
            .book
            .provision(
                &world.secrets,
                alice.identity().phone,
                PurseKind::Customer,
                world.now
            )
            .unwrap_err(),
        PurseError::PhoneTaken(alice.identity().phone)
    );
    assert_eq!(
        world
            .book
            .shadow_by_phone(phone("+254799999999"))
            .unwrap_err()
            .to_string(),
        "no purse for +254799999999"
    );
    assert_eq!(
        world
            .book
            .shadow_by_phone(alice.identity().phone)
            .unwrap()
            .purse_id,
        alice.identity().purse_id
    );
}

#[test]
fn refusals_by_the_purse_rules_change_nothing() {
    let (mut world, mut alice, mut bob) = setup();
    let code1 = request(&mut world, &mut bob, &alice, kes("2000"));
    let before = alice.encode_state();
    assert_eq!(
        alice.handle(
            Command::Pay {
                payee: bob.identity().phone,
                amount: kes("2000"),
                code1,
                pin: pin()
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::InsufficientBalance {
            balance: kes("1000"),
            amount: kes("2000")
        })
    );
    unchanged(&alice, &before);
    // Past the validity date the purse must sync before paying.
    let later = alice.limits().valid_until.plus_seconds(1);
    assert_eq!(
        alice.handle(
            Command::Pay {
                payee: bob.identity().phone,
                amount: kes("2000"),
                code1,
                pin: pin()
            },
            later,
            &mut world.random
        ),
        Err(PurseError::ValidityExpired)
    );
    // The one thing it keeps: it has seen its validity end (a clock set back cannot undo that).
    assert_eq!(alice.clock(), later);
    assert_eq!(alice.balance(), kes("1000"));
    assert_eq!(
        alice.counter(),
        Purse::decode_state(&before).unwrap().counter()
    );
    // Above the small-payment limit without a pairwise key.
    assert_eq!(
        bob.handle(
            Command::Request {
                payer: alice.identity().phone,
                amount: kes("3000")
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::PairwiseKeyRequired(alice.identity().phone))
    );
}
