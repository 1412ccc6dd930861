// The series list's order and tree: pure functions over /api/metrics rows.

import { naturalCompare } from "./format.js";

function byName(a, b) {
    return naturalCompare(a.key, b.key);
}

const ORDERS = {
    name: byName,
    // No value sorts last either way; ties by name.
    value: (a, b) => numeric(a.value, b.value) || byName(a, b),
    seen: (a, b) => numeric(a.last_seen, b.last_seen) || byName(a, b),
};

function numeric(x, y) {
    const nx = typeof x === "number" && Number.isFinite(x);
    const ny = typeof y === "number" && Number.isFinite(y);
    if (!nx || !ny) {
        return nx === ny ? 0 : nx ? -1 : 1;
    }
    return x - y;
}

// A sorted copy; descending reverses the comparison but keeps missing values last.
export function sortMetrics(metrics, by, desc) {
    const compare = ORDERS[by] || byName;
    const sign = desc ? -1 : 1;
    return metrics.slice().sort((a, b) => {
        if (by !== "name") {
            const missing = missingLast(a, b, by === "value" ? "value" : "last_seen");
            if (missing) {
                return missing;
            }
        }
        return sign * compare(a, b);
    });
}

function missingLast(a, b, field) {
    const na = typeof a[field] === "number" && Number.isFinite(a[field]);
    const nb = typeof b[field] === "number" && Number.isFinite(b[field]);
    return na === nb ? 0 : na ? -1 : 1;
}

// Rows of the list view: one per series.
export function listRows(sorted) {
    return sorted.map((metric) => ({ kind: "series", id: metric.key, metric, depth: 0, label: null }));
}

// Rows of the tree view: groups by name segment ("api.latency.p" -> api / latency), the open ones expanded.
// A group's id is "g:" + its path; series rows keep the order of `sorted` within their group.
export function treeRows(sorted, open) {
    const root = { children: new Map(), series: [], count: 0 };
    for (const metric of sorted) {
        const parts = metric.name.split(".");
        let node = root;
        node.count++;
        for (let i = 0; i < parts.length - 1; i++) {
            let child = node.children.get(parts[i]);
            if (!child) {
                child = { children: new Map(), series: [], count: 0, path: parts.slice(0, i + 1).join(".") };
                node.children.set(parts[i], child);
            }
            child.count++;
            node = child;
        }
        node.series.push(metric);
    }
    const rows = [];
    const walk = (node, depth) => {
        const names = Array.from(node.children.keys()).sort(naturalCompare);
        for (const name of names) {
            const child = node.children.get(name);
            const id = "g:" + child.path;
            const isOpen = open.has(child.path);
            rows.push({ kind: "group", id, path: child.path, label: name, count: child.count, open: isOpen, depth });
            if (isOpen) {
                walk(child, depth + 1);
            }
        }
        for (const metric of node.series) {
            const last = metric.name.split(".").pop();
            rows.push({ kind: "series", id: metric.key, metric, depth, label: last });
        }
    };
    walk(root, 0);
    return rows;
}

// A name cut after each ".", "_" and "-" so that a narrow column wraps between segments, never inside a word.
export function nameParts(name) {
    return name.split(/(?<=[._-])/);
}
