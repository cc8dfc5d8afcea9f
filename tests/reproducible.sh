#!/usr/bin/env bash
# Builds the release binaries twice, from two copies of the source in different
# directories, and checks that they are identical (SHA-256). A difference means a path, a
# timestamp or other host data leaked into a binary.
#
#   tests/reproducible.sh            # sn2 built twice, its dependencies once (what CI runs)
#   FULL=1 tests/reproducible.sh     # everything built twice, each tree with its own target
#                                    # directory: about 2 × a release build; worth running
#                                    # when Cargo.lock changes
#   KEEP=1 tests/reproducible.sh     # keep both trees, to compare them with diffoscope
#
# By default both builds share one target directory and `cargo clean -p sn2` runs between
# them, so the second compiles sn2's own code again (from the other directory) and reuses
# the crates.io dependencies, whose sources never move. That halves the time; FULL=1 also
# catches a dependency that does not build reproducibly.
#
# The flags are the ones any reproducible cargo build of sn2 needs, the flake included:
# the checkout is remapped to /sn2 (its target directory to /sn2/target, where a plain
# `cargo build` puts it), cargo's home to /cargo, and SOURCE_DATE_EPOCH is the commit's time.
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

# sn2's own crates get their checkout's remapping from this wrapper (cargo runs it for
# workspace members only), so the dependencies' flags, and with them their builds, are
# the same for both trees.
wrapper="$work/rustc-remapping-the-tree"
cat > "$wrapper" << 'WRAPPER'
#!/bin/sh
rustc=$1
shift
exec "$rustc" "$@" "--remap-path-prefix=$SN2_TREE=/sn2"
WRAPPER
chmod +x "$wrapper"

bin_args=()
for binary in "${binaries[@]}"; do
  bin_args+=(--bin "$binary")
done

build() {
  local index=$1 tree=${trees[$1]}
  local target="$work/target${FULL:+-$index}"
  echo "== release build in $tree (target directory $target)"
  (
    cd "$tree"
    export CARGO_TARGET_DIR="$target" SN2_TREE="$tree" RUSTC_WORKSPACE_WRAPPER="$wrapper"
    export RUSTFLAGS="--remap-path-prefix=$target=/sn2/target --remap-path-prefix=$cargo_home=/cargo"
    if [[ -z "${FULL:-}" ]]; then
      cargo clean --release --quiet -p sn2
      for binary in "${binaries[@]}"; do
        # Nothing of the other tree's build may stand in for this one's.
        [[ ! -e "$target/release/$binary" ]] || { echo "cargo clean left $binary" >&2; exit 1; }
      done
    fi
    cargo build --locked --release --quiet "${bin_args[@]}"
    mkdir -p "$work/out-$index"
    for binary in "${binaries[@]}"; do
      cp "$target/release/$binary" "$work/out-$index/"
    done
  )
}

for index in "${!trees[@]}"; do
  build "$index"
done

status=0
for binary in "${binaries[@]}"; do
  first=$(sha256sum "$work/out-0/$binary" | cut -d' ' -f1)
  second=$(sha256sum "$work/out-1/$binary" | cut -d' ' -f1)
  if [[ "$first" == "$second" ]]; then
    echo "same      $first  $binary"
  else
    echo "DIFFERENT $first  $second  $binary"
    status=1
  fi
  # A build path that the remapping missed shows up as text in the binary.
  for index in "${!trees[@]}"; do
    for path in "${trees[$index]}" "$work/target"; do
      if grep -q --fixed-strings "$path" "$work/out-$index/$binary"; then
        echo "  $binary built in ${trees[$index]} contains the path $path"
        status=1
      fi
    done
  done
done
if [[ $status -ne 0 ]]; then
  echo "the release binaries are not reproducible${KEEP:+; both trees are kept in $work}" >&2
fi
exit $status
