//! Compliance checks per second for a microcheck-sized query, and signature verification
//! throughput per algorithm.
//!
//! The query is the seed paper's: the merchant's POLICY trusts the Provisioning Agent's key; the
//! PA's signed payer credential delegates to the payer's key within limits; the payer's signed
//! microcheck pays the merchant for one offer. Signatures are verified once and then found in
//! the cache by assertion hash, as a merchant re-checking (or a CSC clearing) would.
// Benchmarks set up fixed, known-good inputs; a panic there is a broken benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpay_keynote::{
    Assertion, AssertionBuilder, ComplianceValues, Encoding, KeyAlgorithm, Principal, PrivateKey,
    Session, SignatureCache, Trust, cli,
};

fn fixture_key(name: &str) -> PrivateKey {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = cli::parse_key_file(&std::fs::read(path).unwrap()).unwrap();
    PrivateKey::parse(&text).unwrap()
}

struct Microcheck {
    policy: Arc<Assertion>,
    credential: Arc<Assertion>,
    check: Arc<Assertion>,
    merchant: Principal,
}

const OFFER: [(&str, &str); 7] = [
    ("merchant", "LEE'S DELI"),
    ("currency", "USD"),
    ("product", "CelRay Soda"),
    ("date", "20001023"),
    ("amount", "0.55"),
    ("app_domain", "deli"),
    ("nonce", "eb2c3dfc860dde9a"),
];

fn microcheck(pa: &PrivateKey, payer: &PrivateKey) -> Microcheck {
    let pa_id = pa.principal().to_identifier(Encoding::Base64);
    let payer_id = payer.principal().to_identifier(Encoding::Base64);
    let policy = AssertionBuilder::new(b"POLICY")
        .local_constant("PA_KEY", &pa_id)
        .licensees("PA_KEY")
        .conditions("app_domain == \"deli\" -> \"true\";")
        .build()
        .unwrap();
    let credential = AssertionBuilder::new(&pa_id)
        .local_constant("PAYER_KEY", &payer_id)
        .licensees("PAYER_KEY")
        .conditions(
            "app_domain == \"deli\" && currency == \"USD\" && &amount <= 1.51 &&\n\
             date < \"20001024\" -> \"true\";",
        )
        .sign(pa, Encoding::Base64)
        .unwrap();
    let check = AssertionBuilder::new(&payer_id)
        .licensee(b"LEE'S DELI")
        .conditions(
            "app_domain == \"deli\" && currency == \"USD\" && amount == \"0.55\" &&\n\
             nonce == \"eb2c3dfc860dde9a\" && date == \"20001023\" -> \"true\";",
        )
        .sign(payer, Encoding::Base64)
        .unwrap();
    Microcheck {
        policy: Arc::new(policy),
        credential: Arc::new(credential),
        check: Arc::new(check),
        merchant: Principal::parse(b"LEE'S DELI").unwrap(),
    }
}

fn one_query(m: &Microcheck, values: &ComplianceValues, cache: &mut SignatureCache) -> u8 {
    let mut session = Session::new();
    session
        .add_assertion(m.policy.clone(), Trust::Trusted)
        .unwrap();
    session
        .add_assertion(m.credential.clone(), Trust::Untrusted)
        .unwrap();
    session
        .add_assertion(m.check.clone(), Trust::Untrusted)
        .unwrap();
    for (name, value) in OFFER {
        session
            .set_attribute(name.as_bytes(), value.as_bytes())
            .unwrap();
    }
    session
        .add_action_authorizer_principal(b"LEE'S DELI", m.merchant.clone())
        .unwrap();
    session.query(values, cache).unwrap().value
}

