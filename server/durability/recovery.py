"""
Start-up: read back the snapshot and replay the journal after it, in slices
after the ports listen (L{Recovery}), or all at once (L{recover}).
"""

import errno
import os
import time
from collections import deque

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from server.durability import snapshot as snapshots
from server.durability.journal import journal_files, journal_path, scan_journal, write_journal_file
from server.durability.tiers import TierMismatch, show_step, trimmed_rows
from server.core.model import STATSD_PARSER_VERSION, Limits, ParseError, StartupError
from server.receivers.parse_tuple import parse_line

log = Logger()

# Journaled input was accepted under the limits of its day: replay it under
# limits that refuse nothing for size, so lowering a limit loses nothing.
REPLAY_LIMITS = Limits(max_name_length=1 << 30, max_tags=1 << 30, max_tag_length=1 << 30,
                       max_batch=1 << 30, max_set_members=1 << 30)
# Statsd packets are replayed as the parser version that read them did
# (server.durability.journal: a file's magic says which).
REPLAY_LIMITS_BY_VERSION = {1: REPLAY_LIMITS._replace(telegraf_tags=False), 2: REPLAY_LIMITS}

# A journaled TCP line this long (a large batch) is parsed in a thread, and
# the points of a record are applied this many per reactor turn.
LONG_LINE = 16 * 1024
REPLAY_PART = 512


def unreadable(path, error):
    """
    The L{StartupError} for a file or directory the system refuses to read:
    not corruption, so never moved aside.
    """
    if isinstance(error, snapshots.SnapshotUnreadable):
        error = error.error
    what = (error.strerror or str(error)).lower()
    if error.errno in (errno.EACCES, errno.EPERM):
        hint = ("give the server's user (uid %d) read and write access to it and start again"
                % (os.getuid(),))
    else:
        hint = "fix the file system and start again"
    return StartupError("cannot read %s: %s (%s). This is not corruption: nothing was moved aside;"
                        " %s" % (path, what, error, hint))


def _file_name(seq):
    return os.path.basename(journal_path("", seq))


def _ranges(numbers):
    """
    C{"journal.000002.log to journal.000004.log, journal.000007.log"}.
    """
    numbers = sorted(numbers)
    parts = []
    start = previous = None
    for n in numbers + [None]:
        if start is not None and n == previous + 1:
            previous = n
            continue
        if start is not None:
            parts.append(_file_name(start) if start == previous else
                         "%s to %s" % (_file_name(start), _file_name(previous)))
        start = previous = n
    return ", ".join(parts)


def missing_data(has_snapshot, first_seq, present, until_seq, snapshot_moved=False):
    """
    What the journal numbering and the snapshot show to be missing: a list
    of sentences (empty when nothing is).

    Numbering starts at 1 and each start or snapshot goes on with the next
    number; a snapshot covers the files before its C{journal_seq}, whose
    file it created first, and only a snapshot on disk removes files.  So
    without a snapshot the files must run from 1, with one from its
    C{journal_seq}, and without gaps up to the last.

    @param present: the numbers of the journal files there are (this run's
        own, C{until_seq} and after, left out).
    @param snapshot_moved: a corrupt snapshot was moved aside on purpose
        (C{--move-corrupt-aside}): the files it covered are not asked for.
    """
    numbers = sorted(n for n in present if n >= first_seq
                     and (until_seq is None or n < until_seq))
    problems = []
    if has_snapshot:
        expected_first = first_seq
    else:
        expected_first = 1
    last = numbers[-1] if numbers else None
    if has_snapshot and (last is None or expected_first < numbers[0]):
        upto = numbers[0] - 1 if numbers else None
        gone = list(range(expected_first, (upto if upto is not None else expected_first) + 1))
        problems.append("the snapshot covers the journal before %s, but %s, which held what was"
                        " accepted after it, %s missing" % (
                            _file_name(first_seq), _ranges(gone),
                            "is" if len(gone) == 1 else "are"))
    elif not has_snapshot and not snapshot_moved and numbers and numbers[0] > expected_first:
        one = numbers[0] == 2
        problems.append("there is no snapshot, but the journal starts at %s: %s %s removed"
                        " because a snapshot covered %s, and that snapshot (%s) is gone with"
                        " %s data" % (_file_name(numbers[0]), _ranges(range(1, numbers[0])),
                                      "was" if one else "were", "it" if one else "them",
                                      snapshots.SNAPSHOT_NAME, "its" if one else "their"))
    if numbers:
        gaps = sorted(set(range(numbers[0], last + 1)) - set(numbers))
        if gaps:
            problems.append("%s %s missing between %s and %s: the points in %s would be lost" % (
                _ranges(gaps), "is" if len(gaps) == 1 else "are", _file_name(numbers[0]),
                _file_name(last), "it" if len(gaps) == 1 else "them"))
    return problems


