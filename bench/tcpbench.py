"""
TCP ingest: the same points sent as fast as the receiver takes them, timed
until every point can be read back from storage.

Carbon gets Graphite plaintext lines (C{name value ts}) and is read back from
its whisper files; SimpleStats gets JSON tuple batches after C{--quiet} and
is read back from C{/api/series}.  M metrics x P timestamps one second
apart, in time order, as agents report.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error

from bench import counting
from bench.procstat import pinned
from bench.systems import BENCH_DIR


def metric_names(metrics):
    return ["bench.tcp.m%05d" % i for i in range(metrics)]


class CarbonStorage:
    """
    Counts the points in carbon's whisper files.
    """

    ordered = False

    def __init__(self, whisper, whisper_dir):
        self.whisper = whisper
        self.whisper_dir = whisper_dir

    def stored(self, name, first_ts, points):
        path = os.path.join(self.whisper_dir, *name.split(".")) + ".wsp"
        try:
            _, values = self.whisper.fetch(path, first_ts - 1, first_ts + points)
        except (OSError, self.whisper.WhisperException):
            return 0
        return sum(1 for v in values if v is not None)


class SimpleStatsStorage:
    """
    Counts the points in SimpleStats' 5 s tier over its HTTP API.  Points
    are applied in the order they arrive, so the last metric completes last.
    """

    ordered = True

    def __init__(self, system):
        self.system = system
        # Server CPU spent answering these requests: not the load's.
        self.counting_cpu = 0.0

    def stored(self, name, first_ts, points):
        began = self.system.process.cpu_seconds()
        try:
            return self.system.series_count(name, first_ts, "count")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return 0
            raise
        finally:
            self.counting_cpu += self.system.process.cpu_seconds() - began


def wait_stored(storage, names, first_ts, points, timeout, interval=0.25,
                clock=time.monotonic, sleep=time.sleep):
    """
    Poll until every metric holds C{points} points.

    For an ordered store only the first incomplete metric (in send order,
    checked from the last one sent) is looked at each round, so polling
    costs the server almost nothing.

    @return: C{(complete, stored points)}
    """
    pending = list(names)
    done_points = 0
    deadline = clock() + timeout
    if storage.ordered:
        # The last metric sent completes last: wait for it first.
        pending = [names[-1]] + list(names[:-1])
    while pending:
        still = []
        for index, name in enumerate(pending):
            got = storage.stored(name, first_ts, points)
            if got >= points:
                done_points += got
                continue
            still.append(name)
            if storage.ordered:
                still.extend(pending[index + 1:])
                break
        pending = still
        if not pending:
            return True, done_points
        if clock() >= deadline:
            partial = sum(storage.stored(n, first_ts, points) for n in pending)
            return False, done_points + partial
        sleep(interval)
    return True, done_points


def run_tcp_load(system, port, fmt, storage, metrics, points, load_core, timeout):
    """
    Send the load to C{port} and time it until stored.
    """
    first_ts = int(time.time()) - points - 120
    first_ts -= first_ts % 5
    names = metric_names(metrics)
    argv = [sys.executable, os.path.join(BENCH_DIR, "loadgen.py"), "tcp", "--port", str(port),
            "--format", fmt, "--metrics", str(metrics), "--points", str(points),
            "--first-ts", str(first_ts)]
    cpu_before = system.process.cpu_seconds()
    sender = subprocess.Popen(pinned(argv, load_core), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        first = sender.stdout.readline().split()
        if len(first) != 2 or first[0] != "start":
            raise RuntimeError("TCP sender did not start: %r %s" % (first, sender.stderr.read()[-2000:]))
        started = float(first[1])
        complete, stored = wait_stored(storage, names, first_ts, points, timeout)
        stored_at = time.time()
        out, err = sender.communicate(timeout=120)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    if sender.returncode != 0:
        raise RuntimeError("TCP sender failed: %s" % err[-2000:])
    sent = json.loads(out.strip().splitlines()[-1])
    counting_cpu = getattr(storage, "counting_cpu", 0.0)
    cpu = max(0.0, system.process.cpu_seconds() - cpu_before - counting_cpu)
    total = metrics * points
    seconds = stored_at - started
    return {
        "format": fmt,
        "points": total,
        "bytes": sent["bytes"],
        "complete": complete,
        "stored": stored,
        "send_seconds": sent["send_seconds"],
        "accept_rate": total / max(sent["send_seconds"], 1e-9),
        "stored_seconds": seconds,
        "stored_rate": total / seconds if complete else None,
        "cpu_seconds": cpu,
        "counting_cpu_seconds": counting_cpu,
        "cpu_per_million": cpu / total * 1e6,
        "peak_rss": system.process.memory()["peak_rss"],
        "answer": sent["answer"],
    }
