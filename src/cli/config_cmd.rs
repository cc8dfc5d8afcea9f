//! `sn2 config check FILE`: the resolved configuration (secrets redacted), or the error
//! with file, line, column and key.

use std::path::PathBuf;

use clap::Subcommand;

use super::Outcome;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file; print the resolved configuration, or the error (exit code 1).
    Check {
        /// The config file.
        file: PathBuf,
    },
}

impl ConfigCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            ConfigCommand::Check { file } => match Config::load(&file) {
                Ok(config) => {
                    print!("{}", config.to_redacted_toml());
                    Ok(Outcome::Success)
                }
                Err(error) => {
                    eprintln!("sn2: error: invalid config: {error}");
                    Ok(Outcome::Failure)
                }
            },
        }
    }
}
