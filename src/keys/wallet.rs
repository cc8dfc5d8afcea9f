//! Bittensor wallet files: `WALLET_PATH/NAME/hotkeys/HOTKEY` (the hotkey, unencrypted JSON),
//! `hotkeys/HOTKEYpub.txt` and `coldkeypub.txt` (public halves), as `bittensor-wallet` and
//! `btcli` write them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Hotkey, PublicKey};
use crate::fs::{create_private_dir, write_atomic};

/// `cryptoType` of sr25519 keys in wallet files.
const CRYPTO_TYPE_SR25519: u8 = 1;

/// Where a hotkey lives: the three names operators pass as `--wallet-path`, `--wallet-name`
/// and `--wallet-hotkey`, or a hotkey file given on its own (a systemd credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletLocation {
    pub path: PathBuf,
    pub name: String,
    pub hotkey: String,
    /// Read the hotkey from this file instead of `path/name/hotkeys/hotkey`.
    pub hotkey_file_override: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(
        "no hotkey file at {path} (create one with `sn2 keys new` or `btcli wallet new_hotkey`)"
    )]
    NotFound { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "{path} is open to its group or to other users (mode {mode:04o}); a hotkey file must be its owner's alone: chmod 600 {path}"
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error(
        "{path} is encrypted; the daemons need an unencrypted hotkey (bittensor-wallet writes one with use_password=False)"
    )]
    Encrypted { path: PathBuf },
    #[error("{path} is not a wallet key file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("{path} already exists; pass --overwrite to replace it (the old key is lost)")]
    Exists { path: PathBuf },
    #[error("wallet {what} name {name:?} is not a plain file name")]
    BadName { what: &'static str, name: String },
}

/// A hotkey freshly written to a wallet, with the phrase that recovers it. The phrase is
/// for showing once to the operator; it is zeroed when dropped.
pub struct NewHotkey {
    pub hotkey: Hotkey,
    pub phrase: Zeroizing<String>,
    pub path: PathBuf,
}

/// The JSON of a key file. Every field is optional on reading, because public files carry
/// only some of them; what a hotkey needs is checked after parsing.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_phrase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_seed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ss58_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crypto_type: Option<u8>,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.private_key.zeroize();
        self.secret_phrase.zeroize();
        self.secret_seed.zeroize();
    }
}

impl WalletLocation {
    pub fn new(path: impl Into<PathBuf>, name: &str, hotkey: &str) -> Result<Self, WalletError> {
        check_name("wallet", name)?;
        check_name("hotkey", hotkey)?;
        Ok(Self {
            path: crate::fs::expand_home(&path.into()),
            name: name.to_string(),
            hotkey: hotkey.to_string(),
            hotkey_file_override: None,
        })
    }

    /// The same wallet, with its hotkey read from `file`.
    pub fn with_hotkey_file(mut self, file: &Path) -> Self {
        self.hotkey_file_override = Some(crate::fs::expand_home(file));
        self
    }

    pub fn wallet_dir(&self) -> PathBuf {
        self.path.join(&self.name)
    }

    pub fn hotkey_file(&self) -> PathBuf {
        match &self.hotkey_file_override {
            Some(file) => file.clone(),
            None => self.wallet_dir().join("hotkeys").join(&self.hotkey),
        }
    }

    /// The public half beside the hotkey file, named as btcli names it (`HOTKEYpub.txt`).
    pub fn hotkey_pub_file(&self) -> PathBuf {
        let mut name = self.hotkey_file().into_os_string();
        name.push("pub.txt");
        PathBuf::from(name)
    }

    pub fn coldkeypub_file(&self) -> PathBuf {
        self.wallet_dir().join("coldkeypub.txt")
    }

