"""
Tests for L{server.filters}.
"""

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.filters import compile_filter
from server.model import ParseError

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
