"""
Merged sums do not depend on the order or grouping of the merges: a read
that merges open buckets, the tick that rolls them up and an import of the
merged bucket give the same bits (server.core.aggregate.grow).
"""

import itertools
import json
import math
import random

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.core.aggregate import (CounterAgg, DistAgg, GaugeAgg, add_exact, exact_form,
                                   exact_total, grow, restore_exact)
from server.core.store import Series
from server.durability.snapshot import decode_series, encode_series

# No -0.0: min and max keep the first of equal values (docs/API.md).
finite = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False).map(lambda x: x + 0.0)
# The histogram of the round trip's falsifying example: three 5-second
# buckets of one minute, merged in opening order by a read and in time order
# by the tick (68719476735.899994 and 68719476735.9 before the fix).
FALSIFYING = [185654486717.0, -116935009983.0, 1.9]


def dist(values, ts=0.0):
    agg = DistAgg(0.01)
    agg.fold(values, 1.0, ts)
    return agg


def merged(aggs, make):
    total = make()
    for agg in aggs:
        total.merge(agg)
    return total


class GrowTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(finite, max_size=30), st.randoms(use_true_random=False))
    def test_exact_in_any_order(self, values, rnd):
        """An expansion grown from values in any order rounds to math.fsum of them."""
        parts = []
        shuffled = list(values)
        rnd.shuffle(shuffled)
        for x in shuffled:
            grow(parts, x)
        self.assertEqual(repr(exact_total(parts, 0.0)), repr(math.fsum(values + [0.0])))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(finite, max_size=30), st.integers(0, 30), st.randoms(use_true_random=False))
    def test_cells_exact_in_any_grouping(self, values, cut, rnd):
        """Cells (None, a float, a list) added in two groups, then one into the other: math.fsum of all."""
        rnd.shuffle(values)
        one = two = None
        for x in values[:cut]:
            one = add_exact(one, x)
        for x in values[cut:]:
            two = add_exact(two, x)
        self.assertEqual(repr(exact_total(add_exact(one, 0.0, two), 0.0)),
                         repr(math.fsum(values + [0.0])))

    def test_infinities_and_nan_add_plainly(self):
        """An infinity, a NaN or an overflow is kept as one value, added to as IEEE addition does."""
        parts = [1.0]
        grow(parts, math.inf)
        grow(parts, 5.0)
        self.assertEqual(parts, [math.inf])
        self.assertEqual(exact_total(parts, 3.0), math.inf)
        self.assertTrue(math.isnan(exact_total(parts, -math.inf)))
        parts = [1e308]
        grow(parts, 1e308)
        self.assertEqual(parts, [math.inf])
        # Parts within the range whose exact sum is not: as plain addition.
        self.assertEqual(exact_total([1e308], 1e308), math.inf)

    def test_zero_is_nothing(self):
        """Adding zeros keeps an empty expansion, whose total is the running value itself."""
        parts = []
        grow(parts, 0.0)
        grow(parts, -0.0)
        self.assertEqual(parts, [])
        self.assertEqual(repr(exact_total(parts, -0.0)), "-0.0")


