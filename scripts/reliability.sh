#!/usr/bin/env bash
# Reliability: faults, hostile input (fuzzing), security and load, each printing its table, then
# all the tables together.
#
#   scripts/reliability.sh [faults|security|fuzz|load|all]...   (default: all)
#
# faults    the handlers with 20% of their AWS requests faulted by a proxy (throttling, 500,
#           503, connections cut after the work, delays): 100,000 imported readings, 1,000
#           fetched registry entries, 10,000 webhook presses, counted back from the emulator
#           (e2e/tests/faults.rs); the import and the rest side by side, on two emulators of
#           their own
# security  secrets checked exactly and never logged, injection, scoped IAM, hostile input
# fuzz      every decoder and the API's query parsing under cargo-fuzz, FUZZ_SECONDS per
#           target (default 60; needs the nightly toolchain)
# load      `meter serve` under wrk for LOAD_DURATION (default 10s) per route while its drop
#           folder imports IMPORT_ROWS readings (default 1,000,000)
#
# The test command runs `faults` and `security`; `fuzz` and `load` are the long runs.
set -euo pipefail
cd "$(dirname "$0")/.."

suites=("$@")
[ ${#suites[@]} -gt 0 ] && [ "${suites[0]}" != all ] || suites=(faults security fuzz load)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for suite in "${suites[@]}"; do
  echo "== $suite"
  case $suite in
    faults)
      # Each part on an emulator of its own, the import beside the rest: moto serves one
      # request at a time per process, and its Query sorts the whole table (the import's
      # holds 100,000 readings), so two emulators use both cores.
      cargo test -q --locked --workspace --all-features --test faults --no-run
      part() {
        local name=$1
        shift
        (
          export MOTO_STATE=$HOME/.cache/meterflow/moto-faults-$name
          eval "$(bash scripts/moto.sh start)"
          trap 'bash scripts/moto.sh stop' EXIT
          METER_E2E=1 cargo test -q --locked --workspace --all-features --test faults -- "$@"
        ) > "$out/faults-$name" 2>&1
      }
      part import import &
      import_pid=$!
      part rest fetch fetch-harsh webhook &
      rest_pid=$!
      status=0
      wait "$import_pid" || status=1
      wait "$rest_pid" || status=1
      cat "$out/faults-import" "$out/faults-rest" | tee "$out/faults"
      [ "$status" = 0 ]
      ;;
    security)
      # The security and hostile-input tests, by name, across the workspace (they also run in
      # the test command's `cargo test`).
      (
        if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
          eval "$(bash scripts/moto.sh start)"
          trap 'bash scripts/moto.sh stop' EXIT
        fi
        export METER_REQUIRE_MOTO=1
        cargo test -q --locked --workspace --all-features -- \
          secret token webhook_counts hostile nested huge_cell binary oversized_json scoped escaped 2>&1
      ) | tee "$out/security.log"
      passed=$(grep -o '[0-9]* passed' "$out/security.log" | awk '{s += $1} END {print s + 0}')
      failed=$(grep -o '[0-9]* failed' "$out/security.log" | awk '{s += $1} END {print s + 0}')
      printf '| security and hostile-input tests | passed | failed |\n|---|---|---|\n| %s | %s | %s |\n' \
        "secrets, injection, IAM scope, hostile input" "$passed" "$failed" > "$out/security"
      [ "$failed" = 0 ]
      ;;
    fuzz)
      bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}" | tee "$out/fuzz"
      ;;
    load)
      DURATION=${LOAD_DURATION:-10s} IMPORT_ROWS=${IMPORT_ROWS:-1000000} bash scripts/bench-api.sh | tee "$out/load"
      ;;
    *)
      echo "reliability.sh: no suite $suite (faults, security, fuzz, load, all)" >&2
      exit 2
      ;;
  esac
done

echo
echo "== summary"
for suite in "${suites[@]}"; do
  echo
  echo "$suite:"
  grep -E '^\||^drop-folder|^nothing lost|^LOST' "$out/$suite" || true
done
