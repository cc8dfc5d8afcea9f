//! `sn2 prove` and `sn2 verify`: proofs of inference from the command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use super::keys_cmd::WalletArgs;
use super::model_cmd::ModelsDirArgs;
use crate::keys::PublicKey;
use crate::proof::file::{FORMAT, ProofFile};
use crate::proof::keys::{self, KeyKind};
use crate::proof::{self, Binding, ProofError, Statement};

#[derive(Debug, Args)]
pub struct ProveArgs {
    /// Model id, id prefix (at least 8 hex digits) or name.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    input: InputArgs,
    /// Where to write the proof file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The miner the proof is bound to (SS58) [default: the wallet's hotkey].
    #[arg(long, value_name = "SS58")]
    miner: Option<String>,
    /// The request nonce (64 hex digits) [default: random].
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Also write the proof's witness as circom's `.wtns`, so that `snarkjs wtns check`
    /// checks it against the circuit `sn2 ceremony r1cs` writes, without sn2.
    #[arg(long, value_name = "FILE")]
    wtns: Option<PathBuf>,
    #[command(flatten)]
    dir: ModelsDirArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Model id, id prefix (at least 8 hex digits) or name.
    #[arg(long)]
    model: String,
    /// The proof file; several (`--proof A --proof B`, or `--proof A B`) are checked in
    /// one batch, each named with its verdict.
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    proof: Vec<PathBuf>,
    /// Also require the proof to be bound to this miner (SS58).
    #[arg(long, value_name = "SS58")]
    miner: Option<String>,
    /// Also require the proof to be bound to this nonce (hex).
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Also write the proof, once it holds here, as snarkjs's files in DIR
    /// (`verification_key.json`, `public.json`, `proof.json`), so that `snarkjs groth16
    /// verify` checks it without sn2. One proof only.
    #[arg(long, value_name = "DIR")]
    snarkjs: Option<PathBuf>,
    #[command(flatten)]
    dir: ModelsDirArgs,
}

/// The input of a proof, as `sn2 prove` and `sn2 infer` take it.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// The input, {"input_data": [[...]]} (flattened or nested, in the model's units), or
    /// a data set {"inputs": [[...], ...]} such as a model's test.json, of which
    /// `--sample` picks one.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Which input of a data set file to take (0 is the first).
    #[arg(long, value_name = "N", default_value_t = 0)]
    sample: usize,
    /// Take inputs far outside the range the model was calibrated on (more than twice its
    /// bound), clamped to that range; without it they are refused.
    #[arg(long)]
    clamp: bool,
}

impl InputArgs {
    /// Reads the input and quantises it for `model`. Values the input integers cannot
    /// hold are clamped, and the user told; values more than twice the range's bound are
    /// refused unless `--clamp`, since the proof would be of an input other than the one
    /// given.
    pub fn read(&self, model: &crate::model::QuantModel) -> anyhow::Result<Vec<i8>> {
        let path = &self.input;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let values = match crate::model::input::parse_input(&text) {
            Ok(values) => values,
            Err(error) => match crate::model::input::DataSet::parse(&text) {
                Ok(mut data) => {
                    let count = data.inputs.len();
                    anyhow::ensure!(
                        self.sample < count,
                        "{}: --sample {} is past the data set's {count} inputs",
                        path.display(),
                        self.sample
                    );
                    if count > 1 {
                        eprintln!(
                            "{} holds {count} inputs; taking input {} (--sample picks another)",
                            path.display(),
                            self.sample
                        );
                    }
                    data.inputs.swap_remove(self.sample)
                }
                Err(_) => return Err(error).with_context(|| format!("{}", path.display())),
            },
        };
        let input = model
            .quantize_input(&values)
            .with_context(|| format!("{}", path.display()))?;
        let outside = model.inputs_out_of_range(&values);
        if let Some(far) = outside.iter().find(|o| o.excess() > 2.0)
            && !self.clamp
        {
            anyhow::bail!(
                "{}: input value {} (index {}) lies far outside the range the model was calibrated on, [{:.4}, {:.4}]; it would be taken as {}: give the input in the model's units, or pass --clamp to take it clamped",
                path.display(),
                far.value,
                far.index,
                far.lo,
                far.hi,
                if (far.value as f64) < far.lo {
                    far.lo
                } else {
                    far.hi
                }
            );
        }
        if let Some(first) = outside.first() {
            eprintln!(
                "warning: {} of {} input values lie outside [{:.4}, {:.4}], the range the model was calibrated on, and were clamped to it (the first: {} at index {})",
                outside.len(),
                values.len(),
                first.lo,
                first.hi,
                first.value,
                first.index
            );
        }
        Ok(input)
    }
}

fn parse_nonce(text: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .context("the nonce must be 64 hex digits (32 bytes)")
}

