"""
The TCP line protocol: one JSON tuple, or one JSON array of tuples, per line.

    ["name", timestamp, value]
    ["name", timestamp, value, {"tag": "value", ...}]
    [["name", timestamp, value], ["name", timestamp, value, {...}], ...]

C{timestamp} is a number, a numeric string, an ISO 8601 date and time
(C{"2026-12-02T21:00:00Z"}; no offset is UTC) or C{null} ("now").  C{value} is

  - a number or a numeric string: a plain sample (the original SimpleStats
    data point);
  - a typed string as DaTtSs sends it: C{"1c"} counter increment, C{"153ms"}
    timer, C{"23g"} gauge, C{"+3g"} / C{"-2g"} gauge change, C{"5h"}
    histogram, C{"5d"} distribution;
  - an object: a partial aggregate computed by the client, e.g.
    C{{"type": "ms", "count": 12, "sum": 1840.5, "min": 3.1, "max": 410}}
    (an export adds C{"p50"}, C{"p90"}, C{"p95"}, C{"p99"}: the stored
    bucket's percentiles, taken as they are).

L{parse_line} is pure: bytes in, L{ParsedLine} out, or L{ParseError} whose
message tells the person at the other end what to fix.
"""

import datetime
import json
import re
from typing import List, NamedTuple, Union

from server.core.model import (
    COUNTER,
    DISTRIBUTION,
    DISTRIBUTION_TYPES,
    GAUGE,
    HISTOGRAM,
    NAME_ALPHABET,
    NAME_PATTERN,
    SAMPLE,
    SET,
    TAG_KEY_PATTERN,
    TAG_VALUE_ALPHABET,
    TAG_VALUE_PATTERN,
    TIMER,
    TYPE_NAMES,
    Limits,
    ParseError,
    Partial,
    Sample,
)
from server.core.sketch import Sketch

__all__ = ["ParsedLine", "decode_json", "parse_line", "parse_tuple"]

_NAME_OK = re.compile(NAME_PATTERN).fullmatch
_TAG_KEY_OK = re.compile(TAG_KEY_PATTERN).fullmatch
_TAG_VALUE_OK = re.compile(TAG_VALUE_PATTERN).fullmatch

_ARITY = "expected [name, timestamp, value] or [name, timestamp, value, tags]"

# Suffixes of a typed string value, longest first so "ms" wins over a
# hypothetical "s".
_SUFFIXES = (("ms", TIMER), ("c", COUNTER), ("g", GAUGE), ("h", HISTOGRAM), ("d", DISTRIBUTION))
_SUFFIX_HELP = (
    'a number or a number followed by c (counter), ms (timer), g (gauge, '
    '"+3g"/"-2g" for a change), h (histogram) or d (distribution)'
)

_PARTIAL_TYPES = "c, g, ms, h, d, v, s"
# A stored bucket's percentiles, as an export writes them (all or none).
_QUANTILE_FIELDS = ("p50", "p90", "p95", "p99")
_REQUIRED = {
    COUNTER: ("count",),
    GAUGE: ("last",),
    SET: (),
}
_OPTIONAL = {
    COUNTER: (),
    GAUGE: ("min", "max", "count", "sum"),
    SET: ("members", "count"),
}
for _type in DISTRIBUTION_TYPES:
    _REQUIRED[_type] = ("count", "sum", "min", "max")
    _OPTIONAL[_type] = ("sumsq", "last", "sketch") + _QUANTILE_FIELDS
del _type

# Relative slack allowed when checking min <= sum / count <= max: a client
# summing floats in another order may land a few ulps outside.
_MEAN_SLACK = 1e-9


class ParsedLine(NamedTuple):
    """
    What one line held.

    @ivar items: the L{Sample} and L{Partial} values, in line order.
    @ivar batch: C{True} when the line was an array of tuples.
    """

    items: List[Union[Sample, Partial]]
    batch: bool


