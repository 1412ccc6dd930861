import { test } from "node:test";
import assert from "node:assert/strict";
import { ruleFromForm, describeRule, panelRows, firingBands } from "../static/js/alertsmodel.js";

test("the editor's form makes the server's rule", () => {
    assert.deepEqual(ruleFromForm({ name: " hot ", filter: "room.temp", condition: "above", threshold: "50",
        field: "last", hold: "10", recover: "45", webhook: "http://127.0.0.1:9/hook" }), {
        name: "hot", filter: "room.temp", above: 50, field: "last", recover: 45, for: 10,
        notify: [{ type: "webhook", url: "http://127.0.0.1:9/hook" }],
    });
    assert.deepEqual(ruleFromForm({ name: "gone", filter: "job.*", condition: "stopped", after: "15" }),
        { name: "gone", filter: "job.*", stopped: { after: 15 }, notify: [] });
    assert.deepEqual(ruleFromForm({ name: "odd", filter: "lat", condition: "anomaly", field: "p99", k: "",
        apprise: "json://127.0.0.1:9/" }).anomaly, { method: "ewma", k: 3 });
});

test("a missing or non-numeric field is named", () => {
    assert.throws(() => ruleFromForm({ name: "", filter: "a" }), /name/);
    assert.throws(() => ruleFromForm({ name: "x", filter: " " }), /filter/);
    assert.throws(() => ruleFromForm({ name: "x", filter: "a", condition: "above", threshold: "hot" }), /threshold/);
    assert.throws(() => ruleFromForm({ name: "x", filter: "a", condition: "stopped", after: "" }), /after/);
});

test("rules read as a sentence", () => {
    assert.equal(describeRule({ condition: "above", field: "last", above: 90, recover: 80, for: 30 }),
        "last above 90 for 30 s (resolves below 80)");
    assert.equal(describeRule({ condition: "stopped", stopped: { after: 15 } }), "nothing reported for 15 s");
});

test("the panel lists firing, then pending, then resolved; never ok", () => {
    const rows = panelRows([
        { state: "ok", since: 5 }, { state: "resolved", since: 9 }, { state: "firing", since: 1 },
        { state: "pending", since: 3 }, { state: "firing", since: 2 },
    ]);
    assert.deepEqual(rows.map((r) => [r.state, r.since]),
        [["firing", 2], ["firing", 1], ["pending", 3], ["resolved", 9]]);
});

test("firing periods of the plotted series, clipped to the range, still firing up to its end", () => {
    const history = [
        { rule_id: "r", rule: "hot", series: "a", state: "firing", time: 100 },
        { rule_id: "r", rule: "hot", series: "a", state: "resolved", time: 150 },
        { rule_id: "r", rule: "hot", series: "b", state: "firing", time: 120 },
        { rule_id: "r", rule: "hot", series: "a", state: "firing", time: 200 },
    ];
    const alerts = [{ rule_id: "r", rule: "hot", series: "a", state: "firing", since: 200, fired_at: 200 },
        { rule_id: "q", rule: "old", series: "a", state: "firing", since: 50, fired_at: 50 }];
    assert.deepEqual(firingBands(history, alerts, ["a"], 90, 300), [
        { key: "a", rule: "hot", from: 100, until: 150 },
        { key: "a", rule: "hot", from: 200, until: 300 },
        { key: "a", rule: "old", from: 90, until: 300 },
    ]);
    assert.deepEqual(firingBands(history, [], ["a"], 160, 190), []);
});
