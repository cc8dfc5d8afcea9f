//! Shape operators: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice,
//! Gather (constant indices), Pad (constant), Expand, Identity, Dropout, Constant, and the
//! constant-only bookkeeping of exported graphs (Shape, ConstantOfShape, Cast, Range), so
//! that the Shape→Gather→Unsqueeze→Concat→Reshape chains of older PyTorch exports fold
//! away at import.
//!
//! **Cost: nothing.** Each operator only routes values: every output element is an element
//! of an input, or a constant (padding). In the circuit that is a copy of a wire.
//! Quantisation keeps scales, except that Concat rescales inputs of another scale (a
//! rescale per element, see `elementwise`) and constants are quantised at their own.

use super::{FloatOp, QuantOp, TensorType};
use crate::circuit::{Arith, Range};
use crate::model::ModelError;
use crate::model::builder::{Builder, Value};
use crate::model::codec::{Reader, Writer};
use crate::model::onnx::OnnxNode;
use crate::model::quantize::Quantizer;
use crate::model::tensor::{self, Constant};

pub const OPERATORS: &[&str] = &[
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "Pad",
    "Expand",
    "Identity",
    "Dropout",
    "Constant",
];

/// Operators accepted only on constants (they describe shapes, not data).
pub const CONSTANT_OPERATORS: &[&str] = &["Shape", "ConstantOfShape", "Cast", "Range"];

/// A shape operator over elements of type `V` (`f64` in the float model, `i64` in the
/// quantised one: the value of padding and constants).
#[derive(Debug, Clone, PartialEq)]
pub enum ShapeOp<V> {
    /// The same elements under another shape (also Flatten, Squeeze, Unsqueeze).
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// Per axis: the first index, the step, the output length.
    Slice {
        starts: Vec<usize>,
        steps: Vec<i64>,
        shape: Vec<usize>,
    },
    Gather {
        axis: usize,
        indices: Vec<usize>,
        indices_shape: Vec<usize>,
    },
    /// Padding before each axis, then after each axis.
    Pad {
        pads: Vec<usize>,
        value: V,
    },
    Expand {
        shape: Vec<usize>,
    },
    /// A constant tensor (no inputs), where a constant meets a computed tensor.
    Const {
        shape: Vec<usize>,
        values: Vec<V>,
    },
}

/// Where the element at an output coordinate comes from.
type SourceOf<'a> = Box<dyn FnMut(&[usize]) -> Source + 'a>;

/// Where an output element comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Input(usize, usize),
    Pad,
    Const(usize),
}

