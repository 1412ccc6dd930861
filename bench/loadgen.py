"""
The load generator, run as its own process pinned to the load core.

It is a standalone script (standard library only) so that any interpreter can
run it and the harness can pin it with C{taskset}.  Every packet is built
before the clock starts; the send loop is a plain C{socket.send} on a
connected UDP socket, paced per small chunk of packets against an absolute
schedule, so a late chunk is caught up and the offered rate holds on average.

Sub-commands, each printing one JSON object on the last line of stdout::

    udp      --port N --rate METRICS_PER_S --duration S --per-packet K --kind KIND --prefix P
    maxrate  --duration S --per-packet K --kind KIND   (unpaced, into a socket nobody reads)
    tcp      --port N --format carbon|tuples [--real] --metrics M --points P --first-ts T

C{KIND} is C{real} (what clients send: see L{shapes.build_real_lines}), or one of
the best-case pools C{counters} and C{mix} (200 lines that repeat byte for
byte, which a server can learn).

The C{tcp} command prints a line C{start <epoch>} the moment it connects, so
the harness can start its clock and its storage polling.
"""

import argparse
import json
import socket
import sys
import time

if __package__:
    from bench import shapes
else:
    # Run as a script: bench/ itself is on sys.path.
    import shapes

# Packets sent between two looks at the clock: small, because the default
# socket buffer of a receiver holds only a couple of hundred small datagrams.
CHUNK = 8


def paced_send(send, packets, packets_per_second, duration,
               clock=time.perf_counter, sleep=time.sleep, chunk=CHUNK):
    """
    Send C{packets} in a cycle at C{packets_per_second} for C{duration}
    seconds, or fewer if the sender cannot keep up.

    @return: C{(attempted, errors, elapsed)}
    """
    # A pool of whole chunks, so each chunk is one slice and the inner loop
    # does nothing but send (the real pools already are).
    cycle = list(packets) * (1 if len(packets) % chunk == 0 else chunk)
    cycle_size = len(cycle)
    # One more chunk at the end, so a slice starting anywhere in the
    # cycle is whole.
    pool = cycle + cycle[:chunk]
    position = 0
    target = int(packets_per_second * duration)
    sent = 0
    errors = 0
    start = clock()
    end = start + duration
    while sent < target:
        now = clock()
        if now >= end:
            break
        allowed = min(target, int((now - start) * packets_per_second) + chunk)
        if allowed <= sent:
            ahead = start + sent / packets_per_second - now
            if ahead > 0.0003:
                sleep(ahead - 0.0001)
            continue
        count = min(chunk, allowed - sent)
        try:
            for packet in pool[position:position + count]:
                send(packet)
        except OSError:
            # The receiver is gone (ECONNREFUSED) or the kernel refused
            # (ENOBUFS): the rest of the chunk counts as sent and lost.
            errors += 1
        sent += count
        position += count
        if position >= cycle_size:
            position -= cycle_size
    elapsed = max(clock() - start, 1e-9)
    return sent, errors, elapsed


def udp_socket(port):
    """
    A UDP socket connected to a loopback port (connected: C{send} is
    cheaper than C{sendto} and needs no address per call).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.connect(("127.0.0.1", port))
    return sock


def run_udp(args, port=None):
    """
    One paced step, or the unpaced maximum when C{port} is None.
    """
    began = time.perf_counter()
    packets, kinds = shapes.build_packets(args.prefix, args.per_packet, args.kind)
    build_seconds = time.perf_counter() - began
    sink = None
    if port is None:
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        pps = 1e12
    else:
        pps = args.rate / args.per_packet
    sock = udp_socket(port)
    sent, errors, elapsed = paced_send(sock.send, packets, pps, args.duration)
    sock.close()
    if sink is not None:
        sink.close()
    by_kind = shapes.lines_sent(kinds, sent)
    metrics = sum(by_kind.values())
    return {
        "packets": sent,
        "metrics": metrics,
        "by_kind": by_kind,
        "errors": errors,
        "elapsed": elapsed,
        "offered_rate": None if args.rate is None else args.rate,
        "achieved_rate": metrics / elapsed,
        "achieved_pps": sent / elapsed,
        "pool_packets": len(packets),
        "build_seconds": build_seconds,
    }


def run_tcp(args):
    """
    Send the whole TCP load as fast as the receiver takes it.
    """
    began = time.perf_counter()
    payload = shapes.tcp_payload(args.format, args.metrics, args.points, args.first_ts,
                                 real=args.real)
    build_seconds = time.perf_counter() - began
    sock = socket.create_connection(("127.0.0.1", args.port))
    started = time.time()
    print("start %.6f" % started, flush=True)
    view = memoryview(payload)
    step = 256 * 1024
    for offset in range(0, len(view), step):
        sock.sendall(view[offset:offset + step])
    sent_at = time.time()
    # With --quiet only errors are answered; give them a moment to arrive.
    sock.settimeout(0.3)
    answer = b""
    try:
        while len(answer) < 4096:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except (socket.timeout, OSError):
        pass
    sock.close()
    return {
        "points": args.metrics * args.points,
        "bytes": len(payload),
        "started": started,
        "sent_at": sent_at,
        "send_seconds": sent_at - started,
        "build_seconds": build_seconds,
        "answer": answer.decode("ascii", "replace")[:1000],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("udp", "maxrate"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int)
        p.add_argument("--rate", type=float, help="metrics per second")
        p.add_argument("--duration", type=float, default=5.0)
        p.add_argument("--per-packet", type=int, default=1)
        p.add_argument("--kind", choices=shapes.KINDS, default="counters")
        p.add_argument("--prefix", default="max")
    p = sub.add_parser("tcp")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--format", choices=("carbon", "tuples"), required=True)
    p.add_argument("--real", action="store_true",
                   help="typed values, tags and varying numbers (see shapes.tcp_payload)")
    p.add_argument("--metrics", type=int, default=100)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--first-ts", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "udp":
        if args.port is None or args.rate is None:
            parser.error("udp needs --port and --rate")
        result = run_udp(args, args.port)
    elif args.command == "maxrate":
        args.rate = None
        result = run_udp(args, None)
    else:
        result = run_tcp(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
