#!/usr/bin/env bash
# Builds the release binaries twice, from two copies of the source in different
# directories with their own target directories, and checks that they are identical
# (SHA-256). A difference means a path, a timestamp or other host data leaked into a binary.
#
#   tests/reproducible.sh            # from the repository root; about 2 × a release build
#   KEEP=1 tests/reproducible.sh     # keep both trees, to compare them with diffoscope
#
# The flags are the ones any reproducible cargo build of sn2 needs, the flake included:
# source paths are remapped to fixed prefixes, and SOURCE_DATE_EPOCH is the commit's time.
set -euo pipefail
cd "$(dirname "$0")/.."

binaries=(sn2 sn2-miner sn2-validator)
work=$(mktemp -d "${TMPDIR:-/tmp}/sn2-reproducible.XXXXXX")
if [[ -z "${KEEP:-}" ]]; then
  trap 'rm -rf "$work"' EXIT
fi
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1)}

# The two trees differ in path and in depth, as two operators' checkouts would.
trees=("$work/a/sn2" "$work/bb/elsewhere/sn2-checkout")
for tree in "${trees[@]}"; do
  mkdir -p "$tree"
  git ls-files -z --cached --others --exclude-standard |
    tar --null --files-from=- --create --file=- | tar --extract --file=- --directory="$tree"
done

bin_args=()
for binary in "${binaries[@]}"; do
  bin_args+=(--bin "$binary")
done

build() {
  local tree=$1
  echo "== release build in $tree"
  (
    cd "$tree"
    RUSTFLAGS="--remap-path-prefix=$tree=/sn2 --remap-path-prefix=$cargo_home=/cargo" \
      CARGO_TARGET_DIR="$tree/target" \
      cargo build --locked --release --quiet "${bin_args[@]}"
  )
}

for tree in "${trees[@]}"; do
  build "$tree"
done

status=0
for binary in "${binaries[@]}"; do
  first=$(sha256sum "${trees[0]}/target/release/$binary" | cut -d' ' -f1)
  second=$(sha256sum "${trees[1]}/target/release/$binary" | cut -d' ' -f1)
  if [[ "$first" == "$second" ]]; then
    echo "same      $first  $binary"
  else
    echo "DIFFERENT $first  $second  $binary"
    status=1
  fi
  # A build path that the remapping missed shows up as text in the binary.
  for tree in "${trees[@]}"; do
    if grep -q --fixed-strings "$tree" "$tree/target/release/$binary"; then
      echo "  $binary built in $tree contains its build path"
      status=1
    fi
  done
done
if [[ $status -ne 0 ]]; then
  echo "the release binaries are not reproducible${KEEP:+; both trees are kept in $work}" >&2
fi
exit $status
