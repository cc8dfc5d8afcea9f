//! Models as graphs: tensors numbered in order (the model's inputs, then each node's
//! outputs), nodes in an order where every input is computed before it is used.
//!
//! - [`FloatModel`]: the imported ONNX model, with every tensor's shape, and its float
//!   evaluator (the reference the quantised model is calibrated and measured against).
//! - [`QuantModel`]: the quantised model. Its inputs are int8 with a scale each; every
//!   tensor has a shape and an integer [`Range`] that its operators derive by interval
//!   arithmetic ([`TensorType`]); its outputs carry the scale that turns their integers
//!   into real numbers. [`QuantModel::synthesize`] runs it on any [`Arith`]: with
//!   [`Integers`] it is the fixed-point evaluator, with the R1CS builder it is the circuit.

use std::sync::OnceLock;

use super::ModelError;
use super::ops::{FloatOp, QuantOp};
use super::tensor;
use crate::circuit::integers::Integers;
use crate::circuit::{Arith, Range};

pub type TensorId = usize;

/// An operator applied to tensors. Its outputs are numbered after every tensor before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<Op> {
    pub op: Op,
    pub inputs: Vec<TensorId>,
}

/// Largest number of weights in a model.
pub const MAX_WEIGHTS: usize = 1 << 26;
/// Largest number of nodes in a model.
pub const MAX_NODES: usize = 1 << 16;

/// The float model as imported.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatModel {
    /// The shapes of the model's inputs, batch dimension included.
    pub inputs: Vec<Vec<usize>>,
    pub nodes: Vec<Node<FloatOp>>,
    /// The ONNX node each node comes from (several nodes may share one: a recurrent
    /// cell unrolls into many).
    pub names: Vec<String>,
    pub outputs: Vec<TensorId>,
    /// The shape of every tensor.
    pub shapes: Vec<Vec<usize>>,
}

impl FloatModel {
    /// The length of the model's input: all inputs, flattened, one after another.
    pub fn input_len(&self) -> usize {
        self.inputs.iter().map(|s| tensor::len(s)).sum()
    }

    pub fn output_len(&self) -> usize {
        self.outputs
            .iter()
            .map(|&o| tensor::len(&self.shapes[o]))
            .sum()
    }

    /// The shapes of the model's outputs.
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs
            .iter()
            .map(|&o| self.shapes[o].clone())
            .collect()
    }

    /// Evaluates one sample (`input_len()` values); the outputs, flattened, one after
    /// another.
    pub fn evaluate(&self, input: &[f32]) -> Vec<f32> {
        let tensors = self.evaluate_all(input);
        self.outputs
            .iter()
            .flat_map(|&o| tensors[o].iter().map(|&v| v as f32))
            .collect()
    }

    /// Every tensor's values for one sample, for calibration.
    pub fn evaluate_all(&self, input: &[f32]) -> Vec<Vec<f64>> {
        assert_eq!(input.len(), self.input_len(), "checked by the caller");
        let mut tensors: Vec<Vec<f64>> = Vec::with_capacity(self.shapes.len());
        let mut at = 0;
        for shape in &self.inputs {
            let len = tensor::len(shape);
            tensors.push(input[at..at + len].iter().map(|&v| v as f64).collect());
            at += len;
        }
        for node in &self.nodes {
            let inputs: Vec<&[f64]> = node.inputs.iter().map(|&i| &tensors[i][..]).collect();
            let shapes: Vec<&[usize]> = node.inputs.iter().map(|&i| &self.shapes[i][..]).collect();
            let outputs = node.op.evaluate(&inputs, &shapes);
            tensors.extend(outputs);
        }
        tensors
    }

    /// The nodes that read each tensor.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut consumers = vec![Vec::new(); self.shapes.len()];
        for (index, node) in self.nodes.iter().enumerate() {
            for &i in &node.inputs {
                if !consumers[i].contains(&index) {
                    consumers[i].push(index);
                }
            }
        }
        consumers
    }

    /// The ids of each node's outputs.
    pub fn node_outputs(&self) -> Vec<std::ops::Range<TensorId>> {
        outputs_of(
            self.inputs.len(),
            self.nodes.iter().map(|n| n.op.output_count()),
        )
    }
}

fn outputs_of(
    inputs: usize,
    counts: impl Iterator<Item = usize>,
) -> Vec<std::ops::Range<TensorId>> {
    let mut next = inputs;
    counts
        .map(|count| {
            let range = next..next + count;
            next += count;
            range
        })
        .collect()
}

/// A quantised input: int8 values `round(x / scale)`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantInput {
    pub shape: Vec<usize>,
    pub scale: f32,
}

/// A quantised output: real values are `scale × integer`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantOutput {
    pub tensor: TensorId,
    pub scale: f32,
}

/// What a quantised tensor is: its shape and the range of its integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorType {
    pub shape: Vec<usize>,
    pub range: Range,
}

impl TensorType {
    pub fn new(shape: Vec<usize>, range: Range) -> Self {
        Self { shape, range }
    }

