//! Phase 2 of a Groth16 setup for one model: keys that are sound if any one contributor
//! was honest (the construction of Bowe, Gabizon and Miers, as snarkjs and Zcash's
//! Sapling ceremony use it).
//!
//! - **Init** evaluates the model's QAP at the τ of a public powers of tau ([`Ptau`]),
//!   with α and β from the same file, in the exponent: each variable's point is a sum of
//!   the Lagrange forms `L_i(τ)·G`, which an inverse FFT over the group makes from the
//!   powers. γ is the generator, as in snarkjs; δ starts at the generator too, so the
//!   initial key is forgeable by anyone until someone contributes.
//! - **Contribute** multiplies δ by a secret `d` from OS randomness and divides the H and
//!   L queries by it. It records δ's new value and a proof of knowledge of `d`:
//!   `(s, d·s)` in G1 for a random `s`, and `d·r` in G2 for `r` hashed from the transcript
//!   so far and `(s, d·s)`, so that nobody can copy a contribution into another place.
//!   `d` is overwritten before the function returns.
//! - **Verify** recomputes the initial key from the powers of tau and the model, follows
//!   every contribution (its proof of knowledge, and that its δ is the previous δ times
//!   the known `d`), and checks the final key: everything but H, L and δ as initialised,
//!   and H and L divided by the product of the `d`s (one random linear combination and
//!   one pairing each).
//!
//! Each contribution's hash chains the one before, starting from the hash of the model
//! and its initial key; the last is the transcript's hash, which finished keys record
//! as their provenance.
//!
//! A contribution may be **signed** by a Bittensor hotkey: its hash then covers the
//! hotkey, and the hotkey signs the hash, so nobody can claim a contribution they did not
//! make, nor strip the claim without breaking the chain. An unsigned contribution is as
//! sound as a signed one (a user who contributed knows their hash); signatures are what
//! lets validators count *who* took part, so that a quorum cannot be filled by one party
//! contributing many times. Transcripts with no signed contribution keep the format of
//! version 1, byte for byte; version 2 adds each contribution's hotkey and signature.

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{BigInteger, Field, One, PrimeField, UniformRand, Zero};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_poly::EvaluationDomain;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use blake2::{Blake2b512, Digest as _};
use rand_core::OsRng;
use rayon::prelude::*;
use sha2::Sha256;
use zeroize::Zeroize as _;

use super::setup::domain_of;
use crate::circuit::r1cs::R1cs;
use crate::keys::{Hotkey, PublicKey, Signature};
use crate::model::ModelId;
use crate::proof::ptau::Ptau;

const MAGIC: &[u8; 12] = b"SN2CEREMONY\0";
/// The format of transcripts whose contributions are all unsigned.
const VERSION_UNSIGNED: u16 = 1;
/// The format of transcripts with a signed contribution: every record carries a hotkey
/// and a signature (zeros for an unsigned one).
const VERSION_SIGNED: u16 = 2;
/// A contribution's points: δ in G1 and G2, then `s`, `d·s` and `d·r`.
const POINTS_BYTES: usize = 64 + 128 + 64 + 64 + 128;
/// A contribution's record at most (version 2): its points, then the signer's hotkey and
/// signature.
pub const CONTRIBUTION_BYTES: usize = POINTS_BYTES + 32 + 64;

#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    #[error("not a ceremony transcript: {0}")]
    Format(String),
    #[error(
        "the powers of tau hold 2^{has} powers; this model's circuit needs 2^{needs}: use a file of power {needs} or more"
    )]
    PtauTooSmall { has: u32, needs: u32 },
    #[error(
        "the powers of tau have no Lagrange forms: prepare the file with `snarkjs powersoftau prepare phase2 IN OUT` (once; the Hermez files are already prepared)"
    )]
    Unprepared,
    #[error("the transcript is for model {transcript}, not {model}")]
    OtherModel { transcript: String, model: String },
    #[error("refused: {0}")]
    Refused(String),
    #[error("not a snarkjs Groth16 key (.zkey): {0}")]
    Zkey(String),
}

/// One party's contribution, as recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    pub delta_g1: G1Affine,
    pub delta_g2: G2Affine,
    s: G1Affine,
    s_times_d: G1Affine,
    r_times_d: G2Affine,
    /// The hotkey that claims the contribution, and its signature of the contribution's
    /// hash; `None` for an unsigned one.
    pub signed: Option<(PublicKey, Signature)>,
}

impl Contribution {
    /// The hotkey that signed it, if any.
    pub fn signer(&self) -> Option<&PublicKey> {
        self.signed.as_ref().map(|(key, _)| key)
    }

    /// The transcript's hash after this contribution, from the hash before it.
    fn hash_after(&self, previous: &[u8; 32]) -> [u8; 32] {
        chain(previous, self, self.signer())
    }
}

/// A model's phase 2 so far: the model, the hash of its initial key, the contributions,
/// and the key they have made.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub model: ModelId,
    initial_hash: [u8; 32],
    pub contributions: Vec<Contribution>,
    key: ProvingKey<Bn254>,
}

