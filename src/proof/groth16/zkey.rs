//! snarkjs's `.zkey`: Groth16 keys from a phase-2 ceremony run entirely with snarkjs on the
//! circuit that `sn2 ceremony r1cs` writes (`snarkjs zkey new`, then `zkey contribute` by
//! each party). sn2 takes such keys in only after checking the whole ceremony itself, as
//! `snarkjs zkey verify` does, against the model's own circuit and the powers of tau: so
//! trusting the keys means trusting one contributor, not snarkjs, nor whoever handed over
//! the file.
//!
//! What is checked:
//! - the header: BN254, and the circuit's variables, public inputs and domain;
//! - α, β, γ (the generator), the public inputs' points and the A and B queries: exactly
//!   those of sn2's own initial key from the same powers of tau ([`super::ceremony`]),
//!   which snarkjs computes the same way;
//! - L and H divided by δ (one random combination and one pairing each). snarkjs's H holds
//!   the Lagrange forms over the odd points of the domain of 2n roots, `L_{2i+1}(τ)/δ`,
//!   which sn2's prover uses as they are ([`super::prover`]);
//! - δ: the chain of contributions from the generator to the header's δ (in G1, and G2
//!   against it), each with snarkjs's proof of knowledge of its factor `x`: `(s, x·s)` in
//!   G1 and `x·r` in G2, with `r` hashed from the transcript so far (blake2b-512, then
//!   snarkjs's ChaCha-driven choice of a point, reproduced here).
//!
//! Not checked: the coefficients section (snarkjs's prover reads it, sn2's does not), and
//! the circuit hash the chain starts from, which names the initial key. A wrong one changes
//! only where contributions could have been copied from, not what δ is made of.
//!
//! Layout: iden3's container (`zkey`, version 1). Section 1 is the protocol (1, Groth16);
//! 2 the header (field sizes and moduli, variables, public inputs, domain size, α1, β1,
//! β2, γ2, δ1, δ2); 3 the public inputs' points; 4 the coefficients; 5 A; 6 B in G1; 7 B in
//! G2; 8 L; 9 H; 10 the contributions. Points as in `.ptau` (Montgomery form,
//! little-endian).

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine, G2Projective};
use ark_ec::short_weierstrass::SWCurveConfig;
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{BigInt, BigInteger, Field, PrimeField, Zero};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_poly::EvaluationDomain;
use blake2::{Blake2b512, Digest as _};

use super::ceremony::{CeremonyError, divided_by_delta, initial_key, same_ratio};
use super::setup::domain_of;
use crate::circuit::r1cs::R1cs;
use crate::proof::ptau::{self, G1_BYTES, G2_BYTES, Ptau, Sections};

/// One contribution of the ceremony, as snarkjs lists it.
#[derive(Debug, Clone)]
pub struct ZkeyContribution {
    /// The name its contributor gave (`--name`), if any.
    pub name: Option<String>,
    /// snarkjs's hash of the contribution (what `zkey contribute` printed to its
    /// contributor and `zkey verify` lists).
    pub hash: [u8; 64],
    /// A random beacon's contribution (`zkey beacon`), whose secret is public: it is
    /// checked like any other but counts for no one's trust.
    pub beacon: bool,
}

/// A zkey whose ceremony was checked: its keys and its contributions in order.
pub struct VerifiedZkey {
    /// The proving key; its H in snarkjs's form (n points over the odd roots).
    pub key: ProvingKey<Bn254>,
    pub contributions: Vec<ZkeyContribution>,
}

impl VerifiedZkey {
    /// The contributions made by parties rather than beacons.
    pub fn parties(&self) -> usize {
        self.contributions.iter().filter(|c| !c.beacon).count()
    }

    /// The proving and verifying keys, in the encodings of [`super::Groth16Bn254`]'s setup.
    pub fn key_pair(&self) -> crate::proof::KeyPair {
        super::key_pair(&self.key)
    }

    /// The last contribution's hash: what names the ceremony in the keys' provenance.
    pub fn last_hash(&self) -> Option<[u8; 64]> {
        self.contributions.last().map(|c| c.hash)
    }
}

