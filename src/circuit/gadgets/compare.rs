//! Max of two values in a known range: the top bit of `a − b + 2^m` (with `2^m` above the
//! range's width) says `a ≥ b`, and `max = b + [a ≥ b]·(a − b)`. bits(width) + 2
//! constraints: 10 for int8 or uint8 values.

use super::{R1cs, Wire, bits};
use crate::circuit::{Range, bits_for};

pub(crate) fn max(cs: &mut R1cs, a: &Wire, b: &Wire, range: Range) -> Wire {
    let m = bits_for(range.hi as i128 - range.lo as i128);
    let shifted = cs.sum(&[(1, a), (-1, b)], 1i128 << m);
    let a_wins = bits(cs, &shifted, m + 1).pop().expect("m + 1 bits");
    let difference = cs.sum(&[(1, a), (-1, b)], 0);
    let gain = cs.product(&a_wins, &difference);
    cs.sum(&[(1, b), (1, &gain)], 0)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_pair_tampering_refused, assert_tampering_refused};
    use super::*;
    use crate::circuit::r1cs::Mode;

    #[test]
    fn equals_the_reference_on_every_pair() {
        let range = Range::new(-20, 20);
        for a in range.lo..=range.hi {
            for b in range.lo..=range.hi {
                let mut cs = R1cs::new(Mode::Constraints);
                let (wa, wb) = (cs.alloc(a as i128), cs.alloc(b as i128));
                let y = max(&mut cs, &wa, &wb, range);
                assert_eq!(y.value, a.max(b) as i128);
                assert_eq!(cs.first_unsatisfied(), None);
            }
        }
    }

    #[test]
    fn every_changed_witness_is_refused() {
        for (a, b) in [(-128, 127), (127, -128), (5, 5), (0, -1), (-7, 3)] {
            let gadget = |cs: &mut R1cs, w: &[Wire]| vec![max(cs, &w[0], &w[1], Range::INT8)];
            let (outputs, refused) = assert_tampering_refused(&[a, b], gadget);
            assert_eq!(outputs, vec![a.max(b)]);
            assert!(refused > 0);
            let (outputs, refused) = assert_pair_tampering_refused(&[a, b], gadget);
            assert_eq!(outputs, vec![a.max(b)]);
            assert!(refused > 0);
        }
    }

    #[test]
    fn costs_ten_constraints_for_int8() {
        let mut cs = R1cs::new(Mode::Constraints);
        let (a, b) = (cs.alloc(1), cs.alloc(2));
        max(&mut cs, &a, &b, Range::INT8);
        assert_eq!(cs.constraint_count(), 10);
    }
}
