//! `offpay wallet`: a smartphone wallet over UDP, `offpay wallet netem`, and `offpay admin wallet`.
//!
//! The wallet file (`--file F`) is encrypted under the owner's passphrase (from
//! `OFFPAY_WALLET_PASSPHRASE`, or asked for); its log is `F.log`, sealed under a key derived
//! from the wallet's secret (so only the passphrase opens it), appended and forced to disk before
//! every message that promises something; the wallets the money office listed as blocked at the
//! last sync are kept, sealed the same way, in `F.blocked`. All three files are created 0600. Peers are reached over UDP: a look-up goes to
//! every `--peer` address (standing in for a one-hop broadcast), and replies go to the address a
//! peer was last heard from.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use offpay_wallet::driver::{UdpWallet, now_ms};
use offpay_wallet::file::{
    KdfParams, WalletSecrets, create_backup, is_pending_keys, open_pending_keys, open_wallet_file,
    restore_backup, seal_pending_keys, seal_wallet_file,
};
use offpay_wallet::netem::{Faults, FaultyLink, run_proxy};
use offpay_wallet::record::{Record, parse_log};
use offpay_wallet::{
    Action, Credential, Event, LogKey, OsEntropy, Role, SealedFileStorage, SyncReply, TransferId,
    Wallet, WalletId, WalletKeys,
};
use serde_json::{Value, json};

use crate::client::{ApiClient, CallError, path_segment};

/// Environment variable holding the wallet passphrase (never a command-line flag).
pub const PASSPHRASE_VARIABLE: &str = "OFFPAY_WALLET_PASSPHRASE";
/// Longest one socket wait in the wallet loop, so deadlines are checked.
const POLL_WAIT: Duration = Duration::from_millis(50);
/// How long a sync's HTTP exchange may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest sync reply accepted.
const SYNC_REPLY_BYTES_MAX: usize = 8 << 20;
/// Shortest passphrase accepted for a new wallet.
const PASSPHRASE_LENGTH_MIN: usize = 8;

/// Device-side commands.
#[derive(Debug, Args)]
pub struct WalletArgs {
    /// The wallet file (encrypted); its log is FILE.log
    #[arg(long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    /// Print JSON (one object per line) instead of text
    #[arg(long, global = true)]
    json: bool,
    /// The language of the wallet's messages: en, sw or fr [default: en]
    #[arg(long, env = "OFFPAY_LANG", value_name = "LANG", global = true)]
    lang: Option<offpay_text::Language>,
    #[command(subcommand)]
    command: WalletCommand,
}

/// The device's language for this run (`--lang`, `OFFPAY_LANG`), set once at the start.
static LANGUAGE: std::sync::OnceLock<offpay_text::Language> = std::sync::OnceLock::new();

/// Wallet message `id` in the device's language.
fn words(id: offpay_text::Id, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    offpay_text::text(LANGUAGE.get().copied().unwrap_or_default(), id, args)
}