/// Whether `bytes` claim to be a zkey (rather than, say, an sn2 transcript).
pub fn is_zkey(bytes: &[u8]) -> bool {
    bytes.starts_with(b"zkey")
}

/// Reads `bytes` as a zkey for the circuit `system` and checks its ceremony against it and
/// `ptau` (see the module's documentation).
pub fn verify(bytes: &[u8], system: &R1cs, ptau: &Ptau) -> Result<VerifiedZkey, CeremonyError> {
    // The container and its points are read as `.ptau`'s are; the messages are the same
    // but for what the file is.
    let format = |e: ptau::PtauError| match e {
        ptau::PtauError::Format(reason) => CeremonyError::Zkey(reason),
        other => CeremonyError::Zkey(other.to_string()),
    };
    let refused = |reason: String| CeremonyError::Refused(reason);
    let sections = Sections::parse_kind(bytes, b"zkey").map_err(format)?;
    let protocol = sections.require(1, "protocol").map_err(format)?;
    if protocol != 1u32.to_le_bytes() {
        return Err(CeremonyError::Zkey(
            "not a Groth16 key (snarkjs's PLONK and FFLONK keys are not read)".into(),
        ));
    }
    let header = Header::read(sections.require(2, "header").map_err(format)?)?;

    let domain = domain_of(system).map_err(|e| refused(e.to_string()))?;
    let n = domain.size();
    let variables = system.instance_count() + system.witness_count();
    let public = system.instance_count() - 1;
    if header.variables != variables || header.public != public || header.domain != n {
        return Err(refused(format!(
            "the key is for a circuit of {} variables, {} public inputs and a domain of {}; this model's has {variables}, {public} and {n}: it was made from another model's circuit",
            header.variables, header.public, header.domain
        )));
    }
    let read_g1 = |id: u32, count: usize, what: &str| {
        let section = sections.require(id, what).map_err(format)?;
        exact(section, count * G1_BYTES, what)?;
        ptau::points(section, count, G1_BYTES, what, ptau::g1).map_err(format)
    };
    let ic = read_g1(3, public + 1, "the public inputs' points")?;
    let a = read_g1(5, variables, "A")?;
    let b_g1 = read_g1(6, variables, "B in G1")?;
    let b_g2_section = sections.require(7, "B in G2").map_err(format)?;
    exact(b_g2_section, variables * G2_BYTES, "B in G2")?;
    let b_g2 =
        ptau::points(b_g2_section, variables, G2_BYTES, "B in G2", ptau::g2).map_err(format)?;
    let l = read_g1(8, variables - public - 1, "L")?;
    let h = read_g1(9, n, "H")?;
    let contributions =
        Contributions::read(sections.require(10, "contributions").map_err(format)?)?;

    // Everything δ does not touch is the initial key's, as sn2 makes it from the file.
    let initial = initial_key(system, ptau)?;
    let differs = |what: &str| {
        refused(format!(
            "{what} is not what the powers of tau make for this model's circuit: the key is for another circuit or other powers of tau"
        ))
    };
    if header.alpha_g1 != initial.vk.alpha_g1
        || header.beta_g1 != initial.beta_g1
        || header.beta_g2 != initial.vk.beta_g2
    {
        return Err(differs("α or β"));
    }
    if header.gamma_g2 != G2Affine::generator() {
        return Err(differs("γ"));
    }
    if ic != initial.vk.gamma_abc_g1 {
        return Err(differs("a public input's point"));
    }
    if a != initial.a_query || b_g1 != initial.b_g1_query || b_g2 != initial.b_g2_query {
        return Err(differs("a point of A or B"));
    }

    // δ: the chain of contributions ends at the header's δ, in both groups.
    let verified = contributions.verify()?;
    if contributions.last_delta() != header.delta_g1 {
        return Err(refused(
            "δ is not the one its contributions made: the key was changed after the last contribution".into(),
        ));
    }
    if !same_ratio(
        (G1Affine::generator(), header.delta_g1),
        (G2Affine::generator(), header.delta_g2),
    ) {
        return Err(refused("δ in G2 is not δ in G1".into()));
    }
    if !divided_by_delta(&l, &initial.l_query, header.delta_g2) {
        return Err(refused("L is not the initial L divided by δ".into()));
    }
    // H over the odd points of the domain of 2n roots: a prepared file holds the Lagrange
    // forms of each domain of 2^k points from offset 2^k − 1.
    let forms = ptau.lagrange.as_ref().ok_or(CeremonyError::Unprepared)?;
    let odd: Vec<G1Affine> = (0..n)
        .map(|i| forms.tau_g1[2 * n - 1 + 2 * i + 1])
        .collect();
    if !divided_by_delta(&h, &odd, header.delta_g2) {
        return Err(refused("H is not the initial H divided by δ".into()));
    }
    if verified.iter().all(|c| c.beacon) {
        return Err(refused(
            "no party has contributed, so anyone can forge proofs this key accepts: contribute with `snarkjs zkey contribute` first".into(),
        ));
    }
    Ok(VerifiedZkey {
        key: ProvingKey {
            vk: VerifyingKey {
                alpha_g1: header.alpha_g1,
                beta_g2: header.beta_g2,
                gamma_g2: header.gamma_g2,
                delta_g2: header.delta_g2,
                gamma_abc_g1: ic,
            },
            beta_g1: header.beta_g1,
            delta_g1: header.delta_g1,
            a_query: a,
            b_g1_query: b_g1,
            b_g2_query: b_g2,
            h_query: h,
            l_query: l,
        },
        contributions: verified,
    })
}

