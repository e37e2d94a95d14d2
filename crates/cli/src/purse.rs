//! `offpay purse`: a feature phone's short-code purse as a command line, and `offpay admin purse`.
//!
//! The purse state lives in a sealed purse file (the software secure element of `offpay-purse`),
//! opened with a device secret kept apart from it. Every command talks to the purse through its
//! APDU interface, exactly as a phone's SIM-toolkit menu would.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use offpay_operator::phone::{Country, normalise};
use offpay_purse::apdu::{AnswerSummary, PurseCard, PurseStatus};
use offpay_purse::pin_reset::ResetCode;
use offpay_purse::se::{self, DeviceSecret, SealParams, SoftwareSecureElement};
use offpay_purse::{
    Amount, Cause, Code, EntryKind, LogEntry, OperatorId, Phone, Pin, Provisioning, Purse,
    PurseError, SystemRandom, TicketCode, Timestamp,
};
use offpay_text::{Language, purse as purse_text};
use serde_json::{Value, json};

use crate::client::{ApiClient, CallError, path_segment};

/// How long one sync exchange may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Most answers one interactive menu session handles before it ends.
const MENU_STEPS_MAX: usize = 10_000;
/// Longest line read from the menu's input.
const MENU_LINE_BYTES_MAX: usize = 256;
/// Largest sync answer accepted from a server.
const ANSWER_BYTES_MAX: usize = 1 << 20;
/// Directory under the home directory holding the default device secret.
const DEVICE_SECRET_DIRECTORY: &str = ".offpay";
/// Default device secret file name.
const DEVICE_SECRET_FILE: &str = "device.secret";
/// Sync rounds one `sync` runs at most (a full log over SMS takes this many, and then some).
const SYNC_ROUNDS_MAX: usize =
    offpay_purse::params::LOG_UNACKNOWLEDGED_MAX / offpay_purse::params::SMS_ROUND_ENTRIES_MAX + 2;
/// The PIN of the demo's purses.
const DEMO_PIN: &str = "1234";
/// Entries shown by `log` (the purse keeps this many recent entries for display).
const LOG_LINES_MAX: usize = offpay_purse::params::LOG_RECENT_MAX;

/// Device-side commands.
#[derive(Debug, Args)]
pub struct PurseArgs {
    /// The purse file (made by `offpay admin purse provision --out FILE`)
    #[arg(long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    /// The device secret that seals purse files on this machine [default: ~/.offpay/device.secret]
    #[arg(long, env = "OFFPAY_DEVICE_SECRET", value_name = "FILE", global = true)]
    device_secret: Option<PathBuf>,
    /// Refuse a purse file of any other operator
    #[arg(long, env = "OFFPAY_OPERATOR", global = true)]
    operator: Option<String>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    json: bool,
    /// Read the PIN (which opens the purse file) from the first line of standard input instead
    /// of asking for it; `change-pin` reads the new PIN from the next line. A PIN is never taken
    /// from the command line.
    #[arg(long, global = true)]
    pin_stdin: bool,
    /// The menu's language: en, sw or fr (kept on this device, like the contacts) [default: en]
    #[arg(long, env = "OFFPAY_LANG", value_name = "LANG", global = true)]
    lang: Option<offpay_text::Language>,
    #[command(subcommand)]
    command: PurseCommand,
}

#[derive(Debug, Subcommand)]
enum PurseCommand {
    /// Payee: ask someone to pay you; prints Code 1 to read out to them.
    Request {
        /// The payer's phone number, e.g. +254700000001
        #[arg(long)]
        from: String,
        /// Amount, e.g. 450 or 450.50
        #[arg(long)]
        amount: String,
    },
    /// Payer: pay with the payee's Code 1; prints Code 2 to read out to them.
    Pay {
        /// The payee's phone number
        #[arg(long)]
        to: String,
        /// Amount (the same the payee asked for)
        #[arg(long)]
        amount: String,
        /// The payee's Code 1 (8 digits, spaces allowed)
        #[arg(long)]
        code: String,
    },
    /// Payee: type the payer's Code 2; prints the amount received.
    Accept {
        /// Code 2 (8 digits, spaces allowed)
        #[arg(long)]
        code: String,
        /// Which request, by the first four digits of its Code 1 (when several are pending)
        #[arg(long, value_name = "FIRST_FOUR_DIGITS")]
        request: Option<String>,
    },
    /// Balance, limits and what waits for a sync.
    Balance,
    /// The recent entries of the purse's log.
    Log,
    /// Requests waiting for a Code 2.
    Pending,
    /// Void a pending request (named by the first four digits of its Code 1).
    Cancel {
        /// First four digits of the request's Code 1
        #[arg(long)]
        request: String,
    },
    /// Payer: show the last Code 2 again.
    ShowCode,
    /// Upload the log to the operator and apply its answer.
    Sync {
        /// Server base URL
        #[arg(long, env = "OFFPAY_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Send the upload packed as SMS texts (what a basic phone does) instead of one HTTP body
        #[arg(long)]
        sms: bool,
    },
    /// Sync by SMS through a phone: prints the texts to send to the operator's SMS number (one
    /// round of the log: at most 100 entries). Then type the answer texts into `sms-answer`.
    SmsUpload,
    /// Apply the operator's answer texts (one per line on standard input, in any order, after
    /// the PIN line with --pin-stdin); says whether another `sms-upload` round is needed.
    SmsAnswer,
    /// Prints the text to send for a statement by SMS (authenticated by the purse's key; the
    /// operator sends the statement to this purse's own phone).
    StatementSms,
    /// Change the PIN (the current one opens the purse; the new one, 4 to 6 digits, is asked
    /// for next, or read from the next line of standard input with --pin-stdin).
    ChangePin,
    /// Reset a forgotten or blocked PIN with the one-time reset code the operator gave you after
    /// checking who you are: the code is asked for first, then the new PIN (with --pin-stdin:
    /// the code on the first line of standard input, the new PIN on the next). No old PIN.
    PinReset,
    /// Ask the operator for a key shared with a peer (for payments above the small-payment limit).
    AskKey {
        /// The peer's phone number
        #[arg(long)]
        peer: String,
    },
    /// Ticket codes to read out: each lets that peer install the key you share without syncing.
    Tickets,
    /// Saved contacts (the menu's "Send money" picks one with a single key).
    Contacts,
    /// Save a contact.
    AddContact {
        /// A short name, e.g. Mama
        #[arg(long)]
        name: String,
        /// The number, international or national
        #[arg(long)]
        phone: String,
    },
    /// Forget a contact.
    RemoveContact {
        /// Its name
        #[arg(long)]
        name: String,
    },
    /// Type in the 48-digit ticket code a peer read out.
    EnterTicket {
        /// The peer's phone number
        #[arg(long)]
        peer: String,
        /// The ticket code
        #[arg(long)]
        code: String,
    },
    /// Interactive menu, as on a feature phone's SIM toolkit.
    Menu {
        /// Server base URL for the menu's sync option
        #[arg(long, env = "OFFPAY_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
}

/// Why a command failed, said for the person at the keypad.
#[derive(Debug)]
enum CliError {
    /// The purse refused or the input was wrong.
    Purse(PurseError),
    /// The server refused or was unreachable.
    Server(String),
    /// Usage or local problem.
    Local(String),
}

impl From<PurseError> for CliError {
    fn from(error: PurseError) -> CliError {
        CliError::Purse(error)
    }
}

impl CliError {
    fn code(&self) -> &'static str {
        match self {
            CliError::Purse(error) => match error.cause() {
                Cause::Input => "input",
                Cause::Verification => "verification",
                Cause::Refused => "refused",
                Cause::Message => "message",
                Cause::Caller => "caller",
                Cause::Storage => "storage",
            },
            CliError::Server(_) => "server",
            CliError::Local(_) => "local",
        }
    }

    fn message(&self) -> String {
        match self {
            CliError::Purse(error) => explain(error),
            CliError::Server(message) | CliError::Local(message) => message.clone(),
        }
    }

    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Purse(error) if error.cause() == Cause::Input => ExitCode::from(2),
            CliError::Local(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// The purse's error with what to do about it.
fn explain(error: &PurseError) -> String {
    match error {
        PurseError::CodeLength { expected, found } => {
            format!("a code has {expected} digits; you typed {found}. Check it and type it again")
        }
        PurseError::CodeCharacter {
            position,
            character,
        } => format!(
            "character {position} of the code is {character:?}; a code is digits only (spaces are fine)"
        ),
        PurseError::RequestCodeMismatch => "Code 1 does not match this payee and amount: check the number, the amount and the code (nothing was paid, your PIN was not used)".to_owned(),
        PurseError::ResponseCodeMismatch {
            request_tries_left,
            period_tries_left,
        } => format!(
            "wrong Code 2: {request_tries_left} tries left for this request, {period_tries_left} until the next sync"
        ),
        PurseError::Storage(se_problem) => match se_problem {
            offpay_purse::StorageProblem::NotFound => "no purse file there".to_owned(),
            offpay_purse::StorageProblem::AlreadyExists => {
                "a file is already there; refusing to overwrite a purse".to_owned()
            }
            offpay_purse::StorageProblem::Tampered => "the purse file was modified, damaged, or sealed on another device (another device secret): refused".to_owned(),
            offpay_purse::StorageProblem::Io => "the purse file could not be read or written".to_owned(),
        },
        PurseError::WrongOperator { expected, found } => format!(
            "this purse file belongs to operator {found}, not {expected}: refused"
        ),
        other => other.to_string(),
    }
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0),
    )
}

