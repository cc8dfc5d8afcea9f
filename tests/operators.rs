//! Every operator on real test data: the ONNX backend node tests that the PyPI `onnx`
//! package defines, and the PyTorch exports it ships, written out with onnxruntime's
//! outputs by `tests/py/onnx_cases.py`. For each case:
//!
//! - sn2 imports it, or refuses it with a clear reason (an unsupported attribute), never a
//!   panic;
//! - the float evaluator matches onnx's expected outputs;
//! - the quantised model stays within its family's stated bound of onnxruntime's outputs;
//! - the witness satisfies the constraint system, and its outputs are the fixed-point
//!   evaluator's, bit for bit.
//!
//! Each family's test also names the cases that must pass, so that support cannot
//! silently shrink.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sn2::circuit::r1cs::{Mode, R1cs, Wire};
use sn2::model::onnx::{decode_tensor, import};
use sn2::model::ops;
use sn2::model::quantize::quantize;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    source: String,
    operators: Vec<String>,
    inputs: usize,
    outputs: usize,
    onnxruntime: bool,
}

#[derive(serde::Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

/// Writes the cases once per run (a few seconds) and reads the manifest.
fn cases() -> &'static (PathBuf, Vec<Case>) {
    static CASES: OnceLock<(PathBuf, Vec<Case>)> = OnceLock::new();
    CASES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-cases");
        let python = common::test_python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/onnx_cases.py");
        let output = Command::new(&python)
            .arg(script)
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        assert!(
            output.status.success(),
            "tests/py/onnx_cases.py failed (tests/setup.sh installs its packages): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
        (dir, manifest.cases)
    })
}

/// A family of operators: the cases it owns (by the first of its operators a case uses,
/// in the order of [`FAMILIES`]) and the bound on the quantised error, relative to the
/// largest magnitude of each reference output.
struct Family {
    name: &'static str,
    operators: &'static [&'static str],
    bound: f64,
}

/// In order of precedence: a case belongs to the first family whose operator it uses.
const FAMILIES: &[Family] = &[
    Family {
        name: "recurrent",
        operators: ops::recurrent::OPERATORS,
        bound: 0.06,
    },
    Family {
        name: "normalisation",
        operators: ops::normalisation::OPERATORS,
        bound: 0.02,
    },
    Family {
        name: "lookup",
        operators: ops::lookup::OPERATORS,
        bound: 0.03,
    },
    Family {
        name: "linear",
        operators: ops::linear::OPERATORS,
        bound: 0.02,
    },
    Family {
        name: "pooling",
        operators: ops::pooling::OPERATORS,
        bound: 0.04,
    },
    Family {
        name: "elementwise",
        operators: ops::elementwise::OPERATORS,
        bound: 0.04,
    },
    Family {
        name: "shape",
        operators: ops::shape::OPERATORS,
        bound: 0.01,
    },
];

fn family_of(case: &Case) -> &'static str {
    FAMILIES
        .iter()
        .find(|f| {
            case.operators
                .iter()
                .any(|o| f.operators.contains(&o.as_str()))
        })
        .map_or("constants", |f| f.name)
}

fn tensors(dir: &Path, prefix: &str, count: usize) -> Vec<(Vec<usize>, Vec<f32>)> {
    (0..count)
        .map(|k| {
            decode_tensor(&std::fs::read(dir.join(format!("{prefix}_{k}.pb"))).unwrap()).unwrap()
        })
        .collect()
}

/// Inputs beyond this size (a megapixel MaxPool in PyTorch's tests: 56 million
/// constraints) are checked as float and as fixed point, without building their circuit.
const CIRCUIT_INPUT_LIMIT: usize = 200_000;

/// What happened to one case.
enum Outcome {
    Passed { error: f64, constraints: usize },
    Refused(String),
}

