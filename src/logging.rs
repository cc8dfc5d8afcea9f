//! Log output of the daemons and the tool: tracing to standard error, as human-readable
//! text or one JSON object per line, filtered by the config's level (or `RUST_LOG`, which
//! wins when set, for a quick look without editing the config).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter `{filter}`: {reason}")]
    Filter { filter: String, reason: String },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(config: &LoggingConfig) -> Result<(), LoggingError> {
    let filter_text = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| config.level.clone());
    let filter = EnvFilter::builder()
        .parse(&filter_text)
        .map_err(|e| LoggingError::Filter {
            filter: filter_text.clone(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; plain text for journald, files and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInstalled)
}
