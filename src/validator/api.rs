//! The validator's user API (`[api]`): anyone it lets in gets a proved answer.
//!
//! - `POST /v1/inference {model, input}`: the input goes to the best scoring miners in
//!   turn, each as a normal request with a fresh nonce; the first answer whose proof this
//!   validator verifies is returned with the proof, the nonce, the miner and the verifying
//!   key's hash. No unverified answer is ever returned: without one, 502 with the reasons.
//!   These queries are scored like the validator's own.
//! - `GET /v1/models`, `GET /v1/models/{id}/vk` (the verifying key file),
//!   `GET /v1/models/{id}/model` (the canonical model file, whose SHA-256 is its id),
//!   `GET /v1/models/{id}/transcript` (for keys from a ceremony, its transcript, which
//!   `sn2 infer --ptau` verifies), `GET /openapi.json`.
//! - With `[validator.ceremony]`: `GET /v1/models/{id}/ceremony`, the transcript of the
//!   model's ceremony as it stands here, and `POST` of the same with the caller's
//!   contributions added, which the validator verifies and carries into the keys while the
//!   ceremony is open (`sn2 ceremony join`; [`super::ceremony::Ceremonies::submit`]).
//! - Access: `Authorization: Bearer <key>` for a key whose SHA-256 is in `[api] keys`, each
//!   with its own rate; or a request signed with Epistula v2 by a hotkey of `[api] hotkeys`
//!   (for this validator, fresh, never replayed); requests with neither only when
//!   `[api] open`, sharing one rate.
//!   Over the rate: 429 with `Retry-After`. Inferences under way are bounded by
//!   `[api] max_queue`; past it: 503 with `Retry-After`. Memory never grows with callers.
//!
//! Whom an answer convinces: keys this validator made itself (a single-party setup)
//! convince whoever trusts it not to have kept the setup's secrets; keys finished from a
//! ceremony (`sn2 ceremony finish`) convince whoever has verified its transcript and trusts
//! one contributor. Every response says which in `provenance`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hyper::http::request::Parts;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::Validator;
use super::ceremony::{Ceremonies, SubmitError};
use crate::config::ApiConfig;
use crate::shutdown::Shutdown;
use crate::wire::WireError;
use crate::wire::http::{self as wire_http, Body, HttpResponse, json_response};

/// The OpenAPI document of this API, committed beside this file.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What a proof from this API convinces, as responses and `sn2 infer` say it.
pub const PROVENANCE: &str = "single-party setup: the verifying key was made by this validator, so the proof convinces whoever trusts this validator's setup";

/// What a proof checked against a model's verifying key convinces, as the API says it:
/// [`PROVENANCE`], or for keys finished from a ceremony, which ceremony.
pub fn provenance(record: Option<&crate::proof::keys::Provenance>) -> String {
    match record.and_then(|r| r.ceremony()) {
        Some(ceremony) => format!(
            "ceremony: the verifying key comes from {ceremony}, so the proof convinces whoever has verified that transcript (`sn2 ceremony verify`) and trusts one of its contributors"
        ),
        None => PROVENANCE.to_string(),
    }
}

/// The ceremony of a model: `/v1/models/{model}/ceremony`.
const CEREMONY_SUFFIX: &str = "/ceremony";

/// The files the API serves per model, under `/v1/models/{model}`.
#[derive(Debug, Clone, Copy)]
enum ModelFile {
    Model,
    VerifyingKey,
    Transcript,
}

impl ModelFile {
    const ALL: [ModelFile; 3] = [Self::Model, Self::VerifyingKey, Self::Transcript];

