"""
The Graphite paths and tags of our series, and matching them: globs
(C{*}, C{?}, C{[...]}, C{{a,b}} within a path node) for C{/render} and
C{/metrics/find}, tag expressions for C{seriesByTag}.  Pure: no store, no
clock; the caller walks the series a slice at a time.

An untagged series C{name} offers:

- C{name.<field>} for each field of its type (C{api.latency.p99},
  C{api.requests.rate}) and the bare C{name}, the type's default field (a
  sample's or timer's mean, a gauge's last, a counter's count, a set's
  count), so data sent as Graphite plaintext is read back by its path;
- statsd's Graphite names: C{stats.counters.<name>.rate|count},
  C{stats.<name>} (rate) and C{stats_counts.<name>} (count),
  C{stats.timers.<name>.mean|upper|lower|count|count_ps|sum|median|std|
  upper_90|upper_95|upper_99} (timers, histograms, distributions),
  C{stats.gauges.<name>}, C{stats.sets.<name>.count}.

A tagged series is a Graphite 1.1 tagged series: C{name.<field>;k=v} (and
C{name;k=v} for the default field), found with C{seriesByTag} or by its
exact path; globs never reach it (graphite-web keeps tagged series out of
the tree).

One path can name two series: a series sent as C{srv.latency.max} and the
C{max} field of C{srv.latency}; C{stats.gauges.g} sent as a path and the
gauge C{g}.  A series' own name wins (data sent by a path is read back by
that path), then a field of a series' own name, then statsd's names in the
order of L{STATSD_SCHEMES}: every way of asking (exact, brace, glob, tag
query) picks by L{rank}, so one answer never holds two series under one
name.
"""

import re
from typing import NamedTuple

from server.core.aggregate import PUBLIC_FIELDS
from server.core.model import COUNTER, DISTRIBUTION, GAUGE, HISTOGRAM, SET, TIMER


class Field(NamedTuple):
    """
    What a path reads: a public field of the series, per second if asked.
    """

    name: str
    per_second: bool = False


DEFAULT_FIELD = {"c": "count", "g": "last", "s": "count", "dist": "mean"}

_TIMER_FIELDS = {
    "mean": Field("mean"), "upper": Field("max"), "lower": Field("min"),
    "count": Field("count"), "count_ps": Field("count", True), "sum": Field("sum"),
    "median": Field("median"), "std": Field("std"), "upper_90": Field("p90"),
    "upper_95": Field("p95"), "upper_99": Field("p99"),
}
_NATIVE = {fam: {f: Field(f) for f in fields} for fam, fields in PUBLIC_FIELDS.items()}

# statsd's Graphite backend: (prefix nodes, types, field of the bare path,
# fields by last node).
STATSD_SCHEMES = (
    (("stats", "counters"), {COUNTER}, None, {"rate": Field("rate"), "count": Field("count")}),
    (("stats",), {COUNTER}, Field("rate"), {}),
    (("stats_counts",), {COUNTER}, Field("count"), {}),
    (("stats", "timers"), {TIMER, HISTOGRAM, DISTRIBUTION}, None, _TIMER_FIELDS),
    (("stats", "gauges"), {GAUGE}, Field("last"), {}),
    (("stats", "sets"), {SET}, None, {"count": Field("count")}),
)
STATSD_ROOTS = frozenset(prefix[0] for prefix, _, _, _ in STATSD_SCHEMES)


class PatternError(ValueError):
    """
    A path pattern that cannot be matched (an unclosed C{[} or C{{}).
    """


def templates(series):
    """
    C{[(nodes, bare field or None, {last node: field})]}: the shapes of the
    paths an untagged series offers.
    """
    return [(nodes, bare, suffixes) for nodes, bare, suffixes, _ in _ranked_templates(series)]


def _ranked_templates(series):
    """
    L{templates} with each shape's scheme number: 0 for the series' own
    name, 1 + its index in L{STATSD_SCHEMES} for statsd's.
    """
    nodes = tuple(series.name.split("."))
    out = [(nodes, Field(DEFAULT_FIELD[series.family]), _NATIVE[series.family], 0)]
    for scheme, (prefix, types, bare, suffixes) in enumerate(STATSD_SCHEMES, 1):
        if series.type in types:
            out.append((prefix + nodes, bare, suffixes, scheme))
    return out


def rank(scheme, is_field):
    """
    Which of several series offering one path that path reads: the lowest
    rank.  C{(0, False)} is a series' own name, C{(0, True)} a field of its
    name, then statsd's names scheme by scheme (a bare one before a field).
    Within one scheme and kind a path belongs to one series only.
    """
    return (scheme, is_field)


