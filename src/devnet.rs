//! `sn2 devnet`: a validator and N miners on loopback, without a chain — the embedded
//! default that shows the whole subnet working.
//!
//! Everything runs in this process on real transports: throwaway hotkeys, the reference
//! models (built into the binary), a static metagraph (the validator is uid 0, miners
//! 1..=N), each node with its own models directory. Miners start with none: they fetch
//! each model and the validator's proving key over HTTP by hash, as on a real network. The first `dishonest` miners cheat,
//! alternately with wrong outputs and forged proofs; they must end with zero weight.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::chain::sync::MetagraphSync;
use crate::chain::{LocalChain, StaticNeuron};
use crate::keys::Hotkey;
use crate::miner::{Behaviour, Miner, MinerOptions};
use crate::model::ModelStore;
use crate::model::input::DataSet;
use crate::proof::groth16::ceremony::{self, Transcript};
use crate::proof::ptau::Ptau;
use crate::shutdown;
use crate::validator::{Transport, Validator, ValidatorOptions};

/// The reference models, built in so that the devnet runs anywhere (`nix run` included).
pub const REFERENCE_MODELS: &[(&str, &[u8], &str)] = &[
    (
        "digits-mlp",
        include_bytes!("../models/digits-mlp/model.onnx"),
        include_str!("../models/digits-mlp/calibration.json"),
    ),
    (
        "mnist-mlp",
        include_bytes!("../models/mnist-mlp/model.onnx"),
        include_str!("../models/mnist-mlp/calibration.json"),
    ),
    (
        "cnn-small",
        include_bytes!("../models/cnn-small/model.onnx"),
        include_str!("../models/cnn-small/calibration.json"),
    ),
];

#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub miners: usize,
    pub dishonest: usize,
    /// Names of reference models to serve.
    pub models: Vec<String>,
    pub transport: Transport,
    pub round_interval: Duration,
    pub request_timeout: Duration,
    /// Each miner's `[miner] prover_memory_bytes`.
    pub prover_memory_bytes: u64,
    /// Powers of tau (a snarkjs `.ptau` file, prepared for phase 2): the validator's keys
    /// are then finished from a ceremony over it, with one contribution made here, instead
    /// of its own single-party setup; its API serves the transcript.
    pub ceremony_ptau: Option<std::path::PathBuf>,
    /// Each miner's `[miner] ptau`: keys are then taken only from ceremony transcripts
    /// that verify against it.
    pub miner_ptau: Option<std::path::PathBuf>,
    /// A models directory whose models, with their keys, the validator serves as they are,
    /// instead of importing `models` (for keys made elsewhere, such as a snarkjs
    /// ceremony's imported with `sn2 ceremony import`).
    pub validator_models: Option<std::path::PathBuf>,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            miners: 3,
            dishonest: 0,
            models: vec!["digits-mlp".into(), "mnist-mlp".into()],
            transport: Transport::QuicThenHttp,
            round_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            prover_memory_bytes: crate::miner::ModelFetch::default().prover_memory_bytes,
            ceremony_ptau: None,
            miner_ptau: None,
            validator_models: None,
        }
    }
}

/// The state of one miner, as the table and `--json` show it.
#[derive(Debug, Clone, Serialize)]
pub struct MinerReport {
    pub uid: u16,
    pub hotkey: String,
    pub dishonest: bool,
    pub requests: u64,
    pub verified: u64,
    pub p50_ms: Option<f64>,
    pub score: f64,
    /// Normalised weight, 0 to 1 (the u16 value / 65535): the best miner has 1.
    pub weight: f64,
    /// Queries that did not verify, by what went wrong (`wrong_output`, `invalid_proof`,
    /// `timeout`, ...).
    pub failures: std::collections::BTreeMap<&'static str, u64>,
}

struct MinerNode {
    uid: u16,
    hotkey: String,
    behaviour: Behaviour,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The netuid the devnet's metagraph claims (Subnet 2's).
const DEVNET_NETUID: u16 = 2;

pub struct Devnet {
    pub validator: Arc<Validator>,
    chain: Arc<LocalChain>,
    miners: Vec<MinerNode>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
    /// Where the validator's user API listens (open, on loopback).
    pub api: SocketAddr,
}

/// A loopback port free for both TCP and UDP (QUIC and HTTP share it); the tests use it too.
/// The port is free again until its user binds it, so the kernel may offer it twice:
/// this process never hands the same one out twice (tests ask for ports on many threads).
pub fn free_port() -> anyhow::Result<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..50 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && HANDED_OUT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(port)
        {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port for both TCP and UDP")
}

