//! Scenario tests: PA, payer device, vending machine and clearing center, in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use offpay_keynote::PrivateKey;
use offpay_microcheck::credential::{
    self, Classes, DelegationTemplate, PayerTemplate, TransactionTemplate,
};
use offpay_microcheck::csc::{
    self, ClearingState, DepositItem, FraudRules, HeldOnline, ItemOutcome, Location,
    MerchantAccount, PayerAccount,
};
use offpay_microcheck::limits::{LOST_KEY_DEPOSIT_WINDOW_SECONDS, MACHINE_CLOCK_AHEAD_SECONDS_MAX};
use offpay_microcheck::machine::{Machine, MachineConfig, StockItem};
use offpay_microcheck::payer::{Charge, LogEntry, PayerDevice, compare_statement};
use offpay_microcheck::wire::Message;
use offpay_microcheck::{MerchantPolicy, PayerPolicy, Refusal, UnixSeconds};
use offpay_money::{Amount, Currency};

const NOW: UnixSeconds = UnixSeconds(1_767_225_600); // 2026-01-01 00:00:00 UTC

struct World {
    pa: PrivateKey,
    age: PrivateKey,
    payer: PrivateKey,
    merchant_key: PrivateKey,
}

fn world() -> World {
    World {
        pa: PrivateKey::ed25519_from_seed(&[1; 32]),
        age: PrivateKey::ed25519_from_seed(&[2; 32]),
        payer: PrivateKey::ed25519_from_seed(&[3; 32]),
        merchant_key: PrivateKey::ed25519_from_seed(&[4; 32]),
    }
}

fn kes(text: &str) -> Amount {
    Amount::parse(text, Currency::KES).unwrap()
}

fn template(classes: Classes) -> PayerTemplate {
    PayerTemplate {
        serial: "s1".into(),
        tier: "daily".into(),
        app_domain: "vend".into(),
        currency: Currency::KES,
        amount_max: kes("5.00"),
        not_before: NOW.minus(60),
        not_after: NOW.plus(86_400),
        per_merchant_day_max: 2,
        classes,
    }
}

fn wide(classes: Classes) -> PayerTemplate {
    PayerTemplate {
        per_merchant_day_max: 20,
        ..template(classes)
    }
}

fn text(assertion: &offpay_keynote::Assertion) -> String {
    String::from_utf8(assertion.text().to_vec()).unwrap()
}

fn stock() -> Vec<StockItem> {
    let item = |item: u32, product: &str, class: &str, price: &str| StockItem {
        item,
        product: product.into(),
        product_class: class.into(),
        price: price.into(),
        count: 10,
    };
    vec![
        item(1, "Pocari Sweat", "drink", "0.83"),
        item(2, "Big Sandwich", "food", "4.50"),
        item(3, "Cigars", "adult", "3.00"),
        item(4, "Radio", "gadget", "25.00"),
    ]
}

fn machine(w: &World, merchant: &str, domain: &str) -> Machine {
    let policy = MerchantPolicy::new(
        merchant,
        domain,
        &w.pa.principal(),
        Some(&w.age.principal()),
    )
    .unwrap();
    let merchant_credential = credential::issue_merchant(
        &w.pa,
        &w.merchant_key.principal(),
        merchant,
        domain,
        NOW.minus(60),
        NOW.plus(90 * 86_400),
    )
    .unwrap();
    let key = PrivateKey::ed25519_from_seed(&[4; 32]);
    Machine::new(
        MachineConfig {
            policy,
            currency: Currency::KES,
            key,
            merchant_credential: text(&merchant_credential),
        },
        stock(),
        [],
    )
    .unwrap()
}

fn device(w: &World, credentials: Vec<String>) -> PayerDevice {
    let key = PrivateKey::ed25519_from_seed(&[3; 32]);
    PayerDevice::new(
        key,
        PayerPolicy::new(&w.pa.principal()).unwrap(),
        &credentials,
    )
    .unwrap()
}

/// One purchase over the "link": select, check the offer, pay, machine decides.
fn buy(
    machine: &mut Machine,
    device: &mut PayerDevice,
    item: u32,
    now: UnixSeconds,
    nonce: u8,
    log: &mut Vec<LogEntry>,
    extra: &[String],
) -> Result<DepositItem, Refusal> {
    let awaiting = machine.select(item, now, &[nonce; 16])?;
    let Message::Offer {
        offer,
        merchant_credential,
        offer_signature,
        ..
    } = awaiting.message().clone()
    else {
        panic!("not an offer")
    };
    let terms = device.check_offer(&offer, &merchant_credential, &offer_signature, now)?;
    let count = offpay_microcheck::payer::purchases_today(log, &offer.merchant, &offer.date);
    let prepared = device.pay(&terms, count, now, extra)?;
    let Message::Payment {
        microcheck,
        credentials,
        ..
    } = prepared.message
    else {
        panic!()
    };
    let sale = machine.pay(awaiting, &microcheck, &credentials)?;
    log.push(prepared.log_entry);
    let record = sale.record.clone();
    let receipt = machine.complete(sale);
    assert!(matches!(receipt, Message::Receipt { .. }));
    Ok(DepositItem::from(&record))
}

