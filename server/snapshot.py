"""
Snapshots of the store: a versioned, gzip-compressed JSON-lines file.

Line 1 is a header (format name, version, tier steps, watermarks and the
number of the first journal file the snapshot does not cover); then one line
per series, its closed buckets as base64 of the raw little-endian columns and
its open buckets as JSON; last, a trailer with the series count, so a
truncated file is caught even where gzip would not notice.

Taking a snapshot does not freeze the reactor.  The journal is rotated
first; the series are then encoded a few milliseconds' worth per reactor turn.
A series that is about to change before its turn is encoded at once (the
snapshotter observes the store meanwhile: L{Snapshotter.series_changing}), so the file
holds every series exactly as it was at the rotation, which is what the
newer journal files start from.
Compression and the write (temporary file, fsync, rename) run in a thread.
"""

import base64
import gzip
import json
import math
import os
import sys
import time
import zlib
from array import array

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from server.aggregate import AGGREGATES, STORED_FIELDS
from server.store import Series, StoredTier

FORMAT = "simplestats-snapshot"
VERSION = 1
SNAPSHOT_NAME = "snapshot.jsonl.gz"


class SnapshotCorrupt(Exception):
    """
    A snapshot file that cannot be read back; the message says where and why.
    """

    def __init__(self, path, problem):
        Exception.__init__(self, "%s: %s" % (path, problem))
        self.path = path


def _column_bytes(column):
    if sys.byteorder != "little":
        column = array(column.typecode, column)
        column.byteswap()
    return base64.b64encode(column.tobytes()).decode("ascii")


def _column(typecode, text):
    column = array(typecode)
    column.frombytes(base64.b64decode(text, validate=True))
    if sys.byteorder != "little":
        column.byteswap()
    return column


def encode_series(series):
    stored = []
    for tier in series.stored:
        if tier is None or not len(tier):
            stored.append(None)
        else:
            stored.append([_column_bytes(tier.index), [_column_bytes(c) for c in tier.columns]])
    return json.dumps({
        "k": series.key,
        "t": series.type,
        "g": series.gauge,
        "v": series.value,
        "vb": series.value_bucket,
        "f": series.first_seen,
        "l": series.last_seen,
        "r": list(series.ring),
        "u": series.touched,
        "s": stored,
        "o": [[[b, agg.to_json()] for b, agg in sorted(tier.items())] for tier in series.open],
    }, separators=(",", ":")).encode() + b"\n"


def decode_series(obj, ntiers, accuracy):
    series = Series(obj["k"], obj["t"], ntiers)
    series.gauge = obj["g"]
    series.value = obj["v"]
    series.value_bucket = obj["vb"]
    series.first_seen = obj["f"]
    series.last_seen = obj["l"]
    series.ring.extend(tuple(x) for x in obj["r"])
    series.touched = obj["u"]
    width = len(STORED_FIELDS[series.family])
    if len(obj["s"]) != ntiers or len(obj["o"]) != ntiers:
        raise ValueError("series %r has %d tiers, expected %d" % (series.key, len(obj["s"]), ntiers))
    for i, stored in enumerate(obj["s"]):
        if stored is None:
            continue
        tier = StoredTier(width)
        tier.index = _column("I", stored[0])
        tier.columns = [_column("d", text) for text in stored[1]]
        if len(tier.columns) != width or any(len(c) != len(tier.index) for c in tier.columns):
            raise ValueError("series %r tier %d has columns of the wrong shape" % (series.key, i))
        series.stored[i] = tier
    cls = AGGREGATES[series.family]
    for i, buckets in enumerate(obj["o"]):
        for bucket, data in buckets:
            series.open[i][bucket] = cls.from_json(data, accuracy)
    return series


def write_file(directory, chunks):
    """
    Compress and write C{chunks} atomically as the snapshot.  Returns the
    size written.  Runs in a thread.
    """
    path = os.path.join(directory, SNAPSHOT_NAME)
    temp = path + ".tmp"
    data = gzip.compress(b"".join(chunks), compresslevel=1)
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(data)


def load(path, store):
    """
    Fill C{store} from the snapshot at C{path}.  Returns the header.

    @raise SnapshotCorrupt: naming what is wrong.
    """
    try:
        with gzip.open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except (OSError, EOFError, ValueError, zlib.error) as e:
        # zlib.error (an invalid deflate stream) is no OSError.
        raise SnapshotCorrupt(path, "cannot decompress: %s" % (e,))
    if lines and lines[-1] == b"":
        lines.pop()
    try:
        header = json.loads(lines[0])
    except (ValueError, IndexError):
        raise SnapshotCorrupt(path, "no header line")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotCorrupt(path, "not a SimpleStats snapshot")
    if header.get("version") != VERSION:
        raise SnapshotCorrupt(path, "format version %r, this server reads %d"
                              % (header.get("version"), VERSION))
    steps = [t.step for t in store.tiers]
    if header.get("steps") != steps:
        raise SnapshotCorrupt(path, "written with tier steps %r but the retentions setting has %r"
                              % (header.get("steps"), steps))
    watermarks = header.get("watermarks")
    if (not isinstance(watermarks, list) or len(watermarks) != len(steps)
            or not all(isinstance(w, (int, float)) and math.isfinite(w) for w in watermarks)):
        raise SnapshotCorrupt(path, "header has no valid watermarks (one time per tier)")
    try:
        trailer = json.loads(lines[-1])
    except ValueError:
        trailer = None
    if len(lines) < 2 or not isinstance(trailer, dict) or trailer.get("end") is not True:
        raise SnapshotCorrupt(path, "truncated: no trailer line")
    body = lines[1:-1]
    if trailer.get("series") != len(body):
        raise SnapshotCorrupt(path, "trailer says %r series, file holds %d"
                              % (trailer.get("series"), len(body)))
    ntiers = len(store.tiers)
    for number, line in enumerate(body, 2):
        try:
            series = decode_series(json.loads(line), ntiers, store.accuracy)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise SnapshotCorrupt(path, "line %d: %s" % (number, e))
        store.series[series.key] = series
        for i, buckets in enumerate(series.open):
            for bucket in buckets:
                store.open_index[i].setdefault(bucket, set()).add(series)
    store.watermarks = list(watermarks)
    return header


