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

/// What the transports cost: a miner serving digits-mlp on loopback, asked by one client.
#[derive(Debug, Clone, Serialize)]
pub struct WireBench {
    pub transport: &'static str,
    /// Sequential requests: round trip, and round trip minus the miner's proving time.
    pub round_trip_p50_ms: f64,
    pub overhead_p50_ms: f64,
    pub overhead_p90_ms: f64,
    /// Requests per second with two requests in flight (one per core).
    pub requests_per_second: f64,
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// Runs the transport benchmark: `requests` sequential requests per transport, then
/// `seconds` of two concurrent clients.
pub async fn bench_wire(requests: usize, seconds: u64) -> anyhow::Result<Vec<WireBench>> {
    use crate::chain::{Metagraph, Neuron};
    use crate::keys::Hotkey;
    use crate::miner::{Behaviour, Miner, MinerOptions};
    use crate::proof::keys::{self as key_files, KeyKind};
    use crate::wire::http::HttpClient;
    use crate::wire::quic::{self, Session};
    use crate::wire::{ProveRequest, Request, Response};

    let dir = std::env::temp_dir().join(format!("sn2-bench-wire-{}", std::process::id()));
    let store = ModelStore::new(&dir);
    let (name, onnx, calibration) = crate::devnet::REFERENCE_MODELS[0];
    let stored = store.import(onnx, name, &DataSet::parse(calibration)?.inputs)?;
    let system = proof::default_backend();
    key_files::setup(&stored, system.as_ref())?;
    let proving = key_files::read(&stored, system.name(), KeyKind::Proving)?;
    let key_hash = crate::wire::auth::sha256_hex(&proving);
    std::fs::write(stored.keys_dir().join(format!("{key_hash}.pk")), &proving)?;

    let (miner_key, validator) = (Hotkey::from_seed(&[11; 32]), Hotkey::from_seed(&[12; 32]));
    let miner_public = miner_key.public();
    let metagraph = Metagraph {
        netuid: 2,
        block: 0,
        neurons: vec![Neuron {
            uid: 0,
            hotkey: validator.public(),
            axon: None,
            validator_permit: true,
            stake: 1.0,
            coldkey: None,
            last_update: 0,
        }],
    };
    let options = MinerOptions {
        max_concurrent_proofs: 2,
        max_request_bytes: 1 << 20,
        max_key_bytes: 1 << 20,
        min_validator_stake: 0.0,
        behaviour: Behaviour::Honest,
    };
    let tcp = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let address = tcp.local_addr()?;
    drop(tcp);
    let (stop, shutdown) = crate::shutdown::channel();
    let serving = tokio::spawn(
        Miner::new(miner_key, store, metagraph, options)
            .listen(address, shutdown)
            .await?,
    );

    let endpoint = quic::client_endpoint()?;
    let session =
        Arc::new(Session::connect(&endpoint, address, &validator, miner_public, 1 << 20).await?);
    let http = HttpClient::default();
    let model = stored.id.to_hex();
    let request = move || {
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        Request::Prove(ProveRequest {
            model: model.clone(),
            input: vec![1; 64],
            nonce: hex::encode(nonce),
            proving_key: key_hash.clone(),
            key_url: None,
        })
    };
    let validator = Arc::new(validator);
    let ask = move |transport: &'static str| {
        let (session, http, validator, request) = (
            session.clone(),
            http.clone(),
            validator.clone(),
            request.clone(),
        );
        async move {
            let started = Instant::now();
            let response = match transport {
                "quic" => session.request(&request()).await,
                _ => {
                    http.request(address, &validator, &miner_public, &request(), 1 << 20)
                        .await
                }
            };
            let round_trip = started.elapsed().as_secs_f64() * 1000.0;
            match response {
                Ok(Response::Proved(proved)) => Ok((round_trip, proved.prove_ms)),
                Ok(other) => Err(anyhow::anyhow!("unexpected answer {other:?}")),
                Err(error) => Err(anyhow::anyhow!("{error}")),
            }
        }
    };
    // Warm up: load the prover, open connections.
    ask("quic").await?;
    ask("http").await?;
    let mut results = Vec::new();
    for transport in ["quic", "http"] {
        let mut round_trips = Vec::new();
        let mut overheads = Vec::new();
        for _ in 0..requests.max(1) {
            let (round_trip, prove_ms) = ask(transport).await?;
            round_trips.push(round_trip);
            overheads.push(round_trip - prove_ms);
        }
        let deadline = Instant::now() + Duration::from_secs(seconds.max(1));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let ask = ask.clone();
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        if ask(transport).await.is_ok() {
                            done += 1;
                        }
                    }
                    done
                })
            })
            .collect();
        let started = Instant::now();
        let mut total = 0;
        for worker in workers {
            total += worker.await?;
        }
        results.push(WireBench {
            transport,
            round_trip_p50_ms: percentile(round_trips, 0.5),
            overhead_p50_ms: percentile(overheads.clone(), 0.5),
            overhead_p90_ms: percentile(overheads, 0.9),
            requests_per_second: total as f64 / started.elapsed().as_secs_f64(),
        });
    }
    let _ = stop.send(true);
    let _ = serving.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(results)
}

pub fn wire_table(results: &[WireBench]) -> String {
    let mut table = String::from(
        "| transport | round trip p50 | overhead p50 | overhead p90 | requests/s (2 in flight) |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        table.push_str(&format!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} |\n",
            r.transport,
            r.round_trip_p50_ms,
            r.overhead_p50_ms,
            r.overhead_p90_ms,
            r.requests_per_second
        ));
    }
    table
}
