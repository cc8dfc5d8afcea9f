//! ONNX files exported by PyTorch (shipped in the `onnx` package's test data) import, evaluate
//! like onnx's own reference outputs, quantise within tolerance and prove; files sn2 cannot
//! handle are refused with the operator, the node and the reason named, never
//! approximated, never a panic. (`tests/operators.rs` covers every operator on onnx's
//! backend test data against onnxruntime.)

mod common;

use std::path::{Path, PathBuf};

use sn2::circuit::r1cs::{Mode, R1cs};
use sn2::model::onnx::{decode_tensor, import};
use sn2::model::{ModelError, quantize::quantize};
use sn2::proof::Binding;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/onnx")
        .join(name)
}

fn handmade(file: &str) -> Vec<u8> {
    std::fs::read(data("handmade").join(file)).unwrap()
}

/// A test tensor, whole: the model's input is the batch as exported.
fn tensor(name: &str, file: &str) -> Vec<f32> {
    decode_tensor(&std::fs::read(data(name).join(file)).unwrap())
        .unwrap()
        .1
}

/// Relative tolerance of the quantised model against the float model: int8 activations
/// carry about 1% error per layer; 6% of the largest output leaves room for a few layers.
const QUANTISED_TOLERANCE: f64 = 0.06;

fn check_pytorch_model(name: &str) {
    let float = import(&std::fs::read(data(name).join("model.onnx")).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = tensor(name, "input_0.pb");
    let expected = tensor(name, "output_0.pb");
    let output = float.evaluate(&input);
    assert_eq!(output.len(), expected.len(), "{name}");
    for (o, e) in output.iter().zip(&expected) {
        assert!(
            (o - e).abs() <= 1e-4 * (1.0 + e.abs()),
            "{name}: float {o} vs reference {e}"
        );
    }

    let (model, _) = quantize(&float, std::slice::from_ref(&input)).unwrap();
    let largest = expected.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let q = model
        .evaluate(&model.quantize_input(&input).unwrap())
        .unwrap();
    for (q, e) in model.dequantize_output(&q).iter().zip(&expected) {
        assert!(
            (q - *e as f64).abs() <= QUANTISED_TOLERANCE * largest,
            "{name}: quantised {q} vs float {e} (largest {largest})"
        );
    }

    let input = model.quantize_input(&input).unwrap();
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
fn pytorch_conv_with_stride_padding_groups_and_dilation() {
    check_pytorch_model("test_Conv2d_strided");
    check_pytorch_model("test_Conv2d_padding");
    check_pytorch_model("test_Conv2d_groups");
    check_pytorch_model("test_Conv2d_dilated");
}

#[test]
fn pytorch_pooling() {
    check_pytorch_model("test_MaxPool2d");
    check_pytorch_model("test_AvgPool2d");
}

#[test]
fn pytorch_relu_and_softmax() {
    check_pytorch_model("test_ReLU");
    check_pytorch_model("test_Softmax");
}

#[test]
fn pytorch_exports_of_both_exporters_and_several_opsets_prove() {
    // A transformer block, a residual CNN with BatchNorm, an LSTM and a GRU, each exported
    // by the TorchScript exporter at opsets 13 (LayerNorm and GELU decomposed) and 17, with
    // and without its constant folding, and by the dynamo exporter at opset 18.
    let folder = data("pytorch");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".onnx").map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names.len(), 16);
    for name in names {
        let read = |suffix: &str| std::fs::read(folder.join(format!("{name}{suffix}"))).unwrap();
        let float = import(&read(".onnx")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = decode_tensor(&read(".input.pb")).unwrap().1;
        let expected = decode_tensor(&read(".output.pb")).unwrap().1;
        let output = float.evaluate(&input);
        for (o, e) in output.iter().zip(&expected) {
            assert!(
                (o - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{name}: float {o} vs onnxruntime {e}"
            );
        }
        let (model, _) = quantize(&float, std::slice::from_ref(&input)).unwrap();
        let quantised = model.quantize_input(&input).unwrap();
        let values = model.dequantize_output(&model.evaluate(&quantised).unwrap());
        let largest = expected.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
        for (q, e) in values.iter().zip(&expected) {
            assert!(
                (q - *e as f64).abs() <= 0.08 * largest,
                "{name}: quantised {q} vs {e}"
            );
        }
        // The witness satisfies the circuit (proofs are made elsewhere; this is cheaper).
        let mut cs = R1cs::new(Mode::Constraints);
        let wires = quantised.iter().map(|&x| cs.alloc(x as i128)).collect();
        model.synthesize(&mut cs, wires);
        assert_eq!(cs.first_unsatisfied(), None, "{name}");
    }
}

fn refusal(bytes: &[u8]) -> String {
    match import(bytes) {
        Ok(_) => panic!("accepted"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn unsupported_operators_are_named_with_their_node() {
    let message = refusal(&handmade("unsupported_operator.onnx"));
    assert!(
        message.starts_with(
            "operator `Sin` (node `wave`) is not supported; supported operators: Gemm"
        ),
        "{message}"
    );
    // The list names what is supported on constants alone, apart.
    assert!(message.contains("on constants only: Shape"), "{message}");
    let message = refusal(&handmade("custom_domain.onnx"));
    assert!(
        message.starts_with("operator `com.microsoft.FusedGemm` (node `fused`)"),
        "{message}"
    );
}

#[test]
fn unsupported_uses_of_supported_operators_say_why() {
    let message = refusal(&handmade("reflect_pad.onnx"));
    assert_eq!(
        message,
        "node `pad` (Pad): only constant padding is supported"
    );
    let message = refusal(&handmade("divide_by_tensor.onnx"));
    assert!(
        message.contains("division by a computed tensor is not supported"),
        "{message}"
    );
    let message = refusal(&handmade("conv3d.onnx"));
    assert!(message.contains("1-D and 2-D windows only"), "{message}");
}

#[test]
fn shape_mismatches_are_refused() {
    let message = refusal(&handmade("gemm_shape_mismatch.onnx"));
    assert_eq!(
        message,
        "node `fc` (Gemm): weights for 32 inputs, but the input has shape [1, 64]"
    );
    let message = refusal(&handmade("conv_on_flat_input.onnx"));
    assert!(message.contains("an input of shape [1, 16]"), "{message}");
}

#[test]
fn graphs_with_branches_and_two_inputs_prove() {
    // A residual (Relu, then Add of the input) and an Add of two model inputs: what the
    // chain-of-layers importer refused.
    for file in ["branching.onnx", "two_inputs.onnx", "sigmoid.onnx"] {
        let float = import(&handmade(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let samples = sn2::model::input::pseudo_random_samples(16, float.input_len());
        let (model, _) = quantize(&float, &samples).unwrap();
        let input = model.quantize_input(&samples[0]).unwrap();
        common::setup_prove_verify(model, &input, Binding([2; 31]))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn reshape_keeps_the_data_and_changes_the_shape() {
    let model = import(&handmade("reshape_gemm.onnx")).unwrap();
    assert_eq!(model.inputs, vec![vec![1, 1, 4, 4]]);
    assert_eq!(model.output_shapes(), vec![vec![1, 3]]);
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
fn damaged_graphs_are_errors_not_panics() {
    // Every operator family's import, quantisation and evaluation, on files with a byte
    // changed here and there: an error or a model, never a panic or an unbounded
    // allocation.
    let folder = data("pytorch");
    // More rounds for a longer search: SN2_DAMAGE_ROUNDS=100000.
    let rounds: usize = std::env::var("SN2_DAMAGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut evaluated = 0;
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "onnx") {
            continue;
        }
        let good = std::fs::read(&path).unwrap();
        for _ in 0..rounds {
            let mut damaged = good.clone();
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % damaged.len();
                damaged[at] = next() as u8;
            }
            let Ok(float) = import(&damaged) else {
                continue;
            };
            let samples = sn2::model::input::pseudo_random_samples(2, float.input_len());
            let Ok((model, _)) = quantize(&float, &samples) else {
                continue;
            };
            let _ = model.evaluate(&model.quantize_input(&samples[0]).unwrap());
            evaluated += 1;
        }
    }
    // Most changes land in weights: the models still run.
    assert!(evaluated > 1000, "{evaluated}");
}

#[test]
fn inputs_of_the_wrong_length_or_range_are_refused() {
    let float = import(&std::fs::read(data("test_Linear").join("model.onnx")).unwrap()).unwrap();
    let input = tensor("test_Linear", "input_0.pb");
    let (model, _) = quantize(&float, std::slice::from_ref(&input)).unwrap();
    let len = model.input_len();
    assert!(matches!(
        model.quantize_input(&[0.0; 3]),
        Err(ModelError::InputLength { found: 3, .. })
    ));
    assert!(matches!(
        model.quantize_input(&vec![f32::NAN; len]),
        Err(ModelError::InputValue(_))
    ));
    assert!(matches!(
        model.evaluate(&vec![0; len + 1]),
        Err(ModelError::InputLength { .. })
    ));
    // Out-of-range values saturate to the int8 range rather than wrapping.
    let big = model.quantize_input(&vec![1e9; len]).unwrap();
    assert!(big.iter().all(|&v| v == 127));
    assert!(matches!(
        quantize(&float, &[]),
        Err(ModelError::Calibration(_))
    ));
}
