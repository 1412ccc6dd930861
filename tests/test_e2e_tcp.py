"""
End to end: the TCP tuple protocol of a real server process, over a real
socket, byte for byte as a telnet user sees it.
"""

import time

import pytest

HINT = b"--Hint: send data of the form [name:str, timestamp:float, data:float]\r\n"
OK = b"--OK\r\n"
ARITY_ERROR = (b"--ERROR expected [name, timestamp, value] or [name, timestamp, value, tags],"
               b" got 2 elements\r\n")
VALUE_ERROR = (b'--ERROR value "abc" is not understood: expected a number or a number followed'
               b' by c (counter), ms (timer), g (gauge, "+3g"/"-2g" for a change), h (histogram)'
               b' or d (distribution)\r\n')
MAX_LINE = 64


@pytest.fixture
def server(shared_server):
    """
    The tests here share one server: each writes series of its own names.
    """
    return shared_server


def stored_count(server, name):
    """
    How many points the series C{name} holds over the last hour (0 when the
    server does not know it).
    """
    status, _, _ = server.http("GET", "/api/series", {"name": name, "fields": "count"})
    if status == 404:
        return 0
    body = server.get_json("/api/series", {"name": name, "fields": "count"})
    return sum(v for _, v in body["fields"]["count"] if v is not None)


def test_telnet_session_byte_for_byte(server):
    """A telnet session: the hint, --OK, --ERROR naming the problem, and the connection goes on."""
    now = time.time()
    with server.connect() as conn:
        assert conn.read_line() == HINT
        assert conn.request(b'["e2e.tcp.cpu", %.3f, 0.75]' % (now - 2,)) == OK
        assert conn.request(b'["e2e.tcp.cpu", 1700000000]') == ARITY_ERROR
        assert conn.request(b'["e2e.tcp.cpu", %.3f, "abc"]' % (now - 1,)) == VALUE_ERROR
        assert conn.request(b'["e2e.tcp.cpu", %.3f, 0.5]' % (now,)) == OK
        assert conn.request(b'["e2e.tcp.cpu", null, 0.25]') == OK
    assert stored_count(server, "e2e.tcp.cpu") == 3


def test_batch_is_answered_with_its_size(server):
    """A JSON array of tuples is one batch: --OK n, or one error and nothing stored."""
    now = time.time()
    with server.connect() as conn:
        assert conn.read_line() == HINT
        batch = b'[["e2e.tcp.batch", %.3f, 1], ["e2e.tcp.batch", %.3f, 2, {"host": "web1"}]]' % (
            now - 1, now)
        assert conn.request(batch) == b"--OK 2\r\n"
        bad = b'[["e2e.tcp.refused", null, 1], ["e2e.tcp.refused", null]]'
        answer = conn.request(bad)
        assert answer.startswith(b"--ERROR item 2: expected [name, timestamp, value]"), answer
        assert answer.endswith(b"got 2 elements\r\n"), answer
        assert conn.request(b'["e2e.tcp.batch", null, 3]') == OK
    assert stored_count(server, "e2e.tcp.batch") == 2
    body = server.get_json("/api/series", {"name": "e2e.tcp.batch", "tags": "host:web1",
                                           "fields": "count"})
    assert sum(v for _, v in body["fields"]["count"] if v) == 1
    assert stored_count(server, "e2e.tcp.refused") == 0


def test_quiet_answers_errors_only(server):
    """After --quiet a good line gets no answer and a bad one still gets its error."""
    with server.connect() as conn:
        assert conn.read_line() == HINT
        conn.send(b"--quiet\n")
        conn.send(b'["e2e.tcp.quiet", null, 1]\n')
        conn.send(b'["e2e.tcp.quiet", null, 2]\r\n')
        # The next thing on the wire is the error: the good lines got nothing.
        assert conn.request(b'["e2e.tcp.quiet", 1700000000]') == ARITY_ERROR
        assert conn.request(b"--verbose") == OK
        assert conn.request(b'["e2e.tcp.quiet", null, 3]') == OK
    assert stored_count(server, "e2e.tcp.quiet") == 3


