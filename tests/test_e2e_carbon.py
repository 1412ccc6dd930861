"""
End to end: Graphite plaintext over real sockets into a real server, read
back through /api/series; then real senders: collectd's write_graphite
plugin (Debian's collectd-core, started here with a config of its own) and
the graphyte client from PyPI, over TCP and UDP, with tags.

collectd is installed with apt-get when it is missing and we are root; in CI
(CI=true) a test that cannot have it fails rather than skip.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import graphyte
import pytest

COLLECTD = "/usr/sbin/collectd"
WAIT = 20.0


def free_port():
    """
    A port free on loopback for both TCP and UDP (Graphite's habit: the
    same number for both), as the server is given it on its command line.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise AssertionError("no port free for both TCP and UDP")


@pytest.fixture(scope="module")
def carbon(tmp_path_factory, request):
    """
    One server with its Graphite ports on (TCP and UDP on one number):
    C{(server, port)}.  Each test sends series of its own names.
    """
    from serverproc import ServerProcess
    directory = tmp_path_factory.mktemp("carbon")
    (directory / "data").mkdir()
    port = free_port()
    server = ServerProcess(directory / "data", directory / "server.log",
                           ["--carbon-port", str(port), "--carbon-udp-port", str(port)])
    request.node._simplestats_servers = [server]
    try:
        server.start()
        server.wait_for_log(r"carbon listening on 127\.0\.0\.1:%d" % (port,))
        server.wait_for_log(r"carbon-udp listening on 127\.0\.0\.1:%d" % (port,))
        yield server, port
        server.stop()
    finally:
        server.close()


def series(server, name, tags=None, fields="count,sum,max"):
    """
    The series' fields summed over the last hour, or L{None} when the
    server does not have it (yet).
    """
    params = {"name": name, "fields": fields}
    if tags:
        params["tags"] = ",".join("%s:%s" % kv for kv in sorted(tags.items()))
    status, _, _ = server.http("GET", "/api/series", params)
    if status == 404:
        return None
    body = server.get_json("/api/series", params)
    result = {"type": body["type"]}
    for field, points in body["fields"].items():
        values = [v for _, v in points if v is not None]
        result[field] = (max(values) if field == "max" else sum(values)) if values else None
    return result


def wait_for(what, check, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("%s: not there after %.0f s" % (what, timeout))
        time.sleep(0.1)


def own_counter(server, name):
    """
    A server's own counter summed over the last hour (emitted every 5 s).
    """
    found = series(server, name, fields="count")
    return 0 if found is None or found["count"] is None else found["count"]


def test_plaintext_over_tcp_with_tags(carbon):
    """Lines over TCP, tags and -1 and missing timestamps included, are stored; a bad line is skipped, not fatal."""
    server, port = carbon
    now = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"e2e.carbon.tcp 1.5 %d\n" % (now - 1,))
        sock.sendall(b"e2e.carbon.tcp;host=web1;dc=eu 2 -1\n")
        sock.sendall(b"e2e.carbon.tcp nan %d\n" % (now,))  # bad: counted, the connection stays
        sock.sendall(b"e2e.carbon.tcp;host=web1;dc=eu\t4\r\n")
        sock.sendall(b"e2e.carbon.tcp 3")  # a line cut over two sends
        time.sleep(0.05)
        sock.sendall(b".5 %.3f\n" % (now,))
        wait_for("tcp lines", lambda: (series(server, "e2e.carbon.tcp") or {}).get("count") == 2)
    plain = series(server, "e2e.carbon.tcp")
    assert plain == {"type": "sample", "count": 2, "sum": 5.0, "max": 3.5}
    tagged = series(server, "e2e.carbon.tcp", {"host": "web1", "dc": "eu"})
    assert tagged == {"type": "sample", "count": 2, "sum": 6.0, "max": 4.0}
    server.wait_for_log(r"bad Graphite line from 127\.0\.0\.1:\d+: value nan is not allowed")
    wait_for("simplestats.carbon.bad", lambda: own_counter(server, "simplestats.carbon.bad") >= 1)


def test_plaintext_over_udp_with_tags(carbon):
    """Several lines in one datagram, tags included: the good ones are stored, the bad one counted."""
    server, port = carbon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"e2e.carbon.udp 1 -1\ne2e.carbon.udp;role=db 7\n"
                    b"e2e.carbon.udp;role= 1\ne2e.carbon.udp 2\n", ("127.0.0.1", port))
    wait_for("udp lines", lambda: (series(server, "e2e.carbon.udp") or {}).get("count") == 2)
    assert series(server, "e2e.carbon.udp") == {"type": "sample", "count": 2, "sum": 3.0, "max": 2.0}
    assert series(server, "e2e.carbon.udp", {"role": "db"})["sum"] == 7.0
    server.wait_for_log(r"bad Graphite line 3 from 127\.0\.0\.1:\d+: tag role has an empty value")


