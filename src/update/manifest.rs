//! The release manifest: a small line-based document, one `key: value` per line in a fixed
//! order, followed by its signatures. What is signed is the exact bytes of the body as they
//! are on disk (every line before the first `signature:`); the parser accepts only the one
//! canonical spelling of each value, so those bytes and the parsed manifest say the same
//! thing, and nothing is re-serialised before a signature is checked.
//!
//! ```text
//! sn2-release-manifest: 1
//! channel: stable
//! serial: 7
//! issued-at: 2026-11-24T12:00:00Z
//! expires-at: 2026-12-24T12:00:00Z
//! flake-url: github:sn2/sn2
//! flake-rev: 0f3c…(40 hex digits)
//! flake-nar-hash: sha256-…(SRI)
//! flake-last-modified: 1770136044
//! output: x86_64-linux /nix/store/…-sn2-0.1.0 sha256:…(Nix base32) 12345678
//! signature: sn2-release-1:…(base64)
//! ```
//!
//! The first line is the domain tag: no narinfo fingerprint (`1;/nix/store/…`) or other
//! document a Nix key signs begins with it, so a signature cannot be carried over.

use std::fmt::Write as _;

use nix_derivation::{NixHash, StorePath};

use super::nixkey::NixSignature;

/// The first line of every manifest of this version.
pub const DOMAIN_TAG: &str = "sn2-release-manifest: 1";

/// The largest manifest read; a real one is well under 2 KiB.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest is {0} bytes; at most {MAX_MANIFEST_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the manifest is not UTF-8 text")]
    NotText,
    #[error(
        "not an sn2 release manifest (version 1): it must begin with `{DOMAIN_TAG}`, followed by a newline"
    )]
    NotAManifest,
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("the manifest has no signature")]
    Unsigned,
}

/// One built output of the flake revision: what `nix build` gives on `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub system: String,
    pub store_path: StorePath,
    pub nar_hash: NixHash,
    pub nar_size: u64,
}

/// The flake revision a release is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlakeRef {
    pub url: String,
    pub rev: String,
    pub nar_hash: NixHash,
    pub last_modified: u64,
}

/// What a release says, signatures aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseBody {
    pub channel: String,
    pub serial: u64,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    pub expires_at: u64,
    pub flake: FlakeRef,
    /// Sorted by system, one per system.
    pub outputs: Vec<Output>,
}

/// A parsed manifest: its body, the exact bytes signed, and the signatures.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub body: ReleaseBody,
    pub signed_bytes: Vec<u8>,
    pub signatures: Vec<NixSignature>,
}

impl FlakeRef {
    /// The flake reference pinned to the revision, as `nix build` and `--override-input`
    /// take it: `github:owner/repo/REV` for the forges' short forms, else `URL?rev=REV`.
    pub fn at_rev(&self) -> String {
        for forge in ["github:", "gitlab:", "sourcehut:"] {
            if let Some(rest) = self.url.strip_prefix(forge) {
                let path = rest.split(['?', '#']).next().unwrap_or(rest);
                let repository: Vec<&str> = path.split('/').take(2).collect();
                return format!("{forge}{}/{}", repository.join("/"), self.rev);
            }
        }
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}rev={}", self.url, self.rev)
    }
}

