//! The proving key's payload in a key file: every coordinate as the prover holds it in
//! memory (Montgomery form, four little-endian 64-bit limbs), so reading a 40 MB key is a
//! copy rather than a field multiplication per coordinate. It is read as a stream, a
//! chunk at a time, so that a one-shot `sn2 prove` never holds the file's bytes beside
//! the points they become.
//!
//! Nothing here checks that a point is on its curve: a proving key comes from this node's
//! own setup or by hash from its validator, and a wrong point only costs its holder a proof
//! the verifier refuses. What is checked is the shape: every length, every limb below the
//! modulus (so arithmetic never meets an unreduced value), and no byte left over.
//!
//! Keys written before this format (arkworks' uncompressed serialisation, which converts
//! every coordinate on reading) are still read, the slow way: they lack [`MAGIC`].
//!
//! The layout: [`MAGIC`], the verifying key (α in G1; β, γ, δ in G2; the input points as a vector),
//! β and δ in G1, then the vectors A, B in G1, B in G2, H and L. A vector is its length as
//! a little-endian u64, then its points; a point is x then y, each coordinate's limbs
//! c0 before c1 in G2; the point at infinity is (0, 0), which is not on either curve. H
//! holds n − 1 points for a domain of n (sn2's own keys) or n (keys from a snarkjs
//! ceremony, in another basis: see [`super::prover`]).

use std::io::Read;

use ark_bn254::{Bn254, Fq, Fq2, G1Affine, G2Affine};
use ark_ff::{BigInt, PrimeField};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_serialize::{CanonicalDeserialize, Compress};

use crate::proof::ProofError;

/// Marks this format. An arkworks key starts with α's x coordinate, whose low 64 bits
/// match it with probability 2^-64.
const MAGIC: &[u8; 8] = b"sn2-mont";
const FQ_BYTES: usize = 32;
const G1_BYTES: usize = 2 * FQ_BYTES;
const G2_BYTES: usize = 4 * FQ_BYTES;
/// Points read from the stream at a time.
const CHUNK_POINTS: usize = 4096;

/// The payload of `key`.
pub fn write(key: &ProvingKey<Bn254>) -> Vec<u8> {
    let points_g1 = 3
        + key.vk.gamma_abc_g1.len()
        + key.a_query.len()
        + key.b_g1_query.len()
        + key.h_query.len()
        + key.l_query.len();
    let points_g2 = 3 + key.b_g2_query.len();
    let mut out =
        Vec::with_capacity(MAGIC.len() + points_g1 * G1_BYTES + points_g2 * G2_BYTES + 6 * 8);
    out.extend_from_slice(MAGIC);
    let vk = &key.vk;
    put_g1(&mut out, &vk.alpha_g1);
    for point in [&vk.beta_g2, &vk.gamma_g2, &vk.delta_g2] {
        put_g2(&mut out, point);
    }
    put_vec(&mut out, &vk.gamma_abc_g1, put_g1);
    put_g1(&mut out, &key.beta_g1);
    put_g1(&mut out, &key.delta_g1);
    put_vec(&mut out, &key.a_query, put_g1);
    put_vec(&mut out, &key.b_g1_query, put_g1);
    put_vec(&mut out, &key.b_g2_query, put_g2);
    put_vec(&mut out, &key.h_query, put_g1);
    put_vec(&mut out, &key.l_query, put_g1);
    out
}

