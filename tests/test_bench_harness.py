"""
The benchmark harness (bench/) kept from rotting: its parsers and its loss
counting, run on a tiny load against the ceiling server in a subprocess on
free loopback ports.  No npm, no carbon, no reactor in this process.
"""

import collections
import json
import os
import re
import signal
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench import (counting, loadgen, procstat, report, search, shapes,  # noqa: E402
                   simplestats_inprocess, systems, tcpbench)
from bench.udpbench import SHAPES, Shape, Stepper  # noqa: E402


@pytest.fixture
def ceiling(tmp_path):
    """
    A started ceiling server (unpinned), stopped after the test.
    """
    server = systems.Ceiling(str(tmp_path / "ceiling"), None, sys.executable)
    server.start()
    yield server
    server.stop()


# -- parsers -------------------------------------------------------------------

STATSD_DUMPS = [
    ("{\n  'statsd.bad_lines_seen': 0,\n  'statsd.packets_received': 335,\n"
     "  'statsd.metrics_received': 1340,\n  'a.b.c': 335\n}\nEND\n\n",
     {"statsd.bad_lines_seen": 0, "statsd.packets_received": 335,
      "statsd.metrics_received": 1340, "a.b.c": 335}),
    ("{ 'statsd.metrics_received': 2, x: 1.5, 'q\\'s': 3 }\nEND\n\n",
     {"statsd.metrics_received": 2, "x": 1.5, "q's": 3}),
    ("{}\nEND\n\n", {}),
]


@pytest.mark.parametrize("text, expected", STATSD_DUMPS)
def test_parse_statsd_dump(text, expected):
    """statsd's util.inspect counters dump parses, one entry a line or several."""
    assert counting.parse_statsd_dump(text) == expected


@pytest.mark.parametrize("text", ["ERROR\n", "", "counters\nEND\n"])
def test_parse_statsd_dump_refuses_other_answers(text):
    """An answer that is not a dump is an error, not an empty count."""
    with pytest.raises(ValueError):
        counting.parse_statsd_dump(text)


def test_loss_fraction_and_criterion():
    """Loss is the uncounted fraction; loss-free means under 0.1 %."""
    assert counting.loss_fraction(1000, 1000) == 0.0
    assert counting.loss_fraction(1000, 990) == pytest.approx(0.01)
    assert counting.loss_fraction(1000, 1010) == 0.0
    assert counting.is_loss_free(100000, 99901)
    assert not counting.is_loss_free(100000, 99900)
    assert not counting.is_loss_free(0, 0)


def test_sum_prefixed_and_series_total():
    """Per-step names are summed by prefix; null points count as nothing."""
    assert counting.sum_prefixed({"bench.s1.a": 2, "bench.s1.b": 3, "bench.s10.a": 7},
                                 "bench.s1.") == 5
    answer = {"fields": {"count": [[0, 5.0], [5, None], [10, 2.0]]}}
    assert counting.series_total(answer, "count") == 7.0
    assert counting.series_total(answer, "updates") == 0


def test_proc_parsers():
    """/proc parsers: a command name with spaces and parentheses, kB fields, the CPU model."""
    stat = "42 (odd (name) x) S 1 42 42 0 -1 4194304 100 0 0 0 250 70 0 0 20 0 1 0 5 0 0"
    assert procstat.parse_stat_cpu_ticks(stat) == 320
    status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"
    assert procstat.parse_status_kib(status, "VmHWM") == 2048 * 1024
    assert procstat.parse_status_kib(status, "VmSwap") is None
    assert procstat.parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC\n") == "AMD EPYC"
    busy, total = procstat.parse_core_busy(
        "cpu  1 2 3 4 5 6 7 8\ncpu1 10 0 5 100 3 1 1 0 0 0\n", 1)
    assert (busy, total) == (17, 120)


