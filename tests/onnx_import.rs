//! ONNX files exported by PyTorch (shipped in the `onnx` package's test data) import, evaluate
//! like onnx's own reference outputs, quantise within tolerance and prove; files sn2 cannot
//! handle are refused with the operator and node named, never approximated, never a panic.

mod common;

use std::path::{Path, PathBuf};

use sn2::model::onnx::{decode_tensor, import};
use sn2::model::{ModelError, quantize::quantize};
use sn2::proof::Binding;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/onnx")
        .join(name)
}

/// The samples of a batched test tensor.
fn samples(name: &str, file: &str) -> Vec<Vec<f32>> {
    let (dims, values) = decode_tensor(&std::fs::read(data(name).join(file)).unwrap()).unwrap();
    let batch = dims[0];
    values
        .chunks(values.len() / batch)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Relative tolerance of the quantised model against the float model: int8 activations
/// carry about 1% error per layer; 6% of the largest output leaves room for a few layers.
const QUANTISED_TOLERANCE: f64 = 0.06;

fn check_pytorch_model(name: &str) {
    let float = import(&std::fs::read(data(name).join("model.onnx")).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs = samples(name, "input_0.pb");
    let expected = samples(name, "output_0.pb");
    for (input, expected) in inputs.iter().zip(&expected) {
        let output = float.evaluate(input);
        assert_eq!(output.len(), expected.len(), "{name}");
        for (o, e) in output.iter().zip(expected) {
            assert!(
                (o - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{name}: float {o} vs reference {e}"
            );
        }
    }

    let (model, _) = quantize(&float, &inputs).unwrap();
    let largest = expected
        .iter()
        .flatten()
        .fold(0f64, |m, &v| m.max(v.abs() as f64));
    for (input, expected) in inputs.iter().zip(&expected) {
        let q = model
            .evaluate(&model.quantize_input(input).unwrap())
            .unwrap();
        for (q, e) in model.dequantize_output(&q).iter().zip(expected) {
            assert!(
                (q - *e as f64).abs() <= QUANTISED_TOLERANCE * largest,
                "{name}: quantised {q} vs float {e} (largest {largest})"
            );
        }
    }

    let input = model.quantize_input(&inputs[0]).unwrap();
    common::setup_prove_verify(model, &input, Binding([1; 31]))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn pytorch_gemm() {
    check_pytorch_model("test_Linear");
}

#[test]
fn pytorch_matmul_with_transposed_weights() {
    check_pytorch_model("test_Linear_no_bias");
}

#[test]
fn pytorch_conv() {
    check_pytorch_model("test_Conv2d");
    check_pytorch_model("test_Conv2d_no_bias");
}

#[test]
fn pytorch_conv_with_stride_and_padding() {
    check_pytorch_model("test_Conv2d_strided");
    check_pytorch_model("test_Conv2d_padding");
}

#[test]
fn pytorch_pooling() {
    check_pytorch_model("test_MaxPool2d");
    check_pytorch_model("test_AvgPool2d");
}

#[test]
fn pytorch_relu() {
    check_pytorch_model("test_ReLU");
}

fn refusal(file: &str) -> String {
    let path = if file.ends_with(".onnx") {
        data("handmade").join(file)
    } else {
        data(file).join("model.onnx")
    };
    match import(&std::fs::read(path).unwrap()) {
        Ok(_) => panic!("{file} was accepted"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn unsupported_operators_are_named_with_their_node() {
    let message = refusal("test_Softmax");
    assert!(
        message.starts_with("operator `Softmax` (node `"),
        "{message}"
    );
    assert!(message.contains("supported operators: Gemm"), "{message}");
    let message = refusal("sigmoid.onnx");
    assert!(
        message.starts_with("operator `Sigmoid` (node `act`)"),
        "{message}"
    );
}

#[test]
fn unsupported_attributes_are_refused() {
    assert!(refusal("test_Conv2d_groups").contains("grouped convolutions are not supported"));
    assert!(refusal("test_Conv2d_dilated").contains("dilations other than 1"));
}

#[test]
fn shape_mismatches_and_graphs_that_are_not_chains_are_refused() {
    let message = refusal("gemm_shape_mismatch.onnx");
    assert_eq!(
        message,
        "node `fc` (Gemm): weights for 32 inputs, but the input has 64"
    );
    assert!(refusal("branching.onnx").contains("node `residual` (Add)"));
    assert!(refusal("two_inputs.onnx").contains("2 inputs besides its weights"));
    assert!(refusal("conv_on_flat_input.onnx").contains("input of shape [16]; CHW expected"));
}

#[test]
fn reshape_keeps_the_data_and_changes_the_shape() {
    let model =
        import(&std::fs::read(data("handmade").join("reshape_gemm.onnx")).unwrap()).unwrap();
    assert_eq!(model.input_shape, vec![1, 4, 4]);
    assert_eq!(model.output_shape, vec![3]);
    // y = W^T x with W = linspace(-1, 1, 48) as 16x3, x = 1..=16.
    let input: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let weights: Vec<f64> = (0..48).map(|i| -1.0 + 2.0 * i as f64 / 47.0).collect();
    for (o, y) in model.evaluate(&input).iter().enumerate() {
        let expected: f64 = (0..16).map(|i| weights[i * 3 + o] * (i + 1) as f64).sum();
        assert!((*y as f64 - expected).abs() < 1e-4, "{y} vs {expected}");
    }
}

#[test]
fn malformed_files_are_errors_not_panics() {
    let good = std::fs::read(data("test_Conv2d").join("model.onnx")).unwrap();
    assert!(matches!(import(b""), Err(ModelError::Onnx(_))));
    assert!(matches!(
        import(b"not a protobuf at all"),
        Err(ModelError::Onnx(_))
    ));
    for len in (0..good.len()).step_by(7) {
        let _ = import(&good[..len]);
    }
    let mut state = 99u64;
    for _ in 0..500 {
        let mut damaged = good.clone();
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        let at = (state >> 33) as usize % damaged.len();
        damaged[at] = (state >> 13) as u8;
        let _ = import(&damaged);
    }
}

#[test]
fn inputs_of_the_wrong_length_or_range_are_refused() {
    let float = import(&std::fs::read(data("test_Linear").join("model.onnx")).unwrap()).unwrap();
    let inputs = samples("test_Linear", "input_0.pb");
    let (model, _) = quantize(&float, &inputs).unwrap();
    assert!(matches!(
        model.quantize_input(&[0.0; 3]),
        Err(ModelError::InputLength {
            expected: 10,
            found: 3
        })
    ));
    assert!(matches!(
        model.quantize_input(&[f32::NAN; 10]),
        Err(ModelError::InputValue(_))
    ));
    assert!(matches!(
        model.evaluate(&[0; 11]),
        Err(ModelError::InputLength { .. })
    ));
    // Out-of-range values saturate to the int8 range rather than wrapping.
    let big = model.quantize_input(&[1e9; 10]).unwrap();
    assert!(big.iter().all(|&v| v == 127));
    assert!(matches!(
        quantize(&float, &[]),
        Err(ModelError::Calibration(_))
    ));
}
