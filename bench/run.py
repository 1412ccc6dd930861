"""
Run the whole comparison: SimpleStats against Etsy statsd 0.9.0, carbon
1.1.10 and the Twisted ceiling; print a table and write every figure to
bench/results/<time>-<mode>.json.

    python bench/run.py            # full, under 15 minutes
    python bench/run.py --quick    # smoke run, under 2 minutes (with a warm cache)

The references are installed into bench/.cache/ on the first run.  See
bench/README.md for what each figure means.
"""

import argparse
import os
import shutil
import sys
import time
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH_DIR))

from bench import (procstat, recovery, references, report, simplestats_figures, stalls,  # noqa: E402
                   systems, tcpbench, udpbench)

# The common offered rate at which CPU per million metrics is compared, per
# metrics per packet: low enough that every system is loss-free there.
CPU_RATES = {1: 5000.0, 20: 50000.0}

# The real shapes come first: the targets are judged on them.  counters_1
# and mix_1 (best cases at 1 per packet) are left out of a full run to keep
# it near 15 minutes; --shapes adds them.
MODES = {
    "full": {"step_seconds": 5.0, "max_steps": 5, "generator_seconds": 2.0,
             "shapes": ("real_1", "real_20", "counters_20", "mix_20"),
             "tcp_metrics": 100, "tcp_points": 5000, "tcp_timeout": 240.0},
    "quick": {"step_seconds": 0.8, "max_steps": 3, "generator_seconds": 1.0,
              "shapes": ("real_20", "counters_20"),
              "tcp_metrics": 100, "tcp_points": 1000, "tcp_timeout": 60.0},
}
ALL_SYSTEMS = ("ceiling", "statsd", "simplestats", "carbon")


def parse_args(argv):
    parser = argparse.ArgumentParser(description="SimpleStats benchmark harness")
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 2 min)")
    parser.add_argument("--python", default=None,
                        help="interpreter for SimpleStats and the ceiling server "
                             "(default: .venv/bin/python, else this one)")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help="comma-separated subset of %s" % ",".join(ALL_SYSTEMS))
    parser.add_argument("--shapes", default=None,
                        help="comma-separated subset of %s (default: %s; quick: %s)"
                        % (",".join(s.key for s in udpbench.SHAPES),
                           ",".join(MODES["full"]["shapes"]), ",".join(MODES["quick"]["shapes"])))
    parser.add_argument("--skip-simplestats-only", action="store_true",
                        help="skip the SimpleStats-only figures")
    parser.add_argument("--recovery-rate", type=float, default=None,
                        help="statsd lines/s of the kill -9 recovery figure (full mode; default: "
                             "SimpleStats' real_20 loss-free rate of this run)")
    parser.add_argument("--recovery-seconds", type=float, default=60.0,
                        help="seconds of load journaled before the kill -9 (default 60)")
    parser.add_argument("--stalls", action="store_true",
                        help="also run bench/stalls.py after the SimpleStats-only figures: the "
                             "longest reactor stall per heavy operation (about 8 minutes; quick "
                             "sizes with --quick)")
    parser.add_argument("--step-seconds", type=float, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--generator-seconds", type=float, default=None)
    parser.add_argument("--background-seconds", type=float, default=1.0,
                        help="how long to sample other programs' load before the run")
    parser.add_argument("--cache", default=os.path.join(BENCH_DIR, ".cache"))
    parser.add_argument("--results", default=os.path.join(BENCH_DIR, "results"))
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--no-realtime", action="store_true",
                        help="run the servers at normal priority (default: chrt --fifo %d when "
                             "allowed, so other programs on a shared machine cannot preempt them)"
                             % procstat.REALTIME_PRIORITY)
    return parser.parse_args(argv)


def log(message):
    print(message, flush=True)