fn compliance(c: &mut Criterion) {
    let values = ComplianceValues::new(["false", "true"]).unwrap();
    let mut group = c.benchmark_group("microcheck_query");
    group.throughput(Throughput::Elements(1));
    let chains = [
        (
            "ed25519_cached",
            PrivateKey::ed25519_from_seed(&[1; 32]),
            PrivateKey::ed25519_from_seed(&[2; 32]),
        ),
        (
            "rsa1024_cached",
            fixture_key("rsa1024.key"),
            PrivateKey::ed25519_from_seed(&[3; 32]),
        ),
    ];
    for (label, pa, payer) in &chains {
        let m = microcheck(pa, payer);
        let mut cache = SignatureCache::new();
        assert_eq!(one_query(&m, &values, &mut cache), 1, "the microcheck pays");
        group.bench_function(*label, |b| {
            b.iter(|| black_box(one_query(&m, &values, &mut cache)));
        });
    }
    // A reused session: only the offer changes between queries.
    let m = microcheck(&chains[0].1, &chains[0].2);
    let mut cache = SignatureCache::new();
    let mut session = Session::new();
    session
        .add_assertion(m.policy.clone(), Trust::Trusted)
        .unwrap();
    session
        .add_assertion(m.credential.clone(), Trust::Untrusted)
        .unwrap();
    session
        .add_assertion(m.check.clone(), Trust::Untrusted)
        .unwrap();
    session
        .add_action_authorizer_principal(b"LEE'S DELI", m.merchant.clone())
        .unwrap();
    session.preverify(&mut cache);
    group.bench_function("ed25519_cached_reused_session", |b| {
        b.iter(|| {
            let environment = session.environment_mut();
            environment.clear();
            for (name, value) in OFFER {
                environment.set(name.as_bytes(), value.as_bytes()).unwrap();
            }
            black_box(session.query(&values, &mut cache).unwrap().value)
        });
    });
    group.finish();
}

fn signed_by(key: &PrivateKey, index: usize) -> Assertion {
    AssertionBuilder::for_key(key, Encoding::Hex)
        .licensee(b"LEE'S DELI")
        .conditions(&format!(
            "app_domain == \"deli\" && amount == \"0.55\" && nonce == \"{index:016x}\";"
        ))
        .sign(key, Encoding::Hex)
        .unwrap()
}

fn signatures(c: &mut Criterion) {
    let mut group = c.benchmark_group("signature_verify");
    group.throughput(Throughput::Elements(1));
    let rsa2048 = PrivateKey::generate(KeyAlgorithm::Rsa, 2048, &mut rand::rng()).unwrap();
    let keys = [
        ("rsa1024_sha1", fixture_key("rsa1024.key")),
        ("rsa2048_sha1", rsa2048),
        ("dsa1024_sha1", fixture_key("dsa1024.key")),
        ("ed25519_single", PrivateKey::ed25519_from_seed(&[9; 32])),
    ];
    for (label, key) in &keys {
        let assertion = signed_by(key, 0);
        assert!(assertion.verify_signature().is_ok());
        group.bench_function(*label, |b| {
            b.iter(|| black_box(assertion.verify_signature().is_ok()));
        });
    }
    group.finish();

    let batch_size = 64;
    let mut group = c.benchmark_group("signature_verify_batch");
    group.throughput(Throughput::Elements(batch_size as u64));
    let signers: Vec<PrivateKey> = (0..batch_size)
        .map(|i| PrivateKey::ed25519_from_seed(&[u8::try_from(i).unwrap() + 10; 32]))
        .collect();
    let assertions: Vec<Assertion> = signers
        .iter()
        .enumerate()
        .map(|(i, key)| signed_by(key, i))
        .collect();
    let refs: Vec<&Assertion> = assertions.iter().collect();
    group.bench_function("ed25519_batch_64", |b| {
        b.iter(|| {
            let mut cache = SignatureCache::new();
            black_box(cache.verify_batch(&refs).len())
        });
    });
    group.finish();

    // A CSC deposit's shape: many microchecks written by few payers.
    let (batch_size, payers) = (1000, 20);
    let mut group = c.benchmark_group("signature_verify_batch");
    group.throughput(Throughput::Elements(batch_size as u64));
    let assertions: Vec<Assertion> = (0..batch_size)
        .map(|i| signed_by(&signers[i % payers], i))
        .collect();
    let refs: Vec<&Assertion> = assertions.iter().collect();
    group.bench_function("ed25519_batch_1000_from_20_signers", |b| {
        b.iter(|| {
            let mut cache = SignatureCache::new();
            black_box(cache.verify_batch(&refs).len())
        });
    });
    group.finish();
}

criterion_group!(benches, compliance, signatures);
criterion_main!(benches);
