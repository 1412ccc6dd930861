"""
Tests for L{server.receivers.parse_tuple}.
"""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import (
    COUNTER,
    DISTRIBUTION,
    GAUGE,
    HISTOGRAM,
    SAMPLE,
    SET,
    TIMER,
    Limits,
    ParseError,
    Partial,
    Sample,
)
from server.receivers.parse_tuple import ParsedLine, parse_line, parse_tuple
from server.core.sketch import Sketch

LIMITS = Limits()
SMALL = Limits(max_name_length=10, max_tags=2, max_tag_length=5, max_batch=3, max_set_members=2)

TIMER_FIELDS = {"count": 12.0, "sum": 1840.5, "min": 3.1, "max": 410.0}

# (line, the one item it holds)
GOOD_TUPLES = [
    (b'["a.b", 1322721979, 8]', Sample("a.b", (), SAMPLE, 8.0, 1322721979.0)),
    (b'["a.b", 1322721979.5, -8.25]', Sample("a.b", (), SAMPLE, -8.25, 1322721979.5)),
    (b'["a", 1, 8]\r', Sample("a", (), SAMPLE, 8.0, 1.0)),
    (b'  ["a", 1, 8]  ', Sample("a", (), SAMPLE, 8.0, 1.0)),
    (b'["a", "1322721979", "8"]', Sample("a", (), SAMPLE, 8.0, 1322721979.0)),
    (b'["a", "1.5e9", "-1e3"]', Sample("a", (), SAMPLE, -1000.0, 1.5e9)),
    (b'["a", null, 8]', Sample("a", (), SAMPLE, 8.0, None)),
    # ISO 8601, as a spreadsheet writes it; no offset is UTC.
    (b'["a", "2026-11-23T00:00:00Z", 8]', Sample("a", (), SAMPLE, 8.0, 1795392000.0)),
    (b'["a", "2026-11-23 01:00:00+01:00", 8]', Sample("a", (), SAMPLE, 8.0, 1795392000.0)),
    (b'["a", "2026-11-23T00:00:05.5", 8]', Sample("a", (), SAMPLE, 8.0, 1795392005.5)),
    (b'["a", "2026-11-23T00:01", 8]', Sample("a", (), SAMPLE, 8.0, 1795392060.0)),
    (b'["a", 1, "1c"]', Sample("a", (), COUNTER, 1.0, 1.0)),
    (b'["a", 1, "1.5c"]', Sample("a", (), COUNTER, 1.5, 1.0)),
    (b'["a", 1, "-1c"]', Sample("a", (), COUNTER, -1.0, 1.0)),
    (b'["a", 1, "+2c"]', Sample("a", (), COUNTER, 2.0, 1.0)),
    (b'["a", 1, "153ms"]', Sample("a", (), TIMER, 153.0, 1.0)),
    (b'["a", 1, "0.5ms"]', Sample("a", (), TIMER, 0.5, 1.0)),
    (b'["a", 1, "23g"]', Sample("a", (), GAUGE, 23.0, 1.0)),
    (b'["a", 1, "+3g"]', Sample("a", (), GAUGE, 3.0, 1.0, delta=True)),
    (b'["a", 1, "-2g"]', Sample("a", (), GAUGE, -2.0, 1.0, delta=True)),
    (b'["a", 1, "-0g"]', Sample("a", (), GAUGE, 0.0, 1.0, delta=True)),
    (b'["a", 1, "5h"]', Sample("a", (), HISTOGRAM, 5.0, 1.0)),
    (b'["a", 1, "5d"]', Sample("a", (), DISTRIBUTION, 5.0, 1.0)),
    (b'["a", 1, "1e3ms"]', Sample("a", (), TIMER, 1000.0, 1.0)),
    (
        b'["a", 1, 8, {"host": "web1", "dc": "eu-1"}]',
        Sample("a", (("dc", "eu-1"), ("host", "web1")), SAMPLE, 8.0, 1.0),
    ),
    (b'["a", 1, 8, {"n": 5, "x": 1.5}]', Sample("a", (("n", "5"), ("x", "1.5")), SAMPLE, 8.0, 1.0)),
    (b'["a", 1, 8, {"empty": ""}]', Sample("a", (("empty", ""),), SAMPLE, 8.0, 1.0)),
    (b'["a", 1, 8, {"url": "http://x/y@z+1"}]', Sample("a", (("url", "http://x/y@z+1"),), SAMPLE, 8.0, 1.0)),
    (b'["a", 1, 8, {}]', Sample("a", (), SAMPLE, 8.0, 1.0)),
    (b'["a", 1, 8, null]', Sample("a", (), SAMPLE, 8.0, 1.0)),
    (b'["A-Z_0.9", 1, 8]', Sample("A-Z_0.9", (), SAMPLE, 8.0, 1.0)),
    (
        b'["a", 1, {"type": "ms", "count": 12, "sum": 1840.5, "min": 3.1, "max": 410}]',
        Partial("a", (), TIMER, TIMER_FIELDS, 1.0),
    ),
    (
        b'["a", 1, {"type": "h", "count": 12, "sum": 1840.5, "min": 3.1, "max": 410}]',
        Partial("a", (), HISTOGRAM, TIMER_FIELDS, 1.0),
    ),
    (
        b'["a", 1, {"type": "d", "count": 12, "sum": 1840.5, "min": 3.1, "max": 410}]',
        Partial("a", (), DISTRIBUTION, TIMER_FIELDS, 1.0),
    ),
    (
        b'["a", null, {"type": "v", "count": 2, "sum": 3, "min": 1, "max": 2, '
        b'"sumsq": 5, "last": 2}, {"h": "w"}]',
        Partial(
            "a",
            (("h", "w"),),
            SAMPLE,
            {"count": 2.0, "sum": 3.0, "min": 1.0, "max": 2.0, "sumsq": 5.0, "last": 2.0},
            None,
        ),
    ),
    (
        b'["a", 1, {"type": "ms", "count": 1, "sum": 5, "min": 5, "max": 5}]',
        Partial("a", (), TIMER, {"count": 1.0, "sum": 5.0, "min": 5.0, "max": 5.0}, 1.0),
    ),
    # sum / count a few ulps outside min..max is float rounding, not an error.
    (
        b'["a", 1, {"type": "ms", "count": 3, "sum": 0.30000000000000004, "min": 0.1, "max": 0.1}]',
        Partial("a", (), TIMER, {"count": 3.0, "sum": 0.30000000000000004, "min": 0.1, "max": 0.1}, 1.0),
    ),
    (b'["a", 1, {"type": "c", "count": 7}]', Partial("a", (), COUNTER, {"count": 7.0}, 1.0)),
    (b'["a", 1, {"type": "c", "count": -2.5}]', Partial("a", (), COUNTER, {"count": -2.5}, 1.0)),
    (b'["a", 1, {"type": "g", "last": 3}]', Partial("a", (), GAUGE, {"last": 3.0}, 1.0)),
    (
        b'["a", 1, {"type": "g", "last": 3, "min": 1, "max": 4, "count": 3, "sum": 8}]',
        Partial("a", (), GAUGE, {"last": 3.0, "min": 1.0, "max": 4.0, "count": 3.0, "sum": 8.0}, 1.0),
    ),
    (
        b'["a", 1, {"type": "s", "members": ["u1", "u2", 3, 4.5]}]',
        Partial("a", (), SET, {"members": ["u1", "u2", "3", "4.5"]}, 1.0),
    ),
    (
        b'["a", 1, {"type": "s", "count": 7}]',
        Partial("a", (), SET, {"count": 7.0}, 1.0),
    ),
]

