"""
Partial aggregates: what one series accumulates in one open bucket.

Every aggregate merges exactly with another of its kind, so a 1-minute bucket
is the merge of its twelve 5-second buckets and equals what aggregating the
raw values directly would give.  A closed bucket is stored as a row of floats
(L{ROWS}: one named tuple per family, so a field is read by its name); the API
derives the fields people ask for from that row (L{derive}).

Points reach an aggregate through L{fold}: a run of values that arrived one
after another, at non-decreasing times, with one sample rate.  Each fold is
a strict left fold (C{((s + a) + b) + c}), done by C-level iterators, so
folding a run in one go or in pieces gives the same bits: whenever a read or
a tick folds what is pending, the state is the one the points give one by
one.
"""

import math
import sys
from collections import namedtuple
from functools import partial, reduce
from itertools import repeat
from operator import add, mul, truediv

from server.core.cardinality import EXACT_LIMIT, add_all, merged, sketch_of
from server.core.cardinality import decode as decode_hll
from server.core.cardinality import encode as encode_hll
from server.core.model import COUNTER, DISTRIBUTION_TYPES, GAUGE, SET
from server.core.sketch import MEDIAN, Sketch, add_count

NAN = math.nan
# What the stored p50, p90, p95 and p99 are, by statsd's rules: its median,
# upper_90, upper_95 and upper_99 (L{Sketch.quantiles}).
QUANTILES = (MEDIAN, 0.9, 0.95, 0.99)
# left_sum(values, start): ((start + a) + b) + ..., one IEEE addition at a
# time, whatever way the values are cut into runs.  CPython's sum() does
# exactly that for floats before 3.12 (a C loop, three times faster than
# reduce); from 3.12 it compensates rounding, which depends on the cut.
if sys.version_info < (3, 12):
    left_sum = sum
else:
    left_sum = partial(reduce, add)  # pragma: no cover

# A closed bucket's row, per family: the only place that names positions.
CounterRow = namedtuple("CounterRow", "count")
GaugeRow = namedtuple("GaugeRow", "updates sum min max last")
SetRow = namedtuple("SetRow", "count")
DistRow = namedtuple("DistRow", "count sum sumsq min max last p50 p90 p95 p99")
ROWS = {COUNTER: CounterRow, GAUGE: GaugeRow, SET: SetRow, "dist": DistRow}
STORED_FIELDS = {fam: row._fields for fam, row in ROWS.items()}
_FIRST_QUANTILE = DistRow._fields.index("p50")
# The stored percentiles, in QUANTILES order (also the fields of an exported
# distribution partial that carry them).
QUANTILE_FIELDS = DistRow._fields[_FIRST_QUANTILE:]


def field_index(fam, name):
    """
    The position of the stored field C{name} in a row (and column) of C{fam}.
    """
    return STORED_FIELDS[fam].index(name)


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


def _floats(values):
    # Values arrive as the text a client sent (C{"12.5"}) or as floats.
    return list(map(float, values))


def _range_and_last(agg, vals, ts):
    """
    Widen C{agg}'s min and max to C{vals}'s, and take the last of them as
    its last value unless a later one is in already.  Returns C{(min, max)}
    of C{vals}.
    """
    lo = min(vals)
    if lo < agg.min:
        agg.min = lo
    hi = max(vals)
    if hi > agg.max:
        agg.max = hi
    if ts >= agg.last_ts:
        agg.last = vals[-1]
        agg.last_ts = ts
    return lo, hi


def _weighted(vals, weight):
    return vals if weight == 1.0 else list(map(mul, vals, repeat(weight)))


# Float addition is not associative: the same 5-second buckets merged into a
# minute in another order (a read merges the open ones in the order they
# opened, the tick in time order; an import brings the minute as one partial)
# can give another last bit.  So an aggregate folds its own points into its
# running fields (the hot path, a left fold as above) and keeps what is
# merged into it -- other aggregates, client partials -- apart, as the exact
# sum of those parts: per summed field a cell, L{None} (nothing merged), one
# float (the exact sum so far) or, once that is not a float, a list of
# non-overlapping floats whose exact sum it is (Shewchuk's expansion, what
# math.fsum keeps inside).  Its row is the correctly rounded sum of the two,
# the same bits in any order and grouping of the merges.


