// SimpleStats dashboard: wires the modules to the page. Every piece of state lives in start()'s closure
// and is handed to the modules; nothing is shared through globals (window.simplestats only reads, for tests).
// Every name, tag and value from the server goes into the page as text, never as HTML.

import { createApi, createSeriesReader, isConnectionError, isAborted, storedToken } from "./api.js";
import {
    parseState, stateToSearch, fieldsFor, toggleField, FIELDS, rangeParams, rangeBounds, isLive, zoomedOut,
    addTerm, showsServerSeries, isServerKey, SERVER_PREFIX, RANGES, exportQuery, setUnit,
} from "./state.js";
import {
    formatSI, formatDuration, formatAgo, formatCount, formatStep, formatTime, toLocalInput, fromLocalInput,
} from "./format.js";
import { plotSeries, mergeBatch, backoffDelay, resolutionChoices, autoStep } from "./series.js";
import { sortMetrics, listRows, treeRows } from "./listmodel.js";
import { createList } from "./list.js";
import { createPlot } from "./plot.js";
import { createDayweek } from "./dayweek.js";
import { createImporter } from "./importer.js";
import { createTokenPrompt } from "./token.js";
import { createDashboards } from "./dashboards.js";
import { pollSeconds } from "./dashmodel.js";
import { createAlerts } from "./alerts.js";
import { applyTheme, bindThemeSwitch, storedTheme } from "./theme.js";
import { renderForward } from "./forward.js";

const LIST_LIMIT = 20000;
const FILTER_DEBOUNCE_MS = 150;
const SERVER_FILTER = "/^simplestats\\./";
const BACKOFF_BASE_MS = 2000;
const BACKOFF_CAP_MS = 15000;
const DEFAULT_MAX_POINTS = 20000;

function byId(id) {
    return document.getElementById(id);
}

function showAlert(node, message) {
    node.textContent = message;
    node.classList.remove("d-none");
}

function hideAlert(node) {
    node.classList.add("d-none");
    node.textContent = "";
}

function safeStorage() {
    try {
        return window.localStorage;
    } catch {
        return { getItem: () => null, setItem: () => {} };
    }
}

