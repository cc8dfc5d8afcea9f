//! `sn2 model import|list|remove|info|eval|setup`: the models directory from the command
//! line.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{ConfigArg, Outcome};
use crate::model::input::DataSet;
use crate::model::{ModelStore, StoredModel};
use crate::proof::{self, keys};

/// Where the models are: `--models-dir`, else the config's `[models] dir`, else the default.
#[derive(Debug, Clone, Args)]
pub struct ModelsDirArgs {
    /// The models directory [default: `[models] dir` of the config, else ~/.sn2/models].
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

impl ModelsDirArgs {
    pub fn store(&self) -> anyhow::Result<ModelStore> {
        self.store_with(self.config.load()?.as_ref())
    }

    /// The store, with the config already loaded by the caller.
    pub fn store_with(&self, config: Option<&crate::config::Config>) -> anyhow::Result<ModelStore> {
        let dir = match (&self.models_dir, config) {
            (Some(dir), _) => crate::fs::expand_home(dir),
            (None, Some(config)) => config.models.dir.clone(),
            (None, None) => {
                crate::fs::expand_home(Path::new(&crate::config::ModelsConfig::default().dir))
            }
        };
        Ok(ModelStore::new(dir))
    }

    pub fn open(&self, reference: &str) -> anyhow::Result<StoredModel> {
        Ok(self.store()?.open(reference)?)
    }

    /// `sn2 model SUBCOMMAND MODEL` with the flags that chose this models directory, so
    /// that a command suggested to the user works as printed.
    pub fn command(&self, subcommand: &str, model: &str) -> String {
        let mut command = format!("sn2 model {subcommand} {model}");
        if let Some(dir) = &self.models_dir {
            command.push_str(&format!(" --models-dir {}", dir.display()));
        }
        if let Some(config) = &self.config.config {
            command.push_str(&format!(" --config {}", config.display()));
        }
        command
    }

    /// A model's key; a missing one is reported with the command that makes it.
    pub fn read_key(
        &self,
        stored: &StoredModel,
        backend: &str,
        kind: keys::KeyKind,
    ) -> anyhow::Result<Vec<u8>> {
        keys::read(stored, backend, kind).map_err(|error| self.key_error(error))
    }

    /// [`Self::read_key`] as a stream of its payload, with the payload's length, its
    /// header checked.
    pub fn open_key(
        &self,
        stored: &StoredModel,
        backend: &str,
        kind: keys::KeyKind,
    ) -> anyhow::Result<(impl std::io::Read, u64)> {
        keys::open(stored, backend, kind).map_err(|error| self.key_error(error))
    }

