//! Float to fixed point. The float model runs on the calibration samples, and every tensor's
//! observed range gives its scale: symmetric int8 (`max|x| / 127`), or uint8
//! (`max / 255`) where values cannot be negative (after ReLU, Sigmoid, Exp). Model inputs
//! are int8. Each operator's family then chooses its integer parameters (`ops::*::quantize`)
//! through the [`Quantizer`], which also fuses a Relu or Clip into the rescale of the
//! operator before it when nothing else reads that operator's output, and inserts the
//! rescales that bring a tensor to another scale or to 8 bits where an operator needs it.

use serde::{Deserialize, Serialize};

use super::ModelError;
use super::graph::{FloatModel, Node, QuantInput, QuantModel, QuantOutput, TensorId, TensorType};
use super::ops::elementwise::{FloatElementwise, QuantElementwise};
use super::ops::shape::ShapeOp;
use super::ops::{FloatOp, QuantOp};
use super::tensor::Constant;
use crate::circuit::{MAX_LOOKUP_DOMAIN, Range};

/// What the quantiser chose for one node of the float model, for `sn2 model info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    /// The ONNX node.
    pub node: String,
    pub operator: String,
    /// The integer operators it became (none when fused into the one before).
    pub quantised: Vec<String>,
    /// The scale and integer range of its (first) output.
    pub scale: f64,
    pub range: [i64; 2],
}

/// The observed range of a tensor over the calibration samples.
#[derive(Debug, Clone, Copy)]
struct Stats {
    min: f64,
    max: f64,
}

impl Stats {
    fn magnitude(&self) -> f64 {
        self.min.abs().max(self.max.abs())
    }
}

/// An output's scale and clamp, and the Relu or Clip fused into it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub scale: f64,
    pub clamp: Range,
    fused: Option<usize>,
}

/// An Add fusable into the operator whose output it reads: see
/// [`Quantizer::residual_add`].
#[derive(Debug, Clone)]
pub struct ResidualAdd {
    /// The Add node.
    pub add: usize,
    pub addend: Addend,
}

/// What a fusable Add adds.
#[derive(Debug, Clone)]
pub enum Addend {
    /// A quantised tensor at `scale`, negative where it is subtracted.
    Tensor { tensor: TensorId, scale: f64 },
    /// A constant, in the output's shape.
    Constant(Constant),
}

/// Bits of precision of fixed-point multipliers.
const MULTIPLIER_BITS: i32 = 12;

/// Fixed-point multipliers for real `ratios`: `(m, shift)` with `m_i / 2^shift ≈ ratio_i`,
/// the largest `m` near 2^12; the smallest shift that is exact when one is.
pub fn fixed_point(ratios: &[f64]) -> (Vec<i64>, u8) {
    let largest = ratios.iter().fold(0f64, |m, r| m.max(r.abs()));
    if largest == 0.0 || !largest.is_finite() {
        return (vec![0; ratios.len()], 0);
    }
    let max_shift = (MULTIPLIER_BITS - 1 - libm::log2(largest).floor() as i32).clamp(0, 48) as u8;
    let scaled = |shift: u8| ratios.iter().map(move |r| r * (1u64 << shift) as f64);
    let shift = (0..=max_shift)
        .find(|&s| scaled(s).all(|v| (v - v.round()).abs() < 1e-9))
        .unwrap_or(max_shift);
    (scaled(shift).map(|v| v.round() as i64).collect(), shift)
}

/// The state of one quantisation: the float model, what it observed, and the integer
/// model being built.
pub struct Quantizer<'a> {
    model: &'a FloatModel,
    stats: Vec<Stats>,
    consumers: Vec<Vec<usize>>,
    outputs_of: Vec<std::ops::Range<TensorId>>,
    model_outputs: Vec<bool>,
    /// Float tensor → quantised tensor and its scale.
    map: Vec<Option<(TensorId, f64)>>,
    fused: Vec<bool>,
    nodes: Vec<Node<QuantOp>>,
    types: Vec<TensorType>,
    scales: Vec<f64>,
    emitted: Vec<String>,
}

