"""
Tests for L{server.core.filters}.
"""

import json
import random
import time
from urllib.parse import urlencode

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.core.filters import compile_filter, merge_runs, run_in_slices, select, sorted_runs
from server.core.model import GAUGE, ParseError, Sample
from server.test.test_web_api import BASE, APITestCase
from server.web.api import WebAPI

WEB1 = {"host": "web1", "env": "prod"}
NONE = {}

# (filter, name, tags, whether it matches)
CASES = [
    # blank
    ("", "anything", NONE, True),
    ("-simplestats", "simplestats.udp.bad", NONE, False),
    ("-simplestats", "web1.cpu.user", NONE, True),
    ("cpu -host:web1", "web1.cpu.user", WEB1, False),
    ("cpu -/^db/", "web1.cpu.user", NONE, True),
    ("-", "a-b", NONE, True),
    ("   ", "anything", WEB1, True),
    # substring, ignoring case
    ("cpu", "web1.cpu.user", NONE, True),
    ("CPU", "web1.cpu.user", NONE, True),
    ("cpu", "web1.CPU.user", NONE, True),
    ("cpu", "web1.mem", NONE, False),
    ("web1.cpu", "web1.cpu.user", NONE, True),
    ("cpu user", "web1.cpu.user", NONE, True),
    ("cpu  \t system", "web1.cpu.user", NONE, False),
    # glob on the whole name
    ("web*", "web1.cpu", NONE, True),
    ("web*", "myweb1.cpu", NONE, False),
    ("*cpu*", "web1.cpu.user", NONE, True),
    ("*.cpu", "web1.cpu.user", NONE, False),
    ("web?.cpu", "web1.cpu", NONE, True),
    ("web?.cpu", "web12.cpu", NONE, False),
    ("web*.cpu.?", "web12.cpu.a", NONE, True),
    ("web*.cpu.?", "web12.cpu.ab", NONE, False),
    ("WEB*", "web1", NONE, True),
    ("web.*", "webx1", NONE, False),
    ("a+b*", "a+bc", NONE, True),
    ("a+b*", "aab", NONE, False),
    ("*", "", NONE, True),
    # regular expressions, searched
    ("/^web\\d+/", "web12.cpu", NONE, True),
    ("/^web\\d+/", "myweb12.cpu", NONE, False),
    ("/cpu$/", "web1.cpu", NONE, True),
    ("/CPU/", "web1.cpu", NONE, False),
    ("/(?i)CPU/", "web1.cpu", NONE, True),
    ("/a:b/", "xa:by", NONE, True),
    ("//", "anything", NONE, True),
    # tags
    ("host:web1", "m", WEB1, True),
    ("host:WEB1", "m", WEB1, True),
    ("host:web2", "m", WEB1, False),
    ("host:web", "m", WEB1, False),
    ("host:web*", "m", WEB1, True),
    ("host:w?b1", "m", WEB1, True),
    ("host:*2", "m", WEB1, False),
    ("host:", "m", WEB1, True),
    ("dc:", "m", WEB1, False),
    ("dc:*", "m", WEB1, False),
    ("HOST:web1", "m", WEB1, False),
    ("host:web1", "m", NONE, False),
    ("url:http://x", "m", {"url": "http://x"}, True),
    ("k:a:b", "m", {"k": "a:b"}, True),
    ("flag:", "m", {"flag": ""}, True),
    # all terms must match
    ("cpu host:web1 env:prod", "web1.cpu", WEB1, True),
    ("cpu host:web1 env:dev", "web1.cpu", WEB1, False),
    ("cpu host:web1 /^web/ web*", "web1.cpu", WEB1, True),
    ("mem host:web1", "web1.cpu", WEB1, False),
]

