//! Normalisation: Softmax and LayerNormalization (BatchNormalization is a per-channel
//! affine, in `linear`).
//!
//! **Softmax** over a row of n 8-bit values: `m = max(x)` (n − 1 comparisons), `d = x − m`
//! (free, in `[−255, 0]`), `e = round(2^15·exp(d·s))` by table (49), `S = Σe` (free, at
//! least 2^15), `r = round(2^K / S)` once per row (about 90), and `y = rescale(e·r)` to
//! 2^15ths (one product and B + 3 with B ≈ K): about 100 constraints per element. The
//! output is 16-bit, scale 2^−15, where accuracy needs the width.
//!
//! **LayerNormalization** over a row of n 8-bit values: `D_i = n·x_i − Σx` (free, exact),
//! `V = Σ D_i² + round(n³·ε / s²)` (n products), `r = ⌊2^K / √V⌋` once per row (about 140),
//! then `y_i = rescale(D_i·r·g_i + c_i)` with `g_i`, `c_i` the scale and bias folded with
//! √n and the output scale (one product and B + 3): about 50 constraints per element.
//! Because `D_i² ≤ V`, `|D_i·r| ≤ 2^K` whatever the input, which bounds the rescale.

use super::{FloatOp, QuantOp, TensorType};
use crate::circuit::{Arith, Range, Rescale, bits_for};
use crate::model::ModelError;
use crate::model::builder::{Builder, Value};
use crate::model::codec::{Reader, Writer};
use crate::model::onnx::OnnxNode;
use crate::model::quantize::{Quantizer, fixed_point};
use crate::model::tensor;

pub const OPERATORS: &[&str] = &["Softmax", "LayerNormalization"];

/// Bits of the fixed-point exponentials and of softmax's output.
const SOFTMAX_BITS: u32 = 15;
/// Bits of layer normalisation's inverse standard deviation.
const NORM_BITS: u32 = 24;

