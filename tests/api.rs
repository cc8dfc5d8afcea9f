//! The validator's user API on a devnet, over real HTTP: verified answers that `sn2 infer`
//! checks again on its own, refusals of bad requests with the validator serving on, API
//! keys and their rates, and no answer at all when no miner's proof verifies.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use sha2::{Digest, Sha256};
use sn2::devnet::{Devnet, DevnetOptions, free_port};
use sn2::validator::Transport;
use sn2::validator::api::{Api, ApiOptions};
use sn2::wire::http::HttpClient;

fn options(miners: usize, dishonest: usize) -> DevnetOptions {
    DevnetOptions {
        miners,
        dishonest,
        models: vec!["digits-mlp".into()],
        transport: Transport::QuicThenHttp,
        round_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// A request to `address`; returns the status, the body and the Retry-After header.
async fn call(
    address: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value, Option<String>) {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let client = HttpClient::default();
    let response = client.raw(request, 16 << 20).await.unwrap();
    let json = serde_json::from_slice(&response.1).unwrap_or(serde_json::Value::Null);
    (response.0, json, None)
}

/// Runs the real `sn2 infer` against a validator's API.
fn sn2_infer(url: &str, input: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args([
            "infer",
            "--validator",
            url,
            "--model",
            "digits-mlp",
            "--input",
        ])
        .arg(input)
        .args(extra)
        .output()
        .unwrap()
}

fn inference(model: &str, input: &[i64]) -> Vec<u8> {
    serde_json::json!({ "model": model, "input": input })
        .to_string()
        .into_bytes()
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_gets_a_verified_answer_that_sn2_infer_checks_again() {
    let devnet = Devnet::start(&options(2, 0)).await.unwrap();
    let api = devnet.api;

    let (status, document, _) = call(api, "GET", "/openapi.json", None, b"").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
    let (status, listing, _) = call(api, "GET", "/v1/models", None, b"").await;
    assert_eq!(status, 200);
    assert_eq!(listing["models"][0]["name"], "digits-mlp");
    let input_len = listing["models"][0]["input_len"].as_u64().unwrap() as usize;

    let (status, answer, _) = call(
        api,
        "POST",
        "/v1/inference",
        None,
        &inference("digits-mlp", &vec![3; input_len]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["output"].as_array().unwrap().len(), 10);
    assert!(
        answer["provenance"]
            .as_str()
            .unwrap()
            .contains("single-party")
    );
    assert_eq!(
        answer["verifying_key"],
        listing["models"][0]["verifying_key"]
    );

    // The same through `sn2 infer`, which verifies the proof itself.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        sn2::model::input::format_input(&vec![0.5; input_len]),
    )
    .unwrap();
    let url = format!("http://{api}");
    let (u, i) = (url.clone(), input.clone());
    let output = tokio::task::spawn_blocking(move || sn2_infer(&u, &i, &[]))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("verified here against verifying key"),
        "{stdout}"
    );

    // A pinned key that is not the validator's: refused before anything is asked.
    let wrong = "00".repeat(32);
    let output =
        tokio::task::spawn_blocking(move || sn2_infer(&url, &input, &["--vk-hash", &wrong]))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("pinned"));
    devnet.stop().await;
}

/// A validator that accepts the connection and reads the request, then never answers:
/// `sn2 infer` gives up at its `--timeout` with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sn2_infer_gives_up_on_a_validator_that_never_answers() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, sn2::model::input::format_input(&[0.5; 64])).unwrap();
    let output = tokio::task::spawn_blocking(move || sn2_infer(&url, &input, &["--timeout", "1"]))
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did not answer within 1 s"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_the_api_serves_on() {
    let devnet = Devnet::start(&options(1, 0)).await.unwrap();
    let api = devnet.api;
    let model = devnet.validator.model_summaries()[0].clone();
    let good = inference(&model.id, &vec![0; model.input_len]);
    let ceremony = format!("/v1/models/{}/ceremony", model.id);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/v1/inference",
            b"{not json".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/inference",
            br#"{"model": "x"}"#.to_vec(),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/inference",
            inference("no-such-model", &[0]),
            404,
            "unknown_model",
        ),
        (
            "POST",
            "/v1/inference",
            inference(&model.id, &[0; 3]),
            400,
            "bad_input",
        ),
        (
            "POST",
            "/v1/inference",
            inference(&model.id, &vec![200; model.input_len]),
            400,
            "bad_input",
        ),
        (
            "GET",
            "/v1/inference",
            Vec::new(),
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/models/nothing/vk",
            Vec::new(),
            404,
            "unknown_model",
        ),
        ("GET", "/elsewhere", Vec::new(), 404, "not_found"),
        // The devnet's validator runs no ceremony: nothing to fetch or join.
        ("GET", &ceremony, Vec::new(), 404, "no_ceremony"),
        (
            "POST",
            &ceremony,
            b"a transcript".to_vec(),
            404,
            "no_ceremony",
        ),
        ("PUT", &ceremony, Vec::new(), 405, "method_not_allowed"),
        (
            "POST",
            "/v1/models/nothing/ceremony",
            Vec::new(),
            404,
            "unknown_model",
        ),
    ];
    for (method, path, body, status, expected) in cases {
        let (got, answer, _) = call(api, method, path, None, &body).await;
        assert_eq!(
            (got, code(&answer)),
            (status, expected),
            "{method} {path}: {answer}"
        );
        assert!(
            !answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    // A body declared over the limit is refused on its headers, before any of it is read
    // (sent raw: a client still writing when the answer comes would see a broken pipe).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
        let head = format!(
            "POST /v1/inference HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            2 << 20
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("too_large"), "{answer}");
    }
    let (status, answer, _) = call(api, "POST", "/v1/inference", None, &good).await;
    assert_eq!(status, 200, "{answer}");
    // `sn2 ceremony join` says so before any work.
    let joined = Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args([
            "ceremony",
            "join",
            "--validator",
            &format!("http://{api}"),
            "--model",
        ])
        .arg(&model.id)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&joined.stderr);
    assert!(
        !joined.status.success() && said.contains("no ceremony for model"),
        "{said}"
    );
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_unless_open_and_each_has_its_rate() {
    let devnet = Devnet::start(&options(1, 0)).await.unwrap();
    let key = "a-user's-key";
    let signer = sn2::keys::Hotkey::from_seed(&[9; 32]);
    let api = Api::new(
        devnet.validator.clone(),
        ApiOptions {
            open: false,
            open_requests_per_minute: 60,
            keys: vec![("alice".into(), hex::encode(Sha256::digest(key)), 2)],
            hotkeys: vec![signer.public()],
            hotkey_requests_per_minute: 60,
            max_queue: 4,
            max_body_bytes: 1 << 20,
            attempts: 2,
        },
    );
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().unwrap()));
    let (_stop, shutdown) = sn2::shutdown::channel();
    tokio::spawn(api.listen(address, shutdown).await.unwrap());

    let (status, answer, _) = call(address, "GET", "/v1/models", None, b"").await;
    assert_eq!((status, code(&answer)), (401, "key_required"));
    let (status, answer, _) = call(address, "GET", "/v1/models", Some("guess"), b"").await;
    assert_eq!((status, code(&answer)), (401, "bad_key"));
    for _ in 0..2 {
        let (status, _, _) = call(address, "GET", "/v1/models", Some(key), b"").await;
        assert_eq!(status, 200);
    }
    // The third in the same minute is over the key's rate.
    let request = hyper::Request::builder()
        .uri(format!("http://{address}/v1/models"))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");

    // Requests signed with Epistula by an allowed hotkey, for this validator, once each.
    let validator = devnet.validator.hotkey().ss58();
    let signed = |hotkey: &sn2::keys::Hotkey, signed_for: &str, uuid: &str| {
        let mut request = hyper::Request::builder().uri(format!("http://{address}/v1/models"));
        for (name, value) in sn2::wire::auth::epistula_headers(hotkey, b"", signed_for, uuid) {
            request = request.header(name, value);
        }
        request.body(Full::new(Bytes::new())).unwrap()
    };
    let status = |request| {
        let client = client.clone();
        async move { client.request(request).await.unwrap().status().as_u16() }
    };
    let uuid = sn2::wire::auth::uuid_v4();
    assert_eq!(status(signed(&signer, &validator, &uuid)).await, 200);
    assert_eq!(status(signed(&signer, &validator, &uuid)).await, 409);
    let stranger = sn2::keys::Hotkey::from_seed(&[10; 32]);
    let fresh = sn2::wire::auth::uuid_v4;
    assert_eq!(status(signed(&stranger, &validator, &fresh())).await, 403);
    assert_eq!(
        status(signed(&signer, &stranger.ss58(), &fresh())).await,
        401
    );
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unverified_answer_ever_reaches_the_user() {
    // Both miners cheat: one with a wrong output, one with a forged proof.
    let devnet = Devnet::start(&options(2, 2)).await.unwrap();
    let model = devnet.validator.model_summaries()[0].clone();
    let (status, answer, _) = call(
        devnet.api,
        "POST",
        "/v1/inference",
        None,
        &inference(&model.name, &vec![1; model.input_len]),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (502, "no_verified_answer"),
        "{answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid_proof"), "{message}");
    assert!(answer.get("output").is_none());
    devnet.stop().await;
}

