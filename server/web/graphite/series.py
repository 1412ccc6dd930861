"""
Graphite's C{TimeSeries} (graphite-web C{render/datalib.py}): a list of
values (None for no value) from C{start} (the first value's time) to
C{end} (exclusive) every C{step} seconds, with a name, tags, and a
consolidation read through iteration once C{valuesPerPoint} is over 1.
The functions follow graphite-web's code on it, quirks included, so that
their answers agree with it point for point.
"""

import re

from server.core.graphite_names import PatternError, series_tags

_WRAPPED = re.compile(r"^[a-z]+[(].+[)]$", re.IGNORECASE)


def _average(values):
    return sum(values) / len(values)


CONSOLIDATIONS = {
    "sum": sum,
    "average": _average,
    "avg": _average,
    "avg_zero": _average,
    "max": max,
    "min": min,
    "first": lambda values: values[0],
    "last": lambda values: values[-1],
}


def default_tags(name):
    """
    The tags of a series named C{name}: its path's, unless the name is a
    function call.
    """
    if _WRAPPED.match(name):
        return {"name": name}
    try:
        return series_tags(name)
    except PatternError:
        return {"name": name}


class TimeSeries(list):
    def __init__(self, name, start, end, step, values, consolidate="average", tags=None,
                 xff=None, path_expression=None):
        list.__init__(self, values)
        self.name = name
        self.start = start
        self.end = end
        self.step = step
        self.consolidation = consolidate
        self.values_per_point = 1
        self.path_expression = path_expression or name
        self.xff = xff if xff is not None else 0.0
        self.tags = dict(tags) if tags else default_tags(name)

    def __iter__(self):
        if self.values_per_point > 1:
            return self._consolidating(list.__iter__(self))
        return list.__iter__(self)

    def consolidate(self, values_per_point):
        self.values_per_point = int(values_per_point)

    def _consolidating(self, values):
        fn = CONSOLIDATIONS[self.consolidation]
        zero = self.consolidation == "avg_zero"
        per = self.values_per_point
        xff = self.xff
        buf = []
        count = present = 0
        for v in values:
            count += 1
            if v is not None:
                buf.append(v)
                present += 1
            elif zero:
                buf.append(0)
            if count == per:
                yield fn(buf) if present and present / per >= xff else None
                buf = []
                count = present = 0
        if count:
            yield fn(buf) if present and present / per >= xff else None

    def raw(self):
        """
        The stored values, unconsolidated.
        """
        return list(list.__iter__(self))

    def datapoints(self):
        """
        C{[[value, timestamp], ...]} as graphite-web's JSON has them.
        """
        stride = int(self.step * self.values_per_point)
        return [[v, t] for v, t in zip(self, range(int(self.start), int(self.end) + 1, stride))]

    def copy(self, name=None, start=None, end=None, step=None, values=None, tags=None):
        return TimeSeries(
            self.name if name is None else name,
            self.start if start is None else start,
            self.end if end is None else end,
            self.step if step is None else step,
            self.raw() if values is None else values,
            consolidate=self.consolidation,
            tags=self.tags if tags is None else tags,
            xff=self.xff)

    def __repr__(self):
        return "TimeSeries(%r, %s, %s, %s, %d values)" % (
            self.name, self.start, self.end, self.step, list.__len__(self))

    # Equality by identity: functions look series up in lists.
    __eq__ = object.__eq__
    __hash__ = object.__hash__
