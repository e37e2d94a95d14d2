//! Shared by the database outage tests (a restart of the test's own cluster, a failover of a
//! primary and its standby): client threads posting batches of transfers with unique ids to real
//! `offpay serve` processes, retrying a batch that met the retryable error with the same ids (as
//! a client should), a journal of every attempt, and the checks made afterwards on the database
//! itself: every acknowledged transfer there, no batch half-applied, sequence numbers unique, balances
//! summing to zero. Loopback only; every wait is bounded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use offpay_test_support::ServerProcess;
use serde_json::{Value, json};

/// Transfers in each batch (each of 0.01, from `float` to `alice`).
pub const BATCH_TRANSFERS: usize = 20;
/// The error codes of the retryable answers: the ledger unreachable, and (rarer) another
/// process's operator action taking the audit chain's head each time this one tried.
pub const RETRYABLE_CODES: [&str; 2] = ["ledger_unavailable", "busy"];

/// Where a client reaches one server.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The operator token.
    pub token: String,
}

impl Endpoint {
    /// The endpoint of a running server.
    pub fn of(server: &ServerProcess) -> Endpoint {
        Endpoint {
            base: server.base.clone(),
            token: server.token.clone(),
        }
    }
}

/// Creates the two accounts the load moves money between.
pub fn create_accounts(server: &ServerProcess) {
    for (id, kind) in [("float", "operator_float"), ("alice", "customer")] {
        let (status, body) = server.post("/api/v1/accounts", &json!({ "id": id, "kind": kind }));
        assert!(
            status == 200 || status == 201,
            "create {id}: {status} {body}"
        );
    }
}

/// The body of batch `number`: the same ids however often it is sent.
pub fn batch(number: usize) -> Value {
    let transfers: Vec<Value> = (0..BATCH_TRANSFERS)
        .map(|index| {
            json!({ "id": format!("b{number}-{index}"), "debit_account": "float",
                    "credit_account": "alice", "amount": "0.01", "memo": format!("batch {number}") })
        })
        .collect();
    json!({ "transfers": transfers })
}

/// How one attempt at posting a batch was answered.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200, with how many transfers committed now and how many were there already (a retry of
    /// a batch whose earlier answer was lost).
    Acknowledged { committed: usize, existed: usize },
    /// 503 `ledger_unavailable` or `busy`, `retryable: true`, with a `Retry-After` header.
    Retryable { message: String },
    /// No HTTP answer within the client's timeout, or no connection.
    Unanswered { error: String },
    /// Anything else: the test fails.
    Unexpected { status: u16, body: String },
}

/// One attempt at posting a batch.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The batch number.
    pub batch: usize,
    /// Which endpoint it went to.
    pub server: usize,
    /// When it was sent.
    pub sent: Instant,
    /// When its answer came (or the client gave up).
    pub answered: Instant,
    /// The answer.
    pub answer: Answer,
}

impl Attempt {
    /// Whether the batch was acknowledged.
    pub fn acknowledged(&self) -> bool {
        matches!(self.answer, Answer::Acknowledged { .. })
    }

    /// Whether the answer was the retryable error.
    pub fn retryable(&self) -> bool {
        matches!(self.answer, Answer::Retryable { .. })
    }

    /// How long the answer took.
    pub fn latency(&self) -> Duration {
        self.answered.duration_since(self.sent)
    }
}

/// How the clients behave.
#[derive(Clone, Copy, Debug)]
pub struct LoadSettings {
    /// Client threads, each with one request in flight.
    pub clients: usize,
    /// How long a client waits for one answer.
    pub request_timeout: Duration,
    /// How long a client waits before retrying a batch that met an error.
    pub retry_pause: Duration,
}

/// Client threads posting batches until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    journal: Arc<Mutex<Vec<Attempt>>>,
}

