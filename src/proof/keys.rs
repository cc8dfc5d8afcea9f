//! Key files: a versioned header naming the kind of key, the circuit revision, the backend
//! and the model, then the backend's bytes. A key file's SHA-256 is its fingerprint; the
//! verifying key's fingerprint is the model fingerprint shown to users, since it is what
//! a proof is checked against. Keys live in the model's folder as `keys/<backend>.pk` and
//! `.vk`, with `keys/<backend>.provenance.json` saying where they came from: a setup run
//! here (single-party: whoever ran it could forge proofs its key accepts) or a ceremony,
//! whose transcript is kept as `keys/<backend>.transcript`; keys without that record came
//! from elsewhere.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{KeyPair, ProofError, ProofSystem};
use crate::fs::write_atomic;
use crate::model::{ModelId, StoredModel};

const MAGIC: &[u8; 8] = b"SN2KEYS\0";
/// Version 2 added the circuit revision.
const VERSION: u16 = 2;
/// The header before the backend's name: magic, version, kind, revision, the name's length.
const FIXED_HEADER: usize = MAGIC.len() + 2 + 1 + 2 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Proving = 1,
    Verifying = 2,
}

impl KeyKind {
    fn extension(self) -> &'static str {
        match self {
            KeyKind::Proving => "pk",
            KeyKind::Verifying => "vk",
        }
    }
}

/// The SHA-256 of a key file, in hex.
pub fn fingerprint(file_bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(file_bytes))
}

pub fn encode(kind: KeyKind, backend: &str, model: &ModelId, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&crate::circuit::REVISION.to_le_bytes());
    out.push(u8::try_from(backend.len()).expect("backend names are short"));
    out.extend_from_slice(backend.as_bytes());
    out.extend_from_slice(&model.0);
    out.extend_from_slice(payload);
    out
}

/// The payload of a key file, after checking that it is the expected kind of key for this
/// backend and model.
pub fn decode<'a>(
    bytes: &'a [u8],
    kind: KeyKind,
    backend: &str,
    model: &ModelId,
) -> Result<&'a [u8], ProofError> {
    let bad = |reason: String| ProofError::MalformedKey(reason);
    let stale = |revision: u16| ProofError::StaleKey {
        revision,
        model: model.to_string(),
    };
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not an sn2 key file".into()));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version == 1 {
        return Err(stale(1));
    }
    if version != VERSION {
        return Err(bad(format!(
            "key format version {version}; this build reads {VERSION}"
        )));
    }
    if bytes.len() < FIXED_HEADER {
        return Err(bad("truncated header".into()));
    }
    if bytes[10] != kind as u8 {
        return Err(bad(format!("not a {} key", kind.extension())));
    }
    let revision = u16::from_le_bytes([bytes[11], bytes[12]]);
    if revision != crate::circuit::REVISION {
        return Err(stale(revision));
    }
    let name_len = bytes[13] as usize;
    let rest = &bytes[FIXED_HEADER..];
    if rest.len() < name_len + 32 {
        return Err(bad("truncated header".into()));
    }
    let (name, rest) = rest.split_at(name_len);
    if name != backend.as_bytes() {
        return Err(bad(format!(
            "a key for backend `{}`, not `{backend}`",
            String::from_utf8_lossy(name)
        )));
    }
    let (model_bytes, payload) = rest.split_at(32);
    if model_bytes != model.0 {
        return Err(bad(format!(
            "a key for model {}, not {model}",
            hex::encode(model_bytes)
        )));
    }
    Ok(payload)
}

pub fn path(model: &StoredModel, backend: &str, kind: KeyKind) -> PathBuf {
    model
        .keys_dir()
        .join(format!("{backend}.{}", kind.extension()))
}

