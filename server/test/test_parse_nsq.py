"""
Tests for L{server.receivers.parse_nsq}.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from server.core.model import COUNTER, GAUGE, SAMPLE, TIMER, Limits, ParseError, Sample
from server.receivers.parse_nsq import BadMessage, check_topic, parse_body

LIMITS = Limits()
SMALL = Limits(max_name_length=10, max_tags=2, max_tag_length=8, max_batch=3)

SEED = (b'{"grouping": "fifo","metric": "fifo.vm.createions","time": 12345,"value": 1,'
        b'"tags": {"fifo-host":"fifo01"}}')

# (one message, the point it is)
GOOD = [
    (SEED, Sample("fifo.vm.createions", (("fifo-host", "fifo01"), ("grouping", "fifo")), SAMPLE,
                  1.0, 12345.0)),
    (b'{"metric": "a", "value": 2.5, "time": 1795392000}',
     Sample("a", (), SAMPLE, 2.5, 1795392000.0)),
    # From 3e9 on a time is in milliseconds.
    (b'{"metric": "a", "value": 1, "time": 1795392000123}',
     Sample("a", (), SAMPLE, 1.0, 1795392000.123)),
    (b'{"metric": "a", "value": 1, "time": 2999999999}', Sample("a", (), SAMPLE, 1.0, 2999999999.0)),
    (b'{"metric": "a", "value": 1, "time": 3000000000}', Sample("a", (), SAMPLE, 1.0, 3000000.0)),
    (b'{"metric": "a", "value": 1, "time": "1795392000"}',
     Sample("a", (), SAMPLE, 1.0, 1795392000.0)),
    # No time, or null: the arrival.
    (b'{"metric": "a", "value": 0}', Sample("a", (), SAMPLE, 0.0, None)),
    (b'{"metric": "a", "value": -3, "time": null}', Sample("a", (), SAMPLE, -3.0, None)),
    # Missing or null tags: none; extra keys ignored.
    (b'{"metric": "a", "value": 1, "tags": null, "host": "x", "extra": [1, 2]}',
     Sample("a", (), SAMPLE, 1.0, None)),
    (b'{"metric": "a", "value": 1, "tags": {}}', Sample("a", (), SAMPLE, 1.0, None)),
    # Tags sorted, with the grouping among them.
    (b'{"metric": "a", "value": 1, "grouping": "g", "tags": {"z": "1", "b": 2}}',
     Sample("a", (("b", "2"), ("grouping", "g"), ("z", "1")), SAMPLE, 1.0, None)),
    (b'{"metric": "a", "value": 1, "grouping": "g", "tags": {"grouping": "g"}}',
     Sample("a", (("grouping", "g"),), SAMPLE, 1.0, None)),
    (b'{"metric": "a", "value": 1, "grouping": 7}', Sample("a", (("grouping", "7"),), SAMPLE, 1.0,
                                                          None)),
    (b'{"metric": "a", "value": 1, "grouping": null}', Sample("a", (), SAMPLE, 1.0, None)),
    # A typed value, as the TCP tuple takes it.
    (b'{"metric": "a", "value": "1c"}', Sample("a", (), COUNTER, 1.0, None)),
    (b'{"metric": "a", "value": "153ms"}', Sample("a", (), TIMER, 153.0, None)),
    (b'{"metric": "a", "value": "-2g"}', Sample("a", (), GAUGE, -2.0, None, delta=True)),
    (b'{"metric": "a", "value": "8"}', Sample("a", (), SAMPLE, 8.0, None)),
    (b'  {"metric": "a", "value": 1}\r', Sample("a", (), SAMPLE, 1.0, None)),
]

# (one message, the field blamed, words its reason must hold)
BAD = [
    (b'[1, 2]', None, "expected a JSON object"),
    (b'"text"', None, "expected a JSON object"),
    (b'{"metric": "a", "value": 1', None, "not JSON"),
    (b'{"metric": "a", "value": NaN}', None, "NaN is not allowed"),
    (b'{"metric": "a", "value": 1e999}', "value", "finite"),
    (b'{"metric": "a", "value": 1' + b"0" * 400 + b'}', "value", "finite"),
    (b'\xff{}', None, "not valid UTF-8"),
    (b'{"value": 1}', "metric", "is required"),
    (b'{"metric": "", "value": 1}', "metric", "name must be"),
    (b'{"metric": "a b", "value": 1}', "metric", "name must be"),
    (b'{"metric": 5, "value": 1}', "metric", "must be a string"),
    (b'{"metric": "a"}', "value", "is required"),
    (b'{"metric": "a", "value": null}', "value", "is required"),
    (b'{"metric": "a", "value": true}', "value", "must be a number or a typed string"),
    (b'{"metric": "a", "value": [1]}', "value", "must be a number or a typed string"),
    (b'{"metric": "a", "value": "abc"}', "value", "not understood"),
    (b'{"metric": "a", "value": 1, "time": "soon"}', "time", "must be a number"),
    (b'{"metric": "a", "value": 1, "time": true}', "time", "must be a number"),
    (b'{"metric": "a", "value": 1, "tags": ["a"]}', "tags", "must be an object"),
    (b'{"metric": "a", "value": 1, "tags": {"a b": "1"}}', "tags", "tag key must be"),
    (b'{"metric": "a", "value": 1, "tags": {"a": "x y"}}', "tags", "tag a: value must be"),
    (b'{"metric": "a", "value": 1, "tags": {"a": {}}}', "tags", "must be a string or a number"),
    (b'{"metric": "a", "value": 1, "grouping": "x y"}', "grouping", "value must be"),
    (b'{"metric": "a", "value": 1, "grouping": false}', "grouping", "must be a string"),
    (b'{"metric": "a", "value": 1, "grouping": {}}', "grouping", "must be a string"),
    (b'{"metric": "a", "value": 1, "grouping": "g", "tags": {"grouping": "h"}}', "tags",
     "differs from the message's grouping"),
]


class MessageTests(SynchronousTestCase):
    def test_good_messages(self):
        """Each good message is the point of its metric, tags plus grouping, time and value."""
        for body, expected in GOOD:
            samples, bad = parse_body(body, LIMITS, multiple=False)
            self.assertEqual((samples, bad), ([expected], []), body)

    def test_bad_messages_name_their_field(self):
        """Each bad message is refused with its number, the field at fault and why."""
        for body, field, words in BAD:
            samples, bad = parse_body(body, LIMITS, multiple=False)
            self.assertEqual(len(bad), 1, body)
            self.assertEqual((bad[0].number, bad[0].field), (1, field), (body, bad))
            self.assertIn(words, bad[0].reason, body)

    def test_text_names_message_and_field(self):
        """A bad message's text starts with its number and its field."""
        self.assertEqual(BadMessage(3, "time", "too late").text(), "message 3, field time: too late")
        self.assertEqual(BadMessage(1, None, "empty line").text(), "message 1: empty line")

    def test_limits(self):
        """Name length, tag count (the grouping included) and tag length follow the limits."""
        cases = [
            (b'{"metric": "abcdefghijk", "value": 1}', "metric"),
            (b'{"metric": "a", "value": 1, "tags": {"a": "1", "b": "2", "c": "3"}}', "tags"),
            (b'{"metric": "a", "value": 1, "grouping": "g", "tags": {"a": "1", "b": "2"}}',
             "tags"),
            (b'{"metric": "a", "value": 1, "grouping": "too-long-"}', "grouping"),
        ]
        for body, field in cases:
            _, bad = parse_body(body, SMALL, multiple=False)
            self.assertEqual([b.field for b in bad], [field], body)
        samples, bad = parse_body(b'{"metric": "a", "value": 1, "grouping": "g", "tags": {"a": 1}}',
                                  SMALL, multiple=False)
        self.assertEqual(bad, [])


