//! The current main-network shapes, against the metadata recorded from finney
//! (`tests/data/chain/finney-metadata-v16-2026-04.scale`): call data checked byte for byte
//! against encodings written out by hand, and the neurons and axons sn2 decodes encoded
//! from their metadata types.

use subxt::ext::scale_encode::EncodeAsType;
use subxt::ext::scale_value::Value;
use subxt::{Metadata, OfflineClient, SubstrateConfig};

use super::calls::{self, AxonFields};
use super::metagraph::{self, NeuronsApi};

const FINNEY: &[u8] = include_bytes!("../../../tests/data/chain/finney-metadata-v16-2026-04.scale");

fn finney() -> Metadata {
    Metadata::decode_from(FINNEY).expect("the recorded metadata decodes")
}

/// The call data of `payload` as the finney runtime would receive it.
fn call_data(payload: &calls::Payload) -> String {
    let config = SubstrateConfig::builder()
        .set_metadata_for_spec_versions([(1, finney().arc())])
        .set_spec_version_for_block_ranges([subxt::config::substrate::SpecVersionForRange {
            block_range: 0..u64::MAX,
            spec_version: 1,
            transaction_version: 1,
        }])
        .build();
    let client = OfflineClient::new_with_config(config);
    let at = client.at_block(0u64).unwrap();
    hex::encode(at.tx().call_data(payload).unwrap())
}

#[test]
fn serve_axon_call_data_is_golden() {
    let axon = AxonFields {
        version: 100,
        ip: u32::from(std::net::Ipv4Addr::new(203, 0, 113, 7)) as u128,
        port: 8091,
        ip_type: 4,
        protocol: 4,
    };
    // SubtensorModule (7), serve_axon (4), netuid u16, version u32, ip u128, port u16,
    // ip_type, protocol, two placeholders.
    assert_eq!(
        call_data(&calls::serve_axon(2, &axon)),
        "0704020064000000077100cb0000000000000000000000009b1f04040000"
    );
}

#[test]
fn weights_call_data_is_golden() {
    // set_weights (0): netuid, dests and weights as compact-length vectors of u16, version.
    assert_eq!(
        call_data(&calls::set_weights(2, &[1, 5], &[65535, 100], 7)),
        "07000200080100050008ffff64000700000000000000"
    );
    // commit_weights (96): netuid and the 32-byte hash.
    assert_eq!(
        call_data(&calls::commit_weights(2, [0xab; 32])),
        format!("07600200{}", "ab".repeat(32))
    );
    // reveal_weights (97): netuid, uids, values, salt, version.
    assert_eq!(
        call_data(&calls::reveal_weights(2, &[1], &[65535], &[1, 2], 7)),
        "0761020004010004ffff08010002000700000000000000"
    );
}

#[test]
fn timelocked_commit_call_data_is_golden() {
    // commit_timelocked_weights (113): netuid, the commit as a compact-length byte vector
    // (BoundedVec), reveal_round u64, commit_reveal_version u16.
    assert_eq!(
        call_data(&calls::commit_timelocked_weights(
            2,
            &[0xde, 0xad, 0xbe],
            0x0102030405,
            4
        )),
        "077102000cdeadbe05040302010000000400"
    );
}

#[test]
fn finney_takes_timelocked_commits_and_auto_chooses_them() {
    use super::weights::{RuntimeWeights, WeightsPath, choose_path};
    let runtime = RuntimeWeights::of(&finney());
    assert!(runtime.timelocked && runtime.drand, "{runtime:?}");
    // Recorded in April 2026, before the stateful epoch schedule (May 2026): the old
    // formula times its reveals.
    assert!(!runtime.epoch_schedule, "{runtime:?}");
    assert_eq!(runtime.block_seconds, 12.0);
    let (path, _) = choose_path(crate::config::WeightsMode::Auto, true, &runtime).unwrap();
    assert_eq!(path, WeightsPath::Timelocked);
}

#[test]
fn the_timelock_storage_sn2_reads_decodes_as_its_types() {
    use subxt::ext::scale_decode::DecodeAsType;
    let metadata = finney();
    let decode = |pallet: &str, entry: &str, bytes: &[u8]| -> u64 {
        let entry = metadata
            .pallet_by_name(pallet)
            .and_then(|p| p.storage())
            .and_then(|s| s.entry_by_name(entry))
            .unwrap_or_else(|| panic!("{pallet}::{entry}"));
        u64::decode_as_type(&mut &bytes[..], entry.value_ty(), metadata.types()).unwrap()
    };
    // CommitRevealWeightsVersion: u16; LastStoredRound: u64; the schedule's old entries.
    assert_eq!(
        decode(
            calls::PALLET,
            "CommitRevealWeightsVersion",
            &4u16.to_le_bytes()
        ),
        4
    );
    assert_eq!(
        decode("Drand", "LastStoredRound", &123u64.to_le_bytes()),
        123
    );
    assert_eq!(
        decode(calls::PALLET, "BlocksSinceLastStep", &9u64.to_le_bytes()),
        9
    );
    assert_eq!(
        decode(calls::PALLET, "RevealPeriodEpochs", &1u64.to_le_bytes()),
        1
    );
}

