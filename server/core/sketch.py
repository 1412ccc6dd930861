"""
A mergeable quantile sketch with a relative-error guarantee (DDSketch).

Values are counted in logarithmic bins computed by C{ddsketch}'s
L{LogarithmicMapping}: every quantile read back is within C{relative_accuracy}
(default 1 %) of the exact value of its rank.  Ranks are statsd's (L{rank},
L{Sketch.quantiles}): C{upper_99} of five values is the fifth, the median of
an even count the mean of the two middle values.  Merging two sketches adds
their bins, so the quantiles of a 1-minute bucket come from the merged 5 s
sketches exactly as if every raw value had been added to one sketch.

Bins are kept in plain dicts (sparse) instead of ddsketch's dense lists: a
bucket with a handful of values costs a handful of entries.
"""

import math
from bisect import bisect_left, bisect_right
from collections import _count_elements
from functools import reduce
from itertools import accumulate, repeat
from math import ceil as _ceil
from math import log as _log
from operator import add, mul

from ddsketch.mapping import LogarithmicMapping

DEFAULT_ACCURACY = 0.01
# Above this an integer-valued float sum is no longer exact.
_EXACT = 2.0 ** 53

_mappings = {}
_key_params = {}
# A client's sketch may name any accuracy: beyond this many, a mapping is
# built for the call and not kept, so hostile input cannot grow the cache.
_MAX_CACHED = 32


def _mapping(accuracy):
    mapping = _mappings.get(accuracy)
    if mapping is None:
        mapping = LogarithmicMapping(accuracy)
        if len(_mappings) < _MAX_CACHED:
            _mappings[accuracy] = mapping
            # What LogarithmicMapping.key computes, taken apart so the hot path
            # makes no method calls: ceil(log2(value) * multiplier) + offset.
            _key_params[accuracy] = (mapping._multiplier, mapping._offset, mapping.min_possible)
    return mapping


# Asked of L{Sketch.quantiles} for statsd's median.
MEDIAN = "median"


def js_round(x):
    """
    C{x} rounded as JavaScript's C{Math.round} rounds it: to the nearest
    integer, halves up (C{-2.5} to C{-2.0}); Python's C{round} rounds halves
    to even.
    """
    whole = math.floor(x)
    # x - floor(x) is exact for every float.
    return whole + 1.0 if x - whole >= 0.5 else float(whole)


def rank(q, count):
    """
    The position (1 for the least value) of quantile C{q} among C{count}
    sorted values as statsd's C{upper_N} takes it for C{q = N / 100}:
    C{Math.round(q * count)}, at least 1 (statsd's answer for one value;
    where it rounds to 0 statsd sends no C{upper_N}, we send the least
    value).  Nearest rank: C{upper_99} of 5 values is the 5th, of 100 the
    99th.
    """
    return max(js_round(q * count), 1.0)


def add_count(total, n, weight):
    """
    C{total + weight} C{n} times over, as a left fold would give it: one
    multiplication where every step is exact (integers below 2**53).
    """
    if total.is_integer() and weight.is_integer():
        result = total + n * weight
        if abs(result) < _EXACT:
            return result
    return reduce(add, repeat(weight, n), total)


