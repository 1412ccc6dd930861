"""
The batch read of series (C{/api/series/batch}): every series of a plot in
one request, from URL parameters (GET) or a JSON body (POST), answered at
one resolution with the bucket in progress marked.
"""

from typing import NamedTuple, Optional, Tuple

import orjson

from server.core.model import TYPE_NAMES
from server.core.query import (QueryError, choose_tier, fields_for, parse_resolution, parse_time,
                               partial_from, series_points, tier_options)


class BatchError(ValueError):
    """
    A batch request that cannot be read; C{parameter} names the culprit.
    """

    def __init__(self, parameter, message):
        ValueError.__init__(self, message)
        self.parameter = parameter


class Batch(NamedTuple):
    """
    What a batch asks for: C{items} are C{(key, fields or None)}; times
    are the text (or number) given, L{None} when absent.
    """

    items: Tuple[Tuple[str, Optional[Tuple[str, ...]]], ...]
    filter: str
    fields: Tuple[str, ...]
    start: object
    until: object
    since: object
    resolution: Optional[str]


def _fields(text):
    return tuple(f for f in (p.strip() for p in text.split(",")) if f)


def from_args(arg, args):
    """
    A L{Batch} from URL parameters: C{arg(name, default)} reads one,
    C{args(name)} every value of a repeated one (C{key}).
    """
    return Batch(items=tuple((key, None) for key in args("key")),
                 filter=arg("filter", "") or "",
                 fields=_fields(arg("fields", "") or ""),
                 start=arg("from"), until=arg("until"), since=arg("since"),
                 resolution=arg("resolution"))


def _time_member(body, name):
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    raise BatchError(name, "%s must be a number or a time such as -1h, got %r" % (name, value))


def _field_list(value, parameter):
    if isinstance(value, str):
        return _fields(value)
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise BatchError(parameter, "%s must be a list of field names" % (parameter,))
    return tuple(value)


def from_json(data):
    """
    A L{Batch} from a POST body (see docs/API.md).
    """
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BatchError("body", "the body is not JSON: %s" % (e,))
    if not isinstance(body, dict):
        raise BatchError("body", "the body must be a JSON object")
    series = body.get("series", [])
    if not isinstance(series, list):
        raise BatchError("series", "series must be a list of keys or {\"key\", \"fields\"}")
    items = []
    for n, item in enumerate(series):
        where = "series[%d]" % (n,)
        if isinstance(item, str):
            items.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("key"), str):
            fields = item.get("fields")
            items.append((item["key"], None if fields is None
                          else _field_list(fields, where + ".fields")))
        else:
            raise BatchError(where, "%s must be a key or {\"key\": ..., \"fields\": [...]}"
                             % (where,))
    text = body.get("filter") or ""
    if not isinstance(text, str):
        raise BatchError("filter", "filter must be a string")
    resolution = body.get("resolution")
    if resolution is not None and not isinstance(resolution, str):
        resolution = str(resolution)
    return Batch(items=tuple(items), filter=text,
                 fields=_field_list(body.get("fields") or [], "fields"),
                 start=_time_member(body, "from"), until=_time_member(body, "until"),
                 since=_time_member(body, "since"), resolution=resolution)


def prepare(store, batch, found, missing, now, max_points):
    """
    Check the whole request before any of the answer is written: the
    range, the resolution and each series' fields.  Returns the answer's
    head (a dict, every member but C{series} and C{missing}), the tier and
    C{[(series, fields)]} to read.

    @param found: C{[(series, fields or None)]}.
    @raise QueryError: naming the parameter (and the series) at fault.
    """
    start = parse_time("from", batch.start or "-1h", now)
    until = parse_time("until", batch.until or "now", now)
    if batch.until is None and found:
        # The default reaches accepted points stamped in the future.
        for series, _ in found:
            store.fold_series(series)
        until = max([until] + [series.last_seen for series, _ in found])
    if until < start:
        raise QueryError("until", "until is before from")
    since = None if batch.since is None else parse_time("since", batch.since, now)
    tier = parse_resolution(store, batch.resolution)
    tier = choose_tier(store, start, until, now, tier, max_points)
    work = []
    for series, wanted in found:
        try:
            fields = fields_for(series, list(wanted if wanted is not None else batch.fields))
        except QueryError as e:
            raise QueryError(e.parameter, "series %r: %s" % (series.key, e))
        work.append((series, fields))
    head = {"from": start, "until": until, "now": now, "resolution": store.tiers[tier].step,
            "partial_from": partial_from(store, tier, now), "since": since,
            "resolutions": tier_options(store, start, until, now, max_points)}
    return head, tier, work


def series_item(store, head, tier, series, fields):
    """
    One series of the answer: C{{"key", "name", "tags", "type", "fields"}},
    its points from C{since} (or C{from}) to C{until}.
    """
    first = head["from"] if head["since"] is None else max(head["from"], head["since"])
    if first > head["until"]:
        points = {name: [] for name in fields}
    else:
        points = series_points(store, series, fields, first, head["until"], tier, head["now"])
    return {"key": series.key, "name": series.name, "tags": dict(series.tags),
            "type": TYPE_NAMES[series.type], "fields": points}
