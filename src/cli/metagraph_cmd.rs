//! `sn2 metagraph`: a subnet's metagraph as a table (like `btcli subnet metagraph`) or
//! JSON, from the chain of the config or of `--network`/`--netuid`.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;

use super::{ConfigArg, Outcome};
use crate::chain::Metagraph;
use crate::chain::subtensor::{SubtensorChain, SubtensorOptions};
use crate::config::{ChainBackend, Config, Network};

#[derive(Debug, clap::Args)]
pub struct MetagraphArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The network: finney, test, local or a ws:// / wss:// URL (default: the config's,
    /// else finney).
    #[arg(long, value_parser = Network::parse)]
    network: Option<Network>,
    /// The subnet (default: the config's, else Subnet 2 on the network).
    #[arg(long)]
    netuid: Option<u16>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl MetagraphArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let config = self.config.load()?.unwrap_or_default();
        let metagraph = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(self.read(&config))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&metagraph)?);
        } else {
            print!("{}", table(&metagraph));
        }
        Ok(Outcome::Success)
    }

    async fn read(&self, config: &Config) -> anyhow::Result<Metagraph> {
        let chain: Arc<dyn crate::chain::Chain> =
            if self.network.is_none() && config.chain.backend == ChainBackend::Local {
                crate::daemon::chain(config, None, None)?
            } else {
                let network = self.network.clone().unwrap_or(config.chain.network.clone());
                let netuid = self
                    .netuid
                    .or(config.chain.netuid)
                    .unwrap_or(network.subnet2_netuid());
                Arc::new(SubtensorChain::new(
                    SubtensorOptions {
                        endpoint: network.endpoint().to_string(),
                        netuid,
                        weights_interval_blocks: 0,
                        state_dir: None,
                        weights_mode: Default::default(),
                    },
                    None,
                ))
            };
        chain
            .metagraph()
            .await
            .with_context(|| format!("cannot read the metagraph from {}", chain.describe()))
    }
}

/// One row per neuron: uid, stake, validator permit, blocks since its last update, axon,
/// hotkey and coldkey.
fn table(metagraph: &Metagraph) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Subnet {}: {} neurons at block {}\n",
        metagraph.netuid,
        metagraph.neurons.len(),
        metagraph.block
    );
    let _ = writeln!(
        out,
        "{:>5} {:>14} {:>3} {:>8} {:<22} {:<48} {:<48}",
        "UID", "STAKE", "VP", "UPDATED", "AXON", "HOTKEY", "COLDKEY"
    );
    for n in &metagraph.neurons {
        let updated = if n.last_update == 0 || metagraph.block == 0 {
            "-".to_string()
        } else {
            metagraph.block.saturating_sub(n.last_update).to_string()
        };
        let _ = writeln!(
            out,
            "{:>5} {:>14.4} {:>3} {:>8} {:<22} {:<48} {:<48}",
            n.uid,
            n.stake,
            if n.validator_permit { "*" } else { "" },
            updated,
            n.axon.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            n.hotkey.to_ss58(),
            n.coldkey.as_deref().unwrap_or("-"),
        );
    }
    out
}
