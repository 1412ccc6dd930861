"""
The rollup timer: ticks in slices, emits the server's own series, and
survives a failing tick.
"""

from twisted.trial.unittest import SynchronousTestCase

from server.model import COUNTER, TIMER, Sample
from server.query import bucket_rows
from server.rollup import RollupTimer
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