# (line, limits, words the error message must contain)
BAD_LINES = [
    (b"\xff\xfe", LIMITS, "not valid UTF-8"),
    (b'["a", 1, "\xe9"]', LIMITS, "not valid UTF-8"),
    (b"", LIMITS, "not JSON"),
    (b"hello world", LIMITS, 'not JSON (Expecting value at column 1): "hello world"'),
    (b'["a", 1, 8', LIMITS, "not JSON"),
    (b'["a", 1, 8]]', LIMITS, "not JSON (Extra data"),
    (b"x" * 500, LIMITS, '"' + "x" * 37 + '..."'),
    (b'["a", NaN, 1]', LIMITS, "NaN is not allowed"),
    (b'["a", 1, Infinity]', LIMITS, "Infinity is not allowed"),
    (b'["a", 1, -Infinity]', LIMITS, "-Infinity is not allowed"),
    (b'{"name": "a"}', LIMITS, "got an object"),
    (b'"a"', LIMITS, 'got "a"'),
    (b"8", LIMITS, "got 8"),
    (b"null", LIMITS, "got null"),
    (b"[]", LIMITS, "empty array"),
    (b'["a"]', LIMITS, "got 1 element"),
    (b'["a", 1]', LIMITS, "expected [name, timestamp, value] or [name, timestamp, value, tags], got 2 elements"),
    (b'["a", 1, 2, {}, 5]', LIMITS, "got 5 elements"),
    (b"[" * 100000 + b"]" * 100000, LIMITS, "nested too deeply"),
    # name
    (b"[1, 1, 8]", LIMITS, "name must be a string, got 1"),
    (b"[null, 1, 8]", LIMITS, "name must be a string, got null"),
    (b'["", 1, 8]', LIMITS, "name must be 1 to 200 characters of letters, digits"),
    (b'["a b", 1, 8]', LIMITS, 'got "a b"'),
    (b'["a;b=c", 1, 8]', LIMITS, "name must be"),
    (b'["a/b", 1, 8]', LIMITS, "name must be"),
    (b'["caf\xc3\xa9", 1, 8]', LIMITS, "name must be"),
    (b'["a\\n", 1, 8]', LIMITS, "name must be"),
    (b'["abcdefghijk", 1, 8]', SMALL, "name must be 1 to 10 characters"),
    # timestamp
    (b'["a", "abc", 8]', LIMITS, 'timestamp must be a number (or null for now) or an ISO 8601 time'
                                ' such as 2026-12-02T21:00:00Z, got "abc"'),
    (b'["a", "2026-13-02T21:00:00Z", 8]', LIMITS, "or an ISO 8601 time"),
    (b'["a", "2026-12-02", 8]', LIMITS, "or an ISO 8601 time"),
    (b'["a", "2026-11-23T00:00:00ZZ", 8]', LIMITS, "or an ISO 8601 time"),
    (b'["a", "2026-12-02T21:00:00+25:00", 8]', LIMITS, "or an ISO 8601 time"),
    (b'["a", true, 8]', LIMITS, "timestamp must be a number"),
    (b'["a", [1], 8]', LIMITS, "timestamp must be a number"),
    (b'["a", {}, 8]', LIMITS, "timestamp must be a number"),
    (b'["a", "", 8]', LIMITS, "timestamp must be a number"),
    (b'["a", "nan", 8]', LIMITS, "timestamp must be a number"),
    (b'["a", "inf", 8]', LIMITS, "timestamp must be a number"),
    (b'["a", " 1", 8]', LIMITS, "timestamp must be a number"),
    (b'["a", "0x10", 8]', LIMITS, "timestamp must be a number"),
    (b'["a", 1e999, 8]', LIMITS, "timestamp must be a number"),
    # value
    (b'["a", 1, true]', LIMITS, "value must be a number or a number followed by c (counter)"),
    (b'["a", 1, null]', LIMITS, "got null"),
    (b'["a", 1, [1]]', LIMITS, "got [1]"),
    (b'["a", 1, 1e999]', LIMITS, "value must be a finite number"),
    (b'["a", 1, "12xyz"]', LIMITS, 'value "12xyz" is not understood: expected a number or a number followed by c'),
    (b'["a", 1, "c"]', LIMITS, 'value "c" is not understood'),
    (b'["a", 1, ""]', LIMITS, 'value "" is not understood'),
    (b'["a", 1, "1 c"]', LIMITS, "is not understood"),
    (b'["a", 1, "nanms"]', LIMITS, "is not understood"),
    (b'["a", 1, "infg"]', LIMITS, "is not understood"),
    (b'["a", 1, "1s"]', LIMITS, "is not understood"),
    (b'["a", 1, "1C"]', LIMITS, "is not understood"),
    (b'["a", 1, "\xd9\xa1c"]', LIMITS, "is not understood"),
    # tags
    (b'["a", 1, 8, ["host", "w"]]', LIMITS, "tags must be an object"),
    (b'["a", 1, 8, "host=w"]', LIMITS, "tags must be an object"),
    (b'["a", 1, 8, {"": "w"}]', LIMITS, "tag key must be 1 to 100 characters"),
    (b'["a", 1, 8, {"a b": "w"}]', LIMITS, 'tag key must be 1 to 100 characters of letters, digits, \'_\', \'-\' and \'.\', got "a b"'),
    (b'["a", 1, 8, {"h": "a b"}]', LIMITS, "tag h: value must be at most 100 characters of letters, digits and '_-.:/@+'"),
    (b'["a", 1, 8, {"h": "a;b"}]', LIMITS, "tag h: value must be"),
    (b'["a", 1, 8, {"h": true}]', LIMITS, "tag h: value must be a string or a number, got true"),
    (b'["a", 1, 8, {"h": null}]', LIMITS, "tag h: value must be a string or a number"),
    (b'["a", 1, 8, {"h": 1e999}]', LIMITS, "tag h: value must be finite"),
    (b'["a", 1, 8, {"abcdef": "w"}]', SMALL, "tag key must be 1 to 5 characters"),
    (b'["a", 1, 8, {"h": "abcdef"}]', SMALL, "value must be at most 5 characters"),
    (b'["a", 1, 8, {"a": 1, "b": 2, "c": 3}]', SMALL, "3 tags is more than the limit of 2"),
    # partial aggregates
    (b'["a", 1, {}]', LIMITS, 'partial aggregate needs a "type"'),
    (b'["a", 1, {"count": 1}]', LIMITS, 'partial aggregate needs a "type"'),
    (b'["a", 1, {"type": "x"}]', LIMITS, 'partial type must be one of c, g, ms, h, d, v, s, got "x"'),
    (b'["a", 1, {"type": ["ms"]}]', LIMITS, "partial type must be one of"),
    (b'["a", 1, {"type": "c"}]', LIMITS, "counter partial needs field count"),
    (b'["a", 1, {"type": "c", "count": "1"}]', LIMITS, 'counter partial field count must be a finite number, got "1"'),
    (b'["a", 1, {"type": "c", "count": true}]', LIMITS, "must be a finite number, got true"),
    (b'["a", 1, {"type": "c", "count": 1e999}]', LIMITS, "must be a finite number"),
    (b'["a", 1, {"type": "c", "count": 1, "sum": 1}]', LIMITS, 'unknown field "sum" in a counter partial (allowed: count)'),
    (b'["a", 1, {"type": "g"}]', LIMITS, "gauge partial needs field last"),
    (b'["a", 1, {"type": "g", "last": 1, "min": 2, "max": 1}]', LIMITS, "gauge partial min 2.0 is greater than max 1.0"),
    (b'["a", 1, {"type": "g", "last": 5, "min": 1, "max": 2}]', LIMITS, "gauge partial last 5.0 is outside min..max"),
    (b'["a", 1, {"type": "g", "last": 1, "count": 0}]', LIMITS, "gauge partial count must be greater than 0"),
    (b'["a", 1, {"type": "g", "last": 1, "sketch": {}}]', LIMITS, 'unknown field "sketch"'),
    (b'["a", 1, {"type": "ms", "count": 1}]', LIMITS, "timer partial needs fields sum, min, max"),
    (
        b'["a", 1, {"type": "ms", "count": 1, "sum": 1, "min": 1, "max": 1, "avg": 1, "p999": 1}]',
        LIMITS,
        'unknown fields "avg", "p999" in a timer partial (allowed: count, sum, min, max, sumsq, last,'
        ' sketch, p50, p90, p95, p99)',
    ),
    (b'["a", 1, {"type": "ms", "count": 0, "sum": 0, "min": 0, "max": 0}]', LIMITS, "timer partial count must be greater than 0"),
    (b'["a", 1, {"type": "ms", "count": -1, "sum": 1, "min": 1, "max": 1}]', LIMITS, "count must be greater than 0"),
    (b'["a", 1, {"type": "h", "count": 1, "sum": 1, "min": 2, "max": 1}]', LIMITS, "histogram partial min 2.0 is greater than max 1.0"),
    (b'["a", 1, {"type": "d", "count": 2, "sum": 10, "min": 1, "max": 2}]', LIMITS, "distribution partial sum / count = 5.0 is outside min..max [1.0, 2.0]"),
    (b'["a", 1, {"type": "v", "count": 2, "sum": 1, "min": 1, "max": 2}]', LIMITS, "sample partial sum / count = 0.5 is outside"),
    (b'["a", 1, {"type": "ms", "count": 1, "sum": 1, "min": 1, "max": 1, "sumsq": -1}]', LIMITS, "timer partial sumsq must be >= 0"),
    (b'["a", 1, {"type": "ms", "count": 1, "sum": 1, "min": 1, "max": 1, "last": 3}]', LIMITS, "timer partial last 3.0 is outside min..max"),
    (b'["a", 1, {"type": "ms", "count": 1, "sum": 1, "min": 1, "max": 1, "sketch": 5}]', LIMITS, "timer partial: sketch must be an object"),
    (
        b'["a", 1, {"type": "ms", "count": 1, "sum": 1, "min": 1, "max": 1, "sketch": {"bins": {"x": 1}}}]',
        LIMITS,
        "timer partial: sketch bins key 'x' is not an integer",
    ),
    (b'["a", 1, {"type": "s"}]', LIMITS, 'set partial needs either "members"'),
    (b'["a", 1, {"type": "s", "members": ["x"], "count": 1}]', LIMITS, 'set partial needs either "members"'),
    (b'["a", 1, {"type": "s", "count": -1}]', LIMITS, "set partial count must be a finite number >= 0"),
    (b'["a", 1, {"type": "s", "members": []}]', LIMITS, "members must be a non-empty array"),
    (b'["a", 1, {"type": "s", "members": "abc"}]', LIMITS, "members must be a non-empty array"),
    (b'["a", 1, {"type": "s", "members": [true]}]', LIMITS, "members must be strings or finite numbers, got true"),
    (b'["a", 1, {"type": "s", "members": [["x"]]}]', LIMITS, "members must be strings or finite numbers"),
    (b'["a", 1, {"type": "s", "members": [1e999]}]', LIMITS, "members must be strings or finite numbers"),
    (b'["a", 1, {"type": "s", "members": ["x", "y", "z"]}]', SMALL, "set partial has 3 members, more than the limit of 2"),
    # batches
    (b'[["a", 1, 8], ["b", 1, "12xyz"]]', LIMITS, 'item 2: value "12xyz" is not understood'),
    (b'[["a", 1, 8], "b"]', LIMITS, 'item 2: expected [name, timestamp, value] or [name, timestamp, value, tags], got "b"'),
    (b'[["a", 1, 8], ["b", 1]]', LIMITS, "item 2: expected"),
    (b'[["a", 1]]', LIMITS, "item 1: expected"),
    (b'[["a", 1, 8], ["b", 1, 8], ["c", "x", 8]]', LIMITS, "item 3: timestamp must be a number"),
    (b'[[["a", 1, 8], 1, 8]]', LIMITS, "item 1: name must be a string"),
    (b'[[]]', LIMITS, "item 1: expected [name, timestamp, value] or [name, timestamp, value, tags], got 0 elements"),
    (b'[["a", 1, 8], ["a", 1, 8], ["a", 1, 8], ["a", 1, 8]]', SMALL, "batch of 4 items is larger than the limit of 3"),
]


