//! Rail 4 end to end on real processes: `offpay serve`, `offpay microcheck serve` (the machine)
//! and `offpay microcheck buy` (the payer), over loopback. The PA issues credentials, the machine sells with
//! no server running, deposits later; refusals carry their reasons; fraud patterns raise flags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use offpay_keynote::PrivateKey;
use offpay_microcheck::wire::{Message, WIRE_VERSION};
use offpay_test_support::{Backend, BackendKind, ServerProcess};
use serde_json::{Value, json};

/// Upper bound on any wait in these tests.
const WAIT_MAX: Duration = Duration::from_secs(30);

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn offpay() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offpay"));
    command
        .env("OFFPAY_LOG", "warn")
        .env_remove("OFFPAY_SERVER");
    command
}

/// Starts a process and waits for `marker ADDRESS` on its stderr.
fn spawn_announcing(mut command: Command, marker: &str) -> (Process, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    let marker = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(&marker).nth(1) {
                let _ = sender.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let address = receiver
        .recv_timeout(WAIT_MAX)
        .expect("the process announces its address");
    (Process(child), address)
}

struct Server {
    _process: ServerProcess,
    url: String,
    token_file: PathBuf,
}

fn start_server(data: &Path, backend: &Backend) -> Server {
    let process = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_offpay")),
        data,
        backend,
        &[],
        &["OFFPAY_SERVER"],
    );
    Server {
        url: process.base.clone(),
        token_file: data.join("admin.token"),
        _process: process,
    }
}

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run offpay")
}

fn json_of(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "not JSON: {text}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn admin(server: &Server, args: &[&str]) -> Value {
    let output = run(offpay()
        .args(["admin", "--json", "--server", &server.url, "--token-file"])
        .arg(&server.token_file)
        .args(args));
    assert!(
        output.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    json_of(&output)
}

fn microcheck(args: &[&str]) -> (bool, Value) {
    let output = run(offpay().args(["microcheck", "--json"]).args(args));
    (output.status.success(), json_of(&output))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Keys, registration and credentials for one payer and any number of machines.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn payer(&self, server: &Server, name: &str, extra: &[&str]) -> PathBuf {
        let file = self.file(&format!("{name}.json"));
        let (ok, answer) = microcheck(&["payer", "keygen", "--file", path(&file), "--name", name]);
        assert!(ok, "{answer}");
        let key = answer["key"].as_str().unwrap().to_owned();
        let mut args = vec![
            "microcheck",
            "payer",
            "register",
            "--name",
            name,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        admin(server, &args);
        admin(
            server,
            &[
                "transfer",
                "--id",
                &format!("fund-{name}"),
                "--from",
                "operator:float",
                "--to",
                &format!("mc:payer:{name}"),
                "--amount",
                "20.00",
            ],
        );
        let (ok, answer) = microcheck(&[
            "payer",
            "refresh",
            "--file",
            path(&file),
            "--server",
            &server.url,
        ]);
        assert!(ok, "{answer}");
        assert!(
            answer["credentials"].as_array().unwrap().len() >= 2,
            "{answer}"
        );
        file
    }

    fn merchant(&self, server: &Server, id: &str, extra: &[&str]) -> PathBuf {
        let file = self.file(&format!("{id}.json"));
        let (ok, answer) = microcheck(&["merchant", "keygen", "--file", path(&file), "--id", id]);
        assert!(ok, "{answer}");
        let key = answer["key"].as_str().unwrap().to_owned();
        let mut args = vec![
            "microcheck",
            "merchant",
            "register",
            "--id",
            id,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        admin(server, &args);
        let (ok, answer) = microcheck(&[
            "merchant",
            "refresh",
            "--file",
            path(&file),
            "--server",
            &server.url,
        ]);
        assert!(ok, "{answer}");
        file
    }

    fn machine(&self, merchant_file: &Path, extra: &[&str]) -> (Process, String) {
        let stock = self.file("stock.json");
        std::fs::write(&stock, json!([
            { "item": 1, "product": "Pocari Sweat", "product_class": "drink", "price": "0.83", "count": 20 },
            { "item": 2, "product": "Cigars", "product_class": "adult", "price": "3.00", "count": 5 },
            { "item": 3, "product": "Radio", "product_class": "gadget", "price": "25.00", "count": 5 },
        ]).to_string()).unwrap();
        let mut command = offpay();
        command
            .args([
                "microcheck",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--stock",
                path(&stock),
                "--merchant-file",
            ])
            .arg(merchant_file)
            .args(extra);
        spawn_announcing(command, "listening on ")
    }
}

fn buy(machine: &str, payer_file: &Path, item: u32) -> Value {
    let (_, answer) = microcheck(&[
        "buy",
        "--machine",
        machine,
        "--item",
        &item.to_string(),
        "--payer-file",
        path(payer_file),
        "--yes",
    ]);
    answer
}

fn deposit(server: &Server, merchant_file: &Path, all: bool) -> (bool, Value) {
    let mut args = vec![
        "deposit",
        "--merchant-file",
        path(merchant_file),
        "--server",
        &server.url,
    ];
    if all {
        args.push("--all");
    }
    microcheck(&args)
}

/// Issue 20: a command whose output pipe is closed (`offpay ... | head -0`) exits quietly.
#[test]
fn commands_exit_quietly_on_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let closed_stdout = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Stdio::from(writer)
    };
    let file = dir.path().join("payer.json");
    let file = file.to_str().unwrap();
    for args in [
        vec![
            "microcheck",
            "payer",
            "keygen",
            "--file",
            file,
            "--name",
            "alice",
        ],
        vec![
            "microcheck",
            "--json",
            "merchant",
            "keygen",
            "--file",
            file,
            "--id",
            "vm-1",
        ],
        vec!["keynote", "keygen", "ed25519-hex:", "256", "-", "-"],
        vec!["admin", "--help"],
    ] {
        let _ = std::fs::remove_file(file);
        let output = offpay()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(closed_stdout())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.is_empty(), "{args:?} wrote: {stderr}");
        assert!(output.status.success(), "{args:?}: {}", output.status);
    }
}

