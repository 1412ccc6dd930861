// Saved dashboards in the page: the view of one (a grid of panels, each its own plot, edited in place
// and stored by the server), the "Add to dashboard" form of the explorer, the navbar's list, wall-screen mode.

import { createPlot } from "./plot.js";
import { plotSeries } from "./series.js";
import { formatValue, formatTime } from "./format.js";
import { fieldsFor } from "./state.js";
import {
    KINDS, panelRequest, movePanel, duplicatePanel, removePanel, addPanel, storable, lastValue, panelFromState,
} from "./dashmodel.js";
import { isAborted, isConnectionError } from "./api.js";

function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
        node.className = className;
    }
    if (text !== undefined) {
        node.textContent = text;
    }
    return node;
}

function button(className, text, label) {
    const node = el("button", className, text);
    node.type = "button";
    if (label) {
        node.setAttribute("aria-label", label);
        node.title = label;
    }
    return node;
}

// createDashboards({api, reader, elements, context(), getState(), types, tooltip, onZoom, onZoomOut, open(id, wall)})
export function createDashboards({ api, reader, elements, context, getState, types, tooltip, onZoom, onZoomOut, open }) {
    const { view, name, panelsNode, error, status, wall, exportLink, importInput, remove, menu, addForm } = elements;
    let dashboard = null;
    let panels = [];     // [{panel, plot, number, card}]
    let lastSeries = []; // per panel: the series drawn (for tests)

    function showError(message) {
        error.textContent = message;
        error.classList.toggle("d-none", !message);
    }

    async function save(next) {
        const saved = await request("PUT", "/api/dashboards/" + encodeURIComponent(next.id), storable(next));
        dashboard = saved;
        render();
        status.textContent = "Saved " + formatTime(Date.now() / 1000);
        return saved;
    }

    // Dashboards are written with PUT/POST/DELETE: fetch directly with the API's headers.
    async function request(method, path, body) {
        const response = await window.fetch(path, {
            method,
            headers: api.headers(body === undefined ? {} : { "Content-Type": "application/json" }),
            body: body === undefined ? undefined : JSON.stringify(body),
        });
        let parsed = null;
        try {
            parsed = await response.json();
        } catch {
            parsed = null;
        }
        if (!response.ok) {
            throw new Error(parsed && parsed.error ? parsed.error : "The server answered HTTP " + response.status + ".");
        }
        return parsed;
    }

    function render() {
        for (const p of panels) {
            p.plot.draw([], { step: 60 }, "");
        }
        panels = [];
        lastSeries = [];
        panelsNode.textContent = "";
        name.value = dashboard.name;
        document.title = dashboard.name + " \u00b7 SimpleStats";
        const blob = new Blob([JSON.stringify(storable(dashboard), null, 2)], { type: "application/json" });
        if (exportLink.href.startsWith("blob:")) {
            URL.revokeObjectURL(exportLink.href);
        }
        exportLink.href = URL.createObjectURL(blob);
        exportLink.download = (dashboard.name || "dashboard").replace(/[^\w.-]+/g, "_") + ".json";
        dashboard.panels.forEach((panel, index) => panels.push(panelCard(panel, index)));
        if (!dashboard.panels.length) {
            panelsNode.appendChild(el("p", "text-body-secondary", "This dashboard has no panels yet: plot series in the explorer and use \u201cAdd to dashboard\u201d."));
        }
    }

    function panelCard(panel, index) {
        const col = el("div", "col-12 col-xl-6 dash-panel");
        col.setAttribute("data-index", String(index));
        const card = col.appendChild(el("section", "card h-100"));
        card.setAttribute("aria-label", "Panel " + (panel.title || index + 1));
        const header = card.appendChild(el("div", "card-header py-1 d-flex align-items-center gap-1"));
        header.appendChild(el("h2", "h6 mb-0 me-auto panel-title text-truncate", panel.title || "Panel " + (index + 1)));
        header.appendChild(el("span", "badge text-bg-light panel-kind", panel.kind || "lines"));
        const controls = header.appendChild(el("span", "panel-controls btn-group btn-group-sm"));
        const up = controls.appendChild(button("btn btn-outline-dark", "\u2191", "Move panel up"));
        const down = controls.appendChild(button("btn btn-outline-dark", "\u2193", "Move panel down"));
        const copy = controls.appendChild(button("btn btn-outline-dark", "copy", "copy: duplicate the panel"));
        const drop = controls.appendChild(button("btn btn-outline-danger", "\u00d7", "Remove panel"));
        up.disabled = index === 0;
        down.disabled = index === dashboard.panels.length - 1;
        const act = (edit) => () => save(edit(dashboard)).catch((e) => showError("Could not save: " + e.message));
        up.addEventListener("click", act((d) => movePanel(d, index, -1)));
        down.addEventListener("click", act((d) => movePanel(d, index, 1)));
        copy.addEventListener("click", act((d) => duplicatePanel(d, index)));
        drop.addEventListener("click", act((d) => removePanel(d, index)));

        const body = card.appendChild(el("div", "card-body py-2"));
        const number = panel.kind === "number" ? body.appendChild(el("div", "big-number num", "\u2014")) : null;
        const wrap = body.appendChild(el("div", "plot-wrap"));
        const placeholder = wrap.appendChild(el("div", "plot panel-plot" + (number ? " sparkline" : "")));
        const crosshair = wrap.appendChild(el("div", "plot-crosshair d-none"));
        const markers = wrap.appendChild(el("div", "plot-events"));
        const hint = wrap.appendChild(el("div", "plot-hint", "Loading\u2026"));
        const legend = body.appendChild(el("ul", "plot-legend list-unstyled mb-0 mt-1"));
        panelsNode.appendChild(col);
        const plot = createPlot({
            placeholder, legend, tooltip, crosshair, hint, markers, onZoom, onZoomOut,
            kind: panel.kind === "number" ? "lines" : panel.kind || "lines",
        });
        return { panel, plot, number, card: col };
    }

    async function refreshPanel(entry, index, events) {
        const state = getState();
        const request = panelRequest(entry.panel, state);
        if (!request.keys.length && !request.filter) {
            entry.plot.draw([], { step: 60 }, "This panel names no series.");
            return;
        }
        const fieldsOf = (key) => request.fieldsOf(key) ||
            (types.get(key) ? fieldsFor(state, types.get(key)) : null);
        let batch;
        try {
            batch = await reader.read({ ...request, fieldsOf, kind: "panel-" + index }, context());
        } catch (failure) {
            if (!isAborted(failure) && !isConnectionError(failure)) {
                entry.plot.draw([], { step: 60 }, "Could not load: " + failure.message);
            }
            throw failure;
        }
        if (!panels.includes(entry)) {
            return;
        }
        batch.series.forEach((s) => types.set(s.key, s.type));
        const series = plotSeries(batch, (type) => fieldsFor(state, type));
        lastSeries[index] = series;
        entry.plot.draw(series, { from: batch.from, until: batch.until, step: batch.resolution },
            batch.series.length ? "No points in this time range." : "None of its series exist.",
            request.follows ? events : []);
        if (entry.number) {
            const last = lastValue(series);
            entry.number.textContent = last ? formatValue(last.value, last.unit) : "\u2014";
            entry.number.title = last ? formatTime(last.at) : "";
        }
    }

    name.addEventListener("change", () => {
        if (dashboard && name.value.trim() && name.value.trim() !== dashboard.name) {
            save({ ...dashboard, name: name.value.trim() }).catch((e) => showError("Could not rename: " + e.message));
        }
    });
    remove.addEventListener("click", async () => {
        if (!dashboard || !window.confirm("Delete the dashboard \u201c" + dashboard.name + "\u201d?")) {
            return;
        }
        try {
            await request("DELETE", "/api/dashboards/" + encodeURIComponent(dashboard.id));
            open(null, false);
        } catch (e) {
            showError("Could not delete: " + e.message);
        }
    });
    wall.addEventListener("click", () => {
        if (document.documentElement.requestFullscreen) {
            document.documentElement.requestFullscreen().catch(() => {});
        }
        open(dashboard.id, true);
    });
    importInput.addEventListener("change", async () => {
        const file = importInput.files && importInput.files[0];
        if (!file) {
            return;
        }
        try {
            const body = JSON.parse(await file.text());
            const created = await request("POST", "/api/dashboards", storable(body));
            open(created.id, false);
        } catch (e) {
            showError("Could not import " + file.name + ": " + e.message);
        } finally {
            importInput.value = "";
        }
    });

    // The navbar's list, read when it opens.
    menu.button.addEventListener("show.bs.dropdown", async () => {
        const list = menu.list;
        list.textContent = "";
        list.appendChild(el("li")).appendChild(el("span", "dropdown-item-text small text-body-secondary", "Loading\u2026"));
        try {
            const body = await api.get("dashboards", "/api/dashboards");
            list.textContent = "";
            for (const d of body.dashboards || []) {
                const link = list.appendChild(el("li")).appendChild(el("a", "dropdown-item", d.name + " (" + d.panels + ")"));
                link.href = "?dashboard=" + encodeURIComponent(d.id);
                link.setAttribute("data-dashboard", d.id);
            }
            if (!(body.dashboards || []).length) {
                list.appendChild(el("li")).appendChild(el("span", "dropdown-item-text small", "No dashboards yet: plot series, then \u201cAdd to dashboard\u201d."));
            }
        } catch (e) {
            list.textContent = "";
            list.appendChild(el("li")).appendChild(el("span", "dropdown-item-text small text-danger",
                e.status === 404 || e.status === 405 ? "This server keeps no dashboards." : "Could not list dashboards: " + e.message));
        }
    });

    // "Add to dashboard": what the explorer plots becomes a panel of a new or an existing dashboard.
    addForm.toggle.addEventListener("click", async () => {
        const shown = addForm.form.classList.toggle("d-none") === false;
        addForm.toggle.setAttribute("aria-expanded", shown ? "true" : "false");
        if (!shown) {
            return;
        }
        const target = addForm.target;
        target.textContent = "";
        const fresh = target.appendChild(el("option", "", "New dashboard\u2026"));
        fresh.value = "";
        try {
            const body = await api.get("dashboards", "/api/dashboards");
            for (const d of body.dashboards || []) {
                target.appendChild(el("option", "", d.name)).value = d.id;
            }
        } catch { /* only a new one then */ }
        addForm.newName.closest(".add-new").classList.toggle("d-none", target.value !== "");
    });
    addForm.target.addEventListener("change", () => {
        addForm.newName.closest(".add-new").classList.toggle("d-none", addForm.target.value !== "");
    });
    addForm.form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const state = getState();
        if (!state.selected.length) {
            addForm.result.textContent = "Plot some series first.";
            return;
        }
        const panel = panelFromState(state, types, addForm.kind.value, addForm.title.value.trim());
        try {
            let saved;
            if (addForm.target.value) {
                const current = await request("GET", "/api/dashboards/" + encodeURIComponent(addForm.target.value));
                saved = await request("PUT", "/api/dashboards/" + encodeURIComponent(current.id), storable(addPanel(current, panel)));
            } else {
                const boardName = addForm.newName.value.trim() || "Dashboard";
                saved = await request("POST", "/api/dashboards", { name: boardName, refresh: state.refresh, panels: [panel] });
            }
            addForm.result.textContent = "";
            addForm.result.append("Added to ");
            const link = addForm.result.appendChild(el("a", "", saved.name));
            link.href = "?dashboard=" + encodeURIComponent(saved.id);
            link.id = "add-panel-link";
            addForm.result.append(" (" + saved.panels.length + (saved.panels.length === 1 ? " panel)." : " panels)."));
            addForm.title.value = "";
            addForm.target.textContent = "";
            addForm.target.appendChild(el("option", "", "New dashboard\u2026")).value = "";
            addForm.target.appendChild(el("option", "", saved.name)).value = saved.id;
            addForm.target.value = saved.id;
            addForm.newName.closest(".add-new").classList.add("d-none");
        } catch (e) {
            addForm.result.textContent = "Could not add the panel: " + e.message;
        }
    });
    for (const kind of KINDS) {
        addForm.kind.appendChild(el("option", "", kind)).value = kind;
    }

    return {
        async load(id) {
            showError("");
            try {
                dashboard = await request("GET", "/api/dashboards/" + encodeURIComponent(id));
            } catch (e) {
                dashboard = null;
                panelsNode.textContent = "";
                showError("Could not open the dashboard: " + e.message);
                return;
            }
            render();
        },
        // Every panel, each its own read (panels differ in range and fields); events once for the page's range.
        async refresh(events) {
            if (!dashboard) {
                return;
            }
            const results = await Promise.allSettled(panels.map((entry, i) => refreshPanel(entry, i, events)));
            const down = results.find((r) => r.status === "rejected" && isConnectionError(r.reason));
            if (down) {
                throw down.reason;
            }
        },
        close() {
            for (const p of panels) {
                p.plot.draw([], { step: 60 }, "");
            }
            panels = [];
            dashboard = null;
            panelsNode.textContent = "";
            view.classList.add("d-none");
        },
        resize() {
            panels.forEach((p) => p.plot.resize());
        },
        retheme() {
            panels.forEach((p) => p.plot.retheme());
        },
        get current() {
            return dashboard;
        },
        get drawn() {
            return panels.map((p, i) => ({ flot: p.plot.flot, series: (lastSeries[i] || []).map((s) => s.key) }));
        },
    };
}
