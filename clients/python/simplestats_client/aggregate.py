"""
Local pre-aggregation: one partial per (name, type, tags) and 5-second bucket.

A timer (histogram, distribution, plain sample) partial keeps count, sum,
sum of squares, min, max, last and a L{Sketch} of its values, so the
server's percentiles of the merged bucket are those of the raw values (within
the sketch's relative accuracy); a counter keeps its total; a gauge its last,
min, max, count and sum (changes, C{+3g}, made before the bucket's first set
are summed into one change).  The partial of a bucket is what the server's
TCP port reads:

    ["api.query", 1732350002.481, {"type": "ms", "count": 12, "sum": 1840.5,
     "min": 3.1, "max": 410.0, "sumsq": ..., "last": 8.0, "sketch": {...}},
     {"host": "web1"}]

its timestamp the time of the bucket's last value (so that the server's
"last" follows the order of arrival when a bucket is sent in two pieces).

L{Aggregator} is thread-safe: one lock around the dict of open buckets.  A
timer's values are appended to a list under the lock and folded into the
partial 512 at a time (count, sums and sketch bins by C-level loops), so a
call costs an append, not a sketch update.
"""

import math
import re
import threading
import time
from functools import reduce
from operator import add, mul

from simplestats_client.sketch import DEFAULT_ACCURACY, Sketch

COUNTER = "c"
GAUGE = "g"
TIMER = "ms"
HISTOGRAM = "h"
DISTRIBUTION = "d"
SAMPLE = "v"
DIST_TYPES = frozenset({TIMER, HISTOGRAM, DISTRIBUTION, SAMPLE})

# What the server accepts (server/core/model.py, the default limits).
_NAME_OK = re.compile(r"[A-Za-z0-9_.\-]{1,200}").fullmatch
_TAG_KEY_OK = re.compile(r"[A-Za-z0-9_.\-]{1,100}").fullmatch
_TAG_VALUE_OK = re.compile(r"[A-Za-z0-9_.\-:/@+]{0,100}").fullmatch
MAX_TAGS = 20

# Values appended before they are folded into the partial.
FOLD_EVERY = 512
# Names and tag sets checked once and remembered (at most this many).
_KNOWN_LIMIT = 100000

# Typed strings as DaTtSs' agg() took them, longest suffix first.
_SUFFIXES = (("ms", TIMER), ("c", COUNTER), ("g", GAUGE), ("h", HISTOGRAM), ("d", DISTRIBUTION))


def parse_agg(text):
    """
    C{"153ms"}, C{"1c"}, C{"23g"}, C{"+3g"}, C{"5h"}, C{"5d"} or a bare
    number: C{(type, value, is_gauge_change)}; raises C{ValueError}.
    """
    if not isinstance(text, str):
        if isinstance(text, bool) or not isinstance(text, (int, float)):
            raise ValueError("value must be a number or a typed string like '153ms', got %r"
                             % (text,))
        return SAMPLE, _finite(text), False
    for suffix, kind in _SUFFIXES:
        if text.endswith(suffix):
            digits = text[: -len(suffix)]
            return kind, _number(digits, text), kind == GAUGE and digits[:1] in ("+", "-")
    return SAMPLE, _number(text, text), False


def _number(digits, text):
    if not digits or digits != digits.strip() or "_" in digits:
        raise ValueError("value %r is not understood: expected a number followed by c, ms, g,"
                         " h or d" % (text,))
    try:
        number = float(digits)
    except ValueError:
        raise ValueError("value %r is not understood: expected a number followed by c, ms, g,"
                         " h or d" % (text,))
    return _finite(number)


def _finite(value):
    value = float(value)
    if value - value != 0.0:
        raise ValueError("value must be finite, got %r" % (value,))
    return value


def _ms_floor(ts):
    """
    C{ts} cut to the millisecond below (never into the next bucket).
    """
    return math.floor(ts * 1000.0) / 1000.0


