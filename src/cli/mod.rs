//! The `sn2` operator tool: subcommands, their flags, and how their results are printed.
//! Each subcommand is a thin layer over a library module; errors are reported once, at
//! the top, with their whole chain of causes.

mod api_client;
mod bench_cmd;
mod ceremony_cmd;
mod config_cmd;
mod devnet_cmd;
mod infer_cmd;
mod join_cmd;
mod keys_cmd;
mod metagraph_cmd;
mod model_cmd;
mod proof_cmd;
mod release_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::CONFIG_ENV;

#[derive(Debug, Parser)]
#[command(
    name = "sn2",
    version,
    about = "Operator's tool for Bittensor Subnet 2 (Proof of Inference)",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Create and show wallet hotkeys.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Import, inspect and set up models.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Run a model on an input and prove the output.
    Prove(proof_cmd::ProveArgs),
    /// Check a proof file.
    Verify(proof_cmd::VerifyArgs),
    /// Public setups that make keys anyone can trust: powers of tau, then a ceremony per model.
    #[command(subcommand)]
    Ceremony(ceremony_cmd::CeremonyCommand),
    /// Ask a validator's user API for a proved answer, and verify the proof here.
    Infer(infer_cmd::InferArgs),
    /// Measure circuit sizes, proving and verifying times, and memory on this machine.
    Bench(bench_cmd::BenchArgs),
    /// Run a validator and miners on loopback, without a chain, with a live table.
    Devnet(devnet_cmd::DevnetArgs),
    /// Print a subnet's metagraph from the chain.
    Metagraph(metagraph_cmd::MetagraphArgs),
    /// Make signing keys, sign release manifests, and check them as a node would.
    #[command(subcommand)]
    Release(release_cmd::ReleaseCommand),
}

/// A config file to take defaults from (its `[wallet]` section, models directory, ...).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Take defaults from this config file.
    #[arg(long, short = 'c', env = CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn load(&self) -> anyhow::Result<Option<crate::config::Config>> {
        match &self.config {
            Some(path) => Ok(Some(crate::config::Config::load(path)?)),
            None => Ok(None),
        }
    }
}

/// What a subcommand asks `main` to exit with, beyond plain success.
pub enum Outcome {
    Success,
    /// The command ran but its answer is "no" (an invalid config, a failed check).
    Failure,
}

/// The `main` of `sn2`: parse, run, report.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(command) => command.run(),
        Command::Keys(command) => command.run(),
        Command::Model(command) => command.run(),
        Command::Prove(args) => args.run(),
        Command::Verify(args) => args.run(),
        Command::Ceremony(command) => command.run(),
        Command::Infer(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Devnet(args) => args.run(),
        Command::Metagraph(args) => args.run(),
        Command::Release(command) => command.run(),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("sn2: error: {}", crate::logging::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
