"""
Graphite's render functions, after graphite-web 1.1.10's
C{render/functions.py}: the same names, arguments, series names and tags,
alignment (L{normalize}: the least common multiple of the steps) and
handling of nulls, so that a dashboard reads the same lines.

Each function is registered (L{server.web.graphite.params.function}) with
its parameters; the evaluator checks the arguments against them and answers
a bad one with a L{RenderError} naming the function and the parameter
(graphite-web checks the same way, but by default only logs what it finds).
"""

import math
import re
from functools import reduce
from itertools import zip_longest

from server.web.graphite.attime import parse_offset
from server.web.graphite.grammar import Call, GrammarError, Path, parse
from server.web.graphite.params import (AGG_FUNCS, AGGREGATORS, FUNCTIONS, INF, SERIES,
                                        SERIES_LISTS, Param, RenderError, agg_func, function,
                                        safe_abs, safe_div, safe_max, safe_mul, safe_sum)
from server.web.graphite.series import TimeSeries, default_tags


# -- helpers ------------------------------------------------------------------

def lcm(a, b):
    if a == b:
        return a
    if a < b:
        a, b = b, a
    return a // math.gcd(a, b) * b


def normalize(series_lists):
    """
    C{(series, start, end, step)}: every series consolidated to the least
    common multiple of their steps; L{None} when there are none.
    """
    series = [s for sl in series_lists for s in sl]
    if not series:
        return None
    step = reduce(lcm, [s.step for s in series])
    for s in series:
        s.consolidate(step // s.step)
    start = min(s.start for s in series)
    end = max(s.end for s in series)
    end -= (end - start) % step
    return series, start, end, step


def xff_ok(present, total, xff):
    if not present or not total:
        return False
    return present / total >= (xff if xff is not None else 0.0)


def first_path_expression(name):
    """
    The first path inside a function-wrapped name (graphite-web's
    C{_getFirstPathExpression}), for aliasByNode and groupByNode.
    """
    try:
        node = parse(name)
    except GrammarError:
        return None
    while isinstance(node, Call) and node.args:
        node = node.args[0]
    return node.text if isinstance(node, Path) else None


def node_or_tag(series, n, path_expression=None):
    try:
        if n == int(n):
            return (path_expression or series.name).split(";", 2)[0].split(".")[n]
    except (ValueError, IndexError, TypeError):
        pass
    return series.tags.get(str(n), "")


def agg_key(series, nodes, path_expression=None):
    if path_expression is None and series.name[-1:] == ")":
        path_expression = first_path_expression(series.name)
    return ".".join(node_or_tag(series, n, path_expression) for n in nodes)


def path_expressions(series_list):
    seen = []
    for s in series_list:
        if s.path_expression not in seen:
            seen.append(s.path_expression)
    return ",".join(seen)


def _key_func(func):
    def key(values):
        value = func(values)
        return value if value is not None else -INF
    return key


# -- functions ------------------------------------------------------------------

@function("Combine", SERIES, Param("func", "aggFunc", required=True), Param("xFilesFactor", "float"))
def aggregate(ctx, series_lists, func, xFilesFactor=None):
    raw = func
    if func[-6:] == "Series":
        func = func[:-6]
    fn = agg_func(func) if func in AGG_FUNCS else agg_func(raw)
    if not series_lists:
        return []
    if isinstance(series_lists[0], TimeSeries):
        series_lists = [series_lists]
    normal = normalize(series_lists)
    if normal is None:
        return []
    series_list, start, end, step = normal
    xff = xFilesFactor if xFilesFactor is not None else ctx.xff
    name = "%sSeries(%s)" % (func, path_expressions(series_list))
    values = [fn(row) if xff_ok(sum(v is not None for v in row), len(row), xff) else None
              for row in zip_longest(*series_list)]
    tags = series_list[0].tags
    for s in series_list:
        tags = {t: tags[t] for t in tags if t in s.tags and tags[t] == s.tags[t]}
    tags.setdefault("name", name)
    tags["aggregatedBy"] = func
    return [TimeSeries(name, start, end, step, values, xff=xff, tags=tags)]


@function("Combine", SERIES_LISTS, names=("sum",), aggregator=True)
def sumSeries(ctx, *series_lists):
    return aggregate(ctx, list(series_lists), "sum")


@function("Combine", SERIES_LISTS, names=("avg",), aggregator=True)
def averageSeries(ctx, *series_lists):
    return aggregate(ctx, list(series_lists), "average")


@function("Combine", SERIES_LISTS, aggregator=True)
def maxSeries(ctx, *series_lists):
    return aggregate(ctx, list(series_lists), "max")


@function("Combine", SERIES_LISTS, aggregator=True)
def minSeries(ctx, *series_lists):
    return aggregate(ctx, list(series_lists), "min")


@function("Alias", SERIES, Param("search", "string", required=True),
          Param("replace", "string", required=True))
def aliasSub(ctx, series_list, search, replace):
    try:
        pattern = re.compile(search)
        for s in series_list:
            s.name = pattern.sub(replace, s.name)
    except (re.error, IndexError) as e:
        raise RenderError('aliasSub: bad search %r or replace %r: %s' % (search, replace, e))
    return series_list


@function("Alias", SERIES, Param("newName", "string", required=True))
def alias(ctx, series_list, newName):
    for s in series_list:
        s.name = newName
    return series_list


@function("Alias", SERIES, Param("nodes", "nodeOrTag", required=True, multiple=True))
def aliasByNode(ctx, series_list, *nodes):
    for s in series_list:
        s.name = agg_key(s, nodes)
    return series_list


@function("Alias", SERIES, Param("tags", "nodeOrTag", required=True, multiple=True))
def aliasByTags(ctx, series_list, *tags):
    return aliasByNode(ctx, series_list, *tags)


@function("Special", SERIES, Param("consolidationFunc", "string", required=True,
                                   options=["sum", "average", "avg", "avg_zero", "min", "max",
                                            "first", "last"]))
def consolidateBy(ctx, series_list, consolidationFunc):
    for s in series_list:
        s.consolidation = consolidationFunc
        s.tags["consolidateBy"] = consolidationFunc
        s.name = 'consolidateBy(%s,"%s")' % (s.name, consolidationFunc)
        s.path_expression = s.name
    return series_list


@function("Special", Param("value", "float", required=True))
def constantLine(ctx, value):
    start, end = ctx.start, ctx.end
    step = int((end - start) / 2.0)
    s = TimeSeries(str(value), start, end, step, [value, value, value], xff=ctx.xff)
    s.path_expression = "constantLine(%s)" % (value,)
    return [s]


def _group(ctx, keyed, callback):
    out = {}
    for key, members in keyed.items():
        if callback in AGGREGATORS:
            out[key] = FUNCTIONS[callback](ctx, members)[0]
        else:
            out[key] = aggregate(ctx, members, callback)[0]
        out[key].name = key
    return out


@function("Combine", SERIES, Param("nodeNum", "nodeOrTag", required=True),
          Param("callback", "aggOrSeriesFunc", default="average"))
def groupByNode(ctx, series_list, nodeNum, callback="average"):
    return groupByNodes(ctx, series_list, callback, nodeNum)


@function("Combine", SERIES, Param("callback", "aggOrSeriesFunc", required=True),
          Param("nodes", "nodeOrTag", multiple=True))
def groupByNodes(ctx, series_list, callback, *nodes):
    keyed = {}
    for s in series_list:
        keyed.setdefault(agg_key(s, nodes), []).append(s)
    grouped = _group(ctx, keyed, callback)
    return [grouped[k] for k in keyed]


@function("Combine", SERIES, Param("callback", "aggOrSeriesFunc", required=True),
          Param("tags", "tag", required=True, multiple=True))
def groupByTags(ctx, series_list, callback, *tags):
    if not tags:
        raise RenderError("groupByTags(): no tags specified")
    if "name" not in tags:
        names = {s.tags["name"] for s in series_list}
        name = list(names)[0] if len(names) == 1 else callback
    keyed = {}
    for s in series_list:
        if "name" not in tags:
            key = ";".join([name] + sorted(t + "=" + s.tags.get(t, "") for t in tags))
        else:
            key = ";".join([s.tags["name"]] + sorted(t + "=" + s.tags.get(t, "")
                                                     for t in tags if t != "name"))
        keyed.setdefault(key, []).append(s)
    grouped = _group(ctx, keyed, callback)
    for key, s in grouped.items():
        s.path_expression = key
        s.tags = default_tags(key)
    return [grouped[k] for k in keyed]


@function("Transform", SERIES, Param("factor", "float", required=True))
def scale(ctx, series_list, factor):
    for s in series_list:
        s.tags["scale"] = factor
        s.name = "scale(%s,%g)" % (s.name, float(factor))
        s.path_expression = s.name
        for i, value in enumerate(s):
            s[i] = safe_mul(value, factor)
    return series_list


@function("Transform", SERIES, Param("factor", "float", required=True))
def offset(ctx, series_list, factor):
    for s in series_list:
        s.tags["offset"] = factor
        s.name = "offset(%s,%g)" % (s.name, float(factor))
        s.path_expression = s.name
        for i, value in enumerate(s):
            if value is not None:
                s[i] = value + factor
    return series_list


def _non_negative_delta(val, prev, max_value, min_value):
    if max_value is not None and val is not None and val > max_value:
        return None, None
    if min_value is not None and val is not None and val < min_value:
        return None, None
    if prev is None or val is None:
        return None, val
    if val >= prev:
        return val - prev, val
    if max_value is not None:
        return max_value + 1 + val - prev - (min_value or 0), val
    if min_value is not None:
        return val - min_value, val
    return None, val


@function("Transform", SERIES, Param("maxValue", "float"), Param("minValue", "float"))
def perSecond(ctx, series_list, maxValue=None, minValue=None):
    results = []
    for s in series_list:
        values = []
        prev = None
        for val in s:
            delta, prev = _non_negative_delta(val, prev, maxValue, minValue)
            values.append(None if delta is None else round(delta / s.step, 6))
        s.tags["perSecond"] = 1
        results.append(s.copy(name="perSecond(%s)" % s.name, values=values))
    return results


@function("Transform", SERIES, Param("maxValue", "float"), Param("minValue", "float"))
def nonNegativeDerivative(ctx, series_list, maxValue=None, minValue=None):
    results = []
    for s in series_list:
        values = []
        prev = None
        for val in s:
            delta, prev = _non_negative_delta(val, prev, maxValue, minValue)
            values.append(delta)
        s.tags["nonNegativeDerivative"] = 1
        results.append(s.copy(name="nonNegativeDerivative(%s)" % s.name, values=values))
    return results


@function("Transform", SERIES)
def derivative(ctx, series_list):
    results = []
    for s in series_list:
        values = []
        prev = None
        for val in s:
            values.append(None if prev is None or val is None else val - prev)
            prev = val
        s.tags["derivative"] = 1
        results.append(s.copy(name="derivative(%s)" % s.name, values=values))
    return results


@function("Transform", SERIES)
def integral(ctx, series_list):
    results = []
    for s in series_list:
        values = []
        current = 0.0
        for val in s:
            if val is None:
                values.append(None)
            else:
                current += val
                values.append(current)
        s.tags["integral"] = 1
        results.append(s.copy(name="integral(%s)" % s.name, values=values))
    return results


@function("Transform", SERIES)
def absolute(ctx, series_list):
    for s in series_list:
        s.tags["absolute"] = 1
        s.name = "absolute(%s)" % (s.name,)
        s.path_expression = s.name
        for i, value in enumerate(s):
            s[i] = safe_abs(value)
    return series_list


def _summarize_values(s, func, interval, start, end):
    fn = agg_func(func)
    timestamps = list(range(int(s.start), int(s.end), int(s.step)))
    points = list(s)
    interval_points = interval / s.step
    i = 0
    n = min(len(timestamps), len(points))
    values = []
    t = start
    while t < end:
        first = i
        present = 0
        while i < n and timestamps[i] < t + interval:
            if timestamps[i] <= t:
                first = i
            if timestamps[i] >= t and points[i] is not None:
                present += 1
            i += 1
        values.append(fn(points[first:i]) if xff_ok(present, interval_points, s.xff) else None)
        t += interval
    return values, t


@function("Transform", SERIES, Param("intervalString", "interval", required=True),
          Param("func", "aggFunc", default="sum"), Param("alignToFrom", "boolean", default=False))
def summarize(ctx, series_list, intervalString, func="sum", alignToFrom=False):
    interval = abs(parse_offset(intervalString))
    if interval <= 0:
        raise RenderError("summarize: interval %r is not positive" % (intervalString,))
    results = []
    for s in series_list:
        if alignToFrom:
            start, end = s.start, s.end
        else:
            start = s.start - (s.start % interval)
            end = s.end - (s.end % interval) + interval
        values, aligned_end = _summarize_values(s, func, interval, start, end)
        if alignToFrom:
            end = aligned_end
        s.tags["summarize"] = intervalString
        s.tags["summarizeFunction"] = func
        name = 'summarize(%s, "%s", "%s"%s)' % (s.name, intervalString, func,
                                                 ", true" if alignToFrom else "")
        results.append(s.copy(name=name, start=start, end=end, step=interval, values=values))
    return results


@function("Calculate", SERIES, Param("windowSize", "intOrInterval", required=True),
          Param("func", "aggFunc", default="average"), Param("xFilesFactor", "float"))
def movingWindow(ctx, series_list, windowSize, func="average", xFilesFactor=None):
    if not series_list:
        return []
    if isinstance(windowSize, str):
        preview = abs(parse_offset(windowSize))
    else:
        preview = max(s.step for s in series_list) * int(windowSize)
    fn = agg_func(func)
    wider = ctx.shifted(start=ctx.start - preview)
    results = []
    tag = "moving" + func.capitalize()
    for s in ctx.evaluate(ctx.args[0], wider):
        if isinstance(windowSize, str):
            name = '%s(%s,"%s")' % (tag, s.name, windowSize)
            points = preview // s.step
        else:
            name = "%s(%s,%s)" % (tag, s.name, windowSize)
            points = int(windowSize)
        s.tags[tag] = windowSize
        out = s.copy(name=name, start=s.start + preview, values=[])
        xff = xFilesFactor if xFilesFactor is not None else s.xff
        raw = list(s)
        for i in range(points + 1, len(raw) + 1):
            window = [v for v in raw[i - points:i] if v is not None]
            out.append(fn(window) if window and xff_ok(len(window), points, xff) else None)
        results.append(out)
    return results


@function("Calculate", SERIES, Param("windowSize", "intOrInterval", required=True),
          Param("xFilesFactor", "float"))
def movingAverage(ctx, series_list, windowSize, xFilesFactor=None):
    return movingWindow(ctx, series_list, windowSize, "average", xFilesFactor)


@function("Transform", SERIES, Param("default", "float", default=0),
          Param("referenceSeries", "seriesList"))
def transformNull(ctx, series_list, default=0, referenceSeries=None):
    defaults = None
    if referenceSeries:
        defaults = [default if any(v is not None for v in row) else None
                    for row in zip_longest(*referenceSeries)]
    for s in series_list:
        s.tags["transformNull"] = default
        if referenceSeries:
            s.tags["referenceSeries"] = 1
            s.name = "transformNull(%s,%g,referenceSeries)" % (s.name, default)
        else:
            s.name = "transformNull(%s,%g)" % (s.name, default)
        s.path_expression = s.name
        if defaults:
            values = [d if v is None else v for v, d in zip_longest(s, defaults)]
        else:
            values = [default if v is None else v for v in s]
        s.extend(values)
        del s[:len(values)]
    return series_list


@function("Transform", SERIES, Param("limit", "intOrInf", default=INF))
def keepLastValue(ctx, series_list, limit=INF):
    for s in series_list:
        s.name = "keepLastValue(%s)" % (s.name,)
        s.path_expression = s.name
        nones = 0
        last = None
        for i, value in enumerate(s):
            if value is None:
                nones += 1
            else:
                if 0 < nones <= limit and last is not None:
                    for j in range(i - nones, i):
                        s[j] = last
                nones = 0
                last = value
        if 0 < nones <= limit and last is not None:
            for j in range(len(s) - nones, len(s)):
                s[j] = last
    return series_list


@function("Transform", SERIES, Param("timeShift", "interval", required=True),
          Param("resetEnd", "boolean", default=True), Param("alignDST", "boolean", default=False))
def timeShift(ctx, series_list, timeShift, resetEnd=True, alignDST=False):
    if timeShift[:1].isdigit():
        timeShift = "-" + timeShift
    delta = parse_offset(timeShift)
    if not series_list:
        return []
    first = series_list[0]
    shifted = ctx.shifted(start=ctx.start + delta, end=ctx.end + delta)
    results = []
    for s in ctx.evaluate(ctx.args[0], shifted):
        s.tags["timeShift"] = timeShift
        s.name = 'timeShift(%s, "%s")' % (s.name, timeShift)
        if resetEnd:
            s.end = first.end
        else:
            s.end = s.end - s.start + first.start
        s.start = first.start
        results.append(s)
    return results


@function("Filter Series", SERIES, Param("n", "integer", required=True),
          Param("func", "aggFunc", default="average"))
def highest(ctx, series_list, n=1, func="average"):
    series_list.sort(key=_key_func(agg_func(func)), reverse=True)
    return series_list[:int(n)]


@function("Filter Series", SERIES, Param("n", "integer", required=True),
          Param("func", "aggFunc", default="average"))
def lowest(ctx, series_list, n=1, func="average"):
    series_list.sort(key=_key_func(agg_func(func)))
    return series_list[:int(n)]


def _ranked(which, func):
    def ranked(ctx, series_list, n):
        return which(ctx, series_list, n, func)
    return ranked


for _name, _which, _func in (("highestAverage", highest, "average"),
                             ("highestCurrent", highest, "current"),
                             ("highestMax", highest, "max"),
                             ("lowestAverage", lowest, "average"),
                             ("lowestCurrent", lowest, "current")):
    _f = _ranked(_which, _func)
    _f.__name__ = _name
    function("Filter Series", SERIES, Param("n", "integer", required=True))(_f)


@function("Filter Series", SERIES, Param("n", "integer", required=True))
def limit(ctx, series_list, n):
    return series_list[0:n]


@function("Sorting", SERIES)
def sortByMaxima(ctx, series_list):
    series_list.sort(key=_key_func(safe_max), reverse=True)
    return series_list


@function("Filter Data", SERIES, Param("n", "float", required=True))
def removeAboveValue(ctx, series_list, n):
    for s in series_list:
        s.name = "removeAboveValue(%s, %g)" % (s.name, n)
        s.path_expression = s.name
        for i, val in enumerate(s):
            if val is not None and val > n:
                s[i] = None
    return series_list


@function("Filter Data", SERIES, Param("n", "float", required=True))
def removeBelowValue(ctx, series_list, n):
    for s in series_list:
        s.name = "removeBelowValue(%s, %g)" % (s.name, n)
        s.path_expression = s.name
        for i, val in enumerate(s):
            if val is None or val < n:
                s[i] = None
    return series_list


def _percentile(points, n, interpolate=False):
    ordered = sorted(p for p in points if p is not None)
    if not ordered:
        return None
    fractional = (n / 100.0) * (len(ordered) + 1)
    rank = int(fractional)
    fraction = fractional - rank
    if not interpolate:
        rank += int(math.ceil(fraction))
    if rank == 0:
        value = ordered[0]
    elif rank - 1 == len(ordered):
        value = ordered[-1]
    else:
        value = ordered[rank - 1]
    if interpolate and rank != len(ordered):
        value = value + fraction * (ordered[rank] - value)
    return value


@function("Combine", SERIES, Param("n", "float", required=True),
          Param("interpolate", "boolean", default=False))
def percentileOfSeries(ctx, series_list, n, interpolate=False):
    if n <= 0:
        raise RenderError("The requested percent is required to be greater than 0")
    if not series_list:
        return []
    name = "percentileOfSeries(%s,%g)" % (series_list[0].path_expression, n)
    _, start, end, step = normalize([series_list])
    values = [_percentile(row, n, interpolate) for row in zip_longest(*series_list)]
    return [TimeSeries(name, start, end, step, values, xff=ctx.xff)]


@function("Combine", SERIES, Param("total", "any"), Param("nodes", "nodeOrTag", multiple=True))
def asPercent(ctx, series_list, total=None, *nodes):
    if not series_list:
        return []
    normalize([series_list])
    xff = ctx.xff

    def summed(members):
        name = "sumSeries(%s)" % path_expressions(members)
        _, start, end, step = normalize([members])
        return TimeSeries(name, start, end, step,
                          [safe_sum(row) for row in zip_longest(*members)], xff=xff)

    def percent(a, b):
        return safe_mul(safe_div(a, b), 100.0)

    if nodes:
        keys = []
        groups = {}
        for s in series_list:
            key = agg_key(s, nodes)
            if key not in groups:
                keys.append(key)
            groups.setdefault(key, []).append(s)
        totals = {}
        if total is None:
            for key in keys:
                members = groups[key]
                totals[key] = members[0] if len(members) == 1 else summed(members)
        elif isinstance(total, list):
            collected = {}
            for s in total:
                key = agg_key(s, nodes)
                if key not in keys:
                    keys.append(key)
                collected.setdefault(key, []).append(s)
            for key, members in collected.items():
                totals[key] = members[0] if len(members) == 1 else summed(members)
        else:
            raise RenderError("asPercent: total must be None or a seriesList when nodes are given")
        results = []
        for key in keys:
            if key not in groups:
                s2 = totals[key]
                results.append(TimeSeries("asPercent(MISSING,%s)" % s2.name, s2.start, s2.end,
                                          s2.step, [None for _ in s2], xff=xff))
                continue
            for s1 in groups[key]:
                if key not in totals:
                    results.append(TimeSeries("asPercent(%s,MISSING)" % s1.name, s1.start,
                                              s1.end, s1.step, [None for _ in s1], xff=xff))
                    continue
                s2 = totals[key]
                _, start, end, step = normalize([(s1, s2)])
                results.append(TimeSeries("asPercent(%s,%s)" % (s1.name, s2.name), start, end,
                                          step, [percent(a, b) for a, b in zip_longest(s1, s2)],
                                          xff=xff))
        return results

    if total is None:
        total_values = [safe_sum(row) for row in zip_longest(*series_list)]
        total_text = "sumSeries(%s)" % path_expressions(series_list)
    elif isinstance(total, list):
        if len(total) != 1 and len(total) != len(series_list):
            raise RenderError("asPercent second argument must be missing, a single digit,"
                              " reference exactly 1 series or reference the same number of"
                              " series as the first argument")
        if len(total) == 1:
            normalize([series_list, total])
            total_values = total[0]
            total_text = total_values.name
    elif isinstance(total, (int, float)) and not isinstance(total, bool):
        total_values = [total] * len(series_list[0])
        total_text = str(total)
    else:
        raise RenderError("asPercent: total must be a number or a seriesList, got %r" % (total,))
    results = []
    if isinstance(total, list) and len(total) == len(series_list):
        pairs = zip(sorted(series_list, key=lambda s: s.name), sorted(total, key=lambda s: s.name))
        for s1, s2 in pairs:
            _, start, end, step = normalize([(s1, s2)])
            results.append(TimeSeries("asPercent(%s,%s)" % (s1.name, s2.name), start, end, step,
                                      [percent(a, b) for a, b in zip_longest(s1, s2)], xff=xff))
        return results
    for s in series_list:
        values = [percent(v, t) for v, t in zip_longest(s, total_values)]
        results.append(TimeSeries("asPercent(%s,%s)" % (s.name, total_text or s.path_expression),
                                  s.start, s.end, s.step, values, xff=xff))
    return results


@function("Combine", Param("dividendSeriesList", "seriesList", required=True),
          Param("divisorSeries", "seriesList", required=True))
def divideSeries(ctx, dividends, divisors):
    if not divisors:
        for s in dividends:
            s.name = "divideSeries(%s,MISSING)" % s.name
            s.path_expression = s.name
            for i in range(len(s)):
                s[i] = None
        return dividends
    if len(divisors) > 1:
        raise RenderError("divideSeries second argument must reference exactly 1 series (got %d)"
                          % len(divisors))
    divisor = divisors[0]
    results = []
    for dividend in dividends:
        both = (dividend, divisor)
        step = reduce(lcm, [s.step for s in both])
        for s in both:
            s.consolidate(step // s.step)
        start = min(s.start for s in both)
        end = max(s.end for s in both)
        end -= (end - start) % step
        values = [safe_div(a, b) for a, b in zip_longest(*both)]
        results.append(TimeSeries("divideSeries(%s,%s)" % (dividend.name, divisor.name), start,
                                  end, step, values, xff=ctx.xff))
    return results
