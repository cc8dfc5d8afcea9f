//! Functions of one value, by table: Sigmoid, Tanh, Exp, Erf, Gelu (exact and tanh),
//! Softplus, LeakyRelu, HardSigmoid and HardSwish.
//!
//! A quantised function of an 8-bit value is exact as a table: every input integer has
//! its output integer, `round(f(q·s_in) / s_out)`, computed once at quantisation and part
//! of the model. Nothing is approximated by a polynomial; the only error is rounding.
//!
//! **Cost** (see `circuit::gadgets::lookup`): 49 constraints for an 8-bit input (256
//! values), fewer for a narrower range (33 for a uint8 input from ReLU's [0, 127]).
//!
//! Inputs wider than 8 bits are decomposed, not tabulated whole: `x − lo = h·2^s + l`
//! (a rescale gives `h`, so `l` is free), two tables give `f` at the knots `h` and `h + 1`
//! from one pair of selectors, and `f(x) ≈ T0[h] + (T1[h] − T0[h])·l / 2^s` is one product
//! and one rescale: about 125 constraints for a 16-bit input, with the error of linear
//! interpolation over 256 knots.

use super::elementwise::FloatElementwise;
use super::{FloatOp, QuantOp, TensorType};
use crate::circuit::{Arith, MAX_LOOKUP_DOMAIN, Range, Rescale, bits_for};
use crate::model::ModelError;
use crate::model::builder::{Builder, Value};
use crate::model::codec::{Reader, Writer};
use crate::model::graph::FloatModel;
use crate::model::onnx::OnnxNode;
use crate::model::quantize::Quantizer;
use crate::model::tensor::Constant;

pub const OPERATORS: &[&str] = &[
    "Sigmoid",
    "Tanh",
    "Exp",
    "Erf",
    "Gelu",
    "Softplus",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
];

/// A function of one real value.
#[derive(Debug, Clone, PartialEq)]
pub enum Function {
    Sigmoid,
    Tanh,
    Exp,
    Erf,
    /// `x·Φ(x)`, or its tanh approximation.
    Gelu {
        tanh: bool,
    },
    Softplus,
    LeakyRelu {
        alpha: f64,
    },
    HardSigmoid {
        alpha: f64,
        beta: f64,
    },
    HardSwish,
    /// Several elementwise operators of one tensor, fused into one function (and so one
    /// table): the steps in order, each reading the input or earlier steps.
    Composite(Vec<Step>),
}

/// One step of a [`Function::Composite`]; operands index 0 for the input, `k` for the
/// result of step `k − 1`.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Apply(Function, usize),
    Affine { scale: f64, offset: f64, x: usize },
    Clamp { min: f64, max: f64, x: usize },
    Add { a: usize, b: usize, subtract: bool },
    Mul { a: usize, b: usize, factor: f64 },
}

