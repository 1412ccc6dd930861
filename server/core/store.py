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

Points wait in their series' pending run (L{Pending}) until a read, the
close of their bucket or a point by another way folds them in (see
L{server.core.aggregate}).
"""

import math
from array import array
from bisect import bisect_left, bisect_right
from collections import deque

from server.core.aggregate import AGGREGATES, STORED_FIELDS, family, left_sum, new_aggregate
from server.core.cardinality import EXACT_LIMIT, MIN_EXACT_LIMIT
from server.core.model import COUNTER, GAUGE, SET, split_series_key
from server.core.sketch import add_count

MOVING_AVERAGE_WINDOW = 60.0
_APPEND = array.append
# A run is folded once it holds this many values: the folding is spread over
# the packets (a few microseconds per run), never a burst of a whole bucket's
# values at its end, which would stop the reactor long enough for the UDP
# receive buffer to overflow.
FOLD_AT = 64
# Tokens of earlier buckets remembered at most (see Store.restart_fast).
MAX_ROUTES = 1_000_000


def _weight_total(fam, row):
    """
    What a closed finest bucket adds to the moving average: C{(weight,
    total)} (a counter's weight is unused: its rate is over time).
    """
    if fam == COUNTER:
        return row.count, row.count
    if fam == SET:
        return 1.0, row.count
    if fam == GAUGE:
        return row.updates, row.sum
    return row.count, row.sum


def _open_weight_total(fam, agg):
    # Through row() or totals(): what was merged in counts too.
    if fam == COUNTER:
        return 0.0, agg.row().count
    if fam == GAUGE:
        row = agg.row()
        return row.updates, row.sum
    if fam == SET:
        return 1.0, agg.row().count
    count, total, _ = agg.totals()
    return count, total


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
    @ivar total: what a counter counted, or how many values a distribution
        took, since the series was first seen (never reset by a bucket, a
        tier or a restart: Prometheus' C{_total} and C{_count}).
    @ivar total_sum: a distribution's sum of values over the same time.
    """

    __slots__ = ("key", "name", "tags", "type", "family", "stored", "open",
                 "gauge", "value", "value_bucket", "first_seen", "last_seen", "ring",
                 "touched", "run", "total", "total_sum")

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
        # The pending run of its points (Store.add), if any.
        self.run = None
        self.total = self.total_sum = 0.0


class Pending(list):
    """
    Values that arrived for one series, to be folded into one open aggregate
    (L{server.core.aggregate}'s C{fold}): in arrival order, at non-decreasing
    times, with one sample rate.  A series has at most one active at a time,
    so its points are folded in the order they came, whatever the path.

    @ivar ts: the time of the latest value (the largest).
    @ivar first_ts: the time of the first value since the last fold (or
        infinity when later values can be no earlier than what was folded).
    @ivar token: the key it is found by on the statsd fast path
        (L{Store.fast}), or L{None}.
    @ivar stamped: its values are stamped with their arrival time (the fast
        path), so that C{ts} is also when the latest arrived.
    @ivar arrived: when the latest value arrived, unless C{stamped}.
    """

    __slots__ = ("series", "agg", "bucket", "rate", "ts", "first_ts", "token", "stamped",
                 "arrived")
    __hash__ = object.__hash__


class Store:
    """
    All series and the rollup state.  Every method that depends on time is
    given C{now}; the store never reads a clock.

    Observers (L{observe}) are told when a series is about to change
    (C{series_changing(series)}: the snapshot writer copies it first) and
    when a bucket closed (C{bucket_closed(tier, series, start, agg, row)}).
    """

    def __init__(self, tiers, accuracy=0.01, late_grace=5.0, now=0.0, set_limit=EXACT_LIMIT):
        if set_limit < MIN_EXACT_LIMIT:
            raise ValueError("set_limit %r is below %d" % (set_limit, MIN_EXACT_LIMIT))
        self.tiers = tuple(tiers)
        self.accuracy = accuracy
        # Members a set keeps exactly (see server.core.cardinality).
        self.set_limit = set_limit
        self.late_grace = late_grace
        self.series = {}
        self.open_index = [{} for _ in self.tiers]
        self.watermarks = [self._watermark(i, now) for i in range(len(self.tiers))]
        self.observers = []
        # A retention sweep under way (see sweep): the series and how far.
        self._sweeping = None
        self._swept = 0
        self._changing = ()
        self._closed = ()
        # The series that have a pending run (Series.run).
        self.running = set()
        # The series a settle in slices has still to visit (L{settle}).
        self._settling = None
        # The statsd fast path: token -> the active Pending it appends to,
        # all of them in the finest bucket [fast_start, fast_end) of "now".
        self.fast = {}
        self.fast_start = self.fast_end = 0.0
        self.fast_now = -math.inf
        # Runs of earlier buckets by token, so that a series' first line in a
        # new bucket is found again without parsing it (L{restart_fast}).
        self.routes = {}

    def _watermark(self, i, now):
        step = self.tiers[i].step
        return math.floor((now - self.late_grace) / step) * step

    # -- observers -----------------------------------------------------------

    def observe(self, observer):
        """
        Tell C{observer} of every change from now on (see the class).
        """
        self.observers.append(observer)
        self._rebind()

    def unobserve(self, observer):
        self.observers.remove(observer)
        self._rebind()

    def _rebind(self):
        self._changing = tuple(o.series_changing for o in self.observers
                               if getattr(o, "series_changing", None) is not None)
        self._closed = tuple(o.bucket_closed for o in self.observers
                             if getattr(o, "bucket_closed", None) is not None)

    def _changes(self, series):
        for changing in self._changing:
            changing(series)

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

    # -- writes: the one apply path ---------------------------------------------

    def add(self, series, value, rate, ts, now):
        """
        Add one point: C{value} a float or the text a client sent (a gauge
        change is text with its sign, C{"+3"}; a set member is text).  It
        waits in the series' L{Pending} until something reads or closes its
        bucket.
        """
        bucket, agg = self._target(series, ts, now)
        pending = series.run
        if (pending is None or pending.agg is not agg or pending.bucket != bucket
                or pending.rate != rate or ts < pending.ts or pending.token is not None):
            pending = self._activate(series, agg, bucket, rate, None)
        pending.append(value)
        pending.ts = ts
        pending.arrived = now
        if ts < pending.first_ts:
            pending.first_ts = ts
        if len(pending) >= FOLD_AT:
            self._fold(pending)

    def start_fast(self, token, series, rate, now):
        """
        The L{Pending} of C{series} in the finest bucket of C{now} for the
        statsd fast path, found by C{token} from now on (until its bucket
        ends or the series takes a point by another way).  Call L{fast_window}
        first.
        """
        bucket, agg = self._target(series, now, now)
        pending = self._activate(series, agg, bucket, rate, token)
        pending.stamped = True
        pending.first_ts = pending.ts = now
        self.fast[token] = pending
        return pending

    def restart_fast(self, token, now):
        """
        The run found by C{token} in an earlier bucket started again in the
        finest bucket of C{now}, as L{start_fast} starts it but without the
        line being parsed again, or L{None} when there is none or its series
        is gone.
        """
        pending = self.routes.pop(token, None)
        if pending is None:
            return None
        series = pending.series
        if self.series.get(series.key) is not series:
            return None
        return self.start_fast(token, series, pending.rate, now)

    def fast_window(self, now):
        """
        Before points at C{now} take the fast path: when C{now} left the
        finest bucket of the fast path's runs (or went back in time), fold
        them and forget their tokens, keeping them as routes for
        L{restart_fast}.
        """
        if not (self.fast_start <= now < self.fast_end) or now < self.fast_now:
            ended = self.fast
            self.fast = {}
            for pending in ended.values():
                self._retire(pending)
            routes = self.routes
            if len(routes) + len(ended) > MAX_ROUTES:
                routes.clear()
            routes.update(ended)
            step = self.tiers[0].step
            self.fast_start = math.floor(now / step) * step
            self.fast_end = self.fast_start + step
        self.fast_now = now

    def add_partial(self, series, fields, ts, now):
        """
        Merge a client's partial aggregate (after the series' pending points:
        they came first).
        """
        if series.run is not None:
            self._retire(series.run)
        self._changes(series)
        bucket, target = self._target(series, ts, now)
        target.merge_partial(fields, ts)
        series.touched = now
        fam = series.family
        if fam == COUNTER:
            series.total += fields["count"]
            self._note(series, bucket, ts, ts, (fields["count"],))
        elif fam == GAUGE:
            series.gauge = fields["last"]
            self._note(series, bucket, ts, ts, None)
        elif fam == SET:
            self._note(series, bucket, ts, ts, target)
        else:
            series.total += fields["count"]
            series.total_sum += fields["sum"]
            self._note(series, bucket, ts, ts, fields.get("last", fields["max"]))

    def _activate(self, series, agg, bucket, rate, token):
        old = series.run
        if old is not None:
            self._retire(old)
        pending = Pending()
        pending.series = series
        pending.agg = agg
        pending.bucket = bucket
        pending.rate = rate
        pending.ts = -math.inf
        pending.first_ts = math.inf
        pending.token = token
        pending.stamped = False
        pending.arrived = -math.inf
        series.run = pending
        self.running.add(series)
        return pending

    def _retire(self, pending):
        """
        Fold C{pending} and end it: the series' next point starts a new one.
        """
        self._fold(pending)
        # A closed bucket's aggregate is not kept alive by a remembered run.
        pending.agg = None
        self._detach(pending)

    def _detach(self, pending):
        """
        C{pending} is no longer its series' run nor found by its token.
        """
        series = pending.series
        if series.run is pending:
            series.run = None
            self.running.discard(series)
        if pending.token is not None and self.fast.get(pending.token) is pending:
            del self.fast[pending.token]

    def _fold(self, pending):
        if not pending:
            return
        series = pending.series
        self._changes(series)
        values = pending[:]
        del pending[:]
        agg = pending.agg
        ts = pending.ts
        fam = series.family
        if fam == COUNTER:
            info = agg.fold(values, pending.rate, ts)
            # A left fold over every increment: the same bits however the
            # points were cut into runs and buckets (replay gives them again).
            series.total = left_sum(info, series.total)
        elif fam == GAUGE:
            series.gauge = agg.fold(values, 1.0, ts, series.gauge)
            info = None
        elif fam == SET:
            agg.fold(values, 1.0, ts)
            info = agg
        else:
            rate = pending.rate
            vals = agg.fold(values, rate, ts)
            weight = 1.0 / rate
            series.total = add_count(series.total, len(vals), weight)
            series.total_sum = left_sum(vals if weight == 1.0 else [v * weight for v in vals],
                                        series.total_sum)
            info = vals[-1]
        self._note(series, pending.bucket, pending.first_ts, ts, info)
        pending.first_ts = math.inf
        # Server time of the last point received (for idle expiry).
        series.touched = ts if pending.stamped else pending.arrived

    def _note(self, series, bucket, first_ts, last_ts, info):
        """
        What a series shows after points of C{bucket} between C{first_ts}
        and C{last_ts}: first and last seen, and its current value (C{info}:
        a counter's increments, a distribution's last value, a set's
        aggregate; a gauge's is its running value).
        """
        if last_ts > series.last_seen:
            series.last_seen = last_ts
        if first_ts < series.first_seen:
            series.first_seen = first_ts
        fam = series.family
        if fam == COUNTER:
            if bucket == series.value_bucket:
                series.value = left_sum(info, series.value)
            elif bucket > series.value_bucket:
                series.value_bucket = bucket
                series.value = left_sum(info[1:], info[0])
        elif fam == SET:
            if bucket >= series.value_bucket:
                series.value_bucket = bucket
                series.value = info.row().count
        elif fam == GAUGE:
            series.value = series.gauge
        else:
            series.value = info

    def fold_series(self, series):
        """
        Fold the pending run of one series: what reads it calls this first.
        """
        pending = series.run
        if pending:
            self._fold(pending)

    def settle(self, deadline=None, timer=None):
        """
        Fold every pending run.  Whatever reads many series calls this first.

        With a C{deadline} (a C{timer()} value) it stops once past it and
        says whether it finished, so that a caller can go on in later
        reactor turns (values that come meanwhile are folded too).
        """
        fold = self._fold
        if deadline is not None:
            # Go on where the last slice stopped: starting over would walk
            # the runs folded already again in every slice (500k series:
            # minutes of slices).
            todo = self._settling
            if todo is None:
                todo = self._settling = list(self.running)
            seen = 0
            while todo:
                pending = todo.pop().run
                if pending:
                    fold(pending)
                seen += 1
                # Counted by runs visited, not folded: after a burst most
                # are empty, and a walk of 500k of them is a slice too.
                if not seen & 63 and timer() > deadline:
                    return False
            self._settling = None
        # One pass in full: what came while the slices went on (a walk over
        # runs that are mostly empty by now).
        for series in list(self.running):
            pending = series.run
            if pending:
                fold(pending)
        return True

    def _target(self, series, ts, now):
        """
        The finest-tier bucket start of C{ts} and the open aggregate a point
        at C{ts} goes into (opened, or reopened for a late point).
        """
        step = self.tiers[0].step
        bucket = int(ts // step) * step
        agg = series.open[0].get(bucket)
        if agg is None:
            self._changes(series)
            if bucket + step > self.watermarks[0]:
                agg = self._open_bucket(series, 0, bucket)
            else:
                agg = self._late_bucket(series, ts, now)
        return bucket, agg

    def _open_bucket(self, series, i, bucket):
        agg = series.open[i][bucket] = new_aggregate(series.family, self.accuracy, self.set_limit)
        members = self.open_index[i].get(bucket)
        if members is None:
            members = self.open_index[i][bucket] = set()
        members.add(series)
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

    def delete(self, key):
        """
        Forget a series; its open buckets are skipped by the next tick.
        """
        series = self.series.pop(key, None)
        if series is not None:
            if series.run is not None:
                self._detach(series.run)
            self._changes(series)
            for index, buckets in zip(self.open_index, series.open):
                for bucket in buckets:
                    members = index.get(bucket)
                    if members is not None:
                        members.discard(series)
        return series

    def sweep(self, now, deadline=None, timer=None):
        """
        Apply retention to every series, not only to those that close a
        bucket: a series that stopped sending loses its expired rows too.

        Like L{tick}, with a C{deadline} it stops once past it and the next
        call goes on where it stopped (over the series there were when the
        sweep began; one deleted meanwhile is skipped).

        @return: C{(keys, finished)}: the keys of the series left with
            nothing at all -- no row within any tier's retention, no open
            bucket, no pending point -- for the caller to delete (through
            the journal); C{finished} once every series was seen.
        """
        if self._sweeping is None:
            self._sweeping = list(self.series.values())
            self._swept = 0
        todo = self._sweeping
        empty = []
        tiers = self.tiers
        position = self._swept
        while position < len(todo):
            series = todo[position]
            position += 1
            if self.series.get(series.key) is not series:
                continue
            for i, tier in enumerate(tiers):
                stored = series.stored[i]
                if stored is None or tier.retention is None or not stored.index:
                    continue
                first = math.ceil((now - tier.retention) / tier.step)
                if stored.index[0] < first:
                    self._changes(series)
                    stored.trim_before(first)
            if (series.run is None and not any(series.open)
                    and not any(series.stored)):
                empty.append(series.key)
            if deadline is not None and not position & 255 and timer() > deadline:
                self._swept = position
                return empty, False
        self._sweeping = None
        return empty, True

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
        closed = 0
        ntiers = len(self.tiers)
        for i, tier in enumerate(self.tiers):
            step = tier.step
            # Never backwards; reopened (late) buckets are due at once.
            watermark = max(self._watermark(i, now), self.watermarks[i])
            self.watermarks[i] = watermark
            index = self.open_index[i]
            for bucket in sorted(b for b in index if b + step <= watermark):
                members = index[bucket]
                while members:
                    series = members.pop()
                    agg = series.open[i].get(bucket)
                    if agg is None:
                        continue
                    pending = series.run
                    if pending is not None and pending.agg is agg:
                        self._retire(pending)
                    # Before the pop: a snapshot under way must copy the
                    # series with this bucket still open.
                    self._changes(series)
                    del series.open[i][bucket]
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
            series.ring.append((bucket, *_weight_total(series.family, row)))
        for closed in self._closed:
            closed(i, series, bucket, agg, row)

    def _roll_up(self, series, i, child_bucket, agg, now):
        """
        Merge a closed bucket's aggregate into its parent of tier C{i}.  A
        parent that already closed (late data) is reopened: this same tick
        closes it again, merging into its stored row, and rolls it further.
        """
        step = self.tiers[i].step
        bucket = child_bucket - child_bucket % step
        target = series.open[i].get(bucket)
        pending = series.run
        if pending is not None and pending.agg is target:
            self._retire(pending)
        if target is None:
            series.open[i][bucket] = agg
            members = self.open_index[i].get(bucket)
            if members is None:
                members = self.open_index[i][bucket] = set()
            members.add(series)
        else:
            target.merge(agg)

    # -- reads ---------------------------------------------------------------

    def current_value(self, series, now):
        """
        What the metric list shows as a series' value at C{now}: a counter's
        count and a set's unique members in their latest finest-tier bucket
        -- the current one or the one before it (just closed) -- and 0 once
        a whole bucket passed with nothing; a gauge's value; a
        distribution's last value.
        """
        self.fold_series(series)
        if series.family in (COUNTER, SET):
            step = self.tiers[0].step
            if series.value_bucket < (now // step - 1) * step:
                return 0.0
        return series.value

    def moving_average(self, series, now):
        """
        The 1-minute moving average over the closed and open finest-tier
        buckets: counters as a rate per second, sets as unique members per
        bucket, others as the mean of their values.
        """
        self.fold_series(series)
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
            w, t = _open_weight_total(fam, agg)
            weight += w
            total += t
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
        self.fold_series(series)
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
