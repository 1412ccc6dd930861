"""
Rendering targets over the store: resolving the paths and tag queries of
the targets to series (a slice of the store at a time), reading their
points through L{server.core.query} the way whisper answers a fetch,
evaluating the functions, and writing graphite-web's JSON and CSV.
"""

import math
from datetime import datetime
from itertools import islice

from server.core.model import series_key
from server.core.query import series_points
from server.web.graphite import functions  # registers the functions
from server.web.graphite.params import FUNCTIONS, RenderError, check_params
from server.web.graphite.grammar import Call, GrammarError, Path, parse
from server.core.graphite_names import (DEFAULT_FIELD, OWN_FIELD, OWN_NAME, STATSD_SCHEMES,
                                       Choice, Field, Pattern, PatternError, TagQuery, fields_of,
                                       is_glob, rank, tagged_path)
from server.web.graphite.series import TimeSeries


class TooManySeries(RenderError):
    """
    A request matched more series than C{--graphite-max-series}.
    """


def parse_target(target):
    try:
        return parse(target)
    except GrammarError as e:
        raise RenderError("bad target: %s" % (e,))
    except RecursionError:
        raise RenderError("bad target: its calls nest too deeply")


def sources(node, found):
    """
    Add to C{found} the path expressions and C{seriesByTag} calls of C{node}.
    """
    if isinstance(node, Path):
        found[node.text] = node
    elif isinstance(node, Call):
        if node.name == "seriesByTag":
            found[node.raw] = node
            return found
        for arg in node.args:
            sources(arg, found)
        for _, arg in node.kwargs:
            sources(arg, found)
    return found


def exact_paths(store, path):
    """
    C{[(path, series, Field)]} for a path without globs: looked up, not
    searched.  Of several series offering the path, the one of the lowest
    L{rank} (a series' own name first).
    """
    if ";" in path:
        name, tags = tagged_path(path)
        canonical = name + "".join(";%s=%s" % kv for kv in tags)
        series = store.series.get(series_key(name, tags))
        if series is not None:
            return [(canonical, series, Field(DEFAULT_FIELD[series.family]))]
        base, _, last = name.rpartition(".")
        series = store.series.get(series_key(base, tags)) if base else None
        if series is not None and last in fields_of(series):
            return [(canonical, series, fields_of(series)[last])]
        return []
    choice = Choice()
    found = store.series.get(path)
    if found is not None:
        choice.offer(path, OWN_NAME, (path, found, Field(DEFAULT_FIELD[found.family])))
    base, _, last = path.rpartition(".")
    found = store.series.get(base) if base else None
    if found is not None and last in fields_of(found):
        choice.offer(path, OWN_FIELD, (path, found, fields_of(found)[last]))
    for scheme, (prefix, types, bare, suffixes) in enumerate(STATSD_SCHEMES, 1):
        head = ".".join(prefix) + "."
        if not path.startswith(head):
            continue
        rest = path[len(head):]
        found = store.series.get(rest)
        if bare is not None and found is not None and found.type in types:
            choice.offer(path, rank(scheme, False), (path, found, bare))
        base, _, last = rest.rpartition(".")
        found = store.series.get(base) if base and last in suffixes else None
        if found is not None and found.type in types:
            choice.offer(path, rank(scheme, True), (path, found, suffixes[last]))
    return choice.values()


