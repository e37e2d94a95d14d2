//! The operator console in headless Chromium (through chromedriver), on a real `offpay demo`
//! server process with the demo's data on every rail: each role logs in and sees its sections;
//! support finds a customer by phone with the keyboard (Tab to the search box, Enter), opens the
//! statement and decides a fraud case; a finance user floats an agent purse above the approval
//! amount and a second finance user approves it after typing the token again; an auditor sees the
//! audit chain verified; support reads the microcheck deposits and strikes, blocks a payer and
//! unblocks it, and reads a purse's syncs. Every page visited is checked for unlabelled inputs.
//! Screenshots of each step go to `$CARGO_TARGET_TMPDIR/console-screenshots/<backend>/` (the
//! path is printed).
//!
//! Loopback only; every wait is bounded. Chromium and chromedriver come from Debian
//! (`scripts/test.sh` installs them); without them the test fails unless
//! `OFFPAY_ALLOW_SKIP_CHROMIUM=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use offpay_test_support::BackendKind;
use offpay_test_support::webdriver::{Browser, KEY_ENTER, KEY_TAB, Killed};
use serde_json::{Value, json};

/// The demo's walkthrough takes a few seconds; this bounds it on a loaded machine.
const DEMO_WAIT_MAX: Duration = Duration::from_secs(180);
/// Most Tab presses to reach the search box from the top of the page.
const TABS_MAX: usize = 20;
/// The SMS-TAN account holder of the demo: notified at this phone.
const SMS_PHONE: &str = "+254700000001";
const SMS_ACCOUNT: &str = "111100002222";
const SMS_ENVELOPE: &str = "26399912345";

/// The demo server: its address, its data directory and admin token.
struct Demo {
    base: String,
    token: String,
    agent_phone: String,
    _process: Killed,
    _directory: tempfile::TempDir,
}

fn start_demo(backend: &offpay_test_support::Backend) -> Demo {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_offpay"));
    command
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("OFFPAY_LOG", "warn")
        .env_remove("OFFPAY_APPROVAL_ABOVE")
        .env_remove("OFFPAY_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = backend.database_url() {
        command.env("OFFPAY_DATABASE_URL", url);
    }
    let mut child = command.spawn().expect("start offpay demo");
    let (lines, received) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let process = Killed(child);
    let deadline = std::time::Instant::now() + DEMO_WAIT_MAX;
    let (mut base, mut agent_phone) = (None, None);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = received
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the demo did not finish: {seen:#?}"));
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.trim_start().starts_with("provisioned agent") {
            agent_phone = line.split_whitespace().nth(2).map(str::to_owned);
        }
        if line.contains("The server keeps running") {
            break;
        }
        seen.push(line);
    }
    let token = std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    Demo {
        base: base.expect("the demo's address"),
        token,
        agent_phone: agent_phone.expect("the demo's agent purse"),
        _process: process,
        _directory: directory,
    }
}

impl Demo {
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut request = client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/api/v1{path}", self.base),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn add_user(&self, name: &str, role: &str) -> String {
        let (status, answer) = self.api(
            "POST",
            "/users",
            Some(json!({ "name": name, "role": role })),
        );
        assert_eq!(status, 201, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }
}

/// Where this run's screenshots go.
fn screenshot_dir(kind: BackendKind) -> PathBuf {
    let name = match kind {
        BackendKind::Sqlite => "sqlite",
        BackendKind::Postgres => "postgres",
    };
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(name);
    // Only this run's pictures.
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

struct Console<'a> {
    browser: Browser,
    demo: &'a Demo,
    shots: PathBuf,
    taken: std::cell::Cell<usize>,
}