OWN_NAME = rank(0, False)
OWN_FIELD = rank(0, True)


class Choice:
    """
    C{{path: (rank, value)}} keeping, for each path, the value of the lowest
    rank: where several series offer one path, the one it reads.
    """

    def __init__(self):
        self.chosen = {}

    def offer(self, path, path_rank, value):
        """
        Keep C{value} for C{path} unless a value of a lower rank holds it;
        whether this is the path's first value.
        """
        held = self.chosen.get(path)
        if held is None:
            self.chosen[path] = (path_rank, value)
            return True
        if path_rank < held[0]:
            self.chosen[path] = (path_rank, value)
        return False

    def values(self):
        """
        The chosen values, sorted by path.
        """
        return [self.chosen[path][1] for path in sorted(self.chosen)]


def fields_of(series):
    """
    C{{name: Field}} of a (tagged) series' C{name.<field>} paths.
    """
    return _NATIVE[series.family]


def split_pattern(pattern):
    """
    The nodes of a path pattern: split on dots outside C{{...}} and C{[...]}.
    """
    nodes, current, depth, bracket = [], [], 0, False
    for c in pattern:
        if bracket:
            bracket = c != "]"
        elif c == "[":
            bracket = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        elif c == "." and not depth:
            nodes.append("".join(current))
            current = []
            continue
        current.append(c)
    nodes.append("".join(current))
    return nodes


def is_glob(text):
    return any(c in text for c in "*?[{")


def node_regex(node):
    """
    A compiled regex matching one path node against the glob C{node}.
    """
    out = []
    i = 0
    n = len(node)
    while i < n:
        c = node[i]
        if c == "*":
            out.append("[^.]*")
        elif c == "?":
            out.append("[^.]")
        elif c == "[":
            j = node.find("]", i + 2 if i + 1 < n and node[i + 1] in "!^" else i + 1)
            if j < 0:
                raise PatternError("unclosed '[' in %r" % (node,))
            body = node[i + 1:j]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[%s]" % body.replace("\\", "\\\\"))
            i = j
        elif c == "{":
            j = node.find("}", i)
            if j < 0:
                raise PatternError("unclosed '{' in %r" % (node,))
            alternatives = node[i + 1:j].split(",")
            out.append("(?:%s)" % "|".join(node_regex(a).pattern[:-2] for a in alternatives))
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as e:
        raise PatternError("bad pattern %r: %s" % (node, e))


class Pattern:
    """
    A path pattern compiled node by node.
    """

    def __init__(self, text):
        self.text = text
        self.nodes = split_pattern(text)
        if any(not node for node in self.nodes):
            raise PatternError("empty node in %r" % (text,))
        self.matchers = [node_regex(node).match for node in self.nodes]
        first = self.nodes[0]
        self.first = None if is_glob(first) else first

    def paths(self, series):
        """
        C{[(path, Field)]}: the paths of C{series} the pattern matches whole.
        """
        return [(path, field) for path, field, _ in self.ranked_paths(series)]

    def ranked_paths(self, series):
        """
        C{[(path, Field, rank)]}: L{paths} with each path's L{rank}.
        """
        if series.tags:
            return []
        k = len(self.matchers)
        out = []
        for nodes, bare, suffixes, scheme in _ranked_templates(series):
            if self.first is not None and nodes[0] != self.first:
                continue
            t = len(nodes)
            if t == k and bare is not None and self._prefix(nodes, k):
                out.append((".".join(nodes), bare, rank(scheme, False)))
            elif t + 1 == k and suffixes and self._prefix(nodes, t):
                last = self.matchers[t]
                name = ".".join(nodes)
                field_rank = rank(scheme, True)
                for node, field in suffixes.items():
                    if last(node):
                        out.append((name + "." + node, field, field_rank))
        return out

    def nodes_of(self, series):
        """
        C{[(path, is_leaf)]}: the tree nodes at the pattern's depth under
        which C{series} has paths (for C{/metrics/find}).
        """
        if series.tags:
            return []
        k = len(self.matchers)
        out = []
        for nodes, bare, suffixes in templates(series):
            if self.first is not None and nodes[0] != self.first:
                continue
            t = len(nodes)
            if k <= t:
                if self._prefix(nodes, k):
                    path = ".".join(nodes[:k])
                    if k < t or suffixes:
                        out.append((path, False))
                    if k == t and bare is not None:
                        out.append((path, True))
            elif k == t + 1 and suffixes and self._prefix(nodes, t):
                last = self.matchers[t]
                name = ".".join(nodes)
                out.extend((name + "." + node, True) for node in suffixes if last(node))
        return out

    def _prefix(self, nodes, k):
        matchers = self.matchers
        for i in range(k):
            if not matchers[i](nodes[i]):
                return False
        return True