class BodyTests(SynchronousTestCase):
    def test_mput_lines_in_order(self):
        """An /mput body is one message per line, a final newline and \\r before it allowed."""
        body = b'{"metric": "a", "value": 1}\r\n{"metric": "b", "value": 2}\n'
        samples, bad = parse_body(body, LIMITS, multiple=True)
        self.assertEqual(bad, [])
        self.assertEqual([(s.name, s.value) for s in samples], [("a", 1.0), ("b", 2.0)])

    def test_mput_reports_every_bad_message_by_line(self):
        """Checking goes on past the first bad message; each is numbered by its line."""
        body = (b'{"metric": "a", "value": 1}\n\n{"metric": "a", "value": "x"}\n'
                b'{"metric": "a", "value": 3}\n{"value": 1}')
        samples, bad = parse_body(body, LIMITS, multiple=True)
        self.assertEqual([(b.number, b.field) for b in bad],
                         [(2, None), (3, "value"), (5, "metric")])
        self.assertEqual(bad[0].reason, "empty line")

    def test_put_is_one_message_over_lines(self):
        """A /put body is one message, whatever its layout; two JSON values in it are not."""
        samples, bad = parse_body(json.dumps({"metric": "a", "value": 1}, indent=2).encode(),
                                  LIMITS, multiple=False)
        self.assertEqual((len(samples), bad), (1, []))
        _, bad = parse_body(b'{"metric": "a", "value": 1}\n{"metric": "a", "value": 1}', LIMITS,
                            multiple=False)
        self.assertIn("not JSON", bad[0].reason)

    def test_empty_body_and_too_many_messages(self):
        """An empty body, or more messages than --max-batch, is refused as a whole."""
        for body, multiple in ((b"", False), (b"  \n", False), (b"", True), (b"\n", True)):
            self.assertRaises(ParseError, parse_body, body, LIMITS, multiple)
        line = b'{"metric": "a", "value": 1}\n'
        self.assertEqual(len(parse_body(line * 3, SMALL, True)[0]), 3)
        e = self.assertRaises(ParseError, parse_body, line * 4, SMALL, True)
        self.assertIn("4 messages is more than the limit of 3", str(e))


class TopicTests(SynchronousTestCase):
    def test_topic_as_nsqd_takes_it(self):
        """A topic is required and follows nsqd's rule for its name."""
        for topic in ("tachyon-metric-json", "a", "a.b_c-d", "x" * 64, "t#ephemeral"):
            self.assertEqual(check_topic(topic), topic)
        for topic in (None, "", "a b", "x" * 65, "a/b", "t#other", "é"):
            self.assertRaises(ParseError, check_topic, topic)
