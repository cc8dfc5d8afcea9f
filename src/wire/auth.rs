//! Request authentication: Epistula v2 headers for HTTP, the signed handshake for QUIC,
//! signed responses, the timestamp window and the replay cache.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{ErrorCode, WireError, now_ms};
use crate::keys::{Hotkey, PublicKey, Signature};

/// A request may be this old...
pub const MAX_AGE_MS: u64 = 30_000;
/// ...or this far ahead of the receiver's clock.
pub const MAX_AHEAD_MS: u64 = 10_000;
/// Nonces remembered at most; beyond, the oldest half is forgotten early (a flood of
/// requests cannot grow memory without bound).
const REPLAY_CAPACITY: usize = 100_000;

pub const HEADER_VERSION: &str = "epistula-version";
pub const HEADER_TIMESTAMP: &str = "epistula-timestamp";
pub const HEADER_UUID: &str = "epistula-uuid";
pub const HEADER_SIGNED_BY: &str = "epistula-signed-by";
pub const HEADER_SIGNED_FOR: &str = "epistula-signed-for";
pub const HEADER_SIGNATURE: &str = "epistula-request-signature";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a timestamp (unix ms) against the window.
pub fn check_timestamp(timestamp_ms: u64) -> Result<(), WireError> {
    let now = now_ms();
    if timestamp_ms + MAX_AGE_MS < now || timestamp_ms > now + MAX_AHEAD_MS {
        return Err(WireError::new(
            ErrorCode::StaleTimestamp,
            format!(
                "timestamp {timestamp_ms} is outside the window (now {now}, {} s back, {} s ahead)",
                MAX_AGE_MS / 1000,
                MAX_AHEAD_MS / 1000
            ),
        ));
    }
    Ok(())
}

/// Remembers nonces for a little longer than the timestamp window, so that any request
/// inside the window is accepted once.
#[derive(Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayCache {
    /// Records `nonce`; refuses it if it was seen within the window.
    pub fn check_and_insert(&self, nonce: &str) -> Result<(), WireError> {
        let now = now_ms();
        let mut seen = self.seen.lock().expect("not poisoned");
        if seen.len() >= REPLAY_CAPACITY {
            seen.retain(|_, &mut expiry| expiry > now);
            if seen.len() >= REPLAY_CAPACITY {
                let mut expiries: Vec<u64> = seen.values().copied().collect();
                expiries.sort_unstable();
                let cut = expiries[expiries.len() / 2];
                seen.retain(|_, &mut expiry| expiry > cut);
            }
        }
        match seen.get(nonce) {
            Some(&expiry) if expiry > now => Err(WireError::new(
                ErrorCode::ReplayedNonce,
                format!("nonce {nonce} was already used"),
            )),
            _ => {
                seen.insert(nonce.to_string(), now + MAX_AGE_MS + MAX_AHEAD_MS);
                Ok(())
            }
        }
    }
}

fn parse_signature(text: &str) -> Result<Signature, WireError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(digits)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(Signature)
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::BadSignature,
                "the signature is not 64 bytes of hex",
            )
        })
}

fn parse_signer(address: &str) -> Result<PublicKey, WireError> {
    PublicKey::from_ss58(address)
        .map_err(|e| WireError::new(ErrorCode::BadSignature, format!("signer `{address}`: {e}")))
}

/// Epistula's signed message: `sha256_hex(body).uuid.timestamp.signed_for`.
pub fn epistula_message(body: &[u8], uuid: &str, timestamp_ms: u64, signed_for: &str) -> String {
    format!("{}.{uuid}.{timestamp_ms}.{signed_for}", sha256_hex(body))
}

/// A random UUID v4 in its text form.
pub fn uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Epistula v2 headers signing `body` for `signed_for`.
pub fn epistula_headers(
    hotkey: &Hotkey,
    body: &[u8],
    signed_for: &str,
    uuid: &str,
) -> Vec<(&'static str, String)> {
    let timestamp = now_ms();
    let signature = hotkey.sign(epistula_message(body, uuid, timestamp, signed_for).as_bytes());
    vec![
        (HEADER_VERSION, "2".into()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_UUID, uuid.to_string()),
        (HEADER_SIGNED_BY, hotkey.ss58()),
        (HEADER_SIGNED_FOR, signed_for.to_string()),
        (HEADER_SIGNATURE, format!("0x{}", signature.to_hex())),
    ]
}

/// The Epistula headers of a request, as read from any HTTP library.
pub struct EpistulaHeaders<'a> {
    pub version: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub uuid: Option<&'a str>,
    pub signed_by: Option<&'a str>,
    pub signed_for: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// A request's Epistula headers, checked in all but the signature over the body: who
/// signed, for whom, when, under which uuid.
pub struct Signed {
    pub signer: PublicKey,
    pub uuid: String,
    timestamp: u64,
    signed_for: String,
    signature: Signature,
}

impl Signed {
    /// Checks the signature over `body`.
    pub fn verify(&self, body: &[u8]) -> Result<(), WireError> {
        self.signer
            .verify(
                epistula_message(body, &self.uuid, self.timestamp, &self.signed_for).as_bytes(),
                &self.signature,
            )
            .map_err(|_| {
                WireError::new(
                    ErrorCode::BadSignature,
                    "the request signature does not verify",
                )
            })
    }
}