def test_a_path_reads_the_series_sent_by_it(carbon):
    """A series sent as srv.latency.max reads back as itself by exact path, brace and glob, and find calls it a leaf, beside srv.latency."""
    server, port = carbon
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"e2e.shared.latency 10 -1\ne2e.shared.latency.max 99 -1\n"
                     b"e2e.shared.latency.count 55 -1\n")
        wait_for("the three series", lambda: all(
            series(server, name) for name in ("e2e.shared.latency", "e2e.shared.latency.max",
                                              "e2e.shared.latency.count")))

    def read(target):
        body = server.get_json("/render", {"target": target, "from": "-5min"})
        names = [s["target"] for s in body]
        assert len(names) == len(set(names)), names
        return {s["target"]: max(v for v, _ in s["datapoints"] if v is not None) for s in body}

    assert read("e2e.shared.latency.max") == {"e2e.shared.latency.max": 99.0}
    assert read("e2e.shared.latency.{max,count}") == {"e2e.shared.latency.max": 99.0,
                                                      "e2e.shared.latency.count": 55.0}
    glob = read("e2e.shared.latency.*")
    assert (glob["e2e.shared.latency.max"], glob["e2e.shared.latency.count"]) == (99.0, 55.0)
    assert glob["e2e.shared.latency.mean"] == 10.0
    nodes = {n["id"]: n for n in server.get_json("/metrics/find",
                                                 {"query": "e2e.shared.latency.*"})}
    assert (nodes["e2e.shared.latency.max"]["leaf"],
            nodes["e2e.shared.latency.max"]["expandable"]) == (1, 1)


def test_graphyte_over_tcp_and_udp_with_tags(carbon):
    """The graphyte client's messages, TCP and UDP, default and per-call tags, land in their series."""
    server, port = carbon
    tcp = graphyte.Sender("127.0.0.1", port=port, prefix="e2e.graphyte", tags={"env": "test"})
    udp = graphyte.Sender("127.0.0.1", port=port, prefix="e2e.graphyte", protocol="udp")
    now = time.time()
    for value in (10, 20, 30):
        tcp.send("latency", value, timestamp=now, tags={"host": "web2"})
    tcp.send("plain", 1.25)
    for value in (1, 2):
        udp.send("udp_latency", value, tags={"host": "web3"})
    wait_for("graphyte tcp", lambda: (series(server, "e2e.graphyte.latency",
                                             {"env": "test", "host": "web2"}) or {}).get("count") == 3)
    assert series(server, "e2e.graphyte.latency", {"env": "test", "host": "web2"}) == {
        "type": "sample", "count": 3, "sum": 60.0, "max": 30.0}
    assert series(server, "e2e.graphyte.plain", {"env": "test"})["sum"] == 1.25
    wait_for("graphyte udp", lambda: (series(server, "e2e.graphyte.udp_latency",
                                             {"host": "web3"}) or {}).get("count") == 2)
    assert series(server, "e2e.graphyte.udp_latency", {"host": "web3"})["sum"] == 3.0


def test_values_as_gauges(make_server):
    """With --carbon-values gauge a plaintext series is a gauge holding the last value."""
    port = free_port()
    server = make_server("--carbon-port", str(port), "--carbon-values", "gauge").start()
    server.wait_for_log(r"carbon listening on 127\.0\.0\.1:%d" % (port,))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"e2e.carbon.gauge 5\ne2e.carbon.gauge 3\n")
    found = wait_for("gauge", lambda: series(server, "e2e.carbon.gauge", fields="last"))
    assert found["type"] == "gauge"
    body = server.get_json("/api/series", {"name": "e2e.carbon.gauge", "fields": "last"})
    assert [v for _, v in body["fields"]["last"] if v is not None][-1] == 3.0
    server.stop()


