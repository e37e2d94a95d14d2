//! Rail 2 through a real Kannel: bearerbox + smsbox with Kannel's fake SMSC, all on loopback in
//! a temporary directory. A middle-level payment is injected by `fakesmsc`, reaches the server
//! through smsbox's `get-url`, and the replies (payer's confirmation, payee's notice) go out
//! through the server's durable queue and Kannel's `sendsms`, and are read back from `fakesmsc`.
//!
//! Kannel comes from Debian (`kannel`, `kannel-extras`); `scripts/test.sh` installs them. Without
//! them this test fails, unless `OFFPAY_ALLOW_SKIP_KANNEL=1` is set (a developer machine).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Amounts in minor units are written `whole_cents` (`1500_00` is KES 1500.00).
#![allow(clippy::inconsistent_digit_grouping)]

mod kannel_common;
mod sms_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kannel_common::*;
use sms_common::*;

struct Ports {
    server: u16,
    admin: u16,
    smsbox: u16,
    smsc: u16,
    sendsms: u16,
}

fn kannel_conf(directory: &Path, ports: &Ports, gateway_token: &str) -> String {
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
        admin = ports.admin,
        smsbox = ports.smsbox,
        smsc = ports.smsc,
        sendsms = ports.sendsms,
        server = ports.server,
        bearerbox_log = log("bearerbox.log"),
        smsbox_log = log("smsbox.log"),
    )
}

/// Collects every line a process prints.
fn collect(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
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
    lines
}

fn a_middle_level_payment_goes_through_a_real_kannel(kind: BackendKind) {
    if !kannel_installed() {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let ports = Ports {
        server: free_port(),
        admin: free_port(),
        smsbox: free_port(),
        smsc: free_port(),
        sendsms: free_port(),
    };
    let credentials = directory.path().join("kannel.credentials");
    std::fs::write(&credentials, "offpay:offpay-test-password\n").unwrap();
    std::fs::write(
        data_dir.join("sms.toml"),
        format!(
            "[kannel]\nsendsms_url = \"http://127.0.0.1:{}/cgi-bin/sendsms\"\ncredentials_file = \"{}\"\ndlr_base_url = \"http://127.0.0.1:{}\"\nsender = \"12345\"\n",
            ports.sendsms,
            credentials.display(),
            ports.server
        ),
    )
    .unwrap();
    let server = TestServer::start_in(&data_dir, &format!("127.0.0.1:{}", ports.server), kind);
    let envelope = server.seed_world();
    let config = directory.path().join("kannel.conf");
    std::fs::write(
        &config,
        kannel_conf(directory.path(), &ports, &server.gateway_token),
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
    wait_for_port(ports.smsbox);
    let _smsbox = Killed(
        Command::new(SMSBOX)
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smsbox"),
    );
    wait_for_port(ports.sendsms);
    wait_for_port(ports.smsc);
    let text = grid_pay(&envelope, "PAYG", PAYEE, &kes("1500"), 2);
    let mut fakesmsc = Killed(
        Command::new(FAKESMSC)
            .args([
                "-H",
                "127.0.0.1",
                "-r",
                &ports.smsc.to_string(),
                "-i",
                "0.5",
                "-m",
                "1",
            ])
            .arg(format!("{PAYER_PHONE} 12345 text {text}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fakesmsc"),
    );
    let lines = collect(&mut fakesmsc.0);
    // fakesmsc prints what the SMSC receives ("sender receiver text message").
    let deadline = Instant::now() + KANNEL_WAIT_MAX;
    let (confirmation, notice) = loop {
        let seen = lines.lock().unwrap().clone();
        let find = |phone: &str, prefix: &str| {
            seen.iter()
                .find(|line| line.contains(phone) && line.contains(prefix))
                .cloned()
        };
        if let (Some(confirmation), Some(notice)) = (
            find(PAYER_PHONE, "PAID PAYG 26399912345 2 "),
            find(PAYEE_PHONE, "RECEIVED KES 1500.00 FROM 111100002222"),
        ) {
            break (confirmation, notice);
        }
        if Instant::now() > deadline {
            let log = |name: &str| {
                std::fs::read_to_string(directory.path().join(name)).unwrap_or_default()
            };
            panic!(
                "no replies from Kannel; fakesmsc said:\n{}\nsmsbox log:\n{}\nbearerbox log:\n{}",
                seen.join("\n"),
                log("smsbox.log"),
                log("bearerbox.log")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (row, bank_tan) = bank_row(&confirmation);
    assert_eq!((row, bank_tan), (20, tan(&envelope, 20)), "{confirmation}");
    assert!(notice.contains("REF "), "{notice}");
    assert_eq!(server.balance(PAYEE), 1500_00);
    assert_eq!(server.balance(PAYER), 1_000_000_00 - 1500_00 - 15_00);
    // Both replies left the queue and were accepted by sendsms.
    let deadline = Instant::now() + KANNEL_WAIT_MAX;
    while !server.outbox().is_empty() {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = server.get("/api/v1/sms/sent")["sent"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
}

offpay_test_support::on_every_backend!(a_middle_level_payment_goes_through_a_real_kannel,);
