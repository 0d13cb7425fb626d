#!/usr/bin/env bash
# Late rows into a big processed day, whole processes, release build: the late run
# updating the day from its late rows (the default strategy, `auto`) against the same
# run recomputing it (`--strategy replace`), and against peer scripts that recompute
# the day (Python deltalake + polars, DuckDB; when a virtual environment with them is
# at $BENCH_VENV). Prints one row per late share with medians of RUNS runs, the bytes
# each strategy read from the source (from the run's JSON), and the strategy `auto`
# chose.
#
#   bash scripts/late_rows.sh                       # 5,000,000 rows, 0.1% 1% 10% 50%
#   ROWS=5000000 SHARES="0.1 1" RUNS=5 bash scripts/late_rows.sh
#
# Setup, not timed: the day is generated and processed once; for each share, the late
# rows are appended to a copy, which each timed run starts from (copied afresh).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-5000000}
SHARES=${SHARES:-"0.1 1 10 50"}
RUNS=${RUNS:-5}
source scripts/release_bin.sh
venv=${BENCH_VENV:-$CARGO_TARGET_DIR/bench-venv}
work=${LATE_ROWS_DIR:-$CARGO_TARGET_DIR/bench-data/late-rows}
day=2024-01-01

# The day, processed once (kept between invocations for the same ROWS).
base=$work/base-$ROWS
if [ ! -f "$base/complete" ]; then
  rm -rf "$base" && mkdir -p "$base"
  "$bin" init --path "$base/pipeline.toml" >/dev/null
  sed -i 's#"latefill-demo/#"#' "$base/pipeline.toml"
  "$bin" generate --table "$base/devices" --date "$day" --rows "$ROWS" --seed 1 >/dev/null
  "$bin" run --config "$base/pipeline.toml" --date "$day" --output json >/dev/null
  touch "$base/complete"
fi

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Median wall ms of the peer script scripts/peers/$1 recomputing the day of the
# prepared source into a fresh target $work/$2.
peer_ms() {
  local times=() start end
  for _ in $(seq "$RUNS"); do
    rm -rf "${work:?}/$2"
    start=$(date +%s%N)
    "$venv/bin/python" "scripts/peers/$1" "$prepared/devices" "$work/$2" "$day" >/dev/null
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | median
}
peers=""
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import polars, deltalake, duckdb" 2>/dev/null; then
  peers=yes
fi

# Per share: whole-process medians (auto, replace, their ratio), the partition run
# alone (the executor's duration_ms of the last run, auto / replace), the source bytes
# each read, the peers' whole processes, and the strategy auto chose.
printf '%-6s %9s %10s %10s %8s %16s %12s %12s %10s %10s %s\n' "share" "late rows" \
  "auto" "replace" "speed-up" "partition run" "auto read" "replace read" "polars" "duckdb" "auto chose"
for share in $SHARES; do
  late=$(awk -v r="$ROWS" -v s="$share" 'BEGIN { printf "%d", r * s / 100 }')
  prepared=$work/share-$ROWS-$share
  if [ ! -f "$prepared/complete" ]; then
    rm -rf "$prepared" && cp -r "$base" "$prepared" && rm -f "$prepared/complete"
    "$bin" generate --table "$prepared/devices" --date "$day" --rows "$late" --seed 2 >/dev/null
    touch "$prepared/complete"
  fi
  # Median wall ms of the late run with extra arguments; its JSON line kept in $run/out.
  late_run() {
    local times=()
    for _ in $(seq "$RUNS"); do
      rm -rf "$work/run" && cp -r "$prepared" "$work/run"
      local start end
      start=$(date +%s%N)
      "$bin" backfill --config "$work/run/pipeline.toml" --from "$day" --to "$day" \
        --only-late --output json "$@" > "$work/out"
      end=$(date +%s%N)
      times+=($(( (end - start) / 1000000 )))
    done
    printf '%s\n' "${times[@]}" | median
  }
  field() {
    python3 -c 'import json,sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("event") == "processed":
        print(o[sys.argv[2]])' "$work/out" "$1"
  }
  auto_ms=$(late_run)
  auto_read=$(field bytes_read)
  auto_chose=$(field strategy)
  auto_part=$(field duration_ms)
  auto_target=$work/auto-target && rm -rf "$auto_target" && cp -r "$work/run/devices_daily" "$auto_target"
  replace_ms=$(late_run --strategy replace)
  replace_read=$(field bytes_read)
  replace_part=$(field duration_ms)
  # Both strategies must leave the same target rows (checked when the venv has
  # deltalake).
  if [ -n "$peers" ]; then
    "$venv/bin/python" - "$auto_target" "$work/run/devices_daily" <<'PY'
import os, sys
from deltalake import DeltaTable
def rows(path):
    t = DeltaTable(path).to_pyarrow_table().to_pylist()
    return sorted((r["type"], r["version"], r["devices"], str(r["event_time"])) for r in t)
a, b = rows(sys.argv[1]), rows(sys.argv[2])
if a != b:
    print("auto and replace disagree", file=sys.stderr)
    os._exit(1)
sys.stderr.flush()
os._exit(0)
PY
  fi
  pl_ms="-" dd_ms="-"
  if [ -n "$peers" ]; then
    pl_ms=$(peer_ms reprocess_polars.py t_polars)
    dd_ms=$(peer_ms reprocess_duckdb.py t_duckdb)
  fi
  speedup=$(awk -v a="$replace_ms" -v b="$auto_ms" 'BEGIN { printf "%.1fx", a / b }')
  printf '%-6s %9s %7s ms %7s ms %8s %16s %10s B %10s B %7s ms %7s ms %s\n' "$share%" "$late" \
    "$auto_ms" "$replace_ms" "$speedup" "$auto_part/$replace_part ms" "$auto_read" "$replace_read" \
    "$pl_ms" "$dd_ms" "$auto_chose"
done
