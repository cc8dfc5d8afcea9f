//! The R1CS of a quantised model over BN254's scalar field.
//!
//! Weights are constants, so a dot product is a linear combination and costs nothing; the
//! cost is in the non-linear steps, each proved by bit decomposition:
//!
//! - requantise (+ ReLU), `y = clamp((acc + 2^(k-1)) >> k, lo, 127)`: `t = acc + 2^(k-1) −
//!   lo·2^k + 2^B` is split into B+1 bits (B chosen from the layer's accumulator bound so
//!   that `0 ≤ t < 2^(B+1)`). Bit B says `y > lo`, bits k..k+n are the result, any higher
//!   bit means saturation. B+6 constraints per output.
//! - max of two int8 values: the sign bit of their difference selects. 10 or 11
//!   constraints.
//!
//! Public inputs, in order: the input (`x + 128`), the request binding, the output
//! (`y + 2^31`); all small non-negative numbers, which keeps verification fast. The
//! witness is computed with the evaluator's own integer functions.

use ark_bn254::Fr;
use ark_ff::{AdditiveGroup, Field, One, Zero};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystemRef, LinearCombination, SynthesisError, Variable,
};

use crate::model::QuantModel;
use crate::model::quant::{self, Activation, Layer, Range};

type Lc = LinearCombination<Fr>;

/// Offsets that make public values non-negative.
pub const INPUT_OFFSET: i64 = 128;
pub const OUTPUT_OFFSET: i64 = 1 << 31;

/// An input value as its public input: `x + 128`, a byte.
pub fn encode_input(x: i8) -> u8 {
    (x as i16 + INPUT_OFFSET as i16) as u8
}

/// An output value as its public input: `y + 2^31`, 32 bits.
pub fn encode_output(y: i32) -> u32 {
    (y as i64 + OUTPUT_OFFSET) as u32
}

/// The public inputs of a statement, in the circuit's order.
#[cfg(test)]
pub fn public_inputs(input: &[i8], binding: Fr, output: &[i32]) -> Vec<Fr> {
    input
        .iter()
        .map(|&x| Fr::from(encode_input(x)))
        .chain(std::iter::once(binding))
        .chain(output.iter().map(|&y| Fr::from(encode_output(y))))
        .collect()
}

/// A value in the circuit: `variable + offset`, with its integer value for the witness.
#[derive(Clone, Copy)]
struct Wire {
    variable: Variable,
    offset: i64,
    value: i64,
}

impl Wire {
    fn lc(&self) -> Lc {
        Lc::from_sum_coeff_vars(&[
            (Fr::one(), self.variable),
            (Fr::from(self.offset), Variable::One),
        ])
    }
}

/// The model applied to one input, bound to a request.
pub struct InferenceCircuit<'a> {
    pub model: &'a QuantModel,
    pub input: &'a [i8],
    pub binding: Fr,
}

impl ConstraintSynthesizer<Fr> for InferenceCircuit<'_> {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let matrices = cs.should_construct_matrices();
        let mut builder = Builder {
            cs,
            small: small_constants(),
            matrices,
        };
        let mut wires = Vec::with_capacity(self.input.len());
        for &x in self.input {
            let variable = builder
                .cs
                .new_input_variable(|| Ok(Fr::from(encode_input(x))))?;
            wires.push(Wire {
                variable,
                offset: -INPUT_OFFSET,
                value: x as i64,
            });
        }
        // The binding enters a constraint, so the proof commits to it.
        let binding = builder.cs.new_input_variable(|| Ok(self.binding))?;
        let square = builder
            .cs
            .new_witness_variable(|| Ok(self.binding.square()))?;
        builder.enforce(|| lc1(binding), || lc1(binding), || lc1(square))?;

        let ranges = self.model.ranges();
        let mut outputs: Option<Vec<(Lc, i64)>> = None;
        for (index, layer) in self.model.layers.iter().enumerate() {
            match layer {
                Layer::Dense {
                    activation: Activation::Accumulator,
                    ..
                }
                | Layer::Conv {
                    activation: Activation::Accumulator,
                    ..
                } => outputs = Some(builder.accumulators(layer, &wires)),
                _ => wires = builder.layer(layer, &wires, ranges[index])?,
            }
        }
        let outputs =
            outputs.unwrap_or_else(|| wires.iter().map(|w| (builder.lc(w), w.value)).collect());
        for (lc, value) in outputs {
            let public = builder
                .cs
                .new_input_variable(|| Ok(Fr::from(encode_output(value as i32))))?;
            // lc + 2^31 − public = 0
            builder.enforce(
                || lc + (Fr::from(OUTPUT_OFFSET), Variable::One) - (Fr::one(), public),
                || lc1(Variable::One),
                Lc::zero,
            )?;
        }
        Ok(())
    }
}

fn lc1(variable: Variable) -> Lc {
    Lc::from_sum_coeff_vars(&[(Fr::one(), variable)])
}

/// Field elements of -128..=127, so weights need no conversion in the inner loops.
fn small_constants() -> Vec<Fr> {
    (-128i64..=127).map(Fr::from).collect()
}