class ParseLineTests(SynchronousTestCase):
    """
    Tests for L{parse_line} on single tuples.
    """

    def test_good(self):
        """
        Each well-formed tuple gives its one L{Sample} or L{Partial}.
        """
        for line, expected in GOOD_TUPLES:
            self.assertEqual(parse_line(line, LIMITS), ParsedLine([expected], False), line)

    def test_bad(self):
        """
        Each malformed line raises L{ParseError} with a message saying what is wrong.
        """
        for line, limits, words in BAD_LINES:
            try:
                result = parse_line(line, limits)
            except ParseError as e:
                self.assertIn(words, str(e), "%r gave %r" % (line[:100], str(e)))
            else:
                self.fail("%r parsed as %r" % (line[:100], result))

    def test_values_are_floats(self):
        """
        Integer JSON numbers come out as floats, in samples and partial fields.
        """
        sample = parse_line(b'["a", 1, 8]', LIMITS).items[0]
        self.assertIs(type(sample.value), float)
        self.assertIs(type(sample.timestamp), float)
        partial = parse_line(b'["a", 1, {"type": "c", "count": 7}]', LIMITS).items[0]
        self.assertIs(type(partial.fields["count"]), float)

    def test_sketch_kept_parsed(self):
        """
        A partial's sketch is checked and kept as a L{Sketch}.
        """
        sketch = Sketch()
        for value in (3.1, 5, 410):
            sketch.add(value)
        line = json.dumps(
            ["a", 1, {"type": "ms", "count": 3, "sum": 418.1, "min": 3.1, "max": 410, "sketch": sketch.to_json()}]
        ).encode()
        [partial] = parse_line(line, LIMITS).items
        self.assertIsInstance(partial.fields["sketch"], Sketch)
        self.assertEqual(partial.fields["sketch"].to_json(), sketch.to_json())
        self.assertEqual(partial.fields["count"], 3.0)

    def test_limits_at_the_edge(self):
        """
        A name, tag and member count exactly at the limits are accepted.
        """
        line = b'["abcdefghij", 1, {"type": "s", "members": ["x", "y"]}, {"abcde": "vwxyz", "k": 1}]'
        [partial] = parse_line(line, SMALL).items
        self.assertEqual(partial.name, "abcdefghij")
        self.assertEqual(partial.tags, (("abcde", "vwxyz"), ("k", "1")))


