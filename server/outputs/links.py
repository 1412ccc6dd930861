"""
Sending a destination's queue (L{server.outputs.spool}) to carbon.

TCP (L{TcpLink}): one connection, reconnected with exponential backoff.
The protocol is a pull producer of the transport: Twisted asks it for more
(C{resumeProducing}) only once everything written before has left for the
kernel, so one chunk is in flight at a time, a destination that reads
slowly only makes the queue grow (on disk past its memory bound), and the
reactor never waits for it.  A chunk counts as delivered once the
connection has stayed up C{confirm} seconds after it reached the kernel;
after a loss, sending starts again from what was delivered.

UDP (L{UdpLink}): datagrams of whole lines, a bounded amount per reactor
turn; nothing tells whether they arrived, so sent is delivered.
"""

import errno
import socket
from collections import deque

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IPullProducer

# Bytes handed to the transport per resumeProducing.
CHUNK = 256 * 1024
# Bytes of datagrams sent per reactor turn, and the size of one.
UDP_TURN = 256 * 1024
DATAGRAM = 1400
UDP_RETRY = 0.05


class Backoff:
    """
    Waits that double from C{first} up to C{longest}; L{reset} after a success.
    """

    def __init__(self, first, longest):
        self.first = first
        self.longest = longest
        self.current = first

    def next(self):
        delay = self.current
        self.current = min(self.current * 2, self.longest)
        return delay

    def reset(self):
        self.current = self.first


@implementer(IPullProducer)
class LineSender(Protocol):
    """
    One connection to a carbon line receiver; the link does the work.
    """

    def __init__(self, link):
        self.link = link

    def connectionMade(self):
        self.link.made(self)
        self.transport.registerProducer(self, False)

    def resumeProducing(self):
        self.link.drained(self)

    def stopProducing(self):
        pass

    def dataReceived(self, data):
        pass  # carbon says nothing back

    def connectionLost(self, reason):
        self.link.lost(self, reason)


class TcpLink:
    """
    Keeps one TCP connection to a destination and sends its queue.

    @param connect: C{connect(factory) -> Deferred} firing once connected
        (an endpoint's C{connect}); tests pass a fake.
    @ivar state: C{"connecting"}, C{"connected"}, C{"waiting"} (to
        reconnect) or C{"stopped"}.
    """

    log = Logger()

    def __init__(self, name, spool, clock, connect, backoff, confirm, counters):
        self.name = name
        self.spool = spool
        self.clock = clock
        self.connect = connect
        self.backoff = backoff
        self.confirm_seconds = confirm
        self.counters = counters
        self.state = "stopped"
        self.proto = None
        self.idle = True
        # (offset, time) of what reached the kernel, not yet confirmed.
        self.landed = deque()
        self._retry = None
        self._attempt = None
        self.failures = 0
        self.last_error = None
        self.connected_since = None
        self.reconnect_at = None

    # -- connection -----------------------------------------------------------

    def start(self):
        self._connect()

    def _connect(self):
        self._retry = None
        self.reconnect_at = None
        self.state = "connecting"
        factory = Factory.forProtocol(lambda: LineSender(self))
        factory.noisy = False
        d = self._attempt = self.connect(factory)
        d.addErrback(self._failed)

    def _failed(self, failure):
        self._attempt = None
        if self.state == "stopped":
            return None
        failure.trap(Exception)
        self.failures += 1
        self.last_error = failure.getErrorMessage()
        self.counters["simplestats.forward.connect_failures"] += 1
        if self.failures == 1 or not self.failures % 100:
            self.log.warn("forward to {name}: cannot connect ({error}); retrying with backoff"
                          " (failure {count})", name=self.name, error=self.last_error,
                          count=self.failures)
        self._wait()
        return None

    def _wait(self):
        self.state = "waiting"
        delay = self.backoff.next()
        self.reconnect_at = self.clock.seconds() + delay
        self._retry = self.clock.callLater(delay, self._connect)

    def made(self, proto):
        if self.state == "stopped":
            proto.transport.loseConnection()
            return
        self._attempt = None
        self.proto = proto
        self.state = "connected"
        self.connected_since = self.clock.seconds()
        self.idle = True
        self.backoff.reset()
        if self.failures:
            self.log.info("forward to {name}: connected after {count} failures; sending"
                          " {lines} queued lines", name=self.name, count=self.failures,
                          lines=self.spool.queued_lines)
        self.failures = 0
        self.last_error = None
        self.counters["simplestats.forward.connects"] += 1

    def lost(self, proto, reason):
        if proto is not self.proto:
            return
        self.proto = None
        self.connected_since = None
        self.landed.clear()
        # What was not confirmed goes again (at-least-once).
        self.spool.rewind()
        if self.state == "stopped":
            return
        self.counters["simplestats.forward.disconnects"] += 1
        self.last_error = reason.getErrorMessage()
        self.log.warn("forward to {name}: connection lost ({error}); {lines} lines queued",
                      name=self.name, error=self.last_error, lines=self.spool.queued_lines)
        self._wait()

    def stop(self):
        self.state = "stopped"
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
        if self.proto is not None:
            if self.idle:
                # A clean stop: everything written is in the kernel, which
                # sends it before the close; not sent again at the next start.
                self.spool.confirm(self.spool.sent)
            self.spool.rewind()
            self.landed.clear()
            proto, self.proto = self.proto, None
            proto.transport.unregisterProducer()
            proto.transport.loseConnection()

    # -- sending --------------------------------------------------------------

    def kick(self):
        """
        Lines were queued: send them if the connection waits for some.
        """
        if self.proto is not None and self.idle:
            self._write()

    def drained(self, proto):
        """
        Everything written on C{proto} is in the kernel: note it, write more.
        """
        if proto is not self.proto:
            return
        spool = self.spool
        if not self.landed or self.landed[-1][0] != spool.sent:
            self.landed.append((spool.sent, self.clock.seconds()))
        self.check()
        self._write()

    def _write(self):
        data = self.spool.peek(CHUNK)
        if not data:
            self.idle = True
            return
        self.idle = False
        self.spool.mark_sent(len(data))
        self.proto.transport.write(data)

    def check(self):
        """
        Confirm what has been in the kernel C{confirm} seconds with the
        connection up (called on every drain and by the forwarder's timer).
        """
        if self.proto is None:
            return
        horizon = self.clock.seconds() - self.confirm_seconds
        landed = self.landed
        upto = None
        while landed and landed[0][1] <= horizon:
            upto = landed.popleft()[0]
        if upto is not None:
            self.spool.confirm(upto)

    def status(self):
        now = self.clock.seconds()
        return {
            "state": self.state,
            "connected_seconds": (now - self.connected_since
                                  if self.connected_since is not None else None),
            "reconnect_in": (max(0.0, self.reconnect_at - now)
                             if self.reconnect_at is not None else None),
            "failures": self.failures,
            "last_error": self.last_error,
        }


