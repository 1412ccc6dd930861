"""
Forwarding to a real Graphite cluster on loopback: carbon-c-relay (Debian's
package) with a consistent-hash (C{carbon_ch}) route to two carbon-cache
1.1.10 instances writing whisper files, and a C{file} cluster beside it that
records every line the relay got (to count repeats).  SimpleStats forwards
its 5 s buckets to the relay, under both naming schemes.

- every closed aggregate is in exactly one cache's whisper files, at its
  bucket's start, with the value SimpleStats' own /render gives for that
  path, and in the cache carbon's ConsistentHashingRouter picks (carbon's own
  code, run in the carbon virtualenv); the same placement for 10k paths;
- the relay stopped for 30 s mid-stream, and SimpleStats killed with -9
  while its queue holds lines: every bucket closed meanwhile arrives once;
- hash mode straight to the two caches: each path in the cache carbon's own
  relay would pick; carbon+udp:// into the relay's UDP listener.

carbon-c-relay is installed with apt-get when missing (as root); carbon in a
virtualenv under bench/.cache (L{bench.references.ensure_carbon}).  Under
C{CI=true} nothing is skipped: a tool that cannot be installed fails the test.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections import Counter

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench import references  # noqa: E402
from bench.systems import Carbon, Process, free_port  # noqa: E402
from tests.serverproc import ServerProcess  # noqa: E402

CACHE = os.path.join(REPO_ROOT, "bench", ".cache")
SCHEMAS = "[e2e]\npattern = .*\nretentions = 5s:2h\n"
STEP = 5
# Asks carbon's own router where each path goes and how carbon-cache names
# its whisper file (tagged series live under _tagged/).
CARBON_HELPER = r"""
import json, os, sys
from types import SimpleNamespace
from carbon.routers import ConsistentHashingRouter
from carbon.util import TaggedSeries
nodes = json.loads(sys.argv[1])
router = ConsistentHashingRouter(SimpleNamespace(REPLICATION_FACTOR=1, DIVERSE_REPLICAS=False,
                                                 ROUTER_HASH_TYPE=None))
for server, port, instance in nodes:
    router.addDestination((server, port, instance))
out = {}
for path in json.load(sys.stdin):
    # carbon-c-relay 3.7 hashes a tagged path by its name alone (every tag
    # set of a name on one node); carbon's own relay by the whole path.
    key = path.split(";")[0] if sys.argv[2] == "c-relay" else path
    (server, port, instance), = router.getDestinations(key)
    # carbon-cache 1.1.10 names a tagged series' file by its hash (TAG_HASH_FILENAMES).
    name = TaggedSeries.parse(path).path if ";" in path else path
    out[path] = [instance, TaggedSeries.encode(name, os.sep, hash_only=True) + ".wsp"]
