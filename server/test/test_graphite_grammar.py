"""
The pure parts of the Graphite API: the target grammar, the time grammar,
path patterns and tag expressions, as tables of inputs.
"""

from twisted.trial.unittest import SynchronousTestCase

from server.web.graphite.attime import TimeError, parse_at_time, parse_offset, zone
from server.web.graphite.grammar import Call, GrammarError, Path, parse
from server.core.graphite_names import Pattern, PatternError, TagExpression, TagQuery

NOW = 1795392000  # 2026-11-23 00:00:00 UTC, a Monday


class TargetGrammarTests(SynchronousTestCase):
    def test_parses(self):
        """Paths, calls, literals, keyword arguments and pipes parse as graphite-web's grammar reads them."""
        table = [
            ("a.b.c", Path("a.b.c")),
            ("a.{b,c}.d*", Path("a.{b,c}.d*")),
            ("a.b;host=web1", Path("a.b;host=web1")),
            ("a.b\\(1\\)", Path("a.b(1)")),
            ("sum(a, b)", Call("sum", (Path("a"), Path("b")), (), "sum(a, b)")),
            ("scale(a,-1.5)", Call("scale", (Path("a"), -1.5), (), "scale(a,-1.5)")),
            ("scale(a, 1e3)", Call("scale", (Path("a"), 1000.0), (), "scale(a, 1e3)")),
            ("limit(a, 3)", Call("limit", (Path("a"), 3), (), "limit(a, 3)")),
            ('alias(a, "x y")', Call("alias", (Path("a"), "x y"), (), 'alias(a, "x y")')),
            ("alias(a, 'it''s')", Call("alias", (Path("a"), "it''s"), (), "alias(a, 'it''s')")),
            ('aliasSub(a, "(^.*$)", "\\1 A")',
             Call("aliasSub", (Path("a"), "(^.*$)", "\\1 A"), (), 'aliasSub(a, "(^.*$)", "\\1 A")')),
            ("keepLastValue(a, inf)", Call("keepLastValue", (Path("a"), float("inf")), (),
                                           "keepLastValue(a, inf)")),
            ("f(a, true, False, none)", Call("f", (Path("a"), True, False, None), (),
                                             "f(a, true, False, none)")),
            ("summarize(a, '1h', func='max')",
             Call("summarize", (Path("a"), "1h"), (("func", "max"),),
                  "summarize(a, '1h', func='max')")),
            ("a|scale(2)", Call("scale", (Path("a"), 2), (), "scale(2)")),
            ("seriesByTag('name=a', 'b!=~c')",
             Call("seriesByTag", ("name=a", "b!=~c"), (), "seriesByTag('name=a', 'b!=~c')")),
            ("f()", Call("f", (), (), "f()")),
            ("1a.b", Path("1a.b")),
        ]
        for text, expected in table:
            self.assertEqual(parse(text), expected, text)

    def test_refuses(self):
        """Unbalanced, empty and misplaced input is a GrammarError naming where."""
        for text in ("", "sum(a", "a.b)", "sum(a,,b)", "a..b", "a.", "f(x=1, a)", "a.{b,c",
                     "alias(a, 'x)", "a | b"):
            self.assertRaises(GrammarError, parse, text)
        e = self.assertRaises(GrammarError, parse, "sum(a")
        self.assertIn("character 6", str(e))


class TimeGrammarTests(SynchronousTestCase):
    def test_at_times(self):
        """now, relative offsets, epoch seconds and absolute dates read as graphite-web's attime reads them."""
        table = [
            ("now", NOW), ("-6h", NOW - 6 * 3600), ("-5min", NOW - 300), ("-1d", NOW - 86400),
            ("-1w", NOW - 7 * 86400), ("-1mon", NOW - 30 * 86400), ("-1y", NOW - 365 * 86400),
            ("-10s", NOW - 10), ("-1h30min", NOW - 5400), ("now-2d", NOW - 2 * 86400),
            ("+1h", NOW + 3600), ("1700000000", 1700000000), ("20261122", NOW - 86400),
            ("12:30_20261122", NOW - 86400 + 45000), ("noon yesterday", NOW - 43200),
            ("midnight", NOW), ("today", NOW), ("tomorrow", NOW + 86400),
            ("11/22/2026", NOW - 86400), ("nov22", NOW - 86400), ("monday", NOW),
            ("sunday", NOW - 86400), (" -6h ", NOW - 6 * 3600),
        ]
        for text, expected in table:
            self.assertEqual(parse_at_time(text, NOW), expected, text)

    def test_time_zone(self):
        """Absolute times read in the tz asked for; offsets stay seconds."""
        self.assertEqual(parse_at_time("20261123", NOW, zone("Europe/Paris")), NOW - 3600)
        self.assertEqual(parse_at_time("-1d", NOW, zone("Europe/Paris")), NOW - 86400)
        self.assertRaises(TimeError, zone, "Nowhere/Else")

    def test_refuses(self):
        """A bare m, an unknown unit or word and a missing number are TimeErrors."""
        for text in ("-1m", "-1x", "-h", "yesterdayish", "", "-", "13:xx", "feb"):
            self.assertRaises(TimeError, parse_at_time, text, NOW)

    def test_offsets(self):
        """Intervals as summarize and timeShift take them."""
        self.assertEqual(parse_offset("1h"), 3600)
        self.assertEqual(parse_offset("-10min"), -600)
        self.assertEqual(parse_offset("2d3h"), 2 * 86400 + 3 * 3600)
        self.assertRaises(TimeError, parse_offset, "1m")
        self.assertRaises(TimeError, parse_offset, "h")


