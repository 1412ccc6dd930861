"""
Property-based fuzz of every entry point: TCP lines through the real
L{TupleProtocol}, statsd packets through L{StatsdProtocol}, import files
through L{transfer.parse_import} and C{POST /api/import}, and the query
parameters of the read API.  Arbitrary bytes and text are mixed with inputs
built from the grammar (good and bad on purpose), so the parsers are reached
past their first check.

The properties: nothing raises; every complete TCP line gets exactly one
answer; what is acknowledged is stored; a statsd packet's bad lines are
counted one each and its good lines kept; an import is accepted whole with
its effect or refused whole (400, bad rows listed); the API answers 200, 400
or 404 with a JSON error, never 500.
"""

import csv
import io
import json
import time
from urllib.parse import quote, quote_from_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from server.web import transfer
from server.core.filters import compile_filter
from server.core.model import (COUNTER, DISTRIBUTION_TYPES, GAUGE, SAMPLE, SET, TIMER, Limits,
                          ParseError, Partial, Sample, series_key)
from server.core.parse_statsd import parse_packet
from server.receivers.parse_tuple import parse_line
from server.receivers.statsd import StatsdProtocol
from server.receivers.tcp import TupleFactory
from server.core.query import bucket_rows
from server.test.support import T0, make_core
from server.web.api import WebAPI

BASE = "http://127.0.0.1:8080"
PEER = ("127.0.0.1", 40000)
MAX_LINE = 2000

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


# -- building blocks -------------------------------------------------------------

# Big integers become OverflowError in float(); JSON carries them fine.
HUGE = st.sampled_from([2 ** 1024, -(2 ** 1024), 10 ** 400])

numbers = st.one_of(
    st.integers(-10 ** 6, 10 ** 6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e-300, 1e308, -1e308, 5e-324]),
    HUGE,
)

json_scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12,
)

names = st.one_of(
    st.sampled_from(["a", "b.c", "web-1.cpu", "x_y", "a" * 200, "a" * 201, "", "a b", "é", "a;b=c"]),
    st.text(max_size=10),
    json_scalars,
)

timestamps = st.one_of(
    st.none(),
    st.floats(T0 - 7200, T0 + 500),
    st.integers(int(T0) - 7200, int(T0) + 500),
    st.sampled_from([T0 + 86400, -5.0, 0, 1322721979, "%d" % T0, "now", "1e999", " 1", "1_0"]),
    numbers,
    st.text(max_size=6),
)

GOOD_SUFFIXES = ["", "c", "ms", "g", "h", "d"]
typed_values = st.builds(
    lambda number, suffix, sign: "%s%r%s" % (sign, number, suffix),
    st.one_of(st.integers(0, 1000), st.floats(0, 1e6)),
    st.sampled_from(GOOD_SUFFIXES + ["s", "x", "ms ", "gg", "C"]),
    st.sampled_from(["", "+", "-"]),
)
good_typed_values = st.builds(
    lambda number, suffix, sign: "%s%r%s" % (sign, number, suffix),
    st.one_of(st.integers(0, 1000), st.floats(0, 1e6)),
    st.sampled_from(GOOD_SUFFIXES),
    st.sampled_from(["", "+", "-"]),
)


def _partial(kind, fields):
    obj = {"type": kind}
    obj.update(fields)
    return obj


sketches = st.fixed_dictionaries({}, optional={
    "bins": st.dictionaries(st.one_of(st.integers(-3000, 3000).map(str), st.text(max_size=3)),
                            numbers, max_size=3),
    "negative_bins": st.dictionaries(st.integers(-50, 50).map(str), numbers, max_size=2),
    "zero_count": numbers,
    "relative_accuracy": st.one_of(numbers, st.sampled_from([0.01, 0.05, 0.5])),
})

partial_fields = st.dictionaries(
    st.sampled_from(["count", "sum", "min", "max", "sumsq", "last", "members", "sketch", "bogus"]),
    st.one_of(
        numbers,
        st.lists(st.one_of(st.text(max_size=4), numbers), max_size=4),
        sketches,
    ),
    max_size=6,
)

good_partials = st.one_of(
    st.builds(lambda n, lo, spread: _partial(TIMER, {"count": n, "sum": n * (lo + spread / 2),
                                                     "min": lo, "max": lo + spread}),
              st.integers(1, 100), st.floats(-1e6, 1e6), st.floats(0, 1e3)),
    st.builds(lambda n: _partial(COUNTER, {"count": n}), st.integers(0, 1000)),
    st.builds(lambda x: _partial(GAUGE, {"last": x}), st.floats(-1e6, 1e6)),
    st.builds(lambda m: _partial(SET, {"members": m}), st.lists(st.text(max_size=4), min_size=1,
                                                                max_size=4)),
)

# A partial aggregate good but for its sketch.
sketch_partials = st.builds(
    lambda x, sketch: _partial(TIMER, {"count": 1, "sum": x, "min": x, "max": x, "sketch": sketch}),
    st.floats(-1e6, 1e6), sketches)