impl ProveArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let config = self.dir.config.load()?;
        let stored = self.dir.store_with(config.as_ref())?.open(&self.model)?;
        let input = self.input.read(&stored.model)?;
        let miner = match &self.miner {
            Some(address) => PublicKey::from_ss58(address).context("--miner")?,
            None => self
                .wallet
                .location(config.as_ref())?
                .load_hotkey()
                .context("no --miner given, and the wallet's hotkey cannot be loaded")?
                .public(),
        };
        let nonce = match &self.nonce {
            Some(text) => parse_nonce(text)?,
            None => {
                let mut nonce = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
                nonce
            }
        };
        let system = proof::default_backend();
        let verifying = self
            .dir
            .read_key(&stored, system.name(), KeyKind::Verifying)?;
        let binding = Binding::new(&stored.id, &miner, &nonce);
        // The proving key is read as a stream: its file's bytes never sit in memory beside
        // the points they become (for digits-resnet, 12 MB of fresh pages fewer), and the
        // model runs while it is read.
        let proven = {
            let (mut proving, len) = self
                .dir
                .open_key(&stored, system.name(), KeyKind::Proving)?;
            let model = Arc::new(stored.model.clone());
            system.prove_once(model, &mut proving, len, &input, &binding)?
        };
        let file = ProofFile {
            format: FORMAT.into(),
            backend: system.name().into(),
            model: stored.id.to_hex(),
            verifying_key: keys::fingerprint(&verifying),
            miner: miner.to_ss58(),
            nonce: hex::encode(nonce),
            input,
            output_values: stored.model.dequantize_output(&proven.output),
            output: proven.output,
            proof: ProofFile::encode_proof(&proven.proof),
        };
        let json = serde_json::to_string_pretty(&file)?;
        crate::fs::write_atomic(&self.out, json.as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", self.out.display()))?;
        println!("output {:?}", file.output_values);
        println!(
            "proof written to {} ({} bytes of proof)",
            self.out.display(),
            proven.proof.len()
        );
        if let Some(path) = &self.wtns {
            let witness = proof::groth16::circom::wtns(&stored.model, &file.input, &binding)?;
            crate::fs::write_atomic(path, &witness, 0o644)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "witness written to {} (check it: `snarkjs wtns check CIRCUIT.r1cs {}`, with the circuit of `sn2 ceremony r1cs`)",
                path.display(),
                path.display()
            );
        }
        Ok(Outcome::Success)
    }
}

