//! Multi-scalar multiplication in G1 for full-size scalars: the sum over the quotient's
//! coefficients, the prover's largest single cost. Those coefficients are uniformly
//! spread field elements, so ark-ec's split of scalars by size does nothing for them.
//!
//! Pippenger's bucket method with signed digits, as ark-ec's, with two differences:
//! - the buckets are affine points, filled in batches that share one field inversion
//!   (Montgomery's trick). An addition then costs about six field multiplications, where
//!   ark-ec's mixed addition into an extended bucket costs about ten;
//! - each thread fills the buckets of all its windows in one pass over the points, so a
//!   batch rarely meets the same bucket twice. When it does, the point goes to a
//!   projective bucket beside the affine one, so no input (all scalars equal, say) makes
//!   the method slower than a plain bucket method.

use ark_bn254::{Fq, G1Affine, G1Projective};
use ark_ec::AffineRepr;
use ark_ff::{AdditiveGroup, BigInteger256, Field, One, Zero};
use rayon::prelude::*;

/// Bits of BN254's scalar field modulus: every canonical scalar is below 2^254.
const SCALAR_BITS: usize = 254;

/// Additions collected before one shared inversion: enough to make the inversion's cost
/// (a few hundred multiplications) small per addition.
const BATCH: usize = 256;

/// `Σ scalars[i]·bases[i]`, over the shorter of the two lists.
pub(super) fn msm(bases: &[G1Affine], scalars: &[BigInteger256]) -> G1Projective {
    let n = bases.len().min(scalars.len());
    if n == 0 {
        return G1Projective::zero();
    }
    let (bases, scalars) = (&bases[..n], &scalars[..n]);
    let c = window_bits(n);
    // The top window takes the carry of the one below; 254 mod c < c leaves it room.
    let windows = SCALAR_BITS / c + 1;
    let digits: Vec<i32> = scalars
        .par_iter()
        .flat_map_iter(|scalar| signed_digits(scalar, c, windows))
        .collect();
    let threads = rayon::current_num_threads().clamp(1, windows);
    let per_thread = windows.div_ceil(threads);
    let window_sums: Vec<G1Projective> = (0..windows)
        .step_by(per_thread)
        .collect::<Vec<_>>()
        .into_par_iter()
        .flat_map_iter(|first| {
            let count = per_thread.min(windows - first);
            let mut buckets = Buckets::new(count << (c - 1));
            for (point, digits) in bases.iter().zip(digits.chunks_exact(windows)) {
                if point.is_zero() {
                    continue;
                }
                for (slot, &digit) in digits[first..first + count].iter().enumerate() {
                    if digit != 0 {
                        let bucket = (slot << (c - 1)) + digit.unsigned_abs() as usize - 1;
                        buckets.add(bucket, if digit > 0 { *point } else { -*point });
                    }
                }
            }
            buckets.flush();
            (0..count)
                .map(|slot| buckets.window_sum(slot << (c - 1), 1 << (c - 1)))
                .collect::<Vec<_>>()
        })
        .collect();
    window_sums
        .iter()
        .rev()
        .fold(G1Projective::zero(), |mut total, sum| {
            for _ in 0..c {
                total.double_in_place();
            }
            total + sum
        })
}

/// The window width that minimises the estimated work: per window, one affine addition
/// per point (about six multiplications) and, to sum the 2^(c−1) buckets, one mixed and
/// one projective addition per bucket (about twenty-five).
fn window_bits(n: usize) -> usize {
    (4..=16)
        .min_by_key(|&c| (SCALAR_BITS / c + 1) * (6 * n + (25 << (c - 1))))
        .expect("the range is not empty")
}

