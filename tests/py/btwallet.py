#!/usr/bin/env python3
"""The Python side of tests/wallet_compat.rs: drives the real `bittensor-wallet` package.

Commands (all output is one JSON value on stdout):
  create PATH NAME HOTKEY        make an unencrypted coldkey and hotkey
  load PATH NAME HOTKEY          load a hotkey and re-derive it from its phrase
  sign PATH NAME HOTKEY MSG_HEX  sign with the wallet's hotkey
  verify SS58 MSG_HEX SIG_HEX    verify a signature against an address
"""
import json
import sys

try:
    from bittensor_wallet import Keypair, Wallet
except ImportError:
    sys.exit("the PyPI package bittensor-wallet is needed: tests/setup.sh installs it into .venv")


def wallet(path, name, hotkey):
    return Wallet(name=name, hotkey=hotkey, path=path)


def main(command, *args):
    if command == "create":
        w = wallet(*args)
        w.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
        w.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
        return {"hotkey": w.hotkey.ss58_address, "coldkey": w.coldkeypub.ss58_address}
    if command == "load":
        w = wallet(*args)
        hotkey = w.get_hotkey()
        with open(w.hotkey_file.path) as f:
            phrase = json.load(f).get("secretPhrase")
        from_phrase = Keypair.create_from_mnemonic(phrase).ss58_address if phrase else None
        return {"hotkey": hotkey.ss58_address, "from_phrase": from_phrase}
    if command == "sign":
        path, name, hotkey, message = args
        signature = wallet(path, name, hotkey).get_hotkey().sign(bytes.fromhex(message))
        return {"signature": signature.hex()}
    if command == "verify":
        address, message, signature = args
        keypair = Keypair(ss58_address=address)
        return {"valid": bool(keypair.verify(bytes.fromhex(message), bytes.fromhex(signature)))}
    sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