/// `Σ 2^i · bits[i]`.
fn binary_sum(bits: &[Variable]) -> Lc {
    let mut power = Fr::one();
    let terms: Vec<(Fr, Variable)> = bits
        .iter()
        .map(|&bit| {
            let term = (power, bit);
            power.double_in_place();
            term
        })
        .collect();
    Lc::from_sum_coeff_vars(&terms)
}

/// The number of bits of `bound`: `2^bits_for(x) > x`.
fn bits_for(bound: i128) -> u32 {
    128 - bound.leading_zeros()
}

/// Walks the model, allocating variables with their values and, when the constraint system
/// builds matrices (setup, or proving without cached matrices), the constraints. Linear
/// combinations are built only then: a prover with cached matrices needs only values.
struct Builder {
    cs: ConstraintSystemRef<Fr>,
    small: Vec<Fr>,
    matrices: bool,
}

impl Builder {
    fn weight(&self, w: i8) -> Fr {
        self.small[(w as i16 + 128) as usize]
    }

    fn enforce(
        &self,
        a: impl FnOnce() -> Lc,
        b: impl FnOnce() -> Lc,
        c: impl FnOnce() -> Lc,
    ) -> Result<(), SynthesisError> {
        self.cs.enforce_r1cs_constraint(a, b, c)
    }

    fn witness(&self, value: Fr) -> Result<Variable, SynthesisError> {
        self.cs.new_witness_variable(|| Ok(value))
    }

    fn lc(&self, wire: &Wire) -> Lc {
        if self.matrices { wire.lc() } else { Lc::zero() }
    }

    /// A Dense or Conv layer's accumulators as linear combinations with their values.
    fn accumulators(&self, layer: &Layer, wires: &[Wire]) -> Vec<(Lc, i64)> {
        let dot = |row: &mut dyn Iterator<Item = (i8, &Wire)>, bias: i32| {
            let mut terms = Vec::new();
            let mut constant = bias as i64;
            let mut value = bias as i64;
            for (w, wire) in row {
                value += w as i64 * wire.value;
                if self.matrices && w != 0 {
                    terms.push((self.weight(w), wire.variable));
                    constant += w as i64 * wire.offset;
                }
            }
            if !self.matrices {
                return (Lc::zero(), value);
            }
            terms.push((Fr::from(constant), Variable::One));
            (Lc::from_sum_coeff_vars(&terms), value)
        };
        match layer {
            Layer::Dense {
                inputs,
                outputs,
                weights,
                bias,
                ..
            } => (0..*outputs)
                .map(|o| {
                    let row = &weights[o * inputs..(o + 1) * inputs];
                    dot(&mut row.iter().copied().zip(wires), bias[o])
                })
                .collect(),
            Layer::Conv {
                conv,
                weights,
                bias,
                ..
            } => {
                let mut out = vec![(Lc::zero(), 0); conv.out_len()];
                conv.for_each_output(|o, channel, taps| {
                    out[o] = dot(
                        &mut taps.iter().map(|&(w, i)| (weights[w], &wires[i])),
                        bias[channel],
                    );
                });
                out
            }
            _ => unreachable!("only Dense and Conv have accumulators"),
        }
    }

    fn layer(
        &mut self,
        layer: &Layer,
        wires: &[Wire],
        range: Range,
    ) -> Result<Vec<Wire>, SynthesisError> {
        match layer {
            Layer::Dense {
                activation: Activation::Requantize { shift, relu },
                ..
            }
            | Layer::Conv {
                activation: Activation::Requantize { shift, relu },
                ..
            } => {
                let bound = layer.accumulator_bound(range);
                self.accumulators(layer, wires)
                    .into_iter()
                    .map(|(lc, value)| self.requantize(lc, value, bound, *shift, *relu))
                    .collect()
            }
            Layer::MaxPool(window) => {
                let mut out = Vec::with_capacity(window.pool_out_len());
                let mut failure = None;
                window.for_each_pool(|_, inputs| {
                    let mut best = wires[inputs[0]];
                    for &i in &inputs[1..] {
                        match self.max(best, wires[i], range) {
                            Ok(wire) => best = wire,
                            Err(e) => failure = Some(e),
                        }
                    }
                    out.push(best);
                });
                failure.map_or(Ok(out), Err)
            }
            Layer::AvgPool(window) => {
                let shift = window.area().trailing_zeros() as u8;
                let bound = range.magnitude() * window.area() as i64;
                let mut sums = Vec::with_capacity(window.pool_out_len());
                window.for_each_pool(|_, inputs| {
                    let mut lc = Lc::zero();
                    let mut value = 0;
                    for &i in inputs {
                        if self.matrices {
                            lc = lc + &wires[i].lc();
                        }
                        value += wires[i].value;
                    }
                    sums.push((lc, value));
                });
                sums.into_iter()
                    .map(|(lc, value)| self.requantize(lc, value, bound, shift, false))
                    .collect()
            }
            Layer::Relu => wires
                .iter()
                .map(|w| self.requantize(self.lc(w), w.value, range.magnitude(), 0, true))
                .collect(),
            Layer::Dense { .. } | Layer::Conv { .. } => {
                unreachable!("accumulator layers are handled by the caller")
            }
        }
    }

