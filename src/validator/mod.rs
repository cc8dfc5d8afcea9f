//! The validator (`sn2-validator`): sends work, verifies, scores, sets weights.
//!
//! Each round it picks a model (in turn), draws a fresh random input and nonce per miner,
//! queries a sample of the metagraph's miners at once (QUIC first, HTTP when QUIC cannot
//! connect), verifies every proof against its own verifying key and the request's binding,
//! scores the round (see [`score`]) and sets weights. It makes its own keys (setup belongs
//! to the verifier) and serves its proving keys to miners by hash, next to `/metrics` and
//! `/health`.

pub mod score;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hyper::http::request::Parts;

use crate::chain::sync::{MetagraphSync, SyncState};
use crate::chain::{Chain, Neuron, WeightsOutcome};
use crate::keys::Hotkey;
use crate::metrics::Metrics;
use crate::model::{ModelStore, StoredModel};
use crate::proof::{self, Binding, Statement, Verifier, keys as key_files};
use crate::shutdown::{Shutdown, stopped};
use crate::wire::auth::sha256_hex;
use crate::wire::http::{self as wire_http, HttpClient, HttpResponse, text_response};
use crate::wire::quic::{self, Session};
use crate::wire::{ClientError, ProveRequest, Request, Response, now_ms};
use score::{RoundResult, Scores};

/// Which transports a validator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC, and HTTP when QUIC cannot connect.
    QuicThenHttp,
    QuicOnly,
    HttpOnly,
}

#[derive(Debug, Clone)]
pub struct ValidatorOptions {
    pub round_interval: Duration,
    pub request_timeout: Duration,
    pub sample_size: usize,
    pub state_dir: PathBuf,
    pub models: Vec<String>,
    pub key_url: Option<String>,
    pub transport: Transport,
    /// Largest response accepted.
    pub max_response_bytes: usize,
}

impl ValidatorOptions {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let v = &config.validator;
        Self {
            round_interval: v.round_interval_secs.duration(),
            request_timeout: v.request_timeout_secs.duration(),
            sample_size: v.sample_size.get(),
            state_dir: v.state_dir.clone(),
            models: v.models.clone(),
            key_url: v.key_url.clone(),
            transport: Transport::QuicThenHttp,
            max_response_bytes: 1 << 20,
        }
    }
}

/// A model the validator queries: its verifier and the proving key miners must use.
struct ModelEntry {
    stored: StoredModel,
    verifier: Box<dyn Verifier>,
    proving_key_hash: String,
    proving_key_path: PathBuf,
}

/// Per-miner figures for the devnet's table.
#[derive(Debug, Clone, Default)]
pub struct MinerStats {
    pub requests: u64,
    pub verified: u64,
    pub latencies_ms: Vec<f64>,
    pub last_error: Option<String>,
}

impl MinerStats {
    pub fn p50_ms(&self) -> Option<f64> {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }
}

pub struct Validator {
    hotkey: Hotkey,
    chain: Arc<dyn Chain>,
    metagraph: tokio::sync::watch::Receiver<SyncState>,
    options: ValidatorOptions,
    models: Vec<ModelEntry>,
    scores: Mutex<Scores>,
    metrics: Metrics,
    quic: quinn::Endpoint,
    http: HttpClient,
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
    stats: Mutex<HashMap<String, MinerStats>>,
}

/// How one query ended.
enum Outcome {
    Verified {
        latency_ms: f64,
    },
    Failed {
        status: &'static str,
        reason: String,
    },
}

