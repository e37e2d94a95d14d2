//! One transfer end to end, in memory: happy path, loss, duplication, decline, timeouts, and the
//! prepared buyer that waits for the money office.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

mod common;

use common::{NetConfig, Sim, amount};
use offpay_wallet::{Outcome, Role};

#[test]
fn one_transfer_posts_on_both_sides_and_moves_the_value() {
    let mut sim = Sim::new(2, 1, NetConfig::default());
    let transfer_id = sim.start_sale(0, 1, 2_500).expect("sale starts");
    sim.quiesce();
    assert_eq!(sim.wallet(0).outcome(&transfer_id), Some(Outcome::Posted));
    assert_eq!(sim.wallet(1).outcome(&transfer_id), Some(Outcome::Posted));
    assert_eq!(
        sim.wallet(0).balance(),
        amount(common::CHARGE_MINOR + 2_500)
    );
    assert_eq!(
        sim.wallet(1).balance(),
        amount(common::CHARGE_MINOR - 2_500)
    );
    assert_eq!(sim.wallet(1).held(), amount(0));
    // Three round trips, six datagrams, when nothing is lost.
    assert_eq!(sim.stats.datagrams, 6);
    sim.settle();
    let (posted, voided) = sim.check();
    assert_eq!((posted, voided), (1, 0));
    let transfer_postings = sim
        .postings
        .iter()
        .filter(|p| p.kind == offpay_wallet::PostingKind::Transfer)
        .count();
    assert_eq!(
        transfer_postings, 1,
        "each transfer is posted once, whoever reports it"
    );
}

#[test]
fn lossy_duplicating_reordering_link_still_completes() {
    let net = NetConfig {
        loss: 0.3,
        duplicate: 0.2,
        latency_ms_max: 400,
    };
    let mut posted = 0;
    for seed in 0..20 {
        let mut sim = Sim::new(2, 100 + seed, net);
        let transfer_id = sim.start_sale(0, 1, 1_000).expect("sale starts");
        sim.quiesce();
        if sim.wallet(0).outcome(&transfer_id) == Some(Outcome::Posted) {
            posted += 1;
        }
        sim.settle();
        sim.check();
    }
    assert!(
        posted >= 15,
        "most transfers should post at 30% loss, got {posted}/20"
    );
}

#[test]
fn buyer_declines_and_nothing_moves() {
    let mut sim = Sim::new(2, 2, NetConfig::default());
    // No automatic approval: the buyer's user takes longer than the approval window.
    sim.think_ms = offpay_wallet::protocol::APPROVAL_TIMEOUT_MS + 1;
    let transfer_id = sim.start_sale(0, 1, 700).expect("sale starts");
    sim.quiesce();
    assert_eq!(sim.wallet(0).outcome(&transfer_id), Some(Outcome::Voided));
    assert_eq!(sim.wallet(1).outcome(&transfer_id), None);
    assert_eq!(sim.wallet(1).balance(), amount(common::CHARGE_MINOR));
    sim.settle();
    assert_eq!(sim.check(), (0, 1));
}

#[test]
fn payment_above_balance_is_refused_by_the_buyer() {
    let mut sim = Sim::new(2, 3, NetConfig::default());
    let transfer_id = sim.start_sale(0, 1, 40_000).expect("sale starts");
    sim.quiesce();
    let transfer_id2 = sim.start_sale(0, 1, 45_000).expect("sale starts");
    sim.quiesce();
    let transfer_id3 = sim.start_sale(0, 1, 45_000).expect("sale starts");
    sim.quiesce();
    assert_eq!(sim.wallet(0).outcome(&transfer_id), Some(Outcome::Posted));
    assert_eq!(sim.wallet(0).outcome(&transfer_id2), Some(Outcome::Posted));
    // 100 000 - 85 000 = 15 000 left: the third is refused and voided.
    assert_eq!(sim.wallet(0).outcome(&transfer_id3), Some(Outcome::Voided));
    assert_eq!(sim.wallet(1).balance(), amount(15_000));
    sim.settle();
    assert_eq!(sim.check(), (2, 1));
}

#[test]
fn prepared_buyer_waits_for_the_money_office_when_the_seller_vanishes() {
    let mut sim = Sim::new(2, 4, NetConfig::default());
    let transfer_id = sim.start_sale(0, 1, 3_000).expect("sale starts");
    // Run until the buyer has prepared, then cut the link for good.
    while sim.wallet(1).held().minor() == 0 {
        let next = sim.now + 1;
        sim.run_until(next);
    }
    sim.net.loss = 1.0;
    sim.quiesce();
    // The buyer is blocked: it never voids on its own.
    let buyer = sim.wallet(1);
    assert_eq!(buyer.outcome(&transfer_id), None);
    assert_eq!(buyer.held(), amount(3_000));
    assert!(
        buyer
            .transfers()
            .iter()
            .any(|t| t.state == "prepared" && t.role == Role::Buyer)
    );
    // The seller decided (commit, since the agreement got through before the link died).
    let decided = sim.wallet(0).outcome(&transfer_id).expect("seller decided");
    // The seller syncs; then the buyer's sync brings the office's resolution.
    sim.net.loss = 0.0;
    sim.sync(0);
    sim.sync(1);
    // (`Wallet::outcome` forgets transfers finished before a sync; the log keeps them.)
    assert_eq!(sim.log_outcomes(1)[&transfer_id].1, Some(decided));
    assert_eq!(sim.wallet(1).held(), amount(0));
    sim.settle();
    sim.check();
}

#[test]
fn prepared_buyer_stays_prepared_until_the_seller_syncs() {
    let mut sim = Sim::new(2, 5, NetConfig::default());
    let transfer_id = sim.start_sale(0, 1, 3_000).expect("sale starts");
    while sim.wallet(1).held().minor() == 0 {
        let next = sim.now + 1;
        sim.run_until(next);
    }
    sim.net.loss = 1.0;
    sim.quiesce();
    // The buyer syncs first: the office has no decision yet and resolves nothing.
    sim.sync(1);
    assert_eq!(sim.log_outcomes(1)[&transfer_id].1, None);
    assert_eq!(sim.wallet(1).held(), amount(3_000));
    sim.sync(0);
    sim.sync(1);
    assert!(sim.log_outcomes(1)[&transfer_id].1.is_some());
    assert_eq!(sim.wallet(1).held(), amount(0));
    sim.net.loss = 0.0;
    sim.settle();
    sim.check();
}
