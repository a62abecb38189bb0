#!/bin/sh
# End-to-end load run: builds the release binary, then drives the demo cell's peers (OPC UA PLC,
# Modbus gauge, MQTT vision station through Mosquitto, OData ERP) into the HTTP sink and prints one
# JSON line (see benches/e2e.rs for what each figure means).
#
#   benches/e2e.sh                          # 60 s at 1,000 records/s
#   benches/e2e.sh --seconds 300 --rate 2000 --report target/e2e/report.json
#   E2E_AGENT=target/min/shopfloor-agent benches/e2e.sh    # another build of the agent
#
# Needs mosquitto (apt-get install mosquitto).
set -eu
cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || {
    echo "e2e: mosquitto is needed: apt-get install mosquitto" >&2
    exit 1
}
cargo build -j2 --release --locked --bin shopfloor-agent
exec cargo bench -j2 --locked --bench e2e -- "$@"