impl Load {
    /// Starts `settings.clients` threads spread over `endpoints`; a batch that met an error is
    /// retried, same ids, on the next endpoint.
    pub fn start(endpoints: &[Endpoint], settings: LoadSettings) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let journal = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let threads = (0..settings.clients)
            .map(|client| {
                let (stop, journal, next) = (stop.clone(), journal.clone(), next.clone());
                let endpoints = endpoints.to_vec();
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::builder()
                        .timeout(settings.request_timeout)
                        .build()
                        .expect("an HTTP client");
                    let mut server = client % endpoints.len();
                    let mut number = next.fetch_add(1, Ordering::SeqCst);
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        let answer = post_batch(&http, &endpoints[server], number);
                        let attempt = Attempt {
                            batch: number,
                            server,
                            sent,
                            answered: Instant::now(),
                            answer,
                        };
                        let outcome = attempt.answer.clone();
                        journal.lock().unwrap().push(attempt);
                        match outcome {
                            Answer::Acknowledged { .. } => {
                                number = next.fetch_add(1, Ordering::SeqCst);
                            }
                            Answer::Retryable { .. } | Answer::Unanswered { .. } => {
                                server = (server + 1) % endpoints.len();
                                std::thread::sleep(settings.retry_pause);
                            }
                            Answer::Unexpected { .. } => break,
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            journal,
        }
    }

    /// The attempts so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.journal.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the attempts so far; panics after `max`, saying `what`.
    pub fn wait_until(&self, what: &str, max: Duration, done: impl Fn(&[Attempt]) -> bool) {
        let started = Instant::now();
        loop {
            let attempts = self.attempts();
            if done(&attempts) {
                return;
            }
            if let Some(unexpected) = attempts
                .iter()
                .find(|attempt| matches!(attempt.answer, Answer::Unexpected { .. }))
            {
                panic!("while waiting for {what}: unexpected answer {unexpected:?}");
            }
            assert!(
                started.elapsed() < max,
                "gave up after {max:?} waiting for {what}; {}",
                Summary::of(&attempts)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the clients (each finishes its request in flight) and returns every attempt.
    pub fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("a client thread");
        }
        self.journal.lock().unwrap().clone()
    }
}

fn post_batch(http: &reqwest::blocking::Client, server: &Endpoint, number: usize) -> Answer {
    let response = match http
        .post(format!("{}/api/v1/transfers", server.base))
        .bearer_auth(&server.token)
        .json(&batch(number))
        .send()
    {
        Ok(response) => response,
        Err(error) => {
            return Answer::Unanswered {
                error: error.to_string(),
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let text = match response.text() {
        Ok(text) => text,
        Err(error) => {
            return Answer::Unanswered {
                error: error.to_string(),
            };
        }
    };
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status == 200 {
        let outcomes: Vec<&str> = body["results"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .filter_map(|result| result["outcome"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let committed = outcomes
            .iter()
            .filter(|outcome| **outcome == "transfer_committed")
            .count();
        let existed = outcomes
            .iter()
            .filter(|outcome| **outcome == "transfer_exists")
            .count();
        if committed + existed == BATCH_TRANSFERS {
            return Answer::Acknowledged { committed, existed };
        }
    }
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or_default();
    if status == 503 && RETRYABLE_CODES.contains(&code) && error["retryable"] == true && retry_after
    {
        return Answer::Retryable {
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        };
    }
    Answer::Unexpected { status, body: text }
}

/// What the attempts add up to.
#[derive(Debug, Default)]
pub struct Summary {
    /// Batches sent at least once.
    pub attempted: BTreeSet<usize>,
    /// Batches acknowledged.
    pub acknowledged: BTreeSet<usize>,
    /// Answers with the retryable error.
    pub retryable: usize,
    /// Attempts with no HTTP answer.
    pub no_answer: usize,
    /// Unexpected answers, described.
    pub unexpected: Vec<String>,
    /// Batches acknowledged on a retry as already there: an earlier attempt committed them but
    /// its answer was an error (the connection died during `COMMIT`).
    pub committed_by_an_errored_attempt: BTreeSet<usize>,
    /// Batches acknowledged with some transfers new and some there already: half-applied.
    pub half_applied: BTreeSet<usize>,
    /// The slowest answer that was not an acknowledgement.
    pub slowest_error: Duration,
    /// The slowest acknowledgement.
    pub slowest_acknowledgement: Duration,
}

impl Summary {
    /// Adds up `attempts`.
    pub fn of(attempts: &[Attempt]) -> Summary {
        let mut summary = Summary::default();
        for attempt in attempts {
            summary.attempted.insert(attempt.batch);
            match &attempt.answer {
                Answer::Acknowledged { committed, existed } => {
                    summary.acknowledged.insert(attempt.batch);
                    summary.slowest_acknowledgement =
                        summary.slowest_acknowledgement.max(attempt.latency());
                    if *committed == 0 {
                        summary
                            .committed_by_an_errored_attempt
                            .insert(attempt.batch);
                    } else if *existed > 0 {
                        summary.half_applied.insert(attempt.batch);
                    }
                }
                Answer::Retryable { .. } => {
                    summary.retryable += 1;
                    summary.slowest_error = summary.slowest_error.max(attempt.latency());
                }
                Answer::Unanswered { .. } => {
                    summary.no_answer += 1;
                    summary.slowest_error = summary.slowest_error.max(attempt.latency());
                }
                Answer::Unexpected { status, body } => {
                    summary.unexpected.push(format!("{status}: {body}"));
                }
            }
        }
        summary
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} batches sent, {} acknowledged, {} retryable errors, {} without answer, {} unexpected, \
             {} committed by an attempt answered with an error, {} half-applied, slowest error {:?}, \
             slowest acknowledgement {:?}",
            self.attempted.len(),
            self.acknowledged.len(),
            self.retryable,
            self.no_answer,
            self.unexpected.len(),
            self.committed_by_an_errored_attempt.len(),
            self.half_applied.len(),
            self.slowest_error,
            self.slowest_acknowledgement
        )
    }
}

/// The first acknowledgement of an attempt sent after `moment`: (when it came, its attempt).
pub fn first_acknowledgement_sent_after(attempts: &[Attempt], moment: Instant) -> Option<&Attempt> {
    attempts
        .iter()
        .filter(|attempt| attempt.acknowledged() && attempt.sent >= moment)
        .min_by_key(|attempt| attempt.answered)
}

/// What the database holds, checked against the journal.
#[derive(Debug)]
pub struct Verified {
    /// Batches whose transfers are all there.
    pub batches_present: usize,
    /// Batches sent but never acknowledged that are nevertheless there, whole.
    pub unacknowledged_present: usize,
    /// Transfers in the ledger.
    pub transfers: usize,
}

/// Checks the ledger at `database_url` (the servers' database) against `attempts`: every
/// transfer of every acknowledged batch is there, every batch is there whole or not at all,
/// nothing else is there, sequence numbers are unique, `alice` holds 0.01 per transfer,
/// and every server in `servers` reports balanced totals.
pub fn verify(database_url: &str, attempts: &[Attempt], servers: &[&ServerProcess]) -> Verified {
    let summary = Summary::of(attempts);
    let url = database_url.to_owned();
    let (ids, count, highest): (Vec<String>, i64, i64) = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
        let ids = client
            .query("SELECT id FROM transfers", &[])
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect();
        let row = client
            .query_one(
                "SELECT COUNT(*)::BIGINT, COALESCE(MAX(sequence), 0)::BIGINT FROM transfers",
                &[],
            )
            .unwrap();
        (ids, row.get(0), row.get(1))
    })
    .join()
    .expect("the thread reading the database");
    // Sequence numbers are unique (the primary key) and never handed out twice, also across a
    // failover (PostgreSQL logs a sequence ahead of the numbers it gives); groups that were cut
    // off leave gaps, which are allowed since schema version 2.
    assert!(
        count <= highest,
        "{count} transfers cannot fit under the highest sequence number {highest}"
    );

    let mut present = BTreeMap::<usize, usize>::new();
    for id in &ids {
        let number = id
            .strip_prefix('b')
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(number, _)| number.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("a transfer the load did not send: {id}"));
        *present.entry(number).or_default() += 1;
    }
    for (number, count) in &present {
        assert!(
            summary.attempted.contains(number),
            "batch {number} is in the ledger but was never sent"
        );
        assert_eq!(
            *count, BATCH_TRANSFERS,
            "batch {number} is half-applied: {count} of {BATCH_TRANSFERS} transfers"
        );
    }
    let lost: Vec<&usize> = summary
        .acknowledged
        .iter()
        .filter(|number| !present.contains_key(number))
        .collect();
    assert!(lost.is_empty(), "acknowledged batches lost: {lost:?}");
    assert!(
        summary.half_applied.is_empty(),
        "batches acknowledged as partly there already: {:?}",
        summary.half_applied
    );

    for server in servers {
        let (status, alice) = server.get("/api/v1/accounts/alice");
        assert_eq!(status, 200, "{alice}");
        assert_eq!(
            alice["balance_minor"].as_i64(),
            Some(ids.len() as i64),
            "alice holds 0.01 per transfer"
        );
        server.assert_balanced();
    }
    Verified {
        batches_present: present.len(),
        unacknowledged_present: present
            .keys()
            .filter(|number| !summary.acknowledged.contains(number))
            .count(),
        transfers: ids.len(),
    }
}

/// Fails if a server process ended or wrote a panic.
pub fn assert_alive_without_panic(server: &mut ServerProcess) {
    assert!(!server.has_exited(), "the server process ended");
    let panics: Vec<String> = server
        .stderr_lines()
        .into_iter()
        .filter(|line| line.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "the server panicked: {panics:?}");
}
