//! The arithmetic that quantised models are written in, and its two interpreters.
//!
//! A model's operators are written once, against [`Arith`]: a small machine over integers
//! with linear combinations (free), products, and a handful of non-linear primitives
//! (rescale, max, table lookup, reciprocal, inverse square root). Two interpreters run
//! that one description:
//!
//! - [`integers::Integers`] computes on plain integers: the fixed-point evaluator that
//!   miners and validators use;
//! - [`r1cs::R1cs`] allocates variables and writes the rank-1 constraints that prove the
//!   same computation, with the witness computed alongside.
//!
//! Because both run the same operator code, the evaluator cannot drift from the circuit;
//! each primitive's R1CS gadget is tested against the integer reference functions here
//! ([`Rescale::apply`], [`reciprocal`], [`inverse_sqrt`]) over whole ranges, and against
//! tampering (see `gadgets`). A future backend with real lookups (a transparent system)
//! implements the same trait with its own gadgets.

pub mod integers;
pub mod r1cs;

pub(crate) mod gadgets;

/// The closed range of integer values a tensor can hold. Every value in a model has one,
/// derived from the operators by interval arithmetic; the gadgets size their bit
/// decompositions from it, which is what makes a value's range part of the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range {
    pub lo: i64,
    pub hi: i64,
}

/// The revision of the constraints a model compiles to. Keys record it: a key made for
/// other constraints cannot prove or verify this build's circuits, so it is refused when
/// read, by name, instead of failing every proof. Raise it whenever a gadget or an
/// operator writes different constraints for the same model.
pub const REVISION: u16 = 3;

/// Ranges and intermediate values stay below this magnitude, far below the field size,
/// so that no constraint can wrap around the modulus and i64 evaluation is exact.
pub const MAX_MAGNITUDE_BITS: u32 = 60;

impl Range {
    pub const INT8: Range = Range { lo: -128, hi: 127 };
    pub const UINT8: Range = Range { lo: 0, hi: 255 };

    pub const fn new(lo: i64, hi: i64) -> Self {
        Self { lo, hi }
    }

    /// The single value `v`.
    pub const fn point(v: i64) -> Self {
        Self { lo: v, hi: v }
    }

    pub fn contains(self, v: i64) -> bool {
        self.lo <= v && v <= self.hi
    }

    /// The largest magnitude in the range.
    pub fn magnitude(self) -> i64 {
        self.lo.unsigned_abs().max(self.hi.unsigned_abs()) as i64
    }

    /// The number of values in the range.
    pub fn size(self) -> u128 {
        (self.hi as i128 - self.lo as i128 + 1) as u128
    }

    pub fn union(self, other: Range) -> Range {
        Range::new(self.lo.min(other.lo), self.hi.max(other.hi))
    }

    /// Whether every value fits in [`MAX_MAGNITUDE_BITS`] bits.
    pub fn is_bounded(self) -> bool {
        self.magnitude() < 1 << MAX_MAGNITUDE_BITS
    }

    /// `self × c`, saturating (a saturated range fails [`Range::is_bounded`]).
    pub fn scale(self, c: i64) -> Range {
        let (a, b) = (self.lo as i128 * c as i128, self.hi as i128 * c as i128);
        Range::new(saturate(a.min(b)), saturate(a.max(b)))
    }

    /// `self + other`, saturating.
    pub fn plus(self, other: Range) -> Range {
        Range::new(
            saturate(self.lo as i128 + other.lo as i128),
            saturate(self.hi as i128 + other.hi as i128),
        )
    }

    /// The range of `a × b` for `a` in `self` and `b` in `other`, saturating.
    pub fn times(self, other: Range) -> Range {
        let products = [
            self.lo as i128 * other.lo as i128,
            self.lo as i128 * other.hi as i128,
            self.hi as i128 * other.lo as i128,
            self.hi as i128 * other.hi as i128,
        ];
        Range::new(
            saturate(*products.iter().min().expect("four products")),
            saturate(*products.iter().max().expect("four products")),
        )
    }

    /// The range of `Σ_i c_i·x_i + constant` for `x_i` in `self`.
    pub fn dot(self, coefficients: impl IntoIterator<Item = i64>, constant: i64) -> Range {
        let mut total = Range::point(constant);
        for c in coefficients {
            if c != 0 {
                total = total.plus(self.scale(c));
            }
        }
        total
    }

    /// Bits of a two's complement integer holding every value of the range.
    pub fn bit_width(self) -> u32 {
        if self.lo >= 0 {
            bits_for(self.hi as i128)
        } else {
            bits_for(self.hi.max(-(self.lo as i128 + 1) as i64) as i128) + 1
        }
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.lo, self.hi)
    }
}

