"""
TCP ingest: the same points sent as fast as the receiver takes them, timed
until every point can be read back from storage.

Carbon gets Graphite plaintext lines (C{name value ts}) and is read back from
its whisper files; SimpleStats gets JSON tuple batches after C{--quiet} and
is read back from C{/api/series}.  M metrics x P timestamps one second
apart, in time order, as agents report: plain numbers, or real ones (typed
values with varying numbers and some tags, see L{bench.shapes.tcp_payload}).
"""

import json
import os
import subprocess
import sys
import time
import urllib.error

from bench import shapes
from bench.procstat import pinned
from bench.systems import BENCH_DIR


class CarbonStorage:
    """
    Counts the points in carbon's whisper files.
    """

    ordered = False

    def __init__(self, whisper, whisper_dir):
        self.whisper = whisper
        self.whisper_dir = whisper_dir

    def wanted(self, metric, points):
        return points

    def stored(self, metric, first_ts, points):
        path = os.path.join(self.whisper_dir, *metric.carbon_name.split(".")) + ".wsp"
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

    def wanted(self, metric, points):
        # A counter's count is the sum of its increments.
        return metric.total

    def stored(self, metric, first_ts, points):
        began = self.system.process.cpu_seconds()
        try:
            return self.system.series_count(metric.name, first_ts, metric.field, metric.tags)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return 0
            raise
        finally:
            self.counting_cpu += self.system.process.cpu_seconds() - began


def wait_stored(storage, metrics, first_ts, points, timeout, interval=0.25,
                clock=time.monotonic, sleep=time.sleep):
    """
    Poll until every metric (a L{bench.shapes.TcpMetric}) holds its
    C{points} points (what C{storage.wanted} says that reads as).

    For an ordered store only the first incomplete metric (in send order,
    checked from the last one sent) is looked at each round, so polling
    costs the server almost nothing.

    @return: C{(complete, stored: the sum of what was read back)}
    """
    pending = list(metrics)
    done_points = 0
    deadline = clock() + timeout
    if storage.ordered:
        # The last metric sent completes last: wait for it first.
        pending = [metrics[-1]] + list(metrics[:-1])
    while pending:
        still = []
        for index, metric in enumerate(pending):
            got = storage.stored(metric, first_ts, points)
            if got >= storage.wanted(metric, points):
                done_points += got
                continue
            still.append(metric)
            if storage.ordered:
                still.extend(pending[index + 1:])
                break
        pending = still
        if not pending:
            return True, done_points
        if clock() >= deadline:
            partial = sum(storage.stored(m, first_ts, points) for m in pending)
            return False, done_points + partial
        sleep(interval)
    return True, done_points


def run_tcp_load(system, port, fmt, storage, metrics, points, load_core, timeout, real=False):
    """
    Send the load to C{port} and time it until stored.
    """
    first_ts = int(time.time()) - points - 120
    first_ts -= first_ts % 5
    described = shapes.tcp_metrics(metrics, points, real)
    argv = [sys.executable, os.path.join(BENCH_DIR, "loadgen.py"), "tcp", "--port", str(port),
            "--format", fmt, "--metrics", str(metrics), "--points", str(points),
            "--first-ts", str(first_ts)] + (["--real"] if real else [])
    cpu_before = system.process.cpu_seconds()
    sender = subprocess.Popen(pinned(argv, load_core), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        first = sender.stdout.readline().split()
        if len(first) != 2 or first[0] != "start":
            raise RuntimeError("TCP sender did not start: %r %s" % (first, sender.stderr.read()[-2000:]))
        started = float(first[1])
        complete, stored = wait_stored(storage, described, first_ts, points, timeout)
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
        "real": real,
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
