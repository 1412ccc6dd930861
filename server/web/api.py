"""
The JSON API and the dashboard's static files (Klein, port 8080).

Handlers are synchronous except the export, which streams.  Every error is
JSON naming what was wrong, with a status that fits.
"""

import hmac
import os

import orjson
from klein import Klein
from twisted.logger import Logger
from twisted.web.static import File

from server import transfer
from server.filters import compile_filter
from server.model import TYPE_NAMES, ParseError, normalize_tags, series_key
from server.query import (QueryError, choose_tier, day_week, fields_for, parse_resolution,
                          parse_time, series_points)
from server.web.imports import ImportBusy, Importer

TOKEN_HEADER = b"X-SimpleStats-Token"


class ApiError(Exception):
    def __init__(self, status, message, parameter=None):
        Exception.__init__(self, message)
        self.status = status
        self.parameter = parameter


class WebAPI:
    """
    @param core: the L{server.ingest.IngestCore} (imports go through it).
    @param snapshotter: for the snapshot status in C{/api/health} (and held
        while an import is applied).
    """

    app = Klein()
    log = Logger()

    def __init__(self, core, settings, clock, snapshotter=None, lag=None):
        self.core = core
        self.store = core.store
        self.settings = settings
        self.clock = clock
        self.snapshotter = snapshotter
        self.lag = lag
        self.imports = Importer(core, settings, clock, snapshotter)

    # -- helpers -------------------------------------------------------------

    def _json(self, request, body, status=200):
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        # orjson: a week of 1-minute points encodes ten times faster than
        # with json (NaN and infinities, never sent, would become null).
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)

    def _arg(self, request, name, default=None):
        values = request.args.get(name.encode())
        if not values:
            return default
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "parameter %s is not UTF-8" % (name,), name)

    def _settled_now(self):
        """
        The time of a read over many series, once every pending run is
        folded (a read of one series folds just its own).
        """
        self.store.settle()
        return self.clock.seconds()

    def _filter(self, request):
        """
        The C{filter} parameter compiled (blank matches everything).
        """
        try:
            return compile_filter(self._arg(request, "filter", ""))
        except ParseError as e:
            raise ApiError(400, "bad filter: %s" % (e,), "filter")

    def _series(self, request):
        key = self._arg(request, "key")
        if key is None:
            name = self._arg(request, "name")
            if not name:
                raise ApiError(400, "name (or key) is required", "name")
            tags = self._arg(request, "tags", "")
            pairs = []
            for part in filter(None, (p.strip() for p in tags.split(","))):
                k, sep, v = part.partition(":")
                if not sep or not k:
                    raise ApiError(400, "tags must be key:value pairs separated by commas, got %r"
                                   % (part,), "tags")
                pairs.append((k, v))
            key = series_key(name, normalize_tags(pairs))
        series = self.store.series.get(key)
        if series is None:
            raise ApiError(404, "no series %r" % (key,), "key")
        return series

    def _range(self, request, now, default_from="-1h"):
        start = parse_time("from", self._arg(request, "from", default_from), now)
        until = parse_time("until", self._arg(request, "until", "now"), now)
        if until < start:
            raise ApiError(400, "until is before from", "until")
        return start, until

    def _check_token(self, request):
        """
        Writes need the token when one is set; without one they are only
        taken from loopback clients.
        """
        token = self.settings.api_token
        given = request.getHeader(TOKEN_HEADER) or b""
        if token:
            if not given:
                raise ApiError(401, "this call needs the API token in the X-SimpleStats-Token header")
            if not hmac.compare_digest(given, token.encode()):
                raise ApiError(403, "wrong API token")
            return
        host = getattr(request.getClientAddress(), "host", "")
        if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
            raise ApiError(403, "writes from %s need an API token (set --api-token)" % (host,))

    @app.handle_errors(ApiError)
    def _api_error(self, request, failure):
        e = failure.value
        body = {"error": str(e)}
        if e.parameter:
            body["parameter"] = e.parameter
        self.core.counters["simplestats.http.errors"] += 1
        return self._json(request, body, e.status)

    @app.handle_errors(QueryError)
    def _query_error(self, request, failure):
        e = failure.value
        self.core.counters["simplestats.http.errors"] += 1
        return self._json(request, {"error": str(e), "parameter": e.parameter}, 400)

    # -- routes ----------------------------------------------------------------

    @app.route("/api/health", methods=["GET"])
    def health(self, request):
        # Counts only: pending runs never add a series, so nothing to fold.
        now = self.clock.seconds()
        snapshot = self.snapshotter.status if self.snapshotter else None
        status = "ok"
        if snapshot and snapshot.get("error"):
            status = "degraded"
        return self._json(request, {
            "status": status,
            "uptime": now - self.core.started,
            "series": len(self.store.series),
            "now": now,
            "tiers": [{"step": t.step, "retention": t.retention} for t in self.store.tiers],
            "snapshot": snapshot,
            "journal_pending_bytes": self.core.journal.pending_bytes,
            # Since the start, never reset: what a load test counts back.
            "received": {"udp_lines": self.core.received["udp"]},
            # How long the reactor was held (server.lag): what a benchmark
            # reads back for the time of one heavy operation.
            "reactor": self.lag.status(now) if self.lag else None,
            # The import under way: phase "checking" then "applying".
            "imports": self.imports.status(),
        })

    @app.route("/api/metrics", methods=["GET"])
    def metrics(self, request):
        now = self._settled_now()
        matches = self._filter(request)
        limit = self._arg(request, "limit")
        try:
            limit = None if limit is None else int(limit)
        except ValueError:
            raise ApiError(400, "limit must be a whole number, got %r" % (limit,), "limit")
        store = self.store
        found = [s for s in store.series.values() if matches(s.name, s.tags)]
        found.sort(key=lambda s: s.key)
        matched = len(found)
        if limit is not None:
            found = found[:max(0, limit)]
        rows = []
        for s in found:
            rows.append({
                "key": s.key,
                "name": s.name,
                "tags": dict(s.tags),
                "type": TYPE_NAMES[s.type],
                "value": _finite(s.value),
                "avg_1m": _finite(store.moving_average(s, now)),
                "last_seen": _finite(s.last_seen),
            })
        return self._json(request, {"metrics": rows, "count": len(rows), "matched": matched,
                                    "total": len(store.series)})

    @app.route("/api/series", methods=["GET"])
    def series(self, request):
        # One series: the query folds its own pending run (query._pending).
        now = self.clock.seconds()
        series = self._series(request)
        start, until = self._range(request, now)
        tier = parse_resolution(self.store, self._arg(request, "resolution"))
        tier = choose_tier(self.store, start, until, now, tier, self.settings.max_points)
        requested = [f for f in (self._arg(request, "fields", "") or "").split(",") if f]
        fields = fields_for(series, requested)
        points = series_points(self.store, series, fields, start, until, tier, now)
        return self._json(request, {
            "key": series.key, "name": series.name, "tags": dict(series.tags),
            "type": TYPE_NAMES[series.type], "resolution": self.store.tiers[tier].step,
            "from": start, "until": until, "fields": points,
        })

    @app.route("/api/series", methods=["DELETE"])
    def delete_series(self, request):
        self._check_token(request)
        key = self._arg(request, "key")
        text = self._arg(request, "filter")
        if key is not None:
            keys = [key] if key in self.store.series else []
            if not keys:
                raise ApiError(404, "no series %r" % (key,), "key")
        elif text:
            matches = self._filter(request)
            keys = [s.key for s in self.store.series.values() if matches(s.name, s.tags)]
        else:
            raise ApiError(400, "give key=... or a non-empty filter=...", "key")
        deleted = self.core.delete(keys)
        self.core.durable()
        return self._json(request, {"deleted": len(deleted), "keys": deleted})

    @app.route("/api/dayweek", methods=["GET"])
    def dayweek(self, request):
        now = self.clock.seconds()
        series = self._series(request)
        field = self._arg(request, "field")
        fields = fields_for(series, [field] if field else [])
        offset = self._arg(request, "tz_offset", "0")
        try:
            offset = int(offset)
            if not -1440 < offset < 1440:
                raise ValueError
        except ValueError:
            raise ApiError(400, "tz_offset must be minutes east of UTC (-1439..1439), got %r"
                           % (offset,), "tz_offset")
        tier = parse_resolution(self.store, self._arg(request, "resolution"))
        if tier is None:
            week_ago = now - 8 * 86400
            tier = next((i for i, t in enumerate(self.store.tiers)
                         if t.retention is None or t.retention >= now - week_ago),
                        len(self.store.tiers) - 1)
        if 86400 % self.store.tiers[tier].step:
            raise ApiError(400, "resolution must divide a day", "resolution")
        result = day_week(self.store, series, fields[0], tier, now, offset)
        result.update(key=series.key, type=TYPE_NAMES[series.type])
        return self._json(request, result)

    @app.route("/api/export", methods=["GET"])
    def export(self, request):
        now = self._settled_now()
        matches = self._filter(request)
        start, until = self._range(request, now, default_from="0")
        fmt = self._arg(request, "format", "ndjson")
        if fmt not in transfer.EXPORT_FORMATS:
            raise ApiError(400, "format must be one of %s, got %r"
                           % (", ".join(transfer.EXPORT_FORMATS), fmt), "format")
        content_type, extension = transfer.EXPORT_FORMATS[fmt]
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Disposition",
                          b'attachment; filename="simplestats-export.%s"' % (extension,))
        keys = sorted(s.key for s in self.store.series.values() if matches(s.name, dict(s.tags)))
        chunks = transfer.export_chunks(self.store, keys, start, until, now, fmt)
        self.core.counters["simplestats.http.exports"] += 1
        return transfer.stream(request, chunks, self.clock)

    @app.route("/api/import", methods=["POST"])
    def import_(self, request):
        self._check_token(request)
        fmt = self._arg(request, "format", "auto")
        if fmt not in transfer.IMPORT_FORMATS:
            raise ApiError(400, "format must be one of %s, got %r"
                           % (", ".join(transfer.IMPORT_FORMATS), fmt), "format")
        content = request.content
        content.seek(0, os.SEEK_END)
        size = content.tell()
        if size > self.settings.max_upload_bytes:
            raise ApiError(413, "upload larger than %d bytes" % (self.settings.max_upload_bytes,))
        # The body is read from Twisted's spool file and checked, then
        # applied, in reactor slices (server.web.imports): never whole.
        try:
            d = self.imports.start(content, size, fmt)
        except ImportBusy as e:
            running = e.args[0]
            raise ApiError(409, "an import is already under way (%s, %s of %s bytes read);"
                           " try again when it has finished"
                           % (running["phase"], running["bytes"], running["total_bytes"]))
        return d.addCallback(lambda answer: self._json(request, answer[1], answer[0]))

    @app.route("/", branch=True)
    def static(self, request):
        return File(os.path.abspath(self.settings.web_root))


def _finite(value):
    # NaN and infinities are not JSON.
    if value is None or value - value == 0.0:
        return value
    return None