def test_pinning():
    """Load and server get different cores when there are two; nothing is pinned on one."""
    assert procstat.pinning([0, 1, 2]) == (0, 1)
    assert procstat.pinning([3]) == (None, None)
    assert procstat.pinned(["x"], None) == ["x"]
    assert procstat.pinned(["x"], 1) == ["taskset", "-c", "1", "x"]


# -- load shapes ------------------------------------------------------------------

def test_best_case_packets_and_sent_accounting():
    """Best-case packets hold the asked number of lines; the kinds sent are known from the packet count."""
    packets, kinds = shapes.build_packets("s1", 20, "mix")
    assert all(p.count(b"\n") == 19 for p in packets)
    assert all(sum(k.values()) == 20 for k in kinds)
    lines = b"\n".join(packets).split(b"\n")
    assert len({line.split(b":")[0] for line in lines}) == 4 * shapes.NAMES_PER_TYPE
    sent = shapes.lines_sent(kinds, len(packets) * 2 + 3)
    assert sum(sent.values()) == 20 * (len(packets) * 2 + 3)
    assert set(sent) == {"c", "ms", "g", "s"}
    single, single_kinds = shapes.build_packets("s1", 1, "counters")
    assert single[0] == b"bench.s1.app.requests.c0:1|c"
    assert shapes.lines_sent(single_kinds, 5) == {"c": 5}


@pytest.fixture(scope="module")
def real_20():
    """
    One step's pool of the real shape at 20 per packet, and its lines.
    """
    packets, kinds = shapes.build_packets("r1", 20, "real")
    lines = b"\n".join(packets).decode("ascii").split("\n")
    return packets, kinds, lines


def _line_kind(line):
    return line.split("|")[1]


def test_real_pool_is_large_and_distinct(real_20):
    """The real pool holds 20k distinct packets of 20 lines, and values almost never repeat."""
    packets, kinds, lines = real_20
    assert len(packets) == 20000
    assert len(set(packets)) == len(packets)
    assert all(p.count(b"\n") == 19 for p in packets)
    assert len(lines) == 400000
    assert len(set(lines)) > 0.97 * len(lines)


def test_real_names(real_20):
    """1000 dotted names under the step's prefix, each with one type, every type present."""
    _, _, lines = real_20
    types = {}
    for line in lines:
        types.setdefault(line.split(":", 1)[0], set()).add(_line_kind(line))
    assert len(types) == shapes.REAL_NAMES == 1000
    assert all(re.fullmatch(r"bench\.r1\.api\.[a-z]+_[a-z]+\.[a-z_]+", n) for n in types)
    assert all(len(kinds) == 1 for kinds in types.values())
    assert collections.Counter(k for kinds in types.values() for k in kinds) == {
        "c": 400, "ms": 300, "g": 200, "s": 100}
    other = {line.split(b":", 1)[0].decode() for line, _ in shapes.build_real_lines("r2", 2000)}
    assert not other & set(types), "two steps share names"


def test_real_line_properties(real_20):
    """Timers %0.6f, a third tagged; a fifth of counters at @0.1; float gauges; random set members."""
    _, _, lines = real_20
    by_kind = collections.defaultdict(list)
    for line in lines:
        by_kind[_line_kind(line)].append(line)
    assert {k: len(v) for k, v in by_kind.items()} == {
        "c": 160000, "ms": 120000, "g": 80000, "s": 40000}
    timers = by_kind["ms"]
    assert all(re.fullmatch(r"[a-z0-9_.]+:\d+\.\d{6}\|ms(\|#route:/[a-z0-9/]+,status:\d{3})?", t)
               for t in timers)
    tagged = [t for t in timers if "|#" in t]
    assert len(tagged) * 3 == len(timers)
    # A name's tags are fixed, and only a few values occur.
    tags = {}
    for t in tagged:
        tags.setdefault(t.split(":", 1)[0], set()).add(t.split("|#")[1])
    assert all(len(v) == 1 for v in tags.values())
    assert 1 < len({v for vs in tags.values() for v in vs}) <= 12
    counters = by_kind["c"]
    assert all(re.fullmatch(r"[a-z0-9_.]+:\d+\|c(\|@0\.1)?", c) for c in counters)
    assert sum(1 for c in counters if c.endswith("|@0.1")) * 5 == len(counters)
    gauges = [g.split(":", 1)[1].split("|")[0] for g in by_kind["g"]]
    assert all(float(v) >= 0 for v in gauges)
    assert sum(1 for v in gauges if "." in v) > 0.9 * len(gauges)
    # Both %g (six significant digits) and repr (full precision) are there.
    assert any(len(v.replace(".", "")) > 10 for v in gauges)
    assert any(len(v.replace(".", "")) <= 6 for v in gauges)
    members = [s.split(":", 1)[1].split("|")[0] for s in by_kind["s"]]
    assert all(re.fullmatch(r"u\d+", m) for m in members)
    assert len(set(members)) > 0.9 * len(members)


