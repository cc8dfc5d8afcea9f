//! The models directory: one folder per model id holding the canonical model, the ONNX it
//! came from (the float reference), a description, and the proof keys.
//!
//! ```text
//! DIR/<id>/model.sn2m    canonical bytes; their SHA-256 is <id>, checked on every load
//! DIR/<id>/source.onnx   the imported ONNX file
//! DIR/<id>/info.json     name, shapes, scales, per-layer quantisation
//! DIR/<id>/keys/         proving and verifying keys (see `proof::keys`)
//! DIR/<id>/fetched.json  for a model fetched by its id rather than imported: from where
//! ```
//!
//! A model is named on the command line by its id, a unique prefix of it (8 or more hex
//! digits), or its name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::quantize::NodeReport;
use super::{ModelError, ModelId, QuantModel, codec, onnx, quantize};
use crate::fs::write_atomic;

const MODEL_FILE: &str = "model.sn2m";
const SOURCE_FILE: &str = "source.onnx";
const INFO_FILE: &str = "info.json";
const KEYS_DIR: &str = "keys";
const FETCHED_FILE: &str = "fetched.json";
const MIN_PREFIX: usize = 8;

/// The bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub source_sha256: String,
    /// Each input's shape and scale (its values are int8).
    pub inputs: Vec<TensorInfo>,
    /// Each output's shape and scale.
    pub outputs: Vec<TensorInfo>,
    pub input_len: usize,
    pub output_len: usize,
    pub calibration_samples: usize,
    /// What each ONNX node became.
    pub nodes: Vec<NodeReport>,
    pub imported_by: String,
}

impl ModelInfo {
    fn describe(
        model: &QuantModel,
        name: &str,
        source_sha256: String,
        calibration_samples: usize,
        nodes: Vec<NodeReport>,
    ) -> Self {
        Self {
            name: name.to_string(),
            source_sha256,
            inputs: model
                .inputs()
                .iter()
                .map(|i| TensorInfo {
                    shape: i.shape.clone(),
                    scale: i.scale,
                })
                .collect(),
            outputs: model
                .outputs()
                .iter()
                .map(|o| TensorInfo {
                    shape: model.types()[o.tensor].shape.clone(),
                    scale: o.scale,
                })
                .collect(),
            input_len: model.input_len(),
            output_len: model.output_len(),
            calibration_samples,
            nodes,
            imported_by: format!("sn2 {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A tensor at the model's edge: its shape and the scale of its integers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    pub scale: f32,
}

/// A model loaded from the store, its bytes checked against its id.
#[derive(Debug, Clone)]
pub struct StoredModel {
    pub id: ModelId,
    pub model: QuantModel,
    pub info: ModelInfo,
    pub dir: PathBuf,
}

impl StoredModel {
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join(KEYS_DIR)
    }

    /// The float model of the imported ONNX, for comparisons.
    pub fn float_model(&self) -> Result<super::FloatModel, ModelError> {
        let path = self.dir.join(SOURCE_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io { path, source })?;
        onnx::import(&bytes)
    }
}

#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ModelStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Imports ONNX bytes: parse, quantise with `calibration`, store. Importing the same
    /// model twice gives the same id and leaves one copy. A name must name one model: a
    /// different model under a name already taken is refused.
    pub fn import(
        &self,
        onnx_bytes: &[u8],
        name: &str,
        calibration: &[Vec<f32>],
    ) -> Result<StoredModel, ModelError> {
        self.import_with(onnx_bytes, name, calibration, false)
    }

    /// As [`ModelStore::import`], but a different model under the same name is replaced:
    /// removed, with its keys, once the new one is stored (a new version of a model).
    pub fn import_replacing(
        &self,
        onnx_bytes: &[u8],
        name: &str,
        calibration: &[Vec<f32>],
    ) -> Result<StoredModel, ModelError> {
        self.import_with(onnx_bytes, name, calibration, true)
    }

    fn import_with(
        &self,
        onnx_bytes: &[u8],
        name: &str,
        calibration: &[Vec<f32>],
        replace: bool,
    ) -> Result<StoredModel, ModelError> {
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            return Err(ModelError::Store(format!(
                "model name `{name}` must be 1 to 64 characters without `/`"
            )));
        }
        let float = onnx::import(onnx_bytes)?;
        let (model, nodes) = quantize::quantize(&float, calibration)?;
        let canonical = codec::encode(&model);
        let id = ModelId::of(&canonical);
        let namesakes: Vec<ModelId> = self
            .list()?
            .into_iter()
            .filter(|other| other.info.name == name && other.id != id)
            .map(|other| other.id)
            .collect();
        if let (Some(other), false) = (namesakes.first(), replace) {
            return Err(ModelError::Store(format!(
                "a different model named `{name}` is already in {} (id {other}): give this one another name with --name, replace that one with --replace, or remove it first with `sn2 model remove {other}`",
                self.dir.display()
            )));
        }
        let info = ModelInfo::describe(
            &model,
            name,
            hex::encode(Sha256::digest(onnx_bytes)),
            calibration.len(),
            nodes,
        );
        let dir = self.dir.join(id.to_hex());
        std::fs::create_dir_all(dir.join(KEYS_DIR)).map_err(io(&dir))?;
        let info_json = serde_json::to_vec_pretty(&info).expect("info serialises");
        for (file, bytes) in [
            (SOURCE_FILE, onnx_bytes),
            (INFO_FILE, &info_json[..]),
            (MODEL_FILE, &canonical[..]),
        ] {
            let path = dir.join(file);
            write_atomic(&path, bytes, 0o644).map_err(io(&path))?;
        }
        for other in namesakes {
            self.remove(&other)?;
        }
        Ok(StoredModel {
            id,
            model,
            info,
            dir,
        })
    }

