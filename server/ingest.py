"""
The ingest core: the one object every transport hands parsed points to.

It checks each point against the server's state (timestamps in range, a
series keeps its type, the series limit), writes what it accepts to the
journal, applies it to the store and counts everything in the server's own
C{simplestats.*} series.  It never sees a socket and never reads the wall
clock: it is given one.
"""

import math
from collections import Counter

from twisted.logger import Logger

from server.model import (COUNTER, DISTRIBUTION, GAUGE, HISTOGRAM, SET, TIMER, TYPE_NAMES, Partial,
                          Sample, series_key, split_series_key)
from server.sketch import Sketch


_SIMPLE_TYPES = {"c": COUNTER, "ms": TIMER, "h": HISTOGRAM, "d": DISTRIBUTION, "g": GAUGE,
                 "g+": GAUGE, "s": SET}
# The largest integer a learned line may carry (see IngestCore.learn): a
# distribution sums squares too, so that a tally of a million stays exact.
_LEARN_LIMIT = {COUNTER: 2.0 ** 30, GAUGE: 2.0 ** 30, TIMER: 2.0 ** 15,
                HISTOGRAM: 2.0 ** 15, DISTRIBUTION: 2.0 ** 15}


class IngestCore:
    """
    @ivar counters: event counts since the last emission of the server's
        own series, by series name.
    @ivar gauges: the server's own gauge values, by series name.
    """

    log = Logger()

    def __init__(self, settings, clock, store, journal):
        self.settings = settings
        self.clock = clock
        self.store = store
        self.journal = journal
        self.counters = Counter()
        self.gauges = {}
        self.started = clock.seconds()

    # -- accepting points ------------------------------------------------

    def submit(self, items, transport, atomic=False, now=None, raw=None, journal=True):
        """
        Check, journal and apply C{items} (L{Sample} and L{Partial} values).

        @param atomic: refuse every item when any is bad (a TCP batch).
        @param now: the arrival time (default: the clock); replay passes the
            journaled one so that every check decides as it did.
        @param raw: C{(kind, bytes)}: journal the input as it arrived
            (C{b"u"} a statsd packet, C{b"t"} a TCP line) instead of the
            parsed items; replaying it reaches the same state.
        @param journal: C{False} when replaying the journal.
        @return: C{(position, message)} for each refused item.
        """
        # Points taken by another way come after the batch's.
        self.store.settle()
        if now is None:
            now = self.clock.seconds()
        errors = []
        accepted = []
        new_types = None
        series_map = self.store.series
        newest = now + self.settings.future_limit
        oldest_tier = self.store.tiers[-1]
        # Never before 1970: bucket numbers are unsigned.
        oldest = 0.0 if oldest_tier.retention is None else max(0.0, now - oldest_tier.retention)
        for position, item in enumerate(items):
            ts = item.timestamp
            if ts is None:
                ts = now
            elif not (oldest <= ts <= newest):
                errors.append((position, self._time_problem(ts, now)))
                continue
            key = item.name if not item.tags else series_key(item.name, item.tags)
            series = series_map.get(key)
            if series is not None:
                if series.type != item.type:
                    errors.append((position, _type_conflict(key, series.type, item.type)))
                    continue
            else:
                if new_types is None:
                    new_types = {}
                known = new_types.get(key)
                if known is None:
                    # The server's own few series are exempt: a cardinality
                    # bomb must not hide simplestats.series.refused itself.
                    if len(series_map) + len(new_types) >= self.settings.max_series \
                            and transport != "internal":
                        errors.append((position, "series limit of %d reached: new series %r refused"
                                       % (self.settings.max_series, key)))
                        self.counters["simplestats.series.refused"] += 1
                        continue
                    new_types[key] = item.type
                elif known != item.type:
                    errors.append((position, _type_conflict(key, known, item.type)))
                    continue
            accepted.append((key, item, ts))
        if errors:
            self.counters["simplestats.%s.bad" % transport] += len(errors)
            if atomic:
                return errors
        if accepted:
            if journal:
                if raw is not None:
                    self.journal.append_raw(raw[0], now, raw[1])
                else:
                    self.journal.append([_journal_entry(key, item, ts) for key, item, ts in accepted])
            apply = self._apply
            for key, item, ts in accepted:
                apply(key, item, ts, now)
            self.counters["simplestats.%s.points" % transport] += len(accepted)
        return errors

    def submit_simple(self, rows, transport, raw):
        """
        The statsd fast path: C{rows} from L{server.parse_statsd.parse_simple}
        (no tags, rate 1, timestamp now) go straight to the store when their
        series exists with their type; the others take L{submit}.  The state
        reached is the one L{submit} reaches with the parsed samples, which
        is how the journal (C{raw}, the packet) is replayed.

        @return: C{(position, message)} for each refused row.
        """
        now = self.clock.seconds()
        store = self.store
        store.settle()
        series_map = store.series
        add = store.add_value
        slow = None
        applied = 0
        for name, value, kind in rows:
            mtype = _SIMPLE_TYPES[kind]
            series = series_map.get(name)
            if series is None or series.type != mtype:
                if slow is None:
                    slow = []
                slow.append(Sample(name, (), mtype, value, None, 1.0, kind == "g+"))
                continue
            if store.before_change is not None:
                store.before_change(series)
            series.touched = now
            if mtype == GAUGE:
                if kind == "g+":
                    value += series.gauge
                series.gauge = value
            add(series, value, 1.0, now, now)
            applied += 1
        errors = ()
        accepted = applied
        if slow is not None:
            errors = self.submit(slow, transport, now=now, journal=False)
            accepted += len(slow) - len(errors)
        if accepted:
            self.journal.append_raw(b"u", now, raw)
            self.counters["simplestats." + transport + ".points"] += applied
        return errors

    def submit_learned(self, lines, transport, raw):
        """
        The statsd fast path for lines seen before: when every line is one
        learned by L{learn}, take them into the store's batch
        (L{server.store.Store.count}), journal C{raw} and say C{True}; else
        change nothing and say C{False}.  The batch is applied by the next
        rollup tick (every second), or before anything reads the store or
        adds points by another way, or when the finest bucket changes.
        """
        now = self.clock.seconds()
        if not self.store.count(lines, now):
            return False
        self.journal.append_raw(b"u", now, raw)
        self.counters["simplestats." + transport + ".points"] += len(lines)
        return True

    def learn(self, lines, rows):
        """
        Learn the lines of a packet just taken by L{submit_simple} (C{lines}
        its raw lines, C{rows} what they parsed to) for L{submit_learned},
        when every one can be: its series exists with its type, it is not a
        gauge delta, and a number is an integer small enough to add C{n}
        times over at once with the same sums.
        """
        store = self.store
        series_map = store.series
        learnable = []
        for line, (name, value, kind) in zip(lines, rows):
            mtype = _SIMPLE_TYPES[kind]
            series = series_map.get(name)
            if (series is None or series.type != mtype or kind == "g+"
                    or (mtype != SET and not (value.is_integer() and abs(value) <= _LEARN_LIMIT[mtype]))):
                return
            learnable.append((line, series, value))
        for line, series, value in learnable:
            store.learn(line, series, value)

    def _time_problem(self, ts, now):
        if not math.isfinite(ts) or ts < 0:
            return "timestamp %r is not a time after 1970" % (ts,)
        if ts > now:
            return ("timestamp %.0f is %.0f s in the future (limit %.0f s)"
                    % (ts, ts - now, self.settings.future_limit))
        return ("timestamp %.0f is older than the longest retention (%d s)"
                % (ts, self.store.tiers[-1].retention))

    def _apply(self, key, item, ts, now):
        store = self.store
        series = store.series.get(key)
        if series is None:
            series = store.get_or_create(key, item.type)
        if store.before_change is not None:
            # A snapshot under way copies the series before it changes.
            store.before_change(series)
        series.touched = now
        if item.__class__ is Sample:
            value = item.value
            if item.type == GAUGE:
                if item.delta:
                    value = series.gauge = series.gauge + value
                else:
                    series.gauge = value
            store.add_value(series, value, item.rate, ts, now)
        else:
            if item.type == GAUGE:
                series.gauge = item.fields["last"]
            store.add_partial(series, item.fields, ts, now)

    def delete(self, keys, transport="http"):
        """
        Forget the series named by C{keys}, through the journal like data.
        """
        keys = [k for k in keys if k in self.store.series]
        if keys:
            self.journal.append([["d", k] for k in keys])
            for key in keys:
                self.store.delete(key)
            self.counters["simplestats.series.deleted"] += len(keys)
        return keys

    def expire_idle(self, now):
        """
        Delete the series that received nothing for C{idle_expiry} seconds
        (as statsd's deleteIdleStats).  Returns how many went.
        """
        idle = self.settings.idle_expiry
        if not idle:
            return 0
        cutoff = now - idle
        self.store.settle()
        stale = [key for key, series in self.store.series.items() if series.touched < cutoff]
        self.delete(stale)
        self.counters["simplestats.series.expired"] += len(stale)
        return len(stale)

    def replay_entries(self, entries):
        """
        Apply the JSON entries of a journal record read at start-up (no
        checks, no journaling: they were accepted before the restart).
        """
        now = self.clock.seconds()
        count = 0
        for entry in entries:
            kind = entry[0]
            if kind == "d":
                self.store.delete(entry[1])
                continue
            key = entry[1]
            name, tags = split_series_key(key)
            if kind == "s":
                _, _, mtype, value, ts, rate, delta = entry
                item = Sample(name, tags, mtype, value, ts, rate, bool(delta))
            else:
                _, _, mtype, fields, ts = entry
                item = Partial(name, tags, mtype, _decode_fields(fields), ts)
            if not self.store.covers(ts, now):
                # Accepted long before this restart and older than every
                # tier by now: no bucket would keep it (the store refuses).
                continue
            self._apply(key, item, ts, now)
            count += 1
        return count

    # -- the server's own series -------------------------------------------

    def emit_own_metrics(self):
        """
        Turn the counts since the last call into points of the server's own
        series (counters) and the current gauges into gauge points.
        """
        self.gauges["simplestats.series.count"] = float(len(self.store.series))
        self.gauges["simplestats.uptime"] = self.clock.seconds() - self.started
        counters, self.counters = self.counters, Counter()
        items = [Sample(name, (), COUNTER, float(n)) for name, n in sorted(counters.items()) if n]
        items.extend(Sample(name, (), GAUGE, float(v)) for name, v in sorted(self.gauges.items()))
        self.submit(items, "internal")

    def durable(self):
        """
        Write what was accepted to the journal.  Raises C{OSError} when the
        disk refuses.
        """
        self.journal.flush()


def _type_conflict(key, existing, new):
    return "series %r is a %s; a %s value cannot join it" % (
        key, TYPE_NAMES[existing], TYPE_NAMES[new])


def _journal_entry(key, item, ts):
    if item.__class__ is Sample:
        return ["s", key, item.type, item.value, ts, item.rate, 1 if item.delta else 0]
    fields = item.fields
    sketch = fields.get("sketch")
    if sketch is not None:
        fields = dict(fields, sketch=sketch.to_json())
    if "members" in fields:
        fields = dict(fields, members=sorted(fields["members"]))
    return ["p", key, item.type, fields, ts]


def _decode_fields(fields):
    sketch = fields.get("sketch")
    if sketch is not None:
        fields = dict(fields, sketch=Sketch.from_json(sketch))
    return fields
