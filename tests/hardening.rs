//! An outsider's attacks on the daemons, on loopback with real sockets: connections that
//! hold a listener without finishing a request, requests whose key download never ends,
//! readers too slow for a large key, a miner that never answers. Each may cost its target
//! only a bounded amount, and honest work goes on meanwhile.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sn2::chain::sync::MetagraphSync;
use sn2::chain::{LocalChain, StaticNeuron};
use sn2::devnet::{REFERENCE_MODELS, free_port};
use sn2::keys::Hotkey;
use sn2::metrics::Metrics;
use sn2::miner::{Behaviour, Miner, MinerOptions, ModelFetch};
use sn2::model::input::DataSet;
use sn2::model::{ModelStore, StoredModel};
use sn2::proof::{self, keys as key_files};
use sn2::validator::{Transport, Validator, ValidatorOptions};
use sn2::wire::auth::{self, epistula_message};
use sn2::wire::http::{self as wire_http, HttpClient, Limits, REQUEST_PATH, text_response};
use sn2::wire::{ClientError, ErrorCode, ProveRequest, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Limits with short deadlines, so that the tests see them act.
fn quick_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        ..Limits::new(64 * 1024)
    }
}

fn neuron(uid: u16, hotkey: &Hotkey, axon: Option<SocketAddr>, permit: bool) -> StaticNeuron {
    StaticNeuron {
        uid,
        hotkey: hotkey.ss58(),
        axon,
        validator_permit: permit,
        stake: if permit { 1000.0 } else { 0.0 },
    }
}

fn import_digits(dir: &Path) -> (ModelStore, StoredModel) {
    let store = ModelStore::new(dir);
    let (name, onnx, calibration) = REFERENCE_MODELS[0];
    let stored = store
        .import(onnx, name, &DataSet::parse(calibration).unwrap().inputs)
        .unwrap();
    (store, stored)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A miner serving digits-mlp to the validators of `neurons`.
async fn start_miner(
    dir: &Path,
    hotkey: Hotkey,
    neurons: &[StaticNeuron],
    options: MinerOptions,
) -> (Arc<Miner>, SocketAddr, tokio::sync::watch::Sender<bool>) {
    let (store, _) = import_digits(dir);
    let chain = LocalChain::new(2, neurons).unwrap();
    let miner = Miner::new(
        hotkey,
        store,
        chain.snapshot(),
        options,
        Arc::new(Metrics::default()),
    );
    let address = loopback(free_port().unwrap());
    let (stop, shutdown) = sn2::shutdown::channel();
    tokio::spawn(miner.clone().listen(address, shutdown).await.unwrap());
    (miner, address, stop)
}

fn miner_options(limits: Limits) -> MinerOptions {
    MinerOptions {
        max_concurrent_proofs: 1,
        max_key_bytes: 16 << 20,
        key_fetch_timeout: Duration::from_secs(10),
        limits,
        min_validator_stake: 0.0,
        behaviour: Behaviour::Honest,
        fetch: Default::default(),
    }
}

/// A TCP connection from `source` (any address of 127/8).
async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Signed Epistula headers for a POST of `body`, as raw HTTP/1.1.
fn signed_head(signer: &Hotkey, miner: &str, body: &[u8]) -> String {
    let (timestamp, uuid) = (sn2::wire::now_ms(), auth::uuid_v4());
    let signature = signer.sign(epistula_message(body, &uuid, timestamp, miner).as_bytes());
    format!(
        "POST {REQUEST_PATH} HTTP/1.1\r\nhost: miner\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nepistula-version: 2\r\nepistula-timestamp: {timestamp}\r\n\
         epistula-uuid: {uuid}\r\nepistula-signed-by: {}\r\nepistula-signed-for: {miner}\r\n\
         epistula-request-signature: 0x{}\r\n\r\n",
        body.len(),
        signer.ss58(),
        signature.to_hex()
    )
}

/// Reads until the peer closes; `None` if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut seen)).await {
        Ok(_) => Some(seen),
        Err(_) => None,
    }
}

