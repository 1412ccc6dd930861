"""
The TCP line protocol: one JSON tuple (or a batch of tuples) per line, every
line answered in order with C{--OK} or C{--ERROR <what was wrong>}.

C{--OK} goes out only after the accepted points are written to the journal:
answers for everything that arrived in one read are held until the journal's
writer has written everything queued so far (the reactor goes on meanwhile),
and go out in order.  A connection whose answers pile up stops reading.
"""

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from server.receivers.fdlimit import REFUSAL_SLACK
from server.core.logutil import BoundedLog
from server.core.model import ParseError
from server.receivers.parse_tuple import parse_line

# Reads whose answers may wait for the journal before the connection stops
# reading (it reads again when half of them are out).
MAX_HELD_READS = 16

HINT = b"--Hint: send data of the form [name:str, timestamp:float, data:float]"
HELP = (
    b"--HELP one JSON value per line: [name, ts, value] or [name, ts, value, {tags}];"
    b" value: a number, \"1c\" counter, \"153ms\" timer, \"23g\" gauge, \"+3g\"/\"-2g\" gauge delta,"
    b" \"5h\" histogram, \"5d\" distribution, or a partial aggregate"
    b" {\"type\": \"ms\", \"count\": 12, \"sum\": 1840.5, \"min\": 3.1, \"max\": 410};"
    b" ts: seconds since the epoch or null for now; a JSON array of tuples is a batch (--OK n);"
    b" --quiet: answer errors only; --verbose: answer every line"
)