#[test]
fn offline_purchase_limits_and_reasons() {
    let w = world();
    let credential =
        credential::issue_payer(&w.pa, &w.payer.principal(), &template(Classes::Any)).unwrap();
    let mut machine = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![text(&credential)]);
    let mut log = Vec::new();
    let sale = buy(&mut machine, &mut device, 1, NOW, 1, &mut log, &[]).unwrap();
    assert_eq!(sale.offer.amount, "0.83");
    // Over the per-purchase limit: the device refuses to write it.
    let over = buy(&mut machine, &mut device, 4, NOW, 2, &mut log, &[]).unwrap_err();
    assert_eq!(over.code(), "over_limit", "{over}");
    // Age-restricted without an adulthood credential.
    let adult = buy(&mut machine, &mut device, 3, NOW, 3, &mut log, &[]).unwrap_err();
    assert_eq!(adult, Refusal::AdulthoodRequired);
    // Second purchase today is fine, the third is over the per-day count.
    buy(&mut machine, &mut device, 1, NOW, 4, &mut log, &[]).unwrap();
    let third = buy(&mut machine, &mut device, 1, NOW, 5, &mut log, &[]).unwrap_err();
    assert_eq!(third.code(), "too_many_purchases", "{third}");
}

#[test]
fn the_machine_decides_even_when_the_device_lies() {
    let w = world();
    let credential = text(
        &credential::issue_payer(&w.pa, &w.payer.principal(), &template(Classes::Any)).unwrap(),
    );
    let mut machine = machine(&w, "vm-1", "vend");
    let terms_of = |message: &Message| match message {
        Message::Offer { offer, .. } => offer.terms().unwrap(),
        _ => panic!(),
    };
    // Over the limit, written anyway by a modified device: the machine refuses.
    let awaiting = machine.select(4, NOW, &[9; 16]).unwrap();
    let terms = terms_of(awaiting.message());
    let check = offpay_microcheck::microcheck::write(&w.payer, &terms).unwrap();
    let refusal = machine
        .pay(awaiting, &text(&check), std::slice::from_ref(&credential))
        .unwrap_err();
    assert_eq!(refusal.code(), "over_limit");
    // Expired: the machine's clock is two days ahead.
    let later = NOW.plus(2 * 86_400);
    let awaiting = machine.select(1, later, &[10; 16]).unwrap();
    let terms = terms_of(awaiting.message());
    let check = offpay_microcheck::microcheck::write(&w.payer, &terms).unwrap();
    let refusal = machine
        .pay(awaiting, &text(&check), std::slice::from_ref(&credential))
        .unwrap_err();
    assert_eq!(refusal.code(), "credential_expired", "{refusal}");
    // Altered after signing: the amount in the text changed.
    let awaiting = machine.select(1, NOW, &[11; 16]).unwrap();
    let terms = terms_of(awaiting.message());
    let check = text(&offpay_microcheck::microcheck::write(&w.payer, &terms).unwrap());
    let altered = check.replace("Pocari Sweat", "Pocari Sweet");
    let refusal = machine
        .pay(
            awaiting.clone(),
            &altered,
            std::slice::from_ref(&credential),
        )
        .unwrap_err();
    assert_eq!(refusal.code(), "not_this_offer", "{refusal}");
    let altered = check.replace("-> \"true\"", "-> \"true\" ");
    let refusal = machine
        .pay(
            awaiting.clone(),
            &altered,
            std::slice::from_ref(&credential),
        )
        .unwrap_err();
    assert_eq!(refusal.code(), "microcheck_signature", "{refusal}");
    // Forged: signed by another key claiming the payer credential.
    let thief = PrivateKey::ed25519_from_seed(&[66; 32]);
    let forged = text(&offpay_microcheck::microcheck::write(&thief, &terms).unwrap());
    let refusal = machine
        .pay(awaiting.clone(), &forged, std::slice::from_ref(&credential))
        .unwrap_err();
    assert_eq!(refusal.code(), "untrusted_issuer", "{refusal}");
    // A good one, then a replay of it against a new offer.
    let sale = machine
        .pay(awaiting, &check, std::slice::from_ref(&credential))
        .unwrap();
    machine.complete(sale);
    let awaiting = machine.select(1, NOW, &[12; 16]).unwrap();
    let refusal = machine
        .pay(awaiting, &check, std::slice::from_ref(&credential))
        .unwrap_err();
    assert_eq!(refusal.code(), "replayed_nonce", "{refusal}");
    // Malformed input.
    let awaiting = machine.select(1, NOW, &[13; 16]).unwrap();
    let refusal = machine
        .pay(awaiting.clone(), "Authorizer: \"", &[])
        .unwrap_err();
    assert_eq!(refusal.code(), "malformed");
    let refusal = machine
        .pay(awaiting, &check, &["not a credential".into()])
        .unwrap_err();
    assert_eq!(refusal.code(), "malformed");
}

