"""
Partial aggregates: what one series accumulates in one open bucket.

Every aggregate merges exactly with another of its kind, so a 1-minute bucket
is the merge of its twelve 5-second buckets and equals what aggregating the
raw values directly would give.  A closed bucket is stored as a row of floats
(L{STORED_FIELDS}); the API derives the fields people ask for from that row
(L{derive}).
"""

import math

from server.model import COUNTER, DISTRIBUTION_TYPES, GAUGE, SET
from server.sketch import Sketch

NAN = math.nan
QUANTILES = (0.5, 0.9, 0.95, 0.99)

STORED_FIELDS = {
    COUNTER: ("count",),
    GAUGE: ("updates", "sum", "min", "max", "last"),
    SET: ("count",),
    "dist": ("count", "sum", "sumsq", "min", "max", "last", "p50", "p90", "p95", "p99"),
}

# Fields the API offers per type, and the ones it shows by default.
PUBLIC_FIELDS = {
    COUNTER: ("count", "rate"),
    GAUGE: ("last", "min", "max", "mean", "updates"),
    SET: ("count",),
    "dist": ("count", "sum", "min", "max", "mean", "std", "median", "p90", "p95", "p99", "last"),
}
DEFAULT_FIELDS = {
    COUNTER: ("count", "rate"),
    GAUGE: ("last", "min", "max"),
    SET: ("count",),
    "dist": ("mean", "p90", "p99"),
}


def family(metric_type):
    """
    The storage family of a type: distribution types share one layout.
    """
    return "dist" if metric_type in DISTRIBUTION_TYPES else metric_type


class CounterAgg:
    __slots__ = ("count",)

    def __init__(self):
        self.count = 0.0

    def add(self, value, rate, ts):
        self.count += value / rate

    def add_times(self, value, times, ts):
        self.count += value * times

    def merge_partial(self, fields, ts):
        self.count += fields["count"]

    def merge(self, other):
        self.count += other.count

    def row(self):
        return (self.count,)

    def to_json(self):
        return [self.count]

    @classmethod
    def from_json(cls, data, accuracy):
        agg = cls()
        agg.count = data[0]
        return agg

    @staticmethod
    def merge_rows(old, new):
        return (old[0] + new[0],)


class GaugeAgg:
    """
    Gauge values set during the bucket.  The running value (deltas apply to
    it) lives on the series; this records what the bucket saw.
    """

    __slots__ = ("updates", "sum", "min", "max", "last", "last_ts")

    def __init__(self):
        self.updates = 0.0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = NAN
        self.last_ts = -math.inf

    def add(self, value, rate, ts):
        self.add_times(value, 1, ts)

    def add_times(self, value, times, ts):
        """
        L{add} C{times} times over, at one time (for an integer value the
        sum is the same).
        """
        self.updates += times
        self.sum += value * times
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if ts >= self.last_ts:
            self.last = value
            self.last_ts = ts

    def merge_partial(self, fields, ts):
        last = fields["last"]
        updates = fields.get("count", 1.0)
        self.updates += updates
        self.sum += fields.get("sum", last * updates)
        self.min = min(self.min, fields.get("min", last))
        self.max = max(self.max, fields.get("max", last))
        if ts >= self.last_ts:
            self.last = last
            self.last_ts = ts

    def merge(self, other):
        self.updates += other.updates
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.last_ts >= self.last_ts:
            self.last = other.last
            self.last_ts = other.last_ts

    def row(self):
        return (self.updates, self.sum, self.min, self.max, self.last)

    def to_json(self):
        return [self.updates, self.sum, self.min, self.max, self.last, self.last_ts]

    @classmethod
    def from_json(cls, data, accuracy):
        agg = cls()
        agg.updates, agg.sum, agg.min, agg.max, agg.last, agg.last_ts = data
        return agg

    @staticmethod
    def merge_rows(old, new):
        # A late point joins a closed bucket: the later arrival is the last.
        if not old[0]:
            return new
        return (old[0] + new[0], old[1] + new[1], min(old[2], new[2]),
                max(old[3], new[3]), new[4])


