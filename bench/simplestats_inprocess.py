"""
SimpleStats figures that its process does not expose yet, measured by
driving its store in this process with a hand-moved clock: the time of a
rollup tick that closes one 5 s bucket of every active series, resident
memory per series, and the bytes per stored value.

Run from the repo root with the server's interpreter; prints one JSON
object.  It uses only the store's public methods (C{Store(tiers, accuracy,
late_grace, now)}, C{get_or_create}, C{add_value}, C{tick},
C{stored_bytes}); when they change this fails loudly and the harness
reports the figure as not measured.  The tick is timed whole (no
deadline): the server runs it in 20 ms slices between other work, so this
is the total work per 5 s, not how long the reactor is held.

    python bench/simplestats_inprocess.py --series 10000 100000 --buckets 14
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The active series: mostly counters, then timers, then gauges.
MIX = (("c", 12), ("ms", 5), ("g", 3))


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def kinds(count):
    """
    The type letter of each of C{count} series, spread by L{MIX}.
    """
    cycle = [kind for kind, weight in MIX for _ in range(weight)]
    return [cycle[i % len(cycle)] for i in range(count)]


def measure(count, buckets, start=1_700_000_000.0):
    from server.model import COUNTER, GAUGE, TIMER
    from server.settings import load
    from server.store import Store

    settings = load([])
    types = {"c": COUNTER, "ms": TIMER, "g": GAUGE}
    gc.collect()
    rss_empty = rss_bytes()
    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=start)
    step = settings.tiers[0].step
    series = [store.get_or_create("bench.active.m%06d" % i, types[k])
              for i, k in enumerate(kinds(count))]
    ticks = []
    rss_marks = []
    for b in range(buckets):
        bucket_start = start + b * step
        ts = bucket_start + 1.0
        for i, s in enumerate(series):
            store.add_value(s, float(i % 97), 1.0, ts, ts)
        # The tick that closes the bucket just filled (the store's grace
        # has passed), as the server's 1 s timer would run it.
        now = bucket_start + step + settings.late_grace + 0.5
        began = time.perf_counter()
        result = store.tick(now)
        # (closed, finished) since ticks run in slices; without a deadline
        # one call does the whole tick.  An older store answered a count.
        closed = result[0] if isinstance(result, tuple) else result
        ticks.append({"seconds": time.perf_counter() - began, "closed": closed})
        if b in (1, buckets - 1):
            gc.collect()
            rss_marks.append((rss_bytes(), store.stored_bytes()))
    closing = [t["seconds"] for t in ticks[1:] if t["closed"] >= count]
    (rss_a, (bytes_a, values_a)), (rss_b, (bytes_b, values_b)) = rss_marks
    added = values_b - values_a
    return {
        "series": count,
        "buckets": buckets,
        "mix": dict(MIX),
        "tick_seconds_median": statistics.median(closing) if closing else None,
        "tick_seconds_max": max(closing) if closing else None,
        "ticks": ticks,
        "rss_per_series": (rss_a - rss_empty) / count,
        "rss_after": rss_b,
        "stored_values": values_b,
        "stored_bytes": bytes_b,
        "bytes_per_value_accounted": bytes_b / values_b if values_b else None,
        "bytes_per_value_rss": (rss_b - rss_a) / added if added > 0 else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="in-process SimpleStats store figures")
    parser.add_argument("--series", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--buckets", type=int, default=14)
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    results = {}
    for count in args.series:
        results[str(count)] = measure(count, args.buckets)
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
