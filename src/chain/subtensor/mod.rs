//! The `subtensor` backend: a subtensor node reached over WebSocket JSON-RPC with subxt's
//! dynamic API. Calls, storage entries and runtime APIs are looked up by name in the
//! metadata of the block being read, so runtime upgrades that move call indices or
//! types do not need a new sn2.
//!
//! The connection is made on first use and dropped on any transport error; the next
//! call reconnects (the metagraph sync's backoff paces the attempts).
//!
//! Weights: when the subnet's `CommitRevealWeightsEnabled` is off, `set_weights`; when it
//! is on, timelocked commits the chain reveals itself where the runtime has them, or else
//! `commit_weights` with a random salt and `reveal_weights` in the reveal epoch, which the
//! epoch schedule ([`crate::chain::epoch`]) times. See [`weights`].

pub mod calls;
pub mod metagraph;
pub mod signer;
pub mod weights;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use subxt::client::OnlineClientAtBlock;
use subxt::error::{DispatchError, TransactionEventsError};
use subxt::tx::TransactionStatus;
use subxt::{OnlineClient, SubstrateConfig};

use super::{Chain, ChainError, Metagraph, ServeOutcome, Weights, WeightsOutcome};
use crate::keys::Hotkey;
use calls::{AxonFields, PALLET};
use metagraph::{NeuronsApi, StorageNeuron};
use signer::HotkeySigner;

pub type AtBlock = OnlineClientAtBlock<SubstrateConfig>;

/// A live connection: subxt's client over the legacy backend, and the raw RPC client for
/// the few methods read directly (best block, pool nonce).
#[derive(Clone)]
struct Connection {
    client: OnlineClient<SubstrateConfig>,
    rpc: subxt::rpcs::RpcClient,
}

/// How long to wait for a connection, and for a transaction to land in a block.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct SubtensorOptions {
    /// ws:// or wss:// URL of a subtensor node.
    pub endpoint: String,
    pub netuid: u16,
    /// The fewest blocks between two weight submissions (the chain's own rate limit
    /// applies too).
    pub weights_interval_blocks: u64,
    /// Where commits waiting for their reveal are kept (the validator's state directory).
    pub state_dir: Option<PathBuf>,
    /// How weights go on chain.
    pub weights_mode: crate::config::WeightsMode,
}

pub struct SubtensorChain {
    options: SubtensorOptions,
    signer: Option<HotkeySigner>,
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// Serialises transactions, so two never race for the same nonce.
    submitting: tokio::sync::Mutex<()>,
}

impl SubtensorChain {
    /// A backend for `options`; `hotkey` signs transactions (none: read-only).
    pub fn new(options: SubtensorOptions, hotkey: Option<Arc<Hotkey>>) -> Self {
        Self {
            options,
            signer: hotkey.map(HotkeySigner),
            connection: tokio::sync::Mutex::new(None),
            submitting: tokio::sync::Mutex::new(()),
        }
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ChainError {
        ChainError::Unreachable {
            endpoint: crate::config::redact_url(&self.options.endpoint),
            reason: reason.to_string(),
        }
    }

    async fn connection(&self) -> Result<Connection, ChainError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        // The legacy JSON-RPC methods: every subtensor node serves them, where the newer
        // chainHead/transaction families are missing or partial on some.
        let endpoint = self.options.endpoint.clone();
        let connect = async move {
            let rpc = subxt::rpcs::RpcClient::from_insecure_url(&endpoint)
                .await
                .map_err(|e| e.to_string())?;
            let backend = subxt::backend::LegacyBackend::builder().build(rpc.clone());
            let client = OnlineClient::<SubstrateConfig>::from_backend(Arc::new(backend))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(Connection { client, rpc })
        };
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| self.unreachable("no connection within 15 s"))?
            .map_err(|e| self.unreachable(e))?;
        tracing::info!(endpoint = %crate::config::redact_url(&self.options.endpoint), "connected to subtensor");
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the connection after a transport error, so the next call reconnects.
    async fn disconnect(&self) {
        *self.connection.lock().await = None;
    }

    /// The chain at its best block. Not the finalised one: that lags a few blocks, and
    /// rate limits and nonces are about the chain as it will be extended.
    pub async fn at_latest(&self) -> Result<AtBlock, ChainError> {
        let connection = self.connection().await?;
        let best = connection
            .rpc
            .request::<Option<subxt::utils::H256>>("chain_getBlockHash", subxt::rpcs::rpc_params![])
            .await
            .map_err(|e| e.to_string());
        let at = match best {
            Ok(Some(hash)) => connection
                .client
                .at_block(hash)
                .await
                .map_err(|e| e.to_string()),
            Ok(None) => Err("the node has no best block".to_string()),
            Err(error) => Err(error),
        };
        match at {
            Ok(at) => Ok(at),
            Err(error) => {
                self.disconnect().await;
                Err(self.unreachable(error))
            }
        }
    }