def parse_line(line: bytes, limits: Limits) -> ParsedLine:
    """
    Parse one line (without its C{\\n}; a trailing C{\\r} is ignored).

    @raise ParseError: the line is refused as a whole; for a batch the
        message starts with C{item N:} (1-based).
    """
    if line.endswith(b"\r"):
        line = line[:-1]
    obj = decode_json(line)
    if not isinstance(obj, list):
        raise ParseError(
            "%s, or an array of them; got %s" % (_ARITY, _kind(obj))
        )
    if not obj:
        raise ParseError("empty array: %s, or an array of them" % (_ARITY,))
    if not isinstance(obj[0], list):
        return ParsedLine([parse_tuple(obj, limits)], False)
    if len(obj) > limits.max_batch:
        raise ParseError(
            "batch of %d items is larger than the limit of %d" % (len(obj), limits.max_batch)
        )
    items = []
    for index, item in enumerate(obj, 1):
        try:
            items.append(parse_tuple(item, limits))
        except ParseError as e:
            raise ParseError("item %d: %s" % (index, e))
    return ParsedLine(items, True)


def decode_json(data: bytes, what="line"):
    """
    The JSON value C{data} holds (UTF-8; finite numbers only).

    @param what: what C{data} is, for the messages.
    @raise ParseError: naming what is wrong.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError("%s is not valid UTF-8 (bad byte at position %d)" % (what, e.start))
    try:
        return _DECODER.decode(text)
    except _Constant as e:
        raise ParseError("%s is not allowed: numbers must be finite" % (e.args[0],))
    except ValueError as e:
        raise ParseError(_json_error(text, e))
    except RecursionError:
        raise ParseError("%s is nested too deeply" % (what,))


class _Constant(Exception):
    pass


def _refuse_constant(name):
    raise _Constant(name)


# One decoder for every line (json.loads with an argument builds one a call).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _json_error(text, error):
    excerpt = text if len(text) <= 40 else text[:37] + "..."
    reason = getattr(error, "msg", None) or str(error)
    column = getattr(error, "colno", None)
    where = " at column %d" % (column,) if column is not None else ""
    return "not JSON (%s%s): %s" % (reason, where, json.dumps(excerpt))


def _show(value, width=40):
    """
    A short JSON rendering of a value for an error message.
    """
    try:
        text = json.dumps(value, default=repr)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    if len(text) > width:
        text = text[: width - 3] + "..."
    return text


def _kind(value):
    if isinstance(value, list):
        return "an array of %d elements" % (len(value),)
    if isinstance(value, dict):
        return "an object"
    return _show(value)


def _is_number(value):
    # bool is an int subclass; JSON true/false are never numbers here.
    return type(value) is float or type(value) is int


def _finite(value):
    """
    C{value} as a finite float, or L{None}.
    """
    try:
        number = float(value)
    except OverflowError:
        return None
    if number - number != 0.0:
        return None
    return number


def _number_from_text(text):
    """
    A numeric string as a finite float, or L{None}.  Python float syntax
    without spaces or underscores, ASCII only, no NaN or infinity.
    """
    if not text.isascii() or "_" in text or text != text.strip():
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if number - number != 0.0:
        return None
    return number


def parse_tuple(item, limits: Limits) -> Union[Sample, Partial]:
    """
    Check one tuple already decoded from JSON (a line, an item of a batch,
    a row of an imported file).

    @raise ParseError: the tuple is refused; the message says why.
    """
    if not isinstance(item, list):
        raise ParseError("%s, got %s" % (_ARITY, _kind(item)))
    if len(item) not in (3, 4):
        raise ParseError(
            "%s, got %d element%s" % (_ARITY, len(item), "" if len(item) == 1 else "s")
        )
    name = _parse_name(item[0], limits)
    timestamp = _parse_timestamp(item[1])
    tags = _parse_tags(item[3], limits) if len(item) == 4 else ()
    value = item[2]
    if _is_number(value):
        number = _finite(value)
        if number is None:
            raise ParseError("value must be a finite number, got %s" % (_show(value),))
        return Sample(name, tags, SAMPLE, number, timestamp)
    if isinstance(value, str):
        kind, number, delta = _parse_value_text(value)
        return Sample(name, tags, kind, number, timestamp, 1.0, delta)
    if isinstance(value, dict):
        kind, fields = _parse_partial(value, limits)
        return Partial(name, tags, kind, fields, timestamp)
    raise ParseError(
        "value must be %s, or a partial aggregate object; got %s" % (_SUFFIX_HELP, _show(value))
    )


def _parse_name(name, limits):
    if not isinstance(name, str):
        raise ParseError("name must be a string, got %s" % (_show(name),))
    if not name or len(name) > limits.max_name_length or _NAME_OK(name) is None:
        raise ParseError(
            "name must be 1 to %d characters of %s, got %s"
            % (limits.max_name_length, NAME_ALPHABET, _show(name))
        )
    return name


# ISO 8601 date and time, as a spreadsheet writes it; without an offset, UTC.
_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII)


def _iso_time(text):
    """
    An ISO 8601 date and time as seconds since the epoch, or L{None}.
    """
    if _ISO_TIME.fullmatch(text) is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _parse_timestamp(timestamp):
    if timestamp is None:
        return None
    if _is_number(timestamp):
        number = _finite(timestamp)
    elif isinstance(timestamp, str):
        number = _number_from_text(timestamp)
        if number is None:
            number = _iso_time(timestamp)
    else:
        number = None
    if number is None:
        raise ParseError(
            "timestamp must be a number (or null for now) or an ISO 8601 time such as"
            " 2026-12-02T21:00:00Z, got %s" % (_show(timestamp),)
        )
    return number


def _parse_value_text(text):
    """
    A string value: C{(type, float, delta)}.
    """
    number = _number_from_text(text)
    if number is not None:
        return SAMPLE, number, False
    for suffix, kind in _SUFFIXES:
        if text.endswith(suffix):
            digits = text[: -len(suffix)]
            number = _number_from_text(digits)
            if number is None:
                break
            delta = kind == GAUGE and digits[:1] in ("+", "-")
            return kind, number, delta
    raise ParseError("value %s is not understood: expected %s" % (_show(text), _SUFFIX_HELP))


def _parse_tags(tags, limits):
    if tags is None:
        return ()
    if not isinstance(tags, dict):
        raise ParseError('tags must be an object like {"host": "web1"}, got %s' % (_show(tags),))
    if len(tags) > limits.max_tags:
        raise ParseError("%d tags is more than the limit of %d" % (len(tags), limits.max_tags))
    pairs = []
    for key, value in tags.items():
        if not key or len(key) > limits.max_tag_length or _TAG_KEY_OK(key) is None:
            raise ParseError(
                "tag key must be 1 to %d characters of %s, got %s"
                % (limits.max_tag_length, NAME_ALPHABET, _show(key))
            )
        if _is_number(value):
            if _finite(value) is None:
                raise ParseError("tag %s: value must be finite, got %s" % (key, _show(value)))
            value = str(value)
        elif not isinstance(value, str):
            raise ParseError(
                "tag %s: value must be a string or a number, got %s" % (key, _show(value))
            )
        if len(value) > limits.max_tag_length or _TAG_VALUE_OK(value) is None:
            raise ParseError(
                "tag %s: value must be at most %d characters of %s, got %s"
                % (key, limits.max_tag_length, TAG_VALUE_ALPHABET, _show(value))
            )
        pairs.append((key, value))
    pairs.sort()
    return tuple(pairs)


def _parse_partial(obj, limits):
    """
    A partial aggregate object: C{(type, fields)} with numbers as floats.
    """
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _REQUIRED:
        if "type" not in obj:
            raise ParseError(
                'partial aggregate needs a "type": one of %s' % (_PARTIAL_TYPES,)
            )
        raise ParseError(
            "partial type must be one of %s, got %s" % (_PARTIAL_TYPES, _show(kind))
        )
    what = TYPE_NAMES[kind] + " partial"
    required = _REQUIRED[kind]
    allowed = required + _OPTIONAL[kind]
    unknown = [key for key in obj if key != "type" and key not in allowed]
    if unknown:
        raise ParseError(
            "unknown field%s %s in a %s (allowed: %s)"
            % (
                "" if len(unknown) == 1 else "s",
                ", ".join(_show(key) for key in unknown),
                what,
                ", ".join(allowed),
            )
        )
    missing = [key for key in required if key not in obj]
    if missing:
        raise ParseError(
            "%s needs field%s %s" % (what, "" if len(missing) == 1 else "s", ", ".join(missing))
        )
    if kind == SET:
        # "count" alone is how an export writes a closed bucket whose members
        # are no longer known.
        if ("members" in obj) == ("count" in obj):
            raise ParseError(
                'set partial needs either "members" (the values seen) or "count" '
                "(how many unique values, when they are not known)"
            )
        if "members" in obj:
            return kind, {"members": _parse_members(obj["members"], limits)}
        count = obj["count"]
        if not _is_number(count) or _finite(count) is None or count < 0:
            raise ParseError("set partial count must be a finite number >= 0, got %s" % (_show(count),))
        return kind, {"count": float(count)}

    fields = {}
    for key, value in obj.items():
        if key == "type" or key == "sketch":
            continue
        number = _finite(value) if _is_number(value) else None
        if number is None:
            raise ParseError(
                "%s field %s must be a finite number, got %s" % (what, key, _show(value))
            )
        fields[key] = number

    if kind == COUNTER:
        return kind, fields

    count = fields.get("count")
    low = fields.get("min")
    high = fields.get("max")
    if count is not None and count <= 0:
        raise ParseError("%s count must be greater than 0, got %s" % (what, _show(count)))
    if low is not None and high is not None and low > high:
        raise ParseError("%s min %s is greater than max %s" % (what, _show(low), _show(high)))
    last = fields.get("last")
    if last is not None and (
        (low is not None and last < low) or (high is not None and last > high)
    ):
        raise ParseError("%s last %s is outside min..max" % (what, _show(last)))
    if kind == GAUGE:
        return kind, fields

    mean = fields["sum"] / count
    slack = _MEAN_SLACK * max(abs(low), abs(high), abs(mean))
    if not low - slack <= mean <= high + slack:
        raise ParseError(
            "%s sum / count = %s is outside min..max [%s, %s]"
            % (what, _show(mean), _show(low), _show(high))
        )
    if fields.get("sumsq", 0.0) < 0:
        raise ParseError("%s sumsq must be >= 0, got %s" % (what, _show(fields["sumsq"])))
    given = [key for key in _QUANTILE_FIELDS if key in fields]
    if given:
        if len(given) < len(_QUANTILE_FIELDS):
            raise ParseError(
                "%s percentiles come all together (%s), got only %s"
                % (what, ", ".join(_QUANTILE_FIELDS), ", ".join(given))
            )
        quantiles = [fields[key] for key in _QUANTILE_FIELDS]
        if any(a > b for a, b in zip(quantiles, quantiles[1:])):
            raise ParseError(
                "%s percentiles must not decrease (p50 <= p90 <= p95 <= p99), got %s"
                % (what, _show(quantiles))
            )
        # A stored row's percentiles may lie a rounding outside min..max
        # (a late bucket's were combined weighted by count).
        if quantiles[0] < low - slack or quantiles[-1] > high + slack:
            raise ParseError(
                "%s percentiles %s are outside min..max [%s, %s]"
                % (what, _show(quantiles), _show(low), _show(high))
            )
    if "sketch" in obj:
        try:
            fields["sketch"] = Sketch.from_json(obj["sketch"])
        except ValueError as e:
            raise ParseError("%s: %s" % (what, e))
    return kind, fields


def _parse_members(members, limits):
    if not isinstance(members, list) or not members:
        raise ParseError(
            "set partial members must be a non-empty array of strings, got %s" % (_show(members),)
        )
    if len(members) > limits.max_set_members:
        raise ParseError(
            "set partial has %d members, more than the limit of %d"
            % (len(members), limits.max_set_members)
        )
    result = []
    for member in members:
        if isinstance(member, str):
            result.append(member)
        elif _is_number(member) and _finite(member) is not None:
            result.append(str(member))
        else:
            raise ParseError(
                "set partial members must be strings or finite numbers, got %s" % (_show(member),)
            )
    return result


# The checks the other JSON wires share with this one (server.receivers.parse_nsq,
# server.receivers.parse_dattss): one spelling of each rule and of its message.
is_number = _is_number
show = _show
kind_of = _kind
parse_name = _parse_name
parse_tags = _parse_tags
parse_timestamp = _parse_timestamp
parse_value_text = _parse_value_text
parse_partial = _parse_partial
