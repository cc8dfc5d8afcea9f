//! How far the quantised model is from the float model it came from: output errors,
//! agreement of the top class, and accuracy where the data has labels. When the data
//! carries reference outputs (test vectors from another ONNX evaluator), the float
//! evaluator is checked against them too.

use std::fmt;

use serde::Serialize;

use super::input::DataSet;
use super::{ModelError, StoredModel};

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub samples: usize,
    /// Largest |quantised − float| over all outputs.
    pub max_abs_error: f64,
    pub mean_abs_error: f64,
    /// `max_abs_error` relative to the largest float output magnitude.
    pub relative_error: f64,
    /// Share of samples where both pick the same top output.
    pub argmax_agreement: f64,
    pub float_accuracy: Option<f64>,
    pub quantized_accuracy: Option<f64>,
    /// Largest |float evaluator − reference output|, when the data has reference outputs.
    pub reference_max_abs_error: Option<f64>,
}

fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

pub fn compare(stored: &StoredModel, data: &DataSet) -> Result<EvalReport, ModelError> {
    let float = stored.float_model()?;
    let model = &stored.model;
    data.check_input_len(model.input_len())?;
    let (mut max_error, mut sum_error, mut count, mut max_float) = (0f64, 0f64, 0usize, 0f64);
    let (mut agree, mut float_right, mut quant_right) = (0usize, 0usize, 0usize);
    let mut reference_error: Option<f64> = None;
    for (index, input) in data.inputs.iter().enumerate() {
        let float_out: Vec<f64> = float.evaluate(input).into_iter().map(f64::from).collect();
        let quantized = model.evaluate(&model.quantize_input(input)?)?;
        let quant_out = model.dequantize_output(&quantized);
        for (f, q) in float_out.iter().zip(&quant_out) {
            let error = (f - q).abs();
            max_error = max_error.max(error);
            sum_error += error;
            count += 1;
            max_float = max_float.max(f.abs());
        }
        let (f_top, q_top) = (argmax(&float_out), argmax(&quant_out));
        agree += (f_top == q_top) as usize;
        if let Some(labels) = &data.labels {
            float_right += (f_top == labels[index]) as usize;
            quant_right += (q_top == labels[index]) as usize;
        }
        if let Some(reference) = data.outputs.as_ref().map(|o| &o[index]) {
            if reference.len() != float_out.len() {
                return Err(ModelError::InputValue(format!(
                    "reference output {index} has {} values; the model gives {}",
                    reference.len(),
                    float_out.len()
                )));
            }
            let error = reference
                .iter()
                .zip(&float_out)
                .fold(0f64, |m, (&r, &f)| m.max((r as f64 - f).abs()));
            reference_error = Some(reference_error.unwrap_or(0.0).max(error));
        }
    }
    let samples = data.inputs.len();
    let share = |n: usize| n as f64 / samples as f64;
    Ok(EvalReport {
        model: stored.info.name.clone(),
        samples,
        max_abs_error: max_error,
        mean_abs_error: sum_error / count.max(1) as f64,
        relative_error: if max_float > 0.0 {
            max_error / max_float
        } else {
            0.0
        },
        argmax_agreement: share(agree),
        float_accuracy: data.labels.as_ref().map(|_| share(float_right)),
        quantized_accuracy: data.labels.as_ref().map(|_| share(quant_right)),
        reference_max_abs_error: reference_error,
    })
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model               {}", self.model)?;
        writeln!(f, "samples             {}", self.samples)?;
        writeln!(
            f,
            "max |quant - float| {:.5} ({:.2}% of the largest output)",
            self.max_abs_error,
            100.0 * self.relative_error
        )?;
        writeln!(f, "mean |quant - float| {:.5}", self.mean_abs_error)?;
        writeln!(
            f,
            "top-1 agreement     {:.2}%",
            100.0 * self.argmax_agreement
        )?;
        if let (Some(float), Some(quant)) = (self.float_accuracy, self.quantized_accuracy) {
            writeln!(
                f,
                "accuracy            float {:.2}%, quantised {:.2}%",
                100.0 * float,
                100.0 * quant
            )?;
        }
        if let Some(reference) = self.reference_max_abs_error {
            writeln!(f, "float vs reference  max |difference| {reference:.2e}")?;
        }
        Ok(())
    }
}