class _Dist:
    __slots__ = ("bucket", "values", "count", "sum", "sumsq", "min", "max", "last", "ts",
                 "sketch")

    def __init__(self, bucket, accuracy):
        self.bucket = bucket
        self.values = []
        self.count = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = None
        self.ts = bucket
        self.sketch = Sketch(accuracy)

    def fold(self):
        vals = self.values
        if not vals:
            return
        self.values = []
        self.count += len(vals)
        # Left folds, as the server folds raw values.
        self.sum = reduce(add, vals, self.sum)
        self.sumsq = reduce(add, map(mul, vals, vals), self.sumsq)
        lo = min(vals)
        hi = max(vals)
        if lo < self.min:
            self.min = lo
        if hi > self.max:
            self.max = hi
        self.last = vals[-1]
        self.sketch.add_many(vals, lo, hi)

    def items(self, name, kind, tags):
        self.fold()
        if not self.count:
            return []
        fields = {"type": kind, "count": self.count, "sum": self.sum, "min": self.min,
                  "max": self.max, "last": self.last, "sketch": self.sketch.to_json()}
        # A sum of squares past the largest float is left out (the server
        # then takes every value at the mean for the deviation).
        if math.isfinite(self.sumsq):
            fields["sumsq"] = self.sumsq
        return [_item(name, self.ts, fields, tags)]


class _Count:
    __slots__ = ("bucket", "count", "ts")

    def __init__(self, bucket, accuracy):
        self.bucket = bucket
        self.count = 0.0
        self.ts = bucket

    def items(self, name, kind, tags):
        count = self.count
        if count.is_integer() and abs(count) < 2.0 ** 53:
            count = int(count)
        return [_item(name, self.ts, {"type": COUNTER, "count": count}, tags)]


class _Gauge:
    __slots__ = ("bucket", "change", "changes", "count", "sum", "min", "max", "last", "ts")

    def __init__(self, bucket, accuracy):
        self.bucket = bucket
        # Changes before the bucket's first set: the server applies them to
        # its running value, which the client does not know.
        self.change = 0.0
        self.changes = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = None
        self.ts = bucket

    def set(self, value):
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.last = value

    def items(self, name, kind, tags):
        items = []
        if self.changes:
            text = ("+" if self.change >= 0 else "") + repr(self.change) + "g"
            items.append(_item(name, self.ts, text, tags))
        if self.count:
            items.append(_item(name, self.ts, {"type": GAUGE, "last": self.last, "min": self.min,
                                               "max": self.max, "count": self.count,
                                               "sum": self.sum}, tags))
        return items


_KINDS = {COUNTER: _Count, GAUGE: _Gauge}
for _kind in DIST_TYPES:
    _KINDS[_kind] = _Dist
del _kind


def _item(name, ts, value, tags):
    item = [name, _ms_floor(ts), value]
    if tags:
        item.append(dict(tags))
    return item


