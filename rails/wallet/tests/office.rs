//! The money office: double spending by a rolled-back wallet, idempotent reconciliation, the
//! office book's persistence, and lost phones.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

mod common;

use common::{NetConfig, Sim, amount};
use offpay_wallet::{
    Error, Flag, Misuse, MoneyOffice, OfficeKeys, Outcome, Posting, PostingKind, Role,
    SeededEntropy,
};

#[test]
fn a_rolled_back_wallet_that_spends_twice_is_caught_at_reconciliation() {
    let mut sim = Sim::new(3, 31, NetConfig::default());
    // Device 2 is the cheat: it copies its wallet files before paying…
    let snapshot = sim.devices[2].storage.clone();
    let first = sim.start_sale(0, 2, 45_000).expect("sale starts");
    sim.quiesce();
    sim.start_sale(0, 2, 45_000).expect("sale starts");
    sim.quiesce();
    // …puts the old files back and pays someone else with the same value.
    sim.devices[2].wallet = None;
    sim.devices[2].storage = snapshot;
    sim.restart(2);
    assert_eq!(sim.wallet(2).balance(), amount(common::CHARGE_MINOR));
    let second = sim.start_sale(1, 2, 45_000).expect("sale starts");
    sim.quiesce();
    sim.start_sale(1, 2, 45_000).expect("sale starts");
    sim.quiesce();
    assert_eq!(
        sim.log_outcomes(0)[&first].1,
        Some(offpay_wallet::Outcome::Posted)
    );
    assert_eq!(
        sim.log_outcomes(1)[&second].1,
        Some(offpay_wallet::Outcome::Posted)
    );
    // The two sellers sync; the cheat never does.
    sim.sync(0);
    sim.sync(1);
    let cheat = sim.ids[2];
    let double_spend = sim.flags.iter().find_map(|flag| match flag {
        Flag::DoubleSpend {
            wallet,
            first,
            second,
        } if *wallet == cheat => Some((*first, *second)),
        _ => None,
    });
    let (evidence_a, evidence_b) = double_spend.expect("double spend flagged");
    assert_eq!(
        evidence_a.agreement.buyer_spend_seq,
        evidence_b.agreement.buyer_spend_seq
    );
    assert_ne!(evidence_a.terms.transfer_id, evidence_b.terms.transfer_id);
    // The evidence is signed by the cheat's own key.
    let key = sim.devices[2].keys.signing_public();
    evidence_a
        .agreement
        .verify(&key, &evidence_a.terms)
        .expect("signed");
    evidence_b
        .agreement
        .verify(&key, &evidence_b.terms)
        .expect("signed");
    assert!(
        sim.flags
            .iter()
            .any(|f| matches!(f, Flag::Overspent { wallet, .. } if *wallet == cheat))
    );
    // Contained: blocked on the first evidence, with a case for the operator.
    let summary = sim.office.wallet_summary(&cheat).expect("known");
    assert!(summary.blocked_at_ms.is_some());
    assert_eq!(
        summary.case.map(|case| case.reason),
        Some(offpay_wallet::CaseReason::DoubleSpend)
    );
}

