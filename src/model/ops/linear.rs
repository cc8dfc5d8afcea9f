//! Linear operators with constant weights: Gemm, MatMul by a constant, Conv (1-D and 2-D;
//! stride, padding, dilation, groups, depthwise), and BatchNormalization, folded into the
//! Conv or Gemm before it (as is an Add or Mul of a constant right after one), or else
//! kept as a per-channel affine (see `elementwise`). A dense layer may read several
//! tensors, each with its own weights: recurrent cells unroll into those.
//!
//! **Cost.** Weights are constants, so a dot product is a linear combination: free. Each
//! output pays one rescale to int8 or uint8 (with ReLU fused), B + 3 constraints where B is
//! the bits of its accumulator bound (`Σ|w|·max|x| + |b|` over the taps it reads, so a
//! convolution's border outputs, which padding leaves fewer taps, cost less; about 20 for
//! a 64-input layer). An output of the whole model keeps its accumulators and costs
//! nothing.
//!
//! A MaxPool whose windows do not overlap and that alone reads a Conv's output (after a
//! fused Relu or Clip) is fused too, and runs before the rescale, on the accumulators: the
//! rescale is monotone (its multipliers are positive), so the max of the rescaled values is
//! the rescaled max, exactly. A 2×2 pool then pays for one rescale instead of four, and
//! three comparisons of accumulators (bits(width) + 3 each, about 19) instead of three of
//! int8 values (11): about 80 constraints per pooled output instead of about 110.
//!
//! An Add that alone reads the output is fused as a residual (`Accumulators::Residual`):
//! the other addend, a tensor of the output's shape computed earlier (a skip connection)
//! or a constant (a position embedding), joins the accumulators before the one rescale,
//! so the Add pays none of its own (about B + 3 per element saved).
//!
//! **Quantisation.** Weights are int8 with a scale per output channel, nudged (by less
//! than 2×, keeping at least 7 bits) so that `input scale × weight scale × 2^shift` is the
//! output's scale exactly: the rescale is then a rounding shift, with no multiplier.

use super::elementwise::{add, mul};
use super::pooling::{FloatPool, max_of, window_shape as pooled_shape};
use super::shape::ShapeOp;
use super::{FloatOp, QuantOp, TensorType};
use crate::circuit::{Arith, Range, Rescale};
use crate::model::ModelError;
use crate::model::builder::{Builder, Value};
use crate::model::codec::{Reader, Writer};
use crate::model::geometry::{Conv, Window, onnx_window};
use crate::model::onnx::OnnxNode;
use crate::model::quantize::{Addend, Quantizer};
use crate::model::tensor::{self, Constant};

/// (MatMul by a constant is this family's too; the operator is listed with the other
/// MatMul, of two computed tensors, in `elementwise`.)
pub const OPERATORS: &[&str] = &["Gemm", "Conv", "BatchNormalization"];

#[derive(Debug, Clone, PartialEq)]
pub enum FloatLinear {
    /// `y[.., o] = Σ_k W_k[o] · x_k[.., :] + b[o]`, `W_k` stored `[outputs][features_k]`.
    Dense {
        weights: Vec<Vec<f64>>,
        bias: Vec<f64>,
    },
    /// Weights stored `[out_channels][channels / groups][kh][kw]`.
    Conv {
        conv: Conv,
        weights: Vec<f64>,
        bias: Vec<f64>,
    },
}

/// What a linear operator does with its accumulators.
#[derive(Debug, Clone, PartialEq)]
pub enum Accumulators {
    /// Keeps them: the model's output.
    Kept,
    /// Rescales output channel `o` by `(1, shifts[o])` (or a multiplier of `2^j` where the
    /// weights' resolution is coarser than the output's) to the clamp.
    Rescaled {
        factors: Vec<(i64, u8)>,
        clamp: Range,
    },
    /// Takes the max of each channel's accumulators over each window of a fused MaxPool,
    /// then rescales the maxima as `Rescaled` does (Conv only; every multiplier positive).
    MaxPooled {
        window: Window,
        factors: Vec<(i64, u8)>,
        clamp: Range,
    },
    /// Adds a tensor of the output's shape, the operator's last input, before the
    /// rescale: the residual connection of an Add that alone reads the output, fused.
    /// Channel `o` rescales `acc·terms[o].0 + residual·terms[o].1` as `Rescaled` does.
    Residual {
        terms: Vec<(i64, i64)>,
        factors: Vec<(i64, u8)>,
        clamp: Range,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QuantLinear {
    Dense {
        weights: Vec<Vec<i8>>,
        bias: Vec<i64>,
        output: Accumulators,
    },
    Conv {
        conv: Conv,
        weights: Vec<i8>,
        bias: Vec<i64>,
        output: Accumulators,
    },
}

/// The features each input of a dense layer of `outputs` outputs holds.
fn features(weights: &[Vec<impl Copy>], outputs: usize) -> Vec<usize> {
    weights.iter().map(|w| w.len() / outputs.max(1)).collect()
}

fn dense_shape(
    inputs: &[&[usize]],
    features: &[usize],
    outputs: usize,
) -> Result<Vec<usize>, String> {
    if inputs.len() != features.len() || inputs.is_empty() {
        return Err(format!(
            "{} inputs for {} weight blocks",
            inputs.len(),
            features.len()
        ));
    }
    let lead = &inputs[0][..inputs[0].len().saturating_sub(1)];
    for (shape, &k) in inputs.iter().zip(features) {
        let ok =
            !shape.is_empty() && shape[shape.len() - 1] == k && &shape[..shape.len() - 1] == lead;
        if !ok {
            return Err(format!("an input of shape {shape:?} for {k} features"));
        }
    }
    let mut shape = lead.to_vec();
    shape.push(outputs);
    Ok(shape)
}

fn conv_shape(conv: &Conv, input: &[usize]) -> Result<Vec<usize>, String> {
    conv.check()?;
    let w = &conv.window;
    let expected = if w.one_dimensional {
        vec![w.batch, w.channels, w.input[1]]
    } else {
        vec![w.batch, w.channels, w.input[0], w.input[1]]
    };
    if input != expected {
        return Err(format!(
            "an input of shape {input:?}; the convolution reads {expected:?}"
        ));
    }
    Ok(conv.output_shape())
}

impl FloatLinear {
    pub fn kind(&self) -> &'static str {
        match self {
            FloatLinear::Dense { .. } => "Dense",
            FloatLinear::Conv { .. } => "Conv",
        }
    }

    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, String> {
        Ok(vec![match self {
            FloatLinear::Dense { weights, bias } => {
                if bias.is_empty() || weights.iter().any(|w| w.len() % bias.len() != 0) {
                    return Err("weights do not match the bias".into());
                }
                dense_shape(inputs, &features(weights, bias.len()), bias.len())?
            }
            FloatLinear::Conv {
                conv,
                weights,
                bias,
            } => {
                if inputs.len() != 1
                    || weights.len() != conv.weights_len()
                    || bias.len() != conv.out_channels
                {
                    return Err("weights do not match the convolution".into());
                }
                conv_shape(conv, inputs[0])?
            }
        }])
    }

    pub fn evaluate(&self, inputs: &[&[f64]], shapes: &[&[usize]]) -> Vec<Vec<f64>> {
        vec![match self {
            FloatLinear::Dense { weights, bias } => {
                let outputs = bias.len();
                let feats = features(weights, outputs);
                let rows = tensor::len(shapes[0]) / feats[0].max(1);
                let mut y = Vec::with_capacity(rows * outputs);
                for r in 0..rows {
                    for (o, &b) in bias.iter().enumerate() {
                        let mut sum = b;
                        for (k, &f) in feats.iter().enumerate() {
                            let x = &inputs[k][r * f..(r + 1) * f];
                            let w = &weights[k][o * f..(o + 1) * f];
                            sum += w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
                        }
                        y.push(sum);
                    }
                }
                y
            }
            FloatLinear::Conv {
                conv,
                weights,
                bias,
            } => {
                let mut y = vec![0.0; conv.output_len()];
                conv.for_each_output(|out, channel, taps| {
                    y[out] = bias[channel]
                        + taps
                            .iter()
                            .map(|&(w, i)| weights[w] * inputs[0][i])
                            .sum::<f64>();
                });
                y
            }
        }]
    }

    /// Folds `y = x·scale[c] + offset[c]` over this operator's output channels into its
    /// weights and bias.
    fn fold(&mut self, scale: &[f64], offset: &[f64]) {
        let (weights, bias): (Vec<&mut [f64]>, &mut Vec<f64>) = match self {
            FloatLinear::Dense { weights, bias } => {
                let outputs = bias.len();
                (
                    weights
                        .iter_mut()
                        .flat_map(|w| {
                            let f = w.len() / outputs;
                            w.chunks_mut(f).collect::<Vec<_>>()
                        })
                        .collect(),
                    bias,
                )
            }
            FloatLinear::Conv {
                weights,
                bias,
                conv,
            } => {
                let per = weights.len() / conv.out_channels;
                (weights.chunks_mut(per).collect(), bias)
            }
        };
        let outputs = bias.len();
        for (i, row) in weights.into_iter().enumerate() {
            row.iter_mut().for_each(|w| *w *= scale[i % outputs]);
        }
        for (o, b) in bias.iter_mut().enumerate() {
            *b = *b * scale[o] + offset[o];
        }
    }
}

impl QuantLinear {
    pub fn kind(&self) -> &'static str {
        match self {
            QuantLinear::Dense { .. } => "Dense",
            QuantLinear::Conv { .. } => "Conv",
        }
    }

