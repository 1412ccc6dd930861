"""
SimpleStats figures that its process does not expose yet, measured by
driving its store in this process with a hand-moved clock: the time of a
rollup tick that closes one 5 s bucket of every active series, resident
memory per series, and the bytes per stored value.

Every timer bucket gets 50 lognormal latencies, as a busy timer does, so
each sketch holds dozens of bins; counters and gauges get a few values.
(One constant value per bucket would leave one-bin sketches, which the
tick closes by a shortcut.)

Run from the repo root with the server's interpreter; prints one JSON
object.  It uses only the store's public methods (C{Store(tiers, accuracy,
late_grace, now)}, C{get_or_create}, C{add} (C{add_value} before the
store's rewrite), C{tick}, C{stored_bytes}); when they change this fails
loudly and the harness reports the figure as not measured.

The tick runs in slices of L{SLICE_SECONDS} as the server's rollup timer
runs it (C{tick(now, deadline, timer)}): the tick time is the sum of its
slices (the work per 5 s), and the longest slice is the longest it holds
the reactor, garbage collections included (they are timed apart too).

    python bench/simplestats_inprocess.py --series 10000 100000 --buckets 14
    python bench/simplestats_inprocess.py --series 100000 --repo /tmp/head   # another checkout
"""

import argparse
import gc
import json
import math
import os
import random
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The active series: mostly counters, then timers, then gauges.
MIX = (("c", 12), ("ms", 5), ("g", 3))
# Values per bucket, by kind.
VALUES = {"c": 3, "ms": 50, "g": 3}
# The server's rollup timer slice (server.core.rollup.RollupTimer's default).
SLICE_SECONDS = 0.02
# Lognormal latencies drawn once; each timer bucket takes 50 in a row from
# its own offset, so buckets and series differ.
LATENCY_POOL = 1 << 16


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


class GcPauses:
    """
    The garbage collections that run while it listens (a C{gc.callbacks}
    entry): a full collection over millions of objects holds the reactor
    however finely the tick is sliced, so the longest slice is told apart
    from it.
    """

    def __init__(self, timer=time.perf_counter):
        self.timer = timer
        self.began = None
        self.pauses = []

    def __call__(self, phase, info):
        if phase == "start":
            self.began = self.timer()
        elif self.began is not None:
            self.pauses.append((self.timer() - self.began, info["generation"]))
            self.began = None

    def take(self):
        """
        C{(longest pause, full collections)} since the last call.
        """
        pauses, self.pauses = self.pauses, []
        return (max((p for p, _ in pauses), default=0.0),
                sum(1 for _, generation in pauses if generation == 2))