/// The loss bound of docs/protocols/device-wallet.md §9.1, measured: a cheat restores its files
/// as often as it likes and pays three sellers greedily. Each seller takes a payment number from
/// it once and at most `offline_spend_max` under one credential of it, so the loss stays within
/// sellers × `offline_spend_max` − its value; the first upload showing a number used twice blocks
/// it, and once the sellers have synced, no restore pays anyone.
#[test]
fn unlimited_restores_lose_at_most_the_bound_and_nothing_once_the_sellers_know() {
    const SELLERS: usize = 3;
    const VALUE_MINOR: u64 = 50_000;
    const PAYMENT_MINOR: u64 = 20_000;
    let cheat_limits = offpay_wallet::Limits {
        balance_max: amount(100_000),
        payment_max: amount(PAYMENT_MINOR),
        offline_spend_max: amount(60_000),
    };
    let offline_spend_max_minor = cheat_limits.offline_spend_max.minor();
    let mut sim = Sim::new(SELLERS, 41, NetConfig::default());
    let cheat = sim.add_device_with(VALUE_MINOR, cheat_limits);
    sim.sync(cheat);
    let cheat_id = sim.ids[cheat];
    let snapshot = sim.devices[cheat].storage.clone();
    let restore = |sim: &mut Sim| {
        sim.devices[cheat].wallet = None;
        sim.devices[cheat].storage = snapshot.clone();
        sim.restart(cheat);
    };
    let attack = |sim: &mut Sim, rounds: usize| -> u64 {
        let mut paid = 0;
        for _ in 0..rounds {
            restore(sim);
            for seller in 0..SELLERS {
                for _ in 0..3 {
                    let Some(id) = sim.start_sale(seller, cheat, PAYMENT_MINOR) else {
                        continue;
                    };
                    sim.quiesce();
                    if sim.log_outcomes(seller).get(&id).and_then(|o| o.1)
                        == Some(offpay_wallet::Outcome::Posted)
                    {
                        paid += PAYMENT_MINOR;
                    }
                }
            }
        }
        paid
    };
    // Before anyone syncs: as many restores as the cheat likes.
    let paid = attack(&mut sim, 8);
    let bound = SELLERS as u64 * offline_spend_max_minor - VALUE_MINOR;
    let loss = paid.saturating_sub(VALUE_MINOR);
    assert!(
        loss > 0,
        "the attack must gain something to measure the bound"
    );
    assert!(loss <= bound, "loss {loss} above the bound {bound}");
    println!("restores: paid {paid}, loss {loss}, bound {bound} (minor units)");
    // Each seller took at most offline_spend_max from the cheat's one credential.
    for seller in 0..SELLERS {
        let taken: u64 = sim
            .sales
            .iter()
            .filter(|sale| sale.seller == seller && sale.buyer == cheat)
            .filter(|sale| {
                sim.log_outcomes(seller)
                    .get(&sale.transfer_id)
                    .and_then(|o| o.1)
                    == Some(offpay_wallet::Outcome::Posted)
            })
            .map(|sale| sale.amount)
            .sum();
        assert!(
            taken <= offline_spend_max_minor,
            "seller {seller} took {taken}"
        );
    }

    // The sellers sync one by one; the first evidence blocks the cheat.
    for seller in 0..SELLERS {
        sim.sync(seller);
    }
    let summary = sim.office.wallet_summary(&cheat_id).expect("known");
    assert!(summary.blocked_at_ms.is_some(), "blocked on the evidence");
    let case = summary.case.expect("a case for the operator");
    // Which evidence comes first depends on the numbers the copies used: a number two sellers
    // took is a double spend; copies that only ever reused numbers at sellers who refused them
    // show as an overspend beyond the offline limit.
    assert!(
        matches!(
            case.reason,
            offpay_wallet::CaseReason::DoubleSpend | offpay_wallet::CaseReason::Overspent
        ),
        "{case:?}"
    );
    assert_eq!(case.decision, None);
    let shadow = sim.office.shadow_minor(&cheat_id).expect("known");
    assert_eq!(shadow, i128::from(VALUE_MINOR) - i128::from(paid));
    // Honest sellers are neither blocked nor flagged.
    for seller in 0..SELLERS {
        let id = sim.ids[seller];
        assert!(
            sim.office
                .wallet_summary(&id)
                .expect("known")
                .blocked_at_ms
                .is_none()
        );
        assert!(sim.flags.iter().all(|flag| match flag {
            Flag::DoubleSpend { wallet, .. }
            | Flag::ForkedLog { wallet, .. }
            | Flag::Overspent { wallet, .. } => *wallet != id,
            _ => true,
        }));
    }
    // Every seller that synced after the block refuses the cheat, however often it restores.
    for seller in 0..SELLERS {
        sim.sync(seller);
    }
    assert_eq!(attack(&mut sim, 3), 0, "no seller pays a blocked wallet");
    // The cheat's own sync is reconciled but not renewed.
    let expires = sim.wallet(cheat).credential().expires_at_ms;
    sim.now += 1_000;
    sim.sync(cheat);
    assert_eq!(sim.wallet(cheat).credential().expires_at_ms, expires);
    assert!(sim.wallet(cheat).blocked_by_office());
}

