#!/usr/bin/env bash
# Interop: the metrology parsers against independent readers.
#  - AQDEF: every .dfq sample in tests/cases/metrology/aqdef/ read by PyPI's aqdefreader 1.3.0 and
#    by the agent's parser (examples/metrology-dump.rs): the same values per part and
#    characteristic. aqdefreader drops compact-form values whose attribute is 255 or 256; the
#    agent keeps them (the samples have none, so the two must agree exactly). A file aqdefreader
#    itself cannot read (it fails on a time field before any value, in the attributive sample) is
#    named and not compared; at least four must be.
#  - QIF: every sample in tests/cases/metrology/qif/, a large generated results document and the
#    file the demo's CMM writes (plant-sim's cmm-qif example) validate against the QIF 3.0 schema (xmllint, offline), and the agent reads as many
#    measurements from each as the schema-valid document holds (counted with Python's
#    ElementTree).
#
#   tests/interop/metrology.sh    # check
#
# Installs what it needs: Debian's libxml2-utils, and aqdefreader in a venv under $INTEROP_HOME
# (default /tmp/shopfloor-interop). The QIF schemas are tests/interop/qif-xsd/ (see its README).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${INTEROP_HOME:-/tmp/shopfloor-interop}
VENV=$WORK/venv
DUMP=${DUMP:-$ROOT/target/debug/examples/metrology-dump}
mkdir -p "$WORK/metrology"
log() { echo "[metrology-interop $(date +%H:%M:%S)] $*" >&2; }

command -v xmllint >/dev/null || { log "installing libxml2-utils"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libxml2-utils; }
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# aqdefreader imports numpy, pandas, chardet and dateutil without declaring them.
"$VENV/bin/python" -c 'import aqdefreader' 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check aqdefreader==1.3.0 numpy==2.4.6 pandas==3.1.1 chardet==7.7.0 python-dateutil==4.0.0
[ -x "$DUMP" ] || (cd "$ROOT" && cargo build -j2 --locked --example metrology-dump)

