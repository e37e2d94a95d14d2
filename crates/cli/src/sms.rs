//! `offpay sms`: act as a phone against the SMS webhook; `offpay admin envelope`: TAN envelopes
//! (print, import, bind at an agent, unlock), SMS accounts, settings, disputes, terminals.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use offpay_ledger::{Amount, Currency};
use offpay_sms_tan::compose::grid_text;
use offpay_sms_tan::import::parse_envelope;
use offpay_sms_tan::{AccountNumber, SecurityLevel};
use serde_json::{Value, json};

use crate::client::{ApiClient, CallError, path_segment};

/// How long `offpay sms send` waits for the server.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Envelopes issued per API call while printing (the progress bar moves per call).
const ISSUE_CHUNK: usize = 500;
/// Envelopes per PDF file; larger runs are written to numbered files.
const PDF_FILE_ENVELOPES: usize = 2000;
/// The seed's worked example envelope (a test vector), used by the demo.
const SEED_ENVELOPE: &str =
    include_str!("../../../rails/sms-tan/tests/vectors/seed-002-worked-example.envelope");

/// Device-side commands.
#[derive(Debug, Args)]
pub struct SmsArgs {
    #[command(subcommand)]
    command: SmsCommand,
}

#[derive(Debug, Subcommand)]
enum SmsCommand {
    /// Send one SMS to the server's webhook, as a phone would, and print the reply.
    Send {
        /// Server base URL
        #[arg(long, env = "OFFPAY_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The sending phone, e.g. +254700000001
        #[arg(long)]
        from: String,
        /// The gateway token file [default: ./offpay-data/sms-gateway.token]
        #[arg(long, env = "OFFPAY_SMS_GATEWAY_TOKEN_FILE", value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The gateway's message id (a retry with the same id is answered once) [default: random]
        #[arg(long)]
        id: Option<String>,
        /// Print the server's JSON answer
        #[arg(long)]
        json: bool,
        /// The SMS text, e.g. "BAL 26399912345 3 463"
        text: String,
    },
}

fn random_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("cli-{nanos:x}-{}", std::process::id())
}

