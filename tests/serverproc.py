"""
Run the real server in a child process for end-to-end tests.

    server = ServerProcess(data_dir, log_path, ["--max-line-length", "64"])
    server.start()          # waits for the "SimpleStats ready" line
    with server.connect() as conn:          # the TCP tuple port
        conn.read_line()                    # b"--Hint: ...\\r\\n"
        conn.request(b'["cpu", null, 1]')   # b"--OK\\r\\n"
    server.get_json("/api/health")          # or server.http(...), server.send_udp(...)
    server.kill()           # SIGKILL, as in a crash
    server.start()          # again, on the same data directory
    server.stop()           # SIGTERM, asserts exit status 0

The test process never runs a reactor: it talks to the child with blocking
sockets and urllib.  Every wait has a deadline, and the child's stdout and
stderr go to one log file that every failure message quotes.
"""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

READY = re.compile(
    r"SimpleStats ready: tcp=(?P<host>[^:\s]+):(?P<tcp>\d+) udp=[^:\s]+:(?P<udp>\d+) "
    r"http=[^:\s]+:(?P<http>\d+) data_dir=(?P<data_dir>\S+) pid=(?P<pid>\d+)"
)

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
POLL = 0.02
# How much of the log an error message quotes.
LOG_TAIL = 6000


class ServerError(AssertionError):
    """
    The server did not do what a test needed; the message ends with its log.
    """


