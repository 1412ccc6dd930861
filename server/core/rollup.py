"""
The rollup timer's step: close due buckets (in slices, so a tick over many
series never holds the reactor for long), then emit the server's own series,
apply retention to every series (in slices too) and expire idle series on
their own intervals.
"""

from twisted.logger import Logger


class RollupTimer:
    """
    Called by a C{LoopingCall} every C{rollup_interval}.  A tick that needs
    more than one slice goes on in later reactor turns; a call that finds
    one still under way does nothing.
    """

    log = Logger()

    def __init__(self, store, core, snapshotter, clock, timer, slice_seconds=0.02,
                 emit_every=5.0, expire_every=60.0, sweep_every=60.0):
        self.store = store
        self.core = core
        self.snapshotter = snapshotter
        self.clock = clock
        self.timer = timer
        self.slice_seconds = slice_seconds
        self.emit_every = emit_every
        self.expire_every = expire_every
        self.sweep_every = sweep_every
        self.last_emit = self.last_expiry = self.last_sweep = clock.seconds()
        self.sweeping = False
        self.running = False
        self.work = self.longest = 0.0
        self.closed = self.slices = 0

    def __call__(self):
        if self.running:
            return
        self.running = True
        self.work = self.longest = 0.0
        self.closed = self.slices = 0
        self._slice()

    def _slice(self):
        began = self.timer()
        try:
            closed, finished = self.store.tick(self.clock.seconds(),
                                               deadline=began + self.slice_seconds,
                                               timer=self.timer)
        except Exception:
            # Logged and counted; the next timer call starts a fresh tick.
            self.running = False
            self.core.counters["simplestats.errors.rollup"] += 1
            self.log.failure("rollup tick failed; it will run again")
            return
        spent = self.timer() - began
        self.work += spent
        self.longest = max(self.longest, spent)
        self.closed += closed
        self.slices += 1
        if not finished:
            self.clock.callLater(0, self._slice)
            return
        self.running = False
        gauges = self.core.gauges
        gauges["simplestats.rollup.tick_ms"] = self.work * 1000.0
        gauges["simplestats.rollup.longest_slice_ms"] = self.longest * 1000.0
        gauges["simplestats.rollup.closed_buckets"] = float(self.closed)
        self._periodic()

    def _periodic(self):
        now = self.clock.seconds()
        if now - self.last_emit >= self.emit_every:
            self.last_emit = now
            status = self.snapshotter.status
            gauges = self.core.gauges
            if status["duration"] is not None:
                gauges["simplestats.snapshot.seconds"] = status["duration"]
                gauges["simplestats.snapshot.bytes"] = float(status["bytes"])
                gauges["simplestats.snapshot.max_block_ms"] = status["max_block"] * 1000.0
            self.core.emit_own_metrics()
        if now - self.last_expiry >= self.expire_every:
            self.last_expiry = now
            self.core.expire_idle(now)
        if now - self.last_sweep >= self.sweep_every and not self.sweeping:
            self.last_sweep = now
            self.sweeping = True
            self._sweep()

    def _sweep(self):
        """
        One slice of the retention sweep; the series it finds with nothing
        left in any tier are deleted through the journal, as a deletion.
        """
        began = self.timer()
        try:
            empty, finished = self.store.sweep(self.clock.seconds(),
                                               deadline=began + self.slice_seconds,
                                               timer=self.timer)
            if empty:
                deleted = self.core.delete(empty, "retention")
                self.core.counters["simplestats.series.expired_empty"] += len(deleted)
        except Exception:
            self.sweeping = False
            self.core.counters["simplestats.errors.sweep"] += 1
            self.log.failure("retention sweep failed; it will run again")
            return
        if finished:
            self.sweeping = False
        else:
            self.clock.callLater(0, self._sweep)
