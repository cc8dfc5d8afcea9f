//! A client of a validator's user API, as `sn2 infer` and `sn2 ceremony join` call it:
//! its base URL, the caller's API key (from an environment variable, never the command
//! line) and a deadline for each call.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;

use crate::model::ModelId;
use crate::wire::http::HttpClient;

/// The largest answer read from the API (model files and transcripts included).
const MAX_RESPONSE: usize = 256 << 20;

pub struct ApiClient {
    base: String,
    key: Option<String>,
    client: HttpClient,
    /// Each call's deadline: a validator that stops answering must not hold the command.
    timeout: std::time::Duration,
}

/// An answer other than 200: its status, the API's error code and its message.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiClient {
    /// A client of the API at `url` (`http://`), with the API key in the environment
    /// variable `key_env` if it is set, giving up on a call after `timeout_secs`.
    pub fn new(url: &str, key_env: &str, timeout_secs: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            url.starts_with("http://"),
            "--validator takes an http:// URL (put TLS in front of the API with a reverse proxy, and reach it from here through a tunnel)"
        );
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            key: std::env::var(key_env).ok().filter(|k| !k.is_empty()),
            client: HttpClient::default(),
            timeout: std::time::Duration::from_secs(timeout_secs),
        })
    }

    /// Calls `method path` with a JSON body, if any; an error unless the answer is 200.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let body = body.map(|b| ("application/json", b));
        match self.send(method, path, body).await? {
            Ok(bytes) => Ok(bytes),
            Err(refused) => anyhow::bail!(
                "{method} {}{path}: {}: {}",
                self.base,
                refused.status,
                refused.message
            ),
        }
    }

    /// The model the validator lists under `reference` (its id or name): its id and its
    /// entry in `/v1/models`.
    pub async fn find_model(
        &self,
        reference: &str,
    ) -> anyhow::Result<(ModelId, serde_json::Value)> {
        let listing: serde_json::Value =
            serde_json::from_slice(&self.call("GET", "/v1/models", None).await?)
                .context("the validator's model list is not JSON")?;
        let entry = (listing["models"].as_array().into_iter().flatten())
            .find(|m| m["id"] == reference || m["name"] == reference)
            .with_context(|| format!("the validator serves no model {reference}"))?;
        let id = entry["id"]
            .as_str()
            .and_then(ModelId::from_hex)
            .context("the validator listed a model without a usable id")?;
        Ok((id, entry.clone()))
    }

    /// Calls `method path` with a body of the given content type, if any: the answer's
    /// body when it is 200, otherwise what the API said (the outer error is a call that
    /// got no answer).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Result<Bytes, Refused>> {
        let url = format!("{}{path}", self.base);
        let mut request = hyper::Request::builder().method(method).uri(&url);
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let body = match body {
            Some((content_type, body)) => {
                request = request.header("content-type", content_type);
                body
            }
            None => Vec::new(),
        };
        let request = request
            .body(Full::new(Bytes::from(body)))
            .with_context(|| format!("{url} is not a usable URL"))?;
        let (status, bytes) =
            tokio::time::timeout(self.timeout, self.client.raw(request, MAX_RESPONSE))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{url} did not answer within {} s (--timeout)",
                        self.timeout.as_secs()
                    )
                })?
                .with_context(|| format!("cannot reach {url}"))?;
        if status == 200 {
            return Ok(Ok(bytes));
        }
        let said = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
        let field = |name: &str| {
            said.as_ref()
                .and_then(|v| v["error"][name].as_str().map(str::to_string))
        };
        Ok(Err(Refused {
            status,
            code: field("code").unwrap_or_default(),
            message: field("message")
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
        }))
    }

    /// The API's base URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }
}
