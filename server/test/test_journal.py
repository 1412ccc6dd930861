"""
The journal's writer: writes off the reactor, in order, answers only after
the write; rotation splits exactly; a failed write keeps its records.
"""

import os

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from server.core.ingest import IngestCore
from server.durability.journal import Journal, journal_files, journal_path, read_journal
from server.core.model import COUNTER, Sample
from server.receivers import tcp
from server.receivers.tcp import TupleFactory
from server.durability.snapshot import SNAPSHOT_NAME, Snapshotter
from server.core.store import Store
from server.test.support import T0, settings_for, synchronous


class ManualThread:
    """
    A run_in_thread that runs each call only when the test says so (here,
    in this thread): what the reactor sees while the writer is busy.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def run_one(self):
        f, args, d = self.calls.pop(0)
        try:
            result = f(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)

    def run_all(self):
        while self.calls:
            self.run_one()


def manual_core(testcase, *argv):
    """
    An IngestCore whose journal's writer runs only when told.
    """
    settings = settings_for(testcase, *argv)
    clock = Clock()
    clock.advance(T0)
    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=T0)
    thread = ManualThread()
    journal = Journal(settings.data_dir, settings.journal_fsync_interval, thread)

    def close():
        journal.close()
        thread.run_all()

    testcase.addCleanup(close)
    return IngestCore(settings, clock, store, journal), thread


def records_in(journal, seq=None):
    records, torn = read_journal(journal_path(journal.directory, seq or journal.seq))
    assert torn is None
    return records


def point(name, value=1.0):
    return [Sample(name, (), COUNTER, value)]


class WriterTests(SynchronousTestCase):

    def setUp(self):
        self.core, self.thread = manual_core(self)
        self.journal = self.core.journal

    def test_flush_fires_after_the_write(self):
        """flush() returns at once; its Deferred fires only when the writer has written the records."""
        self.core.submit(point("a"), "test")
        d = self.journal.flush()
        self.assertNoResult(d)
        self.assertEqual(records_in(self.journal), [])
        self.assertEqual(self.journal.unwritten_bytes, self.thread.calls[0][1][1].__len__())
        self.thread.run_one()
        self.successResultOf(d)
        self.assertEqual(len(records_in(self.journal)), 1)
        self.assertEqual(self.journal.unwritten_bytes, 0)

    def test_flushes_join_the_write_not_started(self):
        """Flushes while a write is under way share one next write, in order."""
        self.core.submit(point("a"), "test")
        first = self.journal.flush()
        self.core.submit(point("b"), "test")
        second = self.journal.flush()
        self.core.submit(point("c"), "test")
        third = self.journal.flush()
        self.assertEqual(len(self.thread.calls), 1)
        self.thread.run_one()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertNoResult(third)
        self.assertEqual(len(self.thread.calls), 1)
        self.thread.run_one()
        self.successResultOf(second)
        self.successResultOf(third)
        names = [r[0][1] for r in records_in(self.journal)]
        self.assertEqual(names, ["a", "b", "c"])

    def test_flush_with_nothing_new_waits_for_the_write_under_way(self):
        """A flush with nothing queued still waits for records already handed to the writer."""
        self.core.submit(point("a"), "test")
        first = self.journal.flush()
        again = self.journal.flush()
        self.assertNoResult(again)
        self.thread.run_one()
        self.successResultOf(first)
        self.successResultOf(again)
        self.successResultOf(self.journal.flush())

    def test_failed_write_keeps_its_records(self):
        """A write the disk refuses fails every waiter and leaves its records queued, in order, for the next flush."""
        path = journal_path(self.journal.directory, self.journal.seq)
        good, self.journal._fd = self.journal._fd, os.open(path, os.O_RDONLY)
        self.core.submit(point("a"), "test")
        first = self.journal.flush()
        self.core.submit(point("b"), "test")
        second = self.journal.flush()
        self.thread.run_one()
        self.failureResultOf(first, OSError)
        self.failureResultOf(second, OSError)
        self.assertEqual(self.thread.calls, [])
        self.assertEqual(len(self.journal.pending), 2)
        os.close(self.journal._fd)
        self.journal._fd = good
        third = self.journal.flush()
        self.thread.run_one()
        self.successResultOf(third)
        self.assertEqual([r[0][1] for r in records_in(self.journal)], ["a", "b"])

    def test_fsync_with_every_write(self):
        """With an fsync interval of 0 the write's own call fsyncs: nothing stays unsynced."""
        core, thread = manual_core(self, "--journal-fsync-interval", "0")
        core.submit(point("a"), "test")
        d = core.journal.flush()
        thread.run_one()
        self.successResultOf(d)
        self.assertFalse(core.journal.unsynced)
        self.assertEqual(thread.calls, [])
        self.core.submit(point("a"), "test")
        self.journal.flush()
        self.thread.run_one()
        self.assertTrue(self.journal.unsynced)
        synced = self.journal.sync()
        self.thread.run_one()
        self.successResultOf(synced)
        self.assertFalse(self.journal.unsynced)


