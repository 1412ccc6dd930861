"""
Reading values in a real browser (issue 14, part 7): units guessed and set
from the page (kept in the URL), axes and legends formatted in them, a log
scale, the local / UTC switch, the legend's figures over the visible range
after a zoom, one crosshair across the panels of a saved dashboard, and a
panel edited in place that survives a reload.

Same set-up as L{test_browser} (its fixtures and helpers): Debian's Chromium
driven by Playwright against the module's shared server process.
"""

import datetime
import json
import time
import urllib.parse
import zoneinfo

import pytest

from test_browser import (  # noqa: F401 (browser, artifacts: fixtures used by name)
    WAIT_MS, Watch, artifacts, browser, check_axe, send_tuples, sync_api, wait_for_keys, wait_plotted,
)

NEW_YORK = "America/New_York"


@pytest.fixture
def ny_context(browser):  # noqa: F811
    # A zone that is not UTC, so the switch has something to change.
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id=NEW_YORK, locale="en-US")
    yield ctx
    ctx.close()


def y_ticks(page, axis="yaxis"):
    return page.evaluate("axis => window.simplestats.plot.getAxes()[axis].ticks.map(t => t.label)", axis)


def legend_text(page, key):
    return page.inner_text("#plot-legend li[data-key='%s']" % (key,))


def wait_for(page, script, arg=None, what=""):
    try:
        page.wait_for_function(script, arg=arg, timeout=WAIT_MS)
    except sync_api.TimeoutError:
        raise AssertionError("timed out waiting for %s (%s)" % (what or script, arg))


