//! What each daemon needs of the configuration beyond valid values: the checks that span
//! keys (two listeners on one port, an address the chain can announce). The daemons run
//! them at start and `sn2 config check --role` runs the same ones, so a file that passes
//! the check does not fail the service (the NixOS module relies on it at build time).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use super::{ChainBackend, Config, ConfigError, error};

/// Which daemon a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Miner,
    Validator,
}

impl Role {
    pub fn binary_name(self) -> &'static str {
        match self {
            Role::Miner => "sn2-miner",
            Role::Validator => "sn2-validator",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Miner => "miner",
            Role::Validator => "validator",
        }
    }
}

/// One refusal: the key it is about and why.
struct Refusal {
    section: &'static str,
    key: &'static str,
    message: String,
}

impl Config {
    /// Refuses what `role`'s daemon would refuse at start; `text` and `origin` are the
    /// file's, for the place in the error.
    pub fn check_for(&self, role: Role, text: &str, origin: &Path) -> Result<(), ConfigError> {
        let refusal = match role {
            Role::Miner => self.miner_refusal(),
            Role::Validator => self.validator_refusal(),
        };
        match refusal {
            None => Ok(()),
            Some(refusal) => Err(error::refused(
                text,
                origin,
                &format!("{}.{}", refusal.section, refusal.key),
                value_span(text, refusal.section, refusal.key),
                refusal.message,
            )),
        }
    }

    fn miner_refusal(&self) -> Option<Refusal> {
        let listen = self.miner.listen.0;
        if self.chain.backend == ChainBackend::Subtensor
            && self.miner.external_ip.is_none()
            && listen.ip().is_unspecified()
        {
            return Some(Refusal {
                section: "miner",
                key: "listen",
                message: format!(
                    "the miner listens on {listen}, which validators cannot reach, and the subtensor backend announces the miner's address on chain: set `[miner] external_ip` to this host's public address"
                ),
            });
        }
        if self.metrics.enabled && share_a_port(self.metrics.listen.0, listen) {
            return Some(Refusal {
                section: "metrics",
                key: "listen",
                message: format!(
                    "`[metrics] listen` ({}) takes TCP port {} of `[miner] listen` ({listen}), where the miner serves HTTP: give the metrics another port, such as 9091",
                    self.metrics.listen,
                    listen.port()
                ),
            });
        }
        None
    }

    fn validator_refusal(&self) -> Option<Refusal> {
        if self.validator.key_server.is_some()
            && self.chain.backend == ChainBackend::Subtensor
            && !self.metrics.enabled
        {
            return Some(Refusal {
                section: "validator",
                key: "key_server",
                message: "`key_server` is set but `[metrics] enabled = false`: the key server is the metrics listener; enable it or remove `key_server`".into(),
            });
        }
        if self.validator.ceremony.ptau.is_some()
            && self.validator.key_server.is_none()
            && self.chain.backend == ChainBackend::Subtensor
        {
            return Some(Refusal {
                section: "validator.ceremony",
                key: "ptau",
                message: "`[validator.ceremony] ptau` is set but `key_server` is not: the other validators fetch this validator's transcripts from its announced key server; set `key_server`, or remove `ptau` to take no part".into(),
            });
        }
        if self.api.enabled
            && self.metrics.enabled
            && share_a_port(self.api.listen.0, self.metrics.listen.0)
        {
            return Some(Refusal {
                section: "api",
                key: "listen",
                message: format!(
                    "`[api] listen` ({}) takes TCP port {} of `[metrics] listen` ({}), where the validator serves its keys and metrics: give the API another port, such as 8092",
                    self.api.listen,
                    self.metrics.listen.0.port(),
                    self.metrics.listen
                ),
            });
        }
        None
    }
}

/// Whether two listeners would fight over a port: the same port on the same address, or
/// on any address where one of them listens on all of them.
fn share_a_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Where `key`'s value sits in `[section]` of `text`, when the file spells it plainly
/// (`key = value` under the section's header); the key's place is a convenience of the
/// message, so anything fancier is simply not located.
fn value_span(text: &str, section: &str, key: &str) -> Option<Range<usize>> {
    let mut current = "";
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = header.trim();
            continue;
        }
        if current != section {
            continue;
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            continue;
        };
        if name.trim() == key {
            let value = value.split('#').next().unwrap_or("").trim();
            let at = start + line.find(value)?;
            return Some(at..at + value.len());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_in_their_section() {
        let text = "[metrics]\nlisten = \"0.0.0.0:1\"\n[miner]\n  listen = \"0.0.0.0:2\" # here\n";
        let span = value_span(text, "miner", "listen").unwrap();
        assert_eq!(&text[span], "\"0.0.0.0:2\"");
        assert!(value_span(text, "miner", "external_ip").is_none());
        assert!(value_span(text, "api", "listen").is_none());
    }

    #[test]
    fn ports_are_shared_only_where_the_addresses_meet() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(share_a_port(at("0.0.0.0:9"), at("127.0.0.1:9")));
        assert!(share_a_port(at("10.0.0.1:9"), at("10.0.0.1:9")));
        assert!(!share_a_port(at("10.0.0.1:9"), at("10.0.0.2:9")));
        assert!(!share_a_port(at("0.0.0.0:9"), at("0.0.0.0:10")));
    }
}
