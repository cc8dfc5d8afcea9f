//! A validator's part in its models' phase-2 ceremonies, run with the subnet's other
//! validators (`[validator.ceremony]`; the cryptography is
//! [`crate::proof::groth16::ceremony`]).
//!
//! Every validator taking part starts each model's ceremony from the same powers of tau,
//! so all hold the same initial transcript. At each look it asks the other validators' key
//! servers what they hold (`/ceremonies`), downloads the best transcript better than its
//! own (`/ceremonies/<model id>`), verifies it whole and adopts it. Then, if the transcript
//! lacks a contribution signed by its hotkey, it contributes one. "Better" is one order
//! that all agree on: more signatures of validators (distinct hotkeys with a permit, and
//! this validator's own), then more contributions, then the smaller hash. Two validators
//! that contribute at once fork the transcript; the next look settles the fork, and the
//! one whose contribution lost contributes again on top of the winner.
//!
//! The quorum counts validators, not contributions: anyone may add unsigned contributions
//! (or sign with hotkeys that hold no permit), and those keep the keys sound for whoever
//! made them, but a party that contributes many times counts once, and one without a
//! permit not at all. So a quorum of N means N validators' secrets went into the keys.
//! A validator installs a transcript's keys only once it holds the quorum and its own
//! contribution: the keys are then sound for it whoever else took part, and for anyone
//! who trusts any one contributor. Installing pins the keys as the ceremony's and asks the
//! daemon to restart onto them (miners then fetch the new proving key). A transcript
//! signed by more validators later (one that joined late) is installed the same way; one
//! that only adds contributions is adopted and served, but its keys are not installed, so
//! that nobody can make every validator restart by appending contributions.
//!
//! **Users** take part through the validator's user API while a model's ceremony is open
//! here (its keys not yet installed from a quorum): `sn2 ceremony join` fetches the
//! transcript this validator holds, contributes on top and submits the result
//! ([`Ceremonies::submit`]). A submission must extend exactly the transcript held, so it
//! can only add contributions, never drop or reorder any; it is verified whole before it
//! is held. Once held it is the best transcript around (as many validators, more
//! contributions), so the other validators adopt it and their contributions follow it
//! into the keys. The user then checks, with `sn2 infer --ptau --contribution`, that the
//! keys which verify their answers descend from their own contribution, and so trusts
//! them without trusting anyone. A user counts for no quorum (that needs a validator's
//! permit), and a submission adds at most [`MAX_SUBMITTED`] contributions. So that users
//! have time to take part, `[validator.ceremony] open_secs` keeps a ceremony open (its keys
//! not installed) for that long after it started here, whatever the quorum.
//!
//! State, in the validator's private state directory: `ceremony/<model id>.transcript` (the
//! transcript it serves) and `ceremony/<model id>.opened` (when the ceremony started here,
//! from which `open_secs` counts). Its own contribution is the one its hotkey signed, so a
//! restart never contributes twice to one transcript.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use ark_bn254::Bn254;
use ark_groth16::ProvingKey;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::key_pins::{self, KeyPins};
use crate::keys::{Hotkey, PublicKey};
use crate::model::{ModelId, StoredModel};
use crate::proof::groth16;
use crate::proof::groth16::ceremony::Transcript;
use crate::proof::keys as key_files;
use crate::proof::ptau::Ptau;
use crate::shutdown::{Shutdown, stopped};
use crate::wire::http::{HttpClient, HttpResponse, text_response};

/// Candidates downloaded and verified per model and look, best first: a peer that
/// advertises a transcript it cannot back costs one download each look, not more.
const TRIES_PER_LOOK: usize = 3;
/// The most contributions a transcript may hold: bounds a download and its verification.
const MAX_CONTRIBUTIONS: usize = 1024;
/// The most contributions one submission through the user API may add: a user needs one.
pub const MAX_SUBMITTED: usize = 4;
/// How long one request to a peer may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct CeremonyOptions {
    pub ptau: PathBuf,
    pub quorum: usize,
    pub poll_interval: Duration,
    pub state_dir: PathBuf,
    /// How long each model's ceremony stays open to users after it started here: no keys
    /// are installed before.
    pub open_for: Duration,
}

impl CeremonyOptions {
    /// The options `[validator.ceremony]` asks for; `None` when it takes no part.
    pub fn from_config(config: &crate::config::Config) -> Option<Self> {
        let c = &config.validator.ceremony;
        Some(Self {
            ptau: c.ptau.clone()?,
            quorum: c.quorum.get(),
            poll_interval: c.poll_interval_secs.duration(),
            state_dir: config.validator.state_dir.clone(),
            open_for: Duration::from_secs(c.open_secs),
        })
    }
}