class _Series:
    def __init__(self, name, type="v", tags=()):
        from server.core.aggregate import family
        self.name, self.type, self.tags, self.family = name, type, tags, family(type)


class PatternTests(SynchronousTestCase):
    def test_globs(self):
        """Globs match one node each: *, ?, [..], [!..], {a,b}."""
        table = [
            ("a.*", "a.b", True), ("a.*", "a.b.c", False), ("a.?", "a.bc", False),
            ("a.b[0-9]", "a.b7", True), ("a.b[!0-9]", "a.b7", False), ("a.{x,y}z", "a.yz", True),
            ("*.*", "a.b", True), ("a*", "abc", True), ("a.{b,c*}", "a.cd", True),
        ]
        for pattern, name, matched in table:
            paths = [p for p, _ in Pattern(pattern).paths(_Series(name))]
            self.assertEqual(name in paths, matched, (pattern, name))

    def test_fields_and_statsd_names(self):
        """A series offers its bare name, name.field and, by type, statsd's names."""
        timer = _Series("api.t", "ms")
        self.assertEqual(sorted(p for p, _ in Pattern("stats.timers.api.t.*").paths(timer)),
                         ["stats.timers.api.t." + f for f in (
                             "count", "count_ps", "lower", "mean", "median", "std", "sum",
                             "upper", "upper_90", "upper_95", "upper_99")])
        counter = _Series("hits", "c")
        self.assertEqual(sorted(p for p, _ in Pattern("*").paths(counter)), ["hits"])
        self.assertEqual(sorted(p for p, _ in Pattern("stats*.*").paths(counter)),
                         ["stats.hits", "stats_counts.hits"])
        self.assertEqual(Pattern("*").paths(_Series("hits", "c", (("a", "b"),))), [])

    def test_find_nodes(self):
        """Tree nodes at the pattern's depth: branches above, leaves at the end, both for a bare name with fields."""
        series = _Series("a.b", "g")
        self.assertEqual(Pattern("a").nodes_of(series), [("a", False)])
        self.assertEqual(Pattern("a.*").nodes_of(series), [("a.b", False), ("a.b", True)])
        self.assertEqual(sorted(Pattern("a.b.*").nodes_of(series)),
                         [("a.b." + f, True) for f in ("last", "max", "mean", "min", "updates")])
        self.assertEqual(Pattern("stats.*").nodes_of(series), [("stats.gauges", False)])

    def test_bad_patterns(self):
        """Unclosed brackets and empty nodes are PatternErrors."""
        for text in ("a.[bc", "a.{b", "a..b"):
            self.assertRaises(PatternError, Pattern, text)


class TagTests(SynchronousTestCase):
    def test_expressions(self):
        """=, !=, =~ (anchored at the start), !=~, and = with a glob."""
        table = [
            ("host=web1", "web1", True), ("host=web1", "web12", False),
            ("host!=web1", "web2", True), ("host!=web1", "", True),
            ("host=~web", "web12", True), ("host=~web", "aweb", False),
            ("host!=~web", "db1", True), ("host=web*", "web12", True), ("host=web*", "db", False),
        ]
        for text, value, matched in table:
            self.assertEqual(TagExpression(text).matches(value), matched, (text, value))

    def test_query(self):
        """seriesByTag paths are the canonical name;tags, one per field the name expressions allow."""
        series = _Series("api.latency", "ms", (("dc", "eu"), ("host", "web1")))
        self.assertEqual([p for p, _ in TagQuery(["name=api.latency.p99"]).paths(series)],
                         ["api.latency.p99;dc=eu;host=web1"])
        self.assertEqual(TagQuery(["name=api.latency", "host=db1"]).paths(series), [])
        self.assertEqual(len(TagQuery(["host=web1"]).paths(series)), 12)

    def test_refuses(self):
        """A spec without an operator, a bad regex, or only empty-matching specs are refused."""
        self.assertRaises(PatternError, TagExpression, "host")
        self.assertRaises(PatternError, TagExpression, "host=~(")
        self.assertRaises(PatternError, TagQuery, ["host!=x"])
        self.assertRaises(PatternError, TagQuery, [])
