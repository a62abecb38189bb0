#!/bin/sh
# Fleet scale run: builds the release binary, then N agents (default 20) at R inspections/s each
# (default 100) through Mosquitto into a three-node JetStream cluster (stream R3), then
# `fleet verify` over the stream; prints one JSON line (benches/fleet.rs says what each figure is).
#
#   benches/fleet.sh                               # 300 s, 20 agents, 100/s each
#   benches/fleet.sh --seconds 60 --agents 5 --single
#
# Needs mosquitto and nats-server (apt-get install mosquitto nats-server).
set -eu
cd "$(dirname "$0")/.."
for p in mosquitto nats-server; do
    command -v $p >/dev/null 2>&1 || [ -x /usr/sbin/$p ] || {
        echo "fleet: $p is needed: apt-get install $p" >&2
        exit 1
    }
done
cargo build -j2 --release --locked --bin shopfloor-agent
exec cargo bench -j2 --locked --bench fleet -- "$@"
