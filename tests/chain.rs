//! The subtensor backend against a real runtime (chopsticks on loopback, see
//! `tests/chopsticks`): registration seen in the metagraph, axons served, weights set and
//! read back from storage, commit-reveal, and the chain's own refusals reaching the
//! operator as clear messages.

mod chopsticks;

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
    let at = stranger_chain.at_latest().await.unwrap();
    let refused = stranger_chain
        .submit(
            &at,
            &calls::serve_axon(NETUID, &calls::AxonFields::new(address)),
        )
        .await
        .unwrap_err()
        .to_string();
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
    let at = miner_chain.at_latest().await.unwrap();
    let refused = miner_chain
        .submit(
            &at,
            &calls::serve_axon(NETUID, &calls::AxonFields::new(moved)),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("ServingRateLimitExceeded"), "{refused}");
    assert!(refused.contains("sn2 tries again later"), "{refused}");

    // Weights: the validator gets a permit and a short rate limit, with commit-reveal off.
    let permits: Vec<bool> = (0..=validator_uid.max(miner_uid))
        .map(|uid| uid == validator_uid)
        .collect();
    node.set_storage(json!({ "SubtensorModule": {
        "ValidatorPermit": [[[NETUID], permits]],
        "WeightsSetRateLimit": [[[NETUID], 3]],
        "CommitRevealWeightsEnabled": [[[NETUID], false]],
        "WeightsVersionKey": [[[NETUID], 0]],
        "WeightsMinStake": 0,
    }}))
    .await;
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
    let at = validator_chain.at_latest().await.unwrap();
    let refused = validator_chain
        .submit(
            &at,
            &calls::set_weights(NETUID, &weights.uids, &weights.values, 0),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("SettingWeightsTooFast"), "{refused}");
    assert!(refused.contains("WeightsSetRateLimit"), "{refused}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reveal_commits_then_reveals_in_the_reveal_epoch() {
    let Some(node) = Chopsticks::start().await else {
        return;
    };
    let (coldkey, validator, miner, _) = keys();
    node.fund(&coldkey.ss58()).await;
    register(&node, &coldkey, &validator).await;
    register(&node, &coldkey, &miner).await;
    let state = tempfile::tempdir().unwrap();
    let validator_chain = chain_for(&node, &validator, Some(state.path()));
    let metagraph = validator_chain.metagraph().await.unwrap();
    let validator_uid = metagraph.by_hotkey(&validator.public()).unwrap().uid;
    let miner_uid = metagraph.by_hotkey(&miner.public()).unwrap().uid;
    let permits: Vec<bool> = (0..=validator_uid.max(miner_uid))
        .map(|uid| uid == validator_uid)
        .collect();
    node.set_storage(json!({ "SubtensorModule": {
        "ValidatorPermit": [[[NETUID], permits]],
        "WeightsSetRateLimit": [[[NETUID], 2]],
        "CommitRevealWeightsEnabled": [[[NETUID], true]],
        "Tempo": [[[NETUID], 9]],
        "RevealPeriodEpochs": [[[NETUID], 1]],
        "WeightsVersionKey": [[[NETUID], 0]],
        "WeightsMinStake": 0,
    }}))
    .await;
    node.new_blocks(3).await;
    let weights = Weights {
        uids: vec![miner_uid],
        values: vec![65535],
    };

    // Plain weights are refused while commit-reveal is on, with the reason.
    let at = validator_chain.at_latest().await.unwrap();
    let refused = validator_chain
        .submit(
            &at,
            &calls::set_weights(NETUID, &weights.uids, &weights.values, 0),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("CommitRevealEnabled"), "{refused}");

    let outcome = validator_chain.set_weights(&weights).await.unwrap();
    let WeightsOutcome::Committed { block } = outcome else {
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
