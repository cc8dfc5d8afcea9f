//! The fingerprints of the keys a validator checks proofs with, kept in its private state
//! (`key-pins.json`, beside the scores, in a directory only it can read).
//!
//! A verifying key says nothing about the model it belongs to: the key of a model that
//! differs by one bias, or a key whose setup secrets someone kept, loads as well as the
//! right one and then accepts that other model's proofs. So the validator records the
//! fingerprints of the keys it made (or, for keys made by `sn2 model setup` before it
//! ever ran, the ones it first used) and refuses to start with different ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE: &str = "key-pins.json";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged ({reason}); restore it from a backup, or delete it to trust the keys now on disk"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the {} key of model `{}` ({}) is not the one this validator {}: its fingerprint is {}, the recorded one {} (in {}). \
         Proofs checked with a key that is not this validator's own prove nothing to it. If you made new keys on purpose (`sn2 model setup`), \
         remove the model's entry from {} and start again; the validator then records the new keys",
        .0.kind, .0.model, .0.id, .0.how, .0.found, .0.recorded, .0.path.display(), .0.path.display()
    )]
    Mismatch(Box<Mismatch>),
}

/// A model's keys on disk that differ from its pinned ones.
#[derive(Debug)]
pub struct Mismatch {
    pub kind: &'static str,
    pub model: String,
    pub id: String,
    how: &'static str,
    pub found: String,
    pub recorded: String,
    pub path: PathBuf,
}

/// How a model's keys came to be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Made by this validator's own setup.
    Setup,
    /// Found on disk the first time this validator used the model.
    FirstUse,
    /// Installed from a ceremony this validator verified and contributed to.
    Ceremony,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub verifying_key: String,
    pub proving_key: String,
    pub origin: Origin,
    pub recorded_at_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PinFile {
    version: u32,
    /// By model id (hex).
    models: BTreeMap<String, Pin>,
}

/// The recorded pins, and where they live.
#[derive(Debug)]
pub struct KeyPins {
    path: PathBuf,
    state_dir: PathBuf,
    file: PinFile,
}

/// What [`KeyPins::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The keys are the recorded ones.
    Known,
    /// No record yet: now recorded.
    Recorded(Origin),
}

/// One model's keys as found on disk.
pub struct Found<'a> {
    pub model: &'a str,
    pub id: &'a str,
    pub verifying_key: &'a str,
    pub proving_key: &'a str,
}

impl KeyPins {
    pub fn load(state_dir: &Path) -> Result<Self, PinError> {
        let path = state_dir.join(FILE);
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: PinFile =
                    serde_json::from_slice(&bytes).map_err(|e| PinError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if file.version != VERSION {
                    return Err(PinError::Corrupt {
                        path,
                        reason: format!("version {}; this build reads {VERSION}", file.version),
                    });
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PinFile {
                version: VERSION,
                models: BTreeMap::new(),
            },
            Err(source) => return Err(PinError::Read { path, source }),
        };
        Ok(Self {
            path,
            state_dir: state_dir.to_path_buf(),
            file,
        })
    }

    /// Checks a model's keys against the record, or records them (`made_here`: by this
    /// validator's setup just now). A new record is written at once, atomically.
    pub fn check(&mut self, found: Found<'_>, made_here: bool) -> Result<Checked, PinError> {
        if let Some(pin) = self.file.models.get(found.id) {
            let how = match pin.origin {
                Origin::Setup => "made",
                Origin::FirstUse => "first used",
                Origin::Ceremony => "installed from a ceremony",
            };
            for (kind, found_print, recorded) in [
                ("verifying", found.verifying_key, &pin.verifying_key),
                ("proving", found.proving_key, &pin.proving_key),
            ] {
                if found_print != recorded {
                    return Err(PinError::Mismatch(Box::new(Mismatch {
                        kind,
                        model: found.model.to_string(),
                        id: found.id.to_string(),
                        how,
                        found: found_print.to_string(),
                        recorded: recorded.clone(),
                        path: self.path.clone(),
                    })));
                }
            }
            return Ok(Checked::Known);
        }
        let origin = if made_here {
            Origin::Setup
        } else {
            Origin::FirstUse
        };
        self.pin(found, origin)?;
        Ok(Checked::Recorded(origin))
    }

    /// Records `found` as the model's keys, in place of any earlier record: keys this
    /// validator has just installed itself.
    pub fn pin(&mut self, found: Found<'_>, origin: Origin) -> Result<(), PinError> {
        self.file.models.insert(
            found.id.to_string(),
            Pin {
                verifying_key: found.verifying_key.to_string(),
                proving_key: found.proving_key.to_string(),
                origin,
                recorded_at_ms: crate::wire::now_ms(),
            },
        );
        self.save()
    }

    fn save(&self) -> Result<(), PinError> {
        let write = |source| PinError::Write {
            path: self.path.clone(),
            source,
        };
        crate::fs::create_private_dir(&self.state_dir).map_err(write)?;
        let bytes = serde_json::to_vec_pretty(&self.file).expect("pins serialise");
        crate::fs::write_atomic(&self.path, &bytes, 0o600).map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found<'a>(vk: &'a str, pk: &'a str) -> Found<'a> {
        Found {
            model: "mlp",
            id: "ab12",
            verifying_key: vk,
            proving_key: pk,
        }
    }

    #[test]
    fn keys_are_recorded_once_then_held_to() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut pins = KeyPins::load(&state).unwrap();
        assert_eq!(
            pins.check(found("v1", "p1"), true).unwrap(),
            Checked::Recorded(Origin::Setup)
        );
        // The record survives a restart, in a directory only the validator can read.
        let mut pins = KeyPins::load(&state).unwrap();
        assert_eq!(
            pins.check(found("v1", "p1"), false).unwrap(),
            Checked::Known
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let swapped = pins.check(found("v2", "p1"), false).unwrap_err();
        let message = swapped.to_string();
        assert!(
            message.contains("verifying key of model `mlp`"),
            "{message}"
        );
        assert!(message.contains("remove the model's entry"), "{message}");
        assert!(matches!(
            pins.check(found("v1", "p9"), false),
            Err(PinError::Mismatch(m)) if m.kind == "proving"
        ));
        // A refusal changes nothing: the first keys are still the pinned ones.
        let mut pins = KeyPins::load(&state).unwrap();
        assert_eq!(
            pins.check(found("v1", "p1"), false).unwrap(),
            Checked::Known
        );
    }

    #[test]
    fn a_damaged_pin_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let error = KeyPins::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("damaged"), "{error}");
        std::fs::write(dir.path().join(FILE), br#"{"version": 9, "models": {}}"#).unwrap();
        assert!(KeyPins::load(dir.path()).is_err());
    }
}