class Resolver:
    """
    The series each source of a request stands for.
    """

    def __init__(self, store, max_series):
        self.store = store
        self.max_series = max_series

    def resolve(self, source_nodes, every=256):
        """
        A generator for L{run_in_slices}: returns C{{source: [(path,
        series, Field), ...] sorted by path}}.
        """
        resolved = {}
        scans = []
        for key, node in source_nodes.items():
            if isinstance(node, Call):
                args = [a for a in node.args if isinstance(a, str)]
                if len(args) != len(node.args) or node.kwargs:
                    raise RenderError("seriesByTag takes tag expressions as strings: %s" % (key,))
                try:
                    scans.append((key, TagQuery(args).ranked_paths))
                except PatternError as e:
                    raise RenderError("seriesByTag: %s" % (e,))
            elif is_glob(node.text) and ";" not in node.text:
                try:
                    scans.append((key, Pattern(node.text).ranked_paths))
                except PatternError as e:
                    raise RenderError(str(e))
            else:
                try:
                    resolved[key] = exact_paths(self.store, node.text)
                except PatternError as e:
                    raise RenderError(str(e))
        if scans:
            # Where two series offer one path, the lower rank reads it.
            found = {key: Choice() for key, _ in scans}
            candidates = list(self.store.series.values())
            iterator = iter(candidates)
            total = 0
            while True:
                chunk = list(islice(iterator, every))
                if not chunk:
                    break
                for key, match in scans:
                    into = found[key]
                    for series in chunk:
                        for path, field, path_rank in match(series):
                            if into.offer(path, path_rank, (path, series, field)):
                                total += 1
                if total > self.max_series:
                    raise TooManySeries(
                        "the targets match more than %d series (--graphite-max-series); narrow"
                        " the pattern" % (self.max_series,))
                yield
            for key, into in found.items():
                resolved[key] = into.values()
        count = sum(len(v) for v in resolved.values())
        if count > self.max_series:
            raise TooManySeries("the targets match %d series, more than %d"
                                " (--graphite-max-series); narrow the pattern"
                                % (count, self.max_series))
        return resolved


def choose_tier(tiers, start, now):
    """
    The tier whisper would read: the first whose retention covers
    C{now - start}, else the coarsest.
    """
    diff = now - start
    for i, tier in enumerate(tiers):
        if tier.retention is None or tier.retention >= diff:
            return i
    return len(tiers) - 1


def fetch(store, series, field, start, end, now, budget=None):
    """
    C{(start, end, step, values)} as whisper's fetch answers: the values of
    the buckets after the one holding C{start} up to the one holding
    C{end}, at the finest tier whose retention covers C{start}; L{None}
    when the range is outside what is kept.

    @param budget: a L{PointBudget} charged with the buckets, before any
        is read.
    """
    tiers = store.tiers
    now = int(now)
    start, end = int(start), int(end)
    if start > now:
        return None
    retention = tiers[-1].retention
    if retention is not None:
        oldest = now - retention
        if end < oldest:
            return None
        start = max(start, oldest)
    end = min(end, now)
    if start > end:
        return None
    i = choose_tier(tiers, start, now)
    step = tiers[i].step
    first = start - start % step + step
    after = end - end % step + step
    if first == after:
        after += step
    n = (after - first) // step
    if budget is not None:
        budget.charge(n)
    values = [None] * n
    points = series_points(store, series, (field.name,), first, after - step, i, now)[field.name]
    for t, v in points:
        k = (t - first) // step
        if 0 <= k < n and v is not None:
            values[k] = v / step if field.per_second else v
    return first, after, step, values


class PointBudget:
    """
    The points one request may still read (C{--graphite-max-points}).
    """

    def __init__(self, limit):
        self.limit = limit
        self.left = limit

    def charge(self, points):
        self.left -= points
        if self.left < 0:
            raise TooManySeries("the targets read more than %d points (--graphite-max-points);"
                                " ask for a shorter range or fewer series" % (self.limit,))


class Context:
    """
    What functions see of the request (graphite-web's requestContext).
    """

    def __init__(self, renderer, start, end, now, xff=None, args=()):
        self.renderer = renderer
        self.start = start
        self.end = end
        self.now = now
        self.xff = xff
        self.args = args

    def shifted(self, start=None, end=None):
        return Context(self.renderer, self.start if start is None else start,
                       self.end if end is None else end, self.now, self.xff, self.args)

    def evaluate(self, node, ctx):
        return self.renderer.evaluate(node, ctx)


