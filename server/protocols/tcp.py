"""
The TCP line protocol: one JSON tuple (or a batch of tuples) per line, every
line answered in order with C{--OK} or C{--ERROR <what was wrong>}.

C{--OK} goes out only after the accepted points are written to the journal:
answers for everything that arrived in one read are held until one journal
write covers them all.
"""

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from server.logutil import BoundedLog
from server.model import ParseError
from server.parse_tuple import parse_line

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
class TupleProtocol(LineOnlyReceiver):
    """
    One client connection.  It registers itself as the producer of its own
    transport: when the client stops reading its answers and the write
    buffer fills up, the connection stops reading lines until it drains.
    """

    delimiter = b"\n"
    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self.MAX_LENGTH = factory.settings.max_line_length
        self.quiet = False
        self.answers = []
        self.peer = "?"

    def connectionMade(self):
        factory = self.factory
        peer = self.transport.getPeer()
        self.peer = "%s:%s" % (getattr(peer, "host", "?"), getattr(peer, "port", "?"))
        if len(factory.connections) >= factory.settings.max_connections:
            factory.core.counters["simplestats.tcp.refused_connections"] += 1
            self.transport.write(b"--ERROR too many connections (limit %d); try later\r\n"
                                 % (factory.settings.max_connections,))
            self.transport.loseConnection()
            return
        factory.connections.add(self)
        factory.core.counters["simplestats.tcp.connections"] += 1
        self.transport.registerProducer(self, True)
        self.transport.write(HINT + b"\r\n")
        recovery = factory.recovery
        if recovery is not None and recovery.holding:
            # Lines wait in the socket until start-up has recovered the store.
            self.transport.pauseProducing()
            recovery.when_open(self.resumeProducing)

    def connectionLost(self, reason):
        self.factory.connections.discard(self)

    # IHalfCloseableProtocol: a client that shuts down its sending side
    # (printf ... | nc -N) still gets every answer: without this Twisted
    # closes at once on end-of-file and drops the answers not yet written.
    def readConnectionLost(self):
        self.transport.loseConnection()

    def writeConnectionLost(self):
        self.transport.loseConnection()

    # IPushProducer: reading pauses while our answers cannot be written.
    def pauseProducing(self):
        self.factory.core.counters["simplestats.tcp.paused"] += 1
        self.transport.pauseProducing()

    def resumeProducing(self):
        recovery = self.factory.recovery
        if recovery is None or not recovery.holding:
            self.transport.resumeProducing()

    def stopProducing(self):
        self.transport.loseConnection()

    def dataReceived(self, data):
        self.answers = []
        LineOnlyReceiver.dataReceived(self, data)
        self._answer()

    def _answer(self):
        answers = self.answers
        self.answers = []
        if not answers:
            return
        try:
            self.factory.core.durable()
        except OSError as e:
            self.factory.core.counters["simplestats.journal.errors"] += 1
            self.factory.bad_log.warn("journal write failed: {error}", error=e)
            failed = b"--ERROR journal write failed (%s): not acknowledged" % (
                str(e).encode("utf-8", "replace"),)
            answers = [failed if a.startswith(b"--OK") else a for a in answers]
        self.transport.writeSequence([a + b"\r\n" for a in answers])

    def lineReceived(self, line):
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
        self.transport.loseConnection()


class TupleFactory(Factory):
    noisy = False

    def __init__(self, core, settings, clock, recovery=None):
        self.core = core
        self.settings = settings
        # While it holds ingest, new connections are not read (see
        # L{server.recovery.Recovery}).
        self.recovery = recovery
        self.limits = settings.limits
        self.connections = set()
        self.bad_log = BoundedLog(TupleProtocol.log, clock)

    def buildProtocol(self, addr):
        return TupleProtocol(self)
