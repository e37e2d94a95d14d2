//! Property tests for the codecs: everything persisted or sent survives encoding, and no input
//! makes a decoder panic.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

mod common;

use common::{NetConfig, Sim};
use offpay_wallet::record::{decode_record, encode_record, parse_log};
use offpay_wallet::{ChargeVoucher, Credential, LogUpload, SyncReply};
use proptest::prelude::*;

fn world() -> Sim {
    let mut sim = Sim::new(2, 51, NetConfig::default());
    sim.start_sale(0, 1, 700).expect("sale starts");
    sim.quiesce();
    sim.settle();
    sim
}

#[test]
fn every_record_of_a_real_log_survives_encoding() {
    let sim = world();
    for index in 0..2 {
        let parsed = parse_log(sim.devices[index].storage.bytes()).expect("parses");
        assert!(parsed.records.len() > 5);
        for logged in &parsed.records {
            let again = encode_record(logged.seq, &logged.prev_hash, &logged.record);
            assert_eq!(again.bytes, logged.bytes);
            assert_eq!(decode_record(&logged.bytes).expect("decodes"), *logged);
        }
    }
}

#[test]
fn credentials_uploads_and_replies_survive_encoding() {
    let mut sim = world();
    let credential = sim.wallet(0).credential().clone();
    assert_eq!(
        Credential::decode(&credential.encode()).expect("decodes"),
        credential
    );
    let now = sim.now;
    let (_, upload) = sim.devices[0]
        .wallet
        .as_mut()
        .expect("up")
        .begin_sync(now, &mut sim.entropy)
        .expect("sync");
    assert_eq!(
        LogUpload::decode(&upload.encode()).expect("decodes"),
        upload
    );
    let reconciliation = sim
        .office
        .reconcile(&upload.encode(), now)
        .expect("reconcile");
    let reply = reconciliation.reply;
    assert_eq!(SyncReply::decode(&reply.encode()).expect("decodes"), reply);
    let (voucher, _) = sim
        .office
        .charge(sim.ids[0], common::amount(5))
        .expect("charge");
    assert_eq!(
        ChargeVoucher::decode(&voucher.encode()).expect("decodes"),
        voucher
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_record(&bytes);
        let _ = parse_log(&bytes);
        let _ = Credential::decode(&bytes);
        let _ = LogUpload::decode(&bytes);
        let _ = SyncReply::decode(&bytes);
        let _ = ChargeVoucher::decode(&bytes);
        let _ = offpay_wallet::wire::inspect(&bytes);
    }
}

#[test]
fn mutated_logs_and_datagrams_never_panic_and_never_change_a_wallet() {
    let sim = world();
    let log = sim.devices[1].storage.bytes().to_vec();
    let datagrams: Vec<Vec<u8>> = sim.sent.iter().map(|(_, _, b)| b.clone()).collect();
    let balance = sim.wallet(1).balance();
    let sim = std::cell::RefCell::new(sim);
    let keys = sim.borrow().devices[1].keys.clone();
    let now = sim.borrow().now;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (
        0usize..log.len(),
        any::<u8>(),
        0usize..datagrams.len(),
        any::<u16>(),
    );
    runner
        .run(
            &strategy,
            |(log_position, value, datagram, datagram_position)| {
                let mut mutated = log.clone();
                mutated[log_position] ^= value | 1;
                let _ = parse_log(&mutated);
                let _ = offpay_wallet::Wallet::open(keys.clone(), &mutated, now, false);
                let mut bytes = datagrams[datagram].clone();
                let position = usize::from(datagram_position) % bytes.len();
                bytes[position] ^= value | 1;
                let mut sim = sim.borrow_mut();
                let sim = &mut *sim;
                let wallet = sim.devices[1].wallet.as_mut().expect("up");
                prop_assert!(
                    wallet
                        .handle_datagram(&bytes, now, &mut sim.entropy)
                        .is_err()
                );
                Ok(())
            },
        )
        .expect("property holds");
    assert_eq!(sim.borrow().wallet(1).balance(), balance);
}
