"""
End to end: statsd traffic over real UDP into a real server process, read
back over real HTTP the way Grafana's Graphite data source reads it
(C{/render} POSTs wrapped in C{aliasSub}, C{/metrics/find}, tag
auto-completion, "Save & test").
"""

import json
import time
import urllib.parse

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DEADLINE = 15.0


def eventually(check, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def render(server, targets, **params):
    """
    The JSON of a Grafana-style POST to /render.
    """
    form = [("target", t) for t in targets] + [("format", "json")] + sorted(params.items())
    status, headers, body = server.http("POST", "/render",
                                        body=urllib.parse.urlencode(form).encode(), headers=FORM)
    assert status == 200, (status, body)
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def values(answer):
    return {s["target"]: [v for v, _ in s["datapoints"] if v is not None] for s in answer}


def test_statsd_in_render_out(server):
    """Counters, timers, gauges and tagged timers sent over statsd are read back by their Graphite and statsd names."""
    lines = [b"e2e.hits:3|c", b"e2e.hits:4|c", b"e2e.latency:10|ms", b"e2e.latency:30|ms",
             b"e2e.room:21.5|g", b"e2e.api:5|ms|#host:web1", b"e2e.api:9|ms|#host:web2"]
    server.send_udp(b"\n".join(lines))
    wrap = '"(^.*$)", "\\1 A"'

    def counted():
        answer = render(server, ["aliasSub(e2e.hits, %s)" % wrap,
                                 "aliasSub(stats.timers.e2e.latency.upper, %s)" % wrap,
                                 "aliasSub(stats.gauges.e2e.room, %s)" % wrap,
                                 "aliasSub(sumSeries(stats.counters.e2e.hits.count), %s)" % wrap],
                        **{"from": "-5min", "until": "now", "maxDataPoints": "100"})
        got = values(answer)
        assert sum(got["e2e.hits A"]) == 7.0, got
        assert max(got["stats.timers.e2e.latency.upper A"]) == 30.0, got
        assert got["stats.gauges.e2e.room A"][-1] == 21.5, got
        assert sum(got["sumSeries(stats.counters.e2e.hits.count) A"]) == 7.0, got
        return answer

    answer = eventually(counted)
    assert answer[0]["tags"] == {"name": "e2e.hits"}
    tagged = render(server, ["seriesByTag('name=e2e.api.max', 'host=~web')"], **{"from": "-5min"})
    assert {s["target"]: max(v for v, _ in s["datapoints"] if v is not None) for s in tagged} == {
        "e2e.api.max;host=web1": 5.0, "e2e.api.max;host=web2": 9.0}


def test_grafana_save_and_test_and_browsing(server):
    """'Save & test', the query editor's browsing and tag completion answer over real HTTP."""
    server.send_udp(b"browse.cpu.user:1|g\nbrowse.cpu.system:2|g\nbrowse.tagged:1|c|#dc:eu")
    answer = render(server, ["constantLine(100)"], **{"from": "-1h", "until": "now"})
    assert [s["target"] for s in answer] == ["100.0"]
    assert [v for v, _ in answer[0]["datapoints"]] == [100.0, 100.0, 100.0]

    def browsed():
        nodes = server.get_json("/metrics/find", {"query": "browse.cpu.*"})
        assert [(n["text"], n["expandable"]) for n in nodes] == [("system", 1), ("user", 1)]
        return nodes

    eventually(browsed)
    status, _, body = server.http("GET", "/tags/autoComplete/values",
                                  {"tag": "dc", "valuePrefix": "e"})
    assert (status, json.loads(body)) == (200, ["eu"])
    status, _, body = server.http("GET", "/version")
    assert (status, body) == (200, b"1.1.10")


def test_bad_target_is_400(server):
    """An unknown function is a 400 'Invalid parameters' over real HTTP, and the server goes on."""
    form = urllib.parse.urlencode({"target": "nope(a.b)", "format": "json"}).encode()
    status, _, body = server.http("POST", "/render", body=form, headers=FORM)
    assert status == 400
    assert body.startswith(b"Invalid parameters (Received request for unknown function: nope")
    assert server.get_json("/api/health")["status"] == "ok"
