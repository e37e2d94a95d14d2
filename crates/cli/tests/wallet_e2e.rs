//! Rail 3 on real processes: a server, wallet processes talking UDP on loopback through the netem
//! fault proxy, a wallet killed with SIGKILL mid-transfer and restarted, syncs, a rolled-back
//! wallet blocked on the first evidence and refused offline, bad datagrams and a forged sync upload. Every wait is bounded.
// Helpers outside #[test] functions stop at the first surprise too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offpay_test_support::{Backend, BackendKind, ServerProcess};
use offpay_wallet::file::open_wallet_file;
use offpay_wallet::{
    Action, Event, Limits, LogKey, LogStorage, MoneyOffice, OfficeKeys, SealedFileStorage,
    SeededEntropy, SyncReply, Wallet, WalletKeys,
};
use serde_json::Value;

/// Upper bound on any one wait.
const WAIT_MAX: Duration = Duration::from_secs(45);
const PASSPHRASE: &str = "e2e wallet passphrase";

fn offpay() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offpay"));
    command
        .env("OFFPAY_WALLET_PASSPHRASE", PASSPHRASE)
        .env("OFFPAY_LOG", "warn")
        .stdin(Stdio::null());
    command
}

struct Server {
    _process: ServerProcess,
    base: String,
    token: String,
    token_file: PathBuf,
    http: reqwest::blocking::Client,
}

impl Server {
    fn start(data_dir: &Path, backend: &Backend) -> Server {
        let process = ServerProcess::start(
            Path::new(env!("CARGO_BIN_EXE_offpay")),
            data_dir,
            backend,
            &[("OFFPAY_WALLET_PASSPHRASE", PASSPHRASE)],
            &[],
        );
        let token_file = data_dir.join("admin.token");
        Server {
            base: process.base.clone(),
            token: process.token.clone(),
            token_file,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _process: process,
        }
    }

    fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .expect("GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().expect("JSON")
    }

    fn admin(&self, args: &[&str]) -> Value {
        let output = run(offpay()
            .args(["admin", "--json", "--server", &self.base, "--token-file"])
            .arg(&self.token_file)
            .args(args));
        assert!(
            output.0,
            "offpay admin {args:?} failed: {} {}",
            output.1, output.2
        );
        serde_json::from_str(output.1.lines().last().unwrap_or("null")).expect("JSON answer")
    }

    fn ledger_balance_minor(&self, wallet_id: &str) -> i64 {
        self.get(&format!("/api/v1/accounts/wallet:{wallet_id}"))["balance_minor"]
            .as_i64()
            .expect("balance")
    }

    fn fraud(&self) -> Vec<Value> {
        self.get("/api/v1/fraud?rail=wallet")["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs a command to its end (bounded): success, stdout, stderr.
fn run(command: &mut Command) -> (bool, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn offpay");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).ok();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).ok();
        text
    });
    let status = wait(&mut child, WAIT_MAX);
    (status, out.join().unwrap(), err.join().unwrap())
}

fn wait(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a process ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running wallet process: its JSON lines as they come, its stderr.
struct Running {
    child: Child,
    lines: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn spawn(args: &[String]) -> Running {
        let mut child = offpay()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wallet");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = sender.send(value);
                }
            }
        });
        let collected = Arc::new(Mutex::new(String::new()));
        let sink = collected.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Running {
            child,
            lines,
            stderr: collected,
        }
    }

    /// Waits for a line whose `event` is `event`, returning it and everything before it.
    fn expect_event(&self, event: &str) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + WAIT_MAX;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if line["event"] == event {
                    return (line, seen);
                }
                seen.push(line);
            }
        }
        panic!("no {event} event within {WAIT_MAX:?}; saw {seen:?}");
    }

    fn finish(mut self) -> (bool, Vec<Value>, String) {
        let ok = wait(&mut self.child, WAIT_MAX);
        // The reader threads end with the pipes.
        std::thread::sleep(Duration::from_millis(50));
        let lines: Vec<Value> = self.lines.try_iter().collect();
        let stderr = self.stderr.lock().unwrap().clone();
        (ok, lines, stderr)
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wallet_command(file: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "wallet".to_owned(),
        "--json".to_owned(),
        "--file".to_owned(),
        file.display().to_string(),
    ];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    all
}

