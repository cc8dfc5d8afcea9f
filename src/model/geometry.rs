//! The geometry of sliding windows (Conv, MaxPool, AveragePool) over `N×C×H×W` tensors,
//! 1-D ones as `H = 1`: output sizes (floor or ceil mode), strides, dilations, padding,
//! and which input positions each output reads. The float evaluator, the fixed-point
//! evaluator and the circuit all walk windows through this one definition, so they cannot
//! disagree about padding or strides.

use serde::{Deserialize, Serialize};

/// Largest window dimension or padding accepted.
const MAX_DIMENSION: usize = 1 << 16;

/// A 2-D window over `batch × channels × height × width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub batch: usize,
    pub channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Padding: top, left, bottom, right (ONNX's order: the begins, then the ends).
    pub pads: [usize; 4],
    /// Output sizes rounded up, as ONNX's `ceil_mode`.
    pub ceil: bool,
    /// Whether the tensor has one spatial axis (`N×C×W`, kept with `H = 1`).
    pub one_dimensional: bool,
}

impl Window {
    /// Whether neighbouring windows share input elements.
    pub fn overlaps(&self) -> bool {
        (0..2).any(|i| (self.kernel[i] - 1) * self.dilations[i] + 1 > self.strides[i])
    }

    /// Checks that the window fits its input and yields at least one output.
    pub fn check(&self) -> Result<(), String> {
        let sizes = [
            self.batch,
            self.channels,
            self.input[0],
            self.input[1],
            self.kernel[0],
            self.kernel[1],
            self.strides[0],
            self.strides[1],
            self.dilations[0],
            self.dilations[1],
        ];
        if sizes.contains(&0) {
            return Err(format!("a window with a zero size: {self:?}"));
        }
        if sizes.iter().chain(&self.pads).any(|&v| v > MAX_DIMENSION) {
            return Err(format!("window sizes beyond {MAX_DIMENSION}: {self:?}"));
        }
        for axis in 0..2 {
            if self.pads[axis] >= self.extent(axis) || self.pads[axis + 2] >= self.extent(axis) {
                return Err("padding as large as the window".into());
            }
            if self.input[axis] + self.pads[axis] + self.pads[axis + 2] < self.extent(axis) {
                return Err("a window larger than the padded input".into());
            }
        }
        Ok(())
    }

    /// The span of the kernel on `axis`, dilation included.
    fn extent(&self, axis: usize) -> usize {
        self.dilations[axis] * (self.kernel[axis] - 1) + 1
    }

    /// The output size on `axis` (0: height, 1: width).
    pub fn output(&self, axis: usize) -> usize {
        let padded = self.input[axis] + self.pads[axis] + self.pads[axis + 2];
        let room = padded - self.extent(axis);
        let stride = self.strides[axis];
        if !self.ceil {
            return room / stride + 1;
        }
        let mut out = room.div_ceil(stride) + 1;
        // The last window must start inside the input or its leading padding.
        if (out - 1) * stride >= self.input[axis] + self.pads[axis] {
            out -= 1;
        }
        out
    }

    pub fn output_plane(&self) -> usize {
        self.output(0).saturating_mul(self.output(1))
    }

    pub fn input_len(&self) -> usize {
        self.batch
            .saturating_mul(self.channels)
            .saturating_mul(self.input[0])
            .saturating_mul(self.input[1])
    }

    /// The ONNX shape of a tensor of `channels` over this window's output positions.
    pub fn output_shape(&self, channels: usize) -> Vec<usize> {
        if self.one_dimensional {
            vec![self.batch, channels, self.output(1)]
        } else {
            vec![self.batch, channels, self.output(0), self.output(1)]
        }
    }

    /// For output position (`oy`, `ox`), calls `visit(ky, kx, iy, ix)` for each kernel
    /// position inside the input, and returns how many positions fell in the declared
    /// padding (what `count_include_pad` counts; positions beyond it, which ceil mode can
    /// reach, count for nothing).
    pub fn for_each_tap(
        &self,
        oy: usize,
        ox: usize,
        mut visit: impl FnMut(usize, usize, usize, usize),
    ) -> usize {
        let mut padding = 0;
        let placed = |axis: usize, out: usize, k: usize| -> (Option<usize>, bool) {
            let at = out * self.strides[axis] + k * self.dilations[axis];
            let inside_padding = at < self.input[axis] + self.pads[axis] + self.pads[axis + 2];
            match at.checked_sub(self.pads[axis]) {
                Some(i) if i < self.input[axis] => (Some(i), true),
                _ => (None, inside_padding),
            }
        };
        for ky in 0..self.kernel[0] {
            let (iy, y_counted) = placed(0, oy, ky);
            for kx in 0..self.kernel[1] {
                let (ix, x_counted) = placed(1, ox, kx);
                match (iy, ix) {
                    (Some(iy), Some(ix)) => visit(ky, kx, iy, ix),
                    _ if y_counted && x_counted => padding += 1,
                    _ => {}
                }
            }
        }
        padding
    }

