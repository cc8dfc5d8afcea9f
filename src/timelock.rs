//! Timelock encryption to a drand quicknet round, byte for byte as subtensor decrypts
//! timelocked weight commits (the `tle` scheme its runtime links).
//!
//! Boneh–Franklin IBE on BLS12-381 with drand's "unchained G1" layout: signatures (the
//! round's pulse, which is the identity's private key) in G1, the network's public key in
//! G2. The identity of round `n` is `sha256(n as u64 big-endian)`, hashed to G1 under
//! drand's RFC 9380 suite. The IBE carries a fresh 32-byte key; the message itself is
//! sealed with AES-256-GCM under that key. The envelope is what `ark-serialize` writes for
//! the `tle` structs, compressed: vectors as a little-endian `u64` length and their bytes.
//!
//! ```text
//! u: G2 (96) | v: vec (32) | w: vec (32) | body: vec(ciphertext: vec, nonce: vec (12)) | suite: vec "AES_GCM_"
//! ```
//!
//! Nobody can decrypt before drand publishes the round's signature; after that, anybody
//! can (the chain does, and reveals the weights itself). The key and the IBE randomness
//! come from the OS and are dropped (zeroed) once used.

use ark_bls12_381::{Bls12_381, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::hashing::HashToCurve;
use ark_ec::hashing::curve_maps::wb::WBMap;
use ark_ec::hashing::map_to_curve_hasher::MapToCurveBasedHasher;
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, PrimeGroup};
use ark_ff::field_hashers::DefaultFieldHasher;
use ark_ff::{PrimeField, UniformRand};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// drand quicknet: its public key (G2, compressed), first round's time and period.
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
pub const QUICKNET_GENESIS: u64 = 1_692_803_367;
pub const QUICKNET_PERIOD: u64 = 3;
/// The hash-to-curve suite quicknet signs rounds under (`bls-unchained-g1-rfc9380`).
const QUICKNET_DST: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";
const CIPHER_SUITE: &[u8] = b"AES_GCM_";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimelockError {
    #[error("not a timelock ciphertext: {0}")]
    Malformed(String),
    #[error("not a drand signature: {0}")]
    BadSignature(String),
    #[error(
        "the signature is not the one for the ciphertext's round (wrong round, or the header was altered)"
    )]
    WrongRound,
    #[error("the sealed message was altered: AES-GCM refused it")]
    Tampered,
}

/// The drand quicknet round whose pulse is published at `unix_secs` (rounded down, so a
/// round chosen for a moment is out by then), at least 1.
pub fn round_at(unix_secs: f64) -> u64 {
    let round = ((unix_secs - QUICKNET_GENESIS as f64) / QUICKNET_PERIOD as f64).floor();
    if round < 1.0 { 1 } else { round as u64 }
}

fn quicknet_key() -> G2Affine {
    let bytes = hex::decode(QUICKNET_PUBLIC_KEY).expect("the constant is hex");
    G2Affine::deserialize_compressed(&bytes[..]).expect("the constant is a G2 point")
}

/// The G1 point whose multiple by drand's secret is round `round`'s signature.
fn identity(round: u64) -> G1Affine {
    let message = Sha256::digest(round.to_be_bytes());
    MapToCurveBasedHasher::<
        G1Projective,
        DefaultFieldHasher<Sha256, 128>,
        WBMap<ark_bls12_381::g1::Config>,
    >::new(QUICKNET_DST)
    .and_then(|hasher| hasher.hash(&message))
    .expect("hashing to G1 cannot fail for BLS12-381")
}

/// Whether `signature` (48 bytes, compressed G1) is quicknet's signature of `round`.
pub fn verify_pulse(round: u64, signature: &[u8]) -> Result<bool, TimelockError> {
    let signature = decode_signature(signature)?;
    let generator = G2Affine::generator();
    Ok(Bls12_381::pairing(signature, generator)
        == Bls12_381::pairing(identity(round), quicknet_key()))
}