impl<V: Clone> ShapeOp<V> {
    pub fn kind(&self) -> &'static str {
        match self {
            ShapeOp::Reshape { .. } => "Reshape",
            ShapeOp::Transpose { .. } => "Transpose",
            ShapeOp::Concat { .. } => "Concat",
            ShapeOp::Split { .. } => "Split",
            ShapeOp::Slice { .. } => "Slice",
            ShapeOp::Gather { .. } => "Gather",
            ShapeOp::Pad { .. } => "Pad",
            ShapeOp::Expand { .. } => "Expand",
            ShapeOp::Const { .. } => "Constant",
        }
    }

    pub fn output_count(&self) -> usize {
        match self {
            ShapeOp::Split { sizes, .. } => sizes.len(),
            _ => 1,
        }
    }

    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, String> {
        let expected = match self {
            ShapeOp::Concat { .. } => inputs.len().max(1),
            ShapeOp::Const { .. } => 0,
            _ => 1,
        };
        if inputs.len() != expected {
            return Err(format!("{} inputs; {expected} expected", inputs.len()));
        }
        let first = inputs.first().copied().unwrap_or(&[]);
        let rank = first.len();
        Ok(match self {
            ShapeOp::Reshape { shape } => {
                if tensor::count(shape)? != tensor::len(first) {
                    return Err(format!("cannot reshape {first:?} to {shape:?}"));
                }
                vec![shape.clone()]
            }
            ShapeOp::Transpose { perm } => {
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..rank).collect::<Vec<_>>() {
                    return Err(format!("{perm:?} is not a permutation of {rank} axes"));
                }
                vec![perm.iter().map(|&p| first[p]).collect()]
            }
            ShapeOp::Concat { axis } => {
                if *axis >= rank {
                    return Err(format!("axis {axis} of a tensor of rank {rank}"));
                }
                let mut shape = first.to_vec();
                shape[*axis] = 0;
                for input in inputs {
                    let same = input.len() == rank
                        && (0..rank).all(|a| a == *axis || input[a] == first[a]);
                    if !same {
                        return Err(format!("cannot concatenate {first:?} and {input:?}"));
                    }
                    shape[*axis] += input[*axis];
                }
                vec![shape]
            }
            ShapeOp::Split { axis, sizes } => {
                if *axis >= rank || sizes.iter().sum::<usize>() != first[*axis] {
                    return Err(format!("cannot split {first:?} into {sizes:?}"));
                }
                sizes
                    .iter()
                    .map(|&size| {
                        let mut shape = first.to_vec();
                        shape[*axis] = size;
                        shape
                    })
                    .collect()
            }
            ShapeOp::Slice {
                starts,
                steps,
                shape,
            } => {
                if starts.len() != rank || steps.len() != rank || shape.len() != rank {
                    return Err("a slice must give every axis".into());
                }
                for a in 0..rank {
                    let last = starts[a] as i128 + (shape[a] as i128 - 1) * steps[a] as i128;
                    let inside = |i: i128| (0..first[a] as i128).contains(&i);
                    if steps[a] == 0
                        || (shape[a] > 0 && !(inside(starts[a] as i128) && inside(last)))
                    {
                        return Err(format!("a slice outside {first:?}"));
                    }
                }
                vec![shape.clone()]
            }
            ShapeOp::Gather {
                axis,
                indices,
                indices_shape,
            } => {
                if *axis >= rank
                    || indices.iter().any(|&i| i >= first[*axis])
                    || tensor::count(indices_shape)? != indices.len()
                {
                    return Err(format!("gather indices outside {first:?}"));
                }
                let mut shape = first[..*axis].to_vec();
                shape.extend(indices_shape);
                shape.extend(&first[axis + 1..]);
                vec![shape]
            }
            ShapeOp::Pad { pads, .. } => {
                if pads.len() != 2 * rank {
                    return Err(format!("{} pads for rank {rank}", pads.len()));
                }
                vec![
                    (0..rank)
                        .map(|a| {
                            pads[a]
                                .checked_add(pads[a + rank])
                                .and_then(|p| first[a].checked_add(p))
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or("padding overflows")?,
                ]
            }
            ShapeOp::Expand { shape } => {
                let to = tensor::broadcast(first, shape)?;
                tensor::count(&to)?;
                vec![to]
            }
            ShapeOp::Const { shape, values } => {
                if tensor::count(shape)? != values.len() {
                    return Err("a constant's values do not fill its shape".into());
                }
                vec![shape.clone()]
            }
        })
    }

    /// For each output, where each of its elements comes from. Shapes are checked.
    fn route(&self, inputs: &[&[usize]]) -> Vec<Vec<Source>> {
        let first = inputs.first().copied().unwrap_or(&[]);
        let rank = first.len();
        let strides = tensor::strides(first);
        // Maps each element of `shape` through `coordinate → input index`.
        let map = |shape: &[usize], mut index_of: SourceOf<'_>| {
            let out_strides = tensor::strides(shape);
            let mut coordinate = vec![0usize; shape.len()];
            (0..tensor::len(shape))
                .map(|i| {
                    for (a, c) in coordinate.iter_mut().enumerate() {
                        *c = (i / out_strides[a]) % shape[a];
                    }
                    index_of(&coordinate)
                })
                .collect::<Vec<_>>()
        };
        let flat = |c: &[usize]| c.iter().zip(&strides).map(|(c, s)| c * s).sum::<usize>();
        match self {
            ShapeOp::Reshape { .. } => {
                vec![
                    (0..tensor::len(first))
                        .map(|i| Source::Input(0, i))
                        .collect(),
                ]
            }
            ShapeOp::Transpose { perm } => {
                let shape: Vec<usize> = perm.iter().map(|&p| first[p]).collect();
                vec![map(
                    &shape,
                    Box::new(|c| {
                        let mut original = vec![0; rank];
                        for (a, &p) in perm.iter().enumerate() {
                            original[p] = c[a];
                        }
                        Source::Input(0, flat(&original))
                    }),
                )]
            }
            ShapeOp::Concat { axis } => {
                let mut shape = first.to_vec();
                shape[*axis] = inputs.iter().map(|s| s[*axis]).sum();
                vec![map(
                    &shape,
                    Box::new(|c| {
                        let mut along = c[*axis];
                        for (k, input) in inputs.iter().enumerate() {
                            if along < input[*axis] {
                                let mut at = c.to_vec();
                                at[*axis] = along;
                                let s = tensor::strides(input);
                                return Source::Input(
                                    k,
                                    at.iter().zip(&s).map(|(c, s)| c * s).sum(),
                                );
                            }
                            along -= input[*axis];
                        }
                        unreachable!("inside the concatenated axis")
                    }),
                )]
            }
            ShapeOp::Split { axis, sizes } => {
                let mut offset = 0;
                sizes
                    .iter()
                    .map(|&size| {
                        let mut shape = first.to_vec();
                        shape[*axis] = size;
                        let start = offset;
                        offset += size;
                        map(
                            &shape,
                            Box::new(move |c| {
                                let mut at = c.to_vec();
                                at[*axis] += start;
                                Source::Input(0, flat(&at))
                            }),
                        )
                    })
                    .collect()
            }
            ShapeOp::Slice {
                starts,
                steps,
                shape,
            } => vec![map(
                shape,
                Box::new(|c| {
                    let at: Vec<usize> = (0..rank)
                        .map(|a| (starts[a] as i64 + c[a] as i64 * steps[a]) as usize)
                        .collect();
                    Source::Input(0, flat(&at))
                }),
            )],
            ShapeOp::Gather {
                axis,
                indices,
                indices_shape,
            } => {
                let mut shape = first[..*axis].to_vec();
                shape.extend(indices_shape);
                shape.extend(&first[axis + 1..]);
                let index_strides = tensor::strides(indices_shape);
                let k = indices_shape.len();
                vec![map(
                    &shape,
                    Box::new(|c| {
                        let which: usize = c[*axis..*axis + k]
                            .iter()
                            .zip(&index_strides)
                            .map(|(c, s)| c * s)
                            .sum();
                        let mut at = c[..*axis].to_vec();
                        at.push(indices[which]);
                        at.extend(&c[*axis + k..]);
                        Source::Input(0, flat(&at))
                    }),
                )]
            }
            ShapeOp::Pad { pads, .. } => {
                let shape: Vec<usize> = (0..rank)
                    .map(|a| first[a] + pads[a] + pads[a + rank])
                    .collect();
                vec![map(
                    &shape,
                    Box::new(|c| {
                        let mut at = vec![0; rank];
                        for a in 0..rank {
                            match c[a].checked_sub(pads[a]) {
                                Some(i) if i < first[a] => at[a] = i,
                                _ => return Source::Pad,
                            }
                        }
                        Source::Input(0, flat(&at))
                    }),
                )]
            }
            ShapeOp::Expand { shape } => {
                let to = tensor::broadcast(first, shape).expect("checked by infer");
                vec![
                    tensor::broadcast_sources(first, &to)
                        .into_iter()
                        .map(|i| Source::Input(0, i))
                        .collect(),
                ]
            }
            ShapeOp::Const { values, .. } => vec![(0..values.len()).map(Source::Const).collect()],
        }
    }

    /// Applies the operator to elements of any type; `make` turns padding and constants
    /// into elements.
    pub fn apply<T: Clone>(
        &self,
        inputs: &[&[T]],
        shapes: &[&[usize]],
        mut make: impl FnMut(&V) -> T,
    ) -> Vec<Vec<T>> {
        let pad = match self {
            ShapeOp::Pad { value, .. } => Some(make(value)),
            _ => None,
        };
        let constants: Vec<T> = match self {
            ShapeOp::Const { values, .. } => values.iter().map(&mut make).collect(),
            _ => Vec::new(),
        };
        self.route(shapes)
            .into_iter()
            .map(|sources| {
                sources
                    .into_iter()
                    .map(|s| match s {
                        Source::Input(k, i) => inputs[k][i].clone(),
                        Source::Pad => pad.clone().expect("only Pad pads"),
                        Source::Const(i) => constants[i].clone(),
                    })
                    .collect()
            })
            .collect()
    }
}

