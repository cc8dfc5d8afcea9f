//! Powers of tau in snarkjs's `.ptau` format, the format of the Perpetual Powers of Tau and
//! Hermez files for BN254: phase 1 of a Groth16 setup that is sound if any one of its
//! contributors was honest. This module reads such a file and checks that it is what it
//! claims to be: every point on its curve and in its subgroup, and every power consistent
//! with the one before through pairings (one random linear combination per list, so the
//! check costs two multi-scalar multiplications and a pairing per list, not a pairing per
//! point). The chain of contributions inside the file (who contributed, in what order) is
//! counted, not replayed: what the checks establish is that the file holds the powers of
//! one secret τ, α and β, which is what a phase 2 needs.
//!
//! The layout: `ptau`, a version (1) and a section count, then sections of (id u32, size
//! u64, bytes), all little-endian. Section 1 is the header (field size, the base field's
//! modulus, the power `p` and the ceremony's power), 2 holds τ^i·G1 for i < 2^(p+1) − 1,
//! 3 τ^i·G2 for i < 2^p, 4 and 5 α·τ^i·G1 and β·τ^i·G1 for i < 2^p, 6 β·G2, 7 the
//! contributions. Points are affine coordinates in Montgomery form (32 bytes each, G2's
//! as c0, c1), the point at infinity all zeros. `prepare phase2` adds the Lagrange forms,
//! what a phase 2 uses: sections 12 to 15 hold, for each domain of 2^k roots of unity
//! (k from 0 to p, and p + 1 for τ·G1), the points `L_i(τ)·G` of the first 2^k powers of
//! its list. They are checked against the powers: for random `r` on a domain,
//! `Σ r_i·L_i(τ)·G = Σ c_j·τ^j·G` where `c` is the inverse FFT of `r`.

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{BigInt, PrimeField, UniformRand, Zero};
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
use rand_core::OsRng;
use rayon::prelude::*;

/// The largest power read: 2^28 points, the size of the largest public files.
pub const MAX_POWER: u32 = 28;

pub(crate) const G1_BYTES: usize = 64;
pub(crate) const G2_BYTES: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum PtauError {
    #[error("not a powers-of-tau file: {0}")]
    Format(String),
    #[error("{0}")]
    Curve(String),
    #[error("the powers are not consistent: {0}; the file is damaged or was made wrongly")]
    Inconsistent(String),
    #[error("cannot read the powers of tau {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: refused: it has no Lagrange forms; prepare it with `snarkjs powersoftau prepare phase2 IN OUT` (once; the Hermez files are already prepared)",
        path.display()
    )]
    Unprepared { path: std::path::PathBuf },
    #[error("{}: refused: {source}", path.display())]
    Refused {
        path: std::path::PathBuf,
        source: Box<PtauError>,
    },
}

/// The powers of τ, α and β of a `.ptau` file, up to its power.
#[derive(Debug, Clone)]
pub struct Ptau {
    /// The file holds 2^power powers (twice as many τ^i·G1), or more, of which these were
    /// kept ([`Ptau::read_up_to`]).
    pub power: u32,
    /// The power of the ceremony the file was cut from.
    pub ceremony_power: u32,
    pub tau_g1: Vec<G1Affine>,
    pub tau_g2: Vec<G2Affine>,
    pub alpha_tau_g1: Vec<G1Affine>,
    pub beta_tau_g1: Vec<G1Affine>,
    pub beta_g2: G2Affine,
    /// Contributions recorded in the file (0 for a file no one contributed to).
    pub contributions: u32,
    /// The Lagrange forms `prepare phase2` added, when it did.
    pub lagrange: Option<Lagrange>,
}

/// A prepared powers-of-tau file, read only as far as the circuits checked against it
/// need, and kept: a check of a circuit of 2^k reads and keeps the file up to 2^k, and a
/// larger circuit later reads it again up to its own. A miner checking keys of 2^16
/// against a 2^20 file keeps a sixteenth of it.
#[derive(Debug)]
pub struct PtauFile {
    path: std::path::PathBuf,
    /// What was read last, and whether that was all the file holds.
    kept: std::sync::Mutex<Option<(std::sync::Arc<Ptau>, bool)>>,
}