class ParseTupleTests(SynchronousTestCase):
    """
    Tests for L{parse_tuple} on values already decoded from JSON (imports).
    """

    def test_good(self):
        """
        A decoded tuple gives the same item as the line it came from.
        """
        for line, expected in GOOD_TUPLES:
            self.assertEqual(parse_tuple(json.loads(line), LIMITS), expected, line)

    def test_bad(self):
        """
        Non-lists, and NaN or infinity a lenient JSON decoder let through, are refused.
        """
        for item, words in [
            ("a", 'got "a"'),
            (None, "got null"),
            ({"a": 1}, "got an object"),
            (["a", 1], "got 2 elements"),
            (["a", float("nan"), 1], "timestamp must be a number"),
            (["a", 1, float("inf")], "value must be a finite number"),
            (["a", 1, 10 ** 400], "value must be a finite number"),
            (["a", 1, {"type": "c", "count": float("nan")}], "must be a finite number"),
            (["a", 1, 1, {"h": float("-inf")}], "tag h: value must be finite"),
        ]:
            error = self.assertRaises(ParseError, parse_tuple, item, LIMITS)
            self.assertIn(words, str(error), "%r gave %r" % (item, str(error)))


class BatchTests(SynchronousTestCase):
    """
    Tests for L{parse_line} on arrays of tuples.
    """

    def test_batch(self):
        """
        An array of tuples gives every item in order and says it was a batch.
        """
        line = b'[["a", 1, 8], ["b", null, "1c", {"h": "w"}], ["c", 2, {"type": "g", "last": 1}]]'
        self.assertEqual(
            parse_line(line, LIMITS),
            ParsedLine(
                [
                    Sample("a", (), SAMPLE, 8.0, 1.0),
                    Sample("b", (("h", "w"),), COUNTER, 1.0, None),
                    Partial("c", (), GAUGE, {"last": 1.0}, 2.0),
                ],
                True,
            ),
        )

    def test_batch_of_one(self):
        """
        A one-item array is still a batch.
        """
        self.assertEqual(
            parse_line(b'[["a", 1, 8]]', LIMITS),
            ParsedLine([Sample("a", (), SAMPLE, 8.0, 1.0)], True),
        )

    def test_batch_at_limit(self):
        """
        A batch of exactly max_batch items is accepted.
        """
        result = parse_line(b'[["a", 1, 8], ["a", 2, 8], ["a", 3, 8]]', SMALL)
        self.assertEqual(len(result.items), 3)

    def test_all_or_nothing(self):
        """
        One bad item refuses the whole batch, naming the 1-based item.
        """
        line = b'[["a", 1, 8], ["b", 2, 9], ["c", 3, "bad"]]'
        error = self.assertRaises(ParseError, parse_line, line, LIMITS)
        self.assertTrue(str(error).startswith("item 3: "), str(error))