def grow(parts, x):
    """
    Add C{x} to the expansion C{parts} (smallest first), exactly, in place.
    An infinity or a NaN (a sum of squares past the float range) cannot be
    kept exactly: from then on C{parts} is that one value, added to plainly.
    """
    if not x:
        return
    if parts and parts[-1] - parts[-1] != 0.0:
        parts[-1] += x
        return
    if x - x != 0.0:
        parts[:] = [x]
        return
    i = 0
    for y in parts:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        if hi - hi != 0.0:
            # Past the float range: no exact sum either.
            parts[:] = [hi]
            return
        lo = y - (hi - x)
        if lo:
            parts[i] = lo
            i += 1
        x = hi
    parts[i:] = [x]


def add_exact(cell, x, other=None):
    """
    The cell (see above) of C{cell} plus the number C{x} plus the cell
    C{other} (left as it is, L{None} for none), exactly.
    """
    if x:
        if cell is None:
            cell = float(x)
        elif cell.__class__ is float:
            hi = cell + x
            if hi - hi != 0.0:
                # An infinity or NaN: plain addition from here on.
                cell = hi
            else:
                # Knuth's two-sum: what the addition rounded off, exactly.
                b = hi - cell
                lo = (cell - (hi - b)) + (x - b)
                cell = [lo, hi] if lo else hi
        else:
            grow(cell, x)
    if other is not None:
        if other.__class__ is float:
            return add_exact(cell, other)
        for y in other:
            cell = add_exact(cell, y)
    return cell


def exact_total(cell, running):
    """
    The correctly rounded sum of C{cell} and the float C{running}.
    """
    if cell is None:
        return running
    if cell.__class__ is float:
        return cell + running
    if not cell:
        return running
    top = cell[-1]
    if top - top != 0.0:
        return top + running
    try:
        return math.fsum(cell + [running])
    except (OverflowError, ValueError):
        # The exact sum is past the float range (or running is an infinity
        # of the other sign than an overflow): as plain addition gives it.
        return sum(cell, running)


def exact_form(agg):
    """
    What L{restore_exact} needs besides C{agg.to_json()}: L{None} when
    nothing was merged into C{agg} (its form says it all), else its running
    fields and its cells (each as a list of floats), as JSON.
    """
    names = getattr(agg, "SUMMED", ())
    cells = [getattr(agg, "x" + name) for name in names]
    if all(cell is None for cell in cells):
        return None
    return [[getattr(agg, name) for name in names],
            [[] if c is None else [c] if c.__class__ is float else list(c) for c in cells]]


def restore_exact(agg, form):
    """
    Put back what L{exact_form} gave, on an aggregate read back from its
    C{to_json} form (which holds the rounded totals).
    """
    running, cells = form
    names = agg.SUMMED
    if len(running) != len(names) or len(cells) != len(names):
        raise ValueError("exact sums of %d fields, expected %d" % (len(running), len(names)))
    for name, value, cell in zip(names, running, cells):
        setattr(agg, name, float(value))
        cell = [float(x) for x in cell]
        setattr(agg, "x" + name, None if not cell else cell[0] if len(cell) == 1 else cell)


