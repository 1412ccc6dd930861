"""
Journal framing: a record cut short at the very end is torn; anything else
is damage, named with its file and record, and reading can go on past it.
Files of the first format (SSJ1) are still read.  One server per data
directory.
"""

import json
import os
import struct
import zlib

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from server.durability.datadir import DataDirInUse, DataDirLock
from server.core.ingest import IngestCore
from server.durability.journal import (MAGIC, MAGIC_V1, Journal, JournalCorrupt, journal_path,
                            read_journal, scan_journal)
from server.durability.recovery import StartupError, recover
from server.service import makeService
from server.settings import load
from server.core.store import Store
from server.test.support import T0, settings_for, synchronous

HEADER = 17


def tcp_lines(count):
    return [("tcp", T0 + n, b'["p%d", %d, %d]' % (n, T0 + n, n)) for n in range(count)]


def write_journal(directory, records, seq=1):
    journal = Journal(directory)
    for _, now, line in records:
        journal.append_raw(b"t", now, line)
    journal.close()
    return journal_path(directory, journal.seq)


def write_v1(path, records):
    """
    A journal file as the first format wrote it: length, CRC, kind, payload.
    """
    chunks = [MAGIC_V1]
    for _, now, line in records:
        payload = struct.pack(">d", now) + line
        chunks.append(struct.pack(">IIc", len(payload), zlib.crc32(payload, zlib.crc32(b"t")), b"t")
                      + payload)
    with open(path, "wb") as f:
        f.write(b"".join(chunks))


def offsets(data, header, length_at):
    """
    The byte offset of every record of a file of one format.
    """
    found = []
    at = len(MAGIC)
    while at < len(data):
        found.append(at)
        at += header + int.from_bytes(data[at + length_at:at + length_at + 4], "big")
    return found


def flip(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x01]))


class FramingTests(SynchronousTestCase):

    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.records = tcp_lines(200)

    def test_flipped_length_bit_is_damage_not_a_torn_tail(self):
        """A bit flipped in the high length byte of record 101 of 200 is damage naming the file and record 101, not a torn last record."""
        path = write_journal(self.directory, self.records)
        with open(path, "rb") as f:
            at = offsets(f.read(), HEADER, 4)[100]
        flip(path, at + 4)
        error = self.assertRaises(JournalCorrupt, read_journal, path)
        self.assertEqual((error.path, error.record), (path, 101))
        self.assertIn("record 101", str(error))
        self.assertIn(path, str(error))

    def test_reading_goes_on_past_the_damage(self):
        """Past a damaged record the reader finds the next one by its marker: 199 of 200 records kept, the damaged one reported."""
        path = write_journal(self.directory, self.records)
        with open(path, "rb") as f:
            at = offsets(f.read(), HEADER, 4)[100]
        flip(path, at + 4)
        scan = scan_journal(path)
        self.assertEqual(scan.records, self.records[:100] + self.records[101:])
        self.assertIsNone(scan.torn)
        self.assertEqual([(n, offset) for n, offset, _ in scan.damage], [(101, at)])
        self.assertIn("header checksum", scan.damage[0][2])

    def test_damaged_payload_in_the_middle(self):
        """A flipped payload bit in record 50 is damage; the records after it are found again."""
        path = write_journal(self.directory, self.records)
        with open(path, "rb") as f:
            at = offsets(f.read(), HEADER, 4)[49]
        flip(path, at + HEADER + 10)
        scan = scan_journal(path)
        self.assertEqual([n for n, _, _ in scan.damage], [50])
        self.assertEqual(len(scan.records), 199)

    def test_cut_last_record_is_torn(self):
        """A file cut anywhere inside its last record (header or payload) is a torn tail: 199 records, no damage."""
        path = write_journal(self.directory, self.records)
        with open(path, "rb") as f:
            data = f.read()
        last = offsets(data, HEADER, 4)[-1]
        for cut in (last + 1, last + 3, last + HEADER - 1, last + HEADER, len(data) - 1):
            with open(path, "wb") as f:
                f.write(data[:cut])
            scan = scan_journal(path)
            self.assertEqual(scan.records, self.records[:199], cut - last)
            self.assertEqual(scan.torn[0], 200)
            self.assertEqual(scan.damage, [])
            self.assertEqual(read_journal(path), (self.records[:199], scan.torn))

    def test_zeros_after_the_last_record_are_torn(self):
        """The zeros a power loss leaves past the last write are a torn tail, not damage."""
        path = write_journal(self.directory, self.records[:3])
        with open(path, "ab") as f:
            f.write(b"\0" * 40)
        self.assertEqual(read_journal(path), (self.records[:3], (4, "zero bytes after the last record")))

    def test_version_in_the_magic(self):
        """New files carry the format version SSJ3 (SSJ2 framing, statsd parser 2)."""
        path = write_journal(self.directory, self.records[:1])
        with open(path, "rb") as f:
            self.assertEqual(f.read(5), b"SSJ3\n")

    def test_first_format_still_read(self):
        """An SSJ1 file written by the previous server reads back record for record."""
        path = journal_path(self.directory, 1)
        write_v1(path, self.records)
        self.assertEqual(read_journal(path), (self.records, None))

    def test_first_format_flipped_length_and_torn_tail(self):
        """In an SSJ1 file a flipped length bit in record 101 is damage (intact records follow) and reading resumes; a cut last record is still torn."""
        path = journal_path(self.directory, 1)
        write_v1(path, self.records)
        with open(path, "rb") as f:
            data = f.read()
        at = offsets(data, 9, 0)[100]
        flip(path, at)
        error = self.assertRaises(JournalCorrupt, read_journal, path)
        self.assertEqual(error.record, 101)
        scan = scan_journal(path)
        self.assertEqual(scan.records, self.records[:100] + self.records[101:])
        with open(path, "wb") as f:
            f.write(data[:-5])
        self.assertEqual(read_journal(path)[0], self.records[:199])
        self.assertEqual(read_journal(path)[1][0], 200)


