#!/usr/bin/env bash
# Interop: shopfloor-agent against two independent OPC UA servers with the same cell address space
# (namespace urn:example:cell1, a part every 0.5 s, trigger written last):
#   python asyncua 2.1.0 (opcua_asyncua_server.py) and node-opcua 2.182.2 (opcua_nodeopcua_server.js).
#
#  1. asyncua, Basic256Sha256 SignAndEncrypt, user operator, anonymous off, with the shipped
#     config/examples/opcua.toml as is: the first connect is refused because the server certificate
#     is not trusted yet and lands in rejected/; the script trusts it the way the example says (mv to
#     trusted/), the agent connects on its own, and inspection records arrive.
#  2. node-opcua on its None endpoint as user operator: the password must travel encrypted with the
#     server certificate (the legacy secret format these servers demand on None).
#  3. node-opcua on Basic256Sha256 SignAndEncrypt, the server pinned by thumbprint.
# Each run: at least 5 inspections, distinct serials SN-nnnnnn, diameters within 25 ± 0.02, OPC UA
# provenance with source and server timestamps, the negotiated security in the log, `verify` passes.
#
#   tests/interop/opcua.sh             # check (starts and stops the servers itself)
#   tests/interop/opcua.sh start|stop  # leave asyncua (--secure, 127.0.0.1:4840) running for the example
#
# Installs what it needs: asyncua into a venv and node-opcua with npm under $INTEROP_HOME (default
# /tmp/shopfloor-interop); openssl, nodejs and npm from Debian. Uses $AGENT (default
# target/debug/shopfloor-agent).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${INTEROP_HOME:-/tmp/shopfloor-interop}
VENV=$WORK/venv
NODE_DIR=$WORK/node-opcua
NODE_OPCUA_VERSION=2.182.2   # the last release that runs on Debian 12's Node 20
AGENT=${AGENT:-$ROOT/target/debug/shopfloor-agent}
PKI=$WORK/opcua/pki
mkdir -p "$WORK/opcua"

log() { echo "[opcua-interop $(date +%H:%M:%S)] $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_tools() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -c 'import asyncua' 2>/dev/null ||
    "$VENV/bin/pip" install -q --disable-pip-version-check asyncua==2.1.0
  if ! [ -f "$NODE_DIR/node_modules/node-opcua/package.json" ]; then
    log "npm install node-opcua@$NODE_OPCUA_VERSION (about 15 s)"
    mkdir -p "$NODE_DIR"
    [ -f "$NODE_DIR/package.json" ] || echo '{"name":"interop-node-opcua","private":true}' >"$NODE_DIR/package.json"
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error "node-opcua@$NODE_OPCUA_VERSION" >&2)
  fi
}

# server_cert DIR URI CN: a self-signed application instance certificate (SAN URI, localhost, 127.0.0.1).
server_cert() {
  local dir=$1 uri=$2 cn=$3
  [ -f "$dir/cert.der" ] && return 0
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -keyout "$dir/key.pem" -out "$dir/cert.pem" \
    -subj "/O=Example Cell1/CN=$cn" \
    -addext "subjectAltName=URI:$uri,DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment,keyCertSign" \
    -addext "extendedKeyUsage=critical,serverAuth,clientAuth" 2>/dev/null
  openssl x509 -in "$dir/cert.pem" -outform der -out "$dir/cert.der"
}

# start NAME PORT CMD...: start a server in its own session, wait for its port, write NAME.pid.
start() {
  local name=$1 port=$2; shift 2
  if port_open "$port"; then log "port $port is busy: stop what runs there first"; exit 1; fi
  setsid "$@" >"$WORK/opcua/$name.log" 2>&1 </dev/null &
  echo $! >"$WORK/opcua/$name.pid"
  for _ in $(seq 300); do port_open "$port" && { log "$name up on $port, pid $(cat "$WORK/opcua/$name.pid")"; return; }; sleep 0.1; done
  log "$name did not start"; cat "$WORK/opcua/$name.log" >&2; exit 1
}

