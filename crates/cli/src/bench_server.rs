//! `offpay bench server`: one transfer per HTTP request against running servers, from a number
//! of concurrent clients, the way a device-facing app tier is loaded (each request its own
//! transfer; the server's group commit does the batching). Clients are spread round-robin over
//! every `--server` given, so several processes on one database can be measured together. Plain
//! `http://` servers are driven by a lean keep-alive client ([`crate::bench_http`]), HTTPS ones
//! by `reqwest`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::bench_http::PlainClient;
use serde_json::json;

/// Accounts the transfers move money between (each pair drawn at random), as in pgledger's
/// performance check.
pub const ACCOUNTS: usize = 10;
/// Most concurrent clients.
pub const CLIENTS_MAX: usize = 256;
/// Longest run per client count.
pub const SECONDS_MAX: u64 = 3600;
/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct ServerBenchArgs {
    /// Server base URL; repeat for several processes (clients are spread over them)
    #[arg(long = "server", value_name = "URL", required = true)]
    servers: Vec<String>,
    /// The operator token file (of the first server; every process of one deployment shares it)
    #[arg(long, env = "OFFPAY_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Concurrent clients, one run per value (comma-separated)
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32])]
    clients: Vec<usize>,
    /// Seconds per run
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// One run's figures.
#[derive(Debug, Serialize)]
struct RunReport {
    clients: usize,
    processes: usize,
    seconds: f64,
    transfers: u64,
    transfers_per_second: f64,
    errors: u64,
}

fn fail(message: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("offpay bench server: {message}");
    std::process::ExitCode::FAILURE
}

pub fn run(args: ServerBenchArgs) -> std::process::ExitCode {
    if args
        .clients
        .iter()
        .any(|count| *count == 0 || *count > CLIENTS_MAX)
    {
        return fail(format!("--clients: each count must be 1 to {CLIENTS_MAX}"));
    }
    if args.seconds == 0 || args.seconds > SECONDS_MAX {
        return fail(format!("--seconds must be 1 to {SECONDS_MAX}"));
    }
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(crate::default_token_file);
    let token = match std::fs::read_to_string(&token_file) {
        Ok(text) => text.trim().to_owned(),
        Err(error) => return fail(format!("token file {}: {error}", token_file.display())),
    };
    let servers: Vec<String> = args
        .servers
        .iter()
        .map(|server| server.trim_end_matches('/').to_owned())
        .collect();
    let client = match crate::client::http_builder().and_then(|builder| {
        builder
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| error.to_string())
    }) {
        Ok(client) => client,
        Err(error) => return fail(error),
    };
    // Accounts are created once (idempotently) under a name of this run.
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis())
    );
    let accounts: Vec<String> = (0..ACCOUNTS)
        .map(|index| format!("bench-{run_id}-{index}"))
        .collect();
    for account in &accounts {
        let response = client
            .post(format!("{}/api/v1/accounts", servers[0]))
            .bearer_auth(&token)
            .json(&json!({ "id": account, "kind": "operator_float" }))
            .send();
        match response {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                return fail(format!(
                    "creating account {account}: {} {}",
                    response.status(),
                    response.text().unwrap_or_default()
                ));
            }
            Err(error) => return fail(format!("creating account {account}: {error}")),
        }
    }
    let accounts = Arc::new(accounts);
    // Live figures only for a person watching; a log gets the summary.
    let live = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut reports = Vec::new();
    for (run_index, clients) in args.clients.iter().copied().enumerate() {
        if !args.json {
            eprintln!(
                "{clients} client(s) on {} process(es) for {} s ...",
                servers.len(),
                args.seconds
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|index| {
                let server = servers[index % servers.len()].clone();
                let (token, accounts, stop, done, errors, client) = (
                    token.clone(),
                    accounts.clone(),
                    stop.clone(),
                    done.clone(),
                    errors.clone(),
                    client.clone(),
                );
                let prefix = format!("{run_id}-r{run_index}-c{index}");
                std::thread::spawn(move || {
                    let mut plain = PlainClient::for_base(&server, REQUEST_TIMEOUT);
                    let path = "/api/v1/transfers";
                    let mut sequence: u64 = 0;
                    // A small deterministic generator per client: the pair of accounts.
                    let mut state = (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    while !stop.load(Ordering::Relaxed) {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let debit = (state % ACCOUNTS as u64) as usize;
                        let offset = 1 + ((state >> 32) % (ACCOUNTS as u64 - 1)) as usize;
                        let credit = (debit + offset) % ACCOUNTS;
                        sequence += 1;
                        let body = json!({ "transfers": [{
                            "id": format!("{prefix}-{sequence}"),
                            "debit_account": accounts[debit],
                            "credit_account": accounts[credit],
                            "amount": "1.00",
                        }]});
                        let ok = match &mut plain {
                            Some(plain) => plain
                                .post_json(path, &token, body.to_string().as_bytes())
                                .is_ok_and(|status| (200..300).contains(&status)),
                            None => client
                                .post(format!("{server}{path}"))
                                .bearer_auth(&token)
                                .json(&body)
                                .send()
                                .map(|response| response.status().is_success())
                                .unwrap_or(false),
                        };
                        if ok {
                            done.fetch_add(1, Ordering::Relaxed);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let deadline = started + Duration::from_secs(args.seconds);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200).min(deadline - Instant::now()));
            if live {
                let elapsed = started.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\r  {:>9} transfers, {:>8.0}/s",
                    done.load(Ordering::Relaxed),
                    done.load(Ordering::Relaxed) as f64 / elapsed
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            let _ = thread.join();
        }
        let seconds = started.elapsed().as_secs_f64();
        let transfers = done.load(Ordering::Relaxed);
        if live {
            eprintln!();
        }
        reports.push(RunReport {
            clients,
            processes: servers.len(),
            seconds,
            transfers,
            transfers_per_second: transfers as f64 / seconds,
            errors: errors.load(Ordering::Relaxed),
        });
    }
    if args.json {
        match serde_json::to_string_pretty(&reports) {
            Ok(text) => println!("{text}"),
            Err(error) => return fail(error),
        }
    } else {
        println!("clients  processes  transfers/s  transfers  errors");
        for report in &reports {
            println!(
                "{:>7}  {:>9}  {:>11.0}  {:>9}  {:>6}",
                report.clients,
                report.processes,
                report.transfers_per_second,
                report.transfers,
                report.errors
            );
        }
    }
    std::process::ExitCode::SUCCESS
}
