"""
The in-memory store: one L{Series} per name and tags, each with open buckets
(mutable aggregates) and closed buckets (columns of floats) for every tier.

A point goes into the open bucket of its own timestamp in the finest tier
whose retention still covers it.  L{Store.tick} closes buckets once their end
is C{late_grace} seconds in the past, stores their row and merges their
aggregate into the open bucket of the next coarser tier, so every tier is the
exact merge of the finer one.  A point for a bucket that already closed (a
late or historical point) is merged into the stored row of every tier that
covers it, up to the first tier whose bucket is still open.

The tick only visits buckets that received data: an index per tier maps an
open bucket's start to the series that have it open.
"""

import math
from array import array
from bisect import bisect_left, bisect_right
from collections import _count_elements, deque
from itertools import repeat
from operator import itemgetter

from server.aggregate import AGGREGATES, STORED_FIELDS, family, new_aggregate
from server.model import COUNTER, GAUGE, SET, split_series_key

MOVING_AVERAGE_WINDOW = 60.0
_APPEND = array.append
_FIRST = itemgetter(0)
# How many tokens (see L{Store.learn}) the store remembers at most.
MAX_LEARNED = 50_000


class StoredTier:
    """
    Closed buckets of one series in one tier: bucket numbers (start // step,
    4 bytes each) and one column of 8-byte floats per stored field.
    """

    __slots__ = ("index", "columns")

    def __init__(self, width):
        self.index = array("I")
        self.columns = [array("d") for _ in range(width)]

    def __len__(self):
        return len(self.index)

    def put(self, number, row, merge_rows):
        index = self.index
        if not index or number > index[-1]:
            index.append(number)
            # column.append(value) for each, in a C loop.
            deque(map(_APPEND, self.columns, row), maxlen=0)
            return
        i = bisect_left(index, number)
        if i < len(index) and index[i] == number:
            old = tuple(column[i] for column in self.columns)
            for column, value in zip(self.columns, merge_rows(old, row)):
                column[i] = value
        else:
            index.insert(i, number)
            for column, value in zip(self.columns, row):
                column.insert(i, value)

    def trim_before(self, number):
        """
        Forget buckets numbered below C{number}.
        """
        i = bisect_left(self.index, number)
        if i:
            del self.index[:i]
            for column in self.columns:
                del column[:i]

    def span(self, first, last):
        """
        The positions of the buckets numbered C{first} to C{last} inclusive.
        """
        return bisect_left(self.index, first), bisect_right(self.index, last)

    def row(self, i):
        return tuple(column[i] for column in self.columns)

    def nbytes(self):
        return sum(a.buffer_info()[1] * a.itemsize for a in (self.index, *self.columns))


class Series:
    """
    Everything kept about one series.

    @ivar value: the current value (see L{Store.current_value}).
    @ivar ring: the last closed finest-tier buckets as
        C{(start, weight, total)}, for the 1-minute moving average.
    """

    __slots__ = ("key", "name", "tags", "type", "family", "stored", "open",
                 "gauge", "value", "value_bucket", "first_seen", "last_seen", "ring",
                 "touched")

    def __init__(self, key, metric_type, ntiers):
        self.key = key
        self.name, self.tags = split_series_key(key)
        self.type = metric_type
        self.family = family(metric_type)
        self.stored = [None] * ntiers
        self.open = [{} for _ in range(ntiers)]
        self.gauge = 0.0
        self.value = None
        self.value_bucket = -1
        self.first_seen = math.inf
        self.last_seen = -math.inf
        self.ring = deque(maxlen=12)
        # Server time of the last point received (for idle expiry).
        self.touched = 0.0


