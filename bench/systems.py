"""
The systems under test, each behind the same small interface so that every
one is started, pinned, loaded, counted and measured the same way.

A L{System} starts one server process on free loopback ports and counts back
what it received for a step.  L{Ceiling}, L{Statsd} and L{SimpleStats} take
statsd over UDP; L{Carbon} and L{SimpleStats} take points over TCP.
"""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error

from bench import counting, procstat

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


def free_port(kind=socket.SOCK_STREAM):
    """
    A loopback port nobody listens on right now (TCP and UDP both free).
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port found")


class StartError(RuntimeError):
    """
    A server did not come up; the message holds the end of its log.
    """


class Process:
    """
    One server process, started in its own session, its output in a log
    file, pinned to C{core} with C{taskset} when C{core} is not None.
    """

    def __init__(self, argv, log_path, core=None, cwd=None, env=None, realtime=False):
        self.argv = list(argv)
        self.log_path = log_path
        self.core = core
        self.realtime = realtime
        self.cwd = cwd
        self.env = env
        self.popen = None

    @property
    def pid(self):
        return self.popen.pid

    def start(self):
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                procstat.pinned(self.argv, self.core, self.realtime), cwd=self.cwd, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, size=3000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cpu_seconds(self):
        return procstat.cpu_seconds(self.pid)

    def memory(self):
        return procstat.memory(self.pid)

    def stop(self, timeout=15.0):
        """
        SIGTERM, then SIGKILL after C{timeout}.  Only this process (and its
        own session) is signalled.

        @return: seconds the process took to exit after SIGTERM.
        """
        if self.popen is None or self.popen.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise
            self.popen.wait(5)
        return time.monotonic() - started

    def wait_ready(self, probe, timeout, what):
        """
        Call C{probe()} until it returns true without raising.
        """
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError("%s exited during start-up (code %s):\n%s"
                                 % (what, self.popen.returncode, self.log_tail()))
            try:
                if probe():
                    return
            except (OSError, ValueError, urllib.error.URLError) as e:
                last_error = e
            time.sleep(0.05)
        raise StartError("%s not ready after %.0f s (%s):\n%s"
                         % (what, timeout, last_error, self.log_tail()))


class Step:
    """
    What one load step sends: its distinct name prefix and its shape (a kind
    of L{bench.shapes}: C{real}, C{counters} or C{mix}).
    """

    def __init__(self, prefix, per_packet, kind, started=None):
        self.prefix = prefix
        self.per_packet = per_packet
        self.kind = kind
        self.started = time.time() if started is None else started

    @property
    def name_prefix(self):
        return "bench.%s." % self.prefix


class System:
    """
    A server under test.

    @cvar settle: seconds the count may stay still before a step is judged.
    """

    name = "system"
    settle = 0.5
    settle_timeout = 30.0
    ALL_KINDS = frozenset({"c", "ms", "g", "s"})

    def __init__(self, workdir, core, realtime=False):
        self.workdir = workdir
        self.core = core
        self.realtime = realtime
        self.process = None
        os.makedirs(workdir, exist_ok=True)

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        raise NotImplementedError

    def stop(self):
        if self.process is not None:
            return self.process.stop()
        return 0.0

    def count(self, step):
        """
        A number that grows by one for each line of C{step} that arrived
        (a running total: the harness reads it before and after the step).
        """
        raise NotImplementedError

    def countable(self, step):
        """
        The statsd kinds (C{c}, C{ms}, C{g}, C{s}) whose lines L{count}
        counts for C{step}; loss is measured over these.
        """
        return self.ALL_KINDS

    def counted_as(self, step):
        """
        What L{count} reads for C{step}, in words (for the results).
        """
        return "lines"

    def settle_seconds(self, step):
        return self.settle

    def diagnostics(self):
        """
        Running totals worth keeping per step (their change is recorded),
        e.g. lines the server found bad.
        """
        return {}

    def forget(self, step):
        """
        Drop what C{step} left behind that a real deployment would not keep
        (called after the step is counted and its CPU measured).
        """

    def versions(self):
        return {}


class Ceiling(System):
    """
    bench/ceiling_server.py: split and count, nothing else.
    """

    name = "ceiling"

    def __init__(self, workdir, core, python, realtime=False):
        System.__init__(self, workdir, core, realtime)
        self.python = python

    def start(self):
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.count_port = free_port()
        self.process = Process(
            [self.python, os.path.join(BENCH_DIR, "ceiling_server.py"),
             "--udp-port", str(self.udp_port), "--count-port", str(self.count_port)],
            os.path.join(self.workdir, "ceiling.log"), self.core, cwd=REPO_ROOT,
            realtime=self.realtime)
        self.process.start()
        self.process.wait_ready(lambda: self.lines() >= 0, 30, "ceiling server")

    def lines(self):
        from bench.ceiling_server import parse_count_answer
        return parse_count_answer(counting.ask_tcp(self.count_port, b"", None))[0]

    def count(self, step):
        return self.lines()

    def versions(self):
        return _python_version(self.python)


class Statsd(System):
    """
    Etsy statsd 0.9.0 on node, with no backend and a flush that never comes,
    so its counters only grow; read over its management port.
    """

    name = "statsd"

    def __init__(self, workdir, core, stats_js, node="node", realtime=False):
        System.__init__(self, workdir, core, realtime)
        self.stats_js = stats_js
        self.node = node

    def start(self):
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.mgmt_port = free_port()
        config_path = os.path.join(self.workdir, "statsd-config.js")
        with open(config_path, "w") as f:
            f.write(statsd_config(self.udp_port, self.mgmt_port))
        self.process = Process(
            [self.node, self.stats_js, config_path],
            os.path.join(self.workdir, "statsd.log"), self.core, cwd=self.workdir,
            realtime=self.realtime)
        self.process.start()
        self.process.wait_ready(
            lambda: "statsd.metrics_received" in counting.statsd_counters(self.mgmt_port),
            30, "statsd")

    def count(self, step):
        counters = counting.statsd_counters(self.mgmt_port)
        if step.kind != "counters":
            # Timers, gauges and sets are not counters, and a sampled
            # counter counts ten: count every line.
            return counters["statsd.metrics_received"]
        return counting.sum_prefixed(counters, step.name_prefix)

    def counted_as(self, step):
        if step.kind != "counters":
            return "statsd.metrics_received (lines)"
        return "sum of the step's counters"

    def diagnostics(self):
        counters = counting.statsd_counters(self.mgmt_port)
        return {"bad_lines_seen": counters.get("statsd.bad_lines_seen", 0)}

    def forget(self, step):
        # Statsd keeps every timer value until a flush, and this config never
        # flushes (a flush resets the counters the harness reads).  In
        # production a flush every 10 s bounds them; left to pile up over a
        # search they slow statsd down, so each step's timers are deleted.
        counting.ask_tcp(self.mgmt_port, ("deltimers %s*\n" % step.name_prefix).encode(),
                         b"END\n\n")

    def versions(self):
        package = os.path.join(os.path.dirname(self.stats_js), "package.json")
        with open(package) as f:
            version = json.load(f)["version"]
        node = subprocess.run([self.node, "--version"], capture_output=True, text=True)
        return {"statsd": version, "node": node.stdout.strip()}


def statsd_config(udp_port, mgmt_port):
    """
    A statsd 0.9.0 config that only counts: no backend (C{backends: []}
    loads none, where a missing key would load graphite), a flush interval
    of about 11 days so counters are never reset, and loopback only.
    """
    return ("{\n  port: %d,\n  address: \"127.0.0.1\",\n  mgmt_port: %d,\n"
            "  mgmt_address: \"127.0.0.1\",\n  backends: [],\n"
            "  flushInterval: 1000000000,\n  deleteCounters: false,\n"
            "  automaticConfigReload: false\n}\n" % (udp_port, mgmt_port))


class SimpleStats(System):
    """
    The server under test, started as its contract says.

    Real steps are counted by the lines the server says it received over
    UDP (L{received_lines}), as statsd's C{metrics_received} and the
    ceiling count them.  Best-case steps are counted from the step's own
    series: counters by their C{count}, timers by their C{count} and gauges
    by their C{updates}; a set's points say only how many distinct members
    it saw, so set lines are sent but not counted there.
    """

    name = "simplestats"
    # /api/series includes the open 5 s bucket, so counts show at once;
    # give a backlog in the socket and the reactor time to drain.
    settle = 1.0
    # The server emits its own counters every 5 s (after the 1 s tick that
    # finds 5 s passed): the received count can stay still that long.
    emitted_settle = 7.0
    settle_timeout = 40.0
    FIELDS = {"counter": "count", "timer": "count", "gauge": "updates"}
    SERIES_KINDS = frozenset({"c", "ms", "g"})
    # The server's own counters whose sum is every statsd line it read.
    RECEIVED = ("simplestats.udp.points", "simplestats.udp.bad")

    def __init__(self, workdir, core, python, extra_args=(), realtime=False, repo=REPO_ROOT):
        System.__init__(self, workdir, core, realtime)
        self.python = python
        self.extra_args = list(extra_args)
        # The checkout whose server/ runs (e.g. a copy of a commit, away
        # from edits in progress).
        self.repo = repo

    @property
    def log_path(self):
        return os.path.join(self.workdir, "simplestats.log")

    def launch(self, data_dir=None, same_ports=False):
        """
        Start the server process and return at once (L{start} waits for it).

        @param data_dir: the data directory (default: C{<workdir>/data}).
        @param same_ports: listen on the ports of the previous start (a
            restart), instead of new free ones.
        """
        if not same_ports:
            self.udp_port = free_port(socket.SOCK_DGRAM)
            self.tcp_port = free_port()
            self.http_port = free_port()
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.started_at = time.monotonic()
        self.process = Process(
            [self.python, "-m", "server.main", "--tcp-port", str(self.tcp_port),
             "--udp-port", str(self.udp_port), "--http-port", str(self.http_port),
             "--bind", "127.0.0.1", "--data-dir", self.data_dir] + self.extra_args,
            self.log_path, self.core, cwd=self.repo, realtime=self.realtime,
            # No Graphite port 2003 (a server that has none ignores these).
            env=dict(os.environ, SIMPLESTATS_CARBON_PORT="0", SIMPLESTATS_CARBON_UDP_PORT="0"))
        self.process.start()
        self.started_wall = time.time()

    def start(self, data_dir=None, timeout=120.0):
        self.launch(data_dir)
        self.process.wait_ready(self.healthy, timeout, "simplestats")
        self.ready_seconds = time.monotonic() - self.started_at
        self.live_received = _health_received(self.api("/api/health")) is not None

    def healthy(self):
        return self.api("/api/health").get("status") == "ok"

    def received_lines(self):
        """
        Every statsd line the server read since it started, good or bad.

        From C{/api/health}'s C{received.udp_lines} when the server has it
        (at once); else the sum of its own series C{simplestats.udp.points}
        (lines accepted) and C{simplestats.udp.bad} (lines refused), which it
        emits every 5 s from its counters, so a count lags up to 6 s.
        """
        if self.live_received:
            return _health_received(self.api("/api/health"))
        total = 0
        for name in self.RECEIVED:
            try:
                total += self.series_count(name, self.started_wall, "count")
            except urllib.error.HTTPError as e:
                # No bad line yet: no series.
                if e.code != 404:
                    raise
        return int(total)

    def api(self, path, **params):
        return counting.http_json(self.http_port, path, params)

    def series_count(self, name, since, field, tags=None):
        """
        The sum of C{field} over every 5 s point of one series (C{tags}: a
        dict, or None) since C{since}.
        """
        params = {"from": "%d" % (since - 30), "until": "now"}
        if tags:
            params["tags"] = ",".join("%s:%s" % kv for kv in sorted(tags.items()))
        answer = self.api("/api/series", name=name, resolution="5s", fields=field, **params)
        return counting.series_total(answer, field)

    def countable(self, step):
        return self.ALL_KINDS if step.kind == "real" else self.SERIES_KINDS

    def counted_as(self, step):
        if step.kind != "real":
            return "the step's series: counters' and timers' count, gauges' updates"
        if self.live_received:
            return "/api/health received.udp_lines"
        return "simplestats.udp.points + simplestats.udp.bad (emitted every 5 s)"

    def settle_seconds(self, step):
        if step.kind == "real" and not self.live_received:
            return self.emitted_settle
        return self.settle

    def count(self, step):
        if step.kind == "real":
            return self.received_lines()
        try:
            listing = self.api("/api/metrics", filter=step.name_prefix + "*", limit="100000")
        except urllib.error.HTTPError:
            return 0
        total = 0
        for metric in listing.get("metrics", []):
            field = self.FIELDS.get(metric.get("type"))
            if field is None:
                continue
            try:
                total += self.series_count(metric["name"], step.started, field)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
        return int(total)

    def versions(self):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=self.repo,
                              capture_output=True, text=True)
        return dict(_python_version(self.python), git=head.stdout.strip() or None)


def _health_received(health):
    """
    C{received.udp_lines} of an C{/api/health} answer, or None when the
    server does not report it.
    """
    received = health.get("received")
    if isinstance(received, dict) and isinstance(received.get("udp_lines"), (int, float)):
        return int(received["udp_lines"])
    return None


class Carbon(System):
    """
    Graphite's carbon-cache 1.1.10 writing whisper files, with its limits
    opened up (no cap on updates, creates or cache) so it runs as fast as
    it can.
    """

    name = "carbon"

    def __init__(self, workdir, core, venv, realtime=False, schemas=None):
        System.__init__(self, workdir, core, realtime)
        self.venv = venv
        # storage-schemas.conf (the oracle tests keep 5s:6h,1m:8d).
        self.schemas = CARBON_SCHEMAS if schemas is None else schemas

    @property
    def whisper_dir(self):
        return os.path.join(self.workdir, "storage", "whisper")

    def start(self):
        self.line_port = free_port()
        self.query_port = free_port()
        conf_dir = os.path.join(self.workdir, "conf")
        os.makedirs(conf_dir, exist_ok=True)
        with open(os.path.join(conf_dir, "carbon.conf"), "w") as f:
            f.write(carbon_conf(os.path.join(self.workdir, "storage"), self.line_port,
                                self.query_port))
        with open(os.path.join(conf_dir, "storage-schemas.conf"), "w") as f:
            f.write(self.schemas)
        env = dict(os.environ, GRAPHITE_ROOT=self.workdir, GRAPHITE_CONF_DIR=conf_dir,
                   GRAPHITE_STORAGE_DIR=os.path.join(self.workdir, "storage"))
        python = os.path.join(self.venv, "bin", "python")
        script = os.path.join(self.venv, "bin", "carbon-cache.py")
        self.process = Process(
            [python, script, "--config", os.path.join(conf_dir, "carbon.conf"),
             "--nodaemon", "start"],
            os.path.join(self.workdir, "carbon.log"), self.core, cwd=self.workdir, env=env,
            realtime=self.realtime)
        self.process.start()
        self.process.wait_ready(self._listening, 60, "carbon-cache")

    def _listening(self):
        with socket.create_connection(("127.0.0.1", self.line_port), timeout=1):
            return True

    def versions(self):
        out = subprocess.run([os.path.join(self.venv, "bin", "python"), "-m", "pip", "freeze"],
                             capture_output=True, text=True)
        wanted = ("carbon", "whisper", "twisted")
        return {line.split("==")[0].lower(): line.split("==")[1]
                for line in out.stdout.splitlines()
                if "==" in line and line.split("==")[0].lower() in wanted}


# One-second points kept six hours: room for the TCP load's timestamps.
CARBON_SCHEMAS = "[bench]\npattern = .*\nretentions = 1s:6h\n"


def carbon_conf(storage, line_port, query_port):
    """
    carbon.conf for one carbon-cache on loopback: plaintext receiver only,
    every rate limit off, no per-update logging.
    """
    return "\n".join([
        "[cache]",
        "STORAGE_DIR = %s" % storage,
        "LOCAL_DATA_DIR = %s/whisper" % storage,
        "LOG_DIR = %s/log" % storage,
        "PID_DIR = %s" % storage,
        "LINE_RECEIVER_INTERFACE = 127.0.0.1",
        "LINE_RECEIVER_PORT = %d" % line_port,
        "PICKLE_RECEIVER_PORT = 0",
        "ENABLE_UDP_LISTENER = False",
        "CACHE_QUERY_INTERFACE = 127.0.0.1",
        "CACHE_QUERY_PORT = %d" % query_port,
        "MAX_CACHE_SIZE = inf",
        "MAX_UPDATES_PER_SECOND = inf",
        "MAX_CREATES_PER_MINUTE = inf",
        "USE_FLOW_CONTROL = True",
        "LOG_UPDATES = False",
        "LOG_CREATES = False",
        "LOG_CACHE_HITS = False",
        "LOG_CACHE_QUEUE_SORTS = False",
        "LOG_LISTENER_CONN_SUCCESS = False",
        "",
    ])


def _python_version(python):
    out = subprocess.run([python, "-c", "import sys, twisted; print(sys.version.split()[0], "
                          "twisted.__version__)"], capture_output=True, text=True)
    fields = out.stdout.split()
    if len(fields) != 2:
        return {"python": None, "twisted": None}
    return {"python": fields[0], "twisted": fields[1]}


def default_python():
    """
    The repo's C{.venv/bin/python} when it exists, else this interpreter.
    """
    venv = os.path.join(REPO_ROOT, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable
