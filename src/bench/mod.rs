//! `sn2 bench`: what proving costs on this machine, per model — circuit size, setup, prove
//! with one and with two threads, verify, proof and key sizes, peak memory; what the
//! transports cost (`wire`); what an outsider's connections cost a miner (`attack`); what
//! a validator daemon costs with many miners (`validator`); what a timelocked weight
//! commit costs (`timelock`); what the validator's user API adds (`api`); what a model's
//! phase-2 ceremony costs (`ceremony`).
//! Measurements, not tests: each prints a table and asserts nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::model::ModelStore;
use crate::model::input::{DataSet, pseudo_random_samples};
use crate::proof::{self, Binding, Statement};

mod api;
mod attack;
mod ceremony;
mod timelock;
mod validator;
mod wire;

pub use api::{ApiBench, api_table, bench_api};
pub use attack::{AttackBench, attack_table, bench_attack};
pub use ceremony::{CeremonyBench, bench_ceremony, ceremony_table};
pub use timelock::{TimelockBench, bench_timelock, timelock_table};
pub use validator::{ValidatorBench, bench_validator, validator_table};
pub use wire::{WireBench, bench_wire, wire_table};

#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    pub model: String,
    pub constraints: usize,
    /// Constraints per kind of operator.
    pub operators: Vec<(String, usize)>,
    pub setup_ms: f64,
    pub prove_1_thread_ms: f64,
    pub prove_2_threads_ms: f64,
    /// A whole `sn2 prove` process (median wall time): reading the model and the key,
    /// proving with the default threads, writing the file.
    pub prove_process_ms: Option<f64>,
    pub verify_ms: f64,
    /// Proofs per second checked in batches of [`BATCH`] (one multi-pairing per batch).
    pub batch_verify_per_s: f64,
    /// Where a proof's time goes, with two threads (median run), in ms.
    pub prove_stages_ms: Vec<(String, f64)>,
    pub proof_bytes: usize,
    pub proving_key_bytes: usize,
    pub verifying_key_bytes: usize,
    /// Peak resident memory while proving (the keys loaded), in MiB (Linux only).
    pub peak_memory_mib: Option<f64>,
    /// Peak resident memory while setting up, in MiB (Linux only).
    pub setup_peak_memory_mib: Option<f64>,
}

