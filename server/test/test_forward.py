"""
Forwarding closed buckets to Graphite (server.outputs): the lines and their
names, carbon's hashing ring, the queue file, the TCP and UDP links, and the
forwarder on a real store, restarts included.
"""

import json
import os

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import COUNTER, GAUGE, SET, TIMER
from server.core.store import Store
from server.outputs import lines as lines_module
from server.outputs.forwarder import CLOSED, Forwarder, destination_slug
from server.outputs.links import Backoff, TcpLink, UdpLink, datagrams
from server.outputs.ring import ConsistentHashRing, position
from server.outputs.service import ForwardService
from server.outputs.spool import Spool
from server.settings import SettingsError, load
from server.test.support import T0, synchronous


def _settings(testcase, *argv):
    data = testcase.mktemp()
    os.makedirs(data)
    return load(["--data-dir", data, *argv])


class FakeLink:
    """
    A link that records what the forwarder asks of it.
    """

    def __init__(self, spec, spool, name):
        self.spec = spec
        self.spool = spool
        self.kicks = 0
        self.state = "connected"
        self.started = self.stopped = False

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def kick(self):
        self.kicks += 1

    def check(self):
        pass

    def status(self):
        return {"state": self.state}

    def drain(self):
        """
        Everything queued, as the destination would get it.
        """
        data = self.spool.peek(1 << 30)
        while True:
            self.spool.mark_sent(len(data))
            more = self.spool.peek(1 << 30)
            if not more:
                break
            data += more
        self.spool.confirm(self.spool.sent)
        return data


def _store(settings, now=T0):
    return Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=now)


def _parse(data):
    out = {}
    for line in data.decode().splitlines():
        path, value, ts = line.split(" ")
        out.setdefault((path, int(ts)), []).append(float(value))
    return out


class LinesTests(SynchronousTestCase):

    def _series(self, key, kind, values, step=5):
        settings = _settings(self)
        store = _store(settings)
        series = store.get_or_create(key, kind)
        for v in values:
            store.add(series, v, 1.0, T0 + 1, T0 + 1)
        store.tick(T0 + 20)
        return series, store.series[key].stored[0].row(0)

    def test_paths_counter(self):
        """A counter gives its bare name (count), name.count and name.rate (per second)."""
        series, row = self._series("api.req", COUNTER, [3.0, 4.0])
        plan = lines_module.plan(series, "paths")
        got = [line for _, line in lines_module.bucket_lines(plan, series, row, T0, 5)]
        self.assertEqual(sorted(got), sorted([
            "api.req 7.0 %d\n" % T0, "api.req.count 7.0 %d\n" % T0,
            "api.req.rate 1.4 %d\n" % T0]))

    def test_statsd_names(self):
        """statsd names are those of graphite_names' schemes, nothing else."""
        series, row = self._series("api.req", COUNTER, [10.0])
        plan = lines_module.plan(series, "statsd")
        paths = {line.split(" ")[0] for _, line in lines_module.bucket_lines(plan, series, row, T0, 5)}
        self.assertEqual(paths, {"stats.counters.api.req.rate", "stats.counters.api.req.count",
                                 "stats.api.req", "stats_counts.api.req"})

    def test_timer_both(self):
        """A timer under both: its native fields and stats.timers.* with upper_99 = p99."""
        series, row = self._series("db.q", TIMER, [10.0, 30.0])
        plan = lines_module.plan(series, "both")
        got = _parse("".join(line for _, line in lines_module.bucket_lines(plan, series, row, T0, 5))
                     .encode())
        self.assertEqual(got[("db.q", T0)], [20.0])
        self.assertEqual(got[("db.q.max", T0)], [30.0])
        self.assertEqual(got[("stats.timers.db.q.upper", T0)], [30.0])
        self.assertEqual(got[("stats.timers.db.q.lower", T0)], [10.0])
        self.assertEqual(got[("stats.timers.db.q.count_ps", T0)], [0.4])
        self.assertEqual(got[("stats.timers.db.q.upper_99", T0)], got[("db.q.p99", T0)])
        self.assertEqual(len(got), 12 + 11)

    def test_tagged(self):
        """A tagged series goes as Graphite 1.1 tagged paths whatever the names."""
        series, row = self._series("cpu;host=a", GAUGE, [5.0])
        for names in ("paths", "statsd", "both"):
            plan = lines_module.plan(series, names)
            paths = {line.split(" ")[0]
                     for _, line in lines_module.bucket_lines(plan, series, row, T0, 5)}
            self.assertIn("cpu;host=a", paths)
            self.assertIn("cpu.last;host=a", paths)
            self.assertNotIn("stats.gauges.cpu", paths)

    def test_plan_shared_by_kind(self):
        """One plan serves every series of a kind, each with its own name, statsd's included."""
        settings = _settings(self)
        store = _store(settings)
        one = store.get_or_create("stats", COUNTER)
        other = store.get_or_create("web.hits", COUNTER)
        plan = lines_module.plan(one, "both", "dc")
        self.assertEqual(sorted(plan.paths(other)), sorted(
            "dc." + p for p, _ in lines_module.series_paths(other, "both")))
        self.assertIn("dc.stats.counters.stats.rate", plan.paths(one))
        self.assertIn("dc.stats.counters.web.hits.rate", plan.paths(other))
        tagged = store.get_or_create("cpu;dc=eu;host=a", GAUGE)
        self.assertEqual(lines_module.plan(tagged, "paths").paths(tagged)[:2],
                         ["cpu;dc=eu;host=a", "cpu.last;dc=eu;host=a"])

    def test_prefix(self):
        """The prefix goes before every path, tagged ones included."""
        series, row = self._series("s1", SET, ["a", "b", "a"])
        plan = lines_module.plan(series, "both", "dc1.agg")
        got = _parse("".join(line for _, line in lines_module.bucket_lines(plan, series, row, T0, 5))
                     .encode())
        self.assertEqual(got, {("dc1.agg.s1", T0): [2.0], ("dc1.agg.s1.count", T0): [2.0],
                               ("dc1.agg.stats.sets.s1.count", T0): [2.0]})

    def test_no_value_left_out(self):
        """A field with no value (mean of nothing) is not sent."""
        series, row = self._series("g", GAUGE, [1.0])
        plan = lines_module.plan(series, "paths")
        empty = (0.0, 0.0, float("nan"), float("nan"), float("nan"))
        self.assertEqual(lines_module.bucket_lines(plan, series, empty, T0, 5),
                         [(plan.entries.index(e), "g.updates 0.0 %d\n" % T0)
                          for e in plan.entries if e[1] == ".updates"])

    def test_numbers(self):
        """Values go in the shortest text that reads back to the same float."""
        series, row = self._series("g", GAUGE, [0.1 + 0.2])
        plan = lines_module.plan(series, "paths")
        (line,) = [line for _, line in lines_module.bucket_lines(plan, series, row, T0, 5)
                   if line.startswith("g.last ")]
        self.assertEqual(float(line.split(" ")[1]), 0.1 + 0.2)
        self.assertEqual(line, "g.last 0.30000000000000004 %d\n" % T0)


