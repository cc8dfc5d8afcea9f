//! The float model as imported from ONNX: a chain of layers over one flowing tensor, and
//! its float evaluator (the reference the quantised model is calibrated and measured
//! against).

use super::geometry::{Conv, Window};

/// One float layer. Shape-only ONNX operators (Flatten, Reshape) leave no layer: data is
/// kept flat in row-major (CHW) order, which they do not change.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatLayer {
    /// `y = W x + b`, `W` stored `[outputs][inputs]`.
    Dense {
        inputs: usize,
        outputs: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Weights stored `[out_channels][in_channels][kh][kw]`.
    Conv {
        conv: Conv,
        weights: Vec<f32>,
        bias: Vec<f32>,
    },
    Relu,
    MaxPool(Window),
    /// Average over the window's in-bounds inputs.
    AvgPool(Window),
}

/// A model of one input tensor and a chain of layers.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatModel {
    /// Per-sample input shape (without the batch dimension).
    pub input_shape: Vec<usize>,
    pub layers: Vec<FloatLayer>,
    /// Per-sample output shape.
    pub output_shape: Vec<usize>,
}

impl FloatModel {
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Evaluates one sample; `input` has `input_len()` values.
    pub fn evaluate(&self, input: &[f32]) -> Vec<f32> {
        self.evaluate_layers(input, |_, _| {})
    }

    /// Evaluates one sample and calls `observe(layer_index, output)` after each layer, for
    /// calibration.
    pub fn evaluate_layers(
        &self,
        input: &[f32],
        mut observe: impl FnMut(usize, &[f32]),
    ) -> Vec<f32> {
        let mut x = input.to_vec();
        for (index, layer) in self.layers.iter().enumerate() {
            x = apply(layer, &x);
            observe(index, &x);
        }
        x
    }
}

fn apply(layer: &FloatLayer, x: &[f32]) -> Vec<f32> {
    match layer {
        FloatLayer::Dense {
            inputs,
            outputs,
            weights,
            bias,
        } => (0..*outputs)
            .map(|o| {
                let row = &weights[o * inputs..(o + 1) * inputs];
                // Accumulate in f64 so the reference is not noisier than the quantised model.
                let sum: f64 = row.iter().zip(x).map(|(&w, &v)| w as f64 * v as f64).sum();
                (sum + bias[o] as f64) as f32
            })
            .collect(),
        FloatLayer::Conv {
            conv,
            weights,
            bias,
        } => {
            let mut y = vec![0f32; conv.out_len()];
            conv.for_each_output(|out, channel, taps| {
                let sum: f64 = taps
                    .iter()
                    .map(|&(w, i)| weights[w] as f64 * x[i] as f64)
                    .sum();
                y[out] = (sum + bias[channel] as f64) as f32;
            });
            y
        }
        FloatLayer::Relu => x.iter().map(|&v| v.max(0.0)).collect(),
        FloatLayer::MaxPool(window) => {
            let mut y = vec![0f32; window.pool_out_len()];
            window.for_each_pool(|out, inputs| {
                y[out] = inputs
                    .iter()
                    .map(|&i| x[i])
                    .fold(f32::NEG_INFINITY, f32::max);
            });
            y
        }
        FloatLayer::AvgPool(window) => {
            let mut y = vec![0f32; window.pool_out_len()];
            window.for_each_pool(|out, inputs| {
                let sum: f64 = inputs.iter().map(|&i| x[i] as f64).sum();
                y[out] = (sum / inputs.len() as f64) as f32;
            });
            y
        }
    }
}
