"""
Graphite's HTTP API through StubTreq, replaying the requests Grafana's
Graphite data source sends: no sockets, a Clock for time.
"""

import json
from urllib.parse import urlencode

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import COUNTER, GAUGE, SAMPLE, SET, TIMER, Sample
from server.test.support import T0, make_core
from server.core.events import check_event
from server.web.graphite.api import GraphiteAPI, is_graphite_path

BASE = "http://127.0.0.1:8080"
FORM = {b"Content-Type": [b"application/x-www-form-urlencoded"]}


class GraphiteTestCase(SynchronousTestCase):
    argv = ()

    def setUp(self):
        self.core = make_core(self, *self.argv)
        self.clock = self.core.clock
        self.api = GraphiteAPI(self.core, self.core.settings, self.clock)
        self.stub = StubTreq(self.api.app.resource())

    def submit(self, *items):
        self.assertEqual(self.core.submit(list(items), "test"), [])

    def points(self, name, values, start, step=5.0, kind=SAMPLE, tags=()):
        """One point per step from start, stamped mid-bucket."""
        self.submit(*[Sample(name, tags, kind, float(v), start + i * step + 1)
                      for i, v in enumerate(values) if v is not None])

    def request(self, method, path, **kwargs):
        d = self.stub.request(method, BASE + path, **kwargs)
        fired = []
        d.addBoth(lambda result: fired.append(True) or result)
        for _ in range(10000):
            self.stub.flush()
            if fired:
                break
            self.clock.advance(0)
        response = self.successResultOf(d)
        body = self.successResultOf(self.stub.content(response))
        return response, body

    def render(self, status=200, method="GET", **params):
        targets = params.pop("target")
        if isinstance(targets, str):
            targets = [targets]
        query = urlencode([("target", t) for t in targets] + sorted(params.items()))
        if method == "POST":
            response, body = self.request("POST", "/render", data=query.encode(), headers=FORM)
        else:
            response, body = self.request("GET", "/render?" + query)
        self.assertEqual(response.code, status, body)
        return json.loads(body) if status == 200 else body.decode()

    def get_json(self, path, status=200, method="GET", data=None):
        if data is not None:
            response, body = self.request(method, path, data=urlencode(data).encode(),
                                          headers=FORM)
        else:
            response, body = self.request(method, path)
        self.assertEqual(response.code, status, body)
        return json.loads(body)