# (filter, words its error must contain)
BAD_FILTERS = [
    ("/a(/", "invalid regular expression /a(/: missing ), unterminated subpattern"),
    ("/[/", "invalid regular expression /[/"),
    ("/*/", "invalid regular expression"),
    ("/a{99999999999}/", "invalid regular expression /a{99999999999}/: the repetition number is too large"),
    ("/" + "(" * 50000 + ")" * 50000 + "/", "invalid regular expression"),
    ("/", 'filter term "/" starts a regular expression but does not end with "/"'),
    ("/a b/", 'filter term "/a" starts a regular expression'),
    # valid Python, but not in linear time: RE2 refuses, and the message says what
    ("/(a)\\1/", "RE2 (linear time) does not support backreferences (\\1) in /(a)\\1/"),
    ("/(?P<x>a)(?P=x)/", "RE2 (linear time) does not support backreferences (?P=name)"),
    ("/web(?=1)/", "RE2 (linear time) does not support lookahead (?=...)"),
    ("/web(?!1)/", "RE2 (linear time) does not support negative lookahead (?!...)"),
    ("/(?<=web)1/", "RE2 (linear time) does not support lookbehind (?<=...)"),
    ("/(?<!web)1/", "RE2 (linear time) does not support negative lookbehind (?<!...)"),
    ("/(?>a+)b/", "RE2 (linear time) does not support atomic groups (?>...)"),
    ("/a++b/", "RE2 (linear time) does not support possessive quantifiers"),
    ("/(a)?(?(1)b|c)/", "RE2 (linear time) does not support conditionals"),
    ("/a{1001}/", "RE2 (linear time) does not support repetition counts above 1000"),
    ("/cpu\\Z/", "RE2 (linear time) does not support \\Z (write \\z or $)"),
    ("/a{,5}/", "RE2 (linear time) does not support {,n} in /a{,5}/ (write {0,n})"),
    ("/abc", "cannot contain spaces"),
    (":web1", 'filter term ":web1" has no tag key'),
    ("cpu :", "has no tag key"),
]


class CompileFilterTests(SynchronousTestCase):
    """
    Tests for L{compile_filter}.
    """

    def test_cases(self):
        """
        Each filter matches exactly the names and tags it should.
        """
        for text, name, tags, expected in CASES:
            self.assertEqual(compile_filter(text)(name, tags), expected, (text, name, tags))

    def test_tag_pairs(self):
        """
        Tags may also be given as the sorted tuple of pairs a Sample holds.
        """
        pairs = tuple(sorted(WEB1.items()))
        for text, name, tags, expected in CASES:
            if tags is WEB1:
                self.assertEqual(compile_filter(text)(name, pairs), expected, text)

    def test_bad(self):
        """
        A filter that cannot be understood raises L{ParseError} saying why.
        """
        for text, words in BAD_FILTERS:
            error = self.assertRaises(ParseError, compile_filter, text)
            self.assertIn(words, str(error), "%r gave %r" % (text, str(error)))

    def test_reusable(self):
        """
        A compiled filter can be applied many times with the same answers.
        """
        match = compile_filter("web* host:web1")
        self.assertEqual(
            [match("web1", WEB1), match("db1", WEB1), match("web1", NONE), match("web2", WEB1)],
            [True, False, False, True],
        )

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=30), st.text("abcXYZ019_.-", max_size=20))
    def test_arbitrary_text(self, text, name):
        """
        Any filter text compiles or raises L{ParseError}; a compiled one answers a bool.
        """
        try:
            match = compile_filter(text)
        except ParseError:
            return
        self.assertIn(match(name, {"host": "web1"}), (True, False))

    @settings(max_examples=300, deadline=None)
    @given(st.text("abcXYZ019_.-", min_size=1, max_size=20), st.data())
    def test_own_name(self, name, data):
        """
        A name matches itself as a substring, as a glob and with any part replaced by "*"
        (a name starting with "-" reads as a negated term, so it is not its own filter).
        """
        assume(not name.startswith("-"))
        start = data.draw(st.integers(0, len(name)))
        end = data.draw(st.integers(start, len(name)))
        glob = name[:start] + "*" + name[end:]
        for text in (name, name.upper(), glob) if not glob.startswith("-") else (name, name.upper()):
            self.assertTrue(compile_filter(text)(name, NONE), text)