    /// `clamp((acc + 2^(shift-1)) >> shift, lo, 127)` for `|acc| ≤ bound`.
    fn requantize(
        &mut self,
        acc: Lc,
        acc_value: i64,
        bound: i64,
        shift: u8,
        relu: bool,
    ) -> Result<Wire, SynthesisError> {
        let (lo, n): (i64, u32) = if relu { (0, 7) } else { (-128, 8) };
        let k = shift as u32;
        let half: i128 = if k > 0 { 1 << (k - 1) } else { 0 };
        let lifted = -(lo as i128) << k;
        let b = bits_for(bound as i128 + half + lifted).max(k + n);
        let top: i128 = 1 << b;
        let t = acc_value as i128 + half + lifted + top;
        debug_assert!(t >= 0 && t < 2 * top, "accumulator outside its bound");

        let bits = self.bits(t, b + 1)?;
        // Σ 2^i·bit_i = acc + half + lifted + 2^B
        self.enforce(
            || binary_sum(&bits) - &(acc + (Fr::from(half + lifted + top), Variable::One)),
            || lc1(Variable::One),
            Lc::zero,
        )?;

        let positive = bits[b as usize];
        let low_bits = &bits[k as usize..(k + n) as usize];
        let low_value = ((t >> k) & ((1 << n) - 1)) as i64;
        let ceiling = (1i64 << n) - 1;
        let high = &bits[(k + n) as usize..b as usize];
        let high_value = (t >> (k + n)) & ((1i128 << (b - k - n)) - 1);
        let over_value = (high_value != 0) as i64;
        let positive_value = (t >> b) as i64;
        let y_value = positive_value * (low_value + over_value * (ceiling - low_value));
        debug_assert_eq!(y_value + lo, quant::requantize(acc_value, shift, relu));
        let y = self.witness(Fr::from(y_value))?;

        if high.is_empty() {
            // No bit can overflow: y = positive · low.
            self.enforce(|| lc1(positive), || binary_sum(low_bits), || lc1(y))?;
        } else {
            // over = (Σ high bits ≠ 0), by the inverse trick.
            let high_count = Fr::from(high_value.count_ones() as u64);
            let inverse = self.witness(high_count.inverse().unwrap_or(Fr::zero()))?;
            let over = self.witness(Fr::from(over_value))?;
            self.enforce(|| Lc::sum_vars(high), || lc1(inverse), || lc1(over))?;
            self.enforce(
                || Lc::sum_vars(high),
                || lc1(Variable::One) - (Fr::one(), over),
                Lc::zero,
            )?;
            // z = over · (ceiling − low); y = positive · (low + z)
            let z = self.witness(Fr::from(over_value * (ceiling - low_value)))?;
            self.enforce(
                || lc1(over),
                || {
                    Lc::from_sum_coeff_vars(&[(Fr::from(ceiling), Variable::One)])
                        - &binary_sum(low_bits)
                },
                || lc1(z),
            )?;
            self.enforce(
                || lc1(positive),
                || binary_sum(low_bits) + (Fr::one(), z),
                || lc1(y),
            )?;
        }
        Ok(Wire {
            variable: y,
            offset: lo,
            value: y_value + lo,
        })
    }

    /// `max(a, b)` for values within `range`.
    fn max(&mut self, a: Wire, b: Wire, range: Range) -> Result<Wire, SynthesisError> {
        let m = bits_for((range.hi - range.lo) as i128);
        let top: i128 = 1 << m;
        let difference = a.value as i128 - b.value as i128;
        let bits = self.bits(difference + top, m + 1)?;
        // Σ 2^i·bit_i = a − b + 2^m
        self.enforce(
            || binary_sum(&bits) - &(a.lc() - &b.lc() + (Fr::from(top), Variable::One)),
            || lc1(Variable::One),
            Lc::zero,
        )?;
        let a_wins = bits[m as usize];
        let value = quant::max(a.value, b.value);
        let out = self.witness(Fr::from(value))?;
        // a_wins · (a − b) = out − b
        self.enforce(|| lc1(a_wins), || a.lc() - &b.lc(), || lc1(out) - &b.lc())?;
        Ok(Wire {
            variable: out,
            offset: 0,
            value,
        })
    }

    /// `count` boolean witnesses holding the low bits of `value`.
    fn bits(&mut self, value: i128, count: u32) -> Result<Vec<Variable>, SynthesisError> {
        (0..count)
            .map(|i| {
                let bit = self.witness(Fr::from(((value >> i) & 1) as u64))?;
                // bit · (bit − 1) = 0
                self.enforce(
                    || lc1(bit),
                    || lc1(bit) - (Fr::one(), Variable::One),
                    Lc::zero,
                )?;
                Ok(bit)
            })
            .collect()
    }
}
