//! `sn2 ceremony`: the public setups that make keys everyone can trust. Phase 1 checks a
//! powers-of-tau file; phase 2 runs a model's ceremony (init, contribute, verify, finish)
//! through a transcript file that passes from contributor to contributor.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;

use super::keys_cmd::WalletArgs;
use super::model_cmd::ModelsDirArgs;
use super::{ConfigArg, Outcome};
use crate::model::StoredModel;
use crate::proof::groth16::ceremony::{self, Transcript};
use crate::proof::groth16::zkey;
use crate::proof::keys;
use crate::proof::ptau::Ptau;

#[derive(Debug, Subcommand)]
pub enum CeremonyCommand {
    /// Powers of tau (phase 1), in snarkjs's `.ptau` format.
    #[command(subcommand)]
    Ptau(PtauCommand),
    /// Start a model's ceremony (phase 2) from a prepared powers-of-tau file: writes a
    /// transcript whose key anyone could forge with until someone contributes.
    Init {
        /// Model id, id prefix (at least 8 hex digits) or name.
        model: String,
        /// The powers of tau, prepared for phase 2 (`snarkjs powersoftau prepare phase2`).
        #[arg(long, value_name = "FILE")]
        ptau: PathBuf,
        /// Where to write the transcript.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Add a contribution from this machine's randomness to a transcript (in place, or to
    /// `--out`) and print its hash. The secret is never written anywhere.
    Contribute {
        transcript: PathBuf,
        /// Write the new transcript here instead of replacing the old one.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        signing: SignArgs,
    },
    /// Contribute to the ceremony a validator runs for a model, through its user API:
    /// fetch the transcript it holds, add a contribution from this machine's randomness,
    /// and submit the result, which the validator verifies and carries into the model's
    /// keys. Prints the contribution's hash, which `sn2 infer --contribution` then finds
    /// in the ceremony that made the keys.
    Join(super::join_cmd::JoinArgs),
    /// Check a whole transcript against its model and powers of tau, and list every
    /// contribution's hash, so that each contributor can find their own.
    Verify {
        /// An sn2 transcript, or a snarkjs ceremony's `.zkey`.
        transcript: PathBuf,
        /// The powers of tau the ceremony started from.
        #[arg(long, value_name = "FILE")]
        ptau: PathBuf,
        /// The model, for a `.zkey` (which does not name it) [default: the transcript's].
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Write the model's circuit as circom's `.r1cs`, which snarkjs reads: `snarkjs r1cs
    /// info`, `snarkjs wtns check` (with the witness `sn2 prove --wtns` writes), or a
    /// ceremony in snarkjs's own format (`snarkjs zkey new`).
    R1cs {
        /// Model id, id prefix (at least 8 hex digits) or name.
        model: String,
        /// Where to write the circuit.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Check a ceremony run with snarkjs on the circuit of `sn2 ceremony r1cs` (`snarkjs
    /// zkey new`, then `zkey contribute` by each party) against the model and the powers
    /// of tau, as `snarkjs zkey verify` does, and install its keys as the model's.
    Import {
        /// Model id, id prefix (at least 8 hex digits) or name.
        model: String,
        /// The ceremony's last `.zkey`.
        zkey: PathBuf,
        /// The powers of tau the ceremony started from (`snarkjs zkey new`'s).
        #[arg(long, value_name = "FILE")]
        ptau: PathBuf,
        /// Replace keys the model already has.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
    /// Verify a transcript and install its keys as the model's, recording the transcript's
    /// hash as where they came from.
    Finish {
        transcript: PathBuf,
        /// The powers of tau the ceremony started from.
        #[arg(long, value_name = "FILE")]
        ptau: PathBuf,
        /// Replace keys the model already has.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dir: ModelsDirArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PtauCommand {
    /// Check a `.ptau` file: every point on its curve and in its subgroup, and every
    /// power consistent with the one before (the contributions are counted, not replayed).
    Verify {
        /// The `.ptau` file (snarkjs's `powersoftau new/contribute/prepare phase2`, or a
        /// Perpetual Powers of Tau / Hermez file for bn128).
        file: PathBuf,
    },
}

impl CeremonyCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            CeremonyCommand::Ptau(PtauCommand::Verify { file }) => verify_ptau(&file),
            CeremonyCommand::Join(join) => join.run(),
            CeremonyCommand::Init {
                model,
                ptau,
                out,
                dir,
            } => {
                let stored = dir.open(&model)?;
                let ptau = read_ptau(&ptau)?;
                let started = Instant::now();
                let transcript =
                    Transcript::init(stored.id, &ceremony::circuit(&stored.model), &ptau)?;
                write_transcript(&out, &transcript)?;
                println!(
                    "{}: ceremony for `{}` started ({:.1} s); its key is forgeable until someone contributes: `sn2 ceremony contribute {}`",
                    out.display(),
                    stored.info.name,
                    started.elapsed().as_secs_f64(),
                    out.display()
                );
                Ok(Outcome::Success)
            }
            CeremonyCommand::R1cs { model, out, dir } => {
                let stored = dir.open(&model)?;
                let circuit = crate::proof::groth16::circom::r1cs(&stored.model);
                crate::fs::write_atomic(&out, &circuit, 0o644)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!(
                    "{}: the circuit of `{}` ({}), {} bytes; its wires are sn2's variables in order (the constant one, the input, the binding, the output, then the witness)",
                    out.display(),
                    stored.info.name,
                    stored.id.to_hex(),
                    circuit.len()
                );
                Ok(Outcome::Success)
            }
            CeremonyCommand::Import {
                model,
                zkey,
                ptau,
                force,
                dir,
            } => import_zkey(&model, &zkey, &ptau, force, &dir),
            CeremonyCommand::Contribute {
                transcript,
                out,
                signing,
            } => {
                let signer = signing.signer()?;
                let mut read = read_transcript(&transcript)?;
                let started = Instant::now();
                let hash = read.contribute(signer.as_ref());
                let out = out.unwrap_or(transcript);
                write_transcript(&out, &read)?;
                let by = signer.map_or("unsigned".to_string(), |key| {
                    format!("signed by {}", key.ss58())
                });
                println!(
                    "contribution {} added to {} ({:.1} s, {by}); its hash:\n{}",
                    read.contributions.len(),
                    out.display(),
                    started.elapsed().as_secs_f64(),
                    hex::encode(hash)
                );
                println!(
                    "keep the hash: `sn2 ceremony verify` lists every contribution's, so you can see that yours is in the ceremony that made a key"
                );
                Ok(Outcome::Success)
            }
            CeremonyCommand::Verify {
                transcript,
                ptau,
                model,
                dir,
            } => verify_record(&transcript, &ptau, model.as_deref(), &dir),
            CeremonyCommand::Finish {
                transcript,
                ptau,
                force,
                dir,
            } => {
                let (stored, read, verified) = match verified(&transcript, &ptau, &dir)? {
                    Ok(checked) => checked,
                    Err(error) => {
                        eprintln!("sn2: {}: refused: {}", transcript.display(), reason(&error));
                        return Ok(Outcome::Failure);
                    }
                };
                anyhow::ensure!(
                    !read.contributions.is_empty(),
                    "the transcript has no contribution, so anyone could forge proofs its key accepts: contribute first (`sn2 ceremony contribute {}`)",
                    transcript.display()
                );
                let backend = crate::proof::groth16::NAME;
                refuse_to_replace(&stored, force)?;
                let summary = keys::install(
                    &stored,
                    backend,
                    &read.key_pair(),
                    keys::Origin::Ceremony {
                        transcript: &read.to_bytes(),
                        hash: hex::encode(verified.transcript_hash),
                        contributions: read.contributions.len() as u32,
                    },
                )?;
                println!(
                    "keys for `{}` from ceremony {} ({} contributions) in {}",
                    stored.info.name,
                    hex::encode(verified.transcript_hash),
                    read.contributions.len(),
                    stored.keys_dir().display()
                );
                println!("fingerprint {}", summary.verifying_fingerprint);
                Ok(Outcome::Success)
            }
        }
    }
}

/// Whether, and with which hotkey, to sign a contribution.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Sign the contribution with the wallet's hotkey, so that the transcript names it as
    /// the contributor (validators count signed contributions toward a ceremony's
    /// quorum); without it the contribution is anonymous, and its hash is your record.
    #[arg(long)]
    sign: bool,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    config: ConfigArg,
}

impl SignArgs {
    /// With `--sign`, the wallet's hotkey.
    pub fn signer(&self) -> anyhow::Result<Option<crate::keys::Hotkey>> {
        if !self.sign {
            return Ok(None);
        }
        let location = self.wallet.location(self.config.load()?.as_ref())?;
        let hotkey = location.load_hotkey().context(
            "--sign: the wallet's hotkey cannot be loaded (name it with --wallet-name and --wallet-hotkey)",
        )?;
        Ok(Some(hotkey))
    }
}

/// `sn2 ceremony verify`: checks a ceremony's record (an sn2 transcript or a snarkjs zkey),
/// as miners and `sn2 infer` check what validators serve, and lists its contributions.
fn verify_record(
    file: &Path,
    ptau: &Path,
    model: Option<&str>,
    dir: &ModelsDirArgs,
) -> anyhow::Result<Outcome> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let stored = match model {
        Some(model) => dir.open(model)?,
        None if zkey::is_zkey(&bytes) => anyhow::bail!(
            "{}: a snarkjs zkey does not name its model: give --model",
            file.display()
        ),
        None => {
            let read =
                Transcript::read(&bytes).with_context(|| format!("{}: refused", file.display()))?;
            dir.open(&read.model.to_hex()).with_context(|| {
                format!(
                    "the transcript is for model {}: import that model first",
                    read.model.to_hex()
                )
            })?
        }
    };
    let ptau = read_ptau(ptau)?;
    let checked =
        match crate::proof::groth16::check_ceremony(&bytes, &stored.id, &stored.model, &ptau) {
            Ok(checked) => checked,
            Err(error) => {
                eprintln!("sn2: {}: refused: {}", file.display(), reason(&error));
                return Ok(Outcome::Failure);
            }
        };
    let count = checked.contributions.len();
    println!(
        "{}: a valid ceremony for `{}` ({}), {count} contribution{}:",
        file.display(),
        stored.info.name,
        stored.id.to_hex(),
        if count == 1 { "" } else { "s" }
    );
    for (i, (hash, signer)) in checked
        .contributions
        .iter()
        .zip(&checked.signers)
        .enumerate()
    {
        match signer {
            Some(key) => println!("  {:>3}  {hash}  signed by {key}", i + 1),
            None => println!("  {:>3}  {hash}", i + 1),
        }
    }
    println!("transcript {}", checked.hash);
    if checked.parties == 0 {
        eprintln!("sn2: warning: no one has contributed: anyone can forge proofs this key accepts");
    }
    Ok(Outcome::Success)
}

