//! Whether a manifest may be acted on: signed by a trusted key, for this channel and system,
//! not expired, newer than the last release accepted, and (once Nix has realised it) with the
//! store path whose NAR hash the manifest names. Each refusal says why in the operator's terms.

use std::path::Path;

use super::manifest::{Manifest, ManifestError, Output, format_time};
use super::nar::{NarError, nar_digest};
use super::nixkey::TrustedPublicKey;

/// How far a manifest's issue time may be ahead of this clock (clocks drift).
pub const CLOCK_SKEW_SECS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the manifest is malformed: {0}")]
    Malformed(#[from] ManifestError),
    #[error(
        "no signature by a trusted key: it is signed by {signers} and the trusted keys are {trusted}"
    )]
    UnknownKey { signers: String, trusted: String },
    #[error(
        "the signature by `{key}` does not verify: the manifest was changed after signing, or signed by another key of that name"
    )]
    BadSignature { key: String },
    #[error("the manifest is for channel `{manifest}`, and this node follows `{expected}`")]
    WrongChannel { manifest: String, expected: String },
    #[error(
        "the manifest expired at {expired}; it is now {now}: the publisher must sign a new one"
    )]
    Expired { expired: String, now: String },
    #[error(
        "the manifest was issued at {issued}, in the future (it is now {now}): check the clock"
    )]
    NotYetValid { issued: String, now: String },
    #[error(
        "serial {serial} is not above {last}, the last release accepted: an old or replayed manifest is never applied"
    )]
    NotNewer { serial: u64, last: u64 },
    #[error(
        "serial {serial} was accepted before with other contents: a publisher never reuses a serial"
    )]
    SerialReused { serial: u64 },
    #[error("the release has no output for {system} (it has {available})")]
    NoOutputForSystem { system: String, available: String },
    #[error(
        "{path} has NAR hash {actual} ({actual_size} bytes), and the manifest says {expected} ({expected_size} bytes): the store path is not the release"
    )]
    NarHashMismatch {
        path: String,
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    #[error(transparent)]
    Nar(#[from] NarError),
}

/// What a node expects of a release.
#[derive(Debug, Clone)]
pub struct Policy {
    pub trusted_keys: Vec<TrustedPublicKey>,
    pub channel: String,
    /// Nix's name for this machine's platform, such as `x86_64-linux`.
    pub system: String,
}

/// The last release accepted on a channel: its serial and the SHA-256 of its signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accepted {
    pub serial: u64,
    #[serde(with = "hex_array")]
    pub body_sha256: [u8; 32],
}

mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes"))
    }
}

/// A manifest that passed every check, with the output for this node's system.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub output: Output,
    /// False when this is the release accepted last time (polled again, unchanged).
    pub is_new: bool,
}

impl Verified {
    pub fn accepted(&self) -> Accepted {
        Accepted {
            serial: self.manifest.body.serial,
            body_sha256: body_sha256(&self.manifest),
        }
    }
}

fn body_sha256(manifest: &Manifest) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(&manifest.signed_bytes).into()
}

/// Checks manifest bytes against `policy` at time `now` (seconds since the epoch), given the
/// release accepted last on this channel, if any. Signatures are checked first, so nothing
/// unauthenticated is reported as if it were the publisher's.
pub fn verify(
    bytes: &[u8],
    policy: &Policy,
    now: u64,
    last: Option<Accepted>,
) -> Result<Verified, Refusal> {
    let manifest = Manifest::parse(bytes)?;
    check_signatures(&manifest, &policy.trusted_keys)?;
    let body = &manifest.body;
    if body.channel != policy.channel {
        return Err(Refusal::WrongChannel {
            manifest: body.channel.clone(),
            expected: policy.channel.clone(),
        });
    }
    if now >= body.expires_at {
        return Err(Refusal::Expired {
            expired: format_time(body.expires_at),
            now: format_time(now),
        });
    }
    if body.issued_at > now + CLOCK_SKEW_SECS {
        return Err(Refusal::NotYetValid {
            issued: format_time(body.issued_at),
            now: format_time(now),
        });
    }
    let is_new = match last {
        Some(last) if body.serial == last.serial => {
            if body_sha256(&manifest) != last.body_sha256 {
                return Err(Refusal::SerialReused {
                    serial: body.serial,
                });
            }
            false
        }
        Some(last) if body.serial < last.serial => {
            return Err(Refusal::NotNewer {
                serial: body.serial,
                last: last.serial,
            });
        }
        _ => true,
    };
    let output =
        body.output(&policy.system)
            .cloned()
            .ok_or_else(|| Refusal::NoOutputForSystem {
                system: policy.system.clone(),
                available: body
                    .outputs
                    .iter()
                    .map(|o| o.system.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
    Ok(Verified {
        manifest,
        output,
        is_new,
    })
}

fn check_signatures(manifest: &Manifest, trusted: &[TrustedPublicKey]) -> Result<(), Refusal> {
    let mut failed_trusted = None;
    for signature in &manifest.signatures {
        if !trusted.iter().any(|k| k.name == signature.key_name) {
            continue;
        }
        // A malformed signature by a trusted name counts as a bad one, never as a pass.
        match signature.verify(&manifest.signed_bytes, trusted) {
            Ok(true) => return Ok(()),
            _ => failed_trusted = Some(signature.key_name.clone()),
        }
    }
    if let Some(key) = failed_trusted {
        return Err(Refusal::BadSignature { key });
    }
    let names = |names: Vec<&str>| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    Err(Refusal::UnknownKey {
        signers: names(
            manifest
                .signatures
                .iter()
                .map(|s| s.key_name.as_str())
                .collect(),
        ),
        trusted: names(trusted.iter().map(|k| k.name.as_str()).collect()),
    })
}

/// Checks that the store path at `path` is the output the manifest names: its NAR hash and
/// size, computed here from the files, must be the manifest's.
pub fn check_store_path(output: &Output, path: &Path) -> Result<(), Refusal> {
    let digest = nar_digest(path)?;
    if digest.hash != output.nar_hash || digest.size != output.nar_size {
        return Err(Refusal::NarHashMismatch {
            path: path.display().to_string(),
            expected: output.nar_hash.to_nix_nixbase32_string(),
            expected_size: output.nar_size,
            actual: digest.hash.to_nix_nixbase32_string(),
            actual_size: digest.size,
        });
    }
    Ok(())
}