#[derive(Debug, Clone, PartialEq)]
pub enum FloatNorm {
    /// Softmax over the axes (one axis from opset 13; all axes from `axis` before).
    Softmax { axes: Vec<usize> },
    /// `(x − mean) / √(var + ε) · scale + bias` over the trailing axes from `axis`.
    LayerNorm {
        axis: usize,
        epsilon: f64,
        scale: Vec<f64>,
        bias: Vec<f64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QuantNorm {
    Softmax {
        axes: Vec<usize>,
        /// `round(2^15·exp(d·s))` for `d` in `[−(exp.len() − 1), 0]`.
        exp: Vec<i64>,
        /// K of the reciprocal `round(2^K / Σe)`.
        bits: u8,
    },
    LayerNorm {
        axis: usize,
        /// `round(n³·ε / s²)`, at least 1.
        epsilon: i64,
        /// Per normalised position: `rescale(D·r·multiplier + offset)`.
        multipliers: Vec<i64>,
        offsets: Vec<i64>,
        shift: u8,
        clamp: Range,
    },
}

/// The rows a normalisation works on: groups of element indices.
fn rows(shape: &[usize], axes: &[usize]) -> Result<Vec<Vec<usize>>, String> {
    Ok(super::pooling::reduce_groups(shape, axes, true)?.1)
}

fn trailing(shape: &[usize], axis: usize) -> Vec<usize> {
    (axis..shape.len()).collect()
}

impl FloatNorm {
    pub fn kind(&self) -> &'static str {
        match self {
            FloatNorm::Softmax { .. } => "Softmax",
            FloatNorm::LayerNorm { .. } => "LayerNorm",
        }
    }

    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, String> {
        let [input] = inputs else {
            return Err(format!("{} inputs; 1 expected", inputs.len()));
        };
        match self {
            FloatNorm::Softmax { axes } => {
                rows(input, axes)?;
            }
            FloatNorm::LayerNorm {
                axis, scale, bias, ..
            } => {
                if *axis >= input.len() {
                    return Err(format!("axis {axis} of a tensor of rank {}", input.len()));
                }
                let n = tensor::len(&input[*axis..]);
                if scale.len() != n || bias.len() != n {
                    return Err(format!("scale and bias for other than {n} values"));
                }
            }
        }
        Ok(vec![input.to_vec()])
    }

    pub fn evaluate(&self, inputs: &[&[f64]], shapes: &[&[usize]]) -> Vec<Vec<f64>> {
        let x = inputs[0];
        let mut y = vec![0.0; x.len()];
        match self {
            FloatNorm::Softmax { axes } => {
                for row in rows(shapes[0], axes).expect("checked") {
                    let max = row.iter().map(|&i| x[i]).fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = row.iter().map(|&i| libm::exp(x[i] - max)).sum();
                    for &i in &row {
                        y[i] = libm::exp(x[i] - max) / sum;
                    }
                }
            }
            FloatNorm::LayerNorm {
                axis,
                epsilon,
                scale,
                bias,
            } => {
                for row in rows(shapes[0], &trailing(shapes[0], *axis)).expect("checked") {
                    let n = row.len() as f64;
                    let mean = row.iter().map(|&i| x[i]).sum::<f64>() / n;
                    let var = row.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / n;
                    let inv = 1.0 / (var + epsilon).sqrt();
                    for (j, &i) in row.iter().enumerate() {
                        y[i] = (x[i] - mean) * inv * scale[j] + bias[j];
                    }
                }
            }
        }
        vec![y]
    }
}

impl FloatNorm {
    /// Folds `y·scale + offset` after a LayerNorm (its elementwise affine, exported as a Mul
    /// and an Add) into its scale and bias, when the constants vary only over the
    /// normalised axes of the output, of shape `shape`. Returns whether it did.
    pub fn fold_constants(
        &mut self,
        shape: &[usize],
        scale: &crate::model::tensor::Constant,
        offset: &crate::model::tensor::Constant,
    ) -> bool {
        let FloatNorm::LayerNorm {
            axis,
            scale: gamma,
            bias: beta,
            ..
        } = self
        else {
            return false;
        };
        let normalised = &shape[*axis..];
        let per_position = |c: &crate::model::tensor::Constant| {
            (c.dims.len() <= normalised.len())
                .then(|| c.broadcast_to(normalised).ok())
                .flatten()
        };
        match (per_position(scale), per_position(offset)) {
            (Some(s), Some(o)) => {
                for j in 0..gamma.len() {
                    beta[j] = beta[j] * s[j] + o[j];
                    gamma[j] *= s[j];
                }
                true
            }
            _ => false,
        }
    }
}

impl QuantNorm {
    pub fn kind(&self) -> &'static str {
        match self {
            QuantNorm::Softmax { .. } => "Softmax",
            QuantNorm::LayerNorm { .. } => "LayerNorm",
        }
    }

    /// Per row size n: the range of `Σe` and the rescale of `e·r`.
    fn softmax_parts(n: usize, bits: u8) -> (Range, Rescale) {
        let one = 1i64 << SOFTMAX_BITS;
        (
            Range::new(one, one * n as i64),
            Rescale {
                multiplier: 1,
                shift: bits - SOFTMAX_BITS as u8,
                clamp: Range::new(0, one),
            },
        )
    }

    /// For a row of n values in `range`: the range of `Σ D²` plus ε.
    fn variance_range(n: usize, range: Range, epsilon: i64) -> Range {
        let width = range.hi as i128 - range.lo as i128;
        let d = n as i128 * width;
        let q = (n as i128 * d * d).min(1 << 60) as i64;
        Range::new(epsilon, q.saturating_add(epsilon))
    }

