// The page's state and its URL form: pure functions, no DOM, no globals.
// parseState(search) and stateToSearch(state) are inverses for every state a page can reach.

export const RANGES = Object.freeze({ "5m": 300, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 });
export const DEFAULT_RANGE = "1h";
export const REFRESH_CHOICES = Object.freeze([1, 2, 5, 10, 30, 60]);
export const DEFAULT_REFRESH = 5;
export const SORTS = Object.freeze(["name", "value", "seen"]);
export const VIEWS = Object.freeze(["list", "tree"]);
export const SERVER_PREFIX = "simplestats.";

const TIMER_FIELDS = Object.freeze(["count", "sum", "min", "max", "mean", "std", "median", "p90", "p95", "p99", "last"]);
// The fields /api/series offers per type.
export const FIELDS = Object.freeze({
    counter: Object.freeze(["count", "rate"]),
    gauge: Object.freeze(["last", "min", "max", "mean", "updates"]),
    timer: TIMER_FIELDS,
    histogram: TIMER_FIELDS,
    distribution: TIMER_FIELDS,
    sample: TIMER_FIELDS,
    set: Object.freeze(["count"]),
});
// One field per series until the user picks others.
export const DEFAULT_FIELDS = Object.freeze({
    counter: Object.freeze(["rate"]),
    gauge: Object.freeze(["last"]),
    timer: Object.freeze(["mean"]),
    histogram: Object.freeze(["mean"]),
    distribution: Object.freeze(["mean"]),
    sample: Object.freeze(["mean"]),
    set: Object.freeze(["count"]),
});

export function defaultState() {
    return {
        filter: "",
        selected: [],          // series keys, in the order they were picked
        range: DEFAULT_RANGE,  // a key of RANGES, or "custom"
        customFrom: null,      // epoch seconds, when range is "custom"
        customUntil: null,
        resolution: "auto",    // "auto" or a tier step as the API names it ("5s", "1m")
        fields: {},            // type -> fields, only the types changed from DEFAULT_FIELDS
        dayweek: null,         // {key, field} while the day-against-week panel is open
        sort: "name",
        sortDesc: false,
        view: "list",
        refresh: DEFAULT_REFRESH,
        dashboard: null,       // the id of the saved dashboard on screen, or null for the explorer
        wall: false,           // wall-screen mode: the dashboard alone, no controls
    };
}

export function fieldsFor(state, type) {
    return state.fields[type] || DEFAULT_FIELDS[type] || null;
}

// The state after toggling one field of a type: the API's order kept, never none.
export function toggleField(state, type, field) {
    const all = FIELDS[type];
    if (!all || all.indexOf(field) === -1) {
        return state;
    }
    const current = fieldsFor(state, type);
    let next;
    if (current.indexOf(field) === -1) {
        next = all.filter((f) => f === field || current.indexOf(f) !== -1);
    } else if (current.length > 1) {
        next = current.filter((f) => f !== field);
    } else {
        return state;
    }
    const fields = { ...state.fields };
    if (sameList(next, DEFAULT_FIELDS[type])) {
        delete fields[type];
    } else {
        fields[type] = next;
    }
    return { ...state, fields };
}

function sameList(a, b) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
}

const RESOLUTION = /^\d{1,9}[smhd]$/;

export function parseState(search) {
    const query = new URLSearchParams(search);
    const state = defaultState();
    state.filter = query.get("filter") || "";
    const keys = [];
    for (const value of query.getAll("series")) {
        // One parameter per key; an older URL joined them with commas.
        const parts = query.getAll("series").length > 1 ? [value] : value.split(",");
        for (const key of parts) {
            if (key && keys.indexOf(key) === -1) {
                keys.push(key);
            }
        }
    }
    state.selected = keys;
    const from = parseFloat(query.get("from"));
    const until = parseFloat(query.get("until"));
    if (Number.isFinite(from) && Number.isFinite(until) && from < until) {
        state.range = "custom";
        state.customFrom = from;
        state.customUntil = until;
    } else if (Object.prototype.hasOwnProperty.call(RANGES, query.get("range"))) {
        state.range = query.get("range");
    }
    const resolution = query.get("resolution");
    if (resolution && RESOLUTION.test(resolution)) {
        state.resolution = resolution;
    }
    state.fields = parseFields(query.get("fields") || "");
    const dayweek = query.get("dayweek");
    if (dayweek) {
        state.dayweek = { key: dayweek, field: query.get("dayweek_field") || null };
    }
    const sort = query.get("sort") || "";
    const [by, direction] = sort.split("-");
    if (SORTS.indexOf(by) !== -1) {
        state.sort = by;
        state.sortDesc = direction === "desc";
    }
    if (VIEWS.indexOf(query.get("view")) !== -1) {
        state.view = query.get("view");
    }
    const dashboard = query.get("dashboard");
    if (dashboard && /^[\w-]{1,64}$/.test(dashboard)) {
        state.dashboard = dashboard;
        state.wall = query.get("wall") === "1";
    }
    const refresh = Number(query.get("refresh"));
    if (REFRESH_CHOICES.indexOf(refresh) !== -1) {
        state.refresh = refresh;
    }
    return state;
}

