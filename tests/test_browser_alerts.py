"""
The alerts panel in a real browser (Debian's Chromium, Playwright's sync
API) against a real server process: a rule made in the editor (its filter
previewing the series it matches) fires as data arrives, the header counts
it, its firing period is a band on the plot of the series, and it is
silenced from the panel.  Screenshots go to test-artifacts/browser/, and to
docs/ (the README shows them) with SIMPLESTATS_DOCS_SCREENSHOTS=1.
"""

import os
import shutil
import time

import pytest

from serverproc import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed at %s" % (CHROMIUM,), allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = os.path.join(REPO_ROOT, "test-artifacts", "browser")
DOCS = os.path.join(REPO_ROOT, "docs")
VENDOR = os.path.join(REPO_ROOT, "web", "static", "vendor")
AXE = os.path.join(REPO_ROOT, "web", "node_modules", "axe-core", "axe.min.js")
WAIT_MS = 15000
# Buckets of 1 s closed at once: the rule fires a second or two after its data.
FAST = ("--retentions", "1s:1h,60s:8d", "--late-grace", "0", "--rollup-interval", "0.2",
        "--alerts-check-interval", "0.2")


@pytest.fixture
def page():
    if not os.path.isdir(VENDOR):
        pytest.fail("%s is missing: run `cd web && npm ci` (scripts/setup.sh does)" % (VENDOR,))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC",
                                      locale="en-US")
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("dialog", lambda dialog: page.errors.append("dialog: " + dialog.message))
        yield page
        browser.close()


def shoot(page, name):
    """
    A screenshot in test-artifacts/browser/; also in docs/ (the README's)
    with SIMPLESTATS_DOCS_SCREENSHOTS=1, so an ordinary run leaves the
    checkout as it was.
    """
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name + ".png")
    page.screenshot(path=path, full_page=True)
    if os.environ.get("SIMPLESTATS_DOCS_SCREENSHOTS") == "1":
        shutil.copy(path, os.path.join(DOCS, name + ".png"))


def send_for(server, line, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.send_udp(line)
        time.sleep(0.2)


def test_rule_from_the_editor_fires_bands_the_plot_and_is_silenced(make_server, page):
    """Editor -> rule; data -> firing row, header count, band on the plot; Silence -> muted."""
    server = make_server(*FAST).start()
    send_for(server, b"room.temp:20|g", 1.5)
    server.send_udp(b"room.humidity:40|g")
    page.goto(server.base_url + "/?range=5m&refresh=1")
    page.click("#alerts-btn")
    page.wait_for_selector("#alerts-card:not(.d-none)", timeout=WAIT_MS)
    page.fill("#rule-name", "hot room")
    page.fill("#rule-filter", "room.temp")
    page.wait_for_function(
        "document.querySelector('#rule-preview').textContent.includes('matches 1 series: room.temp')",
        timeout=WAIT_MS)
    page.select_option("#rule-condition", "above")
    page.fill("#rule-threshold", "50")
    page.fill("#rule-recover", "45")
    page.click("#rule-save")
    page.wait_for_function("document.querySelector('#rule-result').textContent.includes('Saved rule hot room')",
                           timeout=WAIT_MS)
    rules = server.get_json("/api/alerts/rules")["rules"]
    assert [(r["name"], r["filter"], r["above"], r["recover"]) for r in rules] == [
        ("hot room", "room.temp", 50.0, 45.0)]
    page.wait_for_selector("#alert-rules li", timeout=WAIT_MS)

    send_for(server, b"room.temp:72|g", 3)
    page.wait_for_selector("#alerts-table tr[data-state=firing]", timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('#alerts-badge').textContent === '1'", timeout=WAIT_MS)
    row = page.inner_text("#alerts-table tr[data-state=firing]")
    assert "hot room" in row and "room.temp" in row and "72" in row and "50" in row

    # The series named in the row opens on the plot, with its firing period as a band.
    page.click("#alerts-table tr[data-state=firing] .alert-series")
    page.wait_for_function("window.simplestats.alertBands.length > 0", timeout=WAIT_MS)
    band = page.evaluate("window.simplestats.alertBands[0]")
    assert band["key"] == "room.temp" and band["until"] >= band["from"]
    markings = page.evaluate("window.simplestats.plot.getOptions().grid.markings")
    assert any(m["xaxis"]["to"] > m["xaxis"]["from"] for m in markings), markings
    # Resolved, then firing again: two bands on a plot of the last minute.
    send_for(server, b"room.temp:73|g", 4)
    send_for(server, b"room.temp:30|g", 4)
    send_for(server, b"room.temp:81|g", 4)
    now = server.get_json("/api/health")["now"]
    page.goto(server.base_url + "/?series=room.temp&from=%d&until=%d&refresh=1"
              % (now - 40, now + 2))
    page.click("#alerts-btn")
    page.wait_for_function("window.simplestats.alertBands.length >= 2", timeout=WAIT_MS)
    page.wait_for_selector("#alerts-table tr[data-state=firing]", timeout=WAIT_MS)
    assert page.evaluate("window.simplestats.alertBands.length") == 2
    shoot(page, "alerts")
    if os.path.exists(AXE):
        # The panel open, a row firing, the editor shown: no serious or critical accessibility violation.
        page.add_script_tag(path=AXE)
        violations = page.evaluate("""async () => {
            const r = await axe.run(document.querySelector('#alerts-card'), {resultTypes: ['violations']});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => v.id + ': ' + v.help + ' ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')));
        }""")
        assert violations == [], violations

    page.click("#alerts-table tr[data-state=firing] .alert-silence")
    page.wait_for_selector("#alerts-table tr[data-state=firing] .alert-muted", timeout=WAIT_MS)
    silences = server.get_json("/api/alerts/silences")["silences"]
    assert [(s["rule"], s["series"]) for s in silences] == [("hot room", "room.temp")]
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.errors == []
    server.stop()
