//! Checking Groth16 proofs against a verifying key: one at a time, or a batch at once.
//!
//! A batch is checked with one random linear combination of its pairing equations: for
//! random 128-bit `ρᵢ`, `Πᵢ e(ρᵢAᵢ, Bᵢ) · e(Σρᵢ·PIᵢ, −γ) · e(Σρᵢ·Cᵢ, −δ) = e(α, β)^Σρᵢ`.
//! One multi-Miller loop and one final exponentiation replace one of each per proof, and
//! the public inputs are combined before the only multi-scalar multiplication. If any
//! proof is false the combination holds only with probability 2⁻¹²⁸; when it fails, every
//! proof is checked alone, so that the false ones are named.

use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{Field, PrimeField, Zero};
use ark_groth16::{Groth16, PreparedVerifyingKey, Proof};
use ark_serialize::{CanonicalDeserialize, Compress};
use rand_core::{OsRng, RngCore};
use rayon::prelude::*;

use super::{PROOF_BYTES, binding_element};
use crate::proof::circuit::{encode_input, encode_output};
use crate::proof::{ProofError, Statement, Verifier};

pub(super) struct Groth16Verifier {
    pub(super) key: PreparedVerifyingKey<Bn254>,
    pub(super) input_len: usize,
    pub(super) output_len: usize,
}

impl Groth16Verifier {
    /// The statement's shape and the proof's bytes, checked: points on the curve and in
    /// the right subgroup.
    fn parse(&self, statement: &Statement, proof: &[u8]) -> Result<Proof<Bn254>, ProofError> {
        if statement.input.len() != self.input_len || statement.output.len() != self.output_len {
            return Err(ProofError::Statement(format!(
                "{} inputs and {} outputs; the model has {} and {}",
                statement.input.len(),
                statement.output.len(),
                self.input_len,
                self.output_len
            )));
        }
        read_proof(proof)
    }

    /// The key's bases split as the circuit orders its public inputs: the constant, the
    /// input, the binding, the output.
    fn bases(&self) -> (&G1Affine, &[G1Affine], &G1Affine, &[G1Affine]) {
        let ic = &self.key.vk.gamma_abc_g1;
        let (inputs, rest) = ic[1..].split_at(self.input_len);
        let (binding, outputs) = rest
            .split_first()
            .expect("the key was checked to fit the model");
        (&ic[0], inputs, binding, outputs)
    }

    /// Σ publicᵢ · ICᵢ for one statement. The inputs and outputs are small, so they are
    /// summed by byte- and word-sized multi-scalar multiplications: several times faster
    /// than one full-width multiplication per input, which would dominate verification.
    fn public_point(&self, statement: &Statement) -> G1Projective {
        let (constant, inputs, binding, outputs) = self.bases();
        let input_scalars: Vec<u8> = statement.input.iter().map(|&x| encode_input(x)).collect();
        let output_scalars: Vec<u32> = statement.output.iter().map(|&y| encode_output(y)).collect();
        constant.into_group()
            + G1Projective::msm_u8(inputs, &input_scalars)
            + *binding * binding_element(&statement.binding)
            + G1Projective::msm_u32(outputs, &output_scalars)
    }

