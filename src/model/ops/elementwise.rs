//! Elementwise arithmetic: Add, Sub, Mul and Div with a constant, Add, Sub and Mul of two
//! computed tensors (residuals, gates, attention), MatMul of two computed tensors, Neg,
//! Relu and Clip; numpy broadcasting throughout. On constants alone these fold at import
//! (Sqrt, Pow, Equal and Where too, for the shape arithmetic of exported graphs).
//!
//! Every operator here ends in one rescale to its output's scale and range (see
//! `circuit::gadgets`): with B the bits of the rescaled value, about 8 + 12 for the
//! 12-bit multipliers chosen here,
//!
//! | operator | constraints per output element |
//! | --- | --- |
//! | `x·c + d` with constants (Add, Sub, Mul, Div by a constant; BatchNorm on its own) | B + 3 |
//! | Relu, Clip (same scale, so no multiplier) | B + 3 with B ≈ 8, or + n + 1 for a clamp that is not a power of two wide |
//! | `a ± b` | B + 3 |
//! | `a·b` | B + 6 (one product) |
//! | MatMul of `[M, K]` by `[K, N]` | K products + B + 3 |

use super::{FloatOp, QuantOp, TensorType};
use crate::circuit::{Arith, Range, Rescale};
use crate::model::ModelError;
use crate::model::builder::{Builder, Value};
use crate::model::codec::{Reader, Writer};
use crate::model::onnx::OnnxNode;
use crate::model::quantize::{Quantizer, fixed_point};
use crate::model::tensor::{self, Constant};

pub const OPERATORS: &[&str] = &["Add", "Sub", "Mul", "Div", "Neg", "Relu", "Clip", "MatMul"];

/// Operators accepted only on constants.
pub const CONSTANT_OPERATORS: &[&str] = &["Sqrt", "Pow", "Equal", "Where"];

#[derive(Debug, Clone, PartialEq)]
pub enum FloatElementwise {
    /// `x·scale + offset`, the constants broadcast with `x`.
    Affine { scale: Constant, offset: Constant },
    /// `a + b`, or `a − b`.
    Add { subtract: bool },
    /// `a·b·factor` (a constant factor after a product folds into it).
    Mul { factor: f64 },
    /// numpy's matmul of two computed tensors, times `factor`.
    MatMul { factor: f64 },
    /// `clamp(x, min, max)`: Relu and Clip.
    Clamp { min: f64, max: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QuantElementwise {
    /// `rescale(x·m + c)` with `m` and `c` from tensors of `params_shape`, broadcast with `x`.
    Affine {
        params_shape: Vec<usize>,
        multipliers: Vec<i64>,
        offsets: Vec<i64>,
        shift: u8,
        clamp: Range,
    },
    /// `rescale(a·m_a + b·m_b)`.
    Add {
        multipliers: [i64; 2],
        shift: u8,
        clamp: Range,
    },
    /// `rescale(a·b·m)`.
    Mul {
        multiplier: i64,
        shift: u8,
        clamp: Range,
    },
    /// `rescale(Σ_k a_ik·b_kj·m)`.
    MatMul {
        multiplier: i64,
        shift: u8,
        clamp: Range,
    },
}

/// The shape and operand layout of numpy's matmul.
struct MatMulShape {
    /// Output shape.
    shape: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    /// For each output matrix, the matrix of `a` and of `b` it multiplies.
    batches: Vec<(usize, usize)>,
}

fn matmul_shape(a: &[usize], b: &[usize]) -> Result<MatMulShape, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul of a scalar".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!("cannot multiply {a:?} by {b:?}"));
    }
    let (a_batch, b_batch) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch = tensor::broadcast(a_batch, b_batch)?;
    let a_sources = tensor::broadcast_sources(a_batch, &batch);
    let b_sources = tensor::broadcast_sources(b_batch, &batch);
    let mut shape = batch.clone();
    if a.len() > 1 {
        shape.push(m);
    }
    if b.len() > 1 {
        shape.push(n);
    }
    Ok(MatMulShape {
        shape,
        m,
        k,
        n,
        batches: a_sources.into_iter().zip(b_sources).collect(),
    })
}