impl PtauFile {
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            kept: std::sync::Mutex::new(None),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The powers circuits of up to 2^`power` constraints and public inputs use (all the
    /// file holds, if it holds fewer), read and checked the first time they are asked
    /// for. Seconds of CPU for large files: call it off the async threads. An error is
    /// not kept, so a file put right is read at the next call.
    pub fn up_to(&self, power: u32) -> Result<std::sync::Arc<Ptau>, PtauError> {
        let mut kept = self.kept.lock().expect("not poisoned");
        if let Some((ptau, whole)) = kept.as_ref()
            && (ptau.power >= power || *whole)
        {
            return Ok(ptau.clone());
        }
        let power = power.max(kept.as_ref().map_or(1, |(ptau, _)| ptau.power));
        let ptau = std::sync::Arc::new(Ptau::read_prepared_file_up_to(&self.path, power)?);
        *kept = Some((ptau.clone(), ptau.power < power));
        Ok(ptau)
    }
}

/// The Lagrange forms of a prepared file, each list's domains one after another (sizes 1,
/// 2, 4, ...).
#[derive(Debug, Clone)]
pub struct Lagrange {
    pub tau_g1: Vec<G1Affine>,
    pub tau_g2: Vec<G2Affine>,
    pub alpha_tau_g1: Vec<G1Affine>,
    pub beta_tau_g1: Vec<G1Affine>,
}

/// The sections of a file of iden3's container (snarkjs's `.ptau` and `.zkey`) by id.
pub(crate) struct Sections<'a>(Vec<(u32, &'a [u8])>);

impl<'a> Sections<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, PtauError> {
        Self::parse_kind(bytes, b"ptau")
    }

    /// A container whose first four bytes are `magic`, of version 1.
    pub(crate) fn parse_kind(bytes: &'a [u8], magic: &[u8; 4]) -> Result<Self, PtauError> {
        let bad = |reason: &str| PtauError::Format(reason.to_string());
        if bytes.len() < 12 || &bytes[..4] != magic {
            return Err(PtauError::Format(format!(
                "it does not start with `{}`",
                String::from_utf8_lossy(magic)
            )));
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != 1 {
            return Err(PtauError::Format(format!(
                "version {version}; sn2 reads version 1"
            )));
        }
        let count = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let mut rest = &bytes[12..];
        let mut sections: Vec<(u32, &[u8])> = Vec::new();
        for _ in 0..count {
            if rest.len() < 12 {
                return Err(bad("a section header is cut off"));
            }
            let id = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
            let size = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
            rest = &rest[12..];
            let size = usize::try_from(size)
                .ok()
                .filter(|&size| size <= rest.len())
                .ok_or_else(|| {
                    PtauError::Format(format!("section {id} runs past the end of the file"))
                })?;
            if sections.iter().any(|(seen, _)| *seen == id) {
                return Err(PtauError::Format(format!("section {id} appears twice")));
            }
            sections.push((id, &rest[..size]));
            rest = &rest[size..];
        }
        if !rest.is_empty() {
            return Err(PtauError::Format(format!(
                "{} bytes after the last section",
                rest.len()
            )));
        }
        Ok(Self(sections))
    }

    pub(crate) fn get(&self, id: u32) -> Option<&'a [u8]> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, s)| *s)
    }

    pub(crate) fn require(&self, id: u32, what: &str) -> Result<&'a [u8], PtauError> {
        self.get(id)
            .ok_or_else(|| PtauError::Format(format!("section {id} ({what}) is missing")))
    }
}

