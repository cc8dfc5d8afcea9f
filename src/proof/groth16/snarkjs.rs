//! snarkjs's JSON forms of a verifying key, a proof and its public signals, so that
//! `snarkjs groth16 verify` (another implementation, in JavaScript) checks an sn2 proof
//! with none of sn2's code. The formats are snarkjs's own: field elements as decimal
//! strings, points in projective coordinates with z = 1 (G2's coordinates as [c0, c1]),
//! the point at infinity as (0, 1, 0). The public signals are the circuit's public inputs
//! in its order: each input value, the binding (model, miner and nonce as one field
//! element), each output value.

use ark_bn254::{G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::PrimeField;
use serde_json::{Value, json};

use super::verifier::read_proof;
use super::{binding_element, read_verifying_key};
use crate::model::QuantModel;
use crate::proof::circuit::public_inputs;
use crate::proof::{ProofError, Statement};

/// The three files `snarkjs groth16 verify` reads.
pub struct SnarkjsFiles {
    /// `verification_key.json`
    pub verification_key: Value,
    /// `public.json`
    pub public: Value,
    /// `proof.json`
    pub proof: Value,
}

/// A proof of `statement` for `model`, with the verifying key's payload, as snarkjs's files.
pub fn export(
    model: &QuantModel,
    verifying_key: &[u8],
    statement: &Statement,
    proof: &[u8],
) -> Result<SnarkjsFiles, ProofError> {
    let key = read_verifying_key(verifying_key)?;
    let public = public_inputs(
        &statement.input,
        binding_element(&statement.binding),
        &statement.output,
    );
    if key.gamma_abc_g1.len() != public.len() + 1
        || statement.input.len() != model.input_len()
        || statement.output.len() != model.output_len()
    {
        return Err(ProofError::Statement(format!(
            "the statement has {} public values and the key takes {}; the model has {} inputs and {} outputs",
            public.len(),
            key.gamma_abc_g1.len().saturating_sub(1),
            model.input_len(),
            model.output_len()
        )));
    }
    let proof = read_proof(proof)?;
    Ok(SnarkjsFiles {
        verification_key: json!({
            "protocol": "groth16",
            "curve": "bn128",
            "nPublic": public.len(),
            "vk_alpha_1": g1(&key.alpha_g1),
            "vk_beta_2": g2(&key.beta_g2),
            "vk_gamma_2": g2(&key.gamma_g2),
            "vk_delta_2": g2(&key.delta_g2),
            "IC": key.gamma_abc_g1.iter().map(g1).collect::<Vec<_>>(),
        }),
        public: Value::from(public.iter().map(|&x| decimal(x)).collect::<Vec<_>>()),
        proof: json!({
            "pi_a": g1(&proof.a),
            "pi_b": g2(&proof.b),
            "pi_c": g1(&proof.c),
            "protocol": "groth16",
            "curve": "bn128",
        }),
    })
}

/// A field element as snarkjs writes it: its integer in decimal, "0" for zero.
fn decimal<F: PrimeField>(x: F) -> String {
    x.into_bigint().to_string()
}

fn g1(point: &G1Affine) -> Value {
    match point.xy() {
        Some((x, y)) => json!([decimal(x), decimal(y), "1"]),
        None => json!(["0", "1", "0"]),
    }
}

fn g2(point: &G2Affine) -> Value {
    match point.xy() {
        Some((x, y)) => json!([
            [decimal(x.c0), decimal(x.c1)],
            [decimal(y.c0), decimal(y.c1)],
            ["1", "0"]
        ]),
        None => json!([["0", "0"], ["1", "0"], ["0", "0"]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_bn254::Fr;
    use ark_ff::{One, Zero};

    #[test]
    fn field_elements_are_written_in_decimal_without_leading_zeros() {
        assert_eq!(decimal(Fr::zero()), "0");
        assert_eq!(decimal(Fr::one()), "1");
        assert_eq!(
            decimal(-Fr::one()),
            "21888242871839275222246405745257275088548364400416034343698204186575808495616"
        );
        assert_eq!(g1(&G1Affine::generator()), json!(["1", "2", "1"]));
        assert_eq!(g1(&G1Affine::zero()), json!(["0", "1", "0"]));
    }
}
