"""
How long the reactor was held: a timer asks to be called every 10 ms and
measures how late each call comes.  A handler, a fold or a file that holds
the reactor for 300 ms shows up as a call about 300 ms late.

The lateness is kept as per-second maxima for the last few minutes (what a
benchmark reads back for the time of one operation, from C{/api/health})
and as the gauge C{simplestats.reactor.max_lag_ms}: the longest lateness
over the last C{window} seconds.
"""

from collections import deque

GAUGE = "simplestats.reactor.max_lag_ms"


class LagMonitor:
    """
    @param clock: schedules the calls (C{callLater}).
    @param timer: a monotonic clock in seconds that keeps running while the
        reactor is held (C{time.perf_counter}); in tests the fake clock's
        C{seconds}.
    @param gauges: the server's own gauges (L{server.core.ingest.IngestCore.gauges}).
    @param wall: the time the per-second maxima are labelled with
        (C{clock.seconds}).
    """

    def __init__(self, clock, timer, gauges, interval=0.01, window=5.0, keep=300):
        self.clock = clock
        self.timer = timer
        self.gauges = gauges
        self.interval = interval
        self.window = window
        self.seconds = deque(maxlen=keep)  # [second, max lateness in ms]
        self.longest_ms = 0.0
        self._call = None
        self._due = None

    def start(self):
        self._due = self.timer() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def stop(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self):
        now = self.timer()
        late_ms = max(0.0, (now - self._due) * 1000.0)
        self.note(late_ms, self.clock.seconds())
        self._due = now + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def note(self, late_ms, wall):
        """
        Record one lateness of C{late_ms} observed at time C{wall}.
        """
        second = int(wall)
        seconds = self.seconds
        if seconds and seconds[-1][0] == second:
            if late_ms > seconds[-1][1]:
                seconds[-1][1] = late_ms
        else:
            seconds.append([second, late_ms])
        if late_ms > self.longest_ms:
            self.longest_ms = late_ms
        self.gauges[GAUGE] = self.recent_max(wall)

    def recent_max(self, wall, span=None):
        """
        The longest lateness in ms over the C{span} seconds up to C{wall}
        (default: the gauge's window).
        """
        since = wall - (self.window if span is None else span)
        return max((ms for second, ms in self.seconds if second + 1 > since), default=0.0)

    def status(self, wall):
        return {
            "max_lag_ms": round(self.recent_max(wall), 3),
            "window": self.window,
            "longest_ms": round(self.longest_ms, 3),
            # Per-second maxima, oldest first: [unix second, ms].
            "seconds": [[s, round(ms, 3)] for s, ms in self.seconds],
        }
