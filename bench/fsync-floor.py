#!/usr/bin/env python3
"""This disk's floor for one durable commit: SQLite in WAL mode with synchronous=FULL (the
engine's settings), one small row per transaction, N transactions, in a file under DIR, GAP_MS apart
(0: back to back; 100: a quiet room's pace, where the disk and the CPUs idle between commits).

    bench/fsync-floor.py [DIR] [N] [GAP_MS]

Prints the p50, p99 and mean of the commit times: no durable send can be acked faster than one
of these, so the engine's send -> ack latency on SQLite reads against it.
"""
import os
import sqlite3
import statistics
import sys
import tempfile
import time

directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
gap = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0

with tempfile.TemporaryDirectory(dir=directory) as work:
    db = sqlite3.connect(os.path.join(work, "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE m (seq INTEGER PRIMARY KEY, content TEXT NOT NULL)")
    times = []
    for i in range(count):
        time.sleep(gap)
        started = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO m (content) VALUES (?)", (f"message {i}",))
        db.execute("COMMIT")
        times.append((time.perf_counter() - started) * 1000)
    db.close()

times.sort()
p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f"{count} commits of one row, WAL + synchronous=FULL, {gap * 1000:g} ms apart, in {directory}: "
      f"p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, mean {statistics.mean(times):.2f} ms")
