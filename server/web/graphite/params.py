"""
What the render functions stand on (graphite-web's C{functions/safe.py},
C{functions/aggfuncs.py} and C{functions/params.py}): arithmetic that lets
None through, the aggregation functions by name, the parameter types and
their checks, and the registry of functions.
"""

import math
from functools import reduce

from server.web.graphite.attime import TimeError, parse_offset
from server.web.graphite.series import TimeSeries

INF = float("inf")


class RenderError(ValueError):
    """
    A target that cannot be rendered; answered 400 C{Invalid parameters (...)}.
    """


# -- safe arithmetic (graphite/functions/safe.py) ---------------------------

def _present(values):
    return [v for v in values if v is not None]


def safe_sum(values):
    values = _present(values)
    return sum(values) if values else None


def safe_avg(values):
    values = _present(values)
    return sum(values) / len(values) if values else None


def safe_avg_zero(values):
    values = list(values)
    return sum(0 if v is None else v for v in values) / len(values) if values else None


def safe_max(values):
    values = _present(values)
    return max(values) if values else None


def safe_min(values):
    values = _present(values)
    return min(values) if values else None


def safe_last(values):
    values = _present(values)
    return values[-1] if values else None


def safe_len(values):
    return len(_present(values))


def safe_median(values):
    values = sorted(_present(values))
    if not values:
        return None
    mid = len(values) // 2
    if len(values) % 2 == 0:
        return (values[mid - 1] + values[mid]) / 2.0
    return values[mid]


def safe_diff(values):
    values = _present(values)
    if values:
        return sum([values[0]] + [-v for v in values[1:]])
    return None


def safe_stddev(values):
    values = _present(values)
    if not values:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def safe_mul(*factors):
    if None in factors:
        return None
    return reduce(lambda x, y: x * y, [float(f) for f in factors])


def safe_div(a, b):
    if a is None or b in (0, None):
        return None
    return a / b


def safe_abs(value):
    return None if value is None else abs(value)


def _range(values):
    hi, lo = safe_max(values), safe_min(values)
    return None if hi is None or lo is None else float(hi) - float(lo)


AGG_FUNCS = {
    "average": safe_avg, "avg_zero": safe_avg_zero, "median": safe_median, "sum": safe_sum,
    "min": safe_min, "max": safe_max, "diff": safe_diff, "stddev": safe_stddev,
    "count": safe_len, "range": _range, "multiply": lambda row: safe_mul(*row),
    "last": safe_last,
    "rangeOf": _range, "avg": safe_avg, "total": safe_sum, "current": safe_last,
}


def agg_func(name):
    try:
        return AGG_FUNCS[name]
    except KeyError:
        raise RenderError("Unsupported aggregation function: %s" % (name,))


# -- parameters (graphite/functions/params.py) -------------------------------

def _boolean(value):
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(value)
    if type(value) in (int, float):
        if value in (0, 1):
            return bool(value)
        raise ValueError(value)
    return bool(value)


def _float(value):
    if isinstance(value, (list, bool)) or value is None:
        raise ValueError(value)
    return float(value)


def _integer(value):
    if type(value) is float or isinstance(value, (list, bool)) or value is None:
        raise ValueError(value)
    return int(value)


def _int_or_inf(value):
    try:
        return _integer(value)
    except (TypeError, ValueError):
        pass
    if not isinstance(value, list) and float(value) == INF:
        return INF
    raise ValueError(value)


def _interval(value):
    if not isinstance(value, str):
        raise ValueError(value)
    try:
        parse_offset(value)
    except TimeError as e:
        raise ValueError(str(e))
    return value


def _int_or_interval(value):
    if isinstance(value, str):
        return _interval(value)
    return _integer(value)


def _series_list(value):
    if not isinstance(value, list) or not all(isinstance(s, TimeSeries) for s in value):
        raise ValueError(value)
    return value


def _string(value):
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def _node_or_tag(value):
    if isinstance(value, (list, bool)) or value is None:
        raise ValueError(value)
    return value


