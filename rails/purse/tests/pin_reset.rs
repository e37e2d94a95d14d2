//! PIN reset in place: the operator's one-time reset code (computed from the purse's own key and
//! a counter) sets a new PIN on the same purse — through the purse itself (the applet's APDU, the
//! hardware path) and through the software secure element's file (a forgotten PIN). A thief
//! with the phone and not the code resets nothing; a code works once, for one purse; a restored
//! file takes no used code and does not bring the old PIN back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use offpay_purse::apdu::PurseCard;
use offpay_purse::pin_reset::{PIN_RESET_FAILURES_MAX, ResetCode, reset_code};
use offpay_purse::se::{DEVICE_PIN_TRIES_MAX, DeviceSecret, SealParams, SoftwareSecureElement};
use offpay_purse::*;

const NEW_PIN: &str = "908172";

fn new_pin() -> Pin {
    Pin::parse(NEW_PIN).unwrap()
}

fn issue(world: &mut World, id: PurseId) -> ResetCode {
    world.book.issue_pin_reset(&world.secrets, id).unwrap()
}

fn reset(purse: &mut Purse, code: &ResetCode, world: &mut World) -> Result<Outcome, PurseError> {
    purse.handle(
        Command::ResetPin {
            code: code.clone(),
            new: new_pin(),
        },
        world.now,
        &mut world.random,
    )
}

/// Pays 1.00 with `pin` from `payer` to a fresh payee: proves which PIN the purse takes.
fn pays_with(world: &mut World, payer: &mut Purse, payee: &mut Purse, pin: &Pin) -> bool {
    let amount = kes("1");
    let code1 = request(world, payee, payer, amount);
    payer
        .handle(
            Command::Pay {
                payee: payee.identity().phone,
                amount,
                code1,
                pin: pin.clone(),
            },
            world.now,
            &mut world.random,
        )
        .is_ok()
}

// --- The purse itself (the applet's check; the hardware stand-in runs exactly this) ---

/// The blocked PIN is replaced, not given three more tries: the old PIN no longer pays, the new
/// one does, with every try back.
#[test]
fn a_reset_code_sets_a_new_pin_and_gives_back_every_try() {
    let mut world = World::new(1);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision("+254700000002", PurseKind::Customer);
    world.float(&alice, "100");
    world.sync(&mut alice);
    let wrong = Pin::parse("0000").unwrap();
    while alice.pin_tries_left() > 0 {
        assert!(!pays_with(&mut world, &mut alice, &mut bob, &wrong));
    }
    let code = issue(&mut world, alice.identity().purse_id);
    assert_eq!(
        reset(&mut alice, &code, &mut world).unwrap(),
        Outcome::PinReset { number: 1 }
    );
    assert_eq!(alice.pin_tries_left(), offpay_purse::params::PIN_TRIES_MAX);
    assert!(!pays_with(&mut world, &mut alice, &mut bob, &pin()));
    assert!(pays_with(&mut world, &mut alice, &mut bob, &new_pin()));
}

/// A used code is refused the second time, and a code the operator issued but the holder never
/// typed is overtaken by the next. (Defence removed — the purse not moving its counter on — the
/// second use resets the PIN again and this test fails.)
#[test]
fn a_reset_code_works_once() {
    let mut world = World::new(2);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let first = issue(&mut world, alice.identity().purse_id);
    let second = issue(&mut world, alice.identity().purse_id);
    assert_eq!(
        reset(&mut alice, &second, &mut world).unwrap(),
        Outcome::PinReset { number: 2 }
    );
    assert_eq!(
        reset(&mut alice, &second, &mut world).unwrap_err(),
        PurseError::WrongResetCode {
            tries_left: PIN_RESET_FAILURES_MAX - 1
        }
    );
    assert!(matches!(
        reset(&mut alice, &first, &mut world).unwrap_err(),
        PurseError::WrongResetCode { .. }
    ));
    assert_eq!(alice.pin_resets_used(), 2);
}

