#!/usr/bin/env bash
# Push ingestion rates for BENCHMARKS.md, side by side in one run (medians of RUNS):
#   - `meter import` of the readings as a long CSV (rows in time order), the baseline;
#   - MQTT, drain: N QoS 1 messages queued by mosquitto for meter serve's offline session, then
#     the time from its start until all N are in the store (the subscriber's own rate);
#   - MQTT, live: meter serve subscribed while paho-mqtt publishes the N messages (publisher,
#     broker and server on the same cores; the Python publisher is the slowest of the three);
#   - line protocol through `POST /api/v2/write`, 5,000 lines a request (Telegraf's batches are
#     1,000 by default), one client, until the last write answered 204.
# Message i is meter M{i % METERS} at 2024-01-01 + (i / METERS) minutes with value i / 4.
# Needs mosquitto (Debian) and a Python with paho-mqtt (METER_PUSH_PYTHON; scripts/test.sh makes
# one under ~/.cache/meterflow/push-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${PUSH_MESSAGES:-200000}
METERS=${PUSH_METERS:-100}
RUNS=${RUNS:-3}
DATA=${BENCH_DATA:-bench-data}/push
PY=${METER_PUSH_PYTHON:-$HOME/.cache/meterflow/push-venv/bin/python}
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || { echo "bench-push.sh needs mosquitto (apt-get install mosquitto)" >&2; exit 2; }
"$PY" -c "import paho.mqtt" || { echo "set METER_PUSH_PYTHON to a Python with paho-mqtt" >&2; exit 2; }

cargo build --release --locked -q -p meter-cli
BIN=${CARGO_TARGET_DIR:-target}/release
rm -rf "$DATA"
mkdir -p "$DATA/broker"
TOKEN=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

