//! Pooling and reductions: MaxPool and AveragePool (1-D and 2-D; any window, stride,
//! dilation, padding, ceil mode, and `count_include_pad`), GlobalAveragePool,
//! GlobalMaxPool, ReduceMean, ReduceSum and ReduceMax.
//!
//! **Cost.** A max over n values is n − 1 comparisons of 10 constraints (int8 or uint8
//! inputs). An average is a sum (free) and one rescale by a 12-bit multiplier of
//! `1/count` (B + 3, B about 8 + log2(count) + 12); windows cut by padding get their own
//! multiplier. ReduceSum rescales to its calibrated scale the same way. A mean read only
//! by the model's output layer (a global average pool before the classifier) keeps its
//! sums, at the mean's scale, and costs nothing: the layer's accumulators are not rescaled.
//! A MaxPool that alone reads a Conv (through a Relu or Clip) is fused into it instead,
//! and costs what `linear` says.
//!
//! **Quantisation.** Max keeps its input's scale and range; averages keep the scale (an
//! average cannot leave its inputs' range); sums take a calibrated scale.

use super::linear::{read_window, write_window};
use super::{FloatOp, QuantOp, TensorType};
use crate::circuit::{Arith, Range, Rescale};
use crate::model::ModelError;
use crate::model::builder::{Builder, Value};
use crate::model::codec::{Reader, Writer};
use crate::model::geometry::{Window, onnx_window};
use crate::model::onnx::OnnxNode;
use crate::model::quantize::{Quantizer, fixed_point};
use crate::model::tensor;

