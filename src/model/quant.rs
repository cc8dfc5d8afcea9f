//! The quantised model: int8 weights and activations, int32 accumulation with an int32
//! bias, power-of-two requantisation with rounding, and its fixed-point evaluator. The
//! integer functions here ([`requantize`], [`max`]) are the ones the circuit's witness is
//! computed with, so the evaluator and the proof agree bit for bit.

use serde::Serialize;

use super::ModelError;
use super::geometry::{Conv, Window};

/// What a Dense or Conv layer does with its int32 accumulators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Activation {
    /// Keep the accumulators (only the last layer: they are the model's output).
    Accumulator,
    /// `clamp((acc + 2^(shift-1)) >> shift, lo, 127)`, `lo` = 0 with ReLU, else -128.
    Requantize { shift: u8, relu: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// Weights `[outputs][inputs]`.
    Dense {
        inputs: usize,
        outputs: usize,
        weights: Vec<i8>,
        bias: Vec<i32>,
        activation: Activation,
    },
    /// Weights `[out_channels][in_channels][kh][kw]`, one bias per output channel.
    Conv {
        conv: Conv,
        weights: Vec<i8>,
        bias: Vec<i32>,
        activation: Activation,
    },
    MaxPool(Window),
    /// The window's area is a power of two and it has no padding, so the mean is a
    /// rounding shift.
    AvgPool(Window),
    Relu,
}

/// A quantised model. Real values are `scale × integer`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantModel {
    pub input_shape: Vec<usize>,
    pub input_scale: f32,
    pub layers: Vec<Layer>,
    /// The scale of the output integers.
    pub output_scale: f32,
}

/// The closed range of integer values a tensor can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: i64,
    pub hi: i64,
}

impl Range {
    pub const INT8: Range = Range { lo: -128, hi: 127 };

    pub fn magnitude(self) -> i64 {
        self.lo.abs().max(self.hi.abs())
    }
}

/// Largest accumulator magnitude allowed: keeps i64 evaluation exact and the circuit's
/// bit decompositions far below the field size.
const MAX_ACCUMULATOR_BITS: u32 = 60;
/// Largest model accepted, in weights.
const MAX_WEIGHTS: usize = 1 << 26;

/// Rounds `acc / 2^shift` to nearest (ties up) and clamps to `[lo, 127]`.
pub fn requantize(acc: i64, shift: u8, relu: bool) -> i64 {
    let rounded = if shift == 0 {
        acc
    } else {
        (acc + (1i64 << (shift - 1))) >> shift
    };
    rounded.clamp(if relu { 0 } else { -128 }, 127)
}

pub fn max(a: i64, b: i64) -> i64 {
    a.max(b)
}

impl Layer {
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "Dense",
            Layer::Conv { .. } => "Conv",
            Layer::MaxPool(_) => "MaxPool",
            Layer::AvgPool(_) => "AvgPool",
            Layer::Relu => "Relu",
        }
    }

    /// Input and output lengths.
    pub fn lengths(&self, input_len: usize) -> (usize, usize) {
        match self {
            Layer::Dense {
                inputs, outputs, ..
            } => (*inputs, *outputs),
            Layer::Conv { conv, .. } => (conv.window.in_len(), conv.out_len()),
            Layer::MaxPool(w) | Layer::AvgPool(w) => (w.in_len(), w.pool_out_len()),
            Layer::Relu => (input_len, input_len),
        }
    }

    /// The range of the layer's outputs, given the range of its inputs.
    pub fn output_range(&self, input: Range) -> Range {
        match self {
            Layer::Dense {
                activation: Activation::Requantize { relu, .. },
                ..
            }
            | Layer::Conv {
                activation: Activation::Requantize { relu, .. },
                ..
            } => Range {
                lo: if *relu { 0 } else { -128 },
                hi: 127,
            },
            Layer::Dense {
                weights,
                bias,
                outputs,
                ..
            } => {
                let bound = accumulator_bound(weights, bias, *outputs, input);
                Range {
                    lo: -bound,
                    hi: bound,
                }
            }
            Layer::Conv {
                weights,
                bias,
                conv,
                ..
            } => {
                let bound = accumulator_bound(weights, bias, conv.out_channels, input);
                Range {
                    lo: -bound,
                    hi: bound,
                }
            }
            Layer::MaxPool(_) | Layer::AvgPool(_) => input,
            Layer::Relu => Range {
                lo: input.lo.max(0),
                hi: input.hi.max(0),
            },
        }
    }

    /// The largest accumulator magnitude of a Dense or Conv layer (before requantisation).
    pub fn accumulator_bound(&self, input: Range) -> i64 {
        match self {
            Layer::Dense {
                weights,
                bias,
                outputs,
                ..
            } => accumulator_bound(weights, bias, *outputs, input),
            Layer::Conv {
                weights,
                bias,
                conv,
                ..
            } => accumulator_bound(weights, bias, conv.out_channels, input),
            _ => input.magnitude(),
        }
    }
}

