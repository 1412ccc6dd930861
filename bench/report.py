"""
Turning a results dict into the targets (met / not met) and the printed
table.  Pure functions of the results, so they are tested on a small dict.
"""

import json
import os

from bench import recovery

SYSTEM_ORDER = ("ceiling", "statsd", "simplestats")
# Table order: the real shapes (the headline, what the targets judge), then
# the best cases, labelled as such.
SHAPE_LABELS = {
    "real_1": "real, 1/packet",
    "real_20": "real, 20/packet",
    "counters_1": "best case: counters, 1/pkt",
    "counters_20": "best case: counters, 20/pkt",
    "mix_1": "best case: mix, 1/pkt",
    "mix_20": "best case: mix, 20/pkt",
}
REAL_SHAPES = ("real_20", "real_1")
BEST_CASE_SHAPES = ("counters_1", "counters_20", "mix_1", "mix_20")
# In the table's TCP section, real loads first.
TCP_LABELS = {
    "carbon_real": "carbon, real",
    "simplestats_real": "simplestats, real",
    "carbon": "carbon, plain",
    "simplestats": "simplestats, plain",
}


def _get(results, *path):
    node = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def _target(name, value, op, threshold, unit="", note=""):
    """
    One target row.  C{op} is C{">="} or C{"<"} / C{"<="}; C{met} is None
    when the value could not be measured.
    """
    if value is None:
        met = None
    elif op == ">=":
        met = value >= threshold
    elif op == "<":
        met = value < threshold
    else:
        met = value <= threshold
    return {"name": name, "value": value, "target": "%s %g%s" % (op, threshold, unit),
            "met": met, "note": note}


def _udp(results, system, shape, field="loss_free_rate"):
    return _get(results, "udp", system, shape, field)


def _bound_note(results, *systems_shapes):
    notes = []
    for system, shape in systems_shapes:
        bound = _udp(results, system, shape, "bound")
        if bound == "generator":
            notes.append("%s %s generator-bound (a lower bound)" % (system, shape))
        elif bound == "not found":
            notes.append("%s %s: no loss-free step found" % (system, shape))
    return "; ".join(notes)


def _rate_target(results, shape, other, threshold, label, aim=None):
    """
    SimpleStats' loss-free rate against C{other}'s for one shape.

    A generator-bound rate is only a lower bound: on SimpleStats' side the
    ratio is then a lower bound (a miss proves nothing), on the other side
    an upper bound (a pass proves nothing); such a row is "not measured".
    """
    ours = _udp(results, "simplestats", shape)
    theirs = _udp(results, other, shape)
    ratio = _ratio(ours, theirs)
    if _udp(results, "simplestats", shape, "bound") == "not found":
        ratio = None
    notes = [aim] if aim else []
    notes.append(_bound_note(results, ("simplestats", shape), (other, shape)))
    row = _target("UDP %s %s" % (SHAPE_LABELS[shape], label), ratio, ">=", threshold, "x",
                  "; ".join(filter(None, notes)))
    if row["met"] is False and _udp(results, "simplestats", shape, "bound") == "generator":
        row["met"] = None
    if row["met"] is True and _udp(results, other, shape, "bound") == "generator":
        row["met"] = None
    return row


