//! Scores and weights.
//!
//! Each round, every queried miner gets a round score in [0, 1]: 0 for a failure (no
//! answer in time, a refusal, a wrong output, a proof that does not verify), otherwise
//! `min(1, reference / latency)`, where the reference is the 10th-percentile latency of the
//! round's verified answers (as in Subnet 2, the fast tail sets the pace). A miner's score
//! moves 20% of the way to its round score, and decays toward 0 with a half-life of two
//! hours while it is not queried. Weights are the scores normalised so that the best is
//! 65535 (u16). A miner that never verifies keeps a score of exactly 0, and no weight.
//!
//! Scores are kept in `scores.json` in the state directory, written atomically after each
//! round, so a restart loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::{Metagraph, Weights};

const STATE_VERSION: u32 = 1;
const SMOOTHING: f64 = 0.2;
const HALF_LIFE_MS: f64 = 2.0 * 3600.0 * 1000.0;
const REFERENCE_PERCENTILE: f64 = 0.10;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerScore {
    pub score: f64,
    pub updated_ms: u64,
    pub requests: u64,
    pub verified: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scores {
    version: u32,
    /// By hotkey (SS58).
    pub miners: BTreeMap<String, MinerScore>,
}

impl Default for Scores {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            miners: BTreeMap::new(),
        }
    }
}

/// One miner's result in a round: its latency if it answered with a verified proof.
pub struct RoundResult {
    pub hotkey: String,
    pub verified_latency_ms: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a scores file ({reason}); move it away to start afresh")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Scores {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("scores.json")
    }

    /// Loads the scores, or starts empty when there is no file yet. A damaged file is an
    /// error, not a silent reset: scores are the validator's memory.
    pub fn load(state_dir: &Path) -> Result<Self, ScoreError> {
        let path = Self::path(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ScoreError::Read { path, source }),
        };
        let scores: Scores = serde_json::from_slice(&bytes).map_err(|e| ScoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if scores.version != STATE_VERSION {
            return Err(ScoreError::Corrupt {
                path,
                reason: format!("version {}", scores.version),
            });
        }
        if scores
            .miners
            .values()
            .any(|m| !(m.score.is_finite() && (0.0..=1.0).contains(&m.score)))
        {
            return Err(ScoreError::Corrupt {
                path,
                reason: "a score outside [0, 1]".into(),
            });
        }
        Ok(scores)
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), ScoreError> {
        let path = Self::path(state_dir);
        let write = |source| ScoreError::Write {
            path: path.clone(),
            source,
        };
        crate::fs::create_private_dir(state_dir).map_err(write)?;
        let bytes = serde_json::to_vec_pretty(self).expect("scores serialise");
        crate::fs::write_atomic(&path, &bytes, 0o600).map_err(write)
    }

    /// Folds one round's results in.
    pub fn record(&mut self, results: &[RoundResult], now_ms: u64) {
        let mut latencies: Vec<f64> = results
            .iter()
            .filter_map(|r| r.verified_latency_ms)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let reference = latencies
            .get(
                ((latencies.len().saturating_sub(1)) as f64 * REFERENCE_PERCENTILE).floor()
                    as usize,
            )
            .copied();
        for result in results {
            let round_score = match (result.verified_latency_ms, reference) {
                (Some(latency), Some(reference)) => (reference / latency.max(1e-3)).min(1.0),
                _ => 0.0,
            };
            let entry = self.miners.entry(result.hotkey.clone()).or_default();
            entry.score = decayed(entry, now_ms) * (1.0 - SMOOTHING) + SMOOTHING * round_score;
            entry.updated_ms = now_ms;
            entry.requests += 1;
            entry.verified += result.verified_latency_ms.is_some() as u64;
        }
    }

    /// Weights for the miners of the metagraph, the best scoring 65535.
    pub fn weights(&self, metagraph: &Metagraph, now_ms: u64) -> Weights {
        let scored: Vec<(u16, f64)> = metagraph
            .neurons
            .iter()
            .filter_map(|n| {
                self.miners
                    .get(&n.hotkey.to_ss58())
                    .map(|m| (n.uid, decayed(m, now_ms)))
            })
            .collect();
        let best = scored.iter().map(|&(_, s)| s).fold(0.0, f64::max);
        let mut weights = Weights::default();
        for (uid, score) in scored {
            weights.uids.push(uid);
            weights.values.push(if best > 0.0 {
                (score / best * 65535.0).round() as u16
            } else {
                0
            });
        }
        weights
    }
}

fn decayed(score: &MinerScore, now_ms: u64) -> f64 {
    let age = now_ms.saturating_sub(score.updated_ms) as f64;
    score.score * 0.5f64.powf(age / HALF_LIFE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Neuron;
    use crate::keys::Hotkey;

    fn result(hotkey: &str, latency: Option<f64>) -> RoundResult {
        RoundResult {
            hotkey: hotkey.into(),
            verified_latency_ms: latency,
        }
    }

    #[test]
    fn fast_miners_score_higher_and_failures_score_nothing() {
        let mut scores = Scores::default();
        for round in 0..30 {
            scores.record(
                &[
                    result("fast", Some(10.0)),
                    result("slow", Some(40.0)),
                    result("cheat", None),
                ],
                round,
            );
        }
        let (fast, slow, cheat) = (
            scores.miners["fast"].score,
            scores.miners["slow"].score,
            scores.miners["cheat"].score,
        );
        assert!(fast > 0.99 && slow > 0.24 && slow < 0.26, "{fast} {slow}");
        assert_eq!(cheat, 0.0);
        assert_eq!(scores.miners["cheat"].requests, 30);
        assert_eq!(scores.miners["cheat"].verified, 0);
    }

    #[test]
    fn weights_are_normalised_to_u16_and_zero_for_cheats() {
        let keys: Vec<Hotkey> = (1..=3).map(|i| Hotkey::from_seed(&[i; 32])).collect();
        let metagraph = Metagraph {
            netuid: 2,
            block: 0,
            neurons: keys
                .iter()
                .enumerate()
                .map(|(i, k)| Neuron {
                    uid: i as u16,
                    hotkey: k.public(),
                    axon: None,
                    validator_permit: false,
                    stake: 0.0,
                    coldkey: None,
                    last_update: 0,
                })
                .collect(),
        };
        let mut scores = Scores::default();
        for round in 0..10 {
            scores.record(
                &[
                    result(&keys[0].ss58(), Some(5.0)),
                    result(&keys[1].ss58(), Some(10.0)),
                    result(&keys[2].ss58(), None),
                ],
                round,
            );
        }
        let weights = scores.weights(&metagraph, 10);
        assert_eq!(weights.uids, vec![0, 1, 2]);
        assert_eq!(weights.values[0], 65535);
        assert!(
            weights.values[1] > 30000 && weights.values[1] < 35000,
            "{:?}",
            weights.values
        );
        assert_eq!(weights.values[2], 0);
    }

    #[test]
    fn scores_decay_while_idle_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut scores = Scores::default();
        scores.record(&[result("a", Some(1.0))], 0);
        scores.save(dir.path()).unwrap();
        let loaded = Scores::load(dir.path()).unwrap();
        assert_eq!(loaded, scores);
        let two_hours = 2 * 3600 * 1000;
        assert!(
            (decayed(&loaded.miners["a"], two_hours) - scores.miners["a"].score / 2.0).abs()
                < 1e-12
        );
        std::fs::write(Scores::path(dir.path()), "{").unwrap();
        assert!(matches!(
            Scores::load(dir.path()),
            Err(ScoreError::Corrupt { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(Scores::load(empty.path()).unwrap(), Scores::default());
    }
}
