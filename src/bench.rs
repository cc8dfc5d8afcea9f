//! `sn2 bench`: what proving costs on this machine, per model — circuit size, setup, prove
//! with one and with two threads, verify, proof and key sizes, peak memory. Measurements,
//! not tests: it prints a table and asserts nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::model::ModelStore;
use crate::model::input::{DataSet, pseudo_random_samples};
use crate::proof::{self, Binding, Statement};

#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    pub model: String,
    pub constraints: usize,
    pub setup_ms: f64,
    pub prove_1_thread_ms: f64,
    pub prove_2_threads_ms: f64,
    pub verify_ms: f64,
    pub proof_bytes: usize,
    pub proving_key_bytes: usize,
    pub verifying_key_bytes: usize,
    /// Peak resident memory while setting up and proving, in MiB (Linux only).
    pub peak_memory_mib: Option<f64>,
}

/// Resets the kernel's peak-RSS mark for this process (Linux: `clear_refs` 5).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
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

/// Benchmarks the model whose ONNX file and `calibration.json` are in `folder`.
pub fn bench_model(folder: &Path, store: &ModelStore, runs: usize) -> anyhow::Result<ModelBench> {
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
    let model = Arc::new(stored.model.clone());
    let system = proof::default_backend();

    reset_peak_memory();
    let start = Instant::now();
    let keys = system.setup(&model)?;
    let setup = start.elapsed();
    let prover = system.prover(model.clone(), &keys.proving)?;
    let verifier = system.verifier(&model, &keys.verifying)?;

    let input = model.quantize_input(&calibration[0])?;
    let binding = Binding([3; 31]);
    let mut proof = Vec::new();
    let mut output = Vec::new();
    let mut prove_ms = [0.0; 2];
    for (slot, threads) in [(0, 1), (1, 2)] {
        let times = in_pool(threads, || -> anyhow::Result<Vec<Duration>> {
            (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    let proven = prover.prove(&input, &binding)?;
                    let elapsed = start.elapsed();
                    proof = proven.proof;
                    output = proven.output;
                    Ok(elapsed)
                })
                .collect()
        })??;
        prove_ms[slot] = median(times);
    }
    let peak = peak_memory_mib();
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
    Ok(ModelBench {
        model: name,
        constraints: system.circuit_size(&model)?,
        setup_ms: setup.as_secs_f64() * 1000.0,
        prove_1_thread_ms: prove_ms[0],
        prove_2_threads_ms: prove_ms[1],
        verify_ms: median(verify_times),
        proof_bytes: proof.len(),
        proving_key_bytes: keys.proving.len(),
        verifying_key_bytes: keys.verifying.len(),
        peak_memory_mib: peak,
    })
}

/// The reference models, when run from the repository.
pub fn default_folders() -> Vec<PathBuf> {
    ["digits-mlp", "mnist-mlp", "cnn-small"]
        .iter()
        .map(|name| Path::new("models").join(name))
        .collect()
}

pub fn markdown_table(results: &[ModelBench]) -> String {
    let mut table = String::from(
        "| model | constraints | setup | prove, 1 thread | prove, 2 threads | verify | proof | proving key | verifying key | peak memory |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        table.push_str(&format!(
            "| {} | {} | {:.0} ms | {:.1} ms | {:.1} ms | {:.2} ms | {} B | {:.2} MB | {:.1} KB | {} |\n",
            r.model,
            r.constraints,
            r.setup_ms,
            r.prove_1_thread_ms,
            r.prove_2_threads_ms,
            r.verify_ms,
            r.proof_bytes,
            r.proving_key_bytes as f64 / 1e6,
            r.verifying_key_bytes as f64 / 1e3,
            r.peak_memory_mib.map_or("n/a".into(), |m| format!("{m:.0} MiB")),
        ));
    }
    table
}
