"""
Rollup on a Clock: points go through the ingest core into 5 s buckets, the
tick closes them into 1 min and 1 h buckets, and every tier must equal an
aggregation computed directly from the raw values.
"""

import math
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.core.aggregate import (PUBLIC_FIELDS, QUANTILE_FIELDS, QUANTILES, STORED_FIELDS,
                                   family)
from server.core.model import (COUNTER, DISTRIBUTION, GAUGE, HISTOGRAM, SAMPLE, SET, TIMER,
                          Partial, Sample, series_key)
from server.core.query import bucket_rows, series_points
from server.core.sketch import MEDIAN, Sketch
from server.core.store import MOVING_AVERAGE_WINDOW
from server.test.support import T0, make_core

RETENTIONS = "5s:6h,1m:8d,1h:30d"
STEPS = (5, 60, 3600)
GRACE = 5.0
ACCURACY = 0.01
DAY = 86400.0
# Data starts a quarter of an hour before an hour boundary, so the 1 h tier
# has two buckets to fill.
START = T0 + 3600 - 900

TYPES = (COUNTER, GAUGE, TIMER, HISTOGRAM, DISTRIBUTION, SAMPLE, SET)
RATES = (1.0, 1.0, 0.5, 0.25, 0.1, 0.3)
MEMBERS = tuple("abcdefgh")
SERIES_TAGS = {COUNTER: (("host", "web1"),)}


def name_of(metric_type):
    return "rollup." + family(metric_type) + "." + metric_type


# -- building points -------------------------------------------------------


def make_partial(metric_type, values, ts):
    """
    The partial aggregate a client would send for C{values} (in order).
    """
    name, tags = name_of(metric_type), SERIES_TAGS.get(metric_type, ())
    if metric_type == COUNTER:
        fields = {"count": float(sum(values))}
    elif metric_type == GAUGE:
        fields = {"last": values[-1], "count": float(len(values)), "sum": sum(values),
                  "min": min(values), "max": max(values)}
    elif metric_type == SET:
        fields = {"members": sorted(set(values))}
    else:
        sketch = Sketch(ACCURACY)
        for value in values:
            sketch.add(value)
        fields = {"count": float(len(values)), "sum": sum(values),
                  "sumsq": sum(v * v for v in values), "min": min(values),
                  "max": max(values), "last": values[-1], "sketch": sketch}
    return Partial(name, tags, metric_type, fields, ts)


magnitudes = st.floats(min_value=1e-3, max_value=1e6)
dist_values = st.one_of(st.just(0.0), magnitudes, magnitudes.map(lambda x: -x))
counter_values = st.integers(-10, 1000).map(float)


def values_for(metric_type):
    if metric_type == COUNTER:
        return counter_values
    if metric_type == SET:
        return st.sampled_from(MEMBERS)
    return dist_values


@st.composite
def streams(draw, min_delay, max_delay):
    """
    C{(span, [(arrival, item, values)])}: points with timestamps in
    C{START .. START + span}, each arriving C{min_delay .. max_delay} seconds
    after its timestamp; C{values} are the raw values of a partial.
    """
    span = draw(st.sampled_from([20, 300, 1800]))
    count = draw(st.integers(1, 60))
    events = []
    for _ in range(count):
        metric_type = draw(st.sampled_from(TYPES))
        ts = START + draw(st.integers(0, span * 1000 - 1)) / 1000.0
        arrival = ts + draw(st.integers(int(min_delay * 1000), int(max_delay * 1000))) / 1000.0
        name, tags = name_of(metric_type), SERIES_TAGS.get(metric_type, ())
        if draw(st.integers(0, 3)) == 0:
            values = draw(st.lists(values_for(metric_type), min_size=1, max_size=6))
            events.append((arrival, make_partial(metric_type, values, ts), values))
            continue
        value = draw(values_for(metric_type))
        rate = 1.0
        delta = False
        if metric_type in (COUNTER, TIMER, HISTOGRAM, SAMPLE):
            rate = draw(st.sampled_from(RATES))
        if metric_type == GAUGE:
            delta = draw(st.booleans())
        events.append((arrival, Sample(name, tags, metric_type, value, ts, rate, delta), None))
    events.sort(key=lambda event: event[0])
    return span, events


# -- the feed and the direct aggregation -------------------------------------


