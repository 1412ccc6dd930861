"""
Streamed imports: the reader in bounded reads, the two passes of
L{server.web.imports}, and a journal that replays an import whole or not
at all.
"""

import csv
import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.web import transfer
from server.core.ingest import ImportSeries
from server.durability.journal import journal_files, read_journal
from server.core.model import COUNTER, GAUGE, Sample
from server.receivers.parse_tuple import parse_line, parse_tuple
from server.durability.snapshot import Snapshotter
from server.test.support import T0, make_core, synchronous
from server.test.test_persistence import Server
from server.web.api import WebAPI

BASE = "http://127.0.0.1:8080"

names = st.text("abcxyz.", min_size=1, max_size=8).filter(lambda n: n.strip("."))
values = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False),
                   st.sampled_from(["3c", "1.5ms", "7g", "-2g", "+1g", "4h"]),
                   st.just({"type": "ms", "count": 2, "sum": 3.0, "min": 1.0, "max": 2.0}))
rows_of = st.lists(st.tuples(names, st.one_of(st.none(), st.integers(T0 - 3600, T0)), values,
                             st.one_of(st.none(), st.dictionaries(st.sampled_from(["host", "dc"]),
                                                                  st.text("ab12", min_size=1, max_size=3),
                                                                  min_size=1, max_size=2))),
                   min_size=1, max_size=30)


def as_rows(drawn):
    return [[n, t, v] + ([tags] if tags else []) for n, t, v, tags in drawn]


def encode(rows, fmt):
    if fmt == "json":
        return b"[\n" + b",\n".join(json.dumps(r).encode() for r in rows) + b"\n]\n"
    if fmt == "ndjson":
        return b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(transfer.CSV_HEADER)
    for name, ts, value, *tags in rows:
        writer.writerow([name, "" if ts is None else ts,
                         json.dumps(value) if isinstance(value, dict) else value,
                         ";".join("%s=%s" % kv for kv in tags[0].items()) if tags else ""])
    return out.getvalue().encode()


