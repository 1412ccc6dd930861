"""
Durability: journal records, snapshots taken while points keep arriving,
and recovery from a snapshot plus the journal after it.
"""

import gzip
import json
import os
import random

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.durability import snapshot as snapshots
from server.core.ingest import IngestCore
from server.durability.journal import (MAGIC, MARKER, Journal, JournalCorrupt, journal_files, journal_path,
                            read_journal, scan_journal)
from server.core.model import (COUNTER, DISTRIBUTION, GAUGE, HISTOGRAM, SAMPLE, SET, TIMER, Partial,
                          Sample)
from server.receivers.parse_tuple import parse_line
from server.core.query import bucket_rows
from server.durability.recovery import StartupError, recover, replay
from server.core.sketch import Sketch
from server.durability.snapshot import SNAPSHOT_NAME, Snapshotter, encode_series
from server.core.store import Store
from server.test.support import T0, settings_for, synchronous

RETENTIONS = "5s:6h,1m:8d,1h:30d"
TYPES = (COUNTER, GAUGE, TIMER, HISTOGRAM, DISTRIBUTION, SAMPLE, SET)


class TurnClock(Clock):
    """
    A Clock whose C{advance} runs only the calls due when it is called: a
    C{callLater(0)} made by one of them waits for the next C{advance}, as a
    reactor runs it on its next turn, after other events got in.
    """

    def advance(self, amount):
        self.rightNow += amount
        due = sorted((c for c in self.calls if c.getTime() <= self.rightNow),
                     key=lambda c: c.getTime())
        for call in due:
            if call in self.calls:
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class CountingTimer:
    """
    A C{perf_counter} stand-in that moves one second per reading, so every
    slice of a snapshot encodes one batch of series.
    """

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


class Server:
    """
    The pieces C{makeService} wires for persistence: settings, a store, a
    journal and an ingest core on a clock, over one data directory.
    """

    def __init__(self, testcase, clock, directory=None, now=T0):
        self.settings = settings_for(testcase, "--retentions", RETENTIONS)
        self.directory = directory or self.settings.data_dir
        self.clock = clock
        self.store = Store(self.settings.tiers, self.settings.sketch_accuracy,
                           self.settings.late_grace, now=now)
        self.journal = Journal(self.directory, self.settings.journal_fsync_interval)
        testcase.addCleanup(self.journal.close)
        self.core = IngestCore(self.settings, clock, self.store, self.journal)

    def snapshotter(self, run_in_thread=synchronous, timer=None):
        return Snapshotter(self.store, self.journal, self.directory, self.clock, run_in_thread,
                           slice_seconds=0.5, timer=timer or CountingTimer())

    def submit(self, testcase, items, **kwargs):
        testcase.assertEqual(self.core.submit(items, "test", **kwargs), [])

    def recovered(self, testcase, move_corrupt_aside=False):
        """
        A new server over the same directory after a restart, as
        C{makeService} builds it: recovery, then a tick.
        """
        self.journal.flush()
        again = Server(testcase, self.clock, self.directory, now=self.clock.seconds())
        again.summary = recover(self.directory, again.store, again.core, move_corrupt_aside,
                                self.clock.seconds())
        again.store.tick(self.clock.seconds())
        return again


def state(store, touched=True):
    """
    Everything a store holds, in a form that compares (NaN included): each
    series as a snapshot writes it, the watermarks and the open index.
    """
    series = {}
    for key, s in store.series.items():
        obj = json.loads(encode_series(s))
        if not touched:
            # JSON journal entries carry no arrival time: replay marks the
            # series touched at the restart.
            del obj["u"]
        series[key] = obj
    index = [sorted((b, sorted(s.key for s in members)) for b, members in tier.items() if members)
             for tier in store.open_index]
    return json.dumps({"series": series, "watermarks": store.watermarks, "index": index},
                      sort_keys=True)


def reads(store):
    """
    What the API can read: every bucket of every tier of every series.
    """
    out = {}
    for key, s in store.series.items():
        out[key] = [sorted(bucket_rows(store, s, i, 0, 2 ** 32 - 1).items())
                    for i in range(len(store.tiers))]
    return repr(sorted(out.items()))


