//! `offpay admin`: the operator's client for the server API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{ApiClient, CallError, path_segment};

/// Connection options shared by every admin command.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Server base URL
    #[arg(
        long,
        env = "OFFPAY_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// File holding the operator token [default: ./offpay-data/admin.token]
    #[arg(long, env = "OFFPAY_TOKEN_FILE", value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print the server's JSON answer instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Post one transfer, or a batch from a JSON file.
    Transfer(TransferArgs),
    /// Show an account's balance.
    Balance {
        /// Account id
        account: String,
    },
    /// Show an account's statement.
    History {
        /// Account id
        account: String,
        /// Continue from this sequence number (printed at the end of the previous page)
        #[arg(long)]
        before: Option<u64>,
        /// Most entries to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show per-currency sums (they must be zero).
    Totals,
    /// The fraud queue of every rail.
    #[command(subcommand)]
    Fraud(FraudCommand),
    /// Rail 1: purses (provision, float, shadow balance).
    #[command(subcommand)]
    Purse(crate::purse::AdminCommand),
    /// Rail 2: TAN envelopes (print, import) and SMS accounts.
    #[command(subcommand)]
    Envelope(crate::sms::AdminCommand),
    /// Rail 3: device wallets (issue, charge, block).
    #[command(subcommand)]
    Wallet(crate::wallet::AdminCommand),
    /// Rail 4: microcheck credentials and clearing.
    #[command(subcommand)]
    Microcheck(crate::microcheck::AdminCommand),
    /// Operator users, their roles and tokens (admin role).
    #[command(subcommand)]
    Users(UsersCommand),
    /// The audit log: verify the chain, export it (auditor or admin role).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Requests creating value above the approval amount, waiting for a second user.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// List approvals (pending ones unless --all).
    List {
        /// Also the approved and refused ones
        #[arg(long)]
        all: bool,
    },
    /// Approve a request another user made: it is executed now.
    Approve {
        /// Approval id
        id: String,
    },
    /// Refuse a request (or withdraw your own): it is never applied.
    Refuse {
        /// Approval id
        id: String,
        /// Why (kept in the approval and the audit log)
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn run_approvals(
    client: &ApiClient,
    command: ApprovalsCommand,
) -> Result<(Value, String), CallError> {
    match command {
        ApprovalsCommand::List { all } => {
            let path = if all {
                "/api/v1/approvals?state=all"
            } else {
                "/api/v1/approvals"
            };
            client.get(path).map(|answer| {
                let mut lines = vec![format!(
                    "{:<18} {:<9} {:<16} {:<18} {:<38} {}",
                    "approval", "state", "requester", "value", "request", "by"
                )];
                for approval in answer["items"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "{:<18} {:<9} {:<16} {:<18} {:<38} {}",
                        text(approval, "/id"),
                        text(approval, "/state"),
                        text(approval, "/requester"),
                        text(approval, "/value"),
                        format!("{} {}", text(approval, "/method"), text(approval, "/path")),
                        text(approval, "/by"),
                    ));
                }
                if lines.len() == 1 {
                    lines = vec!["no approvals waiting".to_owned()];
                }
                (answer, lines.join("\n"))
            })
        }
        ApprovalsCommand::Approve { id } => client
            .post(
                &format!("/api/v1/approvals/{}/approve", path_segment(&id)),
                &json!({}),
            )
            .map(|answer| {
                let line = format!(
                    "approval {id}: {} (requested by {}, {}){}",
                    if answer["executed"] == true {
                        "approved and executed"
                    } else {
                        "approved but NOT executed"
                    },
                    text(&answer, "/approval/requester"),
                    text(&answer, "/approval/value"),
                    match answer.pointer("/result/error/message") {
                        Some(message) => format!(": {message}"),
                        None => String::new(),
                    }
                );
                (answer, line)
            }),
        ApprovalsCommand::Refuse { id, reason } => client
            .post(
                &format!("/api/v1/approvals/{}/refuse", path_segment(&id)),
                &json!({ "reason": reason }),
            )
            .map(|answer| {
                let line = format!(
                    "approval {id} refused: {} {} by {} will not be applied",
                    text(&answer, "/approval/method"),
                    text(&answer, "/approval/path"),
                    text(&answer, "/approval/requester")
                );
                (answer, line)
            }),
    }
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user; prints its token once (to stdout only).
    Add {
        /// Name: a-z, 0-9, '.', '_', '-'
        name: String,
        /// admin, finance, support, auditor or provisioning
        #[arg(long)]
        role: String,
        /// The token stops working after this many days
        #[arg(long, value_name = "DAYS")]
        expires: Option<u64>,
    },
    /// List users (never their tokens).
    List,
    /// Give a user a new token (printed once); the old one stops working at once.
    Rotate {
        /// User name
        name: String,
        /// The new token stops working after this many days
        #[arg(long, value_name = "DAYS")]
        expires: Option<u64>,
    },
    /// Revoke a user: its token stops working at once.
    Revoke {
        /// User name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; report the first entry that does not check out (exit 1).
    Verify,
    /// Print every entry (or those after --after), oldest first.
    Export {
        /// Only entries after this number
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

/// Exit code of `admin audit verify` when the chain is broken.
const EXIT_CHAIN_BROKEN: u8 = 1;

fn token_lines(answer: &Value) -> String {
    format!(
        "user {} ({}){}\ntoken: {}\nthe token is shown this once; keep it in a file readable only by its user",
        text(answer, "/user/name"),
        text(answer, "/user/role"),
        match answer
            .pointer("/user/expires_at_ms")
            .and_then(Value::as_u64)
        {
            Some(ms) => format!(", expires at {} (ms since 1970)", ms),
            None => String::new(),
        },
        text(answer, "/token"),
    )
}

fn run_users(client: &ApiClient, command: UsersCommand) -> Result<(Value, String), CallError> {
    match command {
        UsersCommand::Add {
            name,
            role,
            expires,
        } => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(days) = expires {
                body["expires_in_days"] = json!(days);
            }
            client.post("/api/v1/users", &body).map(|answer| {
                let lines = token_lines(&answer);
                (answer, lines)
            })
        }
        UsersCommand::List => client.get("/api/v1/users").map(|answer| {
            let mut lines = vec![format!("{:<24} {:<13} {}", "user", "role", "state")];
            for user in answer["users"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "{:<24} {:<13} {}",
                    text(user, "/name"),
                    text(user, "/role"),
                    text(user, "/state")
                ));
            }
            (answer, lines.join("\n"))
        }),
        UsersCommand::Rotate { name, expires } => {
            let mut body = json!({});
            if let Some(days) = expires {
                body["expires_in_days"] = json!(days);
            }
            client
                .post(
                    &format!("/api/v1/users/{}/rotate", path_segment(&name)),
                    &body,
                )
                .map(|answer| {
                    let lines = token_lines(&answer);
                    (answer, lines)
                })
        }
        UsersCommand::Revoke { name } => client
            .post(
                &format!("/api/v1/users/{}/revoke", path_segment(&name)),
                &json!({}),
            )
            .map(|answer| {
                let line = if answer["changed"] == true {
                    format!("user {name} revoked: its token no longer works")
                } else {
                    format!("user {name} was already revoked")
                };
                (answer, line)
            }),
    }
}

