"""
Export and import of stored points as ndjson, JSON or CSV.

An exported row is a tuple the TCP port accepts: C{["name", ts, value]} or
C{["name", ts, value, {tags}]}, one per stored bucket, the value written so
that importing it rebuilds the same bucket: a plain number for a bucket of one
plain sample (the original SimpleStats format), C{"12c"} for a counter,
C{"23g"} for a gauge set once, C{"153ms"} for one timer value, and a partial
aggregate object otherwise.  Each series is exported at the finest tier that
holds each stretch of time, so nothing is counted twice.
"""

import csv
import io
import json
import math

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.python import failure
from zope.interface import implementer

from server.aggregate import ROWS
from server.model import COUNTER, GAUGE, SAMPLE, SET, ParseError
from server.parse_tuple import parse_line, parse_tuple
from server.query import bucket_rows

EXPORT_FORMATS = {
    "ndjson": (b"application/x-ndjson; charset=utf-8", b"ndjson"),
    "json": (b"application/json; charset=utf-8", b"json"),
    "csv": (b"text/csv; charset=utf-8", b"csv"),
}
IMPORT_FORMATS = ("auto", "ndjson", "json", "csv")
CSV_HEADER = ["name", "timestamp", "value", "tags"]
MAX_REPORTED_ROWS = 100
# Spreadsheet programs run a cell starting with these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _number(x):
    # abs() first: int() of an infinity (a sum past the float range) raises.
    if abs(x) < 2 ** 53 and x == int(x):
        return int(x)
    return x


def _finite_fields(partial):
    """
    C{partial} without the fields that overflowed (a sum of squares of
    values past 1e154): infinity is no JSON.  C{sumsq} is optional, and an
    import without it takes every value at the mean.
    """
    return {k: v for k, v in partial.items() if not isinstance(v, float) or v - v == 0.0}


def export_value(series, row):
    """
    The TCP-protocol value that rebuilds a stored bucket C{row}.
    """
    fam = series.family
    row = ROWS[fam]._make(row)
    if fam == COUNTER:
        return "%rc" % (_number(row.count),)
    if fam == GAUGE:
        if row.updates == 1:
            return "%rg" % (_number(row.last),)
        return _finite_fields({"type": "g", "last": row.last, "min": row.min, "max": row.max,
                               "count": _number(row.updates), "sum": row.sum})
    if fam == SET:
        return {"type": "s", "count": _number(row.count)}
    if row.count == 1 and row.min == row.max:
        if series.type == SAMPLE:
            return _number(row.min)
        return "%r%s" % (_number(row.min), series.type)
    return _finite_fields({"type": series.type, "count": _number(row.count), "sum": row.sum,
                           "min": row.min, "max": row.max, "sumsq": row.sumsq, "last": row.last})


def export_rows(store, series, start, until, now):
    """
    C{(bucket start, row)} of C{series} from C{start} to C{until}, each
    stretch of time from the finest tier that still holds all of it.
    """
    tiers = store.tiers
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
            for number in sorted(rows, reverse=True):
                yield number * step, rows[number]
        upper = lower
        if upper <= start:
            break


def _tuples(store, keys, start, until, now):
    for key in keys:
        series = store.series.get(key)
        if series is None:
            continue
        rows = sorted(export_rows(store, series, start, until, now), key=lambda r: r[0])
        tags = dict(series.tags)
        for ts, row in rows:
            item = [series.name, ts, export_value(series, row)]
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


def detect_format(data):
    text = data.lstrip()[:1]
    if text == b"[":
        # A JSON array of tuples spans the whole body; ndjson has one per line.
        first_line = data.lstrip().split(b"\n", 1)[0].strip()
        try:
            value = json.loads(first_line)
        except ValueError:
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


def _csv_rows(text):
    reader = csv.reader(io.StringIO(text))
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
        except ValueError:
            ts_value = ts
        if value.startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                yield number, None, "value %r is not a JSON object" % (value[:40],)
                continue
        else:
            try:
                value = json.loads(value)
            except ValueError:
                pass
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


def parse_import(data, fmt, limits):
    """
    Check a whole upload.  Returns C{(items, row_numbers, bad_rows,
    bad_count, format)}: the parsed items with the row each came from, the
    first L{MAX_REPORTED_ROWS} bad rows as C{(row, message)}, and how many
    rows were bad in all.
    """
    if fmt == "auto":
        fmt = detect_format(data)
    items, numbers, bad = [], [], []
    bad_count = 0

    def refuse(number, message):
        nonlocal bad_count
        bad_count += 1
        if len(bad) < MAX_REPORTED_ROWS:
            bad.append((number, message))

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        refuse(0, "the file is not UTF-8 (byte %d)" % (e.start,))
        return items, numbers, bad, bad_count, fmt
    if fmt == "ndjson":
        for number, line in enumerate(text.split("\n"), 1):
            line = line.strip()
            if not line:
                continue
            try:
                parsed = parse_line(line.encode(), limits)
            except ParseError as e:
                refuse(number, str(e))
                continue
            items.extend(parsed.items)
            numbers.extend([number] * len(parsed.items))
    elif fmt == "json":
        try:
            rows = json.loads(text)
        except ValueError as e:
            refuse(0, "not a JSON document: %s" % (e,))
            return items, numbers, bad, bad_count, fmt
        if not isinstance(rows, list):
            refuse(0, "a JSON import must be an array of [name, timestamp, value] tuples")
            return items, numbers, bad, bad_count, fmt
        for number, row in enumerate(rows, 1):
            try:
                items.append(parse_tuple(row, limits))
                numbers.append(number)
            except ParseError as e:
                refuse(number, str(e))
    else:
        try:
            for number, row, problem in _csv_rows(text):
                if problem is not None:
                    refuse(number, problem)
                    continue
                try:
                    items.append(parse_tuple(row, limits))
                    numbers.append(number)
                except ParseError as e:
                    refuse(number, str(e))
        except csv.Error as e:
            # The reader gives up on the whole file (a lone "\r" inside a row).
            refuse(0, "not a CSV file: %s" % (e,))
    if not items and not bad_count:
        refuse(0, "the file holds no rows")
    return items, numbers, bad, bad_count, fmt

