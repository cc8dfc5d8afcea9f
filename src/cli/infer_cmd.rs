//! `sn2 infer`: a proved answer from a validator's user API, checked here.
//!
//! The model file and the verifying key come from the same validator, each checked against
//! its hash (the model's id; the key's SHA-256 as listed, or as pinned with `--vk-hash`);
//! the proof is then verified locally. A verifying key made by that validator convinces only
//! as far as its setup is trusted, and this command says so. For keys finished from a
//! ceremony, `--ptau` fetches the transcript and verifies it here, from the powers of tau
//! and the model, and checks that it made the served verifying key; with `--contribution`
//! naming the user's own contribution, the answer convinces without trusting anyone.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use sha2::{Digest, Sha256};

use super::Outcome;
use super::api_client::ApiClient;
use crate::keys::PublicKey;
use crate::model::{ModelId, codec};
use crate::proof::keys::{self, KeyKind};
use crate::proof::{self, Binding, Statement};

#[derive(Debug, Args)]
pub struct InferArgs {
    /// The validator's user API, e.g. http://127.0.0.1:8092.
    #[arg(long, value_name = "URL")]
    validator: String,
    /// Model id or name.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    input: super::proof_cmd::InputArgs,
    /// Accept only a verifying key with this SHA-256, instead of the one the validator lists.
    #[arg(long, value_name = "HEX")]
    vk_hash: Option<String>,
    /// The environment variable that holds the API key, if the API needs one (a key on the
    /// command line would show in the process list).
    #[arg(long, value_name = "VAR", default_value = "SN2_API_KEY")]
    api_key_env: String,
    /// The powers of tau the model's ceremony started from: the validator's transcript is
    /// then fetched and verified here, and must have made the verifying key.
    #[arg(long, value_name = "FILE")]
    ptau: Option<PathBuf>,
    /// The hash of a contribution the ceremony must hold (yours, as `sn2 ceremony
    /// contribute` printed it); may be given more than once.
    #[arg(long, value_name = "HASH", requires = "ptau")]
    contribution: Vec<String>,
    /// Give up on any one call to the API (a listing, a file, the inference) after this
    /// many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

impl InferArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.infer())
    }

    async fn infer(self) -> anyhow::Result<Outcome> {
        let api = ApiClient::new(&self.validator, &self.api_key_env, self.timeout)?;
        let (id, entry) = api.find_model(&self.model).await?;
        let listed_vk = entry["verifying_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pinned = self.vk_hash.as_ref().map(|h| h.to_ascii_lowercase());
        let expected_vk = pinned.clone().unwrap_or(listed_vk);

        let canonical = api
            .call("GET", &format!("/v1/models/{id}/model"), None)
            .await?;
        anyhow::ensure!(
            ModelId::of(&canonical) == id,
            "the validator served a model file whose SHA-256 is not the model's id {id}"
        );
        let model = codec::decode(&canonical).context("the validator's model file")?;
        let verifying = api
            .call("GET", &format!("/v1/models/{id}/vk"), None)
            .await?;
        let vk_hash = hex::encode(Sha256::digest(&verifying));
        if vk_hash != expected_vk {
            eprintln!(
                "sn2: the verifying key's SHA-256 is {vk_hash}, not the {} {expected_vk}",
                if pinned.is_some() { "pinned" } else { "listed" }
            );
            return Ok(Outcome::Failure);
        }

        let trust = match self
            .ceremony(&api, &id, &model, &verifying, &entry["ceremony"])
            .await
        {
            Ok(trust) => trust,
            Err(error) => {
                eprintln!("sn2: {error:#}");
                return Ok(Outcome::Failure);
            }
        };

        let input = self.input.read(&model)?;
        let request = serde_json::json!({ "model": id.to_hex(), "input": input });
        let answer: serde_json::Value = serde_json::from_slice(
            &api.call(
                "POST",
                "/v1/inference",
                Some(request.to_string().into_bytes()),
            )
            .await?,
        )
        .context("the validator's answer is not JSON")?;

        let verdict = (|| -> anyhow::Result<(Vec<i32>, String)> {
            let output: Vec<i32> = serde_json::from_value(answer["output"].clone())
                .context("the answer has no output")?;
            let miner = answer["miner"]
                .as_str()
                .context("the answer names no miner")?;
            let miner_key = PublicKey::from_ss58(miner).context("the answer's miner")?;
            let nonce: [u8; 32] = answer["nonce"]
                .as_str()
                .and_then(|n| hex::decode(n).ok())
                .and_then(|b| b.try_into().ok())
                .context("the answer has no 32-byte nonce")?;
            let proof = proof::file::decode_proof(answer["proof"].as_str().unwrap_or_default())?;
            let system = proof::default_backend();
            let payload = keys::decode(&verifying, KeyKind::Verifying, system.name(), &id)?;
            let verifier = system.verifier(&model, payload)?;
            let statement = Statement {
                input: input.clone(),
                output: output.clone(),
                binding: Binding::new(&id, &miner_key, &nonce),
            };
            verifier.verify(&statement, &proof)?;
            Ok((output, miner.to_string()))
        })();
        match verdict {
            Ok((output, miner)) => {
                println!("output {:?}", model.dequantize_output(&output));
                println!("proved by miner {miner}; verified here against verifying key {vk_hash}");
                eprintln!("note: {trust}");
                Ok(Outcome::Success)
            }
            Err(error) => {
                eprintln!("sn2: proof rejected: {error:#}");
                Ok(Outcome::Failure)
            }
        }
    }

    /// Whom the verifying key's proofs convince, as far as can be told here: with
    /// `--ptau`, the validator's ceremony transcript verified, shown to have made the
    /// served key, and holding each `--contribution`; an error when any of that fails.
    async fn ceremony(
        &self,
        api: &ApiClient,
        id: &ModelId,
        model: &crate::model::QuantModel,
        verifying_file: &[u8],
        listed: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let listed_transcript = listed["transcript"].as_str();
        let (Some(ptau_path), Some(listed_transcript)) = (&self.ptau, listed_transcript) else {
            return Ok(match listed_transcript {
                None if self.ptau.is_some() => anyhow::bail!(
                    "the validator's keys for this model come from its own setup, not from a ceremony: there is no transcript to check against --ptau"
                ),
                None => "that key was made by the validator, not here: the proof convinces as far as you trust its setup".into(),
                Some(transcript) => format!(
                    "the validator says that key comes from a ceremony of {} contributions (transcript {transcript}), not checked here: pass --ptau with the powers of tau it started from to check it",
                    listed["contributions"]
                ),
            });
        };
        let bytes = api
            .call("GET", &format!("/v1/models/{id}/transcript"), None)
            .await?;
        let ptau = super::ceremony_cmd::read_ptau(ptau_path)?;
        let model = model.clone();
        // An sn2 transcript or a snarkjs ceremony's zkey, checked whole either way.
        let checked = tokio::task::spawn_blocking({
            let id = *id;
            move || proof::groth16::check_ceremony(&bytes, &id, &model, &ptau)
        })
        .await?
        .context("the validator's ceremony transcript is refused")?;
        let hash = checked.hash;
        anyhow::ensure!(
            hash == listed_transcript,
            "the validator lists ceremony transcript {listed_transcript} but served transcript {hash}"
        );
        let system = proof::default_backend();
        let served = keys::decode(verifying_file, KeyKind::Verifying, system.name(), id)?;
        anyhow::ensure!(
            checked.keys.verifying == served,
            "the verifying key the validator served is not the one its ceremony transcript {hash} made"
        );
        let hashes = checked.contributions;
        anyhow::ensure!(
            checked.parties > 0,
            "the validator's ceremony transcript {hash} has no contribution: anyone can forge proofs its key accepts"
        );
        for (i, (hash, signer)) in hashes.iter().zip(&checked.signers).enumerate() {
            match signer {
                Some(key) => eprintln!("  contribution {:>3}  {hash}  signed by {key}", i + 1),
                None => eprintln!("  contribution {:>3}  {hash}", i + 1),
            }
        }
        for mine in &self.contribution {
            anyhow::ensure!(
                hashes.contains(&mine.to_ascii_lowercase()),
                "contribution {mine} is not in the ceremony that made the verifying key (its contributions are listed above)"
            );
        }
        let whom = if self.contribution.is_empty() {
            "the proof convinces you if you trust one of its contributors"
        } else {
            "it holds your contribution, so the proof convinces you without trusting anyone else"
        };
        Ok(format!(
            "the verifying key comes from a ceremony of {} contributions (transcript {hash}), verified here from {}: {whom}",
            hashes.len(),
            ptau_path.display()
        ))
    }
}
