//! Putting weights on subtensor the way the subnet accepts them.
//!
//! - Due: at least `max(WeightsSetRateLimit, weights_interval_blocks)` blocks since the
//!   hotkey's `LastUpdate` (the chain refuses sooner ones anyway).
//! - Version: `WeightsVersionKey` of the subnet, read at each submission.
//! - `CommitRevealWeightsEnabled` off: `set_weights`.
//! - On: `commit_weights(hash)` with a fresh random salt; the uids, values, salt and
//!   version are kept in `STATE_DIR/weight-commits.json` (written atomically) until
//!   `reveal_weights` succeeds, which is tried so that it lands in the first block that is
//!   certainly in the reveal epoch (`RevealPeriodEpochs` × (`Tempo` + 1) blocks after the
//!   commit). The window is the whole epoch (`Tempo` + 1 blocks), and the validator hands
//!   in weights every round, so a reveal is tried well before the window closes.
//!   Timelocked commits (`commit_timelocked_weights`, drand) are not used: the runtime
//!   still accepts the plain commit-reveal scheme, which needs no third party.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AtBlock, SubtensorChain, calls};
use crate::chain::{ChainError, Weights, WeightsOutcome};

const COMMITS_FILE: &str = "weight-commits.json";

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

/// Whether a failed reveal should be kept for another try.
fn reveal_may_succeed_later(error: &ChainError) -> bool {
    match error {
        ChainError::Refused { error, .. } => error.contains("RevealTooEarly"),
        other => other.is_transient(),
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
    let tempo: u16 = chain.fetch(at, "Tempo", (netuid,)).await?;
    let epochs: u64 = chain.fetch(at, "RevealPeriodEpochs", (netuid,)).await?;
    let wait = epochs.max(1) * (tempo as u64 + 1);
    let block = at.block_number();
    let mut kept = Vec::new();
    for commit in commits {
        if commit.hotkey != hotkey || commit.netuid != netuid {
            kept.push(commit);
            continue;
        }
        // The reveal lands in the next block at the earliest.
        if block + 1 < commit.block + wait {
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
    let commit_reveal: bool = chain
        .fetch(&at, "CommitRevealWeightsEnabled", (netuid,))
        .await?;
    let mut pending = match &chain.options.state_dir {
        Some(dir) if commit_reveal => reveal_due(chain, &at, dir, &ss58).await?,
        _ => Vec::new(),
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
    if !commit_reveal {
        let payload = calls::set_weights(netuid, &weights.uids, &weights.values, version_key);
        let block = chain.submit(&at, &payload).await?;
        return Ok(WeightsOutcome::Set { block });
    }
    let Some(state_dir) = chain.options.state_dir.clone() else {
        return Err(ChainError::Invalid(
            "the subnet uses commit-reveal, which needs a state directory for the commits".into(),
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
    pending.push(PendingCommit {
        hotkey: ss58,
        netuid,
        hash: format!("0x{}", hex::encode(hash)),
        block,
        uids: weights.uids.clone(),
        values: weights.values.clone(),
        salt,
        version_key,
    });
    save_commits(&state_dir, &pending)?;
    Ok(WeightsOutcome::Committed { block })
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
    fn salts_are_eight_fresh_words() {
        let (a, b) = (random_salt(), random_salt());
        assert_eq!(a.len(), 8);
        assert_ne!(a, b);
    }
}
