"""
statsd and DogStatsD packets.

One metric per line::

    name:value|type[|@rate][|#tag:value,tag2][|T<unix time>][|c:<container>]

C{type} is C{c}, C{ms}, C{h}, C{d}, C{g} or C{s}; the extensions after it
come in any order.  C{name:1:2:3|ms} packs three values in one line (not for
sets, whose member is everything between the first C{:} and the C{|}).
Names are sanitised exactly as Etsy statsd's C{keyNameSanitize} does, then
Graphite-style tags written in the name (C{name;k=v;k2=v2}) are split off;
Telegraf-style tags (C{name,k=v,k2=v2}) are split off before that.

L{parse_packet} never raises: a bad line becomes one error message and the
packet's other lines still count.  The statsd listener's hot path does not
parse the common shape line by line: L{fast_rows} splits a whole packet
into C{(name, value, rest)} rows in one C call, and only a line whose name,
type, rate and tags were not seen yet is parsed in full (L{parse_metric}).
"""

import re
from typing import List, Tuple

from server.core.model import (
    COUNTER,
    DISTRIBUTION,
    GAUGE,
    HISTOGRAM,
    SET,
    TIMER,
    Limits,
    Sample,
)

__all__ = ["BadMetric", "EVENT_PREFIX", "fast_line", "fast_rows", "packet_lines", "parse_event",
           "parse_metric", "parse_packet", "split_packet"]

# What a line means, by version (server.core.model.STATSD_PARSER_VERSION): a
# journal records the version that read its statsd packets, and replays
# them as that version did (1: before Telegraf-style tags, when "name,k=v"
# dropped the comma and the "="; Limits.telegraf_tags off).

_TYPES = {"c": COUNTER, "ms": TIMER, "h": HISTOGRAM, "d": DISTRIBUTION, "g": GAUGE, "s": SET}
_TYPE_HELP = "c, ms, h, d, g or s"
# Types whose samples carry a sample rate (statsd ignores it for the others).
_RATED = frozenset({COUNTER, TIMER, HISTOGRAM, DISTRIBUTION})

# A name already in the final alphabet needs no work (the common case).
_NAME_OK = re.compile(r"[A-Za-z0-9_.\-]+").fullmatch
# Etsy statsd keyNameSanitize, step by step.
_WHITESPACE = re.compile(r"\s+")
_NOT_KEY_CHAR = re.compile(r"[^a-zA-Z_\-0-9.;=]")
# What survives in tag keys and values (server.core.model TAG_KEY_PATTERN and
# TAG_VALUE_PATTERN, negated).
_TAG_KEY_OK = re.compile(r"[A-Za-z0-9_.\-]+").fullmatch
_NOT_TAG_KEY_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")
_TAG_VALUE_OK = re.compile(r"[A-Za-z0-9_.\-:/@+]*").fullmatch
_NOT_TAG_VALUE_CHAR = re.compile(r"[^A-Za-z0-9_.\-:/@+]")

_EXCERPT = 80

# The common shape of a line, matched over a whole packet in one C call
# (L{fast_rows}): a clean name, one number (at most 40 digits each side and a
# two-digit exponent: always a finite float), or a set member, then the type
# and optionally a sample rate and DogStatsD tags.  Groups: the name, the
# value as sent, and the rest of the line from the type on.  A line of this
# shape parses (L{parse_metric}) to one sample whose value is float() of
# the value group, or to an error that depends on the name and rest alone.
_FAST_LINE = re.compile(
    r"^([A-Za-z0-9_.\-]+):"
    r"([-+]?(?:\d{1,40}(?:\.\d{0,40})?|\.\d{1,40})(?:[eE][-+]?\d{1,2})?"
    r"(?=\|(?:c|ms|g|h|d)(?:\||$))"
    r"|[^|\n\r]+(?=\|s(?:\||$)))"
    r"(\|(?:c|ms|g|h|d|s)(?:\|@[0-9.]{1,24})?(?:\|#[A-Za-z0-9_.\-:/@+,]*)?)$",
    # ASCII digits only, as the full parser takes them.
    re.MULTILINE | re.ASCII,
)
fast_rows = _FAST_LINE.findall
fast_line = _fast_line = _FAST_LINE.fullmatch


class BadMetric(Exception):
    """
    One metric line is refused; C{args[0]} says why.
    """




def parse_packet(data: bytes, limits: Limits) -> Tuple[List[Sample], List[str]]:
    """
    Parse one statsd datagram (or a chunk of a statsd TCP stream cut at a
    line end).

    @return: the good samples, in packet order, and one message per bad
        line naming the problem and quoting the line (lines that are not
        UTF-8 are reported first).
    """
    samples = []
    errors = []
    for line in _each_line(data, errors):
        _parse_into(line, limits, samples.extend, errors)
    return samples, errors


