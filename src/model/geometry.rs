//! The geometry of sliding-window layers (Conv, MaxPool, AveragePool) over CHW tensors:
//! output sizes and which input positions each output reads. The float evaluator, the
//! fixed-point evaluator and the circuit all walk windows through this one definition, so
//! they cannot disagree about padding or strides.

use serde::{Deserialize, Serialize};

/// A 2-D window over a `channels × height × width` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub kernel_height: usize,
    pub kernel_width: usize,
    pub stride_height: usize,
    pub stride_width: usize,
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
}

impl Window {
    /// Checks that the window fits its input and yields at least one output.
    pub fn check(&self) -> Result<(), String> {
        let all = [
            self.channels,
            self.in_height,
            self.in_width,
            self.kernel_height,
            self.kernel_width,
            self.stride_height,
            self.stride_width,
        ];
        if all.contains(&0) {
            return Err(format!("window with a zero size: {self:?}"));
        }
        if all.iter().any(|&v| v > 1 << 16) || self.pads.iter().any(|&p| p > 1 << 16) {
            return Err(format!("window sizes beyond 65536: {self:?}"));
        }
        if self.pads[0].max(self.pads[2]) >= self.kernel_height
            || self.pads[1].max(self.pads[3]) >= self.kernel_width
        {
            return Err("padding as large as the kernel".into());
        }
        if self.in_height + self.pads[0] + self.pads[2] < self.kernel_height
            || self.in_width + self.pads[1] + self.pads[3] < self.kernel_width
        {
            return Err("kernel larger than the padded input".into());
        }
        Ok(())
    }

    pub fn out_height(&self) -> usize {
        (self.in_height + self.pads[0] + self.pads[2] - self.kernel_height) / self.stride_height + 1
    }

    pub fn out_width(&self) -> usize {
        (self.in_width + self.pads[1] + self.pads[3] - self.kernel_width) / self.stride_width + 1
    }

    pub fn in_len(&self) -> usize {
        self.channels * self.in_height * self.in_width
    }

    pub fn area(&self) -> usize {
        self.kernel_height * self.kernel_width
    }

    /// For output position (`oy`, `ox`), calls `visit(ky, kx, iy, ix)` for each kernel
    /// position that falls inside the input (padding contributes nothing).
    pub fn for_each_tap(
        &self,
        oy: usize,
        ox: usize,
        mut visit: impl FnMut(usize, usize, usize, usize),
    ) {
        for ky in 0..self.kernel_height {
            let Some(iy) = (oy * self.stride_height + ky).checked_sub(self.pads[0]) else {
                continue;
            };
            if iy >= self.in_height {
                continue;
            }
            for kx in 0..self.kernel_width {
                let Some(ix) = (ox * self.stride_width + kx).checked_sub(self.pads[1]) else {
                    continue;
                };
                if ix >= self.in_width {
                    continue;
                }
                visit(ky, kx, iy, ix);
            }
        }
    }
}

/// A 2-D convolution: a window over the input channels, `out_channels` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv {
    pub window: Window,
    pub out_channels: usize,
}

impl Conv {
    pub fn out_len(&self) -> usize {
        self.out_channels * self.window.out_height() * self.window.out_width()
    }

    pub fn weights_len(&self) -> usize {
        self.out_channels * self.window.channels * self.window.area()
    }

    /// Calls `visit(output_index, out_channel, taps)` for each output, where `taps` lists
    /// `(weight_index, input_index)` pairs of that output's dot product.
    pub fn for_each_output(&self, mut visit: impl FnMut(usize, usize, &[(usize, usize)])) {
        let w = &self.window;
        let (out_h, out_w) = (w.out_height(), w.out_width());
        let mut taps = Vec::with_capacity(w.channels * w.area());
        for oc in 0..self.out_channels {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    taps.clear();
                    w.for_each_tap(oy, ox, |ky, kx, iy, ix| {
                        for ic in 0..w.channels {
                            let weight = ((oc * w.channels + ic) * w.kernel_height + ky)
                                * w.kernel_width
                                + kx;
                            let input = (ic * w.in_height + iy) * w.in_width + ix;
                            taps.push((weight, input));
                        }
                    });
                    visit((oc * out_h + oy) * out_w + ox, oc, &taps);
                }
            }
        }
    }
}

impl Window {
    pub fn pool_out_len(&self) -> usize {
        self.channels * self.out_height() * self.out_width()
    }

    /// Calls `visit(output_index, inputs)` for each pooling output, where `inputs` are the
    /// input indices inside its window.
    pub fn for_each_pool(&self, mut visit: impl FnMut(usize, &[usize])) {
        let (out_h, out_w) = (self.out_height(), self.out_width());
        let mut inputs = Vec::with_capacity(self.area());
        for c in 0..self.channels {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    inputs.clear();
                    self.for_each_tap(oy, ox, |_, _, iy, ix| {
                        inputs.push((c * self.in_height + iy) * self.in_width + ix);
                    });
                    visit((c * out_h + oy) * out_w + ox, &inputs);
                }
            }
        }
    }
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
        assert_eq!(window(28, 3, 1, 0).out_height(), 26);
        assert_eq!(window(26, 2, 2, 0).out_height(), 13);
        assert_eq!(window(7, 3, 2, 1).out_height(), 4);
        assert_eq!(window(6, 3, 2, 1).out_width(), 3);
    }

    #[test]
    fn padding_taps_are_skipped() {
        let w = window(3, 3, 1, 1);
        let mut taps = Vec::new();
        w.for_each_tap(0, 0, |ky, kx, iy, ix| taps.push((ky, kx, iy, ix)));
        assert_eq!(
            taps,
            vec![(1, 1, 0, 0), (1, 2, 0, 1), (2, 1, 1, 0), (2, 2, 1, 1)]
        );
    }

    #[test]
    fn impossible_windows_are_refused() {
        assert!(window(2, 3, 1, 0).check().is_err());
        assert!(window(4, 3, 0, 0).check().is_err());
        assert!(window(4, 3, 1, 3).check().is_err());
        assert!(window(4, 3, 1, 1).check().is_ok());
    }
}
