"""
Forwarding closed buckets to a Graphite cluster.

L{Forwarder} is a store observer: each bucket of the forwarded tier that
closes becomes Graphite plaintext lines (L{server.outputs.lines}), routed to
every destination (C{all}) or to one by carbon's consistent-hashing ring
(C{hash}), gathered for the rest of the reactor turn and then appended to
each destination's queue file (L{server.outputs.spool}) in one write; the
links (L{server.outputs.links}) send the queues.

What a restart must not send twice: the closes that recovery makes again.
With every write to the queues the forwarder records (in
C{DATA_DIR/forward/closed.json}) the bucket end C{done} at or before which
every bucket of the tier had closed and been queued.  While recovering, a bucket ending
at or before the recorded C{done} is not queued again -- unless it is a
bucket the snapshot had closed already, reopened by a replayed late point
(its stored row is then more than what just closed), which is queued again
with its merged value (the same value, at worst, as the one sent).
"""

import hashlib
import json
import os
import re
from bisect import bisect_left

from twisted.logger import Logger

from server.outputs.lines import bucket_lines, kind, plan
from server.outputs.ring import ConsistentHashRing
from server.outputs.spool import Spool

CLOSED = "closed.json"
CLOSED_FORMAT = "simplestats-forward-closed"


def _same(a, b):
    return all(x == y or (x != x and y != y) for x, y in zip(a, b))


def destination_slug(destination):
    """
    A name for a destination that is a Graphite node and a file name:
    C{tcp_10_0_0_1_2003} (an instance is added: C{_a}).
    """
    kind = "udp" if destination.udp else "tcp"
    text = "%s_%s_%d" % (kind, destination.host, destination.port)
    if destination.instance:
        text += "_" + destination.instance
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    if len(slug) > 80:
        slug = slug[:60] + "_" + hashlib.sha1(text.encode()).hexdigest()[:12]
    return slug


class Destination:
    """
    One destination: its settings, queue and link.
    """

    def __init__(self, spec, spool, link):
        self.spec = spec
        self.slug = destination_slug(spec)
        self.spool = spool
        self.link = link
        self.pending = []
        self.dropped_lines = 0
        self.queued_total = 0