/// What a verified transcript establishes.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Each contribution's hash, in order: a contributor finds theirs here.
    pub contribution_hashes: Vec<[u8; 32]>,
    /// Each contribution's signer, in the same order; `None` where unsigned.
    pub signers: Vec<Option<PublicKey>>,
    /// The last contribution's hash (the initial key's when there is none).
    pub transcript_hash: [u8; 32],
}

impl Transcript {
    /// Starts a ceremony for `model`, whose constraint system is `system`, from the powers
    /// of tau `ptau` (which the caller has checked).
    pub fn init(model: ModelId, system: &R1cs, ptau: &Ptau) -> Result<Self, CeremonyError> {
        Ok(Self::from_initial(model, initial_key(system, ptau)?))
    }

    /// [`Self::init`] from the initial key [`initial_key`] made.
    pub fn from_initial(model: ModelId, key: ProvingKey<Bn254>) -> Self {
        Self {
            initial_hash: initial_hash(&model, &key),
            model,
            contributions: Vec::new(),
            key,
        }
    }

    /// The proving and verifying keys, in the encodings of [`super::Groth16Bn254`]'s setup.
    pub fn key_pair(&self) -> crate::proof::KeyPair {
        super::key_pair(&self.key)
    }

    /// The key as the contributions so far have made it.
    pub fn key(&self) -> &ProvingKey<Bn254> {
        &self.key
    }

    /// Each contribution's hash, in order, as [`Verified::contribution_hashes`] lists them
    /// (computed, not checked: verify a transcript from elsewhere first).
    pub fn contribution_hashes(&self) -> Vec<[u8; 32]> {
        let mut previous = self.initial_hash;
        self.contributions
            .iter()
            .map(|c| {
                previous = c.hash_after(&previous);
                previous
            })
            .collect()
    }

    /// The last contribution's hash, chained from the initial key's.
    pub fn hash(&self) -> [u8; 32] {
        self.contributions
            .iter()
            .fold(self.initial_hash, |previous, c| c.hash_after(&previous))
    }

    /// Adds a contribution from OS randomness, signed by `signer` if given; returns its
    /// hash. The secret exists only inside this call.
    pub fn contribute(&mut self, signer: Option<&Hotkey>) -> [u8; 32] {
        let mut d = Fr::rand(&mut OsRng);
        while d.is_zero() {
            d = Fr::rand(&mut OsRng);
        }
        self.contribute_secret(d, signer)
    }

    /// Each contribution's signer, in order; `None` where unsigned (read, not checked:
    /// verify a transcript from elsewhere first).
    pub fn signers(&self) -> Vec<Option<PublicKey>> {
        self.contributions
            .iter()
            .map(|c| c.signer().copied())
            .collect()
    }

    /// [`Self::contribute`] with the secret `d` (not zero) given: the tests' way to know it.
    fn contribute_secret(&mut self, mut d: Fr, signer: Option<&Hotkey>) -> [u8; 32] {
        let previous = self.hash();
        let signer_key = signer.map(Hotkey::public);
        let mut d_inverse = d.inverse().expect("d is not zero");
        let s = G1Projective::rand(&mut OsRng).into_affine();
        let s_times_d = (s * d).into_affine();
        let r = hash_to_g2(&challenge(&previous, &s, &s_times_d, signer_key.as_ref()));
        let r_times_d = (r * d).into_affine();
        let delta_g1 = (self.key.delta_g1 * d).into_affine();
        let delta_g2 = (self.key.vk.delta_g2 * d).into_affine();
        self.key.l_query = scaled(&self.key.l_query, d_inverse);
        self.key.h_query = scaled(&self.key.h_query, d_inverse);
        d.zeroize();
        d_inverse.zeroize();
        self.key.delta_g1 = delta_g1;
        self.key.vk.delta_g2 = delta_g2;
        let mut contribution = Contribution {
            delta_g1,
            delta_g2,
            s,
            s_times_d,
            r_times_d,
            signed: None,
        };
        let hash = chain(&previous, &contribution, signer_key.as_ref());
        contribution.signed = signer.map(|key| (key.public(), key.sign(&signed_message(&hash))));
        self.contributions.push(contribution);
        hash
    }

    /// Checks the whole transcript against `model`'s constraint system and the powers of
    /// tau it claims to start from (which the caller has checked).
    pub fn verify(
        &self,
        model: &ModelId,
        system: &R1cs,
        ptau: &Ptau,
    ) -> Result<Verified, CeremonyError> {
        self.verify_from(model, &initial_key(system, ptau)?)
    }

