//! Groth16 over BN254 (ark-groth16): 128-byte proofs, verification in milliseconds, keys
//! specific to each model's circuit.

use std::sync::Arc;

use ark_bn254::{Bn254, Fr};
use ark_ff::{PrimeField, UniformRand};
use ark_groth16::{Groth16, ProvingKey, VerifyingKey, prepare_verifying_key};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystemRef, LinearCombination, SynthesisError, Variable,
};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress};
use rand_core::OsRng;

mod arith;
pub mod ceremony;
pub mod circom;
mod fft;
mod glv;
mod key_format;
mod msm;
mod prover;
mod setup;
pub mod snarkjs;
#[cfg(test)]
mod tests;
mod verifier;
mod witness_msm;
pub mod zkey;

use super::circuit::{synthesize, synthesize_into};
use super::{Binding, KeyPair, ProofError, ProofSystem, Proven, Prover, Verifier};
use crate::circuit::r1cs::{Lc, Mode, R1cs, Var};
use crate::model::QuantModel;

pub const NAME: &str = "groth16-bn254";
/// Compressed proof size: A and C in G1 (32 bytes each), B in G2 (64 bytes).
pub const PROOF_BYTES: usize = 128;

pub struct Groth16Bn254;

fn binding_element(binding: &Binding) -> Fr {
    Fr::from_le_bytes_mod_order(&binding.0)
}

/// The constraint system of `model` on a zero input: what setup and the reference prover's
/// matrices are made from (the constraints do not depend on the values).
fn constraint_system(model: &QuantModel) -> R1cs {
    let input = vec![0i8; model.input_len()];
    synthesize(model, &input, Fr::from(0u64), Mode::Constraints).0
}

/// Replays recorded constraints into ark's constraint system, for its key generator.
struct Replay<'a>(&'a R1cs);

impl ConstraintSynthesizer<Fr> for Replay<'_> {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let system = self.0;
        for _ in 1..system.instance_count() {
            let _ = cs.new_input_variable(|| Ok(Fr::from(0u64)))?;
        }
        for _ in 0..system.witness_count() {
            let _ = cs.new_witness_variable(|| Ok(Fr::from(0u64)))?;
        }
        let convert = |lc: &Lc| {
            LinearCombination(
                lc.iter()
                    .map(|&(c, v)| {
                        let variable = match v {
                            Var::One => Variable::One,
                            Var::Instance(i) => Variable::instance(i as usize),
                            Var::Witness(i) => Variable::witness(i as usize),
                        };
                        (c, variable)
                    })
                    .collect(),
            )
        };
        for [a, b, c] in system.rows() {
            cs.enforce_r1cs_constraint(|| convert(a), || convert(b), || convert(c))?;
        }
        Ok(())
    }
}

impl ProofSystem for Groth16Bn254 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn setup_reporting(
        &self,
        model: &QuantModel,
        report: &mut dyn FnMut(&str),
    ) -> Result<KeyPair, ProofError> {
        let system = constraint_system(model);
        Ok(key_pair(&setup::generate(&system, report)?))
    }

    fn prover(
        &self,
        model: Arc<QuantModel>,
        proving_key: &[u8],
    ) -> Result<Box<dyn Prover>, ProofError> {
        // The proving key comes from this node's own disk or its validator; checking every
        // point would cost seconds and protect only the prover from itself. Nothing else
        // is needed before a proof: the prover holds no matrices (see `prover`).
        Ok(Box::new(Groth16Prover::new(
            model,
            key_format::read(proving_key)?,
        )?))
    }

    fn prove_once(
        &self,
        model: Arc<QuantModel>,
        source: &mut (dyn std::io::Read + Send),
        len: u64,
        input: &[i8],
        binding: &Binding,
    ) -> Result<Proven, ProofError> {
        check_input(&model, input)?;
        // The key is read on a thread of its own while this one runs the model and makes
        // the quotient's tables, which need the witness and not the key: on two cores a
        // one-shot proof then waits for its key hardly at all (digits-resnet's 12 MB take
        // about as long as its witness).
        let (key, synthesised) = std::thread::scope(|scope| {
            let reading = scope.spawn(move || key_format::read_stream(source, len));
            let (witnesses, rows) = key_format::circuit_bounds(len);
            let system = R1cs::with_capacity(Mode::Witness, witnesses, rows);
            let synthesised =
                synthesize_witness(system, &model, input, binding).and_then(|(system, output)| {
                    let domain = prover::QuotientDomain::for_system(&system)?;
                    Ok((system, output, domain))
                });
            let key = reading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (key, synthesised)
        });
        // A damaged key is what to report first: the model cannot be run against it.
        let prover = Groth16Prover::new(model, key?)?;
        let (system, output, domain) = synthesised?;
        prover
            .prove_synthesised(&system, output, &domain)
            .map(|(proven, _)| proven)
    }

    fn verifier(
        &self,
        model: &QuantModel,
        verifying_key: &[u8],
    ) -> Result<Box<dyn Verifier>, ProofError> {
        let key = read_verifying_key(verifying_key)?;
        // One point per public input, plus one for the constant.
        let expected = model.input_len() + 1 + model.output_len() + 1;
        if key.gamma_abc_g1.len() != expected {
            return Err(ProofError::MalformedKey(format!(
                "the verifying key takes {} public inputs; this model has {}",
                key.gamma_abc_g1.len().saturating_sub(1),
                expected - 1
            )));
        }
        Ok(Box::new(verifier::Groth16Verifier {
            key: prepare_verifying_key(&key),
            input_len: model.input_len(),
            output_len: model.output_len(),
        }))
    }

    fn circuit_costs(&self, model: &QuantModel) -> Result<Vec<(String, usize)>, ProofError> {
        Ok(super::circuit::costs(model)
            .into_iter()
            .map(|(operator, n)| (operator.to_string(), n))
            .collect())
    }
}

