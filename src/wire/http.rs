//! HTTP/1.1 and HTTP/2 (hyper): a small server for the miner's API and the validator's
//! metrics and keys, and the client validators and miners use.
//!
//! The miner's API: `GET /health` (public) and `POST /v1/request` (a JSON [`Request`],
//! signed with Epistula v2 headers; the JSON [`Response`] comes back signed the same way,
//! for the request's uuid).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::auth::{self, EpistulaHeaders};
use super::{ClientError, ErrorCode, Request, Response, WireError};
use crate::keys::{Hotkey, PublicKey};

pub type HttpResponse = hyper::Response<Full<Bytes>>;

pub const REQUEST_PATH: &str = "/v1/request";

/// Connections served at once; more are closed on arrival.
const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A JSON response with a status.
pub fn json_response(status: u16, body: Vec<u8>, headers: &[(&str, String)]) -> HttpResponse {
    let mut builder = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

pub fn text_response(status: u16, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

pub fn error_response(error: &WireError) -> HttpResponse {
    json_response(
        error.code.http_status(),
        serde_json::to_vec(&Response::Error(error.body())).expect("JSON"),
        &[],
    )
}

/// Serves HTTP on `listener` until `shutdown` turns true. Bodies over `max_body` bytes
/// are answered 413 without being read whole.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    max_body: usize,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        };
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let handler = handler.clone();
            async move {
                let (parts, body) = request.into_parts();
                let declared = parts
                    .headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok());
                if declared.is_some_and(|n| n > max_body) {
                    return Ok::<_, std::convert::Infallible>(error_response(&too_large(max_body)));
                }
                let bytes = match Limited::new(body, max_body).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => return Ok(error_response(&too_large(max_body))),
                };
                Ok(handler(parts, bytes).await)
            }
        });
        // Past the limit a connection is closed at once rather than queued.
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client that trickles its headers is cut off instead of holding a slot.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = crate::shutdown::stopped(&mut stop) => {}
            }
        });
    }
}

fn too_large(max: usize) -> WireError {
    WireError::new(
        ErrorCode::TooLarge,
        format!("the body is over the limit of {max} bytes"),
    )
}

/// Reads the Epistula headers of a request.
pub fn epistula_headers(parts: &Parts) -> EpistulaHeaders<'_> {
    let get = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    EpistulaHeaders {
        version: get(auth::HEADER_VERSION),
        timestamp: get(auth::HEADER_TIMESTAMP),
        uuid: get(auth::HEADER_UUID),
        signed_by: get(auth::HEADER_SIGNED_BY),
        signed_for: get(auth::HEADER_SIGNED_FOR),
        signature: get(auth::HEADER_SIGNATURE),
    }
}

/// The HTTP client of validators (queries) and miners (key downloads).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

async fn read_limited(body: Incoming, max: usize) -> Result<Bytes, ClientError> {
    Limited::new(body, max)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ClientError::BadResponse(format!("response body: {e}")))
}

impl HttpClient {
    /// Sends a signed request to a miner's API and checks its signed response.
    pub async fn request(
        &self,
        address: SocketAddr,
        hotkey: &Hotkey,
        miner: &PublicKey,
        request: &Request,
        max_response: usize,
    ) -> Result<Response, ClientError> {
        let body = serde_json::to_vec(request).expect("requests serialise");
        let uuid = auth::uuid_v4();
        let miner_ss58 = miner.to_ss58();
        let mut builder = hyper::Request::post(format!("http://{address}{REQUEST_PATH}"))
            .header("content-type", "application/json");
        for (name, value) in auth::epistula_headers(hotkey, &body, &miner_ss58, &uuid) {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let bytes = read_limited(body, max_response).await?;
        let get = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        // The miner signs for this validator and this request's uuid.
        if get(auth::HEADER_SIGNED_BY) != miner_ss58 || get(auth::HEADER_UUID) != uuid {
            return Err(ClientError::BadResponse(format!(
                "an unsigned or foreign response (status {})",
                parts.status
            )));
        }
        let timestamp: u64 = get(auth::HEADER_TIMESTAMP).parse().unwrap_or(0);
        let message = auth::epistula_message(&bytes, &uuid, timestamp, &hotkey.ss58());
        auth::verify_hex(miner, &message, get(auth::HEADER_SIGNATURE))
            .map_err(|e| ClientError::BadResponse(format!("response signature: {e}")))?;
        let response: Response =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        match response {
            Response::Error(body) => Err(ClientError::Refused(WireError::new(
                body.code,
                body.message,
            ))),
            other => Ok(other),
        }
    }

    /// GETs a URL's body, up to `max` bytes.
    pub async fn get(&self, url: &str, max: usize) -> Result<Bytes, ClientError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?;
        let response = self
            .client
            .get(uri)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let status = response.status();
        let bytes = read_limited(response.into_body(), max).await?;
        if !status.is_success() {
            return Err(ClientError::BadResponse(format!("{url}: status {status}")));
        }
        Ok(bytes)
    }

    /// Sends a raw request (for tests of malformed input).
    pub async fn raw(
        &self,
        request: hyper::Request<Full<Bytes>>,
        max: usize,
    ) -> Result<(u16, Bytes), ClientError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let status = response.status().as_u16();
        Ok((status, read_limited(response.into_body(), max).await?))
    }
}
