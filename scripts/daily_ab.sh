#!/usr/bin/env bash
# Compares latefill binaries on the daily path: 7 days of ROWS rows (100,000) generated
# once, then ROUNDS rounds (11) in which each binary, in turn, runs `run --date D` for
# the 7 days into an empty target and state table. Prints each binary's times for the
# 7 runs together, and their median.
#
#   bash scripts/daily_ab.sh path/to/latefill-before path/to/latefill-after
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 ]] || { echo "usage: $0 latefill-binary ..." >&2; exit 2; }
for b in "$@"; do
    [[ -x "$b" ]] || { echo "no latefill binary at $b" >&2; exit 2; }
done
rows=${ROWS:-100000} rounds=${ROUNDS:-11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The default pipeline, with its tables beside the file (relative paths resolve there).
"$1" init --path "$work/pipeline.toml" >/dev/null
sed -i 's#"latefill-demo/#"#' "$work/pipeline.toml"
for d in 1 2 3 4 5 6 7; do
    "$1" generate --table "$work/devices" --date "2024-01-0$d" --rows "$rows" --seed "$d" >/dev/null
done

for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        rm -rf "$work/devices_daily" "$work/latefill_state"
        start=$(date +%s%N)
        for d in 1 2 3 4 5 6 7; do
            "$bin" run --config "$work/pipeline.toml" --date "2024-01-0$d" >/dev/null
        done
        echo "$bin $((($(date +%s%N) - start) / 1000000))"
    done
done | awk '{t[$1] = t[$1] " " $2} END {for (b in t) print b, t[b]}' | sort |
    while read -r bin times; do
        median=$(echo $times | tr ' ' '\n' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
        echo "$bin: 7 daily runs in$(printf ' %s' $times) ms; median $median ms"
    done
