//! `offpay demo`: starts the server and walks through what offpay does, against the live API,
//! printing each step. Ids are fixed, so running it again on the same data directory changes
//! nothing (every transfer is already committed).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use offpay_server::Server;
use serde_json::{Value, json};

use crate::client::{ApiClient, path_segment};
use crate::serve::{ServeArgs, announce, runtime, shutdown_signal};

/// Demo options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data directory [default: ./offpay-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Stop the server when the walkthrough is done instead of serving on
    #[arg(long)]
    exit: bool,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let serve = ServeArgs {
        data_dir: args.data_dir,
        listen: args.listen,
        database_url: None,
        config: None,
        tls_cert: None,
        tls_key: None,
        approval_above: None,
        sms_gateway: None,
        default_country: None,
        default_language: None,
        retention: crate::serve::RetentionArgs::default(),
    };
    let config = match serve.resolve() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("offpay demo: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("offpay demo: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::start(config.clone()).await {
            Ok(server) => server,
            Err(error) => {
                crate::serve::say_error(&format!("offpay demo: {error}"));
                return crate::exit::for_start(&error);
            }
        };
        announce(&server, &config);
        let base = match server.local_addr() {
            Ok(address) => format!("http://{address}"),
            Err(error) => {
                eprintln!("offpay demo: {error}");
                return ExitCode::FAILURE;
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let exit_after = args.exit;
        let serving = tokio::spawn(server.run(async move {
            tokio::select! {
                _ = stopped => {},
                () = shutdown_signal() => {},
            }
        }));
        let token = config.token_path();
        let walkthrough = tokio::task::spawn_blocking(move || walkthrough(&base, &token)).await;
        let outcome = match walkthrough {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(message)) => {
                eprintln!("offpay demo: {message}");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("offpay demo: the walkthrough crashed: {error}");
                ExitCode::FAILURE
            }
        };
        if exit_after || outcome != ExitCode::SUCCESS {
            let _ = stop.send(());
        } else {
            println!("\nThe server keeps running; try `offpay admin history purse:alice`. Ctrl-C stops it.");
        }
        match serving.await {
            Ok(Ok(())) => outcome,
            Ok(Err(error)) => {
                eprintln!("offpay demo: {error}");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("offpay demo: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn call(result: Result<Value, crate::client::CallError>) -> Result<Value, String> {
    result.map_err(|error| error.to_string())
}

fn balance_line(client: &ApiClient, account: &str) -> Result<String, String> {
    let answer = call(client.get(&format!("/api/v1/accounts/{}", path_segment(account))))?;
    Ok(format!(
        "   {:<28} {} {:>12}",
        account,
        answer["currency"].as_str().unwrap_or("?"),
        answer["balance"].as_str().unwrap_or("?")
    ))
}

fn walkthrough(base: &str, token: &std::path::Path) -> Result<(), String> {
    let client = ApiClient::new(base, Some(token))?;
    step("The ledger: double entry, integer minor units, idempotent ids");
    let accounts = [
        ("operator:float", "operator_float"),
        ("agent:+254700000009", "agent_float"),
        ("purse:alice", "customer"),
        ("purse:bob", "customer"),
    ];
    for (id, kind) in accounts {
        call(client.post("/api/v1/accounts", &json!({ "id": id, "kind": kind })))?;
        println!("   account {id} ({kind})");
    }
    step("The operator floats the agent 100000.00; the agent cashes in 1000.00 for Alice");
    let transfers = json!({ "transfers": [
        { "id": "demo:float-agent", "debit_account": "operator:float", "credit_account": "agent:+254700000009",
          "amount": "100000.00", "memo": "agent float" },
        { "id": "demo:cash-in-alice", "debit_account": "agent:+254700000009", "credit_account": "purse:alice",
          "amount": "1000", "memo": "cash in" },
    ]});
    let answer = call(client.post("/api/v1/transfers", &transfers))?;
    for result in answer["results"].as_array().into_iter().flatten() {
        println!(
            "   {} {}",
            result["id"].as_str().unwrap_or("?"),
            result["outcome"].as_str().unwrap_or("?")
        );
    }
    step("Alice pays Bob 450.00: reserved (pending), then posted");
    call(client.post(
        "/api/v1/transfers",
        &json!({ "transfers": [{ "id": "demo:alice-bob", "debit_account": "purse:alice", "credit_account": "purse:bob",
                 "amount": "450", "kind": "pending", "memo": "market" }] }),
    ))?;
    call(client.post(
        "/api/v1/transfers",
        &json!({ "transfers": [{ "id": "demo:alice-bob-post", "debit_account": "purse:alice", "credit_account": "purse:bob",
                 "amount": "450", "kind": "post_pending", "pending_id": "demo:alice-bob", "memo": "market" }] }),
    ))?;
    println!("   posted");
    step("A retry of the same transfer posts once; an overdraft is refused and changes nothing");
    let retry = call(client.post(
        "/api/v1/transfers",
        &json!({ "transfers": [{ "id": "demo:cash-in-alice", "debit_account": "agent:+254700000009",
                 "credit_account": "purse:alice", "amount": "1000", "memo": "cash in" }] }),
    ))?;
    println!(
        "   retry: {}",
        retry["results"][0]["outcome"].as_str().unwrap_or("?")
    );
    match client.post(
        "/api/v1/transfers",
        &json!({ "transfers": [{ "id": "demo:overdraft", "debit_account": "purse:bob", "credit_account": "purse:alice",
                 "amount": "5000" }] }),
    ) {
        Ok(_) => return Err("the overdraft was accepted".into()),
        Err(error) => println!("   overdraft: {error}"),
    }
    step("Balances");
    for (id, _) in accounts {
        println!("{}", balance_line(&client, id)?);
    }
    let totals = call(client.get("/api/v1/totals"))?;
    if totals["balanced"] != true {
        return Err(format!("the ledger does not balance: {totals}"));
    }
    println!("   every currency sums to zero: {}", totals["currencies"]);
    crate::purse::demo(&client)?;
    crate::sms::demo(&client)?;
    crate::wallet::demo(&client)?;
    crate::microcheck::demo(&client)?;
    Ok(())
}
