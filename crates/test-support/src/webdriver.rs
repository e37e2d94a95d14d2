//! A small WebDriver client for headless Chromium through Debian's chromedriver: start a browser
//! on a loopback port, open pages, find elements, type, click, press keys, run a script, take a
//! screenshot. Every wait is bounded by [`BROWSER_WAIT_MAX`].
//!
//! Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`); `scripts/test.sh`
//! installs them. Without them [`Browser::start`] panics, unless
//! `OFFPAY_ALLOW_SKIP_CHROMIUM=1` is set (then it returns `None` and the test says it skipped).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Debian's chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Debian puts the browser.
pub const CHROMIUM_BINARIES: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
/// Upper bound on browser start, page loads and every wait for an element or a condition.
pub const BROWSER_WAIT_MAX: Duration = Duration::from_secs(60);
/// Pause between two looks at a condition being waited for.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// The W3C name of an element reference in an answer.
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The WebDriver code of the Enter key.
pub const KEY_ENTER: &str = "\u{E007}";
/// The WebDriver code of the Tab key.
pub const KEY_TAB: &str = "\u{E004}";

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The browser binary, when Chromium and chromedriver are installed; `None` (with a note) when
/// they are not and `OFFPAY_ALLOW_SKIP_CHROMIUM=1`.
///
/// # Panics
/// When they are not installed and skipping is not allowed.
pub fn chromium_binary() -> Option<&'static str> {
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

/// One browser session (a profile of its own), with the chromedriver that drives it.
#[derive(Debug)]
pub struct Browser {
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
    _driver: Killed,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session, or `None`
    /// when Chromium is missing and skipping is allowed ([`chromium_binary`]).
    pub fn start() -> Option<Browser> {
        let binary = chromium_binary()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Killed(
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
            .expect("an HTTP client");
        let deadline = Instant::now() + BROWSER_WAIT_MAX;
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": ["--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-background-networking", "--disable-component-update",
                             "--no-first-run", "--disable-quic", "--disable-sync",
                             "--window-size=1280,900",
                             format!("--user-data-dir={}", profile.path().display())]
                }
            }}}))
            .send()
            .expect("chromedriver answers")
            .json()
            .expect("chromedriver answers JSON");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        let browser = Browser {
            base,
            session,
            http,
            _profile: profile,
            _driver: driver,
        };
        browser.call(
            reqwest::Method::POST,
            "/timeouts",
            Some(json!({ "pageLoad": 30_000, "script": 10_000, "implicit": 5_000 })),
        );
        Some(browser)
    }

    /// A WebDriver command of this session; panics on a WebDriver error.
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.try_call(method, path, body);
        assert!(answer.get("error").is_none(), "webdriver {path}: {answer}");
        answer
    }

    /// A WebDriver command of this session; its `value`, which holds `error` on failure.
    pub fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(
            method,
            format!("{}/session/{}{path}", self.base, self.session),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .expect("chromedriver answers")
            .json()
            .expect("chromedriver answers JSON");
        answer["value"].clone()
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects (waiting up to the implicit timeout).
    pub fn element(&self, css: &str) -> String {
        let found = self.call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the button whose text is `text` (the first, in document order).
    pub fn click_button(&self, text: &str) {
        let found = self.call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "xpath", "value": format!("//button[normalize-space()={}]", json!(text)) })),
        );
        let element = found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no button {text:?}"))
            .to_owned();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Clears the input `css` selects.
    pub fn clear(&self, css: &str) {
        let element = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let element = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Presses `keys` (text or [`KEY_TAB`], [`KEY_ENTER`]) in whatever has the focus.
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|key| {
                [
                    json!({ "type": "keyDown", "value": key.to_string() }),
                    json!({ "type": "keyUp", "value": key.to_string() }),
                ]
            })
            .collect();
        self.call(
            reqwest::Method::POST,
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
    }

    /// Clicks a control that submits a form and waits until the next page has loaded:
    /// chromedriver may answer the click before the navigation it starts is over.
    pub fn click_and_wait_for_page(&self, css: &str) {
        self.script("window.__offpayOldPage = true;");
        self.click(css);
        self.wait_until(
            &format!("the page after clicking {css} to load"),
            "return window.__offpayOldPage === undefined && document.readyState === 'complete';",
        );
    }

    /// Waits until `script` returns `true`, at most [`BROWSER_WAIT_MAX`]; `what` names it. On
    /// a timeout the panic shows the page's text.
    pub fn wait_until(&self, what: &str, script: &str) {
        if !self.try_wait_until(script, BROWSER_WAIT_MAX) {
            let text = self.script("return document.body ? document.body.innerText : '';");
            panic!(
                "waited {BROWSER_WAIT_MAX:?} for {what} on {}; the page says: {}",
                self.url(),
                text.as_str().unwrap_or_default()
            );
        }
    }

    /// Whether `script` returns `true` within `wait`.
    pub fn try_wait_until(&self, script: &str, wait: Duration) -> bool {
        let started = Instant::now();
        loop {
            if self.script(script) == Value::Bool(true) {
                return true;
            }
            if started.elapsed() >= wait {
                return false;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the element `css` selects exists and its text contains `text`.
    pub fn wait_for_text(&self, css: &str, text: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return !!e && e.textContent.includes({});",
            json!(css),
            json!(text)
        );
        self.wait_until(&format!("{css} to show {text:?}"), &script);
        self.text(css)
    }

    /// The visible text of the element `css` selects.
    pub fn text(&self, css: &str) -> String {
        let element = self.element(css);
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The page's address.
    pub fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` in the page; its return value.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
}