/// The general bound of §9.1, `S × (1 + sellers)`, measured when the sellers sync between the
/// cheat's rounds of restores (each sync starts a seller's count afresh): the office blocks the
/// cheat on the first upload that shows a number twice or its value below −S, and from then on
/// the loss stops growing.
#[test]
fn restores_against_sellers_that_sync_between_rounds_stay_within_the_general_bound() {
    const SELLERS: usize = 3;
    const VALUE_MINOR: u64 = 50_000;
    const PAYMENT_MINOR: u64 = 20_000;
    let cheat_limits = offpay_wallet::Limits {
        balance_max: amount(100_000),
        payment_max: amount(PAYMENT_MINOR),
        offline_spend_max: amount(60_000),
    };
    let s = cheat_limits.offline_spend_max.minor();
    let mut sim = Sim::new(SELLERS, 43, NetConfig::default());
    let cheat = sim.add_device_with(VALUE_MINOR, cheat_limits);
    sim.sync(cheat);
    let cheat_id = sim.ids[cheat];
    let snapshot = sim.devices[cheat].storage.clone();
    let mut paid = 0;
    let mut blocked_after_round = None;
    // What was paid by the end of the round after the block: by then every seller has synced
    // since the block.
    let mut paid_once_all_knew = None;
    for round in 0..8 {
        sim.devices[cheat].wallet = None;
        sim.devices[cheat].storage = snapshot.clone();
        sim.restart(cheat);
        // Each round the cheat starts with a different seller, burning numbers elsewhere.
        for offset in 0..SELLERS {
            let seller = (round + offset) % SELLERS;
            for _ in 0..3 {
                let Some(id) = sim.start_sale(seller, cheat, PAYMENT_MINOR) else {
                    continue;
                };
                sim.quiesce();
                if sim.log_outcomes(seller).get(&id).and_then(|o| o.1)
                    == Some(offpay_wallet::Outcome::Posted)
                {
                    paid += PAYMENT_MINOR;
                }
            }
        }
        for seller in 0..SELLERS {
            sim.sync(seller);
        }
        let blocked = sim
            .office
            .wallet_summary(&cheat_id)
            .expect("known")
            .blocked_at_ms
            .is_some();
        if let Some((blocked_round, _)) = blocked_after_round
            && round == blocked_round + 1
        {
            paid_once_all_knew = Some(paid);
        }
        if blocked && blocked_after_round.is_none() {
            blocked_after_round = Some((round, paid));
        }
    }
    let (round, paid_when_blocked) = blocked_after_round.expect("the cheat is blocked");
    let paid_once_all_knew = paid_once_all_knew.expect("rounds after the block");
    let loss = paid.saturating_sub(VALUE_MINOR);
    let bound = s * (1 + SELLERS as u64);
    println!(
        "sellers syncing between rounds: blocked in round {round} ({paid_when_blocked} paid by \
         then, {paid_once_all_knew} once every seller had synced after it), paid {paid}, loss \
         {loss}, bound {bound} (minor units)"
    );
    assert!(loss > 0, "the attack must gain something");
    assert!(loss <= bound, "loss {loss} above the bound {bound}");
    assert_eq!(
        paid, paid_once_all_knew,
        "nothing paid once every seller had synced after the block"
    );
    assert_eq!(
        sim.office.shadow_minor(&cheat_id),
        Some(i128::from(VALUE_MINOR) - i128::from(paid))
    );
}

#[test]
fn a_wallet_rolled_back_after_a_sync_shows_a_forked_log() {
    let mut sim = Sim::new(2, 32, NetConfig::default());
    let snapshot = sim.devices[1].storage.clone();
    sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.quiesce();
    sim.sync(1);
    sim.devices[1].wallet = None;
    sim.devices[1].storage = snapshot;
    sim.restart(1);
    let expires = sim.wallet(1).credential().expires_at_ms;
    sim.now += 1_000;
    sim.sync(1);
    assert!(
        sim.flags
            .iter()
            .any(|f| matches!(f, Flag::ForkedLog { wallet, .. } if *wallet == sim.ids[1]))
    );
    // The sync that shows the fork blocks before it would renew: the old credential stays.
    assert_eq!(sim.wallet(1).credential().expires_at_ms, expires);
    let summary = sim.office.wallet_summary(&sim.ids[1]).expect("known");
    assert!(
        summary.blocked_at_ms.is_some(),
        "a forked log blocks its wallet"
    );
    assert_eq!(
        summary.case.map(|case| case.reason),
        Some(offpay_wallet::CaseReason::ForkedLog)
    );
    // Nor does its next sync; the operator can dismiss the case, and the sync after that
    // renews it.
    sim.now += 1_000;
    sim.sync(1);
    assert_eq!(sim.wallet(1).credential().expires_at_ms, expires);
    let id = sim.ids[1];
    let now = sim.now;
    sim.office
        .decide_case(id, offpay_wallet::CaseDecision::Dismissed, now)
        .expect("decided");
    assert_eq!(
        sim.office
            .decide_case(id, offpay_wallet::CaseDecision::Confirmed, now),
        Err(Error::Misuse(Misuse::CaseDecided))
    );
    sim.now += 1_000;
    sim.sync(1);
    assert!(sim.wallet(1).credential().expires_at_ms > expires);
    assert!(!sim.wallet(1).blocked_by_office());
}

