//! The validator (`sn2-validator`): sends work, verifies, scores, sets weights.
//!
//! Each round it picks a model (in turn), draws a fresh random input and nonce per miner,
//! and queries a sample of the metagraph's miners at once (QUIC first, HTTP when QUIC
//! cannot connect). Each query has its own deadline and is scored when it ends (see
//! [`score`]): proofs are verified against the validator's own verifying key and each
//! request's binding, in batches of the answers that arrived while the previous batch was
//! checked (a false proof is still named). A round never waits for its slowest miner, and a
//! miner still answering an earlier query is left out of the next sample. The keys are
//! pinned in the validator's state and checked to be one pair at start ([`key_pins`]). At
//! each round the scores are saved and weights set. The validator makes its own keys
//! (setup belongs to the verifier), or with `[validator.ceremony]` makes them with the
//! subnet's other validators ([`ceremony`]), and serves its proving keys to miners by hash, next to
//! `/metrics` and `/health`, on a listener whose every connection has deadlines (see
//! [`wire_http::Limits`]).

pub mod api;
pub mod ceremony;
pub mod key_pins;
pub mod score;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
use key_pins::KeyPins;
use score::{Pace, Scores};

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
            transport: Transport::QuicThenHttp,
            max_response_bytes: 1 << 20,
        }
    }
}

/// A key file, or a ceremony's record, changed on disk since the validator loaded its keys
/// (a ceremony's keys were installed and the restart is pending): what it would serve is
/// not what it checks proofs with, so it serves nothing until it restarts.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} changed since this validator started (new keys were installed); it serves them once restarted: try again shortly",
    .0.display()
)]
pub struct KeysChanged(PathBuf);

/// A model the validator queries: its verifier and the proving key miners must use.
struct ModelEntry {
    stored: StoredModel,
    verifier: Box<dyn Verifier>,
    proving_key_hash: String,
    proving_key_path: PathBuf,
    /// The verifying key's fingerprint (the SHA-256 of its file).
    verifying_key_hash: String,
    /// The verifying key file the verifier was made from: the one users are served, even
    /// after the files on disk change (a ceremony's keys installed, before the restart).
    verifying_key: Bytes,
    /// What a proof checked against the verifying key convinces (the API's `provenance`).
    provenance: String,
    /// The ceremony the keys were finished from, if any, with its transcript on disk.
    ceremony: Option<CeremonySummary>,
    /// The SHA-256 of that transcript's file at start: a file that changed since (keys
    /// installed, restart pending) is not served as these keys' transcript.
    transcript_hash: Option<String>,
    /// The transcript's bytes, read on the first download and shared like the proving key.
    transcript: tokio::sync::OnceCell<Bytes>,
    /// The canonical model file, read on its first download like the proving key.
    canonical: tokio::sync::OnceCell<Bytes>,
    /// The proving key's bytes, read on the first download and shared by every later one:
    /// a key server's memory does not grow with its readers.
    proving_key: tokio::sync::OnceCell<Bytes>,
}

/// Per-miner figures for the devnet's table.
#[derive(Debug, Clone, Default)]
pub struct MinerStats {
    pub requests: u64,
    pub verified: u64,
    pub latencies_ms: Vec<f64>,
    pub last_error: Option<String>,
    /// Failed queries by what went wrong (`wrong_output`, `invalid_proof`, `timeout`, ...).
    pub failures: std::collections::BTreeMap<&'static str, u64>,
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
    pace: Mutex<Pace>,
    /// Miners with a query under way; the next rounds leave them out.
    pending: Mutex<HashSet<String>>,
    metrics: Arc<Metrics>,
    quic: quinn::Endpoint,
    http: HttpClient,
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
    stats: Mutex<HashMap<String, MinerStats>>,
    /// The ceremonies the key server offers, once started (`[validator.ceremony]`).
    ceremonies: std::sync::OnceLock<Arc<ceremony::Ceremonies>>,
}

