//! A small model that uses an operator of every family, quantised from a float graph, for
//! the tests of the evaluator, the model file and the circuit.

use super::builder::Builder;
use super::geometry::{Conv, Window};
use super::graph::{FloatModel, QuantModel};
use super::ops::FloatOp;
use super::ops::elementwise::FloatElementwise;
use super::ops::linear::FloatLinear;
use super::ops::lookup::Function;
use super::ops::normalisation::FloatNorm;
use super::ops::pooling::{FloatPool, Reduction};
use super::ops::shape::ShapeOp;
use super::quantize::quantize;
use super::tensor::Constant;

/// A deterministic stream of numbers for test weights and inputs.
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

    /// Uniform in [−1, 1).
    pub fn real(&mut self) -> f64 {
        (self.next() % (1 << 20)) as f64 / (1 << 19) as f64 - 1.0
    }

    pub fn reals(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.real()).collect()
    }
}

/// A square window over a `batch × channels × size × size` input.
pub fn window(channels: usize, size: usize, kernel: usize, stride: usize, pad: usize) -> Window {
    Window {
        batch: 1,
        channels,
        input: [size, size],
        kernel: [kernel, kernel],
        strides: [stride, stride],
        dilations: [1, 1],
        pads: [pad; 4],
        ceil: false,
        one_dimensional: false,
    }
}

/// Conv (padded) → Relu → MaxPool → depthwise Conv → AveragePool (cut by padding) →
/// Reshape → Tanh → Add → Mul → Concat, then three heads: Softmax → Gather → Affine;
/// Dense (the model's accumulators); LayerNorm → Dense of two inputs, a Dense with a
/// residual Add (fused), and a MatMul of two computed tensors → ReduceSum.
pub fn every_operator_float_model() -> FloatModel {
    let mut n = Numbers::new(42);
    let mut b = Builder::new();
    let add =
        |b: &mut Builder, op: FloatOp, inputs: Vec<usize>| b.add_one("node", op, inputs).unwrap();
    let x = b.input(vec![1, 1, 6, 6]);
    let conv1 = Conv {
        window: window(1, 6, 3, 1, 1),
        out_channels: 2,
        groups: 1,
    };
    let t = add(
        &mut b,
        FloatOp::Linear(FloatLinear::Conv {
            conv: conv1,
            weights: n.reals(18),
            bias: n.reals(2),
        }),
        vec![x],
    );
    let t = add(
        &mut b,
        FloatOp::Elementwise(FloatElementwise::Clamp {
            min: 0.0,
            max: f64::INFINITY,
        }),
        vec![t],
    );
    let t = add(
        &mut b,
        FloatOp::Pool(FloatPool::Max(window(2, 6, 2, 2, 0))),
        vec![t],
    );
    let conv2 = Conv {
        window: window(2, 3, 2, 1, 0),
        out_channels: 2,
        groups: 2,
    };
    let t = add(
        &mut b,
        FloatOp::Linear(FloatLinear::Conv {
            conv: conv2,
            weights: n.reals(8),
            bias: n.reals(2),
        }),
        vec![t],
    );
    let mut pool = window(2, 2, 2, 1, 0);
    pool.pads = [0, 0, 1, 1];
    let t = add(
        &mut b,
        FloatOp::Pool(FloatPool::Average {
            window: pool,
            count_include_pad: false,
        }),
        vec![t],
    );
    let flat = add(
        &mut b,
        FloatOp::Shape(ShapeOp::Reshape { shape: vec![1, 8] }),
        vec![t],
    );
    let squashed = add(&mut b, FloatOp::Lookup(Function::Tanh), vec![flat]);
    let sum = add(
        &mut b,
        FloatOp::Elementwise(FloatElementwise::Add { subtract: false }),
        vec![flat, squashed],
    );
    let product = add(
        &mut b,
        FloatOp::Elementwise(FloatElementwise::Mul { factor: 1.0 }),
        vec![sum, flat],
    );
    let joined = add(
        &mut b,
        FloatOp::Shape(ShapeOp::Concat { axis: 1 }),
        vec![sum, product],
    );

    let soft = add(
        &mut b,
        FloatOp::Norm(FloatNorm::Softmax { axes: vec![1] }),
        vec![joined],
    );
    let picked = add(
        &mut b,
        FloatOp::Shape(ShapeOp::Gather {
            axis: 1,
            indices: vec![0, 3, 5],
            indices_shape: vec![3],
        }),
        vec![soft],
    );
    let scaled = add(
        &mut b,
        FloatOp::Elementwise(FloatElementwise::Affine {
            scale: Constant::vector(vec![2.0, -1.0, 0.5]),
            offset: Constant::scalar(0.25),
        }),
        vec![picked],
    );
    let logits = add(
        &mut b,
        FloatOp::Linear(FloatLinear::Dense {
            weights: vec![n.reals(48)],
            bias: n.reals(3),
        }),
        vec![joined],
    );
    let normal = add(
        &mut b,
        FloatOp::Norm(FloatNorm::LayerNorm {
            axis: 1,
            epsilon: 1e-5,
            scale: n.reals(16),
            bias: n.reals(16),
        }),
        vec![joined],
    );
    let two = add(
        &mut b,
        FloatOp::Linear(FloatLinear::Dense {
            weights: vec![n.reals(32), n.reals(16)],
            bias: n.reals(2),
        }),
        vec![normal, sum],
    );
    let mixed = add(
        &mut b,
        FloatOp::Linear(FloatLinear::Dense {
            weights: vec![n.reals(256)],
            bias: n.reals(16),
        }),
        vec![normal],
    );
    let residual = add(
        &mut b,
        FloatOp::Elementwise(FloatElementwise::Add { subtract: false }),
        vec![joined, mixed],
    );
    let square = add(
        &mut b,
        FloatOp::Shape(ShapeOp::Reshape { shape: vec![4, 4] }),
        vec![normal],
    );
    let turned = add(
        &mut b,
        FloatOp::Shape(ShapeOp::Transpose { perm: vec![1, 0] }),
        vec![square],
    );
    let gram = add(
        &mut b,
        FloatOp::Elementwise(FloatElementwise::MatMul { factor: 1.0 }),
        vec![square, turned],
    );
    let padded = add(
        &mut b,
        FloatOp::Shape(ShapeOp::Pad {
            pads: vec![1, 0, 0, 1],
            value: 0.5,
        }),
        vec![gram],
    );
    let total = add(
        &mut b,
        FloatOp::Pool(FloatPool::Reduce {
            reduction: Reduction::Sum,
            axes: vec![0],
            keep_dims: false,
        }),
        vec![padded],
    );
    b.finish(vec![scaled, logits, two, total, residual])
}

