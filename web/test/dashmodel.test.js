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

test("a panel's form and back: the same panel", async () => {
    const { panelToForm, panelFromForm } = await import("../static/js/dashmodel.js");
    const panel = {
        title: "api", series: ["a", "b"], filter: "api host:*", fields: ["mean", "p99"],
        range: { from: "-6h", until: "now" }, unit: "ms", kind: "bars", log: true, width: 6,
    };
    assert.deepEqual(panelFromForm(panelToForm(panel), panel), panel);
    const fixed = { series: ["a"], range: { from: 1700000000, until: 1700003600 }, kind: "lines", title: "a" };
    assert.equal(panelToForm(fixed).range, "1700000000..1700003600");
    assert.deepEqual(panelFromForm(panelToForm(fixed), fixed), fixed);
});

test("an edited panel: new series, fields for all, follow, no unit; the rest kept", async () => {
    const { panelToForm, panelFromForm, replacePanel } = await import("../static/js/dashmodel.js");
    const old = { title: "t", series: ["a", "b"], series_fields: { a: ["mean"], b: ["rate"] }, kind: "lines", range: "follow", unit: "s", width: 6 };
    const form = { ...panelToForm(old), series: " b\n\nc\nb ", unit: "", kind: "area", range: "" };
    assert.deepEqual(panelFromForm(form, old), {
        title: "t", series: ["b", "c"], series_fields: { b: ["rate"] }, kind: "area", range: "follow", width: 6,
    });
    const fields = panelFromForm({ ...form, fields: "p90, max", range: "-24h", title: "" }, old);
    assert.deepEqual([fields.fields, fields.series_fields, fields.range, fields.title], [["p90", "max"], undefined, { from: "-24h", until: "now" }, "b, c"]);
    const board = { name: "d", panels: [old, { series: ["x"] }] };
    assert.deepEqual(replacePanel(board, 1, { series: ["y"] }).panels, [old, { series: ["y"] }]);
    assert.deepEqual(board.panels[1], { series: ["x"] });
});

test("a form that cannot make a panel names the field at fault", async () => {
    const { panelToForm, panelFromForm } = await import("../static/js/dashmodel.js");
    const good = panelToForm({ series: ["a"] });
    for (const [change, word] of [
        [{ series: " \n", filter: " " }, /^Error: Series:/],
        [{ fields: "mean, p42" }, /^Error: Fields: no series has p42/],
        [{ range: "last week" }, /^Error: Range:/],
        [{ range: "20..10" }, /^Error: Range:/],
        [{ unit: "furlongs" }, /^Error: Unit:/],
        [{ kind: "pie" }, /^Error: Kind:/],
    ]) {
        assert.throws(() => panelFromForm({ ...good, ...change }), word);
    }
});

test("a dashboard polls at its stored refresh unless the URL names one", async () => {
    const { pollSeconds } = await import("../static/js/dashmodel.js");
    assert.equal(pollSeconds({ refresh: 30 }, 5, false), 30);
    assert.equal(pollSeconds({ refresh: 30 }, 2, true), 2);
    assert.equal(pollSeconds({ refresh: "x" }, 5, false), 5);
    assert.equal(pollSeconds({}, 5, false), 5);
    assert.equal(pollSeconds(null, 10, false), 10);
});
