//! Message security: tampered, replayed, misdirected, malformed and foreign datagrams are refused
//! with a reason and never disturb a transfer in progress.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

mod common;

use common::{NetConfig, Sim, limits};
use offpay_wallet::wire::{Frame, inspect};
use offpay_wallet::{
    Credential, Error, Malformed, MoneyOffice, OfficeKeys, Outcome, PeerError, SeededEntropy,
    Wallet, WalletKeys,
};

/// A transfer whose first datagrams were captured: returns the sim mid-transfer.
fn sim_with_capture() -> Sim {
    let mut sim = Sim::new(3, 21, NetConfig::default());
    sim.wallet_mut(2).set_buyer_mode(false);
    sim.start_sale(0, 1, 900).expect("sale starts");
    sim.quiesce();
    sim
}

fn refusal(sim: &mut Sim, to: usize, bytes: &[u8]) -> Error {
    let now = sim.now;
    match sim.devices[to]
        .wallet
        .as_mut()
        .expect("up")
        .handle_datagram(bytes, now, &mut sim.entropy)
    {
        Ok(received) => panic!("accepted: {:?}", received.actions),
        Err(error) => error,
    }
}

fn sealed_to(sim: &Sim, to: usize) -> Vec<Vec<u8>> {
    sim.sent
        .iter()
        .filter(|(_, t, bytes)| *t == to && matches!(inspect(bytes), Ok(Frame::Sealed { .. })))
        .map(|(_, _, bytes)| bytes.clone())
        .collect()
}

#[test]
fn a_replayed_datagram_is_refused() {
    let mut sim = sim_with_capture();
    for datagram in sealed_to(&sim, 0).iter().chain(sealed_to(&sim, 1).iter()) {
        let to = if sealed_to(&sim, 0).contains(datagram) {
            0
        } else {
            1
        };
        assert_eq!(
            refusal(&mut sim, to, datagram),
            Error::Peer(PeerError::Replay)
        );
    }
}

#[test]
fn every_flipped_bit_of_a_sealed_datagram_is_refused() {
    let mut sim = sim_with_capture();
    let datagram = sealed_to(&sim, 1)[0].clone();
    let balance = sim.wallet(1).balance();
    for position in 0..datagram.len() {
        let mut tampered = datagram.clone();
        tampered[position] ^= 0x01;
        let error = refusal(&mut sim, 1, &tampered);
        assert!(
            matches!(
                error,
                Error::Peer(PeerError::DecryptionFailed)
                    | Error::Peer(PeerError::Misdirected)
                    | Error::Malformed(_)
            ),
            "byte {position}: {error:?}"
        );
    }
    assert_eq!(sim.wallet(1).balance(), balance);
}

#[test]
fn a_tampered_lookup_is_refused() {
    let mut sim = sim_with_capture();
    let lookup = sim
        .sent
        .iter()
        .find(|(_, _, b)| matches!(inspect(b), Ok(Frame::Lookup { .. })))
        .map(|(_, _, b)| b.clone())
        .expect("a look-up was sent");
    for position in [2, 30, 200, lookup.len() - 70, lookup.len() - 1] {
        let mut tampered = lookup.clone();
        tampered[position] ^= 0x80;
        let error = refusal(&mut sim, 1, &tampered);
        assert!(
            matches!(
                error,
                Error::Peer(PeerError::BadSignature)
                    | Error::Peer(PeerError::CredentialNotIssuedByOffice)
                    | Error::Malformed(_)
            ),
            "byte {position}: {error:?}"
        );
    }
}

#[test]
fn a_datagram_for_another_wallet_is_refused() {
    let mut sim = sim_with_capture();
    let datagram = sealed_to(&sim, 1)[0].clone();
    assert_eq!(
        refusal(&mut sim, 2, &datagram),
        Error::Peer(PeerError::Misdirected)
    );
    // Rewriting the recipient id does not help: the key and the signature do not match.
    let mut readdressed = datagram.clone();
    let target = sim.ids[2];
    readdressed[2..18].copy_from_slice(target.as_bytes());
    assert_eq!(
        refusal(&mut sim, 2, &readdressed),
        Error::Peer(PeerError::DecryptionFailed)
    );
}

