"""
End to end: the host agent (server/agent.py) on this machine against a real
server process: three collections a second apart, and its series read back
with sane values.
"""

import os
import signal
import subprocess
import sys
import time

import psutil

from server.agent import tag_value

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "agent-e2e"


def metrics(server):
    body = server.get_json("/api/metrics", {"filter": "host:%s" % HOST, "limit": 10000})
    return body["metrics"]


def values(server, name, tags, field):
    params = {"name": name, "fields": field, "resolution": "5s", "from": "-5m",
              "tags": ",".join("%s:%s" % kv for kv in sorted(tags.items()))}
    points = server.get_json("/api/series", params)["fields"][field]
    return [v for _, v in points if v is not None]


def test_agent_series_have_sane_values(server, tmp_path):
    """Every family arrives tagged with the host: CPU % in 0..100 per core and summing to 100, rates >= 0, memory total as psutil says."""
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "server.agent", "--send", "127.0.0.1:%d" % server.tcp_port,
         "--interval", "1", "--host", HOST, "--top", "3"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Three collections, with loopback traffic of our own meanwhile.
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            server.get_json("/api/health")
            time.sleep(0.05)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        log.close()
    output = (tmp_path / "agent.log").read_text()
    assert "collection failed" not in output and "Traceback" not in output, output
    found = metrics(server)
    keys = {(m["name"], tuple(sorted(m["tags"].items()))) for m in found}
    assert all(m["type"] == "gauge" for m in found)
    names = {m["name"] for m in found}
    for name in ("cpu.user", "cpu.system", "cpu.idle", "cpu.iowait", "cpu.steal", "load.1",
                 "load.5", "load.15", "mem.total", "mem.available", "mem.used", "swap.total",
                 "swap.used", "disk.total", "disk.used_percent", "net.bytes_recv",
                 "net.packets_sent", "net.errin", "net.dropout", "proc.count",
                 "proc.cpu_percent", "proc.rss"):
        assert name in names, (name, sorted(names))

    cores = psutil.cpu_count()
    cpus = {"total"} | {str(n) for n in range(cores)}
    for cpu in cpus:
        assert ("cpu.user", (("cpu", cpu), ("host", HOST))) in keys, cpu
        for state in ("user", "system", "idle", "iowait", "steal"):
            seen = values(server, "cpu." + state, {"cpu": cpu, "host": HOST}, "min")
            seen += values(server, "cpu." + state, {"cpu": cpu, "host": HOST}, "max")
            assert seen and all(0.0 <= v <= 100.0 for v in seen), (state, cpu, seen)
        # The states of one collection add up to 100 %.
        lasts = [values(server, "cpu." + state, {"cpu": cpu, "host": HOST}, "last")[-1]
                 for state in ("user", "nice", "system", "idle", "iowait", "irq", "softirq",
                               "steal")]
        assert abs(sum(lasts) - 100.0) < 0.01, lasts

    assert values(server, "mem.total", {"host": HOST}, "last")[-1] == \
        psutil.virtual_memory().total
    assert values(server, "proc.count", {"host": HOST}, "last")[-1] > 0
    assert values(server, "load.1", {"host": HOST}, "min")[-1] >= 0
    rates = [m for m in found if m["name"].startswith(("net.", "diskio.", "swap.in", "swap.out"))]
    interfaces = {m["tags"]["interface"] for m in found if m["name"] == "net.bytes_recv"}
    assert interfaces == {tag_value(n) for n in psutil.net_io_counters(pernic=True)}
    assert rates
    for m in rates:
        tags = dict(m["tags"])
        lows = values(server, m["name"], tags, "min")
        assert lows and min(lows) >= 0, (m["name"], tags, lows)
    for m in found:
        if m["name"] == "diskio.busy_percent" or m["name"].endswith("used_percent"):
            highs = values(server, m["name"], dict(m["tags"]), "max")
            assert all(0 <= v <= 100 for v in highs), (m["name"], highs)
    # The test's requests went over loopback: its byte rate is > 0.
    assert max(values(server, "net.bytes_sent", {"host": HOST, "interface": "lo"}, "max")) > 0