    /// Stores a canonical model file fetched by its id (`origin` says from where). Bytes
    /// that do not hash to `id`, or do not decode, are refused and nothing is written.
    pub fn add_canonical(
        &self,
        id: &ModelId,
        canonical: &[u8],
        name: &str,
        origin: &str,
    ) -> Result<StoredModel, ModelError> {
        if ModelId::of(canonical) != *id {
            return Err(ModelError::Store(format!(
                "the model's bytes hash to {}, not to its id {id}",
                ModelId::of(canonical)
            )));
        }
        let model = codec::decode(canonical)?;
        let name = if name.is_empty() || name.contains('/') || name.len() > 64 {
            id.to_hex()[..16].to_string()
        } else {
            name.to_string()
        };
        let info = ModelInfo::describe(&model, &name, String::new(), 0, Vec::new());
        let dir = self.dir.join(id.to_hex());
        std::fs::create_dir_all(dir.join(KEYS_DIR)).map_err(io(&dir))?;
        let info_json = serde_json::to_vec_pretty(&info).expect("info serialises");
        let fetched = serde_json::to_vec_pretty(&serde_json::json!({ "from": origin }))
            .expect("json serialises");
        // The model file last: a folder without it is not a model, whatever else it holds.
        for (file, bytes) in [
            (FETCHED_FILE, &fetched[..]),
            (INFO_FILE, &info_json[..]),
            (MODEL_FILE, canonical),
        ] {
            let path = dir.join(file);
            write_atomic(&path, bytes, 0o644).map_err(io(&path))?;
        }
        Ok(StoredModel {
            id: *id,
            model,
            info,
            dir,
        })
    }

    /// Whether `id` was fetched by id rather than imported.
    pub fn is_fetched(&self, id: &ModelId) -> bool {
        self.dir.join(id.to_hex()).join(FETCHED_FILE).exists()
    }

    /// Removes a model fetched by id (with its keys); imported models are never removed
    /// this way, only by [`ModelStore::remove`].
    pub fn remove_fetched(&self, id: &ModelId) -> Result<(), ModelError> {
        if !self.is_fetched(id) {
            return Err(ModelError::Store(format!(
                "{} was imported, not fetched",
                id
            )));
        }
        self.remove(id)
    }

