//! The Groth16 prover, written out so that it can use what it knows about its circuits.
//!
//! The proof is standard Groth16 (the same equations as ark-groth16's prover, checked by
//! the unchanged verifier); what differs is the work:
//! - the prover holds no constraint matrices: the synthesis of the witness knows each
//!   row's `A·z` and `B·z` as the values of the row's wires, which is all the quotient
//!   needs of the rows; so a prover is ready once its key is read, and a one-shot proof
//!   never builds the circuit's linear combinations;
//! - `C·z` is never evaluated: in a satisfied system each row's `C·z` is `(A·z)(B·z)`, so
//!   the product of the other two stands in for it. Neither shortcut can make a false
//!   proof pass: a witness that does not satisfy the system, or rows' values that are not
//!   the witness's, give a quotient that is not the polynomial the key commits to, and
//!   the verifier refuses the proof (the multi-scalar multiplications use the witness
//!   itself);
//! - the quotient takes six FFTs where ark-groth16 takes seven (see
//!   [`QuotientDomain::quotient`]), with no bit-reversal pass and with roots made once
//!   per proof for all six ([`super::fft`]);
//! - the multi-scalar multiplications see each witness value's size: the points of the
//!   ±1s (most of a witness is bits) are summed in batch-affine rounds, small integers and
//!   small fractions over their few bits, see [`super::witness_msm`];
//! - B in G2, the most expensive sum per term, skips the variables that never appear in
//!   a B row, found once per key;
//! - the sum over the quotient's coefficients, all full-size, uses batch-affine buckets
//!   ([`super::msm`]);
//! - keys from snarkjs's ceremonies hold H in another basis (the odd points of the domain
//!   of 2n roots), against which the prover sums `A·B − C` at those points directly.

use std::time::{Duration, Instant};

use ark_bn254::{Bn254, Fr, G2Affine};
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{FftField, Field, PrimeField, Zero};
use ark_groth16::{Proof, ProvingKey};
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
use rayon::prelude::*;

use super::arith::InlineArith;
use super::fft::{Fft, bit_reversed_powers};
use super::witness_msm::witness_msm;
use crate::circuit::r1cs::R1cs;
use crate::proof::ProofError;

/// How a proving key holds H, the points the quotient is summed against; its length says
/// which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuotientForm {
    /// `τ^i·Z(τ)/δ` for the n − 1 coefficients of h (sn2's and ark-groth16's setups): the
    /// prover sums h's coefficients.
    Coefficients,
    /// `L_{2i+1}(τ)/δ` for the n odd points of the domain of 2n roots (snarkjs's keys):
    /// `A·B − C` vanishes on the even points and has degree below 2n, so its values at
    /// the odd points, summed against these, give `h(τ)·Z(τ)/δ` with neither the division
    /// by Z nor the last inverse FFT.
    OddPoints,
}

/// Where the quotient is computed: the QAP's evaluation domain (the rows, then one per
/// public input, rounded up to a power of two) and the coset of its odd multiples of a
/// primitive 2n-th root ω, the odd points of the domain of 2n roots; with the roots and
/// powers its transforms use. It is made for each proof and dropped after it: kept with
/// the key, its tables (four times the domain's size in field elements, a third of
/// digits-resnet's key) would stand outside what the miner counts against
/// `prover_memory_bytes`, the key's bytes. It needs the synthesised witness and not the
/// key, so a one-shot proof makes it while the key is still being read.
pub(super) struct QuotientDomain {
    fft: Fft,
    /// `ω^i / n` at bit-reversed positions: interpolated values (n times the
    /// coefficients, bit-reversed) times these are the coefficients of the polynomial
    /// moved onto the coset.
    onto_coset: Vec<Fr>,
    /// `ω^(−i) / 2n` at bit-reversed positions: what brings a product's interpolated
    /// values on the coset back to half the coefficients (see [`QuotientDomain::quotient`]).
    /// Only keys in [`QuotientForm::Coefficients`] use it; it is made before the key's form
    /// is known, and snarkjs's keys, the other form, are the rare ones.
    off_coset_halved: Vec<Fr>,
}

/// The size of the QAP's domain for `rows` rows and `instance_variables` public inputs
/// (the constant one included).
fn domain_size(rows: usize, instance_variables: usize) -> Result<usize, ProofError> {
    Radix2EvaluationDomain::<Fr>::compute_size_of_domain(rows + instance_variables)
        .ok_or_else(too_large)
}

fn too_large() -> ProofError {
    ProofError::Synthesis("the circuit is too large for BN254's FFT".into())
}

impl QuotientDomain {
    /// The domain for the synthesised `system` and its tables.
    pub(super) fn for_system(system: &R1cs) -> Result<Self, ProofError> {
        Self::of(domain_size(
            system.constraint_count(),
            system.instance_count(),
        )?)
    }

