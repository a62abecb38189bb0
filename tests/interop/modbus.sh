#!/usr/bin/env bash
# Interop: shopfloor-agent against pymodbus, an independent Modbus TCP server, with the shipped
# example config/examples/modbus.toml, cross-checked by mbpoll (libmodbus, an independent client).
#
#   tests/interop/modbus.sh            # check (starts and stops the device itself)
#   tests/interop/modbus.sh start|stop # leave the device running on 127.0.0.1:5020 for manual use
#
# Installs what it needs: a Python venv with pymodbus 3.16.1 under $INTEROP_HOME (default
# /tmp/shopfloor-interop), and Debian's mbpoll. Uses $AGENT (default target/debug/shopfloor-agent).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${INTEROP_HOME:-/tmp/shopfloor-interop}
VENV=$WORK/venv
PORT=5020
AGENT=${AGENT:-$ROOT/target/debug/shopfloor-agent}
mkdir -p "$WORK"

log() { echo "[modbus-interop $(date +%H:%M:%S)] $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_tools() {
  if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
  "$VENV/bin/python" -c 'import pymodbus, sys; sys.exit(pymodbus.__version__ != "3.16.1")' 2>/dev/null ||
    "$VENV/bin/pip" install -q --disable-pip-version-check pymodbus==3.16.1
  command -v mbpoll >/dev/null || {
    log "installing mbpoll"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mbpoll ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mbpoll; }
  }
}

start_device() {
  if port_open "$PORT"; then log "port $PORT is busy: stop what runs there first"; exit 1; fi
  "$VENV/bin/python" -u "$HERE/modbus_server.py" --port "$PORT" --period 0.5 --seed 7 \
    >"$WORK/modbus.log" 2>&1 </dev/null &
  echo $! >"$WORK/modbus.pid"
  for _ in $(seq 100); do port_open "$PORT" && { log "pymodbus up, pid $(cat "$WORK/modbus.pid")"; return; }; sleep 0.1; done
  log "pymodbus did not start:"; tail "$WORK/modbus.log" >&2; exit 1
}

stop_device() {
  [ -f "$WORK/modbus.pid" ] && kill "$(cat "$WORK/modbus.pid")" 2>/dev/null || true
  rm -f "$WORK/modbus.pid"
}

check() {
  ensure_tools
  [ -x "$AGENT" ] || { log "no agent binary at $AGENT: run cargo build first"; exit 1; }
  start_device
  trap 'stop_device; [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null || true' EXIT
  RUN=$(mktemp -d "$WORK/run.XXXX")
  cd "$RUN"
  "$AGENT" --config "$ROOT/config/examples/modbus.toml" run 2>"$RUN/agent.log" &
  APID=$!
  # Wait for six parts (two records each).
  for _ in $(seq 200); do
    n=$("$VENV/bin/python" - <<'PY' 2>/dev/null || echo 0
import sqlite3
c = sqlite3.connect("file:data/journal.sqlite?mode=ro", uri=True)
print(c.execute("select count(*) from records where kind='inspection'").fetchone()[0])
PY
)
    [ "${n:-0}" -ge 12 ] && break
    sleep 0.2
  done
  kill -TERM "$APID"; wait "$APID" || true; APID=
  "$AGENT" --config "$ROOT/config/examples/modbus.toml" verify
  WO_MBPOLL=$(mbpoll -m tcp -p "$PORT" -a 1 -0 -1 -t 4:hex -r 16 -c 10 127.0.0.1 2>/dev/null |
    awk -F'\t' '/^\[/{print $2}' | tr '\n' ' ')
  "$VENV/bin/python" - "$WO_MBPOLL" <<'PY'
import json, sqlite3, sys
rows = [json.loads(b) for (b,) in sqlite3.connect("data/journal.sqlite").execute(
    "select body from records where kind='inspection' order by seq")]
by = {}
for r in rows:
    by.setdefault(r["subject"]["serial"], {})[r["inspection"]["characteristic"]] = r
assert len(by) >= 5, f"expected at least 5 parts, got {len(by)}"
both = [p for p in by.values() if len(p) == 2]
assert len(both) >= 5, "each part has its ABCD and CDAB record"
for p in both:
    a, c = p["OD-1"], p["OD-1 (CDAB cross-check)"]
    assert a["inspection"]["value"] == c["inspection"]["value"], (a, c)
    v = a["inspection"]["value"]
    assert 24.97 <= v <= 25.03, v
    assert a["inspection"]["result"] in ("pass", "fail")
    assert a["provenance"]["fields"]["inspection.value"]["address"] == "unit=1 holding=0 f32 abcd"
    assert c["provenance"]["fields"]["inspection.value"]["address"] == "unit=1 holding=2 f32 cdab"
# mbpoll (libmodbus) reads the work order registers; the agent's decoding must agree.
words = [int(w, 16) for w in sys.argv[1].split()]
text = b"".join(w.to_bytes(2, "big") for w in words).split(b"\0")[0].decode().strip()
orders = {r["subject"].get("work_order") for r in rows if r["inspection"]["characteristic"] == "OD-1"}
assert text in orders, (text, orders)
# The file sink wrote every journaled record to out/records.jsonl, in order, with its chain.
lines = [json.loads(l) for l in open("out/records.jsonl")]
seqs = [s for (s,) in sqlite3.connect("data/journal.sqlite").execute("select seq from records order by seq")]
assert [l["seq"] for l in lines] == seqs, "out/records.jsonl holds every record once, in order"
print(f"OK: {len(both)} parts, ABCD == CDAB for each, work order {text!r} matches mbpoll, "
      f"{len(lines)} records in out/records.jsonl")
PY
  log "PASS"
}

case "${1:-check}" in
  check) check ;;
  start) ensure_tools; start_device ;;
  stop) stop_device ;;
  *) echo "usage: $0 [check|start|stop]" >&2; exit 2 ;;
esac