/// Quantises `model`, calibrating on `samples` (each one input of `model.input_len()`
/// values).
pub fn quantize(
    model: &FloatModel,
    samples: &[Vec<f32>],
) -> Result<(QuantModel, Vec<NodeReport>), ModelError> {
    if samples.is_empty() {
        return Err(ModelError::Calibration("no calibration samples".into()));
    }
    for sample in samples {
        if sample.len() != model.input_len() {
            return Err(ModelError::InputLength {
                expected: model.input_len(),
                found: sample.len(),
            });
        }
        if sample.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Calibration(
                "a calibration sample holds NaN or infinity".into(),
            ));
        }
    }
    let fused = super::ops::lookup::fuse_functions(model);
    let model = &fused;
    let mut stats = vec![
        Stats {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY
        };
        model.shapes.len()
    ];
    for sample in samples {
        for (s, values) in stats.iter_mut().zip(model.evaluate_all(sample)) {
            for v in values {
                if !v.is_finite() {
                    return Err(ModelError::Calibration(
                        "the float model overflows on a calibration sample".into(),
                    ));
                }
                s.min = s.min.min(v);
                s.max = s.max.max(v);
            }
        }
    }
    let stats = share_stats(model, stats);
    let mut model_outputs = vec![false; model.shapes.len()];
    for &o in &model.outputs {
        model_outputs[o] = true;
    }
    let mut q = Quantizer {
        model,
        stats,
        consumers: model.consumers(),
        outputs_of: model.node_outputs(),
        model_outputs,
        map: vec![None; model.shapes.len()],
        fused: vec![false; model.nodes.len()],
        nodes: Vec::new(),
        types: Vec::new(),
        scales: Vec::new(),
        emitted: Vec::new(),
    };
    let mut inputs = Vec::new();
    for (i, shape) in model.inputs.iter().enumerate() {
        let scale = q.symmetric_scale(q.stats[i].magnitude());
        inputs.push(QuantInput {
            shape: shape.clone(),
            scale: scale as f32,
        });
        q.types
            .push(TensorType::new(shape.clone(), super::graph::INPUT_RANGE));
        q.scales.push(scale);
        q.map[i] = Some((i, scale));
    }
    let mut reports = Vec::new();
    for (index, node) in model.nodes.iter().enumerate() {
        let first = q.outputs_of[index].start;
        if q.fused[index] {
            reports.push(q.report(index, first, vec![]));
            continue;
        }
        q.emitted.clear();
        node.op.quantize(index, &mut q).map_err(|e| match e {
            ModelError::InvalidModel(reason) | ModelError::Calibration(reason) => {
                ModelError::Calibration(format!(
                    "node `{}` ({}): {reason}",
                    model.names[index],
                    node.op.kind()
                ))
            }
            other => other,
        })?;
        let emitted = std::mem::take(&mut q.emitted);
        reports.push(q.report(index, first, emitted));
    }
    let outputs = model
        .outputs
        .iter()
        .map(|&o| {
            let (tensor, scale) = q.map[o].expect("every tensor is quantised");
            QuantOutput {
                tensor,
                scale: scale as f32,
            }
        })
        .collect();
    let quantized = QuantModel::new(inputs, q.nodes, outputs)?;
    Ok((quantized, reports))
}