/// Where a model's keys came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// `setup`: made on this machine by `sn2 model setup` (or a validator's start);
    /// `ceremony`: finished from a verified ceremony transcript (`sn2 ceremony finish`);
    /// `snarkjs`: taken from a snarkjs ceremony's verified zkey (`sn2 ceremony import`).
    pub origin: String,
    /// How many parties' secrets the keys' soundness rests on (any one honest suffices).
    pub parties: u32,
    /// The verifying key this record is about.
    pub verifying_key: String,
    pub made_by: String,
    /// For a ceremony, the hash that names it, in hex: sn2's transcript's SHA-256 chain
    /// hash, or the last contribution's hash of a snarkjs ceremony.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

impl Provenance {
    /// For keys finished from a ceremony, "a ceremony of N contributions (transcript H)".
    pub fn ceremony(&self) -> Option<String> {
        let hash = self.transcript.as_deref()?;
        let plural = if self.parties == 1 { "" } else { "s" };
        match self.origin.as_str() {
            "ceremony" => Some(format!(
                "a ceremony of {} contribution{plural} (transcript {hash})",
                self.parties
            )),
            "snarkjs" => Some(format!(
                "a snarkjs ceremony of {} contribution{plural} (last contribution {hash})",
                self.parties
            )),
            _ => None,
        }
    }
}

fn provenance_path(model: &StoredModel, backend: &str) -> PathBuf {
    model.keys_dir().join(format!("{backend}.provenance.json"))
}

/// The provenance of a model's verifying key, if recorded for exactly that key.
pub fn provenance(model: &StoredModel, backend: &str, verifying: &[u8]) -> Option<Provenance> {
    let bytes = std::fs::read(provenance_path(model, backend)).ok()?;
    let record: Provenance = serde_json::from_slice(&bytes).ok()?;
    (record.verifying_key == fingerprint(verifying)).then_some(record)
}

/// What a proof checked against this verifying key convinces, in one sentence.
pub fn whom_it_convinces(record: Option<&Provenance>) -> String {
    match record {
        Some(p) if p.origin == "setup" && p.parties == 1 => "the verifying key was made here by a single-party setup: the proof convinces you, and others only as far as they trust this machine's setup".into(),
        Some(p) if p.ceremony().is_some() => format!(
            "the verifying key comes from {}, verified here: the proof convinces anyone who trusts one of its contributors",
            p.ceremony().unwrap_or_default()
        ),
        Some(p) => format!("the verifying key comes from {} with {} parties", p.origin, p.parties),
        None => "no record that this verifying key was made here: the proof convinces only as far as you trust whoever made the key".into(),
    }
}

/// What a setup produced.
#[derive(Debug, Clone)]
pub struct SetupSummary {
    pub verifying_fingerprint: String,
    pub proving_fingerprint: String,
    pub proving_bytes: usize,
    pub verifying_bytes: usize,
}

/// Makes fresh keys for a stored model and writes them (atomically) into its folder.
pub fn setup(model: &StoredModel, system: &dyn ProofSystem) -> Result<SetupSummary, ProofError> {
    setup_reporting(model, system, &mut |_| {})
}

/// [`setup`], telling `report` each step as it ends.
pub fn setup_reporting(
    model: &StoredModel,
    system: &dyn ProofSystem,
    report: &mut dyn FnMut(&str),
) -> Result<SetupSummary, ProofError> {
    let pair = system.setup_reporting(&model.model, report)?;
    install(model, system.name(), &pair, Origin::Setup)
}

/// Where a key pair being installed came from.
pub enum Origin<'a> {
    /// A single-party setup run here.
    Setup,
    /// A verified ceremony: its transcript file, the transcript's chain hash (hex) and its
    /// number of contributions. The file is kept beside the keys, so that whoever is
    /// given the keys can be given the transcript too and check it.
    Ceremony {
        transcript: &'a [u8],
        hash: String,
        contributions: u32,
    },
    /// A verified snarkjs ceremony: its zkey, kept beside the keys as the transcript is;
    /// its last contribution's hash (hex); and the number of parties (beacons aside) that
    /// contributed.
    Snarkjs {
        zkey: &'a [u8],
        hash: String,
        parties: u32,
    },
}

