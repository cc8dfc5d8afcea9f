//! The sums of the witness's own values against the key's points: A, B in both groups, and
//! L. Each value goes where its size makes it cheapest:
//! - most of a witness is bits, so most nonzero values are 1 (or −1): their points are
//!   summed pairwise in rounds of affine additions that share one inversion;
//! - small integers (a byte, a sum of a few bits) are summed by the bucket method over
//!   as many bits as the largest of them has, not over a field element's 254;
//! - small fractions a/b, each a field element of full size: the rescale gadget's slack is
//!   `(y − low) / S` with S the count of reasons its output saturated, a few at most. With
//!   L the least common multiple of their denominators, `Σ (a/b)·P = L⁻¹ · Σ (a·L/b)·P`:
//!   a bucket sum over small integers again, then one multiplication by L⁻¹. digits-resnet
//!   has 565 of these in A and in L, which ark-ec summed over all 254 bits;
//! - anything else, full-size: the binding, a public input in A and B, is one; a few are
//!   multiplied out one by one, many summed by their 64-bit limbs.
//!
//! No thread pool is made here: ark-ec's sum for full-size values builds one for every
//! call, which cost a one-shot `sn2 prove` of digits-resnet eight thread starts. The result is the same
//! group element whichever way a value is summed, so none of this touches soundness.

use ark_bn254::Fr;
use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};
use ark_ec::{AffineRepr, PrimeGroup};
use ark_ff::{AdditiveGroup, BigInteger, BigInteger256, Field, PrimeField, Zero};
use rayon::prelude::*;

use super::arith::InlineArith;
use super::msm::{Additions, PAIRWISE_ROUNDS_DOWN_TO};

/// Values at most this many bits in magnitude, of either sign, count as small integers;
/// also the bound on a fraction's numerator.
const SMALL_BITS: u32 = 32;

/// The largest denominator a fraction is looked for with: the least common multiple of
/// 1 to 16 (720720, 20 bits) times a numerator below 2^32 still fits in 64 bits.
const MAX_DENOMINATOR: u64 = 16;

/// `Σ scalars[i]·bases[i]` over the shorter of the two lists (canonical scalars, below r),
/// for a witness's values.
pub(super) fn witness_msm<P: SWCurveConfig<ScalarField = Fr>>(
    bases: &[Affine<P>],
    scalars: &[BigInteger256],
) -> Projective<P>
where
    P::BaseField: InlineArith,
{
    let mut units = Vec::new();
    let mut integers = Vec::new();
    let mut fractions = Vec::new();
    let mut others = Vec::new();
    for (base, scalar) in bases.iter().zip(scalars) {
        if scalar.is_zero() || base.is_zero() {
            continue;
        }
        let signed = |negative: bool| if negative { -*base } else { *base };
        match small(scalar) {
            Some((negative, 1)) => units.push(signed(negative)),
            Some((negative, magnitude)) => integers.push((signed(negative), magnitude)),
            None => match fraction(scalar) {
                Some((negative, numerator, denominator)) => {
                    fractions.push((signed(negative), numerator, denominator))
                }
                None => others.push((*base, *scalar)),
            },
        }
    }
    let common = fractions
        .iter()
        .fold(1, |common, &(_, _, denominator)| lcm(common, denominator));
    let scaled: Vec<_> = fractions
        .into_iter()
        .map(|(point, numerator, denominator)| (point, numerator * (common / denominator)))
        .collect();
    let ((units, integers), (fractions, others)) = rayon::join(
        || rayon::join(|| sum(&mut units), || bucket_sum(&integers)),
        || {
            rayon::join(
                || {
                    let inverse = Fr::from(common).inverse().expect("L is below r, a prime");
                    bucket_sum(&scaled).mul_bigint(inverse.into_bigint())
                },
                || full_size_sum(&others),
            )
        },
    );
    units + integers + fractions + others
}

