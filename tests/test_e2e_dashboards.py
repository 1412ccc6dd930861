"""
End to end (#14): saved dashboards, events and gzip answers of a real
server process, over real sockets.
"""

import gzip
import json
import time

BOARD = {
    "name": "e2e board",
    "panels": [
        {"title": "latency", "series": ["e2e.lat"], "fields": ["p90"], "unit": "ms", "kind": "lines"},
        {"filter": "e2e.hits", "range": {"from": "-6h", "until": "now"}, "kind": "bars"},
        {"series": ["e2e.temp"], "range": "follow", "kind": "area"},
        {"series": ["e2e.hits"], "kind": "number"},
    ],
}


def post_json(server, path, body, method="POST"):
    status, _, raw = server.http(method, path, body=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return status, json.loads(raw)


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("not true within %.0f s" % (timeout,))
        time.sleep(0.05)


def test_dashboards_survive_restart_and_sigkill(make_server):
    """A dashboard saved (201) is there after a clean restart, and one saved just before a SIGKILL too."""
    server = make_server().start()
    status, made = post_json(server, "/api/dashboards", BOARD)
    assert status == 201, made
    server.stop()
    server.start()
    assert server.get_json("/api/dashboards/" + made["id"]) == made
    status, updated = post_json(server, "/api/dashboards/" + made["id"],
                                dict(BOARD, name="renamed"), method="PUT")
    assert status == 200, updated
    status, second = post_json(server, "/api/dashboards", dict(BOARD, name="second"))
    assert status == 201, second
    # The 201 came once the journal was written: a crash right after keeps it.
    server.kill()
    server.start()
    listing = server.get_json("/api/dashboards")
    assert [(d["name"], d["panels"]) for d in listing["dashboards"]] == [("renamed", 4), ("second", 4)]
    assert server.get_json("/api/dashboards/" + second["id"])["panels"] == BOARD["panels"]
    status, _, _ = server.http("DELETE", "/api/dashboards/" + second["id"])
    assert status == 200
    server.kill()
    server.start()
    assert server.get_json("/api/dashboards")["count"] == 1
    status, answer = post_json(server, "/api/dashboards", {"name": "x", "panels": [{"kind": "pie"}]})
    assert status == 400 and answer["parameter"] == "panels[0].series", answer
    server.stop()


def test_events_by_http_and_dogstatsd_datagram(make_server):
    """An event POSTed and one sent as a DogStatsD _e datagram are both listed, and after a SIGKILL too."""
    server = make_server().start()
    now = time.time()
    status, posted = post_json(server, "/api/events",
                               {"what": "deploy api", "tags": ["deploy"], "data": "v1.2",
                                "when": now - 60})
    assert status == 201, posted
    title, text = "disk full", "on db1"
    server.send_udp(b"e2e.hits:1|c\n_e{%d,%d}:%s|%s|h:db1|t:error|#env:prod"
                    % (len(title), len(text), title.encode(), text.encode()))

    def listed():
        events = server.get_json("/api/events", {"from": "-1h"})["events"]
        return events if len(events) == 2 else None

    events = listed() or wait_for(listed)
    assert [(e["what"], e["source"]) for e in events] == [("deploy api", "http"),
                                                         ("disk full", "statsd")]
    assert events[1]["host"] == "db1" and events[1]["tags"] == ["env:prod"]
    assert server.get_json("/api/events", {"from": "-1h", "tags": "deploy"})["count"] == 1
    # The statsd event is journaled in the next journal write (100 ms).
    time.sleep(0.5)
    server.kill()
    server.start()
    assert [e["what"] for e in server.get_json("/api/events", {"from": "-1h"})["events"]] == [
        "deploy api", "disk full"]
    server.stop()


def test_gzip_answer(make_server):
    """/api/health names the real ports; a JSON answer is gzip when asked, the same JSON decompressed; the export is not."""
    server = make_server().start()
    # The real ports (the test's are free ones, not the defaults), for the empty state.
    assert server.get_json("/api/health")["ports"] == {
        "tcp": server.tcp_port, "udp": server.udp_port, "http": server.http_port}
    server.send_udp(b"\n".join(b"e2e.gz.lat:%d|ms" % (k,) for k in range(200)))

    def batch(headers):
        return server.http("GET", "/api/series/batch?key=e2e.gz.lat&from=-1h", headers=headers)

    wait_for(lambda: json.loads(batch({})[2])["series"])
    status, headers, packed = batch({"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    body = json.loads(gzip.decompress(packed))
    assert body["series"][0]["key"] == "e2e.gz.lat"
    assert body["partial_from"] <= body["now"]
    status, headers, raw = server.http("GET", "/api/export?key=e2e.gz.lat&format=csv-wide",
                                       headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] is None
    assert raw.startswith(b"timestamp,epoch,series,type,count,sum,min,max,mean")
    server.stop()