    pub fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let [input] = inputs else {
            return Err(format!("{} inputs; 1 expected", inputs.len()));
        };
        let range = input.range;
        if range.size() > crate::circuit::MAX_LOOKUP_DOMAIN {
            return Err(format!("an input in {range}; at most 256 values"));
        }
        let out = match self {
            QuantNorm::Softmax { axes, exp, bits } => {
                let row_len = rows(&input.shape, axes)?.first().map_or(0, Vec::len);
                if exp.len() as u128 != range.size()
                    || exp.iter().any(|&e| !(0..=1 << SOFTMAX_BITS).contains(&e))
                {
                    return Err("an exponential table that does not fit the input".into());
                }
                if exp.last() != Some(&(1 << SOFTMAX_BITS)) {
                    return Err("exp(0) must be one".into());
                }
                if *bits as u32 <= SOFTMAX_BITS || *bits > 50 || row_len == 0 {
                    return Err(format!("reciprocal bits {bits}"));
                }
                let (_, rescale) = Self::softmax_parts(row_len, *bits);
                rescale.check(Range::new(0, 1i64 << bits))?;
                Range::new(0, 1 << SOFTMAX_BITS)
            }
            QuantNorm::LayerNorm {
                axis,
                epsilon,
                multipliers,
                offsets,
                shift,
                clamp,
            } => {
                if *axis >= input.shape.len() {
                    return Err(format!("axis {axis}"));
                }
                let n = tensor::len(&input.shape[*axis..]);
                if multipliers.len() != n || offsets.len() != n || *epsilon < 1 {
                    return Err("parameters for another row length".into());
                }
                let variance = Self::variance_range(n, range, *epsilon);
                if !variance.is_bounded() || variance.hi >= 1 << 50 {
                    return Err("a variance beyond 50 bits".into());
                }
                let t = Range::new(-(1 << NORM_BITS), 1 << NORM_BITS);
                let mut out: Option<Range> = None;
                for (&m, &c) in multipliers.iter().zip(offsets) {
                    let sum = t.dot([m], c);
                    let rescale = Rescale {
                        multiplier: 1,
                        shift: *shift,
                        clamp: *clamp,
                    };
                    rescale.check(sum)?;
                    let r = rescale.output_range(sum);
                    out = Some(out.map_or(r, |o| o.union(r)));
                }
                out.unwrap_or(*clamp)
            }
        };
        Ok(vec![TensorType::new(input.shape.clone(), out)])
    }

    pub fn synthesize<A: Arith>(
        &self,
        arith: &mut A,
        inputs: &[&[A::Value]],
        types: &[&TensorType],
    ) -> Vec<Vec<A::Value>> {
        let x = inputs[0];
        let range = types[0].range;
        let mut y: Vec<Option<A::Value>> = vec![None; x.len()];
        match self {
            QuantNorm::Softmax { axes, exp, bits } => {
                let width = range.hi - range.lo;
                let domain = Range::new(-width, 0);
                for row in rows(&types[0].shape, axes).expect("checked") {
                    let mut max = x[row[0]].clone();
                    for &i in &row[1..] {
                        max = arith.max(&max, &x[i], range);
                    }
                    let e: Vec<A::Value> = row
                        .iter()
                        .map(|&i| {
                            let d = arith.linear(&[(1, &x[i]), (-1, &max)], 0);
                            arith.lookup(&d, domain, &[exp]).remove(0)
                        })
                        .collect();
                    let terms: Vec<(i64, &A::Value)> = e.iter().map(|v| (1, v)).collect();
                    let sum = arith.linear(&terms, 0);
                    let (sum_range, rescale) = Self::softmax_parts(row.len(), *bits);
                    let r = arith.reciprocal(&sum, sum_range, *bits as u32);
                    for (&i, e) in row.iter().zip(&e) {
                        let p = arith.mul(e, &r);
                        // e ≤ 2^15 and r ≤ 2^K / 2^15: e·r ≤ 2^K.
                        y[i] = Some(arith.rescale(&p, Range::new(0, 1i64 << bits), rescale));
                    }
                }
            }
            QuantNorm::LayerNorm {
                axis,
                epsilon,
                multipliers,
                offsets,
                shift,
                clamp,
            } => {
                for row in
                    rows(&types[0].shape, &trailing(&types[0].shape, *axis)).expect("checked")
                {
                    let n = row.len() as i64;
                    let d: Vec<A::Value> = row
                        .iter()
                        .map(|&i| {
                            let mut terms: Vec<(i64, &A::Value)> =
                                row.iter().map(|&j| (-1, &x[j])).collect();
                            terms.push((n, &x[i]));
                            arith.linear(&terms, 0)
                        })
                        .collect();
                    let squares: Vec<A::Value> = d.iter().map(|v| arith.mul(v, v)).collect();
                    let terms: Vec<(i64, &A::Value)> = squares.iter().map(|v| (1, v)).collect();
                    let variance = arith.linear(&terms, *epsilon);
                    let variance_range = Self::variance_range(row.len(), range, *epsilon);
                    let r = arith.inverse_sqrt(&variance, variance_range, NORM_BITS);
                    for (j, (&i, d)) in row.iter().zip(&d).enumerate() {
                        let t = arith.mul(d, &r);
                        let sum = arith.linear(&[(multipliers[j], &t)], offsets[j]);
                        let t_range = Range::new(-(1 << NORM_BITS), 1 << NORM_BITS);
                        let rescale = Rescale {
                            multiplier: 1,
                            shift: *shift,
                            clamp: *clamp,
                        };
                        y[i] = Some(arith.rescale(
                            &sum,
                            t_range.dot([multipliers[j]], offsets[j]),
                            rescale,
                        ));
                    }
                }
            }
        }
        vec![y.into_iter().map(|v| v.expect("every element")).collect()]
    }

    pub fn weights(&self) -> usize {
        match self {
            QuantNorm::Softmax { exp, .. } => exp.len(),
            QuantNorm::LayerNorm { multipliers, .. } => 2 * multipliers.len(),
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            QuantNorm::Softmax { axes, exp, bits } => {
                w.u8(1);
                w.usizes(axes);
                w.i64s(exp);
                w.u8(*bits);
            }
            QuantNorm::LayerNorm {
                axis,
                epsilon,
                multipliers,
                offsets,
                shift,
                clamp,
            } => {
                w.u8(2);
                w.usize(*axis);
                w.i64(*epsilon);
                w.i64s(multipliers);
                w.i64s(offsets);
                w.shift_and_clamp(*shift, *clamp);
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Self, ModelError> {
        Ok(match r.u8()? {
            1 => QuantNorm::Softmax {
                axes: r.usizes()?,
                exp: r.i64s()?,
                bits: r.u8()?,
            },
            2 => QuantNorm::LayerNorm {
                axis: r.usize()?,
                epsilon: r.i64()?,
                multipliers: r.i64s()?,
                offsets: r.i64s()?,
                shift: r.u8()?,
                clamp: r.range()?,
            },
            _ => return Err(r.invalid("unknown normalisation")),
        })
    }
}

pub fn quantize(op: &FloatNorm, node: usize, q: &mut Quantizer) -> Result<(), ModelError> {
    let (input, s) = q.input_narrow(node, 0)?;
    let t = q.quant_type(input).clone();
    let range = t.range;
    match op {
        FloatNorm::Softmax { axes } => {
            let width = range.hi - range.lo;
            let one = (1i64 << SOFTMAX_BITS) as f64;
            let exp = (-width..=0)
                .map(|d| (one * libm::exp(d as f64 * s)).round() as i64)
                .collect();
            let n = rows(&t.shape, axes)
                .map_err(ModelError::InvalidModel)?
                .first()
                .map_or(1, Vec::len);
            let bits = (2 * SOFTMAX_BITS + 1 + bits_for(n as i128)) as u8;
            let quant = QuantNorm::Softmax {
                axes: axes.clone(),
                exp,
                bits,
            };
            let out = q.emit(QuantOp::Norm(quant), vec![input])?;
            q.map_output(node, 0, out[0], 1.0 / one);
        }
        FloatNorm::LayerNorm {
            axis,
            epsilon,
            scale,
            bias,
        } => {
            let target = q.target(node, 0);
            let n = scale.len() as f64;
            let eps = ((n * n * n * epsilon / (s * s)).round() as i64).max(1);
            // y = D·r·√n·γ / (2^K·s_out) + β/s_out
            let unit = (1u64 << NORM_BITS) as f64;
            let ratios: Vec<f64> = scale
                .iter()
                .map(|g| n.sqrt() * g / (unit * target.scale))
                .collect();
            let (multipliers, shift) = fixed_point(&ratios);
            let offsets = bias
                .iter()
                .map(|b| (b / target.scale * (1u64 << shift) as f64).round() as i64)
                .collect();
            let quant = QuantNorm::LayerNorm {
                axis: *axis,
                epsilon: eps,
                multipliers,
                offsets,
                shift,
                clamp: target.clamp,
            };
            let out = q.emit(QuantOp::Norm(quant), vec![input])?;
            q.finish_target(node, 0, out[0], target);
        }
    }
    Ok(())
}

pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    let op = match n.op {
        "Softmax" => {
            n.check_attributes(&["axis"])?;
            let shape = b
                .shape_of(n.input(0))
                .ok_or_else(|| n.invalid("needs an input"))?;
            let modern = n.opset >= 13;
            let axis = tensor::axis(n.int("axis", if modern { -1 } else { 1 }), shape.len())
                .map_err(|e| n.invalid(e))?;
            FloatNorm::Softmax {
                axes: if modern {
                    vec![axis]
                } else {
                    trailing(&shape, axis)
                },
            }
        }
        "LayerNormalization" => {
            n.check_attributes(&["axis", "epsilon", "stash_type"])?;
            if n.output_used(1) || n.output_used(2) {
                return Err(n.invalid("the Mean and InvStdDev outputs are not supported"));
            }
            let shape = b
                .shape_of(n.input(0))
                .ok_or_else(|| n.invalid("needs an input"))?;
            let axis = tensor::axis(n.int("axis", -1), shape.len()).map_err(|e| n.invalid(e))?;
            let normalised = &shape[axis..];
            let per_position = |i: usize, default: f64| -> Result<Vec<f64>, ModelError> {
                match n.optional_constant(i)? {
                    Some(c) => c.broadcast_to(normalised).map_err(|e| n.invalid(e)),
                    None => Ok(vec![default; tensor::len(normalised)]),
                }
            };
            FloatNorm::LayerNorm {
                axis,
                epsilon: n.float("epsilon", 1e-5),
                scale: per_position(1, 1.0)?,
                bias: per_position(2, 0.0)?,
            }
        }
        _ => return Ok(None),
    };
    let Value::Tensor(x) = n.input(0) else {
        return Err(n.invalid("the input must be computed"));
    };
    let out = b
        .add_one(&n.name, FloatOp::Norm(op), vec![*x])
        .map_err(|e| n.invalid(e))?;
    Ok(Some(vec![Value::Tensor(out)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{Numbers, assert_every_change_refused};

    #[test]
    fn every_changed_witness_of_softmax_and_layer_norm_is_refused() {
        let mut n = Numbers::new(8);
        let mut b = Builder::new();
        let x = b.input(vec![2, 5]);
        let soft = b
            .add_one(
                "softmax",
                FloatOp::Norm(FloatNorm::Softmax { axes: vec![1] }),
                vec![x],
            )
            .unwrap();
        let norm = FloatNorm::LayerNorm {
            axis: 1,
            epsilon: 1e-5,
            scale: n.reals(5),
            bias: n.reals(5),
        };
        let normal = b
            .add_one("layernorm", FloatOp::Norm(norm), vec![x])
            .unwrap();
        assert_every_change_refused(&b.finish(vec![soft, normal]));
    }

    #[test]
    fn softmax_rows_sum_to_one_and_follow_the_float() {
        let mut b = Builder::new();
        let x = b.input(vec![1, 6]);
        let soft = b
            .add_one(
                "softmax",
                FloatOp::Norm(FloatNorm::Softmax { axes: vec![1] }),
                vec![x],
            )
            .unwrap();
        let float = b.finish(vec![soft]);
        let input = [0.5f32, -1.0, 2.0, 0.0, 1.5, -0.25];
        let (model, _) = crate::model::quantize::quantize(&float, &[input.to_vec()]).unwrap();
        let q = model.dequantize_output(
            &model
                .evaluate(&model.quantize_input(&input).unwrap())
                .unwrap(),
        );
        let exact = float.evaluate(&input);
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-3);
        for (q, e) in q.iter().zip(exact) {
            assert!((q - e as f64).abs() < 0.01, "{q} vs {e}");
        }
    }
}