def split_packet(data: bytes, limits: Limits):
    """
    Like L{parse_packet}, but a line of the common shape is left as its
    L{fast_rows} groups C{(name, value, rest)} for the caller's shortcut.

    @return: C{(parts, errors)}: in packet order, a tuple of groups or a
        list of samples per good line; one message per bad line.
    """
    parts = []
    errors = []
    for line in _each_line(data, errors):
        match = _fast_line(line)
        if match is not None:
            parts.append(match.groups())
        else:
            _parse_into(line, limits, parts.append, errors)
    return parts, errors


EVENT_PREFIX = "_e{"
_EVENT_HEAD = re.compile(r"_e\{(\d{1,6}),(\d{1,6})\}:")
_EVENT_MEMBERS = {"h": "host", "p": "priority", "t": "alert_type", "k": "aggregation_key",
                  "s": "source_type"}


def _event_parts(body, title_length, text_length):
    """
    C{(title, text, rest)} of an event's body cut at the given lengths, or
    L{None} when the lengths do not fall on the separators.
    """
    title = body[:title_length]
    if len(title) != title_length or body[title_length:title_length + 1] not in (b"|", "|"):
        return None
    start = title_length + 1
    text = body[start:start + text_length]
    rest = body[start + text_length:]
    if len(text) != text_length or rest[:1] not in (b"|", "|", b"", ""):
        return None
    return title, text, rest


def parse_event(line: str):
    """
    A DogStatsD event line, C{_e{title length,text length}:title|text}
    then any of C{|d:ts|h:host|p:priority|t:alert_type|k:key|s:source|#tags},
    as C{(when or None, members)}: the members of an event for
    L{server.core.events.check_event} (C{what}, C{data}, C{tags} and those
    given of C{host}, C{priority}, C{alert_type}, C{aggregation_key},
    C{source_type}).  The lengths count UTF-8 bytes (the agent's rule);
    lengths that count characters (some clients) are taken too.

    @raise BadMetric: naming the problem and quoting the line.
    """
    head = _EVENT_HEAD.match(line)
    if head is None:
        raise BadMetric('an event must start _e{<title length>,<text length>}: in "%s"'
                        % (_excerpt(line),))
    title_length, text_length = int(head.group(1)), int(head.group(2))
    body = line[head.end():]
    parts = _event_parts(body.encode("utf-8"), title_length, text_length)
    if parts is not None:
        try:
            parts = tuple(p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            parts = None
    if parts is None:
        parts = _event_parts(body, title_length, text_length)
    if parts is None:
        raise BadMetric('the event\'s title and text are not %d and %d long in "%s"'
                        % (title_length, text_length, _excerpt(line)))
    title, text, rest = parts
    if not title:
        raise BadMetric('an event needs a title in "%s"' % (_excerpt(line),))
    when = None
    members = {"what": title, "data": text.replace("\\n", "\n"), "tags": []}
    for field in rest.split("|")[1:]:
        if field.startswith("#"):
            members["tags"] = [t for t in field[1:].split(",") if t]
        elif field.startswith("d:"):
            when = _number(field[2:])
            if when is None:
                raise BadMetric('the event\'s d: is not a timestamp in "%s"' % (_excerpt(line),))
        elif field[:2] in ("h:", "p:", "t:", "k:", "s:"):
            members[_EVENT_MEMBERS[field[0]]] = field[2:]
        else:
            raise BadMetric('unknown event field %r in "%s"' % (field[:20], _excerpt(line)))
    return when, members


def packet_lines(data: bytes) -> Tuple[List[str], List[str]]:
    """
    The packet's non-empty lines (without the C{\\r} of a C{\\r\\n}), and one
    message per line that is not UTF-8 (left out of the lines).
    """
    errors = []
    return list(_each_line(data, errors)), errors


def _each_line(data, errors):
    """
    The packet's lines, without a C{\r} before the C{\n}, empty ones left
    out (a line that is not UTF-8 is an error in C{errors} instead).
    """
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = _decode_lines(data, errors)
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        if line:
            yield line


def _parse_into(line, limits, put, errors):
    try:
        put(_parse_line(line, limits))
    except BadMetric as e:
        errors.append('%s in "%s"' % (e.args[0], _excerpt(line)))


def parse_metric(line: str, limits: Limits) -> List[Sample]:
    """
    The samples of one line (several for packed values, C{a:1:2|ms}).

    @raise BadMetric: naming the problem and quoting the line.
    """
    try:
        return _parse_line(line, limits)
    except BadMetric as e:
        raise BadMetric('%s in "%s"' % (e.args[0], _excerpt(line)))


def _decode_lines(data, errors):
    """
    Decode line by line so one line of bad bytes costs only itself.
    """
    lines = []
    for raw in data.split(b"\n"):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "backslashreplace").rstrip("\r")
            errors.append('line is not valid UTF-8 in "%s"' % (_excerpt(text),))
    return lines


def _excerpt(text, width=_EXCERPT):
    if len(text) <= width:
        return text
    return text[: width - 3] + "..."