/// Whether `bytes` are in this format rather than arkworks' older one.
pub fn is_current(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The proving key in `bytes`, which must be all of them.
pub fn read(bytes: &[u8]) -> Result<ProvingKey<Bn254>, ProofError> {
    read_stream(&mut &bytes[..], bytes.len() as u64)
}

/// The proving key from `source`, which holds `len` bytes of it: the length is what
/// vectors' claims are checked against before anything is allocated. A key in this format
/// is read a chunk at a time; an older one (arkworks' format, without [`MAGIC`]) whole.
pub fn read_stream(source: &mut dyn Read, len: u64) -> Result<ProvingKey<Bn254>, ProofError> {
    let mut magic = Vec::with_capacity(MAGIC.len());
    crate::proof::read_key_bytes(source, len.min(MAGIC.len() as u64), &mut magic)?;
    let rest = len - magic.len() as u64;
    if !is_current(&magic) {
        let mut bytes = magic;
        crate::proof::read_key_bytes(source, rest, &mut bytes)?;
        let key = super::whole_key(&bytes, |bytes| {
            ProvingKey::<Bn254>::deserialize_uncompressed_unchecked(bytes)
        })?;
        if !super::encodes_to(&key, &bytes, Compress::No) {
            return Err(ProofError::MalformedKey(super::NOT_CANONICAL.into()));
        }
        return Ok(key);
    }
    let mut reader = Reader {
        source,
        rest,
        chunk: Vec::new(),
    };
    let alpha_g1 = reader.g1("α")?;
    let beta_g2 = reader.g2("β")?;
    let gamma_g2 = reader.g2("γ")?;
    let delta_g2 = reader.g2("δ")?;
    let gamma_abc_g1 = reader.vec("the public inputs' points", G1_BYTES, g1)?;
    let vk = VerifyingKey {
        alpha_g1,
        beta_g2,
        gamma_g2,
        delta_g2,
        gamma_abc_g1,
    };
    let beta_g1 = reader.g1("β")?;
    let delta_g1 = reader.g1("δ")?;
    let a_query = reader.vec("A", G1_BYTES, g1)?;
    let b_g1_query = reader.vec("B in G1", G1_BYTES, g1)?;
    let b_g2_query = reader.vec("B in G2", G2_BYTES, g2)?;
    let h_query = reader.vec("H", G1_BYTES, g1)?;
    let l_query = reader.vec("L", G1_BYTES, g1)?;
    if reader.rest > 0 {
        return Err(super::bytes_after_key(reader.rest as usize));
    }
    Ok(ProvingKey {
        vk,
        beta_g1,
        delta_g1,
        a_query,
        b_g1_query,
        b_g2_query,
        h_query,
        l_query,
    })
}

fn put_fq(out: &mut Vec<u8>, value: &Fq) {
    for limb in value.0.0 {
        out.extend_from_slice(&limb.to_le_bytes());
    }
}

fn put_g1(out: &mut Vec<u8>, point: &G1Affine) {
    put_fq(out, &point.x);
    put_fq(out, &point.y);
}

fn put_g2(out: &mut Vec<u8>, point: &G2Affine) {
    for coordinate in [&point.x, &point.y] {
        put_fq(out, &coordinate.c0);
        put_fq(out, &coordinate.c1);
    }
}

fn put_vec<T>(out: &mut Vec<u8>, points: &[T], put: fn(&mut Vec<u8>, &T)) {
    out.extend_from_slice(&(points.len() as u64).to_le_bytes());
    for point in points {
        put(out, point);
    }
}

/// At most how many witness variables and rows the circuit of a key of `len` bytes has:
/// each variable has a point in A, B in G1, B in G2 and (a witness) L, 320 bytes; each row a
/// point in H, 64. Bounds good enough to reserve memory before the key is read: reserved
/// and never written, the rest costs address space, not memory.
pub fn circuit_bounds(len: u64) -> (usize, usize) {
    let per_variable = 2 * G1_BYTES + G2_BYTES + G1_BYTES;
    let bound = |bytes: usize| usize::try_from(len / bytes as u64).unwrap_or(usize::MAX);
    (bound(per_variable), bound(G1_BYTES))
}

/// A coordinate from its Montgomery limbs; `None` for limbs not below the modulus.
fn fq(bytes: &[u8]) -> Option<Fq> {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    let value = BigInt(limbs);
    (value < Fq::MODULUS).then(|| Fq::new_unchecked(value))
}

fn g1(bytes: &[u8]) -> Option<G1Affine> {
    let (x, y) = bytes.split_at(FQ_BYTES);
    // (0, 0) is the point at infinity, as ark-ec represents it on these curves.
    Some(G1Affine::new_unchecked(fq(x)?, fq(y)?))
}

fn g2(bytes: &[u8]) -> Option<G2Affine> {
    let mut coordinates = bytes.chunks_exact(FQ_BYTES).map(fq);
    let mut next = || coordinates.next().flatten();
    let x = Fq2::new(next()?, next()?);
    let y = Fq2::new(next()?, next()?);
    Some(G2Affine::new_unchecked(x, y))
}

struct Reader<'a> {
    source: &'a mut dyn Read,
    /// Bytes left in the source.
    rest: u64,
    /// The bytes of the points being read, reused from one chunk to the next.
    chunk: Vec<u8>,
}