/// A proving key's files' payloads: the proving key as the prover holds it in memory (read
/// without checks, fast: [`key_format`]), the verifying key compressed (small, and checked
/// when read).
fn key_pair(key: &ProvingKey<Bn254>) -> KeyPair {
    let proving = key_format::write(key);
    let mut verifying = Vec::new();
    key.vk
        .serialize_compressed(&mut verifying)
        .expect("serialising to memory cannot fail");
    KeyPair { proving, verifying }
}

/// A key read from `bytes` that must be all of them: bytes left over mean the file is not
/// the key it claims to be (two keys run together, or a key with something appended).
fn whole_key<T>(
    bytes: &[u8],
    read: impl FnOnce(&mut &[u8]) -> Result<T, ark_serialize::SerializationError>,
) -> Result<T, ProofError> {
    let mut rest = bytes;
    let key = read(&mut rest).map_err(|e| ProofError::MalformedKey(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bytes_after_key(rest.len()));
    }
    Ok(key)
}

/// A verifying key's payload (arkworks' compressed form, every point checked), refused
/// unless it is the one encoding of its key: arkworks reads a point flagged as infinity
/// whatever its coordinate says, and a key with many encodings would have many
/// fingerprints.
fn read_verifying_key(bytes: &[u8]) -> Result<VerifyingKey<Bn254>, ProofError> {
    let key = whole_key(bytes, |bytes| {
        VerifyingKey::<Bn254>::deserialize_compressed(bytes)
    })?;
    if !encodes_to(&key, bytes, Compress::Yes) {
        return Err(ProofError::MalformedKey(NOT_CANONICAL.into()));
    }
    Ok(key)
}

const NOT_CANONICAL: &str = "a point at infinity carries coordinates: this is not the encoding sn2 writes, so the file was altered or made by other software; fetch or make the key again";

/// A model's ceremony as it was checked, from the record kept and served beside its keys:
/// an sn2 transcript or a snarkjs zkey.
pub struct CheckedCeremony {
    /// The keys the ceremony made.
    pub keys: KeyPair,
    /// The hash that names the ceremony (the keys' provenance records it), in hex: an sn2
    /// transcript's chain hash, or a zkey's last contribution's hash.
    pub hash: String,
    /// Each contribution's hash, in order, in hex: a contributor finds theirs here.
    pub contributions: Vec<String>,
    /// Each contribution's signing hotkey, in the same order; `None` where unsigned (a
    /// snarkjs contribution's name is not signed, nor even hashed, so it is not one).
    pub signers: Vec<Option<crate::keys::PublicKey>>,
    /// The contributions made by parties (a snarkjs beacon's is not).
    pub parties: usize,
}

