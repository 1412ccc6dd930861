"""
End to end: statsd traffic in over real UDP, C{GET /metrics} out over real
HTTP, read by the official Prometheus parser (prometheus_client); the
counters' totals outlive a kill -9 and a restart, neither lost nor doubled.
"""

import math
import time

from prometheus_client.parser import text_string_to_metric_families

# 1 s and 2 s tiers: summaries read their quantiles from the last closed
# 2 s bucket (no 1-minute tier), so the test waits seconds, not a minute.
# Snapshots every 3 s: the restart reads a snapshot, then the journal.
ARGS = ("--retentions", "1s:1h,2s:2h", "--late-grace", "0.5", "--snapshot-interval", "3")
DEADLINE = 20.0


def scrape(server, params=None):
    """
    C{{(sample name, labels): value}} and C{{family: type}} of one scrape.
    """
    status, headers, body = server.http("GET", "/metrics", params)
    assert status == 200, (status, body[:500])
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples, types = {}, {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        assert family.name not in types, "family %s split" % (family.name,)
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def eventually(check, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def send_traffic(server, rounds, first=0):
    for n in range(first, first + rounds):
        server.send_udp(b"\n".join([
            b"e2e.prom.hits:2|c|#host:web1",
            b"e2e.prom.hits:1|c|@0.5|#host:web2",
            b"e2e.prom.latency:%d|ms|#host:web1" % (10 + n % 10,),
            b"e2e.prom.temp:21.5|g",
            b"e2e.prom.users:u%d|s" % (n % 3,),
        ]))


def test_statsd_in_metrics_out_across_a_kill(make_server):
    """Counters, timers, gauges and sets sent over UDP are scraped as their Prometheus types; the counters' totals survive a kill -9."""
    server = make_server(*ARGS).start()
    send_traffic(server, 30)

    def first_part():
        assert scrape(server)[0][("e2e_prom_hits_total", (("host", "web1"),))] == 60.0
        return time.time()

    arrived_at = eventually(first_part)

    def snapshotted():
        snapshot = server.get_json("/api/health")["snapshot"]
        assert snapshot["last"] is not None and snapshot["last"] > arrived_at, snapshot

    eventually(snapshotted)
    send_traffic(server, 20, 30)

    def arrived():
        samples, types = scrape(server)
        assert samples[("e2e_prom_hits_total", (("host", "web1"),))] == 100.0
        assert samples[("e2e_prom_hits_total", (("host", "web2"),))] == 100.0
        assert samples[("e2e_prom_latency_count", (("host", "web1"),))] == 50.0
        median = samples[("e2e_prom_latency", (("host", "web1"), ("quantile", "0.5")))]
        assert not math.isnan(median)
        return samples, types

    samples, types = eventually(arrived)
    assert types["e2e_prom_hits"] == "counter"
    assert types["e2e_prom_latency"] == "summary"
    assert types["e2e_prom_temp"] == "gauge"
    assert types["e2e_prom_users"] == "gauge"
    assert samples[("e2e_prom_latency_sum", (("host", "web1"),))] == 5 * sum(range(10, 20))
    assert 10 <= samples[("e2e_prom_latency", (("host", "web1"), ("quantile", "0.99")))] <= 19
    assert samples[("e2e_prom_temp", ())] == 21.5
    # The server's own series are there too.
    assert types["simplestats_series_count"] == "gauge"

    # ?filter= narrows the scrape.
    narrowed, types = scrape(server, {"filter": "e2e.prom.hits host:web2"})
    assert set(types) == {"e2e_prom_hits"}
    assert list(narrowed) == [("e2e_prom_hits_total", (("host", "web2"),))]

    # Everything accepted is in the journal before the kill.
    def journaled():
        assert server.get_json("/api/health")["journal_pending_bytes"] == 0

    eventually(journaled)
    time.sleep(0.5)
    server.kill()
    server.start()
    after = eventually(lambda: scrape(server)[0])
    assert after[("e2e_prom_hits_total", (("host", "web1"),))] == 100.0
    assert after[("e2e_prom_hits_total", (("host", "web2"),))] == 100.0
    assert after[("e2e_prom_latency_count", (("host", "web1"),))] == 50.0
    assert after[("e2e_prom_latency_sum", (("host", "web1"),))] == 5 * sum(range(10, 20))

    send_traffic(server, 1)

    def counted_on():
        assert scrape(server)[0][("e2e_prom_hits_total", (("host", "web1"),))] == 102.0

    eventually(counted_on)
    server.stop()
