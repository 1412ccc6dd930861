"""
Export and import of stored points as ndjson, JSON or CSV.

An exported row is a tuple the TCP port accepts: C{["name", ts, value]} or
C{["name", ts, value, {tags}]}, one per stored bucket, the value written so
that importing it (or piping it to the TCP port) rebuilds the same bucket bit
for bit: a plain number for a bucket of one plain sample (the original
SimpleStats format), C{"12c"} for a counter, C{"23g"} for a gauge set once to
a value >= 0 (a negative one is C{{"type": "g", "last": -5}}: C{"-5g"} is a
change), C{"153ms"} for one timer value, and a partial aggregate object
otherwise -- a distribution's with its stored percentiles (C{p50} ... C{p99},
taken as they are: a closed bucket keeps no sketch), a set's with its count;
a bucket still open goes with its sketch or its members as well, so that
later points merge with it exactly.  Each series is exported at the finest
tier that holds each stretch of time, so nothing is counted twice.
"""

import codecs
import csv
import datetime
import io
import json
import math
import re
from bisect import bisect_left

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.python import failure
from zope.interface import implementer

from server.core.aggregate import PUBLIC_FIELDS, QUANTILE_FIELDS, ROWS
from server.core.model import COUNTER, GAUGE, SAMPLE, SET, TYPE_NAMES, Limits, ParseError
from server.receivers.parse_tuple import parse_line, parse_tuple
# _pending: the open aggregates a read merges (the export takes a sketch or
# the members from them).
from server.core.query import _pending, bucket_rows, series_points

EXPORT_FORMATS = {
    "ndjson": (b"application/x-ndjson; charset=utf-8", b"ndjson"),
    "json": (b"application/json; charset=utf-8", b"json"),
    "csv": (b"text/csv; charset=utf-8", b"csv"),
    # For a spreadsheet: one numeric column per field (wide_chunks).
    "csv-wide": (b"text/csv; charset=utf-8", b"csv"),
}
# The field columns of csv-wide, in this order (those of the types exported).
WIDE_FIELDS = ("count", "rate", "sum", "min", "max", "mean", "std", "median", "p90", "p95", "p99",
               "last", "updates")
IMPORT_FORMATS = ("auto", "ndjson", "json", "csv")
CSV_HEADER = ["name", "timestamp", "value", "tags"]
MAX_REPORTED_ROWS = 100
# An open set bucket's members are exported up to this many (the TCP port's
# default --max-set-members), else its count.
MAX_EXPORTED_MEMBERS = Limits().max_set_members
# Spreadsheet programs run a cell starting with these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _number(x):
    # abs() first: int() of an infinity (a sum past the float range) raises.
    # -0.0 stays a float: its sign is part of the value.
    if abs(x) < 2 ** 53 and x == int(x) and (x or math.copysign(1.0, x) > 0):
        return int(x)
    return x


def _finite_fields(partial):
    """
    C{partial} without the fields that overflowed (a sum of squares of
    values past 1e154) or have no value (the percentiles of a bucket
    merged from partials without a sketch): infinity and NaN are no JSON.
    C{sumsq} is optional, and an import without it takes every value at
    the mean; without percentiles they stay unknown.
    """
    return {k: v for k, v in partial.items() if not isinstance(v, float) or v - v == 0.0}


def _positive(x):
    # Neither negative nor -0.0: "5g" sets a gauge, "-5g" would change it.
    return math.copysign(1.0, x) > 0


