"""
Reading series back: choosing a tier within what the tiers keep and the
point limit, gathering closed and open buckets; a bucket without data is
None for every type.
"""

import math
import re

from bisect import bisect_left
from collections import deque

from server.core.aggregate import (AGGREGATES, DEFAULT_FIELDS, PUBLIC_FIELDS, STORED_FIELDS,
                              derive, new_aggregate)

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|min|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
AUTO_POINTS = 2000


class QueryError(ValueError):
    """
    A query that cannot be answered; C{parameter} names the culprit.
    """

    def __init__(self, parameter, message):
        ValueError.__init__(self, message)
        self.parameter = parameter


def parse_time(parameter, text, now):
    """
    C{now}, C{-5m}, C{-1h}, C{-7d} or seconds since the epoch.
    """
    text = text.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        # -999...9d (four hundred nines) is minus infinity: refused below.
        value = now - float(match.group(1)) * _UNITS[match.group(2)]
    else:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
    if not math.isfinite(value):
        raise QueryError(parameter, "%s must be seconds since the epoch, 'now' or like -1h, got %r"
                         % (parameter, text))
    return value


def parse_resolution(store, text):
    """
    C{auto} (L{None}) or one of the tier steps (C{5s}, C{1m}, C{60}).
    """
    if text in (None, "", "auto"):
        return None
    # A dozen digits are more than any tier step; five thousand would be
    # beyond int()'s digit limit (ValueError).
    match = re.match(r"^(\d{1,12})(s|m|h|d)?$", text.strip())
    steps = [t.step for t in store.tiers]
    if match:
        step = int(match.group(1)) * _UNITS[match.group(2) or "s"]
        if step in steps:
            return steps.index(step)
    raise QueryError("resolution", "resolution must be auto or one of %s, got %r" % (
        ", ".join(_step_name(s) for s in steps), text))