/// Scripts written for the command's first name keep working.
#[test]
fn the_vend_alias_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payer.json");
    let output = run(offpay()
        .args(["vend", "--json", "payer", "keygen", "--file"])
        .arg(&file)
        .args(["--name", "alice"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json_of(&output)["name"], "alice");
    let help = run(offpay().arg("--help"));
    assert!(String::from_utf8_lossy(&help.stdout).contains("microcheck"));
}

fn offline_sale_then_deposit_posts_once(kind: BackendKind) {
    let backend = kind.fresh();
    let setup = Setup::new();
    let data = setup.file("data");
    let server = start_server(&data, &backend);
    let payer = setup.payer(&server, "alice", &[]);
    let merchant = setup.merchant(
        &server,
        "vm-1",
        &["--latitude", "-1.2921", "--longitude", "36.8219"],
    );
    drop(server); // From here the machine and the payer are offline.

    let (machine, address) = setup.machine(&merchant, &[]);
    let paid = buy(&address, &payer, 1);
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["amount"], "0.83");
    let over = buy(&address, &payer, 3);
    assert_eq!(over["status"], "refused", "{over}");
    assert_eq!(over["code"], "over_limit");
    assert!(over["reason"].as_str().unwrap().contains("25.00"), "{over}");
    let adult = buy(&address, &payer, 2);
    assert_eq!(adult["code"], "adulthood_required", "{adult}");
    drop(machine);

    let server = start_server(&data, &backend);
    let (ok, answer) = deposit(&server, &merchant, false);
    assert!(ok, "{answer}");
    assert_eq!(answer["posted"], 1, "{answer}");
    let payer_account = admin(&server, &["balance", "mc:payer:alice"]);
    assert_eq!(payer_account["balance"], "19.17", "{payer_account}");
    let merchant_account = admin(&server, &["balance", "mc:merchant:vm-1"]);
    assert_eq!(merchant_account["balance"], "0.83");
    let history = admin(&server, &["history", "mc:payer:alice"]);
    assert!(
        history["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["direction"] == "debit"
                && e["counterparty"] == "mc:merchant:vm-1"
                && e["amount"] == "0.83"),
        "{history}"
    );
    // The same microcheck again: refused, nothing moves.
    let (ok, answer) = deposit(&server, &merchant, true);
    assert!(!ok);
    assert_eq!(
        answer["results"][0]["code"], "already_deposited",
        "{answer}"
    );
    assert_eq!(
        admin(&server, &["balance", "mc:payer:alice"])["balance"],
        "19.17"
    );
    // The payer's statement matches its log.
    let (ok, statement) = microcheck(&[
        "statement",
        "--payer-file",
        path(&payer),
        "--server",
        &server.url,
    ]);
    assert!(ok, "{statement}");
    assert_eq!(
        statement["comparison"]["matched"].as_array().unwrap().len(),
        1,
        "{statement}"
    );
    assert!(
        statement["comparison"]["not_written_here"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let totals = admin(&server, &["totals"]);
    assert_eq!(totals["balanced"], true);
}

fn send(stream: &mut TcpStream, message: &Message) {
    stream.write_all(&message.encode()).unwrap();
}

fn receive(stream: &mut TcpStream) -> Message {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).unwrap();
    Message::decode(&body).unwrap()
}

fn link(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
    stream
}

/// A payer device under the test's control: select, then answer the offer with `make`.
fn raw_purchase(
    address: &str,
    item: u32,
    make: impl FnOnce(&offpay_microcheck::Offer) -> Message,
) -> Message {
    let mut stream = link(address);
    send(
        &mut stream,
        &Message::Select {
            v: WIRE_VERSION,
            item,
        },
    );
    let Message::Offer { offer, .. } = receive(&mut stream) else {
        panic!("no offer")
    };
    send(&mut stream, &make(&offer));
    receive(&mut stream)
}

fn payer_secrets(file: &Path) -> (PrivateKey, Vec<String>) {
    let payer: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let key = PrivateKey::parse(payer["key"].as_str().unwrap().as_bytes()).unwrap();
    let credentials = payer["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (key, credentials)
}

fn check_for(key: &PrivateKey, offer: &offpay_microcheck::Offer) -> String {
    let terms = offer.terms().unwrap();
    String::from_utf8(
        offpay_microcheck::microcheck::write(key, &terms)
            .unwrap()
            .text()
            .to_vec(),
    )
    .unwrap()
}

fn refused_code(message: &Message) -> String {
    match message {
        Message::Refused { code, reason, .. } => {
            assert!(!reason.is_empty());
            code.clone()
        }
        other => panic!("not refused: {other:?}"),
    }
}

fn each_bad_payment_is_refused_with_its_reason(kind: BackendKind) {
    let backend = kind.fresh();
    let setup = Setup::new();
    let server = start_server(&setup.file("data"), &backend);
    let payer = setup.payer(&server, "bob", &[]);
    let vm = setup.merchant(&server, "vm-2", &[]);
    let gate = setup.merchant(&server, "gate-1", &["--app-domain", "transit"]);

    // Expired: the machine's clock runs two days ahead of the credentials' validity.
    let (_late, late_address) = setup.machine(&vm, &["--clock-offset-secs", "864000"]);
    let expired = buy(&late_address, &payer, 1);
    assert_eq!(expired["code"], "credential_expired", "{expired}");
    drop(_late);
    // Wrong application domain.
    let (_gate, gate_address) = setup.machine(&gate, &[]);
    let wrong = buy(&gate_address, &payer, 1);
    assert_eq!(wrong["code"], "wrong_domain", "{wrong}");

    let (_machine, address) = setup.machine(&vm, &[]);
    let (key, credentials) = payer_secrets(&payer);
    // Altered after signing (the product renamed, signature kept).
    let reply = raw_purchase(&address, 1, |offer| Message::Payment {
        v: WIRE_VERSION,
        microcheck: check_for(&key, offer).replace("-> \"true\"", "-> \"true\" "),
        credentials: credentials.clone(),
    });
    assert_eq!(refused_code(&reply), "microcheck_signature");
    // Forged: written by another key.
    let thief = PrivateKey::ed25519_from_seed(&[77; 32]);
    let reply = raw_purchase(&address, 1, |offer| Message::Payment {
        v: WIRE_VERSION,
        microcheck: check_for(&thief, offer),
        credentials: credentials.clone(),
    });
    assert_eq!(refused_code(&reply), "untrusted_issuer");
    // A good one written by a copy of the key (not in the device's log) ...
    let mut first = String::new();
    let reply = raw_purchase(&address, 1, |offer| {
        first = check_for(&key, offer);
        Message::Payment {
            v: WIRE_VERSION,
            microcheck: first.clone(),
            credentials: credentials.clone(),
        }
    });
    assert!(matches!(reply, Message::Receipt { .. }), "{reply:?}");
    // ... replayed against the next offer.
    let reply = raw_purchase(&address, 1, |_| Message::Payment {
        v: WIRE_VERSION,
        microcheck: first.clone(),
        credentials: credentials.clone(),
    });
    assert_eq!(refused_code(&reply), "replayed_nonce");
    // Malformed microcheck, credential and frames: refused, the machine keeps serving.
    let reply = raw_purchase(&address, 1, |_| Message::Payment {
        v: WIRE_VERSION,
        microcheck: "Authorizer: \"unterminated".into(),
        credentials: vec![],
    });
    assert_eq!(refused_code(&reply), "malformed");
    let reply = raw_purchase(&address, 1, |offer| Message::Payment {
        v: WIRE_VERSION,
        microcheck: check_for(&key, offer),
        credentials: vec!["Conditions: ((((".into()],
    });
    assert_eq!(refused_code(&reply), "malformed");
    let mut stream = link(&address);
    stream.write_all(&[0, 0, 0, 9]).unwrap();
    stream.write_all(b"not json!").unwrap();
    assert_eq!(refused_code(&receive(&mut stream)), "malformed");
    let mut stream = link(&address);
    stream.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    assert_eq!(refused_code(&receive(&mut stream)), "malformed");
    let mut stream = link(&address);
    stream
        .write_all(br#"{"type":"select","v":1,"item":1}"#)
        .unwrap(); // no length prefix
    drop(stream);
    // Still selling.
    let paid = buy(&address, &payer, 1);
    assert_eq!(paid["status"], "paid", "{paid}");

    // Deposit: both sales post; the statement shows the one the device did not write.
    let (ok, answer) = deposit(&server, &vm, false);
    assert!(ok, "{answer}");
    assert_eq!(answer["posted"], 2, "{answer}");
    let (_, statement) = microcheck(&[
        "statement",
        "--payer-file",
        path(&payer),
        "--server",
        &server.url,
    ]);
    let unknown = statement["comparison"]["not_written_here"]
        .as_array()
        .unwrap();
    assert_eq!(unknown.len(), 1, "{statement}");
    assert_eq!(
        statement["comparison"]["matched"].as_array().unwrap().len(),
        1
    );

    // A deposit with one altered microcheck posts the good ones and reports the bad one.
    for _ in 0..2 {
        let fresh = raw_purchase(&address, 1, |offer| Message::Payment {
            v: WIRE_VERSION,
            microcheck: check_for(&key, offer),
            credentials: credentials.clone(),
        });
        assert!(matches!(fresh, Message::Receipt { .. }));
    }
    let sales = std::fs::read_to_string(PathBuf::from(format!("{}.sales", vm.display()))).unwrap();
    let all: Vec<Value> = sales.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l.get("sale").cloned()).map(|s| json!({ "offer": s["offer"], "microcheck": s["microcheck"], "credentials": s["credentials"] }))
        .collect();
    let mut items = all[all.len() - 2..].to_vec();
    items[0]["offer"]["amount"] = json!("0.01");
    let merchant: Value = serde_json::from_str(&std::fs::read_to_string(&vm).unwrap()).unwrap();
    let merchant_key = PrivateKey::parse(merchant["key"].as_str().unwrap().as_bytes()).unwrap();
    let body = json!({ "items": items });
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = offpay_microcheck::request::sign_request(
        &merchant_key,
        offpay_microcheck::request::purpose::DEPOSIT,
        "vm-2",
        time,
        body,
    )
    .unwrap();
    let signature = request["signature"].clone();
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("{}/microcheck/v1/deposit", server.url))
        .json(&request)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let codes: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("posted"))
        .collect();
    assert_eq!(codes, ["not_this_offer", "posted"], "{answer}");
    assert_eq!(answer["posted"], 1);
    // Malformed deposits and forged signatures change nothing and crash nothing.
    let client = reqwest::blocking::Client::new();
    for bad in [
        json!({ "who": "vm-2" }),
        json!({ "who": "vm-2", "time": time, "signature": "x", "body": {} }),
        json!({ "who": "vm-2", "time": time, "signature": signature, "body": { "items": [] } }),
    ] {
        let status = client
            .post(format!("{}/microcheck/v1/deposit", server.url))
            .json(&bad)
            .send()
            .unwrap()
            .status();
        assert!(status.is_client_error(), "{bad}: {status}");
    }
    let health = client.get(format!("{}/health", server.url)).send().unwrap();
    assert!(health.status().is_success());
}