def test_units_log_scale_and_utc(shared_server, ny_context, artifacts):  # noqa: F811
    """Units are guessed, set from the legend and kept in the URL; log scale and UTC switch the axes and tooltips."""
    server = shared_server
    now = time.time()
    rows = []
    for i in range(1, 50):
        rows.append(["read.mem_bytes", now - 5 * i, "%dg" % (3 * 2 ** 20 + 4096 * i)])
        # 1 ... 10,000 over the range: decades apart on a log axis.
        rows.append(["read.span", now - 5 * i, "%dg" % (10 ** (i % 5))])
    send_tuples(server, rows)
    wait_for_keys(server, ["read.mem_bytes", "read.span"])
    watch = Watch()
    page = watch.attach(ny_context.new_page())
    page.goto(server.base_url + "/?" + urllib.parse.urlencode({"series": "read.mem_bytes", "range": "5m",
                                                               "filter": "read."}))
    wait_plotted(page, ["read.mem_bytes"])

    # Guessed from the name: bytes, in binary prefixes on the axis and in the legend.
    ticks = y_ticks(page)
    assert ticks and all(t.endswith("MiB") for t in ticks), ticks
    assert "max 3.19 MiB" in legend_text(page, "read.mem_bytes"), legend_text(page, "read.mem_bytes")
    # Set to no unit from the legend: plain SI, kept in the URL and over a reload.
    page.select_option("#plot-legend select.legend-unit", "none")
    wait_for(page, "() => window.simplestats.plot.getAxes().yaxis.ticks.every(t => !t.label.endsWith('MiB'))",
             what="ticks without MiB")
    assert all(t.endswith("M") for t in y_ticks(page)), y_ticks(page)
    assert "unit=none%3Aread.mem_bytes" in page.url
    page.select_option("#plot-legend select.legend-unit", "%")
    wait_for(page, "() => window.simplestats.plot.getAxes().yaxis.ticks.every(t => t.label.endsWith(' %'))",
             what="ticks in %")
    # The legend too, at once, and the menu keeps the focus.
    assert "max 3346432 %" in legend_text(page, "read.mem_bytes"), legend_text(page, "read.mem_bytes")
    assert page.evaluate("document.activeElement.classList.contains('legend-unit')")
    page.reload()
    wait_plotted(page, ["read.mem_bytes"])
    assert all(t.endswith(" %") for t in y_ticks(page)), y_ticks(page)
    assert page.input_value("#plot-legend select.legend-unit") == "%"

    # Log scale: decades equally far apart, in the URL.
    page.goto(server.base_url + "/?" + urllib.parse.urlencode({"series": "read.span", "range": "5m",
                                                               "filter": "read."}))
    wait_plotted(page, ["read.span"])
    page.click("label[for=log-scale]")
    wait_for(page, "() => window.simplestats.plot.getAxes().yaxis.options.mode === 'log'", what="a log axis")
    assert "log=1" in page.url
    gaps = page.evaluate("""() => { const y = window.simplestats.plot.getAxes().yaxis;
        return [y.p2c(10) - y.p2c(100), y.p2c(100) - y.p2c(1000), y.p2c(1000) - y.p2c(10000)]; }""")
    assert gaps[0] > 10 and max(gaps) - min(gaps) < 1, gaps
    assert {"10", "100", "1k", "10k"} <= set(y_ticks(page)), y_ticks(page)
    artifacts.shoot(page, "18-log-scale")

    # Local time (New York), then UTC: the x axis's labels and the tooltip's time follow.
    def x_ticks():
        return page.evaluate("() => window.simplestats.plot.getAxes().xaxis.ticks.map(t => [t.v, t.label])")

    def clock(value, utc):
        zone = datetime.timezone.utc if utc else zoneinfo.ZoneInfo(NEW_YORK)
        return datetime.datetime.fromtimestamp(value, zone).strftime("%H:%M:%S")

    ticks = x_ticks()
    # Flot writes "18:05:30" or "18:06": the hours and minutes are in the browser's zone either way.
    assert ticks and all(clock(v, False).startswith(label) for v, label in ticks), ticks
    page.select_option("#timezone", "utc")
    wait_for(page, "() => window.simplestats.plot.getOptions().xaxes[0].timezone === 'utc'", what="a UTC axis")
    assert "tz=utc" in page.url
    ticks = x_ticks()
    assert ticks and all(clock(v, True).startswith(label) for v, label in ticks), ticks
    box = page.locator("#plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("#plot-tooltip:not(.d-none)", timeout=WAIT_MS)
    first = page.inner_text("#plot-tooltip .fw-semibold")
    assert first.endswith(" UTC"), first
    page.reload()
    wait_plotted(page, ["read.span"])
    assert page.input_value("#timezone") == "utc" and page.is_checked("#log-scale")
    check_axe(page, artifacts, "log scale, UTC")
    watch.check(page)
    page.close()


def test_legend_covers_the_visible_range_after_a_zoom(shared_server, ny_context):
    """After a drag-zoom the legend's min, max, mean and last are those of the points now visible."""
    server = shared_server
    now = time.time()
    # A spike of 900 long ago, small whole numbers since.
    rows = [["read.level", now - 5 * i, "%dg" % (900 if i > 45 else 10 + i % 7)] for i in range(1, 55)]
    send_tuples(server, rows)
    wait_for_keys(server, ["read.level"])
    page = ny_context.new_page()
    page.goto(server.base_url + "/?" + urllib.parse.urlencode({"series": "read.level", "range": "5m",
                                                               "filter": "read.level"}))
    wait_plotted(page, ["read.level"])
    assert "max 900" in page.inner_text("#plot-legend li[data-key='read.level']")
    # Drag over the last two thirds of the plot, well after the spike.
    offset = page.evaluate("window.simplestats.plot.getPlotOffset()")
    width = page.evaluate("window.simplestats.plot.width()")
    box = page.locator("#plot").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + offset["left"] + width * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + offset["left"] + width * 0.7, y, steps=8)
    page.mouse.move(box["x"] + offset["left"] + width * 0.95, y, steps=8)
    page.mouse.up()
    wait_for(page, "() => window.simplestats.state.range === 'custom'", what="the zoomed range")
    wait_for(page, """() => { const p = window.simplestats.plot; if (!p) { return false; }
        const x = p.getAxes().xaxis; return x.max - x.min < 250; }""", what="the zoomed plot")
    expected = page.evaluate("""() => {
        const p = window.simplestats.plot, x = p.getAxes().xaxis;
        const values = p.getData()[0].data.filter(d => d[1] !== null && d[0] >= x.min && d[0] <= x.max).map(d => d[1]);
        return {min: Math.min(...values), max: Math.max(...values), last: values[values.length - 1], n: values.length};
    }""")
    assert expected["n"] > 3 and expected["max"] < 900, expected
    text = page.inner_text("#plot-legend li[data-key='read.level']")
    for name in ("min", "max", "last"):
        assert "%s %d" % (name, expected[name]) in text, (text, expected)
    page.close()


