"""
bench/client_bench.py on a small load: what its sink counts is what the
client sent, and the statsd figures are computed from the same values.
"""

import json
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench import client_bench  # noqa: E402


def test_minute_of_timers_small():
    """5 timers at 50 values/s for 10 simulated s: one partial per timer and bucket, statsd bytes from its lines."""
    got = client_bench.minute_of_timers(5, 50, 10)
    tcp = got["ours_tcp"]
    assert got["calls"] == 5 * 50 * 10
    assert tcp["partials"] == 5 * 2 and tcp["lines"] == 2
    assert got["statsd"]["datagrams"] == got["calls"]
    values = client_bench.values(50 * 7, seed=2)
    # Every statsd line is name:%0.6f|ms; the mean line length bounds the total.
    shortest = len("bench.timer.000:") + len("%0.6f" % min(values)) + 3
    assert got["statsd"]["payload_bytes"] >= shortest * got["calls"]
    assert got["statsd"]["wire_bytes"] == got["statsd"]["payload_bytes"] + 28 * got["calls"]
    assert 0 < tcp["payload_bytes"] < got["statsd"]["payload_bytes"]
    assert got["ours_udp"]["payload_bytes"] > 0


def test_tcp_sink_answers_batches():
    """The sink answers --OK n for a batch of n and counts the bytes."""
    import socket
    sink = client_bench.TcpSink()
    try:
        with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as conn:
            line = json.dumps([["a", 1, 1], ["b", 1, 2], ["c", 1, 3]]).encode() + b"\n"
            conn.sendall(line)
            data = b""
            while data.count(b"\n") < 2:
                data += conn.recv(4096)
        assert data.endswith(b"--OK 3\r\n")
        assert sink.bytes == len(line) and sink.items == 3
    finally:
        sink.close()