log "AQDEF: aqdefreader and the agent on the same files"
compared=0
for f in "$ROOT"/tests/cases/metrology/aqdef/*.dfq; do
  "$DUMP" "$f" > "$WORK/metrology/agent.jsonl"
  set +e
  "$VENV/bin/python" - "$f" "$WORK/metrology/agent.jsonl" <<'PY'
import contextlib, io, json, sys
from aqdefreader import read_dfq_file
path, agent = sys.argv[1], sys.argv[2]
name = path.rsplit("/", 1)[-1]
try:
    with contextlib.redirect_stdout(io.StringIO()):   # the reader prints its progress
        dfq = read_dfq_file(path)
except Exception as e:  # its own limits: said, and counted by the caller
    print(f"--   {name}: aqdefreader cannot read it ({type(e).__name__}: {e}); not compared")
    sys.exit(2)
theirs = []
for part in dfq.get_parts():
    try:
        number = part.get_data("K1001")
    except KeyError:
        number = None
    for ch in part.get_characteristics():
        code = ch.get_data("K2001") if "K2001" in ch.get_data_keys() else None
        for m in ch.get_measurements():
            if m.value is not None:
                theirs.append((str(number), str(code), float(m.value)))
ours = []
for line in open(agent):
    r = json.loads(line)
    if r["value"] is None:
        continue
    ours.append((str(r["part_number"] and r["part_number"]["value"]),
                 str(r["characteristic"] and r["characteristic"]["value"]),
                 float(r["value"]["value"])))
theirs.sort(); ours.sort()
if theirs != ours:
    print(f"FAIL {name}: aqdefreader {len(theirs)} values, agent {len(ours)}")
    for a, b in zip(theirs, ours):
        if a != b:
            print(f"  first difference: aqdefreader {a}, agent {b}")
            break
    sys.exit(1)
print(f"ok   {name}: {len(ours)} values agree")
PY
  rc=$?
  set -e
  case $rc in 0) compared=$((compared + 1)) ;; 2) ;; *) exit 1 ;; esac
done
[ "$compared" -ge 4 ] || { echo "FAIL only $compared AQDEF files compared"; exit 1; }

log "QIF: the samples and a generated document against the QIF 3.0 schema"
XSD=$HERE/qif-xsd/QIFApplications/QIFDocument.xsd
"$VENV/bin/python" - "$WORK/metrology/generated.qif" <<'PY'
# A results document of 20 parts with 50 diameters each, in the shape the agent's tests generate.
import sys
parts, per = 20, 50
out = ['<?xml version="1.0" encoding="UTF-8"?>',
       '<QIFDocument xmlns="http://qifstandards.org/xsd/qif3" versionQIF="3.0.0" idMax="100000">',
       '<QPId>8a4b1c2e-3f40-4a5b-9c6d-7e8f90a1b2c3</QPId>',
       '<StandardsDefinitions n="1"><Standard id="1"><Organization><StandardsOrganizationEnum>ASME</StandardsOrganizationEnum></Organization><Designator>Y14.5</Designator></Standard></StandardsDefinitions>',
       '<FileUnits><PrimaryUnits><LinearUnit><SIUnitName>meter</SIUnitName><UnitName>mm</UnitName></LinearUnit></PrimaryUnits></FileUnits>',
       '<Characteristics><FormalStandardId>1</FormalStandardId><CharacteristicDefinitions n="%d">' % per]
i = 1
def nid():
    global i
    i += 1
    return i
defs, noms, items = [], [], []
for c in range(per):
    d, n, it = nid(), nid(), nid()
    defs.append(d); noms.append(n); items.append(it)
    out.append('<DiameterCharacteristicDefinition id="%d"><Tolerance><MaxValue>0.02</MaxValue><MinValue>-0.02</MinValue><DefinedAsLimit>false</DefinedAsLimit></Tolerance></DiameterCharacteristicDefinition>' % d)
out.append('</CharacteristicDefinitions><CharacteristicNominals n="%d">' % per)
for c in range(per):
    out.append('<DiameterCharacteristicNominal id="%d"><CharacteristicDefinitionId>%d</CharacteristicDefinitionId><TargetValue>25</TargetValue></DiameterCharacteristicNominal>' % (noms[c], defs[c]))
out.append('</CharacteristicNominals><CharacteristicItems n="%d">' % per)
for c in range(per):
    out.append('<DiameterCharacteristicItem id="%d"><Name>D%d</Name><CharacteristicNominalId>%d</CharacteristicNominalId></DiameterCharacteristicItem>' % (items[c], c, noms[c]))
out.append('</CharacteristicItems></Characteristics><Results><MeasurementResultsSet n="%d">' % parts)
comps = [nid() for _ in range(parts)]
for p in range(parts):
    out.append('<MeasurementResults id="%d"><MeasuredCharacteristics><CharacteristicMeasurements n="%d">' % (nid(), per))
    for c in range(per):
        out.append('<DiameterCharacteristicMeasurement id="%d"><Status><CharacteristicStatusEnum>PASS</CharacteristicStatusEnum></Status><CharacteristicItemId>%d</CharacteristicItemId><Value>25.00%d</Value></DiameterCharacteristicMeasurement>' % (nid(), items[c], c % 10))
    out.append('</CharacteristicMeasurements></MeasuredCharacteristics><InspectionStatus><InspectionStatusEnum>PASS</InspectionStatusEnum></InspectionStatus><ActualComponentIds n="1"><Id>%d</Id></ActualComponentIds></MeasurementResults>' % comps[p])
out.append('</MeasurementResultsSet><ActualComponentSets n="1"><ActualComponentSet n="%d">' % parts)
for p in range(parts):
    out.append('<ActualComponent id="%d"><SerialNumber>SN-%06d</SerialNumber><Status><InspectionStatusEnum>PASS</InspectionStatusEnum></Status></ActualComponent>' % (comps[p], p))
out.append('</ActualComponentSet></ActualComponentSets></Results></QIFDocument>')
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
# The file the demo's CMM drops for each part it measures (crates/plant-sim/src/cmm.rs).
(cd "$ROOT" && cargo run -q -j2 --locked -p plant-sim --example cmm-qif) > "$WORK/metrology/demo-cmm.qif"
for f in "$ROOT"/tests/cases/metrology/qif/*.QIF "$ROOT"/tests/cases/metrology/qif/*.qif "$WORK/metrology/generated.qif" "$WORK/metrology/demo-cmm.qif"; do
  name=$(basename "$f")
  xmllint --noout --nonet --schema "$XSD" "$f" 2>"$WORK/metrology/xmllint.err" || { echo "FAIL $name: not valid QIF 3.0"; cat "$WORK/metrology/xmllint.err"; exit 1; }
  ours=$("$DUMP" "$f" | wc -l)
  theirs=$("$VENV/bin/python" -c '
import sys, xml.etree.ElementTree as ET
print(sum(1 for e in ET.parse(sys.argv[1]).iter() if e.tag.endswith("CharacteristicMeasurement")))' "$f")
  [ "$ours" = "$theirs" ] || { echo "FAIL $name: schema-valid with $theirs characteristic measurements, the agent read $ours"; exit 1; }
  echo "ok   $name: valid QIF 3.0, $ours measurements"
done
log "metrology interop passed"
