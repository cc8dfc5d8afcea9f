//! Operators, one file per family. Each file holds, side by side, what its operators need
//! at every stage, so that adding an operator touches one file:
//!
//! - `import`: ONNX nodes to float operators (constants folded, attributes checked: an
//!   attribute the family does not know is refused, never ignored);
//! - the float operator: shapes (`infer`) and float evaluation (`evaluate`);
//! - `quantize`: float operator to integer operator, with the scales it chooses;
//! - the integer operator: shapes and ranges (`infer`), and one `synthesize` over
//!   [`Arith`] that is both the fixed-point evaluator and the circuit;
//! - the canonical encoding (`encode`, `decode`);
//! - and, in its module documentation, what it costs in constraints.
//!
//! | family | operators |
//! | --- | --- |
//! | [`linear`] | Gemm, MatMul by a constant, Conv, BatchNormalization |
//! | [`elementwise`] | Add, Sub, Mul, Div, Neg, Relu, Clip, MatMul of two tensors |
//! | [`shape`] | Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather, Pad, Expand, Identity, Dropout, Constant |
//! | [`pooling`] | MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean, ReduceSum, ReduceMax |
//! | [`lookup`] | Sigmoid, Tanh, Exp, Erf, Gelu, Softplus, LeakyRelu, HardSigmoid, HardSwish |
//! | [`normalisation`] | Softmax, LayerNormalization |
//! | [`recurrent`] | LSTM, GRU (unrolled into the others) |

pub mod elementwise;
pub mod linear;
pub mod lookup;
pub mod normalisation;
pub mod pooling;
pub mod recurrent;
pub mod shape;

use super::ModelError;
use super::builder::{Builder, Value};
use super::codec::{Reader, Writer};
pub use super::graph::TensorType;
use super::onnx::OnnxNode;
use super::quantize::Quantizer;
use crate::circuit::Arith;

/// An operator of the float model.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatOp {
    Linear(linear::FloatLinear),
    Elementwise(elementwise::FloatElementwise),
    Shape(shape::ShapeOp<f64>),
    Pool(pooling::FloatPool),
    Lookup(lookup::Function),
    Norm(normalisation::FloatNorm),
}

/// An operator of the quantised model.
#[derive(Debug, Clone, PartialEq)]
pub enum QuantOp {
    Linear(linear::QuantLinear),
    Elementwise(elementwise::QuantElementwise),
    Shape(shape::ShapeOp<i64>),
    Pool(pooling::QuantPool),
    Lookup(lookup::Table),
    Norm(normalisation::QuantNorm),
}

/// Every operator the importer accepts, for messages.
pub fn supported_operators() -> String {
    [
        linear::OPERATORS,
        elementwise::OPERATORS,
        shape::OPERATORS,
        pooling::OPERATORS,
        lookup::OPERATORS,
        normalisation::OPERATORS,
        recurrent::OPERATORS,
    ]
    .concat()
    .join(", ")
}

/// Operators accepted only when all their inputs are constants.
pub fn constant_operators() -> String {
    [shape::CONSTANT_OPERATORS, elementwise::CONSTANT_OPERATORS]
        .concat()
        .join(", ")
}

/// Folds `y = x·scale + offset` into the operator that computes `x` (a bias or a BatchNorm
/// after a Conv or Gemm, a scale after a product), when that operator can absorb it.
/// Returns whether it did; the caller makes sure nothing else reads `x`.
pub fn fold_into_producer(
    b: &mut Builder,
    x: super::graph::TensorId,
    scale: &super::tensor::Constant,
    offset: &super::tensor::Constant,
) -> bool {
    let Some(producer) = b.producer(x) else {
        return false;
    };
    let shape = b.shape(x).to_vec();
    match b.op_mut(producer) {
        FloatOp::Linear(op) => linear::fold_constants(op, &shape, scale, offset),
        FloatOp::Elementwise(op) => op.fold_factor(&shape, scale, offset),
        FloatOp::Norm(op) => op.fold_constants(&shape, scale, offset),
        _ => false,
    }
}

/// A family's importer: the node's outputs, or `None` when the operator is not its own.
type Importer = fn(&mut Builder, &OnnxNode) -> Result<Option<Vec<Value>>, ModelError>;

/// Imports one ONNX node through the family that knows its operator; `None` if none does.
pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    // Linear first: it takes MatMul by a constant, elementwise takes the rest.
    let families: [Importer; 7] = [
        linear::import,
        elementwise::import,
        shape::import,
        pooling::import,
        lookup::import,
        normalisation::import,
        recurrent::import,
    ];
    for import in families {
        if let Some(outputs) = import(b, n)? {
            return Ok(Some(outputs));
        }
    }
    Ok(None)
}

