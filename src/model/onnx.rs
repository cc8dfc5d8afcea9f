//! ONNX import: an ONNX file (protobuf, decoded with the committed prost code in
//! `onnx_proto.rs`) becomes a [`FloatModel`], or a clear refusal naming the operator and
//! node. Supported: Gemm, MatMul, Add (of a constant, folded into the layer before),
//! Relu, Flatten, Reshape, Conv (2-D), MaxPool, AveragePool, and the bookkeeping
//! operators Constant, Identity and Transpose (of constants). Nothing is approximated.

use std::collections::HashMap;

use prost::Message;

use super::ModelError;
use super::float::{FloatLayer, FloatModel};
use super::geometry::{Conv, Window};
use super::onnx_proto::{
    self as proto, AttributeProto, NodeProto, TensorProto, tensor_shape_proto::dimension,
    type_proto,
};

/// ONNX element types used here.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;
const INT32: i32 = 6;

/// Operators the importer understands, for the refusal message.
pub const SUPPORTED_OPERATORS: &str = "Gemm, MatMul, Add, Relu, Flatten, Reshape, Conv, MaxPool, AveragePool, Constant, Identity, Transpose";

/// Largest tensor accepted, in elements: far beyond what a proof can cover, and small
/// enough that a hostile file cannot make the importer allocate without bound.
const MAX_TENSOR_ELEMENTS: usize = 1 << 26;

/// A constant tensor (initializer or Constant node), values widened to f64 (exact for
/// f32 and for the small integers of shapes).
#[derive(Debug, Clone)]
struct Constant {
    dims: Vec<usize>,
    values: Vec<f64>,
}

/// Parses ONNX bytes into a float model.
pub fn import(bytes: &[u8]) -> Result<FloatModel, ModelError> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| ModelError::Onnx(format!("not an ONNX model (protobuf: {e})")))?;
    let graph = model
        .graph
        .ok_or_else(|| ModelError::Onnx("the ONNX model has no graph".into()))?;
    Importer::new(&graph)?.run(&graph)
}

/// Decodes a serialised ONNX TensorProto (the `input_0.pb` files of ONNX test data) into
/// its dims and float values.
pub fn decode_tensor(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
    let tensor = TensorProto::decode(bytes)
        .map_err(|e| ModelError::Onnx(format!("not an ONNX tensor (protobuf: {e})")))?;
    let constant = constant_of(&tensor, "tensor")?;
    Ok((
        constant.dims,
        constant.values.iter().map(|&v| v as f32).collect(),
    ))
}

struct Importer {
    constants: HashMap<String, Constant>,
    /// The one tensor flowing through the chain, and its per-sample shape.
    current: String,
    shape: Vec<usize>,
    layers: Vec<FloatLayer>,
    input_shape: Vec<usize>,
}

fn node_name(node: &NodeProto, index: usize) -> String {
    match node.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => format!("#{index}"),
    }
}

fn invalid(node: &str, op: &str, reason: impl Into<String>) -> ModelError {
    ModelError::InvalidNode {
        op: op.to_string(),
        node: node.to_string(),
        reason: reason.into(),
    }
}