def _same(a, b):
    """
    The same float bit for bit as far as a row can tell: equal, and of the
    same sign (0.0 == -0.0, but a text form rebuilds only one of them).
    """
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def export_value(series, row, agg=None):
    """
    The TCP-protocol value that rebuilds a stored bucket C{row} bit for bit
    when imported into an empty bucket (or piped to the TCP port): the short
    text form where it rebuilds exactly that row, else a partial aggregate
    object with every stored field.  C{agg}: the aggregate of a bucket
    still open (none of it closed), whose distribution sketch or set
    members go along, so that later points merge with it exactly.
    """
    fam = series.family
    row = ROWS[fam]._make(row)
    if fam == COUNTER:
        return "%rc" % (_number(row.count),)
    if fam == GAUGE:
        if row.updates == 1 and row.min == row.max == row.last == row.sum:
            if _positive(row.last):
                return "%rg" % (_number(row.last),)
            # A negative value as text would be read as a change.
            return {"type": "g", "last": _number(row.last)}
        return _finite_fields({"type": "g", "last": row.last, "min": row.min, "max": row.max,
                               "count": _number(row.updates), "sum": row.sum})
    if fam == SET:
        if (agg is not None and agg.members is not None and not agg.extra
                and 0 < len(agg.members) <= MAX_EXPORTED_MEMBERS):
            return {"type": "s", "members": sorted(agg.members)}
        return {"type": "s", "count": _number(row.count)}
    one = row.min
    if (row.count == 1 and row.sumsq == one * one
            and all(_same(one, x) for x in (row.max, row.sum, row.last, row.p50, row.p90,
                                            row.p95, row.p99))):
        if series.type == SAMPLE:
            return _number(one)
        return "%r%s" % (_number(one), series.type)
    partial = {"type": series.type, "count": _number(row.count), "sum": row.sum,
               "min": row.min, "max": row.max, "sumsq": row.sumsq, "last": row.last}
    quantiles = [getattr(row, name) for name in QUANTILE_FIELDS]
    if all(q - q == 0.0 for q in quantiles):
        partial.update(zip(QUANTILE_FIELDS, quantiles))
        if agg is not None and agg.given is None and not agg.unsketched:
            partial["sketch"] = agg.sketch.to_json()
    return _finite_fields(partial)


def _open_only(store, series, i, first, last):
    """
    C{{number: aggregate}} of the buckets numbered C{first}..C{last} of
    tier C{i} that are open and hold all their points (nothing of them was
    stored yet).
    """
    pending = _pending(store, series, i, first, last)
    stored = series.stored[i]
    if stored is None or not pending:
        return pending
    index = stored.index

    def closed(n):
        at = bisect_left(index, n)
        return at < len(index) and index[at] == n

    return {n: agg for n, agg in pending.items() if not closed(n)}


def export_rows(store, series, start, until, now, with_open=False):
    """
    C{(bucket start, row, aggregate or None)} of C{series} from C{start} to
    C{until} (an infinite C{until}: its latest point), each stretch of time
    from the finest tier that still holds all of it; with C{with_open}, the
    aggregate of a bucket all of whose points are in an open one
    (L{_open_only}).
    """
    tiers = store.tiers
    if until == math.inf:
        # Everything accepted: up to the series' latest point, which may be
        # stamped in the future.
        store.fold_series(series)
        until = max(now, series.last_seen)
    # Tier i holds every point from `boundary` on; coarser tiers hold what
    # is older, cut at their own step so no coarse bucket is split.
    upper = until
    for i in range(len(tiers)):
        step = tiers[i].step
        if i + 1 < len(tiers) and tiers[i].retention is not None:
            coarser = tiers[i + 1].step
            lower = min(upper, math.ceil((now - tiers[i].retention) / coarser) * coarser)
        else:
            lower = -math.inf
        lo = max(start, lower)
        if lo <= upper:
            first = int(math.ceil(lo / step))
            last = int(upper // step)
            if upper == last * step and upper != until:
                last -= 1
            rows = bucket_rows(store, series, i, first, last)
            opened = _open_only(store, series, i, first, last) if with_open else {}
            for number in sorted(rows, reverse=True):
                yield number * step, rows[number], opened.get(number)
        upper = lower
        if upper <= start:
            break


def _tuples(store, keys, start, until, now):
    for key in keys:
        series = store.series.get(key)
        if series is None:
            continue
        with_open = series.family in (SET, "dist")
        rows = sorted(export_rows(store, series, start, until, now, with_open), key=lambda r: r[0])
        tags = dict(series.tags)
        for ts, row, agg in rows:
            item = [series.name, ts, export_value(series, row, agg)]
            if tags:
                item.append(tags)
            yield item


def _csv_cell(text):
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def export_chunks(store, keys, start, until, now, fmt, rows_per_chunk=2000):
    """
    Yield the export as byte chunks of about C{rows_per_chunk} rows.
    """
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    buffer = []
    first = True
    if fmt == "json":
        yield b"["
    elif fmt == "csv":
        yield (",".join(CSV_HEADER) + "\r\n").encode()
    for item in _tuples(store, keys, start, until, now):
        if fmt == "ndjson":
            buffer.append(dumps(item) + "\n")
        elif fmt == "json":
            buffer.append(("" if first else ",\n") + dumps(item))
            first = False
        else:
            out = io.StringIO()
            value = item[2]
            if isinstance(value, dict):
                value = dumps(value)
            elif isinstance(value, str):
                value = _csv_cell(value)
            tags = ";".join("%s=%s" % kv for kv in sorted(item[3].items())) if len(item) > 3 else ""
            csv.writer(out).writerow([_csv_cell(item[0]), item[1], value, _csv_cell(tags)])
            buffer.append(out.getvalue())
        if len(buffer) >= rows_per_chunk:
            yield "".join(buffer).encode()
            buffer = []
    if buffer:
        yield "".join(buffer).encode()
    if fmt == "json":
        yield b"]\n"


def _wide_number(value):
    if value is None or value - value != 0.0:
        return ""
    if value == int(value) and abs(value) < 1e15:
        return "%d" % (value,)
    return repr(value)


def wide_chunks(store, keys, start, until, i, now, rows_per_chunk=2000):
    """
    Yield a spreadsheet's CSV as byte chunks: a row per series and bucket
    of tier C{i} holding data, C{timestamp} (ISO 8601, UTC), C{epoch},
    C{series}, C{type}, then one numeric column per field of the types
    exported (L{WIDE_FIELDS}), empty where a type has no such field.
    """
    chosen = [store.series[k] for k in keys if k in store.series]
    present = set()
    for series in chosen:
        present.update(PUBLIC_FIELDS[series.family])
    columns = [f for f in WIDE_FIELDS if f in present]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["timestamp", "epoch", "series", "type"] + columns)
    rows = 0
    for series in chosen:
        fields = PUBLIC_FIELDS[series.family]
        points = series_points(store, series, fields, start, until, i, now)
        place = [fields.index(c) if c in fields else None for c in columns]
        lists = [points[f] for f in fields]
        name = _csv_cell(series.key)
        kind = TYPE_NAMES[series.type]
        for k, (ts, _) in enumerate(lists[0]):
            values = [pairs[k][1] for pairs in lists]
            if all(v is None for v in values):
                continue
            when = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
            writer.writerow([when.strftime("%Y-%m-%dT%H:%M:%SZ"), "%d" % (ts,), name, kind]
                            + ["" if p is None else _wide_number(values[p]) for p in place])
            rows += 1
            if rows >= rows_per_chunk:
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
                rows = 0
    if out.tell():
        yield out.getvalue().encode()


