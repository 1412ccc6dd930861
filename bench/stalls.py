"""
SimpleStats only: the longest reactor stall during each heavy operation
(issue #11, "No request hangs or stalls the server").

One real server process (C{python -m server.main}, as L{systems.SimpleStats}
starts it) gets a steady statsd load the whole time (the real shape of
L{shapes}, from its own process, paced), N series created over TCP, and then
one heavy operation after the other:

  - filters: C{/(.*)*x/}, C{/(a+)+$/} with a series C{'a' * 30 + '-'}
    present, and a filter of 1000 terms (distinct negated substrings, so
    every term is tried on every series);
  - the export of every series (ndjson, read at full speed);
  - the import of an ndjson file of S MB (rows as the export writes them);
  - start-up: SIGTERM, start again on the same data directory;
  - the periodic snapshot with the N series;
  - a set of many distinct members (TCP set partials), then the snapshot
    that holds it.

For each: the client-side duration, the longest reactor stall the server's
lag monitor saw (the per-second maxima of C{/api/health} C{reactor.seconds},
read back after the operation, over the seconds it spanned), the statsd
lines lost (sent against C{received.udp_lines}), and the server's peak
resident memory during it (C{VmHWM}, reset before each operation through
C{/proc/PID/clear_refs}).  Every request has a deadline: an operation that
passes it is reported C{hung > N s}, and when the server does not answer
C{/api/health} within a few seconds then, it is killed (SIGKILL) and started
again on its data directory for the next operation.

    python bench/stalls.py              # N = 100k series, 50 MB import (~10 min before the fixes)
    python bench/stalls.py --quick      # N = 20k, 10 MB import
    python bench/stalls.py --series 500000 --import-mb 200
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import sys
import time
import urllib.parse

if __package__ in (None, ""):
    # Run as a script: make the bench package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import procstat, recovery, report, shapes, systems  # noqa: E402

TARGET_MS = 100.0
SIZES = {
    "full": {"series": 100_000, "import_mb": 50.0, "set_members": 600_000},
    "quick": {"series": 20_000, "import_mb": 10.0, "set_members": 100_000},
}
# Tuples per TCP batch line: 2000 short tuples stay under the server's
# 64 KiB line limit.
BATCH = 2000
# Set members per TCP set partial (10 bytes each: under the line limit).
SET_BATCH = 5000
CATASTROPHIC_NAME = "a" * 30 + "-"
SERIES_NAME = "bench.s.%07d"
IMPORT_SERIES = 2000
# How long the received count must stand still (sender paused) before a
# count is read: the server drains its socket buffer well within it.
QUIET_SECONDS = 0.3
# After an operation passes its deadline, the server is asked this long for
# /api/health before it is declared hung and killed.
PROBE_SECONDS = 3.0


class Hung(Exception):
    """
    A request passed its deadline.
    """


# -- the background statsd load -------------------------------------------------


class Sender:
    """
    Real-shape statsd lines at a steady rate from a process of their own.

    The sender holds a lock while it sends a chunk and adds to the count, so
    L{pause} (which takes the lock) leaves an exact count of lines sent, and
    nothing is sent until L{resume}.  After a pause the schedule restarts
    (no burst to catch up).
    """

    def __init__(self, port, rate, per_packet, core):
        ctx = multiprocessing.get_context("fork")
        self.lock = ctx.Lock()
        self.sent = ctx.RawValue("q", 0)
        self.errors = ctx.RawValue("q", 0)
        self.stop_flag = ctx.RawValue("b", 0)
        self.ready = ctx.Event()
        self.rate = rate
        self.per_packet = per_packet
        self.paused = False
        self.process = ctx.Process(target=_send_loop, args=(
            port, rate, per_packet, core, self.lock, self.sent, self.errors, self.stop_flag,
            self.ready), daemon=True)

    def start(self):
        self.process.start()
        if not self.ready.wait(120):
            raise RuntimeError("the statsd sender did not start")

    def pause(self):
        if not self.paused:
            self.lock.acquire()
            self.paused = True
        return self.sent.value

    def resume(self):
        if self.paused:
            self.paused = False
            self.lock.release()

    def stop(self):
        self.stop_flag.value = 1
        self.resume()
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _send_loop(port, rate, per_packet, core, lock, sent, errors, stop_flag, ready):
    if core is not None:
        os.sched_setaffinity(0, {core})
    packets, kinds = shapes.build_packets("stl", per_packet, "real", seed=11)
    lines = [sum(k.values()) for k in kinds]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    send = sock.send
    pps = rate / per_packet
    # About 200 chunks a second.
    chunk = max(1, int(pps / 200))
    period = chunk / pps
    count = position = 0
    size = len(packets)
    ready.set()
    due = time.perf_counter()
    while not stop_flag.value:
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        with lock:
            now = time.perf_counter()
            if now - due > 0.05:
                # After a pause (or a stall of this process): no catching up.
                due = now
            for _ in range(chunk):
                try:
                    send(packets[position])
                except OSError:
                    # The server is down (ECONNREFUSED): sent and lost.
                    errors.value += 1
                count += lines[position]
                position += 1
                if position == size:
                    position = 0
            sent.value = count
        due += period
    sock.close()


# -- HTTP with a deadline ------------------------------------------------------------


def http_call(port, method, path, params=None, body=None, deadline=None, headers=None,
              keep=True):
    """
    One request to the server with an overall C{deadline} (monotonic), read
    at full speed.

    @return: C{(status, body or None, {"bytes", "lines", "first_byte"})};
        the body is kept only when C{keep}.
    @raise Hung: the deadline passed.
    """
    url = path + ("?" + urllib.parse.urlencode(params) if params else "")
    began = time.monotonic()

    def remaining():
        left = deadline - time.monotonic()
        if left <= 0:
            raise Hung()
        return left

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=remaining())
    try:
        conn.putrequest(method, url)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body is not None:
            view = memoryview(body)
            for offset in range(0, len(view), 1 << 20):
                conn.sock.settimeout(remaining())
                conn.sock.sendall(view[offset:offset + (1 << 20)])
        conn.sock.settimeout(remaining())
        response = conn.getresponse()
        first_byte = time.monotonic() - began
        parts = []
        total = lines = 0
        while True:
            conn.sock.settimeout(remaining())
            data = response.read1(1 << 20)
            if not data:
                break
            total += len(data)
            lines += data.count(b"\n")
            if keep:
                parts.append(data)
        return response.status, b"".join(parts) if keep else None, {
            "bytes": total, "lines": lines, "first_byte": first_byte}
    except (socket.timeout, TimeoutError):
        raise Hung()
    finally:
        conn.close()


def api_json(port, path, timeout, **params):
    status, body, _ = http_call(port, "GET", path, params, deadline=time.monotonic() + timeout)
    if status != 200:
        raise RuntimeError("%s answered %d: %s" % (path, status, body[:300]))
    return json.loads(body)


# -- data ----------------------------------------------------------------------------


def series_batches(count):
    """
    TCP batch lines creating C{count} counter series (one point each, time
    "now") and the series the catastrophic regular expression is tried on.
    """
    names = [SERIES_NAME % i for i in range(count)] + [CATASTROPHIC_NAME]
    out = []
    for i in range(0, len(names), BATCH):
        out.append(json.dumps([[n, None, "1c"] for n in names[i:i + BATCH]],
                              separators=(",", ":")).encode() + b"\n")
    return out


def set_batches(members, name="bench.hugeset"):
    """
    TCP lines adding C{members} distinct members to one set series, as set
    partials of L{SET_BATCH} members.
    """
    out = []
    for i in range(0, members, SET_BATCH):
        chunk = ["m%07d" % j for j in range(i, min(members, i + SET_BATCH))]
        out.append(json.dumps([name, None, {"type": "s", "members": chunk}],
                              separators=(",", ":")).encode() + b"\n")
    return out


def import_body(megabytes, now, seed=5):
    """
    An ndjson import of about C{megabytes} MB, rows as C{/api/export} writes
    them: L{IMPORT_SERIES} series (40 % counters C{"12c"}, 20 % gauges
    C{"1.5g"}, 40 % timers as partial aggregates), every fourth tagged, one
    point a minute going back from C{now}, newest first.

    @return: C{(body bytes, rows)}.
    """
    rng = random.Random(seed)
    target = int(megabytes * 1e6)
    base = int(now // 60) * 60
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    kinds = ("c", "c", "g", "ms", "ms")
    names = ["bench.imp.%s.%04d" % (kinds[i % 5], i) for i in range(IMPORT_SERIES)]
    parts = []
    size = rows = 0
    while size < target:
        i = rows % IMPORT_SERIES
        ts = base - 60 * (rows // IMPORT_SERIES + 1)
        kind = kinds[i % 5]
        if kind == "c":
            value = "%dc" % rng.randint(1, 5000)
        elif kind == "g":
            value = "%.3fg" % rng.uniform(0, 100)
        else:
            count = rng.randint(1, 60)
            low = round(rng.uniform(1, 20), 3)
            high = round(low + rng.uniform(0, 400), 3)
            value = {"type": "ms", "count": count, "sum": round((low + high) / 2 * count, 3),
                     "min": low, "max": high}
        item = [names[i], ts, value]
        if i % 4 == 0:
            item.append({"host": "web%02d" % (i % 20)})
        line = dumps(item) + "\n"
        parts.append(line)
        size += len(line)
        rows += 1
    return "".join(parts).encode(), rows


def send_lines(port, lines, deadline):
    """
    Send TCP lines over one connection and read one answer per line.

    @return: the answers that are not C{--OK}.
    @raise Hung: the deadline passed.
    """
    try:
        with socket.create_connection(("127.0.0.1", port),
                                      timeout=max(0.1, deadline - time.monotonic())) as sock:
            sock.sendall(b"".join(lines))
            answers = []
            buffer = b""
            while len(answers) < len(lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Hung()
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                buffer += data
                *done, buffer = buffer.split(b"\r\n")
                answers.extend(a for a in done if a and not a.startswith(b"--Hint"))
    except (socket.timeout, TimeoutError):
        raise Hung()
    bad = [a.decode("utf-8", "replace")[:300] for a in answers if not a.startswith(b"--OK")]
    if len(answers) < len(lines):
        bad.append("connection closed after %d of %d answers" % (len(answers), len(lines)))
    return bad


# -- the run ---------------------------------------------------------------------------


def reset_peak(pid):
    """
    Reset the process's C{VmHWM} to its current RSS (Linux: 5 to
    C{clear_refs}); False when not allowed.
    """
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def stall_over(health, began, ended):
    """
    The longest lateness (ms) the lag monitor recorded from the second
    C{began} to the second after C{ended} (wall times), and whether its
    per-second record reaches back that far.
    """
    reactor = health.get("reactor") or {}
    seconds = reactor.get("seconds") or []
    first, last = int(began), int(ended) + 1
    chosen = [ms for s, ms in seconds if first <= s <= last]
    covered = bool(seconds) and seconds[0][0] <= first
    return (max(chosen) if chosen else None), covered


def long_seconds(health, began, ended, at_least=TARGET_MS / 2):
    """
    C{[[second, ms], ...]}: the seconds from C{began} to the second after
    C{ended} whose longest lateness was at least C{at_least} ms (where the
    stalls were).
    """
    seconds = (health.get("reactor") or {}).get("seconds") or []
    first, last = int(began), int(ended) + 1
    return [[s, ms] for s, ms in seconds if first <= s <= last and ms >= at_least]


class Run:
    def __init__(self, args, system, log):
        self.args = args
        self.system = system
        self.log = log
        self.sender = None
        self.ops = []
        self.restarts = []

    @property
    def http(self):
        return self.system.http_port

    def health(self, timeout=10.0):
        return api_json(self.http, "/api/health", timeout)

    def received(self):
        return (self.health().get("received") or {}).get("udp_lines")

    def quiet_counts(self):
        """
        Pause the sender and wait until the server has read everything:
        C{(lines sent, lines received)}.  The sender stays paused.
        """
        sent = self.sender.pause()
        last = self.received()
        still = time.monotonic()
        limit = still + 10
        while time.monotonic() < limit:
            time.sleep(0.05)
            now = self.received()
            if now != last:
                last, still = now, time.monotonic()
            elif time.monotonic() - still >= QUIET_SECONDS:
                break
        return sent, last

    def snapshot_status(self):
        return self.health().get("snapshot") or {}

    def wait_snapshot_after(self, after, timeout):
        """
        Wait for a snapshot that began at or after C{after} (wall) to be
        written; its status, or None at the timeout.
        """
        limit = time.monotonic() + timeout
        while time.monotonic() < limit:
            try:
                status = self.snapshot_status()
            except (OSError, Hung, RuntimeError, ValueError):
                status = {}
            if status.get("last") is not None and status["last"] >= after:
                return status
            time.sleep(0.25)
        return None

    def restart_after_kill(self, why):
        """
        SIGKILL the server and start it again on its data directory and
        ports; wait until it answers and its start-up snapshot is written.
        """
        system = self.system
        self.sender.pause()
        began = time.monotonic()
        try:
            os.killpg(system.pid, 9)
        except OSError:
            pass
        system.process.popen.wait(30)
        system.launch(system.data_dir, same_ports=True)
        system.process.wait_ready(system.healthy, 600, "simplestats")
        ready = time.monotonic() - began
        snap = self.wait_snapshot_after(system.started_wall - 1, 300)
        info = {"why": why, "ready_seconds": ready,
                "snapshot_done_seconds": time.monotonic() - began,
                "series": self.health().get("series"), "startup_snapshot": snap}
        self.restarts.append(info)
        self.log("    killed and restarted: answering after %.1f s, start-up snapshot written "
                 "after %.1f s" % (ready, info["snapshot_done_seconds"]))
        self.sender.resume()

    def op(self, key, label, action, timeout=None, window=None):
        """
        Run one operation and record its figures.

        @param action: C{action(deadline)} returns a dict of details (it may
            hold C{"span": (wall start, wall end)} to judge the stall over,
            e.g. a snapshot's own start and duration).
        """
        timeout = timeout or self.args.timeout
        system = self.system
        sent0, received0 = self.quiet_counts()
        peak_reset = reset_peak(system.pid)
        rss0 = system.process.memory()
        out = {"key": key, "operation": label, "timeout": timeout, "loadavg": procstat.loadavg(),
               "rss_before": rss0["rss"], "peak_reset": peak_reset, "pid": system.pid}
        self.log("  %s" % label)
        self.sender.resume()
        began_wall = time.time()
        began = time.monotonic()
        hung = False
        try:
            out.update(action(began + timeout) or {})
        except Hung:
            hung = True
        except Exception as e:  # noqa: BLE001 - one failed operation must not end the run
            out["error"] = "%s: %s" % (type(e).__name__, e)
        ended = time.monotonic()
        ended_wall = time.time()
        out["duration"] = ended - began
        out["started"] = began_wall
        if hung:
            out["hung"] = True
            # Is the server held, or was only the client's request slow?
            try:
                self.health(PROBE_SECONDS)
                out["server_answers_after_deadline"] = True
            except (Hung, OSError, RuntimeError, ValueError):
                out["server_answers_after_deadline"] = False
            if not out["server_answers_after_deadline"]:
                out["peak_rss"] = system.process.memory()["peak_rss"]
                out["stall_at_least_ms"] = (time.monotonic() - began) * 1000.0
                out["sent_during"] = self.sender.pause() - sent0
                out["lost"] = None
                self.log("    hung > %.0f s (the server does not answer /api/health either)"
                         % timeout)
                self.restart_after_kill(key)
                self.ops.append(out)
                return out
            self.log("    the request passed its %.0f s deadline; the server still answers"
                     % timeout)
        sent1, received1 = self.quiet_counts()
        # An operation that restarts the server counts from its own base:
        # (lines sent when the new process listened, 0 received).
        sent0, received0 = out.pop("count_base", None) or (sent0, received0)
        health = self.health(30)
        span = out.pop("span", None) or (began_wall, ended_wall)
        out["stall_span"] = list(span)
        out["longest_stall_ms"], out["stall_record_covers"] = stall_over(health, *span)
        out["long_seconds"] = long_seconds(health, *span)
        out["series"] = health.get("series")
        snap = health.get("snapshot") or {}
        if key not in ("startup", "snapshot", "snapshot_set") and snap.get("last") and \
                snap["last"] + (snap.get("duration") or 0) >= span[0] and snap["last"] <= span[1]:
            # A snapshot overlapped: its stalls are in this operation's seconds.
            out["snapshot_overlapped"] = snap
        mem = system.process.memory()
        out["peak_rss"] = mem["peak_rss"]
        out["rss_after"] = mem["rss"]
        out["sent_during"] = sent1 - sent0
        out["received_during"] = received1 - received0 if None not in (received0, received1) \
            else None
        out["lost"] = None if out["received_during"] is None \
            else out["sent_during"] - out["received_during"]
        self.log("    %s; longest stall %s ms; statsd lost %s of %d; peak RSS %.0f MB"
                 % (duration_text(out), _ms(out["longest_stall_ms"]), out["lost"],
                    out["sent_during"], (out["peak_rss"] or 0) / 1e6))
        self.sender.resume()
        self.ops.append(out)
        return out


def duration_text(op):
    if op.get("hung"):
        return "hung > %.0f s" % op["timeout"]
    if op.get("error"):
        return "error after %.1f s" % op["duration"]
    shown = op.get("shown_seconds", op["duration"])
    return "%.2f s" % shown if shown < 10 else "%.1f s" % shown


def _ms(value):
    if value is None:
        return "?"
    return "%.0f" % value


def measure(make_system, args, log=print):
    """
    Start the server, load it, run every operation; the result dict.
    """
    sizes = dict(SIZES["quick" if args.quick else "full"])
    for k in ("series", "import_mb", "set_members"):
        if getattr(args, k, None):
            sizes[k] = getattr(args, k)
    extra = list(getattr(args, "server_arg", None) or [])
    phase_a = ["--snapshot-interval", "3600", "--snapshot-journal-bytes", "0"] + extra
    phase_c = ["--snapshot-interval", "%g" % args.snapshot_interval,
               "--snapshot-journal-bytes", "0"] + extra
    system = make_system(list(phase_a))
    result = {"sizes": sizes, "target_ms": TARGET_MS, "timeout": args.timeout,
              "statsd_rate": args.rate, "statsd_per_packet": args.per_packet,
              "server_args": {"load": phase_a, "after_restart": phase_c},
              "server_tree": recovery.server_tree(system.repo),
              "loadavg_start": procstat.loadavg()}
    run = Run(args, system, log)
    log("stalls: starting the server (%s)" % " ".join(phase_a))
    system.start()
    result["fresh_start_seconds"] = system.ready_seconds
    run.sender = Sender(system.udp_port, args.rate, args.per_packet, args.load_core)
    try:
        run.sender.start()
        _operations(run, system, sizes, args, phase_c, log)
    finally:
        run.sender.stop()
        result["sender_errors"] = run.sender.errors.value
        result["stop_seconds"] = system.stop()
    result["operations"] = run.ops
    result["restarts_after_kill"] = run.restarts
    result["loadavg_end"] = procstat.loadavg()
    result["table"] = table(run.ops)
    return result


def _operations(run, system, sizes, args, phase_c, log):
    n = sizes["series"]
    log("stalls: statsd load %.0f lines/s (%d per packet) running; creating %d series"
        % (args.rate, args.per_packet, n))
    lines = series_batches(n)
    # Creating the series is a heavy operation of its own.
    run.op("create", "create %d series (TCP batches of %d)" % (n, BATCH),
           lambda deadline: {"errors": send_lines(system.tcp_port, lines, deadline)[:5]},
           timeout=max(args.timeout, 120))
    run.op("idle", "nothing but the statsd load (10 s)",
           lambda deadline: time.sleep(10) or {})

    def metrics(filter_text):
        def action(deadline):
            status, body, info = http_call(run.http, "GET", "/api/metrics",
                                           {"filter": filter_text, "limit": "100"},
                                           deadline=deadline)
            detail = {"status": status, "bytes": info["bytes"]}
            try:
                answer = json.loads(body)
                detail.update(matched=answer.get("matched"), error=answer.get("error"))
            except ValueError:
                pass
            if detail.get("error") is None:
                detail.pop("error", None)
            else:
                detail["answer_error"] = detail.pop("error")
            return detail
        return action

    run.op("filter_dotstar", "filter /(.*)*x/ over %d series" % n, metrics("/(.*)*x/"))
    run.op("filter_nested", "filter /(a+)+$/, series %r present" % CATASTROPHIC_NAME,
           metrics("/(a+)+$/"))
    terms = " ".join("-zq%03d" % i for i in range(1000))
    run.op("filter_1000", "filter of 1000 terms (distinct negated substrings) over %d series" % n,
           metrics(terms))

    def export(deadline):
        status, _, info = http_call(run.http, "GET", "/api/export", {"format": "ndjson"},
                                    deadline=deadline, keep=False)
        return {"status": status, "bytes": info["bytes"], "rows": info["lines"],
                "first_byte_seconds": info["first_byte"]}

    run.op("export", "export of all series (ndjson)", export)

    log("  (building the %.0f MB import)" % sizes["import_mb"])
    body, rows = import_body(sizes["import_mb"], time.time())

    def do_import(deadline):
        status, answer, _ = http_call(run.http, "POST", "/api/import", {"format": "ndjson"},
                                      body=body, deadline=deadline,
                                      headers={"Content-Type": "application/x-ndjson"})
        detail = {"status": status, "bytes": len(body), "rows": rows}
        try:
            detail["answer"] = {k: v for k, v in json.loads(answer).items() if k != "bad_rows"}
        except ValueError:
            detail["answer"] = answer[:300].decode("utf-8", "replace")
        return detail

    run.op("import", "import of %.0f MB ndjson (%d rows, %d series)"
           % (len(body) / 1e6, rows, IMPORT_SERIES), do_import, timeout=args.import_timeout)


    def startup(deadline):
        # SIGTERM (the final snapshot), then start again with snapshots
        # every --snapshot-interval for the snapshot operations.  The statsd
        # load pauses while no process listens (what is sent then is lost
        # whatever the server does) and resumes once the port listens.
        run.sender.pause()
        stop = system.process.stop(timeout=max(1.0, deadline - time.monotonic()))
        system.extra_args = list(phase_c)
        system.launch(system.data_dir, same_ports=True)
        launched = time.monotonic()
        launched_wall = time.time()
        listening = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", system.http_port), timeout=1):
                    listening = time.monotonic()
                    break
            except OSError:
                if not system.process.alive():
                    raise RuntimeError("the server exited: " + system.process.log_tail())
                time.sleep(0.01)
        if listening is None:
            raise Hung()
        listening_wall = launched_wall + (listening - launched)
        sent_base = run.sender.sent.value
        run.sender.resume()
        ready = None
        while ready is None:
            if time.monotonic() >= deadline:
                raise Hung()
            try:
                if api_json(system.http_port, "/api/health", max(0.1, deadline - time.monotonic())
                            ).get("status") == "ok":
                    ready = time.monotonic()
            except (OSError, RuntimeError, ValueError):
                time.sleep(0.02)
        snap = run.wait_snapshot_after(launched_wall - 1, max(1.0, deadline - time.monotonic()))
        if snap is None:
            raise Hung()
        done_wall = snap["last"] + snap["duration"]
        return {"stop_seconds": stop, "listening_seconds": listening - launched,
                "ready_seconds": ready - launched, "shown_seconds": ready - launched,
                "startup_snapshot": snap,
                "startup_snapshot_done_seconds": done_wall - launched_wall,
                # The stall after the port listens, until the start-up
                # snapshot is written.
                "span": (listening_wall, max(done_wall, launched_wall + (ready - launched))),
                "count_base": (sent_base, 0)}

    run.op("startup", "start-up on the data directory (SIGTERM, start again)", startup,
           timeout=max(args.timeout, 300))

    def snapshot(after_wall_fn):
        def action(deadline):
            after = after_wall_fn()
            snap = run.wait_snapshot_after(after, max(1.0, deadline - time.monotonic()))
            if snap is None:
                raise Hung()
            return {"snapshot": snap, "shown_seconds": snap["duration"],
                    "span": (snap["last"], snap["last"] + snap["duration"])}
        return action

    wait = 2 * args.snapshot_interval + 120
    run.op("snapshot", "snapshot with %d series" % n, snapshot(time.time), timeout=wait)

    set_lines = set_batches(sizes["set_members"])
    run.op("set_ingest", "a set of %d members over TCP (%d set partials)"
           % (sizes["set_members"], len(set_lines)),
           lambda deadline: {"errors": send_lines(system.tcp_port, set_lines, deadline)[:5]},
           timeout=max(args.timeout, 120))
    sent_at = time.time()
    run.op("snapshot_set", "snapshot with the %d-member set (and the %d series)"
           % (sizes["set_members"], n), snapshot(lambda: sent_at), timeout=wait)


# -- report ----------------------------------------------------------------------------


def table(ops):
    """
    The Markdown table: operation | duration | longest stall ms | statsd
    lost | peak RSS.
    """
    rows = ["| operation | duration | longest stall ms | statsd lost | peak RSS |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for op in ops:
        if op.get("hung") and "longest_stall_ms" not in op:
            stall = "> %.0f (hung)" % op["stall_at_least_ms"]
            lost = "all after the hang (%d sent; killed)" % op["sent_during"]
        else:
            stall = _ms(op.get("longest_stall_ms"))
            if op.get("longest_stall_ms") is not None and op["longest_stall_ms"] > TARGET_MS:
                stall = "**%s**" % stall
            if op.get("lost") is None:
                lost = "?"
            else:
                lost = "%d of %d" % (op["lost"], op["sent_during"])
        label = op["operation"]
        notes = []
        if op.get("status") not in (None, 200):
            notes.append("HTTP %s" % op["status"])
        if op.get("error"):
            notes.append(op["error"][:80])
        if op.get("errors"):
            notes.append("%d error answers" % len(op["errors"]))
        if op.get("snapshot_overlapped"):
            notes.append("a snapshot overlapped")
        if op["key"] == "startup" and op.get("listening_seconds") is not None:
            notes.append("listening %.2f s, stop %.2f s, start-up snapshot written %.1f s"
                         % (op["listening_seconds"], op["stop_seconds"],
                            op["startup_snapshot_done_seconds"]))
        if notes:
            label += " (%s)" % "; ".join(notes)
        rss = "%.0f MB" % (op["peak_rss"] / 1e6) if op.get("peak_rss") else "?"
        rows.append("| %s | %s | %s | %s | %s |" % (label, duration_text(op), stall, lost, rss))
    return "\n".join(rows)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="SimpleStats: the longest reactor stall "
                                                 "during each heavy operation (issue #11)")
    parser.add_argument("--quick", action="store_true",
                        help="N = 20k series, 10 MB import, a set of 100k members")
    parser.add_argument("--series", type=int, default=None,
                        help="series created before the operations (default 100000)")
    parser.add_argument("--import-mb", type=float, default=None,
                        help="size of the ndjson import in MB (default 50)")
    parser.add_argument("--set-members", type=int, default=None,
                        help="members of the huge set (default 600000)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds an operation may take before it is reported hung "
                             "(default 60)")
    parser.add_argument("--import-timeout", type=float, default=None,
                        help="the import's own deadline (default: --timeout), e.g. to see how "
                             "long an import that passes 60 s holds the server")
    parser.add_argument("--rate", type=float, default=5000.0,
                        help="statsd lines/s sent the whole time (default 5000)")
    parser.add_argument("--per-packet", type=int, default=1,
                        help="statsd lines per packet (default 1: what most clients send)")
    parser.add_argument("--snapshot-interval", type=float, default=30.0,
                        help="the server's --snapshot-interval after the start-up operation "
                             "(the snapshot operations wait for the periodic one; default 30)")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="one more flag for the server (repeat), e.g."
                             " --server-arg=--max-filter-terms=1000")
    parser.add_argument("--python", default=None)
    parser.add_argument("--repo", default=systems.REPO_ROOT,
                        help="run the server/ of this checkout (e.g. git archive HEAD server web "
                             "| tar -x -C DIR)")
    parser.add_argument("--workdir", default=os.path.join(systems.BENCH_DIR, ".cache", "stalls"))
    parser.add_argument("--results", default=os.path.join(systems.BENCH_DIR, "results"))
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--realtime", action="store_true",
                        help="run the server at real-time priority (off by default: a server "
                             "held by a regular expression would then keep its core from "
                             "other programs)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    python = args.python or systems.default_python()
    load_core, server_core = (None, None) if args.no_pin else procstat.pinning()
    args.load_core = load_core
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    realtime = args.realtime and procstat.can_run_realtime()
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    workdir = os.path.join(args.workdir, stamp)
    mode = "quick" if args.quick else "full"
    print("stall benchmark, %s mode; work files in %s; server on core %s%s; load average %s"
          % (mode, workdir, server_core, " at real-time priority" if realtime else "",
             " ".join(procstat.loadavg() or [])), flush=True)
    repo = os.path.abspath(args.repo)
    result = measure(lambda extra: systems.SimpleStats(workdir, server_core, python, extra,
                                                       realtime=realtime, repo=repo),
                     args, lambda m: print(m, flush=True))
    result["meta"] = {"mode": mode, "argv": sys.argv[:] if argv is None else list(argv),
                      "started": started, "seconds": time.time() - started,
                      "machine": procstat.machine(), "python": python, "realtime": realtime,
                      "pinning": {"load_core": load_core, "server_core": server_core},
                      "workdir": workdir,
                      "versions": systems.SimpleStats(workdir, None, python, repo=repo).versions()}
    path = report.write_json(result, args.results, "%s-stalls-%s" % (stamp, mode))
    print("")
    print(result["table"])
    print("")
    print("results: %s (%.0f s); load average at the start %s, at the end %s"
          % (os.path.relpath(path), result["meta"]["seconds"],
             " ".join(result["loadavg_start"] or []), " ".join(result["loadavg_end"] or [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
