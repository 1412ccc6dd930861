"""
Tier changes (--retentions): the snapshot rebucketed into the new tiers
where that is exact, refused by name otherwise, and the offline command.
"""

import gzip
import io
import json
import math
import os
import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server import migrate
from server.durability import tiers as tiermod
from server.core.aggregate import STORED_FIELDS
from server.core.ingest import IngestCore
from server.durability.journal import Journal
from server.core.model import SET
from server.core.query import bucket_rows
from server.durability.recovery import StartupError, recover
from server.settings import parse_retentions
from server.durability.snapshot import SNAPSHOT_NAME, Snapshotter
from server.core.store import Store
from server.test.support import T0, settings_for, synchronous
from server.test.test_persistence import mixed_items, run_snapshot, series_names

OLD = "5s:6h,1m:8d,1h:30d"


class Node:
    """
    The persistence pieces of a server with C{retentions} over C{directory}
    (a fresh one when L{None}).
    """

    def __init__(self, testcase, clock, retentions, directory=None):
        self.settings = settings_for(testcase, "--retentions", retentions)
        self.directory = directory or self.settings.data_dir
        self.clock = clock
        self.store = Store(self.settings.tiers, self.settings.sketch_accuracy,
                           self.settings.late_grace, now=clock.seconds())
        self.journal = Journal(self.directory, self.settings.journal_fsync_interval)
        testcase.addCleanup(self.journal.close)
        self.core = IngestCore(self.settings, clock, self.store, self.journal)

    def snapshot(self, testcase):
        snapshotter = Snapshotter(self.store, self.journal, self.directory, self.clock,
                                  synchronous, slice_seconds=0.5)
        testcase.successResultOf(run_snapshot(self.clock, snapshotter))

    def restarted(self, testcase, retentions, **flags):
        """
        A new node over this one's directory with C{retentions}, recovered.
        """
        self.journal.flush()
        again = Node(testcase, self.clock, retentions, self.directory)
        again.summary = recover(self.directory, again.store, again.core, flags.pop(
            "move_corrupt_aside", False), self.clock.seconds(), **flags)
        again.store.tick(self.clock.seconds())
        return again


class Feed:
    """
    The same points into several nodes (each its own item objects: a
    partial's sketch is not shared between stores).
    """

    def __init__(self, seed, count=14):
        self.seed = seed
        self.names = series_names(count)
        self.rounds = 0

    def run(self, clock, nodes, rounds, every=23):
        rngs = [random.Random(self.seed + self.rounds) for _ in nodes]
        for _ in range(rounds):
            clock.advance(every)
            for node, rng in zip(nodes, rngs):
                self_items = mixed_items(rng, self.names, None)
                assert node.core.submit(self_items, "test") == []
                node.store.tick(clock.seconds())
        self.rounds += rounds


def rows(store, series, i):
    return bucket_rows(store, series, i, 0, 2 ** 32 - 1)