class GrafanaRequestTests(GraphiteTestCase):
    def test_aliassub_wrapped_post(self):
        """Grafana's POST (aliasSub-wrapped target, -6h/now, maxDataPoints) answers every series with its refId after the last space."""
        start = T0 - 6 * 3600
        self.points("api.latency", range(6 * 720), start)
        answer = self.render(method="POST", target='aliasSub(api.latency, "(^.*$)", "\\1 A")',
                             format="json", maxDataPoints="361", **{"from": "-6h",
                                                                    "until": "now"})
        self.assertEqual(len(answer), 1)
        series = answer[0]
        self.assertEqual(series["target"].rsplit(" ", 1), ["api.latency", "A"])
        self.assertEqual(series["tags"], {"name": "api.latency"})
        points = series["datapoints"]
        self.assertLessEqual(len(points), 361)
        step = points[1][1] - points[0][1]
        # 4320 values of 5 s in at most 361 points: 12 per point, one a minute.
        self.assertEqual(step, 60)
        self.assertTrue(all(t % 60 == 0 for _, t in points))
        # Each point averages twelve 5 s values: as graphite-web does, those
        # from one step before its timestamp (its renderViewJson drops one
        # value fewer than it moves the start by).
        value, ts = points[5]
        first = int((ts - start) // 5) - 1
        self.assertEqual(value, sum(range(first, first + 12)) / 12)

    def test_save_and_test(self):
        """'Save & test' renders constantLine(100) over the last hour: named 100.0, three points from from to until."""
        answer = self.render(target="constantLine(100)", format="json", **{"from": "-1h",
                                                                           "until": "now"})
        now = int(T0)
        self.assertEqual(answer, [{"target": "100.0", "tags": {"name": "100.0"},
                                   "datapoints": [[100.0, now - 3600], [100.0, now - 1800],
                                                  [100.0, now]]}])

    def test_find_browsing(self):
        """The query editor browses with /metrics/find: branches then leaves, 0/1 integers; a series' own name is a leaf with children."""
        self.submit(Sample("api.latency", (), TIMER, 3.0), Sample("api.requests", (), COUNTER, 1.0),
                    Sample("room", (), GAUGE, 20.0))
        top = self.get_json("/metrics/find?" + urlencode({"query": "*"}))
        self.assertEqual(top, [
            {"text": "api", "id": "api", "allowChildren": 1, "expandable": 1, "leaf": 0},
            {"text": "room", "id": "room", "allowChildren": 1, "expandable": 1, "leaf": 1},
            {"text": "stats", "id": "stats", "allowChildren": 1, "expandable": 1, "leaf": 0},
            {"text": "stats_counts", "id": "stats_counts", "allowChildren": 1, "expandable": 1,
             "leaf": 0},
        ])
        fields = self.get_json("/metrics/find", method="POST", data={"query": "api.requests.*"})
        self.assertEqual([(n["text"], n["leaf"], n["expandable"]) for n in fields],
                         [("count", 1, 0), ("rate", 1, 0)])
        self.assertEqual(fields[0]["id"], "api.requests.count")
        timers = self.get_json("/metrics/find?query=stats.timers.api.latency.upper_*")
        self.assertEqual([n["id"] for n in timers], ["stats.timers.api.latency.upper_90",
                                                     "stats.timers.api.latency.upper_95",
                                                     "stats.timers.api.latency.upper_99"])

    def test_tag_autocomplete(self):
        """Tag auto-completion answers JSON arrays of tag names and of values."""
        for host in ("web1", "web2", "db1"):
            self.submit(Sample("api.latency", (("dc", "eu"), ("host", host)), TIMER, 1.0))
        self.assertEqual(self.get_json("/tags/autoComplete/tags?tagPrefix="),
                         ["dc", "host", "name"])
        self.assertEqual(self.get_json("/tags/autoComplete/tags?" + urlencode(
            {"expr": "name=api.latency.p99", "tagPrefix": "h"})), ["host"])
        self.assertEqual(self.get_json("/tags/autoComplete/values?" + urlencode(
            {"tag": "host", "valuePrefix": "web"})), ["web1", "web2"])
        self.assertEqual(self.get_json("/tags/autoComplete/values?" + urlencode(
            {"expr": "host=~web", "tag": "name", "valuePrefix": "api.latency.p"})),
            ["api.latency.p90", "api.latency.p95", "api.latency.p99"])


class RenderTests(GraphiteTestCase):
    def test_raw_points_alignment(self):
        """Raw points run from the step after from to the step holding until, as whisper answers."""
        self.points("a", [1, 2, 3, 4, 5, 6], T0 - 30)
        answer = self.render(target="a", **{"from": str(int(T0 - 30)), "until": str(int(T0 - 7))})
        self.assertEqual(answer[0]["datapoints"], [[2.0, T0 - 25], [3.0, T0 - 20],
                                                   [4.0, T0 - 15], [5.0, T0 - 10]])

    def test_names_and_fields(self):
        """A bare name reads its type's default field, name.field any field, statsd's names the same values."""
        self.submit(Sample("hits", (), COUNTER, 10.0, T0 - 9), Sample("t", (), TIMER, 4.0, T0 - 9),
                    Sample("t", (), TIMER, 8.0, T0 - 8), Sample("g", (), GAUGE, 7.0, T0 - 9),
                    Sample("u", (), SET, "x", T0 - 9))
        window = {"from": str(int(T0 - 15)), "until": str(int(T0 - 6))}

        def value(target):
            answer = self.render(target=target, **window)
            self.assertEqual(len(answer), 1, target)
            return answer[0]["datapoints"][0][0]

        self.assertEqual(value("hits"), 10.0)
        self.assertEqual(value("hits.rate"), 2.0)
        self.assertEqual(value("stats.counters.hits.count"), 10.0)
        self.assertEqual(value("stats.counters.hits.rate"), 2.0)
        self.assertEqual(value("stats.hits"), 2.0)
        self.assertEqual(value("stats_counts.hits"), 10.0)
        self.assertEqual(value("t"), 6.0)
        self.assertEqual(value("stats.timers.t.upper"), 8.0)
        self.assertEqual(value("stats.timers.t.lower"), 4.0)
        self.assertEqual(value("stats.timers.t.count_ps"), 0.4)
        self.assertEqual(value("stats.timers.t.sum"), 12.0)
        self.assertEqual(value("g"), 7.0)
        self.assertEqual(value("stats.gauges.g"), 7.0)
        self.assertEqual(value("stats.sets.u.count"), 1.0)

    def test_empty_buckets_are_null(self):
        """A counter's and a gauge's empty buckets read null under every name, neither 0 nor the last value."""
        self.submit(Sample("hits", (), COUNTER, 3.0, T0 - 29), Sample("hits", (), COUNTER, 2.0, T0 - 9),
                    Sample("g", (), GAUGE, 7.0, T0 - 29), Sample("g", (), GAUGE, 8.0, T0 - 9))
        self.clock.advance(60)
        window = {"from": str(int(T0 - 35)), "until": str(int(T0 + 5))}
        for target, (first, second) in (("hits", (3.0, 2.0)), ("hits.rate", (0.6, 0.4)),
                                        ("stats.counters.hits.count", (3.0, 2.0)),
                                        ("stats.hits", (0.6, 0.4)), ("stats_counts.hits", (3.0, 2.0)),
                                        ("g", (7.0, 8.0)), ("stats.gauges.g", (7.0, 8.0))):
            values = [v for v, _ in self.render(target=target, **window)[0]["datapoints"]]
            self.assertEqual(values, [first, None, None, None, second, None, None, None],
                             target)

    def test_globs(self):
        """Globs *, ?, [...] and {a,b} match within one node each."""
        for name in ("srv.web1.cpu", "srv.web2.cpu", "srv.db1.cpu", "srv.web10.cpu"):
            self.points(name, [1], T0 - 10)
        window = {"from": str(int(T0 - 15)), "until": str(int(T0 - 6))}

        def names(target):
            return [s["target"] for s in self.render(target=target, **window)]

        self.assertEqual(names("srv.*.cpu"), ["srv.db1.cpu", "srv.web1.cpu", "srv.web10.cpu",
                                              "srv.web2.cpu"])
        self.assertEqual(names("srv.web?.cpu"), ["srv.web1.cpu", "srv.web2.cpu"])
        self.assertEqual(names("srv.web[12].cpu"), ["srv.web1.cpu", "srv.web2.cpu"])
        self.assertEqual(names("srv.{db1,web10}.cpu"), ["srv.db1.cpu", "srv.web10.cpu"])
        self.assertEqual(names("srv.*"), [])
        self.assertEqual(names("*.*.cpu.mean"), ["srv.db1.cpu.mean", "srv.web1.cpu.mean",
                                                 "srv.web10.cpu.mean", "srv.web2.cpu.mean"])

    def test_series_by_tag(self):
        """seriesByTag finds tagged series by name and tags; the target is the canonical name;tag=value."""
        self.submit(Sample("api.latency", (("host", "web1"),), TIMER, 5.0, T0 - 9),
                    Sample("api.latency", (("host", "web2"),), TIMER, 7.0, T0 - 9),
                    Sample("api.latency", (("host", "db1"),), TIMER, 9.0, T0 - 9))
        window = {"from": str(int(T0 - 15)), "until": str(int(T0 - 6))}
        answer = self.render(target="seriesByTag('name=api.latency.p99', 'host=web1')", **window)
        self.assertEqual([(s["target"], s["tags"]) for s in answer],
                         [("api.latency.p99;host=web1", {"name": "api.latency.p99",
                                                         "host": "web1"})])
        answer = self.render(target="seriesByTag('name=~api.latency.m', 'host=web*')", **window)
        self.assertEqual([s["target"] for s in answer],
                         ["api.latency.max;host=web1", "api.latency.max;host=web2",
                          "api.latency.mean;host=web1", "api.latency.mean;host=web2",
                          "api.latency.median;host=web1", "api.latency.median;host=web2",
                          "api.latency.min;host=web1", "api.latency.min;host=web2"])
        exact = self.render(target="api.latency.max;host=db1", **window)
        self.assertEqual(exact[0]["datapoints"][0][0], 9.0)

    def test_missing_metric_is_empty(self):
        """A metric nobody sent is a 200 with an empty list."""
        self.assertEqual(self.render(target="no.such.metric"), [])
        self.assertEqual(self.render(target="sumSeries(no.such.*)"), [])

    def test_bad_requests(self):
        """An unknown function, a bad argument, a bad time (-1m) or a bad target is a 400 naming it."""
        body = self.render(400, target="noSuchFunction(a)")
        self.assertIn("Invalid parameters (Received request for unknown function: noSuchFunction",
                      body)
        body = self.render(400, target="a", **{"from": "-1m"})
        self.assertTrue(body.startswith("Invalid parameters (from='-1m'"), body)
        body = self.render(400, target="scale(a, 'x')")
        self.assertIn('parameter "factor"', body)
        body = self.render(400, target="sumSeries(a")
        self.assertIn("Invalid parameters (bad target", body)
        self.assertEqual(self.core.counters["simplestats.graphite.bad_requests"], 4)

    def test_odd_requests(self):
        """Calls nested past the stack, maxDataPoints=0 and a function that fails inside are answered, never a crash."""
        body = self.render(400, method="POST", target="scale(" * 2000 + "a" + ")" * 2000)
        self.assertIn("nest too deeply", body)
        self.points("a", [1, 2], T0 - 15)
        answer = self.render(target="a", maxDataPoints="0", **{"from": "-20s", "until": "now"})
        self.assertEqual(len(answer[0]["datapoints"]), 4)
        body = self.render(400, target="summarize(a, '0min')")
        self.assertIn("summarize", body)

    def test_series_cap(self):
        """A glob matching more series than --graphite-max-series is a 400 naming the setting."""
        self.api.settings = self.api.settings.__class__(
            **{**self.api.settings.__dict__, "graphite_max_series": 3})
        for i in range(5):
            self.points("m.s%d" % i, [1], T0 - 10)
        body = self.render(400, target="m.*")
        self.assertIn("--graphite-max-series", body)

    def test_point_cap(self):
        """A request that would read more than --graphite-max-points is a 400 naming the setting, before reading."""
        self.api.settings = self.api.settings.__class__(
            **{**self.api.settings.__dict__, "graphite_max_points": 1000})
        self.points("a", [1], T0 - 10)
        self.assertEqual(len(self.render(target="a", **{"from": "-1h"})), 1)
        body = self.render(400, target="a", **{"from": "-1y"})
        self.assertIn("--graphite-max-points", body)
        body = self.render(400, target="movingAverage(a, '2y')", **{"from": "-1h"})
        self.assertIn("--graphite-max-points", body)

    def test_csv(self):
        """format=csv writes name,time,value rows."""
        self.points("a", [1, None], T0 - 10)
        response, body = self.request("GET", "/render?" + urlencode(
            {"target": "a", "format": "csv", "from": str(int(T0 - 15)), "until": str(int(T0 - 1))}))
        self.assertEqual(body.decode().splitlines(), ["a,2026-11-22 23:59:50,1.0",
                                                      "a,2026-11-22 23:59:55,"])

    def test_version_and_functions(self):
        """/version is 1.1.10; /functions lists every function with its parameters."""
        response, body = self.request("GET", "/version")
        self.assertEqual(body, b"1.1.10")
        functions = self.get_json("/functions")
        self.assertEqual(functions["aliasSub"]["params"][1],
                         {"name": "search", "type": "string", "required": True})
        self.assertIn("percentileOfSeries", functions)


class FinderAndTagsTests(GraphiteTestCase):
    def setUp(self):
        GraphiteTestCase.setUp(self)
        self.submit(Sample("srv.web1.cpu", (), GAUGE, 1.0), Sample("srv.web2.cpu", (), GAUGE, 2.0),
                    Sample("lat", (("dc", "eu"), ("host", "web1")), TIMER, 3.0),
                    Sample("lat", (("dc", "us"), ("host", "db1")), TIMER, 3.0))

    def test_completer_and_wildcards(self):
        """format=completer adds a trailing '*' to the query and a dot to branches; wildcards=1 adds a '*' node."""
        body = self.get_json("/metrics/find?" + urlencode({"query": "srv.w", "format": "completer",
                                                           "wildcards": "1"}))
        self.assertEqual(body, {"metrics": [
            {"path": "srv.web1.", "name": "web1", "is_leaf": "0"},
            {"path": "srv.web2.", "name": "web2", "is_leaf": "0"}, {"name": "*"}]})
        tree = self.get_json("/metrics/find?" + urlencode({"query": "srv.*", "wildcards": "1"}))
        self.assertEqual(tree[0], {"text": "*", "id": "srv.*", "allowChildren": 1,
                                   "expandable": 1, "leaf": 0})

    def test_expand_and_index(self):
        """/metrics/expand lists the matching paths; /metrics/index.json every leaf path."""
        body = self.get_json("/metrics/expand?" + urlencode({"query": "srv.*.cpu",
                                                             "leavesOnly": "1"}))
        self.assertEqual(body, {"results": ["srv.web1.cpu", "srv.web2.cpu"]})
        grouped = self.get_json("/metrics/expand?" + urlencode(
            [("query", "srv.web1"), ("query", "srv.web2"), ("groupByExpr", "1")]))
        self.assertEqual(grouped, {"results": {"srv.web1": ["srv.web1"],
                                               "srv.web2": ["srv.web2"]}})
        index = self.get_json("/metrics/index.json")
        self.assertIn("srv.web1.cpu.last", index)
        self.assertIn("stats.gauges.srv.web2.cpu", index)
        self.assertFalse([p for p in index if p.startswith("lat")])

    def test_find_honours_from_and_until(self):
        """/metrics/find with from/until lists only series with points in that span."""
        self.submit(Sample("old.a", (), GAUGE, 1.0, T0 - 7200), Sample("old.b", (), GAUGE, 1.0))
        nodes = self.get_json("/metrics/find?" + urlencode({"query": "old.*", "from": "-1h",
                                                            "until": "now"}))
        self.assertEqual([n["text"] for n in nodes], ["b"])
        nodes = self.get_json("/metrics/find?" + urlencode({"query": "old.*", "from": "-1",
                                                            "until": "-90min"}))
        self.assertEqual([n["text"] for n in nodes], ["a"])
        response, body = self.request("GET", "/metrics/find?query=old.*&from=-1m")
        self.assertEqual(response.code, 400)
        self.assertIn(b"param from", body)

    def test_find_needs_a_query(self):
        """A find without a query, or with a bad pattern, is a 400 naming it."""
        response, body = self.request("GET", "/metrics/find")
        self.assertEqual((response.code, body), (400, b"Invalid parameters (Missing required"
                                                      b" parameter 'query')"))
        response, body = self.request("GET", "/metrics/find?query=a.%5Bb")
        self.assertEqual(response.code, 400)
        self.assertIn(b"unclosed '['", body)

    def test_tag_lists(self):
        """/tags lists tag names; /tags/<tag> its values with series counts; /tags/findSeries the paths."""
        self.assertEqual(self.get_json("/tags"), [{"tag": "dc"}, {"tag": "host"}, {"tag": "name"}])
        self.assertEqual(self.get_json("/tags?filter=^h"), [{"tag": "host"}])
        self.assertEqual(self.get_json("/tags/host"), {"tag": "host", "values": [
            {"value": "db1", "count": 1}, {"value": "web1", "count": 1}]})
        self.assertEqual(self.get_json("/tags/findSeries?" + urlencode(
            [("expr", "name=lat.p99"), ("expr", "dc=eu")])), ["lat.p99;dc=eu;host=web1"])
        response, body = self.request("GET", "/tags/findSeries?expr=nope")
        self.assertEqual(response.code, 400)


class AccessTests(GraphiteTestCase):
    argv = ("--api-token", "t0k3n-for-tests-0123456789", "--read-token", "on")

    def test_reads_need_the_token(self):
        """With reads behind the token, /render (GET or POST) and /metrics/find need it."""
        response, body = self.request("GET", "/render?target=a")
        self.assertEqual(response.code, 401)
        response, body = self.request("POST", "/metrics/find", data=b"query=*", headers=FORM)
        self.assertEqual(response.code, 401)
        response, body = self.request("GET", "/render?target=a", headers={
            b"Authorization": [b"Bearer t0k3n-for-tests-0123456789"]})
        self.assertEqual((response.code, body), (200, b"[]"))

    def test_post_render_is_a_read(self):
        """A POST to Graphite's read calls is a read: no token needed where reads need none."""
        from server.settings import load
        from server.web.auth import refusal
        settings = load(["--read-token", "off"])
        remote = "192.0.2.7"
        for path in (b"/render", b"/metrics/find", b"/tags/autoComplete/tags"):
            self.assertIsNone(refusal(settings, b"POST", path, lambda name: None, remote))
        self.assertEqual(refusal(settings, b"POST", b"/api/import", lambda name: None, remote)[0],
                         403)


class ServingTests(GraphiteTestCase):
    def test_recovering_is_503(self):
        """While start-up recovery holds, the Graphite API answers 503, not half the data."""
        class Holding:
            holding = True
        self.api.recovery = Holding()
        response, body = self.request("GET", "/render?target=a")
        self.assertEqual(response.code, 503)
        self.assertIn(b"recovering", body)

    def test_mounted_beside_the_json_api(self):
        """The site sends Graphite's paths to this API and every other path to the JSON API."""
        from server.web.api import WebAPI
        from server.web.graphite.api import is_graphite_path
        from server.web.routing import Routes
        web = WebAPI(self.core, self.core.settings, self.clock)
        self.stub = StubTreq(Routes(web.app.resource(), (is_graphite_path, self.api.app.resource())))
        response, body = self.request("GET", "/version")
        self.assertEqual(body, b"1.1.10")
        response, body = self.request("GET", "/api/health")
        self.assertEqual(json.loads(body)["status"], "ok")
        response, body = self.request("GET", "/metrics/find?query=*")
        self.assertEqual((response.code, body), (200, b"[]"))

    def test_globs_run_in_slices(self):
        """A glob over thousands of series is matched a slice per reactor turn, never in one go."""
        self.submit(*[Sample("many.s%d" % i, (), GAUGE, 1.0) for i in range(3000)])
        self.api.slice_seconds = 0.0
        d = self.stub.request("GET", BASE + "/render?" + urlencode(
            {"target": "sumSeries(many.*)", "from": "-1min"}))
        fired = []
        d.addBoth(lambda result: fired.append(True) or result)
        self.stub.flush()
        self.assertEqual(fired, [])
        turns = 0
        while not fired:
            # One reactor turn: only the calls already due, not the ones
            # they schedule (Clock.advance would run those too).
            due = list(self.clock.getDelayedCalls())
            self.assertEqual(len(due), 1)
            self.clock.calls.remove(due[0])
            due[0].func(*due[0].args, **due[0].kw)
            self.stub.flush()
            turns += 1
        # 3000 series, a slice of 256 per turn.
        self.assertGreaterEqual(turns, 3000 // 256)
        response = self.successResultOf(d)
        body = json.loads(self.successResultOf(self.stub.content(response)))
        self.assertEqual(body[0]["target"], "sumSeries(many.*)")
        self.assertEqual(body[0]["datapoints"][-1][0], 3000.0)


class EventsDataTests(GraphiteTestCase):
    """/events/get_data: the held events in graphite-web's shape, for Grafana's annotations."""

    def setUp(self):
        GraphiteTestCase.setUp(self)
        self.clock.advance(T0 - self.clock.seconds())
        for offset, what, tags in ((-7200, "deploy api 1", ["deploy", "api"]),
                                   (-3000, "restart db", ["db"]),
                                   (-600, "deploy web 2", ["deploy", "web"]),
                                   (-60, "note", [])):
            self.core.add_event(check_event({"what": what, "tags": tags, "data": "d " + what},
                                            T0 + offset, "http"))

    def test_grafana_annotation_query(self):
        """Grafana's query (from=-1h, until=now, tags): the tagged events in range, graphite-web's members only."""
        body = self.get_json("/events/get_data?" + urlencode({"from": "-1h", "until": "now",
                                                              "tags": "deploy"}))
        self.assertEqual(body, [{"when": T0 - 600, "what": "deploy web 2", "data": "d deploy web 2",
                                 "tags": ["deploy", "web"], "id": 3}])

    def test_defaults_and_tag_sets(self):
        """No from: every event until now, in time order; several tags: all of them, or any with set=union."""
        every = self.get_json("/events/get_data")
        self.assertEqual([e["what"] for e in every],
                         ["deploy api 1", "restart db", "deploy web 2", "note"])
        both = self.get_json("/events/get_data?" + urlencode({"tags": "deploy api"}))
        self.assertEqual([e["id"] for e in both], [1])
        both = self.get_json("/events/get_data?" + urlencode({"tags": "deploy api",
                                                              "set": "intersection"}))
        self.assertEqual([e["id"] for e in both], [1])
        either = self.get_json("/events/get_data?" + urlencode({"tags": "db web", "set": "union"}))
        self.assertEqual([e["id"] for e in either], [2, 3])
        absolute = self.get_json("/events/get_data?" + urlencode(
            {"from": "%d" % (T0 - 3600,), "until": "%d" % (T0 - 500,)}))
        self.assertEqual([e["id"] for e in absolute], [2, 3])
        posted = self.get_json("/events/get_data", method="POST", data={"tags": "db"})
        self.assertEqual([e["id"] for e in posted], [2])

    def test_jsonp(self):
        """jsonp wraps the list in a call of that name; a name that is not one is a counted 400."""
        response, body = self.request("GET", "/events/get_data?" + urlencode(
            {"from": "-20min", "jsonp": "cb.done_1"}))
        self.assertEqual(response.headers.getRawHeaders(b"Content-Type"), [b"text/javascript"])
        self.assertTrue(body.startswith(b"cb.done_1(") and body.endswith(b")"), body)
        self.assertEqual([e["id"] for e in json.loads(body[len(b"cb.done_1("):-1])], [3, 4])
        for bad in ("alert(1)//", "a b", "x" * 101, "1abc"):
            response, body = self.request("GET", "/events/get_data?" + urlencode({"jsonp": bad}))
            self.assertEqual(response.code, 400, bad)
            self.assertIn(b"jsonp=", body)
        self.assertEqual(self.core.counters["simplestats.graphite.bad_requests"], 4)

    def test_bad_times_and_set(self):
        """A time graphite-web cannot read, or an unknown set operation, is a 400 naming it."""
        for query, word in (({"from": "yesterday-ish"}, b"from="), ({"until": "soon"}, b"until="),
                            ({"set": "xor"}, b"set=")):
            response, body = self.request("GET", "/events/get_data?" + urlencode(query))
            self.assertEqual(response.code, 400, query)
            self.assertTrue(body.startswith(b"Invalid parameters (") and word in body, body)

    def test_mounted_with_the_other_graphite_paths(self):
        """The site sends /events/get_data to this API, and nothing under it."""
        self.assertTrue(is_graphite_path(b"/events/get_data"))
        self.assertFalse(is_graphite_path(b"/events/get_data/x"))
        self.assertFalse(is_graphite_path(b"/events"))


class SharedPathTests(GraphiteTestCase):
    """
    A series named like a field path of another series (C{srv.latency.max}
    beside C{srv.latency}): the series' own name wins, however it is asked.
    """

    window = {"from": str(int(T0 - 15)), "until": str(int(T0 - 6))}

    def send_both(self, own_first):
        own = [Sample("srv.latency.max", (), SAMPLE, 99.0, T0 - 9),
               Sample("srv.latency.count", (), SAMPLE, 55.0, T0 - 9)]
        other = [Sample("srv.latency", (), SAMPLE, 10.0, T0 - 9)]
        self.submit(*(own + other if own_first else other + own))

    def values(self, target):
        return {s["target"]: s["datapoints"][0][0] for s in self.render(target=target,
                                                                        **self.window)}

    def test_every_way_of_asking_reads_the_series_sent(self):
        """Exact, brace and glob read srv.latency.max as the series sent by that path, whichever series came first."""
        for own_first in (False, True):
            self.core = make_core(self)
            self.clock = self.core.clock
            self.api = GraphiteAPI(self.core, self.core.settings, self.clock)
            self.stub = StubTreq(self.api.app.resource())
            self.send_both(own_first)
            self.assertEqual(self.values("srv.latency.max"), {"srv.latency.max": 99.0})
            self.assertEqual(self.values("srv.latency.{max,count}"),
                             {"srv.latency.max": 99.0, "srv.latency.count": 55.0})
            glob = self.render(target="srv.latency.*", **self.window)
            names = [s["target"] for s in glob]
            self.assertEqual(len(names), len(set(names)), names)
            found = {s["target"]: s["datapoints"][0][0] for s in glob}
            self.assertEqual((found["srv.latency.max"], found["srv.latency.count"]), (99.0, 55.0))
            # The fields nobody sent as series still read srv.latency's.
            self.assertEqual(found["srv.latency.mean"], 10.0)
            self.assertEqual(self.values("srv.*.max"), {"srv.latency.max": 99.0})

    def test_tagged_series_own_name_wins(self):
        """seriesByTag reads a tagged series by its own name before another's field of that name."""
        for name, value in (("lat", 10.0), ("lat.max", 99.0)):
            self.submit(Sample(name, (("host", "a"),), SAMPLE, value, T0 - 9))
        answer = self.render(target="seriesByTag('name=~^lat', 'host=a')", **self.window)
        names = [s["target"] for s in answer]
        self.assertEqual(len(names), len(set(names)), names)
        found = {s["target"]: s["datapoints"][0][0] for s in answer}
        self.assertEqual(found["lat.max;host=a"], 99.0)
        self.assertEqual(self.values("seriesByTag('name=lat.max', 'host=a')"),
                         {"lat.max;host=a": 99.0})
        self.assertEqual(self.get_json("/tags/findSeries?expr=name%3D~%5Elat%5C.max%24&expr=host%3Da"),
                         ["lat.max;host=a"])

    def test_find_marks_a_series_as_a_leaf(self):
        """find marks a series' own name a leaf, expandable too when it has fields; json and completer list both nodes, as graphite-web does."""
        self.send_both(False)
        self.submit(Sample("a.b.c", (), SAMPLE, 1.0, T0 - 9))
        nodes = self.get_json("/metrics/find?query=srv.latency.*")
        by_id = {n["id"]: n for n in nodes}
        self.assertEqual(len(nodes), len(by_id))
        self.assertEqual(by_id["srv.latency.max"], {"text": "max", "id": "srv.latency.max",
                                                    "allowChildren": 1, "expandable": 1,
                                                    "leaf": 1})
        self.assertEqual(by_id["srv.latency.mean"], {"text": "mean", "id": "srv.latency.mean",
                                                     "allowChildren": 0, "expandable": 0,
                                                     "leaf": 1})
        # As graphite-web: the nodes with children first, then the leaves.
        self.assertEqual([n["id"] for n in nodes[:2]], ["srv.latency.count", "srv.latency.max"])
        self.assertEqual(self.get_json("/metrics/find?query=a.b.*"), [
            {"text": "c", "id": "a.b.c", "allowChildren": 1, "expandable": 1, "leaf": 1}])
        self.assertEqual(self.get_json("/metrics/find?query=a.b.*&leavesOnly=1"), [
            {"text": "c", "id": "a.b.c", "allowChildren": 0, "expandable": 0, "leaf": 1}])
        star = self.get_json("/metrics/find?query=a.b.c.m*&wildcards=1")[0]
        self.assertEqual(star, {"text": "*", "id": "a.b.c.*", "allowChildren": 0,
                                "expandable": 0, "leaf": 1})
        self.assertEqual(self.get_json("/metrics/find?query=a.b.*&format=json"),
                         [{"path": "a.b.c", "is_leaf": False}, {"path": "a.b.c", "is_leaf": True}])
        self.assertEqual(self.get_json("/metrics/find?query=a.b.*&format=completer"),
                         {"metrics": [{"path": "a.b.c.", "name": "c", "is_leaf": "0"},
                                      {"path": "a.b.c", "name": "c", "is_leaf": "1"}]})
        self.assertEqual(self.get_json("/metrics/expand?query=a.b.*"), {"results": ["a.b.c"]})
        index = self.get_json("/metrics/index.json")
        self.assertEqual(index.count("srv.latency.max"), 1)
