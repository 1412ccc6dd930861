"""
The alert engine: rules, one instance per rule and matching series, their
states (ok -> pending -> firing -> resolved), silences, the history of
transitions and the notifications still to deliver.

Evaluation runs in the store's C{bucket_closed} event, for the rules that
read the tier that closed: a series is matched against the rules once (and
again after the rules change, on its next bucket), through the literal index
of L{server.alerts.index}.  Only C{stopped} rules need a timer, and it visits
their instances alone, a slice at a time.

Everything that must survive a restart goes through the ingest core's
journal as entries of its own kinds and into the snapshot's header
(L{AlertEngine.to_json}):

  - C{["ar", rule]} a rule saved, C{["ard", id]} a rule deleted;
  - C{["at", instance, record, notification]} an instance's transition (or
    a repeat: C{record} L{None}), with the notification it sends;
  - C{["an", notification id, channel index, outcome]} a channel delivered
    (or gave up): a restart never sends it again;
  - C{["as", silence]}, C{["asd", id]} silences.
"""

import math
import secrets
import time
from collections import deque
from urllib.parse import quote

from twisted.internet import defer
from twisted.logger import Logger

from server.alerts.index import RuleIndex
from server.alerts.rules import Rule, field_value
from server.core.query import bucket_rows

FORMAT = 1
OK, PENDING, FIRING, RESOLVED = "ok", "pending", "firing", "resolved"
STATE_ORDER = {FIRING: 0, PENDING: 1, RESOLVED: 2, OK: 3}
# The stopped check's work per reactor turn.
SLICE_SECONDS = 0.01
# Deliveries: tries per channel and the first wait between them (doubled).
TRIES = 6
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# Deliveries under way at once (the rest wait their turn).
MAX_IN_FLIGHT = 16
# Notifications older than this are not retried after a restart.
OUTBOX_TTL = 24 * 3600.0


class Instance:
    """
    One rule on one series.
    """

    __slots__ = ("rule_id", "series", "state", "since", "value", "threshold", "pending_since",
                 "fired_at", "notified_at", "seq", "last_bucket", "last_seen", "stats",
                 "failures")

    def __init__(self, rule_id, series, now):
        self.rule_id = rule_id
        self.series = series
        self.state = OK
        self.since = now
        self.value = None
        self.threshold = None
        self.pending_since = None
        self.fired_at = None
        self.notified_at = None
        self.seq = 0
        self.last_bucket = -math.inf
        self.last_seen = now
        # EWMA: [values seen, mean, variance].
        self.stats = [0, 0.0, 0.0]
        # Probes: failures in a row.
        self.failures = 0

    def to_json(self):
        return {name: getattr(self, name) for name in self.__slots__
                if name != "last_bucket" or self.last_bucket != -math.inf}

    @classmethod
    def from_json(cls, data):
        inst = cls(data["rule_id"], data["series"], data.get("since", 0.0))
        for name in cls.__slots__:
            if name in data:
                setattr(inst, name, data[name])
        inst.stats = list(inst.stats)
        return inst


def _round(value):
    return None if value is None else round(value, 6)


