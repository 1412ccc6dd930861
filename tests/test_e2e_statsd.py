"""
End to end: the unmodified PyPI C{statsd} client sends to a real server
process over UDP, and C{/api/series} answers with the rolled-up values.
"""

import datetime
import json
import math
import time

import statsd

STEP = 5.0
DEADLINE = 15.0


def start_of_a_fresh_bucket(margin=2.5):
    """
    Wait, if need be, until at least C{margin} seconds remain in the current
    5 s bucket, so the metrics sent next (a few milliseconds' worth) share
    one bucket and a per-bucket value such as a set's unique count is exact.
    """
    left = STEP - time.time() % STEP
    if left < margin:
        time.sleep(left + 0.05)


def eventually(check, timeout=DEADLINE):
    """
    Call C{check} until it stops raising C{AssertionError}; UDP gives no
    acknowledgement, so the API is polled until the values arrive.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def series(server, name, fields, **params):
    """
    C{{field: [non-null values, oldest first]}} of C{name} over the last
    hour; fails (so L{eventually} retries) while the series is unknown.
    """
    query = dict(name=name, fields=",".join(fields), **params)
    status, _, body = server.http("GET", "/api/series", query)
    assert status == 200, (name, status, body)
    answer = json.loads(body)
    return {f: [v for _, v in answer["fields"][f] if v is not None] for f in fields}, answer


def test_statsd_client_counters_timers_gauges_sets(server):
    """Counters, timers, gauges (with deltas) and sets from the statsd client roll up as expected."""
    client = statsd.StatsClient("127.0.0.1", server.udp_port, prefix="e2e")
    try:
        start_of_a_fresh_bucket()
        client.incr("hits", rate=1)
        client.incr("hits")
        client.incr("hits", 5)
        client.decr("hits", 2)
        for ms in (10, 20, 30, 40.5):
            client.timing("latency", ms)
        client.timing("latency", datetime.timedelta(milliseconds=100))
        client.gauge("queue", 10)
        client.gauge("queue", 5, delta=True)
        client.gauge("queue", -3, delta=True)
        # A negative absolute value: the client sends "0|g" then "-5|g".
        client.gauge("temp", -5)
        for member in ("alice", "bob", "alice", "carol"):
            client.set("users", member)
        # One packet holding several metrics.
        with client.pipeline() as pipe:
            pipe.incr("pipe.count", 2)
            pipe.incr("pipe.count")
            pipe.timing("pipe.timer", 7)
            pipe.timing("pipe.timer", 9)
            pipe.gauge("pipe.gauge", 3)
            pipe.gauge("pipe.gauge", 4, delta=True)
            for member in ("x", "y", "x"):
                pipe.set("pipe.set", member)
    finally:
        client.close()

    def counters():
        values, answer = series(server, "e2e.hits", ["count", "rate"])
        assert answer["type"] == "counter"
        assert answer["resolution"] == STEP
        assert sum(values["count"]) == 5
        assert math.isclose(sum(values["rate"]), 5 / STEP)
        values, _ = series(server, "e2e.pipe.count", ["count"])
        assert sum(values["count"]) == 3

    def timers():
        values, answer = series(server, "e2e.latency", ["count", "sum", "min", "max", "mean"])
        assert answer["type"] == "timer"
        assert values["count"] == [5]
        assert values["sum"] == [200.5]
        assert values["min"] == [10.0]
        assert values["max"] == [100.0]
        assert math.isclose(values["mean"][0], 40.1)
        values, _ = series(server, "e2e.pipe.timer", ["count", "sum", "min", "max", "mean"])
        assert values == {"count": [2], "sum": [16.0], "min": [7.0], "max": [9.0], "mean": [8.0]}

    def gauges():
        values, answer = series(server, "e2e.queue", ["last", "min", "max", "updates"])
        assert answer["type"] == "gauge"
        assert values["last"][-1] == 12.0
        assert values["updates"][0] == 3
        assert (values["min"][0], values["max"][0]) == (10.0, 15.0)
        values, _ = series(server, "e2e.temp", ["last", "updates"])
        assert values["last"][-1] == -5.0
        assert values["updates"][0] == 2
        values, _ = series(server, "e2e.pipe.gauge", ["last"])
        assert values["last"][-1] == 7.0

    def sets():
        values, answer = series(server, "e2e.users", ["count"])
        assert answer["type"] == "set"
        assert values["count"] == [3]
        values, _ = series(server, "e2e.pipe.set", ["count"])
        assert values["count"] == [2]

    for check in (counters, timers, gauges, sets):
        eventually(check)

    current = {m["key"]: m for m in server.get_json("/api/metrics", {"filter": "e2e."})["metrics"]}
    assert sorted(current) == ["e2e.hits", "e2e.latency", "e2e.pipe.count", "e2e.pipe.gauge",
                               "e2e.pipe.set", "e2e.pipe.timer", "e2e.queue", "e2e.temp",
                               "e2e.users"]
    assert current["e2e.queue"]["value"] == 12.0
    assert current["e2e.temp"]["value"] == -5.0
    assert current["e2e.users"]["value"] == 3.0


def test_bad_statsd_lines_are_counted_and_good_ones_kept(server):
    """In a packet mixing good and bad lines the good ones arrive and simplestats.udp.bad counts the rest."""
    packet = (b"e2e.raw.good:1|c\n"
              b"no-colon-here\n"
              b"e2e.raw.timer:5|ms\n"
              b"e2e.raw.bad:abc|c\n"
              b"e2e.raw.kind:1|zz\n"
              b"\xff\xfe:1|c\n"
              b"e2e.raw.good:2|c\n")
    server.send_udp(packet)

    def good_lines_arrived():
        values, _ = series(server, "e2e.raw.good", ["count"])
        assert sum(values["count"]) == 3
        values, _ = series(server, "e2e.raw.timer", ["count", "sum"])
        assert values == {"count": [1], "sum": [5.0]}

    eventually(good_lines_arrived)
    status, _, _ = server.http("GET", "/api/series", {"name": "e2e.raw.bad"})
    assert status == 404
    status, _, _ = server.http("GET", "/api/series", {"name": "e2e.raw.kind"})
    assert status == 404

    def own_counters_emitted():
        # The server's own counters are emitted every 5 s.
        values, answer = series(server, "simplestats.udp.bad", ["count"])
        assert answer["type"] == "counter"
        assert sum(values["count"]) == 4
        values, _ = series(server, "simplestats.udp.points", ["count"])
        assert sum(values["count"]) == 3

    eventually(own_counters_emitted, timeout=STEP + DEADLINE)
    # One warning per packet (rate-bounded), naming one of its bad lines.
    reasons = ('missing ":" between name and value in "no-colon-here"',
               'value "abc" is not a finite number in "e2e.raw.bad:abc|c"',
               'unknown type "zz" (expected c, ms, h, d, g or s) in "e2e.raw.kind:1|zz"',
               'line is not valid UTF-8 in "\\xff\\xfe:1|c"')
    found = server.wait_for_log(r"bad statsd metric from 127\.0\.0\.1:\d+: (.*)")
    assert found.group(1) in reasons, found.group(0)


def test_telegraf_style_tags_are_tags(server):
    """A datagram as hot-shots sends with telegraf: true (name,k=v,k2=v2) lands in a tagged series."""
    server.send_udp(b"e2e.tg.req,host=a,env=ci:1|c\ne2e.tg.req,host=a,env=ci:2|c\n")

    def arrived():
        values, answer = series(server, "e2e.tg.req", ["count"], tags="env:ci,host:a")
        assert sum(values["count"]) == 3
        assert answer["tags"] == {"env": "ci", "host": "a"}

    eventually(arrived)
    status, _, _ = server.http("GET", "/api/series", {"name": "e2e.tg.reqhostaenvci"})
    assert status == 404


def test_timer_percentiles_are_statsds(server):
    """A bucket of 1..5 ms has p90 = p95 = p99 = 5 (statsd's upper_N) in /api/series and /render; 47, 153 has median 100; 10, 20, 30 has p99 30."""
    start_of_a_fresh_bucket()
    server.send_udp(b"".join(b"e2e.five.t:%d|ms\n" % v for v in (1, 2, 3, 4, 5)))
    server.send_udp(b"e2e.two.t:153|ms\ne2e.two.t:47|ms\n")
    server.send_udp(b"e2e.three.t:10|ms\ne2e.three.t:20|ms\ne2e.three.t:30|ms\n")
    fields = ["count", "median", "p90", "p95", "p99", "max"]

    def arrived():
        five, _ = series(server, "e2e.five.t", fields)
        assert five["count"] == [5], five
        assert (five["p90"], five["p95"], five["p99"], five["max"]) == ([5.0], [5.0], [5.0], [5.0])
        assert abs(five["median"][0] - 3.0) <= 0.03, five
        two, _ = series(server, "e2e.two.t", fields)
        assert two["count"] == [2], two
        assert (two["median"], two["p90"], two["p99"]) == ([100.0], [153.0], [153.0])
        three, _ = series(server, "e2e.three.t", fields)
        assert three["count"] == [3], three
        assert (three["p90"], three["p99"]) == ([30.0], [30.0])
        assert abs(three["median"][0] - 20.0) <= 0.2, three

    eventually(arrived)
    targets = ["stats.timers.e2e.five.t.upper_99", "stats.timers.e2e.five.t.upper_90",
               "stats.timers.e2e.two.t.median"]
    status, _, body = server.http("GET", "/render", [("target", t) for t in targets] + [
        ("from", "-5min"), ("format", "json")])
    assert status == 200, body
    got = {s["target"]: [v for v, _ in s["datapoints"] if v is not None] for s in json.loads(body)}
    assert got == {"stats.timers.e2e.five.t.upper_99": [5.0], "stats.timers.e2e.five.t.upper_90": [5.0],
                   "stats.timers.e2e.two.t.median": [100.0]}, got
