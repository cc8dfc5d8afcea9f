//! QUIC: TLS 1.3 with a self-signed certificate, ALPN `sn2/1`, frames of
//! `[kind u8 | length u32 big-endian | JSON]` on bidirectional streams.
//!
//! The first stream of a connection carries the handshake: the validator signs its hotkey,
//! time, a nonce and the BLAKE2b-256 fingerprint of the miner's certificate (which the TLS
//! handshake proved the miner holds the key of); the miner checks it and signs an answer.
//! The connection is then bound to that validator, and every later stream is one request
//! and its signed response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};

use super::auth::{self, sha256_hex};
use super::{ClientError, ErrorBody, ErrorCode, Request, Response, WireError, now_ms};
use crate::keys::{Hotkey, PublicKey};

pub const ALPN: &[u8] = b"sn2/1";

pub const FRAME_HANDSHAKE_REQUEST: u8 = 0x01;
pub const FRAME_HANDSHAKE_RESPONSE: u8 = 0x02;
pub const FRAME_REQUEST: u8 = 0x03;
pub const FRAME_RESPONSE: u8 = 0x04;
pub const FRAME_ERROR: u8 = 0x05;

/// Handshakes and their answers are small.
pub const MAX_HANDSHAKE_BYTES: usize = 4096;
/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request frame may take to arrive once its stream is open.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// QUIC connections a miner holds at once; further ones are refused before their TLS
/// handshake.
pub const MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeRequest {
    pub validator: String,
    pub timestamp: u64,
    pub nonce: String,
    pub cert_fingerprint: String,
    pub signature: String,
}

impl HandshakeRequest {
    /// Checks what the handshake says on its own: the validator's signature, that it is
    /// for this miner's certificate (`fingerprint`), and its time. Returns the validator;
    /// the nonce's freshness and the validator's permit are the miner's to check.
    pub fn check(&self, fingerprint: &str) -> Result<PublicKey, WireError> {
        let validator = PublicKey::from_ss58(&self.validator).map_err(|e| {
            WireError::new(
                ErrorCode::BadSignature,
                format!("validator `{}`: {e}", self.validator),
            )
        })?;
        let message = auth::handshake_message(
            &self.validator,
            self.timestamp,
            &self.nonce,
            &self.cert_fingerprint,
        );
        auth::verify_hex(&validator, &message, &self.signature)?;
        if self.cert_fingerprint != fingerprint {
            return Err(WireError::new(
                ErrorCode::BadSignature,
                "the handshake is for another certificate",
            ));
        }
        auth::check_timestamp(self.timestamp)?;
        Ok(validator)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeResponse {
    pub miner: String,
    pub signature: String,
}

/// A response on the wire: the body's JSON with the miner's signature over the request's
/// digest and that body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedResponse {
    pub body: String,
    pub signature: String,
}

/// BLAKE2b-256 of a certificate (hex).
pub fn cert_fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Blake2b::<U32>::digest(cert_der))
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The miner's TLS identity: a fresh self-signed certificate (identity comes from the
/// hotkey handshake, not from a certificate authority).
pub struct ServerIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pub fingerprint: String,
}

impl ServerIdentity {
    pub fn generate() -> Result<Self, WireError> {
        let certified =
            rcgen::generate_simple_self_signed(vec!["sn2-miner".to_string()]).map_err(|e| {
                WireError::new(
                    ErrorCode::Internal,
                    format!("cannot make a certificate: {e}"),
                )
            })?;
        let cert = certified.cert.der().clone();
        let fingerprint = cert_fingerprint(&cert);
        Ok(Self {
            cert,
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
            fingerprint,
        })
    }