// "timer:mean+p99 counter:count" -> {timer: ["mean", "p99"], counter: ["count"]}; unknown names are dropped.
export function parseFields(text) {
    const fields = {};
    for (const part of text.split(/[\s;]+/)) {
        const [type, names] = part.split(":");
        if (!FIELDS[type] || !names) {
            continue;
        }
        const picked = FIELDS[type].filter((f) => names.split(/[+,]/).indexOf(f) !== -1);
        if (picked.length && !sameList(picked, DEFAULT_FIELDS[type])) {
            fields[type] = picked;
        }
    }
    return fields;
}

export function fieldsToText(fields) {
    return Object.keys(fields).sort().map((type) => type + ":" + fields[type].join("+")).join(" ");
}

export function stateToSearch(state) {
    const query = new URLSearchParams();
    if (state.filter) {
        query.set("filter", state.filter);
    }
    if (state.selected.some((key) => key.indexOf(",") !== -1)) {
        state.selected.forEach((key) => query.append("series", key));
    } else if (state.selected.length) {
        query.set("series", state.selected.join(","));
    }
    if (state.range === "custom") {
        query.set("from", String(state.customFrom));
        query.set("until", String(state.customUntil));
    } else if (state.range !== DEFAULT_RANGE) {
        query.set("range", state.range);
    }
    if (state.resolution !== "auto") {
        query.set("resolution", state.resolution);
    }
    const fields = fieldsToText(state.fields);
    if (fields) {
        query.set("fields", fields);
    }
    if (state.dayweek) {
        query.set("dayweek", state.dayweek.key);
        if (state.dayweek.field) {
            query.set("dayweek_field", state.dayweek.field);
        }
    }
    if (state.sort !== "name" || state.sortDesc) {
        query.set("sort", state.sort + (state.sortDesc ? "-desc" : ""));
    }
    if (state.view !== "list") {
        query.set("view", state.view);
    }
    if (state.refresh !== DEFAULT_REFRESH) {
        query.set("refresh", String(state.refresh));
    }
    if (state.dashboard) {
        query.set("dashboard", state.dashboard);
        if (state.wall) {
            query.set("wall", "1");
        }
    }
    return query.toString();
}

// The range to ask the API for: relative while live, absolute when fixed.
export function rangeParams(state) {
    if (state.range === "custom") {
        return { from: state.customFrom, until: state.customUntil };
    }
    return { from: "-" + state.range, until: "now" };
}

// The query of an export: the plotted series (or, with none, the filter's matches) over the plot's range;
// "csv-wide" (a spreadsheet's CSV, one column per field) at the plot's resolution.
export function exportQuery(state, format) {
    const query = new URLSearchParams();
    if (state.selected.length) {
        state.selected.forEach((key) => query.append("key", key));
    } else if (state.filter) {
        query.set("filter", state.filter);
    }
    const range = rangeParams(state);
    query.set("from", String(range.from));
    query.set("until", String(range.until));
    query.set("format", format);
    if (format === "csv-wide" && state.resolution !== "auto") {
        query.set("resolution", state.resolution);
    }
    return query.toString();
}

// The range in epoch seconds at server time `now`.
export function rangeBounds(state, now) {
    if (state.range === "custom") {
        return { from: state.customFrom, until: state.customUntil };
    }
    return { from: now - RANGES[state.range], until: now };
}

export function isLive(state) {
    return state.range !== "custom";
}

// Twice as long, around the same middle, never past `now`; a fixed range either way.
export function zoomedOut(state, now) {
    const { from, until } = rangeBounds(state, now);
    const span = Math.max(until - from, 60);
    let end = Math.min(now, until + span / 2);
    const start = Math.round(end - 2 * span);
    end = Math.round(end);
    return { ...state, range: "custom", customFrom: start, customUntil: end };
}

// -- filter terms (the syntax of /api/metrics: space-separated terms, all must match)

export function filterTerms(filter) {
    return filter.split(/\s+/).filter(Boolean);
}

// The filter with `term` added unless it is there already; null for a term the syntax cannot hold.
export function addTerm(filter, term) {
    if (!term || /\s/.test(term)) {
        return null;
    }
    const terms = filterTerms(filter);
    if (terms.indexOf(term) === -1) {
        terms.push(term);
    }
    return terms.join(" ");
}

// Whether a filter asks for the server's own series (they are listed apart otherwise).
export function showsServerSeries(filter) {
    return /^\/?\^?simplestats/i.test(filter.trim());
}

export function isServerKey(key) {
    return key.indexOf(SERVER_PREFIX) === 0;
}
