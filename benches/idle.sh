#!/bin/sh
# Idle resident memory: starts `run` with a file sink and the metrics endpoint (no sources), waits,
# and reads VmRSS and where it goes from /proc/<pid>/status and smaps. Three runs; prints each and
# the range.
#
#   benches/idle.sh                                        # target/min/shopfloor-agent (cargo build --profile min)
#   benches/idle.sh target/x86_64-unknown-linux-musl/min/shopfloor-agent   # the static build (cross/build.sh)
#   IDLE_SECONDS=30 IDLE_RUNS=5 benches/idle.sh BIN
#
# Not part of CI: the figure is only meaningful on a quiet machine.
set -eu
cd "$(dirname "$0")/.."
bin=${1:-target/min/shopfloor-agent}
seconds=${IDLE_SECONDS:-5}
runs=${IDLE_RUNS:-3}
[ -x "$bin" ] || { echo "$bin is missing: build it first (cargo build --profile min)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/agent.toml" <<TOML
[agent]
gateway_id = "idle-check"
data_dir = "$work/data"
[metrics]
enabled = true
listen = "127.0.0.1:$port"
[sinks.archive]
type = "file"
path = "$work/out/records.jsonl"
TOML
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }
all=""
i=1
while [ "$i" -le "$runs" ]; do
  rm -rf "$work/data" "$work/out"
  "$bin" --config "$work/agent.toml" run 2>"$work/run.log" &
  pid=$!
  sleep "$seconds"
  kill -0 "$pid" 2>/dev/null || { echo "the agent stopped:" >&2; cat "$work/run.log" >&2; exit 1; }
  rss=$(kib VmRSS "$pid")
  # Resident KiB per mapping, summed by what is mapped: the binary, each shared library, heap,
  # stacks, and anonymous memory (malloc arenas, thread stacks).
  parts=$(awk -v bin="$(readlink -f "$bin")" '
    /^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "") ? "anonymous" : $6; if (name == bin) name = "binary"; sub(/.*\//, "", name) }
    /^Rss:/ { r[name] += $2 }
    END { for (n in r) if (r[n] >= 64) printf "%s %d KiB, ", n, r[n] }' "/proc/$pid/smaps")
  echo "run $i: VmRSS $rss KiB ($(awk "BEGIN {printf \"%.2f\", $rss / 1024}") MiB): anon $(kib RssAnon "$pid") KiB, file $(kib RssFile "$pid") KiB, $(ls "/proc/$pid/task" | wc -l) threads; ${parts%, }"
  kill -TERM "$pid"
  wait "$pid" || { echo "the agent did not stop cleanly:" >&2; cat "$work/run.log" >&2; exit 1; }
  all="$all $rss"
  i=$((i + 1))
done
echo "$all" | awk -v s="$seconds" -v b="$bin" '{min = $1; max = $1; for (i = 2; i <= NF; i++) { if ($i < min) min = $i; if ($i > max) max = $i }
  printf "idle VmRSS after %d s (%s): %.2f-%.2f MiB over %d runs\n", s, b, min / 1024, max / 1024, NF}'