/// How one query ended.
enum Outcome {
    Verified {
        latency_ms: f64,
        answer: Answer,
    },
    Failed {
        /// What happened, for metrics and logs: `timeout`, `connection_refused`, `reset`,
        /// `refused` (by the miner), `invalid_proof`, ...
        status: &'static str,
        reason: String,
    },
}

/// A miner's answer to one query, before its proof is checked.
struct Asked {
    /// The proof's bytes, or why they could not be decoded.
    proof: Result<Vec<u8>, String>,
    statement: Statement,
    latency_ms: f64,
    answer: Answer,
}

impl Asked {
    /// The query's outcome once its proof was checked. A refused proof whose output is not
    /// the model's on the input is told apart as a wrong output (evaluating the model is
    /// cheap next to a proof), so that an operator sees which of the two a miner got wrong.
    fn outcome(self, verified: Result<(), String>, model: &crate::model::QuantModel) -> Outcome {
        match verified {
            Ok(()) => Outcome::Verified {
                latency_ms: self.latency_ms,
                answer: self.answer,
            },
            Err(reason) => {
                let wrong_output = model
                    .evaluate(&self.statement.input)
                    .is_ok_and(|output| output != self.statement.output);
                Outcome::Failed {
                    status: if wrong_output {
                        "wrong_output"
                    } else {
                        "invalid_proof"
                    },
                    reason,
                }
            }
        }
    }
}

/// A miner's verified answer to one query.
#[derive(Debug, Clone)]
pub struct Answer {
    pub input: Vec<i8>,
    pub output: Vec<i32>,
    /// The proof as the miner sent it (base64).
    pub proof: String,
    /// The nonce the proof is bound to, with the model and the miner (hex).
    pub nonce: String,
}

/// A user's inference, answered and verified.
#[derive(Debug, Clone)]
pub struct Inference {
    pub answer: Answer,
    pub model: crate::model::ModelId,
    pub verifying_key: String,
    /// What the proof convinces, given where the verifying key came from.
    pub provenance: String,
    pub miner: String,
    pub latency_ms: f64,
}

/// A model this validator asks for, as its user API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub id: String,
    pub name: String,
    pub input_shapes: Vec<Vec<usize>>,
    pub input_len: usize,
    pub output_len: usize,
    /// The SHA-256 of the verifying key file.
    pub verifying_key: String,
    /// The ceremony the keys come from; `None` for a single-party setup.
    pub ceremony: Option<CeremonySummary>,
    /// The ceremony under way here while users may still contribute to it.
    pub ceremony_open: Option<ceremony::OpenCeremony>,
}

/// A ceremony whose transcript the validator serves (`/v1/models/{id}/transcript`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CeremonySummary {
    /// The transcript's chain hash, in hex: what `sn2 ceremony verify` prints.
    pub transcript: String,
    pub contributions: u32,
}

/// Marks a miner as answering a query; dropped when the query ends, however it ends.
struct PendingQuery<'a> {
    pending: &'a Mutex<HashSet<String>>,
    hotkey: String,
}