class Feed:
    """
    An IngestCore with a real journal on a Clock, ticked every
    C{tick_every} seconds like the rollup timer; remembers every accepted
    raw value as C{(ts, seq, value, weight)} per series key.
    """

    def __init__(self, testcase, *argv, now=T0, tick_every=1):
        self.testcase = testcase
        self.core = make_core(testcase, "--retentions", RETENTIONS, *argv, now=now)
        self.clock = self.core.clock
        self.store = self.core.store
        self.tick_every = tick_every
        self.next_tick = now + tick_every
        self.raw = defaultdict(list)
        self.gauges = defaultdict(float)
        self.seq = 0

    def advance_to(self, when):
        while self.next_tick <= when:
            self.clock.advance(self.next_tick - self.clock.seconds())
            self.store.tick(self.clock.seconds())
            self.next_tick += self.tick_every
        if when > self.clock.seconds():
            self.clock.advance(when - self.clock.seconds())

    def submit(self, item, values=None):
        """
        Submit one point; it must be accepted.
        """
        self.testcase.assertEqual(self.core.submit([item], "test"), [])
        key = series_key(item.name, item.tags)
        ts = self.clock.seconds() if item.timestamp is None else item.timestamp
        if values is None:
            if item.type == GAUGE:
                value = self.gauges[key] + item.value if item.delta else item.value
                self.gauges[key] = value
                contributions = [(value, 1.0)]
            elif item.type == COUNTER:
                contributions = [(item.value / item.rate, 1.0)]
            elif item.type == SET:
                contributions = [(item.value, 1.0)]
            else:
                contributions = [(item.value, 1.0 / item.rate)]
        else:
            if item.type == GAUGE:
                self.gauges[key] = values[-1]
            contributions = [(value, 1.0) for value in values]
        for value, weight in contributions:
            self.seq += 1
            self.raw[key].append((ts, self.seq, value, weight))

    def series(self, metric_type):
        return self.store.series[series_key(name_of(metric_type),
                                            SERIES_TAGS.get(metric_type, ()))]


def direct(fam, points):
    """
    The fields of one bucket aggregated straight from its raw values.
    """
    if fam == COUNTER:
        return {"count": sum(v for _, _, v, _ in points), "scale": sum(abs(v) for _, _, v, _ in points)}
    if fam == SET:
        return {"count": float(len({v for _, _, v, _ in points})), "adds": len(points), "scale": 1.0}
    last = max(points, key=lambda p: (p[0], p[1]))[2]
    values = [v for _, _, v, _ in points]
    weights = [w for _, _, _, w in points]
    expected = {
        "sum": sum(v * w for v, w in zip(values, weights)),
        "min": min(values),
        "max": max(values),
        "last": last,
        "scale": sum(abs(v) * w for v, w in zip(values, weights)),
    }
    if fam == GAUGE:
        expected["updates"] = float(len(points))
        return expected
    expected["count"] = sum(weights)
    expected["sumsq"] = sum(v * v * w for v, w in zip(values, weights))
    expected["sumsq_scale"] = expected["sumsq"]
    expected["weighted"] = sorted(zip(values, weights))
    return expected


