"""
Where SimpleStats' statsd path spends its time, measured in this process:
the pieces C{server.service.makeService} builds (Store, IngestCore, a
Journal in a temporary directory, the rollup timer, StatsdProtocol) on a
fake clock, fed the load generator's packets through
C{StatsdProtocol.datagramReceived}.

The clock moves as it would at C{--rate} metrics per second, in reactor
turns of 5 ms, and the timers makeService starts (rollup tick every
second, journal write every 100 ms, fsync every second) run on it, so
their work is in the figure as it is in the server.  The socket read is
not (the ceiling server measures that).  Snapshots are not run.

Prints, per shape, microseconds per metric (unprofiled), then the
functions with the most own time under cProfile.

    python bench/profile_statsd.py                       # real_20, real_1, mix_20
    python bench/profile_statsd.py --shapes real_20 --seconds 30 --top 25
    python bench/profile_statsd.py --repo /tmp/head      # profile another checkout's server/

Run with the server's interpreter (.venv/bin/python).
"""

import argparse
import cProfile
import dataclasses
import io
import os
import pstats
import shutil
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)

# Simulated seconds fed before the clock starts: the series are created and
# the learned lines (if any) learned, as in a server that runs for a while.
WARMUP_SECONDS = 2.0
# Simulated time per reactor turn: the timers fire between turns.
TURN_SECONDS = 0.005


def build_server(directory, start, ticks):
    """
    The statsd path as makeService wires it, on a L{task.Clock} set to
    C{start}: returns C{(clock, protocol, core, timers)} where C{timers} are
    the started C{LoopingCall}s.  Each finished rollup tick appends
    C{(seconds of work, longest slice)} to C{ticks}.
    """
    from twisted.internet import task

    from server.core.ingest import IngestCore
    from server.durability.journal import Journal
    from server.receivers.statsd import StatsdProtocol
    from server.core.rollup import RollupTimer
    from server.settings import load
    from server.durability.snapshot import Snapshotter
    from server.core.store import Store

    settings = dataclasses.replace(load([]), data_dir=directory)
    clock = task.Clock()
    clock.advance(start)
    journal = Journal(directory, settings.journal_fsync_interval)
    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace,
                  now=clock.seconds())
    core = IngestCore(settings, clock, store, journal)

    def run_now(f, *args):
        # Snapshots are not taken here; the rollup timer only reads status.
        raise RuntimeError("no snapshot in the profile")

    snapshotter = Snapshotter(store, journal, directory, clock, run_now, timer=time.perf_counter)
    tick = RollupTimer(store, core, snapshotter, clock, time.perf_counter,
                       emit_every=store.tiers[0].step)
    protocol = StatsdProtocol(core, settings.limits, clock, settings.max_packet_size)
    timers = []

    def rollup():
        # The previous tick's slices all ran by now (a tick a second).
        if tick.slices and not tick.running:
            ticks.append((tick.work, tick.longest))
        tick()

    steps = [(settings.rollup_interval, rollup), (settings.journal_flush_interval, core.durable)]
    if settings.journal_fsync_interval > 0:
        steps.append((settings.journal_fsync_interval, journal.sync))
    for interval, step in steps:
        loop = task.LoopingCall(step)
        loop.clock = clock
        loop.start(interval, now=False)
        timers.append(loop)
    return clock, protocol, core, timers


class Feeder:
    """
    Feeds a pool of packets, cycled, to a protocol at a simulated rate.
    """

    def __init__(self, clock, protocol, packets, per_packet, rate):
        self.clock = clock
        self.receive = protocol.datagramReceived
        self.packets = packets
        self.position = 0
        # Packets per reactor turn at the simulated rate (at least one).
        self.per_turn = max(1, round(rate / per_packet * TURN_SECONDS))
        self.turn_seconds = self.per_turn * per_packet / rate
        self.fed = 0

    def feed(self, seconds):
        """
        Feed C{seconds} of simulated load; return the packets fed.
        """
        receive = self.receive
        packets = self.packets
        size = len(packets)
        address = ("127.0.0.1", 40000)
        turns = max(1, round(seconds / self.turn_seconds))
        position = self.position
        for _ in range(turns):
            for _ in range(self.per_turn):
                receive(packets[position], address)
                position += 1
                if position == size:
                    position = 0
            self.clock.advance(self.turn_seconds)
        self.position = position
        count = turns * self.per_turn
        self.fed += count
        return count


def run_shape(shape, rate, seconds, top, profile=True):
    """
    One shape: build, warm up, time unprofiled, then profile the same
    length of load on a fresh server.  Returns the printed text.
    """
    from bench import shapes

    kind, per_packet = shape.rsplit("_", 1)
    per_packet = int(per_packet)
    began = time.perf_counter()
    packets, _ = shapes.build_packets("prof", per_packet, kind)
    build = time.perf_counter() - began
    out = ["== %s: pool of %d packets (built in %.2f s), %.0f metrics/s simulated for %.0f s"
           % (shape, len(packets), build, rate, seconds)]
    runs = [("timed", None)] + ([("profiled", cProfile.Profile())] if profile else [])
    for label, profiler in runs:
        directory = tempfile.mkdtemp(prefix="simplestats-profile-")
        try:
            ticks = []
            clock, protocol, core, timers = build_server(directory, 1_700_000_000.0, ticks)
            feeder = Feeder(clock, protocol, packets, per_packet, rate)
            feeder.feed(WARMUP_SECONDS)
            del ticks[:]
            cpu = time.process_time()
            wall = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            fed = feeder.feed(seconds)
            if profiler is not None:
                profiler.disable()
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            for loop in timers:
                loop.stop()
            metrics = fed * per_packet
            if label == "timed":
                out.append("  %.2f us per metric (CPU %.2f us): %d metrics in %d packets, "
                           "%.2f s wall; %d rollup ticks, longest %.1f ms (slice %.1f ms)"
                           % (wall / metrics * 1e6, cpu / metrics * 1e6, metrics, fed, wall,
                              len(ticks), max((w for w, _ in ticks), default=0.0) * 1000,
                              max((s for _, s in ticks), default=0.0) * 1000))
                # The counters are emitted (and reset) every 5 s: a bad line
                # left its series behind, or is still counted.
                if ("simplestats.udp.bad" in core.store.series
                        or core.counters.get("simplestats.udp.bad")):
                    out.append("  WARNING: some lines were bad (simplestats.udp.bad)")
            else:
                text = io.StringIO()
                stats = pstats.Stats(profiler, stream=text)
                stats.sort_stats("tottime").print_stats(top)
                out.append("  profiled: %.2f us per metric under cProfile; top %d by own time:"
                           % (wall / metrics * 1e6, top))
                out.extend("    " + line for line in _trim(text.getvalue()))
            core.journal.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return "\n".join(out)


def _trim(report):
    """
    The table of a pstats report, without its header lines.
    """
    lines = report.rstrip().splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return lines[i:]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="real_20,real_1,mix_20",
                        help="comma-separated shapes of bench/shapes.py (kind_perpacket)")
    parser.add_argument("--rate", type=float, default=50000.0, help="simulated metrics/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-profile", action="store_true", help="only the timed run")
    parser.add_argument("--repo", default=REPO_ROOT,
                        help="checkout whose server/ is profiled (default: this one)")
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    sys.path.insert(0, os.path.abspath(args.repo))
    import server
    print("server package: %s" % os.path.dirname(os.path.abspath(server.__file__)))
    print("python %s" % sys.version.split()[0])
    for shape in args.shapes.split(","):
        print(run_shape(shape, args.rate, args.seconds, args.top, not args.no_profile), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