    pub fn server_config(
        &self,
        max_concurrent_streams: u32,
    ) -> Result<quinn::ServerConfig, WireError> {
        let internal = |e: String| WireError::new(ErrorCode::Internal, e);
        let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| internal(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(|e| internal(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| internal(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let transport = Arc::get_mut(&mut config.transport).expect("fresh config");
        transport.max_concurrent_bidi_streams(max_concurrent_streams.into());
        transport.max_concurrent_uni_streams(0u8.into());
        transport.max_idle_timeout(Some(Duration::from_secs(60).try_into().expect("in range")));
        Ok(config)
    }
}

/// Accepts any server certificate while still checking the TLS handshake's signatures:
/// the certificate proves nothing by itself here; the signed hotkey handshake binds it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client endpoint for validators.
pub fn client_endpoint() -> Result<quinn::Endpoint, ClientError> {
    let provider = crypto_provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Connect(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|e| ClientError::Connect(e.to_string()))?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // A miner that is gone is noticed within seconds (and then asked over HTTP), while
    // keep-alives hold sessions to live miners open between rounds.
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(5).try_into().expect("in range")));
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// A whole frame: kind, big-endian length, payload.
pub fn encode_frame(kind: u8, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let length =
        u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

pub async fn write_frame(
    send: &mut quinn::SendStream,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let frame = encode_frame(kind, payload)?;
    send.write_all(&frame)
        .await
        .map_err(std::io::Error::other)?;
    send.finish().map_err(std::io::Error::other)
}

/// A frame's kind and payload length, from its five header bytes; a length over `max` is
/// refused before any of the payload is read or allocated.
pub fn parse_frame_header(header: [u8; 5], max: usize) -> Result<(u8, usize), FrameError> {
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length > max {
        return Err(FrameError::TooLarge { length, max });
    }
    Ok((header[0], length))
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended, or the connection went, before the whole frame arrived.
    Incomplete(String),
    TooLarge {
        length: usize,
        max: usize,
    },
}

impl From<FrameError> for WireError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::Incomplete(reason) => WireError::new(
                ErrorCode::MalformedRequest,
                format!("an incomplete frame: {reason}"),
            ),
            FrameError::TooLarge { length, max } => WireError::new(
                ErrorCode::TooLarge,
                format!("a frame of {length} bytes; the limit is {max}"),
            ),
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::Incomplete(reason) => ClientError::Reset(reason),
            FrameError::TooLarge { length, max } => {
                ClientError::BadResponse(format!("an answer of {length} bytes; the limit is {max}"))
            }
        }
    }
}

async fn read_frame_from(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(u8, Vec<u8>), FrameError> {
    let mut header = [0u8; 5];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| FrameError::Incomplete(e.to_string()))?;
    let (kind, length) = parse_frame_header(header, max)?;
    let mut payload = vec![0u8; length];
    recv.read_exact(&mut payload)
        .await
        .map_err(|e| FrameError::Incomplete(e.to_string()))?;
    Ok((kind, payload))
}

/// Reads one frame of a request, refusing payloads over `max` before reading them.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(u8, Vec<u8>), WireError> {
    Ok(read_frame_from(recv, max).await?)
}