/// The other validators at one look: the key servers asked, and the hotkeys whose
/// signed contributions count toward the quorum (those holding a validator permit).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub key_servers: Vec<SocketAddr>,
    pub validators: HashSet<PublicKey>,
}

/// One model's ceremony as this validator holds it, in `/ceremonies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The model id, in hex.
    pub model: String,
    /// The transcript's hash (its last contribution's), in hex.
    pub transcript: String,
    pub contributions: usize,
    /// The hotkeys (SS58) that signed a contribution, each once, in order.
    #[serde(default)]
    pub signers: Vec<String>,
}

/// Whose signatures count: the validators with a permit, and this validator.
struct Counting<'a> {
    validators: &'a HashSet<PublicKey>,
    me: PublicKey,
}

impl Counting<'_> {
    /// The distinct hotkeys among `signers` (SS58, as peers list them) that count.
    fn count(&self, signers: &[String]) -> usize {
        let keys: Vec<PublicKey> = (signers.iter())
            .filter_map(|address| PublicKey::from_ss58(address).ok())
            .collect();
        self.count_keys(&keys)
    }

    /// The distinct hotkeys among `signers` that count.
    fn count_keys<'k>(&self, signers: impl IntoIterator<Item = &'k PublicKey>) -> usize {
        let counted: HashSet<&PublicKey> = (signers.into_iter())
            .filter(|key| **key == self.me || self.validators.contains(*key))
            .collect();
        counted.len()
    }

    /// Where a transcript stands in the order every validator uses: more signatures that
    /// count first, then more contributions, then the smaller hash.
    fn rank<'l>(&self, listed: &'l Listed) -> (usize, usize, std::cmp::Reverse<&'l str>) {
        (
            self.count(&listed.signers),
            listed.contributions,
            std::cmp::Reverse(listed.transcript.as_str()),
        )
    }

    fn better(&self, a: &Listed, than: &Listed) -> bool {
        self.rank(a) > self.rank(than)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Listing {
    ceremonies: Vec<Listed>,
}

/// A transcript this validator holds, verified (or made) here.
#[derive(Clone)]
struct Held {
    bytes: Bytes,
    hash: [u8; 32],
    /// Each contribution's hash, in order.
    contributions: Vec<[u8; 32]>,
    /// Each contribution's signer, in order.
    signers: Vec<Option<PublicKey>>,
}

impl Held {
    /// A transcript of `bytes` that verified as `verified`.
    fn verified(bytes: Bytes, verified: groth16::ceremony::Verified) -> Self {
        Self {
            bytes,
            hash: verified.transcript_hash,
            contributions: verified.contribution_hashes,
            signers: verified.signers,
        }
    }

    fn listed(&self, model: &ModelId) -> Listed {
        let mut signers: Vec<String> = Vec::new();
        for key in self.signers.iter().flatten() {
            let address = key.to_ss58();
            if !signers.contains(&address) {
                signers.push(address);
            }
        }
        Listed {
            model: model.to_hex(),
            transcript: hex::encode(self.hash),
            contributions: self.contributions.len(),
            signers,
        }
    }
}

struct ModelCeremony {
    stored: StoredModel,
    /// The key the powers of tau make for the model's circuit, which every transcript
    /// starts from: kept instead of the powers of tau, which are far larger.
    initial: ProvingKey<Bn254>,
    held: Mutex<Held>,
    /// The signers of the ceremony transcript the model's keys came from; empty when they
    /// came from elsewhere (this validator's own setup, or a snarkjs zkey).
    installed: Mutex<Vec<PublicKey>>,
    /// The contributions users submitted here: a transcript adopted later that lacks one
    /// (a fork that won) is logged, since the user must join again.
    submitted: Mutex<HashSet<[u8; 32]>>,
    /// Whether the log said that the quorum is reached but the ceremony stays open.
    told_open: AtomicBool,
    /// Held through every change of the transcript held (adopting a peer's, contributing,
    /// taking a user's submission), from the check of what is held to the save: no change
    /// is lost to another made meanwhile.
    step: Mutex<()>,
}

impl ModelCeremony {
    /// What it holds, as `/ceremonies` lists it.
    fn listed(&self) -> Listed {
        self.held
            .lock()
            .expect("not poisoned")
            .listed(&self.stored.id)
    }
}

/// This validator's ceremonies: what it serves, and its looks at the other validators'.
pub struct Ceremonies {
    options: CeremonyOptions,
    models: Vec<ModelCeremony>,
    /// The hotkey that signs this validator's contributions.
    hotkey: Hotkey,
    /// The validators whose signatures count, as of the last look.
    validators: Mutex<HashSet<PublicKey>>,
    /// Transcript hashes (hex) that failed verification: not downloaded again.
    refused: Mutex<HashSet<String>>,
    http: HttpClient,
}

impl Ceremonies {
    /// Reads and checks the powers of tau, makes each model's initial key from them, and
    /// reads each model's transcript from the state directory, starting the ones it lacks;
    /// `hotkey` signs this validator's contributions. Only the initial keys are kept, not
    /// the powers of tau. Seconds of CPU for large models: call it off the async threads.
    pub fn start(
        options: CeremonyOptions,
        hotkey: Hotkey,
        models: Vec<StoredModel>,
    ) -> anyhow::Result<Self> {
        let systems: Vec<_> = (models.iter())
            .map(|stored| groth16::ceremony::circuit(&stored.model))
            .collect();
        let mut power = 1;
        for (stored, system) in models.iter().zip(&systems) {
            let needed = groth16::ceremony::power_needed(system)
                .with_context(|| format!("the circuit of model `{}`", stored.info.name))?;
            power = power.max(needed);
        }
        // Only what the largest model's circuit uses is read, checked and kept.
        let ptau = Ptau::read_prepared_file_up_to(&options.ptau, power)
            .context("the powers of tau of `[validator.ceremony] ptau`")?;
        let dir = ceremony_dir(&options.state_dir);
        crate::fs::create_private_dir(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut held = Vec::new();
        for (stored, system) in models.into_iter().zip(systems) {
            let initial = groth16::ceremony::initial_key(&system, &ptau).with_context(|| {
                format!("starting the ceremony of model `{}`", stored.info.name)
            })?;
            drop(system);
            let path = transcript_file(&dir, &stored.id);
            let transcript = match std::fs::read(&path) {
                Ok(bytes) => Transcript::read(&bytes).with_context(|| {
                    format!(
                        "{} is damaged: delete it to start this model's ceremony again",
                        path.display()
                    )
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let transcript = Transcript::from_initial(stored.id, initial.clone());
                    save(&path, &transcript.to_bytes())?;
                    tracing::info!(model = %stored.info.name, "ceremony started from the powers of tau");
                    transcript
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            opened_at(&dir, &stored.id)?;
            held.push(ModelCeremony {
                initial,
                held: Mutex::new(held_of(&transcript)),
                installed: Mutex::new(installed_signers(&stored)),
                step: Mutex::new(()),
                told_open: AtomicBool::new(false),
                submitted: Mutex::new(HashSet::new()),
                stored,
            });
        }
        Ok(Self {
            options,
            models: held,
            hotkey,
            validators: Mutex::new(HashSet::new()),
            refused: Mutex::new(HashSet::new()),
            http: HttpClient::default(),
        })
    }

    /// What this validator holds, per model: `/ceremonies`.
    pub fn listing(&self) -> Vec<Listed> {
        self.models.iter().map(|m| m.listed()).collect()
    }

    /// The key server's ceremony routes: `/ceremonies` and `/ceremonies/<model id>`;
    /// `None` for any other path.
    pub fn handle(&self, path: &str) -> Option<HttpResponse> {
        if path == "/ceremonies" {
            let body = serde_json::to_vec(&Listing {
                ceremonies: self.listing(),
            })
            .expect("a listing serialises");
            return Some(text_response(200, "application/json", body));
        }
        let bytes = self.held_transcript(path.strip_prefix("/ceremonies/")?)?;
        Some(text_response(200, "application/octet-stream", bytes))
    }

    /// The ceremony of the model with id `model` (hex).
    fn find(&self, model: &str) -> Option<&ModelCeremony> {
        self.models.iter().find(|m| m.stored.id.to_hex() == model)
    }

    /// The transcript held for the model with id `model` (hex), as peers and users fetch it;
    /// `None` for a model with no ceremony here.
    pub fn held_transcript(&self, model: &str) -> Option<Bytes> {
        let found = self.find(model)?;
        Some(found.held.lock().expect("not poisoned").bytes.clone())
    }

    /// The ceremony of `model` (hex id) while users may contribute to it: it runs here and
    /// its keys are not installed.
    pub fn open(&self, model: &str) -> Option<OpenCeremony> {
        let found = self.find(model)?;
        if !found.installed.lock().expect("not poisoned").is_empty() {
            return None;
        }
        let dir = ceremony_dir(&self.options.state_dir);
        let opened = opened_at(&dir, &found.stored.id).ok()?;
        let held = found.listed();
        Some(OpenCeremony {
            transcript: held.transcript,
            contributions: held.contributions,
            open_until: opened + self.options.open_for.as_secs(),
        })
    }

    /// The largest submission for `model` worth reading: the transcript held with
    /// [`MAX_SUBMITTED`] more contributions. `None` for a model with no ceremony here.
    pub fn submission_limit(&self, model: &str) -> Option<usize> {
        let held = self.held_transcript(model)?;
        Some(held.len() + MAX_SUBMITTED * groth16::ceremony::CONTRIBUTION_BYTES)
    }

    /// Takes a user's submission for model `model` (hex id): the transcript held here with
    /// up to [`MAX_SUBMITTED`] contributions added, which must verify whole. It is then
    /// held and served, and the next look's contributions and keys follow it. Refused,
    /// changing nothing, when the model's ceremony has ended here (its keys installed from
    /// a quorum), when the submission does not extend what is held now, when it does not
    /// verify, and while another change is under way. Seconds of CPU for large models:
    /// call it off the async threads.
    pub fn submit(&self, model: &str, bytes: Bytes) -> Result<Submitted, SubmitError> {
        let model = (self.find(model)).ok_or_else(|| SubmitError::NoCeremony(model.to_string()))?;
        let name = &model.stored.info.name;
        let Ok(_step) = model.step.try_lock() else {
            return Err(SubmitError::Busy);
        };
        if !model.installed.lock().expect("not poisoned").is_empty() {
            return Err(SubmitError::Closed(name.clone()));
        }
        let held = model.held.lock().expect("not poisoned").clone();
        let invalid = |e: groth16::ceremony::CeremonyError| SubmitError::Invalid(e.to_string());
        let transcript = Transcript::read(&bytes).map_err(invalid)?;
        let hashes = transcript.contribution_hashes();
        if !hashes.starts_with(&held.contributions) {
            return Err(SubmitError::Moved {
                held: hex::encode(held.hash),
                contributions: held.contributions.len(),
            });
        }
        let added = hashes.len() - held.contributions.len();
        if added == 0 || added > MAX_SUBMITTED {
            return Err(SubmitError::Added { added });
        }
        let verified = transcript
            .verify_from(&model.stored.id, &model.initial)
            .map_err(invalid)?;
        let found = Held::verified(bytes, verified);
        let submitted = Submitted {
            transcript: hex::encode(found.hash),
            contributions: found.contributions.len(),
            added: found.contributions[held.contributions.len()..]
                .iter()
                .map(hex::encode)
                .collect(),
        };
        let added = found.contributions[held.contributions.len()..].to_vec();
        self.hold(model, found)
            .map_err(|e| SubmitError::Save(format!("{e:#}")))?;
        (model.submitted.lock().expect("not poisoned")).extend(added);
        tracing::info!(model = %name, transcript = %submitted.transcript, added = ?submitted.added, "took a user's contributions to the ceremony");
        Ok(submitted)
    }

    /// Looks every `poll_interval` until `shutdown`, at the validators `peers` names then;
    /// `installed` is told of each model whose keys were replaced by a ceremony's.
    pub async fn run(
        self: Arc<Self>,
        peers: impl Fn() -> Peers + Send + 'static,
        mut shutdown: Shutdown,
        installed: impl Fn(&StoredModel) + Send + 'static,
    ) {
        let mut ticks = tokio::time::interval(self.options.poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped(&mut shutdown) => return,
            }
            for stored in self.look(&peers()).await {
                installed(&stored);
            }
        }
    }

    /// One look at `peers`' key servers for every model: adopt the best valid transcript,
    /// contribute where this validator's contribution is missing, install keys where the
    /// quorum is reached. Returns the models whose keys were installed.
    pub async fn look(self: &Arc<Self>, peers: &Peers) -> Vec<StoredModel> {
        *self.validators.lock().expect("not poisoned") = peers.validators.clone();
        let listings = self.listings(&peers.key_servers).await;
        let mut installed = Vec::new();
        for index in 0..self.models.len() {
            let me = self.clone();
            let candidates = self.candidates(index, &listings);
            for (peer, listed) in candidates.into_iter().take(TRIES_PER_LOOK) {
                if self.adopt(index, peer, &listed).await {
                    break;
                }
            }
            let outcome = tokio::task::spawn_blocking(move || me.settle(index)).await;
            let name = &self.models[index].stored.info.name;
            match outcome {
                Ok(Ok(true)) => installed.push(self.models[index].stored.clone()),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::error!(model = %name, error = %format!("{error:#}"), "ceremony step failed")
                }
                Err(error) => tracing::error!(model = %name, %error, "ceremony step panicked"),
            }
        }
        installed
    }

    /// Each peer's listing; a peer that does not answer, or not with a listing, is left
    /// out of this look.
    async fn listings(&self, peers: &[SocketAddr]) -> Vec<(SocketAddr, Vec<Listed>)> {
        let mut fetches = tokio::task::JoinSet::new();
        for &peer in peers {
            let http = self.http.clone();
            fetches.spawn(async move {
                let url = format!("http://{peer}/ceremonies");
                let fetched = tokio::time::timeout(PEER_TIMEOUT, http.get(&url, 1 << 20)).await;
                let listing = match fetched {
                    Ok(Ok(bytes)) => {
                        serde_json::from_slice::<Listing>(&bytes).map_err(|error| error.to_string())
                    }
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("no answer in time".to_string()),
                };
                match listing {
                    Ok(listing) => Some((peer, listing.ceremonies)),
                    Err(error) => {
                        tracing::debug!(%url, %error, "no ceremony listing");
                        None
                    }
                }
            });
        }
        fetches.join_all().await.into_iter().flatten().collect()
    }

    /// The peers' transcripts of model `index` better than the one held, best first, each
    /// once, leaving out those refused before.
    fn candidates(
        &self,
        index: usize,
        listings: &[(SocketAddr, Vec<Listed>)],
    ) -> Vec<(SocketAddr, Listed)> {
        let model = &self.models[index];
        let held = model.listed();
        let refused = self.refused.lock().expect("not poisoned");
        let validators = self.validators.lock().expect("not poisoned");
        let counting = self.counting(&validators);
        let mut found: Vec<(SocketAddr, Listed)> = listings
            .iter()
            .flat_map(|(peer, listed)| listed.iter().map(move |l| (*peer, l.clone())))
            .filter(|(_, l)| {
                l.model == held.model
                    && l.contributions <= MAX_CONTRIBUTIONS
                    && l.signers.len() <= l.contributions
                    && counting.better(l, &held)
                    && !refused.contains(&l.transcript)
            })
            .collect();
        found.sort_by(|(_, a), (_, b)| counting.rank(b).cmp(&counting.rank(a)));
        found.dedup_by(|(_, a), (_, b)| a.transcript == b.transcript);
        found
    }

    /// Downloads `listed` from `peer`, verifies it and holds it; false when it does not
    /// verify (that hash is then never fetched again) or is no better than the one held.
    async fn adopt(self: &Arc<Self>, index: usize, peer: SocketAddr, listed: &Listed) -> bool {
        let model = &self.models[index];
        let url = format!("http://{peer}/ceremonies/{}", listed.model);
        // Every transcript of a model has the same key: only the contributions differ.
        let limit = {
            let held = model.held.lock().expect("not poisoned");
            held.bytes.len() + MAX_CONTRIBUTIONS * groth16::ceremony::CONTRIBUTION_BYTES
        };
        let bytes = match tokio::time::timeout(PEER_TIMEOUT, self.http.get(&url, limit)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => {
                tracing::warn!(%url, %error, "cannot fetch a ceremony transcript");
                return false;
            }
            Err(_) => {
                tracing::warn!(%url, "fetching a ceremony transcript took too long");
                return false;
            }
        };
        let me = self.clone();
        let claimed = listed.clone();
        let checked = tokio::task::spawn_blocking(move || me.verify(index, bytes, &claimed)).await;
        let name = &model.stored.info.name;
        match checked {
            Ok(Ok(held)) => {
                tracing::info!(model = %name, %url, transcript = %hex::encode(held.hash), contributions = held.contributions.len(), "adopted a better ceremony transcript");
                true
            }
            Ok(Err(Refusal::Invalid(error))) => {
                tracing::warn!(model = %name, %url, error = %format!("{error:#}"), "refused a ceremony transcript");
                self.refused
                    .lock()
                    .expect("not poisoned")
                    .insert(listed.transcript.clone());
                false
            }
            Ok(Err(Refusal::PassedOver(error))) => {
                tracing::info!(model = %name, %url, error = %format!("{error:#}"), "a peer's transcript changed since its listing; passed over");
                false
            }
            Err(error) => {
                tracing::error!(model = %name, %error, "verifying a transcript panicked");
                false
            }
        }
    }

    /// Verifies a downloaded transcript whole and, if it is better than the one held,
    /// saves it and holds it.
    fn verify(&self, index: usize, bytes: Bytes, claimed: &Listed) -> Result<Held, Refusal> {
        let model = &self.models[index];
        let _step = model.step.lock().expect("not poisoned");
        let invalid = |e: anyhow::Error| Refusal::Invalid(e);
        let transcript = Transcript::read(&bytes).map_err(|e| invalid(e.into()))?;
        let verified = transcript
            .verify_from(&model.stored.id, &model.initial)
            .map_err(|e| invalid(e.into()))?;
        let found = Held::verified(bytes, verified);
        let (found_listed, held) = (found.listed(&model.stored.id), model.listed());
        // A transcript's hash fixes its contributions and their signers, so a listing of
        // this hash that says otherwise is a lie told to be fetched first: never again.
        if found_listed.transcript == claimed.transcript && &found_listed != claimed {
            return Err(Refusal::Invalid(anyhow::anyhow!(
                "its listing claims {} contributions signed by {:?}, but it holds {} signed by {:?}",
                claimed.contributions,
                claimed.signers,
                found_listed.contributions,
                found_listed.signers
            )));
        }
        // Otherwise the peer may have moved on between listing and serving. What counts
        // is a valid transcript better than the one held.
        let validators = self.validators.lock().expect("not poisoned").clone();
        let counting = self.counting(&validators);
        if !counting.better(&found_listed, &held) {
            return Err(Refusal::PassedOver(anyhow::anyhow!(
                "it holds {} contributions signed by {} validators ({}), no better than the {} and {} held here",
                found_listed.contributions,
                counting.count(&found_listed.signers),
                found_listed.transcript,
                held.contributions,
                counting.count(&held.signers),
            )));
        }
        self.hold(model, found.clone())
            .map_err(Refusal::PassedOver)?;
        Ok(found)
    }

    /// Saves `found` as the model's transcript and holds it: the one way the transcript
    /// held changes, under the model's `step`. Users' contributions submitted here that
    /// `found` lacks (a fork without them won) are logged: their makers must join again.
    fn hold(&self, model: &ModelCeremony, found: Held) -> anyhow::Result<()> {
        let dir = ceremony_dir(&self.options.state_dir);
        save(&transcript_file(&dir, &model.stored.id), &found.bytes)?;
        let mut held = model.held.lock().expect("not poisoned");
        let submitted = model.submitted.lock().expect("not poisoned");
        let lost: Vec<String> = (held.contributions.iter())
            .filter(|c| submitted.contains(*c) && !found.contributions.contains(c))
            .map(hex::encode)
            .collect();
        if !lost.is_empty() {
            tracing::warn!(model = %model.stored.info.name, ?lost, "a better transcript from another validator lacks users' contributions submitted here (a fork won): they are not in this ceremony any more, and their makers must join again");
        }
        *held = found;
        Ok(())
    }

    fn counting<'a>(&'a self, validators: &'a HashSet<PublicKey>) -> Counting<'a> {
        Counting {
            validators,
            me: self.hotkey.public(),
        }
    }

    /// After a look's adoption: contributes if the held transcript lacks this validator,
    /// and installs its keys if it holds the quorum and this validator's contribution and
    /// they are not the model's keys already. True when keys were installed.
    fn settle(&self, index: usize) -> anyhow::Result<bool> {
        let model = &self.models[index];
        let _step = model.step.lock().expect("not poisoned");
        let held = model.held.lock().expect("not poisoned").clone();
        let me = self.hotkey.public();
        if !held.signers.contains(&Some(me)) {
            let mut transcript = Transcript::read(&held.bytes)?;
            let ours = transcript.contribute(Some(&self.hotkey));
            let held = held_of(&transcript);
            let contributions = held.contributions.len();
            self.hold(model, held)?;
            tracing::info!(model = %model.stored.info.name, contribution = %hex::encode(ours), contributions, "contributed to the ceremony");
            return Ok(false);
        }
        let validators = self.validators.lock().expect("not poisoned").clone();
        let counting = self.counting(&validators);
        let counted = counting.count_keys(held.signers.iter().flatten());
        let installed = counting.count_keys(model.installed.lock().expect("not poisoned").iter());
        // Keys change only for more validators' secrets: a transcript that merely adds
        // contributions, or forks at the same count, keeps the keys installed.
        if counted < self.options.quorum || counted <= installed {
            return Ok(false);
        }
        let dir = ceremony_dir(&self.options.state_dir);
        let open_until = opened_at(&dir, &model.stored.id)? + self.options.open_for.as_secs();
        if unix_now() < open_until {
            if !model.told_open.swap(true, Ordering::Relaxed) {
                tracing::info!(model = %model.stored.info.name, validators = counted, open_until, "quorum reached; the ceremony stays open to users' contributions until then (Unix seconds, `open_secs`), and its keys are installed after");
            }
            return Ok(false);
        }
        let installed = self.install(&model.stored, &held, counted)?;
        if installed {
            *model.installed.lock().expect("not poisoned") =
                held.signers.iter().flatten().copied().collect();
        }
        Ok(installed)
    }

    /// Installs `held`'s keys (signed by `validators` counted validators) as the model's
    /// and pins them, unless they already are.
    fn install(
        &self,
        stored: &StoredModel,
        held: &Held,
        validators: usize,
    ) -> anyhow::Result<bool> {
        let backend = groth16::NAME;
        let hash = hex::encode(held.hash);
        let current = key_files::read(stored, backend, key_files::KeyKind::Verifying)
            .ok()
            .and_then(|vk| key_files::provenance(stored, backend, &vk));
        if current.and_then(|record| record.transcript).as_deref() == Some(hash.as_str()) {
            return Ok(false);
        }
        let transcript = Transcript::read(&held.bytes)?;
        let summary = key_files::install(
            stored,
            backend,
            &transcript.key_pair(),
            key_files::Origin::Ceremony {
                transcript: &held.bytes,
                hash: hash.clone(),
                contributions: held.contributions.len() as u32,
            },
        )?;
        let id = stored.id.to_hex();
        KeyPins::load(&self.options.state_dir)?.pin(
            key_pins::Found {
                model: &stored.info.name,
                id: &id,
                verifying_key: &summary.verifying_fingerprint,
                proving_key: &summary.proving_fingerprint,
            },
            key_pins::Origin::Ceremony,
        )?;
        tracing::info!(model = %stored.info.name, transcript = %hash, contributions = held.contributions.len(), validators, fingerprint = %summary.verifying_fingerprint, "installed the ceremony's keys");
        Ok(true)
    }
}

/// A ceremony open to users, as `/v1/models` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct OpenCeremony {
    /// The hash of the transcript held, in hex.
    pub transcript: String,
    pub contributions: usize,
    /// Unix seconds before which no keys are installed from it.
    pub open_until: u64,
}

/// A user's submission, taken: what the validator now holds.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    /// The transcript's hash, in hex.
    pub transcript: String,
    pub contributions: usize,
    /// The hashes of the contributions the submission added, in hex: the user's.
    pub added: Vec<String>,
}

/// Why a user's submission was refused; nothing held changed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("this validator runs no ceremony for model {0}")]
    NoCeremony(String),
    #[error(
        "the ceremony of model `{0}` has ended here: its keys were installed once a quorum of validators had contributed, and a contribution now would not reach them; `sn2 infer --ptau` checks the transcript they came from"
    )]
    Closed(String),
    #[error(
        "the submitted transcript does not extend the one held here (hash {held}, {contributions} contributions): the ceremony moved on since you fetched it; fetch it again and contribute on top (`sn2 ceremony join` does this itself)"
    )]
    Moved { held: String, contributions: usize },
    #[error(
        "the submitted transcript adds {added} contributions to the one held here; 1 to {MAX_SUBMITTED} are taken"
    )]
    Added { added: usize },
    #[error("the submitted transcript does not verify: {0}")]
    Invalid(String),
    #[error("the ceremony of this model is changing right now; try again in a few seconds")]
    Busy,
    #[error("the transcript could not be saved here: {0}")]
    Save(String),
}