    /// Calls `visit(output_index, inputs, padding)` for each pooling output of every batch
    /// and channel, where `inputs` are the flat input indices inside its window and
    /// `padding` the padded positions it covers.
    pub fn for_each_pool(&self, mut visit: impl FnMut(usize, &[usize], usize)) {
        let (out_h, out_w) = (self.output(0), self.output(1));
        let (in_h, in_w) = (self.input[0], self.input[1]);
        let mut inputs = Vec::with_capacity(self.kernel[0] * self.kernel[1]);
        for plane in 0..self.batch * self.channels {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    inputs.clear();
                    let padding = self.for_each_tap(oy, ox, |_, _, iy, ix| {
                        inputs.push((plane * in_h + iy) * in_w + ix);
                    });
                    visit((plane * out_h + oy) * out_w + ox, &inputs, padding);
                }
            }
        }
    }
}

/// A 2-D convolution: a window over the input channels, `out_channels` filters in
/// `groups` groups, weights `[out_channels][channels / groups][kh][kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv {
    pub window: Window,
    pub out_channels: usize,
    pub groups: usize,
}

impl Conv {
    pub fn check(&self) -> Result<(), String> {
        self.window.check()?;
        let c = self.window.channels;
        if self.groups == 0
            || self.out_channels == 0
            || self.out_channels > MAX_DIMENSION
            || !c.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return Err(format!(
                "{} input and {} output channels do not split into {} groups",
                c, self.out_channels, self.groups
            ));
        }
        Ok(())
    }

    pub fn output_len(&self) -> usize {
        self.window
            .batch
            .saturating_mul(self.out_channels)
            .saturating_mul(self.window.output_plane())
    }

    /// The weights the convolution holds (saturating: a hostile size cannot overflow).
    pub fn weights_len(&self) -> usize {
        self.out_channels
            .saturating_mul(self.window.channels / self.groups.max(1))
            .saturating_mul(self.window.kernel[0])
            .saturating_mul(self.window.kernel[1])
    }

    pub fn output_shape(&self) -> Vec<usize> {
        self.window.output_shape(self.out_channels)
    }

    /// Calls `visit(output_index, out_channel, taps)` for each output, where `taps` lists
    /// `(weight_index, input_index)` pairs of that output's dot product.
    pub fn for_each_output(&self, mut visit: impl FnMut(usize, usize, &[(usize, usize)])) {
        let w = &self.window;
        let (out_h, out_w) = (w.output(0), w.output(1));
        let (in_h, in_w) = (w.input[0], w.input[1]);
        let group_in = w.channels / self.groups;
        let group_out = self.out_channels / self.groups;
        let (kh, kw) = (w.kernel[0], w.kernel[1]);
        let mut taps = Vec::with_capacity(group_in * kh * kw);
        for n in 0..w.batch {
            for oc in 0..self.out_channels {
                let first_in = (oc / group_out) * group_in;
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        taps.clear();
                        w.for_each_tap(oy, ox, |ky, kx, iy, ix| {
                            for ic in 0..group_in {
                                let weight = ((oc * group_in + ic) * kh + ky) * kw + kx;
                                let channel = n * w.channels + first_in + ic;
                                taps.push((weight, (channel * in_h + iy) * in_w + ix));
                            }
                        });
                        let out = ((n * self.out_channels + oc) * out_h + oy) * out_w + ox;
                        visit(out, oc, &taps);
                    }
                }
            }
        }
    }
}

