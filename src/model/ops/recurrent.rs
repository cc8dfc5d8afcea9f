//! Recurrent layers: LSTM (with or without peepholes) and GRU (both `linear_before_reset`
//! forms); one layer, forward, reverse or bidirectional; unrolled at import over the sequence into the
//! operators of the other families. They add no operator of their own, so evaluation and
//! constraints come from those families.
//!
//! **Cost per step,** hidden size H: the gates are dense layers reading the input and the
//! previous hidden state (4H or 3H rescales, B + 3 each), their activations are lookups
//! (49 each), and the state updates are products and sums (B + 7 per element).
//! For an LSTM that is about 4H·(B + 55) + H·(3B + 70) constraints per step.

use super::FloatOp;
use super::elementwise::{add, mul};
use super::linear::dense;
use super::lookup::{Function, function};
use super::shape::ShapeOp;
use crate::model::ModelError;
use crate::model::builder::{Builder, Value};
use crate::model::onnx::OnnxNode;
use crate::model::tensor::Constant;

pub const OPERATORS: &[&str] = &["LSTM", "GRU"];

/// What an ONNX recurrent node declares, read once for both kinds.
struct Layer {
    /// Gates: 4 for LSTM (i, o, f, c), 3 for GRU (z, r, h).
    gates: usize,
    hidden: usize,
    input_size: usize,
    steps: usize,
    batch: usize,
    /// 0: `[seq, batch, features]`; 1: `[batch, seq, features]`.
    layout: i64,
    directions: Vec<bool>,
}