/// Resets the kernel's peak-RSS mark for this process (Linux: `clear_refs` 5).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_memory_mib() -> Option<f64> {
    status_mib("/proc/self/status", "VmHWM:")
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of a /proc `status` file, in MiB (Linux only).
fn status_mib(status_file: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// User and system CPU time in a /proc `stat` file, a process's or a thread's, in seconds
/// (Linux's clock ticks are 1/100 s); 0 where there is none.
fn stat_cpu_seconds(stat_file: &Path) -> f64 {
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    // Fields after the command's closing parenthesis: state is the 3rd field of the line,
    // utime and stime the 14th and 15th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn in_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    Ok(pool.install(work))
}

/// Imports the model whose ONNX file and `calibration.json` are in `folder` (pseudo-random
/// calibration where there is none); with its calibration inputs.
fn import_folder(
    folder: &Path,
    store: &ModelStore,
) -> anyhow::Result<(crate::model::StoredModel, Vec<Vec<f32>>)> {
    let onnx = folder.join("model.onnx");
    let bytes = std::fs::read(&onnx).with_context(|| format!("cannot read {}", onnx.display()))?;
    let name = folder
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model")
        .to_string();
    let calibration_path = folder.join("calibration.json");
    let calibration = match std::fs::read_to_string(&calibration_path) {
        Ok(text) => DataSet::parse(&text)?.inputs,
        Err(_) => pseudo_random_samples(64, crate::model::onnx::import(&bytes)?.input_len()),
    };
    let stored = store.import(&bytes, &name, &calibration)?;
    Ok((stored, calibration))
}

/// Benchmarks the model whose ONNX file and `calibration.json` are in `folder`.
pub fn bench_model(folder: &Path, store: &ModelStore, runs: usize) -> anyhow::Result<ModelBench> {
    let (stored, calibration) = import_folder(folder, store)?;
    let name = stored.info.name.clone();
    let model = Arc::new(stored.model.clone());
    let system = proof::default_backend();

    reset_peak_memory();
    let start = Instant::now();
    let keys = system.setup(&model)?;
    let setup = start.elapsed();
    let setup_peak = peak_memory_mib();
    reset_peak_memory();
    let prover = system.prover(model.clone(), &keys.proving)?;
    let verifier = system.verifier(&model, &keys.verifying)?;

    let input = model.quantize_input(&calibration[0])?;
    let binding = Binding([3; 31]);
    // Whole processes alternate with the 2-thread proofs in-process, so that the two
    // figures compared see the machine in the same state.
    let process = ProveProcess::prepare(&stored, system.as_ref(), &keys, &calibration[0])?;
    let mut process_times = Vec::new();
    let mut proof = Vec::new();
    let mut output = Vec::new();
    let mut prove_ms = [0.0; 2];
    let mut stages = Vec::new();
    for (slot, threads) in [(0, 1), (1, 2)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let mut runs_with_stages = Vec::new();
        for _ in 0..runs {
            let (elapsed, proven, run_stages) = pool.install(|| -> anyhow::Result<_> {
                let start = Instant::now();
                let (proven, stages) = prover.prove_profiled(&input, &binding)?;
                Ok((start.elapsed(), proven, stages))
            })?;
            proof = proven.proof;
            output = proven.output;
            runs_with_stages.push((elapsed, run_stages));
            if let (Some(process), 2) = (&process, threads) {
                process_times.push(process.run()?);
            }
        }
        runs_with_stages.sort_by_key(|(elapsed, _)| *elapsed);
        stages = runs_with_stages[runs_with_stages.len() / 2].1.clone();
        prove_ms[slot] = median(runs_with_stages.iter().map(|(t, _)| *t).collect());
    }
    let peak = peak_memory_mib();
    // ark-groth16's prover on the same key and input, with the circuit's matrices made
    // beforehand (not timed), when the backend is Groth16.
    if system.name() == proof::groth16::NAME {
        let reference = proof::groth16::ReferenceProver::new(model.clone(), &keys.proving)?;
        let mut times = in_pool(2, || -> anyhow::Result<Vec<Duration>> {
            (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    reference.prove(&input, &binding)?;
                    Ok(start.elapsed())
                })
                .collect()
        })??;
        times.sort();
        stages.push(("ark-groth16 prover", times[times.len() / 2]));
    }
    let statement = Statement {
        input,
        output,
        binding,
    };
    let verify_times = (0..runs.max(1) * 4)
        .map(|_| {
            let start = Instant::now();
            verifier
                .verify(&statement, &proof)
                .map(|()| start.elapsed())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let batch_verify_per_s = batch_throughput(verifier.as_ref(), &statement, &proof)?;
    let operators = system.circuit_costs(&model)?;
    let prove_process_ms = process.map(|_| median(process_times));
    Ok(ModelBench {
        model: name,
        constraints: operators.iter().map(|(_, n)| n).sum(),
        operators,
        setup_ms: setup.as_secs_f64() * 1000.0,
        prove_1_thread_ms: prove_ms[0],
        prove_2_threads_ms: prove_ms[1],
        prove_process_ms,
        verify_ms: median(verify_times),
        batch_verify_per_s,
        prove_stages_ms: stages
            .into_iter()
            .map(|(stage, t)| (stage.to_string(), t.as_secs_f64() * 1000.0))
            .collect(),
        proof_bytes: proof.len(),
        proving_key_bytes: keys.proving.len(),
        verifying_key_bytes: keys.verifying.len(),
        peak_memory_mib: peak,
        setup_peak_memory_mib: setup_peak,
    })
}

/// A whole `sn2 prove` process on one input, with the keys written into the model's
/// folder as `sn2 model setup` writes them.
struct ProveProcess {
    exe: std::path::PathBuf,
    args: Vec<std::ffi::OsString>,
}

impl ProveProcess {
    /// `None` when this process is not the `sn2` binary (a test's).
    fn prepare(
        stored: &crate::model::StoredModel,
        system: &dyn proof::ProofSystem,
        keys: &proof::KeyPair,
        input: &[f32],
    ) -> anyhow::Result<Option<Self>> {
        let exe = std::env::current_exe()?;
        if exe.file_stem().and_then(|n| n.to_str()) != Some("sn2") {
            return Ok(None);
        }
        proof::keys::write(stored, system.name(), keys)?;
        let work = stored.keys_dir();
        let input_file = work.join("bench-input.json");
        std::fs::write(
            &input_file,
            serde_json::to_vec(&serde_json::json!({ "input_data": [input] }))?,
        )?;
        let models_dir = stored
            .dir
            .parent()
            .context("a stored model lives in a models directory")?;
        let args = [
            "prove".as_ref(),
            "--model".as_ref(),
            stored.id.to_hex().as_ref(),
            "--models-dir".as_ref(),
            models_dir.as_os_str(),
            "--input".as_ref(),
            input_file.as_os_str(),
            "--out".as_ref(),
            work.join("bench-proof.json").as_os_str(),
            // Any hotkey will do: the miner is only an input of the binding.
            "--miner".as_ref(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".as_ref(),
        ]
        .iter()
        .map(|arg: &&std::ffi::OsStr| arg.to_os_string())
        .collect();
        Ok(Some(Self { exe, args }))
    }

    /// The wall time of one run, proving with the default threads.
    fn run(&self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let status = std::process::Command::new(&self.exe)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .status()?;
        let elapsed = start.elapsed();
        anyhow::ensure!(status.success(), "`sn2 prove` failed: {status}");
        Ok(elapsed)
    }
}

/// Proofs per batch in the batch-verification figure: about a round's answers for one
/// model on a large subnet.
pub const BATCH: usize = 256;

/// Proofs per second verified in batches. One proof repeated stands for a batch of
/// distinct ones: each copy is parsed, weighted and paired like any other.
fn batch_throughput(
    verifier: &dyn proof::Verifier,
    statement: &Statement,
    proof: &[u8],
) -> anyhow::Result<f64> {
    let claims: Vec<(&Statement, &[u8])> = vec![(statement, proof); BATCH];
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let results = verifier.verify_batch(&claims);
        times.push(start.elapsed());
        if let Some(Err(error)) = results.into_iter().find(|r| r.is_err()) {
            anyhow::bail!("a batch of valid proofs was refused: {error}");
        }
    }
    Ok(BATCH as f64 / (median(times) / 1000.0))
}

/// Where a proof's time goes, one column per stage.
pub fn stages_table(results: &[ModelBench]) -> String {
    let mut stages: Vec<&str> = Vec::new();
    for r in results {
        for (stage, _) in &r.prove_stages_ms {
            if !stages.contains(&stage.as_str()) {
                stages.push(stage);
            }
        }
    }
    let mut table = String::from("| model |");
    for stage in &stages {
        table.push_str(&format!(" {stage} |"));
    }
    table.push_str(" batch verify |\n| --- |");
    table.push_str(&" ---: |".repeat(stages.len() + 1));
    table.push('\n');
    for r in results {
        table.push_str(&format!("| {} |", r.model));
        for stage in &stages {
            let ms = r
                .prove_stages_ms
                .iter()
                .find(|(s, _)| s == stage)
                .map(|(_, t)| *t);
            table.push_str(&ms.map_or(" |".to_string(), |t| format!(" {t:.1} ms |")));
        }
        table.push_str(&format!(" {:.0} proofs/s |\n", r.batch_verify_per_s));
    }
    table
}

/// The reference models' folders: in `models/` of the working directory (a checkout),
/// else in `share/sn2/models` beside the installed binary (the package's copy).
pub fn default_folders() -> anyhow::Result<Vec<PathBuf>> {
    let installed = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("share/sn2/models")));
    let root = [Some(PathBuf::from("models")), installed]
        .into_iter()
        .flatten()
        .find(|dir| dir.join("digits-mlp/model.onnx").exists())
        .with_context(|| {
            "the reference models are neither in ./models nor in share/sn2/models beside this binary: run `sn2 bench` from the repository's root, or name model folders (each with model.onnx and calibration.json)"
        })?;
    Ok([
        "digits-mlp",
        "mnist-mlp",
        "cnn-small",
        "digits-resnet",
        "digits-lstm",
        "digits-gru",
        "digits-transformer",
    ]
    .iter()
    .map(|name| root.join(name))
    .filter(|folder| folder.join("model.onnx").exists())
    .collect())
}

