//! `sn2 release keygen|sign|verify`: signed release manifests from the command line. The
//! keys are Nix's (`nix-store --generate-binary-cache-key` makes the same files), so one key
//! pair can sign both a binary cache and sn2's releases.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use super::{ConfigArg, Outcome};
use crate::update::manifest::{FlakeRef, ReleaseBody, format_time};
use crate::update::nixkey::{SecretKey, parse_public};
use crate::update::{self, Policy};

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Make a signing key: the secret key file (mode 0600) and, on standard output, the
    /// public key for `[update] trusted_keys` and Nix's `trusted-public-keys`.
    Keygen {
        /// The key's name, as signatures and trusted keys carry it (e.g. sn2-release-1).
        #[arg(long)]
        name: String,
        /// Where to write the secret key; an existing file is never replaced.
        #[arg(long, value_name = "FILE")]
        secret_key: PathBuf,
        /// Also write the public key to this file.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Write and sign a manifest for a built flake revision, or add a signature to one.
    Sign(SignArgs),
    /// Check a manifest as a node would; exit code 1 and the reason when it is refused.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key file (Nix format, NAME:BASE64).
    #[arg(long, value_name = "FILE")]
    secret_key: PathBuf,
    /// Add this key's signature to an existing manifest instead of writing a new one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["channel", "serial", "flake_url", "rev", "flake_nar_hash", "last_modified", "outputs"])]
    add_to: Option<PathBuf>,
    /// The release channel.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// The release's serial: above every serial published before on the channel.
    #[arg(long, required_unless_present = "add_to")]
    serial: Option<u64>,
    /// The flake's URL, as `nix build` takes it (e.g. github:sn2/sn2).
    #[arg(long, required_unless_present = "add_to")]
    flake_url: Option<String>,
    /// The flake's git revision (40 hex digits).
    #[arg(long, required_unless_present = "add_to")]
    rev: Option<String>,
    /// The flake source's NAR hash (`nix flake metadata --json` .locked.narHash).
    #[arg(long, required_unless_present = "add_to")]
    flake_nar_hash: Option<String>,
    /// The revision's time, seconds since the epoch (.locked.lastModified).
    #[arg(long, required_unless_present = "add_to")]
    last_modified: Option<u64>,
    /// A built output as SYSTEM=STORE-PATH (repeat per system); its NAR hash and size are
    /// computed here from the store path.
    #[arg(
        long = "output",
        value_name = "SYSTEM=PATH",
        required_unless_present = "add_to"
    )]
    outputs: Vec<String>,
    /// Days until the manifest expires.
    #[arg(long, default_value_t = 30)]
    expires_in_days: u64,
    /// Where to write the manifest [default: standard output].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest file.
    manifest: PathBuf,
    /// A trusted public key, NAME:BASE64 (repeat for several) [default: the config's
    /// `[update] trusted_keys`].
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// The channel this node follows [default: the config's, else stable].
    #[arg(long)]
    channel: Option<String>,
    /// The system whose output is checked [default: this machine's].
    #[arg(long)]
    system: Option<String>,
    /// Also check that this store path is the release's output: its NAR hash, computed
    /// here, must be the manifest's.
    #[arg(long, value_name = "PATH")]
    store_path: Option<PathBuf>,
    /// Refuse serials not above this one (the last release accepted).
    #[arg(long, value_name = "N")]
    last_serial: Option<u64>,
    /// On success print only the flake reference pinned to the release's revision (for
    /// `nixos-rebuild --override-input`).
    #[arg(long)]
    print_flake_ref: bool,
    #[command(flatten)]
    config: ConfigArg,
}

fn read_secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secret key {}", path.display()))?,
    );
    SecretKey::parse(&text).with_context(|| format!("{} is not a Nix secret key", path.display()))
}

fn write_output(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => crate::fs::write_atomic(path, text.as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

impl ReleaseCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            ReleaseCommand::Keygen {
                name,
                secret_key,
                public_key,
            } => {
                if secret_key.exists() {
                    bail!(
                        "{} already exists; a secret key is never replaced",
                        secret_key.display()
                    );
                }
                let key = SecretKey::generate(&name)?;
                crate::fs::write_atomic(&secret_key, key.to_file_text().as_bytes(), 0o600)
                    .with_context(|| format!("cannot write {}", secret_key.display()))?;
                if let Some(path) = public_key {
                    crate::fs::write_atomic(&path, key.public().as_bytes(), 0o644)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                println!("{}", key.public());
                Ok(Outcome::Success)
            }
            ReleaseCommand::Sign(args) => args.run(),
            ReleaseCommand::Verify(args) => args.run(),
        }
    }
}

