//! This crate's prover against ark-groth16's, batches, and damaged keys.

use std::sync::Arc;

use ark_bn254::{Bn254, Fr};
use ark_ff::UniformRand;
use ark_groth16::{Groth16, Proof, VerifyingKey, prepare_verifying_key};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand_core::OsRng;

use super::*;
use crate::circuit::r1cs::{Change, Tamper};
use crate::model::testing::{Numbers, every_operator_model};
use crate::proof::circuit::{public_inputs, synthesize_into};
use crate::proof::keys::KeyKind;
use crate::proof::{Statement, Verifier};

/// A random input without −128, whose public value is 0: a damaged key's point for that
/// input would not change the verdict, which is right but not what the tests look for.
fn random_input(model: &QuantModel, seed: u64) -> Vec<i8> {
    let mut numbers = Numbers::new(seed);
    (0..model.input_len())
        .map(|_| numbers.int8().max(-127))
        .collect()
}

struct Fixture {
    model: Arc<QuantModel>,
    keys: KeyPair,
    verifier: Box<dyn Verifier>,
}

fn fixture() -> Fixture {
    let model = Arc::new(every_operator_model());
    let keys = Groth16Bn254.setup(&model).unwrap();
    let verifier = Groth16Bn254.verifier(&model, &keys.verifying).unwrap();
    Fixture {
        model,
        keys,
        verifier,
    }
}

fn proven(f: &Fixture, seed: u64, binding: Binding) -> (Statement, Vec<u8>) {
    let prover = Groth16Bn254
        .prover(f.model.clone(), &f.keys.proving)
        .unwrap();
    let input = random_input(&f.model, seed);
    let proven = prover.prove(&input, &binding).unwrap();
    let statement = Statement {
        input,
        output: proven.output,
        binding,
    };
    (statement, proven.proof)
}

