//! Reading a subnet's metagraph from subtensor.
//!
//! One runtime-API call (`NeuronInfoRuntimeApi_get_neurons_lite`) gives every neuron at
//! once in current runtimes, typed in the metadata. Older runtimes return it as opaque
//! `Vec<u8>`, and a future one may change the shape; then the metagraph is read from
//! the pallet's storage instead (`Keys`, `Axons`, `ValidatorPermit`, `LastUpdate`,
//! `Owner`, `TotalHotkeyAlpha`), which costs a few requests per neuron.

use scale_info::TypeDef;
use subxt::Metadata;
use subxt::ext::scale_decode::DecodeAsType;

use super::calls::{PALLET, axon_address};
use crate::chain::{ChainError, Metagraph, Neuron};
use crate::keys::PublicKey;

pub const NEURONS_API: &str = "NeuronInfoRuntimeApi";
pub const NEURONS_LITE: &str = "get_neurons_lite";

/// Rao per unit of TAO (or alpha).
const RAO: f64 = 1e9;

/// The fields of `NeuronInfoLite` sn2 reads; the rest are skipped by name.
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "::subxt::ext::scale_decode")]
pub struct NeuronLite {
    pub hotkey: [u8; 32],
    pub coldkey: [u8; 32],
    pub uid: u16,
    pub axon_info: AxonInfo,
    pub stake: Vec<([u8; 32], u64)>,
    pub last_update: u64,
    pub validator_permit: bool,
}

#[derive(Debug, Clone, Copy, DecodeAsType)]
#[decode_as_type(crate_path = "::subxt::ext::scale_decode")]
pub struct AxonInfo {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
    pub protocol: u8,
}

impl NeuronLite {
    /// The neuron, unless its hotkey cannot be an sr25519 key (an ed25519 hotkey, say):
    /// such a neuron can neither sign sn2's requests nor answer them.
    pub fn to_neuron(&self) -> Option<Neuron> {
        let stake_rao: u128 = self.stake.iter().map(|(_, rao)| *rao as u128).sum();
        Some(Neuron {
            uid: self.uid,
            hotkey: sr25519_hotkey(self.uid, self.hotkey)?,
            coldkey: Some(crate::keys::ss58::encode(&self.coldkey)),
            axon: axon_address(
                self.axon_info.ip,
                self.axon_info.port,
                self.axon_info.ip_type,
            ),
            validator_permit: self.validator_permit,
            stake: stake_rao as f64 / RAO,
            last_update: self.last_update,
        })
    }
}

fn sr25519_hotkey(uid: u16, bytes: [u8; 32]) -> Option<PublicKey> {
    match PublicKey::from_bytes(bytes) {
        Ok(key) => Some(key),
        Err(_) => {
            tracing::debug!(
                uid,
                hotkey = %crate::keys::ss58::encode(&bytes),
                "skipping a neuron whose hotkey is not an sr25519 key"
            );
            None
        }
    }
}

/// How this runtime returns `get_neurons_lite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeuronsApi {
    /// Typed in the metadata: decode with the output type.
    Typed { output_ty: u32 },
    /// Absent, or opaque bytes: read storage instead.
    Unavailable,
}

pub fn neurons_api(metadata: &Metadata) -> NeuronsApi {
    let Some(method) = metadata
        .runtime_api_trait_by_name(NEURONS_API)
        .and_then(|api| api.method_by_name(NEURONS_LITE))
    else {
        return NeuronsApi::Unavailable;
    };
    let output_ty = method.output_ty();
    let opaque = match metadata.types().resolve(output_ty).map(|t| &t.type_def) {
        Some(TypeDef::Sequence(seq)) => matches!(
            metadata
                .types()
                .resolve(seq.type_param.id)
                .map(|t| &t.type_def),
            Some(TypeDef::Primitive(scale_info::TypeDefPrimitive::U8))
        ),
        _ => true,
    };
    if opaque {
        NeuronsApi::Unavailable
    } else {
        NeuronsApi::Typed { output_ty }
    }
}

/// Decodes the answer of `get_neurons_lite` against its type in `metadata`.
pub fn decode_neurons_lite(
    metadata: &Metadata,
    output_ty: u32,
    mut bytes: &[u8],
) -> Result<Vec<Neuron>, ChainError> {
    let neurons = Vec::<NeuronLite>::decode_as_type(&mut bytes, output_ty, metadata.types())
        .map_err(|e| ChainError::Shape(format!("{NEURONS_API}_{NEURONS_LITE}: {e}")))?;
    if !bytes.is_empty() {
        return Err(ChainError::Shape(format!(
            "{NEURONS_API}_{NEURONS_LITE}: {} bytes left over",
            bytes.len()
        )));
    }
    Ok(neurons.iter().filter_map(NeuronLite::to_neuron).collect())
}

/// The storage entries of the fallback, checked against the metadata before use, so that
/// a runtime without them is reported by name.
pub const STORAGE_ENTRIES: [&str; 6] = [
    "Keys",
    "Axons",
    "ValidatorPermit",
    "LastUpdate",
    "Owner",
    "TotalHotkeyAlpha",
];

pub fn check_storage(metadata: &Metadata) -> Result<(), ChainError> {
    let storage = metadata
        .pallet_by_name(PALLET)
        .and_then(|p| p.storage())
        .ok_or_else(|| ChainError::Shape(format!("the runtime has no {PALLET} storage")))?;
    for name in STORAGE_ENTRIES {
        if storage.entry_by_name(name).is_none() {
            return Err(ChainError::Shape(format!(
                "the runtime has no {PALLET}::{name}"
            )));
        }
    }
    Ok(())
}

/// Assembles neurons from the storage entries read one by one.
pub struct StorageNeuron {
    pub uid: u16,
    pub hotkey: [u8; 32],
    pub coldkey: Option<[u8; 32]>,
    pub axon: Option<AxonInfo>,
    pub stake_rao: u64,
}

pub fn from_storage(
    parts: Vec<StorageNeuron>,
    permits: &[bool],
    last_update: &[u64],
) -> Vec<Neuron> {
    parts
        .into_iter()
        .filter_map(|part| {
            let index = part.uid as usize;
            Some(Neuron {
                uid: part.uid,
                hotkey: sr25519_hotkey(part.uid, part.hotkey)?,
                coldkey: part.coldkey.map(|c| crate::keys::ss58::encode(&c)),
                axon: part
                    .axon
                    .and_then(|a| axon_address(a.ip, a.port, a.ip_type)),
                validator_permit: permits.get(index).copied().unwrap_or(false),
                stake: part.stake_rao as f64 / RAO,
                last_update: last_update.get(index).copied().unwrap_or(0),
            })
        })
        .collect()
}

/// A metagraph with its neurons in uid order.
pub fn metagraph(netuid: u16, block: u64, mut neurons: Vec<Neuron>) -> Metagraph {
    neurons.sort_by_key(|n| n.uid);
    Metagraph {
        netuid,
        block,
        neurons,
    }
}
