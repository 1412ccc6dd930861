"""
Graphite's HTTP API (what Grafana's Graphite data source calls): C{/render},
C{/metrics/find}, C{/metrics/expand}, C{/metrics/index.json}, C{/tags...},
C{/functions}, C{/version} and C{/events/get_data} (the events of
L{server.core.events}, read by Grafana's Graphite annotations), answered as
graphite-web 1.1.10 answers them.

Parameters come from the query string and, for a POST, from a form body
(Grafana POSTs C{/render}).  Work over every series (globs, tag queries)
runs a slice per reactor turn and is capped at C{--graphite-max-series}
matches; a bad target, time or argument is a 400 C{Invalid parameters
(...)} naming it, as graphite-web answers, and is counted.
"""

import re
from urllib.parse import parse_qs

import orjson
from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from server.core.filters import SLICE_SECONDS, run_in_slices
from server.web.auth import refusal
from server.web.errors import answer_errors_as_json, json_error
from server.web.graphite.attime import TimeError, parse_at_time, zone
from server.web.graphite.params import FUNCTIONS, RenderError
from server.core.graphite_names import Pattern, PatternError, TagQuery, templates
from server.web.graphite.render import (Context, Renderer, Resolver, csv_answer, json_rows,
                                        parse_target, sources)

VERSION = "1.1.10"
# The paths this API answers (the rest of the site is the JSON API's).
PATHS = (b"/render", b"/metrics/find", b"/metrics/expand", b"/metrics/index.json", b"/tags",
         b"/functions", b"/version", b"/events/get_data")
# A jsonp callback is written into a script: a name, nothing else.
JSONP_NAME = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")
MAX_JSONP = 100
AUTOCOMPLETE_LIMIT = 100


class BadRequest(Exception):
    """
    Answered 400 with C{Invalid parameters (message)}.
    """


def is_graphite_path(path):
    """
    Whether C{path} (bytes, before C{?}) is one of this API's.
    """
    for prefix in PATHS:
        if path == prefix or path.startswith(prefix + b"/") and prefix in (b"/tags",
                                                                          b"/functions"):
            return True
    return False


