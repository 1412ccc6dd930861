"""
Values that must not look wrong (#12): percentiles never outside what was
seen, and never invented for a partial that came without its distribution.
"""

from server.core.model import TIMER, Partial, Sample
from server.test.support import T0
from server.test.test_web_api import APITestCase


class PercentileTests(APITestCase):
    def points(self, name, fields="median,p90,p99,min,max"):
        self.clock.advance(20)
        self.core.store.tick(self.clock.seconds())
        body = self.get_json("/api/series?name=%s&from=%d&until=%d&resolution=5s&fields=%s"
                             % (name, T0, T0, fields))
        return {f: points[0][1] for f, points in body["fields"].items()}

    def test_one_value_is_every_percentile(self):
        """A bucket of one value answers that value for every percentile, not the sketch's bin."""
        self.submit(Sample("one", (), TIMER, 50.095242, T0))
        got = self.points("one")
        self.assertEqual(got, {"median": 50.095242, "p90": 50.095242, "p99": 50.095242,
                               "min": 50.095242, "max": 50.095242})

    def test_percentiles_stay_within_min_and_max(self):
        """Two close values: p99 is at most the larger one (the sketch's bin may be above it)."""
        self.submit(Sample("two", (), TIMER, 20.089, T0), Sample("two", (), TIMER, 20.135, T0))
        got = self.points("two")
        for field in ("median", "p90", "p99"):
            self.assertGreaterEqual(got[field], 20.089)
            self.assertLessEqual(got[field], 20.135)

    def test_partial_without_sketch_has_no_percentiles(self):
        """A count/sum/min/max partial of 12 values answers null percentiles, its other fields exact."""
        self.submit(Partial("agg", (), TIMER, {"count": 12, "sum": 1840.5, "min": 3.1, "max": 410.0},
                            T0))
        got = self.points("agg", "median,p90,p99,min,max,count,sum")
        self.assertEqual(got, {"median": None, "p90": None, "p99": None, "min": 3.1,
                               "max": 410.0, "count": 12.0, "sum": 1840.5})

    def test_two_value_partial_is_exact(self):
        """A partial of two values without a sketch is its min and max: percentiles known."""
        self.submit(Partial("two", (), TIMER, {"count": 2, "sum": 13.0, "min": 3.0, "max": 10.0},
                            T0))
        got = self.points("two")
        self.assertEqual(got["min"], 3.0)
        self.assertLessEqual(got["p99"], 10.0)
        self.assertGreaterEqual(got["median"], 3.0)

    def test_sketchless_partial_survives_rollup_and_snapshot_form(self):
        """The unknown percentiles stay unknown in the 1-minute tier and through to_json/from_json."""
        from server.core.aggregate import DistAgg
        agg = DistAgg(0.01)
        agg.merge_partial({"count": 5, "sum": 10.0, "min": 1.0, "max": 3.0}, T0)
        again = DistAgg.from_json(agg.to_json(), 0.01)
        self.assertEqual(again.unsketched, 5.0)
        self.submit(Partial("agg", (), TIMER, {"count": 5, "sum": 10.0, "min": 1.0, "max": 3.0}, T0))
        self.clock.advance(120)
        self.core.store.tick(self.clock.seconds())
        body = self.get_json("/api/series?name=agg&from=%d&until=%d&resolution=1m&fields=p90,count"
                             % (T0, T0))
        self.assertEqual(body["fields"], {"p90": [[T0, None]], "count": [[T0, 5.0]]})


class CurrentValueTests(APITestCase):
    def value(self, name):
        rows = self.get_json("/api/metrics?filter=%s" % (name,))["metrics"]
        return rows[0]["value"]

    def test_counter_value_is_its_latest_bucket(self):
        """A counter shows its latest 5 s bucket's count, then 0 once a bucket passed empty."""
        from server.core.model import COUNTER
        self.clock.advance(1)
        self.submit(Sample("hits", (), COUNTER, 2000.0))
        self.assertEqual(self.value("hits"), 2000.0)
        self.clock.advance(5)  # the next bucket: the one just closed still shows
        self.assertEqual(self.value("hits"), 2000.0)
        self.clock.advance(5)
        self.assertEqual(self.value("hits"), 0.0)
        self.clock.advance(85)
        self.core.store.tick(self.clock.seconds())
        self.assertEqual(self.value("hits"), 0.0)
        self.submit(Sample("hits", (), COUNTER, 3.0))
        self.assertEqual(self.value("hits"), 3.0)

    def test_gauge_value_stays(self):
        """A gauge keeps its value however long nothing comes."""
        from server.core.model import GAUGE
        self.submit(Sample("temp", (), GAUGE, 21.5))
        self.clock.advance(90)
        self.core.store.tick(self.clock.seconds())
        self.assertEqual(self.value("temp"), 21.5)


class FuturePointTests(APITestCase):
    def test_accepted_future_point_is_readable(self):
        """A point stamped 590 s ahead is in /api/series at once, with the default until."""
        from server.core.model import GAUGE
        self.submit(Sample("soon", (), GAUGE, 7.0, T0 + 590))
        body = self.get_json("/api/series?name=soon&from=-1h&resolution=5s&fields=last")
        self.assertEqual(body["fields"]["last"][-1], [T0 + 590, 7.0])
        self.assertGreaterEqual(body["until"], T0 + 590)
        # An explicit until is honoured.
        body = self.get_json("/api/series?name=soon&from=-1h&until=now&resolution=5s&fields=last")
        self.assertLess(body["fields"]["last"][-1][0], T0 + 590)


class TagSubsetTests(APITestCase):
    def test_subset_of_tags_lists_the_tag_sets(self):
        """Asking with some of a series' tags is a 404 naming tags and listing the tag sets that exist."""
        from server.core.model import COUNTER
        self.submit(Sample("t2.req", (("env", "ci"), ("host", "web2")), COUNTER, 1.0),
                    Sample("t2.req", (("env", "ci"), ("host", "web1")), COUNTER, 1.0),
                    Sample("t2.req", (), COUNTER, 1.0))
        body = self.get_json("/api/series?name=t2.req&tags=host:web2", status=404)
        self.assertEqual(body["parameter"], "tags")
        self.assertIn("'env:ci,host:web2', ", body["error"])
        self.assertTrue(body["error"].index("host:web2") < body["error"].index("host:web1"))
        body = self.get_json("/api/series?name=nope", status=404)
        self.assertEqual((body["parameter"], body["error"]), ("name", "no series named 'nope'"))
        body = self.get_json("/api/series?name=t2.req&tags=env:ci,host:web1&fields=count")
        self.assertEqual(body["key"], "t2.req;env=ci;host=web1")