pub fn markdown_table(results: &[ModelBench]) -> String {
    let mut table = String::from(
        "| model | constraints | setup | setup memory | prove, 1 thread | prove, 2 threads | whole `sn2 prove` | verify | proof | proving key | verifying key | prove memory |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        table.push_str(&format!(
            "| {} | {} | {:.0} ms | {} | {:.1} ms | {:.1} ms | {} | {:.2} ms | {} B | {:.2} MB | {:.1} KB | {} |\n",
            r.model,
            r.constraints,
            r.setup_ms,
            r.setup_peak_memory_mib.map_or("n/a".into(), |m| format!("{m:.0} MiB")),
            r.prove_1_thread_ms,
            r.prove_2_threads_ms,
            r.prove_process_ms.map_or("n/a".into(), |t| format!(
                "{t:.1} ms ({:+.0}%)",
                (t / r.prove_2_threads_ms - 1.0) * 100.0
            )),
            r.verify_ms,
            r.proof_bytes,
            r.proving_key_bytes as f64 / 1e6,
            r.verifying_key_bytes as f64 / 1e3,
            r.peak_memory_mib.map_or("n/a".into(), |m| format!("{m:.0} MiB")),
        ));
    }
    table
}

/// Constraints per kind of operator, one column per model.
pub fn operators_table(results: &[ModelBench]) -> String {
    let mut kinds: Vec<&str> = results
        .iter()
        .flat_map(|r| r.operators.iter().map(|(k, _)| k.as_str()))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut table = String::from("| operator |");
    for r in results {
        table.push_str(&format!(" {} |", r.model));
    }
    table.push_str("\n| --- |");
    table.push_str(&" ---: |".repeat(results.len()));
    table.push('\n');
    for kind in kinds {
        table.push_str(&format!("| {kind} |"));
        for r in results {
            let n = r.operators.iter().find(|(k, _)| k == kind).map(|(_, n)| *n);
            table.push_str(&n.map_or(" |".to_string(), |n| format!(" {n} |")));
        }
        table.push('\n');
    }
    table
}
