// Consolidating what the API answers into what a plot draws: pure functions, no DOM.

import { stepName, formatStep, formatDuration } from "./format.js";

// Twenty distinct colours (Tableau 20 order, the strong ones first), then generated ones.
export const PALETTE = Object.freeze([
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#e6550d", "#31a354", "#843c39", "#7b4173", "#3182bd",
    "#636363", "#8ca252", "#bd9e39", "#ad494a",
]);

export function colour(i) {
    if (i < PALETTE.length) {
        return PALETTE[i];
    }
    // Golden-angle hues: each new colour as far as it can be from the ones before.
    const hue = Math.round((i * 137.508) % 360);
    const light = 35 + (i % 3) * 10;
    return "hsl(" + hue + ", 65%, " + light + "%)";
}

// The start of the bucket still filling at `now`.
export function partialFrom(now, step) {
    return Math.floor(now / step) * step;
}

// The points whose bucket has closed: a live counter's last bucket is low until it does.
export function closedPoints(points, partial) {
    let end = points.length;
    while (end > 0 && points[end - 1][0] >= partial) {
        end--;
    }
    return end === points.length ? points : points.slice(0, end);
}

// Held points before `since` (and not before `from`), then the fresh ones (which start at `since`).
export function mergeSince(held, fresh, since, from) {
    const kept = held.filter((p) => p[0] >= from && p[0] < since);
    return kept.concat(fresh.filter((p) => p[0] >= since));
}

const MS_NAME = /(^|[._-])(ms|millis|latency|duration|response_time|rtt)([._-]|$)|_ms$/i;
const SECONDS_NAME = /(^|[._-])(seconds|secs|uptime)([._-]|$)|_s$/i;
const BYTES_NAME = /(^|[._-])(bytes|size_bytes|rss|heap)([._-]|$)|_bytes$/i;
const PERCENT_NAME = /(^|[._-])(percent|pct|util|utilization|ratio_pct)([._-]|$)|_pct$/i;

export function unitFromName(name) {
    if (MS_NAME.test(name)) {
        return "ms";
    }
    if (SECONDS_NAME.test(name)) {
        return "s";
    }
    if (BYTES_NAME.test(name)) {
        return "bytes";
    }
    if (PERCENT_NAME.test(name)) {
        return "%";
    }
    return "";
}

// The unit of one field of a series: counts are plain, rates per second, statsd timers in ms.
export function unitFor(type, field, name) {
    if (field === "count" || field === "updates") {
        return "";
    }
    if (type === "counter") {
        return field === "rate" ? "/s" : "";
    }
    if (type === "timer") {
        return "ms";
    }
    return unitFromName(name || "");
}

// Axis 1 takes the first series' unit, axis 2 every other unit: {unit: axis number}.
export function assignAxes(units) {
    const axes = {};
    if (!units.length) {
        return axes;
    }
    const first = units[0];
    for (const unit of units) {
        axes[unit] = unit === first ? 1 : 2;
    }
    return axes;
}

// The plot's series from a batch answer: one per (series, field), closed buckets only, nulls kept as gaps.
export function plotSeries(batch, fieldsOf) {
    const out = [];
    for (const body of batch.series) {
        const wanted = fieldsOf(body.type) || [];
        const names = Object.keys(body.fields || {});
        const shown = names.filter((f) => wanted.indexOf(f) !== -1);
        for (const field of (shown.length ? shown : names)) {
            out.push({
                key: body.key,
                name: body.name,
                type: body.type,
                field,
                unit: unitFor(body.type, field, body.name),
                data: closedPoints(body.fields[field], batch.partial_from),
            });
        }
    }
    const axes = assignAxes(out.map((s) => s.unit));
    out.forEach((s, i) => {
        s.color = colour(i);
        s.yaxis = axes[s.unit];
    });
    return out;
}

// The value of the bucket holding `x` (null when none or a gap); `points` sorted by time.
export function valueAt(points, x, step) {
    let lo = 0;
    let hi = points.length - 1;
    while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const t = points[mid][0];
        if (x < t) {
            hi = mid - 1;
        } else if (x >= t + step) {
            lo = mid + 1;
        } else {
            return points[mid][1];
        }
    }
    return null;
}

// Whether each tier can answer a range, and why not: the rule the server applies.
export function resolutionChoices(tiers, from, until, now, maxPoints) {
    return tiers.map((tier) => {
        const name = stepName(tier.step);
        const points = Math.floor(until / tier.step) - Math.floor(from / tier.step) + 1;
        let reason = null;
        if (tier.retention !== null && tier.retention !== undefined && from < now - tier.retention - 1) {
            reason = formatStep(tier.step) + " is kept " + formatDuration(tier.retention) +
                "; this range starts " + formatDuration(now - from) + " ago";
        } else if (points > maxPoints) {
            reason = formatStep(tier.step) + " would give " + points + " points, the limit is " + maxPoints;
        }
        return { step: tier.step, name, usable: reason === null, reason };
    });
}

// What auto picks: the finest tier that keeps `from` and gives at most `autoPoints` points.
export function autoStep(tiers, from, until, now, autoPoints = 2000) {
    for (const tier of tiers) {
        const keeps = tier.retention === null || tier.retention === undefined || from >= now - tier.retention;
        if (keeps && (until - from) / tier.step <= autoPoints) {
            return tier.step;
        }
    }
    return tiers.length ? tiers[tiers.length - 1].step : null;
}

// Present points, and the lone ones (a point between gaps draws no line).
export function countPoints(data) {
    let present = 0;
    let lone = 0;
    for (let i = 0; i < data.length; i++) {
        if (data[i][1] !== null) {
            present++;
            const before = i > 0 && data[i - 1][1] !== null;
            const after = i < data.length - 1 && data[i + 1][1] !== null;
            if (!before && !after) {
                lone++;
            }
        }
    }
    return { present, lone };
}

// A batch answer merged into the one held: `fresh` holds only the points at or after fresh.since.
export function mergeBatch(held, fresh) {
    if (!held || fresh.since === null || fresh.since === undefined) {
        return fresh;
    }
    const before = new Map(held.series.map((s) => [s.key, s]));
    const series = fresh.series.map((s) => {
        const old = before.get(s.key);
        if (!old) {
            return s;
        }
        const fields = {};
        for (const [field, points] of Object.entries(s.fields)) {
            fields[field] = mergeSince(old.fields[field] || [], points, fresh.since, fresh.from);
        }
        return { ...s, fields };
    });
    return { ...fresh, series };
}

// Exponential backoff: base, 2 base, 4 base ... at most cap (all in ms); failures counts from 1.
export function backoffDelay(failures, base, cap) {
    return Math.min(cap, base * 2 ** Math.max(0, failures - 1));
}

// min, max, mean and last of the points drawn (gaps left out); null when there are none.
export function legendStats(points) {
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    let n = 0;
    let last = null;
    for (const [, value] of points) {
        if (value === null) {
            continue;
        }
        min = Math.min(min, value);
        max = Math.max(max, value);
        sum += value;
        n++;
        last = value;
    }
    return n ? { min, max, mean: sum / n, last } : null;
}