/// The `.ptau` file at `path` with each section cut to the prefix that circuits of up to
/// 2^`power` points use ([`Ptau::read_up_to`] reads no further), and the sections it does
/// not read left empty: what it reads is then the same as from the whole file, read into
/// memory only as far as it goes. A file whose section table is not sound is read whole,
/// so that reading it says what is wrong.
fn read_prefixes(path: &std::path::Path, power: u32) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let whole = |mut file: std::fs::File| -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let mut head = [0u8; 12];
    if len < 12 || file.read_exact(&mut head).is_err() || &head[..4] != b"ptau" {
        return whole(file);
    }
    let n = 1u64 << power;
    let (g1, g2) = (G1_BYTES as u64, G2_BYTES as u64);
    // What `read_up_to` and `Lagrange::read` take of each section when they keep 2^power.
    let used = |id: u32| -> u64 {
        match id {
            1 => u64::MAX,
            2 => 2 * n * g1,
            3 => n * g2,
            4 | 5 => n * g1,
            6 => g2,
            7 => 4,
            12 => (4 * n - 1) * g1,
            13 => (2 * n - 1) * g2,
            14 | 15 => (2 * n - 1) * g1,
            _ => 0,
        }
    };
    let count = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    let mut out = head.to_vec();
    let mut offset = 12u64;
    for _ in 0..count {
        let mut header = [0u8; 12];
        if offset + 12 > len {
            return whole(file);
        }
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut header)?;
        let id = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let size = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
        let Some(end) = (offset + 12).checked_add(size).filter(|&end| end <= len) else {
            return whole(file);
        };
        let kept = size.min(used(id));
        let mut data = vec![0u8; kept as usize];
        file.read_exact(&mut data)?;
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&kept.to_le_bytes());
        out.extend_from_slice(&data);
        offset = end;
    }
    if offset != len {
        return whole(file);
    }
    Ok(out)
}

/// A 256-bit integer from 32 little-endian bytes.
pub(crate) fn integer(bytes: &[u8]) -> BigInt<4> {
    BigInt::new(std::array::from_fn(|i| {
        u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    }))
}

/// A base field element from 32 little-endian bytes in Montgomery form.
fn field(bytes: &[u8]) -> Option<Fq> {
    let repr = integer(bytes);
    (repr < Fq::MODULUS).then(|| Fq::new_unchecked(repr))
}

/// A G1 point in snarkjs's form (x, y in Montgomery form; zeros for infinity), on the
/// curve and in its group.
pub(crate) fn g1(bytes: &[u8]) -> Option<G1Affine> {
    let (x, y) = (field(&bytes[..32])?, field(&bytes[32..64])?);
    if x.is_zero() && y.is_zero() {
        return Some(G1Affine::zero());
    }
    let point = G1Affine::new_unchecked(x, y);
    (point.is_on_curve() && point.is_in_correct_subgroup_assuming_on_curve()).then_some(point)
}

/// A G2 point in snarkjs's form (each coordinate c0 then c1), on the curve and in its
/// group.
pub(crate) fn g2(bytes: &[u8]) -> Option<G2Affine> {
    let coordinates: Vec<Fq> = (0..4)
        .map(|i| field(&bytes[i * 32..i * 32 + 32]))
        .collect::<Option<_>>()?;
    let x = Fq2::new(coordinates[0], coordinates[1]);
    let y = Fq2::new(coordinates[2], coordinates[3]);
    if x.is_zero() && y.is_zero() {
        return Some(G2Affine::zero());
    }
    let point = G2Affine::new_unchecked(x, y);
    (point.is_on_curve() && point.is_in_correct_subgroup_assuming_on_curve()).then_some(point)
}

/// `count` points of `size` bytes each from `section`, each decoded by `decode` and
/// checked (on the curve, in the subgroup) in parallel.
pub(crate) fn points<P: Send>(
    section: &[u8],
    count: usize,
    size: usize,
    what: &str,
    decode: fn(&[u8]) -> Option<P>,
) -> Result<Vec<P>, PtauError> {
    if section.len() < count * size {
        return Err(PtauError::Format(format!(
            "{what}: {} bytes, {} expected",
            section.len(),
            count * size
        )));
    }
    section[..count * size]
        .par_chunks(size)
        .enumerate()
        .map(|(i, bytes)| {
            decode(bytes).ok_or_else(|| {
                PtauError::Curve(format!(
                    "{what}, point {i}: not a point of the curve's prime-order group (or a coordinate out of range)"
                ))
            })
        })
        .collect()
}

impl Ptau {
    /// Reads a `.ptau` file and checks it whole: each point ([`Ptau::read`]) and the
    /// powers' consistency ([`Ptau::check`]).
    pub fn read_checked(bytes: &[u8]) -> Result<Self, PtauError> {
        let ptau = Self::read(bytes)?;
        ptau.check()?;
        Ok(ptau)
    }