@implementer(IPushProducer)
class _ChunkProducer:
    """
    Writes chunks to a request as fast as its connection takes them: the
    transport pauses it when its write buffer is full and resumes it when
    the buffer drains, so a slow reader never makes the server hold more
    than a chunk or so of the export.  One chunk per reactor turn, so
    other clients are served in between.
    """

    def __init__(self, request, chunks, clock):
        self.request = request
        self.chunks = chunks
        self.clock = clock
        self.done = defer.Deferred()
        self.paused = False
        self.call = None

    def start(self):
        self.request.notifyFinish().addErrback(lambda failure: self.stopProducing())
        self.request.registerProducer(self, True)
        self._step()  # the first chunk (and the headers) at once
        return self.done

    def _schedule(self):
        if self.call is None and not self.paused and not self.done.called:
            self.call = self.clock.callLater(0, self._step)

    def _step(self):
        self.call = None
        try:
            chunk = next(self.chunks)
        except StopIteration:
            self._finish(None)
            return
        except Exception:
            self._finish(failure.Failure())
            return
        # May pause us (the write buffer filled up) before it returns.
        self.request.write(chunk)
        self._schedule()

    def _finish(self, result):
        if self.call is not None:
            self.call.cancel()
            self.call = None
        if self.done.called:
            return
        if getattr(self.request, "channel", None) is not None:  # still connected
            self.request.unregisterProducer()
        if result is None:
            self.done.callback(None)
        else:
            self.done.errback(result)

    # IPushProducer
    def pauseProducing(self):
        self.paused = True
        if self.call is not None:
            self.call.cancel()
            self.call = None

    def resumeProducing(self):
        self.paused = False
        self._schedule()

    def stopProducing(self):
        # The client went away: nothing more is read from the store.
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
        self._finish(None)


def stream(request, chunks, clock):
    """
    Write C{chunks} (a generator) to C{request} with backpressure: no chunk
    is made while the client's connection cannot take it.  Stops if the
    client goes away.
    """
    return _ChunkProducer(request, chunks, clock).start()


