//! BN254 G1's endomorphism and the split of a scalar into two halves (Gallant, Lambert
//! and Vanstone).
//!
//! φ(x, y) = (β·x, y), β a cube root of unity in the base field, is the multiplication
//! by λ, a cube root of unity in the scalar field: one field multiplication per point.
//! Every scalar k splits as k = k1 + λ·k2 with |k1|, |k2| < 2^129, so `k·P = k1·P +
//! k2·φ(P)`: a sum over twice the points with scalars of half the bits, which a bucket
//! method does in half the windows, and so with half the work of summing its buckets.
//!
//! The split adds to (k, 0) the lattice vector b1·v1 + b2·v2 of the short basis v1 =
//! (n11, n12), v2 = (n21, n22) (ark-bn254's, whose vectors satisfy n_i1 + λ·n_i2 ≡ 0 mod
//! r), where the real c1 = k·|n22|/r and c2 = k·|n12|/r would give exactly (0, 0); b1 and
//! b2 are those rounded down, each found as one product and a shift by a precomputed
//! ⌊2^254·|n|/r⌋. Whatever b1 and b2 are, the halves give back k; rounding down keeps
//! each c − b in [0, 2), so each half is below 2·(|n_i1| + |n_i2|) < 2^129. Arithmetic is
//! modulo 2^256, where both halves, small and signed, come out exactly.

use ark_bn254::{Fq, G1Affine, g1};
use ark_ec::AffineRepr;
use ark_ec::scalar_mul::glv::GLVConfig;
use ark_ff::{BigInt, BigInteger256};

use super::arith::InlineArith;

/// Every half is below 2^HALF_BITS in magnitude.
pub(super) const HALF_BITS: usize = 129;

/// β, with φ(P) = λ·P for ark-bn254's λ (`GLVConfig::LAMBDA`).
const BETA: Fq = <g1::Config as GLVConfig>::ENDO_COEFFS[0];

/// The short basis' entries' magnitudes (all below 2^128). Their signs (n11, n21 and n22
/// negative, n12 positive) are written into [`split`]; a test checks them against
/// ark-bn254's.
const N11: u128 = low_u128(<g1::Config as GLVConfig>::SCALAR_DECOMP_COEFFS[0].1);
const N12: u128 = low_u128(<g1::Config as GLVConfig>::SCALAR_DECOMP_COEFFS[1].1);
const N21: u128 = low_u128(<g1::Config as GLVConfig>::SCALAR_DECOMP_COEFFS[2].1);
const N22: u128 = low_u128(<g1::Config as GLVConfig>::SCALAR_DECOMP_COEFFS[3].1);

/// ⌊2^254·N22/r⌋ and ⌊2^254·N12/r⌋: k times these, shifted down by 254 bits, are c1 and
/// c2 rounded down, or one less (k < r < 2^254, so the constants' own rounding costs less
/// than one).
const G1_ROUNDING: u128 = 0x9333bc0529dcf4b494e63f40c03fd959;
const G2_ROUNDING: u128 = 0xb64748cbb1f82cf5;

const fn low_u128(value: BigInteger256) -> u128 {
    value.0[0] as u128 | (value.0[1] as u128) << 64
}

/// φ(P) = λ·P.
#[inline]
pub(super) fn endomorphism(point: &G1Affine) -> G1Affine {
    if point.is_zero() {
        return *point;
    }
    let mut x = point.x;
    x.mul_inline(&BETA);
    G1Affine::new_unchecked(x, point.y)
}

/// One half of a split scalar: its sign and magnitude (below 2^129).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Half {
    pub(super) negative: bool,
    pub(super) magnitude: BigInteger256,
}

/// `[k1, k2]` with `k = k1 + λ·k2` modulo r, for a canonical scalar `k` (below r).
pub(super) fn split(k: &BigInteger256) -> [Half; 2] {
    let b1 = shifted_product(&k.0, G1_ROUNDING);
    let b2 = shifted_product(&k.0, G2_ROUNDING);
    // (k1, k2) = (k, 0) + b1·(−N11, N12) + b2·(−N21, −N22).
    let k1 = sub(sub(k.0, wide_product(b1, N11)), wide_product(b2, N21));
    let k2 = sub(wide_product(b1, N12), wide_product(b2, N22));
    [k1, k2].map(|value| {
        let negative = value[3] >> 63 == 1;
        Half {
            negative,
            magnitude: BigInt(if negative { negate(value) } else { value }),
        }
    })
}

type Wrapping256 = [u64; 4];

/// ⌊k·g / 2^254⌋, which is below 2^128 for k < 2^254 and g < 2^128.
fn shifted_product(k: &Wrapping256, g: u128) -> u128 {
    let mut product = [0u64; 6];
    for (j, g_limb) in [g as u64, (g >> 64) as u64].into_iter().enumerate() {
        let mut carry = 0u128;
        for (i, k_limb) in k.iter().enumerate() {
            let t = *k_limb as u128 * g_limb as u128 + product[i + j] as u128 + carry;
            product[i + j] = t as u64;
            carry = t >> 64;
        }
        product[4 + j] = carry as u64;
    }
    (product[3] as u128 >> 62) | (product[4] as u128) << 2 | (product[5] as u128) << 66
}

