//! What the two daemons share around their services: the command line (`--config` or
//! `SN2_CONFIG`, nothing else), start-up (config, logging, hotkey) and a clean stop on
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use crate::config::{CONFIG_ENV, Config};
use crate::keys::Hotkey;

/// The daemons' command line: one config file drives everything.
#[derive(Debug, Parser)]
pub struct DaemonArgs {
    /// The TOML config file (see config.example.toml).
    #[arg(long, short = 'c', env = CONFIG_ENV, value_name = "FILE")]
    pub config: PathBuf,
}

/// A daemon's role, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Miner,
    Validator,
}

impl Role {
    pub fn binary_name(self) -> &'static str {
        match self {
            Role::Miner => "sn2-miner",
            Role::Validator => "sn2-validator",
        }
    }
}

/// A daemon after start-up: its configuration and its hotkey.
#[derive(Debug)]
pub struct Started {
    pub role: Role,
    pub config: Config,
    pub hotkey: Hotkey,
}

/// Loads the config, installs logging and loads the hotkey. Errors carry the context an
/// operator needs to fix them.
pub fn start(role: Role, args: &DaemonArgs) -> anyhow::Result<Started> {
    let config = Config::load(&args.config)?;
    crate::logging::init(&config.logging).context("cannot set up logging")?;
    let wallet = config.wallet_location();
    let hotkey = wallet
        .load_hotkey()
        .with_context(|| format!("cannot load the hotkey of wallet `{}`", wallet.name))?;
    tracing::info!(
        role = role.binary_name(),
        version = env!("CARGO_PKG_VERSION"),
        config = %args.config.display(),
        hotkey = %hotkey.public(),
        network = config.chain.network.endpoint(),
        netuid = config.netuid(),
        "started"
    );
    Ok(Started {
        role,
        config,
        hotkey,
    })
}

/// Completes when the process is asked to stop (SIGTERM or Ctrl-C), naming the signal.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// The `main` of both daemons: start up, serve until a stop signal, stop cleanly. Returns
/// the process exit code, printing start-up errors in full.
pub fn main(role: Role) -> std::process::ExitCode {
    let args = DaemonArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "{}: error: cannot start the async runtime: {error}",
                role.binary_name()
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let started = start(role, &args)?;
        tracing::info!(hotkey = %started.hotkey.public(), "ready");
        let signal = shutdown_signal().await;
        tracing::info!(signal, "stopping");
        anyhow::Ok(())
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: error: {error:#}", role.binary_name());
            std::process::ExitCode::FAILURE
        }
    }
}