class RingTests(SynchronousTestCase):

    def test_position(self):
        """A position is the first 16 bits of the md5 of the key, as carbon's compactHash."""
        # md5("foo") = acbd18db...
        self.assertEqual(position("foo"), 0xacbd)

    def test_replica_keys(self):
        """Nodes are placed by Python's str of the (server, instance) tuple and the replica."""
        ring = ConsistentHashRing([("10.0.0.1", None)], replica_count=3)
        self.assertEqual([p for p, _ in ring.ring],
                         sorted(position("('10.0.0.1', None):%d" % i) for i in range(3)))

    def test_collision_moves_up(self):
        """A taken position is moved up by one, as carbon does."""
        ring = ConsistentHashRing([("a", None)], replica_count=50)
        taken = {p for p, _ in ring.ring}
        ring.add_node(("a", None))
        self.assertEqual(len({p for p, _ in ring.ring}), 100)
        self.assertTrue(taken < {p for p, _ in ring.ring})

    def test_spread(self):
        """Paths spread over every node, each one always to the same node."""
        ring = ConsistentHashRing([("h1", "a"), ("h2", "b"), ("h3", None)])
        got = [ring.get_node("metric.%d" % i) for i in range(3000)]
        self.assertEqual(set(got), {("h1", "a"), ("h2", "b"), ("h3", None)})
        self.assertEqual(got, [ring.get_node("metric.%d" % i) for i in range(3000)])
        self.assertTrue(all(got.count(n) > 500 for n in set(got)))


class BackoffTests(SynchronousTestCase):

    def test_doubles_up_to_the_cap(self):
        """Waits double up to the longest, and start over after a reset."""
        backoff = Backoff(0.5, 3.0)
        self.assertEqual([backoff.next() for _ in range(5)], [0.5, 1.0, 2.0, 3.0, 3.0])
        backoff.reset()
        self.assertEqual(backoff.next(), 0.5)


