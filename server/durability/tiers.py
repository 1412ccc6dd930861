"""
Tier changes: a snapshot written with other tier steps (C{--retentions})
rebucketed into the new tiers where that is exact, else refused by name.

A tier whose step the snapshot has keeps its rows and open buckets as they
are (a shorter retention then trims rows on purpose, which the start-up
logs).  An added tier is built from the stored rows of the coarsest tier of
the snapshot whose step divides its own: counters, gauges and the count,
sum, min, max and last of distributions merge exactly; the percentiles of a
distribution are merged weighted by count (approximate, as for a late
point); a set's unique count cannot be merged from rows (that would count a
member seen in two buckets twice), so a set's history is not built in the
new tier (coarser tiers keep it).  A removed tier loses its rows: that is
refused unless C{--drop-removed-tiers} says so; its open buckets, not yet
rolled up, are merged into the next tier, so the coarser tiers lose nothing.

What the snapshot cannot give exactly is refused: a new step that no step
of the snapshot divides, a finer finest tier.

    python -m server.migrate --data-dir DIR --retentions NEW [--drop-removed-tiers]

(L{server.migrate}) does the same offline (the server stopped), keeping the old snapshot as
C{snapshot.jsonl.gz.before-migration-TIME}.
"""

import math

from server.core.aggregate import AGGREGATES
from server.core.model import SET
from server.core.store import Series, StoredTier


class TierMismatch(Exception):
    """
    The snapshot's tiers cannot become the configured ones without losing
    data; the message says why and how to proceed on purpose.
    """


