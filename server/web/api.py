"""
The JSON API and the dashboard's static files (Klein, port 8080).

Handlers are synchronous except the export, which streams, and those that
match a filter over every series (metric list, export, delete), which do it
a slice per reactor turn (L{server.core.filters.run_in_slices}).  Every error is
JSON naming what was wrong, with a status that fits.
"""

import math
import os
import sys
from operator import attrgetter

import orjson
from klein import Klein
from twisted.logger import Logger
from twisted.web.static import File

from server.web import transfer
from server.core.filters import (SLICE_SECONDS, compile_filter, merge_runs, run_in_slices, select,
                            sorted_runs)
from server.core.model import TYPE_NAMES, ParseError, normalize_tags, series_key
from server.core.query import (QueryError, choose_tier, day_week, fields_for, parse_resolution,
                          parse_time, series_points)
from server.web.auth import refusal
from server.web.imports import ImportBusy, Importer
from server.web.prometheus import Exposition

_KEY = attrgetter("key")


class ApiError(Exception):
    def __init__(self, status, message, parameter=None):
        Exception.__init__(self, message)
        self.status = status
        self.parameter = parameter


class WebAPI:
    """
    @param core: the L{server.core.ingest.IngestCore} (imports go through it).
    @param snapshotter: for the snapshot status in C{/api/health} (and held
        while an import is applied).
    """

    app = Klein()
    log = Logger()

    def __init__(self, core, settings, clock, snapshotter=None, lag=None, recovery=None,
                 slice_seconds=SLICE_SECONDS):
        self.core = core
        self.recovery = recovery
        self.store = core.store
        self.settings = settings
        self.clock = clock
        self.snapshotter = snapshotter
        self.lag = lag
        # Work over every series goes on for this long per reactor turn.
        self.slice_seconds = slice_seconds
        self.imports = Importer(core, settings, clock, snapshotter)
        self.exposition = Exposition(core, clock, slice_seconds)

    # -- helpers -------------------------------------------------------------

    def _json(self, request, body, status=200):
        self._json_headers(request, status)
        # orjson: a week of 1-minute points encodes ten times faster than
        # with json (NaN and infinities, never sent, would become null).
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)

    def _when_journaled(self, request, body):
        """
        Answer C{body} once the journal's writer has written what was
        accepted, or 503 when the disk refused.
        """
        def refused(failure):
            self.core.counters["simplestats.journal.errors"] += 1
            return self._json(request, {
                "error": "journal write failed (%s): not acknowledged; it may be lost in a"
                         " restart" % (failure.getErrorMessage(),)}, 503)

        d = self.core.durable()
        return d.addCallbacks(lambda _: self._json(request, body), refused)

    def _write_journal(self):
        """
        Start the journal's write of what was accepted so far; a failure is
        counted and logged (the records stay queued for the next write).
        """
        def failed(failure):
            self.core.counters["simplestats.journal.errors"] += 1
            self.log.warn("journal write failed: {error}", error=failure.getErrorMessage())

        self.core.durable().addErrback(failed)

    def _json_headers(self, request, status=200):
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")

    def _arg(self, request, name, default=None):
        values = request.args.get(name.encode())
        if not values:
            return default
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "parameter %s is not UTF-8" % (name,), name)

    def _settling(self, every=256):
        """
        Fold every pending run, a slice at a time (for L{_sliced}), and
        return the time: a read over many series starts with it (a read of
        one series folds just its own).

        Not C{store.settle(deadline)}: that visits every series with a run
        (all of them after a burst), pending or not, from the start at each
        call, and looks at its deadline only after folds: 500k runs, none
        pending, are one pass of 50-300 ms.  Runs started meanwhile are
        newer than the request.
        """
        fold = self.store.fold_series
        running = list(self.store.running)
        for start in range(0, len(running), every):
            for series in running[start:start + every]:
                fold(series)
            yield
        return self.clock.seconds()

    def _sliced(self, work):
        """
        Run the generator C{work} a slice per reactor turn; a L{Deferred}
        of what it returns (Klein cancels it when the client goes away).
        """
        return run_in_slices(self.clock, work, self.slice_seconds)

    def _filter(self, request):
        """
        The C{filter} parameter compiled (blank matches everything).
        """
        try:
            return compile_filter(self._arg(request, "filter", ""),
                                  self.settings.max_filter_terms, self.settings.max_filter_length)
        except ParseError as e:
            self.core.counters["simplestats.http.bad_filter"] += 1
            raise ApiError(400, "bad filter: %s" % (e,), "filter")

    def _matching(self, matches, settle=True):
        """
        C{(now, the series that match)}, a slice at a time (for
        L{_sliced}), from a copy of the series list taken in the first
        slice: the store may change between slices.  With C{settle}, the
        pending runs are folded first (L{_settling}).
        """
        candidates = list(self.store.series.values())
        now = (yield from self._settling()) if settle else self.clock.seconds()
        found = yield from select(candidates, lambda s: matches(s.name, s.tags))
        return now, found

    def _alive(self, series):
        # Not deleted since it was matched (nor deleted and made anew).
        return self.store.series.get(series.key) is series

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
                raise ApiError(404, self._no_such_series(name, pairs), "tags" if pairs else "name")
            return series
        series = self.store.series.get(key)
        if series is None:
            raise ApiError(404, "no series %r" % (key,), "key")
        return series

    def _no_such_series(self, name, pairs):
        """
        The 404 message for name + tags: the tag sets this name has (those
        that contain the tags asked first), so a subset of tags is answered
        with what to ask for.
        """
        prefix = name + ";"
        keys = self.store.series
        found = [k for k in keys if k.startswith(prefix)]
        if name in keys:
            found.append(name)
        if not found:
            return "no series named %r" % (name,)
        wanted = {series_key("", normalize_tags([p])) for p in pairs}

        def tag_set(k):
            return k[len(name):].lstrip(";").replace(";", ",").replace("=", ":")

        found.sort(key=lambda k: (not all(w + ";" in k + ";" for w in wanted), k))
        shown = ", ".join(repr(tag_set(k)) for k in found[:20])
        more = " and %d more" % (len(found) - 20,) if len(found) > 20 else ""
        return ("no series %r with exactly those tags; give every tag of one series. Tag sets of "
                "this name: %s%s" % (name, shown, more))

    def _range(self, request, now, default_from="-1h"):
        start = parse_time("from", self._arg(request, "from", default_from), now)
        until = parse_time("until", self._arg(request, "until", "now"), now)
        if until < start:
            raise ApiError(400, "until is before from", "until")
        return start, until

    def _check_token(self, request):
        """
        Writes need the token when one is set (without one they are only
        taken from loopback clients), and reads do when reads need it: the
        rule of server.web.auth, which the site checks on the headers too.
        """
        host = getattr(request.getClientAddress(), "host", "")
        refused = refusal(self.settings, request.method, request.path, request.getHeader, host)
        if refused is not None:
            raise ApiError(*refused)

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
        recovery = self.recovery
        if recovery is not None and recovery.error is not None:
            status = "failed"
        elif recovery is not None and recovery.holding:
            status = "recovering"
        elif snapshot and snapshot.get("error"):
            status = "degraded"
        return self._json(request, {
            "status": status,
            # Start-up's progress (server.durability.recovery), then what it did.
            "recovery": recovery.status() if recovery is not None else None,
            "uptime": now - self.core.started,
            "series": len(self.store.series),
            "now": now,
            "tiers": [{"step": t.step, "retention": t.retention} for t in self.store.tiers],
            "snapshot": snapshot,
            "journal_pending_bytes": self.core.journal.unwritten_bytes,
            # Since the start, never reset: what a load test counts back.
            "received": {"udp_lines": self.core.received["udp"]},
            # Open now (the gauges the TCP factory and the site keep current).
            "connections": {
                "tcp": int(self.core.gauges.get("simplestats.tcp.open_connections", 0)),
                "http": int(self.core.gauges.get("simplestats.http.open_connections", 0))},
            # How long the reactor was held (server.lag): what a benchmark
            # reads back for the time of one heavy operation.
            "reactor": self.lag.status(now) if self.lag else None,
            # The import under way: phase "checking" then "applying".
            "imports": self.imports.status(),
        })

    @app.route("/api/metrics", methods=["GET"])
    def metrics(self, request):
        self._check_token(request)
        matches = self._filter(request)
        limit = self._arg(request, "limit")
        try:
            limit = None if limit is None else int(limit)
            if limit is not None and limit < 0:
                raise ValueError
            if limit is not None and limit > sys.maxsize:
                limit = None  # more than there can ever be

        except ValueError:
            raise ApiError(400, "limit must be a whole number, 0 or more, got %r" % (limit,),
                           "limit")
        return self._sliced(self._metrics(request, matches, limit))

    def _metrics(self, request, matches, limit, rows_per_slice=256):
        store = self.store
        now, found = yield from self._matching(matches)
        runs, matched = yield from sorted_runs(found, _KEY, self._alive, limit)
        found = yield from merge_runs(runs, _KEY, limit)
        # The rows of 500k series are seconds of work and 100 MB of JSON:
        # encoded and written a slice at a time.
        self._json_headers(request)
        opening = b'{"metrics":['
        for start in range(0, len(found), rows_per_slice):
            rows = []
            for s in found[start:start + rows_per_slice]:
                rows.append({
                    "key": s.key,
                    "name": s.name,
                    "tags": dict(s.tags),
                    "type": TYPE_NAMES[s.type],
                    "value": _finite(store.current_value(s, now)),
                    "avg_1m": _finite(store.moving_average(s, now)),
                    "last_seen": _finite(s.last_seen),
                })
            request.write(opening + orjson.dumps(rows)[1:-1])
            opening = b","
            yield
        tail = orjson.dumps({"count": len(found), "matched": matched, "total": len(store.series)})
        return (b"" if opening == b"," else opening) + b"]," + tail[1:]

    @app.route("/metrics", methods=["GET"])
    def prometheus(self, request):
        # Prometheus' text format (server.web.prometheus); reads as the rest.
        self._check_token(request)
        return self.exposition.scrape(request, self._filter(request))

    @app.route("/api/series", methods=["GET"])
    def series(self, request):
        self._check_token(request)
        # One series: the query folds its own pending run (query._pending).
        now = self.clock.seconds()
        series = self._series(request)
        start, until = self._range(request, now)
        if self._arg(request, "until") is None:
            # The default reaches accepted points stamped in the future.
            self.store.fold_series(series)
            until = max(until, series.last_seen)
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
            return self._sliced(self._delete_matching(request, self._filter(request)))
        else:
            raise ApiError(400, "give key=... or a non-empty filter=...", "key")
        deleted = self.core.delete(keys)
        return self._when_journaled(request, {"deleted": len(deleted), "keys": deleted})

    def _delete_matching(self, request, matches, per_slice=1024):
        _, found = yield from self._matching(matches, settle=False)
        # Deleting 500k series takes seconds too: per slice a store.delete
        # each and one journal record, written in that slice (the records
        # of 100k keys written at the end held the reactor 170-500 ms).  A
        # client gone midway stops it; what was deleted is in the journal.
        deleted = []
        try:
            for start in range(0, len(found), per_slice):
                chunk = found[start:start + per_slice]
                # The last references: the series are freed in this slice,
                # not all at once when the work ends (100k: 200 ms).
                found[start:start + per_slice] = [None] * len(chunk)
                deleted += self.core.delete([s.key for s in chunk if self._alive(s)])
                del chunk
                self._write_journal()
                yield
        except GeneratorExit:
            self._write_journal()
            raise
        return self._when_journaled(request, {"deleted": len(deleted), "keys": deleted})

    @app.route("/api/dayweek", methods=["GET"])
    def dayweek(self, request):
        self._check_token(request)
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
        self._check_token(request)
        now = self.clock.seconds()  # _export_keys folds the pending runs
        matches = self._filter(request)
        if self._arg(request, "until") is None:
            # The default reaches accepted points stamped in the future.
            start = parse_time("from", self._arg(request, "from", "0"), now)
            until = math.inf
        else:
            start, until = self._range(request, now, default_from="0")
        fmt = self._arg(request, "format", "ndjson")
        if fmt not in transfer.EXPORT_FORMATS:
            raise ApiError(400, "format must be one of %s, got %r"
                           % (", ".join(transfer.EXPORT_FORMATS), fmt), "format")
        content_type, extension = transfer.EXPORT_FORMATS[fmt]
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Disposition",
                          b'attachment; filename="simplestats-export.%s"' % (extension,))
        keys = self._sliced(self._export_keys(matches))
        return keys.addCallback(self._export_stream, request, start, until, now, fmt)

    def _export_keys(self, matches):
        _, found = yield from self._matching(matches)
        runs, _ = yield from sorted_runs(found, _KEY, self._alive)
        found = yield from merge_runs(runs, _KEY)
        return [s.key for s in found]

    def _export_stream(self, keys, request, start, until, now, fmt):
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
