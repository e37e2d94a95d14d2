//! `offpay microcheck` (alias `offpay microcheck`): a vending machine and a payer device over a local link (TCP on loopback standing
//! in for infrared), and `offpay admin microcheck`.
//!
//! Files: a payer file and a merchant file (JSON, mode 0600: they hold private keys), the payer's
//! log of microchecks written (`PAYER_FILE.log`, one JSON object a line) and the machine's store of
//! sales and deposit results (`MERCHANT_FILE.sales`, one JSON object a line). Every line is written
//! with one `write` and forced to disk before the protocol goes on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use offpay_keynote::{Encoding, Principal, PrivateKey};
use offpay_ledger::Currency;
use offpay_microcheck::csc::{DepositBody, DepositItem};
use offpay_microcheck::limits::{FRAME_PREFIX_BYTES, NONCE_BYTES};
use offpay_microcheck::machine::{Machine, MachineConfig, SaleRecord, StockItem};
use offpay_microcheck::payer::{Charge, LogEntry, PayerDevice, compare_statement, purchases_today};
use offpay_microcheck::request::{purpose, sign_request};
use offpay_microcheck::wire::{Message, WIRE_VERSION, frame_length};
use offpay_microcheck::{MerchantPolicy, PayerPolicy, Refusal, UnixSeconds};
use offpay_text::microcheck as text;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{ApiClient, CallError, path_segment};

/// How long the link waits for the other side before giving up.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Format version of payer and merchant files.
const FILE_VERSION: u32 = 1;

/// Device-side commands.
#[derive(Debug, Args)]
pub struct MicrocheckArgs {
    /// Print JSON instead of text
    #[arg(long, global = true)]
    json: bool,
    /// The language of the machine's screen and the payer's answers: en, sw or fr [default: en]
    #[arg(long, env = "OFFPAY_LANG", value_name = "LANG", global = true)]
    lang: Option<offpay_text::Language>,
    #[command(subcommand)]
    command: MicrocheckCommand,
}

/// The device's language for this run (`--lang`, `OFFPAY_LANG`), set once at the start.
static LANGUAGE: std::sync::OnceLock<offpay_text::Language> = std::sync::OnceLock::new();

/// Microcheck message `id` in the device's language.
fn words(id: offpay_text::Id, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    offpay_text::text(LANGUAGE.get().copied().unwrap_or_default(), id, args)
}

#[derive(Debug, Subcommand)]
enum MicrocheckCommand {
    /// Run a vending machine: a stock list, a screen on stdout, the link on TCP.
    Serve(ServeArgs),
    /// Buy an item from a machine as a payer.
    Buy(BuyArgs),
    /// Deposit the machine's microchecks at the clearing center.
    Deposit {
        /// The merchant file
        #[arg(long, value_name = "FILE")]
        merchant_file: PathBuf,
        /// Server URL
        #[arg(long, env = "OFFPAY_SERVER")]
        server: String,
        /// Send every kept microcheck again, including those already deposited
        #[arg(long)]
        all: bool,
    },
    /// Compare the payer's own log with the posted charges.
    Statement {
        /// The payer file
        #[arg(long, value_name = "FILE")]
        payer_file: PathBuf,
        /// Server URL
        #[arg(long, env = "OFFPAY_SERVER")]
        server: String,
    },
    /// The payer's key and credentials.
    #[command(subcommand)]
    Payer(PayerCommand),
    /// The merchant's key and credential.
    #[command(subcommand)]
    Merchant(MerchantCommand),
}

#[derive(Debug, Subcommand)]
enum PayerCommand {
    /// Generate a payer key into a new payer file (mode 0600) and print the public key.
    Keygen {
        /// Payer file to create
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The name the operator registers the payer under
        #[arg(long)]
        name: String,
    },
    /// Fetch fresh credentials from the provisioning agent.
    Refresh {
        /// The payer file
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Server URL
        #[arg(long, env = "OFFPAY_SERVER")]
        server: String,
    },
}

