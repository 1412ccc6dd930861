"""
statsd-over-UDP figures for one system: the generator's own maximum, one
load step, the fixed-rate CPU step and the loss-free search, all run the
same way for every system.
"""

import json
import os
import subprocess
import sys

from bench import counting, search, shapes
from bench.procstat import core_busy_seconds, pinned
from bench.systems import BENCH_DIR, Step

# A step that sent less than this fraction of its offered rate was held
# back by the generator, not by the server.
GENERATOR_SHORTFALL = 0.98
# A step during which other programs used more than this fraction of the
# server's core is flagged as disturbed.
DISTURBED = 0.05


class Shape:
    """
    One kind of UDP load: what the lines are (a kind of L{bench.shapes}:
    C{real}, or the best-case C{counters} and C{mix}) and how many go in a
    packet.
    """

    def __init__(self, kind, per_packet):
        if kind not in shapes.KINDS:
            raise ValueError("unknown shape kind %r" % (kind,))
        self.kind = kind
        self.per_packet = per_packet

    @property
    def key(self):
        return "%s_%d" % (self.kind, self.per_packet)

    @property
    def best_case(self):
        """
        Whether this is a repetitive pool a server can learn: reported,
        but not what the targets are judged on.
        """
        return self.kind != "real"

    def __repr__(self):
        return "Shape(%r, %d)" % (self.kind, self.per_packet)


SHAPES = tuple(Shape(kind, n) for kind in shapes.KINDS for n in (1, 20))


