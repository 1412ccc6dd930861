"""
Start-up as a phase after the ports listen: recovery in slices, health
saying "recovering" with its progress, ingest held and applied after it,
timers started only then, and a corrupt data directory still refused.
"""

import gzip
import json
import os

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from server.durability.journal import journal_path, read_journal
from server.core.model import COUNTER, Sample
from server.receivers.parse_tuple import parse_line
from server.durability.recovery import StartupError
from server.service import makeService
from server.durability.snapshot import SNAPSHOT_NAME
from server.test.support import T0, settings_for, synchronous

BASE = "http://127.0.0.1:8080"
PEER = ("127.0.0.1", 9999)
SERIES = 20


class _UDPPort:
    def __init__(self, port):
        self.port = port

    def getHost(self):
        return IPv4Address("UDP", "127.0.0.1", self.port)

    def stopListening(self):
        return None


class FakeReactor(MemoryReactorClock):
    """
    A memory reactor on a clock that also takes UDP listeners, and runs one
    reactor turn per C{advance}.
    """

    def __init__(self):
        MemoryReactorClock.__init__(self)
        self.advance(T0)
        self.udp = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udp.append(protocol)
        return _UDPPort(port)

    def advance(self, amount):
        """
        Run only the calls due now: a C{callLater(0)} made by one of them
        waits for the next C{advance}, as on the next turn of a reactor.
        """
        self.rightNow += amount
        due = sorted((c for c in self.calls if c.getTime() <= self.rightNow),
                     key=lambda c: c.getTime())
        for call in due:
            if call in self.calls:
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class StepTimer:
    """
    A C{perf_counter} that moves one second per reading: every recovery
    slice does one piece of work.
    """

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


