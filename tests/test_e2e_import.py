"""
End to end: a large NDJSON import into a real server process while statsd
lines arrive over UDP.  The import completes, no statsd line is lost,
C{/api/health} answers all along, and the server's peak resident memory
stays under the bound docs/API.md gives.
"""

import http.client
import json
import socket
import threading
import time

# The file: about 16 MB of counter rows (kept moderate for CI; a 200 MB
# import is measured by hand with bench/import_bench.py).
IMPORT_BYTES = 16 * 1024 * 1024
IMPORT_SERIES = 500
# statsd: 2000 lines a second, 10 lines per packet.
LINES_PER_SECOND = 2000
LINES_PER_PACKET = 10
# The server's peak resident memory (VmHWM) for any import: the process
# before it (about 50 MB) plus the bound of docs/API.md ("Imports").
PEAK_RSS_BOUND = 200 * 1024 * 1024
IMPORT_TIMEOUT = 240.0


def write_import(path):
    now = int(time.time())
    rows = 0
    total = 0
    size = 0
    with open(path, "w") as f:
        while size < IMPORT_BYTES:
            value = 1 + rows % 5
            line = '["e2e.import.s%d", %d, "%dc"]\n' % (rows % IMPORT_SERIES,
                                                        now - 7200 + rows % 7000, value)
            f.write(line)
            size += len(line)
            rows += 1
            total += value
    return rows, total


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/%d/status" % pid)


def sum_counts(server, name):
    status, _, body = server.http("GET", "/api/series", {"name": name, "fields": "count",
                                                         "from": "-3h"})
    assert status == 200, (name, status, body)
    return sum(v for _, v in json.loads(body)["fields"]["count"] if v is not None)


class StatsdLoad(threading.Thread):
    """
    Sends C{e2e.udp.lines:1|c} at a steady rate until stopped; C{sent}
    counts the lines.
    """

    def __init__(self, host, port):
        threading.Thread.__init__(self, daemon=True)
        self.address = (host, port)
        self.stop = threading.Event()
        self.sent = 0

    def run(self):
        packet = b"\n".join([b"e2e.udp.lines:1|c"] * LINES_PER_PACKET)
        interval = LINES_PER_PACKET / LINES_PER_SECOND
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            due = time.monotonic()
            while not self.stop.is_set():
                sock.sendto(packet, self.address)
                self.sent += LINES_PER_PACKET
                due += interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


def test_large_import_under_statsd_load(server, tmp_path):
    """A 16 MB NDJSON import completes under 2000 statsd lines/s: no line lost, health answers, memory bounded."""
    path = tmp_path / "import.ndjson"
    rows, total = write_import(path)
    size = path.stat().st_size
    before = server.get_json("/api/health")["received"]["udp_lines"]
    load = StatsdLoad(server.host, server.udp_port)
    health = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            began = time.monotonic()
            try:
                answer = server.get_json("/api/health")
            except Exception as e:  # a timeout: the reactor is held
                health.append((float("inf"), repr(e)))
            else:
                health.append((time.monotonic() - began, answer.get("imports") or []))
            done.wait(0.25)

    poller = threading.Thread(target=poll, daemon=True)
    load.start()
    poller.start()
    try:
        conn = http.client.HTTPConnection(server.host, server.http_port, timeout=IMPORT_TIMEOUT)
        with open(path, "rb") as f:
            conn.request("POST", "/api/import?format=ndjson", body=f,
                         headers={"Content-Length": str(size)})
            response = conn.getresponse()
            answer = json.loads(response.read())
        conn.close()
    finally:
        done.set()
        load.stop.set()
        load.join()
        poller.join()
    assert response.status == 200, answer
    assert answer == {"imported": rows, "series": IMPORT_SERIES, "format": "ndjson"}

    # /api/health answered during the import and showed it at work.
    assert health, "no /api/health answer during the import"
    assert max(seconds for seconds, _ in health) < 5.0, sorted(health, key=lambda h: h[0])[-3:]
    phases = {job["phase"] for _, imports in health for job in imports}
    assert "applying" in phases, phases

    # Every statsd line arrived and was counted.
    deadline = time.monotonic() + 15
    while True:
        received = server.get_json("/api/health")["received"]["udp_lines"] - before
        if received >= load.sent or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert received == load.sent
    assert sum_counts(server, "e2e.udp.lines") == load.sent

    # Every imported point is stored.
    imported = sum(sum_counts(server, "e2e.import.s%d" % i) for i in range(IMPORT_SERIES))
    assert imported == total

    assert peak_rss(server.pid) < PEAK_RSS_BOUND, peak_rss(server.pid)