    /// Reads the `.ptau` file at `path`, checks it whole, and requires the Lagrange forms
    /// that a phase 2 starts from: what a validator's ceremonies and a miner's check of
    /// them need. Seconds of CPU for large files: call it off the async threads.
    pub fn read_prepared_file(path: &std::path::Path) -> Result<Self, PtauError> {
        Self::read_prepared_file_up_to(path, MAX_POWER)
    }

    /// [`Self::read_prepared_file`], keeping (and checking) only what circuits of up to
    /// 2^`power` constraints and public inputs use, when the file holds more.
    pub fn read_prepared_file_up_to(path: &std::path::Path, power: u32) -> Result<Self, PtauError> {
        // Only the prefixes used are read from disk: a 2^28 file is gigabytes.
        let read = if power >= MAX_POWER {
            std::fs::read(path)
        } else {
            read_prefixes(path, power)
        };
        let bytes = read.map_err(|source| PtauError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let ptau = Self::read_up_to(&bytes, power)
            .and_then(|ptau| ptau.check().map(|()| ptau))
            .map_err(|source| PtauError::Refused {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        drop(bytes);
        if !ptau.prepared() {
            return Err(PtauError::Unprepared {
                path: path.to_path_buf(),
            });
        }
        Ok(ptau)
    }

    /// Reads a `.ptau` file, checking each point; the powers' consistency is [`Ptau::check`].
    pub fn read(bytes: &[u8]) -> Result<Self, PtauError> {
        Self::read_up_to(bytes, MAX_POWER)
    }

    /// [`Self::read`], keeping only the powers and Lagrange forms that circuits of up to
    /// 2^`kept` points use (all of them when the file holds no more). Each list of the file
    /// starts with those, so this reads prefixes. τ·G1 then keeps 2^(kept+1) powers, not
    /// 2^(kept+1) − 1: its largest domain of Lagrange forms, 2^(kept+1) points, is then a
    /// whole one of the file, which the check needs every power of.
    pub fn read_up_to(bytes: &[u8], kept: u32) -> Result<Self, PtauError> {
        let sections = Sections::parse(bytes)?;
        let header = sections.require(1, "header")?;
        if header.len() != 4 + 32 + 8 {
            return Err(PtauError::Format(
                "the header is not that of a 32-byte field".into(),
            ));
        }
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        if word(0) != 32 || integer(&header[4..36]) != Fq::MODULUS {
            return Err(PtauError::Format(
                "the file is for another curve than BN254 (bn128)".into(),
            ));
        }
        let (power, ceremony_power) = (word(36), word(40));
        if power == 0 || power > MAX_POWER || ceremony_power < power {
            return Err(PtauError::Format(format!(
                "power {power} (of a ceremony of power {ceremony_power}); 1 to {MAX_POWER} expected"
            )));
        }
        let (power, cut) = (power.min(kept.max(1)), kept < power);
        let n = 1usize << power;
        let tau_g1 = points(
            sections.require(2, "τ·G1")?,
            if cut { 2 * n } else { 2 * n - 1 },
            G1_BYTES,
            "τ·G1",
            g1,
        )?;
        let tau_g2 = points(sections.require(3, "τ·G2")?, n, G2_BYTES, "τ·G2", g2)?;
        let alpha_tau_g1 = points(sections.require(4, "α·τ·G1")?, n, G1_BYTES, "α·τ·G1", g1)?;
        let beta_tau_g1 = points(sections.require(5, "β·τ·G1")?, n, G1_BYTES, "β·τ·G1", g1)?;
        let beta_g2 = points(sections.require(6, "β·G2")?, 1, G2_BYTES, "β·G2", g2)?[0];
        let contributions = match sections.get(7) {
            Some(section) if section.len() >= 4 => {
                u32::from_le_bytes(section[..4].try_into().expect("4 bytes"))
            }
            _ => 0,
        };
        Ok(Self {
            power,
            ceremony_power,
            tau_g1,
            tau_g2,
            alpha_tau_g1,
            beta_tau_g1,
            beta_g2,
            contributions,
            lagrange: Lagrange::read(&sections, n)?,
        })
    }

    /// The prepared powers for the given τ, α and β, as a one-person ceremony would make
    /// them: whoever knows the secrets can forge proofs for any key made from them. For
    /// tests (which need the secrets) and benchmarks (whose work does not depend on who
    /// knows them).
    pub fn from_secrets(power: u32, tau: Fr, alpha: Fr, beta: Fr) -> Self {
        let n = 1usize << power;
        let powers: Vec<Fr> = std::iter::successors(Some(Fr::from(1u64)), |p| Some(*p * tau))
            .take(2 * n - 1)
            .collect();
        // The Lagrange forms of domains of 1, 2, 4, ... points, as `prepare phase2` adds.
        // τ·G1 has one domain more, of 2n points, made from its 2n − 1 powers with the
        // missing τ^(2n−1) taken as zero: its form i lacks that power's term, ω^i/2n·τ^(2n−1).
        let lagrange = |largest: u32, factor: Fr| -> Vec<Fr> {
            (0..=largest)
                .flat_map(|k| {
                    let domain = Radix2EvaluationDomain::<Fr>::new(1 << k)
                        .expect("BN254 has domains up to 2^28");
                    let mut forms = domain.evaluate_all_lagrange_coefficients(tau);
                    if k > power {
                        let missing =
                            ark_ff::Field::pow(&tau, [2 * n as u64 - 1]) * domain.size_inv;
                        for (form, root) in forms.iter_mut().zip(domain.elements()) {
                            *form -= root * missing;
                        }
                    }
                    forms
                })
                .map(|l| l * factor)
                .collect()
        };
        let times = |list: &[Fr], factor: Fr| list.iter().map(|p| *p * factor).collect::<Vec<_>>();
        let g1_table = ark_ec::scalar_mul::BatchMulPreprocessing::new(
            G1Projective::from(G1Affine::generator()),
            8 * n,
        );
        let g2_table = ark_ec::scalar_mul::BatchMulPreprocessing::new(
            G2Projective::from(G2Affine::generator()),
            3 * n,
        );
        let g1 = |scalars: &[Fr]| g1_table.batch_mul(scalars);
        let g2 = |scalars: &[Fr]| g2_table.batch_mul(scalars);
        let one = Fr::from(1u64);
        Self {
            power,
            ceremony_power: power,
            tau_g1: g1(&powers),
            tau_g2: g2(&powers[..n]),
            alpha_tau_g1: g1(&times(&powers[..n], alpha)),
            beta_tau_g1: g1(&times(&powers[..n], beta)),
            beta_g2: (G2Affine::generator() * beta).into_affine(),
            contributions: 1,
            lagrange: Some(Lagrange {
                tau_g1: g1(&lagrange(power + 1, one)),
                tau_g2: g2(&lagrange(power, one)),
                alpha_tau_g1: g1(&lagrange(power, alpha)),
                beta_tau_g1: g1(&lagrange(power, beta)),
            }),
        }
    }

    /// Whether the file holds the Lagrange forms a phase 2 needs.
    pub fn prepared(&self) -> bool {
        self.lagrange.is_some()
    }

    /// Checks that the points are the powers of one τ, α and β: each list's points are
    /// its first point times τ^i (for random `r`, `e(Σ r_i·P_i, τ·G2) = e(Σ r_i·P_(i+1),
    /// G2)`), the lists start where they must, and none of τ, α, β is zero.
    pub fn check(&self) -> Result<(), PtauError> {
        let g1 = G1Affine::generator();
        let g2 = G2Affine::generator();
        let wrong = |reason: &str| Err(PtauError::Inconsistent(reason.to_string()));
        if self.tau_g1[0] != g1 || self.tau_g2[0] != g2 {
            return wrong("the powers do not start at the curves' generators");
        }
        if self.tau_g1.len() < 2 || self.tau_g1[1].is_zero() || self.tau_g2[1].is_zero() {
            return wrong("τ is zero");
        }
        if self.alpha_tau_g1[0].is_zero() || self.beta_tau_g1[0].is_zero() {
            return wrong("α or β is zero");
        }
        let tau = self.tau_g2[1];
        // Successive G1 points differ by τ, checked in G2 against τ·G2.
        for (list, what) in [
            (&self.tau_g1, "τ^i·G1"),
            (&self.alpha_tau_g1, "α·τ^i·G1"),
            (&self.beta_tau_g1, "β·τ^i·G1"),
        ] {
            let (here, next) = shifted_sums::<G1Projective>(list);
            if !equal_pairings((here, tau), (next, g2)) {
                return Err(PtauError::Inconsistent(format!(
                    "{what}: one point is not the one before times τ"
                )));
            }
        }
        let (here, next) = shifted_sums::<G2Projective>(&self.tau_g2);
        if !equal_pairings((self.tau_g1[1], here), (g1, next)) {
            return wrong("τ^i·G2: one point is not the one before times τ");
        }
        if !equal_pairings((self.beta_tau_g1[0], g2), (g1, self.beta_g2)) {
            return wrong("β·G2 is not β times G2 for the β of β·τ^i·G1");
        }
        if let Some(lagrange) = &self.lagrange {
            let lists_g1 = [
                (&lagrange.tau_g1, &self.tau_g1, "τ·G1"),
                (&lagrange.alpha_tau_g1, &self.alpha_tau_g1, "α·τ·G1"),
                (&lagrange.beta_tau_g1, &self.beta_tau_g1, "β·τ·G1"),
            ];
            for (forms, powers, what) in lists_g1 {
                if !lagrange_matches::<G1Projective>(forms, powers) {
                    return Err(PtauError::Inconsistent(format!(
                        "the Lagrange form of {what} is not that of its powers"
                    )));
                }
            }
            if !lagrange_matches::<G2Projective>(&lagrange.tau_g2, &self.tau_g2) {
                return wrong("the Lagrange form of τ·G2 is not that of its powers");
            }
        }
        Ok(())
    }
}

impl Lagrange {
    /// Sections 12 to 15 of a file of 2^power powers (`n`), if all are there.
    fn read(sections: &Sections, n: usize) -> Result<Option<Self>, PtauError> {
        if (12..=15).all(|id| sections.get(id).is_none()) {
            return Ok(None);
        }
        // Domains of 1, 2, ..., n points: 2n − 1 in all; τ·G1 has one more, of 2n.
        Ok(Some(Self {
            tau_g1: points(
                sections.require(12, "τ·G1 Lagrange")?,
                4 * n - 1,
                G1_BYTES,
                "τ·G1 Lagrange",
                g1,
            )?,
            tau_g2: points(
                sections.require(13, "τ·G2 Lagrange")?,
                2 * n - 1,
                G2_BYTES,
                "τ·G2 Lagrange",
                g2,
            )?,
            alpha_tau_g1: points(
                sections.require(14, "α·τ·G1 Lagrange")?,
                2 * n - 1,
                G1_BYTES,
                "α·τ·G1 Lagrange",
                g1,
            )?,
            beta_tau_g1: points(
                sections.require(15, "β·τ·G1 Lagrange")?,
                2 * n - 1,
                G1_BYTES,
                "β·τ·G1 Lagrange",
                g1,
            )?,
        }))
    }
}

/// Whether `forms`, the Lagrange forms over domains of 1, 2, 4, ... points, are those of
/// `powers` (the points `τ^j·P`, as many as there are; a domain larger than them was made
/// from the powers there are, the rest taken as zero). One random combination over all the
/// domains: `Σ r_i·L_i(τ)·P = Σ c_j·τ^j·P` with `c` the inverse FFT of each domain's `r`.
fn lagrange_matches<G>(forms: &[G::MulBase], powers: &[G::MulBase]) -> bool
where
    G: VariableBaseMSM<ScalarField = Fr>,
{
    let r = random_scalars(forms.len());
    let mut coefficients = vec![Fr::zero(); powers.len()];
    let mut start = 0;
    let mut size = 1;
    while start < forms.len() {
        let Some(domain) = Radix2EvaluationDomain::<Fr>::new(size) else {
            return false;
        };
        let end = (start + size).min(forms.len());
        let mut c = r[start..end].to_vec();
        c.resize(size, Fr::zero());
        domain.ifft_in_place(&mut c);
        for (sum, c) in coefficients.iter_mut().zip(c) {
            *sum += c;
        }
        start = end;
        size *= 2;
    }
    let Ok(lhs) = G::msm(forms, &r) else {
        return false;
    };
    let Ok(rhs) = G::msm(powers, &coefficients) else {
        return false;
    };
    lhs == rhs
}

fn random_scalars(count: usize) -> Vec<Fr> {
    let mut rng = OsRng;
    (0..count).map(|_| Fr::rand(&mut rng)).collect()
}

/// `(Σ r_i·P_i, Σ r_i·P_(i+1))` over consecutive points, for fresh random `r`.
fn shifted_sums<G>(points: &[G::Affine]) -> (G::Affine, G::Affine)
where
    G: CurveGroup<ScalarField = Fr> + VariableBaseMSM<MulBase = <G as CurveGroup>::Affine>,
{
    let r = random_scalars(points.len() - 1);
    let here = G::msm(&points[..points.len() - 1], &r).expect("equal lengths");
    let next = G::msm(&points[1..], &r).expect("equal lengths");
    (here.into_affine(), next.into_affine())
}

/// Whether `e(a.0, a.1) = e(b.0, b.1)`, as one multi-pairing.
fn equal_pairings(a: (G1Affine, G2Affine), b: (G1Affine, G2Affine)) -> bool {
    Bn254::multi_pairing([a.0, -b.0], [a.1, b.1]).is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::short_weierstrass::SWCurveConfig;
    use ark_ff::Field;

    fn montgomery_bytes(x: Fq) -> Vec<u8> {
        x.0.0.iter().flat_map(|limb| limb.to_le_bytes()).collect()
    }

    #[test]
    fn powers_made_from_secrets_pass_the_checks_a_file_does() {
        let ptau = Ptau::from_secrets(5, Fr::from(3u64), Fr::from(5u64), Fr::from(7u64));
        if let Err(e) = ptau.check() {
            panic!("{e}");
        }
        let mut wrong = ptau.clone();
        wrong.lagrange.as_mut().unwrap().tau_g1.swap(8, 9);
        assert!(wrong.check().is_err());
    }

    #[test]
    fn a_g2_point_on_the_curve_but_outside_the_group_is_refused() {
        // BN254's G2 curve has a large cofactor: a point found by solving for y from a
        // small x is on the curve and, but for a vanishing chance, outside the subgroup.
        let b = ark_bn254::g2::Config::COEFF_B;
        let (x, y) = (1u64..)
            .find_map(|i| {
                let x = Fq2::new(Fq::from(i), Fq::zero());
                (x * x * x + b).sqrt().map(|y| (x, y))
            })
            .unwrap();
        let point = G2Affine::new_unchecked(x, y);
        assert!(point.is_on_curve() && !point.is_in_correct_subgroup_assuming_on_curve());
        let bytes: Vec<u8> = [x.c0, x.c1, y.c0, y.c1]
            .into_iter()
            .flat_map(montgomery_bytes)
            .collect();
        assert!(g2(&bytes).is_none());
        // The generator, written the same way, is read back.
        let generator = G2Affine::generator();
        let (gx, gy) = generator.xy().unwrap();
        let bytes: Vec<u8> = [gx.c0, gx.c1, gy.c0, gy.c1]
            .into_iter()
            .flat_map(montgomery_bytes)
            .collect();
        assert_eq!(g2(&bytes), Some(generator));
    }

    #[test]
    fn a_coordinate_at_or_above_the_modulus_is_refused() {
        let modulus: Vec<u8> = Fq::MODULUS
            .0
            .iter()
            .flat_map(|limb| limb.to_le_bytes())
            .collect();
        assert!(field(&modulus).is_none());
        let mut below = Fq::MODULUS;
        below.0[0] -= 1;
        let below: Vec<u8> = below.0.iter().flat_map(|limb| limb.to_le_bytes()).collect();
        assert!(field(&below).is_some());
        // The point at infinity is all zeros.
        assert_eq!(g1(&[0; 64]), Some(G1Affine::zero()));
    }

    #[test]
    fn malformed_files_get_a_format_error_and_never_panic() {
        let mut file = b"ptau".to_vec();
        file.extend(1u32.to_le_bytes());
        file.extend(1u32.to_le_bytes());
        for tail in [
            vec![],
            vec![1, 0, 0, 0],
            [1u32.to_le_bytes().to_vec(), u64::MAX.to_le_bytes().to_vec()].concat(),
            [1u32.to_le_bytes().to_vec(), 0u64.to_le_bytes().to_vec()].concat(),
        ] {
            let bytes = [file.clone(), tail].concat();
            assert!(matches!(Ptau::read(&bytes), Err(PtauError::Format(_))));
        }
    }
}
