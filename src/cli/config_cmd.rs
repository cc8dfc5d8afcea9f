//! `sn2 config check FILE`: the resolved configuration (secrets redacted), or the error
//! with file, line, column and key.

use std::path::PathBuf;

use clap::Subcommand;

use super::Outcome;
use crate::config::{Config, Role};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file; print the resolved configuration, or the error (exit code 1).
    ///
    /// With `--role`, the file is refused for whatever that daemon would refuse at start
    /// (two listeners on one port, a miner address the chain cannot announce). Without it,
    /// what one daemon alone would refuse is a warning naming that daemon.
    Check {
        /// The config file.
        file: PathBuf,
        /// The daemon the file is for.
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
}

impl ConfigCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            ConfigCommand::Check { file, role } => {
                // Read and parsed once; each role's check is then run on that.
                let checked = crate::config::read_text(&file).and_then(|text| {
                    let config = Config::parse(&text, &file)?;
                    if let Some(role) = role {
                        config.check_for(role, &text, &file)?;
                    }
                    Ok((config, text))
                });
                let (config, text) = match checked {
                    Ok(checked) => checked,
                    Err(error) => {
                        eprintln!("sn2: error: invalid config: {error}");
                        return Ok(Outcome::Failure);
                    }
                };
                if role.is_none() {
                    for role in [Role::Miner, Role::Validator] {
                        if let Err(error) = config.check_for(role, &text, &file) {
                            eprintln!(
                                "sn2: warning: {} would refuse this file: {error}\n(check a file for one daemon with --role {})",
                                role.binary_name(),
                                role.as_str()
                            );
                        }
                    }
                }
                print!("{}", config.to_redacted_toml());
                Ok(Outcome::Success)
            }
        }
    }
}
