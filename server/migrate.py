"""
C{python -m server.migrate --data-dir DIR --retentions NEW
[--drop-removed-tiers]}: rewrite a stopped server's snapshot into new tiers
(L{server.durability.tiers} says what is exact and what is refused), keeping the old
snapshot as C{snapshot.jsonl.gz.before-migration-TIME}.
"""

import argparse
import gzip
import json
import os
import shutil
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from server.durability import snapshot as snapshots  # noqa: E402
from server.core.cardinality import EXACT_LIMIT  # noqa: E402
from server.durability.datadir import DataDirInUse, DataDirLock  # noqa: E402
from server.settings import parse_retentions  # noqa: E402
from server.core.store import Store  # noqa: E402
from server.durability.tiers import TierMismatch, plan, show_tiers  # noqa: E402


def main(argv=None):
    """
    C{python -m server.migrate --data-dir DIR --retentions NEW
    [--drop-removed-tiers]}: rewrite the snapshot into the new tiers with
    the server stopped, keeping the old one.  Exit status 0 done (or nothing
    to do), 1 refused.
    """
    parser = argparse.ArgumentParser(
        prog="python -m server.migrate",
        description="Rebucket a stopped server's snapshot into new --retentions tiers, keeping"
                    " the old snapshot as snapshot.jsonl.gz.before-migration-TIME.")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--retentions", required=True, type=parse_retentions,
                        help="the new tiers, as the server's --retentions")
    parser.add_argument("--drop-removed-tiers", action="store_true",
                        help="allow removing a tier of the snapshot (its rows are dropped)")
    parser.add_argument("--sketch-accuracy", type=float, default=0.01,
                        help="the server's --sketch-accuracy")
    parser.add_argument("--set-exact-limit", type=int, default=EXACT_LIMIT,
                        help="the server's --set-exact-limit")
    args = parser.parse_args(argv)
    out = sys.stdout
    directory = os.path.abspath(args.data_dir)
    path = os.path.join(directory, snapshots.SNAPSHOT_NAME)
    try:
        lock = DataDirLock(directory)
    except (DataDirInUse, OSError) as e:
        out.write("cannot migrate: %s\n" % (e,))
        return 1
    try:
        try:
            with gzip.open(path, "rb") as f:
                header = json.loads(f.readline())
        except FileNotFoundError:
            out.write("no snapshot in %s: nothing to migrate\n" % (directory,))
            return 0
        except (OSError, EOFError, ValueError) as e:
            out.write("cannot read %s: %s\n" % (path, e))
            return 1
        old = header.get("steps") if isinstance(header, dict) else None
        try:
            if not isinstance(old, list):
                raise TierMismatch("%s has no tier steps in its header" % (path,))
            if plan(old, args.retentions, args.drop_removed_tiers) is None:
                out.write("the snapshot already has the tier steps of %s: nothing to migrate\n"
                          % (show_tiers(args.retentions),))
                return 0
            store = Store(args.retentions, args.sketch_accuracy,
                          set_limit=args.set_exact_limit)
            loaded = snapshots.load(path, store, drop_removed_tiers=args.drop_removed_tiers)
        except (TierMismatch, snapshots.SnapshotCorrupt, snapshots.SnapshotUnreadable) as e:
            out.write("cannot migrate: %s\n" % (e,))
            return 1
        header = dict(loaded, steps=[t.step for t in store.tiers],
                      retentions=[t.retention for t in store.tiers],
                      watermarks=list(store.watermarks), series=len(store.series),
                      migrated={"at": time.time(), "from_steps": old})
        chunks = [json.dumps(header).encode() + b"\n"]
        chunks.extend(snapshots.encode_series(s) for s in store.series.values())
        chunks.append(json.dumps({"end": True, "series": len(store.series)}).encode() + b"\n")
        backup = "%s.before-migration-%d" % (path, time.time())
        try:
            os.link(path, backup)
        except OSError:
            shutil.copyfile(path, backup)
        snapshots.write_file(directory, chunks)
        for line in store.migration.describe():
            out.write(line + "\n")
        out.write("migrated %d series to %s; the old snapshot is %s\n"
                  % (len(store.series), show_tiers(store.tiers), backup))
        return 0
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
