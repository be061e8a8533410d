#!/usr/bin/env bash
# API latency for BENCHMARKS.md: a store of 100 meters x a year of 5-minute readings
# (10.5 million; even meters are thermometers, odd ones water counters), `meter serve` on
# loopback, and wrk against its routes:
#   - one day of one meter's 5-minute readings (288 rows, JSON)
#   - a year of daily rollups of one meter (366 buckets over 105,120 readings), a thermometer's
#     and a water counter's (served from stored daily rollups)
#   - a month of hourly rollups of one meter (720 buckets, from stored hourly rollups)
# With IMPORT_ROWS=N (N > 0), a long CSV of N readings is dropped into `meter serve`'s drop
# folder as the load starts, so the routes are measured while it imports; the run then waits
# for the import and fails unless every row landed with no quarantine (the load suite of
# scripts/reliability.sh).
# Needs wrk (Debian package `wrk`; installed here when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
IMPORT_ROWS=${IMPORT_ROWS:-0}
load_errors=0
CONNECTIONS=${CONNECTIONS:-8}
DATA=${BENCH_DATA:-bench-data}
PORT=${PORT:-18765}
if ! command -v wrk >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "bench-api.sh needs wrk" >&2; exit 2
  fi
fi
cargo build --release --locked -q -p meter-bench -p meter-cli
BIN=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$DATA"
STORE="$DATA/api-100x366-mixed.db"
[ -s "$STORE" ] || "$BIN/meter-bench" fill "$STORE" 100 366 >&2

TOKEN=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
METER_API_TOKEN=$TOKEN "$BIN/meter" --store "$STORE" serve --listen "127.0.0.1:$PORT" --drop "$DATA/api-drop" > "$DATA/api-serve.log" 2>&1 &
PID=$!
trap 'kill -INT $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
until grep -q "listening on" "$DATA/api-serve.log"; do
  kill -0 $PID 2>/dev/null || { cat "$DATA/api-serve.log" >&2; exit 1; }
  sleep 0.1
done

run() {
  local label=$1 path=$2
  # Check the answer once before loading the route.
  curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$path" -o /dev/null
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT$path" > "$DATA/wrk-$label.txt"
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' "$DATA/wrk-$label.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$DATA/wrk-$label.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$DATA/wrk-$label.txt")
  errors=$(grep -E "Non-2xx|Socket errors" "$DATA/wrk-$label.txt" || echo none)
  [ "$errors" = none ] || load_errors=1
  echo "| $label | \`$path\` | $rps | $p50 | $p99 | $errors |"
}

DROP="$DATA/api-drop"
if [ "$IMPORT_ROWS" -gt 0 ]; then
  BIG="$DATA/load-$IMPORT_ROWS.csv"
  [ -s "$BIG" ] || "$BIN/meter-bench" gen "$IMPORT_ROWS" "$BIG" time >&2
  rm -rf "$DROP/done" "$DROP/quarantine"
  name="load-$(date +%s).csv"
  # Written under a name the watcher skips, then renamed: the import never sees half a file.
  cp "$BIG" "$DROP/$name.tmp" && mv "$DROP/$name.tmp" "$DROP/$name"
  import_started=$(date +%s.%N)
  echo "importing $IMPORT_ROWS readings through the drop folder while the routes are loaded"
fi

echo "wrk -t2 -c$CONNECTIONS -d$DURATION against meter serve on loopback; store: 100 meters x 366 days of 5-minute readings"
echo
echo "| route | request | requests/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
run day-of-readings "/v1/meters/M042/readings?from=2024-06-01&to=2024-06-01&limit=1000"
run year-of-daily "/v1/meters/M042/daily?from=2024-01-01&to=2024-12-31"
run year-of-daily-counter "/v1/meters/M043/daily?from=2024-01-01&to=2024-12-31"
run month-of-hourly "/v1/meters/M042/hourly?from=2024-06-01&to=2024-06-30"
run seed004-day "/?meterId=M042&date=01-06-2024"

if [ "$IMPORT_ROWS" -gt 0 ]; then
  while [ -e "$DROP/$name" ]; do
    kill -0 $PID 2>/dev/null || { cat "$DATA/api-serve.log" >&2; exit 1; }
    sleep 0.5
  done
  secs=$(awk -v a="$import_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ ! -e "$DROP/done/$name" ] || [ -n "$(ls -A "$DROP/quarantine" 2>/dev/null)" ]; then
    echo "the dropped file was not imported cleanly:" >&2
    ls -R "$DROP" >&2
    tail -20 "$DATA/api-serve.log" >&2
    exit 1
  fi
  echo
  echo "drop-folder import of $IMPORT_ROWS readings: done in ${secs} s during the load, nothing quarantined"
  if [ "$load_errors" != 0 ]; then
    echo "the load saw errors (above)" >&2
    exit 1
  fi
fi
