"""
End to end: HTTP ingest on a real server's web port, over real sockets --
the dtrace seed's curl line (the real curl binary), an /mput refused whole,
a DaTtSs v2 commit -- each read back through /api/series.
"""

import json
import shutil
import subprocess
import time

import pytest

SEED_TAGS = "fifo-host:fifo01,grouping:fifo"


@pytest.fixture
def server(shared_server):
    """
    The tests here share one server: each writes series of its own names.
    """
    return shared_server


def read_back(server, name, tags="", fields="count"):
    """
    The non-null values of each field of a series over the last hour.
    """
    params = {"name": name, "fields": fields}
    if tags:
        params["tags"] = tags
    body = server.get_json("/api/series", params)
    return {field: [v for _, v in points if v is not None]
            for field, points in body["fields"].items()}


def curl(*args):
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True,
                            timeout=30, check=True)
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status), body


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")
def test_seed_curl_line(server):
    """The dtrace seed's curl line, with only the host changed and a current time, is stored and answered OK."""
    now = int(time.time())
    line = ('{"grouping": "fifo","metric": "fifo.vm.creations","time": %d,"value": 1,'
            '"tags": {"fifo-host":"fifo01"}}' % (now,))
    status, body = curl("-d", line, "%s/put?topic=tachyon-metric-json" % (server.base_url,))
    assert (status, body) == (200, b"OK")
    # The same in milliseconds, to /pub.
    line = line.replace('"time": %d' % (now,), '"time": %d' % (now * 1000 + 500,))
    status, body = curl("-d", line, "%s/pub?topic=tachyon-metric-json" % (server.base_url,))
    assert (status, body) == (200, b"OK")
    # Two points (in one 5 s bucket, or two).
    assert sum(read_back(server, "fifo.vm.creations", SEED_TAGS)["count"]) == 2
    status, body = curl("%s/ping" % (server.base_url,))
    assert (status, body) == (200, b"OK")


def test_mput_refused_whole(server):
    """An /mput with one bad message is a 400 naming its number and field; none of it is stored."""
    now = time.time()
    good = {"metric": "e2e.nsq.batch", "time": now, "value": 2.5, "tags": {"host": "a"}}
    body = b"\n".join([json.dumps(good).encode(),
                       json.dumps(dict(good, time="yesterday")).encode(),
                       json.dumps(good).encode()]) + b"\n"
    status, _, answer = server.http("POST", "/mput", {"topic": "t"}, body)
    assert status == 400, answer
    answer = json.loads(answer)
    assert answer["bad_messages"][0]["message"] == 2
    assert answer["bad_messages"][0]["field"] == "time"
    assert answer["error"].startswith("message 2, field time:"), answer
    status, _, _ = server.http("GET", "/api/series", {"name": "e2e.nsq.batch", "tags": "host:a"})
    assert status == 404
    # The same body without its bad line is taken whole.
    status, _, answer = server.http("POST", "/mput", {"topic": "t"},
                                    body.replace(b'"yesterday"', b"%f" % (now,)))
    assert (status, answer) == (200, b"OK")
    stored = read_back(server, "e2e.nsq.batch", "host:a", "count,sum")
    assert (sum(stored["count"]), sum(stored["sum"])) == (3, 7.5)


def test_dattss_commit(server):
    """A DaTtSs v2 commit with a zero and fractional values is merged and read back; a bad partial is refused by position."""
    commit = {"prt": {
        "c": [{"typ": "c", "pth": "e2e.dts.count", "pct": 0.1, "sum": 0, "cnt": 2, "max": 1,
               "min": -1, "fst": 1, "lst": -1, "bot": -1, "top": 1, "emp": False}],
        "ms": [{"typ": "ms", "pth": "e2e.dts.query", "pct": 0.1, "sum": 0.75, "cnt": 2,
                "max": 0.75, "min": 0, "fst": 0, "lst": 0.75, "bot": 0, "top": 0.75,
                "emp": False},
               {"typ": "ms", "pth": "e2e.dts.broken", "sum": 1, "cnt": 1}],
        "g": [{"typ": "g", "pth": "e2e.dts.live", "pct": 0.1, "sum": 0.5, "cnt": 2, "max": 0.5,
               "min": 0, "fst": 0.5, "lst": 0, "bot": 0, "top": 0.5, "emp": True}]}}
    status, headers, answer = server.http(
        "PUT", "/agg?auth=KEY", body=json.dumps(commit).encode(),
        headers={"Content-Type": "application/json"})
    assert status == 200, answer
    assert json.loads(answer) == {"ok": False, "accepted": 3, "refused": [
        {"kind": "ms", "index": 1, "error": "a ms partial needs min, max"}]}
    assert read_back(server, "e2e.dts.count") == {"count": [0.0]}
    assert read_back(server, "e2e.dts.query", fields="count,sum,min,max,last") == {
        "count": [2.0], "sum": [0.75], "min": [0.0], "max": [0.75], "last": [0.75]}
    assert read_back(server, "e2e.dts.live", fields="last,min,max,updates") == {
        "last": [0.0], "min": [0.0], "max": [0.5], "updates": [2.0]}
    status, _, _ = server.http("GET", "/api/series", {"name": "e2e.dts.broken"})
    assert status == 404
    del commit["prt"]["ms"][1]
    status, _, answer = server.http("PUT", "/agg?auth=KEY", body=json.dumps(commit).encode())
    assert (status, json.loads(answer)) == (200, {"ok": True})
    assert sum(read_back(server, "e2e.dts.query", fields="count")["count"]) == 4


def test_wrong_method_or_path_is_json(server):
    """A method an ingest, API or Graphite path does not take, and a path nothing answers, are JSON errors naming them."""
    for method, path, status, allowed in (("GET", "/put?topic=t1", 405, "POST, PUT"),
                                          ("DELETE", "/ping", 405, "GET, HEAD"),
                                          ("GET", "/agg", 405, "POST, PUT"),
                                          ("PATCH", "/api/health", 405, "GET, HEAD"),
                                          ("DELETE", "/render", 405, "GET, HEAD, POST"),
                                          ("GET", "/api/nope", 404, None)):
        answer_status, headers, body = server.http(method, path)
        assert answer_status == status, (method, path, body)
        assert headers["Content-Type"] == "application/json; charset=utf-8", (method, path)
        error = json.loads(body)["error"]
        if allowed:
            assert error == "method %s is not allowed on %s; it takes %s" % (
                method, path.split("?")[0], allowed)
            assert headers["Allow"] == allowed
        else:
            assert error.startswith("no such path /api/nope")