    fn suffix(self) -> &'static str {
        match self {
            Self::Model => "/model",
            Self::VerifyingKey => "/vk",
            Self::Transcript => "/transcript",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Model => "model file",
            Self::VerifyingKey => "verifying key",
            Self::Transcript => "ceremony transcript",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub open: bool,
    pub open_requests_per_minute: u32,
    /// (name, SHA-256 hex, requests per minute).
    pub keys: Vec<(String, String, u32)>,
    /// Hotkeys whose Epistula-signed requests are answered, and their rate.
    pub hotkeys: Vec<crate::keys::PublicKey>,
    pub hotkey_requests_per_minute: u32,
    pub max_queue: usize,
    pub max_body_bytes: usize,
    pub attempts: usize,
}

impl ApiOptions {
    pub fn from_config(config: &ApiConfig) -> Self {
        Self {
            open: config.open,
            open_requests_per_minute: config.open_requests_per_minute.get() as u32,
            keys: config
                .keys
                .iter()
                .map(|k| {
                    (
                        k.name.clone(),
                        k.sha256.clone(),
                        k.requests_per_minute.get() as u32,
                    )
                })
                .collect(),
            hotkeys: config
                .hotkeys
                .iter()
                .filter_map(|a| crate::keys::PublicKey::from_ss58(a).ok())
                .collect(),
            hotkey_requests_per_minute: config.hotkey_requests_per_minute.get() as u32,
            max_queue: config.max_queue.get(),
            max_body_bytes: config.max_body_bytes.get(),
            attempts: config.attempts.get(),
        }
    }
}

pub struct Api {
    validator: Arc<Validator>,
    options: ApiOptions,
    queue: Arc<Semaphore>,
    /// A token bucket per caller (an API key's name, a hotkey, or the open API).
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Epistula uuids seen, so that a signed request is answered once.
    replay: crate::wire::auth::ReplayCache,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// Takes one request from a bucket of `per_minute` (a minute's worth at most), or
    /// says how long until one is there.
    fn take(&mut self, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let rate = per_minute.max(1) as f64 / 60.0;
        let capacity = per_minute.max(1) as f64;
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferenceRequest {
    model: String,
    input: Vec<i64>,
}

fn error(status: u16, code: &str, message: impl Into<String>) -> HttpResponse {
    let body = serde_json::json!({ "error": { "code": code, "message": message.into() } });
    json_response(status, body.to_string().into_bytes(), &[])
}

fn retry_after(status: u16, code: &str, message: String, after: Duration) -> HttpResponse {
    let mut response = error(status, code, message);
    let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
    response
        .headers_mut()
        .insert("retry-after", hyper::header::HeaderValue::from(seconds));
    response
}

impl Api {
    pub fn new(validator: Arc<Validator>, options: ApiOptions) -> Arc<Self> {
        Arc::new(Self {
            validator,
            queue: Arc::new(Semaphore::new(options.max_queue.max(1))),
            options,
            buckets: Mutex::new(HashMap::new()),
            replay: Default::default(),
        })
    }

    /// Binds `address`; the returned future serves the API until `shutdown`.
    pub async fn listen(
        self: Arc<Self>,
        address: SocketAddr,
        shutdown: Shutdown,
    ) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for the user API on tcp/{address}"))?;
        tracing::info!(%address, "serving the user API");
        let metrics = self.validator.metrics.clone();
        Ok(wire_http::serve(
            listener,
            wire_http::Limits::new(self.options.max_body_bytes),
            Arc::new(move |reason, peer| metrics.refused(reason, &peer)),
            move |parts, body| {
                let me = self.clone();
                async move { me.handle(parts, body).await }
            },
            shutdown,
        ))
    }

    async fn handle(&self, parts: Parts, body: Body) -> HttpResponse {
        let path = parts.uri.path().to_string();
        let method = parts.method.clone();
        let ceremony = path
            .strip_prefix("/v1/models/")
            .and_then(|rest| rest.strip_suffix(CEREMONY_SUFFIX));
        let allowed = match path.as_str() {
            "/v1/inference" => "POST",
            "/openapi.json" | "/v1/models" => "GET",
            _ if ceremony.is_some() && method == hyper::Method::POST => "POST",
            _ if ceremony.is_some() => "GET",
            p if p.starts_with("/v1/models/")
                && ModelFile::ALL.iter().any(|file| p.ends_with(file.suffix())) =>
            {
                "GET"
            }
            _ => {
                return error(
                    404,
                    "not_found",
                    format!("no {path} here; see /openapi.json"),
                );
            }
        };
        if method.as_str() != allowed {
            let mut response = error(
                405,
                "method_not_allowed",
                format!("{path} takes {allowed}, not {method}"),
            );
            let allow = if ceremony.is_some() {
                "GET, POST"
            } else {
                allowed
            };
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static(allow),
            );
            return response;
        }
        if path == "/openapi.json" {
            return json_response(200, OPENAPI.as_bytes().to_vec(), &[]);
        }
        // A submission to a ceremony is a whole transcript: its limit is the transcript
        // held here with a few contributions more, whatever the API's limit.
        let submission_limit = ceremony
            .filter(|_| method == hyper::Method::POST)
            .and_then(|reference| self.ceremony_model(reference))
            .and_then(|(ceremonies, id)| ceremonies.submission_limit(&id));
        let body = match submission_limit {
            Some(limit) => body.with_limit(limit.max(self.options.max_body_bytes)),
            None => body,
        };
        let body = match self.admit(&parts, body).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        if let Some(reference) = ceremony {
            return self.ceremony(reference, method, body).await;
        }
        if path == "/v1/models" {
            let body = serde_json::json!({ "models": self.validator.model_summaries() });
            return json_response(200, body.to_string().into_bytes(), &[]);
        }
        if let Some(rest) = path.strip_prefix("/v1/models/") {
            return self.model_file(rest).await;
        }
        self.infer(&body).await
    }

