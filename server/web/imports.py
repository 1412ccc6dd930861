"""
File imports that never hold the reactor: the upload is read in two passes
from the file Twisted spooled it to, never whole in memory.

 1. C{checking}: every row is parsed, one read
    (L{server.web.transfer.READ_BYTES}) at a time
    (L{server.web.transfer.ImportReader}), and given the checks of a live
    point (L{server.core.ingest.IngestCore.check_import_batch}: limits, times,
    types, the series limit counting the file's new series).  The first
    L{server.web.transfer.MAX_REPORTED_ROWS} bad rows are kept for the answer;
    any bad row and nothing is applied (400).  While all is well the
    checked rows are staged as journal entries, one JSON line per batch,
    in a temporary file in the data directory (the file is parsed once:
    the second pass only loads JSON).
 2. C{applying}: the staged lines are read back, journaled and applied
    (L{server.core.ingest.IngestCore.apply_import_entries}).  Live points are
    taken meanwhile; for the same series they fold as any two points do.
    Snapshots wait (L{server.durability.snapshot.Snapshotter.hold}) and the journal's
    commit marker comes last, so a restart has all of the import or none
    of it.

Both passes run on the reactor in slices of at most C{slice_seconds}
(10 ms), the reactor free between two.  Not in a worker thread: parsing is
Python code holding the GIL, and a reactor sharing it with a busy thread
waits for it after every system call.  Measured with a 200 MB file on a
loaded two-core machine: checked in a thread, the reactor was held over
100 ms in 16 seconds of the import (up to 290 ms); in slices, in 5.

Memory: one read and a batch of rows parsed from it, plus the type of each
series in the file (bounded by C{--max-series}); not the file's size.
Disk: the spooled upload and the staged entries (about 1.3 times the
upload) until the answer.  One import at a time: a second gets 409 while
one runs.  A client that goes away while its file is being checked
abandons the import; once it is being applied it completes.
"""

import json
import secrets
import tempfile
import time

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from server.web import transfer
from server.core.ingest import ImportSeries


class ImportBusy(Exception):
    """
    An import is already under way.
    """


class _Abandoned(Exception):
    pass


class ImportJob:
    """
    One upload and where it has got to (C{/api/health} shows it).
    """

    def __init__(self, fileobj, size, fmt, now):
        self.id = secrets.token_hex(6)
        self.file = fileobj
        self.format = fmt
        self.total_bytes = size
        self.started = now
        self.phase = "checking"
        self.rows = 0
        self.total_rows = None
        self.reader = None
        self.staged = None
        self.position = None  # of the staged entries applied
        self.abandoned = False

    def status(self):
        return {"id": self.id, "phase": self.phase, "format": self.format, "rows": self.rows,
                "total_rows": self.total_rows,
                "bytes": self.reader.position if self.reader else 0,
                "staged_bytes": self.position,
                "total_bytes": self.total_bytes, "started": self.started}


