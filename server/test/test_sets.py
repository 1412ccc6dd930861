"""
Sets stay small: exact up to the set limit, a HyperLogLog sketch past it,
merged by registers through partials and rollups (so a merge counts what one
sketch of all the members counts), and written to snapshots as a sketch of
a few kilobytes.
"""

import json
import random

from twisted.trial.unittest import SynchronousTestCase

from server.core import cardinality
from server.core.aggregate import SetAgg
from server.core.model import SET, Partial
from server.receivers.statsd import StatsdProtocol
from server.core.query import bucket_rows
from server.settings import SettingsError, load, parse_retentions
from server.durability.snapshot import decode_series, encode_series
from server.core.store import Store
from server.test.support import T0, make_core, replayed
from server.test.test_apply_path import state

LIMIT = cardinality.EXACT_LIMIT
TIERS = parse_retentions("5s:1h,1m:1d,1h:forever")
PEER = ("127.0.0.1", 40000)


def members(prefix, n):
    return ["%s%d" % (prefix, k) for k in range(n)]


def expected_count(all_members, limit=LIMIT):
    """
    What a set of C{all_members} counts however they came: exact up to the
    limit, else the estimate of one sketch of them all.
    """
    distinct = set(all_members)
    if len(distinct) <= limit:
        return float(len(distinct))
    return cardinality.sketch_of(distinct).get_estimate()


def agg_of(values, cuts=(), limit=LIMIT):
    """
    A set aggregate that folded C{values} in runs cut at C{cuts}.
    """
    agg = SetAgg(limit)
    start = 0
    for cut in (*cuts, len(values)):
        if values[start:cut]:
            agg.fold(values[start:cut], 1.0, T0)
        start = cut
    return agg


class ExactThenSketchedTests(SynchronousTestCase):

    def test_exact_up_to_the_limit(self):
        """Up to the limit a set keeps its members and counts them exactly, repeats once."""
        values = members("u", LIMIT) + members("u", 10)
        agg = agg_of(values, cuts=(7, 500))
        self.assertIsNone(agg.hll)
        self.assertEqual(agg.row().count, float(LIMIT))
        self.assertEqual(agg.to_json()["members"], sorted(set(values)))

    def test_sketched_past_the_limit(self):
        """One member past the limit the members are dropped for a sketch."""
        agg = agg_of(members("u", LIMIT + 1))
        self.assertIsNone(agg.members)
        self.assertEqual(set(agg.to_json()), {"hll", "extra"})
        self.assertEqual(agg.row().count, expected_count(members("u", LIMIT + 1)))
        self.assertLess(abs(agg.row().count - (LIMIT + 1)), 3 * cardinality.RELATIVE_ERROR * LIMIT)

    def test_sketch_sizes_are_those_documented(self):
        """A sketch is about 4 KB in memory and 3 KB of text in a snapshot, as --set-exact-limit's help and the README say."""
        sketch = cardinality.sketch_of(members("u", 100000))
        self.assertTrue(3500 <= len(sketch.serialize_updatable()) <= 4500)
        self.assertTrue(2500 <= len(cardinality.encode(sketch)) <= 3500)
        text = load([], {}).__dataclass_fields__["set_exact_limit"].metadata["help"]
        self.assertIn("about 4 KB in memory, 3 KB of text in a snapshot", text)

    def test_million_members_through_the_store(self):
        """A million distinct members through store.add count within three standard errors, and the series encodes to a few KB that decode to the same count."""
        store = Store(TIERS, now=T0)
        series = store.get_or_create("users", SET)
        n = 1_000_000
        for k in range(n):
            store.add(series, "user-%d" % k, 1.0, T0 + 1, T0 + 1)
        store.settle()
        (agg,) = series.open[0].values()
        count = agg.row().count
        self.assertEqual(series.value, count)
        self.assertLess(abs(count - n) / n, 3 * cardinality.RELATIVE_ERROR)
        self.assertTrue(agg.hll.get_lower_bound(3) <= n <= agg.hll.get_upper_bound(3))
        line = encode_series(series)
        self.assertLess(len(line), 4000)
        back = decode_series(json.loads(line), len(TIERS), store.accuracy)
        self.assertEqual(back.open[0][T0].row().count, count)
        self.assertEqual(encode_series(back), line)

    def test_any_cut_and_order_gives_the_same_bits(self):
        """Folding the same members in other runs, in another order, crossing the limit at another point, gives the same state and count."""
        values = members("m", 5000) + members("m", 300)
        shuffled = values[:]
        random.Random(3).shuffle(shuffled)
        one = agg_of(values)
        for other in (agg_of(values, cuts=(999, 1001, 1002, 4000)),
                      agg_of(shuffled, cuts=(64, 128, 2500)),
                      agg_of(shuffled, cuts=range(1, 5300, 7))):
            self.assertEqual(other.to_json(), one.to_json())
            self.assertEqual(other.row(), one.row())
        self.assertEqual(one.row().count, expected_count(values))

    def test_partial_members_cross_the_limit(self):
        """A TCP or imported partial's members join like folded ones and may cross the limit."""
        agg = agg_of(members("a", 600))
        agg.merge_partial({"members": members("b", 600)}, T0)
        agg.merge_partial({"count": 5.0}, T0)
        self.assertIsNone(agg.members)
        self.assertEqual(agg.row().count, expected_count(members("a", 600) + members("b", 600)) + 5.0)

    def test_store_refuses_a_limit_below_the_sketch_minimum(self):
        """A limit so low that a fresh sketch would still list hashes is refused, by the store and the settings."""
        self.assertRaises(ValueError, Store, TIERS, set_limit=cardinality.MIN_EXACT_LIMIT - 1)
        e = self.assertRaises(SettingsError, load, ["--set-exact-limit", "10"], {})
        self.assertIn("at least %d" % (cardinality.MIN_EXACT_LIMIT,), str(e))
        self.assertEqual(load(["--set-exact-limit", "5000"], {}).set_exact_limit, 5000)