class Aggregator:
    """
    The open partials of one client.

    @param clock: returns the time in seconds since the epoch.
    @param bucket: the width of a partial's bucket in seconds (the server's
        finest tier, 5 s by default).
    @param accuracy: the sketch's relative accuracy (the server's
        C{--sketch-accuracy}, 1 % by default: the bins then merge as they are).
    @param prefix: put before every name.
    @param tags: tags of every series (a call's tags are added to them).
    """

    def __init__(self, clock=time.time, bucket=5.0, accuracy=DEFAULT_ACCURACY, prefix="",
                 tags=None):
        self.clock = clock
        self.width = float(bucket)
        self.accuracy = accuracy
        self.prefix = prefix
        self.lock = threading.Lock()
        self._open = {}
        self._closed = []
        self._names = set()
        self._tagsets = {}
        self._tags = self._check_tags(dict(tags or {}))
        self.base = self.tagkey(None)

    # -- checking names and tags ---------------------------------------------

    def name(self, name):
        """
        C{prefix + name}, checked; raises C{ValueError}.
        """
        if self.prefix:
            name = self.prefix + name
        if name not in self._names:
            if not isinstance(name, str) or not _NAME_OK(name):
                raise ValueError("name must be 1 to 200 characters of letters, digits, '_', '-'"
                                 " and '.', got %r" % (name,))
            if len(self._names) < _KNOWN_LIMIT:
                self._names.add(name)
        return name

    def _check_tags(self, tags):
        if len(tags) > MAX_TAGS:
            raise ValueError("%d tags is more than the limit of %d" % (len(tags), MAX_TAGS))
        checked = {}
        for key, value in tags.items():
            if not isinstance(key, str) or not _TAG_KEY_OK(key):
                raise ValueError("tag key must be 1 to 100 characters of letters, digits, '_', '-'"
                                 " and '.', got %r" % (key,))
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError("tag %s: value must be a string or a number, got %r"
                                 % (key, value))
            value = str(value)
            if not _TAG_VALUE_OK(value):
                raise ValueError("tag %s: value must be at most 100 characters of letters, digits"
                                 " and '_-.:/@+', got %r" % (key, value))
            checked[key] = value
        return checked

    def tagkey(self, tags):
        """
        The client's tags with C{tags} added, as a sorted tuple of pairs;
        raises C{ValueError}.
        """
        if tags is None:
            tags = {}
        elif not isinstance(tags, dict):
            raise ValueError("tags must be a dict like {'host': 'web1'}, got %r" % (tags,))
        raw = tuple(tags.items())
        try:
            key = self._tagsets.get(raw)
        except TypeError:
            # An unhashable value: refused below.
            key = raw = None
        if key is None:
            merged = dict(self._tags)
            merged.update(self._check_tags(tags))
            if len(merged) > MAX_TAGS:
                raise ValueError("%d tags is more than the limit of %d" % (len(merged), MAX_TAGS))
            key = tuple(sorted(merged.items()))
            if raw is not None and len(self._tagsets) < _KNOWN_LIMIT:
                self._tagsets[raw] = key
        return key

    # -- recording -----------------------------------------------------------

    def _get(self, key, kind, bucket):
        # Called with the lock held: the bucket's partial, a new one when
        # the bucket changed (the old one waits for the next take()).
        acc = self._open.get(key)
        if acc is None or acc.bucket != bucket:
            if acc is not None:
                self._closed.append((key, acc))
            acc = self._open[key] = _KINDS[kind](bucket, self.accuracy)
        return acc

    def add(self, name, kind, value, tags=None):
        """
        One value of a timer, histogram, distribution or plain sample.
        """
        value = float(value)
        if value - value != 0.0:
            raise ValueError("value must be finite, got %r" % (value,))
        if self.prefix or name not in self._names:
            name = self.name(name)
        key = (name, kind, self.base if tags is None else self.tagkey(tags))
        now = self.clock()
        bucket = now - now % self.width
        with self.lock:
            acc = self._open.get(key)
            if acc is None or acc.bucket != bucket:
                acc = self._get(key, kind, bucket)
            values = acc.values
            values.append(value)
            acc.ts = now
            if len(values) >= FOLD_EVERY:
                acc.fold()

    def count(self, name, n=1, tags=None):
        """
        A counter increment of C{n}.
        """
        n = _finite(n)
        key = (self.name(name), COUNTER, self.base if tags is None else self.tagkey(tags))
        now = self.clock()
        bucket = now - now % self.width
        with self.lock:
            acc = self._get(key, COUNTER, bucket)
            acc.count += n
            acc.ts = now

    def gauge(self, name, value, change=False, tags=None):
        """
        Set a gauge to C{value}, or change it by C{value} (C{change}).
        """
        value = _finite(value)
        key = (self.name(name), GAUGE, self.base if tags is None else self.tagkey(tags))
        now = self.clock()
        bucket = now - now % self.width
        with self.lock:
            acc = self._get(key, GAUGE, bucket)
            if not change:
                acc.set(value)
            elif acc.count:
                acc.set(acc.last + value)
            else:
                acc.change += value
                acc.changes += 1
            acc.ts = now

    # -- taking the partials out ---------------------------------------------

    def take(self, everything=False):
        """
        The partials of the buckets that have ended (all of them, the open
        ones too, with C{everything}), as tuples the server's TCP port reads,
        in the order their buckets were opened.
        """
        now = self.clock()
        with self.lock:
            closed = self._closed
            self._closed = []
            if everything:
                closed.extend(self._open.items())
                self._open = {}
            else:
                width = self.width
                ended = [key for key, acc in self._open.items() if acc.bucket + width <= now]
                for key in ended:
                    closed.append((key, self._open.pop(key)))
        # Folded outside the lock: nothing records into these any more.
        items = []
        for (name, kind, tags), acc in closed:
            items.extend(acc.items(name, kind, tags))
        return items

    def open_count(self):
        """
        How many partials are open.
        """
        with self.lock:
            return len(self._open) + len(self._closed)