class OrderIndependenceTests(SynchronousTestCase):
    def test_falsifying_buckets_in_every_order(self):
        """The three buckets of the round trip's example give 68719476735.9 in every merge order."""
        for order in itertools.permutations(range(3)):
            row = merged([dist([FALSIFYING[i]], i) for i in order], lambda: DistAgg(0.01)).row()
            self.assertEqual(repr(row.sum), "68719476735.9")
            self.assertEqual(row.sumsq, math.fsum(v * v for v in FALSIFYING))

    def test_parent_reused_as_first_child(self):
        """A child that became its parent (the tick's roll-up) gives what a fresh merge gives."""
        a, b, c = (dist([v], i) for i, v in enumerate(FALSIFYING))
        a.merge(b)
        a.merge(c)
        fresh = merged([dist([FALSIFYING[i]], i) for i in (0, 2, 1)], lambda: DistAgg(0.01))
        self.assertEqual(a.row(), fresh.row())

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.lists(finite, min_size=1, max_size=4), min_size=1, max_size=8),
           st.randoms(use_true_random=False))
    @example([[v] for v in FALSIFYING], random.Random(0))
    def test_any_order_and_grouping(self, buckets, rnd):
        """Distributions, counters and gauges merged in any order and grouping: the same row, bit for bit."""
        for make, build in ((lambda: DistAgg(0.01), dist),
                            (CounterAgg, self.counter),
                            (GaugeAgg, self.gauge)):
            rows = set()
            for _ in range(4):
                # Each bucket its own time, so that which is last is clear.
                leaves = [build(values, float(ts)) for ts, values in enumerate(buckets)]
                rnd.shuffle(leaves)
                # Cut into groups merged first (the minutes of an hour).
                cut = sorted(rnd.sample(range(1, len(leaves)), rnd.randint(0, len(leaves) - 1))) \
                    if len(leaves) > 1 else []
                groups = [leaves[i:j] for i, j in zip([0] + cut, cut + [len(leaves)])]
                # The first leaf of a group may be the group (as the tick reuses it).
                parents = [group[0] if rnd.random() < 0.5 else merged(group[:1], make)
                           for group in groups]
                for parent, group in zip(parents, groups):
                    for leaf in group[1:]:
                        parent.merge(leaf)
                rnd.shuffle(parents)
                rows.add(repr(merged(parents, make).row()))
            self.assertEqual(len(rows), 1, rows)

    @staticmethod
    def counter(values, ts):
        agg = CounterAgg()
        agg.fold(values, 1.0, ts)
        return agg

    @staticmethod
    def gauge(values, ts):
        agg = GaugeAgg()
        agg.fold(values, 1.0, ts, 0.0)
        return agg

    def test_partials_merge_exactly(self):
        """A partial merged into a bucket between its points or before them: the same sum, exact but for the points' own left fold."""
        one, two = DistAgg(0.01), DistAgg(0.01)
        fields = {"count": 2.0, "sum": FALSIFYING[1], "min": -1.0, "max": 1.0}
        one.fold([FALSIFYING[0]], 1.0, 1.0)
        one.merge_partial(fields, 1.0)
        one.fold([FALSIFYING[2]], 1.0, 2.0)
        two.merge_partial(fields, 1.0)
        two.fold([FALSIFYING[0], FALSIFYING[2]], 1.0, 2.0)
        self.assertEqual(one.row().sum, two.row().sum)
        self.assertEqual(one.row().sum, math.fsum([FALSIFYING[0] + FALSIFYING[2], FALSIFYING[1]]))

    def test_merged_partials_count_as_data(self):
        """A bucket holding only merged partials is not empty: a pinned partial's percentiles go at the next merge."""
        agg = DistAgg(0.01)
        agg.merge(dist([1.0, 2.0]))
        other = dist([3.0])
        other.pinned = [3.0] * 4
        agg.merge(other)
        self.assertIsNone(agg.pinned)


class SnapshotTests(SynchronousTestCase):
    def series(self):
        series = Series("h", "h", 3)
        parent = dist([FALSIFYING[0]])
        parent.merge(dist([FALSIFYING[1]]))
        parent.merge(dist([FALSIFYING[2]]))
        series.open[1][60] = parent
        series.open[0][5] = dist([1.0])
        return series

    def test_exact_state_kept(self):
        """An open bucket's merged sums come back exactly: the next merge gives what it gives without a restart."""
        series = self.series()
        back = decode_series(json.loads(encode_series(series)), 3, 0.01)
        parent, again = series.open[1][60], back.open[1][60]
        self.assertEqual(exact_form(again), exact_form(parent))
        self.assertIsNone(exact_form(back.open[0][5]))
        late = dist([-68719476735.0])
        parent.merge(late)
        again.merge(dist([-68719476735.0]))
        self.assertEqual(repr(again.row()), repr(parent.row()))

    def test_older_form_reads_as_totals(self):
        """A snapshot line without exact sums (an older server's) gives the same rows."""
        series = self.series()
        obj = json.loads(encode_series(series))
        self.assertEqual(obj["x"][0], 1)
        del obj["x"]
        back = decode_series(obj, 3, 0.01)
        self.assertEqual(back.open[1][60].row(), series.open[1][60].row())

    def test_unknown_version_refused(self):
        """Exact sums of a version this server does not know, or for no open bucket: a clear error."""
        obj = json.loads(encode_series(self.series()))
        wrong = dict(obj, x=[2, obj["x"][1]])
        with self.assertRaises(ValueError) as caught:
            decode_series(wrong, 3, 0.01)
        self.assertIn("exact sums of version 2", str(caught.exception))
        nowhere = dict(obj, x=[1, [[2, 60, obj["x"][1][0][2]]]])
        with self.assertRaises(ValueError) as caught:
            decode_series(nowhere, 3, 0.01)
        self.assertIn("not open", str(caught.exception))

    def test_restore_checks_the_shape(self):
        """Exact sums of the wrong number of fields are refused."""
        with self.assertRaises(ValueError):
            restore_exact(CounterAgg(), [[1.0, 2.0], [[], []]])