#[test]
fn reconciling_the_same_upload_twice_posts_once() {
    let mut sim = Sim::new(2, 33, NetConfig::default());
    sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.quiesce();
    let now = sim.now;
    let (actions, upload) = sim.devices[0]
        .wallet
        .as_mut()
        .expect("up")
        .begin_sync(now, &mut sim.entropy)
        .expect("sync");
    sim.execute(0, actions);
    let bytes = upload.encode();
    let first = sim.office.reconcile(&bytes, now).expect("reconcile");
    let again = sim.office.reconcile(&bytes, now).expect("reconcile again");
    assert_eq!(first.postings.len(), 1);
    assert!(again.postings.is_empty());
    assert_eq!(first.reply.through_seq, again.reply.through_seq);
    // A tampered upload changes nothing.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let before = sim.office.encode_book();
    assert!(sim.office.reconcile(&tampered, now).is_err());
    assert_eq!(sim.office.encode_book(), before);
}

#[test]
fn the_office_book_survives_encoding() {
    let mut sim = Sim::new(3, 34, NetConfig::default());
    sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.start_sale(1, 2, 2_000).expect("sale starts");
    sim.quiesce();
    sim.settle();
    let bytes = sim.office.encode_book();
    let mut entropy = SeededEntropy::from_seed(34);
    let keys = OfficeKeys::generate(&mut entropy);
    let restored = MoneyOffice::decode_book(keys, &bytes).expect("decodes");
    assert_eq!(restored.encode_book(), bytes);
    assert_eq!(
        restored.shadow_total_minor(),
        sim.office.shadow_total_minor()
    );
    assert!(
        MoneyOffice::decode_book(
            OfficeKeys::generate(&mut entropy),
            &bytes[..bytes.len() - 1]
        )
        .is_err()
    );
}

#[test]
fn a_lost_phone_is_blocked_and_its_value_reissued_after_expiry() {
    let mut sim = Sim::new(3, 35, NetConfig::default());
    sim.start_sale(0, 1, 10_000).expect("sale starts");
    sim.quiesce();
    sim.settle();
    let lost = sim.ids[1];
    let now = sim.now;
    sim.office.block(lost, now).expect("block");
    // Peers learn of the block at their next sync and refuse the lost wallet.
    sim.sync(0);
    // Before expiry nothing can be reissued.
    let early = sim.office.reissue(lost, sim.ids[2], now);
    assert_eq!(
        early.map(|_| ()),
        Err(Error::Misuse(Misuse::CredentialNotExpired))
    );
    let quote = sim.office.reissue_quote(&lost).expect("quote");
    assert_eq!(quote.shadow, amount(common::CHARGE_MINOR - 10_000));
    // The lost wallet may still have spent up to its offline limit unseen: that is held back.
    let unseen = common::limits()
        .offline_spend_max
        .minor()
        .min(quote.shadow.minor());
    assert_eq!(
        quote.reissue.minor(),
        quote.shadow.minor().saturating_sub(unseen)
    );
    let after_expiry = quote.available_at_ms + 1;
    let (_, posting, voucher) = sim
        .office
        .reissue(lost, sim.ids[2], after_expiry)
        .expect("reissue");
    assert_eq!(posting.kind, PostingKind::Reissue);
    assert_eq!(posting.amount, quote.reissue);
    assert_eq!(voucher.wallet_id, sim.ids[2]);
    assert_eq!(
        sim.office
            .reissue(lost, sim.ids[2], after_expiry)
            .map(|_| ()),
        Err(Error::Misuse(Misuse::AlreadyReissued))
    );
    assert_eq!(
        sim.office.shadow_total_minor(),
        i128::from(sim.charged_minor)
    );
}

#[test]
fn a_blocked_wallet_is_refused_by_synced_peers() {
    let mut sim = Sim::new(2, 36, NetConfig::default());
    let now = sim.now;
    sim.office.block(sim.ids[1], now).expect("block");
    sim.sync(0);
    let transfer_id = sim.start_sale(1, 0, 500).expect("sale starts");
    sim.quiesce();
    assert!(
        sim.refusals.keys().any(|r| r.contains("blocked")),
        "{:?}",
        sim.refusals
    );
    assert_eq!(sim.wallet(1).outcome(&transfer_id), None);
}

#[test]
fn charges_arrive_once_even_when_the_voucher_is_lost() {
    let mut sim = Sim::new(1, 37, NetConfig::default());
    let id = sim.ids[0];
    // A voucher the wallet never received is delivered again at the next sync.
    let (_voucher, _posting) = sim.office.charge(id, amount(5_000)).expect("charge");
    sim.charged_minor += 5_000;
    sim.sync(0);
    assert_eq!(
        sim.wallet(0).balance(),
        amount(common::CHARGE_MINOR + 5_000)
    );
    sim.sync(0);
    assert_eq!(
        sim.wallet(0).balance(),
        amount(common::CHARGE_MINOR + 5_000)
    );
    assert_eq!(
        sim.office.shadow_minor(&id),
        Some(i128::from(common::CHARGE_MINOR + 5_000))
    );
}