def direct_rows(fam, raw, step):
    buckets = defaultdict(list)
    for point in raw:
        buckets[int(point[0] // step)].append(point)
    return {number: direct(fam, points) for number, points in buckets.items()}


def _holding(weighted, position, slack, closed=True):
    """
    The values whose positions (a value of weight w takes w of them) hold
    C{position}: the one holding it (C{closed}) or the one just after it,
    with some slack for the order in which float weights were summed; the
    greatest value past the end.
    """
    seen = 0.0
    found = []
    for value, weight in weighted:
        before, seen = seen, seen + weight
        if closed:
            hit = seen >= position - slack and before < position + slack
        else:
            hit = seen > position - slack and before <= position + slack
        if hit and weight > 0:
            found.append(value)
    return found or [weighted[-1][0]]


def quantile_candidates(weighted, q):
    """
    The exact values statsd's rules may give (C{(value, scale)}, the
    sketch's answer within C{ACCURACY * scale} of C{value}): for C{q} a
    number the value at position C{Math.round(q * total)} (at least 1),
    for L{MEDIAN} the mean of the values at the middle position and just
    after it.
    """
    total = sum(w for _, w in weighted)
    slack = 1e-9 * max(total, 1.0)
    if q == MEDIAN:
        half = total / 2
        return [((a + b) / 2, (abs(a) + abs(b)) / 2)
                for a in _holding(weighted, half, slack)
                for b in _holding(weighted, half, slack, closed=False) if a <= b]
    found = []
    for t in (total - slack, total + slack):
        position = max(math.floor(q * t + 0.5), 1)
        found.extend((v, abs(v)) for v in _holding(weighted, position, slack))
    return found


class RollupTestCase(SynchronousTestCase):

    def assertClose(self, actual, expected, scale, what):
        bound = 1e-9 * max(scale, 1.0)
        self.assertTrue(abs(actual - expected) <= bound,
                        "%s: %r != %r" % (what, actual, expected))

    def assertRow(self, fam, row, expected, what, exact=True):
        """
        A stored row against the direct aggregation of its bucket.  With
        C{exact} false (late points merged into closed rows) only the exact
        fields are checked: counts, sums, minimum and maximum.
        """
        fields = dict(zip(STORED_FIELDS[fam], row))
        scale = expected["scale"]
        if fam == SET:
            if exact:
                self.assertEqual(fields["count"], expected["count"], what)
            else:
                # Members of a closed bucket are gone: an upper bound.
                self.assertTrue(expected["count"] <= fields["count"] <= expected["adds"], what)
            return
        for name in ("count", "updates", "sum", "min", "max"):
            if name in fields:
                self.assertClose(fields[name], expected[name], scale, "%s %s" % (what, name))
        if fam == COUNTER:
            return
        if exact:
            self.assertEqual(fields["last"], expected["last"], what + " last")
        if fam == GAUGE:
            return
        self.assertClose(fields["sumsq"], expected["sumsq"], expected["sumsq_scale"], what + " sumsq")
        if not exact:
            return
        for name, q in zip(QUANTILE_FIELDS, QUANTILES):
            estimate = fields[name]
            candidates = quantile_candidates(expected["weighted"], q)
            self.assertTrue(
                any(abs(estimate - c) <= ACCURACY * s * (1 + 1e-9) for c, s in candidates),
                "%s %s = %r, exact %r" % (what, name, estimate, candidates))

    def assertTiers(self, feed, exact=True, first=None, last=None):
        """
        Every tier of every fed series holds exactly the direct aggregation
        of the raw values, bucket by bucket.
        """
        store = feed.store
        for key, raw in feed.raw.items():
            series = store.series[key]
            fam = series.family
            for i, step in enumerate(STEPS):
                lo = int(min(p[0] for p in raw) // step) if first is None else int(first // step)
                hi = int(max(p[0] for p in raw) // step) if last is None else int(last // step)
                rows = bucket_rows(store, series, i, lo, hi)
                expected = direct_rows(fam, [p for p in raw if lo <= p[0] // step <= hi], step)
                self.assertEqual(sorted(rows), sorted(expected), "%s tier %ds buckets" % (key, step))
                for number, row in rows.items():
                    self.assertRow(fam, row, expected[number],
                                   "%s %ds bucket %d" % (key, step, number * step), exact)

    def assertReads(self, feed):
        """
        What C{/api/series} reads (L{series_points}, every public field)
        agrees with the direct aggregation, bucket by bucket, and reads a
        bucket without data as None for every type.
        """
        store = feed.store
        now = feed.clock.seconds()
        for key, raw in feed.raw.items():
            series = store.series[key]
            fam = series.family
            fields = PUBLIC_FIELDS[fam]
            for i, step in enumerate(STEPS):
                born = int(min(p[0] for p in raw) // step)
                first, last = born - 2, int(max(p[0] for p in raw) // step) + 2
                got = series_points(store, series, fields, first * step, last * step, i, now)
                # Up to now, or to the latest point when it is in the future.
                newest = max(p[0] for p in raw)
                visible = range(first, int(min(last * step, max(now, newest)) // step) + 1)
                expected = direct_rows(fam, raw, step)
                for name in fields:
                    self.assertEqual([t for t, _ in got[name]], [n * step for n in visible])
                for k, n in enumerate(visible):
                    e = expected.get(n)
                    what = "%s %ds bucket %d" % (key, step, n * step)
                    values = {name: got[name][k][1] for name in fields}
                    if e is None:
                        self.assertEqual(set(values.values()), {None}, what)
                        continue
                    scale = e["scale"]
                    if fam == COUNTER:
                        self.assertClose(values["count"], e["count"], scale, what)
                        self.assertClose(values["rate"], e["count"] / step, scale, what)
                        continue
                    if fam == SET:
                        self.assertEqual(values["count"], e["count"], what)
                        continue
                    count = e["updates"] if fam == GAUGE else e["count"]
                    self.assertClose(values["updates" if fam == GAUGE else "count"], count,
                                     scale, what)
                    self.assertClose(values["mean"], e["sum"] / count, scale / count, what)
                    self.assertEqual((values["min"], values["max"], values["last"]),
                                     (e["min"], e["max"], e["last"]), what)
                    if fam == GAUGE:
                        continue
                    self.assertClose(values["sum"], e["sum"], scale, what)
                    mean = e["sum"] / count
                    std = math.sqrt(max(0.0, e["sumsq"] / count - mean * mean))
                    slack = math.sqrt(1e-9 * e["sumsq"] / count) + 1e-9
                    self.assertTrue(abs(values["std"] - std) <= slack,
                                    "%s std %r != %r" % (what, values["std"], std))
                    for name, q in zip(("median", "p90", "p95", "p99"), QUANTILES):
                        candidates = quantile_candidates(e["weighted"], q)
                        self.assertTrue(any(abs(values[name] - c) <= ACCURACY * s * (1 + 1e-9)
                                            for c, s in candidates),
                                        "%s %s = %r, exact %r" % (what, name, values[name],
                                                                  candidates))

    def assertAllClosed(self, feed):
        store = feed.store
        for series in store.series.values():
            self.assertEqual([len(o) for o in series.open], [0, 0, 0], series.key)
        self.assertEqual([len(index) for index in store.open_index], [0, 0, 0])


class RollupEqualsDirectTests(RollupTestCase):

    @settings(max_examples=25, deadline=None)
    @given(streams(min_delay=-30, max_delay=GRACE - 0.001),
           st.sampled_from([1, 3, 10]))
    def test_rollup_equals_direct_aggregation(self, stream, tick_every):
        """5 s, 1 min and 1 h rows equal a direct aggregation of the raw values, percentiles within 1 %."""
        span, events = stream
        feed = Feed(self, tick_every=tick_every)
        for arrival, item, values in events:
            feed.advance_to(arrival)
            feed.submit(item, values)
        # A read sees every accepted point, rolled up or not yet.
        self.assertTiers(feed)
        self.assertReads(feed)
        feed.advance_to(START + span + 3600 + 60 + 2 * GRACE)
        self.assertAllClosed(feed)
        self.assertTiers(feed)
        self.assertReads(feed)

    @settings(max_examples=25, deadline=None)
    @given(streams(min_delay=0, max_delay=5000), st.sampled_from([1, 7]))
    def test_late_points_counted_once(self, stream, tick_every):
        """Points arriving after their buckets closed land in their own buckets of every tier, counted once."""
        span, events = stream
        feed = Feed(self, tick_every=tick_every)
        for arrival, item, values in events:
            feed.advance_to(arrival)
            feed.submit(item, values)
        self.assertTiers(feed, exact=False)
        feed.advance_to(max(e[0] for e in events) + 3600 + 60 + 2 * GRACE)
        self.assertAllClosed(feed)
        self.assertTiers(feed, exact=False)

    def test_rollup_by_hand(self):
        """Twelve 5 s timer buckets make one 1 min bucket; sixty of those one 1 h bucket."""
        feed = Feed(self, tick_every=5)
        hour = T0 + 3600
        for k in range(720):
            ts = hour + 5 * k
            feed.advance_to(ts)
            feed.submit(Sample("lat", (), TIMER, float(k % 100 + 1), ts))
            feed.submit(Sample("hits", (), COUNTER, 2.0, ts, 0.5))
        feed.advance_to(hour + 7200 + 60)
        series = feed.store.series["lat"]
        minutes = bucket_rows(feed.store, series, 1, 0, 2 ** 32)
        self.assertEqual(len(minutes), 60)
        first = minutes[int(hour // 60)]
        self.assertEqual(first[:2], (12.0, float(sum(range(1, 13)))))
        hours = bucket_rows(feed.store, series, 2, 0, 2 ** 32)
        self.assertEqual(list(hours), [int(hour // 3600)])
        count, total, _, low, high, last = hours[int(hour // 3600)][:6]
        self.assertEqual((count, total, low, high, last), (720.0, 7 * 5050.0 + 210, 1.0, 100.0, 20.0))
        hits = feed.store.series["hits"]
        self.assertEqual(bucket_rows(feed.store, hits, 2, 0, 2 ** 32), {int(hour // 3600): (2880.0,)})
        self.assertTiers(feed)


class LatePointTests(RollupTestCase):

    def test_late_point_in_closed_5s_bucket(self):
        """A point for a closed 5 s bucket joins that bucket's row, and once its minute and hour."""
        feed = Feed(self)
        ts = START + 2.5
        feed.advance_to(ts)
        feed.submit(Sample("late", (), TIMER, 10.0, ts))
        feed.advance_to(ts + 30)
        series = feed.store.series["late"]
        number = int(ts // 5)
        self.assertEqual(series.open[0], {})
        self.assertEqual(len(series.stored[0]), 1)
        feed.submit(Sample("late", (), TIMER, 30.0, ts + 1))
        # Readable at once; the next tick merges it into the closed row.
        self.assertEqual(bucket_rows(feed.store, series, 0, number, number)[number][:5],
                         (2.0, 40.0, 1000.0, 10.0, 30.0))
        feed.store.tick(feed.clock.seconds())
        # Still one closed 5 s bucket, now of two values; nothing left open in tier 0.
        self.assertEqual(series.open[0], {})
        self.assertEqual(list(series.stored[0].index), [number])
        self.assertEqual(series.stored[0].row(0)[:5], (2.0, 40.0, 1000.0, 10.0, 30.0))
        feed.advance_to(START + 3600 + 60)
        for i, step in enumerate(STEPS):
            rows = bucket_rows(feed.store, series, i, 0, 2 ** 32)
            self.assertEqual(list(rows), [int(ts // step)], "tier %d" % i)
            self.assertEqual(rows[int(ts // step)][:5], (2.0, 40.0, 1000.0, 10.0, 30.0))
        self.assertTiers(feed, exact=False)

    def test_late_point_after_its_minute_closed(self):
        """A point whose 5 s and 1 min buckets closed joins both rows and the still open hour."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("c", (), COUNTER, 1.0, START))
        feed.advance_to(START + 300)
        feed.submit(Sample("c", (), COUNTER, 2.0, START + 1))
        series = feed.store.series["c"]
        feed.store.tick(feed.clock.seconds())
        self.assertEqual(series.stored[0].row(0), (3.0,))
        self.assertEqual(series.stored[1].row(0), (3.0,))
        self.assertIsNone(series.stored[2])
        self.assertEqual(series.open[2], {START - START % 3600: series.open[2][START - START % 3600]})
        feed.advance_to(START + 3 * 3600)
        self.assertEqual(bucket_rows(feed.store, series, 2, 0, 2 ** 32),
                         {int(START // 3600): (3.0,)})

    def test_historical_points(self):
        """Points days old skip the 5 s tier and land in their own 1 min and 1 h buckets once."""
        now = T0 + 10 * DAY
        feed = Feed(self, now=now)
        two_days = now - 2 * DAY + 125.0
        nine_days = now - 9 * DAY + 7.0
        for ts, value in ((two_days, 4.0), (two_days + 10, 6.0), (nine_days, 5.0)):
            feed.submit(Sample("old", (), SAMPLE, value, ts))
        series = feed.store.series["old"]
        feed.store.tick(feed.clock.seconds())
        self.assertEqual(series.open, [{}, {}, {}])
        self.assertIsNone(series.stored[0])
        minutes = bucket_rows(feed.store, series, 1, 0, 2 ** 32)
        # Nine days is past the 1 min tier's eight: only the hour keeps it.
        self.assertEqual(list(minutes), [int(two_days // 60)])
        self.assertEqual(minutes[int(two_days // 60)][:5], (2.0, 10.0, 52.0, 4.0, 6.0))
        hours = bucket_rows(feed.store, series, 2, 0, 2 ** 32)
        self.assertEqual(sorted(hours), [int(nine_days // 3600), int(two_days // 3600)])
        self.assertEqual(hours[int(two_days // 3600)][:5], (2.0, 10.0, 52.0, 4.0, 6.0))
        self.assertEqual(hours[int(nine_days // 3600)][:5], (1.0, 5.0, 25.0, 5.0, 5.0))
        # Ticking on does not roll the historical rows up a second time.
        feed.advance_to(now + 3 * 3600)
        self.assertEqual(bucket_rows(feed.store, series, 2, 0, 2 ** 32), hours)
        self.assertEqual(bucket_rows(feed.store, series, 1, 0, 2 ** 32), minutes)

    def test_historical_point_into_open_hour(self):
        """A point older than the 5 s tier but inside the open hour is counted by the hour once."""
        feed = Feed(self, "--retentions", "5s:1m,1m:1h,1h:30d", now=T0 + 1800)
        feed.submit(Sample("h", (), COUNTER, 7.0, T0 + 100))
        series = feed.store.series["h"]
        feed.store.tick(feed.clock.seconds())
        self.assertIsNone(series.stored[0])
        self.assertEqual(series.stored[1].row(0), (7.0,))
        feed.advance_to(T0 + 3600 + 30)
        self.assertEqual(bucket_rows(feed.store, series, 2, 0, 2 ** 32), {int(T0 // 3600): (7.0,)})
        self.assertEqual(bucket_rows(feed.store, series, 1, 0, 2 ** 32), {int((T0 + 100) // 60): (7.0,)})

    def test_late_gauge_keeps_running_value(self):
        """A late gauge delta applies to the current value and joins its own old bucket."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("g", (), GAUGE, 10.0, START))
        feed.advance_to(START + 60)
        feed.submit(Sample("g", (), GAUGE, 5.0, START + 1, delta=True))
        series = feed.store.series["g"]
        feed.store.tick(feed.clock.seconds())
        self.assertEqual(series.gauge, 15.0)
        row = dict(zip(STORED_FIELDS[GAUGE], series.stored[0].row(0)))
        self.assertEqual((row["updates"], row["sum"], row["min"], row["max"]), (2.0, 25.0, 10.0, 15.0))


class RefusedPointTests(SynchronousTestCase):

    def setUp(self):
        self.feed = Feed(self, now=T0 + 40 * DAY)
        self.core = self.feed.core
        self.now = T0 + 40 * DAY

    def test_older_than_every_tier(self):
        """A point older than the longest retention is refused saying so."""
        errors = self.core.submit([Sample("x", (), COUNTER, 1.0, self.now - 31 * DAY)], "test")
        self.assertEqual(len(errors), 1)
        self.assertIn("older than the longest retention", errors[0][1])
        self.assertEqual(self.feed.store.series, {})
        self.assertEqual(self.core.counters["simplestats.test.bad"], 1)

    def test_too_far_in_the_future(self):
        """A point beyond the future limit is refused naming the limit; one inside it is kept."""
        errors = self.core.submit([Sample("x", (), COUNTER, 1.0, self.now + 601),
                                   Sample("x", (), COUNTER, 1.0, self.now + 599)], "test")
        self.assertEqual([p for p, _ in errors], [0])
        self.assertIn("in the future (limit 600 s)", errors[0][1])
        self.feed.store.settle()
        self.assertEqual(self.feed.store.series["x"].last_seen, self.now + 599)

    def test_not_a_time(self):
        """NaN, infinite and negative timestamps are refused."""
        for ts in (math.nan, math.inf, -1.0):
            errors = self.core.submit([Sample("x", (), COUNTER, 1.0, ts)], "test")
            self.assertEqual(len(errors), 1, ts)
            self.assertIn("not a time after 1970", errors[0][1])

    def test_before_1970_with_a_tier_kept_forever(self):
        """With the last tier kept forever a timestamp just before 1970 is still refused, and the tick runs."""
        core = make_core(self)
        self.assertIsNone(core.store.tiers[-1].retention)
        errors = core.submit([Sample("x", (), COUNTER, 1.0, -0.5),
                              Sample("x", (), COUNTER, 1.0, 0.0)], "test")
        self.assertEqual([p for p, _ in errors], [0])
        self.assertIn("not a time after 1970", errors[0][1])
        core.clock.advance(7200)
        core.store.tick(core.clock.seconds())
        series = core.store.series["x"]
        self.assertEqual(bucket_rows(core.store, series, 2, 0, 2 ** 32), {0: (1.0,)})

    def test_type_conflict(self):
        """A series keeps its type: a point of another type is refused naming both."""
        self.assertEqual(self.core.submit([Sample("x", (), COUNTER, 1.0)], "test"), [])
        errors = self.core.submit([Sample("x", (), GAUGE, 1.0)], "test")
        self.assertEqual(errors, [(0, "series 'x' is a counter; a gauge value cannot join it")])
        self.assertEqual(self.feed.store.series["x"].type, COUNTER)

    def test_type_conflict_in_one_batch(self):
        """Within one batch a new series takes the first point's type."""
        errors = self.core.submit([Sample("y", (), TIMER, 1.0), Sample("y", (), SET, "a"),
                                   Sample("y", (), TIMER, 2.0)], "test")
        self.assertEqual(errors, [(1, "series 'y' is a timer; a set value cannot join it")])
        self.feed.store.settle()
        self.assertEqual(self.feed.store.series["y"].open[0].popitem()[1].count, 2.0)

    def test_atomic_batch(self):
        """An atomic batch with one bad point keeps none of them."""
        errors = self.core.submit([Sample("z", (), COUNTER, 1.0),
                                   Sample("z", (), COUNTER, 1.0, self.now + 3600)], "test",
                                  atomic=True)
        self.assertEqual([p for p, _ in errors], [1])
        self.assertNotIn("z", self.feed.store.series)
        self.assertEqual(self.core.journal.pending, [])


class GapTests(SynchronousTestCase):

    def points(self, feed, name, fields, i, start, until):
        series = feed.store.series[name]
        return series_points(feed.store, series, fields, start, until, i, feed.clock.seconds())

    def test_gauge_gaps_are_none(self):
        """A gauge reads None in buckets it received nothing in, before and after they close."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("g", (), GAUGE, 3.0, START))
        feed.advance_to(START + 20)
        feed.submit(Sample("g", (), GAUGE, 2.0, START + 20, delta=True))
        feed.advance_to(START + 42)
        got = self.points(feed, "g", ("last", "min", "updates"), 0, START - 10, START + 40)
        self.assertEqual([v for _, v in got["last"]],
                         [None, None, 3.0, None, None, None, 5.0, None, None, None, None])
        self.assertEqual([v for _, v in got["updates"]],
                         [None, None, 1.0, None, None, None, 1.0, None, None, None, None])
        self.assertEqual([t for t, _ in got["last"]], [START - 10 + 5 * k for k in range(11)])
        # A read starting after the last update has no value to show.
        later = self.points(feed, "g", ("last",), 0, START + 30, START + 40)
        self.assertEqual([v for _, v in later["last"]], [None, None, None])
        feed.advance_to(START + 3600)
        minutes = self.points(feed, "g", ("last", "max"), 1, START - 60, START + 300)
        self.assertEqual([v for _, v in minutes["last"]], [None, 5.0, None, None, None, None, None])
        self.assertEqual([v for _, v in minutes["max"]], [None, 5.0, None, None, None, None, None])

    def test_counter_gaps_are_none(self):
        """A counter reads None, not 0, in buckets that received nothing (an outage is no zero)."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("c", (), COUNTER, 4.0, START))
        feed.advance_to(START + 16)
        feed.submit(Sample("c", (), COUNTER, 1.0, START + 16))
        feed.advance_to(START + 30)
        got = self.points(feed, "c", ("count", "rate"), 0, START - 10, START + 25)
        self.assertEqual([v for _, v in got["count"]], [None, None, 4.0, None, None, 1.0, None, None])
        self.assertEqual([v for _, v in got["rate"]], [None, None, 0.8, None, None, 0.2, None, None])

    def test_timer_has_no_value_in_gaps(self):
        """A timer bucket without values reads None, not zero."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("t", (), TIMER, 4.0, START))
        feed.advance_to(START + 11)
        feed.submit(Sample("t", (), TIMER, 8.0, START + 11))
        got = self.points(feed, "t", ("mean", "count"), 0, START, START + 10)
        self.assertEqual([v for _, v in got["mean"]], [4.0, None, 8.0])
        self.assertEqual([v for _, v in got["count"]], [1.0, None, 1.0])

    def test_read_stops_at_now(self):
        """A read never reports buckets after now."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("c", (), COUNTER, 1.0, START))
        got = self.points(feed, "c", ("count",), 0, START, START + 3600)
        self.assertEqual([list(p) for p in got["count"]], [[START, 1.0]])


class RetentionTests(SynchronousTestCase):

    def test_old_buckets_trimmed(self):
        """Closing a bucket drops the series' buckets older than the tier keeps; coarser tiers keep them."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("c", (), COUNTER, 1.0, START))
        feed.advance_to(START + 60)
        series = feed.store.series["c"]
        self.assertEqual(list(series.stored[0].index), [int(START // 5)])
        later = START + 6 * 3600 + 100
        feed.advance_to(later)
        feed.submit(Sample("c", (), COUNTER, 2.0, later))
        feed.advance_to(later + 20)
        self.assertEqual(list(series.stored[0].index), [int(later // 5)])
        self.assertEqual(bucket_rows(feed.store, series, 1, int(START // 60), int(START // 60)),
                         {int(START // 60): (1.0,)})
        self.assertEqual(bucket_rows(feed.store, series, 2, 0, 2 ** 32)[int(START // 3600)], (1.0,))

    def test_minute_tier_trimmed_after_eight_days(self):
        """The 1 min tier forgets buckets older than eight days when a new one closes."""
        feed = Feed(self, tick_every=60)
        feed.advance_to(START)
        feed.submit(Sample("c", (), COUNTER, 1.0, START))
        later = START + 8 * DAY + 120
        feed.advance_to(later)
        feed.submit(Sample("c", (), COUNTER, 1.0, later))
        feed.advance_to(later + 120)
        series = feed.store.series["c"]
        self.assertEqual(list(series.stored[1].index), [int(later // 60)])
        hours = bucket_rows(feed.store, series, 2, 0, 2 ** 32)
        self.assertEqual(sorted(hours), [int(START // 3600), int(later // 3600)])


class MovingAverageTests(SynchronousTestCase):

    def steady(self, metric_type, value, seconds, name="m"):
        feed = Feed(self)
        feed.advance_to(START)
        for k in range(seconds):
            feed.advance_to(START + k)
            feed.submit(Sample(name, (), metric_type, value(k)))
        return feed

    def test_counter_rate(self):
        """A counter's moving average is its per-second rate over the last minute."""
        feed = self.steady(COUNTER, lambda k: 2.0, 300)
        series = feed.store.series["m"]
        for extra in (0.0, 0.5, 1.0, 2.0, 3.0, 4.0):
            feed.advance_to(START + 299 + extra)
            now = feed.clock.seconds()
            average = feed.store.moving_average(series, now)
            self.assertTrue(abs(average - 2.0) <= 2.0 * 0.1, "at +%s: %r" % (extra, average))

    def test_counter_rate_exact_at_bucket_end(self):
        """Right after a 5 s boundary a steady counter reads exactly its rate."""
        feed = self.steady(COUNTER, lambda k: 1.0, 300)
        feed.advance_to(START + 300)
        self.assertEqual(feed.store.moving_average(feed.store.series["m"], feed.clock.seconds()), 1.0)

    def test_late_points_leave_the_window_alone(self):
        """Late points for old closed buckets do not push the last minute's buckets out of the average."""
        feed = self.steady(COUNTER, lambda k: 1.0, 300)
        feed.advance_to(START + 300)
        series = feed.store.series["m"]
        now = feed.clock.seconds()
        self.assertEqual(feed.store.moving_average(series, now), 1.0)
        for k in range(3):
            feed.submit(Sample("m", (), COUNTER, 0.0, now - 200 - 5 * k))
        feed.store.tick(now)
        self.assertEqual(feed.store.moving_average(series, now), 1.0)

    def test_timer_mean_of_last_minute(self):
        """A timer's moving average is the mean of its values over about the last minute, not older ones."""
        feed = self.steady(TIMER, lambda k: 1000.0 if k < 200 else 10.0, 300)
        feed.advance_to(START + 300)
        self.assertEqual(feed.store.moving_average(feed.store.series["m"], feed.clock.seconds()), 10.0)

    def test_gauge_without_recent_updates(self):
        """A gauge with no update in the last minute reads its current value."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("g", (), GAUGE, 7.0))
        feed.advance_to(START + 600)
        self.assertEqual(feed.store.moving_average(feed.store.series["g"], feed.clock.seconds()), 7.0)

    def test_set_unique_per_bucket(self):
        """A set's moving average is the mean unique count per 5 s bucket."""
        feed = self.steady(SET, lambda k: "u%d" % (k % 2), 120)
        feed.advance_to(START + 120)
        self.assertEqual(feed.store.moving_average(feed.store.series["m"], feed.clock.seconds()), 2.0)

    def test_quiet_series(self):
        """A timer or counter silent for longer than the window has no average, or a zero rate."""
        feed = Feed(self)
        feed.advance_to(START)
        feed.submit(Sample("t", (), TIMER, 5.0))
        feed.submit(Sample("c", (), COUNTER, 5.0))
        feed.advance_to(START + 2 * MOVING_AVERAGE_WINDOW)
        now = feed.clock.seconds()
        self.assertIsNone(feed.store.moving_average(feed.store.series["t"], now))
        self.assertEqual(feed.store.moving_average(feed.store.series["c"], now), 0.0)
