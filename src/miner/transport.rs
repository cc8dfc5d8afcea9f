//! The miner's two front doors: QUIC (handshake, then one stream per request) and HTTP
//! (Epistula-signed requests). Both end in `Miner::handle`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use hyper::http::request::Parts;
use tokio::sync::watch;

use super::Miner;
use crate::keys::PublicKey;
use crate::wire::auth::{self, sha256_hex};
use crate::wire::http::{self as wire_http, Body, HttpResponse, error_response, json_response};
use crate::wire::quic::{
    self, HandshakeRequest, HandshakeResponse, ServerIdentity, SignedResponse,
};
use crate::wire::{ErrorCode, Response, WireError};

/// Concurrent requests one QUIC connection may have open.
const STREAMS_PER_CONNECTION: u32 = 64;

/// Binds QUIC and HTTP on `address`; the returned future serves until `shutdown`. Binding
/// first means the miner is reachable once this returns.
pub async fn listen(
    miner: Arc<Miner>,
    address: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let identity = ServerIdentity::generate()?;
    let endpoint =
        quinn::Endpoint::server(identity.server_config(STREAMS_PER_CONNECTION)?, address)
            .with_context(|| format!("cannot listen for QUIC on udp/{address}"))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for HTTP on tcp/{address}"))?;
    tracing::info!(%address, hotkey = %miner.ss58, "miner serving QUIC and HTTP");
    Ok(serve(
        miner,
        endpoint,
        listener,
        identity.fingerprint,
        shutdown,
    ))
}

async fn serve(
    miner: Arc<Miner>,
    endpoint: quinn::Endpoint,
    listener: tokio::net::TcpListener,
    fingerprint: String,
    shutdown: watch::Receiver<bool>,
) {
    let http_miner = miner.clone();
    let metrics = miner.metrics.clone();
    let http = tokio::spawn(wire_http::serve(
        listener,
        miner.options.limits.clone(),
        Arc::new(move |reason, peer| metrics.refused(reason, &peer)),
        move |parts, body| {
            let miner = http_miner.clone();
            async move { handle_http(&miner, parts, body).await }
        },
        shutdown.clone(),
    ));
    let fingerprint = Arc::new(fingerprint);
    let connections = Arc::new(tokio::sync::Semaphore::new(quic::MAX_CONNECTIONS));
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                // Refused before the TLS handshake, so that a flood of connections costs
                // neither a handshake nor a task.
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    miner.metrics.refused("connections", &incoming.remote_address());
                    incoming.refuse();
                    continue;
                };
                let miner = miner.clone();
                let fingerprint = fingerprint.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(connection) => serve_connection(miner, connection, &fingerprint, stop).await,
                        Err(error) => tracing::debug!(%error, "QUIC connection failed"),
                    }
                    drop(permit);
                });
            }
            _ = crate::shutdown::stopped(&mut stop) => break,
        }
    }
    endpoint.close(0u32.into(), b"shutting down");
    // Let the close reach the validators, so they stop using their sessions at once.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    let _ = http.await;
}

async fn serve_connection(
    miner: Arc<Miner>,
    connection: quinn::Connection,
    fingerprint: &str,
    mut stop: watch::Receiver<bool>,
) {
    let peer = connection.remote_address();
    let validator = match tokio::time::timeout(
        quic::HANDSHAKE_TIMEOUT,
        handshake(&miner, &connection, fingerprint),
    )
    .await
    {
        Ok(Ok(validator)) => validator,
        Ok(Err(error)) => {
            miner.metrics.refused(
                error.code.as_str(),
                &format_args!("QUIC handshake from {peer}: {error}"),
            );
            return;
        }
        Err(_) => {
            miner.metrics.refused("handshake_timeout", &peer);
            connection.close(1u32.into(), b"handshake timeout");
            return;
        }
    };
    tracing::debug!(%peer, %validator, "QUIC session open");
    loop {
        let (mut send, mut recv) = tokio::select! {
            stream = connection.accept_bi() => match stream {
                Ok(stream) => stream,
                Err(_) => return,
            },
            _ = crate::shutdown::stopped(&mut stop) => return,
        };
        let miner = miner.clone();
        tokio::spawn(async move {
            let payload = match read_request(&miner, &validator, &mut recv).await {
                Ok(payload) => payload,
                Err(error) => {
                    miner.refused(&error);
                    return quic::send_error(&mut send, &error).await;
                }
            };
            let response = miner.answer(&payload, &validator).await;
            let body = serde_json::to_string(&response).expect("responses serialise");
            let signature = miner
                .hotkey
                .sign(auth::response_message(&sha256_hex(&payload), body.as_bytes()).as_bytes());
            let signed = SignedResponse {
                body,
                signature: signature.to_hex(),
            };
            let _ = quic::write_frame(
                &mut send,
                quic::FRAME_RESPONSE,
                &serde_json::to_vec(&signed).expect("JSON"),
            )
            .await;
        });
    }
}