class Importer:
    """
    @param snapshotter: held while an import is applied (may be L{None}).
    @param timer: a monotonic clock in seconds for the slices.
    """

    log = Logger()

    def __init__(self, core, settings, clock, snapshotter=None,
                 timer=time.perf_counter, slice_seconds=0.01, read_bytes=transfer.READ_BYTES,
                 batch_rows=transfer.BATCH_ROWS):
        self.core = core
        self.settings = settings
        self.clock = clock
        self.snapshotter = snapshotter
        self.timer = timer
        self.slice_seconds = slice_seconds
        self.read_bytes = read_bytes
        self.batch_rows = batch_rows
        self.current = None
        self.stopping = False

    def status(self):
        return [self.current.status()] if self.current is not None else []

    def stop(self):
        """
        The server is shutting down: an import still being checked is
        abandoned; one being applied completes (the final snapshot waits).
        """
        self.stopping = True
        if self.current is not None and self.current.phase == "checking":
            self.current.abandoned = True

    def start(self, fileobj, size, fmt):
        """
        Import the upload in C{fileobj}.  Returns a Deferred firing with
        C{(status, body)}; cancelling it (the client went away) abandons an
        import still being checked.

        @raise ImportBusy: when an import is under way.
        """
        if self.current is not None:
            raise ImportBusy(self.current.status())
        job = self.current = ImportJob(fileobj, size, fmt, self.clock.seconds())

        def cancel(d):
            if job.phase == "checking":
                job.abandoned = True
            else:
                self.log.info("import {id}: the client went away; it is applied all the same",
                              id=job.id)

        answer = defer.Deferred(cancel)

        def done(result):
            self.current = None
            if not answer.called:
                answer.callback(result)

        def failed(failure):
            self.current = None
            self.log.failure("import {id} failed", failure, id=job.id)
            if not answer.called:
                answer.callback((500, {"error": "the import failed: %s" % (failure.getErrorMessage(),)}))

        self._run(job).addCallbacks(done, failed)
        return answer

    @defer.inlineCallbacks
    def _run(self, job):
        if self.stopping:
            return (503, {"error": "the server is shutting down; nothing was imported"})
        fileobj = job.file
        fileobj.seek(0)
        try:
            job.staged = tempfile.TemporaryFile(dir=self.settings.data_dir)
        except OSError as e:
            return (503, {"error": "no room to stage the import in the data directory: %s" % (e,)})
        try:
            result = yield self._checked(job)
        finally:
            job.staged.close()
        return result

    @defer.inlineCallbacks
    def _checked(self, job):
        try:
            seen, bad, bad_count, rows, fmt = yield self._check(job)
        except _Abandoned:
            return (503, {"error": "the import was abandoned; nothing was imported"})
        except OSError as e:
            return (503, {"error": "could not stage the import in the data directory (%s);"
                                   " nothing was imported" % (e,)})
        job.format = fmt
        if not bad_count and not rows:
            bad_count, bad = 1, [(0, "the file holds no rows")]
        if bad_count:
            self.core.counters["simplestats.import.bad"] += bad_count
            return (400, {
                "error": "%d bad row%s in the %s file; nothing was imported"
                         % (bad_count, "" if bad_count == 1 else "s", fmt),
                "bad_rows": [{"row": r, "error": m} for r, m in bad],
                "bad_row_count": bad_count, "format": fmt})
        if job.abandoned:
            return (503, {"error": "the import was abandoned; nothing was imported"})
        problems = self.core.begin_import(seen)
        if problems:
            self.core.counters["simplestats.import.bad"] += len(problems)
            return (400, {
                "error": "the store changed while the file was checked; nothing was imported",
                "bad_rows": [{"row": 0, "error": m} for m in problems[:transfer.MAX_REPORTED_ROWS]],
                "bad_row_count": len(problems), "format": fmt})
        if self.snapshotter is not None:
            self.snapshotter.hold()
        job.phase = "applying"
        job.total_rows = rows
        job.rows = 0
        try:
            yield self._apply(job)
        except BaseException:
            # Not committed: a restart drops what was applied of it.
            self.core.end_import(job.id, job.rows, committed=False)
            raise
        else:
            self.core.end_import(job.id, job.rows)
        finally:
            if self.snapshotter is not None:
                self.snapshotter.release()
        try:
            yield defer.maybeDeferred(self.core.durable)
        except OSError as e:
            return (503, {"error": "the import was applied but the journal could not be written"
                                   " (%s); it is written when the disk allows" % (e,)})
        self.log.info("import {id}: {rows} rows into {series} series ({fmt}, {size} bytes)",
                      id=job.id, rows=job.rows, series=len(seen), fmt=fmt, size=job.total_bytes)
        return (200, {"imported": job.rows, "series": len(seen), "format": fmt})

    @defer.inlineCallbacks
    def _check(self, job):
        """
        Pass 1: every row parsed and checked, in slices.
        """
        reader = job.reader = transfer.ImportReader(job.file, job.format, self.settings.limits,
                                                    self.read_bytes, self.batch_rows)
        now = self.clock.seconds()
        seen = ImportSeries()
        bad = []
        bad_count = 0
        rows = 0
        check = self.core.check_import_batch
        stage = self.core.import_entries
        staged = job.staged
        began = self.timer()
        for batch in reader.batches():
            if job.abandoned:
                raise _Abandoned()
            if self.timer() - began > self.slice_seconds:
                yield deferLater(self.clock, 0, lambda: None)
                began = self.timer()
            items = []
            numbers = []
            bad_count += transfer.split_rows(batch, items, numbers, bad)
            for position, message in check(items, seen, now):
                bad_count += 1
                transfer.note_bad(bad, numbers[position], message)
            if not bad_count:
                # One staged line per batch, applied in one go in pass 2.
                staged.write(json.dumps(stage(items), separators=(",", ":")).encode() + b"\n")
            rows += len(items)
            job.rows = rows
        bad.sort(key=lambda b: b[0])
        return seen, bad, bad_count, rows, reader.format

    @defer.inlineCallbacks
    def _apply(self, job):
        """
        Pass 2, on the reactor: the staged entries applied in slices.
        """
        staged = job.staged
        staged.seek(0)
        began = self.timer()
        for line in staged:
            if self.timer() - began > self.slice_seconds:
                yield deferLater(self.clock, 0, lambda: None)
                began = self.timer()
            job.rows += self.core.apply_import_entries(job.id, json.loads(line))
            job.position = staged.tell()