class ServerProcess:
    """
    One server, started and stopped any number of times on the same data
    directory (a restart after a kill is the point of the durability tests).

    @ivar tcp_port, udp_port, http_port: the ports of the current run,
        read from its ready line.
    @ivar returncode: the exit status of the last run once it has ended.
    @ivar nofile: C{(soft, hard)} open files limit for the child (as
        C{ulimit -n} under systemd), or L{None} to inherit ours.
    """

    nofile = None

    def __init__(self, data_dir, log_path, args=(), env=None, python=None, cwd=None):
        self.data_dir = str(data_dir)
        # The child's working directory: the checkout unless told otherwise.
        self.cwd = REPO_ROOT if cwd is None else str(cwd)
        self.log_path = str(log_path)
        self.args = list(args)
        self.env = env
        self.python = python or sys.executable
        self.process = None
        self.returncode = None
        self.host = self.tcp_port = self.udp_port = self.http_port = None
        self.runs = 0
        self._log_offset = 0

    # -- process control ------------------------------------------------------

    def command(self, extra_args=()):
        return [self.python, "-m", "server.main",
                "--tcp-port", "0", "--udp-port", "0", "--http-port", "0",
                # Graphite plaintext off unless a test asks for it: parallel
                # servers must not all take port 2003.
                "--carbon-port", "0", "--carbon-udp-port", "0",
                "--data-dir", self.data_dir, *self.args, *extra_args]

    def spawn(self, extra_args=()):
        """
        Start the child without waiting for it to be ready.
        """
        if self.running:
            raise ServerError("server already running (pid %d)" % (self.process.pid,))
        self.runs += 1
        self.returncode = None
        self.host = self.tcp_port = self.udp_port = self.http_port = None
        argv = self.command(extra_args)
        env = dict(os.environ if self.env is None else self.env)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(("=== run %d: %s\n" % (self.runs, " ".join(argv))).encode())
            log.flush()
            # stdout and stderr share one file, in order.
            self.process = subprocess.Popen(
                argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=None if self.nofile is None else self._limit_files)
        return self.process

    def _limit_files(self):
        resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def start(self, extra_args=(), timeout=START_TIMEOUT):
        """
        Start the server and wait for its ready line; fail (with the log)
        if it exits first or the deadline passes.
        """
        self.spawn(extra_args)
        deadline = time.monotonic() + timeout
        while True:
            match = READY.search(self.log)
            if match:
                self.host = match.group("host")
                self.tcp_port = int(match.group("tcp"))
                self.udp_port = int(match.group("udp"))
                self.http_port = int(match.group("http"))
                if int(match.group("pid")) != self.process.pid:
                    raise self.error("ready line names pid %s, the child is %d"
                                     % (match.group("pid"), self.process.pid))
                return self
            code = self.process.poll()
            if code is not None:
                self.returncode = code
                raise self.error("server exited with status %d before it was ready" % (code,))
            if time.monotonic() > deadline:
                self.kill()
                raise self.error("no ready line within %.0f s" % (timeout,))
            time.sleep(POLL)

    def wait(self, timeout=STOP_TIMEOUT):
        """
        Wait for the child to exit by itself; returns its exit status.
        """
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self.error("server still running after %.0f s" % (timeout,))
        return self.returncode

    def start_expecting_failure(self, extra_args=(), timeout=START_TIMEOUT):
        """
        Start a server that must refuse to start; returns its exit status.
        """
        self.spawn(extra_args)
        code = self.wait(timeout)
        if READY.search(self.log):
            raise self.error("server became ready, but it should have refused to start")
        return code

    def stop(self, timeout=STOP_TIMEOUT, tracebacks_expected=False):
        """
        SIGTERM, wait for the exit, and assert it was clean (status 0) and
        that this run logged no traceback (unless the test provoked one).
        """
        if not self.running:
            raise self.error("stop(): server is not running (status %r)" % (self.returncode,))
        self.process.send_signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code != 0:
            raise self.error("server exited with status %d after SIGTERM, expected 0" % (code,))
        if not tracebacks_expected and "Traceback" in self.log:
            raise self.error("the server logged a traceback")
        return code

    def kill(self):
        """
        SIGKILL: no shut-down code runs, as in a crash or the OOM killer.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        try:
            self.returncode = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not deliver
            raise self.error("server survived SIGKILL")

    def close(self):
        """
        Teardown: make sure no child outlives the test.
        """
        self.kill()

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self):
        return None if self.process is None else self.process.pid

    # -- the log ------------------------------------------------------------

    @property
    def log(self):
        """
        What the current (or last) run has written so far.
        """
        return self.full_log[self._log_offset:]

    @property
    def full_log(self):
        """
        Everything every run of this server wrote, each run headed by its
        command line.
        """
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def error(self, message):
        text = self.full_log
        if len(text) > LOG_TAIL:
            text = "...\n" + text[-LOG_TAIL:]
        return ServerError("%s\n--- server log (%s) ---\n%s" % (message, self.log_path, text))

    def wait_for_log(self, pattern, timeout=10.0):
        """
        Wait until the current run's log matches C{pattern} (a regular
        expression); returns the match.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log)
            if match:
                return match
            if time.monotonic() > deadline:
                raise self.error("log did not match %r within %.0f s" % (pattern, timeout))
            time.sleep(POLL)

    # -- talking to it ------------------------------------------------------

    @property
    def base_url(self):
        return "http://%s:%d" % (self.host, self.http_port)

    def connect(self, timeout=5.0):
        """
        A L{TupleConnection} to the tuple port.
        """
        return TupleConnection(self.host, self.tcp_port, timeout)

    def send_udp(self, payload):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, (self.host, self.udp_port))

    def http(self, method, path, params=None, body=None, headers=None, timeout=10.0):
        """
        C{(status, headers, body bytes)} of one HTTP request; error statuses
        are returned, not raised.
        """
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, e.read()

    def get_json(self, path, params=None, expect=200):
        status, _, body = self.http("GET", path, params)
        if status != expect:
            raise self.error("GET %s %r: status %d, expected %d: %r"
                             % (path, params, status, expect, body[:500]))
        return json.loads(body)


class TupleConnection:
    """
    A blocking client of the TCP tuple port that reads answers line by line
    (each answer keeps its C{\\r\\n}, so tests can assert exact bytes).
    Every read has a deadline.
    """

    def __init__(self, host, port, timeout=5.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no answer within %.1f s; received so far: %r"
                                 % (self.timeout, self.buffer))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("no answer within %.1f s; received so far: %r"
                                 % (self.timeout, self.buffer))
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
        self.buffer += data

    def read_line(self):
        """
        The next answer line, C{\\r\\n} included; fails at the deadline or
        when the server closes the connection first.
        """
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buffer:
            if self.closed:
                raise AssertionError("connection closed; unterminated data: %r" % (self.buffer,))
            self._fill(deadline)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def request(self, line):
        """
        Send one line (C{\\n} added) and return the answer line.
        """
        self.send(line + b"\n")
        return self.read_line()

    def read_until_closed(self):
        """
        Everything the server sends until it closes the connection.
        """
        deadline = time.monotonic() + self.timeout
        while not self.closed:
            self._fill(deadline)
        data, self.buffer = self.buffer, b""
        return data

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