/// A refusal reason in the device's language.
fn reason_words(reason: offpay_wallet::AbortReason) -> String {
    use offpay_text::wallet as text;
    use offpay_wallet::AbortReason;
    let id = match reason {
        AbortReason::Declined => text::REASON_DECLINED,
        AbortReason::InsufficientFunds => text::REASON_INSUFFICIENT_FUNDS,
        AbortReason::LimitExceeded => text::REASON_LIMIT_EXCEEDED,
        AbortReason::UnknownTransfer => text::REASON_UNKNOWN_TRANSFER,
        AbortReason::SellerVoided => text::REASON_SELLER_VOIDED,
        _ => return reason.describe().to_owned(),
    };
    words(id, &[])
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Create a wallet on this device: its keys are made here and sealed in FILE under the
    /// passphrase; the public keys go to FILE.request for the operator, who issues the
    /// credential (`offpay admin wallet issue --request FILE.request --out FILE.issued`); then
    /// `offpay wallet activate --issued FILE.issued`. Needs no operator token.
    Create,
    /// Finish creating a wallet with the credential the operator issued for its keys.
    Activate {
        /// The operator's answer (`offpay admin wallet issue --request … --out …`)
        #[arg(long, value_name = "FILE")]
        issued: PathBuf,
    },
    /// Sell: look for wallets in buyer mode, pick one, ask the price, commit.
    Sell {
        /// Price, e.g. 7.50
        #[arg(long)]
        amount: String,
        /// Only sell to this wallet id [default: the first that answers]
        #[arg(long)]
        buyer: Option<String>,
        /// Sales to make one after another
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Buy: answer sellers' look-ups, show each price and ask whether to pay.
    Buy {
        /// Accept every price without asking (for scripts and tests)
        #[arg(long)]
        yes: bool,
        /// Stop after this many purchases have ended [default: run until idle]
        #[arg(long)]
        count: Option<u32>,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Finish transfers in flight (after a crash), then exit.
    Run {
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Show the balance and the transfers since the last sync.
    Balance,
    /// Show the log records.
    Log,
    /// Upload the log to the money office and apply its reply (charges, resolutions, renewal).
    Sync {
        /// Server base URL
        #[arg(long, env = "OFFPAY_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Write an encrypted backup of the wallet file and its log.
    Backup {
        /// Where to write it
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup to --file; the restored wallet must sync before it pays again.
    Restore {
        /// The backup
        #[arg(long = "from", value_name = "FILE")]
        backup: PathBuf,
        /// Overwrite an existing wallet file
        #[arg(long)]
        force: bool,
    },
    /// A network fault proxy for UDP on loopback: drops, duplicates, reorders and delays.
    Netem(NetemArgs),
}

/// Wallet limits for issue.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// ISO 4217 currency [default: the server's]
    #[arg(long)]
    currency: Option<String>,
    /// Largest balance the wallet may hold [default: 1000]
    #[arg(long)]
    balance_max: Option<String>,
    /// Largest single payment [default: 500]
    #[arg(long)]
    payment_max: Option<String>,
    /// Most the wallet may pay between two syncs [default: 1000]
    #[arg(long)]
    offline_spend_max: Option<String>,
}

/// The UDP link of a running wallet.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// UDP address to listen on (loopback)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where look-ups go (repeat for several peers); also where messages go to a peer whose
    /// address is not known yet
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<SocketAddr>,
    /// Give up after this long
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Exit after nothing has been in flight and nothing was received for this long
    #[arg(long, default_value_t = 3)]
    idle_secs: u64,
}

/// `offpay wallet netem`.
#[derive(Debug, Args)]
pub struct NetemArgs {
    /// Address to listen on
    #[arg(long)]
    listen: SocketAddr,
    /// Address to forward to; its answers go back to the last other sender
    #[arg(long)]
    forward: SocketAddr,
    /// Chance a datagram is lost, e.g. 0.3 or 30%
    #[arg(long, default_value = "0")]
    loss: String,
    /// Chance a datagram is delivered twice
    #[arg(long, default_value = "0")]
    duplicate: String,
    /// Chance a datagram is held back so later ones overtake it
    #[arg(long, default_value = "0")]
    reorder: String,
    /// One-way delay in milliseconds
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Seed of the fault choices
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds [default: run until killed]
    #[arg(long)]
    duration_secs: Option<u64>,
}

/// Runs a device-side command.
pub fn run(args: WalletArgs) -> ExitCode {
    // Log lines (dropped datagrams, resumed transfers) go to stderr; OFFPAY_LOG filters them.
    crate::init_logging();
    let _ = LANGUAGE.set(args.lang.unwrap_or_default());
    let json = args.json;
    let result = match args.command {
        WalletCommand::Netem(netem) => run_netem(netem, json),
        command => match &args.file {
            None => Err("--file FILE is required".to_owned()),
            Some(file) => run_with_file(file, json, command),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if json {
                println!("{}", json!({ "error": message }));
            } else {
                eprintln!("offpay wallet: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run_with_file(file: &Path, json: bool, command: WalletCommand) -> Result<(), String> {
    match command {
        WalletCommand::Create => create_pending(file, json),
        WalletCommand::Activate { issued } => activate(file, &issued, json),
        WalletCommand::Sell {
            amount,
            buyer,
            count,
            link,
        } => sell(file, json, &amount, buyer.as_deref(), count, &link),
        WalletCommand::Buy { yes, count, link } => buy(file, json, yes, count, &link),
        WalletCommand::Run { link } => finish_in_flight(file, json, &link),
        WalletCommand::Balance => balance(file, json),
        WalletCommand::Log => show_log(file, json),
        WalletCommand::Sync { server } => sync(file, json, &server),
        WalletCommand::Backup { out } => backup(file, json, &out),
        WalletCommand::Restore { backup, force } => restore(file, json, &backup, force),
        WalletCommand::Netem(_) => Err("netem takes no --file".into()),
    }
}

// ------------------------------------------------------------------ files and passphrase

fn log_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

fn blocked_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".blocked");
    PathBuf::from(name)
}

fn open_log_storage(file: &Path, keys: &WalletKeys) -> Result<SealedFileStorage, String> {
    let path = log_path(file);
    SealedFileStorage::open(&path, LogKey::derive(keys))
        .map_err(|error| format!("cannot open wallet log {}: {error}", path.display()))
}

/// Hands the wallet the blocked list kept from its last sync, if there is one.
fn load_blocked(file: &Path, key: &LogKey, wallet: &mut Wallet) -> Result<(), String> {
    let path = blocked_path(file);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let blocked = key
        .open_blocked(&bytes)
        .map_err(|error| format!("the blocked list {}: {error}", path.display()))?;
    wallet
        .remember_blocked(&blocked)
        .map_err(|error| format!("the blocked list {}: {error}", path.display()))
}

/// Keeps the blocked list of the last sync beside the log (sealed, 0600, replaced atomically).
fn save_blocked(file: &Path, key: &LogKey, wallet: &Wallet) -> Result<(), String> {
    let path = blocked_path(file);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let sealed = key.seal_blocked(&wallet.blocked_wallets());
    write_new_file(&temporary, &sealed, true)?;
    std::fs::rename(&temporary, &path)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn passphrase(prompt: &str) -> Result<String, String> {
    if let Ok(passphrase) = std::env::var(PASSPHRASE_VARIABLE) {
        return Ok(passphrase);
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| format!("cannot read the passphrase: {error}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn open_secrets(file: &Path) -> Result<WalletSecrets, String> {
    let bytes = std::fs::read(file)
        .map_err(|error| format!("cannot read wallet file {}: {error}", file.display()))?;
    let passphrase = passphrase("wallet passphrase: ")?;
    open_wallet_file(&bytes, passphrase.as_bytes())
        .map_err(|error| format!("cannot open wallet file {}: {error}", file.display()))
}

/// Opens the wallet from its log, cutting off a torn tail. The returned actions (the record of
/// this run) must be performed before anything is sent.
fn open_wallet(file: &Path) -> Result<(Wallet, SealedFileStorage, Vec<Action>), String> {
    let (wallet, storage, actions, _key) = open_wallet_keyed(file)?;
    Ok((wallet, storage, actions))
}

/// [`open_wallet`], with the key that seals the wallet's log and blocked list.
fn open_wallet_keyed(
    file: &Path,
) -> Result<(Wallet, SealedFileStorage, Vec<Action>, LogKey), String> {
    let secrets = open_secrets(file)?;
    let path = log_path(file);
    let mut storage = open_log_storage(file, &secrets.keys)?;
    let (mut wallet, actions, report) =
        Wallet::recover(secrets.keys.clone(), &mut storage, now_ms())
            .map_err(|error| format!("cannot recover wallet log {}: {error}", path.display()))?;
    let torn_bytes = report.torn_bytes + storage.torn_bytes_cut();
    if torn_bytes > 0 {
        tracing::warn!(torn_bytes, "cut off a torn append at the end of the log");
    }
    let key = LogKey::derive(&secrets.keys);
    load_blocked(file, &key, &mut wallet)?;
    for transfer_id in &report.resumed {
        tracing::info!(%transfer_id, "resuming transfer in flight");
    }
    Ok((wallet, storage, actions, key))
}

/// Opens the wallet for reading only: nothing is written or sent, so the record of a run is not
/// needed.
fn read_wallet(file: &Path) -> Result<(Wallet, Vec<u8>), String> {
    let secrets = open_secrets(file)?;
    let path = log_path(file);
    let stored = std::fs::read(&path)
        .map_err(|error| format!("cannot read wallet log {}: {error}", path.display()))?;
    let log = LogKey::derive(&secrets.keys)
        .plain_log(&stored)
        .map_err(|error| format!("wallet log: {error}"))?;
    let parsed = parse_log(&log).map_err(|error| format!("wallet log: {error}"))?;
    let valid = &log[..parsed.valid_bytes as usize];
    let (mut wallet, _actions, _report) =
        Wallet::open(secrets.keys.clone(), valid, now_ms(), false)
            .map_err(|error| format!("cannot open wallet log {}: {error}", path.display()))?;
    load_blocked(file, &LogKey::derive(&secrets.keys), &mut wallet)?;
    Ok((wallet, valid.to_vec()))
}

fn write_new_file(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut handle = options
        .open(path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    handle
        .write_all(bytes)
        .and_then(|()| handle.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn perform_offline(
    storage: &mut SealedFileStorage,
    actions: Vec<Action>,
) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    let mut unsent = 0usize;
    for action in actions {
        match action {
            Action::Persist(frame) => {
                offpay_wallet::LogStorage::append(storage, &frame)
                    .map_err(|error| format!("cannot write the wallet log: {error}"))?;
            }
            Action::Send { .. } | Action::Broadcast(_) => unsent += 1,
            Action::Notify(event) => events.push(event),
        }
    }
    if unsent > 0 {
        tracing::info!(
            datagrams = unsent,
            "not sent (no link now); the peers learn the outcome from their own retries or sync"
        );
    }
    Ok(events)
}

// ------------------------------------------------------------------ create, issue

fn issue_body(keys: &WalletKeys, limits: &LimitArgs) -> Value {
    issue_body_keys(
        &hex_string(&keys.signing_public()),
        &hex_string(&keys.encryption_public()),
        limits,
    )
}

fn issue_body_keys(signing_key: &str, encryption_key: &str, limits: &LimitArgs) -> Value {
    let mut body = json!({
        "signing_key": signing_key,
        "encryption_key": encryption_key,
    });
    for (field, value) in [
        ("currency", &limits.currency),
        ("balance_max", &limits.balance_max),
        ("payment_max", &limits.payment_max),
        ("offline_spend_max", &limits.offline_spend_max),
    ] {
        if let Some(value) = value {
            body[field] = json!(value);
        }
    }
    body
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16)
                .map_err(|_| "not hex".to_owned())
        })
        .collect()
}

fn request_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".request");
    PathBuf::from(name)
}

/// `offpay wallet create`: keys made and sealed on the device; only the public keys leave it.
fn create_pending(file: &Path, json: bool) -> Result<(), String> {
    if file.exists() {
        return Err(format!("{} exists already", file.display()));
    }
    let passphrase = passphrase("new wallet passphrase: ")?;
    if passphrase.len() < PASSPHRASE_LENGTH_MIN {
        return Err(format!(
            "the passphrase must have at least {PASSPHRASE_LENGTH_MIN} characters"
        ));
    }
    let keys = WalletKeys::generate(&mut OsEntropy);
    let sealed = seal_pending_keys(
        &keys,
        passphrase.as_bytes(),
        KdfParams::DEFAULT,
        &mut OsEntropy,
    )
    .map_err(|error| format!("cannot seal the keys: {error}"))?;
    write_new_file(file, &sealed, false)?;
    let request = json!({
        "signing_key": hex_string(&keys.signing_public()),
        "encryption_key": hex_string(&keys.encryption_public()),
    });
    let request_file = request_path(file);
    write_new_file(&request_file, request.to_string().as_bytes(), true)?;
    say(
        json,
        &json!({ "event": "keys_created", "file": file.display().to_string(),
                 "request": request_file.display().to_string() }),
        || {
            format!(
                "keys made and sealed in {}; give {} to the operator to issue the wallet, then \
                 run `offpay wallet activate --issued <the operator's answer>`",
                file.display(),
                request_file.display()
            )
        },
    );
    Ok(())
}

/// `offpay wallet activate`: the operator's credential for the pending keys makes the wallet.
fn activate(file: &Path, issued: &Path, json: bool) -> Result<(), String> {
    if log_path(file).exists() {
        return Err(format!(
            "{} exists: this wallet was activated already",
            log_path(file).display()
        ));
    }
    let pending =
        std::fs::read(file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    if !is_pending_keys(&pending) {
        return Err(format!(
            "{} is not a wallet waiting for its credential",
            file.display()
        ));
    }
    let passphrase = passphrase("wallet passphrase: ")?;
    let keys = open_pending_keys(&pending, passphrase.as_bytes())
        .map_err(|error| format!("cannot open {}: {error}", file.display()))?;
    let answer: Value = serde_json::from_slice(
        &std::fs::read(issued)
            .map_err(|error| format!("cannot read {}: {error}", issued.display()))?,
    )
    .map_err(|error| format!("{} is not the operator's answer: {error}", issued.display()))?;
    let credential = Credential::decode(&hex_bytes(
        answer["credential"].as_str().unwrap_or_default(),
    )?)
    .map_err(|error| format!("the issued credential is malformed: {error}"))?;
    let office_public: [u8; 32] = hex_bytes(answer["office_public"].as_str().unwrap_or_default())?
        .try_into()
        .map_err(|_| "the office's key in the answer is malformed".to_owned())?;
    let (wallet, actions) =
        Wallet::create(keys.clone(), credential.clone(), office_public, now_ms())
            .map_err(|error| format!("the issued credential does not fit these keys: {error}"))?;
    let secrets = WalletSecrets {
        keys,
        credential,
        office_public,
    };
    let sealed = seal_wallet_file(
        &secrets,
        passphrase.as_bytes(),
        KdfParams::DEFAULT,
        &mut OsEntropy,
    )
    .map_err(|error| format!("cannot seal the wallet file: {error}"))?;
    let mut storage = open_log_storage(file, &secrets.keys)?;
    perform_offline(&mut storage, actions)?;
    let mut replacement = file.as_os_str().to_owned();
    replacement.push(".new");
    let replacement = PathBuf::from(replacement);
    write_new_file(&replacement, &sealed, true)?;
    std::fs::rename(&replacement, file)
        .map_err(|error| format!("cannot write {}: {error}", file.display()))?;
    let _ = std::fs::remove_file(request_path(file));
    say(
        json,
        &json!({ "event": "activated", "wallet_id": wallet.id().to_string(),
                 "file": file.display().to_string() }),
        || format!("wallet {} ready in {}", wallet.id(), file.display()),
    );
    Ok(())
}

/// `offpay admin wallet issue --request`: the office signs a credential for a device's keys.
fn issue_request(
    client: &ApiClient,
    request: &Path,
    out: Option<&Path>,
    limits: &LimitArgs,
    json: bool,
) -> Result<(), String> {
    let keys: Value = serde_json::from_slice(
        &std::fs::read(request)
            .map_err(|error| format!("cannot read {}: {error}", request.display()))?,
    )
    .map_err(|error| format!("{} is not a wallet request: {error}", request.display()))?;
    let body = issue_body_keys(
        keys["signing_key"].as_str().unwrap_or_default(),
        keys["encryption_key"].as_str().unwrap_or_default(),
        limits,
    );
    let answer = client
        .post("/api/v1/wallets", &body)
        .map_err(|error| error.to_string())?;
    match out {
        Some(out) => {
            write_new_file(out, answer.to_string().as_bytes(), false)?;
            say(
                json,
                &json!({ "wallet_id": answer["wallet_id"], "issued": out.display().to_string() }),
                || {
                    format!(
                        "wallet {} issued; hand {} to the device",
                        answer["wallet_id"].as_str().unwrap_or("?"),
                        out.display()
                    )
                },
            );
        }
        None => println!("{answer}"),
    }
    Ok(())
}

/// Keys made here, the credential issued by the office, the file sealed under the passphrase,
/// the first records written.
fn create_wallet(
    client: &ApiClient,
    file: &Path,
    limits: &LimitArgs,
    json: bool,
) -> Result<(), String> {
    if file.exists() {
        return Err(format!("{} exists already", file.display()));
    }
    let passphrase = passphrase("new wallet passphrase: ")?;
    if passphrase.len() < PASSPHRASE_LENGTH_MIN {
        return Err(format!(
            "the passphrase must have at least {PASSPHRASE_LENGTH_MIN} characters"
        ));
    }
    let keys = WalletKeys::generate(&mut OsEntropy);
    let answer = client
        .post("/api/v1/wallets", &issue_body(&keys, limits))
        .map_err(|error| error.to_string())?;
    let credential_hex = answer["credential"].as_str().unwrap_or_default();
    let credential = Credential::decode(&hex_bytes(credential_hex)?)
        .map_err(|error| format!("the office sent a malformed credential: {error}"))?;
    let office_public: [u8; 32] = hex_bytes(answer["office_public"].as_str().unwrap_or_default())?
        .try_into()
        .map_err(|_| "the office sent a malformed key".to_owned())?;
    let (wallet, actions) =
        Wallet::create(keys.clone(), credential.clone(), office_public, now_ms())
            .map_err(|error| format!("the issued credential does not fit: {error}"))?;
    let secrets = WalletSecrets {
        keys,
        credential,
        office_public,
    };
    let sealed = seal_wallet_file(
        &secrets,
        passphrase.as_bytes(),
        KdfParams::DEFAULT,
        &mut OsEntropy,
    )
    .map_err(|error| format!("cannot seal the wallet file: {error}"))?;
    write_new_file(file, &sealed, false)?;
    let mut storage = open_log_storage(file, &secrets.keys)?;
    perform_offline(&mut storage, actions)?;
    if json {
        println!(
            "{}",
            json!({ "wallet_id": wallet.id().to_string(), "file": file.display().to_string(),
                    "account": answer["account"], "limits": answer["limits"] })
        );
    } else {
        println!(
            "wallet {} created in {} (ledger account {})",
            wallet.id(),
            file.display(),
            answer["account"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

// ------------------------------------------------------------------ the UDP loop

fn event_json(event: &Event) -> Value {
    let role = |role: &Role| match role {
        Role::Seller => "seller",
        Role::Buyer => "buyer",
    };
    match event {
        Event::BuyerAnswered { transfer_id, buyer } => {
            json!({ "event": "buyer_answered", "transfer_id": transfer_id.to_string(), "buyer": buyer.to_string() })
        }
        Event::PriceOffered {
            transfer_id,
            seller,
            amount,
        } => json!({ "event": "price_offered", "transfer_id": transfer_id.to_string(),
                      "seller": seller.to_string(), "amount": amount.decimal().to_string() }),
        Event::Posted {
            transfer_id,
            role: side,
            amount,
        } => json!({ "event": "posted", "transfer_id": transfer_id.to_string(), "role": role(side),
                      "amount": amount.decimal().to_string() }),
        Event::Voided {
            transfer_id,
            role: side,
        } => {
            json!({ "event": "voided", "transfer_id": transfer_id.to_string(), "role": role(side) })
        }
        Event::AwaitingResolution { transfer_id } => {
            json!({ "event": "awaiting_resolution", "transfer_id": transfer_id.to_string() })
        }
        Event::PaymentRefused {
            transfer_id,
            reason,
        } => json!({ "event": "payment_refused", "transfer_id": transfer_id.to_string(),
                      "reason": reason.name(), "message": reason.describe() }),
        Event::Charged { amount } => {
            json!({ "event": "charged", "amount": amount.decimal().to_string() })
        }
        _ => json!({ "event": "unknown" }),
    }
}

fn say(json: bool, value: &Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
    let _ = std::io::stdout().flush();
}

fn show_event(json: bool, event: &Event) {
    use offpay_text::wallet as text;
    say(json, &event_json(event), || match event {
        Event::BuyerAnswered { buyer, .. } => words(text::BUYER_ANSWERED, &[("buyer", buyer)]),
        Event::PriceOffered { seller, amount, .. } => words(
            text::PRICE_OFFERED,
            &[("seller", seller), ("amount", amount)],
        ),
        Event::Posted { amount, role, .. } => match role {
            Role::Seller => words(text::RECEIVED, &[("amount", amount)]),
            Role::Buyer => words(text::PAID, &[("amount", amount)]),
        },
        Event::Voided { .. } => words(text::CANCELLED, &[]),
        Event::AwaitingResolution { transfer_id } => {
            words(text::AWAITING, &[("transfer", transfer_id)])
        }
        Event::PaymentRefused { reason, .. } => {
            words(text::REFUSED, &[("reason", &reason_words(*reason))])
        }
        Event::Charged { amount } => words(text::CHARGED, &[("amount", amount)]),
        _ => words(text::UNKNOWN_EVENT, &[]),
    });
}

fn bind(link: &LinkArgs) -> Result<UdpSocket, String> {
    if !link.listen.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address: this wallet talks UDP on loopback only",
            link.listen
        ));
    }
    if let Some(peer) = link.peers.iter().find(|peer| !peer.ip().is_loopback()) {
        return Err(format!("peer {peer} is not a loopback address"));
    }
    UdpSocket::bind(link.listen).map_err(|error| format!("cannot bind {}: {error}", link.listen))
}

fn start_driver(
    file: &Path,
    link: &LinkArgs,
    json: bool,
) -> Result<UdpWallet<SealedFileStorage>, String> {
    let (wallet, storage, actions) = open_wallet(file)?;
    let socket = bind(link)?;
    let address = socket
        .local_addr()
        .map_err(|error| format!("socket: {error}"))?;
    let mut driver = UdpWallet::new(
        wallet,
        storage,
        socket,
        link.peers.clone(),
        Box::new(OsEntropy),
    );
    let events = driver.perform(actions).map_err(storage_failure)?;
    say(
        json,
        &json!({ "event": "listening", "wallet_id": driver.wallet().id().to_string(), "address": address.to_string() }),
        || {
            format!(
                "wallet {} listening on udp://{address}",
                driver.wallet().id()
            )
        },
    );
    for event in &events {
        show_event(json, event);
    }
    Ok(driver)
}

fn storage_failure(error: offpay_wallet::Error) -> String {
    format!("{error}; the wallet stopped (run it again: it recovers from its log)")
}

/// One poll: logs a dropped datagram, returns the events.
fn poll(driver: &mut UdpWallet<SealedFileStorage>) -> Result<Vec<Event>, String> {
    let polled = driver.poll(POLL_WAIT).map_err(storage_failure)?;
    if let Some((from, error)) = polled.refused {
        tracing::warn!(%from, %error, "dropped datagram");
    }
    Ok(polled.events)
}

fn in_flight(wallet: &Wallet) -> usize {
    wallet
        .transfers()
        .iter()
        .filter(|status| {
            !matches!(
                status.state,
                "posted" | "voided" | "forgotten" | "awaiting-commit-request" | "awaiting-buyers"
            )
        })
        .count()
}

/// Runs the loop until nothing is in flight and nothing arrived for `idle`, or `deadline`.
fn linger(
    driver: &mut UdpWallet<SealedFileStorage>,
    json: bool,
    idle: Duration,
    deadline: Instant,
) -> Result<(), String> {
    let mut quiet_since = Instant::now();
    let mut received = driver.stats().datagrams_received;
    while Instant::now() < deadline {
        for event in poll(driver)? {
            show_event(json, &event);
        }
        let now_received = driver.stats().datagrams_received;
        if now_received != received || in_flight(driver.wallet()) > 0 {
            received = now_received;
            quiet_since = Instant::now();
        }
        if quiet_since.elapsed() >= idle {
            return Ok(());
        }
    }
    Ok(())
}

fn summary(driver: &UdpWallet<SealedFileStorage>, json: bool) {
    let wallet = driver.wallet();
    let stats = driver.stats();
    let unfinished: Vec<String> = wallet
        .transfers()
        .iter()
        .filter(|s| !matches!(s.state, "posted" | "voided" | "forgotten"))
        .map(|s| format!("{}:{}", s.transfer_id, s.state))
        .collect();
    say(
        json,
        &json!({ "event": "stopped", "balance": wallet.balance().decimal().to_string(),
                 "held": wallet.held().decimal().to_string(), "unfinished": unfinished,
                 "datagrams_sent": stats.datagrams_sent, "datagrams_received": stats.datagrams_received,
                 "datagrams_refused": stats.datagrams_refused, "log_appends": stats.log_appends }),
        || {
            let mut text = format!(
                "balance {} (held {}); {} datagrams sent, {} received, {} dropped",
                wallet.balance(),
                wallet.held(),
                stats.datagrams_sent,
                stats.datagrams_received,
                stats.datagrams_refused
            );
            if !unfinished.is_empty() {
                text.push_str(&format!(
                    "\nunfinished (resumed by the next run or resolved at sync): {}",
                    unfinished.join(", ")
                ));
            }
            text
        },
    );
}

fn sell(
    file: &Path,
    json: bool,
    amount: &str,
    buyer: Option<&str>,
    count: u32,
    link: &LinkArgs,
) -> Result<(), String> {
    let mut driver = start_driver(file, link, json)?;
    let currency = driver.wallet().credential().currency;
    let amount = offpay_ledger::Amount::parse(amount, currency)
        .map_err(|error| format!("amount {amount:?}: {error}"))?;
    let wanted: Option<WalletId> = match buyer {
        Some(text) => Some(WalletId(
            hex_bytes(text)?
                .try_into()
                .map_err(|_| format!("buyer {text:?} is not a wallet id"))?,
        )),
        None => None,
    };
    let deadline = Instant::now() + Duration::from_secs(link.timeout_secs);
    let mut failures = 0u32;
    for _ in 0..count {
        let (transfer_id, events) = driver
            .call(|wallet, now, entropy| wallet.start_sale(amount, now, entropy))
            .map_err(|error| format!("cannot start a sale: {error}"))?;
        say(
            json,
            &json!({ "event": "sale_started", "transfer_id": transfer_id.to_string(), "amount": amount.decimal().to_string() }),
            || format!("sale {transfer_id} for {amount}: looking for buyers"),
        );
        let mut pending = events;
        let mut chosen = false;
        let mut ended = false;
        while !ended {
            if Instant::now() >= deadline {
                summary(&driver, json);
                return Err(format!("timed out during sale {transfer_id}"));
            }
            for event in std::mem::take(&mut pending) {
                show_event(json, &event);
                match event {
                    Event::BuyerAnswered {
                        transfer_id: sale,
                        buyer,
                    } if sale == transfer_id && !chosen && wanted.is_none_or(|w| w == buyer) => {
                        let (_, more) = driver
                            .call(|wallet, now, entropy| {
                                Ok(((), wallet.choose_buyer(sale, buyer, now, entropy)?))
                            })
                            .map_err(|error| format!("cannot choose buyer {buyer}: {error}"))?;
                        chosen = true;
                        pending.extend(more);
                    }
                    Event::Posted {
                        transfer_id: sale, ..
                    }
                    | Event::Voided {
                        transfer_id: sale, ..
                    } if sale == transfer_id => ended = true,
                    _ => {}
                }
            }
            if ended {
                break;
            }
            if !chosen && driver.wallet().next_timeout().is_none() {
                let _ = driver.call(|wallet, _, _| {
                    Ok(((), wallet.cancel_sale(transfer_id).map(|()| Vec::new())?))
                });
                say(
                    json,
                    &json!({ "event": "no_buyer", "transfer_id": transfer_id.to_string() }),
                    || "no wallet in buyer mode answered".to_owned(),
                );
                failures += 1;
                break;
            }
            pending.extend(poll(&mut driver)?);
        }
    }
    // Stay until the buyers have acknowledged (or the deadline).
    linger(
        &mut driver,
        json,
        Duration::from_secs(link.idle_secs),
        deadline,
    )?;
    summary(&driver, json);
    if failures == count {
        return Err("no sale was made".into());
    }
    Ok(())
}

fn ask_to_pay(seller: &WalletId, amount: &str) -> bool {
    eprint!("seller {seller} asks {amount}. Pay? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes")
}

fn buy(
    file: &Path,
    json: bool,
    yes: bool,
    count: Option<u32>,
    link: &LinkArgs,
) -> Result<(), String> {
    let mut driver = start_driver(file, link, json)?;
    driver.set_buyer_mode(true);
    let deadline = Instant::now() + Duration::from_secs(link.timeout_secs);
    let mut ended = 0u32;
    let respond = |driver: &mut UdpWallet<SealedFileStorage>,
                   event: &Event|
     -> Result<u32, String> {
        let mut ended_now = 0u32;
        match event {
            Event::PriceOffered {
                transfer_id,
                seller,
                amount,
            } => {
                let transfer_id = *transfer_id;
                let accept = yes || ask_to_pay(seller, &amount.to_string());
                let result = if accept {
                    driver.call(|wallet, now, entropy| {
                        Ok(((), wallet.approve(transfer_id, now, entropy)?))
                    })
                } else {
                    driver
                        .call(|wallet, _, entropy| Ok(((), wallet.decline(transfer_id, entropy)?)))
                };
                let ((), events) =
                    result.map_err(|error| format!("transfer {transfer_id}: {error}"))?;
                say(
                    json,
                    &json!({ "event": if accept { "approved" } else { "declined" }, "transfer_id": transfer_id.to_string() }),
                    || {
                        if accept {
                            "approved: value held, agreement sent".to_owned()
                        } else {
                            "declined".to_owned()
                        }
                    },
                );
                for event in &events {
                    show_event(json, event);
                    if matches!(
                        event,
                        Event::Posted { .. } | Event::Voided { .. } | Event::PaymentRefused { .. }
                    ) {
                        ended_now += 1;
                    }
                }
            }
            Event::Posted { .. } | Event::Voided { .. } => ended_now += 1,
            _ => {}
        }
        Ok(ended_now)
    };
    let idle = Duration::from_secs(link.idle_secs);
    let mut quiet_since = Instant::now();
    let mut received = driver.stats().datagrams_received;
    while Instant::now() < deadline {
        for event in poll(&mut driver)? {
            show_event(json, &event);
            ended += respond(&mut driver, &event)?;
        }
        if count.is_some_and(|count| ended >= count) {
            break;
        }
        let now_received = driver.stats().datagrams_received;
        if now_received != received || in_flight(driver.wallet()) > 0 {
            received = now_received;
            quiet_since = Instant::now();
        }
        if quiet_since.elapsed() >= idle {
            break;
        }
    }
    // Answer the seller's last retransmissions (a lost acknowledgement) before leaving.
    driver.set_buyer_mode(false);
    linger(&mut driver, json, idle, deadline)?;
    summary(&driver, json);
    Ok(())
}

fn finish_in_flight(file: &Path, json: bool, link: &LinkArgs) -> Result<(), String> {
    let mut driver = start_driver(file, link, json)?;
    let deadline = Instant::now() + Duration::from_secs(link.timeout_secs);
    linger(
        &mut driver,
        json,
        Duration::from_secs(link.idle_secs),
        deadline,
    )?;
    summary(&driver, json);
    Ok(())
}

// ------------------------------------------------------------------ offline commands

fn balance(file: &Path, json: bool) -> Result<(), String> {
    let (wallet, _) = read_wallet(file)?;
    let transfers: Vec<Value> = wallet
        .transfers()
        .iter()
        .map(|status| {
            json!({
                "transfer_id": status.transfer_id.to_string(),
                "role": match status.role { Role::Seller => "seller", Role::Buyer => "buyer" },
                "state": status.state,
                "amount": status.amount.map(|a| a.decimal().to_string()),
                "counterparty": status.counterparty.map(|c| c.to_string()),
            })
        })
        .collect();
    let credential = wallet.credential();
    say(
        json,
        &json!({
            "wallet_id": wallet.id().to_string(),
            "currency": credential.currency.code(),
            "balance": wallet.balance().decimal().to_string(),
            "balance_minor": wallet.balance().minor(),
            "held": wallet.held().decimal().to_string(),
            "held_minor": wallet.held().minor(),
            "spent_since_sync": wallet.spent_since_sync().decimal().to_string(),
            "credential_expires_at_ms": credential.expires_at_ms,
            "log_head": wallet.log_head(),
            "transfers": transfers,
        }),
        || {
            let mut text = format!(
                "wallet {}\nbalance {} (held {}, paid since sync {})",
                wallet.id(),
                wallet.balance(),
                wallet.held(),
                wallet.spent_since_sync()
            );
            for status in wallet.transfers() {
                text.push_str(&format!(
                    "\n  {} {} {} {}",
                    status.transfer_id,
                    match status.role {
                        Role::Seller => "sold",
                        Role::Buyer => "bought",
                    },
                    status.state,
                    status.amount.map(|a| a.to_string()).unwrap_or_default()
                ));
            }
            text
        },
    );
    Ok(())
}

/// One line per record: what it says, without secrets (records hold none).
fn record_json(seq: u64, record: &Record) -> Value {
    let id = |transfer_id: &TransferId| transfer_id.to_string();
    match record {
        Record::Genesis { credential, .. } => {
            json!({ "seq": seq, "kind": "genesis", "wallet_id": credential.wallet_id.to_string() })
        }
        Record::Opened { boot, restored } => {
            json!({ "seq": seq, "kind": "opened", "boot": boot, "restored": restored })
        }
        Record::Charged { voucher } => json!({ "seq": seq, "kind": "charged",
            "charge_seq": voucher.charge_seq, "amount": voucher.amount.decimal().to_string() }),
        Record::SellerPending { terms, .. } => json!({ "seq": seq, "kind": "seller_pending",
            "transfer_id": id(&terms.transfer_id), "buyer": terms.buyer.to_string(),
            "amount": terms.amount.decimal().to_string() }),
        Record::SellerCommitted {
            transfer_id,
            agreement,
            ..
        } => json!({ "seq": seq, "kind": "seller_committed", "transfer_id": id(transfer_id),
            "outcome": "posted", "buyer_payment_number": agreement.buyer_spend_seq }),
        Record::SellerVoided { transfer_id } => {
            json!({ "seq": seq, "kind": "seller_voided", "transfer_id": id(transfer_id), "outcome": "voided" })
        }
        Record::SellerComplete { transfer_id } => {
            json!({ "seq": seq, "kind": "seller_complete", "transfer_id": id(transfer_id) })
        }
        Record::BuyerPrepared {
            terms, agreement, ..
        } => json!({ "seq": seq, "kind": "buyer_prepared", "transfer_id": id(&terms.transfer_id),
            "seller": terms.seller.to_string(), "amount": terms.amount.decimal().to_string(),
            "payment_number": agreement.buyer_spend_seq }),
        Record::BuyerPosted { transfer_id, .. } => {
            json!({ "seq": seq, "kind": "buyer_posted", "transfer_id": id(transfer_id), "outcome": "posted" })
        }
        Record::BuyerVoided { transfer_id } => {
            json!({ "seq": seq, "kind": "buyer_voided", "transfer_id": id(transfer_id), "outcome": "voided" })
        }
        Record::Resolved { resolution } => json!({ "seq": seq, "kind": "resolved",
            "transfer_id": id(&resolution.transfer_id),
            "outcome": match resolution.outcome { offpay_wallet::Outcome::Posted => "posted", offpay_wallet::Outcome::Voided => "voided" } }),
        Record::CredentialRenewed { credential } => {
            json!({ "seq": seq, "kind": "credential_renewed",
            "expires_at_ms": credential.expires_at_ms })
        }
        Record::Synced { through_seq, .. } => {
            json!({ "seq": seq, "kind": "synced", "through_seq": through_seq })
        }
        other => json!({ "seq": seq, "kind": format!("{other:?}") }),
    }
}

fn show_log(file: &Path, json: bool) -> Result<(), String> {
    let (_wallet, log) = read_wallet(file)?;
    let parsed = parse_log(&log).map_err(|error| format!("wallet log: {error}"))?;
    for record in &parsed.records {
        let value = record_json(record.seq, &record.record);
        say(json, &value, || {
            let mut text = format!(
                "{:>6} {}",
                record.seq,
                value["kind"].as_str().unwrap_or("?")
            );
            for field in ["transfer_id", "amount", "outcome", "through_seq"] {
                if let Some(v) = value.get(field) {
                    text.push_str(&format!(
                        " {field}={}",
                        v.as_str().map_or(v.to_string(), str::to_owned)
                    ));
                }
            }
            text
        });
    }
    Ok(())
}

fn post_upload(server: &str, upload: Vec<u8>) -> Result<Vec<u8>, String> {
    let http = crate::client::http_builder()?
        .timeout(SYNC_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
    let url = format!("{}/wallet/v1/sync", server.trim_end_matches('/'));
    let response = http
        .post(&url)
        .header("content-type", "application/octet-stream")
        .body(upload)
        .send()
        .map_err(|error| format!("cannot reach the money office at {server}: {error}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .map_err(|error| format!("the money office's answer broke off: {error}"))?;
    if body.len() > SYNC_REPLY_BYTES_MAX {
        return Err("the money office's answer is too large".into());
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(format!(
            "the money office refused the sync: {message} (HTTP {status})"
        ));
    }
    Ok(body.to_vec())
}

/// Uploads the log through `exchange` (upload bytes in, reply bytes out) and applies the reply.
fn sync_wallet(
    wallet: &mut Wallet,
    storage: &mut SealedFileStorage,
    exchange: &dyn Fn(Vec<u8>) -> Result<Vec<u8>, String>,
) -> Result<Vec<Event>, String> {
    let (actions, upload) = wallet
        .begin_sync(now_ms(), &mut OsEntropy)
        .map_err(|error| format!("cannot prepare the sync: {error}"))?;
    let mut events = perform_offline(storage, actions)?;
    let reply_bytes = exchange(upload.encode())?;
    let reply = SyncReply::decode(&reply_bytes)
        .map_err(|error| format!("the money office sent a malformed reply: {error}"))?;
    let actions = wallet
        .finish_sync(&reply)
        .map_err(|error| format!("the money office's reply was refused: {error}"))?;
    events.extend(perform_offline(storage, actions)?);
    Ok(events)
}

fn sync(file: &Path, json: bool, server: &str) -> Result<(), String> {
    let (mut wallet, mut storage, actions, key) = open_wallet_keyed(file)?;
    perform_offline(&mut storage, actions)?;
    let events = sync_wallet(&mut wallet, &mut storage, &|upload| {
        post_upload(server, upload)
    })?;
    save_blocked(file, &key, &wallet)?;
    for event in &events {
        show_event(json, event);
    }
    for status in wallet.transfers() {
        if status.role == Role::Buyer && status.state == "prepared" {
            let seller = status
                .counterparty
                .map(|id| id.to_string())
                .unwrap_or_default();
            let amount = status.amount.map(|a| a.to_string()).unwrap_or_default();
            say(
                json,
                &json!({ "event": "still_held", "transfer_id": status.transfer_id.to_string(),
                         "seller": seller, "amount": status.amount.map(|a| a.decimal().to_string()) }),
                || {
                    format!(
                        "payment {} of {amount} to seller {seller} is still held: the money \
                         office has no decision from that seller yet; it comes when the seller \
                         answers or syncs (or a day after the office blocks it)",
                        status.transfer_id
                    )
                },
            );
        }
    }
    if wallet.blocked_by_office() {
        say(
            json,
            &json!({ "event": "wallet_blocked", "wallet_id": wallet.id().to_string() }),
            || {
                "the money office has blocked this wallet: its credential will not be renewed \
                 and other wallets refuse it; ask the operator"
                    .to_owned()
            },
        );
    }
    say(
        json,
        &json!({ "event": "synced", "wallet_id": wallet.id().to_string(),
                 "balance": wallet.balance().decimal().to_string(), "balance_minor": wallet.balance().minor(),
                 "held": wallet.held().decimal().to_string(), "held_minor": wallet.held().minor(),
                 "credential_expires_at_ms": wallet.credential().expires_at_ms }),
        || {
            format!(
                "synced; balance {} (held {})",
                wallet.balance(),
                wallet.held()
            )
        },
    );
    Ok(())
}

fn backup(file: &Path, json: bool, out: &Path) -> Result<(), String> {
    let wallet_file =
        std::fs::read(file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let log = std::fs::read(log_path(file))
        .map_err(|error| format!("cannot read the wallet log: {error}"))?;
    // Checks the passphrase before sealing anything under it.
    open_secrets(file)?;
    let passphrase = passphrase("wallet passphrase: ")?;
    let sealed = create_backup(
        &wallet_file,
        &log,
        passphrase.as_bytes(),
        KdfParams::DEFAULT,
        &mut OsEntropy,
    )
    .map_err(|error| format!("cannot make the backup: {error}"))?;
    write_new_file(out, &sealed, false)?;
    say(
        json,
        &json!({ "event": "backed_up", "out": out.display().to_string(), "bytes": sealed.len() }),
        || format!("backup written to {}", out.display()),
    );
    Ok(())
}

fn restore(file: &Path, json: bool, from: &Path, force: bool) -> Result<(), String> {
    let bytes =
        std::fs::read(from).map_err(|error| format!("cannot read {}: {error}", from.display()))?;
    let passphrase = passphrase("wallet passphrase: ")?;
    let (wallet_file, log) = restore_backup(&bytes, passphrase.as_bytes())
        .map_err(|error| format!("cannot open the backup: {error}"))?;
    let secrets = open_wallet_file(&wallet_file, passphrase.as_bytes())
        .map_err(|error| format!("the backup's wallet file: {error}"))?;
    let plain = LogKey::derive(&secrets.keys)
        .plain_log(&log)
        .map_err(|error| format!("the backup's log: {error}"))?;
    let (wallet, actions, _report) = Wallet::open(secrets.keys.clone(), &plain, now_ms(), true)
        .map_err(|error| format!("the backup's log: {error}"))?;
    if file.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it with the backup",
            file.display()
        ));
    }
    write_new_file(file, &wallet_file, true)?;
    write_new_file(&log_path(file), &log, true)?;
    // The blocked list of the live wallet belongs to a later state; the next sync brings it.
    let _ = std::fs::remove_file(blocked_path(file));
    let mut storage = open_log_storage(file, &secrets.keys)?;
    perform_offline(&mut storage, actions)?;
    say(
        json,
        &json!({ "event": "restored", "wallet_id": wallet.id().to_string(), "must_sync_before_paying": true }),
        || {
            format!(
                "wallet {} restored; it must sync before it pays again",
                wallet.id()
            )
        },
    );
    Ok(())
}

// ------------------------------------------------------------------ netem

fn run_netem(args: NetemArgs, json: bool) -> Result<(), String> {
    if !args.listen.ip().is_loopback() || !args.forward.ip().is_loopback() {
        return Err("netem works on loopback addresses only".into());
    }
    let faults = Faults {
        loss_ppm: Faults::parse_rate(&args.loss).map_err(|e| format!("--loss: {e}"))?,
        duplicate_ppm: Faults::parse_rate(&args.duplicate)
            .map_err(|e| format!("--duplicate: {e}"))?,
        reorder_ppm: Faults::parse_rate(&args.reorder).map_err(|e| format!("--reorder: {e}"))?,
        delay_ms: args.delay_ms,
    };
    let link = FaultyLink::new(faults, args.seed)?;
    let socket = UdpSocket::bind(args.listen)
        .map_err(|error| format!("cannot bind {}: {error}", args.listen))?;
    let address = socket.local_addr().map_err(|error| error.to_string())?;
    say(
        json,
        &json!({ "event": "netem_listening", "address": address.to_string(), "forward": args.forward.to_string() }),
        || {
            format!(
                "netem listening on udp://{address}, forwarding to {}",
                args.forward
            )
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(seconds) = args.duration_secs {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let stats = run_proxy(&socket, args.forward, link, &stop).map_err(|error| error.to_string())?;
    say(
        json,
        &json!({ "event": "netem_stopped", "submitted": stats.submitted, "delivered": stats.delivered,
                 "dropped": stats.dropped, "duplicated": stats.duplicated, "reordered": stats.reordered }),
        || format!("{stats:?}"),
    );
    Ok(())
}

// ------------------------------------------------------------------ admin

/// Operator commands under `offpay admin wallet`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Issue a wallet: make its keys here, have the office sign its credential, write FILE.
    Issue {
        /// The wallet file to create here, keys and all (its log is FILE.log); for a device
        /// that made its own keys, use --request instead
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "request",
            conflicts_with = "request"
        )]
        file: Option<PathBuf>,
        /// A device's request (`offpay wallet create` wrote it): issue a credential for its keys
        #[arg(long, value_name = "FILE")]
        request: Option<PathBuf>,
        /// Where to write the answer for the device (with --request) [default: print it]
        #[arg(long, value_name = "FILE", requires = "request")]
        out: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Charge a wallet from the operator float (or --from); it picks the value up at its next
    /// sync.
    Charge {
        /// Wallet id
        wallet: String,
        /// Amount, e.g. 100 or 25.50
        amount: String,
        /// Funding account [default: operator:float]
        #[arg(long)]
        from: Option<String>,
    },
    /// Show what the office knows about a wallet.
    Show {
        /// Wallet id
        wallet: String,
    },
    /// Block a lost or stolen wallet.
    Block {
        /// Wallet id
        wallet: String,
    },
    /// Decide the case the money office opened when it blocked a wallet on evidence of a cheat
    /// (the evidence is in the fraud queue): confirm keeps it blocked for good, dismiss lifts
    /// the block.
    Case {
        /// Wallet id
        wallet: String,
        /// confirm or dismiss
        #[arg(long, value_parser = ["confirm", "dismiss"])]
        decision: String,
    },
    /// Move a blocked, expired wallet's value (less what it may still have spent) to a new one.
    Reissue {
        /// The lost wallet
        wallet: String,
        /// The owner's new wallet
        #[arg(long)]
        to: String,
    },
    /// Release what a reissue held back, a credential lifetime after the lost one expired.
    Release {
        /// The lost wallet
        wallet: String,
        /// The owner's new wallet
        #[arg(long)]
        to: String,
    },
    /// Void a transfer whose buyer is prepared and whose seller was blocked a day ago or more
    /// (or has expired); the buyer's own sync does this too.
    Void {
        /// Transfer id
        transfer: String,
    },
}

fn print_answer(json: bool, answer: Result<Value, CallError>) -> ExitCode {
    match answer {
        Ok(value) => {
            if json {
                println!("{value}");
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                match &error {
                    CallError::Api { body, .. } => println!("{body}"),
                    CallError::Transport(message) => {
                        println!(
                            "{}",
                            json!({ "error": { "code": "transport", "message": message } })
                        );
                    }
                }
            } else {
                eprintln!("offpay admin wallet: {error}");
            }
            crate::exit::for_call(&error)
        }
    }
}

/// Runs an operator command.
pub fn run_admin(client: &ApiClient, json: bool, command: AdminCommand) -> ExitCode {
    let wallet_path = |id: &str, rest: &str| format!("/api/v1/wallets/{}{rest}", path_segment(id));
    match command {
        AdminCommand::Issue {
            file,
            request,
            out,
            limits,
        } => {
            let result = match (&file, &request) {
                (_, Some(request)) => issue_request(client, request, out.as_deref(), &limits, json),
                (Some(file), None) => create_wallet(client, file, &limits, json),
                (None, None) => Err("name --file or --request".to_owned()),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("offpay admin wallet issue: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        AdminCommand::Charge {
            wallet,
            amount,
            from,
        } => {
            let mut body = json!({ "amount": amount });
            if let Some(from) = from {
                body["from"] = json!(from);
            }
            print_answer(json, client.post(&wallet_path(&wallet, "/charge"), &body))
        }
        AdminCommand::Show { wallet } => print_answer(json, client.get(&wallet_path(&wallet, ""))),
        AdminCommand::Block { wallet } => print_answer(
            json,
            client.post(&wallet_path(&wallet, "/block"), &json!({})),
        ),
        AdminCommand::Case { wallet, decision } => print_answer(
            json,
            client.post(
                &wallet_path(&wallet, "/case"),
                &json!({ "decision": decision }),
            ),
        ),
        AdminCommand::Reissue { wallet, to } => print_answer(
            json,
            client.post(&wallet_path(&wallet, "/reissue"), &json!({ "to": to })),
        ),
        AdminCommand::Release { wallet, to } => print_answer(
            json,
            client.post(&wallet_path(&wallet, "/release"), &json!({ "to": to })),
        ),
        AdminCommand::Void { transfer } => print_answer(
            json,
            client.post(
                &format!("/api/v1/wallet-transfers/{}/void", path_segment(&transfer)),
                &json!({}),
            ),
        ),
    }
}

// ------------------------------------------------------------------ demo

/// This rail's part of `offpay demo`, against the running server at `client`: two wallets issued
/// and charged by the server, one transfer over UDP on loopback, sync, balances.
pub fn demo(client: &ApiClient) -> Result<(), String> {
    println!("\n== Rail 3: two device wallets pay each other over UDP on loopback");
    let directory = tempfile::tempdir().map_err(|error| format!("temporary directory: {error}"))?;
    let relay = |upload: Vec<u8>| -> Result<Vec<u8>, String> {
        let answer = client
            .post(
                "/api/v1/wallet-sync",
                &json!({ "upload": hex_string(&upload) }),
            )
            .map_err(|error| error.to_string())?;
        hex_bytes(answer["reply"].as_str().unwrap_or_default())
    };
    let mut wallets = Vec::new();
    for name in ["seller", "buyer"] {
        let keys = WalletKeys::generate(&mut OsEntropy);
        let limits = LimitArgs {
            currency: None,
            balance_max: None,
            payment_max: None,
            offline_spend_max: None,
        };
        let answer = client
            .post("/api/v1/wallets", &issue_body(&keys, &limits))
            .map_err(|error| error.to_string())?;
        let credential = Credential::decode(&hex_bytes(
            answer["credential"].as_str().unwrap_or_default(),
        )?)
        .map_err(|error| format!("credential: {error}"))?;
        let office_public: [u8; 32] =
            hex_bytes(answer["office_public"].as_str().unwrap_or_default())?
                .try_into()
                .map_err(|_| "office key".to_owned())?;
        let key = LogKey::derive(&keys);
        let (wallet, actions) = Wallet::create(keys, credential, office_public, now_ms())
            .map_err(|error| format!("wallet: {error}"))?;
        let path = directory.path().join(format!("{name}.log"));
        let mut storage = SealedFileStorage::open(&path, key)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        perform_offline(&mut storage, actions)?;
        println!(
            "   issued the {name}'s wallet {} (ledger account {})",
            wallet.id(),
            answer["account"].as_str().unwrap_or("?")
        );
        wallets.push((wallet, storage));
    }
    let buyer_id = wallets[1].0.id();
    let charged = client
        .post(
            &format!("/api/v1/wallets/{buyer_id}/charge"),
            &json!({ "amount": "100" }),
        )
        .map_err(|error| error.to_string())?;
    println!(
        "   charged the buyer {} from operator:float",
        charged["amount"].as_str().unwrap_or("?")
    );
    {
        let (wallet, storage) = &mut wallets[1];
        sync_wallet(wallet, storage, &relay)?;
        println!("   the buyer synced: balance {}", wallet.balance());
    }
    let sockets = [
        UdpSocket::bind("127.0.0.1:0").map_err(|error| format!("bind: {error}"))?,
        UdpSocket::bind("127.0.0.1:0").map_err(|error| format!("bind: {error}"))?,
    ];
    let addresses = [
        sockets[0].local_addr().map_err(|error| error.to_string())?,
        sockets[1].local_addr().map_err(|error| error.to_string())?,
    ];
    let [seller_socket, buyer_socket] = sockets;
    let mut drivers = Vec::new();
    for ((wallet, storage), (socket, peer)) in wallets
        .into_iter()
        .zip([(seller_socket, addresses[1]), (buyer_socket, addresses[0])])
    {
        drivers.push(UdpWallet::new(
            wallet,
            storage,
            socket,
            vec![peer],
            Box::new(OsEntropy),
        ));
    }
    drivers[1].set_buyer_mode(true);
    let amount = offpay_ledger::Amount::parse("12.50", drivers[0].wallet().credential().currency)
        .map_err(|error| error.to_string())?;
    let (transfer_id, _) = drivers[0]
        .call(|wallet, now, entropy| wallet.start_sale(amount, now, entropy))
        .map_err(|error| error.to_string())?;
    println!("   the seller asks 12.50 (sale {transfer_id}); the buyer is in buyer mode");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seller_done = false;
    let mut buyer_done = false;
    while !(seller_done && buyer_done) {
        if Instant::now() > deadline {
            return Err("the demo transfer did not finish in 10 s".into());
        }
        for side in 0..2 {
            let polled = drivers[side]
                .poll(Duration::from_millis(5))
                .map_err(|error| error.to_string())?;
            for event in polled.events {
                match event {
                    Event::BuyerAnswered { transfer_id, buyer } => {
                        println!(
                            "   buyer {buyer} answered; the seller picks it and sends the price"
                        );
                        drivers[0]
                            .call(|wallet, now, entropy| {
                                Ok(((), wallet.choose_buyer(transfer_id, buyer, now, entropy)?))
                            })
                            .map_err(|error| error.to_string())?;
                    }
                    Event::PriceOffered {
                        transfer_id,
                        amount,
                        ..
                    } => {
                        println!(
                            "   the buyer sees the price {amount} and approves (value held, log forced)"
                        );
                        drivers[1]
                            .call(|wallet, now, entropy| {
                                Ok(((), wallet.approve(transfer_id, now, entropy)?))
                            })
                            .map_err(|error| error.to_string())?;
                    }
                    Event::Posted { role, amount, .. } => {
                        println!(
                            "   posted on the {} side: {}",
                            if role == Role::Seller {
                                "seller"
                            } else {
                                "buyer"
                            },
                            amount
                        );
                        if role == Role::Seller {
                            seller_done = true
                        } else {
                            buyer_done = true
                        }
                    }
                    Event::Voided { .. } => return Err("the demo transfer was voided".into()),
                    _ => {}
                }
            }
        }
    }
    // Let the seller hear the acknowledgement.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle && in_flight(drivers[0].wallet()) > 0 {
        for driver in &mut drivers {
            driver
                .poll(Duration::from_millis(5))
                .map_err(|error| error.to_string())?;
        }
    }
    for (name, driver) in ["seller", "buyer"].into_iter().zip(drivers) {
        let (mut wallet, mut storage) = driver.into_parts();
        sync_wallet(&mut wallet, &mut storage, &relay)?;
        let account = client
            .get(&format!("/api/v1/accounts/wallet:{}", wallet.id()))
            .map_err(|error| error.to_string())?;
        println!(
            "   {name} synced: wallet balance {}, ledger account wallet:{}… {}",
            wallet.balance(),
            &wallet.id().to_string()[..8],
            account["balance"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