fn decode_signature(bytes: &[u8]) -> Result<G1Affine, TimelockError> {
    let mut reader = bytes;
    let point = G1Affine::deserialize_compressed(&mut reader)
        .map_err(|e| TimelockError::BadSignature(format!("{e}")))?;
    if !reader.is_empty() {
        return Err(TimelockError::BadSignature(format!(
            "{} bytes, expected 48",
            bytes.len()
        )));
    }
    Ok(point)
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The IBE's mask of a pairing value: SHA-256 of its compressed encoding.
fn mask(value: <Bls12_381 as Pairing>::TargetField) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(576);
    value
        .serialize_compressed(&mut bytes)
        .expect("writing to a vector");
    sha256(&[&bytes])
}

/// The IBE's scalar for `sigma` and `key`: SHA-256 read as a big-endian number mod r.
fn scalar(sigma: &[u8; 32], key: &[u8; 32]) -> Fr {
    Fr::from_be_bytes_mod_order(&sha256(&[sigma, key]))
}

/// Encrypts `message` for `round` of drand quicknet with randomness from the OS.
pub fn encrypt(message: &[u8], round: u64) -> Vec<u8> {
    encrypt_with(message, round, &quicknet_key(), &mut rand_core::OsRng)
}

/// Encrypts `message` for `round` under `public_key`, drawing randomness from `rng`.
pub fn encrypt_with<R: RngCore + CryptoRng>(
    message: &[u8],
    round: u64,
    public_key: &G2Affine,
    rng: &mut R,
) -> Vec<u8> {
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());

    // The IBE header (Fujisaki–Okamoto): sigma from a random scalar, r bound to sigma and key.
    let t = Fr::rand(rng);
    let mut t_bytes = Zeroizing::new(Vec::with_capacity(32));
    t.serialize_compressed(&mut *t_bytes)
        .expect("writing to a vector");
    let sigma = Zeroizing::new(sha256(&[&t_bytes]));
    let r = scalar(&sigma, &key);
    let u = (G2Projective::generator() * r).into_affine();
    let shared = Bls12_381::pairing(identity(round), (*public_key * r).into_affine());
    let v = xor(&sigma, &mask(shared.0));
    let w = xor(&key, &sha256(&[&sigma[..]]));

    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let sealing = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key.as_ref()).expect("a 32-byte key"),
    );
    let mut sealed = message.to_vec();
    sealing
        .seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut sealed,
        )
        .expect("AES-GCM seals any message below 64 GiB");

    let mut body = Vec::with_capacity(sealed.len() + NONCE_LEN + 16);
    write_vec(&mut body, &sealed);
    write_vec(&mut body, &nonce);
    let mut out = Vec::with_capacity(body.len() + 96 + 3 * 40);
    u.serialize_compressed(&mut out)
        .expect("writing to a vector");
    write_vec(&mut out, &v);
    write_vec(&mut out, &w);
    write_vec(&mut out, &body);
    write_vec(&mut out, CIPHER_SUITE);
    out
}

/// Decrypts `ciphertext` with the signature (48 bytes, compressed G1) of its round.
pub fn decrypt(ciphertext: &[u8], signature: &[u8]) -> Result<Vec<u8>, TimelockError> {
    let envelope = Envelope::parse(ciphertext)?;
    let signature = decode_signature(signature)?;

    let sigma = Zeroizing::new(xor(
        &envelope.v,
        &mask(Bls12_381::pairing(signature, envelope.u).0),
    ));
    let key = Zeroizing::new(xor(&envelope.w, &sha256(&[&sigma[..]])));
    // The header binds sigma and the key to u: any other signature, or an altered header,
    // yields a pair that does not reproduce it.
    if (G2Projective::generator() * scalar(&sigma, &key)).into_affine() != envelope.u {
        return Err(TimelockError::WrongRound);
    }
    let opening = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key.as_ref()).expect("a 32-byte key"),
    );
    let mut sealed = envelope.sealed;
    let plain = opening
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key(envelope.nonce),
            ring::aead::Aad::empty(),
            &mut sealed,
        )
        .map_err(|_| TimelockError::Tampered)?;
    Ok(plain.to_vec())
}

