#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a number of executions each, starting from
# fuzz/corpus/<target>/ and adding what it finds to a scratch corpus, never to the
# committed one. A crash stops the run; its input is left in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [-runs N] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain, or
# stable with RUSTC_BOOTSTRAP=1, which this script sets when no nightly is installed.
set -euo pipefail
cd "$(dirname "$0")"

runs=1000000
# sn2 and its decoders are safe Rust: the fuzzer hunts panics, overflows (debug assertions
# are on), unbounded allocations and hangs, which need no sanitizer. SN2_FUZZ_SANITIZER=address
# adds AddressSanitizer, at about half the speed, for the unsafe code of dependencies.
sanitizer="${SN2_FUZZ_SANITIZER:-none}"
while [ $# -gt 0 ]; do
  case "$1" in
    -runs) runs="$2"; shift 2 ;;
    -*) echo "unknown option $1; use -runs N and target names" >&2; exit 2 ;;
    *) break ;;
  esac
done

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

toolchain=()
if rustup toolchain list 2> /dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

echo "== building the targets (the first build takes a while)"
build=(fuzz build --release --debug-assertions --sanitizer "$sanitizer" --codegen-units 16)
if [ $# -gt 0 ]; then
  # Only the targets named: each is linked against the whole of sn2, so building all
  # of them to run one costs minutes.
  for target in "${targets[@]}"; do
    cargo "${toolchain[@]}" "${build[@]}" "$target"
  done
else
  cargo "${toolchain[@]}" "${build[@]}"
fi
bin="$(cd .. && pwd)/target/x86_64-unknown-linux-gnu/release"

scratch="${SN2_FUZZ_SCRATCH:-$(mktemp -d)}"
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target" "artifacts/$target"
  echo "== $target: $runs runs (scratch corpus $scratch/$target)"
  start=$(date +%s)
  if ! "$bin/$target" "$scratch/$target" "corpus/$target" -runs="$runs" -max_len=65536 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$target/" \
    > "$scratch/$target.log" 2>&1; then
    tail -n 40 "$scratch/$target.log" >&2
    echo "$target failed: the input is in fuzz/artifacts/$target/; copy it to fuzz/regressions/$target/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$scratch/$target.log" | sed 's/^/   /'
  echo "   $(($(date +%s) - start)) s"
done
