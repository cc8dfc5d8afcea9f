//! `sn2 bench`: measure proving on this machine (see `crate::bench`).

use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::bench;
use crate::model::ModelStore;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model folders, each with model.onnx and optionally calibration.json
    /// [default: the reference models in ./models, else in share/sn2/models beside the
    /// installed binary].
    folders: Vec<PathBuf>,
    /// Proofs timed per thread count (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure the transports instead: a miner serving digits-mlp on loopback, over QUIC
    /// and HTTP (round trip, overhead beyond proving, requests per second).
    #[arg(long)]
    wire: bool,
    /// Measure what an outsider's connections cost a miner instead: memory while 1000
    /// stalled connections are held, how soon they are closed, CPU per refused request.
    #[arg(long, conflicts_with = "wire")]
    attack: bool,
    /// Measure a validator daemon with this many miners instead (its CPU and memory over
    /// `--seconds`); the miners run in this process, the validator as its own.
    #[arg(long, value_name = "MINERS", conflicts_with_all = ["wire", "attack"])]
    validator: Option<usize>,
    /// Measure building one timelocked weight commit for this many uids instead (epoch
    /// schedule, payload, drand encryption) and its size against the chain's limit.
    #[arg(long, value_name = "UIDS", conflicts_with_all = ["wire", "attack", "validator"])]
    timelock: Option<usize>,
    /// Measure the validator's user API instead: its overhead beyond the miners' work, and
    /// requests per second, on a devnet of three miners.
    #[arg(long, conflicts_with_all = ["wire", "attack", "validator", "timelock"])]
    api: bool,
    /// Measure each model's phase-2 ceremony instead: starting it, one contribution,
    /// verifying a transcript of three, the transcript's size (from powers of tau made
    /// here for the purpose).
    #[arg(long, conflicts_with_all = ["wire", "attack", "validator", "timelock", "api"])]
    ceremony: bool,
    /// How long `--validator` (and `--api`'s load) runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

impl BenchArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        if self.api {
            let result = bench::bench_api(self.runs.max(1) * 40, self.seconds.min(600))?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", bench::api_table(&result));
            }
            return Ok(Outcome::Success);
        }
        if let Some(uids) = self.timelock {
            anyhow::ensure!(
                (1..=65536).contains(&uids),
                "--timelock takes a number of uids from 1 to 65536"
            );
            let result = bench::bench_timelock(uids, self.runs.max(1) * 20);
            if self.json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", bench::timelock_table(&result));
            }
            return Ok(Outcome::Success);
        }
        if let Some(miners) = self.validator {
            let result = bench::bench_validator(miners, self.seconds)?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", bench::validator_table(&result));
            }
            return Ok(Outcome::Success);
        }
        if self.attack {
            let results = bench::bench_attack()?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                print!("{}", bench::attack_table(&results));
            }
            return Ok(Outcome::Success);
        }
        if self.wire {
            let results = bench::bench_wire(self.runs.max(1) * 40, 3)?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                print!("{}", bench::wire_table(&results));
            }
            return Ok(Outcome::Success);
        }
        let folders = if self.folders.is_empty() {
            bench::default_folders()?
        } else {
            self.folders
        };
        let scratch = tempfile_dir()?;
        let store = ModelStore::new(&scratch);
        if self.ceremony {
            let measured = bench::bench_ceremony(&folders, &store);
            let _ = std::fs::remove_dir_all(&scratch);
            let (power, ptau_ms, results) = measured?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                println!(
                    "(powers of tau of 2^{power} made in {:.1} s)",
                    ptau_ms / 1000.0
                );
                print!("{}", bench::ceremony_table(&results));
            }
            return Ok(Outcome::Success);
        }
        let mut results = Vec::new();
        for folder in &folders {
            eprintln!("benchmarking {} ...", folder.display());
            results.push(bench::bench_model(folder, &store, self.runs.max(1))?);
        }
        let _ = std::fs::remove_dir_all(&scratch);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&results)?);
        } else {
            print!("{}", bench::markdown_table(&results));
            println!();
            print!("{}", bench::operators_table(&results));
            println!();
            print!("{}", bench::stages_table(&results));
        }
        Ok(Outcome::Success)
    }
}

/// A private scratch directory for the benchmark's model store.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sn2-bench-{}", std::process::id()));
    crate::fs::create_private_dir(&dir)?;
    Ok(dir)
}