impl Function {
    pub fn kind(&self) -> &'static str {
        match self {
            Function::Sigmoid => "Sigmoid",
            Function::Tanh => "Tanh",
            Function::Exp => "Exp",
            Function::Erf => "Erf",
            Function::Gelu { .. } => "Gelu",
            Function::Softplus => "Softplus",
            Function::LeakyRelu { .. } => "LeakyRelu",
            Function::HardSigmoid { .. } => "HardSigmoid",
            Function::HardSwish => "HardSwish",
            Function::Composite(_) => "Composite",
        }
    }

    /// The function's value. Transcendental functions come from `libm`, in software, so
    /// that tables (and with them model ids) are the same on every platform.
    pub fn apply(&self, x: f64) -> f64 {
        match self {
            Function::Sigmoid => 1.0 / (1.0 + libm::exp(-x)),
            Function::Tanh => libm::tanh(x),
            Function::Exp => libm::exp(x),
            Function::Erf => libm::erf(x),
            Function::Gelu { tanh: false } => {
                0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
            }
            Function::Gelu { tanh: true } => {
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + libm::tanh(inner))
            }
            Function::Softplus => {
                // ln(1 + e^x) without overflow.
                x.max(0.0) + libm::log1p(libm::exp(-x.abs()))
            }
            Function::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Function::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Function::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Function::Composite(steps) => {
                let mut values = Vec::with_capacity(steps.len() + 1);
                values.push(x);
                for step in steps {
                    let v = match *step {
                        Step::Apply(ref f, a) => f.apply(values[a]),
                        Step::Affine { scale, offset, x } => values[x] * scale + offset,
                        Step::Clamp { min, max, x } => values[x].max(min).min(max),
                        Step::Add { a, b, subtract } => {
                            if subtract {
                                values[a] - values[b]
                            } else {
                                values[a] + values[b]
                            }
                        }
                        Step::Mul { a, b, factor } => values[a] * values[b] * factor,
                    };
                    values.push(v);
                }
                values[steps.len()]
            }
        }
    }

    /// Whether the function never goes below zero (its output is then unsigned).
    fn nonnegative(&self) -> bool {
        matches!(
            self,
            Function::Sigmoid | Function::Exp | Function::Softplus | Function::HardSigmoid { .. }
        )
    }

    pub fn infer(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, String> {
        match inputs {
            [input] => Ok(vec![input.to_vec()]),
            _ => Err(format!("{} inputs; 1 expected", inputs.len())),
        }
    }

    pub fn evaluate(&self, inputs: &[&[f64]]) -> Vec<Vec<f64>> {
        vec![inputs[0].iter().map(|&x| self.apply(x)).collect()]
    }
}

/// A quantised function.
#[derive(Debug, Clone, PartialEq)]
pub enum Table {
    /// `values[x − domain.lo]`, at most 256 values.
    Direct { domain: Range, values: Vec<i64> },
    /// Linear interpolation between `knots[h]` and `knots[h + 1]`, where
    /// `x − domain.lo = h·2^step + l`: `rescale(knots[h]·2^step + (knots[h+1] − knots[h])·l)`
    /// rounded by `step` bits.
    Interpolated {
        domain: Range,
        step: u8,
        knots: Vec<i64>,
    },
}

impl Table {
    fn domain(&self) -> Range {
        match self {
            Table::Direct { domain, .. } | Table::Interpolated { domain, .. } => *domain,
        }
    }

    fn values(&self) -> &[i64] {
        match self {
            Table::Direct { values, .. } => values,
            Table::Interpolated { knots, .. } => knots,
        }
    }

    fn output_range(&self) -> Range {
        let values = self.values();
        Range::new(
            values.iter().copied().min().unwrap_or(0),
            values.iter().copied().max().unwrap_or(0),
        )
    }

