"""
Tests for L{server.core.sketch}: the relative-error guarantee, exact merging and
the JSON form clients and snapshots use.
"""

import json
import math
import sys
from fractions import Fraction

from ddsketch.mapping import LogarithmicMapping
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.core.aggregate import QUANTILES, DistAgg
from server.core.sketch import DEFAULT_ACCURACY, MEDIAN, Sketch, js_round, rank

QS = (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)

# Magnitudes the sketch distinguishes from zero and can represent.
magnitudes = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False,
                       allow_infinity=False, allow_subnormal=False)
positives = st.lists(magnitudes, min_size=1, max_size=200)
signed = st.lists(
    st.one_of(magnitudes, magnitudes.map(lambda x: -x), st.just(0.0), st.just(-0.0)),
    min_size=1, max_size=200)


def exact_quantile(values, q):
    """
    statsd's C{upper_N} for C{q = N / 100} (C{lib/process_metrics.js}): the
    sorted values' C{[Math.round(q * n) - 1]}, the least value where that
    is C{[-1]}.  C{q * n} is the float product, as in JavaScript; its
    rounding (halves up) is done in exact fractions.
    """
    ordered = sorted(values)
    position = math.floor(Fraction(q * len(ordered)) + Fraction(1, 2))
    return ordered[max(position, 1) - 1]


def exact_median(values):
    """
    statsd's median: the middle value, or the mean of the two middle ones.
    """
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def middles(values):
    """
    The two middle values (the same one twice for an odd count).
    """
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]


def sketch_of(values, accuracy=DEFAULT_ACCURACY):
    sketch = Sketch(accuracy)
    for value in values:
        sketch.add(value)
    return sketch


