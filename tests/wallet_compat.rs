//! Hotkeys are compatible with the real Bittensor wallet: `bittensor-wallet` (PyPI) and sn2
//! read each other's files, agree on addresses, and verify each other's signatures.

mod common;

use std::process::Command;

use sn2::keys::{PublicKey, Signature, WalletLocation};

/// Runs tests/py/btwallet.py with the real package.
fn btwallet(args: &[&str]) -> serde_json::Value {
    common::python_json("btwallet.py", args)
}

fn text(value: &serde_json::Value) -> &str {
    value.as_str().expect("a string")
}

#[test]
fn a_bittensor_wallet_hotkey_loads_and_signs_for_python() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let created = btwallet(&["create", path, "miner", "hot"]);

    let location = WalletLocation::new(path, "miner", "hot").unwrap();
    let hotkey = location.load_hotkey().unwrap();
    assert_eq!(hotkey.ss58(), text(&created["hotkey"]));
    let coldkey = location.load_coldkey_public().unwrap().unwrap();
    assert_eq!(coldkey.to_ss58(), text(&created["coldkey"]));

    let message = b"sn2 compatibility check";
    let signature = hotkey.sign(message);
    let checked = btwallet(&[
        "verify",
        &hotkey.ss58(),
        &hex::encode(message),
        &signature.to_hex(),
    ]);
    assert_eq!(checked["valid"], true);

    let checked = btwallet(&[
        "verify",
        &hotkey.ss58(),
        &hex::encode(b"another message"),
        &signature.to_hex(),
    ]);
    assert_eq!(checked["valid"], false);
}

#[test]
fn python_signatures_verify_in_sn2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let created = btwallet(&["create", path, "validator", "hot"]);
    let message = b"signed by bittensor-wallet";
    let signed = btwallet(&["sign", path, "validator", "hot", &hex::encode(message)]);
    let signature: [u8; 64] = hex::decode(text(&signed["signature"]))
        .unwrap()
        .try_into()
        .unwrap();
    let public = PublicKey::from_ss58(text(&created["hotkey"])).unwrap();
    public.verify(message, &Signature(signature)).unwrap();
    assert!(public.verify(b"tampered", &Signature(signature)).is_err());
}

#[test]
fn a_hotkey_from_sn2_keys_new_loads_in_bittensor_wallet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args(["keys", "new", "--wallet-path", path])
        .args(["--wallet-name", "op", "--wallet-hotkey", "m1"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sn2_address = WalletLocation::new(path, "op", "m1")
        .unwrap()
        .load_hotkey()
        .unwrap()
        .ss58();

    let loaded = btwallet(&["load", path, "op", "m1"]);
    assert_eq!(text(&loaded["hotkey"]), sn2_address);
    assert_eq!(
        text(&loaded["from_phrase"]),
        sn2_address,
        "phrase derivation agrees"
    );

    let message = b"signed by an sn2 key, in python";
    let signed = btwallet(&["sign", path, "op", "m1", &hex::encode(message)]);
    let signature: [u8; 64] = hex::decode(text(&signed["signature"]))
        .unwrap()
        .try_into()
        .unwrap();
    PublicKey::from_ss58(&sn2_address)
        .unwrap()
        .verify(message, &Signature(signature))
        .unwrap();
}