/// The window of a Conv or pooling node from its attributes (`auto_pad`, `dilations`,
/// `pads`, `strides`, `ceil_mode`) over an input of shape `N×C×H×W` or `N×C×W`, with the
/// spatial kernel size `kernel` (one or two values).
pub(crate) fn onnx_window(
    n: &crate::model::onnx::OnnxNode,
    input: &[usize],
    kernel: &[usize],
) -> Result<Window, crate::model::ModelError> {
    let (one_dimensional, batch, channels, spatial) = match input {
        [batch, channels, w] => (true, *batch, *channels, [1, *w]),
        [batch, channels, h, w] => (false, *batch, *channels, [*h, *w]),
        _ => {
            return Err(n.invalid(format!(
                "an input of shape {input:?}; N×C×H×W or N×C×W expected (1-D and 2-D windows only)"
            )));
        }
    };
    let rank = if one_dimensional { 1 } else { 2 };
    let pair = |name: &str, default: usize| -> Result<[usize; 2], crate::model::ModelError> {
        let values = match n.ints(name) {
            Some(v) => v,
            None => vec![default as i64; rank],
        };
        if values.len() != rank {
            return Err(n.invalid(format!(
                "{name} has {} values for {rank} axes",
                values.len()
            )));
        }
        let values: Vec<usize> = values
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| n.invalid(format!("a negative {name}"))))
            .collect::<Result<_, _>>()?;
        Ok(if one_dimensional {
            [1, values[0]]
        } else {
            [values[0], values[1]]
        })
    };
    if kernel.len() != rank {
        return Err(n.invalid(format!("a kernel of {} axes for {rank}", kernel.len())));
    }
    let kernel = if one_dimensional {
        [1, kernel[0]]
    } else {
        [kernel[0], kernel[1]]
    };
    let strides = pair("strides", 1)?;
    let dilations = pair("dilations", 1)?;
    let ceil = n.int("ceil_mode", 0) != 0;
    let pads = match n.string("auto_pad").as_deref() {
        None | Some("NOTSET") => {
            let values = n.ints("pads").unwrap_or_else(|| vec![0; 2 * rank]);
            if values.len() != 2 * rank {
                return Err(n.invalid(format!("{} pads for {rank} axes", values.len())));
            }
            let values: Vec<usize> = values
                .iter()
                .map(|&v| usize::try_from(v).map_err(|_| n.invalid("negative pads")))
                .collect::<Result<_, _>>()?;
            if one_dimensional {
                [0, values[0], 0, values[1]]
            } else {
                [values[0], values[1], values[2], values[3]]
            }
        }
        Some("VALID") => [0; 4],
        Some(mode @ ("SAME_UPPER" | "SAME_LOWER")) => {
            let mut pads = [0; 4];
            for axis in 0..2 {
                let out = spatial[axis].div_ceil(strides[axis].max(1));
                let extent = dilations[axis]
                    .saturating_mul(kernel[axis].saturating_sub(1))
                    .saturating_add(1);
                let total = out
                    .saturating_sub(1)
                    .saturating_mul(strides[axis])
                    .saturating_add(extent)
                    .saturating_sub(spatial[axis]);
                let small = total / 2;
                let (begin, end) = if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[axis] = begin;
                pads[axis + 2] = end;
            }
            pads
        }
        Some(other) => return Err(n.invalid(format!("auto_pad {other}"))),
    };
    let window = Window {
        batch,
        channels,
        input: spatial,
        kernel,
        strides,
        dilations,
        pads,
        ceil,
        one_dimensional,
    };
    window.check().map_err(|e| n.invalid(e))?;
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-channel square window.
    fn window(size: usize, kernel: usize, stride: usize, pad: usize) -> Window {
        crate::model::testing::window(1, size, kernel, stride, pad)
    }

    #[test]
    fn output_sizes_follow_onnx() {
        assert_eq!(window(28, 3, 1, 0).output(0), 26);
        assert_eq!(window(26, 2, 2, 0).output(0), 13);
        assert_eq!(window(7, 3, 2, 1).output(0), 4);
        assert_eq!(window(6, 3, 2, 1).output(1), 3);
        let ceil = Window {
            ceil: true,
            ..window(5, 2, 2, 0)
        };
        assert_eq!(ceil.output(0), 3);
        let dilated = Window {
            dilations: [2, 2],
            ..window(7, 3, 1, 0)
        };
        assert_eq!(dilated.output(0), 3);
    }

    #[test]
    fn padding_taps_are_skipped_and_counted() {
        let w = window(3, 3, 1, 1);
        let mut taps = Vec::new();
        let padding = w.for_each_tap(0, 0, |ky, kx, iy, ix| taps.push((ky, kx, iy, ix)));
        assert_eq!(
            taps,
            vec![(1, 1, 0, 0), (1, 2, 0, 1), (2, 1, 1, 0), (2, 2, 1, 1)]
        );
        assert_eq!(padding, 5);
        // Ceil mode reaches past the padding: those positions count for nothing.
        let ceil = Window {
            ceil: true,
            ..window(5, 2, 2, 0)
        };
        let mut seen = 0;
        assert_eq!(ceil.for_each_tap(2, 2, |_, _, _, _| seen += 1), 0);
        assert_eq!(seen, 1);
    }

    #[test]
    fn impossible_windows_are_refused() {
        assert!(window(2, 3, 1, 0).check().is_err());
        assert!(window(4, 3, 0, 0).check().is_err());
        assert!(window(4, 3, 1, 3).check().is_err());
        assert!(window(4, 3, 1, 1).check().is_ok());
    }

    #[test]
    fn grouped_convolutions_read_their_own_channels() {
        let conv = Conv {
            window: Window {
                channels: 4,
                ..window(1, 1, 1, 0)
            },
            out_channels: 2,
            groups: 2,
        };
        conv.check().unwrap();
        let mut seen = Vec::new();
        conv.for_each_output(|out, oc, taps| seen.push((out, oc, taps.to_vec())));
        assert_eq!(
            seen,
            vec![(0, 0, vec![(0, 0), (1, 1)]), (1, 1, vec![(2, 2), (3, 3)])]
        );
    }
}
