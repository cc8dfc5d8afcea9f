//! Shapes and constant tensors: element counts with overflow checks, row-major strides,
//! numpy broadcasting, axis normalisation. Data is always flat and row-major; shapes
//! include the batch dimension as ONNX writes it.

/// Largest tensor accepted, in elements: far beyond what a proof can cover, and small
/// enough that a hostile file cannot make the importer allocate without bound.
pub const MAX_ELEMENTS: usize = 1 << 24;
/// Largest number of values a model's tensors hold together. Rescaled, that many values
/// cost about a hundred million constraints, far past what a proof covers; and it bounds
/// what importing, calibrating and evaluating a hostile file may cost (a 215-byte Pad
/// that asked for 16 million values kept the importer busy for a minute).
pub const MAX_MODEL_ELEMENTS: usize = 1 << 22;
/// Largest rank accepted.
pub const MAX_RANK: usize = 8;

/// The number of elements of `shape`, refusing overflow and tensors beyond
/// [`MAX_ELEMENTS`].
pub fn count(shape: &[usize]) -> Result<usize, String> {
    if shape.len() > MAX_RANK {
        return Err(format!("rank {} is beyond {MAX_RANK}", shape.len()));
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            format!("a tensor of shape {shape:?} is larger than {MAX_ELEMENTS} elements")
        })
}

/// Adds `len` values to a model's running total, refusing totals past
/// [`MAX_MODEL_ELEMENTS`].
pub fn add_to_total(total: &mut usize, len: usize) -> Result<(), String> {
    *total = total.saturating_add(len);
    if *total > MAX_MODEL_ELEMENTS {
        return Err(format!(
            "the model's tensors hold more than {MAX_MODEL_ELEMENTS} values in all; \
             sn2 proves models up to that size"
        ));
    }
    Ok(())
}

/// The element count of a shape already checked by [`count`].
pub fn len(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// An ONNX axis (negative counts from the end) as an index below `rank`.
pub fn axis(axis: i64, rank: usize) -> Result<usize, String> {
    let resolved = if axis < 0 { axis + rank as i64 } else { axis };
    if (0..rank as i64).contains(&resolved) {
        Ok(resolved as usize)
    } else {
        Err(format!("axis {axis} is outside a tensor of rank {rank}"))
    }
}

/// The numpy broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        let missing = rank - s.len();
        if i < missing { 1 } else { s[i - missing] }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// For each element of `to` (which `from` broadcasts to), the index of its source in
/// `from`.
pub fn broadcast_sources(from: &[usize], to: &[usize]) -> Vec<usize> {
    let rank = to.len();
    let missing = rank - from.len();
    let from_strides = strides(from);
    let mut sources = vec![0usize; len(to)];
    let to_strides = strides(to);
    for (i, source) in sources.iter_mut().enumerate() {
        let mut at = 0;
        for axis in missing..rank {
            let coordinate = (i / to_strides[axis]) % to[axis];
            if from[axis - missing] != 1 {
                at += coordinate * from_strides[axis - missing];
            }
        }
        *source = at;
    }
    sources
}

/// A constant tensor (initializer, Constant node, or folded), values widened to f64: exact
/// for f32 and for the integers of shapes and indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub dims: Vec<usize>,
    pub values: Vec<f64>,
}

impl Constant {
    pub fn scalar(value: f64) -> Self {
        Self {
            dims: Vec::new(),
            values: vec![value],
        }
    }

    pub fn vector(values: Vec<f64>) -> Self {
        Self {
            dims: vec![values.len()],
            values,
        }
    }

    /// The values as integers (shapes, axes, indices), refusing fractions.
    pub fn integers(&self) -> Result<Vec<i64>, String> {
        self.values
            .iter()
            .map(|&v| {
                if v.fract() == 0.0 && v.abs() <= 9.3e18 {
                    Ok(v as i64)
                } else {
                    Err(format!("{v} is not an integer"))
                }
            })
            .collect()
    }

    /// The values broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Vec<f64>, String> {
        if broadcast(&self.dims, shape)? != shape {
            return Err(format!(
                "a constant of shape {:?} does not broadcast to {shape:?}",
                self.dims
            ));
        }
        Ok(broadcast_sources(&self.dims, shape)
            .into_iter()
            .map(|i| self.values[i])
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[2, 3, 4], &[4]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast(&[2, 1, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert!(broadcast(&[2, 3], &[4]).is_err());
        // [1, 3] to [2, 3]: each row repeats the same three values.
        assert_eq!(broadcast_sources(&[1, 3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_sources(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_sources(&[], &[2]), vec![0, 0]);
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(count(&[2, 3, 4]).unwrap(), 24);
        assert!(count(&[1 << 20, 1 << 20, 1 << 30]).is_err());
        assert!(count(&[usize::MAX, 2]).is_err());
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(axis(-1, 3).unwrap(), 2);
        assert!(axis(3, 3).is_err());
    }
}