impl ShapeOp<i64> {
    /// Shapes as for the float operator; ranges as the union of what can be routed.
    pub fn infer_types(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| &t.shape[..]).collect();
        let union = inputs.iter().map(|t| t.range).reduce(Range::union);
        let range = match self {
            ShapeOp::Pad { value, .. } => union.expect("one input").union(Range::point(*value)),
            ShapeOp::Const { values, .. } => {
                let lo = values.iter().copied().min().unwrap_or(0);
                let hi = values.iter().copied().max().unwrap_or(0);
                Range::new(lo, hi)
            }
            _ => union.expect("checked by infer"),
        };
        Ok(self
            .infer(&shapes)?
            .into_iter()
            .map(|shape| TensorType::new(shape, range))
            .collect())
    }

    pub fn synthesize<A: Arith>(
        &self,
        arith: &mut A,
        inputs: &[&[A::Value]],
        types: &[&TensorType],
    ) -> Vec<Vec<A::Value>> {
        let shapes: Vec<&[usize]> = types.iter().map(|t| &t.shape[..]).collect();
        self.apply(inputs, &shapes, |&v| arith.constant(v))
    }

    pub fn weights(&self) -> usize {
        match self {
            ShapeOp::Const { values, .. } => values.len(),
            _ => 0,
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            ShapeOp::Reshape { shape } => {
                w.u8(1);
                w.usizes(shape);
            }
            ShapeOp::Transpose { perm } => {
                w.u8(2);
                w.usizes(perm);
            }
            ShapeOp::Concat { axis } => {
                w.u8(3);
                w.usize(*axis);
            }
            ShapeOp::Split { axis, sizes } => {
                w.u8(4);
                w.usize(*axis);
                w.usizes(sizes);
            }
            ShapeOp::Slice {
                starts,
                steps,
                shape,
            } => {
                w.u8(5);
                w.usizes(starts);
                w.i64s(steps);
                w.usizes(shape);
            }
            ShapeOp::Gather {
                axis,
                indices,
                indices_shape,
            } => {
                w.u8(6);
                w.usize(*axis);
                w.usizes(indices);
                w.usizes(indices_shape);
            }
            ShapeOp::Pad { pads, value } => {
                w.u8(7);
                w.usizes(pads);
                w.i64(*value);
            }
            ShapeOp::Expand { shape } => {
                w.u8(8);
                w.usizes(shape);
            }
            ShapeOp::Const { shape, values } => {
                w.u8(9);
                w.usizes(shape);
                w.i64s(values);
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Self, ModelError> {
        Ok(match r.u8()? {
            1 => ShapeOp::Reshape { shape: r.usizes()? },
            2 => ShapeOp::Transpose { perm: r.usizes()? },
            3 => ShapeOp::Concat { axis: r.usize()? },
            4 => ShapeOp::Split {
                axis: r.usize()?,
                sizes: r.usizes()?,
            },
            5 => ShapeOp::Slice {
                starts: r.usizes()?,
                steps: r.i64s()?,
                shape: r.usizes()?,
            },
            6 => ShapeOp::Gather {
                axis: r.usize()?,
                indices: r.usizes()?,
                indices_shape: r.usizes()?,
            },
            7 => ShapeOp::Pad {
                pads: r.usizes()?,
                value: r.i64()?,
            },
            8 => ShapeOp::Expand { shape: r.usizes()? },
            9 => ShapeOp::Const {
                shape: r.usizes()?,
                values: r.i64s()?,
            },
            _ => return Err(r.invalid("unknown shape operator")),
        })
    }
}

/// Quantisation: the same routing at the input's scale. Concat brings its inputs to the
/// largest scale among them; constants take a scale of their own.
pub fn quantize(op: &ShapeOp<f64>, node: usize, q: &mut Quantizer) -> Result<(), ModelError> {
    let quant = match op {
        ShapeOp::Const { shape, values } => {
            let scale = q.symmetric_scale(q.magnitude(node, 0));

            let values = values
                .iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i64)
                .collect();
            let out = q.emit(
                QuantOp::Shape(ShapeOp::Const {
                    shape: shape.clone(),
                    values,
                }),
                vec![],
            )?;
            q.map_output(node, 0, out[0], scale);
            return Ok(());
        }
        ShapeOp::Concat { axis } => {
            let scale = (0..q.input_count(node))
                .map(|i| q.input(node, i).1)
                .fold(0f64, f64::max);
            let inputs = (0..q.input_count(node))
                .map(|i| q.input_at_scale(node, i, scale))
                .collect::<Result<Vec<_>, _>>()?;
            let out = q.emit(QuantOp::Shape(ShapeOp::Concat { axis: *axis }), inputs)?;
            q.map_output(node, 0, out[0], scale);
            return Ok(());
        }
        ShapeOp::Pad { pads, value } => {
            let scale = q.input(node, 0).1;
            let range = q.input_type(node, 0).range;
            let quantised = (value / scale)
                .round()
                .clamp(range.lo as f64, range.hi as f64) as i64;
            ShapeOp::Pad {
                pads: pads.clone(),
                value: quantised,
            }
        }
        ShapeOp::Reshape { shape } => ShapeOp::Reshape {
            shape: shape.clone(),
        },
        ShapeOp::Transpose { perm } => ShapeOp::Transpose { perm: perm.clone() },
        ShapeOp::Split { axis, sizes } => ShapeOp::Split {
            axis: *axis,
            sizes: sizes.clone(),
        },
        ShapeOp::Slice {
            starts,
            steps,
            shape,
        } => ShapeOp::Slice {
            starts: starts.clone(),
            steps: steps.clone(),
            shape: shape.clone(),
        },
        ShapeOp::Gather {
            axis,
            indices,
            indices_shape,
        } => ShapeOp::Gather {
            axis: *axis,
            indices: indices.clone(),
            indices_shape: indices_shape.clone(),
        },
        ShapeOp::Expand { shape } => ShapeOp::Expand {
            shape: shape.clone(),
        },
    };
    let (input, scale) = q.input(node, 0);
    let outputs = q.emit(QuantOp::Shape(quant), vec![input])?;
    for (index, out) in outputs.into_iter().enumerate() {
        q.map_output(node, index, out, scale);
    }
    Ok(())
}

/// Imports a shape operator; operators whose data inputs are all constants are folded.
pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    let op = match n.op {
        "Identity" => {
            n.check_attributes(&[])?;
            return Ok(Some(vec![n.input(0).clone()]));
        }
        "Dropout" => {
            n.check_attributes(&["seed", "ratio", "is_test"])?;
            if n.int("is_test", 1) == 0 {
                return Err(n.invalid("training mode is not supported"));
            }
            if let Some(training) = n.optional_constant(2)?
                && training.values.iter().any(|&v| v != 0.0)
            {
                return Err(n.invalid("training mode is not supported"));
            }
            if n.output_used(1) {
                return Err(n.invalid("the mask output is not supported"));
            }
            return Ok(Some(vec![n.input(0).clone()]));
        }
        "Constant" => return Ok(Some(vec![Value::Constant(n.constant_attribute()?)])),
        "Shape" => {
            n.check_attributes(&["start", "end"])?;
            let shape = b
                .shape_of(n.input(0))
                .ok_or_else(|| n.invalid("needs an input"))?;
            let rank = shape.len() as i64;
            let clip = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let (start, end) = (clip(n.int("start", 0)), clip(n.int("end", rank)));
            let dims = shape[start..end.max(start)]
                .iter()
                .map(|&d| d as f64)
                .collect();
            return Ok(Some(vec![Value::Constant(Constant::vector(dims))]));
        }
        "ConstantOfShape" => {
            n.check_attributes(&["value"])?;
            let dims = shape_argument(n, 0)?;
            let value = match n.tensor_attribute("value")? {
                Some(c) if c.values.len() == 1 => c.values[0],
                Some(_) => return Err(n.invalid("the value must hold one element")),
                None => 0.0,
            };
            let len = tensor::count(&dims).map_err(|e| n.invalid(e))?;
            return Ok(Some(vec![Value::Constant(Constant {
                dims,
                values: vec![value; len],
            })]));
        }
        "Cast" => {
            n.check_attributes(&["to", "saturate", "round_mode"])?;
            let to = n.int("to", 1);
            return match n.input(0) {
                Value::Constant(c) => Ok(Some(vec![Value::Constant(
                    cast(c, to).map_err(|e| n.invalid(e))?,
                )])),
                other if to == 1 => Ok(Some(vec![other.clone()])),
                _ => Err(n.invalid("a cast of a computed tensor to anything but float32")),
            };
        }
        "Range" => {
            n.check_attributes(&[])?;
            let [start, limit, delta] = [0, 1, 2].map(|i| {
                n.constant(i, "the range's bounds")
                    .map(|c| c.values.first().copied().unwrap_or(0.0))
            });
            let (start, limit, delta) = (start?, limit?, delta?);
            if delta == 0.0 {
                return Err(n.invalid("a step of zero"));
            }
            let count = ((limit - start) / delta).ceil().max(0.0) as usize;
            if count > tensor::MAX_ELEMENTS {
                return Err(n.invalid("a range too large"));
            }
            let values = (0..count).map(|i| start + i as f64 * delta).collect();
            return Ok(Some(vec![Value::Constant(Constant::vector(values))]));
        }
        "Reshape" => {
            n.check_attributes(&["allowzero"])?;
            let input = shape_of(b, n, 0)?;
            let target = n
                .constant(1, "the shape")?
                .integers()
                .map_err(|e| n.invalid(e))?;
            let allow_zero = n.int("allowzero", 0) != 0;
            ShapeOp::Reshape {
                shape: reshape(&input, &target, allow_zero).map_err(|e| n.invalid(e))?,
            }
        }
        "Flatten" => {
            n.check_attributes(&["axis"])?;
            let input = shape_of(b, n, 0)?;
            let axis = n.int("axis", 1);
            let axis = if axis < 0 {
                axis + input.len() as i64
            } else {
                axis
            };
            if !(0..=input.len() as i64).contains(&axis) {
                return Err(n.invalid(format!("axis {axis}")));
            }
            let (outer, inner) = input.split_at(axis as usize);
            ShapeOp::Reshape {
                shape: vec![tensor::len(outer), tensor::len(inner)],
            }
        }
        "Squeeze" | "Unsqueeze" => {
            n.check_attributes(&["axes"])?;
            let input = shape_of(b, n, 0)?;
            let axes = match n.optional_constant(1)? {
                Some(c) => Some(c.integers().map_err(|e| n.invalid(e))?),
                None => n.ints("axes"),
            };
            ShapeOp::Reshape {
                shape: if n.op == "Squeeze" {
                    squeeze(&input, axes.as_deref())
                } else {
                    unsqueeze(&input, axes.as_deref().unwrap_or(&[]))
                }
                .map_err(|e| n.invalid(e))?,
            }
        }
        "Transpose" => {
            n.check_attributes(&["perm"])?;
            let rank = shape_of(b, n, 0)?.len();
            let perm = match n.ints("perm") {
                Some(p) => p
                    .iter()
                    .map(|&a| tensor::axis(a, rank))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| n.invalid(e))?,
                None => (0..rank).rev().collect(),
            };
            ShapeOp::Transpose { perm }
        }
        "Concat" => {
            n.check_attributes(&["axis"])?;
            let rank = shape_of(b, n, 0)?.len();
            let axis = tensor::axis(n.int("axis", 0), rank).map_err(|e| n.invalid(e))?;
            ShapeOp::Concat { axis }
        }
        "Split" => {
            n.check_attributes(&["axis", "split", "num_outputs"])?;
            let input = shape_of(b, n, 0)?;
            let axis = tensor::axis(n.int("axis", 0), input.len()).map_err(|e| n.invalid(e))?;
            let explicit = match n.optional_constant(1)? {
                Some(c) => Some(c.integers().map_err(|e| n.invalid(e))?),
                None => n.ints("split"),
            };
            let sizes = match explicit {
                Some(sizes) => sizes
                    .iter()
                    .map(|&s| usize::try_from(s).map_err(|_| n.invalid("a negative split")))
                    .collect::<Result<Vec<_>, _>>()?,
                None => {
                    let parts = n.int("num_outputs", n.output_count() as i64).max(1) as usize;
                    if parts > input[axis].max(1) {
                        return Err(
                            n.invalid(format!("{parts} parts of a dimension of {}", input[axis]))
                        );
                    }
                    let each = input[axis].div_ceil(parts);
                    let mut sizes = vec![each; parts];
                    let last = input[axis]
                        .checked_sub(each * (parts - 1))
                        .ok_or_else(|| n.invalid("cannot split evenly"))?;
                    sizes[parts - 1] = last;
                    sizes
                }
            };
            ShapeOp::Split { axis, sizes }
        }
        "Slice" => {
            n.check_attributes(&["starts", "ends", "axes"])?;
            let input = shape_of(b, n, 0)?;
            slice(n, &input)?
        }
        "Gather" => {
            n.check_attributes(&["axis"])?;
            let input = shape_of(b, n, 0)?;
            let axis = tensor::axis(n.int("axis", 0), input.len()).map_err(|e| n.invalid(e))?;
            let indices = n.constant(1, "the indices")?;
            let values = indices
                .integers()
                .map_err(|e| n.invalid(e))?
                .iter()
                .map(|&i| {
                    let resolved = if i < 0 { i + input[axis] as i64 } else { i };
                    usize::try_from(resolved)
                        .ok()
                        .filter(|&r| r < input[axis])
                        .ok_or_else(|| n.invalid(format!("index {i} is outside axis {axis}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            ShapeOp::Gather {
                axis,
                indices: values,
                indices_shape: indices.dims.clone(),
            }
        }
        "Pad" => {
            n.check_attributes(&["mode", "pads", "value"])?;
            let input = shape_of(b, n, 0)?;
            if n.string("mode").is_some_and(|m| m != "constant") {
                return Err(n.invalid("only constant padding is supported"));
            }
            let given = match n.optional_constant(1)? {
                Some(c) => c.integers().map_err(|e| n.invalid(e))?,
                None => n.ints("pads").ok_or_else(|| n.invalid("needs pads"))?,
            };
            let value = match n.optional_constant(2)? {
                Some(c) => c.values.first().copied().unwrap_or(0.0),
                None => n.float("value", 0.0),
            };
            let rank = input.len();
            let axes = match n.optional_constant(3)? {
                Some(c) => c
                    .integers()
                    .map_err(|e| n.invalid(e))?
                    .iter()
                    .map(|&a| tensor::axis(a, rank))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| n.invalid(e))?,
                None => (0..rank).collect(),
            };
            if given.len() != 2 * axes.len() {
                return Err(n.invalid(format!("{} pads for {} axes", given.len(), axes.len())));
            }
            let mut pads = vec![0usize; 2 * rank];
            for (i, &a) in axes.iter().enumerate() {
                for (slot, v) in [(a, given[i]), (a + rank, given[i + axes.len()])] {
                    pads[slot] = usize::try_from(v)
                        .map_err(|_| n.invalid("negative pads (cropping) are not supported"))?;
                }
            }
            ShapeOp::Pad { pads, value }
        }
        "Expand" => {
            n.check_attributes(&[])?;
            let shape = shape_argument(n, 1)?;
            ShapeOp::Expand { shape }
        }
        _ => return Ok(None),
    };
    // Fold when every data input is known; otherwise a node, constants becoming tensors.
    let data_inputs = match op {
        ShapeOp::Concat { .. } => n.inputs.len(),
        _ => 1,
    };
    let data: Vec<&Value> = (0..data_inputs).map(|i| n.input(i)).collect();
    if data.iter().all(|v| matches!(v, Value::Constant(_))) {
        let constants: Vec<&Constant> = data
            .iter()
            .map(|v| match v {
                Value::Constant(c) => c,
                _ => unreachable!("all constant"),
            })
            .collect();
        let shapes: Vec<&[usize]> = constants.iter().map(|c| &c.dims[..]).collect();
        let values: Vec<&[f64]> = constants.iter().map(|c| &c.values[..]).collect();
        let out_shapes = op.infer(&shapes).map_err(|e| n.invalid(e))?;
        let outputs = op.apply(&values, &shapes, |&v| v);
        return Ok(Some(
            out_shapes
                .into_iter()
                .zip(outputs)
                .map(|(dims, values)| Value::Constant(Constant { dims, values }))
                .collect(),
        ));
    }
    let mut inputs = Vec::with_capacity(data.len());
    for (i, value) in data.iter().enumerate() {
        inputs.push(
            b.tensor(&format!("{}/constant{i}", n.name), value)
                .map_err(|e| n.invalid(e))?,
        );
    }
    let outputs = b
        .add(&n.name, FloatOp::Shape(op), inputs)
        .map_err(|e| n.invalid(e))?;
    Ok(Some(outputs.into_iter().map(Value::Tensor).collect()))
}

fn shape_of(b: &Builder, n: &OnnxNode, i: usize) -> Result<Vec<usize>, ModelError> {
    b.shape_of(n.input(i))
        .ok_or_else(|| n.invalid(format!("input {i} is missing")))
}

/// A constant input holding a shape.
fn shape_argument(n: &OnnxNode, i: usize) -> Result<Vec<usize>, ModelError> {
    n.constant(i, "the shape")?
        .integers()
        .map_err(|e| n.invalid(e))?
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| n.invalid(format!("a dimension of {d}"))))
        .collect()
}

