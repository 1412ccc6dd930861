"""
Graphite plaintext: the pure parser (tables of lines), the TCP line protocol
on a StringTransport and the UDP protocol on a fake datagram transport.
"""

import os

from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import GAUGE, SAMPLE, Limits, ParseError, Sample
from server.receivers.carbon import CarbonDatagramProtocol, CarbonFactory
from server.receivers.parse_carbon import parse_carbon_line, parse_carbon_packet
from server.receivers.tcp import MAX_HELD_READS, TupleFactory
from server.settings import SettingsError, load
from server.test.support import T0, make_core, replayed

LIMITS = Limits(max_tags=3, max_name_length=20)
PEER = ("127.0.0.1", 40000)

GOOD = [
    (b"cpu.load 0.5 1795392000", Sample("cpu.load", (), SAMPLE, 0.5, 1795392000.0)),
    (b"cpu.load 0.5 1795392000.25", Sample("cpu.load", (), SAMPLE, 0.5, 1795392000.25)),
    (b"cpu.load -3e2 -1", Sample("cpu.load", (), SAMPLE, -300.0, None)),
    (b"cpu.load 7", Sample("cpu.load", (), SAMPLE, 7.0, None)),
    (b"  cpu.load\t7 \t 1795392000 \r", Sample("cpu.load", (), SAMPLE, 7.0, 1795392000.0)),
    (b"disk;host=web1;dc=eu-1 12 -1",
     Sample("disk", (("dc", "eu-1"), ("host", "web1")), SAMPLE, 12.0, None)),
    (b"disk;path=/var/lib 1 5", Sample("disk", (("path", "/var/lib"),), SAMPLE, 1.0, 5.0)),
    (b"x +4 1", Sample("x", (), SAMPLE, 4.0, 1.0)),
]

BAD = [
    (b"cpu.load", "expected 'name value [timestamp]' separated by spaces, got 1 field"),
    (b"", "got 0 fields"),
    (b"cpu.load 1 2 3", "got 4 fields"),
    (b"cpu load 1 2", "got 4 fields"),
    (b"cpu.load abc 1", 'value must be a number, got "abc"'),
    (b"cpu.load 1,5 1", 'value must be a number, got "1,5"'),
    (b"cpu.load nan 1", "value nan is not allowed: it must be a finite number"),
    (b"cpu.load -inf 1", "value -inf is not allowed"),
    (b"cpu.load 1 NaN", "timestamp NaN is not allowed"),
    (b"cpu.load 1 1e400", "timestamp 1e400 is not allowed"),
    (b"cpu.load 1 now", 'timestamp must be a number, got "now"'),
    (b"cpu.load 1 1_000", 'timestamp must be a number, got "1_000"'),
    (b"cpu\xff 1 1", "line is not valid UTF-8 (bad byte at position 3)"),
    (b"cpu:load 1 1", "name must be 1 to 20 characters"),
    (b"a" * 21 + b" 1 1", "name must be 1 to 20 characters"),
    (b";host=a 1 1", 'no metric name before the tags: ";host=a"'),
    (b"cpu;host 1 1", 'tag "host" is not tag=value'),
    (b"cpu;=a 1 1", 'tag "=a" is not tag=value'),
    (b"cpu; 1 1", 'tag "" is not tag=value'),
    (b"cpu;host=a; 1 1", 'tag "" is not tag=value'),
    (b"cpu;host= 1 1", "tag host has an empty value"),
    (b"cpu;host=~a 1 1", "tag host: a value may not start with '~'"),
    (b"cpu;host=a;host=b 1 1", "tag host is given twice"),
    (b"cpu;name=x 1 1", "tag key 'name' is reserved"),
    (b"cpu;ho!st=a 1 1", "tag key must be 1 to 100 characters"),
    (b"cpu;host=a=b 1 1", "tag host: value must be at most 100 characters"),
    (b"cpu;host=a^b 1 1", "tag host: value must be at most 100 characters"),
    (b"cpu;a=1;b=2;c=3;d=4 1 1", "4 tags is more than the limit of 3"),
]


def totals(store, key):
    """
    C{(count, sum)} of the open finest buckets of series C{key} ((0, 0)
    when there is no such series).
    """
    store.settle()
    series = store.series.get(key)
    if series is None:
        return 0, 0.0
    aggs = list(series.open[0].values())
    return sum(a.count for a in aggs), sum(a.sum for a in aggs)