#[test]
fn what_a_reissue_held_back_is_released_a_credential_lifetime_later() {
    let mut sim = Sim::new(3, 36, NetConfig::default());
    let lost = sim.ids[1];
    let owner = sim.ids[2];
    let now = sim.now;
    sim.office.block(lost, now).expect("block");
    let quote = sim.office.reissue_quote(&lost).expect("quote");
    let after_expiry = quote.available_at_ms + 1;
    assert_eq!(
        sim.office
            .release_remainder(lost, owner, after_expiry)
            .map(|_| ()),
        Err(Error::Misuse(Misuse::WalletNotBlocked)),
        "nothing to release before the reissue"
    );
    sim.office
        .reissue(lost, owner, after_expiry)
        .expect("reissue");
    assert_eq!(
        sim.office
            .release_remainder(lost, owner, after_expiry)
            .map(|_| ()),
        Err(Error::Misuse(Misuse::CredentialNotExpired)),
        "peers get a full credential lifetime to sync first"
    );
    let later = quote.available_at_ms + common::VALIDITY_MS + 1;
    let (released, posting, voucher) = sim
        .office
        .release_remainder(lost, owner, later)
        .expect("release");
    assert_eq!(
        released.minor() + quote.reissue.minor(),
        quote.shadow.minor()
    );
    assert_eq!(posting.kind, PostingKind::Reissue);
    assert_eq!(voucher.wallet_id, owner);
    assert_eq!(sim.office.shadow_minor(&lost), Some(0));
    assert_eq!(
        sim.office.release_remainder(lost, owner, later).map(|_| ()),
        Err(Error::Misuse(Misuse::AlreadyReissued))
    );
    assert_eq!(
        sim.office.shadow_total_minor(),
        i128::from(sim.charged_minor)
    );
    let summary = sim.office.wallet_summary(&lost).expect("summary");
    assert!(summary.reissued && summary.remainder_released);
    let book = sim.office.encode_book();
    assert_eq!(book[0], offpay_wallet::office::OFFICE_BOOK_VERSION);
}

/// An honest wallet spends value it received offline before its payer synced, and the seller it
/// paid syncs first: the office sees it below zero, within what an honest wallet may spend
/// between syncs — no flag, no case, no block (simulator seed 3). Its own sync then counts the
/// receipt, and a wallet that really paid out more than it held is flagged at its own sync.
#[test]
fn an_honest_wallet_spending_value_received_offline_is_not_flagged_before_it_syncs() {
    let mut sim = Sim::new(3, 77, NetConfig::default());
    let (payer, honest, seller) = (0, 1, 2);
    // The honest wallet is paid offline; its payer does not sync.
    for _ in 0..2 {
        sim.start_sale(honest, payer, 50_000).expect("sale starts");
        sim.quiesce();
    }
    // It spends more than it held at its last sync, out of what it received.
    for _ in 0..3 {
        sim.start_sale(seller, honest, 50_000).expect("sale starts");
        sim.quiesce();
    }
    sim.sync(seller);
    let id = sim.ids[honest];
    let named = |sim: &Sim| {
        sim.flags
            .iter()
            .filter(|flag| matches!(flag, Flag::Overspent { wallet, .. } if *wallet == id))
            .count()
    };
    assert_eq!(named(&sim), 0, "{:?}", sim.flags);
    let summary = sim.office.wallet_summary(&id).expect("known");
    assert!(
        summary.shadow_minor < 0,
        "the office is behind: {summary:?}"
    );
    assert!(summary.blocked_at_ms.is_none());
    assert!(summary.case.is_none());
    // Its own sync reports the receipts: above zero again, still no flag.
    sim.sync(honest);
    assert_eq!(named(&sim), 0, "{:?}", sim.flags);
    let summary = sim.office.wallet_summary(&id).expect("known");
    assert!(summary.shadow_minor >= 0, "{summary:?}");
    assert!(summary.blocked_at_ms.is_none());
}

