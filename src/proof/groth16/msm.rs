//! Multi-scalar multiplications in the shapes a Groth16 witness gives them.
//!
//! [`msm`]: G1 for full-size scalars, the sum over the quotient's coefficients, the
//! prover's largest single cost. Those coefficients are uniformly spread field elements,
//! so ark-ec's split of scalars by size does nothing for them. Pippenger's bucket method
//! with signed digits, as ark-ec's, with four differences:
//! - each scalar is split in two halves of 129 bits against a point and its image under
//!   the curve's endomorphism (`glv`): twice the points in half the windows, which halves
//!   the work of summing buckets. The sum on 2^15 points took about 9% less time on two
//!   threads;
//! - the buckets are affine points, filled in batches that share one field inversion
//!   (Montgomery's trick). An addition then costs about six field multiplications, where
//!   ark-ec's mixed addition into an extended bucket costs about ten;
//! - each thread fills the buckets of all its windows in one pass over the points, so a
//!   batch rarely meets the same bucket twice. When it does, the point goes to a
//!   projective bucket beside the affine one, so no input (all scalars equal, say) makes
//!   the method slower than a plain bucket method;
//! - a window's buckets are summed by many running sums side by side, whose steps are
//!   batches of affine additions too ([`Buckets::window_sums`]).
//!
//! The witness's own sums, in either group, are `super::witness_msm`'s, with this
//! module's batch of affine additions.
//!
//! A proving key's points are not checked to be on the curve (see `key_format`), so an
//! addition whose denominator is zero, which no pair of curve points of prime order
//! meets, gives the point at infinity rather than a panic: a damaged key costs a proof
//! the verifier refuses, nothing more.

use ark_bn254::{Fq, G1Affine, G1Projective};
use ark_ec::short_weierstrass::{Affine, SWCurveConfig};
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{AdditiveGroup, BigInteger256, Zero};
use rayon::prelude::*;

use super::arith::InlineArith;
use super::glv;

/// Additions collected before one shared inversion: enough to make the inversion's cost
/// (a binary extended Euclid, worth a few hundred multiplications) small per addition,
/// few enough that a batch rarely meets a bucket twice.
const BATCH: usize = 1024;

/// The widest window: its signed digits, at most 2^(c−1) in magnitude, fit in an i16,
/// which halves the digits' table against i32.
const MAX_WINDOW_BITS: usize = 15;

/// Below this many points, a batch-affine round's inversion costs more than it saves.
pub(super) const PAIRWISE_ROUNDS_DOWN_TO: usize = 64;

