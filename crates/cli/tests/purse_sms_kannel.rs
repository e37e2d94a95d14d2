//! Rail 1 through a real Kannel, end to end with the `offpay` binary: a purse prints its upload
//! as SMS texts (`offpay purse sms-upload`), `fakesmsc` injects them (one before the server is
//! killed and restarted, the rest after), smsbox's `get-url` brings them to the server, the
//! answer's texts go out through the durable SMS outbox and Kannel's `sendsms`, come back out of
//! `fakesmsc`, and the purse applies them (`offpay purse sms-answer`). Then a statement by SMS
//! (`offpay purse statement-sms`) reaches the purse's own phone, and its replay gets nothing.
//!
//! Kannel comes from Debian (`kannel`, `kannel-extras`). Without it this test fails, unless
//! `OFFPAY_ALLOW_SKIP_KANNEL=1` is set (then it says SKIPPED and returns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kannel_common;
mod purse_common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kannel_common::*;
use purse_common::{Backend, BackendKind, Cli};

const AGENT: &str = "+254700000061";
const CUSTOMER: &str = "+254700000062";
/// The operator's short code (Kannel's sender of the answers).
const SHORT_CODE: &str = "12345";

/// `offpay serve` on a fixed port (so that Kannel's get-url reaches it again after a restart).
struct Serve {
    child: Killed,
    base: String,
}

