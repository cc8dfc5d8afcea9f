//! Input and data files, in JSON.
//!
//! - An input, as EZKL and Subnet 2 write it: `{"input_data": [[...]]}`, the numbers of the
//!   model's one input, flattened or nested in its shape.
//! - A data set (calibration samples, evaluation data, test vectors):
//!   `{"inputs": [[...], ...], "labels": [...]?, "outputs": [[...], ...]?}`, one flat
//!   input per sample, optional class labels and reference float outputs.

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Reads an EZKL-style input: every number under `input_data`, in order.
pub fn parse_input(text: &str) -> Result<Vec<f32>, ModelError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct InputFile {
        input_data: serde_json::Value,
    }
    let file: InputFile = serde_json::from_str(text).map_err(|e| {
        ModelError::InputValue(format!(
            "not an input file ({{\"input_data\": [[...]]}}): {e}"
        ))
    })?;
    let mut values = Vec::new();
    flatten(&file.input_data, &mut values, 0)?;
    Ok(values)
}

/// Writes an input as `{"input_data": [[...]]}`.
pub fn format_input(values: &[f32]) -> String {
    serde_json::json!({ "input_data": [values] }).to_string()
}

fn flatten(value: &serde_json::Value, out: &mut Vec<f32>, depth: usize) -> Result<(), ModelError> {
    if depth > 8 {
        return Err(ModelError::InputValue("arrays nested deeper than 8".into()));
    }
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .try_for_each(|item| flatten(item, out, depth + 1)),
        serde_json::Value::Number(number) => {
            let v = number
                .as_f64()
                .filter(|v| v.is_finite() && v.abs() <= f32::MAX as f64);
            out.push(
                v.ok_or_else(|| ModelError::InputValue(format!("{number} is not a float32")))?
                    as f32,
            );
            Ok(())
        }
        other => Err(ModelError::InputValue(format!(
            "expected numbers or arrays, found {other}"
        ))),
    }
}

/// Samples with optional labels and reference outputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    pub inputs: Vec<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Vec<f32>>>,
}

impl DataSet {
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let data: DataSet = serde_json::from_str(text).map_err(|e| {
            ModelError::InputValue(format!(
                "not a data file ({{\"inputs\": [[...]], ...}}): {e}"
            ))
        })?;
        let count = data.inputs.len();
        if count == 0 {
            return Err(ModelError::InputValue("the data file has no inputs".into()));
        }
        if data.labels.as_ref().is_some_and(|l| l.len() != count)
            || data.outputs.as_ref().is_some_and(|o| o.len() != count)
        {
            return Err(ModelError::InputValue(
                "labels or outputs do not match the inputs in number".into(),
            ));
        }
        Ok(data)
    }

    /// Checks that every input has `len` values.
    pub fn check_input_len(&self, len: usize) -> Result<(), ModelError> {
        match self.inputs.iter().find(|i| i.len() != len) {
            Some(bad) => Err(ModelError::InputLength {
                expected: len,
                found: bad.len(),
            }),
            None => Ok(()),
        }
    }
}

/// Deterministic inputs uniform in [0, 1) (splitmix64): the default calibration and
/// evaluation data, so that importing the same file twice gives the same model id.
pub fn pseudo_random_samples(count: usize, len: usize) -> Vec<Vec<f32>> {
    let mut state: u64 = 0x5eed_5eed_5eed_5eed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_may_be_flat_or_nested() {
        assert_eq!(
            parse_input(r#"{"input_data": [[1, 2.5, -3]]}"#).unwrap(),
            vec![1.0, 2.5, -3.0]
        );
        assert_eq!(
            parse_input(r#"{"input_data": [[[[1, 2], [3, 4]]]]}"#).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(
            parse_input(&format_input(&[0.5, 1.0])).unwrap(),
            vec![0.5, 1.0]
        );
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for bad in [
            "",
            "[]",
            r#"{"input": [[1]]}"#,
            r#"{"input_data": [["a"]]}"#,
            r#"{"input_data": [[1e300]]}"#,
            r#"{"input_data": [[null]]}"#,
        ] {
            assert!(parse_input(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_sets_must_be_consistent() {
        assert!(DataSet::parse(r#"{"inputs": [[1], [2]], "labels": [0, 1]}"#).is_ok());
        assert!(DataSet::parse(r#"{"inputs": [[1], [2]], "labels": [0]}"#).is_err());
        assert!(DataSet::parse(r#"{"inputs": []}"#).is_err());
    }
}
