#!/usr/bin/env bash
# A fleet of workers on one state table, on S3 (moto) behind a proxy that delays each
# request by DELAY seconds (default 0.05): for each K of WORKERS ("1 4 8 16"), K
# `latefill backfill` processes start at once on overlapping ranges of DAYS daily
# partitions (default 200, ROWS rows each, default 200), into a new target and state
# table. Each worker takes a window of half the days, the windows' starts spread over
# the range, so that every day is in two or more windows once K >= 2 and the workers
# race for them.
#
# Prints, per K: the fleet's time, transitions (claims plus completions) a second,
# requests per processed partition (every request of the fleet: claims, reads,
# writes, lost races), state commits a second and the share of state commits lost to
# another worker (412), p50/p99 from a worker's plan to its claim of a partition; and
# checks that every partition was processed, that no partition was processed by two
# workers at once, and (with a Python that has polars and deltalake: BENCH_VENV, else
# the tools' venv) that the target equals a recomputation.
#
#   bash scripts/fleet.sh [path/to/latefill]
#   WORKERS="1 16" DAYS=2000 DELAY=0.05 bash scripts/fleet.sh
#   EXTRA="--batch-size 32" bash scripts/fleet.sh     # more backfill arguments
#   BREAKDOWN=1 bash scripts/fleet.sh                 # requests per partition by table, kind, status
#   KEEP=/tmp/fleet EXTRA=-vv bash scripts/fleet.sh   # keep each K's worker output and requests
#   CONCURRENCY=8 bash scripts/fleet.sh               # partitions each worker runs at once (default 1)
#
# The issue's fleet (target 3 of issue 27), as docs/performance.md quotes it:
#   CONCURRENCY=16 EXTRA="--batch-size 16" WORKERS="1 4 8 16" DAYS=2000 bash scripts/fleet.sh
#
# Starts its own emulators (scripts/with-emulators.sh). The binary defaults to the
# release build in the shared target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${LATEFILL_TEST_S3:-}" ]]; then
    target="${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}"
    bin="${1:-$target/release/latefill}"
    [[ -x "$bin" ]] || { echo "no latefill binary at $bin: cargo build --release, or pass its path" >&2; exit 2; }
    LATEFILL_BIN="$(realpath "$bin")" exec scripts/with-emulators.sh bash "$0"
fi

delay="${DELAY:-0.05}" days="${DAYS:-200}" rows="${ROWS:-200}"
source scripts/slow_s3.sh
start_slow_s3 "$delay"

base="$LATEFILL_TEST_S3/fleet-$RANDOM$RANDOM"
day() { date -u -d "2024-01-01 + $1 days" +%F; }
first=$(day 0) last=$(day $((days - 1)))
# One commit holding every day, written without the delay.
LATEFILL_LOG_CACHE=memory "$LATEFILL_BIN" generate --table "$base/devices" --date "$first" --periods "$days" \
    --rows "$rows" --seed 1 >/dev/null