#[derive(Debug, Subcommand)]
enum MerchantCommand {
    /// Generate a merchant key into a new merchant file (mode 0600) and print the public key.
    Keygen {
        /// Merchant file to create
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The merchant id
        #[arg(long)]
        id: String,
    },
    /// Fetch the merchant credential and the PA's keys.
    Refresh {
        /// The merchant file
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Server URL
        #[arg(long, env = "OFFPAY_SERVER")]
        server: String,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where the link listens, e.g. 127.0.0.1:7070
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Stock list: a JSON array of {item, product, product_class, price, count}
    #[arg(long, value_name = "FILE")]
    stock: PathBuf,
    /// The merchant file
    #[arg(long, value_name = "FILE")]
    merchant_file: PathBuf,
    /// Deposit after each sale when this server is reachable
    #[arg(long, env = "OFFPAY_SERVER")]
    server: Option<String>,
    /// Run the machine's clock this many seconds ahead (negative: behind), as a badly set clock
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_secs: i64,
}

#[derive(Debug, Args)]
struct BuyArgs {
    /// The machine's link address
    #[arg(long)]
    machine: String,
    /// The item (button) number
    #[arg(long)]
    item: u32,
    /// The payer file
    #[arg(long, value_name = "FILE")]
    payer_file: PathBuf,
    /// Approve without asking
    #[arg(long)]
    yes: bool,
    /// Fetch a transaction-specific credential here when the offline limits are exceeded
    #[arg(long)]
    server: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PayerFile {
    v: u32,
    name: String,
    key: String,
    pa_key: Option<String>,
    #[serde(default)]
    credentials: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MerchantFile {
    v: u32,
    id: String,
    key: String,
    pa_key: Option<String>,
    age_key: Option<String>,
    app_domain: Option<String>,
    currency: Option<String>,
    merchant_credential: Option<String>,
}

/// One line of the machine's store.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoreLine {
    Sale(Box<SaleRecord>),
    Deposited { nonce: String, status: String },
}

fn now() -> UnixSeconds {
    UnixSeconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

fn write_private(path: &Path, value: &impl Serialize, create: bool) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create {
        options.create_new(true);
    } else {
        options.truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_json_file<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))
}

fn append_line(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    line.push(b'\n');
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, String> {
    match std::fs::File::open(path) {
        Ok(file) => {
            let mut out = Vec::new();
            for (number, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                out.push(
                    serde_json::from_str(&line)
                        .map_err(|e| format!("{} line {}: {e}", path.display(), number + 1))?,
                );
            }
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes)
}

fn generate_key() -> Result<PrivateKey, String> {
    let mut seed = random_bytes::<32>()?;
    let key = PrivateKey::ed25519_from_seed(&seed);
    seed.fill(0);
    Ok(key)
}

fn key_text(key: &PrivateKey) -> Result<String, String> {
    key.to_identifier(Encoding::Base64)
        .map(|text| text.to_string())
        .map_err(|e| e.to_string())
}

fn public_text(principal: &Principal) -> String {
    String::from_utf8_lossy(&principal.to_identifier(Encoding::Base64)).into_owned()
}

fn parse_private(text: &str) -> Result<PrivateKey, String> {
    PrivateKey::parse(text.as_bytes()).map_err(|e| format!("the file's key: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Link I/O.

fn send(stream: &mut TcpStream, message: &Message) -> Result<(), String> {
    stream
        .write_all(&message.encode())
        .and_then(|()| stream.flush())
        .map_err(|e| format!("link: {e}"))
}

enum Received {
    Message(Message),
    Malformed(Refusal),
}

fn receive(stream: &mut TcpStream) -> Result<Received, String> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    stream
        .read_exact(&mut prefix)
        .map_err(|e| format!("link: {e}"))?;
    let length = match frame_length(prefix) {
        Ok(length) => length,
        Err(refusal) => return Ok(Received::Malformed(refusal)),
    };
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("link: {e}"))?;
    Ok(match Message::decode(&body) {
        Ok(message) => Received::Message(message),
        Err(refusal) => Received::Malformed(refusal),
    })
}

fn connect(address: &str) -> Result<TcpStream, String> {
    let address: SocketAddr = address
        .parse()
        .map_err(|e| format!("machine address {address:?}: {e}"))?;
    let stream = TcpStream::connect_timeout(&address, LINK_TIMEOUT)
        .map_err(|e| format!("cannot reach the machine at {address}: {e}"))?;
    stream
        .set_read_timeout(Some(LINK_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(LINK_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

// ---------------------------------------------------------------------------------------------
// Device requests to the server.

fn device_client(server: &str) -> Result<ApiClient, String> {
    ApiClient::new(server, None)
}

fn signed_request(
    client: &ApiClient,
    path: &str,
    purpose: &str,
    who: &str,
    key: &PrivateKey,
    body: Value,
) -> Result<Value, CallError> {
    let request = sign_request(key, purpose, who, now().0, body)
        .map_err(|e| CallError::Transport(e.to_string()))?;
    client.post(path, &request)
}

// ---------------------------------------------------------------------------------------------
// Output.

fn finish(json_output: bool, result: Result<(Value, String), String>) -> ExitCode {
    match result {
        Ok((value, text)) => {
            if json_output {
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            if json_output {
                println!("{}", json!({ "error": { "message": message } }));
            } else {
                eprintln!("offpay microcheck: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs a device-side command.
pub fn run(args: MicrocheckArgs) -> ExitCode {
    let _ = LANGUAGE.set(args.lang.unwrap_or_default());
    let json_output = args.json;
    match args.command {
        MicrocheckCommand::Serve(serve) => match serve_machine(&serve) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("offpay microcheck serve: {message}");
                ExitCode::FAILURE
            }
        },
        MicrocheckCommand::Buy(buy) => buy_command(json_output, &buy),
        MicrocheckCommand::Deposit {
            merchant_file,
            server,
            all,
        } => {
            match device_client(&server).and_then(|client| deposit(&merchant_file, &client, all)) {
                Ok((value, text, all_posted)) => {
                    if json_output {
                        println!("{value}");
                    } else {
                        println!("{text}");
                    }
                    if all_posted {
                        ExitCode::SUCCESS
                    } else {
                        crate::exit::code(crate::exit::REFUSED)
                    }
                }
                Err(message) => finish(json_output, Err(message)),
            }
        }
        MicrocheckCommand::Statement { payer_file, server } => {
            finish(json_output, statement(&payer_file, &server))
        }
        MicrocheckCommand::Payer(PayerCommand::Keygen { file, name }) => {
            finish(json_output, payer_keygen(&file, &name))
        }
        MicrocheckCommand::Payer(PayerCommand::Refresh { file, server }) => finish(
            json_output,
            device_client(&server).and_then(|client| payer_refresh(&file, &client)),
        ),
        MicrocheckCommand::Merchant(MerchantCommand::Keygen { file, id }) => {
            finish(json_output, merchant_keygen(&file, &id))
        }
        MicrocheckCommand::Merchant(MerchantCommand::Refresh { file, server }) => finish(
            json_output,
            device_client(&server).and_then(|client| merchant_refresh(&file, &client)),
        ),
    }
}

fn payer_keygen(file: &Path, name: &str) -> Result<(Value, String), String> {
    if !offpay_microcheck::offer::valid_merchant_id(name) {
        return Err(format!(
            "{name:?}: a name is 1 to 32 letters, digits, _ . -"
        ));
    }
    let key = generate_key()?;
    let public = public_text(&key.principal());
    write_private(
        file,
        &PayerFile {
            v: FILE_VERSION,
            name: name.to_owned(),
            key: key_text(&key)?,
            pa_key: None,
            credentials: Vec::new(),
        },
        true,
    )?;
    Ok((
        json!({ "name": name, "key": public, "file": file }),
        format!(
            "payer {name}: key written to {} (mode 0600)\npublic key: {public}\nask the operator: offpay admin microcheck payer register --name {name} --key {public}",
            file.display()
        ),
    ))
}

fn payer_refresh(file: &Path, client: &ApiClient) -> Result<(Value, String), String> {
    let mut payer: PayerFile = read_json_file(file)?;
    let key = parse_private(&payer.key)?;
    let answer = signed_request(
        client,
        "/microcheck/v1/payer/refresh",
        purpose::REFRESH,
        &payer.name,
        &key,
        Value::Null,
    )
    .map_err(|e| e.to_string())?;
    let credentials: Vec<String> = answer["credentials"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    payer.pa_key = answer["pa_key"].as_str().map(str::to_owned);
    payer.credentials = credentials;
    write_private(file, &payer, false)?;
    let mut lines = vec![format!(
        "{} credentials for {} (strikes: {})",
        payer.credentials.len(),
        payer.name,
        answer["strikes"]
    )];
    for tier in answer["tiers"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  {:<8} up to {} {} per purchase, {} per merchant per day, until {}",
            tier["tier"].as_str().unwrap_or("?"),
            tier["amount_max"].as_str().unwrap_or("?"),
            answer["currency"].as_str().unwrap_or(""),
            tier["per_merchant_day_max"],
            tier["not_after"]
                .as_str()
                .and_then(UnixSeconds::parse_stamp)
                .map_or("?".into(), |t| t.to_string())
        ));
    }
    Ok((answer, lines.join("\n")))
}

fn merchant_keygen(file: &Path, id: &str) -> Result<(Value, String), String> {
    if !offpay_microcheck::offer::valid_merchant_id(id) {
        return Err(format!(
            "{id:?}: a merchant id is 1 to 32 letters, digits, _ . -"
        ));
    }
    let key = generate_key()?;
    let public = public_text(&key.principal());
    write_private(
        file,
        &MerchantFile {
            v: FILE_VERSION,
            id: id.to_owned(),
            key: key_text(&key)?,
            pa_key: None,
            age_key: None,
            app_domain: None,
            currency: None,
            merchant_credential: None,
        },
        true,
    )?;
    Ok((
        json!({ "merchant": id, "key": public, "file": file }),
        format!(
            "merchant {id}: key written to {} (mode 0600)\npublic key: {public}\nask the operator: offpay admin microcheck merchant register --id {id} --key {public}",
            file.display()
        ),
    ))
}

fn merchant_refresh(file: &Path, client: &ApiClient) -> Result<(Value, String), String> {
    let mut merchant: MerchantFile = read_json_file(file)?;
    let key = parse_private(&merchant.key)?;
    let answer = signed_request(
        client,
        "/microcheck/v1/merchant/refresh",
        purpose::MERCHANT_REFRESH,
        &merchant.id,
        &key,
        Value::Null,
    )
    .map_err(|e| e.to_string())?;
    let text = |name: &str| answer[name].as_str().map(str::to_owned);
    merchant.pa_key = text("pa_key");
    merchant.age_key = text("age_key");
    merchant.app_domain = text("app_domain");
    merchant.currency = text("currency");
    merchant.merchant_credential = text("merchant_credential");
    write_private(file, &merchant, false)?;
    Ok((
        answer.clone(),
        format!(
            "merchant {}: credential for {} in {} stored in {}",
            merchant.id,
            merchant.app_domain.as_deref().unwrap_or("?"),
            merchant.currency.as_deref().unwrap_or("?"),
            file.display()
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// The machine.

/// A machine built from a merchant file, a stock list and its store.
fn load_machine(merchant_file: &Path, stock: Vec<StockItem>) -> Result<(Machine, PathBuf), String> {
    let merchant: MerchantFile = read_json_file(merchant_file)?;
    let missing = || {
        format!(
            "{} has no credential yet: run offpay microcheck merchant refresh --file {} --server URL",
            merchant_file.display(),
            merchant_file.display()
        )
    };
    let pa = merchant.pa_key.as_deref().ok_or_else(missing)?;
    let pa = Principal::parse(pa.as_bytes()).map_err(|e| format!("PA key: {e}"))?;
    let age = match &merchant.age_key {
        Some(text) => Some(Principal::parse(text.as_bytes()).map_err(|e| format!("age key: {e}"))?),
        None => None,
    };
    let app_domain = merchant.app_domain.as_deref().ok_or_else(missing)?;
    let currency = Currency::from_code(merchant.currency.as_deref().ok_or_else(missing)?)
        .map_err(|e| e.to_string())?;
    let policy = MerchantPolicy::new(&merchant.id, app_domain, &pa, age.as_ref())
        .map_err(|e| e.to_string())?;
    let store = sibling(merchant_file, ".sales");
    let history: Vec<SaleRecord> = read_lines::<StoreLine>(&store)?
        .into_iter()
        .filter_map(|line| match line {
            StoreLine::Sale(sale) => Some(*sale),
            StoreLine::Deposited { .. } => None,
        })
        .collect();
    let machine = Machine::new(
        MachineConfig {
            policy,
            currency,
            key: parse_private(&merchant.key)?,
            merchant_credential: merchant.merchant_credential.clone().ok_or_else(missing)?,
        },
        stock,
        history.iter(),
    )
    .map_err(|e| e.to_string())?;
    Ok((machine, store))
}

fn screen(line: &str) {
    println!("[screen] {line}");
    let _ = std::io::stdout().flush();
}

fn serve_machine(args: &ServeArgs) -> Result<(), String> {
    let stock: Vec<StockItem> = read_json_file(&args.stock)?;
    let (mut machine, store) = load_machine(&args.merchant_file, stock)?;
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!(
        "vending machine {} listening on {address} (sales kept in {})",
        machine.merchant(),
        store.display()
    );
    screen(&words(text::WELCOME, &[]));
    for line in machine.stock() {
        screen(&words(
            text::STOCK_LINE,
            &[
                ("item", &line.item),
                ("product", &line.product),
                ("price", &line.price),
                ("count", &line.count),
            ],
        ));
    }
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(LINK_TIMEOUT));
        let _ = stream.set_write_timeout(Some(LINK_TIMEOUT));
        let clock = |offset: i64| {
            let base = now();
            if offset >= 0 {
                base.plus(offset.unsigned_abs())
            } else {
                base.minus(offset.unsigned_abs())
            }
        };
        match serve_customer(
            &mut machine,
            &mut stream,
            &store,
            clock(args.clock_offset_secs),
        ) {
            Ok(Some(nonce)) => {
                if let Some(server) = &args.server {
                    match device_client(server)
                        .and_then(|client| deposit(&args.merchant_file, &client, false))
                    {
                        Ok((_, summary, _)) => {
                            screen(&words(text::DEPOSITED, &[("text", &summary)]))
                        }
                        Err(message) => screen(&words(
                            text::OFFLINE,
                            &[("message", &message), ("nonce", &nonce)],
                        )),
                    }
                }
            }
            Ok(None) => {}
            Err(message) => screen(&words(text::LINK_CLOSED, &[("message", &message)])),
        }
        screen(&words(text::ANOTHER, &[]));
    }
    Ok(())
}

/// One customer at the machine. Returns the nonce of a completed sale.
fn serve_customer(
    machine: &mut Machine,
    stream: &mut TcpStream,
    store: &Path,
    now: UnixSeconds,
) -> Result<Option<String>, String> {
    let item = match receive(stream)? {
        Received::Message(Message::Select { item, .. }) => item,
        Received::Message(other) => {
            let refusal = Refusal::malformed(
                "message",
                format!("expected a selection, got {}", kind(&other)),
            );
            screen(&words(text::REFUSED, &[("refusal", &refusal)]));
            send(stream, &Message::refused(&refusal))?;
            return Ok(None);
        }
        Received::Malformed(refusal) => {
            screen(&words(text::REFUSED, &[("refusal", &refusal)]));
            send(stream, &Message::refused(&refusal))?;
            return Ok(None);
        }
    };
    let random = random_bytes::<NONCE_BYTES>()?;
    let awaiting = match machine.select(item, now, &random) {
        Ok(awaiting) => awaiting,
        Err(refusal) => {
            screen(&refusal.to_string());
            send(stream, &Message::refused(&refusal))?;
            return Ok(None);
        }
    };
    let offer = awaiting.terms().offer.clone();
    screen(&words(
        text::BUYING,
        &[
            ("product", &offer.product),
            ("amount", &offer.amount),
            ("currency", &offer.currency),
        ],
    ));
    send(stream, awaiting.message())?;
    let (microcheck, credentials) = match receive(stream)? {
        Received::Message(Message::Payment {
            microcheck,
            credentials,
            ..
        }) => (microcheck, credentials),
        Received::Message(Message::Decline { .. }) => {
            screen(&words(text::DECLINED_BY_PAYER, &[]));
            return Ok(None);
        }
        Received::Message(other) => {
            let refusal = Refusal::malformed(
                "message",
                format!("expected a payment, got {}", kind(&other)),
            );
            screen(&words(text::REFUSED, &[("refusal", &refusal)]));
            send(stream, &Message::refused(&refusal))?;
            return Ok(None);
        }
        Received::Malformed(refusal) => {
            screen(&words(text::REFUSED, &[("refusal", &refusal)]));
            send(stream, &Message::refused(&refusal))?;
            return Ok(None);
        }
    };
    match machine.pay(awaiting, &microcheck, &credentials) {
        Ok(sale) => {
            append_line(store, &StoreLine::Sale(Box::new(sale.record.clone())))?;
            let receipt = machine.complete(sale);
            screen(&words(text::DISPENSING, &[("product", &offer.product)]));
            send(stream, &receipt)?;
            Ok(Some(offer.nonce))
        }
        Err(refusal) => {
            screen(&words(text::REFUSED, &[("refusal", &refusal)]));
            send(stream, &Message::refused(&refusal))?;
            Ok(None)
        }
    }
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::Select { .. } => "select",
        Message::Offer { .. } => "offer",
        Message::Payment { .. } => "payment",
        Message::Decline { .. } => "decline",
        Message::Receipt { .. } => "receipt",
        Message::Refused { .. } => "refused",
    }
}

// ---------------------------------------------------------------------------------------------
// The payer.

fn buy_command(json_output: bool, args: &BuyArgs) -> ExitCode {
    match buy(args) {
        Ok(Purchase::Paid {
            product,
            amount,
            currency,
            nonce,
        }) => {
            if json_output {
                println!(
                    "{}",
                    json!({ "status": "paid", "product": product, "amount": amount, "currency": currency, "nonce": nonce })
                );
            } else {
                println!(
                    "{}",
                    words(
                        text::PAID,
                        &[
                            ("amount", &amount),
                            ("currency", &currency),
                            ("product", &product),
                            ("nonce", &nonce),
                        ],
                    )
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Purchase::Refused { code, reason }) => {
            if json_output {
                println!(
                    "{}",
                    json!({ "status": "refused", "code": code, "reason": reason })
                );
            } else {
                println!(
                    "{}",
                    words(text::REFUSED_CODE, &[("reason", &reason), ("code", &code)])
                );
            }
            crate::exit::code(crate::exit::REFUSED)
        }
        Ok(Purchase::Declined) => {
            if json_output {
                println!("{}", json!({ "status": "declined" }));
            } else {
                println!("{}", words(text::DECLINED, &[]));
            }
            crate::exit::code(crate::exit::REFUSED)
        }
        Err(message) => finish(json_output, Err(message)),
    }
}

enum Purchase {
    Paid {
        product: String,
        amount: String,
        currency: String,
        nonce: String,
    },
    Refused {
        code: String,
        reason: String,
    },
    Declined,
}

fn refused_purchase(refusal: &Refusal) -> Purchase {
    Purchase::Refused {
        code: refusal.code(),
        reason: refusal.to_string(),
    }
}

fn buy(args: &BuyArgs) -> Result<Purchase, String> {
    let payer: PayerFile = read_json_file(&args.payer_file)?;
    let key = parse_private(&payer.key)?;
    let pa = payer
        .pa_key
        .as_deref()
        .ok_or("the payer file has no credentials yet: run offpay microcheck payer refresh")?;
    let pa = Principal::parse(pa.as_bytes()).map_err(|e| format!("PA key: {e}"))?;
    let mut device = PayerDevice::new(
        parse_private(&payer.key)?,
        PayerPolicy::new(&pa).map_err(|e| e.to_string())?,
        &payer.credentials,
    )
    .map_err(|e| e.to_string())?;
    let log_path = sibling(&args.payer_file, ".log");
    let log: Vec<LogEntry> = read_lines(&log_path)?;
    let mut stream = connect(&args.machine)?;
    send(
        &mut stream,
        &Message::Select {
            v: WIRE_VERSION,
            item: args.item,
        },
    )?;
    let (offer, merchant_credential, offer_signature) = match receive(&mut stream)? {
        Received::Message(Message::Offer {
            offer,
            merchant_credential,
            offer_signature,
            ..
        }) => (offer, merchant_credential, offer_signature),
        Received::Message(Message::Refused { code, reason, .. }) => {
            return Ok(Purchase::Refused { code, reason });
        }
        Received::Message(other) => {
            return Ok(refused_purchase(&Refusal::malformed(
                "message",
                format!("expected an offer, got {}", kind(&other)),
            )));
        }
        Received::Malformed(refusal) => return Ok(refused_purchase(&refusal)),
    };
    let now = now();
    let decline = |stream: &mut TcpStream, nonce: &str| {
        let _ = send(
            stream,
            &Message::Decline {
                v: WIRE_VERSION,
                nonce: nonce.to_owned(),
            },
        );
    };
    let terms = match device.check_offer(&offer, &merchant_credential, &offer_signature, now) {
        Ok(terms) => terms,
        Err(refusal) => {
            decline(&mut stream, &offer.nonce);
            return Ok(refused_purchase(&refusal));
        }
    };
    eprintln!(
        "Buying {} ({}) for {} {} from {} — approve?",
        offer.product, offer.product_class, offer.amount, offer.currency, offer.merchant
    );
    if !args.yes && !approved()? {
        decline(&mut stream, &offer.nonce);
        return Ok(Purchase::Declined);
    }
    let count = purchases_today(&log, &offer.merchant, &offer.date);
    let prepared = match device.pay(&terms, count, now, &[]) {
        Ok(prepared) => prepared,
        Err(refusal @ (Refusal::OverLimit { .. } | Refusal::TooManyPurchases { .. }))
            if args.server.is_some() =>
        {
            let server = args.server.as_deref().unwrap_or_default();
            eprintln!("{refusal}; asking the provisioning agent for a transaction credential");
            let client = device_client(server)?;
            let answer = signed_request(
                &client,
                "/microcheck/v1/payer/transaction",
                purpose::TRANSACTION,
                &payer.name,
                &key,
                json!({ "offer": offer }),
            );
            let credential = match answer {
                Ok(answer) => answer["credential"].as_str().unwrap_or_default().to_owned(),
                Err(error) => {
                    decline(&mut stream, &offer.nonce);
                    return Ok(Purchase::Refused {
                        code: "transaction_refused".into(),
                        reason: format!("{refusal}; online: {error}"),
                    });
                }
            };
            match device.pay(&terms, count, now, &[credential]) {
                Ok(prepared) => prepared,
                Err(refusal) => {
                    decline(&mut stream, &offer.nonce);
                    return Ok(refused_purchase(&refusal));
                }
            }
        }
        Err(refusal) => {
            decline(&mut stream, &offer.nonce);
            return Ok(refused_purchase(&refusal));
        }
    };
    // The device's own record comes first: it is what the statement is checked against.
    append_line(&log_path, &prepared.log_entry)?;
    send(&mut stream, &prepared.message)?;
    match receive(&mut stream)? {
        Received::Message(Message::Receipt {
            nonce,
            product,
            amount,
            currency,
            ..
        }) => Ok(Purchase::Paid {
            product,
            amount,
            currency,
            nonce,
        }),
        Received::Message(Message::Refused { code, reason, .. }) => {
            Ok(Purchase::Refused { code, reason })
        }
        Received::Message(other) => Ok(refused_purchase(&Refusal::malformed(
            "message",
            format!("expected a receipt, got {}", kind(&other)),
        ))),
        Received::Malformed(refusal) => Ok(refused_purchase(&refusal)),
    }
}

fn approved() -> Result<bool, String> {
    eprint!("[y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

// ---------------------------------------------------------------------------------------------
// Deposit and statement.

/// Deposits the kept microchecks; returns the answer, a summary and whether all posted.
fn deposit(
    merchant_file: &Path,
    client: &ApiClient,
    all: bool,
) -> Result<(Value, String, bool), String> {
    let merchant: MerchantFile = read_json_file(merchant_file)?;
    let key = parse_private(&merchant.key)?;
    let store = sibling(merchant_file, ".sales");
    let lines: Vec<StoreLine> = read_lines(&store)?;
    let done: Vec<String> = lines
        .iter()
        .filter_map(|line| match line {
            StoreLine::Deposited { nonce, status }
                if status == "posted" || status == "already_deposited" =>
            {
                Some(nonce.clone())
            }
            _ => None,
        })
        .collect();
    let items: Vec<DepositItem> = lines
        .iter()
        .filter_map(|line| match line {
            StoreLine::Sale(sale) if all || !done.contains(&sale.offer.nonce) => {
                Some(DepositItem::from(sale.as_ref()))
            }
            _ => None,
        })
        .collect();
    if items.is_empty() {
        return Ok((
            json!({ "posted": 0, "refused": 0, "results": [] }),
            "nothing to deposit".into(),
            true,
        ));
    }
    let answer = signed_request(
        client,
        "/microcheck/v1/deposit",
        purpose::DEPOSIT,
        &merchant.id,
        &key,
        serde_json::to_value(DepositBody::pack(&items)).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut lines_out = Vec::new();
    let mut all_posted = true;
    for result in answer["results"].as_array().into_iter().flatten() {
        let nonce = result["nonce"].as_str().unwrap_or("?").to_owned();
        let status = result["status"].as_str().unwrap_or("?");
        let code = result["code"].as_str().unwrap_or(status).to_owned();
        if status == "posted" {
            append_line(
                &store,
                &StoreLine::Deposited {
                    nonce: nonce.clone(),
                    status: "posted".into(),
                },
            )?;
            let flags = flag_words(&result["flags"]);
            lines_out.push(format!(
                "  {nonce} posted {} {} as {}{}{}",
                result["amount"].as_str().unwrap_or("?"),
                result["currency"].as_str().unwrap_or(""),
                result["transfer_id"].as_str().unwrap_or("?"),
                if result["bounced"] == true {
                    " (bounced: paid from suspense)"
                } else {
                    ""
                },
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("; flagged: {flags}")
                }
            ));
        } else {
            all_posted = false;
            if code == "already_deposited" {
                append_line(
                    &store,
                    &StoreLine::Deposited {
                        nonce: nonce.clone(),
                        status: code.clone(),
                    },
                )?;
            }
            let flags = flag_words(&result["flags"]);
            lines_out.push(format!(
                "  {nonce} refused: {} [{code}]{}",
                result["reason"].as_str().unwrap_or("?"),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("; flagged: {flags}")
                }
            ));
        }
    }
    let summary = format!(
        "deposit: {} posted, {} refused\n{}",
        answer["posted"],
        answer["refused"],
        lines_out.join("\n")
    );
    Ok((answer, summary, all_posted))
}

/// The fraud flags of a deposit result in words (`impossible travel, post-dated`).
fn flag_words(flags: &Value) -> String {
    flags
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|kind| match kind {
            "machine_day_volume" => "more purchases at this machine today than expected",
            "impossible_travel" => "impossible travel",
            "backdated_after_expiry" => "back-dated after its credential expired",
            "post_dated" => "the machine's clock may be wrong, or post-dated",
            "spent_after_loss_report" => "spent after the payer reported the device lost",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn statement(payer_file: &Path, server: &str) -> Result<(Value, String), String> {
    let payer: PayerFile = read_json_file(payer_file)?;
    let key = parse_private(&payer.key)?;
    let client = device_client(server)?;
    let answer = signed_request(
        &client,
        "/microcheck/v1/payer/statement",
        purpose::STATEMENT,
        &payer.name,
        &key,
        json!({}),
    )
    .map_err(|e| e.to_string())?;
    let charges: Vec<Charge> = answer["charges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| serde_json::from_value(c.clone()).ok())
        .collect();
    let log: Vec<LogEntry> = read_lines(&sibling(payer_file, ".log"))?;
    let comparison = compare_statement(&log, &charges);
    let mut lines = vec![format!(
        "statement for {}: {} charges posted, {} microchecks in this device's log",
        payer.name,
        charges.len(),
        log.len()
    )];
    for charge in &comparison.matched {
        lines.push(format!(
            "  ok       {} {} {} {} at {}",
            charge.timestamp, charge.amount, charge.currency, charge.product, charge.merchant
        ));
    }
    for charge in &comparison.not_written_here {
        lines.push(format!(
            "  UNKNOWN  {} {} {} {} at {} (nonce {}) — this device did not write it: dispute it",
            charge.timestamp,
            charge.amount,
            charge.currency,
            charge.product,
            charge.merchant,
            charge.nonce
        ));
    }
    for entry in &comparison.not_posted {
        lines.push(format!(
            "  pending  {} {} {} {} at {} (not posted yet)",
            entry.timestamp, entry.amount, entry.currency, entry.product, entry.merchant
        ));
    }
    Ok((
        json!({ "payer": payer.name, "comparison": comparison }),
        lines.join("\n"),
    ))
}

// ---------------------------------------------------------------------------------------------
// Operator commands.

/// Operator commands under `offpay admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Show the risk strategy, or set it from a JSON file.
    Strategy {
        /// A JSON file with the new strategy
        #[arg(long, value_name = "FILE")]
        set: Option<PathBuf>,
    },
    /// Payers.
    #[command(subcommand)]
    Payer(AdminPayerCommand),
    /// Merchants (vending machines).
    #[command(subcommand)]
    Merchant(AdminMerchantCommand),
    /// Issue a delegation to a sub-PA key.
    SubPa {
        /// The sub-PA's public key
        #[arg(long)]
        key: String,
        /// Largest amount per purchase it may allow
        #[arg(long)]
        amount_max: String,
        /// How long the delegation lasts
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        validity_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminPayerCommand {
    /// Register a payer's key.
    Register {
        /// Name
        #[arg(long)]
        name: String,
        /// Public key (ed25519-base64:...)
        #[arg(long)]
        key: String,
        /// The payer is an adult (gets an adulthood credential)
        #[arg(long)]
        adult: bool,
        /// Only these product classes, e.g. food (a food-only voucher); repeatable
        #[arg(long = "class")]
        classes: Vec<String>,
    },
    /// Show a payer's standing and balance.
    Show {
        /// Name
        name: String,
    },
    /// Record a disputed microcheck (lowers the payer's limits).
    Dispute {
        /// Name
        name: String,
        /// The disputed microcheck's nonce
        #[arg(long)]
        nonce: Option<String>,
    },
    /// The posted charges.
    Statement {
        /// Name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminMerchantCommand {
    /// Register a merchant's key and location.
    Register {
        /// Merchant id
        #[arg(long)]
        id: String,
        /// Public key
        #[arg(long)]
        key: String,
        /// Application domain [default: the strategy's]
        #[arg(long)]
        app_domain: Option<String>,
        /// Latitude, decimal degrees
        #[arg(long, allow_hyphen_values = true)]
        latitude: Option<String>,
        /// Longitude, decimal degrees
        #[arg(long, allow_hyphen_values = true)]
        longitude: Option<String>,
    },
}

/// Runs an operator command.
pub fn run_admin(client: &ApiClient, json_output: bool, command: AdminCommand) -> ExitCode {
    let result = admin(client, command).map_err(|e| e.to_string());
    finish(json_output, result)
}

fn admin(client: &ApiClient, command: AdminCommand) -> Result<(Value, String), CallError> {
    match command {
        AdminCommand::Strategy { set: None } => {
            let answer = client.get("/api/v1/microcheck/strategy")?;
            let text = serde_json::to_string_pretty(&answer["strategy"]).unwrap_or_default();
            Ok((answer, text))
        }
        AdminCommand::Strategy { set: Some(path) } => {
            let strategy: Value = read_json_file(&path).map_err(CallError::Transport)?;
            let answer = client.post("/api/v1/microcheck/strategy", &strategy)?;
            Ok((answer, "strategy set".into()))
        }
        AdminCommand::Payer(AdminPayerCommand::Register {
            name,
            key,
            adult,
            classes,
        }) => {
            let mut body = json!({ "name": name, "key": key, "adult": adult });
            if !classes.is_empty() {
                body["classes"] = json!(classes);
            }
            let answer = client.post("/api/v1/microcheck/payers", &body)?;
            let text = format!(
                "payer {} registered (account {}, key {})",
                answer["payer"].as_str().unwrap_or("?"),
                answer["account"].as_str().unwrap_or("?"),
                answer["key_fingerprint"].as_str().unwrap_or("?")
            );
            Ok((answer, text))
        }
        AdminCommand::Payer(AdminPayerCommand::Show { name }) => {
            let answer = client.get(&format!(
                "/api/v1/microcheck/payers/{}",
                path_segment(&name)
            ))?;
            let classes = answer["classes"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "every class".to_owned());
            let text = format!(
                "payer {name}: balance {} {}, {} disputed and {} bounced microchecks, {}, may buy {classes}",
                answer["balance"].as_str().unwrap_or("none"),
                answer["currency"].as_str().unwrap_or(""),
                answer["disputes"],
                answer["bounces"],
                if answer["adult"] == true {
                    "an adult"
                } else {
                    "not registered as an adult"
                },
            );
            Ok((answer, text))
        }
        AdminCommand::Payer(AdminPayerCommand::Dispute { name, nonce }) => {
            let answer = client.post(
                &format!("/api/v1/microcheck/payers/{}/dispute", path_segment(&name)),
                &json!({ "nonce": nonce }),
            )?;
            let text = format!("payer {name}: {} disputes", answer["disputes"]);
            Ok((answer, text))
        }
        AdminCommand::Payer(AdminPayerCommand::Statement { name }) => {
            let answer = client.get(&format!(
                "/api/v1/microcheck/payers/{}/statement",
                path_segment(&name)
            ))?;
            let lines: Vec<String> = answer["charges"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{} {} {} {} at {} {}",
                        c["timestamp"].as_str().unwrap_or("?"),
                        c["amount"].as_str().unwrap_or("?"),
                        c["currency"].as_str().unwrap_or("?"),
                        c["product"].as_str().unwrap_or("?"),
                        c["merchant"].as_str().unwrap_or("?"),
                        c["transfer_id"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            Ok((
                answer,
                if lines.is_empty() {
                    "no charges".into()
                } else {
                    lines.join("\n")
                },
            ))
        }
        AdminCommand::Merchant(AdminMerchantCommand::Register {
            id,
            key,
            app_domain,
            latitude,
            longitude,
        }) => {
            let mut body = json!({ "id": id, "key": key });
            for (name, value) in [
                ("app_domain", app_domain),
                ("latitude", latitude),
                ("longitude", longitude),
            ] {
                if let Some(value) = value {
                    body[name] = json!(value);
                }
            }
            let answer = client.post("/api/v1/microcheck/merchants", &body)?;
            let text = format!(
                "merchant {} registered (account {}, domain {}); the machine fetches its credential with offpay microcheck merchant refresh",
                answer["merchant"].as_str().unwrap_or("?"),
                answer["account"].as_str().unwrap_or("?"),
                answer["app_domain"].as_str().unwrap_or("?")
            );
            Ok((answer, text))
        }
        AdminCommand::SubPa {
            key,
            amount_max,
            validity_secs,
        } => {
            let answer = client.post(
                "/api/v1/microcheck/sub-pa",
                &json!({ "key": key, "amount_max": amount_max, "validity_seconds": validity_secs }),
            )?;
            let text = answer["delegation"].as_str().unwrap_or_default().to_owned();
            Ok((answer, text))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Demo.

/// This rail's part of `offpay demo`, against the running server at `client`: the PA issues a
/// credential, a machine in a thread sells an item offline over loopback, the machine deposits,
/// the balances move.
pub fn demo(client: &ApiClient) -> Result<(), String> {
    let call = |r: Result<Value, CallError>| r.map_err(|e| e.to_string());
    println!("\n== Rail 4: KeyNote microchecks at a vending machine");
    let directory = tempfile::tempdir().map_err(|e| e.to_string())?;
    let payer_file = directory.path().join("payer.json");
    let merchant_file = directory.path().join("machine.json");
    let suffix = hex_suffix()?;
    let payer_name = format!("demo-payer-{suffix}");
    let merchant_id = format!("demo-vm-{suffix}");
    payer_keygen(&payer_file, &payer_name)?;
    merchant_keygen(&merchant_file, &merchant_id)?;
    let payer: PayerFile = read_json_file(&payer_file)?;
    let merchant: MerchantFile = read_json_file(&merchant_file)?;
    let payer_key = public_text(&parse_private(&payer.key)?.principal());
    let merchant_key = public_text(&parse_private(&merchant.key)?.principal());
    call(client.post(
        "/api/v1/microcheck/payers",
        &json!({ "name": payer_name, "key": payer_key }),
    ))?;
    call(client.post(
        "/api/v1/microcheck/merchants",
        &json!({ "id": merchant_id, "key": merchant_key, "latitude": "-1.2921", "longitude": "36.8219" }),
    ))?;
    call(client.post("/api/v1/transfers", &json!({ "transfers": [{
        "id": format!("demo:fund:{payer_name}"), "debit_account": "operator:float",
        "credit_account": format!("mc:payer:{payer_name}"), "amount": "20.00", "memo": "prepaid microcheck account" }] })))?;
    println!("   payer {payer_name} and machine {merchant_id} registered; payer funded with 20.00");
    let (_, text) = payer_refresh(&payer_file, client)?;
    println!("   PA issued: {}", text.replace('\n', "\n   "));
    merchant_refresh(&merchant_file, client)?;
    let stock = vec![StockItem {
        item: 1,
        product: "Pocari Sweat".into(),
        product_class: "drink".into(),
        price: "0.83".into(),
        count: 8,
    }];
    let (mut machine, store) = load_machine(&merchant_file, stock)?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let store_for_machine = store.clone();
    let machine_thread = std::thread::spawn(move || -> Result<Option<String>, String> {
        let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(LINK_TIMEOUT))
            .map_err(|e| e.to_string())?;
        serve_customer(&mut machine, &mut stream, &store_for_machine, now())
    });
    let purchase = buy(&BuyArgs {
        machine: address.to_string(),
        item: 1,
        payer_file: payer_file.clone(),
        yes: true,
        server: None,
    })?;
    let sold = machine_thread
        .join()
        .map_err(|_| "the machine thread crashed".to_owned())??;
    match purchase {
        Purchase::Paid {
            product,
            amount,
            currency,
            ..
        } => {
            println!(
                "   offline purchase: {product} for {amount} {currency} (machine kept microcheck {})",
                sold.unwrap_or_default()
            );
        }
        Purchase::Refused { reason, .. } => {
            return Err(format!("the demo purchase was refused: {reason}"));
        }
        Purchase::Declined => return Err("the demo purchase was declined".into()),
    }
    let (_, summary, _) = deposit(&merchant_file, client, false)?;
    println!("   {}", summary.replace('\n', "\n   "));
    for account in [
        format!("mc:payer:{payer_name}"),
        format!("mc:merchant:{merchant_id}"),
    ] {
        let answer = call(client.get(&format!("/api/v1/accounts/{}", path_segment(&account))))?;
        println!(
            "   {:<40} {}",
            account,
            answer["balance"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

fn hex_suffix() -> Result<String, String> {
    let bytes = random_bytes::<3>()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
