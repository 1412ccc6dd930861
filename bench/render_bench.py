"""
Graphite's C{/render} and C{/metrics/find} on a real server process, over
real HTTP: how long an answer takes and the longest reactor stall meanwhile
(the lag monitor's maxima in C{/api/health}).

    .venv/bin/python bench/render_bench.py [--series 100] [--idle 100000]

1. C{--series} timers (a day of one-minute points each, sent as TCP tuples)
   rendered over C{-1d} as Grafana asks (POST, C{aliasSub}-wrapped,
   C{maxDataPoints}): one glob target, and C{sumSeries} of it.
2. The same with C{--idle} more series in the store that the glob must walk
   past, and a C{/metrics/find} over all of them.

Not part of the test suite: the second part loads 100k series.
"""

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from serverproc import ServerProcess  # noqa: E402


def send_tuples(server, rows, batch=1000):
    with socket.create_connection(("127.0.0.1", server.tcp_port)) as sock:
        f = sock.makefile("rb")
        f.readline()  # the hint line
        for start in range(0, len(rows), batch):
            sock.sendall(json.dumps(rows[start:start + batch]).encode() + b"\n")
            answer = f.readline()
            assert answer.startswith(b"--OK"), answer


def timed(server, method, path, form=None, params=None, runs=5):
    """
    C{(median seconds, bytes, longest stall ms while they ran)}.
    """
    body = urllib.parse.urlencode(form).encode() if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    times = []
    size = 0
    before = server.get_json("/api/health")["reactor"]
    started = time.time()
    for _ in range(runs):
        t0 = time.perf_counter()
        status, _, answer = server.http(method, path, params, body, headers, timeout=120)
        times.append(time.perf_counter() - t0)
        assert status == 200, (status, answer[:300])
        size = len(answer)
    time.sleep(1.1)  # the lag monitor reports per whole second
    after = server.get_json("/api/health")["reactor"]
    stalls = [ms for second, ms in after.get("seconds", []) if second >= int(started)]
    return statistics.median(times), size, max(stalls or [after.get("max_lag_ms", 0.0)]), before


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--idle", type=int, default=100000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(os.path.join(tmp, "data"), os.path.join(tmp, "server.log"),
                               ["--graphite-max-series", "200000"])
        os.makedirs(os.path.join(tmp, "data"))
        server.start()
        try:
            now = int(time.time())
            rows = [["bench.web%d.latency" % s, now - 86400 + 60 * m + 1, "%dms" % (s + m % 50)]
                    for s in range(args.series) for m in range(1440)]
            t0 = time.perf_counter()
            send_tuples(server, rows)
            print("loaded %d points in %.1f s" % (len(rows), time.perf_counter() - t0))
            wrap = 'aliasSub(%s, "(^.*$)", "\\1 A")'
            for label, target in (("%d series" % args.series, "bench.*.latency"),
                                  ("sumSeries of them", "sumSeries(bench.*.latency)")):
                for points in ("", "1000"):
                    form = [("target", wrap % target), ("from", "-1d"), ("until", "now"),
                            ("format", "json")] + ([("maxDataPoints", points)] if points else [])
                    seconds, size, stall, _ = timed(server, "POST", "/render", form)
                    print("render %-22s maxDataPoints=%-5s %7.1f ms  %8d bytes  stall %.0f ms"
                          % (label, points or "-", seconds * 1000, size, stall))
            if args.idle:
                idle = [["idle.g%d.s%d" % (i // 1000, i), None, "1g"] for i in range(args.idle)]
                t0 = time.perf_counter()
                send_tuples(server, idle)
                print("added %d idle series in %.1f s" % (args.idle, time.perf_counter() - t0))
                form = [("target", wrap % "bench.*.latency"), ("from", "-1d"), ("until", "now"),
                        ("format", "json"), ("maxDataPoints", "1000")]
                seconds, size, stall, _ = timed(server, "POST", "/render", form)
                print("render glob among %d series: %7.1f ms  stall %.0f ms"
                      % (args.idle + args.series, seconds * 1000, stall))
                seconds, size, stall, _ = timed(server, "GET", "/metrics/find",
                                                params={"query": "idle.*"})
                print("find idle.* (%d nodes):    %7.1f ms  stall %.0f ms"
                      % (len(json.loads(server.http("GET", "/metrics/find",
                                                     {"query": "idle.*"})[2])),
                         seconds * 1000, stall))
                seconds, size, stall, _ = timed(server, "GET", "/render",
                                                params={"target": "idle.g7.s7001",
                                                        "from": "-1h"})
                print("render one exact path:     %7.1f ms  stall %.0f ms"
                      % (seconds * 1000, stall))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
