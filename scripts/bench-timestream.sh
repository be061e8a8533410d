#!/usr/bin/env bash
# Timestream write cost for BENCHMARKS.md: our layout against seed 000's, from the requests
# actually sent to the local AWS emulator (started here when AWS_ENDPOINT_URL is not set).
#   scripts/bench-timestream.sh [READINGS]   (default 10,000)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  export MOTO_STATE=${MOTO_STATE:-$HOME/.cache/meterflow/moto-bench}
  eval "$(bash scripts/moto.sh start)"
  trap 'bash scripts/moto.sh stop' EXIT
fi
cargo run --release --locked -q -p meter-store-timestream --example write_cost -- "${1:-10000}"
