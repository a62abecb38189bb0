#!/usr/bin/env bash
# Interop: shopfloor-agent against Debian's Mosquitto with the paho-mqtt publisher, using the shipped
# config/examples/mqtt.toml. While the publisher sends 150 QoS 1 results, the agent is SIGKILLed and
# restarted 10 times: afterwards every published result is in the journal exactly once. Then the
# same example, changed only where needed, against the broker's other listeners: TLS (private CA),
# user/password, client certificate (mutual TLS), and over MQTT 5 on the plain listener.
#
#   tests/interop/mqtt.sh            # check (starts and stops broker and publisher itself)
#   tests/interop/mqtt.sh start|stop # leave broker (1883 plain, 8883 TLS, 1884 edge/edge123, 8884 mTLS)
#                                    # and publisher running
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
  [ -x "$MOSQ" ] && command -v mosquitto_passwd >/dev/null || { log "installing mosquitto"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients; }
  command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -c 'import paho.mqtt' 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check paho-mqtt==2.2.0
}

TLS_PORT=8883; AUTH_PORT=1884; MTLS_PORT=8884
CERTS=$WORK/mqtt/certs

# test_ca: a throw-away CA, a server certificate (localhost, 127.0.0.1) and a client certificate.
test_ca() {
  [ -f "$CERTS/client.crt" ] && return 0
  mkdir -p "$CERTS"
  (
    cd "$CERTS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/O=Interop Test CA/CN=interop-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 -extfile server.ext -out server.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=edge-agent-1" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 -extfile client.ext -out client.crt 2>/dev/null
    rm -f ./*.csr ./*.ext
  )
}

# The four listeners of a plant broker: plain, TLS, user/password, client certificate.
start_broker() {
  for p in "$PORT" "$TLS_PORT" "$AUTH_PORT" "$MTLS_PORT"; do
    if port_open "$p"; then log "port $p is busy: stop what runs there first"; exit 1; fi
  done
  test_ca
  rm -rf "$WORK/mqtt/data"; mkdir -p "$WORK/mqtt/data"
  rm -f "$WORK/mqtt/passwd"; touch "$WORK/mqtt/passwd"; chmod 600 "$WORK/mqtt/passwd"
  mosquitto_passwd -b "$WORK/mqtt/passwd" edge edge123
  cat >"$WORK/mqtt/mosquitto.conf" <<CONF
per_listener_settings true
persistence true
persistence_location $WORK/mqtt/data/
autosave_interval 1
user root
listener $PORT 127.0.0.1
allow_anonymous true
listener $TLS_PORT 127.0.0.1
allow_anonymous true
cafile $CERTS/ca.crt
certfile $CERTS/server.crt
keyfile $CERTS/server.key
listener $AUTH_PORT 127.0.0.1
allow_anonymous false
password_file $WORK/mqtt/passwd
listener $MTLS_PORT 127.0.0.1
allow_anonymous true
cafile $CERTS/ca.crt
certfile $CERTS/server.crt
keyfile $CERTS/server.key
require_certificate true
use_identity_as_username true
CONF
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
  listeners
  log "PASS"
}

# variant NAME SED...: the shipped example with its source changed by sed expressions, run for a few
# seconds while the publisher sends on the plain listener; the results must arrive and verify.
variant() {
  local name=$1; shift
  local run; run=$(mktemp -d "$WORK/run-$name.XXXX")
  sed "$@" "$ROOT/config/examples/mqtt.toml" >"$run/agent.toml"
  (cd "$run" && exec "$AGENT" --config "$run/agent.toml" run 2>>"$run/agent.log") &
  APID=$!
  sleep 1
  start_publisher 0.05 40
  for _ in $(seq 100); do grep -q "published 40" "$WORK/mqtt/publisher.log" && break; sleep 0.1; done
  sleep 2
  kill -TERM "$APID"; wait "$APID" || true; APID=
  (cd "$run" && "$AGENT" --config "$run/agent.toml" verify >/dev/null)
  local n
  n=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from records where kind=\x27inspection\x27").fetchone()[0])' "$run/data/journal.sqlite")
  [ "$n" -ge 30 ] || { log "$name: only $n of 40 results journaled"; tail -20 "$run/agent.log" >&2; exit 1; }
  log "$name: $n of 40 results journaled, chain verified"
}

# The other listeners and MQTT 5, each with the example changed only in what that listener needs.
listeners() {
  variant tls -e "s|^port = 1883|port = $TLS_PORT\ntls = { ca_file = \"$CERTS/ca.crt\" }|" -e 's|client_id = "example-mqtt-gw"|client_id = "interop-tls"|'
  variant password -e "s|^port = 1883|port = $AUTH_PORT\nusername = \"edge\"\npassword = \"edge123\"|" -e 's|client_id = "example-mqtt-gw"|client_id = "interop-auth"|'
  variant client-certificate -e "s|^port = 1883|port = $MTLS_PORT\ntls = { ca_file = \"$CERTS/ca.crt\", client_cert_file = \"$CERTS/client.crt\", client_key_file = \"$CERTS/client.key\" }|" -e 's|client_id = "example-mqtt-gw"|client_id = "interop-mtls"|'
  variant mqtt5 -e 's|^port = 1883|port = 1883\nprotocol = "5"|' -e 's|client_id = "example-mqtt-gw"|client_id = "interop-v5"|'
}

case "${1:-check}" in
  check) check ;;
  start) ensure_tools; start_broker; start_publisher 0.2 0 ;;
  stop) stop_all ;;
  *) echo "usage: $0 [check|start|stop]" >&2; exit 2 ;;
esac
