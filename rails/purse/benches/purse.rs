//! Benchmarks: code generation and check (with their AES block counts), and operator-side
//! reconciliation of uploads of 1, 100 and 10,000 entries (the pure part: verify, post, match,
//! build the answer). Run: `cargo bench -p offpay-purse --bench purse`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use offpay_purse::codes::{
    RequestFields, ResponseFields, check_response_code, request_code, response_code,
};
use offpay_purse::crypto::{MasterKey, SecretKey, aes_block_count};
use offpay_purse::*;

fn codes(c: &mut Criterion) {
    let key = SecretKey::from_bytes([3; 16]);
    let request = RequestFields {
        payee: Phone::parse("+254700000002").unwrap(),
        payer: Phone::parse("+254700000001").unwrap(),
        amount: Amount::parse("450", Currency::KES).unwrap(),
        nonce_b: 3650,
    };
    let response = ResponseFields {
        payer: request.payer,
        nonce_a: 93,
        amount: request.amount,
        nonce_b: request.nonce_b,
        payee: request.payee,
    };
    let code2 = response_code(&key, &response);
    let before = aes_block_count();
    request_code(&key, &request);
    let generation = aes_block_count() - before;
    let before = aes_block_count();
    check_response_code(&key, &request, &code2);
    let check = aes_block_count() - before;
    eprintln!("AES blocks per code generation: {generation}, per check: {check}");
    c.bench_function("code1 generation", |b| {
        b.iter(|| request_code(black_box(&key), black_box(&request)))
    });
    c.bench_function("code2 generation", |b| {
        b.iter(|| response_code(black_box(&key), black_box(&response)))
    });
    c.bench_function("code2 check", |b| {
        b.iter(|| check_response_code(black_box(&key), black_box(&request), black_box(&code2)))
    });
}

struct Fixture {
    secrets: OperatorSecrets,
    book: OperatorBook,
    upload: Vec<u8>,
    now: Timestamp,
}

/// An agent that made `entries` offline payments to 100 customers, and its upload.
fn fixture(entries: usize) -> Fixture {
    let operator = OperatorId::new("bench-op").unwrap();
    let secrets = OperatorSecrets::new(operator, MasterKey::from_bytes([1; 32]));
    let mut book = OperatorBook::new(operator, Currency::KES);
    let now = Timestamp(1_800_000_000);
    let mut random = SeededRandom::new(1);
    let pin = Pin::parse("1234").unwrap();
    let provision = |book: &mut OperatorBook, number: u64, kind| {
        let phone = Phone::from_number(number).unwrap();
        Purse::provision(
            &book.provision(&secrets, phone, kind, now).unwrap(),
            pin.clone(),
        )
    };
    let mut agent = provision(&mut book, 254_700_000_000, PurseKind::Agent);
    let mut customers: Vec<Purse> = (1..=100)
        .map(|index| provision(&mut book, 254_710_000_000 + index, PurseKind::Customer))
        .collect();
    book.queue_operator_credit(
        agent.identity().purse_id,
        Amount::parse("4000000", Currency::KES).unwrap(),
        "float",
    )
    .unwrap();
    let Outcome::SyncUpload { upload, .. } = agent.start_sync(now) else {
        panic!()
    };
    let outcome = book.handle_upload(&secrets, &upload, now).unwrap();
    agent.apply_answer(&outcome.answer).unwrap();
    let Outcome::SyncUpload { upload, .. } = agent.start_sync(now) else {
        panic!()
    };
    let outcome = book.handle_upload(&secrets, &upload, now).unwrap();
    agent.apply_answer(&outcome.answer).unwrap();
    // The float credit was acknowledged; now the payments.
    let amount = Amount::parse("100", Currency::KES).unwrap();
    for index in 0..entries {
        let customer = &mut customers[index % 100];
        let Outcome::Requested { code1, .. } = customer
            .handle(
                Command::Request {
                    payer: agent.identity().phone,
                    amount,
                },
                now,
                &mut random,
            )
            .unwrap()
        else {
            panic!()
        };
        agent
            .handle(
                Command::Pay {
                    payee: customer.identity().phone,
                    amount,
                    code1,
                    pin: pin.clone(),
                },
                now,
                &mut random,
            )
            .unwrap();
    }
    let Outcome::SyncUpload { upload, .. } = agent.start_sync(now) else {
        panic!()
    };
    Fixture {
        secrets,
        book,
        upload,
        now,
    }
}

fn reconciliation(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconcile upload");
    group.sample_size(10);
    for entries in [1usize, 100, 10_000] {
        let fixture = fixture(entries);
        eprintln!(
            "upload of {entries} entries: {} bytes",
            fixture.upload.len()
        );
        group.throughput(Throughput::Elements(entries as u64));
        group.bench_function(format!("{entries} entries"), |b| {
            b.iter_batched(
                || fixture.book.clone(),
                |mut book| {
                    let outcome = book
                        .handle_upload(&fixture.secrets, &fixture.upload, fixture.now)
                        .unwrap();
                    assert_eq!(outcome.postings.len(), entries);
                    outcome
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, codes, reconciliation);
criterion_main!(benches);
