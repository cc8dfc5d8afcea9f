//! The reference models under models/, through the operator's commands: import, evaluate
//! against the stored test vectors, set up, prove, verify, and refuse every tampering.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sn2::model::ModelStore;
use sn2::proof::{self, Binding, ProofFile, Statement, keys};

fn sn2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args(args)
        .env_remove("SN2_CONFIG")
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn model_file(name: &str, file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// Imports a reference model into `dir` and returns its id (the last line printed).
fn import(dir: &Path, name: &str) -> String {
    let out = ok(sn2(&[
        "model",
        "import",
        &model_file(name, "model.onnx"),
        "--calibration",
        &model_file(name, "calibration.json"),
        "--models-dir",
        dir.to_str().unwrap(),
    ]));
    let id = out.lines().last().unwrap().to_string();
    assert_eq!(id.len(), 64, "{out}");
    id
}

fn eval(dir: &Path, name: &str) -> serde_json::Value {
    let out = ok(sn2(&[
        "model",
        "eval",
        name,
        "--data",
        &model_file(name, "test.json"),
        "--json",
        "--models-dir",
        dir.to_str().unwrap(),
    ]));
    serde_json::from_str(&out).unwrap()
}

/// A reference model: its id (the SHA-256 of its canonical file, as README lists them),
/// the stated bound on `max |quantised − float|` relative to the largest float output over
/// the test set, and the least test accuracy, float and quantised, where the data has
/// labels.
struct Reference {
    name: &'static str,
    id: &'static str,
    bound: f64,
    accuracy: Option<f64>,
}

const REFERENCE: &[Reference] = &[
    Reference {
        name: "digits-mlp",
        id: "4e28724afe12962a95e2241c864bdc33e19af9132f904f6783cbf6b85c474e8c",
        bound: 0.06,
        accuracy: Some(0.96),
    },
    Reference {
        name: "mnist-mlp",
        id: "857a4eacba00c4a3a792fc9333702533e8a2159a82f92a6b4296dcce2107ca29",
        bound: 0.06,
        accuracy: None,
    },
    Reference {
        name: "cnn-small",
        id: "b477f8d678215ad93a2d04cf3e130be079d81c10ec4cf7b307f420bdb0ae8930",
        bound: 0.06,
        accuracy: None,
    },
    Reference {
        name: "digits-resnet",
        id: "236c65956faa5298d02422b8017fd9a5320a79ebb0f18a0e1bb22e7f3a6ea7dc",
        bound: 0.06,
        accuracy: Some(0.96),
    },
    // Eight steps carry the int8 error of the cell state: a few samples stray further,
    // while the top class agrees on 99% of them.
    Reference {
        name: "digits-lstm",
        id: "c67ce9de5ffb16bbfb7186823dcac15f8dd0248b9be541b10f352ca8259ce1b8",
        bound: 0.2,
        accuracy: Some(0.9),
    },
    // Likewise the GRU's hidden state: its worst sample strays to 17% since the Add
    // before its candidate's tanh joined the input's dense layer, while the mean error
    // fell (0.160 to 0.150) and the top class agrees on more samples (98.9% to 99.3%).
    Reference {
        name: "digits-gru",
        id: "8f3045eafb0035ed191ce8e167614ec68e7ac5db9597cb4f6f445c212b4dd01f",
        bound: 0.2,
        accuracy: Some(0.9),
    },
    Reference {
        name: "digits-transformer",
        id: "94d671c780113fbbd2816635a3665af1dc2b298606c485b7638652b6818de985",
        bound: 0.06,
        accuracy: Some(0.96),
    },
];

#[test]
fn reference_models_import_reproducibly_and_stay_close_to_float() {
    let dir = tempfile::tempdir().unwrap();
    for model in REFERENCE {
        let name = model.name;
        let id = import(dir.path(), name);
        assert_eq!(id, model.id, "{name}: the id README documents");
        assert_eq!(
            import(dir.path(), name),
            id,
            "{name}: importing twice gives one id"
        );
        let report = eval(dir.path(), name);
        // The float evaluator agrees with the stored reference outputs (onnx's reference
        // evaluator or onnxruntime).
        assert!(
            report["reference_max_abs_error"].as_f64().unwrap() < 1e-4,
            "{name}: {report}"
        );
        assert!(
            report["relative_error"].as_f64().unwrap() < model.bound,
            "{name}: {report}"
        );
        assert!(
            report["argmax_agreement"].as_f64().unwrap() >= 0.98,
            "{name}: {report}"
        );
        if let Some(least) = model.accuracy {
            for key in ["float_accuracy", "quantized_accuracy"] {
                assert!(report[key].as_f64().unwrap() >= least, "{name}: {report}");
            }
        }
    }
}

#[test]
fn graph_reference_models_prove_and_verify() {
    // A residual CNN with BatchNorm, an LSTM, a GRU and a transformer block, end to end:
    // keys, a proof of a test input, and its verification.
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "digits-resnet",
        "digits-lstm",
        "digits-gru",
        "digits-transformer",
    ] {
        prove_test_input(dir.path(), name, 7);
    }
}