def make_board(server, panels, name="Reading"):
    status, _, body = server.http("POST", "/api/dashboards", body=json.dumps({"name": name, "panels": panels}).encode(),
                                  headers={"Content-Type": "application/json"})
    if status in (404, 405):
        pytest.skip("this server keeps no dashboards")
    assert status == 201, body
    return json.loads(body)["id"]


def wait_board(page, count):
    wait_for(page, """count => window.simplestats && window.simplestats.panels.length === count
        && window.simplestats.panels.every(p => p.flot !== null && p.series.length > 0)""", count, "panels drawn")


def test_shared_crosshair(shared_server, ny_context, artifacts):  # noqa: F811
    """The pointer over one panel of a dashboard puts a crosshair, with that panel's values, on the others."""
    server = shared_server
    now = time.time()
    send_tuples(server, [row for i in range(1, 50) for row in
                         (["cross.a", now - 5 * i, "%dg" % (i % 9)], ["cross.b_ms", now - 5 * i, 20.0 + i % 4])])
    wait_for_keys(server, ["cross.a", "cross.b_ms"])
    board = make_board(server, [{"title": "a", "series": ["cross.a"]}, {"title": "b", "series": ["cross.b_ms"]}])
    watch = Watch()
    page = watch.attach(ny_context.new_page())
    page.goto(server.base_url + "/?" + urllib.parse.urlencode({"dashboard": board, "range": "5m"}))
    wait_board(page, 2)
    box = page.locator("#dash-panels .dash-panel[data-index='0'] .panel-plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    other = "#dash-panels .dash-panel[data-index='1'] .plot-crosshair"
    page.wait_for_selector(other + ":not(.d-none)", timeout=WAIT_MS)
    # At the same time on both: the pointer's time on panel 0, placed on panel 1's axis.
    placed = page.evaluate("""([mx, sel]) => {
        const [a, b] = window.simplestats.panels.map(p => p.flot);
        const at = a.getAxes().xaxis.c2p(mx - a.getPlaceholder().offset().left - a.getPlotOffset().left);
        return [parseFloat(document.querySelector(sel).style.left), b.getPlotOffset().left + b.getAxes().xaxis.p2c(at)];
    }""", [box["x"] + box["width"] * 0.6, other])
    assert abs(placed[0] - placed[1]) < 2, placed
    values = page.inner_text(other + " .crosshair-values")
    assert values.strip().endswith("ms"), values   # panel 1's value, in its unit
    artifacts.shoot(page, "19-shared-crosshair")
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] + 200)
    page.wait_for_selector(other + ".d-none", state="attached", timeout=WAIT_MS)
    watch.check(page)
    page.close()


