// Import of a file of points (ndjson, JSON, CSV as exported): upload with progress, then the server's
// check and apply phases read from /api/health, then the outcome, every name shown as text.

import { formatCount } from "./format.js";

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

// createImporter({api, elements, onImported()})
export function createImporter({ api, elements, onImported }) {
    const { input, result, progress, drop, overlay } = elements;
    const bar = progress.querySelector(".progress-bar");
    let importing = false;

    function showBar(percent, label) {
        bar.style.width = percent + "%";
        bar.textContent = label;
        progress.setAttribute("aria-valuenow", String(percent));
    }

    function run(file) {
        if (importing || !file) {
            return;
        }
        importing = true;
        result.classList.add("d-none");
        result.textContent = "";
        progress.classList.remove("d-none");
        showBar(0, "");
        input.disabled = true;
        let polling = false;
        let pollTimer = null;

        function finish() {
            importing = false;
            polling = false;
            clearTimeout(pollTimer);
            progress.classList.add("d-none");
            progress.setAttribute("aria-label", "Upload progress");
            input.disabled = false;
            input.value = "";
        }

        // Once uploaded the server checks every row then applies them; /api/health "imports" says how far.
        async function pollProgress() {
            if (!polling) {
                return;
            }
            try {
                const health = await api.get("import-progress", "/api/health");
                const job = (health.imports || [])[0];
                if (job && polling) {
                    if (job.phase === "checking") {
                        const percent = job.total_bytes ? Math.round(100 * job.bytes / job.total_bytes) : 0;
                        showBar(percent, "Checking " + percent + "%");
                    } else {
                        const percent = job.total_rows ? Math.round(100 * job.rows / job.total_rows) : 0;
                        showBar(percent, "Importing " + formatCount(job.rows) + " of " + formatCount(job.total_rows) + " rows");
                    }
                }
            } catch { /* the next poll tries again */ }
            if (polling) {
                pollTimer = setTimeout(pollProgress, 500);
            }
        }

        const xhr = new XMLHttpRequest();
        xhr.open("POST", "/api/import?format=auto");
        for (const [name, value] of Object.entries(api.headers({}))) {
            xhr.setRequestHeader(name, value);
        }
        xhr.upload.onprogress = (event) => {
            if (event.lengthComputable) {
                const percent = Math.round(100 * event.loaded / event.total);
                showBar(percent, "Uploading " + percent + "%");
            }
        };
        xhr.upload.onload = () => {
            progress.setAttribute("aria-label", "Import progress");
            showBar(0, "Checking\u2026");
            polling = true;
            pollTimer = setTimeout(pollProgress, 500);
        };
        xhr.onload = () => {
            finish();
            let body = null;
            try {
                body = JSON.parse(xhr.responseText);
            } catch {
                body = null;
            }
            if (xhr.status === 200 && body) {
                result.className = "alert alert-success py-2 mt-2 mb-0";
                result.textContent = "Imported " + formatCount(body.imported) + (body.imported === 1 ? " point" : " points") +
                    " into " + formatCount(body.series) + " series from " + file.name + ".";
                onImported();
            } else {
                failure(file, xhr.status, body);
            }
        };
        xhr.onerror = () => {
            finish();
            failure(file, 0, null);
        };
        xhr.send(file);
    }

    function failure(file, status, body) {
        result.className = "alert alert-danger api-error py-2 mt-2 mb-0";
        result.textContent = "";
        let message;
        if (status === 0) {
            message = "Could not reach the server (network error).";
        } else if (body && body.error) {
            message = body.error;
        } else if (status === 413) {
            message = "The file is larger than the server accepts.";
        } else {
            message = "The server answered HTTP " + status + ".";
        }
        result.appendChild(el("div", "fw-semibold", "Nothing was imported from " + file.name + ": " + message));
        const rows = (body && body.bad_rows) || [];
        if (rows.length) {
            const table = el("table", "table table-sm bad-rows mb-0 mt-1");
            const head = table.appendChild(el("thead")).appendChild(el("tr"));
            for (const name of ["Row", "Problem"]) {
                const th = el("th", "", name);
                th.scope = "col";
                head.appendChild(th);
            }
            const tbody = table.appendChild(el("tbody"));
            for (const row of rows) {
                const tr = tbody.appendChild(el("tr"));
                tr.append(el("td", "num", String(row.row)), el("td", "", row.error));
            }
            const scroll = el("div", "bad-rows-scroll");
            scroll.appendChild(table);
            result.appendChild(scroll);
            const total = body.bad_row_count || rows.length;
            result.appendChild(el("div", "small mt-1", total > rows.length
                ? total + " bad rows in all; the first " + rows.length + " are listed."
                : total === 1 ? "1 bad row." : total + " bad rows."));
        }
    }

    function hasFiles(event) {
        const transfer = event.dataTransfer;
        return transfer && Array.prototype.indexOf.call(transfer.types || [], "Files") !== -1;
    }

    let depth = 0;
    document.addEventListener("dragenter", (event) => {
        if (hasFiles(event)) {
            depth += 1;
            overlay.classList.remove("d-none");
            drop.classList.add("drop-active");
        }
    });
    document.addEventListener("dragleave", (event) => {
        if (hasFiles(event)) {
            depth = Math.max(0, depth - 1);
            if (!depth) {
                overlay.classList.add("d-none");
                drop.classList.remove("drop-active");
            }
        }
    });
    document.addEventListener("dragover", (event) => {
        if (hasFiles(event)) {
            event.preventDefault();
            event.dataTransfer.dropEffect = "copy";
        }
    });
    document.addEventListener("drop", (event) => {
        if (!hasFiles(event)) {
            return;
        }
        event.preventDefault();
        depth = 0;
        overlay.classList.add("d-none");
        drop.classList.remove("drop-active");
        const files = event.dataTransfer.files;
        if (files && files.length) {
            run(files[0]);
        }
    });
    input.addEventListener("change", () => {
        if (input.files && input.files.length) {
            run(input.files[0]);
        }
    });

    return { run };
}
