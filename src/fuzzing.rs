//! Every decoder of untrusted bytes, behind one function per kind of input that takes
//! arbitrary bytes: the fuzz targets in `fuzz/` call these, and `tests/fuzzing.rs` replays
//! their seed corpora and every past finding through them. A function may refuse its
//! input; it must not panic, and where an encoder exists, what decodes must encode back to
//! what decoded.
//!
//! The inputs come from peers (QUIC frames and handshakes, Epistula headers, requests and
//! responses), from operators and their downloads (ONNX files, input files, wallet files,
//! Nix keys, release manifests) and from disk, where a damaged or planted file must be
//! refused as well (model files, key files, proof files), and from validators, whose
//! ceremony records (sn2 transcripts, snarkjs zkeys) a miner checks before it makes a key.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::model::input::{DataSet, format_input, parse_input};
use crate::model::{ModelId, QuantModel, codec};
use crate::proof::{self, ProofFile, groth16, keys as key_files};
use crate::update::manifest::Manifest;
use crate::update::nixkey::{NixSignature, SecretKey, parse_public};
use crate::update::{Policy, verify};
use crate::wire::auth::EpistulaHeaders;
use crate::wire::quic::{self, HandshakeRequest, HandshakeResponse, SignedResponse};
use crate::wire::{ErrorBody, Request, Response};

/// A fuzz target: its name (the target's binary and corpus folder) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    ("quic_frame", quic_frame),
    ("handshake", handshake),
    ("epistula_headers", epistula_headers),
    ("wire_json", wire_json),
    ("onnx_import", onnx_import),
    ("model_file", model_file),
    ("key_file", key_file),
    ("proof_file", proof_file),
    ("release_manifest", release_manifest),
    ("nix_keys", nix_keys),
    ("input_json", input_json),
    ("wallet_file", wallet_file),
    ("timelock_commit", timelock_commit),
    ("ptau_file", ptau_file),
    ("ceremony_transcript", ceremony_transcript),
    ("ceremony_record", ceremony_record),
];

/// The largest request a miner reads by default, as the frame limit here.
const MAX_FRAME: usize = 4 << 20;

/// A QUIC frame as a miner or a validator reads it: the header (its length refused past
/// the limit before anything is allocated), then the payload as its kind says.
pub fn quic_frame(data: &[u8]) {
    let Some(header) = data.get(..5) else { return };
    let header: [u8; 5] = header.try_into().expect("five bytes");
    let Ok((kind, length)) = quic::parse_frame_header(header, MAX_FRAME) else {
        return;
    };
    let Some(payload) = data.get(5..5 + length) else {
        return;
    };
    let frame = quic::encode_frame(kind, payload).expect("a payload under the limit");
    assert_eq!(
        frame,
        &data[..5 + length],
        "a frame encodes back to its bytes"
    );
    match kind {
        quic::FRAME_HANDSHAKE_REQUEST => handshake(payload),
        quic::FRAME_HANDSHAKE_RESPONSE => {
            let _ = serde_json::from_slice::<HandshakeResponse>(payload);
        }
        quic::FRAME_REQUEST => wire_json(payload),
        quic::FRAME_RESPONSE => {
            if let Ok(signed) = serde_json::from_slice::<SignedResponse>(payload) {
                wire_json(signed.body.as_bytes());
            }
        }
        quic::FRAME_ERROR => {
            let _ = serde_json::from_slice::<ErrorBody>(payload);
        }
        _ => {}
    }
}

/// A validator's QUIC handshake, checked as a miner checks it.
pub fn handshake(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<HandshakeRequest>(data) {
        let _ = request.check(&"00".repeat(32));
    }
}

/// Epistula headers (one per line: version, timestamp, uuid, signed-by, signed-for,
/// signature) and a body (the rest), checked as a miner checks a request.
pub fn epistula_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(7, '\n');
    let mut field = || lines.next().filter(|line| !line.is_empty());
    let headers = EpistulaHeaders {
        version: field(),
        timestamp: field(),
        uuid: field(),
        signed_by: field(),
        signed_for: field(),
        signature: field(),
    };
    let body = lines.next().unwrap_or("");
    let me = headers.signed_for.unwrap_or("").to_string();
    if let Ok(signed) = headers.check(&me) {
        let _ = signed.verify(body.as_bytes());
    }
}

