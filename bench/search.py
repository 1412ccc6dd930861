"""
Finding the loss-free rate: the highest offered rate at which a server
loses less than 0.1 % of the metrics sent.

The search knows nothing of servers: it is given C{trial(rate)}, which runs
one step and returns a dict with at least C{loss_free} (bool),
C{generator_limited} (bool) and C{counted_rate} (metrics per second counted
back), so it can be tested with a fake.
"""


def next_rate(ok_rate, upper_rate, last_rate, last_counted_rate, last_loss):
    """
    The rate of the next step.

    Bisect (geometrically) between the highest loss-free rate and the upper
    bound; with no loss-free rate yet, go down to under what the server
    managed to count back, and by more the more it lost.
    """
    if ok_rate is None:
        shrink = 0.75 if last_loss < 0.05 else 0.6
        candidate = min(last_rate * shrink, 0.9 * last_counted_rate)
        return max(candidate, last_rate * 0.3)
    return (ok_rate * upper_rate) ** 0.5


def find_loss_free_rate(trial, probe_rate, max_steps, precision=0.05, min_rate=100.0,
                        headroom=1.1, start_fraction=0.6, confirm=True):
    """
    Run the search.

    The first step offers C{probe_rate} (normally the generator's own
    maximum): a server that keeps up with it is generator-bound and the
    search ends.  Otherwise the rate the server counted back under that
    overload (its capacity) says where to look: a loss-free rate more than
    C{headroom} times the capacity is not looked for.

    @param max_steps: most steps after the probe.
    @param precision: stop when the upper bound and the loss-free rate are
        this close (0.05: within 5 %).
    @param confirm: run the best loss-free rate once more; when that step
        loses, fall back to the next lower loss-free rate (confirmed the
        same way), so one lucky step does not make the figure.
    @return: dict with C{rate} (highest loss-free offered rate, 0.0 when
        none), C{bound} (C{"server"}, C{"generator"} or C{"not found"}),
        C{confirmed} (whether a second step at C{rate} was loss-free too),
        C{capacity} (counted rate under overload), C{steps} (every result).
    """
    steps = []
    first = trial(probe_rate)
    first["role"] = "probe"
    steps.append(first)
    capacity = first["counted_rate"]
    if first["loss_free"]:
        return {"rate": first["achieved_rate"], "bound": "generator", "confirmed": False,
                "capacity": capacity, "steps": steps}
    upper = min(first["achieved_rate"], headroom * capacity)
    ok_rate = None
    ok_rates = []
    # Loss-free rates sit well under the throughput counted under overload
    # (where every read finds a full buffer): 40-65 % of it was seen for
    # statsd, the ceiling and SimpleStats alike.
    rate = start_fraction * capacity
    bound = "server"
    for _ in range(max_steps):
        if rate < min_rate:
            break
        result = trial(rate)
        result["role"] = "search"
        steps.append(result)
        if result["loss_free"]:
            if result["generator_limited"]:
                # Loss-free, but below the rate asked for: what was sent is
                # all that is known, and asking for more will not help.
                ok_rate = max(ok_rate or 0.0, result["achieved_rate"])
                bound = "generator"
                break
            ok_rate = rate if ok_rate is None else max(ok_rate, rate)
            ok_rates.append(rate)
        else:
            upper = min(upper, rate)
        if ok_rate is not None and upper <= ok_rate * (1 + precision):
            break
        rate = next_rate(ok_rate, upper, rate, result["counted_rate"], result["loss"])
    if ok_rate is None:
        return {"rate": 0.0, "bound": "not found", "confirmed": False, "capacity": capacity,
                "steps": steps}
    confirmed = False
    if confirm and bound == "server":
        for candidate in sorted(ok_rates, reverse=True)[:2]:
            result = trial(candidate)
            result["role"] = "confirm"
            steps.append(result)
            if result["loss_free"]:
                ok_rate, confirmed = candidate, True
                break
        else:
            # Neither held twice: report the lowest rate that held once.
            ok_rate = min(sorted(ok_rates, reverse=True)[:2])
    return {"rate": ok_rate, "bound": bound, "confirmed": confirmed, "capacity": capacity,
            "steps": steps}
