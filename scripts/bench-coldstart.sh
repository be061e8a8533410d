#!/usr/bin/env bash
# Lambda cold starts for BENCHMARKS.md: every function's release build started as a fresh
# process against a Lambda Runtime API and invoked once, RUNS times each, interleaved with a
# hello-world function and seed 002's Python webhook; medians. Starts the local AWS emulator
# when AWS_ENDPOINT_URL is not set.
#   scripts/bench-coldstart.sh [RUNS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  export MOTO_STATE=${MOTO_STATE:-$HOME/.cache/meterflow/moto-bench}
  eval "$(bash scripts/moto.sh start)"
  trap 'bash scripts/moto.sh stop' EXIT
fi
packages=()
for f in enqueue fetch import webhook stream-metrics api; do packages+=(-p "meter-fn-$f"); done
cargo build --profile lambda-size --locked -q "${packages[@]}" -p meter-coldstart
bin=${CARGO_TARGET_DIR:-target}/lambda-size
"$bin/coldstart" "$bin" "${1:-10}"