impl EpistulaHeaders<'_> {
    /// Checks the signature over `body`, that the request is for `me`, and the timestamp;
    /// returns the signer and the uuid (for the replay cache and the response).
    pub fn verify(&self, body: &[u8], me: &str) -> Result<(PublicKey, String), WireError> {
        let signed = self.check(me)?;
        signed.verify(body)?;
        Ok((signed.signer, signed.uuid))
    }

    /// Checks what the headers say on their own: the version, the timestamp window, the
    /// uuid, that the request is for `me`, and the signer's address and signature's form.
    /// No signature is verified and no body read: a stranger's request costs next to
    /// nothing.
    pub fn check(&self, me: &str) -> Result<Signed, WireError> {
        let missing =
            |name: &str| WireError::new(ErrorCode::BadSignature, format!("missing header {name}"));
        if self.version.ok_or_else(|| missing(HEADER_VERSION))? != "2" {
            return Err(WireError::new(
                ErrorCode::BadSignature,
                "only Epistula version 2 is supported",
            ));
        }
        let timestamp: u64 = self
            .timestamp
            .ok_or_else(|| missing(HEADER_TIMESTAMP))?
            .parse()
            .map_err(|_| {
                WireError::new(
                    ErrorCode::StaleTimestamp,
                    "the timestamp is not a number of milliseconds",
                )
            })?;
        let uuid = self.uuid.ok_or_else(|| missing(HEADER_UUID))?;
        if uuid.is_empty() || uuid.len() > 64 {
            return Err(WireError::new(ErrorCode::MalformedRequest, "bad uuid"));
        }
        let signer = parse_signer(self.signed_by.ok_or_else(|| missing(HEADER_SIGNED_BY))?)?;
        let signed_for = self.signed_for.unwrap_or("");
        if signed_for != me {
            return Err(WireError::new(
                ErrorCode::BadSignature,
                format!("the request is signed for `{signed_for}`, not this miner ({me})"),
            ));
        }
        let signature = parse_signature(self.signature.ok_or_else(|| missing(HEADER_SIGNATURE))?)?;
        check_timestamp(timestamp)?;
        Ok(Signed {
            signer,
            uuid: uuid.to_string(),
            timestamp,
            signed_for: signed_for.to_string(),
            signature,
        })
    }
}

/// The QUIC handshake's signed message: binds the validator, a fresh nonce and time to the
/// miner's TLS certificate, so the session cannot be relayed to another connection.
pub fn handshake_message(
    validator: &str,
    timestamp_ms: u64,
    nonce: &str,
    cert_fingerprint: &str,
) -> String {
    format!("sn2-handshake:{validator}:{timestamp_ms}:{nonce}:{cert_fingerprint}")
}

pub fn handshake_response_message(
    validator: &str,
    miner: &str,
    timestamp_ms: u64,
    nonce: &str,
    cert_fingerprint: &str,
) -> String {
    format!("sn2-handshake-response:{validator}:{miner}:{timestamp_ms}:{nonce}:{cert_fingerprint}")
}

/// What a miner signs to answer a request: the request's digest and the response body.
pub fn response_message(request_digest: &str, body: &[u8]) -> String {
    format!("sn2-response:{request_digest}:{}", sha256_hex(body))
}

/// Checks a hex signature by `signer` over `message`.
pub fn verify_hex(signer: &PublicKey, message: &str, signature: &str) -> Result<(), WireError> {
    let signature = parse_signature(signature)?;
    signer
        .verify(message.as_bytes(), &signature)
        .map_err(|_| WireError::new(ErrorCode::BadSignature, "the signature does not verify"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(list: &'a [(&'static str, String)]) -> EpistulaHeaders<'a> {
        let get = |name: &str| {
            list.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        EpistulaHeaders {
            version: get(HEADER_VERSION),
            timestamp: get(HEADER_TIMESTAMP),
            uuid: get(HEADER_UUID),
            signed_by: get(HEADER_SIGNED_BY),
            signed_for: get(HEADER_SIGNED_FOR),
            signature: get(HEADER_SIGNATURE),
        }
    }

    #[test]
    fn epistula_round_trip_and_refusals() {
        let validator = Hotkey::from_seed(&[1; 32]);
        let miner = Hotkey::from_seed(&[2; 32]).ss58();
        let body = br#"{"op":"health"}"#;
        let list = epistula_headers(&validator, body, &miner, &uuid_v4());
        let (signer, _) = headers(&list).verify(body, &miner).unwrap();
        assert_eq!(signer, validator.public());
        assert_eq!(
            headers(&list).verify(b"other", &miner).unwrap_err().code,
            ErrorCode::BadSignature
        );
        let other = Hotkey::from_seed(&[3; 32]).ss58();
        assert_eq!(
            headers(&list).verify(body, &other).unwrap_err().code,
            ErrorCode::BadSignature
        );

        let mut stale = list.clone();
        let old = now_ms() - MAX_AGE_MS - 1000;
        let uuid = stale[2].1.clone();
        stale[1].1 = old.to_string();
        stale[5].1 = format!(
            "0x{}",
            validator
                .sign(epistula_message(body, &uuid, old, &miner).as_bytes())
                .to_hex()
        );
        assert_eq!(
            headers(&stale).verify(body, &miner).unwrap_err().code,
            ErrorCode::StaleTimestamp
        );
    }

    #[test]
    fn replayed_nonces_are_refused() {
        let cache = ReplayCache::default();
        cache.check_and_insert("a").unwrap();
        cache.check_and_insert("b").unwrap();
        assert_eq!(
            cache.check_and_insert("a").unwrap_err().code,
            ErrorCode::ReplayedNonce
        );
    }

    #[test]
    fn uuids_look_like_v4() {
        let uuid = uuid_v4();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }
}
