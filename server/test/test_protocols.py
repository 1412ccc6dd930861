"""
The TCP tuple protocol and the statsd UDP protocol, on fake transports.
"""

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from server.receivers.statsd import StatsdProtocol
from server.receivers.tcp import HINT, TupleFactory
from server.test.support import T0, make_core

PEER = ("127.0.0.1", 40000)


class TupleProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.core = make_core(self, "--max-line-length", "200", "--max-connections", "2")
        self.factory = TupleFactory(self.core, self.core.settings, self.core.clock)
        self.proto, self.transport = self.connect()

    def connect(self):
        proto = self.factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def send(self, data):
        self.transport.clear()
        self.proto.dataReceived(data)
        return self.transport.value()

    def test_greets_with_the_original_hint(self):
        """A new connection gets exactly the original SimpleStats hint line."""
        self.assertEqual(self.transport.value(),
                         b"--Hint: send data of the form [name:str, timestamp:float, data:float]\r\n")
        self.assertEqual(HINT, b"--Hint: send data of the form [name:str, timestamp:float, data:float]")

    def test_every_line_answered_in_order(self):
        """Good and bad lines in one read get one answer each, in order."""
        out = self.send(b'["a", %d, 1]\n["a", "x", 1]\r\n["b", null, "3c"]\n' % T0)
        self.assertEqual(out.split(b"\r\n")[:-1], [
            b"--OK",
            b'--ERROR timestamp must be a number (or null for now) or an ISO 8601 time such as'
            b' 2026-12-02T21:00:00Z, got "x"',
            b"--OK",
        ])
        self.assertIn("a", self.core.store.series)
        self.core.store.settle()
        self.assertEqual(self.core.store.series["b"].value, 3.0)

    def test_ok_only_after_journal_write(self):
        """The journal holds the point by the time --OK is written."""
        self.send(b'["a", %d, 1]\n' % T0)
        self.assertEqual(self.core.journal.pending, [])
        path = os.path.join(self.core.settings.data_dir, "journal.000001.log")
        with open(path, "rb") as f:
            self.assertIn(b'"a"', f.read())

    def test_journal_failure_is_not_acknowledged(self):
        """When the journal write fails the client gets an error, not --OK."""
        def broken():
            return defer.fail(OSError(28, "No space left on device"))
        self.core.durable = broken
        out = self.send(b'["a", %d, 1]\n' % T0)
        self.assertTrue(out.startswith(b"--ERROR journal write failed"), out)

    def test_batch_all_or_nothing(self):
        """A batch is answered --OK n, or refused whole naming the bad item."""
        self.assertEqual(self.send(b'[["a", null, 1], ["a", null, 2]]\n'), b"--OK 2\r\n")
        out = self.send(b'[["b", null, 1], ["b", null, "1c"]]\n')
        self.assertTrue(out.startswith(b"--ERROR item 2: series 'b' is a sample"), out)
        self.assertNotIn("b", self.core.store.series)

    def test_time_range_errors(self):
        """A point too far in the future is refused with the limit named."""
        out = self.send(b'["a", %d, 1]\n' % (T0 + 86400))
        self.assertIn(b"in the future (limit 600 s)", out)

    def test_quiet_and_verbose(self):
        """--quiet answers errors only; --verbose turns answers back on."""
        self.assertEqual(self.send(b"--quiet\n"), b"")
        self.assertEqual(self.send(b'["a", null, 1]\n'), b"")
        self.assertTrue(self.send(b'["a", null]\n').startswith(b"--ERROR"))
        self.assertEqual(self.send(b"--verbose\n"), b"--OK\r\n")
        self.assertEqual(self.send(b'["a", null, 1]\n'), b"--OK\r\n")

    def test_help_and_unknown_command(self):
        """--help lists the forms; an unknown command is an error."""
        self.assertTrue(self.send(b"--help\n").startswith(b"--HELP "))
        self.assertEqual(self.send(b"--nope\n"),
                         b"--ERROR unknown command --nope; commands: --help, --quiet, --verbose\r\n")

    def test_over_long_line_closes(self):
        """An over-long line gets an error and the connection is closed."""
        out = self.send(b'["a", null, 1]\n' + b"x" * 300)
        self.assertEqual(out, b"--OK\r\n--ERROR line longer than 200 bytes; closing the connection\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.core.counters["simplestats.tcp.too_long"], 1)

    def test_closing_lets_go_of_the_producer(self):
        """A closing connection unregisters itself as producer: a transport paused on a full buffer closes once drained rather than resuming it."""
        self.assertIs(self.transport.producer, self.proto)
        self.send(b"x" * 300)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.proto.readConnectionLost()
        self.assertIsNone(self.transport.producer)

    def test_connection_limit(self):
        """Connections beyond the limit are told why and closed."""
        self.connect()
        proto, transport = self.connect()
        self.assertEqual(transport.value(), b"--ERROR too many connections (limit 2); try later\r\n")
        self.assertTrue(transport.disconnecting)

    def test_pauses_reading_while_client_does_not_read(self):
        """The protocol produces for its transport: a full buffer pauses reading."""
        self.assertIs(self.transport.producer, self.proto)
        self.proto.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.proto.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")


class StatsdProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.core = make_core(self)
        self.proto = StatsdProtocol(self.core, self.core.settings.limits, self.core.clock)

    def test_good_metrics_of_a_bad_packet_are_kept(self):
        """Bad lines are counted and dropped; the packet's good lines stay."""
        self.proto.datagramReceived(b"a:1|c\nb:x|c\nc:2|ms\n:3|c\nd:1|zz\ne:\xff|c", PEER)
        self.assertEqual(sorted(self.core.store.series), ["a", "c"])
        self.assertEqual(self.core.counters["simplestats.udp.bad"], 4)
        self.assertEqual(self.core.counters["simplestats.udp.points"], 2)
        self.assertEqual(self.core.counters["simplestats.udp.packets"], 1)

    def test_sample_rate_scales_counters(self):
        """A counter sampled at 0.1 counts ten times its value."""
        self.proto.datagramReceived(b"a:1|c|@0.1", PEER)
        self.core.store.settle()
        self.assertEqual(self.core.store.series["a"].value, 10.0)

    def test_gauge_deltas(self):
        """+N and -N move a gauge from its current value."""
        self.proto.datagramReceived(b"g:10|g\ng:+5|g\ng:-3|g", PEER)
        self.core.store.settle()
        self.assertEqual(self.core.store.series["g"].gauge, 12.0)

    def test_type_conflict_counted(self):
        """A metric of another type than its series is refused and counted."""
        self.proto.datagramReceived(b"a:1|c", PEER)
        self.proto.datagramReceived(b"a:1|ms", PEER)
        self.assertEqual(self.core.counters["simplestats.udp.bad"], 1)

    def test_udp_journal_is_buffered_until_flush(self):
        """UDP points wait in memory for the journal flush (bounded by the interval)."""
        self.proto.datagramReceived(b"a:1|c", PEER)
        self.assertEqual(len(self.core.journal.pending), 1)
        self.core.durable()
        self.assertEqual(self.core.journal.pending, [])

    def test_own_metrics_are_series(self):
        """The server's own counts become simplestats.* series."""
        self.proto.datagramReceived(b"a:1|c\nb:x|c", PEER)
        self.core.emit_own_metrics()
        store = self.core.store
        store.settle()
        self.assertEqual(store.series["simplestats.udp.bad"].value, 1.0)
        self.assertEqual(store.series["simplestats.udp.points"].value, 1.0)
        self.assertEqual(store.series["simplestats.series.count"].gauge, 1.0)
        self.assertEqual(json.loads(json.dumps(store.series["simplestats.uptime"].gauge)), 0.0)


class IdleExpiryTests(SynchronousTestCase):
    def test_idle_series_expire(self):
        """A series that got nothing for idle_expiry seconds is deleted; busy ones stay."""
        core = make_core(self, "--idle-expiry", "300")
        proto = StatsdProtocol(core, core.settings.limits, core.clock)
        proto.datagramReceived(b"old:1|c\nbusy:1|c", PEER)
        core.clock.advance(200)
        proto.datagramReceived(b"busy:1|c", PEER)
        core.clock.advance(200)
        self.assertEqual(core.expire_idle(core.clock.seconds()), 1)
        self.assertEqual(sorted(core.store.series), ["busy"])


class StatsdFastPathTests(SynchronousTestCase):
    """
    The fast path for plain statsd lines must reach the state the general
    parser reaches: the journal replays packets through the general one.
    """

    @staticmethod
    def state(core):
        from server.core.query import bucket_rows

        store = core.store
        store.settle()  # as every reader of the store does
        return {key: (s.type, s.gauge, s.value, s.last_seen,
                      [bucket_rows(store, s, i, 0, 2 ** 32) for i in range(len(store.tiers))])
                for key, s in store.series.items()}

    @given(st.lists(st.lists(st.tuples(
        st.sampled_from(["a", "b", "c.d", "e-f"]),
        st.one_of(st.integers(-1000, 1000).map(str), st.floats(-1e6, 1e6).map(repr),
                  st.sampled_from(["+3", "-2.5", ".5", "1e3", "x", "", "u:1"])),
        st.sampled_from(["c", "ms", "g", "h", "d", "s", "zz"])), min_size=1, max_size=8),
        min_size=1, max_size=6))
    @settings(max_examples=60, deadline=None)
    def test_fast_path_matches_general_parser(self, packets):
        """Packets through the fast path give the same series as parse_packet + submit."""
        from server.core.parse_statsd import parse_packet

        fast = make_core(self)
        general = make_core(self)
        proto = StatsdProtocol(fast, fast.settings.limits, fast.clock)
        for lines in packets:
            data = "\n".join("%s:%s|%s" % line for line in lines).encode()
            proto.datagramReceived(data, PEER)
            samples, _ = parse_packet(data, general.settings.limits)
            general.submit(samples, "udp")
            fast.clock.advance(2)
            general.clock.advance(2)
        self.assertEqual(self.state(fast), self.state(general))

    def test_replay_of_fast_path_packets(self):
        """Packets taken by the fast path replay from the journal to the same state."""
        from server.durability.journal import read_journal
        from server.durability.recovery import replay
        from server.core.store import Store

        core = make_core(self)
        proto = StatsdProtocol(core, core.settings.limits, core.clock)
        proto.datagramReceived(b"a:1|c\nb:2|ms\ng:5|g", PEER)
        proto.datagramReceived(b"a:2|c\nb:3|ms\ng:+1|g\ns:x|s\ns:y|s", PEER)
        core.durable()
        records, torn = read_journal(os.path.join(core.settings.data_dir, "journal.000001.log"))
        self.assertIsNone(torn)
        fresh = make_core(self)
        fresh.store = Store(core.settings.tiers, now=core.clock.seconds())
        fresh.clock = core.clock
        self.assertEqual(replay(fresh, records), 8)
        self.assertEqual(self.state(fresh), self.state(core))