impl Drop for PendingQuery<'_> {
    fn drop(&mut self) {
        self.pending
            .lock()
            .expect("not poisoned")
            .remove(&self.hotkey);
    }
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
        let mut pins = KeyPins::load(&options.state_dir)?;
        let mut models = Vec::new();
        for stored in chosen {
            let vk_path = key_files::path(&stored, system.name(), key_files::KeyKind::Verifying);
            let made_here = !vk_path.exists();
            if made_here {
                tracing::info!(model = %stored.info.name, "no keys yet: running this validator's own setup");
                let name = stored.info.name.clone();
                key_files::setup_reporting(
                    &stored,
                    system.as_ref(),
                    &mut |step| tracing::info!(model = %name, "setup: {step}"),
                )?;
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
            // Read once: hashed for the pins and the miners, then proved with at start.
            let proving = std::fs::read(&proving_key_path)
                .with_context(|| format!("cannot read {}", proving_key_path.display()))?;
            let proving_key_hash = sha256_hex(&proving);
            let verifying_key_hash = key_files::fingerprint(&verifying);
            let id = stored.id.to_hex();
            let pinned = pins.check(
                key_pins::Found {
                    model: &stored.info.name,
                    id: &id,
                    verifying_key: &verifying_key_hash,
                    proving_key: &proving_key_hash,
                },
                made_here,
            )?;
            if pinned == key_pins::Checked::Recorded(key_pins::Origin::FirstUse) {
                tracing::warn!(model = %stored.info.name, "keys found on disk and trusted from now on: this validator did not make them, so make sure whoever did (`sn2 model setup`) is you");
            }
            check_keys_belong_together(
                &stored,
                system.as_ref(),
                &proving,
                verifier.as_ref(),
                &hotkey,
            )?;
            drop(proving);
            tracing::info!(model = %stored.info.name, fingerprint = %verifying_key_hash, "model loaded, its keys checked");
            let record = key_files::provenance(&stored, system.name(), &verifying);
            let provenance = api::provenance(record.as_ref());
            let transcript_path = key_files::transcript_path(&stored, system.name());
            let ceremony = record
                .filter(|r| r.ceremony().is_some() && transcript_path.exists())
                .and_then(|r| {
                    Some(CeremonySummary {
                        transcript: r.transcript?,
                        contributions: r.parties,
                    })
                });
            let transcript_hash = match ceremony {
                Some(_) => Some(
                    crate::fs::sha256_file(&transcript_path)
                        .with_context(|| format!("cannot read {}", transcript_path.display()))?,
                ),
                None => None,
            };
            models.push(ModelEntry {
                verifying_key_hash,
                verifying_key: Bytes::from(verifying),
                transcript_hash,
                transcript: tokio::sync::OnceCell::new(),
                provenance,
                ceremony,
                canonical: tokio::sync::OnceCell::new(),
                proving_key_hash,
                proving_key_path,
                proving_key: tokio::sync::OnceCell::new(),
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
            pace: Mutex::new(Pace::default()),
            pending: Mutex::new(HashSet::new()),
            metrics: Arc::new(Metrics::default()),
            quic: quic::client_endpoint()?,
            http: HttpClient::default(),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            ceremonies: std::sync::OnceLock::new(),
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

    /// The models this validator queries.
    pub fn stored_models(&self) -> Vec<StoredModel> {
        self.models.iter().map(|m| m.stored.clone()).collect()
    }

    /// Offers `ceremonies` on the key server (`/ceremonies`); once only.
    pub fn serve_ceremonies(&self, ceremonies: Arc<ceremony::Ceremonies>) {
        let _ = self.ceremonies.set(ceremonies);
    }

    /// The ceremonies this validator takes part in, once started.
    pub fn ceremonies(&self) -> Option<&Arc<ceremony::Ceremonies>> {
        self.ceremonies.get()
    }

    /// Runs rounds until `shutdown`, one every `round_interval` whatever the miners do;
    /// `on_round` is told after each one (devnet table, systemd status).
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: Shutdown,
        mut on_round: impl FnMut(u64, &Self),
    ) {
        let mut queries = tokio::task::JoinSet::new();
        let mut ticks = tokio::time::interval(self.options.round_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u64.. {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped(&mut shutdown) => break,
            }
            // Reap the queries that ended (they scored themselves).
            while queries.try_join_next().is_some() {}
            self.start_round(round, &mut queries);
            self.settle().await;
            on_round(round, &self);
        }
        // Queries under way are dropped; the scores so far are kept.
        queries.abort_all();
        if let Err(error) = self.scores().save(&self.options.state_dir) {
            tracing::error!(%error, "cannot save scores");
        }
    }

    /// One whole round, for tests and tools: queries a sample, waits for every query (each
    /// ends by its deadline), then saves scores and sets weights.
    pub async fn round(self: &Arc<Self>, round: u64) {
        let mut queries = tokio::task::JoinSet::new();
        self.start_round(round, &mut queries);
        while queries.join_next().await.is_some() {}
        self.settle().await;
    }

    /// Starts a round's queries on `queries`: a sample of the miners not answering an
    /// earlier query, with one model. Each query is scored when its answer is verified (in
    /// a batch with the answers that came meanwhile) or when it fails.
    fn start_round(self: &Arc<Self>, round: u64, queries: &mut tokio::task::JoinSet<()>) {
        let Some(metagraph) = self.metagraph.borrow().metagraph.clone() else {
            tracing::warn!("no metagraph yet; skipping the round");
            return;
        };
        let mut miners: Vec<Neuron> = {
            let pending = self.pending.lock().expect("not poisoned");
            metagraph
                .miners(&self.hotkey.public())
                .into_iter()
                .filter(|n| !pending.contains(&n.hotkey.to_ss58()))
                .cloned()
                .collect()
        };
        shuffle(&mut miners);
        miners.truncate(self.options.sample_size);
        let model = (round as usize) % self.models.len();
        {
            let mut pending = self.pending.lock().expect("not poisoned");
            for miner in &miners {
                pending.insert(miner.hotkey.to_ss58());
            }
        }
        let me = self.clone();
        queries.spawn(async move {
            // If the round is aborted (shutdown), its miners are not left marked busy.
            let _pending: Vec<PendingQuery<'_>> = miners
                .iter()
                .map(|miner| PendingQuery {
                    pending: &me.pending,
                    hotkey: miner.hotkey.to_ss58(),
                })
                .collect();
            me.clone().query_sample(miners.clone(), model).await;
        });
    }

    /// Scores one query as it ends, and keeps its figures for the metrics and the devnet.
    fn record(&self, miner: &Neuron, model: usize, outcome: Outcome) {
        let hotkey = miner.hotkey.to_ss58();
        let verified_score = {
            let mut stats = self.stats.lock().expect("not poisoned");
            let entry = stats.entry(hotkey.clone()).or_default();
            entry.requests += 1;
            match outcome {
                Outcome::Verified { latency_ms, .. } => {
                    entry.verified += 1;
                    entry.latencies_ms.push(latency_ms);
                    if entry.latencies_ms.len() > 200 {
                        entry.latencies_ms.remove(0);
                    }
                    entry.last_error = None;
                    self.metrics.response("ok", Some(latency_ms / 1000.0));
                    self.metrics.proof(true);
                    let model_id = self.models[model].stored.id.to_hex();
                    Some(
                        self.pace
                            .lock()
                            .expect("not poisoned")
                            .score(&model_id, latency_ms),
                    )
                }
                Outcome::Failed { status, reason } => {
                    tracing::info!(miner = %hotkey, uid = miner.uid, status, %reason, "query failed");
                    entry.last_error = Some(format!("{status}: {reason}"));
                    *entry.failures.entry(status).or_default() += 1;
                    self.metrics.response(status, None);
                    if status == "invalid_proof" || status == "wrong_output" {
                        self.metrics.proof(false);
                    }
                    None
                }
            }
        };
        self.scores
            .lock()
            .expect("not poisoned")
            .record(&hotkey, verified_score, now_ms());
    }

    /// The end of a round: forgets hotkeys that left the subnet, saves the scores and sets
    /// weights from every query scored so far.
    async fn settle(&self) {
        let Some(metagraph) = self.metagraph.borrow().metagraph.clone() else {
            return;
        };
        let now = now_ms();
        let weights = {
            let mut scores = self.scores.lock().expect("not poisoned");
            let pruned = scores.prune(&metagraph);
            if pruned > 0 {
                tracing::info!(pruned, "forgot the scores of hotkeys that left the subnet");
                let registered = metagraph.hotkeys_ss58();
                self.stats
                    .lock()
                    .expect("not poisoned")
                    .retain(|hotkey, _| registered.contains(hotkey));
            }
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
                    WeightsOutcome::Committed {
                        block,
                        reveal_block,
                    } => {
                        tracing::info!(
                            block,
                            reveal_block,
                            miners = weights.uids.len(),
                            "weights committed (hash commit-reveal)"
                        )
                    }
                    WeightsOutcome::Timelocked {
                        block,
                        reveal_round,
                    } => {
                        tracing::info!(
                            block,
                            reveal_round,
                            miners = weights.uids.len(),
                            "weights committed, timelocked to a drand round"
                        )
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

    /// The models this validator asks for.
    pub fn model_summaries(&self) -> Vec<ModelSummary> {
        self.models
            .iter()
            .map(|m| ModelSummary {
                id: m.stored.id.to_hex(),
                name: m.stored.info.name.clone(),
                input_shapes: m
                    .stored
                    .info
                    .inputs
                    .iter()
                    .map(|i| i.shape.clone())
                    .collect(),
                input_len: m.stored.model.input_len(),
                output_len: m.stored.model.output_len(),
                verifying_key: m.verifying_key_hash.clone(),
                ceremony: m.ceremony.clone(),
                ceremony_open: (self.ceremonies.get()).and_then(|c| c.open(&m.stored.id.to_hex())),
            })
            .collect()
    }

    /// The index of a model by id or name.
    pub fn find_model(&self, reference: &str) -> Option<usize> {
        self.models
            .iter()
            .position(|m| m.stored.id.to_hex() == reference || m.stored.info.name == reference)
    }

    /// The ceremony transcript of model `index`'s keys, as it was when the validator
    /// started; `None` for a single-party setup.
    pub async fn transcript(&self, index: usize) -> anyhow::Result<Option<Bytes>> {
        let model = &self.models[index];
        let Some(expected) = &model.transcript_hash else {
            return Ok(None);
        };
        let path = key_files::transcript_path(&model.stored, proof::default_backend().name());
        read_once_unchanged(&model.transcript, &path, expected)
            .await
            .map(Some)
    }

    /// The verifying key file of model `index`: the one its proofs are checked against.
    pub fn verifying_key(&self, index: usize) -> Bytes {
        self.models[index].verifying_key.clone()
    }

    /// A user's input to model `index`, sent to the best scoring miners in turn (at most
    /// `attempts`) until one answers with a proof that verifies. Each query is scored like
    /// the validator's own. Never returns an unverified answer: without one, the reasons.
    pub async fn infer(
        &self,
        index: usize,
        input: Vec<i8>,
        attempts: usize,
    ) -> Result<Inference, Vec<String>> {
        let Some(metagraph) = self.metagraph.borrow().metagraph.clone() else {
            return Err(vec!["the validator has no metagraph yet".into()]);
        };
        let now = now_ms();
        let mut miners: Vec<(f64, Neuron)> = {
            let scores = self.scores.lock().expect("not poisoned");
            metagraph
                .miners(&self.hotkey.public())
                .into_iter()
                .map(|n| (scores.current(&n.hotkey.to_ss58(), now), n.clone()))
                .collect()
        };
        miners.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut reasons = Vec::new();
        for (_, miner) in miners.into_iter().take(attempts.max(1)) {
            let outcome = self.query_with(&miner, index, input.clone()).await;
            let verified = match &outcome {
                Outcome::Verified { latency_ms, answer } => Some((*latency_ms, answer.clone())),
                Outcome::Failed { status, reason } => {
                    reasons.push(format!("{}: {status}: {reason}", miner.hotkey));
                    None
                }
            };
            self.record(&miner, index, outcome);
            if let Some((latency_ms, answer)) = verified {
                return Ok(Inference {
                    answer,
                    model: self.models[index].stored.id,
                    verifying_key: self.models[index].verifying_key_hash.clone(),
                    provenance: self.models[index].provenance.clone(),
                    miner: miner.hotkey.to_ss58(),
                    latency_ms,
                });
            }
        }
        if reasons.is_empty() {
            reasons.push("no miner serves an axon".into());
        }
        Err(reasons)
    }

    async fn query_with(&self, miner: &Neuron, model: usize, input: Vec<i8>) -> Outcome {
        match self.ask(miner, model, input).await {
            Ok(asked) => {
                let verified = asked
                    .proof
                    .as_ref()
                    .map_err(|e| e.clone())
                    .and_then(|proof| {
                        self.models[model]
                            .verifier
                            .verify(&asked.statement, proof)
                            .map_err(|e| e.to_string())
                    });
                asked.outcome(verified, &self.models[model].stored.model)
            }
            Err(failed) => failed,
        }
    }

    /// Sends one query and takes its answer, not yet verified.
    async fn ask(&self, miner: &Neuron, model: usize, input: Vec<i8>) -> Result<Asked, Outcome> {
        let entry = &self.models[model];
        let Some(address) = miner.axon else {
            return Err(Outcome::Failed {
                status: "no_axon",
                reason: "the miner serves no axon".into(),
            });
        };
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let request = Request::Prove(ProveRequest {
            model: entry.stored.id.to_hex(),
            input: input.clone(),
            nonce: hex::encode(nonce),
            proving_key: entry.proving_key_hash.clone(),
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
                return Err(Outcome::Failed {
                    status: "timeout",
                    reason: format!(
                        "no answer within {} s",
                        self.options.request_timeout.as_secs_f64()
                    ),
                });
            }
            Ok(Err(error)) => {
                return Err(Outcome::Failed {
                    status: error.label(),
                    reason: error.to_string(),
                });
            }
            Ok(Ok(response)) => response,
        };
        let Response::Proved(proved) = response else {
            return Err(Outcome::Failed {
                status: "bad_response",
                reason: "an answer that is not a proof".into(),
            });
        };
        Ok(Asked {
            proof: proof::file::decode_proof(&proved.proof).map_err(|e| e.to_string()),
            statement: Statement {
                input: input.clone(),
                output: proved.output.clone(),
                binding: Binding::new(&entry.stored.id, &miner.hotkey, &nonce),
            },
            latency_ms,
            answer: Answer {
                input,
                output: proved.output,
                proof: proved.proof,
                nonce: hex::encode(nonce),
            },
        })
    }

    /// Queries a round's sample for one model and scores each query as its answer comes:
    /// the answers that arrive while a batch is being verified are verified together next,
    /// so a busy round verifies in batches and a silent miner holds up no one.
    async fn query_sample(self: Arc<Self>, miners: Vec<Neuron>, model: usize) {
        let mut asking = tokio::task::JoinSet::new();
        for miner in miners {
            let me = self.clone();
            asking.spawn(async move {
                let input = me.random_input(model);
                let asked = me.ask(&miner, model, input).await;
                (miner, asked)
            });
        }
        while let Some(first) = asking.join_next().await {
            let mut ready = vec![first];
            while let Some(more) = asking.try_join_next() {
                ready.push(more);
            }
            let mut answered = Vec::new();
            for joined in ready {
                match joined {
                    Ok((miner, Ok(asked))) => answered.push((miner, asked)),
                    Ok((miner, Err(outcome))) => self.record(&miner, model, outcome),
                    Err(error) => tracing::error!(%error, "a query task failed"),
                }
            }
            if answered.is_empty() {
                continue;
            }
            // Verifying, and evaluating the model for a refused proof, is CPU work: off
            // the runtime's threads.
            let me = self.clone();
            let outcomes = tokio::task::spawn_blocking(move || {
                let verdicts = me.verify_answers(model, &answered);
                let model_of = &me.models[model].stored.model;
                answered
                    .into_iter()
                    .zip(verdicts)
                    .map(|((miner, asked), verdict)| (miner, asked.outcome(verdict, model_of)))
                    .collect::<Vec<_>>()
            })
            .await;
            match outcomes {
                Ok(outcomes) => {
                    for (miner, outcome) in outcomes {
                        self.record(&miner, model, outcome);
                    }
                }
                Err(error) => tracing::error!(%error, "verifying a batch of proofs failed"),
            }
        }
    }

    /// One verdict per answer: the decodable proofs are checked in one batch, which names
    /// each false one.
    fn verify_answers(
        &self,
        model: usize,
        answered: &[(Neuron, Asked)],
    ) -> Vec<Result<(), String>> {
        let claims: Vec<(&Statement, &[u8])> = answered
            .iter()
            .filter_map(|(_, asked)| {
                Some((&asked.statement, asked.proof.as_ref().ok()?.as_slice()))
            })
            .collect();
        let mut batch = self.models[model]
            .verifier
            .verify_batch(&claims)
            .into_iter();
        answered
            .iter()
            .map(|(_, asked)| match &asked.proof {
                Err(reason) => Err(reason.clone()),
                Ok(_) => batch
                    .next()
                    .expect("one verdict per decodable proof")
                    .map_err(|e| e.to_string()),
            })
            .collect()
    }

    fn random_input(&self, model: usize) -> Vec<i8> {
        let mut input = vec![0u8; self.models[model].stored.model.input_len()];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut input);
        input.into_iter().map(|b| b as i8).collect()
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

    /// Binds `address`; the returned future serves `/metrics`, `/health`,
    /// `/keys/<sha256>` (proving keys) and `/keys/<sha256>/transcript` (the ceremony
    /// transcript that made one), `/models` (what this validator asks for),
    /// `/models/<id>` (canonical model files) and, when it takes part in ceremonies,
    /// `/ceremonies` and `/ceremonies/<id>` (its transcripts) until `shutdown`. Once this returns, miners
    /// can fetch keys and models.
    pub async fn listen_http(
        self: Arc<Self>,
        address: SocketAddr,
        shutdown: Shutdown,
    ) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on tcp/{address}"))?;
        tracing::info!(%address, "serving metrics, health and proving keys");
        let metrics = self.metrics.clone();
        Ok(wire_http::serve(
            listener,
            wire_http::Limits::new(0),
            Arc::new(move |reason, peer| metrics.refused(reason, &peer)),
            move |parts, _body| {
                let me = self.clone();
                async move { me.handle_http(parts).await }
            },
            shutdown,
        ))
    }

    async fn handle_http(&self, parts: Parts) -> HttpResponse {
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
        if let Some(hash) = path
            .strip_prefix("/keys/")
            .and_then(|rest| rest.strip_suffix("/transcript"))
            && let Some(index) = self.models.iter().position(|m| m.proving_key_hash == hash)
        {
            return match self.transcript(index).await {
                Ok(Some(bytes)) => text_response(200, "application/octet-stream", bytes),
                Ok(None) => text_response(
                    404,
                    "text/plain",
                    format!(
                        "proving key {hash} comes from this validator's own setup, not from a ceremony: it has no transcript\n"
                    ),
                ),
                Err(error) => keys_unreadable(&error, "transcript"),
            };
        }
        if let Some(hash) = path.strip_prefix("/keys/")
            && let Some(entry) = self.models.iter().find(|m| m.proving_key_hash == hash)
        {
            return match self.proving_key(entry).await {
                Ok(bytes) => text_response(200, "application/octet-stream", bytes),
                Err(error) => keys_unreadable(&error, "proving key"),
            };
        }
        if let Some(response) = self.ceremonies.get().and_then(|c| c.handle(path)) {
            return response;
        }
        if path == "/models" {
            let models: Vec<serde_json::Value> = self
                .models
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "id": m.stored.id.to_hex(),
                        "name": m.stored.info.name,
                        "inputs": m.stored.info.inputs.iter().map(|i| &i.shape).collect::<Vec<_>>(),
                        "input_len": m.stored.model.input_len(),
                        "output_len": m.stored.model.output_len(),
                        "verifying_key": m.verifying_key_hash,
                        "proving_key": m.proving_key_hash,
                    })
                })
                .collect();
            let body = serde_json::json!({ "models": models });
            return text_response(200, "application/json", body.to_string());
        }
        if let Some(id) = path.strip_prefix("/models/")
            && let Some(index) = self.models.iter().position(|m| m.stored.id.to_hex() == id)
        {
            return match self.canonical_model(index).await {
                Ok(bytes) => text_response(200, "application/octet-stream", bytes),
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "cannot serve a model");
                    text_response(500, "text/plain", "cannot read the model\n")
                }
            };
        }
        text_response(404, "text/plain", "not found\n")
    }

    /// A model's canonical file, read from disk (on a blocking thread) by its first reader,
    /// checked against its id, and shared by all later ones.
    pub async fn canonical_model(&self, index: usize) -> anyhow::Result<Bytes> {
        let entry = &self.models[index];
        let store = crate::model::ModelStore::new(
            entry
                .stored
                .dir
                .parent()
                .unwrap_or(std::path::Path::new(".")),
        );
        let id = entry.stored.id;
        entry
            .canonical
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || store.canonical(&id))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .map(Bytes::from)
                    .map_err(anyhow::Error::from)
            })
            .await
            .cloned()
    }

    /// A model's proving key, read from disk (on a blocking thread) by its first reader
    /// and shared by all later ones. A file changed since start-up is refused, not served
    /// under the old hash.
    async fn proving_key(&self, entry: &ModelEntry) -> anyhow::Result<Bytes> {
        read_once_unchanged(
            &entry.proving_key,
            &entry.proving_key_path,
            &entry.proving_key_hash,
        )
        .await
    }
}