class Renderer:
    """
    Evaluates parsed targets against the sources L{Resolver} found.
    """

    def __init__(self, store, resolved, max_points=None):
        self.store = store
        self.resolved = resolved
        self.budget = None if max_points is None else PointBudget(max_points)
        # {(path, start, end): what fetch answered}: the points of the
        # request's range, read a series per slice (L{prefetch}).
        self.fetched = {}

    def prefetch(self, ctx):
        """
        A generator for L{run_in_slices}: read the points of every series
        over the request's range, a few series per slice.
        """
        for entries in self.resolved.values():
            for path, series, field in entries:
                key = (path, ctx.start, ctx.end)
                if key not in self.fetched:
                    self.fetched[key] = fetch(self.store, series, field, ctx.start, ctx.end,
                                              ctx.now, self.budget)
                    yield

    def series_for(self, key, ctx):
        out = []
        for path, series, field in self.resolved.get(key, ()):
            got = self.fetched.get((path, ctx.start, ctx.end), False)
            if got is False:
                got = fetch(self.store, series, field, ctx.start, ctx.end, ctx.now, self.budget)
            if got is None:
                continue
            start, end, step, values = got
            out.append(TimeSeries(path, start, end, step, values, xff=ctx.xff,
                                  path_expression=key))
        return out

    def evaluate(self, node, ctx):
        if isinstance(node, Path):
            return self.series_for(node.text, ctx)
        if isinstance(node, Call):
            if node.name == "seriesByTag":
                return self.series_for(node.raw, ctx)
            func = FUNCTIONS.get(node.name)
            if func is None:
                raise RenderError("Received request for unknown function: %s" % (node.name,))
            call_ctx = Context(self, ctx.start, ctx.end, ctx.now, ctx.xff, node.args)
            args = [self.evaluate(a, call_ctx) for a in node.args]
            kwargs = {k: self.evaluate(v, call_ctx) for k, v in node.kwargs}
            args, kwargs = check_params(node.name, func.params, args, kwargs)
            try:
                return func(call_ctx, *args, **kwargs)
            except RenderError as e:
                raise RenderError("%s; func: %s" % (e, node.name))
            except (TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
                raise RenderError("%s: %s" % (node.name, e))
        return node


def consolidate_for_json(data, max_points):
    """
    graphite-web's C{renderViewJson}: at most about C{max_points} per
    series, buckets aligned so that a refresh keeps them in place.
    """
    if not data or not any(len(s) for s in data):
        return
    start = min(s.start for s in data)
    end = max(s.end for s in data)
    span = end - start
    for s in data:
        if max_points == 1:
            s.consolidate(len(s))
            continue
        points = span / s.step
        if max_points < points:
            per = math.ceil(points / max_points)
            seconds = int(per * s.step)
            nudge = seconds + (s.start % s.step) - (s.start % seconds)
            s.start = s.start + nudge
            # graphite-web drops one value fewer than the nudge holds.
            for _ in range(1, int(nudge / s.step)):
                if list.__len__(s):
                    del s[0]
            s.consolidate(per)


def _finite(value):
    if value is None:
        return None
    try:
        return value if math.isfinite(value) else None
    except TypeError:
        return None


def json_rows(data, max_points=None, no_null_points=False):
    """
    A generator for L{run_in_slices} (a yield per series) that returns the
    list graphite-web's JSON holds: C{target}, C{tags}, C{datapoints}.
    """
    if max_points is not None:
        consolidate_for_json(data, max_points)
    out = []
    if not any(list.__len__(s) for s in data):
        return out
    for s in data:
        points = [[_finite(v), t] for v, t in s.datapoints()]
        if no_null_points:
            points = [p for p in points if p[0] is not None]
            if not points:
                continue
        out.append({"target": s.name, "tags": {k: str(v) for k, v in s.tags.items()},
                    "datapoints": points})
        yield
    return out


def json_answer(data, max_points=None, no_null_points=False):
    """
    L{json_rows} in one go.
    """
    rows = json_rows(data, max_points, no_null_points)
    while True:
        try:
            next(rows)
        except StopIteration as done:
            return done.value


def csv_answer(data, tz):
    """
    graphite-web's CSV: C{name,YYYY-mm-dd HH:MM:SS,value} per raw value.
    """
    lines = []
    for s in data:
        name = s.name
        if any(c in name for c in ',"\r\n'):
            name = '"%s"' % name.replace('"', '""')
        for i, value in enumerate(s):
            stamp = datetime.fromtimestamp(s.start + i * s.step, tz).strftime("%Y-%m-%d %H:%M:%S")
            value = _finite(value)
            lines.append("%s,%s,%s\r\n" % (name, stamp, "" if value is None else repr(value)))
    return "".join(lines)


__all__ = ["functions", "RenderError", "TooManySeries", "Resolver", "Renderer", "Context",
           "parse_target", "sources", "json_answer", "json_rows", "csv_answer", "fetch"]