def guarded(what, call, results_node, key):
    """
    Run one measurement; an error is recorded in the results and the run
    goes on with the next one.
    """
    try:
        results_node[key] = call()
    except Exception as e:
        log("  %s failed: %s" % (what, e))
        results_node[key] = {"error": "%s: %s" % (type(e).__name__, e),
                             "traceback": traceback.format_exc()[-3000:]}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode])
    if args.step_seconds:
        settings["step_seconds"] = args.step_seconds
    if args.max_steps:
        settings["max_steps"] = args.max_steps
    if args.generator_seconds:
        settings["generator_seconds"] = args.generator_seconds
    wanted_shapes = args.shapes.split(",") if args.shapes else list(settings["shapes"])
    unknown = set(wanted_shapes) - {s.key for s in udpbench.SHAPES}
    if unknown:
        log("unknown shapes: %s" % ", ".join(sorted(unknown)))
        return 2
    # Real shapes first, then in the order asked.
    shapes = sorted((s for s in udpbench.SHAPES if s.key in wanted_shapes),
                    key=lambda s: (s.best_case, wanted_shapes.index(s.key)))
    wanted = set(args.systems.split(","))
    python = args.python or systems.default_python()
    load_core, server_core = (None, None) if args.no_pin else procstat.pinning()
    if load_core is not None:
        # The harness itself stays off the server's core too.
        os.sched_setaffinity(0, {load_core})
    realtime = not args.no_realtime and procstat.can_run_realtime()
    cores = sorted(os.sched_getaffinity(0) | {c for c in (load_core, server_core) if c is not None})
    background = procstat.background_load([c for c in (load_core, server_core) if c is not None]
                                          or cores[:1], args.background_seconds)

    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    runs = os.path.join(args.cache, "runs")
    if os.path.isdir(runs):
        # Only the latest run's work files are kept (whisper files and data
        # directories add up).
        for old in os.listdir(runs):
            shutil.rmtree(os.path.join(runs, old), ignore_errors=True)
    workdir = os.path.join(runs, stamp)
    os.makedirs(workdir, exist_ok=True)
    results = {
        "meta": {
            "mode": mode,
            "argv": sys.argv[:] if argv is None else ["bench/run.py"] + list(argv),
            "started": started,
            "machine": procstat.machine(),
            "pinning": {"load_core": load_core, "server_core": server_core},
            "realtime": realtime,
            "background_load": background,
            "loadavg_start": procstat.loadavg(),
            "settings": settings,
            "cpu_rates": CPU_RATES,
            "python": python,
            "harness_python": sys.version.split()[0],
            "step_note": ("quick mode: %.1f s steps and at most %d search steps (full mode: "
                          "5 s steps): figures are rough" % (settings["step_seconds"],
                                                             settings["max_steps"]))
            if mode == "quick" else None,
            "versions": {},
            "workdir": workdir,
        },
        "generator": {}, "udp": {}, "tcp": {}, "simplestats": {},
    }
    meta = results["meta"]
    log("SimpleStats benchmark, %s mode; work files in %s" % (mode, workdir))
    log("servers at %s priority; other programs' load before the run: %s"
        % ("real-time (chrt --fifo)" if realtime else "normal",
           ", ".join("core %s %.0f%%" % (c, 100 * f) for c, f in sorted(background.items()))))
    if any(f > 0.1 for f in background.values()):
        log("WARNING: the machine is not quiet; figures will be disturbed (see 'disturbed' steps)")

    have_server = os.path.exists(os.path.join(systems.REPO_ROOT, "server", "main.py"))
    if "simplestats" in wanted and not have_server:
        log("server/main.py does not exist yet: SimpleStats is skipped")
        wanted.discard("simplestats")

    stats_js = carbon_venv = None
    if "statsd" in wanted:
        try:
            stats_js = references.ensure_statsd(args.cache, log)
        except references.InstallError as e:
            log("statsd unavailable: %s" % e)
            wanted.discard("statsd")
            meta["versions"]["statsd"] = {"error": str(e)}
    if "carbon" in wanted:
        try:
            carbon_venv = references.ensure_carbon(args.cache, log)
        except references.InstallError as e:
            log("carbon unavailable: %s" % e)
            wanted.discard("carbon")
            meta["versions"]["carbon"] = {"error": str(e)}

    makers = {
        "ceiling": lambda: systems.Ceiling(os.path.join(workdir, "ceiling"), server_core, python,
                                           realtime=realtime),
        "statsd": lambda: systems.Statsd(os.path.join(workdir, "statsd"), server_core, stats_js,
                                         realtime=realtime),
        "simplestats": lambda: systems.SimpleStats(os.path.join(workdir, "simplestats"),
                                                   server_core, python, realtime=realtime),
    }
    for name in ("ceiling", "statsd", "simplestats"):
        if name in wanted:
            guarded("%s versions" % name, lambda: makers[name]().versions(),
                    meta["versions"], name)

    # The generator's own ceiling, per shape, pinned like every step (only
    # when a UDP system is measured).
    udp_systems = [name for name in ("ceiling", "statsd", "simplestats") if name in wanted]
    for shape in shapes if udp_systems else ():
        guarded("generator maximum", lambda: udpbench.generator_max(
            shape, settings["generator_seconds"], load_core), results["generator"], shape.key)
        log("load generator, %s: %.0f metrics/s unpaced (pool of %s packets built in %.2f s)"
            % (shape.key, results["generator"][shape.key].get("achieved_rate", 0),
               results["generator"][shape.key].get("pool_packets"),
               results["generator"][shape.key].get("build_seconds") or 0))

    for name in ("ceiling", "statsd", "simplestats"):
        if name not in wanted:
            continue
        node = results["udp"].setdefault(name, {})
        for shape in shapes:
            log("UDP %s, %s" % (name, shape.key))
            probe = results["generator"].get(shape.key, {}).get("achieved_rate") or 1e6
            guarded("%s %s" % (name, shape.key), lambda: udpbench.measure_system(
                makers[name], shape, settings, load_core, probe, CPU_RATES[shape.per_packet], log),
                node, shape.key)
            r = node[shape.key]
            if "loss_free_rate" in r:
                log("  => %s loss-free at %.0f metrics/s (%s-bound), %.2f CPU s per million, "
                    "peak RSS %.0f MB" % (name, r["loss_free_rate"], r["bound"],
                                          r["cpu_per_million"], (r["peak_rss"] or 0) / 1e6))

    # The real TCP load (typed values, tags, varying numbers) first, then
    # the plain one kept from before.
    for real, suffix in ((True, "_real"), (False, "")):
        if "carbon" in wanted:
            log("TCP carbon plaintext%s, %d x %d points"
                % (" (real)" if real else "", settings["tcp_metrics"], settings["tcp_points"]))
            guarded("carbon TCP", lambda: _tcp_carbon(workdir, server_core, load_core, carbon_venv,
                                                      settings, meta, realtime, real),
                    results["tcp"], "carbon" + suffix)
        if "simplestats" in wanted:
            log("TCP simplestats tuples (--quiet, batches%s), %d x %d points"
                % (", real" if real else "", settings["tcp_metrics"], settings["tcp_points"]))
            guarded("simplestats TCP", lambda: _tcp_simplestats(workdir, server_core, load_core,
                                                                python, settings, realtime, real),
                    results["tcp"], "simplestats" + suffix)
    if "simplestats" in wanted and not args.skip_simplestats_only:
        log("SimpleStats-only figures")
        guarded("simplestats external figures", lambda: simplestats_figures.measure(
            lambda extra: systems.SimpleStats(os.path.join(workdir, "simplestats-figures"),
                                              server_core, python, extra, realtime=realtime),
            args.quick, log), results["simplestats"], "external")
        guarded("simplestats in-process figures", lambda: simplestats_figures.inprocess(
            python, args.quick, server_core, log, realtime), results["simplestats"],
            "inprocess")
        if not args.quick or args.recovery_rate:
            rate = args.recovery_rate or _udp_loss_free(results, "simplestats", "real_20")
            if rate:
                log("SimpleStats restart after kill -9, %.0f s of real_20 journal at %.0f lines/s"
                    % (args.recovery_seconds, rate))
                guarded("simplestats recovery", lambda: recovery.measure(
                    lambda extra: systems.SimpleStats(os.path.join(workdir, "simplestats-recovery"),
                                                      server_core, python, extra,
                                                      realtime=realtime),
                    rate, args.recovery_seconds, load_core, log), results["simplestats"],
                    "recovery")
                results["simplestats"]["recovery"]["rate_from"] = (
                    "--recovery-rate" if args.recovery_rate else "real_20 loss-free rate")
            else:
                log("SimpleStats recovery figure skipped: no real_20 loss-free rate in this run "
                    "(give --recovery-rate)")
                results["simplestats"]["recovery"] = {
                    "skipped": "no real_20 loss-free rate in this run and no --recovery-rate"}

    if "simplestats" in wanted and args.stalls:
        log("SimpleStats reactor stalls per heavy operation (bench/stalls.py)")
        stall_args = stalls.parse_args(["--quick"] if args.quick else [])
        stall_args.load_core = load_core
        guarded("simplestats stalls", lambda: stalls.measure(
            lambda extra: systems.SimpleStats(os.path.join(workdir, "simplestats-stalls"),
                                              server_core, python, extra, realtime=realtime),
            stall_args, log), results["simplestats"], "stalls")
        log(results["simplestats"]["stalls"].get("table", ""))

    for key, r in results["tcp"].items():
        if isinstance(r, dict) and r.get("stored_rate"):
            log("  TCP %s: %.0f points/s stored" % (key, r["stored_rate"]))
    meta["finished"] = time.time()
    meta["seconds"] = meta["finished"] - started
    meta["loadavg_end"] = procstat.loadavg()
    results["targets"] = report.targets(results)
    path = report.write_json(results, args.results, "%s-%s" % (stamp, mode))
    log("")
    log(report.table(results))
    log("")
    log("results: %s (%.0f s)" % (os.path.relpath(path), meta["seconds"]))
    return 0


