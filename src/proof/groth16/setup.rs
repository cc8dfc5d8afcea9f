//! Groth16's key generation, written out step by step so that a long setup can say where
//! it is. The keys are ark-groth16's (the same construction, the libsnark reduction, the
//! same layout), made from fresh OS randomness; the secrets live only in this function.

use std::time::Instant;

use ark_bn254::{Bn254, Fr, G1Projective, G2Projective};
use ark_ec::CurveGroup;
use ark_ec::scalar_mul::BatchMulPreprocessing;
use ark_ff::{Field, UniformRand, Zero};
use ark_groth16::r1cs_to_qap::{LibsnarkReduction, R1CSToQAP};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_poly::{EvaluationDomain, GeneralEvaluationDomain};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, OptimizationGoal, SynthesisMode,
};
use rand_core::OsRng;

use super::Replay;
use crate::circuit::r1cs::R1cs;
use crate::proof::ProofError;

pub(super) type Domain = GeneralEvaluationDomain<Fr>;

/// The secrets of a setup: whoever knows them can prove anything.
pub(super) struct Secrets {
    /// Where the polynomials are evaluated; outside the domain.
    pub tau: Fr,
    pub alpha: Fr,
    pub beta: Fr,
    pub gamma: Fr,
    pub delta: Fr,
}

/// Fresh keys for `system`, reporting each step (`report` gets a line such as "B in G2:
/// 1234 points").
pub(super) fn generate(
    system: &R1cs,
    report: &mut dyn FnMut(&str),
) -> Result<ProvingKey<Bn254>, ProofError> {
    let rng = &mut OsRng;
    let domain = domain_of(system)?;
    let secrets = Secrets {
        tau: domain.sample_element_outside_domain(rng),
        alpha: Fr::rand(rng),
        beta: Fr::rand(rng),
        gamma: Fr::rand(rng),
        delta: Fr::rand(rng),
    };
    keys_from_secrets(
        system,
        &secrets,
        G1Projective::rand(rng),
        G2Projective::rand(rng),
        report,
    )
}

/// The evaluation domain of `system`'s QAP: its rows and, after them, one per public input.
pub(super) fn domain_of(system: &R1cs) -> Result<Domain, ProofError> {
    Domain::new(system.constraint_count() + system.instance_count())
        .ok_or_else(|| ProofError::Synthesis("the circuit is too large for BN254's FFT".into()))
}

/// The keys that `secrets` and the generators `g1`, `g2` make for `system`: what
/// [`generate`] does with fresh secrets, and what the tests compare a ceremony's keys with.
pub(super) fn keys_from_secrets(
    system: &R1cs,
    secrets: &Secrets,
    g1: G1Projective,
    g2: G2Projective,
    report: &mut dyn FnMut(&str),
) -> Result<ProvingKey<Bn254>, ProofError> {
    let failed = |e: ark_relations::gr1cs::SynthesisError| ProofError::Synthesis(e.to_string());
    let started = Instant::now();
    let mut step = |what: String| {
        report(&format!(
            "{what} ({:.1} s)",
            started.elapsed().as_secs_f64()
        ))
    };
    let Secrets {
        tau: t,
        alpha,
        beta,
        gamma,
        delta,
    } = *secrets;

    let cs = ConstraintSystem::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    Replay(system)
        .generate_constraints(cs.clone())
        .map_err(failed)?;
    cs.finalize();
    let instance_variables = cs.num_instance_variables();
    let domain = domain_of(system)?;
    step(format!(
        "circuit: {} constraints, {} variables, domain 2^{}",
        cs.num_constraints(),
        cs.num_instance_variables() + cs.num_witness_variables(),
        domain.log_size_of_group()
    ));
    let (a, b, c, zt, variables, domain_size) =
        LibsnarkReduction::instance_map_with_evaluation::<Fr, Domain>(cs, &t).map_err(failed)?;
    step("polynomials evaluated at the secret point".into());

    let gamma_inverse = gamma.inverse().expect("a random element is not zero");
    let delta_inverse = delta.inverse().expect("a random element is not zero");
    let combine = |range: std::ops::Range<usize>, by: Fr| -> Vec<Fr> {
        range
            .map(|i| (beta * a[i] + alpha * b[i] + c[i]) * by)
            .collect()
    };
    let gamma_abc = combine(0..instance_variables, gamma_inverse);
    let l = combine(instance_variables..variables + 1, delta_inverse);
    drop(c);

    let non_zero = |v: &[Fr]| v.iter().filter(|x| !x.is_zero()).count();
    let (non_zero_a, non_zero_b) = (non_zero(&a), non_zero(&b));
    let g2_table = BatchMulPreprocessing::new(g2, non_zero_b);
    let b_g2_query = g2_table.batch_mul(&b);
    drop(g2_table);
    step(format!("B in G2: {non_zero_b} points"));

    let g1_table =
        BatchMulPreprocessing::new(g1, non_zero_a + non_zero_b + variables + domain_size + 1);
    let a_query = g1_table.batch_mul(&a);
    drop(a);
    let b_g1_query = g1_table.batch_mul(&b);
    drop(b);
    step(format!("A and B in G1: {} points", non_zero_a + non_zero_b));
    let h_scalars =
        LibsnarkReduction::h_query_scalars::<Fr, Domain>(domain_size - 1, t, zt, delta_inverse)
            .map_err(failed)?;
    let h_query = g1_table.batch_mul(&h_scalars);
    step(format!("H: {} points", h_query.len()));
    let l_query = g1_table.batch_mul(&l);
    let gamma_abc_g1 = g1_table.batch_mul(&gamma_abc);
    step(format!("L: {} points; keys made", l_query.len()));

    Ok(ProvingKey {
        vk: VerifyingKey {
            alpha_g1: (g1 * alpha).into_affine(),
            beta_g2: (g2 * beta).into_affine(),
            gamma_g2: (g2 * gamma).into_affine(),
            delta_g2: (g2 * delta).into_affine(),
            gamma_abc_g1,
        },
        beta_g1: (g1 * beta).into_affine(),
        delta_g1: (g1 * delta).into_affine(),
        a_query,
        b_g1_query,
        b_g2_query,
        h_query,
        l_query,
    })
}
