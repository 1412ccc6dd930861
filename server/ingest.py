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

from server.model import COUNTER, GAUGE, TYPE_NAMES, Partial, Sample, series_key, split_series_key
from server.sketch import Sketch


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

    def submit(self, items, transport, atomic=False):
        """
        Check, journal and apply C{items} (L{Sample} and L{Partial} values).

        @param atomic: refuse every item when any is bad (a TCP batch).
        @return: C{(position, message)} for each refused item.
        """
        now = self.clock.seconds()
        errors = []
        accepted = []
        new_types = {}
        store = self.store
        series_map = store.series
        for position, item in enumerate(items):
            ts = now if item.timestamp is None else item.timestamp
            key = series_key(item.name, item.tags)
            series = series_map.get(key)
            problem = self._check_time(ts, now)
            if problem is None:
                if series is not None:
                    if series.type != item.type:
                        problem = _type_conflict(key, series.type, item.type)
                else:
                    known = new_types.get(key)
                    if known is None:
                        if len(series_map) + len(new_types) >= self.settings.max_series:
                            problem = ("series limit of %d reached: new series %r refused"
                                       % (self.settings.max_series, key))
                            self.counters["simplestats.series.refused"] += 1
                        else:
                            new_types[key] = item.type
                    elif known != item.type:
                        problem = _type_conflict(key, known, item.type)
            if problem is not None:
                errors.append((position, problem))
            else:
                accepted.append((key, item, ts))
        self.counters["simplestats.%s.bad" % transport] += len(errors)
        if errors and atomic:
            return errors
        if accepted:
            self.journal.append([_journal_entry(key, item, ts) for key, item, ts in accepted])
            for key, item, ts in accepted:
                self._apply(key, item, ts, now)
            self.counters["simplestats.%s.points" % transport] += len(accepted)
        return errors

    def _check_time(self, ts, now):
        if not math.isfinite(ts) or ts < 0:
            return "timestamp %r is not a time after 1970" % (ts,)
        if ts > now + self.settings.future_limit:
            return ("timestamp %.0f is %.0f s in the future (limit %.0f s)"
                    % (ts, ts - now, self.settings.future_limit))
        if not self.store.covers(ts, now):
            return ("timestamp %.0f is older than the longest retention (%d s)"
                    % (ts, self.store.tiers[-1].retention))
        return None

    def _apply(self, key, item, ts, now):
        store = self.store
        series = store.series.get(key)
        if series is None:
            series = store.get_or_create(key, item.type)
        series.touched = now
        if item.__class__ is Sample:
            value = item.value
            if item.type == GAUGE:
                if item.delta:
                    if store.before_change is not None:
                        store.before_change(series)
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
        stale = [key for key, series in self.store.series.items() if series.touched < cutoff]
        self.delete(stale)
        self.counters["simplestats.series.expired"] += len(stale)
        return len(stale)

    def replay(self, records):
        """
        Apply journal records read at start-up (no checks, no journaling:
        they were accepted before the restart).
        """
        now = self.clock.seconds()
        count = 0
        for record in records:
            for entry in record:
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
