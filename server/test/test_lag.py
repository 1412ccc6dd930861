"""
The reactor lag monitor: how late a 10 ms timer comes is how long the
reactor was held.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.lag import GAUGE, LagMonitor
from server.test.support import T0


class LagMonitorTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.gauges = {}
        # The fake clock stands in for perf_counter too: a held reactor is
        # a clock advanced past the call's due time in one step.
        self.monitor = LagMonitor(self.clock, self.clock.seconds, self.gauges)
        self.monitor.start()
        self.addCleanup(self.monitor.stop)

    def test_on_time_calls_report_no_lag(self):
        """Calls that come when due leave the gauge at 0."""
        for _ in range(50):
            self.clock.advance(0.01)
        self.assertAlmostEqual(self.gauges[GAUGE], 0.0, places=6)

    def test_a_held_reactor_is_the_lateness_of_the_next_call(self):
        """A 300 ms hold shows as about 290 ms of lag, in the gauge and in the seconds."""
        self.clock.advance(0.01)
        self.clock.advance(0.3)
        self.assertAlmostEqual(self.gauges[GAUGE], 290.0, places=3)
        status = self.monitor.status(self.clock.seconds())
        self.assertAlmostEqual(status["max_lag_ms"], 290.0, places=3)
        self.assertEqual(status["seconds"][-1][0], int(self.clock.seconds()))

    def test_the_gauge_forgets_after_its_window(self):
        """The gauge is the longest lag of the last 5 s; the per-second history keeps it."""
        self.clock.advance(0.01)
        self.clock.advance(0.2)
        for _ in range(700):
            self.clock.advance(0.01)
        self.assertAlmostEqual(self.gauges[GAUGE], 0.0, places=6)
        status = self.monitor.status(self.clock.seconds())
        self.assertAlmostEqual(max(ms for _, ms in status["seconds"]), 190.0, places=3)
        self.assertAlmostEqual(status["longest_ms"], 190.0, places=3)

    def test_stop_cancels_the_timer(self):
        """After stop nothing is left scheduled."""
        self.monitor.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