/// At most this many full-size values are each multiplied out by doubling and adding;
/// more go to bucket sums.
const FEW: usize = 16;

/// `Σ scalar·point` for full-size scalars. A circuit's binding is one, in A and B; a few
/// are multiplied out one by one. Many are four bucket sums over the scalars' 64-bit
/// limbs, combined by doubling: `Σ_j 2^(64j)·Σ_i limb_ij·P_i`.
fn full_size_sum<P: SWCurveConfig>(terms: &[(Affine<P>, BigInteger256)]) -> Projective<P> {
    if terms.len() <= FEW {
        return terms
            .par_iter()
            .map(|(point, scalar)| point.mul_bigint(scalar))
            .sum();
    }
    let mut total = Projective::zero();
    for limb in (0..4).rev() {
        for _ in 0..u64::BITS {
            total.double_in_place();
        }
        let limbs: Vec<_> = terms
            .iter()
            .map(|(point, scalar)| (*point, scalar.0[limb]))
            .collect();
        total += bucket_sum(&limbs);
    }
    total
}

/// The value as a sign and a magnitude below 2^[`SMALL_BITS`], where it is that small:
/// `value` or `r − value` fits.
fn small(value: &BigInteger256) -> Option<(bool, u64)> {
    let fits = |v: &BigInteger256| v.0[1..] == [0, 0, 0] && v.0[0] < 1 << SMALL_BITS;
    if fits(value) {
        return Some((false, value.0[0]));
    }
    let mut negated = Fr::MODULUS;
    negated.sub_with_borrow(value);
    fits(&negated).then(|| (true, negated.0[0]))
}

/// The value as a sign, a small numerator and the least denominator up to
/// [`MAX_DENOMINATOR`] that makes it one: its multiples are tried in turn, each one
/// addition modulo r.
fn fraction(value: &BigInteger256) -> Option<(bool, u64, u64)> {
    let mut multiple = *value;
    for denominator in 2..=MAX_DENOMINATOR {
        // Both terms are below r < 2^254: the sum cannot carry out of 256 bits.
        multiple.add_with_carry(value);
        if multiple >= Fr::MODULUS {
            multiple.sub_with_borrow(&Fr::MODULUS);
        }
        if let Some((negative, numerator)) = small(&multiple) {
            return Some((negative, numerator, denominator));
        }
    }
    None
}

fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// `Σ magnitude·point` by the bucket method, over as many bits as the largest magnitude
/// has; each thread sums its share of the terms.
fn bucket_sum<P: SWCurveConfig>(terms: &[(Affine<P>, u64)]) -> Projective<P> {
    let Some(largest) = terms.iter().map(|&(_, magnitude)| magnitude).max() else {
        return Projective::zero();
    };
    let bits = (u64::BITS - largest.leading_zeros()) as usize;
    let share = terms.len().div_ceil(rayon::current_num_threads().max(1));
    // Each window adds every term once and its buckets twice (the running sum); the
    // width that costs a share the fewest additions.
    let width = (1..=bits.min(16))
        .min_by_key(|&width| bits.div_ceil(width) * (share + (2 << width)))
        .unwrap_or(1);
    let mask = (1u64 << width) - 1;
    terms
        .par_chunks(share.max(1))
        .map(|terms| {
            let mut buckets = vec![Projective::<P>::zero(); (1 << width) - 1];
            let mut total = Projective::zero();
            for window in (0..bits.div_ceil(width)).rev() {
                for _ in 0..width {
                    total.double_in_place();
                }
                buckets.fill(Projective::zero());
                for (point, magnitude) in terms {
                    let digit = (magnitude >> (window * width)) & mask;
                    if digit != 0 {
                        buckets[digit as usize - 1] += point;
                    }
                }
                let mut running = Projective::zero();
                for bucket in buckets.iter().rev() {
                    running += bucket;
                    total += running;
                }
            }
            total
        })
        .sum()
}

