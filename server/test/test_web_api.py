"""
The JSON API through StubTreq: no sockets, a Clock for time.
"""

import json

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import COUNTER, GAUGE, SAMPLE, SET, TIMER, Sample
from server.test.support import T0, make_core
from server.web.api import WebAPI

BASE = "http://127.0.0.1:8080"


class APITestCase(SynchronousTestCase):
    argv = ()

    def setUp(self):
        self.core = make_core(self, *self.argv)
        self.clock = self.core.clock
        self.api = WebAPI(self.core, self.core.settings, self.clock)
        self.stub = StubTreq(self.api.app.resource())

    def submit(self, *items, transport="test"):
        self.assertEqual(self.core.submit(list(items), transport), [])

    def request(self, method, path, **kwargs):
        response = self._settled(self.stub.request(method, BASE + path, **kwargs))
        # The body too may be written over later turns (a sliced answer whose
        # first slice ran out of time on a busy machine).
        body = self._settled(self.stub.content(response))
        return response, body

    def _settled(self, d):
        """
        C{d}'s result once it fired: streaming and sliced answers go on in
        later reactor turns of our clock (d.called is true while d waits on
        the answer: not enough).
        """
        fired = []
        d.addBoth(lambda result: fired.append(True) or result)
        for _ in range(10000):
            self.stub.flush()
            if fired:
                break
            self.clock.advance(0)
        return self.successResultOf(d)

    def get_json(self, path, status=200):
        response, body = self.request("GET", path)
        self.assertEqual(response.code, status, body)
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["application/json; charset=utf-8"])
        return json.loads(body)


class ReadAPITests(APITestCase):
    def test_health(self):
        """/api/health reports status, uptime, series count and tiers."""
        self.submit(Sample("a", (), COUNTER, 1.0))
        self.clock.advance(7)
        body = self.get_json("/api/health")
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["uptime"], 7)
        self.assertEqual(body["series"], 1)
        self.assertEqual([t["step"] for t in body["tiers"]], [5, 60, 3600])

    def test_health_reports_reactor_lag(self):
        """/api/health carries the lag monitor's status: the longest recent hold in ms."""
        from server.lag import LagMonitor
        lag = LagMonitor(self.clock, self.clock.seconds, self.core.gauges)
        lag.note(123.0, self.clock.seconds())
        self.api = WebAPI(self.core, self.core.settings, self.clock, lag=lag)
        self.stub = StubTreq(self.api.app.resource())
        body = self.get_json("/api/health")
        self.assertEqual(body["reactor"]["max_lag_ms"], 123.0)
        self.assertEqual(body["reactor"]["seconds"], [[int(self.clock.seconds()), 123.0]])

    def test_health_counts_udp_lines_received(self):
        """/api/health counts every statsd line read since the start, good, bad or refused, never reset by the emission of the server's own series."""
        from server.core.model import Limits

        limits = Limits(max_name_length=12)
        self.core.submit_statsd(b"a:1|c\nb:2.5|ms|#x:y\nnot a line", "udp", limits)
        self.core.submit_statsd(b"c:1|c\nvery.long.name.here:1|c\nc:x|c\r\n", "udp", limits)
        self.core.emit_own_metrics()
        self.core.submit_statsd(b"a:2|c", "udp", limits)
        body = self.get_json("/api/health")
        self.assertEqual(body["received"], {"udp_lines": 7})

    def test_metrics_list_and_filter(self):
        """/api/metrics lists series with value and moving average, filtered."""
        self.submit(Sample("web.hits", (("host", "web1"),), COUNTER, 3.0),
                    Sample("web.latency", (), TIMER, 12.0),
                    Sample("db.load", (), GAUGE, 0.5))
        body = self.get_json("/api/metrics")
        self.assertEqual([m["key"] for m in body["metrics"]],
                         ["db.load", "web.hits;host=web1", "web.latency"])
        self.assertEqual(body["total"], 3)
        hits = body["metrics"][1]
        self.assertEqual((hits["type"], hits["value"], hits["tags"]),
                         ("counter", 3.0, {"host": "web1"}))
        self.assertEqual(hits["avg_1m"], 3.0 / 60)
        body = self.get_json("/api/metrics?filter=web")
        self.assertEqual(body["count"], 2)
        body = self.get_json("/api/metrics?filter=host:web1")
        self.assertEqual([m["name"] for m in body["metrics"]], ["web.hits"])

    def test_negative_limit_is_400(self):
        """limit=-1 is a 400 naming limit (the fuzzer found it raising inside the sliced list)."""
        body = self.get_json("/api/metrics?limit=-1", status=400)
        self.assertEqual(body["parameter"], "limit")
        self.assertEqual(self.get_json("/api/metrics?limit=%d" % (10 ** 30,))["count"], 0)

    def test_bad_filter_is_400(self):
        """A filter that does not compile is a 400 naming the filter."""
        body = self.get_json("/api/metrics?filter=/(/", status=400)
        self.assertEqual(body["parameter"], "filter")
        self.assertIn("bad filter", body["error"])

    def test_series_points_by_resolution(self):
        """/api/series returns [ts, value] per field at the chosen resolution."""
        for i in range(12):
            self.submit(Sample("lat", (), TIMER, float(i), T0 + i * 5))
        self.clock.advance(120)
        self.core.store.tick(self.clock.seconds())
        body = self.get_json("/api/series?name=lat&from=%d&until=%d&resolution=1m&fields=count,max,mean"
                             % (T0, T0 + 60))
        self.assertEqual(body["resolution"], 60)
        self.assertEqual(body["fields"]["count"], [[T0, 12.0], [T0 + 60, None]])
        self.assertEqual(body["fields"]["max"][0], [T0, 11.0])
        self.assertEqual(body["fields"]["mean"][0], [T0, 5.5])
        body = self.get_json("/api/series?name=lat&from=%d&until=%d&resolution=5s&fields=count"
                             % (T0, T0 + 10))
        self.assertEqual(body["fields"]["count"], [[T0, 1.0], [T0 + 5, 1.0], [T0 + 10, 1.0]])

    def test_series_auto_resolution(self):
        """auto picks the finest tier that covers the range within the point budget."""
        self.submit(Sample("x", (), SAMPLE, 1.0))
        self.assertEqual(self.get_json("/api/series?name=x&from=-1h")["resolution"], 5)
        self.assertEqual(self.get_json("/api/series?name=x&from=-1d")["resolution"], 60)
        self.assertEqual(self.get_json("/api/series?name=x&from=-30d")["resolution"], 3600)

    def test_series_reads_open_buckets(self):
        """Points are readable before their bucket closes, at every resolution."""
        self.submit(Sample("c", (), COUNTER, 2.0), Sample("c", (), COUNTER, 3.0))
        for resolution in ("5s", "1m", "1h"):
            body = self.get_json("/api/series?name=c&from=-1m&resolution=%s&fields=count" % resolution)
            self.assertEqual(body["fields"]["count"][-1][1], 5.0, resolution)

    def test_series_tags(self):
        """A series with tags is found by name plus tags, or by its key."""
        self.submit(Sample("m", (("dc", "eu"), ("host", "a")), SET, "u1"))
        body = self.get_json("/api/series?name=m&tags=host:a,dc:eu&from=-1m")
        self.assertEqual(body["key"], "m;dc=eu;host=a")
        body = self.get_json("/api/series?key=m%3Bdc%3Deu%3Bhost%3Da&from=-1m")
        self.assertEqual(body["fields"]["count"][-1][1], 1.0)

    def test_series_errors(self):
        """Unknown series is 404; bad parameters are 400 naming the parameter."""
        self.submit(Sample("x", (), SAMPLE, 1.0))
        self.assertEqual(self.get_json("/api/series?name=nope", 404)["parameter"], "name")
        self.assertEqual(self.get_json("/api/series", 400)["parameter"], "name")
        for query, parameter in (("from=yesterday", "from"), ("until=abc", "until"),
                                 ("resolution=7s", "resolution"), ("fields=p42", "fields"),
                                 ("from=-30d&resolution=5s", "resolution"),
                                 ("tags=bad", "tags")):
            body = self.get_json("/api/series?name=x&" + query, 400)
            self.assertEqual(body["parameter"], parameter, query)
            self.assertTrue(body["error"])

    def test_dayweek(self):
        """/api/dayweek sets today against the mean of the same time on past days."""
        for day in range(1, 8):
            self.submit(Sample("g", (), GAUGE, float(day), T0 - day * 86400 + 3600))
        self.clock.advance(2 * 3600)
        self.submit(Sample("g", (), GAUGE, 100.0, T0 + 3600))
        body = self.get_json("/api/dayweek?name=g&field=last&resolution=1h")
        self.assertEqual(body["resolution"], 3600)
        self.assertEqual(body["week_avg"][1], [T0 + 3600, 4.0])
        self.assertEqual(body["week_min"][1], [T0 + 3600, 1.0])
        self.assertEqual(body["week_max"][1], [T0 + 3600, 7.0])
        self.assertEqual(body["today"][1], [T0 + 3600, 100.0])
        self.assertEqual(body["days_with_data"], 7)
        self.assertEqual(len(body["week_avg"]), 24)

    def test_dayweek_bad_offset(self):
        """tz_offset must be minutes east of UTC."""
        self.submit(Sample("g", (), GAUGE, 1.0))
        body = self.get_json("/api/dayweek?name=g&tz_offset=abc", 400)
        self.assertEqual(body["parameter"], "tz_offset")