class QuantileAccuracyTests(SynchronousTestCase):

    def assertWithin(self, estimate, exact, accuracy=DEFAULT_ACCURACY):
        # A hair of slack for the rounding of the bin's representative value.
        bound = accuracy * abs(exact) * (1 + 1e-9)
        self.assertTrue(abs(estimate - exact) <= bound,
                        "estimate %r is not within %r of %r" % (estimate, accuracy, exact))

    def assertMedianWithin(self, estimate, values, accuracy=DEFAULT_ACCURACY):
        # The mean of two values each within the accuracy of its exact one.
        low, high = middles(values)
        bound = accuracy * (abs(low) + abs(high)) / 2 * (1 + 1e-9)
        exact = exact_median(values)
        self.assertTrue(abs(estimate - exact) <= bound,
                        "median %r is not within %r of %r" % (estimate, accuracy, exact))

    @settings(max_examples=60, deadline=None)
    @given(positives)
    def test_positive_values(self, values):
        """Every quantile of positive values is within 1 % of the exact value of its statsd rank, the median of statsd's median."""
        sketch = sketch_of(values)
        for q in QS:
            self.assertWithin(sketch.quantile(q), exact_quantile(values, q))
        self.assertMedianWithin(sketch.quantiles((MEDIAN,))[0], values)

    @settings(max_examples=60, deadline=None)
    @given(signed)
    def test_negative_and_zero_values(self, values):
        """Negative values and zeros keep the same 1 % bound; zero reads back as exactly 0."""
        sketch = sketch_of(values)
        for q in QS:
            self.assertWithin(sketch.quantile(q), exact_quantile(values, q))
        self.assertMedianWithin(sketch.quantiles((MEDIAN,))[0], values)

    @settings(max_examples=60, deadline=None)
    @given(signed)
    def test_exact_ends(self, values):
        """Given the exact least and greatest values, the first and last ranks answer them exactly and no answer lies beyond them."""
        sketch = sketch_of(values)
        lo, hi = min(values), max(values)
        answers = sketch.quantiles(QS + (MEDIAN,), lo, hi)
        self.assertEqual((answers[0], answers[QS.index(1.0)]), (lo, hi))
        self.assertTrue(all(lo <= a <= hi for a in answers), answers)
        for q, answer in zip(QS, answers):
            self.assertWithin(answer, exact_quantile(values, q))
        self.assertMedianWithin(answers[-1], values)
        if len(values) <= 2:
            # Every rank is the first or the last: all exact.
            self.assertEqual(answers[-1], exact_median(values))
            self.assertEqual(answers[:-1], [exact_quantile(values, q) for q in QS])

    @settings(max_examples=40, deadline=None)
    @given(signed)
    def test_quantiles_matches_quantile(self, values):
        """quantiles() in one pass answers exactly what quantile() answers one by one."""
        sketch = sketch_of(values)
        self.assertEqual(sketch.quantiles(QS), [sketch.quantile(q) for q in QS])

    @settings(max_examples=40, deadline=None)
    @given(positives, st.sampled_from([1.0, 3.0, 10.0]))
    def test_positive_path_matches_signed_path(self, values, weight):
        """Positive values answer the same with or without a zero among them (the fast and the general path)."""
        sketch = Sketch()
        for value in values:
            sketch.add(value, weight)
        widened = sketch.copy()
        widened.add(0.0, 0.0)
        self.assertEqual(widened.quantiles(QS + (MEDIAN,)), sketch.quantiles(QS + (MEDIAN,)))

    @settings(max_examples=30, deadline=None)
    @given(positives, st.sampled_from([0.05, 0.02, 0.001]))
    def test_other_accuracies(self, values, accuracy):
        """The bound follows the sketch's own relative accuracy."""
        sketch = sketch_of(values, accuracy)
        for q in QS:
            self.assertWithin(sketch.quantile(q), exact_quantile(values, q), accuracy)

    def test_weights_count_as_repeated_values(self):
        """A value added with weight w counts as w copies of it."""
        weighted = Sketch()
        weighted.add(1.0, 3.0)
        weighted.add(100.0, 1.0)
        repeated = sketch_of([1.0, 1.0, 1.0, 100.0])
        self.assertEqual((weighted.pos, weighted.count), (repeated.pos, repeated.count))
        self.assertWithin(weighted.quantile(0.5), 1.0)
        self.assertWithin(weighted.quantile(1.0), 100.0)
        self.assertEqual(weighted.quantiles((MEDIAN, 0.75, 0.88), 1.0, 100.0), [1.0, 1.0, 100.0])

    def test_bins_of_no_weight_hold_no_rank(self):
        """A bin of weight 0 (a client may send one) is never an answer."""
        sketch = Sketch.from_json({"bins": {"-5": 0, "0": 2, "100": 2, "400": 0}})
        mapping = LogarithmicMapping(DEFAULT_ACCURACY)
        one, other = mapping.value(0), mapping.value(100)
        self.assertEqual(sketch.quantiles((0.0, MEDIAN, 0.5, 0.75, 1.0)),
                         [one, (one + other) / 2, one, other, other])

    def test_empty_sketch(self):
        """An empty sketch answers NaN for every quantile."""
        sketch = Sketch()
        self.assertTrue(math.isnan(sketch.quantile(0.5)))
        self.assertTrue(all(math.isnan(v) for v in sketch.quantiles(QS)))

    def test_largest_floats(self):
        """The largest finite floats count in the last bin and read back as a finite value."""
        huge = sys.float_info.max
        sketch = sketch_of([huge, -huge, 1.0])
        low, high = sketch.quantile(0.0), sketch.quantile(1.0)
        self.assertTrue(math.isfinite(low) and math.isfinite(high))
        # Clamped to max_possible = max / gamma first, then binned: up to three times
        # the stated error, for these values only.
        self.assertTrue(abs(high - huge) <= 3 * DEFAULT_ACCURACY * huge)
        self.assertEqual(low, -high)
        self.assertEqual(sketch.count, 3.0)
        back = Sketch.from_json(json.loads(json.dumps(sketch.to_json())))
        self.assertEqual(back.quantiles(QS), sketch.quantiles(QS))

    def test_rebinned_keeps_the_count(self):
        """Rebinning to another accuracy keeps every weight and stays near the values."""
        values = [0.0, -3.0, 1.0, 2.5, 1000.0, 1e-5]
        fine = sketch_of(values, 0.001)
        coarse = fine.rebinned(DEFAULT_ACCURACY)
        self.assertEqual(coarse.count, fine.count)
        self.assertEqual(coarse.accuracy, DEFAULT_ACCURACY)
        for q in QS:
            exact = exact_quantile(values, q)
            # Two roundings: the fine bin's value, then the coarse bin's.
            self.assertTrue(abs(coarse.quantile(q) - exact) <= 0.0111 * abs(exact))
        self.assertIs(fine.rebinned(0.001), fine)


# statsd's own answers: values -> (median, upper_90, upper_95, upper_99).  The
# first three and the even median are the cases of statsd's
# test/process_metrics_tests.js (timers_single_time, timers_multiple_times,
# ..._single_percentile, timers_multiple_times_even); the others are its
# lib/process_metrics.js by hand (sorted values, [Math.round(N / 100 * n) - 1];
# the median the middle value or the mean of the two middle ones).  Every row
# is what Etsy statsd 0.9.0's process_metrics answers, run by node.
STATSD = [
    ([100], (100, 100, 100, 100)),
    ([100, 200, 300], (200, 300, 300, 300)),
    ([300, 200, 400, 100], (250, 400, 400, 400)),
    # Two values: never both the least (the old rank gave 47 for all four).
    ([153, 47], (100, 153, 153, 153)),
    ([10, 20, 30], (20, 30, 30, 30)),
    # upper_90 of five values is the 5th (Math.round(4.5) = 5), not the 4th.
    ([1, 2, 3, 4, 5], (3, 5, 5, 5)),
    (list(range(1, 11)), (5.5, 9, 10, 10)),
    (list(range(1, 101)), (50.5, 90, 95, 99)),
    ([-7, -3, 0, 0, 2, 11], (0, 2, 11, 11)),
]


