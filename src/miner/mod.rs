//! The miner (`sn2-miner`): serves proofs of inference over QUIC and HTTP.
//!
//! Only validators with a permit and enough stake (from the metagraph) get work; every
//! request is authenticated (QUIC handshake or Epistula), fresh (timestamp window) and
//! unique (replay cache), and every response is signed. Proving runs on blocking threads,
//! at most `max_concurrent_proofs` at once; further requests are answered `busy` at once.
//! Proving keys come from the validator that made them: fetched by their SHA-256, which
//! the validator's signed request names, from the address that validator announced (its
//! axon on chain, or its entry in the local configuration), never from an address a
//! request names; one download per key, with a deadline, before a proving slot is taken;
//! cached on disk by hash. With `[miner] ptau`, a key is taken only from a ceremony: the
//! miner fetches the key's transcript instead (`/keys/<sha256>/transcript`), verifies it
//! against its own powers of tau and the model's circuit, and makes the key from it, so
//! that its proofs convince whoever trusts one contributor. Models travel the same way: a request for a model the miner
//! lacks fetches its canonical file from that validator (`/models/<id>`), checked against
//! the id (its SHA-256), and keeps it in a cache with a byte limit (`cache.rs`);
//! `[miner] models` can pin the ids it serves. Every refusal is counted by reason
//! (`sn2_refused_total`).

mod cache;
mod flight;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::chain::Metagraph;
use crate::keys::{Hotkey, PublicKey};
use crate::metrics::Metrics;
use crate::model::{ModelId, ModelStore};
use crate::proof::groth16::{self, ceremony::CONTRIBUTION_BYTES};
use crate::proof::ptau::{Ptau, PtauFile};
use crate::proof::{self, Binding, Prover, keys as key_files};
use crate::wire::auth::{ReplayCache, sha256_hex};
use crate::wire::http::HttpClient;
use crate::wire::{
    ErrorCode, ProveRequest, ProveResponse, Request, Response, ServedModel, WireError,
};

/// How a miner answers. Anything but `Honest` exists for the devnet and tests, to show
/// that validators catch cheats; the daemon is always honest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Claims an output one off from the true one (with the true output's proof).
    WrongOutput,
    /// Returns random bytes as the proof.
    ForgedProof,
}

#[derive(Debug, Clone)]
pub struct MinerOptions {
    pub max_concurrent_proofs: usize,
    pub max_key_bytes: usize,
    /// How long one proving-key download may take, all of it.
    pub key_fetch_timeout: std::time::Duration,
    /// What a connection may take: deadlines, caps, and the largest request (an HTTP
    /// body or a QUIC frame).
    pub limits: crate::wire::http::Limits,
    pub min_validator_stake: f64,
    pub behaviour: Behaviour,
    pub fetch: ModelFetch,
}

/// How a miner gets models it lacks, and how much of them it keeps.
#[derive(Debug, Clone)]
pub struct ModelFetch {
    /// The largest canonical model file fetched.
    pub max_model_bytes: usize,
    /// Bytes of fetched models, with their keys, kept on disk.
    pub cache_bytes: u64,
    /// The only models served (and fetched); empty: any that a permitted validator asks for.
    pub allowed: Vec<ModelId>,
    /// Bytes of proving keys whose provers are kept in memory; past it the least recently
    /// used prover is dropped (and loaded from disk again when asked for).
    pub prover_memory_bytes: u64,
    /// Powers of tau (a snarkjs `.ptau` prepared for phase 2): when set, a proving key is
    /// taken only as the key of a ceremony transcript that verifies against them and the
    /// model's circuit, made here from that transcript (`[miner] ptau`).
    pub ceremony_ptau: Option<std::path::PathBuf>,
}

impl Default for ModelFetch {
    fn default() -> Self {
        Self {
            max_model_bytes: 64 << 20,
            cache_bytes: 4 << 30,
            allowed: Vec::new(),
            prover_memory_bytes: 4 << 30,
            ceremony_ptau: None,
        }
    }
}