/// A health request signed by `validator`, over HTTP.
async fn signed_health(
    address: SocketAddr,
    validator: &Hotkey,
    miner: &Miner,
) -> Result<Response, ClientError> {
    HttpClient::default()
        .request(
            address,
            validator,
            &miner.hotkey().public(),
            &Request::Health,
            4096,
        )
        .await
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("sn2_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[derive(Clone, Copy, Debug)]
enum Hold {
    /// Connects and sends nothing.
    Idle,
    /// Sends HTTP/2's connection preface, then nothing.
    Http2Preface,
    /// Sends a validator's signed headers and a tenth of the body, then nothing.
    SlowBody,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_connections_are_closed_by_their_deadlines_while_honest_requests_are_served()
 {
    let dir = tempfile::tempdir().unwrap();
    let (miner_key, validator) = (Hotkey::from_seed(&[1; 32]), Hotkey::from_seed(&[2; 32]));
    let neurons = [
        neuron(0, &validator, None, true),
        neuron(1, &miner_key, None, false),
    ];
    let miner_ss58 = miner_key.ss58();
    let (miner, address, stop) = start_miner(
        dir.path(),
        miner_key,
        &neurons,
        miner_options(quick_limits()),
    )
    .await;

    // 1000 connections from 16 addresses (each within the cap of 64 per address).
    let body = vec![b' '; 4000];
    let mut held = Vec::new();
    for i in 0..1000u32 {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i / 63) as u8);
        let mut stream = connect_from(source, address).await;
        let hold = [Hold::Idle, Hold::Http2Preface, Hold::SlowBody][i as usize % 3];
        match hold {
            Hold::Idle => {}
            Hold::Http2Preface => stream
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap(),
            Hold::SlowBody => {
                let head = signed_head(&validator, &miner_ss58, &body);
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(&body[..400]).await.unwrap();
            }
        }
        held.push((hold, stream));
    }

    // Served while the thousand are held: a signed request over HTTP...
    let health = signed_health(address, &validator, &miner).await;
    assert!(matches!(health, Ok(Response::Health { .. })), "{health:?}");

    // ...and every stalled connection is closed by its deadline.
    let mut closing = tokio::task::JoinSet::new();
    for (hold, mut stream) in held {
        closing.spawn(async move {
            let answer = read_until_closed(&mut stream, Duration::from_secs(60)).await;
            (hold, answer)
        });
    }
    while let Some(closed) = closing.join_next().await {
        let (hold, answer) = closed.unwrap();
        let answer = answer.unwrap_or_else(|| panic!("a {hold:?} connection was never closed"));
        if let Hold::SlowBody = hold {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        }
    }
    let metrics = miner.metrics().render();
    assert!(refused(&metrics, "header_timeout") >= 333, "{metrics}");
    assert!(refused(&metrics, "timeout") >= 333, "{metrics}");
    assert!(refused(&metrics, "malformed_http") >= 333, "{metrics}");
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_a_cap_are_answered_503_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (miner_key, validator) = (Hotkey::from_seed(&[1; 32]), Hotkey::from_seed(&[2; 32]));
    let neurons = [neuron(0, &validator, None, true)];
    let limits = Limits {
        max_connections: 6,
        max_connections_per_ip: 3,
        ..quick_limits()
    };
    let (miner, address, stop) =
        start_miner(dir.path(), miner_key, &neurons, miner_options(limits)).await;
    let busy = |answer: Option<Vec<u8>>| {
        let answer = answer.expect("closed at once");
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503")
    };

    let mut held = Vec::new();
    let source = Ipv4Addr::new(127, 0, 0, 2);
    for _ in 0..3 {
        held.push(connect_from(source, address).await);
    }
    let mut fourth = connect_from(source, address).await;
    assert!(busy(
        read_until_closed(&mut fourth, Duration::from_secs(5)).await
    ));
    for last in 3..=5 {
        held.push(connect_from(Ipv4Addr::new(127, 0, 0, last), address).await);
    }
    let mut seventh = connect_from(Ipv4Addr::new(127, 0, 0, 6), address).await;
    assert!(busy(
        read_until_closed(&mut seventh, Duration::from_secs(5)).await
    ));
    let metrics = miner.metrics().render();
    assert_eq!(refused(&metrics, "connections_per_address"), 1, "{metrics}");
    assert_eq!(refused(&metrics, "connections"), 1, "{metrics}");

    // Once the idle ones are closed, there is room again.
    for mut stream in held {
        assert!(
            read_until_closed(&mut stream, Duration::from_secs(30))
                .await
                .is_some()
        );
    }
    let health = signed_health(address, &validator, &miner).await;
    assert!(health.is_ok(), "{health:?}");
    let _ = stop.send(true);
}

/// Naming a permitted validator costs nothing, and a signature can only be checked once
/// the body is in; so large bodies share a budget (four times the largest request), while
/// small ones, as every honest request is, pass beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_in_the_name_of_a_validator_share_a_budget_and_small_requests_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (miner_key, validator) = (Hotkey::from_seed(&[1; 32]), Hotkey::from_seed(&[2; 32]));
    let neurons = [neuron(0, &validator, None, true)];
    let miner_ss58 = miner_key.ss58();
    let limits = Limits {
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(3),
        ..Limits::new(1 << 20)
    };
    let (miner, address, stop) =
        start_miner(dir.path(), miner_key, &neurons, miner_options(limits)).await;

    // Four bodies of 1 MiB, each stalled after its first kilobyte, fill the budget.
    let body = vec![b' '; 1 << 20];
    let mut stalled = Vec::new();
    for i in 0..4u8 {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 2 + i), address).await;
        let head = signed_head(&validator, &miner_ss58, &body);
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..1024]).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = connect_from(Ipv4Addr::new(127, 0, 0, 9), address).await;
    let head = signed_head(&validator, &miner_ss58, &body);
    fifth.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), fifth.read(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too many large requests"), "{text}");

    // A small request is served meanwhile.
    let health = signed_health(address, &validator, &miner).await;
    assert!(matches!(health, Ok(Response::Health { .. })), "{health:?}");

    // The stalled bodies run out their deadline, and the budget is free again.
    for mut stream in stalled {
        let answer = read_until_closed(&mut stream, Duration::from_secs(30))
            .await
            .expect("closed by the body deadline");
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));
    }
    let mut again = connect_from(Ipv4Addr::new(127, 0, 0, 10), address).await;
    let bad_body = vec![b'x'; 100 * 1024];
    let head = signed_head(&validator, &miner_ss58, &body[..bad_body.len()]);
    again.write_all(head.as_bytes()).await.unwrap();
    again.write_all(&bad_body).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), again.read(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(
        text.starts_with("HTTP/1.1 401"),
        "read, then refused for its signature: {text}"
    );
    let metrics = miner.metrics().render();
    assert_eq!(refused(&metrics, "busy"), 1, "{metrics}");
    let _ = stop.send(true);
}

