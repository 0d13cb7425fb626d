#!/usr/bin/env bash
# Times latefill on S3 with a request latency: moto's server behind a proxy that
# delays each request by DELAY seconds (default 0.02; S3 answers in 10 to 50 ms), the
# binaries given interleaved, on days of 2,000 rows:
#
#   bash scripts/s3_latency.sh [path/to/latefill ...]             # backfills
#   MODE=daily bash scripts/s3_latency.sh [path/to/latefill ...]  # daily runs
#   MODE=late bash scripts/s3_latency.sh [path/to/latefill ...]   # late backfills
#
# Backfills: DAYS partitions (20) at each `--concurrency` of CONCURRENCY ("1 2"),
# ROUNDS rounds (3), each run into a new target and state table, with the requests
# each run made (moto's log). Daily runs: 12 days processed one run a day,
# then RUNS more days (8), each generated and then run by every binary in turn, the
# order turning each day (each binary's run replaces the day's partition). Late
# backfills: 12 days processed by each binary into a target and state table of its own,
# then ROUNDS rounds (6) of late rows in 5 of the days and `backfill --only-late` by
# each binary, the order turning each round.
#
# FRESH=1 empties the log cache's directory before each run (a new machine each day).
# TABLES=existing times backfills into a target and state table that already exist
# (every backfill after a pipeline's first): day 1 is processed into each run's tables
# first, untimed, and the backfill covers the DAYS days after it.
#
# Prints every run, then the median of each binary (and concurrency). Starts its own
# emulators (scripts/with-emulators.sh). The binary defaults to the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${LATEFILL_TEST_S3:-}" ]]; then
    target="${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}"
    bins=("$@")
    [[ ${#bins[@]} -gt 0 ]] || bins=("$target/release/latefill")
    absolute=()
    for b in "${bins[@]}"; do
        [[ -x "$b" ]] || { echo "no latefill binary at $b: cargo build --release, or pass its path" >&2; exit 2; }
        absolute+=("$(realpath "$b")")
    done
    exec scripts/with-emulators.sh bash "$0" "${absolute[@]}"
fi

delay="${DELAY:-0.02}" days="${DAYS:-20}"
rounds="${ROUNDS:-$([[ "${MODE:-}" == late ]] && echo 6 || echo 3)}"
source scripts/slow_s3.sh
start_slow_s3 "$delay"
export AWS_ENDPOINT_URL="$slow_s3"
# The runs keep the log files they read in a cache directory of their own (as runs on
# one machine do); `generate`, standing for whoever writes the source, keeps none.
export LATEFILL_CACHE_DIR="$work/cache"

base="$LATEFILL_TEST_S3/latency-$RANDOM$RANDOM"
day() { date -d "2024-01-01 + $(($1 - 1)) days" +%F; }
pipeline() {
    cat >"$work/pipeline.toml" <<T
name = "devices_daily"
[source]
table = "$base/devices"
partition_column = "event_time"
[target]
table = "$base/devices_daily$1"
[state]
table = "$base/state$1"
[transform]
sql = "SELECT type, version, count(*) AS devices, event_time FROM source GROUP BY type, version, event_time"
T
}
medians() {
    local median='{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
    awk '{k = $1 " " $2; v[k] = v[k] " " $3; r[k] = r[k] " " ($5 == "" ? "-" : $5)}
         END {for (k in v) print k "|" v[k] "|" r[k]}' "$work/runs.txt" | sort |
        while IFS='|' read -r key times requests; do
            line="$key $(echo $times | tr ' ' '\n' | sort -n | awk "$median") ms"
            [[ $requests == *-* ]] ||
                line+=", $(echo $requests | tr ' ' '\n' | sort -n | awk "$median") requests"
            echo "$line"
        done
}
generate() { LATEFILL_LOG_CACHE=memory "$1" generate --table "$base/devices" --date "$(day "$2")" --rows 2000 --seed "$2" >/dev/null; }

if [[ "${MODE:-backfill}" == late ]]; then
    for d in $(seq 12); do
        generate "$1" "$d"
    done
    bins=("$@")
    for i in "${!bins[@]}"; do
        pipeline "_$i"
        cp "$work/pipeline.toml" "$work/pipeline_$i.toml"
        "${bins[$i]}" backfill --config "$work/pipeline_$i.toml" --from "$(day 1)" --to "$(day 12)" \
            --output json >/dev/null
    done
    echo "backfill --only-late of 5 late days out of 12 on S3 (moto) at $delay s a request"
    for r in $(seq "$rounds"); do
        for d in 2 5 7 9 11; do
            LATEFILL_LOG_CACHE=memory "$1" generate --table "$base/devices" --date "$(day "$d")" --rows 50 --seed $((r * 100 + d)) >/dev/null
        done
        indexes=("${!bins[@]}")
        (( r % 2 )) || indexes=($(printf '%s\n' "${indexes[@]}" | tac))
        for i in "${indexes[@]}"; do
            start=$(date +%s%N)
            "${bins[$i]}" backfill --config "$work/pipeline_$i.toml" --from "$(day 1)" --to "$(day 12)" \
                --only-late --output json >/dev/null
            echo "${bins[$i]} late $((($(date +%s%N) - start) / 1000000)) ms"
        done
    done | tee "$work/runs.txt"
    echo "medians:"
    medians
    exit 0
fi

if [[ "${MODE:-backfill}" == daily ]]; then
    pipeline ""
    for d in $(seq 12); do
        generate "$1" "$d"
        "$1" run --config "$work/pipeline.toml" --date "$(day "$d")" >/dev/null
    done
    echo "run --date D on S3 (moto) at $delay s a request, after 12 days"
    bins=("$@")
    for d in $(seq 13 $((12 + ${RUNS:-8}))); do
        generate "$1" "$d"
        # The order turns each day: the second run of a day finds the first's work.
        (( d % 2 )) && order=("${bins[@]}") || order=($(printf '%s\n' "${bins[@]}" | tac))
        for bin in "${order[@]}"; do
            [[ "${FRESH:-0}" == 1 ]] && rm -rf "$LATEFILL_CACHE_DIR"
            start=$(date +%s%N)
            "$bin" run --config "$work/pipeline.toml" --date "$(day "$d")" >/dev/null
            echo "$bin run $((($(date +%s%N) - start) / 1000000)) ms"
        done
    done | tee "$work/runs.txt"
    echo "medians:"
    medians
    exit 0
fi

existing=0
[[ "${TABLES:-new}" == existing ]] && existing=1
for d in $(seq $((days + existing))); do
    generate "$1" "$d"
done

echo "backfill of $days partitions on S3 (moto) at $delay s a request, into ${TABLES:-new} tables"
n=0
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        for c in ${CONCURRENCY:-1 2}; do
            n=$((n + 1))
            pipeline "_$n"
            if ((existing)); then
                "$bin" run --config "$work/pipeline.toml" --date "$(day 1)" >/dev/null
            fi
            before=$(wc -l <"$LATEFILL_TEST_S3_LOG")
            start=$(date +%s%N)
            "$bin" backfill --config "$work/pipeline.toml" --from "$(day $((1 + existing)))" \
                --to "$(day $((days + existing)))" \
                --concurrency "$c" --output json >/dev/null
            elapsed=$((($(date +%s%N) - start) / 1000000))
            echo "$bin c$c $elapsed ms $(($(wc -l <"$LATEFILL_TEST_S3_LOG") - before)) requests"
        done
    done
done | tee "$work/runs.txt"
echo "medians:"
medians