/// The office charges a wallet on its view of it (without what the wallet received offline since
/// its sync); the charge takes the wallet over its balance maximum. The ledger has moved the
/// value to the wallet's account, so the wallet takes the voucher, and the next voucher after it
/// (they apply in order) too (simulator seed 17 stranded it).
#[test]
fn a_charge_the_office_posted_is_applied_even_over_the_wallets_maximum() {
    let limits = offpay_wallet::Limits {
        balance_max: amount(150_000),
        payment_max: amount(50_000),
        offline_spend_max: amount(5_000_000),
    };
    let mut sim = Sim::new(1, 38, NetConfig::default());
    let holder = sim.add_device_with(100_000, limits);
    sim.sync(holder);
    // Paid offline by wallet 0, which does not sync.
    sim.start_sale(holder, 0, 40_000).expect("sale starts");
    sim.quiesce();
    assert_eq!(sim.wallet(holder).balance(), amount(140_000));
    // The office sees 100,000 and charges 30,000: within the maximum by its view.
    sim.charge(holder, 30_000);
    assert_eq!(sim.wallet(holder).balance(), amount(170_000));
    sim.charge(holder, 1_000);
    assert_eq!(sim.wallet(holder).balance(), amount(171_000));
    // Over its maximum, it receives nothing more offline until it spends.
    assert!(sim.start_sale(holder, 0, 1_000).is_none());
    sim.sync(holder);
    assert_eq!(
        sim.office.shadow_minor(&sim.ids[holder]),
        Some(171_000),
        "the office and the wallet agree"
    );
}

/// The posting of `transfer_id`, if the office made one.
fn transfer_posting(sim: &Sim, transfer_id: &offpay_wallet::TransferId) -> Option<Posting> {
    let id = offpay_wallet::office::transfer_posting_id(transfer_id);
    sim.postings
        .iter()
        .find(|posting| posting.id == id && posting.kind == PostingKind::Transfer)
        .copied()
}

fn conflicting(sim: &Sim, transfer_id: &offpay_wallet::TransferId) -> bool {
    sim.flags.iter().any(
        |flag| matches!(flag, Flag::ConflictingOutcome { transfer_id: id } if id == transfer_id),
    )
}

/// A seller copies its files once its pending record is down, commits the sale, puts the copy
/// back and syncs first: its log voids the sale. The buyer's wallet paid on the seller's signed
/// commit, and its sync posts the payment all the same — the ledger agrees with the buyer, and
/// the seller's account takes what its own commit promised (simulator seed 208: the payment was
/// never posted, the buyer's ledger account stayed above its wallet for good).
#[test]
fn a_payment_to_a_seller_that_rolled_back_and_voided_is_posted_from_the_buyers_commit() {
    let mut sim = Sim::new(2, 39, NetConfig::default());
    let (seller, buyer) = (0, 1);
    let price = 20_000;
    let transfer_id = sim.start_sale(seller, buyer, price).expect("sale starts");
    let mut snapshot = None;
    for _ in 0..100_000 {
        if sim.log_outcomes(seller).get(&transfer_id) == Some(&(Role::Seller, None)) {
            snapshot = Some(sim.devices[seller].storage.clone());
            break;
        }
        let next = sim.now + 1;
        sim.run_until(next);
    }
    let snapshot = snapshot.expect("the seller logged the sale pending");
    sim.quiesce();
    assert_eq!(
        sim.log_outcomes(buyer)[&transfer_id],
        (Role::Buyer, Some(Outcome::Posted))
    );
    // The seller rolls back to its copy; its sync voids the sale it had committed.
    sim.devices[seller].wallet = None;
    sim.devices[seller].storage = snapshot;
    sim.restart(seller);
    sim.quiesce();
    sim.sync(seller);
    assert_eq!(
        sim.log_outcomes(seller)[&transfer_id],
        (Role::Seller, Some(Outcome::Voided))
    );
    assert_eq!(sim.office.decision(&transfer_id), Some(Outcome::Voided));
    assert!(transfer_posting(&sim, &transfer_id).is_none());
    // The buyer's sync shows the seller's signed commit: posted, and the conflict flagged.
    sim.sync(buyer);
    let posting = transfer_posting(&sim, &transfer_id).expect("posted from the buyer's log");
    assert_eq!(
        (posting.from, posting.to, posting.amount),
        (
            offpay_wallet::PostingAccount::Wallet(sim.ids[buyer]),
            offpay_wallet::PostingAccount::Wallet(sim.ids[seller]),
            amount(price)
        )
    );
    assert!(conflicting(&sim, &transfer_id), "{:?}", sim.flags);
    assert_eq!(sim.office.decision(&transfer_id), Some(Outcome::Posted));
    // The seller signed the commit its log voided: contained on that first evidence.
    let seller_id = sim.ids[seller];
    let contained = sim.office.wallet_summary(&seller_id).expect("known");
    assert!(contained.blocked_at_ms.is_some(), "the seller is blocked");
    assert_eq!(
        contained.case.map(|case| (case.reason, case.transfer_id)),
        Some((
            offpay_wallet::CaseReason::VoidedSignedSale,
            Some(transfer_id)
        ))
    );
    assert!(sim.wallet(buyer).blocked_wallets().contains(&seller_id));
    let expires = contained.credential.expires_at_ms;
    let buyer_balance = sim.wallet(buyer).balance().minor();
    assert_eq!(buyer_balance, common::CHARGE_MINOR - price);
    assert_eq!(
        sim.office.shadow_minor(&sim.ids[buyer]),
        Some(i128::from(buyer_balance)),
        "the ledger agrees with the buyer's wallet"
    );
    // The rolled-back seller's wallet lost the sale; its account holds it.
    assert_eq!(sim.wallet(seller).balance().minor(), common::CHARGE_MINOR);
    assert_eq!(
        sim.office.shadow_minor(&sim.ids[seller]),
        Some(i128::from(common::CHARGE_MINOR + price))
    );
    assert_eq!(
        sim.office.shadow_total_minor(),
        i128::from(sim.charged_minor)
    );
    // Both sync again: posted once, nothing changes.
    let postings = sim.postings.len();
    sim.sync(seller);
    sim.sync(buyer);
    assert_eq!(sim.postings.len(), postings);
    assert_eq!(
        sim.office.shadow_minor(&sim.ids[buyer]),
        Some(i128::from(buyer_balance))
    );
    // Its next sync renews nothing.
    assert_eq!(
        sim.office
            .wallet_summary(&seller_id)
            .expect("known")
            .credential
            .expires_at_ms,
        expires
    );
    assert!(sim.wallet(seller).blocked_by_office());
}

