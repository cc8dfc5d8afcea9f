//! Rescale: `y = clamp(⌊(x·m + 2^(k−1)) / 2^k⌋, lo, hi)`.
//!
//! With `u = y_unclamped − lo` and `2^n ≥ hi − lo + 1`, the gadget decomposes
//! `t = x·m + 2^(k−1) − lo·2^k + 2^B` into B+1 bits, B chosen from the input's range so
//! that `0 ≤ t < 2^(B+1)`. Bit B says `u ≥ 0`; bits k..k+n are `u mod 2^n` (`low`); any
//! bit above means `u ≥ 2^n`. When the clamp does not hold exactly 2^n values, `low` is
//! also compared with its size. One zero test of the sum of those reasons says whether
//! `low` is replaced, and by which end of the clamp the sign bit says:
//! `y − lo = low + replaced · (positive·(hi − lo) − low)`. B + 4 constraints for clamps
//! of 2^n values (int8, uint8, ReLU), B + n + 5 for others, B + 2 when the input never
//! reaches above the clamp.

use ark_bn254::Fr;
use ark_ff::{Field, Zero};

use super::{R1cs, Wire, binary, bits};
use crate::circuit::{Range, Rescale, bits_for};

pub(crate) fn rescale(cs: &mut R1cs, x: &Wire, input: Range, rescale: Rescale) -> Wire {
    let (lo, hi) = (rescale.clamp.lo as i128, rescale.clamp.hi as i128);
    let span = hi - lo + 1;
    if span <= 1 {
        return cs.constant_wire(lo);
    }
    let n = bits_for(span - 1);
    let k = rescale.shift as u32;
    let half = if k > 0 { 1i128 << (k - 1) } else { 0 };
    let offset = half - (lo << k);
    let scaled = input.scale(rescale.multiplier);
    let bound = (scaled.lo as i128 + offset)
        .abs()
        .max((scaled.hi as i128 + offset).abs());
    let b = bits_for(bound).max(k + n);
    let t = cs.sum(&[(rescale.multiplier as i128, x)], offset + (1i128 << b));
    let t_bits = bits(cs, &t, b + 1);
    let positive = &t_bits[b as usize];
    let low = binary(cs, &t_bits[k as usize..(k + n) as usize]);
    let high = &t_bits[(k + n) as usize..b as usize];

    // Every reason the output is not `low` is a bit that is 1: a high bit (saturation
    // above), `low ≥ span` (likewise, for clamps that do not hold 2^n values), or
    // `1 − positive` (below). Their sum is a small non-negative integer that is zero
    // exactly when `low` stands; one zero test covers them all.
    let mut reasons: Vec<(i128, &Wire)> = high.iter().map(|bit| (1, bit)).collect();
    let above;
    if span < 1 << n {
        // low ≥ span: the top bit of low − span + 2^n.
        let difference = cs.sum(&[(1, &low)], (1i128 << n) - span);
        above = bits(cs, &difference, n + 1).pop().expect("n + 1 bits");
        reasons.push((1, &above));
    }
    let y = if reasons.is_empty() {
        cs.product(positive, &low)
    } else {
        reasons.push((-1, positive));
        let sum = cs.sum(&reasons, 1);
        // replaced = (sum ≠ 0): sum·inverse = replaced and sum·(1 − replaced) = 0.
        let replaced = cs.alloc((sum.value != 0) as i128);
        let inverse = Fr::from(sum.value).inverse().unwrap_or(Fr::zero());
        let inverse = cs.alloc_field(inverse);
        cs.enforce(&sum, &inverse, &replaced);
        let kept = cs.sum(&[(-1, &replaced)], 1);
        cs.enforce(&sum, &kept, &cs.constant_wire(0));
        // A replaced output is the clamp's top when positive, its bottom otherwise.
        let replacement = cs.sum(&[(span - 1, positive), (-1, &low)], 0);
        let change = cs.product(&replaced, &replacement);
        cs.sum(&[(1, &low), (1, &change)], 0)
    };
    cs.sum(&[(1, &y)], lo)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_pair_tampering_refused, assert_tampering_refused};
    use super::*;
    use crate::circuit::r1cs::Mode;

    fn cases() -> Vec<(Range, Rescale)> {
        let r = |multiplier, shift, lo, hi| Rescale {
            multiplier,
            shift,
            clamp: Range::new(lo, hi),
        };
        vec![
            // requantise an accumulator to int8, and with ReLU to uint8
            (Range::new(-3000, 3000), r(1, 4, -128, 127)),
            (Range::new(-3000, 3000), r(3, 5, 0, 255)),
            // a negative multiplier, a clamp of 7 values (Clip), a pure clamp (ReLU)
            (Range::new(-500, 400), r(-5, 3, -3, 3)),
            (Range::new(-128, 127), Rescale::clamp(Range::new(0, 127))),
            // the clamp is never reached
            (Range::new(-64, 63), r(1, 0, -128, 127)),
        ]
    }

    #[test]
    fn equals_the_reference_on_every_input() {
        for (input, rescale) in cases() {
            for x in input.lo..=input.hi {
                let mut cs = R1cs::new(Mode::Constraints);
                let wire = cs.alloc(x as i128);
                let y = super::rescale(&mut cs, &wire, input, rescale);
                assert_eq!(y.value, rescale.apply(x) as i128, "{rescale:?} at {x}");
                assert_eq!(cs.first_unsatisfied(), None, "{rescale:?} at {x}");
            }
        }
    }

    #[test]
    fn every_changed_witness_is_refused() {
        for (input, rescale) in cases() {
            // Below the clamp, inside it, above it, and the ends of the range.
            for x in [input.lo, -200, -1, 0, 1, 37, 200, input.hi] {
                if !input.contains(x) {
                    continue;
                }
                let (outputs, refused) = assert_tampering_refused(&[x as i128], |cs, w| {
                    vec![super::rescale(cs, &w[0], input, rescale)]
                });
                assert_eq!(outputs, vec![rescale.apply(x) as i128]);
                assert!(refused > 0);
            }
        }
    }

    #[test]
    fn no_two_changed_witnesses_pass_another_output() {
        // The zero test stands for several reasons at once: its flag and its inverse
        // changed together, or a reason bit with either, must still be refused.
        for (input, rescale) in cases() {
            for x in [input.lo, -1, 0, 200, input.hi] {
                if !input.contains(x) {
                    continue;
                }
                let (outputs, refused) = assert_pair_tampering_refused(&[x as i128], |cs, w| {
                    vec![super::rescale(cs, &w[0], input, rescale)]
                });
                assert_eq!(outputs, vec![rescale.apply(x) as i128]);
                assert!(refused > 0);
            }
        }
    }

    #[test]
    fn costs_what_the_documentation_says() {
        let cost = |input: Range, rescale: Rescale| {
            let mut cs = R1cs::new(Mode::Constraints);
            let wire = cs.alloc(0);
            super::rescale(&mut cs, &wire, input, rescale);
            cs.constraint_count()
        };
        // int8 from a 20-bit accumulator: B = 20, B + 4.
        let int8 = Rescale {
            multiplier: 1,
            shift: 8,
            clamp: Range::INT8,
        };
        assert_eq!(cost(Range::new(-(1 << 19), 1 << 19), int8), 20 + 4);
        // A clamp of 7 values (n = 3): B + n + 5.
        let clip = Rescale::clamp(Range::new(0, 6));
        assert_eq!(cost(Range::INT8, clip), 8 + 3 + 5);
        // A clamp the input never exceeds: B + 2.
        let wide = Rescale::clamp(Range::INT8);
        assert_eq!(cost(Range::new(-64, 63), wide), 8 + 2);
    }

    #[test]
    fn a_value_outside_its_promised_range_is_reported() {
        let mut cs = R1cs::new(Mode::Witness);
        let wire = cs.alloc(5000);
        super::rescale(&mut cs, &wire, Range::INT8, Rescale::clamp(Range::INT8));
        assert!(cs.failure().unwrap().contains("does not fit"));
    }
}
