#!/usr/bin/env bash
# Every test of the project, as CI runs it (.ci/run calls this). Works on a fresh machine with
# only Rust (the pinned toolchain in rust-toolchain.toml) and Python installed.
#
# Set CARGO_TARGET_DIR to reuse a build cache between clones; nothing else is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's time, printed as it ends and again in a summary at the end (also when a step fails,
# so a slow or failing step is visible without scrolling back).
timings=()
current=""
current_start=$SECONDS
end_step() {
  if [ -n "$current" ]; then
    local took=$((SECONDS - current_start))
    timings+=("$(printf '%5ds  %s' "$took" "$current")")
    printf -- '-- %s: %ds\n' "$current" "$took"
  fi
  current=""
}
step() {
  end_step
  current=$*
  current_start=$SECONDS
  printf '\n== %s\n' "$*"
}
moto_started=0
on_exit() {
  local status=$?
  end_step
  if [ "$moto_started" = 1 ]; then
    bash scripts/moto.sh stop || true
  fi
  printf '\n== time per step\n'
  printf '%s\n' "${timings[@]}"
  printf '%5ds  total (exit %d)\n' "$SECONDS" "$status"
}
trap on_exit EXIT

# Installs a Debian package that provides command $1 when it is missing (root and apt-get only).
needs() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "$1 is missing and cannot be installed here (needs root and apt-get)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

step "toolchain"
rustc --version
cargo --version

step "headless Chromium for the page test"
needs chromium
chromium --version
# The page test must run, not skip, wherever this script runs.
export METER_REQUIRE_CHROMIUM=1

step "Python tools (cfn-lint, checkov) in a virtualenv"
# Outside the clone by default, so CI runs reuse it; a fresh machine creates it.
venv=${METER_VENV:-$HOME/.cache/meterflow/venv}
if [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/checkov" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "cfn-lint==1.58.0" "checkov==3.3.30"
fi
"$venv/bin/cfn-lint" --version

step "push clients (influxdb-client, paho-mqtt) and the MQTT broker (mosquitto)"
# The push tests drive meter serve with the clients users run, against a real broker.
push_venv=${METER_PUSH_VENV:-$HOME/.cache/meterflow/push-venv}
if ! "$push_venv/bin/python" -c "import influxdb_client, paho.mqtt" 2>/dev/null; then
  python3 -m venv "$push_venv"
  "$push_venv/bin/pip" install -q --disable-pip-version-check "influxdb-client==1.50.0" "paho-mqtt==2.1.0"
fi
export METER_PUSH_PYTHON="$push_venv/bin/python"
needs mosquitto
export METER_REQUIRE_PUSH=1
"$METER_PUSH_PYTHON" -c "import influxdb_client; print('influxdb-client', influxdb_client.__version__)"

step "shellcheck"
needs shellcheck
shellcheck scripts/*.sh .ci/run
echo "shellcheck ok"

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "the local AWS emulator (moto)"
eval "$(bash scripts/moto.sh start)"
moto_started=1
# The emulator tests must run, not skip, wherever this script runs.
export METER_REQUIRE_MOTO=1
echo "moto on $AWS_ENDPOINT_URL"

step "tests"
# The end-to-end pipelines (e2e/tests/pipelines.rs) wait for their own step below.
cargo test --workspace --all-features --locked

step "end to end: the five seed pipelines through the local stack"
bash scripts/e2e.sh

step "reliability: the fault suite (20% of AWS requests faulted; figures in RELIABILITY.md)"
bash scripts/reliability.sh faults

step "CloudFormation: synthesise every variant, then cfn-lint and checkov"
cargo run -q --locked -p infra -- --out infra/out
"$venv/bin/cfn-lint" infra/out/*.json
"$venv/bin/checkov" -d infra/out --framework cloudformation --quiet --compact --skip-download
echo "templates ok"

step "main job: import the examples and print daily rollups"
METER_PROFILE=dev bash scripts/demo.sh --once >/dev/null
echo "demo ok"
