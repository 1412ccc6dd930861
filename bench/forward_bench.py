"""
Forwarding closed buckets to Graphite (issue #17): what it costs the server
and what an outage costs it.

One real server (C{python -m server.main}) gets N counters, each updated
every 5 s by statsd (paced over the 5 s from a process of its own), and
forwards its 5 s buckets to a real carbon-c-relay that parses every line
and drops it (C{match * send to blackhole}), so what is measured is the
forwarder and the relay, not the disks of carbon-caches.

  0. in process (the server does not report the time of the tick that closes
     a bucket: bench/README.md, "Rollup tick time"): N series of the mix of
     bench/simplestats_inprocess.py (counters, timers of ten values, gauges)
     in a store, the tick that closes one 5 s bucket of each, sliced as the
     rollup timer slices it, without and with a forwarder observing the
     store (its queue file written for real, its link draining at once): the
     tick's work, its longest slice, and the queue writes between slices;
  1. baseline (forwarding off, real server): the longest reactor stall
     (C{/api/health}'s per-second maxima of the lag monitor) over a few 5 s
     buckets;
  2. forwarding on, relay up: the same, and the lines per second delivered
     (C{lines_queued - queued_lines} of the destination, over the window);
  3. outage: the relay stopped for C{--outage} seconds under the same load:
     the queue's growth (lines, bytes on disk, bytes in memory, the server's
     RSS), scaled to a 10-minute outage (the growth per 5 s bucket is what
     each bucket adds: a 10-minute outage holds 120 of them);
  4. replay: the relay started again: how fast the queue drains (the lines
     per second the forwarder sustains into carbon-c-relay), with the
     longest stall of each second meanwhile.

    python bench/forward_bench.py                    # N = 100k, 60 s outage
    python bench/forward_bench.py --series 20000 --outage 30 --names both
"""

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
import urllib.request

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import procstat, systems  # noqa: E402

STEP = 5


