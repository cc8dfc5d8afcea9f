//! The inference circuit: the model's own constraints (its operators run on the R1CS
//! builder of `circuit::r1cs`) between public inputs.
//!
//! Public inputs, in order: the input (`x + 128`), the request binding, the output
//! (`y + 2^31`); all but the binding are small non-negative numbers, which keeps
//! verification fast. The binding enters one constraint (its square), so the proof commits
//! to it.

use ark_bn254::Fr;
use ark_ff::Field;

use crate::circuit::r1cs::{Mode, R1cs, Wire};
use crate::model::QuantModel;

/// Offsets that make public values non-negative.
pub const INPUT_OFFSET: i64 = 128;
pub const OUTPUT_OFFSET: i64 = 1 << 31;

/// An input value as its public input: `x + 128`, a byte.
pub fn encode_input(x: i8) -> u8 {
    (x as i16 + INPUT_OFFSET as i16) as u8
}

/// An output value as its public input: `y + 2^31`, 32 bits.
pub fn encode_output(y: i32) -> u32 {
    (y as i64 + OUTPUT_OFFSET) as u32
}

/// The public inputs of a statement, in the circuit's order (what snarkjs's `public.json`
/// lists; the verifier sums the same values against its key in place).
pub fn public_inputs(input: &[i8], binding: Fr, output: &[i32]) -> Vec<Fr> {
    input
        .iter()
        .map(|&x| Fr::from(encode_input(x)))
        .chain(std::iter::once(binding))
        .chain(output.iter().map(|&y| Fr::from(encode_output(y))))
        .collect()
}

/// The circuit of `model` on `input`, bound to `binding`, with its assignment; and the
/// output the assignment claims.
pub fn synthesize(model: &QuantModel, input: &[i8], binding: Fr, mode: Mode) -> (R1cs, Vec<i128>) {
    synthesize_into(R1cs::new(mode), model, input, binding)
}

/// [`synthesize`] into a prepared constraint system (the tests give one that changes a
/// witness).
pub(super) fn synthesize_into(
    mut cs: R1cs,
    model: &QuantModel,
    input: &[i8],
    binding: Fr,
) -> (R1cs, Vec<i128>) {
    let wires: Vec<Wire> = input
        .iter()
        .map(|&x| cs.public_integer(x as i128, -(INPUT_OFFSET as i128)))
        .collect();
    let binding_wire = cs.public_field(binding);
    let square = cs.alloc_field(binding.square());
    cs.enforce(&binding_wire, &binding_wire, &square);
    let outputs = model.synthesize(&mut cs, wires);
    let mut claimed = Vec::with_capacity(outputs.len());
    for output in outputs {
        let public = cs.public_integer(output.value(), -(OUTPUT_OFFSET as i128));
        cs.enforce_equal(&public, &output);
        claimed.push(output.value());
    }
    (cs, claimed)
}

/// Constraints per operator kind of `model`'s circuit.
pub fn costs(model: &QuantModel) -> Vec<(&'static str, usize)> {
    let input = vec![0i8; model.input_len()];
    synthesize(model, &input, Fr::from(0u64), Mode::Witness)
        .0
        .costs()
}
