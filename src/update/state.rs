//! The last release accepted on each channel, kept in one small JSON file written
//! atomically: a node that restarts still refuses older or replayed manifests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::verify::Accepted;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged ({reason}); it guards against rollbacks, so it is not reset silently: restore it or remove it knowingly"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file of accepted releases, by channel.
#[derive(Debug, Clone)]
pub struct AcceptedReleases {
    path: PathBuf,
}

impl AcceptedReleases {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_all(&self) -> Result<BTreeMap<String, Accepted>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The release accepted last on `channel`, if any.
    pub fn last(&self, channel: &str) -> Result<Option<Accepted>, StateError> {
        Ok(self.read_all()?.get(channel).copied())
    }

    /// Records `accepted` as the last release on `channel`.
    pub fn record(&self, channel: &str, accepted: Accepted) -> Result<(), StateError> {
        let mut all = self.read_all()?;
        all.insert(channel.to_string(), accepted);
        let json = serde_json::to_vec_pretty(&all).expect("the state serialises");
        let write_error = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fs::create_private_dir(dir).map_err(write_error)?;
        }
        crate::fs::write_atomic(&self.path, &json, 0o600).map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_releases_survive_a_restart_by_channel() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/accepted-releases.json");
        let first = Accepted {
            serial: 3,
            body_sha256: [7; 32],
        };
        AcceptedReleases::new(&file)
            .record("stable", first)
            .unwrap();
        let again = AcceptedReleases::new(&file);
        assert_eq!(again.last("stable").unwrap(), Some(first));
        assert_eq!(again.last("beta").unwrap(), None);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accepted-releases.json");
        std::fs::write(&file, "{ not json").unwrap();
        let error = AcceptedReleases::new(&file).last("stable").unwrap_err();
        assert!(matches!(error, StateError::Damaged { .. }), "{error}");
        let first = Accepted {
            serial: 1,
            body_sha256: [0; 32],
        };
        assert!(
            AcceptedReleases::new(&file)
                .record("stable", first)
                .is_err()
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{ not json");
    }
}