fn exact(section: &[u8], size: usize, what: &str) -> Result<(), CeremonyError> {
    if section.len() != size {
        return Err(CeremonyError::Zkey(format!(
            "{what}: {} bytes where the header says {size}",
            section.len()
        )));
    }
    Ok(())
}

struct Header {
    variables: usize,
    public: usize,
    domain: usize,
    alpha_g1: G1Affine,
    beta_g1: G1Affine,
    beta_g2: G2Affine,
    gamma_g2: G2Affine,
    delta_g1: G1Affine,
    delta_g2: G2Affine,
}

impl Header {
    fn read(bytes: &[u8]) -> Result<Self, CeremonyError> {
        let bad = |reason: &str| CeremonyError::Zkey(format!("the header {reason}"));
        let mut reader = Reader(bytes);
        if reader.u32()? != 32 || ptau::integer(reader.take(32)?) != Fq::MODULUS {
            return Err(bad("is for another curve than BN254 (bn128)"));
        }
        if reader.u32()? != 32 || ptau::integer(reader.take(32)?) != Fr::MODULUS {
            return Err(bad("is for another curve than BN254 (bn128)"));
        }
        let (variables, public, domain) = (reader.u32()?, reader.u32()?, reader.u32()?);
        let header = Self {
            variables: variables as usize,
            public: public as usize,
            domain: domain as usize,
            alpha_g1: reader.g1("α")?,
            beta_g1: reader.g1("β")?,
            beta_g2: reader.g2("β")?,
            gamma_g2: reader.g2("γ")?,
            delta_g1: reader.g1("δ")?,
            delta_g2: reader.g2("δ")?,
        };
        if !reader.0.is_empty() {
            return Err(bad("is longer than a Groth16 header"));
        }
        Ok(header)
    }
}

/// Section 10: the hash of the initial key, then each contribution.
struct Contributions {
    circuit_hash: [u8; 64],
    list: Vec<Contribution>,
}

struct Contribution {
    delta_after: G1Affine,
    s: G1Affine,
    s_times_x: G1Affine,
    r_times_x: G2Affine,
    transcript: [u8; 64],
    beacon: bool,
    name: Option<String>,
}

/// The most contributions read: bounds the work of a file made to waste it.
const MAX_CONTRIBUTIONS: u32 = 4096;

