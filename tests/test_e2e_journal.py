"""
End to end: journal damage is told from a torn tail, and one data directory
takes one server (real processes, SIGKILL, bytes flipped on disk).
"""

import json
import os
import re
import time

SERIES = ("e2e.jr.a", "e2e.jr.b", "e2e.jr.c")
STEP = 5
BASE = int((time.time() - 3600) // STEP) * STEP
JOURNAL = re.compile(r"^journal\.(\d{6,})\.log$")
MARKER = b"\xa7SJ\x8e"
HEADER = 17


def points(count, first=0):
    return [(SERIES[i % 3], BASE + STEP * (i // 3), float(i) + 0.5)
            for i in range(first, first + count)]


def send_lines(server, items):
    """
    One line per point; returns the points answered --OK.
    """
    acknowledged = []
    with server.connect() as conn:
        assert conn.read_line().startswith(b"--Hint:")
        for item in items:
            assert conn.request(json.dumps(list(item)).encode()) == b"--OK\r\n"
            acknowledged.append(item)
    return acknowledged


def exported(server):
    status, _, body = server.http("GET", "/api/export", {"format": "ndjson", "filter": "e2e.jr"})
    assert status == 200, body
    rows = [json.loads(line) for line in body.decode().splitlines() if line]
    return sorted((row[0], row[1], row[2]) for row in rows)


def journals(directory):
    found = sorted((int(m.group(1)), name) for name in os.listdir(directory)
                   for m in [JOURNAL.match(name)] if m)
    return [os.path.join(directory, name) for _, name in found]


def records(path):
    """
    C{(record number, offset, payload)} of each record of an SSJ3 file (SSJ2 framing).
    """
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(b"SSJ3\n")
    found = []
    at = 5
    while at < len(data):
        assert data[at:at + 4] == MARKER
        length = int.from_bytes(data[at + 4:at + 8], "big")
        found.append((len(found) + 1, at, data[at + HEADER:at + HEADER + length]))
        at += HEADER + length
    return found


def test_flipped_length_bit_is_named_and_move_aside_keeps_the_rest(make_server):
    """200 acknowledged points, SIGKILL, a bit flipped in the high length byte of point 101's record: start-up refuses naming file and record; --move-corrupt-aside keeps the other 199."""
    server = make_server().start()
    acknowledged = send_lines(server, points(200))
    server.kill()
    path = journals(server.data_dir)[-1]
    target = json.dumps(list(acknowledged[100])).encode()
    found = [(number, at) for number, at, payload in records(path) if payload.endswith(target)]
    assert len(found) == 1, found
    number, at = found[0]
    with open(path, "r+b") as f:
        f.seek(at + 4)
        high = f.read(1)
        f.seek(at + 4)
        f.write(bytes([high[0] ^ 0x10]))

    assert server.start_expecting_failure() == 1
    match = re.search(r"cannot start: corrupt journal %s record (\d+) at byte (\d+): (.*?)\. "
                      r"Start with --move-corrupt-aside" % (re.escape(path),), server.log)
    assert match, server.log
    assert (int(match.group(1)), int(match.group(2))) == (number, at)
    assert "header checksum" in match.group(3)
    assert "torn" not in server.log
    assert "Traceback" not in server.log

    server.start(["--move-corrupt-aside"])
    server.wait_for_log(r"journal %s record %d \(byte %d\) is damaged and skipped"
                        % (re.escape(path), number, at))
    moved = server.wait_for_log(r"moved (\S+) aside to (\S+)")
    assert moved.group(1) == path and os.path.exists(moved.group(2))
    kept = acknowledged[:100] + acknowledged[101:]
    assert exported(server) == sorted(kept)
    assert len(kept) == 199
    server.kill()

    # The intact records stay under the file's own name: a plain restart
    # (after a crash) still has all 199.
    server.start()
    assert exported(server) == sorted(kept)
    server.stop()


def test_second_server_on_a_data_directory_refuses(make_server):
    """A second server on the same data directory exits naming the first's PID; the first keeps every acknowledged point through SIGKILL."""
    first = make_server().start()
    acknowledged = send_lines(first, points(100))
    second = make_server()
    assert second.data_dir == first.data_dir
    code = second.start_expecting_failure()
    assert code == 1
    assert re.search(r"cannot start: data directory \S+ is in use by another SimpleStats server "
                     r"\(pid %d holds" % (first.pid,), second.log), second.log
    # The first server goes on; what it acknowledged survives its crash.
    acknowledged += send_lines(first, points(10, first=100))
    first.kill()
    first.start()
    assert exported(first) == sorted(acknowledged)
    assert len(acknowledged) == 110
    first.stop()
