// Alerts, without the page: the rule the editor's form makes, how a rule and an instance read, and the
// firing periods of the plotted series (drawn as bands on the plot).

export const CONDITIONS = ["above", "below", "stopped", "anomaly"];
export const RULE_FIELDS = ["last", "mean", "min", "max", "count", "rate", "sum", "p90", "p95", "p99", "median"];
const STATE_ORDER = { firing: 0, pending: 1, resolved: 2, ok: 3 };

function number(text, name) {
    const value = Number(String(text).trim());
    if (String(text).trim() === "" || !Number.isFinite(value)) {
        throw new Error(name + " must be a number");
    }
    return value;
}

// The rule (the server's JSON) from the editor's fields, all strings: {name, filter, field, condition,
// threshold, hold, recover, after, k, repeat, webhook, apprise}.  Throws an Error naming a field when one is
// missing or not a number (the server checks everything again, naming the member).
export function ruleFromForm(form) {
    const rule = { name: (form.name || "").trim(), filter: (form.filter || "").trim() };
    if (!rule.name) {
        throw new Error("name is required");
    }
    if (!rule.filter) {
        throw new Error("filter is required");
    }
    const condition = form.condition || "above";
    if (condition === "above" || condition === "below") {
        rule[condition] = number(form.threshold, "threshold");
        rule.field = form.field || "last";
        if ((form.recover || "").trim() !== "") {
            rule.recover = number(form.recover, "recover");
        }
    } else if (condition === "stopped") {
        rule.stopped = { after: number(form.after, "after") };
    } else if (condition === "anomaly") {
        rule.field = form.field || "last";
        rule.anomaly = { method: "ewma", k: (form.k || "").trim() === "" ? 3 : number(form.k, "k") };
    } else {
        throw new Error("condition must be one of " + CONDITIONS.join(", "));
    }
    if ((form.hold || "").trim() !== "") {
        rule.for = number(form.hold, "for");
    }
    if ((form.repeat || "").trim() !== "") {
        rule.repeat = number(form.repeat, "repeat");
    }
    rule.notify = [];
    if ((form.webhook || "").trim()) {
        rule.notify.push({ type: "webhook", url: form.webhook.trim() });
    }
    if ((form.apprise || "").trim()) {
        rule.notify.push({ type: "apprise", url: form.apprise.trim() });
    }
    return rule;
}

function figure(value) {
    if (value === null || value === undefined) {
        return "\u2013";
    }
    if (Array.isArray(value)) {
        return figure(value[0]) + " \u2026 " + figure(value[1]);
    }
    return String(Math.round(value * 1000) / 1000);
}

// "last above 50 for 30 s (resolves below 45)", "silent for 15 s", ...
export function describeRule(rule) {
    const hold = rule.for ? " for " + rule.for + " s" : "";
    if (rule.condition === "above" || rule.condition === "below") {
        const recover = rule.recover !== undefined && rule.recover !== null
            ? " (resolves " + (rule.condition === "above" ? "below " : "above ") + figure(rule.recover) + ")" : "";
        return rule.field + " " + rule.condition + " " + figure(rule[rule.condition]) + hold + recover;
    }
    if (rule.condition === "stopped") {
        return "nothing reported for " + rule.stopped.after + " s";
    }
    if (rule.condition === "anomaly") {
        return rule.field + " outside " + (rule.anomaly.method === "dayweek" ? "the week's band" : "mean") +
            " \u00b1 " + rule.anomaly.k + " sd" + hold;
    }
    if (rule.condition === "probe") {
        return "probe " + (rule.probe.http || rule.probe.tcp) + ", " + rule.probe.failures + " failures";
    }
    return rule.condition || "";
}

export function describeThreshold(alert) {
    return figure(alert.threshold);
}

export function describeValue(alert) {
    return figure(alert.value);
}

// The instances worth a row: firing, pending, then resolved (newest first), at most `limit`.
export function panelRows(alerts, limit = 50) {
    return alerts
        .filter((a) => a.state !== "ok")
        .sort((a, b) => (STATE_ORDER[a.state] - STATE_ORDER[b.state]) || (b.since - a.since))
        .slice(0, limit);
}

// Firing periods of `keys` over [from, until]: [{key, rule, from, until}], from the history's transitions
// (oldest first) and the instances firing now (whose start may be before the history read).
export function firingBands(history, alerts, keys, from, until) {
    const wanted = new Set(keys);
    const open = new Map();     // rule_id + series -> start
    const bands = [];
    const close = (id, record, end) => {
        const start = open.get(id);
        open.delete(id);
        if (end >= from && start.at <= until) {
            bands.push({ key: start.series, rule: start.rule, from: Math.max(start.at, from), until: Math.min(end, until) });
        }
    };
    for (const record of history) {
        if (!wanted.has(record.series)) {
            continue;
        }
        const id = record.rule_id + "\u0000" + record.series;
        if (record.state === "firing") {
            if (!open.has(id)) {
                open.set(id, { at: record.time, series: record.series, rule: record.rule });
            }
        } else if (open.has(id)) {
            close(id, record, record.time);
        }
    }
    for (const alert of alerts) {
        if (alert.state !== "firing" || !wanted.has(alert.series)) {
            continue;
        }
        const id = alert.rule_id + "\u0000" + alert.series;
        if (!open.has(id)) {
            open.set(id, { at: alert.fired_at || alert.since, series: alert.series, rule: alert.rule });
        }
        close(id, null, until);
    }
    // Whatever the history left open without a firing instance now ended when the history stops.
    return bands;
}