values = st.one_of(
    sketch_partials,
    st.builds(_partial, st.sampled_from(["c", "g", "ms", "h", "d", "v", "s", "x", 5, None]),
              partial_fields),
    numbers,
    typed_values,
    st.text(max_size=8),
    good_partials,
    json_values,
)

tags = st.one_of(
    st.dictionaries(st.sampled_from(["host", "dc", "", "a b", "k" * 101]),
                    st.one_of(st.sampled_from(["web1", "", "+1", "@x", "a:b/c", "v" * 101, "<b>"]),
                              numbers, json_values),
                    max_size=3),
    json_values,
)

good_names = st.sampled_from(["fz.a", "fz.b", "fz.c.d", "fz-e"])
good_times = st.one_of(st.none(), st.integers(int(T0) - 7200, int(T0) + 500))
good_values = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6), good_typed_values,
                        good_partials)
good_tags = st.dictionaries(st.sampled_from(["host", "dc"]), st.sampled_from(["web1", "+1", "a:b/c"]),
                            max_size=2)
# A tuple most likely to be accepted: a clean name, a time in range.
good_tuples = st.builds(lambda n, ts, v: [n, ts, v], good_names, good_times, good_values)
COMPONENTS = [names, timestamps, values, tags]


@st.composite
def mutated_tuples(draw):
    """
    A good tuple with up to two of its elements (or a fifth one) replaced by
    hostile ones, so the checks past the first are reached too.
    """
    item = [draw(good_names), draw(good_times), draw(good_values)]
    if draw(st.booleans()):
        item.append(draw(good_tags))
    for position in draw(st.lists(st.integers(0, 4), min_size=1, max_size=2, unique=True)):
        value = draw(COMPONENTS[position]) if position < 4 else draw(json_values)
        if position < len(item):
            item[position] = value
        else:
            item.append(value)
    return item


tuples = st.one_of(mutated_tuples(), st.lists(json_values, max_size=5))


def dump(obj):
    return json.dumps(obj, allow_nan=True).encode()


tuple_lines = st.one_of(
    st.builds(dump, tuples),
    st.builds(dump, st.lists(st.one_of(tuples, good_tuples), min_size=1, max_size=5)),
    st.builds(dump, good_tuples),
    st.builds(dump, json_values),
)

pieces = st.one_of(
    st.builds(lambda line, end: line + end, tuple_lines, st.sampled_from([b"\n", b"\r\n", b"\r\r\n"])),
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\n", b"\r\n", b"  \n", b"--help\n", b"--verbose\n", b"--nope\n", b"--\n",
                     b"\xff\xfe\n", b"[]\n", b"[[]]\n", b"[" * 1500 + b"\n"]),
    st.integers(MAX_LINE - 5, MAX_LINE + 50).map(lambda n: b"x" * n),
)