/// Why a downloaded transcript was not adopted.
enum Refusal {
    /// It does not verify: never fetched again.
    Invalid(anyhow::Error),
    /// Passed over this time: it verifies but is no better than the one held (the peer
    /// moved on since its listing), or it could not be saved. Another look may take it.
    PassedOver(anyhow::Error),
}

/// The signers of the ceremony transcript the model's keys were finished from, read from
/// the transcript kept beside them; none when the keys came from anywhere else.
fn installed_signers(stored: &StoredModel) -> Vec<PublicKey> {
    let backend = groth16::NAME;
    let Some(hash) = key_files::read(stored, backend, key_files::KeyKind::Verifying)
        .ok()
        .and_then(|vk| key_files::provenance(stored, backend, &vk))
        .filter(|record| record.origin == "ceremony")
        .and_then(|record| record.transcript)
    else {
        return Vec::new();
    };
    std::fs::read(key_files::transcript_path(stored, backend))
        .ok()
        .and_then(|bytes| Transcript::read(&bytes).ok())
        .filter(|transcript| hex::encode(transcript.hash()) == hash)
        .map(|transcript| transcript.signers().into_iter().flatten().collect())
        .unwrap_or_default()
}

fn held_of(transcript: &Transcript) -> Held {
    Held {
        bytes: Bytes::from(transcript.to_bytes()),
        hash: transcript.hash(),
        contributions: transcript.contribution_hashes(),
        signers: transcript.signers(),
    }
}

