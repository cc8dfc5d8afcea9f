//! Rescale: `y = clamp(⌊(x·m + 2^(k−1)) / 2^k⌋, lo, hi)`.
//!
//! With `u = y_unclamped − lo` and `2^n ≥ hi − lo + 1`, the gadget decomposes
//! `t = x·m + 2^(k−1) − lo·2^k + 2^B` into B+1 bits, B chosen from the input's range so
//! that `0 ≤ t < 2^(B+1)`. Bit B says `u ≥ 0`; bits k..k+n are `u mod 2^n` (`low`); any
//! bit above means `u ≥ 2^n`. When the clamp does not hold exactly 2^n values, `low` is
//! also compared with its size. The sum S of those reasons is zero exactly when `low`
//! stands; otherwise the output is the end of the clamp the sign bit says. Two
//! constraints choose: `S · (y − lo − positive·(hi − lo)) = 0` and `S · slack = y − lo −
//! low`. B + 3 constraints for clamps of 2^n values (int8, uint8, ReLU), B + n + 4 for
//! others, B + 2 when the input never reaches above the clamp. A rescale that is the
//! identity on its input's range (no shift, no multiplier, a clamp the input stays
//! within) costs nothing.

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
    if rescale.multiplier == 1
        && rescale.shift == 0
        && rescale.clamp.contains(input.lo)
        && rescale.clamp.contains(input.hi)
    {
        // The identity on the input's range, which the gadgets that made the input
        // already enforce: a sum kept whole for an output layer.
        if !(input.lo as i128..=input.hi as i128).contains(&x.value) {
            cs.fail(format!(
                "the value {} does not fit in {input}: a range the model promised does not hold",
                x.value
            ));
        }
        return cs.sum(&[(1, x)], 0);
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
        // The output is `low` where no reason holds (the sum is zero) and the clamp's end
        // the sign picks where one does. `sum · (y − end) = 0` pins y to that end when the
        // sum is not zero; `sum · slack = y − low` pins it to `low` when the sum is zero,
        // and the prover's slack absorbs the difference otherwise. Two constraints, where
        // a zero test and a product took three.
        let end = cs.sum(&[(span - 1, positive)], 0);
        let y = cs.alloc(if sum.value == 0 { low.value } else { end.value });
        // The sum stands in B, where its bits already are: the output and the slack (a
        // full-size field element) then cost nothing in the prover's G2 sum.
        let beyond_end = cs.sum(&[(1, &y), (-1, &end)], 0);
        cs.enforce(&beyond_end, &sum, &cs.constant_wire(0));
        let beyond_low = cs.sum(&[(1, &y), (-1, &low)], 0);
        let slack = Fr::from(sum.value)
            .inverse()
            .map_or(Fr::zero(), |inverse| inverse * Fr::from(beyond_low.value));
        let slack = cs.alloc_field(slack);
        cs.enforce(&slack, &sum, &beyond_low);
        y
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
            // the clamp is never reached; reached by one bit only
            (Range::INT8, r(1, 1, -128, 127)),
            (Range::new(-2000, 2000), r(1, 2, 0, 255)),
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
        // One sum stands for several reasons at once: the output and its slack changed
        // together, or a reason bit with either, must still be refused.
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
        // int8 from a 20-bit accumulator: B = 20, B + 3.
        let int8 = Rescale {
            multiplier: 1,
            shift: 8,
            clamp: Range::INT8,
        };
        assert_eq!(cost(Range::new(-(1 << 19), 1 << 19), int8), 20 + 3);
        // A clamp of 7 values (n = 3): B + n + 4.
        let clip = Rescale::clamp(Range::new(0, 6));
        assert_eq!(cost(Range::INT8, clip), 8 + 3 + 4);
        // A clamp the input never exceeds (B = 9 for the offset 2^8 + 1): B + 2.
        let wide = Rescale {
            multiplier: 1,
            shift: 1,
            clamp: Range::INT8,
        };
        assert_eq!(cost(Range::INT8, wide), 9 + 2);
        // One bit above the clamp (k = 2, n = 8, B = 11): B + 3 too.
        let relu = Rescale {
            multiplier: 1,
            shift: 2,
            clamp: Range::UINT8,
        };
        assert_eq!(cost(Range::new(-2000, 2000), relu), 11 + 3);
        // The identity on the input's range: nothing.
        let sum = Rescale::clamp(Range::new(0, 16320));
        assert_eq!(cost(Range::new(0, 16320), sum), 0);
    }

    #[test]
    fn a_value_outside_its_promised_range_is_reported() {
        // Through the bits, and through the identity that has none.
        for clamp in [Range::UINT8, Range::INT8] {
            let mut cs = R1cs::new(Mode::Witness);
            let wire = cs.alloc(5000);
            super::rescale(&mut cs, &wire, Range::INT8, Rescale::clamp(clamp));
            assert!(cs.failure().unwrap().contains("does not fit"), "{clamp}");
        }
    }
}