/// Runs a device-side command.
pub fn run(args: SmsArgs) -> ExitCode {
    match args.command {
        SmsCommand::Send {
            server,
            from,
            token_file,
            id,
            json,
            text,
        } => {
            let token_file = token_file.unwrap_or_else(|| {
                PathBuf::from(offpay_server::config::DEFAULT_DATA_DIR)
                    .join(offpay_server::rails::sms::GATEWAY_TOKEN_FILE)
            });
            match send(
                &server,
                &token_file,
                &from,
                id.unwrap_or_else(random_id),
                &text,
            ) {
                Ok(answer) => {
                    if json {
                        println!("{answer:#}");
                    } else {
                        for reply in answer["replies"].as_array().into_iter().flatten() {
                            println!("{}", reply.as_str().unwrap_or_default());
                        }
                        if answer["duplicate"] == true {
                            eprintln!(
                                "(a retry of a message already handled: same reply, nothing done again)"
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("offpay sms send: {message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn send(
    server: &str,
    token_file: &Path,
    from: &str,
    id: String,
    text: &str,
) -> Result<Value, String> {
    let token = std::fs::read_to_string(token_file)
        .map_err(|error| {
            format!(
                "cannot read the gateway token file {}: {error}",
                token_file.display()
            )
        })?
        .trim()
        .to_owned();
    let http = crate::client::http_builder()?
        .timeout(SEND_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
    let response = http
        .post(format!("{}/sms/webhook", server.trim_end_matches('/')))
        .bearer_auth(token)
        .json(&json!({ "from": from, "text": text, "message_id": id }))
        .send()
        .map_err(|error| format!("cannot reach the offpay server at {server}: {error}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .map_err(|error| format!("the server sent an answer that is not JSON: {error}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{} (HTTP {status})",
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
        ))
    }
}

/// Operator commands under `offpay admin envelope`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Issue N new unallocated envelopes and write their PDF for printing.
    Print {
        /// How many envelopes
        #[arg(long)]
        count: usize,
        /// Rows per envelope: 20 or 50
        #[arg(long, default_value_t = 20)]
        rows: usize,
        /// Output PDF (runs above 2000 envelopes go to numbered files next to it)
        #[arg(long, default_value = "envelopes.pdf")]
        out: PathBuf,
        /// Language of the printed instructions: en, sw or fr [default: the server's default
        /// language]
        #[arg(long, value_name = "LANG")]
        lang: Option<offpay_text::Language>,
    },
    /// Load an envelope printed elsewhere from its file (stored sealed).
    Import {
        /// The envelope file
        file: PathBuf,
    },
    /// Show an envelope's state (never its secrets).
    Show {
        /// Envelope number (11 digits)
        euin: String,
    },
    /// Bind a first envelope to an account at an agent (after checking the holder's ID).
    Bind {
        /// Envelope number
        euin: String,
        /// The account's receive number
        #[arg(long)]
        account: String,
    },
    /// Unlock an envelope locked after wrong codes (after checking the holder's ID).
    Unlock {
        /// Envelope number
        euin: String,
    },
    /// SMS accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Show the rail's settings, or replace them from a JSON file (fees, rates, dialback
    /// defaults, hard currencies, time zone, EUIN prefix, names printed on envelopes).
    Settings {
        /// JSON file with the new settings
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List dispute cases.
    Disputes,
    /// Decide a dispute: refund (the payee pays back, if it can) or reject.
    Decide {
        /// The dispute's key (from `disputes`)
        key: String,
        /// refund or reject
        #[arg(long)]
        decision: String,
        /// A note for the record
        #[arg(long)]
        note: Option<String>,
    },
    /// Issue a merchant terminal for a payee account (prints its token once).
    Terminal {
        /// The merchant's receive number
        #[arg(long)]
        payee: String,
    },
    /// SMS waiting for the gateway.
    Outbox,
    /// Seal the SMS-TAN records that have no MAC (accounts, pending callbacks, scheduled
    /// payments), trusting the database as it is now. A start seals an earlier release's
    /// database by itself; run this only when the start log says it sealed nothing and you have
    /// checked the database.
    SealRecords {
        /// Required: you have checked the database and trust it as it is
        #[arg(long)]
        force: bool,
    },
}

/// `offpay admin envelope account ...`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Open an SMS account; prints its receive number and (once) its secret pay number.
    Create {
        /// Receive number [default: generated]
        #[arg(long)]
        receive: Option<String>,
        /// Currency [default: the server's]
        #[arg(long)]
        currency: Option<String>,
        /// Phone for notices of money received
        #[arg(long)]
        notify: Option<String>,
        /// Phones allowed to send instructions (repeat; none: any phone)
        #[arg(long = "bind-phone")]
        bind_phones: Vec<String>,
        /// Instructions must name the pay number, not the envelope
        #[arg(long)]
        require_pay_number: bool,
    },
    /// Show an account (balance, envelope, limits).
    Show {
        /// Receive number
        number: String,
    },
    /// Change an account: limits, threshold, phones, status.
    Set {
        /// Receive number
        number: String,
        /// Open (true) or frozen (false)
        #[arg(long)]
        active: Option<bool>,
        /// Limit per payment, or none
        #[arg(long)]
        per_payment: Option<String>,
        /// Limit per day, or none
        #[arg(long)]
        per_day: Option<String>,
        /// Limit per week, or none
        #[arg(long)]
        per_week: Option<String>,
        /// Dialback threshold, or none (operator default)
        #[arg(long)]
        dialback_threshold: Option<String>,
        /// Phones allowed to send instructions (repeat)
        #[arg(long = "bind-phone")]
        bind_phones: Option<Vec<String>>,
        /// Phone for notices
        #[arg(long)]
        notify: Option<String>,
    },
}

fn show(json_output: bool, value: &Value, text: impl FnOnce(&Value) -> String) {
    if json_output {
        println!("{value:#}");
    } else {
        println!("{}", text(value));
    }
}

fn field(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|index| {
            u8::from_str_radix(&text[index..index + 2], 16).map_err(|error| error.to_string())
        })
        .collect()
}

fn file_name(out: &Path, part: usize, parts: usize) -> PathBuf {
    if parts <= 1 {
        return out.to_owned();
    }
    let stem = out.file_stem().map_or_else(
        || "envelopes".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    out.with_file_name(format!("{stem}-{part:03}.pdf"))
}

fn print_envelopes(
    client: &ApiClient,
    count: usize,
    rows: usize,
    out: &Path,
    lang: Option<offpay_text::Language>,
) -> Result<Value, String> {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    if rows != 20 && rows != 50 {
        return Err("--rows must be 20 or 50".into());
    }
    let bar = indicatif::ProgressBar::new(count as u64 * 2);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} ({eta})")
            .map_err(|error| error.to_string())?,
    );
    if count < ISSUE_CHUNK {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_message("issuing");
    let mut euins: Vec<String> = Vec::with_capacity(count);
    while euins.len() < count {
        let chunk = (count - euins.len()).min(ISSUE_CHUNK);
        let answer = client
            .post(
                "/api/v1/sms/envelopes/issue",
                &json!({ "count": chunk, "rows": rows }),
            )
            .map_err(|error| error.to_string())?;
        for euin in answer["euins"].as_array().into_iter().flatten() {
            euins.push(euin.as_str().unwrap_or_default().to_owned());
        }
        bar.inc(chunk as u64);
    }
    bar.set_message("printing");
    let parts = count.div_ceil(PDF_FILE_ENVELOPES);
    let mut files = Vec::new();
    for (index, chunk) in euins.chunks(PDF_FILE_ENVELOPES).enumerate() {
        let answer = client
            .post(
                "/api/v1/sms/envelopes/print",
                &json!({ "euins": chunk, "encoding": "hex", "language": lang.map(|lang| lang.code()) }),
            )
            .map_err(|error| error.to_string())?;
        let pdf = decode_hex(answer["pdf_hex"].as_str().unwrap_or_default())?;
        let path = file_name(out, index + 1, parts);
        let mut file = offpay_server::keyfile::create_private_file(&path)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        file.write_all(&pdf)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        files.push(path.display().to_string());
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(json!({
        "count": count,
        "rows": rows,
        "first": euins.first(),
        "last": euins.last(),
        "files": files,
        "status": "unallocated until registered",
    }))
}

fn admin_call(
    client: &ApiClient,
    command: AdminCommand,
) -> Result<(Value, TextFormat), CallOrMessage> {
    Ok(match command {
        AdminCommand::Print {
            count,
            rows,
            out,
            lang,
        } => (
            print_envelopes(client, count, rows, &out, lang).map_err(CallOrMessage::Message)?,
            Box::new(|value: &Value| {
                format!(
                    "{} envelopes ({} rows), {} .. {}, written to {}; unallocated until registered",
                    field(value, "/count"),
                    field(value, "/rows"),
                    field(value, "/first"),
                    field(value, "/last"),
                    value["files"]
                        .as_array()
                        .map(|files| files
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                )
            }),
        ),
        AdminCommand::Import { file } => {
            let text = std::fs::read_to_string(&file).map_err(|error| {
                CallOrMessage::Message(format!("cannot read {}: {error}", file.display()))
            })?;
            (
                client.post("/api/v1/sms/envelopes/import", &json!({ "text": text }))?,
                Box::new(|value: &Value| {
                    format!(
                        "envelope {} imported ({} rows, sealed); unallocated until bound",
                        field(value, "/euin"),
                        field(value, "/rows")
                    )
                }),
            )
        }
        AdminCommand::Show { euin } => (
            client.get(&format!("/api/v1/sms/envelopes/{}", path_segment(&euin)))?,
            Box::new(envelope_text),
        ),
        AdminCommand::Bind { euin, account } => (
            client.post(
                &format!("/api/v1/sms/envelopes/{}/bind", path_segment(&euin)),
                &json!({ "account": account }),
            )?,
            Box::new(envelope_text),
        ),
        AdminCommand::SealRecords { force } => (
            client.post("/api/v1/sms/records/seal", &json!({ "force": force }))?,
            Box::new(|value: &Value| {
                format!(
                    "sealed {} accounts, {} pending callbacks and {} scheduled payments that had no MAC; \
                     {} records with a wrong MAC stay refused{}",
                    field(value, "/accounts"),
                    field(value, "/pending"),
                    field(value, "/scheduled"),
                    field(value, "/mismatched"),
                    value["mismatched_keys"]
                        .as_array()
                        .filter(|keys| !keys.is_empty())
                        .map(|keys| format!(
                            " ({})",
                            keys.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .unwrap_or_default()
                )
            }),
        ),
        AdminCommand::Unlock { euin } => (
            client.post(
                &format!("/api/v1/sms/envelopes/{}/unlock", path_segment(&euin)),
                &json!({}),
            )?,
            Box::new(envelope_text),
        ),
        AdminCommand::Account(AccountCommand::Create {
            receive,
            currency,
            notify,
            bind_phones,
            require_pay_number,
        }) => (
            client.post(
                "/api/v1/sms/accounts",
                &json!({ "receive_number": receive, "currency": currency, "notify_phone": notify,
                         "bound_phones": bind_phones, "require_pay_number": require_pay_number }),
            )?,
            Box::new(|value: &Value| {
                format!(
                    "SMS account {} ({}), ledger account {}\npay number {} — give it to the holder now; it is not stored and cannot be shown again",
                    field(value, "/receive_number"),
                    field(value, "/currency"),
                    field(value, "/ledger_account"),
                    field(value, "/pay_number")
                )
            }),
        ),
        AdminCommand::Account(AccountCommand::Show { number }) => (
            client.get(&format!("/api/v1/sms/accounts/{}", path_segment(&number)))?,
            Box::new(account_text),
        ),
        AdminCommand::Account(AccountCommand::Set {
            number,
            active,
            per_payment,
            per_day,
            per_week,
            dialback_threshold,
            bind_phones,
            notify,
        }) => (
            client.post(
                &format!("/api/v1/sms/accounts/{}", path_segment(&number)),
                &json!({ "active": active, "per_payment": per_payment, "per_day": per_day,
                         "per_week": per_week, "dialback_threshold": dialback_threshold,
                         "bound_phones": bind_phones, "notify_phone": notify }),
            )?,
            Box::new(account_text),
        ),
        AdminCommand::Settings { file } => {
            let value = match file {
                Some(file) => {
                    let text = std::fs::read_to_string(&file).map_err(|error| {
                        CallOrMessage::Message(format!("cannot read {}: {error}", file.display()))
                    })?;
                    let settings: Value = serde_json::from_str(&text).map_err(|error| {
                        CallOrMessage::Message(format!("{}: {error}", file.display()))
                    })?;
                    client.post_settings(&settings)?
                }
                None => client.get("/api/v1/sms/settings")?,
            };
            (value, Box::new(|value: &Value| format!("{value:#}")))
        }
        AdminCommand::Disputes => (
            client.get("/api/v1/sms/disputes")?,
            Box::new(|value: &Value| {
                let lines: Vec<String> = value["disputes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|dispute| {
                        format!(
                            "{:<40} account {} REF {} {}",
                            field(dispute, "/key"),
                            field(dispute, "/account"),
                            field(dispute, "/reference"),
                            field(dispute, "/status")
                        )
                    })
                    .collect();
                if lines.is_empty() {
                    "no disputes".to_owned()
                } else {
                    lines.join("\n")
                }
            }),
        ),
        AdminCommand::Decide {
            key,
            decision,
            note,
        } => (
            client.post(
                &format!("/api/v1/sms/disputes/{}/decide", path_segment(&key)),
                &json!({ "decision": decision, "note": note }),
            )?,
            Box::new(|value: &Value| {
                format!(
                    "dispute {} {}",
                    field(value, "/key"),
                    field(value, "/status")
                )
            }),
        ),
        AdminCommand::Terminal { payee } => (
            client.post("/api/v1/sms/terminals", &json!({ "payee": payee }))?,
            Box::new(|value: &Value| {
                format!(
                    "terminal {} pays into {}\ntoken {} — configure the terminal with it now; it is not shown again",
                    field(value, "/terminal_id"),
                    field(value, "/payee"),
                    field(value, "/token")
                )
            }),
        ),
        AdminCommand::Outbox => (
            client.get("/api/v1/sms/outbox")?,
            Box::new(|value: &Value| {
                let lines: Vec<String> = value["outbox"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|sms| {
                        // The API never shows the text (it may hold a used row's TAN).
                        format!(
                            "to {} (attempts {}): {} characters",
                            field(sms, "/to"),
                            field(sms, "/attempts"),
                            field(sms, "/text_chars")
                        )
                    })
                    .collect();
                if lines.is_empty() {
                    "outbox empty".to_owned()
                } else {
                    lines.join("\n")
                }
            }),
        ),
    })
}

/// How an answer is shown as text.
type TextFormat = Box<dyn FnOnce(&Value) -> String>;

/// A failed admin command.
enum CallOrMessage {
    Call(Box<CallError>),
    Message(String),
}

impl From<CallError> for CallOrMessage {
    fn from(error: CallError) -> CallOrMessage {
        CallOrMessage::Call(Box::new(error))
    }
}

trait SettingsClient {
    fn post_settings(&self, settings: &Value) -> Result<Value, CallError>;
}

impl SettingsClient for ApiClient {
    /// Replaces the rail's settings (the server takes PUT or POST).
    fn post_settings(&self, settings: &Value) -> Result<Value, CallError> {
        self.post("/api/v1/sms/settings", settings)
    }
}

fn envelope_text(value: &Value) -> String {
    format!(
        "envelope {}: {} ({} rows, {} free), account {}, failures {}",
        field(value, "/euin"),
        field(value, "/status"),
        field(value, "/rows"),
        field(value, "/free_rows"),
        field(value, "/account"),
        field(value, "/consecutive_failures")
    )
}

fn account_text(value: &Value) -> String {
    format!(
        "SMS account {} ({}): balance {}, envelope {}, active {}, bound phones {}, limits {}",
        field(value, "/receive_number"),
        field(value, "/currency"),
        field(value, "/balance"),
        field(value, "/current_envelope"),
        field(value, "/active"),
        field(value, "/bound_phones"),
        field(value, "/limits")
    )
}

/// Runs an operator command.
pub fn run_admin(client: &ApiClient, json: bool, command: AdminCommand) -> ExitCode {
    match admin_call(client, command) {
        Ok((value, text)) => {
            show(json, &value, text);
            ExitCode::SUCCESS
        }
        Err(CallOrMessage::Call(error)) => {
            eprintln!("offpay admin envelope: {error}");
            crate::exit::for_call(&error)
        }
        Err(CallOrMessage::Message(message)) => {
            eprintln!("offpay admin envelope: {message}");
            ExitCode::FAILURE
        }
    }
}

fn accept_existing(result: Result<Value, CallError>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(CallError::Api { status: 409, .. }) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

fn sms(client: &ApiClient, id: &str, from: &str, text: &str) -> Result<(), String> {
    println!("   {from} > {text}");
    let answer = client
        .post(
            "/api/v1/sms/simulate",
            &json!({ "from": from, "text": text, "message_id": id }),
        )
        .map_err(|error| error.to_string())?;
    for reply in answer["replies"].as_array().into_iter().flatten() {
        println!("   {from} < {}", reply.as_str().unwrap_or_default());
    }
    Ok(())
}

/// Approves approval `id` as the demo's finance user `demo-finance` (made now, or given a new
/// token when an earlier demo made it): the requester may not approve its own request.
fn approve_as_second_user(client: &ApiClient, id: &str) -> Result<(), String> {
    const USER: &str = "demo-finance";
    let made = match client.post("/api/v1/users", &json!({ "name": USER, "role": "finance" })) {
        Err(CallError::Api { status: 409, .. }) => {
            client.post(&format!("/api/v1/users/{USER}/rotate"), &json!({}))
        }
        other => other,
    }
    .map_err(|error| format!("cannot make the demo's finance user: {error}"))?;
    let token = made["token"]
        .as_str()
        .ok_or("the new user's answer holds no token")?
        .to_owned();
    let finance = ApiClient::with_token(client.base(), token)?;
    finance
        .post(&format!("/api/v1/approvals/{id}/approve"), &json!({}))
        .map_err(|error| format!("approval {id}: {error}"))?;
    Ok(())
}

/// This rail's part of `offpay demo`, against the running server at `client`.
pub fn demo(client: &ApiClient) -> Result<(), String> {
    const PAYER: &str = "111100002222";
    const PAYEE: &str = "901020377865";
    const PAYER_PHONE: &str = "+254700000001";
    const PAYEE_PHONE: &str = "+254700000002";
    println!("\n== Rail 2: SMS payments with a printed TAN envelope (seed 002)");
    client
        .get("/api/v1/sms/settings")
        .and_then(|mut settings| {
            settings["fees"] =
                json!([{ "currency": "KES", "low": "10", "middle": "15", "high": "25" }]);
            settings["dialback_defaults"] = json!([{ "currency": "KES", "amount": "500000" }]);
            // The seed's envelope keeps its printed checksum recipes, which do not see the whole
            // amount; the demo operator accepts them for payments up to KES 2,000.
            settings["printed_recipe_max"] = json!([{ "currency": "KES", "amount": "2000" }]);
            client.post_settings(&settings)
        })
        .map_err(|error| error.to_string())?;
    println!("   fees KES 10 / 15 / 25 (low / middle / high); callback from KES 500000");
    accept_existing(client.post(
        "/api/v1/sms/accounts",
        &json!({ "receive_number": PAYER, "notify_phone": PAYER_PHONE }),
    ))?;
    accept_existing(client.post(
        "/api/v1/sms/accounts",
        &json!({ "receive_number": PAYEE, "notify_phone": PAYEE_PHONE }),
    ))?;
    let cash_in = client.post(
        "/api/v1/transfers",
        &json!({ "transfers": [{ "id": "demo:sms-cash-in", "debit_account": "operator:float",
                 "credit_account": format!("sms:{PAYER}"), "amount": "1000000", "memo": "cash in at an agent" }] }),
    );
    match cash_in {
        Ok(_) => {}
        // Above the approval amount: a second person approves it (four eyes).
        Err(CallError::Api { status: 202, body }) => {
            let id = body
                .pointer("/error/approval/id")
                .and_then(Value::as_str)
                .ok_or("the held cash-in names no approval")?
                .to_owned();
            println!(
                "   the KES 1000000 cash-in creates e-money above the approval amount: held as approval {id}"
            );
            approve_as_second_user(client, &id)?;
            println!("   approved by user demo-finance (role finance), a second person: executed");
        }
        Err(error) => return Err(error.to_string()),
    }
    println!("   SMS accounts {PAYER} (KES 1000000 cashed in) and {PAYEE}");
    accept_existing(client.post(
        "/api/v1/sms/envelopes/import",
        &json!({ "text": SEED_ENVELOPE }),
    ))?;
    accept_existing(client.post(
        "/api/v1/sms/envelopes/26399912345/bind",
        &json!({ "account": PAYER }),
    ))?;
    println!("   the seed's envelope 263 999 12345 imported (sealed) and bound at an agent");
    let envelope = parse_envelope(SEED_ENVELOPE).map_err(|error| error.to_string())?;
    println!(
        "   -- low level: the seed's own SMS (row 1, checksum 9 2 7 9 2 7): KES 200,000.00, above \
         what the printed checksums may pay here (KES 2,000), so refused"
    );
    sms(
        client,
        "demo-sms-1",
        PAYER_PHONE,
        "263 999 12345 * 901020377865 * 200000.00* 1 * 9 2 7 9 2 7",
    )?;
    println!(
        "   -- middle level: payee grid-coded, amount + column 2, size code, the row's SUM (row 2)"
    );
    let payee = AccountNumber::parse(PAYEE).map_err(|_| "payee number")?;
    let amount = Amount::parse("1500", Currency::KES).map_err(|error| error.to_string())?;
    let text = grid_text(
        &envelope,
        SecurityLevel::Middle,
        "26399912345",
        &payee,
        &amount,
        2,
    )
    .ok_or("the seed envelope has no row 2")?;
    sms(client, "demo-sms-2", PAYER_PHONE, &text)?;
    println!("   -- balance with row 3 and its TAN");
    let tan = envelope
        .row(3)
        .map(|row| row.tan().reveal())
        .ok_or("the seed envelope has no row 3")?;
    sms(
        client,
        "demo-sms-3",
        PAYER_PHONE,
        &format!("BAL 26399912345 3 {tan}"),
    )?;
    let outbox = client
        .get("/api/v1/sms/outbox")
        .map_err(|error| error.to_string())?;
    for queued in outbox["outbox"].as_array().into_iter().flatten() {
        // The API shows no SMS text (it may hold a used row's TAN): who and how long.
        println!(
            "   {} < {} characters (queued for the gateway)",
            field(queued, "/to"),
            field(queued, "/text_chars")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_and_files_are_numbered_for_large_runs() {
        assert_eq!(decode_hex("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(decode_hex("0").is_err());
        let out = Path::new("/tmp/envelopes.pdf");
        assert_eq!(file_name(out, 1, 1), out);
        assert_eq!(file_name(out, 2, 3), Path::new("/tmp/envelopes-002.pdf"));
    }

    #[test]
    fn the_demo_middle_level_text_verifies_with_the_seed_envelope() {
        let envelope = parse_envelope(SEED_ENVELOPE).unwrap();
        let payee = AccountNumber::parse("901020377865").unwrap();
        let amount = Amount::parse("1500", Currency::KES).unwrap();
        let text = grid_text(
            &envelope,
            SecurityLevel::Middle,
            "26399912345",
            &payee,
            &amount,
            2,
        )
        .unwrap();
        assert!(matches!(
            offpay_sms_tan::parse(&text),
            Ok(offpay_sms_tan::Message::Payment(_))
        ));
    }
}
