//! The `local` backend: the fixed metagraph of the config (`[chain] neurons`), without a
//! chain. The devnet and private deployments use it; weights stay in memory, where the
//! validator's metrics and the devnet's table read them.

use std::net::SocketAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Chain, ChainError, Metagraph, Neuron, ServeOutcome, Weights, WeightsOutcome};
use crate::keys::PublicKey;

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
            coldkey: None,
            axon: self.axon,
            validator_permit: self.validator_permit,
            stake: self.stake,
            last_update: 0,
        })
    }
}

/// The chain backend of the config's fixed metagraph.
pub struct LocalChain {
    metagraph: Metagraph,
    last_weights: Mutex<Option<Weights>>,
}

impl LocalChain {
    pub fn new(netuid: u16, neurons: &[StaticNeuron]) -> Result<Self, ChainError> {
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
            metagraph: Metagraph {
                netuid,
                block: 0,
                neurons,
            },
            last_weights: Mutex::new(None),
        })
    }

    pub fn snapshot(&self) -> Metagraph {
        self.metagraph.clone()
    }

    pub fn last_weights(&self) -> Option<Weights> {
        self.last_weights.lock().expect("not poisoned").clone()
    }
}

#[async_trait::async_trait]
impl Chain for LocalChain {
    fn describe(&self) -> String {
        format!(
            "the local metagraph of the config ({} neurons)",
            self.metagraph.neurons.len()
        )
    }

    fn netuid(&self) -> u16 {
        self.metagraph.netuid
    }

    async fn metagraph(&self) -> Result<Metagraph, ChainError> {
        Ok(self.snapshot())
    }

    async fn serve_axon(&self, _address: SocketAddr) -> Result<ServeOutcome, ChainError> {
        // The config already says where everyone serves.
        Ok(ServeOutcome::Unchanged)
    }

    async fn set_weights(&self, weights: &Weights) -> Result<WeightsOutcome, ChainError> {
        *self.last_weights.lock().expect("not poisoned") = Some(weights.clone());
        Ok(WeightsOutcome::Recorded)
    }
}
