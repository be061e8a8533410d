#!/usr/bin/env bash
# DynamoDB read cost for BENCHMARKS.md: the items and read units one meter's queries read as
# the table grows to 100, 1,000 and 10,000 meters, counted by the store against the local AWS
# emulator (started here when AWS_ENDPOINT_URL is not set, with scripts/bench/moto_partitioned.py:
# moto whose Query reads one partition, as DynamoDB does, instead of sorting the whole table).
#   scripts/bench-dynamodb.sh [SIZES]   (default 100,1000,10000)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  export MOTO_STATE=${MOTO_STATE:-$HOME/.cache/meterflow/moto-bench}
  export MOTO_SERVER=${MOTO_SERVER:-scripts/bench/moto_partitioned.py}
  eval "$(bash scripts/moto.sh start)"
  trap 'bash scripts/moto.sh stop' EXIT
fi
cargo run --release --locked -q -p meter-store-dynamodb --example read_cost -- "${1:-100,1000,10000}"