def test_real_lines_counted_by_kind(real_20):
    """The kinds sent, from the packet count, match the lines of the packets sent."""
    packets, kinds, _ = real_20
    sent = len(packets) + 7
    expected = collections.Counter()
    for i in range(sent):
        for line in packets[i % len(packets)].decode().split("\n"):
            expected[_line_kind(line)] += 1
    assert shapes.lines_sent(kinds, sent) == dict(expected)


def test_real_pool_at_one_per_packet():
    """At 1 per packet the real pool is 400k packets, almost all distinct."""
    packets, kinds = shapes.build_packets("r1", 1, "real")
    assert len(packets) == shapes.REAL_POOL_LINES
    assert len(set(packets)) > 0.95 * len(packets)
    assert all(b"\n" not in p for p in packets[:1000])
    assert shapes.lines_sent(kinds, 1000) == shapes.lines_sent(kinds[:1000], 1000)


def test_shapes_of_the_harness():
    """Every kind comes at 1 and 20 per packet; only the real ones are judged."""
    assert {s.key for s in SHAPES} == {"real_1", "real_20", "counters_1", "counters_20",
                                       "mix_1", "mix_20"}
    assert [s.key for s in SHAPES if not s.best_case] == ["real_1", "real_20"]
    with pytest.raises(ValueError):
        Shape("nonsense", 1)
    with pytest.raises(ValueError):
        shapes.build_packets("x", 1, "nonsense")


def test_paced_send_holds_the_rate():
    """The pacer sends the scheduled count over the duration, on a fake clock."""
    now = [0.0]
    sent = []

    def clock():
        now[0] += 0.00001
        return now[0]

    def sleep(seconds):
        now[0] += seconds

    count, errors, elapsed = loadgen.paced_send(sent.append, [b"a", b"b"], 10000, 0.5,
                                                clock=clock, sleep=sleep)
    assert count == len(sent) == 5000
    assert errors == 0
    assert 0.45 < elapsed <= 0.51
    assert sent[:4] == [b"a", b"b", b"a", b"b"]


def test_tcp_payloads():
    """Carbon gets plaintext lines; SimpleStats gets --quiet then JSON batches."""
    carbon = shapes.tcp_payload("carbon", 2, 3, 1000).decode().splitlines()
    assert carbon[:2] == ["bench.tcp.m00000 0.0 1000", "bench.tcp.m00001 0.0 1000"]
    assert len(carbon) == 6
    tuples = shapes.tcp_payload("tuples", 2, 3, 1000, batch=4).decode().splitlines()
    assert tuples[0] == "--quiet"
    batches = [json.loads(line) for line in tuples[1:]]
    assert [len(b) for b in batches] == [4, 2]
    assert batches[0][0] == ["bench.tcp.m00000", 1000, 0.0]