def _number(text):
    """
    C{text} as a finite float, or L{None}: Python float syntax (no hex), no
    NaN or infinity, ASCII digits only.
    """
    try:
        value = float(text)
    except ValueError:
        return None
    if value - value != 0.0 or not text.isascii():
        return None
    return value


def _parse_line(line, limits):
    """
    The general case: any name, packed values, extensions.
    """
    if line.startswith(EVENT_PREFIX):
        raise BadMetric("a DogStatsD event is read by parse_event, not as a metric")
    if line.startswith("_sc|"):
        raise BadMetric("DogStatsD service checks are not supported")
    colon = line.find(":")
    if colon < 0:
        raise BadMetric('missing ":" between name and value')
    pipe = line.find("|", colon + 1)
    if pipe < 0:
        raise BadMetric('missing "|" before the type')

    fields = line[pipe + 1 :].split("|")
    kind = _TYPES.get(fields[0])
    if kind is None:
        raise BadMetric(
            'unknown type "%s" (expected %s)' % (_excerpt(fields[0], 30), _TYPE_HELP)
        )

    name, tags = _sanitise_name(line[:colon], limits.telegraf_tags)
    if not name:
        raise BadMetric("empty metric name")
    if len(name) > limits.max_name_length:
        raise BadMetric("metric name longer than %d characters" % (limits.max_name_length,))

    rate = 1.0
    timestamp = None
    for field in fields[1:]:
        if not field:
            continue
        first = field[0]
        if first == "@":
            rate = _number(field[1:])
            if rate is None or not 0.0 < rate <= 1.0:
                raise BadMetric(
                    'sample rate must be a number in (0, 1], got "%s"' % (_excerpt(field, 30),)
                )
        elif first == "#":
            for item in field[1:].split(","):
                tag, _, value = item.partition(":")
                _add_tag(tags, tag, value)
        elif first == "T":
            timestamp = _number(field[1:])
            if timestamp is None:
                raise BadMetric(
                    'timestamp must be a number of seconds, got "%s"' % (_excerpt(field, 30),)
                )
        # "c:<container id>" and extensions from newer DogStatsD versions
        # are accepted and ignored, as the Datadog agent does.

    if tags:
        tags = _check_tags(tags, limits)
    else:
        tags = ()
    if kind not in _RATED:
        rate = 1.0

    text = line[colon + 1 : pipe]
    if kind == SET:
        if not text:
            raise BadMetric("empty set member")
        return [Sample(name, tags, kind, text, timestamp)]
    result = []
    for part in text.split(":"):
        value = _number(part)
        if value is None:
            raise BadMetric('value "%s" is not a finite number' % (_excerpt(part, 30),))
        result.append(
            Sample(name, tags, kind, value, timestamp, rate, kind == GAUGE and part[0] in "+-")
        )
    return result


def _sanitise_name(raw, telegraf_tags=True):
    """
    Etsy statsd's keyNameSanitize, then Graphite tags split off the name.

    @return: C{(name, tags)} with tags a dict (possibly empty).
    """
    if _NAME_OK(raw) is not None:
        return raw, {}
    tags = {}
    if telegraf_tags and "," in raw:
        # Telegraf's form (hot-shots with telegraf: true):
        # name,key=value,key2=value2 -- tags, not characters to drop.
        raw, *pairs = raw.split(",")
        for pair in pairs:
            tag, equals, value = pair.partition("=")
            if not equals:
                raise BadMetric('Telegraf-style tag "%s" after a "," has no "=" (write name,key=value)'
                                % (_excerpt(pair, 30),))
            _add_tag(tags, tag, value)
    key = _NOT_KEY_CHAR.sub("", _WHITESPACE.sub("_", raw).replace("/", "-"))
    name, *parts = key.split(";")
    # "=" survives keyNameSanitize but is no part of a name.
    name = name.replace("=", "")
    for part in parts:
        tag, _, value = part.partition("=")
        _add_tag(tags, tag, value)
    return name, tags


def _check_tags(tags, limits):
    """
    The tags dict as the sorted tuple a L{Sample} holds, within the limits.
    """
    if len(tags) > limits.max_tags:
        raise BadMetric("%d tags is more than the limit of %d" % (len(tags), limits.max_tags))
    for tag, value in tags.items():
        if len(tag) > limits.max_tag_length or len(value) > limits.max_tag_length:
            raise BadMetric(
                'tag "%s" is longer than %d characters' % (_excerpt(tag, 30), limits.max_tag_length)
            )
    return tuple(sorted(tags.items()))


def _add_tag(tags, tag, value):
    """
    Sanitise a tag key and value into their alphabets; a tag whose key is
    then empty is dropped.  A later value for the same key wins.
    """
    if _TAG_KEY_OK(tag) is None:
        tag = _NOT_TAG_KEY_CHAR.sub("", tag)
        if not tag:
            return
    if _TAG_VALUE_OK(value) is None:
        value = _NOT_TAG_VALUE_CHAR.sub("", value)
    tags[tag] = value