impl Importer {
    fn new(graph: &proto::GraphProto) -> Result<Self, ModelError> {
        let mut constants = HashMap::new();
        for tensor in &graph.initializer {
            let name = tensor.name.clone().unwrap_or_default();
            constants.insert(name.clone(), constant_of(tensor, &name)?);
        }
        // Old exporters list initializers among the inputs too; the real input is the rest.
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|input| !constants.contains_key(input.name.as_deref().unwrap_or("")))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(ModelError::Onnx(format!(
                "the graph has {} inputs besides its weights; exactly one is supported",
                inputs.len()
            )));
        };
        let name = input.name.clone().unwrap_or_default();
        let dims = input_dims(input)?;
        // A leading dimension is the batch; a rank-1 input has none.
        let input_shape: Vec<usize> = if dims.len() >= 2 {
            dims[1..].iter().map(|d| d.unwrap_or(0)).collect()
        } else {
            dims.iter().map(|d| d.unwrap_or(0)).collect()
        };
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(ModelError::Onnx(format!(
                "input `{name}` has an unknown or zero dimension besides the batch: {dims:?}"
            )));
        }
        Ok(Self {
            constants,
            current: name,
            shape: input_shape.clone(),
            layers: Vec::new(),
            input_shape,
        })
    }

    fn run(mut self, graph: &proto::GraphProto) -> Result<FloatModel, ModelError> {
        for (index, node) in graph.node.iter().enumerate() {
            let name = node_name(node, index);
            self.node(node, &name)?;
        }
        let [output] = graph.output.as_slice() else {
            return Err(ModelError::Onnx(format!(
                "the graph has {} outputs; exactly one is supported",
                graph.output.len()
            )));
        };
        let output_name = output.name.as_deref().unwrap_or("");
        if output_name != self.current {
            return Err(ModelError::Onnx(format!(
                "the graph output `{output_name}` is not the end of its chain of layers (`{}`)",
                self.current
            )));
        }
        if self.layers.is_empty() {
            return Err(ModelError::Onnx("the graph has no layers".into()));
        }
        Ok(FloatModel {
            input_shape: self.input_shape,
            layers: self.layers,
            output_shape: self.shape,
        })
    }

    fn flat_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn node(&mut self, node: &NodeProto, name: &str) -> Result<(), ModelError> {
        let op = node.op_type.as_deref().unwrap_or("");
        if node
            .domain
            .as_deref()
            .is_some_and(|d| !d.is_empty() && d != "ai.onnx")
        {
            return Err(ModelError::Unsupported {
                op: format!("{}.{op}", node.domain.as_deref().unwrap_or("")),
                node: name.to_string(),
            });
        }
        let output = node
            .output
            .first()
            .cloned()
            .ok_or_else(|| invalid(name, op, "no output"))?;
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(invalid(
                name,
                op,
                "extra outputs (such as pooling indices) are not supported",
            ));
        }
        let inputs: Vec<&str> = node.input.iter().map(String::as_str).collect();

        // Operators on constants only are folded here, leaving no layer.
        let all_constant = !inputs.is_empty()
            && inputs
                .iter()
                .all(|i| i.is_empty() || self.constants.contains_key(*i));
        match op {
            "Constant" => {
                let tensor = attribute(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| {
                        invalid(name, op, "only the `value` tensor form is supported")
                    })?;
                let constant = constant_of(tensor, name)?;
                self.constants.insert(output, constant);
                return Ok(());
            }
            "Identity" | "Transpose" if all_constant => {
                let source = self.constants[inputs[0]].clone();
                let folded = if op == "Transpose" {
                    transpose(&source, attribute_ints(node, "perm").as_deref())
                        .map_err(|e| invalid(name, op, e))?
                } else {
                    source
                };
                self.constants.insert(output, folded);
                return Ok(());
            }
            _ if all_constant => {
                return Err(invalid(
                    name,
                    op,
                    "operators on constants only are not supported, besides Constant, Identity and Transpose",
                ));
            }
            _ => {}
        }

        // Every other operator takes the flowing tensor as its first input.
        let activation = inputs.first().copied().unwrap_or("");
        if activation != self.current {
            return Err(invalid(
                name,
                op,
                format!(
                    "its first input `{activation}` is not the output of the layer before (`{}`): only chains of layers are supported",
                    self.current
                ),
            ));
        }
        for extra in inputs.iter().skip(1).filter(|i| !i.is_empty()) {
            if !self.constants.contains_key(*extra) {
                return Err(invalid(
                    name,
                    op,
                    format!(
                        "input `{extra}` is computed, not a constant: only chains of layers are supported"
                    ),
                ));
            }
        }
        // Cloned, so that the layer builders below may update the importer's state.
        let constant = |index: usize| -> Option<Constant> {
            inputs
                .get(index)
                .filter(|i| !i.is_empty())
                .map(|i| self.constants[*i].clone())
        };

        match op {
            "Identity" => {}
            "Relu" => self.layers.push(FloatLayer::Relu),
            "Flatten" => {
                let axis = attribute(node, "axis").and_then(|a| a.i).unwrap_or(1);
                if axis != 1 {
                    return Err(invalid(
                        name,
                        op,
                        format!("axis {axis}; only axis 1 (keep the batch) is supported"),
                    ));
                }
                self.shape = vec![self.flat_len()];
            }
            "Reshape" => {
                let target =
                    constant(1).ok_or_else(|| invalid(name, op, "the shape must be a constant"))?;
                self.shape =
                    reshape(&self.shape, &target.values).map_err(|e| invalid(name, op, e))?;
            }
            "Gemm" | "MatMul" => {
                let layer =
                    self.dense(node, name, op, constant(1).as_ref(), constant(2).as_ref())?;
                self.layers.push(layer);
            }
            "Add" => {
                let addend = constant(1)
                    .ok_or_else(|| invalid(name, op, "needs a constant second input"))?;
                self.fold_bias(&addend).map_err(|e| invalid(name, op, e))?;
            }
            "Conv" => {
                let layer = self.conv(node, name, constant(1).as_ref(), constant(2).as_ref())?;
                self.layers.push(layer);
            }
            "MaxPool" | "AveragePool" => {
                let window = self.pool_window(node, name, op)?;
                self.shape = vec![window.channels, window.out_height(), window.out_width()];
                self.layers.push(if op == "MaxPool" {
                    FloatLayer::MaxPool(window)
                } else {
                    FloatLayer::AvgPool(window)
                });
            }
            _ => {
                return Err(ModelError::Unsupported {
                    op: op.to_string(),
                    node: name.to_string(),
                });
            }
        }
        self.current = output;
        Ok(())
    }

    fn dense(
        &mut self,
        node: &NodeProto,
        name: &str,
        op: &str,
        b: Option<&Constant>,
        c: Option<&Constant>,
    ) -> Result<FloatLayer, ModelError> {
        if self.shape.len() != 1 {
            return Err(invalid(
                name,
                op,
                format!("input of shape {:?}; flatten it first", self.shape),
            ));
        }
        let b = b.ok_or_else(|| invalid(name, op, "the weights must be a constant"))?;
        let [rows, cols] = b.dims[..] else {
            return Err(invalid(
                name,
                op,
                format!("weights of shape {:?}; 2-D expected", b.dims),
            ));
        };
        let (alpha, beta, trans_a, trans_b) = if op == "Gemm" {
            (
                attribute(node, "alpha").and_then(|a| a.f).unwrap_or(1.0) as f64,
                attribute(node, "beta").and_then(|a| a.f).unwrap_or(1.0) as f64,
                attribute(node, "transA").and_then(|a| a.i).unwrap_or(0),
                attribute(node, "transB").and_then(|a| a.i).unwrap_or(0),
            )
        } else {
            (1.0, 1.0, 0, 0)
        };
        if trans_a != 0 {
            return Err(invalid(name, op, "transA is not supported"));
        }
        let (inputs, outputs) = if trans_b != 0 {
            (cols, rows)
        } else {
            (rows, cols)
        };
        if inputs != self.flat_len() {
            return Err(invalid(
                name,
                op,
                format!(
                    "weights for {inputs} inputs, but the input has {}",
                    self.flat_len()
                ),
            ));
        }
        let mut weights = vec![0f32; inputs * outputs];
        for o in 0..outputs {
            for i in 0..inputs {
                let stored = if trans_b != 0 {
                    o * cols + i
                } else {
                    i * cols + o
                };
                weights[o * inputs + i] = (alpha * b.values[stored]) as f32;
            }
        }
        let bias = match c {
            Some(c) => broadcast_vector(c, outputs)
                .map_err(|e| invalid(name, op, e))?
                .into_iter()
                .map(|v| (beta * v) as f32)
                .collect(),
            None => vec![0f32; outputs],
        };
        self.shape = vec![outputs];
        Ok(FloatLayer::Dense {
            inputs,
            outputs,
            weights,
            bias,
        })
    }

    /// `Add` of a constant right after a Dense or Conv layer becomes that layer's bias.
    fn fold_bias(&mut self, addend: &Constant) -> Result<(), String> {
        match self.layers.last_mut() {
            Some(FloatLayer::Dense { outputs, bias, .. }) => {
                let add = broadcast_vector(addend, *outputs)?;
                bias.iter_mut()
                    .zip(add)
                    .for_each(|(b, a)| *b = (*b as f64 + a) as f32);
                Ok(())
            }
            Some(FloatLayer::Conv { conv, bias, .. }) => {
                // A per-channel constant: [C], [C,1,1] or [1,C,1,1].
                let squeezed: Vec<usize> =
                    addend.dims.iter().copied().filter(|&d| d != 1).collect();
                if addend.values.len() != conv.out_channels || squeezed.len() > 1 {
                    return Err(format!(
                        "a constant of shape {:?} is not one value per channel",
                        addend.dims
                    ));
                }
                bias.iter_mut()
                    .zip(&addend.values)
                    .for_each(|(b, &a)| *b = (*b as f64 + a) as f32);
                Ok(())
            }
            _ => Err(
                "only an Add of a constant right after Gemm, MatMul or Conv (a bias) is supported"
                    .into(),
            ),
        }
    }

    fn conv(
        &mut self,
        node: &NodeProto,
        name: &str,
        w: Option<&Constant>,
        b: Option<&Constant>,
    ) -> Result<FloatLayer, ModelError> {
        let op = "Conv";
        let w = w.ok_or_else(|| invalid(name, op, "the weights must be a constant"))?;
        let [out_channels, in_channels, kernel_height, kernel_width] = w.dims[..] else {
            return Err(invalid(
                name,
                op,
                format!(
                    "weights of shape {:?}; only 2-D convolutions are supported",
                    w.dims
                ),
            ));
        };
        if attribute(node, "group").and_then(|a| a.i).unwrap_or(1) != 1 {
            return Err(invalid(name, op, "grouped convolutions are not supported"));
        }
        let window = self.window(node, name, op, [kernel_height, kernel_width])?;
        if window.channels != in_channels {
            return Err(invalid(
                name,
                op,
                format!(
                    "weights for {in_channels} channels, but the input has {}",
                    window.channels
                ),
            ));
        }
        let conv = Conv {
            window,
            out_channels,
        };
        let bias = match b {
            Some(b) => broadcast_vector(b, out_channels)
                .map_err(|e| invalid(name, op, e))?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            None => vec![0f32; out_channels],
        };
        self.shape = vec![out_channels, window.out_height(), window.out_width()];
        Ok(FloatLayer::Conv {
            conv,
            weights: w.values.iter().map(|&v| v as f32).collect(),
            bias,
        })
    }

    fn pool_window(&self, node: &NodeProto, name: &str, op: &str) -> Result<Window, ModelError> {
        let kernel = attribute_ints(node, "kernel_shape")
            .ok_or_else(|| invalid(name, op, "needs kernel_shape"))?;
        let [kh, kw] = kernel[..] else {
            return Err(invalid(
                name,
                op,
                format!("kernel_shape {kernel:?}; only 2-D pooling is supported"),
            ));
        };
        if attribute(node, "ceil_mode").and_then(|a| a.i).unwrap_or(0) != 0 {
            return Err(invalid(name, op, "ceil_mode is not supported"));
        }
        if attribute(node, "storage_order")
            .and_then(|a| a.i)
            .unwrap_or(0)
            != 0
        {
            return Err(invalid(name, op, "storage_order is not supported"));
        }
        let size =
            |v: i64| usize::try_from(v).map_err(|_| invalid(name, op, "negative kernel size"));
        let window = self.window(node, name, op, [size(kh)?, size(kw)?])?;
        if op == "AveragePool" && window.pads != [0; 4] {
            return Err(invalid(
                name,
                op,
                "AveragePool with padding is not supported",
            ));
        }
        Ok(window)
    }

    /// The window of Conv and pooling nodes from their common attributes.
    fn window(
        &self,
        node: &NodeProto,
        name: &str,
        op: &str,
        kernel: [usize; 2],
    ) -> Result<Window, ModelError> {
        let [channels, in_height, in_width] = self.shape[..] else {
            return Err(invalid(
                name,
                op,
                format!("input of shape {:?}; CHW expected", self.shape),
            ));
        };
        if let Some(auto_pad) = attribute(node, "auto_pad").and_then(|a| a.s.as_deref())
            && auto_pad != b"NOTSET"
            && auto_pad != b"VALID"
        {
            return Err(invalid(
                name,
                op,
                "auto_pad SAME_* is not supported; export with explicit pads",
            ));
        }
        if let Some(kernel_shape) = attribute_ints(node, "kernel_shape")
            && kernel_shape.iter().map(|&k| k as usize).ne(kernel)
        {
            return Err(invalid(name, op, "kernel_shape does not match the weights"));
        }
        if attribute_ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Err(invalid(
                name,
                op,
                "dilations other than 1 are not supported",
            ));
        }
        let strides = attribute_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let pads = attribute_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
        let (&[sh, sw], &[pt, pl, pb, pr]) = (&strides[..], &pads[..]) else {
            return Err(invalid(name, op, "strides and pads must be 2-D"));
        };
        let nonnegative =
            |v: i64| usize::try_from(v).map_err(|_| invalid(name, op, "negative strides or pads"));
        let window = Window {
            channels,
            in_height,
            in_width,
            kernel_height: kernel[0],
            kernel_width: kernel[1],
            stride_height: nonnegative(sh)?,
            stride_width: nonnegative(sw)?,
            pads: [
                nonnegative(pt)?,
                nonnegative(pl)?,
                nonnegative(pb)?,
                nonnegative(pr)?,
            ],
        };
        window.check().map_err(|e| invalid(name, op, e))?;
        Ok(window)
    }
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