pub const OPERATORS: &[&str] = &[
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Max,
    Mean,
    Sum,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FloatPool {
    Max(Window),
    Average {
        window: Window,
        count_include_pad: bool,
    },
    Reduce {
        reduction: Reduction,
        axes: Vec<usize>,
        keep_dims: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QuantPool {
    Max(Window),
    /// `rescale(Σ window · round(numerator / count))`, count as `count_include_pad` says.
    Average {
        window: Window,
        count_include_pad: bool,
        numerator: i64,
        shift: u8,
        clamp: Range,
    },
    ReduceMax {
        axes: Vec<usize>,
        keep_dims: bool,
    },
    /// `rescale(Σ · multiplier)` over the axes: ReduceSum and ReduceMean.
    ReduceSum {
        axes: Vec<usize>,
        keep_dims: bool,
        multiplier: i64,
        shift: u8,
        clamp: Range,
    },
}

/// The output shape of a reduction and, for each output element, the input elements it
/// reduces.
pub(crate) fn reduce_groups(
    shape: &[usize],
    axes: &[usize],
    keep_dims: bool,
) -> Result<(Vec<usize>, Vec<Vec<usize>>), String> {
    if axes.iter().any(|&a| a >= shape.len()) {
        return Err(format!(
            "axes {axes:?} outside a tensor of rank {}",
            shape.len()
        ));
    }
    let kept: Vec<usize> = (0..shape.len())
        .map(|a| if axes.contains(&a) { 1 } else { shape[a] })
        .collect();
    let out_shape: Vec<usize> = if keep_dims {
        kept.clone()
    } else {
        (0..shape.len())
            .filter(|a| !axes.contains(a))
            .map(|a| shape[a])
            .collect()
    };
    let strides = tensor::strides(shape);
    let kept_strides = tensor::strides(&kept);
    let mut groups = vec![Vec::new(); tensor::len(&kept)];
    for i in 0..tensor::len(shape) {
        let out: usize = (0..shape.len())
            .map(|a| {
                if axes.contains(&a) {
                    0
                } else {
                    (i / strides[a]) % shape[a] * kept_strides[a]
                }
            })
            .sum();
        groups[out].push(i);
    }
    Ok((out_shape, groups))
}

pub(crate) fn window_shape(window: &Window, input: &[usize]) -> Result<Vec<usize>, String> {
    window.check()?;
    let expected = if window.one_dimensional {
        vec![window.batch, window.channels, window.input[1]]
    } else {
        vec![
            window.batch,
            window.channels,
            window.input[0],
            window.input[1],
        ]
    };
    if input != expected {
        return Err(format!(
            "an input of shape {input:?}; the window reads {expected:?}"
        ));
    }
    Ok(window.output_shape(window.channels))
}

/// The divisor of an average over `taps` inputs and `padding` padded positions.
fn count(taps: usize, padding: usize, count_include_pad: bool) -> usize {
    if count_include_pad {
        taps + padding
    } else {
        taps
    }
}

/// `round(numerator / count)`, ties up.
fn per_count(numerator: i64, count: usize) -> i64 {
    let count = count.max(1) as i64;
    (2 * numerator + count) / (2 * count)
}

impl FloatPool {
    pub fn kind(&self) -> &'static str {
        match self {
            FloatPool::Max(_) => "MaxPool",
            FloatPool::Average { .. } => "AveragePool",
            FloatPool::Reduce {
                reduction: Reduction::Max,
                ..
            } => "ReduceMax",
            FloatPool::Reduce {
                reduction: Reduction::Mean,
                ..
            } => "ReduceMean",
            FloatPool::Reduce {
                reduction: Reduction::Sum,
                ..
            } => "ReduceSum",
        }
    }

    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, String> {
        let [input] = inputs else {
            return Err(format!("{} inputs; 1 expected", inputs.len()));
        };
        Ok(vec![match self {
            FloatPool::Max(window) | FloatPool::Average { window, .. } => {
                window_shape(window, input)?
            }
            FloatPool::Reduce {
                axes, keep_dims, ..
            } => reduce_groups(input, axes, *keep_dims)?.0,
        }])
    }

    pub fn evaluate(&self, inputs: &[&[f64]], shapes: &[&[usize]]) -> Vec<Vec<f64>> {
        let x = inputs[0];
        vec![match self {
            FloatPool::Max(window) => {
                let mut y = vec![0.0; window.batch * window.channels * window.output_plane()];
                window.for_each_pool(|out, taps, _| {
                    y[out] = taps.iter().map(|&i| x[i]).fold(f64::NEG_INFINITY, f64::max);
                });
                y
            }
            FloatPool::Average {
                window,
                count_include_pad,
            } => {
                let mut y = vec![0.0; window.batch * window.channels * window.output_plane()];
                window.for_each_pool(|out, taps, padding| {
                    let sum: f64 = taps.iter().map(|&i| x[i]).sum();
                    y[out] = sum / count(taps.len(), padding, *count_include_pad) as f64;
                });
                y
            }
            FloatPool::Reduce {
                reduction,
                axes,
                keep_dims,
            } => {
                let (_, groups) = reduce_groups(shapes[0], axes, *keep_dims).expect("checked");
                groups
                    .iter()
                    .map(|g| match reduction {
                        Reduction::Max => g.iter().map(|&i| x[i]).fold(f64::NEG_INFINITY, f64::max),
                        Reduction::Sum => g.iter().map(|&i| x[i]).sum(),
                        Reduction::Mean => {
                            g.iter().map(|&i| x[i]).sum::<f64>() / g.len().max(1) as f64
                        }
                    })
                    .collect()
            }
        }]
    }
}

/// Max over `values` (all in `range`), one comparison at a time.
pub(crate) fn max_of<A: Arith>(arith: &mut A, values: &[&A::Value], range: Range) -> A::Value {
    let mut best = values[0].clone();
    for v in &values[1..] {
        best = arith.max(&best, v, range);
    }
    best
}

impl QuantPool {
    pub fn kind(&self) -> &'static str {
        match self {
            QuantPool::Max(_) => "MaxPool",
            QuantPool::Average { .. } => "AveragePool",
            QuantPool::ReduceMax { .. } => "ReduceMax",
            QuantPool::ReduceSum { .. } => "ReduceSum",
        }
    }

    pub fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let [input] = inputs else {
            return Err(format!("{} inputs; 1 expected", inputs.len()));
        };
        let range = input.range;
        let (shape, range) = match self {
            QuantPool::Max(window) => (window_shape(window, &input.shape)?, range),
            QuantPool::ReduceMax { axes, keep_dims } => {
                let (shape, groups) = reduce_groups(&input.shape, axes, *keep_dims)?;
                if groups.iter().any(Vec::is_empty) {
                    return Err("a reduction over nothing".into());
                }
                (shape, range)
            }
            QuantPool::Average {
                window,
                numerator,
                shift,
                clamp,
                ..
            } => {
                let shape = window_shape(window, &input.shape)?;
                let area = window.kernel[0] * window.kernel[1];
                let sum = range.scale(area as i64).union(range);
                let rescale = Rescale {
                    multiplier: (*numerator).max(1),
                    shift: *shift,
                    clamp: *clamp,
                };
                if *numerator < 1 {
                    return Err("a numerator below one".into());
                }
                rescale.check(sum)?;
                (
                    shape,
                    rescale.output_range(sum).union(rescale.output_range(range)),
                )
            }
            QuantPool::ReduceSum {
                axes,
                keep_dims,
                multiplier,
                shift,
                clamp,
            } => {
                let (shape, groups) = reduce_groups(&input.shape, axes, *keep_dims)?;
                let n = groups.first().map_or(0, Vec::len) as i64;
                let rescale = Rescale {
                    multiplier: *multiplier,
                    shift: *shift,
                    clamp: *clamp,
                };
                let sum = range.scale(n);
                rescale.check(sum)?;
                (shape, rescale.output_range(sum))
            }
        };
        Ok(vec![TensorType::new(shape, range)])
    }

    pub fn synthesize<A: Arith>(
        &self,
        arith: &mut A,
        inputs: &[&[A::Value]],
        types: &[&TensorType],
        output: &TensorType,
    ) -> Vec<Vec<A::Value>> {
        let x = inputs[0];
        let range = types[0].range;
        let mut out: Vec<Option<A::Value>> = vec![None; output.len()];
        match self {
            QuantPool::Max(window) => window.for_each_pool(|o, taps, _| {
                let values: Vec<&A::Value> = taps.iter().map(|&i| &x[i]).collect();
                out[o] = Some(max_of(arith, &values, range));
            }),
            QuantPool::Average {
                window,
                count_include_pad,
                numerator,
                shift,
                clamp,
            } => window.for_each_pool(|o, taps, padding| {
                let terms: Vec<(i64, &A::Value)> = taps.iter().map(|&i| (1, &x[i])).collect();
                let sum = arith.linear(&terms, 0);
                let rescale = Rescale {
                    multiplier: per_count(
                        *numerator,
                        count(taps.len(), padding, *count_include_pad),
                    ),
                    shift: *shift,
                    clamp: *clamp,
                };
                out[o] = Some(arith.rescale(&sum, range.scale(taps.len() as i64), rescale));
            }),
            QuantPool::ReduceMax { axes, keep_dims } => {
                let (_, groups) =
                    reduce_groups(&types[0].shape, axes, *keep_dims).expect("checked");
                for (o, g) in groups.iter().enumerate() {
                    let values: Vec<&A::Value> = g.iter().map(|&i| &x[i]).collect();
                    out[o] = Some(max_of(arith, &values, range));
                }
            }
            QuantPool::ReduceSum {
                axes,
                keep_dims,
                multiplier,
                shift,
                clamp,
            } => {
                let (_, groups) =
                    reduce_groups(&types[0].shape, axes, *keep_dims).expect("checked");
                let rescale = Rescale {
                    multiplier: *multiplier,
                    shift: *shift,
                    clamp: *clamp,
                };
                for (o, g) in groups.iter().enumerate() {
                    let terms: Vec<(i64, &A::Value)> = g.iter().map(|&i| (1, &x[i])).collect();
                    let sum = arith.linear(&terms, 0);
                    out[o] = Some(arith.rescale(&sum, range.scale(g.len() as i64), rescale));
                }
            }
        }
        vec![out.into_iter().map(|v| v.expect("every output")).collect()]
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            QuantPool::Max(window) => {
                w.u8(1);
                write_window(w, window);
            }
            QuantPool::Average {
                window,
                count_include_pad,
                numerator,
                shift,
                clamp,
            } => {
                w.u8(2);
                write_window(w, window);
                w.flag(*count_include_pad);
                w.i64(*numerator);
                w.shift_and_clamp(*shift, *clamp);
            }
            QuantPool::ReduceMax { axes, keep_dims } => {
                w.u8(3);
                w.usizes(axes);
                w.flag(*keep_dims);
            }
            QuantPool::ReduceSum {
                axes,
                keep_dims,
                multiplier,
                shift,
                clamp,
            } => {
                w.u8(4);
                w.usizes(axes);
                w.flag(*keep_dims);
                w.i64(*multiplier);
                w.shift_and_clamp(*shift, *clamp);
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Self, ModelError> {
        Ok(match r.u8()? {
            1 => QuantPool::Max(read_window(r)?),
            2 => {
                let window = read_window(r)?;
                let count_include_pad = r.flag()?;
                let numerator = r.i64()?;
                let (shift, clamp) = r.shift_and_clamp()?;
                QuantPool::Average {
                    window,
                    count_include_pad,
                    numerator,
                    shift,
                    clamp,
                }
            }
            3 => QuantPool::ReduceMax {
                axes: r.usizes()?,
                keep_dims: r.flag()?,
            },
            4 => {
                let axes = r.usizes()?;
                let keep_dims = r.flag()?;
                let multiplier = r.i64()?;
                let (shift, clamp) = r.shift_and_clamp()?;
                QuantPool::ReduceSum {
                    axes,
                    keep_dims,
                    multiplier,
                    shift,
                    clamp,
                }
            }
            _ => return Err(r.invalid("unknown pooling operator")),
        })
    }
}

/// Bits of precision of the multipliers of averages.
const AVERAGE_BITS: u32 = 12;

pub fn quantize(op: &FloatPool, node: usize, q: &mut Quantizer) -> Result<(), ModelError> {
    let (input, scale) = q.input(node, 0);
    let range = q.input_type(node, 0).range;
    let (quant, out_scale) = match op {
        FloatPool::Max(window) => (QuantPool::Max(*window), scale),
        FloatPool::Reduce {
            reduction: Reduction::Max,
            axes,
            keep_dims,
        } => (
            QuantPool::ReduceMax {
                axes: axes.clone(),
                keep_dims: *keep_dims,
            },
            scale,
        ),
        FloatPool::Average {
            window,
            count_include_pad,
        } => {
            let area = (window.kernel[0] * window.kernel[1]) as u32;
            let shift = (AVERAGE_BITS + u32::BITS - area.leading_zeros()) as u8;
            let quant = QuantPool::Average {
                window: *window,
                count_include_pad: *count_include_pad,
                numerator: 1i64 << shift,
                shift,
                clamp: range,
            };
            (quant, scale)
        }
        FloatPool::Reduce {
            reduction,
            axes,
            keep_dims,
        } => {
            let shape = &q.input_type(node, 0).shape;
            let n = axes.iter().map(|&a| shape[a]).product::<usize>().max(1);
            let reduce = |ratio: f64, clamp: Range| {
                let (m, shift) = fixed_point(&[ratio]);
                QuantPool::ReduceSum {
                    axes: axes.clone(),
                    keep_dims: *keep_dims,
                    multiplier: m[0].max(1),
                    shift,
                    clamp,
                }
            };
            if *reduction == Reduction::Mean && q.read_only_by_an_output_layer(node, 0) {
                // An output layer reads the sums as they are, at the scale of a mean: the
                // division is folded into its weights, whose accumulators are not
                // rescaled, so the mean costs nothing (a rescale by one to a clamp the sums
                // stay within is the identity, which costs no constraint).
                (reduce(1.0, range.scale(n as i64)), scale / n as f64)
            } else if *reduction == Reduction::Mean {
                // A mean stays within its inputs' range, at their scale.
                (reduce(1.0 / n as f64, range), scale)
            } else {
                let target = q.target(node, 0);
                let quant = reduce(scale / target.scale, target.clamp);
                let out = q.emit(QuantOp::Pool(quant), vec![input])?;
                q.finish_target(node, 0, out[0], target);
                return Ok(());
            }
        }
    };
    let out = q.emit(QuantOp::Pool(quant), vec![input])?;
    q.map_output(node, 0, out[0], out_scale);
    Ok(())
}

pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    if !OPERATORS.contains(&n.op) {
        return Ok(None);
    }
    let Value::Tensor(x) = n.input(0) else {
        return Err(n.invalid("the input must be computed"));
    };
    let shape = b.shape(*x).to_vec();
    let op = match n.op {
        "MaxPool" | "AveragePool" => {
            n.check_attributes(&[
                "auto_pad",
                "ceil_mode",
                "dilations",
                "kernel_shape",
                "pads",
                "strides",
                "storage_order",
                "count_include_pad",
            ])?;
            if n.int("storage_order", 0) != 0 {
                return Err(n.invalid("storage_order is not supported"));
            }
            if n.output_used(1) {
                return Err(n.invalid("the Indices output is not supported"));
            }
            let kernel: Vec<usize> = n
                .ints("kernel_shape")
                .ok_or_else(|| n.invalid("needs kernel_shape"))?
                .iter()
                .map(|&k| usize::try_from(k).map_err(|_| n.invalid("a negative kernel size")))
                .collect::<Result<_, _>>()?;
            let window = onnx_window(n, &shape, &kernel)?;
            if n.op == "MaxPool" {
                FloatPool::Max(window)
            } else {
                FloatPool::Average {
                    window,
                    count_include_pad: n.int("count_include_pad", 0) != 0,
                }
            }
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            n.check_attributes(&[])?;
            if shape.len() < 3 {
                return Err(n.invalid(format!("an input of shape {shape:?}; N×C×… expected")));
            }
            FloatPool::Reduce {
                reduction: if n.op == "GlobalMaxPool" {
                    Reduction::Max
                } else {
                    Reduction::Mean
                },
                axes: (2..shape.len()).collect(),
                keep_dims: true,
            }
        }
        _ => {
            n.check_attributes(&["axes", "keepdims", "noop_with_empty_axes"])?;
            let given = match n.optional_constant(1)? {
                Some(c) => Some(c.integers().map_err(|e| n.invalid(e))?),
                None => n.ints("axes"),
            };
            let axes: Vec<usize> = match given {
                Some(axes) if !axes.is_empty() => axes
                    .iter()
                    .map(|&a| tensor::axis(a, shape.len()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| n.invalid(e))?,
                _ if n.int("noop_with_empty_axes", 0) != 0 => {
                    return Ok(Some(vec![Value::Tensor(*x)]));
                }
                _ => (0..shape.len()).collect(),
            };
            let reduction = match n.op {
                "ReduceMax" => Reduction::Max,
                "ReduceMean" => Reduction::Mean,
                _ => Reduction::Sum,
            };
            FloatPool::Reduce {
                reduction,
                axes,
                keep_dims: n.int("keepdims", 1) != 0,
            }
        }
    };
    let out = b
        .add_one(&n.name, FloatOp::Pool(op), vec![*x])
        .map_err(|e| n.invalid(e))?;
    Ok(Some(vec![Value::Tensor(out)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_group_the_right_elements() {
        let (shape, groups) = reduce_groups(&[2, 3], &[1], false).unwrap();
        assert_eq!(shape, vec![2]);
        assert_eq!(groups, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        let (shape, groups) = reduce_groups(&[2, 3], &[0], true).unwrap();
        assert_eq!(shape, vec![1, 3]);
        assert_eq!(groups, vec![vec![0, 3], vec![1, 4], vec![2, 5]]);
        assert_eq!(per_count(1 << 12, 3), 1365);
        assert_eq!(per_count(1 << 12, 4), 1024);
    }
}

#[cfg(test)]
mod soundness {
    use super::*;
    use crate::circuit::r1cs::{Mode, R1cs};
    use crate::model::testing::{assert_every_change_refused, window};

    #[test]
    fn every_changed_witness_of_pooling_is_refused() {
        // Max and average windows cut by padding (the average's divisor varies), and the
        // three reductions.
        let mut b = Builder::new();
        let x = b.input(vec![1, 2, 4, 4]);
        let max = b
            .add_one(
                "max",
                FloatOp::Pool(FloatPool::Max(window(2, 4, 3, 2, 1))),
                vec![x],
            )
            .unwrap();
        let average = FloatPool::Average {
            window: window(2, 4, 3, 2, 1),
            count_include_pad: false,
        };
        let avg = b.add_one("avg", FloatOp::Pool(average), vec![x]).unwrap();
        let reduce = |reduction| {
            FloatOp::Pool(FloatPool::Reduce {
                reduction,
                axes: vec![2, 3],
                keep_dims: false,
            })
        };
        let rmax = b
            .add_one("rmax", reduce(Reduction::Max), vec![max])
            .unwrap();
        let rmean = b
            .add_one("rmean", reduce(Reduction::Mean), vec![avg])
            .unwrap();
        let rsum = b.add_one("rsum", reduce(Reduction::Sum), vec![x]).unwrap();
        assert_every_change_refused(&b.finish(vec![rmax, rmean, rsum]));
    }

    #[test]
    fn a_mean_before_the_output_layer_keeps_its_sums_for_free() {
        use crate::model::ops::linear::FloatLinear;
        use crate::model::quantize::quantize;
        use crate::model::testing::{Numbers, error_against_float, samples};
        let mut n = Numbers::new(4);
        let mut b = Builder::new();
        let x = b.input(vec![1, 2, 3, 3]);
        let mean = FloatOp::Pool(FloatPool::Reduce {
            reduction: Reduction::Mean,
            axes: vec![2, 3],
            keep_dims: false,
        });
        let pooled = b.add_one("mean", mean, vec![x]).unwrap();
        let head = FloatOp::Linear(FloatLinear::Dense {
            weights: vec![n.reals(6)],
            bias: n.reals(3),
        });
        let out = b.add_one("head", head, vec![pooled]).unwrap();
        let float = b.finish(vec![out]);
        let model = quantize(&float, &samples(16, float.input_len(), 2))
            .unwrap()
            .0;
        let QuantOp::Pool(QuantPool::ReduceSum { shift, .. }) = &model.nodes()[0].op else {
            panic!("a ReduceSum first")
        };
        assert_eq!(*shift, 0);
        let mut cs = R1cs::new(Mode::Constraints);
        let input = (0..model.input_len()).map(|_| cs.alloc(0)).collect();
        model.synthesize(&mut cs, input);
        assert_eq!(
            cs.constraint_count(),
            0,
            "neither the sums nor the kept head cost"
        );
        let (error, largest) = error_against_float(&float, &model, 10, 5);
        assert!(error <= 0.02 * largest, "{error} of {largest}");
    }
}
