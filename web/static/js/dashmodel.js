// Saved dashboards, the pure part: a panel made from what the explorer plots, what a panel asks the
// API for, and the edits of a dashboard's panels (each returns a new dashboard).

import { fieldsFor, rangeParams, FIELDS, UNITS } from "./state.js";

export const KINDS = Object.freeze(["lines", "area", "bars", "number"]);

// The panel that draws what the explorer draws now: its series, their fields, its range if fixed.
// types: key -> type of the series known to the page.
export function panelFromState(state, types, kind = "lines", title = "") {
    const seriesFields = {};
    for (const key of state.selected) {
        const type = types.get(key);
        if (type) {
            seriesFields[key] = fieldsFor(state, type).slice();
        }
    }
    const panel = {
        title: title || state.selected.join(", "),
        series: state.selected.slice(),
        range: state.range === "custom" ? { from: state.customFrom, until: state.customUntil } : "follow",
        kind: KINDS.indexOf(kind) === -1 ? "lines" : kind,
        series_fields: seriesFields,
    };
    if (state.filter && !state.selected.length) {
        panel.filter = state.filter;
    }
    const units = {};
    for (const key of state.selected) {
        if (state.units && state.units[key]) {
            units[key] = state.units[key];
        }
    }
    if (Object.keys(units).length) {
        panel.units = units;
    }
    if (state.log) {
        panel.log = true;
    }
    return panel;
}

// The unit a panel draws `key` in: the panel's own for that series, else the panel's, else the page's
// for that series; null for the guessed one.
export function panelUnit(panel, key, state) {
    const own = panel.units && typeof panel.units === "object" ? panel.units[key] : undefined;
    return own || panel.unit || (state.units && state.units[key]) || null;
}

// What a panel reads: its keys, the fields of each, its range (the page's when it follows it).
export function panelRequest(panel, state) {
    const range = panel.range && typeof panel.range === "object" ? panel.range : rangeParams(state);
    const perSeries = panel.series_fields || {};
    return {
        keys: Array.isArray(panel.series) ? panel.series.slice() : [],
        filter: panel.filter || null,
        fieldsOf: (key) => perSeries[key] || (Array.isArray(panel.fields) && panel.fields.length ? panel.fields : null),
        from: range.from,
        until: range.until,
        resolution: "auto",
        since: null,
        follows: !(panel.range && typeof panel.range === "object"),
    };
}

function withPanels(dashboard, panels) {
    return { ...dashboard, panels };
}

export function movePanel(dashboard, index, by) {
    const to = index + by;
    if (to < 0 || to >= dashboard.panels.length) {
        return dashboard;
    }
    const panels = dashboard.panels.slice();
    const [panel] = panels.splice(index, 1);
    panels.splice(to, 0, panel);
    return withPanels(dashboard, panels);
}

export function duplicatePanel(dashboard, index) {
    const panels = dashboard.panels.slice();
    const copy = JSON.parse(JSON.stringify(panels[index]));
    copy.title = (copy.title || "panel") + " (copy)";
    panels.splice(index + 1, 0, copy);
    return withPanels(dashboard, panels);
}

export function removePanel(dashboard, index) {
    return withPanels(dashboard, dashboard.panels.filter((_, i) => i !== index));
}

export function addPanel(dashboard, panel) {
    return withPanels(dashboard, dashboard.panels.concat([panel]));
}

// The members the server stores for a dashboard (what PUT takes back and an export holds).
export function storable(dashboard) {
    const copy = { ...dashboard };
    for (const member of ["id", "created", "updated"]) {
        delete copy[member];
    }
    return copy;
}

// The last value that is not a gap, of the first series that has one (a "number" panel's figure).
export function lastValue(series) {
    for (const s of series) {
        for (let i = s.data.length - 1; i >= 0; i--) {
            if (s.data[i][1] !== null) {
                return { value: s.data[i][1], unit: s.unit, at: s.data[i][0] };
            }
        }
    }
    return null;
}

// -- a panel edited in place: the form's values from a panel, and back (or an Error naming the field)

const ALL_FIELDS = new Set(Object.values(FIELDS).flat());
const RELATIVE = /^-?(\d{1,9})([smhdw])$/;

