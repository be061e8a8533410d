#!/usr/bin/env bash
# Bounded fuzzing (cargo-fuzz, libFuzzer, nightly) of every decoder and the API's query
# parsing, from the committed seeds in fuzz/seeds (taken from examples/); new inputs go to a
# scratch directory, so the tree stays clean. Prints a table of executions and crashes per
# target and fails on any crash (the input is kept under fuzz/artifacts/<target>/).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install -q --locked cargo-fuzz --version 0.13.2
fi

targets=(decode_wide_csv decode_long_csv decode_pi_json decode_mbed decode_sst_counters api_query)
cargo +nightly fuzz build -O
rows=()
failed=0
for t in "${targets[@]}"; do
  scratch=$(mktemp -d)
  log=$(mktemp)
  if cargo +nightly fuzz run -O "$t" "$scratch" "fuzz/seeds/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    failed=1
    echo "== $t crashed:" >&2
    tail -40 "$log" >&2
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rows+=("| $t | ${runs:-?} | $crashes | $(find "$scratch" -type f | wc -l) |")
  rm -rf "$scratch" "$log"
done
echo "| target | executions in ${secs} s | crashes | new corpus inputs |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