fn saturate(v: i128) -> i64 {
    v.clamp(i64::MIN as i128 + 1, i64::MAX as i128) as i64
}

/// The number of bits of `bound`: the least `b` with `2^b > bound` (0 for 0).
pub fn bits_for(bound: i128) -> u32 {
    128 - bound.max(0).leading_zeros()
}

/// Fixed-point rescaling: `clamp(⌊(x·multiplier + 2^(shift−1)) / 2^shift⌋, clamp)`, that is
/// `x·multiplier / 2^shift` rounded to nearest (ties up) and saturated to the output's
/// range. Requantisation, ReLU, Clip and averaging are all this one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rescale {
    pub multiplier: i64,
    pub shift: u8,
    pub clamp: Range,
}

/// Largest shift a rescale may use.
pub const MAX_SHIFT: u8 = 56;

impl Rescale {
    /// A pure clamp: `clamp(x, range)`.
    pub fn clamp(range: Range) -> Self {
        Self {
            multiplier: 1,
            shift: 0,
            clamp: range,
        }
    }

    /// The reference semantics of the rescale gadget.
    pub fn apply(self, x: i64) -> i64 {
        let scaled = x as i128 * self.multiplier as i128;
        let rounded = if self.shift == 0 {
            scaled
        } else {
            (scaled + (1i128 << (self.shift - 1))) >> self.shift
        };
        rounded.clamp(self.clamp.lo as i128, self.clamp.hi as i128) as i64
    }

    /// Whether the gadget can prove this rescale for inputs in `input`: a non-zero
    /// multiplier, a bounded shift, a non-empty clamp, and intermediate values that stay
    /// below 2^MAX_MAGNITUDE_BITS.
    pub fn check(self, input: Range) -> Result<(), String> {
        if self.multiplier == 0 || self.shift > MAX_SHIFT || self.clamp.lo > self.clamp.hi {
            return Err(format!("invalid rescale {self:?}"));
        }
        if !input.scale(self.multiplier).is_bounded() || !self.clamp.is_bounded() {
            return Err(format!(
                "values of {input} times {} exceed {MAX_MAGNITUDE_BITS} bits",
                self.multiplier
            ));
        }
        Ok(())
    }

    /// The range of the output for inputs in `input`.
    pub fn output_range(self, input: Range) -> Range {
        let scaled = input.scale(self.multiplier);
        // Monotone in x·multiplier, so the ends of the scaled range give the ends of the
        // output (clamped).
        let end = |v: i64| {
            let rounded = if self.shift == 0 {
                v as i128
            } else {
                (v as i128 + (1i128 << (self.shift - 1))) >> self.shift
            };
            rounded.clamp(self.clamp.lo as i128, self.clamp.hi as i128) as i64
        };
        Range::new(end(scaled.lo), end(scaled.hi))
    }
}

/// `round(2^bits / x)` (ties up) for `x ≥ 1`: the reference semantics of the reciprocal
/// gadget.
pub fn reciprocal(x: i64, bits: u32) -> i64 {
    debug_assert!(x >= 1);
    let x = x as i128;
    (((1i128 << (bits + 1)) + x) / (2 * x)) as i64
}

/// `⌊2^bits / √x⌋` for `x ≥ 1`, exactly: the largest `r` with `r²·x ≤ 2^(2·bits)`. The
/// reference semantics of the inverse-square-root gadget.
pub fn inverse_sqrt(x: i64, bits: u32) -> i64 {
    debug_assert!(x >= 1 && bits <= 40);
    let target = 1u128 << (2 * bits);
    let fits = |r: u128| r * r * (x as u128) <= target;
    let mut r = ((1u128 << bits) as f64 / (x as f64).sqrt()) as u128;
    while r > 0 && !fits(r) {
        r -= 1;
    }
    while fits(r + 1) {
        r += 1;
    }
    r as i64
}

/// The operations that operators are written with. Values are opaque: an operator never
/// branches on them, so the same code describes the evaluation and the circuit. Every
/// non-linear primitive is told the range its input lies in; the interpreters may rely
/// on it (the circuit sizes its decompositions from it).
pub trait Arith {
    type Value: Clone;

    /// The constant `value`.
    fn constant(&mut self, value: i64) -> Self::Value;

    /// `Σ coefficient·value + constant`. Free in R1CS.
    fn linear(&mut self, terms: &[(i64, &Self::Value)], constant: i64) -> Self::Value;