/// max over rows of `Σ|w| · max|x| + |b|`, where the weights are split into `rows` equal rows
/// (output neurons or filters).
fn accumulator_bound(weights: &[i8], bias: &[i32], rows: usize, input: Range) -> i64 {
    let per_row = weights.len() / rows.max(1);
    let magnitude = input.magnitude() as i128;
    let bound = weights
        .chunks(per_row.max(1))
        .zip(bias)
        .map(|(row, &b)| {
            let sum: i128 = row.iter().map(|&w| (w as i128).abs()).sum();
            sum * magnitude + (b as i128).abs()
        })
        .max()
        .unwrap_or(0);
    bound.min(i64::MAX as i128) as i64
}

impl QuantModel {
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// The ranges of the input of every layer and of the output.
    pub fn ranges(&self) -> Vec<Range> {
        let mut ranges = vec![Range::INT8];
        for layer in &self.layers {
            let next = layer.output_range(*ranges.last().unwrap());
            ranges.push(next);
        }
        ranges
    }

    pub fn output_len(&self) -> usize {
        let mut len = self.input_len();
        for layer in &self.layers {
            len = layer.lengths(len).1;
        }
        len
    }

    /// Checks that the layers fit together and every size is within bounds: what the
    /// quantiser builds and what a decoded model file must satisfy before it is used.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |reason: String| Err(ModelError::InvalidModel(reason));
        if self.input_shape.is_empty() || self.input_shape.contains(&0) {
            return bad(format!("input shape {:?}", self.input_shape));
        }
        if self.layers.is_empty() {
            return bad("no layers".into());
        }
        for scale in [self.input_scale, self.output_scale] {
            if !(scale.is_finite() && scale > 0.0) {
                return bad(format!("scale {scale} is not a positive number"));
            }
        }
        let mut len = self.input_len();
        let mut range = Range::INT8;
        let mut weights_total = 0usize;
        for (index, layer) in self.layers.iter().enumerate() {
            let here = format!("layer {index} ({})", layer.name());
            let last = index + 1 == self.layers.len();
            match layer {
                Layer::Dense {
                    inputs,
                    outputs,
                    weights,
                    bias,
                    activation,
                } => {
                    if *inputs == 0
                        || *outputs == 0
                        || inputs.checked_mul(*outputs) != Some(weights.len())
                        || bias.len() != *outputs
                    {
                        return bad(format!("{here}: sizes do not match"));
                    }
                    weights_total += weights.len();
                    check_activation(&here, *activation, last)?;
                }
                Layer::Conv {
                    conv,
                    weights,
                    bias,
                    activation,
                } => {
                    conv.window
                        .check()
                        .map_err(|e| ModelError::InvalidModel(format!("{here}: {e}")))?;
                    if conv.out_channels == 0
                        || conv.weights_len() != weights.len()
                        || bias.len() != conv.out_channels
                    {
                        return bad(format!("{here}: sizes do not match"));
                    }
                    weights_total += weights.len();
                    check_activation(&here, *activation, last)?;
                }
                Layer::MaxPool(window) => {
                    window
                        .check()
                        .map_err(|e| ModelError::InvalidModel(format!("{here}: {e}")))?;
                }
                Layer::AvgPool(window) => {
                    window
                        .check()
                        .map_err(|e| ModelError::InvalidModel(format!("{here}: {e}")))?;
                    if !window.area().is_power_of_two() || window.pads != [0; 4] {
                        return bad(format!(
                            "{here}: the window area must be a power of two, without padding"
                        ));
                    }
                }
                Layer::Relu => {}
            }
            if weights_total > MAX_WEIGHTS {
                return bad(format!("more than {MAX_WEIGHTS} weights"));
            }
            let (input_len, output_len) = layer.lengths(len);
            if input_len != len {
                return bad(format!(
                    "{here} takes {input_len} values, but receives {len}"
                ));
            }
            if layer.accumulator_bound(range) >= 1 << MAX_ACCUMULATOR_BITS {
                return bad(format!(
                    "{here}: accumulators may exceed {MAX_ACCUMULATOR_BITS} bits"
                ));
            }
            range = layer.output_range(range);
            len = output_len;
        }
        if range.magnitude() > i32::MAX as i64 {
            return bad("the output may exceed 32 bits".into());
        }
        Ok(())
    }

    /// Quantises a float input: `round(x / input_scale)` clamped to int8.
    pub fn quantize_input(&self, input: &[f32]) -> Result<Vec<i8>, ModelError> {
        if input.len() != self.input_len() {
            return Err(ModelError::InputLength {
                expected: self.input_len(),
                found: input.len(),
            });
        }
        if let Some(bad) = input.iter().find(|v| !v.is_finite()) {
            return Err(ModelError::InputValue(format!(
                "{bad} is not a finite number"
            )));
        }
        let scale = self.input_scale as f64;
        Ok(input
            .iter()
            .map(|&x| (x as f64 / scale).round().clamp(-128.0, 127.0) as i8)
            .collect())
    }

    /// The real values of the output integers.
    pub fn dequantize_output(&self, output: &[i32]) -> Vec<f64> {
        output
            .iter()
            .map(|&o| o as f64 * self.output_scale as f64)
            .collect()
    }

    /// Runs the model on an int8 input: the fixed-point evaluator.
    pub fn evaluate(&self, input: &[i8]) -> Result<Vec<i32>, ModelError> {
        if input.len() != self.input_len() {
            return Err(ModelError::InputLength {
                expected: self.input_len(),
                found: input.len(),
            });
        }
        let mut x: Vec<i64> = input.iter().map(|&v| v as i64).collect();
        for layer in &self.layers {
            x = apply(layer, &x);
        }
        Ok(x.into_iter().map(|v| v as i32).collect())
    }
}