json.dump(out, sys.stdout)
"""
OUR_RING = r"""
import json, sys
from server.outputs.ring import ConsistentHashRing
nodes = [tuple(n) for n in json.loads(sys.argv[1])]
ring = ConsistentHashRing(nodes)
json.dump({p: ring.get_node(p)[1] for p in json.load(sys.stdin)}, sys.stdout)
"""


def _unavailable(what):
    if os.environ.get("CI") == "true":
        pytest.fail("%s is needed and could not be installed (CI=true never skips)" % (what,))
    pytest.skip("%s is not available" % (what,))


def ensure_relay():
    relay = shutil.which("carbon-c-relay")
    if relay:
        return relay
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "carbon-c-relay"],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "carbon-c-relay"],
                           capture_output=True, env=env)
    relay = shutil.which("carbon-c-relay")
    if not relay:
        _unavailable("carbon-c-relay (apt-get install carbon-c-relay)")
    return relay


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """
    Two carbon-caches (instances a and b) and what is needed to start relays.
    """
    relay = ensure_relay()
    try:
        venv = references.ensure_carbon(CACHE, log=lambda line: None)
    except references.InstallError as e:
        _unavailable("carbon 1.1.10 (%s)" % (e,))
    work = tmp_path_factory.mktemp("cluster")
    caches = {}
    try:
        for instance in ("a", "b"):
            cache = Carbon(str(work / ("cache-" + instance)), None, venv, schemas=SCHEMAS)
            cache.start()
            caches[instance] = cache
        yield Cluster(relay, venv, caches, work)
    finally:
        for cache in caches.values():
            cache.stop()


class Cluster:
    def __init__(self, relay, venv, caches, work):
        self.relay_binary = relay
        self.venv = venv
        self.caches = caches
        self.work = work
        self.whisper = references.load_whisper(venv)
        self.relays = 0

    def nodes(self):
        return [["127.0.0.1", self.caches[i].line_port, i] for i in sorted(self.caches)]

    def start_relay(self, port):
        """
        A relay on C{port}: carbon_ch over the caches, and a dump file.
        """
        self.relays += 1
        dump = str(self.work / ("relay-%d.dump" % self.relays))
        conf = str(self.work / ("relay-%d.conf" % self.relays))
        members = "\n".join("        127.0.0.1:%d=%s" % (p, i) for _, p, i in self.nodes())
        with open(conf, "w") as f:
            f.write("listen type linemode 127.0.0.1:%d proto tcp 127.0.0.1:%d proto udp ;\n"
                    "cluster caches carbon_ch\n%s\n    ;\n"
                    "cluster dump file %s ;\n"
                    "statistics submit every 60 seconds send to dump ;\n"
                    "match * send to caches dump stop ;\n" % (port, port, members, dump))
        process = Process([self.relay_binary, "-f", conf, "-w", "2"],
                          str(self.work / ("relay-%d.log" % self.relays)))
        process.start()

        def listening():
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        process.wait_ready(listening, 20, "carbon-c-relay")
        process.dump = dump
        return process

    def carbon_placement(self, paths, relay="carbon"):
        """
        C{{path: [instance, whisper file]}}: where carbon's router puts each
        path (as carbon-c-relay does it with C{relay="c-relay"}).
        """
        done = subprocess.run([os.path.join(self.venv, "bin", "python"), "-c", CARBON_HELPER,
                               json.dumps(self.nodes()), relay], input=json.dumps(sorted(paths)),
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    def read(self, instance, relative, start, end):
        """
        C{{timestamp: value}} of one whisper file of a cache, or None.
        """
        path = os.path.join(self.caches[instance].whisper_dir, relative)
        if not os.path.exists(path):
            return None
        (first, _, step), values = self.whisper.fetch(path, start - STEP, end + STEP,
                                                      now=int(time.time()))
        return {first + k * step: v for k, v in enumerate(values) if v is not None}


def read_dump(path):
    """
    C{Counter((path, timestamp))} of the lines the relay got.
    """
    out = Counter()
    values = {}
    if not os.path.exists(path):
        return out, values
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and "e2e" in parts[0]:
                key = (parts[0], int(float(parts[2])))
                out[key] += 1
                values[key] = float(parts[1])
    return out, values


def server_for(tmp_path, relay_port, *extra):
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", [
        "--forward", "carbon://127.0.0.1:%d" % relay_port, "--forward-names", "both",
        "--late-grace", "1", "--rollup-interval", "0.5", "--forward-reconnect-max", "2",
        *extra])
    return server


def send_traffic(server, prefix, i):
    """
    One round of statsd and TCP points under C{prefix}.
    """
    server.send_udp(b"%s.req:1|c\n%s.lat:%d|ms\n%s.lat:%d|ms\n%s.temp:%d|g\n%s.users:u%d|s\n"
                    b"%s.hits,host=web%d:2|c" % (
                        prefix, prefix, 10 + i % 7, prefix, 40 + i % 3, prefix, 20 + i % 5,
                        prefix, i % 4, prefix, i % 2))
    with server.connect() as conn:
        conn.read_line()
        conn.request(b'["%s.tcp", null, %d]' % (prefix, i % 9))


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError("timed out waiting for %s" % (what,))


def drained(server):
    (destination,) = server.get_json("/api/health")["forward"]["destinations"]
    return destination["connected"] and destination["queued_lines"] == 0


def render(server, paths, start, end):
    """
    C{{(path, timestamp): value}} of SimpleStats' own /render.
    """
    out = {}
    paths = sorted(paths)
    for first in range(0, len(paths), 40):
        params = [("target", p) for p in paths[first:first + 40]]
        params += [("from", str(start - STEP)), ("until", str(end + STEP)), ("format", "json")]
        status, _, body = server.http("GET", "/render?" + urllib.parse.urlencode(params))
        assert status == 200, body
        for series in json.loads(body):
            for value, ts in series["datapoints"]:
                if value is not None:
                    out[(series["target"], ts)] = value
    return out


def check_cluster(cluster, server, dump_counts, dump_values, start, end):
    """
    Every forwarded (path, bucket) is in exactly one cache, the one
    carbon's router picks, with SimpleStats' /render value.
    """
    paths = {p for p, _ in dump_counts}
    placement = cluster.carbon_placement(paths, "c-relay")
    expected = render(server, paths, start, end)
    # What /render shows for the closed buckets is what was forwarded.
    closed = {k: v for k, v in expected.items() if k[1] + STEP + 1 <= end}
    missing = set(closed) - set(dump_counts)
    assert not missing, "closed buckets never forwarded: %s" % sorted(missing)[:10]

    def stored():
        problems = []
        files = {}
        for path in paths:
            instance, relative = placement[path]
            for other in cluster.caches:
                got = cluster.read(other, relative, start, end)
                if other != instance:
                    if got:
                        problems.append("%s is in cache %s, carbon places it in %s"
                                        % (path, other, instance))
                else:
                    files[path] = got or {}
        for (path, ts), value in dump_values.items():
            got = files.get(path, {}).get(ts)
            if got is None:
                problems.append("%s at %d not in whisper" % (path, ts))
            elif abs(got - expected.get((path, ts), float("nan"))) > 1e-9 * max(1, abs(got)):
                problems.append("%s at %d: whisper %r, /render %r"
                                % (path, ts, got, expected.get((path, ts))))
        return problems

    problems = []

    def settled():
        problems[:] = stored()
        return not problems
    try:
        wait_for(settled, 30, "carbon-cache to write the whisper files")
    except AssertionError:
        raise AssertionError("; ".join(problems[:10]))
    return placement


def test_forwarded_into_the_cluster(cluster, tmp_path):
    """Every closed bucket is in exactly one cache, where carbon hashes it, with /render's value."""
    relay_port = free_port()
    relay = cluster.start_relay(relay_port)
    server = server_for(tmp_path, relay_port)
    try:
        server.start()
        start = int(time.time())
        rounds = 0
        while time.time() < start + 3 * STEP:
            send_traffic(server, b"e2e.basic", rounds)
            rounds += 1
            time.sleep(0.25)
        end = int(time.time())
        # The last bucket closes 1 s (late grace) after it ends.
        time.sleep(STEP - end % STEP + 2)
        wait_for(lambda: drained(server), 20, "the queue to drain")
        wait_for(lambda: read_dump(relay.dump)[0], 10, "the relay's dump")
        time.sleep(1)
        counts, values = read_dump(relay.dump)
        assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1][:10]
        paths = {p for p, _ in counts}
        # Both naming schemes, tagged series as Graphite 1.1 tags.
        for path in ("e2e.basic.req.count", "stats.counters.e2e.basic.req.count",
                     "stats_counts.e2e.basic.req", "e2e.basic.lat.p99",
                     "stats.timers.e2e.basic.lat.upper_99", "e2e.basic.temp.last",
                     "stats.gauges.e2e.basic.temp", "stats.sets.e2e.basic.users.count",
                     "e2e.basic.hits.count;host=web0", "e2e.basic.tcp.mean"):
            assert path in paths, path
        # Independent of /render: the counter's buckets add up to what was sent.
        assert sum(v for (p, _), v in values.items() if p == "e2e.basic.req.count") == rounds
        check_cluster(cluster, server, counts, values, start, int(time.time()))
        server.stop()
    finally:
        server.close()
        relay.stop()