class AlertEngine:
    """
    @param core: the L{server.core.ingest.IngestCore} (store, journal, counters).
    @param deliver: C{deliver(channel, notification) -> Deferred}
        (L{server.alerts.channels.Channels.deliver}).
    @param base_url: where the dashboard is reached (notifications link to it).
    """

    log = Logger()

    def __init__(self, core, clock, deliver, base_url="http://127.0.0.1:8080",
                 history_limit=10000, new_id=None, timer=time.perf_counter):
        self.core = core
        self.store = core.store
        self.clock = clock
        self.deliver_to = deliver
        self.base_url = base_url.rstrip("/")
        self.timer = timer
        self.new_id = new_id or (lambda: secrets.token_hex(6))
        self.steps = [t.step for t in self.store.tiers]
        self.rules = {}
        # (rule id, series key) -> Instance
        self.instances = {}
        # series key -> (generation, rules that read it)
        self.by_series = {}
        self.generation = 0
        self.index = None
        self.reads_tier = [False] * len(self.steps)
        self.stopped_rules = []
        self.silences = {}
        self.history = deque(maxlen=history_limit)
        # notification id -> {"note", "channels": [pending indexes], "rule_id"}
        self.outbox = {}
        # rule id -> {"deliveries", "failures", "last_delivery", "last_error", ...}
        self.status = {}
        self.started = False
        self.calls = []
        self._stopped_cursor = None
        self._sweep_cursor = None
        # Delivery tries waiting for one of the MAX_IN_FLIGHT places.
        self.waiting = deque()
        self.in_flight = 0

    def _later(self, delay, f, *args):
        if len(self.calls) > 256:
            self.calls = [c for c in self.calls if c.active()]
        self.calls.append(self.clock.callLater(delay, f, *args))

    # -- rules ---------------------------------------------------------------

    def put_rule(self, spec, journal=True):
        """
        Hold (and journal) a checked rule with its C{id}; its instances of
        an earlier version are kept when the rule still reads the same way.
        """
        old = self.rules.get(spec["id"])
        rule = Rule(spec, self.steps)
        self.rules[rule.id] = rule
        if old is not None and (old.spec["filter"], old.field, old.kind, old.step) != (
                spec["filter"], rule.field, rule.kind, rule.step):
            self._drop_instances(rule.id)
        self._rules_changed()
        if journal:
            self.core.journal.append([["ar", spec]])
            self.core.counters["simplestats.alerts.rules_saved"] += 1
        return rule

    def delete_rule(self, rule_id, journal=True):
        if self.rules.pop(rule_id, None) is None:
            return False
        self._drop_instances(rule_id)
        self.status.pop(rule_id, None)
        for silence_id in [s["id"] for s in self.silences.values() if s["rule_id"] == rule_id]:
            del self.silences[silence_id]
        self._rules_changed()
        if journal:
            self.core.journal.append([["ard", rule_id]])
        return True

    def _drop_instances(self, rule_id):
        for key in [k for k in self.instances if k[0] == rule_id]:
            del self.instances[key]

    def _rules_changed(self):
        # Every series is matched again on its next bucket.
        self.generation += 1
        evaluated = [r for r in self.rules.values() if r.kind != "probe"]
        # Built when first needed: saving a thousand rules compiles it once.
        self.index = None
        self.reads_tier = [any(r.tier == i for r in evaluated) for i in range(len(self.steps))]
        self.stopped_rules = [r for r in evaluated if r.kind == "stopped"]

    def _rules_of(self, series):
        entry = self.by_series.get(series.key)
        if entry is not None and entry[0] == self.generation:
            return entry[1]
        if self.index is None:
            self.index = RuleIndex(r for r in self.rules.values() if r.kind != "probe")
        rules = tuple(r for r in self.index.candidates(series.name) if r.matches(series))
        self.by_series[series.key] = (self.generation, rules)
        return rules

    # -- evaluation (the store's bucket-closed event) ----------------------

    def bucket_closed(self, tier, series, start, agg, row):
        if not self.reads_tier[tier]:
            return
        # Called inside the store's tick: whatever goes wrong here is the
        # alert's, logged and counted, never the rollup's.
        try:
            rules = self._rules_of(series)
            if not rules:
                return
            for rule in rules:
                if rule.tier == tier:
                    self._evaluate(rule, series, start, row)
        except Exception:
            self.core.counters["simplestats.alerts.errors"] += 1
            self.log.failure("alert evaluation failed on {series}", series=series.key)

    def _instance(self, rule, key, now):
        inst = self.instances.get((rule.id, key))
        if inst is None:
            inst = self.instances[(rule.id, key)] = Instance(rule.id, key, now)
        return inst

    def _evaluate(self, rule, series, start, row):
        now = self.clock.seconds()
        inst = self._instance(rule, series.key, now)
        inst.last_seen = now
        if start < inst.last_bucket:
            return  # a late bucket: its time has been judged
        inst.last_bucket = start
        if rule.kind == "stopped":
            return  # judged by the stopped check
        value = field_value(series.family, rule.field, row, rule.step)
        if value is None:
            return
        inst.value = value
        if rule.kind == "anomaly":
            breach, low, high = self._anomaly(rule, inst, series, start, value)
            inst.threshold = None if low is None else [_round(low), _round(high)]
            clear = not breach
        else:
            breach, clear = self._threshold(rule, inst, value)
            inst.threshold = rule.threshold
        self._judge(rule, inst, breach, clear, start + rule.step, now)

    @staticmethod
    def _threshold(rule, inst, value):
        if rule.kind == "above":
            breach = value > rule.threshold
            clear = value < rule.recover if rule.recover is not None else not breach
        else:
            breach = value < rule.threshold
            clear = value > rule.recover if rule.recover is not None else not breach
        return breach, clear

    def _anomaly(self, rule, inst, series, start, value):
        """
        Whether C{value} is out of its band, and the band.
        """
        spec = rule.spec["anomaly"]
        k = spec["k"]
        if spec["method"] == "ewma":
            stats = inst.stats
            n, mean, var = stats
            low = high = None
            breach = False
            if n >= spec["warmup"]:
                sd = math.sqrt(var)
                low, high = mean - k * sd, mean + k * sd
                breach = value < low or value > high
            # Exponentially decayed mean and variance (West's update).
            alpha = spec["alpha"]
            if n == 0:
                stats[:] = [1, value, 0.0]
            else:
                diff = value - mean
                incr = alpha * diff
                stats[:] = [n + 1, mean + incr, (1 - alpha) * (var + diff * incr)]
            return breach, low, high
        # The same time of day over the previous seven days.
        step = rule.step
        seen = []
        for day in range(1, 8):
            number = int((start - day * 86400) // step)
            rows = bucket_rows(self.store, series, rule.tier, number, number)
            if number in rows:
                v = field_value(series.family, rule.field, rows[number], step)
                if v is not None:
                    seen.append(v)
        if len(seen) < 3:
            return False, None, None
        mean = sum(seen) / len(seen)
        sd = math.sqrt(sum((v - mean) ** 2 for v in seen) / len(seen))
        low, high = mean - k * sd, mean + k * sd
        return value < low or value > high, low, high

    def _judge(self, rule, inst, breach, clear, at, now):
        """
        Move C{inst} on: C{breach} the condition holds at bucket end C{at};
        C{clear} the value is back on the good side (of C{recover}).
        """
        state = inst.state
        if state in (OK, RESOLVED):
            if breach:
                if rule.hold <= 0:
                    self._transition(rule, inst, FIRING, now)
                else:
                    inst.pending_since = at
                    self._transition(rule, inst, PENDING, now)
        elif state == PENDING:
            if not breach:
                inst.pending_since = None
                self._transition(rule, inst, OK, now)
            elif at - inst.pending_since >= rule.hold:
                self._transition(rule, inst, FIRING, now)
        elif state == FIRING:
            if clear:
                self._transition(rule, inst, RESOLVED, now)
            else:
                self._maybe_repeat(rule, inst, now)

    def _maybe_repeat(self, rule, inst, now):
        if rule.repeat > 0 and inst.notified_at is not None and now - inst.notified_at >= rule.repeat:
            note = self._notification(rule, inst, now, repeat=True)
            self.core.journal.append([["at", inst.to_json(), None, note]])

    # -- series gone: deleted or expired ---------------------------------------

    def sweep_gone(self):
        """
        Forget the instances (and matches) of series the store no longer
        has, deleted or expired: a firing one resolves first.  A slice per
        reactor turn; called every minute or so.
        """
        if self._sweep_cursor is not None:
            return
        self._sweep_cursor = iter(list(self.instances.items()) + [(None, key) for key in self.by_series])
        self._sweep_slice()

    def _sweep_slice(self):
        deadline = self.timer() + SLICE_SECONDS
        series = self.store.series
        now = self.clock.seconds()
        count = 0
        for key, item in self._sweep_cursor:
            count += 1
            if key is None:
                if item not in series:
                    self.by_series.pop(item, None)
            elif item.series not in series and self.instances.get(key) is item:
                rule = self.rules.get(item.rule_id)
                if rule is not None and rule.kind == "probe":
                    continue  # its series are the probe's, written on its next run
                if item.state == FIRING and rule is not None:
                    self._transition(rule, item, RESOLVED, now, reason="series deleted")
                del self.instances[key]
                self.core.counters["simplestats.alerts.instances_dropped"] += 1
            if not count & 255 and self.timer() > deadline:
                self._later(0, self._sweep_slice)
                return
        self._sweep_cursor = None

    # -- stopped: a timer over the instances of stopped rules ------------------

    def check_stopped(self):
        """
        Judge the instances of C{stopped} rules (a slice per reactor turn
        when there are many).  Called every second or so.
        """
        if self._stopped_cursor is not None or not self.stopped_rules:
            return
        ids = {r.id for r in self.stopped_rules}
        work = [inst for key, inst in self.instances.items() if key[0] in ids]
        self._stopped_cursor = iter(work)
        self._stopped_slice()

    def _stopped_slice(self):
        deadline = self.timer() + SLICE_SECONDS
        now = self.clock.seconds()
        count = 0
        for inst in self._stopped_cursor:
            rule = self.rules.get(inst.rule_id)
            if rule is not None:
                self._judge_stopped(rule, inst, now)
            count += 1
            if not count & 255 and self.timer() > deadline:
                self._later(0, self._stopped_slice)
                return
        self._stopped_cursor = None

    def _judge_stopped(self, rule, inst, now):
        series = self.store.series.get(inst.series)
        if series is None:
            # Deleted (or expired): nothing left to report (sweep_gone forgets it).
            return
        # Points arrive before their bucket closes: the series' own time
        # (brought up to date by folding its pending points, only when it
        # would decide).
        after = rule.spec["stopped"]["after"]
        seen = max(inst.last_seen, series.touched)
        if inst.state == FIRING or now - seen >= after:
            self.store.fold_series(series)
            seen = max(seen, series.touched)
        inst.last_seen = seen
        silent = now - seen
        inst.value = _round(silent)
        inst.threshold = after
        if inst.state == FIRING:
            if silent < after:
                self._transition(rule, inst, RESOLVED, now)
            else:
                self._maybe_repeat(rule, inst, now)
        elif silent >= after:
            self._transition(rule, inst, FIRING, now)

    # -- probes ----------------------------------------------------------------

    def probe_result(self, rule_id, up, latency, now=None):
        """
        A probe of rule C{rule_id} answered (C{up}) or failed.
        """
        rule = self.rules.get(rule_id)
        if rule is None:
            return
        if now is None:
            now = self.clock.seconds()
        key = "probe.%s.up" % (rule.spec["probe"]["name"],)
        inst = self._instance(rule, key, now)
        inst.last_seen = now
        inst.failures = 0 if up else inst.failures + 1
        inst.value = float(inst.failures)
        inst.threshold = rule.spec["probe"]["failures"]
        if inst.state == FIRING:
            if up:
                self._transition(rule, inst, RESOLVED, now)
            else:
                self._maybe_repeat(rule, inst, now)
        elif inst.failures >= rule.spec["probe"]["failures"]:
            self._transition(rule, inst, FIRING, now)

    # -- transitions and notifications ----------------------------------------

    def _transition(self, rule, inst, state, now, reason=None):
        previous = inst.state
        inst.state = state
        inst.since = now
        inst.seq += 1
        fired_for = None
        if state == FIRING:
            inst.fired_at = now
        elif state == RESOLVED and inst.fired_at is not None:
            fired_for = now - inst.fired_at
        record = {"time": now, "rule": rule.name, "rule_id": rule.id, "series": inst.series,
                  "state": state, "previous": previous, "value": _round(inst.value),
                  "threshold": inst.threshold}
        if fired_for is not None:
            record["fired_for"] = _round(fired_for)
        if reason is not None:
            record["reason"] = reason
        self.history.append(record)
        self.core.counters["simplestats.alerts.transitions"] += 1
        if state == FIRING:
            self.core.counters["simplestats.alerts.fired"] += 1
        note = None
        if state in (FIRING, RESOLVED):
            note = self._notification(rule, inst, now, fired_for=fired_for)
        self.core.journal.append([["at", inst.to_json(), record, note]])

    def muted(self, rule_id, series, now=None):
        """
        The silence that mutes C{series} under rule C{rule_id} now, or L{None}.
        """
        if not self.silences:
            return None
        if now is None:
            now = self.clock.seconds()
        for silence in self.silences.values():
            if (silence["rule_id"] == rule_id and silence["until"] > now
                    and silence.get("series") in (None, series)):
                return silence
        return None

    def link(self, series, since, now):
        """
        The dashboard's URL showing C{series} around C{since}.
        """
        return "%s/?series=%s&from=%d&until=%d" % (
            self.base_url, quote(series, safe=""), int(since - 1800), int(max(now, since) + 600))

    def _notification(self, rule, inst, now, fired_for=None, repeat=False):
        """
        The notification of C{inst}'s state now, queued for every channel
        of the rule (none when muted); returned to be journaled.
        """
        inst.notified_at = now
        if self.muted(rule.id, inst.series, now) is not None:
            self.core.counters["simplestats.alerts.muted"] += 1
            return None
        if not rule.spec["notify"]:
            return None
        note = {"id": "%s:%s:%d%s" % (rule.id, inst.series, inst.seq, ":r%d" % now if repeat else ""),
                "rule": rule.name, "rule_id": rule.id, "series": inst.series,
                "state": inst.state, "value": _round(inst.value), "threshold": inst.threshold,
                "condition": rule.kind, "field": rule.field, "since": inst.since,
                "fired_at": inst.fired_at, "time": now, "repeat": repeat,
                "url": self.link(inst.series, inst.fired_at or inst.since, now)}
        if fired_for is not None:
            note["fired_for"] = _round(fired_for)
        self.outbox[note["id"]] = {"note": note, "rule_id": rule.id,
                                   "channels": list(range(len(rule.spec["notify"])))}
        if self.started:
            self._later(0, self._send, note["id"])
        return note

    def _send(self, note_id):
        entry = self.outbox.get(note_id)
        if entry is None:
            return
        for index in list(entry["channels"]):
            self._deliver(note_id, index, 1)

    def _deliver(self, note_id, index, attempt):
        """
        Queue one try of one channel; at most L{MAX_IN_FLIGHT} run at once,
        so a burst of alerts never opens thousands of connections.
        """
        self.waiting.append((note_id, index, attempt))
        self._pump()

    def _pump(self):
        while self.waiting and self.in_flight < MAX_IN_FLIGHT and self.started:
            self._attempt(*self.waiting.popleft())

    def _attempt(self, note_id, index, attempt):
        entry = self.outbox.get(note_id)
        if entry is None or index not in entry["channels"]:
            return
        rule = self.rules.get(entry["rule_id"])
        if rule is None or index >= len(rule.spec["notify"]):
            self._done(note_id, index, "rule gone")
            return
        channel = rule.spec["notify"][index]
        counters = self.core.counters
        counters["simplestats.alerts.attempts"] += 1
        self.in_flight += 1
        try:
            d = self.deliver_to(channel, entry["note"])
        except Exception:
            d = defer.fail()

        def over(result):
            self.in_flight -= 1
            self._later(0, self._pump)
            return result
        d.addBoth(over)

        def sent(_):
            counters["simplestats.alerts.sent"] += 1
            counters["simplestats.alerts.sent.%s" % (channel["type"],)] += 1
            status = self.status.setdefault(rule.id, {})
            status["last_delivery"] = self.clock.seconds()
            status["deliveries"] = status.get("deliveries", 0) + 1
            self._done(note_id, index, "sent")

        def failed(failure):
            counters["simplestats.alerts.errors.%s" % (channel["type"],)] += 1
            status = self.status.setdefault(rule.id, {})
            status["last_error"] = "%s: %s" % (channel["type"], failure.getErrorMessage())
            status["last_error_at"] = self.clock.seconds()
            status["failures"] = status.get("failures", 0) + 1
            if attempt >= TRIES:
                counters["simplestats.alerts.failed"] += 1
                self.log.warn("alert {rule}: {kind} gave up after {tries} tries: {error}",
                              rule=rule.name, kind=channel["type"], tries=attempt,
                              error=failure.getErrorMessage())
                self._done(note_id, index, "failed")
                return
            counters["simplestats.alerts.retries"] += 1
            wait = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
            self._later(wait, self._deliver, note_id, index, attempt + 1)

        d.addCallbacks(sent, failed)
        d.addErrback(lambda failure: self.log.failure("alert delivery bookkeeping failed",
                                                      failure))

    def _done(self, note_id, index, outcome):
        entry = self.outbox.get(note_id)
        if entry is None:
            return
        if index in entry["channels"]:
            entry["channels"].remove(index)
        if not entry["channels"]:
            del self.outbox[note_id]
        self.core.journal.append([["an", note_id, index, outcome]])

    # -- silences --------------------------------------------------------------

    def put_silence(self, silence, journal=True):
        self.silences[silence["id"]] = silence
        if journal:
            self.core.journal.append([["as", silence]])

    def delete_silence(self, silence_id, journal=True):
        if self.silences.pop(silence_id, None) is None:
            return False
        if journal:
            self.core.journal.append([["asd", silence_id]])
        return True

    def fresh_id(self, taken):
        while True:
            new = self.new_id()
            if new not in taken:
                return new

    # -- reads ---------------------------------------------------------------------

    def alerts(self, states=None, limit=None, rule_id=None):
        """
        C{(rows, counts)}: the instances (in C{states}, of C{rule_id}),
        firing first, then pending, resolved, ok, newest first in each, the
        first C{limit} of them as rows; how many there are in each state.
        """
        now = self.clock.seconds()
        chosen = []
        counts = {}
        for inst in self.instances.values():
            if (states and inst.state not in states) or inst.rule_id not in self.rules:
                continue
            if rule_id is not None and inst.rule_id != rule_id:
                continue
            counts[inst.state] = counts.get(inst.state, 0) + 1
            chosen.append(inst)
        chosen.sort(key=lambda i: (STATE_ORDER[i.state], -i.since, i.rule_id, i.series))
        rows = []
        for inst in chosen[:limit] if limit else chosen:
            rule = self.rules[inst.rule_id]
            silence = self.muted(rule.id, inst.series, now)
            rows.append({"rule": rule.name, "rule_id": rule.id, "series": inst.series,
                         "state": inst.state, "value": _round(inst.value),
                         "threshold": inst.threshold, "since": inst.since,
                         "fired_at": inst.fired_at, "condition": rule.kind,
                         "field": rule.field, "muted": silence is not None,
                         "muted_until": silence["until"] if silence else None,
                         "url": self.link(inst.series, inst.fired_at or inst.since, now)})
        return rows, counts

    def between(self, start, until):
        return [r for r in self.history if start <= r["time"] <= until]

    def rule_statuses(self, rule_ids=None):
        """
        C{{rule id: status}}: deliveries, the last error, how many instances
        are in each state (one pass over the instances), whether muted.
        """
        wanted = set(self.rules if rule_ids is None else rule_ids)
        out = {}
        for rid in wanted:
            status = dict(self.status.get(rid, {}))
            status["instances"] = {}
            status["muted"] = self.muted(rid, None) is not None
            out[rid] = status
        for (rid, _), inst in self.instances.items():
            if rid in out:
                counts = out[rid]["instances"]
                counts[inst.state] = counts.get(inst.state, 0) + 1
        return out

    def rule_status(self, rule_id):
        return self.rule_statuses([rule_id])[rule_id]

    # -- durability --------------------------------------------------------------

    def to_json(self):
        return {"format": FORMAT,
                "rules": [r.spec for r in self.rules.values()],
                "instances": [i.to_json() for i in self.instances.values() if self._kept(i)],
                "silences": list(self.silences.values()),
                "history": list(self.history),
                # Copies: the header is encoded later, the journal rotated now.
                "outbox": [dict(e, channels=list(e["channels"])) for e in self.outbox.values()],
                "status": {rid: dict(status) for rid, status in self.status.items()}}

    def _kept(self, inst):
        """
        Whether a snapshot keeps C{inst}: not a threshold instance that never
        left ok (it holds nothing its next bucket does not make again; most
        instances are those, and a snapshot is taken on the reactor).
        """
        if inst.seq or inst.state != OK:
            return True
        rule = self.rules.get(inst.rule_id)
        return rule is not None and rule.kind not in ("above", "below")

    def load(self, data):
        """
        Take back L{to_json} (from a snapshot; L{None} from one written
        before alerts: nothing held).
        """
        self.rules.clear()
        self.instances.clear()
        self.silences.clear()
        self.history.clear()
        self.outbox.clear()
        self.status = {}
        if data:
            for spec in data.get("rules", ()):
                self.rules[spec["id"]] = Rule(spec, self.steps)
            for row in data.get("instances", ()):
                inst = Instance.from_json(row)
                self.instances[(inst.rule_id, inst.series)] = inst
            for silence in data.get("silences", ()):
                self.silences[silence["id"]] = silence
            self.history.extend(data.get("history", ()))
            for entry in data.get("outbox", ()):
                self.outbox[entry["note"]["id"]] = entry
            self.status = dict(data.get("status") or {})
        self._rules_changed()

    def replay(self, entry):
        """
        Apply one journal entry of an alert kind (see the module).
        """
        kind = entry[0]
        if kind == "ar":
            self.put_rule(dict(entry[1]), journal=False)
        elif kind == "ard":
            self.delete_rule(entry[1], journal=False)
        elif kind == "at":
            inst = Instance.from_json(entry[1])
            if inst.rule_id in self.rules:
                self.instances[(inst.rule_id, inst.series)] = inst
            if entry[2] is not None:
                self.history.append(entry[2])
            note = entry[3]
            if note is not None and note["rule_id"] in self.rules:
                count = len(self.rules[note["rule_id"]].spec["notify"])
                self.outbox[note["id"]] = {"note": note, "rule_id": note["rule_id"],
                                           "channels": list(range(count))}
        elif kind == "an":
            out = self.outbox.get(entry[1])
            if out is not None and entry[2] in out["channels"]:
                out["channels"].remove(entry[2])
                if not out["channels"]:
                    del self.outbox[entry[1]]
        elif kind == "as":
            self.silences[entry[1]["id"]] = dict(entry[1])
        elif kind == "asd":
            self.silences.pop(entry[1], None)

    KINDS = ("ar", "ard", "at", "an", "as", "asd")

    # -- running -------------------------------------------------------------------

    def start(self):
        """
        Begin evaluating (after recovery) and send what a restart left
        undelivered (recent enough).
        """
        if self.started:
            return
        self.started = True
        self.store.observe(self)
        now = self.clock.seconds()
        for note_id, entry in list(self.outbox.items()):
            if now - entry["note"]["time"] > OUTBOX_TTL:
                del self.outbox[note_id]
                self.core.counters["simplestats.alerts.expired"] += 1
            else:
                self._later(0, self._send, note_id)

    def stop(self):
        if not self.started:
            return
        self.started = False
        self.store.unobserve(self)
        for call in self.calls:
            if call.active():
                call.cancel()
        self.calls = []
        self._stopped_cursor = None
        self._sweep_cursor = None
        # Undelivered: still in the outbox, sent after the restart.
        self.waiting.clear()
