"""
Prometheus' text exposition format (version 0.0.4) of the series, for
C{GET /metrics}: what a Prometheus server scrapes where it scraped
statsd_exporter.

By type:

  - a counter is a Prometheus counter C{<name>_total}: everything it counted
    since the series was first seen (L{server.core.store.Series.total}, kept
    in the snapshot and rebuilt by the journal's replay, so a restart
    neither resets nor double-counts it);
  - a gauge is a gauge (its current value);
  - a set is a gauge: its unique members in the last closed bucket of the
    finest tier;
  - a timer, histogram, distribution and a plain sample are a summary:
    C{quantile} 0.5, 0.9 and 0.99 (the stored median, statsd's, and p90,
    p99, statsd's upper_90 and upper_99) over the last closed bucket of the
    I{quantile tier} (the finest tier whose step is 60 s or more, the
    1-minute tier by default; the coarsest when none is that long), NaN when
    that bucket holds nothing; C{_sum} and C{_count} since the series was
    first seen, like a counter.

Names are escaped as statsd_exporter's C{EscapeMetricName} does: every
character outside C{[a-zA-Z0-9_]} becomes C{_} (a run of dashes one C{_}),
and a name starting with a digit gets a C{_} in front; tag keys become label
names the same way, tag values label values (escaped).  The series of one
family (one escaped name) are written together under one HELP and TYPE.

Where series collide, the smallest series key wins (whatever order the
series came in) and the others are left out of the scrape, counted in
C{simplestats.prometheus.dropped}: two types under one escaped name (the
type of the smallest key is the family's), a summary C{x} and a family named
C{x_sum} or C{x_count} (which the summary writes; the family of the smaller
first key stays), and two series with the same escaped name and labels.
Two tag keys of one series escaping to the same label name keep the first;
a tag named C{quantile} on a summary, or any tag starting with C{__} (kept by
Prometheus for itself), is written with C{exported_} in front.

The work goes a slice per reactor turn: matching the filter and grouping
into families (L{server.core.filters.run_in_slices}), then the text, a chunk
per turn with the export's backpressure (L{server.web.transfer.stream}).
Families come in the store's order, unsorted.  Values are read when their
chunk is written; nothing of the store is copied.
"""

import math
import re

from server.core.aggregate import field_index
from server.core.filters import SLICE_SECONDS, run_in_slices, select
from server.core.model import COUNTER, GAUGE, SET, TYPE_NAMES
from server.core.query import bucket_rows
from server.web import transfer

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# The summary quantiles and the stored field each is read from.
QUANTILES = (("0.5", field_index("dist", "p50")), ("0.9", field_index("dist", "p90")),
             ("0.99", field_index("dist", "p99")))
# Quantiles are read from the finest tier with a step of at least this.
QUANTILE_STEP = 60
_INVALID = re.compile(r"-+|[^A-Za-z0-9_]")
_SET_COUNT = field_index(SET, "count")

COUNTER_TYPE, GAUGE_TYPE, SUMMARY_TYPE = "counter", "gauge", "summary"
_KINDS = {COUNTER: COUNTER_TYPE, GAUGE: GAUGE_TYPE, SET: GAUGE_TYPE, "dist": SUMMARY_TYPE}


def metric_name(name):
    """
    C{name} as statsd_exporter escapes it: C{[a-zA-Z0-9_]} kept, a run of
    dashes or any other character C{_}, a leading digit prefixed with C{_}.
    """
    escaped = _INVALID.sub("_", name)
    if escaped[:1].isdigit():
        escaped = "_" + escaped
    return escaped


