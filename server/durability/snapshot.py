"""
Snapshots of the store: a versioned, gzip-compressed JSON-lines file.

Line 1 is a header (format name, version, tier steps, watermarks, the
number of the first journal file the snapshot does not cover, and the state
kept beside the series: events and dashboards, absent from older files); then one line
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

from server.core.aggregate import STORED_FIELDS, aggregate_from_json, exact_form, restore_exact
from server.core.cardinality import EXACT_LIMIT
from server.core.model import GAUGE, SET
from server.durability.datadir import fsync_directory, new_private_file
from server.durability.tiers import convert_series, convert_watermarks, plan as plan_tiers
from server.core.store import Series, StoredTier

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


class SnapshotUnreadable(Exception):
    """
    The snapshot file is there but the system refuses to read it (no
    permission, an I/O error): not corruption, never moved aside.
    """

    def __init__(self, path, error):
        Exception.__init__(self, "cannot read %s: %s (%s)" % (
            path, (error.strerror or str(error)).lower(), error))
        self.path = path
        self.error = error


def _refused(error):
    """
    Whether an C{OSError} met reading is the system refusing (permission,
    I/O, a directory where the file should be), not bad contents: those
    carry an errno, gzip's C{BadGzipFile} does not.
    """
    return isinstance(error, OSError) and error.errno is not None


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


# The form of a series' running totals ("c": [TOTALS_VERSION, total,
# total_sum], counters and distributions only); a snapshot written before
# they existed has none, and its series start counting from 0.
TOTALS_VERSION = 1
# The exact state of open buckets that something was merged into ("x":
# [EXACT_VERSION, [[tier, bucket, form], ...]], form as
# server.core.aggregate.exact_form gives it).  Their forms in "o" hold the
# rounded totals, so a snapshot written before there was an "x" (or read by
# a server that knows none) gives the same rows, merged on without the
# exact sums.
EXACT_VERSION = 1


def encode_series(series):
    stored = []
    for tier in series.stored:
        if tier is None or not len(tier):
            stored.append(None)
        else:
            stored.append([_column_bytes(tier.index), [_column_bytes(c) for c in tier.columns]])
    obj = {
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
    }
    if series.family not in (GAUGE, SET):
        obj["c"] = [TOTALS_VERSION, series.total, series.total_sum]
    exact = [[i, b, form] for i, tier in enumerate(series.open) for b, agg in sorted(tier.items())
             for form in (exact_form(agg),) if form is not None]
    if exact:
        obj["x"] = [EXACT_VERSION, exact]
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode_series(obj, ntiers, accuracy, set_limit=EXACT_LIMIT):
    series = Series(obj["k"], obj["t"], ntiers)
    series.gauge = obj["g"]
    series.value = obj["v"]
    series.value_bucket = obj["vb"]
    series.first_seen = obj["f"]
    series.last_seen = obj["l"]
    series.ring.extend(tuple(x) for x in obj["r"])
    series.touched = obj["u"]
    totals = obj.get("c")
    if totals is not None:
        if totals[0] != TOTALS_VERSION:
            raise ValueError("series %r has totals of version %r, this server reads %d"
                             % (series.key, totals[0], TOTALS_VERSION))
        series.total, series.total_sum = float(totals[1]), float(totals[2])
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
    fam = series.family
    for i, buckets in enumerate(obj["o"]):
        for bucket, data in buckets:
            series.open[i][bucket] = aggregate_from_json(fam, data, accuracy, set_limit)
    exact = obj.get("x")
    if exact is not None:
        if exact[0] != EXACT_VERSION:
            raise ValueError("series %r has exact sums of version %r, this server reads %d"
                             % (series.key, exact[0], EXACT_VERSION))
        for i, bucket, form in exact[1]:
            agg = series.open[i].get(bucket)
            if agg is None:
                raise ValueError("series %r has exact sums for tier %r bucket %r, which is not open"
                                 % (series.key, i, bucket))
            restore_exact(agg, form)
    return series


def write_file(directory, chunks):
    """
    Compress and write C{chunks} atomically as the snapshot.  Returns the
    size written.  Runs in a thread.
    """
    path = os.path.join(directory, SNAPSHOT_NAME)
    temp = path + ".tmp"
    data = gzip.compress(b"".join(chunks), compresslevel=1)
    with open(temp, "wb", opener=new_private_file) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_directory(directory)
    return len(data)


# Decompressed bytes read at a time while loading: a few milliseconds.
READ_CHUNK = 1 << 20


def load(path, store, drop_removed_tiers=False):
    """
    Fill C{store} from the snapshot at C{path}.  Returns the header.

    @raise SnapshotCorrupt: naming what is wrong.
    """
    steps = load_steps(path, store, drop_removed_tiers=drop_removed_tiers)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def load_steps(path, store, progress=None, drop_removed_tiers=False):
    """
    L{load} as a generator that yields after every small piece of work (a
    chunk read, a series decoded), so that a caller can spread the load
    over reactor turns; it returns the header.  C{progress} (a dict), when
    given, is kept up to date: C{series_loaded}, C{series_total} (when the
    header says), C{bytes_read} and C{bytes_total} (of the compressed file).

    The store holds the series decoded so far; on L{SnapshotCorrupt} the
    caller empties it.

    A snapshot written with other tier steps is rebucketed into the
    store's tiers where that is exact (L{server.durability.tiers}); C{store.migration}
    is then the L{server.durability.tiers.Plan} followed (else L{None}).

    @raise SnapshotCorrupt: naming what is wrong.
    @raise SnapshotUnreadable: when the system refuses to read the file.
    @raise TierMismatch: when the tiers cannot change without loss.
    """
    progress = {} if progress is None else progress
    store.migration = None
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise SnapshotUnreadable(path, e)
    with raw:
        progress["bytes_total"] = os.fstat(raw.fileno()).st_size
        progress["bytes_read"] = 0
        progress.setdefault("series_loaded", 0)
        progress.setdefault("series_total", None)
        f = gzip.GzipFile(fileobj=raw, mode="rb")
        lines = _lines(f, path, raw, progress)
        try:
            first = yield from _next_line(lines)
            header = _check_header(path, first, store)
            plan = plan_tiers(header["steps"], store.tiers, drop_removed_tiers)
            store.migration = plan
            if isinstance(header.get("series"), int):
                progress["series_total"] = header["series"]
            ntiers = len(header["steps"])
            number = 1
            previous = None
            while True:
                line = yield from _next_line(lines)
                if line is None:
                    break
                if previous is not None:
                    number += 1
                    _install(path, number, previous, store, ntiers, plan)
                    progress["series_loaded"] += 1
                    yield
                previous = line
        finally:
            lines.close()
    try:
        trailer = json.loads(previous) if previous is not None else None
    except ValueError:
        trailer = None
    if not isinstance(trailer, dict) or trailer.get("end") is not True:
        raise SnapshotCorrupt(path, "truncated: no trailer line")
    if trailer.get("series") != number - 1:
        raise SnapshotCorrupt(path, "trailer says %r series, file holds %d"
                              % (trailer.get("series"), number - 1))
    watermarks = list(header["watermarks"])
    store.watermarks = watermarks if plan is None else convert_watermarks(watermarks, plan)
    return header


def _lines(f, path, raw, progress):
    """
    The lines of the decompressed file, without their newlines, with
    C{None} between chunks (a place to yield); each chunk read is short.
    """
    rest = b""
    while True:
        try:
            chunk = f.read(READ_CHUNK)
        except OSError as e:
            if _refused(e):
                raise SnapshotUnreadable(path, e)
            raise SnapshotCorrupt(path, "cannot decompress: %s" % (e,))
        except (EOFError, ValueError, zlib.error) as e:
            # zlib.error (an invalid deflate stream) is no OSError.
            raise SnapshotCorrupt(path, "cannot decompress: %s" % (e,))
        progress["bytes_read"] = raw.tell()
        if not chunk:
            break
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield None
        for part in parts:
            yield part
    if rest:
        yield rest


def _next_line(lines):
    """
    The next line of C{lines} (None at the end), yielding to the caller
    at each chunk read.
    """
    for line in lines:
        if line is None:
            yield
            continue
        return line
    return None


def _check_header(path, line, store):
    try:
        header = json.loads(line) if line is not None else None
    except ValueError:
        header = None
    if header is None:
        raise SnapshotCorrupt(path, "no header line")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotCorrupt(path, "not a SimpleStats snapshot")
    if header.get("version") != VERSION:
        raise SnapshotCorrupt(path, "format version %r, this server reads %d"
                              % (header.get("version"), VERSION))
    steps = header.get("steps")
    if (not isinstance(steps, list) or not steps
            or not all(isinstance(s, int) and s > 0 for s in steps)):
        raise SnapshotCorrupt(path, "header has no valid tier steps")
    watermarks = header.get("watermarks")
    if (not isinstance(watermarks, list) or len(watermarks) != len(steps)
            or not all(isinstance(w, (int, float)) and math.isfinite(w) for w in watermarks)):
        raise SnapshotCorrupt(path, "header has no valid watermarks (one time per tier)")
    return header


def _install(path, number, line, store, ntiers, plan=None):
    try:
        series = decode_series(json.loads(line), ntiers, store.accuracy, store.set_limit)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise SnapshotCorrupt(path, "line %d: %s" % (number, e))
    if plan is not None:
        series = convert_series(series, plan)
    store.series[series.key] = series
    for i, buckets in enumerate(series.open):
        for bucket in buckets:
            store.open_index[i].setdefault(bucket, set()).add(series)


class Snapshotter:
    """
    Takes snapshots of a store without blocking the reactor for long.

    @ivar status: what the last snapshot did, for C{/api/health}.
    """

    log = Logger()

    def __init__(self, store, journal, directory, clock, run_in_thread,
                 slice_seconds=0.01, timer=time.perf_counter, state=None):
        self.store = store
        # What the header keeps beside the series (events, dashboards): a
        # callable giving a dict, taken at the rotation.
        self.state = state
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
        (a restart replays an import only whole, see L{server.durability.recovery}).
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
            # An import is being applied: its records must not straddle the
            # rotation (see hold).
            blocks.append(self.timer() - began)
            self.clock.callLater(0.05, self._settle)
            return
        # Records queued until now go to the current journal file, later
        # ones to the next: the store as it is now plus the files from the
        # next number on is the whole state.  The journal's writer finishes
        # the rotation meanwhile; the file is written only once it has.
        self.journal_mark = self.journal.written + self.journal.unwritten_bytes
        rotation = defer.maybeDeferred(self.journal.rotate)
        outcome = []
        rotation.addBoth(lambda result: outcome.append(result) or result)
        if outcome and isinstance(outcome[0], Failure):
            # A full disk fails the journal before the snapshot is begun:
            # /api/health must say so all the same.
            rotation.addErrback(lambda failure: None)
            self.running = None
            self._report(outcome[0])
            done.errback(outcome[0])
            return
        header = {
            "format": FORMAT,
            "version": VERSION,
            "created": started,
            "journal_seq": None,
            "steps": [t.step for t in self.store.tiers],
            # What a start-up with shorter retentions reports as trimmed.
            "retentions": [t.retention for t in self.store.tiers],
            "watermarks": list(self.store.watermarks),
        }
        if self.state is not None:
            header.update(self.state())
        self.pending = dict(self.store.series)
        # What a start-up shows its progress against (the trailer checks).
        header["series"] = len(self.pending)
        # Encoded by _write once the rotation gives the journal number.
        self.chunks = [header]
        self.store.observe(self)
        blocks.append(self.timer() - began)
        self.running = (done, started, rotation, blocks)
        self.clock.callLater(0, self._step)

    def take_if_journal_over(self, limit):
        """
        Start a snapshot when more than C{limit} bytes were journaled since
        the last one began (what a restart would replay); else L{None}.
        """
        if self.running is not None:
            return None
        if self.journal.written + self.journal.unwritten_bytes - self.journal_mark <= limit:
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
        rotation = self.running[2]
        rotation.addCallback(self._write, chunks)
        rotation.addCallbacks(self._written, self._failed, callbackArgs=(count,))

    def _write(self, seq, chunks):
        """
        The journal is rotated to C{seq}: the snapshot covers every file
        before it.  Write the file in a thread.
        """
        header = dict(chunks[0], journal_seq=seq)
        chunks[0] = json.dumps(header).encode() + b"\n"
        d = self.run_in_thread(write_file, self.directory, chunks)
        return d.addCallback(lambda nbytes: (nbytes, seq))

    def _written(self, result, count):
        nbytes, seq = result
        done, started, _, blocks = self.running
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
