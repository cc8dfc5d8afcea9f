//! Phase 1 of a public setup against its real peer: snarkjs (from npm, installed into
//! `tests/snarkjs` by `tests/setup.sh`) makes powers-of-tau files, `sn2 ceremony ptau
//! verify` accepts them (the Lagrange forms of `prepare phase2` too, which shows that
//! sn2's domains of roots of unity are snarkjs's), and refuses each kind of damage: a point
//! off its curve, a valid point in the wrong place in each list and in the Lagrange forms,
//! a cut-off file. Without snarkjs the test is
//! skipped with a message, unless `SN2_REQUIRE_CHAIN=1` (the flag that requires the npm
//! peers `tests/setup.sh` installs), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn snarkjs() -> Option<Command> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cli = root.join("tests/snarkjs/node_modules/snarkjs/build/cli.cjs");
    if !cli.exists() {
        assert!(
            std::env::var_os("SN2_REQUIRE_CHAIN").is_none(),
            "SN2_REQUIRE_CHAIN is set but snarkjs is not installed: run tests/setup.sh"
        );
        eprintln!("skipped: snarkjs is not installed (tests/setup.sh installs it)");
        return None;
    }
    // The Node.js that tests/setup.sh fetched where the system's is too old, else the
    // system's.
    let node = common::fetched_node().unwrap_or_else(|| PathBuf::from("node"));
    let mut command = Command::new(node);
    command.arg(cli);
    Some(command)
}

fn run_snarkjs(dir: &Path, args: &[&str]) {
    let (ok, said) = snarkjs_says(dir, args);
    assert!(ok, "snarkjs {args:?}: {said}");
}

/// `snarkjs ARGS` in `dir`: (success, stdout and stderr).
fn snarkjs_says(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = snarkjs()
        .expect("checked before")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// `sn2 ceremony ptau verify FILE`: (success, stdout and stderr).
fn verify(file: &Path) -> (bool, String) {
    let (ok, out, err) = sn2(&["ceremony", "ptau", "verify", file.to_str().unwrap()]);
    (ok, format!("{out}{err}"))
}

/// `sn2 ARGS`: (success, stdout, stderr).
fn sn2(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args(args)
        .env_remove("SN2_CONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Imports the digits-mlp reference model with `sn2 model import`, into the models
/// directory that `flag` (`--models-dir` or `--config`) and `value` name.
fn import_digits_mlp(flag: &str, value: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits-mlp");
    let (ok, _, err) = sn2(&[
        "model",
        "import",
        root.join("model.onnx").to_str().unwrap(),
        "--calibration",
        root.join("calibration.json").to_str().unwrap(),
        flag,
        value,
    ]);
    assert!(ok, "{err}");
}

/// snarkjs's powers of tau of 2^11 (one contribution; `p1.ptau` unprepared,
/// `final.ptau` prepared), made once for the tests that need them: digits-mlp, with
/// 1,435 constraints and 76 public inputs, needs a domain of 2^11.
fn digits_mlp_ptau() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        snarkjs_ptau(dir.path(), 11, 1);
        dir
    })
    .path()
}

/// Powers of tau of 2^`power` made by snarkjs in `dir`: `p0.ptau` from `new`, then
/// `p1.ptau` ... after each of `contributors` contributions, and `final.ptau`, the last
/// prepared for phase 2.
fn snarkjs_ptau(dir: &Path, power: u32, contributors: usize) {
    run_snarkjs(
        dir,
        &["powersoftau", "new", "bn128", &power.to_string(), "p0.ptau"],
    );
    for i in 1..=contributors {
        run_snarkjs(
            dir,
            &[
                "powersoftau",
                "contribute",
                &format!("p{}.ptau", i - 1),
                &format!("p{i}.ptau"),
                &format!("--name=contributor {i}"),
                &format!("-e=entropy of contributor {i}"),
            ],
        );
    }
    run_snarkjs(
        dir,
        &[
            "powersoftau",
            "prepare",
            "phase2",
            &format!("p{contributors}.ptau"),
            "final.ptau",
        ],
    );
}

/// Where each section's bytes start in an iden3 container (`.ptau`, `.zkey`), and how many
/// there are: (id, start, size), in the file's order.
fn section_offsets(bytes: &[u8]) -> Vec<(u32, usize, usize)> {
    let count = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let mut at = 12;
    let mut offsets = Vec::new();
    for _ in 0..count {
        let id = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let size = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap()) as usize;
        offsets.push((id, at + 12, size));
        at += 12 + size;
    }
    offsets
}

fn section(bytes: &[u8], id: u32) -> usize {
    section_offsets(bytes)
        .into_iter()
        .find(|(i, _, _)| *i == id)
        .unwrap()
        .1
}

#[test]
fn snarkjs_powers_of_tau_are_accepted_and_every_kind_of_damage_is_refused() {
    if snarkjs().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    snarkjs_ptau(d, 4, 2);

    let (ok, text) = verify(&d.join("p2.ptau"));
    assert!(ok, "{text}");
    assert!(
        text.contains("2^4 powers") && text.contains("2 contributions"),
        "{text}"
    );
    let (ok, text) = verify(&d.join("final.ptau"));
    assert!(ok && text.contains("prepared for phase 2"), "{text}");
    let (ok, text) = verify(&d.join("p0.ptau"));
    assert!(ok && text.contains("no one has contributed"), "{text}");

    let good = std::fs::read(d.join("p2.ptau")).unwrap();
    let refused = |name: &str, bytes: Vec<u8>, expected: &str| {
        let path = d.join(name);
        std::fs::write(&path, bytes).unwrap();
        let (ok, text) = verify(&path);
        assert!(!ok, "{name} was accepted: {text}");
        assert!(text.contains(expected), "{name}: {text}");
    };
    // One bit of one coordinate: the point leaves the curve.
    let mut bytes = good.clone();
    bytes[section(&good, 2) + 3 * 64 + 5] ^= 1;
    refused("bit.ptau", bytes, "τ·G1, point 3: not a point");
    // A valid point where another power belongs, in each list: only the pairings see it.
    let copy_point = |id: u32, size: usize, from: usize, to: usize| {
        let start = section(&good, id);
        let mut bytes = good.clone();
        let point = good[start + from * size..start + (from + 1) * size].to_vec();
        bytes[start + to * size..start + (to + 1) * size].copy_from_slice(&point);
        bytes
    };
    for (name, bytes, expected) in [
        ("tau-g1.ptau", copy_point(2, 64, 2, 3), "τ^i·G1"),
        ("tau-g2.ptau", copy_point(3, 128, 1, 2), "τ^i·G2"),
        ("alpha.ptau", copy_point(4, 64, 1, 2), "α·τ^i·G1"),
        ("beta.ptau", copy_point(5, 64, 3, 4), "β·τ^i·G1"),
    ] {
        let expected = format!("{expected}: one point is not the one before times τ");
        refused(name, bytes, &expected);
    }
    // β·G2 replaced by τ·G2, a valid point of the wrong secret.
    let mut bytes = good.clone();
    let (beta, tau) = (section(&good, 6), section(&good, 3));
    bytes[beta..beta + 128].copy_from_slice(&good[tau + 128..tau + 256]);
    refused("beta-g2.ptau", bytes, "β·G2 is not β times G2");
    // The Lagrange forms of a prepared file: two points of one domain swapped, in G1 and
    // in G2 (the forms are checked against the powers, which are unchanged).
    let prepared = std::fs::read(d.join("final.ptau")).unwrap();
    let swap = |id: u32, size: usize, a: usize, b: usize| {
        let start = section(&prepared, id);
        let mut bytes = prepared.clone();
        let (pa, pb) = (start + a * size, start + b * size);
        bytes[pa..pa + size].copy_from_slice(&prepared[pb..pb + size]);
        bytes[pb..pb + size].copy_from_slice(&prepared[pa..pa + size]);
        bytes
    };
    // Domains of 1, 2, 4, 8 points: the one of 8 starts at point 7.
    for (name, bytes, list) in [
        ("lagrange-g1.ptau", swap(12, 64, 8, 9), "τ·G1"),
        ("lagrange-g2.ptau", swap(13, 128, 3, 4), "τ·G2"),
        ("lagrange-beta.ptau", swap(15, 64, 1, 2), "β·τ·G1"),
    ] {
        let expected = format!("the Lagrange form of {list} is not that of its powers");
        refused(name, bytes, &expected);
    }
    // Cut off, or not a ptau file at all.
    refused(
        "short.ptau",
        good[..good.len() - 100].to_vec(),
        "runs past the end",
    );
    refused(
        "onnx.ptau",
        b"\x08\x07\x12\x04onnx".to_vec(),
        "does not start with `ptau`",
    );
}