#[test]
fn the_timelock_payload_is_scale_of_hotkey_uids_values_version() {
    let payload = calls::timelock_payload(&[7; 32], &[1, 5], &[65535, 100], 9);
    // Vec<u8> of 32 (compact 32 = 0x80), then the u16 vectors, then the u64.
    assert_eq!(
        hex::encode(payload),
        format!("80{}080100050008ffff64000900000000000000", "07".repeat(32))
    );
}

#[test]
fn the_commit_hash_is_blake2b_of_the_scale_encoded_reveal() {
    let hotkey: [u8; 32] = std::array::from_fn(|i| i as u8);
    let hash = calls::commit_hash(
        &hotkey,
        2,
        &[1, 5],
        &[65535, 100],
        &[1, 2, 3, 4, 5, 6, 7, 8],
        7,
    );
    assert_eq!(
        hex::encode(hash),
        "d156d73793048782fe70697a49755005383f725ece78bc69f6b751d9be7cd404"
    );
}

#[test]
fn finney_has_the_calls_and_storage_sn2_uses() {
    let metadata = finney();
    let pallet = metadata.pallet_by_name(calls::PALLET).unwrap();
    for call in [
        "serve_axon",
        "set_weights",
        "commit_weights",
        "reveal_weights",
        "commit_timelocked_weights",
    ] {
        assert!(pallet.call_variant_by_name(call).is_some(), "{call}");
    }
    metagraph::check_storage(&metadata).unwrap();
    let storage = pallet.storage().unwrap();
    for entry in [
        "Uids",
        "NetworksAdded",
        "ServingRateLimit",
        "WeightsSetRateLimit",
        "WeightsVersionKey",
        "CommitRevealWeightsEnabled",
        "LastUpdate",
        "Tempo",
        "RevealPeriodEpochs",
    ] {
        assert!(storage.entry_by_name(entry).is_some(), "{entry}");
    }
}

fn account(byte: u8) -> Value {
    Value::from_bytes([byte; 32])
}

/// The bytes of a real sr25519 public key.
fn hotkey(seed: u8) -> [u8; 32] {
    *crate::keys::Hotkey::from_seed(&[seed; 32])
        .public()
        .as_bytes()
}

fn axon_value(ip: u128, port: u16) -> Value {
    Value::named_composite([
        ("block", Value::u128(7)),
        ("version", Value::u128(100)),
        ("ip", Value::u128(ip)),
        ("port", Value::u128(port as u128)),
        ("ip_type", Value::u128(4)),
        ("protocol", Value::u128(4)),
        ("placeholder1", Value::u128(0)),
        ("placeholder2", Value::u128(0)),
    ])
}

/// A `NeuronInfoLite` with every field the finney type has.
fn neuron_value(uid: u16, hotkey: [u8; 32], ip: u128, permit: bool, stakes: &[u64]) -> Value {
    Value::named_composite([
        ("hotkey", Value::from_bytes(hotkey)),
        ("coldkey", account(200)),
        ("uid", Value::u128(uid as u128)),
        ("netuid", Value::u128(2)),
        ("active", Value::bool(true)),
        ("axon_info", axon_value(ip, 8091)),
        (
            "prometheus_info",
            Value::named_composite([
                ("block", Value::u128(0)),
                ("version", Value::u128(0)),
                ("ip", Value::u128(0)),
                ("port", Value::u128(0)),
                ("ip_type", Value::u128(0)),
            ]),
        ),
        (
            "stake",
            Value::unnamed_composite(stakes.iter().enumerate().map(|(i, rao)| {
                Value::unnamed_composite([account(100 + i as u8), Value::u128(*rao as u128)])
            })),
        ),
        ("rank", Value::u128(0)),
        ("emission", Value::u128(0)),
        ("incentive", Value::u128(0)),
        ("consensus", Value::u128(0)),
        ("trust", Value::u128(0)),
        ("validator_trust", Value::u128(0)),
        ("dividends", Value::u128(0)),
        ("last_update", Value::u128(1234)),
        ("validator_permit", Value::bool(permit)),
        ("pruning_score", Value::u128(0)),
    ])
}

