"""
The Python client (clients/python) against the PyPI statsd client: the cost of
one call, and the bytes on the wire for a minute of 100 timers at 1000 values
a second each.

    .venv/bin/python bench/client_bench.py [--quick] [--results DIR]

Cost per call: N calls in a loop, best of R runs (microseconds per call,
the loop's own cost included in every row alike).  The statsd client sends
each call as one datagram to a bound UDP socket nobody reads (the kernel
drops them when its buffer is full, the sender never waits).

Bytes per minute: simulated time (the client's clock is injected), so a
minute takes as long as its 6 million calls do.  Ours go to a local TCP sink
that answers each batch line C{--OK n} and counts the bytes it received;
statsd's are the lines it would send (C{name:%0.6f|ms}, one datagram each
without a pipeline, 512-byte datagrams with one), computed from the same
values; our UDP mode's are the bytes its datagrams carried.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

import statsd  # noqa: E402

from simplestats_client import Client  # noqa: E402

# IPv4 + UDP headers per datagram; IPv4 + TCP headers (with timestamps) per segment.
UDP_OVERHEAD = 28
TCP_OVERHEAD = 52
TCP_MSS = 1448


def values(n, seed=1):
    """Latencies in ms as a service's look: log-normal around 20 ms, microsecond resolution."""
    rng = random.Random(seed)
    return [round(rng.lognormvariate(3.0, 1.0), 3) for _ in range(n)]


