// Reading values: units set by the user, the legend over the visible range, UTC and local times.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseState, stateToSearch, defaultState, setUnit, UNITS } from "../static/js/state.js";
import { plotSeries, chosenUnit, legendStats } from "../static/js/series.js";
import { formatTime, toLocalInput, fromLocalInput, formatValue } from "../static/js/format.js";
import { panelFromState, panelUnit } from "../static/js/dashmodel.js";

test("units, log scale and UTC go through the URL and back, keys with colons and commas too", () => {
    let state = { ...defaultState(), selected: ["odd;url=http://x/a:1,b", "web.rtt"], log: true, utc: true };
    state = setUnit(state, "odd;url=http://x/a:1,b", "bytes");
    state = setUnit(state, "web.rtt", "none");
    const search = stateToSearch(state);
    assert.match(search, /log=1/);
    assert.match(search, /tz=utc/);
    assert.deepEqual(parseState(search), state);
});

test("a unit that is not one of UNITS sets the series back to its guessed unit", () => {
    let state = setUnit(defaultState(), "a", "ms");
    assert.deepEqual(state.units, { a: "ms" });
    state = setUnit(state, "a", null);
    assert.deepEqual(state.units, {});
    assert.deepEqual(setUnit(defaultState(), "a", "parsecs").units, {});
    assert.deepEqual(parseState("unit=parsecs:a&unit=:b&unit=ms").units, {});
    assert.deepEqual(UNITS, ["none", "ms", "s", "bytes", "%", "/s"]);
});

test("a unit set by the user wins over the guess, but counts stay plain", () => {
    assert.equal(chosenUnit("gauge", "last", "mem.rss", null), "bytes");
    assert.equal(chosenUnit("gauge", "last", "mem.rss", "none"), "");
    assert.equal(chosenUnit("timer", "mean", "t", "s"), "s");
    assert.equal(chosenUnit("timer", "count", "t", "s"), "");
    const batch = {
        partial_from: 1000,
        series: [
            { key: "a", name: "a", type: "gauge", fields: { last: [[0, 2048]] } },
            { key: "b", name: "b", type: "timer", fields: { mean: [[0, 1500]] } },
        ],
    };
    const series = plotSeries(batch, () => null, (key) => (key === "a" ? "bytes" : null));
    assert.deepEqual(series.map((s) => [s.key, s.unit, s.guessed, s.yaxis]), [["a", "bytes", "", 1], ["b", "ms", "ms", 2]]);
    assert.equal(formatValue(2048, series[0].unit), "2 KiB");
    assert.equal(formatValue(1500, series[1].unit), "1.5 s");
});

test("the legend's figures cover the visible range only", () => {
    const points = [[0, 100], [10, 1], [20, 3], [30, null], [40, 5], [50, 900]];
    assert.deepEqual(legendStats(points, 10, 40), { min: 1, max: 5, mean: 3, last: 5 });
    assert.deepEqual(legendStats(points), { min: 1, max: 900, mean: 201.8, last: 900 });
    assert.equal(legendStats(points, 25, 35), null);
});

test("times in UTC read the same in every zone; the range inputs follow the switch", () => {
    assert.equal(formatTime(1700000000, true), "2023-11-14 22:13:20 UTC");
    assert.equal(toLocalInput(1700000000, true), "2023-11-14T22:13:20");
    assert.equal(fromLocalInput("2023-11-14T22:13:20", true), 1700000000);
    assert.equal(fromLocalInput("2023-11-14T22:13", true), 1699999980);
    assert.equal(fromLocalInput(toLocalInput(1700000000)), 1700000000);
    assert.equal(fromLocalInput("yesterday", true), null);
});

test("a panel keeps the units and log scale it was made with; its own unit wins over the page's", () => {
    const state = { ...setUnit({ ...defaultState(), selected: ["a", "b"] }, "a", "%"), log: true };
    const panel = panelFromState(state, new Map([["a", "gauge"], ["b", "gauge"]]));
    assert.deepEqual(panel.units, { a: "%" });
    assert.equal(panel.log, true);
    assert.equal(panelUnit(panel, "a", defaultState()), "%");
    assert.equal(panelUnit(panel, "b", setUnit(defaultState(), "b", "s")), "s");
    assert.equal(panelUnit({ ...panel, unit: "bytes" }, "b", defaultState()), "bytes");
    assert.equal(panelUnit({ series: ["c"] }, "c", defaultState()), null);
});