fn attribute_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attribute(node, name).map(|a| a.ints.clone())
}

fn input_dims(input: &proto::ValueInfoProto) -> Result<Vec<Option<usize>>, ModelError> {
    let name = input.name.as_deref().unwrap_or("");
    let Some(type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(ModelError::Onnx(format!("input `{name}` is not a tensor")));
    };
    if tensor.elem_type != Some(FLOAT) {
        return Err(ModelError::Onnx(format!("input `{name}` is not float32")));
    }
    let shape = tensor
        .shape
        .as_ref()
        .ok_or_else(|| ModelError::Onnx(format!("input `{name}` has no shape")))?;
    Ok(shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(v)) if v > 0 => Some(v as usize),
            _ => None,
        })
        .collect())
}

fn constant_of(tensor: &TensorProto, name: &str) -> Result<Constant, ModelError> {
    let bad = |reason: String| ModelError::Onnx(format!("tensor `{name}`: {reason}"));
    if tensor.data_location == Some(1) || !tensor.external_data.is_empty() {
        return Err(bad(
            "external data is not supported; save the model with its weights inside".into(),
        ));
    }
    let dims: Vec<usize> = tensor
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| bad(format!("too large ({dims:?})")))?;
    let raw = tensor.raw_data.as_deref().filter(|r| !r.is_empty());
    let data_type = tensor.data_type.unwrap_or(0);
    let values: Vec<f64> = match (data_type, raw) {
        (FLOAT, Some(raw)) => {
            le_values(raw, 4, |b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
        }
        (FLOAT, None) => tensor.float_data.iter().map(|&v| v as f64).collect(),
        (DOUBLE, Some(raw)) => le_values(raw, 8, |b| f64::from_le_bytes(b.try_into().unwrap())),
        (DOUBLE, None) => tensor.double_data.clone(),
        (INT64, Some(raw)) => {
            le_values(raw, 8, |b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
        }
        (INT64, None) => tensor.int64_data.iter().map(|&v| v as f64).collect(),
        (INT32, Some(raw)) => {
            le_values(raw, 4, |b| i32::from_le_bytes(b.try_into().unwrap()) as f64)
        }
        (INT32, None) => tensor.int32_data.iter().map(|&v| v as f64).collect(),
        (other, _) => {
            return Err(bad(format!(
                "element type {other} is not supported (float, double, int32, int64 are)"
            )));
        }
    };
    if values.len() != count {
        return Err(bad(format!("{} values for shape {dims:?}", values.len())));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad("holds NaN or infinite values".into()));
    }
    Ok(Constant { dims, values })
}

