//! Purse sync and statements through the SMS gateway path (Kannel's get-url in, the SMS outbox
//! and a fake sending gateway out), in-process on both backends: parts in any order with
//! repeats, the answer's parts to the sender, long logs in rounds over SMS and HTTP, and the
//! attacks on the SMS path (replayed parts, a spoofed sender, a rewritten part, a forged or
//! replayed statement request).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use offpay_purse::params::{HTTP_ROUND_ENTRIES_MAX, SMS_PARTS_MAX, SMS_ROUND_ENTRIES_MAX};
use offpay_purse::{Command, Outcome, Pin, Purse, SeededRandom, Timestamp};
use offpay_server::rails::sms::gateway::fake::FakeGateway;
use offpay_test_support::{BackendKind, InProcess};
use serde_json::json;

/// Upper bound on the wait for the outbound worker.
const WAIT_MAX: Duration = Duration::from_secs(30);
const AGENT: &str = "+254700000031";
const CUSTOMER: &str = "+254700000032";

struct Harness {
    server: InProcess,
    fake: Arc<FakeGateway>,
    token: String,
    random: SeededRandom,
    next_id: u64,
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn now(harness: &Harness) -> Timestamp {
    Timestamp(harness.server.state.now().0 / 1000)
}

impl Harness {
    async fn start(kind: BackendKind) -> Harness {
        let server = InProcess::start(kind.fresh()).await;
        let fake = Arc::new(FakeGateway::new());
        server
            .state
            .rails
            .sms
            .replace_outbound_for_tests(fake.clone());
        let token = std::fs::read_to_string(server.data_dir().join("sms-gateway.token"))
            .unwrap()
            .trim()
            .to_owned();
        Harness {
            server,
            fake,
            token,
            random: SeededRandom::new(17),
            next_id: 0,
        }
    }