def run_snapshot(clock, snapshotter, between=None):
    """
    Take a snapshot, one cooperative step per clock turn, calling
    C{between()} before each turn; returns the Deferred, fired.
    """
    d = snapshotter.take()
    for _ in range(10000):
        if d.called:
            return d
        if between is not None:
            between()
        clock.advance(0)
    raise AssertionError("snapshot never finished")


def sketch_of(values):
    sketch = Sketch()
    for value in values:
        sketch.add(value)
    return sketch


def mixed_items(rng, names, ts):
    """
    One point for each of C{names} (its type is in its name): raw values
    with rates and deltas, and now and then a client partial.
    """
    items = []
    for name in names:
        metric_type = name.split(".")[1]
        tags = (("host", "web%d" % (rng.randrange(2),)),) if name.endswith("tagged") else ()
        if rng.random() < 0.2:
            values = [round(rng.uniform(-50, 500), 3) for _ in range(rng.randint(1, 4))]
            if metric_type == COUNTER:
                fields = {"count": float(rng.randint(1, 9))}
            elif metric_type == GAUGE:
                fields = {"last": values[-1], "count": float(len(values)), "sum": sum(values),
                          "min": min(values), "max": max(values)}
            elif metric_type == SET:
                fields = {"members": sorted({"m%d" % rng.randrange(20) for _ in values})}
            else:
                fields = {"count": float(len(values)), "sum": sum(values), "min": min(values),
                          "max": max(values), "last": values[-1], "sketch": sketch_of(values)}
            items.append(Partial(name, tags, metric_type, fields, ts))
            continue
        if metric_type == SET:
            value = "m%d" % (rng.randrange(20),)
        else:
            value = round(rng.uniform(-50, 500), 3)
        rate = rng.choice([1.0, 1.0, 0.5, 0.1]) if metric_type in (COUNTER, TIMER, SAMPLE) else 1.0
        delta = metric_type == GAUGE and rng.random() < 0.4
        items.append(Sample(name, tags, metric_type, value, ts, rate, delta))
    return items


def series_names(count):
    names = []
    for n in range(count):
        metric_type = TYPES[n % len(TYPES)]
        names.append("s%03d.%s%s" % (n, metric_type, ".tagged" if n % 5 == 0 else ""))
    return names