def sink_udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class TcpSink:
    """
    A stand-in for the server's TCP port: the hint line, then C{--OK n} for
    every batch line of n tuples; counts the bytes and lines received.
    """

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.bytes = 0
        self.lines = 0
        self.items = 0
        self.segments = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        conn.sendall(b"--Hint: send data of the form [name:str, timestamp:float, data:float]\r\n")
        buffer = b""
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                self.bytes += len(data)
                buffer += data
                while b"\n" in buffer:
                    line, _, buffer = buffer.partition(b"\n")
                    self.lines += 1
                    self.segments += -(-(len(line) + 1) // TCP_MSS)
                    n = len(json.loads(line))
                    self.items += n
                    conn.sendall(b"--OK %d\r\n" % (n,))

    def close(self):
        self.listener.close()


def per_call(function, vals):
    """Seconds taken calling C{function(v)} for each value."""
    start = time.perf_counter()
    for v in vals:
        function(v)
    return time.perf_counter() - start


def interleaved(variants, vals, runs):
    """
    Each variant's best of C{runs}, the runs taken in turns (run 1 of every
    variant, then run 2, ...) so that a busy moment of a shared machine does
    not land on one variant's runs only: us per call.
    """
    best = {}
    for _ in range(runs):
        for name, (function, after) in variants.items():
            took = per_call(function, vals)
            if after is not None:
                after()
            best[name] = min(best.get(name, float("inf")), took)
    return {name: took / len(vals) * 1e6 for name, took in best.items()}


def cost_per_call(n, runs):
    vals = values(n)
    udp = sink_udp()
    udp_port = udp.getsockname()[1]
    sink = TcpSink()
    rows = {}
    ours = Client(port=sink.port, interval=None, max_buffer=10 ** 7)
    bare = Client(port=sink.port, interval=None, max_buffer=10 ** 7)
    # The same client with no lock around its dict: what the lock costs.
    bare.aggregator.lock = contextlib.nullcontext()
    ours_udp = Client(mode="udp", udp_port=udp_port, interval=None)
    client = statsd.StatsClient("127.0.0.1", udp_port)
    lock = threading.Lock()
    tags = {"route": "/users"}

    def locked(v):
        with lock:
            pass

    def piped(vals):
        pipe = client.pipeline()
        for i, v in enumerate(vals):
            pipe.timing("bench.api.query", v)
            if i % 100 == 99:
                pipe.send()
        pipe.send()

    variants = {
        "ours timing()": (lambda v: ours.timing("bench.api.query", v), ours.flush),
        "ours timing(tags=)": (lambda v: ours.timing("bench.api.query", v, tags), ours.flush),
        "ours incr()": (lambda v: ours.incr("bench.api.hits"), ours.flush),
        "ours agg('153ms')": (lambda v: ours.agg("bench.api.query", "153ms"), ours.flush),
        "ours timing() without the lock": (lambda v: bare.timing("bench.api.query", v),
                                           bare.flush),
        "a with threading.Lock() alone": (locked, None),
        "ours mode=udp timing()": (lambda v: ours_udp.timing("bench.api.query", v), None),
        "statsd StatsClient.timing()": (lambda v: client.timing("bench.api.query", v), None),
        "empty loop (lambda v: None)": (lambda v: None, None),
    }
    try:
        rows.update(interleaved(variants, vals, runs))
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            piped(vals)
            best = min(best, time.perf_counter() - start)
        rows["statsd pipeline().timing(), sent every 100"] = best / len(vals) * 1e6
        rows["ours timing(), 2 threads at once (wall per call)"] = min(
            two_threads(ours, vals) for _ in range(runs))
        ours.flush()
    finally:
        ours.close()
        bare.close()
        ours_udp.close()
        client.close()
        udp.close()
        sink.close()
    return rows


def two_threads(client, vals):
    half = len(vals) // 2
    barrier = threading.Barrier(3)

    def work(part):
        barrier.wait()
        for v in part:
            client.timing("bench.api.query", v)

    threads = [threading.Thread(target=work, args=(vals[:half],)),
               threading.Thread(target=work, args=(vals[half:2 * half],))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) / (2 * half) * 1e6


class SimClock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def minute_of_timers(timers, rate, seconds):
    """
    C{timers} timers at C{rate} values a second each for C{seconds} simulated
    seconds: bytes on the wire of ours (TCP, pre-aggregated), ours (UDP) and
    statsd's.
    """
    names = ["bench.timer.%03d" % i for i in range(timers)]
    per_second = values(rate * 7, seed=2)  # a pool, walked with a stride per timer
    sink = TcpSink()
    udp = sink_udp()
    start = 1_800_000_000.0
    clock = SimClock(start)
    ours = Client(port=sink.port, interval=None, clock=clock, max_buffer=10 ** 6)
    ours_udp = Client(mode="udp", udp_port=udp.getsockname()[1], interval=None)
    statsd_payload = 0
    statsd_datagrams_piped = 0
    statsd_piped_payload = 0
    calls = 0
    cpu_record = 0.0
    cpu_flush = 0.0
    flush_seconds = []
    pool = len(per_second)
    for second in range(seconds):
        for tick in range(rate):
            clock.now = start + second + tick / rate
            base = (second * rate + tick) % pool
            t0 = time.process_time()
            for i, name in enumerate(names):
                ours.timing(name, per_second[(base + 37 * i) % pool])
            cpu_record += time.process_time() - t0
            calls += timers
        if second % 5 == 4:
            clock.now = start + second + 1.0
            t0 = time.process_time()
            w0 = time.perf_counter()
            assert ours.flush() is True
            flush_seconds.append(time.perf_counter() - w0)
            cpu_flush += time.process_time() - t0
    # statsd's lines (and our UDP mode's) for the same values, computed or
    # sent apart from the timing above.
    packet = 0
    for second in range(seconds):
        for tick in range(rate):
            base = (second * rate + tick) % pool
            for i, name in enumerate(names):
                v = per_second[(base + 37 * i) % pool]
                line = len(name) + 1 + len("%0.6f" % v) + 3
                statsd_payload += line
                # Pipeline: lines joined by \n into datagrams of at most 512 bytes.
                if packet and packet + 1 + line > 512:
                    statsd_datagrams_piped += 1
                    statsd_piped_payload += packet
                    packet = 0
                packet = packet + 1 + line if packet else line
                ours_udp.timing(name, v)
    statsd_datagrams_piped += 1
    statsd_piped_payload += packet
    ours_udp.flush()
    result = {
        "timers": timers, "values_per_second_each": rate, "seconds": seconds, "calls": calls,
        "ours_tcp": {
            "payload_bytes": sink.bytes, "lines": sink.lines, "partials": sink.items,
            "wire_bytes_estimate": sink.bytes + sink.segments * TCP_OVERHEAD,
            "client_cpu_seconds_recording": cpu_record,
            "client_cpu_seconds_flushing": cpu_flush,
            "flush_seconds_max": max(flush_seconds),
            "flush_seconds_mean": sum(flush_seconds) / len(flush_seconds),
        },
        "ours_udp": {
            "payload_bytes": ours_udp.counters["udp_bytes"],
            "datagrams": ours_udp.counters["udp_packets"],
            "wire_bytes": ours_udp.counters["udp_bytes"]
            + ours_udp.counters["udp_packets"] * UDP_OVERHEAD,
        },
        "statsd": {
            "payload_bytes": statsd_payload, "datagrams": calls,
            "wire_bytes": statsd_payload + calls * UDP_OVERHEAD,
        },
        "statsd_pipeline_512": {
            "payload_bytes": statsd_piped_payload, "datagrams": statsd_datagrams_piped,
            "wire_bytes": statsd_piped_payload + statsd_datagrams_piped * UDP_OVERHEAD,
        },
    }
    ours.close()
    ours_udp.close()
    udp.close()
    sink.close()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer calls and 10 simulated seconds (a smoke run)")
    parser.add_argument("--results", default=os.path.join(HERE, "results"),
                        help="where the JSON of the figures goes")
    args = parser.parse_args(argv)
    n, runs, seconds = (20000, 2, 10) if args.quick else (200000, 5, 60)
    when = datetime.datetime.now(datetime.timezone.utc)
    costs = cost_per_call(n, runs)
    print("cost per call (best of %d runs of %d calls), us:" % (runs, n))
    for name, us in costs.items():
        print("  %-50s %7.3f" % (name, us))
    traffic = minute_of_timers(100, 1000, seconds)
    scale = 60.0 / seconds
    print("\n100 timers x 1000 values/s, %d simulated s (scaled to a minute):" % (seconds,))
    for key in ("ours_tcp", "ours_udp", "statsd", "statsd_pipeline_512"):
        row = traffic[key]
        wire = row.get("wire_bytes", row.get("wire_bytes_estimate"))
        print("  %-22s payload %12.0f B/min   on the wire %12.0f B/min"
              % (key, row["payload_bytes"] * scale, wire * scale))
    tcp = traffic["ours_tcp"]
    print("  ours: %d batch lines, %d partials; client CPU %.2f s recording + %.3f s flushing"
          " for %d calls; a flush takes %.1f ms at most"
          % (tcp["lines"], tcp["partials"], tcp["client_cpu_seconds_recording"],
             tcp["client_cpu_seconds_flushing"], traffic["calls"],
             tcp["flush_seconds_max"] * 1000))
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "%s-client%s.json"
                        % (when.strftime("%Y%m%d-%H%M%S"), "-quick" if args.quick else ""))
    with open(path, "w") as f:
        json.dump({"when": when.isoformat(), "python": platform.python_version(),
                   "machine": platform.machine(), "cpus": os.cpu_count(),
                   "statsd_version": statsd.__version__, "cost_per_call_us": costs,
                   "traffic": traffic}, f, indent=1)
    print("\nfigures written to %s" % (path,))


if __name__ == "__main__":
    main()
