import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveTheme, storedTheme } from "../static/js/theme.js";

test("auto follows the system, a choice stands, a bad stored value is auto", () => {
    assert.equal(resolveTheme("auto", true), "dark");
    assert.equal(resolveTheme("auto", false), "light");
    assert.equal(resolveTheme("light", true), "light");
    assert.equal(storedTheme({ getItem: () => "dark" }), "dark");
    assert.equal(storedTheme({ getItem: () => "pink" }), "auto");
    assert.equal(storedTheme({ getItem: () => { throw new Error("private mode"); } }), "auto");
});
