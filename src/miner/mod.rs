//! The miner (`sn2-miner`): serves proofs of inference over QUIC and HTTP.
//!
//! Only validators with a permit and enough stake (from the metagraph) get work; every
//! request is authenticated (QUIC handshake or Epistula), fresh (timestamp window) and
//! unique (replay cache), and every response is signed. Proving runs on blocking threads,
//! at most `max_concurrent_proofs` at once; further requests are answered `busy` at once.
//! Proving keys come from the validator that made them: fetched from its `key_url` by
//! their SHA-256, which the validator's signed request names, and cached on disk by it.

mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{Semaphore, watch};

use crate::chain::Metagraph;
use crate::keys::{Hotkey, PublicKey};
use crate::model::{ModelId, ModelStore};
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
    pub max_request_bytes: usize,
    pub max_key_bytes: usize,
    pub min_validator_stake: f64,
    pub behaviour: Behaviour,
}

impl MinerOptions {
    pub fn from_config(config: &crate::config::MinerConfig) -> Self {
        Self {
            max_concurrent_proofs: config.max_concurrent_proofs.get(),
            max_request_bytes: config.max_request_bytes.get(),
            max_key_bytes: config.max_key_bytes.get(),
            min_validator_stake: config.min_validator_stake,
            behaviour: Behaviour::Honest,
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
    provers: Mutex<HashMap<String, Arc<dyn Prover>>>,
    /// Models already loaded (and checked against their ids), so a request costs no disk.
    models: Mutex<HashMap<ModelId, Arc<crate::model::StoredModel>>>,
    permits: Arc<Semaphore>,
    replay: ReplayCache,
    http: HttpClient,
    /// Serialises key downloads, so that a burst of requests fetches a key once.
    fetching: tokio::sync::Mutex<()>,
    /// QUIC handshakes per source address in the current minute.
    handshakes: Mutex<HashMap<std::net::IpAddr, (u64, u32)>>,
}

/// QUIC handshakes one address may start per minute (checking a handshake costs a
/// signature verification; a flood of them must not cost more).
pub const MAX_HANDSHAKES_PER_MINUTE: u32 = 30;

impl Miner {
    pub fn new(
        hotkey: Hotkey,
        store: ModelStore,
        metagraph: Metagraph,
        options: MinerOptions,
    ) -> Arc<Self> {
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
            fetching: tokio::sync::Mutex::new(()),
            handshakes: Mutex::new(HashMap::new()),
        })
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

    /// Answers an authenticated request.
    pub async fn handle(self: &Arc<Self>, request: Request) -> Response {
        match request {
            Request::Health => Response::Health {
                hotkey: self.ss58.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
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
            Request::Prove(prove) => match self.prove(prove).await {
                Ok(proved) => Response::Proved(proved),
                Err(error) => {
                    tracing::debug!(%error, "prove request refused");
                    Response::Error(error.body())
                }
            },
        }
    }

    async fn prove(self: &Arc<Self>, request: ProveRequest) -> Result<ProveResponse, WireError> {
        let malformed = |m: String| WireError::new(ErrorCode::MalformedRequest, m);
        let model_id = ModelId::from_hex(&request.model)
            .ok_or_else(|| malformed("`model` is not a model id".into()))?;
        let nonce: [u8; 32] = hex::decode(&request.nonce)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("`nonce` is not 32 bytes of hex".into()))?;
        let stored = self.model(&model_id)?;
        if request.input.len() != stored.model.input_len() {
            return Err(malformed(format!(
                "the input has {} values; the model takes {}",
                request.input.len(),
                stored.model.input_len()
            )));
        }
        self.replay
            .check_and_insert(&format!("prove:{}", request.nonce))?;
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            WireError::new(
                ErrorCode::Busy,
                "all proving slots are taken; try again later",
            )
        })?;
        let prover = self
            .prover_for(&stored, &request.proving_key, request.key_url.as_deref())
            .await?;
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

    /// A served model, from memory or (once) from the models directory.
    fn model(&self, id: &ModelId) -> Result<Arc<crate::model::StoredModel>, WireError> {
        if let Some(stored) = self.models.lock().expect("not poisoned").get(id) {
            return Ok(stored.clone());
        }
        let stored = Arc::new(self.store.load(id).map_err(|_| {
            WireError::new(
                ErrorCode::UnknownModel,
                format!("this miner does not serve model {id}"),
            )
        })?);
        self.models
            .lock()
            .expect("not poisoned")
            .insert(*id, stored.clone());
        Ok(stored)
    }

    /// The prover for a model and a validator's proving key (by its SHA-256): from memory,
    /// from the disk cache, or fetched from the validator.
    async fn prover_for(
        &self,
        stored: &crate::model::StoredModel,
        key_hash: &str,
        key_url: Option<&str>,
    ) -> Result<Arc<dyn Prover>, WireError> {
        if key_hash.len() != 64 || !key_hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(WireError::new(
                ErrorCode::MalformedRequest,
                "`proving_key` is not a SHA-256",
            ));
        }
        let key_hash = key_hash.to_ascii_lowercase();
        if let Some(prover) = self.provers.lock().expect("not poisoned").get(&key_hash) {
            return Ok(prover.clone());
        }
        let _fetching = self.fetching.lock().await;
        if let Some(prover) = self.provers.lock().expect("not poisoned").get(&key_hash) {
            return Ok(prover.clone());
        }
        let cached = stored.keys_dir().join(format!("{key_hash}.pk"));
        let bytes = match std::fs::read(&cached) {
            Ok(bytes) if sha256_hex(&bytes) == key_hash => bytes,
            _ => {
                let url = key_url.ok_or_else(|| {
                    WireError::new(
                        ErrorCode::UnknownKey,
                        format!("no proving key {key_hash} here, and no key_url to fetch it from"),
                    )
                })?;
                let url = format!("{}/keys/{key_hash}", url.trim_end_matches('/'));
                tracing::info!(%url, model = %stored.id, "fetching a proving key");
                let bytes = self
                    .http
                    .get(&url, self.options.max_key_bytes)
                    .await
                    .map_err(|e| {
                        WireError::new(ErrorCode::UnknownKey, format!("cannot fetch {url}: {e}"))
                    })?
                    .to_vec();
                if sha256_hex(&bytes) != key_hash {
                    return Err(WireError::new(
                        ErrorCode::UnknownKey,
                        format!("{url} served a key with another hash"),
                    ));
                }
                if let Err(error) = crate::fs::write_atomic(&cached, &bytes, 0o644) {
                    tracing::warn!(%error, path = %cached.display(), "cannot cache a proving key");
                }
                bytes
            }
        };
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
        let prover: Arc<dyn Prover> = Arc::from(prover);
        self.provers
            .lock()
            .expect("not poisoned")
            .insert(key_hash, prover.clone());
        Ok(prover)
    }
}
