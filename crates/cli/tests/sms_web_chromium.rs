//! The account holder's statement page in headless Chromium, driven through chromedriver with a
//! small WebDriver client: the password is set by SMS, the login needs it plus an unused row and
//! its TAN, the session cookie is invisible to scripts, a used row or a wrong TAN is refused, and
//! logging out ends the session. Loopback only; every wait is bounded.
//!
//! Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`); `scripts/test.sh`
//! installs them. Without them this test fails, unless `OFFPAY_ALLOW_SKIP_CHROMIUM=1` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sms_common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sms_common::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM_BINARIES: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
/// Upper bound on browser start and page loads.
const BROWSER_WAIT_MAX: Duration = Duration::from_secs(60);
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Browser {
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Browser {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(
            method,
            format!("{}/session/{}{path}", self.base, self.session),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().unwrap().json().unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "webdriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT_KEY].as_str().unwrap().to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Clicks a control that submits a form and waits until the next page has loaded: chromedriver
    /// may answer the click before the navigation it starts is over, and reading the old page
    /// then would make the test depend on the machine's load.
    fn click_and_wait_for_page(&self, css: &str) {
        self.script("window.__offpayOldPage = true;");
        self.click(css);
        let started = Instant::now();
        loop {
            let loaded = self.script(
                "return window.__offpayOldPage === undefined && document.readyState === 'complete';",
            );
            if loaded == Value::Bool(true) {
                return;
            }
            assert!(
                started.elapsed() < BROWSER_WAIT_MAX,
                "the page after clicking {css} did not load"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn text(&self, css: &str) -> String {
        let element = self.element(css);
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .as_str()
        .unwrap()
        .to_owned()
    }

    fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn login(&self, server: &TestServer, password: &str, row: u8, tan_text: &str) {
        self.open(&format!("{}/sms/web/login", server.base));
        self.type_into("#account", PAYER);
        self.type_into("#password", password);
        self.type_into("#row", &row.to_string());
        self.type_into("#tan", tan_text);
        self.click_and_wait_for_page("#login");
    }
}

fn chromium() -> Option<&'static str> {
    let binary = CHROMIUM_BINARIES
        .into_iter()
        .find(|path| Path::new(path).exists());
    if binary.is_some() && Path::new(CHROMEDRIVER).exists() {
        return binary;
    }
    if std::env::var("OFFPAY_ALLOW_SKIP_CHROMIUM").is_ok_and(|value| value == "1") {
        eprintln!(
            "SKIPPED: chromium or chromedriver is not installed (Debian: chromium chromium-driver)"
        );
        return None;
    }
    panic!(
        "chromium or chromedriver is not installed: scripts/test.sh installs the Debian packages \
         chromium and chromium-driver; set OFFPAY_ALLOW_SKIP_CHROMIUM=1 to skip"
    );
}

fn the_statement_page_logs_in_with_password_and_a_tan_row_in_headless_chromium(kind: BackendKind) {
    let Some(binary) = chromium() else { return };
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let reply = server.sms(
        PAYER_PHONE,
        &signed(
            &envelope,
            &format!("PASSWORD {SEED_EUIN} 1 000000 MyPass2026"),
        ),
    );
    assert!(reply.starts_with("DONE: web password set"), "{reply}");
    let paid = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("1234.50"), 2));
    let reference = paid.split("REF ").nth(1).unwrap()[..8].to_owned();

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _driver = Killed(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::builder()
        .timeout(BROWSER_WAIT_MAX)
        .build()
        .unwrap();
    let deadline = Instant::now() + BROWSER_WAIT_MAX;
    while http.get(format!("{base}/status")).send().is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = tempfile::tempdir().unwrap();
    let created: Value = http
        .post(format!("{base}/session"))
        .json(&json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-component-update",
                         "--no-first-run", "--disable-quic", "--disable-sync",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let session = created["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no browser session: {created}"))
        .to_owned();
    let browser = Browser {
        base: base.clone(),
        session,
        http: http.clone(),
    };
    browser.call(
        reqwest::Method::POST,
        "/timeouts",
        Some(json!({ "pageLoad": 30_000, "script": 10_000, "implicit": 5_000 })),
    );

    // A wrong TAN: refused, still on the login page, the row is used up.
    let wrong = (tan(&envelope, 3).parse::<u16>().unwrap() + 1) % 1000;
    browser.login(&server, "MyPass2026", 3, &format!("{wrong:03}"));
    assert!(
        browser.url().ends_with("/sms/web/login"),
        "{}",
        browser.url()
    );
    assert!(browser.text("#error").contains("Login failed"));
    // A wrong password: refused without touching the envelope.
    browser.login(&server, "NotMyPass1", 4, &tan(&envelope, 4));
    assert!(browser.text("#error").contains("Login failed"));
    assert!(
        !server.envelope(SEED_EUIN)["used_rows"]
            .as_array()
            .unwrap()
            .contains(&json!(4))
    );
    // Password and an unused row with its TAN: the statement.
    browser.login(&server, "MyPass2026", 4, &tan(&envelope, 4));
    assert!(
        browser.url().ends_with("/sms/web/statement"),
        "{}",
        browser.url()
    );
    let balance = browser.text("#balance");
    assert_eq!(balance, "KES 998755.50", "1000000 - 1234.50 - fee 10");
    let statement = browser.text("#statement");
    assert!(statement.contains(&reference), "{statement}");
    assert!(statement.contains("-1234.50"), "{statement}");
    // The session cookie is HttpOnly: scripts cannot read it.
    let cookies = browser.script("return document.cookie;");
    assert!(
        !cookies
            .as_str()
            .unwrap_or("")
            .contains("offpay_sms_session"),
        "{cookies}"
    );
    // The same row cannot log in again.
    browser.click_and_wait_for_page("#logout");
    assert!(
        browser.url().ends_with("/sms/web/login"),
        "{}",
        browser.url()
    );
    browser.open(&format!("{}/sms/web/statement", server.base));
    assert!(
        browser.url().ends_with("/sms/web/login"),
        "logged out: {}",
        browser.url()
    );
    browser.login(&server, "MyPass2026", 4, &tan(&envelope, 4));
    assert!(browser.text("#error").contains("used before"));
    browser.call(reqwest::Method::DELETE, "", None);
    // A cross-site POST without the form token is refused.
    let response = sms_common::http()
        .post(format!("{}/sms/web/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf=x&account={PAYER}&password=MyPass2026&row=5&tan=000"
        ))
        .send()
        .unwrap();
    assert!(response.text().unwrap().contains("form expired"));
}

offpay_test_support::on_every_backend!(
    the_statement_page_logs_in_with_password_and_a_tan_row_in_headless_chromium,
);
