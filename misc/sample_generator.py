#!/usr/bin/env python3
"""
Print random SimpleStats tuples, one per line, with timestamps in the last 7
days (as the original SimpleStats sample generator did), or send them to a
server's TCP port and check that every line was acknowledged.

    python misc/sample_generator.py            # 20 tuples on stdout
    python misc/sample_generator.py 1000 --send localhost:8007

Values follow a daily cycle with noise, so the dashboard's day-against-week
view has something to show.  Standard library only.
"""

import argparse
import json
import math
import random
import socket
import sys
import time

NAMES = {
    "web.requests": (120.0, 60.0),
    "web.latency_ms": (80.0, 30.0),
    "db.query_ms": (12.0, 6.0),
    "cpu.load": (1.5, 1.0),
    "queue.depth": (40.0, 35.0),
}
HOSTS = ("web1", "web2")
DAY = 86400.0
WEEK = 7 * DAY


def sample(rng, now, names=tuple(NAMES)):
    name = rng.choice(names)
    base, swing = NAMES.get(name, (50.0, 25.0))
    ts = now - rng.uniform(0, WEEK)
    # Busiest mid-afternoon UTC, quietest at night.
    cycle = math.sin(2 * math.pi * ((ts % DAY) / DAY - 0.375))
    value = max(0.0, base + swing * cycle + rng.gauss(0, swing / 4))
    return [name, round(ts, 3), round(value, 3), {"host": rng.choice(HOSTS)}]


def generate(count, seed=None, now=None):
    rng = random.Random(seed)
    now = time.time() if now is None else now
    return [sample(rng, now) for _ in range(count)]


def send(rows, address, timeout=10.0):
    """
    Send C{rows} over one TCP connection; returns the number acknowledged.
    Raises C{RuntimeError} on the first answer that is not C{--OK}.
    """
    host, _, port = address.rpartition(":")
    with socket.create_connection((host or "localhost", int(port)), timeout=timeout) as conn:
        reader = conn.makefile("rb")
        hint = reader.readline()
        if not hint.startswith(b"--Hint"):
            raise RuntimeError("unexpected greeting %r" % (hint,))
        payload = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
        conn.sendall(payload)
        for number, row in enumerate(rows, 1):
            answer = reader.readline().strip()
            if answer != b"--OK":
                raise RuntimeError("line %d %r was answered %r" % (
                    number, row, answer.decode("utf-8", "replace")))
    return len(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=20, help="how many tuples (20)")
    parser.add_argument("--send", metavar="HOST:PORT", help="send to a SimpleStats TCP port")
    parser.add_argument("--seed", type=int, help="random seed, for repeatable output")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("count must be >= 0")
    rows = generate(args.count, args.seed)
    if args.send:
        try:
            sent = send(rows, args.send)
        except (OSError, RuntimeError) as e:
            sys.stderr.write("sample_generator: %s\n" % (e,))
            return 1
        sys.stdout.write("sent %d tuples to %s, every one acknowledged --OK\n" % (sent, args.send))
        return 0
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