def test_tcp_real_payload():
    """Real tuples: typed varying values, tags on some, time order; carbon gets the same numbers."""
    metrics, points = 20, 30
    described = shapes.tcp_metrics(metrics, points, real=True)
    carbon = [line.split() for line in
              shapes.tcp_payload("carbon", metrics, points, 5000, real=True).decode().splitlines()]
    lines = shapes.tcp_payload("tuples", metrics, points, 5000, batch=7,
                               real=True).decode().splitlines()
    assert lines[0] == "--quiet"
    rows = [row for line in lines[1:] for row in json.loads(line)]
    assert len(rows) == len(carbon) == metrics * points
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert [r[1] for r in rows] == [int(c[2]) for c in carbon]
    assert {r[1] for r in rows} == set(range(5000, 5000 + points))
    suffix = {"c": "c", "ms": "ms", "g": "g"}
    values = collections.defaultdict(list)
    for i, (row, line) in enumerate(zip(rows, carbon)):
        m = described[i % metrics]
        assert row[0] == m.name and line[0] == m.carbon_name
        assert row[2] == line[1] + suffix[m.kind]
        assert (row[3] if len(row) == 4 else None) == m.tags
        values[m.carbon_name].append(float(line[1]))
    assert {m.kind for m in described} == {"c", "ms", "g"}
    assert 0 < sum(1 for m in described if m.tags) < metrics
    assert len({m.carbon_name for m in described}) == metrics
    assert len({(m.name, tuple(sorted((m.tags or {}).items()))) for m in described}) == metrics
    for m in described:
        numbers = values[m.carbon_name]
        assert len(set(numbers)) > points / 3, "numbers do not vary"
        if m.kind == "c":
            assert sum(numbers) == m.total and m.field == "count"
        else:
            assert m.total == points and m.field == ("updates" if m.kind == "g" else "count")


def test_wait_stored_reads_each_metric_until_its_total():
    """Storage is polled until every metric reads what it should (a counter: its sum)."""
    described = shapes.tcp_metrics(10, 4, real=True)

    class Storage:
        ordered = False
        rounds = 0

        def wanted(self, metric, points):
            return metric.total

        def stored(self, metric, first_ts, points):
            return metric.total if self.rounds >= 2 else 0

    storage = Storage()

    def sleep(seconds):
        storage.rounds += 1

    complete, stored = tcpbench.wait_stored(storage, described, 0, 4, 60, sleep=sleep)
    assert complete and stored == sum(m.total for m in described)
    assert storage.rounds == 2


# -- the search --------------------------------------------------------------------

def fake_server(capacity, generator_max=1e9):
    """
    A trial whose server loses nothing up to C{capacity} metrics/s.
    """
    def trial(rate):
        achieved = min(rate, generator_max)
        counted = min(achieved, capacity * 1.05)
        return {"loss_free": achieved <= capacity, "achieved_rate": achieved,
                "loss": 1 - counted / achieved,
                "generator_limited": achieved < 0.98 * rate,
                "counted_rate": counted, "offered_rate": rate}
    return trial


def test_search_converges_on_the_capacity():
    """Bisection ends within the precision under the true loss-free rate."""
    found = search.find_loss_free_rate(fake_server(50000), 4e6, max_steps=8)
    assert found["bound"] == "server"
    assert 50000 / 1.06 <= found["rate"] <= 50000
    assert found["steps"][0]["role"] == "probe"


def test_search_confirms_the_best_rate():
    """A rate that was loss-free only once is not reported; the next one that holds is."""
    honest = fake_server(50000)
    seen = {}

    def flaky(rate):
        # Above 45k the server is loss-free only the first time it is tried.
        result = honest(rate)
        if rate > 45000 and seen.get(rate):
            result["loss_free"] = False
        seen[rate] = True
        return result

    found = search.find_loss_free_rate(flaky, 4e6, max_steps=8)
    assert [s["role"] for s in found["steps"]].count("confirm") >= 1
    assert found["rate"] <= 45000
    steady = search.find_loss_free_rate(honest, 4e6, max_steps=8)
    assert steady["confirmed"] and steady["steps"][-1]["role"] == "confirm"