fn default_device_secret() -> Result<PathBuf, CliError> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError::Local("HOME is not set: give --device-secret FILE".to_owned()))?;
    Ok(PathBuf::from(home)
        .join(DEVICE_SECRET_DIRECTORY)
        .join(DEVICE_SECRET_FILE))
}

/// Loads the device secret, creating it (and its directory) on first use.
fn device_secret(path: Option<&Path>) -> Result<DeviceSecret, CliError> {
    let path = match path {
        Some(path) => path.to_path_buf(),
        None => default_device_secret()?,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        offpay_server::keyfile::create_private_dir_all(parent).map_err(|error| {
            CliError::Local(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    DeviceSecret::load_or_create(&path).map_err(|error| {
        CliError::Local(format!(
            "device secret {}: {}",
            path.display(),
            explain(&error)
        ))
    })
}

type Card = PurseCard<SoftwareSecureElement>;

/// Contacts a purse keeps (the menu shows them as keys 1 to 9).
const CONTACTS_MAX: usize = 9;
/// Longest contact name, in characters (fits the 16-character screen with its key).
const CONTACT_NAME_CHARS_MAX: usize = 12;

fn purse_file(args: &PurseArgs) -> Result<&Path, CliError> {
    args.file
        .as_deref()
        .ok_or_else(|| CliError::Local("say which purse: --file FILE".to_owned()))
}

/// Saved contacts live beside the purse file in `<file>.contacts`: `name<TAB>+number` per line,
/// readable only by the owner (numbers of the people one pays are private).
fn contacts_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".contacts");
    PathBuf::from(name)
}

fn load_contacts(file: &Path) -> Result<Vec<(String, Phone)>, CliError> {
    let path = contacts_path(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(CliError::Local(format!("{}: {error}", path.display())));
        }
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .take(CONTACTS_MAX)
        .map(|line| {
            let (name, number) = line.split_once('\t').ok_or_else(|| {
                CliError::Local(format!("{}: a line is not name<TAB>number", path.display()))
            })?;
            let phone = Phone::parse(number).map_err(|_| {
                CliError::Local(format!("{}: {number:?} is not a number", path.display()))
            })?;
            Ok((name.to_owned(), phone))
        })
        .collect()
}

fn save_contacts(file: &Path, contacts: &[(String, Phone)]) -> Result<(), CliError> {
    let path = contacts_path(file);
    let text: String = contacts
        .iter()
        .map(|(name, phone)| format!("{name}\t{phone}\n"))
        .collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(&path)
        .and_then(|mut out| out.write_all(text.as_bytes()))
        .map_err(|error| CliError::Local(format!("{}: {error}", path.display())))
}

fn contacts_output(contacts: &[(String, Phone)]) -> Output {
    let text = if contacts.is_empty() {
        "No saved contacts.".to_owned()
    } else {
        contacts
            .iter()
            .enumerate()
            .map(|(index, (name, phone))| format!("{} {name} {phone}", index + 1))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Output {
        text,
        json: json!({ "contacts": contacts.iter().map(|(name, phone)| json!({
            "name": name, "phone": phone.to_string(),
        })).collect::<Vec<_>>() }),
    }
}

/// Reads a PIN: from the next line of `input` with --pin-stdin, else asked for on the terminal
/// with echo turned off. Never shown; never from the command line.
fn read_pin(pin_stdin: bool, input: &mut dyn BufRead, prompt: &str) -> Result<Pin, CliError> {
    if !pin_stdin {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(CliError::Local(
                "the PIN is read from a terminal: give it on standard input with --pin-stdin"
                    .to_owned(),
            ));
        }
        let typed = rpassword::prompt_password(format!("{prompt} ")).map_err(local_io)?;
        return Ok(Pin::parse(typed.trim())?);
    }
    let line =
        read_line(input).ok_or_else(|| CliError::Local("no PIN on standard input".to_owned()))?;
    Ok(Pin::parse(&line)?)
}

/// `offpay purse pin-reset`: the reset code opens the purse file (no old PIN), the purse checks
/// it and takes the new PIN. Both are read like a PIN: never echoed, never from argv.
fn pin_reset(args: &PurseArgs, input: &mut dyn BufRead) -> Result<Output, CliError> {
    purse_file(args)?;
    let code = if args.pin_stdin {
        read_line(input)
            .ok_or_else(|| CliError::Local("no reset code on standard input".to_owned()))?
    } else {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(CliError::Local(
                "the reset code is read from a terminal: give it on standard input with --pin-stdin"
                    .to_owned(),
            ));
        }
        rpassword::prompt_password("Reset code: ").map_err(local_io)?
    };
    let code = ResetCode::parse(code.trim())?;
    let new = read_pin(args.pin_stdin, input, "New PIN:")?;
    let phone = reset_in_place(args, &code, &new)?;
    Ok(Output {
        text: format!("PIN reset for {phone}: the new PIN opens the purse, with every try back."),
        json: json!({ "pin_reset": true, "phone": phone.to_string() }),
    })
}

/// Resets the PIN of the purse file with `code`; returns the purse's phone.
fn reset_in_place(args: &PurseArgs, code: &ResetCode, new: &Pin) -> Result<Phone, CliError> {
    let path = purse_file(args)?;
    let (operator, _) = se::peek_file(path)?;
    if let Some(expected) = &args.operator {
        let expected = OperatorId::new(expected)?;
        if expected != operator {
            return Err(PurseError::WrongOperator {
                expected,
                found: operator,
            }
            .into());
        }
    }
    let secret = device_secret(args.device_secret.as_deref())?;
    let element = SoftwareSecureElement::reset_pin(path, secret, operator, code, new, now())?;
    Ok(element.purse().identity().phone)
}

fn open_card(args: &PurseArgs, pin: &Pin) -> Result<Card, CliError> {
    let path = args
        .file
        .as_deref()
        .ok_or_else(|| CliError::Local("say which purse: --file FILE".to_owned()))?;
    let (operator, _) = se::peek_file(path).map_err(|error| {
        CliError::Local(format!(
            "purse file {}: {}",
            path.display(),
            explain(&error)
        ))
    })?;
    if let Some(expected) = &args.operator {
        let expected = OperatorId::new(expected)?;
        if expected != operator {
            return Err(PurseError::WrongOperator {
                expected,
                found: operator,
            }
            .into());
        }
    }
    let secret = device_secret(args.device_secret.as_deref())?;
    let element = SoftwareSecureElement::open(path, secret, operator, pin)?;
    Ok(PurseCard::new(element, now())?)
}

/// A number as typed: international (`+254700000001`, `00254…`) or national (`0700000001`), read
/// in the country of the purse's own number and made E.164 as the server keeps it, so that both
/// purses of a payment put the same number in their codes.
fn parse_phone_from(text: &str, home: Phone) -> Result<Phone, CliError> {
    let Some(country) = Country::of_e164(&home.to_string()) else {
        // A home number of no known country: the purse's own rule (its country code).
        return Phone::parse_from(text.trim(), home).map_err(|_| {
            CliError::Local(format!(
                "{text:?} is not a phone number: type it in international form such as +254700000001"
            ))
        });
    };
    let e164 = normalise(text, country)
        .map_err(|error| {
            CliError::Local(format!(
                "the phone number {text:?} {error}; type it in international form such as +254700000001, or national such as 0700000001"
            ))
        })?;
    Phone::parse(e164.as_str()).map_err(|_| {
        CliError::Purse(PurseError::PhoneNumber).with_context(&format!(
            "{text:?} is not a phone number: type it in international form such as +254700000001, or national such as 0700000001"
        ))
    })
}

impl CliError {
    fn with_context(self, message: &str) -> CliError {
        match self {
            CliError::Purse(PurseError::PhoneNumber) => CliError::Local(message.to_owned()),
            other => other,
        }
    }
}

fn parse_amount(card: &Card, text: &str) -> Result<Amount, CliError> {
    card.parse_amount(text.trim()).map_err(|error| {
        CliError::Local(format!(
            "amount {text:?}: {error} (write it like 450 or 450.50)"
        ))
    })
}

fn parse_request_digits(text: &str) -> Result<u16, CliError> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != 4 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CliError::Local(format!(
            "{text:?}: name the request by the first four digits of its Code 1"
        )));
    }
    digits
        .parse()
        .map_err(|_| CliError::Local(format!("{text:?} is not four digits")))
}

/// `1234 5678`, as people read codes.
fn show(code: &Code) -> String {
    code.to_string()
}

fn digits(code: &Code) -> String {
    format!("{:08}", code.as_number())
}

