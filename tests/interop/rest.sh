#!/usr/bin/env bash
# Interop: shopfloor-agent against SAP CAP (an independent OData v4 implementation) with the shipped
# example config/examples/rest.toml, while the ERP changes rows (ERP_CHURN_MS).
#
#   tests/interop/rest.sh            # check (starts and stops the ERP itself)
#   tests/interop/rest.sh start|stop # leave the ERP running on 127.0.0.1:4004 for manual use
#
# Installs @sap/cds 9 + @cap-js/sqlite 2 with npm under $INTEROP_HOME/cap (the first time compiles
# better-sqlite3: needs g++, make, python3; about 75 s). Uses $AGENT (default target/debug/shopfloor-agent).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${INTEROP_HOME:-/tmp/shopfloor-interop}
CAP=$WORK/cap
PORT=4004
AGENT=${AGENT:-$ROOT/target/debug/shopfloor-agent}
mkdir -p "$WORK"

log() { echo "[rest-interop $(date +%H:%M:%S)] $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_cap() {
  mkdir -p "$CAP/db" "$CAP/srv"
  cp "$HERE/cap-erp/package.json" "$HERE/cap-erp/server.js" "$CAP/"
  cp "$HERE"/cap-erp/db/*.cds "$CAP/db/"
  cp "$HERE"/cap-erp/srv/* "$CAP/srv/"
  if ! (cd "$CAP" && node -e 'require("@sap/cds"); require("@cap-js/sqlite"); new (require("better-sqlite3"))(":memory:")' 2>/dev/null); then
    log "npm install into $CAP (compiles better-sqlite3)"
    (cd "$CAP" && npm install --no-audit --no-fund --loglevel=error --nodedir=/usr >&2)
  fi
}

start_erp() {
  if port_open "$PORT"; then log "port $PORT is busy: stop what runs there first"; exit 1; fi
  python3 "$HERE/cap-erp/gen_csv.py" "$CAP/db/data" --workorders 400 --calibrations 120 >&2
  # The subshell execs node, so $! is node's own PID (stopped by PID at the end).
  (cd "$CAP" && ERP_CHURN_MS=${ERP_CHURN_MS:-300} exec node "$CAP/node_modules/@sap/cds/bin/serve.js" --port "$PORT") \
    >"$WORK/cap.log" 2>&1 </dev/null &
  echo $! >"$WORK/cap.pid"
  for _ in $(seq 600); do port_open "$PORT" && { log "CAP up, pid $(cat "$WORK/cap.pid")"; return; }; sleep 0.1; done
  log "CAP did not start:"; tail -20 "$WORK/cap.log" >&2; exit 1
}

stop_erp() {
  [ -f "$WORK/cap.pid" ] && kill "$(cat "$WORK/cap.pid")" 2>/dev/null || true
  rm -f "$WORK/cap.pid"
}

check() {
  command -v node >/dev/null || { log "node is missing: install nodejs and npm"; exit 1; }
  [ -x "$AGENT" ] || { log "no agent binary at $AGENT: run cargo build first"; exit 1; }
  ensure_cap
  start_erp
  trap 'stop_erp; [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null || true' EXIT
  RUN=$(mktemp -d "$WORK/run.XXXX")
  cd "$RUN"
  export ERP_PASSWORD=erp123
  "$AGENT" --config "$ROOT/config/examples/rest.toml" run 2>"$RUN/agent.log" &
  APID=$!
  sleep "${RUN_SECONDS:-12}"
  kill -TERM "$APID"; wait "$APID" || true; APID=
  # Restart once: it must resume at the committed watermark, not read everything again.
  "$AGENT" --config "$ROOT/config/examples/rest.toml" run 2>>"$RUN/agent.log" &
  APID=$!
  sleep 4
  kill -TERM "$APID"; wait "$APID" || true; APID=
  "$AGENT" --config "$ROOT/config/examples/rest.toml" verify
  curl -s -u erp-reader:erp123 "http://127.0.0.1:$PORT/odata/v4/erp/WorkOrders?\$top=1000&\$select=ID,modifiedAt" >"$RUN/final.json"
  python3 - "$RUN/final.json" <<'PY'
import json, sqlite3, sys
final = {r["ID"]: r["modifiedAt"] for r in json.load(open(sys.argv[1]))["value"]}
assert len(final) == 400, len(final)
db = sqlite3.connect("data/journal.sqlite")
rows = db.execute("select kind, dedupe_key, body from records where kind in ('traveler','calibration')").fetchall()
cal = [r for r in rows if r[0] == "calibration"]
trav = [r for r in rows if r[0] == "traveler"]
assert len(cal) == 120, f"120 calibration records, got {len(cal)}"
# The dedupe key is rule:ID/modifiedAt: one record per version of a row.
keys = [k for _, k, _ in trav]
assert len(keys) == len(set(keys)), "a version journaled twice"
versions = {}
for k in keys:
    rid, at = k.split(":", 1)[1].split("/", 1)
    versions.setdefault(rid, set()).add(at)
assert set(versions) == set(final), "every work order is journaled"
# The ERP goes on changing rows after the agent stopped: only versions up to the committed watermark
# (the last row the agent journaled) can be required.
mark = db.execute("select value from source_state where source='erp' and key='watermark:WorkOrders'").fetchone()[0]
missing = [rid for rid, at in final.items() if at not in versions[rid] and at <= mark]
assert not missing, f"the version of {len(missing)} rows up to the watermark {mark} is missing"
late = sum(1 for rid, at in final.items() if at > mark)
for _, _, body in trav[:50]:
    r = json.loads(body)
    assert r["kind"] == "traveler" and r["traveler"]["status"] in ("queued", "started", "completed", "on_hold"), r
changed = len(trav) - 400
print(f"OK: 400 work orders + {changed} changed versions as travelers (each once; every version up to the "
      f"watermark present; {late} changed after the agent stopped), 120 calibrations")
PY
  log "PASS"
}

case "${1:-check}" in
  check) check ;;
  start) ensure_cap; start_erp ;;
  stop) stop_erp ;;
  *) echo "usage: $0 [check|start|stop]" >&2; exit 2 ;;
esac