impl Contributions {
    fn read(bytes: &[u8]) -> Result<Self, CeremonyError> {
        let mut reader = Reader(bytes);
        let circuit_hash = reader.take(64)?.try_into().expect("64 bytes");
        let count = reader.u32()?;
        if count > MAX_CONTRIBUTIONS {
            return Err(CeremonyError::Zkey(format!(
                "{count} contributions; sn2 reads at most {MAX_CONTRIBUTIONS}"
            )));
        }
        let mut list = Vec::with_capacity(count as usize);
        for i in 0..count {
            let what = format!("contribution {}", i + 1);
            let delta_after = reader.g1(&what)?;
            let s = reader.g1(&what)?;
            let s_times_x = reader.g1(&what)?;
            let r_times_x = reader.g2(&what)?;
            let transcript = reader.take(64)?.try_into().expect("64 bytes");
            let beacon = match reader.u32()? {
                0 => false,
                1 => true,
                other => {
                    return Err(CeremonyError::Zkey(format!(
                        "{what} is of an unknown type {other}"
                    )));
                }
            };
            let length = reader.u32()? as usize;
            let name = parameters(reader.take(length)?)
                .map_err(|reason| CeremonyError::Zkey(format!("{what}: {reason}")))?;
            list.push(Contribution {
                delta_after,
                s,
                s_times_x,
                r_times_x,
                transcript,
                beacon,
                name,
            });
        }
        if !reader.0.is_empty() {
            return Err(CeremonyError::Zkey(
                "bytes after the last contribution".into(),
            ));
        }
        Ok(Self { circuit_hash, list })
    }

    /// δ after the last contribution (the generator before any).
    fn last_delta(&self) -> G1Affine {
        self.list
            .last()
            .map_or(G1Affine::generator(), |c| c.delta_after)
    }

    /// Follows the chain as `snarkjs zkey verify` does; returns each contribution's record.
    fn verify(&self) -> Result<Vec<ZkeyContribution>, CeremonyError> {
        let mut transcript = Blake2b512::new();
        transcript.update(self.circuit_hash);
        let mut delta = G1Affine::generator();
        let mut verified = Vec::with_capacity(self.list.len());
        for (i, c) in self.list.iter().enumerate() {
            let refused =
                |reason: &str| CeremonyError::Refused(format!("contribution {}: {reason}", i + 1));
            let challenge: [u8; 64] = transcript
                .clone()
                .chain_update(g1_uncompressed(&c.s))
                .chain_update(g1_uncompressed(&c.s_times_x))
                .finalize()
                .into();
            if challenge != c.transcript {
                return Err(refused(
                    "its transcript hash is not that of the contributions before it",
                ));
            }
            let r = hash_to_g2(&c.transcript);
            if !same_ratio((c.s, c.s_times_x), (r, c.r_times_x)) {
                return Err(refused("its proof of knowledge does not hold"));
            }
            if !same_ratio((delta, c.delta_after), (r, c.r_times_x)) {
                return Err(refused(
                    "its δ is not the δ before it times the factor it proves it knows",
                ));
            }
            let public_key = [
                &g1_uncompressed(&c.delta_after)[..],
                &g1_uncompressed(&c.s)[..],
                &g1_uncompressed(&c.s_times_x)[..],
                &g2_uncompressed(&c.r_times_x)[..],
                &c.transcript[..],
            ]
            .concat();
            transcript.update(&public_key);
            verified.push(ZkeyContribution {
                name: c.name.clone(),
                hash: Blake2b512::digest(&public_key).into(),
                beacon: c.beacon,
            });
            delta = c.delta_after;
        }
        Ok(verified)
    }
}