/// ONNX's Reshape: 0 copies the input's dimension (unless `allow_zero`), −1 is inferred.
pub fn reshape(input: &[usize], target: &[i64], allow_zero: bool) -> Result<Vec<usize>, String> {
    let count = tensor::len(input);
    let mut shape = Vec::with_capacity(target.len());
    let mut inferred = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if inferred.is_none() => {
                inferred = Some(i);
                shape.push(1);
            }
            0 if !allow_zero => shape.push(
                *input
                    .get(i)
                    .ok_or_else(|| format!("dimension {i} of {input:?} to copy"))?,
            ),
            d if d >= 0 => shape.push(d as usize),
            _ => return Err(format!("unsupported target shape {target:?}")),
        }
    }
    let known = tensor::count(&shape)?;
    if let Some(i) = inferred {
        if known == 0 || !count.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {target:?}"));
        }
        shape[i] = count / known;
    }
    if tensor::count(&shape)? != count {
        return Err(format!("cannot reshape {input:?} to {target:?}"));
    }
    Ok(shape)
}

fn squeeze(input: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, String> {
    let axes: Vec<usize> = match axes {
        Some(axes) => axes
            .iter()
            .map(|&a| tensor::axis(a, input.len()))
            .collect::<Result<_, _>>()?,
        None => (0..input.len()).filter(|&a| input[a] == 1).collect(),
    };
    if let Some(&a) = axes.iter().find(|&&a| input[a] != 1) {
        return Err(format!("axis {a} of {input:?} is not 1"));
    }
    Ok((0..input.len())
        .filter(|a| !axes.contains(a))
        .map(|a| input[a])
        .collect())
}

fn unsqueeze(input: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    let rank = input.len() + axes.len();
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&a| tensor::axis(a, rank))
        .collect::<Result<_, _>>()?;
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return Err("repeated axes".into());
    }
    let mut dims = input.iter();
    Ok((0..rank)
        .map(|a| {
            if axes.contains(&a) {
                1
            } else {
                *dims.next().expect("rank adds up")
            }
        })
        .collect())
}