/// The other order: the buyer syncs first and its copy of the seller's commit posts the sale;
/// then the seller, rolled back to before its commit, uploads a log that voids it. The office
/// holds the seller's signature on the commit, so that upload is the first evidence: the seller
/// is blocked in the same sync, before its credential could be renewed, with a case; the buyer
/// keeps what it paid for (posted once).
#[test]
fn a_seller_that_voids_a_sale_the_buyer_already_posted_is_blocked_at_its_own_sync() {
    let mut sim = Sim::new(2, 42, NetConfig::default());
    let (seller, buyer) = (0, 1);
    let price = 20_000;
    let transfer_id = sim.start_sale(seller, buyer, price).expect("sale starts");
    let mut snapshot = None;
    for _ in 0..100_000 {
        if sim.log_outcomes(seller).get(&transfer_id) == Some(&(Role::Seller, None)) {
            snapshot = Some(sim.devices[seller].storage.clone());
            break;
        }
        let next = sim.now + 1;
        sim.run_until(next);
    }
    let snapshot = snapshot.expect("the seller logged the sale pending");
    sim.quiesce();
    sim.sync(buyer);
    let posting = transfer_posting(&sim, &transfer_id).expect("posted from the buyer's log");
    assert_eq!(posting.amount, amount(price));
    let seller_id = sim.ids[seller];
    let expires = sim
        .office
        .wallet_summary(&seller_id)
        .expect("known")
        .credential
        .expires_at_ms;
    sim.devices[seller].wallet = None;
    sim.devices[seller].storage = snapshot;
    sim.restart(seller);
    sim.quiesce();
    sim.now += 60_000;
    sim.sync(seller);
    assert_eq!(
        sim.log_outcomes(seller)[&transfer_id],
        (Role::Seller, Some(Outcome::Voided))
    );
    assert!(conflicting(&sim, &transfer_id), "{:?}", sim.flags);
    let summary = sim.office.wallet_summary(&seller_id).expect("known");
    assert!(summary.blocked_at_ms.is_some(), "the seller is blocked");
    assert_eq!(
        summary.case.map(|case| (case.reason, case.transfer_id)),
        Some((
            offpay_wallet::CaseReason::VoidedSignedSale,
            Some(transfer_id)
        ))
    );
    assert_eq!(
        summary.credential.expires_at_ms, expires,
        "not renewed in the sync that showed it"
    );
    assert!(sim.wallet(seller).blocked_by_office());
    // The honest buyer is not out of pocket: paid once, and its view agrees with its wallet.
    let transfers = sim
        .postings
        .iter()
        .filter(|p| p.kind == PostingKind::Transfer)
        .count();
    assert_eq!(transfers, 1);
    assert_eq!(
        sim.office.shadow_minor(&sim.ids[buyer]),
        Some(i128::from(sim.wallet(buyer).balance().minor()))
    );
    assert_eq!(
        sim.office.shadow_total_minor(),
        i128::from(sim.charged_minor)
    );
}