impl FloatOp {
    pub fn kind(&self) -> &'static str {
        match self {
            FloatOp::Linear(op) => op.kind(),
            FloatOp::Elementwise(op) => op.kind(),
            FloatOp::Shape(op) => op.kind(),
            FloatOp::Pool(op) => op.kind(),
            FloatOp::Lookup(op) => op.kind(),
            FloatOp::Norm(op) => op.kind(),
        }
    }

    pub fn output_count(&self) -> usize {
        match self {
            FloatOp::Shape(op) => op.output_count(),
            _ => 1,
        }
    }

    /// Output shapes, or why the inputs do not fit.
    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, String> {
        match self {
            FloatOp::Linear(op) => op.infer(inputs),
            FloatOp::Elementwise(op) => op.infer(inputs),
            FloatOp::Shape(op) => op.infer(inputs),
            FloatOp::Pool(op) => op.infer(inputs),
            FloatOp::Lookup(op) => op.infer(inputs),
            FloatOp::Norm(op) => op.infer(inputs),
        }
    }

    pub fn evaluate(&self, inputs: &[&[f64]], shapes: &[&[usize]]) -> Vec<Vec<f64>> {
        match self {
            FloatOp::Linear(op) => op.evaluate(inputs, shapes),
            FloatOp::Elementwise(op) => op.evaluate(inputs, shapes),
            FloatOp::Shape(op) => op.apply(inputs, shapes, |&v| v),
            FloatOp::Pool(op) => op.evaluate(inputs, shapes),
            FloatOp::Lookup(op) => op.evaluate(inputs),
            FloatOp::Norm(op) => op.evaluate(inputs, shapes),
        }
    }

    /// Quantises the node `node` of the model being quantised.
    pub fn quantize(&self, node: usize, q: &mut Quantizer) -> Result<(), ModelError> {
        match self {
            FloatOp::Linear(op) => linear::quantize(op, node, q),
            FloatOp::Elementwise(op) => elementwise::quantize(op, node, q),
            FloatOp::Shape(op) => shape::quantize(op, node, q),
            FloatOp::Pool(op) => pooling::quantize(op, node, q),
            FloatOp::Lookup(op) => lookup::quantize(op, node, q),
            FloatOp::Norm(op) => normalisation::quantize(op, node, q),
        }
    }
}

impl QuantOp {
    pub fn kind(&self) -> &'static str {
        match self {
            QuantOp::Linear(op) => op.kind(),
            QuantOp::Elementwise(op) => op.kind(),
            QuantOp::Shape(op) => op.kind(),
            QuantOp::Pool(op) => op.kind(),
            QuantOp::Lookup(_) => "Lookup",
            QuantOp::Norm(op) => op.kind(),
        }
    }

    pub fn output_count(&self) -> usize {
        match self {
            QuantOp::Shape(op) => op.output_count(),
            _ => 1,
        }
    }

    /// Constants the operator holds (weights, tables), for the model's size limit.
    pub fn weights(&self) -> usize {
        match self {
            QuantOp::Linear(op) => op.weights(),
            QuantOp::Elementwise(op) => op.weights(),
            QuantOp::Shape(op) => op.weights(),
            QuantOp::Pool(_) => 0,
            QuantOp::Lookup(op) => op.weights(),
            QuantOp::Norm(op) => op.weights(),
        }
    }

    /// Output shapes and ranges, or why the inputs do not fit.
    pub fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match self {
            QuantOp::Linear(op) => op.infer(inputs),
            QuantOp::Elementwise(op) => op.infer(inputs),
            QuantOp::Shape(op) => op.infer_types(inputs),
            QuantOp::Pool(op) => op.infer(inputs),
            QuantOp::Lookup(op) => op.infer(inputs),
            QuantOp::Norm(op) => op.infer(inputs),
        }
    }

    /// The operator on values of any [`Arith`]: evaluation or constraints.
    pub fn apply<A: Arith>(
        &self,
        arith: &mut A,
        inputs: &[&[A::Value]],
        input_types: &[&TensorType],
        output_types: &[&TensorType],
    ) -> Vec<Vec<A::Value>> {
        match self {
            QuantOp::Linear(op) => op.synthesize(arith, inputs, input_types, output_types[0]),
            QuantOp::Elementwise(op) => op.synthesize(arith, inputs, input_types, output_types[0]),
            QuantOp::Shape(op) => op.synthesize(arith, inputs, input_types),
            QuantOp::Pool(op) => op.synthesize(arith, inputs, input_types, output_types[0]),
            QuantOp::Lookup(op) => op.synthesize(arith, inputs),
            QuantOp::Norm(op) => op.synthesize(arith, inputs, input_types),
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        let (family, encode): (u8, &dyn Fn(&mut Writer)) = match self {
            QuantOp::Linear(op) => (1, &|w| op.encode(w)),
            QuantOp::Elementwise(op) => (2, &|w| op.encode(w)),
            QuantOp::Shape(op) => (3, &|w| op.encode(w)),
            QuantOp::Pool(op) => (4, &|w| op.encode(w)),
            QuantOp::Lookup(op) => (5, &|w| op.encode(w)),
            QuantOp::Norm(op) => (6, &|w| op.encode(w)),
        };
        w.u8(family);
        encode(w);
    }

    pub fn decode(r: &mut Reader) -> Result<Self, ModelError> {
        Ok(match r.u8()? {
            1 => QuantOp::Linear(linear::QuantLinear::decode(r)?),
            2 => QuantOp::Elementwise(elementwise::QuantElementwise::decode(r)?),
            3 => QuantOp::Shape(shape::ShapeOp::decode(r)?),
            4 => QuantOp::Pool(pooling::QuantPool::decode(r)?),
            5 => QuantOp::Lookup(lookup::Table::decode(r)?),
            6 => QuantOp::Norm(normalisation::QuantNorm::decode(r)?),
            _ => return Err(r.invalid("unknown operator family")),
        })
    }
}