/// `Σ points`, overwriting them: each thread halves its share in rounds of pairwise
/// affine additions that share one inversion, down to a few points added projectively.
fn sum<P: SWCurveConfig>(points: &mut [Affine<P>]) -> Projective<P>
where
    P::BaseField: InlineArith,
{
    let threads = rayon::current_num_threads().max(1);
    let share = points.len().div_ceil(threads).max(PAIRWISE_ROUNDS_DOWN_TO);
    points
        .par_chunks_mut(share)
        .map(|points| {
            let mut len = points.len();
            let mut additions = Additions::with_capacity(len / 2);
            while len > PAIRWISE_ROUNDS_DOWN_TO {
                let pairs = len / 2;
                additions.prepare(
                    points[..2 * pairs]
                        .chunks_exact(2)
                        .map(|pair| (&pair[0], &pair[1])),
                );
                for i in 0..pairs {
                    points[i] = additions.finish(i, &points[2 * i], &points[2 * i + 1]);
                }
                if len % 2 == 1 {
                    points[pairs] = points[len - 1];
                }
                len = pairs + len % 2;
            }
            points[..len]
                .iter()
                .fold(Projective::zero(), |sum, point| sum + point)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use ark_bn254::{G1Affine, G1Projective, G2Projective};
    use ark_ec::{CurveGroup, VariableBaseMSM};
    use ark_ff::{One, UniformRand};
    use rand_core::{OsRng, RngCore};

    use super::super::msm::tests::{damaged_points, random_points, reference};
    use super::*;

    /// A witness's mix: mostly zeros and ones, some −1, small integers, small fractions
    /// (the rescale gadget's slacks) and full-size values.
    fn witness_scalars(count: usize) -> Vec<BigInteger256> {
        let mut rng = OsRng;
        (0..count)
            .map(|_| {
                let value = match rng.next_u32() % 12 {
                    0..=3 => Fr::zero(),
                    4..=6 => Fr::one(),
                    7 => -Fr::one(),
                    8 => Fr::from(rng.next_u32() % 1000) - Fr::from(500u64),
                    9 => {
                        let numerator = Fr::from(rng.next_u32() % 512) - Fr::from(256u64);
                        let denominator = Fr::from(u64::from(rng.next_u32()) % 16 + 1);
                        numerator * denominator.inverse().unwrap()
                    }
                    10 => Fr::from(u64::from(rng.next_u32()) << 20),
                    _ => Fr::rand(&mut rng),
                };
                value.into_bigint()
            })
            .collect()
    }

    #[test]
    fn the_witness_sum_equals_ark_in_both_groups() {
        for n in [0, 1, 2, 65, 3000] {
            let scalars = witness_scalars(n);
            let bases = random_points(n);
            assert_eq!(
                witness_msm(&bases, &scalars),
                reference(&bases, &scalars),
                "G1, {n} points"
            );
            let points: Vec<_> = (0..n).map(|_| G2Projective::rand(&mut OsRng)).collect();
            let bases = G2Projective::normalize_batch(&points);
            assert_eq!(
                witness_msm(&bases, &scalars),
                G2Projective::msm_bigint(&bases, &scalars),
                "G2, {n} points"
            );
        }
    }

    #[test]
    fn values_are_told_apart_by_size_and_fractions_found() {
        let big = |value: Fr| value.into_bigint();
        assert_eq!(small(&big(Fr::from(7u64))), Some((false, 7)));
        assert_eq!(small(&big(-Fr::from(7u64))), Some((true, 7)));
        let largest = (1u64 << SMALL_BITS) - 1;
        assert_eq!(small(&big(Fr::from(largest))), Some((false, largest)));
        assert_eq!(small(&big(-Fr::from(largest))), Some((true, largest)));
        assert_eq!(small(&big(Fr::from(largest + 1))), None);
        assert_eq!(small(&big(-Fr::from(largest + 1))), None);
        let third = Fr::from(3u64).inverse().unwrap();
        assert_eq!(small(&big(third)), None);
        assert_eq!(fraction(&big(third)), Some((false, 1, 3)));
        assert_eq!(
            fraction(&big(-third * Fr::from(200u64))),
            Some((true, 200, 3))
        );
        // Reduced: 6/4 is 3/2.
        let six_quarters = Fr::from(6u64) * Fr::from(4u64).inverse().unwrap();
        assert_eq!(fraction(&big(six_quarters)), Some((false, 3, 2)));
        let seventeenth = Fr::from(17u64).inverse().unwrap();
        assert_eq!(fraction(&big(seventeenth)), None);
        assert_eq!(fraction(&big(Fr::from(1u64 << 40))), None);
        assert_eq!(lcm(4, 6), 12);
        assert_eq!((1..=MAX_DENOMINATOR).fold(1, lcm), 720720);
    }

    #[test]
    fn the_bucket_sum_equals_ark_for_every_width() {
        let mut rng = OsRng;
        for bits in [1, 2, 9, 20, 33, 52, 64] {
            for n in [1, 5, 200] {
                let bases = random_points(n);
                let magnitudes: Vec<u64> = (0..n)
                    .map(|i| match i % 3 {
                        0 => u64::MAX >> (64 - bits),
                        _ => rng.next_u64() >> (64 - bits),
                    })
                    .collect();
                let terms: Vec<_> = bases
                    .iter()
                    .copied()
                    .zip(magnitudes.iter().copied())
                    .collect();
                let scalars: Vec<_> = magnitudes
                    .iter()
                    .map(|&m| Fr::from(m).into_bigint())
                    .collect();
                assert_eq!(
                    bucket_sum(&terms),
                    reference(&bases, &scalars),
                    "{bits} bits, {n} terms"
                );
            }
        }
        assert_eq!(
            bucket_sum::<ark_bn254::g1::Config>(&[]),
            G1Projective::zero()
        );
    }

    #[test]
    fn the_witness_sum_meets_doublings_cancellations_and_infinity() {
        // One point with scalar 1 throughout doubles in every round; alternating it with
        // its negation cancels; the point at infinity is skipped.
        let point = random_points(1)[0];
        let one = Fr::one().into_bigint();
        let ones = vec![one; 1000];
        let same = vec![point; 1000];
        assert_eq!(witness_msm(&same, &ones), reference(&same, &ones));
        let alternating: Vec<_> = (0..1000)
            .map(|i| if i % 2 == 0 { point } else { -point })
            .collect();
        assert_eq!(witness_msm(&alternating, &ones), G1Projective::zero());
        let minus_ones = vec![(-Fr::one()).into_bigint(); 1000];
        assert_eq!(
            witness_msm(&same, &minus_ones),
            reference(&same, &minus_ones)
        );
        // The same point with a fraction and its negation, and with many equal fractions.
        let half = Fr::from(2u64).inverse().unwrap();
        let halves = [half.into_bigint(), (-half).into_bigint()];
        assert_eq!(witness_msm(&same[..2], &halves), G1Projective::zero());
        let many_halves = vec![half.into_bigint(); 1000];
        assert_eq!(
            witness_msm(&same, &many_halves),
            reference(&same, &many_halves)
        );
        let mut with_infinity = random_points(1000);
        with_infinity[3] = G1Affine::zero();
        with_infinity[500] = G1Affine::zero();
        let mixed = witness_scalars(1000);
        assert_eq!(
            witness_msm(&with_infinity, &mixed),
            reference(&with_infinity, &mixed)
        );
    }

    #[test]
    fn points_off_the_curve_give_a_wrong_sum_never_a_panic() {
        let bases = damaged_points(3000);
        let _ = witness_msm(&bases, &vec![Fr::one().into_bigint(); bases.len()]);
        let _ = witness_msm(&bases, &witness_scalars(bases.len()));
    }
}
