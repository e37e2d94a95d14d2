//! Sync and reconciliation throughput of the purse rail on the server, durably posted on SQLite:
//! an agent uploads 1, 100 or 10,000 offline payments (to 100 payees at most per upload); the
//! measured time is `PurseRail::sync` end to end — authenticate, load the records the upload
//! touches, reconcile, build the answer, and commit postings, records and flags in one group
//! commit with its fsync. Making the payments and applying the answer are not measured.
//!
//! Run: `cargo bench -p offpay-server --bench purse_sync`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpay_ledger::Currency;
use offpay_purse::crypto::MasterKey;
use offpay_purse::{
    Amount, Command, OperatorBook, OperatorId, OperatorSecrets, Outcome, Phone, Pin, Provisioning,
    Purse, PurseKind, SeededRandom, Timestamp,
};
use offpay_server::ledger::{Ledger, LedgerThread};
use offpay_server::rails::purse::{PurseChange, PurseRail};

/// Payees per upload (each gets its own open-debit record).
const PAYEES_MAX: usize = 100;
/// Float given to the agent, in major units (its maximum balance).
const FLOAT_MAJOR: &str = "10000000";

struct Fixture {
    _directory: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    ledger: Ledger,
    _writer: LedgerThread,
    rail: PurseRail,
    secrets: OperatorSecrets,
    agent: Purse,
    random: SeededRandom,
    next_payee: u64,
}

fn ledger_now() -> offpay_ledger::Timestamp {
    offpay_operator::Clock::now(&offpay_operator::SystemClock)
}

fn purse_now() -> Timestamp {
    Timestamp(ledger_now().0 / 1000)
}

impl Fixture {
    fn new() -> Fixture {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("offpay.sqlite");
        let store = offpay_ledger_sqlite::SqliteStore::open(&path).unwrap();
        let reader = offpay_ledger_sqlite::SqliteStore::open_reader(&path).unwrap();
        let (ledger, writer) = Ledger::start(Box::new(store), Box::new(reader)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let operator = OperatorId::new("bench-op").unwrap();
        let secrets = OperatorSecrets::new(operator, MasterKey::from_bytes([7; 32]));
        let rail = PurseRail::new(secrets.clone(), Currency::KES);
        let agent_phone = Phone::parse("+254700000000").unwrap();
        let provisioned = runtime
            .block_on(rail.provision(&ledger, agent_phone, PurseKind::Agent, ledger_now()))
            .unwrap();
        let agent = Purse::provision(
            &Provisioning::decode(&provisioned.provisioning).unwrap(),
            Pin::parse("1234").unwrap(),
        );
        runtime
            .block_on(rail.change(
                &ledger,
                agent_phone,
                PurseChange::Float {
                    amount: Amount::parse(FLOAT_MAJOR, Currency::KES).unwrap(),
                    memo: "bench float".into(),
                },
                ledger_now(),
            ))
            .unwrap();
        let mut fixture = Fixture {
            _directory: directory,
            runtime,
            ledger,
            _writer: writer,
            rail,
            secrets,
            agent,
            random: SeededRandom::new(3),
            next_payee: 254_710_000_000,
        };
        // Receive the float, then report it.
        fixture.sync_agent();
        fixture.sync_agent();
        fixture
    }

    fn upload(&mut self) -> Vec<u8> {
        let Outcome::SyncUpload { upload, .. } = self.agent.start_sync(purse_now()) else {
            panic!("no upload")
        };
        upload
    }

    fn sync_agent(&mut self) -> Duration {
        let upload = self.upload();
        let started = Instant::now();
        let reply = self
            .runtime
            .block_on(self.rail.sync(&self.ledger, &upload, ledger_now()))
            .unwrap();
        let elapsed = started.elapsed();
        self.agent.apply_answer(&reply.answer).unwrap();
        elapsed
    }

    /// The agent pays `entries` times KES 1, to at most `PAYEES_MAX` new payees (purses of the
    /// same operator the server has not seen: each payment opens a debit record).
    fn pay(&mut self, entries: usize) {
        let mut local = OperatorBook::new(self.secrets.operator(), Currency::KES);
        let payee_count = entries.min(PAYEES_MAX);
        let mut payees: Vec<Purse> = (0..payee_count)
            .map(|_| {
                let phone = Phone::from_number(self.next_payee).unwrap();
                self.next_payee += 1;
                Purse::provision(
                    &local
                        .provision(&self.secrets, phone, PurseKind::Customer, purse_now())
                        .unwrap(),
                    Pin::parse("1234").unwrap(),
                )
            })
            .collect();
        let amount = Amount::parse("1", Currency::KES).unwrap();
        for index in 0..entries {
            let payee = &mut payees[index % payee_count];
            let Outcome::Requested { code1, .. } = payee
                .handle(
                    Command::Request {
                        payer: self.agent.identity().phone,
                        amount,
                    },
                    purse_now(),
                    &mut self.random,
                )
                .unwrap()
            else {
                panic!("no Code 1")
            };
            self.agent
                .handle(
                    Command::Pay {
                        payee: payee.identity().phone,
                        amount,
                        code1,
                        pin: Pin::parse("1234").unwrap(),
                    },
                    purse_now(),
                    &mut self.random,
                )
                .unwrap();
        }
    }
}

fn sync_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("purse sync on SQLite");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(8));
    for entries in [1usize, 100, 10_000] {
        let mut fixture = Fixture::new();
        group.throughput(Throughput::Elements(entries as u64));
        group.bench_function(format!("upload of {entries} entries"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    fixture.pay(entries);
                    total += fixture.sync_agent();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sync_throughput);
criterion_main!(benches);
