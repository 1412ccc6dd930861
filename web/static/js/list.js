// The series list: rows updated in place (kept by key, so focus and scroll stay), virtualised past
// a few hundred rows (only the rows in view, and a margin, are in the DOM).

import { formatSI, formatAgo, formatTime, formatCount } from "./format.js";
import { nameParts } from "./listmodel.js";

const VIRTUAL_FROM = 200;   // rows; below this every row is in the DOM
const MARGIN = 15;          // rows rendered above and below the view

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

function setText(node, text) {
    if (node.textContent !== text) {
        node.textContent = text;
    }
}

// createList({scroll, tbody, onToggle(key), onTerm(term), onGroup(path)})
export function createList({ scroll, tbody, onToggle, onTerm, onGroup }) {
    const pool = new Map();      // row id -> <tr>
    let rows = [];
    let selected = new Set();
    let now = 0;
    let rowHeight = 40;
    let frame = null;
    const topPad = el("tr", "list-pad");
    const bottomPad = el("tr", "list-pad");
    topPad.setAttribute("aria-hidden", "true");
    bottomPad.setAttribute("aria-hidden", "true");
    topPad.appendChild(el("td")).colSpan = 6;
    bottomPad.appendChild(el("td")).colSpan = 6;

    function seriesRow(row) {
        const tr = el("tr", "metric-row");
        tr.setAttribute("data-key", row.id);
        const check = el("td", "col-check");
        const box = el("input", "form-check-input");
        box.type = "checkbox";
        box.setAttribute("aria-label", "Plot " + row.id);
        check.appendChild(box);
        const name = el("td", "metric-name-cell");
        const wrap = el("div", "name-wrap");
        name.appendChild(wrap);
        const type = el("td", "col-type text-body-secondary small");
        const value = el("td", "col-value text-end num");
        const avg = el("td", "col-avg text-end num");
        const seen = el("td", "col-seen text-end small");
        tr.append(check, name, type, value, avg, seen);
        tr.cells_ = { box, wrap, type, value, avg, seen };
        tr.shown_ = {};
        return tr;
    }

    function fillName(tr, row) {
        const metric = row.metric;
        const signature = (row.label || metric.name) + "\u0000" + JSON.stringify(metric.tags || {}) + row.depth;
        if (tr.shown_.name === signature) {
            return;
        }
        tr.shown_.name = signature;
        const wrap = tr.cells_.wrap;
        wrap.textContent = "";
        wrap.style.paddingLeft = row.depth ? row.depth * 1.1 + "rem" : "";
        const name = el("span", "metric-name");
        // <wbr> between segments: a narrow column wraps there, never inside a word.
        nameParts(row.label || metric.name).forEach((part, i) => {
            if (i) {
                name.appendChild(document.createElement("wbr"));
            }
            name.appendChild(document.createTextNode(part));
        });
        wrap.appendChild(name);
        for (const [tag, value] of Object.entries(metric.tags || {})) {
            wrap.appendChild(document.createTextNode(" "));
            const badge = el("span", "badge tag-badge", tag + ":" + value);
            badge.setAttribute("data-term", tag + ":" + value);
            badge.title = "Add " + tag + ":" + value + " to the filter";
            wrap.appendChild(badge);
        }
        tr.title = metric.key;
    }

    function fillSeries(tr, row) {
        const metric = row.metric;
        const c = tr.cells_;
        fillName(tr, row);
        setText(c.type, metric.type);
        const rate = metric.type === "counter" ? "/s" : "";
        setText(c.value, formatSI(metric.value));
        setText(c.avg, formatSI(metric.avg_1m) + (metric.avg_1m === null ? "" : rate));
        if (tr.shown_.valueTitle !== metric.value) {
            tr.shown_.valueTitle = metric.value;
            c.value.title = String(metric.value);
        }
        setText(c.seen, formatAgo(now - metric.last_seen));
        if (tr.shown_.seen !== metric.last_seen) {
            tr.shown_.seen = metric.last_seen;
            c.seen.title = formatTime(metric.last_seen);
        }
        const on = selected.has(metric.key);
        if (c.box.checked !== on) {
            c.box.checked = on;
        }
        tr.classList.toggle("table-active", on);
    }

    function groupRow(row) {
        const tr = el("tr", "group-row");
        tr.setAttribute("data-group", row.path);
        const td = el("td", "group-cell");
        td.colSpan = 6;
        const button = el("button", "btn btn-link btn-sm p-0 group-toggle text-decoration-none");
        button.type = "button";
        td.appendChild(button);
        tr.appendChild(td);
        tr.cells_ = { button, td };
        tr.shown_ = {};
        return tr;
    }

    function fillGroup(tr, row) {
        const { button, td } = tr.cells_;
        td.style.paddingLeft = row.depth * 1.1 + 0.5 + "rem";
        setText(button, (row.open ? "\u25be " : "\u25b8 ") + row.label + " (" + formatCount(row.count) + ")");
        button.setAttribute("aria-expanded", row.open ? "true" : "false");
    }

    function window_() {
        if (rows.length < VIRTUAL_FROM) {
            return [0, rows.length];
        }
        const view = scroll.clientHeight || 600;
        const first = Math.max(0, Math.floor(scroll.scrollTop / rowHeight) - MARGIN);
        const last = Math.min(rows.length, first + Math.ceil(view / rowHeight) + 2 * MARGIN);
        return [first, last];
    }

    function render() {
        frame = null;
        const [first, last] = window_();
        const wanted = [];
        for (let i = first; i < last; i++) {
            const row = rows[i];
            let tr = pool.get(row.id);
            if (tr && tr.kind_ !== row.kind) {
                tr.remove();
                tr = null;
            }
            if (!tr) {
                tr = row.kind === "group" ? groupRow(row) : seriesRow(row);
                tr.kind_ = row.kind;
                pool.set(row.id, tr);
            }
            if (row.kind === "group") {
                fillGroup(tr, row);
            } else {
                fillSeries(tr, row);
            }
            wanted.push(tr);
        }
        const keep = new Set(wanted);
        for (const [id, tr] of pool) {
            if (!keep.has(tr)) {
                tr.remove();
                pool.delete(id);
            }
        }
        const virtual = rows.length >= VIRTUAL_FROM;
        topPad.firstChild.style.height = virtual ? first * rowHeight + "px" : "0px";
        bottomPad.firstChild.style.height = virtual ? (rows.length - last) * rowHeight + "px" : "0px";
        place([topPad, ...wanted, bottomPad]);
        if (virtual && wanted.length) {
            const measured = wanted[0].getBoundingClientRect().height;
            if (measured > 0 && Math.abs(measured - rowHeight) > 0.5) {
                rowHeight = measured;
                schedule();
            }
        }
    }

    // Put the rows in order without moving the focused one (moving a node takes its focus away).
    function place(ordered) {
        const focused = ordered.find((tr) => tr.contains(document.activeElement));
        if (!focused) {
            let cursor = tbody.firstChild;
            for (const tr of ordered) {
                if (tr !== cursor) {
                    tbody.insertBefore(tr, cursor);
                } else {
                    cursor = cursor.nextSibling;
                }
            }
            return;
        }
        if (focused.parentNode !== tbody) {
            tbody.appendChild(focused);
        }
        const at = ordered.indexOf(focused);
        let cursor = tbody.firstChild;
        for (const tr of ordered.slice(0, at)) {
            if (tr === cursor) {
                cursor = cursor.nextSibling;
            } else {
                tbody.insertBefore(tr, cursor);
            }
        }
        let after = focused;
        for (const tr of ordered.slice(at + 1)) {
            if (after.nextSibling !== tr) {
                tbody.insertBefore(tr, after.nextSibling);
            }
            after = tr;
        }
    }

    function schedule() {
        if (frame === null) {
            frame = window.requestAnimationFrame(render);
        }
    }

    scroll.addEventListener("scroll", schedule, { passive: true });
    tbody.addEventListener("click", (event) => {
        const badge = event.target.closest(".tag-badge");
        if (badge) {
            event.stopPropagation();
            event.preventDefault();
            onTerm(badge.getAttribute("data-term"));
            return;
        }
        const group = event.target.closest("tr.group-row");
        if (group) {
            onGroup(group.getAttribute("data-group"));
            return;
        }
        const tr = event.target.closest("tr.metric-row");
        if (tr) {
            onToggle(tr.getAttribute("data-key"));
        }
    });

    return {
        // rows: from listmodel (listRows or treeRows); selected: a Set of keys; at: server time now.
        update(newRows, newSelected, at) {
            rows = newRows;
            selected = newSelected;
            now = at;
            render();
        },
        select(newSelected) {
            selected = newSelected;
            render();
        },
        get rowCount() {
            return rows.length;
        },
        get domRows() {
            return pool.size;
        },
    };
}
