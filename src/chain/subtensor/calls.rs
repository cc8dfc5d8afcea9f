//! The SubtensorModule calls sn2 makes, built by name against the runtime's metadata
//! (call indices drift between runtimes), and what the chain's refusals mean for an
//! operator.

use std::net::{IpAddr, SocketAddr};

use blake2::digest::{Update, VariableOutput};
use subxt::ext::codec::Encode;
use subxt::ext::scale_value::{Composite, Value};

pub const PALLET: &str = "SubtensorModule";

/// The axon protocol number announced with an axon (Bittensor's default).
pub const AXON_PROTOCOL: u8 = 4;

/// An axon as the chain stores it (`AxonInfo`), reduced to what sn2 compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxonFields {
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
    pub protocol: u8,
}

impl AxonFields {
    pub fn new(address: SocketAddr) -> Self {
        let (ip, ip_type) = match address.ip() {
            IpAddr::V4(v4) => (u32::from(v4) as u128, 4),
            IpAddr::V6(v6) => (u128::from(v6), 6),
        };
        Self {
            version: version_number(),
            ip,
            port: address.port(),
            ip_type,
            protocol: AXON_PROTOCOL,
        }
    }

    /// Where the axon is, if it names a usable address.
    pub fn address(&self) -> Option<SocketAddr> {
        axon_address(self.ip, self.port, self.ip_type)
    }
}

