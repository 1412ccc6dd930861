"""
The rollup timer: ticks in slices, emits the server's own series, and
survives a failing tick.
"""

from twisted.trial.unittest import SynchronousTestCase

from server.core.model import COUNTER, TIMER, Sample
from server.core.query import bucket_rows
from server.core.rollup import RollupTimer
from server.test.support import T0, make_core


class FakeTimer:
    """A timer that moves on a fixed amount each time it is read."""

    def __init__(self, step):
        self.now = 0.0
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


class FakeSnapshotter:
    status = {"duration": None}


def fill(core, count):
    core.submit([Sample("s%05d" % i, (), TIMER if i % 2 else COUNTER, float(i), T0 + 1)
                 for i in range(count)], "test")


class RollupTimerTests(SynchronousTestCase):
    def test_sliced_tick_equals_whole_tick(self):
        """A tick cut into slices ends in the state of one uninterrupted tick."""
        whole, sliced = make_core(self), make_core(self)
        for core in (whole, sliced):
            fill(core, 500)
            core.clock.advance(20)
        whole.store.tick(whole.clock.seconds())
        # Each timer read moves 10 ms on and the timer is read every 64
        # closes: a 20 ms slice ends after a few hundred closes.
        timer = RollupTimer(sliced.store, sliced, FakeSnapshotter(), sliced.clock, FakeTimer(0.01))
        timer()
        self.assertTrue(timer.running)
        for _ in range(1000):
            if not timer.running:
                break
            sliced.clock.advance(0)
        self.assertFalse(timer.running)
        self.assertGreater(timer.slices, 1)
        self.assertEqual(timer.closed, 500)  # one 5 s bucket per series; the minute is still open
        for key, series in whole.store.series.items():
            other = sliced.store.series[key]
            for i in range(3):
                self.assertEqual(bucket_rows(whole.store, series, i, 0, 2 ** 32),
                                 bucket_rows(sliced.store, other, i, 0, 2 ** 32))

    def test_points_between_slices_are_kept(self):
        """Points for due buckets that arrive between slices are not lost."""
        core = make_core(self)
        fill(core, 300)
        core.clock.advance(20)
        timer = RollupTimer(core.store, core, FakeSnapshotter(), core.clock, FakeTimer(0.01))
        timer()
        self.assertTrue(timer.running)
        core.submit([Sample("s00000", (), COUNTER, 5.0, T0 + 2)], "test")
        while timer.running:
            core.clock.advance(0)
        core.store.tick(core.clock.seconds())
        series = core.store.series["s00000"]
        number = int(T0 // 5)
        self.assertEqual(bucket_rows(core.store, series, 0, number, number), {number: (5.0,)})

    def test_failing_tick_is_counted_and_retried(self):
        """A tick that raises is logged and counted; the next call runs again."""
        core = make_core(self)
        timer = RollupTimer(core.store, core, FakeSnapshotter(), core.clock, FakeTimer(0.001))
        calls = []

        def broken(now, deadline=None, timer=None):
            calls.append(now)
            raise RuntimeError("boom")

        core.store.tick = broken
        timer()
        timer()
        self.assertEqual(len(calls), 2)
        self.assertEqual(core.counters["simplestats.errors.rollup"], 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_emits_own_series(self):
        """After a tick the server's own series carry the tick time."""
        core = make_core(self)
        timer = RollupTimer(core.store, core, FakeSnapshotter(), core.clock, FakeTimer(0.001),
                            emit_every=5.0)
        core.clock.advance(6)
        timer()
        self.assertIn("simplestats.rollup.tick_ms", core.store.series)
        self.assertIn("simplestats.series.count", core.store.series)


class RetentionSweepTests(SynchronousTestCase):
    def run_timer(self, timer, clock):
        timer()
        for _ in range(100000):
            if not (timer.running or timer.sweeping):
                return
            clock.advance(0)
        self.fail("the timer never finished")

    def test_stopped_series_loses_expired_rows(self):
        """A series that stopped sending loses rows past retention without closing a new bucket."""
        core = make_core(self, "--retentions", "5s:1m,1m:10m")
        fill(core, 1)
        timer = RollupTimer(core.store, core, FakeSnapshotter(), core.clock, FakeTimer(0.001),
                            sweep_every=60.0)
        core.clock.advance(30)
        self.run_timer(timer, core.clock)
        series = core.store.series["s00000"]
        self.assertEqual(len(series.stored[0]), 1)
        core.clock.advance(120)
        self.run_timer(timer, core.clock)
        self.assertEqual(len(series.stored[0]), 0)
        self.assertEqual(len(series.stored[1]), 1)
        self.assertIn("s00000", core.store.series)

    def test_series_with_nothing_left_is_deleted_through_the_journal(self):
        """Once every tier's retention passed, the series goes, journaled as a deletion."""
        core = make_core(self, "--retentions", "5s:1m,1m:10m")
        fill(core, 300)
        timer = RollupTimer(core.store, core, FakeSnapshotter(), core.clock, FakeTimer(0.001),
                            sweep_every=60.0, slice_seconds=0.02)
        for _ in range(14):
            core.clock.advance(60)
            self.run_timer(timer, core.clock)
        left = [k for k in core.store.series if k.startswith("s0")]
        self.assertEqual(left, [])
        self.assertIn("simplestats.series.expired_empty", core.store.series)
        core.durable()
        from server.durability.journal import journal_path, read_journal
        records, _ = read_journal(journal_path(core.journal.directory, core.journal.seq))
        deleted = [e[1] for r in records if isinstance(r, list) for e in r if e[0] == "d"]
        self.assertEqual(sorted(k for k in deleted if k.startswith("s0")),
                         ["s%05d" % i for i in range(300)])

    def test_sliced_sweep_equals_whole(self):
        """A sweep cut into slices trims exactly what one sweep does."""
        whole, sliced = (make_core(self, "--retentions", "5s:1m,1m:10m") for _ in range(2))
        for core in (whole, sliced):
            fill(core, 2000)
            core.clock.advance(20)
            core.store.tick(core.clock.seconds())
            core.clock.advance(100)
            core.store.tick(core.clock.seconds())
        empty, finished = whole.store.sweep(whole.clock.seconds())
        self.assertTrue(finished)
        timer = FakeTimer(0.01)
        slices = 0
        while True:
            slices += 1
            got, finished = sliced.store.sweep(sliced.clock.seconds(), deadline=timer() + 0.02,
                                               timer=timer)
            self.assertEqual(got, [])
            if finished:
                break
        self.assertGreater(slices, 1)
        for key, series in whole.store.series.items():
            other = sliced.store.series[key]
            self.assertEqual([len(t or ()) for t in series.stored],
                             [len(t or ()) for t in other.stored])