#[test]
fn wrong_domain_food_voucher_adulthood_delegation_and_transaction_credentials() {
    let w = world();
    let voucher = text(
        &credential::issue_payer(
            &w.pa,
            &w.payer.principal(),
            &wide(Classes::Only(vec!["food".into()])),
        )
        .unwrap(),
    );
    let mut log = Vec::new();
    // Wrong domain: a credential for `vend` at a `transit` machine.
    let mut transit = machine(&w, "gate-1", "transit");
    let mut device_voucher = device(&w, vec![voucher.clone()]);
    let refusal = buy(&mut transit, &mut device_voucher, 1, NOW, 1, &mut log, &[]).unwrap_err();
    assert_eq!(refusal.code(), "wrong_domain", "{refusal}");
    // Food-only voucher: sandwich yes, drink no.
    let mut vend = machine(&w, "vm-1", "vend");
    buy(&mut vend, &mut device_voucher, 2, NOW, 2, &mut log, &[]).unwrap();
    let refusal = buy(&mut vend, &mut device_voucher, 1, NOW, 3, &mut log, &[]).unwrap_err();
    assert_eq!(refusal.code(), "product_class_not_allowed", "{refusal}");
    // Adulthood credential from the age key makes cigars possible.
    let general =
        text(&credential::issue_payer(&w.pa, &w.payer.principal(), &wide(Classes::Any)).unwrap());
    let adult = text(
        &credential::issue_adulthood(
            &w.age,
            &w.payer.principal(),
            "vend",
            NOW.minus(60),
            NOW.plus(86_400),
        )
        .unwrap(),
    );
    let mut grown_up = device(&w, vec![general.clone(), adult]);
    let mut log = Vec::new();
    buy(&mut vend, &mut grown_up, 3, NOW, 4, &mut log, &[]).unwrap();
    // An adulthood credential signed by the PA key instead of the age key does not count.
    let fake_adult = text(
        &credential::issue_adulthood(
            &w.pa,
            &w.payer.principal(),
            "vend",
            NOW.minus(60),
            NOW.plus(86_400),
        )
        .unwrap(),
    );
    let mut pretender = device(&w, vec![general.clone(), fake_adult]);
    let refusal = buy(&mut vend, &mut pretender, 3, NOW, 5, &mut Vec::new(), &[]).unwrap_err();
    assert_eq!(refusal, Refusal::AdulthoodRequired);
    // A sub-PA issues the payer credential; the chain PA → sub-PA → payer pays.
    let sub = PrivateKey::ed25519_from_seed(&[7; 32]);
    let delegation = text(
        &credential::issue_delegation(
            &w.pa,
            &sub.principal(),
            &DelegationTemplate {
                serial: "d1".into(),
                app_domain: "vend".into(),
                currency: Currency::KES,
                amount_max: kes("1.00"),
                not_before: NOW.minus(60),
                not_after: NOW.plus(86_400),
            },
        )
        .unwrap(),
    );
    let from_sub =
        text(&credential::issue_payer(&sub, &w.payer.principal(), &wide(Classes::Any)).unwrap());
    let mut chained = device(&w, vec![from_sub.clone(), delegation.clone()]);
    buy(&mut vend, &mut chained, 1, NOW, 6, &mut Vec::new(), &[]).unwrap();
    // The sub-PA's credential allows 5.00, but the PA bounded the sub-PA at 1.00.
    let awaiting = vend.select(2, NOW, &[8; 16]).unwrap();
    let terms = match awaiting.message() {
        Message::Offer { offer, .. } => offer.terms().unwrap(),
        _ => panic!(),
    };
    let check = text(&offpay_microcheck::microcheck::write(&w.payer, &terms).unwrap());
    let refusal = vend
        .pay(awaiting, &check, &[from_sub.clone(), delegation])
        .unwrap_err();
    assert_eq!(refusal, Refusal::NotAuthorized);
    // Without the delegation the sub-PA is nobody.
    let mut orphan = device(&w, vec![from_sub]);
    let refusal = buy(&mut vend, &mut orphan, 1, NOW, 9, &mut Vec::new(), &[]).unwrap_err();
    assert_eq!(refusal.code(), "untrusted_issuer", "{refusal}");
    // Over the limit, a transaction-specific credential for exactly this offer makes it good.
    let mut device = device(&w, vec![general]);
    let awaiting = vend.select(4, NOW, &[10; 16]).unwrap();
    let Message::Offer {
        offer,
        merchant_credential,
        offer_signature,
        ..
    } = awaiting.message().clone()
    else {
        panic!()
    };
    let terms = device
        .check_offer(&offer, &merchant_credential, &offer_signature, NOW)
        .unwrap();
    assert_eq!(
        device.pay(&terms, 1, NOW, &[]).unwrap_err().code(),
        "over_limit"
    );
    let online = text(
        &credential::issue_transaction(
            &w.pa,
            &w.payer.principal(),
            &TransactionTemplate {
                serial: "t1".into(),
                app_domain: "vend".into(),
                currency: Currency::KES,
                amount: terms.amount,
                merchant: offer.merchant.clone(),
                nonce: offer.nonce.clone(),
                product_class: offer.product_class.clone(),
                not_before: NOW.minus(60),
                not_after: NOW.plus(900),
            },
        )
        .unwrap(),
    );
    let prepared = device
        .pay(&terms, 1, NOW, std::slice::from_ref(&online))
        .unwrap();
    let Message::Payment {
        microcheck,
        credentials,
        ..
    } = prepared.message
    else {
        panic!()
    };
    vend.pay(awaiting, &microcheck, &credentials).unwrap();
    // ... and for no other offer.
    let awaiting = vend.select(4, NOW, &[11; 16]).unwrap();
    let terms = match awaiting.message() {
        Message::Offer { offer, .. } => offer.terms().unwrap(),
        _ => panic!(),
    };
    let check = text(&offpay_microcheck::microcheck::write(&w.payer, &terms).unwrap());
    let refusal = vend.pay(awaiting, &check, &[online]).unwrap_err();
    assert_eq!(
        refusal.code(),
        "transaction_credential_mismatch",
        "{refusal}"
    );
}

#[test]
fn a_payer_refuses_a_machine_the_pa_does_not_vouch_for() {
    let w = world();
    let credential = text(
        &credential::issue_payer(&w.pa, &w.payer.principal(), &template(Classes::Any)).unwrap(),
    );
    let mut machine = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![credential]);
    let awaiting = machine.select(1, NOW, &[1; 16]).unwrap();
    let Message::Offer {
        mut offer,
        merchant_credential,
        offer_signature,
        ..
    } = awaiting.message().clone()
    else {
        panic!()
    };
    // Price changed in transit: the merchant's signature no longer covers it.
    offer.amount = "0.01".into();
    assert!(
        device
            .check_offer(&offer, &merchant_credential, &offer_signature, NOW)
            .is_err()
    );
    // A machine with a key the PA never vouched for.
    let rogue = PrivateKey::ed25519_from_seed(&[99; 32]);
    let awaiting = machine.select(1, NOW, &[2; 16]).unwrap();
    let Message::Offer {
        offer,
        merchant_credential,
        ..
    } = awaiting.message().clone()
    else {
        panic!()
    };
    let signature =
        offpay_microcheck::auth::sign_statement(&rogue, "offer", &offer.signed_bytes()).unwrap();
    let refusal = device
        .check_offer(&offer, &merchant_credential, &signature, NOW)
        .unwrap_err();
    assert_eq!(refusal.code(), "untrusted_issuer");
}

