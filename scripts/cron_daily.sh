#!/usr/bin/env bash
# Daily load from cron, e.g. in crontab:
#   15 2 * * *  /opt/latefill/scripts/cron_daily.sh /etc/latefill/devices_daily.toml >> /var/log/latefill.log 2>&1
#
# Processes yesterday's partition and reprocesses whatever arrived late for the last
# 30 days. Exit codes are latefill's (see README): 4 means another run holds the
# partition, so we retry a few times before giving up.
set -euo pipefail

config=${1:?usage: cron_daily.sh PIPELINE.toml [YYYY-MM-DD]}
date=${2:-$(date -d yesterday +%F)}
latefill=${LATEFILL:-latefill}

for attempt in 1 2 3; do
  set +e
  "$latefill" run --config "$config" --date "$date" --lookback 30 --output json
  code=$?
  set -e
  case $code in
    0) exit 0 ;;
    4) echo "partition held by another run (attempt $attempt); retrying in 60s" >&2; sleep 60 ;;
    *) exit "$code" ;;
  esac
done
exit 4
