//! A small quantised model that uses every kind of layer and both requantisation ranges,
//! for the tests of the evaluator, the model file and the circuit.

use super::geometry::{Conv, Window};
use super::quant::{Activation, Layer, QuantModel};

/// A deterministic stream of integers for test weights and inputs.
pub struct Numbers(u64);

impl Numbers {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn int8(&mut self) -> i8 {
        (self.next() % 256) as u8 as i8
    }

    pub fn weights(&mut self, len: usize) -> Vec<i8> {
        (0..len).map(|_| (self.int8()).max(-127)).collect()
    }

    pub fn bias(&mut self, len: usize, magnitude: i32) -> Vec<i32> {
        (0..len)
            .map(|_| (self.next() % (2 * magnitude as u64 + 1)) as i32 - magnitude)
            .collect()
    }
}

/// A square window over `size`×`size` inputs with the same kernel, stride and padding on both axes.
pub fn window(channels: usize, size: usize, kernel: usize, stride: usize, pad: usize) -> Window {
    Window {
        channels,
        in_height: size,
        in_width: size,
        kernel_height: kernel,
        kernel_width: kernel,
        stride_height: stride,
        stride_width: stride,
        pads: [pad; 4],
    }
}

/// 1×6×6 → Conv(pad 1, no ReLU) → Relu → MaxPool 2×2 → Conv 2×2 (+ReLU) → AvgPool 2×2 →
/// Dense 2→3 (accumulators).
pub fn every_layer_model() -> QuantModel {
    let mut numbers = Numbers::new(42);
    let conv1 = Conv {
        window: window(1, 6, 3, 1, 1),
        out_channels: 2,
    };
    let conv2 = Conv {
        window: window(2, 3, 2, 1, 0),
        out_channels: 2,
    };
    let model = QuantModel {
        input_shape: vec![1, 6, 6],
        input_scale: 0.01,
        layers: vec![
            Layer::Conv {
                conv: conv1,
                weights: numbers.weights(conv1.weights_len()),
                bias: numbers.bias(2, 500),
                activation: Activation::Requantize {
                    shift: 7,
                    relu: false,
                },
            },
            Layer::Relu,
            Layer::MaxPool(window(2, 6, 2, 2, 0)),
            Layer::Conv {
                conv: conv2,
                weights: numbers.weights(conv2.weights_len()),
                bias: numbers.bias(2, 500),
                activation: Activation::Requantize {
                    shift: 6,
                    relu: true,
                },
            },
            Layer::AvgPool(window(2, 2, 2, 2, 0)),
            Layer::Dense {
                inputs: 2,
                outputs: 3,
                weights: numbers.weights(6),
                bias: numbers.bias(3, 1000),
                activation: Activation::Accumulator,
            },
        ],
        output_scale: 0.5,
    };
    model.check().expect("the test model is valid");
    model
}