    /// `<model>/model` (the canonical file), `<model>/vk` (the verifying key file) or
    /// `<model>/transcript` (the ceremony transcript of its keys).
    async fn model_file(&self, rest: &str) -> HttpResponse {
        let Some((reference, file)) = ModelFile::ALL
            .iter()
            .find_map(|file| Some((rest.strip_suffix(file.suffix())?, *file)))
        else {
            return error(404, "not_found", format!("no /v1/models/{rest} here"));
        };
        let Some(index) = self.validator.find_model(reference) else {
            return error(
                404,
                "unknown_model",
                format!("no model {reference}; see /v1/models"),
            );
        };
        let read = match file {
            ModelFile::Model => self.validator.canonical_model(index).await.map(Some),
            ModelFile::VerifyingKey => Ok(Some(self.validator.verifying_key(index))),
            ModelFile::Transcript => self.validator.transcript(index).await,
        };
        let what = file.what();
        match read {
            Ok(Some(bytes)) => wire_http::text_response(200, "application/octet-stream", bytes),
            Ok(None) => error(
                404,
                "no_ceremony",
                format!(
                    "model {reference}'s keys come from this validator's own setup, not from a ceremony: there is no transcript"
                ),
            ),
            Err(e) => match e.downcast_ref::<super::KeysChanged>() {
                Some(changed) => error(503, "keys_changing", changed.to_string()),
                None => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read a {what}");
                    error(500, "internal", format!("cannot read the {what}"))
                }
            },
        }
    }

    /// The ceremonies and the hex id of model `reference`, if this validator takes part
    /// in ceremonies and serves the model.
    fn ceremony_model(&self, reference: &str) -> Option<(Arc<Ceremonies>, String)> {
        let ceremonies = self.validator.ceremonies()?.clone();
        let index = self.validator.find_model(reference)?;
        Some((ceremonies, self.validator.models[index].stored.id.to_hex()))
    }

    /// `GET` or `POST /v1/models/{model}/ceremony`: the transcript of the model's ceremony
    /// as it stands here, or a user's contributions on top of it.
    async fn ceremony(&self, reference: &str, method: hyper::Method, body: Bytes) -> HttpResponse {
        if self.validator.find_model(reference).is_none() {
            return error(
                404,
                "unknown_model",
                format!("no model {reference}; see /v1/models"),
            );
        }
        let no_ceremony = || {
            error(
                404,
                "no_ceremony",
                format!(
                    "this validator runs no ceremony for model {reference} (`[validator.ceremony]` is not set): its keys are what /v1/models/{reference}/transcript says"
                ),
            )
        };
        let Some((ceremonies, id)) = self.ceremony_model(reference) else {
            return no_ceremony();
        };
        if method != hyper::Method::POST {
            return match ceremonies.held_transcript(&id) {
                Some(bytes) => wire_http::text_response(200, "application/octet-stream", bytes),
                None => no_ceremony(),
            };
        }
        let submitted = tokio::task::spawn_blocking(move || ceremonies.submit(&id, body)).await;
        match submitted {
            Ok(Ok(submitted)) => {
                json_response(200, serde_json::to_vec(&submitted).expect("JSON"), &[])
            }
            Ok(Err(refused)) => {
                let message = refused.to_string();
                match refused {
                    SubmitError::NoCeremony(_) => no_ceremony(),
                    SubmitError::Closed(_) => error(409, "ceremony_closed", message),
                    SubmitError::Moved { .. } => error(409, "ceremony_moved", message),
                    SubmitError::Added { .. } | SubmitError::Invalid(_) => {
                        error(400, "bad_transcript", message)
                    }
                    SubmitError::Busy => retry_after(503, "busy", message, Duration::from_secs(5)),
                    SubmitError::Save(_) => {
                        tracing::error!(error = %message, "cannot take a user's ceremony contribution");
                        error(500, "internal", "the transcript could not be saved")
                    }
                }
            }
            Err(panicked) => {
                tracing::error!(error = %panicked, "checking a user's ceremony contribution panicked");
                error(500, "internal", "the transcript could not be checked")
            }
        }
    }

