//! The Groth16 prover, written out so that it can use what it knows about its circuits.
//!
//! The proof is standard Groth16 (the same equations as ark-groth16's prover, checked by
//! the unchanged verifier); what differs is the work:
//! - the constraint matrices and the FFT domain are made once per model, not per proof;
//! - `C·z` is never evaluated: in a satisfied system each row's `C·z` is `(A·z)(B·z)`, so
//!   the product of the two already computed vectors stands in for it (a witness that
//!   does not satisfy the system still gives a proof the verifier refuses, because the
//!   multi-scalar multiplications use the witness itself);
//! - the multi-scalar multiplications see each witness value's size (most are bits or
//!   small signed integers) and sum them by size class (ark-ec's signed partition);
//! - B in G2, the most expensive sum per term, skips the variables that never appear in
//!   a B row, found once per key;
//! - the sum over the quotient's coefficients, all full-size, uses batch-affine buckets
//!   ([`super::msm`]).

use std::time::{Duration, Instant};

use ark_bn254::{Bn254, Fr, G1Projective, G2Affine, G2Projective};
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{FftField, Field, One, PrimeField, Zero};
use ark_groth16::{Proof, ProvingKey};
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
use ark_relations::gr1cs::Matrix;
use rayon::prelude::*;

use crate::circuit::r1cs::R1cs;
use crate::proof::ProofError;

/// A model's circuit as the prover needs it, computed once per prover.
pub(super) struct CircuitShape {
    a: Matrix<Fr>,
    b: Matrix<Fr>,
    /// For each row whose B is its A plus a constant (a boolean's `b·(b − 1)`, whose `b`
    /// may be the long combination a decomposition's lowest bit is), that constant.
    b_is_a_plus: Vec<Option<Fr>>,
    pub(super) instance_variables: usize,
    pub(super) witness_variables: usize,
    domain: Radix2EvaluationDomain<Fr>,
    coset: Radix2EvaluationDomain<Fr>,
    /// 1 / Z(g) for the coset's generator g: Z is constant on the coset.
    vanishing_inverse_on_coset: Fr,
}

impl CircuitShape {
    pub(super) fn of(system: R1cs) -> Result<Self, ProofError> {
        let m = system.into_matrices();
        let constraints = m.a.len();
        let too_large = || ProofError::Synthesis("the circuit is too large for BN254's FFT".into());
        let domain = Radix2EvaluationDomain::<Fr>::new(constraints + m.instance_variables)
            .ok_or_else(too_large)?;
        let coset = domain.get_coset(Fr::GENERATOR).ok_or_else(too_large)?;
        let vanishing_inverse_on_coset = domain
            .evaluate_vanishing_polynomial(Fr::GENERATOR)
            .inverse()
            .ok_or_else(too_large)?;
        let b_is_a_plus =
            m.a.par_iter()
                .zip(&m.b)
                .map(|(a, b)| offset_between(a, b))
                .collect();
        Ok(Self {
            a: m.a,
            b: m.b,
            b_is_a_plus,
            instance_variables: m.instance_variables,
            witness_variables: m.witness_variables,
            domain,
            coset,
            vanishing_inverse_on_coset,
        })
    }

    fn constraints(&self) -> usize {
        self.a.len()
    }

    /// The coefficients of h = (A·B − C) / Z, where A, B, C interpolate the rows' values
    /// (and, as in ark-groth16's libsnark reduction, the public inputs after the rows of
    /// A, which makes them independent in the QAP).
    fn quotient(&self, z: &[Fr]) -> Vec<Fr> {
        let n = self.domain.size();
        let rows = self.constraints();
        let mut a = vec![Fr::zero(); n];
        let mut b = vec![Fr::zero(); n];
        a[..rows]
            .par_iter_mut()
            .zip(&mut b[..rows])
            .zip(self.a.par_iter().zip(&self.b).zip(&self.b_is_a_plus))
            .for_each(|((a, b), ((a_row, b_row), b_is_a_plus))| {
                *a = evaluate(a_row, z);
                *b = match b_is_a_plus {
                    Some(constant) => *a + constant,
                    None => evaluate(b_row, z),
                };
            });
        a[rows..rows + self.instance_variables].copy_from_slice(&z[..self.instance_variables]);
        let mut c: Vec<Fr> = a.par_iter().zip(&b).map(|(a, b)| *a * b).collect();
        // The padding rows hold the public inputs in A and nothing in B: their C is zero.
        c[rows..].iter_mut().for_each(|c| *c = Fr::zero());
        rayon::join(
            || {
                rayon::join(
                    || {
                        self.domain.ifft_in_place(&mut a);
                        self.coset.fft_in_place(&mut a);
                    },
                    || {
                        self.domain.ifft_in_place(&mut b);
                        self.coset.fft_in_place(&mut b);
                    },
                )
            },
            || {
                self.domain.ifft_in_place(&mut c);
                self.coset.fft_in_place(&mut c);
            },
        );
        a.par_iter_mut()
            .zip(&b)
            .zip(&c)
            .for_each(|((a, b), c)| *a = (*a * b - c) * self.vanishing_inverse_on_coset);
        self.coset.ifft_in_place(&mut a);
        a
    }
}

