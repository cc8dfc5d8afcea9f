//! Building the float graph at import: tensors get ids and shapes as nodes are added (each
//! operator infers its output shapes, which is where most malformed models are caught),
//! constants flow separately until an operator needs them as tensors, and nodes no output
//! depends on are pruned at the end.

use super::graph::{FloatModel, Node, TensorId};
use super::ops::{FloatOp, shape::ShapeOp};
use super::tensor::Constant;

/// What an ONNX name stands for during import.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A tensor computed from the model's inputs.
    Tensor(TensorId),
    /// A value known at import: an initializer, a Constant node, or anything folded.
    Constant(Constant),
    /// An optional input left empty.
    Missing,
}

#[derive(Debug, Default)]
pub struct Builder {
    inputs: Vec<Vec<usize>>,
    nodes: Vec<Node<FloatOp>>,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    producers: Vec<Option<usize>>,
    /// Values held by all tensors so far, inputs included.
    elements: usize,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a model input; inputs must come before any node.
    pub fn input(&mut self, shape: Vec<usize>) -> TensorId {
        assert!(self.nodes.is_empty(), "inputs come first");
        // Inputs are counted toward the model's total; the first node refuses an excess.
        self.elements = self
            .elements
            .saturating_add(shape.iter().copied().fold(1, usize::saturating_mul));
        self.inputs.push(shape.clone());
        self.shapes.push(shape);
        self.producers.push(None);
        self.shapes.len() - 1
    }

    /// Adds a node; its outputs' shapes come from the operator, which refuses inputs it
    /// cannot take.
    pub fn add(
        &mut self,
        name: &str,
        op: FloatOp,
        inputs: Vec<TensorId>,
    ) -> Result<Vec<TensorId>, String> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|&i| &self.shapes[i][..]).collect();
        let outputs = op.infer(&shapes)?;
        for shape in &outputs {
            let len = super::tensor::count(shape)?;
            if len == 0 {
                return Err(format!("an empty tensor of shape {shape:?}"));
            }
            super::tensor::add_to_total(&mut self.elements, len)?;
        }
        let first = self.shapes.len();
        for shape in outputs {
            self.shapes.push(shape);
            self.producers.push(Some(self.nodes.len()));
        }
        self.nodes.push(Node { op, inputs });
        self.names.push(name.to_string());
        Ok((first..self.shapes.len()).collect())
    }

    /// Adds a node with one output.
    pub fn add_one(
        &mut self,
        name: &str,
        op: FloatOp,
        inputs: Vec<TensorId>,
    ) -> Result<TensorId, String> {
        Ok(self.add(name, op, inputs)?[0])
    }

    pub fn shape(&self, id: TensorId) -> &[usize] {
        &self.shapes[id]
    }

    /// The shape of a tensor or constant.
    pub fn shape_of(&self, value: &Value) -> Option<Vec<usize>> {
        match value {
            Value::Tensor(id) => Some(self.shapes[*id].clone()),
            Value::Constant(c) => Some(c.dims.clone()),
            Value::Missing => None,
        }
    }

    /// A tensor for `value`: itself, or a node producing the constant.
    pub fn tensor(&mut self, name: &str, value: &Value) -> Result<TensorId, String> {
        match value {
            Value::Tensor(id) => Ok(*id),
            Value::Constant(c) => self.add_one(
                name,
                FloatOp::Shape(ShapeOp::Const {
                    shape: c.dims.clone(),
                    values: c.values.clone(),
                }),
                vec![],
            ),
            Value::Missing => Err("a required input is missing".into()),
        }
    }

    /// The node that computes `id`, if any.
    pub fn producer(&self, id: TensorId) -> Option<usize> {
        self.producers[id]
    }

    pub fn op_mut(&mut self, node: usize) -> &mut FloatOp {
        &mut self.nodes[node].op
    }

    /// The model computing `outputs`, without the nodes none of them depends on.
    pub fn finish(self, outputs: Vec<TensorId>) -> FloatModel {
        let mut outputs_of: Vec<Vec<TensorId>> = vec![Vec::new(); self.nodes.len()];
        for (t, producer) in self.producers.iter().enumerate() {
            if let Some(p) = producer {
                outputs_of[*p].push(t);
            }
        }
        let mut live = vec![false; self.shapes.len()];
        let mut keep = vec![false; self.nodes.len()];
        for &o in &outputs {
            live[o] = true;
        }
        for (index, node) in self.nodes.iter().enumerate().rev() {
            if outputs_of[index].iter().any(|&t| live[t]) {
                keep[index] = true;
                for &i in &node.inputs {
                    live[i] = true;
                }
            }
        }
        // Renumber: inputs keep their ids, kept nodes' outputs follow in order.
        let mut renumber: Vec<Option<TensorId>> = vec![None; self.shapes.len()];
        let mut shapes = self.inputs.clone();
        for (i, slot) in renumber.iter_mut().enumerate().take(self.inputs.len()) {
            *slot = Some(i);
        }
        let mut nodes = Vec::new();
        let mut names = Vec::new();
        for (index, node) in self.nodes.into_iter().enumerate() {
            if !keep[index] {
                continue;
            }
            for &t in &outputs_of[index] {
                renumber[t] = Some(shapes.len());
                shapes.push(self.shapes[t].clone());
            }
            let inputs = node
                .inputs
                .iter()
                .map(|&i| renumber[i].expect("inputs of kept nodes are kept"))
                .collect();
            nodes.push(Node {
                op: node.op,
                inputs,
            });
            names.push(self.names[index].clone());
        }
        FloatModel {
            inputs: self.inputs,
            nodes,
            names,
            outputs: outputs
                .iter()
                .map(|&o| renumber[o].expect("outputs are live"))
                .collect(),
            shapes,
        }
    }
}