    /// Lets a caller in, by its Epistula signature, its API key or as the open API, within
    /// its rate, and reads its body. A stranger costs no body read: keys and signers are
    /// checked on the headers first.
    async fn admit(&self, parts: &Parts, body: Body) -> Result<Bytes, Box<HttpResponse>> {
        let refuse =
            |status: u16, e: WireError| Box::new(error(status, e.code.as_str(), e.message));
        let signed = if parts.headers.contains_key("epistula-signed-by") {
            let me = self.validator.hotkey().ss58();
            let signed = wire_http::epistula_headers(parts)
                .check(&me)
                .map_err(|e| refuse(401, e))?;
            if !self.options.hotkeys.contains(&signed.signer) {
                return Err(Box::new(error(
                    403,
                    "unknown_hotkey",
                    format!("hotkey {} may not use this API", signed.signer),
                )));
            }
            Some(signed)
        } else {
            None
        };
        let (caller, rate) = match (&signed, self.caller_by_key(parts)?) {
            (Some(signed), _) => (
                format!("hotkey:{}", signed.signer),
                self.options.hotkey_requests_per_minute,
            ),
            (None, Some(named)) => named,
            (None, None) if self.options.open => {
                ("open".to_string(), self.options.open_requests_per_minute)
            }
            (None, None) => {
                return Err(Box::new(error(
                    401,
                    "key_required",
                    "send an API key (Authorization: Bearer <key>) or sign the request with Epistula",
                )));
            }
        };
        let body = body
            .read()
            .await
            .map_err(|e| refuse(e.code.http_status(), e))?;
        if let Some(signed) = &signed {
            signed.verify(&body).map_err(|e| refuse(401, e))?;
            self.replay
                .check_and_insert(&format!("uuid:{}", signed.uuid))
                .map_err(|e| refuse(409, e))?;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("not poisoned");
        let bucket = buckets.entry(caller).or_insert(Bucket {
            tokens: rate.max(1) as f64,
            updated: now,
        });
        bucket.take(rate, now).map_err(|after| {
            Box::new(retry_after(
                429,
                "rate_limited",
                format!("more than {rate} requests a minute"),
                after,
            ))
        })?;
        Ok(body)
    }

    /// The caller named by an API key, with its rate; none without a key.
    fn caller_by_key(&self, parts: &Parts) -> Result<Option<(String, u32)>, Box<HttpResponse>> {
        let Some(key) = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Ok(None);
        };
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        match self.options.keys.iter().find(|(_, h, _)| *h == hash) {
            Some((name, _, rate)) => Ok(Some((format!("key:{name}"), *rate))),
            None => Err(Box::new(error(
                401,
                "bad_key",
                "this API key is not known here",
            ))),
        }
    }

    async fn infer(&self, body: &[u8]) -> HttpResponse {
        let request: InferenceRequest = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => {
                return error(
                    400,
                    "malformed_request",
                    format!("not an inference request: {e}"),
                );
            }
        };
        let Some(index) = self.validator.find_model(&request.model) else {
            return error(
                404,
                "unknown_model",
                format!("no model {}; see /v1/models", request.model),
            );
        };
        let expected = self.validator.model_summaries()[index].input_len;
        if request.input.len() != expected {
            return error(
                400,
                "bad_input",
                format!(
                    "the input has {} values; the model takes {expected}",
                    request.input.len()
                ),
            );
        }
        let Ok(input) = request
            .input
            .iter()
            .map(|v| i8::try_from(*v))
            .collect::<Result<Vec<i8>, _>>()
        else {
            return error(
                400,
                "bad_input",
                "input values are the model's int8 inputs: -128 to 127",
            );
        };
        let Ok(_slot) = self.queue.clone().try_acquire_owned() else {
            return retry_after(
                503,
                "busy",
                format!(
                    "{} inferences are under way; try again shortly",
                    self.options.max_queue
                ),
                Duration::from_secs(1),
            );
        };
        match self
            .validator
            .infer(index, input, self.options.attempts)
            .await
        {
            Ok(inference) => {
                let body = serde_json::json!({
                    "model": inference.model.to_hex(),
                    "output": inference.answer.output,
                    "proof": inference.answer.proof,
                    "nonce": inference.answer.nonce,
                    "miner": inference.miner,
                    "verifying_key": inference.verifying_key,
                    "validator": self.validator.hotkey().ss58(),
                    "latency_ms": inference.latency_ms,
                    "provenance": inference.provenance,
                });
                json_response(200, body.to_string().into_bytes(), &[])
            }
            Err(reasons) => error(
                502,
                "no_verified_answer",
                format!(
                    "no miner gave an answer that verifies: {}",
                    reasons.join("; ")
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::keys::Provenance;

    #[test]
    fn answers_name_the_ceremony_that_made_the_key_and_otherwise_the_single_party_setup() {
        let record = |origin: &str, parties, transcript: Option<&str>| Provenance {
            origin: origin.into(),
            parties,
            verifying_key: "ab".repeat(32),
            made_by: "sn2".into(),
            transcript: transcript.map(str::to_string),
        };
        assert_eq!(provenance(None), PROVENANCE);
        assert_eq!(provenance(Some(&record("setup", 1, None))), PROVENANCE);
        let said = provenance(Some(&record("ceremony", 3, Some("cd12"))));
        assert!(
            said.contains("ceremony of 3 contributions (transcript cd12)"),
            "{said}"
        );
        // A record that claims a ceremony without naming its transcript is not believed.
        assert_eq!(provenance(Some(&record("ceremony", 3, None))), PROVENANCE);
    }
}
