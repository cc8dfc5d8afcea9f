//! Bittensor hotkeys: sr25519 key pairs, SS58 addresses, signatures, and the wallet files
//! that hold them.
//!
//! Peers on Bittensor verify schnorrkel signatures made with the signing context
//! `"substrate"`; anything else (ed25519 keys, another context) is rejected by them, so this
//! module offers nothing else. Secret material never leaves this module except into a wallet
//! file, and the `Debug` form of a [`Hotkey`] shows only its address.

pub mod ss58;
mod wallet;

pub use wallet::{NewHotkey, WalletError, WalletLocation, parse_hotkey};

use std::fmt;

use schnorrkel::{ExpansionMode, MiniSecretKey};
use zeroize::Zeroizing;

/// The schnorrkel signing context of every Substrate/Bittensor signature.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";

/// The public half of a hotkey: what a peer knows and checks signatures against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

/// An sr25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid SS58 address: {0}")]
    Ss58(#[from] ss58::Ss58Error),
    #[error("not an sr25519 public key")]
    InvalidPublicKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("not a valid mnemonic phrase: {0}")]
    BadPhrase(String),
    #[error("not a valid sr25519 secret key")]
    InvalidSecretKey,
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        // Reject bytes that are not a point, so a bad key fails when it is read, not later.
        schnorrkel::PublicKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(Self(bytes))
    }

    pub fn from_ss58(address: &str) -> Result<Self, KeyError> {
        Self::from_bytes(ss58::decode(address)?)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_ss58(&self) -> String {
        ss58::encode(&self.0)
    }

    /// Checks an sr25519 signature over `message` made by this key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let key =
            schnorrkel::PublicKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidPublicKey)?;
        let signature =
            schnorrkel::Signature::from_bytes(&signature.0).map_err(|_| KeyError::BadSignature)?;
        key.verify_simple(SIGNING_CONTEXT, message, &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_ss58())
    }
}

impl Signature {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(0x{})", self.to_hex())
    }
}

/// An sr25519 key pair that signs for a Bittensor hotkey. Clones share nothing; each
/// zeroes its secret when dropped.
#[derive(Clone)]
pub struct Hotkey {
    keypair: schnorrkel::Keypair,
    public: PublicKey,
}

impl Hotkey {
    /// The key pair of a 32-byte seed (a schnorrkel mini secret), expanded the way Substrate
    /// and `bittensor-wallet` expand it.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mini = MiniSecretKey::from_bytes(seed).expect("a mini secret key is any 32 bytes");
        Self::from_keypair(mini.expand_to_keypair(ExpansionMode::Ed25519))
    }

    /// The key pair of an expanded 64-byte secret key (`key || nonce`), as wallet files
    /// store it under `privateKey`.
    pub fn from_expanded_secret(secret: &[u8; 64]) -> Result<Self, KeyError> {
        let secret =
            schnorrkel::SecretKey::from_bytes(secret).map_err(|_| KeyError::InvalidSecretKey)?;
        Ok(Self::from_keypair(secret.to_keypair()))
    }

    /// The key pair of a BIP-39 phrase, derived as Substrate does (the mini secret is
    /// PBKDF2-HMAC-SHA512 over the phrase's entropy, not over its words). Returns the seed
    /// too, since wallet files keep it.
    pub fn from_phrase(phrase: &str) -> Result<(Self, Zeroizing<[u8; 32]>), KeyError> {
        let mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, phrase)
            .map_err(|e| KeyError::BadPhrase(e.to_string()))?;
        let seed = seed_from_entropy(&Zeroizing::new(mnemonic.to_entropy()));
        Ok((Self::from_seed(&seed), seed))
    }

    fn from_keypair(keypair: schnorrkel::Keypair) -> Self {
        let public = PublicKey(keypair.public.to_bytes());
        Self { keypair, public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn ss58(&self) -> String {
        self.public.to_ss58()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        let context = schnorrkel::signing_context(SIGNING_CONTEXT);
        Signature(self.keypair.sign(context.bytes(message)).to_bytes())
    }

    /// The expanded secret key (`key || nonce`), for writing a wallet file.
    fn expanded_secret(&self) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.keypair.secret.to_bytes())
    }
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the public half: a Debug print of a hotkey must never leak its secret.
        write!(f, "Hotkey({})", self.public.to_ss58())
    }
}

/// Substrate's `mini_secret_from_entropy` with an empty password.
fn seed_from_entropy(entropy: &[u8]) -> Zeroizing<[u8; 32]> {
    const ROUNDS: u32 = 2048;
    let mut output = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(entropy, b"mnemonic", ROUNDS, output.as_mut());
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&output[..32]);
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    // Substrate's well-known development phrase and the address of its root key.
    const DEV_PHRASE: &str =
        "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
    const DEV_ROOT_SS58: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";

    #[test]
    fn phrase_derivation_matches_substrate() {
        let (key, _seed) = Hotkey::from_phrase(DEV_PHRASE).unwrap();
        assert_eq!(key.ss58(), DEV_ROOT_SS58);
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let key = Hotkey::from_seed(&[7u8; 32]);
        let signature = key.sign(b"message");
        key.public().verify(b"message", &signature).unwrap();
        assert_eq!(
            key.public().verify(b"messagf", &signature),
            Err(KeyError::BadSignature)
        );
        let other = Hotkey::from_seed(&[8u8; 32]);
        assert_eq!(
            other.public().verify(b"message", &signature),
            Err(KeyError::BadSignature)
        );
        let mut bent = signature;
        bent.0[3] ^= 1;
        assert!(key.public().verify(b"message", &bent).is_err());
    }

    #[test]
    fn expanded_secret_round_trips() {
        let key = Hotkey::from_seed(&[9u8; 32]);
        let again = Hotkey::from_expanded_secret(&key.expanded_secret()).unwrap();
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = Hotkey::from_seed(&[1u8; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, format!("Hotkey({})", key.ss58()));
    }

    #[test]
    fn bad_phrase_is_an_error() {
        assert!(matches!(
            Hotkey::from_phrase("not a phrase"),
            Err(KeyError::BadPhrase(_))
        ));
    }
}
