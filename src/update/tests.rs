//! The checks of `verify`, one refusal at a time, on manifests signed here.

use super::manifest::parse_time;
use super::manifest::tests::sample_body;
use super::nixkey::{SecretKey, parse_public};
use super::verify::Accepted;
use super::*;

fn key(name: &str) -> SecretKey {
    SecretKey::generate(name).unwrap()
}

fn policy(trusted: &[&SecretKey]) -> Policy {
    Policy {
        trusted_keys: trusted
            .iter()
            .map(|k| parse_public(&k.public()).unwrap())
            .collect(),
        channel: "stable".into(),
        system: "x86_64-linux".into(),
    }
}

fn now() -> u64 {
    parse_time("2026-11-25T00:00:00Z").unwrap()
}

fn signed(body: &ReleaseBody, key: &SecretKey) -> Vec<u8> {
    sign(body, key).unwrap().into_bytes()
}

/// `body` signed by `key`, checked by a node that trusts `key` alone.
fn check(body: &ReleaseBody, key: &SecretKey, last: Option<Accepted>) -> Result<Verified, Refusal> {
    verify(&signed(body, key), &policy(&[key]), now(), last)
}

#[test]
fn a_release_signed_by_a_trusted_key_verifies_once_as_new() {
    let publisher = key("sn2-release-1");
    let bytes = signed(&sample_body(), &publisher);
    let verified = verify(&bytes, &policy(&[&publisher]), now(), None).unwrap();
    assert!(verified.is_new);
    assert_eq!(verified.output.system, "x86_64-linux");
    assert_eq!(verified.manifest.body.serial, 7);
    // Polled again: accepted, but nothing new.
    let again = verify(
        &bytes,
        &policy(&[&publisher]),
        now(),
        Some(verified.accepted()),
    )
    .unwrap();
    assert!(!again.is_new);
}

#[test]
fn keys_rotate_with_several_trusted_keys_and_signatures() {
    let old = key("sn2-release-1");
    let new = key("sn2-release-2");
    let by_old = signed(&sample_body(), &old);
    let by_both = add_signature(&by_old, &new).unwrap();
    // A node that trusts only the new key accepts the doubly signed manifest.
    verify(by_both.as_bytes(), &policy(&[&new]), now(), None).unwrap();
    // And one that trusts both accepts a manifest signed by either.
    verify(&by_old, &policy(&[&old, &new]), now(), None).unwrap();
    assert_eq!(add_signature(by_both.as_bytes(), &new).unwrap(), by_both);
}

#[test]
fn an_unknown_key_is_refused_naming_both_sides() {
    let stranger = key("someone-else");
    let trusted = key("sn2-release-1");
    let bytes = signed(&sample_body(), &stranger);
    let refusal = verify(&bytes, &policy(&[&trusted]), now(), None).unwrap_err();
    assert!(matches!(refusal, Refusal::UnknownKey { .. }), "{refusal}");
    let message = refusal.to_string();
    assert!(message.contains("`someone-else`") && message.contains("`sn2-release-1`"));
}

#[test]
fn a_key_with_a_trusted_name_but_other_bytes_is_a_bad_signature() {
    let impostor = key("sn2-release-1");
    let trusted = key("sn2-release-1");
    let bytes = signed(&sample_body(), &impostor);
    let refusal = verify(&bytes, &policy(&[&trusted]), now(), None).unwrap_err();
    assert!(matches!(refusal, Refusal::BadSignature { .. }), "{refusal}");
}

/// Whatever byte of the signed body changes, the manifest is refused: as malformed, or
/// because its signature no longer verifies. Never accepted.
#[test]
fn every_changed_byte_of_the_body_is_refused() {
    let publisher = key("sn2-release-1");
    let bytes = signed(&sample_body(), &publisher);
    let body_len = sample_body().render().len();
    for i in 0..body_len {
        for flip in [0x01u8, 0x20] {
            let mut changed = bytes.clone();
            changed[i] ^= flip;
            let outcome = verify(&changed, &policy(&[&publisher]), now(), None);
            assert!(
                matches!(
                    outcome,
                    Err(Refusal::Malformed(_)) | Err(Refusal::BadSignature { .. })
                ),
                "byte {i} ^ {flip:#x}: {outcome:?}"
            );
        }
    }
}

