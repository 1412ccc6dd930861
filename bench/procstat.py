"""
What the kernel says about a process and about this machine, read from
C{/proc}: CPU time (all threads, user + system), peak and current resident
memory, the CPU model.  Parsers take text so they can be tested on samples.
"""

import os
import platform

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_stat_cpu_ticks(text):
    """
    User + system clock ticks from the text of C{/proc/<pid>/stat}.

    The command name (field 2) may hold spaces and parentheses, so fields
    are counted from the last C{)}.
    """
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid):
    """
    CPU seconds (user + system, all threads) used so far by C{pid}.
    """
    with open("/proc/%d/stat" % pid) as f:
        return parse_stat_cpu_ticks(f.read()) / CLOCK_TICKS


def parse_status_kib(text, field):
    """
    A C{kB} field (C{VmHWM}, C{VmRSS}, ...) of C{/proc/<pid>/status}, in
    bytes, or None when absent.
    """
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def memory(pid):
    """
    C{{"peak_rss": bytes, "rss": bytes}} of C{pid} (peak is C{VmHWM}).
    """
    with open("/proc/%d/status" % pid) as f:
        text = f.read()
    return {"peak_rss": parse_status_kib(text, "VmHWM"),
            "rss": parse_status_kib(text, "VmRSS")}


def parse_cpu_model(cpuinfo):
    """
    The CPU model name from the text of C{/proc/cpuinfo}.
    """
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine():
    """
    The facts a result needs to be compared with another machine's.
    """
    try:
        with open("/proc/cpuinfo") as f:
            model = parse_cpu_model(f.read())
    except OSError:
        model = "unknown"
    try:
        with open("/proc/meminfo") as f:
            mem_total = parse_status_kib(f.read(), "MemTotal")
    except OSError:
        mem_total = None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total": mem_total,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def pinning(cpus=None):
    """
    Choose the cores for the load and the server.

    @param cpus: usable CPU ids (default: this process's affinity).
    @return: C{(load_core, server_core)}, or C{(None, None)} when there are
        fewer than two cores and nothing is pinned.
    """
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0))
    cpus = sorted(cpus)
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


# The real-time priority servers run at with C{realtime}: above every normal
# program, so another program on the server's core cannot delay its reads.
REALTIME_PRIORITY = 10


def pinned(argv, core, realtime=False):
    """
    C{argv} run under C{taskset -c core} (unchanged when C{core} is None),
    and under C{chrt --fifo} when C{realtime}.  Both exec the command, so
    the child's pid is the command's.
    """
    argv = list(argv)
    if core is not None:
        argv = ["taskset", "-c", str(core)] + argv
    if realtime:
        # --reset-on-fork: only the main thread (the event loop that reads
        # the socket) gets the real-time priority; threads it starts (node's
        # GC helpers, carbon's writer, a thread pool) run at normal priority
        # and cannot lock it out of its core.
        argv = ["chrt", "--fifo", "--reset-on-fork", str(REALTIME_PRIORITY)] + argv
    return argv


def can_run_realtime():
    """
    Whether this process may start programs at a real-time priority.
    """
    import shutil
    import subprocess
    if shutil.which("chrt") is None:
        return False
    done = subprocess.run(["chrt", "--fifo", "--reset-on-fork", str(REALTIME_PRIORITY), "true"],
                          capture_output=True)
    return done.returncode == 0


def background_load(cores, seconds=1.0, sleep=None):
    """
    Busy fraction of each core over C{seconds} while this harness does
    nothing: what other programs use.
    """
    import time
    sleep = sleep or time.sleep
    before = {core: core_busy_seconds(core) for core in cores}
    sleep(seconds)
    return {core: (core_busy_seconds(core) - before[core]) / seconds for core in cores}


def parse_core_busy(stat_text, core):
    """
    Busy and total clock ticks of one core from the text of C{/proc/stat}
    (busy: everything but idle and iowait).

    @return: C{(busy_ticks, total_ticks)}
    """
    label = "cpu%d" % core
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == label:
            ticks = [int(v) for v in fields[1:]]
            # user nice system idle iowait irq softirq steal [guest guest_nice]:
            # guest time is already inside user.
            total = sum(ticks[:8])
            return total - ticks[3] - ticks[4], total
    raise ValueError("no %s line in /proc/stat" % label)


def core_busy_seconds(core):
    """
    Busy seconds of C{core} since boot (None when not pinned).
    """
    if core is None:
        return None
    with open("/proc/stat") as f:
        return parse_core_busy(f.read(), core)[0] / CLOCK_TICKS


def loadavg():
    """
    The 1, 5 and 15 minute load averages as text, or None without /proc.
    """
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None