/// The observed ranges, widened so that tensors which must share a scale get the same:
/// the inputs and output of a Concat (which would otherwise rescale its inputs) and what
/// shape operators route unchanged. A producer of such a tensor then quantises straight
/// to the shared scale.
fn share_stats(model: &FloatModel, stats: Vec<Stats>) -> Vec<Stats> {
    fn root(parent: &mut [usize], mut t: usize) -> usize {
        while parent[t] != t {
            parent[t] = parent[parent[t]];
            t = parent[t];
        }
        t
    }
    let mut parent: Vec<usize> = (0..stats.len()).collect();
    let mut join = |a: usize, b: usize| {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        parent[ra] = rb;
    };
    for (node, outputs) in model.nodes.iter().zip(model.node_outputs()) {
        if let FloatOp::Shape(op) = &node.op
            && !matches!(op, ShapeOp::Const { .. })
        {
            for &input in &node.inputs {
                for output in outputs.clone() {
                    join(input, output);
                }
            }
        }
    }
    let mut shared: Vec<Stats> = stats.clone();
    for (t, s) in stats.iter().enumerate() {
        let r = root(&mut parent, t);
        shared[r].min = shared[r].min.min(s.min);
        shared[r].max = shared[r].max.max(s.max);
    }
    (0..stats.len())
        .map(|t| shared[root(&mut parent, t)])
        .collect()
}

