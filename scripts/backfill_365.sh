#!/usr/bin/env bash
# A year's backfill: 365 daily partitions of 2,000 rows, `--concurrency 2`. Reports the
# amortised time per partition, and whether it grows with the state table: the time
# the first 30 partitions took to finish against the last 30.
#
#   bash scripts/backfill_365.sh [path/to/latefill]     # default: the release build
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/latefill-target}"
bin="$(realpath "${1:-$target/release/latefill}")"
[[ -x "$bin" ]] || { echo "no latefill binary at $bin: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin" init --path pipeline.toml >/dev/null
"$bin" generate --table latefill-demo/devices --date 2024-01-01 --periods 365 --rows 2000 >/dev/null

start=$(date +%s%N)
"$bin" backfill --config pipeline.toml --from 2024-01-01 --to 2024-12-30 \
    --concurrency 2 --output json >events.jsonl
total_ms=$((($(date +%s%N) - start) / 1000000))

python3 - "$total_ms" <<'EOF'
import datetime, json, sys
total_ms = int(sys.argv[1])
events = [json.loads(l) for l in open("events.jsonl")]
done = sorted(
    datetime.datetime.fromisoformat(e["finished_at"].replace("Z", "+00:00"))
    for e in events if e.get("event") == "processed"
)
n = len(done)
assert n == 365, f"{n} partitions processed"
span = lambda a, b: (done[b] - done[a]).total_seconds() * 1000
print(f"365 partitions x 2,000 rows, --concurrency 2: {total_ms} ms whole process, "
      f"{total_ms / n:.1f} ms a partition amortised")
print(f"first 30 partitions finished within {span(0, 29):.0f} ms ({span(0, 29) / 29:.1f} ms apart); "
      f"last 30 within {span(n - 30, n - 1):.0f} ms ({span(n - 30, n - 1) / 29:.1f} ms apart)")
EOF
