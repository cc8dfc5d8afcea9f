//! Division by a value: the reciprocal `q = round(2^K / x)` that softmax normalises with,
//! and the inverse square root `r = ⌊2^K / √x⌋` of layer normalisation. Both run once per
//! normalised row, so their cost is spread over its elements.
//!
//! - Reciprocal: `2^(K+1) + x = 2·q·x + ρ` with `0 ≤ ρ < 2x`; `q` and `ρ` range-checked,
//!   which makes the equation hold over the integers (nothing can wrap). bits(q) +
//!   2·bits(2x) + 1 constraints.
//! - Inverse square root: `r²·x ≤ 2^2K < (r+1)²·x`, both sides range-checked, `r` too.
//!   bits(r) + bits(2^2K) + bits(2rx + x) + 3 constraints.

use super::{R1cs, Wire, bits};
use crate::circuit::{Range, bits_for};

pub(crate) fn reciprocal(cs: &mut R1cs, x: &Wire, input: Range, k: u32) -> Wire {
    let in_range = input.lo >= 1 && x.value >= input.lo as i128 && x.value <= input.hi as i128;
    if !in_range {
        cs.fail(format!(
            "reciprocal of {} outside {input}: a range the model promised does not hold",
            x.value
        ));
    }
    let q_max = crate::circuit::reciprocal(input.lo.max(1), k);
    let q_value = if in_range {
        ((1i128 << (k + 1)) + x.value) / (2 * x.value)
    } else {
        0
    };
    let q = cs.alloc(q_value);
    bits(cs, &q, bits_for(q_max as i128));
    let qx = cs.product(&q, x);
    let remainder = cs.sum(&[(1, x), (-2, &qx)], 1i128 << (k + 1));
    let width = bits_for(2 * input.hi as i128 - 1);
    bits(cs, &remainder, width);
    let slack = cs.sum(&[(2, x), (-1, &remainder)], -1);
    bits(cs, &slack, width);
    q
}

pub(crate) fn inverse_sqrt(cs: &mut R1cs, x: &Wire, input: Range, k: u32) -> Wire {
    let in_range = input.lo >= 1 && x.value >= input.lo as i128 && x.value <= input.hi as i128;
    if !in_range {
        cs.fail(format!(
            "inverse square root of {} outside {input}: a range the model promised does not hold",
            x.value
        ));
    }
    let r_max = crate::circuit::inverse_sqrt(input.lo.max(1), k) as i128;
    let r_value = if in_range {
        crate::circuit::inverse_sqrt(x.value as i64, k) as i128
    } else {
        0
    };
    let r = cs.alloc(r_value);
    bits(cs, &r, bits_for(r_max));
    let r_squared = cs.product(&r, &r);
    let below = cs.product(&r_squared, x);
    let rx = cs.product(&r, x);
    let target = 1i128 << (2 * k);
    // 2^2K − r²x ≥ 0
    let under = cs.sum(&[(-1, &below)], target);
    bits(cs, &under, bits_for(target));
    // (r+1)²x − 2^2K − 1 = r²x + 2rx + x − 2^2K − 1 ≥ 0
    let over = cs.sum(&[(1, &below), (2, &rx), (1, x)], -target - 1);
    bits(
        cs,
        &over,
        bits_for(2 * r_max * input.hi as i128 + input.hi as i128),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_pair_tampering_refused, assert_tampering_refused};
    use super::*;
    use crate::circuit::r1cs::Mode;

    #[test]
    fn reciprocal_equals_the_reference() {
        let input = Range::new(1, 600);
        for x in input.lo..=input.hi {
            let mut cs = R1cs::new(Mode::Constraints);
            let wire = cs.alloc(x as i128);
            let q = reciprocal(&mut cs, &wire, input, 12);
            assert_eq!(q.value, crate::circuit::reciprocal(x, 12) as i128);
            assert_eq!(cs.first_unsatisfied(), None, "{x}");
        }
    }

    #[test]
    fn inverse_sqrt_equals_the_reference() {
        let input = Range::new(1, 3000);
        for x in input.lo..=input.hi {
            let mut cs = R1cs::new(Mode::Constraints);
            let wire = cs.alloc(x as i128);
            let r = inverse_sqrt(&mut cs, &wire, input, 10);
            assert_eq!(r.value, crate::circuit::inverse_sqrt(x, 10) as i128);
            assert_eq!(cs.first_unsatisfied(), None, "{x}");
        }
    }

    #[test]
    fn every_changed_witness_is_refused() {
        let input = Range::new(1 << 15, 16 << 15);
        for x in [input.lo, 70_001, input.hi] {
            let (q, refused) = assert_tampering_refused(&[x as i128], |cs, w| {
                vec![reciprocal(cs, &w[0], input, 36)]
            });
            assert_eq!(q[0], crate::circuit::reciprocal(x, 36) as i128);
            assert!(refused > 0);
            let (r, refused) = assert_tampering_refused(&[x as i128], |cs, w| {
                vec![inverse_sqrt(cs, &w[0], input, 20)]
            });
            assert_eq!(r[0], crate::circuit::inverse_sqrt(x, 20) as i128);
            assert!(refused > 0);
        }
    }

    #[test]
    fn no_two_changed_witnesses_pass_another_output() {
        let input = Range::new(1, 600);
        for x in [1, 77, 600] {
            let (q, _) = assert_pair_tampering_refused(&[x as i128], |cs, w| {
                vec![reciprocal(cs, &w[0], input, 12)]
            });
            assert_eq!(q[0], crate::circuit::reciprocal(x, 12) as i128);
            let (r, _) = assert_pair_tampering_refused(&[x as i128], |cs, w| {
                vec![inverse_sqrt(cs, &w[0], input, 10)]
            });
            assert_eq!(r[0], crate::circuit::inverse_sqrt(x, 10) as i128);
        }
    }

    #[test]
    fn cost_what_the_documentation_says() {
        let cost = |gadget: fn(&mut R1cs, &Wire, Range, u32) -> Wire, input: Range, k| {
            let mut cs = R1cs::new(Mode::Constraints);
            let wire = cs.alloc(input.lo as i128);
            gadget(&mut cs, &wire, input, k);
            cs.constraint_count()
        };
        let input = Range::new(1, 255);
        // q ≤ 2^12 (13 bits), 2x < 2^9: bits(q) + 2·bits(2x) + 1.
        assert_eq!(cost(reciprocal, input, 12), 13 + 2 * 9 + 1);
        // r ≤ 2^10 (11 bits), 2^20 (21 bits): bits(r) + 2K + 1 + bits(2rx + x) + 3.
        let two_rx_plus_x = bits_for(2 * 1024 * 255 + 255);
        assert_eq!(
            cost(inverse_sqrt, input, 10),
            11 + 21 + two_rx_plus_x as usize + 3
        );
    }
}