/// Why a ceremony was refused, without the word the command's message starts with.
fn reason(error: &ceremony::CeremonyError) -> String {
    let text = error.to_string();
    text.strip_prefix("refused: ").unwrap_or(&text).to_string()
}

/// Unless `force`, refuses to go on when the model has keys already.
fn refuse_to_replace(stored: &StoredModel, force: bool) -> anyhow::Result<()> {
    let backend = crate::proof::groth16::NAME;
    if !force && let Ok(existing) = keys::read(stored, backend, keys::KeyKind::Verifying) {
        anyhow::bail!(
            "model `{}` already has {backend} keys (verifying key {}): proofs made with them would fail, and miners would need the new proving key; to replace them anyway, add --force",
            stored.info.name,
            keys::fingerprint(&existing)
        );
    }
    Ok(())
}

/// `sn2 ceremony import`: checks a snarkjs ceremony's zkey and installs its keys, once a
/// proof made with them has verified.
fn import_zkey(
    model: &str,
    zkey: &Path,
    ptau: &Path,
    force: bool,
    dir: &ModelsDirArgs,
) -> anyhow::Result<Outcome> {
    let stored = dir.open(model)?;
    refuse_to_replace(&stored, force)?;
    let bytes = std::fs::read(zkey).with_context(|| format!("cannot read {}", zkey.display()))?;
    let ptau = read_ptau(ptau)?;
    let started = Instant::now();
    let system = ceremony::circuit(&stored.model);
    let verified = match zkey::verify(&bytes, &system, &ptau) {
        Ok(verified) => verified,
        Err(error) => {
            eprintln!("sn2: {}: refused: {}", zkey.display(), reason(&error));
            return Ok(Outcome::Failure);
        }
    };
    drop(system);
    let pair = verified.key_pair();
    prove_and_verify_once(&stored, &pair)
        .with_context(|| format!("{}: its keys do not prove and verify", zkey.display()))?;
    println!(
        "{}: a valid snarkjs ceremony for `{}` ({}), checked in {:.1} s; {} contribution{}:",
        zkey.display(),
        stored.info.name,
        stored.id.to_hex(),
        started.elapsed().as_secs_f64(),
        verified.contributions.len(),
        if verified.contributions.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    for (i, c) in verified.contributions.iter().enumerate() {
        println!(
            "  {:>3}  {}{}{}",
            i + 1,
            hex::encode(c.hash),
            c.name
                .as_deref()
                .map(|name| format!("  {name:?}"))
                .unwrap_or_default(),
            if c.beacon { "  (beacon)" } else { "" }
        );
    }
    let hash = hex::encode(
        verified
            .last_hash()
            .expect("a verified ceremony has contributions"),
    );
    let summary = keys::install(
        &stored,
        crate::proof::groth16::NAME,
        &pair,
        keys::Origin::Snarkjs {
            zkey: &bytes,
            hash,
            parties: verified.parties() as u32,
        },
    )?;
    println!(
        "keys for `{}` installed in {}",
        stored.info.name,
        stored.keys_dir().display()
    );
    println!("fingerprint {}", summary.verifying_fingerprint);
    Ok(Outcome::Success)
}

/// One proof of a random input with `pair`, checked with its verifying key: what a key
/// from elsewhere must do before it replaces the model's.
fn prove_and_verify_once(stored: &StoredModel, pair: &crate::proof::KeyPair) -> anyhow::Result<()> {
    use crate::proof::ProofSystem as _;
    let system = crate::proof::groth16::Groth16Bn254;
    let model = std::sync::Arc::new(stored.model.clone());
    let (statement, proof) = system
        .prover(model.clone(), &pair.proving)?
        .prove_random_input(&model, crate::proof::Binding([7; 31]))?;
    system
        .verifier(&model, &pair.verifying)?
        .verify(&statement, &proof)?;
    Ok(())
}

type Checked = (StoredModel, Transcript, ceremony::Verified);

/// The transcript, its model and what verifying it established; the inner error is the
/// refusal, the outer one a file that could not be read.
fn verified(
    transcript: &Path,
    ptau: &Path,
    dir: &ModelsDirArgs,
) -> anyhow::Result<Result<Checked, ceremony::CeremonyError>> {
    let read = read_transcript(transcript)?;
    let stored = dir.open(&read.model.to_hex()).with_context(|| {
        format!(
            "the transcript is for model {}: import that model first",
            read.model.to_hex()
        )
    })?;
    let ptau = read_ptau(ptau)?;
    let system = ceremony::circuit(&stored.model);
    Ok(read
        .verify(&stored.id, &system, &ptau)
        .map(|verified| (stored, read, verified)))
}

pub(super) fn read_ptau(path: &Path) -> anyhow::Result<Ptau> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ptau =
        Ptau::read_checked(&bytes).with_context(|| format!("{}: refused", path.display()))?;
    if ptau.contributions == 0 {
        eprintln!(
            "sn2: warning: no one has contributed to {}: its τ is known to whoever made it",
            path.display()
        );
    }
    Ok(ptau)
}