    /// Removes a model with its keys.
    pub fn remove(&self, id: &ModelId) -> Result<(), ModelError> {
        let dir = self.dir.join(id.to_hex());
        // The model file first, so that a folder half removed is no longer a model.
        let model = dir.join(MODEL_FILE);
        std::fs::remove_file(&model).map_err(io(&model))?;
        std::fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    /// The models fetched by id, with the bytes each takes on disk (its keys included)
    /// and when it was stored or last used (its folder's modification time).
    pub fn fetched(&self) -> Vec<(ModelId, u64, std::time::SystemTime)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let id = ModelId::from_hex(entry.file_name().to_str()?)?;
                let dir = entry.path();
                dir.join(FETCHED_FILE).exists().then_some(())?;
                let used = std::fs::metadata(dir.join(FETCHED_FILE))
                    .and_then(|m| m.modified())
                    .ok()?;
                Some((id, dir_bytes(&dir), used))
            })
            .collect()
    }

    /// The canonical bytes of a stored model, checked against its id.
    pub fn canonical(&self, id: &ModelId) -> Result<Vec<u8>, ModelError> {
        let path = self.dir.join(id.to_hex()).join(MODEL_FILE);
        let canonical = std::fs::read(&path).map_err(io(&path))?;
        if ModelId::of(&canonical) != *id {
            return Err(ModelError::Store(format!(
                "{} does not hash to its id: the file is damaged; import the model again",
                path.display()
            )));
        }
        Ok(canonical)
    }

    /// Loads a model by id, checking that its bytes still hash to it.
    pub fn load(&self, id: &ModelId) -> Result<StoredModel, ModelError> {
        let dir = self.dir.join(id.to_hex());
        if !dir.join(MODEL_FILE).exists() {
            return Err(ModelError::Store(format!(
                "no model {id} in {} (`sn2 model list` shows what is there; `sn2 model import` adds one)",
                self.dir.display()
            )));
        }
        let canonical = self.canonical(id)?;
        let model = codec::decode(&canonical)?;
        let info_path = dir.join(INFO_FILE);
        let info_bytes = std::fs::read(&info_path).map_err(io(&info_path))?;
        let info = serde_json::from_slice(&info_bytes)
            .map_err(|e| ModelError::Store(format!("{}: {e}", info_path.display())))?;
        Ok(StoredModel {
            id: *id,
            model,
            info,
            dir,
        })
    }

    /// Loads a model by id, id prefix or name.
    pub fn open(&self, reference: &str) -> Result<StoredModel, ModelError> {
        let id = self.resolve(reference)?;
        self.load(&id)
    }

    /// Every model in the store, by id (unreadable entries are skipped).
    pub fn list(&self) -> Result<Vec<StoredModel>, ModelError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut models: Vec<StoredModel> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| ModelId::from_hex(entry.file_name().to_str()?))
            .filter_map(|id| self.load(&id).ok())
            .collect();
        models.sort_by(|a, b| a.info.name.cmp(&b.info.name).then(a.id.cmp(&b.id)));
        Ok(models)
    }

    fn resolve(&self, reference: &str) -> Result<ModelId, ModelError> {
        if let Some(id) = ModelId::from_hex(reference) {
            return Ok(id);
        }
        let models = self.list()?;
        let hex = !reference.is_empty() && reference.chars().all(|c| c.is_ascii_hexdigit());
        let is_prefix = hex && reference.len() >= MIN_PREFIX;
        let matches: Vec<&StoredModel> = models
            .iter()
            .filter(|m| {
                m.info.name == reference
                    || (is_prefix && m.id.to_hex().starts_with(&reference.to_ascii_lowercase()))
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.id),
            [] if hex && !is_prefix => Err(ModelError::Store(format!(
                "`{reference}` is too short for an id prefix: give at least {MIN_PREFIX} hex digits of the id, or the model's name (`sn2 model list` shows both)"
            ))),
            [] => Err(ModelError::Store(format!(
                "no model `{reference}` in {} (import one with `sn2 model import`)",
                self.dir.display()
            ))),
            many => Err(ModelError::Store(format!(
                "`{reference}` names {} models; use the id: {}",
                many.len(),
                many.iter()
                    .map(|m| m.id.to_hex())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}