def test_over_long_line_is_refused_and_the_connection_closed(make_server):
    """A line over --max-line-length gets an error naming the limit, then the server hangs up."""
    server = make_server("--max-line-length", str(MAX_LINE)).start()
    name = b"e2e.tcp." + b"n" * (MAX_LINE - 13 - 8)
    longest = b'["%s", null, 1]' % (name,)
    assert len(longest) == MAX_LINE
    too_long = b'["e2e.tcp.long", null, %s]' % (b"1" * MAX_LINE,)
    refusal = b"--ERROR line longer than %d bytes; closing the connection\r\n" % (MAX_LINE,)
    with server.connect() as conn:
        assert conn.read_line() == HINT
        assert conn.request(longest) == OK
        conn.send(too_long + b"\n" + b'["e2e.tcp.after", null, 1]\n')
        assert conn.read_until_closed() == refusal
    # No newline at all: the server does not wait for one forever.
    with server.connect() as conn:
        assert conn.read_line() == HINT
        conn.send(b"[" + b" " * (MAX_LINE + 10))
        assert conn.read_until_closed() == refusal
    # Other clients are unaffected.
    with server.connect() as conn:
        assert conn.read_line() == HINT
        assert conn.request(b'["e2e.tcp.fine", null, 1]') == OK
    assert stored_count(server, name.decode()) == 1
    assert stored_count(server, "e2e.tcp.long") == 0
    assert stored_count(server, "e2e.tcp.after") == 0
    server.wait_for_log(r"bad line from 127\.0\.0\.1:\d+: line longer than %d bytes; "
                        r"closing the connection" % (MAX_LINE,))


def test_crlf_line_endings_and_split_lines(server):
    """Lines ending in \\r\\n, several per packet or cut across packets, are answered one by one."""
    with server.connect() as conn:
        assert conn.read_line() == HINT
        conn.send(b'["e2e.tcp.crlf", null, 1]\r\n["e2e.tcp.crlf", null, 2]\r\n'
                  b'[["e2e.tcp.crlf", null, 3], ["e2e.tcp.crlf", null, 4]]\r\n'
                  b'["e2e.tcp.crlf", 1700000000]\r\n')
        assert conn.read_line() == OK
        assert conn.read_line() == OK
        assert conn.read_line() == b"--OK 2\r\n"
        assert conn.read_line() == ARITY_ERROR
        conn.send(b'["e2e.tcp.cr')
        conn.send(b'lf", null, 5]\r')
        conn.send(b'\n')
        assert conn.read_line() == OK
    assert stored_count(server, "e2e.tcp.crlf") == 5
    # No series was made with a stray "\r" in its name.
    names = [m["key"] for m in server.get_json("/api/metrics", {"filter": "crlf"})["metrics"]]
    assert names == ["e2e.tcp.crlf"]


BAD_LINES = [
    (b"not json", b"--ERROR not JSON ("),
    (b'["e2e.tcp.x", null, NaN]', b"--ERROR NaN is not allowed"),
    (b'["e2e.tcp.x", 1e12, 1]', b"--ERROR timestamp 1000000000000 is "),
    (b'[1, null, 1]', b"--ERROR name must be a string, got 1"),
    (b"", b"--ERROR empty line"),
    (b"--frobnicate", b"--ERROR unknown command --frobnicate"),
]


def test_each_kind_of_bad_line_is_named(server):
    """Each bad line is answered with one error line naming its problem; the next line still works."""
    with server.connect() as conn:
        assert conn.read_line() == HINT
        for line, problem in BAD_LINES:
            answer = conn.request(line)
            assert answer.startswith(problem) and answer.endswith(b"\r\n"), (line, answer)
            assert answer.count(b"\n") == 1, (line, answer)
            assert conn.request(b'["e2e.tcp.ok", null, 1]') == OK, line
    assert stored_count(server, "e2e.tcp.ok") == len(BAD_LINES)
    assert stored_count(server, "e2e.tcp.x") == 0
