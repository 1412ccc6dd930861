"""
The Python client's pre-aggregation, without sockets (but for the buffer
tests, which connect to a closed port): its partials are what the raw values
give, and the server's own parser and sketch read them as they are.
"""

import math
import random
import socket
import threading
from functools import reduce
from operator import add

import pytest

from simplestats_client import Client
from simplestats_client.aggregate import FOLD_EVERY, Aggregator, parse_agg
from simplestats_client.sketch import Sketch as ClientSketch  # noqa: E402

from server.core.model import Limits, Partial, Sample  # noqa: E402
from server.core.sketch import Sketch  # noqa: E402
from server.receivers.parse_tuple import parse_line  # noqa: E402

QUANTILES = (0.5, 0.9, 0.95, 0.99)


class FakeClock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def exact_quantile(values, q):
    """The value at position Math.round(q * n) of the sorted values, as statsd's upper_N."""
    ordered = sorted(values)
    return ordered[max(int(math.floor(q * len(ordered) + 0.5)), 1) - 1]


def encode_batch(items):
    import json
    return json.dumps(items, separators=(",", ":"), allow_nan=False).encode()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_timer_partial_equals_the_raw_values():
    """count, sum, sumsq, min, max and last are those of the raw values; the sketch bins are the server's."""
    clock = FakeClock()
    agg = Aggregator(clock)
    rng = random.Random(7)
    values = [rng.choice([rng.lognormvariate(3, 1.5), -rng.random(), 0.0]) for _ in range(3000)]
    for v in values:
        agg.add("api.query", "ms", v)
        clock.now += 0.001
    [item] = agg.take(everything=True)
    name, ts, fields = item
    assert name == "api.query" and fields["type"] == "ms"
    assert 1_700_000_000.0 <= ts < 1_700_000_005.0
    assert fields["count"] == len(values)
    assert fields["sum"] == reduce(add, values, 0.0)
    assert fields["sumsq"] == reduce(add, (v * v for v in values), 0.0)
    assert (fields["min"], fields["max"], fields["last"]) == (min(values), max(values), values[-1])
    server = Sketch(0.01)
    for v in values:
        server.add(v)
    theirs = Sketch.from_json(fields["sketch"])
    assert (theirs.pos, theirs.neg, theirs.zero, theirs.count) == (
        server.pos, server.neg, server.zero, server.count)


def test_merged_partials_give_the_quantiles_of_the_raw_values():
    """Partials of several buckets, merged by the server's sketch, are within 1 % of the exact quantiles."""
    clock = FakeClock()
    agg = Aggregator(clock)
    rng = random.Random(11)
    values = [rng.paretovariate(1.2) * 3 for _ in range(20000)]
    for v in values:
        agg.add("api.query", "ms", v)
        clock.now += 0.001  # 20 s: four buckets
    items = agg.take(everything=True)
    assert len(items) == 4
    merged = Sketch(0.01)
    for _, _, fields in items:
        merged.merge(Sketch.from_json(fields["sketch"]))
    assert merged.count == len(values)
    for q in QUANTILES:
        exact = exact_quantile(values, q)
        assert abs(merged.quantile(q) - exact) <= 0.01 * exact, q
    assert sum(f["count"] for _, _, f in items) == len(values)
    assert min(f["min"] for _, _, f in items) == min(values)


def test_server_parser_reads_the_client_batch():
    """The client's batch of every kind parses with the server's own parse_line, sketch included."""
    clock = FakeClock()
    agg = Aggregator(clock, prefix="app.", tags={"host": "web1"})
    agg.add("q", "ms", 153.0)
    agg.add("q", "ms", 12.5, {"route": "/x"})
    agg.add("size", "h", 4.0)
    agg.add("raw", "v", -3.0)
    agg.count("hits", 2)
    agg.gauge("live", 3.0, change=True)
    agg.gauge("live", 23.0)
    agg.gauge("live", -2.0, change=True)
    items = agg.take(everything=True)
    parsed = parse_line(encode_batch(items), Limits())
    assert parsed.batch
    kinds = [(i.name, i.type, i.tags) for i in parsed.items]
    assert ("app.q", "ms", (("host", "web1"), ("route", "/x"))) in kinds
    assert ("app.q", "ms", (("host", "web1"),)) in kinds
    assert ("app.hits", "c", (("host", "web1"),)) in kinds
    gauges = [i for i in parsed.items if i.name == "app.live"]
    # The change made before the first set, then the set (23, then 21).
    assert isinstance(gauges[0], Sample) and gauges[0].delta and gauges[0].value == 3.0
    assert isinstance(gauges[1], Partial)
    assert gauges[1].fields == {"last": 21.0, "min": 21.0, "max": 23.0, "count": 2.0,
                                "sum": 44.0}
    timer = next(i for i in parsed.items if i.name == "app.q" and len(i.tags) == 1)
    assert timer.fields["sketch"].count == 1.0


