//! `offpay`: one binary for the server, the operator client, the load generator and the devices.

mod admin;
mod backup;
mod bench;
mod bench_http;
mod bench_server;
mod client;
mod demo;
mod exit;
mod microcheck;
mod pgdump;
mod purse;
mod serve;
mod sim;
mod sms;
mod wallet;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the server's clearing work allocates and frees many small objects on several
/// threads at once, where it is measurably cheaper than the system allocator
/// (docs/PERFORMANCE.md, microchecks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// offpay — payments where the mobile network is missing, intermittent or too expensive.
#[derive(Debug, Parser)]
#[command(
    name = "offpay",
    version,
    about,
    propagate_version = true,
    after_help = exit::SCHEME
)]
struct Cli {
    /// Also trust the CA certificates in this PEM file for HTTPS servers (an operator's own CA)
    #[arg(long, global = true, env = "OFFPAY_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator server (SQLite in the data directory by default).
    Serve(serve::ServeArgs),
    /// Run the server and walk through a demonstration of the ledger and the rails against it.
    Demo(demo::DemoArgs),
    /// Operator client for the server's API.
    Admin(admin::AdminArgs),
    /// Back up the ledger and the data directory's keys, encrypted to a backup key
    /// (`backup keygen`, `backup verify`).
    Backup(backup::BackupArgs),
    /// Restore a data directory from an `offpay backup` archive.
    Restore(backup::RestoreArgs),
    /// Ask a server whether it is live or ready (for container health checks).
    Healthcheck(serve::HealthcheckArgs),
    /// Benchmarks (the ledger load generator).
    Bench(bench::BenchArgs),
    /// Rail 1: a feature phone's short-code purse.
    Purse(purse::PurseArgs),
    /// Rail 2: act as a phone sending SMS to the server.
    Sms(sms::SmsArgs),
    /// Rail 3: a smartphone wallet paying over UDP.
    Wallet(wallet::WalletArgs),
    /// Rail 4: a vending machine and a payer device exchanging microchecks.
    #[command(visible_alias = "vend")]
    Microcheck(microcheck::MicrocheckArgs),
    /// The deterministic adversarial simulator: every rail, devices, faults, from seeds.
    Sim(sim::SimArgs),
    /// KeyNote trust management, compatible with the reference keynote(1) tool.
    #[command(disable_help_flag = true)]
    Keynote {
        /// verify | sign | sigver | keygen, with keynote(1)'s arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The log target of what the server says to its operator (where it listens, where the token
/// is, why it stopped): always let through, whatever `OFFPAY_LOG` filters out.
pub const NOTICE_TARGET: &str = "offpay::notice";

/// Whether logs are JSON (`OFFPAY_LOG_FORMAT=json`): then every line on stderr is a JSON object.
pub fn json_logs() -> bool {
    std::env::var("OFFPAY_LOG_FORMAT").is_ok_and(|format| format == "json")
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let directives = std::env::var("OFFPAY_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(format!("{directives},{NOTICE_TARGET}=info"))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{NOTICE_TARGET}=info")));
    let json = json_logs();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Ends the command quietly when its output pipe is closed (`offpay ... | head`), as other
/// command-line tools do: Rust ignores SIGPIPE, so printing to a closed stdout panics with
/// "failed printing to stdout: Broken pipe"; this hook exits instead of reporting that panic.
fn exit_quietly_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// Files and directories this process creates are its user's alone (0600, 0700) unless the
/// code asks for more: purse, wallet and key files, printed envelopes, backups, the database.
#[cfg(unix)]
fn private_by_default() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

fn main() -> ExitCode {
    exit_quietly_on_closed_pipe();
    #[cfg(unix)]
    private_by_default();
    let cli = Cli::parse();
    if let Some(path) = cli.ca_file {
        client::trust_ca_file(path);
    }
    match cli.command {
        Command::Serve(args) => {
            init_logging();
            serve::run(args)
        }
        Command::Demo(args) => {
            init_logging();
            demo::run(args)
        }
        Command::Admin(args) => admin::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => backup::run_restore(args),
        Command::Healthcheck(args) => serve::healthcheck(&args),
        Command::Bench(args) => bench::run(args),
        Command::Purse(args) => purse::run(args),
        Command::Sms(args) => sms::run(args),
        Command::Wallet(args) => wallet::run(args),
        Command::Microcheck(args) => microcheck::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Keynote { args } => {
            let code =
                offpay_keynote::cli::run(&args, &mut std::io::stdout(), &mut std::io::stderr());
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// The default data directory's token file, for clients on the server's machine.
fn default_token_file() -> PathBuf {
    PathBuf::from(offpay_server::config::DEFAULT_DATA_DIR)
        .join(offpay_server::config::TOKEN_FILE_NAME)
}
