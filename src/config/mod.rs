//! The one TOML file that drives both daemons and the `sn2` tool.
//!
//! The schema is the structs below; `config.example.toml` documents every key, and a test
//! keeps the two in step. Every value is checked while the file is read, so a mistake is
//! reported with the file, line, column and key path; after reading, relative paths are
//! resolved against the file's directory and defaults that depend on other keys are filled
//! in, so what [`Config::load`] returns is the configuration the daemon runs with.

mod error;
mod roles;
mod values;

pub use error::ConfigError;
pub use roles::Role;
pub use values::{Count, FileName, ListenAddr, Network, PublicAddr, Seconds, redact_url};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "SN2_CONFIG";

/// Subnet 2's miner port (QUIC on UDP, HTTP on TCP).
pub const DEFAULT_MINER_PORT: u16 = 8091;
/// Subnet 2's Prometheus port.
pub const DEFAULT_METRICS_PORT: u16 = 9090;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub chain: ChainConfig,
    pub wallet: WalletConfig,
    pub miner: MinerConfig,
    pub validator: ValidatorConfig,
    pub models: ModelsConfig,
    pub metrics: MetricsConfig,
    pub api: ApiConfig,
    pub logging: LoggingConfig,
    pub update: UpdateConfig,
}

/// The validator's user API: verified inference for anyone it lets in.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub enabled: bool,
    pub listen: ListenAddr,
    /// Answer requests without an API key too, all of them sharing `open_requests_per_minute`.
    pub open: bool,
    pub open_requests_per_minute: Count,
    /// API keys, each stored as the SHA-256 of the key.
    pub keys: Vec<ApiKey>,
    /// Hotkeys (SS58) whose Epistula-signed requests are answered, each at
    /// `hotkey_requests_per_minute`.
    #[serde(deserialize_with = "deserialize_ss58s")]
    pub hotkeys: Vec<String>,
    pub hotkey_requests_per_minute: Count,
    /// Inferences under way at once; past it the answer is 503 with `Retry-After`.
    pub max_queue: Count,
    /// The largest request body.
    pub max_body_bytes: Count,
    /// Miners tried, best scoring first, before the answer is 502.
    pub attempts: Count,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// For logs and metrics.
    pub name: String,
    /// The SHA-256 of the key, in hex (`printf %s "$KEY" | sha256sum`).
    #[serde(deserialize_with = "deserialize_sha256")]
    pub sha256: String,
    pub requests_per_minute: Count,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: ListenAddr(std::net::SocketAddr::from(([127, 0, 0, 1], 8092))),
            open: false,
            open_requests_per_minute: Count::new(60),
            keys: Vec::new(),
            hotkeys: Vec::new(),
            hotkey_requests_per_minute: Count::new(60),
            max_queue: Count::new(8),
            max_body_bytes: Count::new(1024 * 1024),
            attempts: Count::new(3),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// Where the metagraph comes from and weights go.
    pub backend: ChainBackend,
    /// `finney`, `test`, `local` or a ws:// / wss:// URL.
    pub network: Network,
    /// Filled in on load when absent: Subnet 2's netuid on `network`.
    pub netuid: Option<u16>,
    /// Time between two metagraph reads.
    pub sync_interval_secs: Seconds,
    /// The metagraph of the `local` backend.
    #[serde(deserialize_with = "deserialize_neurons")]
    pub neurons: Vec<crate::chain::StaticNeuron>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainBackend {
    /// A subtensor node at `network`.
    Subtensor,
    /// The fixed metagraph of `neurons`, without a chain (devnets, private deployments).
    /// `static` is its former name.
    #[serde(alias = "static")]
    Local,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletConfig {
    pub path: PathBuf,
    pub name: FileName,
    pub hotkey: FileName,
    /// The hotkey file itself, in place of `path/name/hotkeys/hotkey`: a systemd credential
    /// or a mounted secret, so that the key need not live in a wallet directory.
    pub hotkey_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// QUIC listens on this UDP address and HTTP on the same TCP address.
    pub listen: ListenAddr,
    /// The address announced on chain, when it differs from `listen` (NAT, containers).
    pub external_ip: Option<IpAddr>,
    pub external_port: Option<std::num::NonZeroU16>,
    /// Proofs computed at once; further requests are answered "busy".
    pub max_concurrent_proofs: Count,
    /// The largest request body or frame accepted.
    pub max_request_bytes: Count,
    /// The largest proving key fetched from a validator.
    pub max_key_bytes: Count,
    /// How long one proving-key download may take, all of it; a request waiting on it is
    /// answered with an error then (its proving slot stays free meanwhile).
    pub key_fetch_timeout_secs: Seconds,
    /// Stake (TAO) a validator needs, besides its permit, to be given work.
    pub min_validator_stake: f64,
    /// The only model ids served (and fetched); empty: any model a permitted validator
    /// asks for, fetched from it by id.
    #[serde(deserialize_with = "deserialize_model_ids")]
    pub models: Vec<String>,
    /// The largest model file fetched from a validator.
    pub max_model_bytes: Count,
    /// Bytes of fetched models (with their proving keys) kept on disk; past it the least
    /// recently used are removed. Imported models do not count.
    pub model_cache_bytes: Count,
    /// Bytes of proving keys whose provers are kept in memory (a prover takes about its
    /// key's size); past it the least recently used is dropped and loaded again when asked
    /// for.
    pub prover_memory_bytes: Count,
    /// Powers of tau (snarkjs `.ptau`, prepared for phase 2): when set, proving keys are
    /// taken only from a ceremony transcript verified against them.
    pub ptau: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorConfig {
    /// Time between the starts of two query rounds.
    pub round_interval_secs: Seconds,
    /// How long a miner has to answer one request.
    pub request_timeout_secs: Seconds,
    /// Miners queried per round.
    pub sample_size: Count,
    /// Blocks between two weight submissions.
    pub weights_interval_blocks: Count,
    /// Where scores are kept across restarts.
    pub state_dir: PathBuf,
    /// Models to query, by name or id; empty: every model with keys in the models directory.
    pub models: Vec<String>,
    /// Where miners reach this validator's metrics port (`IP:port`) to fetch its proving
    /// keys. The daemon announces it on chain as this validator's axon; miners fetch keys
    /// from the address a validator announced and from nowhere else.
    pub key_server: Option<PublicAddr>,
    /// How weights go on chain; `auto` chooses from the chain (see [`WeightsMode`]).
    pub weights_mode: WeightsMode,
    /// Taking part in the models' phase-2 ceremonies with the subnet's other validators.
    pub ceremony: CeremonyConfig,
}

/// `[validator.ceremony]`: keys made with the other validators, sound if any one of them
/// was honest (see `validator::ceremony`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CeremonyConfig {
    /// The powers of tau (snarkjs `.ptau`, prepared for phase 2) every taking part starts
    /// from; unset: this validator takes no part and keeps the keys it has.
    pub ptau: Option<PathBuf>,
    /// Validators (distinct permit holders, this one included) whose signed contributions
    /// end a ceremony; its keys then replace the model's.
    pub quorum: Count,
    /// Time between two looks at the other validators' transcripts.
    pub poll_interval_secs: Seconds,
    /// How long a model's ceremony stays open to users' contributions after this
    /// validator starts it: its keys are installed no earlier. 0: as soon as the quorum
    /// is reached.
    pub open_secs: u64,
}

impl Default for CeremonyConfig {
    fn default() -> Self {
        Self {
            ptau: None,
            quorum: Count::new(3),
            poll_interval_secs: Seconds::new(60),
            open_secs: 0,
        }
    }
}

/// How a validator puts its weights on chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsMode {
    /// From the chain at each submission: `set_weights` when the subnet has commit-reveal
    /// off; timelocked commits when it is on and the runtime has them; hash commit-reveal
    /// otherwise.
    #[default]
    Auto,
    /// `set_weights` (refused by the chain while commit-reveal is on).
    SetWeights,
    /// `commit_timelocked_weights`: encrypted to a drand round, revealed by the chain.
    Timelocked,
    /// `commit_weights`, then `reveal_weights` by this validator in the reveal epoch.
    CommitReveal,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Imported models and their keys.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: ListenAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A tracing filter: a level (`info`) or directives (`info,sn2::wire=debug`).
    #[serde(deserialize_with = "deserialize_log_filter")]
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    Off,
    Notify,
    Profile,
    Nixos,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawUpdateConfig")]
pub struct UpdateConfig {
    pub mode: UpdateMode,
    /// An https:// URL or a file path of the signed release manifest.
    pub manifest: Option<String>,
    /// Nix-format public keys (`name:base64`) whose signatures are trusted.
    pub trusted_keys: Vec<String>,
    pub poll_interval_secs: Seconds,
    pub channel: String,
    /// Where the last accepted release is kept (and, in mode `nixos`, handed over).
    pub state_dir: PathBuf,
    /// The Nix profile that mode `profile` switches.
    pub profile: PathBuf,
}

/// [`UpdateConfig`] before the checks that span several of its keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpdateConfig {
    mode: UpdateMode,
    manifest: Option<String>,
    trusted_keys: Vec<String>,
    poll_interval_secs: Seconds,
    channel: String,
    state_dir: PathBuf,
    profile: PathBuf,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            backend: ChainBackend::Subtensor,
            network: Network::Finney,
            netuid: None,
            sync_interval_secs: Seconds::new(60),
            neurons: Vec::new(),
        }
    }
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("~/.bittensor/wallets"),
            name: FileName::new("default").expect("valid"),
            hotkey: FileName::new("default").expect("valid"),
            hotkey_file: None,
        }
    }
}