function start() {
    const storage = safeStorage();
    let state = parseState(window.location.search);
    const known = new Map();           // key -> {key, name, tags, type} of every series seen
    const treeOpen = new Set();
    let skew = 0;                      // server clock minus browser clock, seconds
    let tiers = null;
    let maxPoints = DEFAULT_MAX_POINTS;
    let serverCount = 0;
    let lastMetrics = null;
    let held = null;                   // {signature, batch}: the plot's last answer, merged with `since`
    let lastEvents = [];               // the events of the plot's range, as last read
    let lastBands = [];                // the firing periods of alerts on the plotted series, as last read
    let lastSeriesData = [];
    let failures = 0;
    let eventsRoute = true;            // false once the server answered that it has no /api/events
    let timer = null;
    let ticking = false;

    const askToken = createTokenPrompt({ storage, onSaved: () => tick() });
    const api = createApi({ storage, onAuth: askToken });
    const reader = createSeriesReader(api);
    const now = () => Date.now() / 1000 + skew;

    const list = createList({
        scroll: byId("metric-scroll"),
        tbody: document.querySelector("#metric-table tbody"),
        onToggle: toggleSeries,
        onTerm: (term) => {
            const filter = addTerm(state.filter, term);
            if (filter !== null) {
                byId("filter").value = filter;
                filterChanged(filter);
            }
        },
        onGroup: (path) => {
            if (treeOpen.has(path)) {
                treeOpen.delete(path);
            } else {
                treeOpen.add(path);
            }
            renderList();
        },
    });

    const plot = createPlot({
        placeholder: byId("plot"),
        legend: byId("plot-legend"),
        tooltip: byId("plot-tooltip"),
        crosshair: byId("plot-crosshair"),
        hint: byId("plot-hint"),
        markers: byId("plot-events"),
        onZoom: (from, until) => setState({ ...state, range: "custom", customFrom: from, customUntil: until }, true),
        onZoomOut: zoomOut,
        onRemove: (key) => {
            if (state.selected.indexOf(key) !== -1) {
                toggleSeries(key);
            }
        },
        onUnit: (key, unit) => {
            state = setUnit(state, key, unit);
            writeUrl(false);
            redrawPlot();
        },
    });

    const alerts = createAlerts({
        api,
        now,
        elements: {
            button: byId("alerts-btn"), badge: byId("alerts-badge"), panel: byId("alerts-card"),
            close: byId("alerts-close"), error: byId("alerts-error"), tbody: document.querySelector("#alerts-table tbody"),
            none: byId("alerts-none"), rules: byId("alert-rules"), rulesNone: byId("alert-rules-none"),
            form: byId("alert-rule-form"), preview: byId("rule-preview"), result: byId("rule-result"),
        },
        onSeries: (key) => {
            if (state.selected.indexOf(key) === -1) {
                toggleSeries(key);
            }
        },
    });

    const dayweek = createDayweek({
        api,
        elements: {
            panel: byId("dayweek-panel"), title: byId("dayweek-title"), error: byId("dayweek-error"),
            placeholder: byId("dayweek-plot"), seriesSelect: byId("dayweek-series"), fieldSelect: byId("dayweek-field"),
            button: byId("dayweek-btn"), close: byId("dayweek-close"),
        },
        describe: (key) => known.get(key),
        onOpen: (view) => {
            state = { ...state, dayweek: view };
            writeUrl(false);
            dayweek.open(view).catch(quiet);
        },
        onClose: closeDayweek,
    });

    // key -> type, as the dashboards see the series the page knows.
    const types = {
        get: (key) => (known.get(key) ? known.get(key).type : undefined),
        set: (key, type) => {
            if (!known.has(key)) {
                known.set(key, { key, name: key.split(";")[0], tags: {}, type });
            }
        },
    };

    const dashboards = createDashboards({
        api,
        reader,
        types,
        tooltip: byId("plot-tooltip"),
        context: () => ({ now, tiers, maxPoints }),
        getState: () => state,
        onZoom: (from, until) => setState({ ...state, range: "custom", customFrom: from, customUntil: until }, true),
        onZoomOut: zoomOut,
        open: (id, wall) => {
            state = { ...state, dashboard: id, wall: Boolean(id) && wall };
            writeUrl(true);
            showView();
        },
        elements: {
            view: byId("dashboard-view"), name: byId("dash-name"), panelsNode: byId("dash-panels"),
            error: byId("dash-error"), status: byId("dash-status"), wall: byId("dash-wall"),
            exportLink: byId("dash-export"), refreshSelect: byId("dash-refresh"), importInput: byId("dash-import"), remove: byId("dash-delete"),
            menu: { button: byId("dash-menu-btn"), list: byId("dash-menu") },
            addForm: {
                toggle: byId("add-panel-btn"), form: byId("add-panel-form"), target: byId("add-panel-target"),
                newName: byId("add-panel-name"), title: byId("add-panel-title"), kind: byId("add-panel-kind"),
                result: byId("add-panel-result"),
            },
        },
    });

    // The explorer, or one saved dashboard (in wall-screen mode: alone).
    let shownDashboard = null;
    function showView() {
        const id = state.dashboard;
        byId("explorer").classList.toggle("d-none", Boolean(id));
        byId("dashboard-view").classList.toggle("d-none", !id);
        document.querySelectorAll(".explorer-only").forEach((node) => node.classList.toggle("d-none", Boolean(id)));
        document.body.classList.toggle("wall", Boolean(id) && state.wall);
        if (!id) {
            if (shownDashboard) {
                dashboards.close();
                shownDashboard = null;
                document.title = "SimpleStats";
            }
            return Promise.resolve();
        }
        if (shownDashboard === id) {
            return Promise.resolve();
        }
        shownDashboard = id;
        return dashboards.load(id).then(() => refreshDashboard()).catch(quiet);
    }

    async function refreshDashboard() {
        const events = await readEvents(rangeParams(state));
        await dashboards.refresh(events);
    }

    createImporter({
        api,
        elements: {
            input: byId("import-file"), result: byId("import-result"), progress: byId("import-progress"),
            drop: byId("import-drop"), overlay: byId("drop-overlay"),
        },
        onImported: () => {
            refreshList().catch(quiet);
            refreshServerSeries().catch(quiet);
            refreshPlot().catch(quiet);
        },
    });

    // For reads started by a click or a key: each refresher has shown its own failure already, and the
    // poller deals with a server that does not answer; nothing is left to do with the rejection.
    function quiet() {}

    function remember(metric) {
        known.set(metric.key, { key: metric.key, name: metric.name, tags: metric.tags || {}, type: metric.type });
    }

    function writeUrl(push) {
        const search = stateToSearch(state);
        const url = window.location.pathname + (search ? "?" + search : "") + window.location.hash;
        if (push) {
            window.history.pushState(null, "", url);
        } else {
            window.history.replaceState(null, "", url);
        }
    }

    // -- health: clock, tiers, counts, ports

    async function refreshHealth() {
        const healthNode = byId("health");
        try {
            const health = await api.get("health", "/api/health");
            if (typeof health.now === "number") {
                skew = health.now - Date.now() / 1000;
            }
            if (Array.isArray(health.tiers) && health.tiers.length) {
                const changed = JSON.stringify(health.tiers) !== JSON.stringify(tiers);
                tiers = health.tiers;
                if (changed) {
                    renderResolutionOptions(null);
                }
            }
            if (typeof health.max_points === "number" && health.max_points > 0 && health.max_points !== maxPoints) {
                maxPoints = health.max_points;
                renderResolutionOptions(null);
            }
            renderPorts(health.ports || health.listen || null);
            renderForward(byId("forward-panel"), health.forward || null);
            const own = Math.min(serverCount, health.series);
            const parts = ["up " + formatDuration(health.uptime || 0),
                formatCount(health.series - own) + " series" + (own ? " + " + formatCount(own) + " of its own" : "")];
            healthNode.classList.remove("text-warning");
            const snapshot = health.snapshot;
            if (snapshot && snapshot.error) {
                parts.push("snapshot failed: " + snapshot.error);
                healthNode.classList.add("text-warning");
            } else if (snapshot && snapshot.last) {
                parts.push("snapshot " + formatAgo(now() - snapshot.last));
            }
            healthNode.textContent = parts.join(" \u00b7 ");
        } catch (error) {
            if (!isAborted(error) && !isConnectionError(error)) {
                healthNode.classList.add("text-warning");
                healthNode.textContent = "Server health unknown: " + error.message;
            }
            throw error;
        }
    }

    function renderPorts(ports) {
        const host = window.location.hostname || "localhost";
        const tcp = ports && ports.tcp;
        const udp = ports && ports.udp;
        byId("empty-tcp").textContent = "telnet " + host + " " + (tcp || 8007);
        byId("empty-udp").textContent = "echo \"my.counter:1|c\" | nc -u -w0 " + host + " " + (udp || 8125);
        byId("empty-sample").textContent = "python misc/sample_generator.py 100 --send " + host + ":" + (tcp || 8007);
        byId("empty-ports-note").classList.toggle("d-none", Boolean(tcp && udp));
    }

    // -- the server's own series

    async function refreshServerSeries() {
        const error = byId("server-error");
        try {
            const body = await api.get("server-series", "/api/metrics", { filter: SERVER_FILTER });
            hideAlert(error);
            const metrics = (body.metrics || []).filter((m) => isServerKey(m.key));
            serverCount = metrics.length;
            metrics.forEach(remember);
            const tbody = document.querySelector("#server-metrics .server-series tbody");
            const rows = new Map(Array.from(tbody.children).map((tr) => [tr.getAttribute("data-key"), tr]));
            const keep = new Set();
            let cursor = tbody.firstChild;
            for (const metric of metrics) {
                let tr = rows.get(metric.key);
                if (!tr) {
                    tr = document.createElement("tr");
                    tr.className = "metric-row";
                    tr.setAttribute("data-key", metric.key);
                    for (let i = 0; i < 3; i++) {
                        tr.appendChild(document.createElement("td"));
                    }
                    tr.children[1].className = "text-end num";
                    tr.children[2].className = "text-end num text-body-secondary";
                }
                const short = metric.key.slice(SERVER_PREFIX.length);
                if (tr.children[0].getAttribute("data-name") !== short) {
                    // <wbr> after each dot and underscore: a narrow column wraps there, not inside a word.
                    tr.children[0].setAttribute("data-name", short);
                    tr.children[0].textContent = "";
                    short.split(/(?<=[._])/).forEach((part, i) => {
                        if (i) {
                            tr.children[0].appendChild(document.createElement("wbr"));
                        }
                        tr.children[0].appendChild(document.createTextNode(part));
                    });
                }
                tr.children[0].title = metric.key;
                tr.children[1].textContent = formatSI(metric.value);
                tr.children[2].textContent = "avg " + formatSI(metric.avg_1m) + (metric.type === "counter" ? "/s" : "");
                tr.classList.toggle("table-active", state.selected.indexOf(metric.key) !== -1);
                keep.add(tr);
                if (tr !== cursor) {
                    tbody.insertBefore(tr, cursor);
                } else {
                    cursor = cursor.nextSibling;
                }
            }
            for (const tr of rows.values()) {
                if (!keep.has(tr)) {
                    tr.remove();
                }
            }
            document.querySelector("#server-metrics .server-none").classList.toggle("d-none", metrics.length > 0);
        } catch (failure) {
            if (!isAborted(failure) && !isConnectionError(failure)) {
                showAlert(error, "Could not load the server's series: " + failure.message);
            }
            throw failure;
        }
    }

    // -- the series list

    async function refreshList() {
        const filter = state.filter;
        const error = byId("api-error");
        try {
            const body = await api.get("list", "/api/metrics", { filter, limit: LIST_LIMIT });
            if (filter !== state.filter) {
                return;
            }
            hideAlert(error);
            lastMetrics = { body, filter };
            (body.metrics || []).forEach(remember);
            renderList();
        } catch (failure) {
            if (!isAborted(failure) && !isConnectionError(failure)) {
                // A rejected filter is answered with a message about the filter: show it as it is.
                showAlert(error, (failure.status === 400 && filter ? "" : "Could not load the series list: ") + failure.message);
            }
            throw failure;
        }
    }

    function renderList() {
        if (!lastMetrics) {
            return;
        }
        const { body, filter } = lastMetrics;
        const withServer = showsServerSeries(filter);
        const metrics = withServer ? body.metrics : body.metrics.filter((m) => !isServerKey(m.key));
        const total = withServer ? body.total : Math.max(0, body.total - serverCount);
        const sorted = sortMetrics(metrics, state.sort, state.sortDesc);
        const rows = state.view === "tree" ? treeRows(sorted, treeOpen) : listRows(sorted);
        list.update(rows, new Set(state.selected), now());

        const empty = !metrics.length && !filter;
        byId("empty-state").classList.toggle("d-none", !empty);
        byId("metric-scroll").classList.toggle("d-none", empty);
        byId("no-match").classList.toggle("d-none", metrics.length > 0 || !filter);
        const matched = withServer ? body.matched : metrics.length + Math.max(0, (body.matched ?? body.count) - body.count);
        let count = formatCount(matched) + " of " + formatCount(total) + " series";
        if (body.count < (body.matched ?? body.count)) {
            count += " (only the first " + formatCount(body.count) + " listed; narrow the filter)";
        }
        byId("metric-count").textContent = count;
        byId("clear-selection").classList.toggle("d-none", state.selected.length === 0);
        renderSortControls();
    }

    function renderSortControls() {
        document.querySelectorAll("#metric-table th[data-sort]").forEach((th) => {
            const by = th.getAttribute("data-sort");
            th.setAttribute("aria-sort", by === state.sort ? (state.sortDesc ? "descending" : "ascending") : "none");
        });
        document.querySelectorAll("#list-view button[data-view]").forEach((button) => {
            const on = button.getAttribute("data-view") === state.view;
            button.classList.toggle("active", on);
            button.setAttribute("aria-pressed", on ? "true" : "false");
        });
    }

    function filterChanged(filter) {
        if (filter === state.filter) {
            return;
        }
        state = { ...state, filter };
        writeUrl(false);
        renderExportLinks();
        refreshList().catch(quiet);
    }

    // -- selection

    function toggleSeries(key) {
        const selected = state.selected.indexOf(key) === -1
            ? state.selected.concat([key]) : state.selected.filter((k) => k !== key);
        state = { ...state, selected };
        if (state.dayweek && selected.indexOf(state.dayweek.key) === -1) {
            state = { ...state, dayweek: null };
            dayweek.close();
        }
        selectionChanged();
    }

    function selectionChanged() {
        list.select(new Set(state.selected));
        document.querySelectorAll("#server-metrics tr[data-key]").forEach((tr) => {
            tr.classList.toggle("table-active", state.selected.indexOf(tr.getAttribute("data-key")) !== -1);
        });
        byId("clear-selection").classList.toggle("d-none", state.selected.length === 0);
        writeUrl(false);
        renderExportLinks();
        renderDayweekControls();
        refreshPlot().catch(quiet);
    }

    // -- range, resolution, fields

    function renderRangeControls() {
        document.querySelectorAll("#range-presets button").forEach((button) => {
            const active = button.getAttribute("data-range") === state.range;
            button.classList.toggle("active", active);
            button.setAttribute("aria-pressed", active ? "true" : "false");
        });
        byId("custom-range").classList.toggle("d-none", state.range !== "custom");
        if (state.range === "custom") {
            byId("range-from").value = toLocalInput(state.customFrom, state.utc);
            byId("range-until").value = toLocalInput(state.customUntil, state.utc);
        }
        renderResolutionOptions(null);
        byId("refresh-every").value = String(state.refresh);
        byId("timezone").value = state.utc ? "utc" : "local";
        byId("log-scale").checked = state.log;
        document.querySelectorAll(".zone-name").forEach((node) => {
            node.textContent = state.utc ? "UTC" : "local time";
        });
    }

    // The options from the server's tiers; those that cannot answer the range disabled, with why.
    function renderResolutionOptions(choices) {
        const select = byId("resolution");
        const at = now();
        const bounds = rangeBounds(state, at);
        const usable = choices || (tiers ? resolutionChoices(tiers, bounds.from, bounds.until, at, maxPoints) : null);
        if (usable) {
            const wanted = ["auto"].concat(usable.map((c) => c.name));
            const have = Array.from(select.options).map((o) => o.value);
            if (JSON.stringify(wanted) !== JSON.stringify(have)) {
                select.textContent = "";
                for (const value of wanted) {
                    const option = document.createElement("option");
                    option.value = value;
                    select.appendChild(option);
                }
            }
            for (const option of select.options) {
                const choice = usable.find((c) => c.name === option.value);
                option.disabled = Boolean(choice && !choice.usable);
                option.title = choice && choice.reason ? choice.reason : "";
                option.textContent = option.value === "auto"
                    ? "auto" + (tiers ? " (" + formatStep(autoStep(tiers, bounds.from, bounds.until, at)) + ")" : "")
                    : formatStep(choice.step) + (choice.usable ? "" : " (unavailable)");
            }
        }
        select.value = state.resolution;
        if (select.value !== state.resolution) {
            select.value = "auto";
        }
        const chosen = usable && usable.find((c) => c.name === state.resolution);
        const note = byId("resolution-note");
        if (chosen && !chosen.usable) {
            note.textContent = chosen.reason + ": showing auto instead.";
            note.classList.remove("d-none");
        } else {
            note.classList.add("d-none");
        }
        return chosen && !chosen.usable ? "auto" : state.resolution;
    }

    function setState(next, push) {
        const rangeMoved = next.range !== state.range || next.customFrom !== state.customFrom ||
            next.customUntil !== state.customUntil || next.resolution !== state.resolution;
        state = next;
        writeUrl(push);
        renderRangeControls();
        renderExportLinks();
        if (rangeMoved) {
            held = null;
        }
        if (state.dashboard) {
            refreshDashboard().catch(quiet);
        } else {
            refreshPlot().catch(quiet);
        }
    }

    function zoomOut() {
        setState(zoomedOut(state, now()), true);
    }

    function renderFieldPicker() {
        const picker = byId("field-picker");
        const types = [];
        for (const key of state.selected) {
            const info = known.get(key);
            if (info && FIELDS[info.type] && types.indexOf(info.type) === -1) {
                types.push(info.type);
            }
        }
        const signature = JSON.stringify(types.map((t) => [t, fieldsFor(state, t)]));
        if (picker.getAttribute("data-shown") === signature) {
            return;
        }
        picker.setAttribute("data-shown", signature);
        picker.textContent = "";
        for (const type of types) {
            const group = document.createElement("div");
            group.className = "field-group";
            group.setAttribute("role", "group");
            group.setAttribute("aria-label", "Fields plotted for " + type + " series");
            group.setAttribute("data-type", type);
            const label = document.createElement("span");
            label.className = "field-type small text-body-secondary";
            label.textContent = type;
            group.appendChild(label);
            const on = fieldsFor(state, type);
            for (const field of FIELDS[type]) {
                const id = "field-" + type + "-" + field;
                const input = document.createElement("input");
                input.type = "checkbox";
                input.className = "btn-check";
                input.autocomplete = "off";
                input.id = id;
                input.setAttribute("data-type", type);
                input.setAttribute("data-field", field);
                input.checked = on.indexOf(field) !== -1;
                const button = document.createElement("label");
                button.className = "btn btn-outline-secondary btn-xs";
                button.htmlFor = id;
                button.textContent = field;
                group.append(input, button);
            }
            picker.appendChild(group);
        }
    }

    // -- the plot

    async function refreshPlot() {
        renderFieldPicker();
        const keys = state.selected.slice();
        if (!keys.length) {
            held = null;
            lastSeriesData = [];
            hideAlert(byId("plot-error"));
            plot.draw([], { step: 60 }, "Click series in the list to plot them.");
            renderEventList([]);
            byId("plot-status").textContent = "";
            return;
        }
        const range = rangeParams(state);
        const resolution = renderResolutionOptions(null);
        const fieldsOf = (key) => {
            const info = known.get(key);
            return info ? fieldsFor(state, info.type) : null;
        };
        const signature = JSON.stringify([keys, keys.map(fieldsOf), range, resolution]);
        // Only what is new since the last answer: from the bucket before the one that was in progress,
        // which a point arriving late (within the server's --late-grace) may still join.
        const since = held && held.signature === signature && isLive(state) && held.batch.resolution
            ? held.batch.partial_from - held.batch.resolution : null;
        let batch;
        let events;
        let bands;
        try {
            [batch, events, bands] = await Promise.all([
                reader.read({ keys, fieldsOf, from: range.from, until: range.until, resolution, since },
                    { now, tiers, maxPoints }),
                readEvents(range),
                alertBands(keys),
            ]);
        } catch (failure) {
            if (!isAborted(failure) && !isConnectionError(failure)) {
                showAlert(byId("plot-error"), "Could not load the plot: " + failure.message);
            }
            throw failure;
        }
        if (signature !== JSON.stringify([state.selected, state.selected.map(fieldsOf), rangeParams(state), resolution])) {
            return;  // the selection moved on while this was read
        }
        batch = mergeBatch(held && held.signature === signature ? held.batch : null, batch);
        held = { signature, batch };
        batch.series.forEach(remember);
        const errors = (batch.errors || []).map((e) => "Could not load " + e.key + ": " + e.message)
            .concat((batch.missing || []).map((key) => "No series " + key + " (deleted, or never seen)."));
        if (errors.length) {
            showAlert(byId("plot-error"), errors.join(" "));
        } else {
            hideAlert(byId("plot-error"));
        }
        if (batch.resolutions) {
            renderResolutionOptions(batch.resolutions);
        }
        lastSeriesData = batch.series.map((s) => ({ ...s, resolution: batch.resolution, from: batch.from, until: batch.until }));
        lastEvents = events;
        lastBands = bands;
        drawHeld();
        renderEventList(events);
        byId("plot-status").textContent = "resolution " + formatStep(batch.resolution) + " \u00b7 " +
            (isLive(state) ? "live, every " + state.refresh + " s" : "fixed range");
        renderFieldPicker();
        renderDayweekControls();
    }

    // The plot from the answer held, in the state's units, scale and zone (no read).
    function drawHeld() {
        if (!held) {
            return;
        }
        const batch = held.batch;
        const series = plotSeries(batch, (type) => fieldsFor(state, type), (key) => state.units[key] || null);
        plot.draw(series, { from: batch.from, until: batch.until, step: batch.resolution },
            batch.series.length ? "No points in this time range." : "Nothing could be loaded; see the error above.",
            lastEvents, viewOptions(), lastBands);
    }

    function viewOptions() {
        return { utc: state.utc, log: state.log, units: state.units };
    }

    function redrawPlot() {
        if (state.dashboard) {
            refreshDashboard().catch(quiet);
        } else {
            drawHeld();
            renderEventList(lastEvents);
        }
    }

    // Firing periods of alerts on the plotted series, drawn as bands (none when they cannot be read).
    function alertBands(keys) {
        const bounds = rangeBounds(state, now());
        return alerts.bands(keys, bounds.from, bounds.until).catch(() => []);
    }

    // -- events (deploys and such), drawn on the plot and listed under it

    async function readEvents(range) {
        if (!eventsRoute) {
            return [];
        }
        try {
            const body = await api.get("events", "/api/events", { from: range.from, until: range.until });
            return Array.isArray(body.events) ? body.events : [];
        } catch (failure) {
            if (failure.status === 404 || failure.status === 405) {
                eventsRoute = false;   // a server without events: the plot goes on without them
                return [];
            }
            if (isConnectionError(failure) || isAborted(failure)) {
                throw failure;
            }
            return [];   // a plot is still worth drawing without its markers
        }
    }

    function renderEventList(events) {
        const listNode = byId("event-list");
        listNode.textContent = "";
        for (const e of events.slice(-20).reverse()) {
            const item = document.createElement("li");
            item.setAttribute("data-event-id", String(e.id));
            const when = document.createElement("span");
            when.className = "text-body-secondary me-2";
            when.textContent = formatTime(e.when, state.utc);
            const what = document.createElement("span");
            what.className = "fw-semibold";
            what.textContent = e.what;
            item.append(when, what);
            for (const tag of e.tags || []) {
                const badge = document.createElement("span");
                badge.className = "badge tag-badge ms-1";
                badge.textContent = tag;
                item.appendChild(badge);
            }
            if (e.data) {
                const data = document.createElement("span");
                data.className = "ms-2 text-body-secondary";
                data.textContent = e.data;
                item.appendChild(data);
            }
            listNode.appendChild(item);
        }
        byId("event-panel").classList.toggle("d-none", events.length === 0);
        byId("event-count").textContent = events.length > 20 ? "the last 20 of " + events.length : String(events.length);
    }

    // -- day against week

    function renderDayweekControls() {
        dayweek.renderControls(state.selected, (type) => fieldsFor(state, type)[0]);
    }

    function closeDayweek() {
        state = { ...state, dayweek: null };
        writeUrl(false);
        dayweek.close();
    }

    // -- export

    function renderExportLinks() {
        for (const format of ["ndjson", "json", "csv", "csv-wide"]) {
            byId("export-" + format).setAttribute("href", "/api/export?" + exportQuery(state, format));
        }
        const n = state.selected.length;
        byId("export-what").textContent = n ? (n === 1 ? "The plotted series" : "The " + n + " plotted series")
            : state.filter ? "The series matching the filter" : "Every series";
    }

    // A link cannot send a header: with a token, an export is fetched with it and saved from memory.
    document.addEventListener("click", async (event) => {
        const link = event.target.closest("a[id^='export-']");
        if (!link || !storedToken(storage)) {
            return;
        }
        event.preventDefault();
        try {
            const response = await window.fetch(link.href, { headers: api.headers({}) });
            if (!response.ok) {
                askToken(response.status);
                throw new Error("The export failed: the server answered HTTP " + response.status + ".");
            }
            const url = URL.createObjectURL(await response.blob());
            const save = document.createElement("a");
            save.href = url;
            save.download = link.getAttribute("download") || "simplestats-export";
            document.body.appendChild(save);
            save.click();
            save.remove();
            setTimeout(() => URL.revokeObjectURL(url), 60000);
        } catch (error) {
            showAlert(byId("api-error"), error.message);
        }
    });

    // -- polling: one timer, paused while hidden, backoff while the server does not answer

    function schedule(delay) {
        clearTimeout(timer);
        timer = null;
        if (!document.hidden) {
            timer = setTimeout(tick, delay);
        }
    }

    async function tick() {
        clearTimeout(timer);
        timer = null;
        if (ticking || document.hidden) {
            return;
        }
        ticking = true;
        try {
            // The server's own series first: the header's and the list's counts leave them out alike.
            const own = refreshServerSeries();
            const after = own.catch(() => null);
            const jobs = [own, after.then(refreshHealth), alerts.refresh()];
            if (state.dashboard) {
                jobs.push(refreshDashboard());
            } else {
                jobs.push(after.then(refreshList));
                if (state.selected.length && (isLive(state) || !held)) {
                    jobs.push(refreshPlot());
                }
                if (dayweek.view) {
                    jobs.push(dayweek.refresh());
                }
            }
            const results = await Promise.allSettled(jobs);
            const down = results.find((r) => r.status === "rejected" && isConnectionError(r.reason));
            if (down) {
                failures += 1;
                const delay = backoffDelay(failures, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
                showReconnecting(delay, down.reason.message);
                schedule(delay);
            } else {
                if (failures) {
                    failures = 0;
                    byId("conn-status").classList.add("d-none");
                    document.body.classList.remove("reconnecting");
                }
                schedule(pollEvery() * 1000);
            }
        } finally {
            ticking = false;
        }
    }

    // Seconds between polls: a dashboard's stored refresh unless the URL names one.
    function pollEvery() {
        return state.dashboard
            ? pollSeconds(dashboards.current, state.refresh, new URLSearchParams(window.location.search).has("refresh"))
            : state.refresh;
    }

    function showReconnecting(delay, reason) {
        const node = byId("conn-status");
        node.textContent = "Reconnecting\u2026 " + reason + " Next try in " + Math.round(delay / 1000) +
            " s; the data shown is from before.";
        node.classList.remove("d-none");
        document.body.classList.add("reconnecting");
    }

    document.addEventListener("visibilitychange", () => {
        if (document.hidden) {
            clearTimeout(timer);
            timer = null;
        } else {
            tick();   // catch up at once
        }
    });

    // -- wiring

    let filterTimer = null;
    byId("filter").addEventListener("input", (event) => {
        const value = event.target.value;
        clearTimeout(filterTimer);
        filterTimer = setTimeout(() => filterChanged(value), FILTER_DEBOUNCE_MS);
    });
    byId("clear-selection").addEventListener("click", () => {
        state = { ...state, selected: [] };
        if (state.dayweek) {
            closeDayweek();
        }
        selectionChanged();
    });
    byId("server-metrics").addEventListener("click", (event) => {
        const tr = event.target.closest("tr[data-key]");
        if (tr) {
            toggleSeries(tr.getAttribute("data-key"));
        }
    });
    document.querySelectorAll("#metric-table th[data-sort] button").forEach((button) => {
        button.addEventListener("click", () => {
            const by = button.closest("th").getAttribute("data-sort");
            state = { ...state, sort: by, sortDesc: by === state.sort ? !state.sortDesc : by !== "name" };
            writeUrl(false);
            renderList();
        });
    });
    byId("list-view").addEventListener("click", (event) => {
        const button = event.target.closest("button[data-view]");
        if (button) {
            state = { ...state, view: button.getAttribute("data-view") };
            writeUrl(false);
            renderList();
        }
    });
    byId("range-presets").addEventListener("click", (event) => {
        const button = event.target.closest("button[data-range]");
        if (!button) {
            return;
        }
        const range = button.getAttribute("data-range");
        if (range === "custom") {
            if (state.range !== "custom") {
                // Start from the range on screen, so the inputs hold something sensible.
                const until = Math.round(now());
                setState({ ...state, range, customFrom: until - RANGES[state.range], customUntil: until }, true);
            }
            return;
        }
        setState({ ...state, range, customFrom: null, customUntil: null }, true);
    });
    byId("custom-range").addEventListener("submit", (event) => {
        event.preventDefault();
        const from = fromLocalInput(byId("range-from").value, state.utc);
        const until = fromLocalInput(byId("range-until").value, state.utc);
        if (from === null || until === null || from >= until) {
            showAlert(byId("plot-error"), "The custom range needs a start before its end.");
            return;
        }
        setState({ ...state, range: "custom", customFrom: from, customUntil: until }, true);
    });
    byId("zoom-out").addEventListener("click", zoomOut);
    byId("timezone").addEventListener("change", (event) => {
        state = { ...state, utc: event.target.value === "utc" };
        writeUrl(false);
        renderRangeControls();
        redrawPlot();
    });
    byId("log-scale").addEventListener("change", (event) => {
        state = { ...state, log: event.target.checked };
        writeUrl(false);
        redrawPlot();
    });
    byId("resolution").addEventListener("change", (event) => {
        setState({ ...state, resolution: event.target.value }, false);
    });
    byId("refresh-every").addEventListener("change", (event) => {
        state = { ...state, refresh: Number(event.target.value) };
        writeUrl(false);
        renderPlotStatusOnly();
        schedule(state.refresh * 1000);
    });
    byId("field-picker").addEventListener("change", (event) => {
        const input = event.target.closest("input[data-field]");
        if (input) {
            state = toggleField(state, input.getAttribute("data-type"), input.getAttribute("data-field"));
            writeUrl(false);
            renderDayweekControls();
            refreshPlot().catch(quiet);
        }
    });
    byId("dayweek-series").addEventListener("change", () => dayweek.renderFields((type) => fieldsFor(state, type)[0]));

    function renderPlotStatusOnly() {
        const status = byId("plot-status");
        status.textContent = status.textContent.replace(/every \d+ s/, "every " + state.refresh + " s");
    }

    // Back and forward walk the zoom history (and any other pushed state).
    window.addEventListener("popstate", () => {
        const before = state;
        state = parseState(window.location.search);
        byId("filter").value = state.filter;
        held = null;
        renderRangeControls();
        renderExportLinks();
        renderDayweekControls();
        renderList();
        if (before.filter !== state.filter) {
            refreshList().catch(quiet);
        }
        showView();
        if (state.dashboard) {
            refreshDashboard().catch(quiet);
        } else {
            refreshPlot().catch(quiet);
        }
    });

    let resizeTimer = null;
    window.addEventListener("resize", () => {
        clearTimeout(resizeTimer);
        resizeTimer = setTimeout(() => {
            plot.resize();
            dashboards.resize();
        }, 150);
    });

    window.simplestats = Object.freeze({
        get plot() {
            return plot.flot;
        },
        get dayweekPlot() {
            return dayweek.plot;
        },
        get lastSeriesData() {
            return lastSeriesData;
        },
        get lastDayweekData() {
            return dayweek.lastData;
        },
        get state() {
            return JSON.parse(JSON.stringify(state));
        },
        get reconnecting() {
            return failures > 0;
        },
        get listRows() {
            return list.rowCount;
        },
        get listDomRows() {
            return list.domRows;
        },
        get dashboard() {
            return dashboards.current;
        },
        get alertBands() {
            return plot.bands;
        },
        get panels() {
            return dashboards.drawn;
        },
        get pollSeconds() {
            return pollEvery();
        },
        get maxPoints() {
            return maxPoints;
        },
        refresh: () => tick(),
    });

    applyTheme(storedTheme(storage));
    bindThemeSwitch(byId("theme"), storage, () => {
        // Canvas pixels keep the old colours: every plot is built again.
        plot.retheme();
        dashboards.retheme();
        held = null;
        if (state.dashboard) {
            refreshDashboard().catch(quiet);
        } else {
            refreshPlot().catch(quiet);
            dayweek.refresh().catch(quiet);
        }
    });

    byId("filter").value = state.filter;
    renderRangeControls();
    renderExportLinks();
    renderDayweekControls();
    renderPorts(null);
    showView();
    tick().then(() => {
        if (state.dayweek) {
            dayweek.open(state.dayweek).catch(quiet);
        }
    });
}

start();