def test_buckets_are_taken_when_they_end():
    """take() returns the partials of ended buckets only; a bucket change closes a partial at once."""
    clock = FakeClock(1000.0)
    agg = Aggregator(clock)
    agg.count("c", 1)
    agg.add("t", "ms", 1.0)
    clock.now = 1004.9
    agg.count("c", 1)
    assert agg.take() == []
    clock.now = 1005.0
    agg.count("c", 5)  # opens the next bucket of "c"
    taken = agg.take()
    assert sorted((i[0], i[1]) for i in taken) == [("c", 1004.9), ("t", 1000.0)]
    assert next(i for i in taken if i[0] == "c")[2] == {"type": "c", "count": 2}
    assert agg.take() == []
    assert agg.take(everything=True) == [["c", 1005.0, {"type": "c", "count": 5}]]
    assert agg.open_count() == 0


def test_a_bucket_sent_in_two_pieces_keeps_its_last():
    """The timestamp of a partial is its last value's time, within its bucket, cut to the millisecond."""
    clock = FakeClock(1000.0)
    agg = Aggregator(clock)
    agg.add("t", "ms", 1.0)
    clock.now = 1001.23456
    agg.add("t", "ms", 2.0)
    [first] = agg.take(everything=True)
    clock.now = 1004.99999
    agg.add("t", "ms", 3.0)
    [second] = agg.take(everything=True)
    assert first[1] == 1001.234 and first[2]["last"] == 2.0
    assert second[1] == 1004.999 and second[2]["last"] == 3.0


def test_values_fold_in_runs():
    """Past FOLD_EVERY values a run is folded; the partial is the same as folding once."""
    clock = FakeClock()
    one, many = Aggregator(clock), Aggregator(clock)
    values = [float(i % 97) / 8 for i in range(FOLD_EVERY * 3 + 5)]
    for v in values:
        many.add("t", "ms", v)
    one._get(("t", "ms", ()), "ms", clock.now - clock.now % 5).values.extend(values)
    assert many.take(everything=True) == one.take(everything=True)


def test_agg_grammar():
    """DaTtSs' typed strings, and refusals naming the value."""
    assert parse_agg("153ms") == ("ms", 153.0, False)
    assert parse_agg("1c") == ("c", 1.0, False)
    assert parse_agg("23g") == ("g", 23.0, False)
    assert parse_agg("+3g") == ("g", 3.0, True)
    assert parse_agg("-2.5g") == ("g", -2.5, True)
    assert parse_agg("5h") == ("h", 5.0, False)
    assert parse_agg("0.5d") == ("d", 0.5, False)
    assert parse_agg("8") == ("v", 8.0, False)
    assert parse_agg(0) == ("v", 0.0, False)
    for bad in ("abc", "ms", "1 ms", "nanms", "infc", "1_0c", True, None, [1]):
        with pytest.raises(ValueError):
            parse_agg(bad)


def test_bad_names_tags_and_values_are_refused():
    """A name, tag or value the server would refuse raises ValueError naming it."""
    agg = Aggregator(FakeClock())
    for call in (lambda: agg.add("bad name", "ms", 1.0),
                 lambda: agg.add("", "ms", 1.0),
                 lambda: agg.add("x" * 201, "ms", 1.0),
                 lambda: agg.add("ok", "ms", float("nan")),
                 lambda: agg.count("ok", float("inf")),
                 lambda: agg.add("ok", "ms", 1.0, {"bad key": "v"}),
                 lambda: agg.add("ok", "ms", 1.0, {"k": "a,b"}),
                 lambda: agg.add("ok", "ms", 1.0, {"k": [1]}),
                 lambda: agg.add("ok", "ms", 1.0, {"k%d" % i: "v" for i in range(21)})):
        with pytest.raises(ValueError):
            call()
    assert agg.take(everything=True) == []


