"""
Graphite's render functions against graphite-web's own implementation: the
same points go through carbon-cache 1.1.10 (retentions C{5s:6h,1m:8d}) into
whisper files that graphite-web 1.1.10 reads, and into a SimpleStats store;
every target is rendered by both and compared: names, tags, timestamps,
nulls and values.

graphite-web, Django 2.2.28 and carbon are installed into a virtualenv of
their own under bench/.cache/ (L{bench.references.ensure_graphite_web}) on
the first run; graphite-web answers in process through Django's test client
(tests/graphite_oracle_app.py), with no web server.  Under C{CI=true} a
failed install fails the test rather than skipping it.
"""

import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from hashlib import sha256
from urllib.parse import urlencode

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench import references  # noqa: E402
from bench.systems import Carbon  # noqa: E402

CACHE = os.path.join(REPO_ROOT, "bench", ".cache")
SCHEMAS = "[oracle]\npattern = .*\nretentions = 5s:6h,1m:8d\n"
APP = os.path.join(REPO_ROOT, "tests", "graphite_oracle_app.py")
CPUS = ("web1", "web2", "web3", "db1")
TAGGED = ("oracle.lat;host=web1", "oracle.lat;host=web2", "oracle.lat;dc=eu;host=db1")

# Every function of the issue, on the 5 s tier (-2h..-30min) and where it
# reads differently, the 1 min one (-2d..-8h).
TARGETS = [
    "oracle.web1.cpu",
    "oracle.*.cpu",
    "oracle.{web1,db1}.cpu",
    "oracle.web[12].cpu",
    "oracle.web?.cpu",
    'aliasSub(oracle.*.cpu, "(^.*$)", "\\1 A")',
    'aliasSub(oracle.*.cpu, "oracle\\.(\\w+)\\.cpu", "host \\1")',
    "constantLine(100)",
    "constantLine(-2.5)",
    'alias(oracle.web1.cpu, "the web")',
    "aliasByNode(oracle.*.cpu, 1)",
    "aliasByNode(oracle.*.cpu, 0, -1)",
    "aliasByNode(scale(oracle.web1.cpu, 2), 1)",
    "sumSeries(oracle.*.cpu)",
    "sum(oracle.web*.cpu, oracle.db1.cpu)",
    "averageSeries(oracle.*.cpu)",
    "avg(oracle.web*.cpu)",
    "maxSeries(oracle.*.cpu)",
    "minSeries(oracle.*.cpu)",
    "sumSeries(oracle.gappy, oracle.web1.cpu)",
    'groupByNode(oracle.*.cpu, 0, "sum")',
    "groupByNode(oracle.*.cpu, 1)",
    'groupByNode(oracle.*.cpu, 0, "maxSeries")',
    "scale(oracle.web1.cpu, 2.5)",
    "scale(oracle.gappy, -1)",
    "offset(oracle.web1.cpu, -3)",
    "perSecond(oracle.requests.total)",
    "perSecond(oracle.requests.total, 2000000)",
    "nonNegativeDerivative(oracle.requests.total)",
    "derivative(oracle.gappy)",
    "integral(oracle.gappy)",
    'summarize(oracle.web1.cpu, "1min")',
    'summarize(oracle.gappy, "10min", "avg")',
    'summarize(oracle.web1.cpu, "20min", "max", true)',
    'summarize(oracle.gappy, "7min", "last")',
    "movingAverage(oracle.web1.cpu, 10)",
    'movingAverage(oracle.gappy, "5min")',
    "transformNull(oracle.gappy)",
    "transformNull(oracle.gappy, -1)",
    "keepLastValue(oracle.gappy)",
    "keepLastValue(oracle.gappy, 3)",
    'timeShift(oracle.web1.cpu, "1h")',
    'timeShift(oracle.web1.cpu, "-10min")',
    "highestAverage(oracle.*.cpu, 2)",
    "highestCurrent(oracle.*.cpu, 2)",
    "highestMax(oracle.*.cpu, 1)",
    "lowestAverage(oracle.*.cpu, 2)",
    "asPercent(oracle.web1.cpu, oracle.web2.cpu)",
    "asPercent(oracle.*.cpu)",
    "asPercent(oracle.web1.cpu, 50)",
    "asPercent(oracle.{web1,web2}.cpu, oracle.{db1,web3}.cpu)",
    "divideSeries(oracle.web1.cpu, oracle.web2.cpu)",
    "divideSeries(oracle.*.cpu, oracle.gappy)",
    "absolute(oracle.swing)",
    "limit(oracle.*.cpu, 2)",
    "sortByMaxima(oracle.*.cpu)",
    "removeBelowValue(oracle.web1.cpu, 50)",
    "removeAboveValue(oracle.swing, 0)",
    "percentileOfSeries(oracle.*.cpu, 90)",
    "percentileOfSeries(oracle.*.cpu, 50, true)",
    "seriesByTag('name=oracle.lat')",
    "seriesByTag('name=oracle.lat', 'host=web1')",
    "seriesByTag('name=~oracle.lat$', 'host!=web1')",
    "seriesByTag('name=oracle.lat', 'host=~web')",
    'groupByTags(seriesByTag(\'name=oracle.lat\'), "sum", "name")',
    'groupByTags(seriesByTag(\'name=oracle.lat\'), "avg", "host")',
    'aliasByTags(seriesByTag(\'name=oracle.lat\'), "host")',
    'aliasByTags(seriesByTag(\'name=oracle.lat\'), "host", "name")',
    'oracle.web1.cpu|scale(2)|alias("piped")',
    'consolidateBy(oracle.web1.cpu, "max")',
    "consolidateBy(oracle.gappy, 'sum')",
    'consolidateBy(oracle.*.cpu, "last")',
    'aggregate(oracle.*.cpu, "median")',
    'aggregate(oracle.*.cpu, "stddev", 0.5)',
    'groupByNodes(oracle.*.cpu, "sum", 0)',
    'movingWindow(oracle.gappy, 5, "max")',
    'highest(oracle.*.cpu, 2, "max")',
    'lowest(oracle.*.cpu, 1, "min")',
    "lowestCurrent(oracle.*.cpu, 2)",
]
RANGES = {"5s": ("-2h", "-30min"), "1m": ("-2d", "-8h")}
MAX_POINTS = ("", "100", "7")
ERRORS = [({"target": "noSuchFunction(oracle.web1.cpu)"}, 400),
          ({"target": "oracle.web1.cpu", "from": "-1m"}, 400),
          ({"target": "no.such.metric"}, 200),
          ({"target": "asPercent(oracle.*.cpu, oracle.web*.cpu)", "from": "-2h"}, 400)]