class DistAgg:
    """
    Timers, histograms, distributions and plain samples: exact count, sum,
    sum of squares, min, max and last, and a sketch for the percentiles.
    """

    __slots__ = ("count", "sum", "sumsq", "min", "max", "last", "last_ts", "sketch")

    def __init__(self, accuracy):
        self.count = 0.0
        self.sum = 0.0
        self.sumsq = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = NAN
        self.last_ts = -math.inf
        self.sketch = Sketch(accuracy)

    def add(self, value, rate, ts):
        # A sampled value stands for 1 / rate values.
        self.add_times(value, 1.0 / rate, ts)

    def add_times(self, value, times, ts):
        """
        L{add} C{times} times over, at one time (for a small integer value
        the sums are the same); C{times} may be a fraction (a weight).
        """
        self.count += times
        self.sum += value * times
        self.sumsq += value * value * times
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if ts >= self.last_ts:
            self.last = value
            self.last_ts = ts
        self.sketch.add(value, float(times))

    def merge_partial(self, fields, ts):
        count = fields["count"]
        total = fields["sum"]
        lo = fields["min"]
        hi = fields["max"]
        self.count += count
        self.sum += total
        # Without a sum of squares, take every value at the mean: the
        # standard deviation of such a bucket is a lower bound.
        self.sumsq += fields.get("sumsq", total * total / count)
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        if ts >= self.last_ts:
            self.last = fields.get("last", hi)
            self.last_ts = ts
        sketch = fields.get("sketch")
        if sketch is not None and abs(sketch.count - count) <= 1e-9 * count:
            self.sketch.merge(sketch.rebinned(self.sketch.accuracy))
        else:
            # No sketch from the client: min and max are exact, the rest of
            # the values sit at the mean that keeps the sum exact.
            self.sketch.add(lo, 1.0)
            if count >= 2:
                self.sketch.add(hi, 1.0)
            if count > 2:
                self.sketch.add((total - lo - hi) / (count - 2), count - 2)

    def merge(self, other):
        self.count += other.count
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.last_ts >= self.last_ts:
            self.last = other.last
            self.last_ts = other.last_ts
        self.sketch.merge(other.sketch)

    def row(self):
        return (self.count, self.sum, self.sumsq, self.min, self.max, self.last,
                *self.sketch.quantiles(QUANTILES))

    def to_json(self):
        return [self.count, self.sum, self.sumsq, self.min, self.max, self.last,
                self.last_ts, self.sketch.to_json()]

    @classmethod
    def from_json(cls, data, accuracy):
        agg = cls(accuracy)
        (agg.count, agg.sum, agg.sumsq, agg.min, agg.max, agg.last, agg.last_ts,
         sketch) = data
        agg.sketch = Sketch.from_json(sketch)
        return agg

    @staticmethod
    def merge_rows(old, new):
        """
        Merge a late bucket into a closed one.  Count, sum, min, max and last
        stay exact; the closed bucket's sketch is gone, so its percentiles
        are combined weighted by count (the one approximate merge).
        """
        if not old[0]:
            return new
        c1, c2 = old[0], new[0]
        total = c1 + c2
        quantiles = tuple((a * c1 + b * c2) / total for a, b in zip(old[6:], new[6:]))
        return (total, old[1] + new[1], old[2] + new[2], min(old[3], new[3]),
                max(old[4], new[4]), new[5]) + quantiles


class SetAgg:
    """
    The members seen in the bucket, plus C{extra}: unique counts merged in
    without their members (an imported export of a closed bucket).
    """

    __slots__ = ("members", "extra")

    def __init__(self):
        self.members = set()
        self.extra = 0.0

    def add(self, value, rate, ts):
        self.members.add(value)

    def add_times(self, value, times, ts):
        self.members.add(value)

    def merge_partial(self, fields, ts):
        if "members" in fields:
            self.members.update(fields["members"])
        else:
            self.extra += fields["count"]

    def merge(self, other):
        self.members |= other.members
        self.extra += other.extra

    def row(self):
        return (len(self.members) + self.extra,)

    def to_json(self):
        return {"members": sorted(self.members), "extra": self.extra}

    @classmethod
    def from_json(cls, data, accuracy):
        agg = cls()
        agg.members = set(data["members"])
        agg.extra = data["extra"]
        return agg

    @staticmethod
    def merge_rows(old, new):
        # Members of a closed bucket are not kept: a late member counts as
        # new (an upper bound of the unique count).
        return (old[0] + new[0],)


AGGREGATES = {COUNTER: CounterAgg, GAUGE: GaugeAgg, SET: SetAgg, "dist": DistAgg}


def new_aggregate(fam, accuracy):
    if fam == "dist":
        return DistAgg(accuracy)
    return AGGREGATES[fam]()


def _clean_column(values):
    # NaN and infinities are not JSON: a field with no value is None.
    return [v if v is not None and v - v == 0.0 else None for v in values]


def _ratio_column(numerators, denominators):
    return [n / d if d else None for n, d in zip(numerators, denominators)]


def _std_column(columns, step):
    out = []
    for count, total, sumsq in zip(columns[0], columns[1], columns[2]):
        if count <= 0:
            out.append(None)
        else:
            mean = total / count
            out.append(math.sqrt(max(0.0, sumsq / count - mean * mean)))
    return out


_COLUMN_DERIVERS = {
    COUNTER: {
        "count": lambda c, step: c[0],
        "rate": lambda c, step: [v / step for v in c[0]],
    },
    GAUGE: {
        "updates": lambda c, step: c[0],
        "mean": lambda c, step: _ratio_column(c[1], c[0]),
        "min": lambda c, step: c[2],
        "max": lambda c, step: c[3],
        "last": lambda c, step: c[4],
    },
    SET: {"count": lambda c, step: c[0]},
    "dist": {
        "count": lambda c, step: c[0],
        "sum": lambda c, step: c[1],
        "mean": lambda c, step: _ratio_column(c[1], c[0]),
        "std": _std_column,
        "min": lambda c, step: c[3],
        "max": lambda c, step: c[4],
        "last": lambda c, step: c[5],
        "median": lambda c, step: c[6],
        "p90": lambda c, step: c[7],
        "p95": lambda c, step: c[8],
        "p99": lambda c, step: c[9],
    },
}


def derive(fam, fields, columns, step):
    """
    Compute public C{fields} from stored columns (one list per stored field,
    in L{STORED_FIELDS} order): one list of values per field, NaN and
    infinities as None.
    """
    return [_clean_column(_COLUMN_DERIVERS[fam][name](columns, step)) for name in fields]