def test_placement_equals_carbon_for_10k_paths(cluster):
    """Our ring places 10k paths where carbon 1.1.10's ConsistentHashingRouter does."""
    rng = random.Random(17)
    paths = ["e2e.%s.%d.%s" % (rng.choice(["web", "db", "api"]), rng.randrange(1000),
                               rng.choice(["count", "p99", "rate", "mean"])) for _ in range(9990)]
    paths += ["e2e.tagged.count;host=web%d" % i for i in range(10)]
    theirs = {p: v[0] for p, v in cluster.carbon_placement(paths).items()}
    nodes = [[host, instance] for host, _, instance in cluster.nodes()]
    done = subprocess.run([sys.executable, "-c", OUR_RING, json.dumps(nodes)], cwd=REPO_ROOT,
                          input=json.dumps(paths), capture_output=True, text=True, check=True)
    ours = json.loads(done.stdout)
    assert len(theirs) == len(set(paths))
    assert ours == theirs
    assert set(ours.values()) == {"a", "b"}


def test_udp_destination(cluster, tmp_path):
    """carbon+udp:// sends every closed bucket as datagrams of whole lines."""
    relay_port = free_port()
    relay = cluster.start_relay(relay_port)
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", [
        "--forward", "carbon+udp://127.0.0.1:%d" % relay_port, "--late-grace", "1",
        "--rollup-interval", "0.5"])
    try:
        server.start()
        start = int(time.time())
        rounds = 0
        while time.time() < start + 2 * STEP:
            send_traffic(server, b"e2e.udp", rounds)
            rounds += 1
            time.sleep(0.25)
        end = int(time.time())
        time.sleep(STEP - end % STEP + 2)
        (destination,) = server.get_json("/api/health")["forward"]["destinations"]
        assert destination["state"] == "sending" and destination["queued_lines"] == 0
        expected = {}

        def arrived():
            counts, values = read_dump(relay.dump)
            paths = {p for p, _ in counts}
            expected.update({k: v for k, v in render(server, paths, start, int(time.time()))
                             .items() if k[1] + STEP + 1 <= end})
            # Every request counted once, the last bucket's too (it closes
            # and reaches the relay's dump a moment after the others).
            sent = sum(v for (p, _), v in values.items() if p == "e2e.udp.req.count")
            return counts and set(expected) <= set(counts) and all(
                values[k] == v for k, v in expected.items()) and sent == rounds
        wait_for(arrived, 20, "the datagrams in the relay's dump")
        counts, _ = read_dump(relay.dump)
        assert {p for p, _ in counts} >= {"e2e.udp.req.count", "e2e.udp.lat.p99",
                                           "e2e.udp.hits.count;host=web1"}
        server.stop()
    finally:
        server.close()
        relay.stop()


