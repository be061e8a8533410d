#!/usr/bin/env bash
# The main job on the embedded store: import the example files and print daily rollups.
# The store goes to $METER_STORE if set, else to a fresh temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q -p meter-cli
meter="${CARGO_TARGET_DIR:-target}/release/meter"
if [ -z "${METER_STORE:-}" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  export METER_STORE="$tmp/meterflow.db"
fi

"$meter" import examples/
echo
echo "# Half-hourly consumption (seed 004 layout), daily sums:"
"$meter" query daily EX00101 --from 2024-03-01 --to 2024-03-03
echo
echo "# Water counter (cumulative), daily use as last minus first, in Europe/London:"
"$meter" query daily flat-cold --from 2024-03-01 --to 2024-03-02 --tz Europe/London
echo
echo "# Garage thermometer (gauge), daily min/mean/max:"
"$meter" query daily garage --from 2024-03-01 --to 2024-03-02
echo
echo "# Latest value of every series:"
"$meter" query latest