# -- import --------------------------------------------------------------------
#
# An upload is read as a stream of row batches (ImportReader), never whole:
# the memory an import takes is one read (READ_BYTES) plus a batch of rows
# (BATCH_ROWS, a few milliseconds of parsing), whatever the file's size.  One row may not be longer than
# MAX_ROW_BYTES (a longer one is a bad row): that bounds the carry between
# two reads.  The same reader serves the one-shot parse_import (tests, small
# bodies) and the two passes of server.web.imports.

READ_BYTES = 1 << 20
MAX_ROW_BYTES = 1 << 20
BATCH_ROWS = 200
_BOM = b"\xef\xbb\xbf"
_JSON_SPACE = " \t\n\r"
# Bytes that are not UTF-8, decoded with "surrogateescape": where they are
# found does not depend on how the file was cut into reads.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def detect_format(data):
    """
    The format of an upload from its first bytes (a few MiB at most: a
    JSON array spanning many lines is told from one ndjson line by whether
    anything follows the first line).
    """
    text = data.lstrip()[:1]
    if text == b"[":
        # A JSON array of tuples spans the whole body; ndjson has one per line.
        first_line = data.lstrip().split(b"\n", 1)[0].strip()
        try:
            value = json.loads(first_line)
        except (ValueError, RecursionError):
            return "json"
        if value and isinstance(value, list) and isinstance(value[0], list) \
                and data.strip().count(b"\n") > 0:
            return "json"
        return "ndjson"
    return "csv"


def _csv_uncell(text):
    if text.startswith("'") and text[1:2] in FORMULA_START:
        return text[1:]
    return text


def _csv_rows(lines):
    """
    C{(record number, item or None, problem or None)} of each record of
    the CSV text in C{lines} (an iterable of lines).
    """
    reader = csv.reader(lines)
    for number, cells in enumerate(reader, 1):
        if not cells or all(not c.strip() for c in cells):
            continue
        if number == 1 and cells[0].strip().lower() == "name":
            continue
        if len(cells) < 3 or len(cells) > 4:
            yield number, None, "expected name,timestamp,value[,tags], got %d columns" % (len(cells),)
            continue
        name, ts, value = (_csv_uncell(c.strip()) for c in cells[:3])
        try:
            ts_value = None if ts in ("", "null") else json.loads(ts)
        except (ValueError, RecursionError):
            # parse_tuple names what is wrong with the text.
            ts_value = ts
        if value.startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                yield number, None, "value %r is not a JSON object" % (value[:40],)
                continue
            except RecursionError:
                yield number, None, "value %r... is nested too deeply" % (value[:20],)
                continue
        else:
            try:
                value = json.loads(value)
            except ValueError:
                pass
            except RecursionError:
                yield number, None, "value %r... is nested too deeply" % (value[:20],)
                continue
        item = [name, ts_value, value]
        if len(cells) == 4 and cells[3].strip():
            tags = {}
            for pair in _csv_uncell(cells[3].strip()).split(";"):
                k, sep, v = pair.partition("=")
                if not sep:
                    yield number, None, "tags must be key=value;key2=value2, got %r" % (pair,)
                    break
                tags[k] = v
            else:
                item.append(tags)
                yield number, item, None
            continue
        yield number, item, None


