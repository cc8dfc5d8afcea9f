//! A real subtensor runtime on loopback for the chain tests: chopsticks (npm) running the
//! chain spec in `tests/data/chain/`, executing the runtime's own wasm. Tests drive it
//! with its `dev_*` RPC methods: seed storage (balances, permits, limits) and build
//! blocks on demand.
//!
//! Where chopsticks is: `SN2_CHOPSTICKS` (its executable), else
//! `tests/chopsticks/node_modules/.bin/chopsticks`, which `npm ci --prefix tests/chopsticks`
//! installs from the committed lock file (`tests/setup.sh` does). It runs on the Node.js
//! that `tests/setup.sh` fetched from the npm registry into `tests/chopsticks/node22` where
//! the system's is too old for it (Debian 12 ships Node 18), else on the system's. Without
//! chopsticks a test is skipped with a message, unless `SN2_REQUIRE_CHAIN=1`, where that is
//! a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use subxt::rpcs::{RpcClient, rpc_params};

pub struct Chopsticks {
    child: Child,
    pub port: u16,
    pub url: String,
    pub rpc: RpcClient,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SN2_CHOPSTICKS") {
        return Some(PathBuf::from(path));
    }
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/chopsticks/node_modules/.bin/chopsticks");
    installed.exists().then_some(installed)
}

/// The command that runs chopsticks: the executable itself, or the fetched Node.js with it.
fn command(executable: &std::path::Path) -> Command {
    match super::common::fetched_node() {
        Some(node) => {
            let mut command = Command::new(node);
            command.arg(executable);
            command
        }
        None => Command::new(executable),
    }
}

impl Chopsticks {
    /// Starts a chain and waits until it answers; `None` (the test is skipped) when
    /// chopsticks is not installed and the chain is not required.
    pub async fn start() -> Option<Self> {
        Self::start_on(sn2::devnet::free_port().unwrap()).await
    }

    /// As [`Chopsticks::start`], on a given port (to restart a node where clients expect it).
    pub async fn start_on(port: u16) -> Option<Self> {
        let Some(executable) = executable() else {
            if std::env::var("SN2_REQUIRE_CHAIN").as_deref() == Ok("1") {
                panic!(
                    "chopsticks is required (SN2_REQUIRE_CHAIN=1) but neither SN2_CHOPSTICKS nor tests/chopsticks/node_modules is there: npm ci --prefix tests/chopsticks"
                );
            }
            eprintln!("skipped: chopsticks is not installed (see .ci/run, or set SN2_CHOPSTICKS)");
            return None;
        };
        let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/chain/subtensor-raonet-spec218.json");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chopsticks.log");
        let child = command(&executable)
            .arg("--genesis")
            .arg(&spec)
            .arg("--port")
            .arg(port.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", executable.display()));
        let url = format!("ws://127.0.0.1:{port}");
        let started = Instant::now();
        let rpc = loop {
            if let Ok(rpc) = RpcClient::from_insecure_url(&url).await
                && rpc
                    .request::<Value>("chain_getHeader", rpc_params![])
                    .await
                    .is_ok()
            {
                break rpc;
            }
            if started.elapsed() > Duration::from_secs(180) {
                panic!(
                    "chopsticks did not answer on {url} within 180 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        Some(Self {
            child,
            port,
            url,
            rpc,
            log,
            _dir: dir,
        })
    }

    /// Writes storage through the runtime's metadata (chopsticks' JSON form:
    /// `{ Pallet: { Entry: [[[keys...], value], ...] } }`).
    pub async fn set_storage(&self, storage: Value) {
        self.rpc
            .request::<Value>("dev_setStorage", rpc_params![storage])
            .await
            .expect("dev_setStorage");
    }

    /// Builds `count` empty blocks.
    pub async fn new_blocks(&self, count: u32) {
        self.rpc
            .request::<Value>("dev_newBlock", rpc_params![json!({ "count": count })])
            .await
            .expect("dev_newBlock");
    }

    /// Gives `ss58` a million TAO.
    pub async fn fund(&self, ss58: &str) {
        self.set_storage(json!({
            "System": { "Account": [[[ss58], {
                "providers": 1,
                "data": { "free": "1000000000000000" }
            }]] }
        }))
        .await;
    }
}

impl Drop for Chopsticks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- the last lines chopsticks logged ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