/// A key server that answers with headers and then a byte every half second, counting its
/// connections.
async fn trickling_key_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if stream.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, connections)
}

/// A key server that declares a body of a gigabyte and sends it as fast as it is read,
/// counting the bytes it gets out.
async fn flooding_key_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                let chunk = vec![7u8; 64 * 1024];
                while stream.write_all(&chunk).await.is_ok() {
                    counted.fetch_add(chunk.len(), Ordering::SeqCst);
                }
            });
        }
    });
    (address, sent)
}

/// A key server with one real proving key; returns its address and the key's hash.
async fn key_server(dir: &Path) -> (SocketAddr, String) {
    let (_, stored) = import_digits(dir);
    let system = proof::default_backend();
    key_files::setup(&stored, system.as_ref()).unwrap();
    let key =
        Bytes::from(key_files::read(&stored, system.name(), key_files::KeyKind::Proving).unwrap());
    let hash = auth::sha256_hex(&key);
    let listener = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let path = format!("/keys/{hash}");
    let (_stop, shutdown) = sn2::shutdown::channel();
    std::mem::forget(_stop);
    tokio::spawn(wire_http::serve(
        listener,
        Limits::new(0),
        Arc::new(|_, _| {}),
        move |parts, _| {
            let (key, path) = (key.clone(), path.clone());
            async move {
                if parts.uri.path() == path {
                    text_response(200, "application/octet-stream", key)
                } else {
                    text_response(404, "text/plain", "not found\n")
                }
            }
        },
        shutdown,
    ));
    (address, hash)
}