class ReaderTests(SynchronousTestCase):
    def setUp(self):
        self.limits = make_core(self).settings.limits

    @settings(max_examples=60, deadline=None)
    @given(rows_of, st.sampled_from(["json", "ndjson", "csv"]), st.sampled_from(["auto", None]),
           st.integers(1, 64))
    def test_streamed_equals_whole(self, drawn, fmt, asked, read_bytes):
        """Any read size gives the rows of one read of the whole file, which are the rows parse_tuple makes of each."""
        rows = as_rows(drawn)
        body = encode(rows, fmt)
        whole = transfer.parse_import(body, asked or fmt, self.limits, read_bytes=len(body) + 1)
        streamed = transfer.parse_import(body, asked or fmt, self.limits, read_bytes=read_bytes)
        self.assertEqual(streamed, whole)
        items, numbers, bad, bad_count, detected = whole
        self.assertEqual((bad, bad_count, detected), ([], 0, fmt))
        self.assertEqual(items, [parse_tuple(r, self.limits) for r in rows])
        self.assertEqual(numbers, list(range(2 if fmt == "csv" else 1, len(rows) + 1 + (fmt == "csv")))
                         if fmt != "json" else list(range(1, len(rows) + 1)))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.one_of(st.binary(max_size=30), st.sampled_from(
        [b'["a", null, 1]', b'[["a", null, 1], ["b", null, "2c"]]', b"[", b"]", b",", b'"x"',
         b"\xef\xbb\xbf", b"\xff", b"\r", b"[" * 3000])), max_size=12),
        st.sampled_from(["auto", "json", "ndjson", "csv"]), st.integers(1, 40))
    def test_streamed_equals_whole_for_any_bytes(self, parts, fmt, read_bytes):
        """On any bytes, bad ones too, a small read size changes nothing and nothing raises."""
        body = b"\n".join(parts)
        whole = transfer.parse_import(body, fmt, self.limits, read_bytes=len(body) + 1)
        self.assertEqual(transfer.parse_import(body, fmt, self.limits, read_bytes=read_bytes), whole)

    def test_ndjson_batch_lines_and_bad_rows_keep_their_numbers(self):
        """An ndjson batch line gives one item per tuple, all with its row number; bad rows name theirs."""
        body = b'["a", null, 1]\n\n[["b", null, 2], ["c", null, 3]]\nnope\n["d", null, 4]'
        items, numbers, bad, bad_count, _ = transfer.parse_import(body, "ndjson", self.limits,
                                                                  read_bytes=5)
        self.assertEqual([i.name for i in items], ["a", "b", "c", "d"])
        self.assertEqual(numbers, [1, 3, 3, 5])
        self.assertEqual([r for r, _ in bad], [4])
        self.assertEqual(bad_count, 1)
        self.assertEqual(items[1:3], parse_line(b'[["b", null, 2], ["c", null, 3]]',
                                                self.limits).items)

    def test_deep_nesting_is_a_bad_row(self):
        """Deep nesting in a JSON file, an ndjson line or a CSV cell is a bad row naming it, not an exception."""
        deep = b"[" * 100000
        cases = {
            "json": b'[["a", null, 1],\n' + deep,
            "ndjson": b'["a", null, 1]\n' + deep + b"\n",
            "csv": b"name,timestamp,value\na,," + deep + b"\n",
        }
        for fmt, body in cases.items():
            _, _, bad, _, _ = transfer.parse_import(body, fmt, self.limits, read_bytes=4096)
            self.assertTrue(bad, fmt)
            self.assertIn("nested too deeply", bad[0][1], fmt)
            self.assertEqual(bad[0][0], 2, fmt)

    def test_overlong_row(self):
        """An ndjson row past MAX_ROW_BYTES is one bad row and the rows after it are read."""
        self.patch(transfer, "MAX_ROW_BYTES", 100)
        body = b'["a", null, 1]\n["' + b"x" * 300 + b'", null, 1]\n["b", null, 2]\n'
        items, numbers, bad, _, _ = transfer.parse_import(body, "ndjson", self.limits, read_bytes=16)
        self.assertEqual(numbers, [1, 3])
        self.assertEqual(bad, [(2, "row is longer than 100 bytes")])


