//! Proofs of inference: that a given model, run on a given input, produced a given output,
//! for one request.
//!
//! A [`ProofSystem`] turns a quantised model into keys, provers and verifiers. Callers hold
//! only the trait objects, so a second backend (a transparent STARK) slots in beside
//! [`groth16::Groth16Bn254`] without touching them. Setup belongs to the verifier: whoever
//! checks proofs makes the keys with fresh randomness and trusts no one else's. [`ptau`]
//! reads and checks public powers of tau, the first phase of keys that anyone can trust.
//!
//! Every proof is bound to its request by a public [`Binding`], a field element derived
//! from the model id, the miner's hotkey and the validator's nonce, so a proof cannot be
//! replayed for another request or presented by another miner.

mod circuit;
pub mod file;
pub mod groth16;
pub mod keys;
pub mod ptau;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use blake2::{Blake2b512, Digest};

use crate::keys::PublicKey;
use crate::model::{ModelId, QuantModel};

pub use file::ProofFile;

/// Domain separation of the binding hash.
const BINDING_DOMAIN: &[u8] = b"sn2/request-binding/v1";

/// What ties a proof to one request: H(domain, model id, miner hotkey, nonce), as 31
/// bytes so that it is below the field's modulus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding(pub [u8; 31]);

impl Binding {
    pub fn new(model: &ModelId, miner: &PublicKey, nonce: &[u8; 32]) -> Self {
        let mut hasher = Blake2b512::new();
        hasher.update(BINDING_DOMAIN);
        hasher.update(model.0);
        hasher.update(miner.as_bytes());
        hasher.update(nonce);
        let digest = hasher.finalize();
        let mut bytes = [0u8; 31];
        bytes.copy_from_slice(&digest[..31]);
        Self(bytes)
    }
}

/// What a proof claims: this input gave this output, for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub input: Vec<i8>,
    pub output: Vec<i32>,
    pub binding: Binding,
}

/// A computed output with its proof.
#[derive(Debug, Clone)]
pub struct Proven {
    pub output: Vec<i32>,
    pub proof: Vec<u8>,
}