def test_points_survive_sigkill_once_journaled(make_server):
    """Plaintext points, tags and "now" stamps included, come back from the journal after SIGKILL, exactly as they were."""
    port = free_port()
    server = make_server("--carbon-port", str(port), "--carbon-udp-port", str(port))
    server.start()
    now = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(b"e2e.carbon.kill;host=a %d %.3f\n" % (i, now - i)
                              for i in range(50)))
        sock.sendall(b"e2e.carbon.kill 2.5 -1\ne2e.carbon.kill 4\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"e2e.carbon.kill;host=u 1\ne2e.carbon.kill;host=u 2\n", ("127.0.0.1", port))
    wanted = {(): {"type": "sample", "count": 2, "sum": 6.5, "max": 4.0},
              (("host", "a"),): {"type": "sample", "count": 50, "sum": 1225.0, "max": 49.0},
              (("host", "u"),): {"type": "sample", "count": 2, "sum": 3.0, "max": 2.0}}

    def stored():
        return {tags: series(server, "e2e.carbon.kill", dict(tags)) for tags in wanted}
    wait_for("all the points", lambda: stored() == wanted)
    # The journal has them once its writer ran (within --journal-flush-interval).
    def journaled():
        count = 0
        for name in os.listdir(server.data_dir):
            if name.startswith("journal.") and name.endswith(".log"):
                with open(os.path.join(server.data_dir, name), "rb") as f:
                    count += f.read().count(b"e2e.carbon.kill")
        return count >= 54
    wait_for("the journal write", journaled)
    server.kill()
    server.start()
    assert stored() == wanted
    server.stop()


# -- collectd --------------------------------------------------------------------


def ensure_collectd():
    """
    The collectd binary, installed from Debian's collectd-core when it is
    missing and we may; otherwise skip (fail under CI).
    """
    why = ""
    if not os.access(COLLECTD, os.X_OK) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                      "collectd-core"]):
            done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=600, check=False)
            if done.returncode:
                why = "; %s said: %s" % (" ".join(argv[:2]),
                                         done.stderr.decode(errors="replace")[-500:])
    if not os.access(COLLECTD, os.X_OK):
        message = ("collectd is not installed (apt-get install collectd-core, or run"
                   " scripts/setup.sh with SIMPLESTATS_WITH_COLLECTD=1)" + why)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return COLLECTD


COLLECTD_CONF = """\
Hostname "e2e-host"
FQDNLookup false
BaseDir "{base}"
PIDFile "{base}/collectd.pid"
PluginDir "{plugins}"
TypesDB "{types}"
Interval 1
WriteQueueLimitHigh 10000

LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDOUT
  Timestamp true
</Plugin>
LoadPlugin cpu
LoadPlugin load
LoadPlugin memory
LoadPlugin write_graphite
<Plugin write_graphite>
  <Node "simplestats">
    Host "127.0.0.1"
    Port "{port}"
    Protocol "tcp"
    Prefix "collectd."
    EscapeCharacter "_"
    StoreRates true
    AlwaysAppendDS false
    SeparateInstances false
  </Node>
</Plugin>
"""


def _collectd_paths():
    plugins = None
    for candidate in ("/usr/lib/collectd", "/usr/lib64/collectd"):
        if os.path.exists(os.path.join(candidate, "write_graphite.so")):
            plugins = candidate
    types = "/usr/share/collectd/types.db"
    if plugins is None or not os.path.exists(types):
        raise AssertionError("collectd is installed but its plugins or types.db are missing"
                             " (looked for write_graphite.so and %s)" % (types,))
    return plugins, types


def test_collectd_write_graphite(carbon, tmp_path):
    """A real collectd sending cpu, load and memory through write_graphite: its series appear with sane values."""
    binary = ensure_collectd()
    server, port = carbon
    plugins, types = _collectd_paths()
    conf = tmp_path / "collectd.conf"
    conf.write_text(COLLECTD_CONF.format(base=tmp_path, plugins=plugins, types=types, port=port))
    log_path = tmp_path / "collectd.log"
    start = len(server.log)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([binary, "-f", "-C", str(conf)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        def names():
            body = server.get_json("/api/metrics", {"filter": "collectd.e2e-host.*"})
            return {m["name"]: m for m in body["metrics"]}

        def arrived():
            found = names()
            wanted = ("collectd.e2e-host.load.load.shortterm",
                      "collectd.e2e-host.memory.memory-used")
            # A rate's first reading is "nan": each appears from the second.
            idle = [n for n in found if n.startswith("collectd.e2e-host.cpu-")
                    and n.endswith(".cpu-idle")]
            return found if all(w in found for w in wanted) and idle else None

        try:
            found = wait_for("collectd's series", arrived, timeout=30)
        except AssertionError as e:
            raise AssertionError("%s\n--- collectd log ---\n%s" % (
                e, log_path.read_text(errors="replace")[-3000:]))
        assert process.poll() is None, log_path.read_text(errors="replace")
        memory = series(server, "collectd.e2e-host.memory.memory-used")
        assert memory["type"] == "sample" and memory["count"] >= 1
        assert memory["max"] > 1 << 20  # bytes in use: more than a megabyte
        load = series(server, "collectd.e2e-host.load.load.shortterm")
        assert 0 <= load["max"] < 1000
        for name in found:
            if name.startswith("collectd.e2e-host.cpu-"):
                # Jiffies per second per core and state, Linux counting 100 a second.
                rate = series(server, name)
                assert rate["type"] == "sample" and 0 <= rate["max"] <= 1000, (name, rate)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    # Nothing collectd sent was refused but the "nan" it sends for a rate's
    # first reading (carbon drops those too).
    bad = re.findall(r"bad Graphite line from 127\.0\.0\.1:\d+: (.*)", server.log[start:])
    assert set(bad) <= {"value nan is not allowed: it must be a finite number"}, bad
    assert "refused" not in server.log[start:], server.log[start:]