def close(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


class PlanTests(SynchronousTestCase):

    def test_same_steps_need_no_plan(self):
        """Other retentions with the same steps load as they are."""
        self.assertIsNone(tiermod.plan([5, 60, 3600], parse_retentions("5s:1h,1m:1d,1h:1y")))

    def test_added_tier_built_from_the_coarsest_divisor(self):
        """A 5m tier between 1m and 1h is built from the 1m rows; the others are kept."""
        plan = tiermod.plan([5, 60, 3600], parse_retentions("5s:6h,1m:8d,5m:30d,1h:forever"))
        self.assertEqual(plan.sources, [("keep", 0), ("keep", 1), ("build", 1), ("keep", 2)])
        self.assertEqual(plan.removed, [])
        plan = tiermod.plan([5, 60, 3600], parse_retentions("5s:6h,1m:8d,1h:30d,1d:forever"))
        self.assertEqual(plan.sources[-1], ("build", 2))

    def test_removed_tier_refused_naming_flag_and_command(self):
        """5s to 10s removes the 5s tier: refused naming --retentions, both steps, the flag and the command."""
        new = parse_retentions("10s:6h,1m:8d,1h:forever")
        error = self.assertRaises(tiermod.TierMismatch, tiermod.plan, [5, 60, 3600], new)
        text = str(error)
        for part in ("[5, 60, 3600]", "[10, 60, 3600]", "--retentions 10s:6h,1m:8d,1h:forever",
                     "the 5s tier would be removed", "--drop-removed-tiers",
                     "python -m server.migrate --data-dir DIR --retentions"):
            self.assertIn(part, text)
        plan = tiermod.plan([5, 60, 3600], new, drop_removed=True)
        self.assertEqual(plan.sources, [("build", 0), ("keep", 1), ("keep", 2)])
        self.assertEqual(plan.removed, [(0, 0)])

    def test_inexact_changes_refused(self):
        """A step no old step divides, a finer finest tier, an open bucket that cannot roll up: refused, nothing offered that loses data."""
        for new, problem in (
                ("1s:1h,1m:8d,1h:forever", "a finest tier of 1s cannot be built from 5s rows"),
                ("5s:6h,90s:8d,1h:forever", "open buckets of the removed 1m tier cannot roll up"),
                ("2m:6h,1h:forever", None)):
            tiers = parse_retentions(new)
            if problem is None:
                # 2m from 1m rows, 5s and 1m removed: only on purpose.
                self.assertRaises(tiermod.TierMismatch, tiermod.plan, [5, 60, 3600], tiers)
                plan = tiermod.plan([5, 60, 3600], tiers, drop_removed=True)
                self.assertEqual(plan.sources, [("build", 1), ("keep", 2)])
                self.assertEqual(plan.removed, [(0, 0), (1, 0)])
                continue
            error = self.assertRaises(tiermod.TierMismatch, tiermod.plan, [5, 60, 3600], tiers,
                                      drop_removed=True)
            self.assertIn(problem, str(error))
            self.assertIn("--retentions", str(error))
            self.assertNotIn("server.migrate", str(error))


class StartupMigrationTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)

    def old_and_reference(self, new, seed=3, rounds=300):
        """
        A node with the old tiers and one with C{new} from the start, fed
        the same points; the old one snapshotted, then fed more (in its
        journal only), and restarted with C{new}.
        """
        old = Node(self, self.clock, OLD)
        reference = Node(self, self.clock, new)
        feed = Feed(seed)
        feed.run(self.clock, [old, reference], rounds)
        old.snapshot(self)
        feed.run(self.clock, [old, reference], 5)
        return old, reference, feed

    def assert_tier_equal(self, a, b, i, j, fields=None, skip_sets=False):
        """
        Tier C{i} of store C{a} reads as tier C{j} of C{b}: every bucket,
        counts exact, float sums to rounding (the merge order differs).
        """
        self.assertEqual(sorted(a.series), sorted(b.series))
        for key, s in a.series.items():
            if skip_sets and s.family == SET:
                continue
            mine, theirs = rows(a, s, i), rows(b, b.series[key], j)
            self.assertEqual(sorted(mine), sorted(theirs), (key, i, j))
            names = STORED_FIELDS[s.family]
            for number, row in mine.items():
                for name, x, y in zip(names, row, theirs[number]):
                    if fields is None or name in fields:
                        self.assertTrue(close(x, y), (key, i, number, name, x, y))

    def test_added_tier_keeps_every_point(self):
        """Adding 5m between 1m and 1h: kept tiers unchanged, the 5m tier equals one kept from the start, and later roll-ups count nothing twice."""
        new = "5s:6h,1m:8d,5m:30d,1h:30d"
        old, reference, feed = self.old_and_reference(new)
        migrated = old.restarted(self, new)
        self.assertEqual([t.step for t in migrated.store.tiers], [5, 60, 300, 3600])
        self.assertTrue(migrated.summary["migrated"][0].startswith(
            "tier 5m is new: built from the %d rows of the 1m tier"
            % (migrated.store.migration.built_rows[2],)), migrated.summary["migrated"])
        self.assertGreater(migrated.store.migration.built_rows[2], 0)
        self.assertGreater(migrated.store.migration.unbuilt_sets, 0)
        old.store.tick(self.clock.seconds())
        for i, j in ((0, 0), (1, 1), (2, 3)):
            # Closed rows are the very same; the open buckets merged into a
            # read add up in another order (rounding only).
            self.assert_tier_equal(old.store, migrated.store, i, j)
            for key, s in old.store.series.items():
                self.assertIs(migrated.store.series[key].stored[j] is None, s.stored[i] is None)
                if s.stored[i] is not None:
                    self.assertEqual(migrated.store.series[key].stored[j].index, s.stored[i].index)
        exact = ("count", "sum", "sumsq", "min", "max", "last", "updates")
        self.assert_tier_equal(migrated.store, reference.store, 2, 2, exact, skip_sets=True)
        # Two more hours through the new tiers: nothing doubled or lost.
        feed.run(self.clock, [migrated, reference], 320)
        self.assert_tier_equal(migrated.store, reference.store, 3, 3)
        self.assert_tier_equal(migrated.store, reference.store, 1, 1)
        self.assert_tier_equal(migrated.store, reference.store, 2, 2, exact, skip_sets=True)
        # Written in the new tiers: the next start loads it as it is.
        migrated.snapshot(self)
        again = migrated.restarted(self, new)
        self.assertIsNone(again.store.migration)
        self.assert_tier_equal(again.store, migrated.store, 2, 2)

    def test_removed_finest_tier_on_purpose(self):
        """5s to 10s with --drop-removed-tiers: the 10s tier is built from the 5s rows and open buckets, 1m and 1h lose nothing."""
        new = "10s:6h,1m:8d,1h:30d"
        old, reference, feed = self.old_and_reference(new, rounds=200)
        error = self.assertRaises(StartupError, old.restarted, self, new)
        self.assertIn("the 5s tier would be removed", str(error))
        self.assertTrue(os.path.exists(os.path.join(old.directory, SNAPSHOT_NAME)))
        migrated = old.restarted(self, new, drop_removed_tiers=True)
        self.assertIn("tier 5s is removed", "\n".join(migrated.summary["migrated"]))
        exact = ("count", "sum", "min", "max", "updates")
        self.assert_tier_equal(migrated.store, reference.store, 0, 0, exact, skip_sets=True)
        feed.run(self.clock, [migrated, reference], 200)
        self.assert_tier_equal(migrated.store, reference.store, 1, 1)
        self.assert_tier_equal(migrated.store, reference.store, 2, 2)

    def test_tier_change_never_moved_aside(self):
        """A refused tier change is no corrupt snapshot: --move-corrupt-aside leaves it where it is."""
        old, _, _ = self.old_and_reference("10s:6h,1m:8d,1h:30d", rounds=20)
        path = os.path.join(old.directory, SNAPSHOT_NAME)
        with open(path, "rb") as f:
            before = f.read()
        error = self.assertRaises(StartupError, old.restarted, self, "10s:6h,1m:8d,1h:30d",
                                  move_corrupt_aside=True)
        self.assertIn("--retentions", str(error))
        self.assertNotIn("corrupt", str(error))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual([n for n in os.listdir(old.directory) if "corrupt" in n], [])

    def test_shorter_retention_logs_what_is_trimmed(self):
        """1m kept 8d, now 1h: start-up says how many rows of which tier the sweep drops; the 1h tier keeps them."""
        old = Node(self, self.clock, OLD)
        Feed(7).run(self.clock, [old], 400)  # about 2.5 hours
        old.snapshot(self)
        again = old.restarted(self, "5s:1h,1m:1h,1h:30d")
        line, = [m for m in again.summary["migrated"] if m.startswith("tier 1m")]
        self.assertIn("tier 1m keeps 1h now:", line)
        rows_before = sum(len(s.stored[1]) for s in again.store.series.values()
                          if s.stored[1] is not None)
        again.store.sweep(self.clock.seconds())
        rows_after = sum(len(s.stored[1]) for s in again.store.series.values()
                         if s.stored[1] is not None)
        self.assertIn(" %d rows of " % (rows_before - rows_after,), line)
        same = old.restarted(self, OLD)
        self.assertEqual(same.summary["migrated"], [])


