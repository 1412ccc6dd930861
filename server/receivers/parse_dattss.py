"""
DaTtSs v2 partials: what a DaTtSs client sends every 5 s with
C{PUT /agg?auth=KEY}:

    {"prt": {"c":  [{"typ": "c", "pth": "routes.get_user", "pct": 0.1,
                     "sum": 376, "cnt": 340, "max": 3, "min": 1,
                     "fst": 1, "lst": 1, "bot": 1, "top": 3, "emp": false}],
             "ms": [...], "g": [...]}}

What each field means, as DaTtSs' client (C{make_partials}) computes it
from the values C{agg(path, "153ms")} gathered in 5 s, and its server
(C{environment.js}) reads it:

  - C{typ}: the kind, C{c} counter, C{ms} timer, C{g} gauge (the list the
    partial is in); C{pth}: the statistic's name;
  - C{cnt}: how many values; C{sum}: their sum (for a counter, the
    increments added up: the counter's value for the 5 s); C{min},
    C{max}; C{fst}, C{lst}: the first and the last value by time;
  - C{pct} (0.1 by default), C{bot}, C{top}: the values at ranks
    C{ceil(pct * cnt)} and C{round((1 - pct) * cnt)} of the sorted values,
    about the 10th and 90th percentiles, which DaTtSs' server combined
    weighted by count into an approximation;
  - C{emp}: "emphasis", true when a value was sent with a C{!} suffix
    (C{"5ms!"}): a flag for DaTtSs' dashboard, not data.

Each becomes a L{Partial} merged exactly as the TCP tuple protocol's partial
objects (L{server.receivers.parse_tuple.parse_partial} checks it): a
counter adds C{sum}; a timer brings C{cnt, sum, min, max} and C{lst} as its
last; a gauge C{lst} as its value and C{cnt, sum, min, max} as its updates.
C{bot}, C{top}, C{pct} and C{fst} are checked as numbers and not kept: two
ranks are no distribution, so a timer partial of more than two values has
unknown percentiles, as a tuple partial without a sketch does.  C{emp} must
be a boolean when given.  Unlike DaTtSs, a zero is a value (its client and
server took C{0} for "unset" in C{min}, C{max} and C{fst}) and fractional
values are taken.  There is no timestamp: the server stamps the arrival.

L{parse_agg} is pure: bytes in, the partials it could read and the ones it
refuses, each by its list and its 0-based index there.
"""

from typing import List, NamedTuple, Tuple

from server.core.model import COUNTER, GAUGE, TIMER, Limits, ParseError, Partial
from server.receivers.parse_tuple import (decode_json, is_number, kind_of, parse_name,
                                          parse_partial, show)

__all__ = ["KINDS", "Refused", "parse_agg", "parse_partial_v2"]

# The lists of a body, in the order they are applied.
KINDS = ("c", "ms", "g")
_TYPES = {"c": COUNTER, "ms": TIMER, "g": GAUGE}
# DaTtSs field -> ours, per kind; the first ones are required.
_REQUIRED = {"c": ("sum",), "ms": ("cnt", "sum", "min", "max"), "g": ("lst",)}
_MAPPED = {
    "c": {},
    "ms": {"cnt": "count", "sum": "sum", "min": "min", "max": "max", "lst": "last"},
    "g": {"lst": "last", "cnt": "count", "sum": "sum", "min": "min", "max": "max"},
}
# Numbers a client sends that are checked but not kept.
_CHECKED = ("cnt", "min", "max", "fst", "lst", "bot", "top", "pct")


class Refused(NamedTuple):
    """
    A partial refused: its list (C{c}, C{ms}, C{g}), its 0-based index in
    it, and why.
    """

    kind: str
    index: int
    error: str


