"""
Replay reproduces what was accepted live, whatever the settings at the
restart (#12): a line refused live stays refused, a point acknowledged
stays, and settings that would refuse stored data are reported.
"""

import dataclasses

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import COUNTER, Sample
from server.receivers.parse_tuple import parse_line
from server.durability.recovery import recover
from server.test.support import T0
from server.test.test_persistence import Server, TurnClock


class ReplayAsAcceptedTests(SynchronousTestCase):
    def setUp(self):
        self.clock = TurnClock()
        self.clock.advance(T0)

    def restart(self, server, **changes):
        """A new server on the directory with C{changes} to the settings, recovered."""
        server.journal.flush()
        again = Server(self, self.clock, server.directory, now=self.clock.seconds())
        again.settings = again.core.settings = dataclasses.replace(again.settings, **changes)
        again.summary = recover(again.directory, again.store, again.core, False,
                                self.clock.seconds())
        return again

    def statsd(self, server, packet, limits):
        return server.core.submit_statsd(packet, "udp", limits)

    def test_line_refused_live_stays_refused(self):
        """With --max-name-length 10, a too-long name refused live is not replayed (fast and slow lines)."""
        server = Server(self, self.clock)
        limits = server.settings.limits._replace(max_name_length=10)
        bad, refused = self.statsd(server, b"ok:1|c\nthis.name.is.too.long:1|c", limits)
        self.assertEqual(len(bad), 1)
        # Mixed: a slow line (packed values), a bad line, an over-long one.
        bad, refused = self.statsd(server, b"ok:1:2|c\nnope\nthis.name.is.too.long:1|c\nok:4|c",
                                   limits)
        self.assertEqual(len(bad), 2)
        again = self.restart(server)
        self.assertEqual(sorted(again.store.series), ["ok"])
        again.store.settle()
        self.assertEqual(again.store.series["ok"].value, 8.0)

    def test_series_refused_by_the_cap_stays_refused(self):
        """A new series refused at --max-series is not created by the replay under a higher cap."""
        server = Server(self, self.clock)
        server.settings = server.core.settings = dataclasses.replace(server.settings, max_series=2)
        bad, refused = self.statsd(server, b"a:1|c\nb:1|c\nc:1|c\na:1|c", server.settings.limits)
        self.assertEqual(len(refused), 1)
        again = self.restart(server, max_series=100)
        self.assertEqual(sorted(again.store.series), ["a", "b"])

    def test_lower_limits_at_restart_keep_acknowledged_points(self):
        """A lower --max-series or --future-limit at restart keeps every acknowledged point and says so."""
        server = Server(self, self.clock)
        self.statsd(server, b"".join(b"s%02d:1|c\n" % i for i in range(10)), server.settings.limits)
        line = b'["future", %d, "1c"]' % (T0 + 500,)
        items = parse_line(line, server.settings.limits).items
        server.submit(self, items, atomic=True, raw=(b"t", line))
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        again = self.restart(server, max_series=4, future_limit=60.0)
        self.assertEqual(len(again.store.series), 11)
        self.assertEqual(again.summary["beyond_limits"], 8)  # 7 series past the cap, 1 point
        texts = [e.get("log_format", "") for e in logged]
        self.assertTrue(any("beyond today's --future-limit" in t for t in texts), texts)
        self.assertTrue(any("more than --max-series" in t for t in texts), texts)
        # Live, the lower settings apply to new data.
        self.assertNotEqual(again.core.submit([Sample("new", (), COUNTER, 1.0)], "test"), [])


class ParserVersionTests(SynchronousTestCase):
    def test_packets_replay_as_their_parser_read_them(self):
        """A journal file of statsd parser 1 (SSJ2) replays 'req,host=a' as parser 1 read it; SSJ3 as tags."""
        import os

        from server.durability.journal import journal_path, scan_journal, write_journal_file
        clock = TurnClock()
        clock.advance(T0)
        server = Server(self, clock)
        server.journal.close()
        old = journal_path(server.directory, 1)
        new = journal_path(server.directory, 2)
        packet = ("udp", T0, b"req,host=a:1|c")
        write_journal_file(old, [packet], parser=1)
        write_journal_file(new, [packet], parser=2)
        self.assertEqual((scan_journal(old).parser, scan_journal(new).parser), (1, 2))
        with open(old, "rb") as f:
            self.assertEqual(f.read(5), b"SSJ2\n")
        for path in (journal_path(server.directory, n) for n in range(3, 5)):
            if os.path.exists(path):
                os.remove(path)
        again = Server(self, clock, server.directory, now=T0)
        recover(again.directory, again.store, again.core, False, T0, until_seq=3)
        self.assertEqual(sorted(again.store.series), ["req;host=a", "reqhosta"])