fn read_transcript(path: &Path) -> anyhow::Result<Transcript> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Transcript::read(&bytes).with_context(|| format!("{}: refused", path.display()))
}

fn write_transcript(path: &Path, transcript: &Transcript) -> anyhow::Result<()> {
    crate::fs::write_atomic(path, &transcript.to_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn verify_ptau(file: &Path) -> anyhow::Result<Outcome> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let checked = Ptau::read_checked(&bytes);
    match checked {
        Ok(ptau) => {
            println!(
                "{}: powers of tau for BN254, 2^{} powers (from a ceremony of 2^{}), {} contribution{}{}",
                file.display(),
                ptau.power,
                ptau.ceremony_power,
                ptau.contributions,
                if ptau.contributions == 1 { "" } else { "s" },
                if ptau.prepared() {
                    ", prepared for phase 2"
                } else {
                    ""
                }
            );
            println!(
                "every point is on its curve and in its subgroup, and every power follows from the one before: circuits of up to 2^{} constraints and public inputs can use it",
                ptau.power
            );
            if ptau.contributions == 0 {
                eprintln!(
                    "sn2: warning: no one has contributed to this file: its τ is known to whoever made it"
                );
            }
            Ok(Outcome::Success)
        }
        Err(error) => {
            eprintln!("sn2: {}: refused: {error}", file.display());
            Ok(Outcome::Failure)
        }
    }
}