// The range as the form writes it: "follow", "-6h", or "FROM..UNTIL" (epoch seconds, UNTIL may be "now").
export function rangeText(range) {
    if (!range || typeof range !== "object") {
        return "follow";
    }
    if (typeof range.from === "string" && RELATIVE.test(range.from) && (range.until === undefined || range.until === null || range.until === "now")) {
        return range.from;
    }
    return range.from + ".." + (range.until === undefined || range.until === null ? "now" : range.until);
}

export function parseRangeText(text) {
    const value = text.trim();
    if (value === "" || value === "follow") {
        return "follow";
    }
    const relative = RELATIVE.exec(value);
    if (relative) {
        return { from: "-" + relative[1] + relative[2], until: "now" };
    }
    const fixed = /^(\d{1,12}(?:\.\d+)?)\.\.(\d{1,12}(?:\.\d+)?|now)$/.exec(value);
    if (fixed) {
        const from = Number(fixed[1]);
        const until = fixed[2] === "now" ? "now" : Number(fixed[2]);
        if (until === "now" || from < until) {
            return { from, until };
        }
    }
    throw new Error("Range: \u201c" + value + "\u201d is not follow, a span like -6h, or FROM..UNTIL in seconds since the epoch (UNTIL after FROM, or now).");
}

export function panelToForm(panel) {
    return {
        title: panel.title || "",
        series: (Array.isArray(panel.series) ? panel.series : []).join("\n"),
        filter: panel.filter || "",
        fields: Array.isArray(panel.fields) ? panel.fields.join(", ") : "",
        range: rangeText(panel.range),
        unit: UNITS.indexOf(panel.unit) !== -1 ? panel.unit : "",
        kind: KINDS.indexOf(panel.kind) !== -1 ? panel.kind : "lines",
        log: Boolean(panel.log),
    };
}

// The panel the form describes, on top of `old` (members the form does not show are kept).
export function panelFromForm(form, old = {}) {
    const series = [];
    for (const line of form.series.split("\n")) {
        const key = line.trim();
        if (key && series.indexOf(key) === -1) {
            series.push(key);
        }
    }
    const filter = form.filter.trim();
    if (!series.length && !filter) {
        throw new Error("Series: name at least one series key (one a line) or a filter.");
    }
    const fields = form.fields.split(/[\s,+]+/).filter(Boolean);
    const unknown = fields.filter((f) => !ALL_FIELDS.has(f));
    if (unknown.length) {
        throw new Error("Fields: no series has " + unknown.join(", ") + "; the fields are " + Array.from(ALL_FIELDS).join(", ") + ".");
    }
    if (form.unit && UNITS.indexOf(form.unit) === -1) {
        throw new Error("Unit: " + form.unit + " is not one of " + UNITS.join(", ") + ".");
    }
    if (KINDS.indexOf(form.kind) === -1) {
        throw new Error("Kind: " + form.kind + " is not one of " + KINDS.join(", ") + ".");
    }
    const panel = { ...old, title: form.title.trim() || series.join(", ") || filter, series, range: parseRangeText(form.range), kind: form.kind };
    for (const member of ["filter", "fields", "unit", "log"]) {
        delete panel[member];
    }
    if (filter) {
        panel.filter = filter;
    }
    if (fields.length) {
        // Fields named here are every series' fields: the explorer's per-series choice goes.
        panel.fields = fields;
        delete panel.series_fields;
    } else if (panel.series_fields) {
        panel.series_fields = Object.fromEntries(Object.entries(panel.series_fields).filter(([key]) => series.indexOf(key) !== -1));
    }
    if (form.unit) {
        panel.unit = form.unit;
    }
    if (form.log) {
        panel.log = true;
    }
    return panel;
}

export function replacePanel(dashboard, index, panel) {
    return withPanels(dashboard, dashboard.panels.map((p, i) => (i === index ? panel : p)));
}

// How often a dashboard polls: the URL's choice, else the dashboard's stored refresh (seconds), else the page's.
export function pollSeconds(dashboard, stateRefresh, urlSetsRefresh) {
    if (urlSetsRefresh || !dashboard || typeof dashboard.refresh !== "number" || !(dashboard.refresh > 0)) {
        return stateRefresh;
    }
    return Math.max(1, dashboard.refresh);
}