fn le_values(raw: &[u8], width: usize, read: impl Fn(&[u8]) -> f64) -> Vec<f64> {
    if !raw.len().is_multiple_of(width) {
        // A ragged buffer: return a count that cannot match, so the caller reports it.
        return vec![0.0; raw.len() / width + 1];
    }
    raw.chunks_exact(width).map(read).collect()
}

/// A constant as a vector of `len` values: shapes `[len]`, `[1, len]`, or a scalar.
fn broadcast_vector(constant: &Constant, len: usize) -> Result<Vec<f64>, String> {
    let squeezed: Vec<usize> = constant.dims.iter().copied().filter(|&d| d != 1).collect();
    match (constant.values.len(), squeezed.len()) {
        (1, _) => Ok(vec![constant.values[0]; len]),
        (n, 1) if n == len => Ok(constant.values.clone()),
        _ => Err(format!(
            "a constant of shape {:?} does not broadcast to {len} values",
            constant.dims
        )),
    }
}

fn transpose(constant: &Constant, perm: Option<&[i64]>) -> Result<Constant, String> {
    let [rows, cols] = constant.dims[..] else {
        return Err("only 2-D constants can be transposed".into());
    };
    if perm.is_some_and(|p| p != [1, 0]) {
        return Err("only the permutation [1, 0] is supported".into());
    }
    let mut values = vec![0.0; constant.values.len()];
    for r in 0..rows {
        for c in 0..cols {
            values[c * rows + r] = constant.values[r * cols + c];
        }
    }
    Ok(Constant {
        dims: vec![cols, rows],
        values,
    })
}