class SpoolTests(SynchronousTestCase):

    def _spool(self, directory=None, memory=1 << 20, disk=4 << 20, segment=None):
        self.clock = getattr(self, "clock", None) or Clock()
        directory = directory or self.mktemp()
        spool = Spool(directory, memory, disk, self.clock, segment_bytes=segment)
        self.addCleanup(spool.close)
        return spool

    def _drain(self, spool, size=1 << 30):
        out = b""
        while True:
            data = spool.peek(size)
            if not data:
                return out
            spool.mark_sent(len(data))
            out += data

    def test_in_order(self):
        """Lines come out in the order they were queued; lines and bytes are counted."""
        spool = self._spool()
        spool.append(b"a 1 1\n", 1)
        spool.append(b"b 2 1\nc 3 1\n", 2)
        self.assertEqual(spool.queued_lines, 3)
        self.assertEqual(self._drain(spool), b"a 1 1\nb 2 1\nc 3 1\n")
        self.assertEqual(spool.queued_lines, 3)
        spool.confirm(spool.sent)
        self.assertEqual(spool.queued_lines, 0)
        self.assertEqual(spool.held, 0)

    def test_peek_joins_writes(self):
        """One peek takes successive queue writes together, up to its size."""
        spool = self._spool()
        for i in range(3):
            spool.append(b"m%d 1 1\n" % i, 1)
        self.assertEqual(spool.peek(1000), b"m0 1 1\nm1 1 1\nm2 1 1\n")
        self.assertEqual(spool.peek(10), b"m0 1 1\nm1 ")
        self.assertEqual(spool.peek(10, whole_lines=True), b"m0 1 1\n")

    def test_rewind(self):
        """After a rewind what was sent but not confirmed comes again."""
        spool = self._spool()
        spool.append(b"a 1 1\nb 2 1\n", 2)
        spool.mark_sent(6)
        spool.confirm(6)
        spool.mark_sent(6)
        spool.rewind()
        self.assertEqual(self._drain(spool), b"b 2 1\n")

    def test_spill_past_memory(self):
        """Past the memory bound lines stay in the file alone and come back in order."""
        spool = self._spool(memory=100, segment=256)
        batches = [b"".join(b"m%d.%d %d 1\n" % (i, j, j) for j in range(5)) for i in range(40)]
        for batch in batches:
            self.assertTrue(spool.append(batch, 5))
        self.assertLessEqual(spool.held, 100)
        out = b""
        while True:
            data = spool.peek(64)
            if not data:
                break
            spool.mark_sent(len(data))
            spool.confirm(spool.sent)
            self.assertLessEqual(spool.held, 100 + (64 << 10))
            out += data
        self.assertEqual(out, b"".join(batches))
        self.assertEqual(spool.queued_lines, 0)

    def test_disk_bound(self):
        """A batch past the disk bound is refused whole; what was queued stays."""
        spool = self._spool(disk=1024, memory=10)
        self.assertTrue(spool.append(b"x" * 1000 + b"\n", 1))
        self.assertFalse(spool.append(b"y" * 100 + b"\n", 1))
        self.assertEqual(spool.queued_lines, 1)
        self.assertEqual(self._drain(spool), b"x" * 1000 + b"\n")

    def test_restart_resumes_at_committed(self):
        """A new spool on the same directory sends from the committed position on."""
        directory = self.mktemp()
        spool = self._spool(directory)
        spool.append(b"a 1 1\nb 2 1\n", 2)
        spool.mark_sent(6)
        spool.confirm(6)
        spool.commit()
        spool.append(b"c 3 1\n", 1)
        spool.mark_sent(12)
        spool.confirm(12)  # delivered but not committed: sent again
        spool.close()
        again = self._spool(directory)
        self.assertEqual(again.queued_lines, 2)
        self.assertEqual(self._drain(again), b"b 2 1\nc 3 1\n")

    def test_torn_last_line(self):
        """A last line cut by a kill is dropped at the next start."""
        directory = self.mktemp()
        spool = self._spool(directory)
        spool.append(b"a 1 1\n", 1)
        spool.close()
        with open(os.path.join(directory, "seg.%020d" % 0), "ab") as f:
            f.write(b"b 2")
        again = self._spool(directory)
        self.assertEqual(self._drain(again), b"a 1 1\n")
        again.append(b"c 3 1\n", 1)
        self.assertEqual(self._drain(again), b"c 3 1\n")

    def test_segments_deleted(self):
        """Segments wholly delivered and committed are deleted."""
        directory = self.mktemp()
        spool = self._spool(directory, segment=100)
        for i in range(10):
            spool.append(b"%050d\n" % i, 1)
        self.assertGreater(len(spool.segments), 3)
        self._drain(spool)
        spool.confirm(spool.sent)
        spool.commit()
        names = [n for n in os.listdir(directory) if n.startswith("seg.")]
        self.assertEqual(len(names), 1)
        again = self._spool(directory)
        self.assertEqual(again.queued_lines, 0)
        self.assertEqual(again.peek(100), b"")

    def test_bad_position_sends_everything(self):
        """An unreadable position file means the whole file is sent again."""
        directory = self.mktemp()
        spool = self._spool(directory)
        spool.append(b"a 1 1\n", 1)
        spool.mark_sent(6)
        spool.confirm(6)
        spool.commit()
        spool.close()
        with open(os.path.join(directory, "position"), "w") as f:
            f.write("{not json")
        self.assertEqual(self._drain(self._spool(directory)), b"a 1 1\n")

    def test_oldest_age(self):
        """The oldest age is that of the oldest line not delivered."""
        spool = self._spool()
        self.assertIsNone(spool.oldest_age(self.clock.seconds()))
        spool.append(b"a 1 1\n", 1)
        self.clock.advance(10)
        spool.append(b"b 1 1\n", 1)
        self.clock.advance(5)
        self.assertEqual(spool.oldest_age(self.clock.seconds()), 15)
        spool.mark_sent(6)
        spool.confirm(6)
        self.assertEqual(spool.oldest_age(self.clock.seconds()), 5)