class GraphiteAPI:
    """
    @param core: the L{server.core.ingest.IngestCore} (its store and counters).
    @param recovery: while it holds, answers are 503 rather than half the data.
    """

    app = Klein()
    log = Logger()

    def __init__(self, core, settings, clock, recovery=None, slice_seconds=SLICE_SECONDS):
        self.core = core
        self.store = core.store
        self.settings = settings
        self.clock = clock
        self.recovery = recovery
        self.slice_seconds = slice_seconds

    # -- helpers ---------------------------------------------------------

    def _params(self, request):
        """
        C{{name: [values]}} from the query string and a form body.
        """
        # The query string itself, not request.args: a site that parses
        # form bodies would give their fields twice.
        query = request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
        params = parse_qs(query.decode("utf-8", "replace"), keep_blank_values=True)
        content_type = (request.getHeader(b"Content-Type") or b"").split(b";")[0].strip()
        if request.method == b"POST" and content_type == b"application/x-www-form-urlencoded":
            request.content.seek(0)
            body = request.content.read().decode("utf-8", "replace")
            for key, values in parse_qs(body, keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        return params

    def _check(self, request):
        host = getattr(request.getClientAddress(), "host", "")
        refused = refusal(self.settings, request.method, request.path, request.getHeader, host)
        if refused is not None:
            self.core.counters["simplestats.http.unauthorized"] += 1
            request.setResponseCode(refused[0])
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            return orjson.dumps({"error": refused[1]})
        if self.recovery is not None and self.recovery.holding:
            request.setResponseCode(503)
            request.setHeader(b"Retry-After", b"1")
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            return orjson.dumps({"error": "recovering: the server is loading its data directory;"
                                          " try again when /api/health says ok"})
        return None

    def _json(self, request, body):
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-cache")
        return orjson.dumps(body)

    def _bad(self, request, message, targets=()):
        self.core.counters["simplestats.graphite.bad_requests"] += 1
        request.setResponseCode(400)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        text = "Invalid parameters (%s)" % (message,)
        if targets:
            text += '; targets: "%s"' % (", ".join(targets),)
        return text.encode("utf-8")

    def _times(self, params, default_from="-1d"):
        """
        C{(start, end, now, tz)} from C{from}, C{until}, C{now} and C{tz}.
        """
        try:
            tz = zone(_one(params, "tz"))
        except TimeError:
            tz = zone("")  # graphite-web ignores an unknown zone

        def at(name, default, now):
            text = _one(params, name)
            try:
                return parse_at_time(default if text is None else text, now, tz)
            except TimeError as e:
                raise BadRequest("%s=%r: %s" % (name, text, e))

        now = at("now", "now", self.clock.seconds())
        start, end = at("from", default_from, now), at("until", "now", now)
        start, end = min(start, end), max(start, end)
        if start == end:
            raise BadRequest("Invalid empty time range")
        return start, end, now, tz

    # -- /render -----------------------------------------------------------

    @app.route("/render", methods=["GET", "POST"])
    def render(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        targets = [t for t in params.get("target", []) + params.get("target[]", []) if t.strip()]
        try:
            start, end, now, tz = self._times(params)
            fmt = _one(params, "format") or "json"
            if fmt not in ("json", "csv"):
                raise BadRequest("format=%r: this server renders json and csv" % (fmt,))
            max_points = _one(params, "maxDataPoints")
            # graphite-web ignores a maxDataPoints that is not a number; 0 too
            # (it would divide by it).
            max_points = int(max_points) if max_points and max_points.isdigit() else None
            max_points = max_points or None
            xff = _one(params, "xFilesFactor")
            try:
                xff = None if xff is None else float(xff)
            except ValueError:
                raise BadRequest("xFilesFactor=%r is not a number" % (xff,))
            trees = [parse_target(t) for t in targets]
        except (BadRequest, RenderError) as e:
            return self._bad(request, str(e), targets)
        found = {}
        for tree in trees:
            sources(tree, found)
        resolver = Resolver(self.store, self.settings.graphite_max_series)
        no_nulls = "noNullPoints" in params
        d = run_in_slices(self.clock, self._render(request, resolver, found, trees, start, end,
                                                   now, tz, fmt, max_points, no_nulls, xff),
                          self.slice_seconds)
        d.addErrback(self._render_failed, request, targets)
        return d

    def _render(self, request, resolver, found, trees, start, end, now, tz, fmt, max_points,
                no_nulls, xff):
        resolved = yield from resolver.resolve(found)
        renderer = Renderer(self.store, resolved, self.settings.graphite_max_points)
        ctx = Context(renderer, start, end, now, xff)
        yield from renderer.prefetch(ctx)
        data = []
        for tree in trees:
            result = renderer.evaluate(tree, ctx)
            if not isinstance(result, list):
                raise RenderError("target %r is not a series list" % (result,))
            data.extend(result)
            yield
        self.core.counters["simplestats.graphite.renders"] += 1
        if fmt == "csv":
            request.setHeader(b"Content-Type", b"text/csv")
            return csv_answer(data, tz).encode("utf-8")
        rows = yield from json_rows(data, max_points, no_nulls)
        return self._json(request, rows)

    def _render_failed(self, failure, request, targets):
        if failure.check(RenderError, PatternError, TimeError):
            return self._bad(request, str(failure.value), targets)
        if failure.check(CancelledError):
            return None  # the client went away
        self.core.counters["simplestats.graphite.errors"] += 1
        self.log.failure("graphite request failed: {targets}", failure, targets=targets)
        self.core.counters["simplestats.http.internal_errors"] += 1
        return json_error(request, 500, "internal error rendering %s: %s: %s" % (
            ", ".join(targets) or request.path.decode("utf-8", "replace"), failure.type.__name__,
            failure.getErrorMessage()))

    # -- finder --------------------------------------------------------------

    @app.route("/metrics/find", methods=["GET", "POST"])
    def find(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        query = _one(params, "query")
        fmt = _one(params, "format") or "treejson"
        try:
            if query is None:
                raise BadRequest("Missing required parameter 'query'")
            if query == "":
                raise BadRequest("Required parameter 'query' is empty")
            if fmt not in ("treejson", "completer", "json", "nodelist"):
                raise BadRequest("Invalid value for 'format' parameter: %r" % (fmt,))
            wildcards = _int(params, "wildcards")
            leaves_only = _int(params, "leavesOnly")
            position = _int(params, "position", -1)
            span = self._span(params)
        except BadRequest as e:
            return self._bad(request, str(e))
        base = query.rsplit(".", 1)[0] + "." if "." in query else ""
        if fmt == "completer":
            query = query.replace("..", "*.")
            if not query.endswith("*"):
                query += "*"
        try:
            pattern = Pattern(query)
        except PatternError as e:
            return self._bad(request, str(e))
        d = run_in_slices(self.clock, self._find(pattern, leaves_only, span), self.slice_seconds)

        def answer(nodes):
            return self._json(request, _find_answer(nodes, fmt, base, wildcards, position))

        d.addCallback(answer)
        d.addErrback(self._render_failed, request, [])
        return d

    def _span(self, params):
        """
        C{(from, until)} of a find (L{None} each when not given or C{-1}).
        """
        try:
            tz = zone(_one(params, "tz"))
        except TimeError:
            tz = zone("")
        now = self.clock.seconds()
        span = []
        for name in ("from", "until"):
            text = _one(params, name)
            if text is None or text == "-1":
                span.append(None)
                continue
            try:
                span.append(parse_at_time(text, now, tz))
            except TimeError as e:
                raise BadRequest("Invalid value %r for param %s: %s" % (text, name, e))
        return tuple(span)

    def _find(self, pattern, leaves_only=False, span=(None, None), every=256):
        """
        A generator for L{run_in_slices}: C{[(path, is_leaf, has_children)]}
        of the tree nodes C{pattern} matches, of series with points within
        C{span}, sorted by path.  A path is a leaf when it reads a series
        (its own name, a field, a bare statsd name) and has children when
        longer paths run under it; it can be both (C{a.b.c} reads the series
        C{a.b.c}, C{a.b.c.mean} its mean).
        """
        nodes = {}
        candidates = list(self.store.series.values())
        limit = self.settings.graphite_max_series
        start_time, until_time = span
        fold = self.store.fold_series
        for start in range(0, len(candidates), every):
            for series in candidates[start:start + every]:
                if span != (None, None):
                    fold(series)  # first and last seen count its pending points
                if start_time is not None and series.last_seen < start_time:
                    continue
                if until_time is not None and series.first_seen > until_time:
                    continue
                for path, leaf in pattern.nodes_of(series):
                    if leaves_only and not leaf:
                        continue
                    kinds = nodes.setdefault(path, [False, False])
                    kinds[0 if leaf else 1] = True
            if len(nodes) > limit:
                raise RenderError("the query matches more than %d nodes (--graphite-max-series);"
                                  " narrow it" % (limit,))
            yield
        return [(path, leaf, children) for path, (leaf, children) in sorted(nodes.items())]

    @app.route("/metrics/expand", methods=["GET", "POST"])
    def expand(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        queries = params.get("query", [])
        if not queries:
            return self._bad(request, "Missing required parameter 'query'")
        leaves_only = _int(params, "leavesOnly")
        group = _int(params, "groupByExpr")
        try:
            patterns = [(q, Pattern(q)) for q in queries]
        except PatternError as e:
            return self._bad(request, str(e))

        def work():
            results = {}
            for q, pattern in patterns:
                nodes = yield from self._find(pattern, leaves_only)
                results[q] = [path for path, _, _ in nodes]
            if group:
                return {"results": results}
            return {"results": sorted(set(p for paths in results.values() for p in paths))}

        d = run_in_slices(self.clock, work(), self.slice_seconds)
        d.addCallback(lambda body: self._json(request, body))
        d.addErrback(self._render_failed, request, [])
        return d

    @app.route("/metrics/index.json", methods=["GET"])
    def index(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        pattern = _leaves

        def work(every=256):
            paths = set()
            candidates = list(self.store.series.values())
            for start in range(0, len(candidates), every):
                for series in candidates[start:start + every]:
                    paths.update(p for p, _ in pattern(series))
                yield
            return sorted(paths)

        d = run_in_slices(self.clock, work(), self.slice_seconds)
        d.addCallback(lambda body: self._json(request, body))
        return d

    # -- tags ------------------------------------------------------------------

    def _tag_counts(self, query=None, every=256):
        """
        C{{tag: {value: series count}}} of the tagged series (and C{name}),
        of those C{query} matches when given.
        """
        counts = {}
        candidates = list(self.store.series.values())
        for start in range(0, len(candidates), every):
            for series in candidates[start:start + every]:
                tags = dict(series.tags)
                if query is not None:
                    paths = query.paths(series)
                    if not paths:
                        continue
                    names = [p.split(";", 1)[0] for p, _ in paths]
                else:
                    names = [series.name]
                for name in names:
                    counts.setdefault("name", {}).setdefault(name, 0)
                    counts["name"][name] += 1
                for k, v in tags.items():
                    values = counts.setdefault(k, {})
                    values[v] = values.get(v, 0) + 1
            yield
        return counts

    def _exprs(self, params):
        exprs = params.get("expr", []) + params.get("expr[]", [])
        if not exprs:
            return None
        return TagQuery(exprs)

    @app.route("/tags", methods=["GET"])
    def tags(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        try:
            matches = _filter(params)
            limit = _limit(params, None)
        except BadRequest as e:
            return self._bad(request, str(e))

        def answer(counts):
            found = [{"tag": t} for t in sorted(counts) if matches(t)]
            return self._json(request, found if limit is None else found[:limit])

        return self._slices(request, self._tag_counts(), answer)

    @app.route("/tags/<string:tag>", methods=["GET"])
    def tag(self, request, tag):
        refused = self._check(request)
        if refused is not None:
            return refused
        if tag in ("autoComplete", "findSeries"):
            return self._bad(request, "unknown tags call %r" % (tag,))
        params = self._params(request)
        try:
            matches = _filter(params)
            limit = _limit(params, None)
        except BadRequest as e:
            return self._bad(request, str(e))

        def answer(counts):
            values = [{"value": v, "count": c} for v, c in sorted(counts.get(tag, {}).items())
                      if matches(v)]
            return self._json(request, {"tag": tag, "values": values if limit is None
                                        else values[:limit]})

        return self._slices(request, self._tag_counts(), answer)

    @app.route("/tags/findSeries", methods=["GET", "POST"])
    def find_series(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        try:
            query = self._exprs(params)
            if query is None:
                raise BadRequest("no tag expressions specified")
        except (BadRequest, PatternError) as e:
            return self._bad(request, str(e))

        def work(every=256):
            paths = []
            candidates = list(self.store.series.values())
            for start in range(0, len(candidates), every):
                for series in candidates[start:start + every]:
                    paths.extend(p for p, _ in query.paths(series))
                yield
            # Two series can offer one path (C{a;k=v}'s field C{max} and
            # C{a.max;k=v}): listed once.
            return sorted(set(paths))

        return self._slices(request, work(), lambda paths: self._json(request, paths))

    @app.route("/tags/autoComplete/tags", methods=["GET", "POST"])
    def autocomplete_tags(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        try:
            query = self._exprs(params)
            limit = _limit(params, AUTOCOMPLETE_LIMIT)
            searched = {e.tag for e in query.expressions} if query else set()
        except (BadRequest, PatternError) as e:
            return self._bad(request, str(e))
        prefix = _one(params, "tagPrefix") or ""

        def answer(counts):
            found = [t for t in sorted(counts) if t.startswith(prefix) and t not in searched]
            return self._json(request, found[:limit])

        return self._slices(request, self._tag_counts(query), answer)

    @app.route("/tags/autoComplete/values", methods=["GET", "POST"])
    def autocomplete_values(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        tag = _one(params, "tag")
        try:
            if not tag:
                raise BadRequest("no tag specified")
            query = self._exprs(params)
            limit = _limit(params, AUTOCOMPLETE_LIMIT)
            if query is not None:
                query = TagQuery([e.tag + e.operator + e.spec for e in query.expressions]
                                 + [tag + "!="])
        except (BadRequest, PatternError) as e:
            return self._bad(request, str(e))
        prefix = _one(params, "valuePrefix") or ""

        def answer(counts):
            found = [v for v in sorted(counts.get(tag, {})) if v.startswith(prefix)]
            return self._json(request, found[:limit])

        return self._slices(request, self._tag_counts(query), answer)

    def _slices(self, request, work, answer):
        d = run_in_slices(self.clock, work, self.slice_seconds)
        d.addCallback(answer)
        d.addErrback(self._render_failed, request, [])
        return d

    # -- functions and version -------------------------------------------------

    @app.route("/functions", methods=["GET"])
    def functions(self, request):
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        grouped = (_one(params, "grouped") or "").lower() in ("1", "true")
        group = _one(params, "group")
        result = {}
        for name in sorted(FUNCTIONS):
            info = function_info(name)
            if group is not None and group != info["group"]:
                continue
            if grouped:
                result.setdefault(info["group"], {})[name] = info
            else:
                result[name] = info
        return self._json(request, result)

    @app.route("/functions/<string:name>", methods=["GET"])
    def function(self, request, name):
        refused = self._check(request)
        if refused is not None:
            return refused
        if name not in FUNCTIONS:
            request.setResponseCode(404)
            return self._json(request, {"error": "Function not found: %s" % (name,)})
        return self._json(request, function_info(name))

    # -- /events/get_data ----------------------------------------------------

    @app.route("/events/get_data", methods=["GET", "POST"])
    def events_data(self, request):
        """
        graphite-web's events as its C{get_data} answers them: a JSON list
        of C{{"when", "what", "data", "tags", "id"}} in time order, from
        C{from} (default: all) to C{until} (default: now), those with every
        tag of C{tags} (space-separated; C{set=union}: any of them); with
        C{jsonp}, wrapped in a call of that name.
        """
        refused = self._check(request)
        if refused is not None:
            return refused
        params = self._params(request)
        try:
            start, until, tags, union, jsonp = self._events_query(params)
        except BadRequest as e:
            return self._bad(request, str(e))
        events = self.core.events
        if union:
            found = [e for e in events.between(start, until) if set(tags) & set(e["tags"])]
        else:
            found = events.between(start, until, tags)
        body = orjson.dumps([{"when": e["when"], "what": e["what"], "data": e["data"],
                              "tags": list(e["tags"]), "id": e["id"]} for e in found])
        request.setHeader(b"Cache-Control", b"no-cache")
        if jsonp is None:
            request.setHeader(b"Content-Type", b"application/json")
            return body
        request.setHeader(b"Content-Type", b"text/javascript")
        return jsonp.encode() + b"(" + body + b")"

    def _events_query(self, params):
        """
        C{(start, until, tags, union, jsonp)} of an events request.
        """
        try:
            tz = zone(_one(params, "tz"))
        except TimeError:
            tz = zone("")
        now = self.clock.seconds()

        def at(name, default):
            text = _one(params, name)
            if text is None or text == "":
                return default
            try:
                return parse_at_time(text, now, tz)
            except TimeError as e:
                raise BadRequest("%s=%r: %s" % (name, text, e))

        start, until = at("from", 0.0), at("until", now)
        tags = (_one(params, "tags") or "").split()
        operation = _one(params, "set") or None
        if operation not in (None, "union", "intersection"):
            raise BadRequest("set=%r: union or intersection" % (operation,))
        jsonp = _one(params, "jsonp")
        if jsonp is not None and (len(jsonp) > MAX_JSONP or not JSONP_NAME.match(jsonp)):
            raise BadRequest("jsonp=%r: a callback name (letters, digits, _ and $, dotted),"
                             " at most %d characters" % (jsonp[:MAX_JSONP], MAX_JSONP))
        return start, until, tags, operation == "union" and bool(tags), jsonp

    @app.route("/version", methods=["GET"])
    def version(self, request):
        request.setHeader(b"Content-Type", b"text/plain")
        return VERSION.encode()

    answer_errors_as_json(app)


def function_info(name):
    """
    One function in graphite-web's C{/functions} shape.
    """
    f = FUNCTIONS[name]
    params = [p.to_json() for p in f.params]
    signature = ", ".join(p["name"] + ("*" if p.get("multiple") else "") for p in params)
    description = (f.__doc__ or "").strip() or "%s, as graphite-web %s computes it" % (
        name, VERSION)
    return {"name": name, "function": "%s(%s)" % (name, signature), "description": description,
            "module": "graphite.render.functions", "group": f.group, "params": params}


def _leaves(series):
    """
    C{[(path, Field)]}: every path of an untagged series.
    """
    if series.tags:
        return []
    out = []
    for nodes, bare, suffixes in templates(series):
        name = ".".join(nodes)
        if bare is not None:
            out.append((name, bare))
        out.extend((name + "." + s, f) for s, f in suffixes.items())
    return out


def _find_answer(nodes, fmt, base, wildcards, position):
    """
    The answer of C{/metrics/find} in C{fmt}, from C{[(path, is_leaf,
    has_children)]}.  graphite-web's finders give a path that is both a
    leaf and a branch as two nodes: C{completer} and C{json} list both (the
    branch first), as there.  C{treejson} gives one node per name, and where
    graphite-web keeps only the branch, ours says both: C{leaf} 1 (the path
    reads a series) and C{expandable}, C{allowChildren} 1 (it has children).
    """
    split = []
    for path, leaf, children in nodes:
        if children:
            split.append((path, False))
        if leaf:
            split.append((path, True))
    if fmt == "completer":
        metrics = [{"path": p + ("" if leaf else "."), "name": p.rsplit(".", 1)[-1],
                    "is_leaf": str(int(leaf))} for p, leaf in split]
        if len(metrics) > 1 and wildcards:
            metrics.append({"name": "*"})
        return {"metrics": metrics}
    if fmt == "nodelist":
        return {"nodes": sorted({p.split(".")[position] for p, _, _ in nodes
                                 if -len(p.split(".")) <= position < len(p.split("."))})}
    if fmt == "json":
        return [{"path": p, "is_leaf": leaf} for p, leaf in split]
    results = []
    if len(split) > 1 and wildcards:
        star = {"text": "*", "id": base + "*"}
        branching = any(children for _, _, children in nodes)
        star.update(_tree_flags(branching, not branching))
        results.append(star)
    branches, leaves = [], []
    for path, leaf, children in nodes:
        name = path.rsplit(".", 1)[-1]
        node = {"text": name, "id": base + name}
        node.update(_tree_flags(children, leaf))
        (branches if children else leaves).append(node)
    return results + branches + leaves


def _tree_flags(children, leaf):
    """
    A C{treejson} node's C{allowChildren}, C{expandable} and C{leaf}.
    """
    return {"allowChildren": int(children), "expandable": int(children), "leaf": int(leaf)}


def _one(params, name):
    values = params.get(name)
    return values[-1] if values else None


def _int(params, name, default=0):
    text = _one(params, name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise BadRequest("%s must be a whole number, got %r" % (name, text))


def _limit(params, default):
    limit = _int(params, "limit", default)
    if limit is not None and limit < 0:
        raise BadRequest("limit must be 0 or more, got %d" % (limit,))
    return limit


def _filter(params):
    text = _one(params, "filter")
    if not text:
        return lambda value: True
    try:
        return re.compile(text).search
    except re.error as e:
        raise BadRequest("filter=%r is not a regular expression: %s" % (text, e))


def _parsed(params, name, default, now, tz):
    text = _one(params, name)
    return parse_at_time(default if text is None else text, now, tz)
