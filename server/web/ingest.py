"""
HTTP ingest on the web port, at the root as the clients expect it:

  - nsqd's publishing API, for what posted NSQ-style JSON
    (L{server.receivers.parse_nsq}): C{POST /put?topic=T} (one message),
    C{POST /mput?topic=T} (one per line, all or nothing, as a TCP batch),
    C{/pub} and C{/mpub} as nsqd 1.x names them, C{GET /ping}.  Answered
    as nsqd does: C{OK} as text; a refusal is a 400 with JSON naming the
    message (by number) and the field.
  - DaTtSs v2 partials (L{server.receivers.parse_dattss}): C{PUT /agg?auth=KEY},
    answered C{{"ok": true}} as DaTtSs' server did.  A partial that is
    refused does not take the others with it: they are applied and the
    answer is 200 C{{"ok": false, "accepted": n, "refused": [...]}}; 400 only
    when nothing was applied.  DaTtSs' client never reads the answer nor
    retries (it logs the status at most), so no status costs it data; a
    client that does retry on an error status must not send again what was
    applied, which a 4xx for a half-applied body would invite.

Writes follow the rule of every write (L{server.web.auth}): the API token
when one is set (for C{/agg} also as its C{auth} parameter), else loopback
clients only; the site checks it on the headers and caps the body at
C{--max-ingest-bytes}.  What is accepted is journaled before the answer,
and counted in C{simplestats.nsq.*} and C{simplestats.dattss.*}.  While
start-up recovers the data directory these calls answer 503.
"""

import json

from klein import Klein
from twisted.logger import Logger

from server.core.logutil import BoundedLog
from server.core.model import ParseError
from server.receivers.parse_dattss import KINDS, parse_agg
from server.receivers.parse_nsq import BadMessage, check_topic, parse_body
from server.web.auth import refusal
from server.web.errors import answer_errors_as_json

NSQ_SINGLE = (b"/put", b"/pub")
NSQ_MULTIPLE = (b"/mput", b"/mpub")
INGEST_PATHS = NSQ_SINGLE + NSQ_MULTIPLE + (b"/ping", b"/agg")
# Bad messages listed in one answer (all are counted).
MAX_REPORTED = 20


class IngestError(Exception):
    """
    A call refused as a whole: C{status} and the JSON C{body}.
    """

    def __init__(self, status, body):
        Exception.__init__(self, body.get("error"))
        self.status = status
        self.body = body