    /// The domain of `size` points (a power of two whose double BN254's scalar field has
    /// roots for) and its tables, made side by side.
    fn of(size: usize) -> Result<Self, ProofError> {
        let omega = Fr::get_root_of_unity(2 * size as u64).ok_or_else(too_large)?;
        let omega_inverse = omega.inverse().ok_or_else(too_large)?;
        let n_inverse = Fr::from(size as u64).inverse().ok_or_else(too_large)?;
        let half_n_inverse = n_inverse * Fr::from(2u64).inverse().ok_or_else(too_large)?;
        let (fft, (onto_coset, off_coset_halved)) = rayon::join(
            || Fft::new(size),
            || {
                rayon::join(
                    || bit_reversed_powers(size, n_inverse, omega),
                    || bit_reversed_powers(size, half_n_inverse, omega_inverse),
                )
            },
        );
        Ok(Self {
            fft: fft.ok_or_else(too_large)?,
            onto_coset,
            off_coset_halved,
        })
    }

    /// What H is summed against, in the key's form: the coefficients of h = (A·B − C) / Z,
    /// or `A·B − C` at the odd points; A, B, C interpolate the rows' values (and, as in
    /// ark-groth16's libsnark reduction, the public inputs after the rows of A, which
    /// makes them independent in the QAP). `rows` holds each row's `A·z` and `B·z`, as the
    /// witness's synthesis found them; `instance` the constant one and the public inputs.
    ///
    /// Six FFTs of the domain's size, where ark-groth16 takes seven. On the odd points Z
    /// is ω^n − 1 = −2, so h's values there are (C − A·B) / 2, and h = (C − q) / 2 with q
    /// the polynomial that takes A·B's values at the odd points. C has degree below n, so
    /// its coefficients come straight from its values on the domain: the FFT that brings C
    /// to the coset and the inverse FFT that would bring it back cancel, and neither runs.
    /// The coefficients stay in bit-reversed order from the interpolations to the last
    /// step, which puts them in order as it combines them.
    fn quotient(&self, form: QuotientForm, rows: &[(Fr, Fr)], instance: &[Fr]) -> Vec<Fr> {
        let n = self.fft.size();
        let mut a = vec![Fr::zero(); n];
        let mut b = vec![Fr::zero(); n];
        a[..rows.len()]
            .par_iter_mut()
            .zip(&mut b[..rows.len()])
            .zip(rows)
            .for_each(|((a, b), (a_value, b_value))| {
                *a = *a_value;
                *b = *b_value;
            });
        a[rows.len()..rows.len() + instance.len()].copy_from_slice(instance);
        // The padding rows hold the public inputs in A and nothing in B: their C is zero,
        // as their product is.
        let mut c = a.clone();
        multiply(&mut c, &b);
        let onto_coset = |values: &mut Vec<Fr>| {
            self.fft.interpolate(values);
            multiply(values, &self.onto_coset);
            self.fft.evaluate(values);
        };
        let odd_points = form == QuotientForm::OddPoints;
        rayon::join(
            || rayon::join(|| onto_coset(&mut a), || onto_coset(&mut b)),
            || {
                if odd_points {
                    onto_coset(&mut c);
                } else {
                    self.fft.interpolate(&mut c);
                }
            },
        );
        multiply(&mut a, &b);
        match form {
            QuotientForm::Coefficients => {
                // a holds A·B on the coset, c is n times C's coefficients (bit-reversed):
                // h_i = (C_i − q_i) / 2 = (c_k − a_k·ω^(−i)) / 2n at k = bit_reversed(i).
                self.fft.interpolate(&mut a);
                let half_n_inverse = self.off_coset_halved[0];
                (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let k = self.fft.bit_reversed(i);
                        let mut q = a[k];
                        q.mul_inline(&self.off_coset_halved[k]);
                        let mut h = c[k];
                        h.mul_inline(&half_n_inverse);
                        h.sub_inline(&q);
                        h
                    })
                    .collect()
            }
            QuotientForm::OddPoints => {
                a.par_iter_mut().zip(&c).for_each(|(a, c)| a.sub_inline(c));
                a
            }
        }
    }
}

/// `values[i] *= factors[i]`.
fn multiply(values: &mut [Fr], factors: &[Fr]) {
    values
        .par_iter_mut()
        .zip(factors)
        .for_each(|(value, factor)| value.mul_inline(factor));
}

/// The proving key with what the prover derives from it once.
pub(super) struct PreparedKey {
    /// The key, its B in G2 query moved into `b_g2` (and empty here).
    pub(super) key: ProvingKey<Bn254>,
    b_g2: SparseBases,
}

