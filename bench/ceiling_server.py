"""
The Python ceiling: the least a Twisted statsd listener can do.

It splits each datagram into lines and counts the non-empty ones, nothing
more, so its loss-free rate is the most that any pure-Python Twisted UDP
server on this interpreter and machine can hope for.  SimpleStats is held to
a fraction of it.

The count is read back over TCP: a connection to C{--count-port} is answered
C{"<lines> <packets>\\n"} and closed.

    python bench/ceiling_server.py --udp-port N --count-port M [--bind 127.0.0.1]
"""

import argparse
import sys

from twisted.internet import protocol


class LineCounter(protocol.DatagramProtocol):
    """
    Counts the statsd lines and the datagrams it receives.
    """

    def __init__(self):
        self.lines = 0
        self.packets = 0

    def datagramReceived(self, data, addr):
        lines = data.split(b"\n")
        self.lines += len(lines) - lines.count(b"")
        self.packets += 1


class CountAnswer(protocol.Protocol):
    """
    Answers the current counts on connect, then hangs up.
    """

    def connectionMade(self):
        counter = self.factory.counter
        self.transport.write(b"%d %d\n" % (counter.lines, counter.packets))
        self.transport.loseConnection()


def parse_count_answer(data):
    """
    Parse the count port's answer.

    @return: C{(lines, packets)}
    @raise ValueError: when the answer is not two integers.
    """
    fields = data.split()
    if len(fields) != 2:
        raise ValueError("expected '<lines> <packets>', got %r" % (data[:80],))
    return int(fields[0]), int(fields[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description="Twisted UDP line-counting ceiling server")
    parser.add_argument("--udp-port", type=int, required=True)
    parser.add_argument("--count-port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    counter = LineCounter()
    factory = protocol.ServerFactory.forProtocol(CountAnswer)
    factory.counter = counter
    reactor.listenUDP(args.udp_port, counter, interface=args.bind)
    reactor.listenTCP(args.count_port, factory, interface=args.bind)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