fn check_activation(here: &str, activation: Activation, last: bool) -> Result<(), ModelError> {
    match activation {
        Activation::Accumulator if !last => Err(ModelError::InvalidModel(format!(
            "{here}: only the last layer may output accumulators"
        ))),
        Activation::Requantize { shift, .. } if shift > 40 => Err(ModelError::InvalidModel(
            format!("{here}: shift {shift} is beyond 40"),
        )),
        _ => Ok(()),
    }
}

fn activate(acc: i64, activation: Activation) -> i64 {
    match activation {
        Activation::Accumulator => acc,
        Activation::Requantize { shift, relu } => requantize(acc, shift, relu),
    }
}

/// One layer of the fixed-point evaluator.
pub(crate) fn apply(layer: &Layer, x: &[i64]) -> Vec<i64> {
    match layer {
        Layer::Dense {
            inputs,
            outputs,
            weights,
            bias,
            activation,
        } => (0..*outputs)
            .map(|o| {
                let row = &weights[o * inputs..(o + 1) * inputs];
                let acc: i64 =
                    row.iter().zip(x).map(|(&w, &v)| w as i64 * v).sum::<i64>() + bias[o] as i64;
                activate(acc, *activation)
            })
            .collect(),
        Layer::Conv {
            conv,
            weights,
            bias,
            activation,
        } => {
            let mut y = vec![0i64; conv.out_len()];
            conv.for_each_output(|out, channel, taps| {
                let acc: i64 = taps
                    .iter()
                    .map(|&(w, i)| weights[w] as i64 * x[i])
                    .sum::<i64>()
                    + bias[channel] as i64;
                y[out] = activate(acc, *activation);
            });
            y
        }
        Layer::MaxPool(window) => {
            let mut y = vec![0i64; window.pool_out_len()];
            window.for_each_pool(|out, inputs| {
                y[out] = inputs
                    .iter()
                    .map(|&i| x[i])
                    .reduce(max)
                    .expect("a window has inputs");
            });
            y
        }
        Layer::AvgPool(window) => {
            let shift = window.area().trailing_zeros() as u8;
            let mut y = vec![0i64; window.pool_out_len()];
            window.for_each_pool(|out, inputs| {
                let sum: i64 = inputs.iter().map(|&i| x[i]).sum();
                y[out] = requantize(sum, shift, false);
            });
            y
        }
        Layer::Relu => x.iter().map(|&v| v.max(0)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantize_rounds_to_nearest_and_clamps() {
        assert_eq!(requantize(5, 1, false), 3); // 2.5 rounds up
        assert_eq!(requantize(-5, 1, false), -2); // -2.5 rounds up
        assert_eq!(requantize(-7, 1, false), -3); // -3.5 rounds up
        assert_eq!(requantize(1000, 2, false), 127);
        assert_eq!(requantize(-1000, 2, false), -128);
        assert_eq!(requantize(-1000, 2, true), 0);
        assert_eq!(requantize(17, 0, true), 17);
    }
}
