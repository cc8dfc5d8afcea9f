use ark_bn254::Fr;
use ark_ff::{BigInteger, PrimeField};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem};

use super::circuit::{InferenceCircuit, public_inputs};
use super::*;
use crate::model::testing::{Numbers, every_layer_model};

/// Synthesises the circuit with a witness and returns its public inputs, after checking
/// that every constraint holds.
fn synthesise(model: &QuantModel, input: &[i8], binding: Fr) -> Vec<Fr> {
    let cs = ConstraintSystem::<Fr>::new_ref();
    InferenceCircuit {
        model,
        input,
        binding,
    }
    .generate_constraints(cs.clone())
    .unwrap();
    assert_eq!(
        cs.which_is_unsatisfied().unwrap(),
        None,
        "unsatisfied constraint"
    );
    let mut instance = cs.instance_assignment().unwrap();
    assert_eq!(
        instance.remove(0),
        Fr::from(1u64),
        "the constant one comes first"
    );
    instance
}

fn inputs_for(model: &QuantModel, seed: u64) -> Vec<Vec<i8>> {
    let len = model.input_len();
    let mut numbers = Numbers::new(seed);
    let mut inputs = vec![vec![-128; len], vec![127; len], vec![0; len]];
    inputs.extend((0..20).map(|_| (0..len).map(|_| numbers.int8()).collect()));
    inputs
}

#[test]
fn witness_equals_the_evaluator_on_random_and_extreme_inputs() {
    let model = every_layer_model();
    let binding = Fr::from(12345u64);
    for input in inputs_for(&model, 1) {
        let expected = model.evaluate(&input).unwrap();
        let public = synthesise(&model, &input, binding);
        assert_eq!(public, public_inputs(&input, binding, &expected));
    }
}

#[test]
fn saturation_and_both_clamp_ranges_are_exercised() {
    // The extreme inputs must drive some requantised values to each bound, or the
    // test above would not cover the saturation branches of the circuit.
    let model = every_layer_model();
    let mut seen = std::collections::BTreeSet::new();
    for input in inputs_for(&model, 1) {
        let mut x: Vec<i64> = input.iter().map(|&v| v as i64).collect();
        x = crate::model::quant::apply(&model.layers[0], &x);
        seen.extend(x.iter().filter(|&&v| v == -128 || v == 127).copied());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![-128, 127]);
}

#[test]
fn binding_is_a_function_of_model_miner_and_nonce() {
    let model = crate::model::ModelId([1; 32]);
    let miner = crate::keys::Hotkey::from_seed(&[2; 32]).public();
    let other_miner = crate::keys::Hotkey::from_seed(&[3; 32]).public();
    let binding = Binding::new(&model, &miner, &[4; 32]);
    assert_eq!(binding, Binding::new(&model, &miner, &[4; 32]));
    assert_ne!(binding, Binding::new(&model, &other_miner, &[4; 32]));
    assert_ne!(binding, Binding::new(&model, &miner, &[5; 32]));
    assert_ne!(
        binding,
        Binding::new(&crate::model::ModelId([9; 32]), &miner, &[4; 32])
    );
    // 31 bytes are below the BN254 scalar modulus, so the element is the bytes themselves.
    let element = Fr::from_le_bytes_mod_order(&binding.0);
    let mut back = element.into_bigint().to_bytes_le();
    back.truncate(31);
    assert_eq!(back, binding.0);
}

#[test]
fn groth16_round_trip_and_refusals_on_the_test_model() {
    let model = Arc::new(every_layer_model());
    let system = groth16::Groth16Bn254;
    let keys = system.setup(&model).unwrap();
    let prover = system.prover(model.clone(), &keys.proving).unwrap();
    let verifier = system.verifier(&model, &keys.verifying).unwrap();
    let binding = Binding([7; 31]);
    let input = inputs_for(&model, 3).pop().unwrap();
    let proven = prover.prove(&input, &binding).unwrap();
    assert_eq!(proven.proof.len(), groth16::PROOF_BYTES);
    assert_eq!(proven.output, model.evaluate(&input).unwrap());
    let statement = Statement {
        input: input.clone(),
        output: proven.output.clone(),
        binding,
    };
    verifier.verify(&statement, &proven.proof).unwrap();

    let mut wrong_output = statement.clone();
    wrong_output.output[0] += 1;
    assert!(matches!(
        verifier.verify(&wrong_output, &proven.proof),
        Err(ProofError::Rejected)
    ));
    let mut wrong_input = statement.clone();
    wrong_input.input[5] = wrong_input.input[5].wrapping_add(1);
    assert!(matches!(
        verifier.verify(&wrong_input, &proven.proof),
        Err(ProofError::Rejected)
    ));
    let wrong_binding = Statement {
        binding: Binding([8; 31]),
        ..statement.clone()
    };
    assert!(matches!(
        verifier.verify(&wrong_binding, &proven.proof),
        Err(ProofError::Rejected)
    ));
    let short = Statement {
        output: vec![0; 2],
        ..statement.clone()
    };
    assert!(matches!(
        verifier.verify(&short, &proven.proof),
        Err(ProofError::Statement(_))
    ));
    assert!(matches!(
        verifier.verify(&statement, &proven.proof[..100]),
        Err(ProofError::MalformedProof(_))
    ));
    for at in [0, 31, 32, 63, 64, 95, 96, 127] {
        let mut bent = proven.proof.clone();
        bent[at] ^= 0x01;
        assert!(
            verifier.verify(&statement, &bent).is_err(),
            "flipped byte {at}"
        );
    }
    // A second setup gives other keys: the first keys' proofs do not verify under them.
    let other = system.setup(&model).unwrap();
    let other_verifier = system.verifier(&model, &other.verifying).unwrap();
    assert!(matches!(
        other_verifier.verify(&statement, &proven.proof),
        Err(ProofError::Rejected)
    ));
    // Garbage keys are refused when loaded.
    assert!(system.verifier(&model, &keys.verifying[..40]).is_err());
    assert!(system.prover(model.clone(), &keys.proving[..1000]).is_err());
}
