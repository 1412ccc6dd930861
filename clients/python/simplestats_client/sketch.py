"""
The client's half of the server's percentile sketch (DDSketch).

Values are counted in the logarithmic bins of C{ddsketch}'s
L{LogarithmicMapping}, the mapping the server's C{server/core/sketch.py}
uses, and written in the JSON form the server's C{Sketch.from_json} reads:

    {"relative_accuracy": 0.01, "bins": {"key": count, ...},
     "negative_bins": {"key": count, ...}, "zero_count": n}

With the same relative accuracy as the server (C{--sketch-accuracy}, 1 % by
default) the server adds the bins to its bucket's as they are: the merged
percentiles are those of one sketch of every raw value.
"""

import math
from collections import _count_elements
from itertools import repeat
from math import ceil as _ceil
from math import log as _log
from operator import mul

from ddsketch.mapping import LogarithmicMapping

DEFAULT_ACCURACY = 0.01

_mappings = {}


def mapping_for(accuracy):
    """
    The (shared) L{LogarithmicMapping} of a relative accuracy.
    """
    mapping = _mappings.get(accuracy)
    if mapping is None:
        mapping = _mappings[accuracy] = LogarithmicMapping(accuracy)
    return mapping


class Sketch:
    """
    Counts of values in logarithmic bins: positive and negative values in
    separate maps of bin key to count, values too close to zero in C{zero}.
    """

    __slots__ = ("accuracy", "mapping", "pos", "neg", "zero", "count")

    def __init__(self, accuracy=DEFAULT_ACCURACY):
        self.accuracy = accuracy
        self.mapping = mapping_for(accuracy)
        self.pos = {}
        self.neg = {}
        self.zero = 0
        self.count = 0

    def add(self, value):
        """
        Count one value, in the bin the server would put it in.
        """
        mapping = self.mapping
        if value > mapping.min_possible:
            key = mapping.key(min(value, mapping.max_possible))
            self.pos[key] = self.pos.get(key, 0) + 1
        elif value < -mapping.min_possible:
            key = mapping.key(min(-value, mapping.max_possible))
            self.neg[key] = self.neg.get(key, 0) + 1
        else:
            self.zero += 1
        self.count += 1

    def add_many(self, values, lo, hi):
        """
        L{add} each of C{values} (C{lo} and C{hi} their least and greatest):
        when all are positive and in range, the keys are computed by C-level
        iterators exactly as L{LogarithmicMapping.key} computes them.
        """
        mapping = self.mapping
        if not (lo > mapping.min_possible and hi < mapping.max_possible
                and mapping._offset == 0.0):
            for value in values:
                self.add(value)
            return
        keys = map(_ceil, map(mul, map(_log, values, repeat(2.0)), repeat(mapping._multiplier)))
        tally = {}
        _count_elements(tally, keys)
        pos = self.pos
        get = pos.get
        for key, times in tally.items():
            pos[key] = get(key, 0) + times
        self.count += len(values)

    def quantile(self, q):
        """
        The value at quantile C{q} as the server reads it, by statsd's rule
        (C{upper_N} for C{q = N / 100}): the value at position
        C{Math.round(q * count)} (halves up, at least 1) of the sorted values;
        C{None} for an empty sketch.  (The server's median, its C{p50}, is
        statsd's median instead: the mean of the two middle values for an
        even count.)
        """
        if not self.count:
            return None
        x = q * self.count
        position = max(math.floor(x) + (1 if x - math.floor(x) >= 0.5 else 0), 1)
        seen = 0
        for key in sorted(self.neg, reverse=True):
            seen += self.neg[key]
            if seen >= position:
                return -self.mapping.value(key)
        seen += self.zero
        if self.zero and seen >= position:
            return 0.0
        for key in sorted(self.pos):
            seen += self.pos[key]
            if seen >= position:
                return self.mapping.value(key)
        # Not reached: the position is at most the count.
        if self.pos:
            return self.mapping.value(max(self.pos))
        return 0.0 if self.zero else -self.mapping.value(min(self.neg))

    def to_json(self):
        """
        The form the server's C{Sketch.from_json} reads (counts are whole
        numbers, written as integers; empty negative bins and a zero
        C{zero_count} are left out, as the server's defaults).
        """
        obj = {"relative_accuracy": self.accuracy, "bins": {str(k): v for k, v in self.pos.items()}}
        if self.neg:
            obj["negative_bins"] = {str(k): v for k, v in self.neg.items()}
        if self.zero:
            obj["zero_count"] = self.zero
        return obj