fn run_audit(client: &ApiClient, json: bool, command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify => match client.get("/api/v1/audit/verify") {
            Ok(answer) => {
                let whole = answer["ok"] == true;
                if json {
                    println!("{answer}");
                } else if whole {
                    println!(
                        "audit chain whole: {} entries checked",
                        text(&answer, "/entries_checked")
                    );
                } else {
                    println!(
                        "audit chain BROKEN at entry {}: {} ({} entries before it check out)",
                        text(&answer, "/first_break/number"),
                        text(&answer, "/first_break/problem"),
                        text(&answer, "/entries_checked")
                    );
                }
                if whole {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_CHAIN_BROKEN)
                }
            }
            Err(error) => fail(json, &error),
        },
        AuditCommand::Export { after } => {
            let mut cursor = String::new();
            loop {
                let mut path = "/api/v1/audit?limit=500".to_owned();
                if !cursor.is_empty() {
                    path.push_str(&format!("&cursor={}", path_segment(&cursor)));
                }
                let answer = match client.get(&path) {
                    Ok(answer) => answer,
                    Err(error) => return fail(json, &error),
                };
                let items = answer["items"].as_array().into_iter().flatten();
                for entry in items.filter(|entry| entry["number"].as_u64() > Some(after)) {
                    if json {
                        println!("{entry}");
                    } else {
                        println!(
                            "{:>6} {} {:<14} {:<24} {:<45} {}",
                            text(entry, "/number"),
                            text(entry, "/at"),
                            text(entry, "/user"),
                            text(entry, "/remote"),
                            text(entry, "/action"),
                            text(entry, "/outcome")
                        );
                    }
                }
                match answer["next_cursor"].as_str() {
                    Some(next) => cursor = next.to_owned(),
                    None => return ExitCode::SUCCESS,
                }
            }
        }
    }
}

