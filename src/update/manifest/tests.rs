use super::*;
use crate::update::nixkey::SecretKey;

/// A release as `sn2 release sign` writes it, for tests.
pub(crate) fn sample_body() -> ReleaseBody {
    ReleaseBody {
        channel: "stable".into(),
        serial: 7,
        issued_at: parse_time("2026-11-24T12:00:00Z").unwrap(),
        expires_at: parse_time("2026-12-24T12:00:00Z").unwrap(),
        flake: crate::update::testing::flake(),
        outputs: vec![
            Output {
                system: "aarch64-linux".into(),
                store_path: StorePath::from_absolute_path(
                    b"/nix/store/0c0bpjm3rm4pw1ymjx3w1cbqb0kh4lnh-sn2-0.1.0",
                )
                .unwrap(),
                nar_hash: NixHash::parse(
                    "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
                )
                .unwrap(),
                nar_size: 120,
            },
            Output {
                system: "x86_64-linux".into(),
                store_path: StorePath::from_absolute_path(
                    b"/nix/store/9d2lc0cqkgx0vhdj44rmbyzy38p5k2gy-sn2-0.1.0",
                )
                .unwrap(),
                nar_hash: NixHash::parse(
                    "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
                )
                .unwrap(),
                nar_size: 120,
            },
        ],
    }
}

fn signed_sample() -> String {
    let key = SecretKey::generate("sn2-test-1").unwrap();
    crate::update::sign(&sample_body(), &key).unwrap()
}

#[test]
fn a_signed_manifest_parses_back_to_its_body_and_bytes() {
    let text = signed_sample();
    let manifest = Manifest::parse(text.as_bytes()).unwrap();
    assert_eq!(manifest.body, sample_body());
    assert_eq!(manifest.signed_bytes, sample_body().render().into_bytes());
    assert_eq!(manifest.render(), text);
    assert_eq!(manifest.signatures.len(), 1);
    assert!(text.starts_with("sn2-release-manifest: 1\nchannel: stable\nserial: 7\n"));
    assert!(text.contains(
        "\noutput: x86_64-linux /nix/store/9d2lc0cqkgx0vhdj44rmbyzy38p5k2gy-sn2-0.1.0 sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw 120\n"
    ));
}

#[test]
fn times_round_trip_and_impossible_ones_are_refused() {
    for text in [
        "1970-01-01T00:00:00Z",
        "2024-02-29T23:59:59Z",
        "2026-11-24T12:00:00Z",
        "2100-03-01T00:00:00Z",
    ] {
        assert_eq!(format_time(parse_time(text).unwrap()), text);
    }
    assert_eq!(parse_time("1970-01-02T00:00:01Z").unwrap(), 86_401);
    assert_eq!(parse_time("2026-02-03T16:27:24Z").unwrap(), 1_770_136_044);
    for bad in [
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T12:00:00",
        "2026-11-24 12:00:00Z",
        "2026-11-24T12:00:00.5Z",
        "+026-11-24T12:00:00Z",
        "1969-12-31T23:59:59Z",
    ] {
        assert!(parse_time(bad).is_err(), "{bad}");
    }
}

/// Every way of writing the same release but the canonical one is refused, so the signed
/// bytes can only ever mean one release.
#[test]
fn non_canonical_spellings_are_refused_with_their_line() {
    let text = signed_sample();
    let cases: Vec<(String, &str)> = vec![
        (text.replace("serial: 7", "serial: 07"), "decimal"),
        (text.replace("serial: 7", "serial:  7"), "decimal"),
        (text.replace("channel: stable", "channel: sta ble"), "channel"),
        (text.replace('\n', "\r\n"), ""),
        (text.trim_end().to_string(), "newline"),
        (
            text.replace("e576e3c9cf9bad747afcddd9e34f51d18c855b4e", "E576E3C9CF9BAD747AFCDDD9E34F51D18C855B4E"),
            "flake-rev",
        ),
        (
            text.replace(
                "flake-nar-hash: sha256-tlFqNG/uzz2++aAmn4v8J0vAkV3z7XngeIIB3rM3650=",
                "flake-nar-hash: sha256:b6515a346feecf3dbefbe9f8c9e266b89d0ac29e3077f3bd72eea04e0862006d",
            ),
            "SRI",
        ),
        (text.replace("issued-at", "issued_at"), "issued-at"),
        (
            text.replace("output: aarch64-linux", "output: zz-linux"),
            "sorted",
        ),
        (
            text.replace("sha256:04zwf782", "sha256:04ZWF782"),
            "NAR hash",
        ),
        (
            text.replacen("\noutput:", "\nextra: 1\noutput:", 1),
            "output",
        ),
        (format!("{text}trailing\n"), "signature"),
        (text.replace("/nix/store/9d2l", "/nix/stor/9d2l"), "store path"),
    ];
    for (bad, expected) in cases {
        let error = Manifest::parse(bad.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{expected:?} not in {error} for\n{bad}"
        );
    }
}

#[test]
fn other_documents_unsigned_and_oversized_ones_are_refused() {
    let body = sample_body().render();
    assert_eq!(
        Manifest::parse(body.as_bytes()).unwrap_err(),
        ManifestError::Unsigned
    );
    assert_eq!(
        Manifest::parse(b"StorePath: /nix/store/x\n").unwrap_err(),
        ManifestError::NotAManifest
    );
    assert_eq!(
        Manifest::parse(&[0xff, 0xfe]).unwrap_err(),
        ManifestError::NotText
    );
    let huge = vec![b'a'; MAX_MANIFEST_BYTES + 1];
    assert!(matches!(
        Manifest::parse(&huge),
        Err(ManifestError::TooLarge(_))
    ));
    let mut no_outputs = sample_body();
    no_outputs.outputs.clear();
    assert!(no_outputs.validate().is_err());
    let mut backwards = sample_body();
    backwards.expires_at = backwards.issued_at;
    assert!(backwards.validate().unwrap_err().contains("expires-at"));
}

#[test]
fn flake_references_pin_the_revision() {
    let mut flake = sample_body().flake;
    let rev = flake.rev.clone();
    assert_eq!(flake.at_rev(), format!("github:sn2/sn2/{rev}"));
    flake.url = "github:sn2/sn2/main".into();
    assert_eq!(flake.at_rev(), format!("github:sn2/sn2/{rev}"));
    flake.url = "git+https://git.example/sn2".into();
    assert_eq!(
        flake.at_rev(),
        format!("git+https://git.example/sn2?rev={rev}")
    );
    flake.url = "git+https://git.example/sn2?ref=main".into();
    assert_eq!(
        flake.at_rev(),
        format!("git+https://git.example/sn2?ref=main&rev={rev}")
    );
}
