"""
Start-up refuses when the data directory shows data that is not there
(journal numbering, the snapshot's next file) unless told to go on, and a
file it may not read is no corrupt file: never moved aside.
"""

import builtins
import errno
import io
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.durability.journal import MAGIC, journal_files, journal_path
from server.core.model import COUNTER, Sample
from server.durability.recovery import StartupError, missing_data, recover
from server.durability.snapshot import SNAPSHOT_NAME
from server.test.support import T0
from server.test.test_migrate import OLD, Node


class MissingDataTests(SynchronousTestCase):

    def test_what_the_numbering_shows(self):
        """Each shape of a data directory: fine, or the sentence naming what is missing."""
        self.assertEqual(missing_data(False, 0, [], 1), [])
        self.assertEqual(missing_data(False, 0, [1], 2), [])  # a failed first start
        self.assertEqual(missing_data(False, 0, [1, 2, 3], 4), [])
        self.assertEqual(missing_data(True, 3, [3, 4], 5), [])
        self.assertEqual(missing_data(True, 3, [1, 2, 3], 4), [])  # not removed yet: fine
        self.assertEqual(missing_data(True, 3, [3, 4, 5], 5), [])  # 5 is this run's
        problem, = missing_data(False, 0, [5, 6], 7)
        self.assertIn("there is no snapshot, but the journal starts at journal.000005.log", problem)
        self.assertIn("journal.000001.log to journal.000004.log were removed", problem)
        self.assertIn(SNAPSHOT_NAME, problem)
        problem, = missing_data(False, 0, [1, 2, 5, 6, 8], 9)
        self.assertEqual(problem, "journal.000003.log to journal.000004.log, journal.000007.log"
                                  " are missing between journal.000001.log and journal.000008.log:"
                                  " the points in them would be lost")
        problem, = missing_data(True, 4, [], 1)
        self.assertIn("the snapshot covers the journal before journal.000004.log, but"
                      " journal.000004.log, which held what was accepted after it, is missing",
                      problem)
        self.assertEqual(len(missing_data(True, 4, [6, 8], 9)), 2)
        # A corrupt snapshot moved aside on purpose: its files are not asked for.
        self.assertEqual(missing_data(False, 0, [5, 6], 7, snapshot_moved=True), [])


class RefusalTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.node = Node(self, self.clock, OLD)
        self.directory = self.node.directory
        self.snapshot_path = os.path.join(self.directory, SNAPSHOT_NAME)

    def submit(self, node, *names):
        self.clock.advance(1)
        items = [Sample(name, (), COUNTER, 1.0) for name in names]
        self.assertEqual(node.core.submit(items, "test"), [])

    def restart(self, **flags):
        return self.node.restarted(self, OLD, **flags)

    def test_new_and_failed_first_start_directories_start(self):
        """A brand-new directory, one with only an empty first journal, or one whose first journal was never given its magic: all start."""
        self.assertEqual(self.restart().summary["missing"], [])
        for name in os.listdir(self.directory):
            if name.startswith("journal."):
                os.remove(os.path.join(self.directory, name))
        with open(journal_path(self.directory, 1), "wb") as f:
            f.write(MAGIC[:2])  # killed before the magic was written
        self.assertEqual(self.restart().summary["missing"], [])

    def test_deleted_snapshot_refused_then_accepted(self):
        """No snapshot but the journal numbering past 1: refused naming the files and the flag; --accept-missing-data starts from the journal alone."""
        self.submit(self.node, "a")
        self.node.snapshot(self)
        self.submit(self.node, "b")
        self.node.snapshot(self)
        self.submit(self.node, "c")
        os.remove(self.snapshot_path)
        error = self.assertRaises(StartupError, self.restart)
        text = str(error)
        self.assertIn("data is missing from %s" % (self.directory,), text)
        self.assertIn("there is no snapshot, but the journal starts at journal.000003.log", text)
        self.assertIn("journal.000001.log to journal.000002.log were removed", text)
        self.assertIn("--accept-missing-data", text)
        # Refused again on the next try (its own empty file changes nothing).
        self.assertRaises(StartupError, self.restart)
        started = self.restart(accept_missing_data=True)
        self.assertEqual(len(started.summary["missing"]), 1)
        self.assertEqual(started.summary["records_replayed"], 1)
        self.assertEqual(sorted(started.store.series), ["c"])

    def test_gap_in_the_journal_refused(self):
        """Files 1 to 4 (the restart writes 5) with 2 removed: refused naming journal.000002.log."""
        for name in ("a", "b", "c"):
            self.submit(self.node, name)
            self.successResultOf(self.node.journal.rotate())
        os.remove(journal_path(self.directory, 2))
        error = self.assertRaises(StartupError, self.restart)
        self.assertIn("journal.000002.log is missing between journal.000001.log and"
                      " journal.000005.log: the points in it would be lost", str(error))
        started = self.restart(accept_missing_data=True)
        self.assertEqual(sorted(started.store.series), ["a", "c"])

    def test_snapshot_s_next_file_missing_refused(self):
        """The snapshot covers up to file N; file N, with what came after it, removed: refused."""
        self.submit(self.node, "a")
        self.node.snapshot(self)
        self.submit(self.node, "b")
        seq = self.node.journal.seq
        self.node.journal.flush()
        os.remove(journal_path(self.directory, seq))
        error = self.assertRaises(StartupError, self.restart)
        self.assertIn("journal.%06d.log, which held what was accepted after it, is missing"
                      % (seq,), str(error))


