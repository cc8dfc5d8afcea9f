//! The canonical model file: the bytes a model id is the hash of.
//!
//! Little-endian, length-prefixed, no optional parts, so one model has exactly one
//! encoding: magic `SN2MODEL`, format version (u16), the inputs (shape and scale), the
//! nodes (operator family and kind, input tensor ids, the operator's integer parameters,
//! written by its family's file), then the outputs (tensor id and scale). Tensor ids are
//! implicit: the inputs first, then each node's outputs in order. Decoding checks every
//! length against the bytes left before allocating, refuses trailing bytes, and finally
//! checks the model as a whole, so a damaged or hostile file is an error, not a panic.
//!
//! Version 1 held a chain of layers; it is refused with a request to re-import.

use sha2::{Digest, Sha256};

use super::ModelError;
use super::graph::{Node, QuantInput, QuantModel, QuantOutput};
use super::ops::QuantOp;
use crate::circuit::Range;

const MAGIC: &[u8; 8] = b"SN2MODEL";
pub const FORMAT_VERSION: u16 = 2;

/// A model id: the SHA-256 of the canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub [u8; 32]);

impl ModelId {
    pub fn of(canonical: &[u8]) -> Self {
        Self(Sha256::digest(canonical).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

pub fn encode(model: &QuantModel) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(MAGIC);
    w.bytes(&FORMAT_VERSION.to_le_bytes());
    w.len(model.inputs().len());
    for input in model.inputs() {
        w.usizes(&input.shape);
        w.f32(input.scale);
    }
    w.len(model.nodes().len());
    for node in model.nodes() {
        node.op.encode(&mut w);
        w.usizes(&node.inputs);
    }
    w.len(model.outputs().len());
    for output in model.outputs() {
        w.usize(output.tensor);
        w.f32(output.scale);
    }
    w.0
}

pub fn decode(bytes: &[u8]) -> Result<QuantModel, ModelError> {
    let mut r = Reader::new(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(ModelError::Format(
            "not an sn2 model file (bad magic)".into(),
        ));
    }
    let version = u16::from_le_bytes(r.array()?);
    if version == 1 {
        return Err(ModelError::Format(
            "this model file has format version 1 (a chain of layers, written by an older sn2); \
             import its ONNX file again with `sn2 model import` (the model id changes)"
                .into(),
        ));
    }
    if version != FORMAT_VERSION {
        return Err(ModelError::Format(format!(
            "model format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let inputs = (0..r.count(8)?)
        .map(|_| {
            Ok(QuantInput {
                shape: r.usizes()?,
                scale: r.f32()?,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let nodes = (0..r.count(6)?)
        .map(|_| {
            let op = QuantOp::decode(&mut r)?;
            let inputs = r.usizes()?;
            Ok(Node { op, inputs })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let outputs = (0..r.count(8)?)
        .map(|_| {
            Ok(QuantOutput {
                tensor: r.usize()?,
                scale: r.f32()?,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    if r.at != bytes.len() {
        return Err(ModelError::Format(format!(
            "{} bytes after the end of the model",
            bytes.len() - r.at
        )));
    }
    QuantModel::new(inputs, nodes, outputs)
}

/// Writes the canonical encoding's fields.
#[derive(Debug, Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    pub fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    pub fn usize(&mut self, value: usize) {
        let value = u32::try_from(value).expect("model sizes fit in u32 (checked on build)");
        self.bytes(&value.to_le_bytes());
    }

    /// A length or count.
    pub fn len(&mut self, value: usize) {
        self.usize(value);
    }

    pub fn i64(&mut self, value: i64) {
        self.bytes(&value.to_le_bytes());
    }

    pub fn f32(&mut self, value: f32) {
        self.bytes(&value.to_bits().to_le_bytes());
    }

    pub fn usizes(&mut self, values: &[usize]) {
        self.len(values.len());
        values.iter().for_each(|&v| self.usize(v));
    }

    pub fn i64s(&mut self, values: &[i64]) {
        self.len(values.len());
        values.iter().for_each(|&v| self.i64(v));
    }

    pub fn i8s(&mut self, values: &[i8]) {
        self.len(values.len());
        self.0.extend(values.iter().map(|&v| v as u8));
    }

    pub fn flag(&mut self, value: bool) {
        self.u8(value as u8);
    }

    pub fn range(&mut self, range: Range) {
        self.i64(range.lo);
        self.i64(range.hi);
    }

    /// The shift and clamp of a rescale whose multipliers are written apart.
    pub fn shift_and_clamp(&mut self, shift: u8, clamp: Range) {
        self.u8(shift);
        self.range(clamp);
    }
}

/// Reads the canonical encoding's fields, bounding every allocation by the bytes left.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ModelError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| ModelError::Format(format!("truncated at byte {}", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }

    pub fn usize(&mut self) -> Result<usize, ModelError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    /// A count of items that take at least `item_bytes` each: refused if the bytes left
    /// cannot hold them, so a hostile count cannot make the reader allocate.
    pub fn count(&mut self, item_bytes: usize) -> Result<usize, ModelError> {
        let count = self.usize()?;
        if count.saturating_mul(item_bytes.max(1)) > self.bytes.len() - self.at {
            return Err(ModelError::Format(format!(
                "a count of {count} at byte {} is larger than the file",
                self.at - 4
            )));
        }
        Ok(count)
    }

    pub fn i64(&mut self) -> Result<i64, ModelError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn f32(&mut self) -> Result<f32, ModelError> {
        Ok(f32::from_bits(u32::from_le_bytes(self.array()?)))
    }

    pub fn usizes(&mut self) -> Result<Vec<usize>, ModelError> {
        (0..self.count(4)?).map(|_| self.usize()).collect()
    }

    pub fn i64s(&mut self) -> Result<Vec<i64>, ModelError> {
        (0..self.count(8)?).map(|_| self.i64()).collect()
    }

    pub fn i8s(&mut self) -> Result<Vec<i8>, ModelError> {
        let len = self.count(1)?;
        Ok(self.take(len)?.iter().map(|&b| b as i8).collect())
    }

    pub fn flag(&mut self) -> Result<bool, ModelError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid("a flag that is neither 0 nor 1")),
        }
    }

    pub fn range(&mut self) -> Result<Range, ModelError> {
        Ok(Range::new(self.i64()?, self.i64()?))
    }

    pub fn shift_and_clamp(&mut self) -> Result<(u8, Range), ModelError> {
        Ok((self.u8()?, self.range()?))
    }

    /// An error naming what was malformed.
    pub fn invalid(&self, what: &str) -> ModelError {
        ModelError::Format(format!("{what} at byte {}", self.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{Numbers, every_operator_model};

    #[test]
    fn round_trips_and_ids_are_stable() {
        let model = every_operator_model();
        let bytes = encode(&model);
        assert_eq!(decode(&bytes).unwrap(), model);
        assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&every_operator_model());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(ModelError::Format(_))));
    }

    #[test]
    fn corrupted_files_never_panic() {
        let bytes = encode(&every_operator_model());
        let mut numbers = Numbers::new(7);
        for _ in 0..3000 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + numbers.next() % 3 {
                let at = numbers.next() as usize % damaged.len();
                damaged[at] ^= 1 << (numbers.next() % 8);
            }
            // Either it decodes into some valid model, or it is refused: never a panic.
            if let Ok(model) = decode(&damaged) {
                model.check().unwrap();
                let input = vec![0i8; model.input_len()];
                let _ = model.evaluate(&input);
            }
        }
    }

    #[test]
    fn version_and_magic_are_checked() {
        let mut bytes = encode(&every_operator_model());
        bytes[8] = 9;
        assert!(
            decode(&bytes)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        bytes[8] = 1;
        let old = decode(&bytes).unwrap_err().to_string();
        assert!(old.contains("sn2 model import"), "{old}");
        bytes[0] = b'X';
        assert!(decode(&bytes).unwrap_err().to_string().contains("magic"));
    }
}