/// Imports a reference model into `dir`, makes keys, proves its test input `index` and
/// verifies the proof.
fn prove_test_input(dir: &Path, name: &str, index: usize) {
    import(dir, name);
    let stored = ModelStore::new(dir).open(name).unwrap();
    let test = std::fs::read_to_string(model_file(name, "test.json")).unwrap();
    let values = &sn2::model::input::DataSet::parse(&test).unwrap().inputs[index];
    let input = stored.model.quantize_input(values).unwrap();
    common::setup_prove_verify(stored.model, &input, Binding([index as u8; 31]))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

struct Proved {
    dir: tempfile::TempDir,
    proof: PathBuf,
    file: ProofFile,
}

fn prove_mnist() -> Proved {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().to_str().unwrap().to_string();
    import(dir.path(), "mnist-mlp");
    let setup = ok(sn2(&[
        "model",
        "setup",
        "mnist-mlp",
        "--models-dir",
        &models,
    ]));
    let fingerprint = setup
        .lines()
        .last()
        .unwrap()
        .strip_prefix("fingerprint ")
        .unwrap()
        .to_string();
    let info = ok(sn2(&[
        "model",
        "info",
        "mnist-mlp",
        "--models-dir",
        &models,
    ]));
    assert!(info.contains(&fingerprint), "{info}");

    let test: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_file("mnist-mlp", "test.json")).unwrap(),
    )
    .unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        serde_json::json!({ "input_data": [test["inputs"][0]] }).to_string(),
    )
    .unwrap();
    let proof = dir.path().join("proof.json");
    let miner = sn2::keys::Hotkey::from_seed(&[3; 32]).ss58();
    ok(sn2(&[
        "prove",
        "--model",
        "mnist-mlp",
        "--input",
        input.to_str().unwrap(),
        "--out",
        proof.to_str().unwrap(),
        "--miner",
        &miner,
        "--models-dir",
        &models,
    ]));
    let file = ProofFile::parse(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    assert_eq!(file.verifying_key, fingerprint);
    Proved { dir, proof, file }
}

fn verify(proved: &Proved, file: &ProofFile, extra: &[&str]) -> Output {
    let path = proved.dir.path().join("checked.json");
    std::fs::write(&path, serde_json::to_string(file).unwrap()).unwrap();
    let mut args = vec![
        "verify",
        "--model",
        "mnist-mlp",
        "--proof",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--models-dir", proved.dir.path().to_str().unwrap()]);
    sn2(&args)
}

fn rejected(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.starts_with("sn2: proof rejected: "), "{message}");
    message
}

