"""
Graphite's plaintext protocol, as carbon's receivers read it:

    name value [timestamp]
    name;tag=value;tag2=value2 value [timestamp]

The three fields are separated by any run of whitespace.  C{timestamp} is in
seconds since the epoch (a fraction allowed); C{-1} or no timestamp at all
means "now", as carbon takes C{-1}.  Tags are Graphite 1.1's, checked as
carbon's C{TaggedSeries.parse} checks them (a key and a value each, no empty
value, no value starting with C{~}), and then against our own alphabet,
since a series key is written C{name;k=v} too.

L{parse_carbon_line} is pure: bytes in, a L{Sample} out, or L{ParseError}
whose message tells the sender what to fix.
"""

from typing import List, Tuple

from server.core.model import GAUGE, SAMPLE, Limits, ParseError, Sample
from server.receivers.parse_tuple import _number_from_text, _parse_name, _parse_tags, _show

__all__ = ["CARBON_VALUE_TYPES", "parse_carbon_line", "parse_carbon_packet"]

# What a plaintext value becomes (--carbon-values).
CARBON_VALUE_TYPES = {"sample": SAMPLE, "gauge": GAUGE}

_FORM = "expected 'name value [timestamp]'"
# A name Graphite takes for itself: the metric's own tag.
_RESERVED_KEY = "name"


def parse_carbon_line(line: bytes, limits: Limits, kind: str = SAMPLE) -> Sample:
    """
    Parse one plaintext line (without its C{\\n}; surrounding whitespace,
    a C{\\r} included, is ignored).

    @param kind: the type the value becomes: L{SAMPLE} or L{GAUGE}.
    @raise ParseError: the line is refused; the message says why.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError("line is not valid UTF-8 (bad byte at position %d)" % (e.start,))
    fields = text.split()
    if len(fields) not in (2, 3):
        raise ParseError("%s separated by spaces, got %d field%s: %s" % (
            _FORM, len(fields), "" if len(fields) == 1 else "s", _show(text.strip())))
    name, tags = _parse_path(fields[0], limits)
    value = _number(fields[1], "value")
    timestamp = None
    if len(fields) == 3:
        timestamp = _number(fields[2], "timestamp")
        if timestamp == -1.0:
            timestamp = None
    return Sample(name, tags, kind, value, timestamp)


def parse_carbon_packet(data: bytes, limits: Limits, kind: str = SAMPLE
                        ) -> Tuple[List[Sample], List[Tuple[int, str]]]:
    """
    Parse a datagram of plaintext lines (blank lines are skipped).

    @return: C{(samples, bad)}: the good lines' samples in order, and
        C{(line number, message)} for each line refused (1-based).
    """
    samples = []
    bad = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            samples.append(parse_carbon_line(line, limits, kind))
        except ParseError as e:
            bad.append((number, str(e)))
    return samples, bad


def _number(text, what) -> float:
    number = _number_from_text(text)
    if number is None:
        if text.isascii() and "_" not in text and _is_float(text):
            # NaN, an infinity, or too large for a float.
            raise ParseError("%s %s is not allowed: it must be a finite number" % (what, text))
        raise ParseError("%s must be a number, got %s" % (what, _show(text)))
    return number


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_path(path, limits):
    """
    C{name;k=v;...} as C{(name, sorted tag pairs)}.
    """
    name, *segments = path.split(";")
    if not name:
        raise ParseError("no metric name before the tags: %s" % (_show(path),))
    name = _parse_name(name, limits)
    if not segments:
        return name, ()
    tags = {}
    for segment in segments:
        key, sep, value = segment.partition("=")
        if not sep or not key:
            raise ParseError("tag %s is not tag=value (in %s)" % (_show(segment), _show(path)))
        if not value:
            raise ParseError("tag %s has an empty value" % (key,))
        if value[0] == "~":
            raise ParseError("tag %s: a value may not start with '~' (Graphite reserves it)"
                             % (key,))
        if key == _RESERVED_KEY:
            raise ParseError("tag key 'name' is reserved: Graphite takes it from the metric name")
        if key in tags:
            raise ParseError("tag %s is given twice" % (key,))
        tags[key] = value
    return name, _parse_tags(tags, limits)