class FakeConnector:
    """
    C{connect(factory)}: each call waits for the test to answer it.
    """

    def __init__(self):
        self.attempts = []

    def __call__(self, factory):
        d = defer.Deferred()
        self.attempts.append((factory, d))
        return d

    def succeed(self):
        factory, d = self.attempts[-1]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        d.callback(proto)
        return proto, transport

    def fail(self):
        _, d = self.attempts[-1]
        d.errback(Failure(ConnectionRefusedError("refused")))


class TcpLinkTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.spool = Spool(self.mktemp(), 1 << 20, 4 << 20, self.clock)
        self.addCleanup(self.spool.close)
        self.connector = FakeConnector()
        self.counters = {}
        from collections import Counter
        self.counters = Counter()
        self.link = TcpLink("test", self.spool, self.clock, self.connector, Backoff(1.0, 8.0),
                            2.0, self.counters)

    def test_backoff_until_connected(self):
        """Failed connections are retried after 1, 2, 4, 8, 8 s."""
        self.link.start()
        waits = []
        for _ in range(5):
            self.connector.fail()
            self.assertEqual(self.link.state, "waiting")
            waits.append(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds())
            self.clock.advance(waits[-1])
        self.assertEqual(waits, [1.0, 2.0, 4.0, 8.0, 8.0])
        self.assertEqual(self.counters["simplestats.forward.connect_failures"], 5)
        self.connector.succeed()
        self.assertEqual(self.link.state, "connected")
        self.assertEqual(self.link.backoff.current, 1.0)

    def test_sends_one_chunk_at_a_time(self):
        """Queued lines are written once the transport drained what it had."""
        self.link.start()
        proto, transport = self.connector.succeed()
        self.assertEqual(transport.producer, proto)
        self.assertFalse(transport.streaming)
        self.spool.append(b"a 1 1\n", 1)
        self.link.kick()
        self.assertEqual(transport.value(), b"a 1 1\n")
        self.spool.append(b"b 2 1\n", 1)
        self.link.kick()  # a chunk is in flight: waits for the drain
        self.assertEqual(transport.value(), b"a 1 1\n")
        proto.resumeProducing()
        self.assertEqual(transport.value(), b"a 1 1\nb 2 1\n")

    def test_confirm_after_window(self):
        """Lines count as delivered once in the kernel for the confirm window."""
        self.link.start()
        proto, transport = self.connector.succeed()
        self.spool.append(b"a 1 1\n", 1)
        self.link.kick()
        proto.resumeProducing()  # drained
        self.assertEqual(self.spool.delivered, 0)
        self.clock.advance(2.0)
        self.link.check()
        self.assertEqual(self.spool.delivered, 6)
        self.assertEqual(self.spool.queued_lines, 0)

    def test_loss_resends_unconfirmed(self):
        """After a connection loss the unconfirmed lines are sent again, in order."""
        self.link.start()
        proto, transport = self.connector.succeed()
        self.spool.append(b"a 1 1\n", 1)
        self.link.kick()
        proto.resumeProducing()
        self.clock.advance(2.0)
        self.link.check()
        self.spool.append(b"b 2 1\n", 1)
        self.link.kick()
        proto.resumeProducing()
        proto.connectionLost(Failure(ConnectionResetError("reset")))
        self.assertEqual(self.link.state, "waiting")
        self.clock.advance(1.0)
        proto2, transport2 = self.connector.succeed()
        self.link.kick()
        self.assertEqual(transport2.value(), b"b 2 1\n")
        self.assertEqual(self.counters["simplestats.forward.disconnects"], 1)

    def test_clean_stop_confirms_what_the_kernel_has(self):
        """A stop once everything written has drained counts it as delivered."""
        self.link.start()
        proto, transport = self.connector.succeed()
        self.spool.append(b"a 1 1\n", 1)
        self.link.kick()
        self.spool.append(b"b 2 1\n", 1)
        self.link.kick()
        self.link.stop()  # b is not written yet
        self.assertEqual(self.spool.delivered, 0)
        self.link.start()
        proto, transport = self.connector.succeed()
        self.link.kick()
        proto.resumeProducing()  # a drained, b written
        self.assertEqual(transport.value(), b"a 1 1\nb 2 1\n")
        proto.resumeProducing()  # b drained; nothing more
        self.link.stop()
        self.assertEqual(self.spool.delivered, 12)

    def test_stop(self):
        """Stopping closes the connection and cancels a pending reconnection."""
        self.link.start()
        self.connector.fail()
        self.link.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.link.start()
        proto, transport = self.connector.succeed()
        self.link.stop()
        self.assertTrue(transport.disconnecting)


