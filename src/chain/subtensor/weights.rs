//! Putting weights on subtensor the way the subnet accepts them.
//!
//! - Due: at least `max(WeightsSetRateLimit, weights_interval_blocks)` blocks since the
//!   hotkey's `LastUpdate` (the chain refuses sooner ones anyway).
//! - Version: `WeightsVersionKey` of the subnet, read at each submission.
//! - The path, chosen at each submission by [`choose_path`] (or forced by
//!   `[validator] weights_mode`):
//!   - `CommitRevealWeightsEnabled` off: `set_weights`.
//!   - On, and the runtime has `commit_timelocked_weights`: the payload is encrypted to the
//!     drand round due just after the reveal epoch starts ([`crate::timelock`]), and the
//!     chain decrypts and reveals it itself. Nothing is kept: a validator that restarts or
//!     stops loses no reveal.
//!   - On, and it has not: `commit_weights(hash)` with a fresh random salt; the uids,
//!     values, salt, version and the first block of the reveal epoch are kept in
//!     `STATE_DIR/weight-commits.json` (written atomically) until `reveal_weights`
//!     succeeds, sent so that it lands in that block or later. The window is the whole
//!     epoch, and the validator hands in weights every round, so a reveal is tried well
//!     before it closes.
//! - Timing: the reveal epoch's first block comes from the chain's epoch schedule
//!   ([`crate::chain::epoch`]), or from the old formula on runtimes without one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use subxt::Metadata;

use super::{AtBlock, SubtensorChain, calls};
use crate::chain::epoch::{self, EpochSchedule};
use crate::chain::{ChainError, Weights, WeightsOutcome};
use crate::config::WeightsMode;

const COMMITS_FILE: &str = "weight-commits.json";
/// The largest timelocked commit the chain takes (`MAX_CRV3_COMMIT_SIZE_BYTES`).
pub const MAX_TIMELOCKED_COMMIT_BYTES: usize = 5000;
/// A block's time where the runtime does not say (`Aura::SlotDuration`).
const DEFAULT_BLOCK_SECONDS: f64 = 12.0;

/// A commit waiting for its reveal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// SS58 of the hotkey that committed, and the subnet.
    pub hotkey: String,
    pub netuid: u16,
    pub hash: String,
    pub block: u64,
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
    pub salt: Vec<u16>,
    pub version_key: u64,
    /// The first block of the reveal epoch; absent in files of sn2 0.x before the epoch
    /// schedule, whose commits are revealed `RevealPeriodEpochs` tempos after their block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_block: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitsFile {
    commits: Vec<PendingCommit>,
}

fn commits_path(state_dir: &Path) -> PathBuf {
    state_dir.join(COMMITS_FILE)
}

