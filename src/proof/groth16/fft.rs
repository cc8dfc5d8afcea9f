//! Radix-2 FFTs over BN254's scalar field, in the two shapes the quotient needs.
//!
//! [`Fft::interpolate`] takes values in natural order to their transform with the inverse
//! roots in bit-reversed order (decimation in frequency); [`Fft::evaluate`] takes
//! coefficients in bit-reversed order to values in natural order (decimation in time).
//! Chained, they move a polynomial between a domain and a coset with no bit-reversal
//! pass between them: whatever is done to the coefficients on the way (a coset's powers,
//! the 1/n of the inverse transform) is done in bit-reversed order too.
//!
//! Each stage's roots are precomputed in one table, made once for all of a proof's
//! transforms, so a butterfly reads its root from memory in order; the transform recurses
//! on halves, which keeps the deeper stages in cache and lets the halves run on two
//! threads. Against ark-poly's iterative transform, which recomputes its roots each call,
//! a domain-to-coset move of 2^15 values took about a quarter less time on one thread.

use ark_bn254::Fr;
use ark_ff::{FftField, Field, One, Zero};
use rayon::prelude::*;

use super::arith::InlineArith;

/// At or below this size a transform runs stage by stage in one thread: 32 KB of values,
/// which stay in the first-level cache.
const IN_CACHE: usize = 1 << 10;
/// At or above this size a stage's butterflies and the two halves run in parallel.
const PARALLEL: usize = 1 << 12;

/// The roots of one domain of `size` = 2^k points.
pub(super) struct Fft {
    size: usize,
    /// `forward[m/2 + j]` = w_m^j for each stage size m (a power of two up to `size`) and
    /// j < m/2, w_m a primitive m-th root of unity, w_m = w^(size/m).
    forward: Vec<Fr>,
    /// The same for the inverse roots.
    inverse: Vec<Fr>,
}

impl Fft {
    /// The transforms on the `size` roots of unity; `None` unless `size` is a power of two
    /// that BN254's scalar field has roots for.
    pub(super) fn new(size: usize) -> Option<Self> {
        if !size.is_power_of_two() {
            return None;
        }
        let root = Fr::get_root_of_unity(size as u64)?;
        let inverse_root = root.inverse()?;
        let (forward, inverse) = rayon::join(
            || stage_roots(root, size),
            || stage_roots(inverse_root, size),
        );
        Some(Self {
            size,
            forward,
            inverse,
        })
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// `values` (natural order, length `size`) become `Σ_j values[j]·w^(−j·i)` at
    /// position `bit_reversed(i)`: n times the coefficients of the polynomial that takes
    /// those values on the domain, in bit-reversed order.
    pub(super) fn interpolate(&self, values: &mut [Fr]) {
        assert_eq!(values.len(), self.size, "one value per point of the domain");
        decimate_in_frequency(values, &self.inverse);
    }

    /// `coefficients` (bit-reversed order, length `size`) become the polynomial's values
    /// on the domain, in natural order.
    pub(super) fn evaluate(&self, coefficients: &mut [Fr]) {
        assert_eq!(coefficients.len(), self.size, "one coefficient per point");
        decimate_in_time(coefficients, &self.forward);
    }

    /// The position `i` takes in bit-reversed order.
    pub(super) fn bit_reversed(&self, i: usize) -> usize {
        bit_reversed(i, self.size)
    }
}

/// The position `i` takes in bit-reversed order among `size` (a power of two).
fn bit_reversed(i: usize, size: usize) -> usize {
    match size {
        0 | 1 => i,
        size => i.reverse_bits() >> (usize::BITS - size.trailing_zeros()),
    }
}

/// `first · step^i` at position `bit_reversed(i)`, for i < `size` (a power of two): what
/// multiplies bit-reversed coefficients to move their polynomial onto a coset.
pub(super) fn bit_reversed_powers(size: usize, first: Fr, step: Fr) -> Vec<Fr> {
    let mut powers = vec![Fr::zero(); size];
    let mut power = first;
    for i in 0..size {
        powers[bit_reversed(i, size)] = power;
        power.mul_inline(&step);
    }
    powers
}

/// The table [`Fft::forward`] describes, for a primitive `size`-th root `root`.
fn stage_roots(root: Fr, size: usize) -> Vec<Fr> {
    let mut table = vec![Fr::zero(); size.max(2)];
    let half = size / 2;
    let mut power = Fr::one();
    for slot in &mut table[half..size] {
        *slot = power;
        power.mul_inline(&root);
    }
    // w_(m/2)^j = w_m^(2j): each stage's roots are every other root of the stage above.
    let mut m = half;
    while m >= 2 {
        for j in 0..m / 2 {
            table[m / 2 + j] = table[m + 2 * j];
        }
        m /= 2;
    }
    table
}

/// `(u, v) ← (u + v, (u − v)·w)` across the two halves of a block. A block's first root
/// is 1 and is not multiplied by: about one product in seven of a transform of 2^15.
#[inline(always)]
fn frequency_butterflies(low: &mut [Fr], high: &mut [Fr], roots: &[Fr], starts_block: bool) {
    let mut pairs = low.iter_mut().zip(high.iter_mut()).zip(roots);
    if starts_block && let Some(((u, v), _)) = pairs.next() {
        unit_butterfly(u, v);
    }
    for ((u, v), root) in pairs {
        let mut difference = *u;
        difference.sub_inline(v);
        u.add_inline(v);
        difference.mul_inline(root);
        *v = difference;
    }
}

/// `(u, v) ← (u + v·w, u − v·w)` across the two halves of a block, the first root (1)
/// not multiplied by.
#[inline(always)]
fn time_butterflies(low: &mut [Fr], high: &mut [Fr], roots: &[Fr], starts_block: bool) {
    let mut pairs = low.iter_mut().zip(high.iter_mut()).zip(roots);
    if starts_block && let Some(((u, v), _)) = pairs.next() {
        unit_butterfly(u, v);
    }
    for ((u, v), root) in pairs {
        let mut twiddled = *v;
        twiddled.mul_inline(root);
        let mut difference = *u;
        difference.sub_inline(&twiddled);
        u.add_inline(&twiddled);
        *v = difference;
    }
}

/// `(u, v) ← (u + v, u − v)`: either butterfly where the root is 1.
#[inline(always)]
fn unit_butterfly(u: &mut Fr, v: &mut Fr) {
    let mut difference = *u;
    difference.sub_inline(v);
    u.add_inline(v);
    *v = difference;
}

/// One stage across a block of size m: its halves, with the stage's m/2 roots.
fn stage(
    block: &mut [Fr],
    table: &[Fr],
    butterflies: impl Fn(&mut [Fr], &mut [Fr], &[Fr], bool) + Sync,
) {
    let m = block.len();
    let roots = &table[m / 2..m];
    let (low, high) = block.split_at_mut(m / 2);
    if m >= PARALLEL {
        low.par_chunks_mut(IN_CACHE)
            .zip(high.par_chunks_mut(IN_CACHE))
            .zip(roots.par_chunks(IN_CACHE))
            .enumerate()
            .for_each(|(chunk, ((low, high), roots))| butterflies(low, high, roots, chunk == 0));
    } else {
        butterflies(low, high, roots, true);
    }
}

/// Natural order in, bit-reversed out: a stage, then the halves.
fn decimate_in_frequency(values: &mut [Fr], table: &[Fr]) {
    let m = values.len();
    if m <= IN_CACHE {
        let mut size = m;
        while size >= 2 {
            for block in values.chunks_exact_mut(size) {
                stage(block, table, frequency_butterflies);
            }
            size /= 2;
        }
        return;
    }
    stage(values, table, frequency_butterflies);
    let (low, high) = values.split_at_mut(m / 2);
    rayon::join(
        || decimate_in_frequency(low, table),
        || decimate_in_frequency(high, table),
    );
}

/// Bit-reversed order in, natural out: the halves, then a stage.
fn decimate_in_time(values: &mut [Fr], table: &[Fr]) {
    let m = values.len();
    if m <= IN_CACHE {
        let mut size = 2;
        while size <= m {
            for block in values.chunks_exact_mut(size) {
                stage(block, table, time_butterflies);
            }
            size *= 2;
        }
        return;
    }
    let (low, high) = values.split_at_mut(m / 2);
    rayon::join(
        || decimate_in_time(low, table),
        || decimate_in_time(high, table),
    );
    stage(values, table, time_butterflies);
}

#[cfg(test)]
mod tests {
    use ark_ff::UniformRand;
    use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
    use rand_core::OsRng;

