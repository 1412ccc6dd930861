"""
End to end: what one real server exports, imported into a second one
(POST /api/import) and piped into a third one's TCP port (as docs/API.md
suggests), exports again byte for byte: negative gauges stay values, timer
percentiles stay what they were, sets keep their counts, and points
stamped in the future are in the default export.
"""

import json
import random
import time

FILTER = "e2e.rt"
HINT = b"--Hint: send data of the form [name:str, timestamp:float, data:float]\r\n"
# Buckets close this long after their end (and the rollup runs every
# second): an open bucket is exported with its sketch or members, a closed
# one without, so the exports are compared once the past buckets closed.
FLAGS = ("--late-grace", "1")
SETTLE = 2.5


def tuples(base, future):
    """
    Rows of every type over a few 5-second buckets from C{base}, and a
    counter and a timer stamped at C{future}.
    """
    rng = random.Random(12)
    rows = []
    # The numbers: a timer whose percentiles are far from its mean.
    for i in range(300):
        rows.append(["e2e.rt.timer", base + 1 + i % 4, "%rms" % (round(rng.lognormvariate(3, 1.2), 3),)])
    # Gauges 10, -5, -7 in three buckets (the last two reached by changes).
    rows += [["e2e.rt.gauge", base + 1, "10g"], ["e2e.rt.gauge", base + 6, "-15g"],
             ["e2e.rt.gauge", base + 11, "-2g"]]
    for i in range(20):
        rows.append(["e2e.rt.count", base + i, "%dc" % (i % 3 - 1,), {"host": "web%d" % (i % 2)}])
        rows.append(["e2e.rt.hist", base + i, "%rh" % (rng.uniform(-50, 50),)])
        rows.append(["e2e.rt.dist", base + i, "%rd" % (rng.expovariate(0.1),)])
        rows.append(["e2e.rt.sample", base + i, rng.uniform(-1, 1)])
    rows.append(["e2e.rt.set", base + 2, {"type": "s", "members": ["a", "b", "c"]}])
    rows.append(["e2e.rt.set", base + 3, {"type": "s", "members": ["c", "d"]}])
    rows.append(["e2e.rt.set", base + 8, {"type": "s", "members": ["x"]}])
    rows.append(["e2e.rt.partial", base + 4, {"type": "ms", "count": 40, "sum": 400.0, "min": 1.0,
                                               "max": 30.0}])
    rows.append(["e2e.rt.future", future, "7c"])
    rows.append(["e2e.rt.future.timer", future, "12.5ms"])
    rows.append(["e2e.rt.future.timer", future + 1, "80ms"])
    rows.append(["e2e.rt.future.timer", future + 2, "81ms"])
    return rows


def send_tcp(server, lines):
    with server.connect() as conn:
        assert conn.read_line() == HINT
        for line in lines:
            answer = conn.request(line)
            assert answer.startswith(b"--OK"), (line, answer)


def export(server, fmt="ndjson"):
    status, _, body = server.http("GET", "/api/export", {"filter": FILTER, "format": fmt})
    assert status == 200, body
    return body


def percentiles(server, name):
    body = server.get_json("/api/series", {"name": name, "fields": "median,p90,p99,count",
                                           "from": "-1h", "resolution": "5s"})
    return {field: [p for p in points if p[1] is not None] for field, points in body["fields"].items()}


def test_export_round_trips_through_import_and_tcp(make_server, tmp_path):
    """Export -> POST /api/import, and -> the TCP port, export the same bytes; percentiles and negative gauges kept."""
    source = make_server(*FLAGS).start()
    now = time.time()
    base = int(now // 60) * 60 - 600
    rows = tuples(base, int(now) + 240)
    send_tcp(source, [json.dumps(row).encode() for row in rows])
    # statsd: sampled counters and timers, a set, a gauge taken below zero.
    source.send_udp(b"e2e.rt.udp.hits:3|c|@0.5\ne2e.rt.udp.lat:120|ms|@0.25\ne2e.rt.udp.lat:9|ms\n"
                    b"e2e.rt.udp.users:alice|s\ne2e.rt.udp.users:bob|s\ne2e.rt.udp.temp:2|g\n"
                    b"e2e.rt.udp.temp:-6|g\n")
    deadline = time.time() + 10
    while b"e2e.rt.udp.temp" not in export(source) and time.time() < deadline:
        time.sleep(0.2)
    # The statsd points' 5-second bucket closes (and the late ones did).
    time.sleep(max(0.0, (time.time() // 5 + 1) * 5 + SETTLE - time.time()))
    exported = export(source)
    exported_csv = export(source, "csv")
    names = {json.loads(line)[0] for line in exported.splitlines()}
    assert names >= {"e2e.rt.future", "e2e.rt.future.timer", "e2e.rt.udp.temp", "e2e.rt.udp.users"}
    assert b'["e2e.rt.gauge",%d,{"type":"g","last":-5}]' % (base + 5,) in exported
    assert b'["e2e.rt.gauge",%d,{"type":"g","last":-7}]' % (base + 10,) in exported

    imported = make_server(*FLAGS, data_dir=tmp_path / "imported").start()
    status, _, answer = imported.http("POST", "/api/import", {"format": "ndjson"}, exported)
    assert status == 200, answer
    from_csv = make_server(*FLAGS, data_dir=tmp_path / "csv").start()
    status, _, answer = from_csv.http("POST", "/api/import", {"format": "csv"}, exported_csv)
    assert status == 200, answer
    piped = make_server(*FLAGS, data_dir=tmp_path / "piped").start()
    send_tcp(piped, exported.splitlines())
    # What was imported into past buckets reopened them until the next tick.
    time.sleep(SETTLE)

    assert export(imported) == exported
    assert export(piped) == exported
    assert export(from_csv, "csv") == exported_csv
    assert export(source) == exported  # nothing changed meanwhile
    timer = percentiles(source, "e2e.rt.timer")
    [(_, median)], [(_, p90)], [(_, p99)] = timer["median"], timer["p90"], timer["p99"]
    assert median < p90 < p99
    for server in (imported, piped, from_csv):
        assert percentiles(server, "e2e.rt.timer") == timer