class ImportReader:
    """
    Reads an upload from a binary file, C{read_bytes} at a time, as
    batches of at most about C{batch_rows} rows: each row is C{(row number, item, None)}
    (an NDJSON batch line gives one per item) or C{(row number, None,
    message)}.  A row number of 0 is a problem with the file as a whole,
    after which nothing more is read.

    Every row is parsed exactly as the TCP port parses a tuple
    (L{parse_tuple}); malformed input, deep nesting included, is a bad row
    with a message, never an exception.

    @ivar position: bytes of the file read so far (progress).
    @ivar format: the format read ("auto" is decided on the first read).
    """

    def __init__(self, fileobj, fmt, limits, read_bytes=READ_BYTES, batch_rows=BATCH_ROWS):
        self.file = fileobj
        self.format = fmt
        self.limits = limits
        self.read_bytes = read_bytes
        self.batch_rows = batch_rows
        self.position = 0

    def _read(self, size=None):
        data = self.file.read(self.read_bytes if size is None else size)
        if self.position == 0 and data[:1] == _BOM[:1]:
            while len(data) < len(_BOM) and _BOM.startswith(data):
                more = self.file.read(len(_BOM) - len(data))
                if not more:
                    break
                data += more
            if data.startswith(_BOM):
                self.position += len(_BOM)
                data = data[len(_BOM):] or self.file.read(self.read_bytes if size is None else size)
        self.position += len(data)
        return data

    def batches(self):
        """
        Yield the batches (lists of rows, never empty) to the end of the
        file.
        """
        head = b""
        if self.format == "auto":
            # Enough to see the first line and whether anything follows it.
            while len(head) < MAX_ROW_BYTES:
                data = self._read()
                if not data:
                    break
                head += data
                if head.strip().count(b"\n") > 0:
                    break
            self.format = detect_format(head)
        if self.format == "ndjson":
            return self._ndjson(head)
        if self.format == "json":
            return self._json(head)
        return self._csv(head)

    # -- ndjson

    def _ndjson(self, head):
        number = 0
        rest = b""
        skipping = False  # inside a row too long to keep
        limits = self.limits
        while True:
            data, head = head or self._read(), b""
            if not data and not rest:
                return
            rows = []
            if data:
                if skipping:
                    cut = data.find(b"\n")
                    if cut < 0:
                        continue
                    data = data[cut + 1:]
                    skipping = False
                data = rest + data
                lines = data.split(b"\n")
                rest = lines.pop()
                if len(rest) > MAX_ROW_BYTES:
                    lines.append(None)
                    rest = b""
                    skipping = True
            else:
                lines, rest = [rest], b""
            for line in lines:
                number += 1
                if line is None:
                    rows.append((number, None, "row is longer than %d bytes" % (MAX_ROW_BYTES,)))
                    continue
                try:
                    text = line.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    rows.append((number, None, "row is not UTF-8 (byte %d of the row)" % (e.start,)))
                    continue
                if not text:
                    continue
                try:
                    parsed = parse_line(text.encode(), limits)
                except ParseError as e:
                    rows.append((number, None, str(e)))
                    continue
                for item in parsed.items:
                    rows.append((number, item, None))
                if len(rows) >= self.batch_rows:
                    yield rows
                    rows = []
            if rows:
                yield rows

    # -- json

    def _json(self, head):
        """
        A JSON array of tuples, one element at a time (C{raw_decode} on a
        decoded window of the file); an element may not be longer than
        L{MAX_ROW_BYTES}.
        """
        decoder = json.JSONDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        state = {"buf": "", "pos": 0, "eof": False, "base": 0, "not_utf8": None}

        def more(pending=b""):
            # Append the next read to the window, dropping what was parsed.
            data = pending or self._read()
            if not data:
                state["eof"] = True
            text = utf8.decode(data, final=not data)
            state["base"] += state["pos"]
            if state["not_utf8"] is None:
                found = _NOT_UTF8.search(text)
                if found:
                    state["not_utf8"] = state["base"] + len(state["buf"]) - state["pos"] + found.start()
            state["buf"] = state["buf"][state["pos"]:] + text
            state["pos"] = 0

        def skip_space():
            # The next non-space character, reading on as needed ("" at the end).
            while True:
                buf, pos = state["buf"], state["pos"]
                while pos < len(buf) and buf[pos] in _JSON_SPACE:
                    pos += 1
                state["pos"] = pos
                if pos < len(buf) or state["eof"]:
                    return buf[pos:pos + 1]
                more()

        def fail(message):
            return [(0, None, "not a JSON document: %s (at character %d)"
                     % (message, state["base"] + state["pos"]))]

        more(head)
        first = skip_space()
        if first != "[":
            yield [(0, None, "a JSON import must be an array of [name, timestamp, value] tuples")]
            return
        state["pos"] += 1
        number = 0
        rows = []
        if skip_space() == "]":
            state["pos"] += 1
        else:
            while True:
                number += 1
                skip_space()
                while True:
                    try:
                        value, end = decoder.raw_decode(state["buf"], state["pos"])
                    except ValueError as e:
                        if state["eof"]:
                            if rows:
                                yield rows
                            yield fail(getattr(e, "msg", str(e)))
                            return
                        value = end = None
                    except RecursionError:
                        if rows:
                            yield rows
                        yield [(number, None, "row is nested too deeply"), (0, None, (
                            "not a JSON document: row %d is nested too deeply; the rest of"
                            " the file was not read" % (number,)))]
                        return
                    # A number at the end of the window may go on in the next read.
                    if end is not None and (end < len(state["buf"]) or state["eof"]):
                        break
                    if len(state["buf"]) - state["pos"] > MAX_ROW_BYTES:
                        if rows:
                            yield rows
                        yield fail("row %d is longer than %d bytes" % (number, MAX_ROW_BYTES))
                        return
                    more()
                    if rows:
                        yield rows
                        rows = []
                state["pos"] = end
                if state["not_utf8"] is not None and state["not_utf8"] < state["base"] + end:
                    rows.append((number, None, "row is not UTF-8"))
                    yield rows
                    yield fail("the file is not UTF-8 at row %d; the rest was not read" % (number,))
                    return
                try:
                    rows.append((number, parse_tuple(value, self.limits), None))
                except ParseError as e:
                    rows.append((number, None, str(e)))
                after = skip_space()
                state["pos"] += 1
                if after == "]":
                    break
                if after != ",":
                    state["pos"] -= 1
                    if rows:
                        yield rows
                    yield fail("expected , or ] after row %d" % (number,))
                    return
        if rows:
            yield rows
            rows = []
        if skip_space():
            yield fail("extra data after the array")
            return

    # -- csv

    def _csv(self, head):
        reader = self

        class Raw(io.RawIOBase):
            # The file as a stream for TextIOWrapper, the head first.
            pending = head

            def readable(self):
                return True

            def readinto(self, buffer):
                data = Raw.pending or reader._read(len(buffer))
                Raw.pending = data[len(buffer):]
                data = data[:len(buffer)]
                buffer[:len(data)] = data
                return len(data)

        text = io.TextIOWrapper(io.BufferedReader(Raw(), self.read_bytes), encoding="utf-8",
                                errors="surrogateescape", newline="\n")
        record = [0]
        stopped = []

        def lines():
            while True:
                line = text.readline(MAX_ROW_BYTES)
                if not line:
                    return
                if len(line) >= MAX_ROW_BYTES and not line.endswith("\n"):
                    stopped.append("a line after record %d is longer than %d characters"
                                   % (record[0], MAX_ROW_BYTES))
                    return
                if _NOT_UTF8.search(line):
                    stopped.append("a line after record %d is not UTF-8" % (record[0],))
                    return
                yield line

        rows = []
        try:
            for number, row, problem in _csv_rows(lines()):
                record[0] = number
                if problem is None:
                    try:
                        rows.append((number, parse_tuple(row, self.limits), None))
                    except ParseError as e:
                        rows.append((number, None, str(e)))
                else:
                    rows.append((number, None, problem))
                if len(rows) >= self.batch_rows:
                    yield rows
                    rows = []
            if stopped:
                rows.append((0, None, "not a CSV file: %s; the rest was not read" % (stopped[0],)))
        except csv.Error as e:
            # The reader gives up on the whole file (a lone "\r" inside a row).
            rows.append((0, None, "not a CSV file: %s" % (e,)))
        if rows:
            yield rows