class JournalTests(SynchronousTestCase):

    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def written(self, *records):
        journal = Journal(self.directory)
        for kind, payload in records:
            if kind == "j":
                journal.append(payload)
            else:
                journal.append_raw(kind, payload[0], payload[1])
        journal.close()
        return journal_path(self.directory, journal.seq)

    RECORDS = [
        ("j", [["s", "a;host=x", "c", 2.0, T0 + 0.25, 0.5, 0], ["d", "gone"]]),
        (b"u", (T0 + 1.5, b"a:1|c\nb:2|ms|@0.5")),
        (b"t", (T0 + 2.0, b'["x", null, "3c"]')),
        ("j", [["p", "t", "ms", {"count": 2.0, "sum": 3.0, "min": 1.0, "max": 2.0}, T0]]),
        (b"u", (T0 + 3.0, b"")),
    ]

    def expected(self):
        return [payload if kind == "j" else ({b"u": "udp", b"t": "tcp"}[kind],) + payload
                for kind, payload in self.RECORDS]

    def test_round_trip(self):
        """Entries and raw packets and lines with their arrival times read back as written."""
        path = self.written(*self.RECORDS)
        self.assertEqual(read_journal(path), (self.expected(), None))

    def test_nothing_before_flush(self):
        """Appended records reach the file only when flushed."""
        journal = Journal(self.directory)
        self.addCleanup(journal.close)
        journal.append([["d", "x"]])
        path = journal_path(self.directory, journal.seq)
        self.assertEqual(read_journal(path), ([], None))
        journal.flush()
        self.assertEqual(read_journal(path), ([[["d", "x"]]], None))
        self.assertEqual(journal.pending, [])

    def cut(self, path, keep):
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:keep] if keep >= 0 else data[:len(data) + keep])

    def test_torn_last_record_dropped(self):
        """A last record cut short by a crash is left out and reported with its number."""
        path = self.written(*self.RECORDS[:3])
        self.cut(path, -3)
        records, torn = read_journal(path)
        self.assertEqual(records, self.expected()[:2])
        self.assertEqual(torn[0], 3)
        self.assertIn("cut short", torn[1])

    def test_torn_header_dropped(self):
        """A crash inside the last record's header loses only that record."""
        path = self.written(*self.RECORDS[:2])
        size = os.path.getsize(path)
        self.written(*self.RECORDS[:2])  # a second file; the first is ours
        with open(path, "ab") as f:
            f.write(MARKER[:3])
        records, torn = read_journal(path)
        self.assertEqual(records, self.expected()[:2])
        self.assertEqual(torn, (3, "record header cut short (3 bytes)"))
        self.assertEqual(os.path.getsize(path), size + 3)

    def test_bad_checksum_in_last_record(self):
        """A last record whole in length whose checksum fails is damage, not torn: a crash cuts a record short, it does not change its bytes."""
        path = self.written(*self.RECORDS[:2])
        with open(path, "r+b") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last[0] ^ 0xFF]))
        error = self.assertRaises(JournalCorrupt, read_journal, path)
        self.assertEqual(error.record, 2)
        self.assertIn("checksum mismatch", str(error))
        scan = scan_journal(path)
        self.assertEqual((scan.records, scan.torn), (self.expected()[:1], None))

    def test_damage_in_the_middle(self):
        """A damaged record with records after it raises JournalCorrupt naming the file and record."""
        path = self.written(*self.RECORDS)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        # Flip a byte of the second record's payload.
        first = len(MAGIC) + 17 + int.from_bytes(data[len(MAGIC) + 4:len(MAGIC) + 8], "big")
        data[first + 17 + 10] ^= 0x01
        with open(path, "wb") as f:
            f.write(bytes(data))
        error = self.assertRaises(JournalCorrupt, read_journal, path)
        self.assertEqual((error.path, error.record), (path, 2))
        self.assertIn(path, str(error))
        self.assertIn("record 2", str(error))

    def test_bad_magic(self):
        """A file that is not a journal is corrupt, not silently empty."""
        path = journal_path(self.directory, 7)
        with open(path, "wb") as f:
            f.write(b"hello world\n")
        error = self.assertRaises(JournalCorrupt, read_journal, path)
        self.assertIn("bad magic", str(error))

    def test_killed_before_magic(self):
        """A file cut inside its magic holds nothing and says so; an empty file holds nothing."""
        path = journal_path(self.directory, 3)
        with open(path, "wb") as f:
            f.write(MAGIC[:2])
        self.assertEqual(read_journal(path), ([], (0, "empty file")))
        with open(path, "wb"):
            pass
        self.assertEqual(read_journal(path), ([], None))

    def test_rotate_and_remove(self):
        """Rotation starts the next numbered file; files before a number can be removed."""
        journal = Journal(self.directory)
        self.addCleanup(journal.close)
        journal.append([["d", "one"]])
        self.assertEqual(self.successResultOf(journal.rotate()), 2)
        journal.append([["d", "two"]])
        self.assertEqual(self.successResultOf(journal.rotate()), 3)
        self.assertEqual([seq for seq, _ in journal_files(self.directory)], [1, 2, 3])
        self.assertEqual(read_journal(journal_path(self.directory, 2)), ([[["d", "two"]]], None))
        journal.remove_before(3)
        self.assertEqual([seq for seq, _ in journal_files(self.directory)], [3])
        # A journal opened after a restart goes on after the newest file.
        self.assertEqual(Journal(self.directory).seq, 4)

    def test_failed_rotation_keeps_the_current_file(self):
        """When the next file cannot be opened, rotation fails and records still reach the current file."""
        journal = RefusingJournal(self.directory)
        self.addCleanup(journal.close)
        journal.append([["d", "before"]])
        journal.refuse = True
        self.failureResultOf(journal.rotate(), OSError)
        self.assertEqual(journal.seq, 1)
        # Whatever is opened next may get the number of a closed descriptor.
        other = os.path.join(self.directory, "other")
        with open(other, "wb"):
            journal.append([["d", "after"]])
            journal.flush()
        self.assertEqual(os.path.getsize(other), 0)
        self.assertEqual(read_journal(journal_path(self.directory, 1)),
                         ([[["d", "before"]], [["d", "after"]]], None))
        journal.refuse = False
        self.assertEqual(self.successResultOf(journal.rotate()), 2)


