"""
The batch read of series (/api/series/batch) through StubTreq on a Clock.
"""

import json

from server.core.model import COUNTER, GAUGE, TIMER, Sample
from server.test.support import T0
from server.test.test_web_api import APITestCase


class BatchTests(APITestCase):
    argv = ("--max-batch-series", "3")

    def feed(self):
        for k in range(6):
            self.submit(Sample("c", (), COUNTER, 1.0 + k, T0 + 5 * k),
                        Sample("t", (("host", "a"),), TIMER, 10.0 * k, T0 + 5 * k))
        self.clock.advance(32)

    def test_all_series_in_one_answer(self):
        """GET with repeated key= answers every series with its fields, unknown keys in missing."""
        self.feed()
        body = self.get_json("/api/series/batch?key=c&key=t%%3Bhost%%3Da&key=gone&from=%d&until=%d"
                             "&resolution=5s" % (T0, T0 + 25))
        self.assertEqual([s["key"] for s in body["series"]], ["c", "t;host=a"])
        self.assertEqual(body["missing"], ["gone"])
        self.assertEqual(body["resolution"], 5)
        self.assertEqual([v for _, v in body["series"][0]["fields"]["count"]],
                         [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        self.assertEqual(sorted(body["series"][1]["fields"]), ["mean", "p90", "p99"])
        self.assertEqual(body["series"][1]["tags"], {"host": "a"})
        self.assertEqual(body["partial_from"], T0 + 30)
        self.assertIsNone(body["since"])

    def test_series_deleted_midway_is_missing(self):
        """A series deleted while the answer is written a series per turn is listed in missing."""
        self.feed()
        self.api.slice_seconds = 0  # every yield ends a slice: a series per turn
        d = self.stub.request("GET", "http://127.0.0.1:8080/api/series/batch?key=c&key=t%3Bhost%3Da")
        self.stub.flush()
        self.core.delete(["t;host=a"])
        for _ in range(100):
            self.clock.advance(0)
            self.stub.flush()
        body = json.loads(self.successResultOf(self.stub.content(self.successResultOf(d))))
        self.assertEqual([s["key"] for s in body["series"]], ["c"])
        self.assertEqual(body["missing"], ["t;host=a"])

    def test_post_with_fields_per_series(self):
        """POST takes a JSON body with per-series fields and relative times."""
        self.feed()
        request = {"series": [{"key": "t;host=a", "fields": ["max"]}, "c"],
                   "from": T0, "until": T0 + 10, "fields": ["rate"], "resolution": "5s"}
        response, raw = self.request("POST", "/api/series/batch", data=json.dumps(request).encode())
        self.assertEqual(response.code, 200, raw)
        body = json.loads(raw)
        self.assertEqual(body["series"][0]["fields"], {"max": [[T0, 0.0], [T0 + 5, 10.0],
                                                               [T0 + 10, 20.0]]})
        self.assertEqual(body["series"][1]["fields"], {"rate": [[T0, 0.2], [T0 + 5, 0.4],
                                                                [T0 + 10, 0.6]]})

    def test_since_returns_only_newer_points_at_the_same_resolution(self):
        """since= keeps the resolution chosen from from..until and returns the points from since on."""
        self.feed()
        full = self.get_json("/api/series/batch?key=c&from=-1h")
        newer = self.get_json("/api/series/batch?key=c&from=-1h&since=%d" % (T0 + 20,))
        self.assertEqual(newer["resolution"], full["resolution"])
        self.assertEqual(newer["since"], T0 + 20)
        self.assertEqual(newer["series"][0]["fields"]["count"],
                         [p for p in full["series"][0]["fields"]["count"] if p[0] >= T0 + 20])
        self.assertEqual([v for _, v in newer["series"][0]["fields"]["count"]], [5.0, 6.0, None])

    def test_partial_bucket_is_marked(self):
        """partial_from is the start of the bucket in progress: a live counter's low last point is after it."""
        self.submit(Sample("c", (), COUNTER, 10.0, T0))
        self.clock.advance(60)
        self.submit(Sample("c", (), COUNTER, 1.0))
        body = self.get_json("/api/series/batch?key=c&from=-10m&resolution=1m")
        points = body["series"][0]["fields"]["count"]
        self.assertEqual(body["partial_from"], T0 + 60)
        self.assertEqual(points[-1], [T0 + 60, 1.0])
        self.assertEqual([p for p in points if p[0] < body["partial_from"]][-1], [T0, 10.0])

    def test_gaps_are_null_for_counters_and_gauges(self):
        """After an outage a counter and a gauge read null, not 0 or a carried value."""
        self.submit(Sample("c", (), COUNTER, 3.0, T0), Sample("g", (), GAUGE, 7.0, T0))
        self.clock.advance(20)
        self.submit(Sample("c", (), COUNTER, 2.0), Sample("g", (), GAUGE, 8.0))
        body = self.get_json("/api/series/batch?key=c&key=g&from=%d&resolution=5s" % (T0,))
        counts = [v for _, v in body["series"][0]["fields"]["count"]]
        gauges = [v for _, v in body["series"][1]["fields"]["last"]]
        self.assertEqual(counts, [3.0, None, None, None, 2.0])
        self.assertEqual(gauges, [7.0, None, None, None, 8.0])

    def test_auto_resolution_respects_retention(self):
        """auto over 24 h picks 1 m (5 s keeps 6 h); over 7 d too; resolutions say which can answer."""
        self.feed()
        day = self.get_json("/api/series/batch?key=c&from=-24h")
        self.assertEqual(day["resolution"], 60)
        usable = {o["name"]: o["usable"] for o in day["resolutions"]}
        self.assertEqual(usable, {"5s": False, "1m": True, "1h": True})
        self.assertIn("keeps 6h", day["resolutions"][0]["reason"])
        week = self.get_json("/api/series/batch?key=c&from=-7d")
        self.assertEqual(week["resolution"], 3600)  # 1m would be 10080 points, over 2000

    def test_explicit_resolution_that_cannot_answer_is_one_400(self):
        """5s over 7 days is a 400 naming the resolutions that can, in /api/series/batch and /api/series."""
        self.feed()
        for path in ("/api/series/batch?key=c&from=-7d&resolution=5s",
                     "/api/series?key=c&from=-7d&resolution=5s"):
            body = self.get_json(path, 400)
            self.assertEqual(body["parameter"], "resolution")
            self.assertEqual(body["usable"], ["1m", "1h"])
            self.assertIn("use one of: auto, 1m, 1h", body["error"])
        body = self.get_json("/api/series/batch?key=c&from=-24h&resolution=5s", 400)
        self.assertIn("5s keeps 6h, this range starts 1d ago", body["error"])

    def test_bad_requests_name_the_parameter(self):
        """No key, too many keys, a field the type lacks, a bad body: 400 naming what was wrong."""
        self.feed()
        for path, parameter in (("/api/series/batch", "key"),
                                ("/api/series/batch?key=a&key=b&key=c&key=d", "key"),
                                ("/api/series/batch?key=c&fields=p90", "fields"),
                                ("/api/series/batch?key=c&since=soon", "since"),
                                ("/api/series/batch?filter=/(/", "filter")):
            body = self.get_json(path, 400)
            self.assertEqual(body["parameter"], parameter, path)
        self.assertIn("'c'", self.get_json("/api/series/batch?key=c&fields=p90", 400)["error"])
        for data, parameter in ((b"[1]", "body"), (b"{", "body"), (b'{"series": [3]}', "series[0]"),
                                (b'{"series": ["c"], "from": true}', "from")):
            response, raw = self.request("POST", "/api/series/batch", data=data)
            self.assertEqual(response.code, 400, raw)
            self.assertEqual(json.loads(raw)["parameter"], parameter, data)

    def test_filter_adds_matching_series_up_to_the_limit(self):
        """A filter adds its matches sorted after the keys; more than the limit is a 400."""
        self.feed()
        self.submit(Sample("t", (("host", "b"),), TIMER, 1.0))
        body = self.get_json("/api/series/batch?key=c&filter=t%20host:*")
        self.assertEqual([s["key"] for s in body["series"]], ["c", "t;host=a", "t;host=b"])
        self.submit(Sample("t", (("host", "c"),), TIMER, 1.0), Sample("t", (("host", "d"),), TIMER, 1.0))
        body = self.get_json("/api/series/batch?filter=t", 400)
        self.assertEqual(body["parameter"], "filter")
        self.assertIn("--max-batch-series 3", body["error"])


class HealthPortsTests(APITestCase):
    argv = ("--tcp-port", "9007")

    def test_ports_listened_on(self):
        """/api/health names the ports: those listened on once known, the settings' before."""
        self.assertEqual(self.get_json("/api/health")["ports"], {"tcp": 9007, "udp": 8125, "http": 8080})
        self.api.ports = lambda: {"tcp": 1, "udp": 2, "http": 3}
        self.assertEqual(self.get_json("/api/health")["ports"], {"tcp": 1, "udp": 2, "http": 3})


class HealthMaxPointsTests(APITestCase):
    argv = ("--max-points", "500")

    def test_max_points(self):
        """/api/health gives --max-points, the limit the page checks resolutions against."""
        self.assertEqual(self.get_json("/api/health")["max_points"], 500)


class BatchTokenTests(APITestCase):
    argv = ("--api-token", "s3cret-token-0123456789")

    def test_post_batch_is_a_read(self):
        """A batch POST needs no token when reads do not (it only reads)."""
        self.submit(Sample("c", (), COUNTER, 1.0))
        response, raw = self.request("POST", "/api/series/batch", data=b'{"series": ["c"]}')
        self.assertEqual(response.code, 200, raw)
