#!/usr/bin/env bash
# Runs README's two commands, as written, on what a newcomer has: a fresh Debian 12 root
# made with debootstrap (no Python, Node.js or Nix), with gcc from apt and the Rust toolchain
# of this machine's rustup bind-mounted (README's prerequisites), and a fresh clone of HEAD.
#
#   sudo tests/fresh-debian.sh [WORK_DIR]      # default /var/tmp/sn2-fresh-debian
#
# Needs root, debootstrap, a rustup toolchain in ~/.rustup and ~/.cargo, and the package
# registries (Debian's mirror, crates.io, PyPI, npm). About 25 minutes on 2 cores; each run
# starts from a new root. The
# root gets its own /dev nodes, a fresh devpts and /proc, never the host's /dev, so that
# nothing run inside can change the host's devices.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/sn2-fresh-debian}
root=$work/root

unmount() {
  for mount in dev/pts proc root/.rustup root/.cargo; do
    mountpoint -q "$root/$mount" && umount "$root/$mount"
  done
  return 0
}
trap unmount EXIT

unmount
if grep -q " $root/" /proc/mounts; then
  echo "something is still mounted under $root; not removing it" >&2
  exit 1
fi
rm -rf "$root"
echo "== debootstrap bookworm into $root"
mkdir -p "$work"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian > "$work/debootstrap.log"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Certificate authorities this host adds to Debian's (a proxy's, say) are trusted inside too.
mkdir -p "$root/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2> /dev/null || true
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/dev/pts" || mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -sf pts/ptmx "$root/dev/ptmx"
mkdir -p "$root/root/.rustup" "$root/root/.cargo"
mountpoint -q "$root/root/.rustup" || mount --bind "$HOME/.rustup" "$root/root/.rustup"
mountpoint -q "$root/root/.cargo" || mount --bind "$HOME/.cargo" "$root/root/.cargo"
rm -rf "$root/root/sn2"
git clone -q "$repo" "$root/root/sn2"

environment=(env -i HOME=/root TERM=dumb LANG=C.UTF-8
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
for name in SSL_CERT_FILE NODE_EXTRA_CA_CERTS PIP_CERT REQUESTS_CA_BUNDLE CARGO_HTTP_CAINFO; do
  [[ -n ${!name:-} ]] && environment+=("$name=${!name}")
done
inside() { chroot "$root" "${environment[@]}" bash -c "$1"; }

echo "== prerequisites: gcc"
inside 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates gcc libc6-dev procps > /dev/null && update-ca-certificates > /dev/null'

devnet=$(grep -m1 '^    cargo run --release --bin sn2 -- devnet' "$repo/README.md" | sed 's/^    //')
tests=$(grep -m1 '^    tests/setup.sh && ' "$repo/README.md" | sed 's/^    //')
echo "== $devnet   (stopped with Ctrl-C a minute after its table shows)"
inside "cd /root/sn2 && { $devnet > /tmp/devnet.out 2> /tmp/devnet.err & pid=\$!
  until grep -q verified /tmp/devnet.out 2> /dev/null || ! kill -0 \$pid 2> /dev/null; do sleep 5; done
  sleep 60; pkill -INT -f 'target/release/sn2 devnet'; wait \$pid; status=\$?
  grep Finished /tmp/devnet.err; tail -n 8 /tmp/devnet.out; echo \"devnet exit \$status\"; exit \$status; }"

echo "== $tests"
inside "cd /root/sn2 && $tests"
echo "== both commands ran as written"
