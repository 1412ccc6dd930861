"""
bench/scrape_bench.py kept from rotting: what it sends is accepted by the
server's own parsers within the line limit, and its in-process figure runs.
No server process, no socket.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench import scrape_bench  # noqa: E402
from server.core.model import COUNTER, GAUGE, TIMER  # noqa: E402
from server.receivers.parse_tuple import parse_line  # noqa: E402
from server.settings import load  # noqa: E402

SETTINGS = load([], {})


def test_series_lines_fit_the_line_limit_and_parse():
    """Every batch line is under the TCP line limit and parses: counters, gauges and timers in turn, three points each, a host tag of 20 values."""
    lines = scrape_bench.series_lines(2500)
    assert all(len(line) <= SETTINGS.max_line_length for line in lines)
    items = []
    for line in lines:
        items.extend(parse_line(line.rstrip(b"\n"), SETTINGS.limits).items)
    assert len(items) == 7500
    assert [item.type for item in items[:9:3]] == [COUNTER, GAUGE, TIMER]
    assert {item.name for item in items} == {scrape_bench.NAME % i for i in range(2500)}
    assert {dict(item.tags)["host"] for item in items} == {"web%02d" % i for i in range(20)}


def test_in_process_figure():
    """The in-process figure scrapes a small store and reports its phases."""
    figures = scrape_bench.in_process(300, repeat=2)
    assert figures["series"] == 300
    assert 0 < figures["group_seconds"] < 5 and 0 < figures["text_seconds"] < 5
    assert figures["longest_step_ms"] > 0
