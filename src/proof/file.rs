//! The proof file of `sn2 prove` and `sn2 verify`: JSON carrying the statement (input,
//! output, and the miner and nonce the binding is derived from), the proof, and which
//! model and key it is for, so that anyone holding the model can check it.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Binding, ProofError, Statement};
use crate::keys::PublicKey;
use crate::model::ModelId;

pub const FORMAT: &str = "sn2-proof/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    pub format: String,
    pub backend: String,
    /// The model id (hex).
    pub model: String,
    /// The fingerprint of the verifying key the prover's key pairs with.
    pub verifying_key: String,
    /// The miner's hotkey (SS58) and the request's nonce (hex): the binding's inputs.
    pub miner: String,
    pub nonce: String,
    /// The quantised input and the output integers.
    pub input: Vec<i8>,
    pub output: Vec<i32>,
    /// The output as real numbers (output × output scale); informational.
    pub output_values: Vec<f64>,
    /// The proof, base64.
    pub proof: String,
}

impl ProofFile {
    pub fn parse(text: &str) -> Result<Self, ProofError> {
        let file: ProofFile = serde_json::from_str(text)
            .map_err(|e| ProofError::MalformedProof(format!("not a proof file: {e}")))?;
        if file.format != FORMAT {
            return Err(ProofError::MalformedProof(format!(
                "format `{}`; this build reads `{FORMAT}`",
                file.format
            )));
        }
        Ok(file)
    }

    pub fn model_id(&self) -> Result<ModelId, ProofError> {
        ModelId::from_hex(&self.model)
            .ok_or_else(|| ProofError::MalformedProof("`model` is not a model id".into()))
    }

    pub fn miner_key(&self) -> Result<PublicKey, ProofError> {
        PublicKey::from_ss58(&self.miner)
            .map_err(|e| ProofError::MalformedProof(format!("`miner`: {e}")))
    }

    pub fn nonce_bytes(&self) -> Result<[u8; 32], ProofError> {
        hex::decode(&self.nonce)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ProofError::MalformedProof("`nonce` is not 32 bytes of hex".into()))
    }

    pub fn proof_bytes(&self) -> Result<Vec<u8>, ProofError> {
        decode_proof(&self.proof)
    }

    /// The statement this file claims, with the binding recomputed from its parts.
    pub fn statement(&self) -> Result<Statement, ProofError> {
        let binding = Binding::new(&self.model_id()?, &self.miner_key()?, &self.nonce_bytes()?);
        Ok(Statement {
            input: self.input.clone(),
            output: self.output.clone(),
            binding,
        })
    }

    pub fn encode_proof(proof: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(proof)
    }
}

/// A proof's bytes from its base64 text (in proof files and on the wire).
pub fn decode_proof(text: &str) -> Result<Vec<u8>, ProofError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ProofError::MalformedProof(format!("the proof is not base64: {e}")))
}