class MergeTests(SynchronousTestCase):

    def check_merge(self, left, right):
        a, b = agg_of(left), agg_of(right)
        before = b.to_json()
        a.merge(b)
        self.assertEqual(a.row().count, expected_count(left + right))
        # The merged-in aggregate is untouched, and not shared: a later
        # fold into the target leaves it alone.
        a.fold(members("later", 2000), 1.0, T0)
        self.assertEqual(b.to_json(), before)
        return a

    def test_exact_and_exact(self):
        """Two exact sets merge exactly while the union is within the limit."""
        a = self.check_merge(members("x", 300), members("x", 600))
        self.assertEqual(agg_of(members("x", 600)).row().count, 600.0)
        self.assertIsNotNone(a.hll)  # the later fold crossed

    def test_exact_and_exact_crossing(self):
        """Two exact sets whose union passes the limit become one sketch of the union."""
        self.check_merge(members("x", 700), members("y", 700))

    def test_exact_and_sketch(self):
        """An exact set merging a sketched one counts what one sketch of both counts."""
        self.check_merge(members("x", 300), members("y", 3000))

    def test_sketch_and_exact(self):
        """A sketched set merging an exact one counts what one sketch of both counts."""
        self.check_merge(members("y", 3000), members("x", 300))

    def test_sketch_and_sketch(self):
        """Two sketched sets, overlapping, merge by registers."""
        self.check_merge(members("y", 3000), members("y", 2000) + members("z", 4000))

    def test_rollup_tiers_merge_every_combination(self):
        """5 s buckets exact and sketched in turn (exact+sketch, sketch+exact, sketch+sketch, exact+exact crossing) roll up to 1-minute and 1-hour rows equal to one sketch of all their members."""
        store = Store(TIERS, now=T0)
        series = store.get_or_create("s", SET)
        sizes = [300, 3000, 200, 2500, 700, 700, 100, 100]
        starts = [T0 + 60 * (k // 4) + 5 * (k % 4) for k in range(len(sizes))]
        per_bucket = []
        for k, (size, start) in enumerate(zip(sizes, starts)):
            values = ["b%d-%d" % (k % 3, j) for j in range(size)]
            per_bucket.append(values)
            for value in values:
                store.add(series, value, 1.0, start + 1, start + 1)
        store.tick(T0 + 200)
        five = bucket_rows(store, series, 0, 0, 2 ** 32 - 1)
        self.assertEqual([five[int(start // 5)] for start in starts],
                         [(expected_count(values),) for values in per_bucket])
        minute = bucket_rows(store, series, 1, 0, 2 ** 32 - 1)
        self.assertEqual(minute, {
            int(T0 // 60): (expected_count([v for vs in per_bucket[:4] for v in vs]),),
            int(T0 // 60) + 1: (expected_count([v for vs in per_bucket[4:] for v in vs]),),
        })
        everything = [v for values in per_bucket for v in values]
        store.tick(T0 + 3600 + 10)
        self.assertEqual(series.open[2], {})
        self.assertEqual(series.stored[2].row(0), (expected_count(everything),))

    def test_reads_do_not_change_open_buckets(self):
        """A coarse read merges the open sketched buckets into a copy: the buckets and a second read stay the same."""
        store = Store(TIERS, now=T0)
        series = store.get_or_create("s", SET)
        for k, size in enumerate([2000, 300, 1500]):
            ts = T0 + 60 * k + 1
            for j in range(size):
                store.add(series, "m%d" % j, 1.0, ts, ts)
            store.tick(ts + 30)
        before = encode_series(series)
        first = bucket_rows(store, series, 2, 0, 2 ** 32 - 1)
        self.assertEqual(bucket_rows(store, series, 2, 0, 2 ** 32 - 1), first)
        self.assertEqual(encode_series(series), before)
        self.assertEqual(list(first.values()), [(expected_count(members("m", 2000)),)])


class SnapshotAndJournalTests(SynchronousTestCase):

    def series_with(self, values):
        store = Store(TIERS, now=T0)
        series = store.get_or_create("s", SET)
        for value in values:
            store.add(series, value, 1.0, T0 + 1, T0 + 1)
        store.settle()
        return store, series

    def test_sketched_set_round_trip(self):
        """A sketched open bucket goes through a snapshot line and back to the same state, and takes more members after."""
        store, series = self.series_with(members("u", 5000))
        line = encode_series(series)
        back = decode_series(json.loads(line), len(TIERS), store.accuracy)
        self.assertEqual(encode_series(back), line)
        for agg in (series.open[0][T0], back.open[0][T0]):
            agg.fold(members("v", 5000), 1.0, T0)
        self.assertEqual(encode_series(back), encode_series(series))
        self.assertEqual(back.open[0][T0].row().count,
                         expected_count(members("u", 5000) + members("v", 5000)))

    def test_old_snapshot_member_lists_load(self):
        """A snapshot written before sketches (a member list) loads: exact when small, sketched when past the limit."""
        store, series = self.series_with(["a", "b"])
        obj = json.loads(encode_series(series))
        self.assertEqual(obj["o"][0], [[T0, {"members": ["a", "b"], "extra": 0.0}]])
        obj["o"][0][0][1]["extra"] = 2.0
        back = decode_series(obj, len(TIERS), store.accuracy)
        self.assertEqual(back.open[0][T0].row().count, 4.0)
        big = members("old", 3000)
        obj["o"][0][0][1] = {"members": big, "extra": 0.0}
        back = decode_series(obj, len(TIERS), store.accuracy, set_limit=LIMIT)
        self.assertIsNone(back.open[0][T0].members)
        self.assertEqual(back.open[0][T0].row().count, expected_count(big))
        kept = decode_series(obj, len(TIERS), store.accuracy, set_limit=5000)
        self.assertEqual(kept.open[0][T0].row().count, 3000.0)

    def test_bad_sketch_text_is_a_value_error(self):
        """A snapshot's sketch that is not base64, not a sketch image or of another size is refused by name."""
        other = __import__("datasketches").hll_sketch(10)
        for _ in range(600):
            other.update(str(_))
        for text, words in [
            ("not base64!", "not base64"),
            ("Z2FyYmFnZSFnYXJiYWdlIWdhcmJhZ2Uh", "not a set sketch image"),
            (__import__("base64").b64encode(other.serialize_compact()).decode(), "lg_k 10"),
            (12, "must be base64 text"),
        ]:
            e = self.assertRaises(ValueError, cardinality.decode, text)
            self.assertIn(words, str(e))

    def test_replay_of_sets_crossing_the_limit(self):
        """Statsd packets and TCP partials that take sets past the limit, with reads and ticks between, replay from the journal to the same bits."""
        live = make_core(self)
        proto = StatsdProtocol(live, live.settings.limits, live.clock)
        rng = random.Random(5)
        for k in range(120):
            lines = ["s:u%d|s" % rng.randrange(4000) for _ in range(30)]
            lines.append("t:%d|s" % k)
            proto.datagramReceived("\n".join(lines).encode(), PEER)
            if k % 10 == 3:
                live.submit([Partial("s", (), SET, {"members": members("p%d-" % k, 700)})], "tcp")
            if k % 7 == 0:
                live.store.settle()
            if k % 25 == 0:
                live.store.tick(live.clock.seconds())
            live.clock.advance(0.5)
        fresh = replayed(self, live)
        self.assertEqual(state(fresh), state(live))
        self.assertIsNone(live.store.series["s"].open[1][T0].members)
