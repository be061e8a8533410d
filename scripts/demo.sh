#!/usr/bin/env bash
# The main job on the embedded store: import examples/ and serve the API and the page of charts
# on http://127.0.0.1:8080 (Ctrl-C stops it). With --once, print daily rollups and exit instead.
#
# The store goes to $METER_STORE if set, else to a fresh temporary folder. The API token is
# $METER_API_TOKEN if set, else a random one printed below.
set -euo pipefail
cd "$(dirname "$0")/.."

# METER_PROFILE=dev builds without the release optimisations (the test command does, to save time).
profile=${METER_PROFILE:-release}
cargo build --profile "$profile" --locked -q -p meter-cli
dir=$profile
[ "$profile" = dev ] && dir=debug
meter="${CARGO_TARGET_DIR:-target}/$dir/meter"
if [ -z "${METER_STORE:-}" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  export METER_STORE="$tmp/meterflow.db"
fi

"$meter" import examples/

if [ "${1:-}" = "--once" ]; then
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
  exit 0
fi

if [ -z "${METER_API_TOKEN:-}" ]; then
  METER_API_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  export METER_API_TOKEN
fi
listen=${METER_LISTEN:-127.0.0.1:8080}
echo
echo "Open http://$listen/ui/login and sign in with the API token: $METER_API_TOKEN"
echo "API:  curl -H 'Authorization: Bearer $METER_API_TOKEN' http://$listen/v1/meters"
echo "Drop files into $(dirname "$METER_STORE")/drop to import them. Ctrl-C stops."
"$meter" serve --listen "$listen"
