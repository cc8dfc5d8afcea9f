//! The R1CS gadgets behind [`Arith`](super::Arith)'s non-linear primitives, with what each
//! costs in constraints. Every gadget computes its witness from the values of the wires
//! it has already allocated, never from the honest integers alone, so that a changed
//! witness value propagates downstream as a cheating prover's would; each file's tests
//! change every witness value in turn, then every pair together, and check that the
//! constraints refuse the result or that the outputs are unchanged.
//!
//! | primitive | gadget | constraints |
//! | --- | --- | --- |
//! | `a·b` | one product | 1 |
//! | rescale to a clamp of 2^n values | bits of the shifted input, sign, saturation | B + 3, B the input's bits after scaling |
//! | rescale to other clamps | the above and a comparison of the low bits | B + n + 4 |
//! | max of two values in a range of width W | sign bit of the difference | bits(W) + 2 |
//! | lookup in a domain of D ≤ 256 values | two one-hot selectors (16 columns × ⌈D/16⌉ rows), a bilinear form | rows + columns + 1 + rows per table (49 for 256 values) |
//! | reciprocal `round(2^K/x)` | quotient and remainder, both range-checked | bits(q) + 2·bits(2x) + 1 |
//! | inverse square root `⌊2^K/√x⌋` | bracketing `r²x ≤ 2^2K < (r+1)²x` | bits(r) + 2K + 1 + bits(2rx + x) + 3 |

mod compare;
mod divide;
mod lookup;
mod rescale;

pub(crate) use compare::max;
pub(crate) use divide::{inverse_sqrt, reciprocal};
pub(crate) use lookup::lookup;
pub(crate) use rescale::rescale;

use super::r1cs::{R1cs, Wire};

/// The `count` low bits of `x`, which the honest prover knows to lie in `[0, 2^count)`:
/// `count` constraints. The bits above the lowest are allocated and constrained
/// boolean; the lowest is what `x` leaves over them, `x − Σ 2^i·bits[i]`, constrained
/// boolean too. That one constraint both makes the sum equal `x` and bounds it, so no
/// separate equality is needed. The lowest bit, not the top, carries `x`'s combination
/// because the gadgets read the top bits (a sign, saturation) and seldom the lowest: a
/// long combination (a dot product) is then copied into one more row only.
fn bits(cs: &mut R1cs, x: &Wire, count: u32) -> Vec<Wire> {
    if x.value < 0 || (count < 127 && x.value >> count != 0) {
        cs.fail(format!(
            "the value {} does not fit in {count} bits: a range the model promised does not hold",
            x.value
        ));
    }
    if count == 0 {
        cs.enforce_equal(x, &cs.constant_wire(0));
        return Vec::new();
    }
    let upper: Vec<Wire> = (1..count)
        .map(|i| {
            let bit = cs.alloc((x.value >> i) & 1);
            cs.enforce_boolean(&bit);
            bit
        })
        .collect();
    let mut terms: Vec<(i128, &Wire)> = vec![(1, x)];
    terms.extend(
        upper
            .iter()
            .enumerate()
            .map(|(i, bit)| (-(2i128 << i), bit)),
    );
    let lowest = cs.sum(&terms, 0);
    cs.enforce_boolean(&lowest);
    let mut bits = Vec::with_capacity(count as usize);
    bits.push(lowest);
    bits.extend(upper);
    bits
}

