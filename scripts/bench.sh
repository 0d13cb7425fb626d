#!/usr/bin/env bash
# Benchmarks latefill against what a user would pick instead, on the same data, in one
# run, and prints one table of medians and ratios (peer time / latefill time).
#
#   bash scripts/bench.sh              # RUNS=5 repetitions per figure
#
# Workloads so far:
#   detection on a long history: 3,650 daily partitions, 20,000 commits, checkpoints
#   every 100 (prepared once, by benches/detection.rs, outside the timed part):
#     - latefill: cold `latefill changes` (whole process), incremental after 10 commits
#       (library call, and the whole `latefill detect` process with its state table);
#     - the reference design in Python: replay every commit from version 0;
#     - DuckDB reading _delta_log/*.json.
#   reprocessing: one partition of 5,000,000 device rows through the default pipeline
#   (read, aggregate, partition overwrite), each tool writing a fresh target:
#     - latefill run; Python deltalake + polars; DuckDB (+ deltalake for the log and
#       the write). Wall time, rows/s and peak RSS (/usr/bin/time).
#   end to end: the late-data story with 7 days x 100,000 rows, generated then run day
#     by day, then late rows in 2 days and the next day's run that finds and
#     reprocesses them: timed whole (generation included) for latefill and for the
#     same story in Python deltalake + polars (scripts/peers/story_polars.py); the
#     runs alone, for latefill;
#   concurrency scaling: backfill of 30 partitions x 100,000 rows, --concurrency 1 vs 2
#     (scripts/concurrency.sh), and two --concurrency 1 processes at once on copies of
#     the data: what two workers that share nothing gain on this machine.
#   late rows into a processed day of 5,000,000 rows (0.1%, 1%, 10%, 50% of it): the
#     late run updating the day from them against recomputing it, and against polars
#     and DuckDB recomputing it (scripts/late_rows.sh).
# Peers are installed with pip into a virtual environment; when that fails, latefill's
# own figures are still reported.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
# The target directory .ci/run and the other scripts share (one build for all).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}
target=$CARGO_TARGET_DIR
export BENCH_DIR=${BENCH_DIR:-$target/bench-data/detection}
venv=${BENCH_VENV:-$target/bench-venv}

# LATEFILL_BIN: another build's binary to measure (an A/B against an earlier commit);
# the library's own figure (cargo bench) is the checkout's.
if [[ -n "${LATEFILL_BIN:-}" ]]; then
  bin=$LATEFILL_BIN
else
  cargo build --release --locked -q
  bin=$target/release/latefill
fi

echo "== preparing and timing latefill's detection (cargo bench --bench detection)" >&2
lib_json=$(BENCH_RUNS=$RUNS cargo bench --locked -q --bench detection 2>/dev/null | tail -n 1)
table=$BENCH_DIR/devices

# Median wall time in ms of a command, over RUNS runs.
time_ms() {
  local samples=()
  for _ in $(seq "$RUNS"); do
    local start end
    start=$(date +%s%N)
    "$@" > /dev/null
    end=$(date +%s%N)
    samples+=($(( (end - start) / 1000000 )))
  done
  printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

cold=$(time_ms "$bin" changes --table "$table" --format json)
replay=$(time_ms python3 scripts/peers/detect_replay.py "$table")

duckdb=""
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2 || true
fi
if "$venv/bin/pip" install -q duckdb >&2 2>/dev/null; then
  duckdb=$(time_ms "$venv/bin/python" scripts/peers/detect_duckdb.py "$table")
else
  echo "DuckDB could not be installed: its figures are left out" >&2
fi

# The answers must agree before their times mean anything.
python3 - "$bin" "$table" "$venv" <<'PY'
import json, subprocess, sys
bin_, table, venv = sys.argv[1:]
ours = json.loads(subprocess.run([bin_, "changes", "--table", table, "--format", "json"],
                                 capture_output=True, check=True, text=True).stdout)
ours = {p["partition"]: p["last_change_version"] for p in ours["partitions"]}
replay = json.loads(subprocess.run(["python3", "scripts/peers/detect_replay.py", table],
                                   capture_output=True, check=True, text=True).stdout)
assert ours == replay["partitions"], "latefill and the replay disagree"
print(f"answers agree: {len(ours)} partitions", file=sys.stderr)
PY

incr_lib=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['incremental_ms'], 2))" "$lib_json")
incr_proc=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['incremental_process_ms'], 1))" "$lib_json")
fastest_peer=$replay
if [ -n "$duckdb" ] && [ "$duckdb" -lt "$replay" ]; then fastest_peer=$duckdb; fi

