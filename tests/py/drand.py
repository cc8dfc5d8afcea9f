"""PyPI's bittensor-drand as the peer of sn2's timelock tests (tests/timelock.rs).

    drand.py encrypt HEX ROUND         -> {"ciphertext": HEX}  the bare TLE ciphertext
    drand.py decrypt HEX SIGNATURE     -> {"plaintext": HEX} or {"error": TEXT}
    drand.py commit_v2 JSON            -> {"commit": HEX, "round": N, "before": T, "after": T}

`encrypt_at_round` and `decrypt_with_signature` wrap the ciphertext in SCALE
`UserData {encrypted_data: Vec<u8>, reveal_round: u64}`; the chain takes the bare
ciphertext, so this script unwraps and wraps it. `commit_v2` calls
`get_encrypted_commit_v2` with the schedule state in JSON and reports the wall-clock
window it ran in, since the round it picks depends on the time.
"""

import json
import sys
import time

import bittensor_drand


def compact(n):
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raise ValueError("too long")


def read_compact(data):
    mode = data[0] & 3
    if mode == 0:
        return data[0] >> 2, 1
    if mode == 1:
        return int.from_bytes(data[:2], "little") >> 2, 2
    if mode == 2:
        return int.from_bytes(data[:4], "little") >> 2, 4
    raise ValueError("too long")


def main():
    command = sys.argv[1]
    if command == "encrypt":
        wrapped, _ = bittensor_drand.encrypt_at_round(bytes.fromhex(sys.argv[2]), int(sys.argv[3]))
        length, prefix = read_compact(wrapped)
        result = {"ciphertext": wrapped[prefix : prefix + length].hex()}
    elif command == "decrypt":
        ciphertext = bytes.fromhex(sys.argv[2])
        wrapped = compact(len(ciphertext)) + ciphertext + (0).to_bytes(8, "little")
        try:
            result = {"plaintext": bittensor_drand.decrypt_with_signature(wrapped, sys.argv[3]).hex()}
        except ValueError as error:
            result = {"error": str(error)}
    elif command == "commit_v2":
        s = json.loads(sys.argv[2])
        before = time.time()
        commit, round_ = bittensor_drand.get_encrypted_commit_v2(
            s["uids"], s["values"], s["version_key"], s["last_epoch_block"], s["pending_epoch_at"],
            s["epoch_index"], s["tempo"], s["blocks_since_last_step"], s["block"],
            s["reveal_period"], s["block_seconds"], bytes.fromhex(s["hotkey"]),
        )
        after = time.time()
        result = {"commit": commit.hex(), "round": round_, "before": before, "after": after}
    else:
        raise SystemExit(f"unknown command {command}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