def test_search_reports_a_generator_bound_server():
    """A server faster than the generator is reported as generator-bound."""
    found = search.find_loss_free_rate(fake_server(1e7, generator_max=2e5), 2e5, max_steps=5)
    assert found["bound"] == "generator"
    assert found["rate"] == 2e5
    assert len(found["steps"]) == 1


def test_search_with_no_loss_free_step():
    """No loss-free step within the budget gives rate 0 and says so."""
    found = search.find_loss_free_rate(fake_server(10), 1e6, max_steps=2)
    assert found["rate"] == 0.0
    assert found["bound"] == "not found"


# -- against the ceiling server -------------------------------------------------------

@pytest.mark.parametrize("shape", [Shape("counters", 1), Shape("mix", 20), Shape("real", 20)])
def test_ceiling_counts_a_tiny_load(ceiling, shape):
    """Every line of a slow paced step is counted back: no loss, CPU measured."""
    stepper = Stepper(ceiling, shape, 0.5, None, "t")
    result = stepper.step(2000.0 * shape.per_packet)
    assert result["countable_sent"] == result["metrics_sent"] > 0
    assert result["counted"] == result["countable_sent"]
    assert result["loss"] == 0.0 and result["loss_free"]
    assert result["cpu_seconds"] >= 0
    assert result["foreign_cpu_seconds"] is None


def test_dropped_packets_are_counted_as_loss(ceiling):
    """Packets dropped while the server is stopped show up as loss."""
    packets, kinds = shapes.build_packets("drop", 1, "counters")
    step = systems.Step("drop", 1, "counters")
    before = ceiling.count(step)
    os.kill(ceiling.pid, signal.SIGSTOP)
    try:
        sock = loadgen.udp_socket(ceiling.udp_port)
        for i in range(20000):
            sock.send(packets[i % len(packets)])
        sock.close()
    finally:
        os.kill(ceiling.pid, signal.SIGCONT)
    counted, _ = counting.wait_settled(lambda: ceiling.count(step) - before, 20000, 0.5, 10)
    assert 0 < counted < 20000
    assert not counting.is_loss_free(20000, counted)


def test_run_writes_results_and_table(tmp_path):
    """bench/run.py on the ceiling alone writes its JSON and prints the table."""
    done = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "bench", "run.py"), "--quick", "--no-pin", "--no-realtime",
         "--systems", "ceiling", "--shapes", "real_20", "--step-seconds", "0.3",
         "--background-seconds", "0.1",
         "--max-steps", "1", "--generator-seconds", "0.3", "--python", sys.executable,
         "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "UDP loss-free rate" in done.stdout
    written = list((tmp_path / "results").glob("*-quick.json"))
    assert len(written) == 1
    results = json.loads(written[0].read_text())
    ceiling = results["udp"]["ceiling"]["real_20"]
    assert "error" not in ceiling, ceiling.get("traceback")
    assert [s["role"] for s in ceiling["steps"][:3]] == ["warmup", "cpu", "probe"]
    assert ceiling["peak_rss"] > 0
    assert results["meta"]["machine"]["cpu_count"] >= 1
    assert {row["name"] for row in results["targets"]} >= {
        "UDP real, 20/packet vs the Twisted ceiling"}
    assert results["generator"]["real_20"]["pool_packets"] == 20000
    assert not list((tmp_path / "results").glob("*.tmp"))


