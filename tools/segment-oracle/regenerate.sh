#!/usr/bin/env bash
# Regenerate tests/segment/golden.json by running Segment's published packages on the corpora in
# corpus.py. Needs node and npm (the npm registry); pytest itself never needs node.
#   bash tools/segment-oracle/regenerate.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/oracle.js" "$work/"
cd "$work"
npm install --no-audit --no-fund --loglevel=error >/dev/null
# A full install of action-destinations fails on one missing AWS dependency: take the package
# itself and load only the Metronome destination (and the dayjs setup it requires).
version="$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import corpus; print(corpus.ACTION_DESTINATIONS)' "$here")"
npm pack "@segment/action-destinations@$version" --loglevel=error >/dev/null
tar xzf "segment-action-destinations-$version.tgz" package/dist/destinations/metronome package/dist/lib/dayjs.js
python3 "$here/corpus.py" > corpus.json
mkdir -p "$root/tests/segment"
node oracle.js corpus.json package/dist/destinations/metronome > "$root/tests/segment/golden.json"
python3 - "$root/tests/segment/golden.json" <<'PY'
import json, sys
golden = json.load(open(sys.argv[1]))
parsed = sum(t["parsed"] for t in golden["triggers"])
print(f"{len(golden['triggers'])} triggers ({parsed} parsed by Segment) x {len(golden['records'])} records, "
      f"{len(golden['directives'])} directives, {len(golden['bodies'])} subscriptions x "
      f"{len(golden['body_records'])} records -> {sys.argv[1]}")
PY