/// A thief who has the phone but not the code: every guess is counted, and after
/// PIN_RESET_FAILURES_MAX the purse takes no code at all, not even the right one. (Defence
/// removed — wrong codes not counted — the last guesses are still "wrong code" and this test
/// fails.)
#[test]
fn a_thief_without_the_code_resets_nothing() {
    let mut world = World::new(3);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let right = issue(&mut world, alice.identity().purse_id);
    let mut left = PIN_RESET_FAILURES_MAX;
    for guess in ["0000 0000 0000", "1234 5678 9012", "9999 9999 9999"] {
        let guess = ResetCode::parse(guess).unwrap();
        assert!(!guess.matches(&right));
        left -= 1;
        assert_eq!(
            reset(&mut alice, &guess, &mut world).unwrap_err(),
            PurseError::WrongResetCode { tries_left: left }
        );
    }
    assert_eq!(
        reset(&mut alice, &right, &mut world).unwrap_err(),
        PurseError::PinResetBlocked
    );
    assert_eq!(alice.pin_resets_used(), 0);
}

/// A code made for another purse (or from another purse's key) does not reset this one.
#[test]
fn a_code_for_another_purse_does_not_reset() {
    let mut world = World::new(4);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    let bobs = issue(&mut world, bob.identity().purse_id);
    assert!(matches!(
        reset(&mut alice, &bobs, &mut world).unwrap_err(),
        PurseError::WrongResetCode { .. }
    ));
    // Alice's own number 1 under Bob's key, and Bob's id under Alice's key: neither works.
    let operator = world.book.operator();
    let alice_id = alice.identity().purse_id;
    let bob_id = bob.identity().purse_id;
    let crossed = reset_code(&world.secrets.purse_key(bob_id), operator, alice_id, 1);
    assert!(reset(&mut alice, &crossed, &mut world).is_err());
    let crossed = reset_code(&world.secrets.purse_key(alice_id), operator, bob_id, 1);
    assert!(reset(&mut alice, &crossed, &mut world).is_err());
    assert_eq!(alice.pin_resets_used(), 0);
}

/// The operator keeps a count, never the code, and the codes it issues are the purse's own.
#[test]
fn the_operator_keeps_a_count_not_the_code() {
    let mut world = World::new(5);
    let alice = world.provision("+254700000001", PurseKind::Customer);
    let id = alice.identity().purse_id;
    let code = issue(&mut world, alice.identity().purse_id);
    let shadow = world.book.shadow(id).unwrap();
    assert_eq!(shadow.pin_resets_issued, 1);
    let stored = serde_json::to_string(shadow).unwrap();
    let digits = format!("{:012}", code.as_number());
    assert!(!stored.contains(&digits), "the code is stored");
    assert!(code.matches(&reset_code(
        &world.secrets.purse_key(id),
        world.book.operator(),
        id,
        1
    )));
}

// --- The software secure element: a forgotten PIN, the file sealed under it ---

fn create(path: &Path, device: &Path, purse: Purse) {
    SoftwareSecureElement::create_with(
        path,
        DeviceSecret::load_or_create(device).unwrap(),
        purse,
        SealParams::TEST,
        SeededRandom::new(4),
    )
    .unwrap();
}

fn open(
    path: &Path,
    device: &Path,
    world: &World,
    pin: &Pin,
) -> Result<SoftwareSecureElement<SeededRandom>, PurseError> {
    SoftwareSecureElement::open_with(
        path,
        DeviceSecret::load_or_create(device).unwrap(),
        world.book.operator(),
        pin,
        SeededRandom::new(6),
    )
}

fn reset_file(
    path: &Path,
    device: &Path,
    world: &World,
    code: &ResetCode,
) -> Result<SoftwareSecureElement<SeededRandom>, PurseError> {
    SoftwareSecureElement::reset_pin_with(
        path,
        DeviceSecret::load_or_create(device).unwrap(),
        world.book.operator(),
        code,
        &new_pin(),
        world.now,
        SeededRandom::new(7),
    )
}

