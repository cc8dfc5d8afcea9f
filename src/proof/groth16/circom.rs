//! circom's binary files, which snarkjs reads: a model's circuit as `.r1cs` and one
//! statement's witness as `.wtns`. With them another implementation checks sn2's circuit
//! without any of sn2's code: `snarkjs wtns check` confirms that a witness satisfies the
//! circuit, and `snarkjs zkey new` starts a phase-2 ceremony for it in snarkjs's own format,
//! whose result sn2 takes in ([`super::zkey`]).
//!
//! Both files are iden3's container: four magic bytes, a version (u32), a section count
//! (u32), then sections of (type u32, size u64, bytes), all little-endian; field elements
//! are 32 bytes, little-endian, in normal form.
//!
//! Wire `i` of the `.r1cs` is sn2's variable `i`: the constant one, the public values
//! (the input, the binding, the output), then the witness. circom would put outputs before
//! inputs; declaring every public value an input keeps sn2's order, so a snarkjs key's
//! public inputs are the statement's in the order sn2's verifier takes them.

use ark_bn254::Fr;
use ark_ff::{BigInteger, PrimeField};

use super::{binding_element, constraint_system};
use crate::circuit::r1cs::Mode;
use crate::model::QuantModel;
use crate::proof::circuit::synthesize;
use crate::proof::{Binding, ProofError};

const FIELD_BYTES: u32 = 32;

/// The circuit of `model` as circom's `.r1cs` (version 1: a header, the constraints, and
/// the wire-to-label map, here the identity).
pub fn r1cs(model: &QuantModel) -> Vec<u8> {
    let system = constraint_system(model);
    let matrices = system.matrices();
    let wires = matrices.instance_variables + matrices.witness_variables;
    let mut header = Vec::new();
    put_field_header(&mut header);
    put_u32(&mut header, wires);
    put_u32(&mut header, 0); // public outputs
    put_u32(&mut header, matrices.instance_variables - 1); // public inputs
    put_u32(&mut header, 0); // private inputs
    header.extend_from_slice(&(wires as u64).to_le_bytes()); // labels
    put_u32(&mut header, matrices.a.len());
    let mut constraints = Vec::new();
    for ((a, b), c) in matrices.a.iter().zip(&matrices.b).zip(&matrices.c) {
        for combination in [a, b, c] {
            put_u32(&mut constraints, combination.len());
            for &(coefficient, wire) in combination {
                put_u32(&mut constraints, wire);
                put_field(&mut constraints, coefficient);
            }
        }
    }
    let labels: Vec<u8> = (0..wires as u64).flat_map(u64::to_le_bytes).collect();
    container(b"r1cs", 1, &[(1, &header), (2, &constraints), (3, &labels)])
}

/// The witness of `model` on `input`, bound to `binding`, as circom's `.wtns` (version 2:
/// a header, then every wire's value).
pub fn wtns(model: &QuantModel, input: &[i8], binding: &Binding) -> Result<Vec<u8>, ProofError> {
    if input.len() != model.input_len() {
        return Err(ProofError::Model(crate::model::ModelError::InputLength {
            expected: model.input_len(),
            found: input.len(),
        }));
    }
    let (system, _) = synthesize(model, input, binding_element(binding), Mode::Witness);
    if let Some(failure) = system.failure() {
        return Err(ProofError::Synthesis(failure.to_string()));
    }
    let values = system.assignment();
    let mut header = Vec::new();
    put_field_header(&mut header);
    put_u32(&mut header, values.len());
    let mut wires = Vec::with_capacity(values.len() * FIELD_BYTES as usize);
    for value in values {
        put_field(&mut wires, value);
    }
    Ok(container(b"wtns", 2, &[(1, &header), (2, &wires)]))
}

fn container(magic: &[u8; 4], version: u32, sections: &[(u32, &[u8])]) -> Vec<u8> {
    let size: usize = sections.iter().map(|(_, bytes)| 12 + bytes.len()).sum();
    let mut out = Vec::with_capacity(12 + size);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    put_u32(&mut out, sections.len());
    for (id, bytes) in sections {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The field's size in bytes and its modulus, as both headers begin.
fn put_field_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&FIELD_BYTES.to_le_bytes());
    out.extend_from_slice(&Fr::MODULUS.to_bytes_le());
}

fn put_field(out: &mut Vec<u8>, value: Fr) {
    out.extend_from_slice(&value.into_bigint().to_bytes_le());
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).expect("circuits are far below 2^32 wires and rows");
    out.extend_from_slice(&value.to_le_bytes());
}