    /// A storage read error: the connection is suspect unless the shape is wrong.
    async fn read_error(&self, what: &str, error: impl std::fmt::Display) -> ChainError {
        let text = error.to_string();
        if text.contains("decode") || text.contains("Decode") || text.contains("not found") {
            return ChainError::Shape(format!("{what}: {text}"));
        }
        self.disconnect().await;
        self.unreachable(format!("{what}: {text}"))
    }

    fn signer(&self) -> Result<&HotkeySigner, ChainError> {
        self.signer
            .as_ref()
            .ok_or_else(|| ChainError::Invalid("no hotkey to sign with".into()))
    }

    /// A storage value, decoded as `V`; an absent value reads as the entry's default.
    async fn fetch<K, V>(&self, at: &AtBlock, entry: &str, keys: K) -> Result<V, ChainError>
    where
        K: subxt::ext::frame_decode::storage::IntoEncodableValues
            + subxt::ext::frame_decode::storage::IntoDecodableValues,
        V: subxt::ext::scale_decode::DecodeAsType,
    {
        self.fetch_in(at, PALLET, entry, keys).await
    }

    /// [`Self::fetch`] from another pallet than subtensor's.
    async fn fetch_in<K, V>(
        &self,
        at: &AtBlock,
        pallet: &str,
        entry: &str,
        keys: K,
    ) -> Result<V, ChainError>
    where
        K: subxt::ext::frame_decode::storage::IntoEncodableValues
            + subxt::ext::frame_decode::storage::IntoDecodableValues,
        V: subxt::ext::scale_decode::DecodeAsType,
    {
        self.read_storage(at, pallet, entry, keys, true)
            .await?
            .ok_or_else(|| ChainError::Shape(format!("{pallet}::{entry} has no value")))
    }

    /// A storage value, decoded as `V`; `None` when absent.
    async fn try_fetch<K, V>(
        &self,
        at: &AtBlock,
        entry: &str,
        keys: K,
    ) -> Result<Option<V>, ChainError>
    where
        K: subxt::ext::frame_decode::storage::IntoEncodableValues
            + subxt::ext::frame_decode::storage::IntoDecodableValues,
        V: subxt::ext::scale_decode::DecodeAsType,
    {
        self.read_storage(at, PALLET, entry, keys, false).await
    }

    async fn read_storage<K, V>(
        &self,
        at: &AtBlock,
        pallet: &str,
        entry: &str,
        keys: K,
        with_default: bool,
    ) -> Result<Option<V>, ChainError>
    where
        K: subxt::ext::frame_decode::storage::IntoEncodableValues
            + subxt::ext::frame_decode::storage::IntoDecodableValues,
        V: subxt::ext::scale_decode::DecodeAsType,
    {
        let address = subxt::dynamic::storage::<K, V>(pallet, entry);
        let storage = at.storage();
        let value = if with_default {
            storage.fetch(address, keys).await.map(Some)
        } else {
            storage.try_fetch(address, keys).await
        };
        match value {
            Ok(Some(value)) => value
                .decode()
                .map(Some)
                .map_err(|e| ChainError::Shape(format!("{pallet}::{entry}: {e}"))),
            Ok(None) => Ok(None),
            Err(error) => Err(self.read_error(&format!("{pallet}::{entry}"), error).await),
        }
    }

    /// The uid of `hotkey` on the subnet, if registered.
    pub async fn uid_of(&self, at: &AtBlock, hotkey: &[u8; 32]) -> Result<Option<u16>, ChainError> {
        self.try_fetch(at, "Uids", (self.options.netuid, *hotkey))
            .await
    }

    async fn read_metagraph(&self, at: &AtBlock) -> Result<Metagraph, ChainError> {
        let netuid = self.options.netuid;
        let block = at.block_number();
        if let NeuronsApi::Typed { output_ty } = metagraph::neurons_api(at.metadata_ref()) {
            let args = subxt::ext::codec::Encode::encode(&netuid);
            let name = format!("{}_{}", metagraph::NEURONS_API, metagraph::NEURONS_LITE);
            let bytes = at
                .runtime_apis()
                .call_raw(&name, Some(&args))
                .await
                .map_err(|e| e.to_string());
            match bytes {
                Ok(bytes) => {
                    match metagraph::decode_neurons_lite(at.metadata_ref(), output_ty, &bytes) {
                        Ok(neurons) => return Ok(metagraph::metagraph(netuid, block, neurons)),
                        Err(error) => {
                            tracing::warn!(%error, "cannot decode the neurons; reading storage instead")
                        }
                    }
                }
                Err(error) => return Err(self.read_error(&name, error).await),
            }
        }
        self.read_metagraph_from_storage(at).await
    }

