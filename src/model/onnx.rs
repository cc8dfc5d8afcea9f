//! ONNX import: an ONNX file (protobuf, decoded with the committed prost code in
//! `onnx_proto.rs`) becomes a [`FloatModel`], or a clear refusal naming the operator, the
//! node and the reason. The graph is walked in order; each node goes to the operator
//! family that knows it (`ops`), with its inputs resolved to computed tensors or
//! constants, which lets families fold constant subgraphs away. Nothing is approximated:
//! an attribute a family does not know is refused, not ignored.

use std::collections::HashMap;

use prost::Message;

use super::ModelError;
use super::builder::{Builder, Value};
use super::graph::{FloatModel, TensorId};
use super::onnx_proto::{
    self as proto, AttributeProto, NodeProto, TensorProto, tensor_shape_proto::dimension,
    type_proto,
};
use super::ops;
use super::tensor::{self, Constant};

/// ONNX element types read here.
const FLOAT: i32 = 1;
const INT32: i32 = 6;
const INT64: i32 = 7;
const BOOL: i32 = 9;
const DOUBLE: i32 = 11;

/// The opset assumed when a model names none.
const DEFAULT_OPSET: i64 = 13;

/// Parses ONNX bytes into a float model.
pub fn import(bytes: &[u8]) -> Result<FloatModel, ModelError> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| ModelError::Onnx(format!("not an ONNX model (protobuf: {e})")))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(DEFAULT_OPSET);
    let mut graph = model
        .graph
        .ok_or_else(|| ModelError::Onnx("the ONNX model has no graph".into()))?;
    super::patterns::rewrite(&mut graph);
    Importer::new(&graph, opset)?.run(&graph)
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
    builder: Builder,
    opset: i64,
    values: HashMap<String, Value>,
    /// How many nodes (and graph outputs) read each name.
    uses: HashMap<String, usize>,
    /// The name each tensor was created under.
    origin: HashMap<TensorId, String>,
}

impl Importer {
    fn new(graph: &proto::GraphProto, opset: i64) -> Result<Self, ModelError> {
        let mut values = HashMap::new();
        for tensor in &graph.initializer {
            let name = tensor.name.clone().unwrap_or_default();
            values.insert(name.clone(), Value::Constant(constant_of(tensor, &name)?));
        }
        let mut builder = Builder::new();
        let mut origin = HashMap::new();
        // Old exporters list initializers among the inputs too; the real inputs are the rest.
        for input in &graph.input {
            let name = input.name.clone().unwrap_or_default();
            if values.contains_key(&name) {
                continue;
            }
            let shape = input_shape(input)?;
            let id = builder.input(shape);
            origin.insert(id, name.clone());
            values.insert(name, Value::Tensor(id));
        }
        if origin.is_empty() {
            return Err(ModelError::Onnx(
                "the graph has no input besides its weights".into(),
            ));
        }
        let mut uses: HashMap<String, usize> = HashMap::new();
        for name in graph
            .node
            .iter()
            .flat_map(|n| n.input.iter())
            .chain(graph.output.iter().filter_map(|o| o.name.as_ref()))
        {
            *uses.entry(name.clone()).or_default() += 1;
        }
        Ok(Self {
            builder,
            opset,
            values,
            uses,
            origin,
        })
    }

    fn run(mut self, graph: &proto::GraphProto) -> Result<FloatModel, ModelError> {
        for (index, node) in graph.node.iter().enumerate() {
            self.node(node, index)?;
        }
        if graph.output.is_empty() {
            return Err(ModelError::Onnx("the graph has no outputs".into()));
        }
        let mut outputs = Vec::new();
        for output in &graph.output {
            let name = output.name.as_deref().unwrap_or("");
            let value = self
                .values
                .get(name)
                .ok_or_else(|| {
                    ModelError::Onnx(format!("the graph output `{name}` is never computed"))
                })?
                .clone();
            let id = self
                .builder
                .tensor(&format!("output {name}"), &value)
                .map_err(|e| ModelError::Onnx(format!("graph output `{name}`: {e}")))?;
            outputs.push(id);
        }
        Ok(self.builder.finish(outputs))
    }