class CounterAgg:
    # xcount: what was merged in, exactly (see add_exact).
    __slots__ = ("count", "xcount")
    # The summed fields, whose merges are kept exact.
    SUMMED = ("count",)

    def __init__(self):
        self.count = 0.0
        self.xcount = None

    def fold(self, values, rate, ts):
        """
        Add each value divided by the sample rate; returns those increments.
        """
        vals = _floats(values)
        if rate != 1.0:
            vals = list(map(truediv, vals, repeat(rate)))
        self.count = left_sum(vals, self.count)
        return vals

    def merge_partial(self, fields, ts):
        self.xcount = add_exact(self.xcount, fields["count"])

    def merge(self, other):
        self.xcount = add_exact(self.xcount, other.count, other.xcount)

    def row(self):
        return CounterRow(exact_total(self.xcount, self.count))

    def to_json(self):
        # The total; the exact state goes beside it (exact_form).
        return list(self.row())

    @classmethod
    def from_json(cls, data, accuracy):
        agg = cls()
        agg.count = data[0]
        return agg

    @staticmethod
    def merge_rows(old, new):
        return CounterRow(CounterRow._make(old).count + CounterRow._make(new).count)


class GaugeAgg:
    """
    Gauge values set during the bucket.  The running value (deltas apply to
    it) lives on the series; this records what the bucket saw.
    """

    __slots__ = ("updates", "sum", "min", "max", "last", "last_ts", "xupdates", "xsum")
    SUMMED = ("updates", "sum")

    def __init__(self):
        self.updates = 0.0
        self.sum = 0.0
        self.xupdates = self.xsum = None
        self.min = math.inf
        self.max = -math.inf
        self.last = NAN
        self.last_ts = -math.inf

    def fold(self, values, rate, ts, gauge):
        """
        Set the gauge to each value in turn, starting from the series'
        running value C{gauge}: a text value with a sign (statsd's C{+3|g},
        C{-2|g}) changes it, any other sets it.  Returns the new running
        value.
        """
        vals = []
        append = vals.append
        for v in values:
            if v.__class__ is str and v[0] in "+-":
                gauge = gauge + float(v)
            else:
                gauge = float(v)
            append(gauge)
        self.updates = add_count(self.updates, len(vals), 1.0)
        self.sum = left_sum(vals, self.sum)
        _range_and_last(self, vals, ts)
        return gauge

    def merge_partial(self, fields, ts):
        last = fields["last"]
        updates = fields.get("count", 1.0)
        self.xupdates = add_exact(self.xupdates, updates)
        self.xsum = add_exact(self.xsum, fields.get("sum", last * updates))
        self.min = min(self.min, fields.get("min", last))
        self.max = max(self.max, fields.get("max", last))
        if ts >= self.last_ts:
            self.last = last
            self.last_ts = ts

    def merge(self, other):
        self.xupdates = add_exact(self.xupdates, other.updates, other.xupdates)
        self.xsum = add_exact(self.xsum, other.sum, other.xsum)
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.last_ts >= self.last_ts:
            self.last = other.last
            self.last_ts = other.last_ts

    def row(self):
        return GaugeRow(exact_total(self.xupdates, self.updates), exact_total(self.xsum, self.sum),
                        self.min, self.max, self.last)

    def to_json(self):
        # The totals; the exact state goes beside them (exact_form).
        return [*self.row(), self.last_ts]

    @classmethod
    def from_json(cls, data, accuracy):
        agg = cls()
        agg.updates, agg.sum, agg.min, agg.max, agg.last, agg.last_ts = data
        return agg

    @staticmethod
    def merge_rows(old, new):
        # A late point joins a closed bucket: the later arrival is the last.
        old, new = GaugeRow._make(old), GaugeRow._make(new)
        if not old.updates:
            return new
        return GaugeRow(old.updates + new.updates, old.sum + new.sum, min(old.min, new.min),
                        max(old.max, new.max), new.last)