class ParseCarbonLineTests(SynchronousTestCase):
    def test_good_lines(self):
        """Each accepted form gives the sample it means (tags sorted, -1 and no timestamp = now)."""
        for line, expected in GOOD:
            self.assertEqual(parse_carbon_line(line, LIMITS), expected, line)

    def test_bad_lines(self):
        """Each malformed line is refused with a message naming what is wrong."""
        for line, message in BAD:
            with self.assertRaises(ParseError, msg=line) as caught:
                parse_carbon_line(line, LIMITS)
            self.assertIn(message, str(caught.exception), line)

    def test_gauge_values(self):
        """With gauge values, a plaintext value becomes an absolute gauge."""
        sample = parse_carbon_line(b"temp -4 10", LIMITS, GAUGE)
        self.assertEqual(sample, Sample("temp", (), GAUGE, -4.0, 10.0))
        self.assertFalse(sample.delta)

    def test_packet_keeps_good_lines(self):
        """A datagram's good lines are kept and its bad ones numbered; blank lines are skipped."""
        samples, bad = parse_carbon_packet(b"a 1 5\n\nb 2\r\nc x 5\na;k=v 3 -1\n", LIMITS)
        self.assertEqual(samples, [Sample("a", (), SAMPLE, 1.0, 5.0),
                                   Sample("b", (), SAMPLE, 2.0, None),
                                   Sample("a", (("k", "v"),), SAMPLE, 3.0, None)])
        self.assertEqual(bad, [(4, 'value must be a number, got "x"')])


class CarbonSettingsTests(SynchronousTestCase):
    def test_defaults(self):
        """Port 2003 on TCP and UDP, on loopback, values as samples."""
        settings = load([])
        self.assertEqual((settings.carbon_port, settings.carbon_udp_port), (2003, 2003))
        self.assertEqual(settings.carbon_interface, "127.0.0.1")
        self.assertEqual(settings.carbon_values, "sample")

    def test_bad_values_setting(self):
        """An unknown --carbon-values is refused, naming the flag."""
        with self.assertRaises(SettingsError) as caught:
            load(["--carbon-values", "counter"])
        self.assertIn("--carbon-values: must be sample or gauge", str(caught.exception))
        self.assertEqual(load(["--carbon-values", "gauge"]).carbon_values, "gauge")


class _Recorder:
    """
    A logger stand-in that keeps what it is told.
    """

    def __init__(self):
        self.events = []

    def warn(self, fmt, **fields):
        self.events.append(fmt.format(**fields))


class _Recovery:
    """
    Start-up recovery that holds ingest until L{open} is called.
    """

    def __init__(self):
        self.holding = True
        self.waiting = []

    def when_open(self, f):
        self.waiting.append(f)

    def open(self):
        self.holding = False
        for f in self.waiting:
            f()


class CarbonLineProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.core = make_core(self, "--carbon-max-line-length", "40", "--max-connections", "3",
                              "--tcp-idle-timeout", "30")
        self.factory = CarbonFactory(self.core, self.core.settings, self.core.clock)
        self.log = _Recorder()
        self.factory.bad_log.logger = self.log
        self.proto, self.transport = self.connect()

    def connect(self, factory=None):
        proto = (factory or self.factory).buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def count(self, key):
        return totals(self.core.store, key)[0]

    def test_lines_are_stored_and_nothing_is_answered(self):
        """Good lines of one read are stored with their tags; the client gets no bytes back."""
        self.proto.dataReceived(b"a.b 1 %d\na.b 3 -1\nc;h=w1 2\n" % T0)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.count("a.b"), 2)
        self.assertEqual(self.count("c;h=w1"), 1)
        self.assertEqual(self.core.store.series["a.b"].type, SAMPLE)
        self.assertEqual(self.core.counters["simplestats.carbon.points"], 3)
        self.assertEqual(self.core.counters["simplestats.carbon.lines"], 3)

    def test_bad_line_is_counted_and_logged_and_the_connection_goes_on(self):
        """A bad line is counted and logged; the lines around it are kept and the connection stays."""
        self.proto.dataReceived(b"a 1\na nan\na 2\n")
        self.proto.dataReceived(b"a 3\n")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.count("a"), 3)
        self.assertEqual(self.core.counters["simplestats.carbon.bad"], 1)
        self.assertEqual(len(self.log.events), 1)
        self.assertIn("value nan is not allowed", self.log.events[0])

    def test_refused_point_is_counted_bad(self):
        """A point the core refuses (too far in the future) counts as bad and is logged."""
        self.proto.dataReceived(b"a 1 %d\na 2\n" % (T0 + 86400))
        self.assertEqual(self.count("a"), 1)
        self.assertEqual(self.core.counters["simplestats.carbon.bad"], 1)
        self.assertIn("in the future", self.log.events[0])

    def test_line_split_over_reads(self):
        """A line cut between two reads is taken once whole."""
        self.proto.dataReceived(b"a 1")
        self.assertEqual(self.count("a"), 0)
        self.proto.dataReceived(b"5 %d\n" % T0)
        self.assertEqual(totals(self.core.store, "a"), (1, 15.0))

    def test_over_long_line_is_skipped_not_fatal(self):
        """An over-long line is dropped and counted, in one read or over several; the next lines count."""
        self.proto.dataReceived(b"a 1\n" + b"x" * 50 + b" 1\na 2\n")
        self.proto.dataReceived(b"y" * 30)
        self.proto.dataReceived(b"y" * 30)
        self.proto.dataReceived(b"y" * 30 + b" 7\na 3\n")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.count("a"), 3)
        self.assertEqual(self.core.counters["simplestats.carbon.too_long"], 2)
        self.assertEqual(self.core.counters["simplestats.carbon.bad"], 2)
        self.assertNotIn("y" * 30, self.core.store.series)

    def test_journaled_before_counted_and_replayed_alike(self):
        """The points are in the journal once the read is handled, and its replay gives the same store."""
        self.proto.dataReceived(b"a;k=v 1.5 %d\nb 2 -1\n" % T0)
        self.assertEqual(self.core.journal.pending, [])
        path = os.path.join(self.core.settings.data_dir, "journal.000001.log")
        with open(path, "rb") as f:
            self.assertIn(b"a;k=v", f.read())
        fresh = replayed(self, self.core)
        self.assertEqual(sorted(fresh.store.series), ["a;k=v", "b"])
        for key in ("a;k=v", "b"):
            self.assertEqual(totals(fresh.store, key), totals(self.core.store, key))
        self.assertEqual(totals(fresh.store, "a;k=v"), (1, 1.5))

    def test_reading_pauses_while_the_journal_is_behind(self):
        """Reads whose journal writes pile up stop the reading; it goes on at half."""
        pending = []

        def slow():
            d = defer.Deferred()
            pending.append(d)
            return d
        self.core.durable = slow
        for i in range(MAX_HELD_READS + 1):
            self.proto.dataReceived(b"a %d\n" % (i,))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.core.counters["simplestats.carbon.paused_for_journal"], 1)
        for d in pending[:MAX_HELD_READS // 2]:
            d.callback(None)
        self.assertEqual(self.transport.producerState, "paused")
        pending[MAX_HELD_READS // 2].callback(None)
        self.assertEqual(self.transport.producerState, "producing")

    def test_journal_failure_is_counted(self):
        """A failed journal write is counted and logged; the connection goes on."""
        self.core.durable = lambda: defer.fail(OSError(28, "No space left on device"))
        self.proto.dataReceived(b"a 1\n")
        self.assertEqual(self.core.counters["simplestats.journal.errors"], 1)
        self.assertIn("No space left on device", self.log.events[0])
        self.assertFalse(self.transport.disconnecting)

    def test_waits_for_recovery(self):
        """While start-up recovers, a new connection is not read; it is once recovery opens."""
        recovery = _Recovery()
        factory = CarbonFactory(self.core, self.core.settings, self.core.clock, recovery)
        _, transport = self.connect(factory)
        self.assertEqual(transport.producerState, "paused")
        recovery.open()
        self.assertEqual(transport.producerState, "producing")

    def test_connection_cap_counts_tuple_connections(self):
        """--max-connections counts the connections of both TCP line ports; one refused is closed."""
        tuples = TupleFactory(self.core, self.core.settings, self.core.clock)
        factory = CarbonFactory(self.core, self.core.settings, self.core.clock,
                                others=tuples.connections)
        tuples.others = factory.connections
        factory.bad_log.logger = self.log
        for _ in range(2):
            proto = tuples.buildProtocol(None)
            proto.makeConnection(StringTransport())
        _, first = self.connect(factory)
        self.assertFalse(first.disconnecting)
        _, second = self.connect(factory)
        self.assertTrue(second.disconnecting)
        self.assertEqual(self.core.counters["simplestats.carbon.refused_connections"], 1)
        self.assertEqual(self.core.gauges["simplestats.carbon.open_connections"], 1.0)
        # And the tuple port counts the Graphite connection.
        third = StringTransport()
        tuples.buildProtocol(None).makeConnection(third)
        self.assertTrue(third.disconnecting)
        self.assertIn(b"too many connections (limit 3)", third.value())

    def test_idle_connection_is_closed(self):
        """A connection with no complete line for --tcp-idle-timeout seconds is closed."""
        self.core.clock.advance(20)
        self.proto.dataReceived(b"a 1\n")
        self.core.clock.advance(20)
        self.assertFalse(self.transport.disconnecting)
        self.proto.dataReceived(b"a 1")  # a part of a line does not count
        self.core.clock.advance(11)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.core.counters["simplestats.carbon.idle_timeouts"], 1)

    def test_line_cut_by_the_close_is_dropped_and_counted(self):
        """A line the connection closes in the middle of is not stored: it is counted bad."""
        self.proto.dataReceived(b"a 1\na 12")
        self.proto.connectionLost(None)
        self.assertEqual(self.count("a"), 1)
        self.assertEqual(self.core.counters["simplestats.carbon.bad"], 1)
        self.assertIn("closed in the middle of a line", self.log.events[0])

    def test_gauge_setting(self):
        """With --carbon-values gauge a series keeps the last value."""
        core = make_core(self, "--carbon-values", "gauge")
        factory = CarbonFactory(core, core.settings, core.clock)
        proto, _ = self.connect(factory)
        proto.dataReceived(b"t 5\nt 3\n")
        core.store.settle()
        self.assertEqual(core.store.series["t"].type, GAUGE)
        self.assertEqual(core.store.series["t"].value, 3.0)

    def test_bad_lines_are_logged_at_a_bounded_rate(self):
        """A flood of bad lines is counted in full but logged only a few times a minute."""
        self.factory.bad_log.logger = log = _Recorder()
        self.proto.dataReceived(b"bad\n" * 500)
        self.assertEqual(self.core.counters["simplestats.carbon.bad"], 500)
        self.assertEqual(len(log.events), self.factory.bad_log.burst)


class _DatagramTransport:
    """
    A UDP port stand-in that records whether it reads.
    """

    def __init__(self):
        self.reading = True

    def stopReading(self):
        self.reading = False

    def startReading(self):
        self.reading = True


class CarbonDatagramTests(SynchronousTestCase):
    def setUp(self):
        self.core = make_core(self, "--max-packet-size", "100")
        self.proto = CarbonDatagramProtocol(self.core, self.core.settings, self.core.clock)
        self.proto.transport = _DatagramTransport()
        self.log = _Recorder()
        self.proto.bad_log.logger = self.log

    def test_several_lines_per_datagram(self):
        """Every line of a datagram is taken, tags included; a bad one is counted and logged."""
        self.proto.datagramReceived(b"a 1 -1\nb;dc=eu 2\nc x\na 3\n", PEER)
        self.assertEqual(totals(self.core.store, "a"), (2, 4.0))
        self.assertEqual(totals(self.core.store, "b;dc=eu"), (1, 2.0))
        self.assertEqual(self.core.counters["simplestats.carbon.bad"], 1)
        self.assertEqual(self.core.counters["simplestats.carbon.points"], 3)
        self.assertIn("bad Graphite line 3 from 127.0.0.1:40000", self.log.events[0])

    def test_too_large_datagram_is_dropped(self):
        """A datagram larger than --max-packet-size is dropped whole and counted."""
        self.proto.datagramReceived(b"a 1\n" * 26, PEER)
        self.assertNotIn("a", self.core.store.series)
        self.assertEqual(self.core.counters["simplestats.carbon.too_large"], 1)

    def test_held_while_recovering_then_applied_at_arrival_time(self):
        """While recovering the port stops reading; what was read is applied after, at its arrival time."""
        recovery = _Recovery()
        self.proto.recovery = recovery
        self.proto.datagramReceived(b"a 1\n", PEER)
        self.assertFalse(self.proto.transport.reading)
        self.core.clock.advance(30)
        self.proto.datagramReceived(b"a 2\n", PEER)
        self.assertNotIn("a", self.core.store.series)
        recovery.open()
        self.assertTrue(self.proto.transport.reading)
        self.assertEqual(totals(self.core.store, "a"), (2, 3.0))
        series = self.core.store.series["a"]
        self.assertEqual((series.first_seen, series.last_seen), (T0, T0 + 30))
