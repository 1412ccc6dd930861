"""
A storm against the running server: random bytes, over-long lines,
half-open connections, clients that never read their answers, malformed
statsd packets and garbage HTTP, on all three ports at once, while a
well-behaved client sends known data over TCP and UDP.

Afterwards the process is alive, every good point is there (exact counts and
sums), and the server's own counters of what it dropped equal what the storm
sent.  Every hostile input is built so that the test knows exactly how the
server must count it: random TCP bytes contain no C{[} or C{-}, so every
complete line is a bad line; random statsd bytes contain no C{|}, so every
non-empty line is a bad metric.  Each TCP storm client half-closes and reads
its answers to the end, checking it got one per line; the clients whose
point is not reading read only after the server has stopped reading them.
UDP has no flow control, so the kernel's drop count for the server's socket
(/proc/net/udp) enters the UDP accounting.

The storm is bounded: a fixed number of connections, bytes and packets, and
every socket operation has a deadline.
"""

import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from serverproc import TupleConnection

MAX_LINE = 1024
MAX_CONNECTIONS = 200
MAX_UPLOAD = 1 << 20
MAX_PACKET = 2048
FLAGS = ("--max-line-length", str(MAX_LINE), "--max-connections", str(MAX_CONNECTIONS),
         "--max-upload-bytes", str(MAX_UPLOAD), "--max-packet-size", str(MAX_PACKET))
HINT = b"--Hint: send data of the form [name:str, timestamp:float, data:float]\r\n"
REFUSED = b"--ERROR too many connections"
DEADLINE = 30.0

# Known-bad TCP lines, each one bad line.
BAD_LINES = [b'["storm.bad", "x", 1]', b'["", null, 1]', b'{"a": 1}', b"NaN", b'["storm.bad", null]',
             b'["storm.bad", null, "1q"]', b"--nope", b"   ", b'[["storm.bad", null, 1], 5]',
             b'["storm.bad", null, 1, {"bad key": 1}]', b"\xff\xfe", b'["storm.good.tcp", null, "1c"]']
# Known-bad statsd lines, each one bad metric.
BAD_METRICS = [b"storm.udpbad:1|zz", b"storm.udpbad:x|c", b"storm.udpbad:nan|ms", b":1|c",
               b"storm.udpbad:1|c|@0", b"storm.udpbad", b"storm.udpbad:1", b"storm.udpbad:\xff|c",
               b"_e{9,1}:a|b"]


def random_bytes(rng, size, forbidden):
    data = bytearray(rng.getrandbits(8) for _ in range(size))
    for byte in forbidden:
        data = data.replace(bytes([byte]), b"x")
    return bytes(data)


def expected_lines(data, max_length):
    """
    How many complete lines of C{data} the server reads, and whether it
    then closes on an over-long line.
    """
    *lines, rest = data.split(b"\n")
    for count, line in enumerate(lines):
        if len(line) > max_length:
            return count, True
    return len(lines), len(rest) > max_length


class Tally:
    """
    What the storm sent and what the server must have counted, added up by
    many threads.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.figures = {}

    def add(self, **amounts):
        with self.lock:
            for name, amount in amounts.items():
                self.figures[name] = self.figures.get(name, 0) + amount

    def __getitem__(self, name):
        return self.figures.get(name, 0)


def connect(server, rcvbuf=None):
    """
    A socket to the tuple port and whether the server took it (it read the
    hint) or refused it for the connection limit.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((server.host, server.tcp_port))
    greeting = b""
    while not greeting.endswith(b"\n"):
        chunk = sock.recv(len(HINT) - len(greeting))
        if not chunk:
            break
        greeting += chunk
    if greeting == HINT:
        return sock, True
    assert greeting.startswith(REFUSED), greeting
    sock.close()
    return None, False


def drain(sock, deadline):
    """
    Everything the server sends until it closes (or resets) the connection.
    """
    received = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received.append(chunk)
    return b"".join(received)


def send_all(sock, data):
    """
    Send C{data}; C{False} when the server hung up first (after an
    over-long line).
    """
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


# -- the storm's clients ------------------------------------------------------


