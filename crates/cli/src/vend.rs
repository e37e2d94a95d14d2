//! `offpay vend`: a vending machine and a payer device over a local link, and `offpay admin microcheck`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::client::ApiClient;

/// Device-side commands.
#[derive(Debug, Args)]
pub struct VendArgs {
    #[command(subcommand)]
    command: VendCommand,
}

#[derive(Debug, Subcommand)]
enum VendCommand {}

/// Runs a device-side command.
pub fn run(args: VendArgs) -> ExitCode {
    match args.command {}
}

/// Operator commands under `offpay admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {}

/// Runs an operator command.
pub fn run_admin(client: &ApiClient, json: bool, command: AdminCommand) -> ExitCode {
    let _ = (client, json);
    match command {}
}

/// This rail's part of `offpay demo`, against the running server at `client`.
pub fn demo(client: &ApiClient) -> Result<(), String> {
    let _ = client;
    Ok(())
}