    /// [`Self::verify`] with the initial key already made ([`initial_key`]): a verifier of
    /// many transcripts of one model keeps the key instead of the powers of tau.
    pub fn verify_from(
        &self,
        model: &ModelId,
        initial: &ProvingKey<Bn254>,
    ) -> Result<Verified, CeremonyError> {
        if &self.model != model {
            return Err(CeremonyError::OtherModel {
                transcript: hex::encode(self.model.0),
                model: hex::encode(model.0),
            });
        }
        let refused = |why: String| Err(CeremonyError::Refused(why));
        if initial_hash(model, initial) != self.initial_hash {
            return refused(format!(
                "the transcript does not start from this model's circuit and these powers of tau: it was started from another powers-of-tau file, or by an sn2 of another circuit revision (this one builds revision {})",
                crate::circuit::REVISION
            ));
        }
        let (g1, g2) = (G1Affine::generator(), G2Affine::generator());
        let mut hashes = Vec::with_capacity(self.contributions.len());
        let mut previous_hash = self.initial_hash;
        let mut previous_delta = g1;
        for (i, c) in self.contributions.iter().enumerate() {
            let number = i + 1;
            if c.s.is_zero() || c.s_times_d.is_zero() || c.delta_g1.is_zero() {
                return refused(format!("contribution {number} has a point at infinity"));
            }
            let r = hash_to_g2(&challenge(&previous_hash, &c.s, &c.s_times_d, c.signer()));
            if !same_ratio((c.s, c.s_times_d), (r, c.r_times_d)) {
                return refused(format!(
                    "contribution {number}'s proof of knowledge does not hold"
                ));
            }
            if !same_ratio((previous_delta, c.delta_g1), (r, c.r_times_d)) {
                return refused(format!(
                    "contribution {number}'s δ is not the previous δ times its secret"
                ));
            }
            if !same_ratio((g1, c.delta_g1), (g2, c.delta_g2)) {
                return refused(format!("contribution {number}'s δ differs in G1 and G2"));
            }
            previous_hash = c.hash_after(&previous_hash);
            if let Some((key, signature)) = &c.signed
                && key
                    .verify(&signed_message(&previous_hash), signature)
                    .is_err()
            {
                return refused(format!(
                    "contribution {number} claims to be signed by {key}, and the signature does not hold"
                ));
            }
            previous_delta = c.delta_g1;
            hashes.push(previous_hash);
        }
        let delta_g2 = self.contributions.last().map_or(g2, |c| c.delta_g2);
        let key = &self.key;
        if key.delta_g1 != previous_delta || key.vk.delta_g2 != delta_g2 {
            return refused("the key's δ is not the last contribution's".into());
        }
        let unchanged = key.vk.alpha_g1 == initial.vk.alpha_g1
            && key.vk.beta_g2 == initial.vk.beta_g2
            && key.vk.gamma_g2 == initial.vk.gamma_g2
            && key.vk.gamma_abc_g1 == initial.vk.gamma_abc_g1
            && key.beta_g1 == initial.beta_g1
            && key.a_query == initial.a_query
            && key.b_g1_query == initial.b_g1_query
            && key.b_g2_query == initial.b_g2_query;
        if !unchanged {
            return refused(
                "the key differs from the initial key outside H, L and δ, which contributions do not change"
                    .into(),
            );
        }
        for (name, now, before) in [
            ("H", &key.h_query, &initial.h_query),
            ("L", &key.l_query, &initial.l_query),
        ] {
            if !divided_by_delta(now, before, delta_g2) {
                return refused(format!(
                    "the key's {name} query is not the initial one divided by δ"
                ));
            }
        }
        Ok(Verified {
            contribution_hashes: hashes,
            signers: self.signers(),
            transcript_hash: previous_hash,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let signed = self.contributions.iter().any(|c| c.signed.is_some());
        let version = if signed {
            VERSION_SIGNED
        } else {
            VERSION_UNSIGNED
        };
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&self.model.0);
        out.extend_from_slice(&self.initial_hash);
        out.extend_from_slice(&(self.contributions.len() as u32).to_le_bytes());
        for c in &self.contributions {
            out.extend_from_slice(&contribution_points(c));
            if signed {
                let (key, signature) = c
                    .signed
                    .map_or(([0; 32], [0; 64]), |(key, s)| (*key.as_bytes(), s.0));
                out.extend_from_slice(&key);
                out.extend_from_slice(&signature);
            }
        }
        self.key
            .serialize_uncompressed(&mut out)
            .expect("serialising to memory cannot fail");
        out
    }

    /// Reads a transcript, checking that every point is on its curve and in its group.
    pub fn read(bytes: &[u8]) -> Result<Self, CeremonyError> {
        let bad = |why: &str| CeremonyError::Format(why.to_string());
        let header = MAGIC.len() + 2 + 32 + 32 + 4;
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad("it does not start with an sn2 ceremony header"));
        }
        let mut rest = &bytes[MAGIC.len()..];
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        };
        let version = u16::from_le_bytes(take(2).try_into().expect("two bytes"));
        let signed = match version {
            VERSION_UNSIGNED => false,
            VERSION_SIGNED => true,
            _ => {
                return Err(CeremonyError::Format(format!(
                    "transcript format version {version}; this build reads {VERSION_UNSIGNED} and {VERSION_SIGNED}: update sn2"
                )));
            }
        };
        let record_bytes = if signed {
            CONTRIBUTION_BYTES
        } else {
            POINTS_BYTES
        };
        let model = ModelId(take(32).try_into().expect("32 bytes"));
        let initial_hash: [u8; 32] = take(32).try_into().expect("32 bytes");
        let count = u32::from_le_bytes(take(4).try_into().expect("four bytes")) as usize;
        let mut rest = &bytes[header..];
        if count > rest.len() / record_bytes {
            return Err(bad("it is cut off inside its contributions"));
        }
        let point_error = |e: ark_serialize::SerializationError| {
            CeremonyError::Format(format!("a contribution holds a bad point: {e}"))
        };
        let mut contributions = Vec::with_capacity(count);
        for number in 1..=count {
            let mut contribution = Contribution {
                delta_g1: G1Affine::deserialize_uncompressed(&mut rest).map_err(point_error)?,
                delta_g2: G2Affine::deserialize_uncompressed(&mut rest).map_err(point_error)?,
                s: G1Affine::deserialize_uncompressed(&mut rest).map_err(point_error)?,
                s_times_d: G1Affine::deserialize_uncompressed(&mut rest).map_err(point_error)?,
                r_times_d: G2Affine::deserialize_uncompressed(&mut rest).map_err(point_error)?,
                signed: None,
            };
            if signed {
                let (key, tail) = rest.split_at(32);
                let (signature, tail) = tail.split_at(64);
                rest = tail;
                contribution.signed = read_signer(key, signature).map_err(|why| {
                    CeremonyError::Format(format!("contribution {number}'s signer: {why}"))
                })?;
            }
            contributions.push(contribution);
        }
        if signed && contributions.iter().all(|c| c.signed.is_none()) {
            return Err(bad(
                "it is written as version 2 but no contribution is signed, which sn2 writes as version 1",
            ));
        }
        let key = ProvingKey::<Bn254>::deserialize_uncompressed(&mut rest)
            .map_err(|e| CeremonyError::Format(format!("its key is damaged: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("it goes on after its key"));
        }
        let transcript = Self {
            model,
            initial_hash,
            contributions,
            key,
        };
        // arkworks reads a point flagged as infinity whatever its coordinates say, so one
        // transcript has many encodings; only the one sn2 writes is taken, so that equal
        // transcripts are equal bytes wherever they are served and kept.
        if transcript.to_bytes() != bytes {
            return Err(bad(
                "a point in it is not written the one way sn2 writes it (the point at infinity with coordinates other than zero)",
            ));
        }
        Ok(transcript)
    }
}

