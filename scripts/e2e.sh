#!/usr/bin/env bash
# End to end: every seed pipeline hydrated through the local stack (the AWS emulator, the SST
# Cloud and series stand-ins, the template's resources, each function's handler); prints each
# check, then a table of pipelines with pass/fail and hydration times. Fails when any fails.
#   scripts/e2e.sh [PIPELINE...]   (default: all; names in e2e/tests/pipelines.rs)
# Starts its own emulator when AWS_ENDPOINT_URL is not set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  export MOTO_STATE=${MOTO_STATE:-$HOME/.cache/meterflow/moto-e2e}
  eval "$(bash scripts/moto.sh start)"
  trap 'bash scripts/moto.sh stop' EXIT
fi
export METER_E2E=1
# The same package selection and features as the test command's `cargo test`, so its build
# is reused rather than redone with other feature sets.
cargo test -q --locked --workspace --all-features --test pipelines -- "$@"