def test_hash_mode_in_front_of_caches(cluster, tmp_path):
    """In hash mode SimpleStats places each path in the cache carbon's own relay would."""
    args = []
    for host, port, instance in cluster.nodes():
        args += ["--forward", "carbon://%s:%d?instance=%s" % (host, port, instance)]
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", args + [
        "--forward-mode", "hash", "--forward-names", "both", "--late-grace", "1",
        "--rollup-interval", "0.5"])
    try:
        server.start()
        start = int(time.time())
        rounds = 0
        while time.time() < start + 2 * STEP:
            send_traffic(server, b"e2e.hash", rounds)
            rounds += 1
            time.sleep(0.25)
        end = int(time.time())
        time.sleep(STEP - end % STEP + 2)

        def all_drained():
            destinations = server.get_json("/api/health")["forward"]["destinations"]
            return all(d["connected"] and d["queued_lines"] == 0 for d in destinations)
        wait_for(all_drained, 20, "the queues to drain")
        listing = server.get_json("/metrics/find", {"query": "e2e.hash.*"})
        assert listing
        # What /render has for the e2e.hash series, by every path they go under.
        names = ["e2e.hash.req", "e2e.hash.lat", "e2e.hash.temp", "e2e.hash.users",
                 "e2e.hash.tcp"]
        paths = set()
        for name in names:
            for found in server.get_json("/metrics/find", {"query": name + ".*"}):
                paths.add(found["id"])
            paths.add(name)
        paths |= {"stats.counters.e2e.hash.req.count", "stats.timers.e2e.hash.lat.upper_99",
                  "stats.gauges.e2e.hash.temp", "e2e.hash.hits.count;host=web0",
                  "e2e.hash.hits;host=web1"}
        now = int(time.time())
        expected = {k: v for k, v in render(server, paths, start, now).items()
                    if k[1] + STEP + 1 <= end}
        assert {p for p, _ in expected} == paths
        placement = cluster.carbon_placement(paths, "carbon")
        assert {instance for instance, _ in placement.values()} == {"a", "b"}

        def stored():
            for (path, ts), value in expected.items():
                instance, relative = placement[path]
                for other in cluster.caches:
                    got = cluster.read(other, relative, start, now)
                    if other == instance and (got or {}).get(ts) != value:
                        return False
                    if other != instance and got:
                        raise AssertionError("%s is in cache %s, carbon places it in %s"
                                             % (path, other, instance))
            return True
        wait_for(stored, 30, "every bucket in the cache carbon places it in")
        server.stop()
    finally:
        server.close()


