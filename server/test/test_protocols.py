"""
The TCP tuple protocol and the statsd UDP protocol, on fake transports.
"""

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from server.protocols.statsd import StatsdProtocol
from server.protocols.tcp import HINT, TupleFactory
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
            b'--ERROR timestamp must be a number (or null for now), got "x"',
            b"--OK",
        ])
        self.assertIn("a", self.core.store.series)
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
            raise OSError(28, "No space left on device")
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
        self.assertEqual(self.core.store.series["a"].value, 10.0)

    def test_gauge_deltas(self):
        """+N and -N move a gauge from its current value."""
        self.proto.datagramReceived(b"g:10|g\ng:+5|g\ng:-3|g", PEER)
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
        from server.query import bucket_rows

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
        from server.parse_statsd import parse_packet

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
        from server.journal import read_journal
        from server.recovery import replay
        from server.store import Store

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


class StatsdBatchTests(SynchronousTestCase):
    """
    A packet whose every line was seen before is only tallied; the tally is
    applied by the next rollup tick, or before anything reads the store or
    takes points by another way, and gives the state the general parser
    gives point by point.
    """

    def setUp(self):
        self.core = make_core(self)
        self.proto = StatsdProtocol(self.core, self.core.settings.limits, self.core.clock)
        self.general = make_core(self)

    def send(self, data):
        from server.parse_statsd import parse_packet

        self.proto.datagramReceived(data, PEER)
        samples, _ = parse_packet(data, self.general.settings.limits)
        self.general.submit(samples, "udp")

    def advance(self, seconds):
        self.core.clock.advance(seconds)
        self.general.clock.advance(seconds)

    def settle(self):
        """
        What the server's rollup timer does every second, first of all.
        """
        self.core.store.settle()

    def same_state(self):
        self.assertEqual(StatsdFastPathTests.state(self.core),
                         StatsdFastPathTests.state(self.general))

    def test_repeated_counter_packets_are_tallied(self):
        """The first packet is parsed and learned; the next ones only counted, then applied at once."""
        for _ in range(50):
            self.send(b"a:1|c\nb:3|c\na:1|c\n")
        self.assertEqual(self.core.store.batch, {b"a:1|c": 98, b"b:3|c": 49})
        self.assertEqual(self.core.counters["simplestats.udp.points"], 150)
        self.assertEqual(len(self.core.journal.pending), 50)
        self.settle()
        self.assertEqual(self.core.store.batch, {})
        self.assertEqual(self.core.store.series["a"].value, 100.0)
        self.assertEqual(self.core.store.series["b"].value, 150.0)
        self.same_state()

    def test_every_type_is_tallied_and_last_values_keep_their_order(self):
        """Timers, gauges and sets are tallied too; a gauge's and a timer's last value is the last one sent."""
        first = b"t:5|ms\nt:7|ms\ng:3|g\ng:9|g\ns:u1|s\ns:u2|s\nc:2|c\nh:4|h\nd:6|d"
        second = b"g:4|g\nt:5|ms\ns:u1|s"
        for _ in range(3):
            self.send(first)
            self.send(second)
        self.assertEqual(sum(self.core.store.batch.values()), 2 * 12)
        self.settle()
        store = self.core.store
        self.assertEqual(store.series["g"].gauge, 4.0)
        self.assertEqual(store.series["t"].value, 5.0)
        self.same_state()
        self.send(first)
        self.settle()
        self.assertEqual(store.series["g"].gauge, 9.0)
        self.assertEqual(store.series["t"].value, 7.0)
        self.same_state()

    def test_unlearnable_lines_take_the_parser(self):
        """Fractions, sample rates, large timer values, gauge deltas, bad and unknown lines are parsed every time."""
        packets = [b"f:0.1|c", b"r:1|c|@0.5", b"t:100000|ms", b"t2:2.5|ms", b"g:+1|g",
                   b"x:1|c\ng:+1|g", b"x:1|c\nbad", b"x:1|c\r"]
        for _ in range(3):
            for packet in packets:
                self.send(packet)
                self.assertEqual(self.core.store.batch, {}, packet)
            self.advance(1)
        self.assertEqual(self.core.counters["simplestats.udp.bad"], 3)
        self.same_state()

    def test_points_by_another_way_come_after_the_tally(self):
        """A gauge delta after tallied gauge values moves the last of them."""
        for _ in range(3):
            self.send(b"g:5|g")
        self.assertEqual(self.core.store.batch, {b"g:5|g": 2})
        self.send(b"g:+1|g")
        self.assertEqual(self.core.store.series["g"].gauge, 6.0)
        self.same_state()

    @given(st.lists(st.tuples(st.lists(st.sampled_from(
        ["a:1|c", "a:3|c", "g:5|g", "g:7|g", "g:+1|g", "g:-2|g", "t:5|ms", "t:9|ms", "t:1.5|ms",
         "s:x|s", "s:y|s", "h:3|h", "d:2|d", "b:x|c"]), min_size=1, max_size=5),
        st.sampled_from([0, 0, 0, 1, 4])), min_size=1, max_size=30))
    @settings(max_examples=80, deadline=None)
    def test_same_state_as_point_by_point(self, sends):
        """Any sequence of packets from a few lines, sent now and then, gives the state of the general parser."""
        self.setUp()
        for lines, pause in sends:
            self.send("\n".join(lines).encode())
            if pause:
                self.advance(pause)
                if pause > 1:
                    self.settle()
        self.settle()
        self.same_state()

    def test_batch_never_spans_buckets(self):
        """A tally in one 5 s bucket is applied there before the next bucket's starts."""
        from server.model import COUNTER
        from server.query import bucket_rows

        store = self.core.store
        series = store.get_or_create("hits", COUNTER)
        step = store.tiers[0].step
        start = (T0 // step + 1) * step
        store.learn(b"hits:1|c", series, 1.0)
        self.assertTrue(store.count([b"hits:1|c"] * 3, start + step - 0.5))
        self.assertTrue(store.count([b"hits:1|c"] * 4, start + step))
        self.assertEqual(store.batch, {b"hits:1|c": 4})
        store.settle()
        rows = bucket_rows(store, series, 0, 0, 2 ** 32)
        self.assertEqual(rows, {start // step: (3.0,), start // step + 1: (4.0,)})

    def test_reads_ticks_and_deletes_settle_first(self):
        """A tick and a delete see every tallied point; a deleted series' lines are learned again."""
        for _ in range(5):
            self.send(b"a:1|c")
        store = self.core.store
        store.tick(self.core.clock.seconds())
        self.assertEqual(store.batch, {})
        self.assertEqual(store.series["a"].value, 5.0)
        self.send(b"a:1|c")
        self.assertEqual(self.core.delete(["a"]), ["a"])
        self.assertEqual(store.batch, {})
        self.assertEqual(store.learned, {})
        self.send(b"a:1|c")
        self.send(b"a:1|c")
        self.assertEqual(store.batch, {b"a:1|c": 1})
        self.settle()
        self.assertEqual(store.series["a"].value, 2.0)

    def test_learned_lines_are_bounded(self):
        """The learned lines are forgotten (after applying the tally) at a bound."""
        from server import store as store_module

        self.patch(store_module, "MAX_LEARNED", 3)
        for n in range(5):
            self.send(b"c%d:1|c" % (n,))
            self.send(b"c%d:1|c" % (n,))
        self.assertLessEqual(len(self.core.store.learned), 3)
        self.settle()
        self.same_state()
