//! The subtensor backend against a real runtime (chopsticks on loopback, see
//! `tests/chopsticks`): registration seen in the metagraph, axons served, weights set and
//! read back from storage, commit-reveal, and the chain's own refusals reaching the
//! operator as clear messages.

mod chopsticks;
mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use chopsticks::Chopsticks;
use serde_json::json;
use subxt::dynamic::Value;
use subxt::ext::scale_value::Composite;

use sn2::chain::subtensor::{SubtensorChain, SubtensorOptions, calls};
use sn2::chain::{Chain, ChainError, ServeOutcome, Weights, WeightsOutcome};
use sn2::keys::Hotkey;

/// A subnet that exists in the chain spec.
const NETUID: u16 = 1;

fn chain_for(
    node: &Chopsticks,
    key: &Hotkey,
    state_dir: Option<&std::path::Path>,
) -> SubtensorChain {
    SubtensorChain::new(
        SubtensorOptions {
            endpoint: node.url.clone(),
            netuid: NETUID,
            weights_interval_blocks: 1,
            state_dir: state_dir.map(|d| d.to_path_buf()),
            weights_mode: Default::default(),
        },
        Some(Arc::new(key.clone())),
    )
}

/// Registers `hotkey` on the subnet, paying the burn from `coldkey` (what `btcli subnet
/// register` does).
async fn register(node: &Chopsticks, coldkey: &Hotkey, hotkey: &Hotkey) {
    let payer = chain_for(node, coldkey, None);
    let call = subxt::dynamic::tx(
        calls::PALLET,
        "burned_register",
        Composite::named([
            ("netuid".to_string(), Value::u128(NETUID as u128)),
            (
                "hotkey".to_string(),
                Value::from_bytes(hotkey.public().as_bytes()),
            ),
        ]),
    );
    let at = payer.at_latest().await.unwrap();
    payer
        .submit(&at, &call)
        .await
        .unwrap_or_else(|e| panic!("registering {}: {e}", hotkey.ss58()));
}

