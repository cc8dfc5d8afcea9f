//! What the two daemons share around their services: the command line (`--config` or
//! `SN2_CONFIG`, nothing else), start-up (config, logging, hotkey, chain), systemd
//! notification (READY, STATUS, the watchdog, STOPPING) and a clean stop on SIGTERM or
//! Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use crate::chain::StaticChain;
use crate::config::{CONFIG_ENV, ChainBackend, Config};
use crate::keys::Hotkey;
use crate::miner::{Miner, MinerOptions};
use crate::model::ModelStore;
use crate::shutdown::Shutdown;
use crate::validator::{Validator, ValidatorOptions};

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

/// Tells systemd (when it started us) how things are; a no-op elsewhere.
pub fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "cannot notify systemd");
    }
}

/// Pings systemd's watchdog at half its interval, if it has one, until the process ends.
fn spawn_watchdog() {
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

/// The chain backend the config names.
fn chain(config: &Config) -> anyhow::Result<Arc<StaticChain>> {
    match config.chain.backend {
        ChainBackend::Static => Ok(Arc::new(
            StaticChain::new(&config.chain.neurons).context("invalid `[chain] neurons`")?,
        )),
        ChainBackend::Subtensor => anyhow::bail!(
            "the subtensor chain backend is not in this build yet; set `[chain] backend = \"static\"` and list the subnet's neurons"
        ),
    }
}

async fn run_miner(started: Started, shutdown: Shutdown) -> anyhow::Result<()> {
    let chain = chain(&started.config)?;
    let options = MinerOptions::from_config(&started.config.miner);
    let store = ModelStore::new(&started.config.models.dir);
    let listen = started.config.miner.listen.0;
    let miner = Miner::new(started.hotkey, store, chain.metagraph(), options);
    let hotkey = miner.hotkey().ss58();
    // Bound before READY: systemd is told only once the miner is reachable.
    let serving = tokio::spawn(miner.listen(listen, shutdown).await?);
    tracing::info!(%hotkey, %listen, "ready");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("serving on {listen}")),
    ]);
    spawn_watchdog();
    serving.await.context("the miner stopped")
}

async fn run_validator(started: Started, shutdown: Shutdown) -> anyhow::Result<()> {
    let chain = chain(&started.config)?;
    let options = ValidatorOptions::from_config(&started.config);
    let store = ModelStore::new(&started.config.models.dir);
    // Loading models may run a setup: seconds of CPU, off the async threads.
    let validator =
        tokio::task::spawn_blocking(move || Validator::new(started.hotkey, &store, chain, options))
            .await??;
    let mut tasks = Vec::new();
    if started.config.metrics.enabled {
        let server = validator
            .clone()
            .listen_http(started.config.metrics.listen.0, shutdown.clone())
            .await?;
        tasks.push(tokio::spawn(server));
    }
    tracing::info!(hotkey = %validator.hotkey().ss58(), "ready");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("validating"),
    ]);
    spawn_watchdog();
    validator
        .run(shutdown, |round, validator| {
            let weights = validator.scores().miners.len();
            notify(&[sd_notify::NotifyState::Status(&format!(
                "round {} done; {weights} miners scored",
                round + 1
            ))]);
        })
        .await;
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
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
        let (stop, shutdown) = crate::shutdown::channel();
        let service = match role {
            Role::Miner => tokio::spawn(run_miner(started, shutdown)),
            Role::Validator => tokio::spawn(run_validator(started, shutdown)),
        };
        tokio::pin!(service);
        tokio::select! {
            signal = shutdown_signal() => {
                tracing::info!(signal, "stopping");
                notify(&[sd_notify::NotifyState::Stopping]);
                let _ = stop.send(true);
                service.await.context("the service panicked")?
            }
            ended = &mut service => ended.context("the service panicked")?,
        }
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