/// The constraint system a model's ceremony is for.
pub fn circuit(model: &crate::model::QuantModel) -> R1cs {
    super::constraint_system(model)
}

/// A version-2 record's signer: all zeros for an unsigned contribution (the zero key is
/// the group's identity, under which anyone could sign), else a hotkey and a signature.
fn read_signer(key: &[u8], signature: &[u8]) -> Result<Option<(PublicKey, Signature)>, String> {
    let signature: [u8; 64] = signature.try_into().expect("64 bytes");
    if key.iter().all(|&b| b == 0) {
        if signature.iter().any(|&b| b != 0) {
            return Err("unsigned, yet it carries a signature".into());
        }
        return Ok(None);
    }
    let key = PublicKey::from_bytes(key.try_into().expect("32 bytes"))
        .map_err(|_| "not an sr25519 public key".to_string())?;
    Ok(Some((key, Signature(signature))))
}

/// What a contribution's signer signs: its hash, which covers the signer's hotkey.
fn signed_message(hash: &[u8; 32]) -> Vec<u8> {
    [b"sn2 ceremony contribution signed".as_slice(), hash].concat()
}

fn contribution_points(c: &Contribution) -> Vec<u8> {
    let mut out = Vec::with_capacity(POINTS_BYTES);
    c.delta_g1
        .serialize_uncompressed(&mut out)
        .expect("in memory");
    c.delta_g2
        .serialize_uncompressed(&mut out)
        .expect("in memory");
    c.s.serialize_uncompressed(&mut out).expect("in memory");
    c.s_times_d
        .serialize_uncompressed(&mut out)
        .expect("in memory");
    c.r_times_d
        .serialize_uncompressed(&mut out)
        .expect("in memory");
    out
}

/// The hash after `c`, from the hash before it. A signed contribution's covers its
/// signer's hotkey; an unsigned one's is as in version 1.
fn chain(previous: &[u8; 32], c: &Contribution, signer: Option<&PublicKey>) -> [u8; 32] {
    let hash = match signer {
        None => Sha256::new().chain_update(b"sn2 ceremony contribution"),
        Some(_) => Sha256::new().chain_update(b"sn2 ceremony signed contribution"),
    };
    let hash = hash
        .chain_update(previous)
        .chain_update(contribution_points(c));
    match signer {
        None => hash.finalize().into(),
        Some(key) => hash.chain_update(key.as_bytes()).finalize().into(),
    }
}

fn initial_hash(model: &ModelId, key: &ProvingKey<Bn254>) -> [u8; 32] {
    let mut bytes = Vec::new();
    key.serialize_uncompressed(&mut bytes)
        .expect("serialising to memory cannot fail");
    Sha256::new()
        .chain_update(b"sn2 ceremony initial key")
        .chain_update(model.0)
        .chain_update(&bytes)
        .finalize()
        .into()
}

/// What the G2 point of a proof of knowledge is hashed from. A signed contribution's
/// covers its signer, so that only whoever knows the secret can claim it: another hotkey
/// cannot relabel it as its own.
fn challenge(
    previous: &[u8; 32],
    s: &G1Affine,
    s_times_d: &G1Affine,
    signer: Option<&PublicKey>,
) -> [u8; 32] {
    let mut bytes = Vec::new();
    s.serialize_uncompressed(&mut bytes).expect("in memory");
    s_times_d
        .serialize_uncompressed(&mut bytes)
        .expect("in memory");
    let hash = Sha256::new()
        .chain_update(b"sn2 ceremony challenge")
        .chain_update(previous)
        .chain_update(&bytes);
    match signer {
        None => hash.finalize().into(),
        Some(key) => hash.chain_update(key.as_bytes()).finalize().into(),
    }
}

