//! The NAR hash and size of a path, computed here rather than taken from Nix: a release pins
//! them, and the check must not trust the store that is being checked.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix_derivation::NixHash;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path} as a NAR: {reason}")]
pub struct NarError {
    pub path: PathBuf,
    pub reason: String,
}

/// What Nix records of a store path's contents: the SHA-256 of its NAR serialisation and
/// that serialisation's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarDigest {
    pub hash: NixHash,
    pub size: u64,
}

/// Serialises `path` as a NAR (as `nix-store --dump` does) and hashes it as it streams.
pub fn nar_digest(path: &Path) -> Result<NarDigest, NarError> {
    let error = |reason: String| NarError {
        path: path.to_path_buf(),
        reason,
    };
    let mut encoder = nix_nar::Encoder::new(path).map_err(|e| error(e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match encoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(error(e.to_string())),
        };
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok(NarDigest {
        hash: NixHash::Sha256(hasher.finalize().into()),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashes_like_nix() {
        // `nix hash path --type sha256 --base32` of a regular file holding "hello\n",
        // and its NAR's length.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hello");
        std::fs::write(&file, "hello\n").unwrap();
        let digest = nar_digest(&file).unwrap();
        assert_eq!(digest.size, 120);
        assert_eq!(
            digest.hash.to_nix_nixbase32_string(),
            "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw"
        );
    }

    #[test]
    fn a_missing_path_is_an_error_with_its_name() {
        let error = nar_digest(Path::new("/nonexistent/sn2")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/sn2"), "{error}");
    }
}
