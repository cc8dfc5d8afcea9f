//! HTTP/1.1 and HTTP/2 (hyper): a small server for the miner's API and the validator's
//! metrics and keys, and the client validators and miners use.
//!
//! The miner's API: `GET /health` (public) and `POST /v1/request` (a JSON [`Request`],
//! signed with Epistula v2 headers; the JSON [`Response`] comes back signed the same way,
//! for the request's uuid).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
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

/// What a listener allows a connection, so that nobody can hold its resources without
/// sending a request: every phase of a connection has a deadline and every size a bound.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; past this, a connection is answered 503 and closed.
    pub max_connections: usize,
    /// Connections from one address at once; past this, 503 too.
    pub max_connections_per_ip: usize,
    /// From accepting a connection (or answering its last request) to the end of the next
    /// request's headers: an idle connection, or one that trickles, is closed after this.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive, once a handler reads it.
    pub body_timeout: Duration,
    /// The largest body a handler reads.
    pub max_body: usize,
    /// The longest a connection lives: a reader too slow for a large response is cut off.
    pub connection_timeout: Duration,
}

impl Limits {
    /// Limits for an API taking bodies of up to `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            max_body,
            connection_timeout: Duration::from_secs(600),
        }
    }
}

/// Counts a refused connection by its reason (`connections`, `header_timeout`, ...) and
/// the peer's address, for the operator's metrics and log.
pub type OnRefusal = Arc<dyn Fn(&'static str, SocketAddr) + Send + Sync>;

/// A request's body, not read yet: a handler reads it, bounded in size and in time, only
/// once the headers have shown who sends it.
pub struct Body {
    incoming: Incoming,
    declared: Option<u64>,
    max: usize,
    timeout: Duration,
}

impl Body {
    /// The declared length, required, and within the limit: what a handler checks before
    /// it spends anything on reading.
    pub fn checked_len(&self) -> Result<u64, WireError> {
        match self.declared {
            None => Err(WireError::new(
                ErrorCode::MalformedRequest,
                "a Content-Length header is required",
            )),
            Some(n) if n > self.max as u64 => Err(too_large(self.max)),
            Some(n) => Ok(n),
        }
    }

    /// The same body with another size limit: for the one route of a listener whose
    /// bodies are larger than the rest (its limit bounds every other route's).
    pub fn with_limit(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Reads the body, refusing one over the limit or slower than the deadline.
    pub async fn read(self) -> Result<Bytes, WireError> {
        if self.declared.is_some_and(|n| n > self.max as u64) {
            return Err(too_large(self.max));
        }
        let collect = Limited::new(self.incoming, self.max).collect();
        match tokio::time::timeout(self.timeout, collect).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(_)) => Err(too_large(self.max)),
            Err(_) => Err(WireError::new(
                ErrorCode::Timeout,
                format!(
                    "the body did not arrive within {} s",
                    self.timeout.as_secs()
                ),
            )),
        }
    }
}

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
    let mut response = json_response(
        error.code.http_status(),
        serde_json::to_vec(&Response::Error(error.body())).expect("JSON"),
        &[],
    );
    if error.code == ErrorCode::Busy {
        response
            .headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    response
}

/// What a connection over a cap is told before it is closed, without reading anything.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";

/// Open connections per address, released as they close.
#[derive(Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

struct AddressSlot {
    counts: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    fn try_take(self: &Arc<Self>, address: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut counts = self.0.lock().expect("not poisoned");
        let count = counts.entry(address).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("not poisoned");
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// Answers 503 on a connection over a cap and closes it, within a second.
fn turn_away(mut stream: tokio::net::TcpStream) {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
    });
}

/// Serves HTTP/1.1 on `listener` until `shutdown` turns true, within `limits`. HTTP/2 is
/// not spoken: every client here is sn2's own, and one request per stream buys nothing
/// over keep-alive while adding streams a peer could multiply.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    on_refusal: OnRefusal,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Parts, Body) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    loop {
        let (stream, peer) = tokio::select! {
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
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            on_refusal("connections", peer);
            turn_away(stream);
            continue;
        };
        let Some(address_slot) = per_address.try_take(peer.ip(), limits.max_connections_per_ip)
        else {
            on_refusal("connections_per_address", peer);
            turn_away(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let (max_body, body_timeout) = (limits.max_body, limits.body_timeout);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let handler = handler.clone();
            async move {
                let (parts, incoming) = request.into_parts();
                let declared = parts
                    .headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body = Body {
                    incoming,
                    declared,
                    max: max_body,
                    timeout: body_timeout,
                };
                Ok::<_, std::convert::Infallible>(handler(parts, body).await)
            }
        });
        let mut stop = shutdown.clone();
        let on_refusal = on_refusal.clone();
        let (header_timeout, lifetime) = (limits.header_timeout, limits.connection_timeout);
        tokio::spawn(async move {
            let _slots = (slot, address_slot);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = tokio::time::timeout(lifetime, connection) => match served {
                    Ok(Err(error)) if error.is_timeout() => on_refusal("header_timeout", peer),
                    Ok(Err(error)) if error.is_parse() || error.is_parse_too_large() => {
                        on_refusal("malformed_http", peer)
                    }
                    Err(_) => on_refusal("connection_timeout", peer),
                    _ => {}
                },
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
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ClientError::BadResponse(format!("an answer over the limit of {max} bytes"))
            } else {
                ClientError::Reset(e.to_string())
            }
        })
}

/// What a failed exchange says about the peer: refused or unreachable (nothing sent), or
/// gone before its answer.
fn exchange_error(error: hyper_util::client::legacy::Error) -> ClientError {
    if !error.is_connect() {
        return ClientError::Reset(source_chain(&error));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return ClientError::ConnectionRefused(source_chain(&error));
        }
        source = cause.source();
    }
    ClientError::Connect(source_chain(&error))
}

/// An error and its causes, for people: hyper's own message alone says little.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
        let response = self.client.request(request).await.map_err(exchange_error)?;
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
        let response = self.client.get(uri).await.map_err(exchange_error)?;
        let status = response.status();
        let bytes = read_limited(response.into_body(), max).await?;
        if !status.is_success() {
            // The server's own words say what to do next (a key server's 503 says to wait
            // for its restart): the first line, bounded, printable characters only.
            let said: String = String::from_utf8_lossy(&bytes)
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            return Err(ClientError::BadResponse(match said.trim() {
                "" => format!("{url}: status {status}"),
                said => format!("{url}: status {status}: {said}"),
            }));
        }
        Ok(bytes)
    }

    /// Sends a raw request (for tests of malformed input).
    pub async fn raw(
        &self,
        request: hyper::Request<Full<Bytes>>,
        max: usize,
    ) -> Result<(u16, Bytes), ClientError> {
        let response = self.client.request(request).await.map_err(exchange_error)?;
        let status = response.status().as_u16();
        Ok((status, read_limited(response.into_body(), max).await?))
    }
}