#[test]
fn malformed_datagrams_are_refused_with_a_reason() {
    let mut sim = sim_with_capture();
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![9, 2, 0, 0],
        vec![1, 7],
        vec![1, 2, 0],
        vec![0u8; 5000],
    ];
    for case in cases {
        let error = refusal(&mut sim, 1, &case);
        assert!(matches!(error, Error::Malformed(_)), "{case:?}: {error:?}");
    }
    assert!(matches!(
        refusal(&mut sim, 1, &[1, 1]),
        Error::Malformed(Malformed::Truncated)
    ));
}

#[test]
fn a_wallet_from_another_money_office_is_an_unknown_peer() {
    let mut sim = sim_with_capture();
    let mut entropy = SeededEntropy::from_seed(99);
    let mut rogue_office =
        MoneyOffice::new(OfficeKeys::generate(&mut entropy), common::VALIDITY_MS);
    let keys = WalletKeys::generate(&mut entropy);
    let credential: Credential = rogue_office
        .issue_wallet(
            keys.signing_public(),
            keys.encryption_public(),
            limits(),
            sim.now,
            &mut entropy,
        )
        .expect("issue");
    let (mut rogue, _) =
        Wallet::create(keys, credential, rogue_office.public(), sim.now).expect("create");
    let (_, actions) = rogue
        .start_sale(common::amount(100), sim.now, &mut entropy)
        .expect("sale");
    let offpay_wallet::Action::Broadcast(lookup) = &actions[0] else {
        panic!("a sale starts with a broadcast");
    };
    assert_eq!(
        refusal(&mut sim, 1, lookup),
        Error::Peer(PeerError::CredentialNotIssuedByOffice)
    );
}

#[test]
fn garbage_and_replays_during_a_transfer_do_not_disturb_it() {
    let mut sim = Sim::new(3, 22, NetConfig::default());
    sim.wallet_mut(2).set_buyer_mode(false);
    // A finished transfer gives us old datagrams to replay.
    let first = sim.start_sale(0, 1, 300).expect("sale starts");
    sim.quiesce();
    let old: Vec<(usize, Vec<u8>)> = sim.sent.iter().map(|(_, to, b)| (*to, b.clone())).collect();
    let second = sim.start_sale(0, 1, 400).expect("sale starts");
    // Interleave the new transfer with every old datagram, a bit-flipped copy and garbage.
    let mut refused = 0;
    for (to, bytes) in old {
        let next = sim.now + 1;
        sim.run_until(next);
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        for datagram in [bytes, flipped, vec![1, 2, 3]] {
            let now = sim.now;
            if let Some(wallet) = sim.devices[to].wallet.as_mut()
                && wallet
                    .handle_datagram(&datagram, now, &mut sim.entropy)
                    .is_err()
            {
                refused += 1;
            }
        }
    }
    sim.quiesce();
    assert!(refused >= 12);
    assert_eq!(sim.wallet(0).outcome(&first), Some(Outcome::Posted));
    assert_eq!(sim.wallet(0).outcome(&second), Some(Outcome::Posted));
    assert_eq!(sim.wallet(1).outcome(&second), Some(Outcome::Posted));
    sim.settle();
    assert_eq!(sim.check(), (2, 0));
}

#[test]
fn a_commit_request_for_an_unknown_transfer_gets_an_abort_and_changes_nothing() {
    let mut sim = Sim::new(2, 23, NetConfig::default());
    sim.think_ms = 300_000;
    let transfer_id = sim.start_sale(0, 1, 300).expect("sale starts");
    while !sim
        .wallet(1)
        .transfers()
        .iter()
        .any(|t| t.state == "awaiting-approval")
    {
        let next = sim.now + 1;
        sim.run_until(next);
    }
    // The buyer restarts before its user approved: the volatile session is gone.
    let head = sim.wallet(1).log_head();
    let balance = sim.wallet(1).balance();
    sim.devices[1].wallet = None;
    sim.restart(1);
    sim.quiesce();
    // The seller's next commit-request met an unknown transfer, got an abort, and voided.
    assert_eq!(sim.wallet(0).outcome(&transfer_id), Some(Outcome::Voided));
    assert_eq!(
        sim.wallet(1).log_head(),
        head + 1,
        "only the restart was logged"
    );
    assert_eq!(sim.wallet(1).balance(), balance);
    sim.settle();
    assert_eq!(sim.check(), (0, 1));
}
