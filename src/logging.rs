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

/// An error with its causes, joined by `: ` as anyhow's `{:#}` does, but a cause whose
/// words its parent already ends with is said once (a typed error that shows its source,
/// such as "cannot read FILE: os error", under a context that repeats it).
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.ends_with(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let error = anyhow::Error::new(crate::model::ModelError::Io {
            path: "/models/x".into(),
            source: io,
        })
        .context("cannot open the model");
        assert_eq!(
            super::error_chain(&error),
            "cannot open the model: /models/x: No such file"
        );
    }
}
