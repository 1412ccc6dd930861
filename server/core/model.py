"""
Plain values shared by the parsers, the ingest core, the store and the web API.

Every transport turns bytes into L{Sample} or L{Partial} values and hands them
to the ingest core; nothing here knows about sockets, files or clocks.
"""

from typing import NamedTuple, Optional, Tuple, Union

# Metric types, spelled as statsd spells them.  SAMPLE is a plain number sent
# over the TCP tuple protocol (the original SimpleStats data point).
COUNTER = "c"
GAUGE = "g"
TIMER = "ms"
HISTOGRAM = "h"
DISTRIBUTION = "d"
SET = "s"
SAMPLE = "v"

ALL_TYPES = frozenset({COUNTER, GAUGE, TIMER, HISTOGRAM, DISTRIBUTION, SET, SAMPLE})
# Types aggregated as a distribution of values (count, sum, percentiles, ...).
DISTRIBUTION_TYPES = frozenset({TIMER, HISTOGRAM, DISTRIBUTION, SAMPLE})

TYPE_NAMES = {
    COUNTER: "counter",
    GAUGE: "gauge",
    TIMER: "timer",
    HISTOGRAM: "histogram",
    DISTRIBUTION: "distribution",
    SET: "set",
    SAMPLE: "sample",
}

Tags = Tuple[Tuple[str, str], ...]


class ParseError(ValueError):
    """
    Input that cannot be understood.  C{str(error)} says what was wrong in
    words a person sending the data can act on.
    """


class StartupError(Exception):
    """
    The server must not start; the message names the file and the problem.
    """


class Sample(NamedTuple):
    """
    One measurement.

    @ivar name: metric name, already validated or sanitised by the parser.
    @ivar tags: sorted tuple of C{(key, value)} pairs; C{()} for none.
    @ivar type: one of L{ALL_TYPES}.
    @ivar value: a float; for L{SET} the member as a string.
    @ivar timestamp: seconds since the epoch, or L{None} for "now".
    @ivar rate: statsd sample rate in (0, 1]; a counter increment counts
        C{value / rate}, a timer value counts C{1 / rate} times.
    @ivar delta: for a L{GAUGE}, C{True} when C{value} is a signed change
        (statsd C{+3|g} / C{-2|g}) rather than a new value.
    """

    name: str
    tags: Tags
    type: str
    value: Union[float, str]
    timestamp: Optional[float] = None
    rate: float = 1.0
    delta: bool = False


class Partial(NamedTuple):
    """
    A partial aggregate computed by a client (DaTtSs style), merged exactly
    with raw samples of the same series.

    @ivar fields: by type --
        counter: C{{"count": n}};
        gauge: C{{"last": x}} plus optional C{count, sum, min, max};
        timer, histogram, distribution, sample: C{count, sum, min, max}
        plus optional C{sumsq, last, sketch};
        set: C{{"members": [...]}}.
        Parsers check the fields; the core trusts them.
    """

    name: str
    tags: Tags
    type: str
    fields: dict
    timestamp: Optional[float] = None


def series_key(name: str, tags: Tags) -> str:
    """
    The identity of a series: its name plus its tags, written as Graphite
    writes tagged series (C{name;k1=v1;k2=v2}, keys sorted).
    """
    if not tags:
        return name
    return name + "".join(";%s=%s" % kv for kv in tags)


def split_series_key(key: str) -> Tuple[str, Tags]:
    """
    Invert L{series_key}.
    """
    name, *pairs = key.split(";")
    return name, tuple(tuple(p.split("=", 1)) for p in pairs)


def normalize_tags(tags) -> Tags:
    """
    Turn a mapping or an iterable of pairs into the sorted tuple form.
    """
    if isinstance(tags, dict):
        tags = tags.items()
    return tuple(sorted((str(k), str(v)) for k, v in tags))


# What a name, a tag key and a tag value may contain.  statsd names are
# sanitised into this alphabet; TCP and imported names are checked against it.
NAME_PATTERN = r"[A-Za-z0-9_.\-]+"
TAG_KEY_PATTERN = r"[A-Za-z0-9_.\-]+"
TAG_VALUE_PATTERN = r"[A-Za-z0-9_.\-:/@+]*"
NAME_ALPHABET = "letters, digits, '_', '-' and '.'"
TAG_VALUE_ALPHABET = "letters, digits and '_-.:/@+'"


# The statsd parser's version, journaled with the packets it read (see
# server.core.parse_statsd and server.durability.recovery): 2 reads Telegraf-style tags.
STATSD_PARSER_VERSION = 2


class Limits(NamedTuple):
    """
    Size limits the parsers enforce (built from the settings).
    """

    max_name_length: int = 200
    max_tags: int = 20
    max_tag_length: int = 100
    max_batch: int = 10000
    max_set_members: int = 10000
    # Telegraf-style tags in statsd names (name,k=v): statsd parser
    # version 2 on.  A journal written by version 1 replays without them.
    telegraf_tags: bool = True
