"""
End to end: the Python client (clients/python) against a real server process:
its pre-aggregated partials read back as the raw values would, a server down
for 20 s loses nothing that fit the buffer, and exit flushes.
"""

import math
import subprocess
import sys
import textwrap
import time

import pytest
from simplestats_client import Client

FIELDS = "count,sum,min,max,last,median,p90,p99"


@pytest.fixture
def server(shared_server):
    """The tests here share one server, each with series of its own names."""
    return shared_server


def series(server, name, fields, tags=None, **params):
    params = dict(params, name=name, fields=fields, resolution="5s", **{"from": "-10m"})
    if tags:
        params["tags"] = ",".join("%s:%s" % kv for kv in sorted(tags.items()))
    return server.get_json("/api/series", params)["fields"]


def rows(fields):
    """{bucket start: {field: value}} of the buckets holding data."""
    out = {}
    for field, points in fields.items():
        for ts, value in points:
            out.setdefault(ts, {})[field] = value
    return {ts: row for ts, row in out.items() if row.get("count")}


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s not met within %.0f s" % (what, timeout))
        time.sleep(0.05)


class StepClock:
    """Times from a start, a fixed step apart (the test knows each value's timestamp)."""

    def __init__(self, start, step):
        self.now = start
        self.step = step

    def __call__(self):
        now = self.now
        self.now += self.step
        return now


def test_partials_read_back_as_the_raw_values(server):
    """Client partials and the same values sent raw give the same buckets: count/sum/min/max/last exact, percentiles the same bins."""
    start = time.time() - 4.0
    # Dyadic values: sums are exact whatever the order of addition.
    values = [((i * 7919) % 4001) / 8 + 0.125 for i in range(4000)]
    clock = StepClock(start, 8.0 / len(values))
    client = Client(port=server.tcp_port, interval=None, clock=clock, tags={"run": "e2e"})
    times = []
    try:
        for i, v in enumerate(values):
            times.append(clock.now)
            client.timing("e2e.client.lat", v)
            if i == 1500:
                # A bucket sent in two pieces merges on the server.
                assert client.flush() is True
        assert client.flush() is True
        assert client.counters["refused"] == 0
    finally:
        client.close()
    # The same values, raw, one tuple each, to another series.
    with server.connect() as conn:
        conn.read_line()
        for first in range(0, len(values), 500):
            batch = ",".join('["e2e.client.raw", %r, "%rms", {"run": "e2e"}]' % (t, v)
                             for t, v in zip(times[first:first + 500], values[first:first + 500]))
            assert conn.request(b"[" + batch.encode() + b"]") == b"--OK 500\r\n"
    ours = rows(series(server, "e2e.client.lat", FIELDS, {"run": "e2e"}))
    raw = rows(series(server, "e2e.client.raw", FIELDS, {"run": "e2e"}))
    assert sorted(ours) == sorted(raw) and len(ours) >= 2
    assert ours == raw
    # And against the values themselves.
    by_bucket = {}
    for t, v in zip(times, values):
        by_bucket.setdefault(t - t % 5, []).append(v)
    assert sorted(ours) == sorted(by_bucket)
    for bucket, vals in by_bucket.items():
        row = ours[bucket]
        assert (row["count"], row["sum"], row["min"], row["max"], row["last"]) == (
            len(vals), sum(vals), min(vals), max(vals), vals[-1])
        # statsd's median and upper_90, upper_99 (nearest rank Math.round(q * n)).
        ordered = sorted(vals)
        n = len(vals)
        median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
        assert abs(row["median"] - median) <= 0.01 * median, (row["median"], median)
        for field, q in (("p90", 0.9), ("p99", 0.99)):
            exact = ordered[int(math.floor(q * n + 0.5)) - 1]
            assert abs(row[field] - exact) <= 0.01 * exact, (field, row[field], exact)


def test_counters_gauges_and_dattss_calls(server):
    """agg() strings, incr, gauge with changes, tags and the timer decorator land as their types."""
    with Client(port=server.tcp_port, interval=None, prefix="e2e.client.") as client:
        client.agg("query", "153ms")
        client.agg("query", "47ms")
        client.agg("count", "1c")
        client.agg("count", "2c")
        client.incr("count", 4, tags={"k": "v"})
        client.agg("live", "+5g")
        client.agg("live", "23g")
        client.agg("live", "-3g")

        @client.timer("decorated")
        def work():
            time.sleep(0.01)

        work()
        with client.timer("block"):
            time.sleep(0.01)
        assert client.flush() is True
    query = series(server, "e2e.client.query", "count,sum,max")
    assert [sum(v or 0 for _, v in query[f]) for f in ("count", "sum")] == [2, 200]
    assert sum(v or 0 for _, v in series(server, "e2e.client.count", "count")["count"]) == 3
    assert sum(v or 0 for _, v in series(server, "e2e.client.count", "count",
                                    {"k": "v"})["count"]) == 4
    live = series(server, "e2e.client.live", "last")["last"]
    assert [v for _, v in live if v is not None][-1] == 20
    for name in ("e2e.client.decorated", "e2e.client.block"):
        timed = rows(series(server, name, "count,min"))
        [row] = timed.values()
        assert row["count"] == 1 and 10 <= row["min"] < 1000


