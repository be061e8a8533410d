#!/usr/bin/env bash
# Import benchmark for BENCHMARKS.md: generates a long CSV (ROWS rows, default 5,000,000) and
# measures, side by side and RUNS times each (median reported):
#   raw-csv    the csv crate reading byte records (the practical ceiling)
#   decode     meterflow's long-CSV decoder, decode and validate only
#   python     the seeds' way: csv module + datetime.fromisoformat + float per row
#   import     `meter import` into a fresh SQLite store
#   sqlite3    the sqlite3 shell's .import into an equivalent keyed table
# and the decoder's peak memory on a 1/25-size file, to show it does not grow with the file.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-5000000}
RUNS=${RUNS:-3}
DATA=${BENCH_DATA:-bench-data}
mkdir -p "$DATA"
for tool in python3 sqlite3; do
  command -v "$tool" >/dev/null || { echo "bench.sh needs $tool on PATH" >&2; exit 2; }
done

cargo build --release --locked -q -p meter-bench -p meter-cli
BIN=${CARGO_TARGET_DIR:-target}/release
FILE="$DATA/long-$ROWS.csv"
SMALL="$DATA/long-$((ROWS / 25)).csv"
[ -s "$FILE" ] || "$BIN/meter-bench" gen "$ROWS" "$FILE"
[ -s "$SMALL" ] || "$BIN/meter-bench" gen "$((ROWS / 25))" "$SMALL"
BYTES=$(stat -c %s "$FILE")

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS" "$DATA"/bench-*.db*' EXIT

# seconds and peak RSS (KiB) of one command, as "label secs kib"
measure() {
  local label=$1; shift
  local out
  out=$( { /usr/bin/time -f '%e %M' "$@" >/dev/null; } 2>&1 | tail -n 1)
  echo "$label $out" >> "$RESULTS"
}

for run in $(seq "$RUNS"); do
  echo "run $run of $RUNS" >&2
  measure raw-csv "$BIN/meter-bench" raw "$FILE"
  measure decode "$BIN/meter-bench" decode "$FILE"
  measure python python3 scripts/bench/python_decode.py "$FILE"
  rm -f "$DATA"/bench-meter.db*
  measure import "$BIN/meter" --store "$DATA/bench-meter.db" import --no-progress "$FILE"
  rm -f "$DATA"/bench-sqlite.db*
  measure sqlite3 sqlite3 "$DATA/bench-sqlite.db" \
    "PRAGMA journal_mode=WAL;" "PRAGMA synchronous=NORMAL;" \
    "CREATE TABLE readings (meter TEXT NOT NULL, time TEXT NOT NULL, value REAL NOT NULL, unit TEXT, PRIMARY KEY (meter, time));" \
    ".import --csv --skip 1 $FILE readings"
done
measure decode-small "$BIN/meter-bench" decode "$SMALL"
rm -f "$DATA"/bench-meter.db*
"$BIN/meter" --store "$DATA/bench-meter.db" import --no-progress "$FILE" >/dev/null
METER_DB=$(du -b "$DATA/bench-meter.db" | cut -f1)
rm -f "$DATA"/bench-sqlite.db*
sqlite3 "$DATA/bench-sqlite.db" "CREATE TABLE readings (meter TEXT NOT NULL, time TEXT NOT NULL, value REAL NOT NULL, unit TEXT, PRIMARY KEY (meter, time));" ".import --csv --skip 1 $FILE readings"
SQLITE_DB=$(du -b "$DATA/bench-sqlite.db" | cut -f1)

python3 - "$RESULTS" "$ROWS" "$BYTES" "$METER_DB" "$SQLITE_DB" <<'PY'
import statistics, sys
path, rows, size, meter_db, sqlite_db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
runs = {}
for line in open(path):
    label, secs, kib = line.split()
    runs.setdefault(label, []).append((float(secs), int(kib)))
med = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
peak = {k: max(m for _, m in v) / 1024 for k, v in runs.items()}
print(f"{rows:,} rows, {size / 1e6:.0f} MB; median of {len(runs['decode'])} runs\n")
print("| measurement | median s | rows/s | MB/s | peak RSS MiB |")
print("|---|---|---|---|---|")
for k in ["raw-csv", "decode", "python", "import", "sqlite3"]:
    s = med[k]
    print(f"| {k} | {s:.2f} | {rows / s:,.0f} | {size / 1e6 / s:.0f} | {peak[k]:.1f} |")
print()
print(f"- decode / raw-csv time: {med['decode'] / med['raw-csv']:.2f}x (goal: within 2.5x)")
print(f"- python / decode time: {med['python'] / med['decode']:.1f}x faster (goal: at least 8x)")
print(f"- sqlite3 .import / meter import time: {med['sqlite3'] / med['import']:.1f}x faster (goal: faster)")
print(f"- decoder peak RSS: {peak['decode-small']:.1f} MiB on {rows // 25:,} rows, {peak['decode']:.1f} MiB on {rows:,} rows (goal: under 64 MB, flat)")
print(f"- store size: meter {meter_db / 1e6:.0f} MB, sqlite3 keyed table {sqlite_db / 1e6:.0f} MB")
PY