class RecoveryTests(SynchronousTestCase):

    def setUp(self):
        self.settings = settings_for(self)
        self.directory = self.settings.data_dir
        self.records = tcp_lines(200)
        self.path = write_journal(self.directory, self.records)
        with open(self.path, "rb") as f:
            flip(self.path, offsets(f.read(), HEADER, 4)[100] + 4)

    def recover(self, move_corrupt_aside):
        clock = Clock()
        clock.advance(T0 + 300)
        store = Store(self.settings.tiers, self.settings.sketch_accuracy,
                      self.settings.late_grace, now=clock.seconds())
        journal = Journal(self.directory)
        self.addCleanup(journal.close)
        core = IngestCore(self.settings, clock, store, journal)
        return store, recover(self.directory, store, core, move_corrupt_aside, clock.seconds())

    def test_start_refused_naming_file_and_record(self):
        """Start-up stops on the damaged record, naming the file and record, and says how to go on."""
        error = self.assertRaises(StartupError, self.recover, False)
        self.assertIn("%s record 101" % (self.path,), str(error))
        self.assertIn("--move-corrupt-aside", str(error))

    def test_move_aside_keeps_every_intact_record(self):
        """With move-aside the 199 intact records are replayed and kept under the file's name; the original is renamed."""
        store, summary = self.recover(True)
        self.assertEqual(summary["records_replayed"], 199)
        self.assertEqual(summary["damaged"], [self.path + ":101"])
        self.assertEqual(summary["torn"], [])
        self.assertNotIn("p100", store.series)
        self.assertEqual(len(store.series), 199)
        self.assertEqual(read_journal(self.path), (self.records[:100] + self.records[101:], None))
        self.assertTrue(os.path.exists(summary["moved_aside"][0]))
        # A second start reads the kept records without complaint.
        store, summary = self.recover(False)
        self.assertEqual(summary["records_replayed"], 199)


class DataDirLockTests(SynchronousTestCase):

    def test_second_lock_names_the_holder(self):
        """A second lock on a data directory fails naming the PID that holds it; once released it can be taken."""
        directory = self.mktemp()
        os.makedirs(directory)
        first = DataDirLock(directory, pid=4242)
        error = self.assertRaises(DataDirInUse, DataDirLock, directory)
        self.assertIn("pid 4242", str(error))
        self.assertIn(directory, str(error))
        first.release()
        DataDirLock(directory).release()

    def test_second_server_refuses_to_start(self):
        """makeService on a data directory another server holds raises StartupError naming its PID."""
        data = self.mktemp()
        settings = load(["--data-dir", data, "--tcp-port", "0", "--udp-port", "0",
                         "--http-port", "0"], {})
        reactor = MemoryReactorClock()
        top = makeService(settings, reactor, run_in_thread=synchronous)
        error = self.assertRaises(StartupError, makeService, settings, MemoryReactorClock(),
                                  run_in_thread=synchronous)
        self.assertIn("pid %d" % (os.getpid(),), str(error))
        persistence = top.getServiceNamed("persistence")
        persistence.startService()
        stopped = persistence.stopService()
        for _ in range(10):
            reactor.advance(0)
        self.successResultOf(stopped)
        top2 = makeService(settings, MemoryReactorClock(), run_in_thread=synchronous)
        top2.getServiceNamed("persistence").lock.release()
        top2.core.journal.close()
        with open(os.path.join(data, "simplestats.lock")) as f:
            self.assertEqual(json.loads(f.read()), os.getpid())


class NumberingTests(SynchronousTestCase):

    def test_journal_goes_on_after_the_snapshot_s_number(self):
        """With the journal files removed by hand, the next records go to a number the snapshot does not cover, and a restart replays them."""
        from server.core.model import COUNTER, Sample
        from server.durability.snapshot import Snapshotter
        from server.test.support import make_core

        core = make_core(self)
        directory = core.settings.data_dir
        core.submit([Sample("before", (), COUNTER, 1.0)], "test")
        snapshotter = Snapshotter(core.store, core.journal, directory, core.clock, synchronous)
        d = snapshotter.take()
        for _ in range(10):
            core.clock.advance(0)
        self.successResultOf(d)
        self.successResultOf(core.journal.close())

        def restart(accept=True):
            store = Store(core.settings.tiers, now=core.clock.seconds())
            journal = Journal(directory)
            self.addCleanup(journal.close)
            again = IngestCore(core.settings, core.clock, store, journal)
            return again, recover(directory, store, again, False, core.clock.seconds(),
                                  accept_missing_data=accept)

        def remove_journal():
            for name in os.listdir(directory):
                if name.startswith("journal."):
                    os.remove(os.path.join(directory, name))

        remove_journal()
        # The snapshot's next file is gone: refused unless accepted.
        error = self.assertRaises(StartupError, restart, False)
        self.assertIn("journal.000002.log", str(error))
        remove_journal()  # the refused start's own empty file
        again, _ = restart()
        self.assertEqual(again.journal.seq, 2)
        self.assertEqual(sorted(os.listdir(directory)).count("journal.000001.log"), 0)
        again.submit([Sample("after", (), COUNTER, 1.0)], "test")
        self.successResultOf(again.durable())
        third, summary = restart()
        self.assertEqual(summary["records_replayed"], 1)
        self.assertEqual(sorted(third.store.series), ["after", "before"])