def targets(results):
    """
    The issue's targets, each with its measured value and whether it is met.
    The UDP ones are judged on the real shapes only (see L{best_case}).
    """
    rows = []
    for shape, threshold, aim in (("real_20", 2, "aim 3x"), ("real_1", 1.5, None)):
        rows.append(_rate_target(results, shape, "statsd", threshold,
                                 "loss-free rate vs statsd", aim))
        cpu = _ratio(_udp(results, "simplestats", shape, "cpu_per_million"),
                     _udp(results, "statsd", shape, "cpu_per_million"))
        rows.append(_target("UDP %s CPU per million vs statsd" % SHAPE_LABELS[shape], cpu, "<=",
                            0.5, "x", "at the common rate"))
    for shape in REAL_SHAPES:
        rows.append(_rate_target(results, shape, "ceiling", 0.5, "vs the Twisted ceiling"))
    tcp = _ratio(_get(results, "tcp", "simplestats_real", "stored_rate"),
                 _get(results, "tcp", "carbon_real", "stored_rate"))
    rows.append(_target("TCP real tuples vs carbon plaintext (points/s stored)", tcp, ">=", 1,
                        "x"))
    tcp = _ratio(_get(results, "tcp", "simplestats", "stored_rate"),
                 _get(results, "tcp", "carbon", "stored_rate"))
    rows.append(_target("TCP plain quiet batches vs carbon plaintext", tcp, ">=", 1, "x"))
    inproc = _get(results, "simplestats", "inprocess") or {}
    large = inproc.get("100000") or {}
    rows.append(_target("rollup tick, 100k active series (median, s)",
                        large.get("tick_seconds_median"), "<", 1, " s",
                        "in-process, 50 values per timer bucket; max %s"
                        % _fmt_seconds(large.get("tick_seconds_max"))))
    rows.append(_target("rollup tick, 100k series: longest reactor stall (s)",
                        large.get("longest_slice_seconds"), "<", 0.1, " s",
                        "the tick run in %s slices; longest GC pause %s"
                        % (_fmt_seconds(large.get("slice_seconds")),
                           _fmt_seconds(large.get("gc_longest_pause_seconds")))))
    small = inproc.get("10000") or {}
    per_value = large.get("bytes_per_value_accounted", small.get("bytes_per_value_accounted"))
    rows.append(_target("bytes per stored value", per_value, "<=", 12, " B",
                        "closed-bucket columns; by RSS growth %s B"
                        % _fmt_num(large.get("bytes_per_value_rss",
                                             small.get("bytes_per_value_rss")))))
    week = _get(results, "simplestats", "external", "week_series", "seconds_median")
    rows.append(_target("/api/series, a week of 1-min points (median, s)", week, "<", 0.05, " s"))
    filters = _get(results, "simplestats", "external", "filters") or {}
    worst = max((f["seconds_median"] for label, f in filters.items() if label != "all"),
                default=None)
    series = _get(results, "simplestats", "external", "series_small")
    rows.append(_target("/api/metrics filter over %s series (slowest, median, s)"
                        % (series or "10k"), worst, "<", 0.1, " s",
                        "matching all: %s" % _fmt_seconds(_get(filters, "all", "seconds_median"))))
    rec = _get(results, "simplestats", "recovery") or {}
    ready = None if _get(rec, "restart", "timed_out") else _get(rec, "restart", "ready_seconds")
    seconds = rec.get("seconds") or 60
    row = _target("restart after kill -9, %g s of real_20 journal (s)" % seconds, ready, "<", 20,
                  " s", "%s lines at %s/s; /api/health after %s"
                  % (_fmt_num(rec.get("lines_journaled")), _fmt_num(rec.get("rate")),
                     _fmt_seconds(_get(rec, "restart", "health_seconds")))
                  if ready is not None else "")
    if ready is not None and seconds < 60:
        # The target is about a minute of journal: a shorter load shows
        # the figure but judges nothing.
        row["met"] = None
        row["note"] += "; shorter than the 60 s the target is about"
    rows.append(row)
    return rows


def best_case(results):
    """
    The best-case shapes (repetitive pools) compared as the real ones are,
    for information: C{[(label, vs statsd, CPU vs statsd, vs ceiling)]}.
    """
    rows = []
    for shape in BEST_CASE_SHAPES:
        ours = _udp(results, "simplestats", shape)
        if ours is None:
            continue
        rows.append((SHAPE_LABELS[shape],
                     _ratio(ours, _udp(results, "statsd", shape)),
                     _ratio(_udp(results, "simplestats", shape, "cpu_per_million"),
                            _udp(results, "statsd", shape, "cpu_per_million")),
                     _ratio(ours, _udp(results, "ceiling", shape))))
    return rows


def _fmt_num(value):
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return "%.2fM" % (value / 1e6)
    if abs(value) >= 1e4:
        return "%.1fk" % (value / 1e3)
    if abs(value) >= 100:
        return "%.0f" % value
    if abs(value) >= 10:
        return "%.1f" % value
    return "%.2f" % value


def _fmt_ratio(value):
    return "-" if value is None else "%.2fx" % value


def _fmt_seconds(value):
    if value is None:
        return "-"
    if value < 1:
        return "%.1f ms" % (value * 1000)
    return "%.2f s" % value


def _fmt_mb(value):
    return "-" if value is None else "%.0f MB" % (value / 1e6)


def _row(label, cells, width=14):
    return "%-42s" % label + "".join("%*s" % (width, c) for c in cells)