fn describe(entry: &LogEntry) -> String {
    match entry.kind {
        EntryKind::Debit { payee, .. } => format!("paid {} to {payee}", entry.amount),
        EntryKind::Credit { payer, .. } => format!("received {} from {payer}", entry.amount),
        EntryKind::OperatorCredit { credit_id } => {
            format!("operator credit {} (#{credit_id})", entry.amount)
        }
        EntryKind::PaymentCredit { payer, .. } => {
            format!("received {} from {payer} (via sync)", entry.amount)
        }
        EntryKind::Settlement { debit_id } => {
            format!(
                "handed {} back to the operator (settlement #{debit_id})",
                entry.amount
            )
        }
    }
}

fn entry_json(entry: &LogEntry) -> Value {
    let (kind, counterparty) = match entry.kind {
        EntryKind::Debit { payee, .. } => ("debit", Some(payee)),
        EntryKind::Credit { payer, .. } => ("credit", Some(payer)),
        EntryKind::OperatorCredit { .. } => ("operator_credit", None),
        EntryKind::PaymentCredit { payer, .. } => ("payment_credit", Some(payer)),
        EntryKind::Settlement { .. } => ("settlement", None),
    };
    json!({
        "counter": entry.counter,
        "time": entry.time.0,
        "kind": kind,
        "amount": entry.amount.decimal().to_string(),
        "currency": entry.amount.currency().code(),
        "counterparty": counterparty.map(|phone| phone.to_string()),
        "text": describe(entry),
    })
}

fn status_json(status: &PurseStatus) -> Value {
    json!({
        "operator": status.operator.as_str(),
        "purse_id": status.purse_id.0,
        "phone": status.phone.to_string(),
        "balance": status.balance.decimal().to_string(),
        "currency": status.balance.currency().code(),
        "counter": status.counter,
        "unacknowledged": status.unacknowledged,
        "pending": status.pending,
        "pin_tries_left": status.pin_tries_left,
        "blocked": status.blocked,
        "failures_since_sync": status.failures_since_sync,
        "spent_since_sync": status.spent_since_sync.decimal().to_string(),
        "limits": {
            "max_balance": status.limits.max_balance.decimal().to_string(),
            "max_single_payment": status.limits.max_single_payment.decimal().to_string(),
            "max_spent_since_sync": status.limits.max_spent_since_sync.decimal().to_string(),
            "small_payment_limit": status.limits.small_payment_limit.decimal().to_string(),
            "valid_until": status.limits.valid_until.0,
        },
    })
}

/// How a sync reaches the server.
enum SyncPath<'a> {
    /// One HTTP POST of the binary upload to `/purse/v1/sync`.
    Http(&'a str),
    /// The upload packed as SMS texts, posted as JSON to `/purse/v1/sms` through an API client.
    Sms(&'a ApiClient),
    /// SMS texts posted to a server URL without an operator token.
    SmsUrl(&'a str),
}

fn http_client() -> Result<reqwest::blocking::Client, CliError> {
    crate::client::http_builder()
        .map_err(CliError::Local)?
        .timeout(SYNC_TIMEOUT)
        .build()
        .map_err(|error| CliError::Local(format!("cannot build an HTTP client: {error}")))
}

fn server_error(status: u16, body: &str) -> CliError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|value| value.pointer("/error/message"))
        .and_then(Value::as_str)
        .unwrap_or(body);
    let code = parsed
        .as_ref()
        .and_then(|value| value.pointer("/error/code"))
        .and_then(Value::as_str)
        .unwrap_or("error");
    CliError::Server(format!(
        "the server refused the sync: {message} ({code}, HTTP {status})"
    ))
}