def test_outage_and_kill(cluster, tmp_path):
    """The relay stopped 30 s mid-stream, SimpleStats killed -9 meanwhile: every bucket arrives, once."""
    relay_port = free_port()
    relay = cluster.start_relay(relay_port)
    server = server_for(tmp_path, relay_port)
    dumps = [relay.dump]
    try:
        server.start()
        start = int(time.time())
        rounds = 0

        def traffic(seconds):
            nonlocal rounds
            until = time.time() + seconds
            while time.time() < until:
                send_traffic(server, b"e2e.outage", rounds)
                rounds += 1
                time.sleep(0.25)

        traffic(7)
        relay.stop()
        outage_began = time.time()
        traffic(14)
        (destination,) = server.get_json("/api/health")["forward"]["destinations"]
        assert not destination["connected"]
        assert destination["queued_lines"] > 0, destination
        server.kill()  # with lines queued on disk
        server.start()
        traffic(30 - (time.time() - outage_began))
        relay = cluster.start_relay(relay_port)
        dumps.append(relay.dump)
        traffic(6)
        end = int(time.time())
        time.sleep(STEP - end % STEP + 2)
        wait_for(lambda: drained(server), 30, "the queue to drain")
        time.sleep(1)
        counts, values = Counter(), {}
        for dump in dumps:
            c, v = read_dump(dump)
            counts.update(c)
            values.update(v)
        # Closed once the relay had stopped (while it was down, then after):
        # once each.  Before the stop a repeat is allowed, of what was sent
        # in the confirm window (--forward-confirm-seconds) before it.
        during = {k: n for k, n in counts.items() if k[1] + STEP + 1 > outage_began + 0.5}
        assert len({ts for _, ts in during}) >= 6
        assert all(n == 1 for n in during.values()), sorted(
            k for k, n in during.items() if n > 1)[:10]
        check_cluster(cluster, server, counts, values, start, int(time.time()))
        server.stop()
    finally:
        server.close()
        relay.stop()
