"""
SimpleStats only: the restart after C{kill -9} with a minute of statsd
journal to replay (issue #10, "Recovery time").

One server is started with a snapshot interval longer than the load and,
when it has the flag, C{--snapshot-journal-bytes 0} (so the journal holds
every packet of the load), the real statsd shape at 20 lines per
packet is sent at a given rate for a given time, and once the server's
C{/api/health} C{received.udp_lines} stops growing the server is killed with
SIGKILL and started again on the same data directory and ports.  Measured:

  - (a) seconds from the restart until C{/api/health} answers at all;
  - (b) seconds from the restart until the server has every series of the
    load back and a few counter series hold the same totals as before the
    kill (the replayed points are there);
  - the replay speed, lines journaled / (b), and the restarted server's
    peak RSS;
  - then, not timed, every series of the load compared with what it held
    before the kill (its C{count}, timers' C{count}, gauges' C{updates},
    sets' C{count} summed over its 5 s points), and the lines in the journal
    files (read here, not by the server) against the lines the server said
    it received.

    python bench/recovery.py --rate 300000 --seconds 60
    python bench/recovery.py --rate 300000 --snapshot-journal-bytes default

The second keeps the server's own snapshot by journal size, which bounds
what a restart replays (not the figure the issue asks for: a restart as a
server with default settings would see it).

bench/run.py runs it in full mode at the real_20 loss-free rate it found
(or C{--recovery-rate}).
"""

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import zlib

if __package__ in (None, ""):
    # Run as a script: make the bench package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import counting, procstat, shapes, systems  # noqa: E402
from bench.udpbench import run_loadgen  # noqa: E402

# No snapshot while the load runs: the whole load is in the journal.  (The
# server still takes one when it starts: an empty store before the load, and
# the replayed one after the restart.)  Servers that also start a snapshot
# once so many journal bytes were written get --snapshot-journal-bytes 0.
NO_SNAPSHOT = "3600"
JOURNAL_BYTES_FLAG = "--snapshot-journal-bytes"
PER_PACKET = 20
KIND = "real"
# The restart is judged against this (issue #10).
TARGET_SECONDS = 20.0
# The received count must stand still this long before the kill: longer
# than the journal flush interval (0.1 s), so every line read is written.
QUIET_SECONDS = 1.0
# Counter series whose totals (b) waits for, besides the count of series.
CHECKED_COUNTERS = 2
# Lines of warnings and errors from the restart's log kept in the result.
LOG_PROBLEMS_KEPT = 20

# The journal format (server/durability/journal.py), read here independently of the
# server's code: magic, then records of a 4-byte length, a CRC-32 of kind
# and payload, a 1-byte kind and the payload (u: 8-byte time + packet).
# SSJ2 records are a 4-byte marker, the length, the kind, the payload's
# CRC-32 and the header's, then the payload.
JOURNAL_MAGIC = b"SSJ1\n"
JOURNAL_MAGIC_2 = b"SSJ2\n"
# SSJ2's framing, statsd parser 2 (server/durability/journal.py).
JOURNAL_MAGIC_3 = b"SSJ3\n"
JOURNAL_NAME = re.compile(r"^journal\.(\d{6,})\.log$")
_HEADER = struct.Struct(">IIc")
_HEADER_2 = struct.Struct(">4sIcII")
_TIME_SIZE = 8


def _records_v1(f):
    """
    C{(kind, payload, checksum good)} of each SSJ1 record; C{(None, problem,
    False)} for a cut end.
    """
    while True:
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            if header:
                yield None, "header cut short", False
            return
        length, crc, kind = _HEADER.unpack(header)
        payload = f.read(length)
        if len(payload) < length:
            yield None, "record cut short", False
            return
        yield kind, payload, zlib.crc32(payload, zlib.crc32(kind)) == crc


def _records_v2(f):
    while True:
        header = f.read(_HEADER_2.size)
        if len(header) < _HEADER_2.size:
            if header:
                yield None, "header cut short", False
            return
        _, length, kind, crc, header_crc = _HEADER_2.unpack(header)
        if zlib.crc32(header[:13]) != header_crc:
            # The length cannot be trusted: nothing after it is counted.
            yield None, "damaged header", False
            return
        payload = f.read(length)
        if len(payload) < length:
            yield None, "record cut short", False
            return
        yield kind, payload, zlib.crc32(payload) == crc

# The /api/series field summed per type to compare a series before and after.
TOTAL_FIELDS = {"counter": "count", "timer": "count", "gauge": "updates", "set": "count"}