class RefusingJournal(Journal):
    """
    A journal whose next file cannot be opened while C{refuse} is set (as
    with too many open files or a full disk).
    """

    refuse = False

    def _open(self, seq):
        if self.refuse:
            raise OSError(24, "Too many open files")
        return Journal._open(self, seq)


class SnapshotRoundTripTests(SynchronousTestCase):

    def populated(self):
        clock = TurnClock()
        clock.advance(T0)
        server = Server(self, clock)
        rng = random.Random(7)
        names = series_names(len(TYPES) * 3)
        # Two hours of points: closed buckets in every tier, some still open.
        for k in range(0, 7200, 37):
            clock.advance(37)
            server.submit(self, mixed_items(rng, rng.sample(names, 6), None))
            server.store.tick(clock.seconds())
        # A late point and a historical one, not yet merged by a tick.
        server.submit(self, [Sample(names[0], (("host", "web0"),), COUNTER, 5.0,
                                    clock.seconds() - 600),
                             Sample(names[2], (), TIMER, 9.0, clock.seconds() - 3 * 86400)])
        return clock, server

    def test_encode_decode_every_series(self):
        """Each series decodes to one that encodes identically, for every type."""
        _, server = self.populated()
        self.assertEqual({s.type for s in server.store.series.values()}, set(TYPES))
        for series in server.store.series.values():
            text = encode_series(series)
            back = snapshots.decode_series(json.loads(text), 3, server.store.accuracy)
            self.assertEqual(encode_series(back), text)

    def test_snapshot_round_trip(self):
        """A store loaded from its snapshot holds and reads exactly what the original did, and goes on alike."""
        clock, server = self.populated()
        self.assertTrue(any(s.open[0] for s in server.store.series.values()))
        self.assertTrue(any(s.stored[2] for s in server.store.series.values()))
        d = run_snapshot(clock, server.snapshotter())
        status = self.successResultOf(d)
        self.assertEqual(status["series"], len(server.store.series))
        self.assertIsNone(status["error"])
        self.assertEqual(server.store.observers, [])

        loaded = Store(server.settings.tiers, server.settings.sketch_accuracy,
                       server.settings.late_grace)
        header = snapshots.load(os.path.join(server.directory, SNAPSHOT_NAME), loaded)
        self.assertEqual(header["journal_seq"], server.journal.seq)
        self.assertEqual(state(loaded), state(server.store))
        self.assertEqual(reads(loaded), reads(server.store))
        # The open aggregates came back whole (sketches, sets, last times).
        later = clock.seconds() + 2
        rng_a, rng_b = random.Random(3), random.Random(3)
        names = sorted(server.store.series)
        for store, rng in ((server.store, rng_a), (loaded, rng_b)):
            core = IngestCore(server.settings, clock, store, server.journal)
            for _ in range(5):
                self.assertEqual(core.submit(mixed_items(rng, names, later), "test"), [])
            store.tick(later + 7200)
        self.assertEqual(state(loaded), state(server.store))