fn all_interfaces(port: u16) -> ListenAddr {
    ListenAddr(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            listen: all_interfaces(DEFAULT_MINER_PORT),
            external_ip: None,
            external_port: None,
            max_concurrent_proofs: Count::new(2),
            max_request_bytes: Count::new(4 * 1024 * 1024),
            max_key_bytes: Count::new(256 * 1024 * 1024),
            key_fetch_timeout_secs: Seconds::new(120),
            min_validator_stake: 0.0,
            models: Vec::new(),
            max_model_bytes: Count::new(64 * 1024 * 1024),
            model_cache_bytes: Count::new(4 * 1024 * 1024 * 1024),
            prover_memory_bytes: Count::new(4 * 1024 * 1024 * 1024),
            ptau: None,
        }
    }
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            round_interval_secs: Seconds::new(12),
            request_timeout_secs: Seconds::new(30),
            sample_size: Count::new(16),
            weights_interval_blocks: Count::new(100),
            state_dir: PathBuf::from("~/.sn2/validator"),
            models: Vec::new(),
            key_server: None,
            weights_mode: WeightsMode::Auto,
            ceremony: CeremonyConfig::default(),
        }
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("~/.sn2/models"),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: all_interfaces(DEFAULT_METRICS_PORT),
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for RawUpdateConfig {
    fn default() -> Self {
        Self {
            mode: UpdateMode::Off,
            manifest: None,
            trusted_keys: Vec::new(),
            poll_interval_secs: Seconds::new(300),
            channel: "stable".into(),
            state_dir: PathBuf::from("~/.sn2/update"),
            profile: PathBuf::from("/nix/var/nix/profiles/sn2"),
        }
    }
}