/// Checks a ceremony's record, in either format, against the model `id` (whose quantised
/// model is `model`) and the powers of tau it started from.
pub fn check_ceremony(
    record: &[u8],
    id: &crate::model::ModelId,
    model: &QuantModel,
    ptau: &super::ptau::Ptau,
) -> Result<CheckedCeremony, ceremony::CeremonyError> {
    check_ceremony_of(record, id, &ceremony::circuit(model), ptau)
}

/// [`check_ceremony`] for a model whose circuit, `system`, the caller has made already.
pub fn check_ceremony_of(
    record: &[u8],
    id: &crate::model::ModelId,
    system: &crate::circuit::r1cs::R1cs,
    ptau: &super::ptau::Ptau,
) -> Result<CheckedCeremony, ceremony::CeremonyError> {
    if zkey::is_zkey(record) {
        let verified = zkey::verify(record, system, ptau)?;
        return Ok(CheckedCeremony {
            keys: verified.key_pair(),
            hash: verified.last_hash().map(hex::encode).unwrap_or_default(),
            contributions: verified
                .contributions
                .iter()
                .map(|c| hex::encode(c.hash))
                .collect(),
            signers: vec![None; verified.contributions.len()],
            parties: verified.parties(),
        });
    }
    let transcript = ceremony::Transcript::read(record)?;
    let verified = transcript.verify(id, system, ptau)?;
    Ok(CheckedCeremony {
        keys: transcript.key_pair(),
        hash: hex::encode(verified.transcript_hash),
        parties: verified.contribution_hashes.len(),
        contributions: verified
            .contribution_hashes
            .iter()
            .map(hex::encode)
            .collect(),
        signers: verified.signers,
    })
}

/// A key's payload read and written back, if it reads: what decodes must encode back to
/// what decoded (the fuzz targets' check that a key has one encoding).
pub(crate) fn rewritten_key(payload: &[u8], kind: super::keys::KeyKind) -> Option<Vec<u8>> {
    match kind {
        super::keys::KeyKind::Verifying => {
            let key = read_verifying_key(payload).ok()?;
            let mut out = Vec::new();
            key.serialize_compressed(&mut out).ok()?;
            Some(out)
        }
        super::keys::KeyKind::Proving => {
            let key = key_format::read(payload).ok()?;
            if key_format::is_current(payload) {
                Some(key_format::write(&key))
            } else {
                let mut out = Vec::new();
                key.serialize_uncompressed(&mut out).ok()?;
                Some(out)
            }
        }
    }
}

/// A proof's bytes read and written back, if they read (see [`rewritten_key`]).
pub(crate) fn rewritten_proof(bytes: &[u8]) -> Option<Vec<u8>> {
    let proof = verifier::read_proof(bytes).ok()?;
    let mut out = Vec::new();
    proof.serialize_compressed(&mut out).ok()?;
    Some(out)
}

/// Whether `value` written in the form `compress` gives exactly `bytes`.
fn encodes_to<T: CanonicalSerialize>(value: &T, bytes: &[u8], compress: Compress) -> bool {
    let mut encoded = Vec::with_capacity(bytes.len());
    value.serialize_with_mode(&mut encoded, compress).is_ok() && encoded == bytes
}

fn bytes_after_key(count: usize) -> ProofError {
    ProofError::MalformedKey(format!(
        "the file goes on for {count} {} after the key: it holds more than one key, or something was appended",
        if count == 1 { "byte" } else { "bytes" }
    ))
}

/// ark-groth16's own prover on the same circuit and key, with the circuit's matrices made
/// once as this crate's prover makes them: what the tests hold this crate's prover
/// against, and what `sn2 bench` compares it with.
pub struct ReferenceProver {
    model: Arc<QuantModel>,
    key: ProvingKey<Bn254>,
    /// A, B and C.
    matrices: Vec<ark_relations::gr1cs::Matrix<Fr>>,
    instance_variables: usize,
}

impl ReferenceProver {
    pub fn new(model: Arc<QuantModel>, proving_key: &[u8]) -> Result<Self, ProofError> {
        let key = key_format::read(proving_key)?;
        let m = constraint_system(&model).matrices();
        Ok(Self {
            model,
            key,
            instance_variables: m.instance_variables,
            matrices: vec![m.a, m.b, m.c],
        })
    }