def test_report_on_a_small_result():
    """Targets judge the real shapes; best cases are shown, labelled, and judge nothing."""
    def udp(rate, cpu, disturbed=False):
        return {"loss_free_rate": rate, "bound": "server", "confirmed": True,
                "cpu_per_million": cpu, "cpu_rate": 50000.0, "peak_rss": 5e7,
                "steps": [{"disturbed": disturbed}]}

    results = {
        "meta": {"mode": "full", "machine": {"cpu_count": 2, "cpu_model": "x"}},
        "udp": {
            "statsd": {"real_20": udp(100000.0, 4.0), "counters_20": udp(100000.0, 4.0)},
            "simplestats": {"real_20": udp(250000.0, 1.5, disturbed=True),
                            "counters_20": udp(900000.0, 0.5)},
        },
        "tcp": {"carbon": {"format": "carbon", "points": 10, "stored_rate": 100.0},
                "simplestats": {"format": "tuples", "points": 10, "stored_rate": 90.0},
                "carbon_real": {"format": "carbon", "points": 10, "stored_rate": 100.0},
                "simplestats_real": {"format": "tuples", "points": 10, "stored_rate": 150.0}},
        "simplestats": {"inprocess": {"100000": {"tick_seconds_median": 0.5,
                                                 "tick_seconds_max": 0.7,
                                                 "longest_slice_seconds": 0.15,
                                                 "slice_seconds": 0.02,
                                                 "rss_per_series": 1000.0,
                                                 "bytes_per_value_accounted": 9.0,
                                                 "bytes_per_value_rss": 20.0}}},
    }
    rows = {row["name"]: row for row in report.targets(results)}
    assert rows["UDP real, 20/packet loss-free rate vs statsd"]["value"] == 2.5
    assert rows["UDP real, 20/packet loss-free rate vs statsd"]["met"] is True
    assert rows["UDP real, 20/packet CPU per million vs statsd"]["met"] is True
    assert rows["UDP real, 1/packet loss-free rate vs statsd"]["met"] is None
    assert rows["UDP real, 1/packet CPU per million vs statsd"]["met"] is None
    assert not any("best case" in name or "counters" in name for name in rows)
    assert rows["TCP plain quiet batches vs carbon plaintext"]["met"] is False
    assert rows["TCP real tuples vs carbon plaintext (points/s stored)"]["met"] is True
    assert rows["rollup tick, 100k active series (median, s)"]["met"] is True
    assert rows["rollup tick, 100k series: longest reactor stall (s)"]["met"] is False
    results["targets"] = list(rows.values())
    text = report.table(results)
    assert "1 of 4 steps ran while other programs" in text
    assert "NOT MET" in text and "not measured" in text
    body = text.splitlines()
    first = next(i for i, line in enumerate(body) if line.startswith("UDP loss-free rate"))
    assert body[first + 1].strip().startswith("real, 20/packet")
    assert "best case: counters, 20/pkt" in body[first + 2]
    assert "best case, SimpleStats (not judged)" in text
    assert "9.00x" in text
    assert report.best_case(results) == [("best case: counters, 20/pkt", 9.0, 0.125, None)]


def test_simplestats_received_lines_from_health():
    """A server that reports received.udp_lines in /api/health is counted from it, else not."""
    assert systems._health_received({"received": {"udp_lines": 12}}) == 12
    assert systems._health_received({"status": "ok"}) is None
    assert systems._health_received({"received": {"udp_lines": "x"}}) is None


def test_sliced_tick_sums_its_slices():
    """The in-process tick runs until the store says finished, summing slices and closed buckets."""
    answers = [(64, False), (64, False), (10, True)]

    class Store:
        def tick(self, now, deadline=None, timer=None):
            assert deadline is not None
            return answers.pop(0)

    times = iter(range(100))
    result = simplestats_inprocess.sliced_tick(Store(), 0.0, timer=lambda: next(times))
    assert result == {"seconds": 3, "longest_slice": 1, "slices": 3, "closed": 138}


def test_gc_pauses_are_told_apart():
    """Collections seen by the gc callback give the longest pause and the count of full ones."""
    times = iter([0.0, 0.5, 1.0, 1.1, 2.0, 2.05])
    pauses = simplestats_inprocess.GcPauses(timer=lambda: next(times))
    for generation in (2, 0, 2):
        pauses("start", {"generation": generation})
        pauses("stop", {"generation": generation})
    longest, full = pauses.take()
    assert longest == 0.5 and full == 2
    assert pauses.take() == (0.0, 0)


