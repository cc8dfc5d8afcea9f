//! Value types of the configuration that refuse impossible values while the file is being
//! read, so that the error points at the offending line and names the key.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Bittensor network: a preset or a custom WebSocket endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Finney,
    Test,
    Local,
    Custom(String),
}

impl Network {
    /// The WebSocket endpoint of the network's RPC.
    pub fn endpoint(&self) -> &str {
        match self {
            Network::Finney => "wss://entrypoint-finney.opentensor.ai:443",
            Network::Test => "wss://test.finney.opentensor.ai:443",
            Network::Local => "ws://127.0.0.1:9944",
            Network::Custom(url) => url,
        }
    }

    /// Subnet 2's netuid on this network: 118 on the test network, 2 elsewhere.
    pub fn subnet2_netuid(&self) -> u16 {
        match self {
            Network::Test => 118,
            _ => 2,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "finney" => Ok(Network::Finney),
            "test" => Ok(Network::Test),
            "local" => Ok(Network::Local),
            url if url.starts_with("ws://") || url.starts_with("wss://") => {
                let host = url.split_once("://").map_or("", |(_, rest)| rest);
                if host.is_empty() || host.starts_with('/') {
                    Err(format!("`{url}` has no host"))
                } else {
                    Ok(Network::Custom(url.to_string()))
                }
            }
            other => Err(format!(
                "unknown network `{other}`: expected `finney`, `test`, `local` or a ws:// or wss:// URL"
            )),
        }
    }

    fn as_config_str(&self) -> &str {
        match self {
            Network::Finney => "finney",
            Network::Test => "test",
            Network::Local => "local",
            Network::Custom(url) => url,
        }
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Network::parse(&text).map_err(D::Error::custom)
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&redact_url(self.as_config_str()))
    }
}

/// A name used as one path component (wallet and hotkey names): not empty, no `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FileName(String);

impl FileName {
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            Err("must not be empty".into())
        } else if name.contains('/') || name == "." || name == ".." {
            Err(format!("`{name}` must be a plain name, without `/`"))
        } else {
            Ok(Self(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for FileName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FileName::new(&String::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

/// A socket address to listen on; port 0 (a random port) is refused, since peers and
/// the chain must know the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let addr: SocketAddr = text
            .parse()
            .map_err(|_| D::Error::custom(bad_address(&text)))?;
        if addr.port() == 0 {
            return Err(D::Error::custom(
                "port 0 is not allowed: choose a fixed port",
            ));
        }
        Ok(Self(addr))
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why `text` is not `IP:port`, naming the part that is wrong where it can tell.
fn bad_address(text: &str) -> String {
    let port = text.rsplit_once(':').map(|(_, port)| port);
    match port.map(str::parse::<u64>) {
        Some(Ok(port)) if port > u64::from(u16::MAX) => {
            format!("port {port} is out of range: a port is a number from 1 to 65535")
        }
        _ => format!("`{text}` is not an address with a port, like `0.0.0.0:8091` or `[::]:8091`"),
    }
}

/// A whole number of at least 1, read with messages that say so (`expected usize` says
/// nothing to an operator) and what the number counts.
struct AtLeastOne(&'static str);

impl serde::de::Visitor<'_> for AtLeastOne {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, at least 1", self.0)
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<u64, E> {
        if value == 0 {
            Err(E::custom(format!("must be at least 1: give {}", self.0)))
        } else {
            Ok(value)
        }
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<u64, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => Err(E::custom(format!(
                "{value} is negative: give {}, at least 1",
                self.0
            ))),
        }
    }
}

/// An address others reach this host at (`203.0.113.9:9090`): a fixed port, and an IP
/// that names a host, unlike `0.0.0.0`, which only a listener can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for PublicAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ListenAddr(addr) = ListenAddr::deserialize(deserializer)?;
        if addr.ip().is_unspecified() {
            return Err(D::Error::custom(format!(
                "`{addr}` is where a listener binds, not where others reach it: give this host's address as its peers see it, like `203.0.113.9:{}`",
                addr.port()
            )));
        }
        Ok(Self(addr))
    }
}

impl Serialize for PublicAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A whole number of seconds, at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(NonZeroU64);

impl Seconds {
    pub const fn new(seconds: u64) -> Self {
        match NonZeroU64::new(seconds) {
            Some(value) => Self(value),
            None => panic!("Seconds must be at least 1"),
        }
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0.get())
    }

    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserializer.deserialize_u64(AtLeastOne("a whole number of seconds"))?;
        Ok(Self(
            NonZeroU64::new(value).expect("checked by the visitor"),
        ))
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0.get())
    }
}

/// A count that must be at least 1 (concurrency, sample sizes, byte limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(NonZeroUsize);

impl Count {
    pub const fn new(count: usize) -> Self {
        match NonZeroUsize::new(count) {
            Some(value) => Self(value),
            None => panic!("Count must be at least 1"),
        }
    }

    pub fn get(self) -> usize {
        self.0.get()
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserializer.deserialize_u64(AtLeastOne("a whole number"))?;
        usize::try_from(value)
            .ok()
            .and_then(NonZeroUsize::new)
            .map(Self)
            .ok_or_else(|| D::Error::custom(format!("{value} is too large")))
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0.get() as u64)
    }
}

/// Hides the password of a URL's `user:password@` part, the one place a secret can
/// sit in an otherwise public configuration.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:<redacted>@{host}{tail}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_resolve() {
        assert_eq!(Network::parse("finney").unwrap().subnet2_netuid(), 2);
        assert_eq!(Network::parse("test").unwrap().subnet2_netuid(), 118);
        assert_eq!(
            Network::parse("local").unwrap().endpoint(),
            "ws://127.0.0.1:9944"
        );
        assert_eq!(
            Network::parse("wss://node.example:443").unwrap(),
            Network::Custom("wss://node.example:443".into())
        );
        assert!(Network::parse("mainnet").is_err());
        assert!(Network::parse("http://x").is_err());
        assert!(Network::parse("ws://").is_err());
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("wss://bob:hunter2@node.example/rpc"),
            "wss://bob:<redacted>@node.example/rpc"
        );
        assert_eq!(
            redact_url("wss://node.example/a@b"),
            "wss://node.example/a@b"
        );
        assert_eq!(redact_url("/etc/sn2/manifest"), "/etc/sn2/manifest");
    }

    #[test]
    fn file_names_are_single_components() {
        assert!(FileName::new("default").is_ok());
        assert!(FileName::new("").is_err());
        assert!(FileName::new("a/b").is_err());
        assert!(FileName::new("..").is_err());
    }
}