class ImportAPITests(SynchronousTestCase):
    """
    POST /api/import through StubTreq; the import's slices end when the
    clock is advanced.
    """

    def setUp(self):
        self.core = make_core(self)
        self.clock = self.core.clock
        self.api = WebAPI(self.core, self.core.settings, self.clock)
        self.api.imports.read_bytes = 256
        self.stub = StubTreq(self.api.app.resource())

    def slow(self):
        """
        Make every slice end after a few batches (4 ms of parsing each).
        """
        ticks = iter(range(10 ** 9))
        self.api.imports.timer = lambda: next(ticks) * 0.004

    def post(self, body, fmt="auto"):
        return self.stub.post(BASE + "/api/import?format=" + fmt, data=body)

    def answer(self, d, turns=100000):
        for _ in range(turns):
            self.stub.flush()
            if d.called and not isinstance(d.result, defer.Deferred):
                break
            self.clock.advance(0)
        response = self.successResultOf(d)
        return response.code, json.loads(self.successResultOf(self.stub.content(response)))

    def rows(self, count, name="imp"):
        return b"".join(b'["%s.%d", %d, "%dc"]\n' % (name.encode(), i % 7, T0 - 100 - i, 1 + i % 3)
                        for i in range(count))

    def test_bad_row_at_the_very_end_applies_nothing(self):
        """A bad last row of a file read in many pieces: 400 naming it, no series, nothing journaled."""
        for fmt, body in (("ndjson", self.rows(2000) + b'["imp.0", null, "1g"]\n'),
                          ("json", b"[" + self.rows(2000).replace(b"\n", b",\n") + b'["x", null, "zz"]]')):
            written = self.core.journal.written + self.core.journal.pending_bytes
            code, body = self.answer(self.post(body, fmt))
            self.assertEqual(code, 400, body)
            self.assertEqual(body["bad_row_count"], 1)
            self.assertEqual(body["bad_rows"][0]["row"], 2001)
            self.assertEqual(self.core.store.series, {})
            self.assertEqual(self.core.journal.written + self.core.journal.pending_bytes, written)
            self.assertEqual(self.core.counters["simplestats.import.points"], 0)

    def test_deep_nesting_is_400(self):
        """JSON, ndjson and a CSV cell nested 100 000 deep: 400 saying so, never a 500."""
        deep = b"[" * 100000
        for fmt, body in (("json", b'[["a", null, 1],\n' + deep),
                          ("ndjson", b'["a", null, 1]\n' + deep + b"\n"),
                          ("csv", b"name,timestamp,value\na,,1\nb,," + deep + b"\n"),
                          ("auto", deep)):
            code, answer = self.answer(self.post(body, fmt))
            self.assertEqual(code, 400, (fmt, answer))
            self.assertIn("nested too deeply", answer["bad_rows"][0]["error"], fmt)
        self.assertEqual(self.core.store.series, {})

    def test_import_is_checked_and_applied_in_slices(self):
        """A file of many reads is checked, then applied, over many reactor turns, live points taken between them."""
        self.slow()
        turns = []
        schedule = self.clock.callLater

        def callLater(delay, f, *args, **kwargs):
            # Each slice ends by asking for the next reactor turn.
            job = self.api.imports.current
            turns.append(job.phase)
            if turns.count("applying") == 3:
                self.assertEqual(self.core.submit([Sample("live", (), COUNTER, 1.0)], "test"), [])
            return schedule(delay, f, *args, **kwargs)

        self.clock.callLater = callLater
        d = self.post(self.rows(3000))
        self.stub.flush()
        self.assertNoResult(d)
        health = self.answer(self.stub.get(BASE + "/api/health"), turns=1)[1]
        self.assertEqual(health["imports"][0]["phase"], "checking")
        self.assertEqual(health["imports"][0]["total_bytes"], len(self.rows(3000)))
        code, body = self.answer(d)
        self.assertEqual((code, body), (200, {"imported": 3000, "series": 7, "format": "ndjson"}))
        self.assertGreater(turns.count("checking"), 3)
        self.assertGreater(turns.count("applying"), 3)
        self.assertEqual(turns, sorted(turns, key=["checking", "applying"].index))
        self.assertIn("live", self.core.store.series)
        self.assertEqual(self.core.counters["simplestats.import.points"], 3000)
        self.assertEqual(self.api.imports.status(), [])

    def test_second_import_is_409_while_one_runs(self):
        """While a file is checked a second import is 409 and /api/health shows the first."""
        self.slow()
        first = self.post(self.rows(3000))
        self.stub.flush()
        code, body = self.answer(self.post(self.rows(1)), turns=1)
        self.assertEqual(code, 409)
        self.assertIn("already under way", body["error"])
        health = self.answer(self.stub.get(BASE + "/api/health"), turns=1)[1]
        self.assertEqual([j["phase"] for j in health["imports"]], ["checking"])
        code, body = self.answer(first)
        self.assertEqual((code, body["imported"]), (200, 3000))

    def test_shutdown_abandons_an_import_being_checked(self):
        """Shutting down while a file is checked: 503, nothing applied, and later imports are refused."""
        self.slow()
        d = self.post(self.rows(3000))
        self.stub.flush()
        self.api.imports.stop()
        code, body = self.answer(d)
        self.assertEqual(code, 503)
        self.assertIn("nothing was imported", body["error"])
        self.assertEqual(self.core.store.series, {})
        code, body = self.answer(self.post(self.rows(5)))
        self.assertEqual(code, 503)

    def test_client_gone_while_checking_abandons(self):
        """A client that goes away while its file is checked: nothing applied, the next import runs."""
        self.slow()
        d = self.api.imports.start(io.BytesIO(self.rows(3000)), 100, "ndjson")
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.clock.advance(0)
        self.assertEqual(self.core.store.series, {})
        self.assertEqual(self.api.imports.status(), [])
        code, body = self.answer(self.post(self.rows(5)))
        self.assertEqual((code, body["imported"]), (200, 5))

    def test_live_point_cannot_retype_a_reserved_series(self):
        """During the apply, a live point of another type for one of the import's new series is refused."""
        seen = ImportSeries(imp="c")
        seen.new = 1
        self.assertEqual(self.core.begin_import(seen), [])
        refused = self.core.submit([Sample("imp", (), GAUGE, 1.0)], "test")
        self.assertEqual(len(refused), 1)
        self.assertIn("is a counter", refused[0][1])
        self.core.end_import("x", 0, committed=False)
        self.assertEqual(self.core.submit([Sample("imp", (), GAUGE, 1.0)], "test"), [])

    def test_store_changed_during_the_check(self):
        """A series given another type while the file was checked: 400, nothing applied."""
        self.slow()
        d = self.post(self.rows(3000))
        self.stub.flush()
        # The check has seen imp.0 while the store had no such series.
        self.assertEqual(self.core.submit([Sample("imp.0", (), GAUGE, 1.0)], "test"), [])
        code, body = self.answer(d)
        self.assertEqual(code, 400)
        self.assertIn("is a gauge", body["bad_rows"][0]["error"])
        self.assertNotIn("imp.1", self.core.store.series)


