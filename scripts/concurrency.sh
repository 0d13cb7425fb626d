#!/usr/bin/env bash
# Measures `latefill backfill` of DAYS partitions with --concurrency 1 against 2
# (release build), and against two --concurrency 1 processes at once on copies of the
# data (what two workers that share nothing gain on this machine). Data is generated once,
# outside the timed part; each timed run starts from an empty target and state. Prints
# the median of RUNS runs per setting, and the CPU of the single runs (/usr/bin/time).
#
#   bash scripts/concurrency.sh            # 30 days x 100,000 rows, 3 runs
#   DAYS=30 ROWS=200000 RUNS=5 bash scripts/concurrency.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DAYS=${DAYS:-30}
ROWS=${ROWS:-100000}
RUNS=${RUNS:-3}
source scripts/release_bin.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The default pipeline, with its tables beside the file (relative paths resolve there).
default_pipeline "$work/pipeline.toml"

echo "generating $DAYS days x $ROWS rows..."
for d in $(seq 0 $((DAYS - 1))); do
  day=$(date -u -d "2024-01-01 + $d day" +%F)
  "$bin" generate --table "$work/devices" --date "$day" --rows "$ROWS" --seed "$d" >/dev/null
done
last=$(date -u -d "2024-01-01 + $((DAYS - 1)) day" +%F)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for c in 1 2; do
  times=() cpus=()
  for r in $(seq "$RUNS"); do
    rm -rf "$work/devices_daily" "$work/latefill_state"
    start=$(date +%s%N)
    /usr/bin/time -o "$work/time" -f "%U %S" "$bin" backfill --config "$work/pipeline.toml" \
      --from 2024-01-01 --to "$last" --concurrency "$c" --output json >/dev/null
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
    cpus+=($(awk '{printf "%d", ($1 + $2) * 1000}' "$work/time"))
  done
  m=$(printf '%s\n' "${times[@]}" | median)
  cpu=$(printf '%s\n' "${cpus[@]}" | median)
  echo "concurrency $c: runs ${times[*]} ms, median $m ms; CPU median $cpu ms"
  eval "median_$c=$m cpu_$c=$cpu"
done
awk -v a="$median_1" -v b="$median_2" 'BEGIN { printf "speed-up (c1 / c2): %.2fx\n", a / b }'
# What two workers gain on this machine when they share nothing: two --concurrency 1
# backfills at once, as two processes sharing nothing (a copy of the source each, their
# own target and state table).
mkdir -p "$work/b"
cp -r "$work/devices" "$work/pipeline.toml" "$work/b/"
times=()
for r in $(seq "$RUNS"); do
  rm -rf "$work/devices_daily" "$work/latefill_state" "$work/b/devices_daily" "$work/b/latefill_state"
  start=$(date +%s%N)
  for dir in "$work" "$work/b"; do
    "$bin" backfill --config "$dir/pipeline.toml" --from 2024-01-01 --to "$last" \
      --concurrency 1 --output json >/dev/null &
  done
  wait
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000000 )))
done
pair=$(printf '%s\n' "${times[@]}" | median)
echo "two --concurrency 1 processes at once, nothing shared: runs ${times[*]} ms, median $pair ms"
awk -v a="$median_1" -v b="$pair" \
  'BEGIN { printf "their speed-up (2 x c1 / both): %.2fx\n", 2 * a / b }'
