"""
The host agent's collector on a fake psutil: CPU % from the times' deltas,
rates from counters over the interval, the top processes by name.
"""

import io
import sys
from collections import namedtuple

from twisted.trial.unittest import SynchronousTestCase

from server.agent import Agent, Collector, parse_args, tag_value

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
Mem = namedtuple("Mem", "total available percent used free buffers cached")
Swap = namedtuple("Swap", "total used free percent sin sout")
Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free percent")
DiskIO = namedtuple("DiskIO", "read_count write_count read_bytes write_bytes busy_time")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin"
                   " dropout")
Rss = namedtuple("Rss", "rss")


class NoSuchProcess(Exception):
    pass


class AccessDenied(Exception):
    pass


class ZombieProcess(NoSuchProcess):
    pass


class FakeProcess:
    def __init__(self, pid, name, cpu, rss, gone=False):
        self.pid, self._name, self.cpu, self.rss, self.gone = pid, name, cpu, rss, gone

    def oneshot(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def name(self):
        if self.gone:
            raise NoSuchProcess(self.pid)
        return self._name

    def cpu_percent(self, interval):
        return self.cpu

    def memory_info(self):
        return Rss(self.rss)


class FakePsutil:
    """The psutil calls the collector makes, answering what a test sets."""

    NoSuchProcess = NoSuchProcess
    AccessDenied = AccessDenied
    ZombieProcess = ZombieProcess

    def __init__(self):
        self.cpus = [CpuTimes(*[0.0] * 10), CpuTimes(*[0.0] * 10)]
        self.disks = {"sda": DiskIO(0, 0, 0, 0, 0), "loop0": DiskIO(0, 0, 0, 0, 0)}
        self.nics = {"eth0": NetIO(*[0] * 8)}
        self.swap = Swap(100.0, 10.0, 90.0, 10.0, 0, 0)
        self.processes = []

    def cpu_times(self, percpu):
        return list(self.cpus)

    def getloadavg(self):
        return (0.5, 0.25, 0.125)

    def virtual_memory(self):
        return Mem(1000, 600, 40.0, 400, 500, 10, 90)

    def swap_memory(self):
        return self.swap

    def disk_partitions(self, all):
        return [Part("/dev/sda1", "/", "ext4", ""), Part("/dev/sda1", "/", "ext4", ""),
                Part("/dev/sdb", "/mnt/my disk", "ext4", ""), Part("x", "/gone", "ext4", "")]

    def disk_usage(self, path):
        if path == "/gone":
            raise PermissionError(path)
        return Usage(2000, 500, 1500, 25.0)

    def disk_io_counters(self, perdisk):
        return dict(self.disks)

    def net_io_counters(self, pernic):
        return dict(self.nics)

    def process_iter(self):
        return iter(self.processes)


class Ticks:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def by_key(out):
    return {(name, tuple(sorted(tags.items()))): value for name, value, tags in out}


class CollectorTests(SynchronousTestCase):
    def setUp(self):
        self.ps = FakePsutil()
        self.clock = Ticks()
        self.collector = Collector(self.ps, top=2, monotonic=self.clock)

    def test_first_collection_has_no_rates_and_no_cpu(self):
        """Rates and CPU % need a previous collection; the levels come at once."""
        got = by_key(self.collector.collect())
        self.assertFalse([k for k in got if k[0].startswith(("cpu.", "net.", "diskio."))])
        self.assertEqual(got[("mem.total", ())], 1000.0)
        self.assertEqual(got[("load.5", ())], 0.25)
        self.assertEqual(got[("swap.used_percent", ())], 10.0)

    def test_cpu_percent_from_deltas_per_core_and_total(self):
        """Each state's share of the elapsed time, guest time not counted twice."""
        self.collector.collect()
        # Core 0: 2 s user (1 of it guest), 6 s idle, 2 s iowait; core 1: 10 s system.
        self.ps.cpus = [CpuTimes(2.0, 0, 0, 6.0, 2.0, 0, 0, 0, 1.0, 0),
                        CpuTimes(0, 0, 10.0, 0, 0, 0, 0, 0, 0, 0)]
        self.clock.now += 5
        got = by_key(self.collector.collect())
        self.assertEqual(got[("cpu.user", (("cpu", "0"),))], 20.0)
        self.assertEqual(got[("cpu.idle", (("cpu", "0"),))], 60.0)
        self.assertEqual(got[("cpu.iowait", (("cpu", "0"),))], 20.0)
        self.assertEqual(got[("cpu.system", (("cpu", "1"),))], 100.0)
        self.assertEqual(got[("cpu.system", (("cpu", "total"),))], 50.0)
        self.assertEqual(got[("cpu.user", (("cpu", "total"),))], 10.0)
        self.assertEqual(got[("cpu.steal", (("cpu", "total"),))], 0.0)
        total = sum(v for (name, tags), v in got.items()
                    if name.startswith("cpu.") and tags == (("cpu", "total"),))
        self.assertEqual(total, 100.0)

    def test_rates_per_second_over_the_interval(self):
        """Counters become rates over the time between collections; loop devices are left out."""
        self.collector.collect()
        self.ps.disks = {"sda": DiskIO(10, 20, 4096, 8192, 500), "loop0": DiskIO(9, 9, 9, 9, 9)}
        self.ps.nics = {"eth0": NetIO(2000, 4000, 20, 40, 0, 2, 0, 4)}
        self.ps.swap = Swap(100.0, 10.0, 90.0, 10.0, 1000, 0)
        self.clock.now += 2
        got = by_key(self.collector.collect())
        sda = (("device", "sda"),)
        self.assertEqual(got[("diskio.reads", sda)], 5.0)
        self.assertEqual(got[("diskio.write_bytes", sda)], 4096.0)
        # 500 ms busy in 2 s.
        self.assertEqual(got[("diskio.busy_percent", sda)], 25.0)
        eth = (("interface", "eth0"),)
        self.assertEqual(got[("net.bytes_sent", eth)], 1000.0)
        self.assertEqual(got[("net.dropout", eth)], 2.0)
        self.assertEqual(got[("swap.in_bytes", ())], 500.0)
        self.assertFalse([k for k in got if ("device", "loop0") in k[1]])

    def test_a_counter_that_goes_back_gives_no_rate(self):
        """A wrapped or reset counter is skipped for one interval, never a negative rate."""
        self.ps.nics = {"eth0": NetIO(5000, 5000, 5, 5, 0, 0, 0, 0)}
        self.collector.collect()
        self.ps.nics = {"eth0": NetIO(100, 6000, 5, 5, 0, 0, 0, 0), "eth1": NetIO(*[1] * 8)}
        self.clock.now += 1
        got = by_key(self.collector.collect())
        self.assertNotIn(("net.bytes_sent", (("interface", "eth0"),)), got)
        self.assertEqual(got[("net.bytes_recv", (("interface", "eth0"),))], 1000.0)
        # A new interface has no rate before its second collection.
        self.assertFalse([k for k in got if ("interface", "eth1") in k[1]])

    def test_disk_usage_per_mount(self):
        """One set per mount point, tag values made acceptable, unreadable mounts skipped."""
        got = by_key(self.collector.collect())
        mounts = sorted(dict(k[1])["mount"] for k in got if k[0] == "disk.used_percent")
        self.assertEqual(mounts, ["/", "/mnt/my_disk"])
        self.assertEqual(got[("disk.free", (("device", "/dev/sda1"), ("mount", "/")))], 1500.0)

    def test_top_processes_by_name(self):
        """Processes of one name are summed; the top N names by CPU are reported, plus the count."""
        self.ps.processes = [FakeProcess(1, "python", 30.0, 100), FakeProcess(2, "python", 25.0, 50),
                             FakeProcess(3, "postgres", 50.0, 1000),
                             FakeProcess(4, "idle thing", 0.0, 1),
                             FakeProcess(5, "gone", 99.0, 1, gone=True)]
        got = by_key(self.collector.collect())
        self.assertEqual(got[("proc.count", ())], 5.0)
        self.assertEqual(got[("proc.cpu_percent", (("process", "python"),))], 55.0)
        self.assertEqual(got[("proc.rss", (("process", "python"),))], 150.0)
        self.assertEqual(got[("proc.cpu_percent", (("process", "postgres"),))], 50.0)
        self.assertEqual(len([k for k in got if k[0] == "proc.cpu_percent"]), 2)


class RecordingClient:
    def __init__(self):
        self.gauges = []

    def gauge(self, name, value, tags=None):
        self.gauges.append((name, value, tags))


class AgentTests(SynchronousTestCase):
    def test_run_once_records_gauges(self):
        """Each collected figure is recorded as a gauge; no tags is None, not {}."""
        client = RecordingClient()
        agent = Agent(Collector(FakePsutil(), monotonic=Ticks()), client, 5.0)
        agent.run_once()
        self.assertIn(("mem.total", 1000.0, None), client.gauges)
        self.assertIn(("disk.total", 2000.0, {"mount": "/", "device": "/dev/sda1"}),
                      client.gauges)
        self.assertEqual(agent.collections, 1)

    def test_arguments(self):
        """--send is HOST:PORT; bad values are usage errors naming the flag."""
        args = parse_args(["--send", "stats.example:8007", "--host", "web 1"])
        self.assertEqual((args.server, args.host, args.interval), (("stats.example", 8007),
                                                                   "web_1", 5.0))
        for bad, flag in ((["--send", "nohost"], "--send"), (["--send", "h:0"], "--send"),
                          (["--send", "h:x"], "--send"),
                          (["--send", "h:1", "--interval", "0"], "--interval")):
            err = io.StringIO()
            self.patch(sys, "stderr", err)
            self.assertRaises(SystemExit, parse_args, bad)
            self.assertIn("error: %s must be" % (flag,), err.getvalue())

    def test_tag_value(self):
        """Characters the server refuses in a tag value become _."""
        self.assertEqual(tag_value("/mnt/a b,c"), "/mnt/a_b_c")
        self.assertEqual(len(tag_value("x" * 300)), 100)
