import { test } from "node:test";
import assert from "node:assert/strict";
import { forwardRows, forwardSummary, LATE_SECONDS } from "../static/js/forwardmodel.js";

function destination(fields) {
    return {
        destination: "carbon://10.0.0.5:2003", name: "tcp_10_0_0_5_2003", state: "connected", connected: true,
        connected_seconds: 3600, reconnect_in: null, failures: 0, last_error: null, queued_lines: 0,
        queued_bytes: 0, oldest_queued_seconds: null, memory_bytes: 0, disk_bytes: 0, dropped_lines: 0,
        ...fields,
    };
}

test("no forwarding gives no rows and no summary", () => {
    assert.deepEqual(forwardRows(null), []);
    assert.deepEqual(forwardRows(undefined), []);
    assert.deepEqual(forwardRows({ destinations: [] }), []);
    assert.equal(forwardSummary(null), "");
    assert.equal(forwardSummary({ tier: 5, destinations: [] }), "");
});

test("a connected destination is green, with its address and an empty queue", () => {
    const [row] = forwardRows({ destinations: [destination({})] });
    assert.equal(row.key, "tcp_10_0_0_5_2003");
    assert.equal(row.address, "carbon://10.0.0.5:2003");
    assert.equal(row.dot, "ok");
    assert.equal(row.connected, true);
    assert.equal(row.stateText, "connected");
    assert.equal(row.title, "connected for 1 h");
    assert.equal(row.queued, "0");
    assert.equal(row.age, "\u2014");
    assert.equal(row.late, false);
    assert.equal(row.dropped, "0");
    assert.equal(row.droppedAny, false);
});

test("a waiting destination is amber and says when it tries again and why it failed", () => {
    const [row] = forwardRows({ destinations: [destination({
        state: "waiting", connected: false, connected_seconds: null, reconnect_in: 3.21, failures: 4,
        last_error: "Connection was refused by other side: 111: Connection refused.",
        queued_lines: 12345, oldest_queued_seconds: 42.4,
    })] });
    assert.equal(row.dot, "wait");
    assert.equal(row.connected, false);
    assert.equal(row.stateText, "not connected, retry in 3.2 s");
    assert.equal(row.label, "not connected");
    assert.equal(row.retry, "retry in 3.2 s");
    assert.equal(row.title, "not connected; next try in 3.2 s; 4 failures; "
        + "last error: Connection was refused by other side: 111: Connection refused.");
    assert.equal(row.queued, "12,345");
    assert.equal(row.queuedLines, 12345);
    assert.equal(row.age, "42 s");
    assert.equal(row.late, false);
});

test("connecting is amber too; an unknown state is amber and named as it is", () => {
    const rows = forwardRows({ destinations: [
        destination({ state: "connecting", connected: false, connected_seconds: null }),
        destination({ state: "resting", connected: false, connected_seconds: null, name: "b" }),
    ] });
    assert.deepEqual(rows.map((r) => [r.dot, r.stateText]), [["wait", "connecting"], ["wait", "resting"]]);
});

test("the oldest queued line is late past a minute, and dropped lines are flagged", () => {
    const [before, after] = forwardRows({ destinations: [
        destination({ queued_lines: 10, oldest_queued_seconds: LATE_SECONDS }),
        destination({ name: "b", queued_lines: 10, oldest_queued_seconds: 90, dropped_lines: 2500 }),
    ] });
    assert.equal(before.late, false);
    assert.equal(before.age, "1 min");
    assert.equal(after.late, true);
    assert.equal(after.age, "1.5 min");
    assert.equal(after.dropped, "2,500");
    assert.equal(after.droppedAny, true);
});

test("a UDP destination is grey and says it only sends", () => {
    const [row] = forwardRows({ destinations: [{
        destination: "carbon+udp://127.0.0.1:2003", name: "udp_127_0_0_1_2003", state: "sending",
        connected: true, last_error: null, queued_lines: 0, oldest_queued_seconds: null, dropped_lines: 0,
    }] });
    assert.equal(row.dot, "udp");
    assert.equal(row.connected, false);
    assert.equal(row.stateText, "UDP, sending");
    assert.equal(row.title, "UDP, sending");
});

test("the summary names the tier, the names, and the mode with several destinations", () => {
    assert.equal(forwardSummary({ tier: 5, names: "paths", mode: "all", prefix: "", destinations: [{}] }),
        "every 5 s, paths");
    assert.equal(forwardSummary({ tier: 60, names: "both", mode: "hash", prefix: "dc1", destinations: [{}, {}] }),
        "every 1 min, both, hashed, prefix dc1");
});
