//! ed25519 keys and signatures in Nix's format, so that one key pair serves both sn2 release
//! manifests and Nix binary caches: a secret key file holds `NAME:BASE64(seed ‖ public)`
//! (what `nix-store --generate-binary-cache-key` writes), a public key is `NAME:BASE64(32
//! bytes)` (what `trusted-public-keys` lists), a signature `NAME:BASE64(64 bytes)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use zeroize::Zeroizing;

pub use nix_narinfo::{NixSignature, TrustedPublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a Nix key is NAME:BASE64; this one has no `:` after its name")]
    MissingName,
    #[error("a Nix key name must be non-empty and without `:` or whitespace, not {0:?}")]
    BadName(String),
    #[error("the key is not valid base64")]
    Base64,
    #[error("a Nix secret key is 64 bytes (seed and public key), this one has {0}")]
    SecretLength(usize),
    #[error("the secret key's public half does not belong to its seed: the file is damaged")]
    Mismatch,
    #[error("not a Nix public key ({0}); a trusted key is NAME:BASE64 of 32 bytes")]
    Public(String),
}

/// A signing key with its name, as in a Nix secret key file.
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        return Err(KeyError::BadName(name.to_string()));
    }
    Ok(())
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        check_name(name)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, seed.as_mut());
        Ok(Self {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Parses the text of a secret key file (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, encoded) = text.trim().split_once(':').ok_or(KeyError::MissingName)?;
        check_name(name)?;
        let bytes = Zeroizing::new(BASE64.decode(encoded).map_err(|_| KeyError::Base64)?);
        let pair: &[u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::SecretLength(bytes.len()))?;
        let key = SigningKey::from_keypair_bytes(pair).map_err(|_| KeyError::Mismatch)?;
        Ok(Self {
            name: name.to_string(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The secret key file's text. It is the secret: write it with mode 0600, never log it.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let pair = Zeroizing::new(self.key.to_keypair_bytes());
        Zeroizing::new(format!("{}:{}", self.name, BASE64.encode(pair.as_slice())))
    }

    /// The public half, as `trusted-public-keys` and `[update] trusted_keys` list it.
    pub fn public(&self) -> String {
        format!(
            "{}:{}",
            self.name,
            BASE64.encode(self.key.verifying_key().as_bytes())
        )
    }

    /// Signs `message`, as Nix signs a narinfo fingerprint.
    pub fn sign(&self, message: &[u8]) -> NixSignature {
        let signature = self.key.sign(message);
        NixSignature::from_bytes(self.name.clone(), &signature.to_bytes())
            .expect("the name was checked and a signature is 64 bytes")
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// Parses a trusted public key, `NAME:BASE64`.
pub fn parse_public(text: &str) -> Result<TrustedPublicKey, KeyError> {
    TrustedPublicKey::parse(text.trim()).map_err(|e| KeyError::Public(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_file_text() {
        let key = SecretKey::generate("sn2-test-1").unwrap();
        let again = SecretKey::parse(&key.to_file_text()).unwrap();
        assert_eq!(again.public(), key.public());
        let trusted = parse_public(&key.public()).unwrap();
        let signature = key.sign(b"message");
        assert!(
            signature
                .verify(b"message", std::slice::from_ref(&trusted))
                .unwrap()
        );
        assert!(!signature.verify(b"other", &[trusted]).unwrap());
    }

    #[test]
    fn damaged_keys_are_refused() {
        let key = SecretKey::generate("k").unwrap();
        let text = key.to_file_text();
        let (_, encoded) = text.split_once(':').unwrap();
        let mut bytes = BASE64.decode(encoded).unwrap();
        bytes[40] ^= 1;
        let damaged = format!("k:{}", BASE64.encode(&bytes));
        assert!(matches!(
            SecretKey::parse(&damaged),
            Err(KeyError::Mismatch)
        ));
        assert!(matches!(
            SecretKey::parse("k:AAAA"),
            Err(KeyError::SecretLength(3))
        ));
        assert!(matches!(
            SecretKey::parse("nocolon"),
            Err(KeyError::MissingName)
        ));
        assert!(matches!(
            SecretKey::generate("a b"),
            Err(KeyError::BadName(_))
        ));
        assert!(parse_public("k:AAAA").is_err());
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let key = SecretKey::generate("k").unwrap();
        let shown = format!("{key:?}");
        let secret = key.to_file_text();
        assert!(!shown.contains(secret.split_once(':').unwrap().1));
    }
}
