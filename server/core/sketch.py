"""
A mergeable quantile sketch with a relative-error guarantee (DDSketch).

Values are counted in logarithmic bins computed by C{ddsketch}'s
L{LogarithmicMapping}: every quantile read back is within C{relative_accuracy}
(default 1 %) of the exact value of that rank.  Merging two sketches adds
their bins, so the quantiles of a 1-minute bucket come from the merged 5 s
sketches exactly as if every raw value had been added to one sketch.

Bins are kept in plain dicts (sparse) instead of ddsketch's dense lists: a
bucket with a handful of values costs a handful of entries.
"""

import math
from bisect import bisect_right
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
        The value at quantile C{q} in [0, 1] (rank C{q * (count - 1)}, as
        DDSketch defines it), or NaN for an empty sketch.
        """
        if self.count <= 0:
            return math.nan
        mapping = _mapping(self.accuracy)
        rank = q * (self.count - 1)
        seen = 0.0
        # Negative values, most negative first: largest key first.
        for key in sorted(self.neg, reverse=True):
            seen += self.neg[key]
            if seen > rank:
                return -mapping.value(key)
        seen += self.zero
        if seen > rank:
            return 0.0
        for key in sorted(self.pos):
            seen += self.pos[key]
            if seen > rank:
                return mapping.value(key)
        # Floating point rounding of the weights: the largest value.
        if self.pos:
            return mapping.value(max(self.pos))
        return 0.0 if self.zero else -mapping.value(min(self.neg))

    def quantiles(self, qs):
        """
        Several quantiles in one pass over the sorted bins; a bin's value is
        computed only where a quantile falls (a rollup tick asks four of
        every distribution bucket).
        """
        if self.count <= 0:
            return [math.nan] * len(qs)
        mapping = _mapping(self.accuracy)
        pos, neg, zero = self.pos, self.neg, self.zero
        if not neg and not zero and len(pos) == 1:
            # One bin (a bucket of one value, or of equal values).
            for key in pos:
                return [mapping.value(key)] * len(qs)
        last = self.count - 1
        if not neg and not zero:
            # The usual case, positive values only: cumulative weights by a
            # C loop, each rank found by bisection (the first bin whose
            # running total passes it), the same bins the loop below finds.
            keys = sorted(pos)
            totals = list(accumulate(map(pos.__getitem__, keys)))
            end = len(keys) - 1
            value = mapping.value
            return [value(keys[min(bisect_right(totals, q * last), end)]) for q in qs]
        ranks = sorted((q * last, i) for i, q in enumerate(qs))
        result = [None] * len(qs)
        bins = [(-1.0, k, neg[k]) for k in sorted(neg, reverse=True)]
        if zero:
            bins.append((0.0, 0, zero))
        bins.extend((1.0, k, pos[k]) for k in sorted(pos))
        seen = 0.0
        j = 0
        for sign, key, weight in bins:
            seen += weight
            if seen > ranks[j][0]:
                value = sign * mapping.value(key) if sign else 0.0
                while j < len(ranks) and seen > ranks[j][0]:
                    result[ranks[j][1]] = value
                    j += 1
                if j == len(ranks):
                    return result
        # Rounding of the weights: the rest at the largest value.
        sign, key, _ = bins[-1]
        value = sign * mapping.value(key) if sign else 0.0
        return [value if r is None else r for r in result]

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