class StatsdRuleTests(SynchronousTestCase):

    def test_js_round(self):
        """js_round rounds as JavaScript's Math.round: halves up, even just below a half."""
        for x, expected in ((0.5, 1.0), (1.5, 2.0), (2.5, 3.0), (4.5, 5.0), (-2.5, -2.0),
                            (0.49999999999999994, 0.0), (4.499999999999999, 4.0), (7.0, 7.0),
                            (2.0 ** 60 + 0.0, 2.0 ** 60)):
            self.assertEqual(js_round(x), expected, x)

    def test_rank(self):
        """A rank is statsd's position Math.round(q * count), the first where it rounds to 0."""
        for q, count, expected in ((0.99, 5, 5), (0.9, 5, 5), (0.9, 10, 9), (0.95, 10, 10),
                                   (0.99, 100, 99), (0.9, 100, 90), (0.5, 2, 1), (0.9, 1, 1),
                                   (0.1, 3, 1), (0.0, 10, 1), (1.0, 7, 7), (0.99, 150.0, 149)):
            self.assertEqual(rank(q, count), expected, (q, count))

    def test_statsd_answers_through_a_bucket(self):
        """A bucket of statsd's test values has statsd's median and upper_N: exactly at the least and greatest, within 1 % elsewhere."""
        for values, expected in STATSD:
            agg = DistAgg(DEFAULT_ACCURACY)
            agg.fold([str(v) for v in values], 1.0, 0.0)
            row = agg.row()
            got = [row.p50, row.p90, row.p95, row.p99]
            lo, hi = min(values), max(values)
            for name, answer, exact in zip(("median", "p90", "p95", "p99"), got, expected):
                what = "%s of %r: %r, statsd %r" % (name, values[:12], answer, exact)
                if exact in (lo, hi) or (name == "median" and len(values) <= 2):
                    self.assertEqual(answer, exact, what)
                else:
                    self.assertTrue(abs(answer - exact) <= DEFAULT_ACCURACY * abs(exact) * (1 + 1e-9),
                                    what)
            self.assertEqual(list(row)[6:], agg.sketch.quantiles(QUANTILES, lo, hi))

    def test_statsd_ranks_with_a_bin_per_value(self):
        """Where every value has a bin of its own, each answer is nearest the value of statsd's rank among all the values."""
        for values, expected in STATSD:
            sketch = sketch_of(values, 0.001)
            got = sketch.quantiles(QUANTILES)
            for q, answer, exact in zip(QUANTILES, got, expected):
                others = set(values) | {exact_median(values)}
                nearest = min(others, key=lambda v: abs(answer - v))
                self.assertEqual(nearest, exact, (q, values[:12], answer))

    def test_the_defect_case(self):
        """Five timings 1..5 in one bucket: median 3 (within 1 %), p90 = p95 = p99 = 5, as statsd's upper_N."""
        agg = DistAgg(DEFAULT_ACCURACY)
        agg.fold(["1", "2", "3", "4", "5"], 1.0, 0.0)
        row = agg.row()
        self.assertEqual((row.p90, row.p95, row.p99), (5.0, 5.0, 5.0))
        self.assertTrue(abs(row.p50 - 3.0) <= 0.03, row.p50)

    def test_sampled_values_take_their_weight(self):
        """A value sampled at rate 1/w takes w positions: statsd's timers_sampled_times gives upper_90 = 300 here too."""
        agg = DistAgg(DEFAULT_ACCURACY)
        agg.fold(["100", "200", "300"], 0.06, 0.0)
        row = agg.row()
        self.assertEqual((row.p90, row.p99), (300.0, 300.0))
        self.assertTrue(abs(row.p50 - 200.0) <= 2.0, row.p50)