# -- the recovery figure (bench/recovery.py) -------------------------------------


def _journal_record(kind, payload):
    import struct
    import zlib
    return struct.pack(">IIc", len(payload), zlib.crc32(payload, zlib.crc32(kind)), kind) + payload


def test_journal_summary_counts_lines_and_torn_records(tmp_path):
    """The harness reads the journal format itself: statsd lines per record, JSON records, a torn end."""
    import struct
    from bench import recovery
    first = recovery.JOURNAL_MAGIC + _journal_record(b"u", struct.pack(">d", 1.0) + b"a:1|c\nb:2|c")
    first += _journal_record(b"j", b"[]") + _journal_record(b"u", struct.pack(">d", 2.0) + b"c:1|g")
    (tmp_path / "journal.000001.log").write_bytes(first)
    second = recovery.JOURNAL_MAGIC + _journal_record(b"u", struct.pack(">d", 3.0) + b"d:1|ms\n")
    second += _journal_record(b"u", struct.pack(">d", 4.0) + b"e:1|c")[:-2]
    (tmp_path / "journal.000002.log").write_bytes(second)
    (tmp_path / "snapshot.json").write_bytes(b"{}")
    summary = recovery.journal_summary(str(tmp_path))
    assert summary["files"] == 2
    assert summary["bytes"] == len(first) + len(second)
    assert summary["udp_records"] == 3 and summary["udp_lines"] == 4
    assert summary["json_records"] == 1 and summary["bad_crc"] == 0
    assert summary["torn"] == ["journal.000002.log: record cut short"]


def test_journal_summary_reads_the_server_s_current_format(tmp_path):
    """The harness counts the records of a journal the server writes today (SSJ3) and its torn end."""
    from bench import recovery
    from server.durability.journal import Journal
    journal = Journal(str(tmp_path))
    journal.append_raw(b"u", 1.0, b"a:1|c\nb:2|c")
    journal.append([["d", "x"]])
    journal.append_raw(b"t", 2.0, b'["a", null, 1]')
    journal.close()
    path = tmp_path / "journal.000001.log"
    path.write_bytes(path.read_bytes()[:-3])
    summary = recovery.journal_summary(str(tmp_path))
    assert summary["udp_records"] == 1 and summary["udp_lines"] == 2
    assert summary["json_records"] == 1 and summary["tcp_records"] == 0
    assert summary["torn"] == ["journal.000001.log: record cut short"]


def test_recovery_restarts_a_killed_server_with_its_series(tmp_path):
    """
    A tiny load on the real server, kill -9, restart on the same data
    directory: every series of the load is back with the same totals, and
    the figures the report shows are there.
    """
    from bench import recovery
    python = systems.default_python()
    messages = []
    result = recovery.measure(
        lambda extra: systems.SimpleStats(str(tmp_path / "rc"), None, python, extra),
        4000, 1.0, None, messages.append, prefix="rct", restart_timeout=60)
    assert result["sent"]["metrics"] == 4000
    assert result["received_lines"] == result["sent"]["metrics"]
    assert result["snapshots_during_load"] is False
    assert result["killed_exit_code"] == -signal.SIGKILL
    assert result["lines_journaled"] == result["received_lines_at_kill"] == 4000
    assert result["lines_lost_at_kill"] == 0
    assert result["journal"]["bytes"] > 4000 * 20 and result["journal"]["torn"] == []
    assert result["load_series_before"] == 1000
    restart = result["restart"]
    assert not restart["timed_out"]
    assert 0 < restart["health_seconds"] <= restart["ready_seconds"] < 60
    assert restart["load_series"] == 1000 and restart["series"] >= result["series_before"]
    assert restart["peak_rss"] > 0
    assert result["compare"] == {"series": 1000, "differing": 0, "examples": [],
                                 "all_series": True}
    assert len(result["checked"]) == 2
    assert all(row["before"] > 0 and row["before"] == row["after"] for row in result["checked"])
    assert result["server_recovery_log"]["points_replayed"] >= 4000
    # What the server logged at the restart is reported, not judged here.
    assert isinstance(result["log_problems"], list)
    assert result["log_problem_count"] >= len(result["log_problems"])
    assert result["server_tree_at_restart"]["repo"] == systems.REPO_ROOT
    assert result["replay_lines_per_second"] == 4000 / restart["ready_seconds"]
    assert not os.path.exists(str(tmp_path / "rc" / "data"))
    assert any("kill -9" in m for m in messages)
    # The report shows it and judges it against the 20 s target.
    results = {"simplestats": {"recovery": result}}
    rows = {row["name"]: row for row in report.targets(results)}
    row = rows["restart after kill -9, 1 s of real_20 journal (s)"]
    # Shown, but a 1 s journal judges nothing against a target about 60 s.
    assert row["met"] is None and row["value"] == restart["ready_seconds"]
    result = dict(result, seconds=60.0)
    rows = {row["name"]: row for row in report.targets({"simplestats": {"recovery": result}})}
    assert rows["restart after kill -9, 60 s of real_20 journal (s)"]["met"] is True
    assert "restart after kill -9, real_20 journal: 4000 lines/s for 1 s" in report.table(results)