def parse_agg(body: bytes, limits: Limits) -> Tuple[List[Tuple[str, int, Partial]],
                                                     List[Refused]]:
    """
    The partials of one C{/agg} body.

    @return: C{(taken, refused)}: C{(kind, index, Partial)} for each partial
        read, in the order C{c}, C{ms}, C{g}; a L{Refused} for each other.
    @raise ParseError: the body as a whole is not a DaTtSs commit (not JSON,
        no C{prt} object, a list that is not an array, too many partials).
    """
    obj = decode_json(body, "the body")
    if not isinstance(obj, dict):
        raise ParseError('expected a JSON object {"prt": {"c": [...], "ms": [...], "g": [...]}},'
                         " got %s" % (kind_of(obj),))
    prt = obj.get("prt")
    if not isinstance(prt, dict):
        raise ParseError('expected "prt": {"c": [...], "ms": [...], "g": [...]}, got %s'
                         % ("nothing" if prt is None else kind_of(prt),))
    lists = {}
    for kind in KINDS:
        partials = prt.get(kind)
        if partials is None:
            partials = []
        elif not isinstance(partials, list):
            raise ParseError('"prt.%s" must be an array of partials, got %s'
                             % (kind, kind_of(partials)))
        lists[kind] = partials
    unknown = sorted(k for k in prt if k not in KINDS)
    if unknown:
        raise ParseError('"prt" holds %s; the kinds are c, ms and g'
                         % (", ".join(show(k) for k in unknown),))
    total = sum(len(p) for p in lists.values())
    if total > limits.max_batch:
        raise ParseError("%d partials is more than the limit of %d in one body (--max-batch)"
                         % (total, limits.max_batch))
    taken = []
    refused = []
    for kind in KINDS:
        for index, partial in enumerate(lists[kind]):
            try:
                taken.append((kind, index, parse_partial_v2(kind, partial, limits)))
            except ParseError as e:
                refused.append(Refused(kind, index, str(e)))
    return taken, refused


def parse_partial_v2(kind: str, obj, limits: Limits) -> Partial:
    """
    One partial of list C{kind} (C{c}, C{ms} or C{g}), stamped L{None}
    (the arrival).

    @raise ParseError: naming the DaTtSs field at fault.
    """
    if not isinstance(obj, dict):
        raise ParseError("a partial must be an object with typ, pth, sum, cnt, ...; got %s"
                         % (kind_of(obj),))
    typ = obj.get("typ", kind)
    if typ != kind:
        raise ParseError("typ %s in the %s list: a partial goes in the list of its typ"
                         % (show(typ), kind))
    if "pth" not in obj:
        raise ParseError('"pth" is required (the statistic\'s name)')
    try:
        name = parse_name(obj["pth"], limits)
    except ParseError as e:
        raise ParseError("pth: %s" % (e,))
    missing = [key for key in _REQUIRED[kind] if obj.get(key) is None]
    if missing:
        raise ParseError("a %s partial needs %s" % (kind, ", ".join(missing)))
    numbers = {}
    for key in ("sum",) + _CHECKED:
        value = obj.get(key)
        if value is None:
            continue
        number = _finite(value)
        if number is None:
            raise ParseError("%s must be a finite number, got %s" % (key, show(value)))
        numbers[key] = number
    emphasis = obj.get("emp")
    if emphasis is not None and not isinstance(emphasis, bool):
        raise ParseError("emp must be true or false, got %s" % (show(emphasis),))
    if kind == "c":
        return Partial(name, (), COUNTER, {"count": numbers["sum"]}, None)
    count = numbers.get("cnt")
    if count is not None and count <= 0:
        raise ParseError("cnt must be greater than 0, got %s" % (show(obj["cnt"]),))
    ours = {"type": _TYPES[kind]}
    for theirs, field in _MAPPED[kind].items():
        if theirs in numbers:
            ours[field] = numbers[theirs]
    # The consistency checks of every partial (min <= last <= max, the mean
    # within min..max, ...), in our names.
    try:
        mtype, fields = parse_partial(ours, limits)
    except ParseError as e:
        raise ParseError("%s (count is cnt, last is lst)" % (e,))
    return Partial(name, (), mtype, fields, None)


def _finite(value):
    """
    C{value} as a finite float, or L{None} (not a number, NaN, infinite,
    or an integer too large for a float).
    """
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if number - number == 0.0 else None
