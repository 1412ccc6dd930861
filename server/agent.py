"""
The host agent: every interval, a Linux host's figures (the families the
dtrace/kstat service collected on SmartOS) as gauges tagged with C{host},
sent through the Python client (C{clients/python}, pre-aggregated and
acknowledged over the TCP tuple port).

    python -m server.agent --send 127.0.0.1:8007 [--interval 5] [--host NAME] [--top 5]

Series (rates are per second over the last interval, so they start at the
second collection):

  - C{cpu.user}, C{cpu.nice}, C{cpu.system}, C{cpu.idle}, C{cpu.iowait},
    C{cpu.irq}, C{cpu.softirq}, C{cpu.steal}: % of the time in each state,
    tag C{cpu} C{total} or the core's number (0..100, together 100);
  - C{load.1}, C{load.5}, C{load.15};
  - C{mem.total}, C{mem.available}, C{mem.used}, C{mem.free},
    C{mem.buffers}, C{mem.cached} (bytes), C{mem.used_percent};
    C{swap.total}, C{swap.used}, C{swap.free} (bytes),
    C{swap.used_percent}, C{swap.in_bytes}, C{swap.out_bytes} (rates);
  - C{disk.total}, C{disk.used}, C{disk.free} (bytes), C{disk.used_percent},
    tags C{mount} and C{device};
  - C{diskio.reads}, C{diskio.writes}, C{diskio.read_bytes},
    C{diskio.write_bytes} (rates), C{diskio.busy_percent}, tag C{device}
    (loop and ram devices left out);
  - C{net.bytes_sent}, C{net.bytes_recv}, C{net.packets_sent},
    C{net.packets_recv}, C{net.errin}, C{net.errout}, C{net.dropin},
    C{net.dropout} (rates), tag C{interface};
  - C{proc.count}; C{proc.cpu_percent} (% of one core, so up to 100 per
    core) and C{proc.rss} (bytes) of the C{--top} process names by CPU,
    summed over the processes of each name, tag C{process};
  - C{agent.collect_ms}: how long the collection took.

A blocking loop on threads (the client's flush thread), not the reactor: the
agent is its own small program and needs nothing of Twisted.
"""

import argparse
import re
import signal
import socket
import sys
import threading
import time

import psutil

from simplestats_client import Client

CPU_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# Linux counts guest time in user and nice as well: left out of the total.
_GUEST = ("guest", "guest_nice")
NET_FIELDS = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv", "errin", "errout",
              "dropin", "dropout")
DISKIO_FIELDS = (("reads", "read_count"), ("writes", "write_count"),
                 ("read_bytes", "read_bytes"), ("write_bytes", "write_bytes"))
_SKIP_DEVICES = re.compile(r"(loop|ram)\d+$")
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.\-:/@+]")


def tag_value(text):
    """
    C{text} as a tag value the server accepts (other characters as C{_}).
    """
    return _TAG_BAD.sub("_", str(text))[:100]