@st.composite
def chunked(draw, parts):
    """
    The concatenation of C{parts}, cut into reads at random places.
    """
    data = b"".join(draw(st.lists(parts, max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    chunks, start = [], 0
    for cut in cuts + [len(data)]:
        chunks.append(data[start:cut])
        start = cut
    return [c for c in chunks if c]


def points_of(store, key):
    """
    How many values a distribution-type series holds over all its buckets.
    """
    series = store.series[key]
    last = len(store.tiers) - 1
    return sum(row[0] for row in bucket_rows(store, series, last, 0, 2 ** 32).values())


def item_key(item):
    return series_key(item.name, item.tags)


# -- sweeps: every telling value in every place ------------------------------------

TELLING = [None, True, False, 0, -1, 1.5, -0.0, 1e308, -1e308, 5e-324, 2 ** 53 + 1, 2 ** 1024,
           -(2 ** 1024), 10 ** 400, float("nan"), float("inf"), float("-inf"), "", "1", "1c", "-2g",
           "nan", "inf", "1e999", "\u0661", " 1", "x" * 300, "<img src=x onerror=alert(1)>", [],
           [1], ["a", 1], {}, {"a": 1}]
GOOD_SKETCH = {"bins": {"0": 1, "5": 1}, "negative_bins": {"-3": 0}, "zero_count": 0,
               "relative_accuracy": 0.01}
SWEEP_BASES = [
    ["fz.s", T0, 1],
    ["fz.c", None, "1c", {"host": "web1"}],
    ["fz.t", None, {"type": "ms", "count": 2, "sum": 3, "min": 1, "max": 2, "sumsq": 5, "last": 2,
                    "sketch": GOOD_SKETCH}],
    ["fz.g", None, {"type": "g", "last": 1, "min": 0, "max": 2, "count": 3, "sum": 3}],
    ["fz.set", None, {"type": "s", "members": ["a", "b"]}],
    ["fz.set2", None, {"type": "s", "count": 3}],
    ["fz.cp", None, {"type": "c", "count": 4}],
]


def mutations(value):
    """
    Copies of C{value} (a JSON document) with one place replaced by each
    telling value, and, in objects, one key replaced by a telling string.
    """
    for telling in TELLING:
        yield telling
    if isinstance(value, list):
        for i, element in enumerate(value):
            for changed in mutations(element):
                yield value[:i] + [changed] + value[i + 1:]
        for telling in TELLING[:6]:
            yield value + [telling]
    elif isinstance(value, dict):
        for key, element in value.items():
            for changed in mutations(element):
                yield dict(value, **{key: changed})
            for telling in TELLING:
                if isinstance(telling, str):
                    renamed = {k: v for k, v in value.items() if k != key}
                    renamed[telling] = element
                    yield renamed


def sweep_tuples():
    for base in SWEEP_BASES:
        yield base
        for changed in mutations(base):
            yield changed


# -- the TCP line protocol ---------------------------------------------------------


def expected_lines(data, max_length):
    """
    The complete lines of C{data} the protocol must answer, in order, and
    whether an over-long line (the last one listed) closes the connection.
    """
    *lines, rest = data.split(b"\n")
    answered = []
    for line in lines:
        if len(line) > max_length:
            return answered, True
        answered.append(line)
    return answered, len(rest) > max_length


class TupleProtocolFuzz(SynchronousTestCase):
    def feed(self, chunks):
        core = make_core(self, "--max-line-length", str(MAX_LINE), "--max-batch", "4")
        factory = TupleFactory(core, core.settings, core.clock)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        transport.clear()
        for chunk in chunks:
            if transport.disconnecting:
                break  # a real transport reads nothing more once closing
            proto.dataReceived(chunk)
        return core, transport

    def check_answers(self, core, transport, data):
        """
        One answer per complete line, in order; what is acknowledged is stored.
        Returns the answers.
        """
        lines, too_long = expected_lines(data, MAX_LINE)
        out = transport.value()
        answers = out.split(b"\r\n")
        self.assertEqual(answers.pop(), b"", "answers end with CRLF: %r" % (out[-80:],))
        if too_long:
            self.assertTrue(answers[-1].startswith(b"--ERROR line longer than %d bytes" % MAX_LINE))
            answers.pop()
            self.assertTrue(transport.disconnecting)
        else:
            self.assertFalse(transport.disconnecting)
        self.assertEqual(len(answers), len(lines), (lines, answers))
        accepted = []
        errors = batch_extra = 0
        for line, answer in zip(lines, answers):
            self.assertNotIn(b"\n", answer)
            stripped = line.rstrip(b"\r").strip()
            if answer.startswith(b"--OK"):
                if stripped == b"--verbose":
                    continue
                parsed = parse_line(stripped, core.settings.limits)
                expected = b"--OK %d" % len(parsed.items) if parsed.batch else b"--OK"
                self.assertEqual(answer, expected)
                accepted.extend(parsed.items)
            elif answer.startswith(b"--HELP"):
                self.assertEqual(stripped, b"--help")
            else:
                self.assertTrue(answer.startswith(b"--ERROR ") and len(answer) > 8, answer)
                errors += 1
                try:
                    refused = parse_line(stripped, core.settings.limits)
                except ParseError:
                    continue
                # A refused batch counts each refused item.
                batch_extra += len(refused.items) - 1
        counters = core.counters
        self.assertEqual(counters["simplestats.tcp.points"], len(accepted))
        self.assertEqual(counters["simplestats.tcp.lines"], len(lines))
        # Every error answer is a bad line counted.
        bad = counters["simplestats.tcp.bad"]
        self.assertTrue(errors + too_long <= bad <= errors + too_long + batch_extra,
                        (bad, errors, too_long, batch_extra))
        self.assertEqual(counters["simplestats.tcp.too_long"], int(too_long))
        store = core.store
        counts = {}
        for item in accepted:
            key = item_key(item)
            self.assertEqual(store.series[key].type, item.type)
            if isinstance(item, Sample) and item.type in DISTRIBUTION_TYPES:
                counts[key] = counts.get(key, 0) + 1
            elif isinstance(item, Partial) and item.type in DISTRIBUTION_TYPES:
                counts[key] = counts.get(key, 0) + item.fields["count"]
        for key, count in counts.items():
            self.assertAlmostEqual(points_of(store, key), count, places=6)
        return answers

    @FUZZ
    @given(chunked(pieces))
    def test_every_line_gets_one_answer(self, chunks):
        """Arbitrary bytes: one answer per complete line, in order, and what is acknowledged is stored."""
        core, transport = self.feed(chunks)
        self.check_answers(core, transport, b"".join(chunks))

    @FUZZ
    @given(st.lists(tuple_lines, min_size=1, max_size=8), st.sampled_from([b"\n", b"\r\n"]))
    def test_tuple_lines(self, lines, newline):
        """Lines of good tuples with hostile elements: one answer each, never an exception."""
        data = newline.join(lines) + newline
        core, transport = self.feed([data])
        self.check_answers(core, transport, data)

    def test_each_telling_value_in_each_place(self):
        """A sweep: every telling value in every place of every kind of tuple gets one answer."""
        lines = [dump(item) for item in sweep_tuples()]
        data = b"\n".join(lines) + b"\n"
        core, transport = self.feed([data])
        answers = self.check_answers(core, transport, data)
        self.assertEqual(len(answers), len(lines))
        self.assertGreater(len(lines), 1000)


# -- statsd over UDP ---------------------------------------------------------------

statsd_names = st.sampled_from(["s.a", "s.b", "s-c", "s_d.e", "s a/b", "s.f;host=web1", "s.g#x"])
statsd_numbers = st.one_of(st.integers(-1000, 1000).map(str), st.floats(-1e6, 1e6).map(repr),
                           st.sampled_from(["+3", "-2.5", ".5", "1e3", "0"]))


@st.composite
def good_statsd_line(draw):
    """
    C{(line, key, type, values, rate)} for a metric line that must be kept.
    The type is part of the name so no two good lines fight over a type.
    """
    kind = draw(st.sampled_from(["c", "ms", "h", "d", "g", "s"]))
    base = draw(st.sampled_from(["s.a", "s-b", "s_c.d"]))
    name = "%s.%s" % (base, kind)
    if kind == "s":
        member = draw(st.text(st.characters(codec="ascii", exclude_characters="|\n\r:"),
                              min_size=1, max_size=6))
        value_text, count = member, 1
    else:
        packed = draw(st.lists(statsd_numbers, min_size=1, max_size=3))
        value_text, count = ":".join(packed), len(packed)
    line = "%s:%s|%s" % (name, value_text, kind)
    rate = 1.0
    if draw(st.booleans()):
        rate = draw(st.sampled_from([1.0, 0.5, 0.1, 0.25]))
        line += "|@%r" % rate
    tags = ()
    if draw(st.booleans()):
        tags = (("host", draw(st.sampled_from(["web1", "web2"]))),)
        line += "|#host:%s" % tags[0][1]
    if draw(st.booleans()):
        line += "|T%d" % draw(st.integers(int(T0) - 3600, int(T0) + 60))
    if kind not in ("c", "ms", "h", "d"):
        rate = 1.0
    return line, series_key(name, tags), kind, count, rate


BAD_STATSD = st.one_of(
    st.sampled_from([
        "bad.a:1|zz", "bad.b:abc|c", "bad.c:nan|ms", "bad.d:inf|g", "bad.e:1|c|@0",
        "bad.f:1|c|@2", ":1|c", "bad.g1|c", "bad.h:1", "_e{9,1}:a|b", "_sc|x|0",
        "bad.i:1|ms|Tnow", "bad.j:1:x|ms", "!!:1|c", "bad.k:|s", "bad.l:1|",
        "bad.m:\u0661|c",
    ]),
    st.builds(lambda t: "bad.n:%s|c" % (t,), st.text(st.characters(codec="ascii"), min_size=1,
                                                  max_size=5).filter(
        lambda t: "\n" not in t and "|" not in t and _not_a_number(t) and ":" not in t)),
)


def _not_a_number(text):
    try:
        float(text)
    except ValueError:
        return True
    return False


class StatsdFuzz(SynchronousTestCase):
    def setUp(self):
        self.core = make_core(self)
        self.proto = StatsdProtocol(self.core, self.core.settings.limits, self.core.clock)

    @FUZZ
    @given(st.lists(st.one_of(st.binary(max_size=80),
                              st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass"))),
                    max_size=5))
    def test_arbitrary_packets(self, packets):
        """Arbitrary datagrams never raise; every metric is either a point or counted bad."""
        counters = self.core.counters
        for data in packets:
            before = counters["simplestats.udp.bad"] + counters["simplestats.udp.points"]
            samples, errors = parse_packet(data, self.core.settings.limits)
            self.proto.datagramReceived(data, PEER)
            after = counters["simplestats.udp.bad"] + counters["simplestats.udp.points"]
            self.assertEqual(after - before, len(samples) + len(errors), data)

    def test_each_telling_part(self):
        """A sweep: each part of a statsd line replaced by each telling text, alone and packed."""
        counters = self.core.counters
        lines = list(statsd_sweep())
        for data in lines + [b"\n".join(lines)]:
            before = counters["simplestats.udp.bad"] + counters["simplestats.udp.points"]
            samples, errors = parse_packet(data, self.core.settings.limits)
            self.proto.datagramReceived(data, PEER)
            after = counters["simplestats.udp.bad"] + counters["simplestats.udp.points"]
            self.assertEqual(after - before, len(samples) + len(errors), data)
        self.assertGreater(len(lines), 150)

    @FUZZ
    @given(st.lists(st.one_of(good_statsd_line(), BAD_STATSD), min_size=1, max_size=10),
           st.sampled_from(["\n", "\r\n"]), st.booleans())
    def test_good_lines_kept_bad_lines_counted(self, lines, newline, trailing):
        """A packet of known-good and known-bad lines: each bad line counted once, each good one stored."""
        core = make_core(self)
        proto = StatsdProtocol(core, core.settings.limits, core.clock)
        text = newline.join(line if isinstance(line, str) else line[0] for line in lines)
        data = (text + (newline if trailing else "")).encode()
        proto.datagramReceived(data, PEER)
        bad = [line for line in lines if isinstance(line, str)]
        good = [line for line in lines if not isinstance(line, str)]
        self.assertEqual(core.counters["simplestats.udp.bad"], len(bad), data)
        expected = {}
        for _, key, kind, count, rate in good:
            if kind in ("ms", "h", "d"):
                expected[key] = expected.get(key, 0) + count / rate
            self.assertIn(key, core.store.series)
        for key, count in expected.items():
            self.assertAlmostEqual(points_of(core.store, key), count, places=6)


STATSD_TELLING = [b"", b":", b"|", b"#", b"@", b",", b"=", b";", b" ", b"\t", b"\r", b"T", b"nan",
                  b"inf", b"-inf", b"1e999", b"0", b"-0", b"+", b"-", b"1:2", "\u0661".encode(),
                  b"\xff", b"x" * 300, b"\x00", b"_e{1,1}", b"<img src=x>"]
STATSD_BASE = [b"fz.s", b"1", b"ms", b"@0.5", b"#host:web1", b"T%d" % T0]


def statsd_sweep():
    """
    The base line C{name:value|type|@rate|#tags|Tts} with each of its parts
    replaced by each telling text, and the parts left off one by one.
    """
    for position in range(len(STATSD_BASE)):
        for telling in STATSD_TELLING + [None]:
            parts = list(STATSD_BASE)
            parts[position] = telling
            name, value, kind, *extensions = parts
            line = b"%s:%s|%s" % (name or b"", value or b"", kind or b"")
            yield line + b"".join(b"|" + e for e in extensions if e is not None)


# -- import files ------------------------------------------------------------------


def as_csv(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(transfer.CSV_HEADER)
    for row in rows:
        if not isinstance(row, list) or len(row) not in (3, 4):
            writer.writerow([json.dumps(row, allow_nan=True)])
            continue
        cells = []
        for cell in row[:3]:
            cells.append(cell if isinstance(cell, str) else json.dumps(cell, allow_nan=True))
        if len(row) == 4:
            t = row[3]
            cells.append(";".join("%s=%s" % kv for kv in t.items()) if isinstance(t, dict)
                         else json.dumps(t, allow_nan=True))
        writer.writerow(cells)
    return out.getvalue().encode()


def encode_file(rows, fmt):
    if fmt == "json":
        return json.dumps(rows, allow_nan=True).encode()
    if fmt == "ndjson":
        return b"".join(dump(row) + b"\n" for row in rows)
    return as_csv(rows)


import_bodies = st.one_of(
    st.builds(encode_file, st.lists(st.one_of(tuples, good_tuples), max_size=8),
              st.sampled_from(["json", "ndjson", "csv"])),
    st.builds(encode_file, st.lists(good_tuples, min_size=1, max_size=8),
              st.sampled_from(["json", "ndjson", "csv"])),
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(dump, json_values),
)


class APIFuzzCase(SynchronousTestCase):
    def make_api(self):
        core = make_core(self)
        api = WebAPI(core, core.settings, core.clock)
        return core, api, StubTreq(api.app.resource())

    def request(self, core, stub, method, url, **kwargs):
        d = stub.request(method, url, **kwargs)
        self.turn(core, stub, d)
        response = self.successResultOf(d)
        d = stub.content(response)
        self.turn(core, stub, d)
        return response, self.successResultOf(d)

    @staticmethod
    def turn(core, stub, d):
        # Streaming, sliced and import answers go on in later turns of the
        # core's clock (d.called is true while d waits on the answer: not
        # enough).
        fired = []
        d.addBoth(lambda result: fired.append(True) or result)
        for _ in range(10000):
            stub.flush()
            if fired:
                return
            core.clock.advance(0)

    def assertJSONError(self, response, body, statuses=(400, 404)):
        self.assertIn(response.code, statuses, body[:300])
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["application/json; charset=utf-8"])
        error = json.loads(body)
        self.assertIsInstance(error["error"], str)
        self.assertTrue(error["error"])
        return error


class ImportFuzz(APIFuzzCase):
    @FUZZ
    @given(import_bodies, st.sampled_from(["auto", "json", "ndjson", "csv"]))
    def test_parse_import_never_raises(self, body, fmt):
        """parse_import on any bytes returns items or numbered bad rows, never raises."""
        limits = make_core(self).settings.limits
        items, numbers, bad, bad_count, detected = transfer.parse_import(body, fmt, limits)
        self.assertIn(detected, ("json", "ndjson", "csv"))
        self.assertEqual(len(items), len(numbers))
        self.assertLessEqual(len(bad), min(bad_count, transfer.MAX_REPORTED_ROWS))
        self.assertEqual(bool(bad), bool(bad_count))
        if not bad_count:
            self.assertTrue(items)
        for number, message in bad:
            self.assertIsInstance(number, int)
            self.assertTrue(message)

    @FUZZ
    @given(import_bodies, st.sampled_from(["auto", "json", "ndjson", "csv"]))
    def test_import_all_or_nothing(self, body, fmt):
        """POST /api/import: 200 with every row stored, or 400 listing bad rows and nothing stored."""
        core, _, stub = self.make_api()
        before = dict(core.store.series)
        response, answer = self.request(core, stub, "POST", BASE + "/api/import?format=" + fmt,
                                        data=body)
        if response.code == 200:
            result = json.loads(answer)
            items, _, _, _, _ = transfer.parse_import(body, fmt, core.settings.limits)
            self.assertEqual(result["imported"], len(items))
            self.assertEqual(core.counters["simplestats.import.points"], len(items))
            keys = {item_key(i) for i in items}
            self.assertEqual(result["series"], len(keys))
            for key in keys:
                self.assertIn(key, core.store.series)
        else:
            error = self.assertJSONError(response, answer, (400,))
            self.assertTrue(error["bad_rows"])
            self.assertGreaterEqual(error["bad_row_count"], len(error["bad_rows"]))
            for row in error["bad_rows"]:
                self.assertIsInstance(row["row"], int)
                self.assertTrue(row["error"])
            self.assertEqual(core.store.series, before)
            self.assertEqual(core.counters["simplestats.import.points"], 0)

    def test_each_telling_row(self):
        """A sweep: the TCP sweep's tuples in one file per format, then one a file; bad rows counted, good ones read back."""
        rows = list(sweep_tuples())
        core, _, stub = self.make_api()
        for fmt in ("json", "ndjson", "csv"):
            body = encode_file(rows, fmt)
            items, _, bad, bad_count, _ = transfer.parse_import(body, fmt, core.settings.limits)
            response, answer = self.request(core, stub, "POST", BASE + "/api/import?format=" + fmt,
                                            data=body)
            error = self.assertJSONError(response, answer, (400,))
            # The answer adds the rows the store refuses (times, types) to
            # those that do not parse: one pass checks both.
            self.assertGreaterEqual(error["bad_row_count"], bad_count)
            self.assertEqual(len(error["bad_rows"]), transfer.MAX_REPORTED_ROWS)
            if fmt == "ndjson":
                refused = 0
                for row in rows:
                    try:
                        parse_line(dump(row), core.settings.limits)
                    except ParseError:
                        refused += 1
                self.assertEqual(bad_count, refused)
        # One row a file: the good ones are imported, so the store takes
        # every telling value that passes the parser.
        for row in rows:
            response, answer = self.request(core, stub, "POST", BASE + "/api/import?format=ndjson",
                                            data=encode_file([row], "ndjson"))
            if response.code != 200:
                self.assertJSONError(response, answer, (400,))
        # What was taken reads back: every field of every series, and the export.
        from server.core.aggregate import PUBLIC_FIELDS

        self.assertGreater(len(core.store.series), 5)
        for series in list(core.store.series.values()):
            fields = ",".join(PUBLIC_FIELDS[series.family])
            response, answer = self.request(
                core, stub, "GET", BASE + "/api/series?from=-1d&fields=%s&key=%s"
                % (fields, quote(series.key, safe="")))
            self.assertEqual(response.code, 200, answer)
            json.loads(answer)
        for fmt in ("ndjson", "json", "csv"):
            response, answer = self.request(core, stub, "GET", BASE + "/api/export?format=" + fmt)
            self.assertEqual(response.code, 200)
            self.assertTrue(answer.endswith(b"\n"))

    @FUZZ
    @given(st.lists(good_tuples, min_size=1, max_size=10), st.sampled_from(["json", "ndjson", "csv"]))
    def test_good_files_are_imported(self, rows, fmt):
        """A file of tuples the TCP port would take is imported whole in every format."""
        core, _, stub = self.make_api()
        limits = core.settings.limits
        parsed = []
        for row in rows:
            parsed.append(parse_line(dump(row), limits).items[0])
        if len({item_key(i): i.type for i in parsed}) != len({(item_key(i), i.type) for i in parsed}):
            return  # two types for one series: refused, as the TCP port would
        response, answer = self.request(core, stub, "POST", BASE + "/api/import?format=" + fmt,
                                        data=encode_file(rows, fmt))
        self.assertEqual(response.code, 200, answer)
        self.assertEqual(json.loads(answer)["imported"], len(rows))


# -- query parameters ------------------------------------------------------------

KEYS = ["q.timer", "q.count;host=web1", "q.gauge", "q.set", "q.sample", "a" * 200]
TIMES = ["now", "-1h", "-7d", "-0.5h", "-" + "9" * 400 + "d", "-1e400d", "-99999999999w", "1e308",
         "-1e308", "0", "nan", "inf", "%d" % T0, " 5", ""]
POOLS = {
    "filter": ["", "q", "q.t*", "host:web1", "host:web*", "host:", ":x", "/(/", "/^q/", "/a", "*",
               "?", "-", "--x", "-q -a", "-" * 3000 + "x", "*a*a*a*a*a*a*b", "?" * 300],
    "limit": ["0", "-1", "10", "9" * 30, "1.5", "x", "9" * 5000],
    "name": KEYS + ["q.count", "nope", "", "a;b"],
    "key": KEYS + ["nope", "", "q.count;host=", ";"],
    "tags": ["host:web1", "host", ":", "a:b,c:d", ",,", "host:web1,host:web2"],
    "from": TIMES,
    "until": TIMES,
    "resolution": ["5s", "1m", "1h", "1d", "auto", "7s", "0s", "60", "", "3600", "9" * 30],
    "fields": ["mean,p90", "count", "rate", "last", "nope", ",", "mean,mean", "p99,count,std"],
    "field": ["mean", "count", "rate", "last", "nope", ""],
    "tz_offset": ["1439", "-1440", "\u0661\u0662", "0", "-0", "x", "1e3", "9" * 30],
    "format": ["ndjson", "json", "csv", "xml", ""],
}
PARAMETERS = {
    "/api/metrics": ["filter", "limit"],
    "/api/series": ["name", "key", "tags", "from", "until", "resolution", "fields"],
    "/api/dayweek": ["name", "key", "tags", "field", "tz_offset", "resolution"],
    "/api/export": ["filter", "from", "until", "format"],
    "DELETE /api/series": ["key", "filter"],
}
any_text = st.one_of(st.text(max_size=20), st.binary(max_size=6))


@st.composite
def queries(draw, endpoint):
    """
    The path of C{endpoint} with a query string of its parameters (each
    from a pool of telling values, or arbitrary text or bytes) and perhaps
    unknown ones, percent-encoded.
    """
    pairs = []
    for name in PARAMETERS[endpoint]:
        if draw(st.booleans()):
            pairs.append((name, draw(st.one_of(st.sampled_from(POOLS[name]), any_text))))
    for name in draw(st.lists(st.text(max_size=4), max_size=2)):
        pairs.append((name, draw(any_text)))
    parts = []
    for name, value in draw(st.permutations(pairs)):
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogatepass")
        parts.append(quote(name.encode("utf-8", "surrogatepass"), safe="") + "="
                     + quote_from_bytes(value, safe=""))
    path = endpoint.split()[-1]
    return path + ("?" + "&".join(parts) if parts else "")


class QueryFuzz(APIFuzzCase):
    def setUp(self):
        self.core, self.api, self.stub = self.make_api()
        now = T0
        items = []
        for age in range(0, 9 * 86400, 4003):
            ts = now - age
            items += [Sample("q.timer", (), TIMER, float(age % 97), ts),
                      Sample("q.count", (("host", "web1"),), COUNTER, 2.0, ts),
                      Sample("q.gauge", (), GAUGE, float(age % 13), ts),
                      Sample("q.set", (), SET, str(age % 5), ts),
                      Sample("q.sample", (), SAMPLE, 1e308, ts),
                      Sample("a" * 200, (), SAMPLE, -1e308, ts)]
        self.assertEqual(self.core.submit(items, "test"), [])
        self.core.clock.advance(60)
        self.core.store.tick(self.core.clock.seconds())

    def check(self, url, method="GET"):
        response, body = self.request(self.core, self.stub, method, BASE + url)
        if response.code != 200:
            self.assertJSONError(response, body)
        elif not url.startswith("/api/export"):
            self.assertEqual(response.headers.getRawHeaders("content-type"),
                             ["application/json; charset=utf-8"])
            json.loads(body)
        return response

    def test_each_telling_value_in_each_parameter(self):
        """A sweep: each parameter of each endpoint set to each telling value, the others good."""
        good = {"/api/metrics": {"filter": "q", "limit": "10"},
                "/api/series": {"name": "q.timer", "from": "-1d", "until": "now",
                                "resolution": "auto", "fields": "mean"},
                "/api/dayweek": {"name": "q.timer", "field": "mean", "tz_offset": "60"},
                "/api/export": {"filter": "q", "from": "-1d", "until": "now", "format": "csv"}}
        telling = sorted({v for pool in POOLS.values() for v in pool}) + ["\x00", "\ud800x"]
        requests = 0
        for path, base in sorted(good.items()):
            self.check(path + "?" + "&".join("%s=%s" % (k, quote(v)) for k, v in base.items()))
            for name in PARAMETERS[path]:
                for value in telling:
                    params = dict(base, **{name: value})
                    query = "&".join(
                        "%s=%s" % (k, quote_from_bytes(v.encode("utf-8", "surrogatepass"), safe=""))
                        for k, v in params.items())
                    self.check(path + "?" + query)
                    requests += 1
        self.assertGreater(requests, 1000)

    @FUZZ
    @given(queries("/api/metrics"))
    def test_metrics(self, url):
        """/api/metrics with arbitrary parameters: 200, or 400 naming the problem."""
        self.check(url)

    @FUZZ
    @given(queries("/api/series"))
    def test_series(self, url):
        """/api/series with arbitrary parameters: 200, 400 or 404, never 500."""
        self.check(url)

    @FUZZ
    @given(queries("/api/dayweek"))
    def test_dayweek(self, url):
        """/api/dayweek with arbitrary parameters: 200, 400 or 404, never 500."""
        self.check(url)

    @FUZZ
    @given(queries("/api/export"))
    def test_export(self, url):
        """/api/export with arbitrary parameters: a whole export or a JSON 400, never 500."""
        self.check(url)

    @FUZZ
    @given(queries("DELETE /api/series"))
    def test_delete(self, url):
        """DELETE /api/series with arbitrary key or filter: 200, 400 or 404, never 500."""
        self.check(url, method="DELETE")


class HugeValueTests(APIFuzzCase):
    def test_huge_finite_values_read_back_everywhere(self):
        """Values near the float limit (sums and squares overflow) never break a read: every endpoint answers 200 with JSON."""
        from server.core.aggregate import PUBLIC_FIELDS

        core, _, stub = self.make_api()
        items = []
        for hour in range(8 * 24 + 1):
            ts = T0 - hour * 3600
            for value in (1e308, 1.5e308, 1e200):
                items += [Sample("huge.timer", (), TIMER, value, ts),
                          Sample("huge.gauge", (), GAUGE, value, ts),
                          Sample("huge.count", (), COUNTER, value, ts)]
        self.assertEqual(core.submit(items, "test"), [])
        core.clock.advance(60)
        core.store.tick(core.clock.seconds())
        for series in core.store.series.values():
            for field in PUBLIC_FIELDS[series.family]:
                for path in ("/api/series?from=-9d&resolution=1h&fields=%s&key=%s",
                             "/api/dayweek?resolution=1h&field=%s&key=%s"):
                    response, answer = self.request(core, stub, "GET",
                                                    BASE + path % (field, series.key))
                    self.assertEqual(response.code, 200, (path, field, series.key, answer[:300]))
                    json.loads(answer)
        response, answer = self.request(core, stub, "GET", BASE + "/api/metrics")
        self.assertEqual(response.code, 200)
        for fmt in ("ndjson", "json", "csv"):
            response, answer = self.request(core, stub, "GET", BASE + "/api/export?format=" + fmt)
            self.assertEqual(response.code, 200, (fmt, answer[:300]))
            if fmt == "json":
                self.assertEqual(len(json.loads(answer)), len(set(
                    (i.name, i.timestamp) for i in items)))


class HostileInputTests(SynchronousTestCase):
    def test_sketch_accuracies_do_not_grow_the_cache(self):
        """Partial aggregates naming thousands of sketch accuracies leave the mapping cache bounded."""
        from server.core import sketch

        for i in range(2000):
            partial = {"type": "ms", "count": 1, "sum": 1, "min": 1, "max": 1,
                       "sketch": {"relative_accuracy": 0.01 + i * 1e-7, "bins": {"1": 1}}}
            parse_line(dump(["fz.t", None, partial]), Limits())
        self.assertLessEqual(len(sketch._mappings), sketch._MAX_CACHED)

    def test_statsd_packet_over_the_limit_is_refused_whole(self):
        """A datagram longer than max_packet_size (the port reads one byte more) is dropped whole and counted."""
        core = make_core(self)
        proto = StatsdProtocol(core, core.settings.limits, core.clock, max_packet_size=35)
        taken = b"trunc.a:1|c\ntrunc.b:1|c|#host:web12"
        refused = b"trunc.c:1|c\ntrunc.d:1|c|#host:web123"
        self.assertEqual((len(taken), len(refused)), (35, 36))
        proto.datagramReceived(taken, PEER)
        proto.datagramReceived(refused, PEER)
        self.assertEqual(sorted(core.store.series), ["trunc.a", "trunc.b;host=web12"])
        self.assertEqual(core.counters["simplestats.udp.too_large"], 1)
        self.assertEqual(core.counters["simplestats.udp.bad"], 1)
        self.assertEqual(core.counters["simplestats.udp.packets"], 2)

    def test_glob_with_many_stars_is_fast(self):
        """A glob of many stars against a long name answers at once (no regex backtracking blow-up)."""
        match = compile_filter("*a*a*a*a*a*a*a*a*b")
        began = time.perf_counter()
        self.assertFalse(match("a" * 200, {}))
        self.assertTrue(match("a" * 199 + "b", {}))
        self.assertLess(time.perf_counter() - began, 0.5)

    def test_many_negations(self):
        """A term of thousands of leading dashes is a plain (double) negation, not a recursion error."""
        self.assertTrue(compile_filter("--" * 2000 + "web")("web1", {}))
        self.assertFalse(compile_filter("-" * 4001 + "web")("web1", {}))
        self.assertTrue(compile_filter("-")("a-b", {}))
        self.assertFalse(compile_filter("--")("a-b", {}))