TAG_CALLS = [
    ("/tags/autoComplete/tags", {}),
    ("/tags/autoComplete/tags", {"tagPrefix": "h"}),
    ("/tags/autoComplete/tags", {"expr": "name=oracle.lat"}),
    ("/tags/autoComplete/tags", {"expr": ["name=oracle.lat", "host=db1"]}),
    ("/tags/autoComplete/values", {"tag": "host"}),
    ("/tags/autoComplete/values", {"tag": "host", "valuePrefix": "web"}),
    ("/tags/autoComplete/values", {"tag": "host", "expr": "dc=eu"}),
    ("/tags/findSeries", {"expr": ["name=oracle.lat", "host!=web2"]}),
]


def make_points(now):
    """
    C{{path: [(timestamp, value)]}}: a point every 5 s over the last five
    hours and one a minute from three days to seven hours ago (whisper
    keeps no 5 s values that old), a few series with gaps of whole
    minutes in the old part.
    """
    rng = random.Random(15)
    recent = range(now - 5 * 3600, now - 60, 5)
    old = range(now - 3 * 86400, now - 7 * 3600, 60)
    points = {}
    for host in CPUS:
        level = rng.uniform(20, 80)
        points["oracle.%s.cpu" % host] = [
            (t + 1, round(level + rng.uniform(-15, 15), 2)) for t in list(old) + list(recent)]
    gappy = []
    for t in list(old) + list(recent):
        minute = t - t % 60
        if (minute // 60) % 7 in (2, 3) or (t in recent and rng.random() < 0.2):
            continue
        gappy.append((t + 2, round(rng.uniform(0, 10), 3)))
    points["oracle.gappy"] = gappy
    total, counter = 0.0, []
    for i, t in enumerate(list(old) + list(recent)):
        total = 5.0 if i == 2500 else total + rng.randint(0, 900)
        counter.append((t + 1, total))
    points["oracle.requests.total"] = counter
    points["oracle.swing"] = [(t + 3, round(40 * math.sin(t / 900.0), 4))
                              for t in list(old) + list(recent)]
    for path in TAGGED:
        points[path] = [(t + 1, round(rng.uniform(1, 500), 1)) for t in list(old) + list(recent)]
    return points


def whisper_file(storage, path):
    """
    Where carbon 1.1.10 keeps C{path}'s whisper file.
    """
    if ";" in path:
        digest = sha256(path.encode()).hexdigest()
        # TAG_HASH_FILENAMES, on by default: the hash names the file.
        return os.path.join(storage, "whisper", "_tagged", digest[:3], digest[3:6],
                            digest + ".wsp")
    return os.path.join(storage, "whisper", *path.split(".")) + ".wsp"


def feed_carbon(carbon, points):
    lines = []
    for path, series in points.items():
        lines.extend("%s %r %d\n" % (path, value, t) for t, value in series)
    with socket.create_connection(("127.0.0.1", carbon.line_port)) as sock:
        sock.sendall("".join(lines).encode())


def wait_written(whisper, storage, points, now, timeout=180.0):
    """
    Until every whisper file holds the last of its 5 s points and the
    first of its 1 min ones.
    """
    deadline = time.monotonic() + timeout
    pending = dict(points)
    while pending and time.monotonic() < deadline:
        for path, series in list(pending.items()):
            name = whisper_file(storage, path)
            if not os.path.exists(name):
                continue
            try:
                (start, _, step), values = whisper.fetch(name, now - 3600, now)
                (old_start, _, old_step), old = whisper.fetch(name, series[0][0] - 120,
                                                              series[0][0] + 60)
            except Exception:
                continue
            last_t = series[-1][0]
            first_t = series[0][0]
            if (values[(last_t - last_t % step - start) // step] is not None
                    and old[(first_t - first_t % old_step - old_start) // old_step] is not None):
                del pending[path]
        time.sleep(0.5)
    assert not pending, "carbon did not write %s in %.0f s" % (sorted(pending), timeout)


class OurServer:
    """
    A SimpleStats core and its Graphite API in this process, on a clock set
    to the real time (whisper reads the real clock).
    """

    def __init__(self, data_dir):
        from twisted.internet.task import Clock

        from server.core.ingest import IngestCore
        from server.core.store import Store
        from server.durability.journal import Journal
        from server.settings import load
        from server.web.graphite.api import GraphiteAPI
        from treq.testing import StubTreq

        os.makedirs(str(data_dir), exist_ok=True)
        settings = load(["--data-dir", str(data_dir)])
        self.clock = Clock()
        self.clock.advance(time.time())
        store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace,
                      now=self.clock.seconds())
        self.journal = Journal(settings.data_dir, settings.journal_fsync_interval)
        self.core = IngestCore(settings, self.clock, store, self.journal)
        self.api = GraphiteAPI(self.core, settings, self.clock)
        self.stub = StubTreq(self.api.app.resource())

    def feed(self, points):
        from server.core.model import SAMPLE, Sample, split_series_key
        items = []
        for path, series in points.items():
            name, tags = split_series_key(path)
            items.extend(Sample(name, tuple(sorted(tags)), SAMPLE, value, float(t))
                         for t, value in series)
        for start in range(0, len(items), 5000):
            assert self.core.submit(items[start:start + 5000], "test") == []

    def get(self, path, params):
        self.clock.advance(max(0.0, time.time() - self.clock.seconds()))
        query = urlencode([(k, x) for k, v in params.items()
                           for x in (v if isinstance(v, list) else [v])])
        d = self.stub.request("GET", "http://127.0.0.1" + path + "?" + query)
        done = []
        d.addBoth(done.append)
        for _ in range(100000):
            self.stub.flush()
            if done:
                break
            self.clock.advance(0)
        response = done[0]
        body = []
        self.stub.content(response).addBoth(body.append)
        self.stub.flush()
        return {"status": response.code, "body": body[0].decode("utf-8", "replace")}


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    try:
        venv = references.ensure_graphite_web(CACHE, log=lambda line: None)
    except references.InstallError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("graphite-web could not be installed: %s" % (e,))
    work = tmp_path_factory.mktemp("oracle")
    now = int(time.time())
    now -= now % 60
    points = make_points(now)
    carbon = Carbon(str(work / "carbon"), None, venv, schemas=SCHEMAS)
    carbon.start()
    try:
        feed_carbon(carbon, points)
        wait_written(references.load_whisper(venv), os.path.join(carbon.workdir, "storage"),
                     points, int(time.time()))
    finally:
        carbon.stop()
    ours = OurServer(work / "simplestats")
    ours.feed(points)

    # Both read the times against one 'now' (whisper's own clock only picks
    # the archive, the same for ranges this far in the past).
    for_now = {"now": str(int(time.time()))}
    requests = []
    for target in TARGETS:
        for tier, (start, until) in RANGES.items():
            for max_points in MAX_POINTS:
                params = {"target": target, "from": start, "until": until, "format": "json",
                          **for_now}
                if max_points:
                    params["maxDataPoints"] = max_points
                requests.append(("/render", params))
    for params, _ in ERRORS:
        requests.append(("/render", dict(params, format="json", **for_now)))
    requests.append(("/render", {"target": ["oracle.web1.cpu", "sumSeries(oracle.web*.cpu)"],
                                 "from": "-2h", "until": "-30min", "format": "json",
                                 "maxDataPoints": "50", **for_now}))
    requests.append(("/metrics/find", {"query": "oracle.web*"}))
    requests.append(("/metrics/find", {"query": "oracle.*", "format": "completer"}))
    for path, params in TAG_CALLS:
        requests.append((path, params))
    requests.append(("/render", {"target": ["oracle.gappy", "scale(oracle.web1.cpu, 0.1)"],
                                 "from": "-2h", "until": "-90min", "format": "csv", **for_now}))
    # graphite-web renders first: its answers go with the clock it read.
    job = {"tagged": list(TAGGED), "requests": requests}
    done = subprocess.run([os.path.join(venv, "bin", "python"), APP,
                           os.path.join(carbon.workdir, "storage")],
                          input=json.dumps(job), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    theirs = json.loads(done.stdout)
    mine = [ours.get(path, params) for path, params in requests]
    ours.journal.close()
    return requests, theirs, mine


def _close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def compare_render(theirs, mine, what):
    assert mine["status"] == theirs["status"], (what, theirs["body"][:300], mine["body"][:300])
    if theirs["status"] != 200:
        assert theirs["body"].startswith("Invalid parameters (")
        assert mine["body"].startswith("Invalid parameters ("), mine["body"]
        return
    expected = json.loads(theirs["body"])
    got = json.loads(mine["body"])
    assert [s["target"] for s in got] == [s["target"] for s in expected], what
    for ours, ref in zip(got, expected):
        assert ours["tags"] == ref["tags"], (what, ref["target"])
        assert [t for _, t in ours["datapoints"]] == [t for _, t in ref["datapoints"]], \
            (what, ref["target"], ours["datapoints"][:3], ref["datapoints"][:3],
             len(ours["datapoints"]), len(ref["datapoints"]))
        bad = [(t, a, b) for (a, t), (b, _) in zip(ours["datapoints"], ref["datapoints"])
               if not _close(a, b)]
        assert not bad, (what, ref["target"], len(bad), bad[:5])


def _renders(answers):
    requests, theirs, mine = answers
    return [(params, t, m) for (path, params), t, m in zip(requests, theirs, mine)
            if path == "/render"]


@pytest.mark.parametrize("target", TARGETS)
def test_function_matches_graphite_web(answers, target):
    """Each target renders as graphite-web renders it on both tiers, raw and consolidated: names, tags, timestamps, nulls, values."""
    checked = 0
    for params, theirs, mine in _renders(answers):
        if params["target"] == target and (params["from"], params.get("until")) in RANGES.values():
            compare_render(theirs, mine, params)
            checked += 1
    assert checked == len(RANGES) * len(MAX_POINTS)


def test_the_reference_holds_data(answers):
    """The comparison is not of two empty answers: graphite-web found every series fed."""
    for params, theirs, _ in _renders(answers):
        if params["target"] == "oracle.*.cpu" and "maxDataPoints" not in params:
            body = json.loads(theirs["body"])
            assert len(body) == len(CPUS)
            assert sum(v is not None for s in body for v, _ in s["datapoints"]) > 100


def test_every_target_is_compared_on_values(answers):
    """Every target's reference answer holds values on both tiers: no comparison is of empty or all-null lines."""
    empty = []
    for params, theirs, _ in _renders(answers):
        if params["target"] in TARGETS and params.get("until") and "maxDataPoints" not in params:
            assert theirs["status"] == 200, (params["target"], theirs["body"][:500])
            values = [v for s in json.loads(theirs["body"]) for v, _ in s["datapoints"]]
            if sum(v is not None for v in values) < 3:
                empty.append((params["target"], params["from"]))
    assert empty == []


def test_errors_and_missing_match_graphite_web(answers):
    """An unknown function, a bad time and mismatched lists are 400 'Invalid parameters' on both; a missing metric is [] on both."""
    for params, expected in ERRORS:
        for sent, theirs, mine in _renders(answers):
            if sent["target"] == params["target"] and sent.get("from") == params.get("from"):
                assert theirs["status"] == expected
                compare_render(theirs, mine, sent)


def test_several_targets_in_one_request(answers):
    """Several targets in one request (Grafana's batch) consolidate over their common span as graphite-web does."""
    for params, theirs, mine in _renders(answers):
        if isinstance(params["target"], list) and params["format"] == "json":
            compare_render(theirs, mine, params)


def test_csv_matches_graphite_web(answers):
    """format=csv writes the same rows as graphite-web: name, time, value (empty for none)."""
    found = [(t, m) for params, t, m in _renders(answers) if params.get("format") == "csv"]
    assert len(found) == 1
    theirs, mine = found[0]
    assert theirs["status"] == mine["status"] == 200
    expected = theirs["body"].splitlines()
    assert len(expected) > 700
    got = mine["body"].splitlines()
    assert len(got) == len(expected)
    for ours, ref in zip(got, expected):
        name, stamp, value = ref.rsplit(",", 2)
        assert ours.rsplit(",", 2)[:2] == [name, stamp]
        assert _close(float(ours.rsplit(",", 1)[1]) if ours[-1] != "," else None,
                      float(value) if value else None), (ours, ref)


def test_tag_calls_match_graphite_web(answers):
    """Tag auto-completion and findSeries answer what graphite-web's tag database answers."""
    requests, theirs, mine = answers
    checked = 0
    for (path, params), t, m in zip(requests, theirs, mine):
        if path.startswith("/tags/"):
            assert t["status"] == m["status"] == 200, (path, params, t["body"][:300])
            assert json.loads(m["body"]) == json.loads(t["body"]), (path, params)
            checked += 1
    assert checked == len(TAG_CALLS)


def test_find_matches_graphite_web(answers):
    """/metrics/find answers the same nodes as graphite-web where both hold branches."""
    requests, theirs, mine = answers
    for (path, params), t, m in zip(requests, theirs, mine):
        if path != "/metrics/find":
            continue
        assert m["status"] == t["status"] == 200
        if params.get("format") == "completer":
            names = sorted(n["name"] for n in json.loads(m["body"])["metrics"])
            assert set(n["name"] for n in json.loads(t["body"])["metrics"]) <= set(names)
        else:
            assert json.loads(m["body"]) == json.loads(t["body"])
