"""
Start-up: read back the snapshot and replay the journal after it.
"""

import os

from twisted.logger import Logger

from server import snapshot as snapshots
from server.journal import JournalCorrupt, journal_files, read_journal
from server.model import Limits, ParseError
from server.parse_tuple import parse_line

log = Logger()

# Journaled input was accepted under the limits of its day: replay it under
# limits that refuse nothing for size, so lowering a limit loses nothing.
REPLAY_LIMITS = Limits(max_name_length=1 << 30, max_tags=1 << 30, max_tag_length=1 << 30,
                       max_batch=1 << 30, max_set_members=1 << 30)


class StartupError(Exception):
    """
    The server must not start; the message names the file and the problem.
    """


def _move_aside(path, now):
    target = "%s.corrupt-%d" % (path, now)
    os.replace(path, target)
    log.warn("moved {path} aside to {target}", path=path, target=target)
    return target


def recover(directory, store, core, move_corrupt_aside, now):
    """
    Load C{directory}'s snapshot into C{store} and replay its journal
    through C{core}.  Returns a summary dict.

    @raise StartupError: on a corrupt snapshot or journal, unless
        C{move_corrupt_aside}: then the file is renamed and skipped.
    """
    summary = {"series_loaded": 0, "records_replayed": 0, "torn": [], "moved_aside": [],
               "imports_dropped": []}
    imports = {}
    path = os.path.join(directory, snapshots.SNAPSHOT_NAME)
    first_seq = 0
    if os.path.exists(path):
        try:
            header = snapshots.load(path, store)
        except snapshots.SnapshotCorrupt as e:
            if not move_corrupt_aside:
                raise StartupError(
                    "corrupt snapshot %s. Start with --move-corrupt-aside to rename it "
                    "and start from the journal alone." % (e,))
            store.series.clear()
            for index in store.open_index:
                index.clear()
            summary["moved_aside"].append(_move_aside(path, now))
        else:
            first_seq = header["journal_seq"]
            summary["series_loaded"] = len(store.series)
    for seq, journal in journal_files(directory):
        if seq < first_seq:
            continue
        try:
            records, torn = read_journal(journal)
        except JournalCorrupt as e:
            if not move_corrupt_aside:
                raise StartupError(
                    "corrupt journal %s. Start with --move-corrupt-aside to rename it "
                    "and skip it." % (e,))
            summary["moved_aside"].append(_move_aside(journal, now))
            continue
        except OSError as e:
            raise StartupError("cannot read journal %s: %s" % (journal, e))
        if torn is not None:
            number, problem = torn
            log.warn("dropped the torn last record of {path} (record {number}: {problem}): "
                     "the process stopped mid-write, that record was never acknowledged",
                     path=journal, number=number, problem=problem)
            summary["torn"].append("%s:%d" % (journal, number))
        summary["records_replayed"] += replay(core, records, imports)
    for import_id, held in imports.items():
        log.warn("dropped import {id} ({records} journal records): the process stopped before"
                 " it was committed, and it was never acknowledged", id=import_id,
                 records=len(held))
        summary["imports_dropped"].append(import_id)
    return summary


def replay(core, records, imports=None):
    """
    Feed journal records back through C{core}: raw input through the same
    parser and checks at its arrival time, JSON entries directly.  Returns
    the number of points applied.

    The records of an import (first entry C{["i", id]}) are held in
    C{imports} until its commit marker C{[["ic", id, rows]]} comes, then
    applied; those of an import never committed stay there (the caller
    drops them).  Held records are the lists already read from the file
    (journal files are read whole), kept a little longer: no copy.  An
    import never spans two files: snapshots, which rotate the journal, wait
    while one is applied (L{server.snapshot.Snapshotter.hold}).
    """
    applied = 0
    if imports is None:
        imports = {}
    for record in records:
        if isinstance(record, list):
            first = record[0] if record else None
            if first and first[0] == "i":
                imports.setdefault(first[1], []).append(record)
                continue
            if first and first[0] == "ic":
                for held in imports.pop(first[1], ()):
                    applied += core.replay_entries(held[1:])
                continue
            applied += core.replay_entries(record)
            continue
        kind, now, data = record
        if kind == "udp":
            # The live path, shortcut included: the same folds, the same bits.
            before = core.counters["simplestats.replay.points"]
            core.submit_statsd(data, "replay", REPLAY_LIMITS, now=now, journal=False)
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
