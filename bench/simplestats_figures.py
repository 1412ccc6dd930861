"""
SimpleStats-only figures measured from outside, over its ports: the time
of C{/api/series} for a week of 1-minute points, of C{/api/metrics} filters
over 10k series, resident memory at 10k and 100k series, the reactor block
of a snapshot with 100k series (as the server reports it in
C{/api/health}), and the restart time with all of that on disk.

Series are created over the TCP port with C{--quiet} batches of typed
tuples, which are never lost, so each figure is about a known number of
series.
"""

import json
import os
import socket
import statistics
import subprocess
import time

from bench import counting
from bench.systems import BENCH_DIR, REPO_ROOT

# Types given to populated series, in proportion: counters, timers, gauges.
TYPED_VALUES = ("1c", "1c", "1c", "1c", "1c", "1c", "12ms", "12ms", "12ms", "5g")
WEEK = 7 * 86400


def send_tuples(port, tuples, batch=500):
    """
    Send tuples as C{--quiet} batches over one connection and return
    whatever the server answered (only errors, with C{--quiet}).
    """
    lines = [b"--quiet\n"]
    for i in range(0, len(tuples), batch):
        lines.append(json.dumps(tuples[i:i + batch], separators=(",", ":")).encode() + b"\n")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"".join(lines))
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        sock.settimeout(120)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    text = answer.decode("utf-8", "replace")
    errors = [line for line in text.splitlines() if line and not line.startswith("--Hint")]
    return errors


def series_tuples(first, count, now):
    """
    One point for each of C{count} series numbered from C{first}: names
    spread over hosts and services (so filters have something to select),
    every fourth tagged with a host.
    """
    out = []
    for i in range(first, first + count):
        name = "bench.fleet.host%03d.svc%02d.metric%04d" % (i % 500, i % 37, i // 500)
        value = TYPED_VALUES[i % len(TYPED_VALUES)]
        if i % 4 == 0:
            out.append([name, now, value, {"host": "web%d" % (i % 50)}])
        else:
            out.append([name, now, value])
    return out


def timed(call, repeat):
    """
    Seconds of C{repeat} calls: C{(median, max)}.
    """
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times), max(times)


def wait_for(predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def week_of_minutes(system, repeat):
    """
    Store a week of 1-minute points in one series, then time
    C{/api/series} for it at 1-minute resolution.
    """
    now = int(time.time())
    first = now - WEEK
    first -= first % 60
    name = "bench.week.latency"
    points = [[name, first + 60 * i, float(i % 300)] for i in range(WEEK // 60)]
    errors = send_tuples(system.tcp_port, points)
    params = {"name": name, "from": str(first), "until": "now", "resolution": "1m"}

    def stored():
        answer = system.api("/api/series", fields="count", **params)
        return counting.series_total(answer, "count") >= len(points)

    complete = wait_for(stored, 60)
    # Points a week old land in reopened buckets that the next rollup tick
    # (every second) closes; until then a read merges 10 080 open buckets.
    time.sleep(3.0)
    answer = system.api("/api/series", **params)
    returned = max((len(v) for v in answer["fields"].values()), default=0)
    # The request as the server answers it; the client's own JSON parsing
    # of the 0.8 MB answer (15-25 ms here) is not the server's time.
    median, worst = timed(lambda: counting.http_bytes(system.http_port, "/api/series", params),
                          repeat)
    return {"points_sent": len(points), "stored": complete, "errors": errors[:5],
            "points_returned": returned, "fields": sorted(answer["fields"]),
            "seconds_median": median, "seconds_max": worst}


FILTERS = (
    ("substring", "svc07"),
    ("glob", "bench.fleet.host1?7.*"),
    ("regex", r"/^bench\.fleet\.host\d+5\.svc1/"),
    ("tag", "host:web1*"),
    ("all", "bench.fleet"),
)


def filter_times(system, repeat):
    out = {}
    for label, text in FILTERS:
        answer = system.api("/api/metrics", filter=text)
        median, worst = timed(lambda: system.api("/api/metrics", filter=text), repeat)
        out[label] = {"filter": text, "matches": answer.get("count"), "total": answer.get("total"),
                      "seconds_median": median, "seconds_max": worst}
    return out


def populate(system, first, count):
    errors = send_tuples(system.tcp_port, series_tuples(first, count, int(time.time())))
    want = first + count
    ok = wait_for(lambda: system.api("/api/health")["series"] >= want, 120)
    return {"errors": errors[:5], "complete": ok}


def snapshot_with(system, series, timeout):
    """
    Wait for a snapshot that holds at least C{series} series and return
    the status the server reports for it.
    """
    found = {}

    def done():
        status = system.api("/api/health").get("snapshot") or {}
        if (status.get("series") or 0) >= series and status.get("duration") is not None:
            found.update(status)
            return True
        return False

    wait_for(done, timeout, interval=0.5)
    return found or None


def measure(make_system, quick, log):
    """
    All external SimpleStats-only figures, on one server started with a
    short snapshot interval, then restarted on its own data directory.
    """
    small, large = (2000, 10000) if quick else (10000, 100000)
    repeat = 5 if quick else 20
    system = make_system(["--snapshot-interval", "5"])
    system.start()
    out = {"series_small": small, "series_large": large}
    try:
        log("  simplestats: a week of 1-minute points")
        out["week_series"] = week_of_minutes(system, repeat)
        log("  simplestats: %d series, filters" % small)
        out["populate_small"] = populate(system, 0, small)
        out["filters"] = filter_times(system, repeat)
        out["rss_small"] = system.process.memory()["rss"]
        log("  simplestats: %d series, snapshot" % large)
        began = time.monotonic()
        out["populate_large"] = populate(system, small, large - small)
        out["populate_large"]["seconds"] = time.monotonic() - began
        out["rss_large"] = system.process.memory()["rss"]
        out["rss_per_series"] = (out["rss_large"] - out["rss_small"]) / (large - small)
        out["snapshot"] = snapshot_with(system, large, 90)
        series_before = system.api("/api/health")["series"]
        out["peak_rss"] = system.process.memory()["peak_rss"]
    finally:
        out["stop_seconds"] = system.stop()
    log("  simplestats: restart with %d series" % series_before)
    began = time.monotonic()
    system.start(data_dir=system.data_dir)
    try:
        wait_for(lambda: system.api("/api/health")["series"] >= series_before, 120, 0.05)
        out["restart"] = {"series": system.api("/api/health")["series"],
                          "expected": series_before,
                          "ready_seconds": system.ready_seconds,
                          "seconds": time.monotonic() - began}
    finally:
        system.stop()
    return out


def inprocess(python, quick, core, log, realtime=False, timeout=600):
    """
    Run bench/simplestats_inprocess.py pinned to the server core (at a
    real-time priority with C{realtime}, like the servers).
    """
    from bench.procstat import pinned
    counts = ["10000"] if quick else ["10000", "100000"]
    argv = [python, os.path.join(BENCH_DIR, "simplestats_inprocess.py"), "--series"] + counts
    argv += ["--buckets", "5" if quick else "14"]
    log("  simplestats: in-process rollup ticks at %s series" % " and ".join(counts))
    done = subprocess.run(pinned(argv, core, realtime), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        return {"error": "in-process driver failed: %s" % done.stderr[-1500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])
