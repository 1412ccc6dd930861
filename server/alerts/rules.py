"""
Alert rules: their shape (L{check_rule}, from a JSON body or a TOML table),
and what evaluating one needs (L{Rule}: the compiled filter, the tier it
reads, the literal that names it in the index of L{server.alerts.index}).

A rule::

    {"name": "hot", "filter": "room.temp host:web*", "field": "last",
     "resolution": "5s", "above": 50, "for": 30, "recover": 45,
     "repeat": 0, "notify": [{"type": "webhook", "url": "http://..."}]}

with exactly one condition: C{above} or C{below} (a number; C{for} and
C{recover} apply), C{stopped} (C{{"after": seconds}}), C{anomaly}
(C{{"method": "ewma" | "dayweek", "k": 3, "alpha": 0.1, "warmup": 10}}) or
C{probe} (C{{"http": url, "status": 200}} or C{{"tcp": "host:port"}}, with
C{interval}, C{timeout}, C{failures}).
"""

import math
import re

from server.core.aggregate import ROWS
from server.core.filters import compile_filter
from server.core.model import COUNTER, GAUGE, SET, ParseError

CONDITIONS = ("above", "below", "stopped", "anomaly", "probe")
CHANNEL_TYPES = ("webhook", "email", "apprise")
ANOMALY_METHODS = ("ewma", "dayweek")
MAX_NAME = 200
MAX_NOTIFY = 20
MAX_RECIPIENTS = 50
# Members the server sets; a body's own are ignored.
SERVER_MEMBERS = ("id", "created", "updated", "status")
# Shown as this in listings: a secret given once is not read back.
HIDDEN = "********"
SECRET_MEMBERS = ("password",)
_PROBE_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


class RuleError(ValueError):
    """
    A rule of the wrong shape; C{parameter} names the member at fault
    (C{notify[1].url}).
    """

    def __init__(self, parameter, message):
        ValueError.__init__(self, message)
        self.parameter = parameter


# -- fields: one value from a closed bucket's row ----------------------------

def _ratio(a, b):
    return a / b if b else None


_FIELDS = {
    COUNTER: {
        "count": lambda r, step: r.count,
        "rate": lambda r, step: r.count / step,
    },
    GAUGE: {
        "last": lambda r, step: r.last,
        "min": lambda r, step: r.min,
        "max": lambda r, step: r.max,
        "mean": lambda r, step: _ratio(r.sum, r.updates),
        "updates": lambda r, step: r.updates,
    },
    SET: {"count": lambda r, step: r.count},
    "dist": {
        "count": lambda r, step: r.count,
        "sum": lambda r, step: r.sum,
        "mean": lambda r, step: _ratio(r.sum, r.count),
        "std": lambda r, step: (math.sqrt(max(0.0, r.sumsq / r.count - (r.sum / r.count) ** 2))
                                if r.count > 0 else None),
        "min": lambda r, step: r.min,
        "max": lambda r, step: r.max,
        "last": lambda r, step: r.last,
        "median": lambda r, step: r.p50,
        "p90": lambda r, step: r.p90,
        "p95": lambda r, step: r.p95,
        "p99": lambda r, step: r.p99,
    },
}
FIELDS = sorted({name for fields in _FIELDS.values() for name in fields})


def field_value(fam, field, row, step):
    """
    The value of C{field} in a closed bucket's C{row} of family C{fam}, or
    L{None} (no such field for the family, no value, NaN or infinite).
    """
    derive = _FIELDS[fam].get(field)
    if derive is None:
        return None
    if not hasattr(row, "_fields"):
        row = ROWS[fam]._make(row)
    value = derive(row, step)
    if value is None or value - value != 0.0:
        return None
    return float(value)


def has_field(fam, field):
    return field in _FIELDS[fam]


# -- checking ----------------------------------------------------------------

