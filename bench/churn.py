"""
Memory under names that churn (pods, containers): C{--rate} new series a
minute, each sending a counter point every 5 s for one minute and then
never again, for C{--hours} of simulated time.  The server's own store,
core and rollup timer run in this process on a hand-moved clock (the
journal is real, in a temporary directory); every ten simulated minutes
it prints the series count and the Python heap in use (tracemalloc), so
the curve shows whether memory is flat once retention has passed.

    python bench/churn.py --retentions 5s:10m,1m:1h --hours 3
    python bench/churn.py --idle-expiry 3600 --hours 3      # default tiers

Run from the repo root with the server's interpreter; prints one JSON
object per line (the last one is the summary).
"""

import argparse
import json
import os
import sys
import tempfile
import tracemalloc

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from twisted.internet.task import Clock  # noqa: E402

from server.core.ingest import IngestCore  # noqa: E402
from server.durability.journal import Journal  # noqa: E402
from server.core.model import COUNTER, Sample  # noqa: E402
from server.core.rollup import RollupTimer  # noqa: E402
from server.settings import load  # noqa: E402
from server.core.store import Store  # noqa: E402

T0 = 1795392000.0


class Snapshotless:
    status = {"duration": None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="new names a minute")
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--retentions", default=None)
    parser.add_argument("--idle-expiry", default=None)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="churn-")
    argv = ["--data-dir", data]
    if args.retentions:
        argv += ["--retentions", args.retentions]
    if args.idle_expiry:
        argv += ["--idle-expiry", args.idle_expiry]
    settings = load(argv, {})
    clock = Clock()
    clock.advance(T0)
    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=T0)
    journal = Journal(data, 60.0)
    core = IngestCore(settings, clock, store, journal)
    timer = RollupTimer(store, core, Snapshotless(), clock, lambda: 0.0)
    tracemalloc.start()
    minutes = int(args.hours * 60)
    name = 0
    active = []
    samples = []
    for minute in range(minutes):
        active = list(range(name, name + args.rate))
        name += args.rate
        for _ in range(12):
            clock.advance(5)
            core.submit([Sample("churn.%d" % (n,), (), COUNTER, 1.0) for n in active], "bench")
            timer()
            while timer.running or timer.sweeping:
                clock.advance(0)
            core.durable()
            # The journal is the snapshot's business; keep its file small.
            journal.rotate()
            journal.remove_before(journal.seq)
        if (minute + 1) % 10 == 0:
            current, _ = tracemalloc.get_traced_memory()
            row = {"minute": minute + 1, "series": len(store.series),
                   "heap_mb": round(current / 2 ** 20, 1)}
            samples.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"rate_per_minute": args.rate, "hours": args.hours,
                      "retentions": args.retentions or "default",
                      "idle_expiry": args.idle_expiry or "0", "samples": samples}))


if __name__ == "__main__":
    main()
