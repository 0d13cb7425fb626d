#!/usr/bin/env bash
# Counts the S3 requests of `latefill run --date D`, from moto's request log:
#   1. ten daily runs with nothing late (each processes D alone);
#   2. three runs that each find 2 earlier partitions late and backfill them.
# Prints each run's count (by kind and by table), then the mean of each group.
#
#   bash scripts/s3_requests.sh [path/to/latefill]
#   LIST_DAY=9 bash scripts/s3_requests.sh    # also every request of the 9th day's run, in order
#
# The runs keep the log files they read in a cache directory of their own, as daily
# runs on one machine do (docs/object-storage.md); `generate`, which stands for
# whoever writes the source, keeps none. FRESH=1 gives each run an empty cache
# directory: a machine that never ran latefill (a new container every day).
#
# Starts its own emulators (scripts/with-emulators.sh). The binary defaults to the
# release build in the shared target directory; request counts do not depend on the
# build, only on what latefill asks the store.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${LATEFILL_TEST_S3_LOG:-}" ]]; then
    target="${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}"
    bin="${1:-$target/release/latefill}"
    if [[ ! -x "$bin" ]]; then
        echo "no latefill binary at $bin: cargo build --release, or pass its path" >&2
        exit 2
    fi
    LATEFILL_BIN="$(realpath "$bin")" exec scripts/with-emulators.sh bash "$0"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LATEFILL_CACHE_DIR="$work/cache"
base="$LATEFILL_TEST_S3/requests-$RANDOM$RANDOM"
cat >"$work/pipeline.toml" <<EOF
name = "devices_daily"
[source]
table = "$base/devices"
partition_column = "event_time"
[target]
table = "$base/devices_daily"
[state]
table = "$base/state"
[transform]
sql = "SELECT type, version, count(*) AS devices, event_time FROM source GROUP BY type, version, event_time"
EOF

day() { date -d "2024-01-01 + $(($1 - 1)) days" +%F; }
gen() { LATEFILL_LOG_CACHE=memory "$LATEFILL_BIN" generate --table "$base/devices" --date "$1" --rows 1000 --seed "$2" >/dev/null; }
run() {
    [[ "${FRESH:-0}" == 1 ]] && rm -rf "$LATEFILL_CACHE_DIR"
    "$LATEFILL_BIN" run --config "$work/pipeline.toml" --date "$1" --output json
}
lines() { wc -l <"$LATEFILL_TEST_S3_LOG"; }
backfilled() { python3 -c 'import json, sys; print(len(json.load(sys.stdin)["backfilled"]))'; }

# The requests logged after line $1, by kind and by table.
count() {
    tail -n +"$(($1 + 1))" "$LATEFILL_TEST_S3_LOG" | python3 -c '
import collections, re, sys
kinds, tables = collections.Counter(), collections.Counter()
for line in sys.stdin:
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # moto colours 206 replies
    m = re.search(r"\"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP", line)
    if not m:
        continue
    method, path = m.groups()
    if method == "GET" and "list-type=2" in path:
        method = "LIST"
    kinds[method] += 1
    listed = re.search(r"prefix=[^&]*?%2F([a-z_]+)%2F", path)
    parts = re.split(r"[/?]", path)
    tables[listed.group(1) if listed else (parts[3] if len(parts) > 3 else "?")] += 1
order = ("GET", "PUT", "LIST", "HEAD", "DELETE", "POST")
print(f"{sum(kinds.values())} requests: " + ", ".join(f"{k} {kinds[k]}" for k in order if kinds[k])
      + " (" + ", ".join(f"{t} {n}" for t, n in tables.most_common()) + ")")
'
}

summary() {
    python3 -c '
import re, sys
totals = [int(m.group(1)) for m in map(re.compile(r"(\d+) requests").search, sys.stdin) if m]
print(f"mean {sum(totals) / len(totals):.1f}, min {min(totals)}, max {max(totals)} over {len(totals)} runs")
'
}

for d in 1 2 3; do
    gen "$(day $d)" "$d"
    run "$(day $d)" >/dev/null
done

# Counts the requests of `run --date <day $1>`, which must backfill $2 partitions.
measure() {
    local before late line
    before=$(lines)
    late=$(run "$(day "$1")" | backfilled)
    [[ $late == "$2" ]] || { echo "expected $2 late partitions on $(day "$1"), got $late" >&2; exit 1; }
    line=$(count "$before")
    echo "run --date $(day "$1"), $2 late: $line" >&2
    if [[ "${LIST_DAY:-}" == "$1" ]]; then
        tail -n +"$((before + 1))" "$LATEFILL_TEST_S3_LOG" | python3 -c '
import re, sys, urllib.parse
for line in sys.stdin:
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # moto colours 206 replies
    m = re.search(r"\"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP", line)
    if m:
        method, path = m.groups()
        if method == "GET" and "list-type=2" in path:
            method = "LIST"
        key = urllib.parse.unquote(path.split(chr(47), 2)[-1])
        print(f"  {method:4} {key}")
' >&2
    fi
    echo "$line"
}

all=""
for d in $(seq 4 13); do
    gen "$(day "$d")" "$d"
    all+="$(measure "$d" 0)"$'\n'
done
echo "== nothing late: $(echo "$all" | summary)"

all=""
for d in 14 15 16; do
    gen "$(day $((d - 10)))" $((100 + d))
    gen "$(day $((d - 5)))" $((200 + d))
    gen "$(day "$d")" "$d"
    all+="$(measure "$d" 2)"$'\n'
done
echo "== 2 late partitions: $(echo "$all" | summary)"