class DistAgg:
    """
    Timers, histograms, distributions and plain samples: exact count, sum,
    sum of squares, min, max and last, and a sketch for the percentiles.

    C{unsketched} counts values merged in without their distribution (a
    client partial of more than two values and no sketch): the bucket's
    percentiles are then unknown (NaN, C{null} in answers), not invented.

    C{given} is C{[count, p50, p90, p95, p99]} of partials that came with
    their percentiles (an export of a stored bucket, whose sketch is not
    kept), else L{None}: alone in a bucket they are its percentiles, bit
    for bit; with other values they are combined weighted by count, as
    L{merge_rows} combines a late bucket.

    C{pinned} is the percentiles of a partial that came with both its
    percentiles and its sketch (an export of an open bucket) into an empty
    bucket: they are the bucket's percentiles, bit for bit, until anything
    else joins it; from then on its sketch answers, exactly merged.
    """

    __slots__ = ("count", "sum", "sumsq", "min", "max", "last", "last_ts", "sketch",
                 "unsketched", "given", "pinned", "xcount", "xsum", "xsumsq")
    SUMMED = ("count", "sum", "sumsq")

    def __init__(self, accuracy):
        self.count = 0.0
        self.sum = 0.0
        self.sumsq = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = NAN
        self.last_ts = -math.inf
        self.sketch = Sketch(accuracy)
        self.unsketched = 0.0
        self.given = None
        self.pinned = None
        self.xcount = self.xsum = self.xsumsq = None

    def _empty(self):
        # Nothing folded nor merged in.
        return not self.count and self.xcount is None

    def fold(self, values, rate, ts):
        """
        Count each value C{1 / rate} times (a sampled value stands for that
        many); returns the values as floats.
        """
        vals = _floats(values)
        weight = 1.0 / rate
        self.pinned = None
        self.count = add_count(self.count, len(vals), weight)
        self.sum = left_sum(_weighted(vals, weight), self.sum)
        self.sumsq = left_sum(_weighted(list(map(mul, vals, vals)), weight), self.sumsq)
        lo, hi = _range_and_last(self, vals, ts)
        self.sketch.add_many(vals, weight, lo, hi)
        return vals

    def merge_partial(self, fields, ts):
        count = fields["count"]
        total = fields["sum"]
        lo = fields["min"]
        hi = fields["max"]
        empty = self._empty()
        self.pinned = None
        # Without a sum of squares, take every value at the mean: the
        # standard deviation of such a bucket is a lower bound.
        self.xcount = add_exact(self.xcount, count)
        self.xsum = add_exact(self.xsum, total)
        self.xsumsq = add_exact(self.xsumsq, fields.get("sumsq", total * total / count))
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        if ts >= self.last_ts:
            self.last = fields.get("last", hi)
            self.last_ts = ts
        sketch = fields.get("sketch")
        if sketch is not None and abs(sketch.count - count) <= 1e-9 * count:
            self.sketch.merge(sketch.rebinned(self.sketch.accuracy))
            if empty and "p50" in fields and sketch.accuracy == self.sketch.accuracy:
                # An open bucket's export: its percentiles as they were (the
                # sketch's total weight may differ in its last bits).
                self.pinned = [fields[name] for name in QUANTILE_FIELDS]
        elif "p50" in fields:
            # A stored bucket's row: its percentiles as they were.
            self.given = _weigh_quantiles(
                self.given, [count] + [fields[name] for name in QUANTILE_FIELDS])
        elif count <= 2:
            # One or two values are their min and max: exact.
            self.sketch.add(lo, 1.0)
            if count == 2:
                self.sketch.add(hi, 1.0)
        else:
            self.unsketched += count

    def merge(self, other):
        self.pinned = other.pinned if self._empty() else None
        self.xcount = add_exact(self.xcount, other.count, other.xcount)
        self.xsum = add_exact(self.xsum, other.sum, other.xsum)
        self.xsumsq = add_exact(self.xsumsq, other.sumsq, other.xsumsq)
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.last_ts >= self.last_ts:
            self.last = other.last
            self.last_ts = other.last_ts
        self.sketch.merge(other.sketch)
        self.unsketched += other.unsketched
        if other.given is not None:
            self.given = _weigh_quantiles(self.given, other.given)

    def row(self):
        given = self.given
        if self.unsketched:
            quantiles = [NAN] * len(QUANTILES)
        elif self.pinned is not None:
            quantiles = self.pinned
        elif given is not None and not self.sketch.count:
            quantiles = given[1:]
        else:
            # The sketch's answer is within its relative error of the value
            # of its rank, never outside what was seen.  Where the sketch
            # holds every value of the bucket, min and max are its least and
            # greatest: the answer, exactly, at the first and the last rank.
            lo, hi = self.min, self.max
            if given is None:
                quantiles = self.sketch.quantiles(QUANTILES, lo, hi)
            else:
                quantiles = [lo if q < lo else hi if q > hi else q
                             for q in self.sketch.quantiles(QUANTILES)]
                quantiles = _weigh_quantiles(given, [self.sketch.count] + quantiles)[1:]
        return DistRow(*self.totals(), self.min, self.max, self.last, *quantiles)

    def totals(self):
        """
        C{(count, sum, sumsq)}: what was folded and merged in, each
        correctly rounded.
        """
        return (exact_total(self.xcount, self.count), exact_total(self.xsum, self.sum),
                exact_total(self.xsumsq, self.sumsq))

    def to_json(self):
        # The totals; the exact state goes beside them (exact_form).
        data = [*self.totals(), self.min, self.max, self.last, self.last_ts,
                self.sketch.to_json()]
        given, pinned = self.given, self.pinned
        if self.unsketched or given is not None or pinned is not None:
            data.append(self.unsketched)
        if given is not None or pinned is not None:
            data.append(None if given is None else list(given))
        if pinned is not None:
            data.append(list(pinned))
        return data

    @classmethod
    def from_json(cls, data, accuracy):
        agg = cls(accuracy)
        (agg.count, agg.sum, agg.sumsq, agg.min, agg.max, agg.last, agg.last_ts,
         sketch) = data[:8]
        agg.sketch = Sketch.from_json(sketch)
        if len(data) > 8:
            agg.unsketched = float(data[8])
        if len(data) > 9 and data[9] is not None:
            agg.given = [float(v) for v in data[9]]
        if len(data) > 10:
            agg.pinned = [float(v) for v in data[10]]
        return agg

    @staticmethod
    def merge_rows(old, new):
        """
        Merge a late bucket into a closed one.  Count, sum, min, max and last
        stay exact; the closed bucket's sketch is gone, so its percentiles
        are combined weighted by count (the one approximate merge).
        """
        old, new = DistRow._make(old), DistRow._make(new)
        if not old.count:
            return new
        c1, c2 = old.count, new.count
        total = c1 + c2
        quantiles = [(a * c1 + b * c2) / total
                     for a, b in zip(old[_FIRST_QUANTILE:], new[_FIRST_QUANTILE:])]
        return DistRow(total, old.sum + new.sum, old.sumsq + new.sumsq, min(old.min, new.min),
                       max(old.max, new.max), new.last, *quantiles)