    async fn provision(&mut self, phone: &str, kind: &str) -> Purse {
        let (status, answer) = self
            .server
            .post(
                "/api/v1/purse/purses",
                json!({ "phone": phone, "kind": kind }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let provisioning = hex::decode(answer["provisioning"].as_str().unwrap()).unwrap();
        Purse::provision(
            &offpay_purse::Provisioning::decode(&provisioning).unwrap(),
            Pin::parse("1234").unwrap(),
        )
    }

    async fn float(&self, phone: &str, amount: &str) {
        let (status, answer) = self
            .server
            .post(
                &format!("/api/v1/purse/purses/{}/float", encode(phone)),
                json!({ "amount": amount }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    /// One text from `from` through Kannel's get-url.
    async fn text_in(&mut self, from: &str, text: &str) {
        self.next_id += 1;
        let path = format!(
            "/sms/kannel/{}/inbound?id=k-{}&from={}&text={}",
            self.token,
            self.next_id,
            encode(from),
            encode(text)
        );
        let (status, answer) = self.server.call("GET", &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    /// Texts the fake gateway has sent to `to`.
    fn sent_to(&self, to: &str) -> Vec<String> {
        self.fake
            .sent()
            .into_iter()
            .filter(|sent| sent.to == to)
            .map(|sent| sent.text)
            .collect()
    }

    /// Waits until `to` has been sent at least `count` texts; returns them all.
    async fn wait_for(&self, to: &str, count: usize) -> Vec<String> {
        tokio::time::timeout(WAIT_MAX, async {
            loop {
                let sent = self.sent_to(to);
                if sent.len() >= count {
                    return sent;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the outbound worker sent them in time")
    }

    /// Syncs `purse` (at `phone`) by SMS in rounds: each round's parts go in reverse with one
    /// repeated, the answer's parts come back through the outbox and are applied. Returns the
    /// rounds.
    async fn sms_sync(&mut self, purse: &mut Purse, phone: &str) -> usize {
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds <= 20, "too many rounds");
            let waiting = purse.unacknowledged_log().len();
            let mut texts = upload_texts(purse, now(self), SMS_ROUND_ENTRIES_MAX);
            assert!(texts.len() <= SMS_PARTS_MAX);
            texts.reverse();
            texts.insert(1, texts[0].clone());
            let before = self.sent_to(phone).len();
            for text in &texts {
                self.text_in(phone, text).await;
            }
            let sent = self.wait_for(phone, before + 1).await;
            let total = offpay_purse::sync::parse_sms_part(&sent[before])
                .unwrap()
                .total;
            let sent = self.wait_for(phone, before + total).await;
            let answer = offpay_purse::sync::unpack_sms(&sent[before..before + total]).unwrap();
            purse.apply_answer(&answer).unwrap();
            let left = purse.unacknowledged_log().len();
            if left == 0 || left >= waiting {
                return rounds;
            }
        }
    }

    async fn http_sync(&self, purse: &mut Purse, entries_max: usize) {
        let Outcome::SyncUpload { upload, .. } = purse.start_sync_round(now(self), entries_max)
        else {
            panic!("an upload")
        };
        let reply = self
            .server
            .state
            .rails
            .purse
            .sync(&self.server.state.ledger, &upload, self.server.state.now())
            .await
            .unwrap();
        purse.apply_answer(&reply.answer).unwrap();
    }

    async fn shadow(&self, phone: &str) -> serde_json::Value {
        let (status, shadow) = self
            .server
            .get(&format!("/api/v1/purse/purses/{}", encode(phone)))
            .await;
        assert_eq!(status, StatusCode::OK, "{shadow}");
        shadow
    }

    /// `payer` pays `payee` `amount` offline (Code 1, Code 2, accept).
    fn pay(&mut self, payer: &mut Purse, payee: &mut Purse, amount: &str, at: Timestamp) {
        let amount = payer.parse_amount(amount).unwrap();
        let Outcome::Requested { code1, request } = payee
            .handle(
                Command::Request {
                    payer: payer.identity().phone,
                    amount,
                },
                at,
                &mut self.random,
            )
            .unwrap()
        else {
            panic!("Code 1")
        };
        let Outcome::Paid { code2, .. } = payer
            .handle(
                Command::Pay {
                    payee: payee.identity().phone,
                    amount,
                    code1,
                    pin: Pin::parse("1234").unwrap(),
                },
                at,
                &mut self.random,
            )
            .unwrap()
        else {
            panic!("Code 2")
        };
        payee
            .handle(
                Command::Accept {
                    code2,
                    request: Some(request.nonce_b),
                },
                at,
                &mut self.random,
            )
            .unwrap();
    }
}

fn upload_texts(purse: &mut Purse, at: Timestamp, entries_max: usize) -> Vec<String> {
    let Outcome::SyncUpload { upload, sequence } = purse.start_sync_round(at, entries_max) else {
        panic!("an upload")
    };
    offpay_purse::sync::pack_sms(&upload, offpay_purse::sync::sms_message_id(sequence)).unwrap()
}

async fn a_purse_syncs_through_the_gateway_and_its_attackers_get_nothing(kind: BackendKind) {
    let mut h = Harness::start(kind).await;
    let mut agent = h.provision(AGENT, "agent").await;
    let mut customer = h.provision(CUSTOMER, "customer").await;
    h.float(AGENT, "500").await;

    // The first sync by SMS brings the float.
    assert_eq!(h.sms_sync(&mut agent, AGENT).await, 1);
    assert_eq!(agent.balance().decimal().to_string(), "500.00");
    let shadow = h.shadow(AGENT).await;
    assert_eq!(shadow["last_sync_sequence"], 1, "{shadow}");
    h.http_sync(&mut customer, HTTP_ROUND_ENTRIES_MAX).await;
    let at = now(&h);
    h.pay(&mut agent, &mut customer, "20", at);

    // A spoofed sender: the agent's upload sent from the customer's number. Refused (the
    // upload is not the sender's purse's), nothing synced, nothing sent to either phone.
    let texts = upload_texts(&mut agent, now(&h), SMS_ROUND_ENTRIES_MAX);
    for text in &texts {
        h.text_in(CUSTOMER, text).await;
    }
    // The same texts from the agent's own phone sync (the spoofed set did not use them up).
    let before = h.sent_to(AGENT).len();
    for text in &texts {
        h.text_in(AGENT, text).await;
    }
    let sent = h.wait_for(AGENT, before + 1).await;
    let total = offpay_purse::sync::parse_sms_part(&sent[before])
        .unwrap()
        .total;
    let sent = h.wait_for(AGENT, before + total).await;
    agent
        .apply_answer(&offpay_purse::sync::unpack_sms(&sent[before..before + total]).unwrap())
        .unwrap();
    assert!(agent.unacknowledged_log().is_empty());
    let shadow = h.shadow(AGENT).await;
    assert_eq!(shadow["last_sync_sequence"], 2, "{shadow}");
    assert_eq!(shadow["balance"], "480.00", "{shadow}");
    assert!(
        h.sent_to(CUSTOMER).is_empty(),
        "nothing went to the spoofed number"
    );

    // Replayed parts of a synced message: ignored, no second answer.
    for text in &texts {
        h.text_in(AGENT, text).await;
    }

    // A rewritten part (one character of the chunk changed): the message completes, fails
    // authentication, changes nothing, and is dropped; the purse's next round goes through.
    h.pay(&mut agent, &mut customer, "30", now(&h));
    let mut texts = upload_texts(&mut agent, now(&h), SMS_ROUND_ENTRIES_MAX);
    let last = texts.len() - 1;
    let flipped = if texts[last].ends_with('A') { 'B' } else { 'A' };
    texts[last].pop();
    texts[last].push(flipped);
    for text in &texts {
        h.text_in(AGENT, text).await;
    }
    let shadow = h.shadow(AGENT).await;
    assert_eq!(shadow["last_sync_sequence"], 2, "nothing synced: {shadow}");
    assert_eq!(shadow["balance"], "480.00", "{shadow}");

    let sent_before_retry = h.sent_to(AGENT).len();
    assert_eq!(
        sent_before_retry,
        before + total,
        "neither the replay nor the rewritten message was answered"
    );
    assert_eq!(h.sms_sync(&mut agent, AGENT).await, 1);
    let shadow = h.shadow(AGENT).await;
    assert_eq!(shadow["balance"], "450.00", "{shadow}");
    assert_eq!(shadow["blocked"], false, "{shadow}");
    // Every answer text the agent got belongs to an answer it applied: the first sync, the
    // spoofed-then-genuine one and the retry (no answer to the replay or the rewrite).
    let answers: std::collections::BTreeSet<u16> = h
        .sent_to(AGENT)
        .iter()
        .map(|text| offpay_purse::sync::parse_sms_part(text).unwrap().message_id)
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
}

async fn a_long_log_syncs_in_rounds_over_sms_and_over_http(kind: BackendKind) {
    const PAYMENTS: usize = 500;
    let mut h = Harness::start(kind).await;
    let agent_phone = "+254700000041";
    let http_agent_phone = "+254700000042";
    let mut agent = h.provision(agent_phone, "agent").await;
    let mut http_agent = h.provision(http_agent_phone, "agent").await;
    h.float(agent_phone, "100000").await;
    h.float(http_agent_phone, "100000").await;
    h.http_sync(&mut agent, HTTP_ROUND_ENTRIES_MAX).await;
    h.http_sync(&mut http_agent, HTTP_ROUND_ENTRIES_MAX).await;
    let mut customers = Vec::new();
    for index in 0..10 {
        let mut customer = h
            .provision(&format!("+2547000005{index:02}"), "customer")
            .await;
        h.http_sync(&mut customer, HTTP_ROUND_ENTRIES_MAX).await;
        customers.push(customer);
    }
    let at = now(&h);
    for index in 0..PAYMENTS {
        h.pay(&mut agent, &mut customers[index % 10], "2", at);
        h.pay(&mut http_agent, &mut customers[(index + 5) % 10], "3", at);
    }
    assert!(agent.unacknowledged_log().len() >= PAYMENTS);
    // The payees report first: the operator waits for both agents' debits.
    for customer in &mut customers {
        h.http_sync(customer, HTTP_ROUND_ENTRIES_MAX).await;
    }
    let entries = agent.unacknowledged_log().len();
    let rounds = h.sms_sync(&mut agent, agent_phone).await;
    assert_eq!(rounds, entries.div_ceil(SMS_ROUND_ENTRIES_MAX));
    assert!(agent.unacknowledged_log().is_empty());
    h.http_sync(&mut http_agent, HTTP_ROUND_ENTRIES_MAX).await;
    assert!(http_agent.unacknowledged_log().is_empty());
    for (phone, purse) in [(agent_phone, &agent), (http_agent_phone, &http_agent)] {
        let shadow = h.shadow(phone).await;
        assert_eq!(shadow["blocked"], false, "{shadow}");
        assert_eq!(
            shadow["balance"],
            purse.balance().decimal().to_string(),
            "{shadow}"
        );
    }
    let (status, flags) = h.server.get("/api/v1/fraud").await;
    assert_eq!(status, StatusCode::OK, "{flags}");
    assert_eq!(
        flags["items"],
        json!([]),
        "no flags on honest agents: {flags}"
    );
}

async fn a_statement_by_sms_goes_to_the_purses_own_phone_once_per_code(kind: BackendKind) {
    let mut h = Harness::start(kind).await;
    let mut agent = h.provision(AGENT, "agent").await;
    let mut customer = h.provision(CUSTOMER, "customer").await;
    h.float(AGENT, "500").await;
    h.http_sync(&mut agent, HTTP_ROUND_ENTRIES_MAX).await;
    h.http_sync(&mut customer, HTTP_ROUND_ENTRIES_MAX).await;
    let at = now(&h);
    h.pay(&mut agent, &mut customer, "25", at);
    h.http_sync(&mut agent, HTTP_ROUND_ENTRIES_MAX).await;

    let statement = |purse: &mut Purse, at| {
        let Outcome::StatementRequested(request) = purse
            .handle(Command::StatementRequest, at, &mut SeededRandom::new(1))
            .unwrap()
        else {
            panic!("a statement request")
        };
        request
    };
    // A forged code over a counter the purse has not used yet, from a spoofed sender and from
    // the purse's own number: nothing is sent (and, refused, it uses up nothing).
    let genuine = statement(&mut agent, now(&h));
    let forged = offpay_purse::sync::StatementRequest {
        counter: genuine.counter + 50,
        code: (genuine.code + 1) % 10_000_000,
        ..genuine
    };
    h.text_in(CUSTOMER, &forged.text()).await;
    h.text_in(AGENT, &forged.text()).await;
    // The genuine request, from a spoofed sender: the statement goes to the purse's phone.
    h.text_in(CUSTOMER, &genuine.text()).await;
    let sent = h.wait_for(AGENT, 1).await;
    let text = sent.join("\n");
    assert!(text.contains("BALANCE KES 475.00"), "{text}");
    assert!(text.contains(" TO "), "money out: {text}");
    assert!(text.contains("KES 25.00"), "{text}");
    assert!(text.contains(CUSTOMER), "the counterparty is named: {text}");
    let statement_texts = sent.len();
    // Replayed: refused. A new request: answered.
    h.text_in(AGENT, &genuine.text()).await;
    let next = statement(&mut agent, now(&h));
    h.text_in(AGENT, &next.text()).await;
    let sent = h.wait_for(AGENT, 2 * statement_texts).await;
    assert_eq!(
        sent.len(),
        2 * statement_texts,
        "one statement per genuine request, none for the forged or the replayed: {sent:?}"
    );
    assert!(h.sent_to(CUSTOMER).is_empty());
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                for kind in offpay_test_support::BackendKind::all(stringify!($name)) {
                    super::$name(kind).await;
                }
            }
        )*
    };
}

mod stories {
    on_every_backend!(
        a_purse_syncs_through_the_gateway_and_its_attackers_get_nothing,
        a_long_log_syncs_in_rounds_over_sms_and_over_http,
        a_statement_by_sms_goes_to_the_purses_own_phone_once_per_code,
    );
}