class FakeUdpPort:
    def __init__(self, fail_after=None):
        self.sent = []
        self.fail_after = fail_after

    def connect(self, host, port):
        self.address = (host, port)

    def write(self, datagram):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            self.fail_after = None
            raise BlockingIOError(11, "Resource temporarily unavailable")
        self.sent.append(datagram)

    def stopListening(self):
        pass


class UdpLinkTests(SynchronousTestCase):

    def test_datagrams_of_whole_lines(self):
        """Datagrams hold whole lines, and all of them, in order."""
        data = b"".join(b"metric.%d %d 1\n" % (i, i) for i in range(500))
        parts = list(datagrams(data, 1400))
        self.assertEqual(b"".join(parts), data)
        self.assertTrue(all(p.endswith(b"\n") and len(p) <= 1400 for p in parts))

    def test_sends_and_retries(self):
        """A full socket buffer makes it wait and go on where it stopped."""
        from collections import Counter
        clock = Clock()
        spool = Spool(self.mktemp(), 1 << 20, 4 << 20, clock)
        self.addCleanup(spool.close)
        port = FakeUdpPort(fail_after=2)
        link = UdpLink("u", spool, clock, lambda proto, v6: port, lambda host: "127.0.0.1",
                       "localhost", 2003, Counter())
        link.start()
        data = b"".join(b"metric.%d %d 1\n" % (i, i) for i in range(500))
        spool.append(data, 500)
        link.kick()
        clock.advance(0)
        self.assertEqual(len(port.sent), 2)
        clock.advance(0.05)
        clock.advance(0)
        self.assertEqual(b"".join(port.sent), data)
        self.assertEqual(spool.queued_lines, 0)


