#!/usr/bin/env bash
# Builds the Debian packages from the static gateway binaries (profile `min`, musl, static PIE):
#
#   packaging/deb/build.sh [amd64] [arm64] [armhf]      (default: all three)
#
# Each package holds the binary cross/build.sh leaves in target/<triple>/min/ for
# x86_64-unknown-linux-musl, aarch64-unknown-linux-musl or armv7-unknown-linux-musleabihf; a missing
# one is built first. Static binaries need nothing from the gateway's libc, so one package serves
# every Debian and Ubuntu release, and they idle in less memory (cross/README.md). Packages land in
# target/debian/. Installs cargo-deb from crates.io when it is missing. Metadata:
# [package.metadata.deb] in Cargo.toml; maintainer scripts beside this file.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
log() { echo "[deb $(date +%H:%M:%S)] $*" >&2; }
[ $# -gt 0 ] || set -- amd64 arm64 armhf

if ! cargo deb --version >/dev/null 2>&1; then
  log "cargo install cargo-deb"
  cargo install --locked -j2 cargo-deb@3.8.0
fi

for arch in "$@"; do
  case $arch in
    amd64) triple=x86_64-unknown-linux-musl ;;
    arm64) triple=aarch64-unknown-linux-musl ;;
    armhf) triple=armv7-unknown-linux-musleabihf ;;
    *) echo "unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 2 ;;
  esac
  bin=target/$triple/min/shopfloor-agent
  if [ ! -x "$bin" ]; then
    log "$arch: $bin is missing: cross/build.sh $triple"
    cross/build.sh "$triple"
  fi
  log "$arch: cargo deb from $bin"
  cargo deb --no-build --no-strip --profile min --target "$triple" --output target/debian/
done
ls -l target/debian/*.deb