/// The largest |quantised − float| output of `model` against `float` over `count`
/// pseudo-random inputs, and the largest |float| output, in the float model's units (the
/// outputs at the first output's scale).
pub fn error_against_float(
    float: &FloatModel,
    model: &QuantModel,
    count: usize,
    seed: u64,
) -> (f64, f64) {
    let scale = model.outputs()[0].scale as f64;
    let (mut error, mut largest) = (0f64, 0f64);
    for input in samples(count, float.input_len(), seed) {
        let expected = float.evaluate(&input);
        let got = model
            .evaluate(&model.quantize_input(&input).unwrap())
            .unwrap();
        for (&v, &e) in got.iter().zip(&expected) {
            error = error.max((v as f64 * scale - e as f64).abs());
            largest = largest.max(e.abs() as f64);
        }
    }
    (error, largest)
}

/// Calibration samples for [`every_operator_float_model`].
pub fn samples(count: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut n = Numbers::new(seed);
    (0..count)
        .map(|_| (0..len).map(|_| n.real() as f32 * 2.0).collect())
        .collect()
}

/// [`every_operator_float_model`], quantised.
pub fn every_operator_model() -> QuantModel {
    let float = every_operator_float_model();
    let samples = samples(32, float.input_len(), 7);
    quantize(&float, &samples)
        .expect("the test model quantises")
        .0
}

/// Quantises `float` (calibrated on pseudo-random samples) and checks, on one input, that
/// every witness of its circuit, changed by +1, −1 or 1 − v with the change carried
/// through the rest of the model, is refused by the constraints or changes no output.
/// Returns how many changes were refused.
pub fn assert_every_change_refused(float: &FloatModel) -> usize {
    let samples = samples(8, float.input_len(), 11);
    let model = quantize(float, &samples).expect("the model quantises").0;
    assert_quantised_changes_refused(&model, &model.quantize_input(&samples[0]).unwrap())
}

/// [`assert_every_change_refused`] for a quantised model and an input.
pub fn assert_quantised_changes_refused(model: &QuantModel, input: &[i8]) -> usize {
    let inputs: Vec<i128> = input.iter().map(|&x| x as i128).collect();
    let (outputs, refused) =
        crate::circuit::gadgets::testing::assert_tampering_refused(&inputs, |cs, wires| {
            model.synthesize(cs, wires.to_vec())
        });
    let expected: Vec<i128> = model
        .evaluate(input)
        .unwrap()
        .into_iter()
        .map(i128::from)
        .collect();
    assert_eq!(
        outputs, expected,
        "the circuit computes the evaluator's outputs"
    );
    assert!(refused > 0, "no change was refused");
    refused
}