cat > "$DATA/helper.py" <<'EOF'
import http.client, json, sqlite3, sys, time
START_MS = 1704067200000
cmd = sys.argv[1]
if cmd == "port":
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
elif cmd == "gen":  # gen N METERS CSV LP
    n, meters, csv_path, lp_path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    with open(csv_path, "w") as c, open(lp_path, "w") as lp:
        c.write("meter,time,value,measure\n")
        for i in range(n):
            m, t, v = f"M{i % meters:02}", START_MS + (i // meters) * 60000, i / 4
            c.write(f"{m},{t},{v},power\n")
            lp.write(f"power,meter={m} value={v} {t}\n")
elif cmd == "wait":  # wait STORE N T0: seconds from T0 until STORE holds N readings
    store, n, t0 = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
            got = db.execute("SELECT count(*) FROM readings").fetchone()[0]
            db.close()
        except sqlite3.OperationalError:
            got = 0
        if got >= n:
            print(f"{time.time() - t0:.3f}")
            sys.exit(0)
        time.sleep(0.02)
    sys.exit(f"timed out: {got} of {n}")
elif cmd == "post":  # post ADDR TOKEN LP: seconds to write the file, 5,000 lines a request
    addr, token, path = sys.argv[2], sys.argv[3], sys.argv[4]
    host, port = addr.split(":")
    conn = http.client.HTTPConnection(host, int(port))
    lines = open(path).read().splitlines(keepends=True)
    t0 = time.time()
    for k in range(0, len(lines), 5000):
        conn.request("POST", "/api/v2/write?org=o&bucket=b&precision=ms",
                     body="".join(lines[k:k + 5000]).encode(),
                     headers={"Authorization": f"Token {token}"})
        r = conn.getresponse(); body = r.read()
        if r.status != 204:
            sys.exit(f"write answered {r.status}: {body[:300]!r}")
    print(f"{time.time() - t0:.3f}")
EOF

PORT=$("$PY" "$DATA/helper.py" port)
cat > "$DATA/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $PWD/$DATA/broker/
log_dest file $PWD/$DATA/mosquitto.log
max_inflight_messages 1000
max_queued_messages 10000000
EOF
[ "$(id -u)" = 0 ] && echo "user root" >> "$DATA/mosquitto.conf"
"$MOSQUITTO" -c "$DATA/mosquitto.conf" &
BROKER=$!
SERVE=""
trap 'kill $BROKER 2>/dev/null || true; [ -n "$SERVE" ] && kill -INT $SERVE 2>/dev/null || true' EXIT
until grep -q running "$DATA/mosquitto.log" 2>/dev/null; do sleep 0.1; done

"$PY" "$DATA/helper.py" gen "$N" "$METERS" "$DATA/readings.csv" "$DATA/readings.lp"
now() { date +%s.%N; }

# Starts meter serve on store $1 with extra flags; waits until it listens (and subscribed,
# when it has --mqtt).
serve() {
  local store=$1; shift
  # Emptied here, not by the redirect: the child truncates it only once it runs, and the wait
  # below must not find the previous server's line.
  : > "$DATA/serve.log"
  METER_API_TOKEN=$TOKEN "$BIN/meter" --store "$store" serve --listen 127.0.0.1:0 \
    --drop "$DATA/drop" "$@" >> "$DATA/serve.log" 2>> "$DATA/serve.err" &
  SERVE=$!
  until grep -q "listening on" "$DATA/serve.log"; do sleep 0.02; done
  if [ "${1:-}" = "--mqtt" ]; then
    until grep -q "mqtt subscribed" "$DATA/serve.log"; do sleep 0.02; done
  fi
}
stop() { kill -INT "$SERVE"; wait "$SERVE"; SERVE=""; }

declare -a t_import t_drain t_live t_lp
for run in $(seq "$RUNS"); do
  store="$DATA/import-$run.db"
  t0=$(now)
  "$BIN/meter" --store "$store" import --no-progress "$DATA/readings.csv" > /dev/null
  t_import+=("$(echo "$(now) - $t0" | bc)")

  store="$DATA/drain-$run.db"
  serve "$store" --mqtt "mqtt://127.0.0.1:$PORT" --mqtt-client-id "drain-$run"
  stop
  "$PY" crates/meter-cli/tests/push/mqtt_publish.py "$PORT" "$N" "$METERS" "pub-drain-$run" > /dev/null
  t0=$(now)
  serve "$store" --mqtt "mqtt://127.0.0.1:$PORT" --mqtt-client-id "drain-$run"
  t_drain+=("$("$PY" "$DATA/helper.py" wait "$store" "$N" "$t0")")
  stop

  store="$DATA/live-$run.db"
  serve "$store" --mqtt "mqtt://127.0.0.1:$PORT" --mqtt-client-id "live-$run"
  t0=$(now)
  "$PY" crates/meter-cli/tests/push/mqtt_publish.py "$PORT" "$N" "$METERS" "pub-live-$run" > /dev/null
  t_live+=("$("$PY" "$DATA/helper.py" wait "$store" "$N" "$t0")")
  stop

  store="$DATA/lp-$run.db"
  serve "$store"
  addr=$(sed -n 's/^meter serve: listening on http:\/\///p' "$DATA/serve.log")
  t_lp+=("$("$PY" "$DATA/helper.py" post "$addr" "$TOKEN" "$DATA/readings.lp")")
  "$PY" "$DATA/helper.py" wait "$store" "$N" "$(now)" > /dev/null
  stop
  echo "run $run: import ${t_import[-1]} s, mqtt drain ${t_drain[-1]} s, mqtt live ${t_live[-1]} s, line protocol ${t_lp[-1]} s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
row() {
  local name=$1; shift
  local m; m=$(median "$@")
  printf '| %s | %s | %.0f | %s |\n' "$name" "$m" "$(echo "$N / $m" | bc -l)" "$*"
}
echo "| $N readings, $METERS meters, medians of $RUNS | seconds | readings/s | runs (s) |"
echo "|---|---|---|---|"
row "\`meter import\` of the long CSV (baseline)" "${t_import[@]}"
row "MQTT QoS 1, draining the broker's queue" "${t_drain[@]}"
row "MQTT QoS 1, live (paho publisher on the same cores)" "${t_live[@]}"
row "line protocol, \`POST /api/v2/write\`, 5,000 lines a request" "${t_lp[@]}"
