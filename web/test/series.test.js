import { test } from "node:test";
import assert from "node:assert/strict";
import {
    closedPoints, partialFrom, mergeSince, plotSeries, unitFor, assignAxes, valueAt,
    resolutionChoices, autoStep, colour, PALETTE, countPoints,
} from "../static/js/series.js";
import { fieldsFor, defaultState } from "../static/js/state.js";

test("the bucket in progress is left out", () => {
    const points = [[100, 5], [105, 6], [110, 1]];
    assert.equal(partialFrom(112.4, 5), 110);
    assert.deepEqual(closedPoints(points, 110), [[100, 5], [105, 6]]);
    assert.equal(closedPoints(points, 115), points);
});

test("since: held points before it, the fresh ones from it, nothing before from", () => {
    const held = [[0, 1], [5, 2], [10, 3], [15, 4]];
    const fresh = [[10, 30], [15, 40], [20, null]];
    assert.deepEqual(mergeSince(held, fresh, 10, 5), [[5, 2], [10, 30], [15, 40], [20, null]]);
});

test("one field per series by default, gaps kept, closed buckets only", () => {
    const batch = {
        partial_from: 20,
        series: [
            { key: "t", name: "api.latency", type: "timer",
              fields: { mean: [[10, 1], [15, null], [20, 3]], p90: [[10, 2], [15, null], [20, 4]] } },
            { key: "c", name: "hits", type: "counter", fields: { rate: [[10, 0.5], [15, null], [20, 0.1]] } },
        ],
    };
    const state = defaultState();
    const series = plotSeries(batch, (type) => fieldsFor(state, type));
    assert.deepEqual(series.map((s) => [s.key, s.field, s.unit, s.yaxis]), [["t", "mean", "ms", 1], ["c", "rate", "/s", 2]]);
    assert.deepEqual(series[0].data, [[10, 1], [15, null]]);
    assert.deepEqual(series[1].data, [[10, 0.5], [15, null]]);
    assert.notEqual(series[0].color, series[1].color);
});

test("units by type, field and name; axes by unit", () => {
    assert.equal(unitFor("timer", "p99", "x"), "ms");
    assert.equal(unitFor("timer", "count", "x"), "");
    assert.equal(unitFor("counter", "rate", "x"), "/s");
    assert.equal(unitFor("sample", "mean", "db.query_ms"), "ms");
    assert.equal(unitFor("gauge", "last", "mem.heap_bytes"), "bytes");
    assert.equal(unitFor("gauge", "last", "cpu.load"), "");
    assert.deepEqual(assignAxes(["", "ms", "", "/s"]), { "": 1, ms: 2, "/s": 2 });
});

test("palette: twenty distinct colours, then generated ones, never repeating early", () => {
    assert.equal(new Set(PALETTE).size, 20);
    const forty = Array.from({ length: 40 }, (_, i) => colour(i));
    assert.equal(new Set(forty).size, 40);
});

test("value at a time: the bucket holding it", () => {
    const points = [[0, 1], [5, null], [10, 3]];
    assert.equal(valueAt(points, 2, 5), 1);
    assert.equal(valueAt(points, 7, 5), null);
    assert.equal(valueAt(points, 14.9, 5), 3);
    assert.equal(valueAt(points, 15, 5), null);
    assert.equal(valueAt([], 1, 5), null);
});

test("resolutions that cannot answer a range say why", () => {
    const tiers = [{ step: 5, retention: 21600 }, { step: 60, retention: 8 * 86400 }, { step: 3600, retention: null }];
    const now = 1700000000;
    const week = resolutionChoices(tiers, now - 7 * 86400, now, now, 20000);
    assert.deepEqual(week.map((c) => c.usable), [false, true, true]);
    assert.match(week[0].reason, /^5 s is kept 6 h 0 min; this range starts 7 d 0 h ago/);
    const many = resolutionChoices(tiers, now - 3600, now, now, 100);
    assert.deepEqual(many.map((c) => c.usable), [false, true, true]);
    assert.match(many[0].reason, /would give 721 points, the limit is 100/);
    assert.equal(autoStep(tiers, now - 3600, now, now), 5);
    assert.equal(autoStep(tiers, now - 86400, now, now), 60);
    assert.equal(autoStep(tiers, now - 30 * 86400, now, now), 3600);
});

test("lone points are counted", () => {
    assert.deepEqual(countPoints([[0, 1], [5, null], [10, 2], [15, 3]]), { present: 3, lone: 1 });
});

test("legend figures leave the gaps out", async () => {
    const { legendStats } = await import("../static/js/series.js");
    assert.deepEqual(legendStats([[0, 1], [5, null], [10, 5], [15, 3]]), { min: 1, max: 5, mean: 3, last: 3 });
    assert.equal(legendStats([[0, null]]), null);
});