# --- Reprocessing ---------------------------------------------------------------
rp=$BENCH_DIR/../reprocess
if [ ! -f "$rp/complete" ]; then
  rm -rf "$rp" && mkdir -p "$rp"
  "$bin" generate --table "$rp/devices" --date 2024-01-01 --rows 5000000 --seed 1 >&2
  "$bin" init --path "$rp/pipeline.toml" >/dev/null
  sed -i 's#"latefill-demo/#"#' "$rp/pipeline.toml"
  touch "$rp/complete"
fi
# Median wall ms and median peak KB of a reprocessing command; the target is removed
# before each run (setup, not timed).
reprocess() {
  local target=$1; shift
  local walls=() mems=()
  for _ in $(seq "$RUNS"); do
    rm -rf "$rp/$target" "$rp/latefill_state"
    local start end
    start=$(date +%s%N)
    if [ -x /usr/bin/time ]; then
      /usr/bin/time -f "%M" -o "$rp/mem" "$@" > /dev/null
      mems+=($(cat "$rp/mem"))
    else
      "$@" > /dev/null
    fi
    end=$(date +%s%N)
    walls+=($(( (end - start) / 1000000 )))
  done
  local med='sort -n | awk "{a[NR]=\$1} END {print a[int((NR+1)/2)]}"'
  echo "$(printf '%s\n' "${walls[@]}" | eval "$med") $(printf '%s\n' "${mems[@]:-0}" | eval "$med")"
}
read -r lf_ms lf_kb < <(reprocess devices_daily "$bin" run --config "$rp/pipeline.toml" \
  --date 2024-01-01 --no-backfill --output json)
pl_ms="" dd_ms=""
if "$venv/bin/pip" install -q polars deltalake pyarrow >&2 2>/dev/null; then
  read -r pl_ms pl_kb < <(reprocess t_polars "$venv/bin/python" scripts/peers/reprocess_polars.py \
    "$rp/devices" "$rp/t_polars" 2024-01-01)
  if [ -n "$duckdb" ]; then
    read -r dd_ms dd_kb < <(reprocess t_duckdb "$venv/bin/python" scripts/peers/reprocess_duckdb.py \
      "$rp/devices" "$rp/t_duckdb" 2024-01-01)
  fi
  # The three targets must hold the same rows.
  "$venv/bin/python" - "$rp" <<'PY'
import sys
from deltalake import DeltaTable
rp = sys.argv[1]
def rows(t):
    d = DeltaTable(f"{rp}/{t}").to_pyarrow_table().to_pylist()
    return sorted((r["type"], r["version"], r["devices"], r["event_time"]) for r in d)
ours = rows("devices_daily")
for peer in ("t_polars", "t_duckdb"):
    try:
        assert rows(peer) == ours, f"{peer} disagrees with latefill"
    except FileNotFoundError:
        pass
print(f"reprocessing results agree: {len(ours)} rows", file=sys.stderr)
sys.stderr.flush()
# deltalake's native threads can abort the interpreter's teardown: leave at once.
import os; os._exit(0)
PY
else
  echo "polars/deltalake could not be installed: their figures are left out" >&2
fi

# --- End to end: the late-data story ----------------------------------------------
# scripts/story.sh: the story timed whole, generation included, on both sides:
# latefill (`latefill generate`, `latefill run`) and the same story scripted with
# Python deltalake + polars (scripts/peers/story_polars.py, one process per step).
peer_venv=""
if [ -n "$pl_ms" ]; then peer_venv=$venv; fi
read -r _ e2e_total e2e_generate e2e_daily e2e_rerun e2e_peer < <(
  LATEFILL_BINS=$bin BENCH_VENV=${peer_venv:-/nonexistent} RUNS=$RUNS bash scripts/story.sh | tail -n 1)
