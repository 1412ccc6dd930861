"""
GET /metrics: Prometheus' text format, read back by the official parser
(prometheus_client), through StubTreq on a Clock.
"""

import gzip
import json
import math
import os

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import (COUNTER, DISTRIBUTION, GAUGE, HISTOGRAM, SAMPLE, SET, TIMER,
                               Partial, Sample)
from server.durability.snapshot import SNAPSHOT_NAME
from server.test.support import T0, make_core
from server.test.test_persistence import Server, TurnClock, run_snapshot
from server.web.api import WebAPI
from server.web.prometheus import Exposition, metric_name, quantile_tier
from server.web.recovering import RecoveringGate

BASE = "http://127.0.0.1:8080"


def parsed(text):
    """
    C{{family name: (type, documentation, {(sample name, labels): value})}}
    as prometheus_client reads C{text}.
    """
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name in out:
            raise AssertionError("family %s is split" % (family.name,))
        samples = {}
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in samples:
                raise AssertionError("sample %r twice" % (key,))
            samples[key] = sample.value
        out[family.name] = (family.type, family.documentation, samples)
    return out


def turned(clock, stub, d):
    """
    Turn C{clock} until C{d} fires (streamed and sliced answers go on in
    later turns); returns the number of turns.
    """
    fired = []
    d.addBoth(lambda result: fired.append(True) or result)
    for turns in range(100000):
        stub.flush()
        if fired:
            return turns
        clock.advance(0)
    raise AssertionError("never answered")


class Scraper:
    """
    A WebAPI over C{core} and what a scrape of it answers.
    """

    def __init__(self, testcase, core, clock=None, **kwargs):
        self.testcase = testcase
        self.core = core
        self.clock = clock or core.clock
        self.api = WebAPI(core, core.settings, self.clock, **kwargs)
        self.stub = StubTreq(self.api.app.resource())
        self.turns = 0

    def get(self, path="/metrics", headers=None):
        d = self.stub.get(BASE + path, headers=headers)
        self.turns = turned(self.clock, self.stub, d)
        response = self.testcase.successResultOf(d)
        d = self.stub.content(response)
        self.turns += turned(self.clock, self.stub, d)
        return response, self.testcase.successResultOf(d)

    def text(self, path="/metrics"):
        response, body = self.get(path)
        self.testcase.assertEqual(response.code, 200, body)
        self.testcase.assertEqual(response.headers.getRawHeaders("content-type"),
                                  ["text/plain; version=0.0.4; charset=utf-8"])
        return body.decode("utf-8")

    def families(self, path="/metrics"):
        return parsed(self.text(path))


class NameTests(SynchronousTestCase):
    def test_escaped_as_statsd_exporter(self):
        """Names are escaped as statsd_exporter's EscapeMetricName: its own test table."""
        table = {
            "clean": "clean",
            "0starts_with_digit": "_0starts_with_digit",
            "with_underscore": "with_underscore",
            "with--doubledash": "with_doubledash",
            "with---multiple-dashes": "with_multiple_dashes",
            "with.dot": "with_dot",
            "with\U0001f631emoji": "with_emoji",
            "with.*.multiple": "with___multiple",
            "test.web-server.foo.bar": "test_web_server_foo_bar",
            "a-.-b": "a___b",
        }
        for name, expected in table.items():
            self.assertEqual(metric_name(name), expected, name)

    def test_numbers(self):
        """Values are written as Go writes them: NaN, +Inf, -Inf, and Python's shortest repr otherwise."""
        from server.web.prometheus import number
        self.assertEqual([number(v) for v in (math.nan, math.inf, -math.inf, 1.5, 3.0, 1e300)],
                         ["NaN", "+Inf", "-Inf", "1.5", "3.0", "1e+300"])

    def test_non_finite_totals(self):
        """A counter whose total overflowed to infinity is written +Inf and still parses."""
        core = make_core(self)
        core.submit([Sample("big", (), COUNTER, 1e308), Sample("big", (), COUNTER, 1e308)], "test")
        self.assertEqual(parsed(Scraper(self, core).text())["big"][2],
                         {("big_total", ()): math.inf})

    def test_quantile_tier(self):
        """Summaries read the finest tier of 60 s or more, else the coarsest."""
        from server.settings import parse_retentions
        self.assertEqual(quantile_tier(parse_retentions("5s:6h,1m:8d,1h:forever")), 1)
        self.assertEqual(quantile_tier(parse_retentions("10s:6h,2m:8d")), 1)
        self.assertEqual(quantile_tier(parse_retentions("1s:1h,2s:2h")), 1)
        self.assertEqual(quantile_tier(parse_retentions("1m:1d,1h:8d")), 0)


