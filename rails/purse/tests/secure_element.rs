//! The software secure element: sealed purse files, atomic writes, and a whole payment through the
//! APDU interface with the typed client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use offpay_purse::apdu::{CommandApdu, PurseCard, ResponseApdu, ins, sw};
use offpay_purse::se::{DeviceSecret, SoftwareSecureElement, peek_file};
use offpay_purse::*;

fn secret(byte: u8) -> DeviceSecret {
    DeviceSecret::from_bytes([byte; 32])
}

fn open(path: &Path, world: &World) -> SoftwareSecureElement<SeededRandom> {
    SoftwareSecureElement::open_with(path, secret(1), world.book.operator(), SeededRandom::new(5))
        .unwrap()
}

fn create(path: &Path, purse: Purse) {
    SoftwareSecureElement::create_with(path, secret(1), purse, SeededRandom::new(4)).unwrap();
}

#[test]
fn a_payment_through_apdus_between_two_purse_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(1);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    let (alice_path, bob_path) = (dir.path().join("alice.purse"), dir.path().join("bob.purse"));
    create(&alice_path, alice);
    create(&bob_path, bob);
    assert_eq!(peek_file(&alice_path).unwrap().0, world.book.operator());

    let now = world.now;
    let mut bob_card = PurseCard::new(open(&bob_path, &world), now).unwrap();
    let amount = bob_card.parse_amount("450").unwrap();
    let code1 = bob_card
        .request(phone("+254700000001"), amount, now)
        .unwrap();
    drop(bob_card); // power off: the request must survive

    let mut alice_card = PurseCard::new(open(&alice_path, &world), now).unwrap();
    alice_card
        .check_request(phone("+254700000002"), amount, code1, now)
        .unwrap();
    let wrong = Pin::parse("0000").unwrap();
    assert_eq!(
        alice_card.pay(phone("+254700000002"), amount, code1, &wrong, now),
        Err(PurseError::WrongPin { tries_left: 2 })
    );
    let (code2, debit) = alice_card
        .pay(phone("+254700000002"), amount, code1, &pin(), now)
        .unwrap();
    assert!(debit.is_debit());
    assert_eq!(alice_card.show_code(now).unwrap().code2, code2);
    assert_eq!(alice_card.status(now).unwrap().pin_tries_left, 3);

    let mut bob_card = PurseCard::new(open(&bob_path, &world), now).unwrap();
    let pending = bob_card.pending(now).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].code1, code1);
    let credit = bob_card.accept(code2, None, now).unwrap();
    assert_eq!(credit.amount, amount);
    assert_eq!(
        bob_card.accept(code2, None, now),
        Err(PurseError::AlreadyAccepted)
    );
    assert_eq!(bob_card.status(now).unwrap().balance, kes("450"));
    assert_eq!(bob_card.read_log(true, now).unwrap().len(), 1);

    // Sync through the card, with the answer also going through the card.
    let upload = bob_card.start_sync(now).unwrap();
    let outcome = world
        .book
        .handle_upload(&world.secrets, &upload, now)
        .unwrap();
    world.ledger.apply(&outcome.postings);
    let summary = bob_card.apply_answer(&outcome.answer, now).unwrap();
    assert_eq!(summary.acknowledged_through, 1);
    assert!(bob_card.read_log(false, now).unwrap().is_empty());
    // Everything above was written: a fresh open sees it.
    let reopened = open(&bob_path, &world);
    assert_eq!(reopened.purse().balance(), kes("450"));
    assert!(reopened.purse().unacknowledged_log().is_empty());
}

#[test]
fn a_tampered_purse_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(2);
    let alice = world.provision("+254700000001", PurseKind::Customer);
    let path = dir.path().join("alice.purse");
    create(&path, alice);
    let original = std::fs::read(&path).unwrap();
    for position in [0usize, 5, original.len() / 2, original.len() - 1] {
        let mut bytes = original.clone();
        bytes[position] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let error =
            SoftwareSecureElement::open(&path, secret(1), world.book.operator()).unwrap_err();
        assert!(
            matches!(
                error,
                PurseError::Storage(StorageProblem::Tampered)
                    | PurseError::UnsupportedVersion { .. }
                    | PurseError::WrongOperator { .. }
            ),
            "byte {position}: {error}"
        );
    }
    // Truncated.
    std::fs::write(&path, &original[..original.len() - 10]).unwrap();
    assert_eq!(
        SoftwareSecureElement::open(&path, secret(1), world.book.operator()).unwrap_err(),
        PurseError::Storage(StorageProblem::Tampered)
    );
    // Another device's secret.
    std::fs::write(&path, &original).unwrap();
    assert_eq!(
        SoftwareSecureElement::open(&path, secret(2), world.book.operator()).unwrap_err(),
        PurseError::Storage(StorageProblem::Tampered)
    );
    // The untouched file opens.
    assert!(SoftwareSecureElement::open(&path, secret(1), world.book.operator()).is_ok());
}