class ImportJournalTests(SynchronousTestCase):
    """
    An import's journal records count only once its commit marker is
    written: a crash mid-apply replays none of it.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.server = Server(self, self.clock)

    def stage(self, names):
        items = [Sample(n, (), COUNTER, 2.0, T0 - 60) for n in names]
        return self.server.core.import_entries(items)

    def half_import(self):
        core = self.server.core
        seen = ImportSeries({"i.a": COUNTER, "i.b": COUNTER})
        self.assertEqual(core.begin_import(seen), [])
        core.apply_import_entries("imp1", self.stage(["i.a"]))
        # A live point between two slices of the import.
        self.server.submit(self, [Sample("live", (), COUNTER, 1.0)])
        core.apply_import_entries("imp1", self.stage(["i.b"]))

    def test_crash_before_the_commit_replays_none_of_it(self):
        """Journal with the import's records and no commit marker: the restart has the live point only."""
        self.half_import()
        recovered = self.server.recovered(self)
        self.assertEqual(sorted(recovered.store.series), ["live"])
        self.assertEqual(recovered.summary["imports_dropped"], ["imp1"])

    def test_committed_import_replays_whole(self):
        """With the commit marker the restart has every point of the import and the live one."""
        self.half_import()
        self.server.core.end_import("imp1", 2)
        recovered = self.server.recovered(self)
        self.assertEqual(sorted(recovered.store.series), ["i.a", "i.b", "live"])
        self.assertEqual(recovered.summary["imports_dropped"], [])
        self.assertEqual(recovered.summary["records_replayed"], 3)
        records = [r for _, path in journal_files(self.server.directory)
                   for r in read_journal(path)[0]]
        self.assertEqual(records[-1], [["ic", "imp1", 2]])

    def test_snapshot_waits_for_the_import(self):
        """A snapshot begun while an import is applied rotates the journal only after its release."""
        snapshotter = Snapshotter(self.server.store, self.server.journal, self.server.directory,
                                  self.clock, synchronous)
        snapshotter.hold()
        seq = self.server.journal.seq
        done = snapshotter.take()
        self.clock.advance(1)
        self.assertEqual(self.server.journal.seq, seq)
        self.assertNoResult(done)
        snapshotter.release()
        for _ in range(100):
            self.clock.advance(0.05)
        self.successResultOf(done)
        self.assertEqual(self.server.journal.seq, seq + 1)