class ScrapeTests(SynchronousTestCase):
    def setUp(self):
        self.core = make_core(self)
        self.clock = self.core.clock
        self.store = self.core.store
        self.scraper = Scraper(self, self.core)

    def submit(self, *items):
        self.assertEqual(self.core.submit(list(items), "test"), [])

    def settle_minute(self):
        """Close the minute the points went into (and its 5 s buckets)."""
        self.clock.advance(70)
        self.store.tick(self.clock.seconds())

    def raw(self, key, metric_type, value):
        """A point straight into the store, for keys no parser lets through."""
        now = self.clock.seconds()
        self.store.add(self.store.get_or_create(key, metric_type), value, 1.0, now, now)

    def test_every_type(self):
        """Counter, gauge, set, and the four distribution types each come out as their Prometheus type with their values."""
        host = (("host", "web1"),)
        self.submit(Sample("api.requests", host, COUNTER, 3.0),
                    Sample("api.requests", host, COUNTER, 2.0, rate=0.5),
                    Sample("room.temp", (), GAUGE, 21.5),
                    Sample("room.temp", (), GAUGE, -1.5, delta=True),
                    Sample("users", (), SET, "bob"))
        for metric_type, name in ((TIMER, "api.latency"), (HISTOGRAM, "sizes"),
                                  (DISTRIBUTION, "dist.x"), (SAMPLE, "plain")):
            self.submit(*[Sample(name, host, metric_type, float(v)) for v in range(1, 101)])
        self.submit(Sample("plain", host, SAMPLE, 1000.0, rate=0.25))
        self.settle_minute()
        families = self.scraper.families()
        labels = (("host", "web1"),)
        self.assertEqual(families["api_requests"],
                         ("counter", "SimpleStats counter api.requests",
                          {("api_requests_total", labels): 7.0}))
        self.assertEqual(families["room_temp"][:2], ("gauge", "SimpleStats gauge room.temp"))
        self.assertEqual(families["room_temp"][2], {("room_temp", ()): 20.0})
        # The last closed 5 s bucket is past the one bob was in.
        self.assertEqual(families["users"], ("gauge", "SimpleStats set users",
                                             {("users", ()): 0.0}))
        for name, type_name in (("api_latency", "timer"), ("sizes", "histogram"),
                                ("dist_x", "distribution")):
            kind, doc, samples = families[name]
            self.assertEqual((kind, doc.split()[1]), ("summary", type_name))
            self.assertEqual(samples[(name + "_count", labels)], 100.0)
            self.assertEqual(samples[(name + "_sum", labels)], 5050.0)
            for quantile, exact in (("0.5", 50), ("0.9", 90), ("0.99", 99)):
                value = samples[(name, labels + (("quantile", quantile),))]
                self.assertTrue(abs(value - exact) <= 0.01 * exact + 1, (name, quantile, value))
        samples = families["plain"][2]
        self.assertEqual(samples[("plain_count", labels)], 104.0)
        self.assertEqual(samples[("plain_sum", labels)], 5050.0 + 4000.0)

    def test_set_is_its_last_closed_bucket(self):
        """A set is a gauge of the unique members in the last closed finest bucket."""
        self.submit(Sample("users", (), SET, "bob"), Sample("users", (), SET, "ann"),
                    Sample("users", (), SET, "bob"))
        self.clock.advance(10)
        self.store.tick(self.clock.seconds())
        self.submit(Sample("users", (), SET, "cid"))
        self.assertEqual(self.scraper.families()["users"][2], {("users", ()): 2.0})
        self.clock.advance(5)
        self.store.tick(self.clock.seconds())
        # [T0 + 5, T0 + 10) closed, empty; cid waits in [T0 + 10, T0 + 15).
        self.assertEqual(self.scraper.families()["users"][2], {("users", ()): 0.0})
        self.clock.advance(5)
        self.store.tick(self.clock.seconds())
        self.assertEqual(self.scraper.families()["users"][2], {("users", ()): 1.0})

    def test_quantiles_nan_without_data_in_the_window(self):
        """A summary whose last closed minute holds nothing has NaN quantiles, its _count and _sum kept."""
        self.submit(Sample("t", (), TIMER, 5.0))
        self.settle_minute()
        self.clock.advance(120)
        self.store.tick(self.clock.seconds())
        samples = self.scraper.families()["t"][2]
        self.assertTrue(math.isnan(samples[("t", (("quantile", "0.5"),))]))
        self.assertEqual(samples[("t_count", ())], 1.0)
        self.assertEqual(samples[("t_sum", ())], 5.0)

    def test_counter_monotonic_over_buckets(self):
        """A counter's _total grows over buckets and tiers, never reset by a bucket closing."""
        totals = []
        for _ in range(30):
            self.submit(Sample("hits", (), COUNTER, 2.0))
            self.clock.advance(7)
            self.store.tick(self.clock.seconds())
            totals.append(self.scraper.families()["hits"][2][("hits_total", ())])
        self.assertEqual(totals, [2.0 * (n + 1) for n in range(30)])

    def test_partials_count(self):
        """A client's partial aggregate adds to _total, _count and _sum."""
        self.submit(Partial("c", (), COUNTER, {"count": 5.0}),
                    Partial("t", (), TIMER, {"count": 3.0, "sum": 30.0, "min": 5.0,
                                             "max": 15.0}))
        self.submit(Sample("c", (), COUNTER, 1.0), Sample("t", (), TIMER, 10.0))
        families = self.scraper.families()
        self.assertEqual(families["c"][2][("c_total", ())], 6.0)
        self.assertEqual(families["t"][2][("t_count", ())], 4.0)
        self.assertEqual(families["t"][2][("t_sum", ())], 40.0)

    def test_label_values_escaped(self):
        """Label values with quotes, backslashes and newlines are escaped and read back as they were."""
        self.raw('lab;k=a"b\\c\nd;plain=x', GAUGE, 1.0)
        text = self.scraper.text()
        self.assertIn('lab{k="a\\"b\\\\c\\nd",plain="x"} 1.0\n', text)
        samples = parsed(text)["lab"][2]
        self.assertEqual(samples, {("lab", (("k", 'a"b\\c\nd'), ("plain", "x"))): 1.0})

    def test_help_escaped(self):
        """HELP text (the original name) escapes backslashes and newlines, and reads back."""
        self.raw("odd\\name\nx", GAUGE, 2.0)
        text = self.scraper.text()
        self.assertIn("# HELP odd_name_x SimpleStats gauge odd\\\\name\\nx\n", text)
        self.assertEqual(parsed(text)["odd_name_x"][1], "SimpleStats gauge odd\\name\nx")

    def test_reserved_label_names(self):
        """A tag starting with __ (__name__ would rename the series) is written with exported_ in front, as are colliding escaped keys kept once."""
        self.raw("g;__name__=other;a.b=1;a_b=2", GAUGE, 1.0)
        self.assertEqual(self.scraper.families()["g"][2],
                         {("g", (("a_b", "1"), ("exported___name__", "other"))): 1.0})

    def test_tag_keys_become_label_names(self):
        """Tag keys are escaped into label names; a summary's quantile tag is written exported_quantile."""
        self.submit(Sample("t", (("quantile", "x"), ("rack.no", "3")), TIMER, 1.0))
        self.settle_minute()
        samples = self.scraper.families()["t"][2]
        self.assertIn(("t", (("exported_quantile", "x"), ("quantile", "0.5"), ("rack_no", "3"))),
                      samples)
        self.assertEqual(samples[("t_count", (("exported_quantile", "x"), ("rack_no", "3")))], 1.0)

    def test_family_not_split(self):
        """Series of one escaped name (different names, different tags) come under one HELP and TYPE."""
        self.submit(Sample("a.b", (("h", "1"),), GAUGE, 1.0),
                    Sample("a-b", (("h", "2"),), GAUGE, 2.0),
                    Sample("a.a", (), GAUGE, 0.0),
                    Sample("a_b", (("h", "3"),), GAUGE, 3.0))
        text = self.scraper.text()
        self.assertEqual(text.count("# TYPE a_b gauge"), 1)
        self.assertEqual(parsed(text)["a_b"][2], {("a_b", (("h", "1"),)): 1.0,
                                                  ("a_b", (("h", "2"),)): 2.0,
                                                  ("a_b", (("h", "3"),)): 3.0})

    def test_collisions(self):
        """Colliding types, sample names and label sets keep the first series by key, and the rest are counted as dropped."""
        self.submit(Sample("x.y", (), TIMER, 1.0),     # family x_y, a summary (smallest key)
                    Sample("x_y", (), GAUGE, 2.0),     # same family, another type: dropped
                    Sample("x.y_sum", (), GAUGE, 3.0),  # a sample name of the summary: dropped
                    Sample("g.h", (), GAUGE, 4.0),     # label set {} of g_h
                    Sample("g_h", (), GAUGE, 5.0),     # same family and labels: dropped
                    Sample("n", (), COUNTER, 1.0),     # family n_total
                    Sample("n_total", (), GAUGE, 6.0))  # family n_total, another type: dropped
        families = self.scraper.families()
        self.assertEqual(families["x_y"][0], "summary")
        self.assertNotIn("x_y_sum", families)
        self.assertEqual(families["g_h"][2], {("g_h", ()): 4.0})
        self.assertEqual(families["n"], ("counter", "SimpleStats counter n",
                                         {("n_total", ()): 1.0}))
        self.assertEqual(self.core.counters["simplestats.prometheus.dropped"], 4)

    def test_collisions_whatever_the_order(self):
        """Who wins a collision depends on the keys, not on which series came first."""
        items = [Sample("x-y_sum", (), GAUGE, 1.0),   # the smallest key: x_y_sum is a gauge
                 Sample("x.y", (), TIMER, 2.0),       # its summary would write x_y_sum: dropped
                 Sample("p.q", (("a", "1"),), GAUGE, 3.0),
                 Sample("p_q", (("a", "1"),), GAUGE, 4.0),  # same labels, larger key: dropped
                 Sample("p-q", (("a", "2"),), GAUGE, 5.0),
                 Sample("m_total", (), GAUGE, 6.0),   # n.b. "m_total" > "m": the counter wins
                 Sample("m", (), COUNTER, 7.0)]
        texts = []
        for order in (items, items[::-1]):
            core = make_core(self)
            self.assertEqual(core.submit(order, "test"), [])
            texts.append(parsed(Scraper(self, core).text()))
            self.assertEqual(core.counters["simplestats.prometheus.dropped"], 3)
        self.assertEqual(texts[0], texts[1])
        self.assertEqual(texts[0]["x_y_sum"][2], {("x_y_sum", ()): 1.0})
        self.assertNotIn("x_y", texts[0])
        self.assertEqual(texts[0]["p_q"][2], {("p_q", (("a", "1"),)): 3.0,
                                              ("p_q", (("a", "2"),)): 5.0})
        self.assertEqual(texts[0]["m"], ("counter", "SimpleStats counter m",
                                         {("m_total", ()): 7.0}))

    def test_filter(self):
        """?filter= narrows a scrape with the filter syntax of the metric list; a bad one is a 400 naming it."""
        self.submit(Sample("api.a", (("host", "web1"),), GAUGE, 1.0),
                    Sample("api.b", (("host", "db1"),), GAUGE, 1.0),
                    Sample("other", (), GAUGE, 1.0))
        self.assertEqual(set(self.scraper.families("/metrics?filter=api")), {"api_a", "api_b"})
        self.assertEqual(set(self.scraper.families("/metrics?filter=api+host:web*")), {"api_a"})
        self.assertEqual(set(self.scraper.families("/metrics?filter=-api")), {"other"})
        response, body = self.scraper.get("/metrics?filter=/(/")
        self.assertEqual(response.code, 400)
        self.assertIn("bad filter", json.loads(body)["error"])
        self.assertEqual(self.core.counters["simplestats.http.bad_filter"], 1)

    def test_own_series(self):
        """The server's own simplestats.* series are in the scrape."""
        self.submit(Sample("a", (), COUNTER, 1.0))
        self.scraper.families()
        self.core.emit_own_metrics()
        families = self.scraper.families()
        self.assertEqual(families["simplestats_series_count"][0], "gauge")
        self.assertEqual(families["simplestats_prometheus_scrapes"][0], "counter")

    def test_streamed_in_slices(self):
        """A scrape goes a chunk per reactor turn, and its text does not depend on where chunks are cut."""
        for n in range(300):
            self.submit(Sample("s%03d" % (n,), (("i", str(n % 7)),),
                               (COUNTER, GAUGE, TIMER)[n % 3], float(n)))
        self.settle_minute()
        whole = self.scraper.text()
        clock = TurnClock()
        clock.advance(self.clock.seconds())
        small = Scraper(self, self.core, clock, slice_seconds=0)
        small.api.exposition.series_per_chunk = 7
        self.assertEqual(small.text(), whole)
        self.assertGreater(small.turns, 300 // 7)
        self.assertEqual(len(parsed(whole)), 300)

    def test_deleted_during_scrape(self):
        """A series deleted while a scrape goes on is left out, whole family included when it empties."""
        self.submit(Sample("keep", (), GAUGE, 1.0), Sample("gone", (), GAUGE, 2.0))
        exposition = Exposition(self.core, self.clock, slice_seconds=0)
        generator = exposition.families(lambda name, tags: True)
        while True:
            try:
                next(generator)
            except StopIteration as stop:
                families = stop.value
                break
        self.core.delete(["gone"])
        text = b"".join(exposition.chunks(families)).decode()
        self.assertEqual(set(parsed(text)), {"keep"})

    def test_reads_need_the_token(self):
        """With reads behind the token, /metrics answers 401 without it and the exposition with it (Bearer, as Prometheus sends)."""
        core = make_core(self, "--read-token", "on", "--api-token", "t" * 20)
        core.submit([Sample("a", (), GAUGE, 1.0)], "test")
        scraper = Scraper(self, core)
        response, _ = scraper.get()
        self.assertEqual(response.code, 401)
        response, body = scraper.get(headers={"Authorization": ["Bearer " + "t" * 20]})
        self.assertEqual(response.code, 200)
        self.assertIn(b"a 1.0", body)

    def test_recovering(self):
        """While recovery holds the store, /metrics answers 503 rather than counters that went back."""
        class Holding:
            holding = True

            def status(self):
                return {"phase": "snapshot"}

        stub = StubTreq(RecoveringGate(self.scraper.api.app.resource(), Holding()))
        d = stub.get(BASE + "/metrics")
        stub.flush()
        self.assertEqual(self.successResultOf(d).code, 503)


class RestartTests(SynchronousTestCase):
    """
    Counters, _count and _sum across restarts: the snapshot keeps them and
    the journal's replay adds what came after, once.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.server = Server(self, self.clock)

    def send(self, server, rounds, value):
        for _ in range(rounds):
            server.submit(self, [Sample("hits", (("h", "a"),), COUNTER, value, rate=0.5),
                                 Sample("lat", (), TIMER, value),
                                 Sample("lat", (), TIMER, value * 3, rate=0.1)])
            self.clock.advance(3)
            server.store.tick(self.clock.seconds())

    def scrape(self, server):
        server.core.clock = self.clock
        families = Scraper(self, server.core).families()
        return (families["hits"][2][("hits_total", (("h", "a"),))],
                families["lat"][2][("lat_count", ())], families["lat"][2][("lat_sum", ())])

    def test_snapshot_and_journal(self):
        """A restart from a snapshot plus the journal after it (a kill -9: no final snapshot) shows the same totals, and they keep growing."""
        self.send(self.server, 10, 1.5)
        self.successResultOf(run_snapshot(self.clock, self.server.snapshotter()))
        self.send(self.server, 7, 2.0)
        before = self.scrape(self.server)
        self.assertEqual(before, (10 * 3.0 + 7 * 4.0, 17 * 11.0, 10 * 1.5 * 31 + 7 * 2.0 * 31))
        recovered = self.server.recovered(self)
        self.assertEqual(self.scrape(recovered), before)
        self.send(recovered, 1, 1.0)
        after = self.scrape(recovered)
        self.assertEqual(after[0], before[0] + 2.0)
        self.assertEqual(after[1], before[1] + 11.0)

    def test_journal_only(self):
        """Without any snapshot the journal's replay rebuilds the totals from the first point."""
        self.send(self.server, 12, 1.0)
        before = self.scrape(self.server)
        self.assertEqual(before, (24.0, 12 * 11.0, 12 * (1.0 + 30.0)))
        self.assertEqual(self.scrape(self.server.recovered(self)), before)

    def test_two_restarts(self):
        """Totals survive restart after restart, each snapshot taken after the last recovery."""
        self.send(self.server, 5, 1.0)
        first = self.server.recovered(self)
        self.successResultOf(run_snapshot(self.clock, first.snapshotter()))
        self.send(first, 5, 1.0)
        second = first.recovered(self)
        self.assertEqual(self.scrape(second), (20.0, 110.0, 310.0))

    def test_snapshot_written_before_totals(self):
        """A snapshot of the format before totals still loads: its counters count on from 0."""
        self.send(self.server, 4, 1.0)
        self.successResultOf(run_snapshot(self.clock, self.server.snapshotter()))
        path = os.path.join(self.server.directory, SNAPSHOT_NAME)
        with gzip.open(path) as f:
            lines = f.read().split(b"\n")
        old = []
        for line in lines:
            obj = json.loads(line) if line else None
            if isinstance(obj, dict) and "k" in obj:
                del obj["c"]
                line = json.dumps(obj, separators=(",", ":")).encode()
            old.append(line)
        with gzip.open(path, "wb") as f:
            f.write(b"\n".join(old))
        recovered = self.server.recovered(self)
        self.assertEqual(self.scrape(recovered), (0.0, 0.0, 0.0))
        self.send(recovered, 1, 1.0)
        self.assertEqual(self.scrape(recovered), (2.0, 11.0, 31.0))
