#!/usr/bin/env bash
# Cross-builds the gateway binary (profile `min`) for ARM without Docker, and smoke-tests it under
# qemu-user: --version, `validate` of the reference config, and a short `run` of a file-sink config
# whose journal must then pass `verify`.
#
#   cross/build.sh aarch64-unknown-linux-gnu [armv7-unknown-linux-gnueabihf]
#
# Uses Debian's Rust toolchain (rustc-web/cargo-web >= the crate's rust-version) with -Zbuild-std, the
# Debian gcc cross compilers (for SQLite and ring's C) and qemu-user; installs them with apt when
# missing. rustup's own toolchain is left alone (x86_64 builds keep using it). Binaries land in
# target/<triple>/min/shopfloor-agent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ $# -gt 0 ] || { echo "usage: $0 TARGET..." >&2; exit 2; }
log() { echo "[cross $(date +%H:%M:%S)] $*" >&2; }

need=()
[ -x /usr/bin/rustc ] || need+=(rustc-web cargo-web rust-web-src)
for t in "$@"; do
  case $t in
    aarch64-unknown-linux-gnu) command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
    armv7-unknown-linux-gnueabihf) command -v arm-linux-gnueabihf-gcc >/dev/null || need+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
    *) echo "unsupported target $t (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
  esac
done
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
log "$(/usr/bin/rustc -V)"

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
for t in "$@"; do
  case $t in
    aarch64-unknown-linux-gnu) qemu="qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
    armv7-unknown-linux-gnueabihf) qemu="qemu-arm -L /usr/arm-linux-gnueabihf" ;;
  esac
  log "building $t (profile min)"
  /usr/bin/cargo build --locked -j2 --profile min -Zbuild-std=std,panic_abort --target "$t"
  bin=target/$t/min/shopfloor-agent
  size=$(stat -c %s "$bin")
  log "$bin: $size bytes"
  command -v file >/dev/null && file -b "$bin" | cut -d, -f1-2
  [ "$size" -le 10485760 ] || { log "the binary exceeds 10 MiB"; exit 1; }

  log "smoke test under $qemu"
  $qemu "$bin" --version
  OPCUA_PASSWORD=x ERP_PASSWORD=x MQTT_PASSWORD=x QMS_TOKEN=x $qemu "$bin" --config config/agent.toml validate
  work=$(mktemp -d)
  cat >"$work/agent.toml" <<TOML
[agent]
gateway_id = "cross-smoke"
data_dir = "$work/data"
[sinks.audit]
type = "file"
path = "$work/out/records.jsonl"
TOML
  $qemu "$bin" --config "$work/agent.toml" run 2>"$work/run.log" &
  pid=$!
  for _ in $(seq 100); do [ -s "$work/out/records.jsonl" ] && break; sleep 0.1; done
  kill -TERM "$pid"; wait "$pid" || true
  lines=$(wc -l <"$work/out/records.jsonl")
  [ "$lines" -ge 1 ] || { log "no records written"; cat "$work/run.log" >&2; exit 1; }
  $qemu "$bin" --config "$work/agent.toml" verify
  log "$t: OK ($lines records written, chain verified)"
  rm -rf "$work"
done