/// The holder forgot the PIN and blocked the device's tries: the reset code opens the file, the
/// new PIN is set, the device's tries start again, the balance is intact, and the old PIN no
/// longer opens the file.
#[test]
fn a_forgotten_pin_is_reset_in_the_purse_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, device) = (dir.path().join("alice.purse"), dir.path().join("device"));
    let mut world = World::new(6);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    world.float(&alice, "250");
    world.sync(&mut alice);
    let id = alice.identity().purse_id;
    create(&path, &device, alice);
    for guess in ["0000", "0001", "0002", "0003", "0004"] {
        open(&path, &device, &world, &Pin::parse(guess).unwrap()).unwrap_err();
    }
    assert_eq!(
        open(&path, &device, &world, &pin()).unwrap_err(),
        PurseError::PinBlocked
    );
    let code = issue(&mut world, id);
    let element = reset_file(&path, &device, &world, &code).unwrap();
    assert_eq!(element.purse().balance(), kes("250"));
    assert_eq!(element.purse().pin_resets_used(), 1);
    drop(element);
    let secret = DeviceSecret::load_or_create(&device).unwrap();
    assert_eq!(secret.wrong_pins(world.book.operator(), id), 0);
    assert_eq!(secret.reset_code_used(world.book.operator(), id), 1);
    assert!(matches!(
        open(&path, &device, &world, &pin()).unwrap_err(),
        PurseError::WrongPin {
            tries_left
        } if tries_left == DEVICE_PIN_TRIES_MAX - 1
    ));
    let mut element = open(&path, &device, &world, &new_pin()).unwrap();
    let mut card = PurseCard::new(&mut element, world.now).unwrap();
    assert_eq!(card.status(world.now).unwrap().balance, kes("250"));
}

/// A thief with the phone (device secret, try store and file) and no code: the file does not
/// open, every guess is counted on the device (restoring the file gives no new guesses), and
/// then even the right code is refused. (Defence removed — the device's count of wrong reset
/// codes — the fourth guess is still "wrong code" and this test fails.)
#[test]
fn a_thief_cannot_reset_the_pin_of_a_purse_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, device) = (dir.path().join("alice.purse"), dir.path().join("device"));
    let mut world = World::new(7);
    let alice = world.provision("+254700000001", PurseKind::Customer);
    let id = alice.identity().purse_id;
    create(&path, &device, alice);
    let copy = std::fs::read(&path).unwrap();
    let right = issue(&mut world, id);
    for (guess, left) in [("000000000000", 2), ("111111111111", 1)] {
        assert_eq!(
            reset_file(&path, &device, &world, &ResetCode::parse(guess).unwrap()).unwrap_err(),
            PurseError::WrongResetCode { tries_left: left }
        );
        std::fs::write(&path, &copy).unwrap();
    }
    assert_eq!(
        reset_file(
            &path,
            &device,
            &world,
            &ResetCode::parse("222222222222").unwrap()
        )
        .unwrap_err(),
        PurseError::PinResetBlocked
    );
    assert_eq!(
        reset_file(&path, &device, &world, &right).unwrap_err(),
        PurseError::PinResetBlocked
    );
    // The holder's PIN still opens it (the purse is theirs; the thief changed nothing).
    open(&path, &device, &world, &pin()).unwrap();
}

/// The code of another purse does not open this file, nor does a used code a second time.
/// (Defence removed — the device's record of the last code used — the reused code opens the
/// restored copy and this test fails.)
#[test]
fn a_reused_code_a_foreign_code_and_a_restored_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, device) = (dir.path().join("alice.purse"), dir.path().join("device"));
    let mut world = World::new(8);
    let alice = world.provision("+254700000001", PurseKind::Customer);
    let bob = world.provision("+254700000002", PurseKind::Customer);
    let id = alice.identity().purse_id;
    create(&path, &device, alice);
    let bobs = issue(&mut world, bob.identity().purse_id);
    assert!(matches!(
        reset_file(&path, &device, &world, &bobs).unwrap_err(),
        PurseError::WrongResetCode { .. }
    ));
    let before_reset = std::fs::read(&path).unwrap();
    let first = issue(&mut world, id);
    reset_file(&path, &device, &world, &first).unwrap();
    // Used: refused on the reset file...
    assert!(matches!(
        reset_file(&path, &device, &world, &first).unwrap_err(),
        PurseError::WrongResetCode { .. } | PurseError::PinResetBlocked
    ));
    // ...and on the copy from before the reset, which still holds a slot for it.
    std::fs::write(&path, &before_reset).unwrap();
    assert!(matches!(
        reset_file(&path, &device, &world, &first).unwrap_err(),
        PurseError::WrongResetCode { .. } | PurseError::PinResetBlocked
    ));
    // The restored copy does not bring the old PIN back either.
    assert_eq!(
        open(&path, &device, &world, &pin()).unwrap_err(),
        PurseError::Storage(StorageProblem::Tampered)
    );
}