    /// `a·b`.
    fn mul(&mut self, a: &Self::Value, b: &Self::Value) -> Self::Value;

    /// [`Rescale::apply`] of `x`, which lies in `input`.
    fn rescale(&mut self, x: &Self::Value, input: Range, rescale: Rescale) -> Self::Value;

    /// `max(a, b)`, both in `range`.
    fn max(&mut self, a: &Self::Value, b: &Self::Value, range: Range) -> Self::Value;

    /// `table[x − domain.lo]` for each table, `x` in `domain` (at most 256 values).
    fn lookup(&mut self, x: &Self::Value, domain: Range, tables: &[&[i64]]) -> Vec<Self::Value>;

    /// [`reciprocal`]`(x, bits)` for `x` in `input` (`input.lo ≥ 1`).
    fn reciprocal(&mut self, x: &Self::Value, input: Range, bits: u32) -> Self::Value;

    /// [`inverse_sqrt`]`(x, bits)` for `x` in `input` (`input.lo ≥ 1`).
    fn inverse_sqrt(&mut self, x: &Self::Value, input: Range, bits: u32) -> Self::Value;

    /// Marks the start of an operator, for the cost accounting of circuits.
    fn enter(&mut self, _operator: &'static str) {}
}

/// Largest lookup domain: one table row per 8-bit value.
pub const MAX_LOOKUP_DOMAIN: u128 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_to_nearest_and_clamps() {
        let r = |multiplier, shift, lo, hi| Rescale {
            multiplier,
            shift,
            clamp: Range::new(lo, hi),
        };
        assert_eq!(r(1, 1, -128, 127).apply(5), 3); // 2.5 rounds up
        assert_eq!(r(1, 1, -128, 127).apply(-5), -2); // -2.5 rounds up
        assert_eq!(r(1, 1, -128, 127).apply(-7), -3);
        assert_eq!(r(1, 2, -128, 127).apply(1000), 127);
        assert_eq!(r(1, 2, -128, 127).apply(-1000), -128);
        assert_eq!(r(1, 2, 0, 127).apply(-1000), 0);
        assert_eq!(r(3, 2, 0, 255).apply(10), 8); // 7.5 rounds up
        assert_eq!(r(-3, 0, -100, 100).apply(10), -30);
        assert_eq!(Rescale::clamp(Range::new(0, 6)).apply(9), 6);
    }

    #[test]
    fn output_ranges_cover_every_output() {
        for rescale in [
            Rescale {
                multiplier: 5,
                shift: 3,
                clamp: Range::new(-20, 90),
            },
            Rescale {
                multiplier: -7,
                shift: 2,
                clamp: Range::INT8,
            },
            Rescale::clamp(Range::new(0, 255)),
        ] {
            let input = Range::new(-300, 200);
            let out = rescale.output_range(input);
            for x in input.lo..=input.hi {
                assert!(out.contains(rescale.apply(x)), "{rescale:?} {x}");
            }
            assert!(
                (input.lo..=input.hi).any(|x| rescale.apply(x) == out.lo)
                    && (input.lo..=input.hi).any(|x| rescale.apply(x) == out.hi)
            );
        }
    }

    #[test]
    fn reciprocal_and_inverse_sqrt_are_exact() {
        assert_eq!(reciprocal(3, 4), 5); // 16/3 = 5.33
        assert_eq!(reciprocal(32, 4), 1); // 0.5 rounds up
        assert_eq!(reciprocal(1, 10), 1024);
        for x in 1..2000i64 {
            let r = inverse_sqrt(x, 12) as i128;
            let target = 1i128 << 24;
            assert!(r * r * x as i128 <= target && (r + 1) * (r + 1) * x as i128 > target);
        }
        assert_eq!(inverse_sqrt(1 << 40, 30), 1 << 10);
    }

    #[test]
    fn ranges_follow_interval_arithmetic() {
        assert_eq!(Range::INT8.scale(-2), Range::new(-254, 256));
        assert_eq!(
            Range::new(-3, 5).times(Range::new(-2, 4)),
            Range::new(-12, 20)
        );
        assert_eq!(Range::UINT8.dot([1, -2, 0], 10), Range::new(-500, 265));
        assert_eq!(Range::INT8.bit_width(), 8);
        assert_eq!(Range::UINT8.bit_width(), 8);
        assert_eq!(bits_for(255), 8);
        assert_eq!(bits_for(256), 9);
        assert_eq!(bits_for(0), 0);
        assert!(!Range::new(0, 1 << 61).is_bounded());
    }
}