fn fraud_patterns_raise_flags(kind: BackendKind) {
    let backend = kind.fresh();
    let setup = Setup::new();
    let server = start_server(&setup.file("data"), &backend);
    let mut strategy = admin(&server, &["microcheck", "strategy"])["strategy"].clone();
    strategy["machine_day_purchases_max"] = json!(1);
    let strategy_file = setup.file("strategy.json");
    std::fs::write(&strategy_file, strategy.to_string()).unwrap();
    admin(
        &server,
        &["microcheck", "strategy", "--set", path(&strategy_file)],
    );
    let payer = setup.payer(&server, "carol", &[]);
    let nairobi = setup.merchant(
        &server,
        "vm-nbo",
        &["--latitude", "-1.2921", "--longitude", "36.8219"],
    );
    let mombasa = setup.merchant(
        &server,
        "vm-mba",
        &["--latitude", "-4.0435", "--longitude", "39.6682"],
    );
    let ahead = setup.merchant(
        &server,
        "vm-ahead",
        &["--latitude", "-1.2921", "--longitude", "36.8219"],
    );
    let fast = setup.merchant(
        &server,
        "vm-fast",
        &["--latitude", "-1.2921", "--longitude", "36.8219"],
    );
    {
        let (_m, address) = setup.machine(&nairobi, &[]);
        for _ in 0..2 {
            assert_eq!(buy(&address, &payer, 1)["status"], "paid");
        }
    }
    {
        let (_m, address) = setup.machine(&mombasa, &[]);
        assert_eq!(buy(&address, &payer, 1)["status"], "paid");
    }
    {
        // Three hours fast: beyond the two the CSC tolerates.
        let (_m, address) = setup.machine(&ahead, &["--clock-offset-secs", "10800"]);
        assert_eq!(buy(&address, &payer, 1)["status"], "paid");
    }
    {
        // Fifteen minutes fast (issue 20): an honest machine with a poor clock is paid.
        let (_m, address) = setup.machine(&fast, &["--clock-offset-secs", "900"]);
        assert_eq!(buy(&address, &payer, 1)["status"], "paid");
    }
    assert!(deposit(&server, &nairobi, false).0);
    // Without --json the deposit speaks words, with amounts in their currency (issue 20 saw
    // `[["impossible_travel"]]`).
    let text = run(offpay()
        .args(["microcheck", "deposit", "--merchant-file", path(&mombasa)])
        .args(["--server", &server.url]));
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("posted 0.83 KES as mc:"), "{text}");
    assert!(text.contains("flagged: impossible travel"), "{text}");
    assert!(!text.contains("[\""), "{text}");
    let (ok, answer) = deposit(&server, &ahead, false);
    assert!(!ok);
    assert_eq!(answer["results"][0]["code"], "dated_in_future", "{answer}");
    assert!(
        answer["results"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("the machine's clock may be wrong"),
        "{answer}"
    );
    let (ok, answer) = deposit(&server, &fast, false);
    assert!(ok, "{answer}");
    assert_eq!(answer["posted"], 1, "{answer}");
    let flags = admin(&server, &["fraud", "list", "--rail", "microcheck"]);
    let kinds: Vec<&str> = flags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for kind in ["machine_day_volume", "impossible_travel", "post_dated"] {
        assert!(kinds.contains(&kind), "{kind} missing from {flags}");
    }
    let post_dated: Vec<&Value> = flags["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "post_dated")
        .collect();
    assert_eq!(
        post_dated.len(),
        1,
        "only the machine 3 hours fast: {flags}"
    );
    assert_eq!(post_dated[0]["subject"], "vm-ahead");
    assert!(
        post_dated[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("the machine's clock may be wrong"),
        "{flags}"
    );
    let travel = flags["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "impossible_travel")
        .unwrap();
    assert_eq!(travel["subject"], "carol");
    assert!(
        travel["evidence"]["distance_km"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 300.0
    );
}

fn buy_online(machine: &str, payer_file: &Path, item: u32, server: &Server) -> Value {
    let (_, answer) = microcheck(&[
        "buy",
        "--machine",
        machine,
        "--item",
        &item.to_string(),
        "--payer-file",
        path(payer_file),
        "--server",
        &server.url,
        "--yes",
    ]);
    answer
}

fn fund(server: &Server, payer: &str, id: &str, amount: &str) {
    admin(
        server,
        &[
            "transfer",
            "--id",
            id,
            "--from",
            "operator:float",
            "--to",
            &format!("mc:payer:{payer}"),
            "--amount",
            amount,
        ],
    );
}

/// Issue 20, item 1: the online path follows the payer's risk strategy.
fn online_credentials_follow_the_risk_strategy(kind: BackendKind) {
    let backend = kind.fresh();
    let setup = Setup::new();
    let server = start_server(&setup.file("data"), &backend);
    let mut strategy = admin(&server, &["microcheck", "strategy"])["strategy"].clone();
    strategy["transaction_day_max"] = json!(2);
    let strategy_file = setup.file("strategy.json");
    std::fs::write(&strategy_file, strategy.to_string()).unwrap();
    admin(
        &server,
        &["microcheck", "strategy", "--set", path(&strategy_file)],
    );
    let vm = setup.merchant(&server, "vm-on", &[]);
    let (_machine, address) = setup.machine(&vm, &[]);
    // A food-only payer: the drink and the radio (over the limit too) are refused by the class,
    // and the device does not ask the PA at all.
    let food = setup.payer(&server, "fiona", &["--class", "food"]);
    let radio = buy_online(&address, &food, 3, &server);
    assert_eq!(radio["code"], "product_class_not_allowed", "{radio}");
    // Asked anyway (a device that skips its own check), the PA refuses.
    let (key, _) = payer_secrets(&food);
    let mut stream = link(&address);
    send(
        &mut stream,
        &Message::Select {
            v: WIRE_VERSION,
            item: 3,
        },
    );
    let Message::Offer { offer, .. } = receive(&mut stream) else {
        panic!("no offer")
    };
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = offpay_microcheck::request::sign_request(
        &key,
        offpay_microcheck::request::purpose::TRANSACTION,
        "fiona",
        time,
        json!({ "offer": offer }),
    )
    .unwrap();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/microcheck/v1/payer/transaction", server.url))
        .json(&request)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let answer: Value = response.json().unwrap();
    assert_eq!(
        answer["error"]["code"], "product_class_not_allowed",
        "{answer}"
    );
    drop(stream);

    // An unrestricted payer with 20.00: the 25.00 radio needs an online credential, which its
    // funds do not cover; nothing is paid from suspense.
    let payer = setup.payer(&server, "gina", &[]);
    let refused = buy_online(&address, &payer, 3, &server);
    assert_eq!(refused["code"], "transaction_refused", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("does not cover 25.00"),
        "{refused}"
    );
    // With 60.00 the first radio is held (25.00), the second too (50.00); the third is over the
    // daily count of two online credentials.
    fund(&server, "gina", "fund-gina-2", "40.00");
    for _ in 0..2 {
        let paid = buy_online(&address, &payer, 3, &server);
        assert_eq!(paid["status"], "paid", "{paid}");
    }
    let limited = buy_online(&address, &payer, 3, &server);
    assert_eq!(limited["code"], "transaction_refused", "{limited}");
    assert!(
        limited["reason"]
            .as_str()
            .unwrap()
            .contains("transaction_rate_limited")
            || limited["reason"]
                .as_str()
                .unwrap()
                .contains("online credentials today"),
        "{limited}"
    );
    let (ok, answer) = deposit(&server, &vm, false);
    assert!(ok, "{answer}");
    assert_eq!(answer["posted"], 2, "{answer}");
    assert_eq!(
        admin(&server, &["balance", "mc:payer:gina"])["balance"],
        "10.00"
    );
    let suspense = admin(&server, &["balance", "operator:suspense"]);
    assert!(
        suspense["balance"] == "0.00" || suspense["balance"] == "0",
        "{suspense}"
    );
    assert_eq!(admin(&server, &["totals"])["balanced"], true);
}

/// Issue 20, item 2: a payer reports the device lost; what it signed before is still paid.
fn a_lost_devices_microchecks_are_still_paid(kind: BackendKind) {
    let backend = kind.fresh();
    let setup = Setup::new();
    let data = setup.file("data");
    let server = start_server(&data, &backend);
    let payer = setup.payer(&server, "hana", &[]);
    let vm = setup.merchant(&server, "vm-lost", &[]);
    {
        let (_machine, address) = setup.machine(&vm, &[]);
        for _ in 0..2 {
            assert_eq!(buy(&address, &payer, 1)["status"], "paid");
        }
    }
    // The phone is lost: the operator registers hana's new device.
    let new_device = setup.file("hana-new.json");
    let (ok, answer) = microcheck(&[
        "payer",
        "keygen",
        "--file",
        path(&new_device),
        "--name",
        "hana",
    ]);
    assert!(ok, "{answer}");
    let key = answer["key"].as_str().unwrap().to_owned();
    admin(
        &server,
        &[
            "microcheck",
            "payer",
            "register",
            "--name",
            "hana",
            "--key",
            &key,
        ],
    );
    // The old device can no longer get credentials ...
    let (ok, answer) = microcheck(&[
        "payer",
        "refresh",
        "--file",
        path(&payer),
        "--server",
        &server.url,
    ]);
    assert!(!ok, "{answer}");
    // ... but the machine's microchecks from before are paid.
    let (ok, answer) = deposit(&server, &vm, false);
    assert!(ok, "{answer}");
    assert_eq!(answer["posted"], 2, "{answer}");
    assert_eq!(
        admin(&server, &["balance", "mc:merchant:vm-lost"])["balance"],
        "1.66"
    );
    assert_eq!(
        admin(&server, &["balance", "mc:payer:hana"])["balance"],
        "18.34"
    );
}

/// Issue 20, item 3: the same microchecks deposited by two processes at once (a machine and its
/// restored backup) are paid once.
fn the_same_deposit_from_two_processes_at_once_posts_once(kind: BackendKind) {
    let backend = kind.fresh();
    let setup = Setup::new();
    let server = start_server(&setup.file("data"), &backend);
    let payer = setup.payer(&server, "iris", &[]);
    let vm = setup.merchant(&server, "vm-twice", &[]);
    {
        let (_machine, address) = setup.machine(&vm, &[]);
        for _ in 0..5 {
            assert_eq!(buy(&address, &payer, 1)["status"], "paid");
        }
    }
    // A copy of the machine's files, as a restored backup would have them.
    let copy_dir = setup.file("backup");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let copy = copy_dir.join("vm-twice.json");
    std::fs::copy(&vm, &copy).unwrap();
    std::fs::copy(
        PathBuf::from(format!("{}.sales", vm.display())),
        PathBuf::from(format!("{}.sales", copy.display())),
    )
    .unwrap();
    let start = |file: &Path| {
        offpay()
            .args([
                "microcheck",
                "--json",
                "deposit",
                "--all",
                "--merchant-file",
            ])
            .arg(file)
            .args(["--server", &server.url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start(&vm), start(&copy));
    let answers: Vec<Value> = [first, second]
        .into_iter()
        .map(|child| json_of(&child.wait_with_output().unwrap()))
        .collect();
    let posted: u64 = answers
        .iter()
        .map(|answer| answer["posted"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(posted, 5, "{answers:?}");
    for answer in &answers {
        for result in answer["results"].as_array().into_iter().flatten() {
            let code = result["code"].as_str().unwrap_or("posted");
            assert!(
                ["posted", "already_deposited"].contains(&code),
                "{answers:?}"
            );
        }
    }
    assert_eq!(
        admin(&server, &["balance", "mc:merchant:vm-twice"])["balance"],
        "4.15"
    );
    assert_eq!(
        admin(&server, &["balance", "mc:payer:iris"])["balance"],
        "15.85"
    );
    assert_eq!(admin(&server, &["totals"])["balanced"], true);
}

offpay_test_support::on_every_backend!(
    the_same_deposit_from_two_processes_at_once_posts_once,
    online_credentials_follow_the_risk_strategy,
    a_lost_devices_microchecks_are_still_paid,
    offline_sale_then_deposit_posts_once,
    each_bad_payment_is_refused_with_its_reason,
    fraud_patterns_raise_flags,
);
