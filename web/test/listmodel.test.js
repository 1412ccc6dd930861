import { test } from "node:test";
import assert from "node:assert/strict";
import { sortMetrics, treeRows, listRows, nameParts } from "../static/js/listmodel.js";

const m = (key, value, seen) => ({ key, name: key.split(";")[0], value, last_seen: seen });

test("sort by name is natural, by value and last seen keep missing values last", () => {
    const rows = [m("svc10", 1, 5), m("svc2", null, 9), m("svc1", 3, 1)];
    assert.deepEqual(sortMetrics(rows, "name", false).map((r) => r.key), ["svc1", "svc2", "svc10"]);
    assert.deepEqual(sortMetrics(rows, "value", false).map((r) => r.key), ["svc10", "svc1", "svc2"]);
    assert.deepEqual(sortMetrics(rows, "value", true).map((r) => r.key), ["svc1", "svc10", "svc2"]);
    assert.deepEqual(sortMetrics(rows, "seen", true).map((r) => r.key), ["svc2", "svc10", "svc1"]);
    assert.deepEqual(listRows([rows[0]])[0], { kind: "series", id: "svc10", metric: rows[0], depth: 0, label: null });
});

test("the tree groups by name segment and expands the open groups", () => {
    const rows = sortMetrics([m("api.latency;host=a", 1, 1), m("api.latency;host=b", 1, 1), m("api.hits", 1, 1),
        m("db.q", 1, 1), m("top", 1, 1)], "name", false);
    const closed = treeRows(rows, new Set());
    assert.deepEqual(closed.map((r) => [r.kind, r.id, r.count]), [["group", "g:api", 3], ["group", "g:db", 1], ["series", "top", undefined]]);
    const open = treeRows(rows, new Set(["api"]));
    assert.deepEqual(open.map((r) => [r.id, r.depth]), [["g:api", 0], ["api.hits", 1], ["api.latency;host=a", 1],
        ["api.latency;host=b", 1], ["g:db", 0], ["top", 0]]);
    assert.equal(open[1].label, "hits");
});

test("names wrap between segments", () => {
    assert.deepEqual(nameParts("a.bb.c"), ["a.", "bb.", "c"]);
    assert.deepEqual(nameParts("http.open_connections-x"), ["http.", "open_", "connections-", "x"]);
});