#[test]
fn a_proof_verifies_and_every_tampering_is_rejected() {
    let proved = prove_mnist();
    let out = ok(verify(&proved, &proved.file, &[]));
    assert!(out.ends_with("OK\n"), "{out}");
    // Whom it convinces: a key made here by a single-party setup; a key without that
    // record is flagged.
    let said = String::from_utf8(verify(&proved, &proved.file, &[]).stderr).unwrap();
    assert!(said.contains("single-party setup"), "{said}");
    let records: Vec<_> = walk(proved.dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".provenance.json"))
        .collect();
    assert_eq!(records.len(), 1);
    let record = std::fs::read(&records[0]).unwrap();
    std::fs::remove_file(&records[0]).unwrap();
    let said = String::from_utf8(verify(&proved, &proved.file, &[]).stderr).unwrap();
    assert!(
        said.contains("no record that this verifying key was made here"),
        "{said}"
    );
    std::fs::write(&records[0], record).unwrap();
    ok(verify(
        &proved,
        &proved.file,
        &[
            "--miner",
            &proved.file.miner.clone(),
            "--nonce",
            &proved.file.nonce.clone(),
        ],
    ));

    // A false output, with its real values edited to match, as a cheat would.
    let mut output = proved.file.clone();
    output.output[3] += 1;
    output.output_values = ModelStore::new(proved.dir.path())
        .open("mnist-mlp")
        .unwrap()
        .model
        .dequantize_output(&output.output);
    assert!(rejected(verify(&proved, &output, &[])).contains("does not verify"));

    let mut input = proved.file.clone();
    input.input[100] = input.input[100].wrapping_add(1);
    assert!(rejected(verify(&proved, &input, &[])).contains("does not verify"));

    let mut nonce = proved.file.clone();
    nonce.nonce = "00".repeat(32);
    assert!(rejected(verify(&proved, &nonce, &[])).contains("does not verify"));

    let mut miner = proved.file.clone();
    miner.miner = sn2::keys::Hotkey::from_seed(&[4; 32]).ss58();
    assert!(rejected(verify(&proved, &miner, &[])).contains("does not verify"));

    let mut bytes = proved.file.clone();
    let mut proof = bytes.proof_bytes().unwrap();
    proof[40] ^= 0x10;
    bytes.proof = ProofFile::encode_proof(&proof);
    rejected(verify(&proved, &bytes, &[]));

    // The file's own claims must be what was proved: its stated real output and the key
    // it names.
    let mut values = proved.file.clone();
    values.output_values[3] += 1.0;
    assert!(rejected(verify(&proved, &values, &[])).contains("`output_values`"));
    let mut key = proved.file.clone();
    key.verifying_key = "00".repeat(32);
    assert!(rejected(verify(&proved, &key, &[])).contains("names verifying key 0000"));

    let other_miner = sn2::keys::Hotkey::from_seed(&[5; 32]).ss58();
    assert!(
        rejected(verify(&proved, &proved.file, &["--miner", &other_miner]))
            .contains("bound to miner")
    );
    assert!(
        rejected(verify(
            &proved,
            &proved.file,
            &["--nonce", &"11".repeat(32)]
        ))
        .contains("bound to nonce")
    );

    std::fs::write(proved.dir.path().join("garbage.json"), "{\"format\": 1}").unwrap();
    let garbage = proved.dir.path().join("garbage.json");
    let out = sn2(&[
        "verify",
        "--model",
        "mnist-mlp",
        "--proof",
        garbage.to_str().unwrap(),
        "--models-dir",
        proved.dir.path().to_str().unwrap(),
    ]);
    assert!(rejected(out).contains("not a proof file"));
    assert!(proved.proof.exists());

    // Several files in one batch: each named with its verdict, the false one rejected.
    let lying = proved.dir.path().join("lying.json");
    std::fs::write(&lying, serde_json::to_string(&output).unwrap()).unwrap();
    let honest = proved.proof.to_str().unwrap();
    let out = sn2(&[
        "verify",
        "--model",
        "mnist-mlp",
        "--proof",
        honest,
        lying.to_str().unwrap(),
        honest,
        garbage.to_str().unwrap(),
        "--models-dir",
        proved.dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8(out.stdout).unwrap();
    let verdicts: Vec<&str> = said
        .lines()
        .map(|l| l.split(": ").nth(1).unwrap())
        .collect();
    assert_eq!(verdicts.len(), 4, "{said}");
    assert!(
        verdicts[0].starts_with("OK") && verdicts[2].starts_with("OK"),
        "{said}"
    );
    assert_eq!(
        (verdicts[1], verdicts[3]),
        ("REJECTED", "REJECTED"),
        "{said}"
    );
    let out = sn2(&[
        "verify",
        "--model",
        "mnist-mlp",
        "--proof",
        honest,
        honest,
        "--models-dir",
        proved.dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_proof_is_rejected_under_another_models_key() {
    let proved = prove_mnist();
    // cnn-small has the same input and output sizes as mnist-mlp, so its key takes the
    // same number of public inputs: the proof itself must fail.
    import(proved.dir.path(), "cnn-small");
    let store = ModelStore::new(proved.dir.path());
    let cnn = store.open("cnn-small").unwrap();
    let system = proof::default_backend();
    keys::setup(&cnn, system.as_ref()).unwrap();
    let vk_file = keys::read(&cnn, system.name(), keys::KeyKind::Verifying).unwrap();
    let vk = keys::decode(&vk_file, keys::KeyKind::Verifying, system.name(), &cnn.id).unwrap();
    let verifier = system.verifier(&cnn.model, vk).unwrap();
    let statement = proved.file.statement().unwrap();
    let err = verifier
        .verify(&statement, &proved.file.proof_bytes().unwrap())
        .unwrap_err();
    assert!(matches!(err, proof::ProofError::Rejected), "{err}");

    // With the binding recomputed for cnn-small's id, it fails all the same.
    let rebound = Statement {
        binding: Binding::new(
            &cnn.id,
            &proved.file.miner_key().unwrap(),
            &proved.file.nonce_bytes().unwrap(),
        ),
        ..statement
    };
    assert!(
        verifier
            .verify(&rebound, &proved.file.proof_bytes().unwrap())
            .is_err()
    );

    // And the command line refuses a proof for another model id outright.
    let out = sn2(&[
        "verify",
        "--model",
        "cnn-small",
        "--proof",
        proved.proof.to_str().unwrap(),
        "--models-dir",
        proved.dir.path().to_str().unwrap(),
    ]);
    assert!(rejected(out).contains("the proof is for model"));
}

#[test]
fn cnn_small_proves_and_verifies() {
    prove_test_input(tempfile::tempdir().unwrap().path(), "cnn-small", 0);
}

#[test]
fn proving_without_keys_says_how_to_make_them() {
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), "digits-mlp");
    let input = dir.path().join("input.json");
    let miner = sn2::keys::Hotkey::from_seed(&[1; 32]).ss58();
    let prove = || {
        sn2(&[
            "prove",
            "--model",
            "digits-mlp",
            "--input",
            input.to_str().unwrap(),
            "--out",
            "/dev/null",
            "--miner",
            &miner,
            "--models-dir",
            dir.path().to_str().unwrap(),
        ])
    };
    std::fs::write(&input, format!("{{\"input_data\": [{:?}]}}", vec![1.0; 64])).unwrap();
    let out = prove();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("has no groth16-bn254 keys yet"), "{said}");
    // The command in the message works as printed, flags included.
    let command = said
        .split("make them with `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no command in: {said}"));
    assert!(command.contains("--models-dir"), "{command}");
    let words: Vec<&str> = command.split(' ').collect();
    assert_eq!(words[0], "sn2");
    ok(sn2(&words[1..]));
    ok(prove());

    // Keys are not replaced silently; --force does, and proofs of the old keys are then
    // refused for naming another key.
    let again = sn2(&words[1..]);
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(said.contains("already has groth16-bn254 keys"), "{said}");
    assert!(said.contains("--force"), "{said}");

    std::fs::write(&input, "{\"input_data\": [[1, 2, 3]]}").unwrap();
    let out = prove();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input has 3 values; the model takes 64")
    );
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}