/// `Σ 2^i · bits[i]`, free.
fn binary(cs: &R1cs, bits: &[Wire]) -> Wire {
    let terms: Vec<(i128, &Wire)> = bits
        .iter()
        .enumerate()
        .map(|(i, bit)| (1i128 << i, bit))
        .collect();
    cs.sum(&terms, 0)
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::circuit::r1cs::{Change, Mode, R1cs, Tamper, Wire};

    const CHANGES: [Change; 3] = [Change::Add(1), Change::Add(-1), Change::Flip];

    /// Runs `gadget` on `inputs` (allocated as witnesses) honestly, checks that the
    /// constraints hold and returns the outputs; then changes each witness the gadget
    /// allocates (by +1, −1 and 1 − v), lets the change flow through the rest of the
    /// gadget, and checks that no change satisfies the constraints with other outputs.
    /// Returns how many changes the constraints refused.
    pub fn assert_tampering_refused(
        inputs: &[i128],
        gadget: impl Fn(&mut R1cs, &[Wire]) -> Vec<Wire>,
    ) -> (Vec<i128>, usize) {
        let (expected, witnesses) = honest(inputs, &gadget);
        let singles = (inputs.len()..witnesses)
            .flat_map(|index| CHANGES.map(|change| vec![Tamper { index, change }]));
        let refused = refusals(inputs, &gadget, &expected, singles);
        (expected, refused)
    }

    /// As [`assert_tampering_refused`], with every pair of witnesses changed together: a
    /// flag and the value that tests it, a bit and the sum it feeds. Returns how many
    /// pairs of changes the constraints refused.
    pub fn assert_pair_tampering_refused(
        inputs: &[i128],
        gadget: impl Fn(&mut R1cs, &[Wire]) -> Vec<Wire>,
    ) -> (Vec<i128>, usize) {
        let (expected, witnesses) = honest(inputs, &gadget);
        let pairs = (inputs.len()..witnesses).flat_map(|first| {
            (first + 1..witnesses).flat_map(move |second| {
                CHANGES.into_iter().flat_map(move |a| {
                    CHANGES.map(|b| {
                        vec![
                            Tamper {
                                index: first,
                                change: a,
                            },
                            Tamper {
                                index: second,
                                change: b,
                            },
                        ]
                    })
                })
            })
        });
        let refused = refusals(inputs, &gadget, &expected, pairs);
        (expected, refused)
    }

    /// The honest outputs, after checking that the honest witness satisfies every
    /// constraint, and the number of witnesses.
    fn honest(
        inputs: &[i128],
        gadget: &impl Fn(&mut R1cs, &[Wire]) -> Vec<Wire>,
    ) -> (Vec<i128>, usize) {
        let (honest, expected) = run(inputs, &[], gadget);
        assert_eq!(honest.failure(), None, "inputs {inputs:?}");
        assert_eq!(
            honest.first_unsatisfied(),
            None,
            "the honest witness fails for inputs {inputs:?}"
        );
        assert_eq!(
            honest.first_misrecorded(),
            None,
            "the prover would take other values for inputs {inputs:?}"
        );
        (expected, honest.witness_count())
    }

    /// How many of the `tampers` the constraints refuse; panics at one they accept with
    /// outputs other than `expected`.
    fn refusals(
        inputs: &[i128],
        gadget: &impl Fn(&mut R1cs, &[Wire]) -> Vec<Wire>,
        expected: &[i128],
        tampers: impl Iterator<Item = Vec<Tamper>>,
    ) -> usize {
        let mut refused = 0;
        for tamper in tampers {
            let (cs, outputs) = run(inputs, &tamper, gadget);
            if cs.first_unsatisfied().is_some() {
                refused += 1;
            } else {
                assert_eq!(
                    outputs, expected,
                    "inputs {inputs:?}: {tamper:?} satisfies every constraint with other outputs"
                );
            }
        }
        refused
    }

    /// Synthesises `gadget` on `inputs` (allocated as witnesses) with the given changes.
    pub fn run(
        inputs: &[i128],
        tamper: &[Tamper],
        gadget: &impl Fn(&mut R1cs, &[Wire]) -> Vec<Wire>,
    ) -> (R1cs, Vec<i128>) {
        let mut cs = R1cs::new(Mode::Constraints);
        cs.tamper = tamper.to_vec();
        let wires: Vec<Wire> = inputs.iter().map(|&v| cs.alloc(v)).collect();
        let outputs = gadget(&mut cs, &wires);
        let values: Vec<i128> = outputs.iter().map(Wire::value).collect();
        (cs, values)
    }
}
