import { test } from "node:test";
import assert from "node:assert/strict";
import {
    parseState, stateToSearch, defaultState, toggleField, fieldsFor, addTerm, filterTerms,
    showsServerSeries, zoomedOut, rangeBounds, parseFields, exportQuery,
} from "../static/js/state.js";

test("the default state has an empty query", () => {
    assert.equal(stateToSearch(defaultState()), "");
    assert.deepEqual(parseState(""), defaultState());
});

test("every part of the state goes through the URL and back", () => {
    const state = {
        ...defaultState(),
        filter: "web host:web1",
        selected: ["web.latency;host=web1", "db.q"],
        range: "custom", customFrom: 1700000000, customUntil: 1700003600,
        resolution: "1m",
        fields: { timer: ["mean", "p99"], counter: ["count"] },
        dayweek: { key: "db.q", field: "mean" },
        sort: "value", sortDesc: true, view: "tree", refresh: 2,
        dashboard: "5f2c9a0e1b3d", wall: true,
    };
    assert.deepEqual(parseState(stateToSearch(state)), state);
});

test("keys with commas get one parameter each; old comma-joined URLs still read", () => {
    const state = { ...defaultState(), selected: ["a;t=x,y", "b"] };
    assert.deepEqual(parseState(stateToSearch(state)).selected, ["a;t=x,y", "b"]);
    assert.deepEqual(parseState("series=a,b,a").selected, ["a", "b"]);
});

test("bad values in the URL fall back to the defaults", () => {
    const state = parseState("range=2y&resolution=fast&from=10&until=5&sort=size&view=grid&refresh=7&dashboard=a/b");
    assert.deepEqual(state, defaultState());
});

test("fields: unknown types and names are dropped, the defaults are not written", () => {
    assert.deepEqual(parseFields("timer:p99+nope gauge:last bogus:x"), { timer: ["p99"] });
    let state = toggleField(defaultState(), "timer", "p99");
    assert.deepEqual(fieldsFor(state, "timer"), ["mean", "p99"]);
    state = toggleField(state, "timer", "p99");
    assert.deepEqual(state.fields, {});
    // The last field cannot be taken away.
    assert.deepEqual(fieldsFor(toggleField(state, "timer", "mean"), "timer"), ["mean"]);
    assert.deepEqual(fieldsFor(defaultState(), "counter"), ["rate"]);
    assert.deepEqual(fieldsFor(defaultState(), "gauge"), ["last"]);
});

test("filter terms: added once, never with spaces", () => {
    assert.deepEqual(filterTerms("  web   host:web1 "), ["web", "host:web1"]);
    assert.equal(addTerm("web", "host:web1"), "web host:web1");
    assert.equal(addTerm("web host:web1", "host:web1"), "web host:web1");
    assert.equal(addTerm("web", "url:a b"), null);
    assert.equal(addTerm("", "x:1"), "x:1");
});

test("server series are listed apart unless the filter asks for them", () => {
    assert.ok(showsServerSeries("simplestats"));
    assert.ok(showsServerSeries("/^simplestats\\./"));
    assert.ok(!showsServerSeries("web"));
    assert.ok(!showsServerSeries("-simplestats"));
});

test("zooming out doubles the range around its middle, never past now", () => {
    const state = { ...defaultState(), range: "custom", customFrom: 1000, customUntil: 2000 };
    const out = zoomedOut(state, 10000);
    assert.deepEqual([out.customFrom, out.customUntil], [500, 2500]);
    const live = zoomedOut({ ...defaultState(), range: "1h" }, 100000);
    assert.deepEqual([live.customFrom, live.customUntil], [100000 - 7200, 100000]);
    assert.deepEqual(rangeBounds(defaultState(), 5000), { from: 1400, until: 5000 });
});

test("an export takes the plotted series, else the filter's matches, over the plot's range", () => {
    const plotted = { ...defaultState(), filter: "web", selected: ["a;h=1", "b"], range: "6h", resolution: "1m" };
    assert.equal(exportQuery(plotted, "csv"), "key=a%3Bh%3D1&key=b&from=-6h&until=now&format=csv");
    assert.equal(exportQuery(plotted, "csv-wide"), "key=a%3Bh%3D1&key=b&from=-6h&until=now&format=csv-wide&resolution=1m");
    assert.equal(exportQuery({ ...plotted, selected: [] }, "ndjson"), "filter=web&from=-6h&until=now&format=ndjson");
});
