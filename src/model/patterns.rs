//! Subgraphs that exporters write for an operator the model's opset lacks, rewritten back
//! into that operator before import, so that they cost what the operator costs:
//!
//! - LayerNormalization before opset 17, which PyTorch writes as `ReduceMean → Sub →
//!   Pow(2) → ReduceMean → Add(ε) → Sqrt → Div` over the trailing axes (the scale and bias
//!   follow as Mul and Add of constants, which fold into the operator at import).
//!
//! A rewrite needs the exact structure, constants where the operator has attributes, and no
//! other reader of the inner tensors; anything else is left as it is, for the importer to
//! take or refuse.

use std::collections::HashMap;

use super::onnx_proto::{AttributeProto, GraphProto, NodeProto, attribute_proto};

/// Applies every rewrite to `graph`.
pub fn rewrite(graph: &mut GraphProto) {
    rewrite_layer_norms(graph);
}

/// The scalar value of each name that holds a one-element constant.
fn scalars(graph: &GraphProto) -> HashMap<String, f64> {
    let mut values = HashMap::new();
    let mut add = |name: &str, tensor: &super::onnx_proto::TensorProto| {
        if let Ok((_, v)) = super::onnx::tensor_values(tensor)
            && v.len() == 1
        {
            values.insert(name.to_string(), v[0]);
        }
    };
    for t in &graph.initializer {
        add(t.name.as_deref().unwrap_or(""), t);
    }
    for node in &graph.node {
        if node.op_type.as_deref() == Some("Constant")
            && let (Some(out), Some(t)) = (
                node.output.first(),
                node.attribute.first().and_then(|a| a.t.as_ref()),
            )
        {
            add(out, t);
        }
    }
    values
}

fn op(node: &NodeProto) -> &str {
    node.op_type.as_deref().unwrap_or("")
}

/// A node's `axes` (attribute, or constant input 1) and whether it keeps dimensions.
fn reduced_axes(node: &NodeProto, graph: &GraphProto) -> Option<Vec<i64>> {
    let attribute = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    };
    if attribute("keepdims").and_then(|a| a.i).unwrap_or(1) != 1 {
        return None;
    }
    if let Some(a) = attribute("axes") {
        return Some(a.ints.clone());
    }
    let name = node.input.get(1)?;
    let tensor = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))?;
    let (_, values) = super::onnx::tensor_values(tensor).ok()?;
    Some(values.iter().map(|&v| v as i64).collect())
}

/// Whether `axes` are the last `k` axes, counted from the end (-k..=-1 in any order).
fn trailing(axes: &[i64]) -> Option<i64> {
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    let k = sorted.len() as i64;
    (k > 0 && sorted.iter().enumerate().all(|(i, &a)| a == i as i64 - k)).then_some(-k)
}

fn rewrite_layer_norms(graph: &mut GraphProto) {
    let constants = scalars(graph);
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for out in &node.output {
            producer.insert(out, i);
        }
        for input in &node.input {
            *uses.entry(input).or_default() += 1;
        }
    }
    for output in &graph.output {
        *uses
            .entry(output.name.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let node = |name: &str, kind: &str| -> Option<usize> {
        producer
            .get(name)
            .copied()
            .filter(|&i| op(&graph.node[i]) == kind)
    };
    let used = |name: &str, times: usize| uses.get(name).copied().unwrap_or(0) == times;

    let mut replaced: Vec<(Vec<usize>, NodeProto)> = Vec::new();
    for (div_index, div) in graph.node.iter().enumerate() {
        if op(div) != "Div" || div.input.len() != 2 {
            continue;
        }
        let matched = (|| {
            // Inputs and outputs by position, none assumed present.
            let input = |n: usize, i: usize| graph.node[n].input.get(i).map(String::as_str);
            let output = |n: usize| graph.node[n].output.first().map(String::as_str);
            let (centred, root) = (div.input[0].as_str(), div.input[1].as_str());
            let sqrt = node(root, "Sqrt")?;
            let add = node(input(sqrt, 0)?, "Add")?;
            let (a, b) = (input(add, 0)?, input(add, 1)?);
            let (variance, epsilon) = match (constants.get(a), constants.get(b)) {
                (None, Some(&e)) => (a, e),
                (Some(&e), None) => (b, e),
                _ => return None,
            };
            let mean_of_squares = node(variance, "ReduceMean")?;
            let pow = node(input(mean_of_squares, 0)?, "Pow")?;
            if input(pow, 0)? != centred || constants.get(input(pow, 1)?) != Some(&2.0) {
                return None;
            }
            let sub = node(centred, "Sub")?;
            let (x, mean) = (input(sub, 0)?, input(sub, 1)?);
            let mean_node = node(mean, "ReduceMean")?;
            if input(mean_node, 0)? != x {
                return None;
            }
            let axes = reduced_axes(&graph.node[mean_node], graph)?;
            if reduced_axes(&graph.node[mean_of_squares], graph)? != axes {
                return None;
            }
            let axis = trailing(&axes)?;
            let inner = [
                (mean, 1),
                (centred, 2),
                (output(pow)?, 1),
                (variance, 1),
                (output(add)?, 1),
                (root, 1),
            ];
            if !inner.iter().all(|&(name, times)| used(name, times)) {
                return None;
            }
            let layer_norm = NodeProto {
                input: vec![x.to_string()],
                output: vec![div.output.first()?.clone()],
                name: Some(format!(
                    "{} (LayerNormalization)",
                    div.name.as_deref().unwrap_or("")
                )),
                op_type: Some("LayerNormalization".into()),
                attribute: vec![
                    AttributeProto {
                        name: Some("axis".into()),
                        i: Some(axis),
                        r#type: Some(attribute_proto::AttributeType::Int as i32),
                        ..Default::default()
                    },
                    AttributeProto {
                        name: Some("epsilon".into()),
                        f: Some(epsilon as f32),
                        r#type: Some(attribute_proto::AttributeType::Float as i32),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            };
            Some((
                vec![mean_node, sub, pow, mean_of_squares, add, sqrt, div_index],
                layer_norm,
            ))
        })();
        if let Some(found) = matched {
            replaced.push(found);
        }
    }
    if replaced.is_empty() {
        return;
    }
    // The new node takes the Div's place; the rest of its pattern goes.
    let mut drop = vec![false; graph.node.len()];
    let mut at: HashMap<usize, NodeProto> = HashMap::new();
    for (nodes, layer_norm) in replaced {
        for &n in &nodes {
            drop[n] = true;
        }
        at.insert(*nodes.last().expect("the Div"), layer_norm);
    }
    let old = std::mem::take(&mut graph.node);
    for (i, node) in old.into_iter().enumerate() {
        if let Some(layer_norm) = at.remove(&i) {
            graph.node.push(layer_norm);
        } else if !drop[i] {
            graph.node.push(node);
        }
    }
}