fn wallet_json(file: &Path, args: &[&str]) -> Vec<Value> {
    let (ok, stdout, stderr) = run(offpay().args(wallet_command(file, args)));
    assert!(ok, "offpay wallet {args:?} failed: {stdout} {stderr}");
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn issue(server: &Server, directory: &Path, name: &str) -> (PathBuf, String) {
    let file = directory.join(format!("{name}.wallet"));
    let answer = server.admin(&["wallet", "issue", "--file", &file.display().to_string()]);
    (
        file,
        answer["wallet_id"].as_str().expect("wallet id").to_owned(),
    )
}

fn sync(server: &Server, file: &Path) -> Value {
    wallet_json(file, &["sync", "--server", &server.base])
        .into_iter()
        .find(|line| line["event"] == "synced")
        .expect("synced line")
}

fn balance(file: &Path) -> Value {
    wallet_json(file, &["balance"]).pop().expect("balance line")
}

/// Each transfer in the wallet's log with its outcome there (`None`: not finished).
fn outcomes(file: &Path) -> BTreeMap<String, Option<String>> {
    let mut map = BTreeMap::new();
    for record in wallet_json(file, &["log"]) {
        let Some(transfer_id) = record["transfer_id"].as_str() else {
            continue;
        };
        let entry = map.entry(transfer_id.to_owned()).or_insert(None);
        if let Some(outcome) = record["outcome"].as_str() {
            *entry = Some(outcome.to_owned());
        }
    }
    map
}

fn transfers_through_loss_duplication_reordering_and_a_killed_wallet_end_the_same_on_both_sides(
    kind: BackendKind,
) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let server = Server::start(&directory.path().join("server"), &backend);
    let (seller, seller_id) = issue(&server, directory.path(), "seller");
    let (buyer, buyer_id) = issue(&server, directory.path(), "buyer");
    server.admin(&["wallet", "charge", &buyer_id, "100"]);
    assert_eq!(sync(&server, &buyer)["balance_minor"], 10_000);

    let buyer_port = free_udp_port();
    let proxy_port = free_udp_port();
    let buyer_address = format!("127.0.0.1:{buyer_port}");
    let proxy_address = format!("127.0.0.1:{proxy_port}");
    let netem = Running::spawn(
        &[
            "wallet",
            "--json",
            "netem",
            "--listen",
            &proxy_address,
            "--forward",
            &buyer_address,
            "--loss",
            "0.2",
            "--duplicate",
            "0.1",
            "--reorder",
            "0.1",
            "--delay-ms",
            "5",
            "--seed",
            "11",
        ]
        .map(str::to_owned),
    );
    netem.expect_event("netem_listening");
    let buy_args = wallet_command(
        &buyer,
        &[
            "buy",
            "--yes",
            "--listen",
            &buyer_address,
            "--peer",
            &proxy_address,
            "--idle-secs",
            "4",
            "--timeout-secs",
            "40",
        ],
    );
    let first_buyer = Running::spawn(&buy_args);
    first_buyer.expect_event("listening");
    let seller_run = Running::spawn(&wallet_command(
        &seller,
        &[
            "sell",
            "--amount",
            "3",
            "--count",
            "6",
            "--peer",
            &proxy_address,
            "--idle-secs",
            "3",
            "--timeout-secs",
            "40",
        ],
    ));
    // SIGKILL the buyer right after it forced its second prepared record and sent its agreement.
    first_buyer.expect_event("approved");
    let (killed_at, _) = first_buyer.expect_event("approved");
    drop(first_buyer);
    let restarted = Running::spawn(&buy_args);
    let (seller_ok, seller_lines, seller_stderr) = seller_run.finish();
    let (_, buyer_lines, buyer_stderr) = restarted.finish();
    drop(netem);
    assert!(seller_ok, "seller failed: {seller_lines:?} {seller_stderr}");
    assert!(
        buyer_lines.iter().any(|line| line["event"] == "posted"),
        "the restarted buyer finished transfers: {buyer_lines:?} {buyer_stderr}"
    );

    // Sync both (twice, so each learns what the other's sync decided).
    for file in [&seller, &buyer, &seller, &buyer] {
        sync(&server, file);
    }
    let seller_outcomes = outcomes(&seller);
    let buyer_outcomes = outcomes(&buyer);
    let mut posted = 0;
    for (transfer_id, seller_outcome) in &seller_outcomes {
        let seller_outcome = seller_outcome
            .as_deref()
            .expect("the seller decided every sale");
        match buyer_outcomes.get(transfer_id) {
            Some(buyer_outcome) => assert_eq!(
                buyer_outcome.as_deref(),
                Some(seller_outcome),
                "transfer {transfer_id} ended differently on the two sides"
            ),
            // The buyer never prepared it (it forgot it in the crash): nothing was held.
            None => assert_eq!(seller_outcome, "voided", "transfer {transfer_id}"),
        }
        if seller_outcome == "posted" {
            posted += 1;
        }
    }
    assert!(
        buyer_outcomes
            .keys()
            .all(|id| seller_outcomes.contains_key(id)),
        "the buyer knows no transfer the seller did not start"
    );
    let killed = killed_at["transfer_id"].as_str().unwrap();
    assert!(
        buyer_outcomes.get(killed).is_some_and(Option::is_some),
        "the transfer cut by the kill was finished"
    );
    assert!(posted >= 4, "most sales went through: {seller_outcomes:?}");

    let seller_balance = balance(&seller);
    let buyer_balance = balance(&buyer);
    let seller_minor = seller_balance["balance_minor"].as_i64().unwrap();
    let buyer_minor = buyer_balance["balance_minor"].as_i64().unwrap();
    assert_eq!(seller_balance["held_minor"], 0);
    assert_eq!(buyer_balance["held_minor"], 0);
    assert_eq!(seller_minor, 300 * posted, "3.00 per posted sale");
    assert_eq!(
        seller_minor + buyer_minor,
        10_000,
        "the wallets hold what was charged"
    );
    assert_eq!(server.ledger_balance_minor(&seller_id), seller_minor);
    assert_eq!(server.ledger_balance_minor(&buyer_id), buyer_minor);
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
    assert!(server.fraud().is_empty(), "honest wallets raise no flag");
}

