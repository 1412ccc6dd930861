"""
End to end: a set of a million distinct members, sent as TCP set partials to
a real server process, counts within the sketch's error, and keeps the same
count through a SIGTERM (final snapshot) and a start.
"""

import json
import os
import time

STEP = 5
MEMBERS = 1_000_000
PER_LINE = 10_000
# Three standard errors of the sketch (server/core/cardinality.py RELATIVE_ERROR).
BOUND = 3 * 0.01625


def bucket_count(server, name, ts):
    body = server.get_json("/api/series", {"name": name, "fields": "count", "resolution": "5s",
                                           "from": str(ts - STEP), "until": str(ts + STEP)})
    counts = [v for t, v in body["fields"]["count"] if v is not None]
    assert len(counts) == 1, body
    return counts[0]


def test_million_member_set_counts_within_the_error_and_survives_a_restart(make_server):
    """A million distinct members in one 5 s bucket count within three standard errors, the snapshot holds a few KB for them, and a restart keeps the count."""
    server = make_server("--max-line-length", str(1 << 20)).start()
    # The next bucket (a future time, within --future-limit) takes every
    # line, however long the sending takes; it can be read once it began.
    bucket = (int(time.time()) // STEP + 1) * STEP
    ts = bucket + 1
    started = time.monotonic()
    with server.connect() as conn:
        conn.read_line()
        for first in range(0, MEMBERS, PER_LINE):
            partial = {"type": "s", "members": ["user-%d" % k for k in range(first, first + PER_LINE)]}
            line = json.dumps(["e2e.sets.users", ts, partial]).encode()
            assert conn.request(line) == b"--OK\r\n"
    assert time.monotonic() - started < 30
    time.sleep(max(0.0, bucket - time.time() + 0.1))
    count = bucket_count(server, "e2e.sets.users", ts)
    assert abs(count - MEMBERS) <= BOUND * MEMBERS, count

    server.stop()
    snapshot = os.path.join(server.data_dir, "snapshot.jsonl.gz")
    assert os.path.getsize(snapshot) < 64 * 1024
    server.start()
    assert bucket_count(server, "e2e.sets.users", ts) == count