class SnapshotWhileArrivingTests(SynchronousTestCase):

    def test_snapshot_under_load_plus_journal(self):
        """A snapshot taken while points, ticks and deletions interleave its steps, plus the journal, equals the store that got every point."""
        self.check(seed=1, series=400)

    def test_snapshot_under_load_other_seed(self):
        """The same with other points, fewer series and a tick on every step."""
        self.check(seed=2, series=600)

    def check(self, seed, series):
        clock = TurnClock()
        clock.advance(T0)
        subject = Server(self, clock)
        reference = Server(self, clock)
        rng = random.Random(seed)
        names = series_names(series)
        limits = subject.settings.limits

        def feed(items, raw=None):
            for server in (subject, reference):
                if raw is None:
                    server.submit(self, items)
                else:
                    server.submit(self, items, atomic=True, raw=raw)

        def tick():
            for server in (subject, reference):
                server.store.tick(clock.seconds())

        for k in range(120):
            clock.advance(1)
            feed(mixed_items(rng, rng.sample(names, 20), None))
            tick()

        steps = [0]

        def between():
            # Points for buckets still open, new series, a raw TCP line
            # journaled as it arrived, deletions and rollup ticks.
            steps[0] += 1
            clock.advance(rng.choice([0, 1, 2, 5]))
            now = clock.seconds()
            chosen = rng.sample(names, 30) + ["new%d.%s" % (steps[0], rng.choice(TYPES))]
            feed(mixed_items(rng, chosen, rng.choice([None, now - rng.uniform(0, 3)])))
            line = b'["line.c", %r, "%dc"]' % (now - 1, rng.randint(1, 9))
            feed(parse_line(line, limits).items, raw=(b"t", line))
            if steps[0] % 3 == 0:
                gone = [rng.choice(names)]
                for server in (subject, reference):
                    server.core.delete(gone)
            tick()

        d = run_snapshot(clock, subject.snapshotter(), between)
        self.successResultOf(d)
        self.assertGreaterEqual(steps[0], 2)
        # More points after the snapshot, in the newer journal file only.
        for k in range(30):
            clock.advance(1)
            feed(mixed_items(rng, rng.sample(names, 10), None))
            tick()

        recovered = subject.recovered(self)
        self.assertEqual(recovered.summary["torn"], [])
        self.assertGreater(recovered.summary["records_replayed"], 0)
        reference.store.tick(clock.seconds())
        self.assertEqual(reads(recovered.store), reads(reference.store))
        self.assertEqual(state(recovered.store, touched=False), state(reference.store, touched=False))
        # Both close the same buckets from here on.
        clock.advance(7200)
        recovered.store.tick(clock.seconds())
        reference.store.tick(clock.seconds())
        self.assertEqual(state(recovered.store, touched=False), state(reference.store, touched=False))


