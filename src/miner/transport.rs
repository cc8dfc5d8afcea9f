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
use crate::wire::auth::{self, check_timestamp, sha256_hex};
use crate::wire::http::{self as wire_http, HttpResponse, error_response, json_response};
use crate::wire::quic::{
    self, HandshakeRequest, HandshakeResponse, ServerIdentity, SignedResponse,
};
use crate::wire::{ErrorCode, Request, Response, WireError};

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
    let http = tokio::spawn(wire_http::serve(
        listener,
        miner.options.max_request_bytes,
        move |parts, body| {
            let miner = http_miner.clone();
            async move { handle_http(&miner, parts, body).await }
        },
        shutdown.clone(),
    ));
    let fingerprint = Arc::new(fingerprint);
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let miner = miner.clone();
                let fingerprint = fingerprint.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(connection) => serve_connection(miner, connection, &fingerprint, stop).await,
                        Err(error) => tracing::debug!(%error, "QUIC connection failed"),
                    }
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
            tracing::info!(%peer, %error, "QUIC handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "QUIC handshake timed out");
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
            let (kind, payload) =
                match quic::read_frame(&mut recv, miner.options.max_request_bytes).await {
                    Ok(frame) => frame,
                    Err(error) => return quic::send_error(&mut send, &error).await,
                };
            if kind != quic::FRAME_REQUEST {
                let error = WireError::new(
                    ErrorCode::MalformedRequest,
                    format!("expected a request frame, got {kind:#x}"),
                );
                return quic::send_error(&mut send, &error).await;
            }
            // The session is bound to a validator that had a permit when it connected;
            // check again, since the metagraph may have changed.
            if let Err(error) = miner.authorize(&validator) {
                return quic::send_error(&mut send, &error).await;
            }
            let response = match serde_json::from_slice::<Request>(&payload) {
                Ok(request) => miner.handle(request).await,
                Err(e) => Response::Error(
                    WireError::new(ErrorCode::MalformedRequest, e.to_string()).body(),
                ),
            };
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
        let validator = PublicKey::from_ss58(&request.validator).map_err(|e| {
            WireError::new(
                ErrorCode::BadSignature,
                format!("validator `{}`: {e}", request.validator),
            )
        })?;
        let message = auth::handshake_message(
            &request.validator,
            request.timestamp,
            &request.nonce,
            &request.cert_fingerprint,
        );
        auth::verify_hex(&validator, &message, &request.signature)?;
        if request.cert_fingerprint != fingerprint {
            return Err(WireError::new(
                ErrorCode::BadSignature,
                "the handshake is for another certificate",
            ));
        }
        check_timestamp(request.timestamp)?;
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

async fn handle_http(miner: &Arc<Miner>, parts: Parts, body: Bytes) -> HttpResponse {
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/health") => {
            let body = serde_json::to_vec(&miner.handle(Request::Health).await).expect("JSON");
            json_response(200, body, &[])
        }
        ("POST", wire_http::REQUEST_PATH) => {
            let headers = wire_http::epistula_headers(&parts);
            let checked = headers
                .verify(&body, &miner.ss58)
                .and_then(|(validator, uuid)| {
                    miner.authorize(&validator)?;
                    miner.replay.check_and_insert(&format!("uuid:{uuid}"))?;
                    Ok((validator, uuid))
                });
            let (validator, uuid) = match checked {
                Ok(checked) => checked,
                Err(error) => return error_response(&error),
            };
            let response = match serde_json::from_slice::<Request>(&body) {
                Ok(request) => miner.handle(request).await,
                Err(e) => Response::Error(
                    WireError::new(ErrorCode::MalformedRequest, e.to_string()).body(),
                ),
            };
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
        _ => error_response(&WireError::new(
            ErrorCode::MalformedRequest,
            format!("no route {} {}", parts.method, parts.uri.path()),
        )),
    }
}
