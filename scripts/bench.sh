#!/usr/bin/env bash
# Import benchmark for BENCHMARKS.md. Generates the same long CSV (ROWS rows, default 2,000,000;
# 1,000 meters read every 5 minutes) in two row orders, "time" (every meter at t, then every
# meter at t+5 min: how collectors and exports write) and "meter" (each meter's run in turn),
# and measures the commands users run, side by side and RUNS times each (medians reported):
#   raw-csv    the csv crate reading byte records (the practical ceiling)
#   dry-run    `meter import --dry-run --no-progress` (decode and validate, as a command)
#   python     the seeds' way: csv module + datetime.fromisoformat + float per row
#   import     `meter import --no-progress` into a fresh SQLite store (WAL, synchronous=NORMAL)
#   sqlite3    the sqlite3 shell's .import into (meter TEXT, ts TEXT, value, unit)
#              PRIMARY KEY (meter, ts) WITHOUT ROWID, WAL, synchronous=NORMAL
# with each command's peak memory, and `meter import`'s peak memory on MEM_ROWS rows (default
# 5,000,000) in both orders. `meter import` also runs on a third file, the same rows in time
# order as water counters (cumulative, so stored rollups run the counter rules). With
# PREV_METER=path/to/an/older/meter, that binary imports the same files in the same runs (how
# the cost of stored rollups was measured: PREV_METER built from the commit before them).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-2000000}
MEM_ROWS=${MEM_ROWS:-5000000}
RUNS=${RUNS:-3}
DATA=${BENCH_DATA:-bench-data}
mkdir -p "$DATA"
for tool in python3 sqlite3; do
  command -v "$tool" >/dev/null || { echo "bench.sh needs $tool on PATH" >&2; exit 2; }
done

cargo build --release --locked -q -p meter-bench -p meter-cli
BIN=${CARGO_TARGET_DIR:-target}/release
for order in time meter; do
  for n in "$ROWS" "$MEM_ROWS"; do
    f="$DATA/long-$n-$order.csv"
    [ -s "$f" ] || "$BIN/meter-bench" gen "$n" "$f" "$order"
  done
done
COUNTER_FILE="$DATA/long-$ROWS-counter.csv"
[ -s "$COUNTER_FILE" ] || "$BIN/meter-bench" gen "$ROWS" "$COUNTER_FILE" counter
PREV_METER=${PREV_METER:-}
BYTES=$(stat -c %s "$DATA/long-$ROWS-time.csv")

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS" "$DATA"/bench-*.db*' EXIT

# seconds and peak RSS (KiB) of one command, as "label order secs kib"
measure() {
  local label=$1 order=$2; shift 2
  local out
  out=$( { /usr/bin/time -f '%e %M' "$@" >/dev/null; } 2>&1 | tail -n 1)
  echo "$label $order $out" >> "$RESULTS"
}

# the sqlite3 baseline's arguments after the database: a keyed table, WAL, synchronous=NORMAL
sqlite_args() {
  printf '%s\n' "PRAGMA journal_mode=WAL;" "PRAGMA synchronous=NORMAL;" \
    "CREATE TABLE readings (meter TEXT NOT NULL, ts TEXT NOT NULL, value REAL NOT NULL, unit TEXT, PRIMARY KEY (meter, ts)) WITHOUT ROWID;" \
    ".import --csv --skip 1 $1 readings"
}

for run in $(seq "$RUNS"); do
  for order in time meter; do
    echo "run $run of $RUNS, $order order" >&2
    FILE="$DATA/long-$ROWS-$order.csv"
    measure raw-csv "$order" "$BIN/meter-bench" raw "$FILE"
    measure dry-run "$order" "$BIN/meter" --store "$DATA/bench-dry.db" import --dry-run --no-progress "$FILE"
    measure python "$order" python3 scripts/bench/python_decode.py "$FILE"
    rm -f "$DATA"/bench-meter.db*
    measure import "$order" "$BIN/meter" --store "$DATA/bench-meter.db" import --no-progress "$FILE"
    if [ -n "$PREV_METER" ]; then
      rm -f "$DATA"/bench-meter.db*
      measure import-prev "$order" "$PREV_METER" --store "$DATA/bench-meter.db" import --no-progress "$FILE"
    fi
    rm -f "$DATA"/bench-sqlite.db*
    mapfile -t args < <(sqlite_args "$FILE")
    measure sqlite3 "$order" sqlite3 "$DATA/bench-sqlite.db" "${args[@]}"
  done
  rm -f "$DATA"/bench-meter.db*
  measure import counter "$BIN/meter" --store "$DATA/bench-meter.db" import --no-progress "$COUNTER_FILE"
  if [ -n "$PREV_METER" ]; then
    rm -f "$DATA"/bench-meter.db*
    measure import-prev counter "$PREV_METER" --store "$DATA/bench-meter.db" import --no-progress "$COUNTER_FILE"
  fi