    pub fn prove(&self, input: &[i8], binding: &Binding) -> Result<Vec<u8>, ProofError> {
        let (cs, _) = synthesize(&self.model, input, binding_element(binding), Mode::Witness);
        let (r, s) = (Fr::rand(&mut OsRng), Fr::rand(&mut OsRng));
        let proof = Groth16::<Bn254>::create_proof_with_reduction_and_matrices(
            &self.key,
            r,
            s,
            &self.matrices,
            self.instance_variables,
            self.matrices[0].len(),
            &cs.assignment(),
        )
        .map_err(|e| ProofError::Synthesis(e.to_string()))?;
        let mut bytes = Vec::with_capacity(PROOF_BYTES);
        proof
            .serialize_compressed(&mut bytes)
            .expect("serialising to memory cannot fail");
        Ok(bytes)
    }
}

struct Groth16Prover {
    model: Arc<QuantModel>,
    prepared: prover::PreparedKey,
}

/// Refuses an input of the wrong length before any work is done.
fn check_input(model: &QuantModel, input: &[i8]) -> Result<(), ProofError> {
    if input.len() != model.input_len() {
        return Err(ProofError::Model(crate::model::ModelError::InputLength {
            expected: model.input_len(),
            found: input.len(),
        }));
    }
    Ok(())
}

/// Runs `model` on `input` into `system` (a constraint system that records values only:
/// the rows' values are all the prover needs of the circuit); with the model's output.
fn synthesize_witness(
    system: R1cs,
    model: &QuantModel,
    input: &[i8],
    binding: &Binding,
) -> Result<(R1cs, Vec<i128>), ProofError> {
    let (system, output) = synthesize_into(system, model, input, binding_element(binding));
    match system.failure() {
        Some(failure) => Err(ProofError::Synthesis(failure.to_string())),
        None => Ok((system, output)),
    }
}

impl Groth16Prover {
    /// A prover for `model` with `key`, once the key's public inputs are the model's.
    fn new(model: Arc<QuantModel>, key: ProvingKey<Bn254>) -> Result<Self, ProofError> {
        let expected_inputs = model.input_len() + 1 + model.output_len() + 1;
        if key.vk.gamma_abc_g1.len() != expected_inputs {
            return Err(ProofError::MalformedKey(
                "the proving key is for another model".into(),
            ));
        }
        Ok(Self {
            model,
            prepared: prover::PreparedKey::new(key),
        })
    }

    /// Runs the model on `input` and proves the result; with where the time went.
    fn prove_timed(
        &self,
        input: &[i8],
        binding: &Binding,
    ) -> Result<(Proven, prover::Timings), ProofError> {
        check_input(&self.model, input)?;
        let started = std::time::Instant::now();
        let key = &self.prepared.key;
        let system = R1cs::with_capacity(Mode::Witness, key.l_query.len(), key.h_query.len() + 1);
        let (system, output) = synthesize_witness(system, &self.model, input, binding)?;
        let witness = started.elapsed();
        let domain = prover::QuotientDomain::for_system(&system)?;
        let (proven, mut timings) = self.prove_synthesised(&system, output, &domain)?;
        timings.witness = witness;
        Ok((proven, timings))
    }

    /// Proves the witness in `system`, whose model gave `output`.
    fn prove_synthesised(
        &self,
        system: &R1cs,
        output: Vec<i128>,
        domain: &prover::QuotientDomain,
    ) -> Result<(Proven, prover::Timings), ProofError> {
        let (r, s) = (Fr::rand(&mut OsRng), Fr::rand(&mut OsRng));
        let (proof, timings) = prover::prove(&self.prepared, system, domain, r, s)?;
        let mut bytes = Vec::with_capacity(PROOF_BYTES);
        proof
            .serialize_compressed(&mut bytes)
            .expect("serialising to memory cannot fail");
        Ok((
            Proven {
                output: output.into_iter().map(|v| v as i32).collect(),
                proof: bytes,
            },
            timings,
        ))
    }
}

impl Prover for Groth16Prover {
    fn prove(&self, input: &[i8], binding: &Binding) -> Result<Proven, ProofError> {
        self.prove_timed(input, binding).map(|(proven, _)| proven)
    }

    fn prove_profiled(
        &self,
        input: &[i8],
        binding: &Binding,
    ) -> Result<(Proven, super::Stages), ProofError> {
        let (proven, t) = self.prove_timed(input, binding)?;
        let stages = vec![
            ("witness", t.witness),
            ("quotient", t.quotient),
            ("A", t.a),
            ("B in G1", t.b_g1),
            ("B in G2", t.b_g2),
            ("H", t.h),
            ("C", t.c),
        ];
        Ok((proven, stages))
    }
}
