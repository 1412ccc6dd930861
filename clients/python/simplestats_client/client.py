"""
The client: record metrics, pre-aggregate them, send them.

C{mode="tcp"} (the default) pre-aggregates into 5 s partials
(L{simplestats_client.aggregate}) and sends them to the server's TCP tuple
port as batch lines (C{[[...], [...]]}), each answered C{--OK n} once the
server has journaled it.  Partials not acknowledged stay in a bounded buffer
and are sent again with exponential backoff.  Delivery is at least once: a
connection lost after the server journaled a line but before its answer
arrived sends that line again.

C{mode="udp"} sends statsd lines, fire and forget: no pre-aggregation (the
server sees every value, so its percentiles are exact, but nothing is
acknowledged), lines packed into datagrams of at most C{udp_packet_bytes},
a datagram sent when full and at every flush.
"""

import atexit
import collections
import functools
import json
import logging
import random
import re
import socket
import threading
import time
from itertools import islice

from simplestats_client.aggregate import (COUNTER, DISTRIBUTION, GAUGE, SAMPLE, TIMER,
                                          Aggregator, parse_agg)
from simplestats_client.sketch import DEFAULT_ACCURACY

log = logging.getLogger("simplestats_client")

_OK = re.compile(rb"--OK(?: (\d+))?\r?\n?$")
_ITEM = re.compile(rb"--ERROR item (\d+): ")
_BATCH_LIMIT = re.compile(rb"batch of \d+ items is larger than the limit of (\d+)")
_LINE_LIMIT = re.compile(rb"line longer than (\d+) bytes")
# A refusal about the server's state, not the batch: kept and sent again.
_TRANSIENT = b"--ERROR journal write failed"
# Batches refused for one item in one send before the next refused one is
# dropped whole (each retry sends the rest of its line again).
_MAX_ITEM_RETRIES = 8


class _BoundedLog:
    """
    At most one warning of each kind per C{every} seconds; the rest are
    counted and the next one says how many were left out.
    """

    def __init__(self, every=60.0):
        self.every = every
        self.last = {}
        self.suppressed = collections.Counter()

    def warn(self, kind, message, *args):
        now = time.monotonic()
        if now - self.last.get(kind, -self.every) < self.every:
            self.suppressed[kind] += 1
            return
        self.last[kind] = now
        left_out = self.suppressed.pop(kind, 0)
        if left_out:
            message += " (%d similar messages left out)" % (left_out,)
        log.warning(message, *args)


class _Timer:
    """
    C{with client.timer("x"):} or C{@client.timer("x")}: the time taken, in
    milliseconds, recorded as a timer value.
    """

    def __init__(self, client, name, tags):
        self.client = client
        self.name = name
        self.tags = tags
        self.start = None

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.client.timing(self.name, (time.perf_counter() - self.start) * 1000.0, self.tags)
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.client.timing(self.name, (time.perf_counter() - start) * 1000.0, self.tags)
        return timed