/// Calls `visit(output_index, terms)` with the `(a index, b index)` pairs of each output.
fn for_each_dot(shape: &MatMulShape, mut visit: impl FnMut(usize, &[(usize, usize)])) {
    let (m, k, n) = (shape.m, shape.k, shape.n);
    let mut terms = Vec::with_capacity(k);
    for (batch, &(ab, bb)) in shape.batches.iter().enumerate() {
        for i in 0..m {
            for j in 0..n {
                terms.clear();
                terms.extend((0..k).map(|t| (ab * m * k + i * k + t, bb * k * n + t * n + j)));
                visit((batch * m + i) * n + j, &terms);
            }
        }
    }
}

impl FloatElementwise {
    pub fn kind(&self) -> &'static str {
        match self {
            FloatElementwise::Affine { .. } => "Affine",
            FloatElementwise::Add { .. } => "Add",
            FloatElementwise::Mul { .. } => "Mul",
            FloatElementwise::MatMul { .. } => "MatMul",
            FloatElementwise::Clamp { .. } => "Clamp",
        }
    }

    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, String> {
        let arity = match self {
            FloatElementwise::Affine { .. } | FloatElementwise::Clamp { .. } => 1,
            _ => 2,
        };
        if inputs.len() != arity {
            return Err(format!("{} inputs; {arity} expected", inputs.len()));
        }
        Ok(vec![match self {
            FloatElementwise::Affine { scale, offset } => {
                tensor::broadcast(&tensor::broadcast(inputs[0], &scale.dims)?, &offset.dims)?
            }
            FloatElementwise::Add { .. } | FloatElementwise::Mul { .. } => {
                tensor::broadcast(inputs[0], inputs[1])?
            }
            FloatElementwise::MatMul { .. } => matmul_shape(inputs[0], inputs[1])?.shape,
            FloatElementwise::Clamp { .. } => inputs[0].to_vec(),
        }])
    }

    pub fn evaluate(&self, inputs: &[&[f64]], shapes: &[&[usize]]) -> Vec<Vec<f64>> {
        let out_shape = self.infer(shapes).expect("checked at import").remove(0);
        let source = |k: usize| tensor::broadcast_sources(shapes[k], &out_shape);
        vec![match self {
            FloatElementwise::Affine { scale, offset } => {
                let (s, o) = (
                    scale.broadcast_to(&out_shape).expect("checked"),
                    offset.broadcast_to(&out_shape).expect("checked"),
                );
                source(0)
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| inputs[0][x] * s[i] + o[i])
                    .collect()
            }
            FloatElementwise::Add { subtract } => {
                let sign = if *subtract { -1.0 } else { 1.0 };
                source(0)
                    .iter()
                    .zip(source(1))
                    .map(|(&a, b)| inputs[0][a] + sign * inputs[1][b])
                    .collect()
            }
            FloatElementwise::Mul { factor } => source(0)
                .iter()
                .zip(source(1))
                .map(|(&a, b)| inputs[0][a] * inputs[1][b] * factor)
                .collect(),
            FloatElementwise::MatMul { factor } => {
                let shape = matmul_shape(shapes[0], shapes[1]).expect("checked");
                let mut out = vec![0.0; tensor::len(&shape.shape)];
                for_each_dot(&shape, |o, terms| {
                    out[o] = factor
                        * terms
                            .iter()
                            .map(|&(a, b)| inputs[0][a] * inputs[1][b])
                            .sum::<f64>();
                });
                out
            }
            FloatElementwise::Clamp { min, max } => {
                inputs[0].iter().map(|&x| x.max(*min).min(*max)).collect()
            }
        }]
    }
}

impl FloatElementwise {
    /// Folds a constant factor (one value, no offset) into a product whose output has
    /// `shape`. Returns whether it did.
    pub fn fold_factor(&mut self, shape: &[usize], scale: &Constant, offset: &Constant) -> bool {
        let uniform = scale.values.iter().all(|&v| v == scale.values[0]);
        let no_offset = offset.values.iter().all(|&v| v == 0.0);
        // A constant of higher rank would broadcast the product to a larger shape.
        let keeps = |c: &Constant| tensor::broadcast(shape, &c.dims).is_ok_and(|s| s == shape);
        let small = keeps(scale) && keeps(offset);
        match self {
            FloatElementwise::Mul { factor } | FloatElementwise::MatMul { factor }
                if uniform && no_offset && small && !scale.values.is_empty() =>
            {
                *factor *= scale.values[0];
                true
            }
            _ => false,
        }
    }
}

