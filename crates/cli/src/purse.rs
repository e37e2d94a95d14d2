//! `offpay purse`: a feature phone's short-code purse as a command line, and `offpay admin purse`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::client::ApiClient;

/// Device-side commands.
#[derive(Debug, Args)]
pub struct PurseArgs {
    #[command(subcommand)]
    command: PurseCommand,
}

#[derive(Debug, Subcommand)]
enum PurseCommand {}

/// Runs a device-side command.
pub fn run(args: PurseArgs) -> ExitCode {
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