@implementer(IPushProducer, IHalfCloseableProtocol)
class TupleProtocol(LineOnlyReceiver, TimeoutMixin):
    """
    One client connection.  It registers itself as the producer of its own
    transport: when the client stops reading its answers and the write
    buffer fills up, the connection stops reading lines until it drains.

    A connection that completes no line for C{--tcp-idle-timeout} seconds is
    closed (the timer restarts with each whole line, not with each byte, so
    a client trickling a line out a byte at a time is closed too).
    """

    delimiter = b"\n"
    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self.MAX_LENGTH = factory.settings.max_line_length
        self.quiet = False
        self.answers = []
        self.peer = "?"
        # [answers, ready] for each read, in order, until written.
        self._held = []
        self._held_paused = False
        self._write_paused = False
        self._closing = False
        self.callLater = factory.clock.callLater

    def connectionMade(self):
        factory = self.factory
        factory.live += 1
        peer = self.transport.getPeer()
        self.peer = "%s:%s" % (getattr(peer, "host", "?"), getattr(peer, "port", "?"))
        if len(factory.connections) + len(factory.others) >= factory.settings.max_connections:
            factory.core.counters["simplestats.tcp.refused_connections"] += 1
            self.transport.write(b"--ERROR too many connections (limit %d); try later\r\n"
                                 % (factory.settings.max_connections,))
            self.transport.loseConnection()
            return
        factory.connections.add(self)
        factory.core.counters["simplestats.tcp.connections"] += 1
        factory.gauge()
        self.transport.registerProducer(self, True)
        self.setTimeout(factory.settings.tcp_idle_timeout or None)
        self.transport.write(HINT + b"\r\n")
        recovery = factory.recovery
        if recovery is not None and recovery.holding:
            # Lines wait in the socket until start-up has recovered the store.
            self.transport.pauseProducing()
            recovery.when_open(self.resumeProducing)

    def _lose(self):
        """
        Close once what was written has gone out.  This protocol is its own
        transport's producer: a transport whose producer was paused (a full
        write buffer) resumes the producer when the buffer drains instead of
        closing, and the connection would stay open for ever.
        """
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.setTimeout(None)
        self.factory.live -= 1
        self.factory.connections.discard(self)
        self.factory.gauge()

    def timeoutConnection(self):
        core = self.factory.core
        core.counters["simplestats.tcp.idle_timeouts"] += 1
        if self._write_paused:
            # The client reads none of our answers: a last line would never
            # go out, and a clean close would wait for it for ever.
            self.transport.abortConnection()
            return
        self.transport.write(b"--ERROR no complete line in %g s; closing the connection\r\n"
                             % (self.factory.settings.tcp_idle_timeout,))
        self._lose()

    # IHalfCloseableProtocol: a client that shuts down its sending side
    # (printf ... | nc -N) still gets every answer: without this Twisted
    # closes at once on end-of-file and drops the answers not yet written.
    def readConnectionLost(self):
        self._close_when_answered()

    def writeConnectionLost(self):
        self._lose()

    # IPushProducer: reading pauses while our answers cannot be written.
    def pauseProducing(self):
        self.factory.core.counters["simplestats.tcp.paused"] += 1
        self._write_paused = True
        self.transport.pauseProducing()

    def resumeProducing(self):
        self._write_paused = False
        recovery = self.factory.recovery
        if not self._held_paused and (recovery is None or not recovery.holding):
            self.transport.resumeProducing()

    def stopProducing(self):
        self._lose()

    def dataReceived(self, data):
        self.answers = []
        LineOnlyReceiver.dataReceived(self, data)
        self._answer()

    def _answer(self):
        answers = self.answers
        self.answers = []
        if not answers:
            return
        batch = [answers, False]
        self._held.append(batch)
        d = self.factory.core.durable()
        d.addCallbacks(self._written, self._not_written, callbackArgs=(batch,),
                       errbackArgs=(batch,))
        if len(self._held) > MAX_HELD_READS and not self._held_paused:
            self.factory.core.counters["simplestats.tcp.paused_for_journal"] += 1
            self._held_paused = True
            self.transport.pauseProducing()

    def _written(self, _, batch):
        batch[1] = True
        self._release()

    def _not_written(self, failure, batch):
        self.factory.core.counters["simplestats.journal.errors"] += 1
        error = failure.getErrorMessage()
        self.factory.bad_log.warn("journal write failed: {error}", error=error)
        failed = b"--ERROR journal write failed (%s): not acknowledged" % (
            error.encode("utf-8", "replace"),)
        batch[0] = [failed if a.startswith(b"--OK") else a for a in batch[0]]
        batch[1] = True
        self._release()

    def _release(self):
        """
        Write the answers that are ready, in the order their lines came.
        """
        held = self._held
        lines = []
        while held and held[0][1]:
            lines.extend(a + b"\r\n" for a in held.pop(0)[0])
        if lines:
            self.transport.writeSequence(lines)
        if self._held_paused and len(held) <= MAX_HELD_READS // 2 and not self._closing:
            self._held_paused = False
            if not self._write_paused:
                self.transport.resumeProducing()
        if self._closing and not held:
            self._lose()

    def _close_when_answered(self):
        self._closing = True
        if not self._held:
            self._lose()
        else:
            # Nothing more is read; the answers still go out.
            self.transport.pauseProducing()

    def lineReceived(self, line):
        self.resetTimeout()
        core = self.factory.core
        core.counters["simplestats.tcp.lines"] += 1
        if line.endswith(b"\r"):
            line = line[:-1]
        stripped = line.strip()
        if not stripped:
            core.counters["simplestats.tcp.bad"] += 1
            return self._error("empty line; send --help for the accepted forms")
        if stripped.startswith(b"--"):
            return self._command(stripped)
        try:
            parsed = parse_line(stripped, self.factory.limits)
        except ParseError as e:
            core.counters["simplestats.tcp.bad"] += 1
            return self._error(str(e))
        refused = core.submit(parsed.items, "tcp", atomic=True, raw=(b"t", stripped))
        if refused:
            if parsed.batch:
                position, message = refused[0]
                more = ""
                if len(refused) > 1:
                    more = " (and %d more items refused)" % (len(refused) - 1,)
                return self._error("item %d: %s%s; nothing from this batch was stored"
                                   % (position + 1, message, more))
            return self._error(refused[0][1])
        if not self.quiet:
            if parsed.batch:
                self.answers.append(b"--OK %d" % (len(parsed.items),))
            else:
                self.answers.append(b"--OK")

    def _command(self, command):
        if command == b"--help":
            self.answers.append(HELP)
        elif command == b"--quiet":
            self.quiet = True
        elif command == b"--verbose":
            self.quiet = False
            self.answers.append(b"--OK")
        else:
            self.factory.core.counters["simplestats.tcp.bad"] += 1
            self._error("unknown command %s; commands: --help, --quiet, --verbose"
                        % (command[:40].decode("utf-8", "replace"),))

    def _error(self, message):
        self.factory.bad_log.warn("bad line from {peer}: {reason}", peer=self.peer, reason=message)
        self.answers.append(b"--ERROR " + message.encode("utf-8", "replace"))

    def lineLengthExceeded(self, line):
        core = self.factory.core
        core.counters["simplestats.tcp.bad"] += 1
        core.counters["simplestats.tcp.too_long"] += 1
        self._error("line longer than %d bytes; closing the connection" % (self.MAX_LENGTH,))
        self._answer()
        self._close_when_answered()


class TupleFactory(Factory):
    noisy = False

    def __init__(self, core, settings, clock, recovery=None):
        self.core = core
        self.settings = settings
        # While it holds ingest, new connections are not read (see
        # L{server.durability.recovery.Recovery}).
        self.recovery = recovery
        self.limits = settings.limits
        self.clock = clock
        self.connections = set()
        # Connections of the other TCP line port (Graphite plaintext) that
        # count against the same cap.
        self.others = ()
        # Every open connection, refused ones still being answered included.
        self.live = 0
        self.bad_log = BoundedLog(TupleProtocol.log, clock)

    def buildProtocol(self, addr):
        if self.live >= self.settings.max_connections + REFUSAL_SLACK:
            # Refusals still being answered hold descriptors too: past the
            # slack, the socket is closed at once, unanswered.
            self.core.counters["simplestats.tcp.refused_connections"] += 1
            return None
        return TupleProtocol(self)

    def gauge(self):
        self.core.gauges["simplestats.tcp.open_connections"] = float(len(self.connections))