/// Runs one case: a refusal at import is an outcome, any other failure an error.
fn run(dir: &Path, case: &Case, bound: Option<f64>) -> Result<Outcome, String> {
    let result = std::panic::catch_unwind(|| run_case(dir, case, bound));
    result.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("{}: panicked: {message}", case.name))
    })
}

fn run_case(dir: &Path, case: &Case, bound: Option<f64>) -> Result<Outcome, String> {
    let folder = dir.join(&case.name);
    let name = &case.name;
    let float = match import(&std::fs::read(folder.join("model.onnx")).unwrap()) {
        Ok(model) => model,
        Err(e) => return Ok(Outcome::Refused(e.to_string())),
    };
    let input: Vec<f32> = tensors(&folder, "input", case.inputs)
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect();
    if input.len() != float.input_len() {
        return Err(format!(
            "{name}: {} input values for {}",
            input.len(),
            float.input_len()
        ));
    }
    let expected = tensors(&folder, "expected", case.outputs);
    let output = float.evaluate(&input);
    let expected_flat: Vec<f32> = expected.iter().flat_map(|(_, v)| v.clone()).collect();
    if output.len() != expected_flat.len() {
        return Err(format!(
            "{name}: {} outputs, onnx expects {}",
            output.len(),
            expected_flat.len()
        ));
    }
    for (i, (o, e)) in output.iter().zip(&expected_flat).enumerate() {
        if (o - e).abs() > 1e-4 + 1e-3 * e.abs() {
            return Err(format!("{name}: float output {i} is {o}, onnx expects {e}"));
        }
    }

    let (model, _) =
        quantize(&float, std::slice::from_ref(&input)).map_err(|e| format!("{name}: {e}"))?;
    let quantised_input = model.quantize_input(&input).unwrap();
    let integers = model.evaluate(&quantised_input).unwrap();
    let dequantised = model.dequantize_output(&integers);
    let reference = if case.onnxruntime {
        tensors(&folder, "onnxruntime", case.outputs)
    } else {
        expected
    };
    let mut worst = 0f64;
    let mut at = 0;
    for (k, (_, values)) in reference.iter().enumerate() {
        let largest = values
            .iter()
            .fold(0f64, |m, &v| m.max(v.abs() as f64))
            .max(1e-3);
        for (j, &r) in values.iter().enumerate() {
            let error = (dequantised[at + j] - r as f64).abs() / largest;
            worst = worst.max(error);
            if let Some(bound) = bound
                && error > bound
            {
                return Err(format!(
                    "{name}: output {k}[{j}] quantised to {}, reference {r}: {error:.4} of the largest output (bound {bound})",
                    dequantised[at + j]
                ));
            }
        }
        at += values.len();
    }

    if float.input_len() > CIRCUIT_INPUT_LIMIT {
        eprintln!(
            "  {name}: an input of {} values; its circuit is not built here",
            float.input_len()
        );
        return Ok(Outcome::Passed {
            error: worst,
            constraints: 0,
        });
    }
    let mut cs = R1cs::new(Mode::Constraints);
    let wires: Vec<Wire> = quantised_input
        .iter()
        .map(|&x| cs.alloc(x as i128))
        .collect();
    let outputs = model.synthesize(&mut cs, wires);
    if let Some(failure) = cs.failure() {
        return Err(format!("{name}: {failure}"));
    }
    if let Some((row, operator)) = cs.first_unsatisfied() {
        return Err(format!(
            "{name}: constraint {row} ({operator}) is not satisfied"
        ));
    }
    let witnessed: Vec<i32> = outputs.iter().map(|w| w.value() as i32).collect();
    if witnessed != integers {
        return Err(format!("{name}: the witness and the evaluator disagree"));
    }
    Ok(Outcome::Passed {
        error: worst,
        constraints: cs.constraint_count(),
    })
}