/// Imports the reference models `names` into `dir`; with `ceremony_ptau`, finishes their
/// keys from a ceremony of one contribution, signed by `contributor`.
fn import_models(
    dir: &std::path::Path,
    names: &[String],
    ceremony_ptau: Option<&std::path::Path>,
    contributor: &Hotkey,
) -> anyhow::Result<ModelStore> {
    let store = ModelStore::new(dir);
    let ptau = ceremony_ptau.map(Ptau::read_prepared_file).transpose()?;
    for name in names {
        let (_, onnx, calibration) = REFERENCE_MODELS
            .iter()
            .find(|(n, _, _)| n == name)
            .with_context(|| {
                format!("no reference model `{name}` (there are digits-mlp, mnist-mlp, cnn-small)")
            })?;
        let stored = store.import(onnx, name, &DataSet::parse(calibration)?.inputs)?;
        if let Some(ptau) = &ptau {
            let mut transcript =
                Transcript::init(stored.id, &ceremony::circuit(&stored.model), ptau)?;
            transcript.contribute(Some(contributor));
            crate::proof::keys::install(
                &stored,
                crate::proof::groth16::NAME,
                &transcript.key_pair(),
                crate::proof::keys::Origin::Ceremony {
                    transcript: &transcript.to_bytes(),
                    hash: hex::encode(transcript.hash()),
                    contributions: 1,
                },
            )?;
        }
    }
    Ok(store)
}

fn random_hotkey() -> Hotkey {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    Hotkey::from_seed(&seed)
}

