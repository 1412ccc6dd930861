"""
Alerts (#16): what 1000 rules over 100k series add to the rollup tick, and
the longest reactor stall they make.  In process, no server: the pieces
makeService wires (Store, IngestCore with a real journal in a temporary
directory, the AlertEngine observing the store) on a task.Clock, and the
tick run as the rollup timer runs it, in 20 ms slices (each slice is one
reactor turn: its length is the stall).

Series: N gauges named C{appNNN.mMMM} (1000 apps of N/1000 metrics) with a
C{host} tag.  Rules (R in all): 80 % C{above} on one app's metrics (a glob,
C{appNNN.*}), 10 % C{stopped} on one app, 5 % C{anomaly} (EWMA) on one app,
4 % C{below} with tags, 1 % regular expressions (no literal for the index:
tried on every new series).  One value per series per 5 s bucket, 1 % of
them above their rule's threshold.

For each phase, the tick with no engine and with it, best of a few runs:
total CPU of the tick, the longest slice.  Phases: the first tick after the
rules are saved (every series matched once, through the RE2 literal index),
the ticks after (steady), a tick where 1 % of the series fire (journaled
transitions, queued notifications), the stopped check over its instances.

    .venv/bin/python bench/alerts_bench.py                       # 1000 rules, 100k series
    .venv/bin/python bench/alerts_bench.py --rules 100 --series 10000
"""

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from server.alerts.engine import AlertEngine  # noqa: E402
from server.alerts.rules import check_rule  # noqa: E402
from server.core.ingest import IngestCore  # noqa: E402
from server.core.model import GAUGE, Sample  # noqa: E402
from server.core.store import Store  # noqa: E402
from server.durability.journal import Journal  # noqa: E402
from server.settings import load  # noqa: E402

T0 = 1795392000.0
SLICE = 0.02


def rule_bodies(count, apps):
    bodies = []
    for i in range(count):
        app = i % apps
        kind = i % 100
        if kind < 80:
            body = {"filter": "app%03d.*" % app, "above": 90}
        elif kind < 90:
            body = {"filter": "app%03d.*" % app, "stopped": {"after": 60}}
        elif kind < 95:
            body = {"filter": "app%03d.m0" % app, "anomaly": {"k": 4}}
        elif kind < 99:
            body = {"filter": "app%03d host:web1*" % app, "below": -1}
        else:
            body = {"filter": "/^app%03d\\.m1/" % app, "above": 95}
        body.update(name="rule%04d" % i, notify=[{"type": "webhook",
                                                  "url": "http://127.0.0.1:9/hook"}])
        bodies.append(body)
    return bodies