def _agg(value):
    if value in AGG_FUNCS:
        return value
    if isinstance(value, str) and value.endswith("Series") and value[:-6] in AGG_FUNCS:
        return value
    raise ValueError(value)


def _agg_or_series_func(value):
    if value in AGG_FUNCS or value in AGGREGATORS:
        return value
    raise ValueError(value)


def _any(value):
    return value


TYPES = {
    "boolean": _boolean, "float": _float, "integer": _integer, "intOrInf": _int_or_inf,
    "interval": _interval, "intOrInterval": _int_or_interval, "seriesList": _series_list,
    "seriesLists": _series_list, "string": _string, "node": _integer, "nodeOrTag": _node_or_tag,
    "tag": _string, "aggFunc": _agg, "aggOrSeriesFunc": _agg_or_series_func, "any": _any,
}


class Param:
    def __init__(self, name, type, required=False, default=None, multiple=False, options=None):
        self.name = name
        self.type = type
        self.required = required
        self.default = default
        self.multiple = multiple
        self.options = options

    def check(self, value, func):
        if value is None and (self.default is not None or not self.required):
            return value
        if self.options and value not in self.options:
            raise RenderError('Invalid option specified for function "%s" parameter "%s": %r'
                              % (func, self.name, value))
        try:
            return TYPES[self.type](value)
        except (TypeError, ValueError, OverflowError):
            shown = "a list of %d series" % len(value) if isinstance(value, list) else repr(value)
            raise RenderError('Invalid "%s" value specified for function "%s" parameter "%s": %s'
                              % (self.type, func, self.name, shown))

    def to_json(self):
        out = {"name": self.name, "type": self.type}
        if self.required:
            out["required"] = True
        if self.default is not None:
            # graphite-web writes infinity as 1e9999, which JSON has not.
            out["default"] = "inf" if self.default == INF else self.default
        if self.multiple:
            out["multiple"] = True
        if self.options:
            out["options"] = sorted(self.options, key=str)
        elif self.type in ("aggFunc", "aggOrSeriesFunc"):
            out["options"] = sorted(AGG_FUNCS)
        return out


def check_params(func, params, args, kwargs):
    """
    C{(args, kwargs)} checked and converted as graphite-web's
    C{validateParams} does, or a L{RenderError} naming the culprit.
    """
    if len(args) + len(kwargs) > len(params) and not params[-1].multiple:
        raise RenderError('Too many parameters specified for function "%s"' % (func,))
    if len(args) + len(kwargs) > len(params):
        args_params, kwargs_params = params, []
    else:
        args_params, kwargs_params = params[:len(args)], params[len(args):]
    valid_args = []
    for i, arg in enumerate(args):
        param = args_params[min(i, len(args_params) - 1)]
        valid_args.append(param.check(arg, func))
    valid_kwargs = {}
    for param in kwargs_params:
        value = kwargs.get(param.name)
        if value is None:
            if param.required:
                raise RenderError('Missing required parameter "%s" for function "%s"'
                                  % (param.name, func))
            continue
        valid_kwargs[param.name] = param.check(value, func)
    unexpected = [k for k in kwargs if k not in valid_kwargs]
    if unexpected:
        raise RenderError('Unexpected key word arguments for function "%s": %s'
                          % (func, ", ".join(unexpected)))
    return valid_args, valid_kwargs


FUNCTIONS = {}
AGGREGATORS = set()


def function(group, *params, names=(), aggregator=False):
    """
    Register a render function under its name (and C{names}).
    """
    def register(f):
        f.params = list(params)
        f.group = group
        for name in (f.__name__.rstrip("_"),) + tuple(names):
            FUNCTIONS[name] = f
            if aggregator:
                AGGREGATORS.add(name)
        return f
    return register


SERIES = Param("seriesList", "seriesList", required=True)
SERIES_LISTS = Param("seriesLists", "seriesList", required=True, multiple=True)
