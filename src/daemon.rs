//! What the two daemons share around their services: the command line (`--config` or
//! `SN2_CONFIG`, nothing else), start-up (config, logging, hotkey, chain), systemd
//! notification (READY, STATUS, the watchdog, STOPPING) and a clean stop on SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use tokio::sync::watch;

use crate::chain::subtensor::{SubtensorChain, SubtensorOptions};
use crate::chain::sync::{MetagraphSync, SyncState};
use crate::chain::{Chain, ChainError, LocalChain, Metagraph, ServeOutcome};
pub use crate::config::Role;
use crate::config::{CONFIG_ENV, ChainBackend, Config, UpdateConfig};
use crate::keys::Hotkey;
use crate::metrics::Metrics;
use crate::miner::{Miner, MinerOptions};
use crate::model::ModelStore;
use crate::shutdown::{Shutdown, stopped};
use crate::update::watch::{Event, RESTART_EXIT_CODE, Watcher};
use crate::validator::ceremony::{Ceremonies, CeremonyOptions, Peers};
use crate::validator::{Validator, ValidatorOptions};

/// The daemons' command line: one config file drives everything.
#[derive(Debug, Parser)]
pub struct DaemonArgs {
    /// The TOML config file (see config.example.toml).
    #[arg(long, short = 'c', env = CONFIG_ENV, value_name = "FILE")]
    pub config: PathBuf,
}

/// A daemon after start-up: its configuration and its hotkey.
#[derive(Debug)]
pub struct Started {
    pub role: Role,
    pub config: Config,
    pub hotkey: Hotkey,
}

/// Loads the config and checks it for `role` (as `sn2 config check --role` does),
/// installs logging and loads the hotkey. Errors carry the context an operator needs to
/// fix them.
pub fn start(role: Role, args: &DaemonArgs) -> anyhow::Result<Started> {
    let config = Config::load_for(&args.config, role)?;
    crate::logging::init(&config.logging).context("cannot set up logging")?;
    raise_open_files_limit();
    let wallet = config.wallet_location();
    let hotkey = wallet
        .load_hotkey()
        .with_context(|| format!("cannot load the hotkey of wallet `{}`", wallet.name))?;
    tracing::info!(
        role = role.binary_name(),
        version = env!("CARGO_PKG_VERSION"),
        config = %args.config.display(),
        hotkey = %hotkey.public(),
        chain = %match config.chain.backend {
            // No endpoint is reached on the local backend: naming one would mislead.
            ChainBackend::Local => "local (the config's neurons)".to_string(),
            ChainBackend::Subtensor => {
                crate::config::redact_url(config.chain.network.endpoint())
            }
        },
        netuid = config.netuid(),
        "started"
    );
    Ok(Started {
        role,
        config,
        hotkey,
    })
}

/// Raises the soft limit on open files to the hard one: each listener holds up to 1024
/// connections, past the soft limit of 1024 that shells and systemd give by default, and a
/// daemon out of descriptors could not even accept the connection that answers 503.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the limit on open files; connections may be refused early");
        }
    }
}