/// The per-sample shape after a Reshape to `target` (which includes the batch dimension).
fn reshape(shape: &[usize], target: &[f64]) -> Result<Vec<usize>, String> {
    let count: usize = shape.iter().product();
    let Some((&batch, rest)) = target.split_first() else {
        return Err("an empty target shape".into());
    };
    if ![-1.0, 0.0, 1.0].contains(&batch) {
        return Err(format!("the batch dimension must stay (target {target:?})"));
    }
    let mut dims = Vec::with_capacity(rest.len());
    let mut inferred = None;
    for (i, &d) in rest.iter().enumerate() {
        match d {
            -1.0 if inferred.is_none() => {
                inferred = Some(i);
                dims.push(1);
            }
            d if d >= 1.0 && d.fract() == 0.0 => dims.push(d as usize),
            _ => return Err(format!("unsupported target shape {target:?}")),
        }
    }
    let known: usize = dims.iter().product();
    if let Some(i) = inferred {
        if known == 0 || !count.is_multiple_of(known) {
            return Err(format!("cannot reshape {shape:?} to {target:?}"));
        }
        dims[i] = count / known;
    }
    if dims.iter().product::<usize>() != count || dims.is_empty() {
        return Err(format!("cannot reshape {shape:?} to {target:?}"));
    }
    Ok(dims)
}