/// Reads one request frame of a session's stream, once its validator still has a permit
/// (the metagraph may have changed since the handshake).
async fn read_request(
    miner: &Miner,
    validator: &PublicKey,
    recv: &mut quinn::RecvStream,
) -> Result<Vec<u8>, WireError> {
    miner.authorize(validator)?;
    let read = quic::read_frame(recv, miner.options.limits.max_body);
    let (kind, payload) = tokio::time::timeout(quic::REQUEST_READ_TIMEOUT, read)
        .await
        .map_err(|_| {
            WireError::new(
                ErrorCode::Timeout,
                format!(
                    "the request did not arrive within {} s",
                    quic::REQUEST_READ_TIMEOUT.as_secs()
                ),
            )
        })??;
    if kind != quic::FRAME_REQUEST {
        return Err(WireError::new(
            ErrorCode::MalformedRequest,
            format!("expected a request frame, got {kind:#x}"),
        ));
    }
    Ok(payload)
}

/// Checks the validator's handshake on the connection's first stream and answers it.
async fn handshake(
    miner: &Miner,
    connection: &quinn::Connection,
    fingerprint: &str,
) -> Result<PublicKey, WireError> {
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| WireError::new(ErrorCode::MalformedRequest, e.to_string()))?;
    let result = async {
        let (kind, payload) = quic::read_frame(&mut recv, quic::MAX_HANDSHAKE_BYTES).await?;
        if kind != quic::FRAME_HANDSHAKE_REQUEST {
            return Err(WireError::new(
                ErrorCode::MalformedRequest,
                format!("expected a handshake, got frame {kind:#x}"),
            ));
        }
        miner.admit_handshake(connection.remote_address().ip())?;
        let request: HandshakeRequest = serde_json::from_slice(&payload)
            .map_err(|e| WireError::new(ErrorCode::MalformedRequest, format!("handshake: {e}")))?;
        let validator = request.check(fingerprint)?;
        miner
            .replay
            .check_and_insert(&format!("handshake:{}", request.nonce))?;
        miner.authorize(&validator)?;
        Ok((validator, request))
    }
    .await;
    match result {
        Ok((validator, request)) => {
            let message = auth::handshake_response_message(
                &request.validator,
                &miner.ss58,
                request.timestamp,
                &request.nonce,
                fingerprint,
            );
            let response = HandshakeResponse {
                miner: miner.ss58.clone(),
                signature: miner.hotkey.sign(message.as_bytes()).to_hex(),
            };
            quic::write_frame(
                &mut send,
                quic::FRAME_HANDSHAKE_RESPONSE,
                &serde_json::to_vec(&response).expect("JSON"),
            )
            .await
            .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
            Ok(validator)
        }
        Err(error) => {
            quic::send_error(&mut send, &error).await;
            // Let the error frame reach the peer before the connection goes.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send.stopped()).await;
            connection.close(2u32.into(), error.code.as_str().as_bytes());
            Err(error)
        }
    }
}

async fn handle_http(miner: &Arc<Miner>, parts: Parts, body: Body) -> HttpResponse {
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/health") => {
            json_response(200, serde_json::to_vec(&miner.health()).expect("JSON"), &[])
        }
        ("POST", wire_http::REQUEST_PATH) => {
            let (validator, uuid, body) = match authenticate(miner, &parts, body).await {
                Ok(authenticated) => authenticated,
                Err(error) => {
                    miner.refused(&error);
                    return error_response(&error);
                }
            };
            let response = miner.answer(&body, &validator).await;
            let status = match &response {
                Response::Error(error) => error.code.http_status(),
                _ => 200,
            };
            let body = serde_json::to_vec(&response).expect("responses serialise");
            let headers: Vec<(&str, String)> =
                auth::epistula_headers(&miner.hotkey, &body, &validator.to_ss58(), &uuid)
                    .into_iter()
                    .collect();
            json_response(status, body, &headers)
        }
        _ => {
            let error = WireError::new(
                ErrorCode::MalformedRequest,
                format!("no route {} {}", parts.method, parts.uri.path()),
            );
            miner.refused(&error);
            error_response(&error)
        }
    }
}

/// Everything a request must show before the miner spends anything on it, in order of
/// cost: headers (fresh, for this miner, well formed), a validator with a permit, a
/// declared length within the limit and, for a large body, room in the budget of large
/// bodies; only then the body is read (with a deadline), its signature verified and its
/// uuid spent.
async fn authenticate(
    miner: &Miner,
    parts: &Parts,
    body: Body,
) -> Result<(PublicKey, String, Bytes), WireError> {
    let signed = wire_http::epistula_headers(parts).check(&miner.ss58)?;
    miner.authorize(&signed.signer)?;
    let _reading = miner.admit_body(body.checked_len()?)?;
    let body = body.read().await?;
    signed.verify(&body)?;
    miner
        .replay
        .check_and_insert(&format!("uuid:{}", signed.uuid))?;
    Ok((signed.signer, signed.uuid, body))
}