def _move_aside(path, now):
    target = "%s.corrupt-%d" % (path, now)
    os.replace(path, target)
    log.warn("moved {path} aside to {target}", path=path, target=target)
    return target


def recover(directory, store, core, move_corrupt_aside, now, until_seq=None,
            accept_missing_data=None, drop_removed_tiers=None):
    """
    Load C{directory}'s snapshot into C{store}, replay its journal through
    C{core} and close the buckets that came due, all at once (L{Recovery}
    spreads the same work over reactor turns).  Returns a summary dict.

    @raise StartupError: on a corrupt snapshot or journal, unless
        C{move_corrupt_aside}: then the file is renamed and skipped.
    """
    recovery = Recovery(directory, store, core, move_corrupt_aside, _Now(now),
                        run_in_thread=None, until_seq=until_seq,
                        accept_missing_data=accept_missing_data,
                        drop_removed_tiers=drop_removed_tiers)
    for _ in recovery._steps():
        pass
    return recovery.summary


class _Now:
    def __init__(self, now):
        self.now = now

    def seconds(self):
        return self.now


class Recovery:
    """
    Start-up as a phase that runs after the ports listen: the snapshot is
    decoded, the journal replayed and the due buckets closed a slice of at
    most about C{slice_seconds} per reactor turn (each journal file is read
    in a thread), so that C{/api/health} answers with the progress
    meanwhile.

    Ingest waits until it is over (L{holding}): statsd packets are queued in
    memory, up to C{queue_bytes}, and applied in order after the replay,
    journaled after what was replayed; TCP connections are not read
    (L{when_open}); beyond the bound packets are dropped and counted.

    @ivar done: fires with the summary once recovery is over, or fails
        with L{StartupError}.
    @ivar holding: ingest must wait (until the queue is applied).
    @ivar error: why start-up failed, or L{None}.
    """

    log = Logger()

    def __init__(self, directory, store, core, move_corrupt_aside, clock, run_in_thread,
                 timer=time.perf_counter, slice_seconds=0.02, queue_bytes=64 << 20,
                 until_seq=None, accept_missing_data=None, drop_removed_tiers=None):
        """
        @param run_in_thread: reads a journal file off the reactor thread;
            L{None}: in this one.
        @param until_seq: the number of the journal file this run writes:
            it and later files are not replayed.
        @param accept_missing_data: start even when the journal numbering or
            the snapshot shows data that is not there (L{None}: the
            setting of C{core.settings}).
        @param drop_removed_tiers: load a snapshot whose tiers the
            retentions setting removes, dropping their rows (L{None}: the
            setting).
        """
        settings = core.settings
        if accept_missing_data is None:
            accept_missing_data = getattr(settings, "accept_missing_data", False)
        if drop_removed_tiers is None:
            drop_removed_tiers = getattr(settings, "drop_removed_tiers", False)
        self.accept_missing_data = accept_missing_data
        self.drop_removed_tiers = drop_removed_tiers
        self.directory = directory
        self.store = store
        self.core = core
        self.move_corrupt_aside = move_corrupt_aside
        self.clock = clock
        self.run_in_thread = run_in_thread
        self.timer = timer
        self.slice_seconds = slice_seconds
        self.queue_bytes = queue_bytes
        self.until_seq = until_seq
        self.summary = {"series_loaded": 0, "records_replayed": 0, "torn": [],
                        "moved_aside": [], "damaged": [], "imports_dropped": [], "missing": [],
                        "migrated": []}
        self.progress = {"phase": "waiting", "series_loaded": 0, "series_total": None,
                         "bytes_read": 0, "bytes_total": None, "journal_files": None,
                         "journal_files_done": 0, "records_replayed": 0,
                         "queued_packets": 0, "queued_bytes": 0, "dropped_packets": 0}
        self.done = defer.Deferred()
        self.holding = True
        self.error = None
        self.started = None
        self.packets = deque()
        # Journal records of imports not yet seen committed, by import id.
        self.imports = {}
        # How the statsd packets of the file being replayed are read.
        self.replay_limits = REPLAY_LIMITS
        self._waiting = []
        self._gen = None
        self._call = None
        self._deadline = None
        self._resume = None

    # -- ingest while recovering ------------------------------------------------

    def hold_packet(self, take, data, addr, now):
        """
        Queue a statsd packet that arrived at C{now}; L{take}C{(data, addr,
        now)} applies it once the journal is replayed.  Beyond the bound it
        is dropped and counted.
        """
        progress = self.progress
        if progress["queued_bytes"] + len(data) > self.queue_bytes:
            progress["dropped_packets"] += 1
            self.core.counters["simplestats.udp.dropped_recovering"] += 1
            return
        self.packets.append((take, data, addr, now))
        progress["queued_packets"] += 1
        progress["queued_bytes"] += len(data)

    def when_open(self, f):
        """
        Call C{f} once ingest may go on (now, if it may already).
        """
        if self.holding:
            self._waiting.append(f)
        else:
            f()

    # -- running ----------------------------------------------------------------

    def start(self):
        """
        Begin in the next reactor turn (after the ports listen).
        """
        self.started = self.clock.seconds()
        self._gen = self._steps()
        self._call = self.clock.callLater(0, self._slice)

    def stop(self):
        """
        The server stops: recovery ends where it is.  Queued packets go to
        the journal unapplied (the next start replays them); the store is
        incomplete and must not be snapshotted.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._gen is not None and self.holding:
            self._gen.close()
            self._gen = None
            journaled = 0
            while self.packets:
                _, data, _, now = self.packets.popleft()
                self.core.journal.append_raw(b"u", now, data)
                journaled += 1
            if journaled:
                self.log.info("stopped while recovering: {count} queued statsd packets journaled"
                              " for the next start", count=journaled)

    @property
    def finished(self):
        return not self.holding and self.error is None

    def status(self):
        """
        What C{/api/health} shows under C{recovery}.
        """
        status = dict(self.progress)
        if self.started is not None:
            status["seconds"] = (self.summary.get("seconds")
                                 or self.clock.seconds() - self.started)
        if self.error is not None:
            status["error"] = self.error
        return status

    def _slice(self):
        self._call = None
        began = self.timer()
        self._deadline = began + self.slice_seconds
        resume, self._resume = self._resume, None
        gen = self._gen
        try:
            while True:
                if resume is None:
                    waiting = next(gen)
                elif resume[0]:
                    waiting = gen.send(resume[1])
                else:
                    waiting = resume[1].throwExceptionIntoGenerator(gen)
                resume = None
                if waiting is not None:
                    # A journal file being read in a thread.
                    waiting.addBoth(self._read)
                    return
                if self.timer() >= self._deadline:
                    self._call = self.clock.callLater(0, self._slice)
                    return
        except StopIteration:
            self._finish()
        except StartupError as e:
            self._fail(e)
        except Exception as e:
            self.log.failure("recovery failed")
            self._fail(StartupError("recovery failed: %s" % (e,)))

    def _read(self, result):
        if self._gen is None:
            return None  # stopped meanwhile
        self._resume = (not isinstance(result, Failure), result)
        self._call = self.clock.callLater(0, self._slice)
        return None

    def _finish(self):
        self._gen = None
        self.holding = False
        summary = self.summary
        summary["seconds"] = self.clock.seconds() - self.started
        self.progress["phase"] = "done"
        self.log.info("recovered {series} series from the snapshot and {records} points from the"
                      " journal in {seconds:.1f} s ({queued} statsd packets queued meanwhile,"
                      " {dropped} dropped)", series=summary["series_loaded"],
                      records=summary["records_replayed"], seconds=summary["seconds"],
                      queued=self.progress["queued_packets"],
                      dropped=self.progress["dropped_packets"])
        waiting, self._waiting = self._waiting, []
        for f in waiting:
            f()
        self.done.callback(summary)

    def _fail(self, error):
        self._gen = None
        self.error = str(error)
        self.progress["phase"] = "failed"
        self.packets.clear()
        self.done.errback(error)

    # -- the work -----------------------------------------------------------------

    def _in_thread(self, f, *args):
        if self.run_in_thread is None:
            return f(*args)
        return (yield self.run_in_thread(f, *args))

    def _replay(self, record):
        """
        L{replay} of one record, a large one over several slices: a long
        TCP line is parsed in a thread and applied in parts, a long list of
        entries in parts.  Returns the number of points applied.
        """
        core = self.core
        if isinstance(record, list):
            applied = 0
            for entries in entries_to_apply(record, self.imports):
                for first in range(0, len(entries), REPLAY_PART):
                    applied += core.replay_entries(entries[first:first + REPLAY_PART])
                    yield
            return applied
        kind, now, data = record
        if kind != "tcp" or len(data) < LONG_LINE:
            return replay(core, (record,), limits=self.replay_limits)
        try:
            items = (yield from self._in_thread(parse_line, data, REPLAY_LIMITS)).items
        except ParseError:
            return 0
        refused = yield from core.replay_steps(items, "replay", now, REPLAY_PART)
        return 0 if refused else len(items)

    def _steps(self):
        """
        The whole recovery, yielding after each small piece of work (and a
        Deferred while a file is read in a thread).
        """
        store, summary, progress = self.store, self.summary, self.progress
        path = os.path.join(self.directory, snapshots.SNAPSHOT_NAME)
        first_seq = 0
        try:
            present = [seq for seq, _ in journal_files(self.directory)]
        except OSError as e:
            raise unreadable(self.directory, e)
        try:
            os.stat(path)
            has_snapshot = True
        except FileNotFoundError:
            has_snapshot = False
        except OSError as e:
            raise unreadable(path, e)
        moved_snapshot = False
        if has_snapshot:
            progress["phase"] = "snapshot"
            try:
                header = yield from snapshots.load_steps(path, store, progress,
                                                         self.drop_removed_tiers)
            except snapshots.SnapshotUnreadable as e:
                raise unreadable(path, e)
            except TierMismatch as e:
                # Never moved aside: the file is sound, the setting changed.
                raise StartupError("cannot load %s: %s" % (path, e))
            except snapshots.SnapshotCorrupt as e:
                if not self.move_corrupt_aside:
                    raise StartupError(
                        "corrupt snapshot %s. Start with --move-corrupt-aside to rename it "
                        "and start from the journal alone." % (e,))
                store.series.clear()
                for index in store.open_index:
                    index.clear()
                progress["series_loaded"] = 0
                summary["moved_aside"].append(_move_aside(path, self.clock.seconds()))
                moved_snapshot = True
            else:
                first_seq = header["journal_seq"]
                self.core.load_state(header)
                summary["series_loaded"] = len(store.series)
                self._report_tiers(header)
        self._check_missing(has_snapshot and not moved_snapshot, first_seq, present,
                            moved_snapshot)
        if first_seq:
            # Journal files removed by hand (accepted): what comes now must
            # not go to a number the snapshot says it covers (never replayed).
            self.core.journal.skip_to(first_seq)
        progress["phase"] = "journal"
        files = [(seq, journal) for seq, journal in journal_files(self.directory)
                 if seq >= first_seq and (self.until_seq is None or seq < self.until_seq)]
        progress["journal_files"] = len(files)
        for seq, journal in files:
            try:
                scan = yield from self._in_thread(scan_journal, journal)
            except OSError as e:
                raise unreadable(journal, e)
            # Its statsd packets are read as the parser of their day read them.
            self.replay_limits = REPLAY_LIMITS_BY_VERSION[scan.parser or STATSD_PARSER_VERSION]
            records, torn = scan.records, scan.torn
            if scan.damage:
                self._damaged(journal, scan)
            if torn is not None:
                number, problem = torn
                self.log.warn("dropped the torn last record of {path} (record {number}: "
                              "{problem}): the process stopped mid-write, that record was "
                              "never acknowledged", path=journal, number=number, problem=problem)
                summary["torn"].append("%s:%d" % (journal, number))
            for record in records:
                applied = yield from self._replay(record)
                summary["records_replayed"] += applied
                progress["records_replayed"] += applied
                yield
            del records
            progress["journal_files_done"] += 1
        for import_id, held in self.imports.items():
            self.log.warn("dropped import {id} ({records} journal records): the process stopped"
                          " before it was committed, and it was never acknowledged",
                          id=import_id, records=len(held))
            summary["imports_dropped"].append(import_id)
        self.imports = {}
        report_beyond_limits(self.core, summary)
        # What came due while the server was down, in slices.
        progress["phase"] = "tick"
        now = self.clock.seconds()
        while not store.tick(now, deadline=self._deadline, timer=self.timer)[1]:
            yield
        # The statsd packets that came meanwhile, in order, journaled after
        # the replayed files (into this run's file).
        progress["phase"] = "queued"
        packets = self.packets
        while packets:
            take, data, addr, arrived = packets.popleft()
            progress["queued_bytes"] -= len(data)
            take(data, addr, arrived)
            yield
        if progress["queued_packets"]:
            self.core.durable().addErrback(
                lambda failure: self.log.warn("journal write failed after the queued packets:"
                                              " {error}", error=failure.getErrorMessage()))

    def _check_missing(self, has_snapshot, first_seq, present, snapshot_moved):
        """
        Refuse to start when the journal numbering or the snapshot shows
        data that is not there, unless told to start anyway.
        """
        problems = missing_data(has_snapshot, first_seq, present, self.until_seq, snapshot_moved)
        if not problems:
            return
        self.summary["missing"] = problems
        text = "; ".join(problems)
        if not self.accept_missing_data:
            raise StartupError(
                "data is missing from %s: %s. Put the missing files back and start again, or"
                " start with --accept-missing-data to go on without that data (logged)"
                % (self.directory, text))
        self.log.critical("starting WITHOUT data that is missing from {directory}, because"
                          " --accept-missing-data is set: {problems}", directory=self.directory,
                          problems=text)

    def _report_tiers(self, header):
        """
        Log a tier change the snapshot was rebucketed through, and the rows
        shorter retentions are about to trim.
        """
        store = self.store
        plan = getattr(store, "migration", None)
        before = header.get("retentions")
        if not isinstance(before, list) or len(before) != len(header["steps"]):
            # An older snapshot does not say: only built tiers are reported.
            before = None
        if plan is not None:
            for line in plan.describe():
                self.log.warn("retentions changed: {change}", change=line)
                self.summary["migrated"].append(line)
            # Per new tier: the retention its rows were kept under.
            before = [(before[i] if before is not None else tier.retention)
                      if kind == "keep" else None
                      for (kind, i), tier in zip(plan.sources, store.tiers)]
        elif before is None:
            return
        for i, rows, series in trimmed_rows(store, self.clock.seconds(), before):
            tier = self.store.tiers[i]
            line = ("tier %s keeps %s now: %d rows of %d series are older and are dropped by the"
                    " retention sweep" % (show_step(tier.step), show_step(tier.retention),
                                          rows, series))
            self.log.warn("retentions changed: {change}", change=line)
            self.summary["migrated"].append(line)

    def _damaged(self, journal, scan):
        """
        A journal with damage that is not a torn tail: start-up stops, or
        with C{move_corrupt_aside} the file is renamed and its intact
        records, before and after the damage, are written back under its
        own name (replayed now, and by a later start until a snapshot
        covers them).
        """
        number, offset, problem = scan.damage[0]
        if not self.move_corrupt_aside:
            raise StartupError(
                "corrupt journal %s record %d at byte %d: %s%s. Start with "
                "--move-corrupt-aside to replay every intact record of it and rename it."
                % (journal, number, offset, problem,
                   "; %d more damaged records after it" % (len(scan.damage) - 1,)
                   if len(scan.damage) > 1 else ""))
        for number, offset, problem in scan.damage:
            self.log.warn("journal {path} record {number} (byte {offset}) is damaged and "
                          "skipped: {problem}", path=journal, number=number, offset=offset,
                          problem=problem)
            self.summary["damaged"].append("%s:%d" % (journal, number))
        self.summary["moved_aside"].append(_move_aside(journal, self.clock.seconds()))
        try:
            write_journal_file(journal, scan.records, scan.parser or STATSD_PARSER_VERSION)
        except OSError as e:
            raise StartupError("cannot write the intact records of %s back: %s" % (journal, e))
        self.log.warn("kept the {count} intact records of {path} in a new file of that name",
                      count=len(scan.records), path=journal)


def report_beyond_limits(core, summary):
    """
    Stored data is never refused by today's settings; say so when they
    would have refused some of it (a lower --max-series or --future-limit
    than when it was accepted).
    """
    beyond = core.counters["simplestats.replay.beyond_limits"]
    summary["beyond_limits"] = beyond
    if beyond:
        log.warn("{count} journaled points or series are beyond today's --future-limit or "
                 "--max-series; they were acknowledged before the restart and are kept",
                 count=beyond)
    series, limit = len(core.store.series), core.settings.max_series
    if series > limit:
        log.warn("{series} series are stored, more than --max-series {limit}: they are kept, "
                 "and every new series is refused until fewer remain", series=series, limit=limit)


def entries_to_apply(record, imports):
    """
    The lists of JSON entries a journal record of entries lets replay apply
    now: none for a record of an import (first entry C{["i", id]}), held
    in C{imports} by id until its commit marker C{[["ic", id, rows]]},
    which releases them all (their entries after the C{["i", id]}); any
    other record itself.  An import never committed stays in C{imports}
    (never acknowledged: the caller drops it).
    """
    head = record[0] if record else None
    if head and head[0] == "i":
        imports.setdefault(head[1], []).append(record)
        return ()
    if head and head[0] == "ic":
        return [held[1:] for held in imports.pop(head[1], ())]
    return (record,)


def replay(core, records, imports=None, limits=None):
    """
    Feed journal records back through C{core}: raw input through the same
    parser and checks at its arrival time, JSON entries directly.  Returns
    the number of points applied.

    Statsd packets are read under C{limits}: those of the parser version
    that read them (L{REPLAY_LIMITS_BY_VERSION}, by the file's magic).

    The records of an import (first entry C{["i", id]}) are held in
    C{imports} until its commit marker C{[["ic", id, rows]]} comes, then
    applied; those of an import never committed stay there (the caller
    drops them).  Held records are the lists already read from the file
    (journal files are read whole), kept a little longer: no copy.  An
    import never spans two files: snapshots, which rotate the journal, wait
    while one is applied (L{server.durability.snapshot.Snapshotter.hold}).
    """
    applied = 0
    if imports is None:
        imports = {}
    if limits is None:
        limits = REPLAY_LIMITS
    for record in records:
        if isinstance(record, list):
            for entries in entries_to_apply(record, imports):
                applied += core.replay_entries(entries)
            continue
        kind, now, data = record
        if kind == "udp":
            # The live path, shortcut included: the same folds, the same bits.
            before = core.counters["simplestats.replay.points"]
            core.submit_statsd(data, "replay", limits, now=now, journal=False)
            applied += core.counters["simplestats.replay.points"] - before
            continue
        try:
            items = parse_line(data, REPLAY_LIMITS).items
        except ParseError:
            continue
        refused = core.submit(items, "replay", atomic=True, now=now, journal=False)
        if not refused:
            applied += len(items)
    return applied