class UnreadableTests(SynchronousTestCase):
    """
    Permission errors are made with a refusing C{open} (tests may run as
    root, whom C{chmod 000} does not stop; the end-to-end test drops the
    capability instead), and with a real C{chmod} when not root.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.node = Node(self, self.clock, OLD)
        self.directory = self.node.directory
        self.snapshot_path = os.path.join(self.directory, SNAPSHOT_NAME)
        self.node.core.submit([Sample("a", (), COUNTER, 1.0)], "test")
        self.node.snapshot(self)
        self.node.core.submit([Sample("b", (), COUNTER, 1.0)], "test")
        self.node.journal.flush()

    def refuse(self, path, error=errno.EACCES):
        real = builtins.open

        def refusing(file, *args, **kwargs):
            if file == path:
                raise OSError(error, os.strerror(error), path)
            return real(file, *args, **kwargs)

        self.patch(builtins, "open", refusing)

    def contents(self):
        found = {}
        for name in sorted(os.listdir(self.directory)):
            full = os.path.join(self.directory, name)
            if os.path.isfile(full) and name != "simplestats.lock":
                with io.open(full, "rb") as f:  # builtins.open may be refusing
                    found[name] = f.read()
        return found

    def assert_refused(self, path, what):
        before = self.contents()
        error = self.assertRaises(StartupError, self.node.restarted, self, OLD,
                                  move_corrupt_aside=True)
        text = str(error)
        self.assertIn("cannot read %s: %s" % (path, what), text)
        self.assertIn("not corruption: nothing was moved aside", text)
        self.assertNotIn("corrupt ", text)
        after = self.contents()
        # Untouched (the refused start's own new, empty journal file aside).
        self.assertEqual({k: v for k, v in after.items() if k in before}, before)
        self.assertEqual([k for k in after if k not in before and v_nonempty(after[k])], [])
        self.assertEqual([n for n in os.listdir(self.directory) if "corrupt" in n], [])

    def test_snapshot_permission_denied(self):
        """A snapshot the server may not read: "permission denied", never "corrupt", never moved aside."""
        self.refuse(self.snapshot_path)
        self.assert_refused(self.snapshot_path, "permission denied")

    def test_journal_permission_denied(self):
        """A journal file the server may not read: refused the same way."""
        path = journal_files(self.directory)[-1][1]
        self.refuse(path, errno.EPERM)
        self.assert_refused(path, "operation not permitted")

    def test_snapshot_is_a_directory(self):
        """A directory where the snapshot should be is no corrupt snapshot either."""
        os.replace(self.snapshot_path, self.snapshot_path + ".real")
        os.mkdir(self.snapshot_path)
        self.assert_refused(self.snapshot_path, "is a directory")
        self.assertTrue(os.path.isdir(self.snapshot_path))

    def test_data_directory_unlistable(self):
        """A data directory that cannot be listed is named as unreadable."""
        node = Node(self, self.clock, OLD, self.directory)
        real = os.listdir

        def refusing(path="."):
            if path == self.directory:
                raise PermissionError(errno.EACCES, "Permission denied", path)
            return real(path)

        self.patch(os, "listdir", refusing)
        error = self.assertRaises(StartupError, recover, self.directory, node.store, node.core,
                                  True, self.clock.seconds())
        self.assertIn("cannot read %s: permission denied" % (self.directory,), str(error))

    def test_real_chmod(self):
        """With chmod 000 (when not root, who is not stopped by it)."""
        if os.geteuid() == 0:
            self.skipTest("running as root: chmod 000 does not deny root; the tests above"
                                " and the end-to-end test (without CAP_DAC_OVERRIDE) cover it")
        os.chmod(self.snapshot_path, 0)
        self.addCleanup(os.chmod, self.snapshot_path, 0o644)
        self.assert_refused(self.snapshot_path, "permission denied")


def v_nonempty(data):
    return data not in (b"", MAGIC)