pub fn import(b: &mut Builder, n: &OnnxNode) -> Result<Option<Vec<Value>>, ModelError> {
    let gates = match n.op {
        "LSTM" => 4,
        "GRU" => 3,
        _ => return Ok(None),
    };
    n.check_attributes(&[
        "activations",
        "activation_alpha",
        "activation_beta",
        "clip",
        "direction",
        "hidden_size",
        "input_forget",
        "layout",
        "linear_before_reset",
    ])?;
    let defaults: &[&str] = if gates == 4 {
        &["Sigmoid", "Tanh", "Tanh"]
    } else {
        &["Sigmoid", "Tanh"]
    };
    if let Some(activations) = n.strings("activations") {
        let expected: Vec<&str> = defaults
            .iter()
            .cycle()
            .take(activations.len())
            .copied()
            .collect();
        if activations.iter().map(String::as_str).ne(expected) {
            return Err(n.invalid(format!(
                "activations {activations:?}; only the defaults are supported"
            )));
        }
    }
    if n.has_attribute("clip") {
        return Err(n.invalid("clip is not supported"));
    }
    if n.int("input_forget", 0) != 0 {
        return Err(n.invalid("input_forget is not supported"));
    }
    let Value::Tensor(x) = n.input(0) else {
        return Err(n.invalid("the sequence must be computed"));
    };
    let x = *x;
    let w = n.constant(1, "the weights (W)")?;
    let r = n.constant(2, "the recurrent weights (R)")?;
    let layout = n.int("layout", 0);
    let shape = b.shape(x).to_vec();
    let [d0, d1, input_size] = shape[..] else {
        return Err(n.invalid(format!("a sequence of shape {shape:?}; 3-D expected")));
    };
    let (steps, batch) = if layout == 0 { (d0, d1) } else { (d1, d0) };
    let directions = match n.string("direction").as_deref() {
        None | Some("forward") => vec![false],
        Some("reverse") => vec![true],
        Some("bidirectional") => vec![false, true],
        Some(other) => return Err(n.invalid(format!("direction {other}"))),
    };
    let hidden = usize::try_from(n.int("hidden_size", r.dims.last().copied().unwrap_or(0) as i64))
        .map_err(|_| n.invalid("a negative hidden_size"))?;
    let dirs = directions.len();
    // R is [dirs, gates·hidden, hidden]: its size bounds the attribute.
    if r.dims.last() != Some(&hidden) {
        return Err(n.invalid(format!("hidden_size {hidden} for R of shape {:?}", r.dims)));
    }
    if w.dims != [dirs, gates * hidden, input_size]
        || r.dims != [dirs, gates * hidden, hidden]
        || hidden == 0
    {
        return Err(n.invalid(format!(
            "W {:?} and R {:?} do not fit {dirs} directions, {gates} gates of {hidden} and {input_size} inputs",
            w.dims, r.dims
        )));
    }
    let bias = match n.optional_constant(3)? {
        Some(c) if c.dims == [dirs, 2 * gates * hidden] => Some(c),
        Some(c) => return Err(n.invalid(format!("B of shape {:?}", c.dims))),
        None => None,
    };
    if let Some(lengths) = n.optional_constant(4)? {
        if lengths.values.iter().any(|&l| l != steps as f64) {
            return Err(
                n.invalid("sequences shorter than the input (sequence_lens) are not supported")
            );
        }
    } else if matches!(n.input(4), Value::Tensor(_)) {
        return Err(n.invalid("computed sequence_lens are not supported"));
    }
    let peepholes = match n.optional_constant(7)? {
        Some(p) if gates == 4 && p.dims == [dirs, 3 * hidden] => Some(p),
        Some(p) if gates == 4 => return Err(n.invalid(format!("P of shape {:?}", p.dims))),
        _ => None,
    };
    let layer = Layer {
        gates,
        hidden,
        input_size,
        steps,
        batch,
        layout,
        directions,
    };
    let state_shape = [batch, hidden];
    let mut per_direction = Vec::new();
    for (dir, &reverse) in layer.directions.iter().enumerate() {
        let block = |m: &Constant, gate: usize, width: usize| -> Vec<f64> {
            let rows = gates * hidden;
            let start = (dir * rows + gate * hidden) * width;
            m.values[start..start + hidden * width].to_vec()
        };
        let gate_bias = |gate: usize, second: bool| -> Vec<f64> {
            match bias {
                Some(c) => {
                    let start = dir * 2 * gates * hidden
                        + (second as usize) * gates * hidden
                        + gate * hidden;
                    c.values[start..start + hidden].to_vec()
                }
                None => vec![0.0; hidden],
            }
        };
        let both = |gate: usize| -> Vec<f64> {
            gate_bias(gate, false)
                .iter()
                .zip(gate_bias(gate, true))
                .map(|(a, b)| a + b)
                .collect()
        };
        let mut h = initial(b, n, 5, dir, &state_shape, dirs)?;
        let mut c = if gates == 4 {
            initial(b, n, 6, dir, &state_shape, dirs)?
        } else {
            Value::Missing
        };
        let mut outputs = vec![Value::Missing; layer.steps];
        let order: Vec<usize> = if reverse {
            (0..layer.steps).rev().collect()
        } else {
            (0..layer.steps).collect()
        };
        for t in order {
            let name = |what: &str| format!("{}/d{dir}/t{t}/{what}", n.name);
            let e = |e: String| n.invalid(e);
            let axis = if layer.layout == 0 { 0 } else { 1 };
            let x_t = select(
                b,
                n,
                &Value::Tensor(x),
                axis,
                t,
                &[batch, layer.input_size],
                &name("x"),
            )?;
            let pre =
                |b: &mut Builder, g: usize, what: &str, h: &Value| -> Result<Value, ModelError> {
                    let inputs = vec![
                        (x_t.clone(), block(w, g, layer.input_size)),
                        (h.clone(), block(r, g, hidden)),
                    ];
                    dense(b, &name(what), inputs, both(g)).map_err(e)
                };
            let gate = |b: &mut Builder,
                        g: usize,
                        what: &str,
                        f: Function,
                        h: &Value|
             -> Result<Value, ModelError> {
                let pre = pre(b, g, what, h)?;
                function(b, &name(&format!("{what}/act")), f, &pre).map_err(e)
            };
            // P ⊙ C added to a gate's input; P holds the i, o and f rows.
            let peep = |b: &mut Builder,
                        pre: Value,
                        which: usize,
                        state: &Value,
                        what: &str|
             -> Result<Value, ModelError> {
                let Some(p) = peepholes else {
                    return Ok(pre);
                };
                let start = (dir * 3 + which) * hidden;
                let weights = Constant {
                    dims: vec![hidden],
                    values: p.values[start..start + hidden].to_vec(),
                };
                let term = mul(
                    b,
                    &name(&format!("{what}/peephole")),
                    state,
                    &Value::Constant(weights),
                )
                .map_err(e)?;
                add(b, &name(&format!("{what}/peephole+")), &pre, &term, false).map_err(e)
            };
            if gates == 4 {
                // i, o, f, c; the output gate peeks at the new cell state.
                let pre_i = pre(b, 0, "i", &h)?;
                let pre_i = peep(b, pre_i, 0, &c, "i")?;
                let i = function(b, &name("i/act"), Function::Sigmoid, &pre_i).map_err(e)?;
                let pre_f = pre(b, 2, "f", &h)?;
                let pre_f = peep(b, pre_f, 2, &c, "f")?;
                let f = function(b, &name("f/act"), Function::Sigmoid, &pre_f).map_err(e)?;
                let g = gate(b, 3, "c", Function::Tanh, &h)?;
                let pre_o = pre(b, 1, "o", &h)?;
                let kept = mul(b, &name("f*c"), &f, &c).map_err(e)?;
                let fresh = mul(b, &name("i*g"), &i, &g).map_err(e)?;
                c = add(b, &name("c"), &kept, &fresh, false).map_err(e)?;
                let pre_o = peep(b, pre_o, 1, &c, "o")?;
                let o = function(b, &name("o/act"), Function::Sigmoid, &pre_o).map_err(e)?;
                let squashed = function(b, &name("tanh(c)"), Function::Tanh, &c).map_err(e)?;
                h = mul(b, &name("h"), &o, &squashed).map_err(e)?;
            } else {
                // z, r, h
                let z = gate(b, 0, "z", Function::Sigmoid, &h)?;
                let reset = gate(b, 1, "r", Function::Sigmoid, &h)?;
                let candidate_pre = if n.int("linear_before_reset", 0) != 0 {
                    let hh = dense(
                        b,
                        &name("Rh"),
                        vec![(h.clone(), block(r, 2, hidden))],
                        gate_bias(2, true),
                    )
                    .map_err(e)?;
                    let gated = mul(b, &name("r*Rh"), &reset, &hh).map_err(e)?;
                    let xh = dense(
                        b,
                        &name("Wx"),
                        vec![(x_t.clone(), block(w, 2, layer.input_size))],
                        gate_bias(2, false),
                    )
                    .map_err(e)?;
                    add(b, &name("n/pre"), &xh, &gated, false).map_err(e)?
                } else {
                    let rh = mul(b, &name("r*h"), &reset, &h).map_err(e)?;
                    dense(
                        b,
                        &name("n/pre"),
                        vec![
                            (x_t.clone(), block(w, 2, layer.input_size)),
                            (rh, block(r, 2, hidden)),
                        ],
                        both(2),
                    )
                    .map_err(e)?
                };
                let candidate =
                    function(b, &name("n"), Function::Tanh, &candidate_pre).map_err(e)?;
                // h = n + z·(h − n)
                let towards = add(b, &name("h-n"), &h, &candidate, true).map_err(e)?;
                let moved = mul(b, &name("z*(h-n)"), &z, &towards).map_err(e)?;
                h = add(b, &name("h"), &candidate, &moved, false).map_err(e)?;
            }
            outputs[t] = h.clone();
        }
        per_direction.push((outputs, h, c));
    }
    assemble(b, n, &layer, per_direction).map(Some)
}

