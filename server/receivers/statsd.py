"""
statsd over UDP: packets are parsed and handed to the ingest core.  Bad
metrics are counted and logged (bounded); the packet's good metrics are kept.
"""

import socket

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from server.core.logutil import BoundedLog

# Write the journal early when this much is waiting, whatever the interval.
JOURNAL_HIGH_WATER = 1 << 20
# The socket's receive buffer: room for bursts that arrive while the reactor
# is busy elsewhere.  The kernel default (about 200 small datagrams) drops
# packets after a tenth of a second; the kernel caps this at net.core.rmem_max.
RECEIVE_BUFFER = 4 << 20


class StatsdProtocol(DatagramProtocol):
    log = Logger()
    noisy = False

    def __init__(self, core, limits, clock, max_packet_size=None, recovery=None):
        """
        @param max_packet_size: the largest datagram taken; the port must
            read one byte more, so that a larger one shows (the kernel cuts
            a datagram to the read size without a word).
        @param recovery: while it holds ingest (L{server.durability.recovery.Recovery}),
            packets are queued there and taken after it.
        """
        self.core = core
        self.clock = clock
        self.recovery = recovery
        self.limits = limits
        self.max_packet_size = max_packet_size
        self.bad_log = BoundedLog(self.log, clock)

    def startProtocol(self):
        handle = getattr(self.transport, "getHandle", None)
        if handle is not None:
            try:
                handle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            except OSError as e:
                self.log.warn("could not enlarge the UDP receive buffer: {error}", error=e)

    def datagramReceived(self, data, addr):
        core = self.core
        counters = core.counters
        counters["simplestats.udp.packets"] += 1
        if self.max_packet_size is not None and len(data) > self.max_packet_size:
            # Cut by the read, its last metric could parse as another value.
            counters["simplestats.udp.bad"] += 1
            counters["simplestats.udp.too_large"] += 1
            self.bad_log.warn("statsd packet from {peer} is larger than {limit} bytes: dropped",
                              peer="%s:%s" % addr[:2], limit=self.max_packet_size)
            return
        recovery = self.recovery
        if recovery is not None and recovery.holding:
            recovery.hold_packet(self._take, data, addr, self.clock.seconds())
            return
        self._take(data, addr)

    def _take(self, data, addr, now=None):
        """
        Apply one packet that arrived at C{now} (default: the clock).
        """
        core = self.core
        bad, refused = core.submit_statsd(data, "udp", self.limits, now=now)
        if bad:
            self.bad_log.warn("bad statsd metric from {peer}: {reason}",
                              peer="%s:%s" % addr[:2], reason=bad[0])
        if refused:
            self.bad_log.warn("statsd metric from {peer} refused: {reason}",
                              peer="%s:%s" % addr[:2], reason=refused[0])
        if core.journal.pending_bytes > JOURNAL_HIGH_WATER:
            core.durable().addErrback(lambda failure: self.bad_log.warn(
                "journal write failed: {error}", error=failure.getErrorMessage()))