/// The scalar's digits in base 2^c, each in [−2^(c−1), 2^(c−1)], lowest first.
fn signed_digits(scalar: &BigInteger256, c: usize, windows: usize) -> impl Iterator<Item = i32> {
    let limbs = scalar.0;
    let mut carry = 0i64;
    (0..windows).map(move |window| {
        let raw = bits(&limbs, window * c, c) as i64 + carry;
        let half = 1i64 << (c - 1);
        carry = (raw > half) as i64;
        (raw - (carry << c)) as i32
    })
}

/// Bits `start..start + count` of a little-endian integer, `count` ≤ 32.
fn bits(limbs: &[u64; 4], start: usize, count: usize) -> u64 {
    let (limb, shift) = (start / 64, start % 64);
    if limb >= limbs.len() {
        return 0;
    }
    let mut value = limbs[limb] >> shift;
    if shift + count > 64 && limb + 1 < limbs.len() {
        value |= limbs[limb + 1] << (64 - shift);
    }
    value & ((1u64 << count) - 1)
}

/// One thread's buckets: affine, filled in batches, with projective overflow.
struct Buckets {
    affine: Vec<G1Affine>,
    overflow: Vec<G1Projective>,
    /// Whether a bucket already has an addition in the pending batch.
    pending: Vec<bool>,
    batch: Vec<(usize, G1Affine)>,
    denominators: Vec<Fq>,
    products: Vec<Fq>,
}

impl Buckets {
    fn new(count: usize) -> Self {
        Self {
            affine: vec![G1Affine::zero(); count],
            overflow: vec![G1Projective::zero(); count],
            pending: vec![false; count],
            batch: Vec::with_capacity(BATCH),
            denominators: Vec::with_capacity(BATCH),
            products: Vec::with_capacity(BATCH),
        }
    }

    fn add(&mut self, bucket: usize, point: G1Affine) {
        if self.pending[bucket] {
            self.overflow[bucket] += point;
        } else if self.affine[bucket].is_zero() {
            self.affine[bucket] = point;
        } else {
            self.pending[bucket] = true;
            self.batch.push((bucket, point));
            if self.batch.len() == BATCH {
                self.flush();
            }
        }
    }

    /// Performs the pending additions with one inversion. BN254's G1 has no point of
    /// order two, so a doubling's denominator 2y is never zero.
    fn flush(&mut self) {
        self.denominators.clear();
        for &(bucket, point) in &self.batch {
            let sum = &self.affine[bucket];
            self.denominators.push(if sum.x != point.x {
                point.x - sum.x
            } else if sum.y == point.y {
                sum.y.double()
            } else {
                Fq::one()
            });
        }
        invert_all(&mut self.denominators, &mut self.products);
        for (&(bucket, point), inverse) in self.batch.iter().zip(&self.denominators) {
            self.pending[bucket] = false;
            let sum = &mut self.affine[bucket];
            let slope = if sum.x != point.x {
                (point.y - sum.y) * inverse
            } else if sum.y == point.y {
                let square = sum.x.square();
                (square.double() + square) * inverse
            } else {
                *sum = G1Affine::zero();
                continue;
            };
            let x = slope.square() - sum.x - point.x;
            let y = slope * (sum.x - x) - sum.y;
            *sum = G1Affine::new_unchecked(x, y);
        }
        self.batch.clear();
    }

    /// `Σ (j + 1)·bucket[first + j]` for j < count, by running sums.
    fn window_sum(&self, first: usize, count: usize) -> G1Projective {
        let mut running = G1Projective::zero();
        let mut total = G1Projective::zero();
        for bucket in (first..first + count).rev() {
            running += self.affine[bucket];
            if !self.overflow[bucket].is_zero() {
                running += self.overflow[bucket];
            }
            total += running;
        }
        total
    }
}

/// Replaces every (nonzero) element by its inverse, with one field inversion.
fn invert_all(values: &mut [Fq], products: &mut Vec<Fq>) {
    products.clear();
    let mut product = Fq::one();
    for value in values.iter() {
        products.push(product);
        product *= value;
    }
    let mut inverse = product.inverse().expect("no denominator is zero");
    for (value, before) in values.iter_mut().zip(products.iter()).rev() {
        let next = inverse * *value;
        *value = inverse * before;
        inverse = next;
    }
}