/// A request (as a miner reads it) or a response (as a validator reads it), in JSON: what
/// decodes encodes to JSON that decodes to the same.
pub fn wire_json(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        let again = serde_json::to_vec(&request).expect("requests serialise");
        assert_eq!(
            serde_json::from_slice::<Request>(&again).ok(),
            Some(request)
        );
    }
    if let Ok(response) = serde_json::from_slice::<Response>(data) {
        let again = serde_json::to_vec(&response).expect("responses serialise");
        let decoded = serde_json::from_slice::<Response>(&again).expect("a response decodes");
        // NaN in a proving time is the one value that is not equal to itself.
        if !matches!(&response, Response::Proved(p) if p.prove_ms.is_nan()) {
            assert_eq!(decoded, response);
        }
    }
}

/// Calibration samples for a model of `len` inputs, or none when it is too large to
/// evaluate quickly.
fn small_samples(len: usize) -> Option<Vec<Vec<f32>>> {
    (len <= 4096).then(|| crate::model::input::pseudo_random_samples(4, len))
}

/// An ONNX file, imported, quantised on a few samples and evaluated, as `sn2 model import`
/// does.
pub fn onnx_import(data: &[u8]) {
    let Ok(float) = crate::model::onnx::import(data) else {
        return;
    };
    let Some(samples) = small_samples(float.input_len()) else {
        return;
    };
    if let Ok((model, _)) = crate::model::quantize::quantize(&float, &samples) {
        model_round_trip(&model);
    }
}

/// A model file (the format of `sn2 model import`), decoded and evaluated: what decodes
/// encodes to bytes that decode to the same model.
pub fn model_file(data: &[u8]) {
    if let Ok(model) = codec::decode(data) {
        model_round_trip(&model);
    }
}

fn model_round_trip(model: &QuantModel) {
    let bytes = codec::encode(model);
    let again = codec::decode(&bytes).expect("an encoded model decodes");
    assert_eq!(
        codec::encode(&again),
        bytes,
        "a model encodes the same twice"
    );
    if model.input_len() <= 4096 {
        let _ = model.evaluate(&vec![1; model.input_len()]);
    }
}

/// A small model (PyTorch's `Linear` from onnx's test data) with keys of its own, made
/// once per process: what key and proof files are read against. Small, so that its keys
/// are a few kilobytes and a fuzzer runs through them quickly.
struct Fixture {
    id: ModelId,
    model: Arc<QuantModel>,
    verifier: Box<dyn proof::Verifier>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let onnx = include_bytes!("../tests/data/onnx/test_Linear/model.onnx");
        let float = crate::model::onnx::import(onnx).expect("the fixture imports");
        let samples = crate::model::input::pseudo_random_samples(16, float.input_len());
        let (model, _) =
            crate::model::quantize::quantize(&float, &samples).expect("the fixture quantises");
        let id = ModelId::of(&codec::encode(&model));
        let system = proof::default_backend();
        let keys = system.setup(&model).expect("setup");
        let verifier = system
            .verifier(&model, &keys.verifying)
            .expect("its own key");
        Fixture {
            id,
            model: Arc::new(model),
            verifier,
        }
    })
}

/// A proving or verifying key file, as a miner reads one it downloaded and a validator one
/// on its disk, for the fixture's model.
pub fn key_file(data: &[u8]) {
    let fixture = fixture();
    let system = proof::default_backend();
    if let Ok(payload) = key_files::decode(
        data,
        key_files::KeyKind::Verifying,
        system.name(),
        &fixture.id,
    ) {
        let _ = system.verifier(&fixture.model, payload);
        if let Some(rewritten) = groth16::rewritten_key(payload, key_files::KeyKind::Verifying) {
            assert_eq!(
                rewritten, payload,
                "a verifying key encodes back to its bytes"
            );
        }
    }
    if let Ok(payload) = key_files::decode(
        data,
        key_files::KeyKind::Proving,
        system.name(),
        &fixture.id,
    ) {
        let _ = system.prover(fixture.model.clone(), payload);
        if let Some(rewritten) = groth16::rewritten_key(payload, key_files::KeyKind::Proving) {
            assert_eq!(
                rewritten, payload,
                "a proving key encodes back to its bytes"
            );
        }
    }
}

/// A proof file (`sn2 verify`) and the proof in it, checked against the fixture's key.
pub fn proof_file(data: &[u8]) {
    let fixture = fixture();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = ProofFile::parse(text) else {
        return;
    };
    let (Ok(statement), Ok(proof)) = (file.statement(), file.proof_bytes()) else {
        return;
    };
    let _ = fixture.verifier.verify(&statement, &proof);
    if let Some(rewritten) = groth16::rewritten_proof(&proof) {
        assert_eq!(rewritten, proof, "a proof encodes back to its bytes");
    }
}