/// `Σ scalars[i]·bases[i]`, over the shorter of the two lists (canonical scalars, below
/// r).
pub(super) fn msm(bases: &[G1Affine], scalars: &[BigInteger256]) -> G1Projective {
    let n = bases.len().min(scalars.len());
    if n == 0 {
        return G1Projective::zero();
    }
    let (bases, scalars) = (&bases[..n], &scalars[..n]);
    // Each point P with its image φ(P) = λ·P, each scalar as its two halves (see `glv`).
    let images: Vec<G1Affine> = bases.par_iter().map(glv::endomorphism).collect();
    let threads = rayon::current_num_threads().max(1);
    let c = window_bits(2 * n, threads);
    // The top window takes the carry of the one below; HALF_BITS mod c < c leaves it room.
    let windows = glv::HALF_BITS / c + 1;
    let digits: Vec<i16> = scalars
        .par_iter()
        .flat_map_iter(|scalar| {
            glv::split(scalar).into_iter().flat_map(move |half| {
                let sign = if half.negative { -1 } else { 1 };
                signed_digits(&half.magnitude, c, windows).map(move |digit| sign * digit)
            })
        })
        .collect();
    let per_thread = windows.div_ceil(threads.min(windows));
    let window_sums: Vec<G1Projective> = (0..windows)
        .step_by(per_thread)
        .collect::<Vec<_>>()
        .into_par_iter()
        .flat_map_iter(|first| {
            let count = per_thread.min(windows - first);
            let mut buckets = Buckets::new(count << (c - 1));
            let pairs = bases
                .iter()
                .zip(&images)
                .zip(digits.chunks_exact(2 * windows));
            for ((point, image), digits) in pairs {
                if point.is_zero() {
                    continue;
                }
                let (own_digits, image_digits) = digits.split_at(windows);
                for (point, digits) in [(point, own_digits), (image, image_digits)] {
                    for (slot, &digit) in digits[first..first + count].iter().enumerate() {
                        if digit != 0 {
                            let bucket = (slot << (c - 1)) + digit.unsigned_abs() as usize - 1;
                            buckets.add(bucket, if digit > 0 { *point } else { -*point });
                        }
                    }
                }
            }
            buckets.flush();
            buckets.window_sums(count, 1 << (c - 1))
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

/// The window width that minimises the estimated time of `points` points on `threads`
/// threads, each taking whole windows: per window, one affine addition per point (about
/// six multiplications) and, to sum the 2^(c−1) buckets, two batched affine additions per
/// bucket (about fourteen, see [`Buckets::window_sums`]). A count of windows the threads
/// share unevenly leaves one thread working alone at the end, which the estimate counts.
fn window_bits(points: usize, threads: usize) -> usize {
    (4..=MAX_WINDOW_BITS)
        .min_by_key(|&c| {
            let windows = glv::HALF_BITS / c + 1;
            windows.div_ceil(threads.min(windows)) * (6 * points + (14 << (c - 1)))
        })
        .expect("the range is not empty")
}

/// The scalar's digits in base 2^c, each in [−2^(c−1), 2^(c−1)], lowest first.
fn signed_digits(
    scalar: &BigInteger256,
    c: usize,
    windows: usize,
) -> impl Iterator<Item = i16> + use<> {
    let limbs = scalar.0;
    let mut carry = 0i64;
    (0..windows).map(move |window| {
        let raw = bits(&limbs, window * c, c) as i64 + carry;
        let half = 1i64 << (c - 1);
        carry = (raw > half) as i64;
        (raw - (carry << c)) as i16
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

/// Running sums a window's buckets are summed in, side by side: each takes a run of
/// consecutive buckets, and one step of all of them (across the thread's windows) is one
/// batch of affine additions sharing an inversion.
const LANES: usize = 64;

/// One thread's buckets: affine, filled in batches, with projective overflow.
struct Buckets {
    affine: Vec<G1Affine>,
    /// Where a bucket's projective overflow is in `overflow`, plus one; zero for none. Few
    /// buckets overflow, and a dense vector of projective points (whose zero is not zero
    /// bytes) cost a page fault per 42 buckets to initialise.
    overflow_slot: Vec<u32>,
    /// The overflowing buckets and their projective points.
    overflow: Vec<(usize, G1Projective)>,
    /// Whether a bucket already has an addition in the pending batch.
    pending: Vec<bool>,
    batch: Vec<(usize, G1Affine)>,
    additions: Additions<Fq>,
}

impl Buckets {
    fn new(count: usize) -> Self {
        Self {
            affine: vec![G1Affine::zero(); count],
            overflow_slot: vec![0; count],
            overflow: Vec::new(),
            pending: vec![false; count],
            batch: Vec::with_capacity(BATCH),
            additions: Additions::with_capacity(BATCH),
        }
    }

    fn add(&mut self, bucket: usize, point: G1Affine) {
        if self.pending[bucket] {
            match self.overflow_slot[bucket] {
                0 => {
                    self.overflow.push((bucket, point.into()));
                    self.overflow_slot[bucket] =
                        u32::try_from(self.overflow.len()).expect("fewer buckets than 2^32");
                }
                slot => self.overflow[slot as usize - 1].1 += point,
            }
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

    /// Performs the pending additions with one inversion.
    fn flush(&mut self) {
        let affine = &self.affine;
        self.additions.prepare(
            self.batch
                .iter()
                .map(|(bucket, point)| (&affine[*bucket], point)),
        );
        for (i, &(bucket, point)) in self.batch.iter().enumerate() {
            self.pending[bucket] = false;
            let sum = &mut self.affine[bucket];
            *sum = self.additions.finish(i, sum, &point);
        }
        self.batch.clear();
    }

    /// For each of `windows` windows of `size` buckets, `Σ (j + 1)·bucket[j]`, once every
    /// addition is flushed.
    ///
    /// Running sums, as usual, but `LANES` of them per window, each over a run of `size /
    /// LANES` buckets: lane l's sums give `T_l = Σ (t + 1)·bucket[lS + t]` and `R_l = Σ
    /// bucket[lS + t]`, and the window's sum is `Σ T_l + S·Σ l·R_l`. The lanes' steps are
    /// batches of affine additions (about seven multiplications each), where one running
    /// sum had to add projectively (a mixed and a projective addition per bucket, about
    /// twenty-five).
    fn window_sums(&mut self, windows: usize, size: usize) -> Vec<G1Projective> {
        self.fold_overflow();
        let lanes = size.min(LANES);
        let run = size / lanes;
        // Lane i (across the thread's windows) starts at bucket i·run.
        let mut running = vec![G1Affine::zero(); windows * lanes];
        let mut totals = running.clone();
        for t in (0..run).rev() {
            let affine = &self.affine;
            self.additions.prepare(
                running
                    .iter()
                    .enumerate()
                    .map(|(lane, sum)| (sum, &affine[lane * run + t])),
            );
            for (lane, sum) in running.iter_mut().enumerate() {
                *sum = self.additions.finish(lane, sum, &affine[lane * run + t]);
            }
            self.additions.prepare(totals.iter().zip(&running));
            for (i, (total, sum)) in totals.iter_mut().zip(&running).enumerate() {
                *total = self.additions.finish(i, total, sum);
            }
        }
        running
            .chunks_exact(lanes)
            .zip(totals.chunks_exact(lanes))
            .map(|(running, totals)| {
                // Σ l·R_l by running sums over the lanes, then S times it.
                let mut lanes_running = G1Projective::zero();
                let mut weighted = G1Projective::zero();
                for sum in running[1..].iter().rev() {
                    lanes_running += sum;
                    weighted += lanes_running;
                }
                for _ in 0..run.trailing_zeros() {
                    weighted.double_in_place();
                }
                totals.iter().fold(weighted, |window, total| window + total)
            })
            .collect()
    }

    /// Adds each overflowing bucket's projective point into its affine one.
    fn fold_overflow(&mut self) {
        if self.overflow.is_empty() {
            return;
        }
        let points: Vec<G1Projective> = self.overflow.iter().map(|(_, point)| *point).collect();
        let points = G1Projective::normalize_batch(&points);
        let affine = &self.affine;
        self.additions.prepare(
            self.overflow
                .iter()
                .zip(&points)
                .map(|((bucket, _), point)| (&affine[*bucket], point)),
        );
        for (i, ((bucket, _), point)) in self.overflow.iter().zip(&points).enumerate() {
            let sum = &mut self.affine[*bucket];
            *sum = self.additions.finish(i, sum, point);
            self.overflow_slot[*bucket] = 0;
        }
        self.overflow.clear();
    }
}

/// How one affine addition `p + q` goes, decided before its batch's shared inversion.
#[derive(Clone, Copy)]
enum Step {
    /// Distinct x: the chord.
    Chord,
    /// The same point: the tangent.
    Tangent,
    /// `q = −p` (or a pair no two curve points of prime order make): the point at
    /// infinity.
    Cancel,
    /// One of them is the point at infinity: the other.
    Other,
}

impl Step {
    /// The step for `p + q` and the denominator of its slope (one where there is none,
    /// so that the batch's inversion never meets a zero).
    #[inline(always)]
    fn of<F: InlineArith, P: SWCurveConfig<BaseField = F>>(
        p: &Affine<P>,
        q: &Affine<P>,
    ) -> (Self, F) {
        if p.is_zero() || q.is_zero() {
            (Step::Other, F::one())
        } else if p.x != q.x {
            let mut run = q.x;
            run.sub_inline(&p.x);
            (Step::Chord, run)
        } else if p.y == -q.y || p.y.is_zero() {
            (Step::Cancel, F::one())
        } else {
            (Step::Tangent, p.y.double())
        }
    }

    /// `p + q`, given the inverse of the denominator [`Step::of`] gave.
    #[inline(always)]
    fn finish<F: InlineArith, P: SWCurveConfig<BaseField = F>>(
        self,
        p: &Affine<P>,
        q: &Affine<P>,
        inverse: &F,
    ) -> Affine<P> {
        let mut slope = match self {
            Step::Chord => {
                let mut rise = q.y;
                rise.sub_inline(&p.y);
                rise
            }
            Step::Tangent => {
                let square = p.x.square();
                square.double() + square + P::COEFF_A
            }
            Step::Cancel => return Affine::identity(),
            Step::Other => return if p.is_zero() { *q } else { *p },
        };
        slope.mul_inline(inverse);
        let mut x = slope;
        x.square_inline();
        x.sub_inline(&p.x);
        x.sub_inline(&q.x);
        let mut y = p.x;
        y.sub_inline(&x);
        y.mul_inline(&slope);
        y.sub_inline(&p.y);
        Affine::new_unchecked(x, y)
    }
}

/// One batch of affine additions `p + q` that share one inversion: each addition's step
/// and the inverse of its denominator, with their scratch space, reused batch to batch.
pub(super) struct Additions<F> {
    steps: Vec<Step>,
    denominators: Vec<F>,
    products: Vec<F>,
}

impl<F: InlineArith> Additions<F> {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            steps: Vec::with_capacity(capacity),
            denominators: Vec::with_capacity(capacity),
            products: Vec::with_capacity(capacity),
        }
    }

    /// Starts a batch of the additions `pairs`, in order.
    #[inline(always)]
    pub(super) fn prepare<'a, P: SWCurveConfig<BaseField = F>>(
        &mut self,
        pairs: impl Iterator<Item = (&'a Affine<P>, &'a Affine<P>)>,
    ) {
        self.steps.clear();
        self.denominators.clear();
        for (p, q) in pairs {
            let (step, denominator) = Step::of(p, q);
            self.steps.push(step);
            self.denominators.push(denominator);
        }
        invert_all(&mut self.denominators, &mut self.products);
    }

    /// Addition `i` of the batch, `p + q`: the pair [`Additions::prepare`] was given.
    #[inline(always)]
    pub(super) fn finish<P: SWCurveConfig<BaseField = F>>(
        &self,
        i: usize,
        p: &Affine<P>,
        q: &Affine<P>,
    ) -> Affine<P> {
        self.steps[i].finish(p, q, &self.denominators[i])
    }
}

/// Replaces every (nonzero) element by its inverse, with one field inversion.
fn invert_all<F: InlineArith>(values: &mut [F], products: &mut Vec<F>) {
    products.clear();
    let mut product = F::one();
    for value in values.iter() {
        products.push(product);
        product.mul_inline(value);
    }
    let mut inverse = product.inverse().expect("no denominator is zero");
    for (value, before) in values.iter_mut().zip(products.iter()).rev() {
        let mut next = inverse;
        next.mul_inline(value);
        inverse.mul_inline(before);
        *value = inverse;
        inverse = next;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use ark_bn254::Fr;
    use ark_ec::VariableBaseMSM;
    use ark_ff::{One, PrimeField, UniformRand};
    use rand_core::OsRng;

    use super::*;

    /// Bits of BN254's scalar field modulus: every canonical scalar is below 2^254.
    const SCALAR_BITS: usize = 254;

    pub(in crate::proof::groth16) fn reference(
        bases: &[G1Affine],
        scalars: &[BigInteger256],
    ) -> G1Projective {
        G1Projective::msm_bigint(bases, scalars)
    }

    pub(in crate::proof::groth16) fn random_points(count: usize) -> Vec<G1Affine> {
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
        for c in 4..=MAX_WINDOW_BITS {
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
        for c in 4..=MAX_WINDOW_BITS {
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

    /// What a damaged proving key can hold: y = 0 (a tangent with no slope), and the same
    /// x with unrelated y, among curve points.
    pub(in crate::proof::groth16) fn damaged_points(count: usize) -> Vec<G1Affine> {
        let point = random_points(1)[0];
        let flat = G1Affine::new_unchecked(point.x, Fq::zero());
        let other = G1Affine::new_unchecked(point.x, point.y.double());
        [flat, flat, point, flat, other, point]
            .into_iter()
            .cycle()
            .take(count)
            .collect()
    }

    #[test]
    fn points_off_the_curve_give_a_wrong_sum_never_a_panic() {
        let bases = damaged_points(3000);
        let scalars: Vec<_> = (0..bases.len())
            .map(|i| Fr::from(1u64 << (i % 20)).into_bigint())
            .collect();
        let _ = msm(&bases, &scalars);
    }
}