def tcp_random_bytes(server, tally, seed):
    """Random bytes with no '[' or '-' in random reads: every complete line is bad."""
    rng = random.Random(seed)
    sock, taken = connect(server)
    if not taken:
        tally.add(refused_by_us=1)
        return
    data = random_bytes(rng, rng.randint(1000, 40000), b"[-")
    if rng.random() < 0.3:
        data += b"z" * (MAX_LINE + rng.randint(1, 200))
    lines, too_long = expected_lines(data, MAX_LINE)
    tally.add(tcp_bytes=len(data), tcp_bad=lines + too_long, tcp_too_long=int(too_long),
              bad_lines_sent=lines)
    with sock:
        position = 0
        while position < len(data):
            size = rng.randint(1, 4096)
            if not send_all(sock, data[position:position + size]):
                break
            position += size
        else:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already closed by the server after an over-long line
        answers = drain(sock, time.monotonic() + DEADLINE).count(b"\r\n")
    if not too_long:
        assert answers == lines, (answers, lines)


def tcp_over_long(server, tally, seed):
    """One line over --max-line-length: an error naming the limit, then the server hangs up."""
    sock, taken = connect(server)
    if not taken:
        tally.add(refused_by_us=1)
        return
    data = b'["storm.long", null, 1]\n' + b'["storm.long", null, "' + b"9" * (MAX_LINE * 4) + b'"]\n'
    tally.add(tcp_bytes=len(data), tcp_bad=1, tcp_too_long=1, long_points=1)
    with sock:
        send_all(sock, data)
        answers = drain(sock, time.monotonic() + DEADLINE)
    assert answers.startswith(b"--OK\r\n--ERROR line longer than %d bytes" % MAX_LINE), answers[:200]


def tcp_bad_lines(server, tally, seed):
    """Known-bad lines, and an HTTP request sent to the tuple port: each line one error."""
    sock, taken = connect(server)
    if not taken:
        tally.add(refused_by_us=1)
        return
    rng = random.Random(seed)
    lines = [rng.choice(BAD_LINES) for _ in range(300)]
    data = b"\n".join(lines) + b"\n"
    data += b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # three more bad lines
    tally.add(tcp_bytes=len(data), tcp_bad=len(lines) + 3, bad_lines_sent=len(lines) + 3)
    with sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answers = drain(sock, time.monotonic() + DEADLINE).split(b"\r\n")
    assert answers.pop() == b""
    assert len(answers) == len(lines) + 3
    assert all(a.startswith(b"--ERROR ") for a in answers), [a for a in answers if b"ERROR" not in a]


