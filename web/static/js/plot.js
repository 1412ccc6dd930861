// The Flot plot: axes that re-fit on every change, one y-axis per unit (two at most), gaps where there
// is no data, a crosshair with every series' value at that time (shared with the other plots of a
// dashboard through onHover / crosshairAt), a log scale, times local or UTC, drag to zoom in, double-click
// to zoom out.

import { formatValue, formatTime, tickDigits } from "./format.js";
import { countPoints, valueAt, legendStats } from "./series.js";
import { UNITS } from "./state.js";
import { gridColours } from "./theme.js";

const $ = window.jQuery;

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

// A lone point between gaps draws no line, so mark the points where there are any.
export function pointMarks(data) {
    const counts = countPoints(data);
    return { show: counts.present <= 120 || counts.lone > 0, radius: 2 };
}

// Flot leaves the end tick labels out when it sizes a y axis, so a wider end label ("100" over "80")
// gets cut off at the edge: measure what was drawn and make room.
export function fitYAxisLabels(plot) {
    let again = false;
    plot.getYAxes().forEach((axis, i) => {
        if (!axis.show && !axis.used) {
            return;
        }
        let widest = 0;
        plot.getPlaceholder().find(".flot-y" + (i + 1) + "-axis text, .flot-y-axis.flot-y" + (i + 1) + "-axis text")
            .each(function measure() {
                widest = Math.max(widest, this.getBBox().width);
            });
        if (widest > (axis.labelWidth || 0)) {
            axis.options.labelWidth = Math.ceil(widest);
            again = true;
        }
    });
    if (again) {
        plot.setupGrid(true);
        plot.draw();
    }
}

const EVENT_COLOUR = "#c2185b";

const BAND_COLOUR = "rgba(220, 53, 69, 0.15)";

// Flot markings: a band per firing period of an alert, under one vertical line per event.
function eventMarkings(events, bands = []) {
    return bands.map((b) => ({ xaxis: { from: b.from, to: b.until }, color: BAND_COLOUR }))
        .concat(events.map((e) => ({ xaxis: { from: e.when, to: e.when }, color: EVENT_COLOUR, lineWidth: 2 })));
}

// The label of a unit choice in the legend's menus.
function unitLabel(unit) {
    return unit === "none" ? "no unit" : unit === "/s" ? "per second" : unit;
}

