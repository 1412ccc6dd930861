"""
End to end: what a real server process keeps across SIGKILL, SIGTERM, a
torn journal record and a damaged snapshot, and what start-up says.
"""

import gzip
import json
import math
import os
import re
import time
import zlib


STEP = 5
SNAPSHOT = "snapshot.jsonl.gz"
JOURNAL = re.compile(r"^journal\.(\d{6,})\.log$")
SERIES = ("e2e.dur.a", "e2e.dur.b", "e2e.dur.c")
# Points start an hour back: inside the 5 s tier, already closed buckets.
BASE = int((time.time() - 3600) // STEP) * STEP


def points(count, first=0):
    """
    Points number C{first} to C{first + count - 1} as C{(name, ts, value)}:
    distinct values, each point alone in its 5 s bucket (so one export row
    per point shows it was stored exactly once), spread over L{SERIES}.
    """
    result = []
    for i in range(first, first + count):
        name = SERIES[i % len(SERIES)]
        result.append((name, BASE + STEP * (i // len(SERIES)), 1000.0 * (i % 7) + i + 0.25))
    return result


def send_acknowledged(server):
    """
    A sender that writes points as single lines and as batches and returns
    the points the server acknowledged with C{--OK} / C{--OK n}.
    """

    def send(items, batch_size=1):
        acknowledged = []
        with server.connect() as conn:
            assert conn.read_line().startswith(b"--Hint:")
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                if batch_size == 1:
                    line = json.dumps(list(chunk[0])).encode()
                    expected = b"--OK\r\n"
                else:
                    line = json.dumps([list(p) for p in chunk]).encode()
                    expected = b"--OK %d\r\n" % (len(chunk),)
                answer = conn.request(line)
                assert answer == expected, (line, answer)
                acknowledged.extend(chunk)
        return acknowledged

    return send


def exported(server):
    """
    Every stored row of the test series, from C{/api/export} as ndjson:
    C{[(name, bucket start, value)]}.
    """
    status, headers, body = server.http("GET", "/api/export",
                                        {"format": "ndjson", "filter": "e2e.dur"})
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in body.decode().splitlines() if line]
    return sorted((row[0], row[1], row[2]) for row in rows)


def assert_all_stored_once(server, acknowledged):
    """
    The export holds exactly the acknowledged points (a point stored twice
    would export as a two-value aggregate), and /api/series agrees.
    """
    assert exported(server) == sorted(acknowledged)
    first = min(ts for _, ts, _ in acknowledged)
    for name in SERIES:
        mine = [v for n, _, v in acknowledged if n == name]
        body = server.get_json("/api/series", {"name": name, "fields": "count,sum",
                                               "from": str(first - STEP), "resolution": "5s"})
        counts = [v for _, v in body["fields"]["count"] if v is not None]
        sums = [v for _, v in body["fields"]["sum"] if v is not None]
        assert (len(counts), sum(counts)) == (len(mine), len(mine)), name
        assert math.isclose(sum(sums), sum(mine)), name


def journals(directory):
    found = sorted((int(m.group(1)), name) for name in os.listdir(directory)
                   for m in [JOURNAL.match(name)] if m)
    return [os.path.join(directory, name) for _, name in found]


def test_acknowledged_points_survive_sigkill(make_server):
    """Every point answered --OK is there, exactly once, after SIGKILL and a restart."""
    server = make_server().start()
    send = send_acknowledged(server)
    wanted = points(240)
    acknowledged = send(wanted[:120]) + send(wanted[120:], batch_size=10)
    assert acknowledged == wanted
    server.kill()
    assert server.returncode == -9

    server.start()
    # The journal also holds the server's own series if it ran for 5 s.
    match = server.wait_for_log(r"recovered 0 series from the snapshot and (\d+) points")
    assert int(match.group(1)) >= 240
    assert_all_stored_once(server, acknowledged)

    # A second crash after more points: the first ones are not replayed twice.
    more = points(30, first=240)
    acknowledged += send(more, batch_size=7)
    server.kill()
    server.start()
    assert_all_stored_once(server, acknowledged)
    server.stop()


def test_clean_stop_exits_zero_and_restart_keeps_everything(make_server):
    """SIGTERM exits 0 after the final snapshot; the restart loads it and replays nothing twice."""
    server = make_server().start()
    send = send_acknowledged(server)
    acknowledged = send(points(60), batch_size=6)
    server.stop()
    assert "final snapshot written" in server.log
    assert "Main loop terminated" in server.log
    data_dir = server.data_dir
    assert os.path.exists(os.path.join(data_dir, SNAPSHOT))
    assert not os.path.exists(os.path.join(data_dir, SNAPSHOT + ".tmp"))
    # The final snapshot covers every journal file but the one just opened.
    assert len(journals(data_dir)) == 1, journals(data_dir)

    server.start()
    match = server.wait_for_log(r"recovered (\d+) series from the snapshot and 0 points")
    assert int(match.group(1)) >= len(SERIES)
    assert_all_stored_once(server, acknowledged)
    server.stop()


def send_measured(server, send, items):
    """
    Send C{items} as one line and return what that line added to the newest
    journal file: C{(path, offset, record bytes)}.  Offsets rather than a
    parse of the file keep these tests independent of the journal's format.
    """
    # The start-up snapshot rotates the journal (in the journal's writer
    # thread, maybe after the ready line): measure after it.
    deadline = time.monotonic() + 10
    while server.get_json("/api/health")["snapshot"]["last"] is None:
        assert time.monotonic() < deadline, "no start-up snapshot"
        time.sleep(0.02)
    path = journals(server.data_dir)[-1]
    before = os.path.getsize(path)
    assert send(items, batch_size=len(items)) == items
    assert journals(server.data_dir)[-1] == path
    with open(path, "rb") as f:
        f.seek(before)
        record = f.read()
    assert record
    return path, before, record


def torn_warning(server, path):
    """
    The start-up warning about C{path}'s torn last record; returns the
    problem it names.
    """
    match = server.wait_for_log(
        r"dropped the torn last record of %s \((.*?)\): "
        r"the process stopped mid-write, that record was never acknowledged"
        % (re.escape(path),))
    return match.group(1)


def test_torn_journal_record_is_dropped_and_reported(make_server):
    """A torn last journal record (a crash mid-write) is dropped at start-up with a warning naming the file."""
    server = make_server().start()
    send = send_acknowledged(server)
    acknowledged = send(points(40))

    # A crash while writing a copy of the last record: half of it at the end.
    last = points(3, first=len(acknowledged))
    path, _, record = send_measured(server, send, last)
    acknowledged += last
    server.kill()
    with open(path, "ab") as f:
        f.write(record[:len(record) // 2])
    server.start()
    # The problem is the reader's own words (e.g. how many bytes it found).
    assert torn_warning(server, path)
    assert_all_stored_once(server, acknowledged)

    # The journal cut short in the middle of its last record: that record
    # is dropped, everything before it is kept.
    acknowledged += send(points(9, first=len(acknowledged)), batch_size=3)
    cut = points(2, first=len(acknowledged))
    path, offset, record = send_measured(server, send, cut)
    server.kill()
    os.truncate(path, offset + len(record) // 2)
    server.start()
    torn_warning(server, path)
    assert_all_stored_once(server, acknowledged)
    server.stop()


def test_corrupt_journal_record_stops_start_up(make_server):
    """Damage before a journal's last record refuses start-up, naming file and record, unless moved aside."""
    server = make_server().start()
    send = send_acknowledged(server)
    path, offset, record = send_measured(server, send, points(1))
    send(points(12, first=1))
    server.kill()
    # Flip one byte in the middle of the first record.
    with open(path, "r+b") as f:
        f.seek(offset + len(record) // 2)
        byte = f.read(1)
        f.seek(offset + len(record) // 2)
        f.write(bytes([byte[0] ^ 0x01]))

    assert server.start_expecting_failure() == 1
    match = re.search(r"\[simplestats#critical\] cannot start: corrupt journal %s record 1 "
                      r"at byte \d+: (.*)\. Start with --move-corrupt-aside to replay every "
                      r"intact record of it and rename it\." % (re.escape(path),), server.log)
    assert match, server.log
    assert "Traceback" not in server.log

    server.start(["--move-corrupt-aside"])
    match = server.wait_for_log(r"moved (\S+) aside to (\S+)")
    assert match.group(1) == path
    # The damaged file is kept aside; its intact records (the 12 points
    # after the damaged one) are replayed.
    assert os.path.exists(match.group(2))
    assert exported(server) == sorted(points(12, first=1))
    server.stop()


def corrupt_middle(path, want):
    """
    Overwrite 16 bytes near the middle of the gzip file at C{path} so that
    decompressing it fails the C{want} way: C{"crc"} (the data inflates but
    its checksum is wrong) or C{"inflate"} (the deflate stream is invalid).
    Returns the offset used.
    """
    with open(path, "rb") as f:
        original = f.read()
    middle = len(original) // 2
    for distance in range(0, middle - 16):
        for offset in (middle + distance, middle - distance):
            for pattern in (b"\x00" * 16, b"\xff" * 16):
                damaged = original[:offset] + pattern + original[offset + 16:]
                try:
                    gzip.decompress(damaged)
                except zlib.error:
                    got = "inflate"
                except gzip.BadGzipFile:
                    got = "crc"
                except (EOFError, OSError):
                    got = "other"
                else:
                    got = "intact"
                if got == want:
                    with open(path, "wb") as f:
                        f.write(damaged)
                    return offset
    raise AssertionError("no 16-byte overwrite of %s fails the %s way" % (path, want))


def test_corrupt_snapshot_stops_start_up_until_moved_aside(make_server, tmp_path):
    """A damaged snapshot refuses start-up with the file and the problem; --move-corrupt-aside starts from the journal."""
    server = make_server().start()
    send = send_acknowledged(server)
    in_snapshot = send(points(60), batch_size=5)
    server.stop()
    server.start()
    assert exported(server) == sorted(in_snapshot)
    in_journal_only = send(points(15, first=60))
    server.kill()
    path = os.path.join(server.data_dir, SNAPSHOT)
    saved = tmp_path / "snapshot-copy.gz"
    with open(path, "rb") as f:
        saved.write_bytes(f.read())

    messages = {}
    for want in ("crc", "inflate"):
        with open(path, "wb") as f:
            f.write(saved.read_bytes())
        corrupt_middle(path, want)
        code = server.start_expecting_failure()
        assert code == 1, (want, code)
        match = re.search(r"\[simplestats#critical\] cannot start: (corrupt snapshot (\S+): "
                          r"cannot decompress: (.*)\. Start with --move-corrupt-aside to "
                          r"rename it and start from the journal alone\.)", server.log)
        assert match, (want, server.log)
        assert match.group(2) == path
        assert "Traceback" not in server.log, want
        messages[want] = match.group(1)
    assert "CRC check failed" in messages["crc"]
    assert "Error -3 while decompressing data" in messages["inflate"]

    server.start(["--move-corrupt-aside"])
    match = server.wait_for_log(r"moved (\S+) aside to (\S+)")
    assert match.group(1) == path
    assert re.fullmatch(re.escape(path) + r"\.corrupt-\d+", match.group(2))
    assert os.path.exists(match.group(2))
    match = server.wait_for_log(r"recovered 0 series from the snapshot and (\d+) points")
    assert int(match.group(1)) >= len(in_journal_only)
    # What only the snapshot held is gone; what the journal held is back.
    assert exported(server) == sorted(in_journal_only)
    server.stop()