impl Console<'_> {
    fn shot(&self, name: &str) {
        let number = self.taken.get() + 1;
        self.taken.set(number);
        let path = self.shots.join(format!("{number:02}-{name}.png"));
        self.browser.screenshot(&path);
        eprintln!("screenshot: {}", path.display());
    }

    fn go(&self, hash: &str) {
        self.browser
            .open(&format!("{}/console/{hash}", self.demo.base));
        self.wait_loaded();
    }

    /// Waits until the page's content is drawn (no "Loading…" left).
    fn wait_loaded(&self) {
        self.browser.wait_until(
            "the console page to load",
            "const p = document.getElementById('page'); const l = document.getElementById('login-view');\
             return document.readyState === 'complete' && (!l.hidden || (p.children.length > 0 && !p.textContent.startsWith('Loading')));",
        );
    }

    fn login(&self, user: &str, token: &str) {
        self.browser.open(&format!("{}/console/", self.demo.base));
        self.browser.wait_until(
            "the login form",
            "return !document.getElementById('login-view').hidden;",
        );
        self.browser.clear("#login-user");
        self.browser.type_into("#login-user", user);
        self.browser.type_into("#login-token", token);
        self.browser.click("#login-submit");
        self.browser.wait_for_text("#who-name", user);
        self.wait_loaded();
        self.check_labels();
    }

    fn logout(&self) {
        self.browser.click("#logout");
        self.browser.wait_until(
            "the login form after logout",
            "return !document.getElementById('login-view').hidden;",
        );
    }

    /// The sections the menu offers.
    fn sections(&self) -> Vec<String> {
        let shown = self.browser.script(
            "return [...document.querySelectorAll('#sections li')].filter(li => !li.hidden).map(li => li.textContent.trim());",
        );
        shown
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect()
    }

    /// Types a reason into the payer page's block form and blocks (the confirmation accepted).
    fn type_reason_and_block(&self, reason: &str) {
        self.browser.type_into("#block-reason", reason);
        self.browser.script("window.confirm = () => true;");
        self.browser.click_button("Block this payer");
    }

    /// Every input, select and text area has a label; every clickable control is a button or
    /// a link; there is one h1 and a main landmark.
    fn check_labels(&self) {
        let problems = self.browser.script(
            "const problems = [];\
             for (const e of document.querySelectorAll('input, select, textarea')) {\
               if (e.type === 'hidden') continue;\
               const labelled = (e.id && document.querySelector(`label[for=\"${e.id}\"]`)) || e.getAttribute('aria-label') || e.closest('label');\
               if (!labelled) problems.push(`unlabelled ${e.tagName} ${e.id || e.name}`);\
             }\
             for (const e of document.querySelectorAll('[onclick], div[role=button], span[role=button]')) problems.push(`not a button: ${e.outerHTML.slice(0, 80)}`);\
             if (!document.querySelector('main')) problems.push('no main landmark');\
             const visible = [...document.querySelectorAll('h1')].filter(h => h.offsetParent !== null);\
             if (visible.length !== 1) problems.push(`${visible.length} visible h1`);\
             return problems;",
        );
        assert_eq!(
            problems,
            json!([]),
            "accessibility basics on {}",
            self.browser.url()
        );
    }
}