#[test]
fn neurons_lite_decode_against_the_finney_type() {
    let metadata = finney();
    let NeuronsApi::Typed { output_ty } = metagraph::neurons_api(&metadata) else {
        panic!("finney's get_neurons_lite is typed");
    };
    let ip = u32::from(std::net::Ipv4Addr::new(203, 0, 113, 7)) as u128;
    let neurons = Value::unnamed_composite([
        neuron_value(0, hotkey(1), ip, true, &[3_000_000_000, 500_000_000]),
        neuron_value(1, hotkey(2), 0, false, &[]),
        // Not an sr25519 point (an ed25519 hotkey, say): skipped.
        neuron_value(2, [1; 32], ip, false, &[]),
    ]);
    let bytes = neurons.encode_as_type(output_ty, metadata.types()).unwrap();
    let decoded = metagraph::decode_neurons_lite(&metadata, output_ty, &bytes).unwrap();
    assert_eq!(decoded.len(), 2);
    let validator = &decoded[0];
    assert_eq!(validator.uid, 0);
    assert_eq!(validator.hotkey.as_bytes(), &hotkey(1));
    // Coldkeys are any account (here not a curve point at all).
    assert_eq!(
        validator.coldkey.as_deref(),
        Some(crate::keys::ss58::encode(&[200; 32]).as_str())
    );
    assert_eq!(validator.axon, Some("203.0.113.7:8091".parse().unwrap()));
    assert!(validator.validator_permit);
    assert_eq!(validator.stake, 3.5);
    assert_eq!(validator.last_update, 1234);
    // No axon announced (ip 0): not a miner to query.
    assert_eq!(decoded[1].axon, None);
    assert!(!decoded[1].validator_permit);

    // Bytes that do not fit the type are an error, not a metagraph.
    let error = metagraph::decode_neurons_lite(&metadata, output_ty, &bytes[..bytes.len() - 3])
        .unwrap_err()
        .to_string();
    assert!(error.contains("get_neurons_lite"), "{error}");
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(metagraph::decode_neurons_lite(&metadata, output_ty, &longer).is_err());
}

#[test]
fn axons_decode_against_the_finney_storage_type() {
    use subxt::ext::scale_decode::DecodeAsType;
    let metadata = finney();
    let entry = metadata
        .pallet_by_name(calls::PALLET)
        .and_then(|p| p.storage())
        .and_then(|s| s.entry_by_name("Axons"))
        .unwrap();
    let ip = u128::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let mut value = axon_value(ip, 443);
    if let subxt::ext::scale_value::ValueDef::Composite(
        subxt::ext::scale_value::Composite::Named(fields),
    ) = &mut value.value
    {
        fields[4].1 = Value::u128(6);
    }
    let bytes = value
        .encode_as_type(entry.value_ty(), metadata.types())
        .unwrap();
    let axon =
        metagraph::AxonInfo::decode_as_type(&mut &bytes[..], entry.value_ty(), metadata.types())
            .unwrap();
    assert_eq!(
        calls::axon_address(axon.ip, axon.port, axon.ip_type),
        Some("[2001:db8::1]:443".parse().unwrap())
    );
}

#[test]
fn axon_addresses_round_trip_and_unusable_ones_are_none() {
    for address in ["203.0.113.7:8091", "[2001:db8::1]:443"] {
        let address = address.parse().unwrap();
        assert_eq!(AxonFields::new(address).address(), Some(address));
    }
    assert_eq!(calls::axon_address(0, 8091, 4), None);
    assert_eq!(calls::axon_address(1, 0, 4), None);
    assert_eq!(calls::axon_address(1, 8091, 5), None);
    assert_eq!(calls::axon_address(u128::MAX, 8091, 4), None);
}

#[test]
fn pool_refusals_are_named_and_explained() {
    assert_eq!(
        super::custom_code("Invalid Transaction: Custom error: 12"),
        Some(12)
    );
    assert_eq!(
        super::custom_code("{\"invalid\":{\"custom\":10}}"),
        Some(10)
    );
    assert_eq!(super::custom_code("stale"), None);
    assert_eq!(
        calls::custom_error_name(12),
        Some("ServingRateLimitExceeded")
    );
    let hint = calls::hint("HotKeyNotRegisteredInNetwork", 2).unwrap();
    assert!(hint.contains("btcli subnet register --netuid 2"), "{hint}");
    assert!(calls::hint("SomethingElse", 2).is_none());
}