/// The file at `path`, read (on a blocking thread) by the first caller into `cell` and
/// shared by all later ones, so a key server's memory does not grow with its readers; a
/// file whose SHA-256 is no longer `expected` (new keys installed since start) is
/// [`KeysChanged`], never served under the old hash.
async fn read_once_unchanged(
    cell: &tokio::sync::OnceCell<Bytes>,
    path: &Path,
    expected: &str,
) -> anyhow::Result<Bytes> {
    cell.get_or_try_init(|| async {
        let read = path.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(read))
            .await?
            .with_context(|| format!("cannot read {}", path.display()))?;
        if sha256_hex(&bytes) != expected {
            return Err(anyhow::Error::new(KeysChanged(path.to_path_buf())));
        }
        Ok(Bytes::from(bytes))
    })
    .await
    .cloned()
}

/// The key server's answer when a key or transcript cannot be served: 503 while new keys
/// wait for the restart, else 500 (logged).
fn keys_unreadable(error: &anyhow::Error, what: &str) -> HttpResponse {
    if let Some(changed) = error.downcast_ref::<KeysChanged>() {
        tracing::warn!(%changed, "not serving a {what}");
        return text_response(503, "text/plain", format!("{changed}\n"));
    }
    tracing::error!(error = %format!("{error:#}"), "cannot serve a {what}");
    text_response(500, "text/plain", format!("cannot read the {what}\n"))
}