def test_panel_edited_in_place(shared_server, ny_context, artifacts):  # noqa: F811
    """A panel's series, fields, range, unit and kind edited on the dashboard are stored: a reload shows them."""
    server = shared_server
    now = time.time()
    send_tuples(server, [row for i in range(1, 50) for row in
                         (["edit.a", now - 5 * i, "%dg" % (100 + i)], ["edit.t", now - 5 * i, 2.0 + i % 3])])
    wait_for_keys(server, ["edit.a", "edit.t"])
    status, _, body = server.http("POST", "/api/dashboards", headers={"Content-Type": "application/json"},
                                  body=json.dumps({"name": "Edit", "refresh": 30, "panels": [
                                      {"title": "first", "series": ["edit.a"]},
                                      {"title": "second", "series": ["edit.a"]}]}).encode())
    if status in (404, 405):
        pytest.skip("this server keeps no dashboards")
    board = json.loads(body)["id"]
    watch = Watch()
    page = watch.attach(ny_context.new_page())
    page.goto(server.base_url + "/?" + urllib.parse.urlencode({"dashboard": board, "range": "5m"}))
    wait_board(page, 2)
    # The dashboard's stored refresh is the poll interval (no refresh in the URL).
    assert page.evaluate("window.simplestats.pollSeconds") == 30
    assert page.input_value("#dash-refresh") == "30"

    panel = "#dash-panels .dash-panel[data-index='1'] "
    page.click(panel + "button.panel-edit")
    page.wait_for_selector(panel + "form.panel-editor:not(.d-none)", timeout=WAIT_MS)
    check_axe(page, artifacts, "panel editor")
    # A mistake is named, nothing is saved.
    page.fill(panel + "[name=fields]", "mean, p42")
    page.click(panel + "form.panel-editor button[type=submit]")
    wait_for(page, "sel => document.querySelector(sel).textContent.indexOf('p42') !== -1",
             panel + ".panel-edit-error", "the editor's error")
    assert server.get_json("/api/dashboards/" + board)["panels"][1]["title"] == "second"
    page.fill(panel + "[name=title]", "timings")
    page.fill(panel + "[name=series]", "edit.t")
    page.fill(panel + "[name=fields]", "max")
    page.fill(panel + "[name=range]", "-10m")
    page.select_option(panel + "[name=unit]", "s")
    page.select_option(panel + "[name=kind]", "bars")
    page.click(panel + "form.panel-editor button[type=submit]")
    wait_for(page, """() => window.simplestats.panels.length === 2 && window.simplestats.panels[1].series[0] === 'edit.t'
        && window.simplestats.panels[1].flot !== null""", what="the edited panel drawn")
    stored = server.get_json("/api/dashboards/" + board)["panels"][1]
    assert {k: stored.get(k) for k in ("title", "series", "fields", "range", "unit", "kind")} == {
        "title": "timings", "series": ["edit.t"], "fields": ["max"], "range": {"from": "-10m", "until": "now"},
        "unit": "s", "kind": "bars"}, stored
    page.select_option("#dash-refresh", "10")
    wait_for(page, "() => window.simplestats.pollSeconds === 10", what="the new refresh")

    page.reload()
    wait_board(page, 2)
    assert page.eval_on_selector_all("#dash-panels .panel-title", "ts => ts.map(t => t.textContent)") == ["first", "timings"]
    assert page.inner_text(panel + ".panel-kind") == "bars"
    drawn = page.evaluate("""() => { const p = window.simplestats.panels[1].flot, x = p.getAxes().xaxis;
        return {span: x.max - x.min, fields: p.getData().map(s => s.field), units: p.getData().map(s => s.unit),
                ticks: p.getAxes().yaxis.ticks.map(t => t.label)}; }""")
    # Its own range, not the page's 5 minutes: 10 minutes, give or take a few buckets (a batch read
    # without `until` reaches the series' latest point, and the bars' axis is the answer's range).
    assert 590 <= drawn["span"] <= 660, drawn
    assert drawn["fields"] == ["max"] and drawn["units"] == ["s"], drawn
    assert all(t.endswith(" s") or t.endswith("ms") for t in drawn["ticks"]), drawn
    assert page.evaluate("window.simplestats.pollSeconds") == 10
    watch.check(page)
    page.close()


def test_max_points_from_health(make_server, browser):  # noqa: F811
    """The page takes the point limit from /api/health: with --max-points 100, 5 s over an hour is disabled at once."""
    server = make_server("--max-points", "100").start()
    assert server.get_json("/api/health")["max_points"] == 100
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="UTC", locale="en-US")
    try:
        page = ctx.new_page()
        page.goto(server.base_url + "/?range=1h")   # nothing plotted: no series answer tells the limit
        wait_for(page, "() => window.simplestats && window.simplestats.maxPoints === 100", what="the limit read")
        wait_for(page, "() => { const o = document.querySelector('#resolution option[value=\\'5s\\']');"
                       " return o !== null && o.disabled; }", what="5 s disabled")
        reason = page.get_attribute("#resolution option[value='5s']", "title")
        assert "the limit is 100" in reason, reason
        assert not page.is_disabled("#resolution option[value='1m']")
    finally:
        ctx.close()