/// One sale over UDP on loopback: `seller` asks `amount` of `buyer`, which accepts. The lines
/// each printed.
fn pay(seller: &Path, buyer: &Path, amount: &str) -> (Vec<Value>, Vec<Value>) {
    let port = free_udp_port();
    let address = format!("127.0.0.1:{port}");
    let buying = Running::spawn(&wallet_command(
        buyer,
        &[
            "buy",
            "--yes",
            "--count",
            "1",
            "--listen",
            &address,
            "--idle-secs",
            "1",
        ],
    ));
    buying.expect_event("listening");
    let selling = Running::spawn(&wallet_command(
        seller,
        &[
            "sell",
            "--amount",
            amount,
            "--peer",
            &address,
            "--idle-secs",
            "1",
        ],
    ));
    let (_, seller_lines, _) = selling.finish();
    let (_, buyer_lines, _) = buying.finish();
    (seller_lines, buyer_lines)
}

fn posted(lines: &[Value]) -> bool {
    lines.iter().any(|line| line["event"] == "posted")
}

/// The wallet's files on disk: the wallet file, its log and its blocked list.
fn wallet_files(file: &Path) -> Vec<PathBuf> {
    [".log", ".blocked"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", file.display())))
        .chain([file.to_path_buf()])
        .filter(|path| path.exists())
        .collect()
}

/// The rollback attack of issue 19, end to end: a holder with 287.50 copies its wallet's files
/// back after each payment and pays two sellers in one sync period. The sellers refuse a payment
/// number they already took; the first upload that shows the same number twice blocks the cheat;
/// the seller that synced refuses it offline from then on; the cheat's credential is not
/// renewed; the operator sees the case and decides it; the loss stays within the bound of
/// docs/protocols/device-wallet.md §9.1.
fn a_rolled_back_wallet_is_blocked_on_the_first_evidence_and_refused_offline(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let server = Server::start(&directory.path().join("server"), &backend);
    let (seller_a, seller_a_id) = issue(&server, directory.path(), "seller-a");
    let (seller_b, seller_b_id) = issue(&server, directory.path(), "seller-b");
    // The cheat's wallet is made on its device, which never sees the operator's token; the
    // operator issues the credential for its public keys.
    let cheat = directory.path().join("cheat.wallet");
    let made = wallet_json(&cheat, &["create"]);
    let request = made[0]["request"].as_str().unwrap().to_owned();
    let issued_file = directory.path().join("cheat.issued");
    let issued = server.admin(&[
        "wallet",
        "issue",
        "--request",
        &request,
        "--out",
        &issued_file.display().to_string(),
    ]);
    let activated = wallet_json(
        &cheat,
        &["activate", "--issued", &issued_file.display().to_string()],
    );
    let cheat_id = activated[0]["wallet_id"].as_str().unwrap().to_owned();
    assert_eq!(issued["wallet_id"], cheat_id.as_str());
    server.admin(&["wallet", "charge", &cheat_id, "287.50"]);
    let synced = sync(&server, &cheat);
    let expires_at = synced["credential_expires_at_ms"].as_u64().unwrap();
    for seller in [&seller_a, &seller_b] {
        sync(&server, seller);
    }
    // The cheat keeps a copy of its files (they are encrypted; it copies them whole).
    let cheat_log = PathBuf::from(format!("{}.log", cheat.display()));
    let snapshot = std::fs::read(&cheat_log).unwrap();
    let roll_back = || std::fs::write(&cheat_log, &snapshot).unwrap();

    let (first, _) = pay(&seller_a, &cheat, "287.50");
    assert!(posted(&first), "{first:?}");
    roll_back();
    assert_eq!(balance(&cheat)["balance_minor"], 28_750);
    let (second, _) = pay(&seller_b, &cheat, "287.50");
    assert!(posted(&second), "{second:?}");
    // Seller A already took this payment number from the cheat: it refuses offline.
    roll_back();
    let (third, _) = pay(&seller_a, &cheat, "287.50");
    assert!(!posted(&third), "{third:?}");

    // A syncs (one agreement: nothing to see yet); B's upload shows the number used twice.
    sync(&server, &seller_a);
    assert!(server.get(&format!("/api/v1/wallets/{cheat_id}"))["blocked_at_ms"].is_null());
    sync(&server, &seller_b);
    let view = server.get(&format!("/api/v1/wallets/{cheat_id}"));
    assert!(view["blocked_at_ms"].is_u64(), "{view}");
    assert_eq!(view["case"]["reason"], "double_spend", "{view}");
    assert!(view["case"]["decision"].is_null(), "{view}");
    let flags = server.fraud();
    assert!(
        flags
            .iter()
            .any(|flag| flag["subject"] == cheat_id.as_str() && flag["kind"] == "double_spend"),
        "flags: {flags:?}"
    );
    // No honest party is flagged.
    for honest in [&seller_a_id, &seller_b_id] {
        assert!(
            flags.iter().all(|flag| flag["subject"] != honest.as_str()),
            "flags: {flags:?}"
        );
    }

    // B knows of the block from its sync and refuses the cheat offline, even after a restart.
    roll_back();
    let (fourth, cheat_lines) = pay(&seller_b, &cheat, "10");
    assert!(!posted(&fourth), "{fourth:?}");
    assert!(!posted(&cheat_lines), "{cheat_lines:?}");

    // The cheat's sync is reconciled but its credential is not renewed.
    let cheat_sync = wallet_json(&cheat, &["sync", "--server", &server.base]);
    assert!(
        cheat_sync
            .iter()
            .any(|line| line["event"] == "wallet_blocked"),
        "{cheat_sync:?}"
    );
    let synced = cheat_sync
        .iter()
        .find(|line| line["event"] == "synced")
        .unwrap();
    assert_eq!(synced["credential_expires_at_ms"], expires_at);
    let view = server.get(&format!("/api/v1/wallets/{cheat_id}"));
    assert_eq!(view["credential"]["expires_at_ms"], expires_at, "{view}");

    // The loss: what the sellers took beyond the cheat's value, within the bound (§9.1):
    // sellers reached × credentials each took × offline_spend_max − the value.
    let loss_minor = -server.ledger_balance_minor(&cheat_id);
    assert_eq!(loss_minor, 28_750);
    let offline_spend_max_minor = 100_000;
    let bound_minor = 2 * offline_spend_max_minor - 28_750;
    assert!(
        loss_minor <= bound_minor,
        "loss {loss_minor} > bound {bound_minor}"
    );
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);

    // The operator decides the case: confirmed, the block stands.
    let decided = server.admin(&["wallet", "case", &cheat_id, "--decision", "confirm"]);
    assert_eq!(decided["case"]["decision"], "confirmed", "{decided}");
    assert!(server.get(&format!("/api/v1/wallets/{cheat_id}"))["blocked_at_ms"].is_u64());

    // What a thief of seller A's phone finds: files readable by the owner only, naming no
    // counterparty and no amount.
    let cheat_id_bytes = hex_decode(&cheat_id);
    for path in wallet_files(&seller_a) {
        let bytes = std::fs::read(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        for secret in [
            cheat_id_bytes.clone(),
            cheat_id.as_bytes().to_vec(),
            28_750u64.to_be_bytes().to_vec(),
            b"287.50".to_vec(),
        ] {
            assert!(
                !bytes.windows(secret.len()).any(|window| window == secret),
                "{} reveals {secret:?}",
                path.display()
            );
        }
    }

    // Backups keep working with the sealed log: seller A backed up and restored.
    let backup = directory.path().join("seller-a.backup");
    let before = balance(&seller_a)["balance_minor"].clone();
    wallet_json(
        &seller_a,
        &["backup", "--out", &backup.display().to_string()],
    );
    wallet_json(
        &seller_a,
        &[
            "restore",
            "--from",
            &backup.display().to_string(),
            "--force",
        ],
    );
    assert_eq!(balance(&seller_a)["balance_minor"], before);
}

/// A seller whose log voids a sale it signed, end to end: the seller copies its wallet's files
/// while a sale is pending (the link to the buyer is slow, so the copy is taken after its pending
/// record and before its commit), commits the sale — the buyer pays on its signed commit — puts
/// the copy back and lets the copy give up on the sale. The buyer's sync posts the sale from the
/// commit it holds; the seller's sync, whose log voids that sale, blocks the seller before its
/// credential is renewed and opens a `voided_signed_sale` case; the buyer is not out of pocket.
fn a_seller_whose_log_voids_a_sale_it_signed_is_blocked(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let server = Server::start(&directory.path().join("server"), &backend);
    let (seller, seller_id) = issue(&server, directory.path(), "seller");
    let (buyer, buyer_id) = issue(&server, directory.path(), "buyer");
    server.admin(&["wallet", "charge", &buyer_id, "100"]);
    assert_eq!(sync(&server, &buyer)["balance_minor"], 10_000);
    let expires_at = sync(&server, &seller)["credential_expires_at_ms"]
        .as_u64()
        .unwrap();

    let buyer_address = format!("127.0.0.1:{}", free_udp_port());
    let proxy_address = format!("127.0.0.1:{}", free_udp_port());
    let netem = Running::spawn(
        &[
            "wallet",
            "--json",
            "netem",
            "--listen",
            &proxy_address,
            "--forward",
            &buyer_address,
            "--delay-ms",
            "1500",
        ]
        .map(str::to_owned),
    );
    netem.expect_event("netem_listening");
    let buying = Running::spawn(&wallet_command(
        &buyer,
        &[
            "buy",
            "--yes",
            "--count",
            "1",
            "--listen",
            &buyer_address,
            "--idle-secs",
            "8",
        ],
    ));
    buying.expect_event("listening");
    let selling = Running::spawn(&wallet_command(
        &seller,
        &[
            "sell",
            "--amount",
            "25",
            "--peer",
            &proxy_address,
            "--idle-secs",
            "8",
        ],
    ));
    // The seller forces its pending record as it picks the buyer; the agreement needs two more
    // crossings of the slow link (3 s) before the seller can commit.
    selling.expect_event("buyer_answered");
    std::thread::sleep(Duration::from_millis(1_000));
    let copy: Vec<(PathBuf, Vec<u8>)> = wallet_files(&seller)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    let (_, seller_lines, seller_stderr) = selling.finish();
    let (_, buyer_lines, _) = buying.finish();
    drop(netem);
    assert!(posted(&seller_lines), "{seller_lines:?} {seller_stderr}");
    assert!(posted(&buyer_lines), "{buyer_lines:?}");
    let transfer_id = buyer_lines
        .iter()
        .find(|line| line["event"] == "posted")
        .and_then(|line| line["transfer_id"].as_str())
        .unwrap()
        .to_owned();

    // The seller puts its copy back; the copy's sale is pending, its buyer gone: it voids it.
    for (path, bytes) in &copy {
        std::fs::write(path, bytes).unwrap();
    }
    assert_eq!(
        outcomes(&seller)[&transfer_id],
        None,
        "the copy's sale is pending"
    );
    let nobody = format!("127.0.0.1:{}", free_udp_port());
    let gave_up = wallet_json(
        &seller,
        &[
            "run",
            "--peer",
            &nobody,
            "--idle-secs",
            "1",
            "--timeout-secs",
            "44",
        ],
    );
    assert!(
        gave_up.iter().any(|line| line["event"] == "voided"),
        "{gave_up:?}"
    );
    assert_eq!(outcomes(&seller)[&transfer_id].as_deref(), Some("voided"));

    // The buyer syncs first: its copy of the seller's commit posts the sale.
    sync(&server, &buyer);
    assert_eq!(server.ledger_balance_minor(&buyer_id), 7_500);
    // The seller's sync shows the void of a sale it signed: blocked in that very sync.
    let seller_sync = wallet_json(&seller, &["sync", "--server", &server.base]);
    assert!(
        seller_sync
            .iter()
            .any(|line| line["event"] == "wallet_blocked"),
        "{seller_sync:?}"
    );
    let synced = seller_sync
        .iter()
        .find(|line| line["event"] == "synced")
        .unwrap();
    assert_eq!(
        synced["credential_expires_at_ms"], expires_at,
        "not renewed"
    );
    let view = server.get(&format!("/api/v1/wallets/{seller_id}"));
    assert!(view["blocked_at_ms"].is_u64(), "{view}");
    assert_eq!(view["case"]["reason"], "voided_signed_sale", "{view}");
    assert_eq!(view["case"]["transfer_id"], transfer_id.as_str(), "{view}");
    assert_eq!(view["credential"]["expires_at_ms"], expires_at, "{view}");
    let flags = server.fraud();
    assert!(
        flags
            .iter()
            .any(|flag| flag["kind"] == "conflicting_outcome"
                && flag["subject"] == transfer_id.as_str()),
        "flags: {flags:?}"
    );
    assert!(
        flags
            .iter()
            .all(|flag| flag["subject"] != buyer_id.as_str()),
        "the honest buyer is not flagged: {flags:?}"
    );
    // The buyer paid once, as its wallet did; the seller's account holds what its commit
    // promised, which its rolled-back wallet no longer has.
    sync(&server, &buyer);
    assert_eq!(balance(&buyer)["balance_minor"], 7_500);
    assert_eq!(server.ledger_balance_minor(&buyer_id), 7_500);
    assert_eq!(server.ledger_balance_minor(&seller_id), 2_500);
    assert_eq!(balance(&seller)["balance_minor"], 0);
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
        .collect()
}

/// Performs a wallet's actions by hand, keeping every datagram it sent.
fn perform(
    actions: Vec<Action>,
    storage: &mut SealedFileStorage,
    socket: &UdpSocket,
    to: SocketAddr,
    sent: &mut Vec<Vec<u8>>,
    events: &mut Vec<Event>,
) {
    for action in actions {
        match action {
            Action::Persist(frame) => storage.append(&frame).unwrap(),
            Action::Send { datagram, .. } | Action::Broadcast(datagram) => {
                socket.send_to(&datagram, to).unwrap();
                sent.push(datagram);
            }
            Action::Notify(event) => events.push(event),
        }
    }
}

fn bad_datagrams_are_dropped_with_a_log_line_and_a_forged_upload_changes_nothing(
    kind: BackendKind,
) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let server = Server::start(&directory.path().join("server"), &backend);
    let (seller, seller_id) = issue(&server, directory.path(), "seller");
    let (buyer, buyer_id) = issue(&server, directory.path(), "buyer");
    server.admin(&["wallet", "charge", &buyer_id, "20"]);
    sync(&server, &buyer);
    let port = free_udp_port();
    let buyer_address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let buying = Running::spawn(&wallet_command(
        &buyer,
        &[
            "buy",
            "--yes",
            "--count",
            "1",
            "--listen",
            &buyer_address.to_string(),
            "--idle-secs",
            "2",
        ],
    ));
    buying.expect_event("listening");

    // The seller runs in this process, so the test sees every datagram it sends.
    let secrets =
        open_wallet_file(&std::fs::read(&seller).unwrap(), PASSPHRASE.as_bytes()).unwrap();
    let mut storage = SealedFileStorage::open(
        Path::new(&format!("{}.log", seller.display())),
        LogKey::derive(&secrets.keys),
    )
    .unwrap();
    let now = || offpay_wallet::driver::now_ms();
    let mut entropy = SeededEntropy::from_seed(5);
    let (mut wallet, actions, _) = Wallet::recover(secrets.keys, &mut storage, now()).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut sent = Vec::new();
    let mut events = Vec::new();
    perform(
        actions,
        &mut storage,
        &socket,
        buyer_address,
        &mut sent,
        &mut events,
    );
    let amount = offpay_ledger::Amount::parse("4", wallet.credential().currency).unwrap();
    let (transfer_id, actions) = wallet.start_sale(amount, now(), &mut entropy).unwrap();
    perform(
        actions,
        &mut storage,
        &socket,
        buyer_address,
        &mut sent,
        &mut events,
    );

    // A wallet of a foreign money office, and a message sealed for someone else.
    let mut foreign_entropy = SeededEntropy::from_seed(9);
    let mut office = MoneyOffice::new(OfficeKeys::generate(&mut foreign_entropy), 3_600_000);
    let mut foreign = Vec::new();
    for _ in 0..2 {
        let keys = WalletKeys::generate(&mut foreign_entropy);
        let limits = Limits {
            balance_max: amount,
            payment_max: amount,
            offline_spend_max: amount,
        };
        let credential = office
            .issue_wallet(
                keys.signing_public(),
                keys.encryption_public(),
                limits,
                now(),
                &mut foreign_entropy,
            )
            .unwrap();
        let (wallet, _) = Wallet::create(keys, credential, office.public(), now()).unwrap();
        foreign.push(wallet);
    }
    let (_, lookup) = foreign[0]
        .start_sale(amount, now(), &mut foreign_entropy)
        .unwrap();
    let Some(Action::Broadcast(foreign_lookup)) = lookup.into_iter().next() else {
        panic!("a sale starts with a look-up")
    };
    foreign[1].set_buyer_mode(true);
    let answered = foreign[1]
        .handle_datagram(&foreign_lookup, now(), &mut foreign_entropy)
        .unwrap();
    let sealed_for_other = answered
        .actions
        .into_iter()
        .find_map(|action| match action {
            Action::Send { datagram, .. } => Some(datagram),
            _ => None,
        })
        .expect("a present message");
    let bad: Vec<Vec<u8>> = vec![
        b"not a wallet datagram".to_vec(),
        vec![],
        foreign_lookup.clone(),
        foreign_lookup[..40].to_vec(),
        sealed_for_other,
    ];

    // Drive the sale; once the buyer answered, throw the bad datagrams at it, then go on.
    let deadline = Instant::now() + WAIT_MAX;
    let mut chosen = false;
    let mut outcome = None;
    let mut buffer = [0u8; 2048];
    while outcome.is_none() {
        assert!(Instant::now() < deadline, "the sale did not finish");
        for event in std::mem::take(&mut events) {
            match event {
                Event::BuyerAnswered { buyer, .. } if !chosen => {
                    chosen = true;
                    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
                    for datagram in &bad {
                        attacker.send_to(datagram, buyer_address).unwrap();
                    }
                    // A replay of the seller's own look-up.
                    attacker.send_to(&sent[0], buyer_address).unwrap();
                    let actions = wallet
                        .choose_buyer(transfer_id, buyer, now(), &mut entropy)
                        .unwrap();
                    perform(
                        actions,
                        &mut storage,
                        &socket,
                        buyer_address,
                        &mut sent,
                        &mut events,
                    );
                }
                Event::Posted { .. } => outcome = Some("posted"),
                Event::Voided { .. } => outcome = Some("voided"),
                _ => {}
            }
        }
        if let Ok((length, _)) = socket.recv_from(&mut buffer)
            && let Ok(received) = wallet.handle_datagram(&buffer[..length], now(), &mut entropy)
        {
            perform(
                received.actions,
                &mut storage,
                &socket,
                buyer_address,
                &mut sent,
                &mut events,
            );
        }
        if wallet.next_timeout().is_some_and(|at| at <= now()) {
            let actions = wallet.handle_timeout(now(), &mut entropy).unwrap();
            perform(
                actions,
                &mut storage,
                &socket,
                buyer_address,
                &mut sent,
                &mut events,
            );
        }
    }
    assert_eq!(
        outcome,
        Some("posted"),
        "the bad datagrams did not disturb the transfer"
    );
    // Replays of everything the seller sent, after the fact, are dropped too.
    for datagram in &sent {
        socket.send_to(datagram, buyer_address).unwrap();
    }
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle && wallet.transfers().iter().any(|t| t.state != "posted") {
        if let Ok((length, _)) = socket.recv_from(&mut buffer)
            && let Ok(received) = wallet.handle_datagram(&buffer[..length], now(), &mut entropy)
        {
            perform(
                received.actions,
                &mut storage,
                &socket,
                buyer_address,
                &mut sent,
                &mut events,
            );
        }
    }
    let (_, buyer_lines, buyer_stderr) = buying.finish();
    assert!(
        buyer_lines.iter().any(|line| line["event"] == "posted"),
        "{buyer_lines:?}"
    );
    let dropped = buyer_stderr
        .lines()
        .filter(|line| line.contains("dropped datagram"))
        .count();
    assert!(
        dropped > bad.len(),
        "every bad datagram logged: {buyer_stderr}"
    );
    for reason in [
        "not issued by our money office",
        "addressed to another wallet",
        "replayed",
        "truncated",
    ] {
        assert!(
            buyer_stderr.to_lowercase().contains(reason),
            "a log line says {reason:?}: {buyer_stderr}"
        );
    }

    // A forged sync upload gets a clear error and changes nothing.
    let (actions, upload) = wallet.begin_sync(now(), &mut entropy).unwrap();
    perform(
        actions,
        &mut storage,
        &socket,
        buyer_address,
        &mut sent,
        &mut events,
    );
    let genuine = upload.encode();
    let before = (
        server.get(&format!("/api/v1/wallets/{seller_id}")),
        server.get("/api/v1/totals"),
        server.fraud(),
    );
    let post = |body: Vec<u8>| {
        server
            .http
            .post(format!("{}/wallet/v1/sync", server.base))
            .body(body)
            .send()
            .unwrap()
    };
    let mut forged = genuine.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let refused = post(forged);
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "sync_not_verified", "{body}");
    let truncated = post(genuine[..genuine.len() / 2].to_vec());
    assert_eq!(truncated.status().as_u16(), 400);
    let after = (
        server.get(&format!("/api/v1/wallets/{seller_id}")),
        server.get("/api/v1/totals"),
        server.fraud(),
    );
    assert_eq!(before, after, "a refused upload changed nothing");
    assert_eq!(before.0["head_seq"], Value::Null);

    // The genuine upload goes through and the ledger follows the wallet.
    let accepted = post(genuine);
    assert!(accepted.status().is_success());
    let reply = SyncReply::decode(&accepted.bytes().unwrap()).unwrap();
    let actions = wallet.finish_sync(&reply).unwrap();
    perform(
        actions,
        &mut storage,
        &socket,
        buyer_address,
        &mut sent,
        &mut events,
    );
    assert_eq!(
        server.ledger_balance_minor(&seller_id),
        wallet.balance().minor_signed()
    );
    assert_eq!(wallet.balance().minor(), 400);
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
}

offpay_test_support::on_every_backend!(
    transfers_through_loss_duplication_reordering_and_a_killed_wallet_end_the_same_on_both_sides,
    a_rolled_back_wallet_is_blocked_on_the_first_evidence_and_refused_offline,
    a_seller_whose_log_voids_a_sale_it_signed_is_blocked,
    bad_datagrams_are_dropped_with_a_log_line_and_a_forged_upload_changes_nothing,
);