fn the_console_in_headless_chromium(kind: BackendKind) {
    let Some(browser) = Browser::start() else {
        return;
    };
    let backend = kind.fresh();
    let demo = start_demo(&backend);
    let shots = screenshot_dir(kind);
    eprintln!("console screenshots in {}", shots.display());
    let tokens = [
        ("admin", "admin", demo.token.clone()),
        ("fatuma", "finance", demo.add_user("fatuma", "finance")),
        ("faith", "finance", demo.add_user("faith", "finance")),
        ("sam", "support", demo.add_user("sam", "support")),
        ("aud", "auditor", demo.add_user("aud", "auditor")),
        ("pat", "provisioning", demo.add_user("pat", "provisioning")),
    ];
    let token = |user: &str| {
        tokens
            .iter()
            .find(|(name, _, _)| *name == user)
            .map(|(_, _, token)| token.clone())
            .unwrap()
    };
    // A fraud case: five wrong codes lock the demo's envelope.
    for row in 4..9 {
        let (status, answer) = demo.api(
            "POST",
            "/sms/simulate",
            Some(
                json!({ "from": SMS_PHONE, "text": format!("BAL {SMS_ENVELOPE} {row} 000"),
                         "message_id": format!("wrong-{row}") }),
            ),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let console = Console {
        browser,
        demo: &demo,
        shots,
        taken: std::cell::Cell::new(0),
    };

    // The login page; a wrong token is refused with a message.
    console.browser.open(&format!("{}/console/", demo.base));
    console.browser.wait_until(
        "the login form",
        "return !document.getElementById('login-view').hidden;",
    );
    console.check_labels();
    console.browser.type_into("#login-user", "sam");
    console.browser.type_into("#login-token", &"0".repeat(64));
    console.browser.click("#login-submit");
    console
        .browser
        .wait_for_text("#login-error", "Login failed");
    console.shot("login-refused");

    // Each role logs in and sees what it may use.
    for (user, role, secret) in &tokens {
        console.login(user, secret);
        let sections = console.sections();
        let everyday = [
            "Find a customer",
            "Fraud queue",
            "Finance",
            "Purses",
            "SMS",
            "Wallets",
            "Microchecks",
        ];
        let expected: Vec<&str> = match *role {
            "admin" | "auditor" => everyday.into_iter().chain(["Audit log"]).collect(),
            "provisioning" => vec!["Purses", "Wallets"],
            _ => everyday.to_vec(),
        };
        assert_eq!(
            sections, expected,
            "{user} ({role}) sees the sections of its role"
        );
        console.shot(&format!("home-{role}-{user}"));
        // The session cookie is not readable by the page's scripts.
        let cookies = console.browser.script("return document.cookie;");
        assert!(
            !cookies.as_str().unwrap_or("").contains("offpay_console"),
            "{cookies}"
        );
        console.logout();
    }

    // Support: Tab to the search box, type a phone with spaces, Enter.
    console.login("sam", &token("sam"));
    console.go("#/search");
    console
        .browser
        .script("document.activeElement.blur(); window.scrollTo(0, 0);");
    let mut reached = false;
    for _ in 0..TABS_MAX {
        console.browser.press(KEY_TAB);
        if console.browser.script("return document.activeElement.id;") == json!("search-q") {
            reached = true;
            break;
        }
    }
    assert!(reached, "the search box is reachable with Tab");
    let focus_visible = console
        .browser
        .script("return document.activeElement.matches(':focus-visible');");
    assert_eq!(focus_visible, json!(true), "keyboard focus is visible");
    console.browser.press("+254 700 000 001");
    console.browser.press(KEY_ENTER);
    console.browser.wait_until(
        "search results",
        "return !!document.getElementById('search-results') || document.body.textContent.includes('Nothing matches');",
    );
    console.check_labels();
    console.shot("search-by-phone");
    let results = console.browser.text("#search-results");
    assert!(results.contains(SMS_ACCOUNT), "{results}");

    // The customer view: every rail's object for the phone, balances with currency, flags.
    console.browser.click("a[href^='#/customer/']");
    console.wait_loaded();
    console
        .browser
        .wait_for_text("#page h1", "Customer +254700000001");
    let page = console.browser.text("#page");
    assert!(page.contains(&format!("Account {SMS_ACCOUNT}")), "{page}");
    assert!(
        page.contains("KES"),
        "balances carry their currency: {page}"
    );
    assert!(
        page.contains("locked after repeated wrong codes"),
        "the open flag: {page}"
    );
    console.check_labels();
    console.shot("customer-view");

    // Its statement, with counterparties.
    console
        .browser
        .click(&format!("a[href='#/account/sms%3A{SMS_ACCOUNT}']"));
    console.wait_loaded();
    console
        .browser
        .wait_for_text("#page h1", "Statement of sms:");
    let statement = console.browser.text("#page");
    assert!(
        statement.contains("sms:901020377865"),
        "counterparty: {statement}"
    );
    // The demo's middle-level payment; the seed's own KES 200,000.00 SMS is refused, above what
    // the demo operator lets the seed envelope's printed checksums pay (`printed_recipe_max`).
    assert!(statement.contains("1,500.00 KES"), "{statement}");
    assert!(!statement.contains("200,000.00 KES"), "{statement}");
    console.check_labels();
    console.shot("statement");

    // The fraud queue: the case, its evidence and culprit; unlock the envelope, clear the case.
    console.go("#/fraud");
    let case = console
        .browser
        .wait_for_text("#fraud-cases", "envelope_locked".replace('_', " ").as_str());
    assert!(case.contains(SMS_ENVELOPE), "the culprit is named: {case}");
    assert!(case.contains(SMS_ACCOUNT), "{case}");
    console.check_labels();
    console.shot("fraud-queue");
    console
        .browser
        .click_button(&format!("Unlock envelope {SMS_ENVELOPE}"));
    console.browser.wait_for_text("#flash", "unlocked");
    console.wait_loaded();
    console.browser.type_into(
        ".case-note",
        "wrong codes typed by the holder; envelope unlocked at the desk",
    );
    // Keyboard: focus the button and press Enter.
    console.browser.script(
        "[...document.querySelectorAll('.fraud-case button')].find(b => b.textContent === 'Clear the case').focus();",
    );
    console.browser.press(KEY_ENTER);
    console.browser.wait_for_text("#flash", "cleared");
    console.shot("fraud-case-cleared");
    let (_, envelope) = demo.api("GET", &format!("/sms/envelopes/{SMS_ENVELOPE}"), None);
    assert_eq!(envelope["status"], "active", "{envelope}");
    let (_, cleared) = demo.api("GET", "/fraud?state=cleared", None);
    assert!(cleared.to_string().contains(SMS_ENVELOPE), "{cleared}");
    console.logout();

    // Finance: a float above the approval amount waits for a second user.
    console.login("fatuma", &token("fatuma"));
    console.go("#/finance");
    let conservation = console.browser.text("#conservation");
    assert!(
        conservation.contains("every currency sums to zero"),
        "{conservation}"
    );
    console.browser.type_into("#float-phone", &demo.agent_phone);
    console.browser.type_into("#float-amount", "150000.00");
    console.browser.type_into("#float-memo", "weekly top-up");
    console
        .browser
        .click("form[aria-label='Float a purse'] button[type=submit]");
    let held = console.browser.wait_for_text(
        "section[aria-label='Float a purse'] [role=status]",
        "second finance user",
    );
    assert!(held.contains("150,000.00 KES"), "{held}");
    console.shot("float-held-for-approval");
    // The requester sees it waiting but cannot approve it (the server refuses).
    console.logout();

    console.login("faith", &token("faith"));
    console.go("#/finance");
    console
        .browser
        .wait_for_text("#approvals", "150,000.00 KES");
    console.check_labels();
    console.shot("approvals-waiting");
    console.browser.click("#approvals button[data-approval]");
    console.browser.wait_until(
        "the re-authentication dialog",
        "return document.getElementById('reauth').open;",
    );
    console.check_labels();
    console.shot("approval-reauthentication");
    // A wrong token: refused, nothing applied.
    console.browser.type_into("#reauth-token", &token("fatuma"));
    console.browser.click("#reauth-confirm");
    console
        .browser
        .wait_for_text("#approvals [role=alert]", "token again");
    console.browser.click("#approvals button[data-approval]");
    console.browser.wait_until(
        "the re-authentication dialog",
        "return document.getElementById('reauth').open;",
    );
    console.browser.type_into("#reauth-token", &token("faith"));
    console.browser.click("#reauth-confirm");
    console
        .browser
        .wait_for_text("#flash", "Approved and executed");
    console.shot("float-approved");
    let (_, purse) = demo.api(
        "GET",
        &format!("/purse/purses/{}", demo.agent_phone.replace('+', "%2B")),
        None,
    );
    assert!(
        purse["queued_credits"].to_string().contains("150000"),
        "the float waits for the agent's next sync: {purse}"
    );
    // The chart of suspense and fees balances is drawn (or says there is nothing yet).
    let chart = console
        .browser
        .text("section[aria-labelledby='chart-heading']");
    assert!(
        chart.contains("fees") || chart.contains("No suspense"),
        "{chart}"
    );
    console.browser.script(
        "document.querySelector(\"section[aria-labelledby='chart-heading']\").scrollIntoView();",
    );
    console.shot("finance-suspense-and-fees-chart");
    console.logout();

    // The auditor: the audit log with its chain verified, the console's actions in it.
    console.login("aud", &token("aud"));
    console.go("#/audit");
    let verified = console
        .browser
        .wait_for_text("#audit-verified", "Chain verified");
    assert!(verified.contains("entries check out"), "{verified}");
    console.check_labels();
    console.shot("audit-log-verified");
    // The rail pages, as the auditor reads them.
    for (hash, title) in [
        ("#/purse", "Purses"),
        ("#/sms", "SMS payments"),
        ("#/wallets", "Wallet office"),
        ("#/microcheck", "Microchecks"),
    ] {
        console.go(hash);
        console.browser.wait_for_text("#page h1", title);
        let page = console.browser.text("#page");
        assert!(!page.contains("Something went wrong"), "{hash}: {page}");
        if hash == "#/sms" {
            // The SMS page shows no amounts: the outbox gives a text's length, never the text
            // (it may hold a TAN).
            assert!(page.contains("characters (text not shown)"), "{page}");
            assert!(!page.contains("TAN"), "{page}");
        } else {
            assert!(
                page.contains("KES"),
                "{hash} shows amounts with their currency: {page}"
            );
        }
        if hash == "#/purse" {
            assert!(page.contains("Current scheme-key epoch"), "{page}");
        }
        console.check_labels();
        console.shot(&format!("rail-{}", &hash[2..]));
    }
    let (_, log) = demo.api("GET", "/audit?limit=500", None);
    let text = log.to_string();
    assert!(
        text.contains("via console"),
        "console actions are audited as such"
    );
    // The auditor reads a microcheck payer but is offered no block.
    let (_, payers) = demo.api("GET", "/microcheck/payers", None);
    let payer = payers["items"][0]["name"].as_str().unwrap().to_owned();
    console.go(&format!("#/microcheck/payer/{payer}"));
    console
        .browser
        .wait_for_text("#page h1", &format!("Payer {payer}"));
    let page = console.browser.text("#page");
    assert!(!page.contains("Block this payer"), "{page}");
    console.logout();

    // Support: the microcheck rail's deposits and strikes, a payer blocked (a stolen phone) and
    // unblocked; a purse's syncs.
    console.login("sam", &token("sam"));
    console.go("#/microcheck");
    let deposits = console
        .browser
        .wait_for_text("section[aria-labelledby='deposits-heading']", &payer);
    assert!(
        deposits.contains("paid"),
        "the demo's purchase was paid: {deposits}"
    );
    assert!(deposits.contains("0.83 KES"), "{deposits}");
    let strikes = console
        .browser
        .text("section[aria-labelledby='strikes-heading']");
    assert!(strikes.contains("no payer has a strike"), "{strikes}");
    console.check_labels();
    console.shot("microcheck-deposits-and-strikes");
    console.go(&format!("#/microcheck/payer/{payer}"));
    console.browser.wait_for_text(
        "section[aria-labelledby='payer-deposits-heading']",
        "0.83 KES",
    );
    console.check_labels();
    console.type_reason_and_block("phone stolen, reported at the desk");
    console
        .browser
        .wait_for_text("#flash", &format!("Payer {payer} is blocked"));
    console.wait_loaded();
    let state = console
        .browser
        .wait_for_text("#payer-state", "phone stolen");
    assert!(state.contains("blocked"), "{state}");
    console.shot("microcheck-payer-blocked");
    let (_, view) = demo.api("GET", &format!("/microcheck/payers/{payer}"), None);
    assert_eq!(view["blocked"], true, "{view}");
    console.go("#/microcheck");
    let strikes = console
        .browser
        .wait_for_text("section[aria-labelledby='strikes-heading']", "phone stolen");
    assert!(strikes.contains(&payer), "{strikes}");
    console.shot("microcheck-strikes-blocked-payer");
    console.go(&format!("#/microcheck/payer/{payer}"));
    console.browser.click_button("Unblock this payer");
    console
        .browser
        .wait_for_text("#flash", &format!("Payer {payer} is unblocked"));
    let (_, view) = demo.api("GET", &format!("/microcheck/payers/{payer}"), None);
    assert_eq!(view["blocked"], false, "{view}");
    let (_, log) = demo.api("GET", "/audit?user=sam&limit=500", None);
    let text = log.to_string();
    assert!(
        text.contains(&format!("/microcheck/payers/{payer}/block")),
        "the block is audited: {text}"
    );
    console.go(&format!("#/purse/{}", demo.agent_phone.replace('+', "%2B")));
    let syncs = console.browser.wait_for_text(
        "section[aria-labelledby='syncs-heading']",
        "Balance reported",
    );
    assert!(syncs.contains("KES"), "{syncs}");
    console.check_labels();
    console.browser.script(
        "document.querySelector(\"section[aria-labelledby='syncs-heading']\").scrollIntoView();",
    );
    console.shot("purse-syncs");
    console.logout();
    eprintln!(
        "{} console screenshots in {}",
        console.taken.get(),
        console.shots.display()
    );
}

offpay_test_support::on_every_backend!(the_console_in_headless_chromium);