class Bench:
    def __init__(self, series, rules, with_engine):
        self.directory = tempfile.mkdtemp(prefix="alerts-bench-")
        self.settings = load(["--data-dir", self.directory])
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = Store(self.settings.tiers, now=T0)
        self.journal = Journal(self.directory, 0)
        self.core = IngestCore(self.settings, self.clock, self.store, self.journal)
        self.apps = 1000
        self.keys = []
        per_app = max(1, series // self.apps)
        for n in range(series):
            app, metric = n % self.apps, n // self.apps
            self.keys.append(("app%03d.m%d" % (app, metric % per_app),
                              (("host", "web%d" % (n % 20)),)))
        self.engine = None
        self.delivered = 0
        if with_engine:
            self.engine = AlertEngine(self.core, self.clock, self.deliver)
            self.core.extend("alerts", self.engine)
            began = time.process_time()
            for i, body in enumerate(rule_bodies(rules, self.apps)):
                spec = check_rule(body, self.store.tiers)
                spec["id"] = "r%04d" % i
                self.engine.put_rule(spec)
            self.save_seconds = time.process_time() - began
            self.engine.start()

    def deliver(self, channel, note):
        self.delivered += 1
        return defer.succeed(None)

    def fill(self, hot=0.0):
        """One value per series in the current bucket (C{hot}: the share above 90)."""
        items = []
        every = int(1 / hot) if hot else 0
        for n, (name, tags) in enumerate(self.keys):
            value = 95.0 if every and n % every == 0 else float(n % 50)
            items.append(Sample(name, tags, GAUGE, value))
            if len(items) == 5000:
                self.core.submit(items, "bench", journal=False)
                items = []
        if items:
            self.core.submit(items, "bench", journal=False)
        self.store.settle()

    def tick(self):
        """The tick in 20 ms slices: (CPU seconds, longest slice, buckets closed)."""
        self.clock.advance(10)
        now = self.clock.seconds()
        total = longest = 0.0
        closed = 0
        while True:
            began = time.process_time()
            count, finished = self.store.tick(now, deadline=time.perf_counter() + SLICE,
                                              timer=time.perf_counter)
            spent = time.process_time() - began
            total += spent
            longest = max(longest, spent)
            closed += count
            # The deliveries the tick queued go out in the next turns.
            self.clock.advance(0)
            if finished:
                return total, longest, closed

    def stopped_check(self):
        if self.engine is None:
            return 0.0, 0.0
        total = longest = 0.0
        began = time.process_time()
        self.engine.check_stopped()
        spent = time.process_time() - began
        total, longest = spent, spent
        while self.engine._stopped_cursor is not None:
            began = time.process_time()
            self.clock.advance(0)
            spent = time.process_time() - began
            total += spent
            longest = max(longest, spent)
        return total, longest

    def close(self):
        self.journal.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def run(series, rules, with_engine):
    gc.collect()
    bench = Bench(series, rules, with_engine)
    gc.collect()
    gc.freeze()
    try:
        out = {}
        bench.fill()
        out["first"] = bench.tick()
        steady = []
        for _ in range(3):
            bench.fill()
            steady.append(bench.tick())
        out["steady"] = min(steady)
        bench.fill(hot=0.01)
        out["firing"] = bench.tick()
        out["stopped"] = bench.stopped_check()
        if bench.engine is not None:
            engine = bench.engine
            out["instances"] = len(engine.instances)
            out["firing_instances"] = sum(1 for i in engine.instances.values()
                                          if i.state == "firing")
            out["delivered"] = bench.delivered
            out["save"] = bench.save_seconds
        return out
    finally:
        gc.unfreeze()
        bench.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    results = {False: [], True: []}
    for _ in range(args.runs):
        for with_engine in (False, True):
            results[with_engine].append(run(args.series, args.rules, with_engine))
    print("%d series, %d rules, best of %d runs; CPU ms of the whole tick / longest 20 ms"
          " slice (the stall)" % (args.series, args.rules, args.runs))
    print("%-34s %22s %22s %14s" % ("phase", "without alerts", "with alerts", "extra ms"))
    for phase, label in (("first", "first tick after the rules"),
                         ("steady", "steady tick (nothing changes)"),
                         ("firing", "tick where 1 % fire")):
        base = min(r[phase] for r in results[False])
        alerts = min(r[phase] for r in results[True])
        print("%-34s %12.0f / %5.1f %12.0f / %5.1f %14.0f" % (
            label, base[0] * 1000, base[1] * 1000, alerts[0] * 1000, alerts[1] * 1000,
            (alerts[0] - base[0]) * 1000))
    stopped = min(r["stopped"] for r in results[True])
    last = results[True][-1]
    print("%-34s %22s %12.0f / %5.1f" % ("stopped check (its instances)", "-",
                                           stopped[0] * 1000, stopped[1] * 1000))
    print("instances %d, firing %d, notifications delivered %d; %d rules checked and saved in"
          " %.0f ms" % (last["instances"], last["firing_instances"], last["delivered"], args.rules,
                        min(r["save"] for r in results[True]) * 1000))


if __name__ == "__main__":
    main()
