// Number, duration and time formatting: pure functions, no DOM.

const SI = [
    [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"],
];
const SMALL_SI = [[1e-3, "m"], [1e-6, "µ"], [1e-9, "n"]];
const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

// Three significant digits, trailing zeros dropped: 130.33555 -> "130", 1.23456 -> "1.23".
export function significant(value, digits = 3) {
    if (value === 0) {
        return "0";
    }
    const size = Math.abs(value);
    const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(size)));
    const text = value.toFixed(Math.min(decimals, 12));
    return text.indexOf(".") === -1 ? text : text.replace(/\.?0+$/, "");
}

// SI prefixes: 1234 -> "1.23k", 0.0042 -> "4.2m"; "—" for no value.
export function formatSI(value, digits = 3) {
    if (value === null || value === undefined) {
        return "\u2014";
    }
    if (typeof value !== "number" || !Number.isFinite(value)) {
        return String(value);
    }
    const size = Math.abs(value);
    if (size >= 1e15) {
        return value.toExponential(2);
    }
    for (const [scale, prefix] of SI) {
        if (size >= scale) {
            return significant(value / scale, digits) + prefix;
        }
    }
    if (size !== 0 && size < 0.01) {
        for (const [scale, prefix] of SMALL_SI) {
            if (size >= scale) {
                return significant(value / scale, digits) + prefix;
            }
        }
        return value.toExponential(2);
    }
    return significant(value, digits);
}

// A duration given in seconds, in the largest unit that keeps it readable: "130 ms", "2.5 s", "3.2 min".
export function formatSeconds(seconds, digits = 3) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
        return formatSI(seconds, digits);
    }
    const size = Math.abs(seconds);
    if (size === 0) {
        return "0 s";
    }
    if (size < 1e-3) {
        return significant(seconds * 1e6, digits) + " µs";
    }
    if (size < 1) {
        return significant(seconds * 1e3, digits) + " ms";
    }
    if (size < 60) {
        return significant(seconds, digits) + " s";
    }
    if (size < 3600) {
        return significant(seconds / 60, digits) + " min";
    }
    if (size < 86400) {
        return significant(seconds / 3600, digits) + " h";
    }
    return significant(seconds / 86400, digits) + " d";
}

const BYTES = [[2 ** 40, "TiB"], [2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]];

// A value in its unit: "" (plain SI), "ms", "s", "bytes", "%", "/s"; `digits` significant digits.
export function formatValue(value, unit = "", digits = 3) {
    if (value === null || value === undefined || typeof value !== "number" || !Number.isFinite(value)) {
        return formatSI(value);
    }
    switch (unit) {
    case "ms":
        return formatSeconds(value / 1000, digits);
    case "s":
        return formatSeconds(value, digits);
    case "bytes": {
        const size = Math.abs(value);
        for (const [scale, name] of BYTES) {
            if (size >= scale) {
                return significant(value / scale, digits) + " " + name;
            }
        }
        return significant(value, digits) + " B";
    }
    case "%":
        return significant(value, digits) + " %";
    case "/s":
        return formatSI(value, digits) + "/s";
    default:
        return formatSI(value, digits);
    }
}

// A whole count with thousands separators: 12345 -> "12,345".
export function formatCount(n) {
    return GROUPED.format(n);
}

export function formatAgo(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) {
        return s + " s ago";
    }
    if (s < 3600) {
        return Math.floor(s / 60) + " min ago";
    }
    if (s < 86400) {
        return Math.floor(s / 3600) + " h ago";
    }
    return Math.floor(s / 86400) + " d ago";
}

export function formatDuration(seconds) {
    const s = Math.floor(seconds);
    if (s < 60) {
        return s + " s";
    }
    if (s < 3600) {
        return Math.floor(s / 60) + " min";
    }
    if (s < 86400) {
        return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    }
    return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
}

// A tier step: 5 -> "5 s", 60 -> "1 min", 3600 -> "1 h".
export function formatStep(seconds) {
    if (seconds % 86400 === 0) {
        return seconds / 86400 + " d";
    }
    if (seconds % 3600 === 0) {
        return seconds / 3600 + " h";
    }
    if (seconds % 60 === 0) {
        return seconds / 60 + " min";
    }
    return seconds + " s";
}

// A tier step as the API names it: 5 -> "5s", 60 -> "1m", 3600 -> "1h".
export function stepName(seconds) {
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
        if (seconds % size === 0) {
            return seconds / size + unit;
        }
    }
    return seconds + "s";
}

export function formatTime(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleString();
}

// "YYYY-MM-DDTHH:MM:SS" in the browser's time zone, as a datetime-local input wants it.
export function toLocalInput(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    const two = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + "T" +
        two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
}

export function fromLocalInput(text) {
    const ms = new Date(text).getTime(); // a datetime-local value parses as local time
    return Number.isNaN(ms) ? null : Math.round(ms / 1000);
}

const CHUNK = /(\d+|\D+)/g;

// Natural order: "svc2" < "svc10", digits compared as numbers, the rest as text.
export function naturalCompare(a, b) {
    if (a === b) {
        return 0;
    }
    const left = a.match(CHUNK) || [];
    const right = b.match(CHUNK) || [];
    const n = Math.min(left.length, right.length);
    for (let i = 0; i < n; i++) {
        const x = left[i];
        const y = right[i];
        if (x === y) {
            continue;
        }
        const dx = x.charCodeAt(0) >= 48 && x.charCodeAt(0) <= 57;
        const dy = y.charCodeAt(0) >= 48 && y.charCodeAt(0) <= 57;
        if (dx && dy) {
            const diff = Number(x) - Number(y);
            if (diff !== 0) {
                return diff < 0 ? -1 : 1;
            }
            // "01" and "1": the shorter first, so the order is total.
            return x.length - y.length < 0 ? -1 : 1;
        }
        return x < y ? -1 : 1;
    }
    return left.length - right.length;
}

// Enough significant digits for an axis's tick labels to differ: ticks 20.49, 20.5, 20.51 need four.
export function tickDigits(value, tickSize) {
    if (!tickSize || !Number.isFinite(tickSize) || value === 0) {
        return 3;
    }
    const needed = Math.floor(Math.log10(Math.abs(value))) - Math.floor(Math.log10(tickSize)) + 1;
    return Math.min(12, Math.max(3, needed));
}
