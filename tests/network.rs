//! The subnet on loopback: a validator and miners over real QUIC and HTTP, honest and
//! dishonest miners, refusals of bad requests, a miner dying, a validator restarting.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use sn2::chain::{Metagraph, Neuron};
use sn2::devnet::{Devnet, DevnetOptions, REFERENCE_MODELS};
use sn2::keys::Hotkey;
use sn2::miner::{Behaviour, Miner, MinerOptions};
use sn2::model::ModelStore;
use sn2::model::input::DataSet;
use sn2::validator::score::Scores;
use sn2::validator::{Transport, Validator, ValidatorOptions};
use sn2::wire::auth::{self, epistula_message};
use sn2::wire::http::{HttpClient, REQUEST_PATH};
use sn2::wire::quic::{self, Session};
use sn2::wire::{ClientError, ErrorCode, ProveRequest, Request, Response};

fn options(transport: Transport) -> DevnetOptions {
    DevnetOptions {
        miners: 3,
        dishonest: 1,
        models: vec!["digits-mlp".into()],
        transport,
        round_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

async fn rounds(devnet: &Devnet, count: u64) {
    for round in 0..count {
        devnet.validator.round(round).await;
    }
}

async fn honest_get_weight_and_cheats_none(transport: Transport) {
    let devnet = Devnet::start(&options(transport)).await.unwrap();
    rounds(&devnet, 4).await;
    let report = devnet.report();
    let stats = devnet.validator.stats();
    for miner in &report {
        let last_error = &stats[&miner.hotkey].last_error;
        assert_eq!(miner.requests, 4, "{miner:?} {last_error:?}");
        if miner.dishonest {
            assert_eq!(miner.verified, 0, "{miner:?}");
            assert_eq!(miner.weight, 0.0, "{miner:?}");
            assert_eq!(miner.score, 0.0, "{miner:?}");
        } else {
            assert_eq!(miner.verified, 4, "{miner:?} {last_error:?}");
            assert!(miner.weight > 0.0, "{miner:?}");
        }
    }
    let metrics = devnet.validator.metrics().render();
    assert!(metrics.contains("sn2_proofs_verified_total 8"), "{metrics}");
    assert!(metrics.contains("sn2_proofs_failed_total 4"), "{metrics}");
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_and_three_miners_over_quic() {
    honest_get_weight_and_cheats_none(Transport::QuicOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_and_three_miners_over_http() {
    honest_get_weight_and_cheats_none(Transport::HttpOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_killed_mid_run_is_recorded_and_the_validator_carries_on() {
    let mut devnet = Devnet::start(&DevnetOptions {
        dishonest: 0,
        ..options(Transport::QuicThenHttp)
    })
    .await
    .unwrap();
    rounds(&devnet, 2).await;
    let stats = devnet.validator.stats();
    assert!(
        devnet.report().iter().all(|m| m.verified == 2),
        "{:?} {stats:?}",
        devnet.report()
    );
    devnet.kill_miner(0).await;
    for round in 2..5 {
        devnet.validator.round(round).await;
    }
    let report = devnet.report();
    assert_eq!(
        (report[0].requests, report[0].verified),
        (5, 2),
        "{:?}",
        report[0]
    );
    for miner in &report[1..] {
        assert_eq!((miner.requests, miner.verified), (5, 5), "{miner:?}");
    }
    assert!(report[0].score < report[1].score);
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_validator_keeps_its_scores() {
    let devnet = Devnet::start(&options(Transport::QuicThenHttp))
        .await
        .unwrap();
    rounds(&devnet, 2).await;
    let before = devnet.validator.scores();
    assert_eq!(before.miners.len(), 3);
    let state_dir = devnet.dir().join("validator-state");
    assert_eq!(Scores::load(&state_dir).unwrap(), before);
    let restarted = Validator::new(
        Hotkey::from_seed(&[9; 32]),
        &ModelStore::new(devnet.dir().join("validator")),
        &devnet.sync().await,
        ValidatorOptions {
            round_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            sample_size: 3,
            state_dir,
            models: Vec::new(),
            transport: Transport::QuicThenHttp,
            max_response_bytes: 1 << 20,
        },
    )
    .unwrap();
    assert_eq!(restarted.scores(), before);
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_refuses_keys_that_are_not_its_own() {
    let devnet = Devnet::start(&options(Transport::QuicThenHttp))
        .await
        .unwrap();
    let store = ModelStore::new(devnet.dir().join("validator"));
    let state_dir = devnet.dir().join("validator-state");
    let sync = devnet.sync().await;
    let start = |state_dir: std::path::PathBuf| {
        Validator::new(
            Hotkey::from_seed(&[9; 32]),
            &store,
            &sync,
            ValidatorOptions {
                round_interval: Duration::from_secs(1),
                request_timeout: Duration::from_secs(5),
                sample_size: 3,
                state_dir,
                models: vec!["digits-mlp".into()],
                transport: Transport::QuicThenHttp,
                max_response_bytes: 1 << 20,
            },
        )
        .map(|_| ())
    };
    start(state_dir.clone()).unwrap();
    let model = store.open("digits-mlp").unwrap();
    let system = sn2::proof::default_backend();
    let kinds = [
        sn2::proof::keys::KeyKind::Verifying,
        sn2::proof::keys::KeyKind::Proving,
    ];
    let [vk_path, pk_path] = kinds.map(|kind| sn2::proof::keys::path(&model, system.name(), kind));
    let first_vk = std::fs::read(&vk_path).unwrap();
    // New keys on disk (another setup): the pinned fingerprints refuse them.
    sn2::proof::keys::setup(&model, system.as_ref()).unwrap();
    let error = start(state_dir.clone()).unwrap_err().to_string();
    assert!(error.contains("is not the one this validator"), "{error}");
    assert!(error.contains("key-pins.json"), "{error}");
    // With no pins (a fresh state), a verifying key from one setup and a proving key
    // from another are caught by the proof made at start.
    std::fs::write(&vk_path, &first_vk).unwrap();
    let error = format!("{:#}", start(devnet.dir().join("fresh-state")).unwrap_err());
    assert!(error.contains("not one pair"), "{error}");
    assert!(pk_path.exists());
    devnet.stop().await;
}

/// One miner serving digits-mlp, with a metagraph of a permitted validator and an
/// unpermitted hotkey.
struct Lone {
    address: SocketAddr,
    miner: Hotkey,
    validator: Hotkey,
    stranger: Hotkey,
    model: String,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

const MAX_REQUEST: usize = 64 * 1024;

async fn lone_miner() -> Lone {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let (_, onnx, calibration) = REFERENCE_MODELS[0];
    let model = store
        .import(
            onnx,
            "digits-mlp",
            &DataSet::parse(calibration).unwrap().inputs,
        )
        .unwrap()
        .id
        .to_hex();
    let (miner, validator, stranger) = (
        Hotkey::from_seed(&[1; 32]),
        Hotkey::from_seed(&[2; 32]),
        Hotkey::from_seed(&[3; 32]),
    );
    let metagraph = Metagraph {
        netuid: 2,
        block: 0,
        neurons: vec![
            Neuron {
                uid: 0,
                hotkey: validator.public(),
                axon: None,
                validator_permit: true,
                stake: 10.0,
                coldkey: None,
                last_update: 0,
            },
            Neuron {
                uid: 1,
                hotkey: stranger.public(),
                axon: None,
                validator_permit: false,
                stake: 10.0,
                coldkey: None,
                last_update: 0,
            },
        ],
    };
    let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = tcp.local_addr().unwrap();
    drop(tcp);
    let options = MinerOptions {
        max_concurrent_proofs: 1,
        max_key_bytes: 1 << 20,
        key_fetch_timeout: Duration::from_secs(5),
        limits: sn2::wire::http::Limits::new(MAX_REQUEST),
        min_validator_stake: 1.0,
        behaviour: Behaviour::Honest,
        fetch: Default::default(),
    };
    let node = Miner::new(
        Hotkey::from_seed(&[1; 32]),
        store,
        metagraph,
        options,
        Default::default(),
    );
    let (stop, shutdown) = sn2::shutdown::channel();
    tokio::spawn(node.listen(address, shutdown).await.unwrap());
    Lone {
        address,
        miner,
        validator,
        stranger,
        model,
        stop,
        _dir: dir,
    }
}

/// Posts `body` with Epistula headers made by `signer` over `signed_body`.
/// A request whose signature covers its body, made now with a fresh uuid.
async fn post_signed(lone: &Lone, signer: &Hotkey, body: &[u8]) -> (u16, Response) {
    post(lone, signer, body, body, None, &auth::uuid_v4()).await
}

async fn post(
    lone: &Lone,
    signer: &Hotkey,
    body: &[u8],
    signed_body: &[u8],
    timestamp: Option<u64>,
    uuid: &str,
) -> (u16, Response) {
    let timestamp = timestamp.unwrap_or_else(sn2::wire::now_ms);
    let miner = lone.miner.ss58();
    let signature = signer.sign(epistula_message(signed_body, uuid, timestamp, &miner).as_bytes());
    let request = hyper::Request::post(format!("http://{}{REQUEST_PATH}", lone.address))
        .header(auth::HEADER_VERSION, "2")
        .header(auth::HEADER_TIMESTAMP, timestamp.to_string())
        .header(auth::HEADER_UUID, uuid)
        .header(auth::HEADER_SIGNED_BY, signer.ss58())
        .header(auth::HEADER_SIGNED_FOR, &miner)
        .header(auth::HEADER_SIGNATURE, format!("0x{}", signature.to_hex()))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let (status, bytes) = HttpClient::default().raw(request, 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes))),
    )
}

fn code(response: &Response) -> ErrorCode {
    match response {
        Response::Error(body) => body.code,
        other => panic!("not an error: {other:?}"),
    }
}

fn prove_request(model: &str) -> Request {
    Request::Prove(ProveRequest {
        model: model.into(),
        input: vec![0; 64],
        nonce: "ab".repeat(32),
        proving_key: "00".repeat(32),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_bad_requests_with_codes_and_keeps_serving() {
    let lone = lone_miner().await;
    let health = serde_json::to_vec(&Request::Health).unwrap();

    let (status, response) = post(
        &lone,
        &lone.validator,
        &health,
        b"something else",
        None,
        &auth::uuid_v4(),
    )
    .await;
    assert_eq!((status, code(&response)), (401, ErrorCode::BadSignature));

    let (status, response) = post_signed(&lone, &lone.stranger, &health).await;
    assert_eq!((status, code(&response)), (403, ErrorCode::UnknownHotkey));
    let unregistered = Hotkey::from_seed(&[4; 32]);
    let (status, _) = post_signed(&lone, &unregistered, &health).await;
    assert_eq!(status, 403);

    let old = sn2::wire::now_ms() - auth::MAX_AGE_MS - 5000;
    let (status, response) = post(
        &lone,
        &lone.validator,
        &health,
        &health,
        Some(old),
        &auth::uuid_v4(),
    )
    .await;
    assert_eq!((status, code(&response)), (401, ErrorCode::StaleTimestamp));

    let uuid = auth::uuid_v4();
    let (status, _) = post(&lone, &lone.validator, &health, &health, None, &uuid).await;
    assert_eq!(status, 200);
    let (status, response) = post(&lone, &lone.validator, &health, &health, None, &uuid).await;
    assert_eq!((status, code(&response)), (409, ErrorCode::ReplayedNonce));

    let garbage = b"{\"op\": \"launch_missiles\"}";
    let (status, response) = post_signed(&lone, &lone.validator, garbage).await;
    assert_eq!(
        (status, code(&response)),
        (400, ErrorCode::MalformedRequest)
    );

    let huge = vec![b' '; MAX_REQUEST + 1];
    let (status, response) = post_signed(&lone, &lone.validator, &huge).await;
    assert_eq!((status, code(&response)), (413, ErrorCode::TooLarge));

    let unknown = serde_json::to_vec(&prove_request(&"11".repeat(32))).unwrap();
    let (status, response) = post_signed(&lone, &lone.validator, &unknown).await;
    assert_eq!((status, code(&response)), (404, ErrorCode::UnknownModel));

    let no_key = serde_json::to_vec(&prove_request(&lone.model)).unwrap();
    let (status, response) = post_signed(&lone, &lone.validator, &no_key).await;
    assert_eq!((status, code(&response)), (424, ErrorCode::UnknownKey));

    // Still serving, and its answers are signed for the asker.
    let answer = HttpClient::default()
        .request(
            lone.address,
            &lone.validator,
            &lone.miner.public(),
            &Request::Health,
            4096,
        )
        .await
        .unwrap();
    assert!(matches!(answer, Response::Health { .. }));
    let _ = lone.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_bad_sessions_and_frames_and_keeps_serving() {
    let lone = lone_miner().await;
    let endpoint = quic::client_endpoint().unwrap();
    let refused = Session::connect(
        &endpoint,
        lone.address,
        &lone.stranger,
        lone.miner.public(),
        1 << 20,
    )
    .await;
    assert!(
        matches!(refused, Err(ClientError::Refused(ref e)) if e.code == ErrorCode::UnknownHotkey),
        "{:?}",
        refused.err()
    );
    let wrong_miner = Session::connect(
        &endpoint,
        lone.address,
        &lone.validator,
        lone.stranger.public(),
        1 << 20,
    )
    .await;
    assert!(matches!(wrong_miner, Err(ClientError::BadResponse(_))));

    let session = Session::connect(
        &endpoint,
        lone.address,
        &lone.validator,
        lone.miner.public(),
        1 << 20,
    )
    .await
    .unwrap();
    let (kind, payload) = session
        .raw_frame(quic::FRAME_REQUEST, b"not json")
        .await
        .unwrap();
    assert_eq!(kind, quic::FRAME_RESPONSE);
    let signed: quic::SignedResponse = serde_json::from_slice(&payload).unwrap();
    assert!(signed.body.contains("malformed_request"), "{}", signed.body);

    let (kind, payload) = session
        .raw_frame(quic::FRAME_REQUEST, &vec![b' '; MAX_REQUEST + 1])
        .await
        .unwrap();
    assert_eq!(kind, quic::FRAME_ERROR);
    assert!(String::from_utf8_lossy(&payload).contains("too_large"));

    let (kind, _) = session.raw_frame(0x7f, b"{}").await.unwrap();
    assert_eq!(kind, quic::FRAME_ERROR);

    let unknown = session.request(&prove_request(&"22".repeat(32))).await;
    assert!(
        matches!(unknown, Err(ClientError::Refused(ref e)) if e.code == ErrorCode::UnknownModel)
    );

    let first = session.request(&prove_request(&lone.model)).await;
    assert!(matches!(first, Err(ClientError::Refused(ref e)) if e.code == ErrorCode::UnknownKey));
    let replay = session.request(&prove_request(&lone.model)).await;
    assert!(
        matches!(replay, Err(ClientError::Refused(ref e)) if e.code == ErrorCode::ReplayedNonce)
    );

    let health = session.request(&Request::Health).await.unwrap();
    assert!(matches!(health, Response::Health { .. }));
    let _ = lone.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_handshakes_are_rate_limited_per_address() {
    let lone = lone_miner().await;
    let endpoint = quic::client_endpoint().unwrap();
    let connect = || {
        Session::connect(
            &endpoint,
            lone.address,
            &lone.validator,
            lone.miner.public(),
            1 << 20,
        )
    };
    let limit = sn2::miner::MAX_HANDSHAKES_PER_MINUTE;
    for _ in 0..limit {
        connect().await.unwrap();
    }
    let mut refused = connect().await;
    if refused.is_ok() {
        // A minute boundary fell between the handshakes and reset the count: one more
        // burst within the new minute shows the limit.
        for _ in 0..limit - 1 {
            connect().await.unwrap();
        }
        refused = connect().await;
    }
    assert!(
        matches!(refused, Err(ClientError::Refused(ref e)) if e.code == ErrorCode::Busy),
        "{:?}",
        refused.err()
    );
    // HTTP is not affected.
    let health = HttpClient::default()
        .request(
            lone.address,
            &lone.validator,
            &lone.miner.public(),
            &Request::Health,
            4096,
        )
        .await;
    assert!(health.is_ok());
    let _ = lone.stop.send(true);
}

/// The miners of a devnet start with no models: each fetches every model the validator
/// asks for, by id, from the validator's key server, and proves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_that_start_empty_fetch_and_prove_every_model() {
    let devnet = Devnet::start(&DevnetOptions {
        dishonest: 0,
        miners: 2,
        models: vec!["digits-mlp".into(), "mnist-mlp".into()],
        // Room for no prover at all: each model's prover drops the other's, which is
        // loaded again from the disk cache at its next round.
        prover_memory_bytes: 1,
        ..options(Transport::QuicThenHttp)
    })
    .await
    .unwrap();
    rounds(&devnet, 4).await;
    let stats = devnet.validator.stats();
    for miner in devnet.report() {
        let last_error = &stats[&miner.hotkey].last_error;
        assert_eq!(miner.verified, 4, "{miner:?} {last_error:?}");
    }
    let validator_models: Vec<String> = ModelStore::new(devnet.dir().join("validator"))
        .list()
        .unwrap()
        .iter()
        .map(|m| m.id.to_hex())
        .collect();
    assert_eq!(validator_models.len(), 2);
    for miner in 1..=2 {
        let store = ModelStore::new(devnet.dir().join(format!("miner-{miner}")));
        let mut fetched: Vec<String> = store.fetched().iter().map(|(id, ..)| id.to_hex()).collect();
        fetched.sort();
        let mut expected = validator_models.clone();
        expected.sort();
        assert_eq!(fetched, expected, "miner {miner}");
    }
    devnet.stop().await;
}