class MergeTests(SynchronousTestCase):

    @settings(max_examples=60, deadline=None)
    @given(signed, signed)
    def test_merge_equals_one_sketch(self, left, right):
        """Merging two sketches gives the very bins of one sketch of all the values."""
        merged = sketch_of(left)
        merged.merge(sketch_of(right))
        whole = sketch_of(left + right)
        self.assertEqual(merged.pos, whole.pos)
        self.assertEqual(merged.neg, whole.neg)
        self.assertEqual(merged.zero, whole.zero)
        self.assertEqual(merged.count, whole.count)
        self.assertEqual(merged.quantiles(QS), whole.quantiles(QS))

    def test_merge_leaves_the_other_alone(self):
        """Merging reads the other sketch without changing it."""
        one, other = sketch_of([1.0, 2.0]), sketch_of([3.0])
        before = other.to_json()
        one.merge(other)
        self.assertEqual(other.to_json(), before)

    def test_copy_is_independent(self):
        """A copy does not change when the original does."""
        original = sketch_of([1.0, -1.0, 0.0])
        clone = original.copy()
        original.add(5.0)
        original.add(-5.0)
        original.add(0.0)
        self.assertEqual(clone.to_json(), sketch_of([1.0, -1.0, 0.0]).to_json())
        self.assertEqual(clone.count, 3.0)

    def test_merge_refuses_other_accuracy(self):
        """Sketches of different accuracies do not merge."""
        error = self.assertRaises(ValueError, Sketch(0.01).merge, Sketch(0.02))
        self.assertIn("relative accuracy", str(error))


class JSONTests(SynchronousTestCase):

    @settings(max_examples=60, deadline=None)
    @given(signed, st.sampled_from([0.01, 0.005, 0.05]))
    def test_round_trip(self, values, accuracy):
        """to_json, through JSON text, and from_json give back the same sketch."""
        sketch = sketch_of(values, accuracy)
        back = Sketch.from_json(json.loads(json.dumps(sketch.to_json())))
        self.assertEqual(back.accuracy, accuracy)
        self.assertEqual(back.pos, sketch.pos)
        self.assertEqual(back.neg, sketch.neg)
        self.assertEqual(back.zero, sketch.zero)
        self.assertEqual(back.count, sketch.count)
        self.assertEqual(back.quantiles(QS), sketch.quantiles(QS))

    def test_defaults(self):
        """Missing fields mean an empty part of the sketch at the default accuracy."""
        sketch = Sketch.from_json({"bins": {"0": 2}})
        self.assertEqual(sketch.accuracy, DEFAULT_ACCURACY)
        self.assertEqual(sketch.count, 2.0)
        self.assertEqual(Sketch.from_json({}).count, 0.0)

    BAD = [
        ([], "must be an object"),
        ("sketch", "must be an object"),
        ({"relative_accuracy": 0}, "relative_accuracy"),
        ({"relative_accuracy": 1}, "relative_accuracy"),
        ({"relative_accuracy": -0.01}, "relative_accuracy"),
        ({"relative_accuracy": "0.01"}, "relative_accuracy"),
        ({"relative_accuracy": True}, "relative_accuracy"),
        ({"relative_accuracy": math.nan}, "relative_accuracy"),
        ({"bins": [1, 2]}, "bins must be an object"),
        ({"negative_bins": "x"}, "negative_bins must be an object"),
        ({"bins": {"a": 1}}, "not an integer"),
        ({"bins": {"1.5": 1}}, "not an integer"),
        ({"bins": {"1": -1}}, "must be a number >= 0"),
        ({"bins": {"1": "1"}}, "must be a number >= 0"),
        ({"bins": {"1": math.inf}}, "must be a number >= 0"),
        ({"bins": {"1": None}}, "must be a number >= 0"),
        ({"negative_bins": {"1": -2}}, "must be a number >= 0"),
        ({"zero_count": -1}, "zero_count"),
        ({"zero_count": "3"}, "zero_count"),
        ({"zero_count": math.nan}, "zero_count"),
        # Keys beyond what the mapping can turn back into a float.
        ({"bins": {"1000000": 1}}, "outside"),
        ({"negative_bins": {"-1000000": 1}}, "outside"),
    ]

    def test_rejects_malformed(self):
        """Malformed input raises ValueError saying what is wrong."""
        for obj, words in self.BAD:
            try:
                Sketch.from_json(obj)
            except ValueError as e:
                self.assertIn(words, str(e), "for %r" % (obj,))
            else:
                self.fail("from_json accepted %r" % (obj,))

    def test_accepted_keys_read_back(self):
        """The extreme keys from_json accepts give finite quantiles."""
        sketch = Sketch()
        sketch.add(1e300)
        sketch.add(1e-300)
        sketch.add(-1e300)
        back = Sketch.from_json(json.loads(json.dumps(sketch.to_json())))
        self.assertTrue(all(math.isfinite(v) for v in back.quantiles(QS)))