    async fn read_metagraph_from_storage(&self, at: &AtBlock) -> Result<Metagraph, ChainError> {
        let netuid = self.options.netuid;
        metagraph::check_storage(at.metadata_ref())?;
        if !self
            .fetch::<_, bool>(at, "NetworksAdded", (netuid,))
            .await?
        {
            return Err(ChainError::Invalid(format!(
                "there is no subnet {netuid} on this network: check `[chain] netuid`"
            )));
        }
        let keys_address = subxt::dynamic::storage::<(u16, u16), [u8; 32]>(PALLET, "Keys");
        let mut entries = match at.storage().iter(keys_address, (netuid,)).await {
            Ok(entries) => entries,
            Err(error) => return Err(self.read_error("SubtensorModule::Keys", error).await),
        };
        let mut registered = Vec::new();
        while let Some(entry) = entries.next().await {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => return Err(self.read_error("SubtensorModule::Keys", error).await),
            };
            let uid = entry
                .key()
                .ok()
                .and_then(|key| {
                    key.part(1)
                        .and_then(|part| part.decode_as::<u16>().ok().flatten())
                })
                .ok_or_else(|| {
                    ChainError::Shape("SubtensorModule::Keys: a key without a uid".into())
                })?;
            let hotkey: [u8; 32] = entry
                .value()
                .decode()
                .map_err(|e| ChainError::Shape(format!("SubtensorModule::Keys: {e}")))?;
            registered.push((uid, hotkey));
        }
        let permits: Vec<bool> = self.fetch(at, "ValidatorPermit", (netuid,)).await?;
        let last_update: Vec<u64> = self.fetch(at, "LastUpdate", (netuid,)).await?;
        let mut parts = Vec::with_capacity(registered.len());
        for (uid, hotkey) in registered {
            let axon: Option<metagraph::AxonInfo> =
                self.try_fetch(at, "Axons", (netuid, hotkey)).await?;
            let coldkey: Option<[u8; 32]> = self.try_fetch(at, "Owner", (hotkey,)).await?;
            let stake_rao: u64 = self.fetch(at, "TotalHotkeyAlpha", (hotkey, netuid)).await?;
            parts.push(StorageNeuron {
                uid,
                hotkey,
                coldkey,
                axon,
                stake_rao,
            });
        }
        let neurons = metagraph::from_storage(parts, &permits, &last_update);
        Ok(metagraph::metagraph(netuid, at.block_number(), neurons))
    }

    /// Signs `payload`, submits it and waits until it is in a block; the chain's
    /// refusals (from the pool or the dispatch) come back as [`ChainError::Refused`].
    pub async fn submit(&self, at: &AtBlock, payload: &calls::Payload) -> Result<u64, ChainError> {
        let signer = self.signer()?;
        let call = format!("{}::{}", payload.pallet_name(), payload.call_name());
        let _one_at_a_time = self.submitting.lock().await;
        // The pool's next nonce, which counts transactions not yet in a block.
        let nonce = self
            .connection()
            .await?
            .rpc
            .request::<u64>(
                "system_accountNextIndex",
                subxt::rpcs::rpc_params![signer.0.ss58()],
            )
            .await
            .map_err(|e| self.unreachable(format!("system_accountNextIndex: {e}")))?;
        let params = subxt::config::SubstrateExtrinsicParamsBuilder::<SubstrateConfig>::new()
            .nonce(nonce)
            .build();
        let mut progress = at
            .transactions()
            .sign_and_submit_then_watch(payload, signer, params)
            .await
            .map_err(|e| self.refusal(&call, e.to_string()))?;
        let watched = tokio::time::timeout(INCLUSION_TIMEOUT, async {
            while let Some(status) = progress.next().await {
                match status {
                    Ok(TransactionStatus::InBestBlock(in_block))
                    | Ok(TransactionStatus::InFinalizedBlock(in_block)) => {
                        let events = in_block.wait_for_success().await;
                        let block = match in_block.at().await {
                            Ok(at) => at.block_number(),
                            Err(_) => 0,
                        };
                        return match events {
                            Ok(_) => Ok(block),
                            Err(TransactionEventsError::ExtrinsicFailed(error)) => {
                                Err(self.dispatch_refusal(&call, &error))
                            }
                            Err(error) => Err(self.refusal(&call, error.to_string())),
                        };
                    }
                    Ok(TransactionStatus::Invalid { message })
                    | Ok(TransactionStatus::Dropped { message })
                    | Ok(TransactionStatus::Error { message }) => {
                        return Err(self.refusal(&call, message));
                    }
                    Ok(_) => continue,
                    Err(error) => return Err(self.unreachable(error)),
                }
            }
            Err(self.unreachable(format!("the node stopped reporting on {call}")))
        })
        .await
        .map_err(|_| {
            self.unreachable(format!(
                "{call} was not included within {} s",
                INCLUSION_TIMEOUT.as_secs()
            ))
        })?;
        if let Err(ChainError::Unreachable { .. }) = &watched {
            self.disconnect().await;
        }
        watched
    }

    /// A refusal before dispatch (the pool's validity checks), named where the code is
    /// one of subtensor's.
    fn refusal(&self, call: &str, message: String) -> ChainError {
        let name = custom_code(&message)
            .and_then(calls::custom_error_name)
            .map(str::to_string)
            .or_else(|| known_name_in(&message));
        let error = match &name {
            Some(name) if !message.contains(name.as_str()) => format!("{name} ({message})"),
            _ => message,
        };
        ChainError::Refused {
            call: call.to_string(),
            hint: name.and_then(|n| calls::hint(&n, self.options.netuid)),
            error,
        }
    }

    fn dispatch_refusal(&self, call: &str, error: &DispatchError) -> ChainError {
        let (name, text) = match error {
            DispatchError::Module(module) => match module.details() {
                Ok(details) => (
                    Some(details.variant.name.clone()),
                    format!("{}::{}", details.pallet.name(), details.variant.name),
                ),
                Err(_) => (None, module.to_string()),
            },
            other => (None, other.to_string()),
        };
        ChainError::Refused {
            call: call.to_string(),
            hint: name.and_then(|n| calls::hint(&n, self.options.netuid)),
            error: text,
        }
    }

    pub fn options(&self) -> &SubtensorOptions {
        &self.options
    }

    pub fn hotkey_account(&self) -> Option<[u8; 32]> {
        self.signer.as_ref().map(|s| s.account().0)
    }
}

