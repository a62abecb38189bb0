#!/usr/bin/env bash
# Interop: shopfloor-agent against Debian's Mosquitto with the paho-mqtt publisher, using the shipped
# config/examples/mqtt.toml. While the publisher sends 150 QoS 1 results, the agent is SIGKILLed and
# restarted 10 times: afterwards every published result is in the journal exactly once.
#
#   tests/interop/mqtt.sh            # check (starts and stops broker and publisher itself)
#   tests/interop/mqtt.sh start|stop # leave broker and publisher running on 127.0.0.1:1883
#
# Installs what it needs: Debian's mosquitto, and paho-mqtt 2.2.0 in a venv under $INTEROP_HOME
# (default /tmp/shopfloor-interop). Uses $AGENT (default target/debug/shopfloor-agent).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${INTEROP_HOME:-/tmp/shopfloor-interop}
VENV=$WORK/venv
PORT=1883
AGENT=${AGENT:-$ROOT/target/debug/shopfloor-agent}
mkdir -p "$WORK/mqtt"

log() { echo "[mqtt-interop $(date +%H:%M:%S)] $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
MOSQ=/usr/sbin/mosquitto

ensure_tools() {
  [ -x "$MOSQ" ] || { log "installing mosquitto"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto; }
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -c 'import paho.mqtt' 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check paho-mqtt==2.2.0
}

start_broker() {
  if port_open "$PORT"; then log "port $PORT is busy: stop what runs there first"; exit 1; fi
  rm -rf "$WORK/mqtt/data"; mkdir -p "$WORK/mqtt/data"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1\nuser root\n' \
    "$PORT" "$WORK/mqtt/data" >"$WORK/mqtt/mosquitto.conf"
  "$MOSQ" -c "$WORK/mqtt/mosquitto.conf" >"$WORK/mqtt/broker.log" 2>&1 </dev/null &
  echo $! >"$WORK/mqtt/broker.pid"
  for _ in $(seq 100); do port_open "$PORT" && { log "mosquitto up, pid $(cat "$WORK/mqtt/broker.pid")"; return; }; sleep 0.1; done
  log "mosquitto did not start"; cat "$WORK/mqtt/broker.log" >&2; exit 1
}

start_publisher() {
  "$VENV/bin/python" -u "$HERE/mqtt_publisher.py" --port "$PORT" --interval "${1:-0.2}" --count "${2:-0}" --seed 3 \
    >"$WORK/mqtt/publisher.log" 2>&1 </dev/null &
  echo $! >"$WORK/mqtt/publisher.pid"
}

stop_all() {
  for f in publisher broker; do
    [ -f "$WORK/mqtt/$f.pid" ] && kill "$(cat "$WORK/mqtt/$f.pid")" 2>/dev/null || true
    rm -f "$WORK/mqtt/$f.pid"
  done
}

check() {
  ensure_tools
  [ -x "$AGENT" ] || { log "no agent binary at $AGENT: run cargo build first"; exit 1; }
  start_broker
  trap 'stop_all; [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null || true' EXIT
  RUN=$(mktemp -d "$WORK/run.XXXX")
  cd "$RUN"
  "$AGENT" --config "$ROOT/config/examples/mqtt.toml" run 2>>"$RUN/agent.log" &
  APID=$!
  sleep 1   # the persistent session and its subscription exist before anything is published
  start_publisher 0.05 150
  for _ in $(seq 10); do
    sleep "0.$((RANDOM % 5 + 2))"
    kill -KILL "$APID"; wait "$APID" 2>/dev/null || true
    "$AGENT" --config "$ROOT/config/examples/mqtt.toml" run 2>>"$RUN/agent.log" &
    APID=$!
  done
  for _ in $(seq 100); do grep -q "published 150" "$WORK/mqtt/publisher.log" && break; sleep 0.1; done
  sleep 3
  kill -TERM "$APID"; wait "$APID" || true; APID=
  "$AGENT" --config "$ROOT/config/examples/mqtt.toml" verify
  python3 - <<'PY'
import json, sqlite3
rows = [json.loads(b) for (b,) in sqlite3.connect("data/journal.sqlite").execute(
    "select body from records where kind='inspection' order by seq")]
serials = [r["subject"]["serial"] for r in rows]
assert len(serials) == len(set(serials)), "a result journaled twice"
want = {f"SN-{n:06d}" for n in range(1, 151)}
missing = sorted(want - set(serials))
assert not missing, f"{len(missing)} published results missing: {missing[:5]}"
assert all(r["inspection"]["result"] in ("pass", "fail") for r in rows)
assert all(r["provenance"]["fields"]["inspection.value"]["protocol"] == "mqtt" for r in rows)
print(f"OK: 150 published results, each journaled exactly once across 10 SIGKILLs")
PY
  log "PASS"
}

case "${1:-check}" in
  check) check ;;
  start) ensure_tools; start_broker; start_publisher 0.2 0 ;;
  stop) stop_all ;;
  *) echo "usage: $0 [check|start|stop]" >&2; exit 2 ;;
esac
