"""
SimpleStats only: a Prometheus scrape (C{GET /metrics}) of N series, its
time and the longest reactor stall during it (issue #15: "a scrape of 100k
series in under 1 s, streamed, without stalling the reactor over 100 ms").

One real server process (as L{systems.SimpleStats} starts it) gets a steady
statsd load from a process of its own (the real shape, L{stalls.Sender}),
then N series over TCP -- a third counters, a third gauges, a third timers
(summaries), each with a C{host} tag of 20 values -- and waits until the
minute they went into has closed, so the summaries carry quantiles.  Then:

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
        result["create_seconds"] = time.monotonic() - began
        if not args.no_wait:
            # The minute the points went into closes (plus the late grace):
            # then the summaries' quantiles are there to read.
            wait = 60 - time.time() % 60 + 7
            log("scrape: waiting %.0f s for the minute to close" % (wait,))
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
    parser.add_argument("--python", default=None)
    parser.add_argument("--workdir", default=os.path.join(systems.BENCH_DIR, ".cache", "scrape"))
    parser.add_argument("--results", default=os.path.join(systems.BENCH_DIR, "results"))
    parser.add_argument("--no-pin", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
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
