"""Writes readings to `meter serve` with the official InfluxDB 2 Python client, as a user's
script or a Telegraf-like collector would, and prints what happened as one JSON object.

Usage: influx_write.py URL TOKEN METERS POINTS_PER_METER

Meter m's point i is interval use `((i * 7 + m) % 11) / 4` litres at T0 + 5 minutes * i,
written as `water,meter=lp-<m>,unit=L,kind=interval used=<value> <epoch seconds>`. Points go out
in time order (all meters at t, then t + 5 min), 5,000 to a request, gzip-compressed. Three bad
lines are put at known places in the second request; the first request is sent twice.
"""

import json
import sys

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

T0 = 1_717_200_000  # 2024-06-01T00:00:00Z
STEP = 300
PER_REQUEST = 5_000
BAD = {
    # index in the second request -> the bad line put before the point at that index
    10: "water,meter=lp-bad used=\"leaking\" 1717200000",
    20: "water used=1 1717200000",
    30: "water,meter=lp-bad used=1 17172x",
}


def main():
    url, token, meters, points = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    lines = []
    for i in range(points):
        for m in range(meters):
            value = ((i * 7 + m) % 11) / 4
            lines.append(f"water,meter=lp-{m},unit=L,kind=interval used={value} {T0 + STEP * i}")
    requests = [lines[k:k + PER_REQUEST] for k in range(0, len(lines), PER_REQUEST)]
    if len(requests) > 1:
        second = requests[1]
        for index in sorted(BAD, reverse=True):
            second.insert(index, BAD[index])
    sends = [requests[0]] + requests
    answers = []
    with InfluxDBClient(url=url, token=token, org="home", enable_gzip=True, timeout=60_000) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        for n, body in enumerate(sends):
            try:
                write.write(bucket="meters", record=body, write_precision=WritePrecision.S)
            except ApiException as e:
                answers.append({"request": n, "status": e.status, "body": json.loads(e.body)})
    bad_lines = sorted(index + 1 + k for k, index in enumerate(sorted(BAD)))
    print(json.dumps({
        "requests": len(sends),
        "points": len(lines),
        "errors": answers,
        "bad_lines": bad_lines,
    }))


if __name__ == "__main__":
    main()