/// `Some(c)` when the row `b` is the row `a` plus `c` times the constant one (column 0).
pub(super) fn offset_between(a: &[(Fr, usize)], b: &[(Fr, usize)]) -> Option<Fr> {
    fn split(row: &[(Fr, usize)]) -> (Fr, &[(Fr, usize)]) {
        match row {
            [(constant, 0), rest @ ..] => (*constant, rest),
            _ => (Fr::zero(), row),
        }
    }
    let (a_constant, a_rest) = split(a);
    let (b_constant, b_rest) = split(b);
    (a_rest == b_rest).then(|| b_constant - a_constant)
}

fn evaluate(row: &[(Fr, usize)], z: &[Fr]) -> Fr {
    row.iter()
        .map(|(coefficient, index)| {
            let value = z[*index];
            if coefficient.is_one() {
                value
            } else {
                value * coefficient
            }
        })
        .sum()
}

/// The proving key with what the prover derives from it once.
pub(super) struct KeyedShape {
    pub(super) key: ProvingKey<Bn254>,
    pub(super) shape: CircuitShape,
    b_g2: SparseBases,
}

/// The variables with a point in B's G2 query, and those points: most variables (the
/// bits of range checks, the outputs of lookups) never appear in a B row.
pub(super) struct SparseBases {
    variables: Vec<usize>,
    bases: Vec<G2Affine>,
}

impl SparseBases {
    pub(super) fn of(key: &ProvingKey<Bn254>) -> Self {
        let (variables, bases) = key.b_g2_query[1..]
            .iter()
            .enumerate()
            .filter(|(_, point)| !point.is_zero())
            .map(|(i, point)| (i, *point))
            .unzip();
        Self { variables, bases }
    }
}

impl KeyedShape {
    pub(super) fn new(key: ProvingKey<Bn254>, b_g2: SparseBases, shape: CircuitShape) -> Self {
        Self { key, shape, b_g2 }
    }
}

/// Where a proof's time went.
#[derive(Debug, Clone, Default)]
pub(super) struct Timings {
    pub(super) witness: Duration,
    pub(super) quotient: Duration,
    pub(super) a: Duration,
    pub(super) b_g1: Duration,
    pub(super) b_g2: Duration,
    pub(super) h: Duration,
    pub(super) c: Duration,
}

/// A Groth16 proof for the full assignment `z` (the constant one, the public inputs, then
/// the witness), with the blinding factors `r` and `s`.
pub(super) fn prove(keyed: &KeyedShape, z: &[Fr], r: Fr, s: Fr) -> (Proof<Bn254>, Timings) {
    let pk = &keyed.key;
    let shape = &keyed.shape;
    let mut timings = Timings::default();
    let started = Instant::now();
    let h = shape.quotient(z);
    timings.quotient = started.elapsed();

    let started = Instant::now();
    let scalars: Vec<_> = z[1..].par_iter().map(|v| v.into_bigint()).collect();
    let witness_scalars = &scalars[shape.instance_variables - 1..];
    let a = pk.vk.alpha_g1.into_group()
        + pk.a_query[0]
        + G1Projective::msm_bigint(&pk.a_query[1..], &scalars)
        + pk.delta_g1 * r;
    timings.a = started.elapsed();

    let started = Instant::now();
    let b_g1 = pk.beta_g1.into_group()
        + pk.b_g1_query[0]
        + G1Projective::msm_bigint(&pk.b_g1_query[1..], &scalars)
        + pk.delta_g1 * s;
    timings.b_g1 = started.elapsed();

    let started = Instant::now();
    let b_g2_scalars: Vec<_> = keyed.b_g2.variables.iter().map(|&i| scalars[i]).collect();
    let b_g2 = pk.vk.beta_g2.into_group()
        + pk.b_g2_query[0]
        + G2Projective::msm_bigint(&keyed.b_g2.bases, &b_g2_scalars)
        + pk.vk.delta_g2 * s;
    timings.b_g2 = started.elapsed();

    let started = Instant::now();
    let h_scalars: Vec<_> = h.par_iter().map(|v| v.into_bigint()).collect();
    let h_sum = super::msm::msm(&pk.h_query, &h_scalars);
    timings.h = started.elapsed();
    let started = Instant::now();
    let l_sum = G1Projective::msm_bigint(&pk.l_query, witness_scalars);
    let c = a * s + b_g1 * r - pk.delta_g1 * (r * s) + h_sum + l_sum;
    timings.c = started.elapsed();

    let proof = Proof {
        a: a.into_affine(),
        b: b_g2.into_affine(),
        c: c.into_affine(),
    };
    (proof, timings)
}