    pub fn len(&self) -> usize {
        tensor::len(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The range of the model's inputs.
pub const INPUT_RANGE: Range = Range::INT8;

/// A checked quantised model. Built only through [`QuantModel::new`], which checks that
/// every node fits its inputs and every value stays within bounds, so a model in hand is
/// one that can be evaluated and proved.
#[derive(Debug, Clone)]
pub struct QuantModel {
    inputs: Vec<QuantInput>,
    nodes: Vec<Node<QuantOp>>,
    outputs: Vec<QuantOutput>,
    types: Vec<TensorType>,
    node_outputs: Vec<std::ops::Range<TensorId>>,
    output_ranges: OnceLock<Vec<Range>>,
}

impl PartialEq for QuantModel {
    fn eq(&self, other: &Self) -> bool {
        self.inputs == other.inputs && self.nodes == other.nodes && self.outputs == other.outputs
    }
}

/// An input value the input integers cannot represent (see
/// [`QuantModel::inputs_out_of_range`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutOfRange {
    pub index: usize,
    pub value: f32,
    pub lo: f64,
    pub hi: f64,
}

impl OutOfRange {
    /// How many times the range's half-width the value lies from its centre: above 2,
    /// the value is far outside what the model was calibrated on.
    pub fn excess(&self) -> f64 {
        let bound = self.lo.abs().max(self.hi.abs());
        (self.value as f64).abs() / bound
    }
}

impl QuantModel {
    pub fn new(
        inputs: Vec<QuantInput>,
        nodes: Vec<Node<QuantOp>>,
        outputs: Vec<QuantOutput>,
    ) -> Result<Self, ModelError> {
        let bad = |reason: String| Err(ModelError::InvalidModel(reason));
        if inputs.is_empty() || outputs.is_empty() {
            return bad("a model needs inputs and outputs".into());
        }
        if nodes.len() > MAX_NODES {
            return bad(format!("more than {MAX_NODES} nodes"));
        }
        let scales = inputs
            .iter()
            .map(|i| i.scale)
            .chain(outputs.iter().map(|o| o.scale));
        for scale in scales {
            if !(scale.is_finite() && scale > 0.0) {
                return bad(format!("scale {scale} is not a positive number"));
            }
        }
        let mut types = Vec::new();
        let mut total_input = 0usize;
        for input in &inputs {
            let len = tensor::count(&input.shape).map_err(ModelError::InvalidModel)?;
            if len == 0 {
                return bad(format!("an input of shape {:?} is empty", input.shape));
            }
            total_input += len;
            types.push(TensorType::new(input.shape.clone(), INPUT_RANGE));
        }
        if total_input > tensor::MAX_ELEMENTS {
            return bad("the inputs are too large".into());
        }
        let mut elements = 0;
        tensor::add_to_total(&mut elements, total_input).map_err(ModelError::InvalidModel)?;
        let mut weights = 0usize;
        for (index, node) in nodes.iter().enumerate() {
            let here = || format!("node {index} ({})", node.op.kind());
            if let Some(&bad_input) = node.inputs.iter().find(|&&i| i >= types.len()) {
                return bad(format!(
                    "{}: input {bad_input} is not computed before it",
                    here()
                ));
            }
            let input_types: Vec<&TensorType> = node.inputs.iter().map(|&i| &types[i]).collect();
            let outputs = node
                .op
                .infer(&input_types)
                .map_err(|e| ModelError::InvalidModel(format!("{}: {e}", here())))?;
            if outputs.len() != node.op.output_count() {
                return bad(format!("{}: wrong number of outputs", here()));
            }
            for output in &outputs {
                tensor::count(&output.shape)
                    .and_then(|len| tensor::add_to_total(&mut elements, len))
                    .map_err(|e| ModelError::InvalidModel(format!("{}: {e}", here())))?;
                if !output.range.is_bounded() || output.range.lo > output.range.hi {
                    return bad(format!(
                        "{}: values may exceed {} bits",
                        here(),
                        crate::circuit::MAX_MAGNITUDE_BITS
                    ));
                }
            }
            weights = weights.saturating_add(node.op.weights());
            if weights > MAX_WEIGHTS {
                return bad(format!("more than {MAX_WEIGHTS} weights"));
            }
            types.extend(outputs);
        }
        let mut total_output = 0usize;
        for output in &outputs {
            let Some(t) = types.get(output.tensor) else {
                return bad(format!("output tensor {} does not exist", output.tensor));
            };
            if t.range.lo < i32::MIN as i64 || t.range.hi > i32::MAX as i64 {
                return bad("an output may exceed 32 bits".into());
            }
            total_output += t.len();
        }
        if total_output == 0 || total_output > tensor::MAX_ELEMENTS {
            return bad(format!("the outputs hold {total_output} values"));
        }
        let node_outputs = outputs_of(inputs.len(), nodes.iter().map(|n| n.op.output_count()));
        Ok(Self {
            inputs,
            nodes,
            outputs,
            types,
            node_outputs,
            output_ranges: OnceLock::new(),
        })
    }

    /// Checks the model again (it was checked when built): kept for callers that load
    /// models and want the check to be explicit.
    pub fn check(&self) -> Result<(), ModelError> {
        Self::new(
            self.inputs.clone(),
            self.nodes.clone(),
            self.outputs.clone(),
        )
        .map(|_| ())
    }

    pub fn inputs(&self) -> &[QuantInput] {
        &self.inputs
    }

    pub fn nodes(&self) -> &[Node<QuantOp>] {
        &self.nodes
    }

    pub fn outputs(&self) -> &[QuantOutput] {
        &self.outputs
    }

    /// Every tensor's shape and range.
    pub fn types(&self) -> &[TensorType] {
        &self.types
    }

    /// The length of the model's input: all inputs, flattened, one after another.
    pub fn input_len(&self) -> usize {
        self.inputs.iter().map(|i| tensor::len(&i.shape)).sum()
    }

    pub fn output_len(&self) -> usize {
        self.outputs
            .iter()
            .map(|o| self.types[o.tensor].len())
            .sum()
    }

    /// The range of each output value, in order.
    pub fn output_ranges(&self) -> &[Range] {
        self.output_ranges.get_or_init(|| {
            self.outputs
                .iter()
                .flat_map(|o| {
                    let t = &self.types[o.tensor];
                    std::iter::repeat_n(t.range, t.len())
                })
                .collect()
        })
    }

    /// Quantises a float input: `round(x / scale)` per input, clamped to int8.
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
        let mut out = Vec::with_capacity(input.len());
        let mut at = 0;
        for spec in &self.inputs {
            let len = tensor::len(&spec.shape);
            let scale = spec.scale as f64;
            out.extend(input[at..at + len].iter().map(|&x| {
                (x as f64 / scale)
                    .round()
                    .clamp(INPUT_RANGE.lo as f64, INPUT_RANGE.hi as f64) as i8
            }));
            at += len;
        }
        Ok(out)
    }

    /// The input values that lie outside what the input integers can represent, each with
    /// its index and the range of its input (`[lo, hi]` in real numbers): quantising
    /// clamps them to that range, so a caller should say so.
    pub fn inputs_out_of_range(&self, input: &[f32]) -> Vec<OutOfRange> {
        let mut found = Vec::new();
        let mut at = 0;
        for spec in &self.inputs {
            let len = tensor::len(&spec.shape);
            let scale = spec.scale as f64;
            let (lo, hi) = (INPUT_RANGE.lo as f64 * scale, INPUT_RANGE.hi as f64 * scale);
            for (index, &value) in input.iter().enumerate().skip(at).take(len) {
                let rounded = (value as f64 / scale).round() * scale;
                if rounded < lo || rounded > hi {
                    found.push(OutOfRange {
                        index,
                        value,
                        lo,
                        hi,
                    });
                }
            }
            at += len;
        }
        found
    }

    /// The real values of the output integers.
    pub fn dequantize_output(&self, output: &[i32]) -> Vec<f64> {
        let mut values = Vec::with_capacity(output.len());
        let mut rest = output;
        for spec in &self.outputs {
            let len = self.types[spec.tensor].len().min(rest.len());
            let (here, next) = rest.split_at(len);
            values.extend(here.iter().map(|&o| o as f64 * spec.scale as f64));
            rest = next;
        }
        values
    }

    /// Runs the model on an int8 input: the fixed-point evaluator.
    pub fn evaluate(&self, input: &[i8]) -> Result<Vec<i32>, ModelError> {
        if input.len() != self.input_len() {
            return Err(ModelError::InputLength {
                expected: self.input_len(),
                found: input.len(),
            });
        }
        let values: Vec<i64> = input.iter().map(|&v| v as i64).collect();
        let outputs = self.synthesize(&mut Integers, values);
        Ok(outputs.into_iter().map(|v| v as i32).collect())
    }

    /// Runs the model on `input` (the model's input values, in order) with any
    /// arithmetic; returns the output values, in order.
    pub fn synthesize<A: Arith>(&self, arith: &mut A, input: Vec<A::Value>) -> Vec<A::Value> {
        assert_eq!(input.len(), self.input_len(), "checked by the caller");
        let mut tensors: Vec<Vec<A::Value>> = Vec::with_capacity(self.types.len());
        let mut input = input.into_iter();
        for spec in &self.inputs {
            tensors.push(input.by_ref().take(tensor::len(&spec.shape)).collect());
        }
        for (node, outputs) in self.nodes.iter().zip(&self.node_outputs) {
            arith.enter(node.op.kind());
            let values: Vec<&[A::Value]> = node.inputs.iter().map(|&i| &tensors[i][..]).collect();
            let types: Vec<&TensorType> = node
                .inputs
                .iter()
                .chain(outputs.clone().collect::<Vec<_>>().iter())
                .map(|&i| &self.types[i])
                .collect();
            let (input_types, output_types) = types.split_at(node.inputs.len());
            let computed = node.op.apply(arith, &values, input_types, output_types);
            tensors.extend(computed);
        }
        arith.enter("outputs");
        self.outputs
            .iter()
            .flat_map(|o| tensors[o.tensor].iter().cloned())
            .collect()
    }
}
