//! A real `offpay serve` process for the SMS rail's end-to-end tests, and what a holder writes
//! with an envelope in hand.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use offpay_ledger::{Amount, Currency};
use offpay_sms_tan::compose::{grid_text, low_text};
use offpay_sms_tan::import::parse_envelope;
use offpay_sms_tan::{AccountNumber, Envelope, Euin, MasterKey, RowCount, SecurityLevel};
use serde_json::{Value, json};

/// Upper bound on any wait in these tests.
pub const WAIT_MAX: Duration = Duration::from_secs(60);
/// The seed's worked example envelope.
pub const SEED_ENVELOPE: &str =
    include_str!("../../../../rails/sms-tan/tests/vectors/seed-002-worked-example.envelope");
pub const SEED_EUIN: &str = "26399912345";
pub const PAYER: &str = "111100002222";
pub const PAYEE: &str = "901020377865";
pub const PAYER_PHONE: &str = "+254700000001";
pub const PAYEE_PHONE: &str = "+254700000002";

mod dba;

#[allow(unused_imports)]
pub use dba::*;
pub use offpay_test_support::{Backend, BackendKind};

/// A running server; killed on drop (before its database is dropped).
pub struct TestServer {
    child: Child,
    pub base: String,
    pub token: String,
    pub gateway_token: String,
    pub data_dir: PathBuf,
    _directory: Option<tempfile::TempDir>,
    http: reqwest::blocking::Client,
    next_id: std::sync::atomic::AtomicU64,
    _backend: Backend,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl TestServer {
    /// Starts `offpay serve` on a fresh data directory and a fresh database of `kind`.
    pub fn start(kind: BackendKind) -> TestServer {
        let directory = tempfile::tempdir().unwrap();
        let data_dir = directory.path().to_owned();
        let mut server = TestServer::start_in(&data_dir, "127.0.0.1:0", kind);
        server._directory = Some(directory);
        server
    }

    /// Starts `offpay serve` on `data_dir` and a fresh database of `kind`, listening on `listen`.
    pub fn start_in(data_dir: &Path, listen: &str, kind: BackendKind) -> TestServer {
        let backend = kind.fresh();
        let mut command = Command::new(env!("CARGO_BIN_EXE_offpay"));
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("OFFPAY_LOG", "warn")
            // The stories fund the payer with 1,000,000 from the operator's float, above the
            // default approval amount; four eyes has tests of its own.
            .env(
                "OFFPAY_APPROVAL_ABOVE",
                offpay_test_support::process::TEST_APPROVAL_ABOVE,
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = backend.database_url() {
            command.args(["--database-url", url]);
        }
        let mut child = command.spawn().expect("start offpay serve");
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = sender.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                if line.contains("ERROR") || line.contains("panicked") {
                    eprintln!("server: {line}");
                }
            }
        });
        let address = receiver
            .recv_timeout(WAIT_MAX)
            .expect("the server announces its address");
        let read = |name: &str| {
            std::fs::read_to_string(data_dir.join(name))
                .unwrap()
                .trim()
                .to_owned()
        };
        TestServer {
            child,
            base: format!("http://{address}"),
            token: read("admin.token"),
            gateway_token: read("sms-gateway.token"),
            data_dir: data_dir.to_owned(),
            _directory: None,
            http: http(),
            next_id: std::sync::atomic::AtomicU64::new(0),
            _backend: backend,
        }
    }

    /// The PostgreSQL URL of the server's database (`None`: SQLite in the data directory).
    pub fn database_url(&self) -> Option<&str> {
        self._backend.database_url()
    }

    /// The server's envelope master key (the tests play the printer).
    pub fn master(&self) -> MasterKey {
        let text =
            std::fs::read_to_string(self.data_dir.join("keys").join("sms-master.key")).unwrap();
        MasterKey::from_slice(&hex_decode(text.trim())).unwrap()
    }

    pub fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.api(reqwest::Method::GET, path, None);
        assert!(status < 300, "GET {path}: {status} {body}");
        body
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.api(reqwest::Method::POST, path, Some(body));
        assert!(status < 300, "POST {path}: {status} {answer}");
        answer
    }

    /// One SMS through the generic webhook with a given gateway message id.
    pub fn sms_with_id(&self, id: &str, from: &str, text: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/sms/webhook", self.base))
            .bearer_auth(&self.gateway_token)
            .json(&json!({ "from": from, "text": text, "message_id": id }))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// One SMS with a fresh message id; returns the first reply to the sender.
    pub fn sms(&self, from: &str, text: &str) -> String {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = self.sms_with_id(&format!("t-{id}"), from, text);
        answer["replies"][0].as_str().unwrap_or_default().to_owned()
    }

    /// Balance of an SMS account in minor units.
    pub fn balance(&self, account: &str) -> i64 {
        self.get(&format!("/api/v1/accounts/sms:{account}"))["balance_minor"]
            .as_i64()
            .unwrap()
    }

    pub fn envelope(&self, euin: &str) -> Value {
        self.get(&format!("/api/v1/sms/envelopes/{euin}"))
    }

    /// Settings with fees and the default dialback threshold. The seed's envelope keeps its
    /// printed recipes; these stories pay it up to KES 1,000,000 a payment (the cap itself is
    /// `sms_attacks::imported_rows_pay_only_up_to_the_cap_through_the_webhook`).
    pub fn set_fees(&self) {
        let mut settings = self.get("/api/v1/sms/settings");
        settings["fees"] =
            json!([{ "currency": "KES", "low": "10", "middle": "15", "high": "25" }]);
        settings["dialback_defaults"] = json!([{ "currency": "KES", "amount": "500000" }]);
        settings["printed_recipe_max"] = json!([{ "currency": "KES", "amount": "1000000" }]);
        self.post("/api/v1/sms/settings", settings);
    }

    /// Payer (with KES 1,000,000 and the seed envelope) and payee accounts.
    pub fn seed_world(&self) -> Envelope {
        self.set_fees();
        self.post(
            "/api/v1/sms/accounts",
            json!({ "receive_number": PAYER, "notify_phone": PAYER_PHONE }),
        );
        self.post(
            "/api/v1/sms/accounts",
            json!({ "receive_number": PAYEE, "notify_phone": PAYEE_PHONE }),
        );
        self.post(
            "/api/v1/accounts",
            json!({ "id": "operator:float", "kind": "operator_float" }),
        );
        self.post(
            "/api/v1/transfers",
            json!({ "transfers": [{ "id": "cash-in", "debit_account": "operator:float",
                     "credit_account": format!("sms:{PAYER}"), "amount": "1000000" }] }),
        );
        self.post(
            "/api/v1/sms/envelopes/import",
            json!({ "text": SEED_ENVELOPE }),
        );
        self.post(
            &format!("/api/v1/sms/envelopes/{SEED_EUIN}/bind"),
            json!({ "account": PAYER }),
        );
        parse_envelope(SEED_ENVELOPE).unwrap()
    }

    /// Issues one envelope on the server and derives its secrets (as the printer would).
    pub fn issue_envelope(&self) -> Envelope {
        let answer = self.post(
            "/api/v1/sms/envelopes/issue",
            json!({ "count": 1, "rows": 20 }),
        );
        let euin = Euin::parse(answer["euins"][0].as_str().unwrap()).unwrap();
        Envelope::derive(&self.master(), euin, RowCount::Twenty)
    }

    /// Everything queued for the gateway so far, as (recipient, text). The operator API never
    /// shows an SMS's text (it may hold a used row's TAN), so this reads the outbox records from
    /// the database, as the rail's sender does.
    pub fn outbox(&self) -> Vec<(String, String)> {
        let values: Vec<Vec<u8>> = match self.database_url() {
            None => {
                let connection =
                    rusqlite::Connection::open(self.data_dir.join("offpay.sqlite")).unwrap();
                connection.busy_timeout(Duration::from_secs(10)).unwrap();
                let mut statement = connection
                    .prepare(
                        "SELECT value FROM records WHERE namespace = 'sms' AND key LIKE 'out:%' \
                         ORDER BY key",
                    )
                    .unwrap();
                statement
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            Some(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client
                    .query(
                        "SELECT value FROM records WHERE namespace = 'sms' AND key LIKE 'out:%' \
                         ORDER BY key",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            }
        };
        values
            .iter()
            .map(|bytes| {
                let sms: Value = serde_json::from_slice(bytes).unwrap();
                (
                    sms["to"].as_str().unwrap().to_owned(),
                    sms["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

pub fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
        .collect()
}

pub fn kes(text: &str) -> Amount {
    Amount::parse(text, Currency::KES).unwrap()
}

pub fn tan(envelope: &Envelope, row: u8) -> String {
    envelope.row(row).unwrap().tan().reveal()
}

/// Row `row`'s checksum over payee and amount.
pub fn sum(envelope: &Envelope, row: u8, payee: &str, amount: &Amount) -> String {
    let checksum = envelope
        .row(row)
        .unwrap()
        .recipe()
        .checksum(&AccountNumber::parse(payee).unwrap(), amount);
    checksum
        .iter()
        .map(|digit| char::from(b'0' + digit))
        .collect()
}

/// A low-level payment.
pub fn low_pay(envelope: &Envelope, payee: &str, amount: &Amount, row: u8) -> String {
    let payee = AccountNumber::parse(payee).unwrap();
    low_text(envelope, &envelope.euin.to_string(), &payee, amount, row).unwrap()
}

/// A middle (`PAYG`) or high (`PAYC`) payment.
pub fn grid_pay(
    envelope: &Envelope,
    keyword: &str,
    payee: &str,
    amount: &Amount,
    row: u8,
) -> String {
    let level = match keyword {
        "PAYG" => SecurityLevel::Middle,
        "PAYC" => SecurityLevel::High,
        other => panic!("{other} is not a grid keyword"),
    };
    let payee = AccountNumber::parse(payee).unwrap();
    grid_text(
        envelope,
        level,
        &envelope.euin.to_string(),
        &payee,
        amount,
        row,
    )
    .unwrap()
}

/// `BANK ROW r TAN t` in a reply.
pub fn bank_row(reply: &str) -> (u8, String) {
    let rest = reply
        .split("BANK ROW ")
        .nth(1)
        .expect("a bank row in the reply");
    let mut words = rest.split_whitespace();
    let row = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("TAN"));
    let tan = words.next().unwrap().trim_end_matches('.').to_owned();
    (row, tan)
}

/// A settings message with its row's SUM (protocol v3): `text` has `000000` where the SUM goes.
pub fn signed(envelope: &Envelope, text: &str) -> String {
    offpay_sms_tan::compose::setting_text(envelope, Currency::KES, text)
        .unwrap_or_else(|| panic!("not a settings message: {text}"))
}

/// The `REG` the holder of `envelope` writes with `row` to register `new_envelope`.
pub fn register(envelope: &Envelope, new_envelope: &Euin, row: u8) -> String {
    offpay_sms_tan::compose::register_text(envelope, &envelope.euin.to_string(), new_envelope, row)
        .unwrap()
}

/// Logs in on the web page over plain HTTP (account, password, `row` and `tan`); the session's
/// cookie header, or `None` when the login was refused.
pub fn web_login(server: &TestServer, password: &str, row: u8, tan: &str) -> Option<String> {
    let http = http();
    let page = http
        .get(format!("{}/sms/web/login", server.base))
        .send()
        .unwrap();
    let cookie = cookies(&page);
    let body = page.text().unwrap();
    let csrf = hidden(&body, "csrf");
    let answer = http
        .post(format!("{}/sms/web/login", server.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&account={PAYER}&password={password}&row={row}&tan={tan}"
        ))
        .send()
        .unwrap();
    let session = cookies(&answer);
    session
        .contains("offpay_sms_session=")
        .then_some(session)
        .filter(|_| answer.status().is_redirection())
}

/// The `name=value` pairs of a response's `Set-Cookie` headers, as a `Cookie` header.
pub fn cookies(response: &reqwest::blocking::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .filter(|pair| !pair.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The value of the hidden form field `name` in `html`.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let rest = html
        .split(&marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} field in {html}"));
    rest[..rest.find('"').unwrap()].to_owned()
}