/// SIGTERM and SIGINT (Ctrl-C), the signals that ask a daemon to stop.
pub struct ShutdownSignals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Takes over SIGTERM and SIGINT from their default (killing the process at once).
    /// Called before any service starts: a signal that arrives after the daemon said it
    /// is ready must stop it cleanly, not kill it.
    pub fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let take = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for {name}");
                None
            }
        };
        Self {
            terminate: take(SignalKind::terminate(), "SIGTERM"),
            interrupt: take(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// The name of the first signal that arrives.
    pub async fn recv(&mut self) -> &'static str {
        async fn next(stream: &mut Option<tokio::signal::unix::Signal>) {
            match stream {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.terminate) => "SIGTERM",
            _ = next(&mut self.interrupt) => "SIGINT",
        }
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

/// The chain backend the config names. `hotkey` signs transactions; `state_dir` keeps
/// the validator's weight commits.
pub fn chain(
    config: &Config,
    hotkey: Option<Arc<Hotkey>>,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<Arc<dyn Chain>> {
    Ok(match config.chain.backend {
        ChainBackend::Local => Arc::new(
            LocalChain::new(config.netuid(), &config.chain.neurons)
                .context("invalid `[chain] neurons`")?,
        ),
        ChainBackend::Subtensor => Arc::new(SubtensorChain::new(
            SubtensorOptions {
                endpoint: config.chain.network.endpoint().to_string(),
                netuid: config.netuid(),
                weights_interval_blocks: config.validator.weights_interval_blocks.get() as u64,
                state_dir,
                weights_mode: config.validator.weights_mode,
            },
            hotkey,
        )),
    })
}

/// Follows the metagraph sync for systemd: STATUS whenever the chain goes down or comes
/// back (a dead endpoint never stops the daemon; it shows here).
fn spawn_chain_status(
    mut updates: watch::Receiver<SyncState>,
    mut healthy_status: impl FnMut() -> String + Send + 'static,
) {
    tokio::spawn(async move {
        let mut was_up = None;
        loop {
            let state = updates.borrow_and_update().clone();
            if was_up != Some(state.up) && (state.up || state.failures > 0) {
                let status = if state.up {
                    healthy_status()
                } else {
                    format!(
                        "chain unreachable ({}); retrying",
                        state.last_error.as_deref().unwrap_or("no answer")
                    )
                };
                notify(&[sd_notify::NotifyState::Status(&status)]);
                was_up = Some(state.up);
            }
            if updates.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Waits until `hotkey` is in the metagraph, re-reading it every sync interval: a hotkey
/// that is not registered gets no work and may not set weights. `None` on shutdown. The
/// `local` metagraph never changes, so there it is only a warning.
async fn until_registered(
    local: bool,
    sync: &MetagraphSync,
    hotkey: &Hotkey,
    interval: std::time::Duration,
    shutdown: &mut Shutdown,
) -> Option<Arc<Metagraph>> {
    let mut metagraph = sync.first(shutdown).await?;
    if local {
        // A fixed metagraph will not change: serve anyway, and say why nothing comes.
        if metagraph.by_hotkey(&hotkey.public()).is_none() {
            tracing::warn!(hotkey = %hotkey.ss58(), "this hotkey is not in `[chain] neurons`; peers will not work with it");
        }
        return Some(metagraph);
    }
    while metagraph.by_hotkey(&hotkey.public()).is_none() {
        let error = ChainError::NotRegistered {
            hotkey: hotkey.ss58(),
            netuid: sync.chain().netuid(),
        };
        tracing::error!("{error}; checking again in {} s", interval.as_secs());
        notify(&[sd_notify::NotifyState::Status(&format!(
            "waiting: hotkey not registered on subnet {}",
            sync.chain().netuid()
        ))]);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped(shutdown) => return None,
        }
        sync.sync_once().await;
        metagraph = sync.subscribe().borrow().metagraph.clone()?;
    }
    Some(metagraph)
}

/// The address the miner announces on chain: `external_ip`/`external_port`, else the
/// address it listens on. The chain needs a real address, not 0.0.0.0.
fn announced_address(config: &crate::config::MinerConfig) -> anyhow::Result<SocketAddr> {
    let listen = config.listen.0;
    let ip = match config.external_ip {
        Some(ip) => ip,
        None if listen.ip().is_unspecified() => anyhow::bail!(
            "the miner listens on {listen}, which validators cannot reach; set `[miner] external_ip` to the public address to announce on chain"
        ),
        None => listen.ip(),
    };
    let port = config
        .external_port
        .map(|p| p.get())
        .unwrap_or(listen.port());
    Ok(SocketAddr::new(ip, port))
}

/// Announces the daemon's axon (a miner's QUIC and HTTP address, a validator's key
/// server), retrying while the chain is unreachable or rate-limits axon updates; gives up
/// (loudly) on refusals the operator must fix.
async fn announce_axon(chain: Arc<dyn Chain>, address: SocketAddr, mut shutdown: Shutdown) {
    let mut delay = std::time::Duration::from_secs(2);
    loop {
        let retry = match chain.serve_axon(address).await {
            Ok(ServeOutcome::Unchanged) => {
                tracing::info!(%address, "the chain already holds this axon");
                return;
            }
            Ok(ServeOutcome::Served { block }) => {
                tracing::info!(%address, block, "axon served");
                return;
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "cannot serve the axon yet; retrying");
                true
            }
            Err(error @ ChainError::Refused { .. }) if error.to_string().contains("RateLimit") => {
                tracing::warn!(%error, "cannot serve the axon yet; retrying");
                true
            }
            Err(error) => {
                tracing::error!(%error, "cannot serve the axon; peers will not find this daemon");
                notify(&[sd_notify::NotifyState::Status(&format!(
                    "serving, but the axon is not on chain: {error}"
                ))]);
                false
            }
        };
        if !retry {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut shutdown) => return,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(120));
    }
}

/// Asks `main` to stop the daemon and exit with [`RESTART_EXIT_CODE`], so that systemd
/// restarts it: from the profile a new release was installed into, or onto keys a
/// ceremony made.
type RestartRequest = tokio::sync::mpsc::Sender<()>;

/// Starts the release watcher `[update]` asks for (none when `mode = "off"`).
fn spawn_updates(
    config: &UpdateConfig,
    shutdown: Shutdown,
    report: impl Fn(&Event) + Send + 'static,
    restart: RestartRequest,
) {
    if config.mode == crate::config::UpdateMode::Off {
        return;
    }
    let config = config.clone();
    tokio::spawn(async move {
        // Hashing the running binary's store path takes a moment: off the async threads.
        let watcher = tokio::task::spawn_blocking(move || Watcher::from_config(&config)).await;
        let watcher = match watcher {
            Ok(Ok(Some(watcher))) => watcher,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                tracing::error!(error = %format!("{error:#}"), "cannot watch for releases");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "cannot watch for releases");
                return;
            }
        };
        let report = move |event: &Event| {
            report(event);
            if let Some(status) = event.status() {
                notify(&[sd_notify::NotifyState::Status(&status)]);
            }
        };
        if watcher.run(shutdown, report).await {
            let _ = restart.send(()).await;
        }
    });
}

async fn run_miner(
    started: Started,
    mut shutdown: Shutdown,
    restart: RestartRequest,
) -> anyhow::Result<()> {
    let config = &started.config;
    let interval = config.chain.sync_interval_secs.duration();
    let local = config.chain.backend == ChainBackend::Local;
    let announce = match config.chain.backend {
        ChainBackend::Subtensor => Some(announced_address(&config.miner)?),
        ChainBackend::Local => None,
    };
    let hotkey = Arc::new(started.hotkey.clone());
    let chain = chain(config, Some(hotkey), None)?;
    let sync = Arc::new(MetagraphSync::new(chain.clone(), interval));
    let metrics = Arc::new(Metrics::default());
    let listen = config.miner.listen.0;
    spawn_chain_status(sync.subscribe(), move || format!("serving on {listen}"));
    metrics.follow_chain(sync.subscribe());
    // Metrics first: while the chain is unreachable, `sn2_chain_up 0` says so.
    if config.metrics.enabled {
        let health_key = started.hotkey.ss58();
        let server = metrics
            .clone()
            .listen(config.metrics.listen.0, shutdown.clone(), move || {
                serde_json::json!({ "status": "ok", "role": "miner", "hotkey": health_key })
                    .to_string()
            })
            .await?;
        tokio::spawn(server);
    }
    {
        let metrics = metrics.clone();
        spawn_updates(
            &config.update,
            shutdown.clone(),
            move |event| metrics.update_event(event),
            restart,
        );
    }
    tracing::info!(chain = %chain.describe(), "reading the metagraph");
    let Some(metagraph) =
        until_registered(local, &sync, &started.hotkey, interval, &mut shutdown).await
    else {
        return Ok(());
    };
    let options = MinerOptions::from_config(&config.miner);
    let store = ModelStore::new(&config.models.dir);
    let miner = Miner::new(
        started.hotkey,
        store,
        (*metagraph).clone(),
        options,
        metrics.clone(),
    );
    if let Some(path) = config.miner.ptau.clone() {
        // Its start checked now, off the critical path, so that a file that is not a
        // prepared powers of tau shows in the log at once; each model's check reads as far
        // as its circuit needs.
        let miner = miner.clone();
        tokio::spawn(async move {
            match miner.powers_of_tau(1).await {
                Ok(ptau) => {
                    tracing::info!(ptau = %path.display(), ceremony_power = ptau.ceremony_power, "powers of tau readable: proving keys are taken only from ceremonies verified against them")
                }
                Err(error) => {
                    tracing::error!(%error, "[miner] ptau is unusable: no proving key will be taken until it is put right")
                }
            }
        });
    }
    let hotkey = miner.hotkey().ss58();
    // Bound before READY: systemd is told only once the miner is reachable.
    let serving = tokio::spawn(miner.clone().listen(listen, shutdown.clone()).await?);
    tokio::spawn(sync.clone().run(shutdown.clone()));
    let mut updates = sync.subscribe();
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let metagraph = updates.borrow_and_update().metagraph.clone();
            if let Some(metagraph) = metagraph {
                miner.set_metagraph((*metagraph).clone());
            }
        }
    });
    if let Some(address) = announce {
        tokio::spawn(announce_axon(chain, address, shutdown.clone()));
    }
    tracing::info!(%hotkey, %listen, "ready");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("serving on {listen}")),
    ]);
    spawn_watchdog();
    serving.await.context("the miner stopped")
}

