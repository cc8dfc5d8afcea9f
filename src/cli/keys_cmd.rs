//! `sn2 keys new` and `sn2 keys show`: wallet hotkeys in Bittensor's own file format.
//!
//! The wallet is chosen by `--wallet-path`, `--wallet-name` and `--wallet-hotkey` (or
//! `BT_WALLET_PATH`, `BT_WALLET_NAME`, `BT_WALLET_HOTKEY`), else by the `[wallet]` section of
//! `--config`, else Bittensor's defaults.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{ConfigArg, Outcome};
use crate::config::{Config, WalletConfig};
use crate::keys::WalletLocation;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a hotkey; its recovery phrase is shown once, here, and nowhere else.
    New {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        config: ConfigArg,
        /// Replace an existing hotkey of the same name (its key is lost).
        #[arg(long)]
        overwrite: bool,
    },
    /// Print a hotkey's SS58 address (after checking its file).
    Show {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        config: ConfigArg,
        /// Print wallet, hotkey and coldkey addresses as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct WalletArgs {
    /// Directory of wallets [default: ~/.bittensor/wallets].
    #[arg(long, env = "BT_WALLET_PATH", value_name = "DIR")]
    wallet_path: Option<PathBuf>,
    /// Wallet (coldkey) name [default: default].
    #[arg(long, env = "BT_WALLET_NAME", value_name = "NAME")]
    wallet_name: Option<String>,
    /// Hotkey name [default: default].
    #[arg(long, env = "BT_WALLET_HOTKEY", value_name = "NAME")]
    wallet_hotkey: Option<String>,
}

impl WalletArgs {
    /// The wallet the flags name, falling back on the config's `[wallet]` section (and its
    /// `hotkey_file`, when no flag names a wallet).
    pub fn location(&self, config: Option<&Config>) -> anyhow::Result<WalletLocation> {
        let base = config.map(|c| c.wallet.clone()).unwrap_or_default();
        let WalletConfig {
            path,
            name,
            hotkey,
            hotkey_file,
        } = base;
        let flagged = self.wallet_path.is_some()
            || self.wallet_name.is_some()
            || self.wallet_hotkey.is_some();
        let location = WalletLocation::new(
            self.wallet_path.clone().unwrap_or(path),
            self.wallet_name.as_deref().unwrap_or(name.as_str()),
            self.wallet_hotkey.as_deref().unwrap_or(hotkey.as_str()),
        )?;
        Ok(match hotkey_file {
            Some(file) if !flagged => location.with_hotkey_file(&file),
            _ => location,
        })
    }
}

impl KeysCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            KeysCommand::New {
                wallet,
                config,
                overwrite,
            } => {
                let location = wallet.location(config.load()?.as_ref())?;
                let created = location.create_hotkey(overwrite)?;
                println!(
                    "Created hotkey `{}` of wallet `{}`",
                    location.hotkey, location.name
                );
                println!("  file:    {}", created.path.display());
                println!("  address: {}", created.hotkey.ss58());
                println!();
                println!(
                    "Recovery phrase (shown only this once; write it down and keep it offline):"
                );
                println!();
                println!("    {}", created.phrase.as_str());
                println!();
                Ok(Outcome::Success)
            }
            KeysCommand::Show {
                wallet,
                config,
                json,
            } => {
                let location = wallet.location(config.load()?.as_ref())?;
                let hotkey = location.load_hotkey()?;
                if json {
                    let coldkey = location.load_coldkey_public()?;
                    let shown = serde_json::json!({
                        "wallet": location.name,
                        "hotkey": location.hotkey,
                        "path": location.hotkey_file(),
                        "hotkey_ss58": hotkey.ss58(),
                        "coldkey_ss58": coldkey.map(|key| key.to_ss58()),
                    });
                    println!("{shown:#}");
                } else {
                    println!("{}", hotkey.ss58());
                }
                Ok(Outcome::Success)
            }
        }
    }
}