class HttpIngest:
    """
    @param core: the L{server.core.ingest.IngestCore}.
    @param recovery: while it holds ingest, the calls answer 503.
    """

    app = Klein()
    log = Logger()

    def __init__(self, core, settings, clock, recovery=None):
        self.core = core
        self.settings = settings
        self.clock = clock
        self.recovery = recovery
        self.bad_log = BoundedLog(self.log, clock)

    # -- routes ----------------------------------------------------------------

    @app.route("/ping", methods=["GET", "HEAD"])
    def ping(self, request):
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        if self._recovering():
            # nsqd answers its probe with an error while it cannot publish.
            request.setResponseCode(503)
            request.setHeader(b"Retry-After", b"1")
            return b"recovering: the server is loading its data directory"
        return b"OK"

    @app.route("/put", methods=["POST", "PUT"])
    def put(self, request):
        return self._nsq(request, multiple=False)

    @app.route("/pub", methods=["POST", "PUT"])
    def pub(self, request):
        return self._nsq(request, multiple=False)

    @app.route("/mput", methods=["POST", "PUT"])
    def mput(self, request):
        return self._nsq(request, multiple=True)

    @app.route("/mpub", methods=["POST", "PUT"])
    def mpub(self, request):
        return self._nsq(request, multiple=True)

    @app.route("/agg", methods=["PUT", "POST"])
    def agg(self, request):
        body = self._body(request, "dattss")
        try:
            taken, refused = parse_agg(body, self.settings.limits)
        except ParseError as e:
            self._bad("dattss", request, str(e))
            raise IngestError(400, {"ok": False, "error": str(e)})
        if refused:
            first = refused[0]
            self._bad("dattss", request, "%d partial(s) refused; the first, %s[%d]: %s"
                      % (len(refused), first.kind, first.index, first.error), len(refused))
        refused = [{"kind": r.kind, "index": r.index, "error": r.error} for r in refused]
        errors = self.core.submit([partial for _, _, partial in taken], "dattss")
        for position, message in errors:
            kind, index, _ = taken[position]
            refused.append({"kind": kind, "index": index, "error": message})
        accepted = len(taken) - len(errors)
        if not refused:
            answer = (200, {"ok": True})
        else:
            order = {kind: n for n, kind in enumerate(KINDS)}
            refused.sort(key=lambda r: (order[r["kind"]], r["index"]))
            answer = (200 if accepted else 400,
                      {"ok": False, "accepted": accepted, "refused": refused})
        return self._when_journaled(request, accepted, *answer)

    @app.handle_errors(IngestError)
    def _refused(self, request, failure):
        e = failure.value
        self.core.counters["simplestats.http.errors"] += 1
        if e.status == 503:
            request.setHeader(b"Retry-After", b"1")
        return self._json(request, e.status, e.body)

    # -- helpers -------------------------------------------------------------

    def _nsq(self, request, multiple):
        body = self._body(request, "nsq")
        try:
            values = request.args.get(b"topic") or [b""]
            check_topic(values[0].decode("utf-8", "replace"))
            if request.args.get(b"binary", [b"false"])[0] not in (b"false", b"0"):
                raise ParseError("binary=true is not taken: messages are JSON, one per line")
            samples, bad = parse_body(body, self.settings.limits, multiple)
        except ParseError as e:
            self._bad("nsq", request, str(e))
            raise IngestError(400, {"error": str(e)})
        total = len(samples) + len(bad)
        if not bad:
            # The core's refusals (it counts them): a time out of range, the
            # series limit, a series of another type.
            errors = self.core.submit(samples, "nsq", atomic=True)
            bad = [BadMessage(position + 1,
                              "time" if message.startswith("timestamp") else "metric", message)
                   for position, message in errors]
        else:
            self.core.counters["simplestats.nsq.bad"] += len(bad)
        if bad:
            first = bad[0].text()
            self.bad_log.warn("NSQ body from {peer} refused: {count} bad message(s), the"
                              " first: {first}", peer=_peer(request), count=len(bad), first=first)
            error = first if len(bad) == 1 else "%d bad messages; the first: %s" % (len(bad),
                                                                                  first)
            if total > 1:
                error += "; nothing was taken"
            raise IngestError(400, {
                "error": error,
                "bad_messages": [{"message": b.number, "field": b.field, "error": b.reason}
                                 for b in bad[:MAX_REPORTED]],
                "bad_message_count": len(bad)})
        return self._when_journaled(request, len(samples), 200, b"OK")

    def _body(self, request, transport):
        """
        The request's body, once the call may go on (authorized, not
        recovering, within the size cap).
        """
        host = getattr(request.getClientAddress(), "host", "")
        query = request.uri.partition(b"?")[2]
        refused = refusal(self.settings, request.method, request.path, request.getHeader, host,
                          query)
        if refused is not None:
            raise IngestError(refused[0], {"error": refused[1]})
        if self._recovering():
            raise IngestError(503, {"error": "recovering: the server is loading its data"
                                             " directory; try again when /ping says OK"})
        content = request.content
        content.seek(0)
        body = content.read(self.settings.max_ingest_bytes + 1)
        if len(body) > self.settings.max_ingest_bytes:
            self.core.counters["simplestats.%s.bad" % (transport,)] += 1
            raise IngestError(413, {"error": "a body larger than %d bytes (--max-ingest-bytes)"
                                             % (self.settings.max_ingest_bytes,)})
        return body

    def _bad(self, transport, request, reason, count=1):
        self.core.counters["simplestats.%s.bad" % (transport,)] += count
        self.bad_log.warn("bad {transport} body from {peer}: {reason}", transport=transport,
                          peer=_peer(request), reason=reason)

    def _recovering(self):
        return self.recovery is not None and self.recovery.holding

    def _when_journaled(self, request, accepted, status, body):
        """
        Answer C{body} once what was accepted is in the journal, or 503 when
        the disk refused it.
        """
        if not accepted:
            return self._answer(request, status, body)

        def refused(failure):
            self.core.counters["simplestats.journal.errors"] += 1
            return self._json(request, 503, {
                "error": "journal write failed (%s): not acknowledged; it may be lost in a"
                         " restart" % (failure.getErrorMessage(),)})

        d = self.core.durable()
        return d.addCallbacks(lambda _: self._answer(request, status, body), refused)

    def _answer(self, request, status, body):
        if isinstance(body, bytes):
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return body
        return self._json(request, status, body)

    def _json(self, request, status, body):
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(body).encode()

    answer_errors_as_json(app)


def is_ingest_path(path):
    """
    Whether C{path} (bytes, before C{?}) is one of L{HttpIngest}'s.
    """
    return path in INGEST_PATHS


def _peer(request):
    address = request.getClientAddress()
    return "%s:%s" % (getattr(address, "host", "?"), getattr(address, "port", "?"))
