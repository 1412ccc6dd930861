import { test } from "node:test";
import assert from "node:assert/strict";
import {
    panelFromState, panelRequest, movePanel, duplicatePanel, removePanel, addPanel, storable, lastValue,
} from "../static/js/dashmodel.js";
import { defaultState, toggleField } from "../static/js/state.js";

test("a panel holds what the explorer plots, a live range as 'follow'", () => {
    let state = { ...defaultState(), selected: ["a", "b"] };
    state = toggleField(state, "timer", "p99");
    const panel = panelFromState(state, new Map([["a", "timer"], ["b", "counter"]]), "bars");
    assert.deepEqual(panel, {
        title: "a, b", series: ["a", "b"], range: "follow", kind: "bars",
        series_fields: { a: ["mean", "p99"], b: ["rate"] },
    });
    const fixed = panelFromState({ ...state, range: "custom", customFrom: 10, customUntil: 20 }, new Map(), "pie", "T");
    assert.deepEqual([fixed.range, fixed.kind, fixed.title], [{ from: 10, until: 20 }, "lines", "T"]);
});

test("a panel reads its own range, or the page's when it follows it", () => {
    const state = { ...defaultState(), range: "6h" };
    const follows = panelRequest({ series: ["a"], series_fields: { a: ["p90"] }, range: "follow" }, state);
    assert.deepEqual([follows.from, follows.until, follows.follows, follows.fieldsOf("a"), follows.fieldsOf("z")],
        ["-6h", "now", true, ["p90"], null]);
    const own = panelRequest({ series: ["a"], fields: ["max"], range: { from: "-1d", until: "now" } }, state);
    assert.deepEqual([own.from, own.follows, own.fieldsOf("a")], ["-1d", false, ["max"]]);
});

test("panels move, duplicate and go; the stored form has no server members", () => {
    const board = { id: "x", name: "B", created: 1, updated: 2, panels: [{ title: "1" }, { title: "2" }, { title: "3" }] };
    assert.deepEqual(movePanel(board, 0, 1).panels.map((p) => p.title), ["2", "1", "3"]);
    assert.equal(movePanel(board, 0, -1), board);
    assert.deepEqual(duplicatePanel(board, 1).panels.map((p) => p.title), ["1", "2", "2 (copy)", "3"]);
    assert.deepEqual(removePanel(board, 1).panels.map((p) => p.title), ["1", "3"]);
    assert.deepEqual(addPanel(board, { title: "4" }).panels.length, 4);
    assert.deepEqual(storable(board), { name: "B", panels: board.panels });
    assert.equal(board.panels.length, 3);
});

test("a number panel shows the last value that is not a gap", () => {
    assert.deepEqual(lastValue([{ unit: "ms", data: [[0, 1], [5, 2], [10, null]] }]), { value: 2, unit: "ms", at: 5 });
    assert.equal(lastValue([{ unit: "", data: [[0, null]] }]), null);
});
