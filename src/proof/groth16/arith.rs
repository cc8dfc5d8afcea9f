//! Field arithmetic the prover's hot loops force inline.
//!
//! ark-ff's multiplication is always-inline at its core (`MontConfig::mul_assign`) but
//! is reached through a wrapper (`MontBackend::mul_assign`) that is only a hint, and the
//! compiler declines the hint: every product in a batch of affine additions became a
//! call, with its result stored to memory and read back (a store the load cannot be
//! forwarded from). Calling the core directly keeps the operands in registers; the
//! quotient's sum ran about a tenth faster for it. The quotient's FFTs (`fft`) use the
//! same calls. Extension fields (B's coordinates in
//! G2) keep ark-ff's operators, whose own products then inline the same way.

use ark_ff::{Field, Fp, MontBackend, MontConfig, QuadExtConfig, QuadExtField};

/// `*=`, squaring, `+=` and `-=`, inlined where the field allows it.
pub(super) trait InlineArith: Field {
    fn mul_inline(&mut self, other: &Self);
    fn square_inline(&mut self);
    fn add_inline(&mut self, other: &Self);
    fn sub_inline(&mut self, other: &Self);
}

/// The 256-bit Montgomery fields: BN254's base field (G1's coordinates) and scalar field.
impl<C: MontConfig<4>> InlineArith for Fp<MontBackend<C, 4>, 4> {
    #[inline(always)]
    fn mul_inline(&mut self, other: &Self) {
        C::mul_assign(self, other)
    }

    #[inline(always)]
    fn square_inline(&mut self) {
        C::square_in_place(self)
    }

    #[inline(always)]
    fn add_inline(&mut self, other: &Self) {
        C::add_assign(self, other)
    }

    #[inline(always)]
    fn sub_inline(&mut self, other: &Self) {
        C::sub_assign(self, other)
    }
}

/// Quadratic extensions (G2's coordinates).
impl<C: QuadExtConfig> InlineArith for QuadExtField<C> {
    #[inline(always)]
    fn mul_inline(&mut self, other: &Self) {
        *self *= other
    }

    #[inline(always)]
    fn square_inline(&mut self) {
        self.square_in_place();
    }

    #[inline(always)]
    fn add_inline(&mut self, other: &Self) {
        *self += other
    }

    #[inline(always)]
    fn sub_inline(&mut self, other: &Self) {
        *self -= other
    }
}

#[cfg(test)]
mod tests {
    use ark_bn254::{Fq, Fq2, Fr};
    use ark_ff::UniformRand;
    use rand_core::OsRng;

    use super::*;

    fn agrees_with_ark<F: InlineArith + UniformRand>() {
        let edges = [F::zero(), F::one(), -F::one()];
        let randoms: Vec<F> = (0..64).map(|_| F::rand(&mut OsRng)).collect();
        let values: Vec<F> = edges.iter().copied().chain(randoms).collect();
        for a in &values {
            let mut square = *a;
            square.square_inline();
            assert_eq!(square, a.square());
            for b in values.iter().take(8) {
                let (mut product, mut sum, mut difference) = (*a, *a, *a);
                product.mul_inline(b);
                sum.add_inline(b);
                difference.sub_inline(b);
                assert_eq!(product, *a * b);
                assert_eq!(sum, *a + b);
                assert_eq!(difference, *a - b);
            }
        }
    }

    #[test]
    fn equals_ark_ff_in_every_field_the_prover_uses() {
        agrees_with_ark::<Fq>();
        agrees_with_ark::<Fr>();
        agrees_with_ark::<Fq2>();
    }
}