impl QuantElementwise {
    pub fn kind(&self) -> &'static str {
        match self {
            QuantElementwise::Affine { .. } => "Affine",
            QuantElementwise::Add { .. } => "Add",
            QuantElementwise::Mul { .. } => "Mul",
            QuantElementwise::MatMul { .. } => "MatMul",
        }
    }

    fn rescale(shift: u8, clamp: Range) -> Rescale {
        Rescale {
            multiplier: 1,
            shift,
            clamp,
        }
    }

    /// The range of what is rescaled, for each output element's parameters.
    fn sum_range(&self, inputs: &[&TensorType]) -> Range {
        match self {
            QuantElementwise::Affine {
                multipliers,
                offsets,
                ..
            } => multipliers
                .iter()
                .zip(offsets)
                .map(|(&m, &c)| inputs[0].range.dot([m], c))
                .reduce(Range::union)
                .unwrap_or(Range::point(0)),
            QuantElementwise::Add { multipliers, .. } => inputs[0]
                .range
                .scale(multipliers[0])
                .plus(inputs[1].range.scale(multipliers[1])),
            QuantElementwise::Mul { multiplier, .. } => {
                inputs[0].range.times(inputs[1].range).scale(*multiplier)
            }
            QuantElementwise::MatMul { multiplier, .. } => {
                let k = matmul_shape(&inputs[0].shape, &inputs[1].shape)
                    .map(|s| s.k)
                    .unwrap_or(0);
                inputs[0]
                    .range
                    .times(inputs[1].range)
                    .scale(*multiplier)
                    .scale(k as i64)
            }
        }
    }

    pub fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let (shift, clamp) = match self {
            QuantElementwise::Affine {
                params_shape,
                multipliers,
                offsets,
                shift,
                clamp,
            } => {
                if tensor::count(params_shape)? != multipliers.len()
                    || multipliers.len() != offsets.len()
                    || multipliers.is_empty()
                {
                    return Err("parameters do not fill their shape".into());
                }
                (*shift, *clamp)
            }
            QuantElementwise::Add { shift, clamp, .. }
            | QuantElementwise::Mul { shift, clamp, .. }
            | QuantElementwise::MatMul { shift, clamp, .. } => (*shift, *clamp),
        };
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| &t.shape[..]).collect();
        let shape = match self {
            QuantElementwise::Affine { params_shape, .. } if shapes.len() == 1 => {
                tensor::broadcast(shapes[0], params_shape)?
            }
            QuantElementwise::Add { .. } | QuantElementwise::Mul { .. } if shapes.len() == 2 => {
                tensor::broadcast(shapes[0], shapes[1])?
            }
            QuantElementwise::MatMul { multiplier, .. } if shapes.len() == 2 => {
                if *multiplier == 0 {
                    return Err("a zero multiplier".into());
                }
                matmul_shape(shapes[0], shapes[1])?.shape
            }
            _ => return Err(format!("{} inputs", inputs.len())),
        };
        let sum = self.sum_range(inputs);
        let rescale = Self::rescale(shift, clamp);
        rescale.check(sum)?;
        Ok(vec![TensorType::new(shape, rescale.output_range(sum))])
    }

    pub fn synthesize<A: Arith>(
        &self,
        arith: &mut A,
        inputs: &[&[A::Value]],
        types: &[&TensorType],
        output: &TensorType,
    ) -> Vec<Vec<A::Value>> {
        let sum_range = self.sum_range(types);
        let source = |k: usize| tensor::broadcast_sources(&types[k].shape, &output.shape);
        let out = match self {
            QuantElementwise::Affine {
                params_shape,
                multipliers,
                offsets,
                shift,
                clamp,
            } => {
                let params = tensor::broadcast_sources(params_shape, &output.shape);
                source(0)
                    .iter()
                    .zip(params)
                    .map(|(&x, p)| {
                        let t = arith.linear(&[(multipliers[p], &inputs[0][x])], offsets[p]);
                        arith.rescale(&t, sum_range, Self::rescale(*shift, *clamp))
                    })
                    .collect()
            }
            QuantElementwise::Add {
                multipliers,
                shift,
                clamp,
            } => source(0)
                .iter()
                .zip(source(1))
                .map(|(&a, b)| {
                    let t = arith.linear(
                        &[
                            (multipliers[0], &inputs[0][a]),
                            (multipliers[1], &inputs[1][b]),
                        ],
                        0,
                    );
                    arith.rescale(&t, sum_range, Self::rescale(*shift, *clamp))
                })
                .collect(),
            QuantElementwise::Mul {
                multiplier,
                shift,
                clamp,
            } => {
                let product = types[0].range.times(types[1].range);
                source(0)
                    .iter()
                    .zip(source(1))
                    .map(|(&a, b)| {
                        let p = arith.mul(&inputs[0][a], &inputs[1][b]);
                        let rescale = Rescale {
                            multiplier: *multiplier,
                            shift: *shift,
                            clamp: *clamp,
                        };
                        arith.rescale(&p, product, rescale)
                    })
                    .collect()
            }
            QuantElementwise::MatMul {
                multiplier,
                shift,
                clamp,
            } => {
                let shape = matmul_shape(&types[0].shape, &types[1].shape).expect("checked");
                let mut out: Vec<Option<A::Value>> = vec![None; output.len()];
                for_each_dot(&shape, |o, terms| {
                    let products: Vec<A::Value> = terms
                        .iter()
                        .map(|&(a, b)| arith.mul(&inputs[0][a], &inputs[1][b]))
                        .collect();
                    let sum: Vec<(i64, &A::Value)> =
                        products.iter().map(|p| (*multiplier, p)).collect();
                    let t = arith.linear(&sum, 0);
                    out[o] = Some(arith.rescale(&t, sum_range, Self::rescale(*shift, *clamp)));
                });
                out.into_iter().map(|v| v.expect("every output")).collect()
            }
        };
        vec![out]
    }

    pub fn weights(&self) -> usize {
        match self {
            QuantElementwise::Affine { multipliers, .. } => multipliers.len(),
            _ => 0,
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            QuantElementwise::Affine {
                params_shape,
                multipliers,
                offsets,
                shift,
                clamp,
            } => {
                w.u8(1);
                w.usizes(params_shape);
                w.i64s(multipliers);
                w.i64s(offsets);
                w.shift_and_clamp(*shift, *clamp);
            }
            QuantElementwise::Add {
                multipliers,
                shift,
                clamp,
            } => {
                w.u8(2);
                w.i64(multipliers[0]);
                w.i64(multipliers[1]);
                w.shift_and_clamp(*shift, *clamp);
            }
            QuantElementwise::Mul {
                multiplier,
                shift,
                clamp,
            } => {
                w.u8(3);
                w.i64(*multiplier);
                w.shift_and_clamp(*shift, *clamp);
            }
            QuantElementwise::MatMul {
                multiplier,
                shift,
                clamp,
            } => {
                w.u8(4);
                w.i64(*multiplier);
                w.shift_and_clamp(*shift, *clamp);
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Self, ModelError> {
        Ok(match r.u8()? {
            1 => {
                let params_shape = r.usizes()?;
                let multipliers = r.i64s()?;
                let offsets = r.i64s()?;
                let (shift, clamp) = r.shift_and_clamp()?;
                QuantElementwise::Affine {
                    params_shape,
                    multipliers,
                    offsets,
                    shift,
                    clamp,
                }
            }
            2 => {
                let multipliers = [r.i64()?, r.i64()?];
                let (shift, clamp) = r.shift_and_clamp()?;
                QuantElementwise::Add {
                    multipliers,
                    shift,
                    clamp,
                }
            }
            3 => {
                let multiplier = r.i64()?;
                let (shift, clamp) = r.shift_and_clamp()?;
                QuantElementwise::Mul {
                    multiplier,
                    shift,
                    clamp,
                }
            }
            4 => {
                let multiplier = r.i64()?;
                let (shift, clamp) = r.shift_and_clamp()?;
                QuantElementwise::MatMul {
                    multiplier,
                    shift,
                    clamp,
                }
            }
            _ => return Err(r.invalid("unknown elementwise operator")),
        })
    }
}

/// Quantisation: each operator's real-valued rescale factor becomes a 12-bit fixed-point
/// multiplier (see [`fixed_point`]); Relu and Clip keep their input's scale, so they need
/// none.
pub fn quantize(op: &FloatElementwise, node: usize, q: &mut Quantizer) -> Result<(), ModelError> {
    if let FloatElementwise::Clamp { min, max } = op {
        let (input, scale) = q.input(node, 0);
        let range = q.input_type(node, 0).range;
        let bound = |v: f64| (v / scale).round().clamp(range.lo as f64, range.hi as f64) as i64;
        // min(max(x, min), max): when min > max, everything becomes max.
        let clamp = Range::new(bound(*min).min(bound(*max)), bound(*max));
        let out = q.emit(
            QuantOp::Elementwise(QuantElementwise::Affine {
                params_shape: vec![],
                multipliers: vec![1],
                offsets: vec![0],
                shift: 0,
                clamp,
            }),
            vec![input],
        )?;
        q.map_output(node, 0, out[0], scale);
        return Ok(());
    }
    let target = q.target(node, 0);
    let inputs: Vec<(usize, f64)> = (0..q.input_count(node)).map(|i| q.input(node, i)).collect();
    let (quant, ids) = match op {
        FloatElementwise::Affine { scale, offset } => {
            let s_x = inputs[0].1;
            let shape =
                tensor::broadcast(&scale.dims, &offset.dims).map_err(ModelError::InvalidModel)?;
            let scales = scale
                .broadcast_to(&shape)
                .map_err(ModelError::InvalidModel)?;
            let offsets = offset
                .broadcast_to(&shape)
                .map_err(ModelError::InvalidModel)?;
            let ratios: Vec<f64> = scales.iter().map(|s| s * s_x / target.scale).collect();
            let (multipliers, shift) = fixed_point(&ratios);
            let unit = (1u64 << shift) as f64;
            let offsets = offsets
                .iter()
                .map(|o| (o / target.scale * unit).round() as i64)
                .collect();
            (
                QuantElementwise::Affine {
                    params_shape: shape,
                    multipliers,
                    offsets,
                    shift,
                    clamp: target.clamp,
                },
                vec![inputs[0].0],
            )
        }
        FloatElementwise::Add { subtract } => {
            let sign = if *subtract { -1.0 } else { 1.0 };
            let ratios = [
                inputs[0].1 / target.scale,
                sign * inputs[1].1 / target.scale,
            ];
            let (m, shift) = fixed_point(&ratios);
            (
                QuantElementwise::Add {
                    multipliers: [m[0], m[1]],
                    shift,
                    clamp: target.clamp,
                },
                vec![inputs[0].0, inputs[1].0],
            )
        }
        FloatElementwise::Mul { factor } | FloatElementwise::MatMul { factor } => {
            let (m, shift) = fixed_point(&[factor * inputs[0].1 * inputs[1].1 / target.scale]);
            let multiplier = m[0].max(1);
            let quant = if matches!(op, FloatElementwise::Mul { .. }) {
                QuantElementwise::Mul {
                    multiplier,
                    shift,
                    clamp: target.clamp,
                }
            } else {
                QuantElementwise::MatMul {
                    multiplier,
                    shift,
                    clamp: target.clamp,
                }
            };
            (quant, vec![inputs[0].0, inputs[1].0])
        }
        FloatElementwise::Clamp { .. } => unreachable!("handled above"),
    };
    let out = q.emit(QuantOp::Elementwise(quant), ids)?;
    q.finish_target(node, 0, out[0], target);
    Ok(())
}

/// `a + b` (or `a − b`): a node for two computed tensors, an affine node for one, a
/// folded constant for none. Adding zero changes nothing and makes no node.
pub fn add(
    b: &mut Builder,
    name: &str,
    x: &Value,
    y: &Value,
    subtract: bool,
) -> Result<Value, String> {
    let sign = if subtract { -1.0 } else { 1.0 };
    match (x, y) {
        (Value::Tensor(a), Value::Tensor(c)) => Ok(Value::Tensor(b.add_one(
            name,
            FloatOp::Elementwise(FloatElementwise::Add { subtract }),
            vec![*a, *c],
        )?)),
        (Value::Tensor(t), Value::Constant(c)) if is_all(c, 0.0) && keeps_shape(b, *t, c) => {
            Ok(Value::Tensor(*t))
        }
        (Value::Tensor(t), Value::Constant(c)) => {
            affine(b, name, *t, Constant::scalar(1.0), scaled(c, sign))
        }
        (Value::Constant(c), Value::Tensor(t))
            if !subtract && is_all(c, 0.0) && keeps_shape(b, *t, c) =>
        {
            Ok(Value::Tensor(*t))
        }
        (Value::Constant(c), Value::Tensor(t)) => {
            affine(b, name, *t, Constant::scalar(sign), c.clone())
        }
        (Value::Constant(p), Value::Constant(c)) => fold(p, c, |x, y| x + sign * y),
        _ => Err("a required input is missing".into()),
    }
}

/// `a · b`. Multiplying by one changes nothing; by zero, gives a constant.
pub fn mul(b: &mut Builder, name: &str, x: &Value, y: &Value) -> Result<Value, String> {
    match (x, y) {
        (Value::Tensor(a), Value::Tensor(c)) => Ok(Value::Tensor(b.add_one(
            name,
            FloatOp::Elementwise(FloatElementwise::Mul { factor: 1.0 }),
            vec![*a, *c],
        )?)),
        (Value::Tensor(t), Value::Constant(c)) | (Value::Constant(c), Value::Tensor(t)) => {
            if is_all(c, 1.0) && keeps_shape(b, *t, c) {
                return Ok(Value::Tensor(*t));
            }
            if is_all(c, 0.0) {
                let dims = tensor::broadcast(b.shape(*t), &c.dims)?;
                let len = tensor::count(&dims)?;
                return Ok(Value::Constant(Constant {
                    dims,
                    values: vec![0.0; len],
                }));
            }
            affine(b, name, *t, c.clone(), Constant::scalar(0.0))
        }
        (Value::Constant(p), Value::Constant(c)) => fold(p, c, |x, y| x * y),
        _ => Err("a required input is missing".into()),
    }
}

fn is_all(c: &Constant, value: f64) -> bool {
    c.values.iter().all(|&v| v == value)
}

/// Whether broadcasting `c` against tensor `t` leaves `t`'s shape.
fn keeps_shape(b: &Builder, t: usize, c: &Constant) -> bool {
    tensor::broadcast(b.shape(t), &c.dims).is_ok_and(|s| s == b.shape(t))
}

fn scaled(c: &Constant, by: f64) -> Constant {
    Constant {
        dims: c.dims.clone(),
        values: c.values.iter().map(|v| v * by).collect(),
    }
}

fn affine(
    b: &mut Builder,
    name: &str,
    x: usize,
    scale: Constant,
    offset: Constant,
) -> Result<Value, String> {
    Ok(Value::Tensor(b.add_one(
        name,
        FloatOp::Elementwise(FloatElementwise::Affine { scale, offset }),
        vec![x],
    )?))
}

/// A binary function of two constants, broadcast.
fn fold(a: &Constant, c: &Constant, f: impl Fn(f64, f64) -> f64) -> Result<Value, String> {
    let dims = tensor::broadcast(&a.dims, &c.dims)?;
    tensor::count(&dims)?;
    let (x, y) = (a.broadcast_to(&dims)?, c.broadcast_to(&dims)?);
    Ok(Value::Constant(Constant {
        values: x.iter().zip(&y).map(|(&x, &y)| f(x, y)).collect(),
        dims,
    }))
}

/// An Add, Sub, Mul or Div of one computed tensor and a constant, folded into the linear
/// operator that computes the tensor when nothing else reads it (a bias exported as its
/// own Add, a scale after a Conv).
fn fold_constant(b: &mut Builder, n: &OnnxNode) -> Option<Value> {
    let (index, t, c) = match (n.input(0), n.input(1)) {
        (Value::Tensor(t), Value::Constant(c)) => (0, *t, c),
        (Value::Constant(c), Value::Tensor(t)) if matches!(n.op, "Add" | "Mul") => (1, *t, c),
        _ => return None,
    };
    let zeros = Constant::scalar(0.0);
    let ones = Constant::scalar(1.0);
    let (scale, offset) = match n.op {
        "Add" => (ones, c.clone()),
        "Sub" => (ones, scaled(c, -1.0)),
        "Mul" => (c.clone(), zeros),
        "Div" if !c.values.contains(&0.0) => (
            Constant {
                dims: c.dims.clone(),
                values: c.values.iter().map(|v| 1.0 / v).collect(),
            },
            zeros,
        ),
        _ => return None,
    };
    (n.exclusive_input(index) && super::fold_into_producer(b, t, &scale, &offset))
        .then_some(Value::Tensor(t))
}

pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    let invalid = |e: String| n.invalid(e);
    if matches!(n.op, "Add" | "Sub" | "Mul" | "Div") {
        n.check_attributes(&[])?;
        if let Some(folded) = fold_constant(b, n) {
            return Ok(Some(vec![folded]));
        }
    }
    let value = match n.op {
        "Add" | "Sub" => add(b, &n.name, n.input(0), n.input(1), n.op == "Sub").map_err(invalid)?,
        "Mul" => mul(b, &n.name, n.input(0), n.input(1)).map_err(invalid)?,
        "Div" => match n.input(1) {
            Value::Constant(c) => {
                if c.values.contains(&0.0) {
                    return Err(n.invalid("division by zero"));
                }
                let reciprocal = Constant {
                    dims: c.dims.clone(),
                    values: c.values.iter().map(|v| 1.0 / v).collect(),
                };
                mul(b, &n.name, n.input(0), &Value::Constant(reciprocal)).map_err(invalid)?
            }
            _ => {
                return Err(n.invalid(
                    "division by a computed tensor is not supported (only by a constant)",
                ));
            }
        },
        "Neg" => {
            n.check_attributes(&[])?;
            mul(
                b,
                &n.name,
                n.input(0),
                &Value::Constant(Constant::scalar(-1.0)),
            )
            .map_err(invalid)?
        }
        "Relu" | "Clip" => {
            let (min, max) = if n.op == "Relu" {
                n.check_attributes(&[])?;
                (0.0, f64::INFINITY)
            } else {
                n.check_attributes(&["min", "max"])?;
                let bound = |i: usize, attribute: &str, default: f64| -> Result<f64, ModelError> {
                    Ok(match n.optional_constant(i)? {
                        Some(c) => c.values.first().copied().unwrap_or(default),
                        None => n.float(attribute, default as f32),
                    })
                };
                (
                    bound(1, "min", f64::NEG_INFINITY)?,
                    bound(2, "max", f64::INFINITY)?,
                )
            };
            match n.input(0) {
                Value::Constant(c) => Value::Constant(Constant {
                    dims: c.dims.clone(),
                    values: c.values.iter().map(|v| v.max(min).min(max)).collect(),
                }),
                Value::Tensor(t) => Value::Tensor(
                    b.add_one(
                        &n.name,
                        FloatOp::Elementwise(FloatElementwise::Clamp { min, max }),
                        vec![*t],
                    )
                    .map_err(invalid)?,
                ),
                Value::Missing => return Err(n.invalid("needs an input")),
            }
        }
        "MatMul" => {
            n.check_attributes(&[])?;
            match (n.input(0), n.input(1)) {
                (Value::Tensor(a), Value::Tensor(c)) => Value::Tensor(
                    b.add_one(
                        &n.name,
                        FloatOp::Elementwise(FloatElementwise::MatMul { factor: 1.0 }),
                        vec![*a, *c],
                    )
                    .map_err(invalid)?,
                ),
                (Value::Constant(_), Value::Tensor(_)) => {
                    return Err(n.invalid(
                        "a constant times a computed tensor is not supported; export the weights as the second operand",
                    ));
                }
                (Value::Constant(a), Value::Constant(c)) => {
                    let shape = matmul_shape(&a.dims, &c.dims).map_err(invalid)?;
                    tensor::count(&shape.shape).map_err(invalid)?;
                    let mut values = vec![0.0; tensor::len(&shape.shape)];
                    for_each_dot(&shape, |o, terms| {
                        values[o] = terms.iter().map(|&(i, j)| a.values[i] * c.values[j]).sum();
                    });
                    Value::Constant(Constant {
                        dims: shape.shape,
                        values,
                    })
                }
                _ => return Err(n.invalid("needs two inputs")),
            }
        }
        "Pow" if matches!(n.input(0), Value::Tensor(_)) => {
            // x², as exporters write it: a product of the tensor with itself.
            n.check_attributes(&[])?;
            match n.optional_constant(1)?.map(|c| &c.values[..]) {
                Some([e]) if *e == 2.0 => {
                    mul(b, &n.name, n.input(0), n.input(0)).map_err(invalid)?
                }
                Some([e]) if *e == 1.0 => n.input(0).clone(),
                _ => return Err(n.invalid("a power of a computed tensor other than 1 or 2")),
            }
        }
        "Sqrt" | "Pow" | "Equal" | "Where" => {
            n.check_attributes(&[])?;
            let constant = |i: usize| n.constant(i, "on constants only: its inputs");
            match n.op {
                "Sqrt" => {
                    let c = constant(0)?;
                    Value::Constant(Constant {
                        dims: c.dims.clone(),
                        values: c.values.iter().map(|v| v.sqrt()).collect(),
                    })
                }
                "Pow" => fold(constant(0)?, constant(1)?, f64::powf).map_err(invalid)?,
                "Equal" => fold(constant(0)?, constant(1)?, |x, y| (x == y) as u8 as f64)
                    .map_err(invalid)?,
                _ => {
                    let (condition, x, y) = (constant(0)?, constant(1)?, constant(2)?);
                    let dims = tensor::broadcast(
                        &tensor::broadcast(&condition.dims, &x.dims).map_err(invalid)?,
                        &y.dims,
                    )
                    .map_err(invalid)?;
                    tensor::count(&dims).map_err(invalid)?;
                    let [c, x, y] = [condition, x, y].map(|t| t.broadcast_to(&dims));
                    let (c, x, y) = (
                        c.map_err(invalid)?,
                        x.map_err(invalid)?,
                        y.map_err(invalid)?,
                    );
                    Value::Constant(Constant {
                        values: (0..c.len())
                            .map(|i| if c[i] != 0.0 { x[i] } else { y[i] })
                            .collect(),
                        dims,
                    })
                }
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(vec![value]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_follows_numpy_shapes() {
        assert_eq!(matmul_shape(&[2, 3], &[3, 4]).unwrap().shape, vec![2, 4]);
        assert_eq!(
            matmul_shape(&[5, 2, 3], &[3, 4]).unwrap().shape,
            vec![5, 2, 4]
        );
        assert_eq!(matmul_shape(&[3], &[3, 4]).unwrap().shape, vec![4]);
        assert_eq!(matmul_shape(&[2, 3], &[3]).unwrap().shape, vec![2]);
        assert!(matmul_shape(&[2, 3], &[4, 4]).is_err());
        let op = FloatElementwise::MatMul { factor: 1.0 };

        let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
        let b = [5.0, 6.0, 7.0, 8.0];
        let out = op.evaluate(&[&a, &b], &[&[2, 2], &[2, 2]]);
        assert_eq!(out[0], vec![19.0, 22.0, 43.0, 50.0]);
    }
}

#[cfg(test)]
mod soundness {
    use super::*;
    use crate::model::testing::assert_every_change_refused;

    #[test]
    fn every_changed_witness_of_the_arithmetic_is_refused() {
        // Affine with a broadcast constant, a sum and a product of two computed tensors
        // (broadcast), a matrix product, and a Clip that keeps its input's scale.
        let mut b = Builder::new();
        let x = b.input(vec![2, 3]);
        let y = b.input(vec![3]);
        let affine = FloatElementwise::Affine {
            scale: Constant::vector(vec![0.5, -2.0, 1.5]),
            offset: Constant::scalar(0.3),
        };
        let a = b
            .add_one("affine", FloatOp::Elementwise(affine), vec![x])
            .unwrap();
        let s = b
            .add_one(
                "sub",
                FloatOp::Elementwise(FloatElementwise::Add { subtract: true }),
                vec![a, y],
            )
            .unwrap();
        let p = b
            .add_one(
                "mul",
                FloatOp::Elementwise(FloatElementwise::Mul { factor: 1.0 }),
                vec![s, y],
            )
            .unwrap();
        let t = b
            .add_one(
                "t",
                FloatOp::Shape(super::super::shape::ShapeOp::Transpose { perm: vec![1, 0] }),
                vec![x],
            )
            .unwrap();
        let m = b
            .add_one(
                "matmul",
                FloatOp::Elementwise(FloatElementwise::MatMul { factor: 1.0 }),
                vec![p, t],
            )
            .unwrap();
        let clip = FloatElementwise::Clamp {
            min: -0.5,
            max: 0.75,
        };
        let c = b
            .add_one("clip", FloatOp::Elementwise(clip), vec![m])
            .unwrap();
        assert_every_change_refused(&b.finish(vec![c, p]));
    }
}
