"""
SimpleStats only: a Prometheus scrape (C{GET /metrics}) of N series, its
time and the longest reactor stall during it (issue #15: "a scrape of 100k
series in under 1 s, streamed, without stalling the reactor over 100 ms").

One real server process (as L{systems.SimpleStats} starts it) gets a steady
statsd load from a process of its own (the real shape, L{stalls.Sender}),
then N series over TCP -- a third counters, a third gauges, a third timers
(summaries), each with a C{host} tag of 20 values -- and waits until the
minute they went into has closed, so the summaries carry quantiles, and
until the server's periodic gc freeze has taken the new series in.  Then:

  - an idle window (the statsd load only), for the stall floor;
  - R full scrapes, one after the other, each read at full speed;
  - a scrape narrowed by C{?filter=host:web07} (a twentieth of the series);
  - an idle window again.

For each: the client's time to the last byte, bytes and lines, and the
longest lateness the server's lag monitor saw over the seconds it spanned
(C{/api/health} C{reactor.seconds}, as L{stalls} reads it).  The first full
scrape is parsed with prometheus_client when it is installed (families and
samples counted; not timed).  Every request has a deadline.

    python bench/scrape_bench.py                 # N = 100k, 3 scrapes (~3 minutes)
    python bench/scrape_bench.py --series 20000 --no-wait
    .venv/bin/python bench/scrape_bench.py --in-process   # no server: the scrape's own CPU
"""

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import procstat, report, stalls, systems  # noqa: E402

# Tuples per TCP batch line: tagged tuples are ~50 bytes, under the 64 KiB line limit.
BATCH = 1000
KINDS = ("c", "g", "ms")
NAME = "bench.scrape.%07d"


def series_lines(count):
    """
    TCP batch lines creating C{count} series: counters, gauges and timers in
    turn, with a C{host} tag of 20 values and a few points each.
    """
    out = []
    rows = []
    for i in range(count):
        kind = KINDS[i % 3]
        tags = {"host": "web%02d" % (i % 20,)}
        for k in range(3):
            rows.append([NAME % i, None, "%d%s" % (1 + (i + k) % 50, kind), tags])
        if len(rows) >= BATCH:
            out.append(json.dumps(rows, separators=(",", ":")).encode() + b"\n")
            rows = []
    if rows:
        out.append(json.dumps(rows, separators=(",", ":")).encode() + b"\n")
    return out


def scrape(system, params, timeout):
    """
    One scrape read at full speed: its figures and its body.  C{cpu_seconds}
    is what the server process used meanwhile (the statsd load included):
    on a shared machine a steadier figure than the wall time.
    """
    cpu = procstat.cpu_seconds(system.pid)
    began_wall = time.time()
    began = time.monotonic()
    status, body, info = stalls.http_call(system.http_port, "GET", "/metrics", params,
                                          deadline=began + timeout)
    seconds = time.monotonic() - began
    cpu = procstat.cpu_seconds(system.pid) - cpu
    if status != 200:
        raise RuntimeError("/metrics answered %d: %r" % (status, body[:300]))
    return {"seconds": seconds, "cpu_seconds": cpu, "first_byte_seconds": info["first_byte"],
            "bytes": info["bytes"], "lines": info["lines"], "began": began_wall,
            "ended": time.time(), "families": body.count(b"# TYPE ")}, body


def parsed_counts(body):
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return None
    families = samples = 0
    for family in text_string_to_metric_families(body.decode("utf-8")):
        families += 1
        samples += len(family.samples)
    return {"families": families, "samples": samples}


def stall(port, began, ended):
    # The lag monitor labels a second once it is over: ask a moment later.
    time.sleep(1.2)
    health = stalls.api_json(port, "/api/health", 10)
    ms, covered = stalls.stall_over(health, began, ended)
    return {"max_lag_ms": ms, "covered": covered,
            "long_seconds": stalls.long_seconds(health, began, ended)}


def measure(args, system, log):
    result = {"series": args.series, "scrapes": [], "statsd_rate": args.rate,
              "target_ms": stalls.TARGET_MS, "loadavg_start": procstat.loadavg()}
    system.start()
    sender = stalls.Sender(system.udp_port, args.rate, 1, args.load_core)
    try:
        sender.start()
        log("scrape: statsd load %.0f lines/s; creating %d series" % (args.rate, args.series))
        began = time.monotonic()
        bad = stalls.send_lines(system.tcp_port, series_lines(args.series),
                                time.monotonic() + max(args.timeout, 300))
        if bad:
            raise RuntimeError("creating the series: %s" % (bad[:3],))
        created = time.monotonic()
        result["create_seconds"] = created - began
        if not args.no_wait:
            # The minute the points went into closes (plus the late grace):
            # then the summaries' quantiles are there to read.  And the
            # server's garbage-collector freeze (every 60 s,
            # server.gcpolicy) has taken the new series in, as in a server
            # that has run a while: the first one after 100k new series
            # holds the reactor for most of a second, whatever else runs.
            wait = max(60 - time.time() % 60 + 7, 62 - (time.monotonic() - created))
            log("scrape: waiting %.0f s for the minute to close and the gc freeze" % (wait,))
            time.sleep(wait)
        began = time.time()
        time.sleep(5)
        result["idle"] = stall(system.http_port, began, time.time())
        log("scrape: idle floor %s ms" % (result["idle"]["max_lag_ms"],))
        for n in range(args.repeat):
            figures, body = scrape(system, None, args.timeout)
            if n == 0:
                result["parsed"] = parsed_counts(body)
            del body
            figures.update(stall(system.http_port, figures["began"], figures["ended"]))
            log("scrape %d: %.3f s (server CPU %.3f s), %.1f MB, %d lines, %d families,"
                " max lag %s ms" % (n + 1, figures["seconds"], figures["cpu_seconds"],
                                    figures["bytes"] / 1e6, figures["lines"],
                                    figures["families"], figures["max_lag_ms"]))
            result["scrapes"].append(figures)
        figures, _ = scrape(system, {"filter": "host:web07"}, args.timeout)
        figures.update(stall(system.http_port, figures["began"], figures["ended"]))
        log("filtered scrape: %.3f s (server CPU %.3f s), %d lines, max lag %s ms"
            % (figures["seconds"], figures["cpu_seconds"], figures["lines"],
               figures["max_lag_ms"]))
        result["filtered"] = figures
        began = time.time()
        time.sleep(5)
        result["idle_after"] = stall(system.http_port, began, time.time())
        log("scrape: idle after the scrapes %s ms" % (result["idle_after"]["max_lag_ms"],))
        # Every second's longest lateness over the run (the last 300 s).
        result["lag_seconds"] = stalls.api_json(system.http_port, "/api/health",
                                                10)["reactor"]["seconds"]
    finally:
        sender.stop()
        result["stop_seconds"] = system.stop()
    result["loadavg_end"] = procstat.loadavg()
    return result