    use super::*;

    /// Sizes on both sides of the in-cache and parallel thresholds, and the trivial ones.
    const SIZES: [usize; 7] = [1, 2, 8, IN_CACHE, 2 * IN_CACHE, PARALLEL, 4 * PARALLEL];

    #[test]
    fn equals_ark_poly_up_to_the_order_of_its_output() {
        for size in SIZES {
            let fft = Fft::new(size).unwrap();
            let domain = Radix2EvaluationDomain::<Fr>::new(size).unwrap();
            let values: Vec<Fr> = (0..size).map(|_| Fr::rand(&mut OsRng)).collect();

            let mut coefficients = domain.ifft(&values);
            let mut transformed = values.clone();
            fft.interpolate(&mut transformed);
            let n = Fr::from(size as u64);
            for (i, coefficient) in coefficients.iter().enumerate() {
                assert_eq!(transformed[fft.bit_reversed(i)], *coefficient * n, "{size}");
            }

            // Back from bit-reversed coefficients to the values.
            for (i, coefficient) in coefficients.clone().into_iter().enumerate() {
                transformed[fft.bit_reversed(i)] = coefficient;
            }
            fft.evaluate(&mut transformed);
            assert_eq!(transformed, values, "{size}");
            domain.fft_in_place(&mut coefficients);
            assert_eq!(coefficients, values, "{size}");
        }
    }

    #[test]
    fn moves_a_polynomial_onto_a_coset_as_ark_poly_does() {
        for size in SIZES {
            let fft = Fft::new(size).unwrap();
            let domain = Radix2EvaluationDomain::<Fr>::new(size).unwrap();
            let shift = Fr::rand(&mut OsRng);
            let coset = domain.get_coset(shift).unwrap();
            let values: Vec<Fr> = (0..size).map(|_| Fr::rand(&mut OsRng)).collect();
            let expected = coset.fft(&domain.ifft(&values));

            let mut moved = values.clone();
            fft.interpolate(&mut moved);
            let n_inverse = Fr::from(size as u64).inverse().unwrap();
            let powers = bit_reversed_powers(size, n_inverse, shift);
            moved.iter_mut().zip(&powers).for_each(|(c, p)| *c *= p);
            fft.evaluate(&mut moved);
            assert_eq!(moved, expected, "{size}");
        }
    }

    #[test]
    fn refuses_sizes_it_has_no_roots_for() {
        assert!(Fft::new(0).is_none());
        assert!(Fft::new(3).is_none());
        assert!(Fft::new(1 << 29).is_none());
    }
}
