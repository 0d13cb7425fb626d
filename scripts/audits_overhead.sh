#!/usr/bin/env bash
# What audits cost: `latefill run` of a day of ROWS rows (5,000,000) through the
# default pipeline, without audits and with six (every built-in and a custom SQL
# audit), release build, whole processes, medians of RUNS runs. The day is generated
# once; each timed run recomputes it into the same target (nothing was appended, so
# the run replaces the partition whole).
#
# RESULT=rows instead writes the day's rows themselves (a projection, 5,000,000 rows
# out), audited by five checks that read every row of the result (not_null,
# accepted_values, row_count, compare rows_out = rows_in, custom SQL): the case where
# holding the result once matters.
#
#   bash scripts/audits_overhead.sh
#   RESULT=rows bash scripts/audits_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-5000000}
RUNS=${RUNS:-5}
source scripts/release_bin.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
default_pipeline "$work/plain.toml"
if [[ "${RESULT:-groups}" == rows ]]; then
  python3 - "$work/plain.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r'sql = """.*?"""', 'sql = "SELECT type, full_name, version, event_time FROM source"', text, flags=re.S)
open(path, "w").write(text)
PY
  cp "$work/plain.toml" "$work/audited.toml"
  cat >> "$work/audited.toml" <<'TOML'

[[audit]]
not_null = ["type", "version"]
[[audit]]
accepted_values = { column = "type", values = ["iphone", "galaxy", "pixel", "oneplus", "xperia", "htc"] }
[[audit]]
row_count = { min = 1 }
[[audit]]
compare = "rows_out = rows_in"
[[audit]]
name = "no empty name"
sql = "SELECT * FROM result WHERE full_name = ''"
TOML
else
cp "$work/plain.toml" "$work/audited.toml"
cat >> "$work/audited.toml" <<'TOML'

[[audit]]
not_null = ["type", "devices"]
[[audit]]
unique = ["type", "version", "event_time"]
[[audit]]
accepted_values = { column = "type", values = ["iphone", "galaxy", "pixel", "oneplus", "xperia", "htc"] }
[[audit]]
row_count = { min = 1 }
[[audit]]
compare = "rows_out <= rows_in"
[[audit]]
name = "no empty group"
sql = "SELECT * FROM result WHERE devices < 1"
TOML
fi
"$bin" generate --table "$work/devices" --date 2024-01-01 --rows "$ROWS" --seed 1 >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for config in plain audited; do
  "$bin" run --config "$work/$config.toml" --date 2024-01-01 --no-backfill >/dev/null
  times=()
  for _ in $(seq "$RUNS"); do
    start=$(date +%s%N)
    "$bin" run --config "$work/$config.toml" --date 2024-01-01 --no-backfill --format json >/dev/null
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
  done
  m=$(printf '%s\n' "${times[@]}" | median)
  echo "$config: ${times[*]} ms, median $m ms"
  eval "median_$config=$m"
done
awk -v a="$median_audited" -v b="$median_plain" \
  'BEGIN { printf "the audits add %.1f%% (%d ms against %d ms)\n", (a - b) * 100 / b, a, b }'