    fn node(&mut self, proto: &NodeProto, index: usize) -> Result<(), ModelError> {
        let name = match proto.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => format!("#{index}"),
        };
        let op = proto.op_type.as_deref().unwrap_or("");
        if let Some(domain) = proto
            .domain
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "ai.onnx")
        {
            return Err(ModelError::Unsupported {
                op: format!("{domain}.{op}"),
                node: name,
                supported: ops::supported_operators(),
            });
        }
        let mut inputs = Vec::with_capacity(proto.input.len());
        let mut exclusive = Vec::with_capacity(proto.input.len());
        for input in &proto.input {
            if input.is_empty() {
                inputs.push(Value::Missing);
                exclusive.push(false);
                continue;
            }
            let value = self
                .values
                .get(input)
                .cloned()
                .ok_or_else(|| ModelError::InvalidNode {
                    op: op.to_string(),
                    node: name.clone(),
                    reason: format!(
                        "input `{input}` is not computed before it (is the graph sorted?)"
                    ),
                })?;
            let sole_reader = self.uses.get(input) == Some(&1);
            exclusive.push(match &value {
                Value::Tensor(id) => sole_reader && self.origin.get(id) == Some(input),
                _ => false,
            });
            inputs.push(value);
        }
        let outputs_used = proto
            .output
            .iter()
            .map(|o| !o.is_empty() && self.uses.get(o).copied().unwrap_or(0) > 0)
            .collect();
        let node = OnnxNode {
            name: name.clone(),
            op,
            opset: self.opset,
            proto,
            inputs,
            exclusive,
            outputs_used,
        };
        let outputs = ops::import(&mut self.builder, &node)?.ok_or_else(|| {
            let mut supported = ops::supported_operators();
            supported.push_str(&format!(
                "; on constants only: {}",
                ops::constant_operators()
            ));
            ModelError::Unsupported {
                op: op.to_string(),
                node: name.clone(),
                supported,
            }
        })?;
        for (i, output) in proto.output.iter().enumerate() {
            if output.is_empty() {
                continue;
            }
            match outputs.get(i) {
                Some(Value::Missing) | None if node.output_used(i) => {
                    return Err(node.invalid(format!("output {i} (`{output}`) is not supported")));
                }
                Some(value) => {
                    if let Value::Tensor(id) = value {
                        self.origin.entry(*id).or_insert_with(|| output.clone());
                    }
                    self.values.insert(output.clone(), value.clone());
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// An ONNX node as the operator families see it: attributes, and inputs resolved to
/// computed tensors or constants.
pub struct OnnxNode<'a> {
    pub name: String,
    pub op: &'a str,
    /// The model's opset of the default domain.
    pub opset: i64,
    proto: &'a NodeProto,
    pub inputs: Vec<Value>,
    /// Per input: a computed tensor read by this node alone, under the name it was made
    /// with (so an operator may fold into the one that computes it).
    exclusive: Vec<bool>,
    outputs_used: Vec<bool>,
}

impl OnnxNode<'_> {
    /// An error about this node.
    pub fn invalid(&self, reason: impl Into<String>) -> ModelError {
        ModelError::InvalidNode {
            op: self.op.to_string(),
            node: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Refuses any attribute not in `known`: an attribute the importer does not
    /// understand must not be ignored.
    pub fn check_attributes(&self, known: &[&str]) -> Result<(), ModelError> {
        match self
            .proto
            .attribute
            .iter()
            .map(|a| a.name.as_deref().unwrap_or(""))
            .find(|name| !known.contains(name))
        {
            Some(name) => Err(self.invalid(format!("attribute `{name}` is not supported"))),
            None => Ok(()),
        }
    }

    fn attribute(&self, name: &str) -> Option<&AttributeProto> {
        self.proto
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.attribute(name).and_then(|a| a.i).unwrap_or(default)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attribute(name).map(|a| a.ints.clone())
    }

    pub fn float(&self, name: &str, default: f32) -> f64 {
        self.attribute(name).and_then(|a| a.f).unwrap_or(default) as f64
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.attribute(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.attribute(name).map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
    }

    pub fn tensor_attribute(&self, name: &str) -> Result<Option<Constant>, ModelError> {
        self.attribute(name)
            .and_then(|a| a.t.as_ref())
            .map(|t| constant_of(t, &self.name))
            .transpose()
    }

    /// The value of a Constant node, in any of its forms.
    pub fn constant_attribute(&self) -> Result<Constant, ModelError> {
        self.check_attributes(&[
            "value",
            "value_float",
            "value_floats",
            "value_int",
            "value_ints",
        ])?;
        if let Some(c) = self.tensor_attribute("value")? {
            return Ok(c);
        }
        let a = self
            .proto
            .attribute
            .first()
            .ok_or_else(|| self.invalid("a Constant without a value"))?;
        Ok(match a.name.as_deref() {
            Some("value_float") => Constant::scalar(a.f.unwrap_or(0.0) as f64),
            Some("value_int") => Constant::scalar(a.i.unwrap_or(0) as f64),
            Some("value_floats") => Constant::vector(a.floats.iter().map(|&v| v as f64).collect()),
            _ => Constant::vector(a.ints.iter().map(|&v| v as f64).collect()),
        })
    }

    /// Input `i`, or [`Value::Missing`].
    pub fn input(&self, i: usize) -> &Value {
        self.inputs.get(i).unwrap_or(&Value::Missing)
    }

    /// Input `i`, which must be a constant (`what` names it in the error).
    pub fn constant(&self, i: usize, what: &str) -> Result<&Constant, ModelError> {
        match self.input(i) {
            Value::Constant(c) => Ok(c),
            Value::Missing => Err(self.invalid(format!("{what} (input {i}) is missing"))),
            Value::Tensor(_) => Err(self.invalid(format!(
                "{what} (input {i}) must be a constant, not computed"
            ))),
        }
    }

    /// Input `i` if given, which must then be a constant.
    pub fn optional_constant(&self, i: usize) -> Result<Option<&Constant>, ModelError> {
        match self.input(i) {
            Value::Missing => Ok(None),
            Value::Constant(c) => Ok(Some(c)),
            Value::Tensor(_) => {
                Err(self.invalid(format!("input {i} must be a constant, not computed")))
            }
        }
    }

    pub fn output_used(&self, i: usize) -> bool {
        self.outputs_used.get(i).copied().unwrap_or(false)
    }

    pub fn output_count(&self) -> usize {
        self.proto.output.len()
    }

    /// Whether input `i` is a tensor that this node alone reads.
    pub fn exclusive_input(&self, i: usize) -> bool {
        self.exclusive.get(i).copied().unwrap_or(false)
    }
}

/// A graph input's shape: symbolic dimensions (the batch) become 1.
fn input_shape(input: &proto::ValueInfoProto) -> Result<Vec<usize>, ModelError> {
    let name = input.name.as_deref().unwrap_or("");
    let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(ModelError::Onnx(format!("input `{name}` is not a tensor")));
    };
    if t.elem_type != Some(FLOAT) {
        return Err(ModelError::Onnx(format!(
            "input `{name}` is not float32 (element type {}); sn2 proves models of float inputs",
            t.elem_type.unwrap_or(0)
        )));
    }
    let shape = t
        .shape
        .as_ref()
        .ok_or_else(|| ModelError::Onnx(format!("input `{name}` has no shape")))?;
    let dims: Vec<usize> = shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(v)) if v > 0 => Ok(v as usize),
            Some(dimension::Value::DimValue(v)) => Err(ModelError::Onnx(format!(
                "input `{name}` has a dimension of {v}"
            ))),
            _ => Ok(1),
        })
        .collect::<Result<_, _>>()?;
    let len = tensor::count(&dims).map_err(|e| ModelError::Onnx(format!("input `{name}`: {e}")))?;
    if len == 0 {
        return Err(ModelError::Onnx(format!("input `{name}` is empty")));
    }
    Ok(dims)
}

/// A tensor's dims and values.
pub(crate) fn tensor_values(tensor: &TensorProto) -> Result<(Vec<usize>, Vec<f64>), ModelError> {
    let constant = constant_of(tensor, tensor.name.as_deref().unwrap_or(""))?;
    Ok((constant.dims, constant.values))
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
    let count = tensor::count(&dims).map_err(bad)?;
    let raw = tensor.raw_data.as_deref().filter(|r| !r.is_empty());
    let values: Vec<f64> = match (tensor.data_type.unwrap_or(0), raw) {
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
        (INT32 | BOOL, None) => tensor.int32_data.iter().map(|&v| v as f64).collect(),
        (BOOL, Some(raw)) => raw.iter().map(|&b| (b != 0) as u8 as f64).collect(),
        (other, _) => {
            return Err(bad(format!(
                "element type {other} is not supported (float, double, int32, int64 and bool are)"
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
