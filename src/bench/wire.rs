//! `sn2 bench --wire`: what the transports cost, over loopback, beyond proving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::keys::{Hotkey, PublicKey};
use crate::model::ModelStore;
use crate::model::input::DataSet;
use crate::proof;

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

/// A miner serving digits-mlp on loopback, on its own runtime, with one permitted
/// validator: what the transport and attack benchmarks talk to.
pub(super) struct LoopbackMiner {
    pub address: SocketAddr,
    pub miner: Arc<crate::miner::Miner>,
    pub miner_public: PublicKey,
    pub validator: Hotkey,
    pub model: String,
    pub key_hash: String,
    /// The miner's runtime; its threads are named [`MINER_THREADS`].
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    dir: std::path::PathBuf,
}

/// The name of the loopback miner's threads, so that its CPU time can be told from the
/// client's.
pub(super) const MINER_THREADS: &str = "sn2-bench-miner";

impl LoopbackMiner {
    pub fn start(limits: crate::wire::http::Limits) -> anyhow::Result<Self> {
        use crate::chain::{Metagraph, Neuron};
        use crate::miner::{Behaviour, Miner, MinerOptions};
        use crate::proof::keys::{self as key_files, KeyKind};

        let dir = std::env::temp_dir().join(format!("sn2-bench-miner-{}", std::process::id()));
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
            max_key_bytes: 1 << 20,
            key_fetch_timeout: Duration::from_secs(120),
            limits,
            min_validator_stake: 0.0,
            behaviour: Behaviour::Honest,
            fetch: Default::default(),
        };
        let tcp = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let address = tcp.local_addr()?;
        drop(tcp);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(MINER_THREADS)
            .enable_all()
            .build()?;
        let miner = Miner::new(
            miner_key,
            store,
            metagraph,
            options,
            Arc::new(crate::metrics::Metrics::default()),
        );
        let (stop, shutdown) = crate::shutdown::channel();
        let serving = runtime.block_on(miner.clone().listen(address, shutdown))?;
        runtime.spawn(serving);
        Ok(Self {
            address,
            miner,
            miner_public,
            validator,
            model: stored.id.to_hex(),
            key_hash,
            runtime: Some(runtime),
            stop,
            dir,
        })
    }

    /// A prove request for digits-mlp with a fresh nonce.
    pub fn prove_request(&self) -> crate::wire::Request {
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        crate::wire::Request::Prove(crate::wire::ProveRequest {
            model: self.model.clone(),
            input: vec![1; 64],
            nonce: hex::encode(nonce),
            proving_key: self.key_hash.clone(),
        })
    }
}

impl Drop for LoopbackMiner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the transport benchmark: `requests` sequential requests per transport, then
/// `seconds` of two concurrent clients.
pub fn bench_wire(requests: usize, seconds: u64) -> anyhow::Result<Vec<WireBench>> {
    let loopback = Arc::new(LoopbackMiner::start(crate::wire::http::Limits::new(
        1 << 20,
    ))?);
    let client = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = client.block_on(measure_wire(loopback.clone(), requests, seconds));
    drop(client);
    drop(loopback);
    results
}

async fn measure_wire(
    loopback: Arc<LoopbackMiner>,
    requests: usize,
    seconds: u64,
) -> anyhow::Result<Vec<WireBench>> {
    use crate::wire::Response;
    use crate::wire::http::HttpClient;
    use crate::wire::quic::{self, Session};

    let (address, miner_public) = (loopback.address, loopback.miner_public);
    let endpoint = quic::client_endpoint()?;
    let session = Arc::new(
        Session::connect(
            &endpoint,
            address,
            &loopback.validator,
            miner_public,
            1 << 20,
        )
        .await?,
    );
    let http = HttpClient::default();
    let ask = move |transport: &'static str| {
        let (session, http, loopback) = (session.clone(), http.clone(), loopback.clone());
        async move {
            let request = loopback.prove_request();
            let started = Instant::now();
            let response = match transport {
                "quic" => session.request(&request).await,
                _ => {
                    http.request(
                        address,
                        &loopback.validator,
                        &miner_public,
                        &request,
                        1 << 20,
                    )
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