class LinearTimeTests(SynchronousTestCase):
    """
    No filter takes time beyond linear in the name, however it is written.
    """

    def assertFast(self, text, name, expected, seconds=0.5):
        match = compile_filter(text)
        began = time.perf_counter()
        self.assertEqual(match(name, {}), expected, (text, name))
        self.assertLess(time.perf_counter() - began, seconds, (text, name))

    def test_catastrophic_regexes(self):
        """/(.*)*x/ and /(a+)+$/, hours on a backtracking engine, answer at once, rightly."""
        self.assertFast("/(.*)*x/", "simplestats.udp.bad_lines.count", False)
        self.assertFast("/(.*)*x/", "simplestats.http.exports", True)
        self.assertFast("/(a+)+$/", "a" * 40 + "!", False)
        self.assertFast("/(a+)+$/", "b" + "a" * 40, True)
        self.assertFast("/(a|aa)*c/", "a" * 5000, False)
        self.assertFast("/^(\\w+\\s?)*$/", "word " * 1000 + "!", False)
        self.assertFast("/(x+x+)+y/", "x" * 10000, False)

    def test_pathological_globs(self):
        """Globs of many stars, on names and tag values, stay linear (no backtracking into a star)."""
        self.assertFast("*a" * 1000 + "*b", "a" * 200, False)
        self.assertFast("*a" * 100 + "*b", "a" * 199 + "b", True)
        self.assertFast("*?" * 500 + "*!", "x" * 5000, False)
        match = compile_filter("host:" + "*a" * 1000 + "*b")
        began = time.perf_counter()
        self.assertFalse(match("m", {"host": "a" * 5000}))
        self.assertLess(time.perf_counter() - began, 0.5)

    def test_regex_semantics(self):
        """RE2 keeps the documented meaning: searched anywhere, case-sensitive unless (?i), not Unicode-aware for \\d."""
        self.assertTrue(compile_filter("/cpu/")("web1.cpu.user", {}))
        self.assertFalse(compile_filter("/^cpu/")("web1.cpu.user", {}))
        self.assertFalse(compile_filter("/CPU/")("web1.cpu", {}))
        self.assertTrue(compile_filter("/(?i)CPU/")("web1.cpu", {}))
        self.assertTrue(compile_filter("/é.1$/")("café.1", {}))
        self.assertTrue(compile_filter("/a{0,5}b/")("aab", {}))
        self.assertTrue(compile_filter("/a\\{,5}/")("a{,5}", {}))
        self.assertFalse(compile_filter("/\\d/")("web\u0661", {}))


class CapTests(SynchronousTestCase):
    """
    The caps on a filter's terms and length.
    """

    def test_terms(self):
        """Up to max_terms terms are taken; one more is refused, naming the setting."""
        compile_filter(" ".join(["cpu"] * 100), max_terms=100)
        error = self.assertRaises(ParseError, compile_filter, " ".join(["-cpu"] * 101), max_terms=100)
        self.assertEqual(str(error), "the filter has 101 terms; at most 100 are allowed"
                                     " (setting max_filter_terms)")

    def test_length(self):
        """Up to max_length characters are taken; one more is refused, naming the setting."""
        compile_filter("a" * 4096, max_length=4096)
        error = self.assertRaises(ParseError, compile_filter, "/" + "a" * 4094 + "/ ", max_length=4096)
        self.assertEqual(str(error), "the filter is 4097 characters long; at most 4096 are allowed"
                                     " (setting max_filter_length)")

    def test_no_caps(self):
        """Without caps a filter may be as long as it likes."""
        self.assertFalse(compile_filter(" ".join("-w%d" % i for i in range(1000)))("w999", {}))


class _Call:
    def __init__(self, f, args, kw):
        self.f, self.args, self.kw = f, args, kw
        self.state = "waiting"

    def active(self):
        return self.state == "waiting"

    def cancel(self):
        self.state = "cancelled"


class Turns:
    """
    A clock whose C{callLater(0)} waits for the next L{turn}, as on a
    reactor (L{Clock.advance} also runs the calls made while it runs: all
    the slices in one go).
    """

    def __init__(self, clock):
        self.clock = clock
        self.pending = []

    def seconds(self):
        return self.clock.seconds()

    def callLater(self, delay, f, *args, **kw):
        assert delay == 0, delay
        call = _Call(f, args, kw)
        self.pending.append(call)
        return call

    def turn(self):
        due, self.pending = self.pending, []
        ran = 0
        for call in due:
            if call.active():
                call.state = "called"
                call.f(*call.args, **call.kw)
                ran += 1
        return ran