#[test]
fn a_purse_file_from_another_operator_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(3);
    let alice = world.provision("+254700000001", PurseKind::Customer);
    let path = dir.path().join("alice.purse");
    create(&path, alice);
    let other = OperatorId::new("other-op").unwrap();
    let error = SoftwareSecureElement::open(&path, secret(1), other).unwrap_err();
    assert_eq!(
        error,
        PurseError::WrongOperator {
            expected: other,
            found: world.book.operator()
        }
    );
    assert_eq!(
        error.to_string(),
        "this purse belongs to operator test-op, not other-op"
    );
}

#[test]
fn a_crash_mid_write_leaves_the_old_state_and_provisioning_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(4);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    let path = dir.path().join("bob.purse");
    create(&path, bob.clone());
    assert_eq!(
        SoftwareSecureElement::create(&path, secret(1), bob).unwrap_err(),
        PurseError::Storage(StorageProblem::AlreadyExists)
    );
    // A crash while writing the next state leaves a half-written temporary file.
    std::fs::write(dir.path().join("bob.purse.tmp"), b"\x01half a purse").unwrap();
    let mut element = open(&path, &world);
    assert_eq!(element.purse().pending_requests().len(), 0);
    // The next write replaces the debris.
    let mut card = PurseCard::new(&mut element, world.now).unwrap();
    card.request(phone("+254700000001"), kes("10"), world.now)
        .unwrap();
    assert!(!dir.path().join("bob.purse.tmp").exists());
    assert_eq!(open(&path, &world).purse().pending_requests().len(), 1);
}

#[test]
fn a_failed_write_keeps_the_previous_state_and_answers_6581() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(6);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    let path = dir.path().join("bob.purse");
    create(&path, bob);
    let mut element = open(&path, &world);
    // Make the temporary path unwritable: a directory stands where the file would go.
    std::fs::create_dir(dir.path().join("bob.purse.tmp")).unwrap();
    let mut data = Vec::new();
    data.extend_from_slice(&phone("+254700000001").to_bytes());
    data.extend_from_slice(&1000u64.to_be_bytes());
    let response =
        element.transmit_at(&CommandApdu::new(ins::REQUEST, 0, data).encode(), world.now);
    let response = ResponseApdu::decode(&response).unwrap();
    assert_eq!(response.status, sw::MEMORY_FAILURE);
    assert!(
        element.purse().pending_requests().is_empty(),
        "no Code 1 without a durable request"
    );
}

#[test]
fn apdu_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(7);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    let path = dir.path().join("bob.purse");
    create(&path, bob);
    let mut element = open(&path, &world);
    let status = |bytes: Vec<u8>| ResponseApdu::decode(&bytes).unwrap().status;
    assert_eq!(
        status(element.transmit_at(&[0x80, 0x10], world.now)),
        sw::WRONG_LENGTH
    );
    assert_eq!(
        status(element.transmit_at(&[0x00, 0x40, 0, 0], world.now)),
        sw::CLA_NOT_SUPPORTED
    );
    assert_eq!(
        status(element.transmit_at(&[0x80, 0x7F, 0, 0], world.now)),
        sw::INS_NOT_SUPPORTED
    );
    // Lc says 5, 3 bytes follow.
    assert_eq!(
        status(element.transmit_at(&[0x80, 0x10, 0, 0, 5, 1, 2, 3], world.now)),
        sw::WRONG_LENGTH
    );
    let mut card = PurseCard::new(&mut element, world.now).unwrap();
    assert_eq!(card.show_code(world.now), Err(PurseError::NothingToShow));
    assert_eq!(
        card.accept(Code::parse("12345678").unwrap(), None, world.now),
        Err(PurseError::NoPendingRequest)
    );
    assert_eq!(
        card.request(phone("+254700000002"), kes("1"), world.now),
        Err(PurseError::SelfPayment)
    );
    assert_eq!(
        card.request(phone("+254700000001"), kes("80000"), world.now),
        Err(PurseError::LimitExceeded {
            limit: Limit::MaxBalance,
            maximum: kes("70000")
        })
    );
}