fn serve(data_dir: &Path, port: u16, backend: &Backend) -> Serve {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offpay"));
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("OFFPAY_LOG", "warn")
        .env_remove("OFFPAY_PURSE_OPERATOR")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = backend.database_url() {
        command.args(["--database-url", url]);
    }
    let child = Killed(command.spawn().expect("start offpay serve"));
    wait_for_port(port);
    let deadline = Instant::now() + KANNEL_WAIT_MAX;
    while !data_dir.join("sms-gateway.token").exists() || !data_dir.join("admin.token").exists() {
        assert!(Instant::now() < deadline, "the server wrote no token files");
        std::thread::sleep(Duration::from_millis(100));
    }
    Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

fn token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Purse syncs the server counted as accepted (`offpay_syncs_total{rail="purse",outcome="ok"}`).
fn purse_syncs_ok(server: &Serve, data_dir: &Path) -> u64 {
    let text = offpay_test_support::process::http()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(token(data_dir))
        .send()
        .and_then(|response| response.text())
        .unwrap_or_default();
    text.lines()
        .filter(|line| {
            line.starts_with("offpay_syncs_total")
                && line.contains("rail=\"purse\"")
                && line.contains("outcome=\"ok\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn kannel_conf(directory: &Path, ports: &[u16; 5], gateway_token: &str) -> String {
    let [server, admin, smsbox, smsc, sendsms] = ports;
    let log = |name: &str| directory.join(name).display().to_string();
    format!(
        r#"group = core
admin-port = {admin}
admin-password = offpay-test
admin-interface = 127.0.0.1
admin-allow-ip = 127.0.0.1
smsbox-port = {smsbox}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = "{bearerbox_log}"
log-level = 1
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {smsc}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = "{smsbox_log}"
log-level = 1

group = sendsms-user
username = offpay
password = offpay-test-password
max-messages = 3
concatenation = true

group = sms-service
keyword = default
catch-all = true
get-url = "http://127.0.0.1:{server}/sms/kannel/{gateway_token}/inbound?id=%I&from=%p&text=%a"
omit-empty = true
max-messages = 0
"#,
        bearerbox_log = log("bearerbox.log"),
        smsbox_log = log("smsbox.log"),
    )
}

/// `fakesmsc` in interactive mode: each line written to it is one inbound SMS; every line it
/// prints (the SMS Kannel sent) is collected.
struct FakeSmsc {
    _child: Killed,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    smsbox_log: std::path::PathBuf,
}

impl FakeSmsc {
    fn start(port: u16, smsbox_log: std::path::PathBuf) -> FakeSmsc {
        let mut child = Command::new(FAKESMSC)
            .args(["-H", "127.0.0.1", "-r", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fakesmsc");
        let stdin = child.stdin.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        FakeSmsc {
            _child: Killed(child),
            stdin,
            lines,
            smsbox_log,
        }
    }

    /// Messages smsbox has taken from the SMSC so far.
    fn serviced(&self) -> usize {
        std::fs::read_to_string(&self.smsbox_log)
            .unwrap_or_default()
            .matches("Starting to service <")
            .count()
    }

    /// Messages whose get-url call the server has answered (Kannel logs "No reply sent" once
    /// the server's empty answer came back, that is once the server committed the text).
    fn answered(&self) -> usize {
        std::fs::read_to_string(&self.smsbox_log)
            .unwrap_or_default()
            .matches("No reply sent")
            .count()
    }

    /// Injects one SMS and waits until smsbox has taken it (fakesmsc reads its input one
    /// message at a time).
    fn send(&mut self, from: &str, text: &str) {
        let before = self.serviced();
        writeln!(self.stdin, "{from} {SHORT_CODE} text {text}").unwrap();
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + KANNEL_WAIT_MAX;
        while self.serviced() <= before {
            assert!(Instant::now() < deadline, "smsbox did not take {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The texts Kannel sent to `to` that contain `marker`, in the order they came.
    fn received(&self, to: &str, marker: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| {
                // fakesmsc prints "... <sender receiver text message>".
                let rest = line.split_once(&format!(" {to} text "))?.1;
                let rest = rest.strip_suffix('>').unwrap_or(rest);
                rest.contains(marker).then(|| rest.to_owned())
            })
            .collect()
    }

    fn wait_for(&self, to: &str, marker: &str, count: usize, logs: &Path) -> Vec<String> {
        let deadline = Instant::now() + KANNEL_WAIT_MAX;
        loop {
            let found = self.received(to, marker);
            if found.len() >= count {
                return found;
            }
            if Instant::now() > deadline {
                let log = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
                panic!(
                    "{count} texts with {marker:?} to {to} did not come; fakesmsc said:\n{}\nsmsbox log:\n{}",
                    self.lines.lock().unwrap().join("\n"),
                    log("smsbox.log")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn a_purse_syncs_by_sms_through_a_real_kannel_across_a_server_restart(kind: BackendKind) {
    if !kannel_installed() {
        return;
    }
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let [server_port, _, smsbox_port, smsc_port, sendsms_port] = ports;
    let credentials = directory.path().join("kannel.credentials");
    std::fs::write(&credentials, "offpay:offpay-test-password\n").unwrap();
    std::fs::write(
        data_dir.join("sms.toml"),
        format!(
            "[kannel]\nsendsms_url = \"http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms\"\ncredentials_file = \"{}\"\nsender = \"{SHORT_CODE}\"\n",
            credentials.display(),
        ),
    )
    .unwrap();
    let mut server = serve(&data_dir, server_port, &backend);
    let gateway_token = std::fs::read_to_string(data_dir.join("sms-gateway.token"))
        .unwrap()
        .trim()
        .to_owned();
    let config = directory.path().join("kannel.conf");
    std::fs::write(
        &config,
        kannel_conf(directory.path(), &ports, &gateway_token),
    )
    .unwrap();
    let _bearerbox = Killed(
        Command::new(BEARERBOX)
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bearerbox"),
    );
    wait_for_port(smsbox_port);
    let _smsbox = Killed(
        Command::new(SMSBOX)
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smsbox"),
    );
    wait_for_port(sendsms_port);
    wait_for_port(smsc_port);
    let mut smsc = FakeSmsc::start(smsc_port, directory.path().join("smsbox.log"));

    // Two purses, a float for the agent, a payment to the customer.
    let cli = Cli::new(directory.path());
    let agent = directory.path().join("agent.purse");
    let customer = directory.path().join("customer.purse");
    let token_file = data_dir.join("admin.token");
    for (phone, file, kind) in [(AGENT, &agent, "--agent"), (CUSTOMER, &customer, "")] {
        let mut args = vec![
            "admin",
            "--server",
            &server.base,
            "--token-file",
            token_file.to_str().unwrap(),
            "purse",
            "provision",
            "--phone",
            phone,
            "--out",
            file.to_str().unwrap(),
        ];
        if !kind.is_empty() {
            args.push(kind);
        }
        cli.json(&args);
    }
    cli.json(&[
        "admin",
        "--server",
        &server.base,
        "--token-file",
        token_file.to_str().unwrap(),
        "purse",
        "float",
        "--phone",
        AGENT,
        "--amount",
        "300",
    ]);
    let file = |path: &Path| path.to_str().unwrap().to_owned();
    cli.purse(&customer, &["sync", "--server", &server.base]);
    cli.purse(&agent, &["sync", "--server", &server.base]);
    for _ in 0..3 {
        cli.pay((&agent, AGENT), (&customer, CUSTOMER), "10");
    }

    // Round 1 by SMS: the float's entry and three payments, in several texts.
    let upload = cli.purse(&agent, &["sms-upload"]);
    let texts: Vec<String> = upload["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_owned())
        .collect();
    assert!(texts.iter().all(|text| text.starts_with("OP1 ")));
    assert!(
        texts.len() >= 2,
        "a restart between parts needs parts: {texts:?}"
    );
    // The first part, then a restart: what the server acknowledged survives it.
    let before = smsc.answered();
    smsc.send(AGENT, &texts[0]);
    let deadline = Instant::now() + KANNEL_WAIT_MAX;
    while smsc.answered() <= before {
        assert!(Instant::now() < deadline, "the first part was not answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server.child);
    server = serve(&data_dir, server_port, &backend);
    for text in texts[1..].iter().rev() {
        smsc.send(AGENT, text);
    }
    smsc.send(AGENT, &texts[1]); // a gateway's duplicate
    let first = smsc.wait_for(AGENT, "OP1 ", 1, directory.path());
    let total: usize = first[0]
        .split(' ')
        .nth(2)
        .and_then(|position| position.split_once('/'))
        .and_then(|(_, total)| total.parse().ok())
        .unwrap();
    let answer = smsc.wait_for(AGENT, "OP1 ", total, directory.path());
    let applied = cli.run_with_input(
        &["purse", "--file", &file(&agent), "sms-answer", "--json"],
        Some(&format!("{}\n", answer.join("\n"))),
    );
    assert!(
        applied.status.success(),
        "{}{}\nanswer texts: {answer:?}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    let applied: serde_json::Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(applied["balance"], "270.00", "{applied}");
    assert_eq!(applied["unacknowledged"], 0, "{applied}");

    // A payment, then round 2 by SMS acknowledges everything.
    cli.pay((&agent, AGENT), (&customer, CUSTOMER), "40");
    let upload = cli.purse(&agent, &["sms-upload"]);
    let texts: Vec<String> = upload["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_owned())
        .collect();
    let received_before = smsc.received(AGENT, "OP1 ").len();
    for text in &texts {
        smsc.send(AGENT, text);
    }
    let first = smsc.wait_for(AGENT, "OP1 ", received_before + 1, directory.path());
    let total: usize = first[received_before]
        .split(' ')
        .nth(2)
        .and_then(|position| position.split_once('/'))
        .and_then(|(_, total)| total.parse().ok())
        .unwrap();
    let answer = smsc.wait_for(AGENT, "OP1 ", received_before + total, directory.path());
    let applied = cli.run_with_input(
        &["purse", "--file", &file(&agent), "sms-answer", "--json"],
        Some(&format!("{}\n", answer[received_before..].join("\n"))),
    );
    assert!(
        applied.status.success(),
        "{}{}\nanswer texts: {answer:?}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    let applied: serde_json::Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(applied["unacknowledged"], 0, "{applied}");
    assert_eq!(applied["balance"], "230.00", "{applied}");
    // Two syncs since the restart (the first message's, completed after it, and this one): the
    // repeated part made none.
    assert_eq!(purse_syncs_ok(&server, &data_dir), 2);

    // A statement by SMS, to the purse's own phone; its replay gets nothing more.
    let request = cli.purse(&agent, &["statement-sms"]);
    let text = request["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("OP1 ST "), "{text}");
    smsc.send(CUSTOMER, &text); // a spoofed sender: the statement still goes to the purse
    let statement = smsc.wait_for(AGENT, "BALANCE", 1, directory.path());
    assert!(statement[0].contains("KES 230.00"), "{statement:?}");
    smsc.send(AGENT, &text);
    let next = cli.purse(&agent, &["statement-sms"]);
    smsc.send(AGENT, next["text"].as_str().unwrap());
    let statements = smsc.wait_for(AGENT, "BALANCE", 2, directory.path());
    assert_eq!(
        statements.len(),
        2,
        "the replay got nothing: {statements:?}"
    );
    assert!(
        smsc.received(CUSTOMER, "").is_empty(),
        "nothing to the spoofed number"
    );
    let (status, shadow) = {
        let response = offpay_test_support::process::http()
            .get(format!(
                "{}/api/v1/purse/purses/{}",
                server.base,
                AGENT.replace('+', "%2B")
            ))
            .bearer_auth(token(&data_dir))
            .send()
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<serde_json::Value>().unwrap(),
        )
    };
    assert_eq!(status, 200, "{shadow}");
    assert_eq!(shadow["balance"], "230.00", "{shadow}");
    assert_eq!(shadow["blocked"], false, "{shadow}");
}

offpay_test_support::on_every_backend!(
    a_purse_syncs_by_sms_through_a_real_kannel_across_a_server_restart,
);