impl Validator {
    /// Loads scores and models, making keys for models that have none.
    pub fn new(
        hotkey: Hotkey,
        store: &ModelStore,
        sync: &MetagraphSync,
        options: ValidatorOptions,
    ) -> anyhow::Result<Arc<Self>> {
        let scores = Scores::load(&options.state_dir)?;
        let system = proof::default_backend();
        let mut chosen: Vec<StoredModel> = if options.models.is_empty() {
            store.list()?
        } else {
            options
                .models
                .iter()
                .map(|m| store.open(m))
                .collect::<Result<_, _>>()?
        };
        chosen.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        let mut models = Vec::new();
        for stored in chosen {
            let vk_path = key_files::path(&stored, system.name(), key_files::KeyKind::Verifying);
            if !vk_path.exists() {
                tracing::info!(model = %stored.info.name, "no keys yet: running this validator's own setup");
                key_files::setup(&stored, system.as_ref())?;
            }
            let verifying = key_files::read(&stored, system.name(), key_files::KeyKind::Verifying)?;
            let payload = key_files::decode(
                &verifying,
                key_files::KeyKind::Verifying,
                system.name(),
                &stored.id,
            )?;
            let verifier = system.verifier(&stored.model, payload)?;
            let proving_key_path =
                key_files::path(&stored, system.name(), key_files::KeyKind::Proving);
            let proving = std::fs::read(&proving_key_path)
                .with_context(|| format!("cannot read {}", proving_key_path.display()))?;
            tracing::info!(model = %stored.info.name, fingerprint = %key_files::fingerprint(&verifying), "model ready");
            models.push(ModelEntry {
                proving_key_hash: sha256_hex(&proving),
                proving_key_path,
                verifier,
                stored,
            });
        }
        if models.is_empty() {
            anyhow::bail!(
                "no models to query in {} (import one with `sn2 model import`)",
                store.dir().display()
            );
        }
        Ok(Arc::new(Self {
            hotkey,
            chain: sync.chain().clone(),
            metagraph: sync.subscribe(),
            options,
            models,
            scores: Mutex::new(scores),
            metrics: Metrics::default(),
            quic: quic::client_endpoint()?,
            http: HttpClient::default(),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
        }))
    }

    pub fn hotkey(&self) -> &Hotkey {
        &self.hotkey
    }

    pub fn scores(&self) -> Scores {
        self.scores.lock().expect("not poisoned").clone()
    }