class RotationTests(SynchronousTestCase):

    def setUp(self):
        self.core, self.thread = manual_core(self)
        self.journal = self.core.journal

    def test_rotate_splits_where_it_is_called(self):
        """Records queued before rotate() go to the current file, records after it to the next, whatever the writer was doing."""
        self.core.submit(point("before-1"), "test")
        self.journal.flush()
        self.core.submit(point("before-2"), "test")
        rotated = self.journal.rotate()
        self.core.submit(point("after"), "test")
        after = self.journal.flush()
        self.assertNoResult(rotated)
        self.assertEqual(self.journal.seq, 1)
        self.thread.run_all()
        self.assertEqual(self.successResultOf(rotated), 2)
        self.successResultOf(after)
        self.assertEqual([r[0][1] for r in records_in(self.journal, 1)], ["before-1", "before-2"])
        self.assertEqual([r[0][1] for r in records_in(self.journal, 2)], ["after"])

    def test_failed_write_fails_the_rotation(self):
        """When the write before a rotation fails, the rotation fails too and every record still reaches the current file."""
        path = journal_path(self.journal.directory, 1)
        good, self.journal._fd = self.journal._fd, os.open(path, os.O_RDONLY)
        self.core.submit(point("a"), "test")
        rotated = self.journal.rotate()
        self.core.submit(point("b"), "test")
        self.journal.flush().addErrback(lambda f: None)
        self.thread.run_all()
        self.failureResultOf(rotated, OSError)
        os.close(self.journal._fd)
        self.journal._fd = good
        self.assertEqual(self.journal.seq, 1)
        d = self.journal.flush()
        self.thread.run_all()
        self.successResultOf(d)
        self.assertEqual([r[0][1] for r in records_in(self.journal, 1)], ["a", "b"])
        self.assertEqual([seq for seq, _ in journal_files(self.journal.directory)], [1])

    def test_remove_before_never_takes_the_current_file(self):
        """remove_before refuses a number the journal has not rotated to."""
        self.assertRaises(ValueError, self.journal.remove_before, 2)
        self.journal.remove_before(1)
        self.assertEqual([seq for seq, _ in journal_files(self.journal.directory)], [1])


class SnapshotOrderTests(SynchronousTestCase):

    def setUp(self):
        self.core, self.thread = manual_core(self)
        self.journal = self.core.journal
        self.clock = self.core.clock
        self.directory = self.journal.directory
        self.snapshotter = Snapshotter(self.core.store, self.journal, self.directory,
                                       self.clock, synchronous)

    def finish(self, d):
        for _ in range(100):
            self.clock.advance(0)
            self.thread.run_all()
        return d

    def test_snapshot_waits_for_the_rotation(self):
        """The snapshot file is written, and older journal files removed, only after the rotation is on disk."""
        self.core.submit(point("a"), "test")
        self.journal.flush()
        d = self.snapshotter.take()
        self.core.submit(point("b"), "test")
        self.journal.flush()
        for _ in range(5):
            self.clock.advance(0)
        self.assertNoResult(d)
        self.assertFalse(os.path.exists(os.path.join(self.directory, SNAPSHOT_NAME)))
        self.assertEqual([seq for seq, _ in journal_files(self.directory)], [1])
        self.successResultOf(self.finish(d))
        self.assertEqual([seq for seq, _ in journal_files(self.directory)], [2])
        self.assertEqual([r[0][1] for r in records_in(self.journal, 2)], ["b"])

    def test_failed_rotation_removes_nothing(self):
        """A snapshot whose rotation fails writes no file and removes no journal file."""
        path = journal_path(self.directory, 1)
        good, self.journal._fd = self.journal._fd, os.open(path, os.O_RDONLY)
        self.core.submit(point("a"), "test")
        d = self.snapshotter.take()
        self.failureResultOf(self.finish(d), OSError)
        self.flushLoggedErrors(OSError)
        os.close(self.journal._fd)
        self.journal._fd = good
        self.assertFalse(os.path.exists(os.path.join(self.directory, SNAPSHOT_NAME)))
        self.assertIn("snapshot failed", self.snapshotter.status["error"])
        self.assertEqual([seq for seq, _ in journal_files(self.directory)], [1])
        self.assertEqual(self.core.store.observers, [])


