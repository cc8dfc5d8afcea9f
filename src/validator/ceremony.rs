//! A validator's part in its models' phase-2 ceremonies, run with the subnet's other
//! validators (`[validator.ceremony]`; the cryptography is
//! [`crate::proof::groth16::ceremony`]).
//!
//! Every validator taking part starts each model's ceremony from the same powers of tau,
//! so all hold the same initial transcript. At each look it asks the other validators' key
//! servers what they hold (`/ceremonies`), downloads the best transcript better than its
//! own (`/ceremonies/<model id>`), verifies it whole and adopts it. Then, if the transcript
//! lacks a contribution of its own, it contributes. "Better" is one order that all agree
//! on: more contributions, then the smaller hash. Two validators that contribute at once
//! fork the transcript; the next look settles the fork, and the one whose contribution lost
//! contributes again on top of the winner.
//!
//! A validator installs a transcript's keys only once the transcript holds the quorum and
//! its own contribution: the keys are then sound for it whoever else took part, and for
//! anyone who trusts any one contributor. Installing pins the keys as the ceremony's and
//! asks the daemon to restart onto them (miners then fetch the new proving key). A better
//! transcript later (a validator that joined late) is installed the same way.
//!
//! State, in the validator's private state directory: `ceremony/<model id>.transcript` (the
//! transcript it serves), and `ceremony/contributions.json` (the hashes of its own
//! contributions), which is written before the transcript holding a new one is served, so
//! that a restart never contributes twice to one transcript.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::key_pins::{self, KeyPins};
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
/// How long one request to a peer may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct CeremonyOptions {
    pub ptau: PathBuf,
    pub quorum: usize,
    pub poll_interval: Duration,
    pub state_dir: PathBuf,
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
        })
    }
}

/// One model's ceremony as this validator holds it, in `/ceremonies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The model id, in hex.
    pub model: String,
    /// The transcript's hash (its last contribution's), in hex.
    pub transcript: String,
    pub contributions: usize,
}

impl Listed {
    /// Where a transcript stands in the order every validator uses: more contributions
    /// first, then the smaller hash.
    fn rank(&self) -> (usize, std::cmp::Reverse<&str>) {
        (
            self.contributions,
            std::cmp::Reverse(self.transcript.as_str()),
        )
    }