/// Schemathesis (PyPI) generates requests from our own OpenAPI document, valid and not,
/// and checks every answer: no 5xx, every response as the document says, undeclared
/// methods answered 405 with `Allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    let devnet = Devnet::start(&options(1, 0)).await.unwrap();
    let api = Api::new(
        devnet.validator.clone(),
        ApiOptions {
            open: true,
            open_requests_per_minute: 1_000_000,
            keys: Vec::new(),
            hotkeys: Vec::new(),
            hotkey_requests_per_minute: 1,
            max_queue: 4,
            max_body_bytes: 1 << 20,
            attempts: 1,
        },
    );
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().unwrap()));
    let (_stop, shutdown) = sn2::shutdown::channel();
    tokio::spawn(api.listen(address, shutdown).await.unwrap());
    let python = common::test_python();
    let schema = format!("http://{address}/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "schemathesis.cli", "run", &schema, "--checks", "all"])
            .args(["--max-examples", "40", "--workers", "1", "--seed", "1"])
            .args(["--generation-deterministic"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures (tests/setup.sh installs its packages):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    devnet.stop().await;
}

/// The queue holds `max_queue` inferences; one more is answered 503 with `Retry-After` at
/// once, and the slots free up as inferences end. The only miner here never answers, so
/// each inference holds its slot until the request deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_bound_the_answer_is_503_at_once() {
    use sn2::chain::sync::MetagraphSync;
    use sn2::chain::{LocalChain, StaticNeuron};
    use sn2::validator::{Validator, ValidatorOptions};

    let dir = tempfile::tempdir().unwrap();
    let validator_key = sn2::keys::Hotkey::from_seed(&[2; 32]);
    let silent_tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = silent_tcp.local_addr().unwrap();
    let _silent_udp = std::net::UdpSocket::bind(silent).unwrap();
    let neuron = |uid, key: &sn2::keys::Hotkey, axon, permit| StaticNeuron {
        uid,
        hotkey: key.ss58(),
        axon,
        validator_permit: permit,
        stake: 1000.0,
    };
    let neurons = [
        neuron(0, &validator_key, None, true),
        neuron(
            1,
            &sn2::keys::Hotkey::from_seed(&[20; 32]),
            Some(silent),
            false,
        ),
    ];
    let chain = std::sync::Arc::new(LocalChain::new(2, &neurons).unwrap());
    let sync = MetagraphSync::new(chain, Duration::from_secs(3600));
    sync.sync_once().await;
    let store = sn2::model::ModelStore::new(dir.path().join("validator"));
    let (name, onnx, calibration) = sn2::devnet::REFERENCE_MODELS[0];
    let stored = store
        .import(
            onnx,
            name,
            &sn2::model::input::DataSet::parse(calibration)
                .unwrap()
                .inputs,
        )
        .unwrap();
    let state_dir = dir.path().join("state");
    let validator = tokio::task::spawn_blocking(move || {
        Validator::new(
            validator_key,
            &store,
            &sync,
            ValidatorOptions {
                round_interval: Duration::from_secs(3600),
                request_timeout: Duration::from_secs(4),
                sample_size: 16,
                state_dir,
                models: Vec::new(),
                transport: Transport::HttpOnly,
                max_response_bytes: 1 << 20,
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    let api = Api::new(
        validator,
        ApiOptions {
            open: true,
            open_requests_per_minute: 1000,
            keys: Vec::new(),
            hotkeys: Vec::new(),
            hotkey_requests_per_minute: 1,
            max_queue: 2,
            max_body_bytes: 1 << 20,
            attempts: 1,
        },
    );
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().unwrap()));
    let (_stop, shutdown) = sn2::shutdown::channel();
    tokio::spawn(api.listen(address, shutdown).await.unwrap());
    let body = inference(&stored.id.to_hex(), &vec![0; stored.model.input_len()]);

    let held: Vec<_> = (0..2)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { call(address, "POST", "/v1/inference", None, &body).await })
        })
        .collect();
    // Let the two take their slots before a third arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let (status, answer) = loop {
        let (status, answer, _) = call(address, "POST", "/v1/inference", None, &body).await;
        if status == 503 || started.elapsed() > Duration::from_secs(3) {
            break (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((status, code(&answer)), (503, "busy"), "{answer}");
    for request in held {
        let (status, answer, _) = request.await.unwrap();
        assert_eq!(
            (status, code(&answer)),
            (502, "no_verified_answer"),
            "{answer}"
        );
    }
    // The slots are free again: the next inference is tried (and fails at the miner).
    let (status, _, _) = call(address, "POST", "/v1/inference", None, &body).await;
    assert_eq!(status, 502);
}