fn merchant_account(
    w: &World,
    id: &str,
    location: Location,
    last: Option<UnixSeconds>,
) -> MerchantAccount {
    MerchantAccount {
        policy: MerchantPolicy::new(id, "vend", &w.pa.principal(), Some(&w.age.principal()))
            .unwrap(),
        location,
        last_deposit_at: last,
    }
}

const RULES: FraudRules = FraudRules {
    machine_day_purchases_max: 3,
    travel_speed_kmh_max: 300,
};
const NAIROBI: Location = Location {
    latitude_micro: -1_292_100,
    longitude_micro: 36_821_900,
};
const MOMBASA: Location = Location {
    latitude_micro: -4_043_500,
    longitude_micro: 39_668_200,
};

fn clearing_state(w: &World, available: i64) -> ClearingState {
    let mut state = ClearingState::default();
    state.payers.insert(
        offpay_microcheck::auth::fingerprint(&w.payer.principal()),
        PayerAccount {
            name: "alice".into(),
            available_minor: available,
            retired_at: None,
            blocked_at: None,
            held_online: Vec::new(),
        },
    );
    state
}

#[test]
fn clearing_posts_good_refuses_bad_and_flags_fraud() {
    let w = world();
    let mut t = template(Classes::Any);
    t.per_merchant_day_max = 10;
    let credential = text(&credential::issue_payer(&w.pa, &w.payer.principal(), &t).unwrap());
    let mut vm1 = machine(&w, "vm-1", "vend");
    let mut vm2 = machine(&w, "vm-2", "vend");
    let mut device = device(&w, vec![credential]);
    let mut log = Vec::new();
    let mut items = Vec::new();
    for n in 0..4u8 {
        items.push(
            buy(
                &mut vm1,
                &mut device,
                1,
                NOW.plus(u64::from(n) * 60),
                n + 1,
                &mut log,
                &[],
            )
            .unwrap(),
        );
    }
    let far = buy(&mut vm2, &mut device, 1, NOW.plus(600), 50, &mut log, &[]).unwrap();
    let mut tampered = buy(&mut vm1, &mut device, 1, NOW.plus(300), 60, &mut log, &[]).unwrap();
    tampered.offer.amount = "0.01".into();
    let mut deposit = items.clone();
    deposit.push(tampered);
    let mut state = clearing_state(&w, 300);
    let merchant = merchant_account(&w, "vm-1", NAIROBI, None);
    let prepared = csc::prepare(&deposit, 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, NOW.plus(3600));
    assert_eq!(outcomes.len(), 5);
    let mut bounced = 0;
    for outcome in &outcomes[..4] {
        let ItemOutcome::Cleared(clearance) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(clearance.amount.minor(), 83);
        assert!(clearance.transfer_id.starts_with("mc:") && clearance.transfer_id.len() <= 64);
        if matches!(clearance.debit, csc::Debit::Bounced(_)) {
            bounced += 1;
        }
    }
    // 3.00 available covers three microchecks of 0.83; the fourth bounces.
    assert_eq!(bounced, 1);
    assert_eq!(state.bounces.get("alice"), Some(&1));
    let ItemOutcome::Cleared(fourth) = &outcomes[3] else {
        panic!()
    };
    assert_eq!(fourth.findings[0].kind, "machine_day_volume");
    let ItemOutcome::Refused { refusal, .. } = &outcomes[4] else {
        panic!()
    };
    assert_eq!(
        refusal.code(),
        "not_this_offer",
        "an altered amount: {refusal}"
    );
    // A second deposit of the same microchecks is refused.
    let prepared = csc::prepare(&items[..1], 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, NOW.plus(3600));
    let ItemOutcome::Refused { refusal, .. } = &outcomes[0] else {
        panic!()
    };
    assert_eq!(refusal.code(), "already_deposited");
    // Same payer in Mombasa ten minutes later: impossible travel.
    let mombasa = merchant_account(&w, "vm-2", MOMBASA, None);
    let prepared = csc::prepare(std::slice::from_ref(&far), 2).unwrap();
    let outcomes = csc::clear(&mombasa, RULES, prepared, &mut state, NOW.plus(3600));
    let ItemOutcome::Cleared(clearance) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(clearance.findings[0].kind, "impossible_travel");
    // Deposited by the wrong merchant.
    let prepared = csc::prepare(std::slice::from_ref(&far), 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, NOW.plus(3600));
    assert!(matches!(
        &outcomes[0],
        ItemOutcome::Refused {
            refusal: Refusal::UnknownMerchant { .. },
            ..
        }
    ));
}

