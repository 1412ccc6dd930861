"""
Graphite plaintext over TCP and UDP (port 2003): lines of
C{name value [timestamp]} (L{server.receivers.parse_carbon}) handed to the
ingest core as samples or gauges (C{--carbon-values}).

Carbon answers nothing, and neither do we: a bad line is counted in
C{simplestats.carbon.bad} and logged at a bounded rate, and the connection
goes on (an over-long line too: it is skipped up to its end).  Points are
journaled before they count, as every point is (L{IngestCore.submit}); a
connection whose reads wait on the journal writer stops reading until it
catches up.
"""

import socket

from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin

from server.core.logutil import BoundedLog
from server.core.model import ParseError
from server.receivers.fdlimit import REFUSAL_SLACK
from server.receivers.parse_carbon import (CARBON_VALUE_TYPES, parse_carbon_line,
                                           parse_carbon_packet)
from server.receivers.statsd import JOURNAL_HIGH_WATER, RECEIVE_BUFFER
from server.receivers.tcp import MAX_HELD_READS

TRANSPORT = "carbon"


class CarbonLineProtocol(LineOnlyReceiver, TimeoutMixin):
    """
    One plaintext connection.  The lines of one read go to the core as one
    submission.  A connection that completes no line for
    C{--tcp-idle-timeout} seconds is closed.
    """

    delimiter = b"\n"
    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self.MAX_LENGTH = factory.settings.carbon_max_line_length
        self.peer = "?"
        self.items = []
        # Reads whose journal write has not yet been confirmed.
        self._unwritten = 0
        self._journal_paused = False
        self._recovery_paused = False
        # Inside an over-long line: bytes are dropped up to its end.
        self._skipping = False
        self.callLater = factory.clock.callLater

    def connectionMade(self):
        factory = self.factory
        factory.live += 1
        peer = self.transport.getPeer()
        self.peer = "%s:%s" % (getattr(peer, "host", "?"), getattr(peer, "port", "?"))
        if factory.open_connections() >= factory.settings.max_connections:
            factory.core.counters["simplestats.carbon.refused_connections"] += 1
            factory.bad_log.warn("Graphite connection from {peer} refused: {limit} TCP"
                                 " connections are open", peer=self.peer,
                                 limit=factory.settings.max_connections)
            self.transport.loseConnection()
            return
        factory.connections.add(self)
        factory.core.counters["simplestats.carbon.connections"] += 1
        factory.gauge()
        self.setTimeout(factory.settings.tcp_idle_timeout or None)
        recovery = factory.recovery
        if recovery is not None and recovery.holding:
            # Lines wait in the socket until start-up has recovered the store.
            self._recovery_paused = True
            self.transport.pauseProducing()
            recovery.when_open(self._recovered)

    def connectionLost(self, reason):
        self.setTimeout(None)
        factory = self.factory
        factory.live -= 1
        if self in factory.connections:
            factory.connections.discard(self)
            factory.gauge()
            if self._buffer.strip() and not self._skipping:
                # Carbon drops it too: the line may have been cut anywhere.
                factory.core.counters["simplestats.carbon.bad"] += 1
                factory.bad_log.warn("Graphite connection from {peer} closed in the middle of a"
                                     " line: {line} dropped", peer=self.peer,
                                     line=_excerpt(self._buffer))
        self._buffer = b""

    def timeoutConnection(self):
        self.factory.core.counters["simplestats.carbon.idle_timeouts"] += 1
        self.transport.loseConnection()

    def _recovered(self):
        self._recovery_paused = False
        if not self._journal_paused:
            self.transport.resumeProducing()

    def dataReceived(self, data):
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return
            self._skipping = False
            data = data[end + 1:]
        self.items = []
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if len(line) > self.MAX_LENGTH:
                self.lineLengthExceeded(line)
            else:
                self.lineReceived(line)
        if len(self._buffer) > self.MAX_LENGTH:
            self.lineLengthExceeded(self._buffer)
            self._buffer = b""
            self._skipping = True
        self._submit()

    def lineReceived(self, line):
        self.resetTimeout()
        factory = self.factory
        counters = factory.core.counters
        if not line.strip():
            return
        counters["simplestats.carbon.lines"] += 1
        try:
            self.items.append(parse_carbon_line(line, factory.limits, factory.kind))
        except ParseError as e:
            counters["simplestats.carbon.bad"] += 1
            factory.bad_log.warn("bad Graphite line from {peer}: {reason}",
                                 peer=self.peer, reason=str(e))

    def lineLengthExceeded(self, line):
        counters = self.factory.core.counters
        counters["simplestats.carbon.bad"] += 1
        counters["simplestats.carbon.too_long"] += 1
        self.factory.bad_log.warn("Graphite line from {peer} longer than {limit} bytes: dropped"
                                  " ({line})", peer=self.peer, limit=self.MAX_LENGTH,
                                  line=_excerpt(line))

    def _submit(self):
        items, self.items = self.items, []
        if not items:
            return
        factory = self.factory
        refused = factory.core.submit(items, TRANSPORT)
        if refused:
            position, message = refused[0]
            more = "" if len(refused) == 1 else " (and %d more refused)" % (len(refused) - 1,)
            factory.bad_log.warn("Graphite point {name} from {peer} refused: {reason}{more}",
                                 name=items[position].name, peer=self.peer, reason=message,
                                 more=more)
        if len(refused) == len(items):
            return
        self._unwritten += 1
        factory.core.durable().addCallbacks(self._written, self._not_written)
        if self._unwritten > MAX_HELD_READS and not self._journal_paused:
            factory.core.counters["simplestats.carbon.paused_for_journal"] += 1
            self._journal_paused = True
            self.transport.pauseProducing()

    def _written(self, _):
        self._unwritten -= 1
        if self._journal_paused and self._unwritten <= MAX_HELD_READS // 2:
            self._journal_paused = False
            if not self._recovery_paused:
                self.transport.resumeProducing()

    def _not_written(self, failure):
        self.factory.core.counters["simplestats.journal.errors"] += 1
        self.factory.bad_log.warn("journal write failed: {error}",
                                  error=failure.getErrorMessage())
        self._written(None)


