#!/usr/bin/env bash
# Evaluates the NixOS module with nixpkgs' lib alone (tests/module-eval.nix), then renders
# the settings it gives each daemon to TOML and checks them with `sn2 config check`: the
# same check the module runs when a system is built.
#
#   tests/module-eval.sh /path/to/nixpkgs.lib      # a checkout of nix-community/nixpkgs.lib
#   tests/module-eval.sh /path/to/nixpkgs           # or of nixpkgs itself
#
# Needs nix-instantiate (Nix 2.8 or newer), python3 and cargo; with systemd-analyze (systemd
# 250 or newer) it also scores the units' hardening offline and fails above 2.0 ("OK").
set -euo pipefail
cd "$(dirname "$0")/.."

lib=${1:?usage: tests/module-eval.sh NIXPKGS_LIB_CHECKOUT}
[[ -f "$lib/lib/default.nix" ]] || { echo "no lib/default.nix in $lib" >&2; exit 2; }

result=$(nix-instantiate --eval --strict --json tests/module-eval.nix \
  --arg lib "import $(realpath "$lib")/lib")
echo "$result" | python3 -c 'import json, sys; [print("ok  ", name) for name in json.load(sys.stdin)["passed"]]'

cargo build --quiet --bin sn2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for role in miner validator validator-updating; do
  # JSON to TOML, as pkgs.formats.toml does it: nested tables, arrays of inline tables.
  echo "$result" | python3 -c '
import json, sys
def value(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, (int, float)): return repr(v)
    if isinstance(v, str): return json.dumps(v)
    if isinstance(v, list): return "[" + ", ".join(value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
for section, keys in json.load(sys.stdin)["settings"][sys.argv[1]].items():
    print(f"[{section}]")
    for key, v in keys.items():
        print(f"{key} = {value(v)}")
' "$role" > "$work/$role.toml"
  if target/debug/sn2 config check --role "${role%-updating}" "$work/$role.toml" > /dev/null; then
    echo "ok   the module's $role settings are a valid sn2 config"
  else
    echo "FAIL the module's $role settings:" >&2
    cat "$work/$role.toml" >&2
    exit 1
  fi
done

if ! command -v systemd-analyze > /dev/null; then
  echo "skip the hardening score: no systemd-analyze here"
  exit 0
fi
for role in miner validator; do
  # The [Service] section as NixOS writes it: one line per list item.
  echo "$result" | python3 -c '
import json, sys
print("[Unit]\nDescription=sn2 " + sys.argv[1] + "\n[Service]")
for key, v in json.load(sys.stdin)["serviceConfig"][sys.argv[1]].items():
    for item in (v if isinstance(v, list) else [v]):
        print(f"{key}=" + (str(item).lower() if isinstance(item, bool) else str(item)))
' "$role" > "$work/sn2-$role.service"
  score=$(systemd-analyze security --offline=true --threshold=20 "$work/sn2-$role.service" 2>&1 |
    grep 'Overall exposure level') || { echo "FAIL the $role unit scores above 2.0" >&2; exit 1; }
  echo "ok   sn2-$role.service: ${score#*: }"
done