def _weigh_quantiles(old, new):
    """
    C{[count, p50, p90, p95, p99]} of two such lists together: C{new} when
    there is no C{old}, else the percentiles weighted by count (as
    L{DistAgg.merge_rows} does).
    """
    if old is None:
        return list(new)
    c1, c2 = old[0], new[0]
    total = c1 + c2
    return [total] + [(a * c1 + b * c2) / total for a, b in zip(old[1:], new[1:])]


class SetAgg:
    """
    The members seen in the bucket, exactly up to C{limit} of them; past
    that a HyperLogLog sketch of them (L{server.core.cardinality}) and no
    members.  Plus C{extra}: unique counts merged in without their members
    (an imported export of a closed bucket).

    @ivar members: the members while exact, else L{None}.
    @ivar hll: the sketch once past C{limit}, else L{None}.
    """

    __slots__ = ("members", "hll", "extra", "limit")

    def __init__(self, limit=EXACT_LIMIT):
        self.members = set()
        self.hll = None
        self.extra = 0.0
        self.limit = limit

    def fold(self, values, rate, ts):
        members = self.members
        if members is None:
            add_all(self.hll, values)
        else:
            members.update(values)
            if len(members) > self.limit:
                self._to_sketch()

    def _to_sketch(self):
        self.hll = sketch_of(self.members)
        self.members = None

    def merge_partial(self, fields, ts):
        if "members" in fields:
            self.fold(fields["members"], 1.0, ts)
        else:
            self.extra += fields["count"]

    def merge(self, other):
        if other.members is not None:
            self.fold(other.members, 1.0, 0.0)
        elif self.members is None:
            self.hll = merged(self.hll, other.hll)
        else:
            hll = merged(other.hll)
            add_all(hll, self.members)
            self.hll = hll
            self.members = None
        self.extra += other.extra

    def row(self):
        if self.members is None:
            return SetRow(self.hll.get_estimate() + self.extra)
        return SetRow(len(self.members) + self.extra)

    def to_json(self):
        if self.members is None:
            return {"hll": encode_hll(self.hll), "extra": self.extra}
        return {"members": sorted(self.members), "extra": self.extra}

    @classmethod
    def from_json(cls, data, accuracy, limit=EXACT_LIMIT):
        """
        Read L{to_json}'s form back, or the member list of a snapshot
        written before sets had sketches (sketched if over C{limit}).
        """
        agg = cls(limit)
        if "hll" in data:
            agg.hll = decode_hll(data["hll"])
            agg.members = None
        else:
            agg.fold(data["members"], 1.0, 0.0)
        agg.extra = float(data["extra"])
        return agg

    @staticmethod
    def merge_rows(old, new):
        # Members of a closed bucket are not kept: a late member counts as
        # new (an upper bound of the unique count).
        return SetRow(SetRow._make(old).count + SetRow._make(new).count)


