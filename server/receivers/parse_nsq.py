"""
NSQ-style JSON messages, as the dtrace/kstat service posted them to nsqd's
HTTP API (C{POST /put?topic=T}, C{/mput} newline-separated):

    {"grouping": "fifo", "metric": "fifo.vm.creations", "time": 1795392000,
     "value": 1, "tags": {"fifo-host": "fifo01"}}

One message is one point: series C{metric} with the sorted C{tags} plus
C{grouping} as a tag (C{fifo.vm.creations;fifo-host=fifo01;grouping=fifo}),
C{time} in seconds since the epoch (from C{3e9} on it is taken as
milliseconds; missing or C{null}: the arrival), C{value} as the TCP tuple's
value (a number is a plain sample; C{"1c"}, C{"153ms"}, C{"23g"} are typed).
A missing C{tags} is C{{}}; keys besides these five are ignored.

L{parse_body} is pure: bytes in, L{Sample} values out, or the bad messages,
each a L{BadMessage} naming its number (1-based, the line of an C{/mput}
body) and its field.
"""

import math
import re
from typing import List, NamedTuple, Optional, Tuple

from server.core.model import SAMPLE, Limits, ParseError, Sample
from server.receivers.parse_tuple import (decode_json, is_number, kind_of, parse_name,
                                          parse_tags, parse_timestamp, parse_value_text, show)

__all__ = ["BadMessage", "MILLISECONDS_FROM", "check_topic", "parse_body", "parse_message"]

# A time at or past this is in milliseconds (3e9 s is the year 2065).
MILLISECONDS_FROM = 3e9
# nsqd's rule for a topic name (protocol.IsValidTopicName).
_TOPIC_OK = re.compile(r"[.a-zA-Z0-9_-]{1,64}(#ephemeral)?").fullmatch
_TOPIC_MAX = 64


class BadMessage(NamedTuple):
    """
    Why one message is refused.

    @ivar number: its number in the body, from 1 (the line of an C{/mput}).
    @ivar field: the field at fault, or L{None} for the message as a whole.
    """

    number: int
    field: Optional[str]
    reason: str

    def text(self):
        where = "message %d" % (self.number,)
        if self.field is not None:
            where += ", field %s" % (self.field,)
        return "%s: %s" % (where, self.reason)


def check_topic(topic: Optional[str]) -> str:
    """
    The C{topic} parameter as nsqd takes it (the topic names nothing here,
    but a publisher that nsqd would refuse is refused alike).

    @raise ParseError: naming the problem.
    """
    if topic is None or topic == "":
        raise ParseError("the topic parameter is required, as nsqd asks: ?topic=NAME")
    if len(topic) > _TOPIC_MAX + len("#ephemeral") or _TOPIC_OK(topic) is None:
        raise ParseError(
            "topic must be 1 to %d characters of letters, digits, '.', '_' and '-' (optionally"
            " ending in #ephemeral), as nsqd asks; got %s" % (_TOPIC_MAX, show(topic)))
    return topic


def parse_message(obj, limits: Limits) -> Sample:
    """
    One message already decoded from JSON.

    @raise ParseError: naming the field at fault (a L{_Bad}: its C{field}
        is L{None} when the message is not an object at all).
    """
    if not isinstance(obj, dict):
        raise _Bad(None, "expected a JSON object with metric, value and optionally time, tags"
                         " and grouping; got %s" % (kind_of(obj),))
    if "metric" not in obj:
        raise _Bad("metric", "is required (the series' name)")
    name = _field("metric", parse_name, obj["metric"], limits)
    if "value" not in obj or obj["value"] is None:
        raise _Bad("value", "is required (a number, or a typed string such as \"1c\")")
    value = obj["value"]
    if is_number(value):
        kind, number, delta = SAMPLE, _field("value", _finite_value, value), False
    elif isinstance(value, str):
        kind, number, delta = _field("value", parse_value_text, value)
    else:
        raise _Bad("value", "must be a number or a typed string such as \"1c\", \"153ms\","
                            " \"23g\"; got %s" % (show(value),))
    timestamp = _field("time", parse_timestamp, obj.get("time"))
    if timestamp is not None and timestamp >= MILLISECONDS_FROM:
        timestamp /= 1000.0
    tags = obj.get("tags")
    if tags is None:
        tags = {}
    elif not isinstance(tags, dict):
        raise _Bad("tags", 'must be an object like {"host": "web1"}, got %s' % (show(tags),))
    pairs = list(_field("tags", parse_tags, tags, limits))
    grouping = obj.get("grouping")
    if grouping is not None:
        (pair,) = _field("grouping", _grouping_tag, grouping, limits)
        known = dict(pairs).get("grouping")
        if known is None:
            pairs.append(pair)
            pairs.sort()
        elif known != pair[1]:
            raise _Bad("tags", "has a grouping tag %s that differs from the message's grouping %s"
                               % (show(known), show(pair[1])))
        if len(pairs) > limits.max_tags:
            raise _Bad("tags", "%d tags with the grouping is more than the limit of %d"
                               % (len(pairs), limits.max_tags))
    return Sample(name, tuple(pairs), kind, number, timestamp, 1.0, delta)


def parse_body(body: bytes, limits: Limits, multiple: bool) -> Tuple[List[Sample],
                                                                      List[BadMessage]]:
    """
    The messages of a C{/put} body (one message, C{multiple} false) or of an
    C{/mput} body (one per line; a final newline ends the last, a C{\\r}
    before a newline is dropped).

    @return: C{(samples, bad)}: the points in body order when C{bad} is
        empty, else every bad message (checking goes on past the first).
    @raise ParseError: the body as a whole cannot be taken (no message, or
        more than C{limits.max_batch} of them).
    """
    if not body.strip():
        raise ParseError("the body holds no message")
    if multiple:
        lines = body.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        if len(lines) > limits.max_batch:
            raise ParseError("%d messages is more than the limit of %d in one body (--max-batch)"
                             % (len(lines), limits.max_batch))
    else:
        lines = [body]
    samples = []
    bad = []
    for number, line in enumerate(lines, 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            bad.append(BadMessage(number, None, "empty line"))
            continue
        try:
            samples.append(parse_message(decode_json(line, "it"), limits))
        except _Bad as e:
            bad.append(BadMessage(number, e.field, e.reason))
        except ParseError as e:
            bad.append(BadMessage(number, None, str(e)))
    return samples, bad


class _Bad(ParseError):
    """
    A message refused: C{field} (or L{None}) and C{reason}.
    """

    def __init__(self, field, reason):
        ParseError.__init__(self, reason if field is None else "field %s: %s" % (field, reason))
        self.field = field
        self.reason = reason


def _field(name, check, *args):
    """
    C{check(*args)}, its L{ParseError} blamed on field C{name}.
    """
    try:
        return check(*args)
    except _Bad:
        raise
    except ParseError as e:
        raise _Bad(name, str(e))


def _finite_value(value):
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if number - number != 0.0:
        raise ParseError("must be a finite number, got %s" % (show(value),))
    return number


def _grouping_tag(grouping, limits):
    if not isinstance(grouping, (str, int, float)) or isinstance(grouping, bool):
        raise ParseError("must be a string, got %s" % (show(grouping),))
    try:
        return parse_tags({"grouping": grouping}, limits)
    except ParseError as e:
        # "tag grouping: value must be ..." says it twice.
        raise ParseError(str(e).partition(": ")[2])
