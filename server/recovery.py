"""
Start-up: read back the snapshot and replay the journal after it.
"""

import os

from twisted.logger import Logger

from server import snapshot as snapshots
from server.journal import JournalCorrupt, journal_files, read_journal

log = Logger()


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
    summary = {"series_loaded": 0, "records_replayed": 0, "torn": [], "moved_aside": []}
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
            line, problem = torn
            log.warn("dropped the torn last record of {path} (line {line}: {problem}): "
                     "the process stopped mid-write, that record was never acknowledged",
                     path=journal, line=line, problem=problem)
            summary["torn"].append("%s:%d" % (journal, line))
        summary["records_replayed"] += core.replay(records)
    return summary