def _number(value, where, positive=False, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RuleError(where, "%s must be a finite number, got %r" % (where, value))
    if positive and value <= 0:
        raise RuleError(where, "%s must be above 0, got %r" % (where, value))
    if minimum is not None and value < minimum:
        raise RuleError(where, "%s must be at least %s, got %r" % (where, minimum, value))
    return float(value)


def _string(value, where, limit=4096, empty=False):
    if not isinstance(value, str):
        raise RuleError(where, "%s must be a string" % (where,))
    if not empty and not value.strip():
        raise RuleError(where, "%s must not be empty" % (where,))
    if len(value) > limit:
        raise RuleError(where, "%s has %d characters, at most %d" % (where, len(value), limit))
    return value


def _duration(value, where, default=None, positive=False):
    """
    Seconds: a number, or text such as C{30s}, C{5m}, C{2h}.
    """
    if value is None:
        return default
    if isinstance(value, str):
        match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$", value)
        if not match:
            raise RuleError(where, "%s must be seconds or like 30s, 5m, 2h, got %r"
                            % (where, value))
        value = float(match.group(1)) * {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[
            match.group(2) or "s"]
    return _number(value, where, positive=positive, minimum=0)


def _url(value, where, schemes=("http", "https")):
    _string(value, where)
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in schemes or "://" not in value:
        raise RuleError(where, "%s must be a %s URL, got %r"
                        % (where, " or ".join(schemes), value[:100]))
    return value


def check_channel(channel, where):
    """
    One notification channel, checked: a copy with its defaults.
    """
    if not isinstance(channel, dict):
        raise RuleError(where, "%s must be an object with a type (%s)"
                        % (where, ", ".join(CHANNEL_TYPES)))
    kind = channel.get("type")
    if kind not in CHANNEL_TYPES:
        raise RuleError(where + ".type", "%s.type must be one of %s, got %r"
                        % (where, ", ".join(CHANNEL_TYPES), kind))
    out = dict(channel)
    if kind == "webhook":
        _url(channel.get("url"), where + ".url")
        headers = channel.get("headers", {})
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise RuleError(where + ".headers", "%s.headers must be an object of strings"
                            % (where,))
        out["timeout"] = _number(channel.get("timeout", 10), where + ".timeout", positive=True)
    elif kind == "email":
        to = channel.get("to")
        if isinstance(to, str):
            to = [a.strip() for a in to.split(",") if a.strip()]
        if not isinstance(to, list) or not to or not all(
                isinstance(a, str) and "@" in a for a in to):
            raise RuleError(where + ".to", "%s.to must be one address or a list of addresses"
                            % (where,))
        if len(to) > MAX_RECIPIENTS:
            raise RuleError(where + ".to", "%s.to has %d addresses, at most %d"
                            % (where, len(to), MAX_RECIPIENTS))
        out["to"] = to
        sender = channel.get("from", "simplestats@localhost")
        if not isinstance(sender, str) or "@" not in sender:
            raise RuleError(where + ".from", "%s.from must be an address" % (where,))
        out["from"] = sender
        out["host"] = _string(channel.get("host", "localhost"), where + ".host", 255)
        port = channel.get("port", 25)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RuleError(where + ".port", "%s.port must be a port number" % (where,))
        for name in ("starttls", "tls"):
            if not isinstance(channel.get(name, False), bool):
                raise RuleError(where + "." + name, "%s.%s must be true or false"
                                % (where, name))
        out["starttls"] = channel.get("starttls", False)
        out["tls"] = channel.get("tls", False)
        for name in ("username", "password"):
            if channel.get(name) is not None:
                _string(channel[name], where + "." + name, 1000)
        if (channel.get("username") is None) != (channel.get("password") is None):
            raise RuleError(where + ".password", "%s needs both username and password, or"
                            " neither" % (where,))
        out["timeout"] = _number(channel.get("timeout", 30), where + ".timeout", positive=True)
    else:
        urls = channel.get("urls", channel.get("url"))
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(
                isinstance(u, str) and "://" in u for u in urls):
            raise RuleError(where + ".url", "%s.url must be an Apprise URL (like"
                            " tgram://TOKEN/CHAT or twilio://SID:TOKEN@FROM/TO) or a list of"
                            " them" % (where,))
        out.pop("url", None)
        out["urls"] = urls
    return out


def _condition(body):
    given = [name for name in CONDITIONS if body.get(name) is not None]
    if len(given) != 1:
        raise RuleError("condition", "a rule needs exactly one condition of %s, got %s"
                        % (", ".join(CONDITIONS), ", ".join(given) or "none"))
    return given[0]


def check_rule(body, tiers, max_terms=None, max_length=None):
    """
    The rule to store from C{body} (a parsed JSON value or TOML table): a
    copy with its defaults and without the members the server sets.

    @param tiers: the store's tiers, finest first (C{resolution} is the
        step of one).
    @raise RuleError: naming the member at fault.
    """
    if not isinstance(body, dict):
        raise RuleError("body", "a rule is a JSON object with name, filter, a condition and"
                        " notify")
    rule = {k: v for k, v in body.items() if k not in SERVER_MEMBERS}
    if "name" not in body:
        raise RuleError("name", "name is required")
    _string(body["name"], "name", MAX_NAME)
    kind = _condition(body)
    rule["condition"] = kind
    if kind == "probe":
        probe = body["probe"]
        if not isinstance(probe, dict):
            raise RuleError("probe", "probe must be an object with http or tcp")
        probe = dict(probe)
        pname = probe.get("name", body["name"])
        if not isinstance(pname, str) or not _PROBE_NAME.match(pname):
            raise RuleError("probe.name", "probe.name (the rule's name by default) must be"
                            " letters, digits, _ or -, got %r" % (pname,))
        probe["name"] = pname
        if (probe.get("http") is None) == (probe.get("tcp") is None):
            raise RuleError("probe", "probe needs one of http (a URL) or tcp (host:port)")
        if probe.get("http") is not None:
            _url(probe["http"], "probe.http")
            status = probe.get("status", 200)
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status < 600:
                raise RuleError("probe.status", "probe.status must be an HTTP status, got %r"
                                % (status,))
            probe["status"] = status
        else:
            target = probe["tcp"]
            host, _, port = target.rpartition(":") if isinstance(target, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise RuleError("probe.tcp", "probe.tcp must be host:port, got %r" % (target,))
        probe["interval"] = _duration(probe.get("interval"), "probe.interval", 30, positive=True)
        if probe["interval"] < 1:
            raise RuleError("probe.interval", "probe.interval must be at least 1 s")
        probe["timeout"] = _duration(probe.get("timeout"), "probe.timeout",
                                     min(10.0, probe["interval"]), positive=True)
        failures = probe.get("failures", 3)
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise RuleError("probe.failures", "probe.failures must be a whole number >= 1")
        probe["failures"] = failures
        rule["probe"] = probe
        rule["filter"] = "probe.%s.up" % (pname,)
        rule["field"] = "last"
    else:
        text = body.get("filter")
        if text is None:
            raise RuleError("filter", "filter is required (the syntax of /api/metrics)")
        _string(text, "filter")
        try:
            compile_filter(text, max_terms, max_length)
        except ParseError as e:
            raise RuleError("filter", "filter: %s" % (e,))
        field = body.get("field", "last")
        if field not in FIELDS:
            raise RuleError("field", "field must be one of %s, got %r" % (", ".join(FIELDS), field))
        rule["field"] = field
    steps = [t.step for t in tiers]
    resolution = body.get("resolution")
    step = steps[0] if resolution is None else _duration(resolution, "resolution")
    if step not in steps:
        raise RuleError("resolution", "resolution must be one of the tier steps %s, got %r"
                        % (", ".join("%ds" % s for s in steps), resolution))
    rule["resolution"] = int(step)
    rule["for"] = _duration(body.get("for"), "for", 0.0)
    rule["repeat"] = _duration(body.get("repeat"), "repeat", 0.0)
    if kind in ("above", "below"):
        threshold = rule[kind] = _number(body[kind], kind)
        if body.get("recover") is not None:
            recover = rule["recover"] = _number(body["recover"], "recover")
            if (kind == "above" and recover > threshold) or (kind == "below" and recover < threshold):
                raise RuleError("recover", "recover must be on the good side of %s %s (it is the"
                                " value that resolves the alert), got %r" % (kind, threshold, recover))
    elif body.get("recover") is not None:
        raise RuleError("recover", "recover applies to above and below only")
    if kind == "stopped":
        stopped = body["stopped"]
        if not isinstance(stopped, dict):
            stopped = {"after": stopped}
        rule["stopped"] = {"after": _duration(stopped.get("after"), "stopped.after",
                                              positive=True)}
        if rule["stopped"]["after"] is None:
            raise RuleError("stopped.after", "stopped.after (seconds) is required")
    if kind == "anomaly":
        anomaly = body["anomaly"]
        if not isinstance(anomaly, dict):
            raise RuleError("anomaly", "anomaly must be an object with method and k")
        method = anomaly.get("method", "ewma")
        if method not in ANOMALY_METHODS:
            raise RuleError("anomaly.method", "anomaly.method must be one of %s, got %r"
                            % (", ".join(ANOMALY_METHODS), method))
        alpha = _number(anomaly.get("alpha", 0.1), "anomaly.alpha", positive=True)
        if alpha >= 1:
            raise RuleError("anomaly.alpha", "anomaly.alpha must be below 1")
        warmup = anomaly.get("warmup", 10)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
            raise RuleError("anomaly.warmup", "anomaly.warmup must be a whole number >= 2")
        retention = tiers[steps.index(step)].retention
        if method == "dayweek" and retention is not None and retention < 8 * 86400:
            raise RuleError("resolution", "anomaly method dayweek reads the previous week: its"
                            " resolution must be a tier kept 8 days or more (%ds keeps %ds)"
                            % (step, retention))
        rule["anomaly"] = {"method": method,
                           "k": _number(anomaly.get("k", 3), "anomaly.k", positive=True),
                           "alpha": alpha, "warmup": warmup}
    notify = body.get("notify", [])
    if not isinstance(notify, list):
        raise RuleError("notify", "notify must be a list of channels")
    if len(notify) > MAX_NOTIFY:
        raise RuleError("notify", "notify has %d channels, at most %d" % (len(notify), MAX_NOTIFY))
    rule["notify"] = [check_channel(c, "notify[%d]" % (n,)) for n, c in enumerate(notify)]
    return rule


def shown(rule):
    """
    C{rule} as listings show it: secrets replaced by L{HIDDEN}.
    """
    out = dict(rule)
    out["notify"] = [{k: (HIDDEN if k in SECRET_MEMBERS and v is not None else v)
                      for k, v in channel.items()} for channel in rule.get("notify", ())]
    return out


def keep_secrets(new, old):
    """
    A rule written back from a listing carries L{HIDDEN}: keep the old secret.
    """
    olds = old.get("notify", ())
    for n, channel in enumerate(new.get("notify", ())):
        for name in SECRET_MEMBERS:
            if channel.get(name) == HIDDEN and n < len(olds):
                channel[name] = olds[n].get(name)
    return new


# -- the literal that every name the filter matches contains ------------------

def required_literal(text):
    """
    A lower-case string that every series name C{text} matches contains
    (the longest such piece of its plain or glob terms), or C{""} when the
    filter has none (a regular expression, tags only, negations only).
    """
    best = ""
    for term in text.split():
        negated = False
        while term.startswith("-") and len(term) > 1:
            negated = not negated
            term = term[1:]
        if negated or term.startswith("/") or ":" in term:
            continue
        pieces = re.split(r"[*?]", term) if ("*" in term or "?" in term) else [term]
        for piece in pieces:
            if len(piece) > len(best):
                best = piece.lower()
    return best


class Rule:
    """
    A checked rule ready to evaluate: its spec, compiled filter and tier.
    """

    __slots__ = ("id", "spec", "predicate", "tier", "step", "field", "kind", "literal",
                 "threshold", "recover", "hold", "repeat")

    def __init__(self, spec, steps):
        self.id = spec["id"]
        self.spec = spec
        self.predicate = compile_filter(spec["filter"])
        self.step = spec["resolution"]
        self.tier = list(steps).index(self.step)
        self.field = spec["field"]
        self.kind = spec["condition"]
        self.literal = required_literal(spec["filter"])
        self.threshold = spec.get(self.kind) if self.kind in ("above", "below") else None
        self.recover = spec.get("recover")
        self.hold = spec.get("for", 0.0)
        self.repeat = spec.get("repeat", 0.0)

    @property
    def name(self):
        return self.spec["name"]

    def matches(self, series):
        """
        Whether C{series} is one of this rule's (its name and tags, and it
        has the field; a stopped rule reads none).
        """
        return self.predicate(series.name, series.tags) and (
            self.kind == "stopped" or has_field(series.family, self.field))
