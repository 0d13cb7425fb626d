#!/usr/bin/env bash
# Partitions larger than memory: one day of ROWS rows (default 30,000,000) grouped
# into GROUP_COUNT groups (default 2,000,000), processed with no memory limit and under
# `--memory-limit LIMIT` (default 256MB), RUNS times each (default 3): the whole
# process's time and peak RSS (GNU time), the transform's memory peak as DataFusion
# accounts it (`memory_peak` of the run's JSON), and whether the two targets hold
# the same rows (checked with polars when a Python with polars and deltalake is
# found: BENCH_VENV, else the tools' venv).
#
#   bash scripts/memory_limit.sh
#   ROWS=3000000 GROUP_COUNT=200000 LIMIT=32MB bash scripts/memory_limit.sh
#   LATEFILL_BIN=path/to/latefill bash scripts/memory_limit.sh
#
# Release build (scripts/release_bin.sh). Spill files go to TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/release_bin.sh

rows=${ROWS:-30000000}
groups=${GROUP_COUNT:-2000000}
limit=${LIMIT:-256MB}
runs=${RUNS:-3}
day=2024-01-01
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" generate --table "$work/devices" --date "$day" --rows "$rows" --seed 1 >/dev/null
# count and sum of the row numbers do not depend on which row gets which number:
# every run computes the same rows.
cat >"$work/pipeline.toml" <<EOF
name = "many_groups"
[source]
table = "devices"
partition_column = "event_time"
[target]
table = "out"
[state]
table = "state"
[transform]
sql = """
SELECT rn % $groups AS g, count(*) AS n, sum(rn) AS s, event_time
FROM (SELECT CAST(row_number() OVER () AS BIGINT) AS rn, event_time FROM source)
GROUP BY rn % $groups, event_time
"""
EOF

# One run into a fresh target: "<seconds> <peak RSS KB> <memory_peak bytes>".
run_once() {
  rm -rf "$work/out" "$work/state"
  /usr/bin/time -f "%e %M" -o "$work/time" \
    "$bin" run --config "$work/pipeline.toml" --date "$day" --format json "$@" >"$work/run.json"
  local peak
  peak=$(tail -n 1 "$work/run.json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["memory_peak"])')
  echo "$(cat "$work/time") $peak"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

measure() {
  local label=$1
  shift
  : >"$work/runs"
  for _ in $(seq "$runs"); do run_once "$@" >>"$work/runs"; done
  local secs rss peak
  secs=$(cut -d' ' -f1 "$work/runs" | median)
  rss=$(cut -d' ' -f2 "$work/runs" | median)
  peak=$(cut -d' ' -f3 "$work/runs" | median)
  printf "%-22s %8s s %10s MB %12s MB\n" "$label" "$secs" "$((rss / 1024))" "$((peak / 1048576))"
  mv "$work/out" "$work/out-$label"
}

printf "%s rows, %s groups, medians of %s runs of %s, %s cores\n" \
  "$rows" "$groups" "$runs" "$bin" "$(nproc)"
printf "%-22s %10s %13s %15s\n" "" "time" "peak RSS" "memory_peak"
measure "no-limit"
measure "limit-$limit" --memory-limit "$limit"

python=${BENCH_VENV:-$HOME/.cache/latefill-tools/venv-python}/bin/python
if [[ -x "$python" ]] && "$python" -c "import polars, deltalake" 2>/dev/null; then
  "$python" - "$work/out-no-limit" "$work/out-limit-$limit" <<'PY'
import sys
import polars as pl
a, b = (pl.read_delta(p).sort("g") for p in sys.argv[1:3])
print("same result:", a.equals(b), f"({a.height} rows)")
sys.exit(0 if a.equals(b) else 1)
PY
else
  echo "same result: not checked (no Python with polars and deltalake)"
fi
