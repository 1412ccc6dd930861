"""
The alerts' HTTP API (Klein), mounted before the rest of the site for the
paths under C{/api/alerts}:

  - C{POST /api/alerts/rules} a rule -> 201 with its C{id}; a bad rule is a
    400 naming the member (C{"parameter"}); C{GET /api/alerts/rules};
    C{GET}, C{PUT} and C{DELETE /api/alerts/rules/<id>};
  - C{GET /api/alerts} -> C{{"alerts": [{"rule", "rule_id", "series",
    "state", "value", "threshold", "since", "muted", ...}]}}, firing first
    (C{?state=firing,pending}, C{?rule=<id>}, C{?limit=});
  - C{POST /api/alerts/silences} C{{"rule_id", "series" (optional),
    "until" or "for", "comment"}} -> 201; C{GET /api/alerts/silences};
    C{DELETE /api/alerts/silences/<id>};
  - C{GET /api/alerts/history?from=&until=} -> C{{"history": [...]}}.

Reads and writes follow L{server.web.auth}: writes need the API token as an
import does.  A write is answered once the journal has it.
"""

import os

import orjson
from klein import Klein
from twisted.logger import Logger

from server.alerts.rules import RuleError, check_rule, keep_secrets, shown
from server.alerts.rulesfile import with_email_defaults
from server.core.query import QueryError, parse_time
from server.web.errors import ApiError, answer_api_errors, answer_errors_as_json
from server.web.auth import refusal

PREFIX = b"/api/alerts"
MAX_BODY = 256 * 1024
MAX_COMMENT = 1000


def is_alerts_path(path):
    """
    Whether C{path} (bytes, before C{?}) is under C{/api/alerts}.
    """
    return path == PREFIX or path.startswith(PREFIX + b"/")