_names = st.text("abcXYZ019_.-", min_size=1, max_size=30)
_numbers = st.floats(allow_nan=False, allow_infinity=False)
_tags = st.dictionaries(
    st.text("abcXYZ019_.-", min_size=1, max_size=10),
    st.text("abc019_.-:/@+", max_size=10),
    max_size=5,
)
_typed = st.tuples(
    st.sampled_from([("c", COUNTER), ("ms", TIMER), ("g", GAUGE), ("h", HISTOGRAM), ("d", DISTRIBUTION)]),
    _numbers,
)


class PropertyTests(SynchronousTestCase):
    """
    Properties of L{parse_line} over generated input.
    """

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_arbitrary_bytes(self, data):
        """
        Any bytes either parse or raise L{ParseError}, nothing else.
        """
        try:
            result = parse_line(data, LIMITS)
        except ParseError as e:
            self.assertTrue(str(e))
        else:
            self.assertIsInstance(result, ParsedLine)

    @settings(max_examples=300, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | _numbers | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
            max_leaves=20,
        )
    )
    def test_arbitrary_json(self, obj):
        """
        Any JSON document either parses or raises L{ParseError}, nothing else.
        """
        data = json.dumps(obj).encode()
        for line in (data, b"[" + data + b"]", b'["a", 1, ' + data + b"]", b'["a", 1, 2, ' + data + b"]"):
            try:
                parse_line(line, LIMITS)
            except ParseError:
                pass

    @settings(max_examples=300, deadline=None)
    @given(_names, st.none() | _numbers, _numbers, _tags)
    def test_round_trip_plain(self, name, timestamp, value, tags):
        """
        A generated numeric tuple parses back to the values it was made of.
        """
        line = json.dumps([name, timestamp, value, tags]).encode()
        [sample] = parse_line(line, LIMITS).items
        self.assertEqual(sample, Sample(name, tuple(sorted(tags.items())), SAMPLE, value, timestamp))

    @settings(max_examples=300, deadline=None)
    @given(_names, _numbers, _typed)
    def test_round_trip_typed(self, name, timestamp, typed):
        """
        A generated typed string value parses back to its type and number.
        """
        (suffix, kind), value = typed
        text = repr(value) + suffix
        [sample] = parse_line(json.dumps([name, timestamp, text]).encode(), LIMITS).items
        self.assertEqual((sample.name, sample.type, sample.value), (name, kind, value))
        self.assertEqual(sample.delta, kind == GAUGE and text[0] == "-")

    @settings(max_examples=300, deadline=None)
    @given(
        _names,
        st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=1, max_size=20),
        st.sampled_from([TIMER, HISTOGRAM, DISTRIBUTION, SAMPLE]),
    )
    def test_round_trip_partial(self, name, values, kind):
        """
        Partials summarising real values (float sums included) are accepted unchanged.
        """
        fields = {
            "count": len(values),
            "sum": math.fsum(reversed(values)),
            "min": min(values),
            "max": max(values),
            "sumsq": sum(v * v for v in values),
            "last": values[-1],
        }
        obj = dict(fields, type=kind)
        [partial] = parse_line(json.dumps([name, None, obj]).encode(), LIMITS).items
        self.assertEqual(partial, Partial(name, (), kind, {k: float(v) for k, v in fields.items()}, None))