/// The radio (25.00) bought online at vm-1 with a transaction-specific credential, under which
/// the PA holds 25.00 of the payer's balance: the deposit item and the hold as the PA recorded it.
fn radio_bought_online(
    w: &World,
    vend: &mut Machine,
    device: &mut PayerDevice,
) -> (DepositItem, HeldOnline) {
    let awaiting = vend.select(4, NOW, &[40; 16]).unwrap();
    let Message::Offer {
        offer,
        merchant_credential,
        offer_signature,
        ..
    } = awaiting.message().clone()
    else {
        panic!("not an offer")
    };
    let terms = device
        .check_offer(&offer, &merchant_credential, &offer_signature, NOW)
        .unwrap();
    let online = text(
        &credential::issue_transaction(
            &w.pa,
            &w.payer.principal(),
            &TransactionTemplate {
                serial: "t1".into(),
                app_domain: "vend".into(),
                currency: Currency::KES,
                amount: terms.amount,
                merchant: offer.merchant.clone(),
                nonce: offer.nonce.clone(),
                product_class: offer.product_class.clone(),
                not_before: NOW.minus(60),
                not_after: NOW.plus(900),
            },
        )
        .unwrap(),
    );
    let prepared = device.pay(&terms, 0, NOW, &[online]).unwrap();
    let Message::Payment {
        microcheck,
        credentials,
        ..
    } = prepared.message
    else {
        panic!("not a payment")
    };
    let sale = vend.pay(awaiting, &microcheck, &credentials).unwrap();
    let item = DepositItem::from(&sale.record);
    vend.complete(sale);
    let hold = HeldOnline {
        merchant: offer.merchant.clone(),
        nonce: offer.nonce.clone(),
        amount_minor: terms.amount.minor(),
        until: NOW.plus(900 + offpay_microcheck::limits::TRANSACTION_HOLD_SECONDS),
    };
    (item, hold)
}

#[test]
fn an_offline_microcheck_deposited_first_cannot_spend_what_an_online_credential_holds() {
    let w = world();
    let credential =
        text(&credential::issue_payer(&w.pa, &w.payer.principal(), &wide(Classes::Any)).unwrap());
    let mut vend = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![credential]);
    let mut log = Vec::new();
    // Two sandwiches (4.50 each) offline, then the radio online: the PA saw a balance of 30.00
    // and held 25.00 of it for the radio.
    let first = buy(&mut vend, &mut device, 2, NOW.plus(10), 41, &mut log, &[]).unwrap();
    let second = buy(&mut vend, &mut device, 2, NOW.plus(20), 42, &mut log, &[]).unwrap();
    let (radio, hold) = radio_bought_online(&w, &mut vend, &mut device);
    let merchant = merchant_account(&w, "vm-1", NAIROBI, None);
    let fresh = || {
        let mut state = clearing_state(&w, 3000);
        for payer in state.payers.values_mut() {
            payer.held_online = vec![hold.clone()];
        }
        state
    };
    let debits = |outcomes: &[ItemOutcome]| -> Vec<(u64, bool)> {
        outcomes
            .iter()
            .map(|outcome| match outcome {
                ItemOutcome::Cleared(c) => (c.amount.minor(), c.bounced()),
                ItemOutcome::Refused { refusal, .. } => panic!("{refusal}"),
            })
            .collect()
    };

    // The sandwiches are deposited first: the first fits in the 5.00 the hold leaves, the
    // second does not and bounces (the PA's guarantee pays the merchant, the payer gets a
    // strike); the radio then finds its 25.00.
    let mut state = fresh();
    let deposit = [first.clone(), second.clone(), radio.clone()];
    let outcomes = csc::clear(
        &merchant,
        RULES,
        csc::prepare(&deposit, 2).unwrap(),
        &mut state,
        NOW.plus(3600),
    );
    assert_eq!(
        debits(&outcomes),
        [(450, false), (450, true), (2500, false)]
    );
    let payer = state.payers.values().next().unwrap();
    // What the payer paid (4.50 + 25.00) is within the 30.00 the strategy allowed; its hold is
    // let go once the radio cleared.
    assert_eq!(payer.available_minor, 3000 - 450 - 2500);
    assert!(payer.held_online.is_empty());
    assert_eq!(state.bounces.get("alice"), Some(&1));

    // In the other order nothing bounces that need not: the radio first, then 4.50 of the
    // remaining 5.00, then the second sandwich bounces.
    let mut state = fresh();
    let deposit = [radio.clone(), first.clone(), second.clone()];
    let outcomes = csc::clear(
        &merchant,
        RULES,
        csc::prepare(&deposit, 2).unwrap(),
        &mut state,
        NOW.plus(3600),
    );
    assert_eq!(
        debits(&outcomes),
        [(2500, false), (450, false), (450, true)]
    );

    // A hold that lapsed (a week after its credential expired) holds nothing.
    let mut state = fresh();
    let later = NOW.plus(900 + offpay_microcheck::limits::TRANSACTION_HOLD_SECONDS + 1);
    let deposit = [first, second];
    let outcomes = csc::clear(
        &merchant,
        RULES,
        csc::prepare(&deposit, 2).unwrap(),
        &mut state,
        later,
    );
    assert_eq!(debits(&outcomes), [(450, false), (450, false)]);
}