class AnswerTests(SynchronousTestCase):

    def setUp(self):
        self.core, self.thread = manual_core(self, "--max-line-length", "200")
        self.factory = TupleFactory(self.core, self.core.settings, self.core.clock)
        self.proto, self.transport = self.connect()

    def connect(self):
        proto = self.factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        transport.clear()
        return proto, transport

    def test_ok_only_after_the_write(self):
        """--OK waits for the writer; when it goes out the line is in the file."""
        self.proto.dataReceived(b'["a", null, 1]\n')
        self.assertEqual(self.transport.value(), b"")
        self.thread.run_one()
        self.assertEqual(self.transport.value(), b"--OK\r\n")
        self.assertEqual(len(records_in(self.core.journal)), 1)

    def test_answers_in_order_across_reads(self):
        """Answers of later reads wait behind earlier ones and go out in the order the lines came."""
        self.proto.dataReceived(b'["a", null, 1]\n')
        self.proto.dataReceived(b'["b", "x", 1]\n--help\n')
        self.proto.dataReceived(b'["c", null, 1]\n')
        self.assertEqual(self.transport.value(), b"")
        self.thread.run_all()
        lines = self.transport.value().split(b"\r\n")
        self.assertEqual(lines[0], b"--OK")
        self.assertTrue(lines[1].startswith(b"--ERROR timestamp"))
        self.assertTrue(lines[2].startswith(b"--HELP"))
        self.assertEqual(lines[3:], [b"--OK", b""])

    def test_other_connections_go_on(self):
        """While one connection's answer waits for the disk, the reactor still reads the others."""
        other, other_transport = self.connect()
        self.proto.dataReceived(b'["a", null, 1]\n')
        other.dataReceived(b'["b", null, 1]\n')
        self.assertIn("b", self.core.store.series)
        self.thread.run_all()
        self.assertEqual(self.transport.value(), b"--OK\r\n")
        self.assertEqual(other_transport.value(), b"--OK\r\n")

    def test_failed_write_answers_error(self):
        """A write the disk refuses turns the waiting --OK into --ERROR; errors answered as before."""
        journal = self.core.journal
        path = journal_path(journal.directory, journal.seq)
        good, journal._fd = journal._fd, os.open(path, os.O_RDONLY)
        self.proto.dataReceived(b'["a", null, 1]\n["a", null, "1c"]\n')
        self.thread.run_all()
        lines = self.transport.value().split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"--ERROR journal write failed"), lines)
        self.assertTrue(lines[1].startswith(b"--ERROR series 'a'"), lines)
        self.assertEqual(self.core.counters["simplestats.journal.errors"], 1)
        self.flushLoggedErrors()
        os.close(journal._fd)
        journal._fd = good
        self.transport.clear()
        self.proto.dataReceived(b'["a", null, 2]\n')
        self.thread.run_all()
        self.assertEqual(self.transport.value(), b"--OK\r\n")
        # The refused write is in the file now, before the later line.
        self.assertEqual(len(records_in(journal)), 2)

    def test_reading_pauses_while_answers_pile_up(self):
        """A connection with many reads waiting for the disk stops reading until half are answered."""
        for n in range(tcp.MAX_HELD_READS + 1):
            self.proto.dataReceived(b'["a", null, %d]\n' % (n,))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.core.counters["simplestats.tcp.paused_for_journal"], 1)
        self.thread.run_all()
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.transport.value(), b"--OK\r\n" * (tcp.MAX_HELD_READS + 1))

    def test_too_long_line_closes_after_the_answers(self):
        """A too-long line closes the connection only after the waiting answers are written."""
        self.proto.dataReceived(b'["a", null, 1]\n' + b"x" * 300)
        self.assertFalse(self.transport.disconnecting)
        self.thread.run_all()
        lines = self.transport.value().split(b"\r\n")
        self.assertEqual(lines[0], b"--OK")
        self.assertTrue(lines[1].startswith(b"--ERROR line longer than 200 bytes"))
        self.assertTrue(self.transport.disconnecting)

    def test_half_closed_client_gets_every_answer(self):
        """A client that shuts its sending side gets the answers still waiting, then the close."""
        self.proto.dataReceived(b'["a", null, 1]\n')
        self.proto.readConnectionLost()
        self.assertFalse(self.transport.disconnecting)
        self.thread.run_all()
        self.assertEqual(self.transport.value(), b"--OK\r\n")
        self.assertTrue(self.transport.disconnecting)


class CloseTests(SynchronousTestCase):

    def test_close_twice_while_writing(self):
        """A second close while the first waits for the writer joins it: the file is written and closed once."""
        core, thread = manual_core(self)
        core.submit(point("a"), "test")
        first = core.journal.close()
        second = core.journal.close()
        thread.run_all()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertIsNone(core.journal._fd)
        self.assertEqual([r[0][1] for r in records_in(core.journal)], ["a"])

    def test_write_after_close_fails_clearly(self):
        """A record queued after the journal is closed fails its flush with EBADF, not a crash."""
        core, thread = manual_core(self)
        core.journal.close()
        thread.run_all()
        core.submit(point("a"), "test")
        failure = self.failureResultOf(core.durable(), OSError)
        self.assertIn("closed", failure.getErrorMessage())
