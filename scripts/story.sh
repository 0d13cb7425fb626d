#!/usr/bin/env bash
# The late-data story, timed whole, against the same story as one Python process per
# step (deltalake + polars, scripts/peers/story_polars.py): for 7 days, generate
# 100,000 rows then `run` the day; then late rows land in 2 days and the next day's
# `run` finds and reprocesses them.
#
#   bash scripts/story.sh                        # RUNS=5; builds the release binary
#   LATEFILL_BINS="/a/latefill /b/latefill" bash scripts/story.sh   # A/B, interleaved
#
# Prints, per binary, the medians of: the whole story, its 9 `latefill generate`
# calls, its 7 daily runs, and the late run; then the peer's whole story, when
# BENCH_VENV (default: the tools' Python with deltalake and polars) has them. The last
# line is those figures for scripts: `story <total> <generate> <daily> <late> <peer>`
# (ms; the first binary's; peer `-` when not run).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}
if [[ -z "${LATEFILL_BINS:-}" ]]; then
  cargo build --release --locked -q
  LATEFILL_BINS=$CARGO_TARGET_DIR/release/latefill
fi
venv=${BENCH_VENV:-$HOME/.cache/latefill-tools/venv-python}
peer=""
if "$venv/bin/python" -c 'import deltalake, polars' 2>/dev/null; then peer=yes; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
e2e=$work/story
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# One story with binary $1; appends "total generate daily late" to file $2.
story() {
  local bin=$1 start s gen=0 daily=0 late out
  rm -rf "$e2e" && mkdir -p "$e2e"
  "$bin" init --path "$e2e/pipeline.toml" >/dev/null
  sed -i 's#"latefill-demo/#"#' "$e2e/pipeline.toml"
  start=$(now_ms)
  for d in 1 2 3 4 5 6 7; do
    s=$(now_ms)
    "$bin" generate --table "$e2e/devices" --date "2024-01-0$d" --rows 100000 --seed "$d" >/dev/null
    gen=$(( gen + $(now_ms) - s ))
    s=$(now_ms)
    "$bin" run --config "$e2e/pipeline.toml" --date "2024-01-0$d" --output json >/dev/null
    daily=$(( daily + $(now_ms) - s ))
  done
  for d in 2 3; do
    s=$(now_ms)
    "$bin" generate --table "$e2e/devices" --date "2024-01-0$d" --rows 20000 --seed "1$d" >/dev/null
    gen=$(( gen + $(now_ms) - s ))
  done
  s=$(now_ms)
  out=$("$bin" run --config "$e2e/pipeline.toml" --date 2024-01-08 --allow-empty --output json)
  late=$(( $(now_ms) - s ))
  echo "$(( $(now_ms) - start )) $gen $daily $late" >> "$2"
  echo "$out" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert [r["partition"] for r in o["backfilled"]] == ["event_time=2024-01-02", "event_time=2024-01-03"], o'
}

story_peer() {
  local py=$venv/bin/python script=scripts/peers/story_polars.py start out
  rm -rf "$e2e" && mkdir -p "$e2e"
  start=$(now_ms)
  for d in 1 2 3 4 5 6 7; do
    "$py" "$script" generate "$e2e/devices" "2024-01-0$d" 100000 "$d"
    "$py" "$script" run "$e2e" "2024-01-0$d" >/dev/null
  done
  for d in 2 3; do
    "$py" "$script" generate "$e2e/devices" "2024-01-0$d" 20000 "1$d"
  done
  out=$("$py" "$script" run "$e2e" 2024-01-08)
  echo $(( $(now_ms) - start )) >> "$work/peer"
  echo "$out" | python3 -c 'import json,sys; o=json.load(sys.stdin); assert o["backfilled"] == ["event_time=2024-01-02", "event_time=2024-01-03"], o'
}

read -ra bins <<< "$LATEFILL_BINS"
for _ in $(seq "$RUNS"); do
  for i in "${!bins[@]}"; do story "${bins[$i]}" "$work/bin$i"; done
  if [[ -n "$peer" ]]; then story_peer; fi
done

med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { cut -d' ' -f"$1" "$2" | med; }
echo "The late-data story, 7 days x 100,000 rows (medians of $RUNS; $(nproc) cores)"
for i in "${!bins[@]}"; do
  f=$work/bin$i
  printf '%s\n  whole story %s ms; generate (9 calls) %s ms; 7 daily runs %s ms; late run %s ms\n' \
    "${bins[$i]}" "$(col 1 "$f")" "$(col 2 "$f")" "$(col 3 "$f")" "$(col 4 "$f")"
done
peer_ms=-
if [[ -n "$peer" ]]; then
  peer_ms=$(med < "$work/peer")
  echo "Python deltalake + polars, a process per step: whole story $peer_ms ms"
fi
echo "story $(col 1 "$work/bin0") $(col 2 "$work/bin0") $(col 3 "$work/bin0") $(col 4 "$work/bin0") $peer_ms"