# -- tags ------------------------------------------------------------------

_TAG_SPEC = re.compile(r"^([^;!=]+)(!?=~?)([^;]*)$")


class TagExpression:
    """
    One C{seriesByTag} argument: C{tag=spec}, C{tag!=spec}, C{tag=~regex},
    C{tag!=~regex}.  A regex is anchored at the start of the value; a
    value a series lacks is the empty string.  C{=} with a glob character
    (C{*?[{}}, none of which a tag value can hold) matches as a glob.
    """

    def __init__(self, text):
        match = _TAG_SPEC.match(text)
        if match is None:
            raise PatternError("invalid tag expression %r: expected tag=value, tag!=value,"
                               " tag=~regex or tag!=~regex" % (text,))
        self.tag, self.operator, self.spec = match.groups()
        self.tag = self.tag.strip()
        if self.operator in ("=~", "!=~"):
            try:
                self.regex = re.compile(self.spec)
            except re.error as e:
                raise PatternError("invalid regular expression in %r: %s" % (text, e))
        elif self.operator == "=" and is_glob(self.spec):
            self.regex = re.compile("\\.".join(node_regex(n).pattern[:-2]
                                               for n in split_pattern(self.spec)) + r"\Z")
        else:
            self.regex = None

    def matches(self, value):
        op = self.operator
        if op == "=":
            return value == self.spec if self.regex is None else bool(self.regex.match(value))
        if op == "!=":
            return value != self.spec
        if op == "=~":
            return self.regex.match(value) is not None
        return self.regex.match(value) is None

    def needs_value(self):
        return not self.matches("")


class TagQuery:
    """
    The arguments of C{seriesByTag}, compiled.
    """

    def __init__(self, expressions):
        if not expressions:
            raise PatternError("seriesByTag needs at least one tag expression")
        self.expressions = [TagExpression(e) for e in expressions]
        if not any(e.needs_value() for e in self.expressions):
            raise PatternError("seriesByTag needs at least one expression that requires a"
                               " non-empty value")
        self.names = [e for e in self.expressions if e.tag == "name"]
        self.others = [e for e in self.expressions if e.tag != "name"]
        # name=spec without a glob: the one name a series can match by.
        exact = {e.spec for e in self.names if e.operator == "=" and e.regex is None}
        self.exact = exact.pop() if len(exact) == 1 else (None if not exact else "")

    def _candidates(self, series):
        name = series.name
        exact = self.exact
        if exact is None:
            out = [(name, Field(DEFAULT_FIELD[series.family]), OWN_NAME)]
            out += [(name + "." + f, field, OWN_FIELD) for f, field in fields_of(series).items()]
            return out
        if exact == name:
            return [(name, Field(DEFAULT_FIELD[series.family]), OWN_NAME)]
        if exact.startswith(name) and exact[len(name):len(name) + 1] == ".":
            field = fields_of(series).get(exact[len(name) + 1:])
            if field is not None:
                return [(exact, field, OWN_FIELD)]
        return []

    def paths(self, series):
        """
        C{[(canonical path, Field)]} of C{series} that match.
        """
        return [(path, field) for path, field, _ in self.ranked_paths(series)]

    def ranked_paths(self, series):
        """
        C{[(canonical path, Field, rank)]}: L{paths} with each path's
        L{rank}.
        """
        # The cheaper test first: an exact name, else the other tags.
        if self.exact is None and not self._tags_match(series):
            return []
        candidates = [c for c in self._candidates(series)
                      if all(e.matches(c[0]) for e in self.names)]
        if not candidates or self.exact is not None and not self._tags_match(series):
            return []
        suffix = "".join(";%s=%s" % kv for kv in series.tags)
        return [(name + suffix, field, path_rank) for name, field, path_rank in candidates]

    def _tags_match(self, series):
        if not self.others:
            return True
        tags = dict(series.tags)
        return all(e.matches(tags.get(e.tag, "")) for e in self.others)


def tagged_path(path):
    """
    C{(name, tags)} of an exact tagged path C{name;k=v;...}.
    """
    name, *pairs = path.split(";")
    tags = []
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise PatternError("invalid tag %r in %r: expected tag=value" % (pair, path))
        tags.append((k, v))
    return name, tuple(sorted(tags))


def series_tags(path):
    """
    The C{tags} graphite-web gives a series: C{{"name": path}} for a plain
    path, every tag plus C{name} for a tagged one.
    """
    if ";" not in path:
        return {"name": path}
    name, tags = tagged_path(path)
    out = dict(tags)
    out["name"] = name
    return out