impl MinerOptions {
    pub fn from_config(config: &crate::config::MinerConfig) -> Self {
        Self {
            max_concurrent_proofs: config.max_concurrent_proofs.get(),
            max_key_bytes: config.max_key_bytes.get(),
            key_fetch_timeout: config.key_fetch_timeout_secs.duration(),
            limits: crate::wire::http::Limits::new(config.max_request_bytes.get()),
            min_validator_stake: config.min_validator_stake,
            behaviour: Behaviour::Honest,
            fetch: ModelFetch {
                max_model_bytes: config.max_model_bytes.get(),
                cache_bytes: config.model_cache_bytes.get() as u64,
                allowed: config
                    .models
                    .iter()
                    .filter_map(|id| ModelId::from_hex(id))
                    .collect(),
                prover_memory_bytes: config.prover_memory_bytes.get() as u64,
                ceremony_ptau: config.ptau.clone(),
            },
        }
    }
}

/// A running miner's shared state.
pub struct Miner {
    hotkey: Hotkey,
    ss58: String,
    store: ModelStore,
    metagraph: RwLock<Metagraph>,
    options: MinerOptions,
    /// Provers by proving-key hash, with the model each key belongs to.
    provers: Mutex<HashMap<String, KeyedProver>>,
    /// Models already loaded (and checked against their ids), so a request costs no disk.
    models: Mutex<HashMap<ModelId, Arc<StoredModel>>>,
    permits: Arc<Semaphore>,
    replay: ReplayCache,
    http: HttpClient,
    /// Proving keys and models being fetched, each once at a time.
    fetching_keys: flight::SingleFlight<String, Arc<dyn Prover>>,
    fetching_models: flight::SingleFlight<ModelId, Arc<StoredModel>>,
    /// The models fetched by id, for the cache's byte limit.
    fetched: cache::FetchedModels,
    /// The provers in memory, by proving-key hash, counted by their keys' bytes.
    loaded: cache::ByteLru<String>,
    metrics: Arc<Metrics>,
    /// QUIC handshakes per source address in the current minute.
    handshakes: Mutex<HashMap<std::net::IpAddr, (u64, u32)>>,
    /// KiB of large HTTP bodies being read at once (see [`Miner::admit_body`]).
    large_bodies: Arc<Semaphore>,
    /// `fetch.ceremony_ptau`, read and checked as far as the models checked against it
    /// need.
    ceremony_ptau: Option<Arc<PtauFile>>,
}

/// HTTP bodies up to this size are read without counting against the budget of large
/// bodies: every honest prove request is far smaller, and 1024 connections of this size
/// cost 64 MiB at most.
pub const SMALL_BODY_BYTES: u64 = 64 * 1024;

type FetchResult = Result<Arc<dyn Prover>, WireError>;
type StoredModel = crate::model::StoredModel;
/// A loaded proving key and the model it belongs to.
type KeyedProver = (ModelId, Arc<dyn Prover>);

/// QUIC handshakes one address may start per minute (checking a handshake costs a
/// signature verification; a flood of them must not cost more).
pub const MAX_HANDSHAKES_PER_MINUTE: u32 = 30;

impl Miner {
    pub fn new(
        hotkey: Hotkey,
        store: ModelStore,
        metagraph: Metagraph,
        options: MinerOptions,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let large_bodies_kib = (options.limits.max_body / 1024).max(1) * 4;
        let fetched = cache::FetchedModels::new(options.fetch.cache_bytes, store.fetched());
        let loaded = cache::ByteLru::new(options.fetch.prover_memory_bytes, Vec::new());
        let ceremony_ptau =
            (options.fetch.ceremony_ptau.as_ref()).map(|path| Arc::new(PtauFile::new(path)));
        Arc::new(Self {
            ss58: hotkey.ss58(),
            hotkey,
            store,
            metagraph: RwLock::new(metagraph),
            permits: Arc::new(Semaphore::new(options.max_concurrent_proofs.max(1))),
            options,
            provers: Mutex::new(HashMap::new()),
            models: Mutex::new(HashMap::new()),
            replay: ReplayCache::default(),
            http: HttpClient::default(),
            fetching_keys: Default::default(),
            fetching_models: Default::default(),
            fetched,
            loaded,
            metrics,
            handshakes: Mutex::new(HashMap::new()),
            large_bodies: Arc::new(Semaphore::new(large_bodies_kib)),
            ceremony_ptau,
        })
    }

