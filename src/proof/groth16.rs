//! Groth16 over BN254 (ark-groth16): 128-byte proofs, verification in milliseconds, keys
//! specific to each model's circuit.

use std::sync::Arc;

use ark_bn254::{Bn254, Fr};
use ark_ff::PrimeField;
use ark_groth16::{
    Groth16, PreparedVerifyingKey, Proof, ProvingKey, VerifyingKey, prepare_verifying_key,
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem, SynthesisMode};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand_core::OsRng;

use super::circuit::{InferenceCircuit, public_inputs};
use super::{Binding, KeyPair, ProofError, ProofSystem, Proven, Prover, Statement, Verifier};
use crate::model::QuantModel;

pub const NAME: &str = "groth16-bn254";
/// Compressed proof size: A and C in G1 (32 bytes each), B in G2 (64 bytes).
pub const PROOF_BYTES: usize = 128;

pub struct Groth16Bn254;

fn binding_element(binding: &Binding) -> Fr {
    Fr::from_le_bytes_mod_order(&binding.0)
}

fn zero_circuit(model: &QuantModel) -> (Vec<i8>, Fr) {
    (vec![0i8; model.input_len()], Fr::from(0u64))
}

impl ProofSystem for Groth16Bn254 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn setup(&self, model: &QuantModel) -> Result<KeyPair, ProofError> {
        let (input, binding) = zero_circuit(model);
        let circuit = InferenceCircuit {
            model,
            input: &input,
            binding,
        };
        let proving_key =
            Groth16::<Bn254>::generate_random_parameters_with_reduction(circuit, &mut OsRng)
                .map_err(|e| ProofError::Synthesis(e.to_string()))?;
        let mut proving = Vec::new();
        proving_key
            .serialize_uncompressed(&mut proving)
            .expect("serialising to memory cannot fail");
        let mut verifying = Vec::new();
        proving_key
            .vk
            .serialize_compressed(&mut verifying)
            .expect("serialising to memory cannot fail");
        Ok(KeyPair { proving, verifying })
    }

    fn prover(
        &self,
        model: Arc<QuantModel>,
        proving_key: &[u8],
    ) -> Result<Box<dyn Prover>, ProofError> {
        // The proving key comes from this node's own disk or its validator; checking every
        // point would cost seconds and protect only the prover from itself.
        let key = ProvingKey::<Bn254>::deserialize_uncompressed_unchecked(proving_key)
            .map_err(|e| ProofError::MalformedKey(e.to_string()))?;
        let expected_inputs = model.input_len() + 1 + model.output_len() + 1;
        if key.vk.gamma_abc_g1.len() != expected_inputs {
            return Err(ProofError::MalformedKey(
                "the proving key is for another model".into(),
            ));
        }
        Ok(Box::new(Groth16Prover { model, key }))
    }

    fn verifier(
        &self,
        model: &QuantModel,
        verifying_key: &[u8],
    ) -> Result<Box<dyn Verifier>, ProofError> {
        let key = VerifyingKey::<Bn254>::deserialize_compressed(verifying_key)
            .map_err(|e| ProofError::MalformedKey(e.to_string()))?;
        // One point per public input, plus one for the constant.
        let expected = model.input_len() + 1 + model.output_len() + 1;
        if key.gamma_abc_g1.len() != expected {
            return Err(ProofError::MalformedKey(format!(
                "the verifying key takes {} public inputs; this model has {}",
                key.gamma_abc_g1.len().saturating_sub(1),
                expected - 1
            )));
        }
        Ok(Box::new(Groth16Verifier {
            key: prepare_verifying_key(&key),
            input_len: model.input_len(),
            output_len: model.output_len(),
        }))
    }

    fn circuit_size(&self, model: &QuantModel) -> Result<usize, ProofError> {
        let (input, binding) = zero_circuit(model);
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_mode(SynthesisMode::Setup);
        InferenceCircuit {
            model,
            input: &input,
            binding,
        }
        .generate_constraints(cs.clone())
        .map_err(|e| ProofError::Synthesis(e.to_string()))?;
        Ok(cs.num_constraints())
    }
}

struct Groth16Prover {
    model: Arc<QuantModel>,
    key: ProvingKey<Bn254>,
}

impl Prover for Groth16Prover {
    fn prove(&self, input: &[i8], binding: &Binding) -> Result<Proven, ProofError> {
        let output = self.model.evaluate(input)?;
        let circuit = InferenceCircuit {
            model: &self.model,
            input,
            binding: binding_element(binding),
        };
        let proof =
            Groth16::<Bn254>::create_random_proof_with_reduction(circuit, &self.key, &mut OsRng)
                .map_err(|e| ProofError::Synthesis(e.to_string()))?;
        let mut bytes = Vec::with_capacity(PROOF_BYTES);
        proof
            .serialize_compressed(&mut bytes)
            .expect("serialising to memory cannot fail");
        Ok(Proven {
            output,
            proof: bytes,
        })
    }
}

struct Groth16Verifier {
    key: PreparedVerifyingKey<Bn254>,
    input_len: usize,
    output_len: usize,
}

impl Verifier for Groth16Verifier {
    fn verify(&self, statement: &Statement, proof: &[u8]) -> Result<(), ProofError> {
        if statement.input.len() != self.input_len || statement.output.len() != self.output_len {
            return Err(ProofError::Statement(format!(
                "{} inputs and {} outputs; the model has {} and {}",
                statement.input.len(),
                statement.output.len(),
                self.input_len,
                self.output_len
            )));
        }
        if proof.len() != PROOF_BYTES {
            return Err(ProofError::MalformedProof(format!(
                "{} bytes; a proof has {PROOF_BYTES}",
                proof.len()
            )));
        }
        // Checked deserialisation: points on the curve and in the right subgroup.
        let proof = Proof::<Bn254>::deserialize_compressed(proof)
            .map_err(|e| ProofError::MalformedProof(e.to_string()))?;
        let inputs = public_inputs(
            &statement.input,
            binding_element(&statement.binding),
            &statement.output,
        );
        match Groth16::<Bn254>::verify_proof(&self.key, &proof, &inputs) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProofError::Rejected),
            Err(e) => Err(ProofError::MalformedProof(e.to_string())),
        }
    }
}
