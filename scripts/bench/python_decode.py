"""The way the seeds' Python Lambdas decode a CSV, as the baseline for BENCHMARKS.md:
the csv module, datetime.fromisoformat and float per row, and nothing else."""
import csv
import json
import resource
import sys
import time
from datetime import datetime

path = sys.argv[1]
started = time.perf_counter()
rows = 0
total = 0.0
with open(path, newline="") as f:
    reader = csv.reader(f)
    next(reader)
    for meter, ts, value, unit in reader:
        t = datetime.fromisoformat(ts)
        v = float(value)
        total += v
        rows += 1
secs = time.perf_counter() - started
size = __import__("os").path.getsize(path)
print(json.dumps({
    "mode": "python-csv",
    "rows": rows,
    "secs": round(secs, 3),
    "rows_per_s": round(rows / secs),
    "mb_per_s": round(size / 1e6 / secs, 1),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