/// A signed release manifest, checked as a daemon checks one it polled; what parses
/// renders back to its own bytes.
pub fn release_manifest(data: &[u8]) {
    if let Ok(manifest) = Manifest::parse(data) {
        assert_eq!(
            manifest.render().as_bytes(),
            data,
            "a manifest is canonical"
        );
    }
    static TRUSTED: OnceLock<String> = OnceLock::new();
    let trusted = TRUSTED.get_or_init(|| {
        SecretKey::generate("sn2-fuzz-1")
            .expect("a valid name")
            .public()
    });
    let policy = Policy {
        trusted_keys: vec![parse_public(trusted).expect("its public half")],
        channel: "stable".into(),
        system: "x86_64-linux".into(),
    };
    let _ = verify(data, &policy, 1_800_000_000, None);
}

/// Nix secret keys, public keys and signatures (`NAME:BASE64`): a secret key's file text
/// parses back to the same key.
pub fn nix_keys(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = SecretKey::parse(text) {
        let again = SecretKey::parse(&key.to_file_text()).expect("its own file text");
        assert_eq!(again.public(), key.public());
    }
    let _ = parse_public(text);
    if let Ok(signature) = NixSignature::parse(text.trim()) {
        let _ = signature.to_nix_string();
    }
}

/// An input file (`sn2 prove --input`) or a data set (calibration): an input writes back
/// to the same numbers.
pub fn input_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(values) = parse_input(text)
        && values.iter().all(|v| v.is_finite())
    {
        assert_eq!(parse_input(&format_input(&values)).ok(), Some(values));
    }
    let _ = DataSet::parse(text);
}

/// A hotkey file of a Bittensor wallet.
pub fn wallet_file(data: &[u8]) {
    let _ = crate::keys::parse_hotkey(Path::new("hotkey"), data);
}

/// A timelocked commit, opened with quicknet's real pulse for round 1000 (the seeds are
/// commits for that round and for others): the envelope is parsed before any pairing.
pub fn timelock_commit(data: &[u8]) {
    const PULSE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";
    static SIGNATURE: OnceLock<Vec<u8>> = OnceLock::new();
    let signature = SIGNATURE.get_or_init(|| hex::decode(PULSE).expect("hex"));
    let _ = crate::timelock::decrypt(data, signature);
}

/// A powers-of-tau file (`sn2 ceremony ptau verify`, `init`), read and checked.
pub fn ptau_file(data: &[u8]) {
    if let Ok(ptau) = crate::proof::ptau::Ptau::read(data) {
        let _ = ptau.check();
    }
}

/// A ceremony transcript, as `sn2 ceremony contribute` reads one it was sent; what reads
/// writes back to its own bytes.
pub fn ceremony_transcript(data: &[u8]) {
    if let Ok(transcript) = crate::proof::groth16::ceremony::Transcript::read(data) {
        assert_eq!(transcript.to_bytes(), data);
    }
}

/// The fixture's model with its circuit, and powers of tau made for that circuit from
/// known secrets (τ = 3, α = 5, β = 7): what ceremony records are checked against. Made
/// once per process; public so that the seeds are made for the same.
pub struct CeremonyFixture {
    pub id: ModelId,
    pub model: Arc<QuantModel>,
    pub system: crate::circuit::r1cs::R1cs,
    pub ptau: crate::proof::ptau::Ptau,
}

pub fn ceremony_fixture() -> &'static CeremonyFixture {
    static FIXTURE: OnceLock<CeremonyFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let Fixture { id, model, .. } = fixture();
        let system = groth16::ceremony::circuit(model);
        let power = groth16::ceremony::power_needed(&system).expect("a small circuit");
        let secret = |n: u64| ark_bn254::Fr::from(n);
        let ptau = crate::proof::ptau::Ptau::from_secrets(power, secret(3), secret(5), secret(7));
        CeremonyFixture {
            id: *id,
            model: model.clone(),
            system,
            ptau,
        }
    })
}

/// A ceremony's record (an sn2 transcript or a snarkjs zkey) as a miner checks the one a
/// validator serves beside a proving key, and `sn2 ceremony verify` and `import` a file:
/// whole, against the fixture's circuit and powers of tau.
pub fn ceremony_record(data: &[u8]) {
    let fixture = ceremony_fixture();
    let _ = groth16::check_ceremony_of(data, &fixture.id, &fixture.system, &fixture.ptau);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_target_has_a_distinct_name() {
        let mut names: Vec<&str> = super::TARGETS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::TARGETS.len());
    }
}
