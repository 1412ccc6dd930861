"""
The benchmark harness (bench/) kept from rotting: its parsers and its loss
counting, run on a tiny load against the ceiling server in a subprocess on
free loopback ports.  No npm, no carbon, no reactor in this process.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench import counting, loadgen, procstat, report, search, systems  # noqa: E402
from bench.udpbench import Shape, Stepper  # noqa: E402


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


# -- load generator --------------------------------------------------------------

def test_packets_and_sent_accounting():
    """Packets hold the asked number of lines; the kinds sent are known from the packet count."""
    packets, kinds = loadgen.build_packets("s1", 20, True)
    assert all(p.count(b"\n") == 19 for p in packets)
    assert all(sum(k.values()) == 20 for k in kinds)
    lines = b"\n".join(packets).split(b"\n")
    assert len({line.split(b":")[0] for line in lines}) == 4 * loadgen.NAMES_PER_TYPE
    sent = loadgen.lines_sent(kinds, len(packets) * 2 + 3)
    assert sum(sent.values()) == 20 * (len(packets) * 2 + 3)
    assert set(sent) == {"c", "ms", "g", "s"}
    single, single_kinds = loadgen.build_packets("s1", 1, False)
    assert single[0] == b"bench.s1.app.requests.c0:1|c"
    assert loadgen.lines_sent(single_kinds, 5) == {"c": 5}


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
    carbon = loadgen.tcp_payload("carbon", 2, 3, 1000).decode().splitlines()
    assert carbon[:2] == ["bench.tcp.m00000 0.0 1000", "bench.tcp.m00001 0.0 1000"]
    assert len(carbon) == 6
    tuples = loadgen.tcp_payload("tuples", 2, 3, 1000, batch=4).decode().splitlines()
    assert tuples[0] == "--quiet"
    batches = [json.loads(line) for line in tuples[1:]]
    assert [len(b) for b in batches] == [4, 2]
    assert batches[0][0] == ["bench.tcp.m00000", 1000, 0.0]


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

@pytest.mark.parametrize("shape", [Shape(1, False), Shape(20, True)])
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
    packets, kinds = loadgen.build_packets("drop", 1, False)
    step = systems.Step("drop", 1, False)
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
         "--systems", "ceiling", "--shapes", "counters_20", "--step-seconds", "0.3",
         "--background-seconds", "0.1",
         "--max-steps", "1", "--generator-seconds", "0.3", "--python", sys.executable,
         "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "UDP loss-free rate" in done.stdout
    written = list((tmp_path / "results").glob("*-quick.json"))
    assert len(written) == 1
    results = json.loads(written[0].read_text())
    ceiling = results["udp"]["ceiling"]["counters_20"]
    assert "error" not in ceiling, ceiling.get("traceback")
    assert [s["role"] for s in ceiling["steps"][:3]] == ["warmup", "cpu", "probe"]
    assert ceiling["peak_rss"] > 0
    assert results["meta"]["machine"]["cpu_count"] >= 1
    assert {row["name"] for row in results["targets"]} >= {
        "UDP counters, 20/packet vs the Twisted ceiling"}
    assert not list((tmp_path / "results").glob("*.tmp"))


def test_report_on_a_small_result():
    """Targets compare the right figures and the table prints with gaps in the data."""
    results = {
        "meta": {"mode": "full", "machine": {"cpu_count": 2, "cpu_model": "x"}},
        "udp": {
            "statsd": {"counters_20": {"loss_free_rate": 100000.0, "bound": "server",
                                       "cpu_per_million": 4.0, "cpu_rate": 50000.0,
                                       "peak_rss": 5e7, "steps": []}},
            "simplestats": {"counters_20": {"loss_free_rate": 250000.0, "bound": "server",
                                            "cpu_per_million": 1.5, "cpu_rate": 50000.0,
                                            "peak_rss": 6e7, "steps": [{"disturbed": True}]}},
        },
        "tcp": {"carbon": {"format": "carbon", "points": 10, "stored_rate": 100.0},
                "simplestats": {"format": "tuples", "points": 10, "stored_rate": 90.0}},
        "simplestats": {"inprocess": {"100000": {"tick_seconds_median": 0.5,
                                                 "tick_seconds_max": 0.7,
                                                 "rss_per_series": 1000.0,
                                                 "bytes_per_value_accounted": 9.0,
                                                 "bytes_per_value_rss": 20.0}}},
    }
    rows = {row["name"]: row for row in report.targets(results)}
    assert rows["UDP counters, 20/packet loss-free rate vs statsd"]["value"] == 2.5
    assert rows["UDP counters, 20/packet loss-free rate vs statsd"]["met"] is True
    assert rows["UDP counters, 20/packet CPU per million vs statsd"]["met"] is True
    assert rows["TCP quiet batches vs carbon plaintext (points/s stored)"]["met"] is False
    assert rows["rollup tick, 100k active series (median, s)"]["met"] is True
    assert rows["UDP mix, 1/packet loss-free rate vs statsd"]["met"] is None
    results["targets"] = list(rows.values())
    text = report.table(results)
    assert "1 of 1 steps ran while other programs" in text
    assert "NOT MET" in text and "not measured" in text
