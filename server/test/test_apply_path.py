"""
The one apply path: every point waits in its series' run (L{Pending}) and is
folded into its aggregate by a strict left fold, so the state is the same to
the bit however the runs are cut (reads, ticks, other inputs) and whichever
way the point came (the statsd shortcut, the full parser, the journal).
"""


from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from server.core.aggregate import exact_form
from server.core.model import COUNTER, GAUGE, TIMER, Sample
from server.core.parse_statsd import parse_packet
from server.receivers.statsd import StatsdProtocol
from server.core.query import bucket_rows
from server.test.support import T0, make_core, replayed

PEER = ("127.0.0.1", 40000)
STEP = 5.0


def state(core):
    """
    Everything the store keeps, as text (so NaN equals NaN and every bit
    counts), once every run is folded, as any reader folds it.
    """
    store = core.store
    store.settle()
    out = []
    for key in sorted(store.series):
        s = store.series[key]
        stored = [None if t is None else (t.index.tolist(), [c.tolist() for c in t.columns])
                  for t in s.stored]
        opened = [sorted((b, agg.to_json(), exact_form(agg)) for b, agg in tier.items())
                  for tier in s.open]
        out.append((key, s.type, s.gauge, s.value, s.value_bucket, s.first_seen, s.last_seen,
                    s.touched, list(s.ring), stored, opened))
    return repr(out)


# Values as clients write them: %0.6f timers (never dyadic), float reprs,
# integers, gauge changes with a sign.
values = st.one_of(
    st.floats(0.001, 5000).map(lambda v: "%0.6f" % v),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["47.83935877456932", "0.1", "+1.1", "-2.3", "+0", ".5", "1e3"]),
)
common_lines = st.builds(
    lambda name, value, kind, rate, tags: "%s:%s|%s%s%s" % (name, value, kind, rate, tags),
    st.sampled_from(["a", "a", "b.c", "t-1"]),
    values,
    st.sampled_from(["c", "ms", "g", "h", "d"]),
    st.sampled_from(["", "", "|@0.1", "|@0.5", "|@0.3"]),
    st.sampled_from(["", "", "|#route:/api/v3,status:200", "|#status:200,route:/api/v3"]),
)
set_lines = st.builds(lambda name, member: "%s:%s|s" % (name, member),
                      st.sampled_from(["s", "t-1"]), st.sampled_from(["u1", "u2", "x:y", "7"]))
# Lines the shortcut leaves to the full parser (packed values, a timestamp,
# a name to sanitise, a container field), and bad ones.
other_lines = st.sampled_from([
    "a:1.25:2.5|ms", "b.c:3|c|c:abc", "my name:2|c", "a:0.7|ms|T%d" % (T0 + 3),
    "a:1|c\r", "", "a:x|c", "a:1|zz", "a:1|c|@0", "a:nan|ms",
])
packets = st.lists(st.one_of(common_lines, common_lines, common_lines, set_lines, other_lines),
                   min_size=1, max_size=12).map(lambda lines: "\n".join(lines).encode())
# Between packets: a pause, sometimes to a bucket's very edge, sometimes
# back in time; a read of the fast side; a rollup tick on both sides.
actions = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([0, 0, 0.25, 1, 2.5, 6])),
    st.tuples(st.just("edge"), st.sampled_from([-1e-6, 0.0, 1e-6])),
    st.tuples(st.just("back"), st.just(1.5)),
    st.tuples(st.just("read"), st.sampled_from(["settle", "series"])),
    st.tuples(st.just("read"), st.sampled_from(["settle", "series"])),
    st.tuples(st.just("tick"), st.just(None)),
)


