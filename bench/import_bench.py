"""
One large NDJSON import into a real server process: how long it takes, the
server's peak resident memory (C{VmHWM}), the longest reactor stall while it
ran (the lag monitor's per-second maxima in C{/api/health}) and how long
C{/api/health} took to answer meanwhile.

    .venv/bin/python bench/import_bench.py --mb 200 [--src DIR]

C{--src} runs the server from another checkout (a "before" measurement).
Not part of the test suite: a 200 MB run takes minutes and a few hundred MB.
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from serverproc import ServerProcess  # noqa: E402


def write_ndjson(path, megabytes, series=1000):
    """
    Counter rows over the last five hours, C{series} names; returns the row
    count.
    """
    now = int(time.time())
    rows = 0
    target = megabytes * 1024 * 1024
    with open(path, "w") as f:
        size = 0
        while size < target:
            line = '["bench.import.s%d", %d, "%dc"]\n' % (
                rows % series, now - 18000 + rows % 18000, 1 + rows % 7)
            f.write(line)
            size += len(line)
            rows += 1
    return rows


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--src", default=None, help="checkout to run the server from")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("server_args", nargs="*", help="more server flags (after --)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="import-bench-")
    body = os.path.join(work, "import.ndjson")
    rows = write_ndjson(body, args.mb)
    size = os.path.getsize(body)
    server = ServerProcess(os.path.join(work, "data"), os.path.join(work, "server.log"),
                           args.server_args)
    if args.src:
        import serverproc
        serverproc.REPO_ROOT = os.path.abspath(args.src)
    os.makedirs(server.data_dir)
    server.start()
    print("file: %.1f MB, %d rows; server pid %d" % (size / 1e6, rows, server.pid))
    health_ms = []
    phases = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            began = time.monotonic()
            try:
                h = server.get_json("/api/health")
                health_ms.append((time.monotonic() - began) * 1000)
                for job in h.get("imports") or ():
                    phases.append((int(time.time()), job["phase"], job["rows"]))
            except Exception as e:  # a timeout: the reactor is held
                health_ms.append(float("inf"))
                print("health failed: %s" % (e,))
            stop.wait(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    started = time.monotonic()
    wall_start = int(time.time())
    poller.start()
    try:
        run(server, body, size, args, started, wall_start, health_ms, phases, stop, poller, rows)
    finally:
        server.kill()


def run(server, body, size, args, started, wall_start, health_ms, phases, stop, poller, rows):
    conn = http.client.HTTPConnection(server.host, server.http_port, timeout=args.timeout)
    with open(body, "rb") as f:
        conn.request("POST", "/api/import?format=ndjson", body=f,
                     headers={"Content-Length": str(size)})
        response = conn.getresponse()
        answer = response.read()
    duration = time.monotonic() - started
    stop.set()
    poller.join()
    health = server.get_json("/api/health")
    stalls = [ms for second, ms in health["reactor"]["seconds"] if second >= wall_start]
    long = [(s, ms) for s, ms in health["reactor"]["seconds"] if s >= wall_start and ms > 50]
    print("seconds with a stall over 50 ms: %s" % (long,))
    print("phases: %s" % ([phases[0], phases[-1]] if phases else None,))
    print("status %d: %s" % (response.status, answer[:300].decode()))
    print("duration %.1f s, peak RSS %.0f MB, longest reactor stall %.0f ms,"
          " /api/health answered %d times, slowest %.0f ms"
          % (duration, peak_rss(server.pid) / 1e6, max(stalls, default=0), len(health_ms),
             max(health_ms, default=0)))
    print(json.dumps({"rows": rows, "bytes": size, "status": response.status,
                      "duration_s": round(duration, 2), "peak_rss_mb": round(peak_rss(server.pid) / 1e6),
                      "max_stall_ms": round(max(stalls, default=0)),
                      "health_max_ms": None if float("inf") in health_ms else round(max(health_ms, default=0))}))


if __name__ == "__main__":
    main()