#[cfg(test)]
mod tests {
    use ark_bn254::Fr;
    use ark_ec::{CurveGroup, VariableBaseMSM};
    use ark_ff::{PrimeField, UniformRand};
    use rand_core::OsRng;

    use super::*;

    fn reference(bases: &[G1Affine], scalars: &[BigInteger256]) -> G1Projective {
        G1Projective::msm_bigint(bases, scalars)
    }

    fn random_points(count: usize) -> Vec<G1Affine> {
        let mut rng = OsRng;
        let points: Vec<_> = (0..count).map(|_| G1Projective::rand(&mut rng)).collect();
        G1Projective::normalize_batch(&points)
    }

    #[test]
    fn equals_ark_on_random_scalars_of_every_size() {
        let mut rng = OsRng;
        for n in [0, 1, 2, 7, 100, 1000, 5000] {
            let bases = random_points(n);
            let scalars: Vec<_> = (0..n).map(|_| Fr::rand(&mut rng).into_bigint()).collect();
            assert_eq!(
                msm(&bases, &scalars),
                reference(&bases, &scalars),
                "{n} points"
            );
        }
    }

    #[test]
    fn equals_ark_where_buckets_meet_themselves() {
        // One point and one scalar throughout: every addition lands in the buckets of
        // the batch before it (doubling, then overflow).
        let point = random_points(1)[0];
        let bases = vec![point; 3000];
        let scalar = Fr::rand(&mut OsRng).into_bigint();
        let scalars = vec![scalar; 3000];
        assert_eq!(msm(&bases, &scalars), reference(&bases, &scalars));
        // A point and its negation with the same scalar cancel in each bucket.
        let bases: Vec<_> = (0..3000)
            .map(|i| if i % 2 == 0 { point } else { -point })
            .collect();
        assert_eq!(msm(&bases, &scalars), G1Projective::zero());
    }

    #[test]
    fn equals_ark_on_edge_scalars_and_the_point_at_infinity() {
        let mut bases = random_points(64);
        bases[5] = G1Affine::zero();
        let minus_one = (-Fr::one()).into_bigint();
        let edges = [
            BigInteger256::from(0u64),
            BigInteger256::from(1u64),
            BigInteger256::from(2u64),
            minus_one,
            BigInteger256::new([u64::MAX, u64::MAX, 0, 0]),
        ];
        let mut scalars: Vec<_> = (0..64).map(|i| edges[i % edges.len()]).collect();
        // Every digit at its signed extremes: 2^(c−1) in every window.
        for c in 4..=16 {
            let mut limbs = [0u64; 4];
            for window in 0..SCALAR_BITS / c {
                let bit = window * c + c - 1;
                limbs[bit / 64] |= 1 << (bit % 64);
            }
            scalars.push(
                Fr::from_bigint(BigInteger256::new(limbs)).map_or(minus_one, |f| f.into_bigint()),
            );
        }
        let bases: Vec<_> = bases.into_iter().cycle().take(scalars.len()).collect();
        assert_eq!(msm(&bases, &scalars), reference(&bases, &scalars));
    }

    #[test]
    fn signed_digits_give_back_the_scalar() {
        let mut rng = OsRng;
        for c in 4..=16 {
            for _ in 0..20 {
                let scalar = Fr::rand(&mut rng);
                let windows = SCALAR_BITS / c + 1;
                let mut value = Fr::zero();
                let base = Fr::from(1u64 << c);
                for digit in signed_digits(&scalar.into_bigint(), c, windows)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    assert!(digit.unsigned_abs() <= 1 << (c - 1));
                    value = value * base + Fr::from(digit as i64);
                }
                assert_eq!(value, scalar, "c = {c}");
            }
        }
    }
}