/// `a·b`, 256 bits.
fn wide_product(a: u128, b: u128) -> Wrapping256 {
    let (a0, a1) = (a as u64 as u128, a >> 64);
    let (b0, b1) = (b as u64 as u128, b >> 64);
    let (low, cross0, cross1, high) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let middle = (low >> 64) + (cross0 as u64 as u128) + (cross1 as u64 as u128);
    let top = high + (cross0 >> 64) + (cross1 >> 64) + (middle >> 64);
    [low as u64, middle as u64, top as u64, (top >> 64) as u64]
}

fn add(a: Wrapping256, b: Wrapping256) -> Wrapping256 {
    let mut sum = [0u64; 4];
    let mut carry = 0u128;
    for i in 0..4 {
        let t = a[i] as u128 + b[i] as u128 + carry;
        sum[i] = t as u64;
        carry = t >> 64;
    }
    sum
}

fn negate(a: Wrapping256) -> Wrapping256 {
    add(a.map(|limb| !limb), [1, 0, 0, 0])
}

fn sub(a: Wrapping256, b: Wrapping256) -> Wrapping256 {
    add(a, negate(b))
}

#[cfg(test)]
mod tests {
    use ark_bn254::{Fr, G1Projective};
    use ark_ec::{CurveGroup, PrimeGroup};
    use ark_ff::{BigInteger, Field, One, PrimeField, UniformRand, Zero};
    use rand_core::OsRng;

    use super::*;

    fn field(half: &Half) -> Fr {
        let magnitude = Fr::from_bigint(half.magnitude).expect("below r");
        if half.negative { -magnitude } else { magnitude }
    }

    #[test]
    fn the_basis_signs_are_ark_bn254s() {
        let signs = <g1::Config as GLVConfig>::SCALAR_DECOMP_COEFFS.map(|(plus, _)| plus);
        assert_eq!(signs, [false, true, false, false]);
        for (_, value) in <g1::Config as GLVConfig>::SCALAR_DECOMP_COEFFS {
            assert_eq!(value.0[2..], [0, 0], "every entry fits in 128 bits");
        }
    }

    #[test]
    fn the_rounding_constants_are_the_floors_they_claim() {
        // g = ⌊2^254·n/r⌋ exactly when g·r ≤ 2^254·n < g·r + r.
        let r = Fr::MODULUS;
        for (g, n) in [(G1_ROUNDING, N22), (G2_ROUNDING, N12)] {
            let times_r = |g: u128| {
                let mut product = [0u64; 6];
                for (j, g_limb) in [g as u64, (g >> 64) as u64].into_iter().enumerate() {
                    let mut carry = 0u128;
                    for i in 0..4 {
                        let t = r.0[i] as u128 * g_limb as u128 + product[i + j] as u128 + carry;
                        product[i + j] = t as u64;
                        carry = t >> 64;
                    }
                    product[4 + j] = carry as u64;
                }
                product
            };
            // 2^254·n as six limbs: n's 128 bits from bit 254.
            let shifted = [0, 0, 0, (n as u64) << 62, (n >> 2) as u64, (n >> 66) as u64];
            let below = |a: [u64; 6], b: [u64; 6]| a.iter().rev().cmp(b.iter().rev()).is_le();
            assert!(below(times_r(g), shifted));
            assert!(!below(times_r(g + 1), shifted));
        }
    }

    #[test]
    fn halves_give_back_the_scalar_and_stay_below_2_to_the_129() {
        let lambda = <g1::Config as GLVConfig>::LAMBDA;
        let edges = [
            Fr::zero(),
            Fr::one(),
            -Fr::one(),
            lambda,
            -lambda,
            Fr::from(2u64).inverse().unwrap(),
            Fr::from_bigint(BigInt::from(1u64) << 253).unwrap(),
        ];
        let randoms = (0..20_000).map(|_| Fr::rand(&mut OsRng));
        for k in edges.into_iter().chain(randoms) {
            let [k1, k2] = split(&k.into_bigint());
            assert_eq!(field(&k1) + lambda * field(&k2), k, "{k}");
            for half in [k1, k2] {
                assert!(
                    half.magnitude.num_bits() <= HALF_BITS as u32,
                    "{k}: {half:?}"
                );
                assert!(
                    !half.negative || !half.magnitude.is_zero(),
                    "no negative zero"
                );
            }
        }
    }

    #[test]
    fn the_endomorphism_multiplies_by_lambda() {
        let lambda = <g1::Config as GLVConfig>::LAMBDA;
        for _ in 0..8 {
            let point = (G1Projective::generator() * Fr::rand(&mut OsRng)).into_affine();
            assert_eq!(endomorphism(&point), (point * lambda).into_affine());
        }
        assert!(endomorphism(&G1Affine::zero()).is_zero());
    }
}
