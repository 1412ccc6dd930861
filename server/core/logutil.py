"""
Bounded logging of bad input: a flood of bad lines must not become a flood
of log lines.
"""


class BoundedLog:
    """
    Lets at most C{burst} messages through per C{interval} seconds of
    C{clock} time and says how many it held back.
    """

    def __init__(self, logger, clock, burst=10, interval=60.0):
        self.logger = logger
        self.clock = clock
        self.burst = burst
        self.interval = interval
        self.window_start = None
        self.sent = 0
        self.suppressed = 0

    def warn(self, fmt, **fields):
        now = self.clock.seconds()
        if self.window_start is None or now - self.window_start >= self.interval:
            if self.suppressed:
                self.logger.warn("{count} more bad inputs were not logged in the last {interval:.0f} s",
                                 count=self.suppressed, interval=self.interval)
            self.window_start = now
            self.sent = 0
            self.suppressed = 0
        if self.sent < self.burst:
            self.sent += 1
            self.logger.warn(fmt, **fields)
        else:
            self.suppressed += 1