def test_recovery_report_when_not_measured():
    """No recovery figure: the target is 'not measured'; a skipped or failed one says so."""
    rows = {row["name"]: row for row in report.targets({})}
    assert rows["restart after kill -9, 60 s of real_20 journal (s)"]["met"] is None
    text = report.table({"simplestats": {"recovery": {"skipped": "no rate"}}})
    assert "restart after kill -9: skipped (no rate)" in text
    text = report.table({"simplestats": {"recovery": {"error": "StartError: boom"}}})
    assert "restart after kill -9: StartError: boom" in text


def test_recovery_snapshot_args():
    """No snapshot during the load, by time or (when the server has the flag) by journal size."""
    from bench import recovery
    flag = {"--snapshot-journal-bytes", "--snapshot-interval"}
    assert recovery.snapshot_args(flag, 0) == ["--snapshot-interval", "3600",
                                               "--snapshot-journal-bytes", "0"]
    assert recovery.snapshot_args(flag, None) == ["--snapshot-interval", "3600"]
    assert recovery.snapshot_args(flag, 1000)[-1] == "1000"
    assert recovery.snapshot_args({"--snapshot-interval"}, 0) == ["--snapshot-interval", "3600"]
    with pytest.raises(ValueError):
        recovery.snapshot_args({"--snapshot-interval"}, 1000)


def test_recovery_with_a_snapshot_during_the_load(tmp_path):
    """
    With the server's snapshot by journal size on (a small size), the load
    is split between a snapshot and the journal after it; it all comes back.
    """
    from bench import recovery
    python = systems.default_python()
    if recovery.JOURNAL_BYTES_FLAG not in recovery.server_flags(python, systems.REPO_ROOT):
        pytest.skip("this server has no %s" % recovery.JOURNAL_BYTES_FLAG)
    result = recovery.measure(
        lambda extra: systems.SimpleStats(str(tmp_path / "rc"), None, python, extra),
        4000, 2.5, None, lambda m: None, prefix="rcs", restart_timeout=60, journal_bytes=20000)
    assert result["server_args"][-2:] == ["--snapshot-journal-bytes", "20000"]
    assert result["snapshots_during_load"] is True
    assert result["lines_lost_at_kill"] is None
    # Snapshots start every second while over the size: the last may come
    # after the load, leaving nothing in the journal.
    assert 0 <= result["lines_journaled"] < result["received_lines"] == 10000
    assert result["server_recovery_log"]["series_loaded"] >= 1000
    assert result["compare"]["series"] == 1000 and result["compare"]["differing"] == 0
    assert "a snapshot during the load" in recovery.summary(result)