def run_loadgen(args, core, python=None, timeout=600):
    """
    Run bench/loadgen.py pinned to C{core} and return its JSON result.
    """
    argv = [python or sys.executable, os.path.join(BENCH_DIR, "loadgen.py")] + [str(a) for a in args]
    done = subprocess.run(pinned(argv, core), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError("load generator failed (%d): %s" % (done.returncode, done.stderr[-2000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def generator_max(shape, duration, core):
    """
    The generator's own unpaced send rate for C{shape}, into a socket
    nobody reads, pinned like every step.
    """
    return run_loadgen(["maxrate", "--duration", duration, "--per-packet", shape.per_packet,
                        "--kind", shape.kind], core)


class Stepper:
    """
    Runs load steps against one started system, each with fresh names.
    """

    def __init__(self, system, shape, duration, load_core, label):
        self.system = system
        self.shape = shape
        self.duration = duration
        self.load_core = load_core
        self.label = label
        self.number = 0

    def step(self, rate, duration=None):
        """
        Offer C{rate} metrics per second for C{duration} (default: the step
        duration); count back.
        """
        self.number += 1
        system = self.system
        step = Step("%s%d" % (self.label, self.number), self.shape.per_packet, self.shape.kind)
        notes_before = system.diagnostics()
        before = system.count(step)
        cpu_before = system.process.cpu_seconds()
        core_before = core_busy_seconds(system.core)
        args = ["udp", "--port", system.udp_port, "--rate", "%.1f" % rate,
                "--duration", duration or self.duration, "--per-packet", self.shape.per_packet,
                "--prefix", step.prefix, "--kind", self.shape.kind]
        sent = run_loadgen(args, self.load_core)
        countable_kinds = system.countable(step)
        countable = sum(n for kind, n in sent["by_kind"].items() if kind in countable_kinds)
        counting_cpu = [0.0]

        def read():
            # Answering the count (SimpleStats: HTTP requests) costs the
            # server CPU that is not the load's: measured and taken out.
            began = system.process.cpu_seconds()
            try:
                return system.count(step) - before
            finally:
                counting_cpu[0] += system.process.cpu_seconds() - began

        total, waited = counting.wait_settled(read, countable, system.settle_seconds(step),
                                              system.settle_timeout)
        all_cpu = system.process.cpu_seconds() - cpu_before
        cpu = max(0.0, all_cpu - counting_cpu[0])
        foreign = None
        if core_before is not None:
            # Whatever else ran on the server's core: other programs on a
            # shared machine make a figure worth less.
            foreign = max(0.0, core_busy_seconds(system.core) - core_before - all_cpu)
        # Read after the CPU figures: answering is not the load's work.
        notes_after = system.diagnostics()
        if not system.process.alive():
            raise RuntimeError("%s died during a step:\n%s" % (system.name, system.process.log_tail()))
        system.forget(step)
        loss = counting.loss_fraction(countable, total)
        return {
            "prefix": step.prefix,
            "offered_rate": rate,
            "achieved_rate": sent["achieved_rate"],
            "generator_limited": sent["achieved_rate"] < GENERATOR_SHORTFALL * rate,
            "metrics_sent": sent["metrics"],
            "packets_sent": sent["packets"],
            "send_errors": sent["errors"],
            "countable_sent": countable,
            "counted": total,
            "extra_counted": max(0, total - countable),
            "loss": loss,
            "loss_free": counting.is_loss_free(countable, total),
            "counted_rate": total / sent["elapsed"] * (sent["metrics"] / max(countable, 1)),
            "elapsed": sent["elapsed"],
            "settle_seconds": waited,
            "cpu_seconds": cpu,
            "counting_cpu_seconds": counting_cpu[0],
            "cpu_per_million": cpu / max(total, 1) * 1e6 * (countable / max(sent["metrics"], 1)),
            "foreign_cpu_seconds": foreign,
            "disturbed": foreign is not None and foreign > DISTURBED * (sent["elapsed"] + waited),
            "pool_packets": sent.get("pool_packets"),
            "build_seconds": sent.get("build_seconds"),
            "diagnostics": {k: v - notes_before.get(k, 0) for k, v in notes_after.items()},
        }


def measure_system(make_system, shape, settings, load_core, probe_rate, cpu_rate, log):
    """
    Start a fresh system, run the fixed-rate CPU step and the loss-free
    search for one shape, stop it.

    @param make_system: callable returning an unstarted L{System}.
    @param probe_rate: the first (overload) rate of the search.
    @param cpu_rate: the common rate at which CPU per million is compared.
    """
    system = make_system()
    system.start()
    try:
        label = "%s%s%d" % (system.name[:2], shape.kind[0], shape.per_packet)
        stepper = Stepper(system, shape, settings["step_seconds"], load_core, label)
        # A first, unmeasured second of load: JIT compilers, caches and
        # allocators warm up, so the CPU step compares steady states.
        warmup = stepper.step(cpu_rate, min(1.0, settings["step_seconds"]))
        warmup["role"] = "warmup"
        cpu_step = stepper.step(cpu_rate)
        cpu_step["role"] = "cpu"
        log("  %s %s cpu step at %s/s: %.3f s CPU per million, loss %.3f%%"
            % (system.name, shape.key, _si(cpu_rate), cpu_step["cpu_per_million"],
               100 * cpu_step["loss"]))

        def trial(rate):
            result = stepper.step(rate)
            log("  %s %s offered %s/s sent %s/s counted %s/s loss %.3f%%%s"
                % (system.name, shape.key, _si(rate), _si(result["achieved_rate"]),
                   _si(result["counted_rate"]), 100 * result["loss"],
                   " (generator-limited)" if result["generator_limited"] else ""))
            return result

        found = search.find_loss_free_rate(trial, probe_rate, settings["max_steps"])
        memory = system.process.memory()
    finally:
        system.stop()
    best = [s for s in found["steps"] if s["loss_free"] and s["offered_rate"] == found["rate"]]
    return {
        "loss_free_rate": found["rate"],
        "bound": found["bound"],
        "confirmed": found["confirmed"],
        "capacity": found["capacity"],
        "cpu_rate": cpu_rate,
        "cpu_per_million": cpu_step["cpu_per_million"],
        "cpu_step_loss": cpu_step["loss"],
        "cpu_per_million_at_loss_free": best[0]["cpu_per_million"] if best else None,
        "peak_rss": memory["peak_rss"],
        "countable": sorted(system.countable(Step("", shape.per_packet, shape.kind))),
        "counted_as": system.counted_as(Step("", shape.per_packet, shape.kind)),
        "steps": [warmup, cpu_step] + found["steps"],
    }


def _si(value):
    if value >= 1e6:
        return "%.2fM" % (value / 1e6)
    if value >= 1e3:
        return "%.1fk" % (value / 1e3)
    return "%.0f" % value
