// Day against week: today against the same time of day over the previous 7 days, in its own panel.

import { FIELDS } from "./state.js";
import { fitYAxisLabels, pointMarks } from "./plot.js";
import { formatValue, tickDigits } from "./format.js";
import { unitFor } from "./series.js";
import { gridColours } from "./theme.js";

const $ = window.jQuery;

function tagsParam(tags) {
    return Object.entries(tags || {}).map(([tag, value]) => tag + ":" + value).join(",");
}

// createDayweek({api, elements, onOpen(view), onClose(), describe(key) -> {name, tags, type}})
export function createDayweek({ api, elements, onOpen, onClose, describe }) {
    const { panel, title, error, placeholder, seriesSelect, fieldSelect, button, close } = elements;
    let plot = null;
    let lastData = null;
    let view = null;

    function destroy() {
        if (plot) {
            plot.shutdown();
            plot = null;
        }
        $(placeholder).empty();
    }

    function renderControls(selectedKeys, defaultFieldOf) {
        const chosen = seriesSelect.value;
        seriesSelect.textContent = "";
        for (const key of selectedKeys) {
            const option = document.createElement("option");
            option.value = key;
            option.textContent = key;
            seriesSelect.appendChild(option);
        }
        if (chosen && selectedKeys.indexOf(chosen) !== -1) {
            seriesSelect.value = chosen;
        }
        renderFields(defaultFieldOf);
        const none = selectedKeys.length === 0;
        seriesSelect.disabled = none;
        button.disabled = none;
    }

    function renderFields(defaultFieldOf) {
        const chosen = fieldSelect.value;
        fieldSelect.textContent = "";
        const info = describe(seriesSelect.value);
        const fields = info && FIELDS[info.type] ? FIELDS[info.type] : [];
        for (const field of fields) {
            const option = document.createElement("option");
            option.value = field;
            option.textContent = field;
            fieldSelect.appendChild(option);
        }
        if (fields.length) {
            fieldSelect.value = fields.indexOf(chosen) !== -1 ? chosen : defaultFieldOf(info.type);
        }
        fieldSelect.disabled = fields.length === 0;
    }

    function draw(body) {
        destroy();
        let start = body.midnight;
        if (typeof start !== "number") {
            const midnight = new Date();
            midnight.setHours(0, 0, 0, 0);
            start = midnight.getTime() / 1000;
        }
        const field = body.field || (view && view.field) || "";
        const info = describe(body.key) || { type: body.type, name: body.key };
        const unit = unitFor(body.type || info.type, field, info.name);
        plot = $.plot($(placeholder), [
            { id: "week-min", data: body.week_min || [], color: "#adb5bd", lines: { show: true, lineWidth: 0, fill: false } },
            { id: "week-max", data: body.week_max || [], color: "#adb5bd", fillBetween: "week-min",
              lines: { show: true, lineWidth: 0, fill: 0.35 } },
            { id: "week-avg", data: body.week_avg || [], color: "#6c757d", lines: { show: true, lineWidth: 1.5 },
              points: pointMarks(body.week_avg || []) },
            { id: "today", data: body.today || [], color: "#0d6efd", lines: { show: true, lineWidth: 3 },
              points: pointMarks(body.today || []) },
        ], {
            xaxis: { mode: "time", timeBase: "seconds", timezone: "browser", min: start, max: start + 86400 },
            yaxis: { autoScale: "loose", tickFormatter: (v, axis) => formatValue(v, unit, tickDigits(v, axis.tickSize)) },
            series: { shadowSize: 0 },
            grid: { borderWidth: 1, ...gridColours() },
            legend: { show: false },
        });
        fitYAxisLabels(plot);
    }

    async function refresh() {
        if (!view) {
            return;
        }
        const info = describe(view.key) || { name: view.key, tags: {} };
        try {
            const body = await api.get("dayweek", "/api/dayweek", {
                name: info.name,
                tags: tagsParam(info.tags),
                field: view.field,
                // minutes east of UTC, so the server's "today" starts at the browser's midnight
                tz_offset: -new Date().getTimezoneOffset(),
            });
            if (!view) {
                return;
            }
            error.classList.add("d-none");
            lastData = body;
            draw(body);
        } catch (failure) {
            if (failure.aborted) {
                return;
            }
            if (failure.status !== 0 && failure.status < 500) {
                error.textContent = "Could not load day against week: " + failure.message;
                error.classList.remove("d-none");
                destroy();
                return;
            }
            throw failure;   // the server did not answer: the poller backs off, the plot stays
        }
    }

    function open(newView) {
        view = newView;
        title.textContent = view.key + (view.field ? " \u00b7 " + view.field : "");
        panel.classList.remove("d-none");
        return refresh();
    }

    function shut() {
        view = null;
        api.abort("dayweek");
        destroy();
        panel.classList.add("d-none");
    }

    button.addEventListener("click", () => {
        if (seriesSelect.value) {
            onOpen({ key: seriesSelect.value, field: fieldSelect.value || null });
            panel.scrollIntoView({ block: "nearest" });
        }
    });
    close.addEventListener("click", () => onClose());

    return {
        renderControls,
        renderFields,
        open,
        close: shut,
        refresh,
        get view() {
            return view;
        },
        get plot() {
            return plot;
        },
        get lastData() {
            return lastData;
        },
    };
}