def label_value(value):
    """
    A label value escaped for the text format: backslash, double quote and
    line feed.
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def help_text(text):
    """
    HELP text escaped for the text format: backslash and line feed.
    """
    if "\\" not in text and "\n" not in text:
        return text
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value):
    """
    A sample value as the text format writes it (Go's C{NaN}, C{+Inf}).
    """
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def quantile_tier(tiers):
    """
    The tier a summary's quantiles are read from (see the module).
    """
    for i, tier in enumerate(tiers):
        if tier.step >= QUANTILE_STEP:
            return i
    return len(tiers) - 1


class Family:
    """
    The series written under one name: C{kind} is its Prometheus type,
    C{first} its series of the smallest key, C{members} its series with
    their label text.
    """

    __slots__ = ("name", "kind", "first", "members", "seen", "others")

    def __init__(self, name, kind, series):
        self.name = name
        self.kind = kind
        self.first = series
        self.members = []
        # Label text -> position in members, once there are two.
        self.seen = None
        # Series of other kinds under this name: C{[(series, kind, text)]}.
        self.others = None

    def add(self, series, text):
        members = self.members
        if series.key < self.first.key:
            self.first = series
        if members:
            seen = self.seen
            if seen is None:
                seen = self.seen = {members[0][1]: 0}
            at = seen.get(text)
            if at is not None:
                # Two names escaped alike, with the same labels: the
                # smaller key stays.
                if series.key < members[at][0].key:
                    members[at] = (series, text)
                members.append(None)
                return
            seen[text] = len(members)
        members.append((series, text))

    def other_kinds(self, kind, series, text):
        if self.others is None:
            self.others = []
        self.others.append((series, kind, text))

    def settle(self):
        """
        Resolve the collisions met while adding: the kind of the smallest
        key is the family's.  Returns how many series are left out.
        """
        dropped = 0
        if self.seen is not None:
            kept = [m for m in self.members if m is not None]
            dropped += len(self.members) - len(kept)
            self.members = kept
            self.seen = None
        if self.others:
            best = min(self.others, key=lambda pair: pair[0].key)
            if best[0].key < self.first.key:
                dropped += len(self.members)
                self.kind = best[1]
                self.first = best[0]
                self.members = []
                others = self.others
                self.others = None
                for series, kind, text in others:
                    if kind == best[1]:
                        self.add(series, text)
                dropped += len(others) - len(self.members)
                dropped += self.settle()
            else:
                dropped += len(self.others)
            self.others = None
        return dropped

    @property
    def help(self):
        return "SimpleStats %s %s" % (TYPE_NAMES[self.first.type], self.first.name)


class Exposition:
    """
    Answers C{GET /metrics} from C{core}'s store.

    @param core: the L{server.core.ingest.IngestCore} (its store, and its
        counters for what a scrape drops).
    """

    def __init__(self, core, clock, slice_seconds=SLICE_SECONDS, series_per_chunk=500):
        self.core = core
        self.store = core.store
        self.clock = clock
        self.slice_seconds = slice_seconds
        self.series_per_chunk = series_per_chunk

    def scrape(self, request, matches):
        """
        Write the exposition of the series C{matches(name, tags)} keeps to
        C{request}; a L{Deferred} that fires once it is written.
        """
        self.core.counters["simplestats.prometheus.scrapes"] += 1
        families = run_in_slices(self.clock, self.families(matches), self.slice_seconds)
        return families.addCallback(self._stream, request)

    def _stream(self, families, request):
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        request.setHeader(b"Cache-Control", b"no-store")
        return transfer.stream(request, self.chunks(families), self.clock)

    # -- the families, a slice at a time ---------------------------------------

    def families(self, matches, every=256):
        """
        A generator for L{run_in_slices}: the families of the series
        C{matches} keeps, collisions resolved (see the module).  Nothing is
        sorted (100k keys are a third of a scrape's time); where series
        collide, the smallest key wins whatever the order they came in.
        """
        store = self.store
        found = yield from select(list(store.series.values()), lambda s: matches(s.name, s.tags))
        by_name = {}
        # Per kind: name -> family name, tags -> label text (keyed by what
        # the series hold: no new key object per series).
        names = {kind: {} for kind in _KINDS.values()}
        labels = {kind: {} for kind in _KINDS.values()}
        kinds = _KINDS
        for start in range(0, len(found), every):
            for series in found[start:start + every]:
                kind = kinds[series.family]
                name = names[kind].get(series.name)
                if name is None:
                    name = metric_name(series.name)
                    if kind == COUNTER_TYPE:
                        name += "_total"
                    names[kind][series.name] = name
                text = labels[kind].get(series.tags)
                if text is None:
                    text = labels[kind][series.tags] = self._labels(series.tags, kind)
                family = by_name.get(name)
                if family is None:
                    family = by_name[name] = Family(name, kind, series)
                elif family.kind != kind:
                    family.other_kinds(kind, series, text)
                    continue
                family.add(series, text)
            yield
        families = list(by_name.values())
        dropped = 0
        for start in range(0, len(families), every):
            for family in families[start:start + every]:
                dropped += family.settle()
            yield
        for start in range(0, len(families), every):
            for family in families[start:start + every]:
                if family.kind == SUMMARY_TYPE:
                    # A summary x writes x_sum and x_count: the family of the
                    # smaller first key keeps the name.
                    for other in (by_name.get(family.name + "_sum"),
                                  by_name.get(family.name + "_count")):
                        if other is not None and other.members and family.members:
                            loser = family if other.first.key < family.first.key else other
                            dropped += len(loser.members)
                            loser.members = []
            yield
        if dropped:
            self.core.counters["simplestats.prometheus.dropped"] += dropped
        return families

    def _labels(self, tags, kind):
        """
        The label text of C{tags} (C{k="v",...}, no braces; C{""} for no
        tags).
        """
        parts = []
        used = set()
        for key, value in tags:
            label = metric_name(key)
            if label.startswith("__") or (kind == SUMMARY_TYPE and label == "quantile"):
                # Prometheus keeps names with __ for itself (__name__ would
                # rename the series), and a summary's quantile is its own.
                label = "exported_" + label
            if not label or label in used:
                continue
            used.add(label)
            parts.append('%s="%s"' % (label, label_value(value)))
        return ",".join(parts)

    def _alive(self, series):
        # Not deleted since it was matched (nor deleted and made anew).
        return self.store.series.get(series.key) is series

    # -- the text, a chunk per reactor turn ----------------------------------

    def chunks(self, families):
        """
        The exposition of C{families} as byte chunks of about
        C{series_per_chunk} series each; a series deleted meanwhile is
        left out.
        """
        store = self.store
        alive = store.series.get
        fold = store.fold_series
        tiers = store.tiers
        q = quantile_tier(tiers)
        q_step = tiers[q].step
        window = int(store.watermarks[q] // q_step) - 1
        set_step = tiers[0].step
        set_bucket = int(store.watermarks[0] // set_step) - 1
        lines = []
        add = lines.append
        count = 0
        for at in range(len(families)):
            family = families[at]
            # Freed as it is written: 100k families let go at the end would
            # be one long deallocation in one reactor turn.
            families[at] = None
            name = family.name
            kind = family.kind
            head = "# HELP %s %s\n# TYPE %s %s\n" % (name, help_text(family.help), name, kind)
            for series, text in family.members:
                if alive(series.key) is not series:
                    continue
                if head is not None:
                    add(head)
                    head = None
                if series.run:
                    fold(series)
                braced = "{%s}" % (text,) if text else ""
                if kind == COUNTER_TYPE:
                    value = series.total
                    add("%s%s %s\n" % (name, braced,
                                       repr(value) if value - value == 0.0 else number(value)))
                elif kind == SUMMARY_TYPE:
                    row = _closed_row(store, series, q, q_step, window)
                    joined = text + "," if text else ""
                    for quantile, field in QUANTILES:
                        value = row[field] if row else math.nan
                        add('%s{%squantile="%s"} %s\n' % (
                            name, joined, quantile,
                            repr(value) if value - value == 0.0 else number(value)))
                    total, taken = series.total_sum, series.total
                    add("%s_sum%s %s\n%s_count%s %s\n" % (
                        name, braced, repr(total) if total - total == 0.0 else number(total),
                        name, braced, repr(taken) if taken - taken == 0.0 else number(taken)))
                elif series.family == SET:
                    row = _closed_row(store, series, 0, set_step, set_bucket)
                    add("%s%s %s\n" % (name, braced, number(row[_SET_COUNT] if row else 0.0)))
                elif series.value is not None:
                    add("%s%s %s\n" % (name, braced, number(series.gauge)))
                count += 1
                if count >= self.series_per_chunk:
                    yield "".join(lines).encode("utf-8", "replace")
                    del lines[:]
                    count = 0
        if lines:
            yield "".join(lines).encode("utf-8", "replace")


def _closed_row(store, series, i, step, number):
    """
    The row of bucket C{number} of tier C{i} (L{None} when it holds
    nothing): read from the stored column, or through the query layer
    when an open bucket of tier C{i} or finer still holds points of it (a
    tick under way, or late points).
    """
    for j in range(i + 1):
        for bucket in series.open[j]:
            if bucket // step == number:
                return bucket_rows(store, series, i, number, number).get(number)
    stored = series.stored[i]
    if stored is None:
        return None
    lo, hi = stored.span(number, number)
    return stored.row(lo) if hi > lo else None
