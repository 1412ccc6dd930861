"""
What the load generator sends: the statsd packets of each UDP shape and the
TCP payloads, built whole before any clock starts.

Standard library only (the generator runs under any interpreter).  Every
builder is a pure function of its arguments, seeded random included, so a
test sees exactly what a step sends.

The C{real} shape is the one the targets are judged on: it looks like what
statsd clients send, so a server cannot take shortcuts that only repetitive
load allows.  The C{counters} and C{mix} pools repeat 200 lines byte for
byte; they are kept as best cases.
"""

import collections
import math
import random

KINDS = ("real", "counters", "mix")

# -- best-case pools: 200 lines that repeat -----------------------------------

# Types of the "mix" shape, in the order they repeat: mostly counters and
# timers, as statsd traffic usually is.
MIX_CYCLE = ("c", "c", "c", "c", "ms", "ms", "ms", "g", "g", "s")
COUNTER_CYCLE = ("c",)
# Distinct names per type and per step.
NAMES_PER_TYPE = 20
# Lines in the pool before it repeats (a multiple of both cycles above).
POOL_LINES = 200
TYPE_LETTER = {"c": "c", "ms": "t", "g": "g", "s": "s"}


def metric_name(prefix, kind, index):
    """
    The name of one best-case load metric, e.g. C{bench.s3.app.requests.c7}.
    """
    return "bench.%s.app.requests.%s%d" % (prefix, TYPE_LETTER[kind], index)


