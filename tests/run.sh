#!/usr/bin/env bash
# The test command (the README's): `tests/run.sh [cargo test options]`.
#
# The suite runs in process on 127.0.0.1 except for three real programs it starts as peers:
# `mosquitto` (the MQTT tests' broker), `nats-server` (the NATS sink's JetStream, one server or a
# three-node cluster) and `socat` (the Modbus RTU test's pseudo-terminal pair). The Kafka sink's
# tests run against librdkafka's mock cluster in process; the `sink-kafka` feature builds
# librdkafka from source, which takes `cmake` and the curl and OpenSSL headers.
# When any is missing this installs it with apt-get (as root, or through sudo) and says so; then
# it runs `cargo test --locked --workspace --features sink-kafka` with the options given, e.g.
# `tests/run.sh -j2` or `tests/run.sh --test integration security::`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v socat >/dev/null || need+=(socat)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
[ -n "${NATS_SERVER:-}" ] || command -v nats-server >/dev/null || need+=(nats-server)
command -v cmake >/dev/null || need+=(cmake)
for dev in libcurl4-openssl-dev libssl-dev; do
  dpkg -s "$dev" >/dev/null 2>&1 || need+=("$dev")
done

if ((${#need[@]})); then
  echo "tests/run.sh: installing ${need[*]} with apt-get (the tests start them as real peers)" >&2
  if ! command -v apt-get >/dev/null; then
    echo "tests/run.sh: no apt-get here; install ${need[*]} with this system's package manager and run again" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || {
      echo "tests/run.sh: not root and no sudo; run: apt-get install ${need[*]}" >&2
      exit 1
    }
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

exec cargo test --locked --workspace --features sink-kafka "$@"