def test_refused_item_is_dropped_and_the_rest_kept(server):
    """A batch refused for one item (a series of another type): that item is dropped and counted, the rest stored."""
    with server.connect() as conn:
        conn.read_line()
        assert conn.request(b'["e2e.client.typed", null, "5g"]') == b"--OK\r\n"
    with Client(port=server.tcp_port, interval=None) as client:
        client.incr("e2e.client.before")
        client.incr("e2e.client.typed")
        client.incr("e2e.client.after")
        assert client.flush() is True
        assert client.counters["refused"] == 1 and client.counters["refused_lines"] == 1
        assert client.pending == 0 and client._pending_bytes == 0
    for name in ("e2e.client.before", "e2e.client.after"):
        assert sum(v or 0 for _, v in series(server, name, "count")["count"]) == 1


def test_server_down_for_20_seconds_loses_nothing(make_server):
    """Stopped for 20 s and started again on the same port and data: every partial recorded meanwhile arrives, once."""
    server = make_server().start()
    port = server.tcp_port
    client = Client(port=port, interval=0.5, retry_min=0.2, retry_max=2.0, connect_timeout=1.0)
    sent = {"count": 0, "sum": 0.0}

    def record(i):
        client.incr("e2e.down.hits")
        client.timing("e2e.down.lat", float(i % 50))
        sent["count"] += 1
        sent["sum"] += float(i % 50)

    try:
        for i in range(20):
            record(i)
        assert client.flush() is True
        server.stop()
        down_at = time.monotonic()
        i = 20
        while time.monotonic() - down_at < 20.0:
            record(i)
            i += 1
            time.sleep(0.05)
        assert client.counters["send_failures"] >= 3
        assert client.pending > 0
        server.start(["--tcp-port", str(port)])
        wait_for(lambda: client.pending == 0 and not client.aggregator.open_count(),
                 timeout=15.0, what="the buffer drained")
        assert client.counters["dropped_overflow"] == 0 and client.counters["refused"] == 0
    finally:
        client.close()
    assert sent["count"] > 200
    hits = series(server, "e2e.down.hits", "count", **{"from": "-5m"})["count"]
    assert sum(v or 0 for _, v in hits) == sent["count"]
    lat = series(server, "e2e.down.lat", "count,sum", **{"from": "-5m"})
    assert sum(v or 0 for _, v in lat["count"]) == sent["count"]
    assert sum(v or 0 for _, v in lat["sum"]) == sent["sum"]


def test_exit_flushes(server, tmp_path):
    """A process that records and exits without close() has its values stored."""
    script = textwrap.dedent("""
        from simplestats_client import Client
        client = Client(port=%d, interval=60)
        for i in range(100):
            client.incr("e2e.client.exit")
            client.timing("e2e.client.exit_lat", i)
    """ % (server.tcp_port,))
    done = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), timeout=30,
                          capture_output=True)
    assert done.returncode == 0, done.stderr
    assert sum(v or 0 for _, v in series(server, "e2e.client.exit", "count")["count"]) == 100
    lat = series(server, "e2e.client.exit_lat", "count,sum")
    assert sum(v or 0 for _, v in lat["count"]) == 100
    assert sum(v or 0 for _, v in lat["sum"]) == sum(range(100))


def test_udp_mode_sends_statsd_lines(server):
    """mode='udp': statsd lines, tags as DogStatsD, read back through the statsd port."""
    with Client(mode="udp", udp_port=server.udp_port, interval=None,
                tags={"host": "h1"}) as client:
        for i in range(300):
            client.incr("e2e.client.udp")
            client.timing("e2e.client.udp_lat", i)
        client.gauge("e2e.client.udp_g", 7)
        client.gauge("e2e.client.udp_g", -2, delta=True)
        client.flush()
        assert client.counters["udp_packets"] > 1
    tags = {"host": "h1"}

    def count():
        status, _, _ = server.http("GET", "/api/series", {"name": "e2e.client.udp_lat",
                                                          "tags": "host:h1"})
        if status != 200:
            return 0
        got = series(server, "e2e.client.udp_lat", "count", tags)["count"]
        return sum(v or 0 for _, v in got) == 300

    wait_for(count, what="300 timer values over UDP")
    assert sum(v or 0 for _, v in series(server, "e2e.client.udp", "count", tags)["count"]) == 300
    assert [v for _, v in series(server, "e2e.client.udp_g", "last", tags)["last"]
            if v is not None][-1] == 5