impl Quantizer<'_> {
    fn report(&self, node: usize, first: TensorId, quantised: Vec<String>) -> NodeReport {
        let (scale, range) = match self.map[first] {
            Some((id, scale)) => (scale, self.types[id].range),
            None => (0.0, Range::point(0)),
        };
        NodeReport {
            node: self.model.names[node].clone(),
            operator: self.model.nodes[node].op.kind().to_string(),
            quantised,
            scale,
            range: [range.lo, range.hi],
        }
    }

    /// The largest magnitude observed for output `out` of `node` (and the tensors that
    /// share its scale).
    pub fn magnitude(&self, node: usize, out: usize) -> f64 {
        self.stats[self.outputs_of[node].start + out].magnitude()
    }

    /// `max_abs / 127`, or 1/127 for a tensor that was always zero.
    pub fn symmetric_scale(&self, max_abs: f64) -> f64 {
        if max_abs > 0.0 {
            max_abs / 127.0
        } else {
            1.0 / 127.0
        }
    }

    pub fn input_count(&self, node: usize) -> usize {
        self.model.nodes[node].inputs.len()
    }

    /// The quantised tensor and scale of the node's input `i`.
    pub fn input(&self, node: usize, i: usize) -> (TensorId, f64) {
        self.map[self.model.nodes[node].inputs[i]]
            .expect("inputs are quantised before their readers")
    }

    pub fn input_type(&self, node: usize, i: usize) -> &TensorType {
        &self.types[self.input(node, i).0]
    }

    pub fn quant_type(&self, id: TensorId) -> &TensorType {
        &self.types[id]
    }

    /// Whether output `out` of `node` is an output of the model that nothing else reads.
    pub fn is_model_output_only(&self, node: usize, out: usize) -> bool {
        let t = self.outputs_of[node].start + out;
        self.model_outputs[t] && self.consumers[t].is_empty()
    }

    /// The scale and clamp for output `out` of `node`: int8 at its observed magnitude, or
    /// the clamp of a Relu or Clip that alone reads it (which is then fused).
    pub fn target(&mut self, node: usize, out: usize) -> Target {
        self.target_with(node, out, false)
    }

    /// As [`Quantizer::target`], for an output that is never negative: uint8.
    pub fn target_unsigned(&mut self, node: usize, out: usize) -> Target {
        self.target_with(node, out, true)
    }

    fn target_with(&mut self, node: usize, out: usize, unsigned: bool) -> Target {
        let t = self.outputs_of[node].start + out;
        if !self.model_outputs[t]
            && let [reader] = self.consumers[t][..]
            && let FloatOp::Elementwise(FloatElementwise::Clamp { min, max }) =
                self.model.nodes[reader].op
        {
            let observed = self.stats[self.outputs_of[reader].start];
            let target = if min >= 0.0 || unsigned {
                let top = observed.max.min(max).max(0.0);
                let scale = if top > 0.0 { top / 255.0 } else { 1.0 / 255.0 };
                let bound = |v: f64| (v / scale).round().clamp(0.0, 255.0) as i64;
                Target {
                    scale,
                    clamp: Range::new(bound(min.max(0.0)), bound(max)),
                    fused: Some(reader),
                }
            } else {
                let scale =
                    self.symmetric_scale(observed.magnitude().min(min.abs().max(max.abs())));
                let bound = |v: f64| (v / scale).round().clamp(-128.0, 127.0) as i64;
                Target {
                    scale,
                    clamp: Range::new(bound(min), bound(max)),
                    fused: Some(reader),
                }
            };
            return target;
        }
        let observed = self.stats[t];
        if unsigned {
            let scale = if observed.max > 0.0 {
                observed.max / 255.0
            } else {
                1.0 / 255.0
            };
            Target {
                scale,
                clamp: Range::UINT8,
                fused: None,
            }
        } else {
            Target {
                scale: self.symmetric_scale(observed.magnitude()),
                clamp: Range::INT8,
                fused: None,
            }
        }
    }

    /// Records the quantised tensor of output `out` of `node`, and of the fused Relu or Clip.
    pub fn finish_target(&mut self, node: usize, out: usize, id: TensorId, target: Target) {
        self.map_output(node, out, id, target.scale);
        if let Some(reader) = target.fused {
            self.fuse_reader(reader, id, target.scale);
        }
    }

    /// Whether the only reader of output `out` of `node` is a linear operator whose
    /// output is the model's and keeps its accumulators' full range for free.
    pub fn read_only_by_an_output_layer(&self, node: usize, out: usize) -> bool {
        self.sole_consumer(self.outputs_of[node].start + out)
            .is_some_and(|reader| {
                matches!(self.model.nodes[reader].op, FloatOp::Linear(_))
                    && self.is_model_output_only(reader, 0)
            })
    }

    /// The one node that reads tensor `t`, when nothing else does and `t` is not an
    /// output of the model: what may be fused into the operator that makes `t`.
    fn sole_consumer(&self, t: TensorId) -> Option<usize> {
        match self.consumers[t][..] {
            [reader] if !self.model_outputs[t] => Some(reader),
            _ => None,
        }
    }

    /// The node that alone reads what output `out` of `node` becomes under `target`
    /// (through the Relu or Clip fused into it), when that tensor is not a model output:
    /// a candidate to fuse into the operator too.
    pub fn sole_reader(&self, node: usize, out: usize, target: &Target) -> Option<usize> {
        let t = match target.fused {
            Some(reader) => self.outputs_of[reader].start,
            None => self.outputs_of[node].start + out,
        };
        self.sole_consumer(t)
    }

    /// The Add that alone reads output `out` of `node` and adds to it another tensor of
    /// its shape, already quantised, or a constant (an Add of a constant that did not fold
    /// into a bias, as a position embedding does not): a residual the operator can take
    /// in before its rescale, saving the Add its own. None when the other addend comes
    /// later in the graph, has another shape, or is what the output is subtracted from.
    pub fn residual_add(&self, node: usize, out: usize) -> Option<ResidualAdd> {
        let t = self.outputs_of[node].start + out;
        let add = self.sole_consumer(t)?;
        if self.model.shapes[self.outputs_of[add].start] != self.model.shapes[t] {
            return None;
        }
        let addend = match &self.model.nodes[add].op {
            FloatOp::Elementwise(FloatElementwise::Add { subtract }) => {
                let other = match self.model.nodes[add].inputs[..] {
                    [a, b] if a == t && b != t => b,
                    [a, b] if b == t && a != t && !subtract => a,
                    _ => return None,
                };
                let (tensor, scale) = self.map[other]?;
                if self.types[tensor].shape != self.model.shapes[t] {
                    return None;
                }
                let scale = if *subtract { -scale } else { scale };
                Addend::Tensor { tensor, scale }
            }
            FloatOp::Elementwise(FloatElementwise::Affine { scale, offset })
                if scale.values.iter().all(|&s| s == 1.0) =>
            {
                let dims = self.model.shapes[t].clone();
                let values = offset.broadcast_to(&dims).ok()?;
                Addend::Constant(Constant { dims, values })
            }
            _ => return None,
        };
        Some(ResidualAdd { add, addend })
    }

    /// The float operator of `node`.
    pub fn float_op(&self, node: usize) -> &FloatOp {
        &self.model.nodes[node].op
    }

    /// Records that `reader`, a one-output node, was fused into the operator that made
    /// `id`: its output is `id` at `scale`.
    pub fn fuse_reader(&mut self, reader: usize, id: TensorId, scale: f64) {
        self.fused[reader] = true;
        self.map[self.outputs_of[reader].start] = Some((id, scale));
    }

    /// Records the quantised tensor of output `out` of `node`.
    pub fn map_output(&mut self, node: usize, out: usize, id: TensorId, scale: f64) {
        self.scales[id] = scale;
        self.map[self.outputs_of[node].start + out] = Some((id, scale));
    }

    /// Appends an integer operator; returns its outputs' ids.
    pub fn emit(
        &mut self,
        op: QuantOp,
        inputs: Vec<TensorId>,
    ) -> Result<Vec<TensorId>, ModelError> {
        let input_types: Vec<&TensorType> = inputs.iter().map(|&i| &self.types[i]).collect();
        let outputs = op.infer(&input_types).map_err(ModelError::InvalidModel)?;
        for t in &outputs {
            if !t.range.is_bounded() {
                return Err(ModelError::InvalidModel(format!(
                    "{} values may exceed {} bits",
                    op.kind(),
                    crate::circuit::MAX_MAGNITUDE_BITS
                )));
            }
        }
        self.emitted.push(op.kind().to_string());
        let first = self.types.len();
        for t in outputs {
            self.types.push(t);
            self.scales.push(f64::NAN);
        }
        self.nodes.push(Node { op, inputs });
        Ok((first..self.types.len()).collect())
    }

    /// Rescales quantised tensor `id` (at `from`) to scale `to` within `clamp`.
    fn rescale(
        &mut self,
        id: TensorId,
        from: f64,
        to: f64,
        clamp: Range,
    ) -> Result<TensorId, ModelError> {
        let (multipliers, shift) = fixed_point(&[from / to]);
        let op = QuantOp::Elementwise(QuantElementwise::Affine {
            params_shape: vec![],
            multipliers,
            offsets: vec![0],
            shift,
            clamp,
        });
        let out = self.emit(op, vec![id])?[0];
        self.scales[out] = to;
        Ok(out)
    }

    /// The node's input `i` at `scale` (at least its own): rescaled if it is not.
    pub fn input_at_scale(
        &mut self,
        node: usize,
        i: usize,
        scale: f64,
    ) -> Result<TensorId, ModelError> {
        let (id, own) = self.input(node, i);
        if (own - scale).abs() <= 1e-12 * scale {
            return Ok(id);
        }
        let range = self.types[id].range;
        self.rescale(id, own, scale, range)
    }

    /// The node's input `i` with at most 256 values (a table's domain): rescaled to int8
    /// at its observed magnitude if it is wider.
    pub fn input_narrow(&mut self, node: usize, i: usize) -> Result<(TensorId, f64), ModelError> {
        let (id, own) = self.input(node, i);
        if self.types[id].range.size() <= MAX_LOOKUP_DOMAIN {
            return Ok((id, own));
        }
        let float = self.model.nodes[node].inputs[i];
        let scale = self.symmetric_scale(self.stats[float].magnitude());
        Ok((self.rescale(id, own, scale, Range::INT8)?, scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_multipliers_are_exact_when_they_can_be() {
        assert_eq!(fixed_point(&[1.0]), (vec![1], 0));
        assert_eq!(fixed_point(&[0.5, 0.25]), (vec![2, 1], 2));
        let (m, shift) = fixed_point(&[0.3]);
        assert_eq!(shift, 13);
        assert!((m[0] as f64 / 8192.0 - 0.3).abs() < 1e-4);
        assert_eq!(fixed_point(&[0.0]), (vec![0], 0));
    }
}