class Store:
    """
    All series and the rollup state.  Every method that depends on time is
    given C{now}; the store never reads a clock.
    """

    def __init__(self, tiers, accuracy=0.01, late_grace=5.0, now=0.0):
        self.tiers = tuple(tiers)
        self.accuracy = accuracy
        self.late_grace = late_grace
        self.series = {}
        self.open_index = [{} for _ in self.tiers]
        self.watermarks = [self._watermark(i, now) for i in range(len(self.tiers))]
        # Observers told before a series changes (the snapshot writer uses
        # this to copy a series before it is modified mid-snapshot).
        self.before_change = None
        # The batch (see count): token -> (series, value); token -> times
        # taken, series -> last value and series -> time of its last point,
        # not yet applied, all in the finest bucket [batch_start, batch_end).
        self.learned = {}
        self.batch = {}
        self.batch_last = {}
        self.batch_when = {}
        self.batch_start = self.batch_end = 0.0

    def _watermark(self, i, now):
        step = self.tiers[i].step
        return math.floor((now - self.late_grace) / step) * step

    # -- lookups ---------------------------------------------------------

    def get_or_create(self, key, metric_type):
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(key, metric_type, len(self.tiers))
        return series

    def covers(self, ts, now):
        """
        Whether some tier still keeps the bucket of C{ts}.
        """
        tier = self.tiers[-1]
        return tier.retention is None or ts >= now - tier.retention

    # -- writes ------------------------------------------------------------

    def add_value(self, series, value, rate, ts, now):
        """
        Add one raw value (already resolved: gauge deltas applied).
        """
        bucket, agg = self._target(series, ts, now)
        agg.add(value, rate, ts)
        self._note_value(series, bucket, value, rate, ts, agg)

    def add_partial(self, series, fields, ts, now):
        bucket, target = self._target(series, ts, now)
        target.merge_partial(fields, ts)
        fam = series.family
        if fam == COUNTER:
            self._note_value(series, bucket, fields["count"], 1.0, ts, target)
        elif fam == GAUGE:
            self._note_value(series, bucket, fields["last"], 1.0, ts, target)
        elif fam == SET:
            self._note_value(series, bucket, None, 1.0, ts, target)
        else:
            self._note_value(series, bucket, fields.get("last", fields["max"]), 1.0, ts, target)

    def _target(self, series, ts, now):
        """
        The finest-tier bucket start of C{ts} and the open aggregate a point
        at C{ts} goes into (opened, or reopened for a late point).
        """
        if self.before_change is not None:
            self.before_change(series)
        step = self.tiers[0].step
        bucket = int(ts // step) * step
        agg = series.open[0].get(bucket)
        if agg is None:
            if bucket + step > self.watermarks[0]:
                agg = self._open_bucket(series, 0, bucket)
            else:
                agg = self._late_bucket(series, ts, now)
        return bucket, agg

    def _note_value(self, series, bucket, value, rate, ts, agg):
        if ts > series.last_seen:
            series.last_seen = ts
        if ts < series.first_seen:
            series.first_seen = ts
        fam = series.family
        if fam == COUNTER:
            if bucket == series.value_bucket:
                series.value += value / rate
            elif bucket > series.value_bucket:
                series.value_bucket = bucket
                series.value = value / rate
        elif fam == SET:
            if bucket >= series.value_bucket and agg is not None:
                series.value_bucket = bucket
                series.value = agg.row()[0]
        elif fam == GAUGE:
            series.value = series.gauge
        else:
            series.value = value

    def _open_bucket(self, series, i, bucket):
        agg = series.open[i][bucket] = new_aggregate(series.family, self.accuracy)
        keys = self.open_index[i].get(bucket)
        if keys is None:
            keys = self.open_index[i][bucket] = set()
        keys.add(series.key)
        return agg

    def _late_bucket(self, series, ts, now):
        """
        The aggregate for a point whose finest-tier bucket has closed: its
        bucket in the finest tier that still keeps C{ts}, reopened.  The next
        tick merges it into the stored row and rolls it up, tier by tier, so
        late points cost what live ones do and are merged exactly among
        themselves.
        """
        for i, tier in enumerate(self.tiers):
            step = tier.step
            bucket = int(ts // step) * step
            if tier.retention is None or bucket + step > now - tier.retention:
                agg = series.open[i].get(bucket)
                if agg is None:
                    agg = self._open_bucket(series, i, bucket)
                return agg
        raise ValueError("timestamp %r is older than every tier" % (ts,))

    def _stored(self, series, i):
        stored = series.stored[i]
        if stored is None:
            stored = series.stored[i] = StoredTier(len(STORED_FIELDS[series.family]))
        return stored

    # -- the batch of learned lines ------------------------------------------

    def learn(self, token, series, value):
        """
        Remember that C{token} (any hashable: the statsd fast path uses a raw
        line such as C{b"hits:1|c"}) adds C{value} (rate 1) to C{series},
        so that L{count} takes it.  A number must be an integer small enough
        that adding it C{n} times and adding it once C{n} times over give the
        same sums (the caller checks).
        """
        if len(self.learned) >= MAX_LEARNED:
            self.settle()
            self.learned.clear()
        self.learned[token] = (series, value)

    def count(self, tokens, now):
        """
        Take C{tokens} at C{now} if every one is learned, and say whether it
        did.  Taking them only tallies each token (at C speed, however often
        it repeats) and notes each series' last value; L{settle} applies the
        tally, one L{Store.add_value}-like step per distinct token.  Within
        one finest bucket, at one time, only a gauge's and a distribution's
        last value depend on the order of the points, and that is noted: the
        state after L{settle} is the one the points give one by one.
        """
        known = self.learned
        if not tokens or not known or not all(map(known.__contains__, tokens)):
            return False
        if not self.batch_start <= now < self.batch_end:
            self.settle()
            step = self.tiers[0].step
            self.batch_start = math.floor(now / step) * step
            self.batch_end = self.batch_start + step
        _count_elements(self.batch, tokens)
        pairs = list(map(known.__getitem__, tokens))
        self.batch_last.update(pairs)
        self.batch_when.update(zip(map(_FIRST, pairs), repeat(now)))
        return True

    def settle(self):
        """
        Apply the batch.  Whatever reads series, rewrites them or adds
        points by another way calls this first.
        """
        batch = self.batch
        if not batch:
            return
        self.batch = {}
        last, self.batch_last = self.batch_last, {}
        when, self.batch_when = self.batch_when, {}
        known = self.learned
        for token, times in batch.items():
            series, value = known[token]
            # The time of the series' last point in the batch.
            now = series.touched = when[series]
            bucket, agg = self._target(series, now, now)
            agg.add_times(value, times, now)
            fam = series.family
            if fam == COUNTER:
                self._note_value(series, bucket, value * times, 1.0, now, agg)
                continue
            if fam != SET:
                value = agg.last = last[series]
                if fam == GAUGE:
                    series.gauge = value
            self._note_value(series, bucket, value, 1.0, now, agg)

    def delete(self, key):
        """
        Forget a series; its open buckets are skipped by the next tick.
        """
        self.settle()
        self.learned.clear()
        series = self.series.pop(key, None)
        if series is not None and self.before_change is not None:
            self.before_change(series)
        return series

    # -- rollup --------------------------------------------------------------

    def tick(self, now, deadline=None, timer=None):
        """
        Close every bucket whose end is C{late_grace} seconds past, finest
        tier first, rolling each into the next tier.

        With a C{deadline} (a C{timer()} value) it stops once past it, so a
        tick over many series does not hold the reactor; calling again goes
        on where it stopped.  Points arriving in between join buckets that
        are due but not yet closed, or reopen them: nothing is lost.

        @return: C{(buckets closed, finished)}.
        """
        self.settle()
        closed = 0
        ntiers = len(self.tiers)
        for i, tier in enumerate(self.tiers):
            step = tier.step
            # Never backwards; reopened (late) buckets are due at once.
            watermark = max(self._watermark(i, now), self.watermarks[i])
            self.watermarks[i] = watermark
            index = self.open_index[i]
            for bucket in sorted(b for b in index if b + step <= watermark):
                keys = index[bucket]
                while keys:
                    series = self.series.get(keys.pop())
                    if series is None:
                        continue
                    if self.before_change is not None:
                        # Before the pop: a snapshot under way must copy the
                        # series with this bucket still open.
                        self.before_change(series)
                    agg = series.open[i].pop(bucket, None)
                    if agg is None:
                        continue
                    self._close(series, i, bucket, agg, now)
                    if i + 1 < ntiers:
                        self._roll_up(series, i + 1, bucket, agg, now)
                    closed += 1
                    if deadline is not None and not closed & 63 and timer() > deadline:
                        return closed, False
                del index[bucket]
        return closed, True

    def _close(self, series, i, bucket, agg, now):
        tier = self.tiers[i]
        row = agg.row()
        stored = self._stored(series, i)
        stored.put(bucket // tier.step, row, AGGREGATES[series.family].merge_rows)
        if tier.retention is not None and stored.index[0] * tier.step < now - tier.retention:
            stored.trim_before(math.ceil((now - tier.retention) / tier.step))
        # A late bucket is not among the last ones: appended, it would push
        # a bucket of the last minute out of the ring.
        if i == 0 and (not series.ring or bucket > series.ring[-1][0]):
            fam = series.family
            if fam == COUNTER:
                series.ring.append((bucket, row[0], row[0]))
            elif fam == SET:
                series.ring.append((bucket, 1.0, row[0]))
            else:
                series.ring.append((bucket, row[0], row[1]))

    def _roll_up(self, series, i, child_bucket, agg, now):
        """
        Merge a closed bucket's aggregate into its parent of tier C{i}.  A
        parent that already closed (late data) is reopened: this same tick
        closes it again, merging into its stored row, and rolls it further.
        """
        step = self.tiers[i].step
        bucket = child_bucket - child_bucket % step
        target = series.open[i].get(bucket)
        if target is None:
            series.open[i][bucket] = agg
            keys = self.open_index[i].get(bucket)
            if keys is None:
                keys = self.open_index[i][bucket] = set()
            keys.add(series.key)
        else:
            target.merge(agg)

    # -- reads ---------------------------------------------------------------

    def moving_average(self, series, now):
        """
        The 1-minute moving average over the closed and open finest-tier
        buckets: counters as a rate per second, sets as unique members per
        bucket, others as the mean of their values.
        """
        # The window runs from a bucket start about a minute ago to now, so a
        # counter's total is divided by the time it was gathered over (the
        # open buckets reach past the watermark, up to now).
        step = self.tiers[0].step
        since = math.floor((now - MOVING_AVERAGE_WINDOW) / step) * step
        weight = total = 0.0
        for bucket, w, t in series.ring:
            if bucket >= since:
                weight += w
                total += t
        fam = series.family
        for agg in series.open[0].values():
            row = agg.row() if fam != "dist" else (agg.count, agg.sum)
            if fam == COUNTER:
                total += row[0]
            elif fam == SET:
                weight += 1.0
                total += row[0]
            else:
                weight += row[0]
                total += row[1]
        if fam == COUNTER:
            return total / (now - since)
        if weight:
            return total / weight
        if fam == GAUGE and series.value is not None:
            return series.gauge
        return None

    def open_rows(self, series, i, first, last):
        """
        Rows of the open buckets of tier C{i} numbered C{first}..C{last},
        as C{(number, row)} sorted by number.
        """
        step = self.tiers[i].step
        return sorted(
            (bucket // step, agg.row())
            for bucket, agg in series.open[i].items()
            if first <= bucket // step <= last
        )

    def stored_bytes(self):
        """
        Bytes held by closed buckets and the number of values they hold.
        """
        nbytes = values = 0
        for series in self.series.values():
            width = len(STORED_FIELDS[series.family])
            for stored in series.stored:
                if stored is not None:
                    nbytes += stored.nbytes()
                    values += len(stored) * width
        return nbytes, values