class CarbonFactory(Factory):
    """
    The Graphite plaintext TCP port.  Its connections count against
    C{--max-connections} together with those of the tuple port
    (C{others}: the tuple port's open connections).
    """

    noisy = False

    def __init__(self, core, settings, clock, recovery=None, others=()):
        self.core = core
        self.settings = settings
        self.recovery = recovery
        self.clock = clock
        self.limits = settings.limits
        self.kind = CARBON_VALUE_TYPES[settings.carbon_values]
        self.others = others
        self.connections = set()
        # Every open connection, refused ones still closing included.
        self.live = 0
        self.bad_log = BoundedLog(CarbonLineProtocol.log, clock)

    def open_connections(self):
        return len(self.connections) + len(self.others)

    def buildProtocol(self, addr):
        if self.live >= self.settings.max_connections + REFUSAL_SLACK:
            self.core.counters["simplestats.carbon.refused_connections"] += 1
            return None
        return CarbonLineProtocol(self)

    def gauge(self):
        self.core.gauges["simplestats.carbon.open_connections"] = float(len(self.connections))


class CarbonDatagramProtocol(DatagramProtocol):
    """
    The Graphite plaintext UDP port: any number of lines per datagram; the
    good ones are kept, the bad ones counted and logged.

    While start-up recovers the store, the port stops reading (the
    kernel's receive buffer holds what comes meanwhile) and the datagrams
    already read wait here, with their arrival time.
    """

    log = Logger()
    noisy = False

    def __init__(self, core, settings, clock, recovery=None):
        self.core = core
        self.clock = clock
        self.recovery = recovery
        self.limits = settings.limits
        self.kind = CARBON_VALUE_TYPES[settings.carbon_values]
        self.max_packet_size = settings.max_packet_size
        self.bad_log = BoundedLog(self.log, clock)
        self.held = []

    def startProtocol(self):
        handle = getattr(self.transport, "getHandle", None)
        if handle is not None:
            try:
                handle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            except OSError as e:
                self.log.warn("could not enlarge the UDP receive buffer: {error}", error=e)

    def datagramReceived(self, data, addr):
        counters = self.core.counters
        counters["simplestats.carbon.packets"] += 1
        peer = "%s:%s" % addr[:2]
        if len(data) > self.max_packet_size:
            # Cut by the read: its last line could parse as another value.
            counters["simplestats.carbon.bad"] += 1
            counters["simplestats.carbon.too_large"] += 1
            self.bad_log.warn("Graphite packet from {peer} is larger than {limit} bytes: dropped",
                              peer=peer, limit=self.max_packet_size)
            return
        recovery = self.recovery
        if recovery is not None and recovery.holding:
            if not self.held:
                self.transport.stopReading()
                recovery.when_open(self._recovered)
            self.held.append((data, peer, self.clock.seconds()))
            return
        self._take(data, peer)

    def _recovered(self):
        held, self.held = self.held, []
        for data, peer, now in held:
            self._take(data, peer, now)
        self.transport.startReading()

    def _take(self, data, peer, now=None):
        core = self.core
        samples, bad = parse_carbon_packet(data, self.limits, self.kind)
        core.counters["simplestats.carbon.lines"] += len(samples) + len(bad)
        if bad:
            core.counters["simplestats.carbon.bad"] += len(bad)
            number, reason = bad[0]
            self.bad_log.warn("bad Graphite line {number} from {peer}: {reason}",
                              number=number, peer=peer, reason=reason)
        if not samples:
            return
        refused = core.submit(samples, TRANSPORT, now=now)
        if refused:
            position, message = refused[0]
            self.bad_log.warn("Graphite point {name} from {peer} refused: {reason}",
                              name=samples[position].name, peer=peer, reason=message)
        if core.journal.pending_bytes > JOURNAL_HIGH_WATER:
            core.durable().addErrback(lambda failure: self.bad_log.warn(
                "journal write failed: {error}", error=failure.getErrorMessage()))


def _excerpt(line, width=60):
    text = line[:width].decode("utf-8", "replace")
    return text + "..." if len(line) > width else text
