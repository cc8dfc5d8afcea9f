//! What miners and validators say to each other, and how it is authenticated.
//!
//! Two transports carry the same JSON messages: QUIC (TLS 1.3 with a self-signed
//! certificate whose fingerprint the validator's signed handshake binds, as btlightning
//! does; one bidirectional stream per request, framed) and HTTP/1.1+2 (each request signed
//! with Epistula v2 headers, as across Bittensor). Every response is signed by the miner.

pub mod auth;
pub mod http;
pub mod quic;

use serde::{Deserialize, Serialize};

/// What a validator asks a miner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Prove(ProveRequest),
    Models,
    Health,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProveRequest {
    /// Model id (hex).
    pub model: String,
    /// The int8 input.
    pub input: Vec<i8>,
    /// 32 random bytes (hex), bound into the proof with the miner's hotkey.
    pub nonce: String,
    /// SHA-256 (hex) of the validator's proving-key file to prove with. A miner without
    /// it fetches it from the address the validator announced, never from one a request
    /// names.
    pub proving_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Proved(ProveResponse),
    Models { models: Vec<ServedModel> },
    Health { hotkey: String, version: String },
    Error(ErrorBody),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProveResponse {
    pub output: Vec<i32>,
    /// The proof (base64).
    pub proof: String,
    /// Time spent proving, as the miner measured it.
    pub prove_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedModel {
    pub id: String,
    pub name: String,
    pub input_len: usize,
    pub output_len: usize,
}

/// Why a request was refused: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadSignature,
    UnknownHotkey,
    StaleTimestamp,
    ReplayedNonce,
    MalformedRequest,
    TooLarge,
    UnknownModel,
    UnknownKey,
    Busy,
    /// The request did not arrive in time.
    Timeout,
    Internal,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadSignature | ErrorCode::StaleTimestamp => 401,
            ErrorCode::UnknownHotkey => 403,
            ErrorCode::ReplayedNonce => 409,
            ErrorCode::MalformedRequest => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnknownModel => 404,
            ErrorCode::UnknownKey => 424,
            ErrorCode::Busy => 503,
            ErrorCode::Timeout => 408,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::UnknownHotkey => "unknown_hotkey",
            ErrorCode::StaleTimestamp => "stale_timestamp",
            ErrorCode::ReplayedNonce => "replayed_nonce",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownModel => "unknown_model",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A refusal, as the miner raises it and the transports carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

/// Why a validator's query failed, as the validator records it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing was sent: the miner cannot be reached.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Nothing was sent: the miner's host refused the connection (no one listens).
    #[error("connection refused: {0}")]
    ConnectionRefused(String),
    /// The connection ended or was reset before the whole answer arrived.
    #[error("the connection closed before the answer: {0}")]
    Reset(String),
    #[error("the miner refused: {0}")]
    Refused(WireError),
    #[error("bad response: {0}")]
    BadResponse(String),
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// A short label for metrics and logs: what happened to the query.
    pub fn label(&self) -> &'static str {
        match self {
            ClientError::Connect(_) => "connect_failed",
            ClientError::ConnectionRefused(_) => "connection_refused",
            ClientError::Reset(_) => "reset",
            ClientError::Refused(_) => "refused",
            ClientError::BadResponse(_) => "bad_response",
            ClientError::Timeout => "timeout",
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
