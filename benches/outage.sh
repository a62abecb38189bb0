#!/bin/sh
# Memory through a QMS outage: the end-to-end load run (benches/e2e.sh) at 1,000 records/s with the
# QMS answering 503 to every request for 10 minutes (after one minute of normal delivery), then
# delivering again. Checks that the agent's resident memory grew by less than 10 % from the end of
# the outage's first minute to its end (the backlog grows in the journal on disk all along, so
# memory must not), that the backlog drained and nothing was lost. One JSON line goes to the report.
#
#   benches/outage.sh                      # 60 s, then 600 s of 503, then 120 s; target/outage/report.json
#   OUTAGE_SECONDS=120 benches/outage.sh   # a shorter outage
#
# The agent runs with the environment the systemd unit gives it (its Environment= lines: a fixed
# glibc mmap threshold); OUTAGE_ENV=none runs it with glibc's defaults instead.
#
# Not part of CI (it takes 13 minutes). Exit status 1 when a check fails.
set -eu
cd "$(dirname "$0")/.."
if [ "${OUTAGE_ENV:-unit}" = unit ]; then
    for assignment in $(sed -n 's/^Environment=//p' systemd/shopfloor-agent.service); do
        export "$assignment"
        echo "outage: $assignment (as systemd/shopfloor-agent.service sets it)"
    done
fi
outage=${OUTAGE_SECONDS:-600}
rate=${OUTAGE_RATE:-1000}
report=${OUTAGE_REPORT:-target/outage/report.json}
benches/e2e.sh --seconds $((60 + outage + 120)) --rate "$rate" --outage-at 60 --outage-for "$outage" \
    --report "$report" >/dev/null
python3 - "$report" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read())
o = r["outage"]
checks = [
    ("resident memory growth under 10 % through the outage", o["growth_pct"] < 10.0,
     f'{o["rss_mib_first_minute"]} -> {o["rss_mib_end"]} MiB ({o["growth_pct"]} %)'),
    ("the QMS refused during the outage", o["answers_503"] > 0, f'{o["answers_503"]} answers 503'),
    ("no record lost", r["records_lost"] == 0, str(r["lost_detail"])),
    ("the agent stopped cleanly", r["agent_exit_ok"], str(r["agent_exit_ok"])),
]
print(f'outage: {o["for_s"]:.0f} s of 503 from second {o["from_s"]:.0f}, {r["offered_per_s"]} records/s offered; '
      f'RSS {o["rss_mib_first_minute"]} MiB after its first minute, {o["rss_mib_end"]} MiB at its end, '
      f'{o["rss_mib_after_drain"]} MiB after the drain; peak {r["rss_mib_peak"]} MiB ({r["machine"]})')
failed = 0
for name, ok, detail in checks:
    print(f'  {"ok  " if ok else "FAIL"} {name}: {detail}')
    failed += not ok
print(f'report: {sys.argv[1]}')
sys.exit(1 if failed else 0)
PY