def measure(count, buckets, start=1_700_000_000.0):
    from server.core.model import COUNTER, GAUGE, TIMER
    from server.settings import load
    from server.core.store import Store

    settings = load([])
    types = {"c": COUNTER, "ms": TIMER, "g": GAUGE}
    rng = random.Random(1)
    latencies = [rng.lognormvariate(math.log(40.0), 0.9) for _ in range(LATENCY_POOL)]
    gc.collect()
    rss_empty = rss_bytes()
    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=start)
    step = settings.tiers[0].step
    series = [(store.get_or_create("bench.active.m%06d" % i, types[k]), k)
              for i, k in enumerate(kinds(count))]
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    # The server process's collector settings, where it has them.
    thresholds = gc.get_threshold()
    try:
        from server.gcpolicy import THRESHOLDS as GC_THRESHOLDS
    except ImportError:
        try:
            from server.main import GC_THRESHOLDS
        except ImportError:
            GC_THRESHOLDS = None
    if GC_THRESHOLDS is not None:
        gc.set_threshold(*GC_THRESHOLDS)
    # Store.add since the one-apply-path rewrite; add_value before it.
    add = getattr(store, "add", None) or store.add_value
    ticks = []
    rss_marks = []
    added_values = 0
    for b in range(buckets):
        bucket_start = start + b * step
        for i, (s, kind) in enumerate(series):
            n = VALUES[kind]
            if kind == "ms":
                offset = (i * 131 + b * 7919) % (LATENCY_POOL - n)
                values = latencies[offset:offset + n]
            else:
                values = [float((i + b + j) % 97) for j in range(n)]
            for j, value in enumerate(values):
                ts = bucket_start + 0.5 + j * (step - 1.0) / n
                add(s, value, 1.0, ts, ts)
            added_values += n
        # The tick that closes the bucket just filled (the store's grace
        # has passed), as the server's 1 s timer would run it.
        now = bucket_start + step + settings.late_grace + 0.5
        pauses.take()
        # Values wait in their series' runs until the tick closes the bucket
        # (or a read folds them): every other bucket, fold them first, so the
        # fold and the closing are told apart.
        fold = None
        if b % 2 and hasattr(store, "settle"):
            began = time.perf_counter()
            store.settle()
            fold = time.perf_counter() - began
        tick = sliced_tick(store, now)
        tick["fold_before"] = fold
        tick["gc_longest"], tick["gc_full"] = pauses.take()
        ticks.append(tick)
        if b in (1, buckets - 1):
            gc.collect()
            rss_marks.append((rss_bytes(), store.stored_bytes()))
    gc.callbacks.remove(pauses)
    gc.set_threshold(*thresholds)
    closing = [t for t in ticks[1:] if t["closed"] >= count]
    whole = [t for t in closing if t["fold_before"] is None]
    folded = [t for t in closing if t["fold_before"] is not None]
    seconds = [t["seconds"] for t in whole] or [t["seconds"] for t in closing]
    (rss_a, (bytes_a, values_a)), (rss_b, (bytes_b, values_b)) = rss_marks
    added = values_b - values_a
    return {
        "series": count,
        "buckets": buckets,
        "mix": dict(MIX),
        "values_per_bucket": VALUES,
        "values_added": added_values,
        "slice_seconds": SLICE_SECONDS,
        "tick_seconds_median": statistics.median(seconds) if seconds else None,
        # The same tick split in two: folding the bucket's pending values,
        # then closing the buckets.
        "fold_seconds_median": (statistics.median(t["fold_before"] for t in folded)
                                if folded else None),
        "close_seconds_median": (statistics.median(t["seconds"] for t in folded)
                                 if folded else None),
        "tick_seconds_max": max(seconds) if seconds else None,
        "longest_slice_seconds": max((t["longest_slice"] for t in closing), default=None),
        "sliced": any(t["slices"] > 1 for t in closing),
        "gc_longest_pause_seconds": max((t["gc_longest"] for t in closing), default=None),
        "gc_full_collections": sum(t["gc_full"] for t in closing),
        "ticks": ticks,
        "rss_per_series": (rss_a - rss_empty) / count,
        "rss_after": rss_b,
        "stored_values": values_b,
        "stored_bytes": bytes_b,
        "bytes_per_value_accounted": bytes_b / values_b if values_b else None,
        "bytes_per_value_rss": (rss_b - rss_a) / added if added > 0 else None,
    }


def sliced_tick(store, now, slice_seconds=SLICE_SECONDS, timer=time.perf_counter):
    """
    One rollup tick run as the server runs it: C{store.tick} with a
    deadline, called again until it says it finished.

    @return: C{{"seconds": work in all, "longest_slice", "slices",
        "closed"}}.  A store whose C{tick} takes no deadline (or answers
        only a count) is timed whole, as one slice.
    """
    work = longest = 0.0
    closed = slices = 0
    while True:
        began = timer()
        try:
            result = store.tick(now, deadline=began + slice_seconds, timer=timer)
        except TypeError:
            result = store.tick(now)
        spent = timer() - began
        work += spent
        longest = max(longest, spent)
        slices += 1
        if isinstance(result, tuple):
            closed += result[0]
            if result[1]:
                break
        else:
            closed += result
            break
    return {"seconds": work, "longest_slice": longest, "slices": slices, "closed": closed}


def main(argv=None):
    parser = argparse.ArgumentParser(description="in-process SimpleStats store figures")
    parser.add_argument("--series", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--buckets", type=int, default=14)
    parser.add_argument("--repo", default=REPO_ROOT,
                        help="checkout whose server/ is measured (default: this one)")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.repo))
    results = {}
    for count in args.series:
        results[str(count)] = measure(count, args.buckets)
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
