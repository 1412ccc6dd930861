import { test } from "node:test";
import assert from "node:assert/strict";
import {
    tickDigits, formatSI, formatValue, formatSeconds, formatStep, stepName, naturalCompare, formatAgo, significant,
} from "../static/js/format.js";

test("SI formatting keeps three significant digits and a prefix", () => {
    assert.equal(formatSI(130.33555804543153), "130");
    assert.equal(formatSI(1.23456), "1.23");
    assert.equal(formatSI(1234), "1.23k");
    assert.equal(formatSI(2500000), "2.5M");
    assert.equal(formatSI(0.0042), "4.2m");
    assert.equal(formatSI(0), "0");
    assert.equal(formatSI(-1500), "-1.5k");
    assert.equal(formatSI(null), "\u2014");
    assert.equal(formatSI(3e20), "3.00e+20");
});

test("significant drops trailing zeros only after the point", () => {
    assert.equal(significant(100), "100");
    assert.equal(significant(1.5), "1.5");
    assert.equal(significant(0.12345), "0.123");
});

test("durations pick the unit that reads best", () => {
    assert.equal(formatValue(130.3, "ms"), "130 ms");
    assert.equal(formatValue(2500, "ms"), "2.5 s");
    assert.equal(formatValue(0.25, "ms"), "250 µs");
    assert.equal(formatSeconds(90), "1.5 min");
    assert.equal(formatSeconds(7200), "2 h");
    assert.equal(formatValue(3, "s"), "3 s");
});

test("bytes, percent and rates", () => {
    assert.equal(formatValue(2048, "bytes"), "2 KiB");
    assert.equal(formatValue(512, "bytes"), "512 B");
    assert.equal(formatValue(42.123, "%"), "42.1 %");
    assert.equal(formatValue(1500, "/s"), "1.5k/s");
    assert.equal(formatValue(null, "ms"), "\u2014");
});

test("steps as shown and as the API names them", () => {
    assert.equal(formatStep(5), "5 s");
    assert.equal(formatStep(60), "1 min");
    assert.equal(formatStep(3600), "1 h");
    assert.equal(stepName(5), "5s");
    assert.equal(stepName(60), "1m");
    assert.equal(stepName(3600), "1h");
    assert.equal(stepName(86400), "1d");
});

test("natural order puts svc2 before svc10", () => {
    const names = ["svc10", "svc2", "svc1", "app.b", "app.a10", "app.a9", "svc02"];
    assert.deepEqual(names.slice().sort(naturalCompare), ["app.a9", "app.a10", "app.b", "svc1", "svc2", "svc02", "svc10"]);
    assert.equal(naturalCompare("a", "a"), 0);
    assert.ok(naturalCompare("a", "a.b") < 0);
});

test("ago", () => {
    assert.equal(formatAgo(5.4), "5 s ago");
    assert.equal(formatAgo(125), "2 min ago");
    assert.equal(formatAgo(-3), "0 s ago");
});

test("tick labels get the digits that tell them apart", () => {
    assert.equal(tickDigits(20.5, 0.01), 4);
    assert.equal(formatValue(20.49, "", tickDigits(20.49, 0.01)), "20.49");
    assert.equal(formatValue(1234, "", tickDigits(1234, 1)), "1.234k");
    assert.equal(tickDigits(300, 50), 3);
    assert.equal(tickDigits(0, 0.5), 3);
    assert.equal(formatValue(2500, "ms", 4), "2.5 s");
});
