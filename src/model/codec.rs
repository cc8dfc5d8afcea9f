//! The canonical model file: the bytes a model id is the hash of.
//!
//! Little-endian, length-prefixed, no optional parts, so one model has exactly one
//! encoding: magic `SN2MODEL`, format version (u16), input shape, input and output scales
//! (f32 bits), then the layers, each a tag byte and its fields. Decoding checks every
//! length against the bytes left before allocating, refuses trailing bytes, and finally
//! checks the model as a whole, so a damaged or hostile file is an error, not a panic.

use sha2::{Digest, Sha256};

use super::ModelError;
use super::geometry::{Conv, Window};
use super::quant::{Activation, Layer, QuantModel};

const MAGIC: &[u8; 8] = b"SN2MODEL";
pub const FORMAT_VERSION: u16 = 1;

const TAG_DENSE: u8 = 1;
const TAG_CONV: u8 = 2;
const TAG_MAX_POOL: u8 = 3;
const TAG_AVG_POOL: u8 = 4;
const TAG_RELU: u8 = 5;

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
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    put_u32(&mut out, model.input_shape.len());
    for &d in &model.input_shape {
        put_u32(&mut out, d);
    }
    out.extend_from_slice(&model.input_scale.to_bits().to_le_bytes());
    out.extend_from_slice(&model.output_scale.to_bits().to_le_bytes());
    put_u32(&mut out, model.layers.len());
    for layer in &model.layers {
        match layer {
            Layer::Dense {
                inputs,
                outputs,
                weights,
                bias,
                activation,
            } => {
                out.push(TAG_DENSE);
                put_u32(&mut out, *inputs);
                put_u32(&mut out, *outputs);
                put_linear(&mut out, weights, bias, *activation);
            }
            Layer::Conv {
                conv,
                weights,
                bias,
                activation,
            } => {
                out.push(TAG_CONV);
                put_window(&mut out, &conv.window);
                put_u32(&mut out, conv.out_channels);
                put_linear(&mut out, weights, bias, *activation);
            }
            Layer::MaxPool(window) => {
                out.push(TAG_MAX_POOL);
                put_window(&mut out, window);
            }
            Layer::AvgPool(window) => {
                out.push(TAG_AVG_POOL);
                put_window(&mut out, window);
            }
            Layer::Relu => out.push(TAG_RELU),
        }
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<QuantModel, ModelError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err(ModelError::Format(
            "not an sn2 model file (bad magic)".into(),
        ));
    }
    let version = u16::from_le_bytes(reader.array()?);
    if version != FORMAT_VERSION {
        return Err(ModelError::Format(format!(
            "model format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let rank = reader.u32()?;
    if rank == 0 || rank > 8 {
        return Err(ModelError::Format(format!("input rank {rank}")));
    }
    let input_shape = (0..rank)
        .map(|_| reader.u32())
        .collect::<Result<Vec<_>, _>>()?;
    let input_scale = f32::from_bits(u32::from_le_bytes(reader.array()?));
    let output_scale = f32::from_bits(u32::from_le_bytes(reader.array()?));
    let count = reader.u32()?;
    let mut layers = Vec::new();
    for _ in 0..count {
        let layer = match reader.u8()? {
            TAG_DENSE => {
                let inputs = reader.u32()?;
                let outputs = reader.u32()?;
                let (weights, bias, activation) =
                    reader.linear(inputs.checked_mul(outputs), outputs)?;
                Layer::Dense {
                    inputs,
                    outputs,
                    weights,
                    bias,
                    activation,
                }
            }
            TAG_CONV => {
                let window = reader.window()?;
                let out_channels = reader.u32()?;
                let weights_len = out_channels
                    .checked_mul(window.channels)
                    .and_then(|n| n.checked_mul(window.kernel_height))
                    .and_then(|n| n.checked_mul(window.kernel_width));
                let (weights, bias, activation) = reader.linear(weights_len, out_channels)?;
                Layer::Conv {
                    conv: Conv {
                        window,
                        out_channels,
                    },
                    weights,
                    bias,
                    activation,
                }
            }
            TAG_MAX_POOL => Layer::MaxPool(reader.window()?),
            TAG_AVG_POOL => Layer::AvgPool(reader.window()?),
            TAG_RELU => Layer::Relu,
            tag => return Err(ModelError::Format(format!("unknown layer tag {tag}"))),
        };
        layers.push(layer);
    }
    if reader.at != bytes.len() {
        return Err(ModelError::Format(format!(
            "{} bytes after the end of the model",
            bytes.len() - reader.at
        )));
    }
    let model = QuantModel {
        input_shape,
        input_scale,
        layers,
        output_scale,
    };
    model.check()?;
    Ok(model)
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).expect("model sizes fit in u32 (checked on build)");
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_window(out: &mut Vec<u8>, w: &Window) {
    for value in [
        w.channels,
        w.in_height,
        w.in_width,
        w.kernel_height,
        w.kernel_width,
        w.stride_height,
        w.stride_width,
    ]
    .into_iter()
    .chain(w.pads)
    {
        put_u32(out, value);
    }
}

fn put_linear(out: &mut Vec<u8>, weights: &[i8], bias: &[i32], activation: Activation) {
    out.extend(weights.iter().map(|&w| w as u8));
    for &b in bias {
        out.extend_from_slice(&b.to_le_bytes());
    }
    match activation {
        Activation::Accumulator => out.extend_from_slice(&[0, 0, 0]),
        Activation::Requantize { shift, relu } => out.extend_from_slice(&[1, shift, relu as u8]),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
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

    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, ModelError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn window(&mut self) -> Result<Window, ModelError> {
        let mut values = [0usize; 11];
        for value in &mut values {
            *value = self.u32()?;
        }
        let [
            channels,
            in_height,
            in_width,
            kernel_height,
            kernel_width,
            stride_height,
            stride_width,
            top,
            left,
            bottom,
            right,
        ] = values;
        let window = Window {
            channels,
            in_height,
            in_width,
            kernel_height,
            kernel_width,
            stride_height,
            stride_width,
            pads: [top, left, bottom, right],
        };
        window.check().map_err(ModelError::Format)?;
        Ok(window)
    }

    fn linear(
        &mut self,
        weights_len: Option<usize>,
        outputs: usize,
    ) -> Result<(Vec<i8>, Vec<i32>, Activation), ModelError> {
        let weights_len =
            weights_len.ok_or_else(|| ModelError::Format("layer size overflows".into()))?;
        let weights = self.take(weights_len)?.iter().map(|&b| b as i8).collect();
        let bias_bytes = self.take(
            outputs
                .checked_mul(4)
                .ok_or_else(|| ModelError::Format("layer size overflows".into()))?,
        )?;
        let bias = bias_bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let activation = match self.array::<3>()? {
            [0, 0, 0] => Activation::Accumulator,
            [1, shift, relu @ (0 | 1)] => Activation::Requantize {
                shift,
                relu: relu == 1,
            },
            other => {
                return Err(ModelError::Format(format!(
                    "bad activation bytes {other:?}"
                )));
            }
        };
        Ok((weights, bias, activation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{Numbers, every_layer_model};

    #[test]
    fn round_trips_and_ids_are_stable() {
        let model = every_layer_model();
        let bytes = encode(&model);
        assert_eq!(decode(&bytes).unwrap(), model);
        assert_eq!(
            ModelId::of(&bytes),
            ModelId::of(&encode(&decode(&bytes).unwrap()))
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&every_layer_model());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(ModelError::Format(_))));
    }

    #[test]
    fn corrupted_files_never_panic() {
        let bytes = encode(&every_layer_model());
        let mut numbers = Numbers::new(7);
        for _ in 0..2000 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + numbers.next() % 3 {
                let at = numbers.next() as usize % damaged.len();
                damaged[at] ^= 1 << (numbers.next() % 8);
            }
            // Either it decodes into some valid model, or it is refused: never a panic.
            if let Ok(model) = decode(&damaged) {
                model.check().unwrap();
            }
        }
    }

    #[test]
    fn version_and_magic_are_checked() {
        let mut bytes = encode(&every_layer_model());
        bytes[8] = 9;
        assert!(
            decode(&bytes)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        bytes[0] = b'X';
        assert!(decode(&bytes).unwrap_err().to_string().contains("magic"));
    }
}