/// Direction `dir` of initial state input `index` (`[dirs, batch, hidden]`): computed,
/// constant, or zeros when absent.
fn initial(
    b: &mut Builder,
    n: &OnnxNode,
    index: usize,
    dir: usize,
    shape: &[usize; 2],
    dirs: usize,
) -> Result<Value, ModelError> {
    let len = shape[0] * shape[1];
    match n.input(index) {
        Value::Missing => Ok(Value::Constant(Constant {
            dims: shape.to_vec(),
            values: vec![0.0; len],
        })),
        Value::Constant(c) if c.dims == [dirs, shape[0], shape[1]] => {
            Ok(Value::Constant(Constant {
                dims: shape.to_vec(),
                values: c.values[dir * len..(dir + 1) * len].to_vec(),
            }))
        }
        Value::Constant(c) => Err(n.invalid(format!("an initial state of shape {:?}", c.dims))),
        value => select(
            b,
            n,
            value,
            0,
            dir,
            shape,
            &format!("{}/initial{index}/d{dir}", n.name),
        ),
    }
}

/// Element `index` of `value` along `axis`, reshaped to `shape`.
fn select(
    b: &mut Builder,
    n: &OnnxNode,
    value: &Value,
    axis: usize,
    index: usize,
    shape: &[usize],
    name: &str,
) -> Result<Value, ModelError> {
    let Value::Tensor(t) = value else {
        return Err(n.invalid("a missing state"));
    };
    let full = b.shape(*t).to_vec();
    let mut out_shape = full.clone();
    out_shape[axis] = 1;
    let mut starts = vec![0; full.len()];
    starts[axis] = index;
    let sliced = b
        .add_one(
            &format!("{name}/slice"),
            FloatOp::Shape(ShapeOp::Slice {
                starts,
                steps: vec![1; full.len()],
                shape: out_shape,
            }),
            vec![*t],
        )
        .map_err(|e| n.invalid(e))?;
    let reshaped = b
        .add_one(
            &format!("{name}/reshape"),
            FloatOp::Shape(ShapeOp::Reshape {
                shape: shape.to_vec(),
            }),
            vec![sliced],
        )
        .map_err(|e| n.invalid(e))?;
    Ok(Value::Tensor(reshaped))
}