impl Reader<'_> {
    /// The next `len` bytes, in `self.chunk`.
    fn take(&mut self, len: usize, what: &str) -> Result<&[u8], ProofError> {
        let truncated = || {
            ProofError::MalformedKey(format!("the key ends inside {what}: the file is truncated"))
        };
        if self.rest < len as u64 {
            return Err(truncated());
        }
        self.chunk.resize(len, 0);
        self.source.read_exact(&mut self.chunk).map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                truncated()
            } else {
                ProofError::MalformedKey(format!("cannot read {what}: {error}"))
            }
        })?;
        self.rest -= len as u64;
        Ok(&self.chunk)
    }

    fn g1(&mut self, what: &str) -> Result<G1Affine, ProofError> {
        let bytes = self.take(G1_BYTES, what)?;
        g1(bytes).ok_or_else(|| unreduced(what))
    }

    fn g2(&mut self, what: &str) -> Result<G2Affine, ProofError> {
        let bytes = self.take(G2_BYTES, what)?;
        g2(bytes).ok_or_else(|| unreduced(what))
    }

    fn vec<T>(
        &mut self,
        what: &str,
        point_bytes: usize,
        point: fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, ProofError> {
        let len = u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes"));
        // The length is checked against the bytes there before anything is allocated.
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| {
                len.checked_mul(point_bytes)
                    .is_some_and(|bytes| bytes as u64 <= self.rest)
            })
            .ok_or_else(|| {
                ProofError::MalformedKey(format!(
                    "{what} claims {len} points, more than the file holds: it is truncated or damaged"
                ))
            })?;
        let mut points = Vec::with_capacity(len);
        while points.len() < len {
            let count = CHUNK_POINTS.min(len - points.len());
            let bytes = self.take(count * point_bytes, what)?;
            for bytes in bytes.chunks_exact(point_bytes) {
                points.push(point(bytes).ok_or_else(|| unreduced(what))?);
            }
        }
        Ok(points)
    }
}

fn unreduced(what: &str) -> ProofError {
    ProofError::MalformedKey(format!(
        "a coordinate in {what} is not a field element (not below the modulus): the file is damaged"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::AffineRepr;
    use ark_ff::UniformRand;
    use rand_core::OsRng;

    fn key() -> ProvingKey<Bn254> {
        let mut rng = OsRng;
        let g1s = |n: usize, rng: &mut _| (0..n).map(|_| G1Affine::rand(rng)).collect::<Vec<_>>();
        let mut key = ProvingKey {
            vk: VerifyingKey {
                alpha_g1: G1Affine::rand(&mut rng),
                beta_g2: G2Affine::rand(&mut rng),
                gamma_g2: G2Affine::rand(&mut rng),
                delta_g2: G2Affine::rand(&mut rng),
                gamma_abc_g1: g1s(3, &mut rng),
            },
            beta_g1: G1Affine::rand(&mut rng),
            delta_g1: G1Affine::rand(&mut rng),
            a_query: g1s(5, &mut rng),
            // Long enough to be read in more than one chunk.
            b_g1_query: g1s(CHUNK_POINTS + 3, &mut rng),
            b_g2_query: (0..4).map(|_| G2Affine::rand(&mut rng)).collect(),
            h_query: g1s(2, &mut rng),
            l_query: g1s(1, &mut rng),
        };
        // Keys hold points at infinity (a variable no constraint uses).
        key.a_query[1] = G1Affine::zero();
        key.b_g2_query[2] = G2Affine::zero();
        key
    }

    #[test]
    fn a_key_reads_back_as_written_points_at_infinity_included() {
        let key = key();
        let read = read(&write(&key)).unwrap();
        assert_eq!(read, key);
        assert!(read.a_query[1].is_zero() && read.b_g2_query[2].is_zero());
    }

    #[test]
    fn a_key_in_arkworks_format_from_an_earlier_sn2_still_reads() {
        let key = key();
        let mut legacy = Vec::new();
        ark_serialize::CanonicalSerialize::serialize_uncompressed(&key, &mut legacy).unwrap();
        assert_eq!(read(&legacy).unwrap(), key);
    }

    #[test]
    fn a_cut_lengthened_or_damaged_key_is_refused_with_a_reason() {
        let bytes = write(&key());
        for len in [MAGIC.len(), 20, G1_BYTES, bytes.len() / 2, bytes.len() - 1] {
            let error = read(&bytes[..len]).unwrap_err();
            assert!(error.to_string().contains("truncated"), "{len}: {error}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            read(&longer)
                .unwrap_err()
                .to_string()
                .contains("goes on for 1 byte")
        );
        // A coordinate's top limb set to all ones is above the modulus.
        let mut unreduced = bytes.clone();
        unreduced[MAGIC.len() + 24..MAGIC.len() + 32].fill(0xff);
        assert!(
            read(&unreduced)
                .unwrap_err()
                .to_string()
                .contains("not a field element")
        );
        // A vector claiming more points than there are bytes is refused before allocating.
        let length_at = MAGIC.len() + G1_BYTES + 3 * G2_BYTES;
        let mut huge = bytes;
        huge[length_at..length_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read(&huge).unwrap_err().to_string().contains("claims"));
    }
}