/// The socket address of a chain axon; `None` when none was announced (zero address or
/// port) or the IP type is unknown.
pub fn axon_address(ip: u128, port: u16, ip_type: u8) -> Option<SocketAddr> {
    if ip == 0 || port == 0 {
        return None;
    }
    let ip = match ip_type {
        4 => IpAddr::V4(u32::try_from(ip).ok()?.into()),
        6 => IpAddr::V6(ip.into()),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// sn2's version as the number announced with an axon: major·10000 + minor·100 + patch.
pub fn version_number() -> u32 {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

fn u16s(values: &[u16]) -> Value {
    Value::unnamed_composite(values.iter().map(|v| Value::u128(*v as u128)))
}

fn call(name: &str, fields: Vec<(&str, Value)>) -> subxt::tx::DynamicPayload<Composite<()>> {
    subxt::dynamic::tx(
        PALLET,
        name,
        Composite::named(fields.into_iter().map(|(k, v)| (k.to_string(), v))),
    )
}

pub type Payload = subxt::tx::DynamicPayload<Composite<()>>;

pub fn serve_axon(netuid: u16, axon: &AxonFields) -> Payload {
    call(
        "serve_axon",
        vec![
            ("netuid", Value::u128(netuid as u128)),
            ("version", Value::u128(axon.version as u128)),
            ("ip", Value::u128(axon.ip)),
            ("port", Value::u128(axon.port as u128)),
            ("ip_type", Value::u128(axon.ip_type as u128)),
            ("protocol", Value::u128(axon.protocol as u128)),
            ("placeholder1", Value::u128(0)),
            ("placeholder2", Value::u128(0)),
        ],
    )
}

pub fn set_weights(netuid: u16, uids: &[u16], values: &[u16], version_key: u64) -> Payload {
    call(
        "set_weights",
        vec![
            ("netuid", Value::u128(netuid as u128)),
            ("dests", u16s(uids)),
            ("weights", u16s(values)),
            ("version_key", Value::u128(version_key as u128)),
        ],
    )
}

pub fn commit_weights(netuid: u16, hash: [u8; 32]) -> Payload {
    call(
        "commit_weights",
        vec![
            ("netuid", Value::u128(netuid as u128)),
            ("commit_hash", Value::from_bytes(hash)),
        ],
    )
}

pub fn reveal_weights(
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> Payload {
    call(
        "reveal_weights",
        vec![
            ("netuid", Value::u128(netuid as u128)),
            ("uids", u16s(uids)),
            ("values", u16s(values)),
            ("salt", u16s(salt)),
            ("version_key", Value::u128(version_key as u128)),
        ],
    )
}

/// A commit the chain decrypts itself with drand round `reveal_round`'s pulse and then
/// reveals; `version` is the chain's `CommitRevealWeightsVersion`.
pub fn commit_timelocked_weights(
    netuid: u16,
    commit: &[u8],
    reveal_round: u64,
    version: u16,
) -> Payload {
    call(
        "commit_timelocked_weights",
        vec![
            ("netuid", Value::u128(netuid as u128)),
            ("commit", Value::from_bytes(commit)),
            ("reveal_round", Value::u128(reveal_round as u128)),
            ("commit_reveal_version", Value::u128(version as u128)),
        ],
    )
}

/// What a timelocked commit encrypts: SCALE of `{hotkey: Vec<u8>, uids, values,
/// version_key}`, the hotkey being the committer's 32-byte public key (the chain checks it
/// against the sender).
pub fn timelock_payload(
    hotkey: &[u8; 32],
    uids: &[u16],
    values: &[u16],
    version_key: u64,
) -> Vec<u8> {
    (hotkey.to_vec(), uids.to_vec(), values.to_vec(), version_key).encode()
}

/// The hash `commit_weights` commits to and `reveal_weights` is checked against:
/// BLAKE2b-256 of SCALE(hotkey, netuid, uids, values, salt, version_key).
pub fn commit_hash(
    hotkey: &[u8; 32],
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> [u8; 32] {
    let encoded = (
        hotkey,
        netuid,
        uids.to_vec(),
        values.to_vec(),
        salt.to_vec(),
        version_key,
    )
        .encode();
    let mut hasher = blake2::Blake2bVar::new(32).expect("32 is a valid BLAKE2b length");
    hasher.update(&encoded);
    let mut hash = [0u8; 32];
    hasher
        .finalize_variable(&mut hash)
        .expect("the buffer has the hash's length");
    hash
}

/// The names of the chain's refusals that sn2 explains, from the pallet's errors and
/// from the transaction pool's custom codes (`InvalidTransaction::Custom(n)`).
pub fn custom_error_name(code: u8) -> Option<&'static str> {
    Some(match code {
        2 => "BalanceTooLow",
        3 => "SubnetNotExists",
        6 => "RateLimitExceeded",
        10 => "HotKeyNotRegisteredInNetwork",
        11 => "InvalidIpAddress",
        12 => "ServingRateLimitExceeded",
        13 => "InvalidPort",
        16 => "CommitNotFound",
        17 => "CommitBlockNotInRevealRange",
        19 => "UidNotFound",
        _ => return None,
    })
}

/// What an operator should know about a refusal, where sn2 has something to say.
pub fn hint(error_name: &str, netuid: u16) -> Option<String> {
    let register = format!(
        "register the hotkey first: btcli subnet register --netuid {netuid} --wallet.name NAME --wallet.hotkey HOTKEY"
    );
    Some(match error_name {
        "HotKeyNotRegisteredInNetwork" | "HotKeyNotRegisteredInSubNet" | "NotRegistered"
        | "UidNotFound" => register,
        "ServingRateLimitExceeded" => "the subnet allows one axon update per `ServingRateLimit` blocks; sn2 tries again later".into(),
        "SettingWeightsTooFast" | "CommittingWeightsTooFast" | "RateLimitExceeded" => "the subnet's `WeightsSetRateLimit` blocks have not passed since this hotkey's last weights; sn2 tries again later".into(),
        "InvalidIpAddress" | "InvalidIpType" => "the chain refuses this IP (0, 127.0.0.1 and ::1 are refused): set `[miner] external_ip` to the address validators reach".into(),
        "InvalidPort" => "set `[miner] external_port` (or the port of `[miner] listen`) to a non-zero port".into(),
        "CommitRevealEnabled" => "the subnet has commit-reveal on: weights must be committed, not set".into(),
        "CommitRevealDisabled" => "the subnet has commit-reveal off: weights must be set directly".into(),
        "NeuronNoValidatorPermit" => format!("this hotkey has no validator permit on subnet {netuid}: it needs more stake"),
        "IncorrectWeightVersionKey" => "the subnet's `WeightsVersionKey` is newer than this sn2: update sn2".into(),
        "RevealTooEarly" => "the commit's reveal epoch has not started; sn2 reveals later".into(),
        "ExpiredWeightCommit" => "the commit's reveal window has passed".into(),
        "SubNetworkDoesNotExist" | "SubnetNotExists" | "MechanismDoesNotExist" => format!("there is no subnet {netuid} on this network: check `[chain] netuid`"),
        "BalanceTooLow" | "NotEnoughBalanceToStake" => "the account's free balance is too low for this call".into(),
        _ => return None,
    })
}