async fn run_validator(
    started: Started,
    mut shutdown: Shutdown,
    restart: RestartRequest,
) -> anyhow::Result<()> {
    let config = &started.config;
    let interval = config.chain.sync_interval_secs.duration();
    let local = config.chain.backend == ChainBackend::Local;
    let options = ValidatorOptions::from_config(config);
    let hotkey = Arc::new(started.hotkey.clone());
    let chain = chain(config, Some(hotkey), Some(options.state_dir.clone()))?;
    let sync = Arc::new(MetagraphSync::new(chain.clone(), interval));
    spawn_chain_status(sync.subscribe(), || "validating".to_string());
    tracing::info!(chain = %chain.describe(), "reading the metagraph");
    let metrics_enabled = config.metrics.enabled;
    let metrics_listen = config.metrics.listen.0;
    let Some(_) = until_registered(local, &sync, &started.hotkey, interval, &mut shutdown).await
    else {
        return Ok(());
    };
    let store = ModelStore::new(&config.models.dir);
    // Loading models may run a setup: seconds of CPU, off the async threads.
    let validator = tokio::task::spawn_blocking({
        let sync = sync.clone();
        move || Validator::new(started.hotkey, &store, &sync, options)
    })
    .await??;
    validator.metrics().follow_chain(sync.subscribe());
    {
        let validator = validator.clone();
        spawn_updates(
            &config.update,
            shutdown.clone(),
            move |event| validator.metrics().update_event(event),
            restart.clone(),
        );
    }
    tokio::spawn(sync.clone().run(shutdown.clone()));
    if let Some(options) = CeremonyOptions::from_config(config) {
        spawn_ceremonies(
            options,
            &validator,
            &sync,
            shutdown.clone(),
            restart.clone(),
        );
    }
    let mut tasks = Vec::new();
    if metrics_enabled {
        let server = validator
            .clone()
            .listen_http(metrics_listen, shutdown.clone())
            .await?;
        tasks.push(tokio::spawn(server));
    }
    if config.api.enabled {
        let api = crate::validator::api::Api::new(
            validator.clone(),
            crate::validator::api::ApiOptions::from_config(&config.api),
        );
        tasks.push(tokio::spawn(
            api.listen(config.api.listen.0, shutdown.clone()).await?,
        ));
    }
    // Miners fetch proving keys from the address this validator announced, and from
    // nowhere else; with the local backend the config's neurons say it.
    match (config.validator.key_server, config.chain.backend) {
        // `Config::check_for` refused a key server without the metrics listener at start.
        (Some(key_server), ChainBackend::Subtensor) => {
            tokio::spawn(announce_axon(chain, key_server.0, shutdown.clone()));
        }
        (None, ChainBackend::Subtensor) => tracing::warn!(
            "[validator] key_server is not set: miners cannot fetch this validator's proving keys and will answer `unknown_key` until they have them"
        ),
        (_, ChainBackend::Local) => {}
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

/// Starts this validator's part in its models' ceremonies, in the background (checking
/// the powers of tau takes a while, and the validator serves meanwhile): it serves its
/// transcripts on its key server, looks at the other validators' (those with a permit and
/// an announced address), and restarts onto a ceremony's keys once it installs them.
fn spawn_ceremonies(
    options: CeremonyOptions,
    validator: &Arc<Validator>,
    sync: &Arc<MetagraphSync>,
    shutdown: Shutdown,
    restart: RestartRequest,
) {
    let models = validator.stored_models();
    let validator = validator.clone();
    let metagraph = sync.subscribe();
    let hotkey = validator.hotkey().clone();
    let me = hotkey.public();
    tokio::spawn(async move {
        tracing::info!(ptau = %options.ptau.display(), quorum = options.quorum, "taking part in the models' ceremonies");
        let started =
            tokio::task::spawn_blocking(move || Ceremonies::start(options, hotkey, models)).await;
        let ceremonies = match started {
            Ok(Ok(ceremonies)) => Arc::new(ceremonies),
            Ok(Err(error)) => {
                tracing::error!(error = %format!("{error:#}"), "[validator.ceremony]: cannot take part in the ceremonies; this validator keeps its keys");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "[validator.ceremony]: starting the ceremonies panicked");
                return;
            }
        };
        validator.serve_ceremonies(ceremonies.clone());
        tracing::info!("serving the ceremonies' transcripts (/ceremonies)");
        // The validators with a permit: their key servers are asked, and their signed
        // contributions count toward the quorum.
        let peers = move || {
            let synced = metagraph.borrow();
            let permitted = synced
                .metagraph
                .iter()
                .flat_map(|m| &m.neurons)
                .filter(|n| n.validator_permit && n.hotkey != me);
            let mut peers = Peers::default();
            for neuron in permitted {
                peers.validators.insert(neuron.hotkey);
                peers.key_servers.extend(neuron.axon);
            }
            peers
        };
        ceremonies
            .run(peers, shutdown, move |stored| {
                tracing::info!(model = %stored.info.name, "a ceremony's keys are installed: restarting onto them");
                let _ = restart.try_send(());
            })
            .await;
    });
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
    // `Ok(true)`: stopped to be restarted into a newly installed release.
    let result: anyhow::Result<bool> = runtime.block_on(async {
        let started = start(role, &args)?;
        let mut signals = ShutdownSignals::install();
        let (stop, shutdown) = crate::shutdown::channel();
        let (restart, mut restart_requested) = tokio::sync::mpsc::channel(1);
        let service = match role {
            Role::Miner => tokio::spawn(run_miner(started, shutdown, restart)),
            Role::Validator => tokio::spawn(run_validator(started, shutdown, restart)),
        };
        tokio::pin!(service);
        let restarting = tokio::select! {
            signal = signals.recv() => {
                tracing::info!(signal, "stopping");
                false
            }
            Some(()) = restart_requested.recv() => {
                tracing::info!("stopping to restart (into a new release, or onto new keys)");
                true
            }
            ended = &mut service => {
                ended.context("the service panicked")??;
                return Ok(false);
            }
        };
        notify(&[sd_notify::NotifyState::Stopping]);
        let _ = stop.send(true);
        service.await.context("the service panicked")??;
        Ok(restarting)
    });
    match result {
        Ok(false) => {
            tracing::info!("stopped");
            std::process::ExitCode::SUCCESS
        }
        Ok(true) => {
            tracing::info!(exit_code = RESTART_EXIT_CODE, "stopped for a restart");
            std::process::ExitCode::from(RESTART_EXIT_CODE)
        }
        Err(error) => {
            eprintln!(
                "{}: error: {}",
                role.binary_name(),
                crate::logging::error_chain(&error)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