/// The decoded envelope of a ciphertext.
struct Envelope {
    u: G2Affine,
    v: [u8; 32],
    w: [u8; 32],
    sealed: Vec<u8>,
    nonce: [u8; NONCE_LEN],
}

impl Envelope {
    fn parse(bytes: &[u8]) -> Result<Self, TimelockError> {
        let mut reader = bytes;
        let u = G2Affine::deserialize_compressed(&mut reader)
            .map_err(|e| TimelockError::Malformed(format!("the header's point: {e}")))?;
        let v = fixed::<32>(read_vec(&mut reader, "v")?, "v")?;
        let w = fixed::<32>(read_vec(&mut reader, "w")?, "w")?;
        let mut body = read_vec(&mut reader, "body")?;
        let suite = read_vec(&mut reader, "cipher suite")?;
        if !reader.is_empty() {
            return Err(TimelockError::Malformed(format!(
                "{} bytes after the envelope",
                reader.len()
            )));
        }
        if suite != CIPHER_SUITE {
            return Err(TimelockError::Malformed(format!(
                "cipher suite {:?}, expected AES_GCM_",
                String::from_utf8_lossy(suite)
            )));
        }
        let sealed = read_vec(&mut body, "sealed message")?.to_vec();
        let nonce = fixed::<NONCE_LEN>(read_vec(&mut body, "nonce")?, "nonce")?;
        if !body.is_empty() || sealed.len() < TAG_LEN {
            return Err(TimelockError::Malformed(
                "the body is not a sealed message and a nonce".into(),
            ));
        }
        Ok(Self {
            u,
            v,
            w,
            sealed,
            nonce,
        })
    }
}

fn write_vec(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn read_vec<'a>(reader: &mut &'a [u8], what: &str) -> Result<&'a [u8], TimelockError> {
    let truncated = || TimelockError::Malformed(format!("truncated at {what}"));
    let (length, rest) = reader.split_first_chunk::<8>().ok_or_else(truncated)?;
    let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| truncated())?;
    if rest.len() < length {
        return Err(truncated());
    }
    let (bytes, rest) = rest.split_at(length);
    *reader = rest;
    Ok(bytes)
}

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], TimelockError> {
    bytes.try_into().map_err(|_| {
        TimelockError::Malformed(format!("{what} has {} bytes, expected {N}", bytes.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quicknet's pulse for round 1000, as recorded in subtensor's drand pallet tests.
    const ROUND_1000: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

    fn pulse() -> Vec<u8> {
        hex::decode(ROUND_1000).unwrap()
    }

    #[test]
    fn the_recorded_pulse_is_quicknets_signature_of_its_round() {
        assert!(verify_pulse(1000, &pulse()).unwrap());
        assert!(!verify_pulse(1001, &pulse()).unwrap());
    }

    #[test]
    fn a_message_sealed_for_a_round_opens_with_that_rounds_pulse_only() {
        let message = b"uids and values".to_vec();
        let sealed = encrypt(&message, 1000);
        assert_eq!(decrypt(&sealed, &pulse()).unwrap(), message);
        let other = encrypt(&message, 1001);
        assert_eq!(decrypt(&other, &pulse()), Err(TimelockError::WrongRound));
    }

    #[test]
    fn every_altered_byte_is_refused_and_nothing_panics() {
        let sealed = encrypt(b"weights", 1000);
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert!(decrypt(&altered, &pulse()).is_err(), "byte {i}");
        }
        for len in 0..sealed.len() {
            assert!(decrypt(&sealed[..len], &pulse()).is_err(), "length {len}");
        }
        assert!(matches!(
            decrypt(&sealed, &pulse()[..47]),
            Err(TimelockError::BadSignature(_))
        ));
    }

    #[test]
    fn rounds_follow_quicknets_clock() {
        assert_eq!(round_at(QUICKNET_GENESIS as f64 + 3000.0), 1000);
        assert_eq!(round_at(QUICKNET_GENESIS as f64 + 3002.9), 1000);
        assert_eq!(round_at(0.0), 1);
    }
}