def tcp_never_reads(server, tally, seed, stalled):
    """
    Good and bad lines from a client that does not read its answers: the
    server must stop reading it (flow control) rather than buffer without
    bound; once the client reads, every line is answered and every good
    point stored.
    """
    sock, taken = connect(server, rcvbuf=4096)
    if not taken:
        tally.add(refused_by_us=1)
        return
    count = 20000
    name = b"storm.noread.%d" % seed
    lines = b"".join(b'["%s", null, 1]\nx\n' % name for _ in range(count // 2))
    tally.add(tcp_bytes=len(lines), tcp_bad=count // 2, bad_lines_sent=count // 2,
              noread_points=count // 2)
    sock.setblocking(False)
    position = 0
    last_progress = time.monotonic()
    # Send without reading until the server stops taking bytes for a second.
    while position < len(lines):
        try:
            position += sock.send(lines[position:position + 65536])
            last_progress = time.monotonic()
        except BlockingIOError:
            if time.monotonic() - last_progress > 1.0:
                break
            time.sleep(0.01)
    stalled.append(position < len(lines))
    # Now read while sending the rest.
    received = bytearray()
    deadline = time.monotonic() + DEADLINE
    shut = False
    while time.monotonic() < deadline:
        if position < len(lines):
            try:
                position += sock.send(lines[position:position + 65536])
            except BlockingIOError:
                pass
        elif not shut:
            sock.shutdown(socket.SHUT_WR)
            shut = True
        try:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            received += chunk
        except BlockingIOError:
            time.sleep(0.002)
    sock.close()
    assert received.count(b"\r\n") == count, (received.count(b"\r\n"), count)
    assert received.count(b"--OK\r\n") == count // 2


def tcp_half_open(server, tally, seed, release):
    """Connections that send nothing, or half a line, and hold on until the storm ends."""
    held = []
    for i in range(20):
        sock, taken = connect(server)
        if not taken:
            tally.add(refused_by_us=1)
            continue
        if i % 2:
            sock.sendall(b'["storm.half", null, ')
            tally.add(tcp_bytes=21)
        held.append(sock)
    release.wait(DEADLINE)
    for sock in held:
        sock.close()


def udp_garbage(server, tally, seed):
    """
    Datagrams of known damage: five known-bad metrics and one good one,
    three lines of random bytes without '|' (each a bad metric), or one
    over --max-packet-size (refused whole, however good its lines).
    """
    from server.core.model import Limits
    from server.core.parse_statsd import parse_packet

    rng = random.Random(seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(400):
            if i % 40 == 39:
                data = b"\n".join(b"storm.oversize:1|c" for _ in range(MAX_PACKET // 18 + 1))
                assert len(data) > MAX_PACKET
                sock.sendto(data, (server.host, server.udp_port))
                tally.add(udp_packets=1, udp_bytes=len(data), udp_bad=1, udp_too_large=1)
                continue
            if i % 2:
                lines = [random_bytes(rng, rng.randint(1, 400), b"|\n\r") for _ in range(3)]
                kind, bad, good = "udp_random", 3, 0
            else:
                lines = [rng.choice(BAD_METRICS) for _ in range(5)] + [b"storm.good.udpmix:1|c"]
                kind, bad, good = "udp_mix", 5, 1
            data = b"\n".join(lines)
            samples, errors = parse_packet(data, Limits())
            assert (len(errors), len(samples)) == (bad, good), (data, errors)
            sock.sendto(data, (server.host, server.udp_port))
            tally.add(udp_packets=1, udp_bytes=len(data), udp_bad=bad, **{kind: 1})
            time.sleep(0.001)


def udp_drops(port):
    """
    Datagrams the kernel dropped for a full receive buffer on the local UDP
    socket bound to C{port} (the last column of /proc/net/udp).
    """
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                drops += int(fields[-1])
    return drops


def http_garbage(server, tally, seed):
    """Random bytes, huge headers, slow requests, oversized uploads and bad API calls."""
    rng = random.Random(seed)
    address = (server.host, server.http_port)

    def exchange(data, read=True):
        with socket.create_connection(address, timeout=10) as sock:
            if not send_all(sock, data):
                return b""
            if read:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return drain(sock, time.monotonic() + 10)
            return b""

    for _ in range(10):
        data = random_bytes(rng, rng.randint(10, 5000), b" ")
        tally.add(http_bytes=len(data), http_requests=1)
        exchange(data)
    # A request line and header block over Twisted's limits.
    for data in (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nX: " + b"b" * 100000 + b"\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 1000 + b"\r\n",
                 b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00",
                 b"GET /api/health HTTP/9.9\r\n\r\n", b"BREW /api/health HTTP/1.1\r\n\r\n"):
        tally.add(http_bytes=len(data), http_requests=1)
        exchange(data)
    # Uploads announced over the limit: 413 before the body is read.
    for _ in range(5):
        head = (b"POST /api/import HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % (MAX_UPLOAD * 1000,))
        answer = exchange(head + b"x" * 1000)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        tally.add(http_bytes=len(head) + 1000, http_requests=1, too_large=1)
    # A chunked upload that grows past the limit.
    for _ in range(2):
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"POST /api/import HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            sent = 0
            chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
            while sent <= MAX_UPLOAD + 65536 and send_all(sock, chunk):
                sent += 65536
            answer = drain(sock, time.monotonic() + 10)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            tally.add(http_bytes=sent, http_requests=1, too_large=1)
    # Bad API calls: a JSON error each, counted in simplestats.http.errors.
    for path in (b"/api/series?name=storm.nope", b"/api/metrics?filter=/(/",
                 b"/api/series?name=storm.good.tcp&from=yesterday", b"/api/export?format=xml"):
        answer = exchange(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404")), answer[:200]
        assert b"application/json" in answer
        tally.add(http_requests=1, api_errors=1)


def http_slow(server, tally, release):
    """Requests that stop half-way through their headers and hold on."""
    held = []
    for _ in range(10):
        sock = socket.create_connection((server.host, server.http_port), timeout=10)
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    release.wait(DEADLINE)
    for sock in held:
        sock.close()


# -- the well-behaved clients -----------------------------------------------------


def good_tcp(server, tally, now):
    """Known points in batches and single lines, every one acknowledged."""
    with TupleConnection(server.host, server.tcp_port, timeout=10) as conn:
        assert conn.read_line() == HINT
        values = 0
        points = 0
        for batch in range(200):
            items = []
            for i in range(20):
                n = batch * 20 + i
                items.append(b'["storm.good.tcp", %.2f, %d]' % (now - 600 + n * 0.1, n))
                values += n
            assert conn.request(b"[" + b",".join(items) + b"]") == b"--OK 20\r\n"
            points += 20
        for n in range(4000, 5000):
            assert conn.request(b'["storm.good.tcp", null, %d]' % n) == b"--OK\r\n"
            values += n
            points += 1
    tally.add(good_tcp_points=points, good_tcp_sum=values)


def good_udp(server, tally):
    """Known counters and timers over statsd, paced so the kernel drops none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(1500):
            data = b"storm.good.udp:1|c\nstorm.good.udpt:%d|ms" % (n,)
            sock.sendto(data, (server.host, server.udp_port))
            tally.add(udp_packets=1, udp_bytes=len(data), good_udp_timer_sum=n)
            time.sleep(0.001)
    tally.add(good_udp_packets=1500)


def connection_flood(server):
    """
    Open connections until ten are refused for --max-connections; a client
    connected before keeps working all along.  Returns how many were refused.
    """
    # The storm's clients are gone; wait until the server has seen each close.
    deadline = time.monotonic() + 20
    while server.get_json("/api/health")["connections"]["tcp"]:
        assert time.monotonic() < deadline, server.get_json("/api/health")["connections"]
        time.sleep(0.1)
    held = []
    refused = 0
    with TupleConnection(server.host, server.tcp_port, timeout=10) as conn:
        assert conn.read_line() == HINT
        try:
            while refused < 10:
                sock, taken = connect(server)
                if taken:
                    held.append(sock)
                else:
                    refused += 1
                assert len(held) < MAX_CONNECTIONS
            assert len(held) == MAX_CONNECTIONS - 1
            assert conn.request(b'["storm.flood", null, 1]') == b"--OK\r\n"
        finally:
            for sock in held:
                sock.close()
    return refused


# -- reading the results -------------------------------------------------------------


def series_total(server, name, field, since):
    """
    The sum of C{field} of series C{name} since C{since}, or 0 when it does
    not exist (asked through /api/metrics, so no 404 is counted as an error).
    """
    listed = server.get_json("/api/metrics", {"filter": "/^%s$/" % name.replace(".", r"\.")})
    if not listed["metrics"]:
        return 0
    body = server.get_json("/api/series", {"name": name, "fields": field, "from": "%d" % since,
                                           "resolution": "5s"})
    return sum(v for _, v in body["fields"][field] if v is not None)


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def test_storm_on_every_port(make_server):
    """Random bytes, over-long lines, stalled and non-reading clients, bad packets and garbage HTTP at once: nothing good lost, every drop counted."""
    server = make_server(*FLAGS).start()
    started = time.time()
    since = started - 60
    tally = Tally()
    release = threading.Event()
    stalled = []
    now = time.time()
    with ThreadPoolExecutor(max_workers=48) as pool:
        holders = [pool.submit(tcp_half_open, server, tally, 0, release),
                   pool.submit(http_slow, server, tally, release)]
        jobs = [pool.submit(good_tcp, server, tally, now), pool.submit(good_udp, server, tally)]
        jobs += [pool.submit(tcp_random_bytes, server, tally, seed) for seed in range(30)]
        jobs += [pool.submit(tcp_over_long, server, tally, seed) for seed in range(5)]
        jobs += [pool.submit(tcp_bad_lines, server, tally, seed) for seed in range(5)]
        jobs += [pool.submit(tcp_never_reads, server, tally, seed, stalled) for seed in range(3)]
        jobs += [pool.submit(udp_garbage, server, tally, seed) for seed in range(2)]
        jobs += [pool.submit(http_garbage, server, tally, seed) for seed in range(2)]
        try:
            for job in jobs:
                job.result(timeout=120)
        finally:
            release.set()
        for job in holders:
            job.result(timeout=60)
    storm_seconds = time.time() - started
    assert server.running, server.error("the server died in the storm")
    assert tally["refused_by_us"] == 0, "the storm stayed under --max-connections"
    refused = connection_flood(server)

    # Every good point is there, exactly.
    assert server.get_json("/api/health")["status"] == "ok"
    body = server.get_json("/api/series", {"name": "storm.good.tcp", "fields": "count,sum",
                                           "from": "%d" % (now - 700), "resolution": "5s"})
    count = sum(v for _, v in body["fields"]["count"] if v)
    total = sum(v for _, v in body["fields"]["sum"] if v)
    assert (count, total) == (tally["good_tcp_points"], tally["good_tcp_sum"])
    for seed in range(3):
        name = "storm.noread.%d" % seed
        body = server.get_json("/api/series", {"name": name, "fields": "count", "from": "%d" % since})
        assert sum(v for _, v in body["fields"]["count"] if v) == tally["noread_points"] // 3
    assert series_total(server, "storm.long", "count", since) == tally["long_points"]
    assert series_total(server, "storm.half", "count", since) == 0
    assert series_total(server, "storm.flood", "count", since) == 1

    # The server's own counters, emitted every 5 s, match what the storm sent.
    expected = {
        ("simplestats.tcp.bad", "count"): tally["tcp_bad"],
        ("simplestats.tcp.too_long", "count"): tally["tcp_too_long"],
        ("simplestats.http.too_large", "count"): tally["too_large"],
        ("simplestats.http.errors", "count"): tally["api_errors"],
        ("simplestats.tcp.refused_connections", "count"): refused,
    }
    udp_keys = [("simplestats.udp.packets", "count"), ("simplestats.udp.bad", "count"),
                ("simplestats.udp.too_large", "count"),
                ("storm.good.udp", "count"), ("storm.good.udpt", "count"),
                ("storm.good.udpt", "sum"), ("storm.good.udpmix", "count")]
    # UDP has no flow control: while the reactor is busy with the TCP storm
    # the kernel may drop datagrams for a full receive buffer, before the
    # server sees them.  Every datagram sent is either counted by the server
    # or in the kernel's drop count, and what arrived is counted exactly.
    deadline = time.monotonic() + 25
    while True:
        found = {key: series_total(server, key[0], key[1], since) for key in expected}
        udp = {key: series_total(server, key[0], key[1], since) for key in udp_keys}
        drops = udp_drops(server.udp_port)
        received = udp[("simplestats.udp.packets", "count")]
        if (found == expected and received + drops == tally["udp_packets"]) \
                or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert found == expected, server.error("counters %r, expected %r" % (found, expected))
    assert received + drops == tally["udp_packets"], (received, drops, tally["udp_packets"])
    good = udp[("storm.good.udp", "count")]
    mixed = udp[("storm.good.udpmix", "count")]
    too_large = udp[("simplestats.udp.too_large", "count")]
    random_received = received - good - mixed - too_large
    assert 0 <= random_received <= tally["udp_random"]
    assert udp[("simplestats.udp.bad", "count")] == 5 * mixed + 3 * random_received + too_large
    assert udp[("storm.good.udpt", "count")] == good
    assert series_total(server, "storm.oversize", "count", since) == 0
    if drops == 0:
        assert (good, mixed, too_large) == (tally["good_udp_packets"], tally["udp_mix"],
                                            tally["udp_too_large"])
        assert udp[("storm.good.udpt", "sum")] == tally["good_udp_timer_sum"]
    else:
        assert good <= tally["good_udp_packets"] and mixed <= tally["udp_mix"]
        assert too_large <= tally["udp_too_large"]
    # The clients that did not read made the server stop reading them.
    paused = series_total(server, "simplestats.tcp.paused", "count", since)
    assert paused > 0
    peak = vm_hwm_kib(server.pid)
    assert server.running

    print("\nstorm: %.1f s; TCP %d bytes (%d bad lines sent, %d over-long), %d good TCP points;"
          " UDP %d packets (%d bytes, %d bad metrics, %d over the size limit), %d good UDP"
          " packets, %d dropped by the kernel; HTTP %d requests"
          " (%d bytes, %d over the upload limit, %d API errors); reading paused %d times"
          " (%d of 3 non-reading clients blocked in send); %d connections refused at the limit;"
          " server peak RSS %d MiB"
          % (storm_seconds, tally["tcp_bytes"], tally["bad_lines_sent"], tally["tcp_too_long"],
             tally["good_tcp_points"], tally["udp_packets"], tally["udp_bytes"], tally["udp_bad"],
             tally["udp_too_large"], tally["good_udp_packets"], drops, tally["http_requests"], tally["http_bytes"],
             tally["too_large"], tally["api_errors"], paused, sum(stalled), refused, peak // 1024))
    server.stop()


def test_half_closed_client_gets_every_answer(server):
    """A client that sends its lines, then shuts down its sending side, still reads every answer."""
    for count in (1, 10, 3000):
        with socket.create_connection((server.host, server.tcp_port), timeout=10) as sock:
            sock.sendall(b"".join(b'["storm.halfclose", null, %d]\n' % i for i in range(count)))
            sock.shutdown(socket.SHUT_WR)
            answers = drain(sock, time.monotonic() + DEADLINE)
        assert answers == HINT + b"--OK\r\n" * count
