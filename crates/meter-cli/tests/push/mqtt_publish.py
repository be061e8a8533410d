"""Publishes timestamped readings to an MQTT broker at QoS 1 the way a dependable meter reader
does: paho-mqtt with its own persistent session (clean_session False), resending what the
broker has not acknowledged after a reconnect.

Usage: mqtt_publish.py PORT COUNT METERS CLIENT_ID

Message i goes to meters/M{i % METERS:02}/power with
{"time": <2024-01-01T00:00Z + (i // METERS) minutes, epoch ms>, "value": i / 4}.
Prints "acked N" to stdout each time another tenth of the messages is acknowledged by the
broker (so the test can act mid-stream), then "done N" when all are.
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt

START_MS = 1704067200000


def main() -> None:
    port, count, meters, client_id = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    acked = 0
    step = max(count // 10, 1)
    lock = threading.Lock()
    all_acked = threading.Event()
    # paho numbers a message when publish() is called, so more than 65,535 unacknowledged
    # messages would share packet ids; a device keeps a bounded window, and so does this.
    window = threading.BoundedSemaphore(1000)

    def on_publish(client, userdata, mid, reason_code, properties):
        nonlocal acked
        window.release()
        with lock:
            acked += 1
            n = acked
        if n % step == 0 or n == count:
            print(f"acked {n}", flush=True)
        if n == count:
            all_acked.set()

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
    )
    client.on_publish = on_publish
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    for i in range(count):
        meter = i % meters
        window.acquire()
        payload = json.dumps({"time": START_MS + (i // meters) * 60000, "value": i / 4})
        client.publish(f"meters/M{meter:02}/power", payload, qos=1)
    if not all_acked.wait(timeout=150):
        print(f"timeout {acked}", flush=True)
        sys.exit(1)
    client.disconnect()
    client.loop_stop()
    print(f"done {count}", flush=True)


if __name__ == "__main__":
    main()