def note_bad(bad, number, problem):
    """
    Keep a bad row's C{(row number, message)} for the answer, up to
    L{MAX_REPORTED_ROWS} of them.
    """
    if len(bad) < MAX_REPORTED_ROWS:
        bad.append((number, problem))


def split_rows(rows, items, numbers, bad):
    """
    Sort a batch of L{ImportReader} rows: the good ones' items and row
    numbers onto C{items} and C{numbers}, the bad ones onto C{bad} (see
    L{note_bad}).  Returns how many were bad.
    """
    count = 0
    for number, item, problem in rows:
        if problem is None:
            items.append(item)
            numbers.append(number)
        else:
            count += 1
            note_bad(bad, number, problem)
    return count


def parse_import(data, fmt, limits, read_bytes=READ_BYTES, batch_rows=BATCH_ROWS):
    """
    Check a whole upload held in memory (the streamed reader over it).
    Returns C{(items, row_numbers, bad_rows, bad_count, format)}: the
    parsed items with the row each came from, the first
    L{MAX_REPORTED_ROWS} bad rows as C{(row, message)}, and how many rows
    were bad in all.
    """
    reader = ImportReader(io.BytesIO(data), fmt, limits, read_bytes, batch_rows)
    items, numbers, bad = [], [], []
    bad_count = 0
    for rows in reader.batches():
        bad_count += split_rows(rows, items, numbers, bad)
    if not items and not bad_count:
        bad_count = 1
        bad.append((0, "the file holds no rows"))
    return items, numbers, bad, bad_count, reader.format
