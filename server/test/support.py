"""
Small builders shared by the unit tests.
"""

import os

from twisted.internet import defer
from twisted.internet.task import Clock

from server.core.ingest import IngestCore
from server.durability.journal import Journal
from server.settings import load
from server.core.store import Store

# 2026-11-23 00:00:00 UTC: tests start at a known, bucket-aligned time.
T0 = 1795392000.0


def settings_for(testcase, *argv, **environ):
    """
    Settings with a fresh data directory under the test's temp dir.
    """
    data = testcase.mktemp()
    os.makedirs(data)
    return load(["--data-dir", data, *argv], environ)


def make_core(testcase, *argv, now=T0):
    """
    An IngestCore on a Clock, with a store and a real journal in a temp dir.
    """
    settings = settings_for(testcase, *argv)
    clock = Clock()
    clock.advance(now)
    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace, now=now,
                  set_limit=settings.set_exact_limit)
    journal = Journal(settings.data_dir, settings.journal_fsync_interval)
    testcase.addCleanup(journal.close)
    return IngestCore(settings, clock, store, journal)


def synchronous(f, *args):
    """
    A run_in_thread that runs in this thread (tests own their time).
    """
    return defer.maybeDeferred(f, *args)


def replayed(testcase, live):
    """
    A fresh core that replayed C{live}'s journal (written first), both then
    settled and ticked at the live clock's time, for comparing their bits.
    """
    from server.durability.journal import read_journal
    from server.durability.recovery import replay
    live.durable()
    records, torn = read_journal(os.path.join(live.settings.data_dir, "journal.000001.log"))
    testcase.assertIsNone(torn)
    fresh = make_core(testcase)
    fresh.store = Store(live.settings.tiers, now=T0)
    fresh.clock = live.clock
    replay(fresh, records)
    for core in (live, fresh):
        core.store.settle()
        core.store.tick(live.clock.seconds())
    return fresh
