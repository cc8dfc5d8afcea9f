//! Config errors that point at the place in the file: path, line, column, key path, and
//! the offending line with a caret under it, in the style of compiler messages.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<InvalidConfig>),
}

/// A config file that was read but is not valid.
#[derive(Debug)]
pub struct InvalidConfig {
    pub path: PathBuf,
    /// 1-based line and column of the offending text, when it is known.
    pub position: Option<(usize, usize)>,
    /// The dotted key path (`miner.listen`), empty at the top level.
    pub key: String,
    pub message: String,
    snippet: Option<String>,
}

impl ConfigError {
    /// The invalid-file details, when the file was read but refused.
    pub fn invalid(&self) -> Option<&InvalidConfig> {
        match self {
            ConfigError::Invalid(invalid) => Some(invalid),
            ConfigError::Read { .. } => None,
        }
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

/// Deserialises `text`, tracking the key path so that the error can name it.
pub(super) fn deserialize<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|error| invalid(text, origin, String::new(), &error))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = key_path(error.path());
        invalid(text, origin, key, error.inner())
    })
}

fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Unknown => {}
        }
    }
    key
}

fn invalid(text: &str, origin: &Path, key: String, error: &toml::de::Error) -> ConfigError {
    let span = error.span();
    let position = span.as_ref().map(|span| line_and_column(text, span.start));
    let snippet = span.map(|span| snippet(text, span));
    // toml's messages end with a newline and sometimes repeat the position; keep the words.
    let message = error.message().trim().to_string();
    ConfigError::Invalid(Box::new(InvalidConfig {
        path: origin.to_path_buf(),
        position,
        key,
        message,
        snippet,
    }))
}

/// A refusal of a value read without error, for a reason that spans keys (two listeners on
/// one port); `span` is the value's place in `text` when it is there.
pub(super) fn refused(
    text: &str,
    origin: &Path,
    key: &str,
    span: Option<std::ops::Range<usize>>,
    message: String,
) -> ConfigError {
    ConfigError::Invalid(Box::new(InvalidConfig {
        path: origin.to_path_buf(),
        position: span.as_ref().map(|span| line_and_column(text, span.start)),
        key: key.to_string(),
        message,
        snippet: span.map(|span| snippet(text, span)),
    }))
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The line holding the start of `span`, with carets under the part of it in the span.
fn snippet(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = &text[line_start..line_end];
    let (line, column) = line_and_column(text, start);
    let width = text[start..span.end.clamp(start, line_end)]
        .chars()
        .count()
        .max(1);
    let gutter = " ".repeat(line.to_string().len());
    format!(
        "{gutter} |\n{line} | {line_text}\n{gutter} | {}{}",
        " ".repeat(column - 1),
        "^".repeat(width)
    )
}