/// A model's phase 2 from snarkjs's powers of tau, by three contributors, through the
/// command line: every contribution listed by its hash, a damaged transcript refused, and
/// the finished keys prove, with `sn2 verify` naming the ceremony.
#[test]
fn a_ceremony_from_snarkjs_powers_of_tau_makes_keys_that_prove_and_say_where_they_came_from() {
    if snarkjs().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let powers = digits_mlp_ptau();
    let path = |name: &str| d.join(name).to_str().unwrap().to_string();
    let ptau = powers.join("final.ptau").to_str().unwrap().to_string();
    let (models, transcript) = (path("models"), path("t.ceremony"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits-mlp");
    import_digits_mlp("--models-dir", &models);

    // Powers of tau that were not prepared for phase 2 get a message saying how.
    let (ok, _, err) = sn2(&[
        "ceremony",
        "init",
        "digits-mlp",
        "--ptau",
        powers.join("p1.ptau").to_str().unwrap(),
        "--out",
        &transcript,
        "--models-dir",
        &models,
    ]);
    assert!(!ok && err.contains("prepare phase2"), "{err}");

    let (ok, out, err) = sn2(&[
        "ceremony",
        "init",
        "digits-mlp",
        "--ptau",
        &ptau,
        "--out",
        &transcript,
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("forgeable until someone contributes"), "{out}");
    let verify = || {
        sn2(&[
            "ceremony",
            "verify",
            &transcript,
            "--ptau",
            &ptau,
            "--models-dir",
            &models,
        ])
    };
    // Finishing without a contribution would install keys anyone can forge with.
    let (ok, _, err) = sn2(&[
        "ceremony",
        "finish",
        &transcript,
        "--ptau",
        &ptau,
        "--models-dir",
        &models,
    ]);
    assert!(!ok && err.contains("contribute first"), "{err}");

    // Two anonymous contributions, then one signed by a wallet's hotkey.
    let wallet = [
        "--wallet-path",
        &path("wallets"),
        "--wallet-name",
        "w",
        "--wallet-hotkey",
        "h",
    ];
    let (ok, _, err) = sn2(&[&["keys", "new"][..], &wallet].concat());
    assert!(ok, "{err}");
    let (ok, signer, err) = sn2(&[&["keys", "show"][..], &wallet].concat());
    assert!(ok, "{err}");
    let signed_by = format!("signed by {}", signer.trim());
    let mut hashes = Vec::new();
    for sign in [false, false, true] {
        let contribute = ["ceremony", "contribute", &transcript];
        let (ok, out, err) = match sign {
            false => sn2(&contribute),
            true => sn2(&[&contribute[..], &["--sign"], &wallet].concat()),
        };
        assert!(ok, "{err}");
        assert_eq!(out.contains(&signed_by), sign, "{out}");
        hashes.push(out.lines().nth(1).unwrap().to_string());
    }
    let (ok, out, err) = verify();
    assert!(ok, "{err}");
    assert!(out.contains("3 contributions"), "{out}");
    for hash in &hashes {
        assert_eq!(hash.len(), 64);
        assert!(out.contains(hash.as_str()), "{hash} not in {out}");
    }
    let third = out.lines().find(|l| l.contains(&hashes[2])).unwrap();
    assert!(third.ends_with(&signed_by), "{out}");
    assert_eq!(out.matches("signed by").count(), 1, "{out}");

    // A dropped contribution, and a flipped bit in one, are refused; the file is unchanged.
    let good = std::fs::read(&transcript).unwrap();
    let header = 12 + 2 + 32 + 32;
    // Version 2 (a contribution is signed): each record is its points, a hotkey and a
    // signature.
    let record = 448 + 32 + 64;
    let mut dropped = good[..header].to_vec();
    dropped.extend_from_slice(&2u32.to_le_bytes());
    dropped.extend_from_slice(&good[header + 4..header + 4 + record]);
    dropped.extend_from_slice(&good[header + 4 + 2 * record..]);
    let mut flipped = good.clone();
    flipped[header + 4 + record + 448 - 20] ^= 1;
    for (name, bytes) in [("dropped", dropped), ("flipped", flipped)] {
        let damaged = path(name);
        std::fs::write(&damaged, bytes).unwrap();
        let (ok, _, err) = sn2(&[
            "ceremony",
            "verify",
            &damaged,
            "--ptau",
            &ptau,
            "--models-dir",
            &models,
        ]);
        assert!(!ok && err.contains("refused"), "{name}: {err}");
    }

    let (ok, out, err) = sn2(&[
        "ceremony",
        "finish",
        &transcript,
        "--ptau",
        &ptau,
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("3 contributions"), "{out}");
    let proof = path("proof.json");
    let (ok, _, err) = sn2(&[
        "prove",
        "--model",
        "digits-mlp",
        "--input",
        root.join("test.json").to_str().unwrap(),
        "--sample",
        "0",
        "--out",
        &proof,
        "--miner",
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = sn2(&[
        "verify",
        "--model",
        "digits-mlp",
        "--proof",
        &proof,
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{out}{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("ceremony of 3 contributions") && said.contains(&hashes[2]),
        "{said}"
    );

    // snarkjs, another implementation, checks the same proof from sn2's export, and
    // refuses it once one output is changed.
    let exported = d.join("snarkjs");
    let (ok, out, err) = sn2(&[
        "verify",
        "--model",
        "digits-mlp",
        "--proof",
        &proof,
        "--snarkjs",
        exported.to_str().unwrap(),
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{out}{err}");
    let files = ["verification_key.json", "public.json", "proof.json"];
    let (ok, said) = snarkjs_says(&exported, &[&["groth16", "verify"][..], &files].concat());
    assert!(ok && said.contains("OK"), "{said}");
    let public = exported.join("public.json");
    let mut signals: Vec<String> =
        serde_json::from_slice(&std::fs::read(&public).unwrap()).unwrap();
    let last = signals.last_mut().unwrap();
    *last = (last.parse::<u128>().unwrap() + 1).to_string();
    std::fs::write(&public, serde_json::to_vec(&signals).unwrap()).unwrap();
    let (ok, said) = snarkjs_says(&exported, &[&["groth16", "verify"][..], &files].concat());
    assert!(!ok && said.contains("Invalid proof"), "{said}");
}

/// Powers of tau read up to the power a circuit needs keep only prefixes of the file,
/// still pass the checks, and make the same initial key as the whole file; a circuit
/// that needs more is refused with the power it needs.
#[test]
fn powers_of_tau_read_up_to_a_power_make_the_same_keys_as_the_whole_file() {
    use sn2::proof::groth16::ceremony;
    use sn2::proof::ptau::Ptau;
    if snarkjs().is_none() {
        return;
    }
    let bytes = std::fs::read(digits_mlp_ptau().join("final.ptau")).unwrap();
    let whole = Ptau::read_checked(&bytes).unwrap();
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx/test_Linear/model.onnx");
    let float = sn2::model::onnx::import(&std::fs::read(onnx).unwrap()).unwrap();
    let samples = sn2::model::input::pseudo_random_samples(16, float.input_len());
    let (model, _) = sn2::model::quantize::quantize(&float, &samples).unwrap();
    let system = ceremony::circuit(&model);
    let power = ceremony::power_needed(&system).unwrap();
    assert!(power + 1 < whole.power, "{power} {}", whole.power);

    let cut = Ptau::read_up_to(&bytes, power).unwrap();
    cut.check().unwrap();
    let n = 1usize << power;
    assert_eq!(cut.power, power);
    assert_eq!((cut.tau_g1.len(), cut.tau_g2.len()), (2 * n, n));
    let (forms, all) = (
        cut.lagrange.as_ref().unwrap(),
        whole.lagrange.as_ref().unwrap(),
    );
    assert_eq!(forms.tau_g1.len(), 4 * n - 1);
    assert_eq!(forms.tau_g1[..], all.tau_g1[..4 * n - 1]);
    assert_eq!(
        ceremony::initial_key(&system, &cut).unwrap(),
        ceremony::initial_key(&system, &whole).unwrap()
    );
    // digits-mlp's circuit needs the whole file.
    let models = tempfile::tempdir().unwrap();
    import_digits_mlp("--models-dir", models.path().to_str().unwrap());
    let mlp = sn2::model::ModelStore::new(models.path())
        .open("digits-mlp")
        .unwrap();
    match ceremony::initial_key(&ceremony::circuit(&mlp.model), &cut) {
        Err(ceremony::CeremonyError::PtauTooSmall { has, needs }) => {
            assert_eq!((has, needs), (power, whole.power))
        }
        other => panic!("expected the power it needs, got {:?}", other.map(|_| ())),
    }

    // A file kept as a miner keeps it: read as far as asked, again only for more, and
    // never past its end.
    let file = sn2::proof::ptau::PtauFile::new(digits_mlp_ptau().join("final.ptau"));
    let first = file.up_to(power).unwrap();
    assert_eq!(first.power, power);
    // Read from disk only as far as it goes, it holds what the cut of the whole does.
    assert_eq!(first.tau_g1[..], cut.tau_g1[..]);
    assert_eq!(first.tau_g2[..], cut.tau_g2[..]);
    assert_eq!(first.alpha_tau_g1[..], cut.alpha_tau_g1[..]);
    assert_eq!(first.beta_tau_g1[..], cut.beta_tau_g1[..]);
    assert_eq!(first.beta_g2, cut.beta_g2);
    assert_eq!(first.contributions, cut.contributions);
    let (read, forms) = (
        first.lagrange.as_ref().unwrap(),
        cut.lagrange.as_ref().unwrap(),
    );
    assert_eq!(read.tau_g1[..], forms.tau_g1[..]);
    assert_eq!(read.tau_g2[..], forms.tau_g2[..]);
    assert_eq!(read.alpha_tau_g1[..], forms.alpha_tau_g1[..]);
    assert_eq!(read.beta_tau_g1[..], forms.beta_tau_g1[..]);
    assert!(std::sync::Arc::ptr_eq(
        &first,
        &file.up_to(power - 1).unwrap()
    ));
    // A file cut off, or with a section table that runs past its end, is read whole and
    // refused for what it is.
    let cut_off = models.path().join("cut-off.ptau");
    std::fs::write(&cut_off, &bytes[..bytes.len() - 100]).unwrap();
    let said = Ptau::read_prepared_file_up_to(&cut_off, power)
        .map(|_| ())
        .unwrap_err();
    assert!(
        format!("{said:#}").contains("runs past the end of the file"),
        "{said:#}"
    );
    let more = file.up_to(power + 1).unwrap();
    assert_eq!(more.power, power + 1);
    let all = file.up_to(40).unwrap();
    assert_eq!(all.power, whole.power);
    assert_eq!(all.tau_g1[..], whole.tau_g1[..]);
    assert!(std::sync::Arc::ptr_eq(&all, &file.up_to(40).unwrap()));
    assert!(std::sync::Arc::ptr_eq(&all, &file.up_to(power).unwrap()));
}

/// `sn2 infer` against a devnet whose validator finished its keys from a ceremony over
/// snarkjs's powers of tau: without `--ptau` it passes on the validator's claim, unchecked;
/// with it, it fetches the transcript, verifies it and lists its contributions; with
/// `--contribution` it requires one of them, and refuses a contribution the ceremony lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sn2_infer_verifies_the_validators_ceremony_and_finds_a_users_contribution() {
    if snarkjs().is_none() {
        return;
    }
    let powers = tokio::task::spawn_blocking(digits_mlp_ptau).await.unwrap();
    let ptau = powers.join("final.ptau");
    let devnet = sn2::devnet::Devnet::start(&sn2::devnet::DevnetOptions {
        miners: 1,
        models: vec!["digits-mlp".into()],
        round_interval: std::time::Duration::from_secs(3600),
        ceremony_ptau: Some(ptau.clone()),
        miner_ptau: Some(ptau.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}", devnet.api);
    let [validator_transcript] = &files_ending(&devnet.dir().join("validator"), ".transcript")[..]
    else {
        panic!("the devnet's validator keeps one transcript");
    };

    let listing = sn2::wire::http::HttpClient::default()
        .get(&format!("{url}/v1/models"), 1 << 20)
        .await
        .unwrap();
    let listing: serde_json::Value = serde_json::from_slice(&listing).unwrap();
    let ceremony = &listing["models"][0]["ceremony"];
    assert_eq!(ceremony["contributions"], 1, "{listing}");
    let transcript = ceremony["transcript"].as_str().unwrap().to_string();

    let infer = |extra: Vec<String>| infer_digits_mlp(&devnet, extra);

    // A transcript file changed since the validator started (as when its ceremony installs
    // new keys, before the restart) is not served as its keys' transcript: 503, saying why.
    let served = std::fs::read(validator_transcript).unwrap();
    let mut longer = sn2::proof::groth16::ceremony::Transcript::read(&served).unwrap();
    longer.contribute(None);
    std::fs::write(validator_transcript, longer.to_bytes()).unwrap();
    let id = listing["models"][0]["id"].as_str().unwrap();
    let refused = sn2::wire::http::HttpClient::default()
        .get(&format!("{url}/v1/models/{id}/transcript"), 1 << 30)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("503") && refused.contains("changed since this validator started"),
        "{refused}"
    );
    std::fs::write(validator_transcript, &served).unwrap();
    let (ok, out, err) = infer(vec![]).await;
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("not checked here") && err.contains(&transcript),
        "{err}"
    );
    // The miner keeps the transcript it verified beside the key it made from it.
    let [kept] = &files_ending(&devnet.dir().join("miner-1"), ".transcript")[..] else {
        panic!("the miner keeps one transcript");
    };
    assert_eq!(std::fs::read(kept).unwrap(), served);

    let with_ptau = vec!["--ptau".to_string(), ptau.to_str().unwrap().into()];
    let (ok, out, err) = infer(with_ptau.clone()).await;
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("verified here") && err.contains(&transcript),
        "{err}"
    );
    // The one contribution the devnet made is listed, and its hash is the transcript's;
    // the devnet's validator signed it.
    let line = err
        .lines()
        .find_map(|line| line.trim().strip_prefix("contribution"))
        .unwrap();
    let listed = line.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(listed, transcript);
    let signer = devnet.validator.hotkey().ss58();
    assert!(line.ends_with(&format!("signed by {signer}")), "{err}");

    let mut mine = with_ptau.clone();
    mine.extend(["--contribution".to_string(), listed.to_uppercase()]);
    let (ok, out, err) = infer(mine).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("without trusting anyone else"), "{err}");

    let mut absent = with_ptau;
    absent.extend(["--contribution".to_string(), "ab".repeat(32)]);
    let (ok, _, err) = infer(absent).await;
    assert!(!ok && err.contains("is not in the ceremony"), "{err}");

    // Powers of tau other than the ceremony's: the transcript does not start from them.
    let (ok, _, err) = infer(vec![
        "--ptau".into(),
        powers.join("p0.ptau").to_str().unwrap().into(),
    ])
    .await;
    assert!(!ok && err.contains("refused"), "{err}");
    let models = tempfile::tempdir().unwrap();
    copy_dir(&devnet.dir().join("validator"), models.path());
    devnet.stop().await;

    // The miner takes keys only from a transcript it verifies. A validator that serves a
    // transcript with one more contribution (which verifies, but makes another key than
    // the one it names) is refused.
    let [kept] = &files_ending(models.path(), ".transcript")[..] else {
        panic!("one transcript beside the keys");
    };
    std::fs::write(kept, longer.to_bytes()).unwrap();
    let devnet = sn2::devnet::Devnet::start(&sn2::devnet::DevnetOptions {
        miners: 1,
        round_interval: std::time::Duration::from_secs(3600),
        validator_models: Some(models.path().to_path_buf()),
        miner_ptau: Some(ptau.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let (ok, _, err) = infer_digits_mlp(&devnet, vec![]).await;
    assert!(!ok && err.contains("makes proving key"), "{err}");
    assert!(files_ending(&devnet.dir().join("miner-1"), ".pk").is_empty());
    devnet.stop().await;
}

/// Copies the directory tree `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// `sn2 infer` of digits-mlp on one input against `devnet`'s API, with `extra` arguments,
/// on a blocking thread: (success, stdout, stderr).
async fn infer_digits_mlp(
    devnet: &sn2::devnet::Devnet,
    extra: Vec<String>,
) -> (bool, String, String) {
    let url = format!("http://{}", devnet.api);
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.json");
        std::fs::write(&input, sn2::model::input::format_input(&[0.5; 64])).unwrap();
        let mut args = vec!["infer".to_string(), "--validator".into(), url];
        args.extend(["--model".into(), "digits-mlp".into(), "--input".into()]);
        args.push(input.to_str().unwrap().into());
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sn2(&args)
    })
    .await
    .unwrap()
}

/// The files under `dir`, at any depth, whose names end with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_with_powers_of_tau_refuses_keys_from_a_validators_own_setup() {
    if snarkjs().is_none() {
        return;
    }
    let powers = tokio::task::spawn_blocking(digits_mlp_ptau).await.unwrap();
    let devnet = sn2::devnet::Devnet::start(&sn2::devnet::DevnetOptions {
        miners: 1,
        models: vec!["digits-mlp".into()],
        round_interval: std::time::Duration::from_secs(3600),
        miner_ptau: Some(powers.join("final.ptau")),
        ..Default::default()
    })
    .await
    .unwrap();
    let (ok, _, err) = infer_digits_mlp(&devnet, vec![]).await;
    assert!(!ok && err.contains("its own setup"), "{err}");
    assert!(files_ending(&devnet.dir().join("miner-1"), ".pk").is_empty());
    devnet.stop().await;
}

/// A validator's key server for the ceremony test: its ceremony routes on loopback, as
/// `sn2-validator` serves them beside its keys.
async fn serve_ceremonies(
    ceremonies: std::sync::Arc<sn2::validator::ceremony::Ceremonies>,
    shutdown: sn2::shutdown::Shutdown,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(sn2::wire::http::serve(
        listener,
        sn2::wire::http::Limits::new(0),
        std::sync::Arc::new(|_, _| {}),
        move |parts, _| {
            let ceremonies = ceremonies.clone();
            async move {
                ceremonies
                    .handle(parts.uri.path())
                    .unwrap_or_else(|| sn2::wire::http::text_response(404, "text/plain", ""))
            }
        },
        shutdown,
    ));
    address
}

/// One validator's ceremonies per hotkey, each with its own models directory (digits-mlp
/// imported) and private state under `dir`, starting from `ptau` with `quorum` and open to
/// users for `open_for`, and its key server: (ceremonies, key server address, models
/// directory).
async fn ceremony_nodes(
    dir: &Path,
    ptau: &Path,
    hotkeys: &[sn2::keys::Hotkey],
    quorum: usize,
    open_for: std::time::Duration,
    shutdown: &sn2::shutdown::Shutdown,
) -> Vec<(
    std::sync::Arc<sn2::validator::ceremony::Ceremonies>,
    std::net::SocketAddr,
    PathBuf,
)> {
    use sn2::validator::ceremony::{Ceremonies, CeremonyOptions};
    let mut nodes = Vec::new();
    for (i, hotkey) in hotkeys.iter().cloned().enumerate() {
        let models = dir.join(format!("v{i}/models"));
        import_digits_mlp("--models-dir", models.to_str().unwrap());
        let stored = sn2::model::ModelStore::new(&models)
            .open("digits-mlp")
            .unwrap();
        let options = CeremonyOptions {
            ptau: ptau.to_path_buf(),
            quorum,
            poll_interval: std::time::Duration::from_secs(1),
            state_dir: dir.join(format!("v{i}/state")),
            open_for,
        };
        let ceremonies =
            tokio::task::spawn_blocking(move || Ceremonies::start(options, hotkey, vec![stored]))
                .await
                .unwrap()
                .unwrap();
        let ceremonies = std::sync::Arc::new(ceremonies);
        let address = serve_ceremonies(ceremonies.clone(), shutdown.clone()).await;
        nodes.push((ceremonies, address, models));
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_validators_run_a_ceremony_through_their_key_servers_and_install_one_set_of_keys() {
    use sn2::keys::Hotkey;
    use sn2::validator::ceremony::{Listed, Peers};
    if snarkjs().is_none() {
        return;
    }
    let powers = tokio::task::spawn_blocking(digits_mlp_ptau).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_stop, shutdown) = sn2::shutdown::channel();

    // Three validators, each with its own hotkey, models directory and private state.
    let hotkeys: Vec<Hotkey> = (0..3u8).map(|i| Hotkey::from_seed(&[10 + i; 32])).collect();
    let nodes = ceremony_nodes(
        dir.path(),
        &powers.join("final.ptau"),
        &hotkeys,
        3,
        std::time::Duration::ZERO,
        &shutdown,
    )
    .await;
    // All start from the same transcript: the powers of tau and the circuit fix it.
    let first: Vec<Vec<Listed>> = nodes.iter().map(|n| n.0.listing()).collect();
    assert!(
        first
            .iter()
            .all(|l| l == &first[0] && l[0].contributions == 0),
        "{first:?}"
    );

    // A fourth key server lists a better transcript than any (more contributions) and
    // serves a damaged one: it is refused, and asked for once only.
    let honest = nodes[0].0.listing()[0].clone();
    let liar_listing = serde_json::json!({ "ceremonies": [{
        "model": honest.model, "transcript": "ff".repeat(32), "contributions": 9 }] });
    let (liar, liar_served) =
        serve_one_transcript(liar_listing, vec![7u8; 4096], shutdown.clone()).await;
    // A fifth, with no permit, serves a valid transcript of two contributions: one
    // unsigned, one signed by its own hotkey. It is adopted (nothing held is better), but
    // neither contribution counts toward the quorum of three validators: before this
    // check, one validator's contribution on top of it made the quorum.
    let outsider = Hotkey::from_seed(&[99; 32]);
    let mut padded = sn2::proof::groth16::ceremony::Transcript::read(
        &std::fs::read(
            dir.path()
                .join(format!("v0/state/ceremony/{}.transcript", honest.model)),
        )
        .unwrap(),
    )
    .unwrap();
    padded.contribute(None);
    padded.contribute(Some(&outsider));
    let padded_listing = serde_json::json!({ "ceremonies": [{
        "model": honest.model, "transcript": hex::encode(padded.hash()), "contributions": 2,
        "signers": [outsider.ss58()] }] });
    let (sybil, _) =
        serve_one_transcript(padded_listing, padded.to_bytes(), shutdown.clone()).await;
    // A sixth serves the same transcript but lists it as signed by the three validators,
    // to be fetched first: its hash says otherwise, so it is refused, and asked for once.
    let boast = serde_json::json!({ "ceremonies": [{
        "model": honest.model, "transcript": hex::encode(padded.hash()), "contributions": 3,
        "signers": hotkeys.iter().map(Hotkey::ss58).collect::<Vec<_>>() }] });
    let (boaster, boaster_served) =
        serve_one_transcript(boast, padded.to_bytes(), shutdown.clone()).await;

    // All look at once, so the first contributions fork the transcript three ways; the
    // looks that follow settle the forks until all hold one transcript with every one's
    // contribution.
    let mut installs = [0; 3];
    let mut looks = 0;
    let peers_of = |i: usize| Peers {
        key_servers: (0..3)
            .filter(|&j| j != i)
            .map(|j| nodes[j].1)
            .chain([liar, sybil, boaster])
            .collect(),
        validators: (0..3)
            .filter(|&j| j != i)
            .map(|j| hotkeys[j].public())
            .collect(),
    };
    loop {
        let running: Vec<_> = (0..3)
            .map(|i| {
                let (ceremonies, peers) = (nodes[i].0.clone(), peers_of(i));
                tokio::spawn(async move { ceremonies.look(&peers).await.len() })
            })
            .collect();
        for (i, look) in running.into_iter().enumerate() {
            installs[i] += look.await.unwrap();
        }
        looks += 1;
        let listings: Vec<Listed> = nodes.iter().map(|n| n.0.listing()[0].clone()).collect();
        if looks == 1 {
            assert!(
                listings.iter().all(|l| l.contributions == 3)
                    && listings[0].transcript != listings[1].transcript
                    && listings[1].transcript != listings[2].transcript,
                "{listings:?}"
            );
            assert_eq!(installs, [0; 3], "{listings:?}");
        }
        if listings.iter().all(|l| l == &listings[0]) && installs.iter().all(|&n| n > 0) {
            break;
        }
        assert!(looks < 12, "no agreement after {looks} looks: {listings:?}");
    }
    let agreed = nodes[0].0.listing()[0].clone();
    assert_eq!(agreed.contributions, 5, "{agreed:?}");
    let mut signers = agreed.signers.clone();
    signers.sort();
    let mut expected: Vec<String> = hotkeys
        .iter()
        .chain([&outsider])
        .map(Hotkey::ss58)
        .collect();
    expected.sort();
    assert_eq!(signers, expected, "{agreed:?}");
    for (served, who) in [(liar_served, "liar"), (boaster_served, "boaster")] {
        let served = served.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(served, 3, "each validator asked the {who} once");
    }

    // Every validator installed the agreed transcript's keys: the same verifying key, with
    // the ceremony as its provenance, pinned in its private state.
    let fingerprints: Vec<String> = nodes
        .iter()
        .map(|(_, _, models)| {
            let (vk, record) = installed_keys(models);
            assert_eq!(
                record.transcript.as_deref(),
                Some(agreed.transcript.as_str())
            );
            assert_eq!(record.parties, 5);
            sn2::proof::keys::fingerprint(&vk)
        })
        .collect();
    assert!(
        fingerprints.iter().all(|f| f == &fingerprints[0]),
        "{fingerprints:?}"
    );
    for i in 0..3 {
        let pins =
            std::fs::read_to_string(dir.path().join(format!("v{i}/state/key-pins.json"))).unwrap();
        assert!(
            pins.contains(&fingerprints[0]) && pins.contains("\"ceremony\""),
            "{pins}"
        );
    }
    // The transcript each serves verifies with `sn2 ceremony verify` and lists five
    // contributions, one signed by each validator.
    let transcript = dir.path().join("agreed.transcript");
    std::fs::write(
        &transcript,
        std::fs::read(
            dir.path()
                .join(format!("v0/state/ceremony/{}.transcript", agreed.model)),
        )
        .unwrap(),
    )
    .unwrap();
    let (ok, out, err) = sn2(&[
        "ceremony",
        "verify",
        transcript.to_str().unwrap(),
        "--ptau",
        powers.join("final.ptau").to_str().unwrap(),
        "--models-dir",
        nodes[0].2.to_str().unwrap(),
    ]);
    assert!(ok && out.contains(&agreed.transcript), "{out}{err}");
    for key in hotkeys.iter().chain([&outsider]) {
        let signed = format!("signed by {}", key.ss58());
        assert_eq!(out.matches(&signed).count(), 1, "{signed} in {out}");
    }

    // A proof made with one validator's installed proving key verifies with another's keys.
    let input = dir.path().join("input.json");
    std::fs::write(&input, sn2::model::input::format_input(&[0.25; 64])).unwrap();
    let proof = dir.path().join("proof.json");
    let (ok, _, err) = sn2(&[
        "prove",
        "--model",
        "digits-mlp",
        "--models-dir",
        nodes[1].2.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        proof.to_str().unwrap(),
        "--miner",
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = sn2(&[
        "verify",
        "--model",
        "digits-mlp",
        "--models-dir",
        nodes[2].2.to_str().unwrap(),
        "--proof",
        proof.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");

    // Another look changes nothing: no new contribution, no new install.
    for (i, (ceremonies, _, _)) in nodes.iter().enumerate() {
        assert!(ceremonies.look(&peers_of(i)).await.is_empty());
        assert_eq!(ceremonies.listing()[0], agreed);
    }

    // The agreed transcript with one more contribution, unsigned: better in the order, so
    // every validator adopts and serves it, but no more validators signed it, so none
    // installs its keys (and restarts): appending contributions cannot churn the keys.
    let mut appended =
        sn2::proof::groth16::ceremony::Transcript::read(&std::fs::read(&transcript).unwrap())
            .unwrap();
    appended.contribute(None);
    let appended_listing = serde_json::json!({ "ceremonies": [{
        "model": agreed.model, "transcript": hex::encode(appended.hash()),
        "contributions": 6, "signers": agreed.signers }] });
    let (appender, _) =
        serve_one_transcript(appended_listing, appended.to_bytes(), shutdown.clone()).await;
    for (i, (ceremonies, _, models)) in nodes.iter().enumerate() {
        let mut peers = peers_of(i);
        peers.key_servers.push(appender);
        assert!(ceremonies.look(&peers).await.is_empty());
        let held = ceremonies.listing()[0].clone();
        assert_eq!(held.transcript, hex::encode(appended.hash()), "{held:?}");
        let (_, record) = installed_keys(models);
        assert_eq!(
            record.transcript.as_deref(),
            Some(agreed.transcript.as_str())
        );
    }
}

/// A user contributes through a validator while its ceremony is open: the submission is
/// verified, held and served, the validators' contributions follow it, and the keys they
/// install descend from it. The ceremony stays open for `open_secs` after it started,
/// quorum or not, so a second user joins after the quorum and is in the keys too. Submissions that drop, reorder, fork, overfill or damage
/// anything are refused and change nothing, and once the keys are installed the
/// ceremony is closed to users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_submitted_contribution_reaches_the_validators_keys_and_bad_ones_change_nothing() {
    const OPEN_FOR: std::time::Duration = std::time::Duration::from_secs(3600);
    use sn2::keys::Hotkey;
    use sn2::proof::groth16::ceremony::Transcript;
    use sn2::validator::ceremony::{MAX_SUBMITTED, Peers, SubmitError};
    if snarkjs().is_none() {
        return;
    }
    let powers = tokio::task::spawn_blocking(digits_mlp_ptau).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_stop, shutdown) = sn2::shutdown::channel();
    let hotkeys: Vec<Hotkey> = (0..2u8).map(|i| Hotkey::from_seed(&[20 + i; 32])).collect();
    let nodes = ceremony_nodes(
        dir.path(),
        &powers.join("final.ptau"),
        &hotkeys,
        2,
        OPEN_FOR,
        &shutdown,
    )
    .await;
    let model = nodes[0].0.listing()[0].model.clone();
    let first = &nodes[0].0;
    let state_file = dir
        .path()
        .join(format!("v0/state/ceremony/{model}.transcript"));
    let before = first.held_transcript(&model).unwrap();

    // The user's contribution, on top of what the first validator holds, is taken.
    let mut users = Transcript::read(&before).unwrap();
    let mine = hex::encode(users.contribute(None));
    let submitted = first.submit(&model, users.to_bytes().into()).unwrap();
    assert_eq!(submitted.added, vec![mine.clone()]);
    assert_eq!(submitted.contributions, 1);
    assert_eq!(submitted.transcript, mine);
    let taken = first.listing();
    assert_eq!(first.held_transcript(&model).unwrap(), users.to_bytes());
    assert_eq!(std::fs::read(&state_file).unwrap(), users.to_bytes());

    // What is refused changes nothing.
    let refuse = |bytes: Vec<u8>| first.submit(&model, bytes.into()).unwrap_err();
    let said = refuse(users.to_bytes());
    assert!(matches!(said, SubmitError::Added { added: 0 }), "{said}");
    // A transcript forked from what was held before (so it drops the user's
    // contribution) does not extend what is held now.
    let mut forked = Transcript::read(&before).unwrap();
    forked.contribute(None);
    let said = refuse(forked.to_bytes());
    assert!(
        matches!(said, SubmitError::Moved { .. }) && said.to_string().contains("fetch it again"),
        "{said}"
    );
    let mut greedy = users.clone();
    for _ in 0..=MAX_SUBMITTED {
        greedy.contribute(None);
    }
    let said = refuse(greedy.to_bytes());
    assert!(
        matches!(said, SubmitError::Added { added } if added == MAX_SUBMITTED + 1),
        "{said}"
    );
    // Two valid contributions, reordered: each one's proof of knowledge is bound to the
    // transcript before it.
    let mut reordered = users.clone();
    reordered.contribute(None);
    reordered.contribute(None);
    let n = reordered.contributions.len();
    reordered.contributions.swap(n - 1, n - 2);
    let said = refuse(reordered.to_bytes());
    assert!(matches!(said, SubmitError::Invalid(_)), "{said}");
    // One whose last recorded δ is another's: it does not follow from the one before.
    let mut relabelled = users.clone();
    relabelled.contribute(None);
    let earlier = relabelled.contributions[0];
    let last = relabelled.contributions.last_mut().unwrap();
    (last.delta_g1, last.delta_g2) = (earlier.delta_g1, earlier.delta_g2);
    let said = refuse(relabelled.to_bytes());
    assert!(matches!(said, SubmitError::Invalid(_)), "{said}");
    let said = refuse(vec![7u8; 4096]);
    assert!(matches!(said, SubmitError::Invalid(_)), "{said}");
    let said = first
        .submit(&"ab".repeat(32), users.to_bytes().into())
        .unwrap_err();
    assert!(matches!(said, SubmitError::NoCeremony(_)), "{said}");
    assert_eq!(first.listing(), taken);
    assert_eq!(std::fs::read(&state_file).unwrap(), users.to_bytes());

    // The validators look at each other until both have contributed: the second adopts
    // the user's transcript (as many validators, more contributions), so every transcript
    // that follows holds the user's contribution. The quorum is reached, but the ceremony
    // stays open for users: no keys are installed yet.
    let peers_of = |i: usize| Peers {
        key_servers: vec![nodes[1 - i].1],
        validators: [hotkeys[1 - i].public()].into(),
    };
    let settle = |want: usize| {
        let nodes = &nodes;
        async move {
            let mut installs = [0; 2];
            let mut looks = 0;
            loop {
                looks += 1;
                for i in 0..2 {
                    installs[i] += nodes[i].0.look(&peers_of(i)).await.len();
                }
                let listings: Vec<_> = nodes.iter().map(|n| n.0.listing()[0].clone()).collect();
                if listings[0] == listings[1] && listings[0].contributions == want && looks > 1 {
                    return installs;
                }
                assert!(looks < 8, "no agreement after {looks} looks: {listings:?}");
            }
        }
    };
    assert_eq!(settle(3).await, [0, 0]);
    // Users see that it is open, and until when.
    let open = first.open(&model).expect("open to users");
    let opened: u64 =
        std::fs::read_to_string(dir.path().join(format!("v0/state/ceremony/{model}.opened")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert_eq!(open.open_until, opened + OPEN_FOR.as_secs());
    assert_eq!(
        (open.transcript.as_str(), open.contributions),
        (first.listing()[0].transcript.as_str(), 3)
    );
    // A second user joins through the other validator, after the quorum.
    let mut second = Transcript::read(&nodes[1].0.held_transcript(&model).unwrap()).unwrap();
    let theirs = hex::encode(second.contribute(None));
    let submitted = nodes[1].0.submit(&model, second.to_bytes().into()).unwrap();
    assert_eq!(submitted.added, vec![theirs.clone()]);
    assert_eq!(settle(4).await, [0, 0]);

    // Once the window has passed (as if it had started two hours ago), both install the
    // keys of the transcript that holds both users' contributions.
    for i in 0..2 {
        let opened = dir
            .path()
            .join(format!("v{i}/state/ceremony/{model}.opened"));
        let started: u64 = std::fs::read_to_string(&opened)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::write(&opened, format!("{}\n", started - 2 * OPEN_FOR.as_secs())).unwrap();
    }
    assert_eq!(settle(4).await, [1, 1]);
    assert!(first.open(&model).is_none());
    let agreed = first.listing()[0].clone();
    for (_, _, models) in &nodes {
        let (_, record) = installed_keys(models);
        assert_eq!(
            record.transcript.as_deref(),
            Some(agreed.transcript.as_str())
        );
        let kept = std::fs::read(sn2::proof::keys::transcript_path(
            &sn2::model::ModelStore::new(models)
                .open("digits-mlp")
                .unwrap(),
            "groth16-bn254",
        ))
        .unwrap();
        let hashes = Transcript::read(&kept).unwrap().contribution_hashes();
        assert_eq!(hex::encode(hashes[0]), mine);
        assert_eq!(hex::encode(hashes[3]), theirs);
    }

    // The keys are installed: a contribution now would not reach them, so it is refused.
    let mut late = Transcript::read(&first.held_transcript(&model).unwrap()).unwrap();
    late.contribute(None);
    let said = refuse(late.to_bytes());
    assert!(matches!(said, SubmitError::Closed(_)), "{said}");
    assert_eq!(first.listing()[0], agreed);
}

/// The verifying key of digits-mlp in the models directory `models`, and its provenance.
fn installed_keys(models: &Path) -> (Vec<u8>, sn2::proof::keys::Provenance) {
    let stored = sn2::model::ModelStore::new(models)
        .open("digits-mlp")
        .unwrap();
    let vk = sn2::proof::keys::read(
        &stored,
        "groth16-bn254",
        sn2::proof::keys::KeyKind::Verifying,
    )
    .unwrap();
    let record = sn2::proof::keys::provenance(&stored, "groth16-bn254", &vk).unwrap();
    (vk, record)
}

/// A key server that lists `listing` at `/ceremonies` and serves `body` at any other
/// path; returns its address and how many times it served the body.
async fn serve_one_transcript(
    listing: serde_json::Value,
    body: Vec<u8>,
    shutdown: sn2::shutdown::Shutdown,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    let listing = listing.to_string();
    tokio::spawn(sn2::wire::http::serve(
        listener,
        sn2::wire::http::Limits::new(0),
        std::sync::Arc::new(|_, _| {}),
        move |parts, _| {
            let (listing, body, served) = (listing.clone(), body.clone(), counter.clone());
            async move {
                if parts.uri.path() == "/ceremonies" {
                    sn2::wire::http::text_response(200, "application/json", listing)
                } else {
                    served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    sn2::wire::http::text_response(200, "application/octet-stream", body)
                }
            }
        },
        shutdown,
    ));
    (address, served)
}

/// A validator daemon's config in `dir` (its wallet made by `sn2 keys new`, digits-mlp
/// imported) taking part in ceremonies from `ptau`; the neurons are written later, once
/// every validator's hotkey is known. Returns the config and its key server's address.
fn ceremony_validator(dir: &Path, ptau: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let metrics = format!("127.0.0.1:{}", sn2::devnet::free_port().unwrap());
    let config = dir.join("sn2.toml");
    std::fs::write(
        &config,
        format!(
            "[chain]\nbackend = \"local\"\nsync_interval_secs = 1\n\
             [wallet]\npath = \"wallets\"\nname = \"ops\"\nhotkey = \"v\"\n\
             [metrics]\nlisten = \"{metrics}\"\n\
             [models]\ndir = \"models\"\n\
             [validator]\nstate_dir = \"state\"\nround_interval_secs = 3600\n\
             [validator.ceremony]\nptau = \"{}\"\nquorum = 2\npoll_interval_secs = 1\n",
            ptau.display()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let (ok, _, err) = sn2(&["keys", "new", "--config", config_arg]);
    assert!(ok, "{err}");
    import_digits_mlp("--config", config_arg);
    (config, metrics)
}

/// Writes one metagraph into every config of `validators` (config, key server): each
/// validator, with a permit and its key server as axon.
fn set_neurons(validators: &[(PathBuf, String)]) {
    let neurons: Vec<String> = validators
    .iter()
    .enumerate()
    .map(|(uid, (config, metrics))| {
        let hotkey: serde_json::Value = serde_json::from_slice(
            &std::fs::read(config.parent().unwrap().join("wallets/ops/hotkeys/v")).unwrap(),
        )
        .unwrap();
        format!(
            "{{ uid = {uid}, hotkey = \"{}\", axon = \"{metrics}\", validator_permit = true, stake = 1000.0 }}",
            hotkey["ss58Address"].as_str().unwrap()
        )
    })
    .collect();
    for (config, _) in validators {
        let text = std::fs::read_to_string(config).unwrap().replace(
            "sync_interval_secs = 1\n",
            &format!(
                "sync_interval_secs = 1\nneurons = [{}]\n",
                neurons.join(", ")
            ),
        );
        std::fs::write(config, text).unwrap();
    }
}

#[test]
fn validator_daemons_finish_a_ceremony_together_and_restart_onto_its_keys() {
    use common::daemon::Daemon;
    if snarkjs().is_none() {
        return;
    }
    let ptau = digits_mlp_ptau().join("final.ptau");
    let dir = tempfile::tempdir().unwrap();
    let validators: Vec<(PathBuf, String)> = (0..2)
        .map(|i| ceremony_validator(&dir.path().join(format!("v{i}")), &ptau))
        .collect();
    set_neurons(&validators);

    // Each makes its own keys, starts the ceremony, and once a transcript holds two
    // contributions, its own among them, installs its keys and stops with exit code 75;
    // the test starts it again, as systemd does, until both serve one transcript whose
    // keys they have installed.
    let binary = env!("CARGO_BIN_EXE_sn2-validator");
    let mut daemons: Vec<Daemon> = validators
        .iter()
        .map(|(config, _)| Daemon::start(binary, config))
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listing = |metrics: &str| -> Option<serde_json::Value> {
        let bytes = runtime.block_on(async {
            let client = sn2::wire::http::HttpClient::default();
            let url = format!("http://{metrics}/ceremonies");
            let fetch = client.get(&url, 1 << 20);
            tokio::time::timeout(std::time::Duration::from_secs(10), fetch)
                .await
                .ok()?
                .ok()
        })?;
        serde_json::from_slice::<serde_json::Value>(&bytes).ok()
    };
    let provenance = |config: &Path| -> serde_json::Value {
        let keys = std::fs::read_dir(config.parent().unwrap().join("models"))
            .unwrap()
            .map(|e| e.unwrap().path().join("keys/groth16-bn254.provenance.json"))
            .find(|p| p.exists())
            .unwrap();
        serde_json::from_slice(&std::fs::read(keys).unwrap()).unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut installs = [0; 2];
    let agreed = loop {
        for i in 0..daemons.len() {
            if let Some(status) = daemons[i].exited_within(std::time::Duration::ZERO) {
                let lines = daemons[i].lines_so_far();
                assert_eq!(status.code(), Some(75), "validator {i}: {lines:#?}");
                assert!(
                    lines
                        .iter()
                        .any(|l| l.contains("installed the ceremony's keys")),
                    "{lines:#?}"
                );
                installs[i] += 1;
                daemons[i] = Daemon::start(binary, &validators[i].0);
            }
        }
        if installs.iter().all(|&n| n > 0) {
            let listings: Vec<Option<serde_json::Value>> = validators
                .iter()
                .map(|(_, metrics)| listing(metrics))
                .collect();
            let held: Vec<&serde_json::Value> = listings
                .iter()
                .flatten()
                .map(|l| &l["ceremonies"][0])
                .collect();
            if held.len() == 2
                && held[0] == held[1]
                && held[0]["contributions"] == 2
                && validators
                    .iter()
                    .all(|(config, _)| provenance(config)["transcript"] == held[0]["transcript"])
            {
                break held[0].clone();
            }
        }
        if std::time::Instant::now() > deadline {
            let logs: Vec<Vec<String>> = daemons.iter_mut().map(|d| d.lines_so_far()).collect();
            panic!("no agreement in 300 s (installs {installs:?}); the logs: {logs:#?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };

    // Started again on the ceremony's keys, each loaded them: they are pinned, so it
    // started, and the fingerprint it logged is the provenance's. (One that installed
    // just now is still stopping: it is started again first.)
    std::thread::sleep(std::time::Duration::from_secs(3));
    for (i, (config, _)) in validators.iter().enumerate() {
        if let Some(status) = daemons[i].exited_within(std::time::Duration::ZERO) {
            assert_eq!(status.code(), Some(75), "{:#?}", daemons[i].lines_so_far());
            daemons[i] = Daemon::start(binary, config);
        }
        let record = provenance(config);
        assert_eq!(record["origin"], "ceremony", "{record}");
        assert_eq!(record["parties"], 2, "{record}");
        assert_eq!(record["transcript"], agreed["transcript"], "{record}");
        let fingerprint = record["verifying_key"].as_str().unwrap();
        let loaded = |lines: &[String]| {
            lines
                .iter()
                .any(|l| l.contains("model loaded, its keys checked") && l.contains(fingerprint))
        };
        let waited = std::time::Instant::now();
        while !loaded(&daemons[i].lines_so_far()) {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(60),
                "{:#?} {record}",
                daemons[i].lines_so_far()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert_eq!(agreed["contributions"], 2, "{agreed}");
    for daemon in daemons {
        daemon.signal("TERM");
        let (status, lines) = daemon.finish();
        assert!(status.success(), "{lines:#?}");
    }
}

/// `sn2 ceremony join` through a validator daemon's user API: the contribution is taken,
/// and the transcript the validator then serves holds it. Submissions that are not
/// transcripts get a clear 400, and the ceremony held is unchanged.
#[test]
fn sn2_ceremony_join_contributes_through_a_validators_api() {
    use common::daemon::Daemon;
    if snarkjs().is_none() {
        return;
    }
    let ptau = digits_mlp_ptau().join("final.ptau");
    let dir = tempfile::tempdir().unwrap();
    // One validator with a quorum of two: its ceremony stays open.
    let validator = ceremony_validator(&dir.path().join("v"), &ptau);
    set_neurons(std::slice::from_ref(&validator));
    let (config, _) = validator;
    let api = format!("127.0.0.1:{}", sn2::devnet::free_port().unwrap());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[api]\nenabled = true\nlisten = \"{api}\"\nopen = true\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut validator = Daemon::start(env!("CARGO_BIN_EXE_sn2-validator"), &config);
    validator.wait_for_ready();
    let waited = std::time::Instant::now();
    while !(validator.lines_so_far().iter())
        .any(|l| l.contains("serving the ceremonies' transcripts"))
    {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(120),
            "{:#?}",
            validator.lines_so_far()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let url = format!("http://{api}");

    let (ok, out, err) = sn2(&[
        "ceremony",
        "join",
        "--validator",
        &url,
        "--model",
        "digits-mlp",
    ]);
    assert!(ok, "{out}{err}");
    let mine = out
        .lines()
        .find(|line| line.len() == 64 && line.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no hash in {out}"))
        .to_string();
    assert!(out.contains(&format!("--contribution {mine}")), "{out}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = sn2::wire::http::HttpClient::default();
    let models: serde_json::Value = serde_json::from_slice(
        &runtime
            .block_on(client.get(&format!("{url}/v1/models"), 1 << 20))
            .unwrap(),
    )
    .unwrap();
    let id = models["models"][0]["id"].as_str().unwrap().to_string();
    let open = &models["models"][0]["ceremony_open"];
    assert!(open["contributions"].as_u64().unwrap() >= 1, "{models}");
    let ceremony = format!("{url}/v1/models/{id}/ceremony");
    let held = runtime.block_on(client.get(&ceremony, 1 << 30)).unwrap();
    let hashes = sn2::proof::groth16::ceremony::Transcript::read(&held)
        .unwrap()
        .contribution_hashes();
    assert!(hashes.iter().any(|h| hex::encode(h) == mine), "{hashes:?}");

    // Not a transcript: 400, saying so; the ceremony held is unchanged.
    let post = |body: Vec<u8>| {
        let request = hyper::Request::post(&ceremony)
            .header("content-type", "application/octet-stream")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let (status, answer) = runtime.block_on(client.raw(request, 1 << 20)).unwrap();
        (status, String::from_utf8_lossy(&answer).into_owned())
    };
    let (status, answer) = post(b"not a transcript".to_vec());
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("bad_transcript") && answer.contains("does not verify"),
        "{answer}"
    );
    let now = runtime.block_on(client.get(&ceremony, 1 << 30)).unwrap();
    let moved_on = sn2::proof::groth16::ceremony::Transcript::read(&now)
        .unwrap()
        .contribution_hashes();
    assert!(moved_on.starts_with(&hashes), "{moved_on:?}");
    validator.signal("TERM");
    let (status, lines) = validator.finish();
    assert!(status.success(), "{lines:#?}");
}

/// The sections of an iden3 container (`.zkey`), in order: (id, bytes).
fn container_sections(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    section_offsets(bytes)
        .into_iter()
        .map(|(id, start, size)| (id, bytes[start..start + size].to_vec()))
        .collect()
}

/// A container of `sections` with `bytes`'s magic and version.
fn container(bytes: &[u8], sections: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (id, section) in sections {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(section.len() as u64).to_le_bytes());
        out.extend_from_slice(section);
    }
    out
}

/// The hex digits snarkjs printed for a contribution's hash (eight-digit groups over
/// four lines, after `label`).
fn snarkjs_hash(said: &str, label: &str) -> String {
    let after = &said[said
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {said}"))..];
    after
        .lines()
        .skip(1)
        .take(4)
        .flat_map(|line| line.split_whitespace().map(str::to_string))
        .filter(|word| word.len() == 8 && word.chars().all(|c| c.is_ascii_hexdigit()))
        .collect()
}

/// A phase 2 run with snarkjs alone on the circuit sn2 writes (`sn2 ceremony r1cs`): two
/// parties contribute with `snarkjs zkey contribute`, `snarkjs zkey verify` accepts it, and
/// `sn2 ceremony import` checks it again itself before installing its keys, listing each
/// contribution by the hash snarkjs gave its contributor. A proof made with those keys
/// passes `snarkjs groth16 verify` under the verifying key snarkjs exports from its own
/// file, and the proof's witness passes `snarkjs wtns check` against the circuit. A zkey
/// nobody contributed to, one whose contributions were dropped, reordered, altered or
/// unproven, one with two points of H swapped, one cut short and ones with a flipped bit
/// are refused, and the model's keys stay as they were.
#[test]
fn a_snarkjs_ceremony_on_sn2s_circuit_gives_keys_sn2_checks_and_snarkjs_verifies() {
    if snarkjs().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let powers = digits_mlp_ptau();
    let path = |name: &str| d.join(name).to_str().unwrap().to_string();
    let ptau = powers.join("final.ptau").to_str().unwrap().to_string();
    let models = path("models");
    import_digits_mlp("--models-dir", &models);
    let (ok, _, err) = sn2(&["model", "setup", "digits-mlp", "--models-dir", &models]);
    assert!(ok, "{err}");
    let (ok, out, err) = sn2(&[
        "ceremony",
        "r1cs",
        "digits-mlp",
        "--out",
        &path("circuit.r1cs"),
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("circuit.r1cs"), "{out}");
    run_snarkjs(d, &["zkey", "new", "circuit.r1cs", &ptau, "c0.zkey"]);
    let mut hashes = Vec::new();
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        let (ok, said) = snarkjs_says(
            d,
            &[
                "zkey",
                "contribute",
                &format!("c{i}.zkey"),
                &format!("c{}.zkey", i + 1),
                &format!("--name={name}"),
                &format!("-e=entropy of {name}"),
            ],
        );
        assert!(ok, "{said}");
        hashes.push(snarkjs_hash(&said, "Contribution Hash"));
    }
    let (ok, said) = snarkjs_says(d, &["zkey", "verify", "circuit.r1cs", &ptau, "c2.zkey"]);
    assert!(ok && said.contains("ZKey Ok!"), "{said}");

    let import = |zkey: &str| {
        sn2(&[
            "ceremony",
            "import",
            "digits-mlp",
            zkey,
            "--ptau",
            &ptau,
            "--models-dir",
            &models,
            "--force",
        ])
    };
    // A zkey nobody has contributed to: its δ is the generator, anyone could forge.
    let (ok, _, err) = import(&path("c0.zkey"));
    assert!(!ok && err.contains("no party has contributed"), "{err}");

    // Damaged ceremonies, each refused for what was done to it.
    let good = std::fs::read(path("c2.zkey")).unwrap();
    let sections = container_sections(&good);
    let contributions = sections.iter().position(|(id, _)| *id == 10).unwrap();
    let section = &sections[contributions].1;
    // Each contribution: δ after, s, x·s (G1), x·r (G2), its transcript hash, its type,
    // and its parameters (the name) with their length.
    let record = |at: usize| {
        let params = u32::from_le_bytes(section[at + 388..at + 392].try_into().unwrap());
        at..at + 392 + params as usize
    };
    let first = record(68);
    let second = record(first.end);
    let with_contributions = |records: &[&[u8]], count: u32| {
        let mut section10 = section[..64].to_vec();
        section10.extend_from_slice(&count.to_le_bytes());
        for r in records {
            section10.extend_from_slice(r);
        }
        let mut changed = sections.clone();
        changed[contributions].1 = section10;
        container(&good, &changed)
    };
    let (one, two) = (&section[first.clone()], &section[second.clone()]);
    let mut altered = two.to_vec();
    altered[..64].copy_from_slice(&one[..64]); // δ after the second: the first's
    let mut unproven = two.to_vec();
    unproven[192..320].copy_from_slice(&one[192..320]); // x·r: the first's
    // Two points of H swapped: each valid, neither where it belongs.
    let h = sections.iter().position(|(id, _)| *id == 9).unwrap();
    let mut swapped = sections.clone();
    let (first_h, second_h) = (swapped[h].1[..64].to_vec(), swapped[h].1[64..128].to_vec());
    swapped[h].1[..64].copy_from_slice(&second_h);
    swapped[h].1[64..128].copy_from_slice(&first_h);
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "dropped",
            with_contributions(&[one], 1),
            "the one its contributions made",
        ),
        (
            "reordered",
            with_contributions(&[two, one], 2),
            "transcript hash",
        ),
        (
            "altered",
            with_contributions(&[one, &altered], 2),
            "contribution 2: its δ",
        ),
        (
            "unproven",
            with_contributions(&[one, &unproven], 2),
            "proof of knowledge",
        ),
        ("H swapped", container(&good, &swapped), "H is not"),
        ("cut", good[..good.len() - 100].to_vec(), "refused"),
    ];
    let keys = Path::new(&models);
    let key_files = || {
        files_ending(keys, ".vk")
            .into_iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect::<Vec<_>>()
    };
    let mut before = key_files();
    for (what, bytes, expected) in cases {
        let file = path(&format!("{what}.zkey"));
        std::fs::write(&file, bytes).unwrap();
        let (ok, _, err) = import(&file);
        assert!(!ok && err.contains(expected), "{what}: {err}");
        assert_eq!(key_files(), before, "{what}: the keys changed");
    }
    // A flipped bit anywhere in the points, the header or the contributions: a message,
    // never a panic. (A name, or the coefficients section, which the prover does not
    // read, may change unnoticed: neither is part of what a key proves.)
    let flipped = path("flipped.zkey");
    for (id, section) in &sections {
        if *id == 4 {
            continue;
        }
        // The lists of points once each; the header and the contributions throughout.
        let offsets = match id {
            1 | 2 | 10 => vec![0, section.len() / 2, section.len() - 1],
            _ => vec![section.len() / 2],
        };
        for at in offsets {
            let mut changed = sections.clone();
            let index = changed.iter().position(|(i, _)| i == id).unwrap();
            changed[index].1[at] ^= 0x04;
            std::fs::write(&flipped, container(&good, &changed)).unwrap();
            let (ok, _, err) = import(&flipped);
            assert!(!err.contains("panicked"), "section {id} byte {at}: {err}");
            if ok {
                // Taken: only a contribution's name may change unnoticed.
                assert!(*id == 10, "section {id} byte {at} was taken");
                before = key_files();
            } else {
                assert!(err.contains("refused"), "section {id} byte {at}: {err}");
                assert_eq!(key_files(), before, "section {id} byte {at}");
            }
        }
    }

    // The ceremony itself: checked, listed by snarkjs's hashes, installed.
    let (ok, out, err) = import(&path("c2.zkey"));
    assert!(ok, "{err}");
    assert!(out.contains("2 contributions"), "{out}");
    for (hash, name) in hashes.iter().zip(["alice", "bob"]) {
        assert_eq!(hash.len(), 128, "{hash}");
        let line = out.lines().find(|l| l.contains(hash.as_str()));
        assert!(
            line.is_some_and(|l| l.contains(name)),
            "{hash} {name} in {out}"
        );
    }
    // The zkey is kept beside the keys, where a validator serves a transcript, and `sn2
    // ceremony verify` checks it as miners and `sn2 infer --ptau` check what they fetch.
    let kept = files_ending(Path::new(&models), ".transcript");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), good);
    let verify = |model: Option<&str>| {
        let mut args = vec![
            "ceremony",
            "verify",
            kept[0].to_str().unwrap(),
            "--ptau",
            &ptau,
        ];
        args.extend(model.map(|m| ["--model", m]).into_iter().flatten());
        args.extend(["--models-dir", &models]);
        sn2(&args)
    };
    let (ok, _, err) = verify(None);
    assert!(!ok && err.contains("give --model"), "{err}");
    let (ok, out, err) = verify(Some("digits-mlp"));
    assert!(ok, "{err}");
    assert!(out.contains("2 contributions"), "{out}");
    assert!(hashes.iter().all(|h| out.contains(h.as_str())), "{out}");

    // A proof with those keys, its witness checked by snarkjs against the circuit, and
    // the proof checked by snarkjs under snarkjs's own verifying key.
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits-mlp/test.json");
    let (ok, _, err) = sn2(&[
        "prove",
        "--model",
        "digits-mlp",
        "--input",
        input.to_str().unwrap(),
        "--out",
        &path("p.json"),
        "--miner",
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        "--wtns",
        &path("p.wtns"),
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{err}");
    let (ok, said) = snarkjs_says(d, &["wtns", "check", "circuit.r1cs", "p.wtns"]);
    assert!(ok && said.contains("WITNESS IS CORRECT"), "{said}");
    let (ok, out, err) = sn2(&[
        "verify",
        "--model",
        "digits-mlp",
        "--proof",
        &path("p.json"),
        "--snarkjs",
        &path("out"),
        "--models-dir",
        &models,
    ]);
    assert!(ok, "{err}");
    assert!(
        format!("{out}{err}").contains("a snarkjs ceremony of 2 contributions"),
        "{out}{err}"
    );
    run_snarkjs(
        d,
        &["zkey", "export", "verificationkey", "c2.zkey", "vk.json"],
    );
    let (ok, said) = snarkjs_says(
        d,
        &[
            "groth16",
            "verify",
            "vk.json",
            "out/public.json",
            "out/proof.json",
        ],
    );
    assert!(ok && said.contains("OK"), "{said}");

    // Over the network: a validator serving those keys, and a miner that takes a proving
    // key only from a ceremony it verifies, fetches the zkey, checks it, makes the key
    // from it and proves; `sn2 infer --ptau` checks the same zkey and lists both
    // contributions.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let devnet = sn2::devnet::Devnet::start(&sn2::devnet::DevnetOptions {
            miners: 1,
            round_interval: std::time::Duration::from_secs(3600),
            validator_models: Some(models.clone().into()),
            miner_ptau: Some(ptau.clone().into()),
            ..Default::default()
        })
        .await
        .unwrap();
        let (ok, out, err) = infer_digits_mlp(&devnet, vec![]).await;
        assert!(ok, "{out}{err}");
        let [kept] = &files_ending(&devnet.dir().join("miner-1"), ".transcript")[..] else {
            panic!("the miner keeps the zkey it verified");
        };
        assert_eq!(std::fs::read(kept).unwrap(), good);
        let (ok, out, err) = infer_digits_mlp(&devnet, vec!["--ptau".into(), ptau.clone()]).await;
        assert!(ok, "{out}{err}");
        assert!(err.contains("verified here"), "{err}");
        assert!(hashes.iter().all(|h| err.contains(h.as_str())), "{err}");
        devnet.stop().await;
    });
}
