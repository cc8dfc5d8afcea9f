use ark_bn254::Fr;
use ark_ff::{BigInteger, PrimeField};

use super::circuit::{public_inputs, synthesize, synthesize_into};
use super::*;
use crate::circuit::r1cs::{Change, Mode, Tamper};
use crate::model::testing::{Numbers, every_operator_model};

/// Synthesises the circuit with a witness and returns its public inputs, after checking
/// that every constraint holds.
fn synthesise(model: &QuantModel, input: &[i8], binding: Fr) -> Vec<Fr> {
    let (cs, _) = synthesize(model, input, binding, Mode::Constraints);
    assert_eq!(cs.failure(), None);
    assert_eq!(cs.first_unsatisfied(), None, "unsatisfied constraint");
    let mut instance = cs.instance_values().to_vec();
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
    let model = every_operator_model();
    let binding = Fr::from(12345u64);
    for input in inputs_for(&model, 1) {
        let expected = model.evaluate(&input).unwrap();
        let public = synthesise(&model, &input, binding);
        assert_eq!(public, public_inputs(&input, binding, &expected));
    }
}

#[test]
fn witness_mode_computes_the_same_assignment() {
    let model = every_operator_model();
    let input = inputs_for(&model, 2).pop().unwrap();
    let (full, _) = synthesize(&model, &input, Fr::from(9u64), Mode::Constraints);
    let (values, _) = synthesize(&model, &input, Fr::from(9u64), Mode::Witness);
    assert_eq!(full.assignment(), values.assignment());
    assert_eq!(full.constraint_count(), values.constraint_count());
}

#[test]
fn a_changed_witness_anywhere_in_the_model_is_refused() {
    // Every operator of every family, end to end: change one witness (a sample of them,
    // spread over the whole circuit), let the change flow to the public output, and the
    // constraints refuse it, or the output did not change.
    let model = every_operator_model();
    let input = inputs_for(&model, 3).pop().unwrap();
    let binding = Fr::from(77u64);
    let (honest, output) = synthesize(&model, &input, binding, Mode::Constraints);
    assert_eq!(honest.first_unsatisfied(), None);
    let total = honest.witness_count();
    let mut refused = 0;
    let mut tried = 0;
    for index in (0..total).step_by((total / 400).max(1)) {
        for change in [Change::Add(1), Change::Flip] {
            let mut cs = crate::circuit::r1cs::R1cs::new(Mode::Constraints);
            cs.tamper = vec![Tamper { index, change }];
            let (cs, claimed) = synthesize_into(cs, &model, &input, binding);
            tried += 1;
            if cs.first_unsatisfied().is_some() {
                refused += 1;
            } else {
                assert_eq!(
                    claimed, output,
                    "witness {index} changed by {change:?} proves another output"
                );
            }
        }
    }
    assert!(refused * 10 >= tried * 9, "{refused} of {tried} refused");
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
    let model = Arc::new(every_operator_model());
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
