//! Rail 2 through the SMS aggregators' adapters, against local fakes of their APIs (an HTTP
//! server on loopback answering as each aggregator's documentation shows, its errors and rate
//! limiting included), with the test calling the server's callbacks as the aggregator would: a
//! real `offpay serve` process, on both backends. For Africa's Talking, Twilio and the generic
//! JSON webhook (with the operator's bridge faked): the same
//! payment at each SMS-TAN level end to end (inbound, reply, payee notice delivered, delivery
//! report recorded); retries after a 5xx and a 429 with `Retry-After`; a duplicate inbound
//! callback paid and answered once; duplicate and out-of-order delivery reports; callbacks
//! without the aggregator's secret, signature or address refused with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Amounts in minor units are written `whole_cents` (`1500_00` is KES 1500.00).
#![allow(clippy::inconsistent_digit_grouping)]

mod sms_common;
mod sms_fakes;

use std::cell::Cell;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use sms_common::*;
use sms_fakes::*;

/// The short code people write to.
const SHORT_CODE: &str = "22384";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_secret(path: &std::path::Path, secret: &str) {
    std::fs::write(path, format!("{secret}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A server whose SMS go through `fake`.
struct World {
    server: TestServer,
    fake: FakeAggregator,
    http: reqwest::blocking::Client,
    next_id: Cell<u64>,
    payer_replies: Cell<usize>,
    webhook_secret: Vec<u8>,
    _directory: tempfile::TempDir,
}

impl World {
    fn start(kind: Kind, backend: BackendKind) -> World {
        let directory = tempfile::tempdir().unwrap();
        let data_dir = directory.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let fake = FakeAggregator::start(kind);
        let port = free_port();
        let config = match kind {
            Kind::AfricasTalking => {
                write_secret(&data_dir.join("africastalking.key"), AT_API_KEY);
                format!(
                    "gateway = \"africastalking\"\n[africastalking]\nusername = \"{AT_USERNAME}\"\n\
                     api_key_file = \"africastalking.key\"\nbase_url = \"{}\"\nsender = \"{SHORT_CODE}\"\n\
                     allow_ips = [\"127.0.0.1\", \"::1\"]\n",
                    fake.base
                )
            }
            Kind::Twilio => {
                write_secret(&data_dir.join("twilio.token"), TWILIO_TOKEN);
                format!(
                    "gateway = \"twilio\"\n[twilio]\naccount_sid = \"{TWILIO_SID}\"\n\
                     auth_token_file = \"twilio.token\"\nfrom = \"{TWILIO_FROM}\"\n\
                     public_url = \"http://127.0.0.1:{port}\"\nbase_url = \"{}\"\n",
                    fake.base
                )
            }
            Kind::Webhook => format!(
                "gateway = \"webhook\"\n[webhook]\nsend_url = \"{}/send\"\n",
                fake.base
            ),
        };
        std::fs::write(data_dir.join("sms.toml"), config).unwrap();
        let server = TestServer::start_in(&data_dir, &format!("127.0.0.1:{port}"), backend);
        let webhook_secret = std::fs::read_to_string(data_dir.join("sms-webhook.secret"))
            .map(|text| text.trim().as_bytes().to_vec())
            .unwrap_or_default();
        if kind == Kind::Webhook {
            assert!(
                !webhook_secret.is_empty(),
                "the server creates the webhook secret"
            );
        }
        fake.set_webhook_secret(&webhook_secret);
        World {
            webhook_secret,
            server,
            fake,
            http: http(),
            next_id: Cell::new(0),
            payer_replies: Cell::new(0),
            _directory: directory,
        }
    }

    fn fresh_id(&self) -> String {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        match self.fake.kind {
            Kind::AfricasTalking => format!("ATXid_in_{id:06}"),
            Kind::Twilio => format!("SMin{id:030}"),
            Kind::Webhook => format!("bridge-{id}"),
        }
    }

    /// The aggregator's inbound callback for an SMS `from` with `text` and id `id`: the status
    /// and, for Twilio, the TwiML replies.
    fn inbound_with(
        &self,
        http: &reqwest::blocking::Client,
        id: &str,
        from: &str,
        text: &str,
        sign: bool,
    ) -> (u16, Vec<String>) {
        let (url, body, signature) = match self.fake.kind {
            Kind::AfricasTalking => (
                format!(
                    "{}/sms/africastalking/{}/inbound",
                    self.server.base, self.server.gateway_token
                ),
                encode(&[
                    ("date", "2026-12-07T01:02:03.000Z"),
                    ("from", from),
                    ("id", id),
                    ("linkId", "00000000-0000-0000-0000-000000000001"),
                    ("networkCode", "63902"),
                    ("text", text),
                    ("to", SHORT_CODE),
                ]),
                None,
            ),
            Kind::Twilio => {
                let url = format!("{}/sms/twilio/inbound", self.server.base);
                let pairs = [
                    ("AccountSid", TWILIO_SID),
                    ("ApiVersion", "2010-04-01"),
                    ("Body", text),
                    ("From", from),
                    ("FromCountry", "KE"),
                    ("MessageSid", id),
                    ("NumMedia", "0"),
                    ("NumSegments", "1"),
                    ("SmsMessageSid", id),
                    ("SmsSid", id),
                    ("SmsStatus", "received"),
                    ("To", TWILIO_FROM),
                ];
                let signature = sign.then(|| twilio_signature(&url, &pairs));
                (url, encode(&pairs), signature)
            }
            Kind::Webhook => {
                let body =
                    serde_json::json!({ "from": from, "text": text, "message_id": id }).to_string();
                return self.webhook_post(http, "/sms/webhook", body, sign);
            }
        };
        let mut request = http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, twiml_messages(&text))
    }

    /// A JSON POST to the webhook's `path`, signed when `sign`: the status and the `replies`.
    fn webhook_post(
        &self,
        http: &reqwest::blocking::Client,
        path: &str,
        body: String,
        sign: bool,
    ) -> (u16, Vec<String>) {
        let mut request = http
            .post(format!("{}{path}", self.server.base))
            .header("content-type", "application/json");
        if sign {
            request = request.header(
                "x-offpay-signature",
                offpay_server::rails::sms::gateway::webhook::sign(
                    &self.webhook_secret,
                    body.as_bytes(),
                ),
            );
        }
        let response = request.body(body).send().unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().unwrap_or(Value::Null);
        let replies = answer["replies"]
            .as_array()
            .map(|replies| {
                replies
                    .iter()
                    .map(|reply| reply.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        (status, replies)
    }

    fn inbound(&self, id: &str, from: &str, text: &str) -> (u16, Vec<String>) {
        self.inbound_with(&self.http, id, from, text, true)
    }

    /// The payer writes `text`; the reply as the payer's phone gets it (TwiML for Twilio, the
    /// messaging API for Africa's Talking).
    fn say(&self, text: &str) -> String {
        let (status, replies) = self.inbound(&self.fresh_id(), PAYER_PHONE, text);
        assert_eq!(status, 200, "{text}");
        match self.fake.kind {
            Kind::Twilio | Kind::Webhook => replies.first().cloned().unwrap_or_default(),
            Kind::AfricasTalking => {
                let nth = self.payer_replies.get();
                self.payer_replies.set(nth + 1);
                self.fake.wait_for(PAYER_PHONE, "", nth).text
            }
        }
    }

    /// The aggregator's delivery report for its message `sms`, in its own words.
    fn report_with(&self, sms: &Accepted, status: &str, failure: Option<&str>, sign: bool) -> u16 {
        let (url, body, signature) = match self.fake.kind {
            Kind::AfricasTalking => {
                let mut pairs = vec![
                    ("id", sms.id.as_str()),
                    ("status", status),
                    ("phoneNumber", sms.to.as_str()),
                    ("networkCode", "63902"),
                    ("retryCount", "0"),
                ];
                if let Some(reason) = failure {
                    pairs.push(("failureReason", reason));
                }
                (
                    format!(
                        "{}/sms/africastalking/{}/report",
                        self.server.base, self.server.gateway_token
                    ),
                    encode(&pairs),
                    None,
                )
            }
            Kind::Twilio => {
                let url = sms.status_callback.clone().expect("a StatusCallback");
                let mut pairs = vec![
                    ("AccountSid", TWILIO_SID),
                    ("ApiVersion", "2010-04-01"),
                    ("From", TWILIO_FROM),
                    ("MessageSid", sms.id.as_str()),
                    ("MessageStatus", status),
                    ("SmsSid", sms.id.as_str()),
                    ("SmsStatus", status),
                    ("To", sms.to.as_str()),
                ];
                if let Some(code) = failure {
                    pairs.push(("ErrorCode", code));
                }
                let signature = sign.then(|| twilio_signature(&url, &pairs));
                (url, encode(&pairs), signature)
            }
            Kind::Webhook => {
                let body = serde_json::json!({ "id": sms.id, "status": status, "detail": failure })
                    .to_string();
                return self
                    .webhook_post(&self.http, "/sms/webhook/report", body, sign)
                    .0;
            }
        };
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        request.send().unwrap().status().as_u16()
    }

    fn report(&self, sms: &Accepted, status: &str) -> u16 {
        self.report_with(sms, status, None, true)
    }

    /// The aggregator's words for delivered, failed, and an intermediate report.
    fn words(&self) -> (&'static str, &'static str, &'static str) {
        match self.fake.kind {
            Kind::AfricasTalking => ("Success", "Failed", "Submitted"),
            Kind::Twilio => ("delivered", "undelivered", "sent"),
            Kind::Webhook => ("delivered", "failed", "sent"),
        }
    }

    /// The sent records to `to`.
    fn sent_to(&self, to: &str) -> Vec<Value> {
        self.server.get("/api/v1/sms/sent?limit=1000")["sent"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|sent| sent["to"] == to)
            .cloned()
            .collect()
    }

    fn wait_outbox_empty(&self) {
        let deadline = Instant::now() + FAKE_WAIT_MAX;
        while !self.server.outbox().is_empty() {
            assert!(Instant::now() < deadline, "the outbox did not drain");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The same three payments as the webhook's test, through the aggregator: low, middle, high.
fn pay_at_each_level(world: &World) {
    let envelope = world.server.seed_world();
    let server = &world.server;
    let reply = world.say(&low_pay(&envelope, PAYEE, &kes("2000"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    let reply = world.say(&grid_pay(&envelope, "PAYG", PAYEE, &kes("1500"), 2));
    assert!(reply.starts_with("PAID PAYG 26399912345 2 "), "{reply}");
    let (row, bank_tan) = bank_row(&reply);
    assert_eq!((row, bank_tan), (19, tan(&envelope, 19)));
    let echo = world.say(&grid_pay(&envelope, "PAYC", PAYEE, &kes("300"), 3));
    assert!(echo.starts_with("CHECK PAYC 26399912345 3 "), "{echo}");
    let (callback_row, callback_tan) = bank_row(&echo);
    assert_eq!(server.balance(PAYEE), 3500_00, "nothing paid before the OK");
    let reply = world.say(&format!(
        "OK {SEED_EUIN} {callback_row} {callback_tan} 4 {}",
        sum(&envelope, 4, PAYEE, &kes("300"))
    ));
    assert!(reply.starts_with("PAID "), "{reply}");
    assert_eq!(server.balance(PAYEE), 3800_00);
    assert_eq!(
        server.balance(PAYER),
        1_000_000_00 - 3800_00 - 10_00 - 15_00 - 25_00
    );
}

fn each_level_pays_end_to_end(kind: Kind, backend: BackendKind) {
    let world = World::start(kind, backend);
    pay_at_each_level(&world);
    // The payee's three notices went out through the aggregator's API.
    let notices: Vec<Accepted> = [("2000.00", 0), ("1500.00", 0), ("300.00", 0)]
        .iter()
        .map(|(amount, nth)| {
            world.fake.wait_for(
                PAYEE_PHONE,
                &format!("RECEIVED KES {amount} FROM 111100002222"),
                *nth,
            )
        })
        .collect();
    world.wait_outbox_empty();
    let (delivered, _, intermediate) = world.words();
    for notice in &notices {
        assert_eq!(world.report(notice, intermediate), 200);
        assert_eq!(world.report(notice, delivered), 200);
    }
    let sent = world.sent_to(PAYEE_PHONE);
    assert_eq!(sent.len(), 3, "{sent:?}");
    for record in &sent {
        assert_eq!(record["status"], "delivered", "{record}");
        // Once on the phone, only the keyed hash of the text is kept (and the API never shows
        // a text: it says whether one is kept).
        assert_eq!(record["text_kept"], false, "{record}");
        assert!(record.get("text").is_none(), "{record}");
    }
    if kind == Kind::AfricasTalking {
        // The payer's replies were queued and sent too, from the short code.
        assert_eq!(world.sent_to(PAYER_PHONE).len(), 4);
    }
    assert_eq!(world.server.get("/api/v1/totals")["balanced"], true);
}

fn retries_duplicates_and_out_of_order_reports(kind: Kind, backend: BackendKind) {
    let world = World::start(kind, backend);
    let envelope = world.server.seed_world();
    // The aggregator is down once, then rate limits once (asking for 1 s), then accepts.
    let (down, limited) = match kind {
        Kind::AfricasTalking => (
            Scripted {
                status: 500,
                retry_after: None,
                body: "Internal Server Error".into(),
            },
            Scripted {
                status: 429,
                retry_after: Some("1".into()),
                body: "Too Many Requests".into(),
            },
        ),
        Kind::Twilio | Kind::Webhook => (
            Scripted {
                status: 503,
                retry_after: None,
                body: r#"{"code":20500,"message":"Internal Server Error","status":503}"#.into(),
            },
            Scripted {
                status: 429,
                retry_after: Some("1".into()),
                body: r#"{"code":20429,"message":"Too Many Requests","status":429}"#.into(),
            },
        ),
    };
    world.fake.script([down, limited]);
    let text = low_pay(&envelope, PAYEE, &kes("120"), 1);
    let id = world.fresh_id();
    let (status, first) = world.inbound(&id, PAYER_PHONE, &text);
    assert_eq!(status, 200);
    let notice = world.fake.wait_for(PAYEE_PHONE, "RECEIVED KES 120.00", 0);
    world.wait_outbox_empty();
    assert_eq!(
        world.fake.calls(),
        world.fake.accepted().len() + 2,
        "two refused attempts, then each SMS once"
    );
    assert_eq!(world.server.balance(PAYEE), 120_00);
    // The aggregator calls again with the same message (its retry): paid once, answered once.
    let (status, again) = world.inbound(&id, PAYER_PHONE, &text);
    assert_eq!(status, 200);
    world.wait_outbox_empty();
    assert_eq!(world.server.balance(PAYEE), 120_00);
    assert_eq!(world.fake.count(PAYEE_PHONE, "RECEIVED"), 1);
    match kind {
        Kind::AfricasTalking => assert_eq!(world.fake.count(PAYER_PHONE, "PAID"), 1),
        // A webhook whose answer was lost is retried: it gets the same answer.
        Kind::Twilio | Kind::Webhook => {
            assert!(first[0].starts_with("PAID "), "{first:?}");
            assert!(again.len() <= 1, "{again:?}");
        }
    }
    // A failure report queues the notice again, once however often it comes.
    let (delivered, failed, intermediate) = world.words();
    let reason = match kind {
        Kind::AfricasTalking => "DeliveryFailure",
        Kind::Twilio => "30003",
        Kind::Webhook => "absent subscriber",
    };
    assert_eq!(world.report_with(&notice, failed, Some(reason), true), 200);
    let resent = world.fake.wait_for(PAYEE_PHONE, "RECEIVED KES 120.00", 1);
    assert_eq!(world.report_with(&notice, failed, Some(reason), true), 200);
    world.wait_outbox_empty();
    assert_eq!(world.fake.count(PAYEE_PHONE, "RECEIVED KES 120.00"), 2);
    // The second copy is delivered; a late intermediate report and a late failure do not undo
    // it, and queue nothing.
    assert_eq!(world.report(&resent, delivered), 200);
    assert_eq!(world.report(&resent, intermediate), 200);
    assert_eq!(world.report_with(&resent, failed, Some(reason), true), 200);
    assert_eq!(world.report(&resent, delivered), 200);
    world.wait_outbox_empty();
    assert_eq!(world.fake.count(PAYEE_PHONE, "RECEIVED KES 120.00"), 2);
    let statuses: Vec<String> = world
        .sent_to(PAYEE_PHONE)
        .iter()
        .map(|sent| sent["status"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, ["delivered", "failed"], "{statuses:?}");
    // A report for a message this server never sent is refused, and changes nothing.
    let stranger = Accepted {
        id: "ATXid_unknown_0001".into(),
        to: PAYEE_PHONE.into(),
        text: String::new(),
        status_callback: notice.status_callback.clone(),
    };
    assert_eq!(world.report(&stranger, delivered), 404);
    assert_eq!(world.server.get("/api/v1/totals")["balanced"], true);
}

fn unauthenticated_callbacks_are_refused(kind: Kind, backend: BackendKind) {
    let world = World::start(kind, backend);
    let envelope = world.server.seed_world();
    let text = low_pay(&envelope, PAYEE, &kes("50"), 1);
    let refused = |status: u16| assert_eq!(status, 403);
    match kind {
        Kind::Webhook => {
            // No signature (the gateway token as Bearer is not enough once `[webhook]` is
            // configured), and a signature over another body.
            refused(
                world
                    .inbound_with(&world.http, "forged1", PAYER_PHONE, &text, false)
                    .0,
            );
            let status = world
                .http
                .post(format!("{}/sms/webhook", world.server.base))
                .bearer_auth(&world.server.gateway_token)
                .json(&serde_json::json!({ "from": PAYER_PHONE, "text": text, "message_id": "forged2" }))
                .send()
                .unwrap()
                .status()
                .as_u16();
            refused(status);
            let honest = serde_json::json!({ "from": "+254700000009", "text": text, "message_id": "forged3" })
                .to_string();
            let status = world
                .http
                .post(format!("{}/sms/webhook", world.server.base))
                .header("content-type", "application/json")
                .header(
                    "x-offpay-signature",
                    offpay_server::rails::sms::gateway::webhook::sign(
                        &world.webhook_secret,
                        honest.as_bytes(),
                    ),
                )
                .body(honest.replace("+254700000009", PAYER_PHONE))
                .send()
                .unwrap()
                .status()
                .as_u16();
            refused(status);
        }
        Kind::Twilio => {
            // No signature, a signature over another URL, and a signed body with another sender.
            refused(
                world
                    .inbound_with(&world.http, "SMforged1", PAYER_PHONE, &text, false)
                    .0,
            );
            let url = format!("{}/sms/twilio/inbound", world.server.base);
            let pairs = [
                ("AccountSid", TWILIO_SID),
                ("Body", text.as_str()),
                ("From", PAYER_PHONE),
                ("MessageSid", "SMforged2"),
                ("To", TWILIO_FROM),
            ];
            let other_url =
                twilio_signature("https://elsewhere.example/sms/twilio/inbound", &pairs);
            let honest = twilio_signature(&url, &pairs);
            let tampered = encode(&[
                ("AccountSid", TWILIO_SID),
                ("Body", text.as_str()),
                ("From", "+254799999999"),
                ("MessageSid", "SMforged2"),
                ("To", TWILIO_FROM),
            ]);
            for (body, signature) in [(encode(&pairs), other_url), (tampered, honest)] {
                let status = world
                    .http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", signature)
                    .body(body)
                    .send()
                    .unwrap()
                    .status()
                    .as_u16();
                refused(status);
            }
        }
        Kind::AfricasTalking => {
            // Without the gateway token in the path.
            let body = encode(&[
                ("from", PAYER_PHONE),
                ("id", "ATXid_forged1"),
                ("text", &text),
            ]);
            let status = world
                .http
                .post(format!(
                    "{}/sms/africastalking/{}/inbound",
                    world.server.base,
                    "0".repeat(64)
                ))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .unwrap()
                .status()
                .as_u16();
            refused(status);
            // With the token, from an address outside the allow-list (127.0.0.2 on loopback).
            let outsider = reqwest::blocking::Client::builder()
                .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            refused(
                world
                    .inbound_with(&outsider, "ATXid_forged2", PAYER_PHONE, &text, true)
                    .0,
            );
        }
    }
    // Nothing reached the rail: no payment, no reply queued, the row unused.
    assert_eq!(world.server.balance(PAYEE), 0);
    assert!(world.server.outbox().is_empty());
    assert_eq!(
        world.server.envelope(SEED_EUIN)["used_rows"],
        serde_json::json!([])
    );
    assert_eq!(world.server.get("/api/v1/sms/status")["inbound"], 0);
    // An honest one still works, and its report needs the same proof.
    let reply = world.say(&text);
    assert!(reply.starts_with("PAID "), "{reply}");
    let notice = world.fake.wait_for(PAYEE_PHONE, "RECEIVED KES 50.00", 0);
    world.wait_outbox_empty();
    let (delivered, _, _) = world.words();
    if kind != Kind::AfricasTalking {
        refused(world.report_with(&notice, delivered, None, false));
        assert_eq!(world.sent_to(PAYEE_PHONE)[0]["status"], "accepted");
    }
    assert_eq!(world.report(&notice, delivered), 200);
    assert_eq!(world.sent_to(PAYEE_PHONE)[0]["status"], "delivered");
}

fn webhook_pays_at_each_level(backend: BackendKind) {
    each_level_pays_end_to_end(Kind::Webhook, backend);
}
fn webhook_retries_and_takes_reports_once(backend: BackendKind) {
    retries_duplicates_and_out_of_order_reports(Kind::Webhook, backend);
}
fn webhook_refuses_unauthenticated_callbacks(backend: BackendKind) {
    unauthenticated_callbacks_are_refused(Kind::Webhook, backend);
}
fn africastalking_pays_at_each_level(backend: BackendKind) {
    each_level_pays_end_to_end(Kind::AfricasTalking, backend);
}
fn twilio_pays_at_each_level(backend: BackendKind) {
    each_level_pays_end_to_end(Kind::Twilio, backend);
}
fn africastalking_retries_and_takes_reports_once(backend: BackendKind) {
    retries_duplicates_and_out_of_order_reports(Kind::AfricasTalking, backend);
}
fn twilio_retries_and_takes_reports_once(backend: BackendKind) {
    retries_duplicates_and_out_of_order_reports(Kind::Twilio, backend);
}
fn africastalking_refuses_unauthenticated_callbacks(backend: BackendKind) {
    unauthenticated_callbacks_are_refused(Kind::AfricasTalking, backend);
}
fn twilio_refuses_unauthenticated_callbacks(backend: BackendKind) {
    unauthenticated_callbacks_are_refused(Kind::Twilio, backend);
}

offpay_test_support::on_every_backend!(
    africastalking_pays_at_each_level,
    twilio_pays_at_each_level,
    africastalking_retries_and_takes_reports_once,
    twilio_retries_and_takes_reports_once,
    africastalking_refuses_unauthenticated_callbacks,
    twilio_refuses_unauthenticated_callbacks,
    webhook_pays_at_each_level,
    webhook_retries_and_takes_reports_once,
    webhook_refuses_unauthenticated_callbacks,
);