    fn better_than(&self, other: &Listed) -> bool {
        self.rank() > other.rank()
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
}

impl Held {
    fn listed(&self, model: &ModelId) -> Listed {
        Listed {
            model: model.to_hex(),
            transcript: hex::encode(self.hash),
            contributions: self.contributions.len(),
        }
    }
}

struct ModelCeremony {
    stored: StoredModel,
    held: Mutex<Held>,
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
    ptau: Arc<Ptau>,
    models: Vec<ModelCeremony>,
    /// Hashes (hex) of this validator's own contributions, all models'.
    ours: Mutex<BTreeSet<String>>,
    /// Transcript hashes (hex) that failed verification: not downloaded again.
    refused: Mutex<HashSet<String>>,
    http: HttpClient,
}

impl Ceremonies {
    /// Reads and checks the powers of tau, and each model's transcript from the state
    /// directory, starting the ones it lacks. Seconds of CPU for large models: call it off
    /// the async threads.
    pub fn start(options: CeremonyOptions, models: Vec<StoredModel>) -> anyhow::Result<Self> {
        let ptau = Ptau::read_prepared_file(&options.ptau)
            .context("the powers of tau of `[validator.ceremony] ptau`")?;
        let dir = ceremony_dir(&options.state_dir);
        crate::fs::create_private_dir(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ours = read_ours(&dir)?;
        let mut held = Vec::new();
        for stored in models {
            let path = transcript_file(&dir, &stored.id);
            let transcript = match std::fs::read(&path) {
                Ok(bytes) => Transcript::read(&bytes).with_context(|| {
                    format!(
                        "{} is damaged: delete it to start this model's ceremony again",
                        path.display()
                    )
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let system = groth16::ceremony::circuit(&stored.model);
                    let transcript =
                        Transcript::init(stored.id, &system, &ptau).with_context(|| {
                            format!("starting the ceremony of model `{}`", stored.info.name)
                        })?;
                    save(&path, &transcript.to_bytes())?;
                    tracing::info!(model = %stored.info.name, "ceremony started from the powers of tau");
                    transcript
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            held.push(ModelCeremony {
                held: Mutex::new(held_of(&transcript)),
                stored,
            });
        }
        Ok(Self {
            options,
            ptau: Arc::new(ptau),
            models: held,
            ours: Mutex::new(ours),
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
        let id = path.strip_prefix("/ceremonies/")?;
        let model = self.models.iter().find(|m| m.stored.id.to_hex() == id)?;
        let bytes = model.held.lock().expect("not poisoned").bytes.clone();
        Some(text_response(200, "application/octet-stream", bytes))
    }

    /// Looks every `poll_interval` until `shutdown`, at the key servers `peers` names then;
    /// `installed` is told of each model whose keys were replaced by a ceremony's.
    pub async fn run(
        self: Arc<Self>,
        peers: impl Fn() -> Vec<SocketAddr> + Send + 'static,
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
    pub async fn look(self: &Arc<Self>, peers: &[SocketAddr]) -> Vec<StoredModel> {
        let listings = self.listings(peers).await;
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
        let mut found: Vec<(SocketAddr, Listed)> = listings
            .iter()
            .flat_map(|(peer, listed)| listed.iter().map(move |l| (*peer, l.clone())))
            .filter(|(_, l)| {
                l.model == held.model
                    && l.contributions <= MAX_CONTRIBUTIONS
                    && l.better_than(&held)
                    && !refused.contains(&l.transcript)
            })
            .collect();
        found.sort_by(|(_, a), (_, b)| b.rank().cmp(&a.rank()));
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
        let expected = listed.clone();
        let checked = tokio::task::spawn_blocking(move || me.verify(index, bytes, &expected)).await;
        let name = &model.stored.info.name;
        match checked {
            Ok(Ok(held)) => {
                tracing::info!(model = %name, %url, transcript = %hex::encode(held.hash), contributions = held.contributions.len(), "adopted a better ceremony transcript");
                *model.held.lock().expect("not poisoned") = held;
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
    /// saves it as the one held.
    fn verify(&self, index: usize, bytes: Bytes, listed: &Listed) -> Result<Held, Refusal> {
        let model = &self.models[index];
        let invalid = |e: anyhow::Error| Refusal::Invalid(e);
        let transcript = Transcript::read(&bytes).map_err(|e| invalid(e.into()))?;
        let system = groth16::ceremony::circuit(&model.stored.model);
        let verified = transcript
            .verify(&model.stored.id, &system, &self.ptau)
            .map_err(|e| invalid(e.into()))?;
        // The listing is only a hint: the peer may have moved on between listing and
        // serving. What counts is a valid transcript better than the one held.
        let found = Listed {
            model: listed.model.clone(),
            transcript: hex::encode(verified.transcript_hash),
            contributions: verified.contribution_hashes.len(),
        };
        let held = model.listed();
        if !found.better_than(&held) {
            return Err(Refusal::PassedOver(anyhow::anyhow!(
                "it holds {} contributions ({}), no better than the {} held here",
                found.contributions,
                found.transcript,
                held.contributions
            )));
        }
        let dir = ceremony_dir(&self.options.state_dir);
        save(&transcript_file(&dir, &model.stored.id), &bytes).map_err(Refusal::PassedOver)?;
        Ok(Held {
            bytes,
            hash: verified.transcript_hash,
            contributions: verified.contribution_hashes,
        })
    }

    /// After a look's adoption: contributes if the held transcript lacks this validator,
    /// and installs its keys if it holds the quorum and this validator's contribution and
    /// they are not the model's keys already. True when keys were installed.
    fn settle(&self, index: usize) -> anyhow::Result<bool> {
        let model = &self.models[index];
        let held = model.held.lock().expect("not poisoned").clone();
        if !self.holds_ours(&held) {
            let mut transcript = Transcript::read(&held.bytes)?;
            let ours = transcript.contribute();
            let dir = ceremony_dir(&self.options.state_dir);
            {
                // Recorded before the transcript that holds it is served or saved.
                let mut recorded = self.ours.lock().expect("not poisoned");
                recorded.insert(hex::encode(ours));
                write_ours(&dir, &recorded)?;
            }
            let bytes = Bytes::from(transcript.to_bytes());
            save(&transcript_file(&dir, &model.stored.id), &bytes)?;
            let held = held_of(&transcript);
            tracing::info!(model = %model.stored.info.name, contribution = %hex::encode(ours), contributions = held.contributions.len(), "contributed to the ceremony");
            *model.held.lock().expect("not poisoned") = held;
            return Ok(false);
        }
        if held.contributions.len() < self.options.quorum {
            return Ok(false);
        }
        self.install(&model.stored, &held)
    }

    fn holds_ours(&self, held: &Held) -> bool {
        let ours = self.ours.lock().expect("not poisoned");
        held.contributions
            .iter()
            .any(|hash| ours.contains(&hex::encode(hash)))
    }

    /// Installs `held`'s keys as the model's and pins them, unless they already are.
    fn install(&self, stored: &StoredModel, held: &Held) -> anyhow::Result<bool> {
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
        tracing::info!(model = %stored.info.name, transcript = %hash, contributions = held.contributions.len(), fingerprint = %summary.verifying_fingerprint, "installed the ceremony's keys");
        Ok(true)
    }
}

/// Why a downloaded transcript was not adopted.
enum Refusal {
    /// It does not verify: never fetched again.
    Invalid(anyhow::Error),
    /// Passed over this time: it verifies but is no better than the one held (the peer
    /// moved on since its listing), or it could not be saved. Another look may take it.
    PassedOver(anyhow::Error),
}

fn held_of(transcript: &Transcript) -> Held {
    let contributions = transcript.contribution_hashes();
    Held {
        bytes: Bytes::from(transcript.to_bytes()),
        hash: transcript.hash(),
        contributions,
    }
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

fn read_ours(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let path = dir.join("contributions.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; restore it, or delete it (this validator may then contribute to a transcript it already has)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_ours(dir: &Path, ours: &BTreeSet<String>) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(ours).expect("hashes serialise");
    save(&dir.join("contributions.json"), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(contributions: usize, transcript: &str) -> Listed {
        Listed {
            model: "ab".into(),
            transcript: transcript.into(),
            contributions,
        }
    }

    #[test]
    fn more_contributions_win_then_the_smaller_hash_and_never_a_tie() {
        assert!(listed(3, "ff").better_than(&listed(2, "00")));
        assert!(!listed(2, "00").better_than(&listed(3, "ff")));
        assert!(listed(2, "0a").better_than(&listed(2, "0b")));
        assert!(!listed(2, "0b").better_than(&listed(2, "0a")));
        // Not better than itself: a validator never adopts what it holds.
        assert!(!listed(2, "0a").better_than(&listed(2, "0a")));
    }
}