    /// Admits an HTTP body of `declared` bytes before it is read. A body's signature can
    /// only be checked once all of it has arrived, and naming a permitted validator in
    /// the headers costs nothing; so large bodies share a budget of four times the
    /// largest request, and past it the answer is `busy`. Honest requests are small and
    /// never wait on it.
    fn admit_body(&self, declared: u64) -> Result<Option<OwnedSemaphorePermit>, WireError> {
        if declared <= SMALL_BODY_BYTES {
            return Ok(None);
        }
        let kib = u32::try_from(declared.div_ceil(1024)).unwrap_or(u32::MAX);
        self.large_bodies
            .clone()
            .try_acquire_many_owned(kib)
            .map(Some)
            .map_err(|_| {
                WireError::new(
                    ErrorCode::Busy,
                    "too many large requests are arriving at once; try again shortly",
                )
            })
    }

    /// Counts (and, rate-limited, logs) a refusal.
    fn refused(&self, error: &WireError) {
        self.metrics.refused(error.code.as_str(), error);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Counts a handshake from `address`, refusing it past the per-minute limit.
    fn admit_handshake(&self, address: std::net::IpAddr) -> Result<(), WireError> {
        let now = crate::wire::now_ms();
        let minute = now / 60_000;
        let mut handshakes = self.handshakes.lock().expect("not poisoned");
        if handshakes.len() > 10_000 {
            handshakes.retain(|_, (window, _)| *window == minute);
        }
        let entry = handshakes.entry(address).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        if entry.1 > MAX_HANDSHAKES_PER_MINUTE {
            return Err(WireError::new(
                ErrorCode::Busy,
                format!(
                    "more than {MAX_HANDSHAKES_PER_MINUTE} handshakes from {address} this minute; try again later"
                ),
            ));
        }
        Ok(())
    }

    pub fn hotkey(&self) -> &Hotkey {
        &self.hotkey
    }

    /// Replaces the metagraph (after a chain sync).
    pub fn set_metagraph(&self, metagraph: Metagraph) {
        *self.metagraph.write().expect("not poisoned") = metagraph;
    }

    /// Binds QUIC (UDP) and HTTP (TCP) on `address`; the returned future serves until
    /// `shutdown`. Once this returns, the miner is reachable.
    pub async fn listen(
        self: Arc<Self>,
        address: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        transport::listen(self, address, shutdown).await
    }

    fn authorize(&self, validator: &PublicKey) -> Result<(), WireError> {
        let metagraph = self.metagraph.read().expect("not poisoned");
        if metagraph.may_validate(validator, self.options.min_validator_stake) {
            return Ok(());
        }
        let reason = match metagraph.by_hotkey(validator) {
            None => "is not registered on the subnet".to_string(),
            Some(n) if !n.validator_permit => "has no validator permit".to_string(),
            Some(n) => format!(
                "has {} TAO staked; {} are needed",
                n.stake, self.options.min_validator_stake
            ),
        };
        Err(WireError::new(
            ErrorCode::UnknownHotkey,
            format!("{validator} {reason}"),
        ))
    }

    /// The public answer to `GET /health`.
    pub fn health(&self) -> Response {
        Response::Health {
            hotkey: self.ss58.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Answers the bytes of an authenticated request from `validator`, whichever transport
    /// carried them.
    pub async fn answer(self: &Arc<Self>, request: &[u8], validator: &PublicKey) -> Response {
        match serde_json::from_slice::<Request>(request) {
            Ok(request) => self.handle(request, validator).await,
            Err(e) => {
                let error = WireError::new(ErrorCode::MalformedRequest, e.to_string());
                self.refused(&error);
                Response::Error(error.body())
            }
        }
    }

    /// Answers an authenticated request from `validator`.
    pub async fn handle(self: &Arc<Self>, request: Request, validator: &PublicKey) -> Response {
        match request {
            Request::Health => self.health(),
            Request::Models => Response::Models {
                models: self
                    .store
                    .list()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| ServedModel {
                        id: m.id.to_hex(),
                        name: m.info.name.clone(),
                        input_len: m.model.input_len(),
                        output_len: m.model.output_len(),
                    })
                    .collect(),
            },
            Request::Prove(prove) => match self.prove(prove, validator).await {
                Ok(proved) => Response::Proved(proved),
                Err(error) => {
                    self.refused(&error);
                    Response::Error(error.body())
                }
            },
        }
    }

    async fn prove(
        self: &Arc<Self>,
        request: ProveRequest,
        validator: &PublicKey,
    ) -> Result<ProveResponse, WireError> {
        let malformed = |m: String| WireError::new(ErrorCode::MalformedRequest, m);
        let model_id = ModelId::from_hex(&request.model)
            .ok_or_else(|| malformed("`model` is not a model id".into()))?;
        let nonce: [u8; 32] = hex::decode(&request.nonce)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("`nonce` is not 32 bytes of hex".into()))?;
        if !valid_sha256(&request.proving_key) {
            return Err(malformed("`proving_key` is not a SHA-256".into()));
        }
        // The model and the key first: a slow download must not hold a proving slot.
        let stored = self.model_for(&model_id, validator).await?;
        if request.input.len() != stored.model.input_len() {
            return Err(malformed(format!(
                "the input has {} values; the model takes {}",
                request.input.len(),
                stored.model.input_len()
            )));
        }
        self.replay
            .check_and_insert(&format!("prove:{}", request.nonce))?;
        let prover = self
            .prover_for(&stored, &request.proving_key, validator)
            .await?;
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            WireError::new(
                ErrorCode::Busy,
                "all proving slots are taken; try again later",
            )
        })?;
        let binding = Binding::new(&model_id, &self.hotkey.public(), &nonce);
        let input = request.input;
        let started = Instant::now();
        let proven = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            prover.prove(&input, &binding)
        })
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, format!("the prover stopped: {e}")))?
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
        let prove_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (mut output, mut proof) = (proven.output, proven.proof);
        match self.options.behaviour {
            Behaviour::Honest => {}
            Behaviour::WrongOutput => output[0] = output[0].wrapping_add(1),
            Behaviour::ForgedProof => {
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut proof)
            }
        }
        Ok(ProveResponse {
            output,
            proof: proof::ProofFile::encode_proof(&proof),
            prove_ms,
        })
    }

    /// A served model: from memory, from the models directory, or fetched from the
    /// validator that asks for it.
    async fn model_for(
        self: &Arc<Self>,
        id: &ModelId,
        validator: &PublicKey,
    ) -> Result<Arc<StoredModel>, WireError> {
        let allowed = &self.options.fetch.allowed;
        if !allowed.is_empty() && !allowed.contains(id) {
            return Err(WireError::new(
                ErrorCode::UnknownModel,
                format!("this miner serves only the models of its allowlist, not {id}"),
            ));
        }
        self.fetched.touch(id);
        if let Some(stored) = self.models.lock().expect("not poisoned").get(id) {
            return Ok(stored.clone());
        }
        let (me, id, validator) = (self.clone(), *id, *validator);
        self.fetching_models
            .run(id, async move {
                let stored = match me.store.load(&id) {
                    Ok(stored) => stored,
                    Err(_) => me.fetch_model(&id, &validator).await?,
                };
                let stored = Arc::new(stored);
                me.models
                    .lock()
                    .expect("not poisoned")
                    .insert(id, stored.clone());
                Ok(stored)
            })
            .await
    }

    /// Where `validator` serves its keys and models: the address it announced.
    fn key_server(
        &self,
        validator: &PublicKey,
        what: &str,
        code: ErrorCode,
    ) -> Result<SocketAddr, WireError> {
        self.metagraph
            .read()
            .expect("not poisoned")
            .by_hotkey(validator)
            .and_then(|n| n.axon)
            .ok_or_else(|| {
                WireError::new(
                    code,
                    format!(
                        "no {what} here, and validator {validator} announced no address to fetch it from"
                    ),
                )
            })
    }

    /// Downloads `url` within the fetch deadline and `limit` bytes.
    async fn download(
        &self,
        url: &str,
        limit: usize,
        code: ErrorCode,
    ) -> Result<Vec<u8>, WireError> {
        let download = self.http.get(url, limit);
        let bytes = tokio::time::timeout(self.options.key_fetch_timeout, download)
            .await
            .map_err(|_| {
                WireError::new(
                    code,
                    format!(
                        "fetching {url} took longer than {} s",
                        self.options.key_fetch_timeout.as_secs()
                    ),
                )
            })?
            .map_err(|e| WireError::new(code, format!("cannot fetch {url}: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// Fetches a model's canonical file from `validator`, checks it against its id and
    /// keeps it; a file that does not hash to its id is refused, logged and not kept.
    async fn fetch_model(
        &self,
        id: &ModelId,
        validator: &PublicKey,
    ) -> Result<StoredModel, WireError> {
        let address =
            self.key_server(validator, &format!("model {id}"), ErrorCode::UnknownModel)?;
        let url = format!("http://{address}/models/{id}");
        tracing::info!(%url, "fetching a model");
        let bytes = self
            .download(
                &url,
                self.options.fetch.max_model_bytes,
                ErrorCode::UnknownModel,
            )
            .await?;
        if ModelId::of(&bytes) != *id {
            let error = format!("{url} served bytes whose SHA-256 is not the model's id");
            tracing::warn!(%validator, "{error}; refused");
            return Err(WireError::new(ErrorCode::UnknownModel, error));
        }
        let (store, id_copy, origin) = (self.store.clone(), *id, format!("{validator} at {url}"));
        let stored = tokio::task::spawn_blocking(move || {
            store.add_canonical(&id_copy, &bytes, "", &origin)
        })
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| {
            tracing::warn!(%validator, %url, error = %e, "a fetched model is unusable; refused");
            WireError::new(
                ErrorCode::UnknownModel,
                format!("the model from {url} is unusable: {e}"),
            )
        })?;
        self.account(&stored);
        Ok(stored)
    }

    /// Counts a fetched model's bytes against the cache and evicts the least recently used.
    fn account(&self, stored: &StoredModel) {
        if !self.store.is_fetched(&stored.id) {
            return;
        }
        let bytes = crate::model::store::dir_bytes(&stored.dir);
        for victim in self.fetched.record(stored.id, bytes) {
            self.models.lock().expect("not poisoned").remove(&victim);
            self.provers
                .lock()
                .expect("not poisoned")
                .retain(|hash, (model, _)| {
                    let keep = *model != victim;
                    if !keep {
                        self.loaded.forget(hash);
                    }
                    keep
                });
            match self.store.remove_fetched(&victim) {
                Ok(()) => tracing::info!(model = %victim, "evicted from the model cache"),
                Err(error) => {
                    tracing::warn!(model = %victim, %error, "cannot evict a cached model")
                }
            }
        }
    }

    /// The prover for a model and a validator's proving key (by its SHA-256): from memory,
    /// from the disk cache, or fetched from the validator's announced address.
    async fn prover_for(
        self: &Arc<Self>,
        stored: &Arc<StoredModel>,
        key_hash: &str,
        validator: &PublicKey,
    ) -> FetchResult {
        let key_hash = key_hash.to_ascii_lowercase();
        let known = |me: &Self| {
            me.provers
                .lock()
                .expect("not poisoned")
                .get(&key_hash)
                .cloned()
        };
        let belongs = |(model, prover): KeyedProver| {
            if model == stored.id {
                Ok(prover)
            } else {
                Err(WireError::new(
                    ErrorCode::UnknownKey,
                    format!(
                        "proving key {key_hash} belongs to model {model}, not {}",
                        stored.id
                    ),
                ))
            }
        };
        if let Some(found) = known(self) {
            self.loaded.touch(&key_hash);
            return belongs(found);
        }
        let (me, model, validator, hash) =
            (self.clone(), stored.clone(), *validator, key_hash.clone());
        self.fetching_keys
            .run(key_hash.clone(), async move {
                // A fetch may have ended since the look above.
                if let Some((_, prover)) = me.provers.lock().expect("not poisoned").get(&hash) {
                    return Ok(prover.clone());
                }
                let (prover, key_bytes) = me.load_or_fetch(&model, &hash, &validator).await?;
                {
                    let mut provers = me.provers.lock().expect("not poisoned");
                    provers.insert(hash.clone(), (model.id, prover.clone()));
                    for victim in me.loaded.record(hash, key_bytes) {
                        provers.remove(&victim);
                        tracing::info!(proving_key = %victim, "dropped a prover from memory (prover_memory_bytes)");
                    }
                }
                me.account(&model);
                Ok(prover)
            })
            .await
            .and_then(|prover| belongs((stored.id, prover)))
    }

    /// The prover of a proving key (by hash) from the disk cache, or fetched; with the key's
    /// size, which is what it is counted as in memory.
    async fn load_or_fetch(
        &self,
        stored: &StoredModel,
        key_hash: &str,
        validator: &PublicKey,
    ) -> Result<(Arc<dyn Prover>, u64), WireError> {
        let cached = stored.keys_dir().join(format!("{key_hash}.pk"));
        // With powers of tau, only a key whose transcript was verified here is taken; the
        // transcript is kept once verified, so a key cached without one was not.
        let verified_before = self.options.fetch.ceremony_ptau.is_none()
            || transcript_beside(stored, key_hash).exists();
        let bytes = match std::fs::read(&cached) {
            Ok(bytes) if sha256_hex(&bytes) == key_hash && verified_before => bytes,
            _ => {
                let bytes = if self.options.fetch.ceremony_ptau.is_some() {
                    self.key_from_ceremony(stored, key_hash, validator).await?
                } else {
                    self.fetch_key(stored, key_hash, validator).await?
                };
                if let Err(error) = crate::fs::write_atomic(&cached, &bytes, 0o644) {
                    tracing::warn!(%error, path = %cached.display(), "cannot cache a proving key");
                }
                bytes
            }
        };
        let key_bytes = bytes.len() as u64;
        let system = proof::default_backend();
        let model = Arc::new(stored.model.clone());
        let id = stored.id;
        let prover =
            tokio::task::spawn_blocking(move || -> Result<Box<dyn Prover>, proof::ProofError> {
                let payload =
                    key_files::decode(&bytes, key_files::KeyKind::Proving, system.name(), &id)?;
                system.prover(model, payload)
            })
            .await
            .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| {
                WireError::new(
                    ErrorCode::UnknownKey,
                    format!("the proving key is unusable: {e}"),
                )
            })?;
        Ok((Arc::from(prover), key_bytes))
    }

    /// A validator's proving key (by hash), downloaded from its announced address.
    async fn fetch_key(
        &self,
        stored: &StoredModel,
        key_hash: &str,
        validator: &PublicKey,
    ) -> Result<Vec<u8>, WireError> {
        let address = self.key_server(
            validator,
            &format!("proving key {key_hash}"),
            ErrorCode::UnknownKey,
        )?;
        let url = format!("http://{address}/keys/{key_hash}");
        tracing::info!(%url, model = %stored.id, "fetching a proving key");
        let bytes = self
            .download(&url, self.options.max_key_bytes, ErrorCode::UnknownKey)
            .await?;
        if sha256_hex(&bytes) != key_hash {
            return Err(WireError::new(
                ErrorCode::UnknownKey,
                format!("{url} served a key with another hash"),
            ));
        }
        Ok(bytes)
    }

    /// With `[miner] ptau`: a validator's proving key (by hash) made here from the
    /// ceremony transcript the validator serves beside it, once the transcript verifies
    /// against the powers of tau and the model's circuit, holds a contribution, and makes
    /// exactly the key named. The key itself is never downloaded. The transcript is kept
    /// beside the key, and what it proved is logged.
    async fn key_from_ceremony(
        &self,
        stored: &StoredModel,
        key_hash: &str,
        validator: &PublicKey,
    ) -> Result<Vec<u8>, WireError> {
        let refused = |why: String| WireError::new(ErrorCode::UnknownKey, why);
        let Some(ptau) = self.ceremony_ptau.clone() else {
            return Err(refused(
                "no powers of tau are configured ([miner] ptau)".into(),
            ));
        };
        let address = self.key_server(
            validator,
            &format!("proving key {key_hash}"),
            ErrorCode::UnknownKey,
        )?;
        let url = format!("http://{address}/keys/{key_hash}/transcript");
        tracing::info!(%url, model = %stored.id, "fetching a proving key's ceremony transcript");
        // A transcript is the key and its contributions; no subnet has this many validators.
        let limit = self
            .options
            .max_key_bytes
            .saturating_add(MAX_TRANSCRIPT_CONTRIBUTIONS * CONTRIBUTION_BYTES);
        let transcript_bytes = self
            .download(&url, limit, ErrorCode::UnknownKey)
            .await
            .map_err(|e| {
                refused(format!(
                    "{}; this miner takes only proving keys whose ceremony transcript it verifies ([miner] ptau), and a validator whose keys come from its own setup has none",
                    e.message
                ))
            })?;
        let (id, model, hash) = (stored.id, stored.model.clone(), key_hash.to_string());
        let backend = proof::default_backend().name();
        let made = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let system = groth16::ceremony::circuit(&model);
            let power = groth16::ceremony::power_needed(&system).map_err(|e| e.to_string())?;
            let ptau = ptau
                .up_to(power)
                .map_err(|e| format!("this miner's powers of tau are unusable: {e}"))?;
            // An sn2 transcript or a snarkjs ceremony's zkey, checked whole either way.
            let checked = groth16::check_ceremony_of(&transcript_bytes, &id, &system, &ptau)
                .map_err(|e| e.to_string())?;
            if checked.parties == 0 {
                return Err(
                    "it holds no contribution, so anyone can forge proofs its key accepts".into(),
                );
            }
            let key = key_files::encode(
                key_files::KeyKind::Proving,
                backend,
                &id,
                &checked.keys.proving,
            );
            let made = sha256_hex(&key);
            if made != hash {
                return Err(format!("it makes proving key {made}, not {hash}"));
            }
            Ok((key, transcript_bytes, checked))
        })
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|why| {
            tracing::warn!(%validator, %url, %why, "a ceremony transcript is refused");
            refused(format!(
                "the ceremony transcript from {url} is refused: {why}"
            ))
        })?;
        let (key, transcript_bytes, checked) = made;
        // Written only once verified: beside a cached key of this hash, it says so.
        let kept = transcript_beside(stored, key_hash);
        if let Err(error) = crate::fs::write_atomic(&kept, &transcript_bytes, 0o644) {
            tracing::warn!(%error, path = %kept.display(), "cannot keep a verified ceremony transcript");
        }
        tracing::info!(
            model = %stored.id,
            proving_key = %key_hash,
            contributions = checked.contributions.len(),
            transcript = %checked.hash,
            "proving key made from a ceremony transcript verified here"
        );
        Ok(key)
    }

    /// `[miner] ptau`, read and checked (on a blocking thread) up to 2^`power`, or as far
    /// as it has been already; an error is not kept, so a file put right is read at the
    /// next request.
    pub async fn powers_of_tau(&self, power: u32) -> Result<Arc<Ptau>, String> {
        let Some(file) = self.ceremony_ptau.clone() else {
            return Err("no powers of tau are configured ([miner] ptau)".into());
        };
        tokio::task::spawn_blocking(move || file.up_to(power))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// The most contributions a transcript fetched by a miner may hold.
const MAX_TRANSCRIPT_CONTRIBUTIONS: usize = 4096;

/// Where a miner keeps the ceremony transcript it verified for a proving key.
fn transcript_beside(stored: &StoredModel, key_hash: &str) -> std::path::PathBuf {
    stored.keys_dir().join(format!("{key_hash}.transcript"))
}

fn valid_sha256(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}
