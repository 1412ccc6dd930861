"""
The disk refuses: a snapshot that cannot be written, and a disk that fills
up under the journal.

We run as root, where a read-only mode does not stop writes, so the snapshot
is made to fail by putting a directory where its temporary file goes, and
the full disk is a tiny tmpfs (skipped where mounting one is not allowed).
The unit tests at the end pin the same behaviour down without a disk: a
short write through a non-blocking pipe, a journal that cannot rotate, a
periodic step that keeps failing.
"""

import fcntl
import gzip
import json
import os
import shutil
import subprocess
import time

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from serverproc import TupleConnection
from server.durability.journal import Journal, encode_entries
from server.service import guarded
from server.settings import parse_retentions
from server.durability.snapshot import Snapshotter
from server.core.store import Store

SNAPSHOT = "snapshot.jsonl.gz"
OK = b"--OK\r\n"


def send_points(server, name, count, start=0):
    """
    Send C{count} points one line at a time; returns how many were
    acknowledged and the answers that were not --OK.
    """
    acked = 0
    others = []
    with TupleConnection(server.host, server.tcp_port, timeout=10) as conn:
        conn.read_line()
        for i in range(start, start + count):
            answer = conn.request(b'["%s", null, %d]' % (name.encode(), i))
            if answer == OK:
                acked += 1
            else:
                others.append(answer)
    return acked, others


def count_of(server, name):
    status, _, body = server.http("GET", "/api/series", {"name": name, "fields": "count"})
    if status == 404:
        return 0
    assert status == 200, body
    return sum(v for _, v in json.loads(body)["fields"]["count"] if v)