stop() {
  local f
  for f in "$WORK"/opcua/*.pid; do
    [ -f "$f" ] || continue
    kill -TERM -- "-$(cat "$f")" 2>/dev/null || kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

start_asyncua() {
  server_cert "$PKI/asyncua-server" urn:example:cell1:asyncua-server cell1-asyncua
  start asyncua 4840 "$VENV/bin/python" -u "$HERE/opcua_asyncua_server.py" --port 4840 --secure --no-anonymous \
    --cert "$PKI/asyncua-server/cert.der" --key "$PKI/asyncua-server/key.pem"
}

start_node_opcua() {
  server_cert "$PKI/node-opcua-server/own" urn:example:cell1:node-opcua-server cell1-node-opcua
  NODE_PATH="$NODE_DIR/node_modules" start node-opcua 4842 node "$HERE/opcua_nodeopcua_server.js" --port 4842 \
    --no-anonymous --pki-dir "$PKI/node-opcua-server"
}

# run_agent DIR CONFIG SECONDS: run the agent in DIR for SECONDS, then stop it with SIGTERM.
run_agent() {
  local dir=$1 cfg=$2 secs=$3
  (cd "$dir" && exec "$AGENT" --config "$cfg" run 2>>"$dir/agent.log") &
  APID=$!
  sleep "$secs"
  kill -TERM "$APID"; wait "$APID" || true; APID=
}

# check_records DIR POLICY: the journal in DIR holds good OPC UA inspections; the log names POLICY.
check_records() {
  local dir=$1 policy=$2
  (cd "$dir" && "$AGENT" --config "$3" verify >&2)
  grep -q "session to .*($policy" "$dir/agent.log" || { log "no $policy session in the log"; tail -20 "$dir/agent.log" >&2; exit 1; }
  python3 - "$dir/data/journal.sqlite" <<'PY'
import json, re, sqlite3, sys
rows = [json.loads(b) for (b,) in sqlite3.connect(sys.argv[1]).execute(
    "select body from records where kind='inspection' order by seq")]
assert len(rows) >= 5, f"only {len(rows)} inspections"
serials = [r["subject"]["serial"] for r in rows]
assert len(serials) == len(set(serials)), "a part journaled twice"
for r in rows:
    assert re.fullmatch(r"SN-\d{6}", r["subject"]["serial"]), r["subject"]
    v = r["inspection"]["value"]
    assert 24.98 <= v <= 25.02, f"diameter {v}"
    assert r["inspection"]["result"] == "pass", r["inspection"]
    p = r["provenance"]["fields"]["inspection.value"]
    assert p["protocol"] == "opcua" and p["quality"] == "good", p
    assert p["address"] == "nsu=urn:example:cell1;s=Cell1.Station10.MeasuredDiameter", p
    assert "source_timestamp" in p and "server_timestamp" in p, p
print(f"{len(rows)} inspections, serials {serials[0]} .. {serials[-1]}")
PY
}

check() {
  ensure_tools
  [ -x "$AGENT" ] || { log "no agent binary at $AGENT: run cargo build first"; exit 1; }
  trap 'stop; [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null || true' EXIT
  start_asyncua
  start_node_opcua

  # 1. asyncua, the shipped example as is, trust on first connect.
  local run1 run2 run3
  run1=$(mktemp -d "$WORK/opcua/run.XXXX")
  (cd "$run1" && exec "$AGENT" --config "$ROOT/config/examples/opcua.toml" run 2>>"$run1/agent.log") &
  APID=$!
  for _ in $(seq 100); do ls "$run1"/data/pki/opcua/rejected/*.der >/dev/null 2>&1 && break; sleep 0.1; done
  local rejected
  rejected=$(ls "$run1"/data/pki/opcua/rejected/*.der) || { log "the server certificate did not land in rejected/"; exit 1; }
  grep -q "To trust it: mv" "$run1/agent.log" || { sleep 1; grep -q "To trust it: mv" "$run1/agent.log"; } ||
    { log "the log does not say how to trust the server"; cat "$run1/agent.log" >&2; exit 1; }
  log "refused as expected; trusting $(basename "$rejected")"
  mv "$rejected" "$run1/data/pki/opcua/trusted/"
  sleep 8
  kill -TERM "$APID"; wait "$APID" || true; APID=
  check_records "$run1" Basic256Sha256 "$ROOT/config/examples/opcua.toml"

  # 2. node-opcua, None endpoint, user name with the encrypted legacy secret.
  run2=$(mktemp -d "$WORK/opcua/run.XXXX")
  sed -e 's|127.0.0.1:4840|127.0.0.1:4842|' -e 's|security_policy = "basic256sha256"|security_policy = "none"|' \
    -e 's|security_mode = "sign_and_encrypt"|security_mode = "none"|' \
    "$ROOT/config/examples/opcua.toml" >"$run2/opcua-none.toml"
  run_agent "$run2" "$run2/opcua-none.toml" 7
  check_records "$run2" None "$run2/opcua-none.toml"

  # 3. node-opcua, SignAndEncrypt, pinned by thumbprint (no manual trust).
  run3=$(mktemp -d "$WORK/opcua/run.XXXX")
  local thumb
  thumb=$(openssl x509 -in "$PKI/node-opcua-server/own/cert.pem" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')
  sed -e 's|127.0.0.1:4840|127.0.0.1:4842|' \
    -e "s|^sampling_interval_ms = 50|sampling_interval_ms = 50\nserver_thumbprint = \"$thumb\"|" \
    "$ROOT/config/examples/opcua.toml" >"$run3/opcua-pinned.toml"
  run_agent "$run3" "$run3/opcua-pinned.toml" 8
  check_records "$run3" Basic256Sha256 "$run3/opcua-pinned.toml"
  log "PASS"
}

case "${1:-check}" in
  check) check ;;
  start) ensure_tools; start_asyncua ;;
  stop) stop ;;
  *) echo "usage: $0 [check|start|stop]" >&2; exit 2 ;;
esac