#[derive(Debug, Subcommand)]
enum FraudCommand {
    /// List flags, oldest first.
    List {
        /// Only this rail's flags: purse, sms, wallet or microcheck
        #[arg(long)]
        rail: Option<String>,
        /// Only cases in this state: open, cleared or escalated
        #[arg(long)]
        state: Option<String>,
        /// Most flags to show (at most 500)
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Clear a case (no fraud, or dealt with), saying why.
    Clear {
        /// The flag's id, as `fraud list` shows it
        id: String,
        /// Why
        #[arg(long)]
        note: String,
    },
    /// Escalate a case for investigation, saying why.
    Escalate {
        /// The flag's id, as `fraud list` shows it
        id: String,
        /// Why
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Create an account (harmless if it exists with the same definition).
    Create {
        /// Account id, e.g. purse:+254700000001
        id: String,
        /// customer, merchant, agent_float, operator_float, suspense or fees
        #[arg(long, default_value = "customer")]
        kind: String,
        /// ISO 4217 currency [default: the server's]
        #[arg(long)]
        currency: Option<String>,
        /// Lowest balance allowed, e.g. 0 or -500.00, or "none"
        #[arg(long, allow_hyphen_values = true)]
        balance_min: Option<String>,
        /// Highest balance allowed, or "none"
        #[arg(long)]
        balance_max: Option<String>,
    },
}

#[derive(Debug, Args)]
struct TransferArgs {
    /// Transfer id (the idempotency key: retrying with the same id posts once)
    #[arg(long, required_unless_present = "batch")]
    id: Option<String>,
    /// Account to debit
    #[arg(long, required_unless_present = "batch")]
    from: Option<String>,
    /// Account to credit
    #[arg(long, required_unless_present = "batch")]
    to: Option<String>,
    /// Amount, e.g. 450 or 200000.00
    #[arg(long, required_unless_present = "batch")]
    amount: Option<String>,
    /// ISO 4217 currency [default: the server's]
    #[arg(long)]
    currency: Option<String>,
    /// Memo for statements
    #[arg(long, default_value = "")]
    memo: String,
    /// Reserve the amount (pending) instead of moving it
    #[arg(long, conflicts_with_all = ["post", "void"])]
    pending: bool,
    /// Post the named pending transfer
    #[arg(long, value_name = "PENDING_ID", conflicts_with = "void")]
    post: Option<String>,
    /// Void the named pending transfer
    #[arg(long, value_name = "PENDING_ID")]
    void: Option<String>,
    /// A JSON file with {"transfers": [...]} posted as one atomic batch
    #[arg(long, value_name = "FILE", conflicts_with_all = ["id", "from", "to", "amount"])]
    batch: Option<PathBuf>,
}

fn fail(json: bool, error: &CallError) -> ExitCode {
    match (json, error) {
        (true, CallError::Api { body, .. }) => println!("{body}"),
        (true, CallError::Transport(message)) => println!(
            "{}",
            json!({ "error": { "code": "transport", "message": message } })
        ),
        (false, error) => eprintln!("offpay admin: {error}"),
    }
    crate::exit::for_call(error)
}

/// `fraud clear` / `fraud escalate`: one case decision, audited by the server.
fn decide_case(
    client: &ApiClient,
    id: &str,
    action: &str,
    note: &str,
) -> Result<(Value, String), CallError> {
    client
        .post(
            &format!("/api/v1/fraud/{}/{action}", path_segment(id)),
            &json!({ "note": note }),
        )
        .map(|answer| {
            let line = format!(
                "case {id} is now {} ({} {} {})",
                text(&answer, "/state"),
                text(&answer, "/rail"),
                text(&answer, "/kind"),
                text(&answer, "/subject")
            );
            (answer, line)
        })
}

fn text(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

pub fn run(args: AdminArgs) -> ExitCode {
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(crate::default_token_file);
    let client = match ApiClient::new(&args.server, Some(&token_file)) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("offpay admin: {message}");
            return ExitCode::from(2);
        }
    };
    let json = args.json;
    let result = match args.command {
        AdminCommand::Purse(command) => return crate::purse::run_admin(&client, json, command),
        AdminCommand::Envelope(command) => return crate::sms::run_admin(&client, json, command),
        AdminCommand::Wallet(command) => return crate::wallet::run_admin(&client, json, command),
        AdminCommand::Microcheck(command) => {
            return crate::microcheck::run_admin(&client, json, command);
        }
        AdminCommand::Audit(command) => return run_audit(&client, json, command),
        AdminCommand::Users(command) => run_users(&client, command),
        AdminCommand::Approvals(command) => run_approvals(&client, command),
        AdminCommand::Fraud(FraudCommand::List { rail, state, limit }) => {
            let mut path = format!("/api/v1/fraud?limit={limit}");
            if let Some(rail) = rail {
                path.push_str(&format!("&rail={}", path_segment(&rail)));
            }
            if let Some(state) = state {
                path.push_str(&format!("&state={}", path_segment(&state)));
            }
            client.get(&path).map(|answer| {
                let mut lines = Vec::new();
                for flag in answer["items"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "{:<10} {:<10} {:<26} {:<22} {}",
                        text(flag, "/state"),
                        text(flag, "/rail"),
                        text(flag, "/kind"),
                        text(flag, "/subject"),
                        text(flag, "/summary")
                    ));
                    lines.push(format!("{:<10} id: {}", "", text(flag, "/id")));
                    lines.push(format!("{:<10} evidence: {}", "", flag["evidence"]));
                    for decision in flag["decisions"].as_array().into_iter().flatten() {
                        lines.push(format!(
                            "{:<10} {} by {} at {}: {}",
                            "",
                            text(decision, "/state"),
                            text(decision, "/by"),
                            text(decision, "/at"),
                            text(decision, "/note")
                        ));
                    }
                }
                if lines.is_empty() {
                    lines.push("no fraud flags".to_owned());
                }
                if !answer["next_cursor"].is_null() {
                    lines.push("(more: raise --limit to see them)".to_owned());
                }
                (answer, lines.join("\n"))
            })
        }
        AdminCommand::Fraud(FraudCommand::Clear { id, note }) => {
            decide_case(&client, &id, "clear", &note)
        }
        AdminCommand::Fraud(FraudCommand::Escalate { id, note }) => {
            decide_case(&client, &id, "escalate", &note)
        }
        AdminCommand::Account(AccountCommand::Create {
            id,
            kind,
            currency,
            balance_min,
            balance_max,
        }) => {
            let mut body = json!({ "id": id, "kind": kind });
            for (key, value) in [
                ("currency", currency),
                ("balance_min", balance_min),
                ("balance_max", balance_max),
            ] {
                if let Some(value) = value {
                    body[key] = json!(value);
                }
            }
            client.post("/api/v1/accounts", &body).map(|answer| {
                let line = format!(
                    "account {} ({}, {}) balance {}",
                    text(&answer, "/id"),
                    text(&answer, "/kind"),
                    text(&answer, "/currency"),
                    text(&answer, "/balance")
                );
                (answer, line)
            })
        }
        AdminCommand::Transfer(transfer) => post_transfer(&client, transfer),
        AdminCommand::Balance { account } => client
            .get(&format!("/api/v1/accounts/{}", path_segment(&account)))
            .map(|answer| {
                let line = format!(
                    "{} {} {} (available {})",
                    text(&answer, "/id"),
                    text(&answer, "/currency"),
                    text(&answer, "/balance"),
                    text(&answer, "/available")
                );
                (answer, line)
            }),
        AdminCommand::History {
            account,
            before,
            limit,
        } => {
            let mut path = format!(
                "/api/v1/accounts/{}/history?limit={limit}",
                path_segment(&account)
            );
            if let Some(before) = before {
                path.push_str(&format!("&before={before}"));
            }
            client.get(&path).map(|answer| {
                let mut lines = vec![format!(
                    "{:>8}  {:<24} {:<6} {:>14}  {:<24} {}",
                    "seq", "transfer", "side", "amount", "counterparty", "memo"
                )];
                for entry in answer["entries"].as_array().into_iter().flatten() {
                    let sign = if entry["direction"] == "debit" {
                        "-"
                    } else {
                        "+"
                    };
                    lines.push(format!(
                        "{:>8}  {:<24} {:<6} {:>14}  {:<24} {}",
                        text(entry, "/sequence"),
                        text(entry, "/id"),
                        text(entry, "/direction"),
                        format!("{sign}{}", text(entry, "/amount")),
                        text(entry, "/counterparty"),
                        text(entry, "/memo")
                    ));
                }
                lines.push(format!(
                    "balance {} {}",
                    text(&answer, "/account/currency"),
                    text(&answer, "/account/balance")
                ));
                if let Some(next) = answer["next_before"].as_u64() {
                    lines.push(format!("older entries: --before {next}"));
                }
                (answer, lines.join("\n"))
            })
        }
        AdminCommand::Totals => client.get("/api/v1/totals").map(|answer| {
            let mut lines = Vec::new();
            for currency in answer["currencies"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "{} accounts {} posted sum {} pending sum {} {}",
                    text(currency, "/currency"),
                    text(currency, "/accounts"),
                    text(currency, "/posted_sum_minor"),
                    text(currency, "/pending_sum_minor"),
                    if currency["balanced"] == true {
                        "balanced"
                    } else {
                        "NOT BALANCED"
                    }
                ));
            }
            (answer, lines.join("\n"))
        }),
    };
    match result {
        Ok((answer, line)) => {
            if json {
                println!("{answer}");
            } else {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(json, &error),
    }
}

fn post_transfer(client: &ApiClient, args: TransferArgs) -> Result<(Value, String), CallError> {
    let body = match &args.batch {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                CallError::Transport(format!("cannot read {}: {error}", path.display()))
            })?;
            serde_json::from_str::<Value>(&text).map_err(|error| {
                CallError::Transport(format!("{} is not JSON: {error}", path.display()))
            })?
        }
        None => {
            let (kind, pending_id) = match (&args.post, &args.void, args.pending) {
                (Some(pending), _, _) => ("post_pending", Some(pending.clone())),
                (_, Some(pending), _) => ("void_pending", Some(pending.clone())),
                (_, _, true) => ("pending", None),
                _ => ("posted", None),
            };
            let mut transfer = json!({
                "id": args.id, "debit_account": args.from, "credit_account": args.to,
                "amount": args.amount, "kind": kind, "memo": args.memo,
            });
            if let Some(currency) = &args.currency {
                transfer["currency"] = json!(currency);
            }
            if let Some(pending_id) = pending_id {
                transfer["pending_id"] = json!(pending_id);
            }
            json!({ "transfers": [transfer] })
        }
    };
    client.post("/api/v1/transfers", &body).map(|answer| {
        let lines: Vec<String> = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|result| {
                let outcome = match result["outcome"].as_str() {
                    Some("transfer_committed") => "committed",
                    Some("transfer_exists") => "already committed (nothing changed)",
                    _ => "?",
                };
                format!("transfer {}: {outcome}", text(result, "/id"))
            })
            .collect();
        (answer, lines.join("\n"))
    })
}