fn keys() -> (Hotkey, Hotkey, Hotkey, Hotkey) {
    (
        Hotkey::from_seed(&[70; 32]), // coldkey
        Hotkey::from_seed(&[71; 32]), // validator
        Hotkey::from_seed(&[72; 32]), // miner
        Hotkey::from_seed(&[73; 32]), // never registered
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_axons_weights_and_refusals_on_a_real_runtime() {
    let Some(node) = Chopsticks::start().await else {
        return;
    };
    let (coldkey, validator, miner, stranger) = keys();
    node.fund(&coldkey.ss58()).await;

    // Unregistered: our own check, then the chain's own refusal, both naming the fix.
    let stranger_chain = chain_for(&node, &stranger, None);
    let address: SocketAddr = "10.1.2.3:8091".parse().unwrap();
    let error = stranger_chain.serve_axon(address).await.unwrap_err();
    assert!(matches!(error, ChainError::NotRegistered { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("btcli subnet register --netuid 1"),
        "{error}"
    );
    let refused = refusal(
        &stranger_chain,
        &calls::serve_axon(NETUID, &calls::AxonFields::new(address)),
    )
    .await;
    assert!(
        refused.contains("NotRegistered") || refused.contains("HotKeyNotRegistered"),
        "{refused}"
    );
    assert!(refused.contains("btcli subnet register"), "{refused}");

    register(&node, &coldkey, &validator).await;
    register(&node, &coldkey, &miner).await;
    let metagraph = chain_for(&node, &validator, None)
        .metagraph()
        .await
        .unwrap();
    let uid_of = |key: &Hotkey| metagraph.by_hotkey(&key.public()).map(|n| n.uid);
    let (validator_uid, miner_uid) = (uid_of(&validator).unwrap(), uid_of(&miner).unwrap());
    assert_ne!(validator_uid, miner_uid);
    assert!(uid_of(&stranger).is_none());
    let neuron = metagraph.by_hotkey(&miner.public()).unwrap();
    assert_eq!(neuron.coldkey, Some(coldkey.ss58()));
    assert_eq!(neuron.axon, None);

    // Serve an axon; the same one again is not sent; another one is rate-limited.
    let miner_chain = chain_for(&node, &miner, None);
    let served = miner_chain.serve_axon(address).await.unwrap();
    assert!(matches!(served, ServeOutcome::Served { .. }), "{served:?}");
    assert_eq!(
        miner_chain.serve_axon(address).await.unwrap(),
        ServeOutcome::Unchanged
    );
    let metagraph = miner_chain.metagraph().await.unwrap();
    assert_eq!(
        metagraph.by_hotkey(&miner.public()).unwrap().axon,
        Some(address)
    );
    let moved: SocketAddr = "10.1.2.3:9000".parse().unwrap();
    let error = miner_chain.serve_axon(moved).await.unwrap_err().to_string();
    assert!(error.contains("ServingRateLimitExceeded"), "{error}");
    let refused = refusal(
        &miner_chain,
        &calls::serve_axon(NETUID, &calls::AxonFields::new(moved)),
    )
    .await;
    assert!(refused.contains("ServingRateLimitExceeded"), "{refused}");
    assert!(refused.contains("sn2 tries again later"), "{refused}");

    // Weights: the validator gets a permit and a short rate limit, with commit-reveal off.
    let neurons = validator_uid.max(miner_uid) + 1;
    weights_settings(&node, validator_uid, neurons, 3, false).await;
    node.new_blocks(4).await;
    let validator_chain = chain_for(&node, &validator, None);
    let weights = Weights {
        uids: vec![miner_uid],
        values: vec![65535],
    };
    let outcome = validator_chain.set_weights(&weights).await.unwrap();
    assert!(matches!(outcome, WeightsOutcome::Set { .. }), "{outcome:?}");
    assert_eq!(
        read_weights(&validator_chain, validator_uid).await,
        vec![(miner_uid, 65535)]
    );
    // Too soon: sn2 waits; sent anyway, the chain refuses in its own words.
    let outcome = validator_chain.set_weights(&weights).await.unwrap();
    assert!(
        matches!(outcome, WeightsOutcome::NotDue { .. }),
        "{outcome:?}"
    );
    let refused = refusal(
        &validator_chain,
        &calls::set_weights(NETUID, &weights.uids, &weights.values, 0),
    )
    .await;
    assert!(refused.contains("SettingWeightsTooFast"), "{refused}");
    assert!(refused.contains("WeightsSetRateLimit"), "{refused}");
}

/// Submits `payload` as it is, without sn2's own checks first, and returns the chain's
/// refusal as the operator would read it.
async fn refusal(chain: &SubtensorChain, payload: &calls::Payload) -> String {
    let at = chain.at_latest().await.unwrap();
    chain.submit(&at, payload).await.unwrap_err().to_string()
}

/// Gives `validator_uid` (alone among `neurons`) a validator permit, and sets the subnet's
/// weights rate limit and commit-reveal switch; no minimum stake, version key 0.
async fn weights_settings(
    node: &Chopsticks,
    validator_uid: u16,
    neurons: u16,
    rate_limit: u64,
    commit_reveal: bool,
) {
    let permits: Vec<bool> = (0..neurons).map(|uid| uid == validator_uid).collect();
    node.set_storage(json!({ "SubtensorModule": {
        "ValidatorPermit": [[[NETUID], permits]],
        "WeightsSetRateLimit": [[[NETUID], rate_limit]],
        "CommitRevealWeightsEnabled": [[[NETUID], commit_reveal]],
        "WeightsVersionKey": [[[NETUID], 0]],
        "WeightsMinStake": 0,
    }}))
    .await;
}

/// The weights row of `uid` in `SubtensorModule::Weights`, as the chain stores it.
async fn read_weights(chain: &SubtensorChain, uid: u16) -> Vec<(u16, u16)> {
    let at = chain.at_latest().await.unwrap();
    let address = subxt::dynamic::storage::<(u16, u16), Vec<(u16, u16)>>(calls::PALLET, "Weights");
    at.storage()
        .fetch(address, (NETUID, uid))
        .await
        .unwrap()
        .decode()
        .unwrap()
}

/// A fresh chain with a funded coldkey that registered a validator and a miner hotkey.
async fn chain_with_a_validator_and_a_miner() -> Option<(Chopsticks, Hotkey, Hotkey, Hotkey)> {
    let node = Chopsticks::start().await?;
    let (coldkey, validator, miner, _) = keys();
    node.fund(&coldkey.ss58()).await;
    register(&node, &coldkey, &validator).await;
    register(&node, &coldkey, &miner).await;
    Some((node, coldkey, validator, miner))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reveal_commits_then_reveals_in_the_reveal_epoch() {
    let Some((node, _, validator, miner)) = chain_with_a_validator_and_a_miner().await else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let validator_chain = chain_for(&node, &validator, Some(state.path()));
    let metagraph = validator_chain.metagraph().await.unwrap();
    let validator_uid = metagraph.by_hotkey(&validator.public()).unwrap().uid;
    let miner_uid = metagraph.by_hotkey(&miner.public()).unwrap().uid;
    let neurons = validator_uid.max(miner_uid) + 1;
    weights_settings(&node, validator_uid, neurons, 2, true).await;
    node.set_storage(json!({ "SubtensorModule": {
        "Tempo": [[[NETUID], 9]],
        "RevealPeriodEpochs": [[[NETUID], 1]],
    }}))
    .await;
    node.new_blocks(3).await;
    let weights = Weights {
        uids: vec![miner_uid],
        values: vec![65535],
    };

    // Plain weights are refused while commit-reveal is on, with the reason.
    let refused = refusal(
        &validator_chain,
        &calls::set_weights(NETUID, &weights.uids, &weights.values, 0),
    )
    .await;
    assert!(refused.contains("CommitRevealEnabled"), "{refused}");

    // This runtime (spec 218) predates timelocked commits: forcing them is refused with
    // what to do, and nothing is sent.
    let forced = SubtensorChain::new(
        SubtensorOptions {
            weights_mode: sn2::config::WeightsMode::Timelocked,
            ..validator_chain.options().clone()
        },
        Some(Arc::new(validator.clone())),
    );
    let error = forced.set_weights(&weights).await.unwrap_err().to_string();
    assert!(error.contains("weights_mode = \"auto\""), "{error}");

    // Auto takes hash commit-reveal here, timed by the old epoch formula.
    let outcome = validator_chain.set_weights(&weights).await.unwrap();
    let WeightsOutcome::Committed { block, .. } = outcome else {
        panic!("expected a commit, got {outcome:?}");
    };
    let pending = sn2::chain::subtensor::weights::load_commits(state.path()).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].block, block);
    assert!(
        read_weights(&validator_chain, validator_uid)
            .await
            .is_empty()
    );

    // One tempo (10 blocks) after the commit, the reveal epoch has come: a call whose
    // transaction lands in that block reveals.
    node.new_blocks(9).await;
    validator_chain.set_weights(&weights).await.unwrap();
    assert_eq!(
        read_weights(&validator_chain, validator_uid).await,
        vec![(miner_uid, 65535)]
    );
    let pending = sn2::chain::subtensor::weights::load_commits(state.path()).unwrap();
    assert!(pending.iter().all(|c| c.block != block), "{pending:?}");
}

/// One daemon of the full-round test, its log collected for the failure message.
struct Daemon {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(binary: &str, config: &std::path::Path) -> Self {
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(binary)
            .env("SN2_CONFIG", config)
            .env("RUST_LOG", "info,sn2=debug")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for one daemon on the chopsticks chain, with its own wallet (a hotkey made
/// by `sn2 keys new`) and models directory (digits-mlp imported by `sn2 model import`).
fn daemon_config(
    dir: &std::path::Path,
    name: &str,
    node: &Chopsticks,
    extra: &str,
) -> (std::path::PathBuf, Hotkey) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[chain]\nbackend = \"subtensor\"\nnetwork = \"{}\"\nnetuid = {NETUID}\nsync_interval_secs = 2\n\
             [wallet]\npath = \"wallets\"\nname = \"{name}\"\nhotkey = \"default\"\n\
             [models]\ndir = \"{name}-models\"\n{extra}",
            node.url
        ),
    )
    .unwrap();
    let sn2 = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sn2"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("SN2_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "sn2 {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    sn2(&["keys", "new"]);
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits-mlp");
    sn2(&[
        "model",
        "import",
        model.join("model.onnx").to_str().unwrap(),
        "--calibration",
        model.join("calibration.json").to_str().unwrap(),
    ]);
    let hotkey = sn2::config::Config::load(&config)
        .unwrap()
        .wallet_location()
        .load_hotkey()
        .unwrap();
    (config, hotkey)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_and_two_miners_run_a_round_against_the_chain() {
    let Some(node) = Chopsticks::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key_port = sn2::devnet::free_port().unwrap();
    let (validator_config, validator) = daemon_config(
        dir.path(),
        "validator",
        &node,
        &format!(
            "[validator]\nround_interval_secs = 2\nweights_interval_blocks = 1\nstate_dir = \"state\"\nkey_server = \"127.0.0.4:{key_port}\"\n\
             [metrics]\nlisten = \"127.0.0.4:{key_port}\"\n"
        ),
    );
    // Miners on 127.0.0.2 and .3: the chain refuses to record 127.0.0.1 as an axon.
    let mut miners = Vec::new();
    for i in 0..2 {
        let (config, hotkey) = daemon_config(
            dir.path(),
            &format!("miner{i}"),
            &node,
            &format!(
                "[miner]\nlisten = \"127.0.0.{}:{}\"\n[metrics]\nenabled = false\n",
                i + 2,
                sn2::devnet::free_port().unwrap()
            ),
        );
        miners.push((config, hotkey));
    }

    let daemons: Vec<Daemon> = miners
        .iter()
        .map(|(config, _)| Daemon::start(env!("CARGO_BIN_EXE_sn2-miner"), config))
        .chain([Daemon::start(
            env!("CARGO_BIN_EXE_sn2-validator"),
            &validator_config,
        )])
        .collect();

    // Not registered yet: the miners wait, saying how to register, and serve nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !daemons[0].log().contains("is not registered on subnet 1") {
        assert!(
            std::time::Instant::now() < deadline,
            "the miner did not report its missing registration:\n{}",
            daemons[0].log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        daemons[0]
            .log()
            .contains("btcli subnet register --netuid 1")
    );
    assert!(!daemons[0].log().contains("ready"));

    let coldkey = Hotkey::from_seed(&[80; 32]);
    node.fund(&coldkey.ss58()).await;
    register(&node, &coldkey, &validator).await;
    for (_, hotkey) in &miners {
        register(&node, &coldkey, hotkey).await;
    }
    let metagraph = chain_for(&node, &validator, None)
        .metagraph()
        .await
        .unwrap();
    let uid = |key: &Hotkey| metagraph.by_hotkey(&key.public()).unwrap().uid;
    let validator_uid = uid(&validator);
    let miner_uids: Vec<u16> = miners.iter().map(|(_, key)| uid(key)).collect();
    weights_settings(
        &node,
        validator_uid,
        metagraph.neurons.len() as u16,
        1,
        false,
    )
    .await;

    // Blocks come when transactions do; build one every second as a live chain would.
    let reader = chain_for(&node, &validator, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let weights = loop {
        node.new_blocks(1).await;
        let weights = read_weights(&reader, validator_uid).await;
        let covered = miner_uids
            .iter()
            .all(|m| weights.iter().any(|(uid, value)| uid == m && *value > 0));
        if covered {
            break weights;
        }
        if std::time::Instant::now() > deadline {
            let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
            panic!(
                "no weights for both miners on chain within 240 s: {weights:?}\n{}",
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    assert!(
        weights.iter().all(|(uid, _)| miner_uids.contains(uid)),
        "{weights:?}"
    );

    // The miners announced their axons themselves, and the validator verified proofs.
    let metagraph = reader.metagraph().await.unwrap();
    for (i, (_, hotkey)) in miners.iter().enumerate() {
        let axon = metagraph.by_hotkey(&hotkey.public()).unwrap().axon.unwrap();
        assert_eq!(axon.ip().to_string(), format!("127.0.0.{}", i + 2));
    }
    let metrics = match get_metrics(key_port).await {
        Ok(metrics) => metrics,
        Err(error) => panic!(
            "cannot read the validator's metrics on port {key_port}: {error}\n{}",
            daemons.last().unwrap().log()
        ),
    };
    assert!(metrics.contains("sn2_chain_up 1"), "{metrics}");
    let verified: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sn2_proofs_verified_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(verified >= 2, "{metrics}");
    assert!(
        metrics.contains("sn2_weight_submissions_total{outcome=\"set\"}"),
        "{metrics}"
    );
}

/// The validator's /metrics, over a plain TCP HTTP/1.0 request.
async fn get_metrics(port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.4", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metagraph_sync_survives_a_node_restart() {
    use sn2::chain::sync::MetagraphSync;
    let Some(node) = Chopsticks::start().await else {
        return;
    };
    let (coldkey, validator, _, _) = keys();
    node.fund(&coldkey.ss58()).await;
    register(&node, &coldkey, &validator).await;
    let chain: Arc<dyn Chain> = Arc::new(chain_for(&node, &validator, None));
    let sync = MetagraphSync::new(chain, std::time::Duration::from_secs(60));
    let state = sync.subscribe();
    sync.sync_once().await;
    assert!(state.borrow().up);
    let registered = state.borrow().metagraph.as_ref().unwrap().neurons.len();
    assert!(registered >= 1);

    // The node goes away: the sync says so, keeps the last metagraph and backs off.
    let port = node.port;
    drop(node);
    let first = sync.sync_once().await;
    let second = sync.sync_once().await;
    {
        let state = state.borrow();
        assert!(!state.up);
        assert_eq!(state.failures, 2);
        assert!(
            state
                .last_error
                .as_deref()
                .unwrap()
                .contains("cannot reach the chain")
        );
        assert_eq!(state.metagraph.as_ref().unwrap().neurons.len(), registered);
    }
    assert!(second > first, "{first:?} then {second:?}");

    // A node is back at the same address (a fresh chain): the next sync reconnects.
    let node = Chopsticks::start_on(port).await.unwrap();
    sync.sync_once().await;
    assert!(state.borrow().up);
    assert_eq!(state.borrow().failures, 0);
    let fresh = state.borrow().metagraph.clone().unwrap();
    assert!(fresh.by_hotkey(&validator.public()).is_none(), "{fresh:?}");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sn2_metagraph_prints_the_chain_as_a_table_and_as_json() {
    let Some((node, coldkey, validator, miner)) = chain_with_a_validator_and_a_miner().await else {
        return;
    };
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sn2"))
            .args(["metagraph", "--network", &node.url, "--netuid", "1"])
            .args(extra)
            .env_remove("SN2_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(json["netuid"], 1);
    let neurons = json["neurons"].as_array().unwrap();
    for key in [&validator, &miner] {
        let neuron = neurons
            .iter()
            .find(|n| n["hotkey"] == key.ss58())
            .unwrap_or_else(|| panic!("{} is missing: {json:#}", key.ss58()));
        assert_eq!(neuron["coldkey"], coldkey.ss58());
    }
    let table = run(&[]);
    let heading = format!("Subnet 1: {} neurons at block", neurons.len());
    assert!(table.starts_with(&heading), "{table}");
    assert!(table.contains(&miner.ss58()), "{table}");

    // A subnet that does not exist is a clear error, exit code 1.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args(["metagraph", "--network", &node.url, "--netuid", "77"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("there is no subnet 77"), "{stderr}");
}