/// B's G2 query without its zero points: the variables that appear in no B row have none.
struct SparseBases {
    /// The point of the constant one.
    constant: G2Affine,
    /// How many variables the key has points for, the constant included.
    len: usize,
    /// The variables (counted after the constant) with a point, and those points.
    variables: Vec<usize>,
    bases: Vec<G2Affine>,
}

impl SparseBases {
    /// Takes B's G2 query out of `key`, its nonzero points kept where they are: no second
    /// copy of the key's largest vector is made.
    fn take(key: &mut ProvingKey<Bn254>) -> Self {
        let mut bases = std::mem::take(&mut key.b_g2_query);
        let len = bases.len();
        let constant = bases.first().copied().unwrap_or_else(G2Affine::zero);
        let mut variables = Vec::new();
        let mut index = 0;
        bases.retain(|point| {
            let variable = index;
            index += 1;
            let kept = variable > 0 && !point.is_zero();
            if kept {
                variables.push(variable - 1);
            }
            kept
        });
        Self {
            constant,
            len,
            variables,
            bases,
        }
    }
}

impl PreparedKey {
    pub(super) fn new(mut key: ProvingKey<Bn254>) -> Self {
        let b_g2 = SparseBases::take(&mut key);
        Self { key, b_g2 }
    }

    /// Checks that the synthesised `system` is the circuit this key was made for, as far
    /// as its shape shows: the same variables, and rows that need the key's domain of
    /// `size`; returns the form of the key's H.
    fn fits(&self, system: &R1cs, size: usize) -> Result<QuotientForm, ProofError> {
        let key = &self.key;
        let variables = system.instance_count() + system.witness_count();
        let form = match key.h_query.len() {
            h if h + 1 == size => Some(QuotientForm::Coefficients),
            h if h == size => Some(QuotientForm::OddPoints),
            _ => None,
        };
        match form {
            Some(form)
                if key.a_query.len() == variables
                    && key.b_g1_query.len() == variables
                    && self.b_g2.len == variables
                    && key.l_query.len() == system.witness_count() =>
            {
                Ok(form)
            }
            _ => Err(ProofError::MalformedKey(
                "the proving key does not fit this model's circuit: it was made for another model, or is damaged".into(),
            )),
        }
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

/// A Groth16 proof for `system`, a synthesised witness (its assignment: the constant one,
/// the public inputs, then the witness; and its rows' values), with the blinding factors
/// `r` and `s`; `domain` is [`QuotientDomain::for_system`].
pub(super) fn prove(
    prepared: &PreparedKey,
    system: &R1cs,
    domain: &QuotientDomain,
    r: Fr,
    s: Fr,
) -> Result<(Proof<Bn254>, Timings), ProofError> {
    let form = prepared.fits(system, domain.fft.size())?;
    let pk = &prepared.key;
    let z = system.assignment();
    let mut timings = Timings::default();
    let started = Instant::now();
    let h = domain.quotient(form, system.row_values(), system.instance_values());
    timings.quotient = started.elapsed();

    let started = Instant::now();
    let scalars: Vec<_> = z[1..].par_iter().map(|v| v.into_bigint()).collect();
    let witness_scalars = &scalars[system.instance_count() - 1..];
    let a = pk.vk.alpha_g1.into_group()
        + pk.a_query[0]
        + witness_msm(&pk.a_query[1..], &scalars)
        + pk.delta_g1 * r;
    timings.a = started.elapsed();

    let started = Instant::now();
    let b_g1 = pk.beta_g1.into_group()
        + pk.b_g1_query[0]
        + witness_msm(&pk.b_g1_query[1..], &scalars)
        + pk.delta_g1 * s;
    timings.b_g1 = started.elapsed();

    let started = Instant::now();
    let b_g2_scalars: Vec<_> = prepared
        .b_g2
        .variables
        .iter()
        .map(|&i| scalars[i])
        .collect();
    let b_g2 = pk.vk.beta_g2.into_group()
        + prepared.b_g2.constant
        + witness_msm(&prepared.b_g2.bases, &b_g2_scalars)
        + pk.vk.delta_g2 * s;
    timings.b_g2 = started.elapsed();

    let started = Instant::now();
    let h_scalars: Vec<_> = h.par_iter().map(|v| v.into_bigint()).collect();
    let h_sum = super::msm::msm(&pk.h_query, &h_scalars);
    timings.h = started.elapsed();
    let started = Instant::now();
    let l_sum = witness_msm(&pk.l_query, witness_scalars);
    let c = a * s + b_g1 * r - pk.delta_g1 * (r * s) + h_sum + l_sum;
    timings.c = started.elapsed();

    let proof = Proof {
        a: a.into_affine(),
        b: b_g2.into_affine(),
        c: c.into_affine(),
    };
    Ok((proof, timings))
}