/// The office voids a transfer whose seller was blocked a window ago (§4); the buyer has not
/// synced since, and meanwhile the seller came back and committed: the buyer's wallet paid on
/// the seller's signed commit and never applied the void. Its sync posts the payment, so neither
/// side's ledger account disagrees with its wallet.
#[test]
fn a_buyer_that_got_the_commit_before_the_offices_void_pays_the_seller() {
    let mut sim = Sim::new(2, 40, NetConfig::default());
    let (seller, buyer) = (0, 1);
    let price = 3_000;
    let transfer_id = sim.start_sale(seller, buyer, price).expect("sale starts");
    for _ in 0..100_000 {
        if sim.wallet(buyer).held().minor() > 0 {
            break;
        }
        let next = sim.now + 1;
        sim.run_until(next);
    }
    assert_eq!(sim.wallet(buyer).held(), amount(price));
    // The seller's phone goes dark before the agreement reaches it.
    sim.devices[seller].wallet = None;
    sim.quiesce();
    sim.sync(buyer);
    let blocked_at = sim.now;
    sim.office
        .block(sim.ids[seller], blocked_at)
        .expect("block");
    sim.now = blocked_at + offpay_wallet::office::ABANDONED_RESOLUTION_WINDOW_MS + 1;
    let now = sim.now;
    sim.office
        .resolve_abandoned(transfer_id, now)
        .expect("voided by the office");
    // The phone is found; the seller commits and the buyer, which has not synced, pays.
    sim.restart(seller);
    sim.quiesce();
    assert_eq!(
        sim.log_outcomes(buyer)[&transfer_id],
        (Role::Buyer, Some(Outcome::Posted))
    );
    assert_eq!(sim.wallet(buyer).held(), amount(0));
    sim.sync(buyer);
    assert!(transfer_posting(&sim, &transfer_id).is_some());
    assert!(conflicting(&sim, &transfer_id), "{:?}", sim.flags);
    sim.sync(seller);
    for index in [seller, buyer] {
        assert_eq!(
            sim.office.shadow_minor(&sim.ids[index]),
            Some(i128::from(sim.wallet(index).balance().minor())),
            "wallet {index}"
        );
    }
    assert_eq!(
        sim.office.shadow_total_minor(),
        i128::from(sim.charged_minor)
    );
}

/// A buyer that reported a purchase voided (the office's void of an abandoned transfer, applied)
/// rolls its log back to before the void and takes the seller's commit on the copy: its value
/// came back to it once, so the commit on its forked log posts nothing; the fork blocks it.
#[test]
fn a_buyer_that_reported_the_void_and_rolled_back_to_take_the_commit_pays_nothing() {
    let mut sim = Sim::new(2, 41, NetConfig::default());
    let (seller, buyer) = (0, 1);
    let price = 3_000;
    let transfer_id = sim.start_sale(seller, buyer, price).expect("sale starts");
    for _ in 0..100_000 {
        if sim.wallet(buyer).held().minor() > 0 {
            break;
        }
        let next = sim.now + 1;
        sim.run_until(next);
    }
    assert_eq!(sim.wallet(buyer).held(), amount(price));
    sim.devices[seller].wallet = None;
    sim.quiesce();
    sim.sync(buyer);
    let snapshot = sim.devices[buyer].storage.clone();
    let blocked_at = sim.now;
    sim.office
        .block(sim.ids[seller], blocked_at)
        .expect("block");
    sim.now = blocked_at + offpay_wallet::office::ABANDONED_RESOLUTION_WINDOW_MS + 1;
    // The office voids it at the buyer's sync; the next sync reports the void applied.
    sim.sync(buyer);
    assert_eq!(
        sim.log_outcomes(buyer)[&transfer_id],
        (Role::Buyer, Some(Outcome::Voided))
    );
    sim.sync(buyer);
    // Back to the copy; the seller comes back and commits; the copy pays.
    sim.devices[buyer].wallet = None;
    sim.devices[buyer].storage = snapshot;
    sim.restart(buyer);
    sim.restart(seller);
    sim.quiesce();
    assert_eq!(
        sim.log_outcomes(buyer)[&transfer_id],
        (Role::Buyer, Some(Outcome::Posted))
    );
    sim.sync(buyer);
    assert!(
        transfer_posting(&sim, &transfer_id).is_none(),
        "{:?}",
        sim.postings
    );
    assert!(conflicting(&sim, &transfer_id), "{:?}", sim.flags);
    assert!(
        sim.flags.iter().any(
            |flag| matches!(flag, Flag::ForkedLog { wallet, .. } if *wallet == sim.ids[buyer])
        )
    );
    assert_eq!(
        sim.office.shadow_minor(&sim.ids[buyer]),
        Some(i128::from(common::CHARGE_MINOR))
    );
    assert_eq!(sim.office.decision(&transfer_id), Some(Outcome::Voided));
}