/// Y, Y_h and Y_c from each direction's hidden states.
fn assemble(
    b: &mut Builder,
    n: &OnnxNode,
    layer: &Layer,
    per_direction: Vec<(Vec<Value>, Value, Value)>,
) -> Result<Vec<Value>, ModelError> {
    let (batch, hidden) = (layer.batch, layer.hidden);
    let e = |e: String| n.invalid(e);
    // Each piece as a tensor of shape `shape` (constants become constant nodes).
    let tensor =
        |b: &mut Builder, v: &Value, name: &str, shape: Vec<usize>| -> Result<usize, ModelError> {
            let t = b.tensor(name, v).map_err(e)?;
            b.add_one(
                &format!("{name}/reshape"),
                FloatOp::Shape(ShapeOp::Reshape { shape }),
                vec![t],
            )
            .map_err(e)
        };
    let concat = |b: &mut Builder,
                  parts: Vec<usize>,
                  axis: usize,
                  name: &str|
     -> Result<Value, ModelError> {
        if parts.len() == 1 {
            return Ok(Value::Tensor(parts[0]));
        }
        Ok(Value::Tensor(
            b.add_one(name, FloatOp::Shape(ShapeOp::Concat { axis }), parts)
                .map_err(e)?,
        ))
    };
    let mut outputs = Vec::new();
    // Y: [seq, dirs, batch, hidden] or [batch, seq, dirs, hidden].
    if n.output_used(0) {
        let mut steps = Vec::new();
        for t in 0..layer.steps {
            let mut pieces = Vec::new();
            for (d, (hs, _, _)) in per_direction.iter().enumerate() {
                let shape = if layer.layout == 0 {
                    vec![1, 1, batch, hidden]
                } else {
                    vec![batch, 1, 1, hidden]
                };
                pieces.push(tensor(
                    b,
                    &hs[t],
                    &format!("{}/Y/t{t}/d{d}", n.name),
                    shape,
                )?);
            }
            let axis = if layer.layout == 0 { 1 } else { 2 };
            let Value::Tensor(step) = concat(b, pieces, axis, &format!("{}/Y/t{t}", n.name))?
            else {
                unreachable!()
            };
            steps.push(step);
        }
        let axis = if layer.layout == 0 { 0 } else { 1 };
        outputs.push(concat(b, steps, axis, &format!("{}/Y", n.name))?);
    } else {
        outputs.push(Value::Missing);
    }
    // Y_h and Y_c: [dirs, batch, hidden] or [batch, dirs, hidden].
    for (slot, what) in [(1usize, "Y_h"), (2, "Y_c")] {
        if !n.output_used(slot) || (slot == 2 && layer.gates != 4) {
            outputs.push(Value::Missing);
            continue;
        }
        let mut pieces = Vec::new();
        for (d, (_, h, c)) in per_direction.iter().enumerate() {
            let state = if slot == 1 { h } else { c };
            let shape = if layer.layout == 0 {
                vec![1, batch, hidden]
            } else {
                vec![batch, 1, hidden]
            };
            pieces.push(tensor(b, state, &format!("{}/{what}/d{d}", n.name), shape)?);
        }
        let axis = if layer.layout == 0 { 0 } else { 1 };
        outputs.push(concat(b, pieces, axis, &format!("{}/{what}", n.name))?);
    }
    Ok(outputs)
}
