// Saved dashboards, the pure part: a panel made from what the explorer plots, what a panel asks the
// API for, and the edits of a dashboard's panels (each returns a new dashboard).

import { fieldsFor, rangeParams } from "./state.js";

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
    return panel;
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
