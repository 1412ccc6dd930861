// The server panel's forwarding rows: drawn from forwardmodel.js's rows, as text (never markup).
import { forwardRows, forwardSummary } from "./forwardmodel.js";

function cell(tr, text, className) {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text;
    tr.appendChild(td);
    return td;
}

// `forward` is /api/health's (null without --forward): the rows, or the section hidden.
export function renderForward(section, forward) {
    const rows = forwardRows(forward);
    section.classList.toggle("d-none", rows.length === 0);
    section.querySelector(".forward-summary").textContent = forwardSummary(forward);
    const tbody = section.querySelector("tbody");
    tbody.textContent = "";
    for (const row of rows) {
        const tr = document.createElement("tr");
        tr.className = "forward-row";
        tr.setAttribute("data-destination", row.key);
        tr.setAttribute("data-state", row.dot);
        tr.setAttribute("data-connected", row.connected ? "true" : "false");
        tr.setAttribute("data-queued", String(row.queuedLines));
        cell(tr, row.address, "forward-address text-break");
        const state = cell(tr, "", "forward-state");
        state.title = row.title;
        const dot = document.createElement("span");
        dot.className = "forward-dot forward-dot-" + row.dot;
        dot.setAttribute("aria-hidden", "true");
        // The dot stays with its word when the cell wraps; the next try may go to the next line.
        const label = document.createElement("span");
        label.className = "text-nowrap";
        label.appendChild(dot);
        label.appendChild(document.createTextNode(row.label));
        state.appendChild(label);
        if (row.retry) {
            state.appendChild(document.createTextNode(", " + row.retry));
        }
        cell(tr, row.queued, "forward-queued text-end num");
        cell(tr, row.age, "forward-age text-end num" + (row.late ? " text-danger fw-semibold" : ""));
        cell(tr, row.dropped, "forward-dropped text-end num" + (row.droppedAny ? " text-danger fw-semibold" : ""));
        tbody.appendChild(tr);
    }
}