    pub fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let [input] = inputs else {
            return Err(format!("{} inputs; 1 expected", inputs.len()));
        };
        let domain = self.domain();
        if input.range.lo < domain.lo || input.range.hi > domain.hi {
            return Err(format!(
                "an input in {} for a table over {domain}",
                input.range
            ));
        }
        match self {
            Table::Direct { values, .. } => {
                if domain.size() > MAX_LOOKUP_DOMAIN || values.len() as u128 != domain.size() {
                    return Err("a table that does not cover its domain".into());
                }
            }
            Table::Interpolated { step, knots, .. } => {
                let rows = (domain.size() - 1) >> step;
                if *step > 24 || rows + 1 > MAX_LOOKUP_DOMAIN || knots.len() as u128 != rows + 2 {
                    return Err("interpolation knots that do not cover their domain".into());
                }
            }
        }
        if !self.output_range().is_bounded() || !domain.is_bounded() {
            return Err("table values beyond 60 bits".into());
        }
        Ok(vec![TensorType::new(
            input.shape.clone(),
            self.output_range(),
        )])
    }

    pub fn synthesize<A: Arith>(
        &self,
        arith: &mut A,
        inputs: &[&[A::Value]],
    ) -> Vec<Vec<A::Value>> {
        let domain = self.domain();
        let out = match self {
            Table::Direct { values, .. } => inputs[0]
                .iter()
                .map(|x| arith.lookup(x, domain, &[values]).remove(0))
                .collect(),
            Table::Interpolated { step, knots, .. } => {
                let rows = ((domain.size() - 1) >> step) as i64;
                let (low, high) = (&knots[..knots.len() - 1], &knots[1..]);
                let span = Range::new(0, rows);
                let range = self.output_range();
                inputs[0]
                    .iter()
                    .map(|x| {
                        // h = ⌊(x − lo) / 2^step⌋, as a rescale of x − lo − 2^(step−1).
                        let half = if *step > 0 { 1i64 << (step - 1) } else { 0 };
                        let shifted = arith.linear(&[(1, x)], -domain.lo - half);
                        let shifted_range = Range::new(-half, domain.hi - domain.lo - half);
                        let h = arith.rescale(
                            &shifted,
                            shifted_range,
                            Rescale {
                                multiplier: 1,
                                shift: *step,
                                clamp: span,
                            },
                        );
                        let l = arith.linear(&[(1, x), (-(1i64 << step), &h)], -domain.lo);
                        let mut ends = arith.lookup(&h, span, &[low, high]);
                        let (t1, t0) = (
                            ends.pop().expect("two tables"),
                            ends.pop().expect("two tables"),
                        );
                        let rise = arith.linear(&[(1, &t1), (-1, &t0)], 0);
                        let slope = arith.mul(&rise, &l);
                        let sum = arith.linear(&[(1i64 << step, &t0), (1, &slope)], 0);
                        // A convex combination of two knots, scaled by 2^step.
                        let sum_range = Range::new(range.lo << step, range.hi << step);
                        arith.rescale(
                            &sum,
                            sum_range,
                            Rescale {
                                multiplier: 1,
                                shift: *step,
                                clamp: range,
                            },
                        )
                    })
                    .collect()
            }
        };
        vec![out]
    }

    pub fn weights(&self) -> usize {
        self.values().len()
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            Table::Direct { domain, values } => {
                w.u8(1);
                w.range(*domain);
                w.i64s(values);
            }
            Table::Interpolated {
                domain,
                step,
                knots,
            } => {
                w.u8(2);
                w.range(*domain);
                w.u8(*step);
                w.i64s(knots);
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Self, ModelError> {
        Ok(match r.u8()? {
            1 => Table::Direct {
                domain: r.range()?,
                values: r.i64s()?,
            },
            2 => Table::Interpolated {
                domain: r.range()?,
                step: r.u8()?,
                knots: r.i64s()?,
            },
            _ => return Err(r.invalid("unknown table")),
        })
    }
}

/// Tabulates `f` from input integers at `s_in` to output integers at `s_out`, clamped.
pub fn tabulate(
    f: impl Fn(f64) -> f64,
    domain: Range,
    s_in: f64,
    s_out: f64,
    clamp: Range,
) -> Table {
    let value = |q: i64| {
        (f(q as f64 * s_in) / s_out)
            .round()
            .clamp(clamp.lo as f64, clamp.hi as f64) as i64
    };
    if domain.size() <= MAX_LOOKUP_DOMAIN {
        return Table::Direct {
            domain,
            values: (domain.lo..=domain.hi).map(value).collect(),
        };
    }
    // Knots every 2^step inputs, at most 256 rows, and one knot past the end.
    let step = bits_for(((domain.size() - 1) / MAX_LOOKUP_DOMAIN) as i128) as u8;
    let rows = ((domain.size() - 1) >> step) as i64;
    let knots = (0..=rows + 1)
        .map(|h| value(domain.lo + (h << step)))
        .collect();
    Table::Interpolated {
        domain,
        step,
        knots,
    }
}

pub fn quantize(function: &Function, node: usize, q: &mut Quantizer) -> Result<(), ModelError> {
    let (input, s_in) = q.input(node, 0);
    let domain = q.input_type(node, 0).range;
    let target = if function.nonnegative() {
        q.target_unsigned(node, 0)
    } else {
        q.target(node, 0)
    };
    let table = tabulate(
        |x| function.apply(x),
        domain,
        s_in,
        target.scale,
        target.clamp,
    );
    let out = q.emit(QuantOp::Lookup(table), vec![input])?;
    q.finish_target(node, 0, out[0], target);
    Ok(())
}

/// The estimated constraints of an elementwise node of the float model, when it is one a
/// [`Function::Composite`] can hold.
fn fusable_cost(model: &FloatModel, node: usize, output: usize) -> Option<usize> {
    let n = &model.nodes[node];
    let same = |i: usize| model.shapes[n.inputs[i]] == model.shapes[output];
    let uniform = |c: &Constant| c.values.iter().all(|&v| v == c.values[0]) && !c.values.is_empty();
    match &n.op {
        FloatOp::Lookup(_) if same(0) => Some(49),
        FloatOp::Elementwise(FloatElementwise::Clamp { .. }) => Some(14),
        FloatOp::Elementwise(FloatElementwise::Affine { scale, offset })
            if same(0) && uniform(scale) && uniform(offset) =>
        {
            Some(26)
        }
        FloatOp::Elementwise(FloatElementwise::Add { .. } | FloatElementwise::Mul { .. })
            if same(0) && same(1) =>
        {
            Some(28)
        }
        _ => None,
    }
}

/// The float model with every chain of elementwise operators of one tensor that costs
/// more than one table replaced by one [`Function::Composite`]: GELU, SiLU, Mish and
/// HardSwish as exporters decompose them become one lookup (49 constraints per element
/// instead of 100 to 160), and are more accurate, having no intermediate rounding.
pub fn fuse_functions(model: &FloatModel) -> FloatModel {
    let outputs_of = model.node_outputs();
    let consumers = model.consumers();
    let mut producer = vec![None; model.shapes.len()];
    for (node, outputs) in outputs_of.iter().enumerate() {
        for t in outputs.clone() {
            producer[t] = Some(node);
        }
    }
    let mut is_output = vec![false; model.shapes.len()];
    for &o in &model.outputs {
        is_output[o] = true;
    }
    // Regions, grown backwards from their last node: (nodes, the one outside input).
    let mut region_of = vec![None; model.nodes.len()];
    let mut regions: Vec<(Vec<usize>, usize)> = Vec::new();
    for last in (0..model.nodes.len()).rev() {
        if region_of[last].is_some() || fusable_cost(model, last, outputs_of[last].start).is_none()
        {
            continue;
        }
        let mut nodes = vec![last];
        loop {
            let inside = |t: usize| producer[t].is_some_and(|p| nodes.contains(&p));
            let external: Vec<usize> = nodes
                .iter()
                .flat_map(|&n| model.nodes[n].inputs.iter().copied())
                .filter(|&t| !inside(t))
                .collect();
            let grow = external.iter().copied().find(|&t| {
                producer[t].is_some_and(|p| {
                    region_of[p].is_none()
                        && fusable_cost(model, p, t).is_some()
                        && !is_output[t]
                        && consumers[t].iter().all(|c| nodes.contains(c))
                })
            });
            match grow {
                Some(t) => nodes.push(producer[t].expect("checked")),
                None => break,
            }
        }
        nodes.sort_unstable();
        let inputs: std::collections::BTreeSet<usize> = nodes
            .iter()
            .flat_map(|&n| model.nodes[n].inputs.iter().copied())
            .filter(|&t| !producer[t].is_some_and(|p| nodes.contains(&p)))
            .collect();
        // A Clamp after an operator that rescales costs nothing: it becomes the clamp.
        let cost: usize = nodes
            .iter()
            .map(|&n| match &model.nodes[n].op {
                FloatOp::Elementwise(FloatElementwise::Clamp { .. })
                    if producer[model.nodes[n].inputs[0]].is_some_and(|p| {
                        nodes.contains(&p) && !matches!(model.nodes[p].op, FloatOp::Lookup(_))
                    }) =>
                {
                    0
                }
                _ => fusable_cost(model, n, outputs_of[n].start).unwrap_or(0),
            })
            .sum();
        if inputs.len() == 1 && nodes.len() >= 2 && cost > 49 {
            let id = regions.len();
            for &n in &nodes {
                region_of[n] = Some(id);
            }
            regions.push((nodes, *inputs.iter().next().expect("one input")));
        }
    }
    if regions.is_empty() {
        return model.clone();
    }
    // Rebuild: a region becomes one node where its last node was.
    let mut b = Builder::new();
    let mut renumber: Vec<Option<usize>> = vec![None; model.shapes.len()];
    for (i, shape) in model.inputs.iter().enumerate() {
        renumber[i] = Some(b.input(shape.clone()));
    }
    for (index, node) in model.nodes.iter().enumerate() {
        let (op, inputs) = match region_of[index] {
            Some(id) if *regions[id].0.last().expect("not empty") == index => {
                let (nodes, input) = &regions[id];
                (
                    FloatOp::Lookup(Function::Composite(steps(
                        model,
                        nodes,
                        *input,
                        &outputs_of,
                    ))),
                    vec![*input],
                )
            }
            Some(_) => continue,
            None => (node.op.clone(), node.inputs.clone()),
        };
        let inputs = inputs
            .iter()
            .map(|&t| renumber[t].expect("computed before"))
            .collect();
        let outputs = b
            .add(&model.names[index], op, inputs)
            .expect("the same shapes as before");
        for (old, new) in outputs_of[index].clone().zip(outputs) {
            renumber[old] = Some(new);
        }
    }
    b.finish(
        model
            .outputs
            .iter()
            .map(|&o| renumber[o].expect("computed"))
            .collect(),
    )
}

/// The steps of a region's nodes (in order), reading `input`.
fn steps(
    model: &FloatModel,
    nodes: &[usize],
    input: usize,
    outputs_of: &[std::ops::Range<usize>],
) -> Vec<Step> {
    let operand = |t: usize| -> usize {
        if t == input {
            0
        } else {
            1 + nodes
                .iter()
                .position(|&n| outputs_of[n].start == t)
                .expect("inside the region")
        }
    };
    nodes
        .iter()
        .map(|&n| {
            let node = &model.nodes[n];
            let x = |i: usize| operand(node.inputs[i]);
            match &node.op {
                FloatOp::Lookup(f) => Step::Apply(f.clone(), x(0)),
                FloatOp::Elementwise(FloatElementwise::Clamp { min, max }) => Step::Clamp {
                    min: *min,
                    max: *max,
                    x: x(0),
                },
                FloatOp::Elementwise(FloatElementwise::Affine { scale, offset }) => Step::Affine {
                    scale: scale.values[0],
                    offset: offset.values[0],
                    x: x(0),
                },
                FloatOp::Elementwise(FloatElementwise::Add { subtract }) => Step::Add {
                    a: x(0),
                    b: x(1),
                    subtract: *subtract,
                },
                FloatOp::Elementwise(FloatElementwise::Mul { factor }) => Step::Mul {
                    a: x(0),
                    b: x(1),
                    factor: *factor,
                },
                _ => unreachable!("only fusable nodes are in a region"),
            }
        })
        .collect()
}

/// Applies `function` to a value: a node, or a folded constant.
pub fn function(
    b: &mut Builder,
    name: &str,
    function: Function,
    x: &Value,
) -> Result<Value, String> {
    match x {
        Value::Tensor(t) => Ok(Value::Tensor(b.add_one(
            name,
            FloatOp::Lookup(function),
            vec![*t],
        )?)),
        Value::Constant(c) => Ok(Value::Constant(Constant {
            dims: c.dims.clone(),
            values: c.values.iter().map(|&v| function.apply(v)).collect(),
        })),
        Value::Missing => Err("needs an input".into()),
    }
}

pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    let f = match n.op {
        "Sigmoid" | "Tanh" | "Exp" | "Erf" | "Softplus" | "HardSwish" => {
            n.check_attributes(&[])?;
            match n.op {
                "Sigmoid" => Function::Sigmoid,
                "Tanh" => Function::Tanh,
                "Exp" => Function::Exp,
                "Erf" => Function::Erf,
                "Softplus" => Function::Softplus,
                _ => Function::HardSwish,
            }
        }
        "Gelu" => {
            n.check_attributes(&["approximate"])?;
            match n.string("approximate").as_deref() {
                None | Some("none") => Function::Gelu { tanh: false },
                Some("tanh") => Function::Gelu { tanh: true },
                Some(other) => return Err(n.invalid(format!("approximate = {other}"))),
            }
        }
        "LeakyRelu" => {
            n.check_attributes(&["alpha"])?;
            Function::LeakyRelu {
                alpha: n.float("alpha", 0.01),
            }
        }
        "HardSigmoid" => {
            n.check_attributes(&["alpha", "beta"])?;
            Function::HardSigmoid {
                alpha: n.float("alpha", 0.2),
                beta: n.float("beta", 0.5),
            }
        }
        _ => return Ok(None),
    };
    let value = function(b, &n.name, f, n.input(0)).map_err(|e| n.invalid(e))?;
    Ok(Some(vec![value]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::integers::Integers;

    #[test]
    fn functions_match_their_definitions() {
        assert!((Function::Sigmoid.apply(0.0) - 0.5).abs() < 1e-15);
        assert!((Function::Erf.apply(1.0) - 0.842_700_792_949_714_9).abs() < 1e-15);
        assert!(
            (Function::Gelu { tanh: false }.apply(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15
        );
        assert!((Function::Softplus.apply(800.0) - 800.0).abs() < 1e-9);
        assert_eq!(Function::LeakyRelu { alpha: 0.1 }.apply(-2.0), -0.2);
        assert_eq!(Function::HardSwish.apply(-4.0), 0.0);
    }

    #[test]
    fn interpolated_tables_stay_close_to_the_function() {
        // tanh of a 16-bit input at scale 2^-12 (±8), out at int8 scale 1/127.
        let domain = Range::new(-32768, 32767);
        let table = tabulate(
            f64::tanh,
            domain,
            1.0 / 4096.0,
            1.0 / 127.0,
            Range::new(-127, 127),
        );
        let input = TensorType::new(vec![1], domain);
        table.infer(&[&input]).unwrap();
        let mut worst = 0f64;
        for x in (domain.lo..=domain.hi).step_by(97).chain([domain.hi]) {
            let y = table.synthesize(&mut Integers, &[&[x]])[0][0];
            let exact = (x as f64 / 4096.0).tanh() * 127.0;
            worst = worst.max((y as f64 - exact).abs());
        }
        assert!(worst <= 1.0, "{worst}");
    }
}

#[cfg(test)]
mod soundness {
    use super::*;
    use crate::model::graph::{Node, QuantInput, QuantModel, QuantOutput};
    use crate::model::ops::elementwise::QuantElementwise;
    use crate::model::testing::{assert_every_change_refused, assert_quantised_changes_refused};

    #[test]
    fn every_changed_witness_of_a_table_is_refused() {
        let mut b = Builder::new();
        let x = b.input(vec![1, 6]);
        let s = b
            .add_one("sigmoid", FloatOp::Lookup(Function::Sigmoid), vec![x])
            .unwrap();
        let g = b
            .add_one(
                "gelu",
                FloatOp::Lookup(Function::Gelu { tanh: false }),
                vec![s],
            )
            .unwrap();
        assert_every_change_refused(&b.finish(vec![g]));
    }

    #[test]
    fn every_changed_witness_of_an_interpolated_table_is_refused() {
        // A 16-bit input (an int8 input scaled by 251 and offset) read through 256 knots.
        let domain = Range::new(-32768, 32767);
        let widen = QuantOp::Elementwise(QuantElementwise::Affine {
            params_shape: vec![],
            multipliers: vec![251],
            offsets: vec![97],
            shift: 0,
            clamp: domain,
        });
        let table = tabulate(
            f64::tanh,
            domain,
            1.0 / 4096.0,
            1.0 / 127.0,
            Range::new(-127, 127),
        );
        assert!(matches!(table, Table::Interpolated { .. }));
        let model = QuantModel::new(
            vec![QuantInput {
                shape: vec![4],
                scale: 0.1,
            }],
            vec![
                Node {
                    op: widen,
                    inputs: vec![0],
                },
                Node {
                    op: QuantOp::Lookup(table),
                    inputs: vec![1],
                },
            ],
            vec![QuantOutput {
                tensor: 2,
                scale: 1.0 / 127.0,
            }],
        )
        .unwrap();
        assert_quantised_changes_refused(&model, &[-128, -3, 40, 127]);
    }
}