#[test]
fn another_channel_is_refused() {
    let publisher = key("k");
    let mut body = sample_body();
    body.channel = "beta".into();
    let refusal = check(&body, &publisher, None).unwrap_err();
    assert!(matches!(refusal, Refusal::WrongChannel { .. }), "{refusal}");
    assert!(refusal.to_string().contains("`beta`"));
}

#[test]
fn an_expired_or_future_manifest_is_refused() {
    let publisher = key("k");
    let bytes = signed(&sample_body(), &publisher);
    let late = parse_time("2026-12-24T12:00:00Z").unwrap();
    let refusal = verify(&bytes, &policy(&[&publisher]), late, None).unwrap_err();
    assert!(matches!(refusal, Refusal::Expired { .. }), "{refusal}");
    assert!(refusal.to_string().contains("2026-12-24T12:00:00Z"));
    let early = parse_time("2026-11-24T11:00:00Z").unwrap();
    let refusal = verify(&bytes, &policy(&[&publisher]), early, None).unwrap_err();
    assert!(matches!(refusal, Refusal::NotYetValid { .. }), "{refusal}");
}

#[test]
fn an_older_serial_or_a_reused_one_is_refused() {
    let publisher = key("k");
    let accepted = check(&sample_body(), &publisher, None).unwrap().accepted();
    let mut older = sample_body();
    older.serial = 6;
    let refusal = check(&older, &publisher, Some(accepted)).unwrap_err();
    assert!(
        matches!(refusal, Refusal::NotNewer { serial: 6, last: 7 }),
        "{refusal}"
    );
    let mut same_serial = sample_body();
    same_serial.flake.last_modified += 1;
    let refusal = check(&same_serial, &publisher, Some(accepted)).unwrap_err();
    assert!(
        matches!(refusal, Refusal::SerialReused { serial: 7 }),
        "{refusal}"
    );
    let mut newer = sample_body();
    newer.serial = 8;
    let verified = check(
        &newer,
        &publisher,
        Some(Accepted {
            serial: 7,
            body_sha256: [0; 32],
        }),
    )
    .unwrap();
    assert!(verified.is_new);
}

#[test]
fn another_system_is_refused() {
    let publisher = key("k");
    let mut body = sample_body();
    body.outputs.retain(|o| o.system == "aarch64-linux");
    let refusal = check(&body, &publisher, None).unwrap_err();
    assert!(
        matches!(refusal, Refusal::NoOutputForSystem { .. }),
        "{refusal}"
    );
    assert!(refusal.to_string().contains("aarch64-linux"));
}

#[test]
fn a_store_path_with_another_nar_hash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello");
    std::fs::write(&file, "hello\n").unwrap();
    let output = sample_body().outputs[1].clone();
    check_store_path(&output, &file).unwrap();
    std::fs::write(&file, "hellO\n").unwrap();
    let refusal = check_store_path(&output, &file).unwrap_err();
    assert!(
        matches!(refusal, Refusal::NarHashMismatch { .. }),
        "{refusal}"
    );
}

#[test]
fn store_paths_of_running_binaries() {
    assert_eq!(
        store_path_of(std::path::Path::new(
            "/nix/store/9d2lc0cqkgx0vhdj44rmbyzy38p5k2gy-sn2-0.1.0/bin/sn2-miner"
        )),
        Some("/nix/store/9d2lc0cqkgx0vhdj44rmbyzy38p5k2gy-sn2-0.1.0".into())
    );
    assert_eq!(store_path_of(std::path::Path::new("/usr/bin/sn2")), None);
    assert_eq!(
        store_path_of(std::path::Path::new("/nix/store/short/bin/x")),
        None
    );
}
