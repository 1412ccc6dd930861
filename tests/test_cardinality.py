"""
The cardinality bomb: a million distinct metric names over statsd UDP
against a server started with --max-series 50000.  The names beyond the
limit are refused and counted, memory stays bounded, and a series created
before the bomb keeps taking points.
"""

import socket
import time

from serverproc import TupleConnection

MAX_SERIES = 50000
NAMES = 1000000
PACKET_BYTES = 8000
# Keep what waits in the server's UDP socket under this many bytes, so the
# kernel drops nothing and the counts can be exact (statsd has no flow
# control of its own; the test reads the socket's queue from /proc).
QUEUE_LIMIT = 1 << 20

# Peak RSS bound, from measurement (2 CPUs, CPython 3.11, eight runs): the
# idle server peaks at about 55 MiB; the 50000 series the bomb creates cost
# about 1.7 KiB each (RSS 138-140 MiB when the limit is reached); their first
# rollups add 15-30 MiB, and a snapshot of them (the test waits for one)
# holds the encoded store twice over for a moment, about 35 MiB more: peaks
# of 155-202 MiB measured.  The bound leaves 40 % on top of the highest.
PEAK_BOUND_MIB = 288
# The 950000 names refused after the limit must cost no memory that stays:
# from the moment the limit is reached the peak may grow only by the
# rollups and the snapshot (15-64 MiB measured).  Keeping a mere 100 bytes
# per refused name (a set of them, say) would add 90 MiB on its own and
# break one bound or the other.
GROWTH_BOUND_MIB = 96


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def udp_socket_state(port):
    """
    C{(bytes queued, datagrams dropped)} of the local UDP socket on C{port}.
    """
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return int(fields[4].split(":")[1], 16), int(fields[-1])
    raise AssertionError("no UDP socket on port %d" % (port,))


def total(server, name, field="count"):
    listed = server.get_json("/api/metrics", {"filter": "/^%s$/" % name.replace(".", r"\.")})
    if not listed["metrics"]:
        return 0
    body = server.get_json("/api/series", {"name": name, "fields": field, "from": "-10m",
                                           "resolution": "5s"})
    return sum(v for _, v in body["fields"][field] if v is not None)


def packets():
    """
    The bomb as datagrams of about L{PACKET_BYTES}: C{card.mNNNNNNN:1|c} lines.
    """
    n = 0
    while n < NAMES:
        lines = []
        size = 0
        while size < PACKET_BYTES and n < NAMES:
            line = b"card.m%07d:1|c" % n
            lines.append(line)
            size += len(line) + 1
            n += 1
        yield n, b"\n".join(lines)


def test_a_million_names(make_server):
    """A million distinct names with --max-series 50000: refusals counted, RSS bounded, old series still taking points."""
    server = make_server("--max-series", str(MAX_SERIES), "--snapshot-interval", "8").start()
    with TupleConnection(server.host, server.tcp_port, timeout=10) as conn:
        conn.read_line()
        assert conn.request(b'["card.before", null, 1]') == b"--OK\r\n"

    started = time.monotonic()
    rss_at_limit = None
    sent_packets = sent_bytes = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for count, data in packets():
            if sent_packets % 10 == 0:
                while udp_socket_state(server.udp_port)[0] > QUEUE_LIMIT:
                    assert time.monotonic() - started < 60, "the server stopped reading UDP"
                    time.sleep(0.002)
            sock.sendto(data, (server.host, server.udp_port))
            sent_packets += 1
            sent_bytes += len(data)
            if rss_at_limit is None and count > MAX_SERIES and sent_packets % 20 == 0:
                if server.get_json("/api/health")["series"] >= MAX_SERIES:
                    rss_at_limit = proc_status(server.pid, "VmRSS")
    send_seconds = time.monotonic() - started
    assert rss_at_limit is not None

    # Wait for the server to have read every datagram and emitted its counts.
    deadline = time.monotonic() + 30
    while True:
        received = total(server, "simplestats.udp.packets")
        if received == sent_packets or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    queued, dropped = udp_socket_state(server.udp_port)
    assert (received, dropped) == (sent_packets, 0)
    elapsed = time.monotonic() - started
    assert elapsed < 60

    # The series before the bomb still takes points; a new one is refused.
    with TupleConnection(server.host, server.tcp_port, timeout=10) as conn:
        conn.read_line()
        assert conn.request(b'["card.before", null, 2]') == b"--OK\r\n"
        assert conn.request(b'["card.after", null, 1]') == (
            b"--ERROR series limit of %d reached: new series 'card.after' refused\r\n" % MAX_SERIES)
    body = server.get_json("/api/series", {"name": "card.before", "fields": "count,sum"})
    assert sum(v for _, v in body["fields"]["count"] if v) == 2
    assert sum(v for _, v in body["fields"]["sum"] if v) == 3

    # Every name beyond the limit is counted as refused: the accepted ones
    # are the UDP points, and the refused TCP line is one more.
    accepted = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        accepted = total(server, "simplestats.udp.points")
        refused = total(server, "simplestats.series.refused")
        if accepted + refused == NAMES + 1:
            break
        time.sleep(0.5)
    assert accepted + refused == NAMES + 1, (accepted, refused)
    own = server.get_json("/api/metrics", {"filter": "/^simplestats\\./"})["count"]
    # The bomb filled the limit less the series there before it (card.before
    # and the server's own series emitted by then).
    assert MAX_SERIES - 1 - own <= accepted <= MAX_SERIES - 1
    assert server.get_json("/api/health")["series"] == 1 + accepted + own
    assert total(server, "simplestats.udp.bad") == refused - 1

    # Let a snapshot of the full store finish, so the peak includes one.
    deadline = time.monotonic() + 30
    while (server.get_json("/api/health")["snapshot"]["series"] or 0) < MAX_SERIES:
        assert time.monotonic() < deadline, "no snapshot of the full store within 30 s"
        time.sleep(0.5)
    peak = proc_status(server.pid, "VmHWM")
    assert peak < PEAK_BOUND_MIB * 1024, "peak RSS %d MiB" % (peak // 1024)
    assert peak - rss_at_limit < GROWTH_BOUND_MIB * 1024, (
        "RSS %d MiB at the limit, peak %d MiB" % (rss_at_limit // 1024, peak // 1024))
    snapshot = server.get_json("/api/health")["snapshot"]
    print("\ncardinality: %d names in %d datagrams (%d bytes) sent in %.1f s, all read in %.1f s;"
          " %d series created, %d refused; RSS %d MiB at the limit, peak %d MiB (bound %d);"
          " last snapshot %s series in %.1f s"
          % (NAMES, sent_packets, sent_bytes, send_seconds, elapsed, accepted, refused,
             rss_at_limit // 1024, peak // 1024, PEAK_BOUND_MIB, snapshot["series"],
             snapshot["duration"] or 0))
    server.stop()