class DeleteTests(APITestCase):
    def test_delete_by_key_and_filter(self):
        """DELETE /api/series removes one key or every match, through the journal."""
        self.submit(Sample("a.1", (), COUNTER, 1.0), Sample("a.2", (), COUNTER, 1.0),
                    Sample("b", (), COUNTER, 1.0))
        response, body = self.request("DELETE", "/api/series?key=b")
        self.assertEqual(json.loads(body), {"deleted": 1, "keys": ["b"]})
        response, body = self.request("DELETE", "/api/series?filter=a.*")
        self.assertEqual(json.loads(body)["deleted"], 2)
        self.assertEqual(self.core.store.series, {})
        self.assertEqual(self.core.journal.pending, [])


class TokenTests(APITestCase):
    argv = ("--api-token", "s3cret-token-0123456789")

    def test_writes_need_the_token(self):
        """With a token set, import and delete without it are 401, wrong is 403."""
        response, body = self.request("DELETE", "/api/series?key=x")
        self.assertEqual(response.code, 401)
        self.assertIn("X-SimpleStats-Token", json.loads(body)["error"])
        response, body = self.request("POST", "/api/import", data=b'["a", null, 1]\n',
                                      headers={"X-SimpleStats-Token": "wrong"})
        self.assertEqual(response.code, 403)
        response, body = self.request("POST", "/api/import", data=b'["a", null, 1]\n',
                                      headers={"X-SimpleStats-Token": "s3cret-token-0123456789"})
        self.assertEqual(response.code, 200, body)

    def test_reads_stay_open(self):
        """Read-only calls need no token."""
        self.assertEqual(self.get_json("/api/health")["status"], "ok")