done
for order in time meter; do
  rm -f "$DATA"/bench-meter.db*
  measure import-5m "$order" "$BIN/meter" --store "$DATA/bench-meter.db" import --no-progress "$DATA/long-$MEM_ROWS-$order.csv"
done
rm -f "$DATA"/bench-meter.db*
"$BIN/meter" --store "$DATA/bench-meter.db" import --no-progress "$DATA/long-$ROWS-time.csv" >/dev/null
METER_DB=$(du -b "$DATA/bench-meter.db" | cut -f1)
rm -f "$DATA"/bench-sqlite.db*
mapfile -t args < <(sqlite_args "$DATA/long-$ROWS-time.csv")
sqlite3 "$DATA/bench-sqlite.db" "${args[@]}" >/dev/null
SQLITE_DB=$(du -b "$DATA/bench-sqlite.db" | cut -f1)

python3 - "$RESULTS" "$ROWS" "$MEM_ROWS" "$BYTES" "$METER_DB" "$SQLITE_DB" <<'PY'
import statistics, sys
path, rows, mem_rows, size, meter_db, sqlite_db = sys.argv[1], *map(int, sys.argv[2:])
runs = {}
for line in open(path):
    label, order, secs, kib = line.split()
    runs.setdefault((label, order), []).append((float(secs), int(kib)))
med = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
peak = {k: max(m for _, m in v) / 1024 for k, v in runs.items()}
n = len(runs[("import", "time")])
print(f"{rows:,} rows ({size / 1e6:.0f} MB), 1,000 meters every 5 minutes; median of {n} runs\n")
print("| command | time order: s | rows/s | peak MiB | meter order: s | rows/s | peak MiB |")
print("|---|---|---|---|---|---|---|")
for k in ["raw-csv", "dry-run", "python", "import", "sqlite3"]:
    cells = []
    for o in ["time", "meter"]:
        s = med[(k, o)]
        cells += [f"{s:.2f}", f"{rows / s:,.0f}", f"{peak[(k, o)]:.0f}"]
    print(f"| {k} | " + " | ".join(cells) + " |")
print()
t, m = med[("import", "time")], med[("import", "meter")]
print(f"- meter import, time order: {rows / t / 1e6:.2f} M rows/s (goal: 1 M); "
      f"time / meter order: {t / m:.2f}x (goal: within 1.5x)")
for o in ["time", "meter"]:
    print(f"- sqlite3 .import / meter import, {o} order: "
          f"{med[('sqlite3', o)] / med[('import', o)]:.1f}x (goal: 2x, stretch 3x)")
for o in ["time", "meter"]:
    print(f"- dry-run / raw-csv, {o} order: {med[('dry-run', o)] / med[('raw-csv', o)]:.2f}x "
          f"(goal: within 2.5x); python / dry-run: {med[('python', o)] / med[('dry-run', o)]:.1f}x")
print(f"- meter import peak memory on {mem_rows:,} rows: time order "
      f"{peak[('import-5m', 'time')]:.0f} MiB, meter order {peak[('import-5m', 'meter')]:.0f} MiB "
      f"(goal: under 64 MB)")
c = med[("import", "counter")]
print(f"- meter import of the same rows as water counters (time order, counter rules in the "
      f"stored rollups): {c:.2f} s, {rows / c / 1e6:.2f} M rows/s")
if ("import-prev", "time") in med:
    for o in ["time", "meter", "counter"]:
        print(f"- stored rollups' cost, {o} file: {med[('import', o)]:.2f} s with them, "
              f"{med[('import-prev', o)]:.2f} s without (PREV_METER): "
              f"{(med[('import', o)] / med[('import-prev', o)] - 1) * 100:+.0f}% (goal: at most +15%)")
print(f"- store size ({rows:,} rows): meter {meter_db / 1e6:.0f} MB, "
      f"sqlite3 WITHOUT ROWID table {sqlite_db / 1e6:.0f} MB")
PY