if [ "$e2e_peer" = "-" ]; then e2e_peer=""; fi

# --- Concurrency scaling ---------------------------------------------------------
scaling=$(DAYS=30 ROWS=100000 RUNS=$RUNS bash scripts/concurrency.sh 2>/dev/null | tail -n 5)

# --- Late rows into a big day: update from the late rows against recomputing -----
late_rows=$(LATEFILL_BIN=$bin BENCH_VENV=$venv RUNS=$RUNS bash scripts/late_rows.sh 2>/dev/null | tail -n 5)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
echo
echo "Detection, 3,650 partitions x 20,000 commits (medians of $RUNS; $(nproc) cores, release build)"
printf '%-58s %12s %14s\n' "what" "time" "peer/latefill"
printf '%-58s %10s ms %14s\n' "latefill cold (changes, whole process)" "$cold" ""
printf '%-58s %10s ms %14s\n' "latefill incremental after 10 commits (library)" "$incr_lib" ""
printf '%-58s %10s ms %14s\n' "latefill incremental after 10 commits (detect, process)" "$incr_proc" ""
printf '%-58s %10s ms %14s\n' "Python, reference design (replay from version 0)" "$replay" "$(ratio "$replay" "$cold") cold"
if [ -n "$duckdb" ]; then
  printf '%-58s %10s ms %14s\n' "DuckDB over _delta_log/*.json" "$duckdb" "$(ratio "$duckdb" "$cold") cold"
fi
printf '%-58s %10s ms %14s\n' "fastest peer vs latefill incremental (process)" "$fastest_peer" "$(ratio "$fastest_peer" "$incr_proc")"

rate() { awk -v ms="$1" 'BEGIN { if (ms > 0) printf "%.1f M rows/s", 5000 / ms; else print "-" }'; }
echo
echo "Reprocessing one partition of 5,000,000 rows (medians of $RUNS; wall time, throughput, peak RSS)"
printf '%-34s %10s %16s %10s %14s\n' "what" "time" "throughput" "peak RSS" "peer/latefill"
printf '%-34s %7s ms %16s %7s MB %14s\n' "latefill run" "$lf_ms" "$(rate "$lf_ms")" "$((lf_kb / 1024))" ""
if [ -n "$pl_ms" ]; then
  printf '%-34s %7s ms %16s %7s MB %14s\n' "Python deltalake + polars" "$pl_ms" "$(rate "$pl_ms")" "$((pl_kb / 1024))" "$(ratio "$pl_ms" "$lf_ms")"
fi
if [ -n "$dd_ms" ]; then
  printf '%-34s %7s ms %16s %7s MB %14s\n' "DuckDB (+ deltalake)" "$dd_ms" "$(rate "$dd_ms")" "$((dd_kb / 1024))" "$(ratio "$dd_ms" "$lf_ms")"
fi

echo
echo "End to end, 7 days x 100,000 rows (medians of $RUNS)"
printf '%-72s %8s ms %14s\n' "the whole story, generation included: latefill" "$e2e_total" ""
if [ -n "$e2e_peer" ]; then
  printf '%-72s %8s ms %14s\n' "the whole story, generation included: Python deltalake + polars" "$e2e_peer" "$(ratio "$e2e_peer" "$e2e_total")"
fi
printf '%-72s %8s ms\n' "latefill: its 9 latefill generate calls alone" "$e2e_generate"
printf '%-72s %8s ms\n' "latefill: the 7 daily runs alone (run --date D, each with detection)" "$e2e_daily"
printf '%-72s %8s ms\n' "latefill: next day's run after late rows in 2 days (finds and reprocesses them)" "$e2e_rerun"

echo
echo "Concurrency scaling, backfill of 30 partitions x 100,000 rows"
echo "$scaling"

echo
echo "Late rows into a processed day of 5,000,000 rows: the late run (backfill --only-late),"
echo "auto (updated from the late rows) against --strategy replace, and peers recomputing the day"
echo "$late_rows"