class CommandTests(SynchronousTestCase):

    def test_offline_migration_keeps_the_old_snapshot(self):
        """python -m server.migrate rewrites the snapshot in the new tiers and keeps the old one; a start then loads it as it is."""
        clock = Clock()
        clock.advance(T0)
        old = Node(self, clock, OLD)
        Feed(11).run(clock, [old], 200)
        old.snapshot(self)
        self.successResultOf(old.journal.close())
        path = os.path.join(old.directory, SNAPSHOT_NAME)
        with open(path, "rb") as f:
            before = f.read()
        new = "10s:6h,1m:8d,1h:30d"
        out = io.StringIO()
        self.patch(migrate.sys, "stdout", out)
        self.assertEqual(migrate.main(["--data-dir", old.directory, "--retentions", new]), 1)
        self.assertIn("--drop-removed-tiers", out.getvalue())
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(migrate.main(["--data-dir", old.directory, "--retentions", new,
                                       "--drop-removed-tiers"]), 0)
        backup, = [n for n in os.listdir(old.directory) if ".before-migration-" in n]
        with open(os.path.join(old.directory, backup), "rb") as f:
            self.assertEqual(f.read(), before)
        with gzip.open(path, "rb") as f:
            header = json.loads(f.readline())
        self.assertEqual(header["steps"], [10, 60, 3600])
        again = old.restarted(self, new)
        self.assertIsNone(again.store.migration)
        self.assertEqual(len(again.store.series), len(old.store.series))
        self.assertEqual(migrate.main(["--data-dir", old.directory, "--retentions", new]), 0)
        self.assertIn("nothing to migrate", out.getvalue())
