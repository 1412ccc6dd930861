"""
The load generator, run as its own process pinned to the load core.

It is a standalone script (standard library only) so that any interpreter can
run it and the harness can pin it with C{taskset}.  Every packet is built
before the clock starts; the send loop is a plain C{socket.send} on a
connected UDP socket, paced per small chunk of packets against an absolute
schedule, so a late chunk is caught up and the offered rate holds on average.

Sub-commands, each printing one JSON object on the last line of stdout::

    udp      --port N --rate METRICS_PER_S --duration S --per-packet K [--mix] --prefix P
    maxrate  --duration S --per-packet K [--mix]    (unpaced, into a socket nobody reads)
    tcp      --port N --format carbon|tuples --metrics M --points P --first-ts T

The C{tcp} command prints a line C{start <epoch>} the moment it connects, so
the harness can start its clock and its storage polling.
"""

import argparse
import json
import socket
import sys
import time

# Types of the "mix" shape, in the order they repeat: mostly counters and
# timers, as statsd traffic usually is.
MIX_CYCLE = ("c", "c", "c", "c", "ms", "ms", "ms", "g", "g", "s")
COUNTER_CYCLE = ("c",)
# Distinct names per type and per step.
NAMES_PER_TYPE = 20
# Lines in the pool before it repeats (a multiple of both cycles above).
POOL_LINES = 200
# Packets sent between two looks at the clock: small, because the default
# socket buffer of a receiver holds only a couple of hundred small datagrams.
CHUNK = 8
TYPE_LETTER = {"c": "c", "ms": "t", "g": "g", "s": "s"}


def metric_name(prefix, kind, index):
    """
    The name of one load metric, e.g. C{bench.s3.app.requests.c7}.
    """
    return "bench.%s.app.requests.%s%d" % (prefix, TYPE_LETTER[kind], index)


def build_lines(prefix, mix, count=POOL_LINES):
    """
    Build C{count} statsd lines for one step.

    @return: a list of C{(line bytes, kind)} where kind is C{c}, C{ms}, C{g}
        or C{s}.
    """
    cycle = MIX_CYCLE if mix else COUNTER_CYCLE
    lines = []
    seen = {}
    for j in range(count):
        kind = cycle[j % len(cycle)]
        index = seen.get(kind, 0)
        seen[kind] = index + 1
        name = metric_name(prefix, kind, index % NAMES_PER_TYPE)
        if kind == "c":
            value = "1"
        elif kind == "ms":
            value = "%d" % (3 + (j * 37) % 997)
        elif kind == "g":
            value = "%d" % (j * 13 % 500)
        else:
            value = "u%d" % j
        lines.append((("%s:%s|%s" % (name, value, kind)).encode("ascii"), kind))
    return lines


def build_packets(prefix, per_packet, mix):
    """
    Build the pool of datagrams for one step.

    @return: C{(packets, kinds)}: the datagrams, and for each the count of
        lines of each kind it holds (a dict).
    """
    lines = build_lines(prefix, mix, POOL_LINES * per_packet)
    packets = []
    kinds = []
    for start in range(0, len(lines), per_packet):
        group = lines[start:start + per_packet]
        packets.append(b"\n".join(line for line, _ in group))
        counts = {}
        for _, kind in group:
            counts[kind] = counts.get(kind, 0) + 1
        kinds.append(counts)
    return packets, kinds


def lines_sent(kinds, packets_sent):
    """
    How many lines of each kind went out when the pool of packets described
    by C{kinds} was cycled through C{packets_sent} times in order.
    """
    full, rest = divmod(packets_sent, len(kinds))
    totals = {}
    for index, counts in enumerate(kinds):
        times = full + (1 if index < rest else 0)
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n * times
    return totals


def paced_send(send, packets, packets_per_second, duration,
               clock=time.perf_counter, sleep=time.sleep, chunk=CHUNK):
    """
    Send C{packets} in a cycle at C{packets_per_second} for C{duration}
    seconds, or fewer if the sender cannot keep up.

    @return: C{(attempted, errors, elapsed)}
    """
    # A pool of whole chunks, so each chunk is one slice and the inner loop
    # does nothing but send.
    cycle = list(packets) * chunk
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
    packets, kinds = build_packets(args.prefix, args.per_packet, args.mix)
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
    by_kind = lines_sent(kinds, sent)
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
    }


def tcp_payload(fmt, metrics, points, first_ts, batch=500):
    """
    The whole TCP load as bytes: C{points} timestamps one second apart, each
    with one value per metric, in time order (as agents report).

    C{carbon}: Graphite plaintext C{name value ts} lines.  C{tuples}: our
    JSON tuples, C{batch} to a line, after C{--quiet}.
    """
    names = ["bench.tcp.m%05d" % i for i in range(metrics)]
    if fmt == "carbon":
        out = []
        for p in range(points):
            ts = first_ts + p
            value = float(p % 1000)
            out.extend("%s %s %d\n" % (name, value, ts) for name in names)
        return "".join(out).encode("ascii")
    out = ["--quiet\n"]
    pending = []
    for p in range(points):
        ts = first_ts + p
        value = float(p % 1000)
        for name in names:
            pending.append('["%s",%d,%s]' % (name, ts, value))
            if len(pending) == batch:
                out.append("[" + ",".join(pending) + "]\n")
                pending = []
    if pending:
        out.append("[" + ",".join(pending) + "]\n")
    return "".join(out).encode("ascii")


def run_tcp(args):
    """
    Send the whole TCP load as fast as the receiver takes it.
    """
    payload = tcp_payload(args.format, args.metrics, args.points, args.first_ts)
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
        p.add_argument("--mix", action="store_true")
        p.add_argument("--prefix", default="max")
    p = sub.add_parser("tcp")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--format", choices=("carbon", "tuples"), required=True)
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