/// Writes `pair` as the model's keys for `backend`, with the record of where they came
/// from (and a ceremony's transcript; a single-party setup removes an older one).
pub fn install(
    model: &StoredModel,
    backend: &str,
    pair: &KeyPair,
    origin: Origin,
) -> Result<SetupSummary, ProofError> {
    let (proving, verifying) = write(model, backend, pair)?;
    let transcript_file = transcript_path(model, backend);
    let (origin, parties, transcript) = match origin {
        Origin::Setup => {
            match std::fs::remove_file(&transcript_file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(keys_io(&transcript_file, e)),
            }
            ("setup", 1, None)
        }
        Origin::Snarkjs {
            zkey,
            hash,
            parties,
        } => {
            write_atomic(&transcript_file, zkey, 0o644)
                .map_err(|e| keys_io(&transcript_file, e))?;
            ("snarkjs", parties, Some(hash))
        }
        Origin::Ceremony {
            transcript,
            hash,
            contributions,
        } => {
            write_atomic(&transcript_file, transcript, 0o644)
                .map_err(|e| keys_io(&transcript_file, e))?;
            ("ceremony", contributions, Some(hash))
        }
    };
    let record = Provenance {
        origin: origin.into(),
        parties,
        verifying_key: fingerprint(&verifying),
        made_by: format!("sn2 {}", env!("CARGO_PKG_VERSION")),
        transcript,
    };
    let path = provenance_path(model, backend);
    let json = serde_json::to_vec_pretty(&record).expect("provenance serialises");
    write_atomic(&path, &json, 0o644).map_err(|e| keys_io(&path, e))?;
    Ok(SetupSummary {
        verifying_fingerprint: fingerprint(&verifying),
        proving_fingerprint: fingerprint(&proving),
        proving_bytes: proving.len(),
        verifying_bytes: verifying.len(),
    })
}

/// The ceremony's record kept beside keys finished from it (`keys/<backend>.transcript`):
/// an sn2 transcript, or a snarkjs ceremony's zkey.
pub fn transcript_path(model: &StoredModel, backend: &str) -> PathBuf {
    model.keys_dir().join(format!("{backend}.transcript"))
}

/// Writes `pair` (atomically) as the model's key files for `backend`; returns the files'
/// bytes, proving then verifying.
pub fn write(
    model: &StoredModel,
    backend: &str,
    pair: &KeyPair,
) -> Result<(Vec<u8>, Vec<u8>), ProofError> {
    let proving = encode(KeyKind::Proving, backend, &model.id, &pair.proving);
    let verifying = encode(KeyKind::Verifying, backend, &model.id, &pair.verifying);
    std::fs::create_dir_all(model.keys_dir()).map_err(|e| keys_io(&model.keys_dir(), e))?;
    for (kind, bytes) in [
        (KeyKind::Proving, &proving),
        (KeyKind::Verifying, &verifying),
    ] {
        let path = path(model, backend, kind);
        write_atomic(&path, bytes, 0o644).map_err(|e| keys_io(&path, e))?;
    }
    Ok((proving, verifying))
}

fn keys_io(path: &std::path::Path, error: std::io::Error) -> ProofError {
    ProofError::Model(crate::model::ModelError::Io {
        path: path.to_path_buf(),
        source: error,
    })
}

/// Reads a key file of a stored model; returns the whole file (for its fingerprint).
pub fn read(model: &StoredModel, backend: &str, kind: KeyKind) -> Result<Vec<u8>, ProofError> {
    let path = path(model, backend, kind);
    std::fs::read(&path).map_err(|e| opening(model, backend, &path, e))
}