def _tcp_carbon(workdir, server_core, load_core, venv, settings, meta, realtime, real):
    whisper = references.load_whisper(venv)
    carbon = systems.Carbon(os.path.join(workdir, "carbon-real" if real else "carbon"),
                            server_core, venv, realtime=realtime)
    meta["versions"]["carbon"] = carbon.versions()
    carbon.start()
    try:
        return tcpbench.run_tcp_load(
            carbon, carbon.line_port, "carbon", tcpbench.CarbonStorage(whisper, carbon.whisper_dir),
            settings["tcp_metrics"], settings["tcp_points"], load_core, settings["tcp_timeout"],
            real)
    finally:
        carbon.stop()


def _tcp_simplestats(workdir, server_core, load_core, python, settings, realtime, real):
    server = systems.SimpleStats(os.path.join(workdir, "simplestats-tcp-real" if real
                                              else "simplestats-tcp"),
                                 server_core, python, realtime=realtime)
    server.start()
    try:
        return tcpbench.run_tcp_load(
            server, server.tcp_port, "tuples", tcpbench.SimpleStatsStorage(server),
            settings["tcp_metrics"], settings["tcp_points"], load_core, settings["tcp_timeout"],
            real)
    finally:
        server.stop()


def _udp_loss_free(results, system, shape):
    r = results["udp"].get(system, {}).get(shape) or {}
    if r.get("bound") == "not found":
        return None
    return r.get("loss_free_rate")


if __name__ == "__main__":
    sys.exit(main())