def show_step(step):
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if step >= seconds and step % seconds == 0:
            return "%d%s" % (step // seconds, unit)
    return "%ds" % (step,)


def show_tiers(tiers):
    return ",".join("%s:%s" % (show_step(t.step), "forever" if t.retention is None else
                               show_step(t.retention)) for t in tiers)


class Plan:
    """
    How the snapshot's tiers (steps C{old}) become C{tiers}.

    @ivar sources: per new tier, C{("keep", i)} (the snapshot's tier C{i},
        same step) or C{("build", i)} (built from the rows of tier C{i}).
    @ivar removed: C{(i, target)} per removed tier of the snapshot: its
        open buckets go to new tier C{target} (L{None}: none is coarser).
    """

    def __init__(self, old, tiers, sources, removed):
        self.old = list(old)
        self.tiers = tuple(tiers)
        self.steps = [t.step for t in tiers]
        self.sources = sources
        self.removed = removed
        self.built_rows = [0] * len(tiers)
        self.unbuilt_sets = 0
        self.dropped_rows = 0

    def describe(self):
        """
        One line per change, for the log.
        """
        lines = []
        for j, (kind, i) in enumerate(self.sources):
            if kind == "build":
                lines.append("tier %s is new: built from the %d rows of the %s tier, as far back"
                             " as that tier kept (counters, gauges, sums, min, max exact;"
                             " percentiles merged weighted by count, approximate; sets not built:"
                             " %d set series start it empty)"
                             % (show_step(self.steps[j]), self.built_rows[j],
                                show_step(self.old[i]), self.unbuilt_sets))
        for i, target in self.removed:
            lines.append("tier %s is removed: %d stored rows dropped; its open buckets %s"
                         % (show_step(self.old[i]), self.dropped_rows,
                            "merged into the %s tier" % show_step(self.steps[target])
                            if target is not None else "dropped (no coarser tier)"))
        return lines


def refusal(old, tiers, problem, command=True):
    """
    The message of a L{TierMismatch}.
    """
    text = ("the snapshot was written with tier steps %r, --retentions %s has %r: %s"
            % (list(old), show_tiers(tiers), [t.step for t in tiers], problem))
    if command:
        text += (". To do it on purpose: start with --drop-removed-tiers, or migrate offline"
                 " keeping the old snapshot: python -m server.migrate --data-dir DIR --retentions %s"
                 " --drop-removed-tiers" % (show_tiers(tiers),))
    else:
        text += (". Start with --retentions whose steps the snapshot's divide (or keep its"
                 " steps); nothing was changed")
    return text


def plan(old, tiers, drop_removed=False):
    """
    The L{Plan} from tier steps C{old} to C{tiers}, or L{None} when the
    steps are the same.

    @raise TierMismatch: naming what would be lost.
    """
    old = list(old)
    steps = [t.step for t in tiers]
    if (not old or not all(isinstance(s, int) and s > 0 for s in old)
            or any(b % a for a, b in zip(old, old[1:]))):
        raise TierMismatch(refusal(old, tiers, "the snapshot's steps are not valid tiers",
                                   command=False))
    if old == steps:
        return None
    if steps[0] < old[0]:
        raise TierMismatch(refusal(old, tiers, "a finest tier of %s cannot be built from %s rows"
                                   % (show_step(steps[0]), show_step(old[0])), command=False))
    sources = []
    for step in steps:
        if step in old:
            sources.append(("keep", old.index(step)))
            continue
        divisors = [i for i, s in enumerate(old) if step % s == 0]
        if not divisors:
            raise TierMismatch(refusal(old, tiers, "no tier of the snapshot has a step that %s"
                                       " is a multiple of" % (show_step(step),), command=False))
        sources.append(("build", divisors[-1]))
    removed = []
    for i, step in enumerate(old):
        if step in steps:
            continue
        target = next((j for j, s in enumerate(steps) if s >= step), None)
        if target is not None and steps[target] % step:
            raise TierMismatch(refusal(old, tiers, "the open buckets of the removed %s tier"
                                       " cannot roll up into %s" % (
                                           show_step(step), show_step(steps[target])),
                                       command=False))
        removed.append((i, target))
    if removed and not drop_removed:
        raise TierMismatch(refusal(old, tiers, "the %s tier%s would be removed with %s rows" % (
            ", ".join(show_step(old[i]) for i, _ in removed), "s" if len(removed) > 1 else "",
            "their" if len(removed) > 1 else "its")))
    return Plan(old, tiers, sources, removed)


def rebucket(stored, step, new_step, merge_rows):
    """
    The rows of C{stored} (a L{StoredTier} of C{step}) merged into buckets
    of C{new_step}, oldest first, as a new L{StoredTier}.
    """
    out = StoredTier(len(stored.columns))
    for k in range(len(stored.index)):
        number = stored.index[k] * step // new_step
        out.put(number, stored.row(k), merge_rows)
    return out


def convert_series(series, plan):
    """
    C{series} (decoded with the snapshot's tiers) in the new tiers.
    """
    steps, old = plan.steps, plan.old
    new = Series(series.key, series.type, len(steps))
    new.gauge = series.gauge
    new.value = series.value
    new.value_bucket = (series.value_bucket // steps[0] * steps[0]
                        if series.value_bucket >= 0 else series.value_bucket)
    new.first_seen = series.first_seen
    new.last_seen = series.last_seen
    new.ring.extend(series.ring)
    new.touched = series.touched
    new.total, new.total_sum = series.total, series.total_sum
    merge_rows = AGGREGATES[series.family].merge_rows
    for j, (kind, i) in enumerate(plan.sources):
        stored = series.stored[i]
        if kind == "keep":
            new.stored[j] = stored
            new.open[j] = series.open[i]
        elif stored is not None and len(stored):
            if series.family == SET:
                plan.unbuilt_sets += 1
                continue
            new.stored[j] = rebucket(stored, old[i], steps[j], merge_rows)
            plan.built_rows[j] += len(stored)
    for i, target in plan.removed:
        stored = series.stored[i]
        if stored is not None:
            plan.dropped_rows += len(stored)
        if target is None:
            continue
        step = steps[target]
        into = new.open[target]
        for bucket, agg in sorted(series.open[i].items()):
            start = bucket - bucket % step
            there = into.get(start)
            if there is None:
                into[start] = agg
            else:
                there.merge(agg)
    return new


def convert_watermarks(watermarks, plan):
    out = []
    for j, (kind, i) in enumerate(plan.sources):
        step = plan.steps[j]
        out.append(math.floor(watermarks[i] / step) * step)
    return out


def trimmed_rows(store, now, header_retentions=None):
    """
    C{[(tier index, rows, series)]} of the rows older than each tier's
    retention at C{now}, for the tiers whose retention is shorter than the
    one in C{header_retentions} (per tier, L{None}: forever; all tiers when
    not given): what the retention sweep is about to drop on purpose.
    """
    found = []
    for i, tier in enumerate(store.tiers):
        if tier.retention is None:
            continue
        if header_retentions is not None:
            before = header_retentions[i] if i < len(header_retentions) else None
            if before is not None and before <= tier.retention:
                continue
        first = math.ceil((now - tier.retention) / tier.step)
        rows = series = 0
        for s in store.series.values():
            stored = s.stored[i]
            if stored is not None and len(stored) and stored.index[0] < first:
                rows += stored.span(0, first - 1)[1]
                series += 1
        if rows:
            found.append((i, rows, series))
    return found