def journal_summary(directory):
    """
    What the journal files in C{directory} hold, read record by record:
    files, bytes, statsd records and the lines in them, JSON and TCP
    records, records whose checksum fails and a torn last record.
    """
    out = {"files": 0, "bytes": 0, "udp_records": 0, "udp_lines": 0, "json_records": 0,
           "tcp_records": 0, "bad_crc": 0, "torn": []}
    names = sorted(n for n in os.listdir(directory) if JOURNAL_NAME.match(n))
    for name in names:
        path = os.path.join(directory, name)
        out["files"] += 1
        out["bytes"] += os.path.getsize(path)
        with open(path, "rb", buffering=1 << 20) as f:
            magic = f.read(len(JOURNAL_MAGIC))
            if magic not in (JOURNAL_MAGIC, JOURNAL_MAGIC_2, JOURNAL_MAGIC_3):
                if magic:
                    out["torn"].append("%s: bad magic" % name)
                continue
            for kind, payload, good in (_records_v1 if magic == JOURNAL_MAGIC else _records_v2)(f):
                if kind is None:
                    out["torn"].append("%s: %s" % (name, payload))
                    break
                if not good:
                    out["bad_crc"] += 1
                    continue
                if kind == b"u":
                    out["udp_records"] += 1
                    packet = payload[_TIME_SIZE:]
                    out["udp_lines"] += packet.count(b"\n") + (packet[-1:] not in (b"\n", b""))
                elif kind == b"j":
                    out["json_records"] += 1
                elif kind == b"t":
                    out["tcp_records"] += 1
    return out


def series_totals(system, metrics, since):
    """
    C{{key: total}}: each listed series' main field (L{TOTAL_FIELDS})
    summed over its 5 s points since C{since}.
    """
    out = {}
    for metric in metrics:
        field = TOTAL_FIELDS.get(metric["type"])
        if field is None:
            continue
        answer = system.api("/api/series", key=metric["key"], resolution="5s", fields=field,
                            **{"from": "%d" % (since - 60), "until": "now"})
        out[metric["key"]] = counting.series_total(answer, field)
    return out


def listing(system, prefix):
    answer = system.api("/api/metrics", filter="bench.%s.*" % prefix, limit="100000")
    return answer.get("metrics", [])


def checked_counters(metrics, prefix):
    """
    The counter series (b) checks: one sampled (C{|@0.1}: its count is
    ten per line) and one not, as the real shape writes them.
    """
    sampled = {n.name: "@" in n.tail for n in shapes.real_names(prefix) if n.kind == "c"}
    counters = [m for m in metrics if m["type"] == "counter" and m["name"] in sampled]
    chosen = [next((m for m in counters if sampled[m["name"]] is want), None)
              for want in (True, False)]
    return [m for m in chosen if m is not None][:CHECKED_COUNTERS]


def wait_still(read, quiet, timeout, interval=0.1):
    """
    Poll C{read()} until its value has not changed for C{quiet} seconds.

    @return: C{(value, seconds waited)}.
    """
    start = time.monotonic()
    last = read()
    changed = start
    while True:
        time.sleep(interval)
        value = read()
        now = time.monotonic()
        if value != last:
            last, changed = value, now
        elif now - changed >= quiet or now - start >= timeout:
            return last, now - start


def close_enough(a, b):
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def log_problems(path, offset):
    """
    Warnings, errors and tracebacks in the server log after C{offset}: the
    lines that say so (a traceback's first line).
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines()
            if re.search(r"#(warn|error|critical)\]|Traceback|Unhandled", line)]


def logged_recovery(path, offset):
    """
    The server's own start-up summary after C{offset}: C{{"series_loaded",
    "points_replayed"}}, or None.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    match = re.search(r"recovered (\d+) series from the snapshot and (\d+) points from the journal",
                      text)
    if not match:
        return None
    return {"series_loaded": int(match.group(1)), "points_replayed": int(match.group(2))}


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def server_flags(python, repo):
    """
    The flags C{python -m server.main --help} lists in C{repo}.
    """
    done = subprocess.run([python, "-m", "server.main", "--help"], cwd=repo, capture_output=True,
                          text=True, timeout=60)
    return set(re.findall(r"--[a-z][a-z-]+", done.stdout))


def snapshot_args(flags, journal_bytes):
    """
    The server arguments for the load: no snapshot by time, and none by
    journal size either unless C{journal_bytes} (None: the server's default
    size; a number: that size; 0: none) asks for it.
    """
    args = ["--snapshot-interval", NO_SNAPSHOT]
    if JOURNAL_BYTES_FLAG in flags:
        if journal_bytes is not None:
            args += [JOURNAL_BYTES_FLAG, "%d" % journal_bytes]
    elif journal_bytes:
        raise ValueError("this server has no %s" % JOURNAL_BYTES_FLAG)
    return args


