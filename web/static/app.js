/* SimpleStats dashboard.
 *
 * Talks to the JSON API described in docs/API.md with jQuery and draws with Flot; no build step.
 * Every name, tag and value from the server goes into the page with .text(), .val() or .attr(),
 * never inside an HTML string, and rows are found by reading their data-key attribute, never by
 * building a selector out of a key.
 */
(function ($) {
    "use strict";

    var REFRESH_MS = 5000;
    var FILTER_DEBOUNCE_MS = 150;
    var LIST_LIMIT = 1000;
    var SERVER_FILTER = "/^simplestats\\./";
    var SERVER_PREFIX = "simplestats.";

    var TIMER_FIELDS = ["count", "sum", "min", "max", "mean", "std", "median", "p90", "p95", "p99", "last"];
    var TIMER_DEFAULTS = ["mean", "p90", "p99"];
    // The fields /api/series offers per type, and the ones plotted until the user picks others.
    var FIELDS = {
        counter: ["count", "rate"],
        gauge: ["last", "min", "max", "mean", "updates"],
        timer: TIMER_FIELDS,
        histogram: TIMER_FIELDS,
        distribution: TIMER_FIELDS,
        sample: TIMER_FIELDS,
        set: ["count"]
    };
    var DEFAULT_FIELDS = {
        counter: ["rate"],
        gauge: ["last"],
        timer: TIMER_DEFAULTS,
        histogram: TIMER_DEFAULTS,
        distribution: TIMER_DEFAULTS,
        sample: TIMER_DEFAULTS,
        set: ["count"]
    };
    var RANGES = { "5m": 300, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
    var DEFAULT_RANGE = "1h";
    var RESOLUTIONS = ["auto", "5s", "1m", "1h"];
    var COLORS = ["#0d6efd", "#d63384", "#198754", "#fd7e14", "#6f42c1",
                  "#20c997", "#dc3545", "#0dcaf0", "#6c757d", "#b8860b"];

    var state = {
        filter: "",
        selected: [],        // series keys, in the order they were picked
        range: DEFAULT_RANGE, // a key of RANGES, or "custom"
        customFrom: null,    // epoch seconds, when range is "custom"
        customUntil: null,
        resolution: "auto",
        fields: $.extend(true, {}, DEFAULT_FIELDS), // type -> fields to plot
        dayweek: null        // {key, field} while the day-against-week panel is open
    };
    var known = {};          // key -> {key, name, tags, type} for every series seen
    var clockSkew = 0;       // server clock minus browser clock, seconds (from /api/health)
    var serverSeriesCount = 0;

    // What the browser tests look at.
    var exposed = window.simplestats = {
        plot: null,
        dayweekPlot: null,
        lastSeriesData: [],
        lastDayweekData: null,
        state: state,
        refresh: refreshAll
    };

    // ---------------------------------------------------------------- helpers

    function nowSeconds() {
        return Date.now() / 1000 + clockSkew;
    }

    function api(path, params) {
        var data = {};
        $.each(params || {}, function (name, value) {
            if (value !== undefined && value !== null && value !== "") {
                data[name] = value;
            }
        });
        return new Promise(function (resolve, reject) {
            $.ajax({ url: path, data: data, dataType: "json", timeout: 30000, headers: tokenHeaders() })
                .done(function (body) { resolve(body); })
                .fail(function (xhr, textStatus) {
                    askForTokenOn(xhr.status);
                    reject(apiError(xhr, textStatus));
                });
        });
    }

    // ---------------------------------------------------------------- API token
    // A server bound beyond loopback (or run with --read-token on) answers 401/403 without its
    // token: the page then asks for it once, keeps it in localStorage and sends it with every
    // request (these GETs, the import's POST, the export downloads).

    var TOKEN_KEY = "simplestats.apiToken";
    var tokenPromptOpen = false;

    function storedToken() {
        try {
            return window.localStorage.getItem(TOKEN_KEY) || "";
        } catch (ignored) {
            return "";
        }
    }

    function tokenHeaders() {
        var token = storedToken();
        return token ? { "X-SimpleStats-Token": token } : {};
    }

    function askForTokenOn(status) {
        if ((status === 401 || status === 403) && !tokenPromptOpen) {
            showTokenPrompt(status === 403 && storedToken() !== "");
        }
    }

    function showTokenPrompt(refused) {
        var $modal = $("#token-modal");
        if (!$modal.length) {
            $modal = $("<div class='modal fade' id='token-modal' tabindex='-1' aria-labelledby='token-title'>").append(
                $("<div class='modal-dialog modal-dialog-centered'>").append(
                    $("<form class='modal-content' id='token-form'>").append(
                        $("<div class='modal-header'>").append(
                            $("<h2 class='modal-title h5' id='token-title'>").text("API token")),
                        $("<div class='modal-body'>").append(
                            $("<p id='token-reason'>"),
                            $("<label for='token-input' class='form-label'>").text("Token"),
                            $("<input id='token-input' type='password' class='form-control' required autocomplete='off'>"),
                            $("<div class='form-text'>").text("Kept in this browser and sent with every request. " +
                                "The server logs at start-up the file that holds it (DATA_DIR/api-token when generated).")),
                        $("<div class='modal-footer'>").append(
                            $("<button type='submit' id='token-save' class='btn btn-primary'>").text("Use token")))));
            $modal.appendTo(document.body);
            $modal.on("shown.bs.modal", function () { $("#token-input").trigger("focus"); });
            $modal.on("hidden.bs.modal", function () { tokenPromptOpen = false; });
            $modal.find("form").on("submit", function (event) {
                event.preventDefault();
                try {
                    window.localStorage.setItem(TOKEN_KEY, $.trim($("#token-input").val()));
                } catch (ignored) { /* private mode: the token lasts until the page closes */ }
                $("#token-input").val("");
                window.bootstrap.Modal.getOrCreateInstance($modal[0]).hide();
                refreshAll();
            });
        }
        tokenPromptOpen = true;
        $("#token-reason").text(refused ? "The server refused the token this browser sent; enter the right one."
            : "This server needs its API token.");
        window.bootstrap.Modal.getOrCreateInstance($modal[0]).show();
    }

    // A link cannot send a header: with a token, an export is fetched with it and saved from memory.
    $(document).on("click", "a[id^='export-']", function (event) {
        if (!storedToken()) {
            return;
        }
        event.preventDefault();
        var link = this;
        fetch(link.href, { headers: tokenHeaders() }).then(function (response) {
            if (!response.ok) {
                askForTokenOn(response.status);
                throw new Error("The export failed: the server answered HTTP " + response.status + ".");
            }
            return response.blob();
        }).then(function (blob) {
            var url = URL.createObjectURL(blob);
            var save = document.createElement("a");
            save.href = url;
            save.download = link.getAttribute("download") || "simplestats-export";
            document.body.appendChild(save);
            save.click();
            save.remove();
            window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
        }).catch(function (error) {
            showAlert($("#api-error"), error.message);
        });
    });

    // Turns a failed request into an Error whose message says what went wrong, in words.
    function apiError(xhr, textStatus) {
        var body = xhr.responseJSON;
        if (body === undefined && xhr.responseText) {
            try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = undefined; }
        }
        var message;
        if (xhr.status === 0) {
            message = textStatus === "timeout" ? "The server did not answer in time."
                : "Could not reach the server (network error).";
        } else if (body && typeof body.error === "string") {
            message = body.error;
            if (body.parameter) {
                message += " (parameter \u201c" + body.parameter + "\u201d)";
            }
        } else if (xhr.status >= 200 && xhr.status < 300) {
            message = "The server sent an answer that is not JSON.";
        } else {
            message = "The server answered HTTP " + xhr.status + (xhr.statusText ? " " + xhr.statusText : "") + ".";
        }
        var error = new Error(message);
        error.status = xhr.status;
        error.body = body;
        return error;
    }

    function showAlert($alert, message) {
        $alert.text(message).removeClass("d-none");
    }

    function hideAlert($alert) {
        $alert.addClass("d-none").empty();
    }

    function formatNumber(value) {
        if (value === null || value === undefined) {
            return "\u2014";
        }
        if (typeof value !== "number" || !isFinite(value)) {
            return String(value);
        }
        var size = Math.abs(value);
        if (size !== 0 && (size < 0.001 || size >= 1e15)) {
            return value.toExponential(3);
        }
        return value.toLocaleString(undefined, { maximumFractionDigits: size < 1 ? 4 : size < 100 ? 3 : 2 });
    }

    function formatAgo(seconds) {
        seconds = Math.max(0, Math.round(seconds));
        if (seconds < 60) {
            return seconds + " s ago";
        }
        if (seconds < 3600) {
            return Math.floor(seconds / 60) + " min ago";
        }
        if (seconds < 86400) {
            return Math.floor(seconds / 3600) + " h ago";
        }
        return Math.floor(seconds / 86400) + " d ago";
    }

    function formatDuration(seconds) {
        seconds = Math.floor(seconds);
        if (seconds < 60) {
            return seconds + " s";
        }
        if (seconds < 3600) {
            return Math.floor(seconds / 60) + " min";
        }
        if (seconds < 86400) {
            return Math.floor(seconds / 3600) + " h " + Math.floor(seconds % 3600 / 60) + " min";
        }
        return Math.floor(seconds / 86400) + " d " + Math.floor(seconds % 86400 / 3600) + " h";
    }

    function formatTime(epochSeconds) {
        return new Date(epochSeconds * 1000).toLocaleString();
    }

    function formatStep(seconds) {
        if (seconds % 3600 === 0) {
            return seconds / 3600 + " h";
        }
        if (seconds % 60 === 0) {
            return seconds / 60 + " min";
        }
        return seconds + " s";
    }

    // "YYYY-MM-DDTHH:MM:SS" in the browser's time zone, as a datetime-local input wants it.
    function toLocalInput(epochSeconds) {
        var d = new Date(epochSeconds * 1000);
        function two(n) { return (n < 10 ? "0" : "") + n; }
        return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + "T" +
            two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
    }

    function fromLocalInput(text) {
        var ms = new Date(text).getTime(); // a datetime-local value parses as local time
        return isNaN(ms) ? null : Math.round(ms / 1000);
    }

    function isSelected(key) {
        return state.selected.indexOf(key) !== -1;
    }

    function showsServerSeries(filter) {
        return /^\/?\^?simplestats/i.test($.trim(filter));
    }

    function isServerSeries(metric) {
        return metric.name.indexOf(SERVER_PREFIX) === 0;
    }

    function remember(metric) {
        known[metric.key] = { key: metric.key, name: metric.name, tags: metric.tags || {}, type: metric.type };
    }

    function fieldsFor(key) {
        var info = known[key];
        return info && state.fields[info.type] ? state.fields[info.type] : null;
    }

    // ---------------------------------------------------------------- URL state

    function readUrl() {
        var query = new URLSearchParams(window.location.search);
        state.filter = query.get("filter") || "";
        var keys = [];
        query.getAll("series").forEach(function (value) {
            value.split(",").forEach(function (key) {
                if (key && keys.indexOf(key) === -1) {
                    keys.push(key);
                }
            });
        });
        state.selected = keys;
        var from = parseFloat(query.get("from"));
        var until = parseFloat(query.get("until"));
        if (isFinite(from) && isFinite(until) && from < until) {
            state.range = "custom";
            state.customFrom = from;
            state.customUntil = until;
        } else if (RANGES.hasOwnProperty(query.get("range"))) {
            state.range = query.get("range");
        }
        if (RESOLUTIONS.indexOf(query.get("resolution")) !== -1) {
            state.resolution = query.get("resolution");
        }
    }

    function writeUrl() {
        var query = new URLSearchParams();
        if (state.filter) {
            query.set("filter", state.filter);
        }
        if (state.selected.length) {
            query.set("series", state.selected.join(","));
        }
        if (state.range === "custom") {
            query.set("from", String(state.customFrom));
            query.set("until", String(state.customUntil));
        } else if (state.range !== DEFAULT_RANGE) {
            query.set("range", state.range);
        }
        if (state.resolution !== "auto") {
            query.set("resolution", state.resolution);
        }
        var search = query.toString();
        window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : "") +
            window.location.hash);
    }

    // ---------------------------------------------------------------- health

    function refreshHealth() {
        return api("/api/health").then(function (health) {
            if (typeof health.now === "number") {
                clockSkew = health.now - Date.now() / 1000;
            }
            var parts = ["up " + formatDuration(health.uptime || 0), health.series + " series"];
            var snapshot = health.snapshot;
            var $health = $("#health").removeClass("text-warning");
            if (snapshot && snapshot.error) {
                parts.push("snapshot failed: " + snapshot.error);
                $health.addClass("text-warning");
            } else if (snapshot && snapshot.last) {
                parts.push("snapshot " + formatAgo(nowSeconds() - snapshot.last));
            }
            $health.text(parts.join(" \u00b7 "));
        }, function (error) {
            $("#health").addClass("text-warning").text("Server health unknown: " + error.message);
        });
    }

    // ---------------------------------------------------------------- metric list

    var listGeneration = 0;
    var listBusy = false;

    function refreshList() {
        var generation = ++listGeneration;
        var filter = state.filter;
        listBusy = true;
        return api("/api/metrics", { filter: filter, limit: LIST_LIMIT }).then(function (body) {
            if (generation !== listGeneration) {
                return;
            }
            hideAlert($("#api-error"));
            renderList(body, filter);
        }, function (error) {
            if (generation !== listGeneration) {
                return;
            }
            // A rejected filter is answered with a message about the filter: show it as it is.
            var prefix = error.status === 400 && filter ? "" : "Could not load the series list: ";
            showAlert($("#api-error"), prefix + error.message);
        }).then(function () {
            if (generation === listGeneration) {
                listBusy = false;
            }
        });
    }

    function renderList(body, filter) {
        var metrics = body.metrics || [];
        metrics.forEach(remember);
        var withServer = showsServerSeries(filter);
        var rows = withServer ? metrics : metrics.filter(function (m) { return !isServerSeries(m); });
        var total = withServer ? body.total : Math.max(0, body.total - serverSeriesCount);

        var $scroll = $("#metric-scroll");
        var scrollTop = $scroll.scrollTop();
        var $tbody = $("#metric-table tbody").empty();
        rows.forEach(function (metric) {
            $tbody.append(metricRow(metric));
        });
        if (!rows.length && filter) {
            $("<tr>").addClass("no-match").append(
                $("<td colspan='6' class='text-body-secondary text-center py-3'>").text("No series match this filter.")
            ).appendTo($tbody);
        }
        $scroll.scrollTop(scrollTop);

        var empty = !rows.length && !filter;
        $("#empty-state").toggleClass("d-none", !empty);
        $scroll.toggleClass("d-none", empty);

        var count = rows.length + " of " + total + " series";
        if (body.count >= LIST_LIMIT) {
            count += " (only the first " + LIST_LIMIT + "; narrow the filter)";
        }
        $("#metric-count").text(count);
        markSelection();
    }

    function metricRow(metric) {
        var $row = $("<tr class='metric-row'>").attr("data-key", metric.key);
        $("<td class='col-check'>").append(
            $("<input type='checkbox' class='form-check-input'>").attr("aria-label", "Plot " + metric.key)
        ).appendTo($row);

        var $name = $("<td class='metric-name-cell'>").append($("<span class='metric-name'>").text(metric.name));
        $.each(metric.tags || {}, function (tag, value) {
            $name.append(" ", $("<span class='badge tag-badge'>")
                .attr("data-term", tag + ":" + value)
                .attr("title", "Add " + tag + ":" + value + " to the filter")
                .text(tag + ":" + value));
        });
        $row.append($name);
        $("<td class='text-body-secondary small'>").text(metric.type).appendTo($row);
        $("<td class='text-end num'>").text(formatNumber(metric.value)).attr("title", String(metric.value))
            .appendTo($row);
        $("<td class='text-end num'>").text(formatNumber(metric.avg_1m) + (metric.type === "counter" ? "/s" : ""))
            .attr("title", String(metric.avg_1m)).appendTo($row);
        $("<td class='text-end text-nowrap small'>").text(formatAgo(nowSeconds() - metric.last_seen))
            .attr("title", formatTime(metric.last_seen)).appendTo($row);
        return $row;
    }

    // ---------------------------------------------------------------- server's own series

    var serverGeneration = 0;

    function refreshServerSeries() {
        var generation = ++serverGeneration;
        return api("/api/metrics", { filter: SERVER_FILTER }).then(function (body) {
            if (generation !== serverGeneration) {
                return;
            }
            hideAlert($("#server-error"));
            var metrics = (body.metrics || []).filter(isServerSeries);
            serverSeriesCount = metrics.length;
            metrics.forEach(remember);
            var $tbody = $("#server-metrics tbody").empty();
            metrics.forEach(function (metric) {
                var $row = $("<tr class='metric-row'>").attr("data-key", metric.key);
                $("<td>").text(metric.key.slice(SERVER_PREFIX.length)).attr("title", metric.key).appendTo($row);
                $("<td class='text-end num'>").text(formatNumber(metric.value)).appendTo($row);
                $("<td class='text-end num text-body-secondary'>")
                    .text("avg " + formatNumber(metric.avg_1m) + (metric.type === "counter" ? "/s" : ""))
                    .appendTo($row);
                $tbody.append($row);
            });
            $("#server-metrics .server-none").toggleClass("d-none", metrics.length > 0);
            markSelection();
        }, function (error) {
            if (generation === serverGeneration) {
                showAlert($("#server-error"), "Could not load the server's series: " + error.message);
            }
        });
    }

    // ---------------------------------------------------------------- selection

    function markSelection() {
        $("tr[data-key]").each(function () {
            var selected = isSelected($(this).attr("data-key"));
            $(this).toggleClass("table-active", selected).find("input[type=checkbox]").prop("checked", selected);
        });
        $("#clear-selection").toggleClass("d-none", state.selected.length === 0);
    }

    function toggleSeries(key) {
        var index = state.selected.indexOf(key);
        if (index === -1) {
            state.selected.push(key);
        } else {
            state.selected.splice(index, 1);
        }
        selectionChanged();
    }

    function selectionChanged() {
        if (state.dayweek && !isSelected(state.dayweek.key)) {
            closeDayweek();
        }
        markSelection();
        writeUrl();
        renderDayweekControls();
        refreshPlot();
    }

    // ---------------------------------------------------------------- plot

    var plotGeneration = 0;
    var plotBusy = false;

    function rangeParams() {
        if (state.range === "custom") {
            return { from: state.customFrom, until: state.customUntil };
        }
        return { from: "-" + state.range, until: "now" };
    }

    function isLive() {
        return state.range !== "custom";
    }

    function refreshPlot() {
        renderFieldPicker();
        var keys = state.selected.slice();
        var generation = ++plotGeneration;
        if (!keys.length) {
            plotBusy = false;
            hideAlert($("#plot-error"));
            drawPlot([], null);
            return Promise.resolve();
        }
        plotBusy = true;
        var range = rangeParams();
        var requests = keys.map(function (key) {
            var fields = fieldsFor(key);
            return api("/api/series", {
                key: key,
                from: range.from,
                until: range.until,
                resolution: state.resolution,
                fields: fields ? fields.join(",") : null
            }).then(function (body) {
                return { key: key, body: body };
            }, function (error) {
                return { key: key, error: error };
            });
        });
        return Promise.all(requests).then(function (results) {
            if (generation !== plotGeneration) {
                return;
            }
            plotBusy = false;
            var loaded = [];
            var $errors = $("#plot-error").empty();
            results.forEach(function (result) {
                if (result.error) {
                    $("<div>").text("Could not load " + result.key + ": " + result.error.message).appendTo($errors);
                } else {
                    remember(result.body);
                    loaded.push(result.body);
                }
            });
            $errors.toggleClass("d-none", $errors.children().length === 0);
            exposed.lastSeriesData = loaded;
            drawPlot(loaded, results.length && !loaded.length ? "Nothing could be loaded; see the error above." : null);
            renderFieldPicker();
            renderDayweekControls();
        });
    }

    function plotSeries(responses) {
        var series = [];
        responses.forEach(function (body) {
            var wanted = state.fields[body.type];
            var names = Object.keys(body.fields || {});
            var shown = names.filter(function (field) { return !wanted || wanted.indexOf(field) !== -1; });
            (shown.length ? shown : names).forEach(function (field) {
                series.push({
                    label: body.key + " \u00b7 " + field,
                    key: body.key,
                    field: field,
                    data: body.fields[field],
                    color: COLORS[series.length % COLORS.length]
                });
            });
        });
        return series;
    }

    function destroyPlot() {
        hideTooltip();
        if (exposed.plot) {
            exposed.plot.shutdown();
            exposed.plot = null;
        }
        $("#plot").empty();
    }

    function countPoints(data) {
        var present = 0;
        var lone = 0;
        data.forEach(function (point, i) {
            if (point[1] !== null) {
                present += 1;
                var before = i > 0 && data[i - 1][1] !== null;
                var after = i < data.length - 1 && data[i + 1][1] !== null;
                if (!before && !after) {
                    lone += 1;
                }
            }
        });
        return { present: present, lone: lone };
    }

    // A lone point between gaps draws no line, so mark the points where there are any.
    function pointMarks(data) {
        var counts = countPoints(data);
        return { show: counts.present <= 120 || counts.lone > 0, radius: 2 };
    }

    function drawPlot(responses, failure) {
        var $legend = $("#plot-legend").empty();
        var $hint = $("#plot-hint");
        if (!responses.length) {
            destroyPlot();
            $hint.text(failure || "Click series in the list to plot them.").removeClass("d-none");
            $("#plot-status").text("");
            return;
        }
        var series = plotSeries(responses);
        var points = 0;
        series.forEach(function (s) {
            points += countPoints(s.data).present;
            s.points = pointMarks(s.data);
        });
        var first = responses[0];
        var plot = exposed.plot;
        if (plot) {
            // Update in place rather than rebuild, so a live refresh does not break off a drag
            // selection or a hover under way.
            var xaxis = plot.getAxes().xaxis.options;
            xaxis.min = first.from;
            xaxis.max = first.until;
            plot.getAxes().yaxis.options.labelWidth = null;
            plot.setData(series);
            plot.setupGrid();
            plot.draw();
        } else {
            plot = exposed.plot = $.plot($("#plot"), series, {
                xaxis: { mode: "time", timeBase: "seconds", timezone: "browser", min: first.from, max: first.until },
                yaxis: { autoScale: "loose" },
                series: { lines: { show: true, lineWidth: 1.5 }, shadowSize: 0 },
                grid: { hoverable: true, borderWidth: 1, borderColor: "#dee2e6", color: "#6c757d",
                        tickColor: "#f1f3f5" },
                legend: { show: false },
                selection: { mode: "x", color: "#0d6efd" }
            });
        }
        fitYAxisLabels(plot);
        $hint.text("No points in this time range.").toggleClass("d-none", points > 0);

        series.forEach(function (s) {
            var $item = $("<li>").attr("data-key", s.key).attr("data-field", s.field);
            $("<span class='swatch'>").css("background-color", s.color).appendTo($item);
            $("<span>").text(s.label).appendTo($item);
            $("<button type='button' class='btn-close legend-remove' aria-label='Stop plotting'>")
                .attr("title", "Stop plotting " + s.key).appendTo($item);
            $legend.append($item);
        });

        var status = "resolution " + formatStep(first.resolution) + " \u00b7 " +
            (isLive() ? "live, every " + REFRESH_MS / 1000 + " s" : "fixed range");
        $("#plot-status").text(status);
    }

    // Flot leaves the end tick labels out when it sizes the y axis, so a wider end label
    // ("100" over "80") gets cut off at the left edge: measure what was drawn and make room.
    function fitYAxisLabels(plot) {
        var axis = plot.getAxes().yaxis;
        var widest = 0;
        plot.getPlaceholder().find(".flot-y-axis text").each(function () {
            widest = Math.max(widest, this.getBBox().width);
        });
        if (widest > axis.labelWidth) {
            axis.options.labelWidth = Math.ceil(widest);
            plot.setupGrid();
            plot.draw();
        }
    }

    function showTooltip(pageX, pageY, lines) {
        var $tip = $("#plot-tooltip").empty().removeClass("d-none");
        lines.forEach(function (line, index) {
            $("<div>").toggleClass("fw-semibold", index === 0).text(line).appendTo($tip);
        });
        var left = pageX + 12;
        if (left + $tip.outerWidth() > $(window).scrollLeft() + $(window).width()) {
            left = pageX - 12 - $tip.outerWidth();
        }
        $tip.css({ left: left, top: pageY + 12 });
    }

    function hideTooltip() {
        $("#plot-tooltip").addClass("d-none");
    }

    function bindHover($placeholder) {
        $placeholder.on("plothover", function (event, pos, item) {
            if (!item) {
                hideTooltip();
                return;
            }
            var x = item.datapoint[0];
            var y = item.datapoint[1];
            showTooltip(pos.pageX, pos.pageY, [String(y), item.series.label, formatTime(x)]);
        });
        $placeholder.on("mouseleave", hideTooltip);
    }

    // ---------------------------------------------------------------- range, resolution, fields

    function renderRangeControls() {
        $("#range-presets button").each(function () {
            var active = $(this).attr("data-range") === state.range;
            $(this).toggleClass("active", active).attr("aria-pressed", active ? "true" : "false");
        });
        $("#custom-range").toggleClass("d-none", state.range !== "custom");
        if (state.range === "custom") {
            $("#range-from").val(toLocalInput(state.customFrom));
            $("#range-until").val(toLocalInput(state.customUntil));
        }
        $("#resolution").val(state.resolution);
    }

    function chooseRange(range) {
        if (range === "custom") {
            if (state.range !== "custom") {
                // Start from the range on screen, so the inputs hold something sensible.
                var until = Math.round(nowSeconds());
                state.customFrom = until - RANGES[state.range];
                state.customUntil = until;
            }
        }
        state.range = range;
        rangeChanged();
    }

    function setCustomRange(from, until) {
        state.range = "custom";
        state.customFrom = from;
        state.customUntil = until;
        rangeChanged();
    }

    function rangeChanged() {
        renderRangeControls();
        renderExportLinks();
        writeUrl();
        refreshPlot();
    }

    function renderFieldPicker() {
        var $picker = $("#field-picker").empty();
        var types = [];
        state.selected.forEach(function (key) {
            var info = known[key];
            if (info && FIELDS[info.type] && types.indexOf(info.type) === -1) {
                types.push(info.type);
            }
        });
        types.forEach(function (type) {
            var $group = $("<div class='field-group'>").attr("data-type", type);
            $("<span class='field-type small text-body-secondary'>").text(type).appendTo($group);
            FIELDS[type].forEach(function (field) {
                var id = "field-" + type + "-" + field;
                $("<input type='checkbox' class='btn-check' autocomplete='off'>")
                    .attr({ id: id, "data-type": type, "data-field": field })
                    .prop("checked", state.fields[type].indexOf(field) !== -1)
                    .appendTo($group);
                $("<label class='btn btn-outline-secondary btn-xs'>").attr("for", id).text(field).appendTo($group);
            });
            $picker.append($group);
        });
    }

    function toggleField(type, field) {
        var fields = state.fields[type];
        var index = fields.indexOf(field);
        if (index === -1) {
            // Keep the order of the API's list, so colours stay put when fields come and go.
            state.fields[type] = FIELDS[type].filter(function (f) { return f === field || fields.indexOf(f) !== -1; });
        } else if (fields.length > 1) {
            fields.splice(index, 1);
        }
        renderDayweekControls();
        refreshPlot();
    }

    // ---------------------------------------------------------------- day against week

    function renderDayweekControls() {
        var $series = $("#dayweek-series");
        var chosen = $series.val();
        $series.empty();
        state.selected.forEach(function (key) {
            $("<option>").val(key).text(key).appendTo($series);
        });
        if (chosen && isSelected(chosen)) {
            $series.val(chosen);
        }
        renderDayweekFields();
        var none = state.selected.length === 0;
        $series.prop("disabled", none);
        $("#dayweek-btn").prop("disabled", none);
    }

    function renderDayweekFields() {
        var $field = $("#dayweek-field");
        var chosen = $field.val();
        $field.empty();
        var info = known[$("#dayweek-series").val()];
        var fields = info && FIELDS[info.type] ? FIELDS[info.type] : [];
        fields.forEach(function (field) {
            $("<option>").val(field).text(field).appendTo($field);
        });
        if (fields.length) {
            $field.val(fields.indexOf(chosen) !== -1 ? chosen : state.fields[info.type][0]);
        }
        $field.prop("disabled", fields.length === 0);
    }

    function openDayweek() {
        var key = $("#dayweek-series").val();
        if (!key) {
            return;
        }
        state.dayweek = { key: key, field: $("#dayweek-field").val() || null };
        $("#dayweek-title").text(key + (state.dayweek.field ? " \u00b7 " + state.dayweek.field : ""));
        $("#dayweek-panel").removeClass("d-none");
        refreshDayweek();
        $("#dayweek-panel")[0].scrollIntoView({ block: "nearest" });
    }

    function closeDayweek() {
        state.dayweek = null;
        dayweekGeneration += 1;
        if (exposed.dayweekPlot) {
            exposed.dayweekPlot.shutdown();
            exposed.dayweekPlot = null;
        }
        $("#dayweek-plot").empty();
        $("#dayweek-panel").addClass("d-none");
    }

    var dayweekGeneration = 0;

    function tagsParam(tags) {
        return $.map(tags || {}, function (value, tag) { return tag + ":" + value; }).join(",");
    }

    function refreshDayweek() {
        var view = state.dayweek;
        if (!view) {
            return Promise.resolve();
        }
        var generation = ++dayweekGeneration;
        var info = known[view.key] || { name: view.key, tags: {} };
        return api("/api/dayweek", {
            name: info.name,
            tags: tagsParam(info.tags),
            field: view.field,
            // minutes east of UTC, so the server's "today" starts at the browser's midnight
            tz_offset: -new Date().getTimezoneOffset()
        }).then(function (body) {
            if (generation !== dayweekGeneration) {
                return;
            }
            hideAlert($("#dayweek-error"));
            exposed.lastDayweekData = body;
            drawDayweek(body);
        }, function (error) {
            if (generation !== dayweekGeneration) {
                return;
            }
            showAlert($("#dayweek-error"), "Could not load day against week: " + error.message);
            if (exposed.dayweekPlot) {
                exposed.dayweekPlot.shutdown();
                exposed.dayweekPlot = null;
            }
            $("#dayweek-plot").empty();
        });
    }

    function drawDayweek(body) {
        var $placeholder = $("#dayweek-plot");
        if (exposed.dayweekPlot) {
            exposed.dayweekPlot.shutdown();
        }
        $placeholder.empty();
        var start = body.midnight;
        if (typeof start !== "number") {
            var midnight = new Date();
            midnight.setHours(0, 0, 0, 0);
            start = midnight.getTime() / 1000;
        }
        var field = body.field || (state.dayweek && state.dayweek.field) || "";
        exposed.dayweekPlot = $.plot($placeholder, [
            { id: "week-min", label: "min of the previous 7 days \u00b7 " + field, data: body.week_min || [],
              color: "#adb5bd", lines: { show: true, lineWidth: 0, fill: false } },
            { id: "week-max", label: "max of the previous 7 days \u00b7 " + field, data: body.week_max || [],
              color: "#adb5bd", fillBetween: "week-min", lines: { show: true, lineWidth: 0, fill: 0.35 } },
            { id: "week-avg", label: "average of the previous 7 days \u00b7 " + field, data: body.week_avg || [],
              color: "#6c757d", lines: { show: true, lineWidth: 1.5, dashes: [6, 4] },
              points: pointMarks(body.week_avg || []) },
            { id: "today", label: "today \u00b7 " + field, data: body.today || [],
              color: "#0d6efd", lines: { show: true, lineWidth: 3 }, points: pointMarks(body.today || []) }
        ], {
            xaxis: { mode: "time", timeBase: "seconds", timezone: "browser", min: start, max: start + 86400 },
            yaxis: { autoScale: "loose" },
            series: { shadowSize: 0 },
            grid: { hoverable: true, borderWidth: 1, borderColor: "#dee2e6", color: "#6c757d", tickColor: "#f1f3f5" },
            legend: { show: false }
        });
        fitYAxisLabels(exposed.dayweekPlot);
    }

    // ---------------------------------------------------------------- export

    function renderExportLinks() {
        var range = rangeParams();
        ["ndjson", "json", "csv"].forEach(function (format) {
            var query = new URLSearchParams();
            if (state.filter) {
                query.set("filter", state.filter);
            }
            query.set("from", String(range.from));
            query.set("until", String(range.until));
            query.set("format", format);
            $("#export-" + format).attr("href", "/api/export?" + query.toString());
        });
    }

    // ---------------------------------------------------------------- import

    var importing = false;

    function importFile(file) {
        if (importing || !file) {
            return;
        }
        importing = true;
        var $result = $("#import-result").addClass("d-none").empty();
        var $progress = $("#import-progress").removeClass("d-none");
        var $bar = $progress.find(".progress-bar").css("width", "0%").text("");
        $("#import-file").prop("disabled", true);

        var poll = null;

        function finish() {
            importing = false;
            if (poll !== null) {
                clearInterval(poll);
                poll = null;
            }
            $progress.addClass("d-none").attr("aria-label", "Upload progress");
            $("#import-file").prop("disabled", false).val("");
        }

        function showBar(percent, label) {
            $bar.css("width", percent + "%").text(label);
            $progress.attr("aria-valuenow", percent);
        }

        // Once the file is uploaded the server checks every row, then applies
        // them; /api/health "imports" says how far it has got.
        function showProcessing() {
            $progress.attr("aria-label", "Import progress");
            showBar(0, "Checking…");
            poll = setInterval(function () {
                api("/api/health").then(function (health) {
                    var job = (health.imports || [])[0];
                    if (!job || poll === null) {
                        return;
                    }
                    var percent;
                    if (job.phase === "checking") {
                        percent = job.total_bytes ? Math.round(100 * job.bytes / job.total_bytes) : 0;
                        showBar(percent, "Checking " + percent + "%");
                    } else {
                        percent = job.total_rows ? Math.round(100 * job.rows / job.total_rows) : 0;
                        showBar(percent, "Importing " + formatNumber(job.rows) + " of " +
                                formatNumber(job.total_rows) + " rows");
                    }
                }, function () { /* the next poll tries again */ });
            }, 500);
        }

        var xhr = new XMLHttpRequest();
        xhr.open("POST", "/api/import?format=auto");
        $.each(tokenHeaders(), function (name, value) { xhr.setRequestHeader(name, value); });
        xhr.upload.onprogress = function (event) {
            if (event.lengthComputable) {
                var percent = Math.round(100 * event.loaded / event.total);
                showBar(percent, "Uploading " + percent + "%");
            }
        };
        xhr.upload.onload = showProcessing;
        xhr.onload = function () {
            finish();
            askForTokenOn(xhr.status);
            var body = null;
            try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = null; }
            if (xhr.status === 200 && body) {
                showImportSuccess(file, body);
                refreshList();
                refreshServerSeries();
                refreshPlot();
            } else {
                showImportFailure(file, xhr.status, body);
            }
        };
        xhr.onerror = function () {
            finish();
            showImportFailure(file, 0, null);
        };
        xhr.send(file);
    }

    function showImportSuccess(file, body) {
        $("#import-result").attr("class", "alert alert-success py-2 mt-2 mb-0")
            .text("Imported " + formatNumber(body.imported) + (body.imported === 1 ? " point" : " points") +
                  " into " + formatNumber(body.series) + " series from " + file.name + ".");
    }

    function showImportFailure(file, status, body) {
        var $result = $("#import-result").attr("class", "alert alert-danger api-error py-2 mt-2 mb-0").empty();
        var message;
        if (status === 0) {
            message = "Could not reach the server (network error).";
        } else if (body && body.error) {
            message = body.error;
        } else if (status === 413) {
            message = "The file is larger than the server accepts.";
        } else {
            message = "The server answered HTTP " + status + ".";
        }
        $("<div class='fw-semibold'>").text("Nothing was imported from " + file.name + ": " + message)
            .appendTo($result);
        var rows = (body && body.bad_rows) || [];
        if (rows.length) {
            var $table = $("<table class='table table-sm bad-rows mb-0 mt-1'>");
            $("<thead><tr><th scope='col'>Row</th><th scope='col'>Problem</th></tr></thead>").appendTo($table);
            var $tbody = $("<tbody>").appendTo($table);
            rows.forEach(function (row) {
                $("<tr>").append($("<td class='num'>").text(row.row), $("<td>").text(row.error)).appendTo($tbody);
            });
            $("<div class='bad-rows-scroll'>").append($table).appendTo($result);
            var total = body.bad_row_count || rows.length;
            $("<div class='small mt-1'>").text(total > rows.length
                ? total + " bad rows in all; the first " + rows.length + " are listed."
                : total + (total === 1 ? " bad row." : " bad rows.")).appendTo($result);
        }
    }

    function hasFiles(event) {
        var transfer = event.originalEvent && event.originalEvent.dataTransfer;
        return transfer && Array.prototype.indexOf.call(transfer.types || [], "Files") !== -1;
    }

    function bindDropZone() {
        var depth = 0;
        $(document).on("dragenter", function (event) {
            if (hasFiles(event)) {
                depth += 1;
                $("#drop-overlay").removeClass("d-none");
                $("#import-drop").addClass("drop-active");
            }
        }).on("dragleave", function (event) {
            if (hasFiles(event)) {
                depth = Math.max(0, depth - 1);
                if (!depth) {
                    $("#drop-overlay").addClass("d-none");
                    $("#import-drop").removeClass("drop-active");
                }
            }
        }).on("dragover", function (event) {
            if (hasFiles(event)) {
                event.preventDefault();
                event.originalEvent.dataTransfer.dropEffect = "copy";
            }
        }).on("drop", function (event) {
            if (!hasFiles(event)) {
                return;
            }
            event.preventDefault();
            depth = 0;
            $("#drop-overlay").addClass("d-none");
            $("#import-drop").removeClass("drop-active");
            var files = event.originalEvent.dataTransfer.files;
            if (files && files.length) {
                importFile(files[0]);
            }
        });
    }

    // ---------------------------------------------------------------- wiring

    function refreshAll() {
        return Promise.all([refreshHealth(), refreshServerSeries().then(refreshList), refreshPlot(),
                            refreshDayweek()]);
    }

    // Every few seconds: the list always, the plots only while their range ends at now.
    function tick() {
        refreshHealth();
        refreshServerSeries();
        if (!listBusy) {
            refreshList();
        }
        if (isLive() && state.selected.length && !plotBusy) {
            refreshPlot();
        }
        if (state.dayweek) {
            refreshDayweek();
        }
    }

    function bindEvents() {
        var filterTimer = null;
        $("#filter").on("input", function () {
            var value = $(this).val();
            window.clearTimeout(filterTimer);
            filterTimer = window.setTimeout(function () {
                if (value === state.filter) {
                    return;
                }
                state.filter = value;
                writeUrl();
                renderExportLinks();
                refreshList();
            }, FILTER_DEBOUNCE_MS);
        });

        $(document).on("click", ".tag-badge", function (event) {
            event.stopPropagation();
            var term = $(this).attr("data-term");
            if (/\s/.test(term)) {
                return; // a term cannot hold spaces in the filter syntax
            }
            var terms = state.filter.split(/\s+/).filter(Boolean);
            if (terms.indexOf(term) === -1) {
                terms.push(term);
            }
            $("#filter").val(terms.join(" ")).trigger("input");
        });

        $(document).on("click", "tr.metric-row", function () {
            toggleSeries($(this).attr("data-key"));
        });
        $("#clear-selection").on("click", function () {
            state.selected = [];
            selectionChanged();
        });
        $("#plot-legend").on("click", ".legend-remove", function () {
            var key = $(this).closest("li").attr("data-key");
            if (isSelected(key)) {
                toggleSeries(key);
            }
        });

        $("#range-presets").on("click", "button", function () {
            chooseRange($(this).attr("data-range"));
        });
        $("#custom-range").on("submit", function (event) {
            event.preventDefault();
            var from = fromLocalInput($("#range-from").val());
            var until = fromLocalInput($("#range-until").val());
            if (from === null || until === null || from >= until) {
                showAlert($("#plot-error"), "The custom range needs a start before its end.");
                return;
            }
            setCustomRange(from, until);
        });
        $("#resolution").on("change", function () {
            state.resolution = $(this).val();
            writeUrl();
            refreshPlot();
        });
        $("#field-picker").on("change", "input[data-field]", function () {
            toggleField($(this).attr("data-type"), $(this).attr("data-field"));
        });

        var $plot = $("#plot");
        bindHover($plot);
        bindHover($("#dayweek-plot"));
        $plot.on("plotselected", function (event, ranges) {
            if (ranges && ranges.xaxis) {
                exposed.plot.clearSelection(true);
                setCustomRange(Math.floor(ranges.xaxis.from), Math.ceil(ranges.xaxis.to));
            }
        });

        $("#dayweek-series").on("change", renderDayweekFields);
        $("#dayweek-btn").on("click", openDayweek);
        $("#dayweek-close").on("click", closeDayweek);

        $("#import-file").on("change", function () {
            if (this.files && this.files.length) {
                importFile(this.files[0]);
            }
        });
        bindDropZone();

        var resizeTimer = null;
        $(window).on("resize", function () {
            window.clearTimeout(resizeTimer);
            resizeTimer = window.setTimeout(function () {
                [exposed.plot, exposed.dayweekPlot].forEach(function (plot) {
                    if (plot) {
                        plot.resize();
                        plot.setupGrid();
                        plot.draw();
                        fitYAxisLabels(plot);
                    }
                });
            }, 150);
        });
    }

    $(function () {
        readUrl();
        $("#filter").val(state.filter);
        renderRangeControls();
        renderExportLinks();
        renderDayweekControls();
        bindEvents();
        refreshAll();
        window.setInterval(tick, REFRESH_MS);
    });
}(jQuery));