    /// Loads the hotkey, refusing files that others can read, that are encrypted, or whose
    /// stored public key or address does not belong to the stored secret.
    pub fn load_hotkey(&self) -> Result<Hotkey, WalletError> {
        let path = self.hotkey_file();
        let metadata = fs::metadata(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => WalletError::NotFound { path: path.clone() },
            _ => WalletError::Read {
                path: path.clone(),
                source,
            },
        })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(WalletError::NotPrivate { path, mode });
        }
        let bytes = Zeroizing::new(fs::read(&path).map_err(|source| WalletError::Read {
            path: path.clone(),
            source,
        })?);
        parse_hotkey(&path, &bytes)
    }

    /// Reads the coldkey's public half, if the wallet has a `coldkeypub.txt`. Older wallets
    /// hold a bare SS58 address there, newer ones JSON.
    pub fn load_coldkey_public(&self) -> Result<Option<PublicKey>, WalletError> {
        let path = self.coldkeypub_file();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(WalletError::Read { path, source }),
        };
        let text = text.trim();
        if !text.starts_with('{') {
            return PublicKey::from_ss58(text)
                .map(Some)
                .map_err(|e| malformed(&path, e));
        }
        let file: KeyFile = serde_json::from_str(text).map_err(|e| malformed(&path, e))?;
        public_of(&path, &file).map(Some)
    }

    /// Generates a hotkey from a fresh 12-word phrase and writes it (mode 0600) with its
    /// public file, the way `bittensor-wallet` does. An existing hotkey is replaced only
    /// with `overwrite`.
    pub fn create_hotkey(&self, overwrite: bool) -> Result<NewHotkey, WalletError> {
        let path = self.hotkey_file();
        if path.exists() && !overwrite {
            return Err(WalletError::Exists { path });
        }
        let mut entropy = Zeroizing::new([0u8; 16]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, entropy.as_mut());
        let mnemonic = bip39::Mnemonic::from_entropy(entropy.as_ref())
            .expect("16 bytes of entropy make a 12-word phrase");
        let phrase = Zeroizing::new(mnemonic.to_string());
        let (hotkey, seed) = Hotkey::from_phrase(&phrase).expect("a generated phrase is valid");

        let public = public_fields(&hotkey);
        let mut secret = public_fields(&hotkey);
        secret.private_key = Some(format!(
            "0x{}",
            hex::encode(hotkey.expanded_secret().as_ref())
        ));
        secret.secret_phrase = Some(phrase.to_string());
        secret.secret_seed = Some(format!("0x{}", hex::encode(seed.as_ref())));
        let secret_json = Zeroizing::new(serde_json::to_vec(&secret).expect("JSON of strings"));
        let public_json = serde_json::to_vec(&public).expect("JSON of strings");

        let dir = path.parent().expect("hotkey file has a parent");
        create_private_dir(dir).map_err(|source| WalletError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write_atomic(&path, &secret_json, 0o600).map_err(|source| WalletError::Write {
            path: path.clone(),
            source,
        })?;
        let pub_path = self.hotkey_pub_file();
        write_atomic(&pub_path, &public_json, 0o644).map_err(|source| WalletError::Write {
            path: pub_path,
            source,
        })?;
        Ok(NewHotkey {
            hotkey,
            phrase,
            path,
        })
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), WalletError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if plain {
        Ok(())
    } else {
        Err(WalletError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

fn public_fields(hotkey: &Hotkey) -> KeyFile {
    let public_hex = format!("0x{}", hex::encode(hotkey.public().as_bytes()));
    KeyFile {
        account_id: Some(public_hex.clone()),
        public_key: Some(public_hex),
        ss58_address: Some(hotkey.ss58()),
        crypto_type: Some(CRYPTO_TYPE_SR25519),
        private_key: None,
        secret_phrase: None,
        secret_seed: None,
    }
}

fn malformed(path: &Path, reason: impl ToString) -> WalletError {
    WalletError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn mismatch(path: &Path, reason: impl ToString) -> WalletError {
    WalletError::Mismatch {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads a hotkey file's bytes (`path` names it in errors): unencrypted JSON as
/// `bittensor-wallet` writes it, whose stored public key and address must be its seed's.
pub fn parse_hotkey(path: &Path, bytes: &[u8]) -> Result<Hotkey, WalletError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed(path, "not UTF-8 text"))?;
    let text = text.trim_start();
    if text.starts_with("$NACL") || text.starts_with("$BT") || text.starts_with("$ANSIBLE") {
        return Err(WalletError::Encrypted {
            path: path.to_path_buf(),
        });
    }
    // serde_json's messages quote no input, so a secret cannot leak through them.
    let file: KeyFile = serde_json::from_str(text).map_err(|e| malformed(path, e))?;
    if let Some(crypto_type) = file.crypto_type
        && crypto_type != CRYPTO_TYPE_SR25519
    {
        return Err(mismatch(
            path,
            format!(
                "cryptoType {crypto_type} is not sr25519 ({CRYPTO_TYPE_SR25519}); Bittensor peers accept only sr25519 hotkeys"
            ),
        ));
    }
    let hotkey = match (&file.secret_seed, &file.private_key) {
        (Some(seed), _) => Hotkey::from_seed(&decode_hex::<32>(path, "secretSeed", seed)?),
        (None, Some(private)) => {
            let secret = Zeroizing::new(decode_hex::<64>(path, "privateKey", private)?);
            Hotkey::from_expanded_secret(&secret).map_err(|e| malformed(path, e))?
        }
        (None, None) => {
            return Err(malformed(
                path,
                "it has neither `secretSeed` nor `privateKey` (is it a public key file?)",
            ));
        }
    };
    if let (Some(_), Some(private)) = (&file.secret_seed, &file.private_key) {
        let secret = Zeroizing::new(decode_hex::<64>(path, "privateKey", private)?);
        let from_private = Hotkey::from_expanded_secret(&secret).map_err(|e| malformed(path, e))?;
        if from_private.public() != hotkey.public() {
            return Err(mismatch(
                path,
                "`privateKey` and `secretSeed` are different keys",
            ));
        }
    }
    let stored = public_of(path, &file)?;
    if stored != hotkey.public() {
        return Err(mismatch(
            path,
            format!(
                "the stored public key ({stored}) does not belong to the secret seed (which gives {})",
                hotkey.ss58()
            ),
        ));
    }
    Ok(hotkey)
}

/// The public key a key file states, checking that its fields agree with each other.
fn public_of(path: &Path, file: &KeyFile) -> Result<PublicKey, WalletError> {
    let mut stated: Vec<(&str, PublicKey)> = Vec::new();
    for (field, value) in [
        ("publicKey", &file.public_key),
        ("accountId", &file.account_id),
    ] {
        if let Some(value) = value {
            let bytes = decode_hex::<32>(path, field, value)?;
            let key = PublicKey::from_bytes(bytes).map_err(|e| malformed(path, e))?;
            stated.push((field, key));
        }
    }
    if let Some(address) = &file.ss58_address {
        let key = PublicKey::from_ss58(address).map_err(|e| malformed(path, e))?;
        stated.push(("ss58Address", key));
    }
    let Some(&(first_field, first)) = stated.first() else {
        return Err(malformed(
            path,
            "it states no public key (`publicKey`, `accountId` or `ss58Address`)",
        ));
    };
    for &(field, key) in &stated[1..] {
        if key != first {
            return Err(mismatch(
                path,
                format!("`{field}` ({key}) and `{first_field}` ({first}) are different keys"),
            ));
        }
    }
    Ok(first)
}

fn decode_hex<const N: usize>(
    path: &Path,
    field: &str,
    value: &str,
) -> Result<[u8; N], WalletError> {
    let digits = value.strip_prefix("0x").unwrap_or(value);
    let bytes = Zeroizing::new(
        hex::decode(digits).map_err(|_| malformed(path, format!("`{field}` is not hex")))?,
    );
    bytes.as_slice().try_into().map_err(|_| {
        malformed(
            path,
            format!("`{field}` has {} bytes, expected {N}", bytes.len()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hotkey file as bittensor-wallet 4.1 wrote it (a throwaway key made for this test).
    const BTWALLET_HOTKEY: &str = r#"{"privateKey":"0x786dce616d4aba27b0b00571054ebd6f72bf2207a342e740f431de1ff732e408a2bd1bf8352a873105566b8cfc1f7cc88daba442e4b33e8012d4d59ef8dd3aae","publicKey":"0xacaa3d0d6600c7ce6e444963b8606ccfa34c9bbce302bcd63d1b3d3fbb3f981d","ss58Address":"5Fy6fWP6vDpXEKZ1uLUWyQXA9t4WJaZ4oYvFNj4yFWjxRjf6","secretPhrase":"primary vibrant vapor cheap enhance gallery toilet zoo prepare image wonder filter","accountId":"0xacaa3d0d6600c7ce6e444963b8606ccfa34c9bbce302bcd63d1b3d3fbb3f981d","cryptoType":1,"secretSeed":"0x671a5be80ecfb6c8ef2a723025843d36aab459a3497bd1bbc7a28b566ce784fd"}"#;
    const BTWALLET_SS58: &str = "5Fy6fWP6vDpXEKZ1uLUWyQXA9t4WJaZ4oYvFNj4yFWjxRjf6";

    fn wallet_with(content: &str, mode: u32) -> (tempfile::TempDir, WalletLocation) {
        let dir = tempfile::tempdir().unwrap();
        let location = WalletLocation::new(dir.path(), "w", "h").unwrap();
        let file = location.hotkey_file();
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, content).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        (dir, location)
    }

    #[test]
    fn loads_a_bittensor_wallet_hotkey() {
        let (_dir, location) = wallet_with(BTWALLET_HOTKEY, 0o600);
        let hotkey = location.load_hotkey().unwrap();
        assert_eq!(hotkey.ss58(), BTWALLET_SS58);
        // The seed, the phrase and the expanded key in the file are one key.
        let (from_phrase, _) = Hotkey::from_phrase(
            "primary vibrant vapor cheap enhance gallery toilet zoo prepare image wonder filter",
        )
        .unwrap();
        assert_eq!(from_phrase.public(), hotkey.public());
        assert_eq!(
            hex::encode(hotkey.expanded_secret().as_ref()),
            "786dce616d4aba27b0b00571054ebd6f72bf2207a342e740f431de1ff732e408a2bd1bf8352a873105566b8cfc1f7cc88daba442e4b33e8012d4d59ef8dd3aae"
        );
    }

    #[test]
    fn loads_a_hotkey_file_given_on_its_own() {
        // As systemd hands a credential over: read-only for the service's user.
        let dir = tempfile::tempdir().unwrap();
        let credential = dir.path().join("hotkey");
        fs::write(&credential, BTWALLET_HOTKEY).unwrap();
        fs::set_permissions(&credential, fs::Permissions::from_mode(0o400)).unwrap();
        let location = WalletLocation::new(dir.path().join("absent"), "w", "h")
            .unwrap()
            .with_hotkey_file(&credential);
        assert_eq!(location.hotkey_file(), credential);
        assert_eq!(location.load_hotkey().unwrap().ss58(), BTWALLET_SS58);
        assert_eq!(location.hotkey_pub_file(), dir.path().join("hotkeypub.txt"));
    }

    #[test]
    fn refuses_a_file_its_group_or_others_can_open() {
        for mode in [0o644, 0o640, 0o604, 0o620, 0o610] {
            let (_dir, location) = wallet_with(BTWALLET_HOTKEY, mode);
            let err = location.load_hotkey().unwrap_err();
            assert!(
                matches!(err, WalletError::NotPrivate { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"));
        }
        for mode in [0o600, 0o400] {
            let (_dir, location) = wallet_with(BTWALLET_HOTKEY, mode);
            assert!(location.load_hotkey().is_ok(), "{mode:o}");
        }
    }

    #[test]
    fn refuses_public_key_that_does_not_match_seed() {
        let other =
            "0x".to_string() + &hex::encode(Hotkey::from_seed(&[5; 32]).public().as_bytes());
        let tampered = BTWALLET_HOTKEY.replace(
            "\"publicKey\":\"0xacaa3d0d6600c7ce6e444963b8606ccfa34c9bbce302bcd63d1b3d3fbb3f981d\"",
            &format!("\"publicKey\":\"{other}\""),
        );
        let (_dir, location) = wallet_with(&tampered, 0o600);
        let err = location.load_hotkey().unwrap_err();
        assert!(matches!(err, WalletError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn refuses_seed_that_does_not_match_public_key() {
        let tampered = BTWALLET_HOTKEY.replace(
            "0x671a5be80ecfb6c8ef2a723025843d36aab459a3497bd1bbc7a28b566ce784fd",
            "0x671a5be80ecfb6c8ef2a723025843d36aab459a3497bd1bbc7a28b566ce784fe",
        );
        let (_dir, location) = wallet_with(&tampered, 0o600);
        let err = location.load_hotkey().unwrap_err();
        assert!(matches!(err, WalletError::Mismatch { .. }), "{err}");
        // The message names keys, never the secret.
        assert!(!err.to_string().contains("671a5be8"));
    }

    #[test]
    fn explains_missing_encrypted_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let location = WalletLocation::new(dir.path(), "w", "h").unwrap();
        assert!(matches!(
            location.load_hotkey(),
            Err(WalletError::NotFound { .. })
        ));
        let (_d1, encrypted) = wallet_with("$NACLabcdef", 0o600);
        assert!(matches!(
            encrypted.load_hotkey(),
            Err(WalletError::Encrypted { .. })
        ));
        for bad in [
            "{",
            "[]",
            "{}",
            r#"{"secretSeed":"0x12"}"#,
            r#"{"secretSeed":"zz"}"#,
        ] {
            let (_d, location) = wallet_with(bad, 0o600);
            assert!(
                matches!(location.load_hotkey(), Err(WalletError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn created_hotkey_loads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let location = WalletLocation::new(dir.path(), "w", "h").unwrap();
        let created = location.create_hotkey(false).unwrap();
        assert_eq!(created.phrase.split(' ').count(), 12);
        let loaded = location.load_hotkey().unwrap();
        assert_eq!(loaded.public(), created.hotkey.public());
        let mode = fs::metadata(location.hotkey_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let public: serde_json::Value =
            serde_json::from_slice(&fs::read(location.hotkey_pub_file()).unwrap()).unwrap();
        assert_eq!(public["ss58Address"], created.hotkey.ss58());
        assert!(public.get("secretSeed").is_none());
        // A second `new` without overwrite keeps the first key.
        assert!(matches!(
            location.create_hotkey(false),
            Err(WalletError::Exists { .. })
        ));
        assert_eq!(
            location.load_hotkey().unwrap().public(),
            created.hotkey.public()
        );
    }

    #[test]
    fn reads_both_coldkeypub_forms() {
        let dir = tempfile::tempdir().unwrap();
        let location = WalletLocation::new(dir.path(), "w", "h").unwrap();
        assert!(location.load_coldkey_public().unwrap().is_none());
        fs::create_dir_all(location.wallet_dir()).unwrap();
        fs::write(location.coldkeypub_file(), BTWALLET_SS58).unwrap();
        assert_eq!(
            location.load_coldkey_public().unwrap().unwrap().to_ss58(),
            BTWALLET_SS58
        );
        let json = format!(
            r#"{{"publicKey":"0xacaa3d0d6600c7ce6e444963b8606ccfa34c9bbce302bcd63d1b3d3fbb3f981d","cryptoType":1,"ss58Address":"{BTWALLET_SS58}"}}"#
        );
        fs::write(location.coldkeypub_file(), json).unwrap();
        assert_eq!(
            location.load_coldkey_public().unwrap().unwrap().to_ss58(),
            BTWALLET_SS58
        );
    }

    #[test]
    fn refuses_names_that_escape_the_wallet() {
        for bad in ["", "..", "a/b"] {
            assert!(WalletLocation::new("/tmp", bad, "h").is_err());
            assert!(WalletLocation::new("/tmp", "w", bad).is_err());
        }
    }
}