class Client:
    """
    A SimpleStats client.

    @param host, port: the server's TCP tuple port.
    @param prefix: put before every name (C{"myapp."}).
    @param tags: tags of every series; a call's C{tags} are added to them.
    @param interval: seconds between flushes of the background thread
        (aligned on multiples of C{interval}, so each 5 s bucket goes out
        just after it ends); L{None} or 0: no thread, call L{flush}.
    @param max_buffer: most partials kept unacknowledged (the oldest are
        dropped past it, counted in C{counters["dropped_overflow"]}).
    @param max_buffer_bytes: most bytes of encoded partials kept so (a
        timer's partial is a few KB with its sketch), the same way.
    @param mode: C{"tcp"} (pre-aggregated, acknowledged) or C{"udp"}
        (statsd lines to C{udp_port}, fire and forget).
    @param bucket: width of a partial in seconds (the server's finest tier).
    @param sketch_accuracy: the sketch's relative accuracy (the server's
        C{--sketch-accuracy}).
    @param clock: the time since the epoch (tests and benchmarks inject one).
    """

    def __init__(self, host="127.0.0.1", port=8007, prefix="", tags=None, interval=5.0,
                 max_buffer=100000, max_buffer_bytes=64 << 20, mode="tcp", udp_port=8125, bucket=5.0,
                 sketch_accuracy=DEFAULT_ACCURACY, max_line_bytes=65000, max_batch=10000,
                 connect_timeout=5.0, answer_timeout=30.0, retry_min=0.5, retry_max=30.0,
                 close_timeout=10.0, udp_packet_bytes=1432, clock=time.time):
        if mode not in ("tcp", "udp"):
            raise ValueError("mode must be 'tcp' or 'udp', got %r" % (mode,))
        self.host = host
        self.port = port
        self.mode = mode
        self.interval = interval
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self.max_line_bytes = max_line_bytes
        self.max_batch = max_batch
        self.connect_timeout = connect_timeout
        self.answer_timeout = answer_timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.close_timeout = close_timeout
        self.counters = collections.Counter()
        self.aggregator = Aggregator(clock, bucket, sketch_accuracy, prefix, tags)
        self._log = _BoundedLog()
        self._pending = collections.deque()
        self._pending_bytes = 0
        self._send_lock = threading.Lock()
        self._sock = None
        self._received = b""
        self._retry_delay = 0.0
        self._retry_at = 0.0
        self._closed = False
        if mode == "udp":
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp_address = (host, udp_port)
            self._udp_packet_bytes = udp_packet_bytes
            self._udp_lines = []
            self._udp_size = 0
        self._stop = threading.Event()
        self._thread = None
        if interval:
            self._thread = threading.Thread(target=self._run, name="simplestats-client",
                                            daemon=True)
            self._thread.start()
        atexit.register(self.close)

    # -- recording -----------------------------------------------------------

    def timing(self, name, ms, tags=None):
        """
        One timer value in milliseconds.
        """
        self._record(name, TIMER, ms, False, tags)

    def incr(self, name, n=1, tags=None):
        """
        Add C{n} to a counter.
        """
        self._record(name, COUNTER, n, False, tags)

    def decr(self, name, n=1, tags=None):
        """
        Take C{n} from a counter.
        """
        self._record(name, COUNTER, -n, False, tags)

    def gauge(self, name, value, tags=None, delta=False):
        """
        Set a gauge (or, with C{delta}, change it by C{value}).
        """
        self._record(name, GAUGE, value, delta, tags)

    def histogram(self, name, value, tags=None):
        self._record(name, "h", value, False, tags)

    def distribution(self, name, value, tags=None):
        self._record(name, DISTRIBUTION, value, False, tags)

    def agg(self, name, value, tags=None):
        """
        DaTtSs' call: C{agg("x.query", "153ms")}, C{"1c"}, C{"23g"},
        C{"+3g"}, C{"5h"}, C{"5d"}, or a number (a plain sample).
        """
        try:
            kind, number, change = parse_agg(value)
        except (TypeError, ValueError) as e:
            return self._invalid(name, e)
        self._record(name, kind, number, change, tags)

    def timer(self, name, tags=None):
        """
        A context manager and decorator that records the time taken.
        """
        return _Timer(self, name, tags)

    def _record(self, name, kind, value, change, tags):
        try:
            if self.mode == "udp":
                return self._udp_record(name, kind, value, change, tags)
            if kind == COUNTER:
                self.aggregator.count(name, value, tags)
            elif kind == GAUGE:
                self.aggregator.gauge(name, value, change, tags)
            else:
                self.aggregator.add(name, kind, value, tags)
        except (TypeError, ValueError) as e:
            self._invalid(name, e)

    def _invalid(self, name, error):
        # Under the lock: several threads may count at once.
        with self.aggregator.lock:
            self.counters["invalid"] += 1
        self._log.warn("invalid", "simplestats: %r not recorded: %s", name, error)

    # -- sending -------------------------------------------------------------

    @property
    def pending(self):
        """
        How many partials wait for an acknowledgement.
        """
        return len(self._pending)

    def flush(self, timeout=None):
        """
        Send everything recorded so far, the buckets still open too, now
        (whatever the backoff); C{True} when all of it is acknowledged.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._flush(everything=True, force=True, deadline=deadline)

    def close(self):
        """
        Stop the thread and flush (trying for at most C{close_timeout}
        seconds); called at exit if not before.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._stop.set()
        deadline = time.monotonic() + self.close_timeout
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.close_timeout)
        try:
            self.flush(max(0.0, deadline - time.monotonic()))
        finally:
            with self._send_lock:
                self._disconnect()
            if self.mode == "udp":
                self._udp.close()
        if self._pending:
            self._log.warn("lost", "simplestats: closed with %d partials not acknowledged",
                           len(self._pending))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self):
        interval = self.interval
        while not self._stop.wait(interval - time.time() % interval + 0.05):
            try:
                self._flush(everything=False, force=False)
            except Exception:
                self.counters["errors"] += 1
                log.exception("simplestats: flush failed")

    def _flush(self, everything, force, deadline=None):
        if self.mode == "udp":
            with self.aggregator.lock:
                self._udp_send()
            return True
        with self._send_lock:
            items = self.aggregator.take(everything)
            self.counters["partials"] += len(items)
            pending = self._pending
            for item in items:
                data = self._encode(item)
                if data is not None:
                    pending.append(data)
                    self._pending_bytes += len(data)
            overflow = 0
            while pending and (len(pending) > self.max_buffer
                               or self._pending_bytes > self.max_buffer_bytes):
                self._pending_bytes -= len(pending.popleft())
                overflow += 1
            if overflow:
                self.counters["dropped_overflow"] += overflow
                self._log.warn("overflow", "simplestats: buffer full (%d partials, %d bytes at"
                               " most): dropped the %d oldest", self.max_buffer,
                               self.max_buffer_bytes, overflow)
            if not pending:
                return True
            if not force and time.monotonic() < self._retry_at:
                return False
            return self._send(deadline)

    def _encode(self, item):
        try:
            data = json.dumps(item, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except ValueError as e:
            # A sum past the largest float: the server could not take it.
            self.counters["invalid"] += 1
            self._log.warn("encode", "simplestats: partial of %r not sent: %s", item[0], e)
            return None
        if len(data) + 3 > self.max_line_bytes:
            data = self._shrink(item)
        return data

    def _shrink(self, item):
        """
        A partial too long for one line without its sketch (the server then
        has its count, sum, min and max but no percentiles), or nothing.
        """
        value = item[2]
        if isinstance(value, dict) and "sketch" in value:
            value = dict(value)
            del value["sketch"]
            data = json.dumps(item[:2] + [value] + item[3:], separators=(",", ":")).encode()
            if len(data) + 3 <= self.max_line_bytes:
                self.counters["sketch_dropped"] += 1
                self._log.warn("sketch", "simplestats: sketch of %r too long for a line: sent"
                               " without percentiles", item[0])
                return data
        self.counters["refused"] += 1
        self._log.warn("long", "simplestats: partial of %r is too long for a line: dropped",
                       item[0])
        return None

    def _line(self):
        """
        The partials of the next batch line: as many from the head of the
        buffer as fit in C{max_line_bytes} and C{max_batch}.
        """
        size = 2
        count = 0
        for data in islice(self._pending, 0, self.max_batch):
            if count and size + len(data) + 1 > self.max_line_bytes:
                break
            size += len(data) + 1
            count += 1
        return count

    def _send(self, deadline):
        """
        Send the buffer, a line at a time, each answered before the next;
        C{True} once it is empty.  On a failure the rest stays for a retry.
        """
        pending = self._pending
        self._item_retries = 0
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                return False
            count = self._line()
            items = list(islice(pending, 0, count))
            if len(items) == 1 and len(items[0]) + 3 > self.max_line_bytes:
                # The line limit went down since it was encoded.
                self._drop(1)
                self.counters["refused"] += 1
                continue
            line = b"[" + b",".join(items) + b"]\n"
            try:
                answer = self._exchange(line, deadline)
            except OSError as e:
                self._failed(e)
                return False
            self._retry_delay = 0.0
            self._retry_at = 0.0
            if not self._answered(answer, items):
                return False
        return True

    def _answered(self, answer, items):
        """
        Act on the answer to a line of C{items}: C{False} to stop sending for
        now (the line stays for a retry).
        """
        pending = self._pending
        ok = _OK.match(answer)
        if ok:
            self._drop(len(items))
            self.counters["sent"] += len(items)
            self.counters["lines"] += 1
            if ok.group(1) is not None and int(ok.group(1)) != len(items):
                self._log.warn("count", "simplestats: %d partials answered %r", len(items),
                               answer)
            return True
        text = answer.decode("utf-8", "replace").rstrip()
        if answer.startswith(_TRANSIENT):
            self.counters["send_failures"] += 1
            self._log.warn("transient", "simplestats: server refused for now: %s", text)
            self._backoff()
            return False
        limit = _BATCH_LIMIT.search(answer)
        if limit and 0 < int(limit.group(1)) < self.max_batch:
            self.max_batch = int(limit.group(1))
            return True
        limit = _LINE_LIMIT.search(answer)
        if limit and 0 < int(limit.group(1)) - 2 < self.max_line_bytes:
            # The server closes the connection after this one.
            self.max_line_bytes = int(limit.group(1)) - 2
            self._disconnect()
            return True
        item = _ITEM.match(answer)
        self.counters["refused_lines"] += 1
        self._item_retries += 1
        if item and 1 <= int(item.group(1)) <= len(items) and self._item_retries <= _MAX_ITEM_RETRIES:
            # The batch was refused whole for one item: drop it, send the rest.
            position = int(item.group(1)) - 1
            self._pending_bytes -= len(pending[position])
            del pending[position]
            self.counters["refused"] += 1
        else:
            self._drop(len(items))
            self.counters["refused"] += len(items)
        self._log.warn("refused", "simplestats: server refused a batch: %s", text)
        return True

    def _drop(self, n):
        """
        Take C{n} partials off the head of the buffer.
        """
        for _ in range(n):
            self._pending_bytes -= len(self._pending.popleft())

    def _failed(self, error):
        self.counters["send_failures"] += 1
        self._disconnect()
        self._log.warn("send", "simplestats: cannot send to %s:%d (%s); %d partials kept",
                       self.host, self.port, error, len(self._pending))
        self._backoff()

    def _backoff(self):
        delay = self._retry_delay * 2 if self._retry_delay else self.retry_min
        self._retry_delay = min(delay, self.retry_max)
        self._retry_at = time.monotonic() + self._retry_delay * random.uniform(0.9, 1.1)

    # -- the connection ------------------------------------------------------

    def _connect(self, deadline):
        timeout = self.connect_timeout
        if deadline is not None:
            timeout = max(0.1, min(timeout, deadline - time.monotonic()))
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._received = b""
        self.counters["connects"] += 1

    def _disconnect(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _exchange(self, line, deadline):
        """
        Send one line and read its answer (the server's hint line, first
        on a new connection, is skipped).
        """
        if self._sock is None:
            self._connect(deadline)
        timeout = self.answer_timeout
        if deadline is not None:
            timeout = max(0.1, min(timeout, deadline - time.monotonic()))
        self._sock.settimeout(timeout)
        self._sock.sendall(line)
        while True:
            answer = self._read_line(timeout)
            if not answer.startswith(b"--Hint"):
                return answer

    def _read_line(self, timeout):
        end = time.monotonic() + timeout
        while b"\n" not in self._received:
            left = end - time.monotonic()
            if left <= 0:
                raise socket.timeout("no answer within %.1f s" % (timeout,))
            self._sock.settimeout(left)
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            self._received += data
        line, _, self._received = self._received.partition(b"\n")
        return line + b"\n"

    # -- statsd over UDP -----------------------------------------------------

    def _udp_record(self, name, kind, value, change, tags):
        aggregator = self.aggregator
        name = aggregator.name(name)
        tagkey = aggregator.base if tags is None else aggregator.tagkey(tags)
        value = float(value)
        if value - value != 0.0:
            raise ValueError("value must be finite, got %r" % (value,))
        text = "%d" % value if value.is_integer() and abs(value) < 1e15 else repr(value)
        if change and value >= 0:
            text = "+" + text
        # statsd has no plain sample: it goes as a distribution.
        line = "%s:%s|%s" % (name, text, DISTRIBUTION if kind == SAMPLE else kind)
        if tagkey:
            line += "|#" + ",".join("%s:%s" % pair for pair in tagkey)
        data = line.encode("utf-8")
        with aggregator.lock:
            if self._udp_size + len(data) + 1 > self._udp_packet_bytes:
                self._udp_send()
            self._udp_lines.append(data)
            self._udp_size += len(data) + 1

    def _udp_send(self):
        # Called with the aggregator's lock held.
        if not self._udp_lines:
            return
        packet = b"\n".join(self._udp_lines)
        self._udp_lines = []
        self._udp_size = 0
        try:
            self._udp.sendto(packet, self._udp_address)
            self.counters["udp_packets"] += 1
            self.counters["udp_bytes"] += len(packet)
        except OSError as e:
            self.counters["udp_errors"] += 1
            self._log.warn("udp", "simplestats: statsd packet not sent: %s", e)
