#!/usr/bin/env bash
# Builds the Debian packages from the gateway binaries (profile `min`):
#
#   packaging/deb/build.sh [amd64] [arm64] [armhf]      (default: all three)
#
# amd64 is built here with cargo; arm64 and armhf take the binaries cross/build.sh left in
# target/<triple>/min/ (run it first). Packages land in target/debian/. Installs cargo-deb from
# crates.io when it is missing. Metadata: [package.metadata.deb] in Cargo.toml; maintainer scripts
# beside this file.
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
    amd64)
      log "amd64: cargo build --profile min"
      cargo build --locked -j2 --profile min
      cargo deb --no-build --no-strip --profile min --output target/debian/
      ;;
    arm64 | armhf)
      if [ "$arch" = arm64 ]; then triple=aarch64-unknown-linux-gnu; else triple=armv7-unknown-linux-gnueabihf; fi
      bin=target/$triple/min/shopfloor-agent
      [ -x "$bin" ] || { log "$bin is missing: run cross/build.sh $triple first"; exit 1; }
      cargo deb --no-build --no-strip --profile min --target "$triple" --output target/debian/
      ;;
    *) echo "unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 2 ;;
  esac
done
ls -l target/debian/*.deb
