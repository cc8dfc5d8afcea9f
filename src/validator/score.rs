//! Scores and weights.
//!
//! Every query is scored when it ends, in [0, 1]: 0 for a failure (no answer in time, a
//! refusal, a wrong output, a proof that does not verify), otherwise
//! `min(1, reference / latency)`, where the reference ([`Pace`]) is the 10th-percentile
//! latency of the model's last verified answers, from every miner (as in Subnet 2, the
//! fast tail sets the pace). Scoring each answer against a window rather than against its
//! round is what lets a round go on without waiting for its slowest miner. A miner's score
//! moves 20% of the way to each query's score, and decays toward 0 with a half-life of two
//! hours while it is not queried. Weights are the scores normalised so that the best is
//! 65535 (u16). A miner that never verifies keeps a score of exactly 0, and no weight.
//!
//! Scores are kept in `scores.json` in the state directory, written atomically after each
//! round, so a restart loses at most the answers of the round under way. Hotkeys that
//! leave the subnet are dropped: a uid taken over by a new hotkey starts from nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::{Metagraph, Weights};

const STATE_VERSION: u32 = 1;
const SMOOTHING: f64 = 0.2;
const HALF_LIFE_MS: f64 = 2.0 * 3600.0 * 1000.0;
const REFERENCE_PERCENTILE: f64 = 0.10;
/// Verified latencies per model the reference is taken from.
const PACE_WINDOW: usize = 256;

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

/// The pace verified answers are measured against: per model, the 10th-percentile latency
/// of its last `PACE_WINDOW` (256) verified answers. Kept in memory only: after a restart the
/// first answers set the pace again.
#[derive(Debug, Default)]
pub struct Pace {
    latencies: HashMap<String, VecDeque<f64>>,
}

impl Pace {
    /// Adds a verified answer for `model` and returns its score in (0, 1].
    pub fn score(&mut self, model: &str, latency_ms: f64) -> f64 {
        let latency_ms = latency_ms.max(1e-3);
        let window = self.latencies.entry(model.to_string()).or_default();
        if window.len() == PACE_WINDOW {
            window.pop_front();
        }
        window.push_back(latency_ms);
        let mut sorted: Vec<f64> = window.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let reference = sorted[((sorted.len() - 1) as f64 * REFERENCE_PERCENTILE).floor() as usize];
        (reference / latency_ms).min(1.0)
    }
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

    /// Folds one query's result in: its score (see [`Pace`]) if it verified, `None` if it
    /// failed.
    pub fn record(&mut self, hotkey: &str, verified_score: Option<f64>, now_ms: u64) {
        let entry = self.miners.entry(hotkey.to_string()).or_default();
        let score = verified_score.unwrap_or(0.0).clamp(0.0, 1.0);
        entry.score = decayed(entry, now_ms) * (1.0 - SMOOTHING) + SMOOTHING * score;
        entry.updated_ms = now_ms;
        entry.requests += 1;
        entry.verified += verified_score.is_some() as u64;
    }

    /// A miner's score now (0 when it has none).
    pub fn current(&self, hotkey: &str, now_ms: u64) -> f64 {
        self.miners.get(hotkey).map_or(0.0, |m| decayed(m, now_ms))
    }

    /// Forgets the hotkeys no longer registered; returns how many.
    pub fn prune(&mut self, metagraph: &Metagraph) -> usize {
        let registered = metagraph.hotkeys_ss58();
        let before = self.miners.len();
        self.miners.retain(|hotkey, _| registered.contains(hotkey));
        before - self.miners.len()
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

    /// Records one round of results, as the validator would when they arrive.
    fn round(scores: &mut Scores, pace: &mut Pace, results: &[(&str, Option<f64>)], now: u64) {
        for (hotkey, latency) in results {
            let score = latency.map(|latency| pace.score("model", latency));
            scores.record(hotkey, score, now);
        }
    }

    #[test]
    fn fast_miners_score_higher_and_failures_score_nothing() {
        let (mut scores, mut pace) = (Scores::default(), Pace::default());
        for round_ in 0..30 {
            round(
                &mut scores,
                &mut pace,
                &[("fast", Some(10.0)), ("slow", Some(40.0)), ("cheat", None)],
                round_,
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
        let (mut scores, mut pace) = (Scores::default(), Pace::default());
        for round_ in 0..10 {
            round(
                &mut scores,
                &mut pace,
                &[
                    (&keys[0].ss58(), Some(5.0)),
                    (&keys[1].ss58(), Some(10.0)),
                    (&keys[2].ss58(), None),
                ],
                round_,
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
        scores.record("a", Some(1.0), 0);
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

    #[test]
    fn the_pace_is_the_fast_tail_of_recent_answers_per_model() {
        let mut pace = Pace::default();
        // Alone, an answer sets the pace.
        assert_eq!(pace.score("a", 50.0), 1.0);
        for _ in 0..20 {
            pace.score("a", 10.0);
        }
        assert!((pace.score("a", 40.0) - 0.25).abs() < 1e-12);
        // Another model keeps its own pace.
        assert_eq!(pace.score("b", 400.0), 1.0);
        // The window forgets: after many slow answers the slow ones set the pace.
        for _ in 0..PACE_WINDOW {
            pace.score("a", 100.0);
        }
        assert_eq!(pace.score("a", 100.0), 1.0);
    }

    #[test]
    fn hotkeys_that_left_the_subnet_are_pruned() {
        let kept = Hotkey::from_seed(&[1; 32]);
        let mut scores = Scores::default();
        scores.record(&kept.ss58(), Some(1.0), 0);
        scores.record("5GoneHotkey", Some(1.0), 0);
        let metagraph = Metagraph {
            netuid: 2,
            block: 0,
            neurons: vec![Neuron {
                uid: 0,
                hotkey: kept.public(),
                axon: None,
                validator_permit: false,
                stake: 0.0,
                coldkey: None,
                last_update: 0,
            }],
        };
        assert_eq!(scores.prune(&metagraph), 1);
        assert_eq!(scores.miners.keys().collect::<Vec<_>>(), vec![&kept.ss58()]);
        assert_eq!(scores.prune(&metagraph), 0);
    }
}