#[test]
fn backdated_and_post_dated_microchecks_are_flagged_and_a_fast_machine_clock_is_tolerated() {
    let w = world();
    let credential =
        text(&credential::issue_payer(&w.pa, &w.payer.principal(), &wide(Classes::Any)).unwrap());
    let mut vm = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![credential]);
    let item = buy(
        &mut vm,
        &mut device,
        1,
        NOW.plus(3600),
        1,
        &mut Vec::new(),
        &[],
    )
    .unwrap();
    // Previous deposit two hours after the microcheck's date, this one after expiry.
    let merchant = merchant_account(&w, "vm-1", NAIROBI, Some(NOW.plus(7200)));
    let mut state = clearing_state(&w, 10_000);
    let prepared = csc::prepare(std::slice::from_ref(&item), 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, NOW.plus(2 * 86_400));
    let ItemOutcome::Cleared(clearance) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(clearance.findings[0].kind, "backdated_after_expiry");
    // A machine whose clock runs 15 minutes fast (issue 20): accepted, no flag.
    let arrival = NOW.plus(3 * 3600);
    let mut merchant = merchant_account(&w, "vm-1", NAIROBI, None);
    let fast = buy(
        &mut vm,
        &mut device,
        1,
        arrival.plus(15 * 60),
        2,
        &mut Vec::new(),
        &[],
    )
    .unwrap();
    let prepared = csc::prepare(std::slice::from_ref(&fast), 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, arrival);
    let ItemOutcome::Cleared(clearance) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(clearance.findings.is_empty(), "{:?}", clearance.findings);
    // Up to the documented tolerance, still accepted.
    let at_edge = buy(
        &mut vm,
        &mut device,
        1,
        arrival.plus(MACHINE_CLOCK_AHEAD_SECONDS_MAX),
        3,
        &mut Vec::new(),
        &[],
    )
    .unwrap();
    let prepared = csc::prepare(std::slice::from_ref(&at_edge), 2).unwrap();
    merchant.last_deposit_at = None;
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, arrival);
    assert!(
        matches!(&outcomes[0], ItemOutcome::Cleared(c) if c.findings.is_empty()),
        "{outcomes:?}"
    );
    // A second beyond it: refused, and the flag says first that the clock may be wrong.
    let item = buy(
        &mut vm,
        &mut device,
        1,
        arrival.plus(MACHINE_CLOCK_AHEAD_SECONDS_MAX + 1),
        4,
        &mut Vec::new(),
        &[],
    )
    .unwrap();
    let prepared = csc::prepare(std::slice::from_ref(&item), 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, arrival);
    let ItemOutcome::Refused {
        refusal, findings, ..
    } = &outcomes[0]
    else {
        panic!("{outcomes:?}")
    };
    assert_eq!(refusal.code(), "dated_in_future");
    assert!(
        refusal
            .to_string()
            .starts_with("the machine's clock may be wrong, or the microcheck is post-dated"),
        "{refusal}"
    );
    assert_eq!(findings[0].kind, "post_dated");
    assert!(
        findings[0]
            .summary
            .starts_with("the machine's clock may be wrong"),
        "{}",
        findings[0].summary
    );
}

#[test]
fn a_food_only_device_refuses_other_classes_before_it_would_ask_online() {
    let w = world();
    let food_only = text(
        &credential::issue_payer(
            &w.pa,
            &w.payer.principal(),
            &template(Classes::Only(vec!["food".into()])),
        )
        .unwrap(),
    );
    let mut vm = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![food_only]);
    // The radio is over the 5.00 limit *and* not food: the answer is the class, which no online
    // credential can change, so the device does not ask for one (issue 20).
    let refusal = buy(&mut vm, &mut device, 4, NOW, 1, &mut Vec::new(), &[]).unwrap_err();
    assert_eq!(refusal.code(), "product_class_not_allowed", "{refusal}");
    let refusal = buy(&mut vm, &mut device, 1, NOW, 2, &mut Vec::new(), &[]).unwrap_err();
    assert_eq!(refusal.code(), "product_class_not_allowed", "{refusal}");
    buy(&mut vm, &mut device, 2, NOW, 3, &mut Vec::new(), &[]).unwrap();
}

#[test]
fn microchecks_by_a_key_reported_lost_are_paid_within_the_deposit_window() {
    let w = world();
    let credential =
        text(&credential::issue_payer(&w.pa, &w.payer.principal(), &wide(Classes::Any)).unwrap());
    let mut vm = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![credential]);
    // Bought before the loss is reported, and by the thief after it, while the credential the
    // old key holds is still valid: the machine approved both offline.
    let before = buy(
        &mut vm,
        &mut device,
        1,
        NOW.plus(600),
        1,
        &mut Vec::new(),
        &[],
    )
    .unwrap();
    let after = buy(
        &mut vm,
        &mut device,
        1,
        NOW.plus(3600),
        2,
        &mut Vec::new(),
        &[],
    )
    .unwrap();
    let late = buy(
        &mut vm,
        &mut device,
        1,
        NOW.plus(4000),
        3,
        &mut Vec::new(),
        &[],
    )
    .unwrap();
    let reported = NOW.plus(1800);
    let mut state = clearing_state(&w, 10_000);
    for payer in state.payers.values_mut() {
        payer.retired_at = Some(reported);
    }
    let merchant = merchant_account(&w, "vm-1", NAIROBI, None);
    let arrival = NOW.plus(86_400);
    let prepared = csc::prepare(&[before, after], 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, arrival);
    let [ItemOutcome::Cleared(first), ItemOutcome::Cleared(second)] = &outcomes[..] else {
        panic!("{outcomes:?}")
    };
    assert!(!first.bounced() && !second.bounced());
    assert_eq!(first.payer(), "alice");
    assert!(first.findings.is_empty(), "{:?}", first.findings);
    // What the thief spent after the report is charged within the old credential's bounds and
    // shown to the operator.
    assert_eq!(second.findings[0].kind, "spent_after_loss_report");
    // After the window the merchant has waited too long.
    let too_late = reported.plus(LOST_KEY_DEPOSIT_WINDOW_SECONDS + 1);
    let prepared = csc::prepare(std::slice::from_ref(&late), 2).unwrap();
    let outcomes = csc::clear(&merchant, RULES, prepared, &mut state, too_late);
    let ItemOutcome::Refused { refusal, .. } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(refusal.code(), "deposited_too_late");
}

#[test]
fn the_statement_shows_charges_the_device_did_not_write() {
    let entry = |nonce: &str| LogEntry {
        v: 1,
        merchant: "vm-1".into(),
        nonce: nonce.into(),
        product: "Soda".into(),
        amount: "0.83".into(),
        currency: "KES".into(),
        timestamp: "20260101000000".into(),
    };
    let charge = |nonce: &str, amount: &str| Charge {
        merchant: "vm-1".into(),
        nonce: nonce.into(),
        product: "Soda".into(),
        amount: amount.into(),
        currency: "KES".into(),
        timestamp: "20260101000000".into(),
        transfer_id: format!("mc:{nonce}"),
    };
    let comparison = compare_statement(
        &[entry("a"), entry("b"), entry("c")],
        &[
            charge("a", "0.83"),
            charge("b", "9.99"),
            charge("z", "0.83"),
        ],
    );
    assert_eq!(comparison.matched.len(), 1);
    assert_eq!(comparison.not_written_here.len(), 2);
    assert_eq!(comparison.not_posted, vec![entry("c")]);
}