// createPlot({placeholder, legend, tooltip, crosshair, hint, markers, onZoom(from, until), onZoomOut(),
//             onRemove(key) (none: no remove buttons), onUnit(key, unit or null) (none: no unit menus),
//             onHover(x or null): the pointer's time, for the other plots' crosshairs,
//             kind: "lines" | "area" (stacked) | "bars"})
export function createPlot({ placeholder, legend, tooltip, crosshair, hint, markers, onZoom, onZoomOut, onRemove = null,
    onUnit = null, onHover = null, kind = "lines" }) {
    let plot = null;
    let layout = "";     // the axes' units, log or linear, the zone: a new layout rebuilds the plot
    let step = 60;
    let shown = [];
    let events = [];
    let display = { utc: false, log: false, units: {} };
    let refocus = null;  // the key whose unit menu had the focus before a redraw
    const crosshairValues = crosshair.appendChild(el("div", "crosshair-values"));
    let bands = [];

    const $placeholder = $(placeholder);

    function axisOptions(units) {
        const one = units.filter((u) => u.axis === 1).map((u) => u.unit);
        const two = units.filter((u) => u.axis === 2).map((u) => u.unit);
        const formatter = (list) => (value, axis) =>
            formatValue(value, list.length === 1 ? list[0] : "", tickDigits(value, axis.tickSize));
        const mode = display.log ? "log" : null;
        const axes = [{ position: "left", autoScale: "loose", tickFormatter: formatter(one), mode }];
        if (two.length) {
            axes.push({ position: "right", autoScale: "loose", tickFormatter: formatter(two), gridLines: false, mode });
        }
        return axes;
    }

    function destroy() {
        hideHover();
        if (plot) {
            plot.shutdown();
            plot = null;
        }
        $placeholder.empty();
        layout = "";
    }

    function hideHover() {
        tooltip.classList.add("d-none");
        crosshair.classList.add("d-none");
    }

    // The crosshair's line at time `x` (null: none); with `values`, every series' value there beside it.
    function placeCrosshair(x, values) {
        crosshairValues.textContent = "";
        if (!plot || x === null) {
            crosshair.classList.add("d-none");
            return;
        }
        const xaxis = plot.getAxes().xaxis;
        if (x < xaxis.min || x > xaxis.max) {
            crosshair.classList.add("d-none");
            return;
        }
        const offset = plot.getPlotOffset();
        crosshair.style.left = offset.left + xaxis.p2c(x) + "px";
        crosshair.style.top = offset.top + "px";
        crosshair.style.height = plot.height() + "px";
        if (values) {
            for (const s of shown) {
                const line = crosshairValues.appendChild(el("div", "tip-line"));
                const swatch = el("span", "swatch");
                swatch.style.backgroundColor = s.color;
                line.append(swatch, el("span", "num", formatValue(valueAt(s.data, x, step), s.unit)));
            }
            crosshairValues.classList.toggle("flip", xaxis.p2c(x) > plot.width() / 2);
        }
        crosshair.classList.remove("d-none");
    }

    function showHover(pos) {
        if (!plot || !shown.length) {
            return;
        }
        const xaxis = plot.getAxes().xaxis;
        if (pos.x < xaxis.min || pos.x > xaxis.max) {
            hideHover();
            return;
        }
        const bucket = Math.floor(pos.x / step) * step;
        tooltip.textContent = "";
        tooltip.appendChild(el("div", "fw-semibold", formatTime(bucket, display.utc)));
        for (const s of shown) {
            const line = el("div", "tip-line");
            const swatch = el("span", "swatch");
            swatch.style.backgroundColor = s.color;
            line.append(swatch, el("span", "tip-label", s.key + " \u00b7 " + s.field + " "),
                el("span", "tip-value num", formatValue(valueAt(s.data, pos.x, step), s.unit)));
            tooltip.appendChild(line);
        }
        for (const e of events) {
            if (e.when >= bucket && e.when < bucket + step) {
                tooltip.appendChild(el("div", "tip-event", "\u2691 " + e.what + (e.tags && e.tags.length ? " [" + e.tags.join(", ") + "]" : "")));
            }
        }
        tooltip.classList.remove("d-none");
        let left = pos.pageX + 14;
        if (left + tooltip.offsetWidth > window.scrollX + document.documentElement.clientWidth) {
            left = pos.pageX - 14 - tooltip.offsetWidth;
        }
        tooltip.style.left = Math.max(window.scrollX, left) + "px";
        tooltip.style.top = pos.pageY + 14 + "px";
        placeCrosshair(pos.x, false);
    }

    $placeholder.on("plothover", (event, pos) => {
        showHover(pos);
        if (onHover && plot) {
            const xaxis = plot.getAxes().xaxis;
            onHover(pos.x >= xaxis.min && pos.x <= xaxis.max ? pos.x : null);
        }
    });
    $placeholder.on("mouseleave", () => {
        hideHover();
        if (onHover) {
            onHover(null);
        }
    });
    $placeholder.on("plotselected", (event, ranges) => {
        if (ranges && ranges.xaxis && plot) {
            plot.clearSelection(true);
            onZoom(Math.floor(ranges.xaxis.from), Math.ceil(ranges.xaxis.to));
        }
    });
    placeholder.addEventListener("dblclick", (event) => {
        event.preventDefault();
        onZoomOut();
    });
    legend.addEventListener("change", (event) => {
        const select = event.target.closest("select.legend-unit");
        if (select && onUnit) {
            // Redrawn at once in the new unit (a focused menu is not rebuilt), the focus given back after.
            refocus = select.closest("li").getAttribute("data-key");
            select.blur();
            onUnit(refocus, select.value || null);
        }
    });
    legend.addEventListener("click", (event) => {
        const button = event.target.closest(".legend-remove");
        if (button && onRemove) {
            onRemove(button.closest("li").getAttribute("data-key"));
        }
    });

    // A marker over each event's line, with what it was as its name and title.
    function renderMarkers() {
        markers.textContent = "";
        if (!plot) {
            return;
        }
        const xaxis = plot.getAxes().xaxis;
        const offset = plot.getPlotOffset();
        for (const e of events) {
            if (e.when < xaxis.min || e.when > xaxis.max) {
                continue;
            }
            const marker = el("span", "event-marker");
            const text = e.what + " \u00b7 " + formatTime(e.when, display.utc) + (e.tags && e.tags.length ? " \u00b7 " + e.tags.join(", ") : "") +
                (e.data ? "\n" + e.data : "");
            marker.title = text;
            marker.setAttribute("role", "img");
            marker.setAttribute("aria-label", "Event: " + text);
            marker.setAttribute("data-event-id", String(e.id));
            marker.style.left = offset.left + xaxis.p2c(e.when) + "px";
            marker.style.top = Math.max(0, offset.top - 4) + "px";
            markers.appendChild(marker);
        }
    }

    // Each series' name, then min, max, mean and last of the visible range [from, until].
    function renderLegend(series, from, until) {
        if (legend.contains(document.activeElement) && document.activeElement.tagName === "SELECT") {
            return;  // a unit menu in use: rebuilding it would close it
        }
        legend.textContent = "";
        const keys = new Set();
        for (const s of series) {
            const item = el("li");
            item.setAttribute("data-key", s.key);
            item.setAttribute("data-field", s.field);
            const swatch = el("span", "swatch");
            swatch.style.backgroundColor = s.color;
            item.append(swatch, el("span", "legend-label", s.key + " \u00b7 " + s.field));
            const stats = legendStats(s.data, from, until);
            if (stats) {
                const figures = ["min", "max", "mean", "last"].map((name) => name + " " + formatValue(stats[name], s.unit));
                item.appendChild(el("span", "legend-stats text-body-secondary", figures.join(" \u00b7 ")));
            }
            if (s.yaxis === 2) {
                item.appendChild(el("span", "legend-axis text-body-secondary", "(right axis)"));
            }
            if (onUnit && !keys.has(s.key)) {
                const select = el("select", "form-select form-select-sm legend-unit");
                select.setAttribute("aria-label", "Unit of " + s.key);
                select.title = "Unit of " + s.key;
                select.appendChild(el("option", "", "unit: " + (s.guessed ? unitLabel(s.guessed) : "auto"))).value = "";
                for (const unit of UNITS) {
                    select.appendChild(el("option", "", unitLabel(unit))).value = unit;
                }
                select.value = display.units[s.key] || "";
                item.appendChild(select);
            }
            if (onRemove && !keys.has(s.key)) {
                const remove = el("button", "btn-close legend-remove");
                remove.type = "button";
                remove.setAttribute("aria-label", "Stop plotting " + s.key);
                remove.title = "Stop plotting " + s.key;
                item.appendChild(remove);
            }
            keys.add(s.key);
            legend.appendChild(item);
        }
        if (refocus !== null) {
            const again = Array.from(legend.querySelectorAll("select.legend-unit"))
                .find((select) => select.closest("li").getAttribute("data-key") === refocus);
            refocus = null;
            if (again) {
                again.focus();
            }
        }
    }

    return {
        // series: from series.plotSeries; range: {from, until, step};
        // view: {utc, log, units: key -> the unit the user set} (the page's state holds all three);
        // bands: firing periods of alerts on these series, [{from, until}] (alertsmodel.firingBands).
        draw(series, range, emptyText, newEvents = [], view = {}, newBands = []) {
            step = range.step || step;
            shown = series;
            events = newEvents;
            bands = newBands;
            display = { utc: Boolean(view.utc), log: Boolean(view.log), units: view.units || {} };
            renderLegend(series, range.from, range.until);
            if (!series.length) {
                destroy();
                markers.textContent = "";
                hint.textContent = emptyText;
                hint.classList.remove("d-none");
                return;
            }
            const flotSeries = series.map((s) => ({
                key: s.key, field: s.field, unit: s.unit, data: s.data, color: s.color, yaxis: s.yaxis,
                points: kind === "bars" ? { show: false } : pointMarks(s.data),
                lines: { show: kind !== "bars", lineWidth: 1.5, fill: kind === "area" ? 0.4 : false },
                bars: { show: kind === "bars", barWidth: step * 0.8, align: "left", lineWidth: 0, fill: 0.8 },
                stack: kind === "area" ? s.yaxis : null,
            }));
            const units = [];
            for (const s of series) {
                if (!units.some((u) => u.unit === s.unit)) {
                    units.push({ unit: s.unit, axis: s.yaxis });
                }
            }
            const newLayout = JSON.stringify([units, display.log, display.utc]);
            if (plot && newLayout === layout) {
                // In place, so a live refresh does not break off a drag or a hover under way; setupGrid(true)
                // re-fits every axis to the new data (Flot keeps the old scale without it).
                const xaxis = plot.getAxes().xaxis.options;
                xaxis.min = range.from;
                xaxis.max = range.until;
                plot.getOptions().grid.markings = eventMarkings(events, bands);
                plot.setData(flotSeries);
                plot.setupGrid(true);
                plot.draw();
            } else {
                destroy();
                layout = newLayout;
                plot = $.plot($placeholder, flotSeries, {
                    xaxis: { mode: "time", timeBase: "seconds", timezone: display.utc ? "utc" : "browser",
                             min: range.from, max: range.until },
                    yaxes: axisOptions(units),
                    series: { lines: { show: true, lineWidth: 1.5 }, shadowSize: 0 },
                    grid: { hoverable: true, autoHighlight: false, borderWidth: 1, ...gridColours(),
                            markings: eventMarkings(events, bands) },
                    legend: { show: false },
                    selection: { mode: "x", color: "#0d6efd" },
                });
            }
            fitYAxisLabels(plot);
            renderMarkers();
            const points = series.reduce((n, s) => n + countPoints(s.data).present, 0);
            hint.textContent = "No points in this time range.";
            hint.classList.toggle("d-none", points > 0);
        },
        get flot() {
            return plot;
        },
        // Another plot's pointer at time x (null: it left): the line here too, with the values here.
        crosshairAt(x) {
            placeCrosshair(x, true);
        },
        get bands() {
            return bands;
        },
        // The theme changed: the next draw builds the plot anew in its colours.
        retheme() {
            layout = "";
        },
        resize() {
            if (plot) {
                plot.resize();
                plot.setupGrid(true);
                plot.draw();
                fitYAxisLabels(plot);
                renderMarkers();
            }
        },
    };
}