/// Reads one frame of an answer: a stream that ends early is a reset, not a malformed
/// request.
async fn read_answer(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(u8, Vec<u8>), ClientError> {
    Ok(read_frame_from(recv, max).await?)
}

/// Sends an error frame (best effort: the peer may be gone).
pub async fn send_error(send: &mut quinn::SendStream, error: &WireError) {
    let body = serde_json::to_vec(&error.body()).expect("JSON of strings");
    let _ = write_frame(send, FRAME_ERROR, &body).await;
}

/// A validator's authenticated connection to one miner.
pub struct Session {
    connection: quinn::Connection,
    miner: PublicKey,
    max_response: usize,
}

impl Session {
    /// Connects and performs the handshake, checking that the miner is `miner`.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        address: SocketAddr,
        hotkey: &Hotkey,
        miner: PublicKey,
        max_response: usize,
    ) -> Result<Self, ClientError> {
        let connection = endpoint
            .connect(address, "sn2-miner")
            .map_err(|e| ClientError::Connect(e.to_string()))?
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let certificate = connection
            .peer_identity()
            .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().cloned())
            .ok_or_else(|| ClientError::Connect("the miner showed no certificate".into()))?;
        let fingerprint = cert_fingerprint(&certificate);
        let timestamp = now_ms();
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let nonce = hex::encode(nonce);
        let me = hotkey.ss58();
        let signature =
            hotkey.sign(auth::handshake_message(&me, timestamp, &nonce, &fingerprint).as_bytes());
        let request = HandshakeRequest {
            validator: me.clone(),
            timestamp,
            nonce: nonce.clone(),
            cert_fingerprint: fingerprint.clone(),
            signature: signature.to_hex(),
        };
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        write_frame(
            &mut send,
            FRAME_HANDSHAKE_REQUEST,
            &serde_json::to_vec(&request).expect("JSON"),
        )
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (kind, payload) = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            read_answer(&mut recv, MAX_HANDSHAKE_BYTES),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;
        let response: HandshakeResponse = match kind {
            FRAME_HANDSHAKE_RESPONSE => serde_json::from_slice(&payload)
                .map_err(|e| ClientError::BadResponse(e.to_string()))?,
            FRAME_ERROR => return Err(refusal(&payload)),
            other => {
                return Err(ClientError::BadResponse(format!(
                    "unexpected frame {other:#x}"
                )));
            }
        };
        if response.miner != miner.to_ss58() {
            return Err(ClientError::BadResponse(format!(
                "the miner is {}, not {miner}",
                response.miner
            )));
        }
        let message =
            auth::handshake_response_message(&me, &response.miner, timestamp, &nonce, &fingerprint);
        auth::verify_hex(&miner, &message, &response.signature)
            .map_err(|e| ClientError::BadResponse(format!("handshake answer: {e}")))?;
        Ok(Self {
            connection,
            miner,
            max_response,
        })
    }

    /// Sends one raw frame on a new stream and returns the answering frame (diagnostics,
    /// and tests of malformed input).
    pub async fn raw_frame(&self, kind: u8, payload: &[u8]) -> Result<(u8, Vec<u8>), ClientError> {
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        write_frame(&mut send, kind, payload)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        read_answer(&mut recv, self.max_response).await
    }

    pub fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    /// Sends one request on a new stream and checks the signed response.
    pub async fn request(&self, request: &Request) -> Result<Response, ClientError> {
        let payload = serde_json::to_vec(request).expect("requests serialise");
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        // Connect errors (above) mean nothing was sent, so the request may be retried;
        // errors from here on may follow a request the miner did receive.
        write_frame(&mut send, FRAME_REQUEST, &payload)
            .await
            .map_err(|e| ClientError::BadResponse(format!("sending the request: {e}")))?;
        let (kind, bytes) = read_answer(&mut recv, self.max_response).await?;
        match kind {
            FRAME_RESPONSE => {
                let signed: SignedResponse = serde_json::from_slice(&bytes)
                    .map_err(|e| ClientError::BadResponse(e.to_string()))?;
                auth::verify_hex(
                    &self.miner,
                    &auth::response_message(&sha256_hex(&payload), signed.body.as_bytes()),
                    &signed.signature,
                )
                .map_err(|e| ClientError::BadResponse(format!("response signature: {e}")))?;
                let response: Response = serde_json::from_str(&signed.body)
                    .map_err(|e| ClientError::BadResponse(e.to_string()))?;
                match response {
                    Response::Error(body) => Err(ClientError::Refused(WireError::new(
                        body.code,
                        body.message,
                    ))),
                    other => Ok(other),
                }
            }
            FRAME_ERROR => Err(refusal(&bytes)),
            other => Err(ClientError::BadResponse(format!(
                "unexpected frame {other:#x}"
            ))),
        }
    }
}

fn refusal(payload: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(payload) {
        Ok(body) => ClientError::Refused(WireError::new(body.code, body.message)),
        Err(e) => ClientError::BadResponse(format!("unreadable error frame: {e}")),
    }
}