def test_client_counts_bad_calls_and_never_raises():
    """A bad call is counted in counters['invalid'] and dropped; good calls are kept."""
    client = Client(port=closed_port(), interval=None, connect_timeout=0.5)
    try:
        client.agg("x.ok", "1c")
        client.agg("x.bad", "one")
        client.timing("bad name", 1)
        client.gauge("x.g", "nope")
        client.incr("x.c", tags={"k": object()})
        assert client.counters["invalid"] == 4
        assert client.aggregator.open_count() == 1
    finally:
        client.close()


def test_threads_lose_nothing():
    """Four threads recording at once: every increment and value is counted."""
    clock = FakeClock()
    agg = Aggregator(clock)

    def work(n):
        for i in range(5000):
            agg.count("c", 1)
            agg.add("t", "ms", float(i % 10))
            agg.count("c", 1, {"thread": str(n)})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = {(i[0], tuple(sorted(i[3].items())) if len(i) > 3 else ()): i[2]
             for i in agg.take(everything=True)}
    assert items[("c", ())]["count"] == 20000
    assert items[("t", ())]["count"] == 20000
    assert items[("t", ())]["sum"] == 4 * 500 * 45
    for n in range(4):
        assert items[("c", (("thread", str(n)),))]["count"] == 5000


def test_client_sketch_reads_as_server_sketch():
    """The client's Sketch writes the server's JSON form and reads back the same quantiles."""
    rng = random.Random(3)
    values = [rng.uniform(-50, 1000) for _ in range(999)] + [0.0]
    mine = ClientSketch(0.01)
    server = Sketch(0.01)
    for v in values:
        mine.add(v)
        server.add(v)
    theirs = Sketch.from_json(mine.to_json())
    for q in (0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert theirs.quantile(q) == server.quantile(q) == mine.quantile(q)
    # Small sets, where the rank rule shows: 1..5's 0.9 is the 5th value.
    for values in ([5.0, 1.0, 3.0, 2.0, 4.0], [153.0, 47.0], [-3.0, 0.0, 7.0]):
        mine, server = ClientSketch(0.01), Sketch(0.01)
        for v in values:
            mine.add(v)
            server.add(v)
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
            assert mine.quantile(q) == server.quantile(q), (values, q)
            assert abs(mine.quantile(q) - exact_quantile(values, q)) <= 0.01 * abs(exact_quantile(values, q))


def test_failed_send_keeps_a_bounded_buffer():
    """With the server down partials stay, the oldest dropped past max_buffer and counted."""
    clock = FakeClock()
    client = Client(port=closed_port(), interval=None, max_buffer=5, connect_timeout=0.5,
                    clock=clock, close_timeout=1.0)
    try:
        for i in range(8):
            client.incr("buf.c%d" % i)
        assert client.flush() is False
        assert client.pending == 5
        assert client.counters["dropped_overflow"] == 3
        assert client.counters["send_failures"] == 1
        # The five kept are the newest.
        assert [d.split(b'"')[1] for d in client._pending] == [
            b"buf.c%d" % i for i in range(3, 8)]
        # A periodic flush waits for the backoff; it does not connect again.
        client.incr("buf.more")
        clock.now += 5
        assert client._flush(everything=False, force=False) is False
        assert client.counters["send_failures"] == 1
        assert client.pending == 5 and client.counters["dropped_overflow"] == 4
    finally:
        client.close()


def test_oversized_partial_goes_without_its_sketch():
    """A partial longer than a line is sent without its sketch (counted), never stuck in the buffer."""
    client = Client(port=closed_port(), interval=None, max_line_bytes=300, connect_timeout=0.5,
                    close_timeout=0.5)
    try:
        for v in range(1, 200):
            client.timing("wide", float(v) ** 2)
        client.incr("small")
        client.flush()
        assert client.counters["sketch_dropped"] == 1
        assert client.pending == 2
        assert all(len(d) < 300 for d in client._pending)
    finally:
        client.close()


def test_buffer_is_bounded_in_bytes_too():
    """Past max_buffer_bytes the oldest partials are dropped and counted; the byte count follows the buffer."""
    client = Client(port=closed_port(), interval=None, max_buffer_bytes=100, connect_timeout=0.5,
                    close_timeout=0.5)
    try:
        for i in range(8):
            client.incr("bytes.c%d" % i)
        client.flush()
        kept = list(client._pending)
        assert sum(map(len, kept)) <= 100 < sum(map(len, kept)) + len(kept[0])
        assert client._pending_bytes == sum(map(len, kept))
        assert client.counters["dropped_overflow"] == 8 - len(kept)
        assert kept[-1].startswith(b'["bytes.c7"')
    finally:
        client.close()