fn prove_request(model: &str, key: &str) -> Request {
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    Request::Prove(ProveRequest {
        model: model.into(),
        input: vec![3; 64],
        nonce: hex::encode(nonce),
        proving_key: key.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_key_download_holds_no_proving_slot_and_ends_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (miner_key, honest, slow) = (
        Hotkey::from_seed(&[1; 32]),
        Hotkey::from_seed(&[2; 32]),
        Hotkey::from_seed(&[3; 32]),
    );
    let (honest_keys, honest_key) = key_server(&dir.path().join("honest")).await;
    let (trickle, trickle_connections) = trickling_key_server().await;
    let neurons = [
        neuron(0, &honest, Some(honest_keys), true),
        neuron(1, &slow, Some(trickle), true),
    ];
    let options = MinerOptions {
        key_fetch_timeout: Duration::from_secs(8),
        ..miner_options(quick_limits())
    };
    let (miner, address, stop) =
        start_miner(&dir.path().join("miner"), miner_key, &neurons, options).await;
    let model = import_digits(&dir.path().join("ids")).1.id.to_hex();
    let miner_public = miner.hotkey().public();

    // The slow validator asks twice for a key only its trickling server has: one slot on
    // this miner, two requests waiting on one download.
    let unknown_key = "ab".repeat(32);
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (slow, model, key) = (slow.clone(), model.clone(), unknown_key.clone());
        waiting.push(tokio::spawn(async move {
            HttpClient::default()
                .request(
                    address,
                    &slow,
                    &miner_public,
                    &prove_request(&model, &key),
                    1 << 20,
                )
                .await
        }));
    }
    while trickle_connections.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile the honest validator's requests are proved.
    for _ in 0..2 {
        let proved = HttpClient::default()
            .request(
                address,
                &honest,
                &miner_public,
                &prove_request(&model, &honest_key),
                1 << 20,
            )
            .await;
        assert!(matches!(proved, Ok(Response::Proved(_))), "{proved:?}");
    }
    assert!(waiting.iter().all(|w| !w.is_finished()));

    // The download ends at its deadline, once for both requests.
    for request in waiting {
        let answer = request.await.unwrap();
        assert!(
            matches!(&answer, Err(ClientError::Refused(e)) if e.code == ErrorCode::UnknownKey && e.message.contains("longer than 8 s")),
            "{answer:?}"
        );
    }
    assert_eq!(trickle_connections.load(Ordering::SeqCst), 1);
    let _ = stop.send(true);
}

/// With `[miner] ptau` the miner downloads a key's ceremony transcript, not the key; that
/// download is bounded in size and in time as a key's is, and nothing of it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceremony_transcript_too_large_or_too_slow_is_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (miner_key, flooding, slow) = (
        Hotkey::from_seed(&[1; 32]),
        Hotkey::from_seed(&[2; 32]),
        Hotkey::from_seed(&[3; 32]),
    );
    let (flood, sent) = flooding_key_server().await;
    let (trickle, _) = trickling_key_server().await;
    let neurons = [
        neuron(0, &flooding, Some(flood), true),
        neuron(1, &slow, Some(trickle), true),
    ];
    // snarkjs's powers of tau of 2^2 prepared for phase 2 (a fuzzing seed): the miner
    // checks them before it downloads anything. They are too few for any model, but no
    // transcript here gets as far as being verified.
    let ptau = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ptau_file/prepared-power-2");
    let options = MinerOptions {
        max_key_bytes: 1 << 20,
        key_fetch_timeout: Duration::from_secs(4),
        fetch: ModelFetch {
            ceremony_ptau: Some(ptau),
            ..Default::default()
        },
        ..miner_options(quick_limits())
    };
    let miner_dir = dir.path().join("miner");
    let (miner, address, stop) = start_miner(&miner_dir, miner_key, &neurons, options).await;
    let model = import_digits(&dir.path().join("ids")).1.id.to_hex();
    let miner_public = miner.hotkey().public();
    let ask_for_a_key_from = |validator: Hotkey| {
        let request = prove_request(&model, &"ab".repeat(32));
        async move {
            HttpClient::default()
                .request(address, &validator, &miner_public, &request, 1 << 20)
                .await
        }
    };

    let answer = ask_for_a_key_from(flooding).await;
    assert!(
        matches!(&answer, Err(ClientError::Refused(e)) if e.code == ErrorCode::UnknownKey && e.message.contains("over the limit") && e.message.contains("[miner] ptau")),
        "{answer:?}"
    );
    // The miner stopped reading a few megabytes in (the rest is the sockets' buffers).
    let flooded = sent.load(Ordering::SeqCst);
    assert!(flooded < 16 << 20, "{flooded} bytes were read");

    let answer = ask_for_a_key_from(slow).await;
    assert!(
        matches!(&answer, Err(ClientError::Refused(e)) if e.code == ErrorCode::UnknownKey && e.message.contains("longer than 4 s")),
        "{answer:?}"
    );

    for stored in ModelStore::new(&miner_dir).list().unwrap() {
        let kept: Vec<_> = std::fs::read_dir(stored.keys_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        assert!(kept.is_empty(), "{kept:?}");
    }
    let _ = stop.send(true);
}

