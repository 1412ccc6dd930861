"""
The ingest core: the one object every transport hands parsed points to.

It checks each point against the server's state (timestamps in range, a
series keeps its type, the series limit), writes what it accepts to the
journal, applies it to the store and counts everything in the server's own
C{simplestats.*} series.  It never sees a socket and never reads the wall
clock: it is given one.

Every point reaches the store by one way, L{server.core.store.Store.add} (and its
statsd shortcut, a run found by the line's name, type, rate and tags, with
the same fold): TCP, statsd, imports, the journal's replay and the server's
own series alike.
"""

import math
from collections import Counter

from twisted.logger import Logger

from server.core.model import (COUNTER, GAUGE, TYPE_NAMES, Partial, Sample, series_key,
                          split_series_key)
from server.core.boards import Boards
from server.core.events import EventError, Events, check_event
from server.core.parse_statsd import (EVENT_PREFIX, BadMetric, fast_line, fast_rows, packet_lines,
                                      parse_event, parse_metric)
from server.core.sketch import Sketch
from server.core.store import FOLD_AT


class _Names(dict):
    """
    C{simplestats.<transport>.<what>}, made once per transport.
    """

    def __init__(self, what):
        dict.__init__(self)
        self.what = what

    def __missing__(self, transport):
        name = self[transport] = "simplestats.%s.%s" % (transport, self.what)
        return name