def measure(make_system, rate, seconds, load_core, log=print, prefix="rcv",
            restart_timeout=900.0, compare_all=True, keep_data=False, journal_bytes=0):
    """
    Load, kill -9, restart and time the recovery (see the module docstring).

    @param make_system: callable taking extra server arguments and returning
        an unstarted L{systems.SimpleStats}.
    @param rate: statsd lines per second offered (real shape, 20 per packet).
    @param compare_all: compare every series of the load before and after
        (one C{/api/series} request per series each side), not only the
        checked counters.
    @param keep_data: leave the data directory, and the journal files as
        they were at the kill in C{<data dir>-at-kill} (hard links; the
        journal is large).
    @param journal_bytes: 0 (the figure): no snapshot during the load, the
        whole load is replayed.  None: the server's own default for
        C{--snapshot-journal-bytes} (a snapshot starts whenever that much
        was journaled, bounding the replay); a number: that many bytes.
    """
    probe = make_system([])
    extra = snapshot_args(server_flags(probe.python, probe.repo), journal_bytes)
    system = make_system(extra)
    out = {"rate": rate, "seconds": seconds, "shape": "%s_%d" % (KIND, PER_PACKET),
           "target_seconds": TARGET_SECONDS, "snapshot_interval": float(NO_SNAPSHOT),
           "loadavg_start": procstat.loadavg(), "server_tree": server_tree(system.repo),
           "server_args": extra,
           "snapshot_journal_bytes": "server default" if journal_bytes is None else journal_bytes}
    system.start()
    out["fresh_start_seconds"] = system.ready_seconds
    try:
        log("  recovery: real_20 at %.0f lines/s for %.0f s, then kill -9" % (rate, seconds))
        load_started = time.time()
        sent = run_loadgen(["udp", "--port", system.udp_port, "--rate", "%.1f" % rate,
                            "--duration", seconds, "--per-packet", PER_PACKET,
                            "--prefix", prefix, "--kind", KIND], load_core,
                           timeout=seconds + 300)
        out["sent"] = {k: sent[k] for k in ("metrics", "packets", "achieved_rate", "elapsed",
                                            "errors", "by_kind", "build_seconds")}
        out["sent"]["generator_limited"] = sent["achieved_rate"] < 0.98 * rate
        received, waited = wait_still(system.received_lines, QUIET_SECONDS, 120)
        out["received_lines"] = received
        out["lost_in_transit"] = sent["metrics"] - received
        out["settle_seconds"] = waited
        health = system.api("/api/health")
        out["series_before"] = health["series"]
        # A snapshot that began after the load started holds part of it:
        # only what was journaled after that snapshot is replayed.
        out["snapshot_before_kill"] = health.get("snapshot")
        last_snapshot = (health.get("snapshot") or {}).get("last")
        out["snapshots_during_load"] = last_snapshot is not None and last_snapshot >= load_started
        metrics = listing(system, prefix)
        out["load_series_before"] = len(metrics)
        checked = checked_counters(metrics, prefix)
        before = series_totals(system, metrics if compare_all else checked, load_started)
        out["checked"] = [{"key": m["key"], "before": before[m["key"]]} for m in checked]
        # The health figure after the reads, in case they moved it.
        out["received_lines_at_kill"] = system.received_lines()
        out["rss_before_kill"] = system.process.memory()
        if not system.process.alive():
            raise RuntimeError("simplestats died during the load:\n" + system.process.log_tail())
        os.kill(system.pid, signal.SIGKILL)
        system.process.popen.wait(30)
        out["killed_exit_code"] = system.process.popen.returncode
    except BaseException:
        system.stop()
        if not keep_data:
            shutil.rmtree(system.data_dir, ignore_errors=True)
        raise
    if keep_data:
        # Hard links: the server never writes an old journal file again and
        # removes them after its next snapshot; the links keep them as they
        # were at the kill, for a replay run by hand.
        kept = system.data_dir + "-at-kill"
        os.makedirs(kept, exist_ok=True)
        for name in os.listdir(system.data_dir):
            os.link(os.path.join(system.data_dir, name), os.path.join(kept, name))
        out["data_at_kill"] = kept
    out["journal"] = journal_summary(system.data_dir)
    out["lines_journaled"] = out["journal"]["udp_lines"]
    # With a snapshot during the load the journal holds only the lines after
    # it: the lines lost at the kill cannot be told from the journal then.
    out["lines_lost_at_kill"] = (None if out["snapshots_during_load"]
                                 else out["received_lines_at_kill"] - out["lines_journaled"])
    if out["lines_lost_at_kill"]:
        log("  recovery: %d lines received but not in the journal at the kill"
            % out["lines_lost_at_kill"])
    log("  recovery: %d lines journaled (%.0f MB), restarting"
        % (out["lines_journaled"], out["journal"]["bytes"] / 1e6))

    out["server_tree_at_restart"] = server_tree(system.repo)
    if out["server_tree_at_restart"]["server_digest"] != out["server_tree"]["server_digest"]:
        log("  recovery: WARNING: server/ changed between the load and the restart")
    log_offset = _file_size(system.log_path)
    system.launch(system.data_dir, same_ports=True)
    began = system.started_at
    restart = {"timed_out": False}
    out["restart"] = restart
    try:
        deadline = began + restart_timeout
        health = None
        while health is None:
            if not system.process.alive():
                raise systems.StartError("simplestats exited during the restart (code %s):\n%s"
                                         % (system.process.popen.returncode,
                                            system.process.log_tail()))
            if time.monotonic() > deadline:
                raise systems.StartError("no /api/health answer %.0f s after the restart:\n%s"
                                         % (restart_timeout, system.process.log_tail()))
            try:
                health = system.api("/api/health")
            except (OSError, ValueError, urllib.error.URLError):
                time.sleep(0.05)
        restart["health_seconds"] = time.monotonic() - began
        restart["health_series"] = health.get("series")

        def back():
            metrics_now = listing(system, prefix)
            if len(metrics_now) < out["load_series_before"]:
                return False
            now = series_totals(system, checked, load_started)
            return all(close_enough(now[m["key"]], before[m["key"]]) for m in checked)

        while True:
            try:
                if back():
                    break
            except (OSError, ValueError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                restart["timed_out"] = True
                break
            time.sleep(0.05)
        restart["ready_seconds"] = time.monotonic() - began
        restart["peak_rss"] = system.process.memory()["peak_rss"]
        restart["series"] = system.api("/api/health")["series"]
        metrics_after = listing(system, prefix)
        restart["load_series"] = len(metrics_after)
        after = series_totals(system, metrics_after if compare_all else checked, load_started)
        for row in out["checked"]:
            row["after"] = after.get(row["key"])
        differing = sorted(k for k in set(before) | set(after)
                           if not close_enough(before.get(k, 0.0), after.get(k, 0.0)))
        out["compare"] = {
            "series": len(before),
            "differing": len(differing),
            "examples": [{"key": k, "before": before.get(k), "after": after.get(k)}
                         for k in differing[:5]],
            "all_series": compare_all,
        }
        out["received_lines_after_restart"] = system.received_lines()
        out["peak_rss"] = system.process.memory()["peak_rss"]
    finally:
        out["stop_seconds"] = system.stop()
        out["server_recovery_log"] = logged_recovery(system.log_path, log_offset)
        problems = log_problems(system.log_path, log_offset)
        out["log_problem_count"] = len(problems)
        out["log_problems"] = problems[:LOG_PROBLEMS_KEPT]
        out["loadavg_end"] = procstat.loadavg()
        if not keep_data:
            shutil.rmtree(system.data_dir, ignore_errors=True)
    if restart.get("ready_seconds"):
        out["replay_lines_per_second"] = out["lines_journaled"] / restart["ready_seconds"]
    out["target_met"] = (None if restart.get("timed_out") or "ready_seconds" not in restart
                         else restart["ready_seconds"] < TARGET_SECONDS)
    log("  recovery: %s" % summary(out))
    return out


def summary(r):
    """
    One line for the table.
    """
    if not isinstance(r, dict) or "restart" not in r:
        return "not measured"
    restart = r["restart"]
    text = ("%.0f lines/s for %.0f s: %s lines journaled (%.0f MB); restart: /api/health after "
            "%.2f s, every series and point back after %.2f s%s (%.0f lines/s replayed), "
            "peak RSS %.0f MB" % (
                r["rate"], r["seconds"], "{:,}".format(r["lines_journaled"]),
                r["journal"]["bytes"] / 1e6, restart.get("health_seconds") or float("nan"),
                restart.get("ready_seconds") or float("nan"),
                " (TIMED OUT)" if restart.get("timed_out") else "",
                r.get("replay_lines_per_second") or 0, (restart.get("peak_rss") or 0) / 1e6))
    notes = []
    if r.get("snapshots_during_load"):
        loaded = (r.get("server_recovery_log") or {}).get("series_loaded")
        notes.append("a snapshot during the load (%s series loaded from it at the restart; only the "
                     "journal after it replayed)" % loaded)
    if r.get("lost_in_transit"):
        notes.append("%d lines sent but not received" % r["lost_in_transit"])
    if r.get("lines_lost_at_kill"):
        notes.append("%d received but not journaled" % r["lines_lost_at_kill"])
    compare = r.get("compare") or {}
    if compare.get("differing"):
        notes.append("%d of %d series differ after the restart"
                     % (compare["differing"], compare["series"]))
    if (r.get("server_tree_at_restart") or {}).get("server_digest") != (
            r.get("server_tree") or {}).get("server_digest"):
        notes.append("server/ changed between the load and the restart")
    if r.get("log_problems"):
        notes.append("%d warning/error lines in the server log after the restart"
                     % r.get("log_problem_count", len(r["log_problems"])))
    return text + ("; " + "; ".join(notes) if notes else "")


def server_tree(repo=systems.REPO_ROOT):
    """
    Where the server ran from: the checkout, its commit, whether its
    server/ had uncommitted changes, and a digest of the server's files (a
    change between the load and the restart shows as a different digest).
    """
    def git(*args):
        done = subprocess.run(["git"] + list(args), cwd=repo, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None
    status = git("status", "--porcelain", "--", "server")
    digest = zlib.crc32(b"")
    for root, dirs, files in sorted(os.walk(os.path.join(repo, "server"))):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    digest = zlib.crc32(name.encode() + f.read(), digest)
    return {"repo": repo, "head": git("rev-parse", "--short", "HEAD"),
            "server_modified": None if status is None else bool(status),
            "server_digest": "%08x" % digest}


def main(argv=None):
    parser = argparse.ArgumentParser(description="SimpleStats restart after kill -9 with a "
                                                 "journal of real_20 statsd load")
    parser.add_argument("--rate", type=float, required=True,
                        help="statsd lines per second (real shape, 20 per packet); e.g. the "
                             "real_20 loss-free rate of bench/run.py")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--snapshot-journal-bytes", default="0",
                        help="0 (the figure): no snapshot during the load, the whole load is "
                             "replayed; 'default': the server's own --snapshot-journal-bytes, which "
                             "starts a snapshot whenever that much was journaled; or a number")
    parser.add_argument("--python", default=None,
                        help="the server's interpreter (default: .venv/bin/python)")
    parser.add_argument("--workdir", default=os.path.join(systems.BENCH_DIR, ".cache",
                                                          "recovery"))
    parser.add_argument("--restart-timeout", type=float, default=900.0)
    parser.add_argument("--only-checked", action="store_true",
                        help="compare only the checked counters, not every series of the load")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the data directory afterwards, and the journal as it was at "
                             "the kill (hard links in <data dir>-at-kill)")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--repo", default=systems.REPO_ROOT,
                        help="run the server/ of this checkout (e.g. a copy of a commit: "
                             "git archive HEAD server web | tar -x -C DIR), away from edits "
                             "in progress (default: this one)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-realtime", action="store_true")
    args = parser.parse_args(argv)
    python = args.python or systems.default_python()
    load_core, server_core = (None, None) if args.no_pin else procstat.pinning()
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    realtime = not args.no_realtime and procstat.can_run_realtime()
    workdir = os.path.join(args.workdir, time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    print("recovery figure: work files in %s; server on core %s%s; load average %s"
          % (workdir, server_core, " at real-time priority" if realtime else "",
             " ".join(procstat.loadavg() or [])), flush=True)
    result = measure(
        lambda extra: systems.SimpleStats(workdir, server_core, python, extra, realtime=realtime,
                                          repo=os.path.abspath(args.repo)),
        args.rate, args.seconds, load_core, lambda m: print(m, flush=True),
        restart_timeout=args.restart_timeout, compare_all=not args.only_checked,
        keep_data=args.keep_data,
        journal_bytes=None if args.snapshot_journal_bytes == "default"
        else int(args.snapshot_journal_bytes))
    result["meta"] = {"machine": procstat.machine(), "python": python, "realtime": realtime,
                      "pinning": {"load_core": load_core, "server_core": server_core},
                      "workdir": workdir,
                      "versions": systems.SimpleStats(workdir, None, python,
                                                      repo=os.path.abspath(args.repo)).versions()}
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    print(text)
    return 0 if result["restart"].get("ready_seconds") and not result["restart"]["timed_out"] else 1


if __name__ == "__main__":
    sys.exit(main())
