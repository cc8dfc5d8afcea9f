//! Models: ONNX import, the graph IR, quantisation to fixed point, the canonical model
//! file and its id, input files, and the models directory.
//!
//! The pipeline: [`onnx::import`] builds a [`FloatModel`] (a graph of operators, `ops`,
//! one file per family); [`quantize::quantize`] calibrates it into a [`QuantModel`], whose
//! one description is both the fixed-point evaluator and the circuit (see `circuit`);
//! [`codec`] writes the canonical bytes whose SHA-256 is the [`ModelId`];
//! [`store::ModelStore`] keeps it on disk with the source and the keys.

pub mod builder;
pub mod codec;
pub mod eval;
pub mod geometry;
pub mod graph;
pub mod input;
pub mod onnx;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod onnx_proto;
pub mod ops;
mod patterns;
pub mod quantize;
pub mod store;
pub mod tensor;
#[cfg(test)]
pub(crate) mod testing;

pub use codec::ModelId;
pub use graph::{FloatModel, OutOfRange, QuantModel};
pub use store::{ModelStore, StoredModel};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Onnx(String),
    #[error("operator `{op}` (node `{node}`) is not supported; supported operators: {supported}")]
    Unsupported {
        op: String,
        node: String,
        supported: String,
    },
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