class RecoveryTests(SynchronousTestCase):

    def setUp(self):
        self.clock = TurnClock()
        self.clock.advance(T0)
        self.server = Server(self, self.clock)
        self.path = os.path.join(self.server.directory, SNAPSHOT_NAME)

    def fill(self, seed, rounds=20):
        rng = random.Random(seed)
        names = series_names(14)
        for _ in range(rounds):
            self.clock.advance(3)
            self.server.submit(self, mixed_items(rng, names, None))
            self.server.store.tick(self.clock.seconds())

    def test_restart_from_snapshot_and_journal(self):
        """A restart reads the snapshot and replays the journal after it: nothing lost or doubled."""
        self.fill(1)
        self.successResultOf(run_snapshot(self.clock, self.server.snapshotter()))
        snapshotted = len(self.server.store.series)
        self.fill(2)
        recovered = self.server.recovered(self)
        self.server.store.tick(self.clock.seconds())
        self.assertEqual(recovered.summary["series_loaded"], snapshotted)
        self.assertEqual(reads(recovered.store), reads(self.server.store))

    def test_raw_line_replayed_at_arrival_time(self):
        """A TCP line meaning "now" is replayed at the time it arrived, not at the restart."""
        line = b'["hits", null, "4c"]'
        items = parse_line(line, self.server.settings.limits).items
        self.server.submit(self, items, atomic=True, raw=(b"t", line))
        self.clock.advance(1000)
        recovered = self.server.recovered(self)
        series = recovered.store.series["hits"]
        self.assertEqual(bucket_rows(recovered.store, series, 0, 0, 2 ** 32 - 1),
                         {int(T0 // 5): (4.0,)})

    def test_journaled_import_outlived_by_the_restart(self):
        """A journaled point that every tier has forgotten by the restart is skipped; the start goes on."""
        self.clock.advance(40 * 86400)
        now = self.clock.seconds()
        oldest = now - 30 * 86400
        self.server.submit(self, [Sample("old", (), COUNTER, 1.0, oldest + 7200),
                                  Sample("old", (), COUNTER, 2.0, now - 86400)])
        self.clock.advance(3600)
        recovered = self.server.recovered(self)
        self.assertEqual(recovered.summary["records_replayed"], 2)
        self.clock.advance(86400)
        recovered = self.server.recovered(self)
        self.assertEqual(recovered.summary["records_replayed"], 1)
        series = recovered.store.series["old"]
        self.assertEqual(bucket_rows(recovered.store, series, 2, 0, 2 ** 32 - 1),
                         {int((now - 86400) // 3600): (2.0,)})

    def snapshot_lines(self):
        """
        Take a snapshot of one series and return its lines.
        """
        self.fill(1)
        self.successResultOf(run_snapshot(self.clock, self.server.snapshotter()))
        with gzip.open(self.path, "rb") as f:
            return f.read().split(b"\n")

    def corrupt(self, data):
        with open(self.path, "wb") as f:
            f.write(data)

    def test_corrupt_snapshot_stops_startup(self):
        """A snapshot that is not gzip stops the start naming the file and the way out."""
        self.fill(1)
        self.corrupt(b"\x1f\x8bnot really gzip")
        error = self.assertRaises(StartupError, self.server.recovered, self)
        self.assertIn(self.path, str(error))
        self.assertIn("--move-corrupt-aside", str(error))
        self.assertTrue(os.path.exists(self.path))

    def test_truncated_snapshot_stops_startup(self):
        """A snapshot that lost its last lines is caught by the trailer."""
        self.fill(1)
        self.successResultOf(run_snapshot(self.clock, self.server.snapshotter()))
        with gzip.open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        self.corrupt(gzip.compress(b"\n".join(lines[:3]) + b"\n"))
        error = self.assertRaises(StartupError, self.server.recovered, self)
        self.assertIn(self.path, str(error))
        self.assertIn("truncated", str(error))

    def test_snapshot_of_other_tiers(self):
        """A snapshot written with other tier steps is refused, saying which."""
        lines = self.snapshot_lines()
        header = json.loads(lines[0])
        header["steps"] = [10, 60, 3600]
        self.corrupt(gzip.compress(b"\n".join([json.dumps(header).encode()] + lines[1:])))
        error = self.assertRaises(StartupError, self.server.recovered, self)
        self.assertIn("tier steps [10, 60, 3600]", str(error))

    def test_snapshot_without_watermarks(self):
        """A header that lost its watermarks, or has the wrong number, is refused by name."""
        lines = self.snapshot_lines()
        header = json.loads(lines[0])
        for bad in (None, [0], ["x", 0, 0]):
            if bad is None:
                del header["watermarks"]
            else:
                header["watermarks"] = bad
            self.corrupt(gzip.compress(b"\n".join([json.dumps(header).encode()] + lines[1:])))
            error = self.assertRaises(StartupError, self.server.recovered, self)
            self.assertIn(self.path, str(error))
            self.assertIn("watermarks", str(error))

    def test_corrupt_snapshot_moved_aside(self):
        """With move_corrupt_aside the bad snapshot is renamed and the journal alone is replayed."""
        self.fill(1)
        self.corrupt(b"garbage")
        recovered = self.server.recovered(self, move_corrupt_aside=True)
        aside = "%s.corrupt-%d" % (self.path, self.clock.seconds())
        self.assertEqual(recovered.summary["moved_aside"], [aside])
        self.assertTrue(os.path.exists(aside))
        self.assertFalse(os.path.exists(self.path))
        # Nothing was ever snapshotted: the journal holds every point.
        self.server.store.tick(self.clock.seconds())
        self.assertEqual(reads(recovered.store), reads(self.server.store))

    def test_corrupt_journal(self):
        """A journal damaged in the middle stops the start naming it, or is moved aside keeping every other record."""
        self.fill(1)
        self.server.journal.flush()
        path = journal_path(self.server.directory, self.server.journal.seq)
        records, _ = read_journal(path)
        with open(path, "r+b") as f:
            f.seek(len(MAGIC) + 12)
            f.write(b"\xff\xff")
        error = self.assertRaises(StartupError, self.server.recovered, self)
        self.assertIn(path, str(error))
        self.assertIn("record 1", str(error))
        recovered = self.server.recovered(self, move_corrupt_aside=True)
        self.assertEqual(recovered.summary["moved_aside"],
                         ["%s.corrupt-%d" % (path, self.clock.seconds())])
        self.assertEqual(recovered.summary["damaged"], [path + ":1"])
        # Every record but the damaged one is replayed, and kept under the
        # file's name for the next start.
        self.assertEqual(read_journal(path), (records[1:], None))
        expected = Server(self, self.clock)
        self.assertEqual(recovered.summary["records_replayed"], replay(expected.core, records[1:]))
        expected.store.tick(self.clock.seconds())
        self.assertEqual(reads(recovered.store), reads(expected.store))
        self.assertNotEqual(reads(recovered.store), {})

    def test_torn_journal_reported(self):
        """A torn last journal record is dropped, reported, and the records before it replayed."""
        self.server.submit(self, [Sample("a", (), COUNTER, 1.0)])
        self.server.journal.flush()
        self.server.submit(self, [Sample("a", (), COUNTER, 2.0)])
        self.server.journal.flush()
        path = journal_path(self.server.directory, self.server.journal.seq)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 4)
        recovered = self.server.recovered(self)
        self.assertEqual(len(recovered.summary["torn"]), 1)
        self.assertTrue(recovered.summary["torn"][0].startswith(path + ":"))
        series = recovered.store.series["a"]
        self.assertEqual(list(bucket_rows(recovered.store, series, 0, 0, 2 ** 32 - 1).values()),
                         [(1.0,)])


class FailedSnapshotTests(SynchronousTestCase):

    def setUp(self):
        self.clock = TurnClock()
        self.clock.advance(T0)
        self.server = Server(self, self.clock)
        self.path = os.path.join(self.server.directory, SNAPSHOT_NAME)
        self.rng = random.Random(5)
        self.names = series_names(10)

    def fill(self):
        for _ in range(10):
            self.clock.advance(2)
            self.server.submit(self, mixed_items(self.rng, self.names, None))
            self.server.store.tick(self.clock.seconds())

    def check_failure(self, snapshotter, reason, prepare=lambda: None):
        self.fill()
        self.successResultOf(run_snapshot(self.clock, self.server.snapshotter()))
        with open(self.path, "rb") as f:
            previous = f.read()
        self.fill()
        prepare()
        before = [seq for seq, _ in journal_files(self.server.directory)]
        failure = self.failureResultOf(run_snapshot(self.clock, snapshotter))
        self.flushLoggedErrors()
        self.assertIn(reason, snapshotter.status["error"])
        self.assertTrue(snapshotter.status["error"].startswith("snapshot failed: "))
        self.assertEqual(self.server.store.observers, [])
        self.assertIsNone(snapshotter.running)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), previous)
        # The journal files the previous snapshot needs are all kept.
        after = [seq for seq, _ in journal_files(self.server.directory)]
        self.assertEqual(after[:len(before)], before)
        self.fill()
        recovered = self.server.recovered(self)
        self.server.store.tick(self.clock.seconds())
        self.assertEqual(reads(recovered.store), reads(self.server.store))
        return failure

    def test_write_fails(self):
        """A write that fails keeps the previous snapshot and the journal, and says why in the status."""
        snapshotter = self.server.snapshotter(
            run_in_thread=lambda f, *a: defer.fail(OSError(28, "No space left on device")))
        failure = self.check_failure(snapshotter, "No space left on device")
        failure.trap(OSError)

    def test_unwritable_directory(self):
        """When the temporary file cannot be created the snapshot fails the same way."""
        snapshotter = self.server.snapshotter()
        failure = self.check_failure(snapshotter, "Is a directory",
                                     lambda: os.makedirs(self.path + ".tmp"))
        failure.trap(OSError)

    def test_next_snapshot_after_failure(self):
        """After a failed write the next snapshot succeeds, clears the error and drops old journal files."""
        self.fill()
        failing = self.server.snapshotter(run_in_thread=lambda f, *a: defer.fail(OSError("boom")))
        self.failureResultOf(run_snapshot(self.clock, failing)).trap(OSError)
        self.flushLoggedErrors()
        self.assertIn("boom", failing.status["error"])
        self.fill()
        status = self.successResultOf(run_snapshot(self.clock, failing_then_ok(failing)))
        self.assertIsNone(status["error"])
        self.assertEqual([seq for seq, _ in journal_files(self.server.directory)],
                         [self.server.journal.seq])

    def test_join_the_one_under_way(self):
        """Asking for a snapshot while one is under way joins it."""
        self.fill()
        snapshotter = self.server.snapshotter()
        first = snapshotter.take()
        self.assertIs(snapshotter.take(), first)
        self.clock.advance(0)
        self.successResultOf(first)


def failing_then_ok(snapshotter):
    snapshotter.run_in_thread = synchronous
    return snapshotter


class PendingSnapshotTests(SynchronousTestCase):

    def test_points_pending_when_a_snapshot_starts(self):
        """statsd points taken but not yet folded when a snapshot starts are in it: after a restart each is counted once."""
        from server.receivers.statsd import StatsdProtocol

        clock = TurnClock()
        clock.advance(T0)
        server = Server(self, clock)
        proto = StatsdProtocol(server.core, server.settings.limits, clock)
        peer = ("127.0.0.1", 40000)
        for _ in range(10):
            proto.datagramReceived(b"hits:1|c\nbytes:512|c", peer)
        self.assertEqual(sorted(len(s.run) for s in server.store.running), [10, 10])
        self.successResultOf(run_snapshot(clock, server.snapshotter()))
        for _ in range(5):
            proto.datagramReceived(b"hits:1|c", peer)
        recovered = server.recovered(self)
        server.store.settle()
        server.store.tick(clock.seconds())
        recovered.store.settle()
        self.assertEqual(recovered.store.series["hits"].value, 15.0)
        self.assertEqual(recovered.store.series["bytes"].value, 5120.0)
        self.assertEqual(reads(recovered.store), reads(server.store))


class EarlySnapshotTests(SynchronousTestCase):

    def test_snapshot_starts_when_the_journal_passes_the_limit(self):
        """A snapshot starts early once more than the limit was journaled since the last one; a restart then replays only what came after it."""
        clock = TurnClock()
        clock.advance(T0)
        server = Server(self, clock)
        snapshotter = server.snapshotter()
        self.assertIsNone(snapshotter.take_if_journal_over(1000))
        for n in range(40):
            server.submit(self, [Sample("c%d" % (n % 4), (), COUNTER, 1.0)])
        server.journal.flush()
        self.assertGreater(server.journal.written, 1000)
        d = snapshotter.take_if_journal_over(1000)
        self.assertIsNotNone(d)
        self.successResultOf(run_snapshot(clock, snapshotter))
        self.assertEqual([seq for seq, _ in journal_files(server.directory)], [2])
        self.assertIsNone(snapshotter.take_if_journal_over(1000))
        server.submit(self, [Sample("c0", (), COUNTER, 1.0)])
        self.assertIsNone(snapshotter.take_if_journal_over(1000))
        recovered = server.recovered(self)
        self.assertEqual(recovered.summary["records_replayed"], 1)
        recovered.store.settle()
        self.assertEqual(recovered.store.series["c0"].value, 11.0)