def wait_for_health(server, predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        health = server.get_json("/api/health")
        if predicate(health):
            return health
        if time.monotonic() > deadline:
            raise server.error("/api/health never showed %s: %r" % (what, health))
        time.sleep(0.2)


def snapshot_header(path):
    """
    The header of a snapshot file, after checking it is whole (its trailer
    counts its series lines).
    """
    with gzip.open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines.pop() == b""
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["format"] == "simplestats-snapshot"
    assert trailer == {"end": True, "series": len(lines) - 2}
    return header


def journal_numbers(directory):
    return sorted(int(name.split(".")[1]) for name in os.listdir(directory)
                  if name.startswith("journal.") and name.endswith(".log"))


def test_unwritable_snapshot_keeps_the_previous_one_and_the_journal(make_server):
    """A snapshot that cannot be written: logged, health degraded, previous snapshot and journal kept, TCP still acknowledged, nothing lost across a kill."""
    server = make_server("--snapshot-interval", "1").start()
    data = server.data_dir
    assert send_points(server, "disk.a", 200) == (200, [])
    wait_for_health(server, lambda h: h["snapshot"]["last"] is not None, "a snapshot")

    # Where the snapshot writes its temporary file, a directory: open() fails.
    os.mkdir(os.path.join(data, SNAPSHOT + ".tmp"))
    health = wait_for_health(server, lambda h: h["status"] == "degraded", "degraded")
    assert "snapshot failed" in health["snapshot"]["error"]
    assert "Is a directory" in health["snapshot"]["error"]
    server.wait_for_log(r"snapshot failed; the previous snapshot and the journal are kept")
    with open(os.path.join(data, SNAPSHOT), "rb") as f:
        kept = f.read()
    header = snapshot_header(os.path.join(data, SNAPSHOT))

    # Still serving, still acknowledging: the journal takes the points.
    assert send_points(server, "disk.b", 300) == (300, [])
    time.sleep(2.5)  # two more failed attempts
    with open(os.path.join(data, SNAPSHOT), "rb") as f:
        assert f.read() == kept
    numbers = journal_numbers(data)
    assert numbers[0] <= header["journal_seq"]  # nothing the old snapshot needs was removed
    assert server.get_json("/api/health")["status"] == "degraded"
    failures = server.log.count("snapshot failed; the previous snapshot")

    # A crash now: the old snapshot plus the journal give back everything.
    server.kill()
    server.start()
    assert (count_of(server, "disk.a"), count_of(server, "disk.b")) == (200, 300)
    wait_for_health(server, lambda h: h["status"] == "degraded", "degraded after restart")

    # The disk is fixed: the next snapshot succeeds and health is ok again.
    os.rmdir(os.path.join(data, SNAPSHOT + ".tmp"))
    health = wait_for_health(server, lambda h: h["status"] == "ok", "ok")
    assert health["snapshot"]["error"] is None
    assert send_points(server, "disk.c", 100) == (100, [])
    # The failed snapshots of this run were logged with their tracebacks.
    server.stop(tracebacks_expected=True)
    server.start()
    assert [count_of(server, n) for n in ("disk.a", "disk.b", "disk.c")] == [200, 300, 100]
    server.stop()
    print("\nunwritable snapshot: %d failed attempts logged before the crash, 600 points"
          " acknowledged and found" % (failures,))


@pytest.fixture
def tiny_disk(tmp_path):
    """
    A 2 MiB tmpfs, unmounted at the end; skips the test where mounting is
    not allowed.
    """
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode().strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


def fill(directory):
    """
    Fill the file system of C{directory} to the last byte; returns the
    filler's path.
    """
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def test_full_disk_refuses_to_acknowledge_and_loses_nothing(make_server, tiny_disk):
    """A full disk: TCP lines are answered with an error, not --OK; once space is back the journal is whole and every acknowledged point survives a kill."""
    server = make_server("--snapshot-interval", "1", data_dir=tiny_disk / "data").start()
    assert send_points(server, "full.a", 100) == (100, [])
    wait_for_health(server, lambda h: h["snapshot"]["last"] is not None, "a snapshot")

    filler = fill(tiny_disk)
    acked, refused = send_points(server, "full.b", 300)
    assert refused, "the full disk refused nothing"
    assert all(a.startswith(b"--ERROR journal write failed") for a in refused), refused[:3]
    assert all(a.endswith(b"not acknowledged\r\n") for a in refused)
    wait_for_health(server, lambda h: h["status"] == "degraded", "degraded")

    os.remove(filler)
    assert send_points(server, "full.c", 200) == (200, [])
    server.kill()
    server.start()  # the journal must read back whole: no corrupt record in its middle
    assert count_of(server, "full.a") == 100
    assert count_of(server, "full.c") == 200
    # The lines refused at the full disk were applied but not acknowledged:
    # each is there at most once.
    assert acked <= count_of(server, "full.b") <= 300
    wait_for_health(server, lambda h: h["status"] == "ok", "ok")
    server.stop()
    print("\nfull disk: %d of 300 lines acknowledged while full, %d refused with an error;"
          " every acknowledged point found after a kill" % (acked, len(refused)))


# -- the same without a disk --------------------------------------------------------


class FakeCore:
    def __init__(self):
        from collections import Counter

        self.counters = Counter()


class DiskFailureUnitTests(SynchronousTestCase):
    def test_short_write_then_error_retries_only_the_rest(self):
        """A write cut short by an error leaves only the rest queued: the retry completes the torn record, nothing twice."""
        directory = self.mktemp()
        os.makedirs(directory)
        journal = Journal(directory, fsync_interval=0.5)
        # A non-blocking pipe takes 64 KiB, then refuses (EAGAIN, an OSError).
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, write_end)
        for fd in (read_end, write_end):
            fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
        os.close(journal._fd)
        journal._fd = write_end

        def drain():
            data = b""
            while True:
                try:
                    chunk = os.read(read_end, 1 << 20)
                except BlockingIOError:
                    return data
                data += chunk

        records = [encode_entries([["s", "k%d" % i, "c", 1.0, 1.0, 1.0, 0]]) for i in range(3000)]
        for i in range(3000):
            journal.append([["s", "k%d" % i, "c", 1.0, 1.0, 1.0, 0]])
        self.failureResultOf(journal.flush(), OSError)
        got = drain()
        self.assertTrue(0 < len(got) < len(b"".join(records)))
        for _ in range(100):  # the whole batch is a few pipefuls
            outcome = []
            journal.flush().addBoth(outcome.append)
            if outcome == [None]:
                break
            outcome[0].trap(OSError)
            got += drain()
        got += drain()
        self.assertEqual(got, b"".join(records))
        self.assertEqual(journal.pending, [])
        self.assertEqual(journal.written, len(got))

    def test_journal_that_cannot_rotate_shows_in_the_status(self):
        """A snapshot whose journal rotation fails (full disk) fails its Deferred and sets the status error."""

        class FullJournal:
            written = pending_bytes = unwritten_bytes = 0

            def rotate(self):
                raise OSError(28, "No space left on device")

        store = Store(parse_retentions("5s:1h,1m:1d"))
        snapshotter = Snapshotter(store=store, journal=FullJournal(), directory="unused",
                                  clock=Clock(), run_in_thread=None)
        d = snapshotter.take()
        failure = self.failureResultOf(d, OSError)
        self.assertIn("No space left", failure.getErrorMessage())
        self.assertEqual(snapshotter.status["error"],
                         "snapshot failed: [Errno 28] No space left on device")
        self.assertIsNone(snapshotter.running)
        self.flushLoggedErrors(OSError)

    def test_a_failing_step_is_logged_once_and_counted_each_time(self):
        """A periodic step failing every turn: one traceback, a count per failure, a line when it works again."""
        outcomes = iter([OSError("full")] * 5 + [None, OSError("again"), None])
        core = FakeCore()

        def step():
            outcome = next(outcomes)
            if outcome is not None:
                raise outcome

        run = guarded("journal-flush", step, core)
        with capturedLogs() as events:
            for _ in range(8):
                run()
        messages = [formatEvent(e) for e in events]
        self.assertEqual(core.counters["simplestats.errors.journal-flush"], 6)
        self.assertEqual(len([m for m in messages if "failed; it will run again" in m]), 2)
        self.assertIn("periodic step journal-flush works again after 5 failures", messages)
        self.assertIn("periodic step journal-flush works again after 1 failures", messages)
        self.flushLoggedErrors(OSError)

    def test_failed_deferred_of_a_step_is_counted(self):
        """A step whose Deferred fails is counted, and the failure is handled."""
        core = FakeCore()
        run = guarded("snapshot", lambda: defer.fail(OSError("full")), core)
        run()
        self.assertEqual(core.counters["simplestats.errors.snapshot"], 1)
