//! Trust classes: a purse is software (a file on a phone or PC, the default) or hardware (a SIM
//! applet), set by the operator at provisioning, each with its own limits; the operator cannot
//! give a software purse more than its class allows, and a purse never states its own class.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use offpay_purse::trust::{TrustClass, ceiling_major};
use offpay_purse::*;

fn major(units: u64) -> Amount {
    Amount::from_minor(units * 100, Currency::KES).unwrap()
}

#[test]
fn each_class_is_provisioned_with_its_own_limits_and_the_purse_receives_them() {
    let mut world = World::new(1);
    let software = world.provision("+254700000001", PurseKind::Customer);
    let provisioning =
        world.provisioning_as("+254700000002", PurseKind::Customer, TrustClass::Hardware);
    let hardware = Purse::provision(&provisioning, pin());
    let shadow = |purse: &Purse| {
        world
            .book
            .shadow(purse.identity().purse_id)
            .unwrap()
            .clone()
    };
    assert_eq!(shadow(&software).trust_class, TrustClass::Software);
    assert_eq!(shadow(&hardware).trust_class, TrustClass::Hardware);
    // Software: the protocol's defaults, exactly as before classes.
    assert_eq!(
        *software.limits(),
        OfflineLimits::defaults(PurseKind::Customer, Currency::KES, world.now)
    );
    assert_eq!(software.limits().max_balance, major(70_000));
    // Hardware: higher, and the purse holds what the operator's shadow says.
    assert_eq!(hardware.limits().max_balance, major(200_000));
    assert_eq!(hardware.limits().max_single_payment, major(50_000));
    assert_eq!(hardware.limits().max_spent_since_sync, major(150_000));
    assert_eq!(*hardware.limits(), shadow(&hardware).limits);
    for kind in [PurseKind::Customer, PurseKind::Agent] {
        let (soft, hard) = (
            ceiling_major(kind, TrustClass::Software),
            ceiling_major(kind, TrustClass::Hardware),
        );
        assert!(hard.0 > soft.0 && hard.1 > soft.1 && hard.2 > soft.2);
    }
}

/// The operator cannot raise a software purse above its class: a clear error, nothing changed;
/// the same limits are fine for a hardware purse, and reach it at its next sync. (Defence
/// removed — the class check in `set_limits` — the software purse takes the hardware limits and
/// this test fails.)
#[test]
fn a_software_purse_is_never_given_more_than_its_class_allows() {
    let mut world = World::new(2);
    let mut software = world.provision("+254700000001", PurseKind::Customer);
    let provisioning =
        world.provisioning_as("+254700000002", PurseKind::Customer, TrustClass::Hardware);
    let mut hardware = Purse::provision(&provisioning, pin());
    let mut raised = *software.limits();
    raised.max_single_payment = major(20_001);
    let before = world
        .book
        .shadow(software.identity().purse_id)
        .unwrap()
        .clone();
    let error = world
        .book
        .set_limits(software.identity().purse_id, raised, 30 * 86_400)
        .unwrap_err();
    assert_eq!(
        error,
        PurseError::AboveClassLimit {
            class: TrustClass::Software,
            limit: Limit::MaxSinglePayment,
            maximum: major(20_000),
        }
    );
    assert_eq!(
        error.to_string(),
        "a software purse may have a maximum single payment of at most KES 20000.00"
    );
    assert_eq!(
        *world.book.shadow(software.identity().purse_id).unwrap(),
        before
    );
    world.sync(&mut software);
    assert_eq!(software.limits().max_single_payment, major(20_000));
    // Lowering is always allowed.
    let mut lowered = *software.limits();
    lowered.max_balance = major(1_000);
    world
        .book
        .set_limits(software.identity().purse_id, lowered, 30 * 86_400)
        .unwrap();
    // The hardware purse takes them.
    let mut raised = *hardware.limits();
    raised.max_single_payment = major(45_000);
    world
        .book
        .set_limits(hardware.identity().purse_id, raised, 30 * 86_400)
        .unwrap();
    world.sync(&mut hardware);
    assert_eq!(hardware.limits().max_single_payment, major(45_000));
}

/// A purse has no way to claim a class: nothing it sends carries one, and a sync leaves the
/// operator's record as provisioned.
#[test]
fn a_purse_cannot_raise_its_own_class() {
    let mut world = World::new(3);
    let mut software = world.provision("+254700000001", PurseKind::Customer);
    world.float(&software, "100");
    world.sync(&mut software);
    world.sync(&mut software);
    let shadow = world.book.shadow(software.identity().purse_id).unwrap();
    assert_eq!(shadow.trust_class, TrustClass::Software);
    assert_eq!(shadow.limits.max_balance, major(70_000));
}

/// The hardware class goes into a SIM applet over the card interface: a blank card takes one
/// personalisation with the operator's provisioning record and the holder's PIN, refuses
/// everything before it and a second one after it, and then holds and pays with the hardware
/// limits — above what any software purse may pay.
#[test]
fn a_hardware_purse_is_personalised_into_the_applet_over_apdus() {
    use offpay_purse::apdu::{CardEmulation, PurseCard, personalize_command};
    let mut world = World::new(4);
    let provisioning =
        world.provisioning_as("+254700000002", PurseKind::Customer, TrustClass::Hardware);
    let mut card = CardEmulation::blank(SeededRandom::new(8));
    // Blank: nothing but personalisation.
    assert!(PurseCard::new(&mut card, world.now).is_err());
    let command = personalize_command(&provisioning, &pin());
    let answer = offpay_purse::apdu::Transport::transmit(&mut card, &command, world.now).unwrap();
    assert_eq!(&answer[answer.len() - 2..], &[0x90, 0x00]);
    let mut purse = PurseCard::new(&mut card, world.now).unwrap();
    let status = purse.status(world.now).unwrap();
    assert_eq!(status.limits.max_single_payment, major(50_000));
    assert_eq!(status.limits.max_balance, major(200_000));
    assert!(status.limits.max_single_payment.minor() > major(20_000).minor());
    // Once only: a second personalisation (another record, another PIN) is refused.
    let other = world
        .book
        .provision(
            &world.secrets,
            phone("+254700000003"),
            PurseKind::Customer,
            world.now,
        )
        .unwrap();
    let again = personalize_command(&other, &Pin::parse("9999").unwrap());
    let answer = offpay_purse::apdu::Transport::transmit(&mut card, &again, world.now).unwrap();
    assert_eq!(&answer[answer.len() - 2..], &[0x69, 0x85]);
    let status = PurseCard::new(&mut card, world.now)
        .unwrap()
        .status(world.now)
        .unwrap();
    assert_eq!(status.phone, phone("+254700000002"));
}
