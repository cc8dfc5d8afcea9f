//! Signed releases against Nix's own tools (Debian's nix-bin, Nix 2.8): keys made by either
//! side work on the other, signatures are byte-identical, a narinfo signed by sn2 is accepted
//! by `nix copy` from a binary cache, NAR hashes equal `nix hash path`, and `sn2 release`
//! goes from keygen to sign to verify. Without Nix the tests say so and pass, unless
//! SN2_REQUIRE_NIX is set (CI sets it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sn2::update::nar::nar_digest;
use sn2::update::nixkey::{SecretKey, parse_public};

const NIX_FLAGS: &[&str] = &[
    "--extra-experimental-features",
    "nix-command",
    "--option",
    "substituters",
    "",
];

fn nix_available() -> bool {
    let found = Command::new("nix-store").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("SN2_REQUIRE_NIX").is_none(),
            "SN2_REQUIRE_NIX is set but nix-store is not on PATH (apt-get install nix-bin)"
        );
        eprintln!("skipped: Nix is not installed (apt-get install nix-bin)");
    }
    found
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn nix(args: &[&str]) -> Command {
    let mut command = Command::new("nix");
    command.args(NIX_FLAGS).args(args);
    command
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A store path built by Nix from a derivation, so input-addressed: Nix checks signatures on
/// it (content-addressed paths pass `nix store verify` whatever the key). `content` makes
/// it unique to the test.
fn built_store_path(content: &str) -> PathBuf {
    let expression = format!(
        r#"derivation {{ name = "sn2-release-test"; PATH = "/usr/bin:/bin"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "mkdir -p $out/bin && echo {content} > $out/bin/sn2 && chmod +x $out/bin/sn2 && ln -s bin/sn2 $out/link"]; }}"#
    );
    let output = run(Command::new("nix-build")
        .args([
            "--no-out-link",
            "--option",
            "substituters",
            "",
            "--option",
            "sandbox",
            "false",
        ])
        .args(["-E", &expression]));
    PathBuf::from(text(&output))
}

fn sn2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn keys_made_by_nix_work_in_sn2_and_keys_made_by_sn2_work_in_nix() {
    if !nix_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (nix_secret, nix_public) = (dir.path().join("nix.sk"), dir.path().join("nix.pk"));
    run(Command::new("nix-store")
        .arg("--generate-binary-cache-key")
        .args([Path::new("from-nix-1"), &nix_secret, &nix_public]));
    let key = SecretKey::parse(&std::fs::read_to_string(&nix_secret).unwrap()).unwrap();
    assert_eq!(
        key.public(),
        std::fs::read_to_string(&nix_public).unwrap().trim()
    );

    let sn2_secret = dir.path().join("sn2.sk");
    let made = sn2(&[
        "release",
        "keygen",
        "--name",
        "from-sn2-1",
        "--secret-key",
        sn2_secret.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public_by_nix =
        run(nix(&["key", "convert-secret-to-public"])
            .stdin(std::fs::File::open(&sn2_secret).unwrap()));
    assert_eq!(text(&public_by_nix), text(&made));
}

#[test]
fn narinfo_signatures_agree_with_nix_both_ways() {
    if !nix_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = built_store_path(&format!("signatures-{}", std::process::id()));
    let path_text = path.to_str().unwrap();
    let key = SecretKey::generate("sn2-test-1").unwrap();
    let secret = dir.path().join("key.sk");
    std::fs::write(&secret, key.to_file_text().as_bytes()).unwrap();
    let trusted = parse_public(&key.public()).unwrap();

    // Not signed yet: Nix does not trust the path on this key.
    let unsigned = nix(&["store", "verify", "--no-contents", "--sigs-needed", "1"])
        .args(["--option", "trusted-public-keys", &key.public(), path_text])
        .output()
        .unwrap();
    assert!(!unsigned.status.success());

    // sn2's fingerprint, from its own NAR hash, and its signature.
    let digest = nar_digest(&path).unwrap();
    let fingerprint = format!(
        "1;{path_text};{};{};",
        digest.hash.to_nix_nixbase32_string(),
        digest.size
    );
    let by_sn2 = key.sign(fingerprint.as_bytes());

    // Nix signs with the same key file: the signature is the same bytes (ed25519 is
    // deterministic), and Nix now trusts the path on this key.
    run(&mut nix(&[
        "store",
        "sign",
        "--key-file",
        secret.to_str().unwrap(),
        path_text,
    ]));
    run(
        nix(&["store", "verify", "--no-contents", "--sigs-needed", "1"]).args([
            "--option",
            "trusted-public-keys",
            &key.public(),
            path_text,
        ]),
    );
    let info: serde_json::Value = serde_json::from_slice(
        &run(&mut nix(&["path-info", "--json", "--sigs", path_text])).stdout,
    )
    .unwrap();
    let signatures: Vec<String> = info[0]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(
        signatures.contains(&by_sn2.to_nix_string()),
        "{signatures:?} lacks {by_sn2}"
    );
    // And sn2 verifies Nix's signature over the fingerprint it computed itself.
    let by_nix = signatures
        .iter()
        .map(|s| nix_narinfo::NixSignature::parse(s).unwrap())
        .find(|s| s.key_name == "sn2-test-1")
        .unwrap();
    assert!(by_nix.verify(fingerprint.as_bytes(), &[trusted]).unwrap());
}

/// A binary cache written by sn2 (its NAR, its narinfo, its signature) from which `nix copy`
/// with `require-sigs` accepts the path on sn2's key, and refuses it on another key.
#[test]
fn nix_copy_accepts_a_narinfo_signed_by_sn2() {
    if !nix_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = built_store_path(&format!("cache-{}", std::process::id()));
    let store_path =
        nix_derivation::StorePath::from_absolute_path(path.to_str().unwrap().as_bytes()).unwrap();
    let key = SecretKey::generate("sn2-cache-1").unwrap();

    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("nar")).unwrap();
    std::fs::write(cache.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
    let mut nar = Vec::new();
    std::io::copy(&mut nix_nar::Encoder::new(&path).unwrap(), &mut nar).unwrap();
    std::fs::write(cache.join("nar/release.nar"), &nar).unwrap();
    let digest = nar_digest(&path).unwrap();
    assert_eq!(digest.size, nar.len() as u64);
    let unsigned = nix_narinfo::NarInfo::builder(
        store_path.clone(),
        "nar/release.nar",
        digest.hash.clone(),
        digest.size,
    )
    .compression(nix_narinfo::Compression::None)
    .build()
    .unwrap();
    let fingerprint = unsigned.fingerprint(&nix_derivation::StoreDir::default());
    let signed = nix_narinfo::NarInfo::builder(
        store_path.clone(),
        "nar/release.nar",
        digest.hash,
        digest.size,
    )
    .compression(nix_narinfo::Compression::None)
    .signature(key.sign(fingerprint.as_bytes()))
    .build()
    .unwrap();
    let hash_part = store_path.to_basename()[..32].to_string();
    std::fs::write(
        cache.join(format!("{hash_part}.narinfo")),
        signed.to_canonical_bytes(),
    )
    .unwrap();

    let copy = |trusted: &str, store: &str| {
        nix(&["copy", "--from", &format!("file://{}", cache.display())])
            .args(["--to", &dir.path().join(store).display().to_string()])
            .args(["--option", "require-sigs", "true"])
            .args(["--option", "trusted-public-keys", trusted])
            .arg(&path)
            .output()
            .unwrap()
    };
    let accepted = copy(&key.public(), "store-a");
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        dir.path()
            .join("store-a")
            .join(path.strip_prefix("/").unwrap())
            .join("bin/sn2")
            .exists()
    );
    let other = SecretKey::generate("sn2-cache-1").unwrap();
    let refused = copy(&other.public(), "store-b");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn nar_hashes_equal_nix_hash_path() {
    if !nix_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("bin/nested/deeper")).unwrap();
    std::fs::write(tree.join("bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tree.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(tree.join("empty"), "").unwrap();
    std::fs::write(tree.join("bin/nested/deeper/data"), vec![0u8; 70_000]).unwrap();
    std::os::unix::fs::symlink("bin/tool", tree.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", tree.join("dangling")).unwrap();

    for path in [tree.clone(), tree.join("bin/tool"), tree.join("empty")] {
        let digest = nar_digest(&path).unwrap();
        let by_nix = run(nix(&["hash", "path", "--type", "sha256", "--base32"]).arg(&path));
        assert_eq!(
            digest.hash.to_nix_nixbase32_string(),
            format!("sha256:{}", text(&by_nix)),
            "{}",
            path.display()
        );
        let dump = run(Command::new("nix-store").arg("--dump").arg(&path));
        assert_eq!(digest.size, dump.stdout.len() as u64);
    }
}

/// `sn2 release` from keygen to verify, with a real store path, and its refusals on the
/// command line.
#[test]
fn sn2_release_keygen_sign_verify() {
    if !nix_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = built_store_path(&format!("cli-{}", std::process::id()));
    let path_text = path.to_str().unwrap();
    let secret = dir.path().join("release.sk");
    let public = text(&sn2(&[
        "release",
        "keygen",
        "--name",
        "sn2-release-1",
        "--secret-key",
        secret.to_str().unwrap(),
    ]));
    let manifest = dir.path().join("stable.manifest");
    let system = sn2::update::current_system();
    let signed = sn2(&[
        "release",
        "sign",
        "--secret-key",
        secret.to_str().unwrap(),
        "--serial",
        "4",
        "--flake-url",
        "github:sn2/sn2",
        "--rev",
        "e576e3c9cf9bad747afcddd9e34f51d18c855b4e",
        "--flake-nar-hash",
        "sha256-tlFqNG/uzz2++aAmn4v8J0vAkV3z7XngeIIB3rM3650=",
        "--last-modified",
        "1770136044",
        "--output",
        &format!("{system}={path_text}"),
        "--out",
        manifest.to_str().unwrap(),
    ]);
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let written = std::fs::read_to_string(&manifest).unwrap();
    let by_nix = text(&run(
        nix(&["hash", "path", "--type", "sha256", "--base32"]).arg(&path)
    ));
    assert!(
        written.contains(&format!("{path_text} sha256:{by_nix} ")),
        "{written}"
    );

    let verify = |extra: &[&str]| {
        let mut args = vec!["release", "verify", manifest.to_str().unwrap()];
        args.extend_from_slice(extra);
        sn2(&args)
    };
    let ok = verify(&["--trusted-key", &public, "--store-path", path_text]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text(&ok).contains("NAR hash checked"), "{}", text(&ok));
    let pinned = verify(&["--trusted-key", &public, "--print-flake-ref"]);
    assert_eq!(
        text(&pinned),
        "github:sn2/sn2/e576e3c9cf9bad747afcddd9e34f51d18c855b4e"
    );

    let stranger = SecretKey::generate("someone-else").unwrap();
    for (extra, reason) in [
        (
            vec!["--trusted-key", &stranger.public()],
            "no signature by a trusted key",
        ),
        (
            vec!["--trusted-key", &public, "--channel", "beta"],
            "channel",
        ),
        (
            vec!["--trusted-key", &public, "--system", "riscv64-linux"],
            "no output for riscv64-linux",
        ),
        (
            vec!["--trusted-key", &public, "--last-serial", "4"],
            "serial 4 is not above 4",
        ),
        (
            vec!["--trusted-key", &public, "--store-path", "/bin"],
            "NAR hash",
        ),
    ] {
        let refused = verify(&extra);
        assert_eq!(refused.status.code(), Some(1), "{extra:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("release refused") && stderr.contains(reason),
            "{extra:?}: {stderr}"
        );
    }
    // A second key signs too, and a node trusting only it accepts the manifest.
    let second = dir.path().join("second.sk");
    let second_public = text(&sn2(&[
        "release",
        "keygen",
        "--name",
        "sn2-release-2",
        "--secret-key",
        second.to_str().unwrap(),
    ]));
    let added = sn2(&[
        "release",
        "sign",
        "--secret-key",
        second.to_str().unwrap(),
        "--add-to",
        manifest.to_str().unwrap(),
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(verify(&["--trusted-key", &second_public]).status.success());
    assert!(verify(&["--trusted-key", &public]).status.success());
}

/// Runs a miner with `[update] mode = "profile"` on the given manifest until it exits by
/// itself (a restart request) or its log shows `stop_at` twice (so it went on polling after
/// the first); returns its exit code (None: still running, then stopped) and its log.
/// Gives up after two minutes.
fn run_profile_mode_miner(
    dir: &Path,
    manifest: &Path,
    public: &str,
    stop_at: Option<&str>,
) -> (Option<i32>, String) {
    let port = sn2::devnet::free_port().unwrap();
    let metrics = sn2::devnet::free_port().unwrap();
    let config = dir.join("miner.toml");
    std::fs::write(
        &config,
        format!(
            "[chain]\nbackend = \"local\"\n\
             [wallet]\npath = \"wallets\"\n\
             [miner]\nlisten = \"127.0.0.1:{port}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [models]\ndir = \"models\"\n\
             [update]\nmode = \"profile\"\nmanifest = \"{}\"\ntrusted_keys = [\"{public}\"]\n\
             poll_interval_secs = 1\nstate_dir = \"update\"\nprofile = \"profiles/sn2\"\n",
            manifest.display()
        ),
    )
    .unwrap();
    if !dir.join("wallets").exists() {
        let made = sn2(&["keys", "new", "--config", config.to_str().unwrap()]);
        assert!(made.status.success());
    }
    let log = std::fs::File::create(dir.join("miner.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sn2-miner"))
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let read_log = || std::fs::read_to_string(dir.join("miner.log")).unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        let seen = stop_at.is_some_and(|needle| read_log().matches(needle).count() >= 2);
        if seen || std::time::Instant::now() > deadline {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    (code, read_log())
}

/// `[update] mode = "profile"` with real Nix: a manifest whose NAR hash is not the store
/// path's is refused and the profile is left alone; the true release is realised, checked,
/// switched into the profile, and the daemon exits with 75 so that systemd restarts it.
#[test]
fn profile_mode_switches_a_nix_profile_to_a_verified_release_and_exits_to_restart() {
    if !nix_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = built_store_path(&format!("profile-{}", std::process::id()));
    let key = SecretKey::generate("sn2-release-1").unwrap();
    let system = sn2::update::current_system();
    let mut body = sn2::update::testing::release(
        1,
        sn2::update::unix_now(),
        vec![sn2::update::output_of(&system, &path).unwrap()],
    );
    let true_size = body.outputs[0].nar_size;
    let manifest = dir.path().join("stable.manifest");
    let profile = dir.path().join("profiles/sn2");

    body.outputs[0].nar_size = true_size + 8;
    std::fs::write(&manifest, sn2::update::sign(&body, &key).unwrap()).unwrap();
    let (code, log) = run_profile_mode_miner(
        dir.path(),
        &manifest,
        &key.public(),
        Some("is not the release"),
    );
    assert_eq!(code, None, "the daemon keeps serving:\n{log}");
    assert!(log.contains("is not the release"), "{log}");
    assert!(!profile.exists());

    body.outputs[0].nar_size = true_size;
    body.serial = 2;
    std::fs::write(&manifest, sn2::update::sign(&body, &key).unwrap()).unwrap();
    let (code, log) = run_profile_mode_miner(dir.path(), &manifest, &key.public(), None);
    assert_eq!(code, Some(75), "{log}");
    assert!(log.contains("release installed into the profile"), "{log}");
    assert_eq!(std::fs::canonicalize(&profile).unwrap(), path);
}
