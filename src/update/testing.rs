//! Releases for tests (this crate's and the integration tests): a flake reference and a
//! manifest body of the given serial, valid around a given time.

use nix_derivation::NixHash;

use super::{FlakeRef, Output, ReleaseBody};

/// The flake revision the test releases name (the pinned nixpkgs' lock entry, as data).
pub fn flake() -> FlakeRef {
    FlakeRef {
        url: "github:sn2/sn2".into(),
        rev: "e576e3c9cf9bad747afcddd9e34f51d18c855b4e".into(),
        nar_hash: NixHash::parse("sha256-tlFqNG/uzz2++aAmn4v8J0vAkV3z7XngeIIB3rM3650=")
            .expect("a valid SRI hash"),
        last_modified: 1_770_136_044,
    }
}

/// A release on channel `stable`, issued a minute before `now` and valid for a day.
pub fn release(serial: u64, now: u64, outputs: Vec<Output>) -> ReleaseBody {
    ReleaseBody {
        channel: "stable".into(),
        serial,
        issued_at: now - 60,
        expires_at: now + 86_400,
        flake: flake(),
        outputs,
    }
}