    fn output(&self) -> &Accumulators {
        match self {
            QuantLinear::Dense { output, .. } | QuantLinear::Conv { output, .. } => output,
        }
    }

    fn channels(&self) -> usize {
        match self {
            QuantLinear::Dense { bias, .. } => bias.len(),
            QuantLinear::Conv { conv, .. } => conv.out_channels,
        }
    }

    /// The accumulator range of each output channel.
    fn accumulator_ranges(&self, inputs: &[&TensorType]) -> Vec<Range> {
        match self {
            QuantLinear::Dense { weights, bias, .. } => {
                let feats = features(weights, bias.len());
                (0..bias.len())
                    .map(|o| {
                        weights.iter().zip(&feats).zip(inputs).fold(
                            Range::point(bias[o]),
                            |sum, ((w, &f), t)| {
                                sum.plus(
                                    t.range
                                        .dot(w[o * f..(o + 1) * f].iter().map(|&w| w as i64), 0),
                                )
                            },
                        )
                    })
                    .collect()
            }
            QuantLinear::Conv {
                weights,
                bias,
                conv,
                ..
            } => {
                let per = weights.len() / conv.out_channels.max(1);
                // Padding only removes taps, so every tap bounds every output.
                weights
                    .chunks(per.max(1))
                    .zip(bias)
                    .map(|(w, &b)| {
                        inputs[0]
                            .range
                            .dot(w.iter().map(|&w| w as i64), b)
                            .union(Range::point(b))
                    })
                    .collect()
            }
        }
    }

    /// The tensors the weights read: all the inputs but a fused residual.
    fn weighted_inputs(&self) -> usize {
        match self {
            QuantLinear::Dense { weights, .. } => weights.len(),
            QuantLinear::Conv { .. } => 1,
        }
    }

    /// The fused residual's `(accumulator factor, residual factor)` per channel.
    fn residual_terms(&self) -> Option<&[(i64, i64)]> {
        match self.output() {
            Accumulators::Residual { terms, .. } => Some(terms),
            _ => None,
        }
    }

    /// The range of what each channel rescales: its accumulators, with the residual
    /// added where one is fused.
    fn rescaled_ranges(&self, inputs: &[&TensorType]) -> Vec<Range> {
        self.accumulator_ranges(inputs)
            .into_iter()
            .enumerate()
            .map(|(channel, acc)| self.rescaled_range(inputs, channel, acc))
            .collect()
    }

    /// What channel `channel` rescales, for accumulators in `acc`.
    fn rescaled_range(&self, inputs: &[&TensorType], channel: usize, acc: Range) -> Range {
        match (self.residual_terms(), inputs.get(self.weighted_inputs())) {
            (Some(terms), Some(residual)) => {
                let (a, c) = terms[channel];
                acc.scale(a).plus(residual.range.scale(c))
            }
            _ => acc,
        }
    }

    /// `acc·a + residual·c` for a fused residual, else the accumulator itself.
    fn add_residual<A: Arith>(
        &self,
        arith: &mut A,
        acc: A::Value,
        channel: usize,
        residual: Option<&A::Value>,
    ) -> A::Value {
        match (self.residual_terms(), residual) {
            (Some(terms), Some(r)) => {
                let (a, c) = terms[channel];
                arith.linear(&[(a, &acc), (c, r)], 0)
            }
            _ => acc,
        }
    }

    fn rescale(&self, channel: usize) -> Option<Rescale> {
        match self.output() {
            Accumulators::Kept => None,
            Accumulators::Rescaled { factors, clamp }
            | Accumulators::MaxPooled { factors, clamp, .. }
            | Accumulators::Residual { factors, clamp, .. } => Some(Rescale {
                multiplier: factors[channel].0,
                shift: factors[channel].1,
                clamp: *clamp,
            }),
        }
    }