_POINTS = _Names("points")
_BAD = _Names("bad")


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
        # Lines read per transport since the start (good, bad or refused).
        self.received = Counter()
        self.gauges = {}
        self.started = clock.seconds()
        # The import being applied (see "imports" below): the type of each
        # of its series, and how many of them it has still to create.
        self.import_types = {}
        self.import_new = 0
        # Markers beside the series (server.core.events), journaled and
        # snapshotted like data.
        self.events = Events(settings.max_events)
        self.boards = Boards()
        # Capabilities above the core that journal and snapshot state of
        # their own (the alert engine): name -> an object with to_json(),
        # load(value or None), replay(entry) and KINDS, its journal kinds.
        self.extensions = {}
        self.entry_kinds = {}

    def extend(self, name, extension):
        """
        Keep C{extension}'s state in the snapshot's header under C{name}
        and hand it the journal entries of its C{KINDS} at replay.
        """
        self.extensions[name] = extension
        for kind in extension.KINDS:
            self.entry_kinds[kind] = extension.replay

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
        if now is None:
            now = self.clock.seconds()
        errors, accepted = self._check(items, transport, now)
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
            self._apply_all(accepted, now)
            self.counters["simplestats.%s.points" % transport] += len(accepted)
        return errors

    def replay_steps(self, items, transport, now, part=512):
        """
        L{submit} of a journaled batch at its arrival time C{now} (atomic,
        not journaled again) as a generator that yields between parts of
        C{part} items, so that start-up never holds the reactor for a whole
        large batch; nothing else is applied meanwhile.  Returns the refused
        items as L{submit} does.
        """
        errors, accepted = self._check(items, transport, now)
        if errors:
            self.counters["simplestats.%s.bad" % transport] += len(errors)
            return errors
        for first in range(0, len(accepted), part):
            self._apply_all(accepted[first:first + part], now)
            yield
        self.counters["simplestats.%s.points" % transport] += len(accepted)
        return errors

    def _check(self, items, transport, now):
        """
        @return: C{(errors, accepted)}: C{(position, message)} for each item
            refused, C{(key, item, timestamp)} for the others.
        """
        errors = []
        accepted = []
        new_types = {}
        series_map = self.store.series
        newest = now + self.settings.future_limit
        if transport == "replay":
            # Accepted before the restart under the settings of its day: a
            # lower --future-limit now refuses new points, not stored ones.
            beyond = newest
            newest = math.inf
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
            elif transport == "replay" and ts > beyond:
                self.counters["simplestats.replay.beyond_limits"] += 1
            key = item.name if not item.tags else series_key(item.name, item.tags)
            series = series_map.get(key)
            if series is None or series.type != item.type:
                problem = self._admit(key, item.type, transport, series, new_types)
                if problem is not None:
                    errors.append((position, problem))
                    continue
            accepted.append((key, item, ts))
        return errors, accepted

    def _admit(self, key, mtype, transport, series, new_types):
        """
        Whether a point of type C{mtype} may join C{key} (C{series} its
        series, if it exists): L{None}, or the reason it may not.  A new
        series is noted in C{new_types} (created when the point is applied).
        """
        if series is not None:
            return _type_conflict(key, series.type, mtype)
        known = new_types.get(key) or self.import_types.get(key)
        if known is not None:
            return None if known == mtype else _type_conflict(key, known, mtype)
        # The server's own few series are exempt: a cardinality bomb must
        # not hide simplestats.series.refused itself.  So is the replay of
        # the journal: those series were accepted (a lower --max-series at
        # restart is reported, not applied to stored data).  The new series
        # of an import being applied count as if they were there.
        if len(self.store.series) + len(new_types) + self.import_new >= self.settings.max_series \
                and transport != "internal":
            if transport == "replay":
                self.counters["simplestats.replay.beyond_limits"] += 1
                new_types[key] = mtype
                return None
            self.counters["simplestats.series.refused"] += 1
            return ("series limit of %d reached: new series %r refused"
                    % (self.settings.max_series, key))
        new_types[key] = mtype
        return None

    def submit_statsd(self, data, transport, limits, now=None, journal=True):
        """
        Take one statsd datagram: apply its metrics in order and journal
        what was accepted (when any is).  A line of the common shape
        (L{server.core.parse_statsd.fast_rows}) whose name, type, rate and tags
        were seen in this finest bucket costs a dict lookup and an append;
        any other line is parsed in full.  Replay calls this with the
        journaled time and C{journal=False}.

        The journal gets the packet as it came when every line was taken
        (the usual case), and otherwise only the lines that were taken: a
        line refused live (a limit, the series cap, a line this parser
        cannot read) is not in the journal, so a restart under other
        settings or a later parser never takes it.

        @return: C{(bad, refused)}: messages for lines that do not parse, and
            for metrics refused by the server's state (series limit, type).
        """
        if now is None:
            now = self.clock.seconds()
        self.store.fast_window(now)
        refused = []
        failed = []
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        rows = fast_rows(text) if text is not None else None
        events = 0
        if rows is not None and len(rows) == text.count("\n") + (text[-1:] != "\n"):
            bad = ()
            taken = len(rows)
            dropped = []
            self._take_rows(rows, transport, limits, now, failed, refused, dropped)
            if dropped:
                dropped = set(dropped)
                kept = [name + ":" + value + rest for name, value, rest in rows
                        if (name, value, rest) not in dropped]
        else:
            # Line by line: the common shape still takes the shortcut.
            lines, bad = packet_lines(data)
            taken = 0
            kept = []
            for line in lines:
                match = fast_line(line)
                if match is not None:
                    taken += 1
                    if self._take_rows((match.groups(),), transport, limits, now, failed,
                                       refused, ()):
                        kept.append(line)
                    continue
                if line.startswith(EVENT_PREFIX):
                    # Journaled as an event entry, not in the packet.
                    events += 1
                    if journal:
                        problem = self._statsd_event(line, now)
                        if problem is not None:
                            bad.append(problem)
                            events -= 1
                    continue
                try:
                    samples = parse_metric(line, limits)
                except BadMetric as e:
                    bad.append(e.args[0])
                    continue
                taken += len(samples)
                errors, accepted = self._check(samples, transport, now)
                refused.extend(message for _, message in errors)
                self._apply_all(accepted, now)
                if not errors:
                    kept.append(line)
        applied = taken - len(refused) - len(failed)
        if failed:
            bad = list(bad) + failed
        self.received[transport] += taken + len(bad) - len(failed) + events
        if applied:
            if journal:
                if bad or refused or events:
                    data = "\n".join(kept).encode("utf-8")
                self.journal.append_raw(b"u", now, data)
            self.counters[_POINTS[transport]] += applied
        if bad or refused:
            self.counters[_BAD[transport]] += len(bad) + len(refused)
        return bad, refused

    def _take_rows(self, rows, transport, limits, now, bad, refused, dropped):
        """
        Append each row's value to the run its token finds (the hot loop),
        or start one (L{_start_fast}); a run that fills is folded.  A row
        not taken goes to C{dropped}.  Returns whether every row was taken.
        """
        store = self.store
        get = store.fast.get
        every = True
        for name, value, rest in rows:
            run = get((name, rest))
            if run is None:
                if not self._start_fast(name, value, rest, transport, limits, now, bad,
                                        refused):
                    every = False
                    if dropped != ():
                        dropped.append((name, value, rest))
            else:
                run.append(value)
                run.ts = now
                if len(run) >= FOLD_AT:
                    store.fold_series(run.series)
        return every

    def _start_fast(self, name, value, rest, transport, limits, now, bad, refused):
        """
        A line of the common shape whose token is not known in this bucket:
        the run it had in an earlier bucket is started again, or the line is
        parsed in full (the same checks as any line) and its series' run is
        found by the token from now on.  Why it is not taken goes to C{bad}
        (it does not parse) or C{refused} (the server's state refuses it);
        returns whether it was taken.
        """
        token = (name, rest)
        pending = self.store.restart_fast(token, now)
        if pending is not None:
            pending.append(value)
            return True
        line = name + ":" + value + rest
        try:
            sample, = parse_metric(line, limits)
        except BadMetric as e:
            bad.append(e.args[0])
            return False
        key = sample.name if not sample.tags else series_key(sample.name, sample.tags)
        series = self.store.series.get(key)
        if series is None or series.type != sample.type:
            problem = self._admit(key, sample.type, transport, series, {})
            if problem is not None:
                refused.append(problem)
                return False
            series = self.store.get_or_create(key, sample.type)
        self.store.start_fast(token, series, sample.rate, now).append(value)
        return True

    def _statsd_event(self, line, now):
        """
        Take a DogStatsD event line; why not, or L{None}.
        """
        try:
            when, members = parse_event(line)
            self.add_event(check_event(members, now if when is None else when, "statsd"))
        except BadMetric as e:
            return e.args[0]
        except EventError as e:
            return '%s in "%s"' % (e, line[:80])
        return None

    # -- events (server.core.events) -------------------------------------

    def add_event(self, event):
        """
        Hold and journal C{event} (from L{check_event}); it gets its id.
        """
        dropped = self.events.add(event)
        self.journal.append([["e", event]])
        self.counters["simplestats.events.received"] += 1
        if dropped:
            self.counters["simplestats.events.dropped"] += dropped
        return event

    def delete_event(self, event_id):
        """
        Forget one event, through the journal; whether it was held.
        """
        if not self.events.delete(event_id):
            return False
        self.journal.append([["ed", event_id]])
        return True

    # -- dashboards (server.core.boards) ----------------------------------

    def put_board(self, board):
        """
        Hold and journal C{board} (checked, with its id and times).
        """
        self.boards.put(board)
        self.journal.append([["b", board]])
        self.counters["simplestats.dashboards.saved"] += 1
        return board

    def delete_board(self, board_id):
        """
        Forget one dashboard, through the journal; whether it was held.
        """
        if not self.boards.delete(board_id):
            return False
        self.journal.append([["bd", board_id]])
        return True

    def durable_state(self):
        """
        What a snapshot keeps beside the series (in its header).
        """
        state = {"events": self.events.to_json(), "dashboards": self.boards.to_json()}
        for name, extension in self.extensions.items():
            state[name] = extension.to_json()
        return state

    def load_state(self, header):
        """
        Take back L{durable_state} from a snapshot's header (an older
        snapshot has none: nothing held).
        """
        self.events.load(header.get("events"))
        self.boards.load(header.get("dashboards"))
        for name, extension in self.extensions.items():
            extension.load(header.get(name))

    def _time_problem(self, ts, now):
        if not math.isfinite(ts) or ts < 0:
            return "timestamp %r is not a time after 1970" % (ts,)
        if ts > now:
            return ("timestamp %.0f is %.0f s in the future (limit %.0f s)"
                    % (ts, ts - now, self.settings.future_limit))
        return ("timestamp %.0f is older than the longest retention (%d s)"
                % (ts, self.store.tiers[-1].retention))

    def _apply_all(self, accepted, now):
        apply = self._apply
        for key, item, ts in accepted:
            apply(key, item, ts, now)

    def _apply(self, key, item, ts, now):
        store = self.store
        series = store.series.get(key)
        if series is None:
            series = store.get_or_create(key, item.type)
        if item.__class__ is Sample:
            value = item.value
            if item.delta:
                # A gauge change travels as text with its sign, as statsd
                # sends it (see GaugeAgg.fold).
                value = _signed(value)
            store.add(series, value, item.rate, ts, now)
        else:
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
            if kind == "e":
                self.events.add(dict(entry[1]))
                continue
            if kind == "ed":
                self.events.delete(entry[1])
                continue
            if kind == "b":
                self.boards.put(dict(entry[1]))
                continue
            if kind == "bd":
                self.boards.delete(entry[1])
                continue
            extension = self.entry_kinds.get(kind)
            if extension is not None:
                extension(entry)
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

    # -- imports (server.web.imports) ----------------------------------------
    #
    # An import is checked whole before any of it is applied, then applied
    # batch by batch between live points.  Its journal records start with
    # ["i", id]; its last is [["ic", id, rows]], and a restart replays an
    # import's records only when that commit marker follows them
    # (server.durability.recovery), so a crash mid-import loses all of it, as an
    # import that was never answered should.

    def check_import_batch(self, items, seen, now):
        """
        The checks of L{submit} for one batch of an import's items, against
        the store and against the rows of the file before (C{seen}: the type
        of each series the file has given a good row, updated here).  It
        changes nothing: the file is checked whole before any of it is
        applied, and L{begin_import} checks its series again then.

        @return: C{(position, message)} of each item refused.
        """
        errors = []
        series_map = self.store.series
        newest = now + self.settings.future_limit
        oldest_tier = self.store.tiers[-1]
        oldest = 0.0 if oldest_tier.retention is None else max(0.0, now - oldest_tier.retention)
        for position, item in enumerate(items):
            ts = item.timestamp
            if ts is not None and not (oldest <= ts <= newest):
                errors.append((position, self._time_problem(ts, now)))
                continue
            key = item.name if not item.tags else series_key(item.name, item.tags)
            known = seen.get(key)
            if known is None:
                series = series_map.get(key)
                if series is not None:
                    known = seen[key] = series.type
                elif len(series_map) + seen.new >= self.settings.max_series:
                    errors.append((position, "series limit of %d reached: new series %r refused"
                                   % (self.settings.max_series, key)))
                    continue
                else:
                    known = seen[key] = item.type
                    seen.new += 1
            if known != item.type:
                errors.append((position, _type_conflict(key, known, item.type)))
        return errors

    def begin_import(self, seen):
        """
        Check an import's series against the store as it is now (live
        points may have come meanwhile) and reserve them: until
        L{end_import}, a live point cannot give one of them another type,
        and the import's new series count against the series limit.

        @return: the problems (empty: the import may be applied).
        """
        series_map = self.store.series
        problems = []
        new = 0
        for key, mtype in seen.items():
            series = series_map.get(key)
            if series is None:
                new += 1
            elif series.type != mtype:
                problems.append(_type_conflict(key, series.type, mtype))
        if len(series_map) + new > self.settings.max_series:
            problems.append("series limit of %d reached: the import's %d new series do not fit"
                            % (self.settings.max_series, new))
        if not problems:
            self.import_types = seen
            self.import_new = new
        return problems

    @staticmethod
    def import_entries(items):
        """
        The journal entries of checked items, staged by an import between
        its check and its apply (a timestamp of L{None}, "now", is decided
        when the entry is applied).
        """
        return [_journal_entry(item.name if not item.tags else series_key(item.name, item.tags),
                               item, item.timestamp) for item in items]

    def apply_import_entries(self, import_id, entries):
        """
        Journal and apply staged entries (L{import_entries}) of import
        C{import_id}: the path of the journal's replay, with the checks
        done before.  A point whose time no tier keeps any longer (the
        import outlived it) is dropped, as the store would.

        @return: how many were applied.
        """
        now = self.clock.seconds()
        store = self.store
        series_map = store.series
        kept = [["i", import_id]]
        for entry in entries:
            kind, key, mtype = entry[0], entry[1], entry[2]
            ts = entry[4]
            if ts is None:
                ts = entry[4] = now
            elif not store.covers(ts, now):
                self.counters["simplestats.import.expired"] += 1
                continue
            series = series_map.get(key)
            if series is None:
                self.import_new = max(0, self.import_new - 1)
                series = store.get_or_create(key, mtype)
            elif series.type != mtype:
                # begin_import reserved the type: not reached.
                self.counters["simplestats.import.bad"] += 1
                continue
            kept.append(entry)
            # What _apply does with the item replay_entries would build.
            if kind == "s":
                value = entry[3]
                if entry[6]:
                    value = _signed(value)
                store.add(series, value, entry[5], ts, now)
            else:
                store.add_partial(series, _decode_fields(entry[3]), ts, now)
        self.journal.append(kept)
        self.counters["simplestats.import.points"] += len(kept) - 1
        return len(kept) - 1

    def end_import(self, import_id, rows, committed=True):
        """
        Journal the commit marker of import C{import_id} (unless it was
        abandoned) and lift its reservations.
        """
        if committed:
            self.journal.append([["ic", import_id, rows]])
        self.import_types = {}
        self.import_new = 0

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
        Have what was accepted written to the journal (by its writer, off
        the reactor).  Returns a Deferred that fires once it is, or fails
        with C{OSError} when the disk refuses.
        """
        return self.journal.flush()


class ImportSeries(dict):
    """
    The type of each series an import gives a good row; C{new} counts
    those the store did not have when the row was checked.
    """

    new = 0


def _type_conflict(key, existing, new):
    return "series %r is a %s; a %s value cannot join it" % (
        key, TYPE_NAMES[existing], TYPE_NAMES[new])


def _signed(value):
    text = repr(value)
    return text if text[0] == "-" else "+" + text


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