impl VerifyArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        anyhow::ensure!(
            self.snarkjs.is_none() || self.proof.len() == 1,
            "--snarkjs writes one proof's files: give one --proof"
        );
        let stored = self.dir.open(&self.model)?;
        // Each file is read and checked against the flags on its own; the proofs that pass
        // are verified together, per backend.
        let mut verdicts: Vec<anyhow::Result<Vec<f64>>> = Vec::new();
        let mut claims: Vec<(usize, ProofFile, Statement, Vec<u8>)> = Vec::new();
        for (index, path) in self.proof.iter().enumerate() {
            match self.claim(&stored, path) {
                Ok((file, statement, proof)) => {
                    claims.push((index, file, statement, proof));
                    verdicts.push(Ok(Vec::new()));
                }
                Err(error) => verdicts.push(Err(error)),
            }
        }
        let mut convinces = None;
        let mut backends: Vec<String> = claims.iter().map(|c| c.1.backend.clone()).collect();
        backends.sort();
        backends.dedup();
        for backend in backends {
            let of_backend: Vec<_> = claims.iter().filter(|c| c.1.backend == backend).collect();
            let checked = (|| -> anyhow::Result<Vec<Result<(), ProofError>>> {
                let system = proof::backend(&backend)
                    .with_context(|| format!("unknown proof backend `{backend}`"))?;
                let verifying = self
                    .dir
                    .read_key(&stored, system.name(), KeyKind::Verifying)?;
                let payload =
                    keys::decode(&verifying, KeyKind::Verifying, system.name(), &stored.id)?;
                let verifier = system.verifier(&stored.model, payload)?;
                let batch: Vec<(&Statement, &[u8])> = of_backend
                    .iter()
                    .map(|(_, _, statement, proof)| (statement, proof.as_slice()))
                    .collect();
                let ours = keys::fingerprint(&verifying);
                // A file that names another key is refused whatever the proof says: what
                // it states of itself must be what was checked.
                let results = verifier
                    .verify_batch(&batch)
                    .into_iter()
                    .zip(&of_backend)
                    .map(|(result, (_, file, _, _))| {
                        if file.verifying_key != ours {
                            Err(ProofError::OtherKey {
                                named: file.verifying_key.clone(),
                                ours: ours.clone(),
                            })
                        } else {
                            result
                        }
                    })
                    .collect();
                let record = keys::provenance(&stored, system.name(), &verifying);
                convinces = Some(keys::whom_it_convinces(record.as_ref()));
                Ok(results)
            })();
            match checked {
                Ok(results) => {
                    for ((index, file, _, _), result) in of_backend.iter().zip(results) {
                        verdicts[*index] = result
                            .map(|()| stored.model.dequantize_output(&file.output))
                            .map_err(anyhow::Error::from);
                    }
                }
                Err(error) => {
                    for (index, ..) in &of_backend {
                        verdicts[*index] = Err(anyhow::anyhow!("{error:#}"));
                    }
                }
            }
        }
        let single = self.proof.len() == 1;
        let mut all_hold = true;
        for (path, verdict) in self.proof.iter().zip(verdicts) {
            match (verdict, single) {
                (Ok(values), true) => {
                    println!("output {values:?}");
                    println!("OK");
                }
                (Ok(values), false) => println!("{}: OK, output {values:?}", path.display()),
                (Err(error), true) => {
                    eprintln!("sn2: proof rejected: {error:#}");
                    all_hold = false;
                }
                (Err(error), false) => {
                    println!("{}: REJECTED", path.display());
                    eprintln!("sn2: {}: proof rejected: {error:#}", path.display());
                    all_hold = false;
                }
            }
        }
        if let Some(convinces) = convinces
            && all_hold
        {
            eprintln!("note: {convinces}");
        }
        if let (Some(dir), true, [(_, file, statement, proof)]) =
            (&self.snarkjs, all_hold, &claims[..])
        {
            self.write_snarkjs(dir, &stored, file, statement, proof)?;
        }
        Ok(if all_hold {
            Outcome::Success
        } else {
            Outcome::Failure
        })
    }

    /// Writes a verified proof as snarkjs's three files in `dir`.
    fn write_snarkjs(
        &self,
        dir: &std::path::Path,
        stored: &crate::model::StoredModel,
        file: &ProofFile,
        statement: &Statement,
        proof: &[u8],
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            file.backend == proof::groth16::NAME,
            "--snarkjs: the proof is of backend `{}`; snarkjs checks only {}",
            file.backend,
            proof::groth16::NAME
        );
        let verifying = self
            .dir
            .read_key(stored, &file.backend, KeyKind::Verifying)?;
        let payload = keys::decode(&verifying, KeyKind::Verifying, &file.backend, &stored.id)?;
        let files = proof::groth16::snarkjs::export(&stored.model, payload, statement, proof)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut written = Vec::new();
        for (name, value) in [
            ("verification_key.json", &files.verification_key),
            ("public.json", &files.public),
            ("proof.json", &files.proof),
        ] {
            let path = dir.join(name);
            let json = serde_json::to_string_pretty(value)?;
            crate::fs::write_atomic(&path, json.as_bytes(), 0o644)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path.display().to_string());
        }
        eprintln!(
            "snarkjs's files written; to check the proof with snarkjs: snarkjs groth16 verify {}",
            written.join(" ")
        );
        Ok(())
    }

    /// A proof file's statement and proof, after checking it is for this model (and the
    /// miner and nonce the flags name).
    fn claim(
        &self,
        stored: &crate::model::StoredModel,
        path: &std::path::Path,
    ) -> anyhow::Result<(ProofFile, Statement, Vec<u8>)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file = ProofFile::parse(&text)?;
        if file.model_id()? != stored.id {
            anyhow::bail!(
                "the proof is for model {}, not {} ({})",
                file.model,
                stored.id,
                stored.info.name
            );
        }
        if let Some(miner) = &self.miner
            && PublicKey::from_ss58(miner).context("--miner")?.to_ss58() != file.miner
        {
            anyhow::bail!("the proof is bound to miner {}, not {miner}", file.miner);
        }
        if let Some(nonce) = &self.nonce
            && parse_nonce(nonce)? != file.nonce_bytes()?
        {
            anyhow::bail!("the proof is bound to nonce {}, not {nonce}", file.nonce);
        }
        let proven_values = stored.model.dequantize_output(&file.output);
        let stated_values_match = file.output_values.len() == proven_values.len()
            && file
                .output_values
                .iter()
                .zip(&proven_values)
                .all(|(stated, proven)| (stated - proven).abs() <= 1e-9 * proven.abs().max(1.0));
        if !stated_values_match {
            anyhow::bail!(
                "the file's `output_values` are not its proven `output` times the model's output scale: the file was edited after it was proved, so none of it is trusted"
            );
        }
        let statement = file.statement()?;
        let proof = file.proof_bytes()?;
        Ok((file, statement, proof))
    }
}