impl ReleaseBody {
    /// The canonical text of the body: the bytes a signer signs.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "{DOMAIN_TAG}");
        let _ = writeln!(text, "channel: {}", self.channel);
        let _ = writeln!(text, "serial: {}", self.serial);
        let _ = writeln!(text, "issued-at: {}", format_time(self.issued_at));
        let _ = writeln!(text, "expires-at: {}", format_time(self.expires_at));
        let _ = writeln!(text, "flake-url: {}", self.flake.url);
        let _ = writeln!(text, "flake-rev: {}", self.flake.rev);
        let _ = writeln!(
            text,
            "flake-nar-hash: {}",
            self.flake.nar_hash.to_sri_string()
        );
        let _ = writeln!(text, "flake-last-modified: {}", self.flake.last_modified);
        for output in &self.outputs {
            let _ = writeln!(
                text,
                "output: {} {} {} {}",
                output.system,
                output.store_path.to_absolute_path(),
                output.nar_hash.to_nix_nixbase32_string(),
                output.nar_size
            );
        }
        text
    }

    /// Checks what the format cannot express: a release that parses is a sensible one.
    pub fn validate(&self) -> Result<(), String> {
        check_word("channel", &self.channel)?;
        check_word("flake-url", &self.flake.url)?;
        if self.flake.rev.len() != 40
            || !self
                .flake
                .rev
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "flake-rev `{}` is not a git revision (40 lowercase hex digits)",
                self.flake.rev
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err("expires-at is not after issued-at".into());
        }
        if self.outputs.is_empty() {
            return Err("there is no output".into());
        }
        for pair in self.outputs.windows(2) {
            if pair[0].system >= pair[1].system {
                return Err(format!(
                    "outputs must be sorted by system, one each: `{}` comes before `{}`",
                    pair[0].system, pair[1].system
                ));
            }
        }
        for output in &self.outputs {
            check_word("output system", &output.system)?;
            if !matches!(output.nar_hash, NixHash::Sha256(_)) {
                return Err(format!("the NAR hash of {} is not SHA-256", output.system));
            }
        }
        if !matches!(self.flake.nar_hash, NixHash::Sha256(_)) {
            return Err("flake-nar-hash is not SHA-256".into());
        }
        Ok(())
    }

    /// The output built for `system`, if the release has one.
    pub fn output(&self, system: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.system == system)
    }
}

fn check_word(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{what} `{value}` must be non-empty printable ASCII without spaces"
        ));
    }
    Ok(())
}

impl Manifest {
    /// Parses manifest bytes, refusing any spelling but the canonical one.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotText)?;
        if !text.starts_with(&format!("{DOMAIN_TAG}\n")) {
            return Err(ManifestError::NotAManifest);
        }
        let body_len = text.find("\nsignature: ").map_or(text.len(), |i| i + 1);
        let (body_text, signature_text) = text.split_at(body_len);
        let body = parse_body(body_text)?;
        let first_signature_line = body_text.lines().count() + 1;
        let mut signatures = Vec::new();
        for (i, line) in lines(signature_text)?.into_iter().enumerate() {
            let line_number = first_signature_line + i;
            let value = line
                .strip_prefix("signature: ")
                .ok_or_else(|| ManifestError::Line {
                    line: line_number,
                    reason: "only `signature:` lines may follow the first signature".into(),
                })?;
            let signature = NixSignature::parse(value).map_err(|e| ManifestError::Line {
                line: line_number,
                reason: format!("not a Nix signature (NAME:BASE64): {e}"),
            })?;
            if signature.to_nix_string() != value {
                return Err(ManifestError::Line {
                    line: line_number,
                    reason: "the signature's base64 is not in canonical form".into(),
                });
            }
            signatures.push(signature);
        }
        if signatures.is_empty() {
            return Err(ManifestError::Unsigned);
        }
        Ok(Self {
            body,
            signed_bytes: body_text.as_bytes().to_vec(),
            signatures,
        })
    }

    /// The whole document: body and signatures.
    pub fn render(&self) -> String {
        let mut text = String::from_utf8(self.signed_bytes.clone()).expect("parsed as UTF-8");
        for signature in &self.signatures {
            let _ = writeln!(text, "signature: {signature}");
        }
        text
    }
}

/// The lines of `text`, which must be newline-terminated, without carriage returns.
fn lines(text: &str) -> Result<Vec<&str>, ManifestError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(text) = text.strip_suffix('\n') else {
        return Err(ManifestError::Line {
            line: text.lines().count(),
            reason: "the last line has no newline".into(),
        });
    };
    Ok(text.split('\n').collect())
}