/// A proving and a verifying key, serialised by the backend.
pub struct KeyPair {
    pub proving: Vec<u8>,
    pub verifying: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(
        "the proof does not verify: the output, input or request binding is not what was proved, or the proof was forged"
    )]
    Rejected,
    #[error("malformed proof: {0}")]
    MalformedProof(String),
    #[error(
        "the proof names verifying key {named}, but this model's key is {ours}: it was made with other keys (a node that made its own with `sn2 model setup`, or keys made again since); verify it where key {named} is, or prove again with this node's keys"
    )]
    OtherKey { named: String, ours: String },
    #[error("malformed key: {0}")]
    MalformedKey(String),
    #[error("{}", stale_key(*.revision, .model))]
    /// A key made for another circuit revision (see [`crate::circuit::REVISION`]).
    StaleKey { revision: u16, model: String },
    #[error("model `{name}` has no {backend} keys yet: make them with `sn2 model setup {id}`")]
    MissingKey {
        name: String,
        id: String,
        backend: String,
    },
    #[error("the statement does not fit the model: {0}")]
    Statement(String),
    #[error("cannot synthesise the circuit: {0}")]
    Synthesis(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

fn stale_key(revision: u16, model: &str) -> String {
    let current = crate::circuit::REVISION;
    let what_to_do = if revision < current {
        format!(
            "make new keys with `sn2 model setup {model} --force` (for a ceremony's keys, start a new ceremony); miners fetch the new proving key from the validator on their own"
        )
    } else {
        "update sn2: a newer one made the key".to_string()
    };
    format!(
        "a key made for circuit revision {revision}, but this sn2 builds revision {current}: {what_to_do}"
    )
}

pub trait ProofSystem: Send + Sync {
    /// A stable name, written into key and proof files.
    fn name(&self) -> &'static str;

    /// Makes fresh keys for `model`, with randomness from the operating system.
    fn setup(&self, model: &QuantModel) -> Result<KeyPair, ProofError> {
        self.setup_reporting(model, &mut |_| {})
    }

    /// [`ProofSystem::setup`], telling `report` each step as it ends (a large circuit's
    /// setup takes minutes).
    fn setup_reporting(
        &self,
        model: &QuantModel,
        report: &mut dyn FnMut(&str),
    ) -> Result<KeyPair, ProofError>;

    fn prover(
        &self,
        model: Arc<QuantModel>,
        proving_key: &[u8],
    ) -> Result<Box<dyn Prover>, ProofError>;

    /// Proves `input` once, bound to `binding`, with the proving key read from `source`,
    /// which holds `len` bytes of it: a one-shot `sn2 prove`. A backend that can read its
    /// key as a stream never holds the bytes beside what they become, and may run the
    /// model while the key is still being read.
    fn prove_once(
        &self,
        model: Arc<QuantModel>,
        source: &mut (dyn std::io::Read + Send),
        len: u64,
        input: &[i8],
        binding: &Binding,
    ) -> Result<Proven, ProofError> {
        let mut proving_key = Vec::new();
        read_key_bytes(source, len, &mut proving_key)?;
        self.prover(model, &proving_key)?.prove(input, binding)
    }

    fn verifier(
        &self,
        model: &QuantModel,
        verifying_key: &[u8],
    ) -> Result<Box<dyn Verifier>, ProofError>;

    /// The size of the model's circuit, in the backend's own unit (constraints for R1CS).
    fn circuit_size(&self, model: &QuantModel) -> Result<usize, ProofError> {
        Ok(self.circuit_costs(model)?.iter().map(|(_, n)| n).sum())
    }

    /// The circuit's size per kind of operator (and the backend's own parts).
    fn circuit_costs(&self, model: &QuantModel) -> Result<Vec<(String, usize)>, ProofError>;
}

/// Appends the next `len` bytes of a key's stream to `bytes`.
pub(crate) fn read_key_bytes(
    source: &mut dyn std::io::Read,
    len: u64,
    bytes: &mut Vec<u8>,
) -> Result<(), ProofError> {
    use std::io::Read as _;
    std::io::Read::take(source, len)
        .read_to_end(bytes)
        .map_err(|error| ProofError::MalformedKey(format!("cannot read the key: {error}")))?;
    Ok(())
}

/// The time each stage of one proof took, in order.
pub type Stages = Vec<(&'static str, std::time::Duration)>;

pub trait Prover: Send + Sync {
    /// Runs the model on `input` and proves the result, bound to `binding`.
    fn prove(&self, input: &[i8], binding: &Binding) -> Result<Proven, ProofError>;

    /// [`Prover::prove`], with the time each stage took (for `sn2 bench`).
    fn prove_profiled(
        &self,
        input: &[i8],
        binding: &Binding,
    ) -> Result<(Proven, Stages), ProofError> {
        let started = std::time::Instant::now();
        let proven = self.prove(input, binding)?;
        Ok((proven, vec![("prove", started.elapsed())]))
    }

    /// A proof of a random input of `model` (this prover's model), bound to `binding`,
    /// with its statement: what a caller verifies to see that a proving key and a
    /// verifying key belong together, before it relies on either.
    fn prove_random_input(
        &self,
        model: &QuantModel,
        binding: Binding,
    ) -> Result<(Statement, Vec<u8>), ProofError> {
        let mut bytes = vec![0u8; model.input_len()];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        let input: Vec<i8> = bytes.into_iter().map(|b| b as i8).collect();
        let proven = self.prove(&input, &binding)?;
        let statement = Statement {
            input,
            output: proven.output,
            binding,
        };
        Ok((statement, proven.proof))
    }
}

pub trait Verifier: Send + Sync {
    fn verify(&self, statement: &Statement, proof: &[u8]) -> Result<(), ProofError>;

    /// Checks several proofs of one model: one result per claim, in order, each as
    /// [`Verifier::verify`] would give it. A backend that checks a batch more cheaply than
    /// one by one overrides this; it must still name every false proof.
    fn verify_batch(&self, claims: &[(&Statement, &[u8])]) -> Vec<Result<(), ProofError>> {
        claims
            .iter()
            .map(|(statement, proof)| self.verify(statement, proof))
            .collect()
    }
}

/// The backends this build offers, by name.
pub fn backend(name: &str) -> Option<Box<dyn ProofSystem>> {
    match name {
        groth16::NAME => Some(Box::new(groth16::Groth16Bn254)),
        _ => None,
    }
}

/// The backend used when none is named.
pub fn default_backend() -> Box<dyn ProofSystem> {
    Box::new(groth16::Groth16Bn254)
}
