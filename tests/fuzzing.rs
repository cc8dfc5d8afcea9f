//! The fuzz targets' inputs, replayed: every seed of `fuzz/corpus/<target>/` and every past
//! finding in `fuzz/regressions/<target>/` goes through its decoder (`sn2::fuzzing`), which
//! must refuse or accept it without panicking. A finding becomes a regression by copying
//! the fuzzer's crash file into `fuzz/regressions/<target>/`.
//!
//! The seeds are written by `write_seed_corpora` below:
//! `cargo test --test fuzzing -- --ignored write_seed_corpora`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;

use sn2::fuzzing::TARGETS;
use sn2::keys::Hotkey;
use sn2::model::{ModelId, codec};
use sn2::proof::{self, Binding, ProofFile, keys as key_files};
use sn2::wire::auth::{self, epistula_message};
use sn2::wire::quic::{self, HandshakeRequest, SignedResponse};
use sn2::wire::{ErrorBody, ErrorCode, ProveRequest, ProveResponse, Request, Response};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_past_finding_is_decoded_without_a_panic() {
    for (name, target) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "no seed corpus for {name}");
        let findings = files(&fuzz_dir().join("regressions").join(name));
        for file in seeds.iter().chain(&findings) {
            let bytes = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name} panicked on {}", file.display());
        }
    }
}

#[test]
fn every_target_has_its_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(
            text.contains(&format!("sn2::fuzzing::{name}(data)")),
            "{text}"
        );
        assert!(manifest.contains(&format!("name = \"{name}\"")));
    }
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The seeds of `ceremony_record`: a snarkjs ceremony (`zkey new`, one `contribute`) on
/// the fixture's circuit from the fixture's powers of tau, the same before anyone
/// contributed, and an sn2 transcript of one contribution. Each is checked as deep as it
/// goes: the contributed ones pass, so the fuzzer starts from records that reach the end.
#[test]
#[ignore = "writes fuzz/corpus/ceremony_record with snarkjs (tests/setup.sh installs it)"]
fn write_ceremony_record_seeds() {
    use sn2::proof::groth16::{self, ceremony::Transcript};
    let fixture = sn2::fuzzing::ceremony_fixture();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fixture.r1cs"),
        groth16::circom::r1cs(&fixture.model),
    )
    .unwrap();
    std::fs::write(dir.path().join("fixture.ptau"), ptau_file(&fixture.ptau)).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let snarkjs = |args: &[&str]| {
        let node = common::fetched_node().unwrap_or_else(|| PathBuf::from("node"));
        let output = std::process::Command::new(node)
            .arg(repo.join("tests/snarkjs/node_modules/snarkjs/build/cli.cjs"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "snarkjs {args:?}: {output:?}");
    };
    snarkjs(&["zkey", "new", "fixture.r1cs", "fixture.ptau", "z0.zkey"]);
    snarkjs(&[
        "zkey",
        "contribute",
        "z0.zkey",
        "z1.zkey",
        "--name=seed",
        "-e=the fuzz seed",
    ]);
    let check = |bytes: &[u8]| {
        groth16::check_ceremony_of(bytes, &fixture.id, &fixture.system, &fixture.ptau)
    };
    let contributed = std::fs::read(dir.path().join("z1.zkey")).unwrap();
    assert_eq!(check(&contributed).unwrap().parties, 1);
    let fresh = std::fs::read(dir.path().join("z0.zkey")).unwrap();
    let said = check(&fresh).map(|_| ()).unwrap_err().to_string();
    assert!(said.contains("no party has contributed"), "{said}");
    let mut transcript = Transcript::init(fixture.id, &fixture.system, &fixture.ptau).unwrap();
    transcript.contribute(None);
    let sn2_transcript = transcript.to_bytes();
    assert_eq!(check(&sn2_transcript).unwrap().parties, 1);
    write("ceremony_record", "zkey-one-contribution", &contributed);
    write("ceremony_record", "zkey-no-contribution", &fresh);
    write(
        "ceremony_record",
        "transcript-one-contribution",
        &sn2_transcript,
    );
}