/// The resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A daemon process, killed when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Starts `binary` on `config` and waits for its log line `ready`.
    fn start(binary: &str, config: &Path) -> Self {
        let mut child = std::process::Command::new(binary)
            .env("SN2_CONFIG", config)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let mut log = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&log).contains(": ready") {
            let read = stderr.read(&mut byte).unwrap();
            assert!(
                read == 1,
                "the daemon stopped: {}",
                String::from_utf8_lossy(&log)
            );
            log.push(byte[0]);
        }
        // Keep draining, so that the daemon never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self(child)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_a_large_key_leave_the_validators_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("validator.toml");
    let port = free_port().unwrap();
    let write_config = |neurons: &str| {
        let text = format!(
            "[chain]\nbackend = \"local\"\n{neurons}\
             [wallet]\npath = \"wallets\"\nname = \"v\"\nhotkey = \"v\"\n[models]\ndir = \"models\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [validator]\nstate_dir = \"state\"\nround_interval_secs = 3600\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("");
    let validator = sn2::config::Config::load(&config)
        .unwrap()
        .wallet_location()
        .create_hotkey(false)
        .unwrap()
        .hotkey;
    write_config(&format!(
        "[[chain.neurons]]\nuid = 0\nhotkey = \"{}\"\nvalidator_permit = true\nstake = 1.0\naxon = \"127.0.0.1:{port}\"\n",
        validator.ss58()
    ));
    // cnn-small with its keys: a real proving key of about 40 MB (a key padded to that
    // size is refused, rightly, by the prover the validator checks its keys with at start).
    let (name, onnx, calibration) = sn2::devnet::REFERENCE_MODELS[2];
    assert_eq!(name, "cnn-small");
    let stored = ModelStore::new(dir.path().join("models"))
        .import(onnx, name, &DataSet::parse(calibration).unwrap().inputs)
        .unwrap();
    let system = proof::default_backend();
    key_files::setup(&stored, system.as_ref()).unwrap();
    let pk_path = key_files::path(&stored, system.name(), key_files::KeyKind::Proving);
    let large = std::fs::read(&pk_path).unwrap();
    assert!(large.len() > 32 << 20, "{} bytes", large.len());
    let hash = auth::sha256_hex(&large);
    drop(large);
    let daemon = Daemon::start(env!("CARGO_BIN_EXE_sn2-validator"), &config);
    let pid = daemon.0.id();
    let address = loopback(port);

    // One honest download loads the key once; its memory is the baseline.
    let key = HttpClient::default()
        .get(&format!("http://{address}/keys/{hash}"), 128 << 20)
        .await
        .unwrap();
    assert_eq!(auth::sha256_hex(&key), hash);
    drop(key);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_mib(pid);

    // Thirty readers that take the first 64 KiB and stop reading.
    let mut readers = Vec::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("GET /keys/{hash} HTTP/1.1\r\nhost: validator\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut first = vec![0u8; 64 << 10];
        stream.read_exact(&mut first).await.unwrap();
        readers.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rss_mib(pid);
    eprintln!("validator resident memory: {baseline:.1} MiB, {held:.1} MiB with 30 slow readers");
    // A copy per reader would be 30 × 38 MiB; the key is shared.
    assert!(
        held - baseline < 32.0,
        "the validator grew from {baseline:.0} MiB to {held:.0} MiB with 30 slow readers"
    );
    drop(readers);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_miner_holds_up_no_one_and_fails_at_its_own_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let validator_key = Hotkey::from_seed(&[2; 32]);
    let honest: Vec<Hotkey> = (10..12).map(|i| Hotkey::from_seed(&[i; 32])).collect();
    let silent_key = Hotkey::from_seed(&[20; 32]);
    // The silent miner accepts TCP and reads QUIC's datagrams, and never answers.
    let silent_tcp = std::net::TcpListener::bind(loopback(0)).unwrap();
    let silent = silent_tcp.local_addr().unwrap();
    let _silent_udp = std::net::UdpSocket::bind(silent).unwrap();
    let key_port = free_port().unwrap();
    let mut neurons = vec![neuron(0, &validator_key, Some(loopback(key_port)), true)];
    let honest_ports: Vec<u16> = honest.iter().map(|_| free_port().unwrap()).collect();
    for (i, (key, port)) in honest.iter().zip(&honest_ports).enumerate() {
        neurons.push(neuron(1 + i as u16, key, Some(loopback(*port)), false));
    }
    neurons.push(neuron(9, &silent_key, Some(silent), false));

    let chain = Arc::new(LocalChain::new(2, &neurons).unwrap());
    let sync = MetagraphSync::new(chain.clone(), Duration::from_secs(3600));
    sync.sync_once().await;
    let mut stops = Vec::new();
    for (i, (key, port)) in honest.into_iter().zip(honest_ports).enumerate() {
        let (store, _) = import_digits(&dir.path().join(format!("miner{i}")));
        let miner = Miner::new(
            key,
            store,
            chain.snapshot(),
            MinerOptions {
                max_concurrent_proofs: 2,
                ..miner_options(Limits::new(1 << 20))
            },
            Arc::new(Metrics::default()),
        );
        let (stop, shutdown) = sn2::shutdown::channel();
        tokio::spawn(miner.listen(loopback(port), shutdown).await.unwrap());
        stops.push(stop);
    }
    let (store, _) = import_digits(&dir.path().join("validator"));
    let request_timeout = Duration::from_secs(20);
    let validator = tokio::task::spawn_blocking({
        let state_dir = dir.path().join("state");
        move || {
            Validator::new(
                validator_key,
                &store,
                &sync,
                ValidatorOptions {
                    round_interval: Duration::from_secs(3600),
                    request_timeout,
                    sample_size: 16,
                    state_dir,
                    models: Vec::new(),
                    transport: Transport::QuicThenHttp,
                    max_response_bytes: 1 << 20,
                },
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    let (stop, shutdown) = sn2::shutdown::channel();
    tokio::spawn(
        validator
            .clone()
            .listen_http(loopback(key_port), shutdown)
            .await
            .unwrap(),
    );
    stops.push(stop);

    let round = tokio::spawn({
        let validator = validator.clone();
        async move { validator.round(0).await }
    });
    // The honest miners are scored as they answer, while the silent one is still awaited.
    let silent_ss58 = silent_key.ss58();
    loop {
        let stats = validator.stats();
        let scored = stats.values().filter(|s| s.verified == 1).count();
        if scored == 2 {
            assert!(!stats.contains_key(&silent_ss58), "{stats:?}");
            assert!(!round.is_finished());
            let scores = validator.scores();
            assert_eq!(scores.miners.len(), 2, "{scores:?}");
            assert!(scores.miners.values().all(|m| m.score > 0.0));
            break;
        }
        assert!(!round.is_finished(), "{stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The round ends at the silent miner's deadline, with the failure named.
    round.await.unwrap();
    let stats = validator.stats();
    let error = stats[&silent_ss58].last_error.clone().unwrap();
    assert!(error.starts_with("timeout"), "{error}");
    let metrics = validator.metrics().render();
    assert!(metrics.contains("status=\"timeout\""), "{metrics}");
    for stop in stops {
        let _ = stop.send(true);
    }
}

/// A server answering `/models/<id>` with `body`, whatever the id.
async fn model_server(body: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = sn2::shutdown::channel();
    std::mem::forget(stop);
    let body = Bytes::from(body);
    tokio::spawn(wire_http::serve(
        listener,
        Limits::new(0),
        Arc::new(|_, _| {}),
        move |parts, _| {
            let body = body.clone();
            async move {
                if parts.uri.path().starts_with("/models/") {
                    text_response(200, "application/octet-stream", body)
                } else {
                    text_response(404, "text/plain", "not found\n")
                }
            }
        },
        shutdown,
    ));
    address
}

/// Models travel by id: a validator serving bytes that do not hash to the id, or more
/// bytes than the limit, gets a refusal, and the miner keeps nothing; a miner pinned to
/// an allowlist fetches nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_served_with_the_wrong_bytes_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stored) = import_digits(&dir.path().join("validator"));
    let canonical = ModelStore::new(dir.path().join("validator"))
        .canonical(&stored.id)
        .unwrap();
    let mut altered = canonical.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let (liar, greedy) = (Hotkey::from_seed(&[4; 32]), Hotkey::from_seed(&[5; 32]));
    let neurons = [
        neuron(0, &liar, Some(model_server(altered).await), true),
        neuron(
            1,
            &greedy,
            Some(model_server(vec![0; canonical.len() + 1000]).await),
            true,
        ),
    ];
    let miner_dir = dir.path().join("miner");
    let chain = LocalChain::new(2, &neurons).unwrap();
    let start = |allowed: Vec<sn2::model::ModelId>| {
        Miner::new(
            Hotkey::from_seed(&[1; 32]),
            ModelStore::new(&miner_dir),
            chain.snapshot(),
            MinerOptions {
                fetch: sn2::miner::ModelFetch {
                    max_model_bytes: canonical.len() + 16,
                    allowed,
                    ..Default::default()
                },
                ..miner_options(quick_limits())
            },
            Arc::new(Metrics::default()),
        )
    };
    let refusal = |response: Response| match response {
        Response::Error(error) => (error.code, error.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let id = stored.id.to_hex();
    let key = "ab".repeat(32);

    let miner = start(Vec::new());
    let (code, message) = refusal(miner.handle(prove_request(&id, &key), &liar.public()).await);
    assert_eq!(code, ErrorCode::UnknownModel);
    assert!(
        message.contains("SHA-256 is not the model's id"),
        "{message}"
    );
    let (code, message) = refusal(
        miner
            .handle(prove_request(&id, &key), &greedy.public())
            .await,
    );
    assert_eq!(code, ErrorCode::UnknownModel);
    assert!(message.contains("cannot fetch"), "{message}");
    assert!(ModelStore::new(&miner_dir).list().unwrap().is_empty());

    let pinned = start(vec![sn2::model::ModelId::of(b"another model")]);
    let (code, message) = refusal(
        pinned
            .handle(prove_request(&id, &key), &liar.public())
            .await,
    );
    assert_eq!(code, ErrorCode::UnknownModel);
    assert!(message.contains("allowlist"), "{message}");
}
