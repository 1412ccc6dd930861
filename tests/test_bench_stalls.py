"""
bench/stalls.py kept from rotting: what it sends is accepted by the server's
own parsers, the stall is read over the right seconds, and the table says
hung when an operation hung.  No server process, no socket.
"""

import json
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from bench import stalls  # noqa: E402
from server.receivers.parse_tuple import parse_line  # noqa: E402
from server.settings import load  # noqa: E402
from server.web.transfer import parse_import  # noqa: E402

LIMITS = load([], {}).limits
MAX_LINE = load([], {}).max_line_length


def test_series_batches_fit_the_line_limit_and_parse():
    """Every batch line is under the TCP line limit and parses to its series, the regex bait last."""
    lines = stalls.series_batches(4500)
    assert all(len(line) <= MAX_LINE for line in lines)
    names = []
    for line in lines:
        names.extend(item.name for item in parse_line(line.rstrip(b"\n"), LIMITS).items)
    assert names[:2] == ["bench.s.0000000", "bench.s.0000001"]
    assert names[-1] == stalls.CATASTROPHIC_NAME
    assert len(set(names)) == 4501


def test_set_batches_hold_every_member_once():
    """The set partials parse and together hold each member once."""
    lines = stalls.set_batches(12345)
    assert all(len(line) <= MAX_LINE for line in lines)
    members = []
    for line in lines:
        (item,) = parse_line(line.rstrip(b"\n"), LIMITS).items
        members.extend(item.fields["members"])
    assert len(members) == len(set(members)) == 12345


def test_import_body_is_accepted_by_the_server_parser():
    """The generated import is about the asked size and every row parses, tagged and typed."""
    body, rows = stalls.import_body(0.3, 1_800_000_000.0)
    assert 300_000 <= len(body) < 301_000
    items, numbers, bad, bad_count, fmt = parse_import(body, "ndjson", LIMITS)
    assert (bad_count, fmt) == (0, "ndjson")
    assert len(items) == rows
    assert {dict(i.tags).get("host") is not None for i in items} == {True, False}
    assert max(i.timestamp for i in items) == 1_800_000_000 - 60 - 1_800_000_000 % 60


def test_stall_over_takes_the_operation_seconds_and_the_one_after():
    """The longest lateness is taken from the first second of the span to the second after its end."""
    health = {"reactor": {"seconds": [[99, 900.0], [100, 5.0], [101, 70.0], [103, 40.0],
                                      [104, 800.0]]}}
    assert stalls.stall_over(health, 100.7, 102.2) == (70.0, True)
    assert stalls.stall_over(health, 100.7, 103.0) == (800.0, True)
    assert stalls.stall_over(health, 98.0, 98.5) == (900.0, False)
    assert stalls.stall_over({"reactor": None}, 1, 2) == (None, False)
    assert stalls.long_seconds(health, 100, 102, at_least=50) == [[101, 70.0]]


def test_table_reports_hung_and_over_target():
    """A hung operation shows its deadline and no count; a stall over 100 ms is bold."""
    ops = [
        {"key": "filter_dotstar", "operation": "filter", "hung": True, "timeout": 60.0,
         "duration": 63.0, "stall_at_least_ms": 63001.0, "sent_during": 315000, "lost": None,
         "peak_rss": 312e6},
        {"key": "export", "operation": "export", "duration": 4.6, "longest_stall_ms": 171.2,
         "lost": 0, "sent_during": 22975, "peak_rss": 394e6, "status": 200},
        {"key": "snapshot", "operation": "snapshot", "duration": 40.0, "shown_seconds": 9.2,
         "longest_stall_ms": 92.0, "lost": 3, "sent_during": 100, "peak_rss": None},
    ]
    rows = stalls.table(ops).splitlines()
    assert rows[2] == ("| filter | hung > 60 s | > 63001 (hung) | all after the hang (315000 sent; "
                       "killed) | 312 MB |")
    assert rows[3] == "| export | 4.60 s | **171** | 0 of 22975 | 394 MB |"
    assert rows[4] == "| snapshot | 9.20 s | 92 | 3 of 100 | ? |"
    json.dumps(ops)
