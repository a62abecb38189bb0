#!/usr/bin/env bash
# Cross-builds the gateway binary (profile `min`) for ARM without Docker, and smoke-tests it under
# qemu-user: --version, `validate` of the reference config, and a short `run` of a file-sink config
# whose journal must then pass `verify`.
#
#   cross/build.sh aarch64-unknown-linux-gnu [armv7-unknown-linux-gnueabihf] [aarch64-unknown-linux-musl] …
#
# Uses Debian's Rust toolchain (rustc-web/cargo-web >= the crate's rust-version) with -Zbuild-std, the
# Debian gcc cross compilers (for SQLite and ring's C) and qemu-user; installs them with apt when
# missing. The *-musl targets are static binaries for any Linux (no glibc floor; the Debian packages
# hold them): they link with zig (from PyPI, in a venv under $INTEROP_HOME) through cargo-zigbuild
# (from crates.io), as static PIE. rustup's own toolchain is left alone (x86_64 glibc builds keep
# using it). Binaries land in target/<triple>/min/shopfloor-agent. With CROSS_PRUNE=1 the build's
# intermediate files (~650 MB per target) are removed once its binary has passed, keeping the binary.
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
    aarch64-unknown-linux-musl | armv7-unknown-linux-musleabihf | x86_64-unknown-linux-musl) python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv) ;;
    *) echo "unsupported target $t (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-musl, armv7-unknown-linux-musleabihf, x86_64-unknown-linux-musl)" >&2; exit 2 ;;
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

# zig and cargo-zigbuild, for the musl targets.
zig_tools() {
  local venv=${INTEROP_HOME:-/tmp/shopfloor-interop}/zig-venv
  if ! "$venv/bin/python" -m ziglang version >/dev/null 2>&1; then
    log "pip install ziglang==0.17.1 (into $venv)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q ziglang==0.17.1
  fi
  export PATH="$venv/bin:$PATH"
  command -v cargo-zigbuild >/dev/null || {
    log "cargo install cargo-zigbuild"
    cargo install --locked -j2 cargo-zigbuild@0.24.1
  }
}

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
for t in "$@"; do
  build=(build)
  flags=""
  case $t in
    aarch64-unknown-linux-gnu) qemu="qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
    armv7-unknown-linux-gnueabihf) qemu="qemu-arm -L /usr/arm-linux-gnueabihf" ;;
    # Static: no -L sysroot, which is the proof that nothing is loaded from the host.
    aarch64-unknown-linux-musl) qemu="qemu-aarch64" ;;
    armv7-unknown-linux-musleabihf) qemu="qemu-arm" ;;
    x86_64-unknown-linux-musl) qemu="" ;;
  esac
  case $t in
    *-musl*)
      zig_tools
      build=(zigbuild)
      # zig supplies musl's start files and libunwind; the ones rustc would bring are not in a
      # -Zbuild-std sysroot.
      flags="-C link-self-contained=no -C link-arg=-static -C link-arg=-pie"
      ;;
  esac
  log "building $t (profile min${flags:+, $flags})"
  RUSTFLAGS="$flags" /usr/bin/cargo "${build[@]}" --locked -j2 --profile min -Zbuild-std=std,panic_abort --target "$t"
  bin=target/$t/min/shopfloor-agent
  size=$(stat -c %s "$bin")
  log "$bin: $size bytes"
  command -v file >/dev/null && file -b "$bin" | cut -d, -f1-2
  # The size budget (cross/README.md says how it moved): 11 MiB since the metrology source.
  [ "$size" -le 11534336 ] || { log "the binary exceeds 11 MiB"; exit 1; }
  case $t in
    *-musl*) [ -z "$(readelf -l "$bin" | grep -i interpreter)" ] || { log "$bin is not static"; exit 1; } ;;
  esac

  log "smoke test under $qemu"
  $qemu "$bin" --version
  OPCUA_PASSWORD=x ERP_PASSWORD=x MQTT_PASSWORD=x QMS_TOKEN=x $qemu "$bin" --config config/agent.toml validate
  work=$(mktemp -d)
  cat >"$work/agent.toml" <<TOML
[agent]
gateway_id = "cross-smoke"
data_dir = "$work/data"
[metrics]
enabled = false
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
  if [ "${CROSS_PRUNE:-0}" = 1 ]; then
    rm -rf "target/$t/min/deps" "target/$t/min/build" "target/$t/min/.fingerprint" "target/$t/min/incremental"
    log "pruned target/$t/min to its binary ($(du -sh "target/$t" | cut -f1) left)"
  fi
done
