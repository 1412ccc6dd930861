"""
Tests for L{server.core.sketch}: the relative-error guarantee, exact merging and
the JSON form clients and snapshots use.
"""

import json
import math
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.core.sketch import DEFAULT_ACCURACY, Sketch

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
    The value of rank C{q * (n - 1)} rounded down, the rank DDSketch reads.
    """
    ordered = sorted(values)
    return ordered[int(math.floor(q * (len(ordered) - 1)))]


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

    @settings(max_examples=60, deadline=None)
    @given(positives)
    def test_positive_values(self, values):
        """Every quantile of positive values is within 1 % of the exact value of its rank."""
        sketch = sketch_of(values)
        for q in QS:
            self.assertWithin(sketch.quantile(q), exact_quantile(values, q))

    @settings(max_examples=60, deadline=None)
    @given(signed)
    def test_negative_and_zero_values(self, values):
        """Negative values and zeros keep the same 1 % bound; zero reads back as exactly 0."""
        sketch = sketch_of(values)
        for q in QS:
            self.assertWithin(sketch.quantile(q), exact_quantile(values, q))

    @settings(max_examples=40, deadline=None)
    @given(signed)
    def test_quantiles_matches_quantile(self, values):
        """quantiles() in one pass answers exactly what quantile() answers one by one."""
        sketch = sketch_of(values)
        self.assertEqual(sketch.quantiles(QS), [sketch.quantile(q) for q in QS])

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
