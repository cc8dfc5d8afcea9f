//! Signed releases. A release is a manifest naming a flake revision and, per system, the
//! store path it builds with that path's NAR hash and size, signed with ed25519 keys in Nix's
//! format. This module owns the manifest format (`manifest`), the keys (`nixkey`), NAR hashing
//! (`nar`), the checks a node makes before acting on a release (`verify`), the record of
//! releases accepted (`state`) and the daemons' polling and acting on releases (`watch`). Nix, not sn2, installs a release: a binary never replaces
//! itself.

pub mod manifest;
pub mod nar;
pub mod nixkey;
pub mod state;
pub mod testing;
pub mod verify;
pub mod watch;

use std::path::{Path, PathBuf};

use nix_derivation::StorePath;

pub use manifest::{FlakeRef, Manifest, Output, ReleaseBody};
pub use nixkey::SecretKey;
pub use verify::{Policy, Refusal, Verified, check_store_path, verify};

/// Seconds since the epoch, now: the clock a manifest's `issued-at` and `expires-at` are
/// held against.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nix's name for the platform this binary was built for (`x86_64-linux`, `aarch64-linux`).
pub fn current_system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Signs `body` with `key`: the manifest's whole text.
pub fn sign(body: &ReleaseBody, key: &SecretKey) -> Result<String, String> {
    body.validate()?;
    let text = body.render();
    let signature = key.sign(text.as_bytes());
    Ok(format!("{text}signature: {signature}\n"))
}

/// Adds `key`'s signature to a signed manifest (a second publisher, or a new key during a
/// rotation). The body's bytes are signed as they are; nothing is re-serialised.
pub fn add_signature(
    manifest_bytes: &[u8],
    key: &SecretKey,
) -> Result<String, manifest::ManifestError> {
    let mut manifest = Manifest::parse(manifest_bytes)?;
    manifest.signatures.retain(|s| s.key_name != key.name());
    manifest.signatures.push(key.sign(&manifest.signed_bytes));
    Ok(manifest.render())
}

/// An output of a release from a built store path: its NAR hash and size computed here.
pub fn output_of(system: &str, path: &Path) -> Result<Output, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    let store_path = StorePath::from_absolute_path(text.trim_end_matches('/').as_bytes())
        .map_err(|e| format!("{} is not a /nix/store path: {e}", path.display()))?;
    let digest = nar::nar_digest(path).map_err(|e| e.to_string())?;
    Ok(Output {
        system: system.to_string(),
        store_path,
        nar_hash: digest.hash,
        nar_size: digest.size,
    })
}

/// The store path this binary runs from (`/nix/store/…-sn2-0.1.0` for
/// `/nix/store/…-sn2-0.1.0/bin/sn2-miner`), if it runs from the Nix store.
pub fn running_store_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    store_path_of(&exe)
}

/// The top-level store path containing `file`, if any.
pub fn store_path_of(file: &Path) -> Option<PathBuf> {
    let rest = file.strip_prefix("/nix/store").ok()?;
    let top = rest.components().next()?;
    let path = Path::new("/nix/store").join(top);
    let text = path.to_str()?;
    StorePath::from_absolute_path(text.as_bytes()).ok()?;
    Some(path)
}

#[cfg(test)]
mod tests;