impl Devnet {
    pub async fn start(options: &DevnetOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(options.miners >= 1, "a devnet needs at least one miner");
        anyhow::ensure!(
            options.dishonest <= options.miners,
            "more dishonest miners than miners"
        );
        let dir = tempfile::tempdir()?;
        let validator_key = random_hotkey();
        let miner_keys: Vec<Hotkey> = (0..options.miners).map(|_| random_hotkey()).collect();
        let ports: Vec<u16> = (0..options.miners)
            .map(|_| free_port())
            .collect::<Result<_, _>>()?;
        let metrics_port = free_port()?;

        let mut neurons = vec![StaticNeuron {
            uid: 0,
            hotkey: validator_key.ss58(),
            // Its key server: miners fetch proving keys from here and from nowhere else.
            axon: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port))),
            validator_permit: true,
            stake: 1000.0,
        }];
        for (i, (key, port)) in miner_keys.iter().zip(&ports).enumerate() {
            neurons.push(StaticNeuron {
                uid: i as u16 + 1,
                hotkey: key.ss58(),
                axon: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, *port))),
                validator_permit: false,
                stake: 0.0,
            });
        }
        let chain = Arc::new(LocalChain::new(DEVNET_NETUID, &neurons)?);
        let sync = MetagraphSync::new(chain.clone(), Duration::from_secs(3600));
        sync.sync_once().await;
        let (stop, shutdown) = shutdown::channel();

        let mut miners = Vec::new();
        for (i, (key, port)) in miner_keys.into_iter().zip(ports).enumerate() {
            let behaviour = match i {
                i if i >= options.dishonest => Behaviour::Honest,
                i if i % 2 == 0 => Behaviour::WrongOutput,
                _ => Behaviour::ForgedProof,
            };
            // Miners start empty: they fetch each model and key from the validator by hash.
            let store = ModelStore::new(dir.path().join(format!("miner-{}", i + 1)));
            let hotkey = key.ss58();
            let miner = Miner::new(
                key,
                store,
                chain.snapshot(),
                MinerOptions {
                    max_concurrent_proofs: 2,
                    max_key_bytes: 256 << 20,
                    key_fetch_timeout: Duration::from_secs(120),
                    limits: crate::wire::http::Limits::new(1 << 20),
                    min_validator_stake: 0.0,
                    behaviour,
                    fetch: crate::miner::ModelFetch {
                        prover_memory_bytes: options.prover_memory_bytes,
                        ceremony_ptau: options.miner_ptau.clone(),
                        ..Default::default()
                    },
                },
                Arc::new(crate::metrics::Metrics::default()),
            );
            let (miner_stop, miner_shutdown) = shutdown::channel();
            // Bound before the devnet is handed out, so the first round finds every miner.
            let serving = miner
                .listen(
                    SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                    miner_shutdown,
                )
                .await?;
            let task = tokio::spawn(serving);
            miners.push(MinerNode {
                uid: i as u16 + 1,
                hotkey,
                behaviour,
                stop: miner_stop,
                task: Some(task),
            });
        }

        let store = match &options.validator_models {
            Some(models) => ModelStore::new(models),
            None => import_models(
                &dir.path().join("validator"),
                &options.models,
                options.ceremony_ptau.as_deref(),
                &validator_key,
            )?,
        };
        let validator_options = ValidatorOptions {
            round_interval: options.round_interval,
            request_timeout: options.request_timeout,
            sample_size: options.miners,
            state_dir: dir.path().join("validator-state"),
            models: Vec::new(),
            transport: options.transport,
            max_response_bytes: 1 << 20,
        };
        let validator = tokio::task::spawn_blocking(move || {
            Validator::new(validator_key, &store, &sync, validator_options)
        })
        .await??;
        // Bound before miners are asked to fetch keys from it.
        let http = tokio::spawn(
            validator
                .clone()
                .listen_http(
                    SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port)),
                    shutdown.clone(),
                )
                .await?,
        );
        // The user API, open (loopback only): what `curl` and `sn2 infer` talk to.
        let api_address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let api = crate::validator::api::Api::new(
            validator.clone(),
            crate::validator::api::ApiOptions::from_config(&crate::config::ApiConfig {
                open: true,
                // Loopback only: the rate limit would only get in the way of trying it.
                open_requests_per_minute: crate::config::Count::new(100_000),
                ..Default::default()
            }),
        );
        let api_task = tokio::spawn(api.listen(api_address, shutdown.clone()).await?);
        Ok(Self {
            validator,
            chain,
            miners,
            stop,
            tasks: vec![http, api_task],
            dir,
            api: api_address,
        })
    }

    /// The devnet's working directory: `validator/` (its models and keys),
    /// `validator-state/` (its scores), `miner-N/`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn chain(&self) -> Arc<LocalChain> {
        self.chain.clone()
    }

    /// A metagraph sync of the devnet's chain, for another validator to share it.
    pub async fn sync(&self) -> MetagraphSync {
        let sync = MetagraphSync::new(self.chain.clone(), Duration::from_secs(3600));
        sync.sync_once().await;
        sync
    }

    /// Stops one miner (index into the miners, 0-based), as if its process died.
    pub async fn kill_miner(&mut self, index: usize) {
        let node = &mut self.miners[index];
        let _ = node.stop.send(true);
        if let Some(task) = node.task.take() {
            let _ = task.await;
        }
    }

    /// What the table shows, detached from the devnet so that a running validator's
    /// callback can hold it.
    pub fn reporter(&self) -> Reporter {
        Reporter {
            validator: self.validator.clone(),
            chain: self.chain.clone(),
            miners: self
                .miners
                .iter()
                .map(|n| (n.uid, n.hotkey.clone(), n.behaviour != Behaviour::Honest))
                .collect(),
        }
    }

    pub fn report(&self) -> Vec<MinerReport> {
        self.reporter().report()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for node in self.miners {
            let _ = node.stop.send(true);
            if let Some(task) = node.task {
                let _ = task.await;
            }
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[derive(Clone)]
pub struct Reporter {
    validator: Arc<Validator>,
    chain: Arc<LocalChain>,
    miners: Vec<(u16, String, bool)>,
}

impl Reporter {
    pub fn report(&self) -> Vec<MinerReport> {
        let stats = self.validator.stats();
        let scores = self.validator.scores();
        let weights = self.chain.last_weights().unwrap_or_default();
        self.miners
            .iter()
            .map(|(uid, hotkey, dishonest)| {
                let stat = stats.get(hotkey).cloned().unwrap_or_default();
                let weight = weights
                    .uids
                    .iter()
                    .position(|u| u == uid)
                    .map_or(0.0, |i| weights.values[i] as f64 / 65535.0);
                MinerReport {
                    uid: *uid,
                    hotkey: hotkey.clone(),
                    dishonest: *dishonest,
                    requests: stat.requests,
                    verified: stat.verified,
                    p50_ms: stat.p50_ms(),
                    score: scores.miners.get(hotkey).map_or(0.0, |m| m.score),
                    weight,
                    failures: stat.failures,
                }
            })
            .collect()
    }
}

/// The live table, with what went wrong for each miner's failed queries and what the
/// weights mean.
pub fn table(reports: &[MinerReport]) -> String {
    let mut out = format!(
        "{:>4}  {:<48}  {:>6}  {:>8}  {:>8}  {:>7}  {:>6}  {:>6}  {}\n",
        "uid", "hotkey", "honest", "requests", "verified", "p50 ms", "score", "weight", "failed"
    );
    for r in reports {
        let failed = r
            .failures
            .iter()
            .map(|(status, count)| format!("{} {count}", status.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "{:>4}  {:<48}  {:>6}  {:>8}  {:>8}  {:>7}  {:>6.3}  {:>6.3}  {}\n",
            r.uid,
            r.hotkey,
            if r.dishonest { "no" } else { "yes" },
            r.requests,
            r.verified,
            r.p50_ms.map_or("-".into(), |p| format!("{p:.1}")),
            r.score,
            r.weight,
            if failed.is_empty() { "-" } else { &failed }
        ));
    }
    out.push_str(
        "score: validity and speed of the recent queries, as of now; weight: the scores at the end of the last round, scaled so that the best miner has 1, as set on chain\n",
    );
    out
}