/// ONNX's Slice (inputs from opset 10, attributes before), resolved against `input`.
fn slice(n: &OnnxNode, input: &[usize]) -> Result<ShapeOp<f64>, ModelError> {
    let rank = input.len();
    let list = |i: usize, attribute: &str| -> Result<Option<Vec<i64>>, ModelError> {
        match n.optional_constant(i)? {
            Some(c) => Ok(Some(c.integers().map_err(|e| n.invalid(e))?)),
            None => Ok(n.ints(attribute)),
        }
    };
    let starts = list(1, "starts")?.ok_or_else(|| n.invalid("needs starts"))?;
    let ends = list(2, "ends")?.ok_or_else(|| n.invalid("needs ends"))?;
    let axes = list(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = list(4, "")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(n.invalid("starts, ends, axes and steps differ in length"));
    }
    let mut first = vec![0usize; rank];
    let mut step = vec![1i64; rank];
    let mut shape = input.to_vec();
    for i in 0..starts.len() {
        let a = tensor::axis(axes[i], rank).map_err(|e| n.invalid(e))?;
        let dim = input[a] as i64;
        let s = steps[i];
        if s == 0 {
            return Err(n.invalid("a step of zero"));
        }
        let resolve = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = if s > 0 {
            (
                resolve(starts[i]).clamp(0, dim),
                resolve(ends[i]).clamp(0, dim),
            )
        } else {
            (
                resolve(starts[i]).clamp(-1, dim - 1),
                resolve(ends[i]).clamp(-1, dim - 1),
            )
        };
        let (distance, stride) = if s > 0 {
            (end - start, s)
        } else {
            (start - end, -s)
        };
        let len = (distance.max(0) + stride - 1) / stride;
        first[a] = start.max(0) as usize;
        step[a] = s;
        shape[a] = len as usize;
    }
    Ok(ShapeOp::Slice {
        starts: first,
        steps: step,
        shape,
    })
}