def build_lines(prefix, mix, count=POOL_LINES):
    """
    Build C{count} best-case statsd lines for one step: integer values from
    a short cycle, no sample rates, no tags.

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


# -- the real shape ---------------------------------------------------------------

# 50 endpoints x 20 measures = 1000 names per step.
RESOURCES = ("users", "orders", "carts", "items", "search", "auth", "payments", "invoices",
             "reviews", "sessions")
ACTIONS = ("list", "get", "create", "update", "delete")
# Per endpoint: 8 counters, 6 timers, 4 gauges, 2 sets (40/30/20/10 %, the
# mix's proportions).
MEASURES = (
    ("requests", "c"), ("errors", "c"), ("bytes_in", "c"), ("bytes_out", "c"),
    ("cache_hits", "c"), ("cache_misses", "c"), ("retries", "c"), ("db_rows", "c"),
    ("latency", "ms"), ("db_time", "ms"), ("render_time", "ms"), ("upstream_time", "ms"),
    ("queue_wait", "ms"), ("lock_wait", "ms"),
    ("inflight", "g"), ("pool_free", "g"), ("heap_mb", "g"), ("queue_depth", "g"),
    ("users", "s"), ("sessions", "s"),
)
REAL_NAMES = len(RESOURCES) * len(ACTIONS) * len(MEASURES)
# Lines built per step for the real shape: 20 000 packets of 20, or 400 000
# packets of 1.  At 1 per packet that outlasts a 5 s step at 80 k/s, so a
# server sees a packet again only at higher rates, and then with fresh
# packets in between; at 20 per packet no two packets repeat a line set.
REAL_POOL_LINES = 400_000
# DogStatsD tags on every third timer, fixed per name: a few values only.
ROUTES = ("/api/v3", "/api/v2", "/internal")
STATUSES = ("200", "201", "404", "500")
# Every fifth counter is sampled at 10 %, as a client marks a hot counter.
SAMPLED_RATE = "0.1"


class RealName:
    """
    One name of the real shape and how its lines are written.

    @ivar head: the line up to the value (C{name:}).
    @ivar tail: the line after the value (C{|ms|#route:/api/v3,status:200},
        C{|c|@0.1}, C{|g}, ...).
    @ivar style: how the value is written: C{count}, C{latency},
        C{gauge_g} (C{%g}), C{gauge_repr} (C{repr} of a float) or C{member}.
    @ivar scale: the name's typical value (gauges).
    """

    __slots__ = ("name", "kind", "head", "tail", "style", "scale")

    def __init__(self, name, kind, tail, style, scale=1.0):
        self.name = name
        self.kind = kind
        self.head = name + ":"
        self.tail = tail
        self.style = style
        self.scale = scale


def real_names(prefix, rng=None):
    """
    The 1000 names of one step of the real shape, e.g.
    C{bench.<prefix>.api.orders_create.latency}, with their types, tags,
    sample rates and value styles (all fixed per name).
    """
    rng = rng or random.Random("names:" + prefix)
    names = []
    counts = collections.Counter()
    for resource in RESOURCES:
        for action in ACTIONS:
            for measure, kind in MEASURES:
                name = "bench.%s.api.%s_%s.%s" % (prefix, resource, action, measure)
                index = counts[kind]
                counts[kind] += 1
                if kind == "c":
                    tail = "|c|@" + SAMPLED_RATE if index % 5 == 0 else "|c"
                    names.append(RealName(name, kind, tail, "count"))
                elif kind == "ms":
                    tail = "|ms"
                    if index % 3 == 0:
                        tagged = index // 3
                        tail += "|#route:%s,status:%s" % (
                            ROUTES[tagged % len(ROUTES)], STATUSES[tagged % len(STATUSES)])
                    names.append(RealName(name, kind, tail, "latency"))
                elif kind == "g":
                    style = "gauge_g" if index % 2 == 0 else "gauge_repr"
                    names.append(RealName(name, kind, "|g", style, rng.uniform(5.0, 5000.0)))
                else:
                    names.append(RealName(name, kind, "|s", "member"))
    return names


def build_real_lines(prefix, count=REAL_POOL_LINES, seed=None):
    """
    C{count} statsd lines as clients write them, for one step.

    Every block of 1000 lines holds each name once, in a new random order,
    so the kinds keep the mix's proportions exactly.  Values almost never
    repeat: timers are lognormal latencies written C{%0.6f|ms} as the PyPI
    C{statsd} client writes them, a third with DogStatsD tags; counters are
    counts with a long tail (bytes, rows), a fifth sampled with C{|@0.1};
    gauges are floats written C{%g} or as C{repr}; set members are random
    user ids.

    @return: a list of C{(line bytes, kind)}.
    """
    rng = random.Random("lines:%s:%s" % (prefix, seed))
    names = real_names(prefix)
    # Bound methods, looked up once: this builds 400 000 lines per step.
    lognormal = rng.lognormvariate
    gauss = rng.gauss
    member = rng.randrange
    shuffle = rng.shuffle
    latency_mu = math.log(40.0)
    order = list(range(len(names)))
    lines = []
    append = lines.append
    while len(lines) < count:
        shuffle(order)
        for i in order[:count - len(lines)]:
            n = names[i]
            style = n.style
            if style == "latency":
                text = "%s%0.6f%s" % (n.head, lognormal(latency_mu, 0.9), n.tail)
            elif style == "count":
                text = "%s%d%s" % (n.head, int(lognormal(8.0, 2.5)) + 1, n.tail)
            elif style == "gauge_g":
                text = "%s%g%s" % (n.head, abs(gauss(n.scale, n.scale / 10)), n.tail)
            elif style == "gauge_repr":
                text = "%s%r%s" % (n.head, abs(gauss(n.scale, n.scale / 10)), n.tail)
            else:
                text = "%su%d%s" % (n.head, member(10_000_000), n.tail)
            append((text.encode("ascii"), n.kind))
    return lines


# -- packets -------------------------------------------------------------------------

def build_packets(prefix, per_packet, kind, seed=None):
    """
    Build the pool of datagrams for one step of shape C{kind}.

    @return: C{(packets, kinds)}: the datagrams, and for each the count of
        lines of each kind it holds (a dict).
    """
    if kind == "real":
        lines = build_real_lines(prefix, REAL_POOL_LINES - REAL_POOL_LINES % per_packet, seed)
    elif kind in ("counters", "mix"):
        lines = build_lines(prefix, kind == "mix", POOL_LINES * per_packet)
    else:
        raise ValueError("unknown shape kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    packets = []
    kinds = []
    for start in range(0, len(lines), per_packet):
        group = lines[start:start + per_packet]
        packets.append(b"\n".join(line for line, _ in group))
        counts = {}
        for _, line_kind in group:
            counts[line_kind] = counts.get(line_kind, 0) + 1
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


# -- TCP ------------------------------------------------------------------------------

# The real TCP shape: the names misc/sample_generator.py sends, per host,
# each with its type and how its numbers vary.
TCP_REAL_BASES = (
    ("web.requests", "c"), ("web.latency_ms", "ms"), ("db.query_ms", "ms"),
    ("cpu.load", "g"), ("queue.depth", "g"),
)


class TcpMetric:
    """
    One metric of a TCP load and what reading it back should show.

    @ivar name: the SimpleStats name; C{tags} its tags (a dict) or None.
    @ivar carbon_name: the Graphite path carbon gets (tags go into it).
    @ivar base: the sample generator's name it is built on (real loads).
    @ivar kind: C{plain} (an untyped number), C{c}, C{ms} or C{g}.
    @ivar field: the C{/api/series} field that grows with every point.
    @ivar total: that field's sum once every point is stored (a counter's
        is the sum of its increments, others count points).
    """

    __slots__ = ("name", "tags", "carbon_name", "kind", "field", "total", "base")

    def __init__(self, name, tags, carbon_name, kind, total, base=None):
        self.base = base
        self.name = name
        self.tags = tags
        self.carbon_name = carbon_name
        self.kind = kind
        self.field = "updates" if kind == "g" else "count"
        self.total = total


def _tcp_count(index, p):
    """
    A counter's increment at point C{p}: varying, and cheap to sum again.
    """
    return 1 + (p * 7 + index * 3) % 40


def tcp_metrics(metrics, points, real=False):
    """
    The metrics of a TCP load of C{points} timestamps each.

    Plain: C{bench.tcp.m00000}...  Real: five names per host as the sample
    generator sends them, C{bench.tcpreal.web07.cpu.load}; every other
    host's are named without it and tagged C{{"host": "web07"}} instead.
    """
    if not real:
        return [TcpMetric(n, None, n, "plain", points)
                for n in ("bench.tcp.m%05d" % i for i in range(metrics))]
    out = []
    for i in range(metrics):
        base, kind = TCP_REAL_BASES[i % len(TCP_REAL_BASES)]
        host = "web%02d" % (i // len(TCP_REAL_BASES))
        carbon_name = "bench.tcpreal.%s.%s" % (host, base)
        if (i // len(TCP_REAL_BASES)) % 2:
            name, tags = "bench.tcpreal." + base, {"host": host}
        else:
            name, tags = carbon_name, None
        total = sum(_tcp_count(i, p) for p in range(points)) if kind == "c" else points
        out.append(TcpMetric(name, tags, carbon_name, kind, total, base))
    return out


# How the real TCP numbers vary, per base name: lognormal latencies (mu of
# the log, sigma) and normal gauges (mean, deviation, decimals).
TCP_TIMERS = {"web.latency_ms": (math.log(80.0), 0.7), "db.query_ms": (math.log(12.0), 0.8)}
TCP_GAUGES = {"cpu.load": (1.5, 0.6, "%.2f"), "queue.depth": (40.0, 15.0, "%.1f")}


def _tcp_numbers(metrics, points, real, seed):
    """
    Yield C{(timestamp offset, [(metric, number text)])} in time order.
    """
    rng = random.Random("tcp:%s" % (seed,))
    lognormal = rng.lognormvariate
    gauss = rng.gauss
    for p in range(points):
        if not real:
            value = "%s" % float(p % 1000)
            yield p, [(m, value) for m in metrics]
            continue
        row = []
        for i, m in enumerate(metrics):
            if m.kind == "c":
                row.append((m, "%d" % _tcp_count(i, p)))
            elif m.kind == "ms":
                row.append((m, "%.3f" % lognormal(*TCP_TIMERS[m.base])))
            else:
                mean, deviation, form = TCP_GAUGES[m.base]
                row.append((m, form % abs(gauss(mean, deviation))))
        yield p, row


def tcp_payload(fmt, metrics, points, first_ts, batch=500, real=False, seed=0):
    """
    The whole TCP load as bytes: C{points} timestamps one second apart, each
    with one value per metric, in time order (as agents report).

    C{carbon}: Graphite plaintext C{name value ts} lines.  C{tuples}: our
    JSON tuples, C{batch} to a line, after C{--quiet}; real ones carry typed
    values (C{"153.417ms"}, C{"7c"}, C{"12.5g"}) and some tags.  Both
    formats of one load carry the same numbers.
    """
    described = tcp_metrics(metrics, points, real)
    if fmt == "carbon":
        out = []
        for p, row in _tcp_numbers(described, points, real, seed):
            ts = first_ts + p
            out.extend("%s %s %d\n" % (m.carbon_name, number, ts) for m, number in row)
        return "".join(out).encode("ascii")
    heads = {}
    for m in described:
        head = '["%s",' % m.name
        tail = ']' if m.tags is None else ',{%s}]' % ",".join(
            '"%s":"%s"' % kv for kv in sorted(m.tags.items()))
        suffix = "" if m.kind == "plain" else m.kind
        quote = "" if m.kind == "plain" else '"'
        heads[m] = (head, quote, suffix + quote + tail)
    out = ["--quiet\n"]
    pending = []
    for p, row in _tcp_numbers(described, points, real, seed):
        ts = first_ts + p
        for m, number in row:
            head, quote, tail = heads[m]
            pending.append("%s%d,%s%s%s" % (head, ts, quote, number, tail))
            if len(pending) == batch:
                out.append("[" + ",".join(pending) + "]\n")
                pending = []
    if pending:
        out.append("[" + ",".join(pending) + "]\n")
    return "".join(out).encode("ascii")