def _step_name(step):
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if step % seconds == 0:
            return "%d%s" % (step // seconds, unit)
    return "%ds" % step


def _covers(tier, start, now):
    return tier.retention is None or start >= now - tier.retention


def _points(tier, start, until):
    return int(until // tier.step) - int(start // tier.step) + 1


def _duration(seconds):
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % (seconds,)


def tier_options(store, start, until, now, max_points=20000):
    """
    Each tier with whether it can answer C{start}..C{until}: its retention
    keeps C{start} and it gives at most C{max_points} points.
    C{[{"step", "name", "usable", "reason"}]}, finest first.
    """
    options = []
    for t in store.tiers:
        reason = None
        if not _covers(t, start, now):
            reason = "%s keeps %s, this range starts %s ago" % (
                _step_name(t.step), _duration(t.retention), _duration(int(max(0, now - start))))
        else:
            points = _points(t, start, until)
            if points > max_points:
                reason = "%s over this range gives %d points, the limit is %d" % (
                    _step_name(t.step), points, max_points)
        options.append({"step": t.step, "name": _step_name(t.step), "usable": reason is None,
                        "reason": reason})
    return options


def choose_tier(store, start, until, now, tier=None, max_points=20000):
    """
    The tier to answer from: the one asked for when it can answer the range
    (L{tier_options}), or the finest whose retention covers C{start} and
    that gives at most L{AUTO_POINTS} points (else the one that keeps the
    longest).  A tier asked for that cannot answer is a L{QueryError}
    naming those that can.
    """
    tiers = store.tiers
    if tier is None:
        tier = len(tiers) - 1
        for i, t in enumerate(tiers):
            if _covers(t, start, now) and _points(t, start, until) <= AUTO_POINTS:
                tier = i
                break
        points = _points(tiers[tier], start, until)
        if points > max_points:
            raise QueryError("resolution", "resolution %s over this range gives %d points, the"
                             " limit is %d: pick a shorter range"
                             % (_step_name(tiers[tier].step), points, max_points))
        return tier
    options = tier_options(store, start, until, now, max_points)
    if not options[tier]["usable"]:
        usable = [o["name"] for o in options if o["usable"]]
        error = QueryError("resolution", "resolution %s; use one of: %s" % (
            options[tier]["reason"], ", ".join(["auto"] + usable)))
        error.usable = usable
        raise error
    return tier


def partial_from(store, i, now):
    """
    The start of the bucket of tier C{i} in progress at C{now}: points from
    it on are still filling.
    """
    step = store.tiers[i].step
    return int(now // step) * step


def fields_for(series, requested):
    """
    Check the requested field names against the series' type.
    """
    fam = series.family
    if not requested:
        return DEFAULT_FIELDS[fam]
    allowed = PUBLIC_FIELDS[fam]
    for name in requested:
        if name not in allowed:
            raise QueryError("fields", "a %s has no field %r; it has %s" % (
                series.type if fam != "dist" else "timer or sample", name, ", ".join(allowed)))
    return tuple(requested)


def _pending(store, series, i, first, last):
    """
    C{{number: aggregate}}: what the open buckets of tier C{i} and of the
    finer tiers (not rolled up yet) hold for buckets C{first}..C{last}.
    """
    store.fold_series(series)
    step = store.tiers[i].step
    pending = {}
    for j in range(i + 1):
        for bucket, agg in series.open[j].items():
            number = bucket // step
            if first <= number <= last:
                merged = pending.get(number)
                if merged is None:
                    merged = pending[number] = new_aggregate(series.family, store.accuracy,
                                                          store.set_limit)
                merged.merge(agg)
    return pending


def bucket_rows(store, series, i, first, last):
    """
    C{{number: row}} for buckets numbered C{first}..C{last} of tier C{i}:
    the closed ones, the open one, and what finer tiers hold that has not
    rolled up yet, so a read sees every accepted point.
    """
    numbers, columns = bucket_columns(store, series, i, first, last)
    return {n: row for n, row in zip(numbers, zip(*columns))} if numbers else {}


def bucket_columns(store, series, i, first, last):
    """
    The buckets of L{bucket_rows} as C{(numbers, columns)}: sorted bucket
    numbers and one list per stored field (column slices, no row objects).
    """
    stored = series.stored[i]
    if stored is not None:
        lo, hi = stored.span(first, last)
        numbers = stored.index[lo:hi].tolist()
        columns = [column[lo:hi].tolist() for column in stored.columns]
    else:
        numbers = []
        columns = [[] for _ in STORED_FIELDS[series.family]]
    pending = _pending(store, series, i, first, last)
    if pending:
        merge_rows = AGGREGATES[series.family].merge_rows
        for number in sorted(pending):
            row = pending[number].row()
            p = bisect_left(numbers, number)
            if p < len(numbers) and numbers[p] == number:
                row = merge_rows(tuple(c[p] for c in columns), row)
                for column, value in zip(columns, row):
                    column[p] = value
            else:
                numbers.insert(p, number)
                for column, value in zip(columns, row):
                    column.insert(p, value)
    return numbers, columns


def series_points(store, series, fields, start, until, i, now):
    """
    C{{field: [(bucket start, value or None), ...]}} over C{start}..C{until}
    at tier C{i}, every bucket present (pairs as tuples: JSON writes them
    as arrays, and a week of points builds no list per point).
    """
    step = store.tiers[i].step
    first = int(start // step)
    # Up to now, or to the series' latest point when an accepted point is
    # stamped in the (near) future.
    last = int(min(until, max(now, series.last_seen)) // step)
    if last < first:
        return {name: [] for name in fields}
    numbers, columns = bucket_columns(store, series, i, first, last)
    # A bucket that received nothing is None for every type: a counter's
    # empty bucket after an outage is not a measured zero, nor is a gauge's
    # last value a reading of the buckets it did not get.
    values = derive(series.family, fields, columns, step)
    result = {}
    if len(numbers) == last - first + 1:
        times = [n * step for n in numbers]
        for name, column in zip(fields, values):
            result[name] = list(zip(times, column))
    else:
        times = [n * step for n in range(first, last + 1)]
        places = [n - first for n in numbers]
        for name, column in zip(fields, values):
            full = [None] * len(times)
            # A C loop: full[places[k]] = column[k] for every k.
            deque(map(full.__setitem__, places, column), maxlen=0)
            result[name] = list(zip(times, full))
    return result


def day_week(store, series, field, i, now, tz_offset_minutes):
    """
    Today (from local midnight) against the same time of day over the
    previous seven days: the mean, min and max of those days per bucket.
    """
    step = store.tiers[i].step
    offset = tz_offset_minutes * 60
    midnight = math.floor((now + offset) / 86400) * 86400 - offset
    today = series_points(store, series, (field,), midnight, now, i, now)[field]
    slots = int(86400 // step)
    days = []
    for d in range(1, 8):
        begin = midnight - d * 86400
        points = series_points(store, series, (field,), begin, begin + 86400 - step, i, now)[field]
        days.append([v for _, v in points[:slots]])
    avg, low, high = [], [], []
    for k in range(slots):
        ts = midnight + k * step
        seen = [day[k] for day in days if k < len(day) and day[k] is not None]
        if seen:
            mean = sum(seen) / len(seen)
            if mean - mean != 0.0:
                # Seven values near the float limit overflow their sum.
                mean = sum(v / len(seen) for v in seen)
            avg.append([ts, mean])
            low.append([ts, min(seen)])
            high.append([ts, max(seen)])
        else:
            avg.append([ts, None])
            low.append([ts, None])
            high.append([ts, None])
    return {"today": today, "week_avg": avg, "week_min": low, "week_max": high,
            "days_with_data": sum(1 for day in days if any(v is not None for v in day)),
            "resolution": step, "field": field, "midnight": midnight}