/// A restored copy is not a dead end for its holder: the operator's next code still resets it
/// (the device refuses only the numbers it used).
#[test]
fn the_next_code_resets_a_restored_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, device) = (dir.path().join("alice.purse"), dir.path().join("device"));
    let mut world = World::new(9);
    let alice = world.provision("+254700000001", PurseKind::Customer);
    let id = alice.identity().purse_id;
    create(&path, &device, alice);
    let copy = std::fs::read(&path).unwrap();
    let first = issue(&mut world, id);
    reset_file(&path, &device, &world, &first).unwrap();
    std::fs::write(&path, &copy).unwrap();
    let second = issue(&mut world, id);
    let element = reset_file(&path, &device, &world, &second).unwrap();
    assert_eq!(element.purse().pin_resets_used(), 2);
    drop(element);
    open(&path, &device, &world, &new_pin()).unwrap();
}

/// A purse file of format 2 (before PIN resets: the state sealed straight under the PIN's key),
/// written here byte by byte as the previous release did: it opens with the PIN, is rewritten in
/// format 3 at once, and can be reset from then on.
#[test]
fn a_format_2_file_opens_with_its_pin_and_is_rewritten_for_resets() {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use hmac::Mac;
    let dir = tempfile::tempdir().unwrap();
    let (path, device) = (dir.path().join("alice.purse"), dir.path().join("device"));
    let mut world = World::new(10);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    world.float(&alice, "75");
    world.sync(&mut alice);
    let id = alice.identity().purse_id;
    let operator = world.book.operator();
    let secret_bytes = [9u8; 32];
    std::fs::write(&device, secret_bytes).unwrap();
    let params = SealParams::TEST;
    let salt = [3u8; 16];
    let mut header = vec![2u8, operator.as_bytes().len() as u8];
    header.extend_from_slice(operator.as_bytes());
    header.extend_from_slice(&id.0.to_be_bytes());
    header.extend_from_slice(&params.memory_kib.to_be_bytes());
    header.extend_from_slice(&params.passes.to_be_bytes());
    header.push(params.lanes);
    header.extend_from_slice(&salt);
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(params.memory_kib, params.passes, 1, Some(32)).unwrap(),
    );
    let mut stretched = [0u8; 32];
    argon
        // The PIN as the purse encodes it: its length, then six digit bytes (zero-padded).
        .hash_password_into(&[4, b'1', b'2', b'3', b'4', 0, 0], &salt, &mut stretched)
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret_bytes).unwrap();
    mac.update(b"offpay purse file v2");
    mac.update(&[0]);
    for part in [operator.as_bytes(), &id.0.to_be_bytes(), &stretched] {
        mac.update(&[part.len() as u8]);
        mac.update(part);
    }
    let key: [u8; 32] = mac.finalize().into_bytes().into();
    let nonce = [5u8; 24];
    let sealed = chacha20poly1305::XChaCha20Poly1305::new(&key.into())
        .encrypt(
            &nonce.into(),
            Payload {
                msg: &alice.encode_state(),
                aad: &header,
            },
        )
        .unwrap();
    let mut file = header;
    file.extend_from_slice(&nonce);
    file.extend_from_slice(&sealed);
    std::fs::write(&path, &file).unwrap();

    // Not resettable before it was opened once (it has no reset slots).
    let code = issue(&mut world, id);
    assert_eq!(
        reset_file(&path, &device, &world, &code).unwrap_err(),
        PurseError::UnsupportedVersion { found: 2 }
    );
    let element = open(&path, &device, &world, &pin()).unwrap();
    assert_eq!(element.purse().balance(), kes("75"));
    drop(element);
    assert_eq!(std::fs::read(&path).unwrap()[0], 3, "rewritten in format 3");
    let element = reset_file(&path, &device, &world, &code).unwrap();
    assert_eq!(element.purse().balance(), kes("75"));
    drop(element);
    open(&path, &device, &world, &new_pin()).unwrap();
}