/// The number in a pool refusal such as "Invalid Transaction: Custom error: 12".
fn custom_code(message: &str) -> Option<u8> {
    let rest = &message[message.to_ascii_lowercase().find("custom")?..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A known error name quoted in a refusal's text.
fn known_name_in(message: &str) -> Option<String> {
    [
        "HotKeyNotRegisteredInNetwork",
        "HotKeyNotRegisteredInSubNet",
        "ServingRateLimitExceeded",
        "SettingWeightsTooFast",
        "CommittingWeightsTooFast",
        "InvalidIpAddress",
        "InvalidPort",
    ]
    .into_iter()
    .find(|name| message.contains(name))
    .map(str::to_string)
}

#[async_trait::async_trait]
impl Chain for SubtensorChain {
    fn describe(&self) -> String {
        format!(
            "subtensor at {} (netuid {})",
            crate::config::redact_url(&self.options.endpoint),
            self.options.netuid
        )
    }

    fn netuid(&self) -> u16 {
        self.options.netuid
    }

    async fn metagraph(&self) -> Result<Metagraph, ChainError> {
        let at = self.at_latest().await?;
        self.read_metagraph(&at).await
    }

    async fn serve_axon(&self, address: SocketAddr) -> Result<ServeOutcome, ChainError> {
        let netuid = self.options.netuid;
        let hotkey = self.signer()?.account().0;
        let at = self.at_latest().await?;
        if self.uid_of(&at, &hotkey).await?.is_none() {
            return Err(ChainError::NotRegistered {
                hotkey: self.signer()?.0.ss58(),
                netuid,
            });
        }
        let wanted = AxonFields::new(address);
        let current: Option<metagraph::AxonInfo> =
            self.try_fetch(&at, "Axons", (netuid, hotkey)).await?;
        if let Some(current) = current {
            let held = AxonFields {
                version: current.version,
                ip: current.ip,
                port: current.port,
                ip_type: current.ip_type,
                protocol: current.protocol,
            };
            if held == wanted {
                return Ok(ServeOutcome::Unchanged);
            }
            let limit: u64 = self.fetch(&at, "ServingRateLimit", (netuid,)).await?;
            let next = current.block.saturating_add(limit);
            if current.block != 0 && at.block_number() < next {
                return Err(ChainError::Refused {
                    call: "SubtensorModule::serve_axon".into(),
                    error: format!(
                        "ServingRateLimitExceeded: the axon was updated at block {}; the next update is allowed at block {next}",
                        current.block
                    ),
                    hint: calls::hint("ServingRateLimitExceeded", netuid),
                });
            }
        }
        let block = self
            .submit(&at, &calls::serve_axon(netuid, &wanted))
            .await?;
        Ok(ServeOutcome::Served { block })
    }

    async fn set_weights(&self, weights: &Weights) -> Result<WeightsOutcome, ChainError> {
        weights::set_weights(self, weights).await
    }
}