    pub fn stats(&self) -> HashMap<String, MinerStats> {
        self.stats.lock().expect("not poisoned").clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs rounds until `shutdown`; `on_round` is told after each one (devnet table,
    /// systemd status).
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: Shutdown,
        mut on_round: impl FnMut(u64, &Self),
    ) {
        let mut round = 0u64;
        loop {
            let started = Instant::now();
            tokio::select! {
                _ = self.round(round) => {}
                _ = stopped(&mut shutdown) => return,
            }
            on_round(round, &self);
            round += 1;
            let rest = self
                .options
                .round_interval
                .saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(rest) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    /// One round: query a sample of miners with one model, score, set weights.
    pub async fn round(self: &Arc<Self>, round: u64) {
        let Some(metagraph) = self.metagraph.borrow().metagraph.clone() else {
            tracing::warn!("no metagraph yet; skipping the round");
            return;
        };
        let mut miners: Vec<Neuron> = metagraph
            .miners(&self.hotkey.public())
            .into_iter()
            .cloned()
            .collect();
        shuffle(&mut miners);
        miners.truncate(self.options.sample_size);
        let model = (round as usize) % self.models.len();
        let mut tasks = tokio::task::JoinSet::new();
        for miner in miners {
            let me = self.clone();
            tasks.spawn(async move {
                let outcome = me.query(&miner, model).await;
                (miner, outcome)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((miner, outcome)) = joined else {
                continue;
            };
            let hotkey = miner.hotkey.to_ss58();
            let mut stats = self.stats.lock().expect("not poisoned");
            let entry = stats.entry(hotkey.clone()).or_default();
            entry.requests += 1;
            let latency = match outcome {
                Outcome::Verified { latency_ms } => {
                    entry.verified += 1;
                    entry.latencies_ms.push(latency_ms);
                    if entry.latencies_ms.len() > 200 {
                        entry.latencies_ms.remove(0);
                    }
                    entry.last_error = None;
                    self.metrics.response("ok", Some(latency_ms / 1000.0));
                    self.metrics.proof(true);
                    Some(latency_ms)
                }
                Outcome::Failed { status, reason } => {
                    tracing::info!(miner = %hotkey, uid = miner.uid, status, %reason, "query failed");
                    entry.last_error = Some(reason);
                    self.metrics.response(status, None);
                    if status == "invalid_proof" {
                        self.metrics.proof(false);
                    }
                    None
                }
            };
            results.push(RoundResult {
                hotkey,
                verified_latency_ms: latency,
            });
        }
        let now = now_ms();
        let weights = {
            let mut scores = self.scores.lock().expect("not poisoned");
            scores.record(&results, now);
            if let Err(error) = scores.save(&self.options.state_dir) {
                tracing::error!(%error, "cannot save scores");
            }
            scores.weights(&metagraph, now)
        };
        let named = weights
            .uids
            .iter()
            .zip(&weights.values)
            .filter_map(|(uid, value)| {
                let neuron = metagraph.neurons.iter().find(|n| n.uid == *uid)?;
                Some((neuron.hotkey.to_ss58(), *value as f64 / 65535.0))
            })
            .collect();
        self.metrics.set_weights(named);
        self.metrics.round();
        self.put_weights(&weights).await;
    }

    /// Hands the weights to the chain, which sets them when they are due.
    async fn put_weights(&self, weights: &crate::chain::Weights) {
        if weights.values.iter().all(|v| *v == 0) {
            // All-zero weights say nothing and some subnets refuse them.
            tracing::debug!("no miner has a score yet; no weights to set");
            return;
        }
        match self.chain.set_weights(weights).await {
            Ok(outcome) => {
                self.metrics.weights(&outcome);
                match outcome {
                    WeightsOutcome::Set { block } => {
                        tracing::info!(block, miners = weights.uids.len(), "weights set")
                    }
                    WeightsOutcome::Committed { block } => {
                        tracing::info!(block, miners = weights.uids.len(), "weights committed")
                    }
                    WeightsOutcome::NotDue { blocks_left } => {
                        tracing::debug!(blocks_left, "weights not due yet")
                    }
                    WeightsOutcome::Recorded => {}
                }
            }
            Err(error) => {
                self.metrics.weights_failed();
                tracing::error!(%error, "cannot set weights");
            }
        }
    }

    async fn query(&self, miner: &Neuron, model: usize) -> Outcome {
        let entry = &self.models[model];
        let Some(address) = miner.axon else {
            return Outcome::Failed {
                status: "no_axon",
                reason: "the miner serves no axon".into(),
            };
        };
        let mut input = vec![0u8; entry.stored.model.input_len()];
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut input);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let input: Vec<i8> = input.into_iter().map(|b| b as i8).collect();
        let request = Request::Prove(ProveRequest {
            model: entry.stored.id.to_hex(),
            input: input.clone(),
            nonce: hex::encode(nonce),
            proving_key: entry.proving_key_hash.clone(),
            key_url: self.options.key_url.clone(),
        });
        let started = Instant::now();
        let answer = tokio::time::timeout(
            self.options.request_timeout,
            self.send(miner, address, &request),
        )
        .await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let response = match answer {
            Err(_) => {
                return Outcome::Failed {
                    status: "timeout",
                    reason: "no answer in time".into(),
                };
            }
            Ok(Err(ClientError::Refused(error))) => {
                return Outcome::Failed {
                    status: "refused",
                    reason: error.to_string(),
                };
            }
            Ok(Err(error)) => {
                return Outcome::Failed {
                    status: "error",
                    reason: error.to_string(),
                };
            }
            Ok(Ok(response)) => response,
        };
        let Response::Proved(proved) = response else {
            return Outcome::Failed {
                status: "error",
                reason: "an answer that is not a proof".into(),
            };
        };
        let proof = proof::file::decode_proof(&proved.proof);
        let statement = Statement {
            input,
            output: proved.output,
            binding: Binding::new(&entry.stored.id, &miner.hotkey, &nonce),
        };
        let verified = proof.map_err(|e| e.to_string()).and_then(|proof| {
            entry
                .verifier
                .verify(&statement, &proof)
                .map_err(|e| e.to_string())
        });
        match verified {
            Ok(()) => Outcome::Verified { latency_ms },
            Err(reason) => Outcome::Failed {
                status: "invalid_proof",
                reason,
            },
        }
    }

    async fn send(
        &self,
        miner: &Neuron,
        address: SocketAddr,
        request: &Request,
    ) -> Result<Response, ClientError> {
        if self.options.transport != Transport::HttpOnly {
            self.metrics.request("quic");
            match self.quic_request(miner, address, request).await {
                Err(ClientError::Connect(error))
                    if self.options.transport == Transport::QuicThenHttp =>
                {
                    tracing::debug!(miner = %miner.hotkey, %error, "QUIC failed; trying HTTP");
                }
                other => return other,
            }
        }
        self.metrics.request("http");
        self.http
            .request(
                address,
                &self.hotkey,
                &miner.hotkey,
                request,
                self.options.max_response_bytes,
            )
            .await
    }

    /// A request over this validator's QUIC session to the miner, opening one if needed.
    /// A stale session is replaced once; `Connect` comes back only when no request was
    /// sent, so the caller may fall back on HTTP without the miner seeing it twice.
    async fn quic_request(
        &self,
        miner: &Neuron,
        address: SocketAddr,
        request: &Request,
    ) -> Result<Response, ClientError> {
        let key = format!("{}@{address}", miner.hotkey);
        let cached = self
            .sessions
            .lock()
            .await
            .get(&key)
            .filter(|s| s.is_open())
            .cloned();
        if let Some(session) = cached {
            match session.request(request).await {
                Err(ClientError::Connect(_)) => {
                    self.sessions.lock().await.remove(&key);
                }
                answered => return answered,
            }
        }
        let session = Arc::new(
            Session::connect(
                &self.quic,
                address,
                &self.hotkey,
                miner.hotkey,
                self.options.max_response_bytes,
            )
            .await?,
        );
        self.sessions.lock().await.insert(key, session.clone());
        session.request(request).await
    }

    /// Serves `/metrics`, `/health` and `/keys/<sha256>` until `shutdown`.
    /// Binds `address`; the returned future serves `/metrics`, `/health` and
    /// `/keys/<sha256>` until `shutdown`. Once this returns, miners can fetch keys.
    pub async fn listen_http(
        self: Arc<Self>,
        address: SocketAddr,
        shutdown: Shutdown,
    ) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on tcp/{address}"))?;
        tracing::info!(%address, "serving metrics, health and proving keys");
        Ok(wire_http::serve(
            listener,
            4096,
            move |parts, body| {
                let me = self.clone();
                async move { me.handle_http(parts, body) }
            },
            shutdown,
        ))
    }

    fn handle_http(&self, parts: Parts, _body: Bytes) -> HttpResponse {
        let path = parts.uri.path();
        if parts.method != hyper::Method::GET {
            return text_response(405, "text/plain", "GET only\n");
        }
        if path == "/metrics" {
            return text_response(200, "text/plain; version=0.0.4", self.metrics.render());
        }
        if path == "/health" {
            let body = serde_json::json!({ "status": "ok", "hotkey": self.hotkey.ss58(), "models": self.models.len() });
            return text_response(200, "application/json", body.to_string());
        }
        if let Some(hash) = path.strip_prefix("/keys/")
            && let Some(entry) = self.models.iter().find(|m| m.proving_key_hash == hash)
        {
            return match std::fs::read(&entry.proving_key_path) {
                Ok(bytes) => text_response(200, "application/octet-stream", bytes),
                Err(_) => text_response(500, "text/plain", "cannot read the key\n"),
            };
        }
        text_response(404, "text/plain", "not found\n")
    }
}

/// Fisher–Yates with the OS's randomness: which miners are sampled must not be predictable.
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (rand_core::RngCore::next_u64(&mut rand_core::OsRng) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
