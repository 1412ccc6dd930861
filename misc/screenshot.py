#!/usr/bin/env python3
"""
Take the README's screenshots of the dashboard with real data.

    .venv/bin/python misc/screenshot.py            # writes docs/dashboard.png and docs/dayweek.png

Starts a server on free loopback ports with an empty data directory (the
end-to-end tests' L{tests/serverproc.ServerProcess}), sends it
C{misc/sample_generator.py N --send} (a week of tuples with a daily cycle),
backfills the last minutes of statsd traffic (timestamped with C{|T}) and
keeps statsd traffic coming while Chromium (Debian's, driven by Playwright)
opens the page at 1280x800, plots a couple of series and opens day against
week.  Needs /usr/bin/chromium, the playwright package and web/static/vendor/
(C{cd web && npm ci}).
"""

import argparse
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))

from serverproc import ServerProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 15000
BACKFILL = 15 * 60          # seconds of statsd history before the page opens
ROUTES = ("checkout", "search", "home")


def statsd_lines(rng, ts, stamp=True):
    """
    One second of a shop's statsd traffic: requests and latencies per
    route, a gauge of busy workers; C{|T} stamps the second when C{stamp}.
    """
    suffix = "|T%d" % (ts,) if stamp else ""
    # A slow wave over a quarter of an hour, so the last minutes have a shape.
    wave = 1 + 0.5 * math.sin(2 * math.pi * ts / 900.0)
    lines = []
    for route, base in zip(ROUTES, (40.0, 25.0, 12.0)):
        count = max(1, int(rng.gauss(base * wave, base / 6)))
        lines.append("api.requests:%d|c|#route:%s%s" % (count, route, suffix))
        latencies = ":".join("%.1f" % max(1.0, rng.lognormvariate(math.log(60 * wave), 0.35))
                             for _ in range(5))
        lines.append("api.latency:%s|ms|#route:%s%s" % (latencies, route, suffix))
    lines.append("workers.busy:%d|g%s" % (max(0, int(rng.gauss(12 * wave, 2))), suffix))
    return ("\n".join(lines)).encode()


def backfill(server, rng, now):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for ts in range(int(now) - BACKFILL, int(now)):
            sock.sendto(statsd_lines(rng, ts), (server.host, server.udp_port))
            time.sleep(0.001)   # a burst would overflow the socket buffer and lose its tail


class LiveTraffic(threading.Thread):
    """
    One second of statsd traffic every second, stamped by the server, until
    stopped.
    """

    def __init__(self, server, rng):
        threading.Thread.__init__(self, daemon=True)
        self.server, self.rng = server, rng
        self.stopped = threading.Event()

    def run(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not self.stopped.wait(1.0):
                packet = statsd_lines(self.rng, time.time(), stamp=False)
                sock.sendto(packet, (self.server.host, self.server.udp_port))


def wait_for_series(server, count, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        total = server.get_json("/api/metrics", {"filter": "-simplestats"})["matched"]
        if total >= count:
            return total
        if time.monotonic() > deadline:
            raise server.error("only %d series within %.0f s, expected %d" % (total, timeout, count))
        time.sleep(0.1)


def shoot(server, out_dir, plotted, dayweek):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1,
                                      timezone_id="UTC", locale="en-US")
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.base_url + "/")
        page.wait_for_selector("#metric-table tbody tr[data-key]", timeout=WAIT_MS)
        # Let the list and the server panel settle on their second refresh.
        page.wait_for_selector("#server-metrics tbody tr[data-key]", timeout=WAIT_MS)

        page.click("#range-presets button[data-range='7d']")
        for key in plotted:
            page.click("#metric-table tbody tr[data-key='%s']" % (key,))
        # Only the mean of samples, so two series give two lines.
        for field in ("p90", "p99"):
            page.click("#field-picker label[for='field-sample-%s']" % (field,))
        page.wait_for_function(
            """keys => {
                const s = window.simplestats;
                return s.plot !== null && s.lastSeriesData.length === keys.length
                    && s.plot.getData().length === keys.length;
            }""", arg=plotted, timeout=WAIT_MS)
        # Clicking the rows scrolled the list; show it from the top (the live statsd series).
        page.evaluate("document.getElementById('metric-scroll').scrollTop = 0")
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        dashboard = os.path.join(out_dir, "dashboard.png")
        page.screenshot(path=dashboard)

        page.select_option("#dayweek-series", dayweek)
        page.click("#dayweek-btn")
        page.wait_for_function("key => window.simplestats.dayweekPlot !== null"
                               " && window.simplestats.lastDayweekData.key === key",
                               arg=dayweek, timeout=WAIT_MS)
        page.evaluate("document.getElementById('dayweek-panel').scrollIntoView({block: 'end'})")
        page.wait_for_timeout(300)
        dayweek_path = os.path.join(out_dir, "dayweek.png")
        page.screenshot(path=dayweek_path)
        browser.close()
    if errors:
        raise RuntimeError("script errors on the page: %r" % (errors,))
    return dashboard, dayweek_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="tuples from sample_generator.py (2000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (7)")
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "docs"),
                        help="where the PNGs go (docs/)")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        parser.error("%s is missing (apt-get install chromium)" % (CHROMIUM,))
    if not os.path.isdir(os.path.join(REPO_ROOT, "web", "static", "vendor")):
        parser.error("web/static/vendor/ is missing: run `cd web && npm ci`")

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="simplestats-screenshot-") as tmp:
        server = ServerProcess(os.path.join(tmp, "data"), os.path.join(tmp, "server.log"))
        os.makedirs(server.data_dir)
        server.start()
        live = LiveTraffic(server, rng)
        try:
            subprocess.run([sys.executable, os.path.join(REPO_ROOT, "misc", "sample_generator.py"),
                            str(args.count), "--seed", str(args.seed),
                            "--send", "%s:%d" % (server.host, server.tcp_port)], check=True)
            backfill(server, rng, time.time())
            live.start()
            # 5 names x 2 hosts from the generator, then requests and latency per route and the gauge.
            wait_for_series(server, 10 + 2 * len(ROUTES) + 1)
            paths = shoot(server, args.out_dir, ["web.requests;host=web1", "web.latency_ms;host=web1"],
                          "web.requests;host=web1")
        finally:
            live.stopped.set()
            server.kill()
    for path in paths:
        print("%s (%d bytes)" % (os.path.relpath(path, REPO_ROOT), os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