/// Cast of a constant to ONNX element type `to`: integers truncate toward zero, booleans
/// are "not zero", floats stay.
fn cast(c: &Constant, to: i64) -> Result<Constant, String> {
    let convert: fn(f64) -> f64 = match to {
        1 | 10 | 11 | 16 => |v| v,
        2..=7 | 12 | 13 => f64::trunc,
        9 => |v| (v != 0.0) as u8 as f64,
        _ => return Err(format!("a cast to element type {to}")),
    };
    Ok(Constant {
        dims: c.dims.clone(),
        values: c.values.iter().map(|&v| convert(v)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(op: &ShapeOp<f64>, inputs: &[(&[usize], Vec<f64>)]) -> Vec<Vec<f64>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|(s, _)| *s).collect();
        let values: Vec<&[f64]> = inputs.iter().map(|(_, v)| &v[..]).collect();
        op.infer(&shapes).unwrap();
        op.apply(&values, &shapes, |&v| v)
    }

    fn iota(n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64).collect()
    }

    #[test]
    fn routing_follows_numpy() {
        let t = ShapeOp::Transpose { perm: vec![1, 0] };
        assert_eq!(
            apply(&t, &[(&[2, 3], iota(6))])[0],
            [0., 3., 1., 4., 2., 5.]
        );
        let c = ShapeOp::Concat { axis: 1 };
        assert_eq!(
            apply(&c, &[(&[2, 1], vec![9., 8.]), (&[2, 2], iota(4))])[0],
            [9., 0., 1., 8., 2., 3.]
        );
        let s = ShapeOp::<f64>::Split {
            axis: 1,
            sizes: vec![1, 2],
        };
        assert_eq!(
            apply(&s, &[(&[2, 3], iota(6))]),
            vec![vec![0., 3.], vec![1., 2., 4., 5.]]
        );
        let g = ShapeOp::<f64>::Gather {
            axis: 1,
            indices: vec![2, 0],
            indices_shape: vec![2],
        };
        assert_eq!(apply(&g, &[(&[2, 3], iota(6))])[0], [2., 0., 5., 3.]);
        let p = ShapeOp::Pad {
            pads: vec![0, 1, 0, 0],
            value: -1.0,
        };
        assert_eq!(apply(&p, &[(&[1, 2], iota(2))])[0], [-1., 0., 1.]);
        let slice = ShapeOp::<f64>::Slice {
            starts: vec![0, 2],
            steps: vec![1, -2],
            shape: vec![2, 2],
        };
        assert_eq!(apply(&slice, &[(&[2, 3], iota(6))])[0], [2., 0., 5., 3.]);
        let e = ShapeOp::<f64>::Expand { shape: vec![2, 1] };
        assert_eq!(apply(&e, &[(&[3], iota(3))])[0], [0., 1., 2., 0., 1., 2.]);
    }

    #[test]
    fn reshape_resolves_zero_and_minus_one() {
        assert_eq!(reshape(&[1, 4, 4], &[1, -1], false).unwrap(), vec![1, 16]);
        assert_eq!(reshape(&[2, 3, 4], &[0, -1], false).unwrap(), vec![2, 12]);
        assert!(reshape(&[2, 3], &[4, -1], false).is_err());
        assert!(reshape(&[2, 3], &[-1, -1], false).is_err());
        assert_eq!(squeeze(&[1, 3, 1], None).unwrap(), vec![3]);
        assert_eq!(unsqueeze(&[3], &[0, 2]).unwrap(), vec![1, 3, 1]);
    }

    #[test]
    fn bad_shapes_are_refused() {
        let s = ShapeOp::<f64>::Slice {
            starts: vec![5],
            steps: vec![1],
            shape: vec![1],
        };
        assert!(s.infer(&[&[3]]).is_err());
        let c = ShapeOp::<f64>::Concat { axis: 0 };
        assert!(c.infer(&[&[2, 3], &[2, 4]]).is_err());
        let t = ShapeOp::<f64>::Transpose { perm: vec![0, 0] };
        assert!(t.infer(&[&[2, 2]]).is_err());
    }
}

