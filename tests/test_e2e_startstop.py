"""
End to end, start and stop at scale: with 100k series in the data
directory the ports listen at once while /api/health says "recovering",
statsd packets and TCP lines sent meanwhile are all kept, and SIGTERM ends
the process within a bound.
"""

import json
import re
import signal
import socket
import time

from serverproc import ServerError, TupleConnection

SERIES = 100_000
BATCH = 5000
PACKETS = 300
LISTENING = re.compile(
    r"SimpleStats listening: tcp=(?P<host>[^:\s]+):(?P<tcp>\d+) udp=[^:\s]+:(?P<udp>\d+) "
    r"http=[^:\s]+:(?P<http>\d+) ")
# Loose, for a loaded machine: measured about 1.5 s to listen and 5-25 s
# to stop with 100k-500k series (see the report of issue #11).
LISTEN_WITHIN = 5.0
STOP_WITHIN = 15.0


def fill(server):
    """
    C{SERIES} counters of one point each, through TCP batch lines.
    """
    with server.connect(timeout=30) as conn:
        assert conn.read_line().startswith(b"--Hint")
        for first in range(0, SERIES, BATCH):
            batch = [["big.s%06d" % i, None, "1c"] for i in range(first, first + BATCH)]
            assert conn.request(json.dumps(batch).encode()) == b"--OK %d\r\n" % (BATCH,)


def health(server):
    try:
        status, _, body = server.http("GET", "/api/health", timeout=5)
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def test_ports_listen_while_recovering_and_nothing_sent_meanwhile_is_lost(make_server):
    """With 100k series: ports listen within seconds, health says recovering, UDP and TCP sent meanwhile all count, SIGTERM ends quickly."""
    server = make_server("--max-series", "200000", "--max-line-length", "1000000")
    server.start()
    fill(server)
    server.stop(timeout=60)

    began = time.monotonic()
    server.spawn()
    match = server.wait_for_log(LISTENING.pattern, timeout=LISTEN_WITHIN + 5)
    server.host = match.group("host")
    server.tcp_port, server.udp_port, server.http_port = (
        int(match.group(n)) for n in ("tcp", "udp", "http"))
    conn = TupleConnection(server.host, server.tcp_port, timeout=60)
    listened = time.monotonic() - began
    assert listened < LISTEN_WITHIN, listened
    assert conn.read_line().startswith(b"--Hint")  # answered at once
    conn.send(b'["during.tcp", null, "3c"]\n')

    first = health(server)
    assert first is not None and first["status"] == "recovering", first
    # 100k series take seconds to load: the first answer comes while they do.
    assert first["recovery"]["phase"] == "snapshot", first
    assert first["recovery"]["series_total"] >= SERIES, first
    status, _, body = server.http("GET", "/api/metrics")
    assert status == 503 and b"recovering" in body, (status, body)

    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while sent < PACKETS:
            sock.sendto(b"during.udp:1|c", (server.host, server.udp_port))
            sent += 1
            if sent % 50 == 0:
                time.sleep(0.05)
    progress = []
    deadline = time.monotonic() + 60
    while True:
        answer = health(server)
        if answer is not None:
            if answer["status"] == "ok":
                break
            assert answer["status"] == "recovering", answer
            progress.append(answer["recovery"]["series_loaded"])
        if time.monotonic() > deadline:
            raise server.error("still recovering after 60 s")
        time.sleep(0.1)
    assert progress == sorted(progress) and progress[-1] > 0, progress
    assert answer["series"] >= SERIES + 1  # during.udp (during.tcp is read just after)
    assert answer["recovery"]["queued_packets"] == PACKETS
    assert answer["recovery"]["dropped_packets"] == 0
    # The held line is read and acknowledged once recovery is over.
    assert conn.read_line() == b"--OK\r\n"
    conn.close()

    for name, want in (("during.udp", PACKETS), ("during.tcp", 3), ("big.s099999", 1)):
        status, _, body = server.http("GET", "/api/series", {"name": name, "fields": "count"})
        assert status == 200, (name, body)
        counts = [v for _, v in json.loads(body)["fields"]["count"] if v is not None]
        assert sum(counts) == want, (name, counts)

    # The reactor was never held long after the ports listened (loose on a
    # shared machine; measured at most about 60 ms with 500k series).
    worst = max(ms for _, ms in answer["reactor"]["seconds"])
    assert worst < 300, answer["reactor"]["seconds"]

    stopping = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0
    took = time.monotonic() - stopping
    assert took < STOP_WITHIN, took
    assert "Traceback" not in server.log
    if "final snapshot written" not in server.log:
        raise ServerError("no final snapshot:\n" + server.log[-3000:])
