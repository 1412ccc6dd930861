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
    C{quantile} 0.5, 0.9 and 0.99 over the last closed bucket of the
    I{quantile tier} (the finest tier whose step is 60 s or more, the
    1-minute tier by default; the coarsest when none is that long), NaN when
    that bucket holds nothing; C{_sum} and C{_count} since the series was
    first seen, like a counter.

Names are escaped as statsd_exporter's C{EscapeMetricName} does: every
character outside C{[a-zA-Z0-9_]} becomes C{_} (a run of dashes one C{_}),
and a name starting with a digit gets a C{_} in front; tag keys become label
names the same way, tag values label values (escaped).  The series of one
family (one escaped name) are written together under one HELP and TYPE.

Where series collide, the first by series key wins and the others are left
out of the scrape, counted in C{simplestats.prometheus.dropped}: two types
under one escaped name (the type of the smallest key is the family's), a
family whose sample names another family already writes (a summary C{x}
writes C{x_sum} and C{x_count}; families are taken in name order), and two
series with the same escaped name and labels.  Two tag keys of one series
escaping to the same label name keep the first; a tag named C{quantile} on a
summary is written C{exported_quantile}.

The work goes a slice per reactor turn: matching the filter and sorting
(L{server.core.filters.run_in_slices}), then the text, a chunk per turn
with the export's backpressure (L{server.web.transfer.stream}).  Values are
read when their chunk is written; nothing of the store is copied.
"""

import math
import re
from operator import attrgetter

from server.core.aggregate import field_index
from server.core.filters import SLICE_SECONDS, merge_runs, run_in_slices, select, sorted_runs
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
_KEY = attrgetter("key")
_SET_COUNT = field_index(SET, "count")

COUNTER_TYPE, GAUGE_TYPE, SUMMARY_TYPE = "counter", "gauge", "summary"


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


def prometheus_type(series):
    """
    The Prometheus type a series is written as.
    """
    fam = series.family
    if fam == COUNTER:
        return COUNTER_TYPE
    if fam in (GAUGE, SET):
        return GAUGE_TYPE
    return SUMMARY_TYPE


def sample_names(family, kind):
    """
    The sample names a family of C{kind} writes.
    """
    if kind == SUMMARY_TYPE:
        return (family, family + "_sum", family + "_count")
    return (family,)


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
    C{members} its series with their label text (in key order).
    """

    __slots__ = ("name", "kind", "help", "members")

    def __init__(self, name, kind, help):
        self.name = name
        self.kind = kind
        self.help = help
        self.members = []


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

    def families(self, matches):
        """
        A generator for L{run_in_slices}: the families of the series
        C{matches} keeps, sorted by name, collisions resolved (see the
        module).
        """
        store = self.store
        found = yield from select(list(store.series.values()), lambda s: matches(s.name, s.tags))
        runs, _ = yield from sorted_runs(found, _KEY, self._alive)
        found = yield from merge_runs(runs, _KEY)
        dropped = 0
        by_name = {}
        names = {}
        labels = {}
        for start in range(0, len(found), 256):
            for series in found[start:start + 256]:
                kind = prometheus_type(series)
                base = names.get(series.name)
                if base is None:
                    base = names[series.name] = metric_name(series.name)
                name = base + "_total" if kind == COUNTER_TYPE else base
                family = by_name.get(name)
                if family is None:
                    family = by_name[name] = Family(
                        name, kind, "SimpleStats %s %s" % (TYPE_NAMES[series.type], series.name))
                elif family.kind != kind:
                    # Keys come in order: the family's type is the smallest key's.
                    dropped += 1
                    continue
                family.members.append((series, self._labels(series, kind, labels)))
            yield
        runs, _ = yield from sorted_runs(list(by_name), str)
        ordered = yield from merge_runs(runs, str)
        claimed = set()
        out = []
        for start in range(0, len(ordered), 1024):
            for name in ordered[start:start + 1024]:
                family = by_name[name]
                writes = sample_names(name, family.kind)
                if claimed.intersection(writes):
                    dropped += len(family.members)
                    continue
                claimed.update(writes)
                seen = set()
                members = []
                for series, text in family.members:
                    if text in seen:
                        dropped += 1
                    else:
                        seen.add(text)
                        members.append((series, text))
                family.members = members
                out.append(family)
            yield
        if dropped:
            self.core.counters["simplestats.prometheus.dropped"] += dropped
        return out

    def _labels(self, series, kind, cache):
        """
        The label text of C{series} (C{k="v",...}, no braces; C{""} for no
        tags).
        """
        if not series.tags:
            return ""
        parts = []
        used = set()
        for key, value in series.tags:
            label = cache.get(key)
            if label is None:
                label = cache[key] = metric_name(key)
            if kind == SUMMARY_TYPE and label == "quantile":
                label = "exported_quantile"
            if label in used:
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
        tiers = store.tiers
        q = quantile_tier(tiers)
        q_step = tiers[q].step
        last_minute = int(store.watermarks[q] // q_step) - 1
        set_bucket = int(store.watermarks[0] // tiers[0].step) - 1
        lines = []
        count = 0
        for family in families:
            name = family.name
            kind = family.kind
            members = [m for m in family.members if self._alive(m[0])]
            if not members:
                continue
            lines.append("# HELP %s %s\n# TYPE %s %s\n" % (name, help_text(family.help), name,
                                                          kind))
            for series, text in members:
                store.fold_series(series)
                braced = "{%s}" % (text,) if text else ""
                if kind == COUNTER_TYPE:
                    lines.append("%s%s %s\n" % (name, braced, number(series.total)))
                elif kind == SUMMARY_TYPE:
                    row = bucket_rows(store, series, q, last_minute, last_minute).get(last_minute)
                    joined = text + "," if text else ""
                    for quantile, field in QUANTILES:
                        lines.append('%s{%squantile="%s"} %s\n' % (
                            name, joined, quantile, number(row[field] if row else math.nan)))
                    lines.append("%s_sum%s %s\n%s_count%s %s\n" % (
                        name, braced, number(series.total_sum), name, braced,
                        number(series.total)))
                elif series.family == SET:
                    row = bucket_rows(store, series, 0, set_bucket, set_bucket).get(set_bucket)
                    lines.append("%s%s %s\n" % (name, braced,
                                                number(row[_SET_COUNT] if row else 0.0)))
                else:
                    if series.value is None:
                        continue
                    lines.append("%s%s %s\n" % (name, braced, number(series.gauge)))
                count += 1
                if count >= self.series_per_chunk:
                    yield "".join(lines).encode("utf-8", "replace")
                    lines = []
                    count = 0
        if lines:
            yield "".join(lines).encode("utf-8", "replace")