class ForwarderTests(SynchronousTestCase):

    def _forwarder(self, *argv, recovering=lambda: False, settings=None, store=None):
        settings = settings or _settings(self, *argv)
        self.clock = Clock()
        self.clock.advance(T0)
        store = store or _store(settings)
        from collections import Counter
        self.counters = Counter()
        forwarder = Forwarder(settings, store, self.counters, {}, self.clock,
                              os.path.join(settings.data_dir, "forward"), FakeLink, recovering)
        store.observe(forwarder)
        self.addCleanup(lambda: [d.spool.close() for d in forwarder.destinations])
        return settings, store, forwarder

    def _add(self, store, key, kind, value, ts):
        store.add(store.get_or_create(key, kind), value, 1.0, ts, ts)

    def test_each_closed_bucket_once(self):
        """Every closed bucket of the tier is queued once, with its start as timestamp."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003")
        for i in range(3):
            self._add(store, "c", COUNTER, 1.0 + i, T0 + 5 * i + 1)
        store.tick(T0 + 30)
        store.tick(T0 + 31)
        self.clock.advance(0)
        link = forwarder.destinations[0].link
        self.assertGreaterEqual(link.kicks, 1)
        got = _parse(link.drain())
        self.assertEqual(got[("c", int(T0))], [1.0])
        self.assertEqual(got[("c", int(T0) + 5)], [2.0])
        self.assertEqual(got[("c.rate", int(T0) + 10)], [0.6])
        self.assertTrue(all(len(v) == 1 for v in got.values()))
        self.assertEqual(self.counters["simplestats.forward.lines_queued"], 9)

    def test_minute_tier(self):
        """--forward-tier 1m sends the minute buckets only, stamped with their start."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003",
                                                     "--forward-tier", "1m")
        for i in range(12):
            self._add(store, "c", COUNTER, 1.0, T0 + 5 * i)
        store.tick(T0 + 200)
        self.clock.advance(0)
        got = _parse(forwarder.destinations[0].link.drain())
        self.assertEqual(got, {("c", int(T0)): [12.0], ("c.count", int(T0)): [12.0],
                               ("c.rate", int(T0)): [0.2]})

    def test_late_point_sends_merged_value(self):
        """A late point's bucket is sent again with the merged value, as /render shows it."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003",
                                                     "--late-grace", "0")
        self._add(store, "c", COUNTER, 1.0, T0 + 1)
        store.tick(T0 + 10)
        self._add(store, "c", COUNTER, 2.0, T0 + 2)  # late: its bucket closed
        store.tick(T0 + 11)
        self.clock.advance(0)
        got = _parse(forwarder.destinations[0].link.drain())
        self.assertEqual(got[("c", int(T0))], [1.0, 3.0])

    def test_all_mode(self):
        """In all mode every destination gets every line."""
        settings, store, forwarder = self._forwarder(
            "--forward", "carbon://10.0.0.1:2003", "--forward", "carbon://10.0.0.2:2003")
        self._add(store, "g", GAUGE, 4.0, T0)
        store.tick(T0 + 30)
        self.clock.advance(0)
        a, b = [d.link.drain() for d in forwarder.destinations]
        self.assertEqual(a, b)
        self.assertIn(b"g.last 4.0 ", a)

    def test_hash_mode(self):
        """In hash mode each path goes to the one destination carbon's ring names."""
        settings, store, forwarder = self._forwarder(
            "--forward", "carbon://10.0.0.1:2003?instance=a",
            "--forward", "carbon://10.0.0.2:2004?instance=b", "--forward-mode", "hash")
        for i in range(200):
            self._add(store, "m%d" % i, COUNTER, 1.0, T0)
        store.tick(T0 + 30)
        self.clock.advance(0)
        ring = ConsistentHashRing([("10.0.0.1", "a"), ("10.0.0.2", "b")])
        seen = 0
        for destination in forwarder.destinations:
            node = (destination.spec.host, destination.spec.instance)
            for path in _parse(destination.link.drain()):
                self.assertEqual(ring.get_node(path[0]), node)
                seen += 1
        self.assertEqual(seen, 600)

    def test_disk_bound_counted(self):
        """Lines past the disk bound are dropped and counted."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003",
                                                     "--forward-disk-bytes", "1048576")
        for i in range(20000):
            self._add(store, "a.very.long.metric.name.number.%06d" % i, COUNTER, 1.0, T0)
        store.tick(T0 + 30)
        self.clock.advance(0)
        destination = forwarder.destinations[0]
        self.assertGreater(destination.dropped_lines, 0)
        self.assertEqual(self.counters["simplestats.forward.dropped_lines"],
                         destination.dropped_lines)
        self.assertEqual(destination.dropped_lines + destination.spool.queued_lines, 60000)
        self.assertLessEqual(destination.spool.disk_bytes, 1048576)

    def test_recovery_skips_what_was_queued(self):
        """After a restart, buckets recovery closes again are not queued twice."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003")
        self._add(store, "c", COUNTER, 1.0, T0 + 1)
        self._add(store, "c", COUNTER, 1.0, T0 + 6)
        store.tick(T0 + 14)  # closes T0 only (late grace 5 s)
        self.clock.advance(0)
        with open(os.path.join(settings.data_dir, "forward", CLOSED)) as f:
            self.assertEqual(json.load(f)["done"], T0 + 5)
        first = forwarder.destinations[0].link.drain()
        forwarder.destinations[0].spool.commit()
        # A restart: the same points (as a replay gives them) on a new store.
        store2 = _store(settings)
        recovering = [True]
        _, _, forwarder2 = self._forwarder(settings=settings, store=store2,
                                           recovering=lambda: recovering[0])
        self._add(store2, "c", COUNTER, 1.0, T0 + 1)
        self._add(store2, "c", COUNTER, 1.0, T0 + 6)
        store2.tick(T0 + 40)
        recovering[0] = False
        self.clock.advance(0)
        again = _parse(forwarder2.destinations[0].link.drain())
        self.assertEqual(set(t for _, t in again), {int(T0) + 5})
        self.assertIn(("c", int(T0)), _parse(first))
        self.assertEqual(self.counters["simplestats.forward.replayed_buckets_skipped"], 1)

    def test_recovery_resends_reclosed_late_bucket(self):
        """A bucket the snapshot had closed, reopened by a replayed late point, goes again."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003",
                                                     "--late-grace", "0")
        self._add(store, "c", COUNTER, 1.0, T0 + 1)
        store.tick(T0 + 10)
        self.clock.advance(0)
        forwarder.destinations[0].link.drain()
        forwarder.destinations[0].spool.commit()
        # Restart from a "snapshot" holding the closed row; the late point replays.
        _, _, forwarder2 = self._forwarder(settings=settings, store=store,
                                           recovering=lambda: True)
        store.unobserve(forwarder)
        self._add(store, "c", COUNTER, 2.0, T0 + 2)
        store.tick(T0 + 11)
        self.clock.advance(0)
        self.assertEqual(_parse(forwarder2.destinations[0].link.drain())[("c", int(T0))],
                         [3.0])

    def test_late_point_lowers_the_record(self):
        """A late point reopening a closed bucket lowers closed.json at the next check."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003",
                                                     "--late-grace", "0")
        self._add(store, "c", COUNTER, 1.0, T0 + 1)
        self._add(store, "c", COUNTER, 1.0, T0 + 6)
        store.tick(T0 + 20)
        self.clock.advance(0)
        path = os.path.join(settings.data_dir, "forward", CLOSED)
        with open(path) as f:
            self.assertEqual(json.load(f)["done"], T0 + 20)
        self._add(store, "c", COUNTER, 1.0, T0 + 2)  # late: reopens T0
        forwarder.check()
        with open(path) as f:
            self.assertEqual(json.load(f)["done"], T0)

    def test_status(self):
        """The status names each destination with its queue and state."""
        settings, store, forwarder = self._forwarder("--forward", "carbon://127.0.0.1:2003")
        self._add(store, "c", COUNTER, 1.0, T0)
        store.tick(T0 + 30)
        self.clock.advance(0)
        self.clock.advance(3)
        status = forwarder.status()
        (one,) = status["destinations"]
        self.assertEqual(one["destination"], "carbon://127.0.0.1:2003")
        self.assertEqual(one["queued_lines"], 3)
        self.assertEqual(one["oldest_queued_seconds"], 3)
        self.assertTrue(one["connected"])
        self.assertEqual(status["tier"], 5)

    def test_slug(self):
        """Destination names are Graphite nodes and file names."""
        settings = _settings(self, "--forward", "carbon+udp://[::1]:2003?instance=x")
        self.assertEqual(destination_slug(settings.forward[0]), "udp___1_2003_x")


