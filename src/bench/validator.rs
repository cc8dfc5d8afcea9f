//! `sn2 bench --validator N`: what a validator daemon costs with N miners. The
//! `sn2-validator` binary beside this one runs as its own process with the default round
//! interval and a sample of every miner; N honest miners serve digits-mlp on loopback in
//! this process, on threads of their own, and fetch the validator's proving key from its
//! key server as miners on a network do. The validator process's CPU time and resident
//! memory are read from /proc.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use super::wire::MINER_THREADS;
use crate::chain::{Metagraph, Neuron};
use crate::keys::{Hotkey, WalletLocation};
use crate::miner::{Behaviour, Miner, MinerOptions};
use crate::model::ModelStore;
use crate::model::input::DataSet;
use crate::proof;

#[derive(Debug, Clone, Serialize)]
pub struct ValidatorBench {
    pub miners: usize,
    pub seconds: f64,
    pub rounds: u64,
    pub proofs_verified: u64,
    /// The validator process's CPU time (user and system) over the run, and as a share of
    /// one core.
    pub cpu_seconds: f64,
    pub cpu_share_of_one_core: f64,
    pub rss_end_mib: f64,
    pub rss_peak_mib: f64,
}

pub fn bench_validator(miners: usize, seconds: u64) -> anyhow::Result<ValidatorBench> {
    anyhow::ensure!(
        (1..=3000).contains(&miners),
        "--validator takes 1 to 3000 miners"
    );
    let binary = std::env::current_exe()?.with_file_name("sn2-validator");
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it first (`cargo build --release`)",
        binary.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("sn2-bench-validator")
        .tempdir()?;
    let root = dir.path();

    // The validator: a wallet, digits-mlp set up, a config with every miner in its sample.
    let wallet = WalletLocation::new(root.join("wallets"), "bench", "validator")?;
    wallet.create_hotkey(false)?;
    let validator = wallet.load_hotkey()?;
    let (name, onnx, calibration) = crate::devnet::REFERENCE_MODELS[0];
    let samples = DataSet::parse(calibration)?.inputs;
    let validator_models = ModelStore::new(root.join("validator-models"));
    let stored = validator_models.import(onnx, name, &samples)?;
    proof::keys::setup(&stored, proof::default_backend().as_ref())?;
    let metrics_port = crate::devnet::free_port()?;
    let key_server = SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port));

    // The miners, on threads of their own, sharing one models directory.
    let hotkeys: Vec<Hotkey> = (0..miners)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Hotkey::from_seed(&seed)
        })
        .collect();
    let addresses = (0..miners)
        .map(|_| {
            crate::devnet::free_port().map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut neurons = vec![Neuron {
        uid: 0,
        hotkey: validator.public(),
        axon: Some(key_server),
        validator_permit: true,
        stake: 1000.0,
        coldkey: None,
        last_update: 0,
    }];
    for (i, (hotkey, address)) in hotkeys.iter().zip(&addresses).enumerate() {
        neurons.push(Neuron {
            uid: i as u16 + 1,
            hotkey: hotkey.public(),
            axon: Some(*address),
            validator_permit: false,
            stake: 0.0,
            coldkey: None,
            last_update: 0,
        });
    }
    let metagraph = Metagraph {
        netuid: 2,
        block: 0,
        neurons,
    };
    let miner_models = root.join("miner-models");
    ModelStore::new(&miner_models).import(onnx, name, &samples)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(MINER_THREADS)
        .enable_all()
        .build()?;
    let (stop, shutdown) = crate::shutdown::channel();
    for (hotkey, address) in hotkeys.into_iter().zip(&addresses) {
        let miner = Miner::new(
            hotkey,
            ModelStore::new(&miner_models),
            metagraph.clone(),
            MinerOptions {
                max_concurrent_proofs: 1,
                max_key_bytes: 64 << 20,
                key_fetch_timeout: Duration::from_secs(120),
                limits: crate::wire::http::Limits::new(4 << 20),
                min_validator_stake: 0.0,
                behaviour: Behaviour::Honest,
                fetch: Default::default(),
            },
            Arc::new(crate::metrics::Metrics::default()),
        );
        let serving = runtime.block_on(miner.listen(*address, shutdown.clone()))?;
        runtime.spawn(serving);
    }

    let config = root.join("validator.toml");
    std::fs::write(
        &config,
        validator_config(&metagraph, &wallet, root, key_server),
    )?;
    let mut child = std::process::Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();
    let started = Instant::now();
    let cpu_before = process_cpu_seconds(pid);
    let mut rss_peak_mib = 0.0f64;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        rss_peak_mib = rss_peak_mib.max(process_rss_mib(pid, "VmHWM:"));
    }
    let cpu_seconds = process_cpu_seconds(pid) - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end_mib = process_rss_mib(pid, "VmRSS:");
    let page = runtime
        .block_on(metrics_page(key_server))
        .unwrap_or_default();
    let counter = |name: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let _ = stop.send(true);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(ValidatorBench {
        miners,
        seconds: elapsed,
        rounds: counter("sn2_rounds_total"),
        proofs_verified: counter("sn2_proofs_verified_total"),
        cpu_seconds,
        cpu_share_of_one_core: cpu_seconds / elapsed,
        rss_end_mib,
        rss_peak_mib,
    })
}

fn validator_config(
    metagraph: &Metagraph,
    wallet: &WalletLocation,
    root: &Path,
    key_server: SocketAddr,
) -> String {
    let mut text = String::from("[chain]\nbackend = \"local\"\n");
    for neuron in &metagraph.neurons {
        text.push_str(&format!(
            "[[chain.neurons]]\nuid = {}\nhotkey = \"{}\"\naxon = \"{}\"\nvalidator_permit = {}\nstake = {:.1}\n",
            neuron.uid,
            neuron.hotkey.to_ss58(),
            neuron.axon.expect("every neuron serves"),
            neuron.validator_permit,
            neuron.stake
        ));
    }
    text.push_str(&format!(
        "[wallet]\nhotkey_file = \"{}\"\n[models]\ndir = \"{}\"\n[metrics]\nlisten = \"{key_server}\"\n\
         [validator]\nstate_dir = \"{}\"\nsample_size = {}\nkey_server = \"{key_server}\"\n",
        wallet.hotkey_file().display(),
        root.join("validator-models").display(),
        root.join("validator-state").display(),
        metagraph.neurons.len() - 1,
    ));
    text
}

fn process_cpu_seconds(pid: u32) -> f64 {
    super::stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat")))
}

fn process_rss_mib(pid: u32, field: &str) -> f64 {
    super::status_mib(&format!("/proc/{pid}/status"), field).unwrap_or(0.0)
}

async fn metrics_page(address: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nhost: validator\r\n\r\n")
        .await?;
    let mut page = String::new();
    stream.read_to_string(&mut page).await?;
    Ok(page)
}

pub fn validator_table(result: &ValidatorBench) -> String {
    format!(
        "| miners | seconds | rounds | proofs verified | validator CPU | share of one core | RSS at end | peak RSS |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | {} | {:.0} | {} | {} | {:.1} s | {:.0}% | {:.1} MiB | {:.1} MiB |\n",
        result.miners,
        result.seconds,
        result.rounds,
        result.proofs_verified,
        result.cpu_seconds,
        result.cpu_share_of_one_core * 100.0,
        result.rss_end_mib,
        result.rss_peak_mib
    )
}