impl Default for UpdateConfig {
    fn default() -> Self {
        RawUpdateConfig::default()
            .try_into()
            .expect("the defaults are valid")
    }
}

impl TryFrom<RawUpdateConfig> for UpdateConfig {
    type Error = String;

    fn try_from(raw: RawUpdateConfig) -> Result<Self, String> {
        for key in &raw.trusted_keys {
            check_nix_public_key(key)?;
        }
        if raw.channel.is_empty() || !raw.channel.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("`channel` must be a non-empty word without spaces".into());
        }
        if let Some(manifest) = &raw.manifest
            && let Some((scheme, _)) = manifest.split_once("://")
            && scheme != "https"
        {
            return Err(format!(
                "`manifest` `{}` must be an https:// URL or a file path",
                redact_url(manifest)
            ));
        }
        if raw.mode != UpdateMode::Off {
            if raw.manifest.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "mode `{}` needs `manifest` (an https:// URL or a file path)",
                    raw.mode.as_str()
                ));
            }
            if raw.trusted_keys.is_empty() {
                return Err(format!(
                    "mode `{}` needs at least one key in `trusted_keys`",
                    raw.mode.as_str()
                ));
            }
        }
        Ok(Self {
            mode: raw.mode,
            manifest: raw.manifest,
            trusted_keys: raw.trusted_keys,
            poll_interval_secs: raw.poll_interval_secs,
            channel: raw.channel,
            state_dir: raw.state_dir,
            profile: raw.profile,
        })
    }
}

impl UpdateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateMode::Off => "off",
            UpdateMode::Notify => "notify",
            UpdateMode::Profile => "profile",
            UpdateMode::Nixos => "nixos",
        }
    }
}

/// Nix's public key format: `name:base64(32-byte ed25519 key)`.
fn check_nix_public_key(key: &str) -> Result<(), String> {
    use base64::Engine as _;
    let bad =
        || format!("trusted key `{key}` is not of Nix's form `name:base64` (32-byte ed25519)");
    let (name, encoded) = key.split_once(':').ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad())?;
    if name.is_empty() || bytes.len() != 32 {
        return Err(bad());
    }
    Ok(())
}

fn deserialize_ss58s<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    use serde::de::Error as _;
    let addresses = Vec::<String>::deserialize(deserializer)?;
    for address in &addresses {
        crate::keys::PublicKey::from_ss58(address).map_err(|e| {
            D::Error::custom(format!("`{address}` is not an SS58 hotkey address: {e}"))
        })?;
    }
    Ok(addresses)
}