/// Runs a family's cases; every case in `must_pass` must pass, the others pass or are
/// refused with a reason. The cases in `inaccurate` are not held to the bound, each for the
/// reason given (their witness must still satisfy the constraints).
fn check_family(family: &str, must_pass: &[&str], inaccurate: &[(&str, &str)]) {
    let (dir, cases) = cases();
    let spec = FAMILIES
        .iter()
        .find(|f| f.name == family)
        .expect("a family");
    let mine: Vec<&Case> = cases.iter().filter(|c| family_of(c) == family).collect();
    let mut passed = BTreeMap::new();
    let mut refused = BTreeMap::new();
    let mut failed = Vec::new();
    for case in &mine {
        let excused = inaccurate.iter().find(|(name, _)| *name == case.name);
        if let Some((name, reason)) = excused {
            eprintln!("  not held to the bound: {name}: {reason}");
        }
        match run(dir, case, excused.is_none().then_some(spec.bound)) {
            Err(failure) => failed.push(failure),
            Ok(Outcome::Passed { error, constraints }) => {
                passed.insert(case.name.as_str(), (error, constraints));
            }
            Ok(Outcome::Refused(reason)) => {
                // A refusal may call an operator unsupported only if it is not one of ours.
                if let Some(op) = reason
                    .strip_prefix("operator `")
                    .and_then(|r| r.split('`').next())
                {
                    let ours = FAMILIES.iter().any(|f| f.operators.contains(&op));
                    assert!(!ours, "{}: {reason}", case.name);
                }
                refused.insert(case.name.as_str(), reason);
            }
        }
    }
    eprintln!(
        "{family}: {} of {} cases pass (bound {})",
        passed.len(),
        mine.len(),
        spec.bound
    );
    for (name, (error, constraints)) in &passed {
        eprintln!("  pass    {name}: error {error:.4}, {constraints} constraints");
    }
    for (name, reason) in &refused {
        eprintln!("  refused {name}: {reason}");
    }
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    for name in must_pass {
        assert!(
            passed.contains_key(name),
            "{name} must pass: {}",
            refused
                .get(name)
                .map_or("not among the cases", String::as_str)
        );
    }
    let sources: std::collections::BTreeSet<&str> =
        mine.iter().map(|c| c.source.as_str()).collect();
    assert!(!mine.is_empty(), "{family} has cases ({sources:?})");
}