class ServiceTests(SynchronousTestCase):

    def test_commits_positions(self):
        """The service's timer writes the delivered position; stop commits the rest."""
        settings = _settings(self, "--forward", "carbon://127.0.0.1:2003")
        clock = Clock()
        clock.advance(T0)
        store = _store(settings)
        from collections import Counter
        forwarder = Forwarder(settings, store, Counter(), {}, clock,
                              os.path.join(settings.data_dir, "forward"), FakeLink)
        store.observe(forwarder)
        service = ForwardService(forwarder, clock, synchronous)
        service.startService()
        store.add(store.get_or_create("c", COUNTER), 1.0, 1.0, T0, T0)
        store.tick(T0 + 30)
        clock.advance(0)
        forwarder.destinations[0].link.drain()
        clock.advance(1.0)
        position = os.path.join(forwarder.destinations[0].spool.directory, "position")
        with open(position) as f:
            self.assertGreater(json.load(f)["delivered"], 0)
        service.stopService()
        self.assertTrue(forwarder.destinations[0].link.stopped)

    def test_stop_waits_for_a_commit_under_way(self):
        """A stop during a position write in a thread writes the last one after it."""
        settings = _settings(self, "--forward", "carbon://127.0.0.1:2003")
        clock = Clock()
        clock.advance(T0)
        store = _store(settings)
        from collections import Counter
        forwarder = Forwarder(settings, store, Counter(), {}, clock,
                              os.path.join(settings.data_dir, "forward"), FakeLink)
        store.observe(forwarder)
        pending = []

        def later(f, *args):
            d = defer.Deferred()
            pending.append((d, f))
            return d
        service = ForwardService(forwarder, clock, later)
        service.startService()
        store.add(store.get_or_create("c", COUNTER), 1.0, 1.0, T0, T0)
        store.tick(T0 + 30)
        clock.advance(0)
        link = forwarder.destinations[0].link
        link.drain()
        clock.advance(1.0)
        self.assertEqual(len(pending), 1)
        stopped = service.stopService()
        self.assertFalse(link.stopped)
        d, f = pending.pop()
        d.callback(f())
        self.successResultOf(stopped)
        self.assertTrue(link.stopped)

    def test_check_failure_goes_on(self):
        """A failing check is counted and the timer runs again."""
        settings = _settings(self, "--forward", "carbon://127.0.0.1:2003")
        clock = Clock()
        from collections import Counter
        counters = Counter()
        forwarder = Forwarder(settings, _store(settings), counters, {}, clock,
                              os.path.join(settings.data_dir, "forward"), FakeLink)
        self.addCleanup(lambda: [d.spool.close() for d in forwarder.destinations])
        calls = []

        def broken():
            calls.append(1)
            raise RuntimeError("boom")
        forwarder.check = broken
        service = ForwardService(forwarder, clock, synchronous)
        service.startService()
        clock.advance(0.5)
        clock.advance(0.5)
        self.assertEqual(len(calls), 2)
        self.assertEqual(counters["simplestats.errors.forward"], 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        service.loop.stop()


class SettingsTests(SynchronousTestCase):

    def test_twist_repeats_forward(self):
        """Under twist --forward repeats too, and a bad one is a usage error."""
        from twisted.plugins.simplestats_plugin import Options
        from twisted.python.usage import UsageError

        options = Options()
        options.parseOptions(["--forward", "carbon://a:1", "--forward", "carbon://b:2",
                              "--data-dir", self.mktemp()])
        self.assertEqual([str(d) for d in options.settings.forward],
                         ["carbon://a:1", "carbon://b:2"])
        self.assertRaises(UsageError, Options().parseOptions, ["--forward", "x"])

    def test_forward_flags(self):
        """--forward repeats; each value and its companions are checked."""
        settings = load(["--forward", "carbon://a:2003", "--forward",
                         "carbon+udp://b:2003?instance=x"])
        self.assertEqual([str(d) for d in settings.forward],
                         ["carbon://a:2003", "carbon+udp://b:2003?instance=x"])
        env = load([], {"SIMPLESTATS_FORWARD": "carbon://a:1,carbon://b:2"})
        self.assertEqual(len(env.forward), 2)
        for argv, words in (
            (["--forward", "http://a:1"], "carbon://HOST:PORT"),
            (["--forward", "carbon://a:0"], "port"),
            (["--forward", "carbon://a:1", "--forward", "carbon://a:1"], "twice"),
            (["--forward", "carbon://a:1", "--forward-tier", "10s"], "not the step"),
            (["--forward-prefix", "a..b"], "--forward-prefix"),
            (["--forward-names", "graphite"], "paths, statsd, both"),
            (["--forward-mode", "ring"], "all, hash"),
            (["--forward-replicas", "0"], "--forward-replicas"),
            (["--forward-reconnect-min", "5", "--forward-reconnect-max", "1"], "shorter"),
            (["--forward-disk-bytes", "1000"], "1 MiB"),
        ):
            e = self.assertRaises(SettingsError, load, argv)
            self.assertIn(words, str(e))


class WiringTests(SynchronousTestCase):

    def test_make_service_forwards_and_reports(self):
        """makeService wires a forwarder on the store, a service, and /api/health's forward key."""
        from treq.testing import StubTreq
        from twisted.internet.testing import MemoryReactorClock

        from server.service import makeService
        from server.test.support import synchronous as in_thread

        settings = _settings(self, "--forward", "carbon://127.0.0.1:2003",
                             "--forward-names", "statsd")
        top = makeService(settings, MemoryReactorClock(), run_in_thread=in_thread)
        self.addCleanup(top.core.journal.close)
        self.addCleanup(top.getServiceNamed("persistence").lock.release)
        self.addCleanup(lambda: [d.spool.close() for d in top.forwarder.destinations])
        self.assertIn(top.forwarder, top.store.observers)
        self.assertIs(top.getServiceNamed("forward").forwarder, top.forwarder)
        stub = StubTreq(top.site.resource)
        response = self.successResultOf(stub.get("http://127.0.0.1/api/health"))
        body = json.loads(self.successResultOf(stub.content(response)))
        self.assertEqual(body["forward"]["names"], "statsd")
        (one,) = body["forward"]["destinations"]
        self.assertEqual(one["destination"], "carbon://127.0.0.1:2003")
        for name in os.listdir(os.path.join(settings.data_dir, "forward")):
            path = os.path.join(settings.data_dir, "forward", name)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o700)

    def test_no_forward_key_without_forwarding(self):
        """Without --forward there is no forwarder and health says forward: null."""
        from treq.testing import StubTreq
        from twisted.internet.testing import MemoryReactorClock

        from server.service import makeService
        from server.test.support import synchronous as in_thread

        settings = _settings(self)
        top = makeService(settings, MemoryReactorClock(), run_in_thread=in_thread)
        self.addCleanup(top.core.journal.close)
        self.addCleanup(top.getServiceNamed("persistence").lock.release)
        self.assertIsNone(top.forwarder)
        stub = StubTreq(top.site.resource)
        response = self.successResultOf(stub.get("http://127.0.0.1/api/health"))
        self.assertIsNone(json.loads(self.successResultOf(stub.content(response)))["forward"])