    pub fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| &t.shape[..]).collect();
        let shape = match self {
            QuantLinear::Dense { weights, bias, .. } => {
                if bias.is_empty() || weights.iter().any(|w| w.len() % bias.len() != 0) {
                    return Err("weights do not match the bias".into());
                }
                let weighted = &shapes[..shapes.len().min(weights.len())];
                dense_shape(weighted, &features(weights, bias.len()), bias.len())?
            }
            QuantLinear::Conv {
                conv,
                weights,
                bias,
                ..
            } => {
                if shapes.is_empty()
                    || weights.len() != conv.weights_len()
                    || bias.len() != conv.out_channels
                {
                    return Err("weights do not match the convolution".into());
                }
                conv_shape(conv, shapes[0])?
            }
        };
        let residual = matches!(self.output(), Accumulators::Residual { .. });
        if shapes.len() != self.weighted_inputs() + residual as usize {
            return Err(format!(
                "{} inputs; the operator reads {}",
                shapes.len(),
                self.weighted_inputs() + residual as usize
            ));
        }
        let shape = match self.output() {
            Accumulators::Kept => shape,
            Accumulators::Rescaled { factors, .. }
            | Accumulators::MaxPooled { factors, .. }
            | Accumulators::Residual { factors, .. }
                if factors.len() != self.channels() =>
            {
                return Err("one rescale per output channel expected".into());
            }
            Accumulators::Residual { terms, .. } => {
                if terms.len() != self.channels() {
                    return Err("one residual term per output channel expected".into());
                }
                if shapes[shapes.len() - 1] != &shape[..] {
                    return Err(format!(
                        "a residual of shape {:?} for an output of shape {shape:?}",
                        shapes[shapes.len() - 1]
                    ));
                }
                shape
            }
            Accumulators::Rescaled { .. } => shape,
            Accumulators::MaxPooled {
                window, factors, ..
            } => {
                if !matches!(self, QuantLinear::Conv { .. }) {
                    return Err("a max pool fuses only into a convolution".into());
                }
                if factors.iter().any(|&(m, _)| m < 1) {
                    return Err("a max pool fuses only into a rescale with positive multipliers (one that keeps the order of values)".into());
                }
                pooled_shape(window, &shape)?
            }
        };
        let mut range: Option<Range> = None;
        for (channel, acc) in self.rescaled_ranges(inputs).into_iter().enumerate() {
            let out = match self.rescale(channel) {
                None => acc,
                Some(rescale) => {
                    rescale.check(acc)?;
                    rescale.output_range(acc)
                }
            };
            if !acc.is_bounded() {
                return Err("accumulators may exceed 60 bits".into());
            }
            range = Some(range.map_or(out, |r| r.union(out)));
        }
        Ok(vec![TensorType::new(
            shape,
            range.unwrap_or(Range::point(0)),
        )])
    }

    pub fn synthesize<A: Arith>(
        &self,
        arith: &mut A,
        inputs: &[&[A::Value]],
        types: &[&TensorType],
        output: &TensorType,
    ) -> Vec<Vec<A::Value>> {
        let ranges = self.rescaled_ranges(types);
        let residual = inputs.get(self.weighted_inputs()).copied();
        let finish = |arith: &mut A, acc: A::Value, channel: usize, range: Range| match self
            .rescale(channel)
        {
            None => acc,
            Some(rescale) => arith.rescale(&acc, range, rescale),
        };
        let pool = match self.output() {
            Accumulators::MaxPooled { window, .. } => Some(window),
            _ => None,
        };
        let mut out = Vec::with_capacity(output.len());
        match self {
            QuantLinear::Dense { weights, bias, .. } => {
                let feats = features(weights, bias.len());
                let rows = types[0].len() / feats[0].max(1);
                let mut terms: Vec<(i64, &A::Value)> = Vec::new();
                for r in 0..rows {
                    for (o, &b) in bias.iter().enumerate() {
                        terms.clear();
                        for (k, &f) in feats.iter().enumerate() {
                            let x = &inputs[k][r * f..(r + 1) * f];
                            let w = &weights[k][o * f..(o + 1) * f];
                            terms.extend(
                                w.iter()
                                    .zip(x)
                                    .filter(|(w, _)| **w != 0)
                                    .map(|(&w, x)| (w as i64, x)),
                            );
                        }
                        let acc = arith.linear(&terms, b);
                        let r = residual.map(|r| &r[out.len()]);
                        let acc = self.add_residual(arith, acc, o, r);
                        out.push(finish(arith, acc, o, ranges[o]));
                    }
                }
            }
            QuantLinear::Conv {
                conv,
                weights,
                bias,
                ..
            } => {
                let mut slots: Vec<Option<A::Value>> = vec![None; conv.output_len()];
                conv.for_each_output(|o, channel, taps| {
                    let terms: Vec<(i64, &A::Value)> = taps
                        .iter()
                        .filter(|&&(w, _)| weights[w] != 0)
                        .map(|&(w, i)| (weights[w] as i64, &inputs[0][i]))
                        .collect();
                    let acc = arith.linear(&terms, bias[channel]);
                    let acc = self.add_residual(arith, acc, channel, residual.map(|r| &r[o]));
                    slots[o] = Some(match pool {
                        Some(_) => acc,
                        None => {
                            // An output at the border reads fewer taps (padding), so its
                            // range, and the bits its rescale decomposes, can be smaller.
                            let weights = terms.iter().map(|&(w, _)| w);
                            let own = types[0].range.dot(weights, bias[channel]);
                            let range = self.rescaled_range(types, channel, own);
                            finish(arith, acc, channel, range)
                        }
                    });
                });
                let accumulators: Vec<A::Value> = slots
                    .into_iter()
                    .map(|v| v.expect("every output"))
                    .collect();
                match pool {
                    None => out = accumulators,
                    Some(window) => {
                        let mut pooled: Vec<Option<A::Value>> = vec![None; output.len()];
                        let plane = window.output_plane().max(1);
                        window.for_each_pool(|o, taps, _| {
                            let channel = (o / plane) % conv.out_channels;
                            let values: Vec<&A::Value> =
                                taps.iter().map(|&i| &accumulators[i]).collect();
                            let best = max_of(arith, &values, ranges[channel]);
                            pooled[o] = Some(finish(arith, best, channel, ranges[channel]));
                        });
                        out = pooled
                            .into_iter()
                            .map(|v| v.expect("every output"))
                            .collect();
                    }
                }
            }
        }
        vec![out]
    }

    pub fn weights(&self) -> usize {
        match self {
            QuantLinear::Dense { weights, bias, .. } => {
                weights.iter().map(Vec::len).sum::<usize>() + bias.len()
            }
            QuantLinear::Conv { weights, bias, .. } => weights.len() + bias.len(),
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        let factors = |w: &mut Writer, factors: &[(i64, u8)], clamp: Range| {
            w.len(factors.len());
            for &(m, s) in factors {
                w.i64(m);
                w.u8(s);
            }
            w.range(clamp);
        };
        let accumulators = |w: &mut Writer, output: &Accumulators| match output {
            Accumulators::Kept => w.u8(0),
            Accumulators::Rescaled { factors: f, clamp } => {
                w.u8(1);
                factors(w, f, *clamp);
            }
            Accumulators::MaxPooled {
                window,
                factors: f,
                clamp,
            } => {
                w.u8(2);
                write_window(w, window);
                factors(w, f, *clamp);
            }
            Accumulators::Residual {
                terms,
                factors: f,
                clamp,
            } => {
                w.u8(3);
                w.len(terms.len());
                for &(a, c) in terms {
                    w.i64(a);
                    w.i64(c);
                }
                factors(w, f, *clamp);
            }
        };
        match self {
            QuantLinear::Dense {
                weights,
                bias,
                output,
            } => {
                w.u8(1);
                w.len(weights.len());
                weights.iter().for_each(|block| w.i8s(block));
                w.i64s(bias);
                accumulators(w, output);
            }
            QuantLinear::Conv {
                conv,
                weights,
                bias,
                output,
            } => {
                w.u8(2);
                write_window(w, &conv.window);
                w.usize(conv.out_channels);
                w.usize(conv.groups);
                w.i8s(weights);
                w.i64s(bias);
                accumulators(w, output);
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Self, ModelError> {
        let factors = |r: &mut Reader| {
            (0..r.count(9)?)
                .map(|_| Ok((r.i64()?, r.u8()?)))
                .collect::<Result<Vec<_>, ModelError>>()
        };
        let accumulators = |r: &mut Reader| -> Result<Accumulators, ModelError> {
            Ok(match r.u8()? {
                0 => Accumulators::Kept,
                1 => Accumulators::Rescaled {
                    factors: factors(r)?,
                    clamp: r.range()?,
                },
                2 => Accumulators::MaxPooled {
                    window: read_window(r)?,
                    factors: factors(r)?,
                    clamp: r.range()?,
                },
                3 => Accumulators::Residual {
                    terms: (0..r.count(16)?)
                        .map(|_| Ok((r.i64()?, r.i64()?)))
                        .collect::<Result<Vec<_>, ModelError>>()?,
                    factors: factors(r)?,
                    clamp: r.range()?,
                },
                _ => return Err(r.invalid("unknown accumulator handling")),
            })
        };
        Ok(match r.u8()? {
            1 => {
                let weights = (0..r.count(4)?)
                    .map(|_| r.i8s())
                    .collect::<Result<Vec<_>, _>>()?;
                let bias = r.i64s()?;
                QuantLinear::Dense {
                    weights,
                    bias,
                    output: accumulators(r)?,
                }
            }
            2 => {
                let window = read_window(r)?;
                let conv = Conv {
                    window,
                    out_channels: r.usize()?,
                    groups: r.usize()?,
                };
                let weights = r.i8s()?;
                let bias = r.i64s()?;
                QuantLinear::Conv {
                    conv,
                    weights,
                    bias,
                    output: accumulators(r)?,
                }
            }
            _ => return Err(r.invalid("unknown linear operator")),
        })
    }
}

pub(crate) fn write_window(w: &mut Writer, window: &Window) {
    for v in [window.batch, window.channels]
        .into_iter()
        .chain(window.input)
        .chain(window.kernel)
        .chain(window.strides)
        .chain(window.dilations)
        .chain(window.pads)
    {
        w.usize(v);
    }
    w.flag(window.ceil);
    w.flag(window.one_dimensional);
}

pub(crate) fn read_window(r: &mut Reader) -> Result<Window, ModelError> {
    let mut v = [0usize; 14];
    for slot in &mut v {
        *slot = r.usize()?;
    }
    let window = Window {
        batch: v[0],
        channels: v[1],
        input: [v[2], v[3]],
        kernel: [v[4], v[5]],
        strides: [v[6], v[7]],
        dilations: [v[8], v[9]],
        pads: [v[10], v[11], v[12], v[13]],
        ceil: r.flag()?,
        one_dimensional: r.flag()?,
    };
    window.check().map_err(ModelError::Format)?;
    Ok(window)
}

/// Quantisation: per output channel, the weight scale is the smallest that holds the
/// channel's weights in int8, nudged up to make the accumulator scale `output scale /
/// 2^shift` exactly. An output of the model keeps its accumulators, at one scale for all.
pub fn quantize(op: &FloatLinear, node: usize, q: &mut Quantizer) -> Result<(), ModelError> {
    let inputs: Vec<(usize, f64)> = (0..q.input_count(node)).map(|i| q.input(node, i)).collect();
    let (blocks, bias): (Vec<&[f64]>, &[f64]) = match op {
        FloatLinear::Dense { weights, bias } => (weights.iter().map(|w| &w[..]).collect(), bias),
        FloatLinear::Conv { weights, bias, .. } => (vec![&weights[..]], bias),
    };
    let channels = bias.len();
    // The smallest accumulator scale per channel at which every weight fits in ±127.
    let floor: Vec<f64> = (0..channels)
        .map(|o| {
            blocks
                .iter()
                .zip(&inputs)
                .map(|(w, (_, s))| {
                    let per = w.len() / channels;
                    w[o * per..(o + 1) * per]
                        .iter()
                        .fold(0f64, |m, v| m.max(v.abs()))
                        * s
                        / 127.0
                })
                .fold(0f64, f64::max)
        })
        .collect();
    // An output of the model keeps its accumulators, at one scale for all, when they
    // surely fit the 32 bits of an output.
    let common = floor.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let taps: usize = blocks.iter().map(|w| w.len() / channels).sum();
    let magnitude = (0..inputs.len())
        .map(|i| q.input_type(node, i).range.magnitude())
        .max()
        .unwrap_or(0) as f64;
    let largest_bias = bias.iter().fold(0f64, |m, b| m.max(b.abs()));
    let bound = 127.0 * taps as f64 * magnitude + largest_bias / common;
    let keep = q.is_model_output_only(node, 0) && bound < i32::MAX as f64 / 2.0;
    let residual = if keep { None } else { q.residual_add(node, 0) };
    let mut residual_tensor = None;
    let (scales, output, out_scale, target) = if keep {
        (vec![common; channels], Accumulators::Kept, common, None)
    } else {
        let target = match &residual {
            Some(add) => q.target(add.add, 0),
            None => q.target(node, 0),
        };
        let mut scales = Vec::with_capacity(channels);
        let mut factors = Vec::with_capacity(channels);
        for &f in &floor {
            let ratio = if f > 0.0 { target.scale / f } else { f64::MAX };
            if ratio >= 1.0 {
                let shift = libm::log2(ratio).floor().min(40.0) as u8;
                scales.push(target.scale / (1u64 << shift) as f64);
                factors.push((1, shift));
            } else {
                let j = libm::log2(1.0 / ratio).ceil().min(20.0) as u32;
                scales.push(target.scale * (1u64 << j) as f64);
                factors.push((1i64 << j, 0));
            }
        }
        let pool = match (op, q.sole_reader(node, 0, &target)) {
            (FloatLinear::Conv { .. }, Some(reader)) if residual.is_none() => {
                match q.float_op(reader) {
                    // Only windows that do not overlap: each accumulator is then compared once.
                    // Where they overlap, comparing accumulators (wider than int8) in every
                    // window they share costs more than the rescales fusing saves.
                    FloatOp::Pool(FloatPool::Max(window)) if !window.overlaps() => {
                        Some((reader, *window))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let output = match (pool, &residual) {
            (Some((_, window)), _) => Accumulators::MaxPooled {
                window,
                factors,
                clamp: target.clamp,
            },
            (None, Some(add)) => {
                let (joining, tensor) = match &add.addend {
                    Addend::Tensor { tensor, scale } => {
                        let magnitude = q.quant_type(*tensor).range.magnitude();
                        let joining = residual_terms(&factors, *scale, magnitude, target.scale);
                        (joining, *tensor)
                    }
                    Addend::Constant(offsets) => {
                        let (joining, values) = constant_terms(op, &factors, offsets, target.scale);
                        let shape = offsets.dims.clone();
                        let op = QuantOp::Shape(ShapeOp::Const { shape, values });
                        (joining, q.emit(op, vec![])?[0])
                    }
                };
                residual_tensor = Some(tensor);
                Accumulators::Residual {
                    terms: joining.terms,
                    factors: joining.factors,
                    clamp: target.clamp,
                }
            }
            (None, None) => Accumulators::Rescaled {
                factors,
                clamp: target.clamp,
            },
        };
        (
            scales,
            output,
            target.scale,
            Some((target, pool.map(|(reader, _)| reader))),
        )
    };
    let quantize_block = |w: &[f64], s_in: f64| -> Vec<i8> {
        let per = w.len() / channels;
        w.iter()
            .enumerate()
            .map(|(i, &v)| (v * s_in / scales[i / per]).round().clamp(-127.0, 127.0) as i8)
            .collect()
    };
    let weights: Vec<Vec<i8>> = blocks
        .iter()
        .zip(&inputs)
        .map(|(w, (_, s))| quantize_block(w, *s))
        .collect();
    let bias = bias
        .iter()
        .zip(&scales)
        .map(|(&b, &s)| {
            let q = (b / s).round();
            if q.abs() >= (1u64 << 40) as f64 {
                Err(ModelError::Calibration(format!(
                    "a bias of {b} is too large at accumulator scale {s:e}"
                )))
            } else {
                Ok(q as i64)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let quant = match op {
        FloatLinear::Dense { .. } => QuantLinear::Dense {
            weights,
            bias,
            output,
        },
        FloatLinear::Conv { conv, .. } => QuantLinear::Conv {
            conv: *conv,
            weights: weights.into_iter().next().expect("one block"),
            bias,
            output,
        },
    };
    let mut ids: Vec<usize> = inputs.iter().map(|(id, _)| *id).collect();
    ids.extend(residual_tensor);
    let out = q.emit(QuantOp::Linear(quant), ids)?;
    match target {
        Some((target, pool)) => {
            q.finish_target(node, 0, out[0], target);
            if let Some(reader) = pool {
                q.fuse_reader(reader, out[0], out_scale);
            }
            if let Some(add) = &residual {
                q.fuse_reader(add.add, out[0], out_scale);
            }
        }
        None => q.map_output(node, 0, out[0], out_scale),
    }
    Ok(())
}

/// Brings each channel's accumulators, which rescale to the output by `(m, k)`, and a
/// residual to one integer of `2^−K` output units, K = max(k, `precise`): the accumulator
/// times `m·2^(K−k)`, exact, the residual times `residual(K)`, and a rescale by `(1, K)`
/// after. Each bit of K beyond the channel's own shift costs a constraint per output.
fn joining(factors: &[(i64, u8)], precise: u8, residual: impl Fn(u8) -> i64) -> Joining {
    let (terms, factors) = factors
        .iter()
        .map(|&(m, k)| {
            let shift = k.max(precise);
            ((m << (shift - k), residual(shift)), (1, shift))
        })
        .unzip();
    Joining { terms, factors }
}

/// The joining of a fused Add of a tensor at `scale` whose values reach `magnitude`: the
/// residual times `round(scale·2^K / out_scale)`, whose rounding errs by at most half a
/// unit per residual unit; K ≥ log2(magnitude) keeps that under half an output unit at the
/// largest residual (the unfused Add erred by as much from rounding the operator's output
/// alone).
fn residual_terms(factors: &[(i64, u8)], scale: f64, magnitude: i64, out_scale: f64) -> Joining {
    let precise = crate::circuit::bits_for(magnitude.max(1) as i128) as u8;
    joining(factors, precise, |shift| {
        (scale * (1u64 << shift) as f64 / out_scale).round() as i64
    })
}

/// How a fused residual joins each channel's accumulators: the `(accumulator factor,
/// residual factor)` of [`Accumulators::Residual`], and the rescale after.
struct Joining {
    terms: Vec<(i64, i64)>,
    factors: Vec<(i64, u8)>,
}

/// The joining of a fused Add of a constant, `offsets` (one per output element, in the
/// output's shape), and the constant's integers: it is written in each channel's `2^−K`
/// output units, K at least 3 so that its rounding errs by at most a sixteenth of an
/// output unit, and added once (`terms[o].1 = 1`).
fn constant_terms(
    op: &FloatLinear,
    factors: &[(i64, u8)],
    offsets: &Constant,
    out_scale: f64,
) -> (Joining, Vec<i64>) {
    let joined = joining(factors, 3, |_| 1);
    let channels = factors.len().max(1);
    // The channel axis is the last for a dense layer and the second for a convolution.
    let inner = match op {
        FloatLinear::Dense { .. } => 1,
        FloatLinear::Conv { .. } => offsets.dims.iter().skip(2).product(),
    };
    let values = offsets
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (_, shift) = joined.factors[(i / inner.max(1)) % channels];
            (v * (1u64 << shift) as f64 / out_scale).round() as i64
        })
        .collect();
    (joined, values)
}

/// A dense layer over several inputs: `Σ_k W_k · x_k + b` (`W_k` as `[outputs][features]`).
/// Constant inputs whose rows are all alike fold into the bias.
pub fn dense(
    b: &mut Builder,
    name: &str,
    inputs: Vec<(Value, Vec<f64>)>,
    mut bias: Vec<f64>,
) -> Result<Value, String> {
    let outputs = bias.len();
    let mut tensors = Vec::new();
    let mut weights = Vec::new();
    for (value, w) in inputs {
        let f = w.len() / outputs.max(1);
        match value {
            Value::Tensor(t) => {
                tensors.push(t);
                weights.push(w);
            }
            // A constant whose rows are all alike adds the same to every output row.
            Value::Constant(c) if f > 0 && c.values.chunks(f).all(|row| row == &c.values[..f]) => {
                for (o, slot) in bias.iter_mut().enumerate() {
                    *slot += w[o * f..(o + 1) * f]
                        .iter()
                        .zip(&c.values)
                        .map(|(w, x)| w * x)
                        .sum::<f64>();
                }
            }
            Value::Constant(_) => {
                tensors.push(b.tensor(&format!("{name}/constant"), &value)?);
                weights.push(w);
            }
            Value::Missing => return Err("a required input is missing".into()),
        }
    }
    if tensors.is_empty() {
        return Ok(Value::Constant(Constant::vector(bias)));
    }
    Ok(Value::Tensor(b.add_one(
        name,
        FloatOp::Linear(FloatLinear::Dense { weights, bias }),
        tensors,
    )?))
}

/// Folds `y = x·scale + offset` (constants broadcast with `x`, the output of `op`, of
/// shape `shape`) into the weights and bias when the constants vary only along the
/// output channels. Returns whether it did.
pub fn fold_constants(
    op: &mut FloatLinear,
    shape: &[usize],
    scale: &Constant,
    offset: &Constant,
) -> bool {
    let channel_axis = match op {
        FloatLinear::Dense { .. } => shape.len() - 1,
        FloatLinear::Conv { .. } => 1,
    };
    let per_channel = |c: &Constant| -> Option<Vec<f64>> {
        // Right-aligned, the constant may vary only on the channel axis.
        if c.dims.len() > shape.len() {
            return None;
        }
        let offset = shape.len() - c.dims.len();
        let varies = c
            .dims
            .iter()
            .enumerate()
            .all(|(i, &d)| d == 1 || (i + offset == channel_axis && d == shape[channel_axis]));
        if !varies {
            return None;
        }
        let channels = shape[channel_axis];
        if c.values.len() == 1 {
            Some(vec![c.values[0]; channels])
        } else {
            Some(c.values.clone())
        }
    };
    match (per_channel(scale), per_channel(offset)) {
        (Some(s), Some(o)) => {
            op.fold(&s, &o);
            true
        }
        _ => false,
    }
}

pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    let invalid = |e: String| n.invalid(e);
    let value = match n.op {
        "MatMul" => {
            let (Value::Tensor(x), Value::Constant(w)) = (n.input(0), n.input(1)) else {
                return Ok(None); // two computed tensors, or constants: elementwise's
            };
            n.check_attributes(&[])?;
            let [rows, cols] = w.dims[..] else {
                return Err(n.invalid(format!(
                    "constant weights of shape {:?}; 2-D expected",
                    w.dims
                )));
            };
            if b.shape(*x).last() != Some(&rows) {
                return Err(n.invalid(format!(
                    "weights for {rows} inputs, but the input has shape {:?}",
                    b.shape(*x)
                )));
            }
            let weights = transpose(&w.values, rows, cols);
            dense(
                b,
                &n.name,
                vec![(Value::Tensor(*x), weights)],
                vec![0.0; cols],
            )
            .map_err(invalid)?
        }
        "Gemm" => {
            n.check_attributes(&["alpha", "beta", "transA", "transB", "broadcast"])?;
            let mut x = match n.input(0) {
                Value::Tensor(x) => *x,
                _ => return Err(n.invalid("the first input must be computed")),
            };
            let w = n.constant(1, "the weights (B)")?;
            let [rows, cols] = w.dims[..] else {
                return Err(n.invalid(format!("weights of shape {:?}; 2-D expected", w.dims)));
            };
            let (alpha, beta) = (n.float("alpha", 1.0), n.float("beta", 1.0));
            if n.int("transA", 0) != 0 {
                x = b
                    .add_one(
                        &format!("{}/transA", n.name),
                        FloatOp::Shape(super::shape::ShapeOp::Transpose { perm: vec![1, 0] }),
                        vec![x],
                    )
                    .map_err(invalid)?;
            }
            let trans_b = n.int("transB", 0) != 0;
            let (features, outputs) = if trans_b { (cols, rows) } else { (rows, cols) };
            if b.shape(x).len() != 2 || b.shape(x)[1] != features {
                return Err(n.invalid(format!(
                    "weights for {features} inputs, but the input has shape {:?}",
                    b.shape(x)
                )));
            }
            let mut weights = if trans_b {
                w.values.clone()
            } else {
                transpose(&w.values, rows, cols)
            };
            weights.iter_mut().for_each(|v| *v *= alpha);
            // C: a bias when it holds one value per output (or one for all); otherwise
            // (per row, or computed) added after the product.
            let bias = match n.input(2) {
                Value::Missing => Some(vec![0.0; outputs]),
                Value::Constant(c) if c.values.len() == 1 => {
                    Some(vec![beta * c.values[0]; outputs])
                }
                Value::Constant(c)
                    if c.values.len() == outputs && c.dims.last() == Some(&outputs) =>
                {
                    Some(c.values.iter().map(|v| beta * v).collect())
                }
                _ => None,
            };
            let product = dense(
                b,
                &n.name,
                vec![(Value::Tensor(x), weights)],
                bias.clone().unwrap_or_else(|| vec![0.0; outputs]),
            )
            .map_err(invalid)?;
            if bias.is_some() {
                product
            } else {
                let scaled = mul(
                    b,
                    &format!("{}/beta", n.name),
                    n.input(2),
                    &Value::Constant(Constant::scalar(beta)),
                )
                .map_err(invalid)?;
                add(b, &format!("{}/C", n.name), &product, &scaled, false).map_err(invalid)?
            }
        }
        "Conv" => {
            n.check_attributes(&[
                "auto_pad",
                "dilations",
                "group",
                "kernel_shape",
                "pads",
                "strides",
            ])?;
            let Value::Tensor(x) = n.input(0) else {
                return Err(n.invalid("the input must be computed"));
            };
            let w = n.constant(1, "the weights")?;
            if w.dims.len() < 3 {
                return Err(n.invalid(format!("weights of shape {:?}", w.dims)));
            }
            let kernel = &w.dims[2..];
            if let Some(shape) = n.ints("kernel_shape")
                && shape.iter().map(|&k| k as usize).ne(kernel.iter().copied())
            {
                return Err(n.invalid("kernel_shape does not match the weights"));
            }
            let input = b.shape(*x).to_vec();
            let window = onnx_window(n, &input, kernel)?;
            let groups =
                usize::try_from(n.int("group", 1)).map_err(|_| n.invalid("a negative group"))?;
            let conv = Conv {
                window,
                out_channels: w.dims[0],
                groups,
            };
            conv.check().map_err(invalid)?;
            if w.dims[1].checked_mul(groups) != Some(window.channels) {
                return Err(n.invalid(format!(
                    "weights for {} channels per group, but the input has {} channels in {groups} groups",
                    w.dims[1], window.channels
                )));
            }
            let bias = match n.optional_constant(2)? {
                Some(c) if c.values.len() == conv.out_channels => c.values.clone(),
                Some(c) => return Err(n.invalid(format!("a bias of shape {:?}", c.dims))),
                None => vec![0.0; conv.out_channels],
            };
            Value::Tensor(
                b.add_one(
                    &n.name,
                    FloatOp::Linear(FloatLinear::Conv {
                        conv,
                        weights: w.values.clone(),
                        bias,
                    }),
                    vec![*x],
                )
                .map_err(invalid)?,
            )
        }
        "BatchNormalization" => {
            n.check_attributes(&[
                "epsilon",
                "momentum",
                "training_mode",
                "spatial",
                "is_test",
                "consumed_inputs",
            ])?;
            if n.int("spatial", 1) != 1 {
                return Err(n.invalid("spatial = 0 (statistics per element) is not supported"));
            }
            let training = n.int("training_mode", 0) != 0 || n.int("is_test", 1) == 0;
            if training || n.output_used(1) || n.output_used(2) {
                return Err(
                    n.invalid("training mode is not supported (export the model in eval mode)")
                );
            }
            let Value::Tensor(x) = n.input(0) else {
                return Err(n.invalid("the input must be computed"));
            };
            let shape = b.shape(*x).to_vec();
            if shape.len() < 2 {
                return Err(n.invalid("an input without a channel axis"));
            }
            let channels = shape[1];
            let [gamma, beta, mean, var] = [1, 2, 3, 4].map(|i| n.constant(i, "the statistics"));
            let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
            if [gamma, beta, mean, var]
                .iter()
                .any(|c| c.values.len() != channels)
            {
                return Err(n.invalid(format!("statistics for other than {channels} channels")));
            }
            let epsilon = n.float("epsilon", 1e-5);
            let scale: Vec<f64> = (0..channels)
                .map(|c| gamma.values[c] / (var.values[c] + epsilon).sqrt())
                .collect();
            let offset: Vec<f64> = (0..channels)
                .map(|c| beta.values[c] - mean.values[c] * scale[c])
                .collect();
            let mut dims = vec![channels];
            dims.extend(std::iter::repeat_n(1, shape.len() - 2));
            let scale = Constant {
                dims: dims.clone(),
                values: scale,
            };
            let offset = Constant {
                dims,
                values: offset,
            };
            if n.exclusive_input(0) && super::fold_into_producer(b, *x, &scale, &offset) {
                Value::Tensor(*x)
            } else {
                Value::Tensor(
                    b.add_one(
                        &n.name,
                        FloatOp::Elementwise(super::elementwise::FloatElementwise::Affine {
                            scale,
                            offset,
                        }),
                        vec![*x],
                    )
                    .map_err(invalid)?,
                )
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(vec![value]))
}

/// `[rows][cols]` to `[cols][rows]`.
fn transpose(values: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builder::Builder;
    use crate::model::ops::elementwise::FloatElementwise;
    use crate::model::ops::fold_into_producer;
    use crate::model::testing::{Numbers, assert_every_change_refused, window};

    #[test]
    fn every_changed_witness_of_dense_and_conv_is_refused() {
        // A strided, padded, grouped convolution with ReLU fused into its rescale, a dense
        // layer of two inputs rescaled to int8, and one that keeps its accumulators.
        let mut n = Numbers::new(5);
        let mut b = Builder::new();
        let x = b.input(vec![1, 2, 5, 5]);
        let conv = Conv {
            window: window(2, 5, 3, 2, 1),
            out_channels: 2,
            groups: 2,
        };
        let weights = n.reals(conv.weights_len());
        let c = b
            .add_one(
                "conv",
                FloatOp::Linear(FloatLinear::Conv {
                    conv,
                    weights,
                    bias: n.reals(2),
                }),
                vec![x],
            )
            .unwrap();
        let relu = FloatOp::Elementwise(FloatElementwise::Clamp {
            min: 0.0,
            max: f64::INFINITY,
        });
        let r = b.add_one("relu", relu, vec![c]).unwrap();
        let flat = b
            .add_one(
                "flat",
                FloatOp::Shape(super::super::shape::ShapeOp::Reshape { shape: vec![1, 18] }),
                vec![r],
            )
            .unwrap();
        let side = b
            .add_one(
                "side",
                FloatOp::Shape(super::super::shape::ShapeOp::Reshape { shape: vec![1, 50] }),
                vec![x],
            )
            .unwrap();
        let dense = FloatLinear::Dense {
            weights: vec![n.reals(18 * 4), n.reals(50 * 4)],
            bias: n.reals(4),
        };
        let hidden = b
            .add_one("dense", FloatOp::Linear(dense), vec![flat, side])
            .unwrap();
        let squashed = b
            .add_one(
                "tanh",
                FloatOp::Lookup(super::super::lookup::Function::Tanh),
                vec![hidden],
            )
            .unwrap();
        let head = FloatLinear::Dense {
            weights: vec![n.reals(8)],
            bias: n.reals(2),
        };
        let out = b
            .add_one("head", FloatOp::Linear(head), vec![squashed])
            .unwrap();
        assert_every_change_refused(&b.finish(vec![out]));
    }

    #[test]
    fn batch_norm_after_a_conv_folds_into_it() {
        let mut n = Numbers::new(6);
        let conv = Conv {
            window: window(1, 4, 3, 1, 0),
            out_channels: 2,
            groups: 1,
        };
        let op = FloatOp::Linear(FloatLinear::Conv {
            conv,
            weights: n.reals(18),
            bias: vec![0.5, -0.5],
        });
        let build = || {
            let mut b = Builder::new();
            let x = b.input(vec![1, 1, 4, 4]);
            let c = b.add_one("conv", op.clone(), vec![x]).unwrap();
            (b, c)
        };
        let (plain, c) = build();
        let before = plain.finish(vec![c]).evaluate(&[0.25; 16]);
        let (mut folded, c) = build();
        let scale = Constant {
            dims: vec![2, 1, 1],
            values: vec![2.0, -3.0],
        };
        let offset = Constant {
            dims: vec![2, 1, 1],
            values: vec![1.0, 0.0],
        };
        assert!(fold_into_producer(&mut folded, c, &scale, &offset));
        let after = folded.finish(vec![c]).evaluate(&[0.25; 16]);
        for (i, (a, v)) in after.iter().zip(&before).enumerate() {
            let expected = *v as f64 * [2.0, -3.0][i / 4] + [1.0, 0.0][i / 4];
            assert!((*a as f64 - expected).abs() < 1e-5);
        }
        // A constant varying along another axis does not fold.
        let (mut other, c) = build();
        let across = Constant {
            dims: vec![1, 2, 1],
            values: vec![2.0, 3.0],
        };
        assert!(!fold_into_producer(
            &mut other,
            c,
            &across,
            &Constant::scalar(0.0)
        ));
    }
}

#[cfg(test)]
mod fused_pool {
    use super::*;
    use crate::model::builder::Builder;
    use crate::model::graph::FloatModel;
    use crate::model::ops::elementwise::FloatElementwise;
    use crate::model::quantize::quantize;
    use crate::model::testing::{Numbers, assert_every_change_refused, samples, window};

    /// Conv (`channels` in, `channels + 1` out, padded) → Relu → MaxPool (overlapping,
    /// padded windows) over `size × size`, with the Relu's output also an output of the
    /// model when `relu_visible` (which keeps the pool apart).
    fn conv_relu_pool(
        channels: usize,
        size: usize,
        kernel: usize,
        relu_visible: bool,
    ) -> FloatModel {
        let mut n = Numbers::new(9);
        let mut b = Builder::new();
        let x = b.input(vec![1, channels, size, size]);
        let conv = Conv {
            window: window(channels, size, 3, 1, 1),
            out_channels: channels + 1,
            groups: 1,
        };
        let linear = FloatOp::Linear(FloatLinear::Conv {
            conv,
            weights: n.reals(conv.weights_len()),
            bias: n.reals(channels + 1),
        });
        let c = b.add_one("conv", linear, vec![x]).unwrap();
        let relu = FloatOp::Elementwise(FloatElementwise::Clamp {
            min: 0.0,
            max: f64::INFINITY,
        });
        let r = b.add_one("relu", relu, vec![c]).unwrap();
        let pool = FloatOp::Pool(FloatPool::Max(window(channels + 1, size, kernel, 2, 0)));
        let p = b.add_one("pool", pool, vec![r]).unwrap();
        b.finish(if relu_visible { vec![p, r] } else { vec![p] })
    }

    #[test]
    fn a_max_pool_after_a_conv_runs_on_its_accumulators_with_the_same_outputs() {
        let calibration = samples(16, 72, 3);
        let fused = quantize(&conv_relu_pool(2, 6, 2, false), &calibration)
            .unwrap()
            .0;
        let apart = quantize(&conv_relu_pool(2, 6, 2, true), &calibration)
            .unwrap()
            .0;
        let kinds = |m: &crate::model::graph::QuantModel| {
            m.nodes().iter().map(|n| n.op.kind()).collect::<Vec<_>>()
        };
        assert_eq!(kinds(&fused), ["Conv"]);
        assert_eq!(kinds(&apart), ["Conv", "MaxPool"]);
        // Overlapping windows compare each accumulator several times: not fused.
        let overlapping = quantize(&conv_relu_pool(2, 6, 3, false), &calibration)
            .unwrap()
            .0;
        assert_eq!(kinds(&overlapping), ["Conv", "MaxPool"]);
        let QuantOp::Linear(conv) = &fused.nodes()[0].op else {
            unreachable!()
        };
        assert!(matches!(conv.output(), Accumulators::MaxPooled { .. }));
        // The rescale is monotone, so max and rescale commute exactly: same integers.
        let pooled = fused.output_len();
        for input in samples(64, 72, 5) {
            let input = fused.quantize_input(&input).unwrap();
            let expected = &apart.evaluate(&input).unwrap()[..pooled];
            assert_eq!(fused.evaluate(&input).unwrap(), expected);
        }
        let cost = |m: &crate::model::graph::QuantModel| {
            use crate::circuit::r1cs::{Mode, R1cs};
            let mut cs = R1cs::new(Mode::Constraints);
            let input = (0..m.input_len()).map(|_| cs.alloc(0)).collect();
            m.synthesize(&mut cs, input);
            cs.constraint_count()
        };
        assert!(
            cost(&fused) < cost(&apart),
            "{} ≥ {}",
            cost(&fused),
            cost(&apart)
        );
    }

    #[test]
    fn every_changed_witness_of_a_fused_pool_is_refused() {
        assert_every_change_refused(&conv_relu_pool(1, 4, 2, false));
    }

    #[test]
    fn a_fused_pool_needs_a_conv_and_an_order_keeping_rescale() {
        let conv = Conv {
            window: window(1, 4, 3, 1, 0),
            out_channels: 1,
            groups: 1,
        };
        let input = TensorType::new(vec![1, 1, 4, 4], Range::INT8);
        let with = |factors: Vec<(i64, u8)>| QuantLinear::Conv {
            conv,
            weights: vec![1; 9],
            bias: vec![0],
            output: Accumulators::MaxPooled {
                window: window(1, 2, 2, 2, 0),
                factors,
                clamp: Range::INT8,
            },
        };
        assert!(with(vec![(1, 2)]).infer(&[&input]).is_ok());
        let refused = with(vec![(-1, 2)]).infer(&[&input]).unwrap_err();
        assert!(refused.contains("positive multipliers"), "{refused}");
        // A window over another shape than the convolution's output.
        let QuantLinear::Conv { output, .. } = with(vec![(1, 2)]) else {
            unreachable!()
        };
        let Accumulators::MaxPooled { factors, clamp, .. } = output else {
            unreachable!()
        };
        let misfit = QuantLinear::Conv {
            conv,
            weights: vec![1; 9],
            bias: vec![0],
            output: Accumulators::MaxPooled {
                window: window(1, 3, 2, 2, 0),
                factors: factors.clone(),
                clamp,
            },
        };
        assert!(misfit.infer(&[&input]).is_err());
        let dense = QuantLinear::Dense {
            weights: vec![vec![1; 4]],
            bias: vec![0],
            output: Accumulators::MaxPooled {
                window: window(1, 2, 2, 2, 0),
                factors,
                clamp,
            },
        };
        let refused = dense
            .infer(&[&TensorType::new(vec![1, 4], Range::INT8)])
            .unwrap_err();
        assert!(refused.contains("only into a convolution"), "{refused}");
    }
}

#[cfg(test)]
mod fused_residual {
    use super::*;
    use crate::model::builder::Builder;
    use crate::model::graph::{FloatModel, QuantModel};
    use crate::model::ops::elementwise::FloatElementwise;
    use crate::model::quantize::quantize;
    use crate::model::testing::{
        Numbers, assert_every_change_refused, error_against_float, samples, window,
    };

    const RELU: FloatOp = FloatOp::Elementwise(FloatElementwise::Clamp {
        min: 0.0,
        max: f64::INFINITY,
    });

    /// Conv → Relu → Conv, then `skip ± conv` (or `conv − skip`) → Relu: a residual block.
    /// With `visible`, the second Conv's output is an output of the model too, which keeps
    /// the Add apart.
    fn block(subtract: bool, conv_first: bool, visible: bool) -> FloatModel {
        let mut n = Numbers::new(5);
        let mut b = Builder::new();
        let x = b.input(vec![1, 2, 5, 5]);
        let conv = |n: &mut Numbers| {
            let conv = Conv {
                window: window(2, 5, 3, 1, 1),
                out_channels: 2,
                groups: 1,
            };
            FloatOp::Linear(FloatLinear::Conv {
                conv,
                weights: n.reals(conv.weights_len()),
                bias: n.reals(2),
            })
        };
        let stem = b.add_one("stem", conv(&mut n), vec![x]).unwrap();
        let skip = b.add_one("relu", RELU, vec![stem]).unwrap();
        let c = b.add_one("conv", conv(&mut n), vec![skip]).unwrap();
        let add = FloatOp::Elementwise(FloatElementwise::Add { subtract });
        let addends = if conv_first {
            vec![c, skip]
        } else {
            vec![skip, c]
        };
        let sum = b.add_one("add", add, addends).unwrap();
        let out = b.add_one("relu", RELU, vec![sum]).unwrap();
        b.finish(if visible { vec![out, c] } else { vec![out] })
    }

    fn quantised(model: &FloatModel) -> QuantModel {
        quantize(model, &samples(16, model.input_len(), 3))
            .unwrap()
            .0
    }

    fn kinds(m: &QuantModel) -> Vec<&'static str> {
        m.nodes().iter().map(|n| n.op.kind()).collect()
    }

    fn cost(m: &QuantModel) -> usize {
        use crate::circuit::r1cs::{Mode, R1cs};
        let mut cs = R1cs::new(Mode::Constraints);
        let input = (0..m.input_len()).map(|_| cs.alloc(0)).collect();
        m.synthesize(&mut cs, input);
        cs.constraint_count()
    }

    #[test]
    fn an_add_after_a_conv_joins_its_accumulators_and_stays_close_to_the_float_model() {
        let float = block(false, true, false);
        let fused = quantised(&float);
        let apart = quantised(&block(false, true, true));
        assert_eq!(kinds(&fused), ["Conv", "Conv"]);
        assert_eq!(kinds(&apart), ["Conv", "Conv", "Add"]);
        let QuantOp::Linear(conv) = &fused.nodes()[1].op else {
            unreachable!()
        };
        assert!(matches!(conv.output(), Accumulators::Residual { .. }));
        assert!(
            cost(&fused) < cost(&apart),
            "{} ≥ {}",
            cost(&fused),
            cost(&apart)
        );
        assert_as_close(&float, &fused, &apart);
    }

    /// One rounding instead of two: the fused model's first output is as close to the
    /// float model's as the unfused model's is, within an output unit.
    fn assert_as_close(float: &FloatModel, fused: &QuantModel, apart: &QuantModel) {
        let outputs = fused.output_len();
        for input in samples(20, float.input_len(), 8) {
            let expected = float.evaluate(&input);
            let error = |m: &QuantModel| {
                let scale = m.outputs()[0].scale as f64;
                let q = m.quantize_input(&input).unwrap();
                m.evaluate(&q).unwrap()[..outputs]
                    .iter()
                    .zip(&expected)
                    .map(|(&v, &e)| (v as f64 * scale - e as f64).abs() / scale)
                    .fold(0f64, f64::max)
            };
            let (fused, apart) = (error(fused), error(apart));
            assert!(fused <= apart + 1.0, "{fused} > {apart} + 1 for {input:?}");
        }
    }

    #[test]
    fn every_changed_witness_of_a_fused_residual_is_refused() {
        assert_every_change_refused(&block(false, true, false));
        // Subtracted from the skip connection's tensor, the conv keeps its own rescale
        // (its sign is the Add's); subtracting the skip connection fuses.
        assert_every_change_refused(&block(true, true, false));
    }

    #[test]
    fn only_an_add_of_a_tensor_computed_before_it_fuses() {
        assert_eq!(
            kinds(&quantised(&block(true, false, false))),
            ["Conv", "Conv", "Add"]
        );
        assert_eq!(
            kinds(&quantised(&block(true, true, false))),
            ["Conv", "Conv"]
        );
        assert_eq!(
            kinds(&quantised(&block(false, false, false))),
            ["Conv", "Conv"]
        );
        // Two dense layers of one input, added: the first is computed before the second,
        // which takes it in.
        let dense_sum = |visible: bool| {
            let mut n = Numbers::new(6);
            let mut b = Builder::new();
            let x = b.input(vec![1, 4]);
            let mut dense = || {
                FloatOp::Linear(FloatLinear::Dense {
                    weights: vec![n.reals(16)],
                    bias: n.reals(4),
                })
            };
            let first = b.add_one("first", dense(), vec![x]).unwrap();
            let second = b.add_one("second", dense(), vec![x]).unwrap();
            let add = FloatOp::Elementwise(FloatElementwise::Add { subtract: false });
            let sum = b.add_one("add", add, vec![first, second]).unwrap();
            b.finish(if visible {
                vec![sum, second]
            } else {
                vec![sum]
            })
        };
        let float = dense_sum(false);
        let model = quantised(&float);
        assert_eq!(kinds(&model), ["Dense", "Dense"]);
        let QuantOp::Linear(dense) = &model.nodes()[1].op else {
            unreachable!()
        };
        assert!(matches!(dense.output(), Accumulators::Residual { .. }));
        assert_as_close(&float, &model, &quantised(&dense_sum(true)));
    }

    #[test]
    fn a_constant_added_after_a_dense_layer_joins_its_accumulators() {
        // A position embedding: one value per token and feature, not a bias.
        let mut n = Numbers::new(7);
        let mut b = Builder::new();
        let x = b.input(vec![1, 4, 3]);
        let dense = FloatOp::Linear(FloatLinear::Dense {
            weights: vec![n.reals(15)],
            bias: n.reals(5),
        });
        let tokens = b.add_one("embed", dense, vec![x]).unwrap();
        let position = FloatOp::Elementwise(FloatElementwise::Affine {
            scale: Constant::scalar(1.0),
            offset: Constant {
                dims: vec![4, 5],
                values: n.reals(20),
            },
        });
        let out = b.add_one("position", position, vec![tokens]).unwrap();
        let float = b.finish(vec![out]);
        let model = quantised(&float);
        assert_eq!(kinds(&model), ["Constant", "Dense"]);
        assert_every_change_refused(&float);
        let (error, _) = error_against_float(&float, &model, 10, 9);
        let scale = model.outputs()[0].scale as f64;
        assert!(
            error <= 1.5 * scale,
            "{error} against a resolution of {scale}"
        );
    }

    #[test]
    fn a_residual_that_does_not_fit_is_refused() {
        let input = TensorType::new(vec![1, 4], Range::INT8);
        let dense = QuantLinear::Dense {
            weights: vec![vec![1; 8]],
            bias: vec![0, 0],
            output: Accumulators::Residual {
                terms: vec![(1, 3); 2],
                factors: vec![(1, 2); 2],
                clamp: Range::INT8,
            },
        };
        let with = |shape: Vec<usize>| dense.infer(&[&input, &TensorType::new(shape, Range::INT8)]);
        assert!(with(vec![1, 2]).is_ok());
        let refused = with(vec![1, 3]).unwrap_err();
        assert!(refused.contains("a residual of shape"), "{refused}");
        assert!(dense.infer(&[&input]).is_err());
    }
}