/// Alice's three purchases a minute apart at vm-1, with a credential allowing `per_day_max` a
/// day, as the deposit items the machine keeps.
fn three_purchases_at_vm1(per_day_max: u32) -> (World, Vec<DepositItem>) {
    let w = world();
    let mut t = template(Classes::Any);
    t.per_merchant_day_max = per_day_max;
    let credential = text(&credential::issue_payer(&w.pa, &w.payer.principal(), &t).unwrap());
    let mut vm = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![credential]);
    let mut log = Vec::new();
    let items = (0..3u8)
        .map(|n| {
            let time = NOW.plus(u64::from(n) * 60);
            buy(&mut vm, &mut device, 1, time, n + 1, &mut log, &[]).unwrap()
        })
        .collect();
    (w, items)
}

#[test]
fn counters_rebuilt_for_part_of_a_deposit_count_exactly_that_part() {
    let (w, items) = three_purchases_at_vm1(10);
    let merchant = merchant_account(&w, "vm-1", NAIROBI, None);
    let initial = clearing_state(&w, 10_000);
    let mut cleared = initial.clone();
    let outcomes = csc::clear(
        &merchant,
        RULES,
        csc::prepare(&items, 2).unwrap(),
        &mut cleared,
        NOW.plus(3600),
    );
    let clearances: Vec<&csc::Clearance> = outcomes
        .iter()
        .map(|o| match o {
            ItemOutcome::Cleared(c) => c.as_ref(),
            ItemOutcome::Refused { refusal, .. } => panic!("{refusal}"),
        })
        .collect();
    // Each microcheck brings one record of its own: its create-only charge.
    for clearance in &clearances {
        assert_eq!(clearance.records.len(), 1);
        assert!(clearance.records[0].create_only);
        assert!(clearance.records[0].key.starts_with("charge:alice:"));
    }
    let count = |records: &[csc::RecordChange], key: &str| -> serde_json::Value {
        let record = records.iter().find(|r| r.key == key).unwrap();
        serde_json::from_slice(&record.value).unwrap()
    };
    let date = NOW.date();
    let all = csc::state_records(&cleared, "vm-1", clearances.iter().copied());
    assert_eq!(count(&all, &format!("pmday:alice:vm-1:{date}"))["count"], 3);
    assert_eq!(count(&all, &format!("mday:vm-1:{date}"))["count"], 3);
    // Recent purchases are a versioned record: `{"v":1,"purchases":[…]}`.
    assert_eq!(count(&all, "recent:alice")["v"], 1);
    assert_eq!(
        count(&all, "recent:alice")["purchases"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The ledger took only the first and the last: counters rebuilt from the state before the
    // deposit count those two, and `clear` applied exactly what `apply` does.
    let mut part = initial.clone();
    for clearance in [clearances[0], clearances[2]] {
        part.apply(&merchant, clearance);
    }
    let records = csc::state_records(&part, "vm-1", [clearances[0], clearances[2]]);
    assert_eq!(
        count(&records, &format!("pmday:alice:vm-1:{date}"))["count"],
        2
    );
    assert_eq!(count(&records, &format!("mday:vm-1:{date}"))["count"], 2);
    let recent = count(&records, "recent:alice");
    let nonces: Vec<&str> = recent["purchases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["nonce"].as_str().unwrap())
        .collect();
    assert_eq!(nonces, [&clearances[0].nonce, &clearances[2].nonce]);
    let mut again = initial.clone();
    for clearance in &clearances {
        again.apply(&merchant, clearance);
    }
    assert_eq!(again.payer_merchant_day, cleared.payer_merchant_day);
    assert_eq!(again.recent, cleared.recent);
    assert_eq!(again.deposited, cleared.deposited);
}

#[test]
fn a_packed_deposit_writes_each_credential_once_and_unpacks_to_the_same_items() {
    let w = world();
    let mut t = template(Classes::Any);
    t.per_merchant_day_max = 10;
    let credential = text(&credential::issue_payer(&w.pa, &w.payer.principal(), &t).unwrap());
    let mut vm = machine(&w, "vm-1", "vend");
    let mut device = device(&w, vec![credential]);
    let items: Vec<DepositItem> = (0..4u8)
        .map(|n| {
            buy(
                &mut vm,
                &mut device,
                1,
                NOW.plus(u64::from(n)),
                n + 1,
                &mut Vec::new(),
                &[],
            )
            .unwrap()
        })
        .collect();
    let body = csc::DepositBody::pack(&items);
    assert_eq!(
        body.credentials.len(),
        1,
        "one credential for four microchecks"
    );
    let wire = serde_json::to_string(&body).unwrap();
    let back: csc::DepositBody = serde_json::from_str(&wire).unwrap();
    assert_eq!(back.unpack().unwrap(), items);
    // A reference past the table, or too many credentials on one item: refused whole.
    let mut bad = body.clone();
    bad.items[2].credential_refs = vec![7];
    let refusal = bad.unpack().unwrap_err();
    assert_eq!(refusal.code(), "malformed");
    assert!(refusal.to_string().contains("microcheck 2"), "{refusal}");
    let mut crowded = body.clone();
    crowded.items[0].credential_refs = vec![0; 7];
    assert_eq!(crowded.unpack().unwrap_err().code(), "malformed");
    // One large credential named six times by each of 4,096 items: refused, not copied 24,576
    // times.
    let large = csc::DepositBody {
        credentials: vec!["x".repeat(8 * 1024)],
        items: (0..4096)
            .map(|_| csc::PackedItem {
                credential_refs: vec![0; 6],
                ..body.items[0].clone()
            })
            .collect(),
    };
    let refusal = large.unpack().unwrap_err();
    assert!(refusal.to_string().contains("written out"), "{refusal}");
    // An old-style item with its credentials inline still unpacks.
    let inline: csc::DepositBody =
        serde_json::from_value(serde_json::json!({ "items": [items[0]] })).unwrap();
    assert_eq!(inline.unpack().unwrap(), items[..1]);
}

#[test]
fn transfer_ids_keep_each_machines_sales_together_in_time_order() {
    use offpay_microcheck::csc::transfer_id;
    use offpay_microcheck::offer::machine_nonce;
    let morning = UnixSeconds(1_767_225_600);
    let nonces: Vec<String> = (0..50u8)
        .map(|n| machine_nonce(morning.plus(u64::from(n) * 60), &[n.wrapping_mul(97); 16]))
        .collect();
    let ids: Vec<String> = nonces.iter().map(|n| transfer_id("vm-1", n)).collect();
    // Deterministic, within the ledger's 64-character ids, and in sale order.
    assert_eq!(ids[7], transfer_id("vm-1", &nonces[7]));
    assert!(ids.iter().all(|id| id.starts_with("mc:") && id.len() <= 64));
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    // One machine's ids share a prefix; another machine's, for the very same nonces, do not
    // interleave with them and are different transfers.
    let other: Vec<String> = nonces.iter().map(|n| transfer_id("vm-2", n)).collect();
    assert!(ids.iter().all(|id| id[..11] == ids[0][..11]));
    assert_ne!(other[0][..11], ids[0][..11]);
    assert!(ids.iter().zip(&other).all(|(a, b)| a != b));
    // Two sales in the same second differ by their random bits.
    let twin = machine_nonce(morning, &[0xff; 16]);
    assert_ne!(transfer_id("vm-1", &twin), ids[0]);
}

#[test]
fn checks_run_against_a_stale_snapshot_decide_exactly_as_checks_against_the_state() {
    let (w, items) = three_purchases_at_vm1(3);
    let merchant = merchant_account(&w, "vm-1", NAIROBI, None);
    // While the checks ran, another deposit posted one purchase by alice at vm-1 that day: the
    // third microcheck of this deposit is now her fourth, over the credential's three.
    let snapshot = clearing_state(&w, 10_000);
    let mut current = snapshot.clone();
    current
        .payer_merchant_day
        .insert(("alice".into(), "vm-1".into(), NOW.date()), 1);
    let received = NOW.plus(3600);
    let summary = |outcomes: &[ItemOutcome]| -> Vec<String> {
        outcomes
            .iter()
            .map(|o| match o {
                ItemOutcome::Cleared(c) => format!("cleared {}", c.nonce),
                ItemOutcome::Refused { refusal, .. } => format!("refused {}", refusal.code()),
            })
            .collect()
    };
    let prepared = csc::prepare(&items, 2).unwrap();
    let checks = csc::check(&merchant.policy, &prepared, &snapshot, received);
    let mut stale_state = current.clone();
    let from_stale = csc::clear_checked(
        &merchant,
        RULES,
        &prepared,
        &checks,
        &mut stale_state,
        received,
    );
    let mut fresh_state = current.clone();
    let from_current = csc::clear(
        &merchant,
        RULES,
        csc::prepare(&items, 2).unwrap(),
        &mut fresh_state,
        received,
    );
    assert_eq!(summary(&from_stale), summary(&from_current));
    assert!(
        summary(&from_stale)[..2]
            .iter()
            .all(|s| s.starts_with("cleared"))
    );
    assert!(
        summary(&from_stale)[2].starts_with("refused"),
        "{:?}",
        summary(&from_stale)
    );
    assert_eq!(
        stale_state.payer_merchant_day,
        fresh_state.payer_merchant_day
    );
}

/// The test vectors of docs/protocols/microchecks.md, computed again and found in the document.
#[test]
fn the_documented_test_vectors_hold() {
    use offpay_microcheck::csc::{microcheck_hash, transfer_id};
    use offpay_microcheck::offer::machine_nonce;
    let document = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/protocols/microchecks.md"),
    )
    .unwrap();
    let time = UnixSeconds(1_767_225_600);
    let nonce = machine_nonce(time, &[0x5a; 16]);
    assert_eq!(nonce, "006955b9005a5a5a5a5a5a5a5a5a5a5a");
    let id = transfer_id("vm-1", &nonce);
    assert_eq!(id, "mc:2d62b003006955b900cf3d93ffcbfa8db0427b87e51fef0f");
    let payer = PrivateKey::ed25519_from_seed(&[7; 32]);
    let offer = offpay_microcheck::Offer {
        merchant: "vm-1".into(),
        currency: "KES".into(),
        product: "Pocari Sweat".into(),
        product_class: "drink".into(),
        date: time.date(),
        timestamp: time.stamp(),
        amount: "0.83".into(),
        app_domain: "vend".into(),
        nonce: nonce.clone(),
    };
    let check = offpay_microcheck::microcheck::write(&payer, &offer.terms().unwrap()).unwrap();
    assert!(check.verify_signature().is_ok());
    let text = String::from_utf8(check.text().to_vec()).unwrap();
    let hash = microcheck_hash(&text);
    assert_eq!(
        hash,
        "2987b29763ab56b48cce705a0c6d574f8b318cd4f06a4bade8975f660c624ae4"
    );
    for vector in [nonce.as_str(), id.as_str(), hash.as_str(), text.trim_end()] {
        assert!(document.contains(vector), "the document lacks {vector}");
    }
}
