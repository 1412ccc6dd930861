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
from twisted.internet import defer
from twisted.logger import Logger

from server.web import batch as batches
from server.web import transfer
from server.core.filters import (SLICE_SECONDS, compile_filter, merge_runs, run_in_slices, select,
                            sorted_runs)
from server.core.model import TYPE_NAMES, ParseError, normalize_tags, series_key
from server.core.query import (QueryError, choose_tier, day_week, fields_for, parse_resolution,
                          parse_time, series_points)
from server.core.boards import BoardError, check_board
from server.core.events import EventError, check_event
from server.web.auth import refusal
from server.web.errors import ApiError, JsonErrorPage, answer_api_errors, answer_errors_as_json
from server.web.imports import ImportBusy, Importer
from server.web.webroot import CANDIDATES, StaticFiles, find_web_root
from server.web.prometheus import Exposition

_KEY = attrgetter("key")


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
        # C{{"tcp", "udp", "http"}}: the ports listened on (makeService sets
        # it; the settings' ports until then).
        self.ports = None
        # Each forward destination's state (set by makeService when forwarding).
        self.forward = None
        self.web_root = find_web_root(settings.web_root)
        if self.web_root is None:
            self.log.warn("the dashboard's files are in none of {places}: / answers 404;"
                          " give --web-root", places=", ".join(CANDIDATES))
        self.exposition = Exposition(core, clock, slice_seconds)

    # -- helpers -------------------------------------------------------------

    def _json(self, request, body, status=200):
        self._json_headers(request, status)
        # orjson: a week of 1-minute points encodes ten times faster than
        # with json (NaN and infinities, never sent, would become null).
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)

    def _when_journaled(self, request, body, status=200):
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
        return d.addCallbacks(lambda _: self._json(request, body, status), refused)

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

    def _args(self, request, name):
        """
        Every value of a repeated parameter (C{key=a&key=b}), as text.
        """
        try:
            return [v.decode("utf-8") for v in request.args.get(name.encode(), [])]
        except UnicodeDecodeError:
            raise ApiError(400, "parameter %s is not UTF-8" % (name,), name)

    def _filter(self, request):
        """
        The C{filter} parameter compiled (blank matches everything).
        """
        return self._filter_text(self._arg(request, "filter", ""))

    def _filter_text(self, text):
        try:
            return compile_filter(text, self.settings.max_filter_terms,
                                  self.settings.max_filter_length)
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

    answer_api_errors(app)

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
            # The most points per field a series answer gives (--max-points): the page
            # disables the resolutions that would give more.
            "max_points": self.settings.max_points,
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
            # What the dashboard's empty state tells a user to send to.
            "ports": self._ports(),
            # Each forward destination's state (server.outputs), or None.
            "forward": self.forward() if self.forward is not None else None,
        })

    def _ports(self):
        settings = self.settings
        configured = {"tcp": settings.tcp_port, "udp": settings.udp_port,
                      "http": settings.http_port}
        if self.ports is None:
            return configured
        try:
            return self.ports()
        except AttributeError:
            # Not listening yet (or any more).
            return configured

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

    @app.route("/api/series/batch", methods=["GET", "POST"])
    def series_batch(self, request):
        self._check_token(request)
        try:
            if request.method == b"POST":
                spec = batches.from_json(request.content.read())
            else:
                spec = batches.from_args(lambda name, default=None: self._arg(request, name, default),
                                         lambda name: self._args(request, name))
        except batches.BatchError as e:
            raise ApiError(400, str(e), e.parameter)
        if not spec.items and not spec.filter:
            raise ApiError(400, "give at least one key (key=...) or a filter", "key")
        limit = self.settings.max_batch_series
        if len(spec.items) > limit:
            raise ApiError(400, "%d keys, more than --max-batch-series %d"
                           % (len(spec.items), limit), "key")
        matches = self._filter_text(spec.filter) if spec.filter else None
        return self._sliced(self._batch(request, spec, matches))

    def _batch(self, request, spec, matches):
        """
        The batch answer, a series per reactor turn: a week of 1-minute
        points of 100 series is seconds of reading, encoding and gzip.
        """
        matched = []
        if matches is not None:
            _, matched = yield from self._matching(matches, settle=False)
            if len(matched) > self.settings.max_batch_series:
                raise ApiError(400, "the filter matches %d series, more than --max-batch-series %d:"
                               " narrow it" % (len(matched), self.settings.max_batch_series),
                               "filter")
            matched.sort(key=_KEY)
        store = self.store
        found, missing, seen = [], [], set()
        for key, fields in spec.items:
            series = store.series.get(key)
            if series is None:
                missing.append(key)
            elif key not in seen:
                seen.add(key)
                found.append((series, fields))
        for series in matched:
            if series.key not in seen and self._alive(series):
                seen.add(series.key)
                found.append((series, None))
        if len(found) > self.settings.max_batch_series:
            raise ApiError(400, "%d series, more than --max-batch-series %d: narrow the filter"
                           % (len(found), self.settings.max_batch_series),
                           "filter" if spec.filter else "key")
        head, tier, work = batches.prepare(store, spec, found, missing, self.clock.seconds(),
                                           self.settings.max_points)
        self._json_headers(request)
        opening = orjson.dumps(head)[:-1] + b',"series":['
        for series, fields in work:
            if not self._alive(series):
                # Deleted since the request began.
                missing.append(series.key)
                continue
            item = batches.series_item(store, head, tier, series, fields)
            request.write(opening + orjson.dumps(item))
            opening = b","
            yield
        if opening != b",":
            request.write(opening)
        return b'],"missing":' + orjson.dumps(missing) + b"}"

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
        keys = self._args(request, "key")
        matches = None if keys else self._filter(request)
        fmt = self._arg(request, "format", "ndjson")
        if fmt not in transfer.EXPORT_FORMATS:
            raise ApiError(400, "format must be one of %s, got %r"
                           % (", ".join(transfer.EXPORT_FORMATS), fmt), "format")
        if fmt == "csv-wide":
            # One resolution, as a plot reads it: the default range is a plot's.
            start, until = self._range(request, now)
            tier = parse_resolution(self.store, self._arg(request, "resolution"))
            tier = choose_tier(self.store, start, until, now, tier, self.settings.max_points)
        elif self._arg(request, "until") is None:
            # The default reaches accepted points stamped in the future.
            start = parse_time("from", self._arg(request, "from", "0"), now)
            until = math.inf
        else:
            start, until = self._range(request, now, default_from="0")
        content_type, extension = transfer.EXPORT_FORMATS[fmt]
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Disposition",
                          b'attachment; filename="simplestats-export.%s"' % (extension,))
        if keys:
            # Exactly the series asked for (what a plot shows), in that order.
            for key in keys:
                series = self.store.series.get(key)
                if series is not None:
                    self.store.fold_series(series)
            found = list(dict.fromkeys(k for k in keys if k in self.store.series))
            if not found:
                raise ApiError(404, "none of the keys names a series: %s"
                               % (", ".join(repr(k) for k in keys[:10]),), "key")
            d = defer.succeed(found)
        else:
            d = self._sliced(self._export_keys(matches))
        if fmt == "csv-wide":
            return d.addCallback(self._wide_stream, request, start, until, tier, now)
        return d.addCallback(self._export_stream, request, start, until, now, fmt)

    def _wide_stream(self, keys, request, start, until, tier, now):
        chunks = transfer.wide_chunks(self.store, keys, start, until, tier, now)
        self.core.counters["simplestats.http.exports"] += 1
        return transfer.stream(request, chunks, self.clock)

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

    # -- events --------------------------------------------------------------

    def _json_body(self, request, limit=65536):
        """
        The request's body as JSON (at most C{limit} bytes), or a 400/413.
        """
        content = request.content
        content.seek(0, os.SEEK_END)
        size = content.tell()
        if size > limit:
            raise ApiError(413, "the body has %d bytes, more than the limit of %d" % (size, limit))
        content.seek(0)
        try:
            return orjson.loads(content.read())
        except orjson.JSONDecodeError as e:
            raise ApiError(400, "the body is not JSON: %s" % (e,), "body")

    @app.route("/api/events", methods=["POST"])
    def post_event(self, request):
        self._check_token(request)
        body = self._json_body(request)
        now = self.clock.seconds()
        when = body.get("when") if isinstance(body, dict) else None
        try:
            if when is None:
                when = now
            elif isinstance(when, str):
                when = parse_time("when", when, now)
            elif not isinstance(when, (int, float)) or isinstance(when, bool):
                raise EventError("when", "when must be seconds since the epoch or like -5m")
            event = check_event(body, float(when), "http")
        except (EventError, QueryError) as e:
            self.core.counters["simplestats.events.bad"] += 1
            raise ApiError(400, str(e), e.parameter)
        event = self.core.add_event(event)
        return self._when_journaled(request, event, 201)

    @app.route("/api/events", methods=["GET"])
    def list_events(self, request):
        self._check_token(request)
        now = self.clock.seconds()
        start, until = self._range(request, now, default_from="-24h")
        tags = (self._arg(request, "tags", "") or "").replace(",", " ").split()
        events = self.core.events
        found = events.between(start, until, tags)
        return self._json(request, {"events": found, "count": len(found), "stored": len(events),
                                    "dropped": events.dropped})

    @app.route("/api/events/<event_id>", methods=["DELETE"])
    def delete_event(self, request, event_id):
        self._check_token(request)
        try:
            number = int(event_id)
        except ValueError:
            raise ApiError(404, "no event %r (ids are numbers)" % (event_id,), "id")
        if not self.core.delete_event(number):
            raise ApiError(404, "no event %d" % (number,), "id")
        return self._when_journaled(request, {"deleted": number})

    # -- dashboards ------------------------------------------------------------

    def _board_body(self, request):
        body = self._json_body(request, self.settings.max_dashboard_bytes)
        try:
            return check_board(body)
        except BoardError as e:
            self.core.counters["simplestats.dashboards.bad"] += 1
            raise ApiError(400, str(e), e.parameter)

    def _board(self, board_id):
        board = self.core.boards.by_id.get(board_id)
        if board is None:
            raise ApiError(404, "no dashboard %r" % (board_id,), "id")
        return board

    @app.route("/api/dashboards", methods=["POST"])
    def post_board(self, request):
        self._check_token(request)
        board = self._board_body(request)
        boards = self.core.boards
        if len(boards) >= self.settings.max_dashboards:
            raise ApiError(409, "%d dashboards are saved, the limit (--max-dashboards): delete one"
                           " first" % (len(boards),))
        now = self.clock.seconds()
        board.update(id=boards.fresh_id(), created=now, updated=now)
        self.core.put_board(board)
        request.setHeader(b"Location", b"/api/dashboards/" + board["id"].encode())
        return self._when_journaled(request, board, 201)

    @app.route("/api/dashboards", methods=["GET"])
    def list_boards(self, request):
        self._check_token(request)
        rows = self.core.boards.listing()
        return self._json(request, {"dashboards": rows, "count": len(rows)})

    @app.route("/api/dashboards/<board_id>", methods=["GET"])
    def get_board(self, request, board_id):
        self._check_token(request)
        return self._json(request, self._board(board_id))

    @app.route("/api/dashboards/<board_id>", methods=["PUT"])
    def put_board(self, request, board_id):
        self._check_token(request)
        old = self._board(board_id)
        board = self._board_body(request)
        board.update(id=board_id, created=old["created"], updated=self.clock.seconds())
        self.core.put_board(board)
        return self._when_journaled(request, board)

    @app.route("/api/dashboards/<board_id>", methods=["DELETE"])
    def delete_board(self, request, board_id):
        self._check_token(request)
        if not self.core.delete_board(board_id):
            raise ApiError(404, "no dashboard %r" % (board_id,), "id")
        return self._when_journaled(request, {"deleted": board_id})

    # GET and HEAD only: another method on a path no route takes is a 405
    # naming the methods, not a static file's answer.
    @app.route("/", branch=True, methods=["GET", "HEAD"])
    def static(self, request):
        if self.web_root is None:
            return JsonErrorPage(404, "the dashboard's files are not installed (looked in %s);"
                                      " give --web-root" % (", ".join(CANDIDATES),))
        return StaticFiles(self.web_root)

    answer_errors_as_json(app)


def _finite(value):
    # NaN and infinities are not JSON.
    if value is None or value - value == 0.0:
        return value
    return None