/// Case names, separated by white space.
fn names(list: &'static str) -> Vec<&'static str> {
    list.split_whitespace().collect()
}

#[test]
fn linear_operators() {
    check_family(
        "linear",
        &names(
            "test_BatchNorm1d_3d_input_eval test_BatchNorm2d_eval test_BatchNorm2d_momentum_eval \
         test_BatchNorm3d_eval test_BatchNorm3d_momentum_eval test_Conv1d test_Conv1d_dilated \
         test_Conv1d_groups test_Conv1d_pad1 test_Conv1d_pad1size1 test_Conv1d_pad2 \
         test_Conv1d_pad2size1 test_Conv1d_stride test_Conv2d test_Conv2d_depthwise \
         test_Conv2d_depthwise_padded test_Conv2d_depthwise_strided \
         test_Conv2d_depthwise_with_multiplier test_Conv2d_dilated test_Conv2d_groups \
         test_Conv2d_groups_thnn test_Conv2d_no_bias test_Conv2d_padding test_Conv2d_strided \
         test_Linear test_basic_conv_with_padding test_basic_conv_without_padding \
         test_batchnorm_epsilon test_batchnorm_example \
         test_causal_conv_with_state_decode_step_expanded \
         test_causal_conv_with_state_with_bias_and_past_state_expanded \
         test_causal_conv_with_state_with_past_state_expanded test_conv_with_autopad_same \
         test_conv_with_strides_and_asymmetric_padding test_conv_with_strides_no_padding \
         test_conv_with_strides_padding test_gemm_all_attributes test_gemm_alpha test_gemm_beta \
         test_gemm_default_matrix_bias test_gemm_default_no_bias test_gemm_default_scalar_bias \
         test_gemm_default_single_elem_vector_bias test_gemm_default_vector_bias \
         test_gemm_default_zero_bias test_gemm_transposeA test_gemm_transposeB \
         test_operator_addmm test_operator_conv test_operator_mm",
        ),
        &[],
    );
}

#[test]
fn elementwise_operators() {
    check_family(
        "elementwise",
        &names(
            "test_Linear_no_bias test_ReLU test_add test_add_bcast test_clip \
         test_clip_default_inbounds test_clip_default_max test_clip_default_min test_clip_example \
         test_clip_inbounds test_clip_min_greater_than_max test_clip_outbounds \
         test_clip_splitbounds test_depthtospace_crd_mode_example_expanded \
         test_depthtospace_example_expanded test_matmul_1d_3d test_matmul_2d test_matmul_3d \
         test_matmul_4d test_matmul_4d_1d test_matmul_bcast test_mul test_mul_bcast \
         test_mul_example test_neg test_neg_example test_operator_clip test_relu \
         test_rotary_embedding_no_position_ids_rotary_dim_expanded \
         test_rotary_embedding_with_interleaved_rotary_dim_expanded \
         test_rotary_embedding_with_rotary_dim_expanded \
         test_spacetodepth_crd_mode_example_expanded test_spacetodepth_dcr_mode_example_expanded \
         test_spacetodepth_example_expanded test_spacetodepth_expanded test_sub test_sub_bcast \
         test_sub_example",
        ),
        &[],
    );
}

#[test]
fn shape_operators() {
    check_family(
        "shape",
        &names(
            "test_ConstantPad2d test_PixelShuffle test_ZeroPad2d test_clip_default_inbounds_expanded \
         test_concat_1d_axis_0 test_concat_1d_axis_negative_1 test_concat_2d_axis_0 \
         test_concat_2d_axis_1 test_concat_2d_axis_negative_1 test_concat_2d_axis_negative_2 \
         test_concat_3d_axis_0 test_concat_3d_axis_1 test_concat_3d_axis_2 \
         test_concat_3d_axis_negative_1 test_concat_3d_axis_negative_2 \
         test_concat_3d_axis_negative_3 test_constant_pad test_constant_pad_axes \
         test_constant_pad_negative_axes test_dropout_default test_dropout_default_mask \
         test_dropout_default_mask_ratio test_dropout_default_old test_dropout_default_ratio \
         test_dropout_random_old test_expand_dim_changed test_expand_dim_unchanged \
         test_flatten_axis0 test_flatten_axis1 test_flatten_axis2 test_flatten_axis3 \
         test_flatten_default_axis test_flatten_negative_axis1 test_flatten_negative_axis2 \
         test_flatten_negative_axis3 test_flatten_negative_axis4 test_gather_0 test_gather_1 \
         test_gather_2d_indices test_gather_negative_indices test_identity test_operator_chunk \
         test_operator_concat2 test_operator_flatten test_operator_index test_operator_permute2 \
         test_operator_view test_reshape_extended_dims test_reshape_negative_dim \
         test_reshape_negative_extended_dims test_reshape_one_dim test_reshape_reduced_dims \
         test_reshape_reordered_all_dims test_reshape_reordered_last_dims \
         test_reshape_zero_and_negative_dim test_reshape_zero_dim test_slice \
         test_slice_default_axes test_slice_default_steps test_slice_end_out_of_bounds \
         test_slice_neg test_slice_neg_steps test_slice_negative_axes \
         test_split_1d_uneven_split_opset18 test_split_2d_uneven_split_opset18 \
         test_split_equal_parts_1d_opset13 test_split_equal_parts_1d_opset18 \
         test_split_equal_parts_2d test_split_equal_parts_2d_opset13 \
         test_split_equal_parts_default_axis_opset13 test_split_equal_parts_default_axis_opset18 \
         test_split_variable_parts_1d_opset13 test_split_variable_parts_1d_opset18 \
         test_split_variable_parts_2d_opset13 test_split_variable_parts_2d_opset18 \
         test_split_variable_parts_default_axis_opset13 \
         test_split_variable_parts_default_axis_opset18 test_squeeze test_squeeze_negative_axes \
         test_transpose_all_permutations_0 test_transpose_all_permutations_1 \
         test_transpose_all_permutations_2 test_transpose_all_permutations_3 \
         test_transpose_all_permutations_4 test_transpose_all_permutations_5 \
         test_transpose_default test_unsqueeze_axis_0 test_unsqueeze_axis_1 test_unsqueeze_axis_2 \
         test_unsqueeze_negative_axes test_unsqueeze_three_axes test_unsqueeze_two_axes \
         test_unsqueeze_unsorted_axes",
        ),
        &[],
    );
}

#[test]
fn pooling_operators() {
    check_family(
        "pooling",
        &names(
            "test_AvgPool1d test_AvgPool1d_stride test_AvgPool2d test_AvgPool2d_stride test_MaxPool1d \
         test_MaxPool1d_stride test_MaxPool2d test_MaxPool2d_stride_padding_dilation \
         test_averagepool_1d_default test_averagepool_2d_ceil \
         test_averagepool_2d_ceil_last_window_starts_on_pad test_averagepool_2d_default \
         test_averagepool_2d_dilations test_averagepool_2d_pads \
         test_averagepool_2d_pads_count_include_pad test_averagepool_2d_precomputed_pads \
         test_averagepool_2d_precomputed_pads_count_include_pad \
         test_averagepool_2d_precomputed_same_upper test_averagepool_2d_precomputed_strides \
         test_averagepool_2d_same_lower test_averagepool_2d_same_upper \
         test_averagepool_2d_strides test_globalaveragepool test_globalaveragepool_precomputed \
         test_globalmaxpool test_globalmaxpool_precomputed test_maxpool_1d_default \
         test_maxpool_2d_ceil test_maxpool_2d_ceil_output_size_reduce_by_one \
         test_maxpool_2d_default test_maxpool_2d_dilations test_maxpool_2d_pads \
         test_maxpool_2d_precomputed_pads test_maxpool_2d_precomputed_same_upper \
         test_maxpool_2d_precomputed_strides test_maxpool_2d_same_lower \
         test_maxpool_2d_same_upper test_maxpool_2d_strides \
         test_maxpool_with_argmax_2d_precomputed_pads test_operator_maxpool \
         test_operator_reduced_mean test_operator_reduced_mean_keepdim test_operator_reduced_sum \
         test_operator_reduced_sum_keepdim test_reduce_max_default_axes_keepdim_example \
         test_reduce_max_default_axes_keepdims_random test_reduce_max_do_not_keepdims_example \
         test_reduce_max_do_not_keepdims_random test_reduce_max_keepdims_example \
         test_reduce_max_keepdims_random test_reduce_max_negative_axes_keepdims_example \
         test_reduce_max_negative_axes_keepdims_random \
         test_reduce_mean_default_axes_keepdims_example \
         test_reduce_mean_default_axes_keepdims_random test_reduce_mean_do_not_keepdims_example \
         test_reduce_mean_do_not_keepdims_random test_reduce_mean_keepdims_example \
         test_reduce_mean_keepdims_random test_reduce_mean_negative_axes_keepdims_example \
         test_reduce_mean_negative_axes_keepdims_random \
         test_reduce_sum_default_axes_keepdims_example \
         test_reduce_sum_default_axes_keepdims_random test_reduce_sum_do_not_keepdims_example \
         test_reduce_sum_do_not_keepdims_random test_reduce_sum_empty_axes_input_noop \
         test_reduce_sum_empty_axes_input_noop_example test_reduce_sum_keepdims_example \
         test_reduce_sum_keepdims_random test_reduce_sum_negative_axes_keepdims_example \
         test_reduce_sum_negative_axes_keepdims_random \
         test_reduce_sum_square_default_axes_keepdims_example_expanded \
         test_reduce_sum_square_default_axes_keepdims_random_expanded \
         test_reduce_sum_square_do_not_keepdims_example_expanded \
         test_reduce_sum_square_do_not_keepdims_random_expanded \
         test_reduce_sum_square_keepdims_example_expanded \
         test_reduce_sum_square_keepdims_random_expanded \
         test_reduce_sum_square_negative_axes_keepdims_example_expanded \
         test_reduce_sum_square_negative_axes_keepdims_random_expanded",
        ),
        &[],
    );
}

#[test]
fn lookup_operators() {
    check_family(
        "lookup",
        &names(
            "test_GLU test_GLU_dim test_LeakyReLU test_LeakyReLU_with_negval \
         test_PoissonNLLLLoss_no_reduce test_Sigmoid test_Softplus test_Tanh test_erf test_exp \
         test_exp_example test_gelu_default_1 test_gelu_default_2 test_gelu_tanh_1 \
         test_gelu_tanh_2 test_hardsigmoid test_hardsigmoid_default test_hardsigmoid_example \
         test_hardswish test_hardswish_expanded test_leakyrelu test_leakyrelu_default \
         test_leakyrelu_example test_mish_expanded test_operator_basic test_operator_exp \
         test_operator_params test_sigmoid test_sigmoid_example test_softplus \
         test_softplus_example test_tanh test_tanh_example",
        ),
        &[],
    );
}

#[test]
fn normalisation_operators() {
    check_family(
        "normalisation",
        &names(
            "test_Softmax test_Softmin test_flexattention_diff_head_sizes_expanded_ver26 \
         test_flexattention_expanded_ver26 test_flexattention_gqa_expanded_ver26 \
         test_flexattention_prob_mod_expanded_ver26 \
         test_flexattention_relative_positional_expanded_ver26 \
         test_flexattention_scaled_expanded_ver26 test_flexattention_score_mod_expanded_ver26 \
         test_flexattention_soft_cap_expanded_ver26 test_layer_normalization_2d_axis0 \
         test_layer_normalization_2d_axis1 test_layer_normalization_2d_axis_negative_1 \
         test_layer_normalization_2d_axis_negative_2 test_layer_normalization_3d_axis0_epsilon \
         test_layer_normalization_3d_axis1_epsilon test_layer_normalization_3d_axis2_epsilon \
         test_layer_normalization_3d_axis_negative_1_epsilon \
         test_layer_normalization_3d_axis_negative_2_epsilon \
         test_layer_normalization_3d_axis_negative_3_epsilon test_layer_normalization_4d_axis0 \
         test_layer_normalization_4d_axis1 test_layer_normalization_4d_axis2 \
         test_layer_normalization_4d_axis3 test_layer_normalization_4d_axis_negative_1 \
         test_layer_normalization_4d_axis_negative_2 test_layer_normalization_4d_axis_negative_3 \
         test_layer_normalization_4d_axis_negative_4 test_layer_normalization_default_axis \
         test_softmax_axis_0 test_softmax_axis_1 test_softmax_axis_2 test_softmax_default_axis \
         test_softmax_example test_softmax_functional_dim3 test_softmax_large_number \
         test_softmax_lastdim test_softmax_negative_axis",
        ),
        &[(
            "test_softmax_large_number",
            "inputs near 10000 that differ by 1: an int8 input at their magnitude cannot hold the differences",
        )],
    );
}

#[test]
fn recurrent_operators() {
    check_family(
        "recurrent",
        &names(
            "test_gru_batchwise test_gru_bidirectional test_gru_defaults test_gru_reverse \
         test_gru_seq_length test_gru_with_initial_bias test_lstm_batchwise \
         test_lstm_bidirectional test_lstm_defaults test_lstm_reverse test_lstm_with_initial_bias \
         test_lstm_with_peepholes",
        ),
        &[],
    );
}