/// Posts a binary upload; returns the answer bytes.
fn post_upload(server: &str, upload: Vec<u8>) -> Result<Vec<u8>, CliError> {
    let url = format!("{}/purse/v1/sync", server.trim_end_matches('/'));
    let response = http_client()?
        .post(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            offpay_server::rails::purse::SYNC_MEDIA_TYPE,
        )
        .body(upload)
        .send()
        .map_err(|error| CliError::Server(format!("cannot reach {url}: {error}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .map_err(|error| CliError::Server(format!("reading the answer from {url}: {error}")))?;
    if !status.is_success() {
        return Err(server_error(
            status.as_u16(),
            &String::from_utf8_lossy(&body),
        ));
    }
    if body.len() > ANSWER_BYTES_MAX {
        return Err(CliError::Server(format!(
            "the answer is larger than {ANSWER_BYTES_MAX} bytes"
        )));
    }
    Ok(body.to_vec())
}

fn sms_answer(answer: &Value) -> Result<Vec<u8>, CliError> {
    let parts: Vec<String> = answer["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| part.as_str().map(str::to_owned))
        .collect();
    Ok(offpay_purse::sync::unpack_sms(&parts)?)
}

/// Sends an upload; returns the answer and how many messages carried the upload.
fn exchange(path: &SyncPath<'_>, upload: Vec<u8>) -> Result<(Vec<u8>, usize), CliError> {
    match path {
        SyncPath::Http(server) => Ok((post_upload(server, upload)?, 1)),
        SyncPath::Sms(client) => {
            let id =
                offpay_purse::sync::sms_message_id(offpay_purse::sync::upload_sequence(&upload)?);
            let parts = offpay_purse::sync::pack_sms(&upload, id)?;
            let count = parts.len();
            let answer = client
                .post("/purse/v1/sms", &json!({ "parts": parts, "answer_id": id }))
                .map_err(|error| {
                    CliError::Server(format!("the server refused the sync: {error}"))
                })?;
            Ok((sms_answer(&answer)?, count))
        }
        SyncPath::SmsUrl(server) => {
            let id =
                offpay_purse::sync::sms_message_id(offpay_purse::sync::upload_sequence(&upload)?);
            let parts = offpay_purse::sync::pack_sms(&upload, id)?;
            let count = parts.len();
            let url = format!("{}/purse/v1/sms", server.trim_end_matches('/'));
            let response = http_client()?
                .post(&url)
                .json(&json!({ "parts": parts, "answer_id": id }))
                .send()
                .map_err(|error| CliError::Server(format!("cannot reach {url}: {error}")))?;
            let status = response.status();
            let text = response.text().map_err(|error| {
                CliError::Server(format!("reading the answer from {url}: {error}"))
            })?;
            if !status.is_success() {
                return Err(server_error(status.as_u16(), &text));
            }
            let answer: Value = serde_json::from_str(&text)
                .map_err(|error| CliError::Server(format!("the answer is not JSON: {error}")))?;
            Ok((sms_answer(&answer)?, count))
        }
    }
}

/// Uploads the purse's log in rounds (at most a round's entries each: 100 over SMS, 1,000 over
/// HTTP) and applies each answer, until the operator has acknowledged the whole log or a round
/// takes nothing. Returns the last answer and the entries the rounds carried.
fn sync_card(card: &mut Card, path: &SyncPath<'_>) -> Result<(AnswerSummary, usize), CliError> {
    let round_entries = match path {
        SyncPath::Http(_) => offpay_purse::params::HTTP_ROUND_ENTRIES_MAX,
        SyncPath::Sms(_) | SyncPath::SmsUrl(_) => offpay_purse::params::SMS_ROUND_ENTRIES_MAX,
    };
    let mut uploaded = 0usize;
    for _ in 0..SYNC_ROUNDS_MAX {
        let waiting = card.status(now())?.unacknowledged;
        let carried = usize::from(waiting).min(round_entries);
        let upload = card.start_sync_round(round_entries as u16, now())?;
        let (answer, _messages) = exchange(path, upload)?;
        let summary = card.apply_answer(&answer, now())?;
        uploaded += carried;
        let left = card.status(now())?.unacknowledged;
        if left == 0 || left >= waiting {
            return Ok((summary, uploaded));
        }
    }
    Err(CliError::Server(format!(
        "the log did not empty in {SYNC_ROUNDS_MAX} sync rounds; sync again"
    )))
}

fn summary_json(summary: &AnswerSummary, status: &PurseStatus, uploaded: usize) -> Value {
    json!({
        "uploaded_entries": uploaded,
        "acknowledged_through": summary.acknowledged_through,
        "credits_applied": summary.credits,
        "new_scheme_epoch": summary.new_epoch,
        "pin_unblocked": summary.pin_unblocked,
        "blocked": summary.blocked,
        "balance": status.balance.decimal().to_string(),
        "currency": status.balance.currency().code(),
    })
}

fn summary_text(summary: &AnswerSummary, status: &PurseStatus, uploaded: usize) -> String {
    let mut lines = vec![format!(
        "Synced: {uploaded} entries uploaded, acknowledged through #{}.",
        summary.acknowledged_through
    )];
    if summary.credits > 0 {
        lines.push(format!("{} credit(s) received.", summary.credits));
    }
    if let Some(epoch) = summary.new_epoch {
        lines.push(format!("New scheme key (epoch {epoch})."));
    }
    if summary.pin_unblocked {
        lines.push("PIN unblocked.".to_owned());
    }
    if summary.blocked {
        lines.push("This purse is BLOCKED by the operator.".to_owned());
    }
    lines.push(format!("Balance {}", status.balance));
    lines.join("\n")
}

/// Runs a device-side command.
pub fn run(args: PurseArgs) -> ExitCode {
    let json = args.json;
    match run_purse(&args) {
        Ok(output) => {
            print_output(json, &output);
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                println!(
                    "{}",
                    json!({ "error": { "code": error.code(), "message": error.message() } })
                );
            } else {
                eprintln!("offpay purse: {}", error.message());
            }
            error.exit_code()
        }
    }
}

/// What a command printed: text for people, JSON for programs.
struct Output {
    text: String,
    json: Value,
}

fn print_output(json: bool, output: &Output) {
    if json {
        println!("{}", output.json);
    } else {
        println!("{}", output.text);
    }
}

fn run_purse(args: &PurseArgs) -> Result<Output, CliError> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    if let PurseCommand::Menu { server } = &args.command {
        let mut stdout = std::io::stdout();
        let lang = args.lang.unwrap_or_default();
        let typed = if args.pin_stdin {
            read_line(&mut input)
        } else {
            writeln!(stdout, "{}", say(lang, purse_text::FORGOT_PIN)).map_err(local_io)?;
            ask_secret(&mut input, &mut stdout, "Purse PIN:")?
        };
        let Some(typed) = typed else {
            return Err(CliError::Local("no PIN given".to_owned()));
        };
        // `*`: the PIN is forgotten; the operator's one-time reset code and a new PIN open it.
        let pin = if typed.trim() == "*" {
            let code = ask_secret(&mut input, &mut stdout, &say(lang, purse_text::RESET_CODE))?;
            let new = ask_secret(&mut input, &mut stdout, &say(lang, purse_text::NEW_PIN))?;
            let (Some(code), Some(new)) = (code, new) else {
                return Err(CliError::Local("no reset code or new PIN given".to_owned()));
            };
            let new = Pin::parse(new.trim())?;
            reset_in_place(args, &ResetCode::parse(code.trim())?, &new)?;
            screen(&mut stdout, &[say(lang, purse_text::PIN_RESET)])?;
            new
        } else {
            Pin::parse(typed.trim())?
        };
        let mut card = open_card(args, &pin)?;
        let contacts = load_contacts(purse_file(args)?)?;
        menu(
            args.lang.unwrap_or_default(),
            &mut card,
            &mut input,
            &mut stdout,
            &SyncPath::Http(server),
            &contacts,
        )?;
        return Ok(Output {
            text: String::new(),
            json: json!({ "menu": "closed" }),
        });
    }
    if args.file.is_none() {
        return Err(CliError::Local("say which purse: --file FILE".to_owned()));
    }
    if let PurseCommand::PinReset = &args.command {
        return pin_reset(args, &mut input);
    }
    let pin = read_pin(args.pin_stdin, &mut input, "PIN:")?;
    let mut card = open_card(args, &pin)?;
    match &args.command {
        PurseCommand::Request { from, amount } => {
            let payer = parse_phone_from(from, card.status(now())?.phone)?;
            let amount = parse_amount(&card, amount)?;
            let code1 = card.request(payer, amount, now())?;
            Ok(Output {
                text: format!(
                    "Code 1: {}\nRead it to {payer}; they pay {amount} with it and read you their Code 2.",
                    show(&code1)
                ),
                json: json!({ "code1": digits(&code1), "shown": show(&code1), "payer": payer.to_string(),
                               "amount": amount.decimal().to_string(), "currency": amount.currency().code() }),
            })
        }
        PurseCommand::Pay { to, amount, code } => {
            let payee = parse_phone_from(to, card.status(now())?.phone)?;
            let amount = parse_amount(&card, amount)?;
            let code1 = Code::parse(code)?;
            card.check_request(payee, amount, code1, now())?;
            let (code2, entry) = card.pay(payee, amount, code1, &pin, now())?;
            Ok(Output {
                text: format!(
                    "Paid {amount} to {payee}.\nCode 2: {}\nRead it to the payee.",
                    show(&code2)
                ),
                json: json!({ "code2": digits(&code2), "shown": show(&code2), "payee": payee.to_string(),
                               "amount": amount.decimal().to_string(), "currency": amount.currency().code(),
                               "counter": entry.counter }),
            })
        }
        PurseCommand::Accept { code, request } => {
            let code2 = Code::parse(code)?;
            let request = request.as_deref().map(parse_request_digits).transpose()?;
            let entry = card.accept(code2, request, now())?;
            Ok(Output {
                text: format!("Received: {}", describe(&entry)),
                json: json!({ "credited": entry.amount.decimal().to_string(),
                               "currency": entry.amount.currency().code(), "entry": entry_json(&entry) }),
            })
        }
        PurseCommand::Balance => {
            let status = card.status(now())?;
            let mut text = format!(
                "{}  Balance {}\n{} entries wait for a sync; {} request(s) pending; PIN tries left {}",
                status.phone,
                status.balance,
                status.unacknowledged,
                status.pending,
                status.pin_tries_left
            );
            if status.blocked {
                text.push_str("\nBLOCKED by the operator");
            }
            Ok(Output {
                text,
                json: status_json(&status),
            })
        }
        PurseCommand::Log => {
            let entries = card.read_log(true, now())?;
            let shown: Vec<&LogEntry> = entries.iter().rev().take(LOG_LINES_MAX).collect();
            let text = if shown.is_empty() {
                "No entries yet.".to_owned()
            } else {
                shown
                    .iter()
                    .map(|entry| format!("#{:<4} {}", entry.counter, describe(entry)))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(Output {
                text,
                json: json!({ "entries": shown.iter().map(|entry| entry_json(entry)).collect::<Vec<_>>() }),
            })
        }
        PurseCommand::Pending => {
            let pending = card.pending(now())?;
            let text = if pending.is_empty() {
                "No requests pending.".to_owned()
            } else {
                pending
                    .iter()
                    .map(|request| {
                        format!(
                            "{}  {} from {}",
                            show(&request.code1),
                            request.amount,
                            request.payer
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(Output {
                text,
                json: json!({ "pending": pending.iter().map(|request| json!({
                    "code1": digits(&request.code1), "payer": request.payer.to_string(),
                    "amount": request.amount.decimal().to_string(), "failures": request.failures,
                })).collect::<Vec<_>>() }),
            })
        }
        PurseCommand::Cancel { request } => {
            let nonce_b = parse_request_digits(request)?;
            card.cancel_request(nonce_b, now())?;
            Ok(Output {
                text: "Request cancelled.".to_owned(),
                json: json!({ "cancelled": format!("{nonce_b:04}") }),
            })
        }
        PurseCommand::ShowCode => {
            let last = card.show_code(now())?;
            Ok(Output {
                text: format!(
                    "Last payment: {} to {}\nCode 2: {}",
                    last.amount,
                    last.payee,
                    show(&last.code2)
                ),
                json: json!({ "code2": digits(&last.code2), "shown": show(&last.code2),
                               "payee": last.payee.to_string(), "amount": last.amount.decimal().to_string(),
                               "counter": last.counter }),
            })
        }
        PurseCommand::Sync { server, sms } => {
            let path = if *sms {
                SyncPath::SmsUrl(server)
            } else {
                SyncPath::Http(server)
            };
            let (summary, uploaded) = sync_card(&mut card, &path)?;
            let status = card.status(now())?;
            Ok(Output {
                text: summary_text(&summary, &status, uploaded),
                json: summary_json(&summary, &status, uploaded),
            })
        }
        PurseCommand::SmsUpload => {
            let upload =
                card.start_sync_round(offpay_purse::params::SMS_ROUND_ENTRIES_MAX as u16, now())?;
            let sequence = offpay_purse::sync::upload_sequence(&upload)?;
            let texts = offpay_purse::sync::pack_sms(
                &upload,
                offpay_purse::sync::sms_message_id(sequence),
            )?;
            Ok(Output {
                text: texts.join("\n"),
                json: json!({ "texts": texts, "sequence": sequence }),
            })
        }
        PurseCommand::SmsAnswer => {
            let mut texts = Vec::new();
            let mut line = String::new();
            while texts.len() < offpay_purse::params::SMS_PARTS_MAX {
                line.clear();
                let read = std::io::BufRead::read_line(&mut input, &mut line).map_err(|error| {
                    CliError::Local(format!("reading the answer texts: {error}"))
                })?;
                if read == 0 {
                    break;
                }
                if !line.trim().is_empty() {
                    texts.push(line.trim().to_owned());
                }
            }
            let answer = offpay_purse::sync::unpack_sms(&texts)?;
            let summary = card.apply_answer(&answer, now())?;
            let status = card.status(now())?;
            let mut output_json = summary_json(&summary, &status, 0);
            output_json["unacknowledged"] = json!(status.unacknowledged);
            let mut text = summary_text(&summary, &status, 0);
            if status.unacknowledged > 0 {
                text.push_str(&format!(
                    "\n{} entries still wait: run sms-upload again.",
                    status.unacknowledged
                ));
            }
            Ok(Output {
                text,
                json: output_json,
            })
        }
        PurseCommand::StatementSms => {
            let request = card.statement_request(now())?;
            Ok(Output {
                text: format!(
                    "Send this text to the operator's SMS number; the statement comes to this purse's phone:\n{}",
                    request.text()
                ),
                json: json!({ "text": request.text(), "counter": request.counter }),
            })
        }
        // Handled before the PIN is asked for: the reset code opens the purse instead.
        PurseCommand::PinReset => Err(CliError::Local(
            "pin-reset takes the reset code, not the PIN".to_owned(),
        )),
        PurseCommand::ChangePin => {
            let new = read_pin(args.pin_stdin, &mut input, "New PIN:")?;
            card.change_pin(&pin, &new, now())?;
            Ok(Output {
                text: "PIN changed.".to_owned(),
                json: json!({ "pin_changed": true }),
            })
        }
        PurseCommand::AskKey { peer } => {
            let peer = parse_phone_from(peer, card.status(now())?.phone)?;
            card.ask_pairwise_key(peer, now())?;
            Ok(Output {
                text: format!("Asked for a key shared with {peer}; it arrives at the next sync."),
                json: json!({ "asked": peer.to_string() }),
            })
        }
        PurseCommand::Contacts => {
            let contacts = load_contacts(purse_file(args)?)?;
            Ok(contacts_output(&contacts))
        }
        PurseCommand::AddContact { name, phone } => {
            let file = purse_file(args)?;
            let name = name.trim();
            if name.is_empty()
                || name.chars().count() > CONTACT_NAME_CHARS_MAX
                || name.contains('\t')
            {
                return Err(CliError::Local(format!(
                    "a contact's name is 1 to {CONTACT_NAME_CHARS_MAX} characters"
                )));
            }
            let phone = parse_phone_from(phone, card.status(now())?.phone)?;
            let mut contacts = load_contacts(file)?;
            contacts.retain(|(held, _)| held != name);
            if contacts.len() >= CONTACTS_MAX {
                return Err(CliError::Local(format!(
                    "at most {CONTACTS_MAX} contacts: remove one first"
                )));
            }
            contacts.push((name.to_owned(), phone));
            save_contacts(file, &contacts)?;
            Ok(contacts_output(&contacts))
        }
        PurseCommand::RemoveContact { name } => {
            let file = purse_file(args)?;
            let mut contacts = load_contacts(file)?;
            let before = contacts.len();
            contacts.retain(|(held, _)| held != name.trim());
            if contacts.len() == before {
                return Err(CliError::Local(format!("no contact named {name:?}")));
            }
            save_contacts(file, &contacts)?;
            Ok(contacts_output(&contacts))
        }
        PurseCommand::Tickets => {
            let tickets = card.tickets(now())?;
            let mut text = if tickets.is_empty() {
                "No ticket codes. Ask for a key with `ask-key --peer P`; the code comes with your next sync."
                    .to_owned()
            } else {
                String::new()
            };
            for ticket in &tickets {
                text.push_str(&format!("Read this to {}: {}\n", ticket.peer, ticket.code));
            }
            Ok(Output {
                text: text.trim_end().to_owned(),
                json: json!({ "tickets": tickets.iter().map(|ticket| json!({
                    "peer": ticket.peer.to_string(),
                    "code": std::str::from_utf8(ticket.code.as_digits()).unwrap_or_default(),
                    "shown": ticket.code.to_string(),
                })).collect::<Vec<_>>() }),
            })
        }
        PurseCommand::EnterTicket { peer, code } => {
            let peer = parse_phone_from(peer, card.status(now())?.phone)?;
            let ticket = TicketCode::parse(code)?;
            card.enter_ticket(peer, &ticket, now())?;
            Ok(Output {
                text: format!("Key shared with {peer} installed."),
                json: json!({ "installed": peer.to_string() }),
            })
        }
        PurseCommand::Menu { .. } => Err(CliError::Local("menu handled above".to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// The SIM-toolkit menu.

fn read_line(input: &mut dyn BufRead) -> Option<String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().chars().take(MENU_LINE_BYTES_MAX).collect()),
    }
}

fn ask(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    prompt: &str,
) -> Result<Option<String>, CliError> {
    write!(output, "{prompt}\n> ").map_err(local_io)?;
    output.flush().map_err(local_io)?;
    Ok(read_line(input))
}

/// [`ask`] for a PIN or a reset code: on a terminal it is read with echo turned off (never shown
/// on the screen); from a pipe (a script, a test) it is the next line, as with `ask`.
fn ask_secret(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    prompt: &str,
) -> Result<Option<String>, CliError> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        return ask(input, output, prompt);
    }
    write!(output, "{prompt}\n> ").map_err(local_io)?;
    output.flush().map_err(local_io)?;
    let typed = rpassword::read_password().map_err(local_io)?;
    Ok(Some(
        typed.trim().chars().take(MENU_LINE_BYTES_MAX).collect(),
    ))
}

fn local_io(error: std::io::Error) -> CliError {
    CliError::Local(format!("terminal: {error}"))
}

const MENU_ITEMS: [offpay_text::Id; 9] = [
    purse_text::ITEM_RECEIVE,
    purse_text::ITEM_SEND,
    purse_text::ITEM_ACCEPT,
    purse_text::ITEM_SHOW,
    purse_text::ITEM_STATEMENT,
    purse_text::ITEM_PENDING,
    purse_text::ITEM_SYNC,
    purse_text::ITEM_PIN,
    purse_text::ITEM_EXIT,
];

/// Menu text `id` in `lang`.
fn say(lang: Language, id: offpay_text::Id) -> String {
    offpay_text::text(lang, id, &[])
}

/// Menu text `id` in `lang` with one variable.
fn say_with(
    lang: Language,
    id: offpay_text::Id,
    name: &str,
    value: &dyn std::fmt::Display,
) -> String {
    offpay_text::text(lang, id, &[(name, value)])
}

/// One screen: a title and short lines, as on a 16-character display.
fn screen(output: &mut dyn Write, lines: &[String]) -> Result<(), CliError> {
    writeln!(output, "----------------").map_err(local_io)?;
    for line in lines {
        writeln!(output, "{line}").map_err(local_io)?;
    }
    Ok(())
}

/// The interactive menu: reads choices from `input` until `0` or the end of input.
fn menu(
    lang: Language,
    card: &mut Card,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    sync_path: &SyncPath<'_>,
    contacts: &[(String, Phone)],
) -> Result<(), CliError> {
    for _ in 0..MENU_STEPS_MAX {
        let status = card.status(now())?;
        let mut lines = vec![
            say(lang, purse_text::TITLE),
            status.phone.to_string(),
            say_with(lang, purse_text::BALANCE, "amount", &status.balance),
        ];
        lines.extend(MENU_ITEMS.iter().map(|item| say(lang, *item)));
        screen(output, &lines)?;
        let Some(choice) = ask(input, output, &say(lang, purse_text::CHOOSE))? else {
            return Ok(());
        };
        let result = match choice.as_str() {
            "0" => return Ok(()),
            "1" => menu_receive(lang, card, input, output),
            "2" => menu_send(lang, card, input, output, contacts),
            "3" => menu_accept(lang, card, input, output),
            "4" => card
                .show_code(now())
                .map_err(CliError::from)
                .and_then(|last| {
                    screen(
                        output,
                        &[
                            say(lang, purse_text::LAST_PAYMENT),
                            format!("{}", last.amount),
                            say_with(lang, purse_text::TO, "who", &last.payee),
                            "Code 2:".to_owned(),
                            show(&last.code2),
                        ],
                    )?;
                    hold(lang, input, output)
                }),
            "5" => card
                .read_log(true, now())
                .map_err(CliError::from)
                .and_then(|entries| {
                    let mut lines = vec![say(lang, purse_text::MINI_STATEMENT)];
                    if entries.is_empty() {
                        lines.push(say(lang, purse_text::NO_ENTRIES));
                    }
                    for entry in entries.iter().rev().take(5) {
                        let sign = if entry.is_debit() { "-" } else { "+" };
                        lines.push(format!("{} {sign}{}", day_month(entry.time), entry.amount));
                        lines.push(format!(" {}", counterparty(lang, entry)));
                    }
                    screen(output, &lines)
                }),
            "6" => card
                .pending(now())
                .map_err(CliError::from)
                .and_then(|pending| {
                    let mut lines = vec![say(lang, purse_text::PENDING)];
                    if pending.is_empty() {
                        lines.push(say(lang, purse_text::NONE));
                    }
                    for request in pending {
                        lines.push(show(&request.code1));
                        lines.push(format!(" {} {}", request.amount.decimal(), request.payer));
                    }
                    screen(output, &lines)
                }),
            "7" => sync_card(card, sync_path).and_then(|(summary, uploaded)| {
                let status = card.status(now())?;
                screen(
                    output,
                    &[
                        say(lang, purse_text::SYNCED),
                        say_with(lang, purse_text::SENT, "count", &uploaded),
                        say_with(lang, purse_text::CREDITS, "count", &summary.credits),
                        say_with(lang, purse_text::BALANCE, "amount", &status.balance),
                    ],
                )
            }),
            "8" => menu_change_pin(lang, card, input, output),
            other => screen(
                output,
                &[say_with(
                    lang,
                    purse_text::NO_OPTION,
                    "choice",
                    &format!("{other:?}"),
                )],
            ),
        };
        if let Err(error) = result {
            screen(output, &[say(lang, purse_text::ERROR), error.message()])?;
        }
    }
    Ok(())
}

fn menu_receive(
    lang: Language,
    card: &mut Card,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), CliError> {
    let Some(payer) = ask(input, output, &say(lang, purse_text::PAYER_NUMBER))? else {
        return Ok(());
    };
    let payer = parse_phone_from(&payer, card.status(now())?.phone)?;
    let Some(amount) = ask(input, output, &say(lang, purse_text::AMOUNT))? else {
        return Ok(());
    };
    let amount = parse_amount(card, &amount)?;
    let code1 = card.request(payer, amount, now())?;
    screen(
        output,
        &[
            "Code 1:".to_owned(),
            show(&code1),
            say(lang, purse_text::READ_TO_PAYER),
        ],
    )?;
    hold(lang, input, output)
}

/// Keeps a code on its own screen until a key is pressed (as a SIM toolkit's display text).
fn hold(lang: Language, input: &mut dyn BufRead, output: &mut dyn Write) -> Result<(), CliError> {
    write!(output, "{}\n> ", say(lang, purse_text::ANY_KEY)).map_err(local_io)?;
    output.flush().map_err(local_io)?;
    read_line(input);
    Ok(())
}

/// `06/12` from a purse timestamp (seconds since 1970, UTC): day and month of the civil date.
fn day_month(time: Timestamp) -> String {
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by 400-year eras.
    let days = (time.0 / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    format!("{day:02}/{month:02}")
}

/// Who the other side of an entry was, for the mini statement.
fn counterparty(lang: Language, entry: &LogEntry) -> String {
    match entry.kind {
        EntryKind::Debit { payee, .. } => say_with(lang, purse_text::TO, "who", &payee),
        EntryKind::Credit { payer, .. } | EntryKind::PaymentCredit { payer, .. } => {
            say_with(lang, purse_text::FROM, "who", &payer)
        }
        EntryKind::OperatorCredit { .. } => say(lang, purse_text::FROM_OPERATOR),
        EntryKind::Settlement { .. } => say(lang, purse_text::TO_OPERATOR),
    }
}

fn menu_send(
    lang: Language,
    card: &mut Card,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    contacts: &[(String, Phone)],
) -> Result<(), CliError> {
    let prompt = if contacts.is_empty() {
        say(lang, purse_text::PAYEE_NUMBER)
    } else {
        let mut lines: Vec<String> = contacts
            .iter()
            .enumerate()
            .map(|(index, (name, _))| format!("{} {name}", index + 1))
            .collect();
        lines.push(say(lang, purse_text::KEY_OR_NUMBER));
        lines.join("\n")
    };
    let Some(payee) = ask(input, output, &prompt)? else {
        return Ok(());
    };
    let picked = payee
        .parse::<usize>()
        .ok()
        .filter(|key| (1..=contacts.len()).contains(key) && payee.len() == 1)
        .map(|key| contacts[key - 1].1);
    let payee = match picked {
        Some(phone) => phone,
        None => parse_phone_from(&payee, card.status(now())?.phone)?,
    };
    let Some(amount) = ask(input, output, &say(lang, purse_text::AMOUNT))? else {
        return Ok(());
    };
    let amount = parse_amount(card, &amount)?;
    let Some(code) = ask(input, output, &say(lang, purse_text::PAYEES_CODE_1))? else {
        return Ok(());
    };
    let code1 = Code::parse(&code)?;
    card.check_request(payee, amount, code1, now())?;
    let confirm = format!(
        "{}\n{}\n{}",
        say_with(lang, purse_text::PAY_QUESTION, "amount", &amount),
        say_with(lang, purse_text::TO_QUESTION, "payee", &payee),
        say(lang, purse_text::PIN)
    );
    let Some(pin) = ask_secret(input, output, &confirm)? else {
        return Ok(());
    };
    let pin = Pin::parse(&pin)?;
    let (code2, _) = card.pay(payee, amount, code1, &pin, now())?;
    screen(
        output,
        &[
            say(lang, purse_text::PAID),
            "Code 2:".to_owned(),
            show(&code2),
            say(lang, purse_text::READ_TO_PAYEE),
        ],
    )?;
    hold(lang, input, output)
}

fn menu_accept(
    lang: Language,
    card: &mut Card,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), CliError> {
    let pending = card.pending(now())?;
    let request = if pending.len() > 1 {
        let Some(first) = ask(input, output, &say(lang, purse_text::CODE_1_FIRST))? else {
            return Ok(());
        };
        Some(parse_request_digits(&first)?)
    } else {
        None
    };
    let Some(code) = ask(input, output, "Code 2:")? else {
        return Ok(());
    };
    let entry = card.accept(Code::parse(&code)?, request, now())?;
    screen(
        output,
        &[
            say(lang, purse_text::RECEIVED),
            format!("{}", entry.amount),
            counterparty(lang, &entry),
        ],
    )
}

fn menu_change_pin(
    lang: Language,
    card: &mut Card,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), CliError> {
    let Some(old) = ask_secret(input, output, &say(lang, purse_text::OLD_PIN))? else {
        return Ok(());
    };
    let Some(new) = ask_secret(input, output, &say(lang, purse_text::NEW_PIN))? else {
        return Ok(());
    };
    card.change_pin(&Pin::parse(&old)?, &Pin::parse(&new)?, now())?;
    screen(output, &[say(lang, purse_text::PIN_CHANGED)])
}

// ---------------------------------------------------------------------------------------------
// Operator commands.

/// Operator commands under `offpay admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Provision a purse and seal it into a new purse file.
    Provision {
        /// The purse's phone number, e.g. +254700000001
        #[arg(long)]
        phone: String,
        /// Read the first PIN (4 to 6 digits) from standard input instead of asking for it; a
        /// PIN is never taken from the command line
        #[arg(long)]
        pin_stdin: bool,
        /// Seal with the fast, weak key-derivation parameters of the test suite (never for a
        /// real purse)
        #[arg(long, hide = true)]
        kdf_for_tests: bool,
        /// The purse file to create
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// An agent purse (large float, cash-in by offline payment)
        #[arg(long)]
        agent: bool,
        /// The device secret that seals the file [default: ~/.offpay/device.secret]
        #[arg(long, env = "OFFPAY_DEVICE_SECRET", value_name = "FILE")]
        device_secret: Option<PathBuf>,
    },
    /// Top up a purse's float (delivered at its next sync).
    Float {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
        /// Amount, e.g. 100000
        #[arg(long)]
        amount: String,
        /// Memo
        #[arg(long)]
        memo: Option<String>,
    },
    /// The purse's shadow balance and state at the operator.
    Balance {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
    },
    /// Set a purse's offline limits (delivered at its next sync).
    Limits {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
        /// Highest balance
        #[arg(long)]
        max_balance: String,
        /// Largest single payment
        #[arg(long)]
        max_single_payment: String,
        /// Most paid between two syncs
        #[arg(long)]
        max_spent_since_sync: String,
        /// Payments above this need a pairwise key
        #[arg(long)]
        small_payment_limit: String,
        /// Days a sync keeps the purse able to pay
        #[arg(long, default_value_t = 30)]
        validity_days: u64,
    },
    /// Block a purse (every purse refuses it after its next sync).
    Block {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
    },
    /// A lost phone: block the purse and move its balance to the person's new purse (what the
    /// lost purse could still spend offline is held back until its keys are retired).
    Move {
        /// The lost purse's phone number
        #[arg(long)]
        phone: String,
        /// The new purse's phone number (provisioned already)
        #[arg(long)]
        to: String,
    },
    /// A purse holder's statement from the operator's records (newest first).
    Statement {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
    },
    /// Agent settlement, step 1: take value back from an agent purse at its next sync.
    Settle {
        /// The agent purse's phone number
        #[arg(long)]
        phone: String,
        /// Amount, e.g. 5000
        #[arg(long)]
        amount: String,
    },
    /// Agent settlement, step 2: record that the operator paid the agent for value handed back.
    SettlementPaid {
        /// The agent purse's phone number
        #[arg(long)]
        phone: String,
        /// Amount paid
        #[arg(long)]
        amount: String,
        /// The payment's reference (bank transfer or cash receipt)
        #[arg(long)]
        reference: String,
    },
    /// Lift a block.
    Unblock {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
    },
    /// Unblock a purse's PIN after three wrong tries (at its next sync).
    UnblockPin {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
    },
    /// Set the holder's language for the statements the operator sends (en, sw, fr; `default`:
    /// the operator's).
    Language {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
        /// en, sw, fr, or default
        #[arg(long)]
        lang: String,
    },
    /// Issue a one-time PIN reset code for a holder you have identified (they type it with a new
    /// PIN on their phone: `offpay purse pin-reset`). Shown once, never stored.
    PinReset {
        /// The purse's phone number
        #[arg(long)]
        phone: String,
    },
    /// Rotate the scheme key (refused until the longest purse validity has passed since the
    /// previous rotation).
    RotateKey {
        /// Rotate even so: only for a compromised scheme key. Purses that have not synced since
        /// the previous rotation and then pay are flagged, and each case needs a person.
        #[arg(long)]
        force: bool,
    },
    /// Re-seal purse-book records refused as tampered (`record_tampered`), after checking each
    /// against its fraud case: their seals only; the cases stay in the fraud queue.
    Reseal {
        /// Each record as `KEY=DIGEST`: its storage key and the `stored_digest` of the bytes
        /// checked, as the fraud case shows them (e.g. `shadow/3=3f2a9c0d…`, 32 hex digits); bytes
        /// changed since refuse the whole repair
        #[arg(required = true, value_name = "KEY=DIGEST")]
        keys: Vec<String>,
        /// Confirm that the records were checked and are trusted as they are stored now
        #[arg(long)]
        force: bool,
    },
}

fn admin_fail(json: bool, message: &str, error: Option<&CallError>) -> ExitCode {
    match (json, error) {
        (true, Some(CallError::Api { body, .. })) => println!("{body}"),
        (true, _) => println!(
            "{}",
            json!({ "error": { "code": "purse", "message": message } })
        ),
        (false, _) => eprintln!("offpay admin: {message}"),
    }
    error.map_or(ExitCode::FAILURE, crate::exit::for_call)
}

/// A purse's phone as the operator wrote it (`0711000003`, `+254 711 000 003`) and its API path:
/// the server reads it in its default country, so every spelling names the same purse, and says
/// what is wrong with a number it cannot read.
fn purse_path(phone: &str) -> Result<(String, String), String> {
    let written = phone.trim();
    if written.is_empty() {
        return Err("a purse's phone number is needed, such as +254700000001 or 0700000001".into());
    }
    Ok((
        written.to_owned(),
        format!("/api/v1/purse/purses/{}", path_segment(written)),
    ))
}

/// Provisions a purse at the server and seals it into `out`.
struct ProvisionFile<'a> {
    out: &'a Path,
    agent: bool,
    device_secret_path: Option<&'a Path>,
    params: SealParams,
}

fn provision(
    client: &ApiClient,
    phone: &str,
    pin: Pin,
    file: ProvisionFile<'_>,
) -> Result<Value, (String, Option<CallError>)> {
    let ProvisionFile {
        out,
        agent,
        device_secret_path,
        params,
    } = file;
    let plain = |message: String| (message, None);
    let (phone, _) = purse_path(phone).map_err(plain)?;

    if out.exists() {
        return Err(plain(format!(
            "{} exists already; refusing to overwrite a purse file",
            out.display()
        )));
    }
    let secret = device_secret(device_secret_path).map_err(|error| plain(error.message()))?;
    let answer = client
        .post(
            "/api/v1/purse/purses",
            &json!({ "phone": phone, "kind": if agent { "agent" } else { "customer" } }),
        )
        .map_err(|error| (error.to_string(), Some(error)))?;
    // The number as the server keeps it (E.164), whatever spelling was typed.
    let phone = answer["phone"].as_str().unwrap_or(&phone).to_owned();
    let bytes = answer["provisioning"]
        .as_str()
        .and_then(hex_decode)
        .ok_or_else(|| plain("the server's answer has no provisioning record".to_owned()))?;
    let provisioning = Provisioning::decode(&bytes)
        .map_err(|error| plain(format!("provisioning record: {error}")))?;
    let purse = Purse::provision(&provisioning, pin);
    SoftwareSecureElement::create_with(out, secret, purse, params, SystemRandom).map_err(
        |error| {
            plain(format!(
                "{} was provisioned at the server but the purse file {} could not be written: {}",
                phone,
                out.display(),
                explain(&error)
            ))
        },
    )?;
    Ok(json!({
        "phone": phone,
        "purse_id": answer["purse_id"],
        "kind": answer["kind"],
        "trust_class": answer["trust_class"],
        "operator": answer["operator"],
        "file": out.display().to_string(),
    }))
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

/// Runs an operator command.
pub fn run_admin(client: &ApiClient, json: bool, command: AdminCommand) -> ExitCode {
    let result: Result<(Value, String), (String, Option<CallError>)> = match command {
        AdminCommand::Provision {
            phone,
            pin_stdin,
            kdf_for_tests,
            out,
            agent,
            device_secret,
        } => read_pin(pin_stdin, &mut std::io::stdin().lock(), "First PIN:")
            .map_err(|error| (format!("PIN: {}", error.message()), None))
            .and_then(|pin| {
                provision(
                    client,
                    &phone,
                    pin,
                    ProvisionFile {
                        out: &out,
                        agent,
                        device_secret_path: device_secret.as_deref(),
                        params: if kdf_for_tests {
                            SealParams::TEST
                        } else {
                            SealParams::DEVICE
                        },
                    },
                )
            })
            .map(|answer| {
                let text = format!(
                    "Provisioned {} purse {} ({} class) for {} (operator {}); sealed into {}",
                    answer["kind"].as_str().unwrap_or("?"),
                    answer["purse_id"],
                    answer["trust_class"].as_str().unwrap_or("software"),
                    answer["phone"].as_str().unwrap_or("?"),
                    answer["operator"].as_str().unwrap_or("?"),
                    answer["file"].as_str().unwrap_or("?"),
                );
                (answer, text)
            }),
        AdminCommand::Float {
            phone,
            amount,
            memo,
        } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                let mut body = json!({ "amount": amount });
                if let Some(memo) = memo {
                    body["memo"] = json!(memo);
                }
                client
                    .post(&format!("{path}/float"), &body)
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let text = format!(
                    "Float of {} {} queued for {}; the purse receives it at its next sync.",
                    answer["currency"].as_str().unwrap_or(""),
                    answer["amount"].as_str().unwrap_or("?"),
                    answer["phone"].as_str().unwrap_or("?"),
                );
                (answer, text)
            }),
        AdminCommand::Balance { phone } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .get(&path)
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let mut text = format!(
                    "{} ({} purse {})  shadow balance {} {}  (purse reported {}, last sync #{})",
                    answer["phone"].as_str().unwrap_or("?"),
                    answer["kind"].as_str().unwrap_or("?"),
                    answer["purse_id"],
                    answer["currency"].as_str().unwrap_or(""),
                    answer["balance"].as_str().unwrap_or("?"),
                    answer["reported_balance"].as_str().unwrap_or("?"),
                    answer["last_sync_sequence"],
                );
                let queued = answer["queued_credits"].as_array().map_or(0, Vec::len);
                if queued > 0 {
                    text.push_str(&format!("\n{queued} credit(s) wait for its next sync"));
                }
                if let Some(class) = answer["trust_class"].as_str() {
                    text.push_str(&format!(
                        "\n{class} class: limits at most {} {} balance, {} a payment, {} between syncs",
                        answer["currency"].as_str().unwrap_or(""),
                        answer["class_ceiling"]["max_balance"].as_str().unwrap_or("?"),
                        answer["class_ceiling"]["max_single_payment"].as_str().unwrap_or("?"),
                        answer["class_ceiling"]["max_spent_since_sync"].as_str().unwrap_or("?"),
                    ));
                }
                if answer["blocked"].as_bool() == Some(true) {
                    text.push_str("\nBLOCKED");
                }
                (answer, text)
            }),
        AdminCommand::Limits {
            phone,
            max_balance,
            max_single_payment,
            max_spent_since_sync,
            small_payment_limit,
            validity_days,
        } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .post(
                        &format!("{path}/limits"),
                        &json!({
                            "max_balance": max_balance,
                            "max_single_payment": max_single_payment,
                            "max_spent_since_sync": max_spent_since_sync,
                            "small_payment_limit": small_payment_limit,
                            "validity_days": validity_days,
                        }),
                    )
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                (
                    answer,
                    "Limits set; delivered at the purse's next sync.".to_owned(),
                )
            }),
        AdminCommand::Block { phone } => block(client, &phone, true),
        AdminCommand::Statement { phone } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .get(&format!("{path}/statement"))
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let currency = answer["currency"].as_str().unwrap_or("").to_owned();
                let mut lines = vec![format!(
                    "Statement for {}: balance {currency} {}",
                    answer["phone"].as_str().unwrap_or("?"),
                    answer["balance"].as_str().unwrap_or("?"),
                )];
                for line in answer["lines"].as_array().into_iter().flatten() {
                    let date = line["at_ms"]
                        .as_u64()
                        .map(|ms| day_month(Timestamp(ms / 1000)))
                        .unwrap_or_default();
                    lines.push(format!(
                        "{date}  {currency} {:>12}  {}",
                        line["amount"].as_str().unwrap_or("?"),
                        line["what"].as_str().unwrap_or(""),
                    ));
                }
                (answer.clone(), lines.join("\n"))
            }),
        AdminCommand::Settle { phone, amount } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .post(&format!("{path}/settle"), &json!({ "amount": amount }))
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let text = format!(
                    "Settlement of {} {} queued for {}: its purse hands the value back at its next sync.",
                    answer["currency"].as_str().unwrap_or(""),
                    answer["amount"].as_str().unwrap_or("?"),
                    answer["phone"].as_str().unwrap_or("?"),
                );
                (answer, text)
            }),
        AdminCommand::SettlementPaid {
            phone,
            amount,
            reference,
        } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .post(
                        &format!("{path}/settlement-paid"),
                        &json!({ "amount": amount, "reference": reference }),
                    )
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let text = format!(
                    "Recorded: {} {} paid to agent {}.",
                    answer["currency"].as_str().unwrap_or(""),
                    answer["amount"].as_str().unwrap_or("?"),
                    answer["phone"].as_str().unwrap_or("?"),
                );
                (answer, text)
            }),
        AdminCommand::Move { phone, to } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .post(&format!("{path}/move"), &json!({ "to": to }))
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let currency = answer["currency"].as_str().unwrap_or("");
                let text = format!(
                    "{} is blocked. Moved {currency} {} to {}; held back {currency} {}.\n{}",
                    answer["lost"].as_str().unwrap_or("?"),
                    answer["moved"].as_str().unwrap_or("?"),
                    answer["to"].as_str().unwrap_or("?"),
                    answer["held_back"].as_str().unwrap_or("?"),
                    answer["status"].as_str().unwrap_or(""),
                );
                (answer, text)
            }),
        AdminCommand::Unblock { phone } => block(client, &phone, false),
        AdminCommand::UnblockPin { phone } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .post(&format!("{path}/unblock-pin"), &json!({}))
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                (
                    answer,
                    "The PIN is unblocked at the purse's next sync.".to_owned(),
                )
            }),
        AdminCommand::Language { phone, lang } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                let language = (lang != "default").then_some(lang.as_str());
                client
                    .post(&format!("{path}/language"), &json!({ "language": language }))
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let text = format!(
                    "Statements to {} now speak {}.",
                    answer["phone"].as_str().unwrap_or("?"),
                    answer["speaks"].as_str().unwrap_or("?"),
                );
                (answer, text)
            }),
        AdminCommand::PinReset { phone } => purse_path(&phone)
            .map_err(|message| (message, None))
            .and_then(|(_, path)| {
                client
                    .post(&format!("{path}/pin-reset"), &json!({}))
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let text = format!(
                    "Reset code for {}: {}\nGive it only to the holder you identified; it works once. They type it with a new PIN: offpay purse pin-reset.",
                    answer["phone"].as_str().unwrap_or("?"),
                    answer["reset_code"].as_str().unwrap_or("?"),
                );
                (answer, text)
            }),
        AdminCommand::RotateKey { force } => client
            .post("/api/v1/purse/scheme-key/rotate", &json!({ "force": force }))
            .map_err(|error| (error.to_string(), Some(error)))
            .map(|answer| {
                let text = format!(
                    "Scheme key rotated: payees now use epoch {}, epoch {} is distributed ahead.",
                    answer["generation_epoch"], answer["scheme_epoch"]
                );
                (answer, text)
            }),
        AdminCommand::Reseal { keys, force } => keys
            .iter()
            .map(|pair| match pair.rsplit_once('=') {
                Some((key, digest)) if !key.is_empty() && !digest.is_empty() => {
                    Ok(json!({ "key": key, "stored_digest": digest }))
                }
                _ => Err((
                    format!(
                        "{pair}: name each record as KEY=DIGEST, the stored_digest its fraud case \
                         shows"
                    ),
                    None,
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|records| {
                client
                    .post(
                        "/api/v1/purse/records/reseal",
                        &json!({ "records": records, "force": force }),
                    )
                    .map_err(|error| (error.to_string(), Some(error)))
            })
            .map(|answer| {
                let list = |field: &str| {
                    answer[field]
                        .as_array()
                        .map(|keys| {
                            keys.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .filter(|keys| !keys.is_empty())
                        .unwrap_or_else(|| "none".to_owned())
                };
                let text = format!(
                    "Re-sealed: {}; already sealed: {}. Their record_tampered cases stay in the \
                     fraud queue.",
                    list("resealed"),
                    list("already_sealed")
                );
                (answer, text)
            }),
    };
    match result {
        Ok((answer, text)) => {
            if json {
                println!("{answer}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err((message, error)) => admin_fail(json, &message, error.as_ref()),
    }
}

fn block(
    client: &ApiClient,
    phone: &str,
    blocked: bool,
) -> Result<(Value, String), (String, Option<CallError>)> {
    let (_, path) = purse_path(phone).map_err(|message| (message, None))?;
    let answer = client
        .post(&format!("{path}/block"), &json!({ "blocked": blocked }))
        .map_err(|error| (error.to_string(), Some(error)))?;
    let text = if blocked {
        "Blocked; every purse learns it at its next sync."
    } else {
        "Unblocked."
    };
    Ok((answer, text.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// The demo.

fn demo_card(path: &Path, secret: &Path) -> Result<Card, String> {
    let (operator, _) = se::peek_file(path).map_err(|error| explain(&error))?;
    let secret = DeviceSecret::load_or_create(secret).map_err(|error| explain(&error))?;
    let pin = Pin::parse(DEMO_PIN).map_err(|error| explain(&error))?;
    let element = SoftwareSecureElement::open(path, secret, operator, &pin)
        .map_err(|error| explain(&error))?;
    PurseCard::new(element, now()).map_err(|error| explain(&error))
}

fn demo_sync(client: &ApiClient, name: &str, card: &mut Card) -> Result<(), String> {
    let (summary, uploaded) =
        sync_card(card, &SyncPath::Sms(client)).map_err(|error| error.message())?;
    let status = card.status(now()).map_err(|error| explain(&error))?;
    println!(
        "   {name:<6} synced by SMS: {uploaded} entries up, {} credit(s) down, balance {}",
        summary.credits, status.balance
    );
    Ok(())
}

fn demo_pay(
    payer_name: &str,
    payer: &mut Card,
    payee_name: &str,
    payee: &mut Card,
    amount_text: &str,
) -> Result<(), String> {
    let payer_phone = payer.status(now()).map_err(|e| explain(&e))?.phone;
    let payee_phone = payee.status(now()).map_err(|e| explain(&e))?.phone;
    let amount = payee.parse_amount(amount_text).map_err(|e| explain(&e))?;
    let code1 = payee
        .request(payer_phone, amount, now())
        .map_err(|e| explain(&e))?;
    println!(
        "   {payee_name} asks {payer_name} for {amount}: Code 1 {}",
        show(&code1)
    );
    let pin = Pin::parse(DEMO_PIN).map_err(|e| explain(&e))?;
    let (code2, _) = payer
        .pay(payee_phone, amount, code1, &pin, now())
        .map_err(|e| explain(&e))?;
    println!(
        "   {payer_name} types it with her PIN: Code 2 {}",
        show(&code2)
    );
    let entry = payee.accept(code2, None, now()).map_err(|e| explain(&e))?;
    println!("   {payee_name} types Code 2: {}", describe(&entry));
    Ok(())
}

/// This rail's part of `offpay demo`, against the running server at `client`.
pub fn demo(client: &ApiClient) -> Result<(), String> {
    println!("\n== Rail 1: the short-code purse (two 8-digit codes, no network)");
    let directory = tempfile::tempdir().map_err(|error| format!("temporary directory: {error}"))?;
    let secret = directory.path().join("device.secret");
    let stamp = now().0 % 1_000_000;
    let phone = |index: u64| format!("+2547{:02}{stamp:06}", 90 + index);
    let people = [
        ("agent", phone(0), true),
        ("alice", phone(1), false),
        ("bob", phone(2), false),
    ];
    for (name, number, agent) in &people {
        let file = directory.path().join(format!("{name}.purse"));
        let pin = Pin::parse(DEMO_PIN).map_err(|error| explain(&error))?;
        let file_spec = ProvisionFile {
            out: &file,
            agent: *agent,
            device_secret_path: Some(&secret),
            params: SealParams::DEVICE,
        };
        provision(client, number, pin, file_spec).map_err(|(message, _)| message)?;
        println!(
            "   provisioned {name:<6} {number} ({}) -> {}",
            if *agent { "agent" } else { "customer" },
            file.display()
        );
    }
    let open = |name: &str| demo_card(&directory.path().join(format!("{name}.purse")), &secret);
    let (mut agent, mut alice, mut bob) = (open("agent")?, open("alice")?, open("bob")?);
    let (_, float_path) = purse_path(&people[0].1)?;
    client
        .post(
            &format!("{float_path}/float"),
            &json!({ "amount": "100000", "memo": "demo float" }),
        )
        .map_err(|error| error.to_string())?;
    println!("   operator floats the agent KES 100000.00 (delivered at its next sync)");
    demo_sync(client, "agent", &mut agent)?;
    println!("   -- offline from here --");
    demo_pay("agent", &mut agent, "alice", &mut alice, "1000")?;
    demo_pay("alice", &mut alice, "bob", &mut bob, "450")?;
    println!("   -- back in coverage --");
    demo_sync(client, "agent", &mut agent)?;
    demo_sync(client, "alice", &mut alice)?;
    demo_sync(client, "bob", &mut bob)?;
    for (name, number, _) in &people {
        let (_, path) = purse_path(number)?;
        let answer = client.get(&path).map_err(|error| error.to_string())?;
        println!(
            "   shadow balance {name:<6} {} {:>12}",
            answer["currency"].as_str().unwrap_or(""),
            answer["balance"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_dates_are_civil_dates() {
        assert_eq!(day_month(Timestamp(0)), "01/01");
        assert_eq!(day_month(Timestamp(951_782_400)), "29/02");
        assert_eq!(day_month(Timestamp(1_800_000_000)), "15/01");
        assert_eq!(day_month(Timestamp(1_800_000_000 - 15 * 86_400)), "31/12");
    }
}