/// A point of G2 whose discrete logarithm nobody knows: try-and-increment on x, then the
/// cofactor cleared.
fn hash_to_g2(seed: &[u8; 32]) -> G2Affine {
    let coordinate = |counter: u32, part: u8| {
        let digest = Blake2b512::new()
            .chain_update(b"sn2 ceremony hash to G2")
            .chain_update(seed)
            .chain_update(counter.to_le_bytes())
            .chain_update([part])
            .finalize();
        Fq::from_le_bytes_mod_order(&digest)
    };
    (0u32..)
        .find_map(|counter| {
            let x = Fq2::new(coordinate(counter, 0), coordinate(counter, 1));
            G2Affine::get_point_from_x_unchecked(x, false)
                .map(|point| point.clear_cofactor())
                .filter(|point| !point.is_zero())
        })
        .expect("half of all x are on the curve")
}

/// `b = x·a` in G1 and `d = x·c` in G2 for one x: `e(a, d) = e(b, c)`.
pub(super) fn same_ratio((a, b): (G1Affine, G1Affine), (c, d): (G2Affine, G2Affine)) -> bool {
    Bn254::multi_pairing([a, -b], [d, c]).is_zero()
}

/// Whether `now[i] = before[i] / δ` for all i, given δ·G2: for random ρ,
/// `e(Σ ρ_i·now_i, δ·G2) = e(Σ ρ_i·before_i, G2)`.
pub(super) fn divided_by_delta(now: &[G1Affine], before: &[G1Affine], delta_g2: G2Affine) -> bool {
    if now.len() != before.len() {
        return false;
    }
    let rho: Vec<Fr> = (0..now.len()).map(|_| Fr::rand(&mut OsRng)).collect();
    let (sum_now, sum_before) = rayon::join(
        || G1Projective::msm_unchecked(now, &rho),
        || G1Projective::msm_unchecked(before, &rho),
    );
    same_ratio(
        (sum_before.into_affine(), sum_now.into_affine()),
        (delta_g2, G2Affine::generator()),
    )
}

fn scaled(points: &[G1Affine], factor: Fr) -> Vec<G1Affine> {
    let products: Vec<G1Projective> = points.par_iter().map(|p| *p * factor).collect();
    G1Projective::normalize_batch(&products)
}

/// A matrix column: the rows where a variable appears, with its coefficients.
type Column = Vec<(usize, Fr)>;

/// `Σ scalars[i]·bases[i]`. Most columns of a circuit's matrices hold a few small
/// coefficients (1, −1, powers of two), for which a multi-scalar multiplication's set-up
/// costs more than the multiplications themselves; a negative coefficient is multiplied
/// as its (short) absolute value.
fn linear_combination<G: CurveGroup<ScalarField = Fr>>(bases: &[G::Affine], scalars: &[Fr]) -> G {
    if bases.len() > 16 {
        return G::msm_unchecked(bases, scalars);
    }
    bases
        .iter()
        .zip(scalars)
        .map(|(base, k)| {
            let negated = -*k;
            if negated.into_bigint().num_bits() < k.into_bigint().num_bits() {
                -(*base * negated)
            } else {
                *base * k
            }
        })
        .sum()
}

/// The power of the powers of tau `system`'s ceremony needs: its domain holds 2^power
/// points ([`Ptau::read_up_to`] need keep no more).
pub fn power_needed(system: &R1cs) -> Result<u32, CeremonyError> {
    let domain = domain_of(system).map_err(|e| CeremonyError::Refused(e.to_string()))?;
    Ok(domain.log_size_of_group() as u32)
}

