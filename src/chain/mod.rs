//! The chain as the services see it: a metagraph (who is registered, where they serve,
//! who may validate) and a place to put weights. This backend is the static
//! metagraph of the config (`[chain] backend = "static"`), used by the devnet and by
//! private deployments; the subtensor backend comes with its own issue.

use std::net::SocketAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;

/// One registered hotkey.
#[derive(Debug, Clone, PartialEq)]
pub struct Neuron {
    pub uid: u16,
    pub hotkey: PublicKey,
    /// Where it serves (QUIC on UDP, HTTP on TCP), if it serves.
    pub axon: Option<SocketAddr>,
    pub validator_permit: bool,
    /// Stake in TAO.
    pub stake: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metagraph {
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    pub fn by_hotkey(&self, hotkey: &PublicKey) -> Option<&Neuron> {
        self.neurons.iter().find(|n| &n.hotkey == hotkey)
    }

    /// Neurons that serve, other than `me`: the miners a validator may query.
    pub fn miners(&self, me: &PublicKey) -> Vec<&Neuron> {
        self.neurons
            .iter()
            .filter(|n| n.axon.is_some() && &n.hotkey != me)
            .collect()
    }

    /// Whether `hotkey` may send work: a validator permit and at least `min_stake`.
    pub fn may_validate(&self, hotkey: &PublicKey, min_stake: f64) -> bool {
        self.by_hotkey(hotkey)
            .is_some_and(|n| n.validator_permit && n.stake >= min_stake)
    }
}

/// A neuron of the static metagraph, as written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNeuron {
    pub uid: u16,
    /// SS58 address of the hotkey.
    pub hotkey: String,
    /// `ip:port` where it serves; absent for a validator that does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axon: Option<SocketAddr>,
    #[serde(default)]
    pub validator_permit: bool,
    #[serde(default)]
    pub stake: f64,
}

impl StaticNeuron {
    pub fn to_neuron(&self) -> Result<Neuron, String> {
        let hotkey =
            PublicKey::from_ss58(&self.hotkey).map_err(|e| format!("uid {}: {e}", self.uid))?;
        if !(self.stake.is_finite() && self.stake >= 0.0) {
            return Err(format!(
                "uid {}: stake must be a non-negative number",
                self.uid
            ));
        }
        Ok(Neuron {
            uid: self.uid,
            hotkey,
            axon: self.axon,
            validator_permit: self.validator_permit,
            stake: self.stake,
        })
    }
}

/// Weights as set on chain: uids and u16 values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{0}")]
    Invalid(String),
}

/// The chain backend of the config's static metagraph. Weights are kept in memory (and
/// reported by the validator's metrics); there is no chain to send them to.
pub struct StaticChain {
    metagraph: Metagraph,
    last_weights: Mutex<Option<Weights>>,
}

impl StaticChain {
    pub fn new(neurons: &[StaticNeuron]) -> Result<Self, ChainError> {
        let neurons = neurons
            .iter()
            .map(StaticNeuron::to_neuron)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ChainError::Invalid)?;
        let mut uids: Vec<u16> = neurons.iter().map(|n| n.uid).collect();
        uids.sort_unstable();
        uids.dedup();
        if uids.len() != neurons.len() {
            return Err(ChainError::Invalid("two neurons share a uid".into()));
        }
        Ok(Self {
            metagraph: Metagraph { neurons },
            last_weights: Mutex::new(None),
        })
    }

    pub fn metagraph(&self) -> Metagraph {
        self.metagraph.clone()
    }

    pub fn set_weights(&self, weights: Weights) -> Result<(), ChainError> {
        *self.last_weights.lock().expect("not poisoned") = Some(weights);
        Ok(())
    }

    pub fn last_weights(&self) -> Option<Weights> {
        self.last_weights.lock().expect("not poisoned").clone()
    }
}