class Collector:
    """
    One host's figures from C{psutil} (a module or a fake with its calls),
    rates against the previous L{collect}.

    @param top: how many process names by CPU to report.
    @param monotonic: seconds, for the time between collections.
    """

    def __init__(self, ps=psutil, top=5, monotonic=time.monotonic):
        self.ps = ps
        self.top = top
        self.monotonic = monotonic
        self._last = None
        self._cpu = None
        self._processes = {}

    def collect(self):
        """
        The gauges of this moment: a list of C{(name, value, tags)}.
        """
        now = self.monotonic()
        previous, dt = self._last, None
        if previous is not None and now > previous[0]:
            dt = now - previous[0]
        current = {}
        out = []
        self._cpu_percent(out)
        load = self.ps.getloadavg()
        for name, value in zip(("load.1", "load.5", "load.15"), load):
            out.append((name, value, {}))
        self._memory(out, current)
        self._disk_usage(out)
        counters = current.setdefault("diskio", {})
        for device, io in sorted((self.ps.disk_io_counters(perdisk=True) or {}).items()):
            if _SKIP_DEVICES.match(device):
                continue
            values = {name: getattr(io, field) for name, field in DISKIO_FIELDS}
            values["busy_ms"] = getattr(io, "busy_time", None)
            counters[device] = values
        counters = current.setdefault("net", {})
        for interface, io in sorted((self.ps.net_io_counters(pernic=True) or {}).items()):
            counters[interface] = {field: getattr(io, field) for field in NET_FIELDS}
        if dt is not None:
            self._rates(out, previous[1], current, dt)
        self._processes_top(out)
        self._last = (now, current)
        out.append(("agent.collect_ms", (self.monotonic() - now) * 1000.0, {}))
        return out

    def _cpu_percent(self, out):
        times = self.ps.cpu_times(percpu=True)
        total = [sum(t) for t in zip(*times)] if times else []
        rows = [("total", total and type(times[0])(*total))]
        rows.extend((str(n), t) for n, t in enumerate(times))
        previous, self._cpu = self._cpu, dict(rows)
        if previous is None:
            return
        for cpu, now in rows:
            before = previous.get(cpu)
            if before is None:
                continue
            deltas = {f: max(0.0, getattr(now, f) - getattr(before, f)) for f in now._fields}
            elapsed = sum(v for f, v in deltas.items() if f not in _GUEST)
            if elapsed <= 0:
                continue
            for state in CPU_STATES:
                if state in deltas:
                    value = min(100.0, 100.0 * deltas[state] / elapsed)
                    out.append(("cpu." + state, value, {"cpu": cpu}))

    def _memory(self, out, current):
        mem = self.ps.virtual_memory()
        for field in ("total", "available", "used", "free", "buffers", "cached"):
            if hasattr(mem, field):
                out.append(("mem." + field, float(getattr(mem, field)), {}))
        out.append(("mem.used_percent", float(mem.percent), {}))
        swap = self.ps.swap_memory()
        for field in ("total", "used", "free"):
            out.append(("swap." + field, float(getattr(swap, field)), {}))
        out.append(("swap.used_percent", float(swap.percent), {}))
        current["swap"] = {"": {"in_bytes": swap.sin, "out_bytes": swap.sout}}

    def _disk_usage(self, out):
        seen = set()
        for part in self.ps.disk_partitions(all=False):
            if part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                usage = self.ps.disk_usage(part.mountpoint)
            except OSError:
                # A mount we may not read (or gone since it was listed).
                continue
            tags = {"mount": tag_value(part.mountpoint), "device": tag_value(part.device)}
            for field in ("total", "used", "free"):
                out.append(("disk." + field, float(getattr(usage, field)), tags))
            out.append(("disk.used_percent", float(usage.percent), tags))

    def _rates(self, out, previous, current, dt):
        for family, tag in (("diskio", "device"), ("net", "interface"), ("swap", None)):
            for thing, values in current.get(family, {}).items():
                before = previous.get(family, {}).get(thing)
                if before is None:
                    continue
                tags = {tag: tag_value(thing)} if tag else {}
                for field, value in values.items():
                    old = before.get(field)
                    if value is None or old is None or value < old:
                        # Not counted here, or the counter went back (a wrap,
                        # a device replaced): no rate this time.
                        continue
                    if field == "busy_ms":
                        out.append(("diskio.busy_percent",
                                    min(100.0, (value - old) / (dt * 10.0)), tags))
                    else:
                        out.append(("%s.%s" % (family, field), (value - old) / dt, tags))

    def _processes_top(self, out):
        by_name = {}
        count = 0
        for proc in self.ps.process_iter():
            count += 1
            # process_iter hands back the same Process objects, so that
            # cpu_percent measures since the previous collection.
            try:
                with proc.oneshot():
                    name = proc.name()
                    cpu = proc.cpu_percent(None)
                    rss = proc.memory_info().rss
            except (self.ps.NoSuchProcess, self.ps.AccessDenied, self.ps.ZombieProcess):
                continue
            total = by_name.setdefault(name, [0.0, 0.0])
            total[0] += cpu
            total[1] += rss
        out.append(("proc.count", float(count), {}))
        ranked = sorted(by_name.items(), key=lambda kv: (-kv[1][0], kv[0]))[: self.top]
        for name, (cpu, rss) in ranked:
            tags = {"process": tag_value(name) or "_"}
            out.append(("proc.cpu_percent", cpu, tags))
            out.append(("proc.rss", float(rss), tags))


class Agent:
    """
    Collect every C{interval} seconds (on multiples of it) and record the
    gauges in C{client} until L{stop}.
    """

    def __init__(self, collector, client, interval):
        self.collector = collector
        self.client = client
        self.interval = interval
        self.stopped = threading.Event()
        self.collections = 0

    def run_once(self):
        for name, value, tags in self.collector.collect():
            self.client.gauge(name, value, tags=tags or None)
        self.collections += 1

    def run(self):
        while not self.stopped.is_set():
            try:
                self.run_once()
            except Exception as e:  # one bad collection must not stop the agent
                print("simplestats-agent: collection failed: %r" % (e,), file=sys.stderr)
            self.stopped.wait(self.interval - time.time() % self.interval)

    def stop(self, *ignored):
        self.stopped.set()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="simplestats-agent",
        description="Send this host's CPU, load, memory, disk, network and process figures to"
                    " a SimpleStats server every interval.")
    parser.add_argument("--send", required=True, metavar="HOST:PORT",
                        help="the server's TCP tuple port, e.g. 127.0.0.1:8007")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between collections (default 5)")
    parser.add_argument("--host", default=None,
                        help="the host tag (default: this machine's name)")
    parser.add_argument("--top", type=int, default=5,
                        help="how many process names by CPU to report (default 5)")
    parser.add_argument("--prefix", default="", help="put before every series name")
    args = parser.parse_args(argv)
    host, sep, port = args.send.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        parser.error("--send must be HOST:PORT, got %r" % (args.send,))
    if not args.interval > 0:
        parser.error("--interval must be a number of seconds > 0, got %r" % (args.interval,))
    if args.top < 0:
        parser.error("--top must be >= 0, got %r" % (args.top,))
    args.server = (host, int(port))
    args.host = tag_value(args.host or socket.gethostname())
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    client = Client(args.server[0], args.server[1], prefix=args.prefix,
                    tags={"host": args.host}, interval=min(args.interval, 5.0))
    agent = Agent(Collector(top=args.top), client, args.interval)
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    print("simplestats-agent: host=%s sending to %s:%d every %g s"
          % (args.host, args.server[0], args.server[1], args.interval), flush=True)
    try:
        agent.run()
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