/// The key that the powers of tau make for `system` with δ = γ = 1, as
/// [`super::setup::keys_from_secrets`] would with the file's τ, α and β.
pub fn initial_key(system: &R1cs, ptau: &Ptau) -> Result<ProvingKey<Bn254>, CeremonyError> {
    let domain = domain_of(system).map_err(|e| CeremonyError::Refused(e.to_string()))?;
    let n = domain.size();
    let needs = domain.log_size_of_group() as u32;
    if ptau.tau_g1.len() < 2 * n - 1
        || ptau.tau_g2.len() < n
        || ptau.alpha_tau_g1.len() < n
        || ptau.beta_tau_g1.len() < n
    {
        return Err(CeremonyError::PtauTooSmall {
            has: ptau.power,
            needs,
        });
    }
    // A prepared file holds the Lagrange forms of every domain, 2^k points from offset
    // 2^k − 1 (`ptau` has checked them against the powers).
    let forms = ptau.lagrange.as_ref().ok_or(CeremonyError::Unprepared)?;
    let this_domain = |list: &[G1Affine]| list[n - 1..2 * n - 1].to_vec();
    let tau = this_domain(&forms.tau_g1);
    let alpha_tau = this_domain(&forms.alpha_tau_g1);
    let beta_tau = this_domain(&forms.beta_tau_g1);
    let tau_g2 = &forms.tau_g2[n - 1..2 * n - 1];

    let m = system.matrices();
    let rows = m.a.len();
    let variables = m.instance_variables + m.witness_variables;
    // Each matrix by column: (row, coefficient) per variable.
    let columns = |matrix: &[Vec<(Fr, usize)>]| {
        let mut columns = vec![Vec::new(); variables];
        for (row, entries) in matrix.iter().enumerate() {
            for &(coefficient, variable) in entries {
                columns[variable].push((row, coefficient));
            }
        }
        columns
    };
    let (mut a, b, c) = (columns(&m.a), columns(&m.b), columns(&m.c));
    // The libsnark reduction's rows after the constraints: public input i alone in A.
    for (i, column) in a.iter_mut().enumerate().take(m.instance_variables) {
        column.push((rows + i, Fr::one()));
    }
    let sum_g1 = |lists: &[(&[G1Affine], &Column)]| {
        let (bases, scalars): (Vec<G1Affine>, Vec<Fr>) = lists
            .iter()
            .flat_map(|(bases, column)| column.iter().map(|&(row, k)| (bases[row], k)))
            .unzip();
        linear_combination(&bases, &scalars)
    };
    let a_query: Vec<G1Projective> = (0..variables)
        .into_par_iter()
        .map(|v| sum_g1(&[(&tau, &a[v])]))
        .collect();
    let b_g1_query: Vec<G1Projective> = (0..variables)
        .into_par_iter()
        .map(|v| sum_g1(&[(&tau, &b[v])]))
        .collect();
    let b_g2_query: Vec<G2Projective> = (0..variables)
        .into_par_iter()
        .map(|v| {
            let (bases, scalars): (Vec<G2Affine>, Vec<Fr>) =
                b[v].iter().map(|&(row, k)| (tau_g2[row], k)).unzip();
            linear_combination(&bases, &scalars)
        })
        .collect();
    // β·u + α·v + w for every variable: public ones over γ = 1, witnesses over δ = 1.
    let abc: Vec<G1Projective> = (0..variables)
        .into_par_iter()
        .map(|v| sum_g1(&[(&beta_tau, &a[v]), (&alpha_tau, &b[v]), (&tau, &c[v])]))
        .collect();
    // τ^i·Z(τ) = τ^(i+n) − τ^i, for the n − 1 coefficients of h.
    let h_query: Vec<G1Projective> = (0..n - 1)
        .into_par_iter()
        .map(|i| ptau.tau_g1[i + n].into_group() - ptau.tau_g1[i])
        .collect();
    let abc = G1Projective::normalize_batch(&abc);
    let (gamma_abc_g1, l_query) = abc.split_at(m.instance_variables);
    Ok(ProvingKey {
        vk: VerifyingKey {
            alpha_g1: ptau.alpha_tau_g1[0],
            beta_g2: ptau.beta_g2,
            gamma_g2: G2Affine::generator(),
            delta_g2: G2Affine::generator(),
            gamma_abc_g1: gamma_abc_g1.to_vec(),
        },
        beta_g1: ptau.beta_tau_g1[0],
        delta_g1: G1Affine::generator(),
        a_query: G1Projective::normalize_batch(&a_query),
        b_g1_query: G1Projective::normalize_batch(&b_g1_query),
        b_g2_query: G2Projective::normalize_batch(&b_g2_query),
        h_query: G1Projective::normalize_batch(&h_query),
        l_query: l_query.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ark_ec::PrimeGroup;
    use ark_groth16::{Groth16, Proof, prepare_verifying_key};

    use super::super::setup::{Secrets, keys_from_secrets};
    use super::super::{Groth16Bn254, constraint_system};
    use super::*;
    use crate::model::testing::every_operator_model;
    use crate::proof::{Binding, ProofSystem, Statement};

    struct Fixture {
        model: Arc<crate::model::QuantModel>,
        id: ModelId,
        system: R1cs,
        ptau: Ptau,
        initial: ProvingKey<Bn254>,
        secrets: (Fr, Fr, Fr),
    }

    /// One model, file and initial key for all the tests: making them takes seconds.
    fn fixture() -> &'static Fixture {
        static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        FIXTURE.get_or_init(|| {
            let model = Arc::new(every_operator_model());
            let system = constraint_system(&model);
            let power = domain_of(&system).unwrap().log_size_of_group() as u32;
            let secrets = (
                Fr::rand(&mut OsRng),
                Fr::rand(&mut OsRng),
                Fr::rand(&mut OsRng),
            );
            let ptau = Ptau::from_secrets(power, secrets.0, secrets.1, secrets.2);
            Fixture {
                id: ModelId([7; 32]),
                initial: initial_key(&system, &ptau).unwrap(),
                ptau,
                model,
                system,
                secrets,
            }
        })
    }

    fn start(f: &Fixture) -> Transcript {
        Transcript::from_initial(f.id, f.initial.clone())
    }

    #[test]
    fn the_initial_key_is_the_setup_of_the_files_secrets_with_unit_gamma_and_delta() {
        let f = fixture();
        let (tau, alpha, beta) = f.secrets;
        let secrets = Secrets {
            tau,
            alpha,
            beta,
            gamma: Fr::one(),
            delta: Fr::one(),
        };
        let expected = keys_from_secrets(
            &f.system,
            &secrets,
            G1Projective::generator(),
            G2Projective::generator(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(f.initial, expected);
        let unprepared = Ptau {
            lagrange: None,
            ..f.ptau.clone()
        };
        assert!(matches!(
            initial_key(&f.system, &unprepared),
            Err(CeremonyError::Unprepared)
        ));
    }

    #[test]
    fn keys_from_three_contributions_prove_and_verify_and_the_transcript_reads_back() {
        let f = fixture();
        let mut transcript = Transcript::init(f.id, &f.system, &f.ptau).unwrap();
        let hashes: Vec<_> = (0..3).map(|_| transcript.contribute(None)).collect();
        let verified = transcript.verify(&f.id, &f.system, &f.ptau).unwrap();
        assert_eq!(verified.contribution_hashes, hashes);
        assert_eq!(verified.transcript_hash, hashes[2]);

        let read = Transcript::read(&transcript.to_bytes()).unwrap();
        assert_eq!(read.key(), transcript.key());
        assert_eq!(read.contributions, transcript.contributions);
        assert_eq!(read.hash(), transcript.hash());

        let crate::proof::KeyPair { proving, verifying } = transcript.key_pair();
        let prover = Groth16Bn254.prover(f.model.clone(), &proving).unwrap();
        let verifier = Groth16Bn254.verifier(&f.model, &verifying).unwrap();
        let input: Vec<i8> = (0..f.model.input_len()).map(|i| (i % 100) as i8).collect();
        let binding = Binding([3; 31]);
        let proven = prover.prove(&input, &binding).unwrap();
        let mut statement = Statement {
            input,
            output: proven.output,
            binding,
        };
        assert!(verifier.verify(&statement, &proven.proof).is_ok());
        statement.output[0] += 1;
        assert!(verifier.verify(&statement, &proven.proof).is_err());
    }

    fn refusal(transcript: &Transcript, f: &Fixture) -> String {
        match transcript.verify_from(&f.id, &f.initial) {
            Err(CeremonyError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn dropped_reordered_and_altered_contributions_are_refused() {
        let f = fixture();
        let mut transcript = start(f);
        for _ in 0..3 {
            transcript.contribute(None);
        }

        let mut dropped = transcript.clone();
        dropped.contributions.remove(1);
        assert!(refusal(&dropped, f).contains("contribution 2"));

        let mut reordered = transcript.clone();
        reordered.contributions.swap(1, 2);
        assert!(refusal(&reordered, f).contains("contribution 2"));

        // A proof of knowledge that does not hold.
        let mut forged = transcript.clone();
        forged.contributions[0].r_times_d =
            (forged.contributions[0].r_times_d + G2Affine::generator()).into_affine();
        assert!(refusal(&forged, f).contains("proof of knowledge"));

        // A valid proof of knowledge of a d that δ was not multiplied by.
        let mut other_delta = transcript.clone();
        let last = other_delta.contributions.last_mut().unwrap();
        last.delta_g1 = (last.delta_g1 * Fr::from(2u64)).into_affine();
        last.delta_g2 = (last.delta_g2 * Fr::from(2u64)).into_affine();
        assert!(refusal(&other_delta, f).contains("previous δ times its secret"));

        let mut split_delta = transcript.clone();
        split_delta.contributions[2].delta_g2 = G2Affine::generator();
        assert!(refusal(&split_delta, f).contains("contribution 3"));

        let mut key_delta = transcript.clone();
        key_delta.key.delta_g1 = G1Affine::generator();
        assert!(refusal(&key_delta, f).contains("the key's δ"));

        for query in ["H", "L"] {
            let mut altered = transcript.clone();
            let points = match query {
                "H" => &mut altered.key.h_query,
                _ => &mut altered.key.l_query,
            };
            points[1] = (points[1] + G1Affine::generator()).into_affine();
            assert!(refusal(&altered, f).contains(&format!("{query} query")));
        }

        let mut other_a = transcript.clone();
        other_a.key.a_query.swap(1, 2);
        assert!(refusal(&other_a, f).contains("outside H, L and δ"));

        // A ceremony of another model (or from other powers) does not start here.
        let mut other_initial = f.initial.clone();
        other_initial.beta_g1 = G1Affine::generator();
        let elsewhere = Transcript::from_initial(f.id, other_initial);
        assert!(refusal(&elsewhere, f).contains("does not start"));
        assert!(matches!(
            transcript.verify_from(&ModelId([8; 32]), &f.initial),
            Err(CeremonyError::OtherModel { .. })
        ));
    }

    #[test]
    fn signed_contributions_name_their_hotkeys_and_cannot_be_relabelled_or_stripped() {
        let f = fixture();
        let (alice, bob) = (Hotkey::from_seed(&[1; 32]), Hotkey::from_seed(&[2; 32]));
        let header = MAGIC.len() + 2 + 32 + 32 + 4;
        let version = |bytes: &[u8]| u16::from_le_bytes([bytes[12], bytes[13]]);

        // Unsigned contributions keep version 1's bytes: records of their points alone.
        let mut transcript = start(f);
        transcript.contribute(None);
        let unsigned = transcript.to_bytes();
        let mut key = Vec::new();
        transcript.key.serialize_uncompressed(&mut key).unwrap();
        assert_eq!(version(&unsigned), 1);
        assert_eq!(unsigned.len(), header + POINTS_BYTES + key.len());

        let a = transcript.contribute(Some(&alice));
        let b = transcript.contribute(Some(&bob));
        let verified = transcript.verify_from(&f.id, &f.initial).unwrap();
        assert_eq!(
            verified.signers,
            vec![None, Some(alice.public()), Some(bob.public())]
        );
        assert_eq!(verified.contribution_hashes[1..], [a, b]);
        let bytes = transcript.to_bytes();
        assert_eq!(version(&bytes), 2);
        assert_eq!(bytes.len(), header + 3 * CONTRIBUTION_BYTES + key.len());
        let read = Transcript::read(&bytes).unwrap();
        assert_eq!(read.contributions, transcript.contributions);
        assert_eq!(read.hash(), b);

        // A signature that does not hold.
        let mut forged = transcript.clone();
        forged.contributions[1].signed.as_mut().unwrap().1.0[5] ^= 1;
        assert!(refusal(&forged, f).contains("contribution 2 claims to be signed by"));
        // Bob's contribution claimed by Alice, her signature valid: its proof of knowledge
        // was made for Bob, so it no longer holds.
        let mut relabelled = transcript.clone();
        let last = relabelled.contributions.last_mut().unwrap();
        let hash = chain(&a, last, Some(&alice.public()));
        last.signed = Some((alice.public(), alice.sign(&signed_message(&hash))));
        assert!(refusal(&relabelled, f).contains("contribution 3's proof of knowledge"));
        // Bob's claim stripped: likewise.
        let mut stripped = transcript.clone();
        stripped.contributions[2].signed = None;
        assert!(refusal(&stripped, f).contains("contribution 3's proof of knowledge"));

        // Files: an unsigned record with a signature, a signer that is not a key, and
        // version 2 with nothing signed.
        let record = |i: usize| header + i * CONTRIBUTION_BYTES;
        let mut with_signature = bytes.clone();
        with_signature[record(0) + POINTS_BYTES + 32] = 1;
        let mut not_a_key = bytes.clone();
        not_a_key[record(1) + POINTS_BYTES..record(1) + POINTS_BYTES + 32].fill(0xff);
        let mut none_signed = bytes.clone();
        for i in 1..3 {
            none_signed[record(i) + POINTS_BYTES..record(i + 1)].fill(0);
        }
        for (damaged, says) in [
            (
                &with_signature,
                "contribution 1's signer: unsigned, yet it carries a signature",
            ),
            (
                &not_a_key,
                "contribution 2's signer: not an sr25519 public key",
            ),
            (&none_signed, "no contribution is signed"),
        ] {
            match Transcript::read(damaged) {
                Err(CeremonyError::Format(why)) => assert!(why.contains(says), "{why}"),
                other => panic!("expected {says:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn damaged_transcript_files_are_refused_without_panicking() {
        let f = fixture();
        let mut transcript = start(f);
        transcript.contribute(None);
        let bytes = transcript.to_bytes();
        for cut in [0, 10, 80, 100, 200, bytes.len() / 2, bytes.len() - 1] {
            assert!(Transcript::read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Transcript::read(&longer).is_err());
        // A contribution's point moved off its curve.
        let mut off_curve = bytes.clone();
        off_curve[12 + 2 + 32 + 32 + 4 + 5] ^= 1;
        assert!(Transcript::read(&off_curve).is_err());
        let mut huge_count = bytes.clone();
        huge_count[12 + 2 + 64..12 + 2 + 64 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Transcript::read(&huge_count).is_err());
    }

    /// The audit's forgery: whoever knows α, β and δ proves any statement. It works on a
    /// key whose contributors' secrets are all known, and fails once one is not.
    #[test]
    fn the_setup_secrets_forge_proofs_until_one_contribution_is_unknown() {
        let f = fixture();
        let (_, alpha, beta) = f.secrets;
        let mut transcript = start(f);
        let (d1, d2) = (Fr::from(11u64), Fr::from(13u64));
        transcript.contribute_secret(d1, None);
        transcript.contribute_secret(d2, None);
        let forge = |key: &ProvingKey<Bn254>, delta: Fr| {
            let public: Vec<Fr> = (1..key.vk.gamma_abc_g1.len())
                .map(|i| Fr::from(i as u64 * 7))
                .collect();
            let (a, b) = (Fr::from(3u64), Fr::from(5u64));
            let inputs = key.vk.gamma_abc_g1[1..]
                .iter()
                .zip(&public)
                .fold(key.vk.gamma_abc_g1[0].into_group(), |sum, (p, x)| {
                    sum + *p * x
                });
            let c = (G1Projective::generator() * (a * b - alpha * beta) - inputs)
                * delta.inverse().unwrap();
            let proof = Proof {
                a: (G1Projective::generator() * a).into_affine(),
                b: (G2Projective::generator() * b).into_affine(),
                c: c.into_affine(),
            };
            Groth16::<Bn254>::verify_proof(&prepare_verifying_key(&key.vk), &proof, &public)
                .unwrap()
        };
        assert!(forge(transcript.key(), d1 * d2));
        transcript.contribute(None);
        assert!(transcript.verify_from(&f.id, &f.initial).is_ok());
        assert!(!forge(transcript.key(), d1 * d2));
    }
}
