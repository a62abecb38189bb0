#!/bin/sh
# Soak: the end-to-end load run (benches/e2e.sh) for 30 minutes at 1,000 records/s, then checks
# that the agent's resident memory grew by less than 5 % and its open file descriptors did not
# grow, and that nothing was lost. The figures go to a report file (one JSON line).
#
#   benches/soak.sh                               # 1800 s, report in target/soak/report.json
#   SOAK_SECONDS=600 SOAK_RATE=2000 benches/soak.sh
#
# Not part of CI (it takes half an hour). Exit status 1 when a check fails.
set -eu
cd "$(dirname "$0")/.."
seconds=${SOAK_SECONDS:-1800}
rate=${SOAK_RATE:-1000}
report=${SOAK_REPORT:-target/soak/report.json}
benches/e2e.sh --seconds "$seconds" --rate "$rate" --report "$report" >/dev/null
python3 - "$report" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read())
checks = [
    ("resident memory growth under 5 %", r["rss_growth_pct"] < 5.0, f'{r["rss_growth_pct"]} %'),
    ("no file descriptor growth", r["fds_end"] <= r["fds_start"], f'{r["fds_start"]} -> {r["fds_end"]}'),
    ("no record lost", r["records_lost"] == 0, str(r["lost_detail"])),
    ("the agent stopped cleanly", r["agent_exit_ok"], str(r["agent_exit_ok"])),
]
print(f'soak: {r["seconds"]} s at {r["offered_per_s"]} records/s offered, {r["delivered_per_s"]} delivered; '
      f'latency p50 {r["latency_ms_p50"]} ms, p99 {r["latency_ms_p99"]} ms; '
      f'{r["cpu_s_per_min"]} CPU-s/min; RSS {r["rss_mib_steady"]} MiB steady, {r["rss_mib_peak"]} MiB peak ({r["machine"]})')
failed = 0
for name, ok, detail in checks:
    print(f'  {"ok  " if ok else "FAIL"} {name}: {detail}')
    failed += not ok
print(f'report: {sys.argv[1]}')
sys.exit(1 if failed else 0)
PY
