#!/usr/bin/env bash
# The local AWS emulator for tests: moto in server mode on a free port of 127.0.0.1.
#
#   scripts/moto.sh start   install moto into a virtualenv if needed, start it, wait until it
#                           answers, and print the environment the tests need (eval it)
#   scripts/moto.sh stop    stop the server started by `start`, by its process id
#
# State (port, pid, log) lives in $MOTO_STATE (default ~/.cache/meterflow/moto). MOTO_SERVER
# names a Python script to run in moto's virtualenv instead of `moto_server` (the benchmarks'
# scripts/bench/moto_partitioned.py).
set -euo pipefail

venv=${MOTO_VENV:-$HOME/.cache/meterflow/moto-venv}
state=${MOTO_STATE:-$HOME/.cache/meterflow/moto}
version=5.2.5

die() { echo "moto.sh: $*" >&2; exit 2; }

start() {
  command -v python3 >/dev/null 2>&1 || die "python3 is needed for the AWS emulator (moto); install Python 3"
  if [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv" || die "cannot create a virtualenv at $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$version" >&2 \
      || die "cannot install moto[server]==$version from PyPI"
  fi
  mkdir -p "$state"
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    stop
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local server=("$venv/bin/moto_server")
  [ -n "${MOTO_SERVER:-}" ] && server=("$venv/bin/python" "$MOTO_SERVER")
  nohup "${server[@]}" -H 127.0.0.1 -p "$port" > "$state/log" 2>&1 &
  echo $! > "$state/pid"
  echo "$port" > "$state/port"
  # Bounded wait: 150 tries of 0.2 s.
  for _ in $(seq 150); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/data.json', timeout=1)" 2>/dev/null; then
      cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
ENV
      return 0
    fi
    kill -0 "$(cat "$state/pid")" 2>/dev/null || { cat "$state/log" >&2; die "moto exited at start"; }
    sleep 0.2
  done
  die "moto did not answer on port $port within 30 s (log: $state/log)"
}

stop() {
  if [ -f "$state/pid" ]; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    rm -f "$state/pid" "$state/port"
  fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *) die "usage: scripts/moto.sh start|stop" ;;
esac