# Each line a worker prints, with the time it was printed.
stamp() { python3 -u -c '
import sys, time
for line in sys.stdin:
    sys.stdout.write(f"{time.time():.6f} {line}")
'; }

printf "fleet of K backfill workers, %s partitions of %s rows, S3 (moto) at %s s a request\n" \
    "$days" "$rows" "$delay"
printf "%3s %8s %12s %12s %14s %12s %9s %9s  %s\n" K time "transitions/s" "requests/p" \
    "state commits/s" "lost races" "p50 claim" "p99 claim" checks
for k in ${WORKERS:-1 4 8 16}; do
    run="$work/k$k"
    mkdir -p "$run"
    cat >"$run/pipeline.toml" <<EOF
name = "devices_daily"
[source]
table = "$base/devices"
partition_column = "event_time"
[target]
table = "$base/k$k/devices_daily"
[state]
table = "$base/k$k/state"
[transform]
sql = "SELECT type, version, count(*) AS devices, event_time FROM source GROUP BY type, version, event_time"
EOF
    before=$(wc -l <"$LATEFILL_TEST_S3_LOG")
    start=$(date +%s.%N)
    pids=()
    for w in $(seq 0 $((k - 1))); do
        from=$(( w * days / k ))
        to=$(( from + days / 2 ))
        (( k == 1 )) && to=$((days - 1))
        (( to > days - 1 )) && to=$((days - 1))
        # Each worker keeps its log cache apart, as workers on machines of their own.
        LATEFILL_CACHE_DIR="$run/cache-$w" AWS_ENDPOINT_URL="$slow_s3" \
            "$LATEFILL_BIN" backfill --config "$run/pipeline.toml" \
            --from "$(day "$from")" --to "$(day "$to")" --concurrency "${CONCURRENCY:-1}" --format json ${EXTRA:-} \
            2>"$run/w$w.err" | stamp >"$run/w$w.jsonl" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    end=$(date +%s.%N)
    tail -n +"$((before + 1))" "$LATEFILL_TEST_S3_LOG" >"$run/requests.log"
    "$LATEFILL_BIN" status --config "$run/pipeline.toml" --format json >"$run/status.json"
    python3 - "$run" "$k" "$start" "$end" "$days" <<'PY'
import collections, datetime, glob, json, os, re, sys

run, k, start, end, days = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
elapsed = end - start
claims, completions, waits = 0, 0, []
spans = collections.defaultdict(list)
for path in glob.glob(f"{run}/w*.jsonl"):
    planned = {}
    for line in open(path):
        at, text = line.split(" ", 1)
        event = json.loads(text)
        kind = event.get("event")
        if kind == "planned":
            planned.update({p: float(at) for p in event["partitions"]})
        elif kind == "claimed":
            claims += len(event["partitions"])
            waits += [float(at) - planned[p] for p in event["partitions"] if p in planned]
        elif kind == "processed":
            completions += 1
            t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
            spans[event["partition"]].append((t(event["started_at"]), t(event["finished_at"])))
requests = state_ok = state_lost = 0
kinds = collections.Counter()
for line in open(f"{run}/requests.log"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.search(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP[^"]*" (\d+)', line)
    if not m:
        continue
    requests += 1
    method, path, status = m.groups()
    plain = path.replace("%2F", "/")
    table = next((t for t in ("state", "devices_daily", "devices") if f"/{t}/" in plain), "other")
    what = "log" if "/_delta_log/" in plain else "data"
    if method == "GET" and "list-type=2" in path:
        method = "LIST"
    kinds[(table, what, method, status)] += 1
    if method == "PUT" and re.search(r"/state/_delta_log/\d{20}\.json$", path):
        state_ok += status == "200"
        state_lost += status == "412"
status = json.load(open(f"{run}/status.json"))
processed = sum(1 for row in status if row["status"] == "processed")
overlaps = sum(
    1
    for runs in spans.values()
    for i, a in enumerate(sorted(runs))
    for b in sorted(runs)[i + 1:]
    if b[0] < a[1]
)
waits.sort()
pct = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))] if waits else float("nan")
checks = []
checks.append("all processed" if processed == days else f"{processed}/{days} PROCESSED")
checks.append("never twice at once" if overlaps == 0 else f"{overlaps} OVERLAPS")
print(
    f"{k:3d} {elapsed:7.1f}s {(claims + completions) / elapsed:12.1f} "
    f"{requests / max(processed, 1):12.1f} {state_ok / elapsed:14.1f} "
    f"{state_lost / max(state_ok + state_lost, 1):11.0%} {pct(0.5):8.2f}s {pct(0.99):8.2f}s  "
    + ", ".join(checks)
)
if os.environ.get("BREAKDOWN"):
    for (table, what, method, status), n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"      {n / max(processed, 1):6.2f}/p  {table:13s} {what:4s} {method:6s} {status}")
PY
    [[ -n "${KEEP:-}" ]] && mkdir -p "$KEEP" && cp -r "$run" "$KEEP/"
    python=${BENCH_VENV:-$HOME/.cache/latefill-tools/venv-python}/bin/python
    if [[ -x "$python" ]] && "$python" -c "import polars, deltalake" 2>/dev/null; then
        "$python" - "$base/devices" "$base/k$k/devices_daily" <<'PY' || echo "    target: DIFFERS from a recomputation"
import os, sys
import polars as pl
opts = {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": os.environ["AWS_REGION"], "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"], "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
source = pl.read_delta(sys.argv[1], storage_options=opts)
target = pl.read_delta(sys.argv[2], storage_options=opts)
want = (source.group_by("type", "version", "event_time").agg(pl.len().alias("devices"))
        .with_columns(pl.col("devices").cast(pl.Int64), pl.col("event_time").cast(pl.Utf8)))
got = target.with_columns(pl.col("event_time").cast(pl.Utf8)).select(want.columns)
key = ["event_time", "type", "version"]
same = want.sort(key).equals(got.sort(key), null_equal=True)
print("    target: equal to a recomputation" if same else "", end="\n" if same else "")
sys.exit(0 if same else 1)
PY
    fi
done