def in_process(count, repeat=5):
    """
    The scrape's own cost without HTTP or other work on the machine: a
    store of C{count} series built as L{series_lines} shapes them, frozen
    as the server's gc policy freezes it, then C{repeat} scrapes by hand.
    CPU time (C{time.process_time}): the best of each phase, and the
    longest single step (a slice of grouping, or one chunk of text; a
    collection that falls in it included).
    """
    import gc
    import tempfile

    from server.core.store import Store
    from server.gcpolicy import THRESHOLDS
    from server.settings import load

    settings = load(["--data-dir", tempfile.mkdtemp()], {})
    now = time.time() - 120
    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=now)
    for i in range(count):
        key = (NAME % i) + ";host=web%02d" % (i % 20,)
        series = store.get_or_create(key, KINDS[i % 3])
        for k in range(3):
            store.add(series, float(1 + (i + k) % 50), 1.0, now + k, now + k)
    store.settle()
    store.tick(now + 70)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        return _scrapes(store, now, repeat, count)
    finally:
        # As it was: a test process runs on after this.
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _scrapes(store, now, repeat, count):
    from collections import Counter

    from twisted.internet.task import Clock

    from server.web.prometheus import Exposition

    class Core:
        pass

    core = Core()
    core.store = store
    core.counters = Counter()
    clock = Clock()
    clock.advance(now + 70)
    exposition = Exposition(core, clock)
    group, text, longest = float("inf"), float("inf"), 0.0
    for _ in range(repeat):
        steps = exposition.families(lambda name, tags: True)
        began = time.process_time()
        while True:
            at = time.process_time()
            try:
                next(steps)
            except StopIteration as stop:
                families = stop.value
                break
            longest = max(longest, time.process_time() - at)
        middle = time.process_time()
        at = middle
        for _ in exposition.chunks(families):
            done = time.process_time()
            longest = max(longest, done - at)
            at = done
        group = min(group, middle - began)
        text = min(text, at - middle)
    return {"series": count, "group_seconds": group, "text_seconds": text,
            "longest_step_ms": longest * 1000.0}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="SimpleStats: a /metrics scrape of N series")
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="full scrapes (default 3)")
    parser.add_argument("--rate", type=float, default=2000.0,
                        help="statsd lines/s sent the whole time (default 2000)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a scrape may take (default 60)")
    parser.add_argument("--no-wait", action="store_true",
                        help="scrape at once, before the minute closes (summaries then have"
                             " NaN quantiles)")
    parser.add_argument("--in-process", action="store_true",
                        help="no server: the scrape's own CPU over a store built in this process"
                             " (run with the repo's .venv)")
    parser.add_argument("--python", default=None)
    parser.add_argument("--workdir", default=os.path.join(systems.BENCH_DIR, ".cache", "scrape"))
    parser.add_argument("--results", default=os.path.join(systems.BENCH_DIR, "results"))
    parser.add_argument("--no-pin", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.in_process:
        figures = in_process(args.series)
        print("in-process, %(series)d series: grouping %(group_seconds).3f s, text"
              " %(text_seconds).3f s of CPU (best of 5), longest step %(longest_step_ms).1f ms"
              % figures)
        return 0
    python = args.python or systems.default_python()
    load_core, server_core = (None, None) if args.no_pin else procstat.pinning()
    args.load_core = load_core
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    workdir = os.path.join(args.workdir, stamp)
    system = systems.SimpleStats(workdir, server_core, python,
                                 ["--snapshot-interval", "3600", "--snapshot-journal-bytes", "0"])
    result = measure(args, system, lambda m: print(m, flush=True))
    result["meta"] = {"argv": sys.argv[:] if argv is None else list(argv), "started": started,
                      "seconds": time.time() - started, "machine": procstat.machine(),
                      "python": python, "pinning": {"load_core": load_core,
                                                    "server_core": server_core}}
    path = report.write_json(result, args.results, "%s-scrape" % (stamp,))
    print("results: %s; load average at the start %s, at the end %s"
          % (os.path.relpath(path), " ".join(result["loadavg_start"] or []),
             " ".join(result["loadavg_end"] or [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