class AlertsAPI:
    """
    @param engine: the L{server.alerts.engine.AlertEngine}.
    @param email_defaults: the alerts file's C{[email]} table, under every
        email channel of the rules the API takes too.
    """

    app = Klein()
    log = Logger()

    def __init__(self, core, engine, settings, clock, email_defaults=None):
        self.email_defaults = email_defaults or {}
        self.core = core
        self.engine = engine
        self.settings = settings
        self.clock = clock

    # -- helpers -------------------------------------------------------------

    def _json(self, request, body, status=200):
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return orjson.dumps(body)

    def _journaled(self, request, body, status=200):
        """
        Answer once the journal's writer has what was accepted (a 503 when
        the disk refused).
        """
        def refused(failure):
            self.core.counters["simplestats.journal.errors"] += 1
            return self._json(request, {
                "error": "journal write failed (%s): not acknowledged; it may be lost in a"
                         " restart" % (failure.getErrorMessage(),)}, 503)

        return self.core.durable().addCallbacks(
            lambda _: self._json(request, body, status), refused)

    def _check_token(self, request):
        host = getattr(request.getClientAddress(), "host", "")
        refused = refusal(self.settings, request.method, request.path, request.getHeader, host)
        if refused is not None:
            raise ApiError(*refused)

    def _body(self, request):
        content = request.content
        content.seek(0, os.SEEK_END)
        size = content.tell()
        if size > MAX_BODY:
            raise ApiError(413, "the body has %d bytes, more than the limit of %d"
                              % (size, MAX_BODY))
        content.seek(0)
        try:
            return orjson.loads(content.read())
        except orjson.JSONDecodeError as e:
            raise ApiError(400, "the body is not JSON: %s" % (e,), "body")

    def _arg(self, request, name, default=None):
        values = request.args.get(name.encode())
        if not values:
            return default
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "parameter %s is not UTF-8" % (name,), name)

    def _rule(self, rule_id):
        rule = self.engine.rules.get(rule_id)
        if rule is None:
            raise ApiError(404, "no alert rule %r" % (rule_id,), "id")
        return rule

    def _checked(self, request):
        body = with_email_defaults(self._body(request), self.email_defaults)
        try:
            return check_rule(body, self.engine.store.tiers, self.settings.max_filter_terms,
                              self.settings.max_filter_length)
        except RuleError as e:
            self.core.counters["simplestats.alerts.bad_rules"] += 1
            raise ApiError(400, str(e), e.parameter)

    def _shown(self, rule, status=None):
        out = shown(rule.spec)
        out["status"] = self.engine.rule_status(rule.id) if status is None else status
        return out

    def _not_from_file(self, rule):
        if rule.spec.get("source") == "file":
            raise ApiError(409, "rule %r comes from the alerts file (%s): change it there"
                              % (rule.name, self.settings.alerts_file), "id")

    answer_api_errors(app)

    # -- rules ---------------------------------------------------------------

    @app.route("/api/alerts/rules", methods=["POST"])
    def post_rule(self, request):
        self._check_token(request)
        spec = self._checked(request)
        if len(self.engine.rules) >= self.settings.alerts_max_rules:
            raise ApiError(409, "%d alert rules are saved, the limit (--alerts-max-rules):"
                              " delete one first" % (len(self.engine.rules),))
        now = self.clock.seconds()
        spec.update(id=self.engine.fresh_id(self.engine.rules), created=now, updated=now,
                    source="api")
        rule = self.engine.put_rule(spec)
        request.setHeader(b"Location", b"/api/alerts/rules/" + rule.id.encode())
        return self._journaled(request, self._shown(rule), 201)

    @app.route("/api/alerts/rules", methods=["GET"])
    def list_rules(self, request):
        self._check_token(request)
        rules = sorted(self.engine.rules.values(), key=lambda r: (r.name.lower(), r.id))
        statuses = self.engine.rule_statuses()
        return self._json(request, {"rules": [self._shown(r, statuses[r.id]) for r in rules],
                                    "count": len(rules)})

    @app.route("/api/alerts/rules/<rule_id>", methods=["GET"])
    def get_rule(self, request, rule_id):
        self._check_token(request)
        return self._json(request, self._shown(self._rule(rule_id)))

    @app.route("/api/alerts/rules/<rule_id>", methods=["PUT"])
    def put_rule(self, request, rule_id):
        self._check_token(request)
        old = self._rule(rule_id)
        self._not_from_file(old)
        spec = keep_secrets(self._checked(request), old.spec)
        spec.update(id=rule_id, created=old.spec.get("created"), updated=self.clock.seconds(),
                    source="api")
        rule = self.engine.put_rule(spec)
        return self._journaled(request, self._shown(rule))

    @app.route("/api/alerts/rules/<rule_id>", methods=["DELETE"])
    def delete_rule(self, request, rule_id):
        self._check_token(request)
        self._not_from_file(self._rule(rule_id))
        self.engine.delete_rule(rule_id)
        return self._journaled(request, {"deleted": rule_id})

    # -- alerts and history -------------------------------------------------------

    @app.route("/api/alerts", methods=["GET"])
    def alerts(self, request):
        self._check_token(request)
        states = self._arg(request, "state")
        states = set(states.replace(",", " ").split()) if states else None
        limit = self._arg(request, "limit", "10000")
        if not limit.isdigit() or int(limit) < 1:
            raise ApiError(400, "limit must be a whole number >= 1, got %r" % (limit,),
                              "limit")
        rows, counts = self.engine.alerts(states, int(limit), self._arg(request, "rule"))
        return self._json(request, {"alerts": rows, "count": sum(counts.values()),
                                    "firing": counts.get("firing", 0),
                                    "pending": counts.get("pending", 0)})

    @app.route("/api/alerts/history", methods=["GET"])
    def history(self, request):
        self._check_token(request)
        now = self.clock.seconds()
        start = parse_time("from", self._arg(request, "from", "-24h"), now)
        until = parse_time("until", self._arg(request, "until", "now"), now)
        if until < start:
            raise ApiError(400, "until is before from", "until")
        rows = self.engine.between(start, until)
        return self._json(request, {"history": rows, "count": len(rows), "from": start,
                                    "until": until})

    # -- silences ------------------------------------------------------------------

    @app.route("/api/alerts/silences", methods=["POST"])
    def post_silence(self, request):
        self._check_token(request)
        body = self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "a silence is a JSON object with rule_id, until or for,"
                              " and optionally series and comment", "body")
        now = self.clock.seconds()
        rule_id = body.get("rule_id")
        if rule_id is None and isinstance(body.get("rule"), str):
            named = [r.id for r in self.engine.rules.values() if r.name == body["rule"]]
            if len(named) == 1:
                rule_id = named[0]
        if not isinstance(rule_id, str) or rule_id not in self.engine.rules:
            raise ApiError(400, "rule_id must name an alert rule, got %r" % (rule_id,),
                              "rule_id")
        series = body.get("series")
        if series is not None and (not isinstance(series, str) or not series):
            raise ApiError(400, "series must be a series key (or absent: the whole rule)",
                              "series")
        until = self._until(body, now)
        comment = body.get("comment", "")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            raise ApiError(400, "comment must be a string of at most %d characters"
                              % (MAX_COMMENT,), "comment")
        silence = {"id": self.engine.fresh_id(self.engine.silences), "rule_id": rule_id,
                   "rule": self.engine.rules[rule_id].name, "series": series, "until": until,
                   "comment": comment, "created": now}
        self.engine.put_silence(silence)
        self.core.counters["simplestats.alerts.silences"] += 1
        return self._journaled(request, silence, 201)

    def _until(self, body, now):
        if body.get("until") is not None:
            value = body["until"]
            if isinstance(value, str):
                text = value.strip()
                if text.startswith("+"):
                    text = "-" + text[1:]
                    value = 2 * now - parse_time("until", text, now)
                else:
                    value = parse_time("until", text, now)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ApiError(400, "until must be seconds since the epoch or like +2h",
                                  "until")
        elif body.get("for") is not None:
            duration = body["for"]
            try:
                seconds = parse_time("for", "-" + duration, 0) * -1 if isinstance(
                    duration, str) else float(duration)
            except (QueryError, TypeError, ValueError):
                seconds = float("nan")
            if isinstance(duration, bool) or not seconds > 0:
                raise ApiError(400, "for must be a duration such as 3600 or 2h, got %r"
                                  % (duration,), "for")
            value = now + seconds
        else:
            raise ApiError(400, "a silence needs until (a time) or for (a duration)", "until")
        if value <= now:
            raise ApiError(400, "until is in the past", "until")
        return float(value)

    @app.route("/api/alerts/silences", methods=["GET"])
    def list_silences(self, request):
        self._check_token(request)
        now = self.clock.seconds()
        rows = sorted((dict(s, active=s["until"] > now) for s in self.engine.silences.values()),
                      key=lambda s: s["until"])
        return self._json(request, {"silences": rows, "count": len(rows)})

    @app.route("/api/alerts/silences/<silence_id>", methods=["DELETE"])
    def delete_silence(self, request, silence_id):
        self._check_token(request)
        if not self.engine.delete_silence(silence_id):
            raise ApiError(404, "no silence %r" % (silence_id,), "id")
        return self._journaled(request, {"deleted": silence_id})

    answer_errors_as_json(app)