class Forwarder:
    """
    @ivar destinations: the L{Destination}s, in the order of the settings.
    """

    log = Logger()

    def __init__(self, settings, store, counters, gauges, clock, directory, make_link,
                 recovering=lambda: False):
        """
        @param make_link: C{make_link(spec, spool, name) -> link}.
        @param recovering: says whether start-up recovery is still closing
            buckets (whose re-closes are checked against C{closed.json}).
        """
        self.store = store
        self.counters = counters
        self.gauges = gauges
        self.clock = clock
        self.directory = directory
        self.recovering = recovering
        self.names = settings.forward_names
        self.prefix = settings.forward_prefix
        self.mode = settings.forward_mode
        steps = [tier.step for tier in store.tiers]
        self.tier = steps.index(settings.forward_tier)
        self.step = settings.forward_tier
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.destinations = []
        for spec in settings.forward:
            slug = destination_slug(spec)
            spool = Spool(os.path.join(directory, slug), settings.forward_memory_bytes,
                          settings.forward_disk_bytes, clock)
            self.destinations.append(Destination(spec, spool, make_link(spec, spool, str(spec))))
        self.ring = None
        if self.mode == "hash" and len(self.destinations) > 1:
            nodes = [(d.spec.host, d.spec.instance) for d in self.destinations]
            self.ring = ConsistentHashRing(nodes, settings.forward_replicas)
            self._by_node = {node: i for i, node in enumerate(nodes)}
        # Plans by kind of series (a few); in hash mode, the destination of
        # each line of each series (its paths' places on the ring).
        self.plans = {}
        self.targets = {}
        self._flush_call = None
        self.recorded_done = self._read_closed()
        self.done = self.recorded_done
        self.lines_pending = 0

    # -- the store's events ---------------------------------------------------

    def bucket_closed(self, tier, series, start, agg, row):
        if tier != self.tier:
            return
        reclosed = False
        stored = series.stored[tier]
        if stored is not None:
            # What /render shows: a bucket closed again (a late point) is
            # sent with its stored row, the merge of every close.
            i = self._stored_index(stored, start // self.step)
            if i is not None and not _same((stored.columns[0][i],), row[:1]):
                reclosed = True
                row = stored.row(i)
        if (not reclosed and self.recorded_done is not None
                and start + self.step <= self.recorded_done and self.recovering()):
            # Queued before the restart (recovery closes it again).
            self.counters["simplestats.forward.replayed_buckets_skipped"] += 1
            return
        the_plan = self.plans.get(kind(series))
        if the_plan is None:
            the_plan = self.plans[kind(series)] = plan(series, self.names, self.prefix)
        lines = bucket_lines(the_plan, series, row, start, self.step)
        if not lines:
            return
        if self.ring is None:
            out = [line for _, line in lines]
            for destination in self.destinations:
                destination.pending.extend(out)
        else:
            targets = self._targets(series, the_plan)
            destinations = self.destinations
            for number, line in lines:
                destinations[targets[number]].pending.append(line)
        self.lines_pending += len(lines)
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self.flush)

    def _targets(self, series, the_plan):
        entry = self.targets.get(series.key)
        if entry is None or entry[0] is not the_plan:
            if len(self.targets) > 2 * len(self.store.series) + 1000:
                self.targets.clear()  # series deleted meanwhile
            by_node = self._by_node
            get_node = self.ring.get_node
            entry = self.targets[series.key] = (the_plan, tuple(
                by_node[get_node(path)] for path in the_plan.paths(series)))
        return entry[1]

    @staticmethod
    def _stored_index(stored, number):
        index = stored.index
        i = len(index) - 1
        if i < 0:
            return None
        if index[i] != number:
            i = bisect_left(index, number)
            if i >= len(index) or index[i] != number:
                return None
        return i

    # -- queueing -------------------------------------------------------------

    def flush(self):
        """
        Append what closed since the last flush to each queue (one write
        each), then record how far the tier has closed.
        """
        self._flush_call = None
        for destination in self.destinations:
            pending = destination.pending
            if not pending:
                continue
            destination.pending = []
            data = "".join(pending).encode("utf-8")
            lines = len(pending)
            try:
                queued = destination.spool.append(data, lines)
            except OSError as e:
                self.counters["simplestats.forward.errors.disk"] += 1
                self.log.error("forward queue {name}: cannot write ({error}); {lines} lines"
                               " dropped", name=destination.spec, error=e, lines=lines)
                queued = False
            if queued:
                destination.queued_total += lines
                self.counters["simplestats.forward.lines_queued"] += lines
                destination.link.kick()
            else:
                destination.dropped_lines += lines
                self.counters["simplestats.forward.dropped_lines"] += lines
                if destination.dropped_lines == lines or not destination.dropped_lines % 100000:
                    self.log.warn("forward queue {name} is full (--forward-disk-bytes): dropping"
                                  " new lines ({count} so far)", name=destination.spec,
                                  count=destination.dropped_lines)
        self.lines_pending = 0
        self._record_done()

    def _record_done(self):
        """
        Write C{closed.json}: every bucket of the tier ending at or before
        C{done} closed and is queued.
        """
        store = self.store
        tier = self.tier
        done = store.watermarks[tier]
        for bucket, members in store.open_index[tier].items():
            if members and bucket + self.step <= done:
                done = min(done, bucket)
        if self.recovering() and self.recorded_done is not None:
            done = max(done, self.recorded_done)
        if done == self.done:
            return
        self.done = done
        path = os.path.join(self.directory, CLOSED)
        tmp = path + ".tmp"
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump({"format": CLOSED_FORMAT, "version": 1, "step": self.step,
                           "done": done}, f)
            os.replace(tmp, path)
        except OSError as e:
            self.counters["simplestats.forward.errors.disk"] += 1
            self.log.error("cannot write {path}: {error}", path=path, error=e)

    def _read_closed(self):
        path = os.path.join(self.directory, CLOSED)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self.log.warn("{path} unreadable ({error}): buckets recovery closes again are"
                          " forwarded again", path=path, error=e)
            return None
        if (not isinstance(data, dict) or data.get("format") != CLOSED_FORMAT
                or data.get("step") != self.step or not isinstance(data.get("done"),
                                                                   (int, float))):
            return None
        return data["done"]

    # -- timers and status ----------------------------------------------------

    def check(self):
        """
        The forwarder's timer: confirm delivered lines, update the gauges,
        and record how far the tier has closed again (a late point reopens a
        closed bucket: from now on a restart sends it again).
        """
        self._record_done()
        now = self.clock.seconds()
        gauges = self.gauges
        for destination in self.destinations:
            destination.link.check()
            spool = destination.spool
            prefix = "simplestats.forward.%s." % (destination.slug,)
            gauges[prefix + "queued_lines"] = float(spool.queued_lines)
            gauges[prefix + "queued_bytes"] = float(spool.end - spool.delivered)
            gauges[prefix + "connected"] = 1.0 if destination.link.state in (
                "connected", "sending") else 0.0
            age = spool.oldest_age(now)
            gauges[prefix + "oldest_queued_seconds"] = age or 0.0

    def commit_jobs(self):
        """
        C{[(spool, job)]}: the queues whose delivered position moved.
        """
        out = []
        for destination in self.destinations:
            job = destination.spool.commit_job()
            if job is not None:
                out.append((destination.spool, job))
        return out

    def status(self):
        """
        What C{/api/health} shows under C{forward}.
        """
        now = self.clock.seconds()
        out = []
        for destination in self.destinations:
            spool = destination.spool
            link = destination.link.status()
            age = spool.oldest_age(now)
            out.append(dict(
                link,
                destination=str(destination.spec),
                name=destination.slug,
                connected=link["state"] in ("connected", "sending"),
                queued_lines=spool.queued_lines,
                queued_bytes=spool.end - spool.delivered,
                oldest_queued_seconds=age,
                memory_bytes=spool.held,
                disk_bytes=spool.disk_bytes,
                dropped_lines=destination.dropped_lines,
                lines_queued=destination.queued_total,
            ))
        return {"tier": self.step, "names": self.names, "mode": self.mode,
                "prefix": self.prefix, "destinations": out}

    def start(self):
        for destination in self.destinations:
            destination.link.start()

    def stop(self):
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self.flush()
        for destination in self.destinations:
            destination.link.stop()
            try:
                destination.spool.commit()
            except OSError as e:
                self.log.error("forward queue {name}: cannot record the position ({error});"
                               " the next start sends more again", name=destination.spec,
                               error=e)
            destination.spool.close()
