//! Float to fixed point. Scales are per layer and symmetric: the input scale and every
//! activation scale come from the largest magnitude seen on the calibration samples, the
//! weight scale from the largest weight. Requantisation is a rounding shift, so each
//! layer's weight scale is nudged (by less than 2×, keeping at least 7 bits of weight
//! precision) to make `input scale × weight scale × 2^shift` equal the calibrated
//! activation scale exactly.

use serde::{Deserialize, Serialize};

use super::ModelError;
use super::float::{FloatLayer, FloatModel};
use super::quant::{Activation, Layer, QuantModel};

/// What the quantiser chose for one layer, for `sn2 model info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerReport {
    pub layer: String,
    pub weight_scale: Option<f64>,
    pub output_scale: f64,
    pub shift: Option<u8>,
}

/// Quantises `model`, calibrating on `samples` (each one input of `model.input_len()`
/// values).
pub fn quantize(
    model: &FloatModel,
    samples: &[Vec<f32>],
) -> Result<(QuantModel, Vec<LayerReport>), ModelError> {
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

    // The largest magnitude after every layer, over all samples.
    let mut observed = vec![0f64; model.layers.len()];
    let mut input_max = 0f64;
    for sample in samples {
        input_max = sample
            .iter()
            .fold(input_max, |m, &v| m.max((v as f64).abs()));
        model.evaluate_layers(sample, |index, output| {
            observed[index] = output
                .iter()
                .fold(observed[index], |m, &v| m.max((v as f64).abs()));
        });
    }
    let scale_of = |max: f64| if max > 0.0 { max / 127.0 } else { 1.0 / 127.0 };

    let input_scale = scale_of(input_max);
    let mut scale = input_scale;
    let mut layers = Vec::new();
    let mut reports = Vec::new();
    let mut index = 0;
    while index < model.layers.len() {
        let layer = &model.layers[index];
        let fused_relu = matches!(model.layers.get(index + 1), Some(FloatLayer::Relu));
        let consumed = if fused_relu { 2 } else { 1 };
        let is_last = index + consumed == model.layers.len();
        match layer {
            FloatLayer::Dense { weights, bias, .. } | FloatLayer::Conv { weights, bias, .. } => {
                let target =
                    (!is_last || fused_relu).then(|| scale_of(observed[index + consumed - 1]));
                let linear = quantize_linear(weights, bias, scale, target, fused_relu)?;
                let activation = linear.activation;
                let layer = match layer {
                    FloatLayer::Dense {
                        inputs, outputs, ..
                    } => Layer::Dense {
                        inputs: *inputs,
                        outputs: *outputs,
                        weights: linear.weights,
                        bias: linear.bias,
                        activation,
                    },
                    FloatLayer::Conv { conv, .. } => Layer::Conv {
                        conv: *conv,
                        weights: linear.weights,
                        bias: linear.bias,
                        activation,
                    },
                    _ => unreachable!("matched above"),
                };
                reports.push(LayerReport {
                    layer: format!("{}{}", layer.name(), if fused_relu { "+Relu" } else { "" }),
                    weight_scale: Some(linear.weight_scale),
                    output_scale: linear.output_scale,
                    shift: match activation {
                        Activation::Requantize { shift, .. } => Some(shift),
                        Activation::Accumulator => None,
                    },
                });
                layers.push(layer);
                scale = linear.output_scale;
                index += consumed;
                continue;
            }
            FloatLayer::Relu => layers.push(Layer::Relu),
            FloatLayer::MaxPool(window) => layers.push(Layer::MaxPool(*window)),
            FloatLayer::AvgPool(window) => {
                if !window.area().is_power_of_two() || window.pads != [0; 4] {
                    return Err(ModelError::Calibration(format!(
                        "AveragePool over a {}x{} window: only power-of-two areas without padding are supported",
                        window.kernel_height, window.kernel_width
                    )));
                }
                layers.push(Layer::AvgPool(*window));
            }
        }
        reports.push(LayerReport {
            layer: layers
                .last()
                .map(Layer::name)
                .unwrap_or_default()
                .to_string(),
            weight_scale: None,
            output_scale: scale,
            shift: None,
        });
        index += 1;
    }
    let quantized = QuantModel {
        input_shape: model.input_shape.clone(),
        input_scale: input_scale as f32,
        layers,
        output_scale: scale as f32,
    };
    quantized.check()?;
    Ok((quantized, reports))
}

struct Linear {
    weights: Vec<i8>,
    bias: Vec<i32>,
    activation: Activation,
    weight_scale: f64,
    output_scale: f64,
}

/// Quantises one Dense or Conv layer whose input has scale `input_scale`. With a
/// `target` output scale the accumulators are requantised to it; without, they are the
/// model's output.
fn quantize_linear(
    weights: &[f32],
    bias: &[f32],
    input_scale: f64,
    target: Option<f64>,
    relu: bool,
) -> Result<Linear, ModelError> {
    let largest = weights.iter().fold(0f64, |m, &w| m.max((w as f64).abs()));
    let min_weight_scale = if largest > 0.0 {
        largest / 127.0
    } else {
        1.0 / 127.0
    };
    let (weight_scale, activation, output_scale) = match target {
        None => (
            min_weight_scale,
            Activation::Accumulator,
            input_scale * min_weight_scale,
        ),
        Some(target) => {
            let ratio = target / (input_scale * min_weight_scale);
            if ratio >= 1.0 {
                let shift = ratio.log2().floor().min(30.0) as u8;
                let weight_scale = target / (input_scale * f64::from(1u32 << shift));
                (weight_scale, Activation::Requantize { shift, relu }, target)
            } else {
                // Activations smaller than one weight step: keep the weights whole.
                (
                    min_weight_scale,
                    Activation::Requantize { shift: 0, relu },
                    input_scale * min_weight_scale,
                )
            }
        }
    };
    let quantized_weights = weights
        .iter()
        .map(|&w| (w as f64 / weight_scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let accumulator_scale = input_scale * weight_scale;
    let quantized_bias = bias
        .iter()
        .map(|&b| {
            let q = (b as f64 / accumulator_scale).round();
            if q.abs() > i32::MAX as f64 / 2.0 {
                Err(ModelError::Calibration(format!(
                    "a bias of {b} is too large for 32 bits at scale {accumulator_scale:e}"
                )))
            } else {
                Ok(q as i32)
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Linear {
        weights: quantized_weights,
        bias: quantized_bias,
        activation,
        weight_scale,
        output_scale,
    })
}
