#!/usr/bin/env bash
# A generated year of daily partitions with late data, failures and audits, run day
# by day through the release binary; then the status page (and its screenshot, by
# headless Chromium) and the lateness report.
#
#   bash scripts/status_year.sh [OUT_DIR]     # OUT_DIR/status.html, status.png, lateness.txt
#
# Each morning the previous day's rows arrive (00:30) and that day is run. Late rows
# of earlier days arrive during the day, k days after their own, k drawn from
# {1: 50%, 2: 25%, 3: 15%, 5: 7%, 9: 3%} (seeded); each commit's recorded time is set
# to when it would have been made. One day in 30 brings ten times the rows, which an
# audit of severity error refuses (the day fails); an audit of severity warn flags
# days with a group of more than 27 devices.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d)}
DAYS=${DAYS:-365}
mkdir -p "$out"
source scripts/release_bin.sh
work=$out/work
rm -rf "$work"
mkdir -p "$work"
default_pipeline "$work/latefill.toml"
cat >> "$work/latefill.toml" <<'TOML'

[[audit]]
name = "no day of ten times the rows"
sql = "SELECT * FROM result WHERE devices > 60"
[[audit]]
name = "a busy group"
severity = "warn"
sql = "SELECT * FROM result WHERE devices > 27 AND devices <= 60"
TOML
config=$work/latefill.toml
times=$work/commit-times.txt
: > "$times"

day() { date -u -d "2024-01-01 + $1 days" +%F; }
midnight() { date -u -d "2024-01-01 + $1 days" +%s; }
# Appends rows for day $1 ($2 rows, seed $3) and notes the commit's time, $4.
append() {
  local version
  version=$("$bin" generate --table "$work/devices" --date "$1" --rows "$2" --seed "$3" \
    | sed -E 's/.*\(version ([0-9]+)\)$/\1/')
  echo "$version $4" >> "$times"
}

# Sets the recorded time of the commits noted since the last call, before latefill
# reads them (its cursor keeps a digest of the last commit it read).
settle() {
  [[ -s "$times" ]] || return 0
  python3 - "$work/devices/_delta_log" "$times" <<'PY'
import json, pathlib, sys
log, times = pathlib.Path(sys.argv[1]), sys.argv[2]
for line in open(times):
    version, seconds = map(int, line.split())
    path = log / f"{version:020}.json"
    actions = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    for action in actions:
        if "commitInfo" in action:
            action["commitInfo"]["timestamp"] = seconds * 1000
    path.write_text("".join(json.dumps(a) + "\n" for a in actions))
PY
  : > "$times"
}

RANDOM=42
declare -A arriving
for ((i = 0; i < DAYS; i++)); do
  for ((n = RANDOM % 3; n > 0; n--)); do
    r=$((RANDOM % 100))
    if ((r < 50)); then k=1; elif ((r < 75)); then k=2; elif ((r < 90)); then k=3; elif ((r < 97)); then k=5; else k=9; fi
    arriving[$((i + k))]+="$i "
  done
done

start=$(date +%s)
failed=0
for ((a = 1; a <= DAYS; a++)); do
  d=$(day $((a - 1)))
  rows=200
  if (((a - 1) % 30 == 17)); then rows=20000; fi
  append "$d" "$rows" "$a" $(($(midnight "$a") + 1800))
  settle
  if ! "$bin" run --config "$config" --date "$d" >/dev/null 2>"$work/last-error.txt"; then
    failed=$((failed + 1))
  fi
  for i in ${arriving[$a]:-}; do
    append "$(day "$i")" 20 $((1000 + a * 10 + i % 10)) $(($(midnight "$a") + 3600 * (1 + RANDOM % 22)))
  done
done
settle
echo "ran $DAYS days in $(($(date +%s) - start)) s; $failed runs exited non-zero"

"$bin" status --config "$config" --format html --out "$out/status.html"
"$bin" lateness --config "$config" | tee "$out/lateness.txt"
"$bin" status --config "$config" --state failed | tee "$out/failed.txt"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,1500 \
  --screenshot="$out/status.png" "file://$out/status.html" 2>/dev/null || true
echo "page: $out/status.html, screenshot: $out/status.png"