class SliceTests(SynchronousTestCase):
    """
    L{run_in_slices} and the generators it drives.
    """

    def run_all(self, clock, d, turns=100000):
        for _ in range(turns):
            if d.called:
                break
            clock.turn()
        return self.successResultOf(d)

    def test_select_sliced_equals_unsliced(self):
        """With a budget of 0 each yield is a reactor turn, and the result is the same as a plain filter."""
        clock = Turns(Clock())
        items = list(range(1000))
        d = run_in_slices(clock, select(items, lambda i: i % 7 == 3, every=10), budget=0)
        self.assertFalse(d.called)
        # A slice per chunk of ten, one to find the end.
        for _ in range(100):
            self.assertFalse(d.called)
            self.assertEqual(clock.turn(), 1)
        self.assertEqual(self.successResultOf(d), [i for i in items if i % 7 == 3])

    def test_one_slice_within_budget(self):
        """With a generous budget the work ends in the call itself."""
        d = run_in_slices(Clock(), select(range(100), bool), budget=60)
        self.assertEqual(self.successResultOf(d), list(range(1, 100)))

    def test_slices_by_time(self):
        """A slice ends when the timer passes the budget, not before."""
        ticks = iter(range(1000))
        clock = Turns(Clock())
        d = run_in_slices(clock, select(range(100), bool, every=1), budget=10, timer=lambda: next(ticks))
        # Each slice reads the timer for its deadline, then once per item:
        # ten items a slice.
        turns = 0
        while not d.called:
            turns += clock.turn()
        self.assertEqual((self.successResultOf(d), turns), (list(range(1, 100)), 10))

    def test_error(self):
        """What the work raises fails the Deferred."""
        def work():
            yield
            raise ValueError("boom")
        clock = Turns(Clock())
        d = run_in_slices(clock, work(), budget=0)
        clock.turn()
        self.assertEqual(str(self.failureResultOf(d, ValueError).value), "boom")

    def test_cancel_stops(self):
        """Cancelling (the client went away) stops the work: nothing more runs, nothing is left scheduled."""
        seen = []
        closed = []

        def work():
            try:
                for i in range(100):
                    seen.append(i)
                    yield
            finally:
                closed.append(True)

        clock = Turns(Clock())
        d = run_in_slices(clock, work(), budget=0)
        clock.turn()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(clock.turn(), 0)
        self.assertEqual((seen, closed), ([0, 1], [True]))

    def test_sorted_runs_and_merge(self):
        """Sorting in runs then merging gives sorted(); with a limit, its first items and the full count."""
        rng = random.Random(4)
        items = ["k%05d" % rng.randrange(100000) for _ in range(5000)]
        clock = Turns(Clock())

        def work(limit):
            runs, count = yield from sorted_runs(items, str, lambda k: not k.endswith("7"),
                                                 limit, run_length=300)
            merged = yield from merge_runs(runs, str, limit, every=100)
            return merged, count

        alive = sorted(k for k in items if not k.endswith("7"))
        for limit in (None, 0, 1, 250, 4000, 10000, -5):
            d = run_in_slices(clock, work(limit), budget=0)
            expected = alive if limit is None else alive[:max(0, limit)]
            self.assertEqual(self.run_all(clock, d), (expected, len(alive)), limit)


def _names(count):
    rng = random.Random(7)
    names = ["web%d.cpu.%s" % (i, rng.choice("xyz")) for i in range(count)]
    rng.shuffle(names)
    return names