fn deserialize_sha256<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    use serde::de::Error as _;
    let text = String::deserialize(deserializer)?;
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(D::Error::custom(format!(
            "`{text}` is not a SHA-256 in hex; store the key's hash: printf %s \"$KEY\" | sha256sum"
        )))
    }
}

fn deserialize_model_ids<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    use serde::de::Error as _;
    let ids = Vec::<String>::deserialize(deserializer)?;
    ids.into_iter()
        .map(|id| match crate::model::ModelId::from_hex(&id) {
            Some(parsed) => Ok(parsed.to_hex()),
            None => Err(D::Error::custom(format!(
                "`{id}` is not a model id (64 hex digits, as `sn2 model list` shows)"
            ))),
        })
        .collect()
}

/// The local metagraph's neurons, each as the daemons take it (an SS58 hotkey, a stake of
/// at least 0), with no uid twice.
fn deserialize_neurons<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<crate::chain::StaticNeuron>, D::Error> {
    use serde::de::Error as _;
    let neurons = Vec::<crate::chain::StaticNeuron>::deserialize(deserializer)?;
    let mut seen = std::collections::BTreeSet::new();
    for neuron in &neurons {
        neuron.to_neuron().map_err(D::Error::custom)?;
        if !seen.insert(neuron.uid) {
            return Err(D::Error::custom(format!(
                "uid {} is given to two neurons: each neuron needs its own uid",
                neuron.uid
            )));
        }
    }
    Ok(neurons)
}

/// The levels tracing knows; a bare word that is none of them would be taken as a target
/// name, which filters out every log line, so it is refused.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn deserialize_log_filter<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    use serde::de::Error as _;
    let text = String::deserialize(deserializer)?;
    for directive in text.split(',').map(str::trim) {
        if !directive.contains('=')
            && !LOG_LEVELS.contains(&directive.to_ascii_lowercase().as_str())
        {
            return Err(D::Error::custom(format!(
                "`{directive}` is not a log level: use one of {}, or directives such as `info,sn2::wire=debug`",
                LOG_LEVELS.join(", ")
            )));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(&text)
        .map_err(|e| D::Error::custom(format!("`{text}` is not a log filter: {e}")))?;
    Ok(text)
}

/// A config file's text, for [`Config::parse`] and [`Config::check_for`].
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Config {
    /// Reads, checks and resolves a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_text(path)?, path)
    }

    /// As [`Config::load`], and checks the file for one daemon: everything that daemon
    /// would refuse at start is refused here, which `sn2 config check --role` relies on.
    pub fn load_for(path: &Path, role: Role) -> Result<Self, ConfigError> {
        let text = read_text(path)?;
        let config = Self::parse(&text, path)?;
        config.check_for(role, &text, path)?;
        Ok(config)
    }

    /// Checks and resolves config text; `origin` names the file in errors, and relative
    /// paths in the text are taken relative to its directory.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = error::deserialize(text, origin)?;
        let base = origin.parent().unwrap_or(Path::new(""));
        config.resolve(base);
        Ok(config)
    }

    fn resolve(&mut self, base: &Path) {
        self.chain
            .netuid
            .get_or_insert(self.chain.network.subnet2_netuid());
        for path in [
            &mut self.wallet.path,
            &mut self.validator.state_dir,
            &mut self.models.dir,
            &mut self.update.state_dir,
            &mut self.update.profile,
        ]
        .into_iter()
        .chain(self.wallet.hotkey_file.as_mut())
        .chain(self.validator.ceremony.ptau.as_mut())
        .chain(self.miner.ptau.as_mut())
        {
            let expanded = crate::fs::expand_home(path);
            *path = if expanded.is_relative() {
                base.join(expanded)
            } else {
                expanded
            };
        }
    }

    /// The netuid in force (resolved on load).
    pub fn netuid(&self) -> u16 {
        self.chain
            .netuid
            .unwrap_or_else(|| self.chain.network.subnet2_netuid())
    }

    /// The configuration as TOML, with secrets (URL passwords) redacted: what
    /// `sn2 config check` prints.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if let Some(manifest) = &mut shown.update.manifest {
            *manifest = redact_url(manifest);
        }
        toml::to_string(&shown).expect("the config serialises to TOML")
    }

    /// The wallet named by the `[wallet]` section, with its `hotkey_file` if one is set.
    pub fn wallet_location(&self) -> crate::keys::WalletLocation {
        let location = crate::keys::WalletLocation::new(
            &self.wallet.path,
            self.wallet.name.as_str(),
            self.wallet.hotkey.as_str(),
        )
        .expect("wallet names were checked on load");
        match &self.wallet.hotkey_file {
            Some(file) => location.with_hotkey_file(file),
            None => location,
        }
    }
}

#[cfg(test)]
mod tests;
