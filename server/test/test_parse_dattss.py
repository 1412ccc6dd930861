"""
Tests for L{server.receivers.parse_dattss}.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from server.core.model import COUNTER, GAUGE, TIMER, Limits, ParseError, Partial
from server.receivers.parse_dattss import Refused, parse_agg, parse_partial_v2

LIMITS = Limits()

# A timer partial as DaTtSs' client makes it from 3, 5, 10 (pct 0.1).
A_TIMER = {"typ": "ms", "pth": "api.query", "pct": 0.1, "sum": 18, "cnt": 3, "max": 10, "min": 3,
         "lst": 10, "fst": 3, "bot": 5, "top": 10, "emp": False}

# (list, partial, what it becomes)
GOOD = [
    ("c", {"typ": "c", "pth": "x.count", "pct": 0.1, "sum": 376, "cnt": 340, "max": 3, "min": 1,
           "top": 3, "bot": 1, "fst": 1, "lst": 1, "emp": False},
     Partial("x.count", (), COUNTER, {"count": 376.0})),
    # A zero is a value, fractions are taken.
    ("c", {"typ": "c", "pth": "x.count", "sum": 0, "cnt": 2}, Partial("x.count", (), COUNTER,
                                                                     {"count": 0.0})),
    ("c", {"typ": "c", "pth": "x.count", "sum": 2.5}, Partial("x.count", (), COUNTER,
                                                               {"count": 2.5})),
    ("c", {"typ": "c", "pth": "x.count", "sum": -1, "cnt": 1}, Partial("x.count", (), COUNTER,
                                                                      {"count": -1.0})),
    ("ms", A_TIMER, Partial("api.query", (), TIMER, {"count": 3.0, "sum": 18.0, "min": 3.0,
                                                   "max": 10.0, "last": 10.0})),
    ("ms", {"typ": "ms", "pth": "t", "sum": 1.5, "cnt": 3, "min": 0, "max": 1, "lst": 0},
     Partial("t", (), TIMER, {"count": 3.0, "sum": 1.5, "min": 0.0, "max": 1.0, "last": 0.0})),
    # No typ: the list's.
    ("ms", {"pth": "t", "sum": 0.25, "cnt": 1, "min": 0.25, "max": 0.25},
     Partial("t", (), TIMER, {"count": 1.0, "sum": 0.25, "min": 0.25, "max": 0.25})),
    ("g", {"typ": "g", "pth": "x.live", "sum": 5670, "cnt": 45, "max": 1240, "min": 9, "top": 500,
           "bot": 34, "fst": 456, "lst": 123},
     Partial("x.live", (), GAUGE, {"last": 123.0, "count": 45.0, "sum": 5670.0, "min": 9.0,
                                   "max": 1240.0})),
    ("g", {"typ": "g", "pth": "x.live", "lst": 0}, Partial("x.live", (), GAUGE, {"last": 0.0})),
    ("g", {"typ": "g", "pth": "x.live", "lst": 0.5, "cnt": 1, "sum": 0.5, "min": 0.5, "max": 0.5,
           "emp": True},
     Partial("x.live", (), GAUGE, {"last": 0.5, "count": 1.0, "sum": 0.5, "min": 0.5,
                                   "max": 0.5})),
]

# (list, partial, words the reason holds)
BAD = [
    ("c", 5, "must be an object"),
    ("c", [1], "must be an object"),
    ("c", {"typ": "ms", "pth": "a", "sum": 1}, 'typ "ms" in the c list'),
    ("c", {"typ": "c", "sum": 1}, '"pth" is required'),
    ("c", {"typ": "c", "pth": "a b", "sum": 1}, "pth: name must be"),
    ("c", {"typ": "c", "pth": "a:b", "sum": 1}, "pth: name must be"),
    ("c", {"typ": "c", "pth": 3, "sum": 1}, "pth: name must be a string"),
    ("c", {"typ": "c", "pth": "a"}, "needs sum"),
    ("c", {"typ": "c", "pth": "a", "sum": None}, "needs sum"),
    ("c", {"typ": "c", "pth": "a", "sum": "1"}, "sum must be a finite number"),
    ("c", {"typ": "c", "pth": "a", "sum": True}, "sum must be a finite number"),
    ("c", {"typ": "c", "pth": "a", "sum": 10 ** 400}, "sum must be a finite number"),
    ("c", {"typ": "c", "pth": "a", "sum": 1, "bot": "x"}, "bot must be a finite number"),
    ("c", {"typ": "c", "pth": "a", "sum": 1, "emp": 1}, "emp must be true or false"),
    ("ms", {"typ": "ms", "pth": "a", "sum": 1, "cnt": 1}, "needs min, max"),
    ("ms", {"typ": "ms", "pth": "a", "sum": 1, "cnt": 0, "min": 1, "max": 1},
     "cnt must be greater than 0"),
    ("ms", {"typ": "ms", "pth": "a", "sum": 1, "cnt": -2, "min": 1, "max": 1},
     "cnt must be greater than 0"),
    ("ms", {"typ": "ms", "pth": "a", "sum": 10, "cnt": 2, "min": 6, "max": 3}, "greater than max"),
    # What DaTtSs' own client sends for 0 and 5: min 5, a mean of 2.5.
    ("ms", {"typ": "ms", "pth": "a", "sum": 5, "cnt": 2, "min": 5, "max": 5, "lst": 5},
     "outside min..max"),
    ("ms", {"typ": "ms", "pth": "a", "sum": 2, "cnt": 2, "min": 0, "max": 2, "lst": 3},
     "last 3.0 is outside min..max"),
    ("g", {"typ": "g", "pth": "a", "sum": 1}, "needs lst"),
    ("g", {"typ": "g", "pth": "a", "lst": 5, "min": 6, "max": 9, "cnt": 1, "sum": 5},
     "outside min..max"),
]


def body(**lists):
    return json.dumps({"prt": lists}).encode()


class PartialTests(SynchronousTestCase):
    def test_good_partials(self):
        """Each good DaTtSs partial becomes our partial of its type, stamped at arrival."""
        for kind, obj, expected in GOOD:
            self.assertEqual(parse_partial_v2(kind, obj, LIMITS), expected, obj)

    def test_bad_partials_name_the_field(self):
        """Each bad partial is refused with a message naming the DaTtSs field or rule."""
        for kind, obj, words in BAD:
            e = self.assertRaises(ParseError, parse_partial_v2, kind, obj, LIMITS)
            self.assertIn(words, str(e), obj)

    def test_name_length_follows_the_limit(self):
        """A pth longer than --max-name-length is refused."""
        small = Limits(max_name_length=5)
        e = self.assertRaises(ParseError, parse_partial_v2, "c", {"pth": "abcdef", "sum": 1}, small)
        self.assertIn("1 to 5 characters", str(e))


class BodyTests(SynchronousTestCase):
    def test_partials_in_list_order_and_refusals_by_position(self):
        """A bad partial is refused by its list and index; the others are read, c then ms then g."""
        taken, refused = parse_agg(body(
            g=[{"pth": "g1", "lst": 1}],
            ms=[A_TIMER, {"pth": "bad"}, dict(A_TIMER, pth="t2")],
            c=[{"pth": "c1", "sum": 1}, 7]), LIMITS)
        self.assertEqual([(kind, index, p.name) for kind, index, p in taken],
                         [("c", 0, "c1"), ("ms", 0, "api.query"), ("ms", 2, "t2"), ("g", 0, "g1")])
        self.assertEqual([(r.kind, r.index) for r in refused], [("c", 1), ("ms", 1)])
        self.assertIsInstance(refused[0], Refused)

    def test_missing_and_empty_lists(self):
        """A list left out or empty holds no partial; extra top-level keys are ignored."""
        taken, refused = parse_agg(json.dumps({"nam": "p", "upt": 3, "prt": {"c": []}}).encode(),
                                   LIMITS)
        self.assertEqual((taken, refused), ([], []))

    def test_bodies_refused_whole(self):
        """A body that is not a DaTtSs commit is refused whole, saying why."""
        cases = [
            (b"", "not JSON"),
            (b"\xff", "not valid UTF-8"),
            (b"[]", 'expected a JSON object {"prt"'),
            (b"{}", 'expected "prt"'),
            (b'{"prt": []}', 'expected "prt"'),
            (b'{"prt": {"c": {}}}', '"prt.c" must be an array'),
            (b'{"prt": {"ms": 1}}', '"prt.ms" must be an array'),
            (b'{"prt": {"x": []}}', "the kinds are c, ms and g"),
            (b'{"prt": {"c": [{"pth": "a", "sum": Infinity}]}}', "Infinity is not allowed"),
        ]
        for data, words in cases:
            e = self.assertRaises(ParseError, parse_agg, data, LIMITS)
            self.assertIn(words, str(e), data)

    def test_too_many_partials(self):
        """More partials than --max-batch in one body are refused whole."""
        small = Limits(max_batch=2)
        self.assertEqual(len(parse_agg(body(c=[{"pth": "a", "sum": 1}] * 2), small)[0]), 2)
        e = self.assertRaises(ParseError, parse_agg,
                              body(c=[{"pth": "a", "sum": 1}] * 2, g=[{"pth": "b", "lst": 1}]),
                              small)
        self.assertIn("3 partials is more than the limit of 2", str(e))
