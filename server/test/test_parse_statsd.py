"""
Tests for L{server.core.parse_statsd}.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import (
    COUNTER,
    DISTRIBUTION,
    GAUGE,
    HISTOGRAM,
    SET,
    TIMER,
    Limits,
    Sample,
)
from server.core.parse_statsd import parse_packet

LIMITS = Limits()
SMALL = Limits(max_name_length=10, max_tags=2, max_tag_length=5)

# (one metric line, the samples it gives)
GOOD_LINES = [
    (b"a:1|c", [Sample("a", (), COUNTER, 1.0)]),
    (b"a.b-c_d:1|c", [Sample("a.b-c_d", (), COUNTER, 1.0)]),
    (b"a:-3|c", [Sample("a", (), COUNTER, -3.0)]),
    (b"a:+3|c", [Sample("a", (), COUNTER, 3.0)]),
    (b"a:1.5|c", [Sample("a", (), COUNTER, 1.5)]),
    (b"a:1e3|c", [Sample("a", (), COUNTER, 1000.0)]),
    (b"a:.5|c", [Sample("a", (), COUNTER, 0.5)]),
    (b"a:1|c|@0.1", [Sample("a", (), COUNTER, 1.0, rate=0.1)]),
    (b"a:1|c|@1", [Sample("a", (), COUNTER, 1.0, rate=1.0)]),
    (b"a:320|ms", [Sample("a", (), TIMER, 320.0)]),
    (b"a:320|ms|@0.5", [Sample("a", (), TIMER, 320.0, rate=0.5)]),
    (b"a:+3|ms", [Sample("a", (), TIMER, 3.0)]),
    (b"a:5|h", [Sample("a", (), HISTOGRAM, 5.0)]),
    (b"a:5|d", [Sample("a", (), DISTRIBUTION, 5.0)]),
    (b"a:5|d|@0.25", [Sample("a", (), DISTRIBUTION, 5.0, rate=0.25)]),
    (b"a:23|g", [Sample("a", (), GAUGE, 23.0)]),
    (b"a:+3|g", [Sample("a", (), GAUGE, 3.0, delta=True)]),
    (b"a:-2|g", [Sample("a", (), GAUGE, -2.0, delta=True)]),
    (b"a:-0|g", [Sample("a", (), GAUGE, 0.0, delta=True)]),
    (b"a:3|g|@0.5", [Sample("a", (), GAUGE, 3.0)]),
    (b"a:u1|s", [Sample("a", (), SET, "u1")]),
    (b"a:u1:x|s", [Sample("a", (), SET, "u1:x")]),
    (b"a:u1|s|@0.5", [Sample("a", (), SET, "u1")]),
    (b"a:\xc3\xa9t\xc3\xa9|s", [Sample("a", (), SET, "\xe9t\xe9")]),
    (b"a:1|c\r", [Sample("a", (), COUNTER, 1.0)]),
    # value packing
    (
        b"a:1:2:3|ms",
        [Sample("a", (), TIMER, 1.0), Sample("a", (), TIMER, 2.0), Sample("a", (), TIMER, 3.0)],
    ),
    (
        b"a:1:2|c|@0.5|#h:w",
        [Sample("a", (("h", "w"),), COUNTER, 1.0, rate=0.5), Sample("a", (("h", "w"),), COUNTER, 2.0, rate=0.5)],
    ),
    (b"a:5:+1:-2|g", [Sample("a", (), GAUGE, 5.0), Sample("a", (), GAUGE, 1.0, delta=True), Sample("a", (), GAUGE, -2.0, delta=True)]),
    # extensions, in any order
    (b"a:1|c|#host:web1,env:prod", [Sample("a", (("env", "prod"), ("host", "web1")), COUNTER, 1.0)]),
    (b"a:1|c|#flag", [Sample("a", (("flag", ""),), COUNTER, 1.0)]),
    (b"a:1|c|#url:http://x/y", [Sample("a", (("url", "http://x/y"),), COUNTER, 1.0)]),
    (b"a:1|c|#h:w|#z:1", [Sample("a", (("h", "w"), ("z", "1")), COUNTER, 1.0)]),
    (b"a:1|c|#h:a,h:b", [Sample("a", (("h", "b"),), COUNTER, 1.0)]),
    (b"a:1|c|#", [Sample("a", (), COUNTER, 1.0)]),
    (b"a:1|c|#h w:a b!,:x,!!:y", [Sample("a", (("hw", "ab"),), COUNTER, 1.0)]),
    (b"a:1|c|T1700000000", [Sample("a", (), COUNTER, 1.0, timestamp=1700000000.0)]),
    (b"a:1|c|T1700000000.5", [Sample("a", (), COUNTER, 1.0, timestamp=1700000000.5)]),
    (b"a:1|c|c:abc123", [Sample("a", (), COUNTER, 1.0)]),
    (b"a:1|c|e:it-false,cn-x|card:low", [Sample("a", (), COUNTER, 1.0)]),
    (b"a:1|c|", [Sample("a", (), COUNTER, 1.0)]),
    (
        b"a:1|ms|T17|c:abc|#h:w|@0.5",
        [Sample("a", (("h", "w"),), TIMER, 1.0, timestamp=17.0, rate=0.5)],
    ),
    (b"a:1|c|@0.5|@1", [Sample("a", (), COUNTER, 1.0, rate=1.0)]),
    # Etsy keyNameSanitize
    (b"a b:1|c", [Sample("a_b", (), COUNTER, 1.0)]),
    (b"a \t b:1|c", [Sample("a_b", (), COUNTER, 1.0)]),
    (b"a/b:1|c", [Sample("a-b", (), COUNTER, 1.0)]),
    (b"a!b@c#d$e%:1|c", [Sample("abcde", (), COUNTER, 1.0)]),
    (b"caf\xc3\xa9:1|c", [Sample("caf", (), COUNTER, 1.0)]),
    (b"a=b:1|c", [Sample("ab", (), COUNTER, 1.0)]),
    # Graphite tags in the name
    (b"a;h=w;env=prod:1|c", [Sample("a", (("env", "prod"), ("h", "w")), COUNTER, 1.0)]),
    (b"a;h=w:1|c|#z:2", [Sample("a", (("h", "w"), ("z", "2")), COUNTER, 1.0)]),
    (b"a;h=w:1|c|#h:x", [Sample("a", (("h", "x"),), COUNTER, 1.0)]),
    (b"a;flag:1|c", [Sample("a", (("flag", ""),), COUNTER, 1.0)]),
    (b"a;;h=w;:1|c", [Sample("a", (("h", "w"),), COUNTER, 1.0)]),
    (b"a;h=x=y:1|c", [Sample("a", (("h", "xy"),), COUNTER, 1.0)]),
    (b"a;h=w/v:1|c", [Sample("a", (("h", "w-v"),), COUNTER, 1.0)]),
    # Telegraf tags in the name (hot-shots telegraf: true)
    (b"req,host=a,env=ci:1|c", [Sample("req", (("env", "ci"), ("host", "a")), COUNTER, 1.0)]),
    (b"req,host=a:1|c|#env:ci", [Sample("req", (("env", "ci"), ("host", "a")), COUNTER, 1.0)]),
    (b"a b,h=w x:1|c", [Sample("a_b", (("h", "wx"),), COUNTER, 1.0)]),
]

# (one metric line, limits, words its error must contain)
BAD_LINES = [
    (b"a", LIMITS, 'missing ":" between name and value in "a"'),
    (b"a|c", LIMITS, 'missing ":"'),
    (b"a:1", LIMITS, 'missing "|" before the type in "a:1"'),
    (b"a:1c", LIMITS, 'missing "|"'),
    (b":1|c", LIMITS, 'empty metric name in ":1|c"'),
    (b"!!!:1|c", LIMITS, "empty metric name"),
    (b";h=w:1|c", LIMITS, "empty metric name"),
    (b"req,host:1|c", LIMITS, 'Telegraf-style tag "host" after a "," has no "="'),
    (b",h=w:1|c", LIMITS, "empty metric name"),
    (b"a:1|x", LIMITS, 'unknown type "x" (expected c, ms, h, d, g or s) in "a:1|x"'),
    (b"a:1|", LIMITS, 'unknown type ""'),
    (b"a:1|C", LIMITS, 'unknown type "C"'),
    (b"a:1|@0.5|c", LIMITS, 'unknown type "@0.5"'),
    (b"a:1|m", LIMITS, "unknown type"),
    (b"a:|c", LIMITS, 'value "" is not a finite number'),
    (b"a:x|c", LIMITS, 'value "x" is not a finite number in "a:x|c"'),
    (b"a:nan|c", LIMITS, 'value "nan" is not a finite number'),
    (b"a:NaN|g", LIMITS, "not a finite number"),
    (b"a:inf|ms", LIMITS, "not a finite number"),
    (b"a:-Infinity|ms", LIMITS, "not a finite number"),
    (b"a:1e999|c", LIMITS, "not a finite number"),
    (b"a:0x10|c", LIMITS, "not a finite number"),
    (b"a:1,5|c", LIMITS, "not a finite number"),
    (b"a:\xd9\xa1|c", LIMITS, "not a finite number"),
    (b"a:1:x:3|ms", LIMITS, 'value "x" is not a finite number in "a:1:x:3|ms"'),
    (b"a:1::3|ms", LIMITS, 'value "" is not a finite number'),
    (b"a:|s", LIMITS, "empty set member"),
    (b"a:1|c|@0", LIMITS, 'sample rate must be a number in (0, 1], got "@0"'),
    (b"a:1|c|@-0.5", LIMITS, "sample rate must be"),
    (b"a:1|c|@1.5", LIMITS, "sample rate must be"),
    (b"a:1|c|@x", LIMITS, "sample rate must be"),
    (b"a:1|c|@", LIMITS, "sample rate must be"),
    (b"a:1|c|@nan", LIMITS, "sample rate must be"),
    (b"a:1|g|@2", LIMITS, "sample rate must be"),
    (b"a:1|c|Tx", LIMITS, 'timestamp must be a number of seconds, got "Tx"'),
    (b"a:1|c|T", LIMITS, "timestamp must be a number"),
    (b"a:1|c|Tinf", LIMITS, "timestamp must be a number"),
    (b"_e{5,4}:title|text", LIMITS, "a DogStatsD event is read by parse_event, not as a metric"),
    (b"_sc|check|0", LIMITS, "DogStatsD service checks are not supported"),
    (b"abcdefghijk:1|c", SMALL, "metric name longer than 10 characters"),
    (b"abcdefghijk:1|c|#h:w", SMALL, "metric name longer than 10 characters"),
    (b"a:1|c|#a,b,c", SMALL, "3 tags is more than the limit of 2"),
    (b"a;a=1;b=2:1|c|#c", SMALL, "3 tags is more than the limit of 2"),
    (b"a:1|c|#abcdef:1", SMALL, 'tag "abcdef" is longer than 5 characters'),
    (b"a:1|c|#h:abcdef", SMALL, 'tag "h" is longer than 5 characters'),
    (b"a;abcdef=1:1|c", SMALL, 'tag "abcdef" is longer than 5 characters'),
]


class GoodLineTests(SynchronousTestCase):
    """
    Well-formed metric lines.
    """

    def test_good(self):
        """
        Each well-formed line gives its samples and no error.
        """
        for line, expected in GOOD_LINES:
            self.assertEqual(parse_packet(line, LIMITS), (expected, []), line)

    def test_good_in_packet(self):
        """
        The same lines packed together give all their samples, in order.
        """
        packet = b"\n".join(line for line, _ in GOOD_LINES)
        expected = [sample for _, samples in GOOD_LINES for sample in samples]
        self.assertEqual(parse_packet(packet, LIMITS), (expected, []))

    def test_line_ends(self):
        """
        Lines split on \\n or \\r\\n; empty lines and a trailing newline are skipped.
        """
        one = Sample("a", (), COUNTER, 1.0)
        two = Sample("b", (), GAUGE, 2.0)
        for packet in (
            b"a:1|c\nb:2|g",
            b"a:1|c\r\nb:2|g\r\n",
            b"\n\na:1|c\n\r\n\nb:2|g\n",
            b"a:1|c\nb:2|g\n",
        ):
            self.assertEqual(parse_packet(packet, LIMITS), ([one, two], []), packet)

    def test_empty(self):
        """
        An empty packet, or one of blank lines, gives nothing and no error.
        """
        for packet in (b"", b"\n", b"\r\n\n\r\n"):
            self.assertEqual(parse_packet(packet, LIMITS), ([], []), packet)

    def test_name_at_limit(self):
        """
        A name of exactly max_name_length characters is accepted, tagged or not.
        """
        self.assertEqual(
            parse_packet(b"abcdefghij:1|c\nabcdefghij;k=v:1|c|#x:abcde", SMALL),
            (
                [
                    Sample("abcdefghij", (), COUNTER, 1.0),
                    Sample("abcdefghij", (("k", "v"), ("x", "abcde")), COUNTER, 1.0),
                ],
                [],
            ),
        )

    def test_values_are_floats(self):
        """
        Numeric values and timestamps come out as floats.
        """
        [sample], _ = parse_packet(b"a:1|c|T17", LIMITS)
        self.assertIs(type(sample.value), float)
        self.assertIs(type(sample.timestamp), float)


class BadLineTests(SynchronousTestCase):
    """
    Malformed metric lines: each gives one error and no sample.
    """

    def test_bad(self):
        """
        Each malformed line gives one error naming the problem and quoting the line.
        """
        for line, limits, words in BAD_LINES:
            samples, errors = parse_packet(line, limits)
            self.assertEqual(samples, [], line)
            self.assertEqual(len(errors), 1, (line, errors))
            self.assertIn(words, errors[0], "%r gave %r" % (line, errors[0]))

    def test_mixed(self):
        """
        Bad lines cost only themselves: the good lines around them still count.
        """
        packet = b"\n".join(
            [b"a:1|c"]
            + [line for line, limits, _ in BAD_LINES if limits is LIMITS]
            + [b"b:2|g"]
        )
        samples, errors = parse_packet(packet, LIMITS)
        self.assertEqual(samples, [Sample("a", (), COUNTER, 1.0), Sample("b", (), GAUGE, 2.0)])
        self.assertEqual(len(errors), len([1 for _, limits, _ in BAD_LINES if limits is LIMITS]))

    def test_not_utf8(self):
        """
        A line of bad UTF-8 is refused alone; the other lines still count.
        """
        samples, errors = parse_packet(b"a:1|c\n\xff\xfe:1|c\r\nb:\xc3\xa9|s\nc:\xe9|s", LIMITS)
        self.assertEqual(samples, [Sample("a", (), COUNTER, 1.0), Sample("b", (), SET, "\xe9")])
        self.assertEqual(
            errors,
            ['line is not valid UTF-8 in "\\xff\\xfe:1|c"', 'line is not valid UTF-8 in "c:\\xe9|s"'],
        )

    def test_long_line_excerpt(self):
        """
        The error quotes at most 80 characters of a long line.
        """
        line = b"a:1|x" + b"y" * 500
        [error] = parse_packet(line, LIMITS)[1]
        quoted = error.split(' in "', 1)[1]
        self.assertEqual(quoted, "a:1|x" + "y" * 72 + '..."')

    def test_long_value_excerpt(self):
        """
        A long bad value is shortened in the error message.
        """
        [error] = parse_packet(b"a:" + b"x" * 500 + b"|c", LIMITS)[1]
        self.assertIn('value "' + "x" * 27 + '..." is not a finite number', error)
        self.assertLess(len(error), 200)


class PropertyTests(SynchronousTestCase):
    """
    Properties of L{parse_packet} over generated input.
    """

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=300))
    def test_arbitrary_bytes(self, data):
        """
        Any bytes give samples and errors, never an exception.
        """
        samples, errors = parse_packet(data, LIMITS)
        self.assertIsInstance(samples, list)
        self.assertTrue(all(isinstance(error, str) for error in errors))

    @settings(max_examples=500, deadline=None)
    @given(
        st.lists(
            st.text(alphabet=st.sampled_from("ab1.:|@#,;=T-+ \r\n\xe9/c!sgmhd0e"), max_size=40),
            max_size=8,
        )
    )
    def test_statsd_shaped_text(self, lines):
        """
        Text made of statsd's own punctuation never raises, and every sample is clean.
        """
        samples, errors = parse_packet("\n".join(lines).encode(), LIMITS)
        for sample in samples:
            self.assertTrue(sample.name)
            self.assertNotIn(";", sample.name)
            self.assertTrue(0 < sample.rate <= 1)
            self.assertEqual(list(sample.tags), sorted(sample.tags))

    @settings(max_examples=300, deadline=None)
    @given(
        st.text("abcXYZ019_.-", min_size=1, max_size=30),
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5),
        st.sampled_from([("c", COUNTER), ("ms", TIMER), ("h", HISTOGRAM), ("d", DISTRIBUTION), ("g", GAUGE)]),
        st.dictionaries(st.text("abc019_.-", min_size=1, max_size=8), st.text("abc019_.-:/@+", max_size=8), max_size=4),
    )
    def test_round_trip(self, name, values, typed, tags):
        """
        Generated metric lines parse back to the values they were made of.
        """
        text, kind = typed
        line = "%s:%s|%s" % (name, ":".join(repr(v) for v in values), text)
        if tags:
            line += "|#" + ",".join("%s:%s" % kv for kv in tags.items())
        samples, errors = parse_packet(line.encode(), LIMITS)
        self.assertEqual(errors, [])
        self.assertEqual(
            samples,
            [
                Sample(name, tuple(sorted(tags.items())), kind, v, delta=kind == GAUGE and repr(v)[0] == "-")
                for v in values
            ],
        )