def table(results):
    """
    The printed summary: per-system UDP and TCP figures, SimpleStats-only
    figures, then the targets.
    """
    lines = []
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    lines.append("SimpleStats benchmark (%s mode), %s x %s, load core %s, server core %s%s"
                 % (meta.get("mode"), machine.get("cpu_count"), machine.get("cpu_model"),
                    _get(meta, "pinning", "load_core"), _get(meta, "pinning", "server_core"),
                    ", servers at real-time priority" if meta.get("realtime") else ""))
    background = meta.get("background_load") or {}
    if any(f > 0.1 for f in background.values()):
        lines.append("the machine was not quiet at the start: " + ", ".join(
            "core %s %.0f%% busy" % (c, 100 * f) for c, f in sorted(background.items())))
    if meta.get("step_note"):
        lines.append(meta["step_note"])
    gen = results.get("generator", {})
    if gen:
        lines.append("load generator maximum: " + ", ".join(
            "%s %s/s" % (SHAPE_LABELS.get(k, k), _fmt_num(v.get("achieved_rate")))
            for k, v in gen.items()))
    udp = results.get("udp", {})
    systems = [s for s in SYSTEM_ORDER if s in udp]
    if systems:
        lines.append("")
        lines.append(_row("UDP loss-free rate (metrics/s)", systems))
        shapes = [k for k in SHAPE_LABELS if any(k in udp[s] for s in systems)]
        for shape in shapes:
            cells = []
            for s in systems:
                r = udp[s].get(shape, {})
                if "error" in r:
                    cells.append("error")
                    continue
                if r.get("bound") == "not found":
                    cells.append("none")
                    continue
                mark = ">=" if r.get("bound") == "generator" else ""
                unconfirmed = "?" if r.get("bound") == "server" and not r.get("confirmed") else ""
                cells.append(mark + _fmt_num(r.get("loss_free_rate")) + unconfirmed)
            lines.append(_row("  " + SHAPE_LABELS[shape], cells))
        lines.append(_row("CPU s per million (common rate)", []))
        for shape in shapes:
            cells = []
            for s in systems:
                r = udp[s].get(shape, {})
                cells.append(_fmt_num(r.get("cpu_per_million")))
            rate = next((udp[s][shape].get("cpu_rate") for s in systems
                         if udp[s].get(shape, {}).get("cpu_rate")), None)
            lines.append(_row("  %s at %s/s" % (SHAPE_LABELS[shape], _fmt_num(rate)), cells))
        cells = []
        for s in systems:
            peaks = [r.get("peak_rss") for r in udp[s].values() if r.get("peak_rss")]
            cells.append(_fmt_mb(max(peaks)) if peaks else "-")
        lines.append(_row("peak RSS (VmHWM)", cells))
        disturbed = sum(1 for s in systems for r in udp[s].values()
                        for step in r.get("steps", []) if step.get("disturbed"))
        steps = sum(len(r.get("steps", [])) for s in systems for r in udp[s].values())
        if disturbed and meta.get("realtime"):
            lines.append("  note: other programs used > 5%% of the server core during %d of %d "
                         "steps (the servers ran at real-time priority, so they were not "
                         "preempted, but a busy machine still shares caches and memory "
                         "bandwidth)" % (disturbed, steps))
        elif disturbed:
            lines.append("  note: %d of %d steps ran while other programs used > 5%% of the "
                         "server core: figures are unreliable" % (disturbed, steps))
        lines.append("  (none: no step was loss-free; >=: the generator, not the server, was "
                     "the limit; ?: not loss-free when run again)")
        if any(k in BEST_CASE_SHAPES for k in shapes):
            lines.append("  (best case: 200 lines repeated byte for byte, integer values, no rates "
                         "or tags: a server can learn them; not what the targets judge)")
        compared = best_case(results)
        if compared:
            lines.append(_row("best case, SimpleStats (not judged)", ["vs statsd", "CPU vs statsd",
                                                                      "vs ceiling"]))
            for label, rate, cpu, ceiling in compared:
                lines.append(_row("  " + label, [_fmt_ratio(rate), _fmt_ratio(cpu),
                                                 _fmt_ratio(ceiling)]))
    tcp = results.get("tcp", {})
    if tcp:
        lines.append("")
        lines.append(_row("TCP, until every point is stored", ["points/s", "accepted/s", "CPU s/M",
                                                               "peak RSS"]))
        for name in sorted(tcp, key=lambda k: list(TCP_LABELS).index(k) if k in TCP_LABELS else 99):
            r = tcp[name]
            if "error" in r:
                lines.append(_row("  " + TCP_LABELS.get(name, name), ["error"]))
                continue
            label = "  %s (%s)" % (TCP_LABELS.get(name, name), _fmt_num(r.get("points")))
            lines.append(_row(label, [_fmt_num(r.get("stored_rate")), _fmt_num(r.get("accept_rate")),
                                      _fmt_num(r.get("cpu_per_million")),
                                      _fmt_mb(r.get("peak_rss"))]))
    ext = _get(results, "simplestats", "external") or {}
    inproc = _get(results, "simplestats", "inprocess") or {}
    if ext or inproc:
        lines.append("")
        lines.append("SimpleStats only")
        for count, r in sorted(inproc.items()):
            if not isinstance(r, dict) or "tick_seconds_median" not in r:
                continue
            lines.append("  rollup tick, %s active series: median %s, max %s, longest slice %s "
                         "(longest GC pause %s); RSS %s B/series; %s B/stored value (RSS growth %s)"
                         % (count, _fmt_seconds(r["tick_seconds_median"]),
                            _fmt_seconds(r["tick_seconds_max"]),
                            _fmt_seconds(r.get("longest_slice_seconds")),
                            _fmt_seconds(r.get("gc_longest_pause_seconds")),
                            _fmt_num(r["rss_per_series"]),
                            _fmt_num(r["bytes_per_value_accounted"]),
                            _fmt_num(r["bytes_per_value_rss"])))
        if "error" in inproc:
            lines.append("  in-process figures: " + inproc["error"].splitlines()[-1])
        if ext.get("week_series"):
            w = ext["week_series"]
            lines.append("  /api/series week of 1-min points (%s returned): median %s, max %s"
                         % (w["points_returned"], _fmt_seconds(w["seconds_median"]),
                            _fmt_seconds(w["seconds_max"])))
        for label, f in (ext.get("filters") or {}).items():
            lines.append("  /api/metrics filter %-9s %-36s %5s of %s: median %s"
                         % (label, f["filter"], f["matches"], f["total"],
                            _fmt_seconds(f["seconds_median"])))
        if ext.get("rss_small"):
            lines.append("  RSS: %s at %s series, %s at %s series (%s B per added series)"
                         % (_fmt_mb(ext["rss_small"]), ext["series_small"], _fmt_mb(ext["rss_large"]),
                            ext["series_large"], _fmt_num(ext["rss_per_series"])))
        snap = ext.get("snapshot")
        if snap:
            lines.append("  snapshot of %s series: reactor blocked at most %s, %s in all, %s"
                         % (snap.get("series"), _fmt_seconds(snap.get("max_block")),
                            _fmt_seconds(snap.get("duration")), _fmt_mb(snap.get("bytes"))))
        if ext.get("restart"):
            r = ext["restart"]
            lines.append("  restart with %s series: %s until every series is back (stop took %s)"
                         % (r["expected"], _fmt_seconds(r["seconds"]),
                            _fmt_seconds(ext.get("stop_seconds"))))
        if "error" in ext:
            lines.append("  external figures: " + ext["error"].splitlines()[-1])
    rec = _get(results, "simplestats", "recovery")
    if rec:
        if not (ext or inproc):
            lines.append("")
            lines.append("SimpleStats only")
        if "error" in rec:
            lines.append("  restart after kill -9: " + rec["error"].splitlines()[-1])
        elif "skipped" in rec:
            lines.append("  restart after kill -9: skipped (%s)" % rec["skipped"])
        else:
            lines.append("  restart after kill -9, real_20 journal: " + recovery.summary(rec))
    rows = results.get("targets") or []
    if rows:
        lines.append("")
        lines.append("%-58s %12s %12s  %s" % ("target", "measured", "wanted", "met"))
        for row in rows:
            met = {True: "met", False: "NOT MET", None: "not measured"}[row["met"]]
            lines.append("%-58s %12s %12s  %s%s" % (
                row["name"], _fmt_num(row["value"]), row["target"], met,
                ("  (%s)" % row["note"]) if row.get("note") else ""))
    return "\n".join(lines)


def write_json(results, directory, stem):
    """
    Write the results atomically as C{directory/stem.json}.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, stem + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
