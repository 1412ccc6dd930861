// The alerts panel: firing and pending instances first (value, threshold, since; silence from there), the
// rules with their delivery status, and a rule editor whose filter previews the series it matches.
// The header's badge says how many fire.  Every name, series and message goes into the page as text.

import { ruleFromForm, describeRule, describeValue, describeThreshold, panelRows, firingBands } from "./alertsmodel.js";
import { formatAgo, formatCount } from "./format.js";

const PREVIEW_DEBOUNCE_MS = 250;
const PREVIEW_NAMES = 5;
const SILENCE_SECONDS = 3600;
const STATE_BADGES = { firing: "text-bg-danger", pending: "text-bg-warning", resolved: "text-bg-success", ok: "text-bg-secondary" };

function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) {
        td.className = className;
    }
    row.appendChild(td);
    return td;
}

function button(text, className, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = className;
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
}

// createAlerts({api, elements, now, onSeries(key)}): `elements` are the panel's nodes (see index.html);
// onSeries plots a series the panel names.
export function createAlerts({ api, elements, now, onSeries }) {
    const el = elements;
    let open = false;
    let route = true;                 // false once the server answered that it has no alerts
    let current = [];                 // the last GET /api/alerts rows
    let previewTimer = null;

    function showError(message) {
        el.error.textContent = message;
        el.error.classList.toggle("d-none", !message);
    }

    function renderBadge(firing) {
        el.badge.textContent = firing ? String(firing) : "0";
        el.badge.className = "badge ms-1 " + (firing ? "text-bg-danger" : "text-bg-secondary");
        el.button.title = firing ? firing + " alert(s) firing" : "No alert firing";
    }

    function renderAlerts(rows) {
        el.tbody.textContent = "";
        const shown = panelRows(rows);
        for (const alert of shown) {
            const tr = document.createElement("tr");
            tr.dataset.state = alert.state;
            const state = cell(tr, "");
            const badge = document.createElement("span");
            badge.className = "badge " + (STATE_BADGES[alert.state] || "text-bg-secondary");
            badge.textContent = alert.state;
            state.appendChild(badge);
            cell(tr, alert.rule, "alert-rule");
            const series = cell(tr, "");
            series.appendChild(button(alert.series, "btn btn-link btn-sm p-0 text-start alert-series",
                () => onSeries(alert.series)));
            cell(tr, describeValue(alert), "text-end alert-value");
            cell(tr, describeThreshold(alert), "text-end text-body-secondary alert-threshold");
            cell(tr, formatAgo(now() - alert.since), "text-nowrap alert-since").title = new Date(alert.since * 1000).toLocaleString();
            const action = cell(tr, "", "text-end");
            if (alert.muted) {
                const muted = document.createElement("span");
                muted.className = "badge text-bg-secondary alert-muted";
                muted.textContent = "muted";
                muted.title = "until " + new Date(alert.muted_until * 1000).toLocaleString();
                action.appendChild(muted);
            } else if (alert.state !== "ok") {
                action.appendChild(button("Silence 1 h", "btn btn-outline-secondary btn-sm py-0 alert-silence",
                    () => silence(alert)));
            }
            el.tbody.appendChild(tr);
        }
        el.none.classList.toggle("d-none", shown.length > 0);
    }

    function renderRules(rules) {
        el.rules.textContent = "";
        for (const rule of rules) {
            const li = document.createElement("li");
            li.className = "list-group-item d-flex flex-wrap gap-2 align-items-center py-1 alert-rule-item";
            const name = document.createElement("span");
            name.className = "fw-semibold";
            name.textContent = rule.name;
            li.appendChild(name);
            const what = document.createElement("code");
            what.textContent = rule.filter;
            li.appendChild(what);
            const desc = document.createElement("span");
            desc.className = "small text-body-secondary";
            desc.textContent = describeRule(rule);
            li.appendChild(desc);
            const status = rule.status || {};
            const counts = status.instances || {};
            const info = document.createElement("span");
            info.className = "small ms-auto";
            info.textContent = (counts.firing || 0) + " firing \u00b7 " +
                Object.values(counts).reduce((a, b) => a + b, 0) + " series" +
                (status.deliveries ? " \u00b7 " + formatCount(status.deliveries) + " sent" : "");
            li.appendChild(info);
            if (status.last_error) {
                const error = document.createElement("span");
                error.className = "small text-danger w-100 alert-rule-error";
                error.textContent = "last error: " + status.last_error;
                li.appendChild(error);
            }
            if (rule.source !== "file") {
                li.appendChild(button("Delete", "btn btn-outline-danger btn-sm py-0", () => remove(rule)));
            }
            el.rules.appendChild(li);
        }
        el.rulesNone.classList.toggle("d-none", rules.length > 0);
    }

    async function refresh() {
        if (!route) {
            return;
        }
        let body;
        try {
            body = await api.get("alerts", "/api/alerts", { state: "firing,pending,resolved", limit: 200 });
        } catch (failure) {
            if (failure.status === 404) {
                route = false;          // a server without alerts: no badge, no panel
                el.button.classList.add("d-none");
                return;
            }
            throw failure;
        }
        current = Array.isArray(body.alerts) ? body.alerts : [];
        renderBadge(body.firing || 0);
        if (open) {
            renderAlerts(current);
            const rules = await api.get("alert-rules", "/api/alerts/rules");
            renderRules(Array.isArray(rules.rules) ? rules.rules : []);
        }
    }

    async function silence(alert) {
        try {
            await api.post("alert-silence", "/api/alerts/silences",
                { rule_id: alert.rule_id, series: alert.series, for: SILENCE_SECONDS, comment: "from the dashboard" });
            showError("");
            await refresh();
        } catch (failure) {
            showError("Could not silence: " + failure.message);
        }
    }

    async function remove(rule) {
        try {
            await api.del("alert-delete", "/api/alerts/rules/" + encodeURIComponent(rule.id));
            showError("");
            await refresh();
        } catch (failure) {
            showError("Could not delete the rule: " + failure.message);
        }
    }

    function formValues() {
        const value = (id) => el.form.querySelector("#" + id).value;
        return {
            name: value("rule-name"), filter: value("rule-filter"), field: value("rule-field"),
            condition: value("rule-condition"), threshold: value("rule-threshold"), recover: value("rule-recover"),
            hold: value("rule-for"), after: value("rule-after"), k: value("rule-k"),
            webhook: value("rule-webhook"), apprise: value("rule-apprise"),
        };
    }

    function showConditionFields() {
        const condition = el.form.querySelector("#rule-condition").value;
        for (const node of el.form.querySelectorAll("[data-for-condition]")) {
            node.classList.toggle("d-none", node.dataset.forCondition.split(" ").indexOf(condition) === -1);
        }
    }

    async function preview() {
        const filter = el.form.querySelector("#rule-filter").value.trim();
        if (!filter) {
            el.preview.textContent = "";
            return;
        }
        try {
            const body = await api.get("alert-preview", "/api/metrics", { filter, limit: PREVIEW_NAMES });
            const names = (body.metrics || []).map((m) => m.key);
            const matched = body.matched !== undefined ? body.matched : body.count;
            el.preview.textContent = "matches " + formatCount(matched) + " series" +
                (names.length ? ": " + names.join(", ") + (matched > names.length ? ", \u2026" : "") : "") +
                " (and series created later)";
        } catch (failure) {
            if (!failure.aborted) {
                el.preview.textContent = failure.message;
            }
        }
    }

    async function save(event) {
        event.preventDefault();
        let rule;
        try {
            rule = ruleFromForm(formValues());
        } catch (failure) {
            el.result.className = "small text-danger";
            el.result.textContent = failure.message;
            return;
        }
        try {
            const made = await api.post("alert-save", "/api/alerts/rules", rule);
            el.result.className = "small text-success";
            el.result.textContent = "Saved rule " + made.name + ".";
            el.form.reset();
            showConditionFields();
            el.preview.textContent = "";
            await refresh();
        } catch (failure) {
            el.result.className = "small text-danger";
            el.result.textContent = failure.message;
        }
    }

    el.button.addEventListener("click", () => {
        open = !open;
        el.panel.classList.toggle("d-none", !open);
        el.button.setAttribute("aria-expanded", String(open));
        if (open) {
            refresh().catch((failure) => showError("Could not load the alerts: " + failure.message));
        }
    });
    el.close.addEventListener("click", () => el.button.click());
    el.form.addEventListener("submit", save);
    el.form.querySelector("#rule-condition").addEventListener("change", showConditionFields);
    el.form.querySelector("#rule-filter").addEventListener("input", () => {
        clearTimeout(previewTimer);
        previewTimer = setTimeout(() => preview().catch(() => {}), PREVIEW_DEBOUNCE_MS);
    });
    showConditionFields();

    return {
        refresh,
        // Firing periods of `keys` over the plot's range, for its bands; [] where the server has no alerts.
        async bands(keys, from, until) {
            if (!route || !keys.length) {
                return [];
            }
            try {
                const body = await api.get("alert-history", "/api/alerts/history", { from: from - 86400, until });
                return firingBands(body.history || [], current, keys, from, until);
            } catch (failure) {
                if (failure.status === 404) {
                    return [];
                }
                throw failure;
            }
        },
        get open() {
            return open;
        },
        get rows() {
            return current;
        },
    };
}