class FilterAPITests(APITestCase):
    """
    Filters through the API: linear time, caps, and matching a slice per reactor turn.
    """

    def setUp(self):
        APITestCase.setUp(self)
        self.turns = Turns(self.clock)
        self.api = WebAPI(self.core, self.core.settings, self.turns)
        self.stub = StubTreq(self.api.app.resource())

    def request(self, method, path, **kwargs):
        d = self.stub.request(method, BASE + path, **kwargs)
        response = self.successResultOf(self.finish(d))
        took = self.took
        body = self.successResultOf(self.finish(self.stub.content(response)))
        self.took += took
        return response, body

    def finish(self, d):
        """Turn the reactor until C{d} fires, counting the turns in C{self.took}."""
        self.took = 0
        fired = []
        d.addBoth(lambda result: fired.append(True) or result)
        for _ in range(100000):
            self.stub.flush()
            if fired:
                break
            self.took += self.turns.turn()
        return d

    def add(self, names):
        self.submit(*[Sample(n, (("host", "h%d" % (i % 3)),), GAUGE, float(i))
                      for i, n in enumerate(names)])

    def test_catastrophic_regex_answers_fast(self):
        """/(.*)*x/ and /(a+)+$/ over the server's own series and a long name answer at once, rightly."""
        self.core.emit_own_metrics()
        self.add(["a" * 40 + "!", "b" + "a" * 40])
        names = [s.name for s in self.core.store.series.values()]
        for text, expected in [("/(.*)*x/", sorted(n for n in names if "x" in n)),
                               ("/(a+)+$/", ["b" + "a" * 40])]:
            began = time.perf_counter()
            body = self.get_json("/api/metrics?" + urlencode({"filter": text}))
            self.assertLess(time.perf_counter() - began, 2.0, text)
            self.assertEqual(sorted(m["name"] for m in body["metrics"]), expected, text)

    def test_refused_filters(self):
        """RE2-unsupported constructs and filters over the caps are a 400 naming why, counted, on all three routes."""
        many = " ".join("-w%d" % i for i in range(101))
        cases = [("/(a)\\1/", "bad filter: RE2 (linear time) does not support backreferences"),
                 ("/x(?=y)/", "bad filter: RE2 (linear time) does not support lookahead"),
                 (many, "bad filter: the filter has 101 terms; at most 100 are allowed (setting max_filter_terms)"),
                 ("a" * 4097, "bad filter: the filter is 4097 characters long; at most 4096"
                              " are allowed (setting max_filter_length)")]
        for text, words in cases:
            query = urlencode({"filter": text})
            for method, path in [("GET", "/api/metrics?"), ("GET", "/api/export?"),
                                 ("DELETE", "/api/series?")]:
                response, body = self.request(method, path + query)
                self.assertEqual(response.code, 400, (text[:20], path))
                body = json.loads(body)
                self.assertEqual(body["parameter"], "filter")
                self.assertIn(words, body["error"])
        self.assertEqual(self.core.counters["simplestats.http.bad_filter"], 12)

    def test_caps_are_settings(self):
        """--max-filter-terms and --max-filter-length set the caps."""
        from server.settings import load
        settings = load(["--max-filter-terms", "2", "--max-filter-length", "10"])
        self.assertEqual((settings.max_filter_terms, settings.max_filter_length), (2, 10))
        self.api.settings = settings
        self.assertIn("at most 2 are allowed",
                      self.get_json("/api/metrics?filter=a+b+c", 400)["error"])
        self.assertIn("at most 10 are allowed",
                      self.get_json("/api/metrics?filter=abcdefghijk", 400)["error"])
        self.assertEqual(self.get_json("/api/metrics?filter=a+b")["matched"], 0)

    def expected(self, text, limit=None):
        matches = compile_filter(text)
        keys = sorted(k for k, s in self.core.store.series.items() if matches(s.name, s.tags))
        return keys if limit is None else keys[:limit], len(keys)

    def test_sliced_equals_unsliced(self):
        """Matched a few series per reactor turn, list, limit, export and delete answer as in one go."""
        self.add(_names(3000))
        for text in ("", "cpu.x", "/[13]\\.cpu/ -host:h1", "web1*", "nomatch"):
            for limit in (None, 7):
                query = urlencode({"filter": text, **({} if limit is None else {"limit": limit})})
                self.api.slice_seconds = 60
                whole = self.get_json("/api/metrics?" + query)
                self.assertEqual(self.took, 0)
                self.api.slice_seconds = 0
                sliced = self.get_json("/api/metrics?" + query)
                self.assertGreater(self.took, 50, "not sliced")
                self.assertEqual(sliced, whole, (text, limit))
                keys, matched = self.expected(text, limit)
                self.assertEqual(([m["key"] for m in sliced["metrics"]], sliced["matched"]),
                                 (keys, matched))
            response, body = self.request("GET", "/api/export?" + urlencode({"filter": text}))
            exported = sorted({"%s;host=%s" % (row[0], row[3]["host"])
                               for row in map(json.loads, body.splitlines())})
            self.assertEqual(exported, self.expected(text)[0])
        keys, matched = self.expected("cpu.y")
        response, body = self.request("DELETE", "/api/series?filter=cpu.y")
        body = json.loads(body)
        self.assertEqual((body["deleted"], sorted(body["keys"])), (matched, keys))
        self.assertEqual(self.expected("cpu.y"), ([], 0))
        self.assertEqual(self.core.journal.pending, [])

    def test_store_changes_between_slices(self):
        """Series deleted between slices are not answered (nor deleted); ones added meanwhile wait for the next request."""
        self.add(_names(2000))
        self.api.slice_seconds = 0
        for number, (method, path) in enumerate([("GET", "/api/metrics?filter=cpu"),
                                                 ("GET", "/api/export?filter=cpu"),
                                                 ("DELETE", "/api/series?filter=cpu")]):
            # The first slice copies the series list.
            before = set(self.core.store.series)
            d = self.stub.request(method, BASE + path)
            self.stub.flush()
            self.turns.turn()
            self.assertNoResult(d)
            gone = sorted(before)[number::3]
            self.assertEqual(len(self.core.delete(gone)), len(gone))
            added = ["new%d.cpu.%d" % (number, i) for i in range(10)]
            self.add(added)
            response = self.successResultOf(self.finish(d))
            body = self.successResultOf(self.finish(self.stub.content(response)))
            if path.startswith("/api/metrics"):
                keys = [m["key"] for m in json.loads(body)["metrics"]]
            elif path.startswith("/api/export"):
                keys = sorted({"%s;host=%s" % (row[0], row[3]["host"])
                               for row in map(json.loads, body.splitlines())})
            else:
                keys = sorted(json.loads(body)["keys"])
            self.assertEqual(keys, sorted(before - set(gone)), path)
        self.assertEqual(sorted(s.name for s in self.core.store.series.values()), sorted(added))