impl SignArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        let key = read_secret_key(&self.secret_key)?;
        if let Some(existing) = &self.add_to {
            let bytes = std::fs::read(existing)
                .with_context(|| format!("cannot read {}", existing.display()))?;
            let text = update::add_signature(&bytes, &key)
                .with_context(|| format!("{} is not a manifest", existing.display()))?;
            write_output(self.out.as_deref().or(Some(existing)), &text)?;
            return Ok(Outcome::Success);
        }
        let mut outputs = Vec::new();
        for spec in &self.outputs {
            let (system, path) = spec
                .split_once('=')
                .with_context(|| format!("--output `{spec}` is not SYSTEM=STORE-PATH"))?;
            outputs.push(update::output_of(system, Path::new(path)).map_err(anyhow::Error::msg)?);
        }
        outputs.sort_by(|a, b| a.system.cmp(&b.system));
        let issued_at = update::unix_now();
        let flake_nar_hash = self.flake_nar_hash.expect("required by clap");
        let body = ReleaseBody {
            channel: self.channel,
            serial: self.serial.expect("required by clap"),
            issued_at,
            expires_at: issued_at + self.expires_in_days.max(1) * 86_400,
            flake: FlakeRef {
                url: self.flake_url.expect("required by clap"),
                rev: self.rev.expect("required by clap"),
                nar_hash: nix_derivation::NixHash::parse(&flake_nar_hash)
                    .with_context(|| format!("--flake-nar-hash `{flake_nar_hash}`"))?,
                last_modified: self.last_modified.expect("required by clap"),
            },
            outputs,
        };
        let text = update::sign(&body, &key).map_err(anyhow::Error::msg)?;
        write_output(self.out.as_deref(), &text)?;
        Ok(Outcome::Success)
    }
}

impl VerifyArgs {
    fn run(self) -> anyhow::Result<Outcome> {
        let config = self.config.load()?;
        let update_config = config.as_ref().map(|c| &c.update);
        let trusted_texts = if self.trusted_keys.is_empty() {
            update_config
                .map(|u| u.trusted_keys.clone())
                .unwrap_or_default()
        } else {
            self.trusted_keys.clone()
        };
        if trusted_texts.is_empty() {
            bail!(
                "no trusted key: pass --trusted-key NAME:BASE64 or --config with [update] trusted_keys"
            );
        }
        let trusted_keys = trusted_texts
            .iter()
            .map(|k| parse_public(k).with_context(|| format!("trusted key `{k}`")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let policy = Policy {
            trusted_keys,
            channel: self
                .channel
                .or_else(|| update_config.map(|u| u.channel.clone()))
                .unwrap_or_else(|| "stable".into()),
            system: self.system.unwrap_or_else(update::current_system),
        };
        let bytes = std::fs::read(&self.manifest)
            .with_context(|| format!("cannot read {}", self.manifest.display()))?;
        let outcome =
            update::verify(&bytes, &policy, update::unix_now(), None).and_then(|verified| {
                let serial = verified.manifest.body.serial;
                if let Some(last) = self.last_serial.filter(|last| serial <= *last) {
                    return Err(update::Refusal::NotNewer { serial, last });
                }
                if let Some(path) = &self.store_path {
                    update::check_store_path(&verified.output, path)?;
                }
                Ok(verified)
            });
        match outcome {
            Ok(verified) if self.print_flake_ref => {
                println!("{}", verified.manifest.body.flake.at_rev());
                Ok(Outcome::Success)
            }
            Ok(verified) => {
                let body = &verified.manifest.body;
                println!(
                    "ok: release {} of channel {}, {} at {}",
                    body.serial, body.channel, body.flake.url, body.flake.rev
                );
                println!(
                    "  issued {}, expires {}",
                    format_time(body.issued_at),
                    format_time(body.expires_at)
                );
                println!(
                    "  {}: {} ({}, {} bytes){}",
                    verified.output.system,
                    verified.output.store_path,
                    verified.output.nar_hash.to_nix_nixbase32_string(),
                    verified.output.nar_size,
                    if self.store_path.is_some() {
                        ", NAR hash checked"
                    } else {
                        ""
                    }
                );
                Ok(Outcome::Success)
            }
            Err(refusal) => {
                eprintln!("sn2: release refused: {refusal}");
                Ok(Outcome::Failure)
            }
        }
    }
}