pub fn load_commits(state_dir: &Path) -> Result<Vec<PendingCommit>, ChainError> {
    let path = commits_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<CommitsFile>(&bytes)
            .map(|file| file.commits)
            .map_err(|e| {
                ChainError::State(format!("{} is not a commits file: {e}", path.display()))
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(ChainError::State(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

pub fn save_commits(state_dir: &Path, commits: &[PendingCommit]) -> Result<(), ChainError> {
    let path = commits_path(state_dir);
    let file = CommitsFile {
        commits: commits.to_vec(),
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("commits serialise");
    crate::fs::create_private_dir(state_dir)
        .and_then(|()| crate::fs::write_atomic(&path, &bytes, 0o600))
        .map_err(|e| ChainError::State(format!("cannot write {}: {e}", path.display())))
}

fn random_salt() -> Vec<u16> {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes
        .chunks(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect()
}

/// The ways weights go on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsPath {
    SetWeights,
    Timelocked,
    CommitReveal,
}

impl WeightsPath {
    pub fn name(self) -> &'static str {
        match self {
            WeightsPath::SetWeights => "set_weights",
            WeightsPath::Timelocked => "timelocked",
            WeightsPath::CommitReveal => "commit_reveal",
        }
    }
}

/// What a runtime offers for weights, read from its metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuntimeWeights {
    /// It has `commit_timelocked_weights`.
    pub timelocked: bool,
    /// It keeps the stateful epoch schedule (`LastEpochBlock`, `PendingEpochAt`,
    /// `SubnetEpochIndex`).
    pub epoch_schedule: bool,
    /// It stores drand pulses (`Drand::LastStoredRound`).
    pub drand: bool,
    /// Seconds per block (`Aura::SlotDuration`), or 12.
    pub block_seconds: f64,
}

impl RuntimeWeights {
    pub fn of(metadata: &Metadata) -> Self {
        let subtensor = metadata.pallet_by_name(calls::PALLET);
        let has_storage = |pallet: Option<subxt::metadata::PalletMetadata<'_>>, entry: &str| {
            pallet
                .and_then(|p| p.storage())
                .is_some_and(|s| s.entry_by_name(entry).is_some())
        };
        let slot_ms = metadata
            .pallet_by_name("Aura")
            .and_then(|p| p.constant_by_name("SlotDuration"))
            .and_then(|c| <[u8; 8]>::try_from(c.value()).ok())
            .map(u64::from_le_bytes)
            .filter(|ms| *ms > 0);
        Self {
            timelocked: subtensor.is_some_and(|p| {
                p.call_variant_by_name("commit_timelocked_weights")
                    .is_some()
            }),
            epoch_schedule: ["LastEpochBlock", "PendingEpochAt", "SubnetEpochIndex"]
                .iter()
                .all(|entry| has_storage(subtensor, entry)),
            drand: has_storage(metadata.pallet_by_name("Drand"), "LastStoredRound"),
            block_seconds: slot_ms.map_or(DEFAULT_BLOCK_SECONDS, |ms| ms as f64 / 1000.0),
        }
    }
}

/// The path for a submission, and why.
pub fn choose_path(
    mode: WeightsMode,
    commit_reveal: bool,
    runtime: &RuntimeWeights,
) -> Result<(WeightsPath, &'static str), ChainError> {
    Ok(match mode {
        WeightsMode::Auto if !commit_reveal => (
            WeightsPath::SetWeights,
            "commit-reveal is off on the subnet",
        ),
        WeightsMode::Auto if runtime.timelocked => (
            WeightsPath::Timelocked,
            "commit-reveal is on and the runtime takes timelocked commits",
        ),
        WeightsMode::Auto => (
            WeightsPath::CommitReveal,
            "commit-reveal is on and the runtime has no timelocked commits",
        ),
        WeightsMode::SetWeights => (WeightsPath::SetWeights, "weights_mode = \"set_weights\""),
        WeightsMode::Timelocked if runtime.timelocked => {
            (WeightsPath::Timelocked, "weights_mode = \"timelocked\"")
        }
        WeightsMode::Timelocked => {
            return Err(ChainError::Invalid(
                "weights_mode = \"timelocked\", but the chain's runtime has no `commit_timelocked_weights`; set `[validator] weights_mode = \"auto\"`".into(),
            ));
        }
        WeightsMode::CommitReveal => (
            WeightsPath::CommitReveal,
            "weights_mode = \"commit_reveal\"",
        ),
    })
}

/// Whether a failed reveal should be kept for another try.
fn reveal_may_succeed_later(error: &ChainError) -> bool {
    match error {
        ChainError::Refused { error, .. } => error.contains("RevealTooEarly"),
        other => other.is_transient(),
    }
}

/// The subnet's epoch schedule at `at`, where the runtime keeps one.
async fn read_schedule(
    chain: &SubtensorChain,
    at: &AtBlock,
    runtime: &RuntimeWeights,
) -> Result<Option<EpochSchedule>, ChainError> {
    if !runtime.epoch_schedule {
        return Ok(None);
    }
    let netuid = chain.options.netuid;
    Ok(Some(EpochSchedule {
        block: at.block_number(),
        tempo: chain.fetch(at, "Tempo", (netuid,)).await?,
        last_epoch_block: chain.fetch(at, "LastEpochBlock", (netuid,)).await?,
        pending_epoch_at: chain.fetch(at, "PendingEpochAt", (netuid,)).await?,
        epoch_index: chain.fetch(at, "SubnetEpochIndex", (netuid,)).await?,
        blocks_since_last_step: chain.fetch(at, "BlocksSinceLastStep", (netuid,)).await?,
    }))
}

/// The first block of the reveal epoch of a commit landing in `commit_block`.
async fn first_reveal_block(
    chain: &SubtensorChain,
    at: &AtBlock,
    runtime: &RuntimeWeights,
    commit_block: u64,
) -> Result<u64, ChainError> {
    let netuid = chain.options.netuid;
    let period: u64 = chain.fetch(at, "RevealPeriodEpochs", (netuid,)).await?;
    match read_schedule(chain, at, runtime).await? {
        Some(schedule) => schedule
            .first_reveal_block_for(commit_block, period)
            .map_err(|e| ChainError::Invalid(e.to_string())),
        None => {
            let tempo: u16 = chain.fetch(at, "Tempo", (netuid,)).await?;
            Ok(epoch::legacy_first_reveal_block(
                commit_block,
                netuid,
                tempo,
                period,
            ))
        }
    }
}

/// Reveals the commits whose reveal epoch has come and returns those still pending;
/// the file is rewritten only when that changes.
async fn reveal_due(
    chain: &SubtensorChain,
    at: &AtBlock,
    state_dir: &Path,
    hotkey: &str,
) -> Result<Vec<PendingCommit>, ChainError> {
    let netuid = chain.options.netuid;
    let commits = load_commits(state_dir)?;
    if commits.is_empty() {
        return Ok(commits);
    }
    let before = commits.len();
    let block = at.block_number();
    let mut kept = Vec::new();
    for commit in commits {
        if commit.hotkey != hotkey || commit.netuid != netuid {
            kept.push(commit);
            continue;
        }
        let reveal_block = match commit.reveal_block {
            Some(reveal_block) => reveal_block,
            None => {
                let tempo: u16 = chain.fetch(at, "Tempo", (netuid,)).await?;
                let epochs: u64 = chain.fetch(at, "RevealPeriodEpochs", (netuid,)).await?;
                commit.block + epochs.max(1) * (u64::from(tempo) + 1)
            }
        };
        // The reveal lands in the next block at the earliest.
        if block + 1 < reveal_block {
            kept.push(commit);
            continue;
        }
        let payload = calls::reveal_weights(
            netuid,
            &commit.uids,
            &commit.values,
            &commit.salt,
            commit.version_key,
        );
        match chain.submit(at, &payload).await {
            Ok(revealed) => {
                tracing::info!(commit = %commit.hash, committed = commit.block, revealed, "weights revealed");
            }
            Err(error) if reveal_may_succeed_later(&error) => {
                tracing::info!(commit = %commit.hash, %error, "reveal not accepted yet; will retry");
                kept.push(commit);
            }
            Err(error) => {
                tracing::warn!(commit = %commit.hash, %error, "reveal failed; dropping the commit");
            }
        }
    }
    if kept.len() != before {
        save_commits(state_dir, &kept)?;
    }
    Ok(kept)
}

pub async fn set_weights(
    chain: &SubtensorChain,
    weights: &Weights,
) -> Result<WeightsOutcome, ChainError> {
    let netuid = chain.options.netuid;
    let signer = chain.signer()?;
    let hotkey = signer.account().0;
    let ss58 = signer.0.ss58();
    let at = chain.at_latest().await?;
    let Some(uid) = chain.uid_of(&at, &hotkey).await? else {
        return Err(ChainError::NotRegistered {
            hotkey: ss58,
            netuid,
        });
    };
    let runtime = RuntimeWeights::of(at.metadata_ref());
    let commit_reveal: bool = chain
        .fetch(&at, "CommitRevealWeightsEnabled", (netuid,))
        .await?;
    // Commits of an earlier hash path are revealed whatever the path is now.
    let mut pending = match &chain.options.state_dir {
        Some(dir) => reveal_due(chain, &at, dir, &ss58).await?,
        None => Vec::new(),
    };
    let block = at.block_number();
    let last_update: Vec<u64> = chain.fetch(&at, "LastUpdate", (netuid,)).await?;
    let last = last_update.get(uid as usize).copied().unwrap_or(0);
    let rate_limit: u64 = chain.fetch(&at, "WeightsSetRateLimit", (netuid,)).await?;
    let interval = rate_limit.max(chain.options.weights_interval_blocks);
    if last != 0 && block < last + interval {
        return Ok(WeightsOutcome::NotDue {
            blocks_left: last + interval - block,
        });
    }
    if weights.uids.is_empty() {
        return Err(ChainError::Invalid(
            "no weights to set: no miner has a score yet".into(),
        ));
    }
    let version_key: u64 = chain.fetch(&at, "WeightsVersionKey", (netuid,)).await?;
    let (path, reason) = choose_path(chain.options.weights_mode, commit_reveal, &runtime)?;
    tracing::info!(path = path.name(), reason, "putting weights on chain");
    match path {
        WeightsPath::SetWeights => {
            let payload = calls::set_weights(netuid, &weights.uids, &weights.values, version_key);
            let block = chain.submit(&at, &payload).await?;
            Ok(WeightsOutcome::Set { block })
        }
        WeightsPath::Timelocked => {
            let (commit, reveal_round) =
                timelocked_commit(chain, &at, &runtime, &hotkey, weights, version_key).await?;
            let version: u16 = chain.fetch(&at, "CommitRevealWeightsVersion", ()).await?;
            let payload = calls::commit_timelocked_weights(netuid, &commit, reveal_round, version);
            let block = chain.submit(&at, &payload).await?;
            Ok(WeightsOutcome::Timelocked {
                block,
                reveal_round,
            })
        }
        WeightsPath::CommitReveal => {
            let Some(state_dir) = chain.options.state_dir.clone() else {
                return Err(ChainError::Invalid(
                    "hash commit-reveal needs a state directory for the commits".into(),
                ));
            };
            let salt = random_salt();
            let hash = calls::commit_hash(
                &hotkey,
                netuid,
                &weights.uids,
                &weights.values,
                &salt,
                version_key,
            );
            let block = chain
                .submit(&at, &calls::commit_weights(netuid, hash))
                .await?;
            let reveal_block = first_reveal_block(chain, &at, &runtime, block).await?;
            pending.push(PendingCommit {
                hotkey: ss58,
                netuid,
                hash: format!("0x{}", hex::encode(hash)),
                block,
                uids: weights.uids.clone(),
                values: weights.values.clone(),
                salt,
                version_key,
                reveal_block: Some(reveal_block),
            });
            save_commits(&state_dir, &pending)?;
            Ok(WeightsOutcome::Committed {
                block,
                reveal_block,
            })
        }
    }
}

/// The encrypted payload of a timelocked commit sent at `at`, and its drand round.
async fn timelocked_commit(
    chain: &SubtensorChain,
    at: &AtBlock,
    runtime: &RuntimeWeights,
    hotkey: &[u8; 32],
    weights: &Weights,
    version_key: u64,
) -> Result<(Vec<u8>, u64), ChainError> {
    let best = at.block_number();
    let reveal_block =
        first_reveal_block(chain, at, runtime, best + epoch::INCLUSION_OFFSET).await?;
    let last_stored: u64 = if runtime.drand {
        chain.fetch_in(at, "Drand", "LastStoredRound", ()).await?
    } else {
        0
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| ChainError::State(format!("the clock is before 1970: {e}")))?
        .as_secs_f64();
    let round = epoch::reveal_round(reveal_block, best, runtime.block_seconds, now, last_stored);
    let payload = calls::timelock_payload(hotkey, &weights.uids, &weights.values, version_key);
    let commit = crate::timelock::encrypt(&payload, round);
    if commit.len() > MAX_TIMELOCKED_COMMIT_BYTES {
        return Err(ChainError::Invalid(format!(
            "the timelocked commit of {} weights is {} bytes, over the chain's {MAX_TIMELOCKED_COMMIT_BYTES}",
            weights.uids.len(),
            commit.len()
        )));
    }
    tracing::debug!(
        reveal_block,
        round,
        bytes = commit.len(),
        "timelocked commit built"
    );
    Ok((commit, round))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_a_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_commits(dir.path()).unwrap().is_empty());
        let commit = PendingCommit {
            hotkey: "5Grw".into(),
            netuid: 2,
            hash: "0x00".into(),
            block: 10,
            uids: vec![1, 2],
            values: vec![65535, 1],
            salt: random_salt(),
            version_key: 7,
            reveal_block: Some(20),
        };
        save_commits(dir.path(), std::slice::from_ref(&commit)).unwrap();
        assert_eq!(load_commits(dir.path()).unwrap(), vec![commit]);
    }

    #[test]
    fn a_corrupt_commits_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(COMMITS_FILE), b"{not json").unwrap();
        let error = load_commits(dir.path()).unwrap_err().to_string();
        assert!(error.contains("is not a commits file"), "{error}");
    }

    #[test]
    fn commits_written_before_the_reveal_block_was_kept_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"commits":[{"hotkey":"5Grw","netuid":2,"hash":"0x00","block":10,"uids":[1],"values":[1],"salt":[1,2,3,4,5,6,7,8],"version_key":0}]}"#;
        std::fs::write(dir.path().join(COMMITS_FILE), old).unwrap();
        assert_eq!(load_commits(dir.path()).unwrap()[0].reveal_block, None);
    }

    fn runtime(timelocked: bool) -> RuntimeWeights {
        RuntimeWeights {
            timelocked,
            epoch_schedule: true,
            drand: true,
            block_seconds: 12.0,
        }
    }

    #[test]
    fn auto_chooses_the_path_from_the_chain() {
        use WeightsPath::*;
        let choose = |cr, timelocked| {
            choose_path(WeightsMode::Auto, cr, &runtime(timelocked))
                .unwrap()
                .0
        };
        assert_eq!(choose(false, true), SetWeights);
        assert_eq!(choose(false, false), SetWeights);
        assert_eq!(choose(true, true), Timelocked);
        assert_eq!(choose(true, false), CommitReveal);
    }

    #[test]
    fn a_forced_path_is_taken_unless_the_runtime_lacks_it() {
        use WeightsPath::*;
        for cr in [false, true] {
            let forced = |mode| choose_path(mode, cr, &runtime(true)).unwrap().0;
            assert_eq!(forced(WeightsMode::SetWeights), SetWeights);
            assert_eq!(forced(WeightsMode::Timelocked), Timelocked);
            assert_eq!(forced(WeightsMode::CommitReveal), CommitReveal);
        }
        let error = choose_path(WeightsMode::Timelocked, true, &runtime(false))
            .unwrap_err()
            .to_string();
        assert!(error.contains("weights_mode = \"auto\""), "{error}");
    }

    #[test]
    fn salts_are_eight_fresh_words() {
        let (a, b) = (random_salt(), random_salt());
        assert_eq!(a.len(), 8);
        assert_ne!(a, b);
    }
}