class _Datagrams(DatagramProtocol):
    def __init__(self, link):
        self.link = link

    def connectionRefused(self):
        self.link.refused()


class UdpLink:
    """
    Sends a destination's queue as datagrams of whole lines.

    @param listen: C{listen(protocol) -> port} (C{reactor.listenUDP(0, ...)}).
    @param resolve: C{resolve(host) -> Deferred} of an address.
    """

    log = Logger()

    def __init__(self, name, spool, clock, listen, resolve, host, port, counters):
        self.name = name
        self.spool = spool
        self.clock = clock
        self.listen = listen
        self.resolve = resolve
        self.host = host
        self.port_number = port
        self.counters = counters
        self.state = "stopped"
        self.protocol = _Datagrams(self)
        self.port = None
        self._pump_call = None
        self.last_error = None

    def start(self):
        self.state = "connecting"
        d = defer.maybeDeferred(self.resolve, self.host)
        d.addCallbacks(self._resolved, self._unresolved)

    def _unresolved(self, failure):
        if self.state == "stopped":
            return
        self.last_error = failure.getErrorMessage()
        self.log.warn("forward to {name}: cannot resolve {host} ({error}); trying again in 30 s",
                      name=self.name, host=self.host, error=self.last_error)
        self.state = "waiting"
        self._pump_call = self.clock.callLater(30.0, self.start)

    def _resolved(self, address):
        if self.state == "stopped":
            return
        self.port = self.listen(self.protocol, ":" in address)
        self.port.connect(address, self.port_number)
        self.state = "sending"
        self.kick()

    def refused(self):
        # Port unreachable for an earlier datagram: it is gone.
        self.counters["simplestats.forward.udp_refused"] += 1
        self.last_error = "port unreachable"

    def kick(self):
        if self.state == "sending" and self._pump_call is None:
            self._pump_call = self.clock.callLater(0, self._pump)

    def _pump(self):
        self._pump_call = None
        if self.state != "sending":
            return
        spool = self.spool
        budget = UDP_TURN
        while budget > 0:
            data = spool.peek(min(budget, 64 * 1024), whole_lines=True)
            if not data:
                return
            sent = 0
            try:
                for datagram in datagrams(data, DATAGRAM):
                    self.port.write(datagram)
                    sent += len(datagram)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EWOULDBLOCK):
                    self.counters["simplestats.forward.udp_errors"] += 1
                    self.last_error = str(e)
                spool.mark_sent(sent)
                spool.confirm(spool.sent)
                self._pump_call = self.clock.callLater(UDP_RETRY, self._pump)
                return
            spool.mark_sent(sent)
            spool.confirm(spool.sent)
            budget -= sent
        self._pump_call = self.clock.callLater(0, self._pump)

    def check(self):
        pass

    def stop(self):
        self.state = "stopped"
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        self._pump_call = None
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()

    def status(self):
        return {"state": self.state, "last_error": self.last_error}


def datagrams(data, size):
    """
    C{data} (whole lines) cut into pieces of at most C{size} bytes, each of
    whole lines (a longer line goes alone).
    """
    start = 0
    n = len(data)
    while start < n:
        if n - start <= size:
            yield data[start:]
            return
        cut = data.rfind(b"\n", start, start + size)
        if cut < start:
            cut = data.find(b"\n", start + size)
            if cut < 0:
                cut = n - 1
        yield data[start:cut + 1]
        start = cut + 1


def tcp_connector(reactor, host, port, timeout=5.0):
    """
    C{connect(factory)} for L{TcpLink}: a hostname endpoint (IPv4 or IPv6).
    """
    from twisted.internet.endpoints import HostnameEndpoint

    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    return endpoint.connect


def udp_listener(reactor):
    def listen(protocol, ipv6):
        return reactor.listenUDP(0, protocol, interface="::" if ipv6 else "0.0.0.0")
    return listen


def udp_resolver(reactor):
    def resolve(host):
        try:
            socket.inet_pton(socket.AF_INET6, host)
            return host
        except OSError:
            return reactor.resolve(host)
    return resolve