/// A contribution's parameters: (type, value) in increasing type; 1 is the name (a length
/// byte, then UTF-8), 2 a beacon's iteration exponent (a byte), 3 its hash (a length byte,
/// then bytes). Returns the name.
fn parameters(mut bytes: &[u8]) -> Result<Option<String>, String> {
    let mut name = None;
    let mut last = 0;
    while let Some((&kind, rest)) = bytes.split_first() {
        if kind <= last {
            return Err("its parameters are out of order".into());
        }
        last = kind;
        let (value, rest) = match kind {
            1 | 3 => {
                let (&length, rest) = rest.split_first().ok_or("a parameter is cut off")?;
                if rest.len() < length as usize {
                    return Err("a parameter is cut off".into());
                }
                rest.split_at(length as usize)
            }
            2 => rest.split_at_checked(1).ok_or("a parameter is cut off")?,
            _ => return Err(format!("an unknown parameter {kind}")),
        };
        if kind == 1 {
            name = Some(String::from_utf8_lossy(value).into_owned());
        }
        bytes = rest;
    }
    Ok(name)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], CeremonyError> {
        let (taken, rest) = self
            .0
            .split_at_checked(count)
            .ok_or_else(|| CeremonyError::Zkey("a section is cut off".into()))?;
        self.0 = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, CeremonyError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn g1(&mut self, what: &str) -> Result<G1Affine, CeremonyError> {
        ptau::g1(self.take(G1_BYTES)?).ok_or_else(|| not_a_point(what))
    }

    fn g2(&mut self, what: &str) -> Result<G2Affine, CeremonyError> {
        ptau::g2(self.take(G2_BYTES)?).ok_or_else(|| not_a_point(what))
    }
}

fn not_a_point(what: &str) -> CeremonyError {
    CeremonyError::Zkey(format!(
        "{what}: not a point of the curve's prime-order group (or a coordinate out of range)"
    ))
}

/// A G1 point as snarkjs hashes it: x then y, big-endian, in normal form; the point at
/// infinity as a flag byte 0x40 and zeros.
fn g1_uncompressed(point: &G1Affine) -> [u8; 64] {
    let mut out = [0u8; 64];
    match point.xy() {
        Some((x, y)) => {
            out[..32].copy_from_slice(&x.into_bigint().to_bytes_be());
            out[32..].copy_from_slice(&y.into_bigint().to_bytes_be());
        }
        None => out[0] = 0x40,
    }
    out
}

/// A G2 point as snarkjs hashes it: each coordinate c1 then c0, big-endian.
fn g2_uncompressed(point: &G2Affine) -> [u8; 128] {
    let mut out = [0u8; 128];
    match point.xy() {
        Some((x, y)) => {
            for (i, part) in [x.c1, x.c0, y.c1, y.c0].iter().enumerate() {
                out[i * 32..(i + 1) * 32].copy_from_slice(&part.into_bigint().to_bytes_be());
            }
        }
        None => out[0] = 0x40,
    }
    out
}