class Sketch:
    """
    Counts of values in logarithmic bins; positive and negative values in
    separate bin maps, values too close to zero in C{zero}.
    """

    __slots__ = ("accuracy", "pos", "neg", "zero", "count")

    def __init__(self, accuracy=DEFAULT_ACCURACY):
        self.accuracy = accuracy
        self.pos = {}
        self.neg = {}
        self.zero = 0.0
        self.count = 0.0

    def add(self, value, weight=1.0):
        """
        Count C{value} C{weight} times.
        """
        mapping = _mapping(self.accuracy)
        # Beyond max_possible a key turns back into no float (OverflowError on
        # read): the largest floats count in the last bin.
        if value > mapping.min_possible:
            key = mapping.key(min(value, mapping.max_possible))
            self.pos[key] = self.pos.get(key, 0.0) + weight
        elif value < -mapping.min_possible:
            key = mapping.key(min(-value, mapping.max_possible))
            self.neg[key] = self.neg.get(key, 0.0) + weight
        else:
            self.zero += weight
        self.count += weight

    def add_many(self, values, weight, lo, hi):
        """
        L{add} each of C{values} (floats, C{lo} and C{hi} their least and
        greatest) with C{weight}, in order, to the same bits; the keys of
        positive values are computed by C-level iterators as
        L{LogarithmicMapping.key} computes them.
        """
        mapping = _mapping(self.accuracy)
        if not (lo > mapping.min_possible and hi < mapping.max_possible
                and mapping._offset == 0.0):
            for value in values:
                self.add(value, weight)
            return
        # int(ceil(log(v, 2) * multiplier) + offset), with no offset.
        keys = map(_ceil, map(mul, map(_log, values, repeat(2.0)), repeat(mapping._multiplier)))
        pos = self.pos
        get = pos.get
        n = len(values)
        if weight.is_integer():
            tally = {}
            _count_elements(tally, keys)
            keys = list(tally)
            olds = list(map(get, keys, repeat(0.0)))
            news = list(map(add, olds, map(mul, tally.values(), repeat(weight))))
            # Integers below 2**53 add exactly: once n * w is n times w.
            if all(map(float.is_integer, olds)) and max(news) < _EXACT:
                pos.update(zip(keys, news))
            else:
                for key, times in tally.items():
                    pos[key] = reduce(add, repeat(weight, times), get(key, 0.0))
        else:
            for key in keys:
                pos[key] = get(key, 0.0) + weight
        self.count = add_count(self.count, n, weight)

    def merge(self, other):
        """
        Add every bin of C{other} to this sketch.
        """
        if other.accuracy != self.accuracy:
            raise ValueError(
                "cannot merge sketches of relative accuracy %r and %r"
                % (self.accuracy, other.accuracy)
            )
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            if not mine:
                mine.update(theirs)
            elif theirs:
                # mine[key] = mine.get(key, 0.0) + weight, in C loops.
                keys = list(theirs)
                mine.update(zip(keys, map(add, map(mine.get, keys, repeat(0.0)), theirs.values())))
        self.zero += other.zero
        self.count += other.count

    def copy(self):
        clone = Sketch(self.accuracy)
        clone.pos = dict(self.pos)
        clone.neg = dict(self.neg)
        clone.zero = self.zero
        clone.count = self.count
        return clone

    def rebinned(self, accuracy):
        """
        This sketch's values counted again in bins of another accuracy (each
        bin's values taken at the bin's representative value).
        """
        if accuracy == self.accuracy:
            return self
        mapping = _mapping(self.accuracy)
        other = Sketch(accuracy)
        for key, weight in self.pos.items():
            other.add(mapping.value(key), weight)
        for key, weight in self.neg.items():
            other.add(-mapping.value(key), weight)
        if self.zero:
            other.add(0.0, self.zero)
        return other

    def quantile(self, q):
        """
        The value at quantile C{q} in [0, 1] by statsd's rule (L{rank}), or
        NaN for an empty sketch.
        """
        return self.quantiles((q,))[0]

    def quantiles(self, qs, lo=None, hi=None):
        """
        Several quantiles in one pass over the sorted bins, by statsd's rules
        (C{lib/process_metrics.js}): a number C{q} is the value at position
        L{rank}C{(q, count)} of the sorted values (its C{upper_N} for C{q =
        N / 100}), L{MEDIAN} the middle value, or the mean of the two middle
        ones for an even count.  A value counted with weight C{w} takes C{w}
        positions.  Each value is its bin's, within the relative accuracy of
        the exact one (the exact one where every value has a bin of its own);
        C{lo} and C{hi}, the exact least and greatest values when the caller
        knows them, bound the answers and are the answer, exactly, at the
        first and the last position.

        A bin's value is computed only where a quantile falls (a rollup tick
        asks four of every distribution bucket).
        """
        if self.count <= 0:
            return [math.nan] * len(qs)
        if lo is not None and lo == hi:
            # One value, or several equal ones: each quantile is that value.
            return [lo] * len(qs)
        mapping = _mapping(self.accuracy)
        pos, neg, zero = self.pos, self.neg, self.zero
        if not neg and not zero:
            # The usual case, positive values only.
            keys = sorted(pos)
            signs = None
            weights = map(pos.__getitem__, keys)
        else:
            # Negative values, most negative first (largest key first), then
            # zeros, then positive values.
            keys = sorted(neg, reverse=True)
            signs = [-1.0] * len(keys)
            if zero:
                keys.append(0)
                signs.append(0.0)
            positive = sorted(pos)
            keys.extend(positive)
            signs.extend(repeat(1.0, len(positive)))
            weights = [neg[k] for k in keys[:len(neg)]]
            if zero:
                weights.append(zero)
            weights.extend(map(pos.__getitem__, positive))
        # Cumulative weights by a C loop; a position is found by bisection.
        totals = list(accumulate(weights))
        total = totals[-1]
        # Bins of no weight hold no position: the first and last that do.
        first = bisect_right(totals, 0.0)
        end = bisect_left(totals, total)
        value = mapping.value

        def at(index, edge_low, edge_high):
            if edge_low and index == first and lo is not None:
                return lo
            if edge_high and index == end and hi is not None:
                return hi
            if signs is None:
                found = value(keys[index])
            else:
                sign = signs[index]
                found = sign * value(keys[index]) if sign else 0.0
            # A bin's value may lie a little beyond the values seen.
            if lo is not None and found < lo:
                return lo
            if hi is not None and found > hi:
                return hi
            return found

        result = []
        for q in qs:
            if q == MEDIAN:
                # The value at the middle position and the one just after it
                # (the same one for an odd count).
                half = total / 2.0
                low = min(bisect_left(totals, half), end)
                high = min(bisect_right(totals, half), end)
                a = at(low, half <= 1.0, half > total - 1.0)
                b = at(high, half < 1.0, half >= total - 1.0)
                if a == b:
                    result.append(a)
                else:
                    # statsd's (a + b) / 2; halved first where the sum would
                    # overflow.
                    middle = (a + b) / 2.0
                    result.append(middle if math.isfinite(middle) else a / 2.0 + b / 2.0)
            else:
                k = rank(q, total)
                result.append(at(min(bisect_left(totals, k), end), k <= 1.0, k > total - 1.0))
        return result

    def to_json(self):
        """
        A JSON-able form: the format clients may send inside a partial
        aggregate and the form snapshots keep.
        """
        return {
            "relative_accuracy": self.accuracy,
            "bins": {str(k): v for k, v in self.pos.items()},
            "negative_bins": {str(k): v for k, v in self.neg.items()},
            "zero_count": self.zero,
        }

    @classmethod
    def from_json(cls, obj):
        """
        Inverse of L{to_json}; raises C{ValueError} naming what is wrong.
        """
        if not isinstance(obj, dict):
            raise ValueError("sketch must be an object")
        accuracy = obj.get("relative_accuracy", DEFAULT_ACCURACY)
        if not _is_number(accuracy) or not 0 < accuracy < 1:
            raise ValueError("sketch relative_accuracy must be a number in (0, 1)")
        sketch = cls(float(accuracy))
        # Keys beyond these turn back into no float (OverflowError on read).
        try:
            mapping = _mapping(sketch.accuracy)
            lowest, highest = mapping.key(mapping.min_possible), mapping.key(mapping.max_possible)
        except (OverflowError, ValueError):
            # So fine an accuracy (5e-324) that the bin keys are no numbers.
            raise ValueError("sketch relative_accuracy %r is too small" % (accuracy,))
        for field, target in (("bins", sketch.pos), ("negative_bins", sketch.neg)):
            bins = obj.get(field, {})
            if not isinstance(bins, dict):
                raise ValueError("sketch %s must be an object of key: count" % (field,))
            for key, weight in bins.items():
                try:
                    ikey = int(key)
                except (TypeError, ValueError):
                    raise ValueError("sketch %s key %r is not an integer" % (field, key))
                if not lowest <= ikey <= highest:
                    raise ValueError("sketch %s key %d is outside %d..%d, the keys of relative"
                                     " accuracy %r" % (field, ikey, lowest, highest, sketch.accuracy))
                if not _is_number(weight) or weight < 0:
                    raise ValueError("sketch %s count for key %s must be a number >= 0" % (field, key))
                target[ikey] = target.get(ikey, 0.0) + float(weight)
                sketch.count += float(weight)
        zero = obj.get("zero_count", 0)
        if not _is_number(zero) or zero < 0:
            raise ValueError("sketch zero_count must be a number >= 0")
        sketch.zero = float(zero)
        sketch.count += sketch.zero
        return sketch


def _is_number(x):
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        # An int beyond any float (JSON allows 10**400).
        return False