#[cfg(test)]
mod cost {
    use super::*;
    use crate::circuit::r1cs::{Mode, R1cs};
    use crate::model::testing::samples;

    #[test]
    fn routing_costs_no_constraint() {
        let mut b = Builder::new();
        let x = b.input(vec![2, 3]);
        let t = b
            .add_one(
                "t",
                FloatOp::Shape(ShapeOp::Transpose { perm: vec![1, 0] }),
                vec![x],
            )
            .unwrap();
        let p = b
            .add_one(
                "p",
                FloatOp::Shape(ShapeOp::Pad {
                    pads: vec![1, 0, 0, 2],
                    value: 0.0,
                }),
                vec![t],
            )
            .unwrap();
        let g = ShapeOp::Gather {
            axis: 0,
            indices: vec![3, 0],
            indices_shape: vec![2],
        };
        let g = b.add_one("g", FloatOp::Shape(g), vec![p]).unwrap();
        let float = b.finish(vec![g]);
        let (model, _) = crate::model::quantize::quantize(&float, &samples(4, 6, 1)).unwrap();
        let mut cs = R1cs::new(Mode::Constraints);
        let wires = (0..6).map(|i| cs.alloc(i)).collect();
        model.synthesize(&mut cs, wires);
        assert_eq!(cs.constraint_count(), 0);
    }
}