/// Opens a key file of a stored model to read its payload as a stream: returns the file
/// positioned after a header checked as [`decode`] checks it, and the payload's length.
pub fn open(
    model: &StoredModel,
    backend: &str,
    kind: KeyKind,
) -> Result<(impl std::io::Read, u64), ProofError> {
    use std::io::{Read, Seek};
    let path = path(model, backend, kind);
    let io = |error| keys_io(&path, error);
    let file = std::fs::File::open(&path).map_err(|e| opening(model, backend, &path, e))?;
    let len = file.metadata().map_err(io)?.len();
    let mut file = std::io::BufReader::new(file);
    // The longest header: up to 255 bytes of the backend's name, then the model's id.
    let mut header = Vec::new();
    Read::take(&mut file, (FIXED_HEADER + 255 + 32) as u64)
        .read_to_end(&mut header)
        .map_err(io)?;
    let payload = decode(&header, kind, backend, &model.id)?;
    let header_len = (header.len() - payload.len()) as u64;
    file.seek(std::io::SeekFrom::Start(header_len))
        .map_err(io)?;
    Ok((file, len.saturating_sub(header_len)))
}

fn opening(
    model: &StoredModel,
    backend: &str,
    path: &std::path::Path,
    error: std::io::Error,
) -> ProofError {
    match error.kind() {
        std::io::ErrorKind::NotFound => ProofError::MissingKey {
            name: model.info.name.clone(),
            id: model.id.to_hex(),
            backend: backend.to_string(),
        },
        _ => keys_io(path, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKEND: &str = "groth16-bn254";

    fn model() -> ModelId {
        ModelId([7; 32])
    }

    #[test]
    fn a_key_file_reads_back_as_its_payload() {
        let file = encode(KeyKind::Proving, BACKEND, &model(), b"payload");
        let payload = decode(&file, KeyKind::Proving, BACKEND, &model()).unwrap();
        assert_eq!(payload, b"payload");
    }

    #[test]
    fn a_key_of_another_circuit_revision_is_refused_with_what_to_do() {
        let mut file = encode(KeyKind::Verifying, BACKEND, &model(), b"payload");
        let at = MAGIC.len() + 2 + 1;
        let older = (crate::circuit::REVISION - 1).to_le_bytes();
        file[at..at + 2].copy_from_slice(&older);
        let error = decode(&file, KeyKind::Verifying, BACKEND, &model()).unwrap_err();
        assert!(matches!(error, ProofError::StaleKey { .. }), "{error}");
        assert!(error.to_string().contains("sn2 model setup"), "{error}");
        file[at..at + 2].copy_from_slice(&(crate::circuit::REVISION + 1).to_le_bytes());
        let error = decode(&file, KeyKind::Verifying, BACKEND, &model()).unwrap_err();
        assert!(error.to_string().contains("update sn2"), "{error}");
    }

    #[test]
    fn a_key_file_of_format_1_is_refused_as_made_for_an_earlier_circuit() {
        // Format 1 had no revision field: magic, version, kind, backend, model, payload.
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&1u16.to_le_bytes());
        file.push(KeyKind::Proving as u8);
        file.push(BACKEND.len() as u8);
        file.extend_from_slice(BACKEND.as_bytes());
        file.extend_from_slice(&model().0);
        file.extend_from_slice(b"payload");
        let error = decode(&file, KeyKind::Proving, BACKEND, &model()).unwrap_err();
        assert!(
            matches!(error, ProofError::StaleKey { revision: 1, .. }),
            "{error}"
        );
    }

    #[test]
    fn every_cut_or_changed_header_is_refused_without_a_panic() {
        let file = encode(KeyKind::Proving, BACKEND, &model(), b"");
        for len in 0..file.len() {
            assert!(decode(&file[..len], KeyKind::Proving, BACKEND, &model()).is_err());
        }
        for at in 0..file.len() {
            let mut changed = file.clone();
            changed[at] ^= 1;
            assert!(
                decode(&changed, KeyKind::Proving, BACKEND, &model()).is_err(),
                "byte {at}"
            );
        }
    }
}