/// snarkjs's point of G2 for a contribution's transcript hash (`hashToG2`): ChaCha20
/// seeded with the hash's first 32 bytes, coordinates drawn as integers below 2^254 taken
/// in Montgomery form, the first x whose curve equation has a root, the root's sign from
/// one more draw, then the cofactor multiplied in. Nobody knows its discrete logarithm.
fn hash_to_g2(transcript: &[u8; 64]) -> G2Affine {
    let seed = std::array::from_fn(|i| {
        u32::from_be_bytes(transcript[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
    });
    let mut rng = ChaCha::new(seed);
    let (x, y) = loop {
        let x = Fq2::new(rng.field(), rng.field());
        let greatest = rng.next_u32() & 1 == 1;
        let y_squared = x.square() * x + ark_bn254::g2::Config::COEFF_B;
        if let Some(y) = y_squared.sqrt() {
            break (x, if greatest != is_negative(&y) { -y } else { y });
        }
    };
    let point = G2Affine::new_unchecked(x, y);
    let cofactor = BigInt::<4>([
        0x345f2299c0f9fa8d,
        0x06ceecda572a2489,
        0xb85045b68181585e,
        0x30644e72e131a029,
    ]);
    let cleared: G2Projective = point.mul_bigint(cofactor);
    cleared.into_affine()
}

/// snarkjs's sign of an element of Fq2: that of c1, or of c0 when c1 is zero; an element of
/// Fq is negative above (q − 1) / 2.
fn is_negative(y: &Fq2) -> bool {
    let negative = |v: &Fq| v.into_bigint() > Fq::MODULUS_MINUS_ONE_DIV_TWO;
    if y.c1.is_zero() {
        negative(&y.c0)
    } else {
        negative(&y.c1)
    }
}

/// ffjavascript's ChaCha20 generator: the state's words 4 to 11 the seed, 12 to 15 a
/// counter; each block of sixteen words is read in order.
struct ChaCha {
    state: [u32; 16],
    block: [u32; 16],
    next: usize,
}

impl ChaCha {
    fn new(seed: [u32; 8]) -> Self {
        let mut state = [0u32; 16];
        state[..4].copy_from_slice(&[0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]);
        state[4..12].copy_from_slice(&seed);
        Self {
            state,
            block: [0; 16],
            next: 16,
        }
    }

    fn next_u32(&mut self) -> u32 {
        if self.next == 16 {
            self.refill();
        }
        self.next += 1;
        self.block[self.next - 1]
    }

    /// Two words, the first the high half.
    fn next_u64(&mut self) -> u64 {
        ((self.next_u32() as u64) << 32) | self.next_u32() as u64
    }

    /// An element of Fq as ffjavascript draws one: four words, least significant first,
    /// below 2^254 and redrawn until below q, taken as its Montgomery form.
    fn field(&mut self) -> Fq {
        loop {
            let mut limbs: [u64; 4] = std::array::from_fn(|_| self.next_u64());
            limbs[3] &= (1 << 62) - 1;
            let value = BigInt(limbs);
            if value < Fq::MODULUS {
                return Fq::new_unchecked(value);
            }
        }
    }

    fn refill(&mut self) {
        let mut block = self.state;
        for _ in 0..10 {
            for [a, b, c, d] in [
                [0, 4, 8, 12],
                [1, 5, 9, 13],
                [2, 6, 10, 14],
                [3, 7, 11, 15],
                [0, 5, 10, 15],
                [1, 6, 11, 12],
                [2, 7, 8, 13],
                [3, 4, 9, 14],
            ] {
                quarter_round(&mut block, a, b, c, d);
            }
        }
        for (word, initial) in block.iter_mut().zip(self.state) {
            *word = word.wrapping_add(initial);
        }
        self.block = block;
        self.next = 0;
        for counter in &mut self.state[12..] {
            *counter = counter.wrapping_add(1);
            if *counter != 0 {
                break;
            }
        }
    }
}

fn quarter_round(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<const N: usize>(hex_text: &str) -> [u8; N] {
        hex::decode(hex_text).unwrap().try_into().unwrap()
    }

    /// One contribution of a zkey made by snarkjs 0.7.6: its transcript hash, and what
    /// snarkjs's `hashToG2` and `toRprUncompressed` make of it.
    #[test]
    fn hash_to_g2_and_the_hashed_forms_are_snarkjs_own() {
        let transcript: [u8; 64] = bytes(
            "928fdb8e38dc3ccb47ffb00ec7618301e5d26192291bb06d42b0da979edabfe6345df39163567b13c30d4fd532e743837960bba85e0c9c3e23e760673a5c3636",
        );
        let expected: [u8; 128] = bytes(
            "a7c2ce13e6fc86c7ae44175087560de8f2dd51c42675928a0bba5493eb4fd51b2f45ab1ab68276d3dd811abde8518a4263f5437069c2b75bddfe4d0d783ba3292d6c962582af4f6fb9dff609a5a2764bc1177f311562adeeeec34004985f820a615afbe99408ce7f4c629a7b8bbb6abe3b05335d13bb9a90080dcd9b2aa43723",
        );
        let point = hash_to_g2(&transcript);
        assert_eq!(point, ptau::g2(&expected).unwrap());
        let uncompressed: [u8; 128] = bytes(
            "2ae61535262b91c69a0dbb3b43b7b08c189f2280841e681de9492dd7b61ec278162c9c8a341aa9e4d32a013a016db162f2b11bf6b7e32bc1a68a4e6d7027add214e70a497ce36e0c7f48d819e75b1624c64c6b6eb6d85ef892bb036e5d76d6aa044e5022985ef1414f03329296f645f51a03c33566870125ad7ef574533ead9e",
        );
        assert_eq!(g2_uncompressed(&point), uncompressed);
    }
}