def load(port, series, stop, prefix):
    """
    Every counter once per 5 s, in packets of ~40 lines, paced evenly.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    names = [b"%s.s%06d.hits:1|c" % (prefix, i) for i in range(series)]
    packets = [b"\n".join(names[i:i + 40]) for i in range(0, series, 40)]
    while not stop.is_set():
        began = time.monotonic()
        for k, packet in enumerate(packets):
            try:
                sock.sendto(packet, ("127.0.0.1", port))
            except OSError:
                pass
            if not k % 50:
                ahead = began + STEP * (k + 1) / len(packets) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        left = began + STEP - time.monotonic()
        if left > 0:
            time.sleep(left)


def get(port, path, **params):
    url = "http://127.0.0.1:%d%s" % (port, path)
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def stalls(server, since, until):
    return max([ms for _, ms in stall_seconds(server, since, until)] or [0.0])


def stall_seconds(server, since, until):
    """
    C{[(unix second, ms)]}: the longest reactor lateness of each second.
    """
    health = get(server.http_port, "/api/health")
    return [(s, ms) for s, ms in health["reactor"]["seconds"] if since - 1 <= s <= until + 1]


def destination(server):
    (one,) = get(server.http_port, "/api/health")["forward"]["destinations"]
    return one


class Relay:
    def __init__(self, workdir, port):
        self.binary = shutil.which("carbon-c-relay")
        if not self.binary:
            raise SystemExit("carbon-c-relay is not installed (apt-get install carbon-c-relay)")
        self.port = port
        self.conf = os.path.join(workdir, "relay.conf")
        with open(self.conf, "w") as f:
            f.write("listen type linemode 127.0.0.1:%d proto tcp ;\n"
                    "cluster nowhere file /dev/null ;\n"
                    "statistics submit every 60 seconds send to nowhere ;\n"
                    "match * send to blackhole stop ;\n" % (port,))
        self.log = os.path.join(workdir, "relay.log")
        self.process = None

    def start(self):
        self.process = systems.Process([self.binary, "-f", self.conf, "-w", "1"], self.log)
        self.process.start()

        def listening():
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        self.process.wait_ready(listening, 20, "carbon-c-relay")

    def stop(self):
        if self.process is not None:
            self.process.stop()


def run_server(workdir, python, extra):
    server = systems.SimpleStats(workdir, None, python, extra_args=[
        "--max-series", "1000000", "--snapshot-interval", "3600", *extra])
    server.start()
    return server


def start_load(server, series, prefix):
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=load, args=(server.udp_port, series, stop, prefix),
                                      daemon=True)
    process.start()
    return stop, process


def window(server, seconds):
    began = time.time()
    time.sleep(seconds)
    ended = time.time()
    time.sleep(STEP + 2)  # the lag monitor's last seconds are read after they end
    return {"max_stall_ms": stalls(server, began, ended)}


class NullLink:
    """
    A destination that takes everything at once (in-process measure).
    """

    def __init__(self, spec, spool, name):
        self.spool = spool
        self.state = "connected"

    def kick(self):
        spool = self.spool
        while True:
            data = spool.peek(1 << 20)
            if not data:
                break
            spool.mark_sent(len(data))
        spool.confirm(spool.sent)

    def start(self):
        pass

    def stop(self):
        pass

    def check(self):
        pass

    def status(self):
        return {"state": self.state}


def inprocess(count, names, buckets=3, start=1_700_000_000.0):
    """
    C{{"off": ..., "on": ...}}: the closing tick's work, longest slice and
    queue writes, without and with forwarding.
    """
    from collections import Counter

    from twisted.internet.task import Clock

    from bench.simplestats_inprocess import SLICE_SECONDS, kinds
    from server.core.model import COUNTER, GAUGE, TIMER
    from server.core.store import Store
    from server.outputs.forwarder import Forwarder
    from server.settings import load as load_settings

    types = {"c": COUNTER, "ms": TIMER, "g": GAUGE}
    out = {}
    for mode in ("off", "on"):
        directory = tempfile.mkdtemp(prefix="forward-inprocess-")
        settings = load_settings(["--data-dir", directory, "--forward", "carbon://127.0.0.1:1",
                                  "--forward-names", names])
        store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=start)
        clock = Clock()
        forwarder = None
        if mode == "on":
            forwarder = Forwarder(settings, store, Counter(), {}, clock,
                                  os.path.join(directory, "forward"), NullLink)
            store.observe(forwarder)
        series = [(store.get_or_create("bench.fwd.m%06d" % i, types[k]), k)
                  for i, k in enumerate(kinds(count))]
        results = []
        for b in range(buckets):
            bucket = start + b * STEP
            for i, (one, kind) in enumerate(series):
                for j in range(10 if kind == "ms" else 2):
                    ts = bucket + 0.5 + j * 0.4
                    store.add(one, float((i + j) % 97 + 1), 1.0, ts, ts)
            now = bucket + STEP + settings.late_grace + 0.5
            work = longest = flushes = longest_flush = 0.0
            while True:
                began = time.perf_counter()
                closed, finished = store.tick(now, deadline=began + SLICE_SECONDS,
                                              timer=time.perf_counter)
                spent = time.perf_counter() - began
                flush = 0.0
                if forwarder is not None:
                    began = time.perf_counter()
                    forwarder.flush()
                    flush = time.perf_counter() - began
                work += spent
                flushes += flush
                longest = max(longest, spent)
                longest_flush = max(longest_flush, flush)
                if finished:
                    break
            results.append({"tick_ms": work * 1000, "longest_slice_ms": longest * 1000,
                            "queue_writes_ms": flushes * 1000,
                            "longest_queue_write_ms": longest_flush * 1000})
        if forwarder is not None:
            spool = forwarder.destinations[0].spool
            out["lines_per_bucket"] = forwarder.destinations[0].queued_total / buckets
            out["bytes_per_bucket"] = spool.end / buckets
            spool.close()
        # The first bucket also creates every series' stored tiers.
        out[mode] = results[-1]
        shutil.rmtree(directory, ignore_errors=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=40.0, help="each measuring window")
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--names", default="paths", choices=("paths", "statsd", "both"))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-inprocess", action="store_true")
    parser.add_argument("--python", default=systems.default_python())
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    out = {"series": args.series, "names": args.names}
    workdir = tempfile.mkdtemp(prefix="forward-bench-")
    print("work directory %s" % workdir)
    try:
        if not args.no_inprocess:
            out["inprocess"] = one = inprocess(args.series, args.names)
            print("in process, the tick closing %d series: %.0f ms without forwarding (longest"
                  " slice %.1f ms), %.0f ms with it (longest slice %.1f ms) + %.0f ms of queue"
                  " writes between slices (longest %.1f ms); %.0f lines, %.1f MB per 5 s bucket"
                  % (args.series, one["off"]["tick_ms"], one["off"]["longest_slice_ms"],
                     one["on"]["tick_ms"], one["on"]["longest_slice_ms"],
                     one["on"]["queue_writes_ms"], one["on"]["longest_queue_write_ms"],
                     one["lines_per_bucket"], one["bytes_per_bucket"] / 1e6))
        if not args.no_baseline:
            server = run_server(os.path.join(workdir, "baseline"), args.python, [])
            stop, loader = start_load(server, args.series, b"fb")
            try:
                time.sleep(2 * STEP)
                out["baseline"] = window(server, args.seconds)
            finally:
                stop.set()
                loader.join()
                server.stop()
            print("baseline (no forwarding): longest stall %.0f ms"
                  % (out["baseline"]["max_stall_ms"],))

        relay = Relay(workdir, systems.free_port())
        relay.start()
        server = run_server(os.path.join(workdir, "forward"), args.python, [
            "--forward", "carbon://127.0.0.1:%d" % relay.port, "--forward-names", args.names])
        pid = server.process.popen.pid
        stop, loader = start_load(server, args.series, b"fb")
        try:
            time.sleep(2 * STEP)
            before = destination(server)
            t0 = time.time()
            steady = window(server, args.seconds)
            after = destination(server)
            t1 = time.time()
            delivered = ((after["lines_queued"] - after["queued_lines"])
                         - (before["lines_queued"] - before["queued_lines"]))
            steady["lines_per_second"] = delivered / (t1 - t0)
            steady["lines_per_bucket"] = (after["lines_queued"] - before["lines_queued"]) / (
                (t1 - t0) / STEP)
            steady["rss"] = procstat.memory(pid)["rss"]
            out["forwarding"] = steady
            print("forwarding on: longest stall %.0f ms; %.0f lines/s delivered"
                  " (%.0f lines per 5 s bucket); RSS %.0f MB"
                  % (steady["max_stall_ms"],
                     steady["lines_per_second"], steady["lines_per_bucket"],
                     steady["rss"] / 1e6))

            relay.stop()
            began = time.time()
            start_state = destination(server)
            rss_before = procstat.memory(pid)["rss"]
            time.sleep(args.outage)
            during = destination(server)
            rss_during = procstat.memory(pid)["rss"]
            buckets = args.outage / STEP
            grown_lines = during["queued_lines"] - start_state["queued_lines"]
            out["outage"] = {
                "seconds": args.outage, "queued_lines": during["queued_lines"],
                "queued_bytes": during["queued_bytes"], "disk_bytes": during["disk_bytes"],
                "memory_bytes": during["memory_bytes"], "rss_growth": rss_during - rss_before,
                "bytes_per_line": during["queued_bytes"] / max(1, during["queued_lines"]),
                "lines_per_bucket": grown_lines / buckets,
                "oldest_queued_seconds": during["oldest_queued_seconds"],
            }
            per_bucket_bytes = out["outage"]["lines_per_bucket"] * out["outage"]["bytes_per_line"]
            out["outage"]["ten_minutes_disk_bytes"] = per_bucket_bytes * 120
            print("outage of %.0f s: %d lines queued, %.1f MB queued (%.1f MB of files), %.1f MB"
                  " held in memory, RSS +%.1f MB; a 10-minute outage: %.0f MB on disk"
                  % (args.outage, during["queued_lines"], during["queued_bytes"] / 1e6,
                     during["disk_bytes"] / 1e6, during["memory_bytes"] / 1e6,
                     (rss_during - rss_before) / 1e6,
                     out["outage"]["ten_minutes_disk_bytes"] / 1e6))

            relay.start()
            began = time.time()
            queued = during["queued_lines"]
            drained_at = None
            deadline = began + 600
            while time.time() < deadline:
                state = destination(server)
                if state["connected"] and state["queued_lines"] < out["forwarding"][
                        "lines_per_bucket"]:
                    drained_at = time.time()
                    break
                time.sleep(0.2)
            ended = time.time()
            time.sleep(STEP + 2)
            replay = {"seconds": (drained_at or ended) - began, "drained": drained_at is not None,
                      "max_stall_ms": stalls(server, began, ended),
                      "stall_seconds": stall_seconds(server, began, ended)}
            # What was queued plus what closed meanwhile, over the time it took.
            replay["lines_per_second"] = (queued + replay["seconds"] / STEP
                                          * out["forwarding"]["lines_per_bucket"]) / max(
                                              replay["seconds"], 1e-3)
            out["replay"] = replay
            print("replay: %s in %.1f s, %.0f lines/s into carbon-c-relay; longest stall %.0f ms"
                  " (per second: %s)" % ("drained" if drained_at else "NOT drained",
                                         replay["seconds"], replay["lines_per_second"],
                                         replay["max_stall_ms"], ", ".join(
                                             "%.0f" % ms for _, ms in replay["stall_seconds"])))
        finally:
            stop.set()
            loader.join()
            server.stop()
            relay.stop()
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        shutil.rmtree(workdir, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