/// `ptau` as a snarkjs `.ptau` file (iden3's container: coordinates in Montgomery form,
/// little-endian), prepared for phase 2.
fn ptau_file(ptau: &sn2::proof::ptau::Ptau) -> Vec<u8> {
    use ark_bn254::{Fq, G1Affine, G2Affine};
    use ark_ec::AffineRepr;
    use ark_ff::{BigInteger, PrimeField};
    let fq = |x: &Fq| x.0.to_bytes_le();
    let g1 = |points: &[G1Affine]| -> Vec<u8> {
        points
            .iter()
            .flat_map(|p| match p.xy() {
                Some((x, y)) => [fq(&x), fq(&y)].concat(),
                None => vec![0; 64],
            })
            .collect()
    };
    let g2 = |points: &[G2Affine]| -> Vec<u8> {
        points
            .iter()
            .flat_map(|p| match p.xy() {
                Some((x, y)) => [fq(&x.c0), fq(&x.c1), fq(&y.c0), fq(&y.c1)].concat(),
                None => vec![0; 128],
            })
            .collect()
    };
    let mut header = 32u32.to_le_bytes().to_vec();
    header.extend(Fq::MODULUS.to_bytes_le());
    header.extend(ptau.power.to_le_bytes());
    header.extend(ptau.ceremony_power.to_le_bytes());
    let lagrange = ptau.lagrange.as_ref().expect("prepared");
    let sections: Vec<(u32, Vec<u8>)> = vec![
        (1, header),
        (2, g1(&ptau.tau_g1)),
        (3, g2(&ptau.tau_g2)),
        (4, g1(&ptau.alpha_tau_g1)),
        (5, g1(&ptau.beta_tau_g1)),
        (6, g2(&[ptau.beta_g2])),
        (7, 0u32.to_le_bytes().to_vec()),
        (12, g1(&lagrange.tau_g1)),
        (13, g2(&lagrange.tau_g2)),
        (14, g1(&lagrange.alpha_tau_g1)),
        (15, g1(&lagrange.beta_tau_g1)),
    ];
    let mut out = b"ptau".to_vec();
    out.extend(1u32.to_le_bytes());
    out.extend((sections.len() as u32).to_le_bytes());
    for (id, section) in sections {
        out.extend(id.to_le_bytes());
        out.extend((section.len() as u64).to_le_bytes());
        out.extend(section);
    }
    // What sn2 reads back is what was written.
    let read = sn2::proof::ptau::Ptau::read(&out).unwrap();
    assert_eq!(read.tau_g1, ptau.tau_g1);
    out
}