#[test]
fn proofs_cross_between_this_prover_and_ark_groth16() {
    let f = fixture();
    let binding = Binding([5; 31]);
    // Ours, checked by ark-groth16's own verifier with the plain public inputs.
    let (statement, ours) = proven(&f, 1, binding);
    let vk = VerifyingKey::<Bn254>::deserialize_compressed(f.keys.verifying.as_slice()).unwrap();
    let pvk = prepare_verifying_key(&vk);
    let public = public_inputs(
        &statement.input,
        binding_element(&binding),
        &statement.output,
    );
    let proof = Proof::<Bn254>::deserialize_compressed(ours.as_slice()).unwrap();
    assert!(Groth16::<Bn254>::verify_proof(&pvk, &proof, &public).unwrap());
    // ark-groth16's prover, checked by ours (one by one and in a batch).
    let theirs = ReferenceProver::new(f.model.clone(), &f.keys.proving)
        .unwrap()
        .prove(&statement.input, &binding)
        .unwrap();
    f.verifier.verify(&statement, &theirs).unwrap();
    let results = f
        .verifier
        .verify_batch(&[(&statement, &theirs), (&statement, &ours)]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[test]
fn a_tampered_witness_gives_a_proof_that_is_refused() {
    let f = fixture();
    let prepared = prover::PreparedKey::new(super::key_format::read(&f.keys.proving).unwrap());
    let input = random_input(&f.model, 2);
    let binding = Binding([6; 31]);
    let honest_output = f.model.evaluate(&input).unwrap();
    let total = synthesize(&f.model, &input, binding_element(&binding), Mode::Witness)
        .0
        .witness_count();
    for index in [0, total / 7, total / 3, total / 2, total - 1] {
        for change in [Change::Add(1), Change::Flip] {
            let mut cs = R1cs::new(Mode::Witness);
            cs.tamper = vec![Tamper { index, change }];
            let (cs, claimed) = synthesize_into(cs, &f.model, &input, binding_element(&binding));
            let domain = prover::QuotientDomain::for_system(&cs).unwrap();
            let (r, s) = (Fr::rand(&mut OsRng), Fr::rand(&mut OsRng));
            let (proof, _) = prover::prove(&prepared, &cs, &domain, r, s).unwrap();
            let mut bytes = Vec::new();
            proof.serialize_compressed(&mut bytes).unwrap();
            let claimed: Vec<i32> = claimed.iter().map(|&v| v as i32).collect();
            let statement = |output: &Vec<i32>| Statement {
                input: input.clone(),
                output: output.clone(),
                binding,
            };
            // A few witnesses are left free by the constraints (a slack whose factor is
            // zero): changing one proves the honest output, and only that.
            let mut check = R1cs::new(Mode::Constraints);
            check.tamper = vec![Tamper { index, change }];
            let (check, _) = synthesize_into(check, &f.model, &input, binding_element(&binding));
            if check.first_unsatisfied().is_none() {
                assert_eq!(claimed, honest_output, "witness {index} is free");
                assert!(
                    f.verifier
                        .verify(&statement(&honest_output), &bytes)
                        .is_ok()
                );
                let mut other = honest_output.clone();
                other[0] += 1;
                assert!(f.verifier.verify(&statement(&other), &bytes).is_err());
                continue;
            }
            // Otherwise, whatever output the changed witness carries, honest or not, is
            // refused.
            for output in [&claimed, &honest_output] {
                assert!(
                    f.verifier.verify(&statement(output), &bytes).is_err(),
                    "witness {index} changed by {change:?} still proves"
                );
            }
        }
    }
}

#[test]
fn a_batch_with_one_false_proof_fails_that_proof_only() {
    let f = fixture();
    let claims: Vec<(Statement, Vec<u8>)> = (0..5)
        .map(|i| proven(&f, 10 + i, Binding([i as u8; 31])))
        .collect();
    let as_refs = |claims: &[(Statement, Vec<u8>)]| -> Vec<Result<(), crate::proof::ProofError>> {
        let refs: Vec<(&Statement, &[u8])> =
            claims.iter().map(|(s, p)| (s, p.as_slice())).collect();
        f.verifier.verify_batch(&refs)
    };
    assert!(as_refs(&claims).iter().all(Result::is_ok));
    assert!(as_refs(&[]).is_empty());

    // A false output in the middle: only that claim fails, as Rejected.
    let mut lying = claims.clone();
    lying[2].0.output[0] += 1;
    let results = as_refs(&lying);
    for (i, result) in results.iter().enumerate() {
        match i {
            2 => assert!(matches!(result, Err(ProofError::Rejected)), "{result:?}"),
            _ => assert!(result.is_ok(), "claim {i}: {result:?}"),
        }
    }
    // Another request's proof, garbage bytes and a short proof: each named for its own
    // reason; the honest ones still pass.
    let mut mixed = claims.clone();
    mixed[0].1 = claims[1].1.clone();
    mixed[3].1 = vec![0xff; PROOF_BYTES];
    mixed[4].1.truncate(100);
    let results = as_refs(&mixed);
    assert!(matches!(results[0], Err(ProofError::Rejected)));
    assert!(results[1].is_ok() && results[2].is_ok());
    assert!(matches!(results[3], Err(ProofError::MalformedProof(_))));
    assert!(matches!(results[4], Err(ProofError::MalformedProof(_))));
    // A lone false proof in a batch of one.
    let results = as_refs(&lying[2..3]);
    assert!(matches!(results[0], Err(ProofError::Rejected)));
}

/// A one-shot proof with the proving key `key` read as a stream verifies.
fn assert_proves_once(f: &Fixture, key: &[u8], input: &[i8], binding: Binding) {
    let once = Groth16Bn254
        .prove_once(
            f.model.clone(),
            &mut &key[..],
            key.len() as u64,
            input,
            &binding,
        )
        .unwrap();
    let statement = Statement {
        input: input.to_vec(),
        output: once.output,
        binding,
    };
    f.verifier.verify(&statement, &once.proof).unwrap();
}

#[test]
fn damaged_keys_give_errors_never_a_panic_or_a_false_proof() {
    let f = fixture();
    let input = random_input(&f.model, 3);
    let binding = Binding([9; 31]);
    let pk = &f.keys.proving;
    for len in [0, 1, 7, 64, pk.len() / 2, pk.len() - 1] {
        assert!(
            Groth16Bn254.prover(f.model.clone(), &pk[..len]).is_err(),
            "a proving key cut to {len} bytes loaded"
        );
        // Read as a stream by a one-shot proof, whether the stream or only the stated
        // length is short: refused, though the model's run beside the read succeeds.
        let cut = &mut &pk[..len];
        assert!(
            Groth16Bn254
                .prove_once(f.model.clone(), cut, pk.len() as u64, &input, &binding)
                .is_err(),
            "a proving key cut to {len} bytes proved from a stream"
        );
        assert!(
            Groth16Bn254
                .prove_once(f.model.clone(), &mut &pk[..], len as u64, &input, &binding)
                .is_err(),
            "a proving key said to be {len} bytes proved from a stream"
        );
    }
    assert_proves_once(&f, pk, &input, binding);
    // An input of the wrong length is refused before anything is read.
    let short = &input[..input.len() - 1];
    assert!(matches!(
        Groth16Bn254.prove_once(
            f.model.clone(),
            &mut &pk[..],
            pk.len() as u64,
            short,
            &binding
        ),
        Err(ProofError::Model(_))
    ));
    let vk = &f.keys.verifying;
    for len in [0, 1, 31, vk.len() / 2, vk.len() - 1] {
        assert!(Groth16Bn254.verifier(&f.model, &vk[..len]).is_err());
    }
    // Bytes after a whole key: refused, naming them.
    let pk_and_more = [pk.as_slice(), &[0]].concat();
    let refused = Groth16Bn254.prover(f.model.clone(), &pk_and_more).err();
    let message = refused
        .expect("a proving key with a byte after it loaded")
        .to_string();
    assert!(
        message.contains("goes on for 1 byte after the key"),
        "{message}"
    );
    let two_vks = [vk.as_slice(), vk.as_slice()].concat();
    let refused = Groth16Bn254.verifier(&f.model, &two_vks).err();
    let message = refused
        .expect("two verifying keys loaded as one")
        .to_string();
    assert!(message.contains("bytes after the key"), "{message}");
    for at in (0..vk.len()).step_by(vk.len() / 24) {
        let mut bent = vk.clone();
        bent[at] ^= 0x10;
        // A verifying key is fully checked: a changed byte is refused or, where it lands
        // on another valid point, the honest proof no longer verifies.
        if let Ok(verifier) = Groth16Bn254.verifier(&f.model, &bent) {
            let (statement, proof) = proven(&f, 4, binding);
            assert!(verifier.verify(&statement, &proof).is_err(), "byte {at}");
        }
    }
    // A proving key is trusted as the node's own artefact, without point checks: a
    // changed byte may load, but what it proves does not verify.
    for at in (0..pk.len()).step_by(pk.len() / 16) {
        let mut bent = pk.clone();
        bent[at] ^= 0x10;
        let Ok(prover) = Groth16Bn254.prover(f.model.clone(), &bent) else {
            continue;
        };
        if let Ok(proven) = prover.prove(&input, &binding) {
            let statement = Statement {
                input: input.clone(),
                output: proven.output.clone(),
                binding,
            };
            // Either refused, or (a byte the proof does not use, such as the key's copy
            // of γ) an honest proof of the honest output.
            if f.verifier.verify(&statement, &proven.proof).is_ok() {
                assert_eq!(
                    proven.output,
                    f.model.evaluate(&input).unwrap(),
                    "byte {at}"
                );
            }
        }
    }
}

/// Makes the flags (the top two bits of a coordinate's last byte) of the point whose
/// flagged coordinate ends at `end` say "infinity", leaving its other bytes: arkworks reads
/// that as the point at infinity, whatever they hold. (The sign flag is cleared: the two
/// together are refused as flags, which would not test what this is for.)
fn flagged_infinity(bytes: &[u8], end: usize) -> Vec<u8> {
    let mut bent = bytes.to_vec();
    bent[end - 1] = (bent[end - 1] & 0x3f) | 0x40;
    bent
}

#[test]
fn a_point_at_infinity_with_coordinates_is_refused_in_keys_and_proofs() {
    let f = fixture();
    let binding = Binding([2; 31]);
    let (statement, proof) = proven(&f, 5, binding);
    // A proof: A is the first 32 bytes (x, its flags in the top bits of the last).
    let bent = flagged_infinity(&proof, 32);
    let refused = f
        .verifier
        .verify(&statement, &bent)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("at infinity carries coordinates"),
        "{refused}"
    );
    assert!(
        snarkjs::export(&f.model, &f.keys.verifying, &statement, &bent).is_err(),
        "exported for snarkjs"
    );
    // A verifying key: α in G1 comes first.
    let bent = flagged_infinity(&f.keys.verifying, 32);
    let refused = Groth16Bn254
        .verifier(&f.model, &bent)
        .err()
        .expect("a verifying key with a flagged α loaded")
        .to_string();
    assert!(
        refused.contains("at infinity carries coordinates"),
        "{refused}"
    );
    // A proving key in arkworks' older form: α's x, then its y with the flags.
    let key = key_format::read(&f.keys.proving).unwrap();
    let mut legacy = Vec::new();
    key.serialize_uncompressed(&mut legacy).unwrap();
    assert!(Groth16Bn254.prover(f.model.clone(), &legacy).is_ok());
    assert_proves_once(&f, &legacy, &random_input(&f.model, 4), Binding([4; 31]));
    assert_eq!(
        rewritten_key(&legacy, KeyKind::Proving),
        Some(legacy.clone())
    );
    let refused = Groth16Bn254
        .prover(f.model.clone(), &flagged_infinity(&legacy, 64))
        .err()
        .expect("a proving key with a flagged α loaded")
        .to_string();
    assert!(
        refused.contains("at infinity carries coordinates"),
        "{refused}"
    );
    // What sn2 writes reads back to itself.
    assert_eq!(rewritten_proof(&proof), Some(proof));
    for (payload, kind) in [
        (&f.keys.verifying, KeyKind::Verifying),
        (&f.keys.proving, KeyKind::Proving),
    ] {
        assert_eq!(rewritten_key(payload, kind).as_ref(), Some(payload));
    }
}

#[test]
fn the_rows_values_the_prover_uses_are_those_of_the_rows_for_every_operator() {
    let model = every_operator_model();
    for seed in 0..4 {
        let input = random_input(&model, seed);
        let binding = binding_element(&Binding([seed as u8; 31]));
        let (cs, _) = synthesize(&model, &input, binding, Mode::Constraints);
        assert_eq!(cs.first_unsatisfied(), None, "input {seed}");
        assert_eq!(cs.first_misrecorded(), None, "input {seed}");
        let (witness, _) = synthesize(&model, &input, binding, Mode::Witness);
        assert_eq!(witness.row_values(), cs.row_values(), "input {seed}");
    }
}

#[test]
fn a_key_with_h_over_the_odd_roots_as_snarkjs_makes_it_proves_what_verifiers_accept() {
    use ark_bn254::{G1Projective, G2Projective};
    use ark_ec::{CurveGroup, PrimeGroup};
    use ark_ff::Field;
    use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};

    use super::setup::{Secrets, domain_of, keys_from_secrets};

    let model = Arc::new(every_operator_model());
    let system = constraint_system(&model);
    let n = domain_of(&system).unwrap().size();
    let rng = &mut OsRng;
    let secrets = Secrets {
        tau: Fr::rand(rng),
        alpha: Fr::rand(rng),
        beta: Fr::rand(rng),
        gamma: Fr::rand(rng),
        delta: Fr::rand(rng),
    };
    let g1 = G1Projective::generator();
    let mut key = keys_from_secrets(
        &system,
        &secrets,
        g1,
        G2Projective::generator(),
        &mut |_| {},
    )
    .unwrap();
    // snarkjs's H: L_{2i+1}(τ)/δ over the domain of 2n roots, n points.
    let lagrange = Radix2EvaluationDomain::<Fr>::new(2 * n)
        .unwrap()
        .evaluate_all_lagrange_coefficients(secrets.tau);
    let delta_inverse = secrets.delta.inverse().unwrap();
    key.h_query = (0..n)
        .map(|i| (g1 * (lagrange[2 * i + 1] * delta_inverse)).into_affine())
        .collect();
    let pair = key_pair(&key);
    let binding = Binding([3; 31]);
    let input = random_input(&model, 6);
    let proven = Groth16Bn254
        .prover(model.clone(), &pair.proving)
        .unwrap()
        .prove(&input, &binding)
        .unwrap();
    let statement = Statement {
        input,
        output: proven.output,
        binding,
    };
    Groth16Bn254
        .verifier(&model, &pair.verifying)
        .unwrap()
        .verify(&statement, &proven.proof)
        .unwrap();
    let public = public_inputs(
        &statement.input,
        binding_element(&binding),
        &statement.output,
    );
    let proof = Proof::<Bn254>::deserialize_compressed(proven.proof.as_slice()).unwrap();
    let pvk = prepare_verifying_key(&key.vk);
    assert!(Groth16::<Bn254>::verify_proof(&pvk, &proof, &public).unwrap());
    // An H of neither length (n − 1 or n points) for this circuit does not fit.
    key.h_query.truncate(n - 2);
    let refused = Groth16Bn254
        .prover(model.clone(), &key_pair(&key).proving)
        .unwrap()
        .prove(&statement.input, &binding)
        .expect_err("a key with a short H proved");
    assert!(refused.to_string().contains("does not fit"), "{refused}");
}
