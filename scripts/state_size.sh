#!/usr/bin/env bash
# The state table after a backfill of DAYS small partitions (release build): its size
# on disk, its log and data files, and how long `latefill status` takes on it. Runs
# once per state retention in RETENTIONS (the pipeline's `state.retention`), so the
# default (7 days: nothing is old enough to remove during the run) can be compared
# with a retention the run outlives.
#
#   bash scripts/state_size.sh                         # 3,650 days x 10 rows
#   DAYS=365 RETENTIONS="7 days" bash scripts/state_size.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DAYS=${DAYS:-3650}
ROWS=${ROWS:-10}
RUNS=${RUNS:-5}
RETENTIONS=${RETENTIONS:-"7 days|0 seconds"}
# The target directory .ci/run and the other scripts share (one build for all).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}
cargo build --release --locked -q --bin latefill
bin=$CARGO_TARGET_DIR/release/latefill
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" init --path "$work/pipeline.toml" >/dev/null
sed -i 's#"latefill-demo/#"#' "$work/pipeline.toml"

echo "generating $DAYS days x $ROWS rows (one commit)..."
"$bin" generate --table "$work/devices" --date 2024-01-01 --periods "$DAYS" --rows "$ROWS" >/dev/null
last=$(date -u -d "2024-01-01 + $((DAYS - 1)) day" +%F)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(((e - s) / 1000000)); }

IFS='|' read -ra retentions <<<"$RETENTIONS"
for retention in "${retentions[@]}"; do
  rm -rf "$work/devices_daily" "$work/latefill_state"
  sed -i "s#^retention = .*#retention = \"$retention\"#" "$work/pipeline.toml"
  start=$(date +%s%N)
  if ! "$bin" backfill --config "$work/pipeline.toml" --from 2024-01-01 --to "$last" \
    --concurrency 2 --output json >"$work/backfill.jsonl" 2>"$work/backfill.err"; then
    echo "retention \"$retention\": the backfill failed (exit $?):"
    tail -n 5 "$work/backfill.err"
    grep -v '"processed"\|"started"' "$work/backfill.jsonl" | tail -n 5 | cut -c1-400
    continue
  fi
  took=$((($(date +%s%N) - start) / 1000000))
  state=$work/latefill_state
  version=$(ls "$state/_delta_log" | grep -E '^[0-9]{20}\.json$' | tail -1 | sed 's/^0*//; s/\.json$//')
  commits=$(ls "$state/_delta_log" | grep -cE '^[0-9]{20}\.json$')
  checkpoints=$(ls "$state/_delta_log" | grep -c 'checkpoint.parquet$')
  data=$(ls "$state" | grep -c '\.parquet$')
  bytes=$(du -sb "$state" | cut -f1)
  times=()
  for r in $(seq "$RUNS"); do
    times+=("$(ms "$bin" status --config "$work/pipeline.toml" --format json)")
  done
  status=$(printf '%s\n' "${times[@]}" | median)
  rows=$("$bin" status --config "$work/pipeline.toml" --format json | grep -c '"status": "processed"' || true)
  echo "retention \"$retention\": backfill of $DAYS partitions ${took} ms; state table at version" \
    "$version: $((bytes / 1024)) KiB, $commits commit files, $checkpoints checkpoint(s)," \
    "$data data files; status ${status} ms (median of $RUNS, runs ${times[*]}), $rows processed rows"
done