/// Writes small, valid inputs for each target, from which the fuzzer mutates.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a format changes"]
fn write_seed_corpora() {
    let validator = Hotkey::from_seed(&[2; 32]);
    let miner = Hotkey::from_seed(&[1; 32]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    // Timelocked commits: one that opens with round 1000's pulse, one for another round.
    let payload = sn2::chain::subtensor::calls::timelock_payload(&[7; 32], &[1, 2], &[3, 4], 5);
    write(
        "timelock_commit",
        "round-1000",
        &sn2::timelock::encrypt(&payload, 1000),
    );
    write(
        "timelock_commit",
        "round-1001",
        &sn2::timelock::encrypt(&payload, 1001),
    );

    // Requests and responses.
    let prove = Request::Prove(ProveRequest {
        model: "11".repeat(32),
        input: vec![1, -2, 3, 127, -128],
        nonce: "ab".repeat(32),
        proving_key: "cd".repeat(32),
    });
    let proved = Response::Proved(ProveResponse {
        output: vec![5, -6, 1 << 20],
        proof: "AAEC".into(),
        prove_ms: 12.5,
    });
    let refused = Response::Error(ErrorBody {
        code: ErrorCode::Busy,
        message: "all proving slots are taken".into(),
    });
    for (name, json) in [
        ("prove", serde_json::to_vec(&prove).unwrap()),
        ("health", serde_json::to_vec(&Request::Health).unwrap()),
        ("models", serde_json::to_vec(&Request::Models).unwrap()),
        ("proved", serde_json::to_vec(&proved).unwrap()),
        ("refused", serde_json::to_vec(&refused).unwrap()),
    ] {
        write("wire_json", name, &json);
    }

    // The handshake, signed for the certificate fingerprint the target checks against.
    let now = sn2::wire::now_ms();
    let fingerprint = "00".repeat(32);
    let nonce = "0f".repeat(16);
    let signature = validator
        .sign(auth::handshake_message(&validator.ss58(), now, &nonce, &fingerprint).as_bytes());
    let handshake = serde_json::to_vec(&HandshakeRequest {
        validator: validator.ss58(),
        timestamp: now,
        nonce,
        cert_fingerprint: fingerprint,
        signature: signature.to_hex(),
    })
    .unwrap();
    write("handshake", "signed", &handshake);

    // Frames of every kind.
    let request = serde_json::to_vec(&prove).unwrap();
    let response = serde_json::to_vec(&SignedResponse {
        body: serde_json::to_string(&proved).unwrap(),
        signature: miner
            .sign(auth::response_message(&auth::sha256_hex(&request), b"{}").as_bytes())
            .to_hex(),
    })
    .unwrap();
    let error = serde_json::to_vec(&refused).unwrap();
    for (name, kind, payload) in [
        ("handshake", quic::FRAME_HANDSHAKE_REQUEST, &handshake),
        ("request", quic::FRAME_REQUEST, &request),
        ("response", quic::FRAME_RESPONSE, &response),
        ("error", quic::FRAME_ERROR, &error),
    ] {
        write(
            "quic_frame",
            name,
            &quic::encode_frame(kind, payload).unwrap(),
        );
    }

    // Epistula headers, one per line, then the body.
    let uuid = auth::uuid_v4();
    let signature =
        validator.sign(epistula_message(&request, &uuid, now, &miner.ss58()).as_bytes());
    let mut headers = format!(
        "2\n{now}\n{uuid}\n{}\n{}\n0x{}\n",
        validator.ss58(),
        miner.ss58(),
        signature.to_hex()
    )
    .into_bytes();
    headers.extend_from_slice(&request);
    write("epistula_headers", "signed", &headers);

    // ONNX files: small ones, imported and refused.
    let onnx = repo.join("tests/data/onnx");
    for file in files(&onnx.join("handmade")) {
        if file.extension().is_some_and(|e| e == "onnx") {
            let name = file.file_name().unwrap().to_str().unwrap();
            write("onnx_import", name, &std::fs::read(&file).unwrap());
        }
    }
    for case in [
        "test_Linear",
        "test_Conv2d_strided",
        "test_MaxPool2d",
        "test_Softmax",
    ] {
        let bytes = std::fs::read(onnx.join(case).join("model.onnx")).unwrap();
        write("onnx_import", case, &bytes);
    }

    // Model files, and the fixture's keys and a proof (the model of `sn2::fuzzing`).
    let linear = std::fs::read(onnx.join("test_Linear/model.onnx")).unwrap();
    let float = sn2::model::onnx::import(&linear).unwrap();
    let samples = sn2::model::input::pseudo_random_samples(16, float.input_len());
    let (model, _) = sn2::model::quantize::quantize(&float, &samples).unwrap();
    write("model_file", "linear", &codec::encode(&model));
    let conv = std::fs::read(onnx.join("test_Conv2d_strided/model.onnx")).unwrap();
    let float_conv = sn2::model::onnx::import(&conv).unwrap();
    let conv_samples = sn2::model::input::pseudo_random_samples(4, float_conv.input_len());
    let (conv_model, _) = sn2::model::quantize::quantize(&float_conv, &conv_samples).unwrap();
    write("model_file", "conv", &codec::encode(&conv_model));
    // A residual block, whose Add joins the second Conv's accumulators.
    let resnet = std::fs::read(repo.join("models/digits-resnet/model.onnx")).unwrap();
    let float_resnet = sn2::model::onnx::import(&resnet).unwrap();
    let resnet_samples = sn2::model::input::pseudo_random_samples(8, float_resnet.input_len());
    let (resnet_model, _) = sn2::model::quantize::quantize(&float_resnet, &resnet_samples).unwrap();
    write("model_file", "residual", &codec::encode(&resnet_model));

    let id = ModelId::of(&codec::encode(&model));
    let system = proof::default_backend();
    let keys = system.setup(&model).unwrap();
    let (proving, verifying) = (
        key_files::encode(
            key_files::KeyKind::Proving,
            system.name(),
            &id,
            &keys.proving,
        ),
        key_files::encode(
            key_files::KeyKind::Verifying,
            system.name(),
            &id,
            &keys.verifying,
        ),
    );
    write("key_file", "proving", &proving);
    write("key_file", "verifying", &verifying);

    // A ceremony transcript of the same model with one contribution, from powers of tau
    // made for the purpose. (`ptau_file`'s seed is a file snarkjs made: `powersoftau new
    // bn128 2`, one `contribute`, `prepare phase2`.)
    {
        use ark_bn254::Fr;
        use sn2::proof::groth16::ceremony::{self, Transcript};
        let system = ceremony::circuit(&model);
        let power = (system.constraint_count() + system.instance_count())
            .next_power_of_two()
            .trailing_zeros();
        let ptau = sn2::proof::ptau::Ptau::from_secrets(
            power,
            Fr::from(3u64),
            Fr::from(5u64),
            Fr::from(7u64),
        );
        let mut transcript = Transcript::init(id, &system, &ptau).unwrap();
        transcript.contribute(None);
        write(
            "ceremony_transcript",
            "one-contribution",
            &transcript.to_bytes(),
        );
        // Version 2: a second contribution, signed by a hotkey.
        transcript.contribute(Some(&miner));
        write(
            "ceremony_transcript",
            "signed-contribution",
            &transcript.to_bytes(),
        );
    }
    let model = Arc::new(model);
    let input = vec![7i8; model.input_len()];
    let binding = Binding::new(&id, &miner.public(), &[9; 32]);
    let proven = system
        .prover(model.clone(), &keys.proving)
        .unwrap()
        .prove(&input, &binding)
        .unwrap();
    let file = ProofFile {
        format: proof::file::FORMAT.into(),
        backend: system.name().into(),
        model: id.to_hex(),
        verifying_key: key_files::fingerprint(&verifying),
        miner: miner.ss58(),
        nonce: hex::encode([9u8; 32]),
        input,
        output_values: model.dequantize_output(&proven.output),
        output: proven.output,
        proof: ProofFile::encode_proof(&proven.proof),
    };
    write(
        "proof_file",
        "proof",
        serde_json::to_string_pretty(&file).unwrap().as_bytes(),
    );

    // Release manifests and Nix keys.
    let key = sn2::update::SecretKey::generate("sn2-fuzz-1").unwrap();
    let output = sn2::update::Output {
        system: "x86_64-linux".into(),
        store_path: nix_derivation::StorePath::from_absolute_path(
            b"/nix/store/9d2lc0cqkgx0vhdj44rmbyzy38p5k2gy-sn2-0.1.0",
        )
        .unwrap(),
        nar_hash: nix_derivation::NixHash::parse(
            "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
        )
        .unwrap(),
        nar_size: 120,
    };
    let body = sn2::update::testing::release(7, 1_800_000_000, vec![output]);
    let manifest = sn2::update::sign(&body, &key).unwrap();
    write("release_manifest", "signed", manifest.as_bytes());
    write("nix_keys", "secret", key.to_file_text().as_bytes());
    write("nix_keys", "public", key.public().as_bytes());
    write(
        "nix_keys",
        "signature",
        key.sign(b"sn2").to_string().as_bytes(),
    );

    // Input files and data sets.
    write(
        "input_json",
        "input",
        sn2::model::input::format_input(&[0.5, -1.25, 3.0]).as_bytes(),
    );
    write(
        "input_json",
        "nested",
        br#"{"input_data": [[[1, 2], [3, 4]]]}"#,
    );
    write(
        "input_json",
        "dataset",
        br#"{"inputs": [[0.1, 0.2], [0.3, 0.4]], "labels": [0, 1], "outputs": [[1.0], [2.0]]}"#,
    );

    // A hotkey file as sn2 (and bittensor-wallet) writes it: a throwaway key.
    let wallets = tempfile::tempdir().unwrap();
    let location = sn2::keys::WalletLocation::new(wallets.path(), "fuzz", "seed").unwrap();
    let created = location.create_hotkey(false).unwrap();
    write(
        "wallet_file",
        "hotkey",
        &std::fs::read(created.path).unwrap(),
    );
}

/// Issue 13's finding: a model file whose input dimensions multiply past `usize` (or wrap
/// to zero) was accepted, and the evaluator then tried to allocate exabytes.
#[test]
fn model_files_whose_input_size_overflows_are_refused() {
    let dir = fuzz_dir().join("regressions/model_file");
    for name in ["input-dimensions-overflow", "input-length-wraps-to-zero"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let error = codec::decode(&bytes).expect_err(name);
        assert!(!error.to_string().is_empty());
        eprintln!("{name}: {error}");
    }
}

/// A fuzzer's finding: a 215-byte Pad asking for 16 million values kept the importer busy
/// for a minute. A model's tensors together are bounded now.
#[test]
fn an_onnx_file_asking_for_millions_of_values_is_refused_at_import() {
    let bytes =
        std::fs::read(fuzz_dir().join("regressions/onnx_import/pad-to-16-million-values")).unwrap();
    let error = sn2::model::onnx::import(&bytes).expect_err("refused");
    assert!(error.to_string().contains("values in all"), "{error}");
}
