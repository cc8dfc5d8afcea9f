//! The chain as the services see it: a metagraph (who is registered, where they serve,
//! who may validate), a place to announce an axon and a place to put weights.
//!
//! [`Chain`] has two backends: [`local::LocalChain`], the fixed metagraph of the config
//! (`[chain] backend = "local"`: the devnet, private deployments), and
//! [`subtensor::SubtensorChain`], a subtensor node reached through subxt. The daemons
//! never call the chain on their request paths: [`sync::MetagraphSync`] refreshes a copy
//! of the metagraph on an interval and survives a dead endpoint.

pub mod epoch;
pub mod local;
pub mod subtensor;
pub mod sync;

use std::net::SocketAddr;

use serde::Serialize;

use crate::keys::PublicKey;

pub use local::{LocalChain, StaticNeuron};

/// One registered hotkey.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neuron {
    pub uid: u16,
    #[serde(serialize_with = "serialize_ss58")]
    pub hotkey: PublicKey,
    /// SS58 of the coldkey that owns the hotkey, where the chain says. Any account (a
    /// multisig or proxy too), so not necessarily an sr25519 key.
    pub coldkey: Option<String>,
    /// Where it serves (QUIC on UDP, HTTP on TCP), if it announced a usable axon.
    pub axon: Option<SocketAddr>,
    pub validator_permit: bool,
    /// Stake on the subnet, in whole units (TAO, or the subnet's alpha).
    pub stake: f64,
    /// The block of its last weights (or commit); 0 when unknown.
    pub last_update: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metagraph {
    pub netuid: u16,
    /// The block it was read at (0 for the local backend).
    pub block: u64,
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

    /// The SS58 addresses of every registered hotkey.
    pub fn hotkeys_ss58(&self) -> std::collections::HashSet<String> {
        self.neurons.iter().map(|n| n.hotkey.to_ss58()).collect()
    }

    /// Whether `hotkey` may send work: a validator permit and at least `min_stake`.
    pub fn may_validate(&self, hotkey: &PublicKey, min_stake: f64) -> bool {
        self.by_hotkey(hotkey)
            .is_some_and(|n| n.validator_permit && n.stake >= min_stake)
    }
}

fn serialize_ss58<S: serde::Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&key.to_ss58())
}

/// Weights as set on chain: uids and u16 values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
}

/// What a request to serve an axon did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeOutcome {
    /// The chain already holds this axon: nothing was sent.
    Unchanged,
    /// The axon was announced at this block.
    Served { block: u64 },
}

/// What a request to set weights did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsOutcome {
    /// Set directly (`set_weights`) at this block.
    Set { block: u64 },
    /// Committed (`commit_weights`) at this block; this validator reveals it from
    /// `reveal_block` on.
    Committed { block: u64, reveal_block: u64 },
    /// Committed encrypted to drand round `reveal_round` (`commit_timelocked_weights`) at
    /// this block; the chain reveals it once it has that round's pulse.
    Timelocked { block: u64, reveal_round: u64 },
    /// Not yet: the chain's rate limit or the configured interval has this many blocks
    /// to run.
    NotDue { blocks_left: u64 },
    /// Kept locally; there is no chain (the local backend).
    Recorded,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{0}")]
    Invalid(String),
    /// The endpoint cannot be reached or stopped answering; worth retrying.
    #[error("cannot reach the chain at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The chain answered in a shape this build does not know.
    #[error("unexpected chain data: {0}")]
    Shape(String),
    /// The chain refused a transaction, in its own words and ours.
    #[error("the chain refused {call}: {error}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Refused {
        call: String,
        error: String,
        hint: Option<String>,
    },
    #[error(
        "hotkey {hotkey} is not registered on subnet {netuid}; register it with `btcli subnet register --netuid {netuid} --wallet.name NAME --wallet.hotkey HOTKEY`"
    )]
    NotRegistered { hotkey: String, netuid: u16 },
    #[error("{0}")]
    State(String),
}

impl ChainError {
    /// Whether trying again later may succeed without the operator doing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, ChainError::Unreachable { .. })
    }
}

/// A chain backend. Implementations are shared between tasks.
#[async_trait::async_trait]
pub trait Chain: Send + Sync {
    /// For logs: the backend and where it points.
    fn describe(&self) -> String;

    fn netuid(&self) -> u16;

    /// The current metagraph of the subnet.
    async fn metagraph(&self) -> Result<Metagraph, ChainError>;

    /// Announces where the signing hotkey serves; does nothing if the chain already
    /// holds that address.
    async fn serve_axon(&self, address: SocketAddr) -> Result<ServeOutcome, ChainError>;

    /// Puts the signing hotkey's weights on chain when they are due, in whatever way the
    /// subnet accepts (see [`subtensor`]).
    async fn set_weights(&self, weights: &Weights) -> Result<WeightsOutcome, ChainError>;
}
