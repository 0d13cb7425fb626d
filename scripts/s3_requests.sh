#!/usr/bin/env bash
# Counts the S3 requests of one `latefill run --date D`, from moto's request log:
#   1. when nothing is late (the run processes D alone);
#   2. when 2 earlier partitions are late (the run processes D and backfills both).
#
#   bash scripts/s3_requests.sh [path/to/latefill]
#
# Starts its own emulators (scripts/with-emulators.sh). The binary defaults to the
# release build in the shared target directory; request counts do not depend on the
# build, only on what latefill asks the store.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}"
bin="${1:-$target/release/latefill}"
if [[ ! -x "$bin" ]]; then
    echo "no latefill binary at $bin: cargo build --release, or pass its path" >&2
    exit 2
fi
export LATEFILL_BIN="$(realpath "$bin")"

exec scripts/with-emulators.sh bash -c '
set -euo pipefail
work=$(mktemp -d)
trap "rm -rf $work" EXIT
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
lf() { "$LATEFILL_BIN" "$@"; }
gen() { lf generate --table "$base/devices" --date "$1" --rows 1000 --seed "$2" >/dev/null; }
run() { lf run --config "$work/pipeline.toml" --date "$1" --output json; }

# Counts the requests logged since line $1 of the log, by kind.
count() {
    tail -n +"$(( $1 + 1 ))" "$LATEFILL_TEST_S3_LOG" | python3 -c "
import collections, re, sys
kinds = collections.Counter()
tables = collections.Counter()
for line in sys.stdin:
    m = re.search(r\"\\\"(GET|PUT|HEAD|POST|DELETE) (\\S+) HTTP\", line)
    if not m:
        continue
    method, path = m.groups()
    if method == \"GET\" and \"list-type=2\" in path:
        method = \"LIST\"
    kinds[method] += 1
    parts = re.split(r\"[/?]\", path)
    prefix = re.search(r\"prefix=[^&]*?%2F([a-z_]+)%2F\", path)
    tables[prefix.group(1) if prefix else (parts[3] if len(parts) > 3 else \"?\")] += 1
total = sum(kinds.values())
print(f\"{total} requests: \" + \", \".join(f\"{k} {kinds[k]}\" for k in (\"GET\", \"PUT\", \"LIST\", \"HEAD\", \"DELETE\", \"POST\") if kinds[k]))
print(\"  by table: \" + \", \".join(f\"{t} {n}\" for t, n in tables.most_common()))
"
}
lines() { wc -l <"$LATEFILL_TEST_S3_LOG"; }

for d in 1 2 3; do gen 2024-01-0$d $d; run 2024-01-0$d >/dev/null; done

gen 2024-01-04 4
before=$(lines)
out=$(run 2024-01-04)
echo "run --date 2024-01-04, nothing late: $(count "$before")"
echo "  late partitions: $(echo "$out" | python3 -c "import json,sys; print(len(json.load(sys.stdin)[\"backfilled\"]))")"

gen 2024-01-01 11; gen 2024-01-02 12; gen 2024-01-05 5
before=$(lines)
out=$(run 2024-01-05)
echo "run --date 2024-01-05, 2 late partitions backfilled: $(count "$before")"
echo "  late partitions: $(echo "$out" | python3 -c "import json,sys; print(len(json.load(sys.stdin)[\"backfilled\"]))")"
'