class OneApplyPathTests(SynchronousTestCase):

    def run_actions(self, script, fast, others=(), tick=True):
        proto = StatsdProtocol(fast, fast.settings.limits, fast.clock)
        for packet, (what, arg) in script:
            proto.datagramReceived(packet, PEER)
            for general in others:
                samples, _ = parse_packet(packet, general.settings.limits)
                general.submit(samples, "udp")
            clocks = [fast.clock] + [g.clock for g in others]
            if what == "advance":
                amounts = [arg] * len(clocks)
            elif what == "edge":
                now = fast.clock.seconds()
                amounts = [(now // STEP + 1) * STEP + arg - now] * len(clocks)
            elif what == "back":
                amounts = [-arg] * len(clocks)
            elif what == "read":
                amounts = []
                if arg == "settle":
                    fast.store.settle()
                else:
                    for series in list(fast.store.series.values())[:2]:
                        bucket_rows(fast.store, series, 0, 0, 2 ** 32)
                        fast.store.moving_average(series, fast.clock.seconds())
            else:
                amounts = []
                if tick:
                    for core in (fast, *others):
                        core.store.tick(core.clock.seconds())
            for clock, amount in zip(clocks, amounts):
                clock.advance(amount)

    @given(st.lists(st.tuples(packets, actions), min_size=1, max_size=40))
    @settings(max_examples=200, deadline=None)
    def test_shortcut_and_full_parser_reach_the_same_bits(self, script):
        """Non-dyadic values, sample rates, tags, gauge changes, sets, bucket edges, reads and ticks: the statsd shortcut with reads in between gives the bits of parse_packet + submit point by point."""
        fast = make_core(self)
        general = make_core(self)
        self.run_actions(script, fast, [general])
        self.assertEqual(state(fast), state(general))

    @given(st.lists(st.tuples(packets, actions), min_size=1, max_size=40))
    @settings(max_examples=100, deadline=None)
    def test_replay_reaches_the_same_bits(self, script):
        """Replaying the journal (the same shortcut, no reads in between) gives the bits the live server reached with its reads."""
        live = make_core(self)
        self.run_actions(script, live, tick=False)
        fresh = replayed(self, live)
        # The replayed server counts its points under replay.
        self.assertEqual(state(fresh), state(live))

    def test_same_bits_as_a_float_loop(self):
        """A timer's sums are the left fold of its values, not v * n: 47.83935877456932 taken 200 times."""
        core = make_core(self)
        proto = StatsdProtocol(core, core.settings.limits, core.clock)
        for _ in range(200):
            proto.datagramReceived(b"t:47.83935877456932|ms\nc:47.83935877456932|c|@0.3", PEER)
        core.store.settle()
        total = count = 0.0
        for _ in range(200):
            total += 47.83935877456932
            count += 47.83935877456932 / 0.3
        agg, = core.store.series["t"].open[0].values()
        self.assertEqual((agg.count, agg.sum), (200.0, total))
        self.assertEqual(core.store.series["c"].open[0].popitem()[1].count, count)


class ShortcutTests(SynchronousTestCase):
    """
    How the statsd shortcut finds a series' run: by the line's name, type,
    rate and tags, within one finest bucket.
    """

    def setUp(self):
        self.core = make_core(self)
        self.store = self.core.store
        self.proto = StatsdProtocol(self.core, self.core.settings.limits, self.core.clock)

    def send(self, data):
        self.proto.datagramReceived(data, PEER)

    def test_second_packet_only_appends(self):
        """The first line of a kind is parsed in full; the next ones append their text to the run."""
        self.send(b"t:1.500000|ms|#a:b\nc:1|c|@0.1")
        self.assertEqual(sorted(self.store.fast), [("c", "|c|@0.1"), ("t", "|ms|#a:b")])
        run = self.store.fast["t", "|ms|#a:b"]
        self.send(b"t:2.250000|ms|#a:b\nc:1|c|@0.1")
        self.assertIs(self.store.fast["t", "|ms|#a:b"], run)
        self.assertEqual(list(run), ["1.500000", "2.250000"])
        self.assertEqual(self.core.counters["simplestats.udp.points"], 4)
        self.store.settle()
        self.assertEqual(list(run), [])
        self.assertEqual(self.store.series["c"].value, 20.0)
        self.assertEqual(self.store.series["t;a=b"].value, 2.25)

    def test_tag_orders_are_one_series(self):
        """Tags in another order are another token for the same series; the series' points keep their order."""
        self.send(b"g:1|g|#x:1,y:2\ng:5|g|#y:2,x:1\ng:+1|g|#x:1,y:2")
        self.store.settle()
        self.assertEqual(list(self.store.series), ["g;x=1;y=2"])
        self.assertEqual(self.store.series["g;x=1;y=2"].gauge, 6.0)
        # A known token after a new one that ended its run, in one packet.
        self.send(b"g:2|g|#x:1,y:2")
        self.send(b"c:1|c|#x:1\ng:7|g|#y:2,x:1\ng:+2|g|#x:1,y:2")
        self.store.settle()
        self.assertEqual(self.store.series["g;x=1;y=2"].gauge, 9.0)
        self.assertEqual(self.store.series["g;x=1;y=2"].open[0].popitem()[1].updates, 6.0)

    def test_a_new_bucket_folds_the_runs(self):
        """When now leaves the finest bucket, the runs are folded there and their tokens forgotten."""
        self.send(b"a:1|c")
        self.core.clock.advance(STEP)
        self.send(b"a:2|c")
        series = self.store.series["a"]
        self.store.settle()
        self.assertEqual(bucket_rows(self.store, series, 0, 0, 2 ** 32),
                         {T0 // STEP: (1.0,), T0 // STEP + 1: (2.0,)})

    def test_a_new_bucket_finds_the_earlier_run_without_parsing(self):
        """A token seen in the previous bucket starts its series' run in the new one without the line being parsed again; a deleted series' token is parsed afresh."""
        from server.core import ingest

        self.send(b"t:1.5|ms|#a:b\nc:1|c|@0.5")
        self.core.clock.advance(STEP)
        parsed = []
        real = ingest.parse_metric

        def counting(line, limits):
            parsed.append(line)
            return real(line, limits)

        self.patch(ingest, "parse_metric", counting)
        self.send(b"t:2.5|ms|#a:b\nc:1|c|@0.5")
        self.assertEqual(parsed, [])
        self.assertEqual(sorted(self.store.fast), [("c", "|c|@0.5"), ("t", "|ms|#a:b")])
        self.core.delete(["c"])
        self.core.clock.advance(STEP)
        self.send(b"t:3.5|ms|#a:b\nc:1|c|@0.5")
        self.assertEqual(parsed, ["c:1|c|@0.5"])
        self.store.settle()
        self.assertEqual(self.store.series["c"].value, 2.0)
        self.assertEqual(self.store.series["t;a=b"].value, 3.5)

    def test_another_way_folds_the_run_first(self):
        """A point by another way (a TCP tuple) comes after the run's points: a gauge change moves the last of them."""
        self.send(b"g:5|g\ng:7|g")
        self.core.submit([Sample("g", (), GAUGE, 1.0, None, 1.0, True)], "tcp")
        self.assertNotIn(("g", "|g"), self.store.fast)
        self.store.settle()
        self.assertEqual(self.store.series["g"].gauge, 8.0)

    def test_refused_lines_are_not_remembered(self):
        """A line the full parser or the server's state refuses is refused every time, counted, and never appended."""
        limited = make_core(self, "--max-name-length", "5", "--max-series", "1")
        proto = StatsdProtocol(limited, limited.settings.limits, limited.clock)
        for _ in range(3):
            proto.datagramReceived(b"ok:1|c\nlonger.name:1|c\nr:1|c|@0\nok:1|ms\nnew:1|c", PEER)
        self.assertEqual(list(limited.store.fast), [("ok", "|c")])
        self.assertEqual(limited.counters["simplestats.udp.points"], 3)
        self.assertEqual(limited.counters["simplestats.udp.bad"], 12)
        self.assertEqual(limited.counters["simplestats.series.refused"], 3)

    def test_runs_are_folded_as_they_fill(self):
        """A run is folded once it holds FOLD_AT values, by either way in, so a bucket's end never folds a whole bucket at once."""
        from server.core.store import FOLD_AT

        for n in range(3 * FOLD_AT + 5):
            self.send(b"t:%d.5|ms\nc:1|c" % (n,))
        self.core.submit([Sample("tcp", (), TIMER, 1.0)] * (FOLD_AT + 3), "tcp")
        self.assertEqual(sorted(len(s.run) for s in self.store.running), [3, 5, 5])
        agg, = self.store.series["t"].open[0].values()
        self.assertEqual(agg.count, 3 * FOLD_AT)
        self.store.settle()
        self.assertEqual(agg.count, 3 * FOLD_AT + 5)

    def test_only_ascii_digits(self):
        """A value in other digits (Arabic-Indic three) is refused as the full parser refuses it, even after its name, type and tags were seen."""
        self.send(b"a:1|c")
        self.send("a:\u0663|c".encode())
        self.assertEqual(self.core.counters["simplestats.udp.bad"], 1)
        self.store.settle()
        self.assertEqual(self.store.series["a"].value, 1.0)

    def test_delete_drops_the_run(self):
        """A deleted series' run and token go with it; the next line starts a new series."""
        self.send(b"a:1|c")
        self.core.delete(["a"])
        self.assertEqual((self.store.fast, self.store.running), ({}, set()))
        self.send(b"a:2|c")
        self.store.settle()
        self.assertEqual(self.store.series["a"].value, 2.0)

    def test_tick_folds_only_closing_runs(self):
        """A tick folds the runs of the buckets it closes; the run of the current bucket keeps its token."""
        self.send(b"a:1|c")
        self.core.clock.advance(STEP)
        self.send(b"b:1|c")
        self.core.store.settle()
        self.core.clock.advance(STEP)
        self.send(b"b:1|c")
        self.store.tick(self.core.clock.seconds())
        self.assertEqual(list(self.store.fast), [("b", "|c")])
        self.assertEqual(len(self.store.fast["b", "|c"]), 1)


class RecordingObserver:
    def __init__(self, store):
        self.store = store
        self.changing = []
        self.closed = []

    def series_changing(self, series):
        agg = series.open[0].get(max(series.open[0]), None) if series.open[0] else None
        self.changing.append((series.key, None if agg is None else agg.row()[0]))

    def bucket_closed(self, tier, series, start, agg, row):
        self.closed.append((tier, series.key, start, row))


class ObserverTests(SynchronousTestCase):

    def test_series_changing_before_each_fold(self):
        """An observer hears of a series before its run is folded, while the bucket still holds the old count."""
        core = make_core(self)
        observer = RecordingObserver(core.store)
        core.store.observe(observer)
        proto = StatsdProtocol(core, core.settings.limits, core.clock)
        proto.datagramReceived(b"a:1|c", PEER)
        proto.datagramReceived(b"a:2|c", PEER)
        self.assertEqual(observer.changing, [("a", None)])  # the bucket opened
        core.store.settle()
        self.assertEqual(observer.changing, [("a", None), ("a", 0.0)])
        proto.datagramReceived(b"a:4|c", PEER)
        core.store.settle()
        self.assertEqual(observer.changing[-1], ("a", 3.0))
        core.store.unobserve(observer)
        proto.datagramReceived(b"a:4|c", PEER)
        core.store.settle()
        self.assertEqual(len(observer.changing), 3)

    def test_bucket_closed_in_every_tier(self):
        """Each closed bucket is told once per tier, with its row by name."""
        core = make_core(self)
        observer = RecordingObserver(core.store)
        core.store.observe(observer)
        core.submit([Sample("t", (), TIMER, 2.0), Sample("t", (), TIMER, 4.0),
                     Sample("c", (), COUNTER, 3.0)], "test")
        core.clock.advance(3600 + 10)
        core.store.tick(core.clock.seconds())
        tiers = sorted((tier, key) for tier, key, _, _ in observer.closed)
        self.assertEqual(tiers, [(0, "c"), (0, "t"), (1, "c"), (1, "t"), (2, "c"), (2, "t")])
        rows = {(tier, key): row for tier, key, _, row in observer.closed}
        self.assertEqual((rows[0, "t"].count, rows[0, "t"].sum, rows[0, "t"].max), (2.0, 6.0, 4.0))
        self.assertEqual(rows[2, "c"].count, 3.0)
        self.assertEqual({start for tier, _, start, _ in observer.closed if tier == 0}, {T0})