/// Parses the body (the bytes before the first signature) of a manifest.
pub fn parse_body(body_text: &str) -> Result<ReleaseBody, ManifestError> {
    let lines = lines(body_text)?;
    let mut fields = lines.iter().enumerate().skip(1);
    let mut take = |key: &str| -> Result<(usize, &str), ManifestError> {
        let (index, line) = fields.next().ok_or_else(|| ManifestError::Line {
            line: lines.len() + 1,
            reason: format!("`{key}:` is missing"),
        })?;
        let value = line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(": "))
            .ok_or_else(|| ManifestError::Line {
                line: index + 1,
                reason: format!("expected `{key}: …` here"),
            })?;
        Ok((index + 1, value))
    };
    let at = |line: usize| move |reason: String| ManifestError::Line { line, reason };

    let (_, channel) = take("channel")?;
    let (line, serial) = take("serial")?;
    let serial = parse_decimal(serial).map_err(at(line))?;
    let (line, issued_at) = take("issued-at")?;
    let issued_at = parse_time(issued_at).map_err(at(line))?;
    let (line, expires_at) = take("expires-at")?;
    let expires_at = parse_time(expires_at).map_err(at(line))?;
    let (_, url) = take("flake-url")?;
    let (_, rev) = take("flake-rev")?;
    let (line, flake_hash) = take("flake-nar-hash")?;
    let flake_nar_hash = NixHash::parse(flake_hash)
        .ok()
        .filter(|h| h.to_sri_string() == flake_hash)
        .ok_or_else(|| at(line)(format!("`{flake_hash}` is not an SRI hash (sha256-…)")))?;
    let (line, last_modified) = take("flake-last-modified")?;
    let last_modified = parse_decimal(last_modified).map_err(at(line))?;

    let mut outputs = Vec::new();
    // The domain tag and the eight fields above come first.
    for (index, line) in lines.iter().enumerate().skip(9) {
        let line_number = index + 1;
        let value = line.strip_prefix("output: ").ok_or_else(|| {
            at(line_number)(
                "expected `output: SYSTEM STORE-PATH NAR-HASH NAR-SIZE` or a signature".into(),
            )
        })?;
        outputs.push(parse_output(value).map_err(at(line_number))?);
    }
    let body = ReleaseBody {
        channel: channel.to_string(),
        serial,
        issued_at,
        expires_at,
        flake: FlakeRef {
            url: url.to_string(),
            rev: rev.to_string(),
            nar_hash: flake_nar_hash,
            last_modified,
        },
        outputs,
    };
    body.validate().map_err(at(lines.len()))?;
    // Every value was checked to be in canonical form, so this holds for any body that
    // parses; it is the guarantee that the signed bytes are the manifest.
    if body.render() != body_text {
        return Err(at(1)("the manifest is not in canonical form".into()));
    }
    Ok(body)
}

fn parse_output(value: &str) -> Result<Output, String> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [system, path, hash, size] = parts[..] else {
        return Err("expected `output: SYSTEM STORE-PATH NAR-HASH NAR-SIZE`".into());
    };
    let store_path = StorePath::from_absolute_path(path.as_bytes())
        .ok()
        .filter(|p| p.to_absolute_path() == path)
        .ok_or_else(|| format!("`{path}` is not a /nix/store path"))?;
    let nar_hash = NixHash::parse(hash)
        .ok()
        .filter(|h| matches!(h, NixHash::Sha256(_)) && h.to_nix_nixbase32_string() == hash)
        .ok_or_else(|| format!("`{hash}` is not a NAR hash (sha256: and 52 Nix base32 digits)"))?;
    Ok(Output {
        system: system.to_string(),
        store_path,
        nar_hash,
        nar_size: parse_decimal(size)?,
    })
}

fn parse_decimal(text: &str) -> Result<u64, String> {
    let canonical = !text.is_empty() && (text == "0" || !text.starts_with('0'));
    text.parse::<u64>()
        .ok()
        .filter(|_| canonical && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("`{text}` is not a decimal number"))
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC, no fractions) as seconds since the epoch.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a UTC time of the form 2026-11-24T12:00:00Z");
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<u64, String> {
        let digits = &text[range];
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map_err(|_| bad())
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || hour > 23 || minute > 59 {
        return Err(bad());
    }
    if second > 59 || day > days_in_month(year, month) {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(seconds: u64) -> String {
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let time = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3_600,
        time % 3_600 / 60,
        time % 60
    )
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil and civil_from_days, for dates from 1970 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(crate) mod tests;