class StartupTests(SynchronousTestCase):
    def setUp(self):
        self.settings = settings_for(self, "--tcp-port", "0", "--udp-port", "0",
                                     "--http-port", "0", "--recovery-queue-bytes", "56")
        self.failures = []

    def build(self, settings=None):
        """
        A started server over the data directory, recovery not yet begun.
        """
        reactor = FakeReactor()
        top = makeService(settings or self.settings, reactor, timer=StepTimer(),
                          run_in_thread=synchronous, on_failure=self.failures.append)
        top.startService()
        self.addCleanup(lambda: top.running and top.stopService())
        return reactor, top

    def finish(self, reactor, top, limit=100000):
        for _ in range(limit):
            if not top.recovery.holding or top.recovery.error is not None:
                return
            reactor.advance(0)
        self.fail("recovery did not finish")

    def filled(self):
        """
        A data directory with a snapshot of C{SERIES} counters and one more
        point in the journal after it.
        """
        reactor, top = self.build()
        self.finish(reactor, top)
        self.settled(reactor, top)
        items = [Sample("s%02d" % i, (), COUNTER, float(i + 1)) for i in range(SERIES)]
        self.assertEqual(top.core.submit(items, "test"), [])
        self.stop(reactor, top)  # the final snapshot
        self.assertTrue(os.path.exists(os.path.join(self.settings.data_dir, SNAPSHOT_NAME)))
        reactor2, top2 = self.build()
        self.finish(reactor2, top2)
        self.assertEqual(top2.core.submit([Sample("late", (), COUNTER, 7.0)], "test"), [])
        top2.core.durable()
        top2.recovery.stop()
        top2.core.journal.close()  # as kill -9: no final snapshot
        top2.running = False
        # The dead process's lock goes with it.
        top2.getServiceNamed("persistence").lock.release()

    def settled(self, reactor, top):
        """
        Let the snapshot that the timer takes at once after recovery end.
        """
        for _ in range(100000):
            if top.snapshotter.running is None:
                return
            reactor.advance(0)
        self.fail("the snapshot did not end")

    def stop(self, reactor, top):
        d = top.stopService()
        for _ in range(100000):
            if d.called:
                return self.successResultOf(d)
            reactor.advance(0)
        self.fail("the server did not stop")

    def health(self, top):
        response = self.successResultOf(StubTreq(top.site.resource).get(BASE + "/api/health"))
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_ports_listen_before_recovery(self):
        """The ports listen at start; the snapshot is not read until the reactor turns."""
        self.filled()
        reactor, top = self.build()
        # Tuples, web, Graphite plaintext; statsd, Graphite plaintext.
        self.assertEqual(len(reactor.tcpServers), 3)
        self.assertEqual(len(reactor.udp), 2)
        self.assertEqual(top.store.series, {})
        self.assertTrue(top.recovery.holding)

    def test_health_says_recovering_with_progress(self):
        """While slices are pending /api/health says recovering, with the series loaded so far."""
        self.filled()
        reactor, top = self.build()
        seen = []
        for _ in range(100000):
            code, body = self.health(top)
            self.assertEqual(code, 200)
            if body["status"] != "recovering":
                break
            seen.append(body["recovery"])
            reactor.advance(0)
        phases = [r["phase"] for r in seen]
        self.assertIn("snapshot", phases)
        self.assertIn("journal", phases)
        loaded = [r["series_loaded"] for r in seen if r["phase"] == "snapshot"]
        self.assertEqual(loaded, sorted(loaded))
        self.assertTrue(0 < loaded[len(loaded) // 2] < SERIES, loaded)
        self.assertEqual({r["series_total"] for r in seen if r["phase"] == "snapshot"}
                         - {None}, {SERIES})
        self.assertEqual(seen[-1]["records_replayed"], 1)
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["recovery"]["phase"], "done")
        self.assertEqual(body["series"], SERIES + 1)
        self.assertEqual(top.store.series["s05"].value, 6.0)

    def test_reads_answer_503_while_recovering(self):
        """Other API calls answer 503 recovering (imports too) until recovery is over."""
        self.filled()
        reactor, top = self.build()
        reactor.advance(0)
        stub = StubTreq(top.site.resource)
        for method, path in (("GET", "/api/metrics"), ("POST", "/api/import")):
            response = self.successResultOf(stub.request(method, BASE + path, data=b"[]"))
            self.assertEqual(response.code, 503)
            body = json.loads(self.successResultOf(response.content()))
            self.assertIn("recovering", body["error"])
            self.assertIn("series_loaded", body["recovery"])
        self.finish(reactor, top)
        response = self.successResultOf(stub.get(BASE + "/api/metrics"))
        self.assertEqual(response.code, 200)

    def test_queued_packets_applied_after_replay_in_order_and_journaled(self):
        """Statsd packets that came while recovering are applied after the replay, in order, then journaled."""
        self.filled()
        reactor, top = self.build()
        statsd = reactor.udp[0]
        reactor.advance(0)
        for packet in (b"g:1|g", b"g:5|g", b"late:2|c", b"g:3|g"):
            statsd.datagramReceived(packet, PEER)
        self.assertNotIn("g", top.store.series)
        self.assertEqual(top.recovery.progress["queued_packets"], 4)
        self.finish(reactor, top)
        top.store.settle()
        self.assertEqual(top.store.series["g"].value, 3.0)
        # 7 replayed from the journal, then 2 from the queue: one series.
        self.assertEqual(top.store.series["late"].value, 9.0)
        # This run's first file (the snapshot the timer starts now covers it).
        records, torn = read_journal(journal_path(os.path.abspath(self.settings.data_dir),
                                                  top.recovery.until_seq))
        self.assertEqual([r[2] for r in records if r[0] == "udp"],
                         [b"g:1|g", b"g:5|g", b"late:2|c", b"g:3|g"])
        # Later packets are taken at once.
        statsd.datagramReceived(b"g:8|g", PEER)
        top.store.settle()
        self.assertEqual(top.store.series["g"].value, 8.0)

    def test_queue_bound_drops_and_counts(self):
        """Beyond --recovery-queue-bytes packets are dropped and counted, the ones before kept."""
        reactor, top = self.build()
        statsd = reactor.udp[0]
        for i in range(10):
            statsd.datagramReceived(b"q.%d:1|c" % (i,), PEER)  # 7 bytes each
        self.assertEqual(top.recovery.progress["queued_packets"], 8)
        self.assertEqual(top.core.counters["simplestats.udp.dropped_recovering"], 2)
        self.finish(reactor, top)
        top.store.settle()
        self.assertEqual(sorted(k for k in top.store.series if k.startswith("q.")),
                         ["q.%d" % i for i in range(8)])

    def test_tcp_connections_wait_for_recovery(self):
        """A TCP client gets its hint at once, but its lines are read only after recovery."""
        self.filled()
        reactor, top = self.build()
        factory = reactor.tcpServers[0][1]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"--Hint"))
        self.assertEqual(transport.producerState, "paused")
        proto.resumeProducing()  # the write buffer drained: still held
        self.assertEqual(transport.producerState, "paused")
        self.finish(reactor, top)
        self.assertEqual(transport.producerState, "producing")
        transport.clear()
        proto.dataReceived(b'["t", null, "1c"]\n')
        self.assertEqual(transport.value(), b"--OK\r\n")

    def test_timers_start_after_recovery(self):
        """No rollup, flush or snapshot timer runs against a store loaded in part."""
        self.filled()
        reactor, top = self.build()
        reactor.advance(0)
        self.assertFalse(top.timers.running)
        self.assertIsNone(top.snapshotter.status["last"])
        self.finish(reactor, top)
        self.assertTrue(top.timers.running)
        # The snapshot timer runs at once when started.
        self.assertIsNotNone(top.snapshotter.running)

    def test_corrupt_snapshot_ends_startup(self):
        """A corrupt snapshot still ends start-up with the clear error, after the ports listen."""
        self.filled()
        path = os.path.abspath(os.path.join(self.settings.data_dir, SNAPSHOT_NAME))
        with gzip.open(path, "rb") as f:
            lines = f.read().split(b"\n")
        with open(path, "wb") as f:
            f.write(gzip.compress(b"\n".join(lines[:4]) + b"\n"))
        reactor, top = self.build()
        self.finish(reactor, top)
        error, = self.failures
        self.assertIsInstance(error, StartupError)
        self.assertIn("corrupt snapshot %s: truncated" % (path,), str(error))
        self.assertIn("--move-corrupt-aside", str(error))
        code, body = self.health(top)
        self.assertEqual(body["status"], "failed")
        self.stop(reactor, top)
        # No final snapshot over the file the operator must look at.
        with open(path, "rb") as f:
            self.assertEqual(gzip.decompress(f.read()), b"\n".join(lines[:4]) + b"\n")

    def test_stop_while_recovering_keeps_queued_packets(self):
        """SIGTERM during recovery writes no snapshot and journals queued packets for the next start."""
        self.filled()
        path = os.path.join(self.settings.data_dir, SNAPSHOT_NAME)
        before = os.path.getmtime(path), os.path.getsize(path)
        reactor, top = self.build()
        reactor.advance(0)
        reactor.udp[0].datagramReceived(b"kept:4|c", PEER)
        self.stop(reactor, top)
        self.assertEqual((os.path.getmtime(path), os.path.getsize(path)), before)
        reactor, top = self.build()
        self.finish(reactor, top)
        top.store.settle()
        self.assertEqual(top.store.series["kept"].value, 4.0)
        self.assertEqual(len(top.store.series), SERIES + 2)

    def test_long_batch_line_replayed_in_parts(self):
        """A journaled TCP batch over 16 KB is parsed off the reactor and applied over several slices, all of it."""
        reactor, top = self.build()
        self.finish(reactor, top)
        self.settled(reactor, top)
        line = json.dumps([["b.%04d" % i, None, "2c"] for i in range(2000)]).encode()
        self.assertGreater(len(line), 16 * 1024)
        items = parse_line(line, top.settings.limits).items
        self.assertEqual(top.core.submit(items, "tcp", atomic=True, raw=(b"t", line)), [])
        top.core.durable()
        top.recovery.stop()
        top.core.journal.close()  # as kill -9: no final snapshot
        top.running = False
        top.getServiceNamed("persistence").lock.release()

        reactor, top = self.build()
        turns = []
        for _ in range(100000):
            if not top.recovery.holding:
                break
            if top.recovery.progress["phase"] == "journal":
                turns.append(len([k for k in top.store.series if k.startswith("b.")]))
            reactor.advance(0)
        # Seen part-way: some series of the batch in, not all.
        self.assertTrue(any(0 < n < 2000 for n in turns), turns)
        self.assertEqual(top.recovery.summary["records_replayed"], 2000)
        top.store.settle()
        self.assertEqual(top.store.series["b.1999"].value, 2.0)
