"""
Garbage collection that does not hold the reactor.

The store is millions of long-lived objects (series, aggregates, sketches;
2.2M tracked objects at 100k series) and a full collection walks every one
of them: 0.5-1.1 s with the reactor stopped, every few minutes, whatever
the load.  Reference counting frees the store's garbage (closed buckets,
folded runs, deleted series hold no cycles), so the cyclic collector only
has to look at what is new.  Every C{every} seconds, L{GcPolicy.freeze}
collects the young generations (tens of ms at most) and moves every object
that survived into the permanent generation (C{gc.freeze}), which no later
collection walks: a full collection then costs in proportion to what was
made since, not to the store.

The price: a reference cycle among objects that were frozen and became
garbage later is not collected (objects without cycles are freed as
always).  The server makes few such cycles (a closed connection's protocol
and transport); C{simplestats.gc.frozen} shows the frozen count, which
follows the store.

Each collection is timed (C{gc.callbacks}): the gauge
C{simplestats.gc.pause_ms} is the longest pause between two freezes.
"""

import gc
import time

# Fewer young collections than CPython's (700, 10, 10), and a middle
# generation collected every second young one: everything that survives a
# young collection (100k new series: a million objects) waits in it until
# then, and with 20 young collections between (the earlier setting) one
# collection walked a million objects, 210-280 ms with the reactor stopped;
# with 2, 44-70 ms.  A full one only after many of them (it walks only what
# is not frozen).
THRESHOLDS = (50_000, 2, 1000)


class GcPolicy:
    """
    @param gauges: the server's own gauges (L{server.core.ingest.IngestCore.gauges}).
    """

    def __init__(self, gauges, timer=time.perf_counter, collector=gc):
        self.gauges = gauges
        self.timer = timer
        self.gc = collector
        self.longest = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.period_ms = 0.0
        self._began = None

    def install(self):
        self.gc.set_threshold(*THRESHOLDS)
        self.gc.callbacks.append(self._callback)

    def uninstall(self):
        if self._callback in self.gc.callbacks:
            self.gc.callbacks.remove(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._began = self.timer()
            return
        if self._began is None:
            return
        ms = (self.timer() - self._began) * 1000.0
        self._began = None
        generation = info.get("generation", 2)
        self.collections[generation] += 1
        if ms > self.longest[generation]:
            self.longest[generation] = ms
        if ms > self.period_ms:
            self.period_ms = ms

    def freeze(self):
        """
        Collect the young generations, then freeze what survived.
        """
        if not self.gc.isenabled():
            # Start-up turned collection off while it recovered the store:
            # all of it is long-lived, freeze it without walking it.
            self.gc.freeze()
            self.gc.enable()
        else:
            self.gc.collect(1)
            self.gc.freeze()
        self.gauges["simplestats.gc.frozen"] = float(self.gc.get_freeze_count())
        self.gauges["simplestats.gc.pause_ms"] = self.period_ms
        self.period_ms = 0.0

    def status(self):
        return {"longest_ms": [round(ms, 3) for ms in self.longest],
                "collections": list(self.collections),
                "frozen": self.gc.get_freeze_count()}
