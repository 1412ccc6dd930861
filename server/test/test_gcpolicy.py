"""
The garbage-collection policy: pauses timed, survivors frozen.
"""

from twisted.trial.unittest import SynchronousTestCase

from server.gcpolicy import THRESHOLDS, GcPolicy


class FakeCollector:
    """Records what the policy asks of the collector."""

    def __init__(self):
        self.callbacks = []
        self.calls = []
        self.frozen = 0
        self.enabled = True

    def isenabled(self):
        return self.enabled

    def enable(self):
        self.calls.append(("enable",))
        self.enabled = True

    def set_threshold(self, *values):
        self.calls.append(("threshold", values))

    def collect(self, generation):
        self.calls.append(("collect", generation))

    def freeze(self):
        self.calls.append(("freeze",))
        self.frozen += 1000

    def get_freeze_count(self):
        return self.frozen


class GcPolicyTests(SynchronousTestCase):
    def setUp(self):
        self.now = [0.0]
        self.collector = FakeCollector()
        self.gauges = {}
        self.policy = GcPolicy(self.gauges, timer=lambda: self.now[0], collector=self.collector)
        self.policy.install()

    def pause(self, generation, seconds):
        for callback in self.collector.callbacks:
            callback("start", {"generation": generation})
        self.now[0] += seconds
        for callback in self.collector.callbacks:
            callback("stop", {"generation": generation})

    def test_install_sets_thresholds_and_times_collections(self):
        """Thresholds are set; the longest pause of each generation is kept."""
        self.assertEqual(self.collector.calls, [("threshold", THRESHOLDS)])
        self.pause(0, 0.002)
        self.pause(2, 0.5)
        self.pause(2, 0.1)
        self.assertEqual(self.policy.status()["collections"], [0 + 1, 0, 2])
        self.assertAlmostEqual(self.policy.status()["longest_ms"][2], 500.0)

    def test_freeze_collects_young_then_freezes_and_reports(self):
        """freeze() collects generations 0-1 first, then freezes; the gauge is the period's longest pause."""
        self.pause(1, 0.03)
        self.policy.freeze()
        self.assertEqual(self.collector.calls[1:], [("collect", 1), ("freeze",)])
        self.assertEqual(self.gauges["simplestats.gc.frozen"], 1000.0)
        self.assertAlmostEqual(self.gauges["simplestats.gc.pause_ms"], 30.0)
        self.policy.freeze()
        self.assertEqual(self.gauges["simplestats.gc.pause_ms"], 0.0)

    def test_first_freeze_after_recovery_walks_nothing(self):
        """With collection off (start-up recovering), freeze() freezes and turns it on, collecting nothing."""
        self.collector.enabled = False
        self.policy.freeze()
        self.assertEqual(self.collector.calls[1:], [("freeze",), ("enable",)])
        self.assertTrue(self.collector.enabled)

    def test_uninstall_removes_the_callback(self):
        """After uninstall no callback is left with the collector."""
        self.policy.uninstall()
        self.assertEqual(self.collector.callbacks, [])