AGGREGATES = {COUNTER: CounterAgg, GAUGE: GaugeAgg, SET: SetAgg, "dist": DistAgg}


def new_aggregate(fam, accuracy, set_limit=EXACT_LIMIT):
    if fam == "dist":
        return DistAgg(accuracy)
    if fam == SET:
        return SetAgg(set_limit)
    return AGGREGATES[fam]()


def aggregate_from_json(fam, data, accuracy, set_limit=EXACT_LIMIT):
    """
    An open aggregate read back from its L{to_json} form (a snapshot).
    """
    if fam == SET:
        return SetAgg.from_json(data, accuracy, set_limit)
    return AGGREGATES[fam].from_json(data, accuracy)


def _clean_column(values):
    # NaN and infinities are not JSON: a field with no value is None.
    return [v if v is not None and v - v == 0.0 else None for v in values]


def _ratio_column(numerators, denominators):
    return [n / d if d else None for n, d in zip(numerators, denominators)]


def _std_column(c, step):
    out = []
    for count, total, sumsq in zip(c.count, c.sum, c.sumsq):
        if count <= 0:
            out.append(None)
        else:
            mean = total / count
            out.append(math.sqrt(max(0.0, sumsq / count - mean * mean)))
    return out


def _stored(name):
    return lambda c, step: getattr(c, name)


# Public fields from the stored columns (a row named tuple of columns).
_COLUMN_DERIVERS = {
    COUNTER: {
        "count": _stored("count"),
        "rate": lambda c, step: [v / step for v in c.count],
    },
    GAUGE: {
        "updates": _stored("updates"),
        "mean": lambda c, step: _ratio_column(c.sum, c.updates),
        "min": _stored("min"),
        "max": _stored("max"),
        "last": _stored("last"),
    },
    SET: {"count": _stored("count")},
    "dist": {
        "count": _stored("count"),
        "sum": _stored("sum"),
        "mean": lambda c, step: _ratio_column(c.sum, c.count),
        "std": _std_column,
        "min": _stored("min"),
        "max": _stored("max"),
        "last": _stored("last"),
        "median": _stored("p50"),
        "p90": _stored("p90"),
        "p95": _stored("p95"),
        "p99": _stored("p99"),
    },
}


def derive(fam, fields, columns, step):
    """
    Compute public C{fields} from stored columns (one list per stored field,
    in L{STORED_FIELDS} order): one list of values per field, NaN and
    infinities as None.
    """
    named = ROWS[fam]._make(columns)
    return [_clean_column(_COLUMN_DERIVERS[fam][name](named, step)) for name in fields]