/// Proves one random input with the model's proving key and verifies the proof with its
/// verifying key: a pair that does not belong together, or keys of another circuit (a
/// model that differs by one weight), fail here, at start, instead of failing every miner.
fn check_keys_belong_together(
    stored: &StoredModel,
    system: &dyn proof::ProofSystem,
    proving: &[u8],
    verifier: &dyn Verifier,
    hotkey: &Hotkey,
) -> anyhow::Result<()> {
    let name = &stored.info.name;
    let payload = key_files::decode(
        proving,
        key_files::KeyKind::Proving,
        system.name(),
        &stored.id,
    )?;
    let prover = system.prover(Arc::new(stored.model.clone()), payload)?;
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let binding = Binding::new(&stored.id, &hotkey.public(), &nonce);
    let (statement, proof) = prover
        .prove_random_input(&stored.model, binding)
        .with_context(|| format!("model `{name}`: its proving key cannot prove its circuit"))?;
    verifier.verify(&statement, &proof).map_err(|error| {
        anyhow::anyhow!(
            "model `{name}` ({}): a proof made with its proving key does not verify with its verifying key ({error}); \
             the two keys are not one pair for this model. Make new keys with `sn2 model setup {}`",
            stored.id,
            stored.id
        )
    })
}

/// Fisher–Yates with the OS's randomness: which miners are sampled must not be predictable.
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (rand_core::RngCore::next_u64(&mut rand_core::OsRng) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
