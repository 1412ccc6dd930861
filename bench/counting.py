"""
Counting back what a server received, and the loss that follows.

Parsers are pure functions of the bytes a server answers; the small clients
beside them only fetch those bytes over loopback.
"""

import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

# An entry of node's util.inspect() of a flat object: a quoted or bare key,
# then a number.  Entries may share a line when they are short.
_INSPECT_ENTRY = re.compile(
    r"""(?:'((?:[^'\\]|\\.)*)'|([A-Za-z_$][\w$]*))\s*:\s*"""
    r"""(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)""")

# Loss at or above this fraction fails a step: the loss-free criterion.
MAX_LOSS = 0.001


def parse_statsd_dump(text):
    """
    Parse the answer to statsd's management command C{counters} (or
    C{gauges}): C{util.inspect} of a flat object, then C{END}.

    @return: dict of name to number.
    @raise ValueError: when the answer is not such a dump.
    """
    body = text.split("\nEND", 1)[0].strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError("not a statsd counters dump: %r" % (text[:80],))
    values = {}
    for match in _INSPECT_ENTRY.finditer(body):
        key = match.group(1)
        if key is None:
            key = match.group(2)
        else:
            key = re.sub(r"\\(.)", r"\1", key)
        number = float(match.group(3))
        values[key] = int(number) if number.is_integer() else number
    return values


def sum_prefixed(values, prefix):
    """
    Sum of the values whose names start with C{prefix}.
    """
    return sum(v for k, v in values.items() if k.startswith(prefix))


def loss_fraction(sent, counted):
    """
    The fraction of C{sent} that was not counted back (never negative).
    """
    if sent <= 0:
        return 0.0
    return max(0.0, (sent - counted) / sent)


def is_loss_free(sent, counted, max_loss=MAX_LOSS):
    """
    Whether a step lost less than C{max_loss} of what it sent.
    """
    return sent > 0 and loss_fraction(sent, counted) < max_loss


def wait_settled(read, expected, quiet_seconds, timeout, clock=time.monotonic,
                 sleep=time.sleep, interval=0.2):
    """
    Poll C{read()} until it reaches C{expected}, or stops changing for
    C{quiet_seconds}, or C{timeout} passes.

    @return: C{(last value, seconds waited)}
    """
    start = clock()
    last = read()
    changed = start
    while last < expected:
        now = clock()
        if now - changed >= quiet_seconds or now - start >= timeout:
            break
        sleep(interval)
        value = read()
        if value != last:
            last = value
            changed = clock()
    return last, clock() - start


def ask_tcp(port, command, until, timeout=10.0, host="127.0.0.1"):
    """
    Send C{command} over a new TCP connection and read the answer until it
    ends with C{until} (or the peer closes when C{until} is None).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if command:
            sock.sendall(command)
        chunks = []
        tail = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            tail = (tail + data)[-16:]
            if until is not None and tail.endswith(until):
                break
    return b"".join(chunks)


def statsd_counters(mgmt_port):
    """
    Statsd's counters, read from its management port.
    """
    answer = ask_tcp(mgmt_port, b"counters\n", b"END\n\n")
    return parse_statsd_dump(answer.decode("utf-8", "replace"))


def http_json(port, path, params=None, timeout=30.0):
    """
    GET C{path} from a loopback HTTP port and decode the JSON answer.

    @raise urllib.error.HTTPError: for a non-2xx status.
    """
    return json.loads(http_bytes(port, path, params, timeout))


def http_bytes(port, path, params=None, timeout=30.0):
    """
    GET C{path} from a loopback HTTP port: the answer's body, undecoded (what
    a request costs the server, without the client's JSON parsing).
    """
    url = "http://127.0.0.1:%d%s" % (port, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def series_total(answer, field):
    """
    The sum of one field's points in an C{/api/series} answer (nulls count
    as nothing).
    """
    points = answer.get("fields", {}).get(field) or []
    return sum(v for _, v in points if v is not None)
