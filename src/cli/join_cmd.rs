//! `sn2 ceremony join`: a user's contribution to the ceremony a validator runs for a
//! model, through its user API (`/v1/models/{id}/ceremony`).
//!
//! The transcript is fetched, contributed to here (the secret never leaves this call of
//! [`Transcript::contribute`]) and submitted; the validator verifies it whole and holds
//! it, so its later contributions and its keys follow it. Nothing fetched needs trusting
//! here: a contribution on top of any transcript randomises δ all the same, and what the
//! user relies on is checked afterwards, by `sn2 infer --ptau --contribution`, against
//! the keys that verify their answers.

use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use super::api_client::ApiClient;
use super::ceremony_cmd::SignArgs;
use crate::proof::groth16::ceremony::Transcript;

/// How often a contribution is made and submitted again, on top of a transcript fetched
/// anew, when the validator moved on meanwhile (its own or a peer's contribution landed
/// first) or was busy changing its transcript.
const ATTEMPTS: usize = 5;
/// The wait before trying again after a busy answer (the API asks for 5 s).
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The validator's user API, e.g. http://127.0.0.1:8092.
    #[arg(long, value_name = "URL")]
    validator: String,
    /// Model id or name.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    signing: SignArgs,
    /// The environment variable that holds the API key, if the API needs one.
    #[arg(long, value_name = "VAR", default_value = "SN2_API_KEY")]
    api_key_env: String,
    /// Give up on any one call to the API after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

impl JoinArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let signer = self.signing.signer()?;
        let api = ApiClient::new(&self.validator, &self.api_key_env, self.timeout)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.join(&api, signer.as_ref()))
    }

    async fn join(
        &self,
        api: &ApiClient,
        signer: Option<&crate::keys::Hotkey>,
    ) -> anyhow::Result<Outcome> {
        let (id, entry) = api.find_model(&self.model).await?;
        // Known before any work: a validator lists the ceremonies users may join.
        if entry["ceremony_open"].is_null() {
            eprintln!(
                "sn2: the validator has no ceremony for model {} open to contributions: it runs none for it, or its keys are installed already (`ceremony` in its /v1/models says which keys it uses)",
                self.model
            );
            return Ok(Outcome::Failure);
        }
        let path = format!("/v1/models/{id}/ceremony");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fetched = api.call("GET", &path, None).await?;
            let mut transcript = Transcript::read(&fetched)
                .context("the validator's ceremony transcript cannot be read")?;
            anyhow::ensure!(
                transcript.model == id,
                "the validator served the transcript of model {}, not {id}",
                transcript.model
            );
            let started = Instant::now();
            let hash = hex::encode(transcript.contribute(signer));
            let took = started.elapsed().as_secs_f64();
            let body = ("application/octet-stream", transcript.to_bytes());
            let refused = match api.send("POST", &path, Some(body)).await? {
                Ok(answer) => {
                    let answer: serde_json::Value = serde_json::from_slice(&answer)
                        .context("the validator's answer is not JSON")?;
                    let added = answer["added"].as_array().into_iter().flatten();
                    anyhow::ensure!(
                        added.clone().any(|a| a.as_str() == Some(hash.as_str())),
                        "the validator took the transcript but does not list contribution {hash} as added: {answer}"
                    );
                    let by = signer.map_or("unsigned".to_string(), |key| {
                        format!("signed by {}", key.ss58())
                    });
                    println!(
                        "contribution taken into the ceremony of `{}` ({took:.1} s, {by}): the validator now holds transcript {} of {} contributions. Your contribution's hash:\n{hash}",
                        entry["name"].as_str().unwrap_or(self.model.as_str()),
                        answer["transcript"].as_str().unwrap_or("?"),
                        answer["contributions"],
                    );
                    println!(
                        "keep it: once the ceremony ends, `sn2 infer --validator {} --model {} --ptau FILE --contribution {hash}` checks that the keys verifying your answers come from it",
                        api.base(),
                        self.model
                    );
                    return Ok(Outcome::Success);
                }
                Err(refused) => refused,
            };
            let again = matches!(refused.code.as_str(), "ceremony_moved" | "busy");
            if !again || attempt == ATTEMPTS {
                eprintln!(
                    "sn2: the validator refused the contribution ({}): {}",
                    refused.status, refused.message
                );
                return Ok(Outcome::Failure);
            }
            if refused.code == "busy" {
                tokio::time::sleep(BUSY_WAIT).await;
            }
            eprintln!(
                "sn2: {}; contributing again on top of what it holds now",
                refused.message
            );
        }
    }
}
