//! The fixed-point evaluator: [`Arith`] on plain integers. This is the reference semantics
//! of a quantised model; the R1CS gadgets are tested to compute exactly these values.

use super::{Arith, Range, Rescale, inverse_sqrt, reciprocal};

/// Evaluates on `i64` values. Ranges are the model's promises: a value outside its range
/// means the model's range analysis is wrong, and is caught in debug builds.
#[derive(Debug, Default)]
pub struct Integers;

impl Arith for Integers {
    type Value = i64;

    fn constant(&mut self, value: i64) -> i64 {
        value
    }

    fn linear(&mut self, terms: &[(i64, &i64)], constant: i64) -> i64 {
        terms.iter().fold(constant, |sum, &(c, &v)| sum + c * v)
    }

    fn mul(&mut self, a: &i64, b: &i64) -> i64 {
        a * b
    }

    fn rescale(&mut self, x: &i64, input: Range, rescale: Rescale) -> i64 {
        debug_assert!(input.contains(*x), "{x} outside {input}");
        rescale.apply(*x)
    }

    fn max(&mut self, a: &i64, b: &i64, range: Range) -> i64 {
        debug_assert!(range.contains(*a) && range.contains(*b));
        *a.max(b)
    }

    fn lookup(&mut self, x: &i64, domain: Range, tables: &[&[i64]]) -> Vec<i64> {
        debug_assert!(domain.contains(*x), "{x} outside {domain}");
        let index = (x - domain.lo) as usize;
        tables.iter().map(|table| table[index]).collect()
    }

    fn reciprocal(&mut self, x: &i64, input: Range, bits: u32) -> i64 {
        debug_assert!(input.contains(*x) && input.lo >= 1);
        reciprocal(*x, bits)
    }

    fn inverse_sqrt(&mut self, x: &i64, input: Range, bits: u32) -> i64 {
        debug_assert!(input.contains(*x) && input.lo >= 1);
        inverse_sqrt(*x, bits)
    }
}
