//! Models: ONNX import, quantisation to fixed point, the canonical model file and its id,
//! the fixed-point evaluator, input files, and the models directory.
//!
//! The pipeline: [`onnx::import`] gives a [`FloatModel`]; [`quantize::quantize`] calibrates
//! it into a [`QuantModel`]; [`codec`] writes the canonical bytes whose SHA-256 is the
//! [`ModelId`]; [`store::ModelStore`] keeps it on disk with the source and the keys.

pub mod codec;
pub mod eval;
pub mod float;
pub mod geometry;
pub mod input;
pub mod onnx;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod onnx_proto;
pub mod quant;
pub mod quantize;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;

pub use codec::ModelId;
pub use float::FloatModel;
pub use quant::QuantModel;
pub use store::{ModelStore, StoredModel};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Onnx(String),
    #[error(
        "operator `{op}` (node `{node}`) is not supported; supported operators: {}",
        onnx::SUPPORTED_OPERATORS
    )]
    Unsupported { op: String, node: String },
    #[error("node `{node}` ({op}): {reason}")]
    InvalidNode {
        op: String,
        node: String,
        reason: String,
    },
    #[error("calibration: {0}")]
    Calibration(String),
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("model file: {0}")]
    Format(String),
    #[error("the input has {found} values; the model takes {expected}")]
    InputLength { expected: usize, found: usize },
    #[error("invalid input: {0}")]
    InputValue(String),
    #[error("{0}")]
    Store(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