/// When the model's ceremony started here (Unix seconds), as `<model id>.opened` records
/// it; recorded now if it is not yet.
fn opened_at(dir: &Path, model: &ModelId) -> anyhow::Result<u64> {
    let path = dir.join(format!("{}.opened", model.to_hex()));
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().with_context(|| {
            format!(
                "{} is damaged: it holds the Unix time (seconds) this model's ceremony started here; delete it to count from now",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let now = unix_now();
            save(&path, format!("{now}\n").as_bytes())?;
            Ok(now)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ceremony_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ceremony")
}

fn transcript_file(dir: &Path, model: &ModelId) -> PathBuf {
    dir.join(format!("{}.transcript", model.to_hex()))
}

fn save(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::fs::write_atomic(path, bytes, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(contributions: usize, transcript: &str, signers: &[&Hotkey]) -> Listed {
        Listed {
            model: "ab".into(),
            transcript: transcript.into(),
            contributions,
            signers: signers.iter().map(|key| key.ss58()).collect(),
        }
    }

    #[test]
    fn a_ceremony_start_is_recorded_once_and_a_damaged_record_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let model = ModelId([7; 32]);
        let before = unix_now();
        let opened = opened_at(dir.path(), &model).unwrap();
        assert!(opened >= before && opened <= unix_now());
        let path = dir.path().join(format!("{}.opened", model.to_hex()));
        std::fs::write(&path, "1000\n").unwrap();
        assert_eq!(opened_at(dir.path(), &model).unwrap(), 1000);
        std::fs::write(&path, "yesterday").unwrap();
        let said = format!("{:#}", opened_at(dir.path(), &model).unwrap_err());
        assert!(
            said.contains("is damaged") && said.contains("delete it"),
            "{said}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "yesterday");
    }

    #[test]
    fn validators_signatures_win_then_contributions_then_the_smaller_hash_never_a_tie() {
        let [me, other, outsider] = [1, 2, 3].map(|seed| Hotkey::from_seed(&[seed; 32]));
        let validators = HashSet::from([other.public()]);
        let counting = Counting {
            validators: &validators,
            me: me.public(),
        };
        let better = |a: &Listed, b: &Listed| counting.better(a, b);
        assert!(better(&listed(3, "ff", &[]), &listed(2, "00", &[])));
        assert!(!better(&listed(2, "00", &[]), &listed(3, "ff", &[])));
        assert!(better(&listed(2, "0a", &[]), &listed(2, "0b", &[])));
        assert!(!better(&listed(2, "0b", &[]), &listed(2, "0a", &[])));
        // Not better than itself: a validator never adopts what it holds.
        assert!(!better(&listed(2, "0a", &[]), &listed(2, "0a", &[])));
        // A validator's signature outweighs any number of contributions by others, and
        // this validator's own counts though it is not in the list of permits.
        assert!(better(
            &listed(1, "ff", &[&other]),
            &listed(900, "00", &[&outsider])
        ));
        assert!(better(&listed(1, "ff", &[&me]), &listed(900, "00", &[])));
        // A hotkey counts once, however often it signed or is listed; an outsider and a
        // listed name that is not a hotkey not at all.
        let mut twice = listed(2, "00", &[&other, &other, &outsider]);
        twice.signers.push("not an address".into());
        assert_eq!(counting.count(&twice.signers), 1);
        assert!(better(&listed(2, "ff", &[&other, &me]), &twice));
    }
}