class Snapshotter:
    """
    Takes snapshots of a store without blocking the reactor for long.

    @ivar status: what the last snapshot did, for C{/api/health}.
    """

    log = Logger()

    def __init__(self, store, journal, directory, clock, run_in_thread,
                 slice_seconds=0.01, timer=time.perf_counter):
        self.store = store
        self.journal = journal
        self.directory = directory
        self.clock = clock
        self.run_in_thread = run_in_thread
        self.slice_seconds = slice_seconds
        self.timer = timer
        self.pending = None
        self.chunks = None
        self.running = None
        # The journal's bytes at the last rotation (see take_if_journal_over).
        self.journal_mark = journal.written
        self.status = {"last": None, "duration": None, "bytes": None, "series": None,
                       "max_block": None, "error": None}
        self.holds = 0

    def hold(self):
        """
        An import is being applied: until L{release}, a snapshot waits
        before it rotates the journal, so that none holds half an import
        (a restart replays an import only whole, see L{server.recovery}).
        """
        self.holds += 1

    def release(self):
        self.holds -= 1

    def take(self):
        """
        Start a snapshot (or join the one under way).  The Deferred fires
        with the status when the file is on disk, or errbacks.
        """
        if self.running is not None:
            return self.running[0]
        done = defer.Deferred()
        self.running = (done, self.clock.seconds(), None, [])
        self._settle()
        return done

    def _settle(self):
        """
        The journal is rotated once the store holds every point of the
        current file: the pending runs are folded first, a few milliseconds
        per reactor turn, then what came meanwhile and the rotation in one.
        """
        done, started, _, blocks = self.running
        began = self.timer()
        if not self.store.settle(deadline=began + self.slice_seconds, timer=self.timer):
            blocks.append(self.timer() - began)
            self.clock.callLater(0, self._settle)
            return
        if self.holds:
            blocks.append(self.timer() - began)
            self.clock.callLater(0.05, self._settle)
            return
        try:
            seq = self.journal.rotate()
            self.journal_mark = self.journal.written
        except OSError:
            # A full disk fails the journal before the snapshot is begun:
            # /api/health must say so all the same.
            self.running = None
            failure = Failure()
            self._report(failure)
            done.errback(failure)
            return
        header = {
            "format": FORMAT,
            "version": VERSION,
            "created": started,
            "journal_seq": seq,
            "steps": [t.step for t in self.store.tiers],
            "watermarks": list(self.store.watermarks),
        }
        self.chunks = [json.dumps(header).encode() + b"\n"]
        self.pending = dict(self.store.series)
        self.store.observe(self)
        blocks.append(self.timer() - began)
        self.running = (done, started, seq, blocks)
        self.clock.callLater(0, self._step)

    def take_if_journal_over(self, limit):
        """
        Start a snapshot when more than C{limit} bytes were journaled since
        the last one began (what a restart would replay); else L{None}.
        """
        if self.running is not None:
            return None
        if self.journal.written + self.journal.pending_bytes - self.journal_mark <= limit:
            return None
        return self.take()

    def series_changing(self, series):
        """
        The store is about to change C{series}: while a snapshot is under
        way and has not written it yet, encode it now, as it was.
        """
        if self.pending and self.pending.get(series.key) is series:
            del self.pending[series.key]
            self.chunks.append(encode_series(series))

    def _step(self):
        blocks = self.running[3]
        began = self.timer()
        deadline = began + self.slice_seconds
        pending = self.pending
        chunks = self.chunks
        timer = self.timer
        while pending:
            for _ in range(50):
                if not pending:
                    break
                _, series = pending.popitem()
                chunks.append(encode_series(series))
            if timer() >= deadline:
                break
        blocks.append(timer() - began)
        if pending:
            self.clock.callLater(0, self._step)
            return
        self.store.unobserve(self)
        count = len(chunks) - 1
        chunks.append(json.dumps({"end": True, "series": count}).encode() + b"\n")
        self.chunks = self.pending = None
        d = self.run_in_thread(write_file, self.directory, chunks)
        d.addCallbacks(self._written, self._failed, callbackArgs=(count,))

    def _written(self, nbytes, count):
        done, started, seq, blocks = self.running
        self.running = None
        self.status = {
            "last": started,
            "duration": self.clock.seconds() - started,
            "bytes": nbytes,
            "series": count,
            "max_block": max(blocks),
            "error": None,
        }
        try:
            self.journal.remove_before(seq)
        except OSError as e:
            self.log.warn("could not remove old journal files: {error}", error=e)
        done.callback(self.status)

    def _failed(self, failure):
        done = self.running[0]
        self.running = None
        self._report(failure)
        done.errback(failure)

    def _report(self, failure):
        self.status = dict(self.status, error="snapshot failed: %s" % (failure.getErrorMessage(),))
        self.log.failure("snapshot failed; the previous snapshot and the journal are kept",
                         failure)