    fn check_one(&self, statement: &Statement, proof: &Proof<Bn254>) -> Result<(), ProofError> {
        let public = self.public_point(statement);
        match Groth16::<Bn254>::verify_proof_with_prepared_inputs(&self.key, proof, &public) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProofError::Rejected),
            Err(e) => Err(ProofError::MalformedProof(e.to_string())),
        }
    }

    /// Whether every proof of a batch holds, by one random linear combination.
    fn check_combined(&self, batch: &[(&Statement, Proof<Bn254>)]) -> bool {
        let weights: Vec<Fr> = batch
            .iter()
            .map(|_| {
                let mut bytes = [0u8; 16];
                OsRng.fill_bytes(&mut bytes);
                Fr::from_le_bytes_mod_order(&bytes)
            })
            .collect();
        // Σρᵢ·PIᵢ = IC₀·Σρᵢ + Σⱼ ICⱼ·(Σᵢ ρᵢ·xᵢⱼ): the statements' values are combined in
        // the field first, so the batch makes one multi-scalar multiplication.
        let (constant, inputs, binding, outputs) = self.bases();
        let weight_sum: Fr = weights.iter().sum();
        let mut input_scalars = vec![Fr::zero(); inputs.len()];
        let mut output_scalars = vec![Fr::zero(); outputs.len()];
        let mut binding_scalar = Fr::zero();
        for ((statement, _), weight) in batch.iter().zip(&weights) {
            for (sum, &x) in input_scalars.iter_mut().zip(&statement.input) {
                *sum += *weight * Fr::from(encode_input(x));
            }
            for (sum, &y) in output_scalars.iter_mut().zip(&statement.output) {
                *sum += *weight * Fr::from(encode_output(y));
            }
            binding_scalar += *weight * binding_element(&statement.binding);
        }
        let public = *constant * weight_sum
            + G1Projective::msm_unchecked(inputs, &input_scalars)
            + *binding * binding_scalar
            + G1Projective::msm_unchecked(outputs, &output_scalars);
        let c_points: Vec<G1Affine> = batch.iter().map(|(_, proof)| proof.c).collect();
        let combined_c = G1Projective::msm_unchecked(&c_points, &weights);
        let scaled_a: Vec<G1Projective> = batch
            .par_iter()
            .zip(&weights)
            .map(|((_, proof), weight)| proof.a * weight)
            .collect();
        let mut g1: Vec<G1Affine> = G1Projective::normalize_batch(&scaled_a);
        g1.push(public.into_affine());
        g1.push(combined_c.into_affine());
        let mut g2: Vec<<Bn254 as Pairing>::G2Prepared> = batch
            .iter()
            .map(|(_, proof)| G2Affine::from(proof.b).into())
            .collect();
        g2.push(self.key.gamma_g2_neg_pc.clone());
        g2.push(self.key.delta_g2_neg_pc.clone());
        let Some(product) = Bn254::final_exponentiation(Bn254::multi_miller_loop(g1, g2)) else {
            return false;
        };
        product.0 == self.key.alpha_g1_beta_g2.pow(weight_sum.into_bigint())
    }
}

impl Verifier for Groth16Verifier {
    fn verify(&self, statement: &Statement, proof: &[u8]) -> Result<(), ProofError> {
        let proof = self.parse(statement, proof)?;
        self.check_one(statement, &proof)
    }

    fn verify_batch(&self, claims: &[(&Statement, &[u8])]) -> Vec<Result<(), ProofError>> {
        // Decompressing a proof and checking its points' subgroups is most of a batch's
        // cost per proof: done on every thread.
        let parsed_or_not: Vec<Result<Proof<Bn254>, ProofError>> = claims
            .par_iter()
            .map(|(statement, proof)| self.parse(statement, proof))
            .collect();
        let mut results: Vec<Result<(), ProofError>> = Vec::with_capacity(claims.len());
        let mut parsed = Vec::new();
        let mut positions = Vec::new();
        for (index, ((statement, _), proof)) in claims.iter().zip(parsed_or_not).enumerate() {
            match proof {
                Ok(proof) => {
                    parsed.push((*statement, proof));
                    positions.push(index);
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        // A lone proof is checked as it would be alone; so is every proof of a failed batch.
        if parsed.len() == 1 || (parsed.len() > 1 && !self.check_combined(&parsed)) {
            for ((statement, proof), index) in parsed.iter().zip(positions) {
                results[index] = self.check_one(statement, proof);
            }
        }
        results
    }
}

/// A proof's 128 bytes (arkworks' compressed form), checked: points on the curve and in
/// the right subgroup, and in their one encoding (arkworks reads a point flagged as
/// infinity whatever its coordinate says), so that one proof is one string of bytes.
pub(super) fn read_proof(bytes: &[u8]) -> Result<Proof<Bn254>, ProofError> {
    if bytes.len() != PROOF_BYTES {
        return Err(ProofError::MalformedProof(format!(
            "{} bytes; a proof has {PROOF_BYTES}",
            bytes.len()
        )));
    }
    let proof = Proof::<Bn254>::deserialize_compressed(bytes)
        .map_err(|e| ProofError::MalformedProof(e.to_string()))?;
    if !super::encodes_to(&proof, bytes, Compress::Yes) {
        return Err(ProofError::MalformedProof(
            "a point at infinity carries coordinates: this is not the encoding of any proof sn2 makes".into(),
        ));
    }
    Ok(proof)
}