    fn key_error(&self, error: proof::ProofError) -> anyhow::Error {
        match error {
            proof::ProofError::MissingKey { name, id, backend } => anyhow::anyhow!(
                "model `{name}` has no {backend} keys yet: make them with `{}`",
                self.command("setup", &id)
            ),
            other => other.into(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Import an ONNX file: quantise it and store it; prints the model id on the last line.
    Import {
        /// The ONNX file.
        file: PathBuf,
        /// The model's name [default: the file's name, or its folder's for model.onnx].
        #[arg(long)]
        name: Option<String>,
        /// Calibration data, {"inputs": [[...], ...]} [default: 64 fixed pseudo-random
        /// inputs uniform in [0, 1)].
        #[arg(long, value_name = "FILE")]
        calibration: Option<PathBuf>,
        /// Replace a different model of the same name (a new version), with its keys;
        /// without it a name already taken is refused.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Remove a model with its keys.
    Remove {
        /// Model id, id prefix (at least 8 hex digits) or name.
        model: String,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// List the imported models.
    List {
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Describe a model: shapes, scales, layers, circuit size, key fingerprints.
    Info {
        /// Model id, id prefix (at least 8 hex digits) or name.
        model: String,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Compare the quantised model with the float ONNX model (and labels, if any).
    Eval {
        /// Model id, id prefix (at least 8 hex digits) or name.
        model: String,
        /// Data, {"inputs": [...], "labels"?: [...]} [default: 64 fixed pseudo-random inputs
        /// uniform in [0, 1)].
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Make this node's own proving and verifying keys for a model.
    Setup {
        /// Model id, id prefix (at least 8 hex digits) or name.
        model: String,
        /// The proof backend.
        #[arg(long, default_value = proof::groth16::NAME)]
        backend: String,
        /// Replace the model's keys if it has some: proofs made with the old keys no longer
        /// verify here, and miners must fetch the new proving key.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
}

pub fn read_data(path: &Path) -> anyhow::Result<DataSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    DataSet::parse(&text).with_context(|| format!("{}", path.display()))
}

fn default_name(file: &Path) -> String {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let folder = file
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str());
    match (stem, folder) {
        ("model", Some(folder)) => folder.to_string(),
        _ => stem.to_string(),
    }
}

impl ModelCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            ModelCommand::Import {
                file,
                name,
                calibration,
                replace,
                dir,
            } => {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let name = name.unwrap_or_else(|| default_name(&file));
                let float = crate::model::onnx::import(&bytes)
                    .with_context(|| format!("cannot import {}", file.display()))?;
                let samples = match calibration {
                    Some(path) => read_data(&path)?.inputs,
                    None => crate::model::input::pseudo_random_samples(64, float.input_len()),
                };
                let store = dir.store()?;
                let stored = if replace {
                    store.import_replacing(&bytes, &name, &samples)
                } else {
                    store.import(&bytes, &name, &samples)
                }
                .with_context(|| format!("cannot import {}", file.display()))?;
                println!(
                    "imported `{}` into {}",
                    stored.info.name,
                    store.dir().display()
                );
                println!(
                    "  {} inputs, {} outputs, {} operators",
                    stored.info.input_len,
                    stored.info.output_len,
                    stored.model.nodes().len()
                );
                println!("  calibrated on {} samples", samples.len());
                println!("{}", stored.id);
                Ok(Outcome::Success)
            }
            ModelCommand::List { dir } => {
                let store = dir.store()?;
                let models = store.list()?;
                if models.is_empty() {
                    println!("no models in {}", store.dir().display());
                }
                for model in models {
                    println!("{}  {}", model.id, model.info.name);
                }
                Ok(Outcome::Success)
            }
            ModelCommand::Remove { model, dir } => {
                let store = dir.store()?;
                let stored = store.open(&model)?;
                store.remove(&stored.id)?;
                println!(
                    "removed `{}` ({}) and its keys from {}",
                    stored.info.name,
                    stored.id,
                    store.dir().display()
                );
                Ok(Outcome::Success)
            }
            ModelCommand::Info { model, dir } => {
                let stored = dir.open(&model)?;
                print_info(&stored, &dir)?;
                Ok(Outcome::Success)
            }
            ModelCommand::Eval {
                model,
                data,
                json,
                dir,
            } => {
                let stored = dir.open(&model)?;
                let data = match data {
                    Some(path) => read_data(&path)?,
                    None => DataSet {
                        inputs: crate::model::input::pseudo_random_samples(
                            64,
                            stored.model.input_len(),
                        ),
                        ..DataSet::default()
                    },
                };
                let report = crate::model::eval::compare(&stored, &data)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{report}");
                }
                Ok(Outcome::Success)
            }
            ModelCommand::Setup {
                model,
                backend,
                force,
                dir,
            } => {
                let stored = dir.open(&model)?;
                let system = proof::backend(&backend)
                    .with_context(|| format!("unknown proof backend `{backend}`"))?;
                if !force
                    && let Ok(verifying) =
                        keys::read(&stored, system.name(), keys::KeyKind::Verifying)
                {
                    anyhow::bail!(
                        "model `{}` already has {backend} keys (verifying key {}): new keys would make proofs made with these fail, and miners would need the new proving key; to replace them anyway: {} --force",
                        stored.info.name,
                        keys::fingerprint(&verifying),
                        dir.command("setup", &stored.id.to_hex())
                    );
                }
                eprintln!("setting up keys for `{}` ...", stored.info.name);
                let summary = keys::setup_reporting(&stored, system.as_ref(), &mut |step| {
                    eprintln!("  {step}")
                })?;
                println!(
                    "keys for `{}` ({backend}) in {}",
                    stored.info.name,
                    stored.keys_dir().display()
                );
                println!(
                    "  proving key   {} bytes, sha256 {}",
                    summary.proving_bytes, summary.proving_fingerprint
                );
                println!(
                    "  verifying key {} bytes, sha256 {}",
                    summary.verifying_bytes, summary.verifying_fingerprint
                );
                println!("fingerprint {}", summary.verifying_fingerprint);
                Ok(Outcome::Success)
            }
        }
    }
}

fn print_info(stored: &StoredModel, dir: &ModelsDirArgs) -> anyhow::Result<()> {
    let info = &stored.info;
    println!("model        {}", info.name);
    println!("id           {}", stored.id);
    for input in &info.inputs {
        println!(
            "input        shape {:?}, int8, scale {:e}",
            input.shape, input.scale
        );
    }
    for output in &info.outputs {
        println!(
            "output       shape {:?}, scale {:e}",
            output.shape, output.scale
        );
    }
    println!("calibration  {} samples", info.calibration_samples);
    println!("nodes");
    for node in &info.nodes {
        let became = if node.quantised.is_empty() {
            "fused".to_string()
        } else {
            node.quantised.join(" + ")
        };
        println!(
            "  {:<24} {:<18} -> {:<20} scale {:.3e}, range [{}, {}]",
            node.node, node.operator, became, node.scale, node.range[0], node.range[1]
        );
    }
    let system = proof::default_backend();
    let costs = system.circuit_costs(&stored.model)?;
    let total: usize = costs.iter().map(|(_, n)| n).sum();
    println!("circuit      {total} constraints ({})", system.name());
    for (operator, count) in costs {
        println!("  {operator:<18} {count}");
    }
    match keys::read(stored, system.name(), keys::KeyKind::Verifying) {
        Ok(bytes) => println!("fingerprint  {} (verifying key)", keys::fingerprint(&bytes)),
        Err(_) => println!(
            "fingerprint  none yet: run `{}`",
            dir.command("setup", &stored.id.to_hex())
        ),
    }
    Ok(())
}
