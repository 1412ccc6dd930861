"""
Start-up: read back the snapshot and replay the journal after it.
"""

import os

from twisted.logger import Logger

from server import snapshot as snapshots
from server.journal import journal_files, scan_journal, write_journal_file
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
        C{move_corrupt_aside}: then a snapshot is renamed and skipped, a
        journal renamed after every intact record in it is replayed.
    """
    summary = {"series_loaded": 0, "records_replayed": 0, "torn": [], "moved_aside": [],
               "damaged": []}
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
            # Journal files removed by hand: what comes now must not go to a
            # number the snapshot says it covers (it would never be replayed).
            core.journal.skip_to(first_seq)
    for seq, journal in journal_files(directory):
        if seq < first_seq:
            continue
        try:
            scan = scan_journal(journal)
        except OSError as e:
            raise StartupError("cannot read journal %s: %s" % (journal, e))
        records, torn = scan.records, scan.torn
        if scan.damage:
            number, offset, problem = scan.damage[0]
            if not move_corrupt_aside:
                raise StartupError(
                    "corrupt journal %s record %d at byte %d: %s%s. Start with "
                    "--move-corrupt-aside to replay every intact record of it and rename it."
                    % (journal, number, offset, problem,
                       "; %d more damaged records after it" % (len(scan.damage) - 1,)
                       if len(scan.damage) > 1 else ""))
            for number, offset, problem in scan.damage:
                log.warn("journal {path} record {number} (byte {offset}) is damaged and "
                         "skipped: {problem}", path=journal, number=number, offset=offset,
                         problem=problem)
                summary["damaged"].append("%s:%d" % (journal, number))
            summary["moved_aside"].append(_move_aside(journal, now))
            # The intact records go back under the file's own number, so a
            # later start replays them in the same order until a snapshot
            # covers them.
            try:
                write_journal_file(journal, records)
            except OSError as e:
                raise StartupError("cannot write the intact records of %s back: %s" % (journal, e))
            log.warn("kept the {count} intact records of {path} in a new file of that name",
                     count=len(records), path=journal)
        if torn is not None:
            number, problem = torn
            log.warn("dropped the torn last record of {path} (record {number}: {problem}): "
                     "the process stopped mid-write, that record was never acknowledged",
                     path=journal, number=number, problem=problem)
            summary["torn"].append("%s:%d" % (journal, number))
        summary["records_replayed"] += replay(core, records)
    report_beyond_limits(core, summary)
    return summary


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


def replay(core, records):
    """
    Feed journal records back through C{core}: raw input through the same
    parser and checks at its arrival time, JSON entries directly.  Returns
    the number of points applied.
    """
    applied = 0
    for record in records:
        if isinstance(record, list):
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
